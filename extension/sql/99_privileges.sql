-- Privileges: what PUBLIC and each duty role may use.  This file comes last
-- in the install script, so every object of the extension is either granted
-- here or left to the owner on purpose.  sql/security_surface.sql keeps the
-- same classification of every function and fails when a function is added
-- without one.  Schema changes of later versions repeat their part of this
-- in their upgrade script (its last section).
--
-- Functions.  First nothing is executable by PUBLIC: EXECUTE is revoked on
-- every function that belongs to the extension (a loop over pg_depend, so no
-- function of someone else's in schema vms is touched).  Then each class is
-- granted explicitly:
--
--   internal   vms._*: the owner's only, never PUBLIC or a duty role.  The
--              public functions that need one are SECURITY DEFINER (they
--              run as the owner; see the comment above each) or are left to
--              the owner themselves.
--   PUBLIC     the gbcode type (I/O, operators, support), pure functions,
--              the row-level security functions and trigger conditions
--              (whoever queries a table runs them), vms.request_access
--              and vms.withdraw_request (anyone may ask, and take it back), and the functions that run with the
--              caller's own table privileges and row-level security, so
--              that EXECUTE alone gives nothing (import, tags, alarms and
--              the alarm rules they apply, overrides).
--   vms_analyst       search, tiles, view cones, rights, export, reports.
--   vms_grant_admin   grant and revoke; periodic review.
--   vms_approver      decide requests; periodic review.
--   vms_auditor       verify the audit chain; periodic review.
--   owner      everything else, for superusers and the workers: the audit
--              writer, secrets, workers, SIP, GA/T 1400, inspection,
--              governance runs and metrics, device reports and passwords,
--              operations (availability, maintenance contracts, alarm
--              rules, masks, deadlines, escalation, work orders, kept
--              figures, scheduled runs, retention, notification routes),
--              vms.tag_search_results and vms.cron_next (which use internal
--              helpers), the security-level functions (which read the
--              security catalogue).  A DBA may GRANT EXECUTE on one of these
--              to an operator role; those that call internal helpers then
--              still work only for superusers.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT d.objid::regprocedure FROM pg_catalog.pg_depend d
              WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'e'
                AND d.refclassid = 'pg_catalog.pg_extension'::regclass
                AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'vms')
              ORDER BY d.objid LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;

-- PUBLIC: the type and pure functions
GRANT EXECUTE ON FUNCTION
    vms.gbcode_in(cstring), vms.gbcode_out(vms.gbcode), vms.gbcode_recv(internal), vms.gbcode_send(vms.gbcode),
    vms.gbcode_eq(vms.gbcode, vms.gbcode), vms.gbcode_ne(vms.gbcode, vms.gbcode),
    vms.gbcode_lt(vms.gbcode, vms.gbcode), vms.gbcode_le(vms.gbcode, vms.gbcode),
    vms.gbcode_gt(vms.gbcode, vms.gbcode), vms.gbcode_ge(vms.gbcode, vms.gbcode),
    vms.gbcode_cmp(vms.gbcode, vms.gbcode), vms.gbcode_sortsupport(internal),
    vms.gbcode_hash(vms.gbcode), vms.gbcode_hash_extended(vms.gbcode, bigint),
    vms.gbcode_make(text, integer, integer, integer, integer), vms.gbcode_parse_error(text),
    vms.gbcode_check(vms.gbcode), vms.gbcode_problems(vms.gbcode), vms.gbcode_centre(vms.gbcode),
    vms.gbcode_province(vms.gbcode), vms.gbcode_city(vms.gbcode), vms.gbcode_county(vms.gbcode),
    vms.gbcode_industry(vms.gbcode), vms.gbcode_network(vms.gbcode), vms.gbcode_type(vms.gbcode),
    vms.gbcode_type_name(vms.gbcode), vms.gbcode_serial(vms.gbcode), vms.gbcode_in_region(vms.gbcode, text),
    vms.gbcode_region_lower(text), vms.gbcode_region_upper(text),
    vms.gbcode_type_table(), vms.gbcode_industry_table(),
    vms.coord_convert(float8, float8, text, text), vms.to_wgs84(float8, float8, text),
    vms.convert_point(geometry, text, text),
    vms.wgs84_to_gcj02(geometry), vms.gcj02_to_wgs84(geometry), vms.gcj02_to_bd09(geometry),
    vms.bd09_to_gcj02(geometry), vms.wgs84_to_bd09(geometry), vms.bd09_to_wgs84(geometry),
    vms.view_cone(geometry, float8, float8, float8, integer),
    vms.text_grams(text), vms.keyword_grams(text), vms.text_contains(text, text),
    vms.channel_search_text(text, text, text, text),
    vms.try_float8(text), vms.is_ip(text), vms.governed_columns(regclass),
    vms.chain_digest(bytea), vms.chain_digest_name(), vms.secret_algorithm(),
    vms.viid_id_problems(text), vms.viid_object_id(text, integer, integer),
    vms.viid_image_id(vms.gbcode, integer, timestamp, integer), vms.inspection_alarm_level(text),
    vms.notify_render(text, jsonb), vms.ptz_cmd(text, integer), vms.ptz_preset_cmd(text, integer)
  TO PUBLIC;
-- PUBLIC: row-level security and trigger conditions (run by whoever reads or
-- writes the tables) and asking for access
GRANT EXECUTE ON FUNCTION
    vms.channel_visible(vms.gbcode, text), vms.code_visible(vms.gbcode), vms.can_manage(vms.gbcode, text),
    vms.grantee_role(name, oid),
    vms.request_access(text, text, text[], smallint, text, timestamptz, timestamptz),
    vms.withdraw_request(bigint, text),
    vms.cluster_is_city()
  TO PUBLIC;
