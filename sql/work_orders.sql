-- work orders (派工单): open -> accepted -> on_site -> resolved -> confirmed,
-- rejection back to accepted, who/when/note on every transition, KPIs from
-- the transitions (checked against pinned times), and the refusals
\set SHOW_CONTEXT never
SET search_path = public, vms;
INSERT INTO vms.device (code, name) VALUES ('11010500001180000001', 'NVR');
INSERT INTO vms.device_event (device_code, at, event, cause) VALUES ('11010500001180000001', now(), 'offline', 'keepalive timeout');
SELECT id AS alarm_id FROM vms.alarm WHERE code = '11010500001180000001' AND fault_type = 'offline' \gset
SELECT vms.work_order_open(:alarm_id, '张工') AS wo \gset
-- dispatching is the alarm's repair plan
SELECT state, planned_at IS NOT NULL AS planned FROM vms.alarm WHERE id = :alarm_id;
SELECT vms.work_order_accept(:wo, '收到');
-- accepting is the response
SELECT state, acknowledged_by = session_user AS acknowledged FROM vms.alarm WHERE id = :alarm_id;
SELECT vms.work_order_arrive(:wo, NULL), vms.work_order_resolve(:wo, '更换交换机');
\set VERBOSITY default
-- the alarm is still active: confirming is refused
SELECT vms.work_order_confirm(:wo, 'ok');
-- a rejection needs its reason
SELECT vms.work_order_reject(:wo, ' ');
-- no skipping states, no second order for the alarm, none for an unknown alarm
SELECT vms.work_order_move(:wo, 'on_site');
SELECT vms.work_order_open(:alarm_id, '李工');
SELECT vms.work_order_open(-1, '李工');
SELECT vms.work_order_open(:alarm_id, '');
\set VERBOSITY terse
SELECT vms.work_order_reject(:wo, '设备仍离线');
SELECT vms.work_order_arrive(:wo), vms.work_order_resolve(:wo, '重新配置');
-- the device comes back: the alarm clears, the order can be confirmed
INSERT INTO vms.device_event (device_code, at, event, cause) VALUES ('11010500001180000001', now(), 'online', 'registered');
SELECT vms.work_order_confirm(:wo, '验收通过');
\set VERBOSITY default
SELECT vms.work_order_move(:wo, 'accepted', 'again');
-- a cleared alarm gets no work order
SELECT vms.work_order_open(:alarm_id, '李工');
\set VERBOSITY terse
-- every transition: from, to, who, note
SELECT from_state, to_state, actor = session_user AS by_me, note FROM vms.work_order_transition ORDER BY id;
-- KPIs from the transitions, with the times pinned: opened 08:00, accepted
-- 08:12, on site 09:00, resolved 10:30, rejected 10:45, on site 11:00,
-- resolved 12:00, confirmed 12:30; the alarm due 08:30 (response) and
-- 20:00 (fix), cleared 11:50.  By hand: response 720 s, on site 3600 s
-- (the first arrival), resolution 14400 s (the last), one rejection
UPDATE vms.work_order_transition t SET at = '2026-03-01 00:00+00'::timestamptz + v.after
  FROM (SELECT id, (ARRAY['8 hours', '8 hours 12 minutes', '9 hours', '10 hours 30 minutes', '10 hours 45 minutes',
                          '11 hours', '12 hours', '12 hours 30 minutes'])[row_number() OVER (ORDER BY id)]::interval AS after
          FROM vms.work_order_transition) v
 WHERE t.id = v.id;
UPDATE vms.alarm SET respond_by = '2026-03-01 08:30+00', fix_by = '2026-03-01 20:00+00', cleared_at = '2026-03-01 11:50+00'
 WHERE id = :alarm_id;
SELECT state, rejections, response_seconds, on_site_seconds, resolution_seconds, responded_in_time, fixed_in_time
  FROM vms.work_order_kpi;
