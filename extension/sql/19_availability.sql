-- Availability accounting (在线率 / 离线时长): online, offline and unknown
-- intervals of every device and channel, and the figures the O&M contracts
-- pay by, per device, channel, unit, region and maintenance contractor.
--
-- Where the states come from:
--   device   vms.device_event 'online' / 'offline' (written by the SIP
--            worker at every flip); a state holds until the next one.
--   channel  its device's state, and while the device is online: offline
--            when its catalog status (vms.channel_status_event, kept from
--            catalog answers and NOTIFY) is not ON, or when the latest
--            inspection of it (vms.quality_result.stream_ok) could not pull
--            the stream; no catalog report or inspection yet counts as ON /
--            stream ok, as the SIP worker does.
--   unknown  before a device's first transition, and during the gaps in
--            vms.availability_gap: the SIP worker's restart grace (recorded
--            by a trigger when a device is found offline at the end of the
--            grace: the grace itself is unknown, not offline) and any gap a
--            DBA records (a server outage, for all devices).
-- Unknown time is excluded from the ratio's denominator; a period's end
-- later than now() is clipped to now().

-- Maintenance contracts (运维合同) and what they cover: units (and their
-- sub-units) or single devices; a device's own assignment wins over its
-- unit's, the nearest unit over its ancestors.
CREATE TABLE vms.maintenance_contract (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    contractor  text NOT NULL,
    starts_on   date,
    ends_on     date,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_on IS NULL OR starts_on IS NULL OR ends_on >= starts_on)
);
COMMENT ON TABLE vms.maintenance_contract IS
    'maintenance contracts (运维合同): the contractor paid by the availability and fault-fix figures of what the contract covers';

CREATE TABLE vms.maintenance_scope (
    contract_id  bigint NOT NULL REFERENCES vms.maintenance_contract (id) ON DELETE CASCADE,
    unit_id      bigint UNIQUE REFERENCES vms.org_unit (id) ON DELETE CASCADE,
    device_code  vms.gbcode UNIQUE REFERENCES vms.device (code) ON DELETE CASCADE,
    CHECK ((unit_id IS NULL) <> (device_code IS NULL))
);
CREATE INDEX maintenance_scope_contract_idx ON vms.maintenance_scope (contract_id);
COMMENT ON TABLE vms.maintenance_scope IS
    'what a maintenance contract covers: a unit (with its sub-units) or a device; at most one contract per unit and per device';

CREATE FUNCTION vms.contract_for(code vms.gbcode) RETURNS bigint
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    -- plpgsql, not sql: called once per alarm raised, its plan is kept
    RETURN (
    WITH RECURSIVE dev AS (
        SELECT x.code, x.unit_id FROM (
            SELECT c.device_code AS code, coalesce(c.unit_id, d.unit_id) AS unit_id, 1 AS pref
              FROM vms.channel c JOIN vms.device d ON d.code = c.device_code WHERE c.code = contract_for.code
            UNION ALL
            SELECT d.code, d.unit_id, 2 FROM vms.device d WHERE d.code = contract_for.code) x
         ORDER BY x.pref LIMIT 1),
    up(unit_id, depth) AS (
        SELECT unit_id, 0 FROM dev WHERE unit_id IS NOT NULL
        UNION ALL
        SELECT u.parent_id, up.depth + 1 FROM up JOIN vms.org_unit u ON u.id = up.unit_id
         WHERE u.parent_id IS NOT NULL AND up.depth < 64)
    SELECT coalesce((SELECT s.contract_id FROM vms.maintenance_scope s JOIN dev ON s.device_code = dev.code),
                    (SELECT s.contract_id FROM up JOIN vms.maintenance_scope s ON s.unit_id = up.unit_id
                      ORDER BY up.depth LIMIT 1)));
END $$;
COMMENT ON FUNCTION vms.contract_for(vms.gbcode) IS
    'the maintenance contract covering a device or channel: the device''s own, else its (channel''s, else device''s) unit''s or the nearest ancestor unit''s; NULL if none';

-- Catalog status history: every change of vms.channel_status.
CREATE TABLE vms.channel_status_event (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code    vms.gbcode NOT NULL,
    at      timestamptz NOT NULL,
    status  text NOT NULL
);
CREATE INDEX channel_status_event_code_idx ON vms.channel_status_event (code, at);
COMMENT ON TABLE vms.channel_status_event IS
    'every change of a channel''s catalog status (ON/OFF/VLOST/DEFECT/DEL) with its time, kept from vms.channel_status';

