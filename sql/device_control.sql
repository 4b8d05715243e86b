-- Device control, recordings and GB/T 28181-2022 devices (issue 17), SQL side:
-- the PTZCmd encoding against hand-computed bytes, the refusals before
-- anything is queued, what is queued, and how answers land.  The worker and
-- a device (gbsim) are exercised in test/t/120_device_control.pl.
\set SHOW_CONTEXT never
SET search_path = public, vms;
SET client_min_messages = warning;
-- times in messages print the same in every run; device times use the server's zone whatever this is
SET TimeZone = 'UTC';

-- PTZCmd, GB/T 28181 A.3: A5 0F 01, instruction, data 1, data 2, data 3 <<
-- 4, checksum = (A5 + 0F + 01 + bytes 4..7) mod 256.  Computed by hand at
-- speed 128 (80h): A5 + 0F + 01 = B5h = 181; e.g. up = 181 + 08 + 80 = 317
-- = 13Dh -> 3D.  Zoom speed is the upper nibble (8); focus speed is byte 5,
-- iris speed byte 6.
SELECT c.command, vms.ptz_cmd(c.command) AS encoded, vms.ptz_cmd(c.command) = c.expected AS as_computed
  FROM (VALUES ('stop',       'A50F0100000000B5'),
               ('right',      'A50F010180000036'),
               ('left',       'A50F010280000037'),
               ('down',       'A50F010400800039'),
               ('up',         'A50F01080080003D'),
               ('down_right', 'A50F0105808000BA'),
               ('down_left',  'A50F0106808000BB'),
               ('up_right',   'A50F0109808000BE'),
               ('up_left',    'A50F010A808000BF'),
               ('zoom_in',    'A50F011000008045'),
               ('zoom_out',   'A50F012000008055'),
               ('focus_far',  'A50F014180000076'),
               ('focus_near', 'A50F014280000077'),
               ('iris_open',  'A50F014400800079'),
               ('iris_close', 'A50F01480080007D')) c(command, expected)
 ORDER BY 1;
-- speeds at the ends: left at 255 (181 + 2 + 255 = 438 -> B6); zoom at 1
-- still moves (nibble 1: 181 + 16 + 16 = 213 = D5); zoom at 255 (nibble F)
SELECT vms.ptz_cmd('left', 255) = 'A50F0102FF0000B6' AS left_255,
       vms.ptz_cmd('zoom_in', 1) = 'A50F0110000010D5' AS zoom_in_1,
       vms.ptz_cmd('zoom_out', 255) = 'A50F01200000F0C5' AS zoom_out_255;
-- presets (A.3.4): 81h set, 82h call, 83h delete, byte 6 the number
SELECT vms.ptz_preset_cmd('call', 1) = 'A50F018200010038' AS call_1,
       vms.ptz_preset_cmd('set', 3) = 'A50F018100030039' AS set_3,
       vms.ptz_preset_cmd('delete', 255) = 'A50F018300FF0037' AS delete_255;
-- every encoding is 8 bytes whose last is the sum of the others mod 256
SELECT bool_and(length(x) = 16 AND
                (SELECT sum(get_byte(decode(x, 'hex'), i)) FROM generate_series(0, 6) i) % 256
                = get_byte(decode(x, 'hex'), 7)) AS checksums_hold
  FROM (SELECT vms.ptz_cmd(c, s) AS x
          FROM unnest('{up,down,left,right,up_left,up_right,down_left,down_right,zoom_in,zoom_out,focus_near,focus_far,iris_open,iris_close,stop}'::text[]) c,
               generate_series(1, 255, 7) s) e;
-- bad input is refused
\set VERBOSITY default
SELECT vms.ptz_cmd('spin');
SELECT vms.ptz_cmd('up', 0);
\set VERBOSITY terse
SELECT vms.ptz_cmd('up', 256);
SELECT vms.ptz_cmd('up', NULL);
SELECT vms.ptz_cmd(NULL);
SELECT vms.ptz_preset_cmd('call', 0);
SELECT vms.ptz_preset_cmd('move', 1);

-- a device with two channels, a unit, an operator with the ptz right on one channel
INSERT INTO vms.org_unit (name) VALUES ('regress 录像单位');
INSERT INTO vms.device (code, name) VALUES ('34020000001180000101', 'NVR-dc');
INSERT INTO vms.channel (code, device_code, name, unit_id)
SELECT c, '34020000001180000101', 'cam ' || right(c, 1), (SELECT id FROM vms.org_unit WHERE name = 'regress 录像单位')
  FROM unnest('{34020000001320000101,34020000001320000102}'::text[]) c;
CREATE ROLE regress_dc_op LOGIN IN ROLE vms_analyst;
CREATE ROLE regress_dc_admin LOGIN IN ROLE vms_grant_admin;
SET SESSION AUTHORIZATION regress_dc_admin;
SELECT vms.grant_access('regress_dc_op', 'channel', '34020000001320000101', '{ptz}', 4::smallint) > 0 AS granted;
RESET SESSION AUTHORIZATION;

