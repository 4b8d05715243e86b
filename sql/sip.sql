-- SIP worker, SQL side: settings, the request queue, and how device reports
-- (catalog pages and events, alarms, positions, session batches) land.
-- The worker itself is exercised against real devices in test/t/030_sip_worker.pl.
\set SHOW_CONTEXT never
SET search_path = public, vms;
SET client_min_messages = warning;

-- settings exist with their defaults; the platform code is checked
SHOW vms.sip_port;
SHOW vms.sip_keepalive_interval;
SHOW vms.sip_keepalive_count;
SHOW vms.sip_unknown_devices;
SET vms.sip_id = '3402000000200000000';
SET vms.sip_id = '34020000002000000001';
RESET vms.sip_id;

-- a device with channels of its own
INSERT INTO vms.device (code, name) VALUES ('34020000001180000001', 'NVR-1'), ('34020000001180000002', 'NVR-2');

-- requests: validated, queued, waited for
\set VERBOSITY default
SELECT vms.sip_query_catalog('34020000001180000009');
SELECT vms.sip_subscribe('34020000001180000001', 'Presence');
SELECT vms.sip_subscribe('34020000001180000001', 'Alarm', 10);
\set VERBOSITY terse
SELECT vms.sip_query_catalog('34020000001180000001') AS rid \gset
SELECT vms.sip_subscribe('34020000001180000001', 'MobilePosition', 600) IS NOT NULL AS subscribe_queued;
SELECT kind, params, state, requested_by = current_user AS by_me FROM vms.sip_request ORDER BY id;
SELECT state FROM vms.sip_request_wait(:rid, 0);
SELECT vms.sip_request_wait(-1, 0);

-- the worker claims queued requests once; a restarted worker fails what was in flight
SELECT kind FROM vms._sip_claim_requests(10) ORDER BY id;
SELECT count(*) AS claimed_again FROM vms._sip_claim_requests(10);
SELECT vms._sip_recover_requests() AS failed_in_flight;
SELECT state, error FROM vms.sip_request WHERE id = :rid;

-- catalog pages: 215 business group, 216 virtual organisations, channels;
-- a bad code and a sub-device are reported, the good items land
SELECT vms._sip_catalog_apply('34020000001180000001', '[
  {"DeviceID": "34020000002150000001", "Name": "治安监控"},
  {"DeviceID": "34020000002160000002", "Name": "东区", "ParentID": "34020000002160000001", "BusinessGroupID": "34020000002150000001"},
  {"DeviceID": "34020000002160000001", "Name": "城区", "BusinessGroupID": "34020000002150000001"},
  {"DeviceID": "34020000001310000001", "Name": "东门", "Address": "东门路1号", "CivilCode": "340200", "Longitude": "120.1", "Latitude": "30.2", "Status": "ON", "ParentID": "34020000002160000002"},
  {"DeviceID": "34020000001310000002", "Name": "西门", "Longitude": "0", "Latitude": "0", "Status": "OFF"},
  {"DeviceID": "34020000001310000003", "Name": "南门", "CivilCode": "34x", "Longitude": "999", "Latitude": "30"},
  {"DeviceID": "3402000000131000000X", "Name": "bad"},
  {"DeviceID": "34020000001110000001", "Name": "sub-DVR"},
  {"Name": "no id"}
]') AS outcome;
SELECT code, name, parent_code, business_group, source_device FROM vms.catalog_node WHERE source_device IS NOT NULL ORDER BY code;
SELECT code, name, address, civil_code, ST_AsText(geom) AS geom FROM vms.channel WHERE device_code = '34020000001180000001' ORDER BY code;
SELECT node_code, channel_code FROM vms.catalog_member WHERE channel_code::text LIKE '3402%' ORDER BY 1, 2;
SELECT code, status FROM vms.channel_status ORDER BY code;
-- a person's value survives the next catalog report (raw layer kept apart)
UPDATE vms.channel SET name = '东门(核定)' WHERE code = '34020000001310000001';
SELECT vms._sip_catalog_apply('34020000001180000001', '[{"DeviceID": "34020000001310000001", "Name": "DONG MEN", "Event": "UPDATE"}]') ->> 'channels' AS applied;
SELECT c.name, r.reported ->> 'name' AS reported FROM vms.channel c JOIN vms.channel_reported r USING (code)
 WHERE code = '34020000001310000001';
