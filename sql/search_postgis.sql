-- Point search against bare PostGIS.  600 seeded random filters -- circles
-- of 1 m to 50 km, lines with buffers, polygons, boxes and near with several
-- k, each sometimes combined with a keyword, tags and a unit -- over points
-- around 12 cities from 18°N to 53°N, with extra points on and beside every
-- filter's edge.  Each search must return what the plain PostGIS query over
-- vms.channel returns: the same set; for circle and near, which order by
-- geodesic distance, the same page in the same order with the same
-- distance_m.  Tiles must hold exactly the channels a plain ST_TileEnvelope
-- query finds.  Every mismatch count below must be 0.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SET search_path = public, vms;
SELECT setseed(0.11);

-- units (a root and three below it) and tags (巡检乙 below 巡检甲)
INSERT INTO vms.org_unit (name) VALUES ('比对总队');
INSERT INTO vms.org_unit (name, parent_id)
SELECT '比对支队' || i, (SELECT id FROM vms.org_unit WHERE name = '比对总队') FROM generate_series(1, 3) i;
SELECT count(*) AS tags FROM (SELECT vms.tag_create('scenario', '巡检甲'), vms.tag_create('scenario', '巡检乙', '巡检甲'),
                                     vms.tag_create('scenario', '巡检丙'), vms.tag_create('custom', '巡检丁')) t;

CREATE TEMP TABLE city (n int, name text, lon float8, lat float8);
INSERT INTO city VALUES (1, '三亚', 109.52, 18.26), (2, '海口', 110.34, 20.02), (3, '广州', 113.27, 23.14),
    (4, '福州', 119.31, 26.09), (5, '长沙', 112.95, 28.22), (6, '武汉', 114.31, 30.58), (7, '西安', 108.95, 34.35),
    (8, '北京', 116.41, 39.91), (9, '沈阳', 123.44, 41.80), (10, '长春', 125.33, 43.83), (11, '哈尔滨', 126.54, 45.81),
    (12, '漠河', 122.53, 52.97);

-- points: dense near each centre, thinning out to about 60 km
CREATE TEMP TABLE pt (geom geometry);
INSERT INTO pt SELECT ST_SetSRID(ST_MakePoint(c.lon + (random() - 0.5) * 1.2 * random() ^ 2,
                                              c.lat + (random() - 0.5) * 1.2 * random() ^ 2), 4326)
  FROM city c, generate_series(1, 200);

-- the filters: kind, the filter, the page, and the bare PostGIS condition
CREATE TEMP TABLE f (i int PRIMARY KEY, kind text, spatial jsonb, extra jsonb, bare_extra text,
                     lim int, off int, k int, p geometry, r float8, g geometry);
INSERT INTO f (i, kind, p, r)
SELECT s.i, (ARRAY['circle', 'circle', 'near', 'near', 'line', 'polygon', 'bbox'])[1 + floor(random() * 7)::int],
       ST_SetSRID(ST_MakePoint(c.lon + (random() - 0.5) * 0.6, c.lat + (random() - 0.5) * 0.6), 4326),
       exp(random() * ln(50000))            -- 1 m to 50 km, log-uniform
  FROM (SELECT i, 1 + floor(random() * 12)::int AS cn FROM generate_series(1, 600) i) s JOIN city c ON c.n = s.cn;
UPDATE f SET r = r / 5 WHERE kind = 'line';                                -- buffer_m is at most 10 km
UPDATE f SET g = ST_SetSRID(ST_MakeLine(ARRAY(
                  SELECT ST_MakePoint(ST_X(p) + (random() - 0.5) * s, ST_Y(p) + (random() - 0.5) * s * 0.4)
                    FROM generate_series(0, 1 + (i % 3)) j, (SELECT 0.05 + random() * 0.9 AS s) z)), 4326)
 WHERE kind = 'line';
