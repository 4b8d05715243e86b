-- Kept figures and housekeeping: the operations figures per unit, region
-- and contractor over any period (vms.ops_figures), daily snapshots of them,
-- monthly assessment figures (运维考核) frozen when the month is closed,
-- scheduled runs (cron expressions, vms.cron_next) and retention of the
-- tables that grow without bound.

CREATE FUNCTION vms.ops_figures(from_ts timestamptz, to_ts timestamptz, group_by text DEFAULT 'unit')
    RETURNS TABLE (group_key text, group_name text, online_ratio float8, online_seconds float8,
                   offline_seconds float8, unknown_seconds float8, offline_events integer, members integer,
                   inspections integer, stream_success_rate float8, image_rate float8,
                   alarms_raised integer, alarms_cleared integer, fixed_in_time_rate float8,
                   work_orders integer, mean_response_seconds float8, mean_resolution_seconds float8,
                   recording_integrity float8)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    IF group_by IS NULL OR group_by NOT IN ('unit', 'region', 'contractor') THEN
        RAISE EXCEPTION 'operations figures cannot be grouped by "%"', group_by
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use unit, region or contractor.';
    END IF;
    RETURN QUERY
    WITH subj AS (
        SELECT DISTINCT ON (x.code) x.code, x.key FROM (
            SELECT c.code, 1 AS pref,
                   CASE group_by WHEN 'unit' THEN coalesce(c.unit_id, d.unit_id)::text
                                 WHEN 'region' THEN coalesce(c.civil_code, d.civil_code)
                                 ELSE (SELECT k.contractor FROM vms.maintenance_contract k
                                        WHERE k.id = vms.contract_for(c.code)) END AS key
              FROM vms.channel c JOIN vms.device d ON d.code = c.device_code
            UNION ALL
            SELECT d.code, 2,
                   CASE group_by WHEN 'unit' THEN d.unit_id::text
                                 WHEN 'region' THEN d.civil_code
                                 ELSE (SELECT k.contractor FROM vms.maintenance_contract k
                                        WHERE k.id = vms.contract_for(d.code)) END
              FROM vms.device d) x
         ORDER BY x.code, x.pref),
    av AS (SELECT coalesce(a.group_key, '') AS key, a.* FROM vms.availability(from_ts, to_ts, group_by) a),
    insp AS (
        SELECT coalesce(s.key, '') AS key, count(*)::int AS n, avg(q.stream_ok::int)::float8 AS sr,
               avg(q.image_ok::int)::float8 AS ir
          FROM vms.quality_result q JOIN subj s ON s.code = q.channel_code
         WHERE q.at >= from_ts AND q.at < to_ts GROUP BY 1),
    al AS (
        SELECT coalesce(s.key, '') AS key,
               count(*) FILTER (WHERE a.first_raised_at >= from_ts AND a.first_raised_at < to_ts)::int AS raised,
               count(*) FILTER (WHERE a.cleared_at >= from_ts AND a.cleared_at < to_ts)::int AS cleared,
               avg((a.cleared_at <= a.fix_by)::int) FILTER (WHERE a.cleared_at >= from_ts AND a.cleared_at < to_ts
                                                             AND a.fix_by IS NOT NULL)::float8 AS fit
          FROM vms.alarm a JOIN subj s ON s.code = a.code
         WHERE a.mask_id IS NULL AND a.root_alarm_id IS NULL
           AND ((a.first_raised_at >= from_ts AND a.first_raised_at < to_ts)
                OR (a.cleared_at >= from_ts AND a.cleared_at < to_ts))
         GROUP BY 1),
    wo AS (
        SELECT coalesce(s.key, '') AS key, count(*)::int AS n, avg(k.response_seconds) AS resp,
               avg(k.resolution_seconds) AS reso
          FROM vms.work_order_kpi k JOIN subj s ON s.code = k.code
         WHERE k.opened_at >= from_ts AND k.opened_at < to_ts GROUP BY 1),
    -- 录像完整率: the latest check of each channel and period within [from_ts, to_ts)
    rec AS (
        SELECT coalesce(s.key, '') AS key,
               round((sum(k.recorded_s) / nullif(sum(k.expected_s), 0))::numeric, 4)::float8 AS ri
          FROM (SELECT DISTINCT ON (rc.channel_code, rc.period) rc.channel_code, rc.expected_s, rc.recorded_s
                  FROM vms.recording_check rc
                 WHERE rc.period <@ tstzrange(from_ts, to_ts)
                 ORDER BY rc.channel_code, rc.period, rc.checked_at DESC, rc.id DESC) k
          JOIN subj s ON s.code = k.channel_code GROUP BY 1),
    keys AS (SELECT key FROM av UNION SELECT key FROM insp UNION SELECT key FROM al UNION SELECT key FROM wo
             UNION SELECT key FROM rec)
    SELECT nullif(keys.key, ''),
           coalesce(av.group_name,
                    CASE group_by WHEN 'unit' THEN (SELECT u.name FROM vms.org_unit u WHERE u.id::text = keys.key)
                                  WHEN 'region' THEN (SELECT r.name FROM vms.region r WHERE r.civil_code = keys.key)
                                  ELSE nullif(keys.key, '') END),
           av.online_ratio, coalesce(av.online_seconds, 0), coalesce(av.offline_seconds, 0),
           coalesce(av.unknown_seconds, 0), coalesce(av.offline_events, 0), coalesce(av.members, 0),
           coalesce(insp.n, 0), insp.sr, insp.ir,
           coalesce(al.raised, 0), coalesce(al.cleared, 0), al.fit,
           coalesce(wo.n, 0), wo.resp, wo.reso, rec.ri
      FROM keys
      LEFT JOIN av ON av.key = keys.key
      LEFT JOIN insp ON insp.key = keys.key
      LEFT JOIN al ON al.key = keys.key
      LEFT JOIN wo ON wo.key = keys.key
      LEFT JOIN rec ON rec.key = keys.key
     ORDER BY keys.key;
