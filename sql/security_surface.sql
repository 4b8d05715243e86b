-- The security surface (issue 12): every function of the extension is
-- classified here; what PUBLIC and each duty role may execute must match the
-- class; every function is called, as an unprivileged role and as each duty
-- role, with hostile arguments, and nothing outside the role's grants may
-- come back.  A function added to the extension without a line below fails
-- the first query.  Also: one way of pinning search_path on every SECURITY
-- DEFINER function, a COMMENT on every object, and the proof that stands in
-- for FORCE ROW LEVEL SECURITY.
\set SHOW_CONTEXT never
SET client_min_messages = error;
CREATE EXTENSION IF NOT EXISTS vms CASCADE;
SET client_min_messages = warning;
-- regprocedure and format_type print names qualified on this path
SET search_path = pg_catalog;
CREATE SCHEMA surface;
GRANT USAGE ON SCHEMA surface TO PUBLIC;
CREATE TABLE surface.class (fn text PRIMARY KEY, class text NOT NULL);
-- internal (vms._*): the owner's only
INSERT INTO surface.class SELECT unnest(ARRAY[
    'vms._acting_role()',
    'vms._alarm_channel_status()',
    'vms._alarm_device_events()',
    'vms._apply_report(regclass,vms.gbcode,jsonb,jsonb)',
    'vms._arc_envelope(public.geometry)',
    'vms._audit_append_only()',
    'vms._audit_archive_guard()',
    'vms._audit_as(text,text,text,jsonb)',
    'vms._audit_bytes(bigint,timestamp with time zone,text,text,text,jsonb,bytea)',
    'vms._audit_chain_head()',
    'vms._audit_denied(text,text,jsonb)',
    'vms._audit_denied_take()',
    'vms._audit_later(text,text,jsonb)',
    'vms._audit_pending_append()',
    'vms._audit_row()',
    'vms._availability_figures(timestamp with time zone,timestamp with time zone,text)',
    'vms._availability_gaps(timestamp with time zone,timestamp with time zone)',
    'vms._availability_first_event(text,vms.gbcode)',
    'vms._availability_grace_gap()',
    'vms._availability_ranges(timestamp with time zone,timestamp with time zone,text)',
    'vms._availability_refresh(text,vms.gbcode[],timestamp with time zone[],boolean[])',
    'vms._availability_run_replicated(text,vms.gbcode)',
    'vms._availability_run_trigger()',
    'vms._availability_source_sql(text)',
    'vms._can_for(name,text,vms.gbcode,text)',
    'vms._channel_doc(text,text,text,text,text,text,text,text,text,text,real,real,real,real,text[],bigint,text,text,text)',
    'vms._channel_jsonb(vms.channel)',
    'vms._channel_status_history()',
    'vms._channel_cells(double precision[],double precision[],integer[],integer[],text[])',
    'vms._channel_clusters_track()',
    'vms._channel_tiles_as(oid,integer,integer,integer)',
    'vms._check_period(timestamp with time zone,timestamp with time zone)',
    'vms._check_scope(text,text,text[],smallint,timestamp with time zone,timestamp with time zone)',
    'vms._cluster_apply_child()',
    'vms._cluster_apply_deleted_due()',
    'vms._cluster_apply_deleted_flush()',
    'vms._cluster_apply_correction()',
    'vms._cluster_apply_naming()',
    'vms._cluster_apply_owned()',
    'vms._cluster_apply_tiles()',
    'vms._cluster_apply_tiles_due()',
    'vms._cluster_apply_tiles_flush()',
    'vms._cluster_apply_tiles_insert()',
    'vms._cluster_apply_tags()',
    'vms._cluster_applying()',
    'vms._cluster_cascade(text,vms.gbcode[],text)',
    'vms._cluster_cascade_fk(regclass,name,"char",text,boolean,vms.gbcode[],text)',
    'vms._cluster_conflict(text,text,text,text,text,jsonb)',
    'vms._cluster_guard()',
    'vms._cluster_has_levels(text)',
    'vms._cluster_keep_gaps()',
    'vms._cluster_keep_tags()',
    'vms._cluster_name(text)',
    'vms._cluster_tag_id(text,text,text,boolean)',
    'vms._cron_field(text,integer,integer)',
    'vms._degrees_floor_rate(public.geometry,double precision)',
    'vms._search_history_defer(jsonb,integer,integer,integer,double precision)',
    'vms._search_history_take()',
    'vms._degrees_reach(double precision)',
    'vms._device_gb_version(vms.gbcode)',
    'vms._device_jsonb(vms.device)',
    'vms._device_request(vms.gbcode,text,text,text,xml,boolean,text,jsonb)',
    'vms._device_time(timestamp with time zone)',
    'vms._device_time_parse(text)',
    'vms._device_tz()',
    'vms._district_security_levels()',
    'vms._filter_error(text,text,text)',
    'vms._filter_geojson(text,jsonb,text[])',
    'vms._filter_keys(text,jsonb,text[])',
    'vms._filter_num(text,jsonb,double precision,double precision,text)',
    'vms._filter_strings(text,jsonb)',
    'vms._forbid_recode()',
    'vms._gb2022_feature(text,text)',
    'vms._gbcode_check_details(vms.gbcode)',
    'vms._governance_metrics(text)',
    'vms._governance_findings(vms.governance_rule,text,vms.gbcode[])',
    'vms._governance_row_expr(vms.governance_rule)',
    'vms._governance_run(text,vms.gbcode[],boolean,vms.gbcode[],vms.gbcode[])',
    'vms._grant_bind_role()',
    'vms._grant_scope(oid,timestamp with time zone)',
    'vms._grant_scope_action(oid,timestamp with time zone,text)',
    'vms._history_record()',
    'vms._inspection_baseline_apply(vms.gbcode,timestamp with time zone,jsonb)',
    'vms._inspection_baseline_learn(vms.gbcode,timestamp with time zone,jsonb)',
    'vms._inspection_check_plan(vms.inspection_plan)',
    'vms._inspection_check_thresholds(jsonb,text)',
    'vms._inspection_claim(text)',
    'vms._inspection_plan_trigger()',
    'vms._inspection_record(bigint,jsonb,bytea)',
    'vms._inspection_recording_collect()',
    'vms._inspection_recording_start(bigint,vms.inspection_plan,timestamp with time zone)',
    'vms._inspection_schedule()',
    'vms._inspection_settings(vms.inspection_plan,timestamp with time zone)',
    'vms._inspection_task_fail(bigint,text)',
    'vms._inspection_threshold_problem(text,double precision)',
    'vms._jsonb_diff(jsonb,jsonb)',
    'vms._lane_check_direction()',
    'vms._mark_overridden()',
    'vms._media_lock(vms.gbcode)',
    'vms._media_server()',
    'vms._media_session_end(bigint,vms.gbcode,text,vms.gbcode,text,text,text)',
    'vms._media_sessions_lapsed()',
    'vms._media_target(jsonb)',
    'vms._metre_box(public.geometry,double precision)',
    'vms._missing_fields_expr(text[])',
    'vms._mr_seconds(tstzmultirange)',
    'vms._naming_pattern_check()',
    'vms._note_acting_role()',
    'vms._notify_alarm_events()',
    'vms._notify_claim(integer)',
    'vms._notify_enqueue(text,bigint,jsonb,smallint,text,text,vms.gbcode)',
    'vms._notify_not_before(jsonb,timestamp with time zone)',
    'vms._notify_result(bigint,boolean,text,text)',
    'vms._notify_work_orders()',
    'vms._ops_month_frozen()',
    'vms._ops_schedule_days(timestamp with time zone,text)',
    'vms._playback_speed_start()',
    'vms._policy_changed()',
    'vms._raise_unknown_action(text)',
    'vms._request_bind_role()',
    'vms._report_alarm_facts(date)',
    'vms._require_gb2022(vms.gbcode,text)',
    'vms._report_change(double precision,double precision,text)',
    'vms._report_channel_facts(date)',
    'vms._report_daily(date,date)',
    'vms._report_data_start()',
    'vms._report_esc(text)',
    'vms._report_fault_name(text)',
    'vms._report_figure_defs()',
    'vms._report_fmt(double precision,text)',
    'vms._report_governance_facts(date)',
    'vms._report_group_table(date,date,text)',
    'vms._report_load(date,date,oid)',
    'vms._report_order_facts(date)',
    'vms._report_period(text,date)',
    'vms._report_summary(date,date)',
    'vms._report_svg_chart(text,text,text,date,integer,jsonb)',
    'vms._report_tz()',
    'vms._require_reason(text,text)',
    'vms._require_role(name)',
    'vms._scope_channels(text,text)',
    'vms._search_points_as(oid,jsonb,integer,integer)',
    'vms._search_sql(jsonb)',
    'vms._sip_add_device(vms.gbcode,jsonb)',
    'vms._sip_alarm(vms.gbcode,jsonb)',
    'vms._sip_catalog_apply(vms.gbcode,jsonb)',
    'vms._sip_catalog_result(vms.gbcode,jsonb)',
    'vms._sip_check_event(text)',
    'vms._sip_claim_requests(integer)',
    'vms._sip_control_result(vms.gbcode,json)',
    'vms._sip_devices(timestamp with time zone,text)',
    'vms._sip_flush(jsonb)',
    'vms._sip_gb_version(vms.gbcode,jsonb)',
    'vms._sip_info_result(vms.gbcode,jsonb)',
    'vms._sip_item_report(jsonb)',
    'vms._sip_position(vms.gbcode,jsonb)',
    'vms._sip_queue_device_change()',
    'vms._sip_records_result(vms.gbcode,jsonb)',
    'vms._sip_recover_requests()',
    'vms._sip_request(vms.gbcode,text,jsonb)',
    'vms._sip_request_update(bigint,text,jsonb,jsonb,text)',
    'vms._sip_subscription_record(vms.gbcode,jsonb)',
    'vms._sip_subscriptions()',
    'vms._sip_catalog_item(text,text,text,text,text,text,boolean,double precision,double precision,text,text,text,boolean)',
    'vms._sip_check_scope(jsonb)',
    'vms._sip_upstream_changes(text,text,boolean,boolean)',
    'vms._sip_upstream_alarms(text,bigint,jsonb)',
    'vms._sip_upstream_positions(text,bigint,boolean,integer,boolean)',
    'vms._sip_upstream_control(text,text,text,text,text,json,text)',
    'vms._sip_upstream_control_answer(text,text,text,text,text,json)',
    'vms._sip_share_touched()',
    'vms._sip_position_first_wake()',
    'vms._sip_position_touched()',
    'vms._sip_take_share_changes()',
    'vms._sip_upstream_relay(text,text,text,text)',
    'vms._sip_upstream_bye(text,text,text,text,text,text)',
    'vms._sip_upstream_answer(text,text,text,text)',
    'vms._sip_upstream_flush(jsonb)',
    'vms._sip_upstream_host(text)',
    'vms._sip_upstream_items(text,text)',
    'vms._sip_upstream_options(jsonb)',
    'vms._sip_upstreams()',
    'vms._sip_take_device_changes()',
    'vms._sip_wake_on_credential()',
    'vms._snapshot_begin(vms.gbcode,text,name,name)',
    'vms._snapshot_device_config(text,text)',
    'vms._snapshot_finish(text,text,bytea,text)',
    'vms._snapshot_take(text,name)',
    'vms._tag_check_parent()',
    'vms._tile_col(double precision)',
    'vms._tile_row(double precision)',
    'vms._touch_updated_at()',
    'vms._trigger_set(regclass,name,"char")',
    'vms._upstream_secret_check()',
    'vms._viid_batches(text,integer,integer,timestamp with time zone,bigint)',
    'vms._viid_check_options(jsonb)',
    'vms._viid_directory(vms.viid_client,text)',
    'vms._viid_id_ok(text)',
    'vms._viid_image_format(bytea)',
    'vms._viid_ingest_many(text,vms.viid_kind,text,jsonb,jsonb,integer[],integer[],bytea[],text[],boolean)',
    'vms._viid_ingest_one(text,vms.viid_kind,jsonb,jsonb)',
    'vms._viid_map_many(text,jsonb[])',
    'vms._viid_notification(text,text,text,text,text,jsonb)',
    'vms._viid_outbox_insert(text,text,text[],jsonb[])',
    'vms._viid_record_partition(timestamp with time zone)',
    'vms._viid_results(text,bigint[],integer,text,text)',
    'vms._viid_server_clients(text)',
    'vms._viid_server_request(text,text,text,text,text)',
    'vms._viid_session_event(text,text,integer,text,text)',
    'vms._viid_share_codes(jsonb)',
    'vms._viid_split_images(text,text,text,boolean)',
    'vms._viid_status(text,integer,text,text)',
    'vms._viid_subscribe(text,text,jsonb)',
    'vms._viid_subscription_ledger()',
    'vms._viid_sync_ledger()',
    'vms._viid_ts_ok(text)',
    'vms._viid_with_images(text,jsonb,integer,bytea[])',
    'vms._wake_worker(text)',
    'vms._worker_database_check()',
    'vms._worker_status()'
]), 'internal';
-- PUBLIC: the type, pure functions, row-level security, asking for access, caller's-rights writes
INSERT INTO surface.class SELECT unnest(ARRAY[
    'vms.alarm_acknowledge(bigint)',
    'vms.alarm_clear(vms.gbcode,text,text)',
    'vms.alarm_deadlines(vms.gbcode,smallint)',
    'vms.alarm_level_for(text,vms.gbcode)',
    'vms.alarm_mask_covers(jsonb,vms.gbcode)',
    'vms.alarm_mask_for(vms.gbcode,text,timestamp with time zone)',
    'vms.alarm_plan(bigint,text)',
    'vms.alarm_raise(vms.gbcode,text,smallint,text,jsonb)',
    'vms.alarm_root_for(vms.gbcode,text)',
    'vms.bd09_to_gcj02(public.geometry)',
    'vms.bd09_to_wgs84(public.geometry)',
    'vms.can_manage(vms.gbcode,text)',
    'vms.catalog_subtree(vms.gbcode)',
    'vms.chain_digest(bytea)',
    'vms.chain_digest_name()',
    'vms.channel_search_text(text,text,text,text)',
    'vms.channel_view_cone(vms.gbcode)',
    'vms.channel_visible(vms.gbcode,text)',
    'vms.clear_override(regclass,vms.gbcode,text)',
    'vms.cluster_is_city()',
    'vms.code_visible(vms.gbcode)',
    'vms.contract_for(vms.gbcode)',
    'vms.convert_point(public.geometry,text,text)',
    'vms.coord_convert(double precision,double precision,text,text)',
    'vms.csv_rows(bytea,text)',
    'vms.csv_rows_file(text,text)',
    'vms.gbcode_centre(vms.gbcode)',
    'vms.gbcode_check(vms.gbcode)',
    'vms.gbcode_city(vms.gbcode)',
    'vms.gbcode_cmp(vms.gbcode,vms.gbcode)',
    'vms.gbcode_county(vms.gbcode)',
    'vms.gbcode_eq(vms.gbcode,vms.gbcode)',
    'vms.gbcode_ge(vms.gbcode,vms.gbcode)',
    'vms.gbcode_gt(vms.gbcode,vms.gbcode)',
    'vms.gbcode_hash(vms.gbcode)',
    'vms.gbcode_hash_extended(vms.gbcode,bigint)',
    'vms.gbcode_in(cstring)',
    'vms.gbcode_in_region(vms.gbcode,text)',
    'vms.gbcode_industry(vms.gbcode)',
    'vms.gbcode_industry_table()',
    'vms.gbcode_le(vms.gbcode,vms.gbcode)',
    'vms.gbcode_lt(vms.gbcode,vms.gbcode)',
    'vms.gbcode_make(text,integer,integer,integer,integer)',
    'vms.gbcode_ne(vms.gbcode,vms.gbcode)',
    'vms.gbcode_network(vms.gbcode)',
    'vms.gbcode_out(vms.gbcode)',
    'vms.gbcode_parse_error(text)',
    'vms.gbcode_problems(vms.gbcode)',
    'vms.gbcode_province(vms.gbcode)',
    'vms.gbcode_recv(internal)',
    'vms.gbcode_region_lower(text)',
    'vms.gbcode_region_upper(text)',
    'vms.gbcode_send(vms.gbcode)',
    'vms.gbcode_serial(vms.gbcode)',
    'vms.gbcode_sortsupport(internal)',
    'vms.gbcode_type(vms.gbcode)',
    'vms.gbcode_type_name(vms.gbcode)',
    'vms.gbcode_type_table()',
    'vms.gcj02_to_bd09(public.geometry)',
    'vms.gcj02_to_wgs84(public.geometry)',
    'vms.governed_columns(regclass)',
    'vms.grantee_role(name,oid)',
    'vms.inspection_alarm_level(text)',
    'vms.is_ip(text)',
    'vms.keyword_grams(text)',
    'vms.ledger_check_rows(bigint,jsonb,integer,jsonb)',
    'vms.ledger_import(bytea,text,text)',
    'vms.ledger_import_file(text,text)',
    'vms.ledger_first_load(bigint)',
    'vms.ledger_import_rows(bigint)',
    'vms.notify_render(text,jsonb)',
    'vms.ptz_cmd(text,integer)',
    'vms.ptz_preset_cmd(text,integer)',
    'vms.request_access(text,text,text[],smallint,text,timestamp with time zone,timestamp with time zone)',
    'vms.withdraw_request(bigint,text)',
    'vms.secret_algorithm()',
    'vms.tag_assign(vms.gbcode,text,text)',
    'vms.tag_create(text,text,text)',
    'vms.tag_resolve(jsonb)',
    'vms.tag_subtree(bigint)',
    'vms.tag_unassign(vms.gbcode,text)',
    'vms.text_contains(text,text)',
    'vms.text_grams(text)',
    'vms.to_wgs84(double precision,double precision,text)',
    'vms.try_float8(text)',
    'vms.view_cone(public.geometry,double precision,double precision,double precision,integer)',
    'vms.viid_id_problems(text)',
    'vms.viid_image_id(vms.gbcode,integer,timestamp without time zone,integer)',
    'vms.viid_object_id(text,integer,integer)',
    'vms.wgs84_to_bd09(public.geometry)',
    'vms.wgs84_to_gcj02(public.geometry)'
]), 'public';
-- vms_analyst: search, tiles, cones, rights, export
INSERT INTO surface.class SELECT unnest(ARRAY[
    'vms.area_coverage(public.geometry,double precision)',
    'vms.cameras_seeing(public.geometry,double precision)',
    'vms.cameras_seeing_area(public.geometry,double precision)',
    'vms.can(text,vms.gbcode)',
    'vms.channel_tiles(integer,integer,integer,json)',
    'vms.channel_visible_to(oid,vms.gbcode,text)',
    'vms.download(vms.gbcode,timestamp with time zone,timestamp with time zone,jsonb,integer)',
    'vms.exercise_right(text,vms.gbcode,jsonb)',
    'vms.export_ledger()',
    'vms.media_leave(bigint)',
    'vms.playback(vms.gbcode,timestamp with time zone,timestamp with time zone,jsonb,double precision)',
    'vms.playback_control(bigint,text,double precision)',
    'vms.ptz(vms.gbcode,text,integer)',
    'vms.ptz_home(vms.gbcode,boolean,integer,integer)',
    'vms.ptz_precise(vms.gbcode,double precision,double precision,double precision)',
    'vms.ptz_preset(vms.gbcode,text,integer)',
    'vms.report_figures(text,date)',
    'vms.report_html(text,date)',
    'vms.search_geojson(jsonb,integer,integer)',
    'vms.search_points(jsonb,integer,integer)',
    'vms.search_rerun(bigint)',
    'vms.search_save(text,jsonb)',
    'vms.search_saved(text,integer,integer)',
    'vms.snapshot(vms.gbcode)',
    'vms.view_live(vms.gbcode,jsonb)'
]), 'analyst';
-- vms_grant_admin
INSERT INTO surface.class SELECT unnest(ARRAY[
    'vms.grant_access(name,text,text,text[],smallint,timestamp with time zone,timestamp with time zone,text)',
    'vms.revoke_access(bigint,text)'
]), 'grant_admin';
-- vms_approver
INSERT INTO surface.class SELECT unnest(ARRAY[
    'vms.approve_request(bigint,text)',
    'vms.reject_request(bigint,text)'
]), 'approver';
-- vms_auditor
INSERT INTO surface.class SELECT unnest(ARRAY[
    'vms.audit_verify()',
    'vms.audit_denied_status()'
]), 'auditor';
-- periodic review: vms_grant_admin, vms_approver, vms_auditor
INSERT INTO surface.class SELECT unnest(ARRAY[
    'vms.review_expiring_grants(interval)',
    'vms.review_unused_grants(integer)'
]), 'review';
-- the owner only (superusers, workers): operations
INSERT INTO surface.class SELECT unnest(ARRAY[
    'vms.alarm_escalate()',
    'vms.alarm_mask_add(text,jsonb,text[],timestamp with time zone,timestamp with time zone,text)',
    'vms.audit(text,text,jsonb)',
    'vms.audit_flush_denied()',
    'vms.search_history_flush()',
    'vms.access_grant_rebind()',
    'vms.access_request_rebind()',
    'vms.audit_archive_before(timestamp with time zone)',
    'vms.audit_archive_detach(bigint)',
    'vms.availability(timestamp with time zone,timestamp with time zone,text)',
    'vms.availability_gap_add(timestamp with time zone,timestamp with time zone,text,vms.gbcode)',
    'vms.availability_intervals(timestamp with time zone,timestamp with time zone,text)',
    'vms.availability_rebuild()',
    'vms.channel_apply_report(vms.gbcode,vms.gbcode,jsonb)',
    'vms.channel_clusters_refresh(boolean)',
    'vms.channel_security_level(vms.gbcode)',
    'vms.channel_security_levels()',
    'vms.cluster_correct(text,vms.gbcode,text,jsonb,text)',
    'vms.cluster_follow(text)',
    'vms.cluster_publish(text)',
    'vms.cluster_subscribe(text,text)',
    'vms.cron_next(text,timestamp with time zone)',
    'vms.device_alarm_reset(vms.gbcode,integer,integer)',
    'vms.device_apply_report(vms.gbcode,jsonb)',
    'vms.device_config(vms.gbcode,jsonb)',
    'vms.device_config_download(vms.gbcode,text)',
    'vms.device_guard(vms.gbcode,boolean)',
    'vms.device_record(vms.gbcode,boolean)',
    'vms.device_set_password(vms.gbcode,text,text)',
    'vms.device_teleboot(vms.gbcode)',
    'vms.diagnose(text,jsonb)',
    'vms.governance_findings(vms.governance_rule,text)',
    'vms.governance_metrics_by_region(integer)',
    'vms.governance_metrics_by_unit()',
    'vms.governance_run(text)',
    'vms.governance_run_changed()',
    'vms.governance_task_assign(bigint,text)',
    'vms.governance_task_fixed(bigint)',
    'vms.governance_task_ignore(bigint,text)',
    'vms.inspection_baseline_reset(vms.gbcode,text)',
    'vms.inspection_baseline_rules()',
    'vms.inspection_hour_band(timestamp with time zone)',
    'vms.inspection_plan_add(text,jsonb,text,jsonb)',
    'vms.inspection_run_now(text)',
    'vms.inspection_scope_channels(jsonb)',
    'vms.inspection_set_baseline(vms.gbcode,bigint)',
    'vms.notify_redrive(bigint[])',
    'vms.notify_route_add(text,text,jsonb)',
    'vms.ops_figures(timestamp with time zone,timestamp with time zone,text)',
    'vms.ops_month_close(date,text)',
    'vms.ops_run_due()',
    'vms.ops_snapshot_day(date,text)',
    'vms.recording_check(vms.gbcode,timestamp with time zone,timestamp with time zone,interval)',
    'vms.recording_expected(vms.gbcode,timestamp with time zone,timestamp with time zone)',
    'vms.recording_integrity(timestamp with time zone,timestamp with time zone)',
    'vms.report_freeze(date)',
    'vms.retention_prune(text,integer)',
    'vms.secret_decrypt(bytea,text)',
    'vms.secret_encrypt(text,text)',
    'vms.sip_add_upstream(text,text,integer,vms.gbcode,text,jsonb)',
    'vms.sip_alter_upstream(text,text,integer,vms.gbcode,text,jsonb,boolean)',
    'vms.sip_bye(bigint)',
    'vms.sip_drop_upstream(text)',
    'vms.sip_share(text,jsonb)',
    'vms.sip_share_map(text,vms.gbcode,vms.gbcode,text)',
    'vms.sip_shared_channels(text)',
    'vms.sip_invite(vms.gbcode,text,integer,text)',
    'vms.sip_query_catalog(vms.gbcode)',
    'vms.sip_query_cruise_tracks(vms.gbcode)',
    'vms.sip_query_device_info(vms.gbcode)',
    'vms.sip_query_device_status(vms.gbcode)',
    'vms.sip_query_home_position(vms.gbcode)',
    'vms.sip_query_presets(vms.gbcode)',
    'vms.sip_query_records(vms.gbcode,timestamp with time zone,timestamp with time zone,text)',
    'vms.sip_request_wait(bigint,double precision)',
    'vms.sip_set_digest_qop(vms.gbcode,boolean)',
    'vms.sip_set_gb_version(vms.gbcode,text)',
    'vms.sip_subscribe(vms.gbcode,text,integer)',
    'vms.sip_unsubscribe(vms.gbcode,text)',
    'vms.tag_search_results(jsonb,text,text)',
    'vms.viid_add_upstream(text,text,vms.gbcode,text,text,jsonb)',
    'vms.viid_alter_upstream(text,text,text,text,jsonb,boolean)',
    'vms.viid_ape_doc(vms.channel)',
    'vms.viid_client_add(vms.gbcode,text,jsonb)',
    'vms.viid_client_drop(vms.gbcode)',
    'vms.viid_drop_upstream(text,boolean)',
    'vms.viid_enqueue(text,text,jsonb,text)',
    'vms.viid_enqueue_many(text,text,jsonb[],text)',
    'vms.viid_lane_doc(vms.lane)',
    'vms.viid_map(text,jsonb)',
    'vms.viid_prune(text)',
    'vms.viid_record_prune()',
    'vms.viid_redrive(text,bigint[])',
    'vms.viid_subscription_cancel(text)',
    'vms.viid_tollgate_doc(vms.checkpoint)',
    'vms.work_order_accept(bigint,text)',
    'vms.work_order_arrive(bigint,text)',
    'vms.work_order_confirm(bigint,text)',
    'vms.work_order_move(bigint,text,text)',
    'vms.work_order_open(bigint,text)',
    'vms.work_order_reject(bigint,text)',
    'vms.work_order_resolve(bigint,text)',
    'vms.worker_restart(text)',
    'vms.worker_start(text)',
    'vms.worker_stop(text)'
]), 'owner';

