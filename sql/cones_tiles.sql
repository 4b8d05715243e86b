-- view cones, who sees what, coverage, and vector tiles decoded
\set SHOW_CONTEXT never
SET search_path = public, vms;
SET client_min_messages = warning;
-- the Futian district (sql/fixtures/futian.sql)
\getenv abs_srcdir PG_ABS_SRCDIR
\set ECHO none
\i :abs_srcdir/sql/fixtures/futian.sql
\set ECHO all

-- a 90° cone facing east, 100 m: a sector of π r² / 4
SELECT GeometryType(c) AS type, ST_IsValid(c) AS valid,
       round((ST_Area(c::geography) / (pi() * 100 ^ 2 / 4))::numeric, 2) AS area_vs_sector,
       ST_Covers(c, ST_Project(ST_MakePoint(114.02, 22.51)::geography, 80, radians(90))::geometry) AS sees_east_80m,
       ST_Covers(c, ST_Project(ST_MakePoint(114.02, 22.51)::geography, 80, radians(180))::geometry) AS sees_south_80m,
       ST_Covers(c, ST_Project(ST_MakePoint(114.02, 22.51)::geography, 120, radians(90))::geometry) AS sees_east_120m
  FROM vms.view_cone(ST_SetSRID(ST_MakePoint(114.02, 22.51), 4326), 90, 90, 100) c;
SELECT round((ST_Area(vms.view_cone(ST_SetSRID(ST_MakePoint(114.02, 22.51), 4326), 0, 360, 50)::geography)
              / (pi() * 50 ^ 2))::numeric, 2) AS full_circle_vs_disc;
SELECT vms.view_cone(ST_SetSRID(ST_MakePoint(114.02, 22.51), 4326), NULL, 60, 50) IS NULL AS no_azimuth_no_cone,
       vms.view_cone(NULL, 0, 60, 50) IS NULL AS no_location_no_cone;

-- three cameras around a crossing: one faces it (面向路口, 114.0600 22.5200, facing
-- east, 60°, 150 m), one faces away, one is too far; and a panoramic one
-- (sql/fixtures/nanyuan.sql)
\set ECHO none
\i :abs_srcdir/sql/fixtures/nanyuan.sql
\set ECHO all
SELECT code, name, round(distance_m) AS m, round(bearing) AS bearing
  FROM vms.cameras_seeing(ST_SetSRID(ST_MakePoint(114.0610, 22.5200), 4326));
SELECT code, name, round(seen_share::numeric, 3) AS share
  FROM vms.cameras_seeing_area(ST_SetSRID(ST_MakeEnvelope(114.0605, 22.5195, 114.0615, 22.5205), 4326));
SELECT round(vms.area_coverage(ST_SetSRID(ST_MakeEnvelope(114.0605, 22.5195, 114.0615, 22.5205), 4326))::numeric, 3) AS covered,
       vms.area_coverage(ST_SetSRID(ST_MakeEnvelope(114.09, 22.54, 114.0905, 22.5405), 4326)) AS nobody_there;
SELECT ST_AsText(vms.channel_view_cone('44030402001320000001'), 5) IS NOT NULL AS has_cone,
       vms.channel_view_cone('44030401001320000003') IS NULL AS no_location_no_cone;

-- a minimal Mapbox Vector Tile reader: layers, feature count, keys
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
CREATE FUNCTION pg_temp.mvt_layers(tile bytea) RETURNS TABLE (layer text, features int, keys text[])
LANGUAGE plpgsql AS $$
DECLARE p int := 0; lp int; lend int; tag bigint; len bigint; r record;
BEGIN
    WHILE p < length(tile) LOOP
        r := pg_temp.varint(tile, p); p := r.pos; tag := r.v;
        r := pg_temp.varint(tile, p); p := r.pos; len := r.v;
        IF tag = 26 THEN                          -- field 3 (layers), length-delimited
            layer := NULL; features := 0; keys := '{}';
            lp := p; lend := p + len;
            WHILE lp < lend LOOP
                r := pg_temp.varint(tile, lp); lp := r.pos; tag := r.v;
                IF tag & 7 = 0 THEN r := pg_temp.varint(tile, lp); lp := r.pos; CONTINUE; END IF;
                r := pg_temp.varint(tile, lp); lp := r.pos;
                IF tag = 10 THEN layer := convert_from(substring(tile FROM lp + 1 FOR r.v::int), 'UTF8'); END IF;
                IF tag = 18 THEN features := features + 1; END IF;
                IF tag = 26 THEN keys := keys || convert_from(substring(tile FROM lp + 1 FOR r.v::int), 'UTF8'); END IF;
                lp := lp + r.v::int;
            END LOOP;
            RETURN NEXT;
        END IF;
        p := p + len::int;
    END LOOP;
