-- the ledger: minimal inserts, constraints, catalogue trees, checkpoints and lanes,
\set SHOW_CONTEXT never
-- credentials, reported versus governed values
SET search_path = public, vms;
SET client_min_messages = warning;
-- constraint errors tersely: their detail shows timestamps
\set VERBOSITY terse

INSERT INTO vms.region (civil_code, name) VALUES ('11', '北京市'), ('1101', '市辖区'), ('110105', '朝阳区'), ('11010500', '建外街道');
SELECT civil_code, name, level, parent_code FROM vms.region ORDER BY civil_code;
INSERT INTO vms.region (civil_code, name) VALUES ('110', 'bad');

-- a device and a channel need only code and name (and the channel its device)
INSERT INTO vms.device (code, name) VALUES ('11010500001180000001', '建外NVR-01');
INSERT INTO vms.channel (code, device_code, name) VALUES ('11010500001320000001', '11010500001180000001', '建国门外大街东向西');
SELECT code, device_code, name, online, geom IS NULL AS no_geom, overridden FROM vms.channel;
-- missing name, unknown device, bad code, bad values
INSERT INTO vms.channel (code, device_code) VALUES ('11010500001320000002', '11010500001180000001');
INSERT INTO vms.channel (code, device_code, name) VALUES ('11010500001320000003', '11010500001180000099', 'x');
INSERT INTO vms.channel (code, device_code, name) VALUES ('1101050000132000000', '11010500001180000001', 'x');
INSERT INTO vms.channel (code, device_code, name, azimuth) VALUES ('11010500001320000004', '11010500001180000001', 'x', 360);
INSERT INTO vms.channel (code, device_code, name, point_type) VALUES ('11010500001320000004', '11010500001180000001', 'x', 'tower');
INSERT INTO vms.device (code, name, port) VALUES ('11010500001180000002', 'x', 70000);

-- full attributes
INSERT INTO vms.org_unit (name, civil_code) VALUES ('朝阳分局', '110105');
INSERT INTO vms.channel (code, device_code, name, alias, address, civil_code, street, place_type, point_type,
                         resolution, azimuth, fov_angle, fov_range_m, install_height_m, capabilities, unit_id,
                         stream_url, geom, coord_source)
VALUES ('11010500001320000005', '11010500001180000001', '建外SOHO西门', 'SOHO西', '建国门外大街甲8号', '11010500',
        '建外街道', '商业区', 'dome', '400W', 90, 60, 80, 6.5, '{ptz,face}',
        (SELECT id FROM vms.org_unit WHERE name = '朝阳分局'), 'rtsp://127.0.0.1/live/5',
        vms.to_wgs84(116.4585, 39.9087, 'GCJ02'), 'GCJ02');
SELECT name, point_type, capabilities, round(ST_X(geom)::numeric, 5) AS lon, round(ST_Y(geom)::numeric, 5) AS lat,
       overridden FROM vms.channel WHERE code = '11010500001320000005';

-- catalogue trees: business group (215) at the root, virtual organisations (216) below
INSERT INTO vms.catalog_node (code, name) VALUES ('11010500002150000001', '朝阳区视频专网');
INSERT INTO vms.catalog_node (code, name, parent_code) VALUES
    ('11010500002160000001', '建外街道', '11010500002150000001'),
    ('11010500002160000002', '商务区', '11010500002160000001');
INSERT INTO vms.catalog_node (code, name, parent_code) VALUES ('11010500002150000002', 'nested group', '11010500002150000001');
INSERT INTO vms.catalog_node (code, name) VALUES ('11010500001320000099', 'not a catalogue code');
INSERT INTO vms.catalog_member VALUES ('11010500002160000002', '11010500001320000005');
SELECT n AS subtree_node FROM vms.catalog_subtree('11010500002150000001') n ORDER BY 1;
SELECT count(*) FROM vms.catalog_member m WHERE m.node_code IN (SELECT vms.catalog_subtree('11010500002160000001'));

-- checkpoints: up/down-bound and multi-direction, several lanes per direction
INSERT INTO vms.checkpoint (code, name, direction_mode) VALUES
    ('11010500051210000001', '建国路卡口', 'updown'), ('11010500051210000002', '国贸桥卡口', 'multi');
INSERT INTO vms.lane (checkpoint_code, lane_no, direction) VALUES
    ('11010500051210000001', 1, 'up'), ('11010500051210000001', 2, 'up'),
    ('11010500051210000001', 3, 'down'), ('11010500051210000001', 4, 'down'),
    ('11010500051210000002', 1, 'E2W'), ('11010500051210000002', 2, 'E2W'), ('11010500051210000002', 3, 'S2N');
