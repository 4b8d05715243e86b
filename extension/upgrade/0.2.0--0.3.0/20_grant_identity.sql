-- Grants bind to the role they were made to (a security fix).  A grant named
-- its grantee role only by name, so when the role was dropped the grant
-- stayed, and a new role created later under the same name silently
-- inherited it.  vms.access_grant.grantee_oid now records the grantee's OID,
-- set from the name by a trigger, and a grant counts only while the name
-- still names that role (vms.grantee_role), as PostgreSQL's own ACLs bind
-- to role OIDs.  Every membership check of the other fragments
-- (13_audit_denied, 17_device_control, 20_import, 20_import_rls,
-- 20_tiles_governance) passes vms.grantee_role(grantee, grantee_oid) to
-- pg_has_role; the ones after this file need it to exist.
ALTER TABLE vms.access_grant ADD COLUMN grantee_oid oid;
ALTER TABLE vms.access_grant ADD COLUMN bound_in bigint;
COMMENT ON COLUMN vms.access_grant.grantee_oid IS
    'the OID of the grantee role when the grant was made (set from grantee by a trigger, never by the caller); the grant counts only while grantee still names that role (vms.grantee_role)';
COMMENT ON COLUMN vms.access_grant.bound_in IS
    'the system identifier of the cluster the grant was bound in (set with grantee_oid by the same trigger); vms.access_grant_rebind binds again only grants bound in another cluster, that is restored from its dump';

-- A grant binds to the role it was made to, as PostgreSQL's own ACLs bind to
-- role OIDs: it counts only while its grantee name still names the role of
-- grantee_oid.  A dropped role's grant counts for nobody, and a role created
-- later under the same name (a new OID) inherits nothing; a renamed role's
-- grants lapse until it gets its old name back (fail closed: the grant's
-- name, which people read, would no longer say who holds it).  The one
-- place that rule is written: every membership check passes
-- vms.grantee_role(g.grantee, g.grantee_oid) to pg_has_role, which is NULL
-- (false) for NULL.  A SQL-standard body, no SET and no SECURITY DEFINER,
-- so that the planner inlines it into the queries and policies that read
-- grants; PUBLIC, since the access_grant_view policy runs as the reader.
CREATE FUNCTION vms.grantee_role(grantee name, grantee_oid oid) RETURNS oid
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN CASE WHEN pg_catalog.to_regrole(pg_catalog.quote_ident(grantee)) = grantee_oid THEN grantee_oid END;
COMMENT ON FUNCTION vms.grantee_role(name, oid) IS
    'the role a grant (grantee, grantee_oid) counts for: grantee_oid while grantee still names that role, else NULL (the role was dropped, recreated or renamed)';

-- Sets a trigger's firing state (pg_trigger.tgenabled: O enabled, A always,
-- R replica only, D disabled) and returns the state it had, so that a
-- function that turns a trigger off for a while puts it back as the DBA had
-- set it (a plain ENABLE would reset ENABLE ALWAYS, ENABLE REPLICA or
-- DISABLE):  saved := vms._trigger_set(t, name, 'D'); ...;
-- PERFORM vms._trigger_set(t, name, saved).  The state is read under the
-- lock ALTER TABLE ... TRIGGER takes, so no other change comes between.
CREATE FUNCTION vms._trigger_set(tbl regclass, trg name, state "char") RETURNS "char"
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    clause constant text := CASE state WHEN 'O' THEN 'ENABLE' WHEN 'A' THEN 'ENABLE ALWAYS'
                                       WHEN 'R' THEN 'ENABLE REPLICA' WHEN 'D' THEN 'DISABLE' END;
    was "char";
BEGIN
    IF clause IS NULL THEN
        RAISE EXCEPTION 'invalid trigger state "%"', state
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A state is one of pg_trigger.tgenabled''s: O, A, R or D.';
    END IF;
    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', tbl);
    SELECT t.tgenabled INTO was FROM pg_catalog.pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = trg;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'trigger "%" for table "%" does not exist', trg, tbl USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('ALTER TABLE %s %s TRIGGER %I', tbl, clause, trg);
    RETURN was;
END $$;
COMMENT ON FUNCTION vms._trigger_set(regclass, name, "char") IS
    'internal: sets a trigger''s firing state (O, A, R, D as in pg_trigger.tgenabled) and returns the one it had';
REVOKE ALL ON FUNCTION vms._trigger_set(regclass, name, "char") FROM PUBLIC;

-- The existing grants are bound to the roles their names name now: a
-- dropped role's grant gets NULL and counts for nobody.  (A role already
-- recreated under a dropped role's name before this upgrade cannot be told
-- from the original: README, Permissions.)  Not audited as grant changes:
-- no grant changes; the audit trigger is left as the DBA had set it.
DO $$
DECLARE
    saved constant "char" := vms._trigger_set('vms.access_grant', 'access_grant_audit', 'D');
BEGIN
    UPDATE vms.access_grant SET grantee_oid = pg_catalog.to_regrole(pg_catalog.quote_ident(grantee)),
                                bound_in = (SELECT s.system_identifier FROM pg_catalog.pg_control_system() s);
    PERFORM vms._trigger_set('vms.access_grant', 'access_grant_audit', saved);
END $$;