END $$;

-- zoom 16 tile around the crossing: every channel is a feature with attributes
SELECT m.*, (SELECT count(*) FROM vms.channel c
                WHERE ST_Covers(ST_Transform(ST_TileEnvelope(16, 53532, 28558), 4326), c.geom)) AS channels_in_tile
  FROM pg_temp.mvt_layers(vms.channel_tiles(16, 53532, 28558)) m;
-- zoom 10 tile over Futian: clustered, one feature per occupied cell, counts add up
SELECT m.*, (SELECT count(*) FROM vms.channel c
                WHERE ST_Covers(ST_Transform(ST_TileEnvelope(10, 836, 446), 4326), c.geom)) AS channels_in_tile,
       (SELECT count(DISTINCT (floor((ST_X(c.geom_3857) - ST_XMin(e)) / ((ST_XMax(e) - ST_XMin(e)) / 64)),
                               floor((ST_Y(c.geom_3857) - ST_YMin(e)) / ((ST_XMax(e) - ST_XMin(e)) / 64))))
          FROM vms.channel c, ST_TileEnvelope(10, 836, 446) e WHERE c.geom_3857 && e) AS occupied_cells
  FROM pg_temp.mvt_layers(vms.channel_tiles(10, 836, 446)) m;
-- precomputed clusters (issue 20).  Below zoom 13 a tile's clusters are the
-- cells of vms.channel_cluster plus the changes appended since their
-- refresh: their counts must be what bare PostGIS counts in the envelope
-- (geom_3857 && ST_TileEnvelope), online counts too, every code a member;
-- after inserts, moves, status changes and deletes, and after
-- vms.channel_clusters_refresh(), which must leave exactly what counting
-- from scratch gives
CREATE FUNCTION pg_temp.mvt_values(tile bytea, key text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    p int := 0; lend int; fend int; vend int; tend int; tag bigint; len bigint; r record;
    keys text[]; vals text[]; feats int[]; ftags int[]; v text; n int;
BEGIN
    WHILE p < length(tile) LOOP
        r := pg_temp.varint(tile, p); p := r.pos; tag := r.v;
        r := pg_temp.varint(tile, p); p := r.pos; len := r.v;
        CONTINUE WHEN tag <> 26;
        lend := p + len; keys := '{}'; vals := '{}'; feats := '{}';
        WHILE p < lend LOOP
            r := pg_temp.varint(tile, p); p := r.pos; tag := r.v;
            IF tag & 7 = 0 THEN r := pg_temp.varint(tile, p); p := r.pos; CONTINUE; END IF;
            r := pg_temp.varint(tile, p); p := r.pos; len := r.v;
            IF tag = 26 THEN
                keys := keys || convert_from(substring(tile FROM p + 1 FOR len::int), 'UTF8');
            ELSIF tag = 34 THEN
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
            ELSIF tag = 18 THEN
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
                feats := feats || ARRAY[-1] || ftags;
                p := fend;
                CONTINUE;
            END IF;
            p := p + len::int;
        END LOOP;
        n := 1;
        WHILE n <= cardinality(feats) LOOP
            IF feats[n] = -1 THEN n := n + 1; CONTINUE; END IF;
            IF keys[feats[n] + 1] = key THEN RETURN NEXT vals[feats[n + 1] + 1]; END IF;
            n := n + 2;
        END LOOP;
        p := lend;
    END LOOP;
END $$;
-- 3,000 channels over the district, and channels on the edges and corners
-- of its tiles of zooms 8-12 (placed in Web Mercator, stored in WGS-84)
SELECT setseed(0.2);
INSERT INTO vms.channel (code, device_code, name, civil_code, geom, online)
SELECT vms.gbcode_make(CASE WHEN i % 2 = 0 THEN '44030401' ELSE '44030402' END, 0, 132, 0, 700000 + i),
       '44030401001180000001', '簇' || i, CASE WHEN i % 2 = 0 THEN '44030401' ELSE '44030402' END,
       ST_SetSRID(ST_MakePoint(114.0 + random() * 0.1, 22.50 + random() * 0.05), 4326), random() < 0.4
  FROM generate_series(1, 3000) i;
-- every tile of zooms 6-12 over the district
CREATE TEMP TABLE tc AS
SELECT z, x, y FROM generate_series(6, 12) z,
       LATERAL generate_series(floor((114.0 + 180) / 360 * 2 ^ z)::int, floor((114.1 + 180) / 360 * 2 ^ z)::int) x,
       LATERAL generate_series(floor((1 - ln(tan(radians(22.55)) + 1 / cos(radians(22.55))) / pi()) / 2 * 2 ^ z)::int,
                               floor((1 - ln(tan(radians(22.50)) + 1 / cos(radians(22.50))) / pi()) / 2 * 2 ^ z)::int) y;
INSERT INTO vms.channel (code, device_code, name, civil_code, geom, online)
SELECT vms.gbcode_make('44030401', 0, 132, 0, 800000 + (row_number() OVER ())::int), '44030401001180000001', '边', '44030401',
       ST_Transform(ST_SetSRID(ST_MakePoint(px, py), 3857), 4326), true
  FROM tc, ST_TileEnvelope(z, x, y) e,
       LATERAL (VALUES (ST_XMin(e), ST_YMin(e) + random() * (ST_YMax(e) - ST_YMin(e))),
                       (ST_XMax(e), ST_YMin(e) + random() * (ST_YMax(e) - ST_YMin(e))),
                       (ST_XMin(e) + random() * (ST_XMax(e) - ST_XMin(e)), ST_YMax(e)),
                       (ST_XMin(e) + random() * (ST_XMax(e) - ST_XMin(e)), ST_YMin(e)),
                       (ST_XMax(e), ST_YMax(e))) v(px, py)
 WHERE z >= 8 AND ST_Intersects(ST_Transform(ST_SetSRID(ST_MakePoint(px, py), 3857), 4326),
                               ST_MakeEnvelope(114.0, 22.50, 114.1, 22.55, 4326));
-- 4,500 channels of the second street within 300 m: the tiles of zooms
-- 13-16 around them hold more than 4,096 channels and are clustered too
INSERT INTO vms.channel (code, device_code, name, civil_code, geom, online)
SELECT vms.gbcode_make('44030402', 0, 132, 0, 600000 + i), '44030401001180000001', '密' || i, '44030402',
       ST_SetSRID(ST_MakePoint(114.0705 + random() * 0.003, 22.5205 + random() * 0.003), 4326), i % 3 = 0
  FROM generate_series(1, 4500) i;
INSERT INTO tc
SELECT z, floor((114.072 + 180) / 360 * 2 ^ z)::int, floor((1 - ln(tan(radians(22.522)) + 1 / cos(radians(22.522))) / pi()) / 2 * 2 ^ z)::int
  FROM generate_series(13, 17) z;
-- each tile against bare PostGIS over the channels the caller may see (the
-- row-level security of vms.channel): clusters' counts, or point features
CREATE FUNCTION pg_temp.tile_check(OUT tiles bigint, OUT clustered bigint, OUT count_mismatches bigint,
                                   OUT online_mismatches bigint, OUT foreign_codes bigint, OUT channels bigint)
LANGUAGE sql AS $$
    SELECT count(*), count(*) FILTER (WHERE is_clustered),
           count(*) FILTER (WHERE got <> want), count(*) FILTER (WHERE is_clustered AND got_online <> want_online),
           sum(foreign_codes), sum(want)
      FROM (SELECT EXISTS (SELECT FROM pg_temp.mvt_values(t, 'count')) AS is_clustered,
                   CASE WHEN EXISTS (SELECT FROM pg_temp.mvt_values(t, 'count'))
                        THEN (SELECT sum(v::bigint) FROM pg_temp.mvt_values(t, 'count') v)
                        ELSE (SELECT count(*) FROM pg_temp.mvt_values(t, 'code')) END AS got,
                   (SELECT coalesce(sum(v::bigint), 0) FROM pg_temp.mvt_values(t, 'online_count') v) AS got_online,
                   (SELECT count(*) FROM pg_temp.mvt_values(t, 'code') v
                     WHERE NOT EXISTS (SELECT 1 FROM vms.channel c
                                        WHERE c.code::text = v AND c.geom_3857 && ST_TileEnvelope(tc.z, tc.x, tc.y))) AS foreign_codes,
                   (SELECT count(*) FROM vms.channel c WHERE c.geom_3857 && ST_TileEnvelope(tc.z, tc.x, tc.y)) AS want,
                   (SELECT count(*) FROM vms.channel c WHERE c.geom_3857 && ST_TileEnvelope(tc.z, tc.x, tc.y) AND c.online) AS want_online
              FROM tc, vms.channel_tiles(tc.z, tc.x, tc.y) t) s
$$;
-- the cells against counting every channel again
CREATE FUNCTION pg_temp.cells_check(OUT cells bigint, OUT missing_or_extra bigint, OUT differing bigint)
LANGUAGE sql AS $$
    WITH p AS (SELECT vms._tile_col(ST_X(geom_3857)) AS cx, vms._tile_row(ST_Y(geom_3857)) AS cy, code::text AS code, online
                 FROM vms.channel WHERE geom_3857 IS NOT NULL),
         w AS (SELECT l, cx >> (18 - l) AS cx, cy >> (18 - l) AS cy, count(*) AS n,
                      count(*) FILTER (WHERE online) AS n_online, min(code) AS code
                 FROM p, generate_series(6, 18) l GROUP BY 1, 2, 3)
    SELECT count(w.n), count(*) FILTER (WHERE b.n IS NULL OR w.n IS NULL),
           count(*) FILTER (WHERE b.n <> w.n OR b.n_online <> w.n_online OR b.code <> w.code)
      FROM w FULL JOIN vms.channel_cluster b ON b.level = w.l AND b.cx = w.cx AND b.cy = w.cy
$$;
SELECT count(*) AS tiles_checked, count(*) FILTER (WHERE z BETWEEN 8 AND 12) AS zoom_8_12, count(*) FILTER (WHERE z >= 13) AS zoom_13_17 FROM tc;
-- which tiles from zoom 13 are clustered (more than 4,096 channels)
SELECT tc.z, EXISTS (SELECT FROM pg_temp.mvt_values(vms.channel_tiles(tc.z, tc.x, tc.y), 'count')) AS clustered,
       (SELECT count(*) FROM vms.channel c WHERE c.geom_3857 && ST_TileEnvelope(tc.z, tc.x, tc.y)) AS channels
  FROM tc WHERE tc.z >= 13 ORDER BY tc.z;
SELECT * FROM pg_temp.tile_check();
SELECT count(*) > 0 AS changes_appended FROM vms.channel_cluster_delta;
SELECT vms.channel_clusters_refresh() > 0 AS folded;
SELECT * FROM pg_temp.cells_check();
SELECT count(*) AS appended_left FROM vms.channel_cluster_delta;
-- writes after the refresh: moves, status changes, channels losing their
-- location, deletions (the smallest code of a cell among them)
UPDATE vms.channel SET geom = ST_SetSRID(ST_MakePoint(114.0 + random() * 0.1, 22.50 + random() * 0.05), 4326)
 WHERE name LIKE '簇%' AND right(code::text, 1) IN ('1', '2');
UPDATE vms.channel SET online = NOT online WHERE name LIKE '簇%' AND right(code::text, 1) IN ('2', '3');
UPDATE vms.channel SET geom = NULL WHERE name LIKE '簇%' AND right(code::text, 2) = '44';
DELETE FROM vms.channel WHERE code IN (SELECT min(code::text)::vms.gbcode FROM vms.channel WHERE name LIKE '簇%'
                                        GROUP BY vms._tile_col(ST_X(geom_3857)) >> 6, vms._tile_row(ST_Y(geom_3857)) >> 6);
SELECT * FROM pg_temp.tile_check();
-- this fold through the operations schedule, which a default install runs
-- every five minutes (the other scheduled runs are off for it)
SELECT cron, enabled FROM vms.ops_schedule WHERE action = 'clusters_refresh';
UPDATE vms.ops_schedule SET enabled = (action = 'clusters_refresh'),
       next_run_at = CASE WHEN action = 'clusters_refresh' THEN now() - interval '1 minute' END;
SELECT vms.ops_run_due() AS ran;
SELECT last_error, last_result ~ '^[1-9][0-9]* cells$' AS folded, next_run_at > now() AS timed_again
  FROM vms.ops_schedule WHERE action = 'clusters_refresh';
SELECT count(*) AS appended_left FROM vms.channel_cluster_delta;
SELECT * FROM pg_temp.cells_check();
SELECT * FROM pg_temp.tile_check();
-- nothing appended since: the next run folds nothing
UPDATE vms.ops_schedule SET next_run_at = now() - interval '1 minute' WHERE action = 'clusters_refresh';
SELECT vms.ops_run_due() AS ran;
SELECT last_error, last_result FROM vms.ops_schedule WHERE action = 'clusters_refresh';
UPDATE vms.ops_schedule SET enabled = true, next_run_at = NULL;
-- a rebuild counts the same cells
SELECT vms.channel_clusters_refresh(true) > 0 AS rebuilt;
SELECT * FROM pg_temp.cells_check();

-- visibility: the cells count every channel, so only a role that sees every
-- channel is served from them; any other role's tiles hold exactly what it
-- may see.  A role without grants, one with the district's first street,
-- one with a grant on everything at level 1 while one channel is level 2,
-- and the same grant raised to level 2
CREATE ROLE regress_tiles_none;
CREATE ROLE regress_tiles_street;
CREATE ROLE regress_tiles_all;
GRANT vms_analyst TO regress_tiles_none, regress_tiles_street, regress_tiles_all;
GRANT SELECT ON tc TO PUBLIC;
INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level, granted_by) VALUES
    ('regress_tiles_street', 'region', '44030401', '{view_live}', 1, 'regress'),
    ('regress_tiles_all', 'all', NULL, '{view_live}', 1, 'regress');
