-- Reports (运维报表): the O&M daily, weekly, monthly, quarterly and annual
-- reports as one self-contained HTML document (inline CSS and SVG, no
-- script, nothing fetched), built on the operations centre's figures.
--
-- Days.  Report days run midnight to midnight in China Standard Time
-- (Asia/Shanghai), whatever the session's time zone, so a report reads the
-- same everywhere.  A day's facts per channel (availability from
-- vms._availability_ranges, inspections, alarms, work orders, governance)
-- are frozen into the vms.report_* tables once the day is over: by
-- vms.report_freeze, or the first time a report needs the day.  A closed
-- period is built from frozen facts only, so its document never changes;
-- only the current day of an open period is computed live, and only an
-- open period's document shows when it was generated.
--
-- Permissions.  vms.report_html and vms.report_figures are SECURITY
-- DEFINER (they freeze days as the owner and read the owner's operations
-- tables) and keep only the channels vms.channel_visible_to allows the role
-- the session acts as (vms._acting_role()); a device's alarm counts when
-- one of its visible channels does.  The report_* tables carry row-level
-- security on the same rule for the plain views.

CREATE TABLE vms.report_frozen_day (
    day        date PRIMARY KEY,
    frozen_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.report_frozen_day IS
    'report days (Asia/Shanghai) whose facts are frozen in vms.report_channel_day, report_alarm_day, report_order_day and report_governance_day';

CREATE TABLE vms.report_channel_day (
    day              date NOT NULL,
    code             vms.gbcode NOT NULL,
    device_code      vms.gbcode NOT NULL,
    name             text,
    device_name      text,
    unit_id          bigint,
    unit_name        text,
    civil_code       text,
    region_name      text,
    contractor       text,
    lon              float8,
    lat              float8,
    online_seconds   float8 NOT NULL,
    offline_seconds  float8 NOT NULL,
    unknown_seconds  float8 NOT NULL,
    offline_events   integer NOT NULL,
    state_at_end     text NOT NULL CHECK (state_at_end IN ('online', 'offline', 'unknown')),
    inspections      integer NOT NULL,
    stream_ok        integer NOT NULL,
    image_ok         integer NOT NULL,
    faults           jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (day, code)
);
COMMENT ON TABLE vms.report_channel_day IS
    'frozen report facts per channel and day (Asia/Shanghai): ledger attributes as at the freeze, online/offline/unknown seconds, outages begun, state at the day''s end, inspections with streams pulled and pictures usable, inspection faults by check';

CREATE TABLE vms.report_alarm_day (
    day          date NOT NULL,
    alarm_id     bigint NOT NULL,
    code         vms.gbcode NOT NULL,
    device_code  vms.gbcode NOT NULL,
    civil_code   text,
    unit_id      bigint,
    contractor   text,
    fault_type   text NOT NULL,
    level        smallint NOT NULL,
    raised       boolean NOT NULL,
    cleared      boolean NOT NULL,
    met_fix      boolean,
    overdue      boolean NOT NULL,
    fix_by       timestamptz,
    cleared_at   timestamptz,
    PRIMARY KEY (day, alarm_id)
);
COMMENT ON TABLE vms.report_alarm_day IS
    'frozen report facts per alarm and day (not masked, not suppressed): raised that day, cleared that day (met_fix: by its fix deadline), fix deadline fell that day unmet (overdue)';

CREATE TABLE vms.report_order_day (
    day                 date NOT NULL,
    work_order_id       bigint NOT NULL,
    code                vms.gbcode NOT NULL,
    device_code         vms.gbcode NOT NULL,
    civil_code          text,
    unit_id             bigint,
    contractor          text,
    level               smallint NOT NULL,
    response_seconds    float8,
    on_site_seconds     float8,
    resolution_seconds  float8,
    PRIMARY KEY (day, work_order_id)
);
COMMENT ON TABLE vms.report_order_day IS
    'frozen report facts per work order opened that day: response, on-site and resolution seconds as at the freeze (vms.work_order_kpi)';

CREATE TABLE vms.report_governance_day (
    day          date NOT NULL,
    unit_key     text NOT NULL,
    unit_name    text,
    channels     bigint,
    fill_rate    numeric,
    pass_rate    numeric,
    naming_rate  numeric,
    tag_rate     numeric,
    image_rate   numeric,
    open_tasks   jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (day, unit_key)
);
COMMENT ON TABLE vms.report_governance_day IS
    'frozen governance metrics per unit and day (填报率 合格率 规范率 标注率 出图率: the day''s vms.ops_daily snapshot when taken, else as at a freeze made the next day; NULL for older days frozen later) and the governance tasks open at the day''s end by rule';

ALTER TABLE vms.report_channel_day ENABLE ROW LEVEL SECURITY;
CREATE POLICY report_channel_day_visible ON vms.report_channel_day FOR SELECT USING (vms.code_visible(code));
ALTER TABLE vms.report_alarm_day ENABLE ROW LEVEL SECURITY;
CREATE POLICY report_alarm_day_visible ON vms.report_alarm_day FOR SELECT
    USING (EXISTS (SELECT 1 FROM vms.channel c WHERE c.code = report_alarm_day.code OR c.device_code = report_alarm_day.code));
ALTER TABLE vms.report_order_day ENABLE ROW LEVEL SECURITY;
CREATE POLICY report_order_day_visible ON vms.report_order_day FOR SELECT
    USING (EXISTS (SELECT 1 FROM vms.channel c WHERE c.code = report_order_day.code OR c.device_code = report_order_day.code));

CREATE FUNCTION vms._report_tz() RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN 'Asia/Shanghai';
COMMENT ON FUNCTION vms._report_tz() IS 'internal: the time zone of report days (China Standard Time)';

CREATE FUNCTION vms._report_esc(s text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN replace(replace(replace(replace(replace(coalesce(s, ''), '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '"', '&quot;'), '''', '&#39;');
COMMENT ON FUNCTION vms._report_esc(text) IS 'internal: text escaped for HTML';

-- The first day with data: the earliest device transition, catalog status
-- change or inspection, as a report day; NULL when there is none.
CREATE FUNCTION vms._report_data_start() RETURNS date
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT (least((SELECT min(at) FROM vms.device_event WHERE event IN ('online', 'offline')),
                  (SELECT min(at) FROM vms.channel_status_event),
                  (SELECT min(at) FROM vms.quality_result),
                  (SELECT min(day)::timestamp AT TIME ZONE vms._report_tz() FROM vms.report_frozen_day))
            AT TIME ZONE vms._report_tz())::date
$$;
COMMENT ON FUNCTION vms._report_data_start() IS
    'internal: the first report day with data (device transitions, catalog status, inspections, frozen days)';

-- A day's facts, computed now (what the freeze stores).
CREATE FUNCTION vms._report_channel_facts(d date) RETURNS SETOF vms.report_channel_day
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    WITH p AS (SELECT d::timestamp AT TIME ZONE vms._report_tz() AS f, (d + 1)::timestamp AT TIME ZONE vms._report_tz() AS t),
    a AS (SELECT r.* FROM p, vms._availability_ranges(p.f, p.t, 'channel') r),
    q AS (SELECT q.channel_code AS code, count(*)::int AS n, count(*) FILTER (WHERE q.stream_ok)::int AS s,
                 count(*) FILTER (WHERE q.image_ok)::int AS i
            FROM vms.quality_result q, p WHERE q.at >= p.f AND q.at < p.t GROUP BY 1),
    qf AS (SELECT x.code, jsonb_object_agg(x.k, x.n) AS faults FROM (
               SELECT q.channel_code AS code, ab AS k, count(*) AS n
                 FROM vms.quality_result q, p, unnest(q.abnormal) ab
                WHERE q.at >= p.f AND q.at < p.t GROUP BY 1, 2) x GROUP BY 1)
    SELECT d, c.code, c.device_code, c.name, dv.name, coalesce(c.unit_id, dv.unit_id),
           (SELECT u.name FROM vms.org_unit u WHERE u.id = coalesce(c.unit_id, dv.unit_id)),
           coalesce(c.civil_code, dv.civil_code),
           (SELECT r.name FROM vms.region r WHERE r.civil_code = coalesce(c.civil_code, dv.civil_code)),
           (SELECT k.contractor FROM vms.maintenance_contract k WHERE k.id = vms.contract_for(c.code)),
           ST_X(c.geom), ST_Y(c.geom),
           vms._mr_seconds(a.online), vms._mr_seconds(a.offline),
           vms._mr_seconds(a.period) - vms._mr_seconds(a.online) - vms._mr_seconds(a.offline),
           a.offline_events,
           CASE WHEN upper(a.online) = upper(a.period) THEN 'online'
                WHEN upper(a.offline) = upper(a.period) THEN 'offline' ELSE 'unknown' END,
           coalesce(q.n, 0), coalesce(q.s, 0), coalesce(q.i, 0), coalesce(qf.faults, '{}')
      FROM a JOIN vms.channel c ON c.code = a.code JOIN vms.device dv ON dv.code = c.device_code
      LEFT JOIN q ON q.code = c.code LEFT JOIN qf ON qf.code = c.code
$$;
COMMENT ON FUNCTION vms._report_channel_facts(date) IS 'internal: a report day''s facts per channel, computed now';

CREATE FUNCTION vms._report_alarm_facts(d date) RETURNS SETOF vms.report_alarm_day
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    WITH p AS (SELECT d::timestamp AT TIME ZONE vms._report_tz() AS f, (d + 1)::timestamp AT TIME ZONE vms._report_tz() AS t)
    SELECT d, a.id, a.code, coalesce(c.device_code, a.code), coalesce(c.civil_code, dv.civil_code),
           coalesce(c.unit_id, dv.unit_id),
           (SELECT k.contractor FROM vms.maintenance_contract k WHERE k.id = a.contract_id),
           a.fault_type, a.level,
           a.first_raised_at >= p.f AND a.first_raised_at < p.t,
           coalesce(a.cleared_at >= p.f AND a.cleared_at < p.t, false),
           CASE WHEN a.cleared_at >= p.f AND a.cleared_at < p.t AND a.fix_by IS NOT NULL THEN a.cleared_at <= a.fix_by END,
           coalesce(a.fix_by >= p.f AND a.fix_by < p.t AND a.fix_by < now()
                    AND (a.cleared_at IS NULL OR a.cleared_at > a.fix_by), false),
           a.fix_by, CASE WHEN a.cleared_at < p.t THEN a.cleared_at END
      FROM p, vms.alarm a
      LEFT JOIN vms.channel c ON c.code = a.code
      LEFT JOIN vms.device dv ON dv.code = coalesce(c.device_code, a.code)
     WHERE a.mask_id IS NULL AND a.root_alarm_id IS NULL
       AND ((a.first_raised_at >= p.f AND a.first_raised_at < p.t)
            OR (a.cleared_at >= p.f AND a.cleared_at < p.t)
            OR (a.fix_by >= p.f AND a.fix_by < p.t AND a.fix_by < now() AND (a.cleared_at IS NULL OR a.cleared_at > a.fix_by)))
$$;
COMMENT ON FUNCTION vms._report_alarm_facts(date) IS 'internal: a report day''s alarm facts, computed now';

CREATE FUNCTION vms._report_order_facts(d date) RETURNS SETOF vms.report_order_day
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    WITH p AS (SELECT d::timestamp AT TIME ZONE vms._report_tz() AS f, (d + 1)::timestamp AT TIME ZONE vms._report_tz() AS t)
    SELECT d, k.work_order_id, k.code, coalesce(c.device_code, k.code), coalesce(c.civil_code, dv.civil_code),
           coalesce(c.unit_id, dv.unit_id),
           (SELECT m.contractor FROM vms.maintenance_contract m WHERE m.id = k.contract_id),
           k.level, k.response_seconds, k.on_site_seconds, k.resolution_seconds
      FROM p, vms.work_order_kpi k
      LEFT JOIN vms.channel c ON c.code = k.code
      LEFT JOIN vms.device dv ON dv.code = coalesce(c.device_code, k.code)
     WHERE k.opened_at >= p.f AND k.opened_at < p.t
$$;
COMMENT ON FUNCTION vms._report_order_facts(date) IS 'internal: the work orders opened on a report day with their KPIs, computed now';

CREATE FUNCTION vms._report_governance_facts(d date) RETURNS SETOF vms.report_governance_day
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    WITH t AS (SELECT (d + 1)::timestamp AT TIME ZONE vms._report_tz() AS t),
    m AS (
        SELECT coalesce(g.unit_id, '') AS unit_key, g.unit AS unit_name, g.channels, g.fill_rate, g.pass_rate,
               g.naming_rate, g.tag_rate, g.image_rate
          FROM vms.governance_metrics_by_unit() g
         WHERE d >= (now() AT TIME ZONE vms._report_tz())::date - 1
           AND NOT EXISTS (SELECT 1 FROM vms.ops_daily o WHERE o.day = d AND o.group_by = 'unit' AND o.governance IS NOT NULL)
        UNION ALL
        SELECT o.group_key, o.group_name, (o.governance ->> 'channels')::bigint, (o.governance ->> 'fill_rate')::numeric,
               (o.governance ->> 'pass_rate')::numeric, (o.governance ->> 'naming_rate')::numeric,
               (o.governance ->> 'tag_rate')::numeric, (o.governance ->> 'image_rate')::numeric
          FROM vms.ops_daily o WHERE o.day = d AND o.group_by = 'unit' AND o.governance IS NOT NULL),
    tk AS (
        SELECT x.unit_key, jsonb_object_agg(x.rule_code, x.n) AS open_tasks FROM (
            SELECT coalesce(coalesce(gt.unit_id, c.unit_id)::text, '') AS unit_key, gt.rule_code, count(*) AS n
              FROM t, vms.governance_task gt LEFT JOIN vms.channel c ON c.code = gt.channel_code
             WHERE gt.first_found_at < t.t
               AND (gt.closed_at >= t.t OR (gt.closed_at IS NULL AND gt.state IN ('open', 'assigned')))
             GROUP BY 1, 2) x GROUP BY 1)
    SELECT d, coalesce(m.unit_key, tk.unit_key), coalesce(m.unit_name, (SELECT u.name FROM vms.org_unit u WHERE u.id::text = tk.unit_key)),
           m.channels, m.fill_rate, m.pass_rate, m.naming_rate, m.tag_rate, m.image_rate, coalesce(tk.open_tasks, '{}')
      FROM m FULL JOIN tk ON tk.unit_key = m.unit_key
$$;
COMMENT ON FUNCTION vms._report_governance_facts(date) IS
    'internal: governance metrics per unit for a report day (its vms.ops_daily snapshot, else now for yesterday and today; none for older days) and the tasks open at its end by rule';

CREATE FUNCTION vms.report_freeze(day date) RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n integer;
    k integer;
BEGIN
    IF report_freeze.day IS NULL THEN
        RAISE EXCEPTION 'a report freeze needs a day' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Give a day that has ended in China Standard Time.';
    END IF;
    IF (report_freeze.day + 1)::timestamp AT TIME ZONE vms._report_tz() > now() THEN
        RAISE EXCEPTION 'report day % is not over', to_char(report_freeze.day, 'YYYY-MM-DD')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Report days run midnight to midnight in China Standard Time (Asia/Shanghai).',
                  HINT = 'Freeze days that have ended; the current day of a report is computed live.';
    END IF;
    INSERT INTO vms.report_frozen_day (day) VALUES (report_freeze.day) ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        RETURN 0;   -- frozen already (or by a concurrent session, which we waited for)
    END IF;
    INSERT INTO vms.report_channel_day SELECT * FROM vms._report_channel_facts(report_freeze.day);
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO vms.report_alarm_day SELECT * FROM vms._report_alarm_facts(report_freeze.day);
    GET DIAGNOSTICS k = ROW_COUNT;
    n := n + k;
    INSERT INTO vms.report_order_day SELECT * FROM vms._report_order_facts(report_freeze.day);
    GET DIAGNOSTICS k = ROW_COUNT;
    n := n + k;
    INSERT INTO vms.report_governance_day SELECT * FROM vms._report_governance_facts(report_freeze.day);
    GET DIAGNOSTICS k = ROW_COUNT;
    RETURN n + k;
END $$;
COMMENT ON FUNCTION vms.report_freeze(date) IS
    'freeze a report day (Asia/Shanghai) that has ended: its facts per channel, alarm, work order and unit go into the vms.report_* tables once and never change; returns the rows stored (0 when frozen already); reports freeze the days they need by themselves';

-- A period: [f, t) of report days, and the previous one of the same kind.
CREATE FUNCTION vms._report_period(kind text, period_start date,
                                   OUT f date, OUT t date, OUT pf date, OUT pt date, OUT title text)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    step interval;
    ds date;
BEGIN
    IF kind IS NULL OR kind NOT IN ('daily', 'weekly', 'monthly', 'quarterly', 'annual') THEN
        RAISE EXCEPTION 'unknown report kind "%"', coalesce(kind, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use daily, weekly, monthly, quarterly or annual.';
    END IF;
    IF period_start IS NULL OR NOT isfinite(period_start) THEN
        RAISE EXCEPTION 'a report needs the first day of its period'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Give the period''s first day, e.g. date ''2026-03-01''.';
    END IF;
    step := CASE kind WHEN 'daily' THEN interval '1 day' WHEN 'weekly' THEN interval '7 days'
                      WHEN 'monthly' THEN interval '1 month' WHEN 'quarterly' THEN interval '3 months'
                      ELSE interval '1 year' END;
    IF (kind = 'weekly' AND extract(isodow FROM period_start) <> 1)
       OR (kind = 'monthly' AND extract(day FROM period_start) <> 1)
       OR (kind = 'quarterly' AND (extract(day FROM period_start) <> 1 OR extract(month FROM period_start)::int % 3 <> 1))
       OR (kind = 'annual' AND to_char(period_start, 'MM-DD') <> '01-01') THEN
        RAISE EXCEPTION 'a % report cannot start on %', kind, to_char(period_start, 'YYYY-MM-DD')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = CASE kind WHEN 'weekly' THEN 'Weeks start on Monday.' WHEN 'monthly' THEN 'Give the first day of the month.'
                                   WHEN 'quarterly' THEN 'Give the first day of January, April, July or October.'
                                   ELSE 'Give the first of January.' END;
    END IF;
    f := period_start;
    t := (period_start + step)::date;
    pf := (period_start - step)::date;
    pt := period_start;
    IF f::timestamp AT TIME ZONE vms._report_tz() > now() THEN
        RAISE EXCEPTION 'the % report of % has not started', kind, to_char(f, 'YYYY-MM-DD')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Report days run midnight to midnight in China Standard Time (Asia/Shanghai).',
                  HINT = 'Ask for a period that has begun; the current one is reported as partial.';
    END IF;
    ds := vms._report_data_start();
    IF ds IS NULL OR t <= ds THEN
        RAISE EXCEPTION 'the % report of % is before any data', kind, to_char(f, 'YYYY-MM-DD')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = CASE WHEN ds IS NULL THEN 'Nothing has been recorded yet.'
                                ELSE format('The first data is of %s.', to_char(ds, 'YYYY-MM-DD')) END,
                  HINT = 'Ask for a period from the first day with data on.';
    END IF;
    title := CASE kind WHEN 'daily' THEN '日报' WHEN 'weekly' THEN '周报' WHEN 'monthly' THEN '月报'
                       WHEN 'quarterly' THEN '季报' ELSE '年报' END;
END $$;
COMMENT ON FUNCTION vms._report_period(text, date) IS
    'internal: a report period [f, t) and the previous one [pf, pt); 22023 for an unknown kind, a misaligned start, a period not started or before any data';

-- Load the facts of [pf, t) the acting role may see into temporary tables
-- (pg_temp.report_cd, report_al, report_wo, report_gv), freezing the days
-- that have ended.  Days not begun and days before the first data have no
-- rows: they are missing, never zero.
CREATE FUNCTION vms._report_load(pf date, t date, role oid) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    d date;
    ds date := vms._report_data_start();
    today date := (now() AT TIME ZONE vms._report_tz())::date;
BEGIN
    IF to_regclass('pg_temp.report_cd') IS NOT NULL THEN   -- a report earlier in this transaction
        DROP TABLE IF EXISTS pg_temp.report_cd, pg_temp.report_al, pg_temp.report_wo, pg_temp.report_gv, pg_temp.report_vis,
                             pg_temp.report_hidden;
    END IF;
    CREATE TEMP TABLE report_cd (LIKE vms.report_channel_day) ON COMMIT DROP;
    CREATE TEMP TABLE report_al (LIKE vms.report_alarm_day) ON COMMIT DROP;
    CREATE TEMP TABLE report_wo (LIKE vms.report_order_day) ON COMMIT DROP;
    CREATE TEMP TABLE report_gv (LIKE vms.report_governance_day) ON COMMIT DROP;
    FOR d IN SELECT g::date FROM generate_series(greatest(pf, ds), least(t - 1, today), interval '1 day') g LOOP
        IF d < today THEN
            PERFORM vms.report_freeze(d);
            INSERT INTO pg_temp.report_cd SELECT * FROM vms.report_channel_day x WHERE x.day = d;
            INSERT INTO pg_temp.report_al SELECT * FROM vms.report_alarm_day x WHERE x.day = d;
            INSERT INTO pg_temp.report_wo SELECT * FROM vms.report_order_day x WHERE x.day = d;
            INSERT INTO pg_temp.report_gv SELECT * FROM vms.report_governance_day x WHERE x.day = d;
        ELSE
            INSERT INTO pg_temp.report_cd SELECT * FROM vms._report_channel_facts(d);
            INSERT INTO pg_temp.report_al SELECT * FROM vms._report_alarm_facts(d);
            INSERT INTO pg_temp.report_wo SELECT * FROM vms._report_order_facts(d);
            INSERT INTO pg_temp.report_gv SELECT * FROM vms._report_governance_facts(d);
        END IF;
    END LOOP;
    -- the channels the role may not see, per day: dropped, and the units
    -- they belong to are not entirely visible
    CREATE TEMP TABLE report_hidden ON COMMIT DROP AS
    SELECT x.day, x.code, coalesce(x.unit_id::text, '') AS unit_key FROM pg_temp.report_cd x
     WHERE NOT vms.channel_visible_to(role, x.code, x.civil_code);
    DELETE FROM pg_temp.report_cd x USING pg_temp.report_hidden h WHERE h.day = x.day AND h.code = x.code;
    -- what the visible channels make visible: themselves, their devices, their units
    CREATE TEMP TABLE report_vis ON COMMIT DROP AS
    SELECT DISTINCT x.code::text AS code FROM pg_temp.report_cd x
    UNION SELECT DISTINCT x.device_code::text FROM pg_temp.report_cd x
    UNION SELECT DISTINCT 'unit:' || coalesce(x.unit_id::text, '') FROM pg_temp.report_cd x;
    CREATE INDEX ON pg_temp.report_vis (code);
    ANALYZE pg_temp.report_vis;
    DELETE FROM pg_temp.report_al x WHERE NOT EXISTS (SELECT 1 FROM pg_temp.report_vis v WHERE v.code = x.code::text);
    DELETE FROM pg_temp.report_wo x WHERE NOT EXISTS (SELECT 1 FROM pg_temp.report_vis v WHERE v.code = x.code::text);
    DELETE FROM pg_temp.report_gv x WHERE NOT EXISTS (SELECT 1 FROM pg_temp.report_vis v WHERE v.code = 'unit:' || x.unit_key);
    DROP TABLE pg_temp.report_vis;
    -- A unit's governance row is counted over all its channels (channels,
    -- rates, open tasks): it is withheld, marked, unless the role sees every
    -- channel of the unit that day and as many as the row counts.
    ALTER TABLE pg_temp.report_gv ADD COLUMN withheld boolean NOT NULL DEFAULT false,
                                  ADD COLUMN tasks_withheld boolean NOT NULL DEFAULT false;
    UPDATE pg_temp.report_gv g
       SET withheld = g.channels IS NOT NULL, tasks_withheld = g.open_tasks <> '{}', channels = NULL, fill_rate = NULL, pass_rate = NULL, naming_rate = NULL,
           tag_rate = NULL, image_rate = NULL, open_tasks = '{}'
     WHERE EXISTS (SELECT 1 FROM pg_temp.report_hidden h WHERE h.day = g.day AND h.unit_key = g.unit_key)
        OR (g.channels IS NOT NULL AND EXISTS (SELECT 1 FROM pg_temp.report_hidden h WHERE h.day = g.day)
            AND g.channels <> (SELECT count(*) FROM pg_temp.report_cd x
                                WHERE x.day = g.day AND coalesce(x.unit_id::text, '') = g.unit_key));
    DROP TABLE pg_temp.report_hidden;
    CREATE INDEX ON pg_temp.report_cd (day);
    CREATE INDEX ON pg_temp.report_cd (code);
    CREATE INDEX ON pg_temp.report_cd (device_code);
    CREATE INDEX ON pg_temp.report_al (alarm_id);
    ANALYZE pg_temp.report_cd;
    ANALYZE pg_temp.report_al;
END $$;
COMMENT ON FUNCTION vms._report_load(date, date, oid) IS
    'internal: the facts of report days [pf, t) a role may see, into temporary tables (days that have ended are frozen first)';

-- The headline figures of report days [f, t) from the loaded facts, one row
-- per figure: NULL when there is nothing to measure (never zero).
CREATE FUNCTION vms._report_summary(f date, t date)
    RETURNS TABLE (figure text, value float8)
    LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH c AS (SELECT sum(x.online_seconds) AS on_s, sum(x.offline_seconds) AS off_s, sum(x.offline_events) AS ev,
                      sum(x.inspections) AS n, sum(x.stream_ok) AS s, sum(x.image_ok) AS i, count(*) AS rows
                 FROM pg_temp.report_cd x WHERE x.day >= f AND x.day < t),
    a AS (SELECT l.level, count(*) FILTER (WHERE x.raised) AS raised, count(*) FILTER (WHERE x.cleared) AS cleared,
                 count(*) FILTER (WHERE x.raised AND NOT EXISTS (
                     SELECT 1 FROM pg_temp.report_al y WHERE y.alarm_id = x.alarm_id AND y.cleared AND y.day < t)) AS open,
                 avg(x.met_fix::int) FILTER (WHERE x.cleared AND x.met_fix IS NOT NULL) AS sla
            FROM generate_series(1, 4) l(level)
            LEFT JOIN pg_temp.report_al x ON x.level = l.level AND x.day >= f AND x.day < t
           GROUP BY l.level),
    w AS (SELECT count(*) AS n, avg(x.response_seconds) AS r, avg(x.on_site_seconds) AS o, avg(x.resolution_seconds) AS z
            FROM pg_temp.report_wo x WHERE x.day >= f AND x.day < t)
    SELECT 'online_ratio', c.on_s / nullif(c.on_s + c.off_s, 0) FROM c
    UNION ALL SELECT 'stream_success_rate', c.s::float8 / nullif(c.n, 0) FROM c
    UNION ALL SELECT 'image_rate', c.i::float8 / nullif(c.n, 0) FROM c
    UNION ALL SELECT 'offline_hours', CASE WHEN c.on_s + c.off_s > 0 THEN c.off_s / 3600 END FROM c
    UNION ALL SELECT 'offline_events', CASE WHEN c.rows > 0 THEN c.ev END FROM c
    UNION ALL SELECT 'alarms_raised_' || a.level, CASE WHEN c.rows > 0 THEN a.raised END FROM a, c
    UNION ALL SELECT 'alarms_cleared_' || a.level, CASE WHEN c.rows > 0 THEN a.cleared END FROM a, c
    UNION ALL SELECT 'alarms_open_' || a.level, CASE WHEN c.rows > 0 THEN a.open END FROM a, c
    UNION ALL SELECT 'sla_' || a.level, a.sla FROM a
    UNION ALL SELECT 'work_orders', CASE WHEN c.rows > 0 THEN w.n END FROM w, c
    UNION ALL SELECT 'wo_response_minutes', w.r / 60 FROM w
    UNION ALL SELECT 'wo_on_site_minutes', w.o / 60 FROM w
    UNION ALL SELECT 'wo_resolution_hours', w.z / 3600 FROM w;
END $$;
COMMENT ON FUNCTION vms._report_summary(date, date) IS 'internal: headline figures of report days [f, t) from the loaded facts';

-- The figures, their Chinese labels, units and order.
CREATE FUNCTION vms._report_figure_defs()
    RETURNS TABLE (ord integer, figure text, label text, unit text, chart boolean)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT * FROM (VALUES
        (1, 'online_ratio', '在线率', '%', true),
        (2, 'stream_success_rate', '取流成功率', '%', true),
        (3, 'image_rate', '出图率', '%', true),
        (4, 'offline_hours', '离线时长', '小时', true),
        (5, 'offline_events', '离线次数', '次', false),
        (10, 'alarms_raised_1', 'Ⅰ级告警 新增', '条', true), (11, 'alarms_raised_2', 'Ⅱ级告警 新增', '条', true),
        (12, 'alarms_raised_3', 'Ⅲ级告警 新增', '条', true), (13, 'alarms_raised_4', 'Ⅳ级告警 新增', '条', true),
        (20, 'alarms_cleared_1', 'Ⅰ级告警 已关闭', '条', true), (21, 'alarms_cleared_2', 'Ⅱ级告警 已关闭', '条', true),
        (22, 'alarms_cleared_3', 'Ⅲ级告警 已关闭', '条', true), (23, 'alarms_cleared_4', 'Ⅳ级告警 已关闭', '条', true),
        (30, 'alarms_open_1', 'Ⅰ级告警 期末未关闭', '条', false), (31, 'alarms_open_2', 'Ⅱ级告警 期末未关闭', '条', false),
        (32, 'alarms_open_3', 'Ⅲ级告警 期末未关闭', '条', false), (33, 'alarms_open_4', 'Ⅳ级告警 期末未关闭', '条', false),
        (40, 'sla_1', 'Ⅰ级 按时修复率', '%', true), (41, 'sla_2', 'Ⅱ级 按时修复率', '%', true),
        (42, 'sla_3', 'Ⅲ级 按时修复率', '%', true), (43, 'sla_4', 'Ⅳ级 按时修复率', '%', true),
        (50, 'work_orders', '派工单', '张', true),
        (51, 'wo_response_minutes', '平均响应时长', '分钟', true),
        (52, 'wo_on_site_minutes', '平均到场时长', '分钟', true),
        (53, 'wo_resolution_hours', '平均处理时长', '小时', true)) v
$$;
COMMENT ON FUNCTION vms._report_figure_defs() IS 'internal: the report''s headline figures with their Chinese labels, units and whether they get a daily chart';

CREATE FUNCTION vms._report_fmt(v float8, unit text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v IS NULL THEN '—'
                WHEN unit = '%' THEN round((v * 100)::numeric, 2)::text || '%'
                WHEN unit IN ('条', '次', '张') THEN round(v::numeric)::text || ' ' || unit
                ELSE round(v::numeric, 1)::text || ' ' || unit END
$$;
COMMENT ON FUNCTION vms._report_fmt(float8, text) IS 'internal: a figure as printed in a report, with its unit; — for no data';

CREATE FUNCTION vms._report_change(v float8, p float8, unit text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v IS NULL OR p IS NULL THEN '—'
                WHEN unit = '%' THEN CASE WHEN v >= p THEN '+' ELSE '' END || round(((v - p) * 100)::numeric, 2)::text || ' 个百分点'
                WHEN unit IN ('条', '次', '张') THEN CASE WHEN v >= p THEN '+' ELSE '' END || round((v - p)::numeric)::text || ' ' || unit
                ELSE CASE WHEN v >= p THEN '+' ELSE '' END || round((v - p)::numeric, 1)::text || ' ' || unit END
$$;
COMMENT ON FUNCTION vms._report_change(float8, float8, text) IS 'internal: the change from the previous period as printed (percentage points for rates)';

-- SECURITY DEFINER: it freezes days as the owner and reads the owner's
-- operations tables; it keeps only what vms.channel_visible_to allows the
-- role the session acts as (vms._acting_role()).
CREATE FUNCTION vms.report_figures(kind text, period_start date)
    RETURNS TABLE (figure text, label text, unit text, value float8, previous float8)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    p record;
BEGIN
    p := vms._report_period(kind, period_start);
    PERFORM vms._report_load(p.pf, p.t, vms._acting_role());
    RETURN QUERY
    SELECT d.figure, d.label, d.unit, cur.value, prev.value
      FROM vms._report_figure_defs() d
      JOIN vms._report_summary(p.f, p.t) cur ON cur.figure = d.figure
      JOIN vms._report_summary(p.pf, p.pt) prev ON prev.figure = d.figure
     ORDER BY d.ord;
END $$;
COMMENT ON FUNCTION vms.report_figures(text, date) IS
    'the headline figures of a report (kind daily, weekly, monthly, quarterly or annual from period_start) and of the previous period, over the channels the caller may see: exactly what vms.report_html prints';

-- The same figures per report day, for the trend charts.
CREATE FUNCTION vms._report_daily(f date, t date)
    RETURNS TABLE (day date, figure text, value float8)
    LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH c AS (SELECT x.day, sum(x.online_seconds) AS on_s, sum(x.offline_seconds) AS off_s,
                      sum(x.inspections) AS n, sum(x.stream_ok) AS s, sum(x.image_ok) AS i
                 FROM pg_temp.report_cd x WHERE x.day >= f AND x.day < t GROUP BY x.day),
    a AS (SELECT c.day, l.level, count(x.alarm_id) FILTER (WHERE x.raised) AS raised,
                 count(x.alarm_id) FILTER (WHERE x.cleared) AS cleared,
                 avg(x.met_fix::int) FILTER (WHERE x.cleared AND x.met_fix IS NOT NULL) AS sla
            FROM c CROSS JOIN generate_series(1, 4) l(level)
            LEFT JOIN pg_temp.report_al x ON x.day = c.day AND x.level = l.level
           GROUP BY c.day, l.level),
    w AS (SELECT c.day, count(x.work_order_id) AS n, avg(x.response_seconds) AS r, avg(x.on_site_seconds) AS o,
                 avg(x.resolution_seconds) AS z
            FROM c LEFT JOIN pg_temp.report_wo x ON x.day = c.day GROUP BY c.day)
    SELECT c.day, 'online_ratio', c.on_s / nullif(c.on_s + c.off_s, 0) FROM c
    UNION ALL SELECT c.day, 'stream_success_rate', c.s::float8 / nullif(c.n, 0) FROM c
    UNION ALL SELECT c.day, 'image_rate', c.i::float8 / nullif(c.n, 0) FROM c
    UNION ALL SELECT c.day, 'offline_hours', CASE WHEN c.on_s + c.off_s > 0 THEN c.off_s / 3600 END FROM c
    UNION ALL SELECT a.day, 'alarms_raised_' || a.level, a.raised FROM a
    UNION ALL SELECT a.day, 'alarms_cleared_' || a.level, a.cleared FROM a
    UNION ALL SELECT a.day, 'sla_' || a.level, a.sla FROM a
    UNION ALL SELECT w.day, 'work_orders', w.n FROM w
    UNION ALL SELECT w.day, 'wo_response_minutes', w.r / 60 FROM w
    UNION ALL SELECT w.day, 'wo_on_site_minutes', w.o / 60 FROM w
    UNION ALL SELECT w.day, 'wo_resolution_hours', w.z / 3600 FROM w;
END $$;
COMMENT ON FUNCTION vms._report_daily(date, date) IS 'internal: the headline figures per report day of [f, t) from the loaded facts';

-- A daily line chart: one polyline per series and run of days with data,
-- a dot on every value (so a one-day period shows its point); days without
-- data leave a gap.  series: [{"name": ..., "color": ..., "values": [v or null, ...]}].
CREATE FUNCTION vms._report_svg_chart(id text, title text, unit text, f date, n integer, series jsonb)
    RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path FROM CURRENT AS $$
DECLARE
    w constant float8 := 700;
    h constant float8 := 170;
    x0 constant float8 := 56;
    y0 constant float8 := 16;
    pw constant float8 := 620;
    ph constant float8 := 120;
    lo float8;
    hi float8;
    s jsonb;
    i integer;
    v float8;
    pts text;
    runs text := '';
    dots text := '';
    npts integer := 0;
    legend text := '';
    k integer := 0;
    scale float8 := CASE WHEN unit = '%' THEN 100 ELSE 1 END;
    fmt text := CASE WHEN unit IN ('条', '张', '次') THEN 'FM999999990' ELSE 'FM999999990.0' END;
BEGIN
    SELECT min((e.v)::float8), max((e.v)::float8) INTO lo, hi
      FROM jsonb_array_elements(series) x, jsonb_array_elements_text(x -> 'values') e(v) WHERE e.v IS NOT NULL;
    IF lo IS NULL THEN
        RETURN format('<figure class="chart"><figcaption>%s（%s）</figcaption><svg xmlns="http://www.w3.org/2000/svg" data-chart="%s" data-points="0" viewBox="0 0 %s %s" width="100%%" role="img"><text x="%s" y="%s" class="empty">本期无数据</text></svg></figure>',
                      vms._report_esc(title), vms._report_esc(unit), id, w, h, x0 + 10, y0 + ph / 2);
    END IF;
    lo := lo * scale;
    hi := hi * scale;
    IF unit = '%' THEN
        lo := greatest(0, floor(lo / 5) * 5 - 5); hi := least(100, ceil(hi / 5) * 5 + (CASE WHEN hi >= 100 THEN 0 ELSE 5 END));
    ELSE
        lo := least(0, lo); hi := greatest(hi * 1.1, lo + 1);
    END IF;
    IF hi <= lo THEN hi := lo + 1; END IF;
    FOR s IN SELECT x FROM jsonb_array_elements(series) x LOOP
        k := k + 1;
        pts := '';
        FOR i IN 0 .. n - 1 LOOP
            v := (s -> 'values' ->> i)::float8;
            IF v IS NULL THEN
                IF position(' ' IN pts) > 0 THEN
                    runs := runs || format('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>', s ->> 'color', trim(pts));
                END IF;
                pts := '';
                CONTINUE;
            END IF;
            npts := npts + 1;
            pts := pts || format('%s,%s ', round((x0 + CASE WHEN n = 1 THEN pw / 2 ELSE i * pw / (n - 1) END)::numeric, 1),
                                 round((y0 + ph - (v * scale - lo) / (hi - lo) * ph)::numeric, 1));
            dots := dots || format('<circle cx="%s" cy="%s" r="1.8" fill="%s"/>',
                                   round((x0 + CASE WHEN n = 1 THEN pw / 2 ELSE i * pw / (n - 1) END)::numeric, 1),
                                   round((y0 + ph - (v * scale - lo) / (hi - lo) * ph)::numeric, 1), s ->> 'color');
        END LOOP;
        IF position(' ' IN trim(pts)) > 0 THEN
            runs := runs || format('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>', s ->> 'color', trim(pts));
        END IF;
        IF jsonb_array_length(series) > 1 THEN
            legend := legend || format('<rect x="%s" y="%s" width="10" height="3" fill="%s"/><text x="%s" y="%s" class="lg">%s</text>',
                                       x0 + (k - 1) * 90, h - 6, s ->> 'color', x0 + (k - 1) * 90 + 14, h - 2, vms._report_esc(s ->> 'name'));
        END IF;
    END LOOP;
    RETURN format('<figure class="chart"><figcaption>%s（%s）</figcaption>', vms._report_esc(title), vms._report_esc(unit))
        || format('<svg xmlns="http://www.w3.org/2000/svg" data-chart="%s" data-points="%s" viewBox="0 0 %s %s" width="100%%" role="img">', id, npts, w, h)
        || format('<line x1="%s" y1="%s" x2="%s" y2="%s" class="ax"/><line x1="%s" y1="%s" x2="%s" y2="%s" class="ax"/>',
                  x0, y0, x0, y0 + ph, x0, y0 + ph, x0 + pw, y0 + ph)
        || format('<line x1="%s" y1="%s" x2="%s" y2="%s" class="grid"/>', x0, y0 + ph / 2, x0 + pw, y0 + ph / 2)
        || format('<text x="%s" y="%s" class="yl">%s</text><text x="%s" y="%s" class="yl">%s</text><text x="%s" y="%s" class="yl">%s</text>',
                  x0 - 4, y0 + 4, to_char(hi, fmt), x0 - 4, y0 + ph / 2 + 4, to_char((hi + lo) / 2, fmt), x0 - 4, y0 + ph + 4, to_char(lo, fmt))
        || format('<text x="%s" y="%s" class="xl">%s</text>', x0, y0 + ph + 16, to_char(f, 'MM-DD'))
        || CASE WHEN n > 1 THEN format('<text x="%s" y="%s" class="xl end">%s</text>', x0 + pw, y0 + ph + 16, to_char(f + n - 1, 'MM-DD')) ELSE '' END
        || runs || dots || legend || '</svg></figure>';
END $$;
COMMENT ON FUNCTION vms._report_svg_chart(text, text, text, date, integer, jsonb) IS
    'internal: an inline SVG daily line chart of one or more series (values per day, NULL for no data)';

-- A table of the period's figures per unit, region or contractor, the
-- worst rows (lowest online rate, and any under 90 %) marked.
CREATE FUNCTION vms._report_group_table(f date, t date, grp text) RETURNS text
    LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
BEGIN
    RETURN (
    WITH c AS (
        SELECT CASE grp WHEN 'unit' THEN coalesce(x.unit_name, '（未划分单位）')
                       WHEN 'region' THEN coalesce(x.region_name || ' ' || x.civil_code, x.civil_code, '（无行政区划）')
                       ELSE coalesce(x.contractor, '（无运维合同）') END AS g,
               count(DISTINCT x.code) AS members, sum(x.online_seconds) AS on_s, sum(x.offline_seconds) AS off_s,
               sum(x.inspections) AS n, sum(x.stream_ok) AS s, sum(x.image_ok) AS i
          FROM pg_temp.report_cd x WHERE x.day >= f AND x.day < t GROUP BY 1),
    um AS (SELECT y.unit_id, min(y.unit_name) AS unit_name FROM pg_temp.report_cd y GROUP BY y.unit_id),
    rm AS (SELECT y.civil_code, min(y.region_name) AS region_name FROM pg_temp.report_cd y GROUP BY y.civil_code),
    a AS (
        SELECT CASE grp WHEN 'unit' THEN coalesce(um.unit_name, '（未划分单位）')
                       WHEN 'region' THEN coalesce(rm.region_name || ' ' || x.civil_code, x.civil_code, '（无行政区划）')
                       ELSE coalesce(x.contractor, '（无运维合同）') END AS g,
               count(*) FILTER (WHERE x.raised) AS raised,
               avg(x.met_fix::int) FILTER (WHERE x.cleared AND x.met_fix IS NOT NULL) AS sla
          FROM pg_temp.report_al x
          LEFT JOIN um ON um.unit_id IS NOT DISTINCT FROM x.unit_id
          LEFT JOIN rm ON rm.civil_code IS NOT DISTINCT FROM x.civil_code
         WHERE x.day >= f AND x.day < t GROUP BY 1),
    r AS (
        SELECT c.*, c.on_s / nullif(c.on_s + c.off_s, 0) AS ratio, coalesce(a.raised, 0) AS raised, a.sla,
               rank() OVER (ORDER BY c.on_s / nullif(c.on_s + c.off_s, 0) ASC NULLS LAST) AS rk
          FROM c LEFT JOIN a ON a.g = c.g)
    SELECT format('<table class="groups" data-group="%s"><thead><tr><th>%s</th><th>点位数</th><th>在线率</th><th>离线时长</th><th>取流成功率</th><th>出图率</th><th>新增告警</th><th>按时修复率</th></tr></thead><tbody>',
                  grp, CASE grp WHEN 'unit' THEN '管理单位' WHEN 'region' THEN '行政区划' ELSE '运维单位' END)
        || coalesce(string_agg(
               format('<tr%s><td>%s%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>',
                      CASE WHEN r.ratio IS NOT NULL AND (r.rk = 1 OR r.ratio < 0.9) THEN ' class="worst"' ELSE '' END,
                      vms._report_esc(r.g),
                      CASE WHEN r.ratio IS NOT NULL AND (r.rk = 1 OR r.ratio < 0.9) THEN ' <span class="mark">▼ 最差</span>' ELSE '' END,
                      r.members, vms._report_fmt(r.ratio, '%'),
                      vms._report_fmt(CASE WHEN r.on_s + r.off_s > 0 THEN r.off_s / 3600 END, '小时'),
                      vms._report_fmt(r.s::float8 / nullif(r.n, 0), '%'), vms._report_fmt(r.i::float8 / nullif(r.n, 0), '%'),
                      vms._report_fmt(r.raised, '条'), vms._report_fmt(r.sla, '%')),
               '' ORDER BY r.ratio ASC NULLS LAST, r.g), '<tr><td colspan="8">本期无数据</td></tr>')
        || '</tbody></table>'
      FROM r);
END $$;
COMMENT ON FUNCTION vms._report_group_table(date, date, text) IS
    'internal: the HTML table of a period''s figures per unit, region or contractor, worst rows marked';

CREATE FUNCTION vms._report_fault_name(k text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE k WHEN 'stream' THEN '取流失败' WHEN 'signal_loss' THEN '信号丢失' WHEN 'black_screen' THEN '黑屏'
              WHEN 'brightness' THEN '亮度异常' WHEN 'blur' THEN '画面模糊' WHEN 'color_cast' THEN '偏色'
              WHEN 'noise' THEN '噪声' WHEN 'stripes' THEN '条纹干扰' WHEN 'freeze' THEN '画面冻结'
              WHEN 'jitter' THEN '画面抖动' WHEN 'mosaic' THEN '马赛克' WHEN 'occlusion' THEN '遮挡'
              WHEN 'scene_change' THEN '场景变更' WHEN 'offline' THEN '离线' ELSE k END;
COMMENT ON FUNCTION vms._report_fault_name(text) IS 'internal: the Chinese name of an inspection check or fault type';

-- SECURITY DEFINER: as vms.report_figures (freezes days as the owner, keeps
-- what vms.channel_visible_to allows the role the session acts as).
CREATE FUNCTION vms.report_html(kind text, period_start date) RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    p record;
    tz constant text := vms._report_tz();
    n integer;
    today date := (now() AT TIME ZONE vms._report_tz())::date;
    is_open boolean;
    days_with_data integer;
    prev_days integer;
    channels integer;
    all_visible boolean;
    last_day date;
    html text;
    part text;
    colors constant text[] := ARRAY['#c0392b', '#e67e22', '#2980b9', '#7f8c8d'];
    lv constant text[] := ARRAY['Ⅰ级', 'Ⅱ级', 'Ⅲ级', 'Ⅳ级'];
    minlon float8; maxlon float8; minlat float8; maxlat float8; kx float8; sc float8;
BEGIN
    p := vms._report_period(kind, period_start);
    PERFORM vms._report_load(p.pf, p.t, vms._acting_role());
    n := p.t - p.f;
    is_open := p.t > today;
    SELECT count(DISTINCT x.day) FILTER (WHERE x.online_seconds + x.offline_seconds > 0 OR x.inspections > 0),
           count(DISTINCT x.code), max(x.day)
      INTO days_with_data, channels, last_day
      FROM pg_temp.report_cd x WHERE x.day >= p.f AND x.day < p.t;
    SELECT count(DISTINCT x.day) FILTER (WHERE x.online_seconds + x.offline_seconds > 0 OR x.inspections > 0)
      INTO prev_days FROM pg_temp.report_cd x WHERE x.day >= p.pf AND x.day < p.pt;
    -- "all" from the role's rights alone, never from the data: a superuser,
    -- or a live grant of every channel at the highest security level; a
    -- scoped user learns nothing of the channels outside the scope
    all_visible := EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = vms._acting_role() AND r.rolsuper)
        OR EXISTS (SELECT 1 FROM vms.access_grant g
                    WHERE g.scope_kind = 'all' AND g.revoked_at IS NULL AND g.valid_from <= now()
                      AND (g.valid_until IS NULL OR g.valid_until > now())
                      AND g.max_level >= (SELECT max(l.level) FROM vms.security_level l)
                      AND pg_has_role(vms._acting_role(), vms.grantee_role(g.grantee, g.grantee_oid), 'MEMBER'));

    html := '<!DOCTYPE html>' || chr(10) || '<html lang="zh-CN"><head><meta charset="utf-8">'
        || '<meta name="viewport" content="width=device-width, initial-scale=1">'
        || format('<title>视频监控运维%s %s</title>', p.title, to_char(p.f, 'YYYY-MM-DD'))
        || '<style>'
        || '@page{size:A4;margin:14mm 12mm}'
        || 'body{font-family:"Noto Sans CJK SC","Noto Sans SC","Source Han Sans SC","Microsoft YaHei",sans-serif;color:#222;font-size:10.5pt;margin:0 auto;max-width:190mm;line-height:1.45}'
        || 'h1{font-size:18pt;margin:0 0 4pt}h2{font-size:13pt;border-bottom:2px solid #2c3e50;padding-bottom:2pt;margin:14pt 0 6pt;break-after:avoid}'
        || 'h3{font-size:11pt;margin:8pt 0 4pt;break-after:avoid}'
        || 'table{border-collapse:collapse;width:100%;margin:4pt 0 8pt;font-size:9.5pt}th,td{border:1px solid #bbb;padding:2pt 4pt;text-align:right}'
        || 'th:first-child,td:first-child{text-align:left}thead th{background:#ecf0f1}tr{break-inside:avoid}'
        || '.worst td{background:#fdecea}.mark{color:#c0392b;font-size:8.5pt}.up{color:#1e8449}.down{color:#c0392b}'
        || '.meta{color:#555;margin:0}.partial{background:#fff4e5;border:1px solid #e67e22;padding:4pt 6pt;margin:6pt 0}'
        || 'figure.chart{margin:0 0 6pt;break-inside:avoid}figcaption{font-weight:bold;font-size:9.5pt}'
        || 'svg text{font-family:inherit;font-size:9px;fill:#444}svg .yl{text-anchor:end}svg .xl.end{text-anchor:end}'
        || 'svg .ax{stroke:#888;stroke-width:1}svg .grid{stroke:#ddd;stroke-dasharray:3 3}svg .empty{fill:#999;font-size:12px}'
        || '.charts{display:grid;grid-template-columns:1fr 1fr;gap:0 10pt}'
        || 'footer{color:#555;font-size:8.5pt;border-top:1px solid #bbb;margin-top:12pt;padding-top:4pt}'
        || '</style></head><body>';
    html := html || '<header>' || format('<h1>视频监控运维%s</h1>', p.title)
        || format('<p class="meta">统计周期：%s 至 %s（%s 天，北京时间）</p>', to_char(p.f, 'YYYY-MM-DD'), to_char(p.t - 1, 'YYYY-MM-DD'), n)
        || format('<p class="meta">上期：%s 至 %s%s</p>', to_char(p.pf, 'YYYY-MM-DD'), to_char(p.pt - 1, 'YYYY-MM-DD'),
                  CASE WHEN prev_days < p.pt - p.pf THEN format('（部分数据：%s 天中有 %s 天有数据）', p.pt - p.pf, prev_days) ELSE '' END)
        || format('<p class="meta" data-channels="%s">统计范围：%s 个点位%s</p>', channels, channels,
                  CASE WHEN all_visible THEN '（全部）' ELSE '（按当前用户的授权范围）' END)
        || CASE WHEN is_open THEN format('<p class="meta">生成时间：%s（统计期未结束，数据截至生成时间）</p>',
                                         to_char(now() AT TIME ZONE tz, 'YYYY-MM-DD HH24:MI')) ELSE '' END
        || CASE WHEN days_with_data < n THEN
                format('<p class="partial" data-partial="true">部分数据：统计期 %s 天中有 %s 天有数据%s。缺少数据的日期不计为零，趋势图中留空。</p>',
                       n, days_with_data, CASE WHEN is_open THEN '（统计期未结束）' ELSE '' END)
                ELSE '' END
        || '</header>';

    -- 一、核心指标
    SELECT '<section id="headline"><h2>一、核心指标</h2><table class="figures"><thead><tr><th>指标</th><th>本期</th><th>上期</th><th>变化</th></tr></thead><tbody>'
        || string_agg(format('<tr><td>%s</td><td data-figure="%s" data-value="%s">%s</td><td data-previous="%s">%s</td><td class="%s">%s</td></tr>',
                             vms._report_esc(d.label), d.figure, coalesce(round(cur.value::numeric, 6)::text, ''),
                             vms._report_fmt(cur.value, d.unit), d.figure, vms._report_fmt(prev.value, d.unit),
                             -- green when better: less offline time, fewer alarms, quicker work orders
                             CASE WHEN cur.value IS NULL OR prev.value IS NULL OR cur.value = prev.value THEN ''
                                  WHEN (cur.value > prev.value) = (d.figure IN ('online_ratio', 'stream_success_rate', 'image_rate', 'work_orders')
                                                                   OR d.figure LIKE 'sla%' OR d.figure LIKE 'alarms_cleared%')
                                  THEN 'up' ELSE 'down' END,
                             vms._report_change(cur.value, prev.value, d.unit)), '' ORDER BY d.ord)
        || '</tbody></table></section>'
      INTO part
      FROM vms._report_figure_defs() d
      JOIN vms._report_summary(p.f, p.t) cur ON cur.figure = d.figure
      JOIN vms._report_summary(p.pf, p.pt) prev ON prev.figure = d.figure;
    html := html || part;

    -- 二、每日趋势
    CREATE TEMP TABLE report_series ON COMMIT DROP AS
    SELECT s.figure, jsonb_agg(to_jsonb(x.value) ORDER BY g.day) AS vals
      FROM (SELECT DISTINCT d.figure FROM vms._report_figure_defs() d WHERE d.chart) s
     CROSS JOIN (SELECT gs::date AS day FROM generate_series(p.f, p.t - 1, interval '1 day') gs) g
      LEFT JOIN vms._report_daily(p.f, p.t) x ON x.figure = s.figure AND x.day = g.day
     GROUP BY s.figure;
    html := html || '<section id="trends"><h2>二、每日趋势</h2><div class="charts">'
        || vms._report_svg_chart('online_ratio', '在线率', '%', p.f, n,
               (SELECT jsonb_build_array(jsonb_build_object('name', '在线率', 'color', '#2471a3', 'values', vals)) FROM pg_temp.report_series WHERE figure = 'online_ratio'))
        || vms._report_svg_chart('stream_success_rate', '取流成功率', '%', p.f, n,
               (SELECT jsonb_build_array(jsonb_build_object('name', '取流成功率', 'color', '#1e8449', 'values', vals)) FROM pg_temp.report_series WHERE figure = 'stream_success_rate'))
        || vms._report_svg_chart('image_rate', '出图率', '%', p.f, n,
               (SELECT jsonb_build_array(jsonb_build_object('name', '出图率', 'color', '#7d3c98', 'values', vals)) FROM pg_temp.report_series WHERE figure = 'image_rate'))
        || vms._report_svg_chart('offline_hours', '离线时长', '小时', p.f, n,
               (SELECT jsonb_build_array(jsonb_build_object('name', '离线时长', 'color', '#c0392b', 'values', vals)) FROM pg_temp.report_series WHERE figure = 'offline_hours'))
        || vms._report_svg_chart('alarms_raised', '新增告警（按级别）', '条', p.f, n,
               (SELECT jsonb_agg(jsonb_build_object('name', lv[l], 'color', colors[l], 'values', vals) ORDER BY l)
                  FROM generate_series(1, 4) l JOIN pg_temp.report_series ON figure = 'alarms_raised_' || l))
        || vms._report_svg_chart('alarms_cleared', '已关闭告警（按级别）', '条', p.f, n,
               (SELECT jsonb_agg(jsonb_build_object('name', lv[l], 'color', colors[l], 'values', vals) ORDER BY l)
                  FROM generate_series(1, 4) l JOIN pg_temp.report_series ON figure = 'alarms_cleared_' || l))
        || vms._report_svg_chart('sla', '按时修复率（按级别）', '%', p.f, n,
               (SELECT jsonb_agg(jsonb_build_object('name', lv[l], 'color', colors[l], 'values', vals) ORDER BY l)
                  FROM generate_series(1, 4) l JOIN pg_temp.report_series ON figure = 'sla_' || l))
        || vms._report_svg_chart('work_orders', '派工单', '张', p.f, n,
               (SELECT jsonb_build_array(jsonb_build_object('name', '派工单', 'color', '#2c3e50', 'values', vals)) FROM pg_temp.report_series WHERE figure = 'work_orders'))
        || vms._report_svg_chart('wo_minutes', '平均响应 / 到场时长', '分钟', p.f, n,
               (SELECT jsonb_agg(jsonb_build_object('name', CASE figure WHEN 'wo_response_minutes' THEN '响应' ELSE '到场' END,
                                                    'color', CASE figure WHEN 'wo_response_minutes' THEN '#2471a3' ELSE '#e67e22' END,
                                                    'values', vals) ORDER BY figure DESC)
                  FROM pg_temp.report_series WHERE figure IN ('wo_response_minutes', 'wo_on_site_minutes')))
        || vms._report_svg_chart('wo_resolution_hours', '平均处理时长', '小时', p.f, n,
               (SELECT jsonb_build_array(jsonb_build_object('name', '处理', 'color', '#7f8c8d', 'values', vals)) FROM pg_temp.report_series WHERE figure = 'wo_resolution_hours'))
        || '</div></section>';
    DROP TABLE pg_temp.report_series;

    -- 三、分单位 / 区域 / 运维单位
    html := html || '<section id="groups"><h2>三、分单位、分区域、分运维单位</h2>'
        || '<h3>按管理单位</h3>' || vms._report_group_table(p.f, p.t, 'unit')
        || '<h3>按行政区划</h3>' || vms._report_group_table(p.f, p.t, 'region')
        || '<h3>按运维单位</h3>' || vms._report_group_table(p.f, p.t, 'contractor')
        || '</section>';

    -- 四、清单
    SELECT '<section id="lists"><h2>四、清单</h2><h3>离线时长前十的设备（点位）</h3><table class="list" data-list="offline_top"><thead><tr><th>点位</th><th>编码</th><th>所属设备</th><th>管理单位</th><th>离线时长</th><th>离线次数</th></tr></thead><tbody>'
        || coalesce(string_agg(format('<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>',
                                      vms._report_esc(o.name), o.code, vms._report_esc(o.device_name), vms._report_esc(o.unit_name),
                                      vms._report_fmt(o.off_s / 3600, '小时'), vms._report_fmt(o.ev, '次')), '' ORDER BY o.off_s DESC, o.code),
                    '<tr><td colspan="6">本期无离线</td></tr>')
        || '</tbody></table>'
      INTO part
      FROM (SELECT x.code::text AS code, max(x.name) AS name, max(x.device_name) AS device_name, max(x.unit_name) AS unit_name,
                   sum(x.offline_seconds) AS off_s, sum(x.offline_events) AS ev
              FROM pg_temp.report_cd x WHERE x.day >= p.f AND x.day < p.t
             GROUP BY x.code HAVING sum(x.offline_seconds) > 0
             ORDER BY sum(x.offline_seconds) DESC, x.code::text LIMIT 10) o;
    html := html || part;
    SELECT '<h3>巡检发现的故障（按类型）</h3><table class="list" data-list="faults"><thead><tr><th>故障类型</th><th>次数</th><th>涉及点位</th></tr></thead><tbody>'
        || coalesce(string_agg(format('<tr><td>%s</td><td>%s</td><td>%s</td></tr>', vms._report_esc(vms._report_fault_name(q.k)),
                                      vms._report_fmt(q.n, '次'), q.ch), '' ORDER BY q.n DESC, q.k),
                    '<tr><td colspan="3">本期巡检未发现故障</td></tr>')
        || '</tbody></table>'
      INTO part
      FROM (SELECT e.key AS k, sum(e.value::numeric)::float8 AS n, count(DISTINCT x.code) AS ch
              FROM pg_temp.report_cd x, jsonb_each_text(x.faults) e WHERE x.day >= p.f AND x.day < p.t GROUP BY e.key) q;
    html := html || part;
    SELECT '<h3>超期告警</h3><table class="list" data-list="overdue"><thead><tr><th>编码</th><th>名称</th><th>级别</th><th>故障</th><th>修复期限</th><th>恢复时间</th></tr></thead><tbody>'
        || coalesce(string_agg(format('<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>',
                                      o.code, vms._report_esc(o.name), lv[o.level], vms._report_esc(vms._report_fault_name(o.fault_type)),
                                      to_char(o.fix_by AT TIME ZONE tz, 'YYYY-MM-DD HH24:MI'),
                                      coalesce(to_char(o.cleared_at AT TIME ZONE tz, 'YYYY-MM-DD HH24:MI'), '期末未恢复')),
                               '' ORDER BY o.fix_by, o.alarm_id),
                    '<tr><td colspan="6">本期无超期告警</td></tr>')
        || '</tbody></table></section>'
      INTO part
      FROM (SELECT x.alarm_id, x.code::text AS code, x.level, x.fault_type, x.fix_by,
                   coalesce((SELECT max(c.name) FROM pg_temp.report_cd c WHERE c.code = x.code),
                            (SELECT max(c.device_name) FROM pg_temp.report_cd c WHERE c.device_code = x.code)) AS name,
                   (SELECT max(y.cleared_at) FROM pg_temp.report_al y WHERE y.alarm_id = x.alarm_id AND y.cleared AND y.day < p.t) AS cleared_at
              FROM pg_temp.report_al x WHERE x.overdue AND x.day >= p.f AND x.day < p.t) o;
    html := html || part;

    -- 五、治理指标
    SELECT '<section id="governance"><h2>五、点位治理</h2>'
        || format('<p class="meta">截至 %s</p>', coalesce(to_char(max(g.day), 'YYYY-MM-DD'), '—'))
        || '<table class="groups" data-group="governance"><thead><tr><th>管理单位</th><th>点位数</th><th>填报率</th><th>合格率</th><th>规范率</th><th>标注率</th><th>出图率</th></tr></thead><tbody>'
        || coalesce(string_agg(CASE WHEN g.withheld THEN
                                   format('<tr class="withheld" data-withheld="true"><td>%s</td><td colspan="6">不显示：该单位有您无权查看的点位，其治理指标按全部点位统计</td></tr>',
                                          vms._report_esc(coalesce(g.unit_name, '（未划分单位）')))
                               ELSE format('<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>',
                                      vms._report_esc(coalesce(g.unit_name, '（未划分单位）')), coalesce(g.channels::text, '—'),
                                      vms._report_fmt(g.fill_rate, '%'), vms._report_fmt(g.pass_rate, '%'),
                                      vms._report_fmt(g.naming_rate, '%'), vms._report_fmt(g.tag_rate, '%'),
                                      vms._report_fmt(g.image_rate, '%')) END, '' ORDER BY g.unit_name, g.unit_key)
                        FILTER (WHERE g.channels IS NOT NULL OR g.withheld),
                    '<tr><td colspan="7">本期无治理数据</td></tr>')
        || '</tbody></table>'
      INTO part
      FROM pg_temp.report_gv g
     WHERE g.day = (SELECT max(y.day) FROM pg_temp.report_gv y WHERE y.day >= p.f AND y.day < p.t
                       AND (y.channels IS NOT NULL OR y.withheld));
    html := html || part;
    SELECT '<h3>未关闭的治理任务（按规则）</h3><table class="list" data-list="governance_tasks"><thead><tr><th>规则</th><th>说明</th><th>未关闭任务</th></tr></thead><tbody>'
        || coalesce(string_agg(format('<tr><td>%s</td><td>%s</td><td>%s</td></tr>', vms._report_esc(q.k),
                                      vms._report_esc((SELECT r.description FROM vms.governance_rule r WHERE r.code = q.k)),
                                      vms._report_fmt(q.n, '条')), '' ORDER BY q.n DESC, q.k),
                    '<tr><td colspan="3">无未关闭的治理任务</td></tr>')
        || '</tbody></table>'
      INTO part
      FROM (SELECT e.key AS k, sum(e.value::numeric)::float8 AS n
              FROM pg_temp.report_gv g, jsonb_each_text(g.open_tasks) e
             WHERE g.day = (SELECT max(y.day) FROM pg_temp.report_gv y WHERE y.day >= p.f AND y.day < p.t)
             GROUP BY e.key) q;
    SELECT part || coalesce('<p class="meta" data-withheld="tasks">不含以下单位的任务（有您无权查看的点位）：'
                            || string_agg(vms._report_esc(coalesce(g.unit_name, '（未划分单位）')), '、' ORDER BY g.unit_name, g.unit_key)
                            || '</p>', '') || '</section>'
      INTO part
      FROM pg_temp.report_gv g
     WHERE g.tasks_withheld AND g.day = (SELECT max(y.day) FROM pg_temp.report_gv y WHERE y.day >= p.f AND y.day < p.t);
    html := html || part;

    -- 六、点位分布
    SELECT min(x.lon), max(x.lon), min(x.lat), max(x.lat) INTO minlon, maxlon, minlat, maxlat
      FROM pg_temp.report_cd x WHERE x.day = last_day AND x.lon BETWEEN 73 AND 136 AND x.lat BETWEEN 3 AND 54;
    kx := cos(radians(coalesce((minlat + maxlat) / 2, 0)));
    sc := least(680 / greatest((maxlon - minlon) * kx, 1e-6), 400 / greatest(maxlat - minlat, 1e-6));
    SELECT '<section id="map"><h2>六、点位分布（期末状态）</h2>'
        || format('<svg xmlns="http://www.w3.org/2000/svg" data-chart="map" data-points="%s" viewBox="0 0 700 450" width="100%%" role="img">', count(*))
        || '<rect x="0" y="0" width="700" height="450" fill="#f7f9fa" stroke="#bbb"/>'
        || coalesce(string_agg(format('<circle cx="%s" cy="%s" r="2.2" fill="%s"/>',
                                      round((10 + (x.lon - minlon) * kx * sc)::numeric, 1), round((430 - (x.lat - minlat) * sc)::numeric, 1),
                                      CASE x.state_at_end WHEN 'online' THEN '#27ae60' WHEN 'offline' THEN '#c0392b' ELSE '#95a5a6' END),
                               '' ORDER BY x.state_at_end DESC, x.code), '<text x="20" y="220" class="empty">无坐标</text>')
        || '</svg>'
        || format('<p class="meta"><span style="color:#27ae60">●</span> 在线 %s　<span style="color:#c0392b">●</span> 离线 %s　<span style="color:#95a5a6">●</span> 未知 %s　（无有效坐标的点位不画）</p>',
                  count(*) FILTER (WHERE x.state_at_end = 'online'), count(*) FILTER (WHERE x.state_at_end = 'offline'),
                  count(*) FILTER (WHERE x.state_at_end = 'unknown'))
        || '</section>'
      INTO part
      FROM pg_temp.report_cd x WHERE x.day = last_day AND x.lon BETWEEN 73 AND 136 AND x.lat BETWEEN 3 AND 54;
    html := html || coalesce(part, '');

    html := html || '<footer><p>口径：在线率 = 在线时长 ÷（在线时长 + 离线时长），按点位（通道）时间加权，未知时段（设备首次上报前、服务重启宽限期、登记的停机）不计入；'
        || '离线时长为点位离线时间之和；取流成功率、出图率为巡检记录中取到码流、得到可用画面的比例；'
        || '告警不含屏蔽与根因抑制的告警，按时修复率 = 本期关闭的告警中在修复期限前恢复的比例；派工单时长自派单起计。'
        || '统计日按北京时间划分；已结束的日期按冻结的数据出报，重出报表结果不变。</p></footer>'
        || '</body></html>' || chr(10);
    RETURN html;
END $$;
COMMENT ON FUNCTION vms.report_html(text, date) IS
    'the O&M report (运维报表) of a period as one self-contained HTML5 document (inline CSS and SVG charts, no script, nothing fetched, A4): headline figures with the previous period and the change, daily trends, tables per unit, region and contractor with the worst rows marked, lists, governance, a dot map; kind daily, weekly, monthly, quarterly or annual from period_start (report days in Asia/Shanghai); only the channels the caller may see; a closed period gives the same bytes every time';

-- Plain views for charting tools (Grafana on PostgreSQL, spreadsheets): one
-- row per frozen report day and group (all, unit, region, contractor), from
-- the frozen facts; security_invoker, so row-level security shows a reader
-- only the channels their grants allow.
CREATE VIEW vms.report_daily WITH (security_invoker = true) AS
SELECT x.day, g.group_by, g.group_key, min(g.group_name) AS group_name, count(*)::int AS channels,
       sum(x.online_seconds) / nullif(sum(x.online_seconds) + sum(x.offline_seconds), 0) AS online_ratio,
       sum(x.online_seconds) AS online_seconds, sum(x.offline_seconds) AS offline_seconds,
       sum(x.unknown_seconds) AS unknown_seconds, sum(x.offline_events)::int AS offline_events,
       sum(x.inspections)::int AS inspections,
       sum(x.stream_ok)::float8 / nullif(sum(x.inspections), 0) AS stream_success_rate,
       sum(x.image_ok)::float8 / nullif(sum(x.inspections), 0) AS image_rate
  FROM vms.report_channel_day x
 CROSS JOIN LATERAL (VALUES ('all', '', '全部'), ('unit', coalesce(x.unit_id::text, ''), x.unit_name),
                            ('region', coalesce(x.civil_code, ''), x.region_name),
                            ('contractor', coalesce(x.contractor, ''), x.contractor)) g(group_by, group_key, group_name)
 GROUP BY x.day, g.group_by, g.group_key;
COMMENT ON VIEW vms.report_daily IS
    'per frozen report day (Asia/Shanghai) and group (all, unit, region, contractor; group_key '''' = none): 在线率 online_ratio, 离线时长 offline_seconds, outages, inspections with 取流成功率 stream_success_rate and 出图率 image_rate, over the channels the reader may see';

CREATE VIEW vms.report_daily_alarms WITH (security_invoker = true) AS
SELECT x.day, g.group_by, g.group_key, x.level,
       count(*) FILTER (WHERE x.raised)::int AS raised, count(*) FILTER (WHERE x.cleared)::int AS cleared,
       avg(x.met_fix::int) FILTER (WHERE x.cleared AND x.met_fix IS NOT NULL)::float8 AS fixed_in_time_rate,
       count(*) FILTER (WHERE x.overdue)::int AS overdue
  FROM vms.report_alarm_day x
 CROSS JOIN LATERAL (VALUES ('all', ''), ('unit', coalesce(x.unit_id::text, '')), ('region', coalesce(x.civil_code, '')),
                            ('contractor', coalesce(x.contractor, ''))) g(group_by, group_key)
 GROUP BY x.day, g.group_by, g.group_key, x.level;
COMMENT ON VIEW vms.report_daily_alarms IS
    'per frozen report day, group and alarm level: alarms raised, cleared, the share cleared by the fix deadline (SLA) and fix deadlines missed that day (masked and suppressed alarms excluded)';

CREATE VIEW vms.report_daily_work_orders WITH (security_invoker = true) AS
SELECT x.day, g.group_by, g.group_key, count(*)::int AS work_orders,
       avg(x.response_seconds) AS mean_response_seconds, avg(x.on_site_seconds) AS mean_on_site_seconds,
       avg(x.resolution_seconds) AS mean_resolution_seconds
  FROM vms.report_order_day x
 CROSS JOIN LATERAL (VALUES ('all', ''), ('unit', coalesce(x.unit_id::text, '')), ('region', coalesce(x.civil_code, '')),
                            ('contractor', coalesce(x.contractor, ''))) g(group_by, group_key)
 GROUP BY x.day, g.group_by, g.group_key;
COMMENT ON VIEW vms.report_daily_work_orders IS
    'per frozen report day and group: work orders opened and their mean response, on-site and resolution seconds (as at the freeze)';
