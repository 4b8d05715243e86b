-- Vector tiles for the map system.  The signature (z, x, y, query_params)
-- is what pg_tileserv and martin look for to publish a function layer.
-- At zoom 13 and above every channel is a feature; below, channels are
-- clustered on a 64 x 64 grid per tile with a count, so a million channels
-- still draw.

-- Runs as the owner (the spatial index serves the tile) and keeps only the
-- channels the caller may see, as search does.
-- SECURITY DEFINER, internal (not executable by PUBLIC or the duty roles):
-- reached through vms.channel_tiles, which passes vms._acting_role().  Every
-- feature has passed vms.channel_visible_to(role, ...), which first refuses a
-- role the session user cannot act as; z/x/y are range-checked numbers.
CREATE FUNCTION vms._channel_tiles_as(role oid, z integer, x integer, y integer)
    RETURNS bytea
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    bounds geometry;
    area geometry;
    cell float8;
    tile bytea;
BEGIN
    IF z < 0 OR z > 22 OR x < 0 OR y < 0 OR x >= (1 << z) OR y >= (1 << z) THEN
        RAISE EXCEPTION 'tile %/%/% does not exist', z, x, y
            USING ERRCODE = 'invalid_parameter_value', HINT = 'z is 0-22 and x, y are 0 to 2^z - 1.';
    END IF;
    bounds := ST_TileEnvelope(z, x, y);
    -- a tile holds the channels whose Web-Mercator point its envelope covers
    -- (geom_3857 && bounds); the lon/lat box around it, widened by a
    -- micro-degree for rounding in the transform, only lets the index find them
    area := ST_Expand(ST_Transform(bounds, 4326), 1e-6);
    IF z >= 13 THEN
        SELECT ST_AsMVT(f, 'channels', 4096, 'geom') INTO tile FROM (
            SELECT ST_AsMVTGeom(c.geom_3857, bounds, 4096, 64, true) AS geom,
                   c.code::text AS code, c.name, c.point_type, c.online, c.azimuth
              FROM vms.channel c
             WHERE c.geom && area AND c.geom_3857 && bounds
               AND vms.channel_visible_to(role, c.code, c.civil_code)) f;
    ELSE
        cell := (ST_XMax(bounds) - ST_XMin(bounds)) / 64;
        SELECT ST_AsMVT(f, 'channels', 4096, 'geom') INTO tile FROM (
            SELECT ST_AsMVTGeom(ST_SetSRID(ST_MakePoint(avg(ST_X(c.geom_3857)), avg(ST_Y(c.geom_3857))), 3857),
                                bounds, 4096, 64, true) AS geom,
                   count(*) AS count, count(*) FILTER (WHERE c.online) AS online_count,
                   min(c.code::text) AS code
              FROM vms.channel c
             WHERE c.geom && area AND c.geom_3857 && bounds
               AND vms.channel_visible_to(role, c.code, c.civil_code)
             GROUP BY floor((ST_X(c.geom_3857) - ST_XMin(bounds)) / cell),
                      floor((ST_Y(c.geom_3857) - ST_YMin(bounds)) / cell)) f;
    END IF;
    RETURN coalesce(tile, '\x'::bytea);
END $$;
COMMENT ON FUNCTION vms._channel_tiles_as(oid, integer, integer, integer) IS 'internal: a tile for a role the session user can act as';

-- SECURITY DEFINER so that it may call the internal vms._channel_tiles_as;
-- it draws for the role the session acts as and takes no role argument.
CREATE FUNCTION vms.channel_tiles(z integer, x integer, y integer, query_params json DEFAULT '{}')
    RETURNS bytea
    LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path FROM CURRENT
    RETURN vms._channel_tiles_as(vms._acting_role(), z, x, y);
COMMENT ON FUNCTION vms.channel_tiles(integer, integer, integer, json) IS
    'channels as a Mapbox vector tile (layer "channels"): points with code, name, point_type, online, azimuth from z13; clusters with count below';