-- events for channels of another device are refused
SELECT vms._sip_catalog_apply('34020000001180000002', '[{"DeviceID": "34020000001310000001", "Event": "OFF"}]') -> 'rejected' AS rejected;
-- nor rewritten by one: a channel or catalogue node of another device is
-- left as it is (name, address, civil code, location, status, membership);
-- a device's own nodes hang only under its own, its channels join only its own
SELECT vms._sip_catalog_apply('34020000001180000002', '[
  {"DeviceID": "34020000002150000001", "Name": "hijacked group"},
  {"DeviceID": "34020000002160000009", "Name": "NVR-2 org", "ParentID": "34020000002160000001"},
  {"DeviceID": "34020000001310000001", "Name": "hijacked", "Address": "x", "CivilCode": "110000", "Longitude": "116.4", "Latitude": "39.9", "Status": "OFF", "ParentID": "34020000002160000009", "Event": "UPDATE"},
  {"DeviceID": "34020000001310000009", "Name": "NVR-2 cam", "ParentID": "34020000002160000001"}
]') AS outcome;
SELECT code, name, device_code, address, civil_code, ST_AsText(geom) AS geom FROM vms.channel
 WHERE code IN ('34020000001310000001', '34020000001310000009') ORDER BY code;
SELECT r.reported ->> 'name' AS reported FROM vms.channel_reported r WHERE code = '34020000001310000001';
SELECT code, status FROM vms.channel_status WHERE code = '34020000001310000001';
SELECT code, name, parent_code, source_device FROM vms.catalog_node WHERE source_device IS NOT NULL ORDER BY code;
SELECT node_code, channel_code FROM vms.catalog_member WHERE channel_code::text LIKE '3402%' ORDER BY 1, 2;

-- a session batch: device online, channels follow it and their own status
SELECT vms._sip_flush(format('{"s": [{"d": "34020000001180000001", "o": true, "af": 0, "tr": "UDP", "ad": "127.0.0.1", "pt": 5070,
                                      "ra": %1$s, "ex": %2$s, "ka": %1$s}],
                               "e": [{"d": "34020000001180000001", "at": %1$s, "ev": "registered", "c": "expires 3600 s"},
                                     {"d": "34020000001180000001", "at": %1$s, "ev": "online", "c": "registered"},
                                     {"d": "34020000009990000001", "at": %1$s, "ev": "online", "c": "not in the ledger"}],
                               "f": [{"d": "34020000001180000001", "o": true, "at": %1$s}]}',
                        extract(epoch FROM now()), extract(epoch FROM now() + interval '1 hour'))::jsonb) AS sessions;
SELECT code, online FROM vms.device WHERE code::text LIKE '3402%' ORDER BY code;
SELECT code, online FROM vms.channel WHERE device_code = '34020000001180000001' ORDER BY code;
SELECT device_code, event, cause FROM vms.device_event ORDER BY id;
SELECT code, online, transport, address, port, keepalive_interval, keepalive_count, last_cause FROM vms.sip_device_status WHERE code::text LIKE '3402%' ORDER BY code;
-- state flips are not ledger history
SELECT count(*) AS history_rows_for_flips FROM vms.ledger_history
 WHERE table_name IN ('device', 'channel') AND (new_values ? 'online' OR op = 'UPDATE' AND new_values = '{}');

-- catalog events: OFF takes a channel offline, VLOST raises an alarm, DEL keeps the ledger row
SELECT vms._sip_catalog_apply('34020000001180000001', '[
  {"DeviceID": "34020000001310000001", "Event": "OFF"},
  {"DeviceID": "34020000001310000003", "Event": "VLOST"},
  {"DeviceID": "34020000001310000002", "Event": "DEL"}]') AS events;
SELECT code, online FROM vms.channel WHERE device_code = '34020000001180000001' ORDER BY code;
SELECT code, status FROM vms.channel_status ORDER BY code;
SELECT code, fault_type, level, source FROM vms.alarm WHERE source = 'sip' ORDER BY id;
-- device offline: every channel goes with it
SELECT vms._sip_flush(format('{"s": [], "e": [], "f": [{"d": "34020000001180000001", "o": false, "at": %s}]}',
                             extract(epoch FROM now()))::jsonb);
SELECT count(*) FILTER (WHERE online) AS channels_online FROM vms.channel WHERE device_code = '34020000001180000001';

