-- helpers for benchmarks: time a statement, format a BENCH line
SET check_function_bodies = off;
CREATE SCHEMA IF NOT EXISTS bench;

-- median wall time in milliseconds of running q `runs` times, to the
-- microsecond and always with three decimals: as a float8, a whole number
-- of milliseconds (one timing in a thousand) printed as "500", and a
-- file's `:x_ms / 1000` (psql \gset) was then integer division: 0 (the
-- incremental governance run's 0.000 s, once, when its row said 0.50 s)
SET client_min_messages = warning;
DROP FUNCTION IF EXISTS bench.time_ms(text, int);
RESET client_min_messages;
CREATE FUNCTION bench.time_ms(q text, runs int DEFAULT 1) RETURNS numeric
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    times float8[] := '{}';
BEGIN
    FOR i IN 1 .. runs LOOP
        t0 := clock_timestamp();
        EXECUTE q;
        times := times || extract(epoch FROM clock_timestamp() - t0) * 1000;
    END LOOP;
    RETURN round((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t) FROM unnest(times) t)::numeric, 3);
END $$;

CREATE OR REPLACE FUNCTION bench.line(name text, value float8, unit text, baseline float8, target text)
RETURNS text LANGUAGE sql AS $$
    SELECT format('BENCH %s %s %s baseline=%s ratio=%s target=%s', name, round(value::numeric, 3), unit,
                  round(baseline::numeric, 3), round((value / nullif(baseline, 0))::numeric, 3), target)
$$;

-- p50 and p95 in ms of n runs of a query template; %1$s and %2$s are replaced
-- by a random longitude and latitude inside the benchmark city each run
CREATE OR REPLACE FUNCTION bench.latency(tmpl text, n int, OUT p50 float8, OUT p95 float8)
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    times float8[] := '{}';
    q text;
BEGIN
    FOR i IN 1 .. n LOOP
        q := format(tmpl, round((116.22 + random() * 0.36)::numeric, 6), round((39.77 + random() * 0.26)::numeric, 6));
        t0 := clock_timestamp();
        EXECUTE q;
        times := times || extract(epoch FROM clock_timestamp() - t0) * 1000;
    END LOOP;
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t), percentile_cont(0.95) WITHIN GROUP (ORDER BY t)
      INTO p50, p95 FROM unnest(times) t;
END $$;

-- the naive tile: every point of a plain table, no clustering
CREATE OR REPLACE FUNCTION bench.bare_tile(z int, x int, y int) RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT ST_AsMVT(f, 'pts', 4096, 'geom') FROM (
        SELECT ST_AsMVTGeom(ST_Transform(p.geom, 3857), ST_TileEnvelope(z, x, y), 4096, 64, true) AS geom, p.id
          FROM bench.pts p WHERE p.geom && ST_Transform(ST_TileEnvelope(z, x, y), 4326)) f
$$;

-- The benchmark city for governance (35_tiles_governance): Beijing's
-- Chaoyang district (110105) over the box lon 116.20-116.60, lat
-- 39.75-40.05, cut into 16 streets (11010501-16, real street names) on a
-- 4 x 4 grid whose lines wiggle like the roads and rivers real street
-- boundaries follow: each of the 40 grid segments is a polyline of n + 1
-- vertices displaced across the line by up to `amplitude` degrees of
-- latitude (1.3 x in longitude, about the same metres at 40 N), the
-- displacement a sum of two sines tapered to 0 at the grid nodes.  Both
-- streets beside a segment take its vertices, so the streets tile the
-- district exactly; the district's boundary is their union.  Its outer
-- edges wiggle too: part of the box lies outside the district.  `extra`
-- far-away streets of the rest of the province come with it
-- (bench.province_streets, below).
-- bench.street_point(k) draws a point uniformly in street k's straight
-- cell (k = i % 16 for the civil code 110105 || lpad(k + 1)): the 16 cells
-- have the same area and the same number of channels, so the points are
-- uniform over the box, and the channels the wiggle puts on the other side
-- of their street's boundary (about 2 %) are located in another street or
-- outside the district: found by the rules civil_code_mismatch and
-- outside_region, as a city's border cameras are.
CREATE OR REPLACE FUNCTION bench._boundary_shift(seg int, t float8, amplitude float8) RETURNS float8
LANGUAGE sql IMMUTABLE AS $$
    SELECT amplitude * sin(pi() * t)
           * (0.6 * sin(2 * pi() * (3 + seg % 3) * t + seg) + 0.4 * sin(2 * pi() * (7 + seg % 5) * t + 2 * seg))
$$;

