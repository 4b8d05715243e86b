-- Alarms that follow the network: a device or channel going offline raises
-- an alarm (fault_type 'offline', source 'sip') at a level by device type,
-- coming back clears it with the reason; while a device is offline its
-- channels' own offline and stream alarms are suppressed under its alarm
-- (root cause); masks (屏蔽) record alarms without notifying them; response,
-- plan and fix deadlines per level and per maintenance contract; what is
-- overdue, and escalation when a deadline passes.

-- Level by fault and GB/T 28181 device type (digits 11-13 of the code); the
-- row without a type is the fault's default.
CREATE TABLE vms.alarm_rule (
    fault_type  text NOT NULL,
    gb_type     integer,
    level       smallint NOT NULL REFERENCES vms.alarm_level (level)
);
CREATE UNIQUE INDEX alarm_rule_idx ON vms.alarm_rule (fault_type, coalesce(gb_type, -1));
INSERT INTO vms.alarm_rule (fault_type, gb_type, level)
SELECT 'offline', t, 1 FROM unnest(ARRAY[200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211,
                                         500, 501, 502, 503, 505]) t
UNION ALL SELECT 'offline', t, 2 FROM unnest(ARRAY[111, 118, 130]) t
UNION ALL SELECT 'offline', NULL, 3;
COMMENT ON TABLE vms.alarm_rule IS
    'alarm level per fault type and GB/T 28181 device type (NULL type: the default); offline: platforms and servers I, DVR/NVR/HVR II, cameras and the rest III';

CREATE FUNCTION vms.alarm_level_for(fault_type text, code vms.gbcode) RETURNS smallint
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    RETURN coalesce((SELECT r.level FROM vms.alarm_rule r
                      WHERE r.fault_type = alarm_level_for.fault_type AND r.gb_type = vms.gbcode_type(alarm_level_for.code)),
                    (SELECT r.level FROM vms.alarm_rule r
                      WHERE r.fault_type = alarm_level_for.fault_type AND r.gb_type IS NULL),
                    3)::smallint;
END $$;
COMMENT ON FUNCTION vms.alarm_level_for(text, vms.gbcode) IS
    'the level of a fault of a device or channel: vms.alarm_rule for its type, else the fault''s default, else III';

-- Deadlines per contract and level; a NULL column takes the level's default.
CREATE TABLE vms.contract_deadline (
    contract_id     bigint NOT NULL REFERENCES vms.maintenance_contract (id) ON DELETE CASCADE,
    level           smallint NOT NULL REFERENCES vms.alarm_level (level),
    respond_within  interval,
    plan_within     interval,
    fix_within      interval,
    PRIMARY KEY (contract_id, level)
);
COMMENT ON TABLE vms.contract_deadline IS
    'response, plan and fix deadlines a maintenance contract sets per alarm level (NULL: the level''s default in vms.alarm_level)';

CREATE FUNCTION vms.alarm_deadlines(code vms.gbcode, level smallint)
    RETURNS TABLE (contract_id bigint, respond_within interval, plan_within interval, fix_within interval)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    k bigint := vms.contract_for(alarm_deadlines.code);
BEGIN
    RETURN QUERY
    SELECT k, coalesce(cd.respond_within, l.respond_within), coalesce(cd.plan_within, l.plan_within),
           coalesce(cd.fix_within, l.fix_within)
      FROM vms.alarm_level l
      LEFT JOIN vms.contract_deadline cd ON cd.contract_id = k AND cd.level = l.level
     WHERE l.level = alarm_deadlines.level;
END $$;
COMMENT ON FUNCTION vms.alarm_deadlines(vms.gbcode, smallint) IS
    'the deadlines an alarm of this level on this code gets: its maintenance contract''s, else the level''s defaults';