INSERT INTO vms.lane (checkpoint_code, lane_no, direction) VALUES ('11010500051210000001', 5, 'E2W');
INSERT INTO vms.lane (checkpoint_code, lane_no, direction) VALUES ('11010500051210000002', 4, 'up');
INSERT INTO vms.checkpoint (code, name, direction_mode) VALUES ('11010500051210000003', 'x', 'circular');
INSERT INTO vms.lane_channel VALUES ('11010500051210000001', 1, '11010500001320000005'),
                                    ('11010500051210000001', 2, '11010500001320000005');
INSERT INTO vms.lane_channel VALUES ('11010500051210000001', 9, '11010500001320000005');
SELECT direction, count(*) AS lanes FROM vms.lane WHERE checkpoint_code = '11010500051210000001' GROUP BY 1 ORDER BY 1;

-- credentials: HA1 only
\set VERBOSITY default
SELECT vms.device_set_password('11010500001180000001', 's3cret', '1101050000');
SELECT realm, ha1_md5 = md5('11010500001180000001:1101050000:s3cret') AS md5_ok,
       ha1_sha256 = encode(sha256('11010500001180000001:1101050000:s3cret'), 'hex') AS sha256_ok,
       position('s3cret' IN ha1_md5 || ha1_sha256) = 0 AS no_plain
  FROM vms.device_credential;
SELECT vms.device_set_password('11010500001180000001', 's3cret');
SET vms.sip_id = '11010500002000000001';
SELECT vms.device_set_password('11010500001180000001', 'other');
SELECT realm FROM vms.device_credential;
RESET vms.sip_id;
SELECT vms.device_set_password('11010500001180000001', '', 'r');

-- reported (raw) versus governed values: a person's value wins over a catalog report
SELECT vms.channel_apply_report('11010500001320000006', '11010500001180000001',
       '{"name": "IPC-6", "address": "设备上报地址", "azimuth": 45}');
SELECT name, address, azimuth, overridden FROM vms.channel WHERE code = '11010500001320000006';
UPDATE vms.channel SET name = '建外大街6号杆' WHERE code = '11010500001320000006';
SELECT vms.channel_apply_report('11010500001320000006', '11010500001180000001',
       '{"name": "IPC-6 renamed by device", "address": "新上报地址", "azimuth": 50}');
SELECT name, address, azimuth, overridden FROM vms.channel WHERE code = '11010500001320000006';
SELECT reported ->> 'name' AS reported_name FROM vms.channel_reported WHERE code = '11010500001320000006';
SELECT vms.clear_override('vms.channel', '11010500001320000006', 'name');
SELECT name, overridden FROM vms.channel WHERE code = '11010500001320000006';
SELECT vms.channel_apply_report('11010500001320000006', '11010500001180000001', '{"online": true}');
SELECT vms.channel_apply_report('11010500001320000006', '11010500001180000001', '[1]');
SELECT vms.clear_override('vms.channel', '11010500001320000006', 'online');
SELECT vms.device_apply_report('11010500001180000001', '{"manufacturer": "Hikvision", "model": "DS-9632", "firmware": "V4.1"}');
SELECT name, manufacturer, model, firmware, overridden FROM vms.device WHERE code = '11010500001180000001';
-- a device known only from its report
SELECT vms.device_apply_report('11010500001180000003', '{"name": "NVR-3", "manufacturer": "Dahua"}');
SELECT name, manufacturer, overridden FROM vms.device WHERE code = '11010500001180000003';

-- codes are identities
UPDATE vms.channel SET code = '11010500001320000007' WHERE code = '11010500001320000006';
-- deleting a device removes its channels
DELETE FROM vms.device WHERE code = '11010500001180000003';
SELECT count(*) FROM vms.device;

-- a foreign key to a table whose rows are deleted in bulk (the ledger: mass
-- deletes, the district -> city apply; snapshots and inspection runs:
-- retention) has an index leading with its column, so that each deleted row
-- finds the rows it cascades to (or sets NULL in) without a scan
SELECT k.conrelid::regclass AS referencing, k.conname AS foreign_key_without_index
  FROM pg_constraint k
 WHERE k.contype = 'f' AND k.connamespace = 'vms'::regnamespace
   AND k.confrelid IN ('vms.channel'::regclass, 'vms.device'::regclass, 'vms.snapshot'::regclass,
                       'vms.inspection_run'::regclass, 'vms.recording_check'::regclass)
   AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = k.conrelid AND i.indkey[0] = k.conkey[1])
 ORDER BY 1, 2;