CREATE OR REPLACE FUNCTION bench.street_point(k int) RETURNS geometry
LANGUAGE sql VOLATILE AS $$
    SELECT ST_SetSRID(ST_MakePoint(116.20 + 0.10 * (k % 4) + 0.10 * random(),
                                   39.75 + 0.075 * (k / 4) + 0.075 * random()), 4326)
$$;

CREATE OR REPLACE FUNCTION bench.city_regions(amplitude float8 DEFAULT 0.0025, n int DEFAULT 100, extra int DEFAULT 3000) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    names text[] := '{建外街道,朝外街道,呼家楼街道,三里屯街道,左家庄街道,香河园街道,和平街街道,安贞街道,
                      亚运村街道,小关街道,酒仙桥街道,麦子店街道,团结湖街道,六里屯街道,八里庄街道,双井街道}';
    pts geometry[];
BEGIN
    INSERT INTO vms.region (civil_code, name) VALUES ('11', '北京市'), ('1101', '市辖区')
        ON CONFLICT (civil_code) DO NOTHING;
    FOR k IN 0 .. 15 LOOP
        -- bottom (horizontal line r, cell c), right (vertical line c + 1),
        -- top (line r + 1, reversed), left (line c, reversed); segment ids:
        -- horizontal 5 * c + r, vertical 100 + 5 * r + c
        SELECT array_agg(p ORDER BY o) INTO pts FROM (
            SELECT o, ST_MakePoint(116.20 + 0.10 * (k % 4 + t), 39.75 + 0.075 * (k / 4)
                                   + bench._boundary_shift(5 * (k % 4) + k / 4, t, amplitude)) AS p
              FROM (SELECT j AS o, j::float8 / n AS t FROM generate_series(0, n) j) s
            UNION ALL
            SELECT n + o, ST_MakePoint(116.20 + 0.10 * (k % 4 + 1) + 1.3 * bench._boundary_shift(100 + 5 * (k / 4) + k % 4 + 1, t, amplitude),
                                       39.75 + 0.075 * (k / 4 + t))
              FROM (SELECT j AS o, j::float8 / n AS t FROM generate_series(1, n) j) s
            UNION ALL
            SELECT 2 * n + o, ST_MakePoint(116.20 + 0.10 * (k % 4 + t), 39.75 + 0.075 * (k / 4 + 1)
                                           + bench._boundary_shift(5 * (k % 4) + k / 4 + 1, t, amplitude))
              FROM (SELECT j AS o, (n - j)::float8 / n AS t FROM generate_series(1, n) j) s
            UNION ALL
            SELECT 3 * n + o, ST_MakePoint(116.20 + 0.10 * (k % 4) + 1.3 * bench._boundary_shift(100 + 5 * (k / 4) + k % 4, t, amplitude),
                                           39.75 + 0.075 * (k / 4 + t))
              FROM (SELECT j AS o, (n - j)::float8 / n AS t FROM generate_series(1, n) j) s) e;
        INSERT INTO vms.region (civil_code, name, boundary)
        VALUES ('110105' || lpad((k + 1)::text, 2, '0'), names[k + 1], ST_Multi(ST_SetSRID(ST_MakePolygon(ST_MakeLine(pts)), 4326)))
        ON CONFLICT (civil_code) DO UPDATE SET name = EXCLUDED.name, boundary = EXCLUDED.boundary;
    END LOOP;
    INSERT INTO vms.region (civil_code, name, boundary)
    SELECT '110105', '朝阳区', ST_Multi(ST_Union(boundary)) FROM vms.region WHERE civil_code LIKE '110105__'
    ON CONFLICT (civil_code) DO UPDATE SET name = EXCLUDED.name, boundary = EXCLUDED.boundary;
    -- the naming standard a city configures: everywhere a name of 2-64
    -- characters without spaces at its ends; in the district place, road,
    -- direction and number; in 酒仙桥 (11010511) also building numbers
    INSERT INTO vms.naming_pattern (civil_prefix, pattern, example, description) VALUES
        ('', '^[^[:space:]].{0,62}[^[:space:]]$', '朝阳门内大街东向西-001', '2-64 characters, no space at either end'),
        ('110105', '^[一-龥]{2,24}(东向西|西向东|南向北|北向南)-[0-9]{3,6}$', '望京阜通东大街东向西-00012',
         '朝阳: place and road, direction, dash and a number of 3-6 digits'),
        ('11010511', '^[一-龥]{2,24}([0-9]{1,3}号楼)?(东向西|西向东|南向北|北向南)-[0-9]{3,6}$', '酒仙桥路12号楼南向北-00031',
         '酒仙桥: place and road, an optional building number, direction, dash and number')
    ON CONFLICT (civil_prefix) DO UPDATE SET pattern = EXCLUDED.pattern, example = EXCLUDED.example,
                                             description = EXCLUDED.description;
    PERFORM bench.province_streets(extra);
    ANALYZE vms.region;
