-- O&M reports (issue 19): vms.report_html and vms.report_figures over a
-- week of pinned history in 福田 (two NVRs, their channels, inspections,
-- alarms, work orders).  Every time is pinned with its offset and report
-- days are China Standard Time, so the file passes in any time zone and on
-- any date after March 2026.  Checked: the figures printed equal
-- vms.report_figures and what vms.availability / hand counts give; a closed
-- period gives the same bytes twice, even after late data arrives; a
-- region-scoped analyst's report holds only that street; bad input is
-- refused with 22023 and a hint; a period with partial data says so.
\set SHOW_CONTEXT never
SET search_path = public, vms;
SET client_min_messages = warning;
\getenv abs_srcdir PG_ABS_SRCDIR
\set ECHO none
\i :abs_srcdir/sql/fixtures/futian.sql
\i :abs_srcdir/sql/fixtures/nanyuan.sql
\set ECHO all
\set ECHO none
\i :abs_srcdir/sql/fixtures/report_history.sql
\set ECHO all
-- (sql/fixtures/report_history.sql: both NVRs online from 2026-02-24 China
-- time; 园岭 offline 03-03 10:00-16:00, 南园 03-05 00:00-12:00; inspections
-- of 园岭 0001-0004 at 09:00 daily, 0002 black, 0003 without a stream on
-- 03-04; alarms: both outages (II, 南园's fixed late), 0002's black screen
-- (III, open, deadline 03-04 09:00), one of the week before; work orders
-- for the outages: response 10/20 min, on site 60/90 min, resolved 5/11 h)
-- the weekly report of 2026-03-02 (Monday) and its figures
CREATE TEMP TABLE r AS SELECT vms.report_html('weekly', '2026-03-02') AS html;
SELECT figure, label, unit, round(value::numeric, 6) AS value, round(previous::numeric, 6) AS previous
  FROM vms.report_figures('weekly', '2026-03-02');
-- a whole HTML5 document, UTF-8, nothing fetched, no script
SELECT left(html, 15) AS doctype, html LIKE '%<meta charset="utf-8">%' AS utf8, html LIKE '%<html lang="zh-CN">%' AS zh,
       html !~* '<script|https?://[^"]*\.(js|css|png|woff)|src=|@import|url\(' AS self_contained,
       html LIKE '%@page{size:A4%' AS a4, right(html, 8) = '</html>' || chr(10) AS ends
  FROM r;
-- every figure printed is what vms.report_figures returns (value and text)
SELECT count(*) AS figures,
       count(*) FILTER (WHERE m[2] = coalesce(round(f.value::numeric, 6)::text, '')) AS values_equal,
       count(*) FILTER (WHERE m[3] = vms._report_fmt(f.value, f.unit)) AS printed_equal
  FROM r, regexp_matches(r.html, 'data-figure="([a-z_0-9]+)" data-value="([^"]*)">([^<]*)<', 'g') m
  JOIN vms.report_figures('weekly', '2026-03-02') f ON f.figure = m[1];
-- 在线率 and 离线时长 against vms.availability over the week (all channels)
SELECT (SELECT round(value::numeric, 9) FROM vms.report_figures('weekly', '2026-03-02') WHERE figure = 'online_ratio')
     = round((sum(online_seconds) / (sum(online_seconds) + sum(offline_seconds)))::numeric, 9) AS online_ratio_equal,
       (SELECT round(value::numeric, 6) FROM vms.report_figures('weekly', '2026-03-02') WHERE figure = 'offline_hours')
     = round((sum(offline_seconds) / 3600)::numeric, 6) AS offline_hours_equal,
       sum(offline_seconds) / 3600 AS offline_hours
  FROM vms.availability('2026-03-02 00:00+08', '2026-03-09 00:00+08', 'unit');
-- 取流成功率 / 出图率 against vms.ops_figures and by hand: 28 inspections,
-- one without a stream; 0002 black every day and 0003's failed one: 20 pictures
SELECT sum(inspections) AS inspections, sum(stream_success_rate * inspections) AS streams,
       sum(image_rate * inspections) AS pictures
  FROM vms.ops_figures('2026-03-02 00:00+08', '2026-03-09 00:00+08', 'unit');
-- charts: every one has data points
SELECT m[1] AS chart, m[2]::int > 0 AS has_data
  FROM r, regexp_matches(r.html, 'data-chart="([a-z_]+)" data-points="([0-9]+)"', 'g') m;
-- the worst unit is marked; lists and governance are there
SELECT html ~ '<tr class="worst"><td>南园派出所 <span class="mark">▼ 最差' AS worst_marked,
       html LIKE '%福华路西向东-003%' AS offline_top_lists_channels,
       html ~ '<td>黑屏</td><td>7 次</td>' AS faults_by_type,
       html ~ '<td>44030402001180000001</td><td>南园NVR</td><td>Ⅱ级</td><td>离线</td><td>2026-03-05 08:00</td><td>2026-03-05 12:00</td>' AS overdue_cleared_late,
       html ~ '<td>44030401001320000002</td><td>摄像机2</td><td>Ⅲ级</td><td>黑屏</td><td>2026-03-04 09:00</td><td>期末未恢复</td>' AS overdue_open,
       html LIKE '%<th>填报率</th><th>合格率</th><th>规范率</th><th>标注率</th><th>出图率</th>%' AS governance,
       html NOT LIKE '%生成时间%' AS no_generation_time, html NOT LIKE '%data-partial%' AS complete
  FROM r;

-- the plain views: one row per day and group
SELECT day, group_key = '' AS all_, channels, round(online_ratio::numeric, 6) AS online_ratio, offline_seconds / 3600 AS offline_hours,
       inspections, stream_success_rate, image_rate
  FROM vms.report_daily WHERE group_by = 'all' AND day BETWEEN '2026-03-02' AND '2026-03-08' ORDER BY day;
SELECT day, group_key, group_name, round(online_ratio::numeric, 6) AS online_ratio
  FROM vms.report_daily WHERE group_by = 'unit' AND day = '2026-03-05' ORDER BY group_name;
SELECT day, level, raised, cleared, fixed_in_time_rate, overdue FROM vms.report_daily_alarms
 WHERE group_by = 'all' AND day BETWEEN '2026-03-02' AND '2026-03-08' ORDER BY day, level;
SELECT day, work_orders, mean_response_seconds, mean_on_site_seconds, mean_resolution_seconds
  FROM vms.report_daily_work_orders WHERE group_by = 'all' ORDER BY day;

-- permissions: an analyst granted the 园岭 street (the unit 园岭派出所)
-- sees only its channels: the unit's figures, nothing of 南园
-- (roles are cluster-wide: one left by an interrupted run is reused, and
-- every role this file creates is dropped at its end)
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'regress_report_yl') THEN
        CREATE ROLE regress_report_yl LOGIN;
    END IF;
