-- Alarms (告警): one open alarm per subject and fault type, with a count,
-- graded I-IV with the response and repair deadlines of the O&M contracts.

CREATE TABLE vms.alarm_level (
    level          smallint PRIMARY KEY CHECK (level BETWEEN 1 AND 4),
    roman          text NOT NULL,
    name_zh        text NOT NULL,
    name_en        text NOT NULL,
    respond_within interval,
    fix_within     interval NOT NULL,
    plan_within    interval
);
INSERT INTO vms.alarm_level VALUES
    (1, 'I',   '紧急',   'urgent',   '30 minutes', '12 hours', '2 hours'),
    (2, 'II',  '严重',   'severe',   '30 minutes', '24 hours', '2 hours'),
    (3, 'III', '较严重', 'major',    '30 minutes', '48 hours', '2 hours'),
    (4, 'IV',  '普通',   'ordinary', '30 minutes', '5 days',   '2 hours');
COMMENT ON TABLE vms.alarm_level IS
    'alarm levels I-IV (紧急/严重/较严重/普通) with the default response, plan and repair deadlines (a maintenance contract may set its own: vms.contract_deadline)';
COMMENT ON COLUMN vms.alarm_level.respond_within IS 'respond (acknowledge) within this of the raise; NULL: no response deadline';
COMMENT ON COLUMN vms.alarm_level.plan_within IS 'have a repair plan (a work order dispatched, or vms.alarm_plan) within this of the raise; NULL: no plan deadline';
COMMENT ON COLUMN vms.alarm_level.fix_within IS 'clear within this of the raise';

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
    clear_reason    text,
    plan_by         timestamptz,
    planned_at      timestamptz,
    contract_id     bigint,
    root_alarm_id   bigint REFERENCES vms.alarm (id) ON DELETE SET NULL,
    mask_id         bigint,
    escalated       text[] NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX alarm_open_idx ON vms.alarm (code, fault_type) WHERE state <> 'cleared';
CREATE INDEX alarm_time_idx ON vms.alarm (last_raised_at);
COMMENT ON TABLE vms.alarm IS 'alarm centre: devices, channels and workers raise here; one open row per code and fault type';
COMMENT ON COLUMN vms.alarm.code IS 'device or channel the alarm is about';
COMMENT ON COLUMN vms.alarm.occurrences IS 'how often the fault was raised while this alarm stayed open';
COMMENT ON COLUMN vms.alarm.plan_by IS 'deadline for a repair plan (a work order dispatched, or vms.alarm_plan)';
COMMENT ON COLUMN vms.alarm.planned_at IS 'when a repair plan was made (work order opened, or vms.alarm_plan)';
COMMENT ON COLUMN vms.alarm.contract_id IS 'the maintenance contract whose deadlines apply (vms.contract_for at the raise)';
COMMENT ON COLUMN vms.alarm.root_alarm_id IS 'root cause: the device''s offline alarm this channel alarm is suppressed under (not notified while that one is open)';
COMMENT ON COLUMN vms.alarm.mask_id IS 'the mask (vms.alarm_mask) in force when it was raised: recorded, never notified';
COMMENT ON COLUMN vms.alarm.escalated IS 'deadlines (respond, plan, fix) whose passing has escalated this alarm';
CREATE INDEX alarm_root_idx ON vms.alarm (root_alarm_id) WHERE root_alarm_id IS NOT NULL;