END $$;

-- The other streets of the province (issue 20's review): a city's region
-- table holds the whole province's street boundaries, thousands of them,
-- though its channels lie in one district, and a rule that went through
-- every boundary for every channel grew with them (0 / 4,000 / 40,000
-- far-away streets: 0.55 / 7.6 / 62.9 s over 108,000 channels).  n street
-- boundaries (8-digit codes 11 cc dd ss of other counties than 110105, no
-- channel declares them) on a grid over the rest of the province (lon
-- 115.40-117.50, lat 39.40-41.10), none of them within a cell of the city
-- box (lon 116.20-116.60, lat 39.75-40.05, where the ledger's and the
-- incremental bench's points lie): each a closed wiggly ring of `vertices`
-- vertices inside its cell, as many as a real street boundary has.
CREATE OR REPLACE FUNCTION bench.province_streets(n int DEFAULT 3000, vertices int DEFAULT 200) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s float8 := sqrt(2.10 * 1.70 / (n * 1.25 + 200));   -- the cell side, degrees
    got int;
BEGIN
    IF n <= 0 THEN RETURN; END IF;
    WITH cells AS (
        SELECT x0, y0, row_number() OVER (ORDER BY y0, x0) - 1 AS j
          FROM (SELECT 115.40 + s * i AS x0, 39.40 + s * k AS y0
                  FROM generate_series(0, floor(2.10 / s)::int - 1) i, generate_series(0, floor(1.70 / s)::int - 1) k) g
         WHERE NOT (x0 + s > 116.20 - s AND x0 < 116.60 + s AND y0 + s > 39.75 - s AND y0 < 40.05 + s)),
    streets AS (
        SELECT c.j, '11' || lpad((1 + c.j / (99 * 98))::text, 2, '0')
                    || lpad((1 + (c.j / 99) % 98 + CASE WHEN 1 + (c.j / 99) % 98 >= 5 THEN 1 ELSE 0 END)::text, 2, '0')
                    || lpad((1 + c.j % 99)::text, 2, '0') AS civil_code,
               (SELECT ST_Multi(ST_SetSRID(ST_MakePolygon(ST_AddPoint(ST_MakeLine(p ORDER BY v), ST_StartPoint(ST_MakeLine(p ORDER BY v)))), 4326))
                  FROM (SELECT v, ST_MakePoint(c.x0 + s / 2 + 0.40 * s * (1 + 0.15 * sin(5 * a + c.j)) * cos(a),
                                               c.y0 + s / 2 + 0.40 * s * (1 + 0.15 * sin(5 * a + c.j)) * sin(a)) AS p
                          FROM (SELECT v, 2 * pi() * v / vertices AS a FROM generate_series(0, vertices - 1) v) t) q) AS boundary
          FROM cells c WHERE c.j < n)
    INSERT INTO vms.region (civil_code, name, boundary)
    SELECT civil_code, '外区街道' || (j + 1), boundary FROM streets
    ON CONFLICT (civil_code) DO UPDATE SET name = EXCLUDED.name, boundary = EXCLUDED.boundary;
    GET DIAGNOSTICS got = ROW_COUNT;
    IF got < n THEN
        RAISE EXCEPTION 'bench.province_streets: % cells for % streets', got, n;
    END IF;
END $$;

-- The benchmark ledger's channels i in [first, first + n) with the defects
-- a city ledger has, each rule's share fixed here (d = hashint4(i) mod
-- 10,000, a pseudo-random bucket independent of i mod 4, 16 and 20):
--   required_fields  address missing 1 %, unit 0.5 %, point type 0.5 %,
--                    location 0.3 % (d < 230)
--   coordinates      location missing 0.3 %, (0, 0) 0.15 %, longitude and
--                    latitude swapped 0.15 %, a digit lost (16.x E) 0.1 %
--   azimuth_missing 2 %, place_type_missing 3 %
--   duplicate_name   1 % keep a factory default channel name (IPCamera,
--                    Camera 01, 通道1, IPdome): shared within their unit
--   naming_pattern   those 1 % and 1 % without the dash before the number
--   code_role        0.2 % registered with their NVR's type code 118
--   stale            5 % last updated 400-1,000 days ago
--   capture_required_fields  5 % of the capture cameras (a quarter of the
--                    ledger) without resolution and capabilities
--   same_point       1 %: three channels of a street on one pole (rows
--                    with (i / 16) mod 300 < 3, one point per 4,800 rows
--                    and street)
--   civil_code_mismatch, outside_region: the wiggle of the boundaries
--                    (bench.city_regions), about 2 %
-- Names are otherwise unique within a unit (unit 1 + i mod 20, the number
-- i / 20); place and road from short lists.  devices: how many devices
-- (codes as the loaders make them) the channels spread over, ten each.
CREATE OR REPLACE FUNCTION bench.ledger_rows(first int, n int, devices int)
RETURNS TABLE (code vms.gbcode, device_code vms.gbcode, name text, address text, civil_code text,
               point_type text, place_type text, azimuth real, fov_angle real, fov_range_m real,
               resolution text, capabilities text[], unit_id bigint, geom geometry, online boolean,
               updated_at timestamptz)
LANGUAGE sql VOLATILE AS $$
    SELECT vms.gbcode_make('110105' || lpad((1 + i % 16)::text, 2, '0'), 0, CASE WHEN d BETWEEN 970 AND 989 THEN 118 ELSE 132 END,
                           0, 500000 + i / 16),
           vms.gbcode_make('110105' || lpad((1 + ((i / 10) % devices) % 16)::text, 2, '0'), 0, 118, 0, ((i / 10) % devices) / 16),
           CASE WHEN d BETWEEN 770 AND 869 THEN (ARRAY['IPCamera', 'Camera 01', '通道1', 'IPdome'])[1 + (i / 20) % 4]
                ELSE (ARRAY['望京', '建外', '三里屯', '酒仙桥', '双井', '劲松', '潘家园', '国贸'])[1 + (i / 7) % 8]
                     || (ARRAY['阜通东大街', '建国路', '工体北路', '酒仙桥路', '广渠路', '朝阳路'])[1 + (i / 3) % 6]
                     || (ARRAY['东向西', '西向东', '南向北', '北向南'])[1 + i % 4]
                     || CASE WHEN d BETWEEN 870 AND 969 THEN '' ELSE '-' END || lpad((i / 20)::text, 5, '0') END,
           CASE WHEN d >= 100 THEN '北京市朝阳区' || (ARRAY['阜通东大街', '建国路', '工体北路', '酒仙桥路'])[1 + i % 4] || (i % 300) || '号' END,
           '110105' || lpad((1 + i % 16)::text, 2, '0'),
           CASE WHEN d NOT BETWEEN 150 AND 199 THEN (ARRAY['bullet', 'dome', 'capture', 'hemisphere'])[1 + i % 4] END,
           CASE WHEN d NOT BETWEEN 470 AND 769 THEN (ARRAY['道路', '小区', '学校', '商圈'])[1 + (i / 4) % 4] END,
           CASE WHEN d NOT BETWEEN 270 AND 469 THEN ((i * 37) % 360)::real END,
           (60 + (i % 4) * 20)::real, (50 + (i % 5) * 30)::real,
           CASE WHEN d NOT BETWEEN 1490 AND 1989 THEN (ARRAY['200W', '400W', '800W'])[1 + i % 3] END,
           CASE WHEN i % 4 = 2 AND d NOT BETWEEN 1490 AND 1989 THEN '{face,plate}'::text[]
                WHEN i % 3 = 0 THEN '{face}' ELSE '{}' END,
           CASE WHEN d NOT BETWEEN 100 AND 149 THEN (SELECT u.id FROM vms.org_unit u WHERE u.name = '分局' || (1 + i % 20)) END,
           CASE WHEN d BETWEEN 200 AND 229 THEN NULL
                WHEN d BETWEEN 230 AND 244 THEN ST_SetSRID(ST_MakePoint(0, 0), 4326)
                WHEN d BETWEEN 245 AND 259 THEN ST_SetSRID(ST_MakePoint(39.75 + (i % 1000) * 0.0003, 116.20 + (i % 997) * 0.0004), 4326)
                WHEN d BETWEEN 260 AND 269 THEN ST_SetSRID(ST_MakePoint(16.20 + (i % 1000) * 0.0004, 39.75 + (i % 997) * 0.0003), 4326)
                WHEN (i / 16) % 300 < 3 THEN
                    ST_SetSRID(ST_MakePoint(116.20 + 0.10 * (i % 16 % 4) + 0.10 * ((hashint4(i / 4800 * 16 + i % 16) & 1048575) / 1048576.0),
                                            39.75 + 0.075 * (i % 16 / 4) + 0.075 * ((hashint4(-(i / 4800 * 16 + i % 16) - 1) & 1048575) / 1048576.0)), 4326)
                ELSE bench.street_point(i % 16) END,
           i % 3 <> 0,
           CASE WHEN d BETWEEN 990 AND 1489 THEN now() - make_interval(days => 400 + i % 600) ELSE now() END
      FROM generate_series(first, first + n - 1) i, LATERAL (SELECT abs(hashint4(i)::bigint) % 10000 AS d) h
$$;
