-- Ledger import against same-run baselines (-v rows=N for a smaller file;
-- VMS_BENCH_ROWS in bench.sh):
--  * ledger_import_1m_rows: vms.ledger_import_file of the template file into
--    an empty ledger against plain COPY of the file into an unindexed table;
--  * ledger_first_load: the same import against COPY into a plain table of the
--    same columns followed by CREATE INDEX for the ledger's indexes (the
--    channel table's eight: primary key, device, GiST point, civil code, unit and name,
--    keyword grams GIN, capabilities GIN, point type; on the text columns);
--  * ledger_reimport: a second file, the same rows with 10 % changed (name and
--    azimuth) and 1 % bad (port out of range), imported over the first,
--    against COPY into a staging table then INSERT ... ON CONFLICT DO UPDATE
--    into a table indexed like vms.channel holding the first load;
--  * ledger_first_load_vs_write_floor (informational): the first load against
--    COPY of just the rows it writes, into tables shaped like its own, plus
--    the index builds (below);
--  * ledger_reimport_non_superuser: the first file again, over the second, by
--    a role under row-level security (below).
SET search_path = public, vms;
\if :{?rows}
\else
\set rows 1000000
\endif
\set csv2 :csv '.re'
SELECT setseed(0.5);
CREATE TABLE bench.ledger_src AS
SELECT i, vms.gbcode_make('110105' || lpad((1 + i % 16)::text, 2, '0'), 0, 132, 0, i / 16)::text AS code,
       vms.gbcode_make('110105' || lpad((1 + i % 16)::text, 2, '0'), 0, 118, 0, i / 160)::text AS device_code,
       round((116.40 + random() * 0.18)::numeric, 6) AS lon, round((39.86 + random() * 0.14)::numeric, 6) AS lat
  FROM generate_series(0, :rows - 1) i;
-- v = 1: the first file; v = 2: 10 % changed, 1 % bad (port 70000)
CREATE FUNCTION bench.ledger_csv(v int) RETURNS SETOF text LANGUAGE sql AS $$
    SELECT '监控点编码,监控点名称,设备编码,设备名称,厂商,型号,IP地址,端口,安装地址,行政区划,所属街镇,场所类型,点位类型,分辨率,经度,纬度,坐标系,朝向,视场角,可视距离,安装高度,能力集,管理单位,取流地址,资源目录'
    UNION ALL
    (SELECT concat_ws(',', code,
        '建外街道建国路东向西-' || i || CASE WHEN v = 2 AND i % 10 = 1 THEN '-改' ELSE '' END,
        device_code,
        'NVR-' || (i / 10), '海康威视', 'DS-9632N-I16', '10.' || (i / 65536 % 256) || '.' || (i / 256 % 256) || '.' || (i % 256),
        CASE WHEN v = 2 AND i % 100 = 5 THEN '70000' ELSE '5060' END,
        '北京市朝阳区建国路' || (i % 500) || '号', '110105' || lpad((1 + i % 16)::text, 2, '0'), '建外街道', '道路',
        (ARRAY['枪机', '球机', '抓拍机', '半球'])[1 + i % 4], '400W', lon, lat,
        CASE WHEN i % 7 = 0 THEN 'GCJ02' ELSE 'WGS84' END,
        ((i * 37 + CASE WHEN v = 2 AND i % 10 = 1 THEN 90 ELSE 0 END) % 360), '90', '80', '6',
        CASE WHEN i % 3 = 0 THEN 'face|plate' ELSE '' END, '朝阳分局', 'rtsp://10.0.0.1/ch' || i, '')
      FROM bench.ledger_src ORDER BY i)
$$;
COPY (SELECT bench.ledger_csv(1)) TO :'csv' WITH (FORMAT text);
COPY (SELECT bench.ledger_csv(2)) TO :'csv2' WITH (FORMAT text);