-- without the right: refused (42501), nothing queued
SET SESSION AUTHORIZATION regress_dc_op;
\set VERBOSITY default
SELECT vms.ptz('34020000001320000102', 'up');
-- bad input is refused before the right is even looked at
SELECT vms.ptz('34020000001320000101', 'spin');
SELECT vms.ptz('34020000001320000101', 'up', 300);
-- the device is offline: refused, nothing sent
SELECT vms.ptz('34020000001320000101', 'up');
\set VERBOSITY terse
-- no queue or internal helper of the owner's is open to the operator
SELECT count(*) FROM vms.sip_request;
SELECT vms._device_request('34020000001320000101', 'device_control', 'Control', 'DeviceControl', NULL, false, NULL, '{}');
SELECT vms.device_teleboot('34020000001180000101');
RESET SESSION AUTHORIZATION;
SELECT count(*) AS queued_while_offline FROM vms.sip_request WHERE device_code = '34020000001180000101';

-- online: queued, as the operator, with the command encoded; audited
SELECT vms._sip_flush(format('{"s": [{"d": "34020000001180000101", "o": true, "af": 0, "tr": "UDP", "ad": "127.0.0.1", "pt": 5070,
                                      "ra": %1$s, "ex": %2$s, "ka": %1$s}], "e": [],
                               "f": [{"d": "34020000001180000101", "o": true, "at": %1$s}]}',
                        extract(epoch FROM now()), extract(epoch FROM now() + interval '1 hour'))::jsonb) AS sessions;
SET SESSION AUTHORIZATION regress_dc_op;
SELECT vms.ptz('34020000001320000101', 'up_left', 64) > 0 AS ptz_queued;
SELECT vms.ptz_preset('34020000001320000101', 'call', 7) > 0 AS preset_queued;
SELECT vms.ptz_home('34020000001320000101', true, 7, 120) > 0 AS home_queued;
-- X-GB-Ver: a device that registered without it speaks 2016, and 2022's
-- commands are refused (0A000) before anything is queued; with 2.0 too;
-- the owner's override lets them through; 3.0 from the device does
\set VERBOSITY default
SELECT vms.ptz_precise('34020000001320000101', 90.5, -10, 4);
\set VERBOSITY terse
RESET SESSION AUTHORIZATION;
SELECT vms._sip_gb_version('34020000001180000101', '{"version": "2.0"}');
SELECT vms.sip_query_home_position('34020000001320000101');
SELECT vms.sip_query_cruise_tracks('34020000001320000101');
SELECT vms.device_config_download('34020000001180000101', 'OSDConfig');
SELECT vms.device_config('34020000001180000101', '{"SnapShotConfig": {"SnapNum": 1}}');
SELECT count(*) AS refused_2022_queued FROM vms.sip_request WHERE params ->> 'cmd' IN ('HomePositionQuery', 'CruiseTrackListQuery', 'ConfigDownload', 'DeviceConfig');
-- 2016 commands still go
SELECT vms.device_config_download('34020000001180000101', 'BasicParam') > 0 AS basic_param_2016;
SELECT vms.sip_set_gb_version('34020000001180000101', '3');
SELECT vms.sip_set_gb_version('34020000001180000199', '3.0');
SELECT vms.sip_set_gb_version('34020000001180000101', '3.0');
SELECT vms.sip_query_home_position('34020000001320000101') > 0 AS override_lets_2022_through;
SELECT vms.sip_set_gb_version('34020000001180000101', NULL);
SELECT vms.sip_query_home_position('34020000001320000101');
SELECT vms._sip_gb_version('34020000001180000101', '{"version": "3.0"}');
DELETE FROM vms.sip_request WHERE params ->> 'cmd' IN ('HomePositionQuery', 'ConfigDownload');
SET SESSION AUTHORIZATION regress_dc_op;
SELECT vms.sip_set_gb_version('34020000001180000101', '3.0');
SELECT vms.ptz_precise('34020000001320000101', 90.5, -10, 4) > 0 AS precise_queued;
SELECT vms.ptz_precise('34020000001320000101', 360, 0, 1);
SELECT vms.ptz_preset('34020000001320000101', 'call', 256);
RESET SESSION AUTHORIZATION;
SELECT kind, requested_by, params ->> 'target' AS target, params ->> 'cmd' AS cmd, params ->> 'xml' AS xml,
       params ->> 'answer' AS answer
  FROM vms.sip_request WHERE device_code = '34020000001180000101' ORDER BY id;
SELECT action, object, detail ->> 'command' AS command, detail ->> 'ptz_cmd' AS ptz_cmd, session_role
  FROM vms.audit_log WHERE object = '34020000001320000101' ORDER BY seq;
DELETE FROM vms.sip_request WHERE device_code = '34020000001180000101';