-- Masks (屏蔽): scope x fault types x time window.
CREATE TABLE vms.alarm_mask (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL,
    scope        jsonb NOT NULL,
    fault_types  text[],
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz,
    reason       text NOT NULL,
    created_by   text NOT NULL DEFAULT session_user,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at IS NULL OR ends_at > starts_at)
);
COMMENT ON TABLE vms.alarm_mask IS
    'alarm masks (屏蔽) for planned work and known faults: scope (regions, units, catalog_nodes, tags, codes), fault types (NULL: all), window [starts_at, ends_at); alarms raised under one are recorded, not notified';

CREATE FUNCTION vms.alarm_mask_covers(scope jsonb, code vms.gbcode) RETURNS boolean
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    WITH RECURSIVE subj AS (
        SELECT ch.code AS chan, ch.device_code AS dev, coalesce(ch.civil_code, d.civil_code) AS civil,
               coalesce(ch.unit_id, d.unit_id) AS unit
          FROM vms.channel ch JOIN vms.device d ON d.code = ch.device_code WHERE ch.code = alarm_mask_covers.code
        UNION ALL
        SELECT NULL, d.code, d.civil_code, d.unit_id FROM vms.device d WHERE d.code = alarm_mask_covers.code),
    units(id, depth) AS (
        SELECT s.unit, 0 FROM subj s WHERE s.unit IS NOT NULL
        UNION ALL
        SELECT u.parent_id, units.depth + 1 FROM units JOIN vms.org_unit u ON u.id = units.id
         WHERE u.parent_id IS NOT NULL AND units.depth < 64),
    chans AS (
        SELECT s.chan AS code FROM subj s WHERE s.chan IS NOT NULL
        UNION
        SELECT ch.code FROM subj s JOIN vms.channel ch ON ch.device_code = s.dev WHERE s.chan IS NULL)
    SELECT EXISTS (SELECT 1 FROM subj s, jsonb_array_elements_text(coalesce(scope -> 'codes', '[]')) x
                    WHERE x IN (s.chan::text, s.dev::text))
        OR EXISTS (SELECT 1 FROM subj s, jsonb_array_elements_text(coalesce(scope -> 'regions', '[]')) r
                    WHERE s.civil LIKE r || '%')
        OR EXISTS (SELECT 1 FROM units, jsonb_array_elements_text(coalesce(scope -> 'units', '[]')) u
                    WHERE units.id::text = u)
        OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(coalesce(scope -> 'catalog_nodes', '[]')) n
                    CROSS JOIN LATERAL vms.catalog_subtree(n::vms.gbcode) t
                    JOIN vms.catalog_member m ON m.node_code = t JOIN chans ON chans.code = m.channel_code)
        OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(coalesce(scope -> 'tags', '[]')) g
                    CROSS JOIN LATERAL vms.tag_subtree(g::bigint) t
                    JOIN vms.channel_tag ct ON ct.tag_id = t JOIN chans ON chans.code = ct.channel_code)
$$;
COMMENT ON FUNCTION vms.alarm_mask_covers(jsonb, vms.gbcode) IS
    'whether a mask scope covers a device or channel: codes (the device or channel, or a channel''s device), regions (civil-code prefixes), units (with sub-units), catalog_nodes and tags (subtrees; a device through any of its channels)';

CREATE FUNCTION vms.alarm_mask_for(code vms.gbcode, fault_type text, at timestamptz DEFAULT now()) RETURNS bigint
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    RETURN (SELECT m.id FROM vms.alarm_mask m
             WHERE m.starts_at <= alarm_mask_for.at AND (m.ends_at IS NULL OR alarm_mask_for.at < m.ends_at)
               AND (m.fault_types IS NULL OR alarm_mask_for.fault_type = ANY (m.fault_types))
               AND vms.alarm_mask_covers(m.scope, alarm_mask_for.code)
             ORDER BY m.id LIMIT 1);
END $$;
COMMENT ON FUNCTION vms.alarm_mask_for(vms.gbcode, text, timestamptz) IS 'the first mask in force at a time for a code and fault type; NULL if none';

