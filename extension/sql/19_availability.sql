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

-- Kept runs (issue 15): the state of every device (online/offline), and of
-- every channel's catalog status (ON or not) and stream (pulled or not),
-- as maximal runs of one state, kept as the events arrive so that a month
-- is summed from two runs per subject instead of rebuilt from every event.
-- A run starts at an event that changes the state (the last event at a
-- time, by id, gives the state from that time) and lasts until the next
-- one; the last run of a subject has to_ts 'infinity' (open: read as "until
-- the period's end").  Nothing before a subject's first event is kept
-- (unknown).  Each run carries the online and offline seconds and the
-- offline runs of its subject before it (counted from the subject's first
-- kept run: only differences are meaningful), so the figures of a period
-- are the difference of these sums at its two ends.  The statement
-- triggers below keep the runs exact under INSERT, UPDATE, DELETE
-- (retention included) and TRUNCATE of the events;
-- vms.availability_rebuild() recomputes them all (after events were loaded
-- with triggers disabled).
CREATE TABLE vms.availability_run (
    source          text NOT NULL CHECK (source IN ('device', 'catalog', 'stream')),
    code            vms.gbcode NOT NULL,
    up              boolean NOT NULL,
    from_ts         timestamptz NOT NULL,
    to_ts           timestamptz NOT NULL,
    online_before   numeric NOT NULL,
    offline_before  numeric NOT NULL,
    outages_before  integer NOT NULL,
    -- at a city (27_cluster_sync.sql): the district that sent the run
    district        text,
    -- the run at each end of a period is read from the index alone
    PRIMARY KEY (source, code, from_ts) INCLUDE (up, to_ts, online_before, offline_before, outages_before),
    CHECK (to_ts > from_ts)
);
-- channels whose catalog status or stream was bad in a period
CREATE INDEX availability_run_bad_idx ON vms.availability_run (to_ts) WHERE source <> 'device' AND NOT up;
COMMENT ON TABLE vms.availability_run IS
    'maximal runs of one state per device (source device: up = online), channel catalog status (catalog: up = ON) and channel stream (stream: up = pulled), kept from vms.device_event, vms.channel_status_event and vms.quality_result; to_ts infinity = still lasting; online_before, offline_before (seconds) and outages_before (offline runs) of the subject before the run, counted from an arbitrary origin';
COMMENT ON COLUMN vms.availability_run.district IS
    'at a city: the district whose replicated run this is (NULL: the node''s own run); only the runs of the district that owns the code are kept';

-- The events of a source as (code, at, id, up), for dynamic SQL.
CREATE FUNCTION vms._availability_source_sql(p_source text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_source
        WHEN 'device' THEN 'SELECT e.device_code AS code, e.at, e.id, e.event = ''online'' AS up'
                           ' FROM vms.device_event e WHERE e.event IN (''online'', ''offline'')'
        WHEN 'catalog' THEN 'SELECT e.code, e.at, e.id, e.status = ''ON'' AS up FROM vms.channel_status_event e WHERE true'
        WHEN 'stream' THEN 'SELECT e.channel_code AS code, e.at, e.id, e.stream_ok IS NOT FALSE AS up'
                           ' FROM vms.quality_result e WHERE true'
    END
$$;
COMMENT ON FUNCTION vms._availability_source_sql(text) IS
    'internal: the query of a run source''s events as (code, at, id, up)';

CREATE FUNCTION vms._availability_first_event(p_source text, p_code vms.gbcode) RETURNS timestamptz
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    first_at timestamptz;
BEGIN
    EXECUTE format('SELECT min(e.at) FROM (%s AND e.%I = $1) e', vms._availability_source_sql(p_source),
                   CASE p_source WHEN 'device' THEN 'device_code' WHEN 'catalog' THEN 'code' ELSE 'channel_code' END)
       INTO first_at USING p_code;
    RETURN first_at;
END $$;
COMMENT ON FUNCTION vms._availability_first_event(text, vms.gbcode) IS
    'internal: the time of a subject''s first event of a run source (NULL if none)';

-- Recompute the runs of the given subjects of a source after their events
-- at or after changed_from[i] changed.  The state before that time is
-- unchanged, so the run covering the instant before it (and every later
-- one) is rebuilt from the events since that run's start.  head_only[i]:
-- only events before every remaining event of the subject were deleted
-- (retention): the runs before the first remaining event go and the run
-- covering it starts there, without reading the events again.
CREATE FUNCTION vms._availability_refresh(p_source text, p_codes vms.gbcode[], p_changed_from timestamptz[],
                                          p_head_only boolean[] DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    src text := vms._availability_source_sql(p_source);
    col text := CASE p_source WHEN 'device' THEN 'device_code' WHEN 'catalog' THEN 'code' ELSE 'channel_code' END;
    codes vms.gbcode[];
    starts timestamptz[];
    on0 numeric[];
    off0 numeric[];
    n0 integer[];
BEGIN
    IF src IS NULL THEN
        RAISE EXCEPTION 'availability runs come from device, catalog or stream events, not "%"', p_source
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use device, catalog or stream.';
    END IF;
    -- at a city, a district's devices and channels (vms.cluster_owner,
    -- 27_cluster_sync.sql) have the district's runs, replicated: events the
    -- city records for them itself (it inspects a district's channels, the
    -- district cascades to it over SIP) leave those runs alone
    IF coalesce(cardinality(p_codes), 0) > 0 AND EXISTS (SELECT 1 FROM vms.cluster_owner) THEN
        SELECT array_agg(u.code ORDER BY u.i), array_agg(u.changed_from ORDER BY u.i),
               CASE WHEN p_head_only IS NOT NULL THEN array_agg(u.head ORDER BY u.i) END
          INTO p_codes, p_changed_from, p_head_only
          FROM unnest(p_codes, p_changed_from, p_head_only) WITH ORDINALITY u(code, changed_from, head, i)
         WHERE NOT EXISTS (SELECT 1 FROM vms.cluster_owner o
                            WHERE o.kind = CASE WHEN p_source = 'device' THEN 'device' ELSE 'channel' END
                              AND o.code = u.code);
    END IF;
    IF coalesce(cardinality(p_codes), 0) = 0 THEN
        RETURN;
    END IF;
    -- one writer of runs at a time (readers are not blocked): a concurrent
    -- writer's events are committed, and seen, before this one rebuilds
    LOCK TABLE vms.availability_run IN SHARE ROW EXCLUSIVE MODE;
    IF p_head_only IS NOT NULL AND true = ANY (p_head_only) THEN
        SELECT array_agg(x.code), array_agg(x.first_at) INTO codes, starts
          FROM (SELECT u.code, vms._availability_first_event(p_source, u.code) AS first_at
                  FROM unnest(p_codes, p_head_only) u(code, head) WHERE u.head) x;
        DELETE FROM vms.availability_run r
         WHERE r.ctid = ANY (ARRAY(
             SELECT k.ctid FROM unnest(codes, starts) c(code, first_at)
              CROSS JOIN LATERAL (SELECT r2.ctid FROM vms.availability_run r2
                                   WHERE r2.source = p_source AND r2.code = c.code
                                     AND (c.first_at IS NULL OR r2.to_ts <= c.first_at) OFFSET 0) k));
        -- the run covering the first remaining event starts there; its sums
        -- move with it (differences stay the same)
        UPDATE vms.availability_run r
           SET online_before = r.online_before + CASE WHEN r.up THEN extract(epoch FROM c.first_at - r.from_ts) ELSE 0 END,
               offline_before = r.offline_before + CASE WHEN NOT r.up THEN extract(epoch FROM c.first_at - r.from_ts) ELSE 0 END,
               from_ts = c.first_at
          FROM unnest(codes, starts) c(code, first_at)
         WHERE r.source = p_source AND r.code = c.code AND r.from_ts < c.first_at AND r.to_ts > c.first_at;
    END IF;
    -- the start of the run covering the instant before the first change, and
    -- the sums up to it (from the run before it)
    SELECT array_agg(x.code), array_agg(x.start_at), array_agg(coalesce(x.on0, 0)), array_agg(coalesce(x.off0, 0)),
           array_agg(coalesce(x.n0, 0))
      INTO codes, starts, on0, off0, n0
      FROM (SELECT u.code, st.start_at,
                   p.online_before + CASE WHEN p.up THEN extract(epoch FROM p.to_ts - p.from_ts) ELSE 0 END AS on0,
                   p.offline_before + CASE WHEN NOT p.up THEN extract(epoch FROM p.to_ts - p.from_ts) ELSE 0 END AS off0,
                   p.outages_before + CASE WHEN p.up THEN 0 ELSE 1 END AS n0
              FROM unnest(p_codes, p_changed_from, coalesce(p_head_only, array_fill(false, ARRAY[cardinality(p_codes)])))
                   u(code, changed_from, head)
              LEFT JOIN LATERAL (SELECT max(r.from_ts) AS start_at FROM vms.availability_run r
                                  WHERE r.source = p_source AND r.code = u.code AND r.from_ts < u.changed_from) st ON true
              LEFT JOIN LATERAL (SELECT r.* FROM vms.availability_run r
                                  WHERE r.source = p_source AND r.code = u.code AND r.from_ts < st.start_at
                                  ORDER BY r.from_ts DESC LIMIT 1) p ON true
             WHERE NOT u.head) x;
    IF codes IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM vms.availability_run r
     WHERE r.ctid = ANY (ARRAY(
         SELECT k.ctid FROM unnest(codes, starts) c(code, start_at)
          CROSS JOIN LATERAL (SELECT r2.ctid FROM vms.availability_run r2
                               WHERE r2.source = p_source AND r2.code = c.code
                                 AND r2.from_ts >= coalesce(c.start_at, '-infinity') OFFSET 0) k));
    EXECUTE format($q$
        INSERT INTO vms.availability_run (source, code, up, from_ts, to_ts, online_before, offline_before, outages_before)
        SELECT $3, s.code, s.up, s.at, s.nx,
               s.on0 + coalesce(sum(CASE WHEN s.up AND s.nx < 'infinity' THEN extract(epoch FROM s.nx - s.at) END) OVER w, 0),
               s.off0 + coalesce(sum(CASE WHEN NOT s.up AND s.nx < 'infinity' THEN extract(epoch FROM s.nx - s.at) END) OVER w, 0),
               s.n0 + (count(*) FILTER (WHERE NOT s.up) OVER w)::int
          FROM (SELECT f.code, f.up, f.at, f.on0, f.off0, f.n0,
                       coalesce(lead(f.at) OVER (PARTITION BY f.code ORDER BY f.at), 'infinity') AS nx
                  FROM (SELECT a.*, a.up IS DISTINCT FROM lag(a.up) OVER (PARTITION BY a.code ORDER BY a.at) AS flip
                          FROM (SELECT DISTINCT ON (e.code, e.at) e.code, e.at, e.up, c.on0, c.off0, c.n0
                                  FROM unnest($1, $2, $4, $5, $6) c(code, start_at, on0, off0, n0)
                                 CROSS JOIN LATERAL (%s AND e.%I = c.code AND e.at >= coalesce(c.start_at, '-infinity')
                                                     OFFSET 0) e
                                 ORDER BY e.code, e.at, e.id DESC) a) f
                 WHERE f.flip) s
        WINDOW w AS (PARTITION BY s.code ORDER BY s.at ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)$q$, src, col)
    USING codes, starts, p_source, on0, off0, n0;
END $$;
COMMENT ON FUNCTION vms._availability_refresh(text, vms.gbcode[], timestamptz[], boolean[]) IS
    'internal: recomputes the kept runs of the given subjects of a source from the earliest changed event time on';

-- At a city, the runs of a district's devices and channels are the
-- district's, replicated with their owner (vms.cluster_owner,
-- 27_cluster_sync.sql); the city's own rebuilds and truncates leave them.
CREATE FUNCTION vms._availability_run_replicated(p_source text, p_code vms.gbcode) RETURNS boolean
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM vms.cluster_owner o
                    WHERE o.kind = CASE WHEN p_source = 'device' THEN 'device' ELSE 'channel' END AND o.code = p_code);