-- device management (owner): guard, record, reboot, alarm reset, configuration, queries
SELECT vms.device_guard('34020000001180000101', true) > 0, vms.device_guard('34020000001320000102', false) > 0,
       vms.device_record('34020000001320000102', true) > 0, vms.device_teleboot('34020000001180000101') > 0,
       vms.device_alarm_reset('34020000001180000101') > 0, vms.device_alarm_reset('34020000001320000101', 5, 2) > 0,
       vms.device_config_download('34020000001180000101', 'BasicParam') > 0,
       vms.device_config_download('34020000001180000101', 'VideoRecordPlan') > 0,
       vms.device_config('34020000001180000101', '{"BasicParam": {"HeartBeatCount": 5, "Name": "东门 <NVR> & co", "HeartBeatInterval": "30"}}') > 0,
       vms.device_config('34020000001180000101', '{"SnapShotConfig": {"SnapNum": 1, "UploadURL": "http://10.0.0.1:8080/snap?a=1&b=2", "SessionID": "s1"}}') > 0,
       vms.sip_query_presets('34020000001320000101') > 0, vms.sip_query_home_position('34020000001320000101') > 0,
       vms.sip_query_cruise_tracks('34020000001320000101') > 0;
SELECT kind, params ->> 'target' AS target, params ->> 'root' AS root, params ->> 'cmd' AS cmd, params ->> 'xml' AS xml,
       params ->> 'answer' AS answer
  FROM vms.sip_request WHERE device_code = '34020000001180000101' ORDER BY id;
SELECT count(*) AS audited FROM vms.audit_log WHERE action = 'device_control';
-- refused
SELECT vms.device_config_download('34020000001180000101', 'Everything');
SELECT vms.device_config('34020000001180000101', '{"BasicParam": {"Password": "x"}}');
SELECT vms.device_config('34020000001180000101', '{"BasicParam": {"HeartBeatCount": "5; reboot"}}');
SELECT vms.device_config('34020000001180000101', '{"BasicParam": {}, "SnapShotConfig": {}}');
SELECT vms.device_config('34020000001180000101', '{"Network": {}}');
SELECT vms.device_alarm_reset('34020000001180000101', NULL, 2);
SELECT vms.device_guard('34020000001180000199', true);
SELECT vms.device_guard('34020000001180000101', NULL);
DELETE FROM vms.sip_request WHERE device_code = '34020000001180000101';

-- answers: OK, an error with the device's reason, BasicParam's keepalive settings
SELECT vms.device_guard('34020000001180000101', true) AS r1 \gset
SELECT vms.device_config_download('34020000001180000101', 'BasicParam') AS r2 \gset
SELECT vms._sip_control_result('34020000001180000101', json_build_object('request', :r1, 'state', 'done',
       'answer', '{"CmdType": "DeviceControl", "Result": "ERROR", "Reason": "guard not supported"}'::json));
SELECT vms._sip_control_result('34020000001180000101', json_build_object('request', :r2, 'state', 'done',
       'answer', '{"CmdType": "ConfigDownload", "Result": "OK", "BasicParam": {"HeartBeatInterval": "30", "HeartBeatCount": "5", "Expiration": "3600"}}'::json));
SELECT id = :r1 AS guard, state, error, result ->> 'Result' AS result FROM vms.sip_request WHERE id IN (:r1, :r2) ORDER BY id;
SELECT keepalive_interval, keepalive_count FROM vms.sip_device_status WHERE code = '34020000001180000101';
DELETE FROM vms.sip_request WHERE device_code = '34020000001180000101';

-- RecordInfo: the period in device time (the server's zone, whatever the session's)
SET TimeZone = 'Asia/Kathmandu';
SELECT vms.sip_query_records('34020000001320000101', '2026-03-01 00:00:00+00', '2026-03-02 00:00:00+00') AS rq \gset
SELECT current_setting('TimeZone') AS session_zone,
       params ->> 'xml' = format('<StartTime>%s</StartTime><EndTime>%s</EndTime><Secrecy>0</Secrecy><Type>all</Type>',
                                 to_char('2026-03-01 00:00:00+00'::timestamptz AT TIME ZONE (SELECT reset_val FROM pg_settings WHERE name = 'TimeZone'), 'YYYY-MM-DD"T"HH24:MI:SS'),
                                 to_char('2026-03-02 00:00:00+00'::timestamptz AT TIME ZONE (SELECT reset_val FROM pg_settings WHERE name = 'TimeZone'), 'YYYY-MM-DD"T"HH24:MI:SS')) AS server_zone,
       kind, params ->> 'cmd' AS cmd
  FROM vms.sip_request WHERE id = :rq;
SET TimeZone = 'UTC';
\set VERBOSITY default
SELECT vms.sip_query_records('34020000001320000101', '2026-03-02', '2026-03-01');
\set VERBOSITY terse
SELECT vms.sip_query_records('34020000001320000101', '2026-03-01', '2026-03-01');
SELECT vms.sip_query_records('34020000001320000101', '2026-03-01', 'infinity');
SELECT vms.sip_query_records('34020000001320000101', '2026-03-01', '2026-03-02', 'motion');
SELECT vms.sip_query_records('34020000001320000199', '2026-03-01', '2026-03-02');

