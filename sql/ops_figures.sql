-- kept figures: operations figures over a period, daily snapshots, a month
-- closed and frozen, scheduled runs and retention; times pinned (UTC days
-- given explicitly), figures computed by hand
\set SHOW_CONTEXT never
SET search_path = public, vms;
INSERT INTO vms.org_unit (name) VALUES ('东区运维');
INSERT INTO vms.region (civil_code, name) VALUES ('110105', '朝阳区');
INSERT INTO vms.device (code, name, civil_code, unit_id) VALUES
    ('11010500001320000001', 'IPC', '110105', (SELECT id FROM vms.org_unit));
INSERT INTO vms.channel (code, device_code, name, civil_code, unit_id)
VALUES ('11010500001310000001', '11010500001320000001', 'cam', '110105', (SELECT id FROM vms.org_unit));
INSERT INTO vms.maintenance_contract (name, contractor) VALUES ('东区维保', '甲公司');
INSERT INTO vms.maintenance_scope (contract_id, unit_id) SELECT k.id, u.id FROM vms.maintenance_contract k, vms.org_unit u;
-- March 2026 (UTC): online from the 1st; offline 10th 00:00-06:00; the
-- stream could not be pulled from the 6th to the 7th
INSERT INTO vms.device_event (device_code, at, event, cause) VALUES
    ('11010500001320000001', '2026-03-01 00:00+00', 'online', 'registered'),
    ('11010500001320000001', '2026-03-10 00:00+00', 'offline', 'keepalive timeout'),
    ('11010500001320000001', '2026-03-10 06:00+00', 'online', 'registered');
INSERT INTO vms.quality_result (channel_code, at, profile, stream_ok, image_ok, checks) VALUES
    ('11010500001310000001', '2026-03-05 12:00+00', 'default', true, true, '{}'),
    ('11010500001310000001', '2026-03-06 00:00+00', 'default', false, false, '{}'),
    ('11010500001310000001', '2026-03-07 00:00+00', 'default', true, false, '{}');
-- the outage's alarm, raised and cleared by the events, with its times pinned
UPDATE vms.alarm SET first_raised_at = '2026-03-10 00:00+00', cleared_at = '2026-03-10 06:00+00',
       fix_by = '2026-03-12 00:00+00'
 WHERE code = '11010500001320000001' AND fault_type = 'offline';
SELECT state, clear_reason FROM vms.alarm;

-- the 10th, by hand: online 18 h, offline 6 h, one outage, one alarm raised
-- and cleared within its fix deadline; no inspection that day
SELECT vms.ops_snapshot_day('2026-03-10', 'UTC') AS rows;
SELECT group_by, group_name, online_ratio, online_seconds, offline_seconds, offline_events, members, inspections,
       alarms_raised, alarms_cleared, fixed_in_time_rate, time_zone, governance ->> 'channels' AS governed_channels
  FROM vms.ops_daily ORDER BY group_by;
-- taken again: recomputed, not duplicated
SELECT vms.ops_snapshot_day('2026-03-10', 'UTC') AS rows, (SELECT count(*) FROM vms.ops_daily) AS kept;
-- the 6th: the failed pull counts the channel offline until the next good one
SELECT group_name, online_seconds, offline_seconds, inspections, stream_success_rate, image_rate
  FROM vms.ops_figures('2026-03-06 00:00+00', '2026-03-07 00:00+00', 'unit');

-- March closed: 31 days = 2678400 s; offline 6 h (device) + 24 h (stream)
-- = 108000 s in 2 outages; 3 inspections, 2 streams pulled, 1 picture
SELECT vms.ops_month_close('2026-03-01', 'UTC') AS rows;
SELECT group_by, group_key IS NOT NULL AS keyed, group_name, online_ratio = 2570400.0 / 2678400 AS by_hand,
       online_seconds, offline_seconds, offline_events, inspections, round(stream_success_rate::numeric, 4) AS stream_rate,
       round(image_rate::numeric, 4) AS image_rate, alarms_raised, fixed_in_time_rate
  FROM vms.ops_month ORDER BY group_by;
\set VERBOSITY default
SELECT vms.ops_month_close('2026-03-15', 'UTC');
UPDATE vms.ops_month SET online_ratio = 1;
DELETE FROM vms.ops_month;
SELECT vms.ops_snapshot_day('2026-03-11', 'UTC');
SELECT * FROM vms.ops_figures('2026-03-01', '2026-04-01', 'street');
\set VERBOSITY terse
-- a day or month not over yet is refused (the date in the message varies: the state is shown)
DO $$
BEGIN
    PERFORM vms.ops_snapshot_day(current_date + 1);
EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'snapshot of tomorrow: %', SQLSTATE;
END $$;
DO $$
BEGIN
    PERFORM vms.ops_month_close(current_date);
EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'closing this month: %', SQLSTATE;
END $$;

-- scheduled runs: a first pass only times them; a due one runs, records its
-- result and is timed again
UPDATE vms.ops_schedule SET enabled = (action = 'alarm_escalate');
SELECT vms.ops_run_due() AS ran_first;
SELECT name, next_run_at > now() AS timed, last_run_at IS NULL AS not_run FROM vms.ops_schedule WHERE enabled;
UPDATE vms.ops_schedule SET next_run_at = now() - interval '1 minute' WHERE enabled;
SELECT vms.ops_run_due() AS ran;
SELECT name, last_result, last_error, next_run_at > now() AS timed_again FROM vms.ops_schedule WHERE enabled;

-- the scheduled snapshot and month close take yesterday and last month in
-- the schedule's zone (args.tz, default Asia/Shanghai as report days),
-- whatever the session's: 2026-03-01 02:00 UTC is 10:00 on 1 March in
-- Shanghai and 23:00 on 28 February in Santiago
SET TimeZone = 'America/Santiago';
SELECT current_setting('TimeZone') AS session, z.tz, d.*
  FROM (VALUES (NULL), ('America/Santiago'), ('UTC')) z(tz), vms._ops_schedule_days('2026-03-01 02:00+00', z.tz) d;
SET TimeZone = 'Asia/Shanghai';
SELECT current_setting('TimeZone') AS session, z.tz, d.*
  FROM (VALUES (NULL), ('America/Santiago'), ('UTC')) z(tz), vms._ops_schedule_days('2026-03-01 02:00+00', z.tz) d;
-- a due snapshot run from a Santiago session takes Shanghai's yesterday;
-- with args.tz Santiago from a Shanghai session, Santiago's
SET TimeZone = 'America/Santiago';
UPDATE vms.ops_schedule SET enabled = (action = 'snapshot_day'), next_run_at = now() - interval '1 minute';
SELECT vms.ops_run_due() AS ran;
SELECT s.last_error, o.time_zone, o.day = (s.last_run_at AT TIME ZONE 'Asia/Shanghai')::date - 1 AS zone_yesterday
  FROM vms.ops_schedule s, (SELECT DISTINCT day, time_zone FROM vms.ops_daily WHERE time_zone = 'Asia/Shanghai') o
 WHERE s.action = 'snapshot_day';
SET TimeZone = 'Asia/Shanghai';
UPDATE vms.ops_schedule SET args = '{"tz": "America/Santiago"}', next_run_at = now() - interval '1 minute' WHERE action = 'snapshot_day';
SELECT vms.ops_run_due() AS ran;
SELECT s.last_error, o.time_zone, o.day = (s.last_run_at AT TIME ZONE 'America/Santiago')::date - 1 AS zone_yesterday
  FROM vms.ops_schedule s, (SELECT DISTINCT day, time_zone FROM vms.ops_daily WHERE time_zone = 'America/Santiago') o
 WHERE s.action = 'snapshot_day';
RESET TimeZone;
DELETE FROM vms.ops_daily WHERE time_zone <> 'UTC';
UPDATE vms.ops_schedule SET enabled = (action = 'alarm_escalate'), args = '{}';

-- retention: device events older than 30 days go (one now() stays); the
-- closed month's figures do not change, while recomputing March now finds
-- no state at all
INSERT INTO vms.device_event (device_code, at, event, cause) VALUES ('11010500001320000001', now(), 'online', 'registered');
UPDATE vms.retention_policy SET keep = '30 days' WHERE table_name = 'device_event';
SELECT * FROM vms.retention_prune('device_event');
SELECT count(*) AS events_left FROM vms.device_event;
SELECT group_by, online_seconds FROM vms.ops_month ORDER BY group_by;
SELECT online_seconds, unknown_seconds FROM vms.ops_figures('2026-03-01 00:00+00', '2026-04-01 00:00+00', 'unit');
SELECT vms.retention_prune('nothing');
