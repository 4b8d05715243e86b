-- alarms that follow the network: device and channel offline raise and
-- clear alarms by device type, root cause suppression under a device's
-- offline alarm, masks, deadlines per level and contract, overdue and
-- escalation, and the notification events each step leaves
\set SHOW_CONTEXT never
SET search_path = public, vms;
INSERT INTO vms.org_unit (name) VALUES ('东区运维');
INSERT INTO vms.device (code, name, civil_code, unit_id) VALUES
    ('11010500001180000001', 'NVR', '110105', NULL),
    ('11010500001320000002', 'IPC', '110105', (SELECT id FROM vms.org_unit WHERE name = '东区运维')),
    ('11010500002000000003', '下级平台', '110105', NULL),
    ('11010800001320000004', '海淀IPC', '110108', NULL);
INSERT INTO vms.channel (code, device_code, name) VALUES
    ('11010500001310000011', '11010500001180000001', 'ch1'),
    ('11010500001310000012', '11010500001180000001', 'ch2'),
    ('11010500001310000013', '11010500001180000001', 'ch3');
CREATE VIEW ev AS
SELECT a.code, a.fault_type, e.kind, e.level, e.notify, e.detail ->> 'reason' AS reason
  FROM vms.alarm_event e JOIN vms.alarm a ON a.id = e.alarm_id;

-- 1. devices going offline (as the SIP worker writes it): one alarm each,
-- source sip, level by type: platform I, NVR II, IPC III
INSERT INTO vms.device_event (device_code, at, event, cause) VALUES
    ('11010500002000000003', now(), 'offline', 'keepalive timeout'),
    ('11010500001320000002', now(), 'offline', 'keepalive timeout');
SELECT code, fault_type, source, level, state, detail ->> 'cause' AS cause FROM vms.alarm ORDER BY code;
-- an event that is no transition raises nothing
INSERT INTO vms.device_event (device_code, at, event, cause) VALUES ('11010500001180000001', now(), 'auth_failed', 'bad digest');
SELECT count(*) AS alarms FROM vms.alarm;

-- 2. root cause: ch1 has a stream alarm of its own before the NVR goes
-- down; then the NVR goes offline, ch2's stream and ch3's catalog OFF come
-- while it is: all three linked to the NVR's alarm, none notified
SELECT vms.alarm_raise('11010500001310000011', 'stream', 2::smallint, 'inspection') > 0 AS ch1_stream;
INSERT INTO vms.device_event (device_code, at, event, cause) VALUES ('11010500001180000001', now(), 'offline', 'keepalive timeout');
SELECT vms.alarm_raise('11010500001310000012', 'stream', 2::smallint, 'inspection') > 0 AS ch2_stream;
INSERT INTO vms.channel_status (code, status) VALUES ('11010500001310000013', 'OFF');
-- ch1's blur is not the device's doing: not suppressed
SELECT vms.alarm_raise('11010500001310000011', 'blur', 3::smallint, 'inspection') > 0 AS ch1_blur;
SELECT a.code, a.fault_type, a.level, r.code AS root_code, r.fault_type AS root_fault
  FROM vms.alarm a LEFT JOIN vms.alarm r ON r.id = a.root_alarm_id
 WHERE a.code::text LIKE '1101050000131%' ORDER BY a.code, a.fault_type;