-- the device's answer (pages merged by the worker): three records, 02:00-03:00 missing,
-- one item of another channel and one with reversed times rejected
SELECT vms._sip_records_result('34020000001180000101', jsonb_build_object('request', :rq, 'state', 'done',
  'progress', '{"received": 5, "sum_num": 5, "pages": 2}'::jsonb,
  'items', jsonb_build_array(
     jsonb_build_object('DeviceID', '34020000001320000101', 'Name', 'cam 1', 'FilePath', '/rec/a.mp4',
                        'StartTime', vms._device_time('2026-03-01 00:00+00'), 'EndTime', vms._device_time('2026-03-01 01:00+00'),
                        'Secrecy', '0', 'Type', 'time', 'FileSize', '1073741824', 'StreamNumber', '0'),
     jsonb_build_object('DeviceID', '34020000001320000101', 'FilePath', '/rec/b.mp4',
                        'StartTime', vms._device_time('2026-03-01 00:59+00'), 'EndTime', vms._device_time('2026-03-01 02:00+00'),
                        'Secrecy', '0', 'Type', 'alarm', 'StreamNumber', '1'),
     jsonb_build_object('DeviceID', '34020000001320000101', 'FilePath', '/rec/c.mp4',
                        'StartTime', vms._device_time('2026-03-01 03:00+00'), 'EndTime', vms._device_time('2026-03-02 00:00+00'),
                        'Type', 'time'),
     jsonb_build_object('DeviceID', '34020000001320000102', 'StartTime', vms._device_time('2026-03-01 03:00+00'),
                        'EndTime', vms._device_time('2026-03-01 04:00+00')),
     jsonb_build_object('DeviceID', '34020000001320000101', 'StartTime', vms._device_time('2026-03-01 05:00+00'),
                        'EndTime', vms._device_time('2026-03-01 04:00+00')))));
SELECT state, progress, result -> 'records' AS records, jsonb_array_length(result -> 'rejected') AS rejected,
       result #>> '{rejected,0,reason}' AS first_reason
  FROM vms.sip_request WHERE id = :rq;
SELECT start_time - '2026-03-01 00:00+00' AS starts, end_time - start_time AS lasts, record_type, secrecy, file_path,
       file_size, stream_number
  FROM vms.channel_record WHERE channel_code = '34020000001320000101' ORDER BY start_time;

-- integrity: continuous by default, so 02:00-03:00 is a gap and raises an alarm
SELECT (c).gaps, (c).expected_s, (c).recorded_s, (c).alarm_id IS NOT NULL AS alarmed
  FROM (SELECT vms.recording_check('34020000001320000101', '2026-03-01 00:00+00', '2026-03-02 00:00+00') c) x;
SELECT lower(gap) - '2026-03-01 00:00+00' AS gap_from, upper(gap) - lower(gap) AS gap_lasts
  FROM vms.recording_gap WHERE channel_code = '34020000001320000101';
SELECT code, fault_type, level, source, detail ->> 'gaps' AS gaps, detail ->> 'missing_s' AS missing_s, state
  FROM vms.alarm WHERE fault_type = 'recording_gap';
-- the other channel has no record at all: one gap the whole day
SELECT (vms.recording_check('34020000001320000102', '2026-03-01 00:00+00', '2026-03-02 00:00+00')).gaps AS other_gaps;
-- 录像完整率 of the unit: (23 h recorded + 0 h) / 48 h
SELECT unit_name, channels, expected_s, recorded_s, gaps, integrity, round((23.0 / 48)::numeric, 4) AS by_hand
  FROM vms.recording_integrity('2026-03-01 00:00+00', '2026-03-02 00:00+00');