-- PUBLIC: run with the caller's own table privileges and row-level security
GRANT EXECUTE ON FUNCTION
    vms.catalog_subtree(vms.gbcode), vms.tag_subtree(bigint), vms.tag_resolve(jsonb),
    vms.tag_create(text, text, text), vms.tag_assign(vms.gbcode, text, text), vms.tag_unassign(vms.gbcode, text),
    vms.alarm_raise(vms.gbcode, text, smallint, text, jsonb), vms.alarm_acknowledge(bigint),
    vms.alarm_clear(vms.gbcode, text, text), vms.clear_override(regclass, vms.gbcode, text),
    vms.alarm_plan(bigint, text), vms.alarm_level_for(text, vms.gbcode), vms.alarm_deadlines(vms.gbcode, smallint),
    vms.alarm_mask_covers(jsonb, vms.gbcode), vms.alarm_mask_for(vms.gbcode, text, timestamptz),
    vms.alarm_root_for(vms.gbcode, text), vms.contract_for(vms.gbcode),
    vms.channel_view_cone(vms.gbcode),
    vms.csv_rows(bytea, text), vms.csv_rows_file(text, text), vms.ledger_check_rows(bigint, jsonb, integer, jsonb),
    vms.ledger_import(bytea, text, text), vms.ledger_import_file(text, text), vms.ledger_import_rows(bigint),
    vms.ledger_first_load(bigint)
  TO PUBLIC;

-- vms_analyst: search, tiles, cones (SECURITY DEFINER: they return only what
-- vms.channel_visible_to allows the role the session acts as), rights, export
GRANT EXECUTE ON FUNCTION
    vms.search_points(jsonb, integer, integer), vms.search_geojson(jsonb, integer, integer),
    vms.search_save(text, jsonb), vms.search_saved(text, integer, integer), vms.search_rerun(bigint),
    vms.channel_tiles(integer, integer, integer, json), vms.channel_visible_to(oid, vms.gbcode, text),
    vms.cameras_seeing(geometry, float8), vms.cameras_seeing_area(geometry, float8),
    vms.area_coverage(geometry, float8),
    vms.can(text, vms.gbcode), vms.exercise_right(text, vms.gbcode, jsonb),
    vms.playback(vms.gbcode, timestamptz, timestamptz, jsonb, double precision), vms.download(vms.gbcode, timestamptz, timestamptz, jsonb, integer),
    vms.ptz(vms.gbcode, text, integer), vms.ptz_preset(vms.gbcode, text, integer),
    vms.ptz_home(vms.gbcode, boolean, integer, integer), vms.ptz_precise(vms.gbcode, float8, float8, float8),
    vms.view_live(vms.gbcode, jsonb), vms.playback_control(bigint, text, double precision), vms.snapshot(vms.gbcode),
    vms.media_leave(bigint),
    vms.export_ledger(),
    vms.report_html(text, date), vms.report_figures(text, date)
  TO vms_analyst;
GRANT EXECUTE ON FUNCTION
    vms.grant_access(name, text, text, text[], smallint, timestamptz, timestamptz, text),
    vms.revoke_access(bigint, text)
  TO vms_grant_admin;
GRANT EXECUTE ON FUNCTION vms.approve_request(bigint, text), vms.reject_request(bigint, text) TO vms_approver;
GRANT EXECUTE ON FUNCTION vms.audit_verify() TO vms_auditor;
GRANT EXECUTE ON FUNCTION vms.audit_denied_status() TO vms_auditor;
GRANT EXECUTE ON FUNCTION vms.review_unused_grants(integer), vms.review_expiring_grants(interval)
  TO vms_grant_admin, vms_approver, vms_auditor;

-- Tables and views.  PUBLIC has none (PostgreSQL's default).  The duty roles
-- read what their duty needs; row-level security narrows vms.channel and the
-- tables keyed by a channel code to the reader's grants.  Left to the owner
-- on purpose: device credentials and sessions, import jobs, security
-- assignments, the governance runs and naming patterns, the worker, SIP,
-- GA/T 1400 and inspection tables and views, the operations centre's
-- tables (availability, contracts, alarm rules, work orders) (operations,
-- not analysis).
GRANT USAGE ON SCHEMA vms TO vms_analyst, vms_grant_admin, vms_approver, vms_auditor;
GRANT SELECT ON vms.region, vms.org_unit, vms.catalog_node, vms.point_type, vms.device, vms.channel,
                vms.channel_reported, vms.catalog_member, vms.checkpoint, vms.lane, vms.lane_channel,
                vms.tag_category, vms.tag, vms.channel_tag, vms.ledger_history, vms.alarm, vms.alarm_level,
                vms.governance_rule, vms.governance_task, vms.governance_worklist, vms.security_level,
                vms.ledger_template_column, vms.ledger_export, vms.gb_device_type, vms.gb_industry,
                vms.access_grant, vms.access_request
   TO vms_analyst;
-- reports (issue 19): the frozen report facts under row-level security and the plain views over them
GRANT SELECT ON vms.report_frozen_day, vms.report_channel_day, vms.report_alarm_day, vms.report_order_day,
                vms.report_daily, vms.report_daily_alarms, vms.report_daily_work_orders
   TO vms_analyst;
GRANT SELECT, INSERT, DELETE ON vms.saved_search TO vms_analyst;
GRANT SELECT, INSERT ON vms.search_history TO vms_analyst;
GRANT SELECT ON vms.access_grant, vms.access_request, vms.subject, vms.review_wide_grants TO vms_grant_admin, vms_approver;
GRANT SELECT ON vms.audit_log, vms.audit_archive TO vms_auditor;
