-- PostGIS in a schema of its own (not public): vms installs, every SECURITY
-- DEFINER function is pinned to vms, that schema and pg_temp, and search,
-- tiles, view cones and rights work for an analyst whose search_path names
-- neither vms nor PostGIS's schema.
\set SHOW_CONTEXT never
SET client_min_messages = error;
CREATE DATABASE regress_vms_gis;
\c regress_vms_gis
SET client_min_messages = error;
CREATE SCHEMA gis;
CREATE EXTENSION postgis SCHEMA gis;
CREATE EXTENSION vms;
SET client_min_messages = warning;
SELECT e.extname, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname IN ('postgis', 'vms') ORDER BY 1;
SELECT c AS definer_search_path, count(*) > 10 AS many
  FROM pg_proc p CROSS JOIN unnest(p.proconfig) c
 WHERE p.pronamespace = 'vms'::regnamespace AND p.prosecdef AND c LIKE 'search_path=%' GROUP BY 1;
SELECT count(*) AS definer_functions_not_pinned FROM pg_proc p
 WHERE p.pronamespace = 'vms'::regnamespace AND p.prosecdef
   AND NOT 'search_path=vms, gis, pg_temp' = ANY (coalesce(p.proconfig, '{}'));

-- two streets of 成都; the analyst holds a grant on the first
INSERT INTO vms.device (code, name) VALUES ('51010400001180000001', '锦江NVR');
INSERT INTO vms.channel (code, device_code, name, civil_code, geom, azimuth, fov_angle, fov_range_m)
SELECT format('5101040%s001320%s', s, lpad(i::text, 6, '0')), '51010400001180000001', format('锦江%s-%s', s, i),
       '5101040' || s, vms.to_wgs84(104.08 + i * 0.001, 30.65 + s * 0.001), 90, 360, 300
  FROM generate_series(1, 2) s, generate_series(1, 3) i;
CREATE ROLE regress_gis_ana LOGIN IN ROLE vms_analyst;
INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level, granted_by)
VALUES ('regress_gis_ana', 'region', '51010401', '{view_live}', 1, 'regress');

SET SESSION AUTHORIZATION regress_gis_ana;
SET search_path = "$user";
SELECT code, round(distance_m) AS distance_m
  FROM vms.search_points('{"circle": {"lon": 104.081, "lat": 30.651, "radius_m": 2000}}');
SELECT code FROM vms.search_points('{"polygon": {"type": "Polygon", "coordinates": [[[104, 30.6], [104.2, 30.6], [104.2, 30.7], [104, 30.7], [104, 30.6]]]}}')
 ORDER BY code;
SELECT code FROM vms.search_points('{"near": {"lon": 104.0835, "lat": 30.652}}', 1);
SELECT vms.search_geojson('{"keyword": "锦江1-2"}') -> 'features' -> 0 -> 'geometry' AS geojson;
SELECT length(vms.channel_tiles(13, 6464, 3362)) > 0 AS tile_z13,
       position('51010401001320000001' IN encode(vms.channel_tiles(13, 6464, 3362), 'escape')) > 0 AS has_own,
       position('51010402' IN encode(vms.channel_tiles(13, 6464, 3362), 'escape')) = 0 AS hides_other,
       length(vms.channel_tiles(3, 6, 3)) > 0 AS tile_z3;
SELECT code FROM vms.cameras_seeing(vms.to_wgs84(104.0815, 30.651), 1000) ORDER BY code;
SELECT vms.can('view_live', '51010401001320000001') AS own, vms.can('view_live', '51010402001320000001') AS other,
       vms.exercise_right('view_live', '51010401001320000001') > 0 AS audited;
SELECT vms.search_save('gis', '{"bbox": [104, 30.6, 104.2, 30.7]}') > 0 AS saved;
SELECT count(*) AS saved_rows FROM vms.search_saved('gis');
RESET search_path;
RESET SESSION AUTHORIZATION;
-- all of that ran without any privilege on schema gis: the definer
-- functions run as the owner.  Functions that run with the caller's rights
-- and call PostGIS (view cones) need what PostGIS itself needs in any
-- schema: USAGE on it, which public gives everyone by default.
GRANT USAGE ON SCHEMA gis TO PUBLIC;
SET SESSION AUTHORIZATION regress_gis_ana;
SET search_path = "$user";
SELECT round(vms.area_coverage(vms.view_cone(vms.to_wgs84(104.081, 30.651), 0, 360, 50), 1000)::numeric, 3) AS covered;
RESET search_path;
RESET SESSION AUTHORIZATION;

\c contrib_regression
SET client_min_messages = warning;
DROP DATABASE regress_vms_gis;
DROP ROLE regress_gis_ana;