-- the same rate among the governance metrics (each channel's latest check)
-- and the operations figures of the day; NULL where no check ran (a unit
-- without checked channels, a period without checks)
INSERT INTO vms.org_unit (name) VALUES ('regress 无录像单位');
INSERT INTO vms.channel (code, device_code, name, unit_id)
VALUES ('34020000001320000109', '34020000001180000101', 'cam 9', (SELECT id FROM vms.org_unit WHERE name = 'regress 无录像单位'));
SELECT unit, channels, recording_integrity,
       CASE WHEN unit = 'regress 录像单位' THEN round((23.0 / 48)::numeric, 4) END AS by_hand
  FROM vms.governance_metrics_by_unit() WHERE unit LIKE 'regress %' ORDER BY unit;
SELECT recording_integrity FROM vms.governance_metrics_by_region(2);
SELECT group_name, recording_integrity
  FROM vms.ops_figures('2026-03-01 00:00+00', '2026-03-02 00:00+00', 'unit') WHERE group_name LIKE 'regress %' ORDER BY 1;
SELECT group_name, recording_integrity
  FROM vms.ops_figures('2026-03-01 00:00+00', '2026-03-01 12:00+00', 'unit') WHERE group_name LIKE 'regress %' ORDER BY 1;
DELETE FROM vms.channel WHERE code = '34020000001320000109';
-- a plan that records every day only from 04:00 to 06:00 UTC (written in
-- server time, split at midnight where the server's zone puts one in it):
-- the gap is outside it
INSERT INTO vms.recording_plan (channel_code, weekday, start_time, end_time)
SELECT '34020000001320000101', d, w.s, w.e
  FROM generate_series(0, 6) d,
       (WITH t AS (SELECT ('2026-03-01 04:00+00'::timestamptz AT TIME ZONE vms._device_tz())::time AS s,
                          ('2026-03-01 06:00+00'::timestamptz AT TIME ZONE vms._device_tz())::time AS e)
        SELECT s, e FROM t WHERE e > s
        UNION ALL SELECT s, '00:00' FROM t WHERE e <= s
        UNION ALL SELECT '00:00', e FROM t WHERE e < s AND e > '00:00') w;
SELECT upper(e) - lower(e) AS expected_hours FROM unnest(vms.recording_expected('34020000001320000101', '2026-03-01 00:00+00', '2026-03-02 00:00+00')) e;
SELECT (vms.recording_check('34020000001320000101', '2026-03-01 00:00+00', '2026-03-02 00:00+00')).gaps AS gaps_in_plan;
SELECT state FROM vms.alarm WHERE fault_type = 'recording_gap' AND code = '34020000001320000101';
SELECT count(*) AS stored_gaps FROM vms.recording_gap WHERE channel_code = '34020000001320000101';
-- the latest check counts: 2 h expected and recorded on one channel, 24 h
-- missing on the other: 7200 / (7200 + 86400)
SELECT recording_integrity, round((7200.0 / 93600)::numeric, 4) AS by_hand
  FROM vms.governance_metrics_by_unit() WHERE unit = 'regress 录像单位';
SELECT recording_integrity
  FROM vms.ops_figures('2026-03-01 00:00+00', '2026-03-02 00:00+00', 'unit') WHERE group_name = 'regress 录像单位';
SELECT vms.recording_check('34020000001320000101', '2026-03-02', '2026-03-01');

-- GB/T 28181-2022: the version a device registered with, the catalog's 2022 fields
SELECT vms._sip_gb_version('34020000001180000101', '{"version": "3.0"}');
SELECT gb_version FROM vms.device_session WHERE device_code = '34020000001180000101';
SELECT vms._sip_catalog_apply('34020000001180000101', '[{"DeviceID": "34020000001320000101", "Name": "cam 1",
   "PointType": "1", "PointCommonName": "东门口", "MAC": "00:11:22:33:44:55", "FunctionType": "1/2", "EncodeType": "2",
   "InstallTime": "2024-05-01T00:00:00", "ManagementUnit": "某分局", "ContactInfo": "110", "RecordSaveDays": "90",
   "HorizontalFieldAngle": "92.5", "VerticalFieldAngle": "50", "MaxViewDistance": "120", "SecurityLevelCode": "1",
   "RegisterWay": "1"}]') ->> 'channels' AS applied;
SELECT fov_angle, fov_range_m FROM vms.channel WHERE code = '34020000001320000101';
SELECT item ->> 'PointCommonName' AS common_name, item ->> 'MAC' AS mac, item ->> 'RecordSaveDays' AS save_days,
       item ->> 'SecurityLevelCode' AS security_level
  FROM vms.channel_catalog_item WHERE code = '34020000001320000101';
-- mapped where the ledger has a column: PointCommonName -> alias,
-- ManagementUnit (a unit's code; a unit's name is not enough: cam 2 names
-- one and keeps its unit) -> unit, PTZType -> point type;
-- a person's value (overridden) stays
UPDATE vms.channel SET alias = 'set by hand' WHERE code = '34020000001320000102';
INSERT INTO vms.org_unit (code, name) VALUES ('RG-17', 'regress 分局');
SELECT vms.clear_override('vms.channel', '34020000001320000101', 'unit_id');
SELECT vms._sip_catalog_apply('34020000001180000101', '[{"DeviceID": "34020000001320000101", "Name": "cam 1", "PTZType": "1",
   "PointCommonName": "东门口", "ManagementUnit": "RG-17"},
  {"DeviceID": "34020000001320000102", "Name": "cam 2", "PTZType": "3", "PointCommonName": "西门口",
   "ManagementUnit": "regress 分局"}]') ->> 'channels' AS applied;
SELECT c.code, c.alias, c.point_type, u.name AS unit, c.overridden
  FROM vms.channel c LEFT JOIN vms.org_unit u ON u.id = c.unit_id
 WHERE c.device_code = '34020000001180000101' ORDER BY c.code;

