-- batch import of the ledger template: bad rows are reported, good rows load
\set SHOW_CONTEXT never
SET search_path = public, vms;
SET client_min_messages = warning;
-- a unit that exists already (the import finds it) beside one it creates
INSERT INTO vms.org_unit (name, civil_code) VALUES ('朝阳分局', '110105');
SELECT position, key, header, required FROM vms.ledger_template_column ORDER BY position LIMIT 4;

-- the CSV reader: quotes, embedded newlines, CRLF, BOM, blank lines
SELECT line_no, fields, error FROM vms.csv_rows(
    convert_to(E'\uFEFFa,b,c\r\n"x, y","say ""hi""",3\n\n"multi\nline",2,\n"open', 'UTF8'));
SELECT line_no, fields FROM vms.csv_rows(convert_to(E'名称,地址\n建外大街,朝阳区', 'GB18030'), 'GB18030');
SELECT line_no, fields FROM vms.csv_rows(convert_to(E'名称,地址\n建外大街,朝阳区', 'GB18030'));  -- auto-detected
-- invalid UTF-8 in one record: that record is reported, the others are read
SELECT line_no, fields, error FROM vms.csv_rows(decode('612c620afffe2c310a632c64', 'hex'), 'UTF8');
\set VERBOSITY default
SELECT * FROM vms.csv_rows('a'::bytea, 'KOI9');
SELECT * FROM vms.csv_rows_file('/nonexistent/file.csv');
\set VERBOSITY terse

INSERT INTO vms.catalog_node (code, name) VALUES ('11010500002150000009', '导入目录');
-- the ledger is empty: the first import below is a first load (issue 20),
-- rows first, then the channel table's secondary indexes and foreign keys
CREATE TEMP TABLE channel_ddl_before AS
SELECT 'index' AS kind, c.relname::text AS name, pg_get_indexdef(i.indexrelid) AS def, i.indexrelid AS oid, i.indisprimary AS kept
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'vms.channel'::regclass
UNION ALL
SELECT 'foreign key', k.conname::text, pg_get_constraintdef(k.oid), k.oid, true
  FROM pg_constraint k WHERE k.conrelid = 'vms.channel'::regclass AND k.contype = 'f';
-- a template with Chinese headers in a different order, one good row per kind
-- of content and one bad row per kind of problem
CREATE TEMP TABLE first_csv (t) AS SELECT
$csv$监控点编码,监控点名称,设备编码,经度,纬度,坐标系,点位类型,朝向,管理单位,能力集,资源目录,IP地址,端口,行政区划
11010500001320000101,光华路东口,11010500001180000100,116.4600,39.9140,WGS84,枪机,90,朝阳分局,face|plate,11010500002150000009,10.1.1.1,5060,110105
11010500001320000102,光华路西口,11010500001180000100,116.4660,39.9155,GCJ02,球机,270,朝阳分局,ptz,,,,110105
11010500001320000103,"国贸桥下,北侧",,116.4610,39.9090,,dome,,东城分局,,,,,
1101050000132000010X,坏编码,,116.46,39.91,,,,,,,,,
11010500001320000105,,11010500001180000100,116.46,39.91,,,,,,,,,
11010500001320000106,经纬度坏,11010500001180000100,116.46,north,,,,,,,,,
11010500001320000107,只有经度,11010500001180000100,116.46,,,,,,,,,,
11010500001320000108,朝向坏,11010500001180000100,116.46,39.91,,,400,,,,,,
11010500001320000109,点位类型坏,11010500001180000100,,,,tower,,,,,,,
11010500001320000110,坐标系坏,11010500001180000100,116.46,39.91,UTM,,,,,,,,
11010500001320000111,目录坏,11010500001180000100,,,,,,,,11010500002150000777,,,
11010500001320000112,IP坏,11010500001180000100,,,,,,,,,10.1.1.300,99999,1101050
11010500001320000113,字段太少
11010500001320000114,重复一,11010500001180000100,,,,,,,,,,,
11010500001320000114,重复二,11010500001180000100,,,,,,,,,,,
$csv$;
SELECT (j).total_rows, (j).loaded_rows, (j).rejected_rows, (j).created_devices, (j).created_units
  FROM (SELECT vms.ledger_import(convert_to(t, 'UTF8'), 'auto', 'regress.csv') AS j FROM first_csv) s;

