-- vms.ledger_check_rows, the import's row check in C (issue 20), gives what
-- the SQL definition it replaced gives, value for value: that definition is
-- kept here as it was (pg_temp.old_check, the statements of
-- vms.ledger_import_rows up to 0.3.0's C check) and both run over tricky
-- records; then the C check's reasons for each record, written by hand.
\set SHOW_CONTEXT never
SET search_path = public, vms;
SET client_min_messages = warning;
INSERT INTO vms.catalog_node (code, name) VALUES ('11010500002150000009', '导入目录');

CREATE FUNCTION pg_temp.old_check(hdr_line bigint, col jsonb, header text[], point_types jsonb)
    RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format($q$
        CREATE TEMP VIEW _ledger_raw AS
        SELECT line_no, error, cardinality(fields) AS nfields, %s
          FROM _ledger_csv WHERE line_no > %s OFFSET 0 $q$,   -- OFFSET 0: extract each field once, not per reference
        (SELECT string_agg(format('nullif(btrim(fields[%s]), '''') AS %I',
                                  coalesce((col ->> t.key)::int, 0), t.key), ', ' ORDER BY t.position)
           FROM vms.ledger_template_column t),
        hdr_line);

    CREATE TEMP TABLE old_checked AS
    SELECT r.*,
           array_remove(ARRAY[
             r.error,
             CASE WHEN r.error IS NULL AND r.nfields <> cardinality(header)
                  THEN format('row has %s fields, the header has %s', r.nfields, cardinality(header)) END,
             CASE WHEN r.error IS NULL AND r.code IS NULL THEN 'code is missing' END,
             CASE WHEN r.code IS NOT NULL THEN 'code: ' || vms.gbcode_parse_error(r.code) END,
             CASE WHEN r.error IS NULL AND r.name IS NULL THEN 'name is missing' END,
             CASE WHEN length(r.name) > 200 THEN 'name is longer than 200 characters' END,
             CASE WHEN r.device_code IS NOT NULL THEN 'device_code: ' || vms.gbcode_parse_error(r.device_code) END,
             CASE WHEN r.ip_address IS NOT NULL AND NOT vms.is_ip(r.ip_address)
                  THEN format('ip_address "%s" is not an IP address', r.ip_address) END,
             CASE WHEN r.port IS NOT NULL AND r.port_i IS NULL
                  THEN format('port "%s" is not in 1-65535', r.port) END,
             CASE WHEN r.civil_code IS NOT NULL AND r.civil_code !~ '^([0-9]{2}){1,4}$'
                  THEN format('civil_code "%s" is not a 2/4/6/8-digit GB/T 2260 code', r.civil_code) END,
             CASE WHEN r.point_type IS NOT NULL AND r.point_type_code IS NULL
                  THEN format('point_type "%s" is unknown', r.point_type) END,
             CASE WHEN r.resolution IS NOT NULL AND r.resolution !~ '^[0-9]{2,4}W$'
                  THEN format('resolution "%s" is not like 200W', r.resolution) END,
             CASE WHEN (r.longitude IS NULL) <> (r.latitude IS NULL)
                  THEN 'longitude and latitude must be given together' END,
             CASE WHEN r.longitude IS NOT NULL AND r.lon_f IS NULL
                  THEN format('longitude "%s" is not a number in [-180, 180]', r.longitude) END,
             CASE WHEN r.latitude IS NOT NULL AND r.lat_f IS NULL
                  THEN format('latitude "%s" is not a number in [-90, 90]', r.latitude) END,
             CASE WHEN r.coord_system IS NOT NULL AND r.crs IS NULL
                  THEN format('coord_system "%s" is not WGS84, CGCS2000, GCJ02 or BD09', r.coord_system) END,
             CASE WHEN r.azimuth IS NOT NULL AND r.azimuth_f IS NULL
                  THEN format('azimuth "%s" is not a number in [0, 360)', r.azimuth) END,
             CASE WHEN r.fov_angle IS NOT NULL AND r.fov_angle_f IS NULL
                  THEN format('fov_angle "%s" is not a number in (0, 360]', r.fov_angle) END,
             CASE WHEN r.fov_range_m IS NOT NULL AND r.fov_range_f IS NULL
                  THEN format('fov_range_m "%s" is not a positive number', r.fov_range_m) END,
             CASE WHEN r.install_height_m IS NOT NULL AND r.height_f IS NULL
                  THEN format('install_height_m "%s" is not a number >= 0', r.install_height_m) END,
             CASE WHEN r.catalog IS NOT NULL AND EXISTS (
                      SELECT 1 FROM unnest(string_to_array(r.catalog, '|')) c
                       WHERE CASE WHEN vms.gbcode_parse_error(btrim(c)) IS NOT NULL THEN true
                                  ELSE NOT EXISTS (SELECT 1 FROM vms.catalog_node n
                                                    WHERE n.code = btrim(c)::vms.gbcode) END)
                  THEN format('catalog "%s" names an unknown catalogue node', r.catalog) END,
             -- vms.channel's channel_stream_url_check (18_inspection.sql): a row, not the import, is refused
             CASE WHEN r.stream_url IS NOT NULL
                       AND NOT (length(r.stream_url) <= 2048
                                AND r.stream_url ~ '^(rtsps?|https?)://[^[:space:][:cntrl:]/?#][^[:space:][:cntrl:]]*$')
                  THEN format('stream_url "%s" is not an rtsp://, rtsps://, http:// or https:// address', r.stream_url) END
           ], NULL) AS reasons,
           -- The channel values the file gives, in the channel's terms: the
           -- one definition both loads take (vms.ledger_first_load and the
           -- upsert below), made in this pass.  ch_overridden lists the
           -- governed attributes the file sets (a later report never
           -- overwrites them).  A rejected row's values are never used.
           CASE WHEN r.capabilities IS NULL THEN '{}'::text[]
                -- the usual list, names between single |, no spaces: the same
                -- array without a regular expression and a subquery a row
                WHEN strpos(r.capabilities, ' ') = 0 AND strpos(r.capabilities, ';') = 0
                     AND strpos(r.capabilities, '；') = 0 AND strpos('|' || r.capabilities || '|', '||') = 0
                THEN string_to_array(r.capabilities, '|')
                ELSE coalesce(ARRAY(SELECT btrim(x) FROM regexp_split_to_table(r.capabilities, '[|;；]') x
                                     WHERE btrim(x) <> ''), '{}') END AS ch_capabilities,
           CASE WHEN r.longitude IS NULL OR r.lon_f IS NULL OR r.lat_f IS NULL OR r.crs IS NULL THEN NULL
                -- vms.coord_convert returns WGS-84 and CGCS2000 points unchanged
                WHEN r.crs IN ('WGS84', 'CGCS2000') THEN ST_SetSRID(ST_MakePoint(r.lon_f, r.lat_f), 4326)
                ELSE (SELECT ST_SetSRID(ST_MakePoint(p[1], p[2]), 4326)
                        FROM vms.coord_convert(r.lon_f, r.lat_f, r.crs, 'WGS84') p) END AS ch_geom,
           CASE WHEN r.longitude IS NOT NULL THEN r.crs END AS ch_coord_source,
           array_remove(ARRAY['name',
               CASE WHEN r.alias IS NOT NULL THEN 'alias' END,
               CASE WHEN r.address IS NOT NULL THEN 'address' END,
               CASE WHEN r.civil_code IS NOT NULL THEN 'civil_code' END,
               CASE WHEN r.street IS NOT NULL THEN 'street' END,
               CASE WHEN r.place_type IS NOT NULL THEN 'place_type' END,
               CASE WHEN r.point_type IS NOT NULL THEN 'point_type' END,
               CASE WHEN r.resolution IS NOT NULL THEN 'resolution' END,
               CASE WHEN r.azimuth IS NOT NULL THEN 'azimuth' END,
               CASE WHEN r.fov_angle IS NOT NULL THEN 'fov_angle' END,
               CASE WHEN r.fov_range_m IS NOT NULL THEN 'fov_range_m' END,
               CASE WHEN r.install_height_m IS NOT NULL THEN 'install_height_m' END,
               CASE WHEN r.capabilities IS NOT NULL THEN 'capabilities' END,
               CASE WHEN r.unit IS NOT NULL THEN 'unit_id' END,
               CASE WHEN r.stream_url IS NOT NULL THEN 'stream_url' END,
               CASE WHEN r.longitude IS NOT NULL THEN 'geom' END], NULL) AS ch_overridden
      FROM (SELECT r.*, coalesce(r.device_code, r.code) AS dev_code,
                   point_types ->> lower(r.point_type) AS point_type_code,
                   CASE WHEN r.port ~ '^[0-9]{1,5}$' AND r.port::int BETWEEN 1 AND 65535 THEN r.port::int END AS port_i,
                   CASE WHEN vms.try_float8(r.longitude) BETWEEN -180 AND 180 THEN vms.try_float8(r.longitude) END AS lon_f,
                   CASE WHEN vms.try_float8(r.latitude) BETWEEN -90 AND 90 THEN vms.try_float8(r.latitude) END AS lat_f,
                   CASE WHEN vms.try_float8(r.azimuth) >= 0 AND vms.try_float8(r.azimuth) < 360 THEN vms.try_float8(r.azimuth) END AS azimuth_f,
                   CASE WHEN vms.try_float8(r.fov_angle) > 0 AND vms.try_float8(r.fov_angle) <= 360 THEN vms.try_float8(r.fov_angle) END AS fov_angle_f,
                   CASE WHEN vms.try_float8(r.fov_range_m) > 0 THEN vms.try_float8(r.fov_range_m) END AS fov_range_f,
                   CASE WHEN vms.try_float8(r.install_height_m) >= 0 THEN vms.try_float8(r.install_height_m) END AS height_f,
                   CASE upper(replace(replace(coalesce(r.coord_system, 'WGS84'), '-', ''), '_', ''))
                        WHEN 'WGS84' THEN 'WGS84' WHEN 'CGCS2000' THEN 'CGCS2000'
                        WHEN 'GCJ02' THEN 'GCJ02' WHEN 'BD09' THEN 'BD09' END AS crs
              FROM _ledger_raw r) r;
    DROP VIEW _ledger_raw;
END $fn$;

-- header: code,name,device_code,ip_address,port,civil_code,point_type,resolution,
-- longitude,latitude,coord_system,azimuth,fov_angle,fov_range_m,install_height_m,
-- capabilities,unit,stream_url,catalog,alias (20 fields; the other six template
-- columns absent)
CREATE TEMP TABLE _ledger_csv (line_no bigint, fields text[], error text);
CREATE TEMP TABLE t (line_no bigint, note text, v jsonb);
-- each record: the good row with some fields replaced
INSERT INTO t VALUES
 (2, 'good', '{}'),
 (3, 'all optional empty', '{"device_code":"","ip_address":"","port":"","civil_code":"","point_type":"","resolution":"","longitude":"","latitude":"","coord_system":"","azimuth":"","fov_angle":"","fov_range_m":"","install_height_m":"","capabilities":"","unit":"","stream_url":"","catalog":"","alias":""}'),
 (4, 'spaces around', '{"code":"  11010500001320000104 ","name":" 名 称 ","port":" 80 ","longitude":" 116.4\t","latitude":"\t39.9"}'),
 (5, 'bad codes, no name', '{"code":"1101050000132000010X","name":"  ","device_code":"123"}'),
 (6, 'no code', '{"code":""}'),
 (7, 'name 201 characters', '{"name":"XXX201"}'),
 (8, 'name 200 characters', '{"name":"XXX200"}'),
 (9, 'ip v6, port bounds', '{"ip_address":"fe80::1","port":"65535"}'),
 (10, 'bad ip, port', '{"ip_address":"10.1.1.300","port":"65536"}'),
 (11, 'port forms', '{"ip_address":"1.2.3","port":"00080"}'),
 (12, 'port forms', '{"port":"0"}'),
 (13, 'port forms', '{"port":"+80"}'),
 (14, 'port forms', '{"port":"123456"}'),
 (15, 'port forms', '{"port":"８０"}'),
 (16, 'civil codes', '{"civil_code":"110"}'),
 (17, 'civil codes', '{"civil_code":"11010500"}'),
 (18, 'civil codes', '{"civil_code":"1101050011"}'),
 (19, 'civil codes', '{"civil_code":"１１"}'),
 (20, 'civil codes', '{"civil_code":"11\n22"}'),
 (21, 'point types', '{"point_type":"DOME"}'),
 (22, 'point types', '{"point_type":"球机"}'),
 (23, 'point types', '{"point_type":"tower"}'),
 (24, 'resolutions', '{"resolution":"20W"}'),
 (25, 'resolutions', '{"resolution":"12345W"}'),
 (26, 'resolutions', '{"resolution":"200w"}'),
 (27, 'resolutions', '{"resolution":"0200W"}'),
 (28, 'resolutions', '{"resolution":"W"}'),
 (29, 'coordinates', '{"longitude":"-180","latitude":"90"}'),
 (30, 'coordinates', '{"longitude":"180.0001","latitude":"-90.5"}'),
 (31, 'coordinates', '{"longitude":"NaN","latitude":"Infinity"}'),
 (32, 'coordinates', '{"longitude":"1e2","latitude":"-0"}'),
 (33, 'coordinates', '{"longitude":"0x10","latitude":"1,5"}'),
 (34, 'coordinates', '{"latitude":""}'),
 (35, 'coordinates', '{"longitude":"","latitude":"39.9"}'),
 (36, 'coordinate systems', '{"coord_system":"wgs-84"}'),
 (37, 'coordinate systems', '{"coord_system":"gcj_02"}'),
 (38, 'coordinate systems', '{"coord_system":"Bd09"}'),
 (39, 'coordinate systems', '{"coord_system":"cgcs2000"}'),
 (40, 'coordinate systems', '{"coord_system":"UTM"}'),
 (41, 'coordinate systems', '{"coord_system":"cgcſ2000"}'),
 (42, 'coordinate system, no longitude', '{"longitude":"","latitude":"","coord_system":"GCJ02"}'),
 (43, 'angles', '{"azimuth":"0","fov_angle":"360","fov_range_m":"1e-3","install_height_m":"0"}'),
 (44, 'angles', '{"azimuth":"-0","fov_angle":"0","fov_range_m":"0","install_height_m":"-0"}'),
 (45, 'angles', '{"azimuth":"360","fov_angle":"360.1","fov_range_m":"-1","install_height_m":"-1"}'),
 (46, 'angles', '{"azimuth":"359.999","fov_angle":"abc","fov_range_m":"1e400","install_height_m":"1.5e-400"}'),
 (47, 'capabilities', '{"capabilities":"face| plate"}'),
 (48, 'capabilities', '{"capabilities":"face;plate；ptz"}'),
 (49, 'capabilities', '{"capabilities":"|face||"}'),
 (50, 'capabilities', '{"capabilities":"；"}'),
 (51, 'capabilities', '{"capabilities":"a b|c\td"}'),
 (52, 'capabilities', '{"capabilities":"人脸|车牌；全景"}'),
 (53, 'stream urls', '{"stream_url":"rtsps://x"}'),
 (54, 'stream urls', '{"stream_url":"http:///x"}'),
 (55, 'stream urls', '{"stream_url":"https://?"}'),
 (56, 'stream urls', '{"stream_url":"ftp://x"}'),
 (57, 'stream urls', '{"stream_url":"RTSP://x"}'),
 (58, 'stream urls', '{"stream_url":"rtsp://"}'),
 (59, 'stream urls', '{"stream_url":"rtsp://主机/路径"}'),
 (60, 'stream urls', '{"stream_url":"rtsp://a b"}'),
 (61, 'stream urls', '{"stream_url":"rtsp://a\u0001b"}'),
 (62, 'stream urls', '{"stream_url":"LONG2048"}'),
 (63, 'stream urls', '{"stream_url":"LONG2049"}'),
 (64, 'stream urls', '{"stream_url":"rtsps//x"}'),
 (65, 'stream urls', '{"stream_url":"rtsp://\u00a0x"}'),
 (66, 'catalogs', '{"catalog":" 11010500002150000009 |11010500002150000009"}'),
 (67, 'catalogs', '{"catalog":"11010500002150000009|11010500002150000777"}'),
 (68, 'catalogs', '{"catalog":"11010500002150000009|"}'),
 (69, 'catalogs', '{"catalog":"|"}'),
 (70, 'catalogs', '{"catalog":"1101050000215000000X"}'),
 (71, 'own device', '{"device_code":"","alias":"别名"}'),
 (72, 'code of line 2 again', '{"code":"11010500001320000002"}'),
 (73, 'code of line 2 again, with tabs (the same code, another text)', '{"code":"\t11010500001320000002\t"}'),
 (74, 'code of line 5 again (line 5 has reasons)', '{"code":"1101050000132000010X"}');
INSERT INTO _ledger_csv
SELECT 1, '{code,name,device_code,ip_address,port,civil_code,point_type,resolution,longitude,latitude,coord_system,azimuth,fov_angle,fov_range_m,install_height_m,capabilities,unit,stream_url,catalog,alias}', NULL
UNION ALL
SELECT t.line_no, ARRAY(
    SELECT CASE coalesce(t.v ->> k, d)
             WHEN 'XXX201' THEN repeat('名', 201) WHEN 'XXX200' THEN repeat('名', 200)
             WHEN 'LONG2048' THEN 'rtsp://h/' || repeat('a', 2039) WHEN 'LONG2049' THEN 'rtsp://h/' || repeat('a', 2040)
             ELSE coalesce(t.v ->> k, d) END
      FROM unnest('{code,name,device_code,ip_address,port,civil_code,point_type,resolution,longitude,latitude,coord_system,azimuth,fov_angle,fov_range_m,install_height_m,capabilities,unit,stream_url,catalog,alias}'::text[],
                  ARRAY['110105000013200' || lpad(t.line_no::text, 5, '0'), '光华路' || t.line_no, '11010500001180000100',
                        '10.1.1.1', '5060', '110105', '枪机', '400W', '116.46', '39.914', 'WGS84', '90', '60', '80', '6',
                        'face|plate', '朝阳分局', 'rtsp://10.0.0.1/ch1', '11010500002150000009', ''])
             WITH ORDINALITY u(k, d, i) ORDER BY i), NULL
  FROM t
UNION ALL
-- records the CSV reader could not read, or shaped unlike the header
VALUES (100, NULL, 'unterminated quoted field'),
       (101, '{11010500001320000101,too few}', NULL),
       (102, ARRAY['11010500001320000102', '名'] || array_fill(''::text, '{18}') || '{extra}'::text[], NULL),
       (103, '[0:19]={11010500001320000103,名,a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r}', NULL),
       (104, '{{11010500001320000104,名},{a,b}}', NULL),
       (105, '{}', NULL),
       (106, ARRAY['11010500001320000106', NULL, '', '1.1.1.1'], NULL),
       (107, '{11010500001320000107,名}', 'error and fields');

SELECT jsonb_object_agg(lower(h), i) AS col FROM unnest('{code,name,device_code,ip_address,port,civil_code,point_type,resolution,longitude,latitude,coord_system,azimuth,fov_angle,fov_range_m,install_height_m,capabilities,unit,stream_url,catalog,alias}'::text[]) WITH ORDINALITY u(h, i) \gset
SELECT jsonb_object_agg(alias, code) AS point_types FROM
    (SELECT code, code AS alias FROM vms.point_type UNION SELECT code, name_zh FROM vms.point_type) m \gset

SELECT pg_temp.old_check(1, :'col', (SELECT fields FROM _ledger_csv WHERE line_no = 1), :'point_types');
CREATE TEMP TABLE new_checked AS
SELECT r.*,
       CASE WHEN r.longitude IS NULL OR r.lon_f IS NULL OR r.lat_f IS NULL OR r.crs IS NULL THEN NULL
            WHEN r.crs IN ('WGS84', 'CGCS2000') THEN ST_SetSRID(ST_MakePoint(r.lon_f, r.lat_f), 4326)
            ELSE (SELECT ST_SetSRID(ST_MakePoint(p[1], p[2]), 4326)
                    FROM vms.coord_convert(r.lon_f, r.lat_f, r.crs, 'WGS84') p) END AS ch_geom
  FROM vms.ledger_check_rows(1, :'col', 20, :'point_types') r;

-- the same columns, types and values (as text: -0 and 0, '{}' and NULL differ)
SELECT (SELECT array_agg(attname || ':' || format_type(atttypid, atttypmod) ORDER BY attname) FROM pg_attribute
         WHERE attrelid = 'old_checked'::regclass AND attnum > 0)
     = (SELECT array_agg(attname || ':' || format_type(atttypid, atttypmod) ORDER BY attname) FROM pg_attribute
         WHERE attrelid = 'new_checked'::regclass AND attnum > 0 AND attname <> 'repeated') AS same_columns;
SELECT (SELECT count(*) FROM old_checked) AS old_rows, (SELECT count(*) FROM new_checked) AS new_rows;
SELECT o.line_no, key, o.j -> key AS old_value, n.j -> key AS new_value
  FROM (SELECT line_no, to_jsonb(x) AS j, x::text FROM old_checked x) o
  FULL JOIN (SELECT line_no, to_jsonb(x) - 'repeated' AS j FROM new_checked x) n USING (line_no)
  CROSS JOIN LATERAL jsonb_object_keys(coalesce(o.j, n.j)) key
 WHERE (o.j -> key) IS DISTINCT FROM (n.j -> key)
 ORDER BY 1, 2;
-- float8 and geometry exactly (jsonb numbers would not tell -0 from 0)
SELECT o.line_no FROM old_checked o JOIN new_checked n USING (line_no)
 WHERE (o.lon_f::text, o.lat_f::text, o.azimuth_f::text, o.fov_angle_f::text, o.fov_range_f::text, o.height_f::text,
        ST_AsEWKB(o.ch_geom), array_dims(o.reasons), array_dims(o.ch_capabilities), array_dims(o.ch_overridden))
       IS DISTINCT FROM
       (n.lon_f::text, n.lat_f::text, n.azimuth_f::text, n.fov_angle_f::text, n.fov_range_f::text, n.height_f::text,
        ST_AsEWKB(n.ch_geom), array_dims(n.reasons), array_dims(n.ch_capabilities), array_dims(n.ch_overridden));

-- what the C check says of each record
SELECT line_no, n, left(reason, 90) AS reason FROM new_checked, unnest(reasons) WITH ORDINALITY u(reason, n) ORDER BY line_no, n;
SELECT line_no, ch_capabilities, crs, ch_coord_source, port_i, lon_f, lat_f, azimuth_f, fov_angle_f, fov_range_f,
       height_f, point_type_code, dev_code
  FROM new_checked WHERE line_no < 100 ORDER BY line_no;
SELECT line_no, nfields, code, name, ch_overridden FROM new_checked WHERE line_no IN (2, 3, 4, 71, 103, 106) ORDER BY line_no;
-- repeated: rows without reasons whose code an earlier such row had, as a
-- code (the import then looks for codes repeated as text)
SELECT line_no, code FROM new_checked WHERE repeated ORDER BY line_no;

-- a staged table of another shape is refused
DROP TABLE _ledger_csv;
CREATE TEMP TABLE _ledger_csv (line_no int, fields text[], error text);
SELECT count(*) FROM vms.ledger_check_rows(1, '{}', 1, NULL);

-- columns and point types that are not objects are refused (they were
-- read as an object's pairs, past the end of the value)
DROP TABLE _ledger_csv;
CREATE TEMP TABLE _ledger_csv (line_no bigint, fields text[], error text);
INSERT INTO _ledger_csv VALUES (2, ARRAY['x', 'kkkkkkkkkkkk'], NULL);
SELECT count(*) FROM vms.ledger_check_rows(1, '{"code": 1, "point_type": 2}', 2,
                                           '["a\u1000cccckkkk", "kkkkkkkkzzzzz"]'::jsonb);
SELECT count(*) FROM vms.ledger_check_rows(1, '["\u0001\u0001\u0001\u001fxxxxip", "_addresszzzzz"]', 2, NULL);
SELECT count(*) FROM vms.ledger_check_rows(1, '7', 2, NULL);
-- a column position at either end of int is simply no field
SELECT code, point_type FROM vms.ledger_check_rows(1, '{"code": -2147483648, "point_type": 2147483647}', 2, '{}');

-- the CSV reader takes runs of ordinary bytes at once (issue 20): records
-- at the 1 MB limit, quoted or not, with and without newlines inside, read
-- as byte by byte (a record of 1,048,576 bytes is read, one more is
-- reported and the reader resyncs at the next newline)
SELECT t.n, count(*) AS records, max(r.line_no) AS last_line,
       array_agg(r.line_no ORDER BY r.line_no) FILTER (WHERE r.error IS NOT NULL) AS bad_lines,
       string_agg(DISTINCT r.error, '; ') AS errors,
       (array_agg((SELECT array_agg(length(f)) FROM unnest(r.fields) f)::text ORDER BY r.line_no))[1:2] AS first_lengths
  FROM (VALUES (1, 'a,' || repeat('x', 1048574) || E'\nb,c\n'),
               (2, 'a,' || repeat('x', 1048575) || E'\nb,c\n'),
               (3, 'a,"' || repeat(E'x\n', 600000) || E'"\nb,c\n'),
               (4, 'a,"' || repeat(E'x\n', 524286) || E'",z\nb,c\n'),
               (5, '"' || repeat('y', 2000000) || E',"\nb,"c\n'),
               (6, repeat('z', 1048576) || E'\nq\n'),
               (7, repeat('z', 1048577) || E'\nq\n'),
               (8, '"' || repeat('w', 1048574) || E'"\nq\n'),
               (9, '"' || repeat('w', 1048575) || E'"\nq\n'),
               (10, E'a"b,"c""d\re",f\r\ng\rh,"i\r\nj"\n')) t(n, s),
       vms.csv_rows(convert_to(t.s, 'UTF8'), 'UTF8') r
 GROUP BY 1 ORDER BY 1;