END $$;
COMMENT ON FUNCTION vms.ops_figures(timestamptz, timestamptz, text) IS
    'operations figures in [from_ts, to_ts) per unit, region or contractor: availability (vms.availability over channels), inspections with 取流成功率 and 出图率, alarms raised and cleared (not masked or suppressed) with the share cleared by their fix deadline, work orders opened with mean response and resolution seconds, 录像完整率 recording_integrity (recorded over expected seconds of the recording checks within the period; NULL if none)';

-- Daily snapshots: one row per day, kind and group; recomputed when taken
-- again, until the month is closed.
CREATE TABLE vms.ops_daily (
    day                   date NOT NULL,
    group_by              text NOT NULL CHECK (group_by IN ('unit', 'region', 'contractor')),
    group_key             text NOT NULL,
    group_name            text,
    online_ratio          float8,
    online_seconds        float8 NOT NULL,
    offline_seconds       float8 NOT NULL,
    unknown_seconds       float8 NOT NULL,
    offline_events        integer NOT NULL,
    members               integer NOT NULL,
    inspections           integer NOT NULL,
    stream_success_rate   float8,
    image_rate            float8,
    alarms_raised         integer NOT NULL,
    alarms_cleared        integer NOT NULL,
    fixed_in_time_rate    float8,
    work_orders           integer NOT NULL,
    governance            jsonb,
    time_zone             text NOT NULL,
    computed_at           timestamptz NOT NULL DEFAULT now(),
    recording_integrity   float8,
    PRIMARY KEY (day, group_by, group_key)
);
COMMENT ON TABLE vms.ops_daily IS
    'daily snapshots of the operations figures per unit, region and contractor (group_key '''' = none); governance metrics as at computed_at';

-- Monthly assessment figures (运维考核), frozen when the month is closed.
CREATE TABLE vms.ops_month (
    month                    date NOT NULL CHECK (month = date_trunc('month', month)::date),
    group_by                 text NOT NULL CHECK (group_by IN ('unit', 'region', 'contractor')),
    group_key                text NOT NULL,
    group_name               text,
    online_ratio             float8,
    online_seconds           float8 NOT NULL,
    offline_seconds          float8 NOT NULL,
    unknown_seconds          float8 NOT NULL,
    offline_events           integer NOT NULL,
    members                  integer NOT NULL,
    inspections              integer NOT NULL,
    stream_success_rate      float8,
    image_rate               float8,
    alarms_raised            integer NOT NULL,
    alarms_cleared           integer NOT NULL,
    fixed_in_time_rate       float8,
    work_orders              integer NOT NULL,
    mean_response_seconds    float8,
    mean_resolution_seconds  float8,
    time_zone                text NOT NULL,
    frozen_at                timestamptz NOT NULL DEFAULT now(),
    frozen_by                text NOT NULL DEFAULT session_user,
    recording_integrity      float8,
    PRIMARY KEY (month, group_by, group_key)
);
COMMENT ON TABLE vms.ops_month IS
    'monthly assessment figures (运维考核) per unit, region and contractor, frozen by vms.ops_month_close: never updated or deleted';

CREATE FUNCTION vms._ops_month_frozen() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'closed monthly figures never change'
        USING ERRCODE = 'object_not_in_prerequisite_state',
              DETAIL = format('%s on vms.ops_month is refused: the month was closed with vms.ops_month_close.', TG_OP),
              HINT = 'Figures of a closed month are the ones reported; compute others with vms.ops_figures.';
END $$;
COMMENT ON FUNCTION vms._ops_month_frozen() IS 'internal: refuses UPDATE, DELETE and TRUNCATE of closed monthly figures';
CREATE TRIGGER ops_month_frozen BEFORE UPDATE OR DELETE ON vms.ops_month
    FOR EACH ROW EXECUTE FUNCTION vms._ops_month_frozen();
CREATE TRIGGER ops_month_no_truncate BEFORE TRUNCATE ON vms.ops_month
    FOR EACH STATEMENT EXECUTE FUNCTION vms._ops_month_frozen();

CREATE FUNCTION vms.ops_snapshot_day(day date, tz text DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    zone text := coalesce(tz, current_setting('TimeZone'));
    f timestamptz;
    t timestamptz;
    n integer := 0;
    k integer;
    g text;
BEGIN
    IF ops_snapshot_day.day IS NULL THEN
        RAISE EXCEPTION 'a snapshot needs a day' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM now() AT TIME ZONE zone;   -- an unknown zone fails here, with PostgreSQL's message
    f := ops_snapshot_day.day::timestamp AT TIME ZONE zone;
    t := (ops_snapshot_day.day + 1)::timestamp AT TIME ZONE zone;
    IF t > now() THEN
        RAISE EXCEPTION 'day % is not over in time zone %', ops_snapshot_day.day, zone
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'A snapshot is taken of a whole day.', HINT = 'Snapshot days that have ended (the scheduled run takes yesterday).';
    END IF;
    IF EXISTS (SELECT 1 FROM vms.ops_month m WHERE m.month = date_trunc('month', ops_snapshot_day.day)::date) THEN
        RAISE EXCEPTION 'month of % is closed', ops_snapshot_day.day
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Daily snapshots of a closed month are kept as they were.', HINT = 'Nothing to do.';
    END IF;
    FOREACH g IN ARRAY ARRAY['unit', 'region', 'contractor'] LOOP
        INSERT INTO vms.ops_daily AS o (day, group_by, group_key, group_name, online_ratio, online_seconds, offline_seconds,
                                        unknown_seconds, offline_events, members, inspections, stream_success_rate,
                                        image_rate, alarms_raised, alarms_cleared, fixed_in_time_rate, work_orders,
                                        governance, time_zone, recording_integrity)
        SELECT ops_snapshot_day.day, g, coalesce(x.group_key, ''), x.group_name, x.online_ratio, x.online_seconds,
               x.offline_seconds, x.unknown_seconds, x.offline_events, x.members, x.inspections, x.stream_success_rate,
               x.image_rate, x.alarms_raised, x.alarms_cleared, x.fixed_in_time_rate, x.work_orders,
               CASE g WHEN 'unit' THEN (SELECT to_jsonb(m) - 'unit_id' - 'unit' FROM vms.governance_metrics_by_unit() m
                                         WHERE m.unit_id IS NOT DISTINCT FROM x.group_key)
                      WHEN 'region' THEN (SELECT to_jsonb(m) - 'civil_code' - 'region'
                                            FROM vms.governance_metrics_by_region(length(x.group_key)) m
                                           WHERE m.civil_code = x.group_key AND length(x.group_key) IN (2, 4, 6, 8)) END,
               zone, x.recording_integrity
          FROM vms.ops_figures(f, t, g) x
        ON CONFLICT (day, group_by, group_key) DO UPDATE
           SET group_name = EXCLUDED.group_name, online_ratio = EXCLUDED.online_ratio,
               online_seconds = EXCLUDED.online_seconds, offline_seconds = EXCLUDED.offline_seconds,
               unknown_seconds = EXCLUDED.unknown_seconds, offline_events = EXCLUDED.offline_events,
               members = EXCLUDED.members, inspections = EXCLUDED.inspections,
               stream_success_rate = EXCLUDED.stream_success_rate, image_rate = EXCLUDED.image_rate,
               alarms_raised = EXCLUDED.alarms_raised, alarms_cleared = EXCLUDED.alarms_cleared,
               fixed_in_time_rate = EXCLUDED.fixed_in_time_rate, work_orders = EXCLUDED.work_orders,
               governance = EXCLUDED.governance, time_zone = EXCLUDED.time_zone, computed_at = now(),
               recording_integrity = EXCLUDED.recording_integrity;
        GET DIAGNOSTICS k = ROW_COUNT;
        n := n + k;
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.ops_snapshot_day(date, text) IS
    'snapshot the operations figures of a whole day (midnight to midnight in tz, default the session''s) per unit, region and contractor into vms.ops_daily; taken again it recomputes, until the month is closed';

CREATE FUNCTION vms.ops_month_close(month date, tz text DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    zone text := coalesce(tz, current_setting('TimeZone'));
    m date := date_trunc('month', ops_month_close.month)::date;
    f timestamptz;
    t timestamptz;
    n integer;
BEGIN
    IF ops_month_close.month IS NULL THEN
        RAISE EXCEPTION 'closing needs a month' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM now() AT TIME ZONE zone;
    f := m::timestamp AT TIME ZONE zone;
    t := (m + interval '1 month')::timestamp AT TIME ZONE zone;
    IF t > now() THEN
        RAISE EXCEPTION 'month % is not over in time zone %', to_char(m, 'YYYY-MM'), zone
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'A month is closed once it has ended.', HINT = 'Close it after its last day (the scheduled run closes the previous month).';
    END IF;
    LOCK TABLE vms.ops_month IN SHARE ROW EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM vms.ops_month o WHERE o.month = m) THEN
        RAISE EXCEPTION 'month % is closed already', to_char(m, 'YYYY-MM')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Its %s rows of figures were frozen when it was closed.', (SELECT count(*) FROM vms.ops_month o WHERE o.month = m)),
                  HINT = 'Closed figures never change; compute others with vms.ops_figures.';
    END IF;
    INSERT INTO vms.ops_month (month, group_by, group_key, group_name, online_ratio, online_seconds, offline_seconds,
                               unknown_seconds, offline_events, members, inspections, stream_success_rate, image_rate,
                               alarms_raised, alarms_cleared, fixed_in_time_rate, work_orders, mean_response_seconds,
                               mean_resolution_seconds, time_zone, recording_integrity)
    SELECT m, g, coalesce(x.group_key, ''), x.group_name, x.online_ratio, x.online_seconds, x.offline_seconds,
           x.unknown_seconds, x.offline_events, x.members, x.inspections, x.stream_success_rate, x.image_rate,
           x.alarms_raised, x.alarms_cleared, x.fixed_in_time_rate, x.work_orders, x.mean_response_seconds,
           x.mean_resolution_seconds, zone, x.recording_integrity
      FROM unnest(ARRAY['unit', 'region', 'contractor']) g, vms.ops_figures(f, t, g) x;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.ops_month_close(date, text) IS
    'close a month that has ended (in tz, default the session''s): its figures per unit, region and contractor frozen into vms.ops_month; refused for a month closed already';

-- Retention: how long each growing table keeps its rows.
CREATE TABLE vms.retention_policy (
    table_name   text PRIMARY KEY,
    time_column  text NOT NULL,
    keep         interval NOT NULL CHECK (keep > interval '0'),
    only_where   text,
    enabled      boolean NOT NULL DEFAULT true
);
INSERT INTO vms.retention_policy (table_name, time_column, keep, only_where) VALUES
    ('device_event', 'at', '400 days', NULL),
    ('channel_status_event', 'at', '400 days', NULL),
    ('availability_gap', 'to_ts', '400 days', NULL),
    ('sip_request', 'created_at', '30 days', 'finished_at IS NOT NULL'),
    ('quality_result', 'at', '400 days', NULL),
    ('snapshot', 'taken_at', '90 days', 'NOT is_baseline'),
    ('search_history', 'searched_at', '180 days', NULL),
    ('mobile_position', 'at', '90 days', NULL),
    ('viid_outbox', 'created_at', '30 days', 'state <> ''pending'''),
    ('alarm', 'cleared_at', '730 days', 'state = ''cleared'''),
    ('ops_daily', 'day', '800 days', NULL),
    ('audit_log', 'at', '365 days', NULL);
