-- Camera view cones: the sector a camera sees from its azimuth, field-of-view
-- angle and range; which cameras see a point or an area; coverage of an area.

CREATE FUNCTION vms.view_cone(location geometry, azimuth float8, fov_angle float8, range_m float8,
                              segments integer DEFAULT 16)
    RETURNS geometry
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN location IS NULL OR range_m IS NULL OR range_m <= 0 THEN NULL
        WHEN fov_angle >= 360 THEN ST_Buffer(location::geography, range_m, 16)::geometry
        WHEN azimuth IS NULL OR fov_angle IS NULL OR fov_angle <= 0 THEN NULL
        ELSE ST_SetSRID(ST_MakePolygon(ST_MakeLine(ARRAY(
                 SELECT location
                 UNION ALL
                 (SELECT ST_Project(location::geography, range_m,
                                    radians(azimuth - fov_angle / 2 + fov_angle * i / greatest(segments, 2)))::geometry
                    FROM generate_series(0, greatest(segments, 2)) i ORDER BY i)
                 UNION ALL
                 SELECT location))), 4326)
    END;
COMMENT ON FUNCTION vms.view_cone(geometry, float8, float8, float8, integer) IS
    'the sector a camera sees: from its location, azimuth (degrees from north), field-of-view angle and range in metres';

CREATE FUNCTION vms.channel_view_cone(code vms.gbcode) RETURNS geometry
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT vms.view_cone(c.geom, c.azimuth, c.fov_angle, c.fov_range_m) FROM vms.channel c WHERE c.code = channel_view_cone.code
$$;
COMMENT ON FUNCTION vms.channel_view_cone(vms.gbcode) IS 'the view cone of one channel (NULL when its geometry is incomplete)';

-- The three functions below run as the owner, as search and tiles do: the
-- spatial index serves the box around the target (under row-level security
-- PostGIS's operators, not leakproof, could not use it), and every channel
-- is checked against the grants of the role the session acts as with
-- vms.channel_visible_to, so they see exactly the channels the caller sees.
-- SECURITY DEFINER also lets them use the internal vms._metre_box.  The
-- arguments are geometries and numbers used only as query parameters.

-- Cameras whose cone contains a point: geodesic distance (WGS-84, as
-- ST_Distance on geography and the cones' ST_Project measure it) within
-- range and geodesic bearing within half the field of view of the azimuth.
CREATE FUNCTION vms.cameras_seeing(target geometry, max_range_m float8 DEFAULT 500)
    RETURNS TABLE (code vms.gbcode, name text, distance_m float8, bearing float8)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT c.code, c.name, d.dist, d.bearing
      FROM vms.channel c
     CROSS JOIN LATERAL (SELECT ST_Distance(c.geom::geography, target::geography) AS dist,
                                degrees(ST_Azimuth(c.geom::geography, target::geography)) AS bearing) d
     WHERE c.geom && vms._metre_box(target, max_range_m)
       AND vms.channel_visible_to(vms._acting_role(), c.code, c.civil_code)
       AND c.fov_range_m IS NOT NULL AND d.dist <= least(c.fov_range_m, max_range_m)
       AND (c.fov_angle >= 360 OR d.dist = 0
            OR (c.azimuth IS NOT NULL AND c.fov_angle IS NOT NULL
                AND abs(mod((d.bearing - c.azimuth)::numeric + 540, 360) - 180) <= c.fov_angle / 2))
     ORDER BY d.dist
$$;
COMMENT ON FUNCTION vms.cameras_seeing(geometry, float8) IS 'cameras whose view cone contains the point, nearest first';

CREATE FUNCTION vms.cameras_seeing_area(area geometry, max_range_m float8 DEFAULT 500)
    RETURNS TABLE (code vms.gbcode, name text, seen_share float8)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT c.code, c.name,
           ST_Area(ST_Intersection(k.cone, area)::geography) / nullif(ST_Area(area::geography), 0)
      FROM vms.channel c
     CROSS JOIN LATERAL (SELECT vms.view_cone(c.geom, c.azimuth, c.fov_angle, least(c.fov_range_m, max_range_m)) AS cone) k
     WHERE c.geom && vms._metre_box(ST_Envelope(area), max_range_m)
       AND vms.channel_visible_to(vms._acting_role(), c.code, c.civil_code)
       AND k.cone IS NOT NULL AND ST_Intersects(k.cone, area)
     ORDER BY 3 DESC
$$;
COMMENT ON FUNCTION vms.cameras_seeing_area(geometry, float8) IS 'cameras whose view cone overlaps the area, with the share of the area each sees';

CREATE FUNCTION vms.area_coverage(area geometry, max_range_m float8 DEFAULT 500) RETURNS float8
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT coalesce(ST_Area(ST_Intersection(ST_Union(vms.view_cone(c.geom, c.azimuth, c.fov_angle,
                                                                   least(c.fov_range_m, max_range_m))), area)::geography)
                    / nullif(ST_Area(area::geography), 0), 0)
      FROM vms.channel c
     WHERE c.geom && vms._metre_box(ST_Envelope(area), max_range_m)
       AND vms.channel_visible_to(vms._acting_role(), c.code, c.civil_code)
       AND ST_Intersects(vms.view_cone(c.geom, c.azimuth, c.fov_angle, least(c.fov_range_m, max_range_m)), area)
$$;
COMMENT ON FUNCTION vms.area_coverage(geometry, float8) IS 'share of an area (0-1) inside the union of the view cones of the cameras around it';
