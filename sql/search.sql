-- tags and point search: every filter key, its bad values, saved searches,
-- history, GeoJSON and bulk tagging, over the Futian channels
\set SHOW_CONTEXT never
SET search_path = public, vms;
SET client_min_messages = warning;
-- the Futian district (sql/fixtures/futian.sql)
\getenv abs_srcdir PG_ABS_SRCDIR
\set ECHO none
\i :abs_srcdir/sql/fixtures/futian.sql
\set ECHO all

-- tags: hierarchical scenario tags, flat capability tags
SELECT vms.tag_create('scenario', '交通') AS traffic \gset
SELECT vms.tag_create('scenario', '路口', '交通') AS crossing \gset
SELECT vms.tag_create('scenario', '学校') AS school \gset
SELECT vms.tag_create('capability', '人脸') AS face \gset
SELECT vms.tag_create('custom', '学校') AS custom_school \gset
SELECT name, category, parent_id = :traffic AS under_traffic FROM vms.tag ORDER BY id;
SELECT vms.tag_assign('44030401001320000001', '路口'), vms.tag_assign('44030401001320000001', 'capability:人脸'),
       vms.tag_assign('44030401001320000002', '交通'), vms.tag_assign('44030401001320000006', 'scenario:学校'),
       vms.tag_assign('44030401001320000001', '路口');
SELECT channel_code, t.name, source, assigned_by = session_user AS by_me FROM vms.channel_tag ct JOIN vms.tag t ON t.id = ct.tag_id
 ORDER BY 1, 2;
\set VERBOSITY default
SELECT vms.tag_assign('44030401001320000001', '学校');
SELECT vms.tag_assign('44030401001320000001', '不存在');
SELECT vms.tag_create('capability', '子能力', '人脸');
SELECT vms.tag_create('nosuch', 'x');
\set VERBOSITY terse

-- each filter key
SELECT code FROM vms.search_points('{"tags_any": ["交通"]}') ORDER BY code;          -- includes the 路口 child
SELECT code FROM vms.search_points('{"tags_all": ["路口", "capability:人脸"]}');
SELECT code FROM vms.search_points(format('{"tags_all": [%s, %s]}', :crossing, :face)::jsonb);
SELECT code FROM vms.search_points('{"tags_all": ["交通", "scenario:学校"]}');
INSERT INTO vms.catalog_node (code, name) VALUES ('44030400002150000001', '福田视频');
INSERT INTO vms.catalog_node (code, name, parent_code) VALUES ('44030400002160000001', '园岭', '44030400002150000001');
INSERT INTO vms.catalog_member VALUES ('44030400002160000001', '44030401001320000007'), ('44030400002150000001', '44030401001320000008');
SELECT code FROM vms.search_points('{"catalog": "44030400002150000001"}') ORDER BY code;
SELECT count(*) FROM vms.search_points('{"unit": "福田分局"}');                        -- includes 园岭派出所
SELECT count(*) FROM vms.search_points('{"unit": "园岭派出所", "point_type": "capture"}');
SELECT count(*) FROM vms.search_points('{"unit": "园岭派出所", "point_type": ["抓拍机", "dome"]}');
SELECT count(*) FROM vms.search_points('{"unit": "园岭派出所", "place_type": "道路"}');
UPDATE vms.channel SET capabilities = '{ptz,face}' WHERE code = '44030401001320000010';
SELECT code FROM vms.search_points('{"capability": ["face", "ptz"]}');
SELECT code FROM vms.search_points('{"keyword": "东向"}') ORDER BY code;                -- 2 characters
SELECT count(*) FROM vms.search_points('{"keyword": "福", "unit": "园岭派出所"}');      -- 1 character
SELECT code FROM vms.search_points('{"keyword": "北向南-01"}') ORDER BY code;
UPDATE vms.channel SET alias = 'Gate 100% North' WHERE code = '44030401001320000011';
SELECT code FROM vms.search_points('{"keyword": "gate 100%"}');                          -- case-insensitive, % is literal
SELECT code FROM vms.search_points('{"keyword": "100_"}');
SELECT code FROM vms.search_points('{"bbox": [114.029, 22.529, 114.0315, 22.5315]}') ORDER BY code;
SELECT code, round(distance_m) FROM vms.search_points('{"circle": {"lon": 114.03, "lat": 22.53, "radius_m": 200}}') ORDER BY 2, 1;
SELECT code FROM vms.search_points('{"polygon": {"type": "Polygon", "coordinates": [[[114.0, 22.5], [114.025, 22.5], [114.025, 22.52], [114.0, 22.52], [114.0, 22.5]]]}}') ORDER BY code;
SELECT code FROM vms.search_points('{"line": {"geojson": {"type": "LineString", "coordinates": [[114.0, 22.51], [114.05, 22.51]]}, "buffer_m": 50}}') ORDER BY code;
SELECT code, round(distance_m) FROM vms.search_points('{"near": {"lon": 114.0339, "lat": 22.5339}}', 3);
SELECT code FROM vms.search_points('{"near": {"lon": 114.0339, "lat": 22.5339}, "keyword": "北向南"}', 2, 1);
-- near with k: the k nearest only, paged within them
SELECT code, round(distance_m) FROM vms.search_points('{"near": {"lon": 114.0339, "lat": 22.5339, "k": 2}}', 10);
SELECT code, round(distance_m) FROM vms.search_points('{"near": {"lon": 114.0339, "lat": 22.5339, "k": 2}}', 10, 1);
SELECT count(*) FROM vms.search_points('{"near": {"lon": 114.0339, "lat": 22.5339, "k": 2}}', 10, 2);
-- combined: tags and circle
SELECT code FROM vms.search_points('{"tags_any": ["交通"], "circle": {"lon": 114.01, "lat": 22.51, "radius_m": 1500}}') ORDER BY code;