COMMENT ON TABLE vms.retention_policy IS
    'retention of each table that grows without bound: rows whose time_column is older than keep (and match only_where) are deleted by vms.retention_prune; audit_log entries are archived with their hash anchors instead (vms.audit_archive_before)';

CREATE FUNCTION vms.retention_prune(only_table text DEFAULT NULL, batch integer DEFAULT 50000)
    RETURNS TABLE (table_name text, deleted bigint)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    p vms.retention_policy;
    n bigint;
BEGIN
    IF batch IS NULL OR batch < 1 THEN
        RAISE EXCEPTION 'batch must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF only_table IS NOT NULL AND NOT EXISTS (SELECT 1 FROM vms.retention_policy r WHERE r.table_name = only_table) THEN
        RAISE EXCEPTION 'no retention policy for "%"', only_table
            USING ERRCODE = 'invalid_parameter_value', HINT = 'See vms.retention_policy for the tables pruned.';
    END IF;
    FOR p IN SELECT * FROM vms.retention_policy r
              WHERE r.enabled AND (only_table IS NULL OR r.table_name = only_table) ORDER BY r.table_name LOOP
        IF to_regclass(format('vms.%I', p.table_name)) IS NULL THEN
            CONTINUE;
        END IF;
        IF p.table_name = 'audit_log' THEN
            -- archived with its hash anchors, never deleted
            table_name := p.table_name;
            deleted := vms.audit_archive_before(now() - p.keep);
            RETURN NEXT;
            CONTINUE;
        END IF;
        EXECUTE format('WITH d AS (DELETE FROM vms.%1$I WHERE ctid = ANY (ARRAY(SELECT ctid FROM vms.%1$I '
                       'WHERE %2$I < now() - $1 AND (%3$s) LIMIT $2)) RETURNING 1) SELECT count(*) FROM d',
                       p.table_name, p.time_column, coalesce(p.only_where, 'true'))
            INTO n USING p.keep, batch;
        table_name := p.table_name;
        deleted := n;
        RETURN NEXT;
    END LOOP;