-- the same indexes and foreign keys under the same names: every index built
-- anew but the primary key, the foreign keys kept (their check triggers were
-- off for the load, each key checked at once after) and on again; history
-- for every new row, naming the importing role
SELECT b.kind, count(*) AS n, bool_and(a.def IS NOT DISTINCT FROM b.def) AS same_definition,
       bool_and((a.oid <> b.oid) <> b.kept) AS rebuilt_unless_kept, bool_and(coalesce(k.convalidated, true)) AS validated
  FROM channel_ddl_before b
  LEFT JOIN (SELECT c.relname::text AS name, pg_get_indexdef(i.indexrelid) AS def, i.indexrelid AS oid
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'vms.channel'::regclass
             UNION ALL
             SELECT k.conname::text, pg_get_constraintdef(k.oid), k.oid
               FROM pg_constraint k WHERE k.conrelid = 'vms.channel'::regclass AND k.contype = 'f') a USING (name)
  LEFT JOIN pg_constraint k ON k.oid = a.oid
 GROUP BY b.kind ORDER BY 1;
SELECT count(*) = (SELECT count(*) FROM vms.channel) AS history_per_row, bool_and(acting_role = current_user) AS acting_role
  FROM vms.ledger_history WHERE table_name = 'channel' AND op = 'INSERT';
