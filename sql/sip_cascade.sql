-- GB/T 28181 cascade, SQL side (issue 16): upper platforms, their options and
-- password, the registration state machine, the share scope with per-upstream
-- codes and names, and the MANSCDP answers built for an upper platform's
-- queries (the worker itself is tested in test/t/110_sip_cascade.pl)
\set SHOW_CONTEXT never
SET search_path = public, vms;
SET client_min_messages = warning;
-- (the program reads what COPY writes, so that an early exit cannot break the pipe)
COPY (SELECT 1) TO PROGRAM 'cat >/dev/null && head -c 32 /dev/urandom > vms_regress_cascade_key && chmod 600 vms_regress_cascade_key';
SET vms.secret_key_file = 'vms_regress_cascade_key';

-- a district's NVR with 45 channels in 340201 and 5 in 340202
INSERT INTO vms.device (code, name, manufacturer, model) VALUES ('34020100001180000001', 'NVR 一', 'Hik', 'DS-9600');
INSERT INTO vms.channel (code, device_code, name, civil_code, address, geom)
SELECT '3402010000132' || lpad(i::text, 7, '0'), '34020100001180000001', '通道 ' || i, '340201', 'Road & <' || i || '>',
       ST_SetSRID(ST_MakePoint(117.1 + i / 1000.0, 31.8), 4326)
  FROM generate_series(1, 45) i;
INSERT INTO vms.channel (code, device_code, name, civil_code)
SELECT '3402020000132' || lpad(i::text, 7, '0'), '34020100001180000001', '外区 ' || i, '340202'
  FROM generate_series(1, 5) i;
UPDATE vms.device SET online = true;
UPDATE vms.channel SET online = (right(code::text, 1) <> '3');

-- adding: the password is stored encrypted for its row
SELECT vms.sip_add_upstream('city', '10.0.0.1', 5060, '34010000002000000001', 'city-pass',
                            '{"local_id": "34020100002000000001", "catalog_page_size": 20, "charset": "GB2312"}');
SELECT upstream, host, port, platform_id, enabled, state, shared FROM vms.sip_upstream_status;
SELECT length(password_enc) > 30 AS encrypted,
       vms.secret_decrypt(password_enc, 'sip_upstream.password_enc:' || name) AS password
  FROM vms.sip_upstream;
SELECT name, local_id, realm, expires, keepalive_interval, keepalive_count, charset, send_status, page_size, state
  FROM vms._sip_upstreams();

-- bad input
\set VERBOSITY default
SELECT vms.sip_add_upstream('city', '10.0.0.1', 5060, '34010000002000000001', 'x');
SELECT vms.sip_add_upstream('bad name', '10.0.0.1', 5060, '34010000002000000001', 'x');
SELECT vms.sip_add_upstream('bad', 'city.example', 5060, '34010000002000000001', 'x');
SELECT vms.sip_add_upstream('bad', '10.0.0.256', 5060, '34010000002000000001', 'x');
SELECT vms.sip_add_upstream('bad', '10.0.0.1', 0, '34010000002000000001', 'x');
SELECT vms.sip_add_upstream('bad', '10.0.0.1', 5060, '3401000000200000000', 'x');
SELECT vms.sip_add_upstream('bad', '10.0.0.1', 5060, '34010000002000000001', '');
SELECT vms.sip_add_upstream('bad', '10.0.0.1', 5060, '34010000002000000001', 'x', '{"expires": 30}');
SELECT vms.sip_add_upstream('bad', '10.0.0.1', 5060, '34010000002000000001', 'x', '{"keepalive_count": "3"}');
SELECT vms.sip_add_upstream('bad', '10.0.0.1', 5060, '34010000002000000001', 'x', '{"charset": "latin1"}');
SELECT vms.sip_add_upstream('bad', '10.0.0.1', 5060, '34010000002000000001', 'x', '{"transport": "sctp"}');
SELECT vms.sip_add_upstream('bad', '10.0.0.1', 5060, '34010000002000000001', 'x', '{"local_id": "3402"}');
SELECT vms.sip_add_upstream('bad', '10.0.0.1', 5060, '34010000002000000001', 'x', '{"page": 5}');
SELECT vms.sip_add_upstream('bad', '10.0.0.1', 5060, '34010000002000000001', 'x', '{"catalog_push_interval": 5}');
SELECT vms.sip_add_upstream('bad', '10.0.0.1', 5060, '34010000002000000001', 'x', '[]');
SELECT vms.sip_alter_upstream('nope', port => 5061);
SELECT vms.sip_alter_upstream('city', options => '{"send_status": "yes"}');
-- a password from another row, or not encrypted at all, is refused
UPDATE vms.sip_upstream SET password_enc = 'plain' WHERE name = 'city';
UPDATE vms.sip_upstream SET name = 'town' WHERE name = 'city';
\set VERBOSITY terse
SELECT count(*) AS upstreams FROM vms.sip_upstream;

-- altering: options are merged, the password re-encrypted for the row
SELECT vms.sip_alter_upstream('city', port => 5070, password => 'new-pass', options => '{"keepalive_interval": 30}');
SELECT port, options, vms.secret_decrypt(password_enc, 'sip_upstream.password_enc:' || name) AS password
  FROM vms.sip_upstream;