CREATE FUNCTION vms.alarm_mask_add(name text, scope jsonb, fault_types text[], starts_at timestamptz,
                                   ends_at timestamptz, reason text) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    bad text;
    mask_id bigint;
BEGIN
    PERFORM vms._require_reason(reason, 'an alarm mask');
    IF jsonb_typeof(scope) IS DISTINCT FROM 'object' OR scope = '{}' THEN
        RAISE EXCEPTION 'an alarm mask needs a scope'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'The scope must be a non-empty JSON object.',
                  HINT = 'Use keys regions, units, catalog_nodes, tags, codes, each an array.';
    END IF;
    SELECT k INTO bad FROM jsonb_each(scope) e(k, v)
     WHERE k NOT IN ('regions', 'units', 'catalog_nodes', 'tags', 'codes') OR jsonb_typeof(v) <> 'array' LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'alarm mask scope key "%" is unknown or not an array', bad
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use keys regions, units, catalog_nodes, tags, codes, each an array.';
    END IF;
    PERFORM n::vms.gbcode FROM jsonb_array_elements_text(coalesce(scope -> 'catalog_nodes', '[]')) n;
    SELECT g INTO bad FROM jsonb_array_elements_text(coalesce(scope -> 'tags', '[]')) g WHERE g !~ '^[0-9]{1,18}$' LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'alarm mask tag "%" is not a tag id', bad USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF starts_at IS NULL OR (ends_at IS NOT NULL AND ends_at <= starts_at) THEN
        RAISE EXCEPTION 'an alarm mask needs a window that starts before it ends'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Give starts_at, and ends_at later (or NULL: until removed).';
    END IF;
    INSERT INTO vms.alarm_mask (name, scope, fault_types, starts_at, ends_at, reason)
    VALUES (alarm_mask_add.name, scope, fault_types, starts_at, ends_at, reason) RETURNING id INTO mask_id;
    RETURN mask_id;
END $$;
COMMENT ON FUNCTION vms.alarm_mask_add(text, jsonb, text[], timestamptz, timestamptz, text) IS
    'mask alarms (屏蔽) in a scope, for fault types (NULL: all), in [starts_at, ends_at), with a reason';

-- Root cause: a channel's offline or stream fault while its device has an
-- open offline alarm.
CREATE FUNCTION vms.alarm_root_for(code vms.gbcode, fault_type text) RETURNS bigint
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    IF alarm_root_for.fault_type NOT IN ('offline', 'stream') THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT a.id FROM vms.channel ch
              JOIN vms.alarm a ON a.code = ch.device_code AND a.fault_type = 'offline' AND a.state <> 'cleared'
             WHERE ch.code = alarm_root_for.code AND ch.device_code <> ch.code);
END $$;
COMMENT ON FUNCTION vms.alarm_root_for(vms.gbcode, text) IS
    'the open offline alarm of a channel''s device, for the channel''s offline and stream faults (root cause); NULL otherwise';

CREATE FUNCTION vms.alarm_plan(alarm_id bigint, note text) RETURNS boolean
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    a vms.alarm;
BEGIN
    UPDATE vms.alarm SET planned_at = now() WHERE id = alarm_id AND planned_at IS NULL AND state <> 'cleared'
    RETURNING * INTO a;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO vms.alarm_event (alarm_id, kind, level, notify, detail)
    VALUES (a.id, 'planned', a.level, false, jsonb_strip_nulls(jsonb_build_object('note', note)));
    RETURN true;
END $$;
COMMENT ON FUNCTION vms.alarm_plan(bigint, text) IS
    'record the repair plan of an open alarm (meets its plan deadline; opening a work order does it too); false if planned already or cleared';