END $$;
COMMENT ON FUNCTION vms._availability_run_replicated(text, vms.gbcode) IS
    'internal: at a city, is this availability run subject a district''s (its runs are replicated from the district)';

CREATE FUNCTION vms._availability_run_trigger() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    src text := TG_ARGV[0];
    col text := CASE src WHEN 'device' THEN 'device_code' WHEN 'catalog' THEN 'code' ELSE 'channel_code' END;
    proj text;
    changed text;
    codes vms.gbcode[];
    froms timestamptz[];
    heads boolean[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        LOCK TABLE vms.availability_run IN SHARE ROW EXCLUSIVE MODE;
        -- at a city, the districts' runs (replicated, 27_cluster_sync.sql) stay
        DELETE FROM vms.availability_run r WHERE r.source = src AND NOT vms._availability_run_replicated(r.source, r.code);
        RETURN NULL;
    END IF;
    -- (id, code, at, state, counts) of a transition table's rows
    proj := format('SELECT r.id, r.%I AS code, r.at, %s AS up, %s AS kept FROM %%I r', col,
                   CASE src WHEN 'device' THEN 'r.event' WHEN 'catalog' THEN 'r.status = ''ON''' ELSE 'r.stream_ok IS NOT FALSE' END,
                   CASE src WHEN 'device' THEN 'r.event IN (''online'', ''offline'')' ELSE 'true' END);
    changed := CASE TG_OP
        WHEN 'INSERT' THEN format('SELECT x.code, x.at FROM (%s) x WHERE x.kept', format(proj, 'new_rows'))
        WHEN 'DELETE' THEN format('SELECT x.code, x.at FROM (%s) x WHERE x.kept', format(proj, 'old_rows'))
        ELSE format('SELECT v.code, v.at FROM (%s) x FULL JOIN (%s) y ON y.id = x.id
                      CROSS JOIN LATERAL (VALUES (x.code, x.at, x.kept), (y.code, y.at, y.kept)) v(code, at, kept)
                     WHERE (x.code, x.at, x.up, x.kept) IS DISTINCT FROM (y.code, y.at, y.up, y.kept) AND v.kept',
                    format(proj, 'old_rows'), format(proj, 'new_rows')) END;
    IF TG_OP = 'DELETE' THEN
        -- only the oldest events of a subject went (retention): its runs are cut, not rebuilt
        EXECUTE format('SELECT array_agg(c.code), array_agg(c.from_at),
                               array_agg(c.last_at < coalesce(vms._availability_first_event($1, c.code), ''infinity''))
                          FROM (SELECT x.code, min(x.at) AS from_at, max(x.at) AS last_at FROM (%s) x GROUP BY x.code) c',
                       changed)
           INTO codes, froms, heads USING src;
    ELSE
        EXECUTE format('SELECT array_agg(c.code), array_agg(c.from_at)
                          FROM (SELECT x.code, min(x.at) AS from_at FROM (%s) x GROUP BY x.code) c', changed)
           INTO codes, froms;
    END IF;
    PERFORM vms._availability_refresh(src, codes, froms, heads);
    RETURN NULL;
END $$;
-- Named to fire before the alarm triggers of the same tables (statement
-- triggers fire in name order): every writer of events takes the run
-- table's lock before any alarm row, so two writers cannot deadlock on them
-- within one statement.
COMMENT ON FUNCTION vms._availability_run_trigger() IS
    'internal: keeps vms.availability_run exact when device events, catalog status events or inspection results are inserted, updated, deleted or truncated (argument: the run source)';
CREATE TRIGGER availability_runs_ins AFTER INSERT ON vms.device_event
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._availability_run_trigger('device');
CREATE TRIGGER availability_runs_upd AFTER UPDATE ON vms.device_event
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._availability_run_trigger('device');
CREATE TRIGGER availability_runs_del AFTER DELETE ON vms.device_event
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._availability_run_trigger('device');
CREATE TRIGGER availability_runs_trunc AFTER TRUNCATE ON vms.device_event
    FOR EACH STATEMENT EXECUTE FUNCTION vms._availability_run_trigger('device');
CREATE TRIGGER availability_runs_ins AFTER INSERT ON vms.channel_status_event
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._availability_run_trigger('catalog');
CREATE TRIGGER availability_runs_upd AFTER UPDATE ON vms.channel_status_event
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._availability_run_trigger('catalog');
CREATE TRIGGER availability_runs_del AFTER DELETE ON vms.channel_status_event
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._availability_run_trigger('catalog');
CREATE TRIGGER availability_runs_trunc AFTER TRUNCATE ON vms.channel_status_event
    FOR EACH STATEMENT EXECUTE FUNCTION vms._availability_run_trigger('catalog');
CREATE TRIGGER availability_runs_ins AFTER INSERT ON vms.quality_result
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._availability_run_trigger('stream');
CREATE TRIGGER availability_runs_upd AFTER UPDATE ON vms.quality_result
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._availability_run_trigger('stream');
CREATE TRIGGER availability_runs_del AFTER DELETE ON vms.quality_result
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._availability_run_trigger('stream');
CREATE TRIGGER availability_runs_trunc AFTER TRUNCATE ON vms.quality_result
    FOR EACH STATEMENT EXECUTE FUNCTION vms._availability_run_trigger('stream');

CREATE FUNCTION vms.availability_rebuild() RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n bigint := 0;
    k bigint;
    src text;
BEGIN
    LOCK TABLE vms.availability_run IN SHARE ROW EXCLUSIVE MODE;
    -- at a city, the districts' runs (replicated, 27_cluster_sync.sql) stay
    DELETE FROM vms.availability_run r WHERE NOT vms._availability_run_replicated(r.source, r.code);
    FOREACH src IN ARRAY ARRAY['device', 'catalog', 'stream'] LOOP
        EXECUTE format($q$
            INSERT INTO vms.availability_run (source, code, up, from_ts, to_ts, online_before, offline_before, outages_before)
            SELECT $1, s.code, s.up, s.at, s.nx,
                   coalesce(sum(CASE WHEN s.up AND s.nx < 'infinity' THEN extract(epoch FROM s.nx - s.at) END) OVER w, 0),
                   coalesce(sum(CASE WHEN NOT s.up AND s.nx < 'infinity' THEN extract(epoch FROM s.nx - s.at) END) OVER w, 0),
                   (count(*) FILTER (WHERE NOT s.up) OVER w)::int
              FROM (SELECT f.code, f.up, f.at, coalesce(lead(f.at) OVER (PARTITION BY f.code ORDER BY f.at), 'infinity') AS nx
                      FROM (SELECT a.*, a.up IS DISTINCT FROM lag(a.up) OVER (PARTITION BY a.code ORDER BY a.at) AS flip
                              FROM (SELECT DISTINCT ON (e.code, e.at) e.code, e.at, e.up FROM (%s) e
                                     WHERE NOT vms._availability_run_replicated($1, e.code)
                                     ORDER BY e.code, e.at, e.id DESC) a) f
                     WHERE f.flip) s
            WINDOW w AS (PARTITION BY s.code ORDER BY s.at ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)$q$,
            vms._availability_source_sql(src))
        USING src;
        GET DIAGNOSTICS k = ROW_COUNT;
        n := n + k;
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.availability_rebuild() IS
    'recompute every kept availability run from the events (vms.availability_run); needed only after events were written with the triggers disabled (a bulk load, a restore with --disable-triggers); returns the runs written';

-- The unknown ranges of each device within [p_from, p_to): its own gaps and
-- the platform-wide gaps (device_code NULL) of the platform that keeps it
-- alive.  On a district or a lone node that is this node (every device).  At
-- a city (27_cluster_sync.sql) a district's gaps arrive in
-- vms.cluster_availability_gap: its platform-wide gaps cover only the
-- devices that district owns (vms.cluster_owner), its device gaps only its
-- own devices; the city's own platform-wide gaps cover only the city's own
-- devices (a city down does not make a district's devices unknown).  Only
-- devices with some unknown time are returned.
CREATE FUNCTION vms._availability_gaps(p_from timestamptz, p_to timestamptz)
    RETURNS TABLE (code vms.gbcode, m tstzmultirange)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH g AS (
        SELECT ''::text AS scope, x.device_code, x.from_ts, x.to_ts FROM vms.availability_gap x
         WHERE x.to_ts > p_from AND x.from_ts < p_to
        UNION ALL
        SELECT x.district, x.device_code, x.from_ts, x.to_ts FROM vms.cluster_availability_gap x
         WHERE x.to_ts > p_from AND x.from_ts < p_to
           AND x.district IS DISTINCT FROM (SELECT n.district FROM vms.cluster_node n)),   -- a district's own mirror
    glob AS (
        SELECT g.scope, range_agg(tstzrange(greatest(g.from_ts, p_from), least(g.to_ts, p_to))) AS m
          FROM g WHERE g.device_code IS NULL GROUP BY g.scope),
    own AS (
        SELECT g.device_code AS code, range_agg(tstzrange(greatest(g.from_ts, p_from), least(g.to_ts, p_to))) AS m
          FROM g
         WHERE g.device_code IS NOT NULL
           AND (g.scope = '' OR EXISTS (SELECT 1 FROM vms.cluster_owner o
                                         WHERE o.kind = 'device' AND o.code = g.device_code AND o.district = g.scope))
         GROUP BY g.device_code),
    wide AS (
        SELECT d.code, gl.m
          FROM vms.device d
          LEFT JOIN vms.cluster_owner o ON o.kind = 'device' AND o.code = d.code
          JOIN glob gl ON gl.scope = coalesce(o.district, ''))
    SELECT coalesce(w.code, o.code), coalesce(w.m, '{}') + coalesce(o.m, '{}')
      FROM wide w FULL JOIN own o ON o.code = w.code;
END $$;
COMMENT ON FUNCTION vms._availability_gaps(timestamptz, timestamptz) IS
    'internal: per device with unknown time in [p_from, p_to), its unknown ranges: its own gaps and the platform-wide gaps of the node (at a city: of the district) that keeps it alive';

-- Per device or channel: online, offline and period seconds (exact) and the
-- outages begun in [from, least(to, now())), from the kept runs; the same
-- figures as vms._availability_ranges computes from the events.
--   device: its runs clipped to the period, less the unknown gaps (its own
--           and the platform-wide ones, merged: vms._availability_gaps);
--   channel: its device's, unless its catalog status or stream was bad at
--           some instant of the period or the one before it: then
--           online = device online less bad, offline = device offline plus
--           device online and bad, from the runs around the period.
CREATE FUNCTION vms._availability_figures(p_from timestamptz, p_to timestamptz, p_kind text)
    RETURNS TABLE (code vms.gbcode, online_s numeric, offline_s numeric, period_s numeric, offline_events integer)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    t timestamptz := least(p_to, now());
    per_s numeric;
BEGIN
    IF p_kind IS NULL OR p_kind NOT IN ('device', 'channel') THEN
        RAISE EXCEPTION 'availability subjects are devices or channels, not "%"', p_kind
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use device or channel.';
    END IF;
    IF p_from IS NULL OR p_to IS NULL THEN
        RAISE EXCEPTION 'an availability period needs both ends'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Give both ends of the period.';
    END IF;
    per_s := greatest(extract(epoch FROM t - p_from), 0);
    IF t < p_from THEN
        t := p_from;   -- an empty period: every subject, no time
    END IF;
    RETURN QUERY
    WITH gap_dev AS (
        SELECT g.code, g.m FROM vms._availability_gaps(p_from, t) g),
    -- per device: the sums at the period's two ends, from the last run
    -- starting before each end (none before the start: the first run's)
    ends AS (
        SELECT d.code,
               CASE WHEN r1.code IS NULL THEN 0
                    ELSE r1.online_before + CASE WHEN r1.up THEN extract(epoch FROM t - r1.from_ts) ELSE 0 END
                         - coalesce(r0.online_before + CASE WHEN r0.up THEN extract(epoch FROM p_from - r0.from_ts) ELSE 0 END,
                                    f.online_before) END AS on_s,
               CASE WHEN r1.code IS NULL THEN 0
                    ELSE r1.offline_before + CASE WHEN NOT r1.up THEN extract(epoch FROM t - r1.from_ts) ELSE 0 END
                         - coalesce(r0.offline_before + CASE WHEN NOT r0.up THEN extract(epoch FROM p_from - r0.from_ts) ELSE 0 END,
                                    f.offline_before) END AS off_s,
               CASE WHEN r1.code IS NULL THEN 0
                    ELSE r1.outages_before + CASE WHEN r1.up THEN 0 ELSE 1 END
                         - coalesce(r0.outages_before + CASE WHEN r0.up THEN 0 ELSE 1 END, f.outages_before) END AS ev
          FROM vms.device d
          LEFT JOIN LATERAL (SELECT r.code, r.up, r.from_ts, r.online_before, r.offline_before, r.outages_before
                               FROM vms.availability_run r
                              WHERE r.source = 'device' AND r.code = d.code AND r.from_ts < t
                              ORDER BY r.from_ts DESC LIMIT 1) r1 ON true
          LEFT JOIN LATERAL (SELECT r.code, r.up, r.from_ts, r.online_before, r.offline_before, r.outages_before
                               FROM vms.availability_run r
                              WHERE r.source = 'device' AND r.code = d.code AND r.from_ts < p_from AND r1.code IS NOT NULL
                              ORDER BY r.from_ts DESC LIMIT 1) r0 ON true
          LEFT JOIN LATERAL (SELECT r.online_before, r.offline_before, r.outages_before
                               FROM vms.availability_run r
                              WHERE r.source = 'device' AND r.code = d.code AND r1.code IS NOT NULL AND r0.code IS NULL
                              ORDER BY r.from_ts LIMIT 1) f ON true),
    -- the unknown ranges of each device (its own and the platform-wide
    -- ones, merged, within the period)
    gap_range AS (
        SELECT gd.code, g FROM gap_dev gd, unnest(gd.m) g),
    -- the time of each state in them: the differences of the sums at
    -- each range's ends, as for the period
    gap_cut AS (
        SELECT gr.code, sum(cb.on_s - ca.on_s) AS on_g, sum(cb.off_s - ca.off_s) AS off_g
          FROM gap_range gr
         CROSS JOIN LATERAL (SELECT coalesce(r.online_before + CASE WHEN r.up THEN extract(epoch FROM lower(gr.g) - r.from_ts) ELSE 0 END,
                                     f.online_before, 0) AS on_s,
                            coalesce(r.offline_before + CASE WHEN NOT r.up THEN extract(epoch FROM lower(gr.g) - r.from_ts) ELSE 0 END,
                                     f.offline_before, 0) AS off_s
                       FROM (SELECT 1) o
                       LEFT JOIN LATERAL (SELECT r.up, r.from_ts, r.online_before, r.offline_before
                                            FROM vms.availability_run r
                                           WHERE r.source = 'device' AND r.code = gr.code AND r.from_ts < lower(gr.g)
                                           ORDER BY r.from_ts DESC LIMIT 1) r ON true
                       LEFT JOIN LATERAL (SELECT r2.online_before, r2.offline_before
                                            FROM vms.availability_run r2
                                           WHERE r2.source = 'device' AND r2.code = gr.code AND r.from_ts IS NULL
                                           ORDER BY r2.from_ts LIMIT 1) f ON true) ca
         CROSS JOIN LATERAL (SELECT coalesce(r.online_before + CASE WHEN r.up THEN extract(epoch FROM upper(gr.g) - r.from_ts) ELSE 0 END,
                                     f.online_before, 0) AS on_s,
                            coalesce(r.offline_before + CASE WHEN NOT r.up THEN extract(epoch FROM upper(gr.g) - r.from_ts) ELSE 0 END,
                                     f.offline_before, 0) AS off_s
                       FROM (SELECT 1) o
                       LEFT JOIN LATERAL (SELECT r.up, r.from_ts, r.online_before, r.offline_before
                                            FROM vms.availability_run r
                                           WHERE r.source = 'device' AND r.code = gr.code AND r.from_ts < upper(gr.g)
                                           ORDER BY r.from_ts DESC LIMIT 1) r ON true
                       LEFT JOIN LATERAL (SELECT r2.online_before, r2.offline_before
                                            FROM vms.availability_run r2
                                           WHERE r2.source = 'device' AND r2.code = gr.code AND r.from_ts IS NULL
                                           ORDER BY r2.from_ts LIMIT 1) f ON true) cb
         GROUP BY gr.code),
    dev AS (
        SELECT e.code, e.on_s - coalesce(c.on_g, 0) AS on_s, e.off_s - coalesce(c.off_g, 0) AS off_s, e.ev::int AS ev
          FROM ends e LEFT JOIN gap_cut c ON c.code = e.code),
    -- channels bad (catalog not ON, stream not pulled) at some instant from
    -- just before the period to its end
    bad AS (
        SELECT r.code, range_agg(tstzrange(r.from_ts, least(r.to_ts, t))) AS b
          FROM vms.availability_run r
         WHERE p_kind = 'channel' AND r.source <> 'device' AND NOT r.up
           AND r.to_ts >= p_from AND r.from_ts < t
         GROUP BY r.code),
    ch_bad AS (
        SELECT b.code, d.on_mr - b.b AS on_mr, d.off_mr + (d.on_mr * b.b) AS off_mr,
               coalesce(gd.m, '{}') AS m
          FROM bad b JOIN vms.channel c ON c.code = b.code
          LEFT JOIN gap_dev gd ON gd.code = c.device_code
         CROSS JOIN LATERAL (
             SELECT coalesce(range_agg(tstzrange(r.from_ts, least(r.to_ts, t))) FILTER (WHERE r.up), '{}') AS on_mr,
                    coalesce(range_agg(tstzrange(r.from_ts, least(r.to_ts, t))) FILTER (WHERE NOT r.up), '{}') AS off_mr
               FROM vms.availability_run r
              WHERE r.source = 'device' AND r.code = c.device_code AND r.to_ts >= p_from AND r.from_ts < t) d),
    ch_slow AS (
        SELECT x.code,
               coalesce((SELECT sum(extract(epoch FROM upper(g) - lower(g)))
                           FROM unnest((x.on_mr - x.m) * tstzmultirange(tstzrange(p_from, t))) g), 0) AS on_s,
               coalesce((SELECT sum(extract(epoch FROM upper(g) - lower(g)))
                           FROM unnest((x.off_mr - x.m) * tstzmultirange(tstzrange(p_from, t))) g), 0) AS off_s,
               (SELECT count(*) FROM unnest(x.off_mr) g WHERE lower(g) >= p_from AND lower(g) < t)::int AS ev
          FROM ch_bad x)
    SELECT d.code, coalesce(v.on_s, 0), coalesce(v.off_s, 0), per_s, coalesce(v.ev, 0)
      FROM vms.device d LEFT JOIN dev v ON v.code = d.code
     WHERE p_kind = 'device'
    UNION ALL
    SELECT c.code, coalesce(s.on_s, v.on_s, 0), coalesce(s.off_s, v.off_s, 0), per_s, coalesce(s.ev, v.ev, 0)
      FROM vms.channel c
      LEFT JOIN ch_slow s ON s.code = c.code
      LEFT JOIN dev v ON s.code IS NULL AND v.code = c.device_code
     WHERE p_kind = 'channel';
END $$;
COMMENT ON FUNCTION vms._availability_figures(timestamptz, timestamptz, text) IS
    'internal: per device or channel, the online, offline and period seconds and the outages begun in the period, from the kept runs (vms.availability_run)';

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
    WITH gaps AS (SELECT g.code, g.m FROM vms._availability_gaps(p_from, t) g),
    dev_ev AS (
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
               coalesce(gp.m, '{}') AS gap_mr
          FROM vms.device d LEFT JOIN dev_seg s ON s.device_code = d.code
          LEFT JOIN gaps gp ON gp.code = d.code
         GROUP BY d.code, gp.m),
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
    -- from the kept runs; seconds summed exactly (numeric), float8 at the
    -- end; unit and region names looked up per group, not per member
    WITH m AS (
        SELECT a.code, a.online_s AS on_s, a.offline_s AS off_s, a.period_s - a.online_s - a.offline_s AS unk_s,
               a.offline_events AS ev
          FROM vms._availability_figures(availability.from_ts, availability.to_ts,
                                         CASE WHEN group_by = 'device' THEN 'device' ELSE 'channel' END) a),
    g AS (
        SELECT CASE group_by
                   WHEN 'device' THEN d.code::text
                   WHEN 'channel' THEN c.code::text
                   WHEN 'unit' THEN coalesce(c.unit_id, d.unit_id)::text
                   WHEN 'region' THEN coalesce(c.civil_code, d.civil_code)
                   ELSE k.contractor END AS key,
               CASE group_by WHEN 'device' THEN d.name WHEN 'channel' THEN c.name WHEN 'contractor' THEN k.contractor END AS name,
               m.*
          FROM m
          LEFT JOIN vms.channel c ON group_by <> 'device' AND c.code = m.code
          JOIN vms.device d ON d.code = coalesce(c.device_code, m.code)
          LEFT JOIN LATERAL (SELECT k.contractor FROM vms.maintenance_contract k
                              WHERE group_by = 'contractor' AND k.id = vms.contract_for(m.code)) k ON true),
    s AS (
        SELECT g.key, min(g.name) AS name, sum(g.on_s) AS on_s, sum(g.off_s) AS off_s, sum(g.ev) AS ev,
               sum(g.unk_s) AS unk_s, count(*) AS n
          FROM g GROUP BY g.key)
    SELECT s.key,
           CASE group_by
               WHEN 'unit' THEN (SELECT u.name FROM vms.org_unit u WHERE u.id = s.key::bigint)
               WHEN 'region' THEN (SELECT r.name FROM vms.region r WHERE r.civil_code = s.key)
               ELSE s.name END,
           s.on_s::float8 / nullif(s.on_s::float8 + s.off_s::float8, 0),
           s.off_s::float8, s.ev::int, s.on_s::float8, s.unk_s::float8, s.n::int
      FROM s ORDER BY s.key;
END $$;
COMMENT ON FUNCTION vms.availability(timestamptz, timestamptz, text) IS
    'online rate (在线率) and offline duration (离线时长) in [from_ts, least(to_ts, now())) per device, channel, unit, region or contractor: online_ratio = online / (online + offline) seconds summed over the members (channels for unit, region and contractor), unknown time excluded; offline_events = outages that began in the period; NULL ratio when nothing is known';