-- Sets grantee_oid from the grantee's name on every insert (a grant made
-- now, or one loaded by a data-only restore with triggers on, bound by role
-- name as pg_restore binds PostgreSQL's own ACLs; the documented restore
-- runs with --disable-triggers and keeps the dumped OIDs, see
-- vms.access_grant_rebind; a name no role has gets NULL and the grant counts
-- for nobody), and bound_in to this cluster's system identifier.  An update keeps the binding unless it changes
-- the grantee, so nobody can set grantee_oid by hand, and re-saving a
-- dropped role's grant does not bind it to a new role of that name.
CREATE FUNCTION vms._grant_bind_role() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.grantee IS NOT DISTINCT FROM OLD.grantee THEN
        NEW.grantee_oid := OLD.grantee_oid;
        NEW.bound_in := OLD.bound_in;
    ELSE
        NEW.grantee_oid := pg_catalog.to_regrole(pg_catalog.quote_ident(NEW.grantee));
        NEW.bound_in := (SELECT s.system_identifier FROM pg_catalog.pg_control_system() s);
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._grant_bind_role() IS 'internal: binds a grant to the OID of its grantee role when it is made (or its grantee changes)';
CREATE TRIGGER access_grant_role BEFORE INSERT OR UPDATE OF grantee, grantee_oid, bound_in ON vms.access_grant
    FOR EACH ROW EXECUTE FUNCTION vms._grant_bind_role();

-- A restore into another cluster (roles carried by pg_dumpall --roles-only,
-- so with new OIDs; the data step runs with --disable-triggers) brings the
-- grants with the OIDs of the old cluster, and they count for nobody until
-- they are bound again by name, as pg_restore binds PostgreSQL's own ACLs:
-- the owner runs this once after the restore.  It binds every live grant
-- bound in another cluster (bound_in: that cluster's system identifier, as
-- dumped) to the role its name names here (NULL when no role has the name)
-- and marks it bound here; revoked grants and grants never bound (NULL)
-- stay as they are.  Grants bound in this cluster are never touched, so a
-- dropped role's grant is not handed to a new role of its name by running
-- this where it does not belong (a restore into the same cluster finds
-- nothing).  A grant that counted for nobody before the dump cannot be told
-- from the others in another cluster, so such grants are revoked before it
-- (README).  It returns the grants whose role it changed; each is audited
-- as a grant change.
CREATE FUNCTION vms.access_grant_rebind()
    RETURNS TABLE (grant_id bigint, grantee name, old_oid oid, new_oid oid)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    here constant bigint := (SELECT s.system_identifier FROM pg_catalog.pg_control_system() s);
    saved "char";
BEGIN
    -- the trigger keeps a grant's binding on every update but of its grantee: off
    -- for this update, then back in the state it was in (ENABLE ALWAYS too)
    saved := vms._trigger_set('vms.access_grant', 'access_grant_role', 'D');
    RETURN QUERY
    WITH old AS (
        SELECT g.id, g.grantee_oid FROM vms.access_grant g
         WHERE g.revoked_at IS NULL AND g.grantee_oid IS NOT NULL AND g.bound_in IS DISTINCT FROM here
           FOR UPDATE),
    bound AS (
        UPDATE vms.access_grant g SET grantee_oid = pg_catalog.to_regrole(pg_catalog.quote_ident(g.grantee)), bound_in = here
          FROM old WHERE g.id = old.id
        RETURNING g.id, g.grantee, old.grantee_oid AS old_oid, g.grantee_oid AS new_oid)
    SELECT b.id, b.grantee, b.old_oid, b.new_oid FROM bound b WHERE b.old_oid IS DISTINCT FROM b.new_oid;
    PERFORM vms._trigger_set('vms.access_grant', 'access_grant_role', saved);
END $$;
COMMENT ON FUNCTION vms.access_grant_rebind() IS
    'after a restore into another cluster: bind the live grants again to the roles their grantee names name there (as pg_restore does for ACLs); returns the grants changed';

-- privileges (99_privileges.sql): the trigger function is internal,
-- vms.access_grant_rebind the owner's; vms.grantee_role is PUBLIC with the
-- row-level security functions
REVOKE ALL ON FUNCTION vms._grant_bind_role() FROM PUBLIC;
REVOKE ALL ON FUNCTION vms.access_grant_rebind() FROM PUBLIC;
REVOKE ALL ON FUNCTION vms.grantee_role(name, oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vms.grantee_role(name, oid) TO PUBLIC;

-- vms.review_wide_grants lists g.*, expanded when the view was made: made
-- again, as a fresh install makes it, it shows grantee_oid too (in the
-- column order of vms.access_grant, so CREATE OR REPLACE cannot add it)
DROP VIEW vms.review_wide_grants;
CREATE VIEW vms.review_wide_grants WITH (security_invoker = true) AS
SELECT g.*, u.name AS unit, u.civil_code AS unit_civil_code
  FROM vms.access_grant g
  LEFT JOIN vms.subject s ON s.role_name = g.grantee
  LEFT JOIN vms.org_unit u ON u.id = s.unit_id
 WHERE g.revoked_at IS NULL AND (g.valid_until IS NULL OR g.valid_until > now())
   AND (g.scope_kind = 'all'
        OR (g.scope_kind = 'region' AND (u.civil_code IS NULL OR g.scope_ref NOT LIKE u.civil_code || '%')));
COMMENT ON VIEW vms.review_wide_grants IS 'live grants wider than the area of the grantee''s unit (or to everything)';
GRANT SELECT ON vms.review_wide_grants TO vms_grant_admin, vms_approver;

-- vms.report_html (unchanged since 0.2.0 but for this) heads a report "all"
-- (全部) for a role with a live grant of everything at the highest level;
-- it matched the grant's name to pg_roles, so a new role of a dropped
-- role's name was told it sees everything.  Its definition, as 30_reports.sql
-- has it now:
-- SECURITY DEFINER: as vms.report_figures (freezes days as the owner, keeps
-- what vms.channel_visible_to allows the role the session acts as).
CREATE OR REPLACE FUNCTION vms.report_html(kind text, period_start date) RETURNS text
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