-- What happened to each alarm, in order: the outbox of alarm notifications
-- (notify = a person should hear of it: not masked, not suppressed).
CREATE TABLE vms.alarm_event (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id  bigint NOT NULL REFERENCES vms.alarm (id) ON DELETE CASCADE,
    at        timestamptz NOT NULL DEFAULT now(),
    kind      text NOT NULL CHECK (kind IN ('raised', 'escalated', 'acknowledged', 'planned', 'cleared', 'unsuppressed')),
    level     smallint NOT NULL,
    actor     text NOT NULL DEFAULT session_user,
    notify    boolean NOT NULL,
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alarm_event_alarm_idx ON vms.alarm_event (alarm_id, id);
CREATE INDEX alarm_event_at_idx ON vms.alarm_event (at);
COMMENT ON TABLE vms.alarm_event IS
    'every alarm event (raised, escalated, acknowledged, planned, cleared, unsuppressed) with level and actor; notify marks those people are told of (not masked, not suppressed)';

-- A raise: deadlines from the contract covering the code (else the level's),
-- recorded under a mask in force (never notified) or under the device's
-- open offline alarm for a channel's offline or stream fault (root cause:
-- suppressed, not notified while that one is open).  Helpers it calls are
-- caller's-rights functions defined with the rules (20_alarm_rules.sql).
CREATE FUNCTION vms.alarm_raise(code vms.gbcode, fault_type text, level smallint,
                                source text, detail jsonb DEFAULT '{}')
    RETURNS bigint
    -- every statement in it is a lookup by key: index scans even when the
    -- planner's statistics still show an empty alarm table (a mass outage
    -- on a new system would otherwise scan the growing table per raise)
    LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
    dl record;
    alarm_id bigint;
    fresh boolean;
    quiet boolean;
    mask bigint;
    root bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.alarm_level l WHERE l.level = alarm_raise.level) THEN
        RAISE EXCEPTION 'alarm level % does not exist', alarm_raise.level
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Levels are 1 (I, urgent) to 4 (IV, ordinary).';
    END IF;
    SELECT * INTO dl FROM vms.alarm_deadlines(alarm_raise.code, alarm_raise.level);
    mask := vms.alarm_mask_for(alarm_raise.code, alarm_raise.fault_type);
    root := vms.alarm_root_for(alarm_raise.code, alarm_raise.fault_type);
    INSERT INTO vms.alarm AS a (code, fault_type, level, source, detail, respond_by, plan_by, fix_by,
                                contract_id, mask_id, root_alarm_id)
    VALUES (alarm_raise.code, alarm_raise.fault_type, alarm_raise.level, alarm_raise.source,
            alarm_raise.detail, now() + dl.respond_within, now() + dl.plan_within, now() + dl.fix_within,
            dl.contract_id, mask, root)
    ON CONFLICT (code, fault_type) WHERE state <> 'cleared' DO UPDATE
        SET occurrences = a.occurrences + 1,
            last_raised_at = now(),
            level = least(a.level, EXCLUDED.level),
            respond_by = least(a.respond_by, EXCLUDED.respond_by),
            plan_by = least(a.plan_by, EXCLUDED.plan_by),
            fix_by = least(a.fix_by, EXCLUDED.fix_by),
            root_alarm_id = coalesce(a.root_alarm_id, EXCLUDED.root_alarm_id),
            detail = EXCLUDED.detail
    RETURNING a.id, a.occurrences = 1, a.mask_id, a.root_alarm_id INTO alarm_id, fresh, mask, root;
    quiet := mask IS NOT NULL
             OR EXISTS (SELECT 1 FROM vms.alarm r WHERE r.id = root AND r.state <> 'cleared');
    IF fresh THEN
        INSERT INTO vms.alarm_event (alarm_id, kind, level, notify, detail)
        VALUES (alarm_id, 'raised', alarm_raise.level, NOT quiet,
                jsonb_strip_nulls(jsonb_build_object('source', alarm_raise.source, 'mask', mask, 'root', root,
                                                     'detail', alarm_raise.detail)));
        -- a device going offline: its channels' open offline and stream
        -- alarms now have it as their root cause
        IF alarm_raise.fault_type = 'offline' THEN
            UPDATE vms.alarm c SET root_alarm_id = alarm_id
              FROM vms.channel ch
             WHERE ch.device_code = alarm_raise.code AND c.code = ch.code
               AND c.fault_type IN ('offline', 'stream') AND c.state <> 'cleared' AND c.root_alarm_id IS NULL;
        END IF;
    END IF;
    IF NOT quiet THEN
        PERFORM pg_notify('vms_alarm', json_build_object('id', alarm_id, 'code', alarm_raise.code::text,
                          'fault_type', alarm_raise.fault_type, 'level', alarm_raise.level)::text);
    END IF;
    RETURN alarm_id;