END $$;
GRANT vms_analyst TO regress_report_yl;
INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level, granted_by)
VALUES ('regress_report_yl', 'region', '44030401', '{view_live}', 4, 'regress');
SET SESSION AUTHORIZATION regress_report_yl;
CREATE TEMP TABLE ry AS SELECT vms.report_html('weekly', '2026-03-02') AS html;
SELECT html LIKE '%园岭派出所%' AS own_unit, html NOT LIKE '%南园%' AS no_other_unit,
       html NOT LIKE '%44030402%' AS no_other_codes, substring(html FROM 'data-channels="([0-9]+)"') AS channels,
       html LIKE '%按当前用户的授权范围%' AS scoped
  FROM ry;
CREATE TEMP TABLE fy AS SELECT * FROM vms.report_figures('weekly', '2026-03-02');
SELECT figure, round(value::numeric, 6) AS value FROM fy
 WHERE figure IN ('online_ratio', 'offline_hours', 'stream_success_rate', 'alarms_raised_2', 'alarms_raised_3', 'work_orders');
SELECT count(*) AS view_rows, count(DISTINCT group_key) FILTER (WHERE group_by = 'unit') AS units
  FROM vms.report_daily WHERE day = '2026-03-05';
RESET SESSION AUTHORIZATION;
-- the same as vms.availability gives the unit
SELECT group_name, round(online_ratio::numeric, 6) = (SELECT round(value::numeric, 6) FROM fy WHERE figure = 'online_ratio') AS ratio_equal,
       offline_seconds / 3600 AS offline_hours, members
  FROM vms.availability('2026-03-02 00:00+08', '2026-03-09 00:00+08', 'unit') WHERE group_name = '园岭派出所';