-- 1. every function of the extension is classified, and nothing else is
CREATE VIEW surface.fn AS
SELECT p.oid, p.oid::regprocedure::text AS fn, p.proname, p.prosecdef, p.proconfig, p.prorettype, p.proargtypes
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'vms';
SELECT f.fn AS not_classified FROM surface.fn f LEFT JOIN surface.class c USING (fn) WHERE c.fn IS NULL ORDER BY 1;
SELECT c.fn AS classified_but_gone FROM surface.class c LEFT JOIN surface.fn f USING (fn) WHERE f.fn IS NULL ORDER BY 1;
SELECT fn AS internal_named_public FROM surface.class WHERE (class = 'internal') <> (fn LIKE 'vms.\_%') ORDER BY 1;

-- 2. who may execute what: PUBLIC, the duty roles, and a role with nothing
-- but USAGE on schema vms
CREATE ROLE regress_surface_nobody LOGIN;
GRANT USAGE ON SCHEMA vms TO regress_surface_nobody;
CREATE TABLE surface.who (who text PRIMARY KEY, classes text[]);
INSERT INTO surface.who VALUES
    ('public', '{public}'), ('regress_surface_nobody', '{public}'),
    ('vms_analyst', '{public,analyst}'), ('vms_grant_admin', '{public,grant_admin,review}'),
    ('vms_approver', '{public,approver,review}'), ('vms_auditor', '{public,auditor,review}');