CREATE TABLE bench.plain_copy (code text, name text, device_code text, device_name text, manufacturer text,
    model text, ip_address text, port text, address text, civil_code text, street text, place_type text,
    point_type text, resolution text, longitude text, latitude text, coord_system text, azimuth text,
    fov_angle text, fov_range_m text, install_height_m text, capabilities text, unit text, stream_url text,
    catalog text);
CREATE TABLE bench.staging (LIKE bench.plain_copy);
CHECKPOINT;
SELECT bench.time_ms(format('COPY bench.plain_copy FROM %L WITH (FORMAT csv, HEADER)', :'csv')) AS copy_ms \gset
-- first-load baseline: the same nine indexes built after the COPY
SELECT :copy_ms + bench.time_ms($q$
    ALTER TABLE bench.plain_copy ADD PRIMARY KEY (code);
    CREATE INDEX ON bench.plain_copy (device_code);
    CREATE INDEX ON bench.plain_copy USING gist (ST_SetSRID(ST_MakePoint(longitude::float8, latitude::float8), 4326));
    CREATE INDEX ON bench.plain_copy (civil_code);
    CREATE INDEX ON bench.plain_copy (unit, md5(name));
    CREATE INDEX ON bench.plain_copy USING gin (vms.text_grams(vms.channel_search_text(name, NULL, address, place_type)));
    CREATE INDEX ON bench.plain_copy USING gin (string_to_array(capabilities, '|'));
    CREATE INDEX ON bench.plain_copy (point_type) $q$) AS first_base_ms \gset
CHECKPOINT;
SELECT bench.time_ms(format('SELECT vms.ledger_import_file(%L)', :'csv')) AS import_ms \gset
SELECT CASE WHEN (SELECT count(*) FROM vms.channel) = :rows THEN 'ok' ELSE 'BENCH import_row_count_mismatch 0 rows baseline=0 ratio=0 target=' || :rows END;
SELECT bench.line('ledger_import_1m_rows', :import_ms / 1000, 's', :copy_ms / 1000, '<=2.0');
SELECT bench.line('ledger_import_rows_per_s', :rows / (:import_ms / 1000), 'rows/s', :rows / (:copy_ms / 1000), '>=0.5');
SELECT bench.line('ledger_first_load', :import_ms / 1000, 's', :first_base_ms / 1000, '<=1.5');

-- The write floor of a first load (informational): what the import writes,
-- at COPY's batched speed and with nothing else to do.  The channel rows the
-- import made go into a table shaped like vms.channel (its constraints and
-- generated column, the primary key kept during the load as the import keeps
-- it), their history rows into a table shaped and indexed like
-- vms.ledger_history, then the channel's seven other indexes are built.  The
-- ratio is what reading, checking, devices, map cells and the executor add on
-- top of the bytes; the gap between this baseline and ledger_first_load's is
-- the data the ledger keeps beyond the file (wider typed rows, a 600-byte
-- history row per channel).
\set floor_ch :csv '.floor_ch'
\set floor_h :csv '.floor_h'
COPY vms.channel TO :'floor_ch' WITH (FORMAT binary);
COPY (SELECT * FROM vms.ledger_history WHERE table_name = 'channel' AND op = 'INSERT') TO :'floor_h' WITH (FORMAT binary);
CREATE TABLE bench.floor_channel (LIKE vms.channel INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED);
ALTER TABLE bench.floor_channel ADD PRIMARY KEY (code);
CREATE TABLE bench.floor_history (LIKE vms.ledger_history INCLUDING ALL);
CHECKPOINT;
SELECT bench.time_ms(format($q$
    COPY bench.floor_channel FROM %L WITH (FORMAT binary);
    COPY bench.floor_history FROM %L WITH (FORMAT binary);
    CREATE INDEX ON bench.floor_channel (device_code);
    CREATE INDEX ON bench.floor_channel USING gist (geom);
    CREATE INDEX ON bench.floor_channel (civil_code);
    CREATE INDEX ON bench.floor_channel (unit_id, md5(name));
    CREATE INDEX ON bench.floor_channel USING gin (vms.text_grams(vms.channel_search_text(name, alias, address, place_type)));
    CREATE INDEX ON bench.floor_channel USING gin (capabilities);
    CREATE INDEX ON bench.floor_channel (point_type) $q$, :'floor_ch', :'floor_h')) AS floor_ms \gset
