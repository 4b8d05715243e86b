-- A synthetic district for the demo: Beijing Chaoyang (110105) with sixteen
-- streets, units, catalogue trees, checkpoints, and about 11,000 monitoring
-- points written to a template CSV and loaded through vms.ledger_import_file.
-- Idempotent: a second run upserts the same ledger.
-- psql variables: csv (path the server can write and read)
SET search_path = public, vms;
SELECT setseed(0.28181);

INSERT INTO vms.region (civil_code, name) VALUES ('11', '北京市'), ('1101', '市辖区'), ('110105', '朝阳区')
ON CONFLICT (civil_code) DO NOTHING;

CREATE TEMP TABLE demo_street (n int, civil_code text, name text, road1 text, road2 text, cell geometry);
INSERT INTO demo_street
SELECT n, '110105' || lpad(n::text, 2, '0'), s.name, s.road1, s.road2,
       ST_MakeEnvelope(116.40 + ((n - 1) % 4) * 0.045, 39.86 + ((n - 1) / 4) * 0.035,
                       116.40 + ((n - 1) % 4 + 1) * 0.045, 39.86 + ((n - 1) / 4 + 1) * 0.035, 4326)
  FROM (VALUES (1, '建外街道', '建国路', '东三环中路'), (2, '朝外街道', '朝阳门外大街', '工体东路'),
               (3, '呼家楼街道', '呼家楼路', '金台路'), (4, '八里庄街道', '朝阳路', '八里庄路'),
               (5, '双井街道', '广渠路', '东三环南路'), (6, '劲松街道', '劲松路', '华威路'),
               (7, '潘家园街道', '潘家园路', '华威北路'), (8, '垡头街道', '垡头路', '化工路'),
               (9, '三里屯街道', '三里屯路', '工体北路'), (10, '团结湖街道', '团结湖路', '农展馆南路'),
               (11, '六里屯街道', '甜水园街', '六里屯北路'), (12, '十八里店地区', '十八里店南路', '周庄路'),
               (13, '麦子店街道', '枣营路', '朝阳公园路'), (14, '酒仙桥街道', '酒仙桥路', '万红路'),
               (15, '望京街道', '阜通东大街', '广顺北大街'), (16, '东风地区', '将台路', '东风南路')) s(n, name, road1, road2);

INSERT INTO vms.region (civil_code, name, boundary)
SELECT civil_code, name, ST_Multi(cell) FROM demo_street
ON CONFLICT (civil_code) DO UPDATE SET name = EXCLUDED.name, boundary = EXCLUDED.boundary;

INSERT INTO vms.org_unit (code, name, civil_code) VALUES ('110105000000', '朝阳分局', '110105')
ON CONFLICT (name) DO NOTHING;
INSERT INTO vms.org_unit (code, name, parent_id, civil_code)
SELECT '1101050000' || lpad(n::text, 2, '0'), replace(replace(name, '街道', ''), '地区', '') || '派出所',
       (SELECT id FROM vms.org_unit WHERE name = '朝阳分局'), civil_code
  FROM demo_street
ON CONFLICT (name) DO NOTHING;
INSERT INTO vms.org_unit (code, name, civil_code) VALUES ('110105000100', '朝阳交通支队', '110105'),
                                                         ('110105000200', '朝阳区城市管理委员会', '110105')
ON CONFLICT (name) DO NOTHING;

-- catalogue: the spatial tree (business group → street virtual organisations)
-- and the old project tree kept beside it
INSERT INTO vms.catalog_node (code, name) VALUES
    ('11010500002150000001', '朝阳区视频监控（按行政区划）'),
    ('11010500002150000002', '雪亮工程一期（项目目录）')
