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
-- a tile with nothing in it is empty
SELECT length(vms.channel_tiles(16, 0, 0)) AS empty_tile_bytes;
\set VERBOSITY default
SELECT vms.channel_tiles(3, 8, 0);
SELECT vms.channel_tiles(-1, 0, 0);
