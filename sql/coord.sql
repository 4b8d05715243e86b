-- coordinate conversions against published reference values
\set SHOW_CONTEXT never
SET search_path = public, vms;
-- reference values of the widely used coordtransform library for (116.404, 39.915)
SELECT abs(r[1] - 116.41024449916938) < 1e-9 AND abs(r[2] - 39.91640428150164) < 1e-9 AS wgs84_to_gcj02_ok
  FROM vms.coord_convert(116.404, 39.915, 'WGS84', 'GCJ02') r;
SELECT abs(r[1] - 116.41036949371029) < 1e-9 AND abs(r[2] - 39.92133699351021) < 1e-9 AS gcj02_to_bd09_ok
  FROM vms.coord_convert(116.404, 39.915, 'GCJ02', 'BD09') r;
SELECT abs(r[1] - 116.39762729119315) < 1e-9 AND abs(r[2] - 39.90865673957631) < 1e-9 AS bd09_to_gcj02_ok
  FROM vms.coord_convert(116.404, 39.915, 'BD09', 'GCJ02') r;
-- the inverse is exact to 1e-8 degrees (the one-step approximation is off by ~3e-7)
SELECT abs(r[1] - 116.404) < 1e-8 AND abs(r[2] - 39.915) < 1e-8 AS gcj02_round_trip
  FROM vms.coord_convert(116.41024449916938, 39.91640428150164, 'GCJ02', 'WGS84') r;
SELECT round(r[1]::numeric, 7) AS lon, round(r[2]::numeric, 7) AS lat
  FROM vms.coord_convert(116.404, 39.915, 'GCJ02', 'WGS84') r;
-- round trips for points across China (the usual BD-09 inverse is approximate, ~10 cm)
SELECT bool_and(ST_Distance(p::geography, vms.bd09_to_wgs84(vms.wgs84_to_bd09(p))::geography) < 0.5) AS bd09_round_trip_under_50cm,
       bool_and(ST_Distance(p::geography, vms.gcj02_to_wgs84(vms.wgs84_to_gcj02(p))::geography) < 0.01) AS gcj02_round_trip_under_1cm,
       bool_and(ST_Distance(p::geography, vms.wgs84_to_gcj02(p)::geography) BETWEEN 50 AND 800) AS gcj_offset_plausible
  FROM (VALUES (ST_SetSRID(ST_MakePoint(116.397, 39.909), 4326)), (ST_SetSRID(ST_MakePoint(121.4737, 31.2304), 4326)),
               (ST_SetSRID(ST_MakePoint(114.0579, 22.5431), 4326)), (ST_SetSRID(ST_MakePoint(87.6168, 43.8256), 4326)),
               (ST_SetSRID(ST_MakePoint(91.1322, 29.6604), 4326))) v(p);
-- outside China GCJ-02 is the identity
SELECT vms.coord_convert(2.3522, 48.8566, 'WGS84', 'GCJ02');
-- CGCS2000 is taken as WGS-84; names are case- and dash-insensitive
SELECT vms.coord_convert(116.404, 39.915, 'cgcs2000', 'wgs-84'), vms.coord_convert(116.404, 39.915, 'EPSG:4490', 'epsg:4326');
SELECT ST_AsText(vms.to_wgs84(116.404, 39.915)), ST_SRID(vms.to_wgs84(116.404, 39.915, 'gcj-02'));
SELECT ST_AsText(vms.to_wgs84(116.41024449916938, 39.91640428150164, 'GCJ02'), 7);
-- bad input
\set VERBOSITY default
SELECT vms.coord_convert(116.404, 39.915, 'WGS84', 'UTM50');
SELECT vms.coord_convert(196.404, 39.915, 'WGS84', 'GCJ02');
SELECT vms.coord_convert('NaN', 39.915, 'WGS84', 'GCJ02');