-- a closed period gives the same bytes every time, even after late data
-- about it arrives (its days were frozen at the first report)
INSERT INTO vms.quality_result (channel_code, at, profile, stream_ok, image_ok, checks)
VALUES ('44030401001320000005', '2026-03-04 12:00+08', 'default', false, false, '{}');
SELECT vms.report_html('weekly', '2026-03-02') = html AS same_bytes, md5(html) = md5(vms.report_html('weekly', '2026-03-02')) AS same_again
  FROM r;
SELECT count(*) AS frozen_days, min(day), max(day) FROM vms.report_frozen_day;
SELECT vms.report_freeze('2026-03-04') AS frozen_again;

-- other kinds: a day, a month with partial data (data from 02-24), a quarter
SELECT k, s, length(h) > 1000 AS rendered, h LIKE '%data-partial="true"%' AS partial,
       substring(h FROM 'data-partial="true">(部分数据：[^<]*)') AS partial_text,
       substring(h FROM '上期：[^<]*') AS previous_period,
       substring(h FROM 'data-figure="online_ratio" data-value="[^"]*">[^<]*') AS online
  FROM (VALUES ('daily', date '2026-03-03'), ('monthly', date '2026-02-01'), ('quarterly', date '2026-01-01')) v(k, s),
       LATERAL vms.report_html(k, s) h;
-- partial, not zero: the days before the first data have no figures
SELECT figure, value, previous FROM vms.report_figures('weekly', '2026-02-23') WHERE figure IN ('online_ratio', 'stream_success_rate');

-- bad input: 22023 with a hint
CREATE FUNCTION pg_temp.refused(k text, s date) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; h text;
BEGIN
    PERFORM vms.report_html(k, s);
    RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, h = PG_EXCEPTION_HINT;
    RETURN st || ': ' || SQLERRM || ' | ' || h;
END $$;
SELECT k, s, pg_temp.refused(k, s) AS refused
  FROM (VALUES ('hourly', date '2026-03-02'), (NULL, '2026-03-02'), ('weekly', NULL), ('weekly', '2026-03-03'),
               ('quarterly', '2026-02-01'), ('monthly', '2999-01-01'), ('weekly', '2020-01-06'), ('annual', '2025-01-01')) v(k, s);
SELECT vms.report_freeze('2999-01-01');

-- governance of a scoped analyst (today's daily report: its governance
-- metrics are computed live).  One 园岭派出所 channel moves to 南园's street:
-- the analyst no longer sees every channel of the unit, whose governance row
-- (channels, rates, open tasks over all its channels) is then withheld and
-- marked; once granted that channel too, every governance number shown is
-- what a computation over the channels the analyst sees gives.
UPDATE vms.channel SET civil_code = '44030402' WHERE code = '44030401001320000016';
INSERT INTO vms.governance_task (channel_code, rule_code, severity, first_found_at, last_found_at)
VALUES ('44030401001320000016', 'naming_pattern', 4, '2026-03-01 00:00+08', '2026-03-01 00:00+08'),
       ('44030401001320000001', 'required_fields', 3, '2026-03-01 00:00+08', '2026-03-01 00:00+08');
SELECT (now() AT TIME ZONE 'Asia/Shanghai')::date AS today \gset
-- the governance rows a report shows (unit | figures, or unit | withheld) and
-- its open tasks by rule
CREATE FUNCTION pg_temp.gov_shown(html text) RETURNS TABLE (unit text, shown text) LANGUAGE sql AS $$
    SELECT m[1], concat_ws('|', m[2], m[3], m[4], m[5], m[6], m[7])
      FROM regexp_matches(substring(html FROM 'data-group="governance">.*?</tbody>'),
                          '<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>', 'g') m
    UNION ALL
    SELECT m[1], 'withheld'
      FROM regexp_matches(substring(html FROM 'data-group="governance">.*?</tbody>'), '<tr class="withheld" data-withheld="true"><td>([^<]*)</td>', 'g') m
    UNION ALL
    SELECT 'task ' || m[1], m[2]
      FROM regexp_matches(substring(html FROM 'data-list="governance_tasks">.*?</tbody>'),
                          '<tr><td>([a-z_]+)</td><td>[^<]*</td><td>([^<]*)</td></tr>', 'g') m