-- bad filters: 22023 naming the key
\set VERBOSITY default
SELECT * FROM vms.search_points('{"colour": "red"}');
SELECT * FROM vms.search_points('[1, 2]');
\set VERBOSITY terse
SELECT * FROM vms.search_points('{"bbox": [114, 22]}');
SELECT * FROM vms.search_points('{"bbox": [115, 22, 114, 23]}');
SELECT * FROM vms.search_points('{"bbox": [114, 22, "a", 23]}');
SELECT * FROM vms.search_points('{"circle": {"lon": 114, "lat": 22}}');
SELECT * FROM vms.search_points('{"circle": {"lon": 214, "lat": 22, "radius_m": 10}}');
SELECT * FROM vms.search_points('{"circle": {"lon": 114, "lat": 22, "radius_m": -1}}');
SELECT * FROM vms.search_points('{"polygon": {"type": "Point", "coordinates": [114, 22]}}');
SELECT * FROM vms.search_points('{"polygon": {"type": "Polygon", "coordinates": "x"}}');
SELECT * FROM vms.search_points('{"polygon": "POLYGON((0 0,1 0,1 1,0 0))"}');
SELECT * FROM vms.search_points('{"line": {"buffer_m": 5}}');
SELECT * FROM vms.search_points('{"near": [114, 22]}');
SELECT * FROM vms.search_points('{"keyword": ""}');
SELECT * FROM vms.search_points('{"keyword": 5}');
SELECT * FROM vms.search_points('{"tags_all": []}');
SELECT * FROM vms.search_points('{"tags_any": ["没有"]}');
SELECT * FROM vms.search_points('{"tags_any": ["学校"]}');
SELECT * FROM vms.search_points('{"catalog": "123"}');
SELECT * FROM vms.search_points('{"catalog": "44030400002150000099"}');
SELECT * FROM vms.search_points('{"unit": "没有的单位"}');
SELECT * FROM vms.search_points('{"unit": true}');
SELECT * FROM vms.search_points('{"point_type": "tower"}');
SELECT * FROM vms.search_points('{"place_type": []}');
SELECT * FROM vms.search_points('{"capability": 3}');
SELECT * FROM vms.search_points('{}', -1);
SELECT * FROM vms.search_points('{}', 10, -5);
-- numbers out of range name their key and field, also those no float holds
SELECT * FROM vms.search_points('{"circle": {"lon": 114, "lat": 91, "radius_m": 10}}');
SELECT * FROM vms.search_points('{"circle": {"lon": 114, "lat": 22, "radius_m": 100001}}');
SELECT * FROM vms.search_points('{"circle": {"lon": 114, "lat": 22, "radius_m": 1e400}}');
SELECT * FROM vms.search_points('{"circle": {"lon": 114, "lat": 22, "radius_m": "10"}}');
SELECT * FROM vms.search_points('{"circle": {"lon": 114, "lat": 22, "radius_m": 10, "unit": "km"}}');
SELECT * FROM vms.search_points('{"bbox": [114, -91, 115, 23]}');
SELECT * FROM vms.search_points('{"near": {"lon": 114, "lat": -90.5}}');
SELECT * FROM vms.search_points('{"near": {"lon": 114, "lat": 22, "k": 0}}');
SELECT * FROM vms.search_points('{"near": {"lon": 114, "lat": 22, "k": 10001}}');
SELECT * FROM vms.search_points('{"near": {"lon": 114, "lat": 22, "k": 2.5}}');
SELECT * FROM vms.search_points('{"near": {"lon": 114, "lat": 22, "radius_m": 5}}');
-- geometries: self-intersecting or unclosed polygons, coordinates outside WGS-84, empty lines
SELECT * FROM vms.search_points('{"polygon": {"type": "Polygon", "coordinates": [[[114.0, 22.5], [114.1, 22.6], [114.1, 22.5], [114.0, 22.6], [114.0, 22.5]]]}}');
SELECT * FROM vms.search_points('{"polygon": {"type": "Polygon", "coordinates": [[[114.0, 22.5], [114.1, 22.6], [114.1, 22.5]]]}}');
SELECT * FROM vms.search_points('{"polygon": {"type": "Polygon", "coordinates": [[[200, 22.5], [201, 22.6], [201, 22.5], [200, 22.5]]]}}');
SELECT * FROM vms.search_points('{"line": {"geojson": {"type": "LineString", "coordinates": []}, "buffer_m": 5}}');
SELECT * FROM vms.search_points('{"line": {"geojson": {"type": "LineString", "coordinates": [[114.0, 22.5]]}, "buffer_m": 5}}');
SELECT * FROM vms.search_points('{"line": {"geojson": {"type": "LineString", "coordinates": [[114.0, 22.5], [114.0, 22.5]]}, "buffer_m": 5}}');
SELECT * FROM vms.search_points('{"line": {"geojson": {"type": "LineString", "coordinates": [[114.0, 22.5], [114.1, 22.5]]}, "buffer_m": 10001}}');
SELECT * FROM vms.search_points('{"line": {"geojson": {"type": "MultiLineString", "coordinates": []}, "buffer_m": 5}}');