SELECT w.who, c.fn, c.class, has_function_privilege(w.who, c.fn, 'EXECUTE') AS can_execute
  FROM surface.who w CROSS JOIN surface.class c
 WHERE has_function_privilege(w.who, c.fn, 'EXECUTE') <> (c.class = ANY (w.classes))
 ORDER BY 1, 2;
-- internal functions: nobody but the owner (the issue 13 test, stated on its own)
SELECT w.who, count(*) FILTER (WHERE has_function_privilege(w.who, f.oid, 'EXECUTE')) AS internal_executable,
       count(*) > 60 AS many_internal
  FROM surface.who w CROSS JOIN surface.fn f WHERE f.proname LIKE '\_%' GROUP BY 1 ORDER BY 1;
SELECT w.who, count(*) FILTER (WHERE has_function_privilege(w.who, c.fn, 'EXECUTE')) AS executable
  FROM surface.who w CROSS JOIN surface.class c GROUP BY 1 ORDER BY 1;

-- 3. SECURITY DEFINER functions: each listed here (a new one changes this
-- list and needs the review its comment records), each with search_path
-- pinned one way: FROM CURRENT at CREATE/ALTER EXTENSION, which is vms,
-- the schema PostGIS is installed in, pg_temp (pg_catalog first, implicitly)
SELECT f.fn, c.class FROM surface.fn f JOIN surface.class c USING (fn) WHERE f.prosecdef ORDER BY 1;
SELECT f.fn, f.proconfig
  FROM surface.fn f
 CROSS JOIN (SELECT format('search_path=vms, %s, pg_temp', quote_ident(n.nspname)) AS pinned
               FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'postgis') x
 WHERE (f.prosecdef AND NOT x.pinned = ANY (coalesce(f.proconfig, '{}')))
    OR EXISTS (SELECT 1 FROM unnest(f.proconfig) s WHERE s LIKE 'search_path=%' AND s <> x.pinned)
 ORDER BY 1;