-- media sessions: the address given, else vms.media_server; bad input refused first
SELECT vms.view_live('34020000001320000101');
SELECT vms.view_live('34020000001320000101', '{"ip": "10.0.0.5"}');
SELECT vms.view_live('34020000001320000101', '{"ip": "10.0.0.5; x", "port": 30000}');
SELECT vms.download('34020000001320000101', '2026-03-01', '2026-03-02', '{"ip": "10.0.0.5", "port": 30000}', 64);
SELECT vms.playback('34020000001320000101', '2026-03-02', '2026-03-01', '{"ip": "10.0.0.5", "port": 30000}');
-- a playback speed MANSRTSP's Scale has not (nor a reverse one, nor NULL)
SELECT vms.playback('34020000001320000101', '2026-03-01', '2026-03-02', '{"ip": "10.0.0.5", "port": 30000}', 3);
SELECT vms.playback('34020000001320000101', '2026-03-01', '2026-03-02', '{"ip": "10.0.0.5", "port": 30000}', -2);
SELECT vms.playback('34020000001320000101', '2026-03-01', '2026-03-02', '{"ip": "10.0.0.5", "port": 30000}', NULL);
SELECT vms.playback_control(1, 'rewind');
SELECT vms.playback_control(1, 'seek', -5);
SELECT vms.playback_control(-1, 'pause');
SET vms.media_server = '10.0.0.5:30000/tcp';
SET SESSION AUTHORIZATION regress_dc_admin;
SELECT vms.grant_access('regress_dc_op', 'channel', '34020000001320000101', '{view_live,playback,download}', 4::smallint) > 0 AS granted;
RESET SESSION AUTHORIZATION;
-- the owner's allowlist: besides the default an analyst names only these media servers
INSERT INTO vms.media_server_allowed (network, ports, note) VALUES ('10.0.0.0/24', '[30000,30010]', 'regress media servers');
INSERT INTO vms.media_server_allowed (network) VALUES ('224.0.0.0/4'), ('10.1.0.0/16');
INSERT INTO vms.media_server_allowed (network, ports) VALUES ('10.2.0.0/16', '[80,8080]');
INSERT INTO vms.media_server_allowed (network) VALUES ('::1/128');
SET SESSION AUTHORIZATION regress_dc_op;
-- the default is the superuser's: an analyst cannot set it
SET vms.media_server = '192.0.2.9:4444';
SELECT set_config('vms.media_server', '192.0.2.9:4444', false);
\set VERBOSITY default
-- not an address, or one that devices must never be aimed at, or not an allowed media server: refused
SELECT vms.view_live('34020000001320000101', '{"ip": "999.1.1.1", "port": 30000}');
SELECT vms.view_live('34020000001320000101', '{"ip": "127.0.0.1", "port": 30000}');
SELECT vms.view_live('34020000001320000101', '{"ip": "192.0.2.9", "port": 4444, "transport": "tcp"}');
\set VERBOSITY terse
SELECT vms.view_live('34020000001320000101', '{"ip": "0.0.0.0", "port": 30000}');
SELECT vms.view_live('34020000001320000101', '{"ip": "0.1.2.3", "port": 30000}');
SELECT vms.view_live('34020000001320000101', '{"ip": "255.255.255.255", "port": 30000}');
SELECT vms.view_live('34020000001320000101', '{"ip": "239.1.1.1", "port": 30000}');
SELECT vms.view_live('34020000001320000101', '{"ip": "240.0.0.1", "port": 30000}');
SELECT vms.download('34020000001320000101', '2026-03-01', '2026-03-02', '{"ip": "10.0.0.6", "port": 30011}', 32);
SELECT vms.playback('34020000001320000101', '2026-03-01', '2026-03-02', '{"ip": "10.0.1.6", "port": 30000}');
SELECT vms.view_live('34020000001320000101', '{"ip": "10.0.0.5", "port": 30000, "transport": "sctp"}');
RESET SESSION AUTHORIZATION;
-- loopback only when a loopback entry lists it: 0.0.0.0/0 does not
BEGIN;
INSERT INTO vms.media_server_allowed (network, note) VALUES ('0.0.0.0/0', 'everything');
SET LOCAL SESSION AUTHORIZATION regress_dc_op;
SELECT vms.view_live('34020000001320000101', '{"ip": "127.0.0.1", "port": 30000}');
ROLLBACK;
BEGIN;
INSERT INTO vms.media_server_allowed (network, ports) VALUES ('127.0.0.1/32', '[30000,30000]');
SELECT vms._media_target('{"ip": "127.0.0.1", "port": 30000}') AS loopback_listed,
       vms._media_target('{"ip": "192.0.2.9", "port": 4444}') AS superuser_any_unicast;
SELECT vms._media_target('{"ip": "127.0.0.2", "port": 30000}');
ROLLBACK;
SET SESSION AUTHORIZATION regress_dc_op;
SELECT vms.view_live('34020000001320000101') > 0 AS live,
       vms.playback('34020000001320000101', '2026-03-01 00:00+00', '2026-03-01 01:00:00.5+00', '{"ip": "10.0.0.6", "port": 30002}') > 0 AS playback,
       vms.download('34020000001320000101', '2026-03-01 00:00+00', '2026-03-01 01:00+00') > 0 AS download;
SELECT vms.view_live('34020000001320000102');
RESET SESSION AUTHORIZATION;
RESET vms.media_server;
SELECT kind, requested_by, params ->> 'channel' AS channel, params ->> 'mode' AS mode, params ->> 'ip' AS ip, params ->> 'port' AS port,
       params ->> 'transport' AS transport, (params ->> 'start')::bigint - extract(epoch FROM timestamptz '2026-03-01 00:00+00')::bigint AS start_s,
       (params ->> 'end')::bigint - extract(epoch FROM timestamptz '2026-03-01 00:00+00')::bigint AS end_s, params ->> 'speed' AS speed
  FROM vms.sip_request WHERE kind = 'invite' ORDER BY id;