SELECT count(*) AS check_triggers_off FROM pg_trigger WHERE tgrelid = 'vms.channel'::regclass AND tgenabled = 'D';
-- map cells: the first load appends its points' cell deltas once, after its
-- chunks (the cells' trigger is off while they go in, and on again after);
-- folded, they are exactly what counting the ledger gives
SELECT tgenabled AS cells_trigger FROM pg_trigger WHERE tgrelid = 'vms.channel'::regclass AND tgname = 'channel_clusters_ins';
SELECT count(DISTINCT level) AS levels_appended, sum(n) FILTER (WHERE level = 18) AS points_appended,
       (SELECT count(*) FROM vms.channel WHERE geom_3857 IS NOT NULL) AS points_loaded
  FROM vms.channel_cluster_delta;
SELECT vms.channel_clusters_refresh() > 0 AS folded;
CREATE TEMP TABLE first_cells AS SELECT * FROM vms.channel_cluster;
SELECT vms.channel_clusters_refresh(true) > 0 AS rebuilt;
SELECT count(*) AS cells,
       (SELECT count(*) FROM (TABLE first_cells EXCEPT ALL TABLE vms.channel_cluster) d)
       + (SELECT count(*) FROM (TABLE vms.channel_cluster EXCEPT ALL TABLE first_cells) d) AS cells_differ
  FROM first_cells;
-- the first load's channel history (its statement trigger, from each
-- chunk's transition table) equals what the ordinary path writes for the
-- same file (the ledger made non-empty by one other channel): the same rows
-- but id and time, in the same order, and one audit entry per statement
CREATE TEMP TABLE first_history AS
SELECT to_jsonb(h) - '{id,changed_at}'::text[] AS h, h.id FROM vms.ledger_history h
 WHERE h.table_name = 'channel' AND h.op = 'INSERT';
SELECT count(*) AS first_load_audit FROM vms.audit_log WHERE action = 'ledger_insert' AND object = 'channel';
BEGIN;
DELETE FROM vms.channel;
INSERT INTO vms.channel (code, device_code, name) VALUES ('11010500001320000199', '11010500001180000100', '另一个');
SELECT coalesce(max(id), 0) AS history_before FROM vms.ledger_history \gset
SELECT (j).loaded_rows, (j).rejected_rows
  FROM (SELECT vms.ledger_import(convert_to(t, 'UTF8'), 'auto', 'regress.csv') AS j FROM first_csv) s;
WITH o AS (SELECT to_jsonb(h) - '{id,changed_at}'::text[] AS h, h.id FROM vms.ledger_history h
            WHERE h.id > :history_before AND h.table_name = 'channel' AND h.op = 'INSERT')
SELECT (SELECT count(*) FROM first_history) AS first_load_rows, (SELECT count(*) FROM o) AS ordinary_rows,
       (SELECT array_agg(h ORDER BY id) FROM first_history) = (SELECT array_agg(h ORDER BY id) FROM o) AS same_history_same_order;
-- (the ordinary path's entries are appended at commit: queued until then)
SELECT count(*) AS ordinary_audit
  FROM (SELECT action, object FROM vms.audit_log UNION ALL SELECT action, object FROM vms.audit_pending) e
 WHERE action = 'ledger_insert' AND object = 'channel';
ROLLBACK;
SELECT tgenabled AS history_trigger FROM pg_trigger WHERE tgrelid = 'vms.channel'::regclass AND tgname = 'channel_history_ins';
SELECT line_no, reasons FROM vms.import_rejection ORDER BY line_no;
SELECT c.code, c.name, c.device_code, c.point_type, c.azimuth, u.name AS unit, c.capabilities,
       round(ST_X(c.geom)::numeric, 5) AS lon, round(ST_Y(c.geom)::numeric, 5) AS lat, c.coord_source
  FROM vms.channel c LEFT JOIN vms.org_unit u ON u.id = c.unit_id
 WHERE c.code::text LIKE '110105000013200001%' ORDER BY c.code;
-- the point without a device code is its own device
SELECT code, name FROM vms.device WHERE code IN ('11010500001180000100', '11010500001320000103') ORDER BY code;
SELECT node_code, channel_code FROM vms.catalog_member WHERE node_code = '11010500002150000009';
SELECT overridden FROM vms.channel WHERE code = '11010500001320000101';

-- re-import: empty cells keep existing values, filled cells update
SELECT (j).loaded_rows, (j).rejected_rows, (j).created_devices FROM (SELECT vms.ledger_import(convert_to(
$csv$code,name,device_code,azimuth,alias
11010500001320000101,光华路东口,11010500001180000100,,光华东
$csv$, 'UTF8')) AS j) s;
SELECT name, azimuth, alias FROM vms.channel WHERE code = '11010500001320000101';

-- GB18030 file on the server (files in this cluster's data directory, no other run's)
SELECT current_setting('data_directory') || '/vms_regress_gb18030.csv' AS gb_file,
       current_setting('data_directory') || '/vms_regress_export.csv' AS export_file \gset
COPY (SELECT '监控点编码,监控点名称,设备编码,安装地址' UNION ALL
      SELECT '11010500001320000120,三里屯北路,11010500001180000100,朝阳区三里屯北路19号')
  TO :'gb_file' WITH (FORMAT text, ENCODING 'GB18030');
SELECT (j).loaded_rows, (j).rejected_rows FROM (SELECT vms.ledger_import_file(:'gb_file') AS j) s;
SELECT name, address FROM vms.channel WHERE code = '11010500001320000120';

-- header problems stop the import with a clear error and change nothing
\set VERBOSITY default
SELECT vms.ledger_import(convert_to(E'code,name,colour\n11010500001320000130,x,red\n', 'UTF8'));
SELECT vms.ledger_import(convert_to(E'code,alias\n11010500001320000130,x\n', 'UTF8'));
SELECT vms.ledger_import(convert_to(E'code,name,名称\n', 'UTF8'));
SELECT vms.ledger_import(''::bytea);
\set VERBOSITY terse
SELECT count(*) FROM vms.channel WHERE code = '11010500001320000130';

-- export in the same template, and the export imports back unchanged
SELECT "监控点编码", "监控点名称", "设备编码", "点位类型", "经度", "纬度", "管理单位", "能力集", "资源目录"
  FROM vms.ledger_export WHERE "监控点编码" LIKE '110105000013200001%' ORDER BY 1;
COPY (SELECT * FROM vms.ledger_export ORDER BY 1) TO :'export_file' WITH (FORMAT csv, HEADER);
CREATE TEMP TABLE before_reimport AS SELECT * FROM vms.ledger_export;
CREATE TEMP TABLE versions_before AS SELECT code, xmin::text AS version FROM vms.channel;
SELECT coalesce(max(id), 0) AS history_before FROM vms.ledger_history \gset
SELECT (j).rejected_rows, (j).loaded_rows = (SELECT count(*) FROM versions_before) AS all_loaded
  FROM (SELECT vms.ledger_import_file(:'export_file') AS j) s;
-- an unchanged row is not written again: same row version, no history;
-- only the point the export states otherwise (a GCJ-02 point exported in WGS-84) is written back
SELECT c.code, h.op, (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(h.new_values) k) AS changed
  FROM vms.channel c JOIN versions_before v USING (code)
  LEFT JOIN vms.ledger_history h ON h.code = c.code AND h.id > :history_before
 WHERE c.xmin::text <> v.version OR h.id IS NOT NULL ORDER BY 1;
SELECT count(*) AS differences FROM (
    (SELECT * FROM before_reimport EXCEPT SELECT * FROM vms.ledger_export)
    UNION ALL
    (SELECT * FROM vms.ledger_export EXCEPT SELECT * FROM before_reimport)) d;
SELECT count(*) > 0 AS jobs_recorded FROM vms.import_job WHERE imported_by = session_user AND finished_at IS NOT NULL;

-- a non-superuser's first load (issue 20): row-level security is decided for
-- all rows at once, as the insert policy (vms.can_manage) would row by row
CREATE ROLE regress_loader LOGIN;
GRANT USAGE ON SCHEMA vms TO regress_loader;
GRANT SELECT, INSERT, UPDATE ON vms.channel, vms.device, vms.org_unit, vms.catalog_member, vms.import_job,
    vms.import_rejection TO regress_loader;
GRANT SELECT ON vms.point_type, vms.catalog_node, vms.ledger_template_column TO regress_loader;
INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level)
VALUES ('regress_loader', 'region', '110105', '{manage_ledger,view_live}', 4);
DELETE FROM vms.catalog_member;
DELETE FROM vms.channel;
SELECT 'vms.channel_geom_idx'::regclass::oid AS geom_idx_before \gset
SET SESSION AUTHORIZATION regress_loader;
-- a row outside its region: the import is refused, as the policy refuses the row
SELECT vms.ledger_import(convert_to(E'code,name,civil_code\n11010500001320000201,a,110105\n11010800001320000202,b,110108\n', 'UTF8'));
-- inside it: loaded, by the first load (its geometry index is built anew)
SELECT (j).loaded_rows, (j).rejected_rows FROM (SELECT vms.ledger_import(convert_to(
    E'code,name,civil_code\n11010500001320000201,a,110105\n11010500001320000203,c,11010502\n', 'UTF8')) j) s;
SELECT 'vms.channel_geom_idx'::regclass::oid <> :geom_idx_before AS geom_index_rebuilt;
SELECT code, name, civil_code FROM vms.channel ORDER BY 1;
-- the ledger is no longer empty: the ordinary path, and the same policy
SELECT (j).loaded_rows FROM (SELECT vms.ledger_import(convert_to(E'code,name,civil_code\n11010500001320000204,d,110105\n', 'UTF8')) j) s;
SELECT vms.ledger_import(convert_to(E'code,name,civil_code\n11010800001320000205,e,110108\n', 'UTF8'));
-- rows staged by hand while the ledger has rows: no first load, and no
-- lock on the ledger either (readers are not held off until commit)
BEGIN;
CREATE TEMP TABLE _ledger_checked (line_no bigint, code text, dev_code text, name text, alias text, address text,
    civil_code text, street text, place_type text, point_type text, point_type_code text, resolution text,
    azimuth_f double precision, fov_angle_f double precision, fov_range_f double precision, height_f double precision,
    capabilities text, unit text, stream_url text, longitude text, azimuth text, fov_angle text, fov_range_m text,
    install_height_m text, lon_f double precision, lat_f double precision, crs text,
    ch_capabilities text[], ch_geom geometry, ch_coord_source text, ch_overridden text[]);
SELECT vms.ledger_first_load(1) IS NULL AS not_loaded;
SELECT count(*) AS ledger_locks FROM pg_locks
 WHERE locktype = 'relation' AND relation = 'vms.channel'::regclass AND pid = pg_backend_pid()
   AND mode = 'AccessExclusiveLock';
ROLLBACK;
-- called without rows staged by an import it refuses
SELECT vms.ledger_first_load(1);
RESET SESSION AUTHORIZATION;
SELECT op, code, acting_role FROM vms.ledger_history
 WHERE table_name = 'channel' AND code::text IN ('11010500001320000201', '11010500001320000203', '11010500001320000204')
 ORDER BY id;
DELETE FROM vms.access_grant WHERE grantee = 'regress_loader';
DROP OWNED BY regress_loader;
DROP ROLE regress_loader;

-- number parsing used by validation: plain finite decimals only
SELECT v, vms.try_float8(v) FROM unnest(ARRAY['116.46', ' -3.5 ', '1e3', '', 'NaN', 'Infinity', '0x1A', '1,5', '12abc', '.5', '1e999']) v;

-- a channel's history jsonb (made in C, vms._channel_doc) is what
-- jsonb_build_object makes of the same keys and values: every channel of
-- this test, and values at the edges of their types
SELECT count(*) AS channels, count(*) FILTER (WHERE vms._channel_jsonb(c) = jsonb_build_object(
        'code', c.code::text, 'device_code', c.device_code::text, 'name', c.name,
        'alias', c.alias, 'address', c.address, 'civil_code', c.civil_code, 'street', c.street,
        'place_type', c.place_type, 'point_type', c.point_type, 'resolution', c.resolution,
        'azimuth', c.azimuth, 'fov_angle', c.fov_angle, 'fov_range_m', c.fov_range_m,
        'install_height_m', c.install_height_m, 'capabilities', c.capabilities, 'unit_id', c.unit_id,
        'stream_url', c.stream_url, 'geom', ST_AsEWKT(c.geom), 'coord_source', c.coord_source)) AS same_as_sql
  FROM vms.channel c;
WITH v(t, r, cap, u) AS (VALUES
        ('x', 'NaN'::real, '{{a,b},{NULL,"x\"y"}}'::text[], NULL::bigint), (NULL, 'Infinity', '{}', 9223372036854775807),
        ('', '-0', '{NULL}', -1), ('é中"\', '1e-40', '{"é中"}', 0), (E'a\nb', '3.4e38', '[2:3]={p,q}', 5),
        ('0', 0.1, NULL, NULL), ('y', '-Infinity', '{""}', -9223372036854775808))
SELECT r, vms._channel_doc(t, t, t, t, t, t, t, t, t, t, r, r, r, r, cap, u, t, t, t)
        = jsonb_build_object('code', t, 'device_code', t, 'name', t, 'alias', t, 'address', t, 'civil_code', t,
              'street', t, 'place_type', t, 'point_type', t, 'resolution', t, 'azimuth', r, 'fov_angle', r,
              'fov_range_m', r, 'install_height_m', r, 'capabilities', cap, 'unit_id', u, 'stream_url', t,
              'geom', t, 'coord_source', t) AS same_as_sql
  FROM v;

-- capability lists: names between single | take the quick split, any other
-- list the general one (| ; ； separate, spaces trimmed, empty names dropped)
SELECT (vms.ledger_import(convert_to(E'code,name,capabilities\n'
    '11010500001320000301,c1,face|plate\n11010500001320000302,c2,ptz\n'
    '11010500001320000303,c3," face | plate "\n11010500001320000304,c4,face;plate；ptz\n'
    '11010500001320000305,c5,|face||plate|\n11010500001320000306,c6,face plate|ir\n'
    '11010500001320000307,c7,|\n11010500001320000308,c8,"a\tb|c"\n', 'UTF8'))).loaded_rows;
SELECT code, capabilities FROM vms.channel WHERE code::text LIKE '110105000013200003%' ORDER BY code;