-- nobody but superusers may create objects in a schema on that path (which
-- would let them shadow a function a definer function calls)
SELECT w.who, n.nspname
  FROM surface.who w
 CROSS JOIN pg_namespace n
 WHERE n.nspname IN ('vms', (SELECT nspname FROM pg_extension e JOIN pg_namespace s ON s.oid = e.extnamespace
                               WHERE e.extname = 'postgis'))
   AND has_schema_privilege(w.who, n.oid, 'CREATE')
 ORDER BY 1, 2;

-- 4. every object of the extension has a comment (functions, tables,
-- views, types, operators, operator classes and families, casts; not the
-- sequences of identity columns)
SELECT pg_describe_object(d.classid, d.objid, 0) AS without_comment
  FROM pg_depend d
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'vms'
 WHERE d.deptype = 'e'
   AND d.classid IN ('pg_proc'::regclass, 'pg_class'::regclass, 'pg_type'::regclass, 'pg_operator'::regclass,
                     'pg_opclass'::regclass, 'pg_opfamily'::regclass, 'pg_cast'::regclass)
   AND NOT (d.classid = 'pg_class'::regclass AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S')
   AND obj_description(d.objid, (SELECT relname FROM pg_class WHERE oid = d.classid)) IS NULL
 ORDER BY 1;

-- Channels and roles for the last two parts.  Channels of two streets of 成都 (codes 5101040x...):
-- the analyst may see one street; another analyst may see everything and
-- has saved searches and history of her own.
INSERT INTO vms.device (code, name) VALUES ('51010400001180000001', '锦江NVR');
INSERT INTO vms.channel (code, device_code, name, civil_code, geom, azimuth, fov_angle, fov_range_m, capabilities)
SELECT format('5101040%s001320%s', s, lpad(i::text, 6, '0')), '51010400001180000001', format('锦江%s-%s', s, i), '5101040' || s,
       public.ST_SetSRID(public.ST_MakePoint(104.08 + i * 0.001, 30.65 + s * 0.001), 4326), 90, 360, 300, '{ptz}'
  FROM generate_series(1, 2) s, generate_series(1, 5) i;
CREATE ROLE regress_surface_ana LOGIN IN ROLE vms_analyst;
CREATE ROLE regress_surface_other LOGIN IN ROLE vms_analyst;
CREATE ROLE regress_surface_gadmin LOGIN IN ROLE vms_grant_admin;
CREATE ROLE regress_surface_approver LOGIN IN ROLE vms_approver;
CREATE ROLE regress_surface_auditor LOGIN IN ROLE vms_auditor;
INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level, granted_by) VALUES
    ('regress_surface_ana', 'region', '51010401', '{view_live,export}', 1, 'regress'),
    ('regress_surface_other', 'all', NULL, '{view_live,playback,export,manage_ledger}', 4, 'regress');