ON CONFLICT (code) DO NOTHING;
INSERT INTO vms.catalog_node (code, name, parent_code, civil_code)
SELECT vms.gbcode_make('11010500', 0, 216, 0, n), name, '11010500002150000001', civil_code FROM demo_street
ON CONFLICT (code) DO NOTHING;
INSERT INTO vms.catalog_node (code, name, parent_code) VALUES
    ('11010500002160000101', '重点部位', '11010500002150000002'),
    ('11010500002160000102', '学校周边', '11010500002150000002')
ON CONFLICT (code) DO NOTHING;

-- checkpoints with lanes: half up/down-bound, half multi-direction
INSERT INTO vms.checkpoint (code, name, direction_mode, address, road, civil_code, unit_id, geom)
SELECT vms.gbcode_make(s.civil_code, 5, 121, 0, k), s.road1 || '与' || s.road2 || '交叉口卡口' || k,
       CASE WHEN k % 2 = 0 THEN 'multi' ELSE 'updown' END,
       '北京市朝阳区' || s.road1 || '与' || s.road2 || '交叉口', s.road1, s.civil_code,
       (SELECT id FROM vms.org_unit WHERE name = '朝阳交通支队'),
       ST_PointOnSurface(s.cell)
  FROM demo_street s, generate_series(1, 2) k
ON CONFLICT (code) DO NOTHING;
INSERT INTO vms.lane (checkpoint_code, lane_no, direction)
SELECT c.code, l,
       CASE WHEN c.direction_mode = 'updown' THEN CASE WHEN l <= 2 THEN 'up' ELSE 'down' END
            ELSE (ARRAY['E2W', 'W2E', 'S2N', 'N2S'])[(l - 1) / 2 + 1] END
  FROM vms.checkpoint c, generate_series(1, 4) l
ON CONFLICT DO NOTHING;

-- the ledger template: ~70 NVRs per street with 10 channels each, plus some
-- points with field errors for governance and a few rows the import rejects
CREATE TEMP TABLE demo_csv AS
WITH pts AS (
    SELECT s.*, d, ch,
           vms.gbcode_make(s.civil_code, (ARRAY[0, 1, 4, 8])[1 + (d % 4)], 118, 0, s.n * 1000 + d) AS dev_code,
           vms.gbcode_make(s.civil_code, (ARRAY[0, 1, 4, 8])[1 + (d % 4)], 132, 0, (s.n * 1000 + d) * 10 + ch) AS ch_code,
           random() AS r1, random() AS r2, random() AS r3, random() AS r4
      FROM demo_street s, generate_series(1, 70) d, generate_series(0, 9) ch
)
SELECT ch_code::text AS code,
       CASE WHEN r4 < 0.03 THEN '摄像机' || ch   -- non-standard names for governance to find
            ELSE name || (CASE WHEN d % 2 = 0 THEN road1 ELSE road2 END) || (ARRAY['东向西', '西向东', '南向北', '北向南'])[1 + ch % 4]
                 || '-' || lpad((d * 10 + ch)::text, 3, '0') END AS name,
       dev_code::text AS device_code,
       name || '-NVR-' || lpad(d::text, 2, '0') AS device_name,
       (ARRAY['海康威视', '大华', '宇视', '华为'])[1 + d % 4] AS manufacturer,
       (ARRAY['DS-9632N-I16', 'DH-NVR5864', 'NVR308-64E', 'IVS1800'])[1 + d % 4] AS model,
       '10.' || (5 + n) || '.' || (d / 250) || '.' || (d % 250 + 1) AS ip_address,
       '5060' AS port,
       '北京市朝阳区' || (CASE WHEN d % 2 = 0 THEN road1 ELSE road2 END) || (d * 3 + 1) || '号' AS address,
       civil_code, name AS street,
       (ARRAY['道路', '小区', '学校', '医院', '商圈', '公园', '地铁口', '广场'])[1 + (d + ch) % 8] AS place_type,
       CASE WHEN r3 < 0.02 THEN '' ELSE (ARRAY['枪机', '枪机', '球机', '抓拍机', '半球'])[1 + (d + ch) % 5] END AS point_type,
       (ARRAY['200W', '400W', '400W', '800W'])[1 + ch % 4] AS resolution,
       CASE WHEN r1 < 0.015 THEN ''          -- missing location
            ELSE round((ST_XMin(cell) + 0.002 + r1 * 0.041)::numeric, 6)::text END AS longitude,
       CASE WHEN r1 < 0.015 THEN ''
            ELSE round((ST_YMin(cell) + 0.002 + r2 * 0.031)::numeric, 6)::text END AS latitude,
       CASE WHEN d % 7 = 0 THEN 'GCJ02' ELSE 'WGS84' END AS coord_system,
       CASE WHEN r3 > 0.97 THEN '' ELSE (((d * 37 + ch * 90) % 360))::text END AS azimuth,
       (ARRAY['60', '90', '110', '360'])[1 + (d + ch) % 4] AS fov_angle,
       (ARRAY['50', '80', '120', '200'])[1 + ch % 4] AS fov_range_m,
       (ARRAY['4', '6', '8'])[1 + ch % 3] AS install_height_m,
       CASE (d + ch) % 5 WHEN 2 THEN 'ptz' WHEN 3 THEN 'face|plate' WHEN 4 THEN 'face' ELSE '' END AS capabilities,
       CASE WHEN d % 5 = 0 THEN '朝阳交通支队' ELSE replace(replace(name, '街道', ''), '地区', '') || '派出所' END AS unit,
       'rtsp://127.0.0.1:8554/ch' || ch_code::text AS stream_url,
       vms.gbcode_make('11010500', 0, 216, 0, n)::text
           || CASE WHEN place_type_key = 2 THEN '|11010500002160000102' ELSE '' END AS catalog
  FROM (SELECT pts.*, (d + ch) % 8 AS place_type_key FROM pts) p;