END $$;
COMMENT ON FUNCTION vms.retention_prune(text, integer) IS
    'delete rows past their retention (vms.retention_policy), at most batch per table and call (audit_log: archived, all at once); returns how many per table';

-- Scheduled runs: cron expressions in the server's time zone.
CREATE TABLE vms.ops_schedule (
    name         text PRIMARY KEY,
    cron         text NOT NULL,
    action       text NOT NULL CHECK (action IN ('alarm_escalate', 'snapshot_day', 'month_close', 'retention_prune',
                                                 'governance_run', 'report_freeze', 'clusters_refresh')),
    args         jsonb NOT NULL DEFAULT '{}',
    enabled      boolean NOT NULL DEFAULT true,
    next_run_at  timestamptz,
    last_run_at  timestamptz,
    last_result  text,
    last_error   text
);
INSERT INTO vms.ops_schedule (name, cron, action) VALUES
    ('escalate overdue alarms', '* * * * *', 'alarm_escalate'),
    ('daily snapshot', '10 0 * * *', 'snapshot_day'),
    ('close last month', '30 0 1 * *', 'month_close'),
    ('retention', '0 3 * * *', 'retention_prune'),
    ('governance', '0 2 * * *', 'governance_run'),
    ('freeze report days', '20 0 * * *', 'report_freeze'),
    ('map clusters', '*/5 * * * *', 'clusters_refresh');
COMMENT ON TABLE vms.ops_schedule IS
    'scheduled operations runs (cron: minute hour day month weekday, server time zone): alarm_escalate, snapshot_day (yesterday in args.tz, default Asia/Shanghai as report days), month_close (last month, same zone), retention_prune, governance_run (args.scope), report_freeze (the report days of the last args.days, default 7, that have ended), clusters_refresh (vms.channel_clusters_refresh: the map''s precomputed clusters take the ledger changes appended since the last refresh); vms.ops_run_due runs those due';

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

CREATE FUNCTION vms.ops_run_due() RETURNS integer
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
                    WHEN 'clusters_refresh' THEN
                        res := vms.channel_clusters_refresh()::text || ' cells';
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