INSERT INTO vms.security_assignment (scope_kind, scope_ref, level)
SELECT 'channel', min(code::text), 2 FROM vms.channel WHERE name LIKE '簇%';
SET ROLE regress_tiles_none;
SELECT * FROM pg_temp.tile_check();
SET ROLE regress_tiles_street;
SELECT * FROM pg_temp.tile_check();
SET ROLE regress_tiles_all;
SELECT * FROM pg_temp.tile_check();
RESET ROLE;
UPDATE vms.access_grant SET max_level = 2 WHERE grantee = 'regress_tiles_all';
SET ROLE regress_tiles_all;
SELECT * FROM pg_temp.tile_check();
RESET ROLE;
DELETE FROM vms.access_grant WHERE grantee LIKE 'regress_tiles_%';
DELETE FROM vms.security_assignment WHERE scope_ref IN (SELECT code::text FROM vms.channel WHERE name LIKE '簇%');
DROP ROLE regress_tiles_none, regress_tiles_street, regress_tiles_all;

-- the city's trigger for replicated channels counts only the apply
-- worker's changes: switched on for every session (ENABLE TRIGGER USER does
-- that), a local insert is still counted once, by the statement triggers
SELECT coalesce(sum(n), 0) AS cells_before FROM vms.channel_cluster_delta WHERE level = 18 \gset
ALTER TABLE vms.channel ENABLE TRIGGER channel_cluster_apply_tiles;
INSERT INTO vms.channel (code, device_code, name, civil_code, geom, online)
VALUES (vms.gbcode_make('44030401', 0, 132, 0, 900001), '44030401001180000001', '一次', '44030401',
        ST_SetSRID(ST_MakePoint(114.05, 22.52), 4326), true);