-- alarm notifications: method and type name the fault, priority is the level,
-- a channel of the reporting device is the subject
SELECT vms._sip_alarm('34020000001180000001',
  '{"DeviceID": "34020000001310000001", "AlarmPriority": "2", "AlarmMethod": "2", "AlarmTime": "2026-11-22T10:00:00", "Info": {"AlarmType": "1"}}') AS aid \gset
SELECT fault_type, level, code, detail FROM vms.alarm WHERE id = :aid;
SELECT vms._sip_alarm('34020000001180000002', '{"DeviceID": "34020000001310000001", "AlarmPriority": "9", "AlarmMethod": "7"}') AS aid \gset
SELECT fault_type, level, code FROM vms.alarm WHERE id = :aid;

-- positions: a good one lands, nonsense does not
SELECT vms._sip_position('34020000001180000001', '{"Longitude": "120.5", "Latitude": "30.5", "Speed": "12.5", "Direction": "90"}');
SELECT vms._sip_position('34020000001180000001', '{"Longitude": "1e9", "Latitude": "x"}');
SELECT device_code, ST_AsText(geom), speed, direction FROM vms.mobile_position;

-- subscriptions as the worker records them
SELECT vms._sip_subscription_record('34020000001180000001', '{"event": "Catalog", "state": "active", "expires": 3600, "call_id": "abc", "cseq": 1}');
SELECT device_code, event, expires, state, call_id, expires_at > now() AS has_expiry FROM vms.sip_subscription;
SELECT vms._sip_subscription_record('34020000001180000001', '{"event": "Catalog", "state": "ended"}');
SELECT count(*) AS subscriptions FROM vms.sip_subscription;

-- unknown devices accepted for governance
SELECT vms._sip_add_device('34020000001320000077', '{"address": "127.0.0.7"}');
SELECT code, name, ip_address, civil_code FROM vms.device WHERE code = '34020000001320000077';
SELECT event, cause FROM vms.device_event WHERE device_code = '34020000001320000077';

-- device changes queue for the worker (it serves another database here, so
-- the queue stays as written): a credential set, changed or deleted, a
-- device added or deleted, the digest qop setting; the worker takes what it
-- sees and nothing more
SELECT count(*) > 0 AS earlier_changes_taken FROM vms._sip_take_device_changes();
SELECT count(*) AS queue_after_take FROM vms.sip_device_change;
SELECT vms.device_set_password('34020000001180000001', 'secret-1', '3402000000');
SELECT vms.device_set_password('34020000001180000001', 'secret-2', '3402000000');
DELETE FROM vms.device_credential WHERE device_code = '34020000001180000001';
INSERT INTO vms.device (code, name) VALUES ('34020000001180000003', 'NVR-3'), ('34020000001180000004', 'NVR-4');
DELETE FROM vms.device WHERE code = '34020000001180000004';
SELECT device_code, count(*) FROM vms.sip_device_change GROUP BY 1 ORDER BY 1;
SELECT c FROM vms._sip_take_device_changes() c ORDER BY 1;
SELECT count(*) AS queue_after_take FROM vms.sip_device_change;
-- digest qop: on by default, off per device (the session row is made if need be), back on
SELECT digest_qop FROM vms._sip_devices('-infinity', '34020000001180000003');
SELECT vms.sip_set_digest_qop('34020000001180000003', false);
SELECT digest_qop FROM vms._sip_devices('-infinity', '34020000001180000003');
SELECT vms.sip_set_digest_qop('34020000001180000003', true);
SELECT vms.sip_set_digest_qop('34020000001180000009', false);
SELECT c FROM vms._sip_take_device_changes() c ORDER BY 1;
-- the worker's session writes do not touch the setting and queue nothing
SELECT vms.sip_set_digest_qop('34020000001180000003', false);
SELECT count(*) > 0 FROM vms._sip_take_device_changes();
SELECT vms._sip_flush(jsonb_build_object('s', jsonb_build_array(jsonb_build_object('d', '34020000001180000003', 'o', true, 'af', 0,
                          'tr', 'UDP', 'ad', '127.0.0.9', 'pt', 5060, 'ua', 'IPC 1')), 'e', '[]'::jsonb, 'f', '[]'::jsonb)) AS written;
SELECT digest_qop, user_agent, address FROM vms.device_session WHERE device_code = '34020000001180000003';
SELECT count(*) AS queued_by_flush FROM vms.sip_device_change;

-- the worker appears in vms.worker_status with the SIP counters
SELECT name, backend_type, (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(counters) k) AS counters
  FROM vms.worker_status WHERE name = 'sip';