CREATE FUNCTION vms._channel_status_history() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO vms.channel_status_event (code, at, status)
        SELECT n.code, n.reported_at, n.status FROM new_rows n;
    ELSE
        INSERT INTO vms.channel_status_event (code, at, status)
        SELECT n.code, n.reported_at, n.status
          FROM new_rows n JOIN old_rows o ON o.code = n.code
         WHERE o.status IS DISTINCT FROM n.status;
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._channel_status_history() IS 'internal: appends catalog status changes to vms.channel_status_event';
CREATE TRIGGER channel_status_history_ins AFTER INSERT ON vms.channel_status
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._channel_status_history();
CREATE TRIGGER channel_status_history_upd AFTER UPDATE ON vms.channel_status
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._channel_status_history();

-- Periods in which a device's state is not known.
CREATE TABLE vms.availability_gap (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_code  vms.gbcode,
    from_ts      timestamptz NOT NULL,
    to_ts        timestamptz NOT NULL,
    reason       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (to_ts >= from_ts)
);
CREATE INDEX availability_gap_device_idx ON vms.availability_gap (device_code, from_ts);
COMMENT ON TABLE vms.availability_gap IS
    'periods in which a device''s state is unknown (SIP worker restart grace, recorded server outages); device_code NULL = every device';

-- The SIP worker marks a device offline at the end of its restart grace
-- when no keepalive came: the grace before that is unknown, not offline.
CREATE FUNCTION vms._availability_grace_gap() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    grace interval := coalesce(nullif(current_setting('vms.sip_restart_grace', true), ''), '180s')::interval;
BEGIN
    INSERT INTO vms.availability_gap (device_code, from_ts, to_ts, reason)
    SELECT n.device_code, n.at - grace, n.at, 'SIP worker restart grace (' || grace || '): state unknown'
      FROM new_rows n
     WHERE n.event = 'offline' AND n.cause LIKE '%restart grace%';
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._availability_grace_gap() IS
    'internal: an offline transition at the end of the SIP restart grace records the grace as an unknown period';
CREATE TRIGGER device_event_grace_gap AFTER INSERT ON vms.device_event
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._availability_grace_gap();