-- a quarter of the lines run due east: their arcs bow north of the vertices
UPDATE f SET g = ST_MakeLine(p, ST_SetSRID(ST_MakePoint(ST_X(p) + 0.2 + random() * 0.8, ST_Y(p)), 4326)) WHERE kind = 'line' AND i % 4 = 1;
-- star-shaped polygons: 3 to 7 vertices at increasing angles
UPDATE f SET g = (SELECT ST_SetSRID(ST_MakePolygon(ST_AddPoint(l, ST_StartPoint(l))), 4326)
                    FROM (SELECT ST_MakeLine(ARRAY(
                            SELECT ST_MakePoint(ST_X(p) + cos(a) * rr, ST_Y(p) + sin(a) * rr)
                              FROM (SELECT 2 * pi() * (j + random() * 0.8) / n AS a, 0.002 + random() * 0.3 AS rr
                                      FROM generate_series(0, n - 1) j ORDER BY j) v)) AS l
                            FROM (SELECT 3 + i % 5 AS n) nn) s)
 WHERE kind = 'polygon';
UPDATE f SET g = ST_MakeEnvelope(ST_X(p) - random() * 0.2, ST_Y(p) - random() * 0.2,
                                 ST_X(p) + random() * 0.2, ST_Y(p) + random() * 0.2, 4326)
 WHERE kind = 'bbox';
UPDATE f SET spatial = CASE kind
    WHEN 'circle' THEN jsonb_build_object('circle', jsonb_build_object('lon', ST_X(p), 'lat', ST_Y(p), 'radius_m', r))
    WHEN 'near' THEN jsonb_build_object('near', jsonb_build_object('lon', ST_X(p), 'lat', ST_Y(p))
                                                || CASE WHEN i % 3 = 0 THEN jsonb_build_object('k', (ARRAY[1, 3, 10, 25, 60])[1 + i % 5]) ELSE '{}' END)
    WHEN 'line' THEN jsonb_build_object('line', jsonb_build_object('geojson', ST_AsGeoJSON(g)::jsonb, 'buffer_m', r))
    WHEN 'polygon' THEN jsonb_build_object('polygon', ST_AsGeoJSON(g)::jsonb)
    WHEN 'bbox' THEN jsonb_build_object('bbox', jsonb_build_array(ST_XMin(g), ST_YMin(g), ST_XMax(g), ST_YMax(g)))
    END,
    k = CASE WHEN kind = 'near' AND i % 3 = 0 THEN (ARRAY[1, 3, 10, 25, 60])[1 + i % 5] END,
    -- circle and near come in pages; the rest is compared as a whole set
    lim = CASE WHEN kind = 'circle' THEN (ARRAY[1, 5, 20, 100, 100000])[1 + floor(random() * 5)::int]
               WHEN kind = 'near' THEN (ARRAY[1, 5, 20, 100])[1 + floor(random() * 4)::int] ELSE 100000 END,
    off = CASE WHEN kind IN ('circle', 'near') AND random() < 0.3 THEN floor(random() * 15)::int ELSE 0 END,
    extra = '{}', bare_extra = '';

