-- Alarms (告警): one open alarm per subject and fault type, with a count,
-- graded I-IV with the response and repair deadlines of the O&M contracts.

CREATE TABLE vms.alarm_level (
    level          smallint PRIMARY KEY CHECK (level BETWEEN 1 AND 4),
    roman          text NOT NULL,
    name_zh        text NOT NULL,
    name_en        text NOT NULL,
    respond_within interval,
    fix_within     interval NOT NULL
);
INSERT INTO vms.alarm_level VALUES
    (1, 'I',   '紧急',   'urgent',   '30 minutes', '12 hours'),
    (2, 'II',  '严重',   'severe',   NULL,         '24 hours'),
    (3, 'III', '较严重', 'major',    NULL,         '48 hours'),
    (4, 'IV',  '普通',   'ordinary', NULL,         '5 days');
COMMENT ON TABLE vms.alarm_level IS 'alarm levels I-IV (紧急/严重/较严重/普通) with response and repair deadlines';

CREATE TABLE vms.alarm (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code            vms.gbcode NOT NULL,
    fault_type      text NOT NULL,
    level           smallint NOT NULL REFERENCES vms.alarm_level (level),
    source          text NOT NULL CHECK (source IN ('sip', 'inspection', 'governance', 'viid', 'manual')),
    state           text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'cleared')),
    occurrences     integer NOT NULL DEFAULT 1,
    first_raised_at timestamptz NOT NULL DEFAULT now(),
    last_raised_at  timestamptz NOT NULL DEFAULT now(),
    respond_by      timestamptz,
    fix_by          timestamptz,
    detail          jsonb NOT NULL DEFAULT '{}',
    acknowledged_by text,
    acknowledged_at timestamptz,
    cleared_at      timestamptz,
    clear_reason    text
);
CREATE UNIQUE INDEX alarm_open_idx ON vms.alarm (code, fault_type) WHERE state <> 'cleared';
CREATE INDEX alarm_time_idx ON vms.alarm (last_raised_at);
COMMENT ON TABLE vms.alarm IS 'alarm centre: devices, channels and workers raise here; one open row per code and fault type';
COMMENT ON COLUMN vms.alarm.code IS 'device or channel the alarm is about';
COMMENT ON COLUMN vms.alarm.occurrences IS 'how often the fault was raised while this alarm stayed open';

CREATE FUNCTION vms.alarm_raise(code vms.gbcode, fault_type text, level smallint,
                                source text, detail jsonb DEFAULT '{}')
    RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    lv vms.alarm_level;
    alarm_id bigint;
BEGIN
    SELECT * INTO lv FROM vms.alarm_level l WHERE l.level = alarm_raise.level;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alarm level % does not exist', alarm_raise.level
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Levels are 1 (I, urgent) to 4 (IV, ordinary).';
    END IF;
    INSERT INTO vms.alarm AS a (code, fault_type, level, source, detail, respond_by, fix_by)
    VALUES (alarm_raise.code, alarm_raise.fault_type, alarm_raise.level, alarm_raise.source,
            alarm_raise.detail, now() + lv.respond_within, now() + lv.fix_within)
    ON CONFLICT (code, fault_type) WHERE state <> 'cleared' DO UPDATE
        SET occurrences = a.occurrences + 1,
            last_raised_at = now(),
            level = least(a.level, EXCLUDED.level),
            respond_by = least(a.respond_by, EXCLUDED.respond_by),
            fix_by = least(a.fix_by, EXCLUDED.fix_by),
            detail = EXCLUDED.detail
    RETURNING a.id INTO alarm_id;
    PERFORM pg_notify('vms_alarm', json_build_object('id', alarm_id, 'code', alarm_raise.code::text,
                      'fault_type', alarm_raise.fault_type, 'level', alarm_raise.level)::text);
    RETURN alarm_id;
END $$;
COMMENT ON FUNCTION vms.alarm_raise(vms.gbcode, text, smallint, text, jsonb) IS
    'raise an alarm, or count one more occurrence of the open alarm for the same code and fault type; notifies channel vms_alarm';

CREATE FUNCTION vms.alarm_acknowledge(alarm_id bigint) RETURNS boolean
    LANGUAGE sql SET search_path FROM CURRENT
    BEGIN ATOMIC
        WITH a AS (UPDATE vms.alarm SET state = 'acknowledged', acknowledged_by = session_user,
                          acknowledged_at = now()
                    WHERE id = alarm_id AND state = 'open' RETURNING 1)
        SELECT count(*) > 0 FROM a;
    END;
COMMENT ON FUNCTION vms.alarm_acknowledge(bigint) IS 'acknowledge an open alarm; false if it was not open';

CREATE FUNCTION vms.alarm_clear(code vms.gbcode, fault_type text, reason text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE sql SET search_path FROM CURRENT
    BEGIN ATOMIC
        WITH a AS (UPDATE vms.alarm a SET state = 'cleared', cleared_at = now(), clear_reason = reason
                    WHERE a.code = alarm_clear.code AND a.fault_type = alarm_clear.fault_type
                      AND a.state <> 'cleared' RETURNING 1)
        SELECT count(*) > 0 FROM a;
    END;
COMMENT ON FUNCTION vms.alarm_clear(vms.gbcode, text, text) IS 'clear the open alarm for a code and fault type; false if none was open';