CREATE FUNCTION vms.availability_gap_add(from_ts timestamptz, to_ts timestamptz, reason text,
                                         device vms.gbcode DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    gap_id bigint;
BEGIN
    PERFORM vms._require_reason(reason, 'an availability gap');
    IF from_ts IS NULL OR to_ts IS NULL OR to_ts < from_ts THEN
        RAISE EXCEPTION 'an availability gap needs from_ts <= to_ts'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('to_ts is %s before from_ts.', from_ts - to_ts),
                  HINT = 'Give the start and the end of the period whose state is unknown.';
    END IF;
    INSERT INTO vms.availability_gap (device_code, from_ts, to_ts, reason)
    VALUES (device, availability_gap_add.from_ts, availability_gap_add.to_ts, reason)
    RETURNING id INTO gap_id;
    RETURN gap_id;
END $$;
COMMENT ON FUNCTION vms.availability_gap_add(timestamptz, timestamptz, text, vms.gbcode) IS
    'record a period whose state is unknown (a server outage: device NULL = every device); excluded from availability';

CREATE FUNCTION vms._mr_seconds(m tstzmultirange) RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(sum(extract(epoch FROM upper(r) - lower(r)))::float8, 0) FROM unnest(m) r
$$;
COMMENT ON FUNCTION vms._mr_seconds(tstzmultirange) IS 'internal: the length in seconds of a bounded multirange';

-- A state's segments: from each event to the next one of the same subject
-- (or the end); the last event before the period carries its state in.
-- Returns, per subject, the online and offline time within the period (gaps
-- removed) and the outages that began in it.
CREATE FUNCTION vms._availability_ranges(p_from timestamptz, p_to timestamptz, p_kind text)
    RETURNS TABLE (code vms.gbcode, period tstzmultirange, online tstzmultirange, offline tstzmultirange,
                   offline_events integer)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    t timestamptz := least(p_to, now());
BEGIN
    IF p_kind NOT IN ('device', 'channel') THEN
        RAISE EXCEPTION 'availability subjects are devices or channels, not "%"', p_kind
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use device or channel.';
    END IF;
    IF p_from IS NULL OR p_to IS NULL THEN
        RAISE EXCEPTION 'an availability period needs both ends'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Give both ends of the period.';
    END IF;
    IF t < p_from THEN
        t := p_from;   -- an empty period: every subject, no time
    END IF;
    RETURN QUERY
    WITH dev_ev AS (
        SELECT x.device_code, x.at, x.up, x.id FROM (
            SELECT e.device_code, e.at, e.event = 'online' AS up, e.id
              FROM vms.device_event e
             WHERE e.event IN ('online', 'offline') AND e.at >= p_from AND e.at < t
            UNION ALL
            SELECT l.device_code, l.at, l.up, l.id
              FROM vms.device d
             CROSS JOIN LATERAL (SELECT e.device_code, e.at, e.event = 'online' AS up, e.id
                                   FROM vms.device_event e
                                  WHERE e.device_code = d.code AND e.event IN ('online', 'offline') AND e.at < p_from
                                  ORDER BY e.at DESC, e.id DESC LIMIT 1) l) x),
    dev_seg AS (
        SELECT s.device_code, s.up,
               tstzrange(s.at, coalesce(lead(s.at) OVER (PARTITION BY s.device_code ORDER BY s.at, s.id), t)) AS r
          FROM dev_ev s),
    dev AS (
        SELECT d.code,
               coalesce(range_agg(s.r) FILTER (WHERE s.up), '{}') AS up_mr,
               coalesce(range_agg(s.r) FILTER (WHERE NOT s.up), '{}') AS down_mr,
               coalesce((SELECT range_agg(tstzrange(g.from_ts, g.to_ts)) FROM vms.availability_gap g
                          WHERE (g.device_code = d.code OR g.device_code IS NULL)
                            AND g.to_ts > p_from AND g.from_ts < t), '{}') AS gap_mr
          FROM vms.device d LEFT JOIN dev_seg s ON s.device_code = d.code
         GROUP BY d.code),
    -- channels: catalog status and stream results as 'bad' segments
    ch_ev AS (
        SELECT x.code, x.at, x.bad, x.src, x.id FROM (
            SELECT e.code, e.at, e.status <> 'ON' AS bad, 1 AS src, e.id
              FROM vms.channel_status_event e WHERE p_kind = 'channel' AND e.at >= p_from AND e.at < t
            UNION ALL
            SELECT l.code, l.at, l.bad, 1, l.id
              FROM vms.channel c
             CROSS JOIN LATERAL (SELECT e.code, e.at, e.status <> 'ON' AS bad, e.id FROM vms.channel_status_event e
                                  WHERE e.code = c.code AND e.at < p_from ORDER BY e.at DESC, e.id DESC LIMIT 1) l
             WHERE p_kind = 'channel'
            UNION ALL
            SELECT q.channel_code, q.at, NOT q.stream_ok, 2, q.id
              FROM vms.quality_result q WHERE p_kind = 'channel' AND q.at >= p_from AND q.at < t
            UNION ALL
            SELECT l.channel_code, l.at, l.bad, 2, l.id
              FROM vms.channel c
             CROSS JOIN LATERAL (SELECT q.channel_code, q.at, NOT q.stream_ok AS bad, q.id FROM vms.quality_result q
                                  WHERE q.channel_code = c.code AND q.at < p_from ORDER BY q.at DESC, q.id DESC LIMIT 1) l
             WHERE p_kind = 'channel') x),
    ch_seg AS (
        SELECT s.code, s.bad,
               tstzrange(s.at, coalesce(lead(s.at) OVER (PARTITION BY s.code, s.src ORDER BY s.at, s.id), t)) AS r
          FROM ch_ev s),
    ch_bad AS (
        SELECT s.code, range_agg(s.r) AS bad_mr FROM ch_seg s WHERE s.bad GROUP BY s.code),
    subj AS (
        SELECT d.code, d.up_mr, d.down_mr, d.gap_mr FROM dev d WHERE p_kind = 'device'
        UNION ALL
        SELECT c.code, d.up_mr - coalesce(b.bad_mr, '{}'),
               d.down_mr + (d.up_mr * coalesce(b.bad_mr, '{}')), d.gap_mr
          FROM vms.channel c JOIN dev d ON d.code = c.device_code
          LEFT JOIN ch_bad b ON b.code = c.code
         WHERE p_kind = 'channel'),
    per AS (SELECT tstzmultirange(tstzrange(p_from, t)) AS p)
    SELECT s.code, per.p,
           (s.up_mr - s.gap_mr) * per.p,
           (s.down_mr - s.gap_mr) * per.p,
           (SELECT count(*)::int FROM unnest(s.down_mr) r WHERE lower(r) >= p_from AND lower(r) < t)
      FROM subj s, per;
END $$;
COMMENT ON FUNCTION vms._availability_ranges(timestamptz, timestamptz, text) IS
    'internal: per device or channel, the period, its online and offline time (unknown gaps removed) and the outages that began in it';

CREATE FUNCTION vms.availability_intervals(from_ts timestamptz, to_ts timestamptz, kind text DEFAULT 'device')
    RETURNS TABLE (code text, state text, from_ts timestamptz, to_ts timestamptz)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT a.code::text, s.state, lower(s.r), upper(s.r)
      FROM vms._availability_ranges(availability_intervals.from_ts, availability_intervals.to_ts, kind) a
     CROSS JOIN LATERAL (
         SELECT 'online' AS state, r FROM unnest(a.online) r
         UNION ALL SELECT 'offline', r FROM unnest(a.offline) r
         UNION ALL SELECT 'unknown', r FROM unnest(a.period - a.online - a.offline) r) s
     ORDER BY 1, 3
$$;
COMMENT ON FUNCTION vms.availability_intervals(timestamptz, timestamptz, text) IS
    'the online, offline and unknown intervals of every device (kind device) or channel (kind channel) in [from_ts, least(to_ts, now())): gap-free, non-overlapping';

CREATE FUNCTION vms.availability(from_ts timestamptz, to_ts timestamptz, group_by text DEFAULT 'unit')
    RETURNS TABLE (group_key text, group_name text, online_ratio float8, offline_seconds float8,
                   offline_events integer, online_seconds float8, unknown_seconds float8, members integer)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
BEGIN
    IF group_by IS NULL OR group_by NOT IN ('device', 'channel', 'unit', 'region', 'contractor') THEN
        RAISE EXCEPTION 'availability cannot be grouped by "%"', group_by
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Groups are devices, channels, units, regions (civil codes) and maintenance contractors.',
                  HINT = 'Use device, channel, unit, region or contractor.';
    END IF;
    RETURN QUERY
    -- seconds summed in line (a function call per multirange cost more than the rest)
    WITH s AS (
        SELECT a.code, a.offline_events AS ev,
               coalesce((SELECT sum(extract(epoch FROM upper(r) - lower(r))) FROM unnest(a.online) r), 0)::float8 AS on_s,
               coalesce((SELECT sum(extract(epoch FROM upper(r) - lower(r))) FROM unnest(a.offline) r), 0)::float8 AS off_s,
               greatest(extract(epoch FROM least(availability.to_ts, now()) - availability.from_ts), 0)::float8 AS per_s
          FROM vms._availability_ranges(availability.from_ts, availability.to_ts,
                                        CASE WHEN group_by = 'device' THEN 'device' ELSE 'channel' END) a),
    m AS (SELECT s.code, s.on_s, s.off_s, s.per_s - s.on_s - s.off_s AS unk_s, s.ev FROM s),
    g AS (
        SELECT CASE group_by
                   WHEN 'device' THEN d.code::text
                   WHEN 'channel' THEN c.code::text
                   WHEN 'unit' THEN coalesce(c.unit_id, d.unit_id)::text
                   WHEN 'region' THEN coalesce(c.civil_code, d.civil_code)
                   ELSE k.contractor END AS key,
               CASE group_by
                   WHEN 'device' THEN d.name
                   WHEN 'channel' THEN c.name
                   WHEN 'unit' THEN (SELECT u.name FROM vms.org_unit u WHERE u.id = coalesce(c.unit_id, d.unit_id))
                   WHEN 'region' THEN (SELECT r.name FROM vms.region r WHERE r.civil_code = coalesce(c.civil_code, d.civil_code))
                   ELSE k.contractor END AS name,
               m.*
          FROM m
          LEFT JOIN vms.channel c ON group_by <> 'device' AND c.code = m.code
          JOIN vms.device d ON d.code = coalesce(c.device_code, m.code)
          LEFT JOIN LATERAL (SELECT k.contractor FROM vms.maintenance_contract k
                              WHERE group_by = 'contractor' AND k.id = vms.contract_for(m.code)) k ON true)
    SELECT g.key, min(g.name), sum(g.on_s) / nullif(sum(g.on_s) + sum(g.off_s), 0),
           sum(g.off_s), sum(g.ev)::int, sum(g.on_s), sum(g.unk_s), count(*)::int
      FROM g GROUP BY g.key ORDER BY g.key;
END $$;
COMMENT ON FUNCTION vms.availability(timestamptz, timestamptz, text) IS
    'online rate (在线率) and offline duration (离线时长) in [from_ts, least(to_ts, now())) per device, channel, unit, region or contractor: online_ratio = online / (online + offline) seconds summed over the members (channels for unit, region and contractor), unknown time excluded; offline_events = outages that began in the period; NULL ratio when nothing is known';