SELECT CASE WHEN (SELECT count(*) FROM bench.floor_channel) = :rows AND (SELECT count(*) FROM bench.floor_history) = :rows
            THEN 'ok' ELSE 'BENCH first_load_floor_row_count_mismatch 0 rows baseline=0 ratio=0 target=' || :rows END;
SELECT bench.line('ledger_first_load_vs_write_floor', :import_ms / 1000, 's', :floor_ms / 1000, 'none');
DROP TABLE bench.floor_channel, bench.floor_history;
\setenv floor_ch :floor_ch
\setenv floor_h :floor_h
\! rm -f "$floor_ch" "$floor_h"

-- re-import baseline: a table indexed like vms.channel holding the first load
CREATE TABLE bench.base_channel (LIKE vms.channel INCLUDING ALL);
INSERT INTO bench.base_channel (code, device_code, name, alias, address, civil_code, street, place_type, point_type,
        resolution, azimuth, fov_angle, fov_range_m, install_height_m, capabilities, unit_id, stream_url, geom,
        coord_source, online, status_changed_at, overridden, created_at, updated_at)
SELECT code, device_code, name, alias, address, civil_code, street, place_type, point_type,
       resolution, azimuth, fov_angle, fov_range_m, install_height_m, capabilities, unit_id, stream_url, geom,
       coord_source, online, status_changed_at, overridden, created_at, updated_at FROM vms.channel;
SELECT CASE WHEN (SELECT count(*) FROM pg_index WHERE indrelid = 'bench.base_channel'::regclass)
              = (SELECT count(*) FROM pg_index WHERE indrelid = 'vms.channel'::regclass)
            THEN 'ok' ELSE 'BENCH reimport_baseline_index_mismatch 0 indexes baseline=0 ratio=0 target=same' END;
VACUUM ANALYZE bench.base_channel;
VACUUM ANALYZE vms.channel;
CHECKPOINT;
-- the re-import baseline of a file: COPY into the staging table, then the
-- upsert into the indexed table
CREATE FUNCTION bench.reimport_baseline(path text) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    TRUNCATE bench.staging;
    EXECUTE format($q$
    COPY bench.staging FROM %L WITH (FORMAT csv, HEADER);
    INSERT INTO bench.base_channel AS c (code, device_code, name, address, civil_code, street, place_type,
            point_type, resolution, azimuth, fov_angle, fov_range_m, install_height_m, capabilities, unit_id,
            stream_url, geom, coord_source)
    SELECT s.code::vms.gbcode, s.device_code::vms.gbcode, s.name, s.address, s.civil_code, s.street, s.place_type,
           p.code, s.resolution, s.azimuth::real, s.fov_angle::real, s.fov_range_m::real, s.install_height_m::real,
           coalesce(string_to_array(nullif(s.capabilities, ''), '|'), '{}'), u.id, s.stream_url,
           ST_SetSRID(ST_MakePoint(s.longitude::float8, s.latitude::float8), 4326), s.coord_system
      FROM bench.staging s
      LEFT JOIN vms.point_type p ON p.name_zh = s.point_type
      LEFT JOIN vms.org_unit u ON u.name = s.unit
     WHERE s.port::int BETWEEN 1 AND 65535
    ON CONFLICT (code) DO UPDATE SET device_code = EXCLUDED.device_code, name = EXCLUDED.name,
        address = EXCLUDED.address, civil_code = EXCLUDED.civil_code, street = EXCLUDED.street,
        place_type = EXCLUDED.place_type, point_type = EXCLUDED.point_type, resolution = EXCLUDED.resolution,
        azimuth = EXCLUDED.azimuth, fov_angle = EXCLUDED.fov_angle, fov_range_m = EXCLUDED.fov_range_m,
        install_height_m = EXCLUDED.install_height_m, capabilities = EXCLUDED.capabilities,
        unit_id = EXCLUDED.unit_id, stream_url = EXCLUDED.stream_url, geom = EXCLUDED.geom,
        coord_source = EXCLUDED.coord_source $q$, path);
