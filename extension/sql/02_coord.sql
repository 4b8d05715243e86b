-- Coordinate systems: field data arrives as WGS-84, CGCS2000, GCJ-02 or BD-09;
-- the ledger stores WGS-84 (SRID 4326).

CREATE FUNCTION vms.coord_convert(lon float8, lat float8, from_crs text, to_crs text)
    RETURNS float8[]
    AS 'MODULE_PATHNAME', 'coord_convert' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vms.coord_convert(float8, float8, text, text) IS
    'convert {lon,lat} between WGS84, CGCS2000, GCJ02 and BD09; returns float8[2]';

-- A WGS-84 point from coordinates in any supported system.  SQL-standard
-- bodies (RETURN) are bound when created, so PostGIS is found on any
-- search_path and the functions stay inlinable.
CREATE FUNCTION vms.to_wgs84(lon float8, lat float8, crs text DEFAULT 'WGS84')
    RETURNS geometry(Point, 4326)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN (SELECT ST_SetSRID(ST_MakePoint(r[1], r[2]), 4326)
              FROM (SELECT vms.coord_convert(lon, lat, crs, 'WGS84') AS r) AS c);
COMMENT ON FUNCTION vms.to_wgs84(float8, float8, text) IS
    'WGS-84 point (SRID 4326) from lon/lat given in WGS84, CGCS2000, GCJ02 or BD09';

-- Public: the point conversions below run with the caller's rights and call
-- it, so it cannot be internal (internal functions are the owner's only).
CREATE FUNCTION vms.convert_point(p geometry, from_crs text, to_crs text)
    RETURNS geometry(Point, 4326)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN (SELECT ST_SetSRID(ST_MakePoint(r[1], r[2]), 4326)
              FROM (SELECT vms.coord_convert(ST_X(p), ST_Y(p), from_crs, to_crs) AS r) AS c);
COMMENT ON FUNCTION vms.convert_point(geometry, text, text) IS 'a WGS-84-stored point converted between WGS84, CGCS2000, GCJ02 and BD09 (SRID 4326)';

CREATE FUNCTION vms.wgs84_to_gcj02(geometry) RETURNS geometry(Point, 4326)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE RETURN vms.convert_point($1, 'WGS84', 'GCJ02');
CREATE FUNCTION vms.gcj02_to_wgs84(geometry) RETURNS geometry(Point, 4326)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE RETURN vms.convert_point($1, 'GCJ02', 'WGS84');
CREATE FUNCTION vms.gcj02_to_bd09(geometry) RETURNS geometry(Point, 4326)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE RETURN vms.convert_point($1, 'GCJ02', 'BD09');
CREATE FUNCTION vms.bd09_to_gcj02(geometry) RETURNS geometry(Point, 4326)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE RETURN vms.convert_point($1, 'BD09', 'GCJ02');
CREATE FUNCTION vms.wgs84_to_bd09(geometry) RETURNS geometry(Point, 4326)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE RETURN vms.convert_point($1, 'WGS84', 'BD09');
CREATE FUNCTION vms.bd09_to_wgs84(geometry) RETURNS geometry(Point, 4326)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE RETURN vms.convert_point($1, 'BD09', 'WGS84');
COMMENT ON FUNCTION vms.wgs84_to_gcj02(geometry) IS 'WGS-84 point to GCJ-02 (Amap/Tencent)';
COMMENT ON FUNCTION vms.gcj02_to_wgs84(geometry) IS 'GCJ-02 point to WGS-84 (iterative inverse, < 1e-9 degrees)';
COMMENT ON FUNCTION vms.gcj02_to_bd09(geometry) IS 'GCJ-02 point to BD-09 (Baidu)';
COMMENT ON FUNCTION vms.bd09_to_gcj02(geometry) IS 'BD-09 point to GCJ-02';
COMMENT ON FUNCTION vms.wgs84_to_bd09(geometry) IS 'WGS-84 point to BD-09';
COMMENT ON FUNCTION vms.bd09_to_wgs84(geometry) IS 'BD-09 point to WGS-84';