COPY (
    SELECT '监控点编码,监控点名称,设备编码,设备名称,厂商,型号,IP地址,端口,安装地址,行政区划,所属街镇,场所类型,点位类型,分辨率,经度,纬度,坐标系,朝向,视场角,可视距离,安装高度,能力集,管理单位,取流地址,资源目录'
    UNION ALL
    SELECT concat_ws(',', code, name, device_code, device_name, manufacturer, model, ip_address, port, address,
                     civil_code, street, place_type, point_type, resolution, longitude, latitude, coord_system,
                     azimuth, fov_angle, fov_range_m, install_height_m, capabilities, unit, stream_url, catalog)
      FROM demo_csv
    UNION ALL   -- rows a field team typically gets wrong
    SELECT * FROM (VALUES
        ('1101050100132001234X,建国路东向西-999,,,,,,,,,,,,,,,,,,,,,,,'),
        ('11010501001320099999,光华路北向南-998,11010501001180001001,,,,,,,,,,,,116.46,北纬39.91,,,,,,,,,'),
        ('11010501001320099998,光华路南向北-997,11010501001180001001,,,,,,,,,,,,116.46,39.91,,400,,,,,,,'),
        ('11010501001320099997,,11010501001180001001,,,,,,,,,,,,,,,,,,,,,,')) bad(line)
) TO :'csv' WITH (FORMAT text);

SELECT total_rows, loaded_rows, rejected_rows, created_devices, created_units
  FROM vms.ledger_import_file(:'csv');

-- lanes watched by the capture cameras next to each checkpoint
INSERT INTO vms.lane_channel (checkpoint_code, lane_no, channel_code)
SELECT l.checkpoint_code, l.lane_no, c.code
  FROM vms.lane l
  JOIN vms.checkpoint k ON k.code = l.checkpoint_code
  CROSS JOIN LATERAL (SELECT code FROM vms.channel ch
                       WHERE ch.point_type = 'capture' AND ch.geom IS NOT NULL
                       ORDER BY ch.geom <-> k.geom LIMIT 1 OFFSET l.lane_no - 1) c
ON CONFLICT DO NOTHING;