-- saved searches and history
TRUNCATE vms.search_history;
SELECT vms.search_save('园岭路口', '{"tags_any": ["路口"], "unit": "园岭派出所"}') > 0 AS saved;
SELECT vms.search_save('园岭路口', '{"tags_any": ["交通"], "unit": "园岭派出所"}') > 0 AS replaced;
SELECT owner = session_user AS mine, name, filter FROM vms.saved_search;
SELECT code FROM vms.search_saved('园岭路口') ORDER BY code;
SELECT vms.search_save('bad', '{"bbox": 1}');
SELECT * FROM vms.search_saved('没有保存');
SELECT username = session_user AS mine, filter, result_count FROM vms.search_history ORDER BY id;
SELECT code FROM vms.search_rerun((SELECT min(id) FROM vms.search_history)) ORDER BY code;
SELECT count(*) AS history_rows FROM vms.search_history;

-- GeoJSON for the map system
SELECT jsonb_pretty(vms.search_geojson('{"near": {"lon": 114.01, "lat": 22.51}}', 1));
-- bulk tagging of everything a search returns
SELECT vms.tag_search_results('{"circle": {"lon": 114.03, "lat": 22.53, "radius_m": 100}}', '学校校门'::text);
SELECT vms.tag_create('custom', '重点') > 0;
SELECT vms.tag_search_results('{"circle": {"lon": 114.03, "lat": 22.53, "radius_m": 100}}', 'custom:重点');
SELECT channel_code, source FROM vms.channel_tag ct JOIN vms.tag t ON t.id = ct.tag_id WHERE t.name = '重点' ORDER BY 1;

-- the keyword filter is answered by the gram index
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT code FROM vms.channel c
 WHERE vms.text_grams(vms.channel_search_text(c.name, c.alias, c.address, c.place_type)) @> vms.keyword_grams('望京');
RESET enable_seqscan;
SELECT vms.text_grams('望京 SOHO'), vms.keyword_grams('望京'), vms.keyword_grams('望'), vms.keyword_grams('Soho T1');
SELECT vms.keyword_grams('潘家园华威路南向北') AS four_of_eight_grams;

-- A keyword that ANALYZE's statistics call common is answered by reading the
-- table's first pages in storage order, not every match of the gram index
-- (vms._search_points_as).  Every page at every offset is the bare query's
-- in storage order, whether those first pages hold all of a page's rows,
-- some of them (the rest found past them) or none (40 rows without the
-- keyword come first); some pages never touch the gram index.
INSERT INTO vms.channel (code, device_code, name, civil_code, point_type)
SELECT vms.gbcode_make('44030401', 0, 132, 0, 90000 + i), (SELECT device_code FROM vms.channel ORDER BY code LIMIT 1),
       CASE WHEN i > 40 AND i % 2 = 0 THEN '探针大道' || i ELSE '其他街' || i END, '440304', 'dome'
  FROM generate_series(1, 1000) i;
ANALYZE vms.channel;
SELECT pg_stat_force_next_flush();
SELECT idx_scan AS kw_scans FROM pg_stat_user_indexes WHERE indexrelname = 'channel_keyword_idx' \gset
SELECT count(*) AS calls,
       count(*) FILTER (WHERE ARRAY(SELECT s.code::text FROM vms.search_points('{"keyword": "探针大道"}', lim, off) s)
                              = ARRAY(SELECT c.code::text FROM vms.channel c
                                       WHERE concat_ws(' ', c.name, c.alias, c.address, c.place_type) LIKE '%探针大道%'
                                       ORDER BY c.ctid LIMIT lim OFFSET off)) AS same_rows
  FROM (VALUES (1), (2), (4), (9), (16), (25), (38)) l(lim), (VALUES (0), (1), (5), (13), (440)) o(off);
SELECT pg_stat_force_next_flush();
SELECT idx_scan - :kw_scans < 35 AS some_pages_without_the_index FROM pg_stat_user_indexes WHERE indexrelname = 'channel_keyword_idx';