$$;
-- the same computed by hand over the channels a role sees: 点位数, 填报率
-- (required fields filled), 合格率 (no live task), 规范率 (no live
-- naming_pattern task), 标注率 (tagged), 出图率 (latest inspection usable),
-- and the tasks open on those channels
CREATE FUNCTION pg_temp.gov_visible(r name) RETURNS TABLE (unit text, shown text) LANGUAGE sql AS $$
    WITH fl AS (SELECT ARRAY(SELECT jsonb_array_elements_text(g.params -> 'fields')
                               FROM vms.governance_rule g WHERE g.code = 'required_fields') AS f),
    v AS (SELECT c.*, to_jsonb(c) AS j FROM vms.channel c WHERE vms.channel_visible_to(r::regrole::oid, c.code, c.civil_code)),
    pc AS (
        SELECT v.unit_id,
               1 - (SELECT count(*) FROM unnest(fl.f) x
                     WHERE CASE WHEN x = 'capabilities' THEN cardinality(v.capabilities) = 0 ELSE v.j ->> x IS NULL END)::numeric
                 / greatest(cardinality(fl.f), 1) AS filled,
               NOT EXISTS (SELECT 1 FROM vms.governance_task t WHERE t.channel_code = v.code AND t.state IN ('open', 'assigned', 'fixed')) AS passes,
               NOT EXISTS (SELECT 1 FROM vms.governance_task t WHERE t.channel_code = v.code AND t.rule_code = 'naming_pattern'
                              AND t.state IN ('open', 'assigned', 'fixed')) AS named_ok,
               EXISTS (SELECT 1 FROM vms.channel_tag ct WHERE ct.channel_code = v.code) AS tagged,
               (SELECT q.image_ok FROM vms.quality_result q WHERE q.channel_code = v.code ORDER BY q.at DESC, q.id DESC LIMIT 1) AS image_ok
          FROM v, fl)
    SELECT coalesce(u.name, '（未划分单位）'),
           concat_ws('|', count(*), vms._report_fmt(round(avg(pc.filled), 4), '%'), vms._report_fmt(round(avg(pc.passes::int), 4), '%'),
                     vms._report_fmt(round(avg(pc.named_ok::int), 4), '%'), vms._report_fmt(round(avg(pc.tagged::int), 4), '%'),
                     vms._report_fmt(round(avg(pc.image_ok::int), 4), '%'))
      FROM pc LEFT JOIN vms.org_unit u ON u.id = pc.unit_id GROUP BY 1
    UNION ALL
    SELECT 'task ' || t.rule_code, vms._report_fmt(count(*), '条')
      FROM vms.governance_task t JOIN v ON v.code = t.channel_code
     WHERE t.state IN ('open', 'assigned') GROUP BY t.rule_code
$$;
SET SESSION AUTHORIZATION regress_report_yl;
CREATE TEMP TABLE gy AS SELECT vms.report_html('daily', :'today') AS html;
RESET SESSION AUTHORIZATION;
-- withheld: no figure of 园岭派出所 (it has a channel the analyst cannot
-- see), its tasks left out and said so; no row from the whole ledger
SELECT s.unit, s.shown, s.shown = 'withheld' OR v.shown = s.shown AS withheld_or_equals_visible
  FROM gy, pg_temp.gov_shown(gy.html) s LEFT JOIN pg_temp.gov_visible('regress_report_yl') v ON v.unit = s.unit ORDER BY 1;
SELECT html ~ 'data-withheld="tasks">[^<]*园岭派出所' AS tasks_withheld_marked, html NOT LIKE '%南园%' AS no_other_unit,
       html LIKE '%（按当前用户的授权范围）%' AS scoped
  FROM gy;