SET SESSION AUTHORIZATION regress_surface_other;
SELECT vms.search_save('regress_secret_of_other', '{"keyword": "锦江"}') > 0 AS other_saved;
SELECT count(*) > 0 AS other_searched FROM vms.search_points('{"keyword": "锦江"}');
RESET SESSION AUTHORIZATION;
-- 5. FORCE ROW LEVEL SECURITY would prove nothing here: the extension's
-- owner is a superuser (vms.control: superuser = true), and superusers
-- bypass row-level security even when it is forced.  The proof that stands
-- in for it: the definer functions that read channels for a caller (search,
-- tiles, cones, can, exercise_right, export) returned above, for hostile
-- arguments, nothing outside what row-level security shows the same role;
-- and an unfiltered search returns exactly that set, in both directions.
SELECT r.rolsuper AS owner_is_superuser FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
 WHERE c.oid = 'vms.channel'::regclass;
SET SESSION AUTHORIZATION regress_surface_ana;
SELECT (SELECT array_agg(code ORDER BY code) FROM vms.search_points('{}', 100000, 0))
     = (SELECT array_agg(code ORDER BY code) FROM vms.channel) AS search_is_the_rls_view,
       (SELECT count(*) FROM vms.channel) AS rls_view,
       (SELECT count(*) FROM vms.cameras_seeing(public.ST_SetSRID(public.ST_MakePoint(104.083, 30.652), 4326), 1000))
     = (SELECT count(*) FROM vms.channel WHERE civil_code LIKE '510104%') AS cones_see_the_rls_view;