-- a playback at speed 4: once the device accepted it (the worker's update,
-- by hand here), its first control is queued: PLAY with Scale 4, as the
-- caller; vms.media_sessions shows the speed (1 for the default)
BEGIN;
SET SESSION AUTHORIZATION regress_dc_op;
SELECT vms.playback('34020000001320000101', '2026-03-01 00:00+00', '2026-03-01 01:00+00', '{"ip": "10.0.0.6", "port": 30002}', 4) AS sid4 \gset
RESET SESSION AUTHORIZATION;
SELECT count(*) AS controls_before FROM vms.sip_request WHERE kind = 'mansrtsp';
SELECT vms._sip_request_update(:sid4, 'done', NULL, '{"call_id": "regress-call-4"}', NULL);
SELECT vms._sip_request_update(id, 'done', NULL, '{"call_id": "regress-call-1"}', NULL)
  FROM vms.sip_request WHERE kind = 'invite' AND params ->> 'mode' = 'Playback' AND id <> :sid4;
SELECT requested_by, state, params ->> 'call_id' AS call_id, (params ->> 'session')::bigint = :sid4 AS of_session,
       params ->> 'command' AS command, params ->> 'value' AS value, replace(params ->> 'body', E'\r\n', '|') AS body
  FROM vms.sip_request WHERE kind = 'mansrtsp';
SELECT call_id, mode, speed FROM vms.media_sessions WHERE mode = 'Playback' ORDER BY id;
ROLLBACK;

-- media transport (GB/T 28181 over TCP): tcp_passive (tcp is the same) or
-- tcp_active; anything else refused before anything is queued
SET SESSION AUTHORIZATION regress_dc_op;
\set VERBOSITY default
SELECT vms.view_live('34020000001320000101', '{"ip": "10.0.0.5", "port": 30003, "transport": "TCP"}');
\set VERBOSITY terse
SELECT vms.view_live('34020000001320000101', '{"ip": "10.0.0.5", "port": 30003, "transport": 6}');
SELECT vms.playback('34020000001320000101', '2026-03-01', '2026-03-02', '{"ip": "10.0.0.5", "port": 30003, "transport": "rtsp"}');
RESET SESSION AUTHORIZATION;
SET vms.media_server = '10.0.0.5:30000/quic';
SELECT vms.view_live('34020000001320000101');
RESET vms.media_server;