END $$;
COMMENT ON FUNCTION vms.alarm_raise(vms.gbcode, text, smallint, text, jsonb) IS
    'raise an alarm, or count one more occurrence of the open alarm for the same code and fault type; deadlines by contract and level; masked or root-cause-suppressed alarms are recorded, not notified; others notify channel vms_alarm and get a notify event';

CREATE FUNCTION vms.alarm_acknowledge(alarm_id bigint) RETURNS boolean
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    a vms.alarm;
BEGIN
    UPDATE vms.alarm SET state = 'acknowledged', acknowledged_by = session_user, acknowledged_at = now()
     WHERE id = alarm_id AND state = 'open' RETURNING * INTO a;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO vms.alarm_event (alarm_id, kind, level, notify) VALUES (a.id, 'acknowledged', a.level, false);
    RETURN true;
END $$;
COMMENT ON FUNCTION vms.alarm_acknowledge(bigint) IS 'acknowledge (respond to) an open alarm; false if it was not open';

-- A clear; clearing a device's offline alarm clears its channels' alarms
-- suppressed under it (a stream fault found again is raised again by the
-- next inspection), except a channel offline its catalog still reports:
-- that one stays open and is notified now as a fault of its own.
CREATE FUNCTION vms.alarm_clear(code vms.gbcode, fault_type text, reason text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
    a vms.alarm;
    quiet boolean;
BEGIN
    UPDATE vms.alarm x SET state = 'cleared', cleared_at = now(), clear_reason = alarm_clear.reason
     WHERE x.code = alarm_clear.code AND x.fault_type = alarm_clear.fault_type AND x.state <> 'cleared'
    RETURNING * INTO a;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    quiet := a.mask_id IS NOT NULL
             OR EXISTS (SELECT 1 FROM vms.alarm r WHERE r.id = a.root_alarm_id AND r.state <> 'cleared');
    INSERT INTO vms.alarm_event (alarm_id, kind, level, notify, detail)
    VALUES (a.id, 'cleared', a.level, NOT quiet, jsonb_strip_nulls(jsonb_build_object('reason', alarm_clear.reason)));
    WITH c AS (
        UPDATE vms.alarm x SET state = 'cleared', cleared_at = now(),
               clear_reason = 'root cause cleared: ' || coalesce(alarm_clear.reason, 'device alarm cleared')
         WHERE x.root_alarm_id = a.id AND x.state <> 'cleared'
           AND NOT (x.fault_type = 'offline'
                    AND EXISTS (SELECT 1 FROM vms.channel_status s WHERE s.code = x.code AND s.status <> 'ON'))
        RETURNING x.id, x.level)
    INSERT INTO vms.alarm_event (alarm_id, kind, level, notify, detail)
    SELECT c.id, 'cleared', c.level, false, jsonb_build_object('reason', 'root cause cleared', 'root', a.id) FROM c;
    INSERT INTO vms.alarm_event (alarm_id, kind, level, notify, detail)
    SELECT x.id, 'unsuppressed', x.level, x.mask_id IS NULL, jsonb_build_object('root', a.id)
      FROM vms.alarm x WHERE x.root_alarm_id = a.id AND x.state <> 'cleared';
    RETURN true;
END $$;
COMMENT ON FUNCTION vms.alarm_clear(vms.gbcode, text, text) IS
    'clear the open alarm for a code and fault type with a reason; false if none was open; a device''s offline alarm takes its suppressed channel alarms with it (a channel its catalog still reports offline stays open, now notified)';