RESET SESSION AUTHORIZATION;

-- the targets: other roles' OIDs (the bootstrap superuser, another
-- analyst), their saved-search and history ids, a hidden channel
CREATE TABLE surface.target AS
SELECT (SELECT id FROM vms.saved_search WHERE owner = 'regress_surface_other') AS saved_id,
       (SELECT max(id) FROM vms.search_history WHERE username = 'regress_surface_other') AS history_id,
       'regress_surface_other'::regrole::oid AS other_oid,
       '51010402001320000001'::text AS hidden;
-- 6. hostile calls.  Hostile values per argument type, three sets: NULLs; superuser, other's
-- saved search, a server file; another analyst, other's history, a hidden code
CREATE FUNCTION surface.arg(t regtype, v integer) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN v = 1 THEN format('NULL::%s', t)
           ELSE CASE t
               WHEN 'oid'::regtype THEN CASE v WHEN 2 THEN '10' ELSE (SELECT other_oid::text FROM surface.target) END
               WHEN 'name'::regtype THEN CASE v WHEN 2 THEN quote_literal('postgres') ELSE quote_literal('regress_surface_other') END
               WHEN 'bigint'::regtype THEN (SELECT CASE v WHEN 2 THEN saved_id ELSE history_id END::text FROM surface.target)
               WHEN 'integer'::regtype THEN CASE v WHEN 2 THEN '100000' ELSE '0' END
               WHEN 'smallint'::regtype THEN '4::smallint'
               WHEN 'double precision'::regtype THEN '100000::float8'
               WHEN 'text'::regtype THEN CASE v WHEN 2 THEN quote_literal('/etc/passwd')
                                         ELSE (SELECT quote_literal(hidden) FROM surface.target) END
               WHEN 'vms.gbcode'::regtype THEN (SELECT quote_literal(hidden) || '::vms.gbcode' FROM surface.target)
               WHEN 'jsonb'::regtype THEN CASE v WHEN 2 THEN quote_literal('{}') || '::jsonb'
                                          ELSE quote_literal('{"bbox": [-180, -90, 180, 90], "keyword": "锦江"}') || '::jsonb' END
               WHEN 'json'::regtype THEN quote_literal('{"role": 10}') || '::json'
               WHEN 'public.geometry'::regtype THEN 'public.ST_SetSRID(public.ST_MakeEnvelope(104.0, 30.6, 104.2, 30.7), 4326)'
               WHEN 'bytea'::regtype THEN quote_literal(E'code,name\n51010402001320000001,hijacked\n') || '::bytea'
               WHEN 'regclass'::regtype THEN quote_literal('vms.channel') || '::regclass'
               WHEN 'text[]'::regtype THEN quote_literal('{view_live,playback,download,ptz,snapshot,manage_ledger,export}') || '::text[]'
               WHEN 'bigint[]'::regtype THEN '''{1,2,3}''::bigint[]'
               WHEN 'boolean'::regtype THEN 'true'
               WHEN 'interval'::regtype THEN quote_literal('100 years') || '::interval'
               WHEN 'timestamp with time zone'::regtype THEN 'now()'
               WHEN 'timestamp without time zone'::regtype THEN 'localtimestamp'
               WHEN 'cstring'::regtype THEN quote_literal('51010402001320000001') || '::cstring'
               ELSE format('NULL::%s', t) END
           END
$$;
-- extra calls with crafted filters and arguments, beside the generic ones
CREATE TABLE surface.extra (fn text, call text);
INSERT INTO surface.extra VALUES
    ('vms.search_points(jsonb,integer,integer)', 'SELECT * FROM vms.search_points(''{"keyword": "x''''); SELECT 1; --"}'', 100000, 0)'),
    ('vms.search_points(jsonb,integer,integer)', 'SELECT * FROM vms.search_points(''{"near": {"lon": 104.08, "lat": 30.65}}'', 100000, 0)'),
    ('vms.search_points(jsonb,integer,integer)', 'SELECT * FROM vms.search_points(''{"circle": {"lon": 104.08, "lat": 30.65, "radius_m": 100000}}'', 100000, 0)'),
    ('vms.search_points(jsonb,integer,integer)', 'SELECT * FROM vms.search_points(''{"unit": "1 OR true"}'', 10, 0)'),
    ('vms.search_points(jsonb,integer,integer)', 'SELECT * FROM vms.search_points(''{"polygon": {"type": "Polygon", "coordinates": [[[-180,-90],[180,-90],[180,90],[-180,90],[-180,-90]]]}}'', 100000, 0)'),
    ('vms.search_geojson(jsonb,integer,integer)', 'SELECT * FROM vms.search_geojson(''{"capability": ["ptz"]}'', 100000, 0)'),
    ('vms.search_saved(text,integer,integer)', 'SELECT * FROM vms.search_saved(''regress_secret_of_other'', 100000, 0)'),
    ('vms.channel_tiles(integer,integer,integer,json)', 'SELECT encode(vms.channel_tiles(13, 6464, 3362), ''escape'')'),
    ('vms.channel_tiles(integer,integer,integer,json)', 'SELECT encode(vms.channel_tiles(0, 0, 0, ''{"role": "postgres"}''), ''escape'')'),
    ('vms.cameras_seeing(public.geometry,double precision)', 'SELECT * FROM vms.cameras_seeing(public.ST_SetSRID(public.ST_MakePoint(104.083, 30.652), 4326), 100000)'),
    ('vms.channel_visible_to(oid,vms.gbcode,text)', 'SELECT vms.channel_visible_to(''vms_analyst''::regrole, ''51010402001320000001'', ''51010402'')'),
    ('vms.can(text,vms.gbcode)', 'SELECT vms.can(''view_live'', ''51010402001320000001'')'),
    ('vms.view_live(vms.gbcode,jsonb)', 'SELECT vms.view_live(''51010402001320000001'')'),
    ('vms.export_ledger()', 'SELECT * FROM vms.export_ledger()'),
    ('vms.request_access(text,text,text[],smallint,text,timestamp with time zone,timestamp with time zone)',
     'SELECT vms.request_access(''all'', NULL, ''{view_live}'', 4::smallint, ''hostile'', NULL, now())'),
    ('vms.approve_request(bigint,text)', 'SELECT vms.approve_request(max(id)) FROM vms.access_request'),
    ('vms.withdraw_request(bigint,text)', 'SELECT vms.withdraw_request(id) FROM vms.access_request WHERE state = ''pending'''),
    ('vms.grant_access(name,text,text,text[],smallint,timestamp with time zone,timestamp with time zone,text)',
     'SELECT vms.grant_access(session_user, ''all'', NULL, ''{view_live}'', 4::smallint, NULL, now(), NULL)');