-- live view is shared (WVP #923): the same channel to the same media server
-- (ip, port, transport) joins the session being set up or open instead of a
-- second INVITE, each caller a viewer of its own, checked and audited on its
-- own; another port or transport is a session of its own; playback never shares
SET SESSION AUTHORIZATION regress_dc_op;
SELECT vms.view_live('34020000001320000101', '{"ip": "10.0.0.5", "port": 30004}') AS s1 \gset
SELECT vms.view_live('34020000001320000101', '{"ip": "10.0.0.5", "port": 30004, "transport": "udp"}') = :s1 AS second_joins,
       vms.view_live('34020000001320000101', '{"ip": "10.0.0.5", "port": 30004, "transport": "tcp_active"}') <> :s1 AS tcp_active_own,
       vms.view_live('34020000001320000101', '{"ip": "10.0.0.5", "port": 30005}') <> :s1 AS other_port_own;
SELECT vms.playback('34020000001320000101', '2026-03-01', '2026-03-02', '{"ip": "10.0.0.5", "port": 30004}') AS p1 \gset
SELECT vms.playback('34020000001320000101', '2026-03-01', '2026-03-02', '{"ip": "10.0.0.5", "port": 30004}') <> :p1 AS playback_not_shared;
RESET SESSION AUTHORIZATION;
SELECT params ->> 'mode' AS mode, params ->> 'port' AS port, params ->> 'transport' AS transport, state,
       (SELECT count(*) FROM vms.media_viewer v WHERE v.session_id = r.id AND v.left_at IS NULL) AS viewers
  FROM vms.sip_request r WHERE kind = 'invite' AND params ->> 'port' IN ('30004', '30005') ORDER BY id;
SELECT count(*) AS audited_joins FROM vms.audit_log
 WHERE action = 'view_live' AND (detail ->> 'session')::bigint = :s1 AND detail ->> 'shared' = 'true' AND session_role = 'regress_dc_op';
-- leaving: one viewing at a time, only one's own; a session not yet answered sends no BYE (the worker ends it once answered)
CREATE ROLE regress_dc_other LOGIN IN ROLE vms_analyst;
SET SESSION AUTHORIZATION regress_dc_other;
\set VERBOSITY sqlstate
SELECT vms.media_leave(:s1);
\set VERBOSITY terse
RESET SESSION AUTHORIZATION;
DROP ROLE regress_dc_other;
SET SESSION AUTHORIZATION regress_dc_op;
SELECT vms.media_leave(:s1) AS viewers_left;
SELECT vms.media_leave(:s1) AS viewers_left;
\set VERBOSITY sqlstate
SELECT vms.media_leave(:s1);
\set VERBOSITY terse
RESET SESSION AUTHORIZATION;
SELECT viewer, left_reason FROM vms.media_viewer WHERE session_id = :s1 ORDER BY id;
SELECT count(*) AS byes FROM vms.sip_request WHERE kind = 'bye';
SELECT count(*) AS audited_leaves FROM vms.audit_log WHERE action = 'media_viewer_left' AND (detail ->> 'session')::bigint = :s1;
-- an open session whose last viewer leaves gets its BYE: the device answered (as the worker records it)
SELECT count(*) AS answered FROM vms._sip_request_update(:p1, 'done', NULL, '{"call_id": "regress-p1", "channel": "34020000001320000101", "device_media": {"ip": "10.9.9.9", "port": 15060}}', NULL);
SELECT mode, viewers, device_media_ip, device_media_port FROM vms.media_sessions WHERE id = :p1;
SET SESSION AUTHORIZATION regress_dc_op;
SELECT vms.media_leave(:p1) AS viewers_left;
RESET SESSION AUTHORIZATION;
SELECT params ->> 'call_id' AS call_id, params ->> 'reason' AS reason, (params ->> 'session')::bigint = :p1 AS of_session
  FROM vms.sip_request WHERE kind = 'bye';
SELECT count(*) AS still_open FROM vms.media_sessions WHERE id = :p1;
-- an INVITE that timed out releases its viewers with the reason (the worker's sweep)
SELECT id AS s2 FROM vms.sip_request WHERE kind = 'invite' AND params ->> 'port' = '30004' AND params ->> 'transport' = 'tcp_active' \gset
SELECT count(*) AS timed_out FROM vms._sip_request_update(:s2, 'timeout', NULL, NULL, 'no final answer to INVITE');
SELECT vms._media_sessions_lapsed() AS ended;
SELECT left_reason FROM vms.media_viewer WHERE session_id = :s2;

-- an offline device: refused before anything is queued, whether the call would INVITE or join
BEGIN;
UPDATE vms.device SET online = false WHERE code = '34020000001180000101';
SET LOCAL SESSION AUTHORIZATION regress_dc_op;
SELECT vms.view_live('34020000001320000101', '{"ip": "10.0.0.5", "port": 30006}');
ROLLBACK;
BEGIN;
UPDATE vms.device SET online = false WHERE code = '34020000001180000101';
SET LOCAL SESSION AUTHORIZATION regress_dc_op;
\set VERBOSITY default
SELECT vms.view_live('34020000001320000101', '{"ip": "10.0.0.5", "port": 30005}');
\set VERBOSITY terse
ROLLBACK;

-- a right is held on channels: a device code is refused for every right-checked
-- call, even to an 'all' grant at level 1 whose level a device code (no level of
-- its own) would pass; the device's channel 102 is at level 3
INSERT INTO vms.security_assignment (scope_kind, scope_ref, level) VALUES ('channel', '34020000001320000102', 3);
CREATE ROLE regress_dc_low LOGIN IN ROLE vms_analyst;
SET SESSION AUTHORIZATION regress_dc_admin;
SELECT vms.grant_access('regress_dc_low', 'all', NULL, '{ptz,view_live,playback,download}', 1::smallint) > 0 AS granted;
RESET SESSION AUTHORIZATION;
SET vms.media_server = '10.0.0.5:30000';
SET SESSION AUTHORIZATION regress_dc_low;
\set VERBOSITY default
SELECT vms.ptz('34020000001180000101', 'up');
\set VERBOSITY terse
SELECT vms.ptz_preset('34020000001180000101', 'call', 1);
SELECT vms.ptz_home('34020000001180000101', true, 1, 60);
SELECT vms.ptz_precise('34020000001180000101', 10, 10, 1);
SELECT vms.view_live('34020000001180000101');
SELECT vms.playback('34020000001180000101', '2026-03-01', '2026-03-02');
SELECT vms.download('34020000001180000101', '2026-03-01', '2026-03-02');
SELECT vms.ptz('34020000001320000102', 'up');
SELECT vms.view_live('34020000001320000102');
SELECT vms.ptz('34020000001320000101', 'up') > 0 AS level_1_channel;
RESET SESSION AUTHORIZATION;
RESET vms.media_server;
SELECT params ->> 'target' AS target, params ->> 'cmd' AS cmd, requested_by
  FROM vms.sip_request WHERE requested_by = 'regress_dc_low' ORDER BY id;
-- the owner's device commands still address the device
SELECT vms.device_guard('34020000001180000101', true) > 0 AS owner_device_command;
DELETE FROM vms.security_assignment WHERE scope_ref = '34020000001320000102';

-- clean up (roles are cluster-wide)
ALTER TABLE vms.access_grant DISABLE TRIGGER access_grant_audit;
DELETE FROM vms.access_grant WHERE grantee IN ('regress_dc_op', 'regress_dc_low');
ALTER TABLE vms.access_grant ENABLE TRIGGER access_grant_audit;
DELETE FROM vms.media_server_allowed;
DROP ROLE regress_dc_op, regress_dc_admin, regress_dc_low;
