-- Demo: push vehicle-violation captures (车辆违法抓拍) from the district's
-- checkpoints to the governance chain's view library (a local receiver).
-- psql variables: receiver (base URL)
SET search_path = public, vms;
SELECT setseed(0.1400);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.viid_upstream WHERE name = 'governance-chain') THEN
        PERFORM vms.viid_add_upstream('governance-chain', current_setting('vms_demo.receiver'), '11010500005030000001',
                                      'admin', 'admin', '{"keepalive_s": 30, "batch_size": 100}');
    END IF;
END $$;

-- a vendor's near-GA/T 1400 format, mapped by a template
INSERT INTO vms.viid_template VALUES ('vendor_capture', 'MotorVehicle', '{
    "rename": {"plate": "PlateNo", "plateColor": "PlateColor", "passTime": "PassTime", "id": "MotorVehicleID",
               "camera": "DeviceID", "tollgate": "TollgateID", "lane": "LaneNo", "image": "StorageUrl1",
               "violation": "IllegalCode"},
    "values": {"PlateColor": {"蓝": "2", "黄": "1", "白": "3", "黑": "4", "绿": "5"}},
    "dates": {"passTime": "YYYY-MM-DD HH24:MI:SS", "PassTime": "YYYY-MM-DD HH24:MI:SS"},
    "defaults": {"InfoKind": 1},
    "required": ["MotorVehicleID", "PlateNo", "PassTime", "DeviceID"]}')
ON CONFLICT (name) DO NOTHING;

SELECT count(vms.viid_enqueue('governance-chain', 'MotorVehicle', jsonb_build_object(
           'id', vms.viid_object_id(vms.viid_image_id(lc.channel_code, 2, at, n), 2, 1),
           'plate', '京' || chr(65 + n % 26) || lpad((n * 7919 % 100000)::text, 5, '0'),
           'plateColor', (ARRAY['蓝', '黄', '绿', '白'])[1 + n % 4],
           'passTime', to_char(at, 'YYYY-MM-DD HH24:MI:SS'),
           'camera', lc.channel_code::text, 'tollgate', lc.checkpoint_code::text, 'lane', lc.lane_no,
           'image', 'http://img.local/' || lc.channel_code || '/' || n || '.jpg',
           'violation', (ARRAY['1345', '1625', '1301', '1352'])[1 + n % 4]), 'vendor_capture'))
  FROM (SELECT lc.*, row_number() OVER () AS rn FROM vms.lane_channel lc) lc,
       generate_series(1, 20) n,
       LATERAL (SELECT timestamp '2026-11-22 08:00:00' + make_interval(secs => n * 97 + lc.rn * 13) AS at) t;

-- wait (at most 30 s) for the worker to deliver
DO $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM vms.viid_outbox WHERE state = 'pending');
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