END $f$;
SELECT bench.time_ms(format('SELECT bench.reimport_baseline(%L)', :'csv2')) AS rebase_ms \gset
SELECT count(*) AS hist0 FROM vms.ledger_history WHERE table_name = 'channel' AND op = 'UPDATE' \gset
SELECT bench.time_ms(format('SELECT vms.ledger_import_file(%L)', :'csv2')) AS reimport_ms \gset
-- the import did its job: 1 % rejected, history for the changed 10 % (less the bad) only
SELECT CASE WHEN j.rejected_rows = (SELECT count(*) FROM bench.ledger_src WHERE i % 100 = 5)
             AND (SELECT count(*) FROM vms.ledger_history WHERE table_name = 'channel' AND op = 'UPDATE') - :hist0
               = (SELECT count(*) FROM bench.ledger_src WHERE i % 10 = 1)
            THEN 'ok' ELSE 'BENCH reimport_result_mismatch 0 rows baseline=0 ratio=0 target=same' END
  FROM vms.import_job j ORDER BY j.id DESC LIMIT 1;
SELECT bench.line('ledger_reimport', :reimport_ms / 1000, 's', :rebase_ms / 1000, '<=1.5');

-- the same as a non-superuser (issue 20: no row-by-row policy checks): a
-- role with manage_ledger over the city's region imports the first file
-- again, which changes back the 10 % the second file changed (its bad rows
-- never loaded); against the same baseline for that file
CREATE ROLE bench_writer;
GRANT USAGE ON SCHEMA vms, bench TO bench_writer;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA bench TO bench_writer;
GRANT SELECT, INSERT, UPDATE ON vms.channel, vms.device, vms.org_unit, vms.catalog_member, vms.import_job,
    vms.import_rejection TO bench_writer;
GRANT SELECT ON vms.point_type, vms.catalog_node, vms.ledger_template_column TO bench_writer;
GRANT pg_read_server_files TO bench_writer;
INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level)
VALUES ('bench_writer', 'region', '110105', '{manage_ledger,view_live}', 4);
VACUUM ANALYZE bench.base_channel;
VACUUM ANALYZE vms.channel;
CHECKPOINT;
SELECT bench.time_ms(format('SELECT bench.reimport_baseline(%L)', :'csv')) AS rebase1_ms \gset
SELECT count(*) AS hist1 FROM vms.ledger_history WHERE table_name = 'channel' AND op = 'UPDATE' \gset
CHECKPOINT;
SET SESSION AUTHORIZATION bench_writer;
SELECT bench.time_ms(format('SELECT vms.ledger_import_file(%L)', :'csv')) AS writer_ms \gset
RESET SESSION AUTHORIZATION;
SELECT CASE WHEN j.rejected_rows = 0 AND j.imported_by = 'bench_writer'
             AND (SELECT count(*) FROM vms.ledger_history WHERE table_name = 'channel' AND op = 'UPDATE') - :hist1
               = (SELECT count(*) FROM bench.ledger_src WHERE i % 10 = 1)
            THEN 'ok' ELSE 'BENCH reimport_writer_result_mismatch 0 rows baseline=0 ratio=0 target=same' END
  FROM vms.import_job j ORDER BY j.id DESC LIMIT 1;
SELECT bench.line('ledger_reimport_non_superuser', :writer_ms / 1000, 's', :rebase1_ms / 1000, '<=1.5');