-- the outage is one notified alarm (ch1's stream alarm was notified before it)
SELECT count(*) AS nvr_outage_alarms_notified FROM ev
 WHERE notify AND kind = 'raised' AND (code = '11010500001180000001' OR code::text LIKE '1101050000131%')
   AND fault_type <> 'blur' AND NOT (code = '11010500001310000011' AND fault_type = 'stream');
-- the NVR comes back: its alarm cleared with the reason; ch1 and ch2's
-- stream alarms go with it; ch3, still OFF in its catalog, stays open and
-- is now notified as a fault of its own
INSERT INTO vms.device_event (device_code, at, event, cause) VALUES ('11010500001180000001', now(), 'online', 'registered');
SELECT code, fault_type, state, clear_reason FROM vms.alarm WHERE code::text LIKE '1101050000118%' OR code::text LIKE '1101050000131%'
 ORDER BY code, fault_type;
SELECT code, fault_type, kind, level, notify, reason FROM ev
 WHERE code = '11010500001180000001' OR code::text LIKE '1101050000131%' ORDER BY code, fault_type, kind;
-- ch3 comes back in its catalog: cleared
UPDATE vms.channel_status SET status = 'ON', reported_at = now() WHERE code = '11010500001310000013';
SELECT state, clear_reason FROM vms.alarm WHERE code = '11010500001310000013' AND fault_type = 'offline';

-- 3. masks: 海淀 (110108) offline masked for the hour around now
SELECT vms.alarm_mask_add('海淀割接', '{"regions": ["110108"]}', '{offline}', now() - interval '1 hour',
                          now() + interval '1 hour', 'planned fibre work') AS mask_id \gset
INSERT INTO vms.device_event (device_code, at, event, cause) VALUES ('11010800001320000004', now(), 'offline', 'keepalive timeout');
SELECT vms.alarm_raise('11010800001320000004', 'blur', 3::smallint, 'inspection') > 0 AS other_fault;
SELECT code, fault_type, coalesce(mask_id = :mask_id, false) AS masked, e.notify
  FROM vms.alarm a JOIN vms.alarm_event e ON e.alarm_id = a.id AND e.kind = 'raised'
 WHERE code = '11010800001320000004' ORDER BY fault_type;
-- scope keys: units (with sub-units), codes (a channel through its device), catalog nodes, tags
SELECT vms.alarm_mask_covers(jsonb_build_object('units', jsonb_build_array((SELECT id FROM vms.org_unit)::text)), '11010500001320000002') AS unit,
       vms.alarm_mask_covers('{"codes": ["11010500001180000001"]}', '11010500001310000012') AS channel_of_device,
       vms.alarm_mask_covers('{"codes": ["11010500001310000012"]}', '11010500001180000001') AS device_of_channel,
       vms.alarm_mask_covers('{"regions": ["1101"]}', '11010800001320000004') AS region_prefix,
       vms.alarm_mask_covers('{"regions": ["110105"]}', '11010800001320000004') AS other_region;
-- outside the window: not masked
SELECT vms.alarm_mask_for('11010800001320000004', 'offline', now() + interval '2 hours') IS NULL AS after_window,
       vms.alarm_mask_for('11010800001320000004', 'offline', now() - interval '2 hours') IS NULL AS before_window;
\set VERBOSITY default
SELECT vms.alarm_mask_add('x', '{"streets": ["a"]}', NULL, now(), NULL, 'r');
SELECT vms.alarm_mask_add('x', '{}', NULL, now(), NULL, 'r');
SELECT vms.alarm_mask_add('x', '{"codes": []}', NULL, now(), now() - interval '1 minute', 'r');
\set VERBOSITY terse

-- 4. deadlines: the defaults (response 30 min, plan 2 h for every level,
-- fix 12 h / 24 h / 48 h / 5 days) and a contract's own
SELECT level, respond_within, plan_within, fix_within FROM vms.alarm_level ORDER BY level;
INSERT INTO vms.maintenance_contract (name, contractor) VALUES ('东区维保', '甲公司');
INSERT INTO vms.maintenance_scope (contract_id, unit_id)
SELECT k.id, u.id FROM vms.maintenance_contract k, vms.org_unit u;
INSERT INTO vms.contract_deadline (contract_id, level, respond_within, fix_within)
SELECT id, 3, '10 minutes', '4 hours' FROM vms.maintenance_contract;
SELECT code, level, respond_by - first_raised_at AS respond, plan_by - first_raised_at AS plan,
       fix_by - first_raised_at AS fix, contract_id IS NOT NULL AS by_contract
  FROM vms.alarm WHERE fault_type = 'offline' AND state <> 'cleared' AND code IN ('11010500001320000002', '11010500002000000003')
 ORDER BY code;
-- the IPC's alarm was raised before the contract: a new one gets its deadlines
SELECT vms.alarm_clear('11010500001320000002', 'offline', 'test');
INSERT INTO vms.device_event (device_code, at, event, cause) VALUES ('11010500001320000002', now(), 'offline', 'keepalive timeout');
SELECT level, respond_by - first_raised_at AS respond, plan_by - first_raised_at AS plan, fix_by - first_raised_at AS fix,
       contract_id IS NOT NULL AS by_contract
  FROM vms.alarm WHERE code = '11010500001320000002' AND state <> 'cleared';

-- 5. overdue and escalation: the IPC's response deadline has passed
-- (moved into the past here), the platform's plan and fix deadlines too
UPDATE vms.alarm SET respond_by = now() - interval '1 minute' WHERE code = '11010500001320000002' AND state <> 'cleared';
UPDATE vms.alarm SET plan_by = now() - interval '2 minutes', fix_by = now() - interval '1 minute'
 WHERE code = '11010500002000000003' AND state <> 'cleared';
-- the masked 海淀 alarm is past its response deadline too, but masked: not overdue
UPDATE vms.alarm SET respond_by = now() - interval '1 minute' WHERE code = '11010800001320000004' AND fault_type = 'offline';
SELECT code, deadline, level, escalated FROM vms.alarm_overdue ORDER BY code, due_at;
SELECT vms.alarm_escalate() AS escalated;
SELECT vms.alarm_escalate() AS escalated_again;
SELECT code, level, escalated FROM vms.alarm WHERE code IN ('11010500001320000002', '11010500002000000003') AND state <> 'cleared' ORDER BY code;
SELECT a.code, e.kind, e.level, e.notify, e.detail ->> 'deadline' AS deadline, e.detail ->> 'from_level' AS from_level
  FROM vms.alarm_event e JOIN vms.alarm a ON a.id = e.alarm_id WHERE kind = 'escalated' ORDER BY e.id;
-- acknowledging meets the response deadline; a plan meets the plan deadline
SELECT vms.alarm_acknowledge(id), vms.alarm_plan(id, '明早派人'), vms.alarm_plan(id, 'again')
  FROM vms.alarm WHERE code = '11010500001320000002' AND state <> 'cleared';
SELECT code, deadline FROM vms.alarm_overdue ORDER BY code, due_at;
SELECT kind, notify, e.detail ->> 'note' AS note FROM vms.alarm_event e JOIN vms.alarm a ON a.id = e.alarm_id
 WHERE a.code = '11010500001320000002' AND a.state <> 'cleared' ORDER BY e.id;
