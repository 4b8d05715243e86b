-- 1,000,000 template rows through vms.ledger_import_file against plain COPY of
-- the same file into an unindexed table of the same columns, in the same run.
SET search_path = public, vms;
SELECT setseed(0.5);
COPY (
    SELECT '监控点编码,监控点名称,设备编码,设备名称,厂商,型号,IP地址,端口,安装地址,行政区划,所属街镇,场所类型,点位类型,分辨率,经度,纬度,坐标系,朝向,视场角,可视距离,安装高度,能力集,管理单位,取流地址,资源目录'
    UNION ALL
    SELECT concat_ws(',',
        vms.gbcode_make('110105' || lpad((1 + i % 16)::text, 2, '0'), 0, 132, 0, i / 16)::text,
        '建外街道建国路东向西-' || i,
        vms.gbcode_make('110105' || lpad((1 + i % 16)::text, 2, '0'), 0, 118, 0, i / 160)::text,
        'NVR-' || (i / 10), '海康威视', 'DS-9632N-I16', '10.' || (i / 65536 % 256) || '.' || (i / 256 % 256) || '.' || (i % 256),
        '5060', '北京市朝阳区建国路' || (i % 500) || '号', '110105' || lpad((1 + i % 16)::text, 2, '0'), '建外街道', '道路',
        (ARRAY['枪机', '球机', '抓拍机', '半球'])[1 + i % 4], '400W',
        round((116.40 + random() * 0.18)::numeric, 6), round((39.86 + random() * 0.14)::numeric, 6),
        CASE WHEN i % 7 = 0 THEN 'GCJ02' ELSE 'WGS84' END, (i * 37 % 360), '90', '80', '6',
        CASE WHEN i % 3 = 0 THEN 'face|plate' ELSE '' END, '朝阳分局', 'rtsp://10.0.0.1/ch' || i, '')
      FROM generate_series(0, 999999) i
) TO :'csv' WITH (FORMAT text);

CREATE TABLE bench.plain_copy (code text, name text, device_code text, device_name text, manufacturer text,
    model text, ip_address text, port text, address text, civil_code text, street text, place_type text,
    point_type text, resolution text, longitude text, latitude text, coord_system text, azimuth text,
    fov_angle text, fov_range_m text, install_height_m text, capabilities text, unit text, stream_url text,
    catalog text);
CHECKPOINT;
SELECT bench.time_ms(format('COPY bench.plain_copy FROM %L WITH (FORMAT csv, HEADER)', :'csv')) AS copy_ms \gset
CHECKPOINT;
SELECT bench.time_ms(format('SELECT vms.ledger_import_file(%L)', :'csv')) AS import_ms \gset
SELECT CASE WHEN (SELECT count(*) FROM vms.channel) = 1000000 THEN 'ok' ELSE 'BENCH import_row_count_mismatch 0 rows baseline=0 ratio=0 target=1000000' END;
SELECT bench.line('ledger_import_1m_rows', :import_ms / 1000, 's', :copy_ms / 1000, '<=2.0');
SELECT bench.line('ledger_import_rows_per_s', 1000000 / (:import_ms / 1000), 'rows/s', 1000000 / (:copy_ms / 1000), '>=0.5');