SELECT sum(n) - :cells_before AS counted FROM vms.channel_cluster_delta WHERE level = 18;
ALTER TABLE vms.channel ENABLE REPLICA TRIGGER channel_cluster_apply_tiles;
DELETE FROM vms.channel WHERE code = vms.gbcode_make('44030401', 0, 132, 0, 900001);
-- a session in replica mode (the apply worker outside its buffer: in a
-- subtransaction, or with the flush trigger off): the city's row triggers
-- append each insert, move, online change and delete at once, through the
-- cells' one definition; 6 inserted (3 online), one moved, one gone
-- offline, one deleted; folded, the cells equal a recount
SELECT vms.channel_clusters_refresh() >= 0 AS folded_before;
SET session_replication_role = replica;
INSERT INTO vms.channel (code, device_code, name, civil_code, geom, online)
SELECT vms.gbcode_make('44030401', 0, 132, 0, 900100 + i), '44030401001180000001', '副本' || i, '44030401',
       ST_SetSRID(ST_MakePoint(114.0 + i * 0.01, 22.51), 4326), i % 2 = 0
  FROM generate_series(1, 6) i;
UPDATE vms.channel SET geom = ST_SetSRID(ST_MakePoint(114.09, 22.54), 4326) WHERE code = vms.gbcode_make('44030401', 0, 132, 0, 900101);
UPDATE vms.channel SET online = false WHERE code = vms.gbcode_make('44030401', 0, 132, 0, 900102);
DELETE FROM vms.channel WHERE code = vms.gbcode_make('44030401', 0, 132, 0, 900103);
RESET session_replication_role;
SELECT level, sum(n) AS n, sum(n_online) AS n_online, sum(gone) AS gone
  FROM vms.channel_cluster_delta WHERE level IN (6, 18) GROUP BY level ORDER BY level;
SELECT vms.channel_clusters_refresh() > 0 AS folded;
SELECT missing_or_extra, differing FROM pg_temp.cells_check();
DELETE FROM vms.channel WHERE name LIKE '副本%';

-- a tile with nothing in it is empty
SELECT length(vms.channel_tiles(16, 0, 0)) AS empty_tile_bytes;
\set VERBOSITY default
SELECT vms.channel_tiles(3, 8, 0);
SELECT vms.channel_tiles(-1, 0, 0);