-- the share: a scope of the inspection plans' shape
SELECT vms.sip_share('city', '{"regions": ["340201"]}') AS shared;
SELECT vms.sip_share('city', '{"regions": ["340201"], "channels": ["34020200001320000001"]}') AS shared;
\set VERBOSITY default
SELECT vms.sip_share('city', '{"region": ["340201"]}');
SELECT vms.sip_share('city', '{"regions": "340201"}');
SELECT vms.sip_share('city', '{"channels": ["12345"]}');
SELECT vms.sip_share('city', '[]');
SELECT vms.sip_share('nope', '{}');
-- a code and name the upper platform knows a channel by
SELECT vms.sip_share_map('city', '34020100001320000002', '34010000001320000099', '南门');
SELECT vms.sip_share_map('city', '34020100001320000004', '34010000001320000099');
SELECT vms.sip_share_map('city', '34020100001320000004', '34020100001320000005');
SELECT vms.sip_share_map('city', '34020100001320009999', '34010000001320000098');
SELECT vms.sip_share_map('city', '34020100001320000004', name => '');
\set VERBOSITY terse
SELECT vms.sip_share_map('city', '34020100001320000006', name => '东门');
SELECT * FROM vms.sip_shared_channels('city') WHERE channel IN ('34020100001320000002', '34020100001320000003',
                                                              '34020100001320000006', '34020200001320000001') ORDER BY 1;
SELECT count(*) FROM vms.sip_shared_channels('city');

