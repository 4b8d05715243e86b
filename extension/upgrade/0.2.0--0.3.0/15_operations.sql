-- Issue 15 (operations centre): what 0.3.0 finishes.
--  1. availability from kept runs (vms.availability_run, maintained by
--     statement triggers on the events), backfilled here from the events
--     already recorded (vms.device_event, vms.channel_status_event,
--     vms.quality_result);
--  2. the scheduled snapshot and month close take yesterday / last month in
--     the schedule's zone (args.tz, default the report zone), not the session's;
--  3. queuing a notification wakes the notifier at commit.

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
    -- the run at each end of a period is read from the index alone
    PRIMARY KEY (source, code, from_ts) INCLUDE (up, to_ts, online_before, offline_before, outages_before),
    CHECK (to_ts > from_ts)
);
-- channels whose catalog status or stream was bad in a period
CREATE INDEX availability_run_bad_idx ON vms.availability_run (to_ts) WHERE source <> 'device' AND NOT up;
COMMENT ON TABLE vms.availability_run IS
    'maximal runs of one state per device (source device: up = online), channel catalog status (catalog: up = ON) and channel stream (stream: up = pulled), kept from vms.device_event, vms.channel_status_event and vms.quality_result; to_ts infinity = still lasting; online_before, offline_before (seconds) and outages_before (offline runs) of the subject before the run, counted from an arbitrary origin';

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
        DELETE FROM vms.availability_run WHERE source = src;
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
    DELETE FROM vms.availability_run;
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