CREATE TABLE surface.result (who text, fn text, variant integer, call text, state text, out text);
GRANT INSERT ON surface.result TO PUBLIC;
GRANT SELECT ON surface.target, surface.extra, surface.fn TO PUBLIC;
-- every function in every set of arguments, and the extra calls, as the
-- session's role; each in its own subtransaction
CREATE FUNCTION surface.run() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    f record;
    c text;
    o text;
BEGIN
    FOR f IN SELECT s.fn, s.v, s.call FROM (
                 SELECT x.fn, v, CASE WHEN x.prorettype = 'bytea'::regtype
                                   THEN format('SELECT encode(%s.%I(%s), ''escape'')', 'vms', x.proname, a.args)
                                   ELSE format('SELECT * FROM %s.%I(%s)', 'vms', x.proname, a.args) END AS call
                   FROM surface.fn x
                  CROSS JOIN generate_series(1, 3) v
                  CROSS JOIN LATERAL (SELECT coalesce(string_agg(surface.arg(t, v), ', ' ORDER BY i), '') AS args
                                        FROM unnest(x.proargtypes::regtype[]) WITH ORDINALITY u(t, i)) a
                  -- not callable from SQL at all: trigger functions, internal arguments
                  WHERE NOT 'internal'::regtype = ANY (x.proargtypes::regtype[]) AND x.prorettype <> 'trigger'::regtype
                 UNION ALL SELECT e.fn, 0, e.call FROM surface.extra e) s
              ORDER BY 1, 2 LOOP
        BEGIN
            EXECUTE format('SELECT string_agg(r::text, E''\n'') FROM (%s) r', f.call) INTO o;
            INSERT INTO surface.result VALUES (session_user, f.fn, f.v, f.call, 'ok', coalesce(o, ''));
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO surface.result VALUES (session_user, f.fn, f.v, f.call, SQLSTATE, SQLERRM);
        END;
    END LOOP;