-- an INVITE of the upper platform (the worker asks before relaying it): the channel of the code it knows,
-- refused when the SDP names a media address outside media_nets (default: the upstream's own address);
-- every one audited, relayed or not, and the end of a relayed call too
\set VERBOSITY default
SELECT vms.sip_alter_upstream('city', options => '{"media_nets": []}');
SELECT vms.sip_alter_upstream('city', options => '{"media_nets": ["10.0.0.0/8", 5]}');
SELECT vms.sip_alter_upstream('city', options => '{"media_nets": ["10.0.0.1/8"]}');
\set VERBOSITY terse
SELECT * FROM vms._sip_upstream_relay('city', '34010000001320000099', '10.0.0.1', '10.0.0.1:5070');
SELECT * FROM vms._sip_upstream_relay('city', '34010000001320000099', '10.0.0.1,10.0.0.9', '10.0.0.1:5070');
SELECT * FROM vms._sip_upstream_relay('city', '34020100001320000002', '10.0.0.1', '10.0.0.1:5070');
SELECT * FROM vms._sip_upstream_relay('city', '34020100001320000003', '', '10.0.0.1:5070');
SELECT vms.sip_alter_upstream('city', options => '{"media_nets": ["192.168.0.0/16", "10.0.0.1/32"]}');
SELECT * FROM vms._sip_upstream_relay('city', '34020100001320000003', '192.168.7.20,10.0.0.1', '10.0.0.1:5070');
SELECT * FROM vms._sip_upstream_relay('city', '34020100001320000003', 'media.example.com', '10.0.0.1:5070');
-- an address in another form than the canonical one (a device may read 007 as octal)
SELECT * FROM vms._sip_upstream_relay('city', '34020100001320000003', '192.168.007.020', '10.0.0.1:5070');
SELECT * FROM vms._sip_upstream_relay('city', '34020100001320000003', '(unparseable SDP)', '10.0.0.1:5070');
SELECT * FROM vms._sip_upstream_relay('nope', '34020100001320000003', '10.0.0.1', '10.0.0.1:5070');
SELECT vms._sip_upstream_bye('city', '34020100001320000003', '34020100001320000003', '192.168.7.20', '10.0.0.1:5070', 'upstream');
SELECT action, object, detail FROM vms.audit_log WHERE action LIKE 'sip_upstream%' ORDER BY seq;
SELECT ok, problem FROM vms.audit_verify();
UPDATE vms.sip_upstream SET options = options - 'media_nets' WHERE name = 'city';

-- the answers: 46 channels in pages of 20 (20, 20, 6), each page with SumNum 46
CREATE TEMP TABLE page AS
SELECT n, xmlparse(document convert_from(b, 'GB18030')) AS x, b
  FROM vms._sip_upstream_answer('city', 'Catalog', '17', '34020100002000000001') WITH ORDINALITY a(b, n);
SELECT n, (xpath('/Response/SumNum/text()', x))[1]::text AS sum_num,
       (xpath('/Response/DeviceList/@Num', x))[1]::text AS num,
       (xpath('count(/Response/DeviceList/Item)', x))[1]::text AS items,
       (xpath('/Response/SN/text()', x))[1]::text AS sn,
       (xpath('/Response/DeviceList/Item[1]/DeviceID/text()', x))[1]::text AS first
  FROM page ORDER BY n;
-- every shared channel once, by the code the upper platform knows; the ledger codes of mapped ones never
SELECT count(*) AS items, count(DISTINCT id) AS distinct_ids,
       count(*) FILTER (WHERE id = '34010000001320000099') AS mapped,
       count(*) FILTER (WHERE id = '34020100001320000002') AS mapped_ledger_code,
       count(*) FILTER (WHERE id LIKE '340202%') AS other_region
  FROM page, unnest(xpath('/Response/DeviceList/Item/DeviceID/text()', x)::text[]) id;
SELECT (xpath('/Response/DeviceList/Item[DeviceID="34010000001320000099"]/Name/text()', x))[1]::text AS name,
       (xpath('/Response/DeviceList/Item[DeviceID="34010000001320000099"]/Address/text()', x))[1]::text AS address,
       (xpath('/Response/DeviceList/Item[DeviceID="34010000001320000099"]/Status/text()', x))[1]::text AS status,
       (xpath('/Response/DeviceList/Item[DeviceID="34020100001320000003"]/Status/text()', x))[1]::text AS status_3,
       (xpath('/Response/DeviceList/Item[DeviceID="34010000001320000099"]/ParentID/text()', x))[1]::text AS parent
  FROM page WHERE n = 1;
-- GB2312 as asked: the body is GB18030 bytes, not UTF-8
SELECT position(convert_to('通道', 'GB18030') IN b) > 0 AS gb_bytes, position(convert_to('通道', 'UTF8') IN b) > 0 AS utf8_bytes
  FROM page WHERE n = 2;
-- one code: a shared one answers for itself; a ledger code that is mapped, or a code out of the scope, says nothing
SELECT c, count(*) AS pages,
       string_agg((xpath('/Response/SumNum/text()', xmlparse(document convert_from(b, 'GB18030'))))[1]::text, ',') AS sum_num,
       sum((xpath('count(/Response/DeviceList/Item)', xmlparse(document convert_from(b, 'GB18030'))))[1]::text::integer) AS items
  FROM unnest(ARRAY['34010000001320000099', '34020100001320000002', '34020200001320000002', '99999999999999999999']) c,
       vms._sip_upstream_answer('city', 'Catalog', '18', c) b
 GROUP BY c ORDER BY c;
SELECT (xpath('/Response/Channel/text()', x))[1]::text AS channels, (xpath('/Response/Result/text()', x))[1]::text AS result
  FROM vms._sip_upstream_answer('city', 'DeviceInfo', '19', '34020100002000000001') b,
       xmlparse(document convert_from(b, 'GB18030')) x;
SELECT c, (xpath('/Response/Result/text()', x))[1]::text AS result, (xpath('/Response/Online/text()', x))[1]::text AS online,
       (xpath('count(/Response/*)', x))[1]::text AS elements
  FROM unnest(ARRAY['34020100002000000001', '34010000001320000099', '34020100001320000003', '34020200001320000002']) c,
       vms._sip_upstream_answer('city', 'DeviceStatus', '20', c) b, xmlparse(document convert_from(b, 'GB18030')) x
 ORDER BY c;
-- nothing for an unknown command, a bad SN or an unknown upstream
SELECT count(*) FROM vms._sip_upstream_answer('city', 'RecordInfo', '21', '34020100002000000001');
SELECT count(*) FROM vms._sip_upstream_answer('city', 'Catalog', '1 or 1', '34020100002000000001');
SELECT count(*) FROM vms._sip_upstream_answer('town', 'Catalog', '21', '34020100002000000001');
-- UTF-8 when asked
SELECT vms.sip_alter_upstream('city', options => '{"charset": "UTF-8"}');
SELECT convert_from(b, 'UTF8') LIKE '<?xml version="1.0" encoding="UTF-8"?>%' AS utf8, position(convert_to('通道', 'UTF8') IN b) > 0 AS utf8_bytes
  FROM vms._sip_upstream_answer('city', 'Catalog', '22', '34020100002000000001') b LIMIT 1;

-- a Catalog subscription: what changed since the upper platform was last told, as NOTIFY events
SELECT vms.sip_alter_upstream('city', options => '{"charset": "GB2312", "catalog_page_size": 3}');
SELECT count(*) AS bodies FROM vms._sip_upstream_changes('city', '30', baseline => true);
SELECT count(*) AS told FROM vms.sip_share_told;
SELECT count(*) AS nothing_changed FROM vms._sip_upstream_changes('city', '31');
UPDATE vms.channel SET online = false WHERE code = '34020100001320000010';
UPDATE vms.channel SET online = true WHERE code = '34020100001320000013';
UPDATE vms.channel SET address = 'Gate <2>' WHERE code = '34020100001320000011';
INSERT INTO vms.channel (code, device_code, name, civil_code) VALUES ('34020100001320000046', '34020100001180000001', '新增', '340201');
SELECT vms.sip_share('city', '{"regions": ["340201"]}') AS shared;
SELECT vms.sip_share_map('city', '34020100001320000012', '34010000001320000098');
CREATE TEMP TABLE note AS
SELECT n, xmlparse(document convert_from(b, 'GB18030')) AS x FROM vms._sip_upstream_changes('city', '32') WITH ORDINALITY c(b, n);
SELECT n, (xpath('/Notify/SumNum/text()', x))[1]::text AS sum_num, (xpath('/Notify/DeviceList/@Num', x))[1]::text AS num
  FROM note ORDER BY n;
SELECT (xpath('/Item/DeviceID/text()', i))[1]::text AS code, (xpath('/Item/Event/text()', i))[1]::text AS event,
       (xpath('/Item/Status/text()', i))[1]::text AS status, (xpath('/Item/Address/text()', i))[1]::text AS address
  FROM note, unnest(xpath('/Notify/DeviceList/Item', x)) i ORDER BY 1;
SELECT count(*) AS then_nothing FROM vms._sip_upstream_changes('city', '33');
-- without send_status, ON and OFF are not sent (but recorded as told)
SELECT vms.sip_alter_upstream('city', options => '{"send_status": false}');
UPDATE vms.channel SET online = NOT online WHERE code IN ('34020100001320000010', '34020100001320000013');
UPDATE vms.channel SET name = '改' WHERE code = '34020100001320000014';
SELECT (xpath('/Notify/SumNum/text()', x))[1]::text AS sum_num, (xpath('/Notify/DeviceList/Item/Event/text()', x))::text[] AS events
  FROM vms._sip_upstream_changes('city', '34') b, xmlparse(document convert_from(b, 'GB18030')) x;
SELECT vms.sip_alter_upstream('city', options => '{"send_status": true}');
SELECT count(*) AS still_nothing FROM vms._sip_upstream_changes('city', '35');

-- a channel told DEL is kept as deleted; the periodic full push (whole_share) says every shared channel
-- again (UPDATE with its Status) and DEL once more for it, then forgets it
SELECT vms.sip_alter_upstream('city', options => '{"catalog_page_size": 100, "catalog_push_interval": 0}');
DELETE FROM vms.channel WHERE code = '34020100001320000046';
SELECT (xpath('/Notify/DeviceList/Item/Event/text()', x))::text[] AS events,
       (xpath('/Notify/DeviceList/Item/DeviceID/text()', x))::text[] AS codes
  FROM vms._sip_upstream_changes('city', '36') b, xmlparse(document convert_from(b, 'GB18030')) x;
SELECT code, deleted FROM vms.sip_share_told WHERE deleted;
SELECT count(*) AS nothing_more FROM vms._sip_upstream_changes('city', '37');
UPDATE vms.sip_share_told SET online = NOT online WHERE code = '34020100001320000020';   -- what the upper platform holds drifted
CREATE TEMP TABLE push AS
SELECT xmlparse(document convert_from(b, 'GB18030')) AS x FROM vms._sip_upstream_changes('city', '38', whole_share => true) b;
SELECT count(*) AS bodies, min((xpath('/Notify/SumNum/text()', x))[1]::text) AS sum_num FROM push;
SELECT e AS event, count(*) FROM push, unnest(xpath('/Notify/DeviceList/Item/Event/text()', x)::text[]) e GROUP BY e ORDER BY e;
SELECT (xpath('/Notify/DeviceList/Item[Event="DEL"]/DeviceID/text()', x))::text[] AS del,
       (xpath('/Notify/DeviceList/Item[DeviceID="34020100001320000020"]/Status/text()', x))::text[] AS status_20
  FROM push;
SELECT count(*) FILTER (WHERE deleted) AS tombstones, count(*) AS told FROM vms.sip_share_told;
SELECT count(*) AS after_the_push_nothing FROM vms._sip_upstream_changes('city', '39');

-- alarms of shared channels, forwarded under the presented code; the first call only starts the cursor
SELECT vms.alarm_raise('34020100001320000002', 'motion_detection', 2::smallint, 'manual') > 0 AS raised;
SELECT count(*) AS history FROM vms._sip_upstream_alarms('city', 100);
SELECT vms.alarm_raise('34020100001320000003', 'tamper', 1::smallint, 'manual', '{"description": "被遮挡 <3>"}') > 0 AS raised;
SELECT vms.alarm_raise('34020200001320000002', 'video_loss', 1::smallint, 'manual') > 0 AS raised;
SELECT vms.alarm_raise('34020100001320000004', 'sip_alarm_7_9', 4::smallint, 'manual') > 0 AS raised;
SELECT (xpath('/Notify/SN/text()', x))[1]::text AS sn, (xpath('/Notify/DeviceID/text()', x))[1]::text AS code,
       (xpath('/Notify/AlarmPriority/text()', x))[1]::text AS prio, (xpath('/Notify/AlarmMethod/text()', x))[1]::text AS method,
       (xpath('/Notify/Info/AlarmType/text()', x))[1]::text AS type, (xpath('/Notify/AlarmDescription/text()', x))[1]::text AS descr
  FROM vms._sip_upstream_alarms('city', 100) b, xmlparse(document convert_from(b, 'GB18030')) x;
SELECT count(*) AS again FROM vms._sip_upstream_alarms('city', 200);
-- with an Alarm subscription: only its priorities (1-2) and methods (5, video) go; the cursor passes the others
SELECT vms.alarm_raise('34020100001320000005', 'motion_detection', 1::smallint, 'manual') > 0 AS raised;
SELECT vms.alarm_raise('34020100001320000006', 'video_loss', 1::smallint, 'manual') > 0 AS raised;
SELECT vms.alarm_raise('34020100001320000007', 'tripwire', 3::smallint, 'manual') > 0 AS raised;
SELECT vms.alarm_raise('34020100001320000008', 'intrusion', 2::smallint, 'manual') > 0 AS raised;
SELECT (xpath('/Notify/DeviceID/text()', x))[1]::text AS code, (xpath('/Notify/AlarmPriority/text()', x))[1]::text AS prio,
       (xpath('/Notify/AlarmMethod/text()', x))[1]::text AS method
  FROM vms._sip_upstream_alarms('city', 300, '{"CmdType": "Alarm", "StartAlarmPriority": "1", "EndAlarmPriority": "2", "AlarmMethod": "5"}') b,
       xmlparse(document convert_from(b, 'GB18030')) x;
SELECT count(*) AS passed FROM vms._sip_upstream_alarms('city', 400);
-- priority 0 and method 0 are "all"
SELECT vms.alarm_raise('34020100001320000009', 'video_loss', 4::smallint, 'manual') > 0 AS raised;
SELECT count(*) AS all_of_them
  FROM vms._sip_upstream_alarms('city', 500, '{"StartAlarmPriority": "0", "EndAlarmPriority": "0", "AlarmMethod": "0"}');

-- positions of shared channels (MobilePosition subscription): the latest of each, under its own code or its
-- device's, once; restart: all again
INSERT INTO vms.mobile_position (device_code, at, geom, speed, direction) VALUES
    ('34020100001320000008', '2026-01-01 10:00+00', ST_SetSRID(ST_MakePoint(117.2, 31.9), 4326), 12.5, 90),
    ('34020100001320000008', '2026-01-01 10:01+00', ST_SetSRID(ST_MakePoint(117.3, 31.95), 4326), 13, 91),
    ('34020200001320000004', '2026-01-01 10:01+00', ST_SetSRID(ST_MakePoint(118, 32), 4326), 1, 0);
SELECT (xpath('/Notify/CmdType/text()', x))[1]::text AS cmd, (xpath('/Notify/DeviceID/text()', x))[1]::text AS code,
       (xpath('/Notify/Longitude/text()', x))[1]::text AS lon, (xpath('/Notify/Latitude/text()', x))[1]::text AS lat,
       (xpath('/Notify/Speed/text()', x))[1]::text AS speed, (xpath('/Notify/Direction/text()', x))[1]::text AS dir,
       (xpath('/Notify/SN/text()', x))[1]::text AS sn
  FROM vms._sip_upstream_positions('city', 600) b, xmlparse(document convert_from(b.body, 'GB18030')) x;
SELECT count(*) AS again FROM vms._sip_upstream_positions('city', 700);
INSERT INTO vms.mobile_position (device_code, at, geom) VALUES
    ('34020100001180000001', '2026-01-01 10:02+00', ST_SetSRID(ST_MakePoint(117.4, 31.7), 4326));
SELECT count(*) AS of_the_device, count(DISTINCT (xpath('/Notify/DeviceID/text()', x))[1]::text) AS channels,
       count(*) FILTER (WHERE (xpath('/Notify/DeviceID/text()', x))[1]::text = '34010000001320000099') AS mapped
  FROM vms._sip_upstream_positions('city', 800) b, xmlparse(document convert_from(b.body, 'GB18030')) x;
SELECT count(*) AS restarted FROM vms._sip_upstream_positions('city', 900, restart => true);
-- a change is sent at most once a gap (the subscription's Interval): one sent less than gap seconds ago is held
-- back (a NULL body says when it is due: its last NOTIFY + gap), then the newest goes; a newer report of the
-- same position is no change
INSERT INTO vms.mobile_position (device_code, at, geom, speed, direction) VALUES
    ('34020100001320000008', '2026-01-01 10:05+00', ST_SetSRID(ST_MakePoint(117.31, 31.95), 4326), 13, 91);
SELECT count(b.body) AS sent, count(b.due) AS held,
       bool_and(b.due IS NULL OR b.due = (SELECT t.sent_at + interval '1 hour' FROM vms.sip_share_position_told t
                                           WHERE t.upstream = 'city' AND t.code = '34020100001320000008')) AS due_after_the_gap
  FROM vms._sip_upstream_positions('city', 1000, gap => 3600) b;
INSERT INTO vms.mobile_position (device_code, at, geom, speed, direction) VALUES
    ('34020100001320000008', '2026-01-01 10:06+00', ST_SetSRID(ST_MakePoint(117.32, 31.95), 4326), 13, 91);
SELECT (xpath('/Notify/Longitude/text()', x))[1]::text AS newest_lon, count(*) OVER () AS sent
  FROM vms._sip_upstream_positions('city', 1100, gap => 0) b, xmlparse(document convert_from(b.body, 'GB18030')) x;
INSERT INTO vms.mobile_position (device_code, at, geom, speed, direction) VALUES
    ('34020100001320000008', '2026-01-01 10:07+00', ST_SetSRID(ST_MakePoint(117.32, 31.95), 4326), 13, 91);
SELECT count(*) AS same_position_sent FROM vms._sip_upstream_positions('city', 1200, gap => 0);
SELECT at = '2026-01-01 10:07+00' AS looked_at_the_newest FROM vms.sip_share_position_told
 WHERE upstream = 'city' AND code = '34020100001320000008';

-- a control or query of the upper platform for a channel: relayed only for a code it is shared, and only
-- controls of the channel (not TeleBoot); RecordInfo and PresetQuery; the refusal's answer; every one audited.
-- The worker passes the root and the CmdType it read (the first) and the body as json, as libxml2 parsed it
-- (a duplicated element stays a duplicated key, comments are gone, CDATA is text): the decision is taken on
-- the worker's CmdType, a body that names an element twice at the top or nests a CmdType, SN or DeviceID is
-- refused, and the device gets only the listed elements, rebuilt (escaped), never the body as it came
SELECT n, c AS code, cmd, x.channel, x.device, x.refusal,
       (xpath('/Response/Result/text()', xmlparse(document convert_from(x.answer, 'GB18030'))))[1]::text AS result,
       (xpath('/Response/SumNum/text()', xmlparse(document convert_from(x.answer, 'GB18030'))))[1]::text AS sum_num,
       replace(x.body, E'\r\n', ' ') AS body
  FROM (VALUES (1, '34010000001320000098', 'Control', 'DeviceControl', '{"CmdType": "DeviceControl", "PTZCmd": "A50F0102800000B7"}'::json),
               (2, '34010000001320000098', 'Control', 'DeviceControl', '{"CmdType": "DeviceControl", "TeleBoot": "Boot"}'),
               (3, '34020100001320000012', 'Control', 'DeviceControl', '{"CmdType": "DeviceControl", "PTZCmd": "A50F0102800000B7"}'),
               (4, '34020200001320000002', 'Query', 'RecordInfo', '{"CmdType": "RecordInfo", "StartTime": "2026-01-01T00:00:00"}'),
               (5, '34010000001320000098', 'Query', 'RecordInfo', '{"CmdType": "RecordInfo", "SN": "41", "DeviceID": "34010000001320000098", '
                    '"StartTime": "2026-01-01T00:00:00", "EndTime": "2026-01-01T06:00:00", "Secrecy": "0", "Type": "all", '
                    '"FilePath": "]]><TeleBoot>Boot</TeleBoot><!-- & more"}'),
               (6, '34010000001320000098', 'Query', 'PresetQuery', '{"CmdType": "PresetQuery"}'),
               (7, '34010000001320000098', 'Query', 'Catalog', '{"CmdType": "Catalog"}'),
               -- the worker read DeviceControl (its first CmdType); jsonb would have kept the last, RecordInfo
               (8, '34010000001320000098', 'Control', 'DeviceControl',
                   '{"CmdType": "DeviceControl", "SN": "41", "DeviceID": "34010000001320000098", "TeleBoot": "Boot", "CmdType": "RecordInfo"}'),
               (9, '34010000001320000098', 'Control', 'DeviceControl', '{"CmdType": "RecordInfo", "TeleBoot": "Boot"}'),
               (10, '34010000001320000098', 'Control', 'DeviceControl',
                    '{"CmdType": "DeviceControl", "PTZCmd": "A50F0102800000B7", "PTZCmd": "A50F0100000000B5"}'),
               -- a second DeviceID, at the top or nested, naming a channel not shared
               (11, '34010000001320000098', 'Query', 'RecordInfo',
                    '{"CmdType": "RecordInfo", "DeviceID": "34010000001320000098", "DeviceID": "34020200001320000002"}'),
               (12, '34010000001320000098', 'Query', 'RecordInfo',
                    '{"CmdType": "RecordInfo", "StartTime": "2026-01-01T00:00:00", "Info": {"DeviceID": "34020200001320000002"}}'),
               -- TeleBoot nested under an allowed element; FormatSDCard, DeviceUpgrade
               (13, '34010000001320000098', 'Control', 'DeviceControl',
                    '{"CmdType": "DeviceControl", "PTZCmd": "A50F0102800000B7", "Info": {"ControlPriority": "5", "TeleBoot": "Boot"}}'),
               (14, '34010000001320000098', 'Control', 'DeviceControl', '{"CmdType": "DeviceControl", "FormatSDCard": "1"}'),
               (15, '34010000001320000098', 'Control', 'DeviceControl', '{"CmdType": "DeviceControl", "DeviceUpgrade": {"Firmware": "x"}}'),
               -- markup that was CDATA or an escaped value: refused where it is not of its form, else escaped
               (16, '34010000001320000098', 'Control', 'DeviceControl', '{"CmdType": "DeviceControl", "PTZCmd": "</PTZCmd><TeleBoot>Boot</TeleBoot>"}'),
               (17, '34010000001320000098', 'Control', 'DeviceControl', '{"CmdType": "DeviceControl", "Info": ["Boot"]}'),
               (18, '34010000001320000098', 'Control', 'DeviceControl',
                    '{"CmdType": "DeviceControl", "PTZPreciseCtrl": {"Pan": "10.5", "Tilt": "-3", "Zoom": "2"}, "Info": {"ControlPriority": "5"}}'),
               (19, '34010000001320000098', 'Control', 'DeviceControl', '{"CmdType": "DeviceControl", "HomePosition": {"Enabled": "1", "Enabled": "0"}}'))
       v(n, c, root, cmd, r),
       vms._sip_upstream_control('city', c, '41', root, cmd, r, '10.0.0.1:5070') x
 ORDER BY n;
SELECT count(*) AS bad_sn FROM vms._sip_upstream_control('city', '34010000001320000098', '4 1', 'Query', 'PresetQuery', '{}', '10.0.0.1:5070');
SELECT detail ->> 'code' AS code, detail ->> 'cmd' AS cmd, detail ->> 'result' AS result
  FROM vms.audit_log WHERE action = 'sip_upstream_control' ORDER BY seq;

-- a virtual-organisation / business-group tree presented upward (catalog_tree): the catalogue nodes above
-- the shared channels come first (a business group under vms's id, a virtual organisation under its
-- parent or business group), each channel under its node with the node's business group; a node with
-- no shared channel under it is not presented
INSERT INTO vms.catalog_node (code, name) VALUES ('34020100002150000001', '治安');
INSERT INTO vms.catalog_node (code, name, business_group) VALUES ('34020100002160000001', '东区', '34020100002150000001');
INSERT INTO vms.catalog_node (code, name, parent_code, business_group)
VALUES ('34020100002160000002', '东区一街', '34020100002160000001', '34020100002150000001');
INSERT INTO vms.catalog_node (code, name) VALUES ('34020100002160000009', '无关');
INSERT INTO vms.catalog_member (node_code, channel_code)
VALUES ('34020100002160000002', '34020100001320000030'), ('34020100002160000009', '34020200001320000005');
SELECT count(*) AS flat_nodes FROM vms._sip_upstream_items('city', NULL) WHERE is_node;
SELECT count(*) AS flat_changes FROM vms._sip_upstream_changes('city', '59');
SELECT vms.sip_alter_upstream('city', options => '{"catalog_tree": true, "catalog_page_size": 100}');
SELECT (xpath('/Response/SumNum/text()', d))[1]::text AS sum_num, i.n, (xpath('/Item/DeviceID/text()', i.x))[1]::text AS code,
       (xpath('/Item/Name/text()', i.x))[1]::text AS name, (xpath('/Item/ParentID/text()', i.x))[1]::text AS parent,
       (xpath('/Item/BusinessGroupID/text()', i.x))[1]::text AS business_group,
       (xpath('/Item/Status/text()', i.x))[1]::text AS status
  FROM vms._sip_upstream_answer('city', 'Catalog', '60', '34020100002000000001') b,
       xmlparse(document convert_from(b, 'GB18030')) d,
       unnest(xpath('/Response/DeviceList/Item', d)) WITH ORDINALITY i(x, n)
 WHERE i.n <= 4 OR (xpath('/Item/DeviceID/text()', i.x))[1]::text = '34020100001320000030'
 ORDER BY i.n;
SELECT (xpath('/Response/Channel/text()', x))[1]::text AS channels
  FROM vms._sip_upstream_answer('city', 'DeviceInfo', '61', '34020100002000000001') b, xmlparse(document convert_from(b, 'GB18030')) x;
-- to a subscription: the nodes are ADDed and the channel that moved under one is an UPDATE
SELECT (xpath('/Item/DeviceID/text()', i))[1]::text AS code, (xpath('/Item/Event/text()', i))[1]::text AS event
  FROM vms._sip_upstream_changes('city', '62') b, xmlparse(document convert_from(b, 'GB18030')) x,
       unnest(xpath('/Notify/DeviceList/Item', x)) i;
SELECT vms.sip_alter_upstream('city', options => '{"catalog_tree": false}');
SELECT (xpath('/Item/DeviceID/text()', i))[1]::text AS code, (xpath('/Item/Event/text()', i))[1]::text AS event
  FROM vms._sip_upstream_changes('city', '63') b, xmlparse(document convert_from(b, 'GB18030')) x,
       unnest(xpath('/Notify/DeviceList/Item', x)) i;

-- the registration state machine: transitions are events; others are refused with a warning
SET client_min_messages = warning;
SELECT vms._sip_upstream_flush('[{"u": "city", "st": "registering", "at": 1700000000, "c": "start"},
                                 {"u": "town", "st": "registering", "at": 1700000000}]');
SELECT * FROM vms._sip_take_share_changes() AS taken_unregistered;
SELECT vms._sip_upstream_flush('[{"u": "city", "st": "registered", "at": 1700000001, "c": "200 OK", "ra": 1700000001,
                                  "ex": 1700003601, "ka": 1700000001, "ls": 200,
                                  "sb": {"Alarm": {"expires_at": 1700000601, "filter": {"CmdType": "Alarm", "StartAlarmPriority": "1"}}}}]');
SELECT subscriptions FROM vms.sip_upstream_status;
-- while an upstream is registered, a statement changing a channel (shared or not: the worker compares) or a
-- share queues a wake for the worker
UPDATE vms.channel SET name = name || '.' WHERE code = '34020100001320000001';
UPDATE vms.channel SET name = name || '.' WHERE code = '34020200001320000001';
SELECT vms.sip_share('city', '{"regions": ["340201"]}') AS shared;
-- a position reported while no upstream subscribes to positions queues nothing
INSERT INTO vms.mobile_position (device_code, at, geom) VALUES
    ('34020100001320000009', '2026-01-01 11:00+00', ST_SetSRID(ST_MakePoint(117.5, 31.5), 4326)),
    ('34020100001320000001', '2026-01-01 11:00+00', ST_SetSRID(ST_MakePoint(117.1, 31.1), 4326));
SELECT source, count(*) FROM vms.sip_share_change GROUP BY source ORDER BY source;
SELECT count(*) AS codes_queued FROM vms.sip_position_change;
SELECT * FROM vms._sip_take_share_changes() AS taken;
SELECT count(*) AS left FROM vms.sip_share_change;
-- with a MobilePosition subscription, each statement reporting positions queues a wake
SELECT vms._sip_upstream_flush('[{"u": "city", "st": "registered", "at": 1700000001, "ra": 1700000001, "ex": 1700003601,
                                  "sb": {"MobilePosition": {"expires_at": 1700000601, "interval": 5}}}]');