-- granted the moved channel as well: every governance number shown equals
-- the computation over the analyst's channels, and nothing else is shown
INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level, granted_by)
VALUES ('regress_report_yl', 'channel', '44030401001320000016', '{view_live}', 4, 'regress');
SET SESSION AUTHORIZATION regress_report_yl;
CREATE TEMP TABLE gz AS SELECT vms.report_html('daily', :'today') AS html;
RESET SESSION AUTHORIZATION;
SELECT s.unit, s.shown, v.shown = s.shown AS equals_visible
  FROM gz, pg_temp.gov_shown(gz.html) s LEFT JOIN pg_temp.gov_visible('regress_report_yl') v ON v.unit = s.unit ORDER BY 1;
SELECT (SELECT count(*) FROM pg_temp.gov_visible('regress_report_yl')) AS visible_rows,
       (SELECT count(*) FROM gz, pg_temp.gov_shown(gz.html)) AS shown_rows,
       html NOT LIKE '%data-withheld%' AS nothing_withheld, html LIKE '%（按当前用户的授权范围）%' AS still_scoped
  FROM gz;
-- an administrator's report of the day shows the whole unit and 南园
SELECT s.unit, s.shown FROM pg_temp.gov_shown(vms.report_html('daily', :'today')) s ORDER BY 1;

-- vms.report_freeze is scheduled: vms.ops_run_due freezes the report days
-- that have ended (one transaction: one "now" for the run and the check)
SELECT name, cron, action, enabled FROM vms.ops_schedule WHERE action = 'report_freeze';
UPDATE vms.ops_schedule SET enabled = (action = 'report_freeze');
SELECT vms.ops_run_due() AS ran_first;   -- a schedule seen for the first time is only timed
SELECT next_run_at > now() AS timed, last_run_at IS NULL AS not_run FROM vms.ops_schedule WHERE action = 'report_freeze';
UPDATE vms.ops_schedule SET next_run_at = now() - interval '1 minute' WHERE action = 'report_freeze';
BEGIN;
SELECT vms.ops_run_due() AS ran;
SELECT last_result ~ '^[0-9]+ rows$' AS result, last_error, next_run_at > now() AS timed_again
  FROM vms.ops_schedule WHERE action = 'report_freeze';
SELECT count(*) AS days_of_the_last_week_frozen
  FROM generate_series((now() AT TIME ZONE 'Asia/Shanghai')::date - 7, (now() AT TIME ZONE 'Asia/Shanghai')::date - 1, interval '1 day') g
  JOIN vms.report_frozen_day f ON f.day = g::date;
SELECT count(*) AS unended_days_frozen FROM vms.report_frozen_day f
 WHERE (f.day + 1)::timestamp AT TIME ZONE 'Asia/Shanghai' > now();
COMMIT;

-- 统计范围 （全部） comes from the role's rights, not from the data: an
-- analyst granted the whole province (every channel there is) still reads
-- 按当前用户的授权范围, learning nothing of whether other channels exist
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'regress_report_gd') THEN
        CREATE ROLE regress_report_gd LOGIN;
    END IF;
END $$;
GRANT vms_analyst TO regress_report_gd;
INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level, granted_by)
VALUES ('regress_report_gd', 'region', '44', '{view_live}', 4, 'regress');
SELECT count(*) AS all_channels FROM vms.report_channel_day WHERE day = '2026-03-03' \gset
SET SESSION AUTHORIZATION regress_report_gd;
SELECT substring(h FROM 'data-channels="([0-9]+)"')::int = :all_channels AS sees_every_channel,
       h LIKE '%（按当前用户的授权范围）%' AS scoped, h NOT LIKE '%（全部）%' AS not_all
  FROM vms.report_html('daily', '2026-03-03') h;
RESET SESSION AUTHORIZATION;
SELECT h LIKE '%（全部）%' AS superuser_all FROM vms.report_html('daily', '2026-03-03') h;

-- every role this file created is dropped
DROP OWNED BY regress_report_yl;
DROP ROLE regress_report_yl;
DROP OWNED BY regress_report_gd;
DROP ROLE regress_report_gd;
SELECT count(*) AS roles_left FROM pg_roles WHERE rolname LIKE 'regress\_report%';