END $$;
-- the yardstick: the codes a role reads with plain SQL, under row-level
-- security (channels; the grants and requests its duty lets it read)
CREATE TABLE surface.visible (who text, code text);
GRANT INSERT ON surface.visible TO PUBLIC;
CREATE FUNCTION surface.see() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF has_table_privilege('vms.channel', 'SELECT') THEN
        INSERT INTO surface.visible SELECT session_user, code::text FROM vms.channel;
    END IF;
    IF has_table_privilege('vms.access_grant', 'SELECT') THEN
        INSERT INTO surface.visible SELECT session_user, scope_ref FROM vms.access_grant WHERE scope_ref IS NOT NULL;
        INSERT INTO surface.visible SELECT session_user, scope_ref FROM vms.access_request WHERE scope_ref IS NOT NULL;
    END IF;
END $$;
SET SESSION AUTHORIZATION regress_surface_nobody;
SELECT surface.see(), surface.run();
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_surface_ana;
SELECT surface.see(), surface.run();
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_surface_gadmin;
SELECT surface.see(), surface.run();
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_surface_approver;
SELECT surface.see(), surface.run();
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_surface_auditor;
SELECT surface.see(), surface.run();
RESET SESSION AUTHORIZATION;
-- the analyst sees her street's five channels, the others no channel
SELECT w.who, count(v.code) FILTER (WHERE v.code LIKE '5101040%' AND length(v.code) = 20) AS chengdu_channels
  FROM (SELECT DISTINCT who FROM surface.result) w LEFT JOIN surface.visible v USING (who) GROUP BY 1 ORDER BY 1;
-- trigger functions are never called directly; they are all internal
SELECT f.fn FROM surface.fn f WHERE f.prorettype = 'trigger'::regtype AND f.proname NOT LIKE '\_%';

-- a function a role may not execute is refused (42501), whatever the
-- arguments (a STRICT function given only NULLs is folded to NULL by the
-- planner, which never runs it, so no privilege is checked: nothing ran)
SELECT r.who, r.fn, r.variant, r.state FROM surface.result r
 WHERE NOT has_function_privilege(r.who, r.fn, 'EXECUTE') AND r.state <> '42501'
   AND NOT (r.variant = 1 AND (SELECT p.proisstrict FROM pg_proc p WHERE p.oid = r.fn::regprocedure))
 ORDER BY 1, 2, 3;
-- and the refusals were many: every set of arguments of every such function
SELECT r.who, count(*) FILTER (WHERE r.state = '42501') >= count(DISTINCT r.fn) AS refused
  FROM surface.result r WHERE NOT has_function_privilege(r.who, r.fn, 'EXECUTE') GROUP BY 1 ORDER BY 1;
-- a function a role may execute never fails for want of EXECUTE on another
-- function (an internal helper reached with the caller's rights)
SELECT r.who, r.fn, r.out FROM surface.result r
 WHERE has_function_privilege(r.who, r.fn, 'EXECUTE') AND r.out LIKE 'permission denied for function %'
 ORDER BY 1, 2;
-- nothing comes back about a channel outside the role's grants: no code of
-- a channel the role cannot see (unless the call itself named it), no name
-- of one, no other user's saved search
SELECT r.who, r.fn, m[1] AS leaked_code
  FROM surface.result r
 CROSS JOIN LATERAL regexp_matches(r.out, '[0-9]{20}', 'g') m
 WHERE r.state = 'ok' AND position(m[1] IN r.call) = 0
   AND EXISTS (SELECT 1 FROM vms.channel c WHERE c.code::text = m[1])
   AND NOT EXISTS (SELECT 1 FROM surface.visible v WHERE v.who = r.who AND v.code = m[1])
 ORDER BY 1, 2, 3;
SELECT r.who, r.fn, r.call FROM surface.result r
 WHERE r.state = 'ok' AND (r.out LIKE '%锦江2-%' OR r.out LIKE '%regress_secret_of_other%')
 ORDER BY 1, 2;
-- what the calls did: how many ran, how many were refused for privilege
SELECT who, count(*) AS calls, count(*) FILTER (WHERE state = 'ok') > 0 AS some_ran,
       count(DISTINCT fn) FILTER (WHERE has_function_privilege(who, fn, 'EXECUTE')) AS executable_called
  FROM surface.result GROUP BY 1 ORDER BY 1;

-- clean up (roles are cluster-wide)
DELETE FROM vms.saved_search WHERE owner LIKE 'regress_surface_%';
DELETE FROM vms.search_history WHERE username LIKE 'regress_surface_%';
ALTER TABLE vms.access_grant DISABLE TRIGGER access_grant_audit;
DELETE FROM vms.access_grant WHERE grantee LIKE 'regress_surface_%';
ALTER TABLE vms.access_grant ENABLE TRIGGER access_grant_audit;
ALTER TABLE vms.access_request DISABLE TRIGGER access_request_audit;
DELETE FROM vms.access_request WHERE requester LIKE 'regress_surface_%';
ALTER TABLE vms.access_request ENABLE TRIGGER access_request_audit;
DELETE FROM vms.channel WHERE code::text LIKE '5101040%';
DELETE FROM vms.device WHERE code = '51010400001180000001';
DROP SCHEMA surface CASCADE;
REVOKE USAGE ON SCHEMA vms FROM regress_surface_nobody;
DROP ROLE regress_surface_nobody, regress_surface_ana, regress_surface_other, regress_surface_gadmin,
          regress_surface_approver, regress_surface_auditor;