INSERT INTO vms.mobile_position (device_code, at, geom) VALUES
    ('34020100001320000009', '2026-01-01 11:01+00', ST_SetSRID(ST_MakePoint(117.5, 31.5), 4326));
INSERT INTO vms.mobile_position (device_code, at, geom) VALUES
    ('34020100001320000009', '2026-01-01 11:02+00', ST_SetSRID(ST_MakePoint(117.6, 31.5), 4326));
SELECT * FROM vms._sip_take_share_changes() AS taken_positions;
-- the devices reported are queued for the compare, once each however often they reported
SELECT upstream, device_code FROM vms.sip_position_change ORDER BY 1, 2;
-- one wake a transaction, however many statements report in it (the worker's batch reports one a statement);
-- a savepoint rolled back takes its wake with it, so the next statement queues it again
BEGIN;
SAVEPOINT s;
INSERT INTO vms.mobile_position (device_code, at, geom) VALUES
    ('34020100001320000009', '2026-01-01 11:03+00', ST_SetSRID(ST_MakePoint(117.7, 31.5), 4326));
SELECT count(*) AS wakes_in_savepoint FROM vms.sip_share_change;
ROLLBACK TO s;
SELECT count(*) AS wakes_after_rollback FROM vms.sip_share_change;
INSERT INTO vms.mobile_position (device_code, at, geom) VALUES
    ('34020100001320000009', '2026-01-01 11:04+00', ST_SetSRID(ST_MakePoint(117.8, 31.5), 4326));
INSERT INTO vms.mobile_position (device_code, at, geom) VALUES
    ('34020100001320000009', '2026-01-01 11:05+00', ST_SetSRID(ST_MakePoint(117.9, 31.5), 4326));
INSERT INTO vms.mobile_position (device_code, at, geom) VALUES
    ('34020100001320000003', '2026-01-01 11:05+00', ST_SetSRID(ST_MakePoint(117.3, 31.3), 4326));
SELECT count(*) AS wakes_in_transaction FROM vms.sip_share_change;
COMMIT;
SELECT * FROM vms._sip_take_share_changes() AS taken_one_transaction;
SELECT upstream, device_code FROM vms.sip_position_change ORDER BY 1, 2;
-- the mark of that one wake is kept by vms._sip_position_first_wake, not in a setting: a session setting one
-- (as vms.sip_position_woken was, to its transaction id) does not skip its wake
BEGIN;
SELECT set_config('vms.sip_position_woken', pg_current_xact_id()::text, true) IS NOT NULL AS set;
INSERT INTO vms.mobile_position (device_code, at, geom) VALUES
    ('34020100001320000009', '2026-01-01 11:06+00', ST_SetSRID(ST_MakePoint(118.0, 31.5), 4326));
SELECT count(*) AS wakes_despite_setting FROM vms.sip_share_change;
ROLLBACK;
-- a compare on a report looks at the channels of the devices reported since (taking them), not at the whole
-- share: 34020100001320000001's position (reported while nobody subscribed) is not among them
SELECT (xpath('/Notify/DeviceID/text()', x))[1]::text AS code, (xpath('/Notify/Longitude/text()', x))[1]::text AS lon
  FROM vms._sip_upstream_positions('city', 1, false, 0, false) b, xmlparse(document convert_from(b.body, 'GB18030')) x
 WHERE b.body IS NOT NULL ORDER BY 1;
SELECT count(*) AS codes_left FROM vms.sip_position_change;
-- the periodic compare looks at the whole share
SELECT (xpath('/Notify/DeviceID/text()', x))[1]::text AS code, (xpath('/Notify/Longitude/text()', x))[1]::text AS lon
  FROM vms._sip_upstream_positions('city', 1, false, 0, true) b, xmlparse(document convert_from(b.body, 'GB18030')) x
 WHERE b.body IS NOT NULL ORDER BY 1;
-- a device's answer to a relayed query goes up only under the code the upper platform knows that channel by now
SELECT count(*) AS mapped FROM vms._sip_upstream_control_answer('city', '34010000001320000099', '34020100001320000002', '7',
    'PresetQuery', '{"CmdType": "PresetQuery", "SumNum": "1", "PresetList": [{"PresetID": "1", "PresetName": "a"}]}');
SELECT count(*) AS ledger_code FROM vms._sip_upstream_control_answer('city', '34020100001320000002', '34020100001320000002', '7',
    'PresetQuery', '{"CmdType": "PresetQuery", "SumNum": "1", "PresetList": [{"PresetID": "1", "PresetName": "a"}]}');
SELECT count(*) AS other_channel FROM vms._sip_upstream_control_answer('city', '34010000001320000099', '34020100001320000001', '7',
    'DeviceControl', '{"CmdType": "DeviceControl", "Result": "OK"}');
SELECT count(*) AS other_upstream FROM vms._sip_upstream_control_answer('town', '34010000001320000099', '34020100001320000002', '7',
    'DeviceControl', '{"CmdType": "DeviceControl", "Result": "OK"}');
-- a long answer goes in pages of at most 8,000 bytes (as the catalog's), each with the whole answer's SumNum and its
-- own Num; every item is on one page, in order
WITH a AS (
    SELECT json_build_object('CmdType', 'RecordInfo', 'SumNum', '300', 'RecordList',
               json_agg(json_build_object('FilePath', 'r' || i, 'StartTime', '2026-01-01T00:00:00',
                                          'EndTime', '2026-01-01T00:00:01') ORDER BY i)) AS answer
      FROM generate_series(1, 300) i
), p AS (
    SELECT b, xmlparse(document convert_from(b, 'GB18030')) x, row_number() OVER () AS n
      FROM a, vms._sip_upstream_control_answer('city', '34010000001320000099', '34020100001320000002', '8', 'RecordInfo', a.answer) b
)
SELECT count(*) AS pages, max(octet_length(b)) <= 8000 AS bounded,
       count(DISTINCT (xpath('/Response/SumNum/text()', x))[1]::text) AS sumnums, min((xpath('/Response/SumNum/text()', x))[1]::text) AS sumnum,
       sum(((xpath('/Response/RecordList/@Num', x))[1]::text)::integer) AS nums,
       sum(cardinality(xpath('/Response/RecordList/Item', x))) AS items,
       string_agg(array_to_string(xpath('/Response/RecordList/Item/FilePath/text()', x)::text[], ','), ',' ORDER BY n)
         = (SELECT string_agg('r' || i, ',' ORDER BY i) FROM generate_series(1, 300) i) AS in_order
  FROM p;
SELECT vms._sip_upstream_flush('[{"u": "city", "st": "unregistered", "at": 1700000002, "c": "nonsense"}]');
SELECT vms._sip_upstream_flush('[{"u": "city", "st": "failing", "at": 1700000003, "c": "3 keepalives missed", "mk": 3,
                                  "f": 1, "ls": 408, "le": "no answer", "na": 1700000008}]');
SELECT upstream, from_state, to_state, cause, extract(epoch FROM at) AS at FROM vms.sip_upstream_event ORDER BY id;
SELECT state, extract(epoch FROM since) AS since, registered_at, expires_at, missed_keepalives, failures, last_status,
       last_error, extract(epoch FROM next_attempt_at) AS next_attempt_at
  FROM vms.sip_upstream_state;

-- dropping takes state, events, share and codes with it
SELECT vms.sip_drop_upstream('city');
SELECT (SELECT count(*) FROM vms.sip_upstream_state) AS states, (SELECT count(*) FROM vms.sip_upstream_event) AS events,
       (SELECT count(*) FROM vms.sip_share) AS shares, (SELECT count(*) FROM vms.sip_share_code) AS codes;
\set VERBOSITY default
SELECT vms.sip_drop_upstream('city');