-- The network raises and clears: device transitions from the SIP worker,
-- channel catalog status changes.
CREATE FUNCTION vms._alarm_device_events() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    e record;
BEGIN
    FOR e IN SELECT n.device_code, n.at, n.event, n.cause, n.address FROM new_rows n
              WHERE n.event IN ('online', 'offline') ORDER BY n.at, n.id LOOP
        IF e.event = 'offline' THEN
            PERFORM vms.alarm_raise(e.device_code, 'offline', vms.alarm_level_for('offline', e.device_code), 'sip',
                                    jsonb_strip_nulls(jsonb_build_object('cause', e.cause, 'at', e.at,
                                                                         'address', e.address)));
        ELSE
            PERFORM vms.alarm_clear(e.device_code, 'offline', 'back online: ' || coalesce(e.cause, 'device reported'));
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._alarm_device_events() IS
    'internal: a device going offline raises its offline alarm (level by type), coming back online clears it with the cause';
CREATE TRIGGER device_event_alarm AFTER INSERT ON vms.device_event
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._alarm_device_events();

CREATE FUNCTION vms._alarm_channel_status() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    e record;
BEGIN
    FOR e IN SELECT n.code, n.status FROM new_rows n ORDER BY n.at, n.id LOOP
        IF e.status = 'OFF' THEN
            PERFORM vms.alarm_raise(e.code, 'offline', vms.alarm_level_for('offline', e.code), 'sip',
                                    jsonb_build_object('status', e.status));
        ELSIF e.status IN ('ON', 'DEL') THEN
            PERFORM vms.alarm_clear(e.code, 'offline',
                                    CASE e.status WHEN 'ON' THEN 'catalog status ON' ELSE 'channel deleted by its device' END);
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._alarm_channel_status() IS
    'internal: a channel its catalog reports OFF raises its offline alarm, ON (or DEL) clears it (VLOST and DEFECT are the SIP worker''s video_loss and device_defect alarms)';
CREATE TRIGGER channel_status_event_alarm AFTER INSERT ON vms.channel_status_event
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._alarm_channel_status();

-- Deadlines passed: open alarms, not masked, not suppressed.
CREATE VIEW vms.alarm_overdue AS
SELECT a.id AS alarm_id, a.code, a.fault_type, a.level, a.source, d.deadline, d.due_at, now() - d.due_at AS overdue_by,
       a.contract_id, d.deadline = ANY (a.escalated) AS escalated
  FROM vms.alarm a
 CROSS JOIN LATERAL (VALUES ('respond', a.respond_by, a.acknowledged_at IS NULL),
                            ('plan', a.plan_by, a.planned_at IS NULL),
                            ('fix', a.fix_by, true)) d(deadline, due_at, pending)
 WHERE a.state <> 'cleared' AND d.pending AND d.due_at < now() AND a.mask_id IS NULL
   AND NOT EXISTS (SELECT 1 FROM vms.alarm r WHERE r.id = a.root_alarm_id AND r.state <> 'cleared');
COMMENT ON VIEW vms.alarm_overdue IS
    'open alarms past a deadline not met: respond (not acknowledged), plan (no plan or work order), fix (not cleared); masked and suppressed alarms excluded';

CREATE FUNCTION vms.alarm_escalate() RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    o record;
    n integer := 0;
    new_level smallint;
BEGIN
    FOR o IN SELECT v.alarm_id, v.deadline, v.due_at, v.level FROM vms.alarm_overdue v
              WHERE NOT v.escalated ORDER BY v.due_at, v.alarm_id LOOP
        UPDATE vms.alarm a SET level = greatest(a.level - 1, 1)::smallint, escalated = a.escalated || o.deadline
         WHERE a.id = o.alarm_id AND NOT o.deadline = ANY (a.escalated)
        RETURNING a.level INTO new_level;
        IF FOUND THEN
            INSERT INTO vms.alarm_event (alarm_id, kind, level, notify, detail)
            VALUES (o.alarm_id, 'escalated', new_level, true,
                    jsonb_build_object('deadline', o.deadline, 'due_at', o.due_at, 'from_level', o.level));
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.alarm_escalate() IS
    'escalate every alarm past a deadline not yet escalated for it: one level up (to I at most) and a notify event; returns how many; run it every minute';