-- the geometry and numbers exactly as the JSON says (GeoJSON and jsonb print fewer digits)
UPDATE f SET p = CASE WHEN kind IN ('circle', 'near')
                      THEN ST_SetSRID(ST_MakePoint((spatial #>> (ARRAY[kind, 'lon']))::float8, (spatial #>> (ARRAY[kind, 'lat']))::float8), 4326) END,
             r = CASE kind WHEN 'circle' THEN (spatial #>> '{circle,radius_m}')::float8 WHEN 'line' THEN (spatial #>> '{line,buffer_m}')::float8 END,
             g = CASE kind WHEN 'line' THEN ST_SetSRID(ST_GeomFromGeoJSON((spatial #> '{line,geojson}')::text), 4326)
                           WHEN 'polygon' THEN ST_SetSRID(ST_GeomFromGeoJSON((spatial -> 'polygon')::text), 4326)
                           WHEN 'bbox' THEN ST_MakeEnvelope((spatial #>> '{bbox,0}')::float8, (spatial #>> '{bbox,1}')::float8,
                                                            (spatial #>> '{bbox,2}')::float8, (spatial #>> '{bbox,3}')::float8, 4326) END;

-- keywords, tags and units on about a third of the filters each
UPDATE f SET extra = extra || jsonb_build_object('keyword', w),
             bare_extra = bare_extra || format(' AND strpos(concat_ws('' '', c.name, c.alias, c.address, c.place_type), %L) > 0', w)
  FROM (SELECT i AS j, (ARRAY['中山路', '人民', '南向北', '路东向', '漠河', '北京', '解放路西'])[1 + floor(random() * 7)::int] AS w FROM f) x
 WHERE j = i AND random() < 0.35;
UPDATE f SET extra = extra || jsonb_build_object(CASE WHEN all_ THEN 'tags_all' ELSE 'tags_any' END, to_jsonb(t)),
             bare_extra = bare_extra || CASE WHEN all_
                 THEN (SELECT string_agg(format(' AND EXISTS (SELECT 1 FROM vms.channel_tag ct WHERE ct.channel_code = c.code AND ct.tag_id IN (%s))',
                                                format(subtree, ARRAY[e])), '') FROM unnest(t) e)
                 ELSE format(' AND EXISTS (SELECT 1 FROM vms.channel_tag ct WHERE ct.channel_code = c.code AND ct.tag_id IN (%s))', format(subtree, t)) END
  FROM (SELECT i AS j, random() < 0.5 AS all_,
               string_to_array((ARRAY['巡检甲', '巡检乙', '巡检甲,巡检丙', '巡检丁,巡检乙'])[1 + floor(random() * 4)::int], ',') AS t,
               -- the tags named and every tag below them
               'WITH RECURSIVE s(id) AS (SELECT id FROM vms.tag WHERE name = ANY (%L::text[])
                                         UNION ALL SELECT g.id FROM vms.tag g JOIN s ON g.parent_id = s.id) SELECT id FROM s' AS subtree
          FROM f) x
 WHERE j = i AND random() < 0.35;
UPDATE f SET extra = extra || jsonb_build_object('unit', u),
             bare_extra = bare_extra || format(' AND c.unit_id IN (WITH RECURSIVE s(id) AS (SELECT id FROM vms.org_unit WHERE name = %L UNION ALL
                                                   SELECT o.id FROM vms.org_unit o JOIN s ON o.parent_id = s.id) SELECT id FROM s)', u)
  FROM (SELECT i AS j, (ARRAY['比对总队', '比对支队1', '比对支队2'])[1 + floor(random() * 3)::int] AS u FROM f) x
 WHERE j = i AND random() < 0.3;

-- points on and beside every edge: a circle's rim at ±1 mm, ±0.1 % and
-- exactly; a line's buffer from points on its great-circle arcs; a box's and
-- a polygon's edges and vertices; the same point twice (ties in near)
INSERT INTO pt SELECT ST_Project(p::geography, r * m, random() * 2 * pi())::geometry
  FROM f, unnest(ARRAY[1, 1, 0.999, 1.001]) m WHERE kind = 'circle';
INSERT INTO pt SELECT ST_Project(p::geography, r + d, random() * 2 * pi())::geometry
  FROM f, unnest(ARRAY[-0.001, 0.001]) d WHERE kind = 'circle';
INSERT INTO pt SELECT ST_Project(v.geom::geography, r * m, random() * 2 * pi())::geometry
  FROM f, LATERAL (SELECT geom FROM ST_DumpPoints(ST_Segmentize(g::geography, 2000)::geometry) ORDER BY random() LIMIT 4) v,
       unnest(ARRAY[0, 0.999, 1, 1.001]) m WHERE kind = 'line';
INSERT INTO pt SELECT ST_SetSRID(ST_MakePoint(x, y), 4326) FROM f,
       LATERAL (VALUES (ST_XMin(g), ST_YMin(g) + random() * (ST_YMax(g) - ST_YMin(g))),
                       (ST_XMax(g), ST_YMax(g)), (ST_XMin(g) - 1e-9, ST_YMin(g)),
                       (ST_XMin(g) + random() * (ST_XMax(g) - ST_XMin(g)), ST_YMax(g))) v(x, y) WHERE kind = 'bbox';
INSERT INTO pt SELECT d.geom FROM f, ST_DumpPoints(g) d WHERE kind = 'polygon';
INSERT INTO pt SELECT ST_LineInterpolatePoint(ST_ExteriorRing(g), random()) FROM f WHERE kind = 'polygon';
INSERT INTO pt SELECT p FROM f WHERE kind = 'near';
INSERT INTO pt SELECT geom FROM pt WHERE random() < 0.03;

-- the channels: names from road names and directions, tags and units at random
INSERT INTO vms.device (code, name) VALUES (vms.gbcode_make('55000000', 0, 118, 0, 1), '比对NVR');
INSERT INTO vms.channel (code, device_code, name, address, unit_id, geom)
SELECT vms.gbcode_make('55000000', 0, 132, 0, 100000 + n::int), vms.gbcode_make('55000000', 0, 118, 0, 1),
       (SELECT name FROM city ORDER BY geom <-> ST_SetSRID(ST_MakePoint(lon, lat), 4326) LIMIT 1)
         || (ARRAY['中山路', '人民路', '解放路', '建设路', '和平路'])[1 + floor(random() * 5)::int]
         || (ARRAY['东向西', '西向东', '南向北', '北向南'])[1 + floor(random() * 4)::int] || '-' || n,
       CASE WHEN random() < 0.5 THEN '人民大道' || n || '号' END,
       CASE WHEN random() < 0.8 THEN (SELECT id FROM vms.org_unit WHERE name = (ARRAY['比对总队', '比对支队1', '比对支队2', '比对支队3'])[1 + floor(random() * 4)::int]) END,
       geom
  FROM (SELECT row_number() OVER () AS n, geom FROM pt) s;
INSERT INTO vms.channel_tag (channel_code, tag_id)
SELECT c.code, t.id FROM vms.channel c, vms.tag t
 WHERE c.code::text LIKE '55000000%' AND t.name IN ('巡检甲', '巡检乙', '巡检丙', '巡检丁') AND random() < 0.3;
ANALYZE vms.channel;
ANALYZE vms.channel_tag;
SELECT count(*) AS channels, count(DISTINCT geom) AS places FROM vms.channel WHERE code::text LIKE '55000000%';

-- run each filter both ways
CREATE FUNCTION pg_temp.bare(f f, OUT codes text[], OUT dists float8[]) LANGUAGE plpgsql AS $$
DECLARE
    cond text := CASE f.kind
        WHEN 'circle' THEN 'ST_DWithin(c.geom::geography, $1::geography, $2)'
        WHEN 'near' THEN 'c.geom IS NOT NULL'
        WHEN 'line' THEN 'ST_DWithin(c.geom::geography, $3::geography, $2)'
        WHEN 'polygon' THEN 'ST_Intersects(c.geom, $3)'
        WHEN 'bbox' THEN 'c.geom && $3' END;
BEGIN
    IF f.kind IN ('circle', 'near') THEN
        EXECUTE format('SELECT array_agg(code ORDER BY d, code), array_agg(d ORDER BY d, code) FROM (
                          SELECT c.code, ST_Distance(c.geom::geography, $1::geography) AS d FROM vms.channel c
                           WHERE %s%s ORDER BY 2, c.code LIMIT $4 OFFSET $5) s', cond, f.bare_extra)
            INTO codes, dists
            USING f.p, f.r, f.g, CASE WHEN f.k IS NOT NULL THEN greatest(least(f.lim, f.k - f.off), 0) ELSE f.lim END, f.off;
    ELSE
        EXECUTE format('SELECT array_agg(c.code::text ORDER BY c.code::text) FROM vms.channel c WHERE %s%s', cond, f.bare_extra)
            INTO codes USING f.p, f.r, f.g;
    END IF;
END $$;
CREATE TEMP TABLE res AS
SELECT f.i, f.kind, f.extra <> '{}' AS combined, s.codes AS got, s.dists AS got_d, b.codes AS want, b.dists AS want_d
  FROM f
 CROSS JOIN LATERAL (SELECT CASE WHEN f.kind IN ('circle', 'near') THEN array_agg(x.code::text ORDER BY x.o)
                                 ELSE array_agg(x.code::text ORDER BY x.code::text) END AS codes,
                            CASE WHEN f.kind IN ('circle', 'near') THEN array_agg(x.distance_m ORDER BY x.o) END AS dists
                       FROM vms.search_points(f.spatial || f.extra, f.lim, f.off)
                            WITH ORDINALITY x(code, name, alias, address, point_type, place_type, unit_id, online, lon, lat, distance_m, o)) s
 CROSS JOIN LATERAL pg_temp.bare(f) b;

SELECT kind, count(*) AS filters, count(*) FILTER (WHERE combined) AS combined,
       count(*) FILTER (WHERE cardinality(want) > 0) AS nonempty, sum(cardinality(want)) AS points,
       count(*) FILTER (WHERE got IS DISTINCT FROM want) AS mismatches,
       count(*) FILTER (WHERE got_d IS DISTINCT FROM want_d) AS distance_mismatches
  FROM res GROUP BY ROLLUP (kind) ORDER BY kind;
-- the first few mismatches, if any
SELECT r.i, f.spatial || f.extra AS filter, f.lim, f.off, r.got, r.want FROM res r JOIN f USING (i)
 WHERE r.got IS DISTINCT FROM r.want OR r.got_d IS DISTINCT FROM r.want_d ORDER BY r.i LIMIT 5;

-- the points make the difference: the rims hold points where a sphere
-- disagrees with the spheroid, the near searches points whose order in
-- lon/lat degrees is not their order in metres, the lines points within the
-- buffer of a great-circle arc that lie outside its lon/lat box widened by
-- the buffer as search did before (vms 0.1.0's _metre_box)
SELECT count(*) > 0 AS sphere_differs
  FROM f, vms.channel c
 WHERE f.kind = 'circle' AND c.geom && ST_Expand(f.p, 1)
   AND (ST_DistanceSphere(c.geom, f.p) <= f.r) <> ST_DWithin(c.geom::geography, f.p::geography, f.r);
SELECT count(*) > 0 AS degree_order_differs
  FROM res r JOIN f USING (i)
 WHERE f.kind = 'near' AND cardinality(r.want) > 1
   AND r.want <> ARRAY(SELECT c.code::text FROM vms.channel c WHERE c.code::text = ANY (r.want) ORDER BY c.geom <-> f.p, c.code);
SELECT count(*) > 0 AS arc_outside_planar_box
  FROM f, vms.channel c
 WHERE f.kind = 'line' AND c.geom && ST_Expand(f.g, 0.2) AND ST_DWithin(c.geom::geography, f.g::geography, f.r)
   AND NOT c.geom && ST_Expand(ST_Envelope(f.g),
                              f.r / (111320 * cos(radians(greatest(abs(ST_YMin(f.g)), abs(ST_YMax(f.g)))))) * 1.01, f.r / 110574 * 1.01);

-- tiles: decode the Mapbox vector tile (keys, values, each feature's tags)
-- and compare its channels with ST_TileEnvelope's
CREATE FUNCTION pg_temp.varint(b bytea, INOUT pos int, OUT v bigint) LANGUAGE plpgsql AS $$
DECLARE shift int := 0; byte int;
BEGIN
    v := 0;
    LOOP
        byte := get_byte(b, pos); pos := pos + 1;
        v := v | ((byte & 127)::bigint << shift);
        EXIT WHEN byte < 128;
        shift := shift + 7;
    END LOOP;
END $$;
-- every feature's value of one key (strings and whole numbers)
CREATE FUNCTION pg_temp.mvt_values(tile bytea, key text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    p int := 0; lend int; fend int; vend int; tend int; tag bigint; len bigint; r record;
    keys text[]; vals text[]; feats int[]; ftags int[]; v text; n int;
BEGIN
    WHILE p < length(tile) LOOP
        r := pg_temp.varint(tile, p); p := r.pos; tag := r.v;
        r := pg_temp.varint(tile, p); p := r.pos; len := r.v;
        CONTINUE WHEN tag <> 26;                    -- a layer
        lend := p + len; keys := '{}'; vals := '{}'; feats := '{}';
        WHILE p < lend LOOP
            r := pg_temp.varint(tile, p); p := r.pos; tag := r.v;
            IF tag & 7 = 0 THEN r := pg_temp.varint(tile, p); p := r.pos; CONTINUE; END IF;
            r := pg_temp.varint(tile, p); p := r.pos; len := r.v;
            IF tag = 26 THEN
                keys := keys || convert_from(substring(tile FROM p + 1 FOR len::int), 'UTF8');
            ELSIF tag = 34 THEN                     -- a value: string or integer
                vend := p + len; v := NULL;
                WHILE p < vend LOOP
                    r := pg_temp.varint(tile, p); p := r.pos; tag := r.v;
                    IF tag = 10 THEN
                        r := pg_temp.varint(tile, p); p := r.pos;
                        v := convert_from(substring(tile FROM p + 1 FOR r.v::int), 'UTF8'); p := p + r.v::int;
                    ELSIF tag IN (32, 40) THEN r := pg_temp.varint(tile, p); p := r.pos; v := r.v::text;
                    ELSIF tag = 48 THEN r := pg_temp.varint(tile, p); p := r.pos; v := ((r.v >> 1) # -(r.v & 1))::text;
                    ELSIF tag & 7 = 0 THEN r := pg_temp.varint(tile, p); p := r.pos;
                    ELSIF tag & 7 = 1 THEN p := p + 8;
                    ELSIF tag & 7 = 5 THEN p := p + 4;
                    ELSE r := pg_temp.varint(tile, p); p := r.pos + r.v::int;
                    END IF;
                END LOOP;
                vals := vals || v;
                p := vend;
                CONTINUE;
            ELSIF tag = 18 THEN                     -- a feature: its tags
                fend := p + len; ftags := '{}';
                WHILE p < fend LOOP
                    r := pg_temp.varint(tile, p); p := r.pos; tag := r.v;
                    IF tag & 7 = 0 THEN r := pg_temp.varint(tile, p); p := r.pos; CONTINUE; END IF;
                    r := pg_temp.varint(tile, p); p := r.pos; len := r.v;
                    IF tag = 18 THEN
                        tend := p + len;
                        WHILE p < tend LOOP r := pg_temp.varint(tile, p); p := r.pos; ftags := ftags || r.v::int; END LOOP;
                    END IF;
                    p := p + CASE WHEN tag = 18 THEN 0 ELSE len::int END;
                END LOOP;
                feats := feats || ARRAY[-1] || ftags;   -- -1 separates features
                p := fend;
                CONTINUE;
            END IF;
            p := p + len::int;
        END LOOP;
        -- each feature's value of the key
        n := 1;
        WHILE n <= cardinality(feats) LOOP
            IF feats[n] = -1 THEN n := n + 1; CONTINUE; END IF;
            IF keys[feats[n] + 1] = key THEN RETURN NEXT vals[feats[n + 1] + 1]; END IF;
            n := n + 2;
        END LOOP;
        p := lend;
    END LOOP;
END $$;
-- tiles over the cities at zoom 8 to 18, and channels on their edges
CREATE TEMP TABLE tl AS
SELECT DISTINCT z, floor((lon + 180) / 360 * 2 ^ z)::int AS x,
       floor((1 - ln(tan(radians(lat)) + 1 / cos(radians(lat))) / pi()) / 2 * 2 ^ z)::int AS y
  FROM (SELECT ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat, (ARRAY[8, 10, 12, 13, 14, 15, 16, 18])[1 + n % 8] AS z
          FROM (SELECT geom, row_number() OVER () AS n FROM vms.channel WHERE code::text LIKE '55000000%' ORDER BY random() LIMIT 80) c) s;
INSERT INTO vms.channel (code, device_code, name, geom)
SELECT vms.gbcode_make('55000000', 0, 132, 0, 300000 + (row_number() OVER ())::int), vms.gbcode_make('55000000', 0, 118, 0, 1), '瓦片边',
       ST_Transform(ST_SetSRID(ST_MakePoint(px, py), 3857), 4326)
  FROM tl, ST_TileEnvelope(z, x, y) e,
       LATERAL (VALUES (ST_XMin(e), ST_YMin(e) + random() * (ST_YMax(e) - ST_YMin(e))),
                       (ST_XMax(e), ST_YMin(e) + random() * (ST_YMax(e) - ST_YMin(e))),
                       (ST_XMin(e) + random() * (ST_XMax(e) - ST_XMin(e)), ST_YMax(e)),
                       (ST_XMin(e) + random() * (ST_XMax(e) - ST_XMin(e)), ST_YMin(e)),
                       (ST_XMax(e), ST_YMax(e))) v(px, py);
SELECT count(*) AS tiles,
       count(*) FILTER (WHERE z >= 13 AND got_codes IS DISTINCT FROM want_codes) AS point_tile_mismatches,
       count(*) FILTER (WHERE z < 13 AND got_count IS DISTINCT FROM want_count) AS cluster_tile_mismatches,
       sum(want_count) AS channels_in_tiles
  FROM (SELECT tl.z,
               CASE WHEN z >= 13 THEN ARRAY(SELECT v FROM pg_temp.mvt_values(t, 'code') v ORDER BY v) END AS got_codes,
               CASE WHEN z >= 13 THEN ARRAY(SELECT c.code::text FROM vms.channel c
                                             WHERE ST_Transform(c.geom, 3857) && ST_TileEnvelope(tl.z, tl.x, tl.y) ORDER BY 1) END AS want_codes,
               CASE WHEN z >= 13 THEN (SELECT count(*) FROM pg_temp.mvt_values(t, 'code'))
                    ELSE (SELECT sum(v::bigint) FROM pg_temp.mvt_values(t, 'count') v) END AS got_count,
               (SELECT count(*) FROM vms.channel c WHERE ST_Transform(c.geom, 3857) && ST_TileEnvelope(tl.z, tl.x, tl.y)) AS want_count
          FROM tl, vms.channel_tiles(tl.z, tl.x, tl.y) t) s;
-- The bound that lets near answer from one index probe: a point e lon/lat
-- degrees from p (e up to the cap) is at least e * vms._degrees_floor_rate(p,
-- cap) - 1 mm metres from it by ST_Distance on geography.  20,000 random
-- pairs at every latitude to 84°, e log-uniform from 1e-6 to 0.5 degrees in
-- any direction: no pair nearer than the bound (violations 0), and the bound
-- within 3 % of the nearest pair (it is not a vacuous 0); 0 beyond 89° or
-- across the antimeridian.
SELECT count(*) FILTER (WHERE d < e * rate - 1e-3) AS floor_violations,
       min(d / (e * rate)) BETWEEN 1 AND 1.03 AS floor_tight
  FROM (SELECT e, vms._degrees_floor_rate(p, 0.5) AS rate,
               ST_Distance(p::geography, ST_SetSRID(ST_MakePoint(ST_X(p) + e * cos(t), ST_Y(p) + e * sin(t)), 4326)::geography) AS d
          FROM (SELECT ST_SetSRID(ST_MakePoint(-178 + random() * 356, -84 + random() * 168), 4326) AS p,
                       exp(ln(1e-6) + random() * (ln(0.5) - ln(1e-6))) AS e, random() * 2 * pi() AS t
                  FROM generate_series(1, 20000)) s) s;
SELECT vms._degrees_floor_rate('SRID=4326;POINT(116 88.7)', 0.5) AS near_pole,
       vms._degrees_floor_rate('SRID=4326;POINT(178.7 10)', 0.5) AS near_antimeridian,
       vms._degrees_floor_rate('SRID=4326;POINT(116 40)', 6) AS cap_too_wide;