-- Per device or channel: online, offline and period seconds (exact) and the
-- outages begun in [from, least(to, now())), from the kept runs; the same
-- figures as vms._availability_ranges computes from the events.
--   device: its runs clipped to the period, less the unknown gaps (its own
--           and every device's, merged);
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
    gap_all tstzmultirange;
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
    SELECT range_agg(tstzrange(greatest(g.from_ts, p_from), least(g.to_ts, t))) INTO gap_all
      FROM vms.availability_gap g WHERE g.device_code IS NULL AND g.to_ts > p_from AND g.from_ts < t;
    RETURN QUERY
    WITH gap_dev AS (
        SELECT g.device_code AS code,
               range_agg(tstzrange(greatest(g.from_ts, p_from), least(g.to_ts, t))) + coalesce(gap_all, '{}') AS m
          FROM vms.availability_gap g
         WHERE g.device_code IS NOT NULL AND g.to_ts > p_from AND g.from_ts < t
         GROUP BY g.device_code),
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
    -- the unknown ranges of each device (its own and every device's,
    -- merged, within the period)
    gap_range AS (
        SELECT gd.code, g FROM gap_dev gd, unnest(gd.m) g
        UNION ALL
        SELECT d.code, g FROM vms.device d, unnest(gap_all) g
         WHERE gap_all IS NOT NULL AND NOT EXISTS (SELECT 1 FROM gap_dev gd WHERE gd.code = d.code)),
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
               coalesce(gd.m, gap_all, '{}') AS m
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

CREATE OR REPLACE FUNCTION vms.availability(from_ts timestamptz, to_ts timestamptz, group_by text DEFAULT 'unit')
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

REVOKE ALL ON FUNCTION vms._availability_source_sql(text), vms._availability_first_event(text, vms.gbcode),
    vms._availability_refresh(text, vms.gbcode[], timestamptz[], boolean[]), vms._availability_run_trigger(),
    vms.availability_rebuild(), vms._availability_figures(timestamptz, timestamptz, text) FROM PUBLIC;

-- the runs of every event recorded before the update
SELECT vms.availability_rebuild() AS availability_runs;

-- The day and month a scheduled snapshot or month close takes: yesterday and
-- last month in the schedule's zone (args.tz), by default the zone of report
-- days (vms._report_tz(), Asia/Shanghai), never the session's: the worker
-- that runs the schedule has the server's zone, a psql session its own.
CREATE FUNCTION vms._ops_schedule_days(at timestamptz, tz text, OUT zone text, OUT yesterday date, OUT last_month date)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    local timestamp;
BEGIN
    zone := coalesce(nullif(tz, ''), vms._report_tz());
    local := at AT TIME ZONE zone;
    yesterday := local::date - 1;
    last_month := (date_trunc('month', local) - interval '1 month')::date;
END $$;
COMMENT ON FUNCTION vms._ops_schedule_days(timestamptz, text) IS
    'internal: the zone (tz, else the report zone), yesterday and the first day of last month at a time in that zone, for the scheduled snapshot and month close';

CREATE OR REPLACE FUNCTION vms.ops_run_due() RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    s vms.ops_schedule;
    n integer := 0;
    res text;
    d record;
BEGIN
    FOR s IN SELECT * FROM vms.ops_schedule x
              WHERE x.enabled AND (x.next_run_at IS NULL OR x.next_run_at <= now())
              ORDER BY x.next_run_at NULLS FIRST, x.name FOR UPDATE SKIP LOCKED LOOP
        res := NULL;
        BEGIN
            -- a schedule seen for the first time is only timed, not run
            IF s.next_run_at IS NOT NULL THEN
                CASE s.action
                    WHEN 'alarm_escalate' THEN res := vms.alarm_escalate()::text || ' escalated';
                    WHEN 'snapshot_day' THEN
                        d := vms._ops_schedule_days(now(), s.args ->> 'tz');
                        res := vms.ops_snapshot_day(d.yesterday, d.zone)::text || ' rows (' || d.yesterday || ' ' || d.zone || ')';
                    WHEN 'month_close' THEN
                        d := vms._ops_schedule_days(now(), s.args ->> 'tz');
                        IF EXISTS (SELECT 1 FROM vms.ops_month m WHERE m.month = d.last_month) THEN
                            res := 'closed already';
                        ELSE
                            res := vms.ops_month_close(d.last_month, d.zone)::text || ' rows';
                        END IF;
                    WHEN 'retention_prune' THEN
                        res := (SELECT coalesce(sum(p.deleted), 0) FROM vms.retention_prune() p)::text || ' deleted';
                    WHEN 'governance_run' THEN
                        res := 'run ' || (vms.governance_run(s.args ->> 'scope')).id;
                    WHEN 'report_freeze' THEN
                        -- the ended report days (Asia/Shanghai) of the last args.days from the first data on
                        res := (SELECT coalesce(sum(vms.report_freeze(g::date)), 0)
                                  FROM vms._report_data_start() ds(d),
                                       generate_series(greatest(ds.d, (now() AT TIME ZONE vms._report_tz())::date
                                                                      - coalesce((s.args ->> 'days')::int, 7)),
                                                       (now() AT TIME ZONE vms._report_tz())::date - 1, interval '1 day') g
                                 WHERE ds.d IS NOT NULL)::text || ' rows';
                END CASE;
                n := n + 1;
            END IF;
            UPDATE vms.ops_schedule x SET next_run_at = vms.cron_next(x.cron, now()),
                   last_run_at = CASE WHEN s.next_run_at IS NOT NULL THEN now() ELSE x.last_run_at END,
                   last_result = coalesce(res, x.last_result), last_error = CASE WHEN s.next_run_at IS NOT NULL THEN NULL ELSE x.last_error END
             WHERE x.name = s.name;
        EXCEPTION WHEN OTHERS THEN
            UPDATE vms.ops_schedule x SET next_run_at = vms.cron_next(x.cron, now()), last_run_at = now(),
                   last_error = SQLERRM
             WHERE x.name = s.name;
        END;
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.ops_run_due() IS
    'run the scheduled operations runs that are due (each in its own subtransaction: an error is kept in last_error) and time their next run with vms.cron_next; returns how many ran; call it every minute';

COMMENT ON TABLE vms.ops_schedule IS
    'scheduled operations runs (cron: minute hour day month weekday, server time zone): alarm_escalate, snapshot_day (yesterday in args.tz, default Asia/Shanghai as report days), month_close (last month, same zone), retention_prune, governance_run (args.scope), report_freeze (the report days of the last args.days, default 7, that have ended); vms.ops_run_due runs those due';

REVOKE ALL ON FUNCTION vms._ops_schedule_days(timestamptz, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION vms._notify_enqueue(kind text, source_id bigint, doc jsonb, level smallint, source text, fault_type text,
                                    code vms.gbcode) RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_variable
DECLARE
    n integer;
    unit bigint;
    civil text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.notify_route x WHERE x.enabled) THEN
        RETURN 0;
    END IF;
    SELECT coalesce(c.unit_id, d.unit_id), coalesce(c.civil_code, d.civil_code) INTO unit, civil
      FROM vms.channel c JOIN vms.device d ON d.code = c.device_code WHERE c.code = _notify_enqueue.code;
    IF NOT FOUND THEN
        SELECT d.unit_id, d.civil_code INTO unit, civil FROM vms.device d WHERE d.code = _notify_enqueue.code;
    END IF;
    INSERT INTO vms.notify_outbox (route_id, dedup_key, doc, body, next_attempt_at)
    SELECT r.id, format('vms:%s:%s:%s', r.id, kind, source_id),
           doc || jsonb_build_object('id', format('vms:%s:%s:%s', r.id, kind, source_id), 'route', r.name),
           vms.notify_render(r.template, doc || jsonb_build_object('id', format('vms:%s:%s:%s', r.id, kind, source_id),
                                                                    'route', r.name)),
           vms._notify_not_before(r.quiet_hours, now())
      FROM vms.notify_route r
     WHERE r.enabled
       AND (NOT r.filter ? 'events' OR (CASE WHEN kind = 'alarm' THEN doc ->> 'event' ELSE 'work_order' END)
                                       IN (SELECT jsonb_array_elements_text(r.filter -> 'events')))
       AND (NOT r.filter ? 'levels' OR level::text IN (SELECT jsonb_array_elements_text(r.filter -> 'levels')))
       AND (NOT r.filter ? 'sources' OR source IN (SELECT jsonb_array_elements_text(r.filter -> 'sources')))
       AND (NOT r.filter ? 'fault_types' OR fault_type IN (SELECT jsonb_array_elements_text(r.filter -> 'fault_types')))
       AND (NOT r.filter ? 'units' OR unit::text IN (SELECT jsonb_array_elements_text(r.filter -> 'units')))
       AND (NOT r.filter ? 'regions' OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(r.filter -> 'regions') p
                                                 WHERE civil LIKE p || '%'))
    ON CONFLICT (dedup_key) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM vms._wake_worker('notifier');   -- at commit: the notifier sends it at once, not at its next poll
    END IF;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms._notify_enqueue(text, bigint, jsonb, smallint, text, text, vms.gbcode) IS
    'internal: queue one event for every enabled route whose filter matches (in the event''s transaction) and wake the notifier when it commits';

CREATE OR REPLACE FUNCTION vms.notify_redrive(ids bigint[] DEFAULT NULL) RETURNS integer
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    WITH r AS (UPDATE vms.notify_outbox SET state = 'pending', attempts = 0, next_attempt_at = now(), dead_at = NULL
                WHERE state = 'dead' AND (ids IS NULL OR id = ANY (ids)) RETURNING 1),
    n AS (SELECT count(*)::int AS n FROM r)
    -- wake the notifier at commit when there is something to send
    SELECT n.n FROM n LEFT JOIN LATERAL (SELECT vms._wake_worker('notifier') WHERE n.n > 0) w ON true
$$;
COMMENT ON FUNCTION vms.notify_redrive(bigint[]) IS 'send dead notifications again (all, or the given ids); returns how many';
