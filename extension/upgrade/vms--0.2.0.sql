-- vms install script, concatenated from extension/sql/*.sql in file-name order.
-- Installed databases reach this version through extension/upgrade/vms--*--*.sql.
\echo Use "CREATE EXTENSION vms" to load this file. \quit
-- vms.gbcode: the 20-digit GB/T 28181 code as a 12-byte binary type.

CREATE TYPE vms.gbcode;

CREATE FUNCTION vms.gbcode_in(cstring) RETURNS vms.gbcode
    AS 'MODULE_PATHNAME', 'gbcode_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.gbcode_out(vms.gbcode) RETURNS cstring
    AS 'MODULE_PATHNAME', 'gbcode_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.gbcode_recv(internal) RETURNS vms.gbcode
    AS 'MODULE_PATHNAME', 'gbcode_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.gbcode_send(vms.gbcode) RETURNS bytea
    AS 'MODULE_PATHNAME', 'gbcode_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE vms.gbcode (
    INPUT = vms.gbcode_in,
    OUTPUT = vms.gbcode_out,
    RECEIVE = vms.gbcode_recv,
    SEND = vms.gbcode_send,
    INTERNALLENGTH = 12,
    ALIGNMENT = int4,
    STORAGE = plain
);
COMMENT ON TYPE vms.gbcode IS
    'GB/T 28181 20-digit code (CCCCCCCC II TTT N SSSSSS) stored in 12 bytes; orders like its text';

-- comparison ---------------------------------------------------------------
-- The operators live in pg_catalog, which every search_path includes, so
-- `code = '...'` and joins on codes work for analysts whose search_path does
-- not name vms (as with PostGIS's operators, which live beside its types).
CREATE FUNCTION vms.gbcode_lt(vms.gbcode, vms.gbcode) RETURNS boolean
    AS 'MODULE_PATHNAME', 'gbcode_lt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION vms.gbcode_le(vms.gbcode, vms.gbcode) RETURNS boolean
    AS 'MODULE_PATHNAME', 'gbcode_le' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION vms.gbcode_eq(vms.gbcode, vms.gbcode) RETURNS boolean
    AS 'MODULE_PATHNAME', 'gbcode_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION vms.gbcode_ne(vms.gbcode, vms.gbcode) RETURNS boolean
    AS 'MODULE_PATHNAME', 'gbcode_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION vms.gbcode_ge(vms.gbcode, vms.gbcode) RETURNS boolean
    AS 'MODULE_PATHNAME', 'gbcode_ge' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION vms.gbcode_gt(vms.gbcode, vms.gbcode) RETURNS boolean
    AS 'MODULE_PATHNAME', 'gbcode_gt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION vms.gbcode_cmp(vms.gbcode, vms.gbcode) RETURNS integer
    AS 'MODULE_PATHNAME', 'gbcode_cmp' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION vms.gbcode_sortsupport(internal) RETURNS void
    AS 'MODULE_PATHNAME', 'gbcode_sortsupport' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.gbcode_hash(vms.gbcode) RETURNS integer
    AS 'MODULE_PATHNAME', 'gbcode_hash' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION vms.gbcode_hash_extended(vms.gbcode, bigint) RETURNS bigint
    AS 'MODULE_PATHNAME', 'gbcode_hash_extended' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;

CREATE OPERATOR pg_catalog.< (LEFTARG = vms.gbcode, RIGHTARG = vms.gbcode, FUNCTION = vms.gbcode_lt,
    COMMUTATOR = OPERATOR(pg_catalog.>), NEGATOR = OPERATOR(pg_catalog.>=),
    RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR pg_catalog.<= (LEFTARG = vms.gbcode, RIGHTARG = vms.gbcode, FUNCTION = vms.gbcode_le,
    COMMUTATOR = OPERATOR(pg_catalog.>=), NEGATOR = OPERATOR(pg_catalog.>),
    RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR pg_catalog.= (LEFTARG = vms.gbcode, RIGHTARG = vms.gbcode, FUNCTION = vms.gbcode_eq,
    COMMUTATOR = OPERATOR(pg_catalog.=), NEGATOR = OPERATOR(pg_catalog.<>),
    RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES);
CREATE OPERATOR pg_catalog.<> (LEFTARG = vms.gbcode, RIGHTARG = vms.gbcode, FUNCTION = vms.gbcode_ne,
    COMMUTATOR = OPERATOR(pg_catalog.<>), NEGATOR = OPERATOR(pg_catalog.=),
    RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR pg_catalog.>= (LEFTARG = vms.gbcode, RIGHTARG = vms.gbcode, FUNCTION = vms.gbcode_ge,
    COMMUTATOR = OPERATOR(pg_catalog.<=), NEGATOR = OPERATOR(pg_catalog.<),
    RESTRICT = scalargesel, JOIN = scalargejoinsel);
CREATE OPERATOR pg_catalog.> (LEFTARG = vms.gbcode, RIGHTARG = vms.gbcode, FUNCTION = vms.gbcode_gt,
    COMMUTATOR = OPERATOR(pg_catalog.<), NEGATOR = OPERATOR(pg_catalog.<=),
    RESTRICT = scalargtsel, JOIN = scalargtjoinsel);

CREATE OPERATOR CLASS vms.gbcode_ops DEFAULT FOR TYPE vms.gbcode USING btree AS
    OPERATOR 1 pg_catalog.<,
    OPERATOR 2 pg_catalog.<=,
    OPERATOR 3 pg_catalog.=,
    OPERATOR 4 pg_catalog.>=,
    OPERATOR 5 pg_catalog.>,
    FUNCTION 1 vms.gbcode_cmp(vms.gbcode, vms.gbcode),
    FUNCTION 2 vms.gbcode_sortsupport(internal);

CREATE OPERATOR CLASS vms.gbcode_hash_ops DEFAULT FOR TYPE vms.gbcode USING hash AS
    OPERATOR 1 pg_catalog.=,
    FUNCTION 1 vms.gbcode_hash(vms.gbcode),
    FUNCTION 2 vms.gbcode_hash_extended(vms.gbcode, bigint);

-- casts: text and varchar both ways; assignment so INSERTs of text just work
CREATE CAST (text AS vms.gbcode) WITH INOUT AS ASSIGNMENT;
CREATE CAST (vms.gbcode AS text) WITH INOUT AS ASSIGNMENT;
CREATE CAST (varchar AS vms.gbcode) WITH INOUT AS ASSIGNMENT;
CREATE CAST (vms.gbcode AS varchar) WITH INOUT AS ASSIGNMENT;

-- what each support object is (every object of the extension has a comment)
COMMENT ON FUNCTION vms.gbcode_in(cstring) IS 'gbcode input: 20 ASCII digits (full-width digits, separators and inner spaces are rejected)';
COMMENT ON FUNCTION vms.gbcode_out(vms.gbcode) IS 'gbcode output: the 20 digits';
COMMENT ON FUNCTION vms.gbcode_recv(internal) IS 'gbcode binary input (12 bytes)';
COMMENT ON FUNCTION vms.gbcode_send(vms.gbcode) IS 'gbcode binary output (12 bytes)';
COMMENT ON FUNCTION vms.gbcode_lt(vms.gbcode, vms.gbcode) IS 'implements < for gbcode (text order)';
COMMENT ON FUNCTION vms.gbcode_le(vms.gbcode, vms.gbcode) IS 'implements <= for gbcode (text order)';
COMMENT ON FUNCTION vms.gbcode_eq(vms.gbcode, vms.gbcode) IS 'implements = for gbcode';
COMMENT ON FUNCTION vms.gbcode_ne(vms.gbcode, vms.gbcode) IS 'implements <> for gbcode';
COMMENT ON FUNCTION vms.gbcode_ge(vms.gbcode, vms.gbcode) IS 'implements >= for gbcode (text order)';
COMMENT ON FUNCTION vms.gbcode_gt(vms.gbcode, vms.gbcode) IS 'implements > for gbcode (text order)';
COMMENT ON FUNCTION vms.gbcode_cmp(vms.gbcode, vms.gbcode) IS 'btree comparison of two gbcodes: -1, 0 or 1';
COMMENT ON FUNCTION vms.gbcode_sortsupport(internal) IS 'btree sort support for gbcode';
COMMENT ON FUNCTION vms.gbcode_hash(vms.gbcode) IS 'hash of a gbcode (hash indexes, hash joins)';
COMMENT ON FUNCTION vms.gbcode_hash_extended(vms.gbcode, bigint) IS 'seeded 64-bit hash of a gbcode (hash partitioning)';
COMMENT ON OPERATOR pg_catalog.< (vms.gbcode, vms.gbcode) IS 'less than, in the order of the codes'' text';
COMMENT ON OPERATOR pg_catalog.<= (vms.gbcode, vms.gbcode) IS 'less than or equal, in the order of the codes'' text';
COMMENT ON OPERATOR pg_catalog.= (vms.gbcode, vms.gbcode) IS 'equal';
COMMENT ON OPERATOR pg_catalog.<> (vms.gbcode, vms.gbcode) IS 'not equal';
COMMENT ON OPERATOR pg_catalog.>= (vms.gbcode, vms.gbcode) IS 'greater than or equal, in the order of the codes'' text';
COMMENT ON OPERATOR pg_catalog.> (vms.gbcode, vms.gbcode) IS 'greater than, in the order of the codes'' text';
COMMENT ON OPERATOR FAMILY vms.gbcode_ops USING btree IS 'btree operators of gbcode';
COMMENT ON OPERATOR CLASS vms.gbcode_ops USING btree IS 'default btree operator class of gbcode';
COMMENT ON OPERATOR FAMILY vms.gbcode_hash_ops USING hash IS 'hash operators of gbcode';
COMMENT ON OPERATOR CLASS vms.gbcode_hash_ops USING hash IS 'default hash operator class of gbcode';
COMMENT ON CAST (text AS vms.gbcode) IS 'parse 20 digits (assignment: INSERT of text works)';
COMMENT ON CAST (vms.gbcode AS text) IS 'the 20 digits';
COMMENT ON CAST (varchar AS vms.gbcode) IS 'parse 20 digits (assignment: INSERT of varchar works)';
COMMENT ON CAST (vms.gbcode AS varchar) IS 'the 20 digits';

-- parts ----------------------------------------------------------------------
CREATE FUNCTION vms.gbcode_centre(vms.gbcode) RETURNS text
    AS 'MODULE_PATHNAME', 'gbcode_centre' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.gbcode_province(vms.gbcode) RETURNS text
    AS 'MODULE_PATHNAME', 'gbcode_province' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.gbcode_city(vms.gbcode) RETURNS text
    AS 'MODULE_PATHNAME', 'gbcode_city' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.gbcode_county(vms.gbcode) RETURNS text
    AS 'MODULE_PATHNAME', 'gbcode_county' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.gbcode_industry(vms.gbcode) RETURNS text
    AS 'MODULE_PATHNAME', 'gbcode_industry' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.gbcode_type(vms.gbcode) RETURNS integer
    AS 'MODULE_PATHNAME', 'gbcode_type' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.gbcode_type_name(vms.gbcode) RETURNS text
    AS 'MODULE_PATHNAME', 'gbcode_type_name' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.gbcode_network(vms.gbcode) RETURNS integer
    AS 'MODULE_PATHNAME', 'gbcode_network' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.gbcode_serial(vms.gbcode) RETURNS text
    AS 'MODULE_PATHNAME', 'gbcode_serial' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.gbcode_make(centre text, industry integer, type integer,
                                network integer, serial integer) RETURNS vms.gbcode
    AS 'MODULE_PATHNAME', 'gbcode_make' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.gbcode_parse_error(text) RETURNS text
    AS 'MODULE_PATHNAME', 'gbcode_parse_error' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION vms.gbcode_region_lower(prefix text) RETURNS vms.gbcode
    AS 'MODULE_PATHNAME', 'gbcode_region_lower' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.gbcode_region_upper(prefix text) RETURNS vms.gbcode
    AS 'MODULE_PATHNAME', 'gbcode_region_upper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Inlined by the planner into a range test on the code, so a btree index on
-- the code answers "every code in region 110105" without a scan.
CREATE FUNCTION vms.gbcode_in_region(code vms.gbcode, prefix text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN code OPERATOR(pg_catalog.>=) vms.gbcode_region_lower(prefix)
       AND code OPERATOR(pg_catalog.<=) vms.gbcode_region_upper(prefix);

CREATE FUNCTION vms.gbcode_check(vms.gbcode) RETURNS TABLE (problem text, detail text)
    AS 'MODULE_PATHNAME', 'gbcode_check' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE ROWS 1;

CREATE FUNCTION vms.gbcode_problems(vms.gbcode) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ARRAY(SELECT c.problem FROM vms.gbcode_check($1) AS c);

CREATE FUNCTION vms.gbcode_type_table() RETURNS TABLE (type integer, name_en text, name_zh text)
    AS 'MODULE_PATHNAME', 'gbcode_type_table' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION vms.gbcode_industry_table() RETURNS TABLE (industry integer, name_en text, name_zh text)
    AS 'MODULE_PATHNAME', 'gbcode_industry_table' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE VIEW vms.gb_device_type AS SELECT * FROM vms.gbcode_type_table();
CREATE VIEW vms.gb_industry AS SELECT * FROM vms.gbcode_industry_table();

COMMENT ON FUNCTION vms.gbcode_centre(vms.gbcode) IS 'digits 1-8: the centre code (civil region + grassroots unit)';
COMMENT ON FUNCTION vms.gbcode_province(vms.gbcode) IS 'digits 1-2: province of the centre code';
COMMENT ON FUNCTION vms.gbcode_city(vms.gbcode) IS 'digits 1-4: city prefix of the centre code';
COMMENT ON FUNCTION vms.gbcode_county(vms.gbcode) IS 'digits 1-6: county prefix of the centre code';
COMMENT ON FUNCTION vms.gbcode_industry(vms.gbcode) IS 'digits 9-10: industry code';
COMMENT ON FUNCTION vms.gbcode_type(vms.gbcode) IS 'digits 11-13: type code (111 DVR, 131 camera, 132 IPC, 215 business group, ...)';
COMMENT ON FUNCTION vms.gbcode_type_name(vms.gbcode) IS 'English name of the type code, NULL when unassigned';
COMMENT ON FUNCTION vms.gbcode_network(vms.gbcode) IS 'digit 14: network identifier (2022 edition)';
COMMENT ON FUNCTION vms.gbcode_serial(vms.gbcode) IS 'digits 15-20: serial number';
COMMENT ON FUNCTION vms.gbcode_make(text, integer, integer, integer, integer) IS 'build a code from centre (8-digit text), industry, type, network, serial';
COMMENT ON FUNCTION vms.gbcode_parse_error(text) IS 'NULL if the text is a valid gbcode, else why not (for batch validation)';
COMMENT ON FUNCTION vms.gbcode_region_lower(text) IS 'smallest code inside a civil region prefix';
COMMENT ON FUNCTION vms.gbcode_region_upper(text) IS 'largest code inside a civil region prefix';
COMMENT ON FUNCTION vms.gbcode_in_region(vms.gbcode, text) IS 'true when the code lies in the civil region given as a 2/4/6/8-digit prefix; index-backed';
COMMENT ON FUNCTION vms.gbcode_check(vms.gbcode) IS 'problems of a syntactically valid code: invalid_province, unknown_industry, unknown_type, reserved_network';
COMMENT ON FUNCTION vms.gbcode_problems(vms.gbcode) IS 'problem keys of vms.gbcode_check as an array (empty when the code is fine)';
COMMENT ON FUNCTION vms.gbcode_type_table() IS 'the GB/T 28181 type code table';
COMMENT ON FUNCTION vms.gbcode_industry_table() IS 'the GB/T 28181 industry code table';
COMMENT ON VIEW vms.gb_device_type IS 'GB/T 28181 type codes (digits 11-13) with English and Chinese names';
COMMENT ON VIEW vms.gb_industry IS 'GB/T 28181 industry codes (digits 9-10) with English and Chinese names';
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
-- The device ledger (台账): regions, units, catalogue trees, devices, channels,
-- checkpoints and lanes.  Attribute columns hold the governed value users
-- query; what devices report is kept apart in *_reported (see 04_history.sql).
-- Only code and name (and a channel's device) are required: a missing
-- attribute is governance's business, not a constraint's.

CREATE FUNCTION vms._touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._touch_updated_at() IS 'internal: keeps updated_at current';

-- Decisions people take (ignore, revoke, reject, request) carry a reason.
CREATE FUNCTION vms._require_reason(reason text, what text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF coalesce(btrim(reason), '') = '' THEN
        RAISE EXCEPTION '% needs a reason', what USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION vms._require_reason(text, text) IS 'internal: refuses an empty reason for a decision';

CREATE TABLE vms.region (
    civil_code   text PRIMARY KEY CHECK (civil_code ~ '^([0-9]{2}){1,4}$'),
    name         text NOT NULL,
    level        smallint GENERATED ALWAYS AS (length(civil_code) / 2) STORED,
    parent_code  text GENERATED ALWAYS AS
                   (CASE WHEN length(civil_code) > 2 THEN left(civil_code, length(civil_code) - 2) END) STORED,
    boundary     geometry(MultiPolygon, 4326),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX region_parent_idx ON vms.region (parent_code);
CREATE INDEX region_boundary_idx ON vms.region USING gist (boundary);
COMMENT ON TABLE vms.region IS 'civil regions (GB/T 2260 codes: 2 province, 4 city, 6 county, 8 grassroots) with optional boundary';
COMMENT ON COLUMN vms.region.level IS '1 province, 2 city, 3 county, 4 street/town';
COMMENT ON COLUMN vms.region.parent_code IS 'the code two digits shorter';

CREATE TABLE vms.org_unit (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code         text UNIQUE,
    name         text NOT NULL UNIQUE,
    parent_id    bigint REFERENCES vms.org_unit (id),
    civil_code   text CHECK (civil_code ~ '^([0-9]{2}){1,4}$'),
    created_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.org_unit IS 'organisation and management units (管理单位/责任单位), a tree';

CREATE TABLE vms.catalog_node (
    code          vms.gbcode PRIMARY KEY
                  CHECK (vms.gbcode_type(code) IN (215, 216)),
    name          text NOT NULL,
    parent_code   vms.gbcode REFERENCES vms.catalog_node (code) ON DELETE CASCADE
                  DEFERRABLE INITIALLY IMMEDIATE,
    business_group vms.gbcode,
    civil_code    text,
    source_device vms.gbcode,
    sort_order    integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (parent_code IS NULL OR vms.gbcode_type(code) = 216)
);
CREATE INDEX catalog_node_parent_idx ON vms.catalog_node (parent_code);
COMMENT ON TABLE vms.catalog_node IS 'catalogue trees: business groups (type 215, roots) and virtual organisations (216) under them';
COMMENT ON COLUMN vms.catalog_node.source_device IS 'platform whose catalog reported the node; NULL when made by hand';

CREATE TABLE vms.point_type (
    code     text PRIMARY KEY,
    name_zh  text NOT NULL,
    name_en  text NOT NULL
);
INSERT INTO vms.point_type VALUES
    ('bullet', '枪机', 'bullet camera'),
    ('dome', '球机', 'PTZ dome camera'),
    ('capture', '抓拍机', 'capture camera'),
    ('hemisphere', '半球', 'hemispherical camera'),
    ('panoramic', '全景', 'panoramic camera'),
    ('other', '其他', 'other');
COMMENT ON TABLE vms.point_type IS 'point types (点位类型) a channel can have';

CREATE TABLE vms.device (
    code              vms.gbcode PRIMARY KEY,
    name              text NOT NULL,
    manufacturer      text,
    model             text,
    firmware          text,
    ip_address        inet,
    port              integer CHECK (port BETWEEN 1 AND 65535),
    transport         text CHECK (transport IN ('UDP', 'TCP')),
    civil_code        text CHECK (civil_code ~ '^([0-9]{2}){1,4}$'),
    unit_id           bigint REFERENCES vms.org_unit (id),
    online            boolean NOT NULL DEFAULT false,
    status_changed_at timestamptz,
    registered_at     timestamptz,
    last_keepalive_at timestamptz,
    overridden        text[] NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_unit_idx ON vms.device (unit_id);
COMMENT ON TABLE vms.device IS 'encoding devices (NVR/DVR/encoders/IPC) and lower platforms; attribute columns are the governed values';
COMMENT ON COLUMN vms.device.overridden IS 'attributes set by people; a device report never overwrites these';
COMMENT ON COLUMN vms.device.online IS 'maintained by the SIP worker; channels follow their device';

-- Digest HA1 only: H(user:realm:password) for MD5 and SHA-256, never the password.
CREATE TABLE vms.device_credential (
    device_code  vms.gbcode PRIMARY KEY REFERENCES vms.device (code) ON DELETE CASCADE,
    realm        text NOT NULL,
    ha1_md5      text NOT NULL,
    ha1_sha256   text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON vms.device_credential FROM PUBLIC;
COMMENT ON TABLE vms.device_credential IS 'SIP digest HA1 values per device (no plain-text passwords); readable only by the owner';

CREATE TABLE vms.channel (
    code              vms.gbcode PRIMARY KEY,
    device_code       vms.gbcode NOT NULL REFERENCES vms.device (code) ON DELETE CASCADE,
    name              text NOT NULL,
    alias             text,
    address           text,
    civil_code        text CHECK (civil_code ~ '^([0-9]{2}){1,4}$'),
    street            text,
    place_type        text,
    point_type        text REFERENCES vms.point_type (code),
    resolution        text CHECK (resolution ~ '^[0-9]{2,4}W$'),
    azimuth           real CHECK (azimuth >= 0 AND azimuth < 360),
    fov_angle         real CHECK (fov_angle > 0 AND fov_angle <= 360),
    fov_range_m       real CHECK (fov_range_m > 0),
    install_height_m  real CHECK (install_height_m >= 0),
    capabilities      text[] NOT NULL DEFAULT '{}',
    unit_id           bigint REFERENCES vms.org_unit (id),
    stream_url        text,
    geom              geometry(Point, 4326),
    -- NULL where Web Mercator is undefined, so a bad location is governance's business, not an error
    geom_3857         geometry(Point, 3857) GENERATED ALWAYS AS (
                          CASE WHEN ST_X(geom) BETWEEN -180 AND 180 AND ST_Y(geom) BETWEEN -85.05 AND 85.05
                               THEN ST_Transform(geom, 3857) END) STORED,
    coord_source      text,
    online            boolean NOT NULL DEFAULT false,
    status_changed_at timestamptz,
    overridden        text[] NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX channel_device_idx ON vms.channel (device_code);
CREATE INDEX channel_geom_idx ON vms.channel USING gist (geom);
CREATE INDEX channel_civil_idx ON vms.channel (civil_code);
CREATE INDEX channel_unit_idx ON vms.channel (unit_id);
COMMENT ON TABLE vms.channel IS 'monitoring points (监控点): camera channels of a device, with location and view geometry';
COMMENT ON COLUMN vms.channel.street IS 'owning street or town (所属街镇)';
COMMENT ON COLUMN vms.channel.place_type IS 'place type (场所类型), free text governed by rules';
COMMENT ON COLUMN vms.channel.resolution IS 'resolution class such as 200W, 400W, 800W';
COMMENT ON COLUMN vms.channel.azimuth IS 'orientation (朝向) in degrees clockwise from north, [0, 360)';
COMMENT ON COLUMN vms.channel.fov_angle IS 'horizontal field-of-view angle in degrees';
COMMENT ON COLUMN vms.channel.fov_range_m IS 'useful viewing distance in metres';
COMMENT ON COLUMN vms.channel.capabilities IS 'capability set (能力集), e.g. {ptz,face,plate,audio,infrared}';
COMMENT ON COLUMN vms.channel.geom IS 'location in WGS-84; converted from the source system on input';
COMMENT ON COLUMN vms.channel.geom_3857 IS 'the location in Web Mercator, derived, for map tiles';
COMMENT ON COLUMN vms.channel.coord_source IS 'coordinate system the location was given in (WGS84, CGCS2000, GCJ02, BD09)';
COMMENT ON COLUMN vms.channel.overridden IS 'attributes set by people; a catalog report never overwrites these';

CREATE TABLE vms.catalog_member (
    node_code     vms.gbcode NOT NULL REFERENCES vms.catalog_node (code) ON DELETE CASCADE,
    channel_code  vms.gbcode NOT NULL REFERENCES vms.channel (code) ON DELETE CASCADE,
    PRIMARY KEY (node_code, channel_code)
);
CREATE INDEX catalog_member_channel_idx ON vms.catalog_member (channel_code);
COMMENT ON TABLE vms.catalog_member IS 'which catalogue nodes list a channel (a channel may sit in several trees)';

CREATE TABLE vms.checkpoint (
    code            vms.gbcode PRIMARY KEY,
    name            text NOT NULL,
    direction_mode  text NOT NULL DEFAULT 'updown' CHECK (direction_mode IN ('multi', 'updown')),
    address         text,
    road            text,
    civil_code      text CHECK (civil_code ~ '^([0-9]{2}){1,4}$'),
    unit_id         bigint REFERENCES vms.org_unit (id),
    geom            geometry(Point, 4326),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX checkpoint_geom_idx ON vms.checkpoint USING gist (geom);
COMMENT ON TABLE vms.checkpoint IS 'checkpoints (卡口) with direction mode multi (多方向) or updown (上下行)';

CREATE TABLE vms.lane (
    checkpoint_code vms.gbcode NOT NULL REFERENCES vms.checkpoint (code) ON DELETE CASCADE,
    lane_no         smallint NOT NULL CHECK (lane_no BETWEEN 1 AND 99),
    direction       text NOT NULL,
    lane_type       text NOT NULL DEFAULT 'motor' CHECK (lane_type IN ('motor', 'non_motor', 'bus', 'emergency', 'mixed')),
    name            text,
    PRIMARY KEY (checkpoint_code, lane_no)
);
COMMENT ON TABLE vms.lane IS 'lanes (车道) of a checkpoint; direction is up/down or a compass movement depending on the mode';
COMMENT ON COLUMN vms.lane.direction IS 'updown mode: up, down; multi mode: E2W W2E S2N N2S SE2NW NW2SE NE2SW SW2NE';

CREATE TABLE vms.lane_channel (
    checkpoint_code vms.gbcode NOT NULL,
    lane_no         smallint NOT NULL,
    channel_code    vms.gbcode NOT NULL REFERENCES vms.channel (code) ON DELETE CASCADE,
    PRIMARY KEY (checkpoint_code, lane_no, channel_code),
    FOREIGN KEY (checkpoint_code, lane_no) REFERENCES vms.lane ON DELETE CASCADE
);
CREATE INDEX lane_channel_channel_idx ON vms.lane_channel (channel_code);
COMMENT ON TABLE vms.lane_channel IS 'video points that watch a lane';

-- Lane direction must fit the checkpoint's mode.
CREATE FUNCTION vms._lane_check_direction() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    mode text;
BEGIN
    SELECT direction_mode INTO mode FROM vms.checkpoint WHERE code = NEW.checkpoint_code;
    IF mode = 'updown' AND NEW.direction NOT IN ('up', 'down') THEN
        RAISE EXCEPTION 'lane direction "%" does not fit checkpoint mode "updown"', NEW.direction
            USING ERRCODE = 'check_violation',
                  DETAIL = format('Checkpoint %s uses up/down-bound directions.', NEW.checkpoint_code),
                  HINT = 'Use up or down.';
    ELSIF mode = 'multi' AND NEW.direction NOT IN
          ('E2W', 'W2E', 'S2N', 'N2S', 'SE2NW', 'NW2SE', 'NE2SW', 'SW2NE') THEN
        RAISE EXCEPTION 'lane direction "%" does not fit checkpoint mode "multi"', NEW.direction
            USING ERRCODE = 'check_violation',
                  DETAIL = format('Checkpoint %s uses compass movements.', NEW.checkpoint_code),
                  HINT = 'Use one of E2W, W2E, S2N, N2S, SE2NW, NW2SE, NE2SW, SW2NE.';
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._lane_check_direction() IS 'internal: lane direction must match its checkpoint mode';
CREATE TRIGGER lane_check_direction BEFORE INSERT OR UPDATE ON vms.lane
    FOR EACH ROW EXECUTE FUNCTION vms._lane_check_direction();

CREATE TRIGGER region_touch BEFORE UPDATE ON vms.region FOR EACH ROW EXECUTE FUNCTION vms._touch_updated_at();
CREATE TRIGGER catalog_node_touch BEFORE UPDATE ON vms.catalog_node FOR EACH ROW EXECUTE FUNCTION vms._touch_updated_at();
CREATE TRIGGER device_touch BEFORE UPDATE ON vms.device FOR EACH ROW EXECUTE FUNCTION vms._touch_updated_at();
CREATE TRIGGER channel_touch BEFORE UPDATE ON vms.channel FOR EACH ROW EXECUTE FUNCTION vms._touch_updated_at();
CREATE TRIGGER checkpoint_touch BEFORE UPDATE ON vms.checkpoint FOR EACH ROW EXECUTE FUNCTION vms._touch_updated_at();

-- Every node of a catalogue subtree, the root included.
CREATE FUNCTION vms.catalog_subtree(root vms.gbcode) RETURNS SETOF vms.gbcode
    LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
    WITH RECURSIVE t(code) AS (
        SELECT n.code FROM vms.catalog_node n WHERE n.code = root
        UNION
        SELECT n.code FROM vms.catalog_node n JOIN t ON n.parent_code = t.code
    )
    SELECT code FROM t
$$;
COMMENT ON FUNCTION vms.catalog_subtree(vms.gbcode) IS 'codes of a catalogue node and all nodes below it';

-- Password → HA1 for MD5 and SHA-256 digest; the password itself is not kept.
CREATE FUNCTION vms.device_set_password(device vms.gbcode, password text, realm text DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r text := coalesce(realm, nullif(current_setting('vms.sip_realm', true), ''),
                       left(nullif(current_setting('vms.sip_id', true), ''), 10));
    who text := device::text;
BEGIN
    IF r IS NULL THEN
        RAISE EXCEPTION 'no SIP realm to compute the digest for device %', device
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Neither the realm argument nor vms.sip_realm nor vms.sip_id is set.',
                  HINT = 'Pass the realm, or set vms.sip_id to the platform''s 20-digit code.';
    END IF;
    IF length(password) = 0 OR length(password) > 128 THEN
        RAISE EXCEPTION 'device password must have 1 to 128 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO vms.device_credential AS c (device_code, realm, ha1_md5, ha1_sha256)
    VALUES (device, r, md5(who || ':' || r || ':' || password),
            encode(sha256(convert_to(who || ':' || r || ':' || password, 'UTF8')), 'hex'))
    ON CONFLICT (device_code) DO UPDATE
        SET realm = EXCLUDED.realm, ha1_md5 = EXCLUDED.ha1_md5,
            ha1_sha256 = EXCLUDED.ha1_sha256, updated_at = now();
END $$;
COMMENT ON FUNCTION vms.device_set_password(vms.gbcode, text, text) IS
    'store the SIP digest HA1 (MD5 and SHA-256) of a device password; the password is not stored';
-- Ledger history, governed-value tracking and the reported (raw) layer.

CREATE TABLE vms.ledger_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name  text NOT NULL,
    code        vms.gbcode NOT NULL,
    op          text NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE')),
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changed_by  text NOT NULL DEFAULT session_user,
    acting_role text NOT NULL DEFAULT coalesce(nullif(current_setting('vms.acting_role', true), ''), current_user),
    application text DEFAULT current_setting('application_name', true),
    reason      text DEFAULT nullif(current_setting('vms.change_reason', true), ''),
    old_values  jsonb,
    new_values  jsonb
);
CREATE INDEX ledger_history_code_idx ON vms.ledger_history (code, changed_at);
CREATE INDEX ledger_history_time_idx ON vms.ledger_history (changed_at);
COMMENT ON TABLE vms.ledger_history IS 'every insert, update and delete of a device or channel: who, when, old and new values';
COMMENT ON COLUMN vms.ledger_history.changed_by IS 'session user (the person logged in)';
COMMENT ON COLUMN vms.ledger_history.acting_role IS 'current user at the time (differs under SET ROLE or SECURITY DEFINER)';
COMMENT ON COLUMN vms.ledger_history.reason IS 'value of the vms.change_reason setting, if the session set one';
COMMENT ON COLUMN vms.ledger_history.old_values IS 'whole row for DELETE; changed columns only for UPDATE';
COMMENT ON COLUMN vms.ledger_history.new_values IS 'whole row for INSERT; changed columns only for UPDATE';

CREATE FUNCTION vms._jsonb_diff(o jsonb, n jsonb, OUT old_part jsonb, OUT new_part jsonb)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(k, o -> k), '{}'), coalesce(jsonb_object_agg(k, n -> k), '{}')
      FROM jsonb_object_keys(n) AS k
     WHERE (o -> k) IS DISTINCT FROM (n -> k)
$$;
COMMENT ON FUNCTION vms._jsonb_diff(jsonb, jsonb) IS 'internal: the keys whose values differ, old and new';

-- A ledger row as history jsonb: the ledger content, without state columns
-- (online, keepalive times, updated_at, overridden) and derived columns
-- (geom_3857) that change without a
-- person changing the ledger.  Built column by column from builtin types:
-- to_jsonb() of a whole row looks up a cast per column per row and goes
-- through PostGIS's GeoJSON cast for the point, ten times slower in bulk.
-- STABLE, like jsonb_build_object, so the planner inlines them.
CREATE FUNCTION vms._device_jsonb(d vms.device) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('code', d.code::text, 'name', d.name, 'manufacturer', d.manufacturer,
        'model', d.model, 'firmware', d.firmware, 'ip_address', host(d.ip_address), 'port', d.port,
        'transport', d.transport, 'civil_code', d.civil_code, 'unit_id', d.unit_id);
CREATE FUNCTION vms._channel_jsonb(c vms.channel) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('code', c.code::text, 'device_code', c.device_code::text, 'name', c.name,
        'alias', c.alias, 'address', c.address, 'civil_code', c.civil_code, 'street', c.street,
        'place_type', c.place_type, 'point_type', c.point_type, 'resolution', c.resolution,
        'azimuth', c.azimuth, 'fov_angle', c.fov_angle, 'fov_range_m', c.fov_range_m,
        'install_height_m', c.install_height_m, 'capabilities', c.capabilities, 'unit_id', c.unit_id,
        'stream_url', c.stream_url, 'geom', ST_AsEWKT(c.geom), 'coord_source', c.coord_source);
COMMENT ON FUNCTION vms._device_jsonb(vms.device) IS 'internal: a device row as history jsonb';
COMMENT ON FUNCTION vms._channel_jsonb(vms.channel) IS 'internal: a channel row as history jsonb (point as EWKT)';

-- Statement-level triggers with transition tables: one INSERT into history
-- per statement, so a million-row import writes its history in one pass.
-- They run as the owner (people cannot write history themselves); a
-- statement trigger running as the person notes who is acting.
CREATE FUNCTION vms._note_acting_role() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('vms.acting_role', current_user, true);
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._note_acting_role() IS 'internal: remembers the acting role for history written as the owner';

-- One function for the three operations of both tables: the row builder is
-- vms._<table>_jsonb, applied to the statement's transition tables.
-- SECURITY DEFINER trigger: people may not write history or the audit log
-- themselves.  It takes nothing from the caller but the rows the statement
-- changed (transition tables) and the table name; the "state only" skip
-- (vms.ledger_writer) is honoured for superuser sessions (the workers) only.
CREATE FUNCTION vms._history_record() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    as_jsonb text := format('vms.%I', '_' || TG_TABLE_NAME || '_jsonb');
    nrows bigint;
BEGIN
    -- the SIP worker's online/offline flips are state, not ledger content;
    -- only a superuser session (the workers) may say so
    IF current_setting('vms.ledger_writer', true) = 'state'
       AND (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        EXECUTE format('INSERT INTO vms.ledger_history (table_name, code, op, new_values)
                        SELECT %L, n.code, ''INSERT'', %s(n) FROM new_rows n', TG_TABLE_NAME, as_jsonb);
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format('INSERT INTO vms.ledger_history (table_name, code, op, old_values)
                        SELECT %L, o.code, ''DELETE'', %s(o) FROM old_rows o', TG_TABLE_NAME, as_jsonb);
    ELSE
        EXECUTE format('INSERT INTO vms.ledger_history (table_name, code, op, old_values, new_values)
                        SELECT %L, n.code, ''UPDATE'', d.old_part, d.new_part
                          FROM new_rows n JOIN old_rows o ON o.code = n.code
                         CROSS JOIN LATERAL vms._jsonb_diff(%s(o), %s(n)) d
                         WHERE d.new_part <> ''{}''', TG_TABLE_NAME, as_jsonb, as_jsonb);
    END IF;
    GET DIAGNOSTICS nrows = ROW_COUNT;
    IF nrows > 0 THEN   -- one tamper-evident audit entry per statement; history holds the rows
        PERFORM vms.audit('ledger_' || lower(TG_OP), TG_TABLE_NAME, jsonb_build_object('rows', nrows));
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._history_record() IS 'internal: records inserted, deleted and changed ledger rows';

-- A code is the identity of a device or channel; history joins on it.
CREATE FUNCTION vms._forbid_recode() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.code IS DISTINCT FROM OLD.code THEN
        RAISE EXCEPTION 'the code of a % cannot be changed in place', TG_TABLE_NAME
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('Row %s would become %s.', OLD.code, NEW.code),
                  HINT = 'Insert the row under its new code and delete the old one, so history keeps both.';
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._forbid_recode() IS 'internal: codes are identities and are not updated';

CREATE TRIGGER device_no_recode BEFORE UPDATE OF code ON vms.device
    FOR EACH ROW EXECUTE FUNCTION vms._forbid_recode();
CREATE TRIGGER channel_no_recode BEFORE UPDATE OF code ON vms.channel
    FOR EACH ROW EXECUTE FUNCTION vms._forbid_recode();

CREATE TRIGGER device_acting_role BEFORE INSERT OR UPDATE OR DELETE ON vms.device
    FOR EACH STATEMENT EXECUTE FUNCTION vms._note_acting_role();
CREATE TRIGGER channel_acting_role BEFORE INSERT OR UPDATE OR DELETE ON vms.channel
    FOR EACH STATEMENT EXECUTE FUNCTION vms._note_acting_role();
CREATE TRIGGER device_history_ins AFTER INSERT ON vms.device
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._history_record();
CREATE TRIGGER device_history_upd AFTER UPDATE ON vms.device
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._history_record();
CREATE TRIGGER device_history_del AFTER DELETE ON vms.device
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._history_record();
CREATE TRIGGER channel_history_ins AFTER INSERT ON vms.channel
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._history_record();
CREATE TRIGGER channel_history_upd AFTER UPDATE ON vms.channel
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._history_record();
CREATE TRIGGER channel_history_del AFTER DELETE ON vms.channel
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._history_record();

-- Governed attributes --------------------------------------------------------
-- A person's insert or update marks the attributes it sets as overridden.
-- Writers that are not people (a device report, the bulk import which marks
-- overrides itself) set vms.ledger_writer for their transaction and skip this.

CREATE FUNCTION vms.governed_columns(tbl regclass) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE tbl
        WHEN 'vms.device'::regclass THEN
            '{name,manufacturer,model,firmware,ip_address,port,transport,civil_code,unit_id}'::text[]
        WHEN 'vms.channel'::regclass THEN
            '{name,alias,address,civil_code,street,place_type,point_type,resolution,azimuth,fov_angle,fov_range_m,install_height_m,capabilities,unit_id,stream_url,geom}'::text[]
    END
$$;
COMMENT ON FUNCTION vms.governed_columns(regclass) IS 'attribute columns of vms.device / vms.channel that people govern and devices report';

CREATE FUNCTION vms._mark_overridden() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n jsonb := to_jsonb(NEW);
    o jsonb := CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) END;
BEGIN
    NEW.overridden := ARRAY(
        SELECT DISTINCT k FROM (
            SELECT unnest(CASE WHEN TG_OP = 'UPDATE' THEN OLD.overridden ELSE '{}' END) AS k
            UNION ALL
            SELECT c FROM unnest(vms.governed_columns(TG_RELID)) AS c
             WHERE CASE WHEN TG_OP = 'INSERT' THEN jsonb_typeof(n -> c) <> 'null' AND n -> c <> '[]'
                        ELSE (n -> c) IS DISTINCT FROM (o -> c) END
        ) s ORDER BY k);
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._mark_overridden() IS 'internal: remembers which attributes a person set';

CREATE TRIGGER device_mark_overridden BEFORE INSERT OR UPDATE ON vms.device FOR EACH ROW
    WHEN (coalesce(current_setting('vms.ledger_writer', true), '') NOT IN ('system', 'state'))
    EXECUTE FUNCTION vms._mark_overridden();
CREATE TRIGGER channel_mark_overridden BEFORE INSERT OR UPDATE ON vms.channel FOR EACH ROW
    WHEN (coalesce(current_setting('vms.ledger_writer', true), '') NOT IN ('system', 'state'))
    EXECUTE FUNCTION vms._mark_overridden();

-- Reported layer -------------------------------------------------------------

CREATE TABLE vms.device_reported (
    code         vms.gbcode PRIMARY KEY REFERENCES vms.device (code) ON DELETE CASCADE,
    reported     jsonb NOT NULL,
    reported_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.device_reported IS 'what a device last reported about itself (DeviceInfo / registration), keyed by column name';

CREATE TABLE vms.channel_reported (
    code         vms.gbcode PRIMARY KEY REFERENCES vms.channel (code) ON DELETE CASCADE,
    reported     jsonb NOT NULL,
    reported_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.channel_reported IS 'what a device''s catalog last reported about a channel, keyed by column name';

-- Apply a report to one ledger row: store it raw, then copy into every
-- governed column that no person has overridden.
CREATE FUNCTION vms._apply_report(tbl regclass, code vms.gbcode, reported jsonb, extra jsonb)
    RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    governed text[] := vms.governed_columns(tbl);
    rawtbl text := CASE tbl WHEN 'vms.device'::regclass THEN 'vms.device_reported' ELSE 'vms.channel_reported' END;
    over text[];
    cols text[];
    unknown text;
    found_rows bigint;
BEGIN
    IF jsonb_typeof(reported) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'a report must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT k INTO unknown FROM jsonb_object_keys(reported) k WHERE k <> ALL (governed) LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'report key "%" is not a governed column of %', unknown, tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Keys must be among: %s.', array_to_string(governed, ', '));
    END IF;
    PERFORM set_config('vms.ledger_writer', 'system', true);

    EXECUTE format('SELECT overridden FROM %s WHERE code = $1 FOR UPDATE', tbl) INTO over USING code;
    GET DIAGNOSTICS found_rows = ROW_COUNT;   -- EXECUTE does not set FOUND
    IF found_rows = 0 THEN
        cols := ARRAY(SELECT k FROM jsonb_object_keys(reported || extra) k);
        EXECUTE format('INSERT INTO %s (code, %s) SELECT $1, %s FROM jsonb_populate_record(NULL::%s, $2)',
                       tbl, (SELECT string_agg(quote_ident(c), ', ') FROM unnest(cols) c),
                       (SELECT string_agg(quote_ident(c), ', ') FROM unnest(cols) c), tbl)
            USING code, reported || extra;
    ELSE
        cols := ARRAY(SELECT k FROM jsonb_object_keys(reported) k WHERE k <> ALL (over));
        IF cardinality(cols) > 0 THEN
            EXECUTE format('UPDATE %s t SET (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $2)) WHERE t.code = $1',
                           tbl, (SELECT string_agg(quote_ident(c), ', ') FROM unnest(cols) c),
                           (SELECT string_agg(quote_ident(c), ', ') FROM unnest(cols) c), tbl)
                USING code, reported;
        END IF;
    END IF;

    EXECUTE format('INSERT INTO %s (code, reported) VALUES ($1, $2)
                    ON CONFLICT (code) DO UPDATE SET reported = EXCLUDED.reported, reported_at = now()', rawtbl)
        USING code, reported;
    PERFORM set_config('vms.ledger_writer', '', true);
END $$;
COMMENT ON FUNCTION vms._apply_report(regclass, vms.gbcode, jsonb, jsonb) IS 'internal: store a report and apply it to non-overridden columns';

CREATE FUNCTION vms.device_apply_report(code vms.gbcode, reported jsonb) RETURNS void
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms._apply_report('vms.device', code, reported,
                             jsonb_build_object('name', coalesce(reported ->> 'name', code::text)));
COMMENT ON FUNCTION vms.device_apply_report(vms.gbcode, jsonb) IS
    'record what a device reports about itself; updates only attributes no person has set';

CREATE FUNCTION vms.channel_apply_report(code vms.gbcode, device vms.gbcode, reported jsonb) RETURNS void
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms._apply_report('vms.channel', code, reported,
                             jsonb_build_object('device_code', device,
                                                'name', coalesce(reported ->> 'name', code::text)));
COMMENT ON FUNCTION vms.channel_apply_report(vms.gbcode, vms.gbcode, jsonb) IS
    'record what a catalog reports about a channel; updates only attributes no person has set';

-- Give a governed attribute back to the device: drop the override and take
-- the last reported value (NULL if never reported).
CREATE FUNCTION vms.clear_override(tbl regclass, code vms.gbcode, col text) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    rawtbl text := CASE tbl WHEN 'vms.device'::regclass THEN 'vms.device_reported' ELSE 'vms.channel_reported' END;
BEGIN
    IF vms.governed_columns(tbl) IS NULL OR col <> ALL (vms.governed_columns(tbl)) THEN
        RAISE EXCEPTION '"%" is not a governed column of %', col, tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'See vms.governed_columns().';
    END IF;
    PERFORM set_config('vms.ledger_writer', 'system', true);
    EXECUTE format('UPDATE %1$s t SET %2$I = (SELECT %2$I FROM jsonb_populate_record(NULL::%1$s,
                        coalesce((SELECT r.reported FROM %3$s r WHERE r.code = $1), ''{}''))),
                        overridden = array_remove(t.overridden, $2)
                    WHERE t.code = $1', tbl, col, rawtbl)
        USING code, col;
    PERFORM set_config('vms.ledger_writer', '', true);
END $$;
COMMENT ON FUNCTION vms.clear_override(regclass, vms.gbcode, text) IS
    'drop a person''s override of one attribute and take the last reported value';
-- Batch import and export of the ledger template (one row per monitoring point).

CREATE FUNCTION vms.csv_rows(data bytea, encoding text DEFAULT 'auto')
    RETURNS TABLE (line_no bigint, fields text[], error text)
    AS 'MODULE_PATHNAME', 'csv_rows_bytea' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION vms.csv_rows_file(path text, encoding text DEFAULT 'auto')
    RETURNS TABLE (line_no bigint, fields text[], error text)
    AS 'MODULE_PATHNAME', 'csv_rows_file' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION vms.csv_rows(bytea, text) IS
    'parse CSV (UTF8, GB18030, GBK or auto) into (line_no, fields, error); unreadable records come back with error set';
COMMENT ON FUNCTION vms.csv_rows_file(text, text) IS
    'vms.csv_rows over a server file; needs pg_read_server_files';

CREATE FUNCTION vms.is_ip(text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_is_ip' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vms.is_ip(text) IS 'true when the text is an IPv4 or IPv6 address';

CREATE TABLE vms.ledger_template_column (
    position    smallint PRIMARY KEY,
    key         text NOT NULL UNIQUE,
    header      text NOT NULL UNIQUE,
    required    boolean NOT NULL DEFAULT false,
    description text NOT NULL
);
INSERT INTO vms.ledger_template_column VALUES
    (1,  'code',             '监控点编码', true,  '20-digit GB/T 28181 code of the monitoring point'),
    (2,  'name',             '监控点名称', true,  'name of the point'),
    (3,  'device_code',      '设备编码',   false, 'code of the encoding device or platform; empty: the point is its own device (IPC)'),
    (4,  'device_name',      '设备名称',   false, 'device name; used when the device is new'),
    (5,  'manufacturer',     '厂商',       false, 'device manufacturer'),
    (6,  'model',            '型号',       false, 'device model'),
    (7,  'ip_address',       'IP地址',     false, 'device IPv4 or IPv6 address'),
    (8,  'port',             '端口',       false, 'device port, 1-65535'),
    (9,  'alias',            '别名',       false, 'alias of the point'),
    (10, 'address',          '安装地址',   false, 'installation address'),
    (11, 'civil_code',       '行政区划',   false, 'GB/T 2260 civil code, 2/4/6/8 digits'),
    (12, 'street',           '所属街镇',   false, 'owning street or town'),
    (13, 'place_type',       '场所类型',   false, 'place type'),
    (14, 'point_type',       '点位类型',   false, 'bullet/dome/capture/hemisphere/panoramic/other or 枪机/球机/抓拍机/半球/全景/其他'),
    (15, 'resolution',       '分辨率',     false, 'resolution class: 200W, 400W, 800W ...'),
    (16, 'longitude',        '经度',       false, 'longitude in the coordinate system of column 18'),
    (17, 'latitude',         '纬度',       false, 'latitude in the coordinate system of column 18'),
    (18, 'coord_system',     '坐标系',     false, 'WGS84 (default), CGCS2000, GCJ02 or BD09'),
    (19, 'azimuth',          '朝向',       false, 'orientation, degrees clockwise from north [0, 360)'),
    (20, 'fov_angle',        '视场角',     false, 'field-of-view angle in degrees (0, 360]'),
    (21, 'fov_range_m',      '可视距离',   false, 'useful viewing distance in metres'),
    (22, 'install_height_m', '安装高度',   false, 'installation height in metres'),
    (23, 'capabilities',     '能力集',     false, 'capabilities separated by | or ;'),
    (24, 'unit',             '管理单位',   false, 'management unit name; created when new'),
    (25, 'stream_url',       '取流地址',   false, 'stream URL (rtsp:// ...)'),
    (26, 'catalog',          '资源目录',   false, 'catalogue node codes separated by |');
COMMENT ON TABLE vms.ledger_template_column IS
    'columns of the ledger import/export template; a header may use the key or the Chinese header';

CREATE TABLE vms.import_job (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text,
    encoding        text,
    imported_by     text NOT NULL DEFAULT session_user,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    total_rows      bigint NOT NULL DEFAULT 0,
    loaded_rows     bigint NOT NULL DEFAULT 0,
    rejected_rows   bigint NOT NULL DEFAULT 0,
    created_devices bigint NOT NULL DEFAULT 0,
    created_units   bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE vms.import_job IS 'one row per ledger import: counts of rows read, loaded and rejected';

CREATE TABLE vms.import_rejection (
    job_id   bigint NOT NULL REFERENCES vms.import_job (id) ON DELETE CASCADE,
    line_no  bigint NOT NULL,
    reasons  text[] NOT NULL,
    fields   text[],
    PRIMARY KEY (job_id, line_no)
);
COMMENT ON TABLE vms.import_rejection IS 'every rejected import row with its line number (header = line 1) and reasons';

CREATE FUNCTION vms.try_float8(text) RETURNS float8
    AS 'MODULE_PATHNAME', 'vms_try_float8' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vms.try_float8(text) IS 'the number in the text, or NULL when it is not a plain finite decimal';

-- Validate and load the records in pg_temp._ledger_csv for job_id.
-- Public, not internal: vms.ledger_import and vms.ledger_import_file run
-- with the caller's rights (table privileges, row-level security) and call
-- it, and internal functions are the owner's only.  Called directly it can
-- do nothing its caller could not do with INSERT and UPDATE.
-- work_mem: the import sorts and hashes whole files; spilling a million wide
-- rows to disk costs more than the memory.  gin_pending_list_limit: the
-- keyword index takes new rows in large batches instead of every 4 MB.
-- jit: compiling the wide validation expressions costs more than it saves.
CREATE FUNCTION vms.ledger_import_rows(job_id bigint) RETURNS vms.import_job
    LANGUAGE plpgsql SET search_path FROM CURRENT SET work_mem = '256MB'
    SET gin_pending_list_limit = '64MB' SET jit = off AS $$
DECLARE
    header text[];
    hdr_line bigint;
    col jsonb := '{}';
    h text;
    k text;
    missing text;
    total bigint;
    chunk constant bigint := 100000;
    lo bigint;
    hi bigint;
    job vms.import_job;
    n bigint;
    t0 timestamptz := clock_timestamp();
    valid bigint;
    loaded bigint := 0;
    point_types jsonb := (SELECT jsonb_object_agg(alias, code) FROM
                            (SELECT code, code AS alias FROM vms.point_type
                             UNION SELECT code, name_zh FROM vms.point_type) m);
BEGIN
    SELECT fields, line_no INTO header, hdr_line FROM _ledger_csv ORDER BY line_no LIMIT 1;
    IF header IS NULL THEN
        RAISE EXCEPTION 'import file has no readable header row'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The first line must name the template columns; see vms.ledger_template_column.';
    END IF;
    FOR i IN 1 .. cardinality(header) LOOP
        h := btrim(header[i]);
        SELECT t.key INTO k FROM vms.ledger_template_column t WHERE t.key = lower(h) OR t.header = h;
        IF k IS NULL THEN
            RAISE EXCEPTION 'unknown column "%" in import header', h
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Column %s of the header is not a template column.', i),
                      HINT = 'Template columns are listed in vms.ledger_template_column (key or Chinese header).';
        END IF;
        IF col ? k THEN
            RAISE EXCEPTION 'column "%" appears twice in import header', h
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        col := col || jsonb_build_object(k, i);
    END LOOP;
    SELECT t.header INTO missing FROM vms.ledger_template_column t
     WHERE t.required AND NOT col ? t.key ORDER BY position LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'import header lacks required column "%"', missing
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Text columns of every data record (absent columns read as NULL), then
    -- typed values, point type code and the list of reasons, in one pass.
    -- The raw fields stay in _ledger_csv: only rejected rows need them, and
    -- without them every later pass over _ledger_checked reads half as much.
    EXECUTE format($q$
        CREATE TEMP VIEW _ledger_raw AS
        SELECT line_no, error, cardinality(fields) AS nfields, %s
          FROM _ledger_csv WHERE line_no > %s OFFSET 0 $q$,   -- OFFSET 0: extract each field once, not per reference
        (SELECT string_agg(format('nullif(btrim(fields[%s]), '''') AS %I',
                                  coalesce((col ->> t.key)::int, 0), t.key), ', ' ORDER BY t.position)
           FROM vms.ledger_template_column t),
        hdr_line);

    CREATE TEMP TABLE _ledger_checked ON COMMIT DROP AS
    SELECT r.*,
           array_remove(ARRAY[
             r.error,
             CASE WHEN r.error IS NULL AND r.nfields <> cardinality(header)
                  THEN format('row has %s fields, the header has %s', r.nfields, cardinality(header)) END,
             CASE WHEN r.error IS NULL AND r.code IS NULL THEN 'code is missing' END,
             CASE WHEN r.code IS NOT NULL THEN 'code: ' || vms.gbcode_parse_error(r.code) END,
             CASE WHEN r.error IS NULL AND r.name IS NULL THEN 'name is missing' END,
             CASE WHEN length(r.name) > 200 THEN 'name is longer than 200 characters' END,
             CASE WHEN r.device_code IS NOT NULL THEN 'device_code: ' || vms.gbcode_parse_error(r.device_code) END,
             CASE WHEN r.ip_address IS NOT NULL AND NOT vms.is_ip(r.ip_address)
                  THEN format('ip_address "%s" is not an IP address', r.ip_address) END,
             CASE WHEN r.port IS NOT NULL AND r.port_i IS NULL
                  THEN format('port "%s" is not in 1-65535', r.port) END,
             CASE WHEN r.civil_code IS NOT NULL AND r.civil_code !~ '^([0-9]{2}){1,4}$'
                  THEN format('civil_code "%s" is not a 2/4/6/8-digit GB/T 2260 code', r.civil_code) END,
             CASE WHEN r.point_type IS NOT NULL AND r.point_type_code IS NULL
                  THEN format('point_type "%s" is unknown', r.point_type) END,
             CASE WHEN r.resolution IS NOT NULL AND r.resolution !~ '^[0-9]{2,4}W$'
                  THEN format('resolution "%s" is not like 200W', r.resolution) END,
             CASE WHEN (r.longitude IS NULL) <> (r.latitude IS NULL)
                  THEN 'longitude and latitude must be given together' END,
             CASE WHEN r.longitude IS NOT NULL AND r.lon_f IS NULL
                  THEN format('longitude "%s" is not a number in [-180, 180]', r.longitude) END,
             CASE WHEN r.latitude IS NOT NULL AND r.lat_f IS NULL
                  THEN format('latitude "%s" is not a number in [-90, 90]', r.latitude) END,
             CASE WHEN r.coord_system IS NOT NULL AND r.crs IS NULL
                  THEN format('coord_system "%s" is not WGS84, CGCS2000, GCJ02 or BD09', r.coord_system) END,
             CASE WHEN r.azimuth IS NOT NULL AND r.azimuth_f IS NULL
                  THEN format('azimuth "%s" is not a number in [0, 360)', r.azimuth) END,
             CASE WHEN r.fov_angle IS NOT NULL AND r.fov_angle_f IS NULL
                  THEN format('fov_angle "%s" is not a number in (0, 360]', r.fov_angle) END,
             CASE WHEN r.fov_range_m IS NOT NULL AND r.fov_range_f IS NULL
                  THEN format('fov_range_m "%s" is not a positive number', r.fov_range_m) END,
             CASE WHEN r.install_height_m IS NOT NULL AND r.height_f IS NULL
                  THEN format('install_height_m "%s" is not a number >= 0', r.install_height_m) END,
             CASE WHEN r.catalog IS NOT NULL AND EXISTS (
                      SELECT 1 FROM unnest(string_to_array(r.catalog, '|')) c
                       WHERE CASE WHEN vms.gbcode_parse_error(btrim(c)) IS NOT NULL THEN true
                                  ELSE NOT EXISTS (SELECT 1 FROM vms.catalog_node n
                                                    WHERE n.code = btrim(c)::vms.gbcode) END)
                  THEN format('catalog "%s" names an unknown catalogue node', r.catalog) END,
             -- vms.channel's channel_stream_url_check (18_inspection.sql): a row, not the import, is refused
             CASE WHEN r.stream_url IS NOT NULL
                       AND NOT (length(r.stream_url) <= 2048
                                AND r.stream_url ~ '^(rtsps?|https?)://[^[:space:][:cntrl:]/?#][^[:space:][:cntrl:]]*$')
                  THEN format('stream_url "%s" is not an rtsp://, rtsps://, http:// or https:// address', r.stream_url) END
           ], NULL) AS reasons
      FROM (SELECT r.*, coalesce(r.device_code, r.code) AS dev_code,
                   point_types ->> lower(r.point_type) AS point_type_code,
                   CASE WHEN r.port ~ '^[0-9]{1,5}$' AND r.port::int BETWEEN 1 AND 65535 THEN r.port::int END AS port_i,
                   CASE WHEN vms.try_float8(r.longitude) BETWEEN -180 AND 180 THEN vms.try_float8(r.longitude) END AS lon_f,
                   CASE WHEN vms.try_float8(r.latitude) BETWEEN -90 AND 90 THEN vms.try_float8(r.latitude) END AS lat_f,
                   CASE WHEN vms.try_float8(r.azimuth) >= 0 AND vms.try_float8(r.azimuth) < 360 THEN vms.try_float8(r.azimuth) END AS azimuth_f,
                   CASE WHEN vms.try_float8(r.fov_angle) > 0 AND vms.try_float8(r.fov_angle) <= 360 THEN vms.try_float8(r.fov_angle) END AS fov_angle_f,
                   CASE WHEN vms.try_float8(r.fov_range_m) > 0 THEN vms.try_float8(r.fov_range_m) END AS fov_range_f,
                   CASE WHEN vms.try_float8(r.install_height_m) >= 0 THEN vms.try_float8(r.install_height_m) END AS height_f,
                   CASE upper(replace(replace(coalesce(r.coord_system, 'WGS84'), '-', ''), '_', ''))
                        WHEN 'WGS84' THEN 'WGS84' WHEN 'CGCS2000' THEN 'CGCS2000'
                        WHEN 'GCJ02' THEN 'GCJ02' WHEN 'BD09' THEN 'BD09' END AS crs
              FROM _ledger_raw r) r;
    GET DIAGNOSTICS total = ROW_COUNT;
    DROP VIEW _ledger_raw;
    RAISE NOTICE 'import %: read and checked % data rows (% s)', job_id, total,
        round(extract(epoch FROM clock_timestamp() - t0)::numeric, 1);

    -- The same code twice: the last row wins, earlier ones are reported.
    UPDATE _ledger_checked c SET reasons = c.reasons || format('code repeated at line %s, which is imported instead', d.last_line)
      FROM (SELECT code, max(line_no) AS last_line FROM _ledger_checked
             WHERE reasons = '{}' GROUP BY code HAVING count(*) > 1) d
     WHERE c.code = d.code AND c.line_no < d.last_line AND c.reasons = '{}';

    INSERT INTO vms.import_rejection (job_id, line_no, reasons, fields)
    SELECT job_id, c.line_no, c.reasons, r.fields
      FROM _ledger_checked c JOIN _ledger_csv r ON r.line_no = c.line_no
     WHERE c.reasons <> '{}';
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE vms.import_job j SET total_rows = total, rejected_rows = n WHERE j.id = job_id;
    RAISE NOTICE 'import %: % rows rejected, see vms.import_rejection (% s)', job_id, n,
        round(extract(epoch FROM clock_timestamp() - t0)::numeric, 1);

    DELETE FROM _ledger_checked WHERE reasons <> '{}';
    valid := total - n;
    CREATE INDEX ON _ledger_checked (line_no);
    -- statistics for the columns the plans below depend on; all forty
    -- cost more than the statements
    ANALYZE _ledger_checked (line_no, code, dev_code, unit, catalog);

    PERFORM set_config('vms.ledger_writer', 'system', true);

    INSERT INTO vms.org_unit (name)
    SELECT DISTINCT unit FROM _ledger_checked WHERE unit IS NOT NULL
    ON CONFLICT (name) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE vms.import_job j SET created_units = n WHERE j.id = job_id;

    -- Devices: new ones are created from the device columns; existing ones
    -- take the device columns that the file fills in.
    WITH upserted AS (
        INSERT INTO vms.device AS d (code, name, manufacturer, model, ip_address, port, civil_code, overridden)
        SELECT DISTINCT ON (dev_code) dev_code::vms.gbcode,
               coalesce(device_name, CASE WHEN dev_code = code THEN name END, dev_code),
               manufacturer, model, ip_address::inet, port_i, civil_code,
               array_remove(ARRAY[CASE WHEN device_name IS NOT NULL OR dev_code = code THEN 'name' END,
                                  CASE WHEN manufacturer IS NOT NULL THEN 'manufacturer' END,
                                  CASE WHEN model IS NOT NULL THEN 'model' END,
                                  CASE WHEN ip_address IS NOT NULL THEN 'ip_address' END,
                                  CASE WHEN port IS NOT NULL THEN 'port' END,
                                  CASE WHEN civil_code IS NOT NULL THEN 'civil_code' END], NULL)
          FROM _ledger_checked
         ORDER BY dev_code, line_no DESC
        ON CONFLICT (code) DO UPDATE SET
            name = CASE WHEN EXCLUDED.overridden @> '{name}' THEN EXCLUDED.name ELSE d.name END,
            manufacturer = coalesce(EXCLUDED.manufacturer, d.manufacturer),
            model = coalesce(EXCLUDED.model, d.model),
            ip_address = coalesce(EXCLUDED.ip_address, d.ip_address),
            port = coalesce(EXCLUDED.port, d.port),
            civil_code = coalesce(EXCLUDED.civil_code, d.civil_code),
            overridden = ARRAY(SELECT DISTINCT unnest(d.overridden || EXCLUDED.overridden) ORDER BY 1)
        -- a device the file leaves as it is keeps its row: no new version,
        -- no index entries, no history to compare
        WHERE (d.name, d.manufacturer, d.model, d.ip_address, d.port, d.civil_code)
              IS DISTINCT FROM
              (CASE WHEN EXCLUDED.overridden @> '{name}' THEN EXCLUDED.name ELSE d.name END,
               coalesce(EXCLUDED.manufacturer, d.manufacturer), coalesce(EXCLUDED.model, d.model),
               coalesce(EXCLUDED.ip_address, d.ip_address), coalesce(EXCLUDED.port, d.port),
               coalesce(EXCLUDED.civil_code, d.civil_code))
              OR NOT d.overridden @> EXCLUDED.overridden
        RETURNING (xmax = 0) AS created)
    SELECT count(*) FILTER (WHERE created) INTO n FROM upserted;
    UPDATE vms.import_job j SET created_devices = n WHERE j.id = job_id;
    RAISE NOTICE 'import %: % devices created (% s)', job_id, n,
        round(extract(epoch FROM clock_timestamp() - t0)::numeric, 1);

    SELECT min(line_no), max(line_no) INTO lo, hi FROM _ledger_checked;
    WHILE lo <= hi LOOP
        INSERT INTO vms.channel AS c (code, device_code, name, alias, address, civil_code, street,
                place_type, point_type, resolution, azimuth, fov_angle, fov_range_m,
                install_height_m, capabilities, unit_id, stream_url, geom, coord_source, overridden)
        SELECT n.* FROM (
        SELECT r.code::vms.gbcode AS code, r.dev_code::vms.gbcode AS device_code, r.name, r.alias, r.address,
               r.civil_code, r.street, r.place_type, r.point_type_code AS point_type, r.resolution,
               r.azimuth_f::real AS azimuth, r.fov_angle_f::real AS fov_angle,
               r.fov_range_f::real AS fov_range_m, r.height_f::real AS install_height_m,
               coalesce(ARRAY(SELECT btrim(x) FROM regexp_split_to_table(r.capabilities, '[|;；]') x
                               WHERE btrim(x) <> ''), '{}') AS capabilities,
               u.id AS unit_id, r.stream_url,
               CASE WHEN r.longitude IS NOT NULL
                    THEN (SELECT ST_SetSRID(ST_MakePoint(p[1], p[2]), 4326)
                            FROM vms.coord_convert(r.lon_f, r.lat_f, r.crs, 'WGS84') p) END AS geom,
               CASE WHEN r.longitude IS NOT NULL THEN r.crs END AS coord_source,
               array_remove(ARRAY['name',
                   CASE WHEN r.alias IS NOT NULL THEN 'alias' END,
                   CASE WHEN r.address IS NOT NULL THEN 'address' END,
                   CASE WHEN r.civil_code IS NOT NULL THEN 'civil_code' END,
                   CASE WHEN r.street IS NOT NULL THEN 'street' END,
                   CASE WHEN r.place_type IS NOT NULL THEN 'place_type' END,
                   CASE WHEN r.point_type IS NOT NULL THEN 'point_type' END,
                   CASE WHEN r.resolution IS NOT NULL THEN 'resolution' END,
                   CASE WHEN r.azimuth IS NOT NULL THEN 'azimuth' END,
                   CASE WHEN r.fov_angle IS NOT NULL THEN 'fov_angle' END,
                   CASE WHEN r.fov_range_m IS NOT NULL THEN 'fov_range_m' END,
                   CASE WHEN r.install_height_m IS NOT NULL THEN 'install_height_m' END,
                   CASE WHEN r.capabilities IS NOT NULL THEN 'capabilities' END,
                   CASE WHEN r.unit IS NOT NULL THEN 'unit_id' END,
                   CASE WHEN r.stream_url IS NOT NULL THEN 'stream_url' END,
                   CASE WHEN r.longitude IS NOT NULL THEN 'geom' END], NULL) AS overridden
          FROM _ledger_checked r
          LEFT JOIN vms.org_unit u ON u.name = r.unit
         WHERE r.line_no BETWEEN lo AND lo + chunk - 1) n
         -- a re-imported row that changes nothing (as far as the caller
         -- sees) does not reach the upsert: no row lock, no new version, no
         -- index entries, no history to diff.  The WHERE of DO UPDATE below
         -- says the same for the rows it does see.
         WHERE NOT EXISTS (
             SELECT 1 FROM vms.channel o
              WHERE o.code = n.code
                AND (o.device_code, o.name, o.alias, o.address, o.civil_code, o.street, o.place_type,
                     o.point_type, o.resolution, o.azimuth, o.fov_angle, o.fov_range_m, o.install_height_m,
                     o.capabilities, o.unit_id, o.stream_url, o.geom, o.coord_source)
                    IS NOT DISTINCT FROM
                    (n.device_code, n.name, coalesce(n.alias, o.alias), coalesce(n.address, o.address),
                     coalesce(n.civil_code, o.civil_code), coalesce(n.street, o.street),
                     coalesce(n.place_type, o.place_type), coalesce(n.point_type, o.point_type),
                     coalesce(n.resolution, o.resolution), coalesce(n.azimuth, o.azimuth),
                     coalesce(n.fov_angle, o.fov_angle), coalesce(n.fov_range_m, o.fov_range_m),
                     coalesce(n.install_height_m, o.install_height_m),
                     CASE WHEN n.overridden @> '{capabilities}' THEN n.capabilities ELSE o.capabilities END,
                     coalesce(n.unit_id, o.unit_id), coalesce(n.stream_url, o.stream_url),
                     coalesce(n.geom, o.geom), coalesce(n.coord_source, o.coord_source))
                AND o.overridden @> n.overridden)
         ORDER BY n.code   -- key order: index pages are touched once, not at random
        ON CONFLICT (code) DO UPDATE SET
            device_code = EXCLUDED.device_code,
            name = EXCLUDED.name,
            alias = coalesce(EXCLUDED.alias, c.alias),
            address = coalesce(EXCLUDED.address, c.address),
            civil_code = coalesce(EXCLUDED.civil_code, c.civil_code),
            street = coalesce(EXCLUDED.street, c.street),
            place_type = coalesce(EXCLUDED.place_type, c.place_type),
            point_type = coalesce(EXCLUDED.point_type, c.point_type),
            resolution = coalesce(EXCLUDED.resolution, c.resolution),
            azimuth = coalesce(EXCLUDED.azimuth, c.azimuth),
            fov_angle = coalesce(EXCLUDED.fov_angle, c.fov_angle),
            fov_range_m = coalesce(EXCLUDED.fov_range_m, c.fov_range_m),
            install_height_m = coalesce(EXCLUDED.install_height_m, c.install_height_m),
            capabilities = CASE WHEN EXCLUDED.overridden @> '{capabilities}' THEN EXCLUDED.capabilities ELSE c.capabilities END,
            unit_id = coalesce(EXCLUDED.unit_id, c.unit_id),
            stream_url = coalesce(EXCLUDED.stream_url, c.stream_url),
            geom = coalesce(EXCLUDED.geom, c.geom),
            coord_source = coalesce(EXCLUDED.coord_source, c.coord_source),
            overridden = ARRAY(SELECT DISTINCT unnest(c.overridden || EXCLUDED.overridden) ORDER BY 1)
        -- a re-imported row that changes nothing is left alone: no new row
        -- version, no entries in the nine indexes, no history row to diff
        WHERE (c.device_code, c.name, c.alias, c.address, c.civil_code, c.street, c.place_type, c.point_type,
               c.resolution, c.azimuth, c.fov_angle, c.fov_range_m, c.install_height_m, c.capabilities,
               c.unit_id, c.stream_url, c.geom, c.coord_source)
              IS DISTINCT FROM
              (EXCLUDED.device_code, EXCLUDED.name, coalesce(EXCLUDED.alias, c.alias),
               coalesce(EXCLUDED.address, c.address), coalesce(EXCLUDED.civil_code, c.civil_code),
               coalesce(EXCLUDED.street, c.street), coalesce(EXCLUDED.place_type, c.place_type),
               coalesce(EXCLUDED.point_type, c.point_type), coalesce(EXCLUDED.resolution, c.resolution),
               coalesce(EXCLUDED.azimuth, c.azimuth), coalesce(EXCLUDED.fov_angle, c.fov_angle),
               coalesce(EXCLUDED.fov_range_m, c.fov_range_m),
               coalesce(EXCLUDED.install_height_m, c.install_height_m),
               CASE WHEN EXCLUDED.overridden @> '{capabilities}' THEN EXCLUDED.capabilities ELSE c.capabilities END,
               coalesce(EXCLUDED.unit_id, c.unit_id), coalesce(EXCLUDED.stream_url, c.stream_url),
               coalesce(EXCLUDED.geom, c.geom), coalesce(EXCLUDED.coord_source, c.coord_source))
              OR NOT c.overridden @> EXCLUDED.overridden;   -- as a set: the first load stores it unsorted
        -- loaded: valid rows taken in, whether they changed the ledger or not
        SELECT loaded + count(*) INTO loaded FROM _ledger_checked r
         WHERE r.line_no BETWEEN lo AND lo + chunk - 1;

        INSERT INTO vms.catalog_member (node_code, channel_code)
        SELECT btrim(x)::vms.gbcode, r.code::vms.gbcode
          FROM _ledger_checked r, regexp_split_to_table(r.catalog, '\|') x
         WHERE r.catalog IS NOT NULL AND r.line_no BETWEEN lo AND lo + chunk - 1
        ON CONFLICT DO NOTHING;

        UPDATE vms.import_job j SET loaded_rows = loaded WHERE j.id = job_id;
        RAISE NOTICE 'import %: loaded % of % valid rows (% s)', job_id, loaded, valid,
            round(extract(epoch FROM clock_timestamp() - t0)::numeric, 1);
        lo := lo + chunk;
    END LOOP;

    PERFORM set_config('vms.ledger_writer', '', true);
    UPDATE vms.import_job j SET finished_at = clock_timestamp() WHERE j.id = job_id RETURNING * INTO job;
    DROP TABLE _ledger_checked;
    RETURN job;
END $$;
COMMENT ON FUNCTION vms.ledger_import_rows(bigint) IS 'validate and load the template rows staged in pg_temp._ledger_csv (line_no, fields, error) for an import job; the second half of vms.ledger_import';

CREATE FUNCTION vms.ledger_import(data bytea, encoding text DEFAULT 'auto', source text DEFAULT NULL)
    RETURNS vms.import_job
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    job_id bigint;
    job vms.import_job;
BEGIN
    INSERT INTO vms.import_job (source, encoding) VALUES (coalesce(source, 'upload'), encoding)
    RETURNING id INTO job_id;
    -- Big imports stage rows in temp tables; 8 MB of local buffers makes
    -- every pass over them go to disk.  The setting can only grow before the
    -- session's first temp table, so a later import keeps what it has.
    IF current_setting('temp_buffers') = '8MB' AND to_regclass('pg_temp._ledger_csv') IS NULL THEN
        BEGIN
            PERFORM set_config('temp_buffers', '512MB', false);
        EXCEPTION WHEN invalid_parameter_value OR cant_change_runtime_param THEN
            NULL;
        END;
    END IF;
    IF to_regclass('pg_temp._ledger_csv') IS NOT NULL THEN
        DROP TABLE _ledger_csv;   -- left by an earlier failed import in this session
    END IF;
    CREATE TEMP TABLE _ledger_csv ON COMMIT DROP AS SELECT * FROM vms.csv_rows(data, encoding);
    job := vms.ledger_import_rows(job_id);
    DROP TABLE _ledger_csv;
    RETURN job;
END $$;
COMMENT ON FUNCTION vms.ledger_import(bytea, text, text) IS
    'import ledger template rows from CSV content (UTF8/GB18030/auto): valid rows upserted, bad rows kept in vms.import_rejection';

CREATE FUNCTION vms.ledger_import_file(path text, encoding text DEFAULT 'auto')
    RETURNS vms.import_job
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    job_id bigint;
    job vms.import_job;
BEGIN
    INSERT INTO vms.import_job (source, encoding) VALUES (path, encoding) RETURNING id INTO job_id;
    -- Big imports stage rows in temp tables; 8 MB of local buffers makes
    -- every pass over them go to disk.  The setting can only grow before the
    -- session's first temp table, so a later import keeps what it has.
    IF current_setting('temp_buffers') = '8MB' AND to_regclass('pg_temp._ledger_csv') IS NULL THEN
        BEGIN
            PERFORM set_config('temp_buffers', '512MB', false);
        EXCEPTION WHEN invalid_parameter_value OR cant_change_runtime_param THEN
            NULL;
        END;
    END IF;
    IF to_regclass('pg_temp._ledger_csv') IS NOT NULL THEN
        DROP TABLE _ledger_csv;   -- left by an earlier failed import in this session
    END IF;
    CREATE TEMP TABLE _ledger_csv ON COMMIT DROP AS SELECT * FROM vms.csv_rows_file(path, encoding);
    job := vms.ledger_import_rows(job_id);
    DROP TABLE _ledger_csv;
    RETURN job;
END $$;
COMMENT ON FUNCTION vms.ledger_import_file(text, text) IS
    'vms.ledger_import over a server file (needs pg_read_server_files)';

-- Export in the same template: COPY (SELECT * FROM vms.ledger_export) TO ... CSV HEADER
CREATE VIEW vms.ledger_export WITH (security_invoker = true) AS
SELECT c.code::text AS "监控点编码", c.name AS "监控点名称", c.device_code::text AS "设备编码",
       d.name AS "设备名称", d.manufacturer AS "厂商", d.model AS "型号",
       host(d.ip_address) AS "IP地址", d.port AS "端口", c.alias AS "别名", c.address AS "安装地址",
       c.civil_code AS "行政区划", c.street AS "所属街镇", c.place_type AS "场所类型",
       c.point_type AS "点位类型", c.resolution AS "分辨率",
       round(ST_X(c.geom)::numeric, 7) AS "经度", round(ST_Y(c.geom)::numeric, 7) AS "纬度",
       CASE WHEN c.geom IS NOT NULL THEN 'WGS84' END AS "坐标系",
       c.azimuth AS "朝向", c.fov_angle AS "视场角", c.fov_range_m AS "可视距离",
       c.install_height_m AS "安装高度", nullif(array_to_string(c.capabilities, '|'), '') AS "能力集",
       u.name AS "管理单位", c.stream_url AS "取流地址",
       (SELECT string_agg(m.node_code::text, '|' ORDER BY m.node_code) FROM vms.catalog_member m
         WHERE m.channel_code = c.code) AS "资源目录"
  FROM vms.channel c
  JOIN vms.device d ON d.code = c.device_code
  LEFT JOIN vms.org_unit u ON u.id = c.unit_id;
COMMENT ON VIEW vms.ledger_export IS
    'the ledger in the import template: COPY (SELECT * FROM vms.ledger_export ORDER BY 1) TO STDOUT WITH (FORMAT csv, HEADER)';
-- Alarms (告警): one open alarm per subject and fault type, with a count,
-- graded I-IV with the response and repair deadlines of the O&M contracts.

CREATE TABLE vms.alarm_level (
    level          smallint PRIMARY KEY CHECK (level BETWEEN 1 AND 4),
    roman          text NOT NULL,
    name_zh        text NOT NULL,
    name_en        text NOT NULL,
    respond_within interval,
    fix_within     interval NOT NULL,
    plan_within    interval
);
INSERT INTO vms.alarm_level VALUES
    (1, 'I',   '紧急',   'urgent',   '30 minutes', '12 hours', '2 hours'),
    (2, 'II',  '严重',   'severe',   '30 minutes', '24 hours', '2 hours'),
    (3, 'III', '较严重', 'major',    '30 minutes', '48 hours', '2 hours'),
    (4, 'IV',  '普通',   'ordinary', '30 minutes', '5 days',   '2 hours');
COMMENT ON TABLE vms.alarm_level IS
    'alarm levels I-IV (紧急/严重/较严重/普通) with the default response, plan and repair deadlines (a maintenance contract may set its own: vms.contract_deadline)';
COMMENT ON COLUMN vms.alarm_level.respond_within IS 'respond (acknowledge) within this of the raise; NULL: no response deadline';
COMMENT ON COLUMN vms.alarm_level.plan_within IS 'have a repair plan (a work order dispatched, or vms.alarm_plan) within this of the raise; NULL: no plan deadline';
COMMENT ON COLUMN vms.alarm_level.fix_within IS 'clear within this of the raise';

CREATE TABLE vms.alarm (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code            vms.gbcode NOT NULL,
    fault_type      text NOT NULL,
    level           smallint NOT NULL REFERENCES vms.alarm_level (level),
    source          text NOT NULL CHECK (source IN ('sip', 'inspection', 'governance', 'viid', 'manual')),
    state           text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'cleared')),
    occurrences     integer NOT NULL DEFAULT 1,
    first_raised_at timestamptz NOT NULL DEFAULT now(),
    last_raised_at  timestamptz NOT NULL DEFAULT now(),
    respond_by      timestamptz,
    fix_by          timestamptz,
    detail          jsonb NOT NULL DEFAULT '{}',
    acknowledged_by text,
    acknowledged_at timestamptz,
    cleared_at      timestamptz,
    clear_reason    text,
    plan_by         timestamptz,
    planned_at      timestamptz,
    contract_id     bigint,
    root_alarm_id   bigint REFERENCES vms.alarm (id) ON DELETE SET NULL,
    mask_id         bigint,
    escalated       text[] NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX alarm_open_idx ON vms.alarm (code, fault_type) WHERE state <> 'cleared';
CREATE INDEX alarm_time_idx ON vms.alarm (last_raised_at);
COMMENT ON TABLE vms.alarm IS 'alarm centre: devices, channels and workers raise here; one open row per code and fault type';
COMMENT ON COLUMN vms.alarm.code IS 'device or channel the alarm is about';
COMMENT ON COLUMN vms.alarm.occurrences IS 'how often the fault was raised while this alarm stayed open';
COMMENT ON COLUMN vms.alarm.plan_by IS 'deadline for a repair plan (a work order dispatched, or vms.alarm_plan)';
COMMENT ON COLUMN vms.alarm.planned_at IS 'when a repair plan was made (work order opened, or vms.alarm_plan)';
COMMENT ON COLUMN vms.alarm.contract_id IS 'the maintenance contract whose deadlines apply (vms.contract_for at the raise)';
COMMENT ON COLUMN vms.alarm.root_alarm_id IS 'root cause: the device''s offline alarm this channel alarm is suppressed under (not notified while that one is open)';
COMMENT ON COLUMN vms.alarm.mask_id IS 'the mask (vms.alarm_mask) in force when it was raised: recorded, never notified';
COMMENT ON COLUMN vms.alarm.escalated IS 'deadlines (respond, plan, fix) whose passing has escalated this alarm';
CREATE INDEX alarm_root_idx ON vms.alarm (root_alarm_id) WHERE root_alarm_id IS NOT NULL;

-- What happened to each alarm, in order: the outbox of alarm notifications
-- (notify = a person should hear of it: not masked, not suppressed).
CREATE TABLE vms.alarm_event (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id  bigint NOT NULL REFERENCES vms.alarm (id) ON DELETE CASCADE,
    at        timestamptz NOT NULL DEFAULT now(),
    kind      text NOT NULL CHECK (kind IN ('raised', 'escalated', 'acknowledged', 'planned', 'cleared', 'unsuppressed')),
    level     smallint NOT NULL,
    actor     text NOT NULL DEFAULT session_user,
    notify    boolean NOT NULL,
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alarm_event_alarm_idx ON vms.alarm_event (alarm_id, id);
CREATE INDEX alarm_event_at_idx ON vms.alarm_event (at);
COMMENT ON TABLE vms.alarm_event IS
    'every alarm event (raised, escalated, acknowledged, planned, cleared, unsuppressed) with level and actor; notify marks those people are told of (not masked, not suppressed)';

-- A raise: deadlines from the contract covering the code (else the level's),
-- recorded under a mask in force (never notified) or under the device's
-- open offline alarm for a channel's offline or stream fault (root cause:
-- suppressed, not notified while that one is open).  Helpers it calls are
-- caller's-rights functions defined with the rules (20_alarm_rules.sql).
CREATE FUNCTION vms.alarm_raise(code vms.gbcode, fault_type text, level smallint,
                                source text, detail jsonb DEFAULT '{}')
    RETURNS bigint
    -- every statement in it is a lookup by key: index scans even when the
    -- planner's statistics still show an empty alarm table (a mass outage
    -- on a new system would otherwise scan the growing table per raise)
    LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
    dl record;
    alarm_id bigint;
    fresh boolean;
    quiet boolean;
    mask bigint;
    root bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.alarm_level l WHERE l.level = alarm_raise.level) THEN
        RAISE EXCEPTION 'alarm level % does not exist', alarm_raise.level
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Levels are 1 (I, urgent) to 4 (IV, ordinary).';
    END IF;
    SELECT * INTO dl FROM vms.alarm_deadlines(alarm_raise.code, alarm_raise.level);
    mask := vms.alarm_mask_for(alarm_raise.code, alarm_raise.fault_type);
    root := vms.alarm_root_for(alarm_raise.code, alarm_raise.fault_type);
    INSERT INTO vms.alarm AS a (code, fault_type, level, source, detail, respond_by, plan_by, fix_by,
                                contract_id, mask_id, root_alarm_id)
    VALUES (alarm_raise.code, alarm_raise.fault_type, alarm_raise.level, alarm_raise.source,
            alarm_raise.detail, now() + dl.respond_within, now() + dl.plan_within, now() + dl.fix_within,
            dl.contract_id, mask, root)
    ON CONFLICT (code, fault_type) WHERE state <> 'cleared' DO UPDATE
        SET occurrences = a.occurrences + 1,
            last_raised_at = now(),
            level = least(a.level, EXCLUDED.level),
            respond_by = least(a.respond_by, EXCLUDED.respond_by),
            plan_by = least(a.plan_by, EXCLUDED.plan_by),
            fix_by = least(a.fix_by, EXCLUDED.fix_by),
            root_alarm_id = coalesce(a.root_alarm_id, EXCLUDED.root_alarm_id),
            detail = EXCLUDED.detail
    RETURNING a.id, a.occurrences = 1, a.mask_id, a.root_alarm_id INTO alarm_id, fresh, mask, root;
    quiet := mask IS NOT NULL
             OR EXISTS (SELECT 1 FROM vms.alarm r WHERE r.id = root AND r.state <> 'cleared');
    IF fresh THEN
        INSERT INTO vms.alarm_event (alarm_id, kind, level, notify, detail)
        VALUES (alarm_id, 'raised', alarm_raise.level, NOT quiet,
                jsonb_strip_nulls(jsonb_build_object('source', alarm_raise.source, 'mask', mask, 'root', root,
                                                     'detail', alarm_raise.detail)));
        -- a device going offline: its channels' open offline and stream
        -- alarms now have it as their root cause
        IF alarm_raise.fault_type = 'offline' THEN
            UPDATE vms.alarm c SET root_alarm_id = alarm_id
              FROM vms.channel ch
             WHERE ch.device_code = alarm_raise.code AND c.code = ch.code
               AND c.fault_type IN ('offline', 'stream') AND c.state <> 'cleared' AND c.root_alarm_id IS NULL;
        END IF;
    END IF;
    IF NOT quiet THEN
        PERFORM pg_notify('vms_alarm', json_build_object('id', alarm_id, 'code', alarm_raise.code::text,
                          'fault_type', alarm_raise.fault_type, 'level', alarm_raise.level)::text);
    END IF;
    RETURN alarm_id;
END $$;
COMMENT ON FUNCTION vms.alarm_raise(vms.gbcode, text, smallint, text, jsonb) IS
    'raise an alarm, or count one more occurrence of the open alarm for the same code and fault type; deadlines by contract and level; masked or root-cause-suppressed alarms are recorded, not notified; others notify channel vms_alarm and get a notify event';

CREATE FUNCTION vms.alarm_acknowledge(alarm_id bigint) RETURNS boolean
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    a vms.alarm;
BEGIN
    UPDATE vms.alarm SET state = 'acknowledged', acknowledged_by = session_user, acknowledged_at = now()
     WHERE id = alarm_id AND state = 'open' RETURNING * INTO a;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO vms.alarm_event (alarm_id, kind, level, notify) VALUES (a.id, 'acknowledged', a.level, false);
    RETURN true;
END $$;
COMMENT ON FUNCTION vms.alarm_acknowledge(bigint) IS 'acknowledge (respond to) an open alarm; false if it was not open';

-- A clear; clearing a device's offline alarm clears its channels' alarms
-- suppressed under it (a stream fault found again is raised again by the
-- next inspection), except a channel offline its catalog still reports:
-- that one stays open and is notified now as a fault of its own.
CREATE FUNCTION vms.alarm_clear(code vms.gbcode, fault_type text, reason text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
    a vms.alarm;
    quiet boolean;
BEGIN
    UPDATE vms.alarm x SET state = 'cleared', cleared_at = now(), clear_reason = alarm_clear.reason
     WHERE x.code = alarm_clear.code AND x.fault_type = alarm_clear.fault_type AND x.state <> 'cleared'
    RETURNING * INTO a;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    quiet := a.mask_id IS NOT NULL
             OR EXISTS (SELECT 1 FROM vms.alarm r WHERE r.id = a.root_alarm_id AND r.state <> 'cleared');
    INSERT INTO vms.alarm_event (alarm_id, kind, level, notify, detail)
    VALUES (a.id, 'cleared', a.level, NOT quiet, jsonb_strip_nulls(jsonb_build_object('reason', alarm_clear.reason)));
    WITH c AS (
        UPDATE vms.alarm x SET state = 'cleared', cleared_at = now(),
               clear_reason = 'root cause cleared: ' || coalesce(alarm_clear.reason, 'device alarm cleared')
         WHERE x.root_alarm_id = a.id AND x.state <> 'cleared'
           AND NOT (x.fault_type = 'offline'
                    AND EXISTS (SELECT 1 FROM vms.channel_status s WHERE s.code = x.code AND s.status <> 'ON'))
        RETURNING x.id, x.level)
    INSERT INTO vms.alarm_event (alarm_id, kind, level, notify, detail)
    SELECT c.id, 'cleared', c.level, false, jsonb_build_object('reason', 'root cause cleared', 'root', a.id) FROM c;
    INSERT INTO vms.alarm_event (alarm_id, kind, level, notify, detail)
    SELECT x.id, 'unsuppressed', x.level, x.mask_id IS NULL, jsonb_build_object('root', a.id)
      FROM vms.alarm x WHERE x.root_alarm_id = a.id AND x.state <> 'cleared';
    RETURN true;
END $$;
COMMENT ON FUNCTION vms.alarm_clear(vms.gbcode, text, text) IS
    'clear the open alarm for a code and fault type with a reason; false if none was open; a device''s offline alarm takes its suppressed channel alarms with it (a channel its catalog still reports offline stays open, now notified)';
-- Tags (标签): categories, hierarchical tags, channel assignments with provenance.

CREATE TABLE vms.tag_category (
    code          text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]*$'),
    name          text NOT NULL,
    hierarchical  boolean NOT NULL DEFAULT false
);
INSERT INTO vms.tag_category VALUES
    ('scenario', '应用场景', true),
    ('responsible_unit', '责任单位', true),
    ('place_type', '场所类型', false),
    ('capability', '能力', false),
    ('custom', '自定义', true);
COMMENT ON TABLE vms.tag_category IS 'tag categories: application scenario, responsible unit, place type, capability, custom';

CREATE TABLE vms.tag (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    category   text NOT NULL REFERENCES vms.tag_category (code),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    parent_id  bigint REFERENCES vms.tag (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (category, name)
);
CREATE INDEX tag_parent_idx ON vms.tag (parent_id);
CREATE INDEX tag_name_idx ON vms.tag (name);
COMMENT ON TABLE vms.tag IS 'tags; a tag in a hierarchical category may have a parent in the same category';

CREATE FUNCTION vms._tag_check_parent() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.parent_id IS NOT NULL THEN
        IF NOT (SELECT hierarchical FROM vms.tag_category WHERE code = NEW.category) THEN
            RAISE EXCEPTION 'tag category "%" is not hierarchical', NEW.category
                USING ERRCODE = 'check_violation', HINT = 'Leave parent_id empty for tags of this category.';
        END IF;
        IF (SELECT category FROM vms.tag WHERE id = NEW.parent_id) IS DISTINCT FROM NEW.category THEN
            RAISE EXCEPTION 'parent tag % is not in category "%"', NEW.parent_id, NEW.category
                USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.id IS NOT NULL AND NEW.id IN (SELECT vms.tag_subtree(NEW.id)) AND NEW.parent_id IN (SELECT vms.tag_subtree(NEW.id)) THEN
            RAISE EXCEPTION 'tag % cannot be placed under its own descendant %', NEW.id, NEW.parent_id
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._tag_check_parent() IS 'internal: parents only in hierarchical categories, same category, no cycles';

CREATE TABLE vms.channel_tag (
    channel_code  vms.gbcode NOT NULL REFERENCES vms.channel (code) ON DELETE CASCADE,
    tag_id        bigint NOT NULL REFERENCES vms.tag (id) ON DELETE CASCADE,
    source        text NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'rule', 'import')),
    assigned_by   text NOT NULL DEFAULT session_user,
    assigned_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_code, tag_id)
);
CREATE INDEX channel_tag_tag_idx ON vms.channel_tag (tag_id, channel_code);
COMMENT ON TABLE vms.channel_tag IS 'tags on channels with provenance: who, when, by hand / by rule / by import';

-- A tag and every tag below it.
CREATE FUNCTION vms.tag_subtree(root bigint) RETURNS SETOF bigint
    LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
    WITH RECURSIVE t(id) AS (
        SELECT id FROM vms.tag WHERE id = root
        UNION
        SELECT g.id FROM vms.tag g JOIN t ON g.parent_id = t.id
    )
    SELECT id FROM t
$$;
COMMENT ON FUNCTION vms.tag_subtree(bigint) IS 'ids of a tag and all tags below it';

CREATE TRIGGER tag_check_parent BEFORE INSERT OR UPDATE ON vms.tag
    FOR EACH ROW EXECUTE FUNCTION vms._tag_check_parent();

-- Tag references in filters: an id, a name, or "category:name".
CREATE FUNCTION vms.tag_resolve(ref jsonb) RETURNS bigint
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    ids bigint[];
    s text;
BEGIN
    IF jsonb_typeof(ref) = 'number' THEN
        SELECT array_agg(id) INTO ids FROM vms.tag WHERE id = (ref #>> '{}')::numeric;
    ELSIF jsonb_typeof(ref) = 'string' THEN
        s := ref #>> '{}';
        IF position(':' IN s) > 0 THEN
            SELECT array_agg(id) INTO ids FROM vms.tag
             WHERE category = split_part(s, ':', 1) AND name = substr(s, position(':' IN s) + 1);
        ELSE
            SELECT array_agg(id) INTO ids FROM vms.tag WHERE name = s;
        END IF;
    ELSE
        RAISE EXCEPTION 'tag reference must be an id or a name, not %', jsonb_typeof(ref)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ids IS NULL THEN
        RAISE EXCEPTION 'tag % does not exist', ref
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF cardinality(ids) > 1 THEN
        RAISE EXCEPTION 'tag name % is ambiguous', ref
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('%s tags in different categories have this name.', cardinality(ids)),
                  HINT = 'Write "category:name" or use the tag id.';
    END IF;
    RETURN ids[1];
END $$;
COMMENT ON FUNCTION vms.tag_resolve(jsonb) IS 'tag id from an id, a name or "category:name"';

CREATE FUNCTION vms.tag_create(category text, name text, parent text DEFAULT NULL) RETURNS bigint
    LANGUAGE sql SET search_path FROM CURRENT
    BEGIN ATOMIC
        INSERT INTO vms.tag (category, name, parent_id)
        VALUES (category, name,
                CASE WHEN parent IS NOT NULL THEN vms.tag_resolve(to_jsonb(category || ':' || parent)) END)
        ON CONFLICT ON CONSTRAINT tag_category_name_key DO UPDATE SET parent_id = EXCLUDED.parent_id
        RETURNING id;
    END;
COMMENT ON FUNCTION vms.tag_create(text, text, text) IS 'create (or re-parent) a tag; returns its id';

CREATE FUNCTION vms.tag_assign(channel vms.gbcode, tag text, source text DEFAULT 'manual') RETURNS boolean
    LANGUAGE sql SET search_path FROM CURRENT
    BEGIN ATOMIC
        WITH ins AS (
            INSERT INTO vms.channel_tag (channel_code, tag_id, source)
            VALUES (channel, vms.tag_resolve(to_jsonb(tag)), source)
            ON CONFLICT DO NOTHING RETURNING 1)
        SELECT count(*) > 0 FROM ins;
    END;
COMMENT ON FUNCTION vms.tag_assign(vms.gbcode, text, text) IS 'tag a channel (tag by name or "category:name"); false if it already had the tag';

CREATE FUNCTION vms.tag_unassign(channel vms.gbcode, tag text) RETURNS boolean
    LANGUAGE sql SET search_path FROM CURRENT
    BEGIN ATOMIC
        WITH del AS (
            DELETE FROM vms.channel_tag WHERE channel_code = channel AND tag_id = vms.tag_resolve(to_jsonb(tag))
            RETURNING 1)
        SELECT count(*) > 0 FROM del;
    END;
COMMENT ON FUNCTION vms.tag_unassign(vms.gbcode, text) IS 'remove a tag from a channel; false if it did not have it';
-- Point governance (点位治理): rules stored as data, run over the ledger or a
-- region, producing tasks with a life cycle and metrics per unit and region.

CREATE TABLE vms.governance_rule (
    code        text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('required_fields', 'code_role', 'civil_code_mismatch',
                    'coordinates', 'outside_region', 'same_point', 'duplicate_name', 'naming_pattern', 'stale')),
    description text NOT NULL,
    severity    smallint NOT NULL DEFAULT 3 REFERENCES vms.alarm_level (level),
    enabled     boolean NOT NULL DEFAULT true,
    params      jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE vms.governance_rule IS 'governance rules as data: a kind of check, its parameters, severity (1-4 as alarm levels) and whether it runs';
COMMENT ON COLUMN vms.governance_rule.params IS 'required_fields: {"fields": [...], "point_types": [...]}; same_point: {"min_count": n}; stale: {"days": n}';

INSERT INTO vms.governance_rule (code, kind, description, severity, params) VALUES
    ('required_fields', 'required_fields', '必填属性缺失: required attributes missing', 3,
        '{"fields": ["name", "address", "civil_code", "point_type", "geom", "unit_id"]}'),
    ('capture_required_fields', 'required_fields', '抓拍机必填属性缺失: capture cameras also need resolution, azimuth and capabilities', 3,
        '{"fields": ["resolution", "azimuth", "capabilities"], "point_types": ["capture"]}'),
    ('azimuth_missing', 'required_fields', '朝向缺失: orientation missing', 4, '{"fields": ["azimuth"]}'),
    ('place_type_missing', 'required_fields', '场所类型缺失: place type missing', 4, '{"fields": ["place_type"]}'),
    ('code_role', 'code_role', '编码不合规: code is not a camera code, or has an unknown industry or a reserved network identifier', 2, '{"types": [131, 132]}'),
    ('civil_code_mismatch', 'civil_code_mismatch', '行政区划与位置不符: civil code disagrees with the region containing the location', 3, '{}'),
    ('coordinates', 'coordinates', '经纬度异常: coordinates missing, zero, outside China or swapped', 2, '{}'),
    ('outside_region', 'outside_region', '位置超出所属区域: location outside the declared region', 3, '{}'),
    ('same_point', 'same_point', '点位重叠: many channels at exactly the same point', 4, '{"min_count": 3}'),
    ('duplicate_name', 'duplicate_name', '名称重复: the same name used twice within a unit', 4, '{}'),
    ('naming_pattern', 'naming_pattern', '命名不规范: name does not follow the naming pattern of its region', 4, '{}'),
    ('stale', 'stale', '信息陈旧: record not updated for a long time', 4, '{"days": 365}');

CREATE TABLE vms.naming_pattern (
    civil_prefix text PRIMARY KEY CHECK (civil_prefix ~ '^([0-9]{2}){0,4}$'),
    pattern      text NOT NULL,
    example      text,
    description  text
);
COMMENT ON TABLE vms.naming_pattern IS 'naming patterns (regular expressions) per civil region prefix; the longest matching prefix applies; empty prefix = everywhere';

CREATE FUNCTION vms._naming_pattern_check() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM '' ~ NEW.pattern;   -- refuse patterns the regex engine cannot compile
    IF NEW.example IS NOT NULL AND NEW.example !~ NEW.pattern THEN
        RAISE EXCEPTION 'naming pattern does not match its own example "%"', NEW.example
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._naming_pattern_check() IS 'internal: patterns compile and match their example';
CREATE TRIGGER naming_pattern_check BEFORE INSERT OR UPDATE ON vms.naming_pattern
    FOR EACH ROW EXECUTE FUNCTION vms._naming_pattern_check();

CREATE TABLE vms.governance_run (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope        text,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    run_by       text NOT NULL DEFAULT session_user,
    channels     bigint,
    findings     bigint,
    opened       bigint,
    reopened     bigint,
    closed       bigint
);
COMMENT ON TABLE vms.governance_run IS 'one row per governance run: scope and counts of findings, tasks opened, reopened and closed';

CREATE TABLE vms.governance_task (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_code   vms.gbcode NOT NULL REFERENCES vms.channel (code) ON DELETE CASCADE,
    rule_code      text NOT NULL REFERENCES vms.governance_rule (code) ON DELETE CASCADE,
    state          text NOT NULL DEFAULT 'open'
                   CHECK (state IN ('open', 'assigned', 'fixed', 'verified', 'ignored')),
    severity       smallint NOT NULL,
    detail         text,
    unit_id        bigint REFERENCES vms.org_unit (id),
    civil_code     text,
    first_found_at timestamptz NOT NULL DEFAULT now(),
    last_found_at  timestamptz NOT NULL DEFAULT now(),
    found_by_run   bigint REFERENCES vms.governance_run (id),
    assigned_to    text,
    assigned_at    timestamptz,
    fixed_at       timestamptz,
    fixed_by       text,
    closed_at      timestamptz,
    closed_by_run  bigint REFERENCES vms.governance_run (id),
    ignore_reason  text,
    CHECK (state <> 'ignored' OR ignore_reason IS NOT NULL)
);
-- one live task per channel and rule: a re-run never duplicates it
CREATE UNIQUE INDEX governance_task_live_idx ON vms.governance_task (channel_code, rule_code)
    WHERE state IN ('open', 'assigned', 'fixed', 'ignored');
CREATE INDEX governance_task_unit_idx ON vms.governance_task (unit_id, state);
COMMENT ON TABLE vms.governance_task IS 'governance tasks: open → assigned → fixed → verified (closed by a run that no longer finds the problem), or ignored with a reason';

-- Findings of one rule: (channel_code, detail) for channels in scope.
-- Each kind is one set-based query; scope is a civil-code prefix or NULL.
CREATE FUNCTION vms.governance_findings(rule vms.governance_rule, scope text DEFAULT NULL)
    RETURNS TABLE (channel_code vms.gbcode, detail text)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    p jsonb := rule.params;
BEGIN
    CASE rule.kind
    WHEN 'required_fields' THEN
        RETURN QUERY EXECUTE format($q$
        SELECT code, 'missing: ' || array_to_string(missing, ', ')
          FROM (SELECT c.code, %s AS missing FROM vms.channel c
                 WHERE ($1 IS NULL OR c.civil_code LIKE $1 || '%%')
                   AND ($2 IS NULL OR c.point_type = ANY ($2))) m
         WHERE cardinality(missing) > 0 $q$,
            vms._missing_fields_expr(ARRAY(SELECT jsonb_array_elements_text(p -> 'fields'))))
        USING scope, CASE WHEN p ? 'point_types' THEN ARRAY(SELECT jsonb_array_elements_text(p -> 'point_types')) END;
    WHEN 'code_role' THEN
        RETURN QUERY
        SELECT c.code, concat_ws('; ',
                   CASE WHEN vms.gbcode_type(c.code) NOT IN (SELECT (jsonb_array_elements_text(p -> 'types'))::int)
                        THEN format('type code %s is not a camera type', lpad(vms.gbcode_type(c.code)::text, 3, '0')) END,
                   (SELECT string_agg(k.detail, '; ') FROM vms.gbcode_check(c.code) k))
          FROM vms.channel c
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
           AND (vms.gbcode_type(c.code) NOT IN (SELECT (jsonb_array_elements_text(p -> 'types'))::int)
                OR cardinality(vms.gbcode_problems(c.code)) > 0);
    WHEN 'coordinates' THEN
        RETURN QUERY
        SELECT c.code,
               CASE WHEN c.geom IS NULL THEN 'location missing'
                    WHEN ST_X(c.geom) = 0 AND ST_Y(c.geom) = 0 THEN 'location is (0, 0)'
                    WHEN ST_X(c.geom) BETWEEN 3.8 AND 53.6 AND ST_Y(c.geom) BETWEEN 73.5 AND 135.1
                        THEN format('longitude and latitude look swapped (%s, %s)', ST_X(c.geom), ST_Y(c.geom))
                    ELSE format('location (%s, %s) is outside China', ST_X(c.geom), ST_Y(c.geom)) END
          FROM vms.channel c
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
           AND (c.geom IS NULL
                OR NOT (ST_X(c.geom) BETWEEN 73.5 AND 135.1 AND ST_Y(c.geom) BETWEEN 3.8 AND 53.6));
    WHEN 'civil_code_mismatch' THEN
        -- the most specific region whose boundary covers the point
        RETURN QUERY
        SELECT c.code, format('recorded civil code %s, but the location lies in %s (%s)', c.civil_code, r.civil_code, r.name)
          FROM vms.channel c
          CROSS JOIN LATERAL (SELECT g.civil_code, g.name FROM vms.region g
                               WHERE g.boundary IS NOT NULL AND ST_Covers(g.boundary, c.geom)
                               ORDER BY g.level DESC LIMIT 1) r
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
           AND c.geom IS NOT NULL AND c.civil_code IS NOT NULL
           AND NOT (r.civil_code LIKE c.civil_code || '%' OR c.civil_code LIKE r.civil_code || '%');
    WHEN 'outside_region' THEN
        RETURN QUERY
        SELECT c.code, format('location is %s m outside region %s (%s)',
                              round(ST_Distance(g.boundary::geography, c.geom::geography)), g.civil_code, g.name)
          FROM vms.channel c
          JOIN vms.region g ON g.civil_code = c.civil_code
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
           AND g.boundary IS NOT NULL AND c.geom IS NOT NULL AND NOT ST_Covers(g.boundary, c.geom);
    WHEN 'same_point' THEN
        RETURN QUERY
        SELECT c.code, format('%s channels share the point %s', s.n, ST_AsText(c.geom))
          FROM vms.channel c
          JOIN (SELECT geom AS g, count(*) AS n FROM vms.channel
                 WHERE geom IS NOT NULL AND (scope IS NULL OR civil_code LIKE scope || '%')
                 GROUP BY geom HAVING count(*) >= coalesce((p ->> 'min_count')::int, 3)) s
            ON c.geom = s.g
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%');
    WHEN 'duplicate_name' THEN
        RETURN QUERY
        SELECT c.code, format('name "%s" is used by %s channels of the same unit', c.name, d.n)
          FROM vms.channel c
          JOIN (SELECT unit_id, name, count(*) AS n FROM vms.channel
                 WHERE unit_id IS NOT NULL AND (scope IS NULL OR civil_code LIKE scope || '%')
                 GROUP BY unit_id, name HAVING count(*) > 1) d
            ON d.unit_id = c.unit_id AND d.name = c.name
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%');
    WHEN 'naming_pattern' THEN
        RETURN QUERY
        SELECT c.code, format('name "%s" does not match %s (e.g. %s)', c.name, np.pattern, coalesce(np.example, '-'))
          FROM vms.channel c
          CROSS JOIN LATERAL (SELECT n.pattern, n.example FROM vms.naming_pattern n
                               WHERE coalesce(c.civil_code, '') LIKE n.civil_prefix || '%'
                               ORDER BY length(n.civil_prefix) DESC LIMIT 1) np
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
           AND c.name !~ np.pattern;
    WHEN 'stale' THEN
        RETURN QUERY
        SELECT c.code, format('not updated since %s', to_char(c.updated_at, 'YYYY-MM-DD'))
          FROM vms.channel c
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
           AND c.updated_at < now() - make_interval(days => coalesce((p ->> 'days')::int, 365));
    END CASE;
END $$;
COMMENT ON FUNCTION vms.governance_findings(vms.governance_rule, text) IS 'what one rule finds: (channel, detail) for channels in the civil-code scope';

-- Run every enabled rule; open new tasks, refresh live ones, reopen fixed
-- ones whose problem is still there, and verify (close) those whose problem
-- is gone.  Ignored tasks stay ignored.
CREATE FUNCTION vms.governance_run(scope text DEFAULT NULL) RETURNS vms.governance_run
    LANGUAGE plpgsql SET search_path FROM CURRENT SET work_mem = '256MB' SET jit = off AS $$
#variable_conflict use_variable
DECLARE
    run vms.governance_run;
    r vms.governance_rule;
    n bigint;
BEGIN
    IF scope IS NOT NULL AND scope !~ '^([0-9]{2}){1,4}$' THEN
        RAISE EXCEPTION 'governance scope must be a 2, 4, 6 or 8-digit civil code, not "%"', scope
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO vms.governance_run (scope) VALUES (scope) RETURNING * INTO run;

    CREATE TEMP TABLE _gov_found (channel_code vms.gbcode, rule_code text, severity smallint, detail text)
        ON COMMIT DROP;
    FOR r IN SELECT * FROM vms.governance_rule WHERE enabled ORDER BY code LOOP
        INSERT INTO _gov_found SELECT f.channel_code, r.code, r.severity, f.detail
          FROM vms.governance_findings(r, scope) f;
    END LOOP;
    ANALYZE _gov_found;

    -- a task marked fixed whose problem is still there opens again
    UPDATE vms.governance_task t
       SET state = 'open', fixed_at = NULL, fixed_by = NULL, last_found_at = now(),
           detail = f.detail, severity = f.severity
      FROM _gov_found f
     WHERE t.channel_code = f.channel_code AND t.rule_code = f.rule_code AND t.state = 'fixed';
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE vms.governance_run SET reopened = n WHERE id = run.id;
    -- live tasks: refresh what was found
    UPDATE vms.governance_task t
       SET last_found_at = now(), detail = f.detail, severity = f.severity
      FROM _gov_found f
     WHERE t.channel_code = f.channel_code AND t.rule_code = f.rule_code
       AND t.state IN ('open', 'assigned', 'ignored');

    INSERT INTO vms.governance_task (channel_code, rule_code, severity, detail, unit_id, civil_code, found_by_run)
    SELECT f.channel_code, f.rule_code, f.severity, f.detail, c.unit_id, c.civil_code, run.id
      FROM _gov_found f JOIN vms.channel c ON c.code = f.channel_code
    ON CONFLICT (channel_code, rule_code) WHERE state IN ('open', 'assigned', 'fixed', 'ignored') DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE vms.governance_run SET opened = n WHERE id = run.id;

    -- problems gone: verified
    UPDATE vms.governance_task t
       SET state = 'verified', closed_at = now(), closed_by_run = run.id
     WHERE t.state IN ('open', 'assigned', 'fixed')
       AND (scope IS NULL OR t.civil_code LIKE scope || '%')
       AND t.rule_code IN (SELECT code FROM vms.governance_rule WHERE enabled)
       AND NOT EXISTS (SELECT 1 FROM _gov_found f
                        WHERE f.channel_code = t.channel_code AND f.rule_code = t.rule_code);
    GET DIAGNOSTICS n = ROW_COUNT;

    UPDATE vms.governance_run g
       SET closed = n, findings = (SELECT count(*) FROM _gov_found),
           channels = (SELECT count(*) FROM vms.channel c WHERE scope IS NULL OR c.civil_code LIKE scope || '%'),
           finished_at = clock_timestamp()
     WHERE g.id = run.id RETURNING * INTO run;
    DROP TABLE _gov_found;
    RETURN run;
END $$;
COMMENT ON FUNCTION vms.governance_run(text) IS
    'run every enabled governance rule over the ledger or a civil-code prefix; opens, refreshes, reopens and verifies tasks';

-- Task life cycle ------------------------------------------------------------
CREATE FUNCTION vms.governance_task_assign(task_id bigint, assignee text) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE vms.governance_task SET state = 'assigned', assigned_to = assignee, assigned_at = now()
     WHERE id = task_id AND state IN ('open', 'assigned');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'governance task % is not open', task_id
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Only open or assigned tasks can be assigned.';
    END IF;
END $$;
COMMENT ON FUNCTION vms.governance_task_assign(bigint, text) IS 'assign an open task to a person or unit';

CREATE FUNCTION vms.governance_task_fixed(task_id bigint) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE vms.governance_task SET state = 'fixed', fixed_at = now(), fixed_by = session_user
     WHERE id = task_id AND state IN ('open', 'assigned');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'governance task % is not open or assigned', task_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION vms.governance_task_fixed(bigint) IS 'report a task fixed; the next run verifies it or opens it again';

CREATE FUNCTION vms.governance_task_ignore(task_id bigint, reason text) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM vms._require_reason(reason, 'ignoring a governance task');
    UPDATE vms.governance_task SET state = 'ignored', ignore_reason = reason, closed_at = now()
     WHERE id = task_id AND state IN ('open', 'assigned', 'fixed');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'governance task % is not live', task_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION vms.governance_task_ignore(bigint, text) IS 'ignore a task with a reason; later runs leave it ignored';

-- Work lists (治理清单) per unit and rule.
CREATE VIEW vms.governance_worklist WITH (security_invoker = true) AS
SELECT coalesce(u.name, '（无管理单位）') AS unit, t.unit_id, t.rule_code, r.description, t.severity,
       count(*) FILTER (WHERE t.state = 'open') AS open,
       count(*) FILTER (WHERE t.state = 'assigned') AS assigned,
       count(*) FILTER (WHERE t.state = 'fixed') AS awaiting_verification,
       min(t.first_found_at) AS oldest
  FROM vms.governance_task t
  JOIN vms.governance_rule r ON r.code = t.rule_code
  LEFT JOIN vms.org_unit u ON u.id = t.unit_id
 WHERE t.state IN ('open', 'assigned', 'fixed')
 GROUP BY 1, 2, 3, 4, 5;
COMMENT ON VIEW vms.governance_worklist IS 'work list per management unit and rule: open, assigned and awaiting verification';

-- Metrics ----------------------------------------------------------------------
-- 填报率 fill_rate: filled share of the fields of rule required_fields;
-- 合格率 pass_rate: share of channels with no live task (ignored excluded);
-- 规范率 naming_rate: share without a live naming_pattern task;
-- 标注率 tag_rate: share with at least one tag;
-- 出图率 image_rate: share of the inspected channels whose latest inspection
--   returned a usable picture (NULL where nothing was inspected).
-- SQL expression over alias c: the fields (columns of vms.channel) a channel lacks.
CREATE FUNCTION vms._missing_fields_expr(fields text[]) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    bad text;
BEGIN
    SELECT f INTO bad FROM unnest(fields) f
     WHERE NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'vms.channel'::regclass
                          AND attname = f AND attnum > 0 AND NOT attisdropped) LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'required field "%" is not a column of vms.channel', bad
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Fix the params of the governance rule.';
    END IF;
    RETURN 'array_remove(ARRAY[' || coalesce((SELECT string_agg(
               CASE WHEN f = 'capabilities' THEN 'CASE WHEN cardinality(c.capabilities) = 0 THEN ''capabilities'' END'
                    ELSE format('CASE WHEN c.%I IS NULL THEN %L END', f, f) END, ', ')
             FROM unnest(fields) f), '') || ']::text[], NULL)';
END $$;
COMMENT ON FUNCTION vms._missing_fields_expr(text[]) IS 'internal: SQL listing which of the fields a channel lacks';

CREATE FUNCTION vms._governance_metrics(group_key text)
    RETURNS TABLE (key text, name text, channels bigint, fill_rate numeric, pass_rate numeric,
                   naming_rate numeric, tag_rate numeric, image_rate numeric)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    fields text[] := ARRAY(SELECT jsonb_array_elements_text(params -> 'fields')
                             FROM vms.governance_rule WHERE code = 'required_fields');
    digits int;
BEGIN
    IF group_key = 'unit' THEN
        digits := NULL;
    ELSIF group_key ~ '^region:[2468]$' THEN
        digits := split_part(group_key, ':', 2)::int;
    ELSE
        RAISE EXCEPTION 'unknown metrics grouping "%"', group_key USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY EXECUTE format($q$
    WITH per_channel AS (
        SELECT CASE WHEN $1 IS NULL THEN c.unit_id::text ELSE left(c.civil_code, $1) END AS k,
               1 - cardinality(%s)::numeric / greatest($2, 1) AS filled,
               NOT EXISTS (SELECT 1 FROM vms.governance_task t WHERE t.channel_code = c.code
                              AND t.state IN ('open', 'assigned', 'fixed')) AS passes,
               NOT EXISTS (SELECT 1 FROM vms.governance_task t WHERE t.channel_code = c.code
                              AND t.rule_code = 'naming_pattern' AND t.state IN ('open', 'assigned', 'fixed')) AS named_ok,
               EXISTS (SELECT 1 FROM vms.channel_tag ct WHERE ct.channel_code = c.code) AS tagged,
               (SELECT q.image_ok FROM vms.quality_result q WHERE q.channel_code = c.code
                 ORDER BY q.at DESC, q.id DESC LIMIT 1) AS image_ok
          FROM vms.channel c)
    SELECT p.k, CASE WHEN $1 IS NULL THEN u.name ELSE g.name END, count(*),
           round(avg(p.filled), 4), round(avg(p.passes::int), 4), round(avg(p.named_ok::int), 4),
           round(avg(p.tagged::int), 4), round(avg(p.image_ok::int), 4)
      FROM per_channel p
      LEFT JOIN vms.org_unit u ON $1 IS NULL AND u.id::text = p.k
      LEFT JOIN vms.region g ON $1 IS NOT NULL AND g.civil_code = p.k
     GROUP BY p.k, 2 ORDER BY p.k $q$, vms._missing_fields_expr(fields))
    USING digits, cardinality(fields);
END $$;
COMMENT ON FUNCTION vms._governance_metrics(text) IS 'internal: metrics grouped by unit or by civil-code prefix';

CREATE FUNCTION vms.governance_metrics_by_unit()
    RETURNS TABLE (unit_id text, unit text, channels bigint, fill_rate numeric, pass_rate numeric,
                   naming_rate numeric, tag_rate numeric, image_rate numeric)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$ SELECT * FROM vms._governance_metrics('unit') $$;
COMMENT ON FUNCTION vms.governance_metrics_by_unit() IS
    'per management unit: 填报率 fill_rate, 合格率 pass_rate, 规范率 naming_rate, 标注率 tag_rate, 出图率 image_rate (of inspected channels; NULL if none)';

CREATE FUNCTION vms.governance_metrics_by_region(digits integer DEFAULT 8)
    RETURNS TABLE (civil_code text, region text, channels bigint, fill_rate numeric, pass_rate numeric,
                   naming_rate numeric, tag_rate numeric, image_rate numeric)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$ SELECT * FROM vms._governance_metrics('region:' || digits) $$;
COMMENT ON FUNCTION vms.governance_metrics_by_region(integer) IS
    'the same metrics per civil region, grouping channels by the first 2, 4, 6 or 8 digits of their civil code';
-- Point search (点位搜索): tags, catalogue, unit, types, keyword and spatial
-- filters combined, saved searches and history, GeoJSON for the map system.

CREATE FUNCTION vms.text_grams(text) RETURNS text[]
    AS 'MODULE_PATHNAME', 'vms_text_grams' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.keyword_grams(text) RETURNS text[]
    AS 'MODULE_PATHNAME', 'vms_keyword_grams' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.text_contains(haystack text, needle text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_text_contains' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE COST 1;
COMMENT ON FUNCTION vms.text_contains(text, text) IS 'does the text contain the keyword (ASCII letters without case); the keyword recheck';
COMMENT ON FUNCTION vms.text_grams(text) IS 'every character and adjacent pair of a text (ASCII folded to lower case): the keyword index keys';
COMMENT ON FUNCTION vms.keyword_grams(text) IS 'the grams a text must contain to contain this keyword';

-- The text keyword search looks in: name, alias, address, place type.
CREATE FUNCTION vms.channel_visible_to(role oid, code vms.gbcode, civil_code text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_channel_visible_to' LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION vms.channel_visible_to(oid, vms.gbcode, text) IS
    'may this role (one the session user can act as) see the channel; what search and tiles check';
-- The role a session acts as (SET ROLE, else the session user), also inside
-- SECURITY DEFINER functions: whom the definer entry points act for.
CREATE FUNCTION vms._acting_role() RETURNS oid
    AS 'MODULE_PATHNAME', 'vms_acting_role' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION vms._acting_role() IS
    'internal: the role this session acts as (SET ROLE, else the session user), whom definer functions act for';

CREATE FUNCTION vms.channel_search_text(name text, alias text, address text, place_type text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN concat_ws(' ', name, alias, address, place_type);
COMMENT ON FUNCTION vms.channel_search_text(text, text, text, text) IS 'the text keyword search looks in';

CREATE INDEX channel_keyword_idx ON vms.channel
    USING gin (vms.text_grams(vms.channel_search_text(name, alias, address, place_type)));
CREATE INDEX channel_capabilities_idx ON vms.channel USING gin (capabilities);
CREATE INDEX channel_point_type_idx ON vms.channel (point_type);

CREATE TABLE vms.saved_search (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner       text NOT NULL DEFAULT session_user,
    name        text NOT NULL,
    filter      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner, name)
);
COMMENT ON TABLE vms.saved_search IS 'saved searches (常用搜索) per user';

CREATE TABLE vms.search_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username     text NOT NULL DEFAULT session_user,
    searched_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    filter       jsonb NOT NULL,
    lim          integer,
    off          integer,
    result_count integer,
    took_ms      numeric
);
CREATE INDEX search_history_user_idx ON vms.search_history (username, searched_at);
COMMENT ON TABLE vms.search_history IS 'search history (历史搜索): every vms.search_points call';

CREATE FUNCTION vms._filter_error(key text, problem text, hint text DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'invalid search filter "%": %', key, problem
        USING ERRCODE = 'invalid_parameter_value', HINT = coalesce(hint, 'See the README for the filter keys and their values.');
END $$;
COMMENT ON FUNCTION vms._filter_error(text, text, text) IS 'internal: the 22023 error for a bad filter value';

CREATE FUNCTION vms._filter_num(key text, v jsonb, lo float8 DEFAULT NULL, hi float8 DEFAULT NULL,
                                field text DEFAULT NULL) RETURNS float8
    LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    x numeric;
BEGIN
    IF v IS NULL THEN
        PERFORM vms._filter_error(key, format('"%s" is missing', field));
    ELSIF jsonb_typeof(v) <> 'number' THEN
        PERFORM vms._filter_error(key, format('%s must be a number, not %s', coalesce('"' || field || '"', 'each value'), v));
    END IF;
    -- compared as numeric first: a JSON number such as 1e400 does not fit a float8
    x := (v #>> '{}')::numeric;
    IF (lo IS NOT NULL AND x < lo::numeric) OR (hi IS NOT NULL AND x > hi::numeric)
       OR abs(x) > 1e300 THEN
        PERFORM vms._filter_error(key, format('%s%s is outside [%s, %s]', coalesce('"' || field || '" ', ''),
                                             CASE WHEN abs(x) > 1e15 THEN btrim(to_char(x, '9.9EEEE')) ELSE x::text END,
                                             coalesce(lo::text, '-inf'), coalesce(hi::text, 'inf')));
    END IF;
    RETURN x::float8;
END $$;
COMMENT ON FUNCTION vms._filter_num(text, jsonb, float8, float8, text) IS 'internal: a number from a filter, range-checked';

CREATE FUNCTION vms._filter_strings(key text, v jsonb) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF jsonb_typeof(v) = 'string' THEN
        RETURN ARRAY[v #>> '{}'];
    ELSIF jsonb_typeof(v) = 'array' AND jsonb_array_length(v) > 0
          AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v) e WHERE jsonb_typeof(e) <> 'string') THEN
        RETURN ARRAY(SELECT jsonb_array_elements_text(v));
    END IF;
    PERFORM vms._filter_error(key, 'must be a string or a non-empty array of strings');
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._filter_strings(text, jsonb) IS 'internal: a string or array of strings from a filter';

CREATE FUNCTION vms._filter_geojson(key text, v jsonb, kinds text[]) RETURNS geometry
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    g geometry;
BEGIN
    IF jsonb_typeof(v) IS DISTINCT FROM 'object' THEN
        PERFORM vms._filter_error(key, 'must be a GeoJSON geometry object');
    END IF;
    BEGIN
        g := ST_SetSRID(ST_GeomFromGeoJSON(v::text), 4326);
    EXCEPTION WHEN OTHERS THEN
        PERFORM vms._filter_error(key, 'is not valid GeoJSON: ' || SQLERRM);
    END;
    IF GeometryType(g) <> ALL (kinds) THEN
        PERFORM vms._filter_error(key, format('must be a %s, not a %s', array_to_string(kinds, ' or '), GeometryType(g)));
    END IF;
    IF ST_IsEmpty(g) THEN
        PERFORM vms._filter_error(key, 'geometry is empty');
    END IF;
    IF NOT ST_IsValid(g) THEN
        PERFORM vms._filter_error(key, 'geometry is not valid: ' || ST_IsValidReason(g));
    END IF;
    IF ST_XMin(g) < -180 OR ST_XMax(g) > 180 OR ST_YMin(g) < -90 OR ST_YMax(g) > 90 THEN
        PERFORM vms._filter_error(key, 'coordinates must be WGS-84 longitude/latitude');
    END IF;
    RETURN g;
END $$;
COMMENT ON FUNCTION vms._filter_geojson(text, jsonb, text[]) IS 'internal: a validated WGS-84 geometry from a filter';

-- Index prefilters for geodesic distances (WGS-84 spheroid, as ST_DWithin and
-- ST_Distance on geography measure them).  Every curve of length r from a point
-- at latitude φ stays within r / a(1 - e²) radians of latitude of it (the
-- meridian radius of curvature is at least a(1 - e²)) and changes longitude by
-- at most r / (a cos φ') radians, φ' the latitude furthest from the equator it
-- can reach (a parallel's radius N cos φ is at least a cos φ).  So this box
-- holds every point within radius_m metres of any point of center's planar
-- envelope, at any latitude; near a pole or across the antimeridian it spans
-- every longitude.  A millimetre and a part in 10⁹ are added for rounding.
CREATE FUNCTION vms._metre_box(center geometry, radius_m float8) RETURNS geometry
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    r float8 := greatest(radius_m, 0) * (1 + 1e-9) + 1e-3;
    dlat float8 := degrees(r / 6335439.327083168);
    far float8 := greatest(abs(ST_YMin(center)), abs(ST_YMax(center))) + dlat;
    dlon float8 := CASE WHEN far >= 89.9999 THEN 360 ELSE degrees(r / (6378137 * cos(radians(far)))) END;
    wrap boolean := ST_XMin(center) - dlon < -180 OR ST_XMax(center) + dlon > 180;
BEGIN
    -- PL/pgSQL, not a SQL function: a search computes it on every call, and
    -- the SQL form (not inlinable) cost about 20 µs a call against 3 µs here
    RETURN ST_MakeEnvelope(CASE WHEN wrap THEN -180 ELSE ST_XMin(center) - dlon END,
                           greatest(ST_YMin(center) - dlat, -90),
                           CASE WHEN wrap THEN 180 ELSE ST_XMax(center) + dlon END,
                           least(ST_YMax(center) + dlat, 90), 4326);
END $$;
COMMENT ON FUNCTION vms._metre_box(geometry, float8) IS
    'internal: lon/lat box holding every point within a geodesic distance of a geometry''s envelope, for index prefilters';

-- Geography edges are great-circle arcs, which bow away from the equator
-- between their vertices: the lon/lat box of the arcs of a line (each arc's
-- highest and lowest point counted where it lies between the vertices; an arc
-- across the antimeridian or over a pole makes the box span every longitude).
CREATE FUNCTION vms._arc_envelope(g geometry) RETURNS geometry
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    xmin float8 := ST_XMin(g);
    xmax float8 := ST_XMax(g);
    ymin float8 := ST_YMin(g);
    ymax float8 := ST_YMax(g);
    part geometry;
    a1 float8; a2 float8; a3 float8; b1 float8; b2 float8; b3 float8;
    n1 float8; n2 float8; n3 float8; nn float8;
    h1 float8; h2 float8; h3 float8; hn float8;
    lon1 float8; lat1 float8; lon2 float8; lat2 float8;
BEGIN
    FOR part IN SELECT (ST_Dump(g)).geom LOOP
        FOR i IN 1 .. ST_NPoints(part) - 1 LOOP
            lon1 := radians(ST_X(ST_PointN(part, i)));     lat1 := radians(ST_Y(ST_PointN(part, i)));
            lon2 := radians(ST_X(ST_PointN(part, i + 1))); lat2 := radians(ST_Y(ST_PointN(part, i + 1)));
            IF abs(lon2 - lon1) >= pi() THEN
                xmin := -180; xmax := 180;
            END IF;
            a1 := cos(lat1) * cos(lon1); a2 := cos(lat1) * sin(lon1); a3 := sin(lat1);
            b1 := cos(lat2) * cos(lon2); b2 := cos(lat2) * sin(lon2); b3 := sin(lat2);
            n1 := a2 * b3 - a3 * b2; n2 := a3 * b1 - a1 * b3; n3 := a1 * b2 - a2 * b1;
            nn := n1 * n1 + n2 * n2 + n3 * n3;
            CONTINUE WHEN nn < 1e-30;
            -- H: the great circle's point nearest the north pole (z minus its part along n)
            h1 := -n3 * n1 / nn; h2 := -n3 * n2 / nn; h3 := 1 - n3 * n3 / nn;
            hn := sqrt(h1 * h1 + h2 * h2 + h3 * h3);
            CONTINUE WHEN hn < 1e-15;
            -- H lies on the arc A→B when A×H and H×B both point along n
            IF (a2 * h3 - a3 * h2) * n1 + (a3 * h1 - a1 * h3) * n2 + (a1 * h2 - a2 * h1) * n3 >= 0
               AND (h2 * b3 - h3 * b2) * n1 + (h3 * b1 - h1 * b3) * n2 + (h1 * b2 - h2 * b1) * n3 >= 0 THEN
                ymax := greatest(ymax, degrees(asin(least(h3 / hn, 1))));
            END IF;
            IF (a2 * h3 - a3 * h2) * n1 + (a3 * h1 - a1 * h3) * n2 + (a1 * h2 - a2 * h1) * n3 <= 0
               AND (h2 * b3 - h3 * b2) * n1 + (h3 * b1 - h1 * b3) * n2 + (h1 * b2 - h2 * b1) * n3 <= 0 THEN
                ymin := least(ymin, -degrees(asin(least(h3 / hn, 1))));
            END IF;
        END LOOP;
    END LOOP;
    RETURN ST_MakeEnvelope(xmin, ymin, xmax, ymax, 4326);
END $$;
COMMENT ON FUNCTION vms._arc_envelope(geometry) IS 'internal: lon/lat box of a line''s great-circle arcs (geography edges)';

-- Any two points δ degrees apart in the lon/lat plane are at most
-- δ · a²/b metres apart on the spheroid (the straight lon/lat path between
-- them is no longer: the meridian radius of curvature is at most a²/b and a
-- parallel's radius at most a).  A KNN scan on geometry gives δ cheaply.
CREATE FUNCTION vms._degrees_reach(deg float8) RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN radians(deg) * 6399593.625758493 * (1 + 1e-9) + 1e-3;
COMMENT ON FUNCTION vms._degrees_reach(float8) IS
    'internal: an upper bound of the geodesic metres between two points that many lon/lat degrees apart';

-- Build the query of a filter: validates every key and returns
--   where_sql    the exact conditions on vms.channel c ($1 geoms, $2 nums);
--   knn_where_sql the same for the candidate scan of a distance order (a
--                circle around the order's point keeps only its box there);
--   order_sql    a planar order (nearest a box's or polygon's or line's
--                centre, by the spatial index) or by code, NULL for none;
--   geo_point    the point of a geodesic order (near, else circle), with
--   geo_k        near's k and geo_radius the circle's radius when the circle
--                is centred there.
CREATE FUNCTION vms._search_sql(filter jsonb, OUT where_sql text, OUT knn_where_sql text, OUT order_sql text,
                                OUT geoms geometry[], OUT nums float8[],
                                OUT geo_point geometry, OUT geo_k integer, OUT geo_radius float8)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    k text;
    v jsonb;
    conds text[] := '{}';
    knn_conds text[] := '{}';
    order_by text := 'c.code';
    centre geometry;   -- of a planar spatial filter: results come nearest first, through the spatial index
    circle_centre geometry;
    circle_r float8;
    circle_box integer;
    near_point geometry;
    ids bigint[];
    texts text[];
    kw_grams text[];
    g geometry;
    r float8;
    known constant text[] := '{tags_all,tags_any,catalog,unit,point_type,place_type,capability,keyword,bbox,circle,polygon,line,near}';
BEGIN
    geoms := '{}'; nums := '{}'; texts := '{}';
    IF filter IS NULL OR jsonb_typeof(filter) <> 'object' THEN
        RAISE EXCEPTION 'search filter must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example {"keyword": "望京", "point_type": "dome"}.';
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(filter) LOOP
        IF k <> ALL (known) THEN
            RAISE EXCEPTION 'unknown search filter key "%"', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Keys are ' || array_to_string(known, ', ') || '.';
        END IF;
        CASE k
        WHEN 'tags_all', 'tags_any' THEN
            IF jsonb_typeof(v) <> 'array' OR jsonb_array_length(v) = 0 THEN
                PERFORM vms._filter_error(k, 'must be a non-empty array of tag ids or names');
            END IF;
            IF k = 'tags_all' THEN
                -- a channel needs each tag (or a tag below it)
                conds := conds || ARRAY(
                    SELECT format('EXISTS (SELECT 1 FROM vms.channel_tag ct WHERE ct.channel_code = c.code AND ct.tag_id = ANY (%L::bigint[]))',
                                  ARRAY(SELECT vms.tag_subtree(vms.tag_resolve(e))))
                      FROM jsonb_array_elements(v) e);
            ELSE
                ids := ARRAY(SELECT vms.tag_subtree(vms.tag_resolve(e)) FROM jsonb_array_elements(v) e);
                conds := conds || format('EXISTS (SELECT 1 FROM vms.channel_tag ct WHERE ct.channel_code = c.code AND ct.tag_id = ANY (%L::bigint[]))', ids);
            END IF;
        WHEN 'catalog' THEN
            IF jsonb_typeof(v) <> 'string' OR vms.gbcode_parse_error(v #>> '{}') IS NOT NULL THEN
                PERFORM vms._filter_error(k, 'must be the 20-digit code of a catalogue node');
            END IF;
            IF NOT EXISTS (SELECT 1 FROM vms.catalog_node WHERE code = (v #>> '{}')::vms.gbcode) THEN
                PERFORM vms._filter_error(k, format('catalogue node %s does not exist', v #>> '{}'));
            END IF;
            conds := conds || format('c.code IN (SELECT m.channel_code FROM vms.catalog_member m WHERE m.node_code = ANY (%L::vms.gbcode[]))',
                                     ARRAY(SELECT vms.catalog_subtree((v #>> '{}')::vms.gbcode)));
        WHEN 'unit' THEN
            IF jsonb_typeof(v) = 'number' THEN
                ids := ARRAY(SELECT id FROM vms.org_unit WHERE id = (v #>> '{}')::numeric);
            ELSIF jsonb_typeof(v) = 'string' THEN
                ids := ARRAY(SELECT id FROM vms.org_unit WHERE name = v #>> '{}');
            ELSE
                PERFORM vms._filter_error(k, 'must be a unit id or name');
            END IF;
            IF cardinality(ids) = 0 THEN
                PERFORM vms._filter_error(k, format('unit %s does not exist', v));
            END IF;
            -- the unit and the units under it
            ids := ARRAY(WITH RECURSIVE u(id) AS (SELECT unnest(ids) UNION
                         SELECT o.id FROM vms.org_unit o JOIN u ON o.parent_id = u.id) SELECT id FROM u);
            conds := conds || format('c.unit_id = ANY (%L::bigint[])', ids);
        WHEN 'point_type' THEN
            texts := vms._filter_strings(k, v);
            IF EXISTS (SELECT 1 FROM unnest(texts) t WHERE NOT EXISTS
                       (SELECT 1 FROM vms.point_type p WHERE p.code = t OR p.name_zh = t)) THEN
                PERFORM vms._filter_error(k, 'unknown point type', 'Point types are listed in vms.point_type.');
            END IF;
            conds := conds || format('c.point_type = ANY (%L::text[])',
                                     ARRAY(SELECT p.code FROM vms.point_type p, unnest(texts) t WHERE p.code = t OR p.name_zh = t));
        WHEN 'place_type' THEN
            conds := conds || format('c.place_type = ANY (%L::text[])', vms._filter_strings(k, v));
        WHEN 'capability' THEN
            conds := conds || format('c.capabilities @> %L::text[]', vms._filter_strings(k, v));
        WHEN 'keyword' THEN
            IF jsonb_typeof(v) <> 'string' OR btrim(v #>> '{}') = '' OR length(v #>> '{}') > 100 THEN
                PERFORM vms._filter_error(k, 'must be a non-empty string of at most 100 characters');
            END IF;
            kw_grams := vms.keyword_grams(btrim(v #>> '{}'));
            conds := conds || format('vms.text_grams(vms.channel_search_text(c.name, c.alias, c.address, c.place_type)) @> %L::text[]', kw_grams)
                           || format('vms.text_contains(vms.channel_search_text(c.name, c.alias, c.address, c.place_type), %L)',
                                     btrim(v #>> '{}'));
        WHEN 'bbox' THEN
            -- planar: the points the box covers in lon/lat (geometry &&)
            IF jsonb_typeof(v) <> 'array' OR jsonb_array_length(v) <> 4 THEN
                PERFORM vms._filter_error(k, 'must be [minlon, minlat, maxlon, maxlat]');
            END IF;
            IF vms._filter_num(k, v -> 0, -180, 180) > vms._filter_num(k, v -> 2, -180, 180)
               OR vms._filter_num(k, v -> 1, -90, 90) > vms._filter_num(k, v -> 3, -90, 90) THEN
                PERFORM vms._filter_error(k, 'minimum is greater than maximum');
            END IF;
            geoms := geoms || ST_MakeEnvelope((v ->> 0)::float8, (v ->> 1)::float8, (v ->> 2)::float8, (v ->> 3)::float8, 4326);
            centre := coalesce(centre, ST_Centroid(geoms[cardinality(geoms)]));
            conds := conds || format('c.geom && $1[%s]', cardinality(geoms));
        WHEN 'circle' THEN
            -- geodesic: ST_DWithin on geography (WGS-84 spheroid), through a box that holds the circle
            IF jsonb_typeof(v) <> 'object' THEN
                PERFORM vms._filter_error(k, 'must be {"lon": .., "lat": .., "radius_m": ..}');
            END IF;
            PERFORM vms._filter_keys(k, v, '{lon,lat,radius_m}');
            g := ST_SetSRID(ST_MakePoint(vms._filter_num(k, v -> 'lon', -180, 180, 'lon'), vms._filter_num(k, v -> 'lat', -90, 90, 'lat')), 4326);
            r := vms._filter_num(k, v -> 'radius_m', 0, 100000, 'radius_m');
            geoms := geoms || g || vms._metre_box(g, r);
            nums := nums || r;
            circle_centre := g; circle_r := r; circle_box := cardinality(conds) + 1;
            conds := conds || format('c.geom && $1[%s]', cardinality(geoms))
                           || format('ST_DWithin(c.geom::geography, $1[%s]::geography, $2[%s])', cardinality(geoms) - 1, cardinality(nums));
        WHEN 'polygon' THEN
            -- planar: ST_Intersects on geometry
            g := vms._filter_geojson(k, v, '{POLYGON,MULTIPOLYGON}');
            geoms := geoms || g;
            centre := coalesce(centre, ST_PointOnSurface(g));
            conds := conds || format('ST_Intersects(c.geom, $1[%s])', cardinality(geoms));
        WHEN 'line' THEN
            -- geodesic: ST_DWithin on geography (the line's edges are great-circle arcs)
            IF jsonb_typeof(v) <> 'object' OR NOT v ? 'geojson' THEN
                PERFORM vms._filter_error(k, 'must be {"geojson": <LineString>, "buffer_m": ..}');
            END IF;
            PERFORM vms._filter_keys(k, v, '{geojson,buffer_m}');
            g := vms._filter_geojson(k, v -> 'geojson', '{LINESTRING,MULTILINESTRING}');
            r := vms._filter_num(k, v -> 'buffer_m', 0, 10000, 'buffer_m');
            centre := coalesce(centre, ST_Centroid(g));
            geoms := geoms || g || vms._metre_box(vms._arc_envelope(g), r);
            nums := nums || r;
            conds := conds || format('c.geom && $1[%s]', cardinality(geoms))
                           || format('ST_DWithin(c.geom::geography, $1[%s]::geography, $2[%s])', cardinality(geoms) - 1, cardinality(nums));
        WHEN 'near' THEN
            -- geodesic: the k nearest by ST_Distance on geography, ties by code
            IF jsonb_typeof(v) <> 'object' THEN
                PERFORM vms._filter_error(k, 'must be {"lon": .., "lat": .., "k": ..}');
            END IF;
            PERFORM vms._filter_keys(k, v, '{lon,lat,k}');
            near_point := ST_SetSRID(ST_MakePoint(vms._filter_num(k, v -> 'lon', -180, 180, 'lon'), vms._filter_num(k, v -> 'lat', -90, 90, 'lat')), 4326);
            IF v ? 'k' THEN
                r := vms._filter_num(k, v -> 'k', 1, 10000, 'k');
                IF r <> trunc(r) THEN
                    PERFORM vms._filter_error(k, format('"k" must be a whole number, not %s', r));
                END IF;
                geo_k := r::integer;
            END IF;
            conds := conds || 'c.geom IS NOT NULL'::text;
        END CASE;
    END LOOP;
    geo_point := coalesce(near_point, circle_centre);
    knn_conds := conds;
    IF circle_centre IS NOT NULL AND near_point IS NULL THEN
        -- the candidates of the distance order need only the circle's box (see _search_points_as)
        knn_conds := conds[1:circle_box] || conds[circle_box + 2:];
        geo_radius := circle_r;
    END IF;
    IF geo_point IS NOT NULL THEN
        order_by := NULL;
    ELSIF centre IS NOT NULL THEN
        geoms := geoms || centre;
        order_by := format('c.geom <-> $1[%s], c.code', cardinality(geoms));
    ELSIF filter ? 'keyword' THEN
        -- a common keyword matches a large share of the ledger: ordering
        -- every match would read them all, so keyword results come in
        -- storage order and the scan stops at the page
        order_by := NULL;
    END IF;
    where_sql := coalesce(nullif(array_to_string(conds, ' AND '), ''), 'true');
    knn_where_sql := coalesce(nullif(array_to_string(knn_conds, ' AND '), ''), 'true');
    order_sql := order_by;
END $$;
COMMENT ON FUNCTION vms._search_sql(jsonb) IS 'internal: validate a search filter and build its query';

CREATE FUNCTION vms._filter_keys(key text, v jsonb, allowed text[]) RETURNS void
    LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    bad text;
BEGIN
    SELECT min(x) INTO bad FROM jsonb_object_keys(v) x WHERE x <> ALL (allowed);
    IF bad IS NOT NULL THEN
        PERFORM vms._filter_error(key, format('unknown key "%s"', bad),
                                  'Its keys are ' || array_to_string(allowed, ', ') || '.');
    END IF;
END $$;
COMMENT ON FUNCTION vms._filter_keys(text, jsonb, text[]) IS 'internal: refuses unknown keys inside a filter object';

-- Runs as the owner so the spatial index serves the filter, and checks each
-- candidate against the caller's grants (vms.channel_visible_to): under
-- row-level security PostGIS's operators, not being leakproof, could only
-- filter rows the policy had already passed, one by one.
-- SECURITY DEFINER, internal (not executable by PUBLIC or the duty roles):
-- reached through vms.search_points, which passes vms._acting_role().  Every
-- row it returns has passed vms.channel_visible_to(role, ...), which first
-- refuses a role the session user cannot act as; the filter only narrows
-- (every value is validated by vms._search_sql and passed as a parameter).
CREATE FUNCTION vms._search_points_as(role oid, filter jsonb, lim integer, off integer)
    RETURNS TABLE (code vms.gbcode, name text, alias text, address text, point_type text, place_type text,
                   unit_id bigint, online boolean, lon float8, lat float8, distance_m float8)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path FROM CURRENT
    -- a search returns a page of points: starting parallel workers costs more than it saves
    SET max_parallel_workers_per_gather = 0
    -- the static queries of the common shapes keep one plan per session
    SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    q record;
    t0 timestamptz := clock_timestamp();
    n integer;
    kk integer;
    found_n integer;
    max_deg float8;
    reach float8;
    box geometry;
    shape text;
    g1 geometry;
    g2 geometry;
    kw text;
    grams text[];
    share float8;
    per_page float8;
    probe_rows float8;
    pages bigint;
    tid_end tid;
    m bigint;
    n2 integer;
BEGIN
    IF lim IS NULL OR lim < 0 OR lim > 100000 THEN
        RAISE EXCEPTION 'search limit must be between 0 and 100000, not %', lim USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF off IS NULL OR off < 0 THEN
        RAISE EXCEPTION 'search offset must be 0 or more, not %', off USING ERRCODE = 'invalid_parameter_value';
    END IF;
    q := vms._search_sql(filter);
    -- The common shapes (one bbox, polygon, circle or near, nothing else) run
    -- static queries, the very SQL the general path would build for them
    -- (recognised by its text): PL/pgSQL plans each once per session instead
    -- of planning a dynamic query on every call.
    shape := CASE
        WHEN q.where_sql = 'c.geom && $1[1]' AND q.order_sql = 'c.geom <-> $1[2], c.code' THEN 'bbox'
        WHEN q.where_sql = 'ST_Intersects(c.geom, $1[1])' AND q.order_sql = 'c.geom <-> $1[2], c.code' THEN 'polygon'
        WHEN q.where_sql = 'c.geom && $1[2] AND ST_DWithin(c.geom::geography, $1[1]::geography, $2[1])'
             AND q.knn_where_sql = 'c.geom && $1[2]' AND q.geo_radius IS NOT NULL THEN 'circle'
        WHEN q.where_sql = 'c.geom IS NOT NULL' AND q.knn_where_sql = 'c.geom IS NOT NULL' THEN 'near' END;
    IF shape IS NULL AND q.order_sql IS NULL AND q.geo_point IS NULL AND filter ? 'keyword' THEN
        kw := btrim(filter ->> 'keyword');
        grams := vms.keyword_grams(kw);
        IF q.where_sql = format('vms.text_grams(vms.channel_search_text(c.name, c.alias, c.address, c.place_type)) @> %L::text[]', grams)
                         || ' AND ' || format('vms.text_contains(vms.channel_search_text(c.name, c.alias, c.address, c.place_type), %L)', kw) THEN
            shape := 'keyword';
        END IF;
    END IF;
    IF shape = 'keyword' THEN
        -- Keyword results come in storage order and the scan stops at the
        -- page.  The keyword index finds every match before the first row
        -- (a GIN bitmap: about 0.2 us a match, growing with the ledger),
        -- while reading the table from its start costs about 1 us a row and
        -- stops at the page.  share: ANALYZE's element statistics of the
        -- keyword index, the share of the keyword's rarest gram (an upper
        -- bound of its own; a gram they do not list counts as 0).  When the
        -- page is expected within probe_rows = (lim + off) / share rows and
        -- that costs less than the bitmap (probe_rows * 5 <= matches), the
        -- first 2 * probe_rows rows' pages are read in order (a TID range
        -- scan).  Both read in storage order, so the rows are the same; a
        -- page not filled there continues past those pages.  There the
        -- match is text_contains alone, on the text channel_search_text
        -- builds (concat_ws written out: the SQL function is not inlined):
        -- containing the keyword implies containing its grams.
        SELECT min(coalesce(u.f, 0)) INTO share
          FROM unnest(grams) g
          LEFT JOIN (SELECT e, f FROM pg_stats s, unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) u(e, f)
                      WHERE s.schemaname = 'vms' AND s.tablename = 'channel_keyword_idx') u ON u.e = g;
        SELECT c.reltuples / greatest(c.relpages, 1) INTO per_page FROM pg_class c WHERE c.oid = 'vms.channel'::regclass;
        probe_rows := CASE WHEN share > 0 THEN (lim + off) / share END;
        IF probe_rows <= 20000 AND probe_rows * 5 <= share * per_page * (pg_relation_size('vms.channel') / current_setting('block_size')::int) THEN
            pages := ceil(2 * probe_rows / per_page);
            tid_end := format('(%s,0)', pages)::tid;
            RETURN QUERY
                SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                       ST_X(c.geom), ST_Y(c.geom), NULL::float8
                  FROM vms.channel c
                 WHERE c.ctid < tid_end AND vms.text_contains(concat_ws(' ', c.name, c.alias, c.address, c.place_type), kw)
                   AND vms.channel_visible_to(role, c.code, c.civil_code)
                 LIMIT lim OFFSET off;
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n < lim THEN
                -- m: the matches in the pages read (all of them were skipped or returned)
                IF n > 0 THEN
                    m := off + n;
                ELSE
                    SELECT count(*) INTO m FROM vms.channel c
                     WHERE c.ctid < tid_end AND vms.text_contains(concat_ws(' ', c.name, c.alias, c.address, c.place_type), kw)
                       AND vms.channel_visible_to(role, c.code, c.civil_code);
                END IF;
                RETURN QUERY
                    SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                           ST_X(c.geom), ST_Y(c.geom), NULL::float8
                      FROM vms.channel c
                     WHERE vms.text_grams(vms.channel_search_text(c.name, c.alias, c.address, c.place_type)) @> grams
                       AND vms.text_contains(vms.channel_search_text(c.name, c.alias, c.address, c.place_type), kw)
                       AND c.ctid >= tid_end AND vms.channel_visible_to(role, c.code, c.civil_code)
                     LIMIT lim - n OFFSET greatest(off - m, 0);
                GET DIAGNOSTICS n2 = ROW_COUNT;
                n := n + n2;
            END IF;
        ELSE
            RETURN QUERY
                SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                       ST_X(c.geom), ST_Y(c.geom), NULL::float8
                  FROM vms.channel c
                 WHERE vms.text_grams(vms.channel_search_text(c.name, c.alias, c.address, c.place_type)) @> grams
                   AND vms.text_contains(vms.channel_search_text(c.name, c.alias, c.address, c.place_type), kw)
                   AND vms.channel_visible_to(role, c.code, c.civil_code)
                 LIMIT lim OFFSET off;
            GET DIAGNOSTICS n = ROW_COUNT;
        END IF;
    ELSIF q.geo_point IS NULL THEN
        IF shape = 'bbox' THEN
            g1 := q.geoms[1]; g2 := q.geoms[2];
            RETURN QUERY
                SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                       ST_X(c.geom), ST_Y(c.geom), NULL::float8
                  FROM vms.channel c WHERE c.geom && g1 AND vms.channel_visible_to(role, c.code, c.civil_code)
                 ORDER BY c.geom <-> g2, c.code LIMIT lim OFFSET off;
        ELSIF shape = 'polygon' THEN
            g1 := q.geoms[1]; g2 := q.geoms[2];
            RETURN QUERY
                SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                       ST_X(c.geom), ST_Y(c.geom), NULL::float8
                  FROM vms.channel c WHERE ST_Intersects(c.geom, g1) AND vms.channel_visible_to(role, c.code, c.civil_code)
                 ORDER BY c.geom <-> g2, c.code LIMIT lim OFFSET off;
        ELSE
            -- a query built for this call is planned for its values (the
            -- function's generic-plan setting is for the static queries; it
            -- comes back at the next call)
            PERFORM set_config('plan_cache_mode', 'auto', true);
            RETURN QUERY EXECUTE format(
                'SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                        ST_X(c.geom), ST_Y(c.geom), NULL::float8
                   FROM vms.channel c WHERE %s AND vms.channel_visible_to($5, c.code, c.civil_code) %s LIMIT $3 OFFSET $4',
                q.where_sql, CASE WHEN q.order_sql IS NOT NULL THEN 'ORDER BY ' || q.order_sql ELSE '' END)
                USING q.geoms, q.nums, lim, off, role;
        END IF;
        GET DIAGNOSTICS n = ROW_COUNT;
    ELSE
        -- Geodesic order (near, or a circle's centre): the first kk points by
        -- ST_Distance on geography, ties by code.  The spatial index orders by
        -- lon/lat degrees, so first take the kk nearest in degrees: if there
        -- are kk, every one of them lies within reach metres
        -- (vms._degrees_reach), so the kk nearest in metres all lie in the
        -- box of that reach (vms._metre_box); those are then ranked exactly.
        kk := CASE WHEN q.geo_k IS NOT NULL THEN least(q.geo_k, lim + off) ELSE lim + off END;
        IF kk > off THEN
            g1 := q.geo_point; g2 := q.geoms[cardinality(q.geoms)];
            IF shape = 'circle' THEN
                SELECT count(*), max(d) INTO found_n, max_deg
                  FROM (SELECT c.geom <-> g1 AS d FROM vms.channel c
                         WHERE c.geom && g2 AND vms.channel_visible_to(role, c.code, c.civil_code)
                         ORDER BY c.geom <-> g1 LIMIT kk) s;
            ELSIF shape = 'near' THEN
                SELECT count(*), max(d) INTO found_n, max_deg
                  FROM (SELECT c.geom <-> g1 AS d FROM vms.channel c
                         WHERE c.geom IS NOT NULL AND vms.channel_visible_to(role, c.code, c.civil_code)
                         ORDER BY c.geom <-> g1 LIMIT kk) s;
            ELSE
                EXECUTE format(
                    'SELECT count(*), max(d) FROM (SELECT c.geom <-> $3 AS d FROM vms.channel c
                      WHERE %s AND vms.channel_visible_to($5, c.code, c.civil_code) ORDER BY c.geom <-> $3 LIMIT $4) s',
                    q.knn_where_sql)
                    INTO found_n, max_deg USING q.geoms, q.nums, q.geo_point, kk, role;
            END IF;
            IF found_n = kk THEN
                reach := vms._degrees_reach(max_deg);
                -- within a circle around the point the k nearest lie in the circle's box anyway
                IF reach < q.geo_radius OR q.geo_radius IS NULL THEN
                    box := vms._metre_box(q.geo_point, reach);
                END IF;
            END IF;
            IF shape = 'circle' THEN
                -- the circle's box stands in for a reach box the circle holds;
                -- the distance that orders a point also decides it unless it
                -- lies within a millimetre of the radius, where ST_DWithin
                -- does (the two differ by far less: both are the spheroid's
                -- geodesic), so most points cost one geodesic, not two
                box := coalesce(box, g2);
                RETURN QUERY
                    SELECT s.code, s.name, s.alias, s.address, s.point_type, s.place_type, s.unit_id, s.online,
                           ST_X(s.geom), ST_Y(s.geom), s.d
                      FROM (SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                                   c.geom, ST_Distance(c.geom::geography, g1::geography) AS d
                              FROM vms.channel c
                             WHERE c.geom && g2 AND c.geom && box AND vms.channel_visible_to(role, c.code, c.civil_code)
                            OFFSET 0) s
                     WHERE s.d < q.geo_radius - 1e-3
                        OR (s.d <= q.geo_radius + 1e-3 AND ST_DWithin(s.geom::geography, g1::geography, q.geo_radius))
                     ORDER BY s.d, s.code LIMIT kk - off OFFSET off;
            ELSIF shape = 'near' AND box IS NOT NULL THEN
                RETURN QUERY
                    SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                           ST_X(c.geom), ST_Y(c.geom), ST_Distance(c.geom::geography, g1::geography)
                      FROM vms.channel c
                     WHERE c.geom IS NOT NULL AND c.geom && box AND vms.channel_visible_to(role, c.code, c.civil_code)
                     ORDER BY 11, c.code LIMIT kk - off OFFSET off;
            ELSE
                PERFORM set_config('plan_cache_mode', 'auto', true);
                RETURN QUERY EXECUTE format(
                    'SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                            ST_X(c.geom), ST_Y(c.geom), ST_Distance(c.geom::geography, $6)
                       FROM vms.channel c WHERE %s%s AND vms.channel_visible_to($5, c.code, c.civil_code)
                      ORDER BY 11, c.code LIMIT $3 OFFSET $4',
                    q.where_sql, CASE WHEN box IS NOT NULL THEN ' AND c.geom && $7' ELSE '' END)
                    USING q.geoms, q.nums, kk - off, off, role, q.geo_point::geography, box;
            END IF;
            GET DIAGNOSTICS n = ROW_COUNT;
        END IF;
    END IF;
    INSERT INTO vms.search_history (filter, lim, off, result_count, took_ms)
    VALUES (filter, lim, off, coalesce(n, 0), round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 3));
END $$;
COMMENT ON FUNCTION vms._search_points_as(oid, jsonb, integer, integer) IS 'internal: a search for a role the session user can act as';

-- SECURITY DEFINER so that it may call the internal vms._search_points_as;
-- it searches for the role the session acts as and takes no role argument.
CREATE FUNCTION vms.search_points(filter jsonb DEFAULT '{}', lim integer DEFAULT 100, off integer DEFAULT 0)
    RETURNS TABLE (code vms.gbcode, name text, alias text, address text, point_type text, place_type text,
                   unit_id bigint, online boolean, lon float8, lat float8, distance_m float8)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    -- PL/pgSQL keeps this call's plan for the session (a SQL function's is
    -- made again on every call)
    RETURN QUERY SELECT * FROM vms._search_points_as(vms._acting_role(), filter, lim, off);
END $$;
COMMENT ON FUNCTION vms.search_points(jsonb, integer, integer) IS
    'search monitoring points: tags_all, tags_any, catalog, unit, point_type, place_type, capability, keyword, bbox, circle, polygon, line, near';

CREATE FUNCTION vms.search_geojson(filter jsonb DEFAULT '{}', lim integer DEFAULT 1000, off integer DEFAULT 0)
    RETURNS jsonb
    LANGUAGE sql VOLATILE SET search_path FROM CURRENT AS $$
    SELECT jsonb_build_object('type', 'FeatureCollection', 'features', coalesce(jsonb_agg(
               jsonb_build_object('type', 'Feature', 'id', s.code::text,
                   'geometry', CASE WHEN s.lon IS NOT NULL THEN jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(s.lon, s.lat)) END,
                   'properties', jsonb_strip_nulls(jsonb_build_object('code', s.code::text, 'name', s.name, 'alias', s.alias,
                       'address', s.address, 'point_type', s.point_type, 'place_type', s.place_type,
                       'online', s.online, 'distance_m', round(s.distance_m::numeric, 1))))), '[]'))
      FROM vms.search_points(filter, lim, off) s
$$;
COMMENT ON FUNCTION vms.search_geojson(jsonb, integer, integer) IS 'a search as a GeoJSON FeatureCollection for the map system';

-- Tag every channel a search returns (批量打标签).
CREATE FUNCTION vms.tag_search_results(filter jsonb, tag text, source text DEFAULT 'rule') RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    q record;
    tag_id bigint := vms.tag_resolve(to_jsonb(tag));
    n bigint;
BEGIN
    q := vms._search_sql(filter);
    IF q.geo_k IS NOT NULL THEN
        -- near with k: the k nearest the caller may see
        INSERT INTO vms.channel_tag (channel_code, tag_id, source)
        SELECT s.code, tag_id, source FROM vms.search_points(filter, q.geo_k) s ON CONFLICT DO NOTHING;
    ELSE
        EXECUTE format('INSERT INTO vms.channel_tag (channel_code, tag_id, source)
                        SELECT c.code, $3, $4 FROM vms.channel c WHERE %s ON CONFLICT DO NOTHING', q.where_sql)
            USING q.geoms, q.nums, tag_id, source;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.tag_search_results(jsonb, text, text) IS 'tag every channel matching a search filter; returns how many got the tag';

-- SECURITY DEFINER so that it may validate the filter with the internal
-- vms._search_sql.  It writes one vms.saved_search row whose owner is the
-- session user (the column default, as the table's policy requires) and
-- replaces only the session user's own search of that name.
CREATE FUNCTION vms.search_save(name text, filter jsonb) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    id bigint;
BEGIN
    PERFORM vms._search_sql(filter);     -- refuse a filter that would not run
    INSERT INTO vms.saved_search AS s (name, filter) VALUES (search_save.name, search_save.filter)
    ON CONFLICT (owner, name) DO UPDATE SET filter = EXCLUDED.filter RETURNING s.id INTO id;
    RETURN id;
END $$;
COMMENT ON FUNCTION vms.search_save(text, jsonb) IS 'save (or replace) a search under a name for the current user';

CREATE FUNCTION vms.search_saved(saved_name text, lim integer DEFAULT 100, off integer DEFAULT 0)
    RETURNS TABLE (code vms.gbcode, name text, alias text, address text, point_type text, place_type text,
                   unit_id bigint, online boolean, lon float8, lat float8, distance_m float8)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    f jsonb;
BEGIN
    SELECT s.filter INTO f FROM vms.saved_search s WHERE s.owner = session_user AND s.name = saved_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'saved search "%" does not exist', saved_name
            USING ERRCODE = 'undefined_object', HINT = 'See vms.saved_search for your saved searches.';
    END IF;
    RETURN QUERY SELECT * FROM vms.search_points(f, lim, off);
END $$;
COMMENT ON FUNCTION vms.search_saved(text, integer, integer) IS 'run one of the current user''s saved searches';

CREATE FUNCTION vms.search_rerun(history_id bigint)
    RETURNS TABLE (code vms.gbcode, name text, alias text, address text, point_type text, place_type text,
                   unit_id bigint, online boolean, lon float8, lat float8, distance_m float8)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    h vms.search_history;
BEGIN
    SELECT * INTO h FROM vms.search_history s WHERE s.id = history_id AND s.username = session_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'search history entry % does not exist', history_id
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN QUERY SELECT * FROM vms.search_points(h.filter, h.lim, h.off);
END $$;
COMMENT ON FUNCTION vms.search_rerun(bigint) IS 'run a search from the current user''s history again';
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
-- Tamper-evident audit trail: append-only, each entry hash-chained to the
-- previous one (SM3 through OpenSSL where available, SHA-256 otherwise).

CREATE FUNCTION vms.chain_digest(bytea) RETURNS bytea
    AS 'MODULE_PATHNAME', 'vms_chain_digest' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.chain_digest_name() RETURNS text
    AS 'MODULE_PATHNAME', 'vms_chain_digest_name' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION vms.chain_digest(bytea) IS 'SM3 digest (SHA-256 where OpenSSL lacks SM3) used by the audit chain';
COMMENT ON FUNCTION vms.chain_digest_name() IS 'the digest vms.chain_digest uses: sm3 or sha256';

CREATE TABLE vms.audit_log (
    seq          bigint PRIMARY KEY,
    at           timestamptz NOT NULL,
    session_role text NOT NULL,
    action       text NOT NULL,
    object       text,
    detail       jsonb NOT NULL DEFAULT '{}',
    digest_alg   text NOT NULL,
    prev_hash    bytea,
    hash         bytea NOT NULL
);
REVOKE ALL ON vms.audit_log FROM PUBLIC;
COMMENT ON TABLE vms.audit_log IS 'append-only audit trail; hash = digest(prev_hash || entry), verified by vms.audit_verify()';

-- The bytes an entry's hash covers.
CREATE FUNCTION vms._audit_bytes(seq bigint, at timestamptz, session_role text, action text, object text,
                                 detail jsonb, prev_hash bytea) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN coalesce(prev_hash, '\x'::bytea)
           || convert_to(concat_ws(E'\x1f', seq::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                                   session_role, action, coalesce(object, ''), detail::text), 'UTF8');
COMMENT ON FUNCTION vms._audit_bytes(bigint, timestamptz, text, text, text, jsonb, bytea) IS 'internal: the bytes an audit hash covers';

-- Append one entry.  Entries are serialised by a lock held to commit, so
-- the chain has no forks and seq has no gaps.
-- SECURITY DEFINER: vms.audit_log is writable by its owner only.  The entry
-- records the session user, whoever calls.  Not executable by PUBLIC or the
-- duty roles (99_privileges.sql): entries come from the extension's own
-- definer functions and triggers, and from superusers.
CREATE FUNCTION vms.audit(action text, object text, detail jsonb DEFAULT '{}') RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    last vms.audit_log;
    e vms.audit_log;
BEGIN
    LOCK TABLE vms.audit_log IN SHARE ROW EXCLUSIVE MODE;
    SELECT * INTO last FROM vms.audit_log ORDER BY seq DESC LIMIT 1;
    IF NOT FOUND THEN
        -- every entry archived: the chain goes on from the last archived one
        SELECT a.last_seq, a.last_hash INTO last.seq, last.hash FROM vms.audit_archive a ORDER BY a.last_seq DESC LIMIT 1;
    END IF;
    e.seq := coalesce(last.seq, 0) + 1;
    e.at := clock_timestamp();
    e.session_role := session_user;
    e.action := audit.action;
    e.object := audit.object;
    e.detail := coalesce(audit.detail, '{}');
    e.digest_alg := vms.chain_digest_name();
    e.prev_hash := last.hash;
    e.hash := vms.chain_digest(vms._audit_bytes(e.seq, e.at, e.session_role, e.action, e.object, e.detail, e.prev_hash));
    INSERT INTO vms.audit_log VALUES (e.*);
    RETURN e.seq;
END $$;
COMMENT ON FUNCTION vms.audit(text, text, jsonb) IS 'append an entry to the hash-chained audit log (as the session user)';

CREATE FUNCTION vms._audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    -- an entry archived with its hash anchors (vms.audit_archive_before)
    -- may leave the live log: the chain is proved through the archive
    IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW'
       AND EXISTS (SELECT 1 FROM vms.audit_archive a WHERE OLD.seq BETWEEN a.first_seq AND a.last_seq) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'vms.audit_log is append-only'
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('%s of audit entries is not allowed, for anyone.', TG_OP),
              HINT = 'Entries are added with vms.audit() and checked with vms.audit_verify(); old ones are archived with vms.audit_archive_before().';
END $$;
COMMENT ON FUNCTION vms._audit_append_only() IS 'internal: refuses UPDATE, DELETE and TRUNCATE on the audit log (deleting an entry that is archived excepted)';
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON vms.audit_log
    FOR EACH ROW EXECUTE FUNCTION vms._audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON vms.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION vms._audit_append_only();

-- Old entries can leave the live log for vms.audit_archive, a range at a
-- time, with the hash anchors that tie the range to the chain: the hash of
-- the entry before it and of its last entry.  The archived entries stay
-- as content (jsonb, re-hashed by vms.audit_verify) until detached for
-- keeping elsewhere (vms.audit_archive_detach); a detached range is proved
-- by its anchors and the content digest a kept copy must match.
CREATE TABLE vms.audit_archive (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    first_seq       bigint NOT NULL UNIQUE,
    last_seq        bigint NOT NULL UNIQUE,
    entries         bigint NOT NULL,
    prev_hash       bytea,
    last_hash       bytea NOT NULL,
    content         jsonb,
    content_digest  bytea NOT NULL,
    archived_at     timestamptz NOT NULL DEFAULT now(),
    archived_by     text NOT NULL DEFAULT session_user,
    detached_at     timestamptz,
    CHECK (last_seq >= first_seq AND entries = last_seq - first_seq + 1)
);
REVOKE ALL ON vms.audit_archive FROM PUBLIC;
COMMENT ON TABLE vms.audit_archive IS
    'archived ranges of the audit log with their hash anchors (prev_hash: the entry before, last_hash: the last entry) and content (NULL once detached; content_digest = chain_digest of the content as text)';

CREATE FUNCTION vms._audit_archive_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    -- the only change: detaching the content, anchors and digest unchanged
    IF TG_OP = 'UPDATE' AND NEW.content IS NULL AND OLD.content IS NOT NULL AND NEW.detached_at IS NOT NULL
       AND (NEW.id, NEW.first_seq, NEW.last_seq, NEW.entries, NEW.prev_hash, NEW.last_hash, NEW.content_digest,
            NEW.archived_at, NEW.archived_by)
           IS NOT DISTINCT FROM (OLD.id, OLD.first_seq, OLD.last_seq, OLD.entries, OLD.prev_hash, OLD.last_hash,
                                 OLD.content_digest, OLD.archived_at, OLD.archived_by) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'vms.audit_archive is append-only'
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('%s of archived audit ranges is not allowed, for anyone.', TG_OP),
              HINT = 'Ranges are added by vms.audit_archive_before() and their content detached by vms.audit_archive_detach().';
END $$;
COMMENT ON FUNCTION vms._audit_archive_guard() IS 'internal: refuses changes to archived audit ranges other than detaching their content';
CREATE TRIGGER audit_archive_no_change BEFORE UPDATE OR DELETE ON vms.audit_archive
    FOR EACH ROW EXECUTE FUNCTION vms._audit_archive_guard();
CREATE TRIGGER audit_archive_no_truncate BEFORE TRUNCATE ON vms.audit_archive
    FOR EACH STATEMENT EXECUTE FUNCTION vms._audit_archive_guard();

-- Walk the chain in seq order, archived ranges first, and report the first
-- entry that was edited, deleted (a gap in seq, or a predecessor whose
-- hash does not match) or reordered.  An archived range with content is
-- re-hashed entry by entry; a detached one stands on its anchors.
-- SECURITY DEFINER: reads the whole audit log; takes no arguments and
-- returns only whether the chain holds, how many entries it checked and
-- the first bad sequence number, never entry contents.  Granted to
-- vms_auditor (99_privileges.sql).
CREATE FUNCTION vms.audit_verify()
    RETURNS TABLE (ok boolean, checked bigint, first_bad_seq bigint, problem text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    e vms.audit_log;
    prev vms.audit_log;
    d vms.audit_archive;
    n bigint := 0;
BEGIN
    FOR d IN SELECT * FROM vms.audit_archive x
              WHERE x.content IS NOT NULL
                AND x.content_digest IS DISTINCT FROM vms.chain_digest(convert_to(x.content::text, 'UTF8'))
              ORDER BY x.first_seq LIMIT 1 LOOP
        RETURN QUERY SELECT false, n, d.first_seq,
            format('the archive of entries %s to %s does not match its digest (modified)', d.first_seq, d.last_seq);
        RETURN;
    END LOOP;
    FOR e IN SELECT (jsonb_populate_record(NULL::vms.audit_log, x)).*
               FROM vms.audit_archive a CROSS JOIN LATERAL jsonb_array_elements(a.content) x
              WHERE a.content IS NOT NULL
             UNION ALL
             SELECT * FROM vms.audit_log l
              WHERE l.seq > coalesce((SELECT max(a.last_seq) FROM vms.audit_archive a), 0)
             ORDER BY 1 LOOP
        -- a detached archive may fill the gap before this entry: its anchors
        -- must tie it to the entry before it
        WHILE e.seq <> coalesce(prev.seq, 0) + 1 LOOP
            SELECT * INTO d FROM vms.audit_archive a
             WHERE a.content IS NULL AND a.first_seq = coalesce(prev.seq, 0) + 1 AND a.last_seq < e.seq;
            EXIT WHEN NOT FOUND;
            IF d.prev_hash IS DISTINCT FROM prev.hash THEN
                RETURN QUERY SELECT false, n, d.first_seq,
                    format('the detached archive of entries %s to %s does not follow entry %s', d.first_seq, d.last_seq,
                           coalesce(prev.seq, 0));
                RETURN;
            END IF;
            n := n + d.entries;
            prev.seq := d.last_seq;
            prev.hash := d.last_hash;
        END LOOP;
        n := n + 1;
        IF e.seq <> coalesce(prev.seq, 0) + 1 THEN
            RETURN QUERY SELECT false, n, coalesce(prev.seq, 0) + 1,
                format('entries %s to %s are missing (deleted)', coalesce(prev.seq, 0) + 1, e.seq - 1);
            RETURN;
        END IF;
        IF e.hash IS DISTINCT FROM vms.chain_digest(vms._audit_bytes(e.seq, e.at, e.session_role, e.action,
                                                                     e.object, e.detail, e.prev_hash)) THEN
            RETURN QUERY SELECT false, n, e.seq, format('entry %s was modified', e.seq);
            RETURN;
        END IF;
        IF e.prev_hash IS DISTINCT FROM prev.hash THEN
            RETURN QUERY SELECT false, n, e.seq,
                format('entry %s does not follow entry %s (deleted, replaced or reordered)', e.seq, prev.seq);
            RETURN;
        END IF;
        prev := e;
    END LOOP;
    RETURN QUERY SELECT true, n, NULL::bigint, NULL::text;
END $$;
COMMENT ON FUNCTION vms.audit_verify() IS
    'verify the audit chain, archived ranges included; reports the first modified, deleted or reordered entry';

-- Archive the entries older than a time (all up to the last such one).
-- The chain must hold first: an archive never hides tampering.  The
-- archiving is itself an entry of the chain.
CREATE FUNCTION vms.audit_archive_before(before timestamptz) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    lo bigint;
    hi bigint;
    v record;
    doc jsonb;
BEGIN
    LOCK TABLE vms.audit_log IN SHARE ROW EXCLUSIVE MODE;
    SELECT min(l.seq) INTO lo FROM vms.audit_log l
     WHERE l.seq > coalesce((SELECT max(a.last_seq) FROM vms.audit_archive a), 0);
    SELECT max(l.seq) INTO hi FROM vms.audit_log l WHERE l.at < before AND l.seq >= lo;
    IF hi IS NULL THEN
        RETURN 0;
    END IF;
    SELECT * INTO v FROM vms.audit_verify();
    IF NOT v.ok THEN
        RAISE EXCEPTION 'the audit chain does not hold: nothing archived'
            USING ERRCODE = 'data_corrupted', DETAIL = format('vms.audit_verify(): %s.', v.problem),
                  HINT = 'Investigate the tampering first; an archive must not hide it.';
    END IF;
    SELECT jsonb_agg(to_jsonb(l) ORDER BY l.seq) INTO doc FROM vms.audit_log l WHERE l.seq BETWEEN lo AND hi;
    INSERT INTO vms.audit_archive (first_seq, last_seq, entries, prev_hash, last_hash, content, content_digest)
    VALUES (lo, hi, hi - lo + 1, (SELECT l.prev_hash FROM vms.audit_log l WHERE l.seq = lo),
            (SELECT l.hash FROM vms.audit_log l WHERE l.seq = hi), doc, vms.chain_digest(convert_to(doc::text, 'UTF8')));
    DELETE FROM vms.audit_log l WHERE l.seq BETWEEN lo AND hi;
    PERFORM vms.audit('audit_archive', format('%s-%s', lo, hi), jsonb_build_object('entries', hi - lo + 1));
    RETURN hi - lo + 1;
END $$;
COMMENT ON FUNCTION vms.audit_archive_before(timestamptz) IS
    'move the audit entries older than a time into vms.audit_archive with their hash anchors (refused if the chain does not hold); returns how many; the archiving is audited';

CREATE FUNCTION vms.audit_archive_detach(archive_id bigint) RETURNS jsonb
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    d vms.audit_archive;
BEGIN
    SELECT * INTO d FROM vms.audit_archive a WHERE a.id = archive_id FOR UPDATE;
    IF NOT FOUND OR d.content IS NULL THEN
        RAISE EXCEPTION 'audit archive % has no content to detach', archive_id
            USING ERRCODE = 'no_data_found', HINT = 'See vms.audit_archive: detached ranges have content NULL.';
    END IF;
    UPDATE vms.audit_archive a SET content = NULL, detached_at = now() WHERE a.id = d.id;
    PERFORM vms.audit('audit_archive_detach', format('%s-%s', d.first_seq, d.last_seq),
                      jsonb_build_object('content_digest', encode(d.content_digest, 'hex')));
    RETURN d.content;
END $$;
COMMENT ON FUNCTION vms.audit_archive_detach(bigint) IS
    'return an archived range''s entries and drop them from the database (keep the returned document: its chain_digest as text is the range''s content_digest); the range''s anchors stay and vms.audit_verify proves the chain through them';
-- Permission policy (视频访问权限体系): security levels, scoped and time-bound
-- grants, access requests with separation of duties, row-level security,
-- periodic review, secrets.

DO $$
BEGIN
    -- group roles for duties; a person gets one by GRANT vms_analyst TO alice
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vms_analyst') THEN CREATE ROLE vms_analyst NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vms_grant_admin') THEN CREATE ROLE vms_grant_admin NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vms_approver') THEN CREATE ROLE vms_approver NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vms_auditor') THEN CREATE ROLE vms_auditor NOLOGIN; END IF;
END $$;

CREATE TABLE vms.security_level (
    level       smallint PRIMARY KEY CHECK (level BETWEEN 1 AND 4),
    name_zh     text NOT NULL,
    name_en     text NOT NULL
);
INSERT INTO vms.security_level VALUES (1, '一般', 'general'), (2, '敏感', 'sensitive'),
                                      (3, '重要', 'important'), (4, '核心', 'core');
COMMENT ON TABLE vms.security_level IS 'resource security levels (资源安全等级); a channel without an assignment is level 1';

CREATE TABLE vms.security_assignment (
    scope_kind   text NOT NULL CHECK (scope_kind IN ('channel', 'catalog', 'tag')),
    scope_ref    text NOT NULL,
    level        smallint NOT NULL REFERENCES vms.security_level (level),
    assigned_by  text NOT NULL DEFAULT session_user,
    assigned_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope_kind, scope_ref)
);
COMMENT ON TABLE vms.security_assignment IS 'security level catalogue (资源安全等级目录): levels for a channel, a catalogue subtree or a tag subtree; the strictest applies';

-- The channels a catalogue or tag scope covers: the node's or tag's subtree
-- and every channel listed there.  Security levels and grants share it.
CREATE FUNCTION vms._scope_channels(kind text, ref text) RETURNS SETOF vms.gbcode
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
BEGIN
    IF kind = 'catalog' THEN
        RETURN QUERY SELECT m.channel_code FROM vms.catalog_subtree(ref::vms.gbcode) n
                       JOIN vms.catalog_member m ON m.node_code = n;
    ELSIF kind = 'tag' THEN
        RETURN QUERY SELECT ct.channel_code FROM vms.tag_subtree(ref::bigint) t
                       JOIN vms.channel_tag ct ON ct.tag_id = t;
    END IF;
END $$;
COMMENT ON FUNCTION vms._scope_channels(text, text) IS 'internal: channels covered by a catalogue or tag scope';

-- Channels above level 1 and their effective (strictest) level.
CREATE FUNCTION vms.channel_security_levels() RETURNS TABLE (code vms.gbcode, level smallint)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT code, max(level)::smallint FROM (
        SELECT a.scope_ref::vms.gbcode AS code, a.level FROM vms.security_assignment a WHERE a.scope_kind = 'channel'
        UNION ALL
        SELECT sc, a.level FROM vms.security_assignment a
          CROSS JOIN LATERAL vms._scope_channels(a.scope_kind, a.scope_ref) sc
         WHERE a.scope_kind IN ('catalog', 'tag')) s
    WHERE level > 1 GROUP BY code
$$;
COMMENT ON FUNCTION vms.channel_security_levels() IS 'channels whose effective security level is above 1, with that level';

CREATE FUNCTION vms.channel_security_level(channel vms.gbcode) RETURNS smallint
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT coalesce((SELECT level FROM vms.channel_security_levels() WHERE code = channel), 1)::smallint
$$;
COMMENT ON FUNCTION vms.channel_security_level(vms.gbcode) IS 'effective security level of one channel (1 when nothing assigns one)';

CREATE TABLE vms.subject (
    role_name  name PRIMARY KEY,
    unit_id    bigint NOT NULL REFERENCES vms.org_unit (id)
);
COMMENT ON TABLE vms.subject IS 'the organisation unit each PostgreSQL role (user or group) belongs to';

CREATE TABLE vms.access_request (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    requester     name NOT NULL DEFAULT current_user,
    scope_kind    text NOT NULL,
    scope_ref     text,
    actions       text[] NOT NULL,
    max_level     smallint NOT NULL,
    valid_from    timestamptz NOT NULL DEFAULT now(),
    valid_until   timestamptz,
    reason        text NOT NULL,
    state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'approved', 'rejected', 'withdrawn')),
    requested_at  timestamptz NOT NULL DEFAULT now(),
    decided_by    name,
    decided_at    timestamptz,
    decision_note text,
    grant_id      bigint
);
COMMENT ON TABLE vms.access_request IS 'access requests (权限申请): who asks for which scope, actions, level and period, and why';

CREATE TABLE vms.access_grant (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    grantee      name NOT NULL,
    scope_kind   text NOT NULL CHECK (scope_kind IN ('all', 'region', 'catalog', 'tag', 'channel')),
    scope_ref    text,
    actions      text[] NOT NULL,
    max_level    smallint NOT NULL REFERENCES vms.security_level (level),
    valid_from   timestamptz NOT NULL DEFAULT now(),
    valid_until  timestamptz,
    granted_by   name NOT NULL DEFAULT session_user,
    granted_at   timestamptz NOT NULL DEFAULT now(),
    request_id   bigint REFERENCES vms.access_request (id),
    note         text,
    revoked_at   timestamptz,
    revoked_by   name,
    revoke_reason text,
    last_used_at timestamptz,
    CHECK ((scope_kind = 'all') = (scope_ref IS NULL)),
    CHECK (valid_until IS NULL OR valid_until > valid_from),
    CHECK (actions <@ '{view_live,playback,download,ptz,snapshot,manage_ledger,export}' AND cardinality(actions) > 0)
);
CREATE INDEX access_grant_grantee_idx ON vms.access_grant (grantee) WHERE revoked_at IS NULL;
COMMENT ON TABLE vms.access_grant IS 'grants: role x scope (all, region subtree, catalogue subtree, tag, channel) x actions x highest level x validity window';
COMMENT ON COLUMN vms.access_grant.actions IS 'view_live, playback, download, ptz, snapshot, manage_ledger, export';

-- What the policy cache compiles for a user at a time: granted scopes
-- (catalogue and tag grants expanded to channels), restricted channels,
-- and when the set next changes.  Runs as the table owner, from C.
CREATE FUNCTION vms._grant_scope(usr oid, at timestamptz)
    RETURNS TABLE (kind text, ref text, level smallint, next_change timestamptz)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    WITH mine AS (
        SELECT g.* FROM vms.access_grant g
         WHERE g.revoked_at IS NULL AND pg_has_role(usr, g.grantee, 'MEMBER')),
    live AS (
        SELECT g.* FROM mine g WHERE g.valid_from <= at AND (g.valid_until IS NULL OR g.valid_until > at))
    SELECT g.scope_kind, g.scope_ref, g.max_level, NULL::timestamptz FROM live g
     WHERE g.scope_kind IN ('all', 'region', 'channel')
    UNION ALL
    SELECT 'channel', sc::text, g.max_level, NULL FROM live g
     CROSS JOIN LATERAL vms._scope_channels(g.scope_kind, g.scope_ref) sc
     WHERE g.scope_kind IN ('catalog', 'tag')
    UNION ALL
    SELECT 'restricted', s.code::text, s.level, NULL FROM vms.channel_security_levels() s
    UNION ALL
    SELECT NULL, NULL, NULL, min(t) FROM (
        SELECT valid_until AS t FROM mine WHERE valid_until > at
        UNION ALL SELECT valid_from FROM mine WHERE valid_from > at) c
$$;
COMMENT ON FUNCTION vms._grant_scope(oid, timestamptz) IS 'internal: a user''s grants compiled for row-level security';

CREATE FUNCTION vms.channel_visible(code vms.gbcode, civil_code text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_channel_visible' LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION vms.channel_visible(vms.gbcode, text) IS
    'may the current user see this channel (any valid grant covering it at its security level); used by row-level security';

CREATE FUNCTION vms._policy_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'vms_policy_changed' LANGUAGE C;
COMMENT ON FUNCTION vms._policy_changed() IS 'internal: drops every session''s compiled policy when grants or scopes change';
CREATE TRIGGER access_grant_policy AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vms.access_grant
    FOR EACH STATEMENT EXECUTE FUNCTION vms._policy_changed();
CREATE TRIGGER security_assignment_policy AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vms.security_assignment
    FOR EACH STATEMENT EXECUTE FUNCTION vms._policy_changed();
CREATE TRIGGER catalog_member_policy AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vms.catalog_member
    FOR EACH STATEMENT EXECUTE FUNCTION vms._policy_changed();
CREATE TRIGGER catalog_node_policy AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vms.catalog_node
    FOR EACH STATEMENT EXECUTE FUNCTION vms._policy_changed();
CREATE TRIGGER channel_tag_policy AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vms.channel_tag
    FOR EACH STATEMENT EXECUTE FUNCTION vms._policy_changed();
CREATE TRIGGER tag_policy AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vms.tag
    FOR EACH STATEMENT EXECUTE FUNCTION vms._policy_changed();

-- can(action, channel) -------------------------------------------------------
-- SECURITY DEFINER: it reads every grant, security level, catalogue
-- membership and tag of the channel, which the caller may not read.
-- Checks first that the session user can act as the role asked about
-- (pg_has_role MEMBER, as vms.channel_visible_to does), so it answers only
-- about oneself; it returns one boolean and nothing of what it read.
CREATE FUNCTION vms._can_for(who name, action text, channel vms.gbcode, new_civil_code text DEFAULT NULL) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    c record;
    lvl smallint;
BEGIN
    -- only about yourself: the session user must be able to act as the role asked about
    IF NOT pg_has_role(session_user, who, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to check the grants of role "%"', who
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT ch.code, ch.civil_code INTO c FROM vms.channel ch WHERE ch.code = channel;
    IF NOT FOUND THEN
        -- a channel being created: its region is the one it will have
        SELECT channel AS code, new_civil_code AS civil_code INTO c;
    END IF;
    lvl := vms.channel_security_level(channel);
    RETURN EXISTS (
        SELECT 1 FROM vms.access_grant g
         WHERE g.revoked_at IS NULL AND pg_has_role(who, g.grantee, 'MEMBER')
           AND g.valid_from <= now() AND (g.valid_until IS NULL OR g.valid_until > now())
           AND action = ANY (g.actions) AND g.max_level >= lvl
           AND CASE g.scope_kind
                 WHEN 'all' THEN true
                 WHEN 'region' THEN c.civil_code LIKE g.scope_ref || '%'
                 WHEN 'channel' THEN g.scope_ref::vms.gbcode = channel
                 WHEN 'catalog' THEN EXISTS (SELECT 1 FROM vms.catalog_member m
                                              WHERE m.channel_code = channel
                                                AND m.node_code IN (SELECT vms.catalog_subtree(g.scope_ref::vms.gbcode)))
                 WHEN 'tag' THEN EXISTS (SELECT 1 FROM vms.channel_tag ct
                                          WHERE ct.channel_code = channel
                                            AND ct.tag_id IN (SELECT vms.tag_subtree(g.scope_ref::bigint)))
               END);
END $$;
COMMENT ON FUNCTION vms._can_for(name, text, vms.gbcode, text) IS 'internal: may a role (that the session user can act as) do an action on a channel';

CREATE FUNCTION vms._raise_unknown_action(action text) RETURNS boolean
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'unknown action "%"', action
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Actions are view_live, playback, download, ptz, snapshot, manage_ledger, export.';
END $$;
-- SECURITY DEFINER so that it may call the internal vms._can_for; it asks
-- only about the role the session acts as (vms._acting_role(): SET ROLE,
-- else the session user), never about a role named by the caller.
CREATE FUNCTION vms.can(action text, channel vms.gbcode) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT
    RETURN CASE WHEN action <> ALL ('{view_live,playback,download,ptz,snapshot,manage_ledger,export}')
                THEN vms._raise_unknown_action(action)
                ELSE vms._can_for(pg_catalog.pg_get_userbyid(vms._acting_role()), action, channel) END;
COMMENT ON FUNCTION vms._raise_unknown_action(text) IS 'internal: error for an unknown action';
COMMENT ON FUNCTION vms.can(text, vms.gbcode) IS 'may the role this session acts as (SET ROLE, else the session user) do this action (view_live, playback, download, ptz, snapshot, manage_ledger, export) on the channel now';

-- Grants, requests, approvals --------------------------------------------------
CREATE FUNCTION vms._check_scope(scope_kind text, scope_ref text, actions text[], max_level smallint,
                                 valid_from timestamptz, valid_until timestamptz) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
BEGIN
    IF scope_kind NOT IN ('all', 'region', 'catalog', 'tag', 'channel') THEN
        RAISE EXCEPTION 'unknown scope kind "%"', scope_kind USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Scopes are all, region, catalog, tag, channel.';
    END IF;
    IF (scope_kind = 'all') <> (scope_ref IS NULL) THEN
        RAISE EXCEPTION 'scope "%" %', scope_kind, CASE WHEN scope_kind = 'all' THEN 'takes no reference' ELSE 'needs a reference' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF scope_kind = 'region' AND scope_ref !~ '^([0-9]{2}){1,4}$' THEN
        RAISE EXCEPTION 'region scope "%" is not a 2/4/6/8-digit civil code', scope_ref USING ERRCODE = 'invalid_parameter_value';
    ELSIF scope_kind IN ('catalog', 'channel') AND vms.gbcode_parse_error(scope_ref) IS NOT NULL THEN
        RAISE EXCEPTION '% scope "%" is not a 20-digit code', scope_kind, scope_ref USING ERRCODE = 'invalid_parameter_value';
    ELSIF scope_kind = 'catalog' AND NOT EXISTS (SELECT 1 FROM vms.catalog_node WHERE code = scope_ref::vms.gbcode) THEN
        RAISE EXCEPTION 'catalogue node % does not exist', scope_ref USING ERRCODE = 'invalid_parameter_value';
    ELSIF scope_kind = 'channel' AND NOT EXISTS (SELECT 1 FROM vms.channel WHERE code = scope_ref::vms.gbcode) THEN
        RAISE EXCEPTION 'channel % does not exist', scope_ref USING ERRCODE = 'invalid_parameter_value';
    ELSIF scope_kind = 'tag' AND (scope_ref !~ '^[0-9]{1,18}$' OR NOT EXISTS (SELECT 1 FROM vms.tag WHERE id = scope_ref::bigint)) THEN
        RAISE EXCEPTION 'tag % does not exist', scope_ref USING ERRCODE = 'invalid_parameter_value',
              HINT = 'A tag scope is a tag id.';
    END IF;
    IF actions IS NULL OR cardinality(actions) = 0
       OR NOT actions <@ '{view_live,playback,download,ptz,snapshot,manage_ledger,export}' THEN
        RAISE EXCEPTION 'actions % are not a non-empty subset of the known actions', actions
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Actions are view_live, playback, download, ptz, snapshot, manage_ledger, export.';
    END IF;
    IF max_level IS NULL OR max_level NOT BETWEEN 1 AND 4 THEN
        RAISE EXCEPTION 'security level % does not exist', max_level USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF valid_until IS NOT NULL AND valid_until <= coalesce(valid_from, now()) THEN
        RAISE EXCEPTION 'validity window ends before it starts' USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION vms._check_scope(text, text, text[], smallint, timestamptz, timestamptz) IS 'internal: validates a grant or request';

CREATE FUNCTION vms._require_role(duty name) RETURNS void
    LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT pg_has_role(session_user, duty, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied: % is not a member of %', session_user, duty
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;
COMMENT ON FUNCTION vms._require_role(name) IS 'internal: the session user must hold a duty role';

-- SECURITY DEFINER: writes vms.access_grant, which nobody else may write.
-- Checks: the session user holds vms_grant_admin, the grantee exists and is
-- neither the session user nor a role it belongs to, and the scope, actions,
-- level and window are valid (vms._check_scope).
CREATE FUNCTION vms.grant_access(grantee name, scope_kind text, scope_ref text, actions text[], max_level smallint,
                                 valid_until timestamptz DEFAULT NULL, valid_from timestamptz DEFAULT now(),
                                 note text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM vms._require_role('vms_grant_admin');
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = grantee) THEN
        RAISE EXCEPTION 'role "%" does not exist', grantee USING ERRCODE = 'undefined_object';
    END IF;
    IF pg_has_role(session_user, grantee, 'MEMBER') THEN
        RAISE EXCEPTION 'nobody grants to themselves'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('%s is %s or a member of it.', session_user, grantee),
                  HINT = 'Another grant administrator must grant this, or use vms.request_access().';
    END IF;
    PERFORM vms._check_scope(scope_kind, scope_ref, actions, max_level, valid_from, valid_until);
    INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level, valid_from, valid_until, note)
    VALUES (grantee, scope_kind, scope_ref, actions, max_level, valid_from, valid_until, note)
    RETURNING access_grant.id INTO id;
    RETURN id;
END $$;
COMMENT ON FUNCTION vms.grant_access(name, text, text, text[], smallint, timestamptz, timestamptz, text) IS
    'grant a role actions on a scope up to a security level for a period (grant administrators; never to themselves)';

-- SECURITY DEFINER: updates vms.access_grant.  Checks: the session user
-- holds vms_grant_admin and gives a reason; only live grants are revoked.
CREATE FUNCTION vms.revoke_access(grant_id bigint, reason text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM vms._require_role('vms_grant_admin');
    PERFORM vms._require_reason(reason, 'revoking a grant');
    UPDATE vms.access_grant SET revoked_at = now(), revoked_by = session_user, revoke_reason = reason
     WHERE id = grant_id AND revoked_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'grant % does not exist or is already revoked', grant_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION vms.revoke_access(bigint, text) IS 'revoke a grant with a reason (grant administrators)';

-- SECURITY DEFINER: writes vms.access_request, which nobody else may write.
-- Open to everyone (asking grants nothing); the requester is always the
-- session user, the reason is required and the scope is validated.
CREATE FUNCTION vms.request_access(scope_kind text, scope_ref text, actions text[], max_level smallint,
                                   reason text, valid_until timestamptz DEFAULT NULL,
                                   valid_from timestamptz DEFAULT now())
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM vms._require_reason(reason, 'an access request');
    PERFORM vms._check_scope(scope_kind, scope_ref, actions, max_level, valid_from, valid_until);
    INSERT INTO vms.access_request (requester, scope_kind, scope_ref, actions, max_level, valid_from, valid_until, reason)
    VALUES (session_user, scope_kind, scope_ref, actions, max_level, valid_from, valid_until, reason)
    RETURNING access_request.id INTO id;
    RETURN id;
END $$;
COMMENT ON FUNCTION vms.request_access(text, text, text[], smallint, text, timestamptz, timestamptz) IS
    'ask for access (权限申请): scope, actions, level, reason and period; an approver decides';

-- SECURITY DEFINER: turns a request into a grant.  Checks: the session user
-- holds vms_approver, the request is pending, and the session user is not
-- (a member of) the requester; the grant copies the request unchanged.
CREATE FUNCTION vms.approve_request(request_id bigint, note text DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    r vms.access_request;
    gid bigint;
BEGIN
    PERFORM vms._require_role('vms_approver');
    SELECT * INTO r FROM vms.access_request WHERE id = request_id FOR UPDATE;
    IF NOT FOUND OR r.state <> 'pending' THEN
        RAISE EXCEPTION 'access request % is not pending', request_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_has_role(session_user, r.requester, 'MEMBER') THEN
        RAISE EXCEPTION 'nobody approves their own request'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('Request %s was made by %s.', request_id, r.requester),
                  HINT = 'Another approver must decide it.';
    END IF;
    INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level, valid_from, valid_until, request_id, note)
    VALUES (r.requester, r.scope_kind, r.scope_ref, r.actions, r.max_level, r.valid_from, r.valid_until, r.id, note)
    RETURNING id INTO gid;
    UPDATE vms.access_request SET state = 'approved', decided_by = session_user, decided_at = now(),
                                  decision_note = note, grant_id = gid
     WHERE id = request_id;
    RETURN gid;
END $$;
COMMENT ON FUNCTION vms.approve_request(bigint, text) IS 'approve a pending request (approvers; never their own); creates the grant';

-- SECURITY DEFINER: updates vms.access_request.  Checks: the session user
-- holds vms_approver, gives a note, and does not decide its own request.
CREATE FUNCTION vms.reject_request(request_id bigint, note text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM vms._require_role('vms_approver');
    PERFORM vms._require_reason(note, 'rejecting a request');
    UPDATE vms.access_request SET state = 'rejected', decided_by = session_user, decided_at = now(), decision_note = note
     WHERE id = request_id AND state = 'pending' AND NOT pg_has_role(session_user, requester, 'MEMBER');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'access request % is not pending, or is your own', request_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION vms.reject_request(bigint, text) IS 'reject a pending request with a note (approvers)';

-- Audit of grants and requests, whichever way they change.
-- SECURITY DEFINER trigger: appends to the audit log through vms.audit,
-- which the people changing grants may not call.  Takes no arguments from
-- anyone: it writes the changed row, as the trigger saw it.
CREATE FUNCTION vms._audit_row() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    act text;
BEGIN
    IF TG_TABLE_NAME = 'access_grant' THEN
        IF TG_OP = 'INSERT' THEN
            act := 'grant';
        ELSIF NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL THEN
            act := 'revoke';
        ELSIF (to_jsonb(NEW) - 'last_used_at') = (to_jsonb(OLD) - 'last_used_at') THEN
            RETURN NULL;    -- use is audited where it happens
        ELSE
            act := 'grant_change';
        END IF;
    ELSE
        act := CASE WHEN TG_OP = 'INSERT' THEN 'request'
                    WHEN NEW.state = 'approved' THEN 'approve'
                    WHEN NEW.state = 'rejected' THEN 'reject'
                    WHEN NEW.state = 'withdrawn' THEN 'withdraw'
                    ELSE 'request_change' END;
    END IF;
    PERFORM vms.audit(act, TG_TABLE_NAME || ':' || NEW.id, to_jsonb(NEW));
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._audit_row() IS 'internal: audits grants, revocations, requests, approvals, rejections';
CREATE TRIGGER access_grant_audit AFTER INSERT OR UPDATE ON vms.access_grant FOR EACH ROW EXECUTE FUNCTION vms._audit_row();
CREATE TRIGGER access_request_audit AFTER INSERT OR UPDATE ON vms.access_request FOR EACH ROW EXECUTE FUNCTION vms._audit_row();

-- Exercised rights: checked, audited, and the grant's use recorded --------------
-- SECURITY DEFINER: writes the audit log and the grants' last_used_at.
-- Checks the right for the role the session acts as (vms._acting_role());
-- a refusal is audited and raised, so nothing is returned without a grant.
CREATE FUNCTION vms.exercise_right(action text, channel vms.gbcode, detail jsonb DEFAULT '{}') RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    acting name := pg_catalog.pg_get_userbyid(vms._acting_role());
BEGIN
    IF NOT vms._can_for(acting, action, channel) THEN
        PERFORM vms.audit('denied_' || action, channel::text, detail);
        RAISE EXCEPTION 'permission denied to % channel %', replace(action, '_', ' '), channel
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Ask for access with vms.request_access().';
    END IF;
    UPDATE vms.access_grant g SET last_used_at = now()
     WHERE g.revoked_at IS NULL AND pg_has_role(acting, g.grantee, 'MEMBER') AND action = ANY (g.actions);
    RETURN vms.audit(action, channel::text, detail);
END $$;
COMMENT ON FUNCTION vms.exercise_right(text, vms.gbcode, jsonb) IS 'use a right on a channel: refused (42501, audited) without a grant, else audited; returns the audit entry';

CREATE FUNCTION vms.playback(channel vms.gbcode, from_time timestamptz, to_time timestamptz) RETURNS bigint
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms.exercise_right('playback', channel, jsonb_build_object('from', from_time, 'to', to_time));
CREATE FUNCTION vms.download(channel vms.gbcode, from_time timestamptz, to_time timestamptz) RETURNS bigint
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms.exercise_right('download', channel, jsonb_build_object('from', from_time, 'to', to_time));
CREATE FUNCTION vms.ptz(channel vms.gbcode, command text) RETURNS bigint
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms.exercise_right('ptz', channel, jsonb_build_object('command', command));
CREATE FUNCTION vms.view_live(channel vms.gbcode) RETURNS bigint
    LANGUAGE sql SET search_path FROM CURRENT RETURN vms.exercise_right('view_live', channel);
CREATE FUNCTION vms.snapshot(channel vms.gbcode) RETURNS bigint
    LANGUAGE sql SET search_path FROM CURRENT RETURN vms.exercise_right('snapshot', channel);
COMMENT ON FUNCTION vms.playback(vms.gbcode, timestamptz, timestamptz) IS 'check and audit a playback request';
COMMENT ON FUNCTION vms.download(vms.gbcode, timestamptz, timestamptz) IS 'check and audit a download request';
COMMENT ON FUNCTION vms.ptz(vms.gbcode, text) IS 'check and audit a PTZ command';
COMMENT ON FUNCTION vms.view_live(vms.gbcode) IS 'check and audit a live view';
COMMENT ON FUNCTION vms.snapshot(vms.gbcode) IS 'check and audit a snapshot';

-- Export of the ledger as a right: only what the user may export, audited.
-- SECURITY DEFINER: it appends to the audit log (vms.audit is the owner's).
-- It returns only rows vms.can('export') allows the role the session acts
-- as; an export grant covering a channel at its level also makes it visible,
-- so this is never more than the caller's own view of vms.ledger_export.
CREATE FUNCTION vms.export_ledger() RETURNS SETOF vms.ledger_export
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY SELECT e.* FROM vms.ledger_export e WHERE vms.can('export', e."监控点编码"::vms.gbcode);
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM vms.audit('export', 'ledger', jsonb_build_object('rows', n));
END $$;
COMMENT ON FUNCTION vms.export_ledger() IS 'the ledger template rows the role this session acts as may export; the export is audited';

-- Periodic review (定期审核) -----------------------------------------------------
CREATE FUNCTION vms.review_unused_grants(days integer DEFAULT 30) RETURNS SETOF vms.access_grant
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT * FROM vms.access_grant
     WHERE revoked_at IS NULL AND (valid_until IS NULL OR valid_until > now())
       AND coalesce(last_used_at, granted_at) < now() - make_interval(days => days)
     ORDER BY coalesce(last_used_at, granted_at)
$$;
COMMENT ON FUNCTION vms.review_unused_grants(integer) IS 'live grants not used (or never used) for N days';

CREATE FUNCTION vms.review_expiring_grants(within interval DEFAULT '7 days') RETURNS SETOF vms.access_grant
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT * FROM vms.access_grant
     WHERE revoked_at IS NULL AND valid_until > now() AND valid_until <= now() + within
     ORDER BY valid_until
$$;
COMMENT ON FUNCTION vms.review_expiring_grants(interval) IS 'live grants that expire within the interval';

CREATE VIEW vms.review_wide_grants WITH (security_invoker = true) AS
SELECT g.*, u.name AS unit, u.civil_code AS unit_civil_code
  FROM vms.access_grant g
  LEFT JOIN vms.subject s ON s.role_name = g.grantee
  LEFT JOIN vms.org_unit u ON u.id = s.unit_id
 WHERE g.revoked_at IS NULL AND (g.valid_until IS NULL OR g.valid_until > now())
   AND (g.scope_kind = 'all'
        OR (g.scope_kind = 'region' AND (u.civil_code IS NULL OR g.scope_ref NOT LIKE u.civil_code || '%')));
COMMENT ON VIEW vms.review_wide_grants IS 'live grants wider than the area of the grantee''s unit (or to everything)';

-- Secrets ---------------------------------------------------------------------
-- A stored secret is bound to where it is stored: the context, "table.column:key"
-- (e.g. 'viid_upstream.password_enc:' || name), is the AEAD's associated data,
-- so a value copied to another row or column does not decrypt there
-- (extension/crypto.c; 0.1.0 values are read until re-encrypted).
CREATE FUNCTION vms.secret_encrypt(plain text, context text DEFAULT '') RETURNS bytea
    AS 'MODULE_PATHNAME', 'vms_secret_encrypt' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION vms.secret_decrypt(secret bytea, context text DEFAULT '') RETURNS text
    AS 'MODULE_PATHNAME', 'vms_secret_decrypt' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION vms.secret_algorithm() RETURNS text
    AS 'MODULE_PATHNAME', 'vms_secret_algorithm' LANGUAGE C STABLE;
REVOKE ALL ON FUNCTION vms.secret_decrypt(bytea, text) FROM PUBLIC;
COMMENT ON FUNCTION vms.secret_encrypt(text, text) IS
    'encrypt a secret with the key in vms.secret_key_file (SM4-GCM, or AES-256-GCM without SM4), bound to its context: where it will be stored, as ''table.column:key''';
COMMENT ON FUNCTION vms.secret_decrypt(bytea, text) IS
    'decrypt a stored secret read from its context (''table.column:key'', as given to vms.secret_encrypt); superusers; workers use the C API';
COMMENT ON FUNCTION vms.secret_algorithm() IS 'the cipher vms.secret_encrypt uses';

-- Row-level security ----------------------------------------------------------
-- Analysts see the channels they hold a grant for; everything keyed by a
-- channel code follows the channel.  Policies call functions.
CREATE FUNCTION vms.code_visible(code vms.gbcode) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path FROM CURRENT AS $$
    SELECT EXISTS (SELECT 1 FROM vms.channel c WHERE c.code = code_visible.code)
$$;
COMMENT ON FUNCTION vms.code_visible(vms.gbcode) IS 'is the channel with this code visible to the current user (row-level security of channel-keyed tables)';

-- SECURITY DEFINER so that the write policies (run as whoever writes) may
-- call the internal vms._can_for; it asks only about the role the session
-- acts as (SET ROLE, else the session user).
CREATE FUNCTION vms.can_manage(code vms.gbcode, civil_code text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT vms._can_for(pg_catalog.pg_get_userbyid(vms._acting_role()), 'manage_ledger', code, civil_code)
$$;
COMMENT ON FUNCTION vms.can_manage(vms.gbcode, text) IS 'may the role this session acts as write this channel (manage_ledger); the write policies of vms.channel';

ALTER TABLE vms.channel ENABLE ROW LEVEL SECURITY;
CREATE POLICY channel_view ON vms.channel FOR SELECT USING (vms.channel_visible(code, civil_code));
CREATE POLICY channel_insert ON vms.channel FOR INSERT WITH CHECK (vms.can_manage(code, civil_code));
CREATE POLICY channel_update ON vms.channel FOR UPDATE USING (vms.can_manage(code, civil_code));
CREATE POLICY channel_delete ON vms.channel FOR DELETE USING (vms.can_manage(code, civil_code));

ALTER TABLE vms.channel_reported ENABLE ROW LEVEL SECURITY;
CREATE POLICY channel_reported_view ON vms.channel_reported USING (vms.code_visible(code));
ALTER TABLE vms.channel_tag ENABLE ROW LEVEL SECURITY;
CREATE POLICY channel_tag_view ON vms.channel_tag USING (vms.code_visible(channel_code));
ALTER TABLE vms.catalog_member ENABLE ROW LEVEL SECURITY;
CREATE POLICY catalog_member_view ON vms.catalog_member USING (vms.code_visible(channel_code));
ALTER TABLE vms.lane_channel ENABLE ROW LEVEL SECURITY;
CREATE POLICY lane_channel_view ON vms.lane_channel USING (vms.code_visible(channel_code));
ALTER TABLE vms.governance_task ENABLE ROW LEVEL SECURITY;
CREATE POLICY governance_task_view ON vms.governance_task USING (vms.code_visible(channel_code));
ALTER TABLE vms.ledger_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY ledger_history_view ON vms.ledger_history FOR SELECT
    USING (table_name = 'channel' AND vms.code_visible(code));
ALTER TABLE vms.alarm ENABLE ROW LEVEL SECURITY;
CREATE POLICY alarm_view ON vms.alarm USING (vms.code_visible(code));
ALTER TABLE vms.access_grant ENABLE ROW LEVEL SECURITY;
CREATE POLICY access_grant_view ON vms.access_grant FOR SELECT
    USING (pg_has_role(current_user, grantee, 'MEMBER') OR pg_has_role(current_user, 'vms_grant_admin', 'MEMBER')
           OR pg_has_role(current_user, 'vms_auditor', 'MEMBER'));
ALTER TABLE vms.access_request ENABLE ROW LEVEL SECURITY;
CREATE POLICY access_request_view ON vms.access_request FOR SELECT
    USING (pg_has_role(current_user, requester, 'MEMBER') OR pg_has_role(current_user, 'vms_approver', 'MEMBER')
           OR pg_has_role(current_user, 'vms_auditor', 'MEMBER'));
ALTER TABLE vms.search_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY search_history_own ON vms.search_history USING (username = session_user) WITH CHECK (username = session_user);
ALTER TABLE vms.saved_search ENABLE ROW LEVEL SECURITY;
CREATE POLICY saved_search_own ON vms.saved_search USING (owner = session_user) WITH CHECK (owner = session_user);

-- Privileges for the duty roles: extension/sql/99_privileges.sql, at the end of
-- the install script, so that every object is covered or excluded there.
-- Background workers: status and control for DBAs.  Workers exist only when
-- vms is in shared_preload_libraries; the SQL API works without them.

CREATE FUNCTION vms._worker_status()
    RETURNS TABLE (name text, backend_type text, pid integer, started timestamptz, state text,
                   wanted boolean, restarts integer, counters jsonb, last_error text)
    AS 'MODULE_PATHNAME', 'vms_worker_status' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION vms._worker_status() IS 'internal: the worker slots in shared memory';

CREATE VIEW vms.worker_status AS SELECT * FROM vms._worker_status();
COMMENT ON VIEW vms.worker_status IS
    'vms workers: name, backend_type (as in pg_stat_activity), pid, started, state, wanted (false after worker_stop), restarts, counters, last_error';

CREATE FUNCTION vms.worker_stop(name text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_worker_stop' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION vms.worker_start(name text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_worker_start' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION vms.worker_restart(name text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_worker_restart' LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION vms.worker_stop(text), vms.worker_start(text), vms.worker_restart(text) FROM PUBLIC;
COMMENT ON FUNCTION vms.worker_stop(text) IS 'stop a worker and keep it stopped (superuser); true if it was running';
COMMENT ON FUNCTION vms.worker_start(text) IS 'let the launcher run a stopped worker again (superuser); true if it was stopped';
COMMENT ON FUNCTION vms.worker_restart(text) IS 'terminate a worker; the launcher starts it again (superuser)';

CREATE FUNCTION vms._wake_worker(name text) RETURNS void
    AS 'MODULE_PATHNAME', 'vms_wake_worker' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION vms._wake_worker(text) IS 'internal: wake a worker when this transaction commits';

CREATE FUNCTION vms._worker_database_check() RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_worker_database_check' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION vms._worker_database_check() FROM PUBLIC;
COMMENT ON FUNCTION vms._worker_database_check() IS
    'internal: false, with a warning, when vms is in shared_preload_libraries and this database is not vms.database, so no worker serves it';
-- CREATE EXTENSION vms (and ALTER EXTENSION vms UPDATE) in such a database warns
SELECT vms._worker_database_check();
-- GA/T 1400 push to the governance chain's view library (视图库): upstreams,
-- sessions, the transactional outbox, template mapping and identifiers.

CREATE TABLE vms.viid_upstream (
    name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
    base_url      text NOT NULL CHECK (base_url ~ '^https?://[^/\s]+(/[^\s]*)?$' AND base_url !~ '/$'),
    system_id     vms.gbcode NOT NULL,
    username      text NOT NULL CHECK (length(username) BETWEEN 1 AND 127),
    password_enc  bytea NOT NULL,
    options       jsonb NOT NULL DEFAULT '{}',
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON vms.viid_upstream FROM PUBLIC;
COMMENT ON TABLE vms.viid_upstream IS 'upstream view libraries; the password is encrypted (vms.secret_encrypt)';
COMMENT ON COLUMN vms.viid_upstream.password_enc IS
    'the password, vms.secret_encrypt(password, ''viid_upstream.password_enc:'' || name): it decrypts only in its own row';

-- A password is bound to its upstream's row (the context of
-- vms.secret_encrypt): a value copied from another row does not decrypt, and
-- a value in the 0.1.0 form (no context) is not written any more, so the
-- upgrade's leftovers (see README, Secrets) stay in their own rows.  Renaming
-- an upstream needs its password again, since the name is in the context.
CREATE FUNCTION vms._viid_upstream_secret_check() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.password_enc IS DISTINCT FROM OLD.password_enc THEN
        IF substr(NEW.password_enc, 1, 2) IS DISTINCT FROM 'V2'::bytea THEN
            RAISE EXCEPTION 'the password of upstream "%" is not encrypted for its row', NEW.name
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use vms.viid_add_upstream or vms.viid_alter_upstream, or vms.secret_encrypt(password, ''viid_upstream.password_enc:'' || name).';
        END IF;
    ELSIF NEW.name IS DISTINCT FROM OLD.name THEN
        RAISE EXCEPTION 'renaming upstream "%" needs its password again', OLD.name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The password is encrypted for the upstream''s name.',
                  HINT = 'Set password_enc = vms.secret_encrypt(password, ''viid_upstream.password_enc:'' || new name) in the same UPDATE.';
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._viid_upstream_secret_check() IS
    'internal: an upstream password is written in the bound form (V2) for its row; a rename re-encrypts it';
CREATE TRIGGER viid_upstream_secret_check BEFORE INSERT OR UPDATE ON vms.viid_upstream
    FOR EACH ROW EXECUTE FUNCTION vms._viid_upstream_secret_check();
COMMENT ON COLUMN vms.viid_upstream.options IS
    'keepalive_s (60), batch_size (100), concurrency (4), timeout_ms (10000), max_attempts (10), retention_days (7), timezone (Asia/Shanghai), sync_ledger (false)';

CREATE TABLE vms.viid_session (
    upstream          text PRIMARY KEY REFERENCES vms.viid_upstream (name) ON DELETE CASCADE ON UPDATE CASCADE,
    state             text NOT NULL DEFAULT 'unregistered' CHECK (state IN ('unregistered', 'registered', 'failing')),
    registered_at     timestamptz,
    last_keepalive_at timestamptz,
    clock_offset_ms   bigint,
    failures          integer NOT NULL DEFAULT 0,
    last_status       integer,
    last_error        text,
    last_event_at     timestamptz
);
COMMENT ON TABLE vms.viid_session IS 'session state per upstream as the viid worker last saw it';

CREATE TABLE vms.viid_kind (
    kind         text PRIMARY KEY,
    path         text NOT NULL,
    list_object  text NOT NULL,
    item_object  text NOT NULL,
    id_path      text[] NOT NULL
);
INSERT INTO vms.viid_kind VALUES
    ('APE', '/VIID/APEs', 'APEListObject', 'APEObject', '{ApeID}'),
    ('Tollgate', '/VIID/Tollgates', 'TollgateListObject', 'TollgateObject', '{TollgateID}'),
    ('Lane', '/VIID/Lanes', 'LaneListObject', 'LaneObject', '{LaneID}'),
    ('MotorVehicle', '/VIID/MotorVehicles', 'MotorVehicleListObject', 'MotorVehicleObject', '{MotorVehicleID}'),
    ('NonMotorVehicle', '/VIID/NonMotorVehicles', 'NonMotorVehicleListObject', 'NonMotorVehicleObject', '{NonMotorVehicleID}'),
    ('Face', '/VIID/Faces', 'FaceListObject', 'FaceObject', '{FaceID}'),
    ('Person', '/VIID/Persons', 'PersonListObject', 'PersonObject', '{PersonID}'),
    ('Image', '/VIID/Images', 'ImageListObject', 'ImageObject', '{ImageInfo,ImageID}');
COMMENT ON TABLE vms.viid_kind IS 'GA/T 1400 object kinds: resource path, list and item object names, where the object id is';

CREATE TABLE vms.viid_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    upstream        text NOT NULL REFERENCES vms.viid_upstream (name) ON UPDATE CASCADE,
    kind            text NOT NULL REFERENCES vms.viid_kind (kind),
    object_id       text NOT NULL,
    doc             jsonb NOT NULL,
    -- the document as sent, serialised once when queued: the worker joins
    -- these into list objects without turning jsonb into text again
    payload         text GENERATED ALWAYS AS (doc::text) STORED,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     text,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    dead_at         timestamptz
);
-- the push takes due records oldest first straight from this index: no
-- sort of the backlog, no walk past delivered rows
CREATE INDEX viid_outbox_due_idx ON vms.viid_outbox (upstream, next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX viid_outbox_delivered_idx ON vms.viid_outbox (delivered_at) WHERE state = 'delivered';
COMMENT ON TABLE vms.viid_outbox IS 'records to push: pending, delivered or dead, with attempts, last status and times';

CREATE FUNCTION vms._viid_check_options(options jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    k text;
    v jsonb;
    limits constant jsonb := '{"keepalive_s": [10, 3600], "batch_size": [1, 1000], "concurrency": [1, 64],
                               "timeout_ms": [100, 120000], "max_attempts": [1, 100], "retention_days": [1, 365]}';
BEGIN
    IF jsonb_typeof(options) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'upstream options must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(options) LOOP
        IF limits ? k THEN
            IF jsonb_typeof(v) <> 'number' OR (v::text)::numeric <> trunc((v::text)::numeric)
               OR (v::text)::numeric NOT BETWEEN (limits -> k ->> 0)::numeric AND (limits -> k ->> 1)::numeric THEN
                RAISE EXCEPTION 'upstream option "%" must be an integer from % to %', k, limits -> k ->> 0, limits -> k ->> 1
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSIF k = 'sync_ledger' THEN
            IF jsonb_typeof(v) <> 'boolean' THEN
                RAISE EXCEPTION 'upstream option "sync_ledger" must be true or false' USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSIF k = 'timezone' THEN
            IF jsonb_typeof(v) <> 'string' OR NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = v #>> '{}') THEN
                RAISE EXCEPTION 'upstream option "timezone" must be a time zone name' USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSE
            RAISE EXCEPTION 'unknown upstream option "%"', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Options are keepalive_s, batch_size, concurrency, timeout_ms, max_attempts, retention_days, timezone, sync_ledger.';
        END IF;
    END LOOP;
    RETURN options;
END $$;
COMMENT ON FUNCTION vms._viid_check_options(jsonb) IS 'internal: validates upstream options';

CREATE FUNCTION vms.viid_add_upstream(name text, base_url text, system_id vms.gbcode, username text,
                                      password text, options jsonb DEFAULT '{}')
    RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF base_url IS NULL OR base_url !~ '^https?://[^/\s]+(/[^\s]*)?$' OR base_url ~ '/$' THEN
        RAISE EXCEPTION 'upstream base URL "%" is not usable', base_url
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give http(s)://host[:port][/prefix] without a trailing slash; /VIID/... is appended.';
    END IF;
    IF coalesce(password, '') = '' OR length(password) > 256 THEN
        RAISE EXCEPTION 'upstream password must have 1 to 256 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO vms.viid_upstream (name, base_url, system_id, username, password_enc, options)
    VALUES (name, base_url, system_id, username, vms.secret_encrypt(password, 'viid_upstream.password_enc:' || name),
            vms._viid_check_options(options));
    INSERT INTO vms.viid_session (upstream) VALUES (name);
    PERFORM vms._wake_worker('viid');
END $$;
COMMENT ON FUNCTION vms.viid_add_upstream(text, text, vms.gbcode, text, text, jsonb) IS
    'add an upstream view library (base URL without /VIID, our system id, digest user and password, options)';

CREATE FUNCTION vms.viid_alter_upstream(name text, base_url text DEFAULT NULL, username text DEFAULT NULL,
                                        password text DEFAULT NULL, options jsonb DEFAULT NULL,
                                        enabled boolean DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE vms.viid_upstream u SET
        base_url = coalesce(viid_alter_upstream.base_url, u.base_url),
        username = coalesce(viid_alter_upstream.username, u.username),
        password_enc = CASE WHEN viid_alter_upstream.password IS NOT NULL
                            THEN vms.secret_encrypt(viid_alter_upstream.password,
                                                    'viid_upstream.password_enc:' || u.name)
                            ELSE u.password_enc END,
        options = CASE WHEN viid_alter_upstream.options IS NULL THEN u.options
                       ELSE vms._viid_check_options(u.options || viid_alter_upstream.options) END,
        enabled = coalesce(viid_alter_upstream.enabled, u.enabled)
     WHERE u.name = viid_alter_upstream.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'upstream "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM vms._wake_worker('viid');
END $$;
COMMENT ON FUNCTION vms.viid_alter_upstream(text, text, text, text, jsonb, boolean) IS 'change an upstream; options are merged';

CREATE FUNCTION vms.viid_drop_upstream(name text, force boolean DEFAULT false) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    pending bigint;
BEGIN
    SELECT count(*) INTO pending FROM vms.viid_outbox o WHERE o.upstream = viid_drop_upstream.name AND o.state = 'pending';
    IF pending > 0 AND NOT force THEN
        RAISE EXCEPTION 'upstream "%" still has % pending records', name, pending
            USING ERRCODE = 'object_in_use', HINT = 'Wait for delivery, or drop with force => true to discard them.';
    END IF;
    DELETE FROM vms.viid_outbox o WHERE o.upstream = viid_drop_upstream.name;
    DELETE FROM vms.viid_upstream u WHERE u.name = viid_drop_upstream.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'upstream "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
END $$;
COMMENT ON FUNCTION vms.viid_drop_upstream(text, boolean) IS 'remove an upstream; refuses while records are pending unless forced';

CREATE VIEW vms.viid_session_status AS
SELECT u.name AS upstream, u.base_url, u.enabled, s.state, s.registered_at, s.last_keepalive_at,
       s.clock_offset_ms, s.failures, s.last_status, s.last_error, s.last_event_at,
       (SELECT count(*) FROM vms.viid_outbox o WHERE o.upstream = u.name AND o.state = 'pending') AS pending,
       (SELECT count(*) FROM vms.viid_outbox o WHERE o.upstream = u.name AND o.state = 'dead') AS dead
  FROM vms.viid_upstream u LEFT JOIN vms.viid_session s ON s.upstream = u.name;
COMMENT ON VIEW vms.viid_session_status IS 'per upstream: session state, clock offset, last error, pending and dead records';

-- Template mapping (数据治理模板映射) ------------------------------------------------
CREATE TABLE vms.viid_template (
    name  text PRIMARY KEY,
    kind  text REFERENCES vms.viid_kind (kind),
    spec  jsonb NOT NULL CHECK (jsonb_typeof(spec) = 'object')
);
COMMENT ON TABLE vms.viid_template IS
    'templates mapping a vendor''s near-GA/T 1400 document to the standard: {"rename": {from: to}, "values": {field: {from: to}}, "defaults": {field: value}, "dates": {field: input format}, "required": [fields]}';

CREATE FUNCTION vms.viid_map(template text, doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    t vms.viid_template;
    out jsonb := '{}';
    k text;
    v jsonb;
    f text;
    fmt text;
BEGIN
    SELECT * INTO t FROM vms.viid_template WHERE name = template;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'template "%" does not exist', template USING ERRCODE = 'undefined_object';
    END IF;
    IF jsonb_typeof(doc) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'document must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(doc) LOOP        -- renamed fields
        out := out || jsonb_build_object(coalesce(t.spec -> 'rename' ->> k, k), v);
    END LOOP;
    FOR f IN SELECT jsonb_object_keys(coalesce(t.spec -> 'values', '{}')) LOOP   -- value maps
        IF out ? f AND jsonb_typeof(out -> f) <> 'null' THEN
            IF NOT (t.spec -> 'values' -> f) ? (out ->> f) THEN
                RAISE EXCEPTION 'field "%" has value "%" that template "%" cannot map', f, out ->> f, template
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = format('Known values: %s.', (SELECT string_agg(x, ', ') FROM jsonb_object_keys(t.spec -> 'values' -> f) x));
            END IF;
            out := jsonb_set(out, ARRAY[f], t.spec -> 'values' -> f -> (out ->> f));
        END IF;
    END LOOP;
    FOR f, fmt IN SELECT * FROM jsonb_each_text(coalesce(t.spec -> 'dates', '{}')) LOOP   -- dates → yyyyMMddHHmmss
        IF out ? f AND jsonb_typeof(out -> f) = 'string' THEN
            BEGIN
                out := jsonb_set(out, ARRAY[f], to_jsonb(to_char(to_timestamp(out ->> f, fmt)::timestamp, 'YYYYMMDDHH24MISS')));
            EXCEPTION WHEN OTHERS THEN
                RAISE EXCEPTION 'field "%" value "%" is not a date in format "%"', f, out ->> f, fmt
                    USING ERRCODE = 'invalid_datetime_format';
            END;
        END IF;
    END LOOP;
    out := coalesce(t.spec -> 'defaults', '{}') || out;          -- defaults for what is missing
    FOR f IN SELECT jsonb_array_elements_text(coalesce(t.spec -> 'required', '[]')) LOOP
        IF NOT out ? f OR jsonb_typeof(out -> f) = 'null' OR out ->> f = '' THEN
            RAISE EXCEPTION 'field "%" is required by template "%"', f, template
                USING ERRCODE = 'not_null_violation';
        END IF;
    END LOOP;
    RETURN out;
END $$;
COMMENT ON FUNCTION vms.viid_map(text, jsonb) IS 'map a vendor document to GA/T 1400 with a template; an unmappable document fails naming the field';

-- Identifiers ---------------------------------------------------------------------
-- 41 digits: device (20) + type (2) + time yyyyMMddHHmmss (14) + serial (5)
-- 48 digits: the 41-digit source id + object type (2) + serial (5)
CREATE FUNCTION vms.viid_image_id(device vms.gbcode, type integer, at timestamp, serial integer) RETURNS text
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF type NOT BETWEEN 0 AND 99 OR serial NOT BETWEEN 0 AND 99999 THEN
        RAISE EXCEPTION 'type must be 0-99 and serial 0-99999' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN device::text || lpad(type::text, 2, '0') || to_char(at, 'YYYYMMDDHH24MISS') || lpad(serial::text, 5, '0');
END $$;
COMMENT ON FUNCTION vms.viid_image_id(vms.gbcode, integer, timestamp, integer) IS '41-digit image/file id: device, type, time, serial';

CREATE FUNCTION vms.viid_object_id(source_id text, type integer, serial integer) RETURNS text
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF cardinality(vms.viid_id_problems(source_id)) > 0 OR length(source_id) <> 41 THEN
        RAISE EXCEPTION 'source id "%" is not a valid 41-digit id', source_id
            USING ERRCODE = 'invalid_parameter_value', DETAIL = array_to_string(vms.viid_id_problems(source_id), '; ');
    END IF;
    IF type NOT BETWEEN 0 AND 99 OR serial NOT BETWEEN 0 AND 99999 THEN
        RAISE EXCEPTION 'type must be 0-99 and serial 0-99999' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN source_id || lpad(type::text, 2, '0') || lpad(serial::text, 5, '0');
END $$;

-- Problems of a 41- or 48-digit id: length, digits, device part, time part.
CREATE FUNCTION vms.viid_id_problems(id text) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    p text[] := '{}';
    ts text;
BEGIN
    IF id IS NULL OR length(id) NOT IN (41, 48) THEN
        RETURN ARRAY[format('length %s is neither 41 nor 48', coalesce(length(id), 0))];
    END IF;
    IF id !~ '^[0-9]+$' THEN
        RETURN ARRAY['contains characters that are not digits'];
    END IF;
    IF vms.gbcode_parse_error(left(id, 20)) IS NULL THEN
        p := p || ARRAY(SELECT 'device part: ' || detail FROM vms.gbcode_check(left(id, 20)::vms.gbcode));
    END IF;
    ts := substr(id, 23, 14);
    BEGIN
        IF to_char(to_timestamp(ts, 'YYYYMMDDHH24MISS'), 'YYYYMMDDHH24MISS') <> ts THEN
            p := p || format('time part %s is not a valid time', ts);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        p := p || format('time part %s is not a valid time', ts);
    END;
    RETURN p;
END $$;
COMMENT ON FUNCTION vms.viid_id_problems(text) IS 'what is wrong with a 41-digit image/file id or 48-digit object id (empty when valid)';
COMMENT ON FUNCTION vms.viid_object_id(text, integer, integer) IS '48-digit object id from its 41-digit source id, object type and serial';

-- Outbox ----------------------------------------------------------------------------
CREATE FUNCTION vms.viid_enqueue(upstream text, kind text, doc jsonb, template text DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    k vms.viid_kind;
    d jsonb := CASE WHEN template IS NULL THEN doc ELSE vms.viid_map(template, doc) END;
    oid_ text;
    id bigint;
BEGIN
    SELECT * INTO k FROM vms.viid_kind WHERE viid_kind.kind = viid_enqueue.kind;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown GA/T 1400 kind "%"', kind USING ERRCODE = 'invalid_parameter_value',
              HINT = (SELECT 'Kinds are ' || string_agg(vk.kind, ', ' ORDER BY vk.kind) || '.' FROM vms.viid_kind vk);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM vms.viid_upstream u WHERE u.name = viid_enqueue.upstream) THEN
        RAISE EXCEPTION 'upstream "%" does not exist', upstream USING ERRCODE = 'undefined_object';
    END IF;
    IF jsonb_typeof(d) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'document must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    oid_ := d #>> k.id_path;
    IF coalesce(oid_, '') = '' THEN
        RAISE EXCEPTION '% document lacks its id field "%"', kind, array_to_string(k.id_path, '.')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Records need stable ids so the receiver can de-duplicate repeated deliveries.';
    END IF;
    INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc) VALUES (upstream, kind, oid_, d) RETURNING viid_outbox.id INTO id;
    PERFORM vms._wake_worker('viid');
    RETURN id;
END $$;
COMMENT ON FUNCTION vms.viid_enqueue(text, text, jsonb, text) IS
    'queue a record for an upstream in the caller''s transaction (nothing is sent if it rolls back); optionally through a template';

-- The next batches after a cursor (next_attempt_at, id): the worker moves
-- the cursor past what it has claimed, so records in flight are not claimed
-- twice and no claim re-reads them.
CREATE FUNCTION vms._viid_batches(upstream text, batch_size integer, max_batches integer,
                                  after_at timestamptz DEFAULT '-infinity', after_id bigint DEFAULT 0)
    RETURNS TABLE (path text, ids bigint[], body text, last_at timestamptz, last_id bigint)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    WITH due AS (
        SELECT o.id, o.kind, o.payload, o.next_attempt_at FROM vms.viid_outbox o
         WHERE o.upstream = _viid_batches.upstream AND o.state = 'pending' AND o.next_attempt_at <= now()
           AND (o.next_attempt_at, o.id) > (after_at, after_id)
         ORDER BY o.next_attempt_at, o.id LIMIT batch_size * max_batches),
    cursor AS (
        SELECT d.next_attempt_at, d.id FROM due d ORDER BY d.next_attempt_at DESC, d.id DESC LIMIT 1),
    numbered AS (
        SELECT d.*, (row_number() OVER (PARTITION BY d.kind ORDER BY d.id) - 1) / batch_size AS b FROM due d)
    SELECT k.path, array_agg(n.id ORDER BY n.id),
           format('{"%s": {"%s": [%s]}}', k.list_object, k.item_object, string_agg(n.payload, ', ' ORDER BY n.id)),
           (SELECT c.next_attempt_at FROM cursor c), (SELECT c.id FROM cursor c)
      FROM numbered n JOIN vms.viid_kind k ON k.kind = n.kind
     GROUP BY k.path, k.list_object, k.item_object, n.b
     ORDER BY min(n.id)
$$;
COMMENT ON FUNCTION vms._viid_batches(text, integer, integer, timestamptz, bigint) IS
    'internal: the next list-object batches for an upstream after a claim cursor';

-- Apply one answer to its batch: per-item status from ResponseStatusListObject.
CREATE FUNCTION vms._viid_results(upstream text, ids bigint[], http_status integer, body text, error text)
    RETURNS TABLE (delivered integer, failed integer, dead integer)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    j jsonb;
    statuses jsonb := '{}';
    all_status text;
    max_attempts integer;
    problem text;
BEGIN
    SELECT coalesce((u.options ->> 'max_attempts')::int, 10) INTO max_attempts
      FROM vms.viid_upstream u WHERE u.name = _viid_results.upstream;
    BEGIN
        j := body::jsonb;
    EXCEPTION WHEN OTHERS THEN
        j := NULL;
    END;
    IF j ? 'ResponseStatusListObject' THEN
        SELECT coalesce(jsonb_object_agg(s ->> 'Id', s ->> 'StatusCode'), '{}') INTO statuses
          FROM jsonb_array_elements(CASE jsonb_typeof(j -> 'ResponseStatusListObject' -> 'ResponseStatusObject')
                                        WHEN 'array' THEN j -> 'ResponseStatusListObject' -> 'ResponseStatusObject'
                                        ELSE jsonb_build_array(j -> 'ResponseStatusListObject' -> 'ResponseStatusObject') END) s;
    ELSIF j ? 'ResponseStatusObject' THEN
        all_status := j -> 'ResponseStatusObject' ->> 'StatusCode';
    END IF;
    problem := CASE
        WHEN error IS NOT NULL THEN 'transport: ' || left(error, 200)
        WHEN http_status NOT BETWEEN 200 AND 299 THEN 'HTTP ' || http_status
        WHEN j IS NULL THEN 'answer is not JSON' END;

    RETURN QUERY
    -- by id only (the primary key); a state condition here would lure the
    -- planner onto the pending index and a scan of the whole backlog
    WITH r AS MATERIALIZED (
        SELECT o.id, o.state, CASE WHEN problem IS NOT NULL THEN NULL
                                   ELSE coalesce(statuses ->> o.object_id, all_status) END AS code
          FROM vms.viid_outbox o WHERE o.id = ANY (ids)),
    upd AS (
        UPDATE vms.viid_outbox o SET
            state = CASE WHEN r.code = '0' THEN 'delivered'
                         WHEN o.attempts + 1 >= max_attempts THEN 'dead' ELSE 'pending' END,
            attempts = o.attempts + 1,
            delivered_at = CASE WHEN r.code = '0' THEN now() END,
            dead_at = CASE WHEN r.code IS DISTINCT FROM '0' AND o.attempts + 1 >= max_attempts THEN now() END,
            last_status = coalesce(r.code, nullif(http_status, 0)::text),
            last_error = CASE WHEN r.code = '0' THEN NULL
                              ELSE coalesce(problem, CASE WHEN r.code IS NULL THEN 'no status for this item'
                                                          ELSE 'StatusCode ' || r.code END) END,
            -- exponential backoff with jitter: 2^attempts s, at most 5 min
            next_attempt_at = CASE WHEN r.code = '0' THEN o.next_attempt_at
                                   ELSE now() + make_interval(secs => least(300, 2 ^ least(o.attempts, 9)) * (0.5 + random() / 2)) END
          FROM r WHERE o.id = r.id AND r.state = 'pending'
        RETURNING o.state)
    SELECT count(*) FILTER (WHERE state = 'delivered')::int, count(*) FILTER (WHERE state = 'pending')::int,
           count(*) FILTER (WHERE state = 'dead')::int FROM upd;
END $$;
COMMENT ON FUNCTION vms._viid_results(text, bigint[], integer, text, text) IS 'internal: record an answer: delivered, retry with backoff, or dead';

CREATE FUNCTION vms._viid_session_event(upstream text, event text, http_status integer, body text, error text)
    RETURNS boolean
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    j jsonb;
    ok boolean;
    code text;
    tz text;
    remote timestamptz;
BEGIN
    BEGIN
        j := body::jsonb;
    EXCEPTION WHEN OTHERS THEN
        j := NULL;
    END;
    code := j -> 'ResponseStatusObject' ->> 'StatusCode';
    ok := error IS NULL AND http_status BETWEEN 200 AND 299 AND coalesce(code, '0') = '0';
    IF event = 'time' THEN
        SELECT coalesce(u.options ->> 'timezone', 'Asia/Shanghai') INTO tz FROM vms.viid_upstream u WHERE u.name = upstream;
        BEGIN
            remote := to_timestamp(j -> 'SystemTimeObject' ->> 'LocalTime', 'YYYYMMDDHH24MISS')::timestamp AT TIME ZONE tz;
        EXCEPTION WHEN OTHERS THEN
            remote := NULL;
        END;
        UPDATE vms.viid_session s SET clock_offset_ms = round(extract(epoch FROM remote - clock_timestamp()) * 1000),
                                      last_event_at = now()
         WHERE s.upstream = _viid_session_event.upstream AND remote IS NOT NULL;
        RETURN remote IS NOT NULL;
    END IF;
    INSERT INTO vms.viid_session AS s (upstream) VALUES (upstream) ON CONFLICT DO NOTHING;
    UPDATE vms.viid_session s SET
        state = CASE WHEN ok THEN 'registered' WHEN event = 'register' THEN 'unregistered' ELSE 'failing' END,
        registered_at = CASE WHEN ok AND event = 'register' THEN now() ELSE s.registered_at END,
        last_keepalive_at = CASE WHEN ok AND event = 'keepalive' THEN now() ELSE s.last_keepalive_at END,
        failures = CASE WHEN ok THEN 0 ELSE s.failures + 1 END,
        last_status = http_status,
        last_error = CASE WHEN ok THEN s.last_error
                          ELSE event || ': ' || coalesce(error, 'HTTP ' || http_status || coalesce(', StatusCode ' || code, '')) END,
        last_event_at = now()
     WHERE s.upstream = _viid_session_event.upstream;
    IF event = 'keepalive' AND ok THEN
        PERFORM vms.viid_prune(upstream);
    END IF;
    RETURN ok;
END $$;
COMMENT ON FUNCTION vms._viid_session_event(text, text, integer, text, text) IS 'internal: record a register / keepalive / time answer';

CREATE FUNCTION vms.viid_prune(upstream text DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM vms.viid_outbox o USING vms.viid_upstream u
     WHERE o.upstream = u.name AND (viid_prune.upstream IS NULL OR u.name = viid_prune.upstream)
       AND o.state = 'delivered'
       AND o.delivered_at < now() - make_interval(days => coalesce((u.options ->> 'retention_days')::int, 7));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.viid_prune(text) IS 'delete delivered records older than the upstream''s retention (the worker runs it after keepalives)';

CREATE FUNCTION vms.viid_redrive(upstream text DEFAULT NULL, ids bigint[] DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n bigint;
BEGIN
    UPDATE vms.viid_outbox o SET state = 'pending', attempts = 0, next_attempt_at = now(), dead_at = NULL
     WHERE o.state = 'dead' AND (viid_redrive.upstream IS NULL OR o.upstream = viid_redrive.upstream)
       AND (viid_redrive.ids IS NULL OR o.id = ANY (viid_redrive.ids));
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM vms._wake_worker('viid');
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.viid_redrive(text, bigint[]) IS 'send dead records again (all, an upstream''s, or the given ids)';

-- Documents from the ledger ---------------------------------------------------------
CREATE FUNCTION vms.viid_ape_doc(c vms.channel) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'ApeID', c.code::text, 'Name', c.name, 'Model', d.model, 'IPAddr', host(d.ip_address), 'Port', d.port,
        'Longitude', round(ST_X(c.geom)::numeric, 6), 'Latitude', round(ST_Y(c.geom)::numeric, 6),
        'PlaceCode', c.civil_code, 'OrgCode', u.code, 'MonitorDirection', c.azimuth,
        'IsOnline', CASE WHEN c.online THEN '1' ELSE '2' END,
        'FunctionType', CASE WHEN c.point_type = 'capture' THEN '1' ELSE '2' END,
        'PositionType', c.place_type))
      FROM vms.device d LEFT JOIN vms.org_unit u ON u.id = c.unit_id WHERE d.code = c.device_code
$$;
COMMENT ON FUNCTION vms.viid_ape_doc(vms.channel) IS 'APEObject for a channel';

CREATE FUNCTION vms.viid_tollgate_doc(k vms.checkpoint) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path FROM CURRENT
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'TollgateID', k.code::text, 'Name', k.name, 'Longitude', round(ST_X(k.geom)::numeric, 6),
        'Latitude', round(ST_Y(k.geom)::numeric, 6), 'PlaceCode', k.civil_code, 'Status', '1',
        'TollgateCat', CASE k.direction_mode WHEN 'updown' THEN '10' ELSE '20' END,
        'LaneNum', (SELECT count(*) FROM vms.lane l WHERE l.checkpoint_code = k.code)));
COMMENT ON FUNCTION vms.viid_tollgate_doc(vms.checkpoint) IS 'TollgateObject for a checkpoint';

CREATE FUNCTION vms.viid_lane_doc(l vms.lane) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path FROM CURRENT
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'LaneID', l.checkpoint_code::text || lpad(l.lane_no::text, 2, '0'), 'TollgateID', l.checkpoint_code::text,
        'LaneNo', l.lane_no, 'Name', l.name,
        'Direction', CASE l.direction WHEN 'E2W' THEN '1' WHEN 'W2E' THEN '2' WHEN 'S2N' THEN '3' WHEN 'N2S' THEN '4'
                                       WHEN 'SE2NW' THEN '5' WHEN 'NW2SE' THEN '6' WHEN 'NE2SW' THEN '7' WHEN 'SW2NE' THEN '8'
                                       WHEN 'up' THEN '9' WHEN 'down' THEN '10' END,
        'ApeID', (SELECT min(lc.channel_code::text) FROM vms.lane_channel lc
                   WHERE lc.checkpoint_code = l.checkpoint_code AND lc.lane_no = l.lane_no)));
COMMENT ON FUNCTION vms.viid_lane_doc(vms.lane) IS 'LaneObject for a lane (LaneID = checkpoint code + 2-digit lane number)';

-- Ledger changes reach upstreams that asked for it (options.sync_ledger).
-- SECURITY DEFINER trigger: whoever edits the ledger may not read the
-- upstreams or write the outbox.  It takes nothing from the caller but the
-- changed rows, and queues them only for enabled upstreams that asked.
CREATE FUNCTION vms._viid_sync_ledger() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.viid_upstream WHERE enabled AND (options ->> 'sync_ledger')::boolean) THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'channel' AND TG_OP = 'UPDATE' THEN
        -- only ledger content; online flips and keepalive state are not worth a push
        INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
        SELECT u.name, 'APE', n.code::text, vms.viid_ape_doc(n)
          FROM new_rows n JOIN old_rows o ON o.code = n.code CROSS JOIN vms.viid_upstream u
         WHERE u.enabled AND (u.options ->> 'sync_ledger')::boolean
           AND vms._channel_jsonb(n) IS DISTINCT FROM vms._channel_jsonb(o);
    ELSIF TG_TABLE_NAME = 'channel' THEN
        INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
        SELECT u.name, 'APE', n.code::text, vms.viid_ape_doc(n)
          FROM new_rows n CROSS JOIN vms.viid_upstream u
         WHERE u.enabled AND (u.options ->> 'sync_ledger')::boolean;
    ELSIF TG_TABLE_NAME = 'checkpoint' THEN
        INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
        SELECT u.name, 'Tollgate', n.code::text, vms.viid_tollgate_doc(n)
          FROM new_rows n CROSS JOIN vms.viid_upstream u
         WHERE u.enabled AND (u.options ->> 'sync_ledger')::boolean;
    ELSE
        INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
        SELECT u.name, 'Lane', n.checkpoint_code::text || lpad(n.lane_no::text, 2, '0'), vms.viid_lane_doc(n)
          FROM new_rows n CROSS JOIN vms.viid_upstream u
         WHERE u.enabled AND (u.options ->> 'sync_ledger')::boolean;
    END IF;
    PERFORM vms._wake_worker('viid');
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._viid_sync_ledger() IS 'internal: queue APE, Tollgate and Lane updates when the ledger changes';
CREATE TRIGGER channel_viid_ins AFTER INSERT ON vms.channel REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_sync_ledger();
CREATE TRIGGER channel_viid_upd AFTER UPDATE ON vms.channel REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_sync_ledger();
CREATE TRIGGER checkpoint_viid_ins AFTER INSERT ON vms.checkpoint REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_sync_ledger();
CREATE TRIGGER checkpoint_viid_upd AFTER UPDATE ON vms.checkpoint REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_sync_ledger();
CREATE TRIGGER lane_viid_ins AFTER INSERT ON vms.lane REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_sync_ledger();
CREATE TRIGGER lane_viid_upd AFTER UPDATE ON vms.lane REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_sync_ledger();
-- GB/T 28181 device sessions, kept by the "vms sip" worker.
--
-- The worker holds live state in memory and writes it here in batches
-- (vms._sip_flush, about once a second): registrations, keepalive times,
-- online/offline transitions with their cause.  SQL asks the worker for
-- things through vms.sip_request (catalog, DeviceInfo, DeviceStatus,
-- subscriptions); the worker is woken when such a request commits.

CREATE TABLE vms.device_session (
    device_code        vms.gbcode PRIMARY KEY REFERENCES vms.device (code) ON DELETE CASCADE,
    transport          text CHECK (transport IN ('UDP', 'TCP')),
    address            inet,
    port               integer,
    user_agent         text,
    registered_at      timestamptz,
    expires_at         timestamptz,
    last_keepalive_at  timestamptz,
    keepalive_interval integer CHECK (keepalive_interval BETWEEN 5 AND 3600),
    keepalive_count    integer CHECK (keepalive_count BETWEEN 1 AND 100),
    online             boolean NOT NULL DEFAULT false,
    auth_failures      integer NOT NULL DEFAULT 0,
    banned_until       timestamptz,
    last_status        jsonb,
    last_info          jsonb,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    digest_qop         boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE vms.device_session IS
    'GB/T 28181 session of each device as the SIP worker last wrote it: registration, keepalive, online state, bans';
COMMENT ON COLUMN vms.device_session.keepalive_interval IS 'seconds between keepalives for this device; NULL = vms.sip_keepalive_interval';
COMMENT ON COLUMN vms.device_session.keepalive_count IS 'missed keepalives before offline; NULL = vms.sip_keepalive_count';
COMMENT ON COLUMN vms.device_session.expires_at IS 'end of the current registration; a device is offline once it passes';
COMMENT ON COLUMN vms.device_session.banned_until IS 'REGISTER is refused until then after repeated authentication failures';
COMMENT ON COLUMN vms.device_session.digest_qop IS
    'true (default): the digest challenge offers qop="auth" and REGISTER must answer with it (nc tracked, no replay); false for devices that cannot do qop: each nonce is then good for one REGISTER; set with vms.sip_set_digest_qop';

CREATE TABLE vms.device_event (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_code  vms.gbcode NOT NULL,
    at           timestamptz NOT NULL,
    event        text NOT NULL CHECK (event IN ('registered', 'unregistered', 'online', 'offline',
                                                'auth_failed', 'banned', 'added', 'expired')),
    cause        text,
    address      text
);
CREATE INDEX device_event_device_idx ON vms.device_event (device_code, at);
CREATE INDEX device_event_at_idx ON vms.device_event (at);
COMMENT ON TABLE vms.device_event IS
    'every device session transition with its time and cause (keepalive timeout, registration expired, unregister, restart grace...)';

-- What a device's catalog last said about each channel's status.
CREATE TABLE vms.channel_status (
    code         vms.gbcode PRIMARY KEY REFERENCES vms.channel (code) ON DELETE CASCADE,
    status       text NOT NULL CHECK (status IN ('ON', 'OFF', 'VLOST', 'DEFECT', 'DEL')),
    reported_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.channel_status IS
    'channel status from catalog answers and NOTIFY events; a channel is online when its device is and its status is ON';

CREATE TABLE vms.sip_request (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_code  vms.gbcode NOT NULL REFERENCES vms.device (code) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('catalog', 'device_info', 'device_status', 'subscribe', 'unsubscribe',
                                               'invite', 'bye')),
    params       jsonb NOT NULL DEFAULT '{}',
    state        text NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'sent', 'receiving', 'done', 'partial', 'failed', 'timeout')),
    requested_by text NOT NULL DEFAULT current_user,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    progress     jsonb,
    result       jsonb,
    error        text
);
CREATE INDEX sip_request_open_idx ON vms.sip_request (id) WHERE state IN ('queued', 'sent', 'receiving');
CREATE INDEX sip_request_device_idx ON vms.sip_request (device_code, created_at);
COMMENT ON TABLE vms.sip_request IS
    'requests to devices carried out by the SIP worker; progress shows catalog pages received (received of sum_num)';

CREATE TABLE vms.sip_subscription (
    device_code     vms.gbcode NOT NULL REFERENCES vms.device (code) ON DELETE CASCADE,
    event           text NOT NULL CHECK (event IN ('Catalog', 'Alarm', 'MobilePosition')),
    expires         integer NOT NULL CHECK (expires BETWEEN 60 AND 86400),
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'active', 'failed')),
    call_id         text,
    cseq            integer NOT NULL DEFAULT 0,
    subscribed_at   timestamptz,
    expires_at      timestamptz,
    last_notify_at  timestamptz,
    last_error      text,
    PRIMARY KEY (device_code, event)
);
COMMENT ON TABLE vms.sip_subscription IS
    'Catalog, Alarm and MobilePosition subscriptions; the SIP worker renews each before it expires';

CREATE TABLE vms.mobile_position (
    device_code  vms.gbcode NOT NULL,
    at           timestamptz NOT NULL,
    geom         geometry(Point, 4326) NOT NULL,
    speed        real,
    direction    real,
    altitude     real
);
CREATE INDEX mobile_position_device_idx ON vms.mobile_position (device_code, at);
COMMENT ON TABLE vms.mobile_position IS 'positions reported by mobile devices (MobilePosition NOTIFY), WGS-84';

-- Requests ------------------------------------------------------------------

CREATE FUNCTION vms._sip_request(device vms.gbcode, kind text, params jsonb DEFAULT '{}')
    RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    rid bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.device d WHERE d.code = device) THEN
        RAISE EXCEPTION 'device % is not in the ledger', device
            USING ERRCODE = 'undefined_object',
                  HINT = 'Add the device to vms.device first.';
    END IF;
    INSERT INTO vms.sip_request (device_code, kind, params) VALUES (device, kind, params)
        RETURNING id INTO rid;
    PERFORM vms._wake_worker('sip');
    RETURN rid;
END $$;
COMMENT ON FUNCTION vms._sip_request(vms.gbcode, text, jsonb) IS 'internal: queue a request for the SIP worker and wake it at commit';

CREATE FUNCTION vms.sip_query_catalog(device vms.gbcode) RETURNS bigint
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms._sip_request(device, 'catalog');
COMMENT ON FUNCTION vms.sip_query_catalog(vms.gbcode) IS
    'ask a device for its catalog; the answer pages are upserted into the ledger (raw layer, 215/216 trees); returns the request id';

CREATE FUNCTION vms.sip_query_device_info(device vms.gbcode) RETURNS bigint
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms._sip_request(device, 'device_info');
COMMENT ON FUNCTION vms.sip_query_device_info(vms.gbcode) IS
    'ask a device for DeviceInfo (manufacturer, model, firmware); reported into the device raw layer; returns the request id';

CREATE FUNCTION vms.sip_query_device_status(device vms.gbcode) RETURNS bigint
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms._sip_request(device, 'device_status');
COMMENT ON FUNCTION vms.sip_query_device_status(vms.gbcode) IS
    'ask a device for DeviceStatus; the answer lands in the request result and vms.device_session.last_status';

CREATE FUNCTION vms._sip_check_event(event text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF event IS NULL OR event NOT IN ('Catalog', 'Alarm', 'MobilePosition') THEN
        RAISE EXCEPTION 'unknown subscription event "%"', event
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use Catalog, Alarm or MobilePosition.';
    END IF;
END $$;
COMMENT ON FUNCTION vms._sip_check_event(text) IS 'internal: a subscription event is Catalog, Alarm or MobilePosition';

CREATE FUNCTION vms.sip_subscribe(device vms.gbcode, event text, expires integer DEFAULT 3600)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM vms._sip_check_event(event);
    IF expires IS NULL OR expires NOT BETWEEN 60 AND 86400 THEN
        RAISE EXCEPTION 'subscription expiry % is out of range', expires
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A subscription lasts 60 to 86400 seconds and is renewed before it ends.';
    END IF;
    RETURN vms._sip_request(device, 'subscribe', jsonb_build_object('event', event, 'expires', expires));
END $$;
COMMENT ON FUNCTION vms.sip_subscribe(vms.gbcode, text, integer) IS
    'subscribe to a device''s Catalog, Alarm or MobilePosition events; the worker renews before expiry; returns the request id';

CREATE FUNCTION vms.sip_unsubscribe(device vms.gbcode, event text) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM vms._sip_check_event(event);
    RETURN vms._sip_request(device, 'unsubscribe', jsonb_build_object('event', event));
END $$;
COMMENT ON FUNCTION vms.sip_unsubscribe(vms.gbcode, text) IS 'end a subscription (SUBSCRIBE with Expires: 0); returns the request id';

-- Live media: INVITE a channel to send RTP/PS to an address, and BYE.
CREATE FUNCTION vms.sip_invite(channel vms.gbcode, ip text, port integer, transport text DEFAULT 'udp')
    RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    dev vms.gbcode;
BEGIN
    SELECT c.device_code INTO dev FROM vms.channel c WHERE c.code = channel;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % is not in the ledger', channel USING ERRCODE = 'undefined_object';
    END IF;
    IF ip IS NULL OR ip !~ '^[0-9]{1,3}(\.[0-9]{1,3}){3}$' OR port IS NULL OR port NOT BETWEEN 1024 AND 65535 THEN
        RAISE EXCEPTION 'media address %:% is not an IPv4 address and a port from 1024 to 65535', ip, port
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF transport IS NULL OR transport NOT IN ('udp', 'tcp') THEN
        RAISE EXCEPTION 'media transport "%" is neither udp nor tcp', transport
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'tcp: RTP framed per RFC 4571, the device connects to ip:port (setup:passive).';
    END IF;
    RETURN vms._sip_request(dev, 'invite', jsonb_build_object('channel', channel::text, 'ip', ip, 'port', port,
                                                              'transport', transport));
END $$;
COMMENT ON FUNCTION vms.sip_invite(vms.gbcode, text, integer, text) IS
    'ask a channel for live video: INVITE (SDP recvonly, PS/90000 over RTP to ip:port, udp or tcp per RFC 4571 with the platform passive); the result holds the call id; end it with vms.sip_bye';

CREATE FUNCTION vms.sip_bye(invite_request bigint) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r vms.sip_request;
BEGIN
    SELECT * INTO r FROM vms.sip_request WHERE id = invite_request AND kind = 'invite';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no INVITE request %', invite_request USING ERRCODE = 'undefined_object';
    END IF;
    RETURN vms._sip_request(r.device_code, 'bye', jsonb_build_object('call_id', r.result ->> 'call_id'));
END $$;
COMMENT ON FUNCTION vms.sip_bye(bigint) IS 'end the media session an INVITE request started';

-- Poll a request until it finishes or the timeout passes; each poll sees
-- the worker's latest commit.
CREATE FUNCTION vms.sip_request_wait(request_id bigint, timeout_s double precision DEFAULT 30)
    RETURNS vms.sip_request
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r vms.sip_request;
    deadline timestamptz := clock_timestamp() + make_interval(secs => least(greatest(timeout_s, 0), 600));
BEGIN
    LOOP
        SELECT * INTO r FROM vms.sip_request WHERE id = request_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no SIP request %', request_id USING ERRCODE = 'undefined_object';
        END IF;
        EXIT WHEN r.state NOT IN ('queued', 'sent', 'receiving') OR clock_timestamp() >= deadline;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN r;
END $$;
COMMENT ON FUNCTION vms.sip_request_wait(bigint, double precision) IS
    'wait (at most timeout_s, capped at 600) for a SIP request to finish and return it; call it after the request committed';

CREATE VIEW vms.sip_device_status AS
SELECT d.code, d.name, d.online, s.transport, s.address, s.port, s.registered_at, s.expires_at,
       s.last_keepalive_at,
       coalesce(s.keepalive_interval, (SELECT g.setting::int FROM pg_catalog.pg_settings g
                                        WHERE g.name = 'vms.sip_keepalive_interval'), 60) AS keepalive_interval,
       coalesce(s.keepalive_count, (SELECT g.setting::int FROM pg_catalog.pg_settings g
                                     WHERE g.name = 'vms.sip_keepalive_count'), 3) AS keepalive_count,
       s.auth_failures, s.banned_until, d.status_changed_at,
       (SELECT e.cause FROM vms.device_event e WHERE e.device_code = d.code ORDER BY e.at DESC, e.id DESC LIMIT 1) AS last_cause
  FROM vms.device d LEFT JOIN vms.device_session s ON s.device_code = d.code;
COMMENT ON VIEW vms.sip_device_status IS
    'devices with their GB/T 28181 session: online, registration, last keepalive, keepalive parameters, bans, last transition cause';

-- Worker side ----------------------------------------------------------------

CREATE FUNCTION vms._sip_wake_on_credential() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM vms._wake_worker('sip');
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._sip_wake_on_credential() IS 'internal: a changed password reaches the SIP worker at commit';
CREATE TRIGGER device_credential_wake_sip AFTER INSERT OR UPDATE OR DELETE ON vms.device_credential
    FOR EACH STATEMENT EXECUTE FUNCTION vms._sip_wake_on_credential();

-- Devices whose credential, ledger row or SIP settings changed, for the
-- worker to reload.  The worker takes (deletes) the rows its snapshot sees
-- and reloads those devices in a later statement, so a change is never
-- skipped whatever order transactions start and commit in; a code whose
-- device row is gone ends its session there.
CREATE TABLE vms.sip_device_change (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_code  text NOT NULL,
    queued_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.sip_device_change IS
    'internal: codes of devices whose credential, ledger row or digest/keepalive settings changed, queued for the SIP worker (it empties the queue)';

-- SECURITY DEFINER: whoever may change a device, its credential or its
-- session settings must be able to queue the code for the worker, without
-- any privilege on the queue; the function writes only the changed row's
-- code into vms.sip_device_change and cannot be called other than as a
-- trigger.
CREATE FUNCTION vms._sip_queue_device_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        IF TG_OP = 'DELETE' THEN
            INSERT INTO vms.sip_device_change (device_code) SELECT o.code::text FROM old_rows o;
        ELSE
            INSERT INTO vms.sip_device_change (device_code) SELECT n.code::text FROM new_rows n;
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO vms.sip_device_change (device_code) VALUES (OLD.device_code::text);
    ELSE
        INSERT INTO vms.sip_device_change (device_code) VALUES (NEW.device_code::text);
    END IF;
    PERFORM vms._wake_worker('sip');
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION vms._sip_queue_device_change() FROM PUBLIC;
COMMENT ON FUNCTION vms._sip_queue_device_change() IS
    'internal (trigger, SECURITY DEFINER to write the queue for any role that may change a device): queue a device for the SIP worker to reload';
CREATE TRIGGER device_credential_sip_change AFTER INSERT OR UPDATE OR DELETE ON vms.device_credential
    FOR EACH ROW EXECUTE FUNCTION vms._sip_queue_device_change();
CREATE TRIGGER device_added_sip_change AFTER INSERT ON vms.device
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._sip_queue_device_change();
CREATE TRIGGER device_deleted_sip_change AFTER DELETE ON vms.device
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._sip_queue_device_change();
CREATE TRIGGER device_session_settings_sip_change AFTER UPDATE OF digest_qop, keepalive_interval, keepalive_count
    ON vms.device_session FOR EACH ROW
    WHEN (OLD.digest_qop IS DISTINCT FROM NEW.digest_qop OR OLD.keepalive_interval IS DISTINCT FROM NEW.keepalive_interval
          OR OLD.keepalive_count IS DISTINCT FROM NEW.keepalive_count)
    EXECUTE FUNCTION vms._sip_queue_device_change();
CREATE TRIGGER device_session_settings_sip_new AFTER INSERT ON vms.device_session FOR EACH ROW
    WHEN (NOT NEW.digest_qop OR NEW.keepalive_interval IS NOT NULL OR NEW.keepalive_count IS NOT NULL)
    EXECUTE FUNCTION vms._sip_queue_device_change();

CREATE FUNCTION vms._sip_take_device_changes() RETURNS SETOF text
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    WITH taken AS (DELETE FROM vms.sip_device_change RETURNING device_code)
    SELECT DISTINCT t.device_code FROM taken t
$$;
REVOKE ALL ON FUNCTION vms._sip_take_device_changes() FROM PUBLIC;
COMMENT ON FUNCTION vms._sip_take_device_changes() IS
    'internal: the SIP worker takes the queued device changes (the rows its snapshot sees; later commits stay queued)';

-- Digest qop per device: on by default; off for devices that cannot do it.
CREATE FUNCTION vms.sip_set_digest_qop(device vms.gbcode, qop boolean) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF qop IS NULL THEN
        RAISE EXCEPTION 'qop must be true or false' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM vms.device d WHERE d.code = device) THEN
        RAISE EXCEPTION 'device % is not in the ledger', device
            USING ERRCODE = 'undefined_object',
                  HINT = 'Add the device to vms.device first.';
    END IF;
    INSERT INTO vms.device_session AS s (device_code, digest_qop) VALUES (device, qop)
    ON CONFLICT (device_code) DO UPDATE SET digest_qop = EXCLUDED.digest_qop;
END $$;
REVOKE ALL ON FUNCTION vms.sip_set_digest_qop(vms.gbcode, boolean) FROM PUBLIC;
COMMENT ON FUNCTION vms.sip_set_digest_qop(vms.gbcode, boolean) IS
    'whether the digest challenge to a device offers and requires qop="auth" (default true); false only for devices that cannot do qop; reaches the SIP worker at commit';

-- Devices and their credentials and sessions, for the worker's memory
-- (times as Unix epoch seconds); all of them, those whose credentials
-- changed since a time, or one.
CREATE FUNCTION vms._sip_devices(since timestamptz DEFAULT '-infinity', one_code text DEFAULT NULL)
    RETURNS TABLE (code text, realm text, ha1_md5 text, ha1_sha256 text, online boolean,
                   registered_at float8, expires_at float8, last_keepalive_at float8,
                   keepalive_interval integer, keepalive_count integer, transport text, address text,
                   port integer, auth_failures integer, banned_until float8, credential_at timestamptz,
                   digest_qop boolean)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT d.code::text, c.realm, c.ha1_md5, c.ha1_sha256, coalesce(s.online, false),
           extract(epoch FROM s.registered_at)::float8, extract(epoch FROM s.expires_at)::float8,
           extract(epoch FROM s.last_keepalive_at)::float8, s.keepalive_interval, s.keepalive_count,
           s.transport, host(s.address), s.port, coalesce(s.auth_failures, 0),
           extract(epoch FROM s.banned_until)::float8, c.updated_at, coalesce(s.digest_qop, true)
      FROM vms.device d
      LEFT JOIN vms.device_credential c ON c.device_code = d.code
      LEFT JOIN vms.device_session s ON s.device_code = d.code
     WHERE (one_code IS NULL OR d.code = one_code::vms.gbcode)
       AND (since = '-infinity' OR c.updated_at > since OR d.created_at > since)
$$;
COMMENT ON FUNCTION vms._sip_devices(timestamptz, text) IS 'internal: what the SIP worker keeps in memory per device';

-- One batch of session changes: sessions (s), transitions (e) and online
-- flips (f), times as Unix epoch seconds.  Flips go to vms.device /
-- vms.channel as state writes (no ledger history); channels follow their
-- device and their own catalog status.
CREATE FUNCTION vms._sip_flush(batch jsonb) RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n integer;
BEGIN
    PERFORM set_config('vms.ledger_writer', 'state', true);
    INSERT INTO vms.device_session AS t (device_code, transport, address, port, user_agent, registered_at,
                                         expires_at, last_keepalive_at, online, auth_failures, banned_until, updated_at)
    SELECT s.d::vms.gbcode, s.tr, s.ad::inet, s.pt, s.ua, to_timestamp(s.ra), to_timestamp(s.ex),
           to_timestamp(s.ka), s.o, s.af, to_timestamp(s.bu), now()
      FROM jsonb_to_recordset(batch -> 's') AS s(d text, tr text, ad text, pt int, ua text, ra float8,
                                                ex float8, ka float8, o boolean, af int, bu float8)
      JOIN vms.device dv ON dv.code = s.d::vms.gbcode
    ON CONFLICT (device_code) DO UPDATE
       SET transport = EXCLUDED.transport, address = EXCLUDED.address, port = EXCLUDED.port,
           user_agent = coalesce(EXCLUDED.user_agent, t.user_agent), registered_at = EXCLUDED.registered_at,
           expires_at = EXCLUDED.expires_at, last_keepalive_at = EXCLUDED.last_keepalive_at,
           online = EXCLUDED.online, auth_failures = EXCLUDED.auth_failures,
           banned_until = EXCLUDED.banned_until, updated_at = now();
    GET DIAGNOSTICS n = ROW_COUNT;

    INSERT INTO vms.device_event (device_code, at, event, cause, address)
    SELECT e.d::vms.gbcode, to_timestamp(e.at), e.ev, e.c, e.ad
      FROM jsonb_to_recordset(batch -> 'e') AS e(d text, at float8, ev text, c text, ad text)
      JOIN vms.device dv ON dv.code = e.d::vms.gbcode
     ORDER BY e.at;

    WITH flips AS (
        SELECT DISTINCT ON (s.d) s.d::vms.gbcode AS code, s.o AS online, to_timestamp(s.at) AS at
          FROM jsonb_to_recordset(batch -> 'f') AS s(d text, o boolean, at float8)
         ORDER BY s.d, s.at DESC),
    dev AS (
        UPDATE vms.device d SET online = f.online, status_changed_at = f.at
          FROM flips f WHERE d.code = f.code AND d.online IS DISTINCT FROM f.online
        RETURNING d.code)
    UPDATE vms.channel c SET online = x.want, status_changed_at = x.at
      FROM (SELECT ch.code, f.at, f.online AND coalesce(cs.status, 'ON') = 'ON' AS want
              FROM flips f JOIN vms.channel ch ON ch.device_code = f.code
              LEFT JOIN vms.channel_status cs ON cs.code = ch.code) x
     WHERE c.code = x.code AND c.online IS DISTINCT FROM x.want;
    PERFORM set_config('vms.ledger_writer', '', true);
    RETURN n;
END $$;
COMMENT ON FUNCTION vms._sip_flush(jsonb) IS 'internal: the SIP worker''s batched session writes and online/offline transitions';

-- GB/T 28181 catalog item → governed channel columns (raw layer).
CREATE FUNCTION vms._sip_item_report(item jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'name', nullif(item ->> 'Name', ''),
        'address', nullif(item ->> 'Address', ''),
        'civil_code', CASE WHEN item ->> 'CivilCode' ~ '^([0-9]{2}){1,4}$' THEN item ->> 'CivilCode' END,
        'geom', CASE WHEN item ->> 'Longitude' ~ '^-?[0-9]{1,3}(\.[0-9]+)?$'
                      AND item ->> 'Latitude' ~ '^-?[0-9]{1,2}(\.[0-9]+)?$'
                      AND (item ->> 'Longitude')::float8 BETWEEN -180 AND 180
                      AND (item ->> 'Latitude')::float8 BETWEEN -90 AND 90
                      AND NOT ((item ->> 'Longitude')::float8 = 0 AND (item ->> 'Latitude')::float8 = 0)
                     THEN format('SRID=4326;POINT(%s %s)', item ->> 'Longitude', item ->> 'Latitude') END))
$$;
COMMENT ON FUNCTION vms._sip_item_report(jsonb) IS 'internal: a catalog item as a channel report (name, address, civil code, location)';

-- Apply catalog items (a query's pages, or a NOTIFY's events) from one
-- device.  Each item is applied on its own, so a bad one is reported and the
-- others land.  Returns counts and the rejected items with their reasons.
CREATE FUNCTION vms._sip_catalog_apply(device vms.gbcode, items jsonb) RETURNS jsonb
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    item jsonb;
    item_code vms.gbcode;
    typ integer;
    ev text;
    st text;
    dev_online boolean;
    channels integer := 0;
    nodes integer := 0;
    skipped integer := 0;
    foreign_items integer := 0;
    owner vms.gbcode;
    rejected jsonb := '[]';
BEGIN
    SELECT d.online INTO dev_online FROM vms.device d WHERE d.code = device;
    -- catalogue nodes first (sorted so parents tend to precede children)
    FOR item IN SELECT i FROM jsonb_array_elements(items) i
                 WHERE i ->> 'DeviceID' ~ '^[0-9]{10}21[56][0-9]{7}$'
                 ORDER BY substr(i ->> 'DeviceID', 11, 3), coalesce(i ->> 'ParentID', '')
    LOOP
        BEGIN
            item_code := (item ->> 'DeviceID')::vms.gbcode;
            ev := upper(coalesce(item ->> 'Event', 'ADD'));
            IF ev = 'DEL' THEN
                DELETE FROM vms.catalog_node n WHERE n.code = item_code AND n.source_device = device;
            ELSE
                INSERT INTO vms.catalog_node AS n (code, name, business_group, civil_code, source_device)
                VALUES (item_code, coalesce(nullif(item ->> 'Name', ''), item_code::text),
                        CASE WHEN item ->> 'BusinessGroupID' ~ '^[0-9]{10}215[0-9]{7}$' THEN (item ->> 'BusinessGroupID')::vms.gbcode END,
                        CASE WHEN item ->> 'CivilCode' ~ '^([0-9]{2}){1,4}$' THEN item ->> 'CivilCode' END, device)
                ON CONFLICT ON CONSTRAINT catalog_node_pkey DO UPDATE
                    SET name = EXCLUDED.name, business_group = EXCLUDED.business_group,
                        civil_code = coalesce(EXCLUDED.civil_code, n.civil_code)
                    WHERE n.source_device = device;     -- a node another device (or a person) made is not ours to change
                IF NOT FOUND THEN
                    foreign_items := foreign_items + 1;
                    rejected := rejected || jsonb_build_object('code', item ->> 'DeviceID',
                                                               'reason', 'catalogue node of another device');
                    CONTINUE;
                END IF;
            END IF;
            nodes := nodes + 1;
        EXCEPTION WHEN OTHERS THEN
            rejected := rejected || jsonb_build_object('code', item ->> 'DeviceID', 'reason', SQLERRM);
        END;
    END LOOP;
    -- virtual organisations hang under their parent once all nodes exist
    UPDATE vms.catalog_node n SET parent_code = p.code
      FROM jsonb_array_elements(items) i JOIN vms.catalog_node p ON p.code::text = i ->> 'ParentID'
     WHERE n.code::text = i ->> 'DeviceID' AND vms.gbcode_type(n.code) = 216
       AND n.source_device = device AND p.source_device = device
       AND vms.gbcode_type(p.code) = 216 AND p.code <> n.code
       AND n.parent_code IS DISTINCT FROM p.code;

    FOR item IN SELECT i FROM jsonb_array_elements(items) i
                 WHERE NOT (coalesce(i ->> 'DeviceID', '') ~ '^[0-9]{10}21[56][0-9]{7}$')
    LOOP
        BEGIN
            IF NOT (coalesce(item ->> 'DeviceID', '') ~ '^[0-9]{20}$') THEN
                RAISE EXCEPTION 'DeviceID is not a 20-digit code' USING ERRCODE = 'invalid_text_representation';
            END IF;
            item_code := (item ->> 'DeviceID')::vms.gbcode;
            typ := vms.gbcode_type(item_code);
            IF typ NOT BETWEEN 131 AND 199 THEN
                skipped := skipped + 1;     -- sub-devices and platforms are not channels
                CONTINUE;
            END IF;
            -- a channel belongs to the device that first reported it (a lower
            -- platform owns every channel it reports); another device's
            -- report about it changes nothing
            SELECT c.device_code INTO owner FROM vms.channel c WHERE c.code = item_code;
            IF FOUND AND owner IS DISTINCT FROM device THEN
                foreign_items := foreign_items + 1;
                rejected := rejected || jsonb_build_object('code', item ->> 'DeviceID',
                                                           'reason', 'channel of another device');
                CONTINUE;
            END IF;
            ev := upper(coalesce(item ->> 'Event', 'ADD'));
            st := CASE WHEN ev IN ('ON', 'OFF', 'VLOST', 'DEFECT', 'DEL') THEN ev
                       WHEN upper(item ->> 'Status') IN ('ON', 'ONLINE', 'OK') THEN 'ON'
                       WHEN upper(item ->> 'Status') IN ('OFF', 'OFFLINE') THEN 'OFF' END;
            IF ev IN ('ADD', 'UPDATE') THEN
                PERFORM vms.channel_apply_report(item_code, device, vms._sip_item_report(item));
                -- catalogue membership: ParentID or BusinessGroupID naming a 215/216 node
                INSERT INTO vms.catalog_member (node_code, channel_code)
                SELECT n.code, item_code FROM vms.catalog_node n
                 WHERE n.code::text IN (item ->> 'ParentID', item ->> 'BusinessGroupID')
                   AND n.source_device = device
                ON CONFLICT DO NOTHING;
            ELSIF owner IS NULL THEN
                RAISE EXCEPTION 'event % for a channel this device does not have', ev
                    USING ERRCODE = 'undefined_object';
            END IF;
            IF st IS NOT NULL THEN
                INSERT INTO vms.channel_status AS s (code, status, reported_at) VALUES (item_code, st, now())
                ON CONFLICT ON CONSTRAINT channel_status_pkey DO UPDATE SET status = EXCLUDED.status, reported_at = now();
                PERFORM set_config('vms.ledger_writer', 'state', true);
                UPDATE vms.channel c SET online = coalesce(dev_online, false) AND st = 'ON', status_changed_at = now()
                 WHERE c.code = item_code AND c.online IS DISTINCT FROM (coalesce(dev_online, false) AND st = 'ON');
                PERFORM set_config('vms.ledger_writer', '', true);
                IF st IN ('VLOST', 'DEFECT') THEN
                    PERFORM vms.alarm_raise(item_code, CASE st WHEN 'VLOST' THEN 'video_loss' ELSE 'device_defect' END,
                                            3::smallint, 'sip', jsonb_build_object('event', ev));
                END IF;
            END IF;
            channels := channels + 1;
        EXCEPTION WHEN OTHERS THEN
            rejected := rejected || jsonb_build_object('code', item ->> 'DeviceID', 'reason', SQLERRM);
        END;
    END LOOP;
    IF foreign_items > 0 THEN
        RAISE LOG 'vms sip: % catalog item(s) from device % name channels or catalogue nodes of another device: not applied',
            foreign_items, device;
    END IF;
    RETURN jsonb_build_object('channels', channels, 'nodes', nodes, 'skipped', skipped, 'foreign', foreign_items,
                              'rejected', rejected);
END $$;
COMMENT ON FUNCTION vms._sip_catalog_apply(vms.gbcode, jsonb) IS
    'internal: upsert catalog items (channels into the raw layer, 215/216 into catalogue trees, events ON/OFF/DEL/VLOST/DEFECT into channel status); items naming another device''s channel or catalogue node are not applied (counted as foreign)';

-- An Alarm notification (MANSCDP Notify CmdType Alarm) into the alarm centre.
CREATE FUNCTION vms._sip_alarm(device vms.gbcode, body jsonb) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    subject vms.gbcode := device;
    method text := coalesce(body ->> 'AlarmMethod', '');
    atype text := coalesce(body #>> '{Info,AlarmType}', body ->> 'AlarmType', '');
    prio int := CASE WHEN body ->> 'AlarmPriority' ~ '^[1-4]$' THEN (body ->> 'AlarmPriority')::int ELSE 4 END;
    fault text;
BEGIN
    IF body ->> 'DeviceID' ~ '^[0-9]{20}$' AND EXISTS (
           SELECT 1 FROM vms.channel c WHERE c.code = (body ->> 'DeviceID')::vms.gbcode AND c.device_code = device) THEN
        subject := (body ->> 'DeviceID')::vms.gbcode;
    END IF;
    fault := CASE
        WHEN method = '2' AND atype = '1' THEN 'video_loss'
        WHEN method = '2' AND atype = '2' THEN 'tamper'
        WHEN method = '2' AND atype = '3' THEN 'disk_full'
        WHEN method = '2' AND atype = '4' THEN 'high_temperature'
        WHEN method = '2' AND atype = '5' THEN 'low_temperature'
        WHEN method = '5' AND atype = '1' THEN 'manual_video_alarm'
        WHEN method = '5' AND atype = '2' THEN 'motion_detection'
        WHEN method = '5' AND atype = '3' THEN 'left_object'
        WHEN method = '5' AND atype = '4' THEN 'object_removed'
        WHEN method = '5' AND atype = '5' THEN 'tripwire'
        WHEN method = '5' AND atype = '6' THEN 'intrusion'
        WHEN method = '6' THEN 'device_fault'
        ELSE 'sip_alarm_' || CASE WHEN method ~ '^[0-9]{1,2}$' THEN method ELSE 'x' END
                          || CASE WHEN atype ~ '^[0-9]{1,2}$' THEN '_' || atype ELSE '' END
    END;
    RETURN vms.alarm_raise(subject, fault, prio::smallint, 'sip',
                           jsonb_build_object('priority', prio, 'method', method, 'type', atype,
                                              'time', body ->> 'AlarmTime',
                                              'description', left(body ->> 'AlarmDescription', 500),
                                              'reporter', device::text));
END $$;
COMMENT ON FUNCTION vms._sip_alarm(vms.gbcode, jsonb) IS
    'internal: an Alarm notification from a device into vms.alarm (priority 1-4 as the level; method/type as the fault type)';

CREATE FUNCTION vms._sip_position(device vms.gbcode, body jsonb) RETURNS void
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    INSERT INTO vms.mobile_position (device_code, at, geom, speed, direction, altitude)
    SELECT device, now(), ST_SetSRID(ST_MakePoint((body ->> 'Longitude')::float8, (body ->> 'Latitude')::float8), 4326),
           CASE WHEN body ->> 'Speed' ~ '^[0-9.]+$' THEN (body ->> 'Speed')::real END,
           CASE WHEN body ->> 'Direction' ~ '^[0-9.]+$' THEN (body ->> 'Direction')::real END,
           CASE WHEN body ->> 'Altitude' ~ '^-?[0-9.]+$' THEN (body ->> 'Altitude')::real END
     WHERE body ->> 'Longitude' ~ '^-?[0-9]{1,3}(\.[0-9]+)?$' AND body ->> 'Latitude' ~ '^-?[0-9]{1,2}(\.[0-9]+)?$'
       AND abs((body ->> 'Longitude')::float8) <= 180 AND abs((body ->> 'Latitude')::float8) <= 90
$$;
COMMENT ON FUNCTION vms._sip_position(vms.gbcode, jsonb) IS 'internal: a MobilePosition notification into vms.mobile_position';

-- Unknown devices accepted under vms.sip_unknown_devices = accept: a
-- minimal ledger row, named by its code, that governance will flag.
CREATE FUNCTION vms._sip_add_device(device vms.gbcode, info jsonb) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM set_config('vms.ledger_writer', 'system', true);
    INSERT INTO vms.device (code, name, ip_address, civil_code)
    VALUES (device, device::text, (info ->> 'address')::inet, left(device::text, 6))
    ON CONFLICT DO NOTHING;
    PERFORM set_config('vms.ledger_writer', '', true);
    INSERT INTO vms.device_event (device_code, at, event, cause, address)
    VALUES (device, now(), 'added', 'unknown device accepted (vms.sip_unknown_devices = accept)', info ->> 'address');
END $$;
COMMENT ON FUNCTION vms._sip_add_device(vms.gbcode, jsonb) IS 'internal: put a device that registered unannounced into the ledger for governance';

-- Answers to queries: applied, and the request finished with the outcome.
CREATE FUNCTION vms._sip_catalog_result(device vms.gbcode, answer jsonb) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    outcome jsonb := vms._sip_catalog_apply(device, coalesce(answer -> 'items', '[]'));
BEGIN
    PERFORM vms._sip_request_update((answer ->> 'request')::bigint, answer ->> 'state', answer -> 'progress',
                                    outcome, answer ->> 'error');
END $$;
COMMENT ON FUNCTION vms._sip_catalog_result(vms.gbcode, jsonb) IS 'internal: a finished catalog query: items applied, request closed with counts and rejects';

CREATE FUNCTION vms._sip_info_result(device vms.gbcode, answer jsonb) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    doc jsonb := answer -> 'answer';
BEGIN
    IF answer ->> 'kind' = 'device_info' THEN
        PERFORM vms.device_apply_report(device, jsonb_strip_nulls(jsonb_build_object(
            'manufacturer', nullif(left(doc ->> 'Manufacturer', 100), ''),
            'model', nullif(left(doc ->> 'Model', 100), ''),
            'firmware', nullif(left(doc ->> 'Firmware', 100), ''),
            'name', (SELECT d.name FROM vms.device d WHERE d.code = device))));
        UPDATE vms.device_session SET last_info = doc WHERE device_code = device;
    ELSE
        UPDATE vms.device_session SET last_status = doc WHERE device_code = device;
    END IF;
    PERFORM vms._sip_request_update((answer ->> 'request')::bigint, 'done', NULL, doc, NULL);
END $$;
COMMENT ON FUNCTION vms._sip_info_result(vms.gbcode, jsonb) IS 'internal: a DeviceInfo or DeviceStatus answer into the raw layer / session, and the request closed';

-- Requests for the worker: claim queued ones, report results.
CREATE FUNCTION vms._sip_claim_requests(lim integer DEFAULT 100)
    RETURNS TABLE (id bigint, device_code text, kind text, params jsonb)
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    UPDATE vms.sip_request r SET state = 'sent', started_at = now()
     WHERE r.id IN (SELECT q.id FROM vms.sip_request q WHERE q.state = 'queued' ORDER BY q.id LIMIT lim
                    FOR UPDATE SKIP LOCKED)
    RETURNING r.id, r.device_code::text, r.kind, r.params
$$;
COMMENT ON FUNCTION vms._sip_claim_requests(integer) IS 'internal: the SIP worker takes queued requests';

CREATE FUNCTION vms._sip_request_update(rid bigint, new_state text, progress jsonb, result jsonb, err text)
    RETURNS void
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    UPDATE vms.sip_request
       SET state = new_state, progress = coalesce($3, progress), result = coalesce($4, result), error = $5,
           finished_at = CASE WHEN new_state IN ('done', 'partial', 'failed', 'timeout') THEN now() END
     WHERE id = rid
$$;
COMMENT ON FUNCTION vms._sip_request_update(bigint, text, jsonb, jsonb, text) IS 'internal: the SIP worker records a request''s progress or outcome';

-- Requests left 'sent' by a worker that stopped cannot finish: fail them.
CREATE FUNCTION vms._sip_recover_requests() RETURNS integer
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    WITH r AS (
        UPDATE vms.sip_request SET state = 'failed', finished_at = now(),
               error = 'the SIP worker restarted while the request was in flight'
         WHERE state IN ('sent', 'receiving') RETURNING 1)
    SELECT count(*)::int FROM r
$$;
COMMENT ON FUNCTION vms._sip_recover_requests() IS 'internal: at worker start, fail requests a previous worker left in flight';

CREATE FUNCTION vms._sip_subscription_record(device vms.gbcode, info jsonb) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    st text := info ->> 'state';
    exp integer := coalesce((info ->> 'expires')::int, 3600);
BEGIN
    IF st = 'ended' THEN
        DELETE FROM vms.sip_subscription s WHERE s.device_code = device AND s.event = info ->> 'event';
    ELSE
        INSERT INTO vms.sip_subscription AS s (device_code, event, expires, state, call_id, cseq,
                                               subscribed_at, expires_at, last_error)
        VALUES (device, info ->> 'event', least(greatest(exp, 60), 86400), st, info ->> 'call_id',
                coalesce((info ->> 'cseq')::int, 0), CASE WHEN st = 'active' THEN now() END,
                CASE WHEN st = 'active' THEN now() + make_interval(secs => exp) END, info ->> 'error')
        ON CONFLICT (device_code, event) DO UPDATE
           SET expires = EXCLUDED.expires, state = EXCLUDED.state, call_id = EXCLUDED.call_id,
               cseq = EXCLUDED.cseq, subscribed_at = coalesce(EXCLUDED.subscribed_at, s.subscribed_at),
               expires_at = CASE WHEN EXCLUDED.state = 'active' THEN EXCLUDED.expires_at ELSE s.expires_at END,
               last_error = EXCLUDED.last_error;
    END IF;
    IF info ? 'request' THEN
        PERFORM vms._sip_request_update((info ->> 'request')::bigint,
                                        CASE WHEN st IN ('active', 'ended') THEN 'done' ELSE 'failed' END,
                                        NULL, info - 'request', info ->> 'error');
    END IF;
END $$;
COMMENT ON FUNCTION vms._sip_subscription_record(vms.gbcode, jsonb) IS
    'internal: the SIP worker records a subscription''s state (and closes the request that asked for it)';

CREATE FUNCTION vms._sip_subscriptions()
    RETURNS TABLE (device_code text, event text, expires integer, state text, expires_at float8)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT s.device_code::text, s.event, s.expires, s.state, extract(epoch FROM s.expires_at)::float8
      FROM vms.sip_subscription s
$$;
COMMENT ON FUNCTION vms._sip_subscriptions() IS 'internal: subscriptions the SIP worker keeps renewing';
-- vms.diagnose(): on-demand video quality diagnosis of one source.
-- (C in extension/inspect/diagnose_fn.c over vqd; thresholds in
-- extension/inspect/THRESHOLDS.md)
--
-- Privileges: not granted to PUBLIC.  The function opens network
-- connections from the database server (to any rtsp://, http:// or https://
-- address the caller names, so an ordinary role could use the server to
-- probe or reach hosts it cannot reach itself) and keeps a backend busy
-- decoding video for up to timeout_ms.  Superusers may call it; grant
-- EXECUTE to the operators who diagnose cameras.  File paths are checked
-- again inside the function: only roles with the privileges of
-- pg_read_server_files may name a server file, as for COPY FROM a file.
CREATE FUNCTION vms.diagnose(source text, options jsonb DEFAULT '{}')
RETURNS TABLE (check_name text, metric double precision, abnormal boolean, detail text)
LANGUAGE C VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'vms_diagnose';
REVOKE ALL ON FUNCTION vms.diagnose(text, jsonb) FROM PUBLIC;

COMMENT ON FUNCTION vms.diagnose(text, jsonb) IS
'Samples a video source (rtsp:// over TCP, http(s)://, or a server file path for members of pg_read_server_files) with FFmpeg and returns one row per check: stream, signal_loss, black_screen, brightness, blur, color_cast, noise, stripes, freeze, jitter, mosaic, occlusion, and scene_change when a baseline is given. metric and abnormal are NULL when a check could not be evaluated. Options: profile (strict|normal|loose), frames (1-150, default 50), seconds (default 2), timeout_ms (default 10000), connect_timeout_ms (default 5000), read_timeout_ms (default 3000), thresholds (object of threshold name to number), baseline (hex of a JPEG/PNG snapshot, encode(bytea, ''hex'')). Never waits past timeout_ms; a query cancel stops it at once. Not executable by PUBLIC: it opens network connections from the server; grant EXECUTE to the roles that diagnose cameras.';
-- Inspection plans (巡检计划), rounds and results (巡检记录).
--
-- A plan names its channels (regions, catalogue nodes, tags, channels), a
-- schedule (every N seconds, or cron-like), time windows with their own
-- profile and thresholds (e.g. night), the checks that count, and the
-- sample.  When a plan is due, a round (vms.inspection_run) and one task
-- per channel are created; the "vms inspector N" workers claim tasks with
-- FOR UPDATE SKIP LOCKED, sample the stream with FFmpeg outside any
-- transaction, and record each result here, raising and clearing alarms.

-- What the inspector may open for a channel: an rtsp://, rtsps://, http://
-- or https:// address with a host (credentials in the address are allowed),
-- at most 2048 characters, without white space or control characters.  Never
-- a server file or another FFmpeg protocol (file:, concat:, subfile:, pipe:,
-- data: ...); the inspector refuses those again at open time
-- (workers/inspect/inspector.c), for rows forced past this check.
ALTER TABLE vms.channel ADD CONSTRAINT channel_stream_url_check
    CHECK (length(stream_url) <= 2048
           AND stream_url ~ '^(rtsps?|https?)://[^[:space:][:cntrl:]/?#][^[:space:][:cntrl:]]*$');

CREATE TABLE vms.inspection_plan (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    scope           jsonb NOT NULL,
    every_s         integer CHECK (every_s BETWEEN 60 AND 31 * 86400),
    cron            text,
    windows         jsonb NOT NULL DEFAULT '[]',
    checks          text[] NOT NULL,
    profile         text NOT NULL DEFAULT 'normal' CHECK (profile IN ('strict', 'normal', 'loose')),
    thresholds      jsonb NOT NULL DEFAULT '{}',
    sample_seconds  real NOT NULL DEFAULT 2 CHECK (sample_seconds > 0 AND sample_seconds <= 30),
    sample_frames   integer NOT NULL DEFAULT 50 CHECK (sample_frames BETWEEN 1 AND 150),
    timeout_ms      integer NOT NULL DEFAULT 10000 CHECK (timeout_ms BETWEEN 1000 AND 120000),
    concurrency     integer NOT NULL DEFAULT 2 CHECK (concurrency BETWEEN 1 AND 64),
    enabled         boolean NOT NULL DEFAULT true,
    next_run_at     timestamptz NOT NULL DEFAULT now(),
    created_by      text NOT NULL DEFAULT session_user,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((every_s IS NULL) <> (cron IS NULL))
);
COMMENT ON TABLE vms.inspection_plan IS
    'inspection plans (巡检计划): scope, schedule (every_s or cron), time windows, checks, profile, thresholds, sample, concurrency';

CREATE TABLE vms.inspection_run (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan_id      bigint NOT NULL REFERENCES vms.inspection_plan (id) ON DELETE CASCADE,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    channels     integer NOT NULL DEFAULT 0,
    done         integer NOT NULL DEFAULT 0,
    stream_ok    integer NOT NULL DEFAULT 0,
    image_ok     integer NOT NULL DEFAULT 0,
    abnormal     integer NOT NULL DEFAULT 0,
    failed       integer NOT NULL DEFAULT 0,
    error        text
);
CREATE INDEX inspection_run_plan_idx ON vms.inspection_run (plan_id, started_at);
COMMENT ON TABLE vms.inspection_run IS 'one round of a plan over its channels, with its counts';
COMMENT ON COLUMN vms.inspection_run.failed IS 'tasks that failed without a result because the plan was not usable (see inspection_task.error)';
COMMENT ON COLUMN vms.inspection_run.error IS 'why the round could not start (the plan''s scope or schedule is not usable); NULL when it started';

CREATE TABLE vms.inspection_task (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       bigint NOT NULL REFERENCES vms.inspection_run (id) ON DELETE CASCADE,
    plan_id      bigint NOT NULL,
    channel_code vms.gbcode NOT NULL,
    source       text,
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done', 'failed')),
    worker       text,
    claimed_at   timestamptz,
    finished_at  timestamptz,
    error        text
);
CREATE INDEX inspection_task_pending_idx ON vms.inspection_task (id) WHERE state = 'pending';
CREATE INDEX inspection_task_run_idx ON vms.inspection_task (run_id);
COMMENT ON TABLE vms.inspection_task IS 'a channel to inspect in a round; claimed by one inspector worker at a time';
COMMENT ON COLUMN vms.inspection_task.error IS 'state failed: why the task could not be sampled (its plan''s settings are not usable)';

CREATE TABLE vms.snapshot (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_code vms.gbcode NOT NULL,
    taken_at     timestamptz NOT NULL DEFAULT now(),
    jpeg         bytea NOT NULL,
    is_baseline  boolean NOT NULL DEFAULT false
);
CREATE INDEX snapshot_channel_idx ON vms.snapshot (channel_code, taken_at);
CREATE UNIQUE INDEX snapshot_baseline_idx ON vms.snapshot (channel_code) WHERE is_baseline;
COMMENT ON TABLE vms.snapshot IS 'JPEG snapshots taken by inspection; one per channel is the baseline for scene_change';

CREATE TABLE vms.quality_result (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       bigint REFERENCES vms.inspection_run (id) ON DELETE CASCADE,
    task_id      bigint,
    channel_code vms.gbcode NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    profile      text NOT NULL,
    stream_ok    boolean NOT NULL,
    image_ok     boolean NOT NULL,
    abnormal     text[] NOT NULL DEFAULT '{}',
    checks       jsonb NOT NULL,
    sample       jsonb NOT NULL DEFAULT '{}',
    snapshot_id  bigint REFERENCES vms.snapshot (id) ON DELETE SET NULL
);
CREATE INDEX quality_result_channel_idx ON vms.quality_result (channel_code, at DESC);
CREATE INDEX quality_result_run_idx ON vms.quality_result (run_id);
COMMENT ON TABLE vms.quality_result IS
    'every inspection result (巡检记录): per check metric, verdict and detail, stream and image availability, snapshot';
COMMENT ON COLUMN vms.quality_result.image_ok IS 'a usable picture: the stream opened and neither signal loss nor black screen';

-- Cron-like schedules: minute hour day-of-month month day-of-week, each
-- *, a number, a range a-b, a list, or a step */n or a-b/n.
CREATE FUNCTION vms._cron_field(field text, lo integer, hi integer) RETURNS integer[]
    LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    part text;
    m text[];
    a integer;
    b integer;
    step integer;
    out integer[] := '{}';
BEGIN
    FOREACH part IN ARRAY string_to_array(field, ',') LOOP
        m := regexp_match(part, '^(\*|[0-9]{1,2}(?:-[0-9]{1,2})?)(?:/([0-9]{1,2}))?$');
        IF m IS NULL THEN
            RAISE EXCEPTION 'bad cron field "%"', field USING ERRCODE = 'invalid_parameter_value',
                HINT = 'Use *, n, a-b, lists a,b and steps */n.';
        END IF;
        IF m[1] = '*' THEN a := lo; b := hi;
        ELSIF position('-' IN m[1]) > 0 THEN a := split_part(m[1], '-', 1)::int; b := split_part(m[1], '-', 2)::int;
        ELSE a := m[1]::int; b := a;
        END IF;
        step := coalesce(m[2]::int, 1);
        IF a < lo OR b > hi OR a > b OR step < 1 THEN
            RAISE EXCEPTION 'cron field "%" is out of range %-%', field, lo, hi USING ERRCODE = 'invalid_parameter_value';
        END IF;
        out := out || ARRAY(SELECT generate_series(a, b, step));
    END LOOP;
    RETURN out;
END $$;
COMMENT ON FUNCTION vms._cron_field(text, integer, integer) IS 'internal: the values one cron field allows';

CREATE FUNCTION vms.cron_next(expr text, after timestamptz DEFAULT now()) RETURNS timestamptz
    LANGUAGE plpgsql STABLE STRICT AS $$
DECLARE
    f text[] := regexp_split_to_array(btrim(expr), '\s+');
    mins integer[];
    hours integer[];
    doms integer[];
    months integer[];
    dows integer[];
    start timestamp := date_trunc('minute', after::timestamp) + interval '1 minute';
    day date;
    h integer;
    mi integer;
BEGIN
    IF cardinality(f) <> 5 THEN
        RAISE EXCEPTION 'cron expression "%" needs five fields', expr USING ERRCODE = 'invalid_parameter_value',
            HINT = 'minute hour day-of-month month day-of-week, e.g. "0 2 * * *" for 02:00 every day.';
    END IF;
    mins := vms._cron_field(f[1], 0, 59);
    hours := vms._cron_field(f[2], 0, 23);
    doms := vms._cron_field(f[3], 1, 31);
    months := vms._cron_field(f[4], 1, 12);
    dows := vms._cron_field(replace(f[5], '7', '0'), 0, 6);
    FOR d IN 0 .. 366 LOOP
        day := start::date + d;
        CONTINUE WHEN NOT (extract(month FROM day)::int = ANY (months) AND extract(day FROM day)::int = ANY (doms)
                           AND extract(dow FROM day)::int = ANY (dows));
        FOREACH h IN ARRAY (SELECT array_agg(x ORDER BY x) FROM unnest(hours) x) LOOP
            FOREACH mi IN ARRAY (SELECT array_agg(x ORDER BY x) FROM unnest(mins) x) LOOP
                IF day + make_time(h, mi, 0) >= start THEN
                    RETURN (day + make_time(h, mi, 0))::timestamptz;
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
    RAISE EXCEPTION 'cron expression "%" never fires', expr USING ERRCODE = 'invalid_parameter_value';
END $$;
COMMENT ON FUNCTION vms.cron_next(text, timestamptz) IS
    'next time (server time zone) a five-field cron expression fires after the given time';

-- The channels a scope names: {"regions": [civil code prefixes], "catalog_nodes": [codes],
-- "tags": [tag ids], "channels": [codes]}; the union of all keys given.
CREATE FUNCTION vms.inspection_scope_channels(scope jsonb) RETURNS SETOF vms.gbcode
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    bad text;
BEGIN
    IF jsonb_typeof(scope) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'an inspection scope must be a JSON object' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use keys regions, catalog_nodes, tags, channels.';
    END IF;
    SELECT k INTO bad FROM jsonb_object_keys(scope) k
     WHERE k NOT IN ('regions', 'catalog_nodes', 'tags', 'channels') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown inspection scope key "%"', bad USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use keys regions, catalog_nodes, tags, channels.';
    END IF;
    SELECT k INTO bad FROM jsonb_each(scope) e(k, v) WHERE jsonb_typeof(v) <> 'array' LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'inspection scope key "%" must be an array', bad USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT DISTINCT c FROM (
        SELECT ch.code AS c FROM vms.channel ch
          JOIN jsonb_array_elements_text(coalesce(scope -> 'regions', '[]')) r ON ch.civil_code LIKE r || '%'
        UNION ALL
        SELECT s FROM jsonb_array_elements_text(coalesce(scope -> 'catalog_nodes', '[]')) n,
                      vms._scope_channels('catalog', n) s
        UNION ALL
        SELECT s FROM jsonb_array_elements_text(coalesce(scope -> 'tags', '[]')) t,
                      vms._scope_channels('tag', t) s
        UNION ALL
        SELECT ch.code FROM vms.channel ch
          JOIN jsonb_array_elements_text(coalesce(scope -> 'channels', '[]')) x ON ch.code = x::vms.gbcode
    ) u;
END $$;
COMMENT ON FUNCTION vms.inspection_scope_channels(jsonb) IS
    'channels of an inspection scope: regions (civil-code prefixes), catalog_nodes (subtrees), tags (subtrees), channels';

-- Thresholds (a plan's, or a time window's): names the inspector knows,
-- numbers in their range (extension/inspect/THRESHOLDS.md).
CREATE FUNCTION vms._inspection_threshold_problem(name text, value double precision) RETURNS text
    AS 'MODULE_PATHNAME', 'vms_inspection_threshold_problem' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vms._inspection_threshold_problem(text, double precision) IS
    'internal: NULL when the inspector takes this threshold value, else unknown or out of range';

CREATE FUNCTION vms._inspection_check_thresholds(thresholds jsonb, place text) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    k text;
    v jsonb;
    problem text;
BEGIN
    IF jsonb_typeof(thresholds) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION '% must be a JSON object', place USING ERRCODE = 'invalid_parameter_value',
            HINT = 'For example {"blur_min": 0.5}.';
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(thresholds) LOOP
        IF jsonb_typeof(v) <> 'number' THEN
            RAISE EXCEPTION 'threshold "%" in % must be a number', k, place USING ERRCODE = 'invalid_parameter_value',
                DETAIL = format('The value given was %s.', v);
        END IF;
        problem := CASE WHEN abs(v::text::numeric) > 1e300 THEN 'out of range'
                        ELSE vms._inspection_threshold_problem(k, v::text::float8) END;
        IF problem = 'unknown' THEN
            RAISE EXCEPTION 'unknown threshold "%" in %', k, place USING ERRCODE = 'invalid_parameter_value',
                HINT = 'The thresholds are listed in extension/inspect/THRESHOLDS.md, for example "blur_min" or "noise_sigma_min".';
        ELSIF problem IS NOT NULL THEN
            RAISE EXCEPTION 'threshold "%" in % is out of range', k, place USING ERRCODE = 'invalid_parameter_value',
                DETAIL = format('The value given was %s.', v);
        END IF;
    END LOOP;
END $$;
COMMENT ON FUNCTION vms._inspection_check_thresholds(jsonb, text) IS
    'internal: thresholds are an object of known threshold names to numbers in range (22023 naming the key otherwise)';

CREATE FUNCTION vms._inspection_check_plan(p vms.inspection_plan) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    bad text;
    w jsonb;
BEGIN
    PERFORM count(*) FROM vms.inspection_scope_channels(p.scope);
    IF p.cron IS NOT NULL THEN
        PERFORM vms.cron_next(p.cron);
    END IF;
    SELECT c INTO bad FROM unnest(p.checks) c
     WHERE c NOT IN ('stream', 'signal_loss', 'black_screen', 'brightness', 'blur', 'color_cast', 'noise',
                     'stripes', 'freeze', 'jitter', 'mosaic', 'occlusion', 'scene_change') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown check "%"', bad USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Checks: stream, signal_loss, black_screen, brightness, blur, color_cast, noise, stripes, freeze, jitter, mosaic, occlusion, scene_change.';
    END IF;
    IF cardinality(p.checks) = 0 THEN
        RAISE EXCEPTION 'an inspection plan needs at least one check' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(p.windows) <> 'array' THEN
        RAISE EXCEPTION 'windows must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR w IN SELECT jsonb_array_elements(p.windows) LOOP
        IF NOT (w ->> 'from' ~ '^([01][0-9]|2[0-3]):[0-5][0-9]$' AND w ->> 'to' ~ '^([01][0-9]|2[0-3]):[0-5][0-9]$') THEN
            RAISE EXCEPTION 'time window % needs "from" and "to" as HH:MM', w USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF w ? 'profile' AND w ->> 'profile' NOT IN ('strict', 'normal', 'loose') THEN
            RAISE EXCEPTION 'unknown profile "%" in a time window', w ->> 'profile' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF w ? 'thresholds' THEN
            PERFORM vms._inspection_check_thresholds(w -> 'thresholds', format('the window from %s to %s', w ->> 'from', w ->> 'to'));
        END IF;
    END LOOP;
    PERFORM vms._inspection_check_thresholds(p.thresholds, 'the plan''s thresholds');
END $$;
COMMENT ON FUNCTION vms._inspection_check_plan(vms.inspection_plan) IS 'internal: a plan''s scope, schedule, checks, windows and thresholds are valid';

-- The scheduler's own updates (next_run_at) are not checked again: a plan
-- forced past the check must fail its own round, not the scheduler's
-- statement and so every plan's round.  Disabling a plan is never refused;
-- enabling it again checks it.
CREATE FUNCTION vms._inspection_plan_trigger() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' OR (NEW.enabled AND NOT OLD.enabled)
       OR to_jsonb(NEW) - '{next_run_at,enabled}'::text[] IS DISTINCT FROM to_jsonb(OLD) - '{next_run_at,enabled}'::text[] THEN
        PERFORM vms._inspection_check_plan(NEW);
    END IF;
    PERFORM vms._wake_worker('inspector 1');
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._inspection_plan_trigger() IS 'internal: validate a changed plan and wake the inspectors';
CREATE TRIGGER inspection_plan_check BEFORE INSERT OR UPDATE ON vms.inspection_plan
    FOR EACH ROW EXECUTE FUNCTION vms._inspection_plan_trigger();

CREATE FUNCTION vms.inspection_plan_add(name text, scope jsonb, schedule text, options jsonb DEFAULT '{}')
    RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    bad text;
    pid bigint;
BEGIN
    SELECT k INTO bad FROM jsonb_object_keys(options) k
     WHERE k NOT IN ('windows', 'checks', 'profile', 'thresholds', 'sample_seconds', 'sample_frames',
                     'timeout_ms', 'concurrency', 'enabled') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown inspection plan option "%"', bad USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Options: windows, checks, profile, thresholds, sample_seconds, sample_frames, timeout_ms, concurrency, enabled.';
    END IF;
    IF schedule IS NULL OR NOT (schedule ~ '^every [0-9]+ ?(s|min|h|d)$' OR schedule ~ '^cron ') THEN
        RAISE EXCEPTION 'schedule "%" is neither "every N s|min|h|d" nor "cron <five fields>"', schedule
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example: every 30 min, or cron 0 2 * * *.';
    END IF;
    INSERT INTO vms.inspection_plan AS p (name, scope, every_s, cron, windows, checks, profile, thresholds,
                                          sample_seconds, sample_frames, timeout_ms, concurrency, enabled, next_run_at)
    VALUES (name, scope,
            CASE WHEN schedule LIKE 'every %' THEN
                 (regexp_match(schedule, '[0-9]+'))[1]::int *
                 CASE (regexp_match(schedule, '(s|min|h|d)$'))[1] WHEN 's' THEN 1 WHEN 'min' THEN 60 WHEN 'h' THEN 3600 ELSE 86400 END END,
            CASE WHEN schedule LIKE 'cron %' THEN substr(schedule, 6) END,
            coalesce(options -> 'windows', '[]'),
            CASE WHEN options ? 'checks' THEN ARRAY(SELECT jsonb_array_elements_text(options -> 'checks'))
                 ELSE '{stream,signal_loss,black_screen,brightness,blur,color_cast,noise,stripes,freeze,jitter,mosaic,occlusion,scene_change}' END,
            coalesce(options ->> 'profile', 'normal'), coalesce(options -> 'thresholds', '{}'),
            coalesce((options ->> 'sample_seconds')::real, 2), coalesce((options ->> 'sample_frames')::int, 50),
            coalesce((options ->> 'timeout_ms')::int, 10000), coalesce((options ->> 'concurrency')::int, 2),
            coalesce((options ->> 'enabled')::boolean, true),
            CASE WHEN schedule LIKE 'cron %' THEN vms.cron_next(substr(schedule, 6)) ELSE now() END)
    RETURNING id INTO pid;
    RETURN pid;
END $$;
COMMENT ON FUNCTION vms.inspection_plan_add(text, jsonb, text, jsonb) IS
    'add an inspection plan: scope, schedule ("every 30 min" / "cron 0 2 * * *"), options (windows, checks, profile, thresholds, sample_seconds, sample_frames, timeout_ms, concurrency, enabled)';

CREATE FUNCTION vms.inspection_run_now(plan text) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE vms.inspection_plan SET next_run_at = now() WHERE name = plan;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no inspection plan "%"', plan USING ERRCODE = 'undefined_object';
    END IF;
END $$;
COMMENT ON FUNCTION vms.inspection_run_now(text) IS 'start a round of a plan at once';

-- The profile and thresholds in force now: the first time window that
-- contains the current time, else the plan's.  A window is [from, to) in
-- the server's time zone; it wraps midnight when to < from, and from = to
-- is the whole day (so 00:00-00:00 holds at 23:59 too).
CREATE FUNCTION vms._inspection_settings(p vms.inspection_plan, at timestamptz DEFAULT now(),
                                         OUT profile text, OUT thresholds jsonb)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT coalesce(w ->> 'profile', p.profile), p.thresholds || coalesce(w -> 'thresholds', '{}')
      FROM (SELECT 1) one
      LEFT JOIN LATERAL (
          SELECT w FROM jsonb_array_elements(p.windows) w
           WHERE CASE WHEN (w ->> 'from')::time = (w ->> 'to')::time THEN true
                      WHEN (w ->> 'from')::time < (w ->> 'to')::time
                      THEN at::time >= (w ->> 'from')::time AND at::time < (w ->> 'to')::time
                      ELSE at::time >= (w ->> 'from')::time OR at::time < (w ->> 'to')::time END
           LIMIT 1) win ON true
$$;
COMMENT ON FUNCTION vms._inspection_settings(vms.inspection_plan, timestamptz) IS
    'internal: profile and thresholds of the time window in force, else the plan''s';

-- Due plans become rounds: one task per channel in scope.  Returns the
-- number of tasks created.  A plan whose round cannot start (its scope or
-- schedule is not usable: forced past the plan check, or older than it)
-- gets a finished round with the error, a WARNING in the server log, and
-- its next try in an hour (or its own period); the other plans go on.
CREATE FUNCTION vms._inspection_schedule() RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    p vms.inspection_plan;
    rid bigint;
    n integer;
    total integer := 0;
    why text;
BEGIN
    FOR p IN SELECT * FROM vms.inspection_plan
              WHERE enabled AND next_run_at <= now() FOR UPDATE SKIP LOCKED LOOP
        -- a round still going is not started again
        CONTINUE WHEN EXISTS (SELECT 1 FROM vms.inspection_run r WHERE r.plan_id = p.id AND r.finished_at IS NULL);
      BEGIN
        INSERT INTO vms.inspection_run (plan_id) VALUES (p.id) RETURNING id INTO rid;
        INSERT INTO vms.inspection_task (run_id, plan_id, channel_code, source)
        -- a channel without a stream URL whose device has a GB/T 28181 session is
        -- sampled through the SIP worker (INVITE, RTP/PS)
        SELECT rid, p.id, c.code,
               coalesce(c.stream_url, CASE WHEN EXISTS (SELECT 1 FROM vms.device_session ds
                                                          WHERE ds.device_code = c.device_code)
                                           THEN 'gb28181:' || c.code::text END)
          FROM vms.inspection_scope_channels(p.scope) s JOIN vms.channel c ON c.code = s;
        GET DIAGNOSTICS n = ROW_COUNT;
        UPDATE vms.inspection_run SET channels = n, finished_at = CASE WHEN n = 0 THEN now() END WHERE id = rid;
        UPDATE vms.inspection_plan
           SET next_run_at = CASE WHEN p.cron IS NOT NULL THEN vms.cron_next(p.cron)
                                  ELSE greatest(p.next_run_at + make_interval(secs => p.every_s), now()) END
         WHERE id = p.id;
        total := total + n;
      EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS why = MESSAGE_TEXT;
        INSERT INTO vms.inspection_run (plan_id, finished_at, error) VALUES (p.id, now(), why);
        UPDATE vms.inspection_plan SET next_run_at = now() + make_interval(secs => coalesce(p.every_s, 3600))
         WHERE id = p.id;
        RAISE WARNING 'inspection plan "%" could not start a round: %', p.name, why
            USING HINT = 'Correct the plan (vms.inspection_plan); the other plans are not affected.';
      END;
    END LOOP;
    RETURN total;
END $$;
COMMENT ON FUNCTION vms._inspection_schedule() IS 'internal: start rounds of due plans (run by the inspector workers)';

-- A task that cannot be sampled because its plan's settings are not usable:
-- failed with the reason (the round counts it and may finish), and a
-- WARNING in the server log.
CREATE FUNCTION vms._inspection_task_fail(task bigint, why text) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    t vms.inspection_task;
BEGIN
    UPDATE vms.inspection_task k SET state = 'failed', error = why, finished_at = now()
     WHERE k.id = task AND k.state IN ('pending', 'running')
    RETURNING * INTO t;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE vms.inspection_run r
       SET failed = r.failed + 1,
           finished_at = CASE WHEN NOT EXISTS (SELECT 1 FROM vms.inspection_task k WHERE k.run_id = r.id
                                                  AND k.state NOT IN ('done', 'failed')) THEN now() END
     WHERE r.id = t.run_id;
    RAISE WARNING 'inspection task % (channel %) failed: %', t.id, t.channel_code, why;
END $$;
COMMENT ON FUNCTION vms._inspection_task_fail(bigint, text) IS
    'internal: a task whose plan is not usable fails alone, with its reason, counted in its round';

-- A worker takes one task, within its plan's concurrency; the sampling
-- options come with it.  Tasks left running by a worker that died are
-- taken again after the plan's timeout twice over.  A task whose plan's
-- settings in force are not usable (a threshold that is not a number, a
-- window that does not parse: forced past the plan check) fails alone
-- (vms._inspection_task_fail) and the next task is taken: one bad plan never
-- stops the others.
CREATE FUNCTION vms._inspection_claim(worker_name text)
    RETURNS TABLE (task_id bigint, channel_code text, source text, profile text, th_names text[], th_values float8[],
                   sample_seconds float8, sample_frames integer, timeout_ms integer, baseline bytea)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    t vms.inspection_task;
    p vms.inspection_plan;
    s record;
    names text[];
    vals float8[];
    why text;
BEGIN
  LOOP
    SELECT * INTO t FROM vms.inspection_task k
     WHERE (k.state = 'pending'
            OR (k.state = 'running' AND k.claimed_at < now() - make_interval(secs => 2 * (
                    SELECT pl.timeout_ms FROM vms.inspection_plan pl WHERE pl.id = k.plan_id) / 1000.0)))
       AND (SELECT count(*) FROM vms.inspection_task r
             WHERE r.plan_id = k.plan_id AND r.state = 'running'
               AND r.claimed_at >= now() - interval '10 min') <
           (SELECT pl.concurrency FROM vms.inspection_plan pl WHERE pl.id = k.plan_id)
     ORDER BY k.id LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE vms.inspection_task SET state = 'running', worker = worker_name, claimed_at = now()
     WHERE id = t.id;
    SELECT * INTO p FROM vms.inspection_plan WHERE id = t.plan_id;
    BEGIN
        s := vms._inspection_settings(p);
        IF s.profile IS NULL OR s.profile NOT IN ('strict', 'normal', 'loose') THEN
            RAISE EXCEPTION 'unknown profile "%"', s.profile USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM vms._inspection_check_thresholds(s.thresholds, 'the thresholds in force');
        names := ARRAY(SELECT k FROM jsonb_object_keys(s.thresholds) k ORDER BY k);
        vals := ARRAY(SELECT (s.thresholds ->> k)::float8 FROM jsonb_object_keys(s.thresholds) k ORDER BY k);
        EXIT;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS why = MESSAGE_TEXT;
        PERFORM vms._inspection_task_fail(t.id, format('plan "%s" is not usable: %s', p.name, why));
    END;
  END LOOP;
    RETURN QUERY
    SELECT t.id, t.channel_code::text, t.source, s.profile, names, vals,
           p.sample_seconds::float8, p.sample_frames, p.timeout_ms,
           CASE WHEN 'scene_change' = ANY (p.checks) THEN
                (SELECT sn.jpeg FROM vms.snapshot sn WHERE sn.channel_code = t.channel_code AND sn.is_baseline) END;
END $$;
COMMENT ON FUNCTION vms._inspection_claim(text) IS 'internal: an inspector worker takes a due task (SKIP LOCKED, per-plan concurrency)';

-- Alarm level per fault found by inspection (I = most urgent).
CREATE FUNCTION vms.inspection_alarm_level(check_name text) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN check_name IN ('stream', 'signal_loss', 'black_screen') THEN 2
        WHEN check_name IN ('occlusion', 'scene_change', 'freeze') THEN 2
        WHEN check_name IN ('blur', 'brightness', 'jitter') THEN 3
        ELSE 4 END::smallint;
COMMENT ON FUNCTION vms.inspection_alarm_level(text) IS
    'alarm level of an inspection fault: II for no picture, tampering and freeze; III for blur, brightness, jitter; IV for the rest';

-- Per-channel baselines (issue 14): a camera's own history, per hour-of-day
-- band, informs its verdicts.  What is learnt: for brightness (mean luma),
-- color_cast (chroma offset of the least coloured pixels) and noise (sigma),
-- the last `keep` metrics of the channel's usable results (stream ok, no
-- signal loss or black screen, the check evaluated and not suppressed by
-- another) in each 3-hour band of the day (hour in the session's TimeZone,
-- the server's for the inspector), with their median and MAD; for
-- color_cast also the picture's median chroma (the result's "grey": [Cb,
-- Cr] offsets, as the inspector reports it), so that a cast is known by
-- its direction, not only its size.  Once a band
-- has `min_samples` results it is used: an alarm whose metric lies within
-- the band's usual spread is the channel's normal (a camera always dark at
-- 02:00: reported normal, "usual for this channel"), and a normal verdict
-- far from it is flagged (a camera normally bright that goes dark, a cast
-- or noise the camera does not usually show, a picture whose colour moved
-- away from the channel's usual colour).  What the baseline finds
-- abnormal is not learnt, so a departure stays flagged until it ends or an
-- operator accepts it with
-- vms.inspection_baseline_reset() (the channel then learns afresh).
CREATE TABLE vms.inspection_baseline (
    channel_code vms.gbcode NOT NULL,
    check_name   text NOT NULL,
    hour_band    smallint NOT NULL CHECK (hour_band BETWEEN 0 AND 7),
    recent       double precision[] NOT NULL DEFAULT '{}',
    median       double precision,
    mad          double precision,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    recent_grey  double precision[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (channel_code, check_name, hour_band)
);
COMMENT ON TABLE vms.inspection_baseline IS
    'per channel, check and 3-hour band of the day: the channel''s recent metrics (oldest first), their median and MAD; learnt from usable inspection results, reset with vms.inspection_baseline_reset';
COMMENT ON COLUMN vms.inspection_baseline.recent_grey IS
    'color_cast only: the recent results'' picture median chroma, Cb and Cr offsets in turn (oldest first; the same results as recent when every one had it)';

CREATE FUNCTION vms.inspection_hour_band(at timestamptz) RETURNS smallint
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN (extract(hour FROM at)::integer / 3)::smallint;
COMMENT ON FUNCTION vms.inspection_hour_band(timestamptz) IS
    'the baseline band of a time: its hour of day (in the session''s TimeZone) / 3, 0 (00:00-02:59) to 7 (21:00-23:59)';

-- Which checks have a baseline, and how it judges (levels of the check's metric):
--   min_samples    results in the band before the band is used
--   keep           metrics kept per band (the newest)
--   usual_within   an alarm within max(usual_within, 3 x 1.4826 MAD) of the median is usual
--   depart_beyond  a normal verdict beyond max(depart_beyond, 5 x 1.4826 MAD) is a departure
--   direction      0 either way, 1 only above the median (more cast, more noise)
--   shift_usual, shift_depart  color_cast: the same two for the distance of the
--                  picture's median chroma from the band's (chroma levels)
CREATE FUNCTION vms.inspection_baseline_rules(OUT check_name text, OUT min_samples integer, OUT keep integer,
                                              OUT usual_within double precision, OUT depart_beyond double precision,
                                              OUT direction smallint, OUT shift_usual double precision,
                                              OUT shift_depart double precision)
    RETURNS SETOF record LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    VALUES ('brightness'::text, 8, 30, 12::float8, 35::float8, 0::smallint, NULL::float8, NULL::float8),
           ('color_cast', 8, 30, 3, 6, 1, 4, 8),
           ('noise', 8, 30, 2, 4, 1, NULL, NULL)
$$;
COMMENT ON FUNCTION vms.inspection_baseline_rules() IS
    'the checks judged against a channel''s baseline and how: samples needed, metrics kept, the usual spread and the departure, in the check''s metric units (and for color_cast, of the picture''s median chroma)';

-- A result's checks judged against the channel's baseline for the band of
-- `at`: each baselined check gets "baseline" {band, median, mad, samples,
-- verdict usual|departure|within|outside}; an alarm within the usual spread
-- becomes normal and a normal verdict beyond the departure becomes abnormal,
-- both with "raw_abnormal" (the picture's own verdict) and the reason first
-- in the detail.  Checks not evaluated, suppressed by another check, or in a
-- band still learning are left as they are.
CREATE FUNCTION vms._inspection_baseline_apply(channel vms.gbcode, at timestamptz, checks jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    r record;
    b vms.inspection_baseline;
    v jsonb;
    x double precision;
    d double precision;
    dev double precision;
    s double precision;
    n integer;
    info jsonb;
    band smallint := vms.inspection_hour_band(at);
    res jsonb := checks;
    -- the picture's median chroma against the band's (color_cast)
    gcb double precision;
    gcr double precision;
    mcb double precision;
    mcr double precision;
    gd double precision;
    gs double precision;
    gn integer;
    usual boolean;
    depart boolean;
    why text;
BEGIN
    IF checks IS NULL OR jsonb_typeof(checks) <> 'object' THEN
        RETURN checks;
    END IF;
    FOR r IN SELECT * FROM vms.inspection_baseline_rules() LOOP
        v := checks -> r.check_name;
        CONTINUE WHEN v IS NULL OR jsonb_typeof(v) <> 'object' OR jsonb_typeof(v -> 'metric') IS DISTINCT FROM 'number'
                   OR jsonb_typeof(v -> 'abnormal') IS DISTINCT FROM 'boolean'
                   OR coalesce(v ->> 'detail', '') LIKE 'suppressed by%';
        SELECT * INTO b FROM vms.inspection_baseline ib
         WHERE ib.channel_code = channel AND ib.check_name = r.check_name AND ib.hour_band = band;
        n := coalesce(cardinality(b.recent), 0);
        CONTINUE WHEN n < r.min_samples;
        x := (v ->> 'metric')::double precision;
        d := x - b.median;
        s := 1.4826 * b.mad;
        dev := CASE WHEN r.direction = 0 THEN abs(d) ELSE d * r.direction END;
        usual := abs(d) <= greatest(r.usual_within, 3 * s);
        depart := dev >= greatest(r.depart_beyond, 5 * s);
        why := NULL;
        info := jsonb_build_object('band', band, 'median', round(b.median::numeric, 2), 'mad', round(b.mad::numeric, 2),
                                   'samples', n);
        gn := coalesce(cardinality(b.recent_grey), 0) / 2;
        IF r.shift_usual IS NOT NULL AND gn >= r.min_samples AND jsonb_typeof(v -> 'grey') = 'array'
           AND jsonb_typeof(v -> 'grey' -> 0) = 'number' AND jsonb_typeof(v -> 'grey' -> 1) = 'number' THEN
            gcb := (v -> 'grey' ->> 0)::double precision;
            gcr := (v -> 'grey' ->> 1)::double precision;
            SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY b.recent_grey[2 * i - 1]),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY b.recent_grey[2 * i])
              INTO mcb, mcr FROM generate_series(1, gn) i;
            SELECT 1.4826 * percentile_cont(0.5) WITHIN GROUP (ORDER BY sqrt((b.recent_grey[2 * i - 1] - mcb) ^ 2
                                                                             + (b.recent_grey[2 * i] - mcr) ^ 2))
              INTO gs FROM generate_series(1, gn) i;
            gd := sqrt((gcb - mcb) ^ 2 + (gcr - mcr) ^ 2);
            info := info || jsonb_build_object('grey_median', jsonb_build_array(round(mcb::numeric, 1), round(mcr::numeric, 1)),
                                               'grey_shift', round(gd::numeric, 1));
            usual := usual AND gd <= greatest(r.shift_usual, 3 * gs);
            IF NOT depart AND gd >= greatest(r.shift_depart, 5 * gs) THEN
                depart := true;
                why := format('colour moved from this channel''s usual at this hour (picture median Cb %s, Cr %s against %s, %s over %s results)',
                              round(gcb::numeric, 1), round(gcr::numeric, 1), round(mcb::numeric, 1), round(mcr::numeric, 1), gn);
            END IF;
        END IF;
        IF (v ->> 'abnormal')::boolean AND usual THEN
            v := v || jsonb_build_object('abnormal', false, 'raw_abnormal', true,
                                         'baseline', info || '{"verdict": "usual"}',
                                         'detail', format('usual for this channel at this hour (median %s over %s results): %s',
                                                          round(b.median::numeric, 1), n, v ->> 'detail'));
        ELSIF NOT (v ->> 'abnormal')::boolean AND depart THEN
            v := v || jsonb_build_object('abnormal', true, 'raw_abnormal', false,
                                         'baseline', info || '{"verdict": "departure"}',
                                         'detail', coalesce(why,
                                                            format('%s than usual for this channel at this hour (%s against a median of %s over %s results)',
                                                                   CASE WHEN r.check_name = 'brightness' AND d < 0 THEN 'darker'
                                                                        WHEN r.check_name = 'brightness' THEN 'brighter'
                                                                        WHEN r.check_name = 'noise' THEN 'noisier'
                                                                        ELSE 'more colour cast' END,
                                                                   round(x::numeric, 1), round(b.median::numeric, 1), n))
                                                   || ': ' || (v ->> 'detail'));
        ELSE
            v := v || jsonb_build_object('baseline', info || jsonb_build_object('verdict',
                                         CASE WHEN (v ->> 'abnormal')::boolean THEN 'outside' ELSE 'within' END));
        END IF;
        res := jsonb_set(res, ARRAY[r.check_name], v);
    END LOOP;
    RETURN res;
END $$;
COMMENT ON FUNCTION vms._inspection_baseline_apply(vms.gbcode, timestamptz, jsonb) IS
    'internal: a result''s checks judged against the channel''s baseline for the hour band (usual alarms cleared, departures flagged)';

-- Learn from a result (after _inspection_baseline_apply): a usable picture's
-- baselined checks that were evaluated, not suppressed, and not found
-- abnormal by the baseline (a departure, or an alarm outside the usual).
CREATE FUNCTION vms._inspection_baseline_learn(channel vms.gbcode, at timestamptz, checks jsonb) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r record;
    v jsonb;
    arr double precision[];
    grey double precision[];
    med double precision;
    band smallint := vms.inspection_hour_band(at);
BEGIN
    IF checks IS NULL OR jsonb_typeof(checks) <> 'object'
       OR coalesce((checks #>> '{stream,abnormal}')::boolean, true)
       OR coalesce((checks #>> '{signal_loss,abnormal}')::boolean, false)
       OR coalesce((checks #>> '{black_screen,abnormal}')::boolean, false) THEN
        RETURN;
    END IF;
    FOR r IN SELECT * FROM vms.inspection_baseline_rules() LOOP
        v := checks -> r.check_name;
        CONTINUE WHEN v IS NULL OR jsonb_typeof(v) <> 'object' OR jsonb_typeof(v -> 'metric') IS DISTINCT FROM 'number'
                   OR coalesce(v ->> 'detail', '') LIKE 'suppressed by%'
                   OR (v #>> '{baseline,verdict}') IN ('departure', 'outside');
        grey := CASE WHEN r.shift_usual IS NOT NULL AND jsonb_typeof(v -> 'grey') = 'array'
                           AND jsonb_typeof(v -> 'grey' -> 0) = 'number' AND jsonb_typeof(v -> 'grey' -> 1) = 'number'
                      THEN ARRAY[(v -> 'grey' ->> 0)::double precision, (v -> 'grey' ->> 1)::double precision]
                      ELSE '{}' END;
        INSERT INTO vms.inspection_baseline AS ib (channel_code, check_name, hour_band, recent, updated_at, recent_grey)
        VALUES (channel, r.check_name, band, ARRAY[(v ->> 'metric')::double precision], at, grey)
        ON CONFLICT (channel_code, check_name, hour_band) DO UPDATE
           SET recent = (ib.recent || EXCLUDED.recent)[greatest(1, cardinality(ib.recent) + 2 - r.keep):],
               recent_grey = (ib.recent_grey || EXCLUDED.recent_grey)
                             [greatest(1, cardinality(ib.recent_grey) + cardinality(EXCLUDED.recent_grey) + 1 - 2 * r.keep):],
               updated_at = EXCLUDED.updated_at
        RETURNING ib.recent INTO arr;
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY e) INTO med FROM unnest(arr) e;
        UPDATE vms.inspection_baseline ib
           SET median = med,
               mad = (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(e - med)) FROM unnest(arr) e)
         WHERE ib.channel_code = channel AND ib.check_name = r.check_name AND ib.hour_band = band;
    END LOOP;
END $$;
COMMENT ON FUNCTION vms._inspection_baseline_learn(vms.gbcode, timestamptz, jsonb) IS
    'internal: add a usable result''s metrics to the channel''s baseline for the hour band (what the baseline finds abnormal is not learnt)';

CREATE FUNCTION vms.inspection_baseline_reset(channel vms.gbcode, check_name text DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n integer;
BEGIN
    IF inspection_baseline_reset.check_name IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM vms.inspection_baseline_rules() r WHERE r.check_name = inspection_baseline_reset.check_name) THEN
        RAISE EXCEPTION 'check "%" has no baseline', inspection_baseline_reset.check_name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Only the checks of vms.inspection_baseline_rules() learn a per-channel baseline.',
                  HINT = 'Pass NULL to reset every check of the channel.';
    END IF;
    DELETE FROM vms.inspection_baseline ib
     WHERE ib.channel_code = channel
       AND (inspection_baseline_reset.check_name IS NULL OR ib.check_name = inspection_baseline_reset.check_name);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.inspection_baseline_reset(vms.gbcode, text) IS
    'forget a channel''s learnt baseline (every check, or one), e.g. after the camera was moved, relit or repaired: it learns afresh from its next results; returns the bands dropped';

-- One result: stored with its snapshot; alarms raised for abnormal checks
-- of the plan's check set and cleared for checks now normal; the round's
-- counts updated and the round closed when its last task is done.
CREATE FUNCTION vms._inspection_record(task bigint, result jsonb, jpeg bytea) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    t vms.inspection_task;
    p vms.inspection_plan;
    v_checks jsonb := coalesce(result -> 'checks', '{}');
    v_stream_ok boolean;
    v_image_ok boolean;
    bad text[];
    snap bigint;
    qid bigint;
    c text;
BEGIN
    SELECT * INTO t FROM vms.inspection_task WHERE id = task FOR UPDATE;
    IF NOT FOUND OR t.state IN ('done', 'failed') THEN
        RETURN NULL;
    END IF;
    SELECT * INTO p FROM vms.inspection_plan WHERE id = t.plan_id;
    -- the channel's own history for this hour of day (issue 14: baselines)
    v_checks := vms._inspection_baseline_apply(t.channel_code, now(), v_checks);
    v_stream_ok := NOT coalesce((v_checks #>> '{stream,abnormal}')::boolean, true);
    v_image_ok := v_stream_ok AND NOT coalesce((v_checks #>> '{signal_loss,abnormal}')::boolean, false)
                              AND NOT coalesce((v_checks #>> '{black_screen,abnormal}')::boolean, false);
    bad := ARRAY(SELECT k FROM jsonb_each(v_checks) e(k, v)
                  WHERE (v ->> 'abnormal')::boolean AND k = ANY (p.checks) ORDER BY k);
    IF jpeg IS NOT NULL AND length(jpeg) > 0 THEN
        INSERT INTO vms.snapshot (channel_code, jpeg, is_baseline)
        VALUES (t.channel_code, jpeg,
                v_image_ok AND cardinality(bad) = 0
                AND NOT EXISTS (SELECT 1 FROM vms.snapshot s WHERE s.channel_code = t.channel_code AND s.is_baseline))
        RETURNING id INTO snap;
    END IF;
    INSERT INTO vms.quality_result (run_id, task_id, channel_code, profile, stream_ok, image_ok, abnormal, checks, sample, snapshot_id)
    VALUES (t.run_id, t.id, t.channel_code, coalesce(result ->> 'profile', p.profile), v_stream_ok, v_image_ok, bad,
            v_checks, result - 'checks', snap)
    RETURNING id INTO qid;
    PERFORM vms._inspection_baseline_learn(t.channel_code, now(), v_checks);
    FOREACH c IN ARRAY p.checks LOOP
        IF c = ANY (bad) THEN
            PERFORM vms.alarm_raise(t.channel_code, c, vms.inspection_alarm_level(c), 'inspection',
                                    jsonb_build_object('metric', v_checks #> ARRAY[c, 'metric'],
                                                       'detail', v_checks #>> ARRAY[c, 'detail'], 'result', qid));
        ELSIF (v_checks #>> ARRAY[c, 'abnormal']) = 'false' THEN
            PERFORM vms.alarm_clear(t.channel_code, c, 'inspection found it normal again');
        END IF;
    END LOOP;
    UPDATE vms.inspection_task SET state = 'done', finished_at = now() WHERE id = t.id;
    UPDATE vms.inspection_run r
       SET done = r.done + 1, stream_ok = r.stream_ok + v_stream_ok::int, image_ok = r.image_ok + v_image_ok::int,
           abnormal = r.abnormal + (cardinality(bad) > 0)::int,
           finished_at = CASE WHEN NOT EXISTS (SELECT 1 FROM vms.inspection_task k WHERE k.run_id = r.id
                                                  AND k.state NOT IN ('done', 'failed') AND k.id <> t.id) THEN now() END
     WHERE r.id = t.run_id;
    RETURN qid;
END $$;
COMMENT ON FUNCTION vms._inspection_record(bigint, jsonb, bytea) IS
    'internal: store an inspection result and its snapshot, raise/clear alarms, count it in its round';

CREATE FUNCTION vms.inspection_set_baseline(channel vms.gbcode, snapshot_id bigint) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.snapshot s WHERE s.id = snapshot_id AND s.channel_code = channel) THEN
        RAISE EXCEPTION 'snapshot % is not of channel %', snapshot_id, channel USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE vms.snapshot SET is_baseline = false WHERE channel_code = channel AND is_baseline;
    UPDATE vms.snapshot SET is_baseline = true WHERE id = snapshot_id;
END $$;
COMMENT ON FUNCTION vms.inspection_set_baseline(vms.gbcode, bigint) IS
    'make a snapshot the channel''s baseline for scene_change (after a deliberate camera move)';

CREATE VIEW vms.inspection_run_rates AS
SELECT r.id AS run_id, p.name AS plan, r.started_at, r.finished_at, r.channels, r.done,
       round(r.stream_ok::numeric / nullif(r.done, 0), 4) AS stream_success_rate,
       round(r.image_ok::numeric / nullif(r.done, 0), 4) AS image_rate,
       r.abnormal, r.failed, r.error
  FROM vms.inspection_run r JOIN vms.inspection_plan p ON p.id = r.plan_id;
COMMENT ON VIEW vms.inspection_run_rates IS
    'per round: 取流成功率 stream_success_rate and 出图率 image_rate over the channels done; failed tasks and a round that could not start, with the error';

CREATE VIEW vms.channel_latest_quality AS
SELECT DISTINCT ON (q.channel_code) q.channel_code, q.at, q.stream_ok, q.image_ok, q.abnormal, q.snapshot_id
  FROM vms.quality_result q ORDER BY q.channel_code, q.at DESC, q.id DESC;
COMMENT ON VIEW vms.channel_latest_quality IS 'the latest inspection result of each channel';

CREATE VIEW vms.inspection_unit_rates AS
SELECT c.unit_id, u.name AS unit, count(*) AS channels_inspected,
       round(avg(l.stream_ok::int), 4) AS stream_success_rate,
       round(avg(l.image_ok::int), 4) AS image_rate
  FROM vms.channel_latest_quality l JOIN vms.channel c ON c.code = l.channel_code
  LEFT JOIN vms.org_unit u ON u.id = c.unit_id
 GROUP BY c.unit_id, u.name;
COMMENT ON VIEW vms.inspection_unit_rates IS 'per unit, from each channel''s latest result: 取流成功率 and 出图率';

CREATE VIEW vms.inspection_log AS
SELECT q.id, q.at, p.name AS plan, q.run_id, q.channel_code, c.name AS channel, q.profile, q.stream_ok, q.image_ok,
       q.abnormal, q.checks, q.sample, q.snapshot_id
  FROM vms.quality_result q
  LEFT JOIN vms.inspection_run r ON r.id = q.run_id
  LEFT JOIN vms.inspection_plan p ON p.id = r.plan_id
  LEFT JOIN vms.channel c ON c.code = q.channel_code;
COMMENT ON VIEW vms.inspection_log IS '巡检记录: every result with its plan, round, channel, verdicts and metrics, for review';
-- Availability accounting (在线率 / 离线时长): online, offline and unknown
-- intervals of every device and channel, and the figures the O&M contracts
-- pay by, per device, channel, unit, region and maintenance contractor.
--
-- Where the states come from:
--   device   vms.device_event 'online' / 'offline' (written by the SIP
--            worker at every flip); a state holds until the next one.
--   channel  its device's state, and while the device is online: offline
--            when its catalog status (vms.channel_status_event, kept from
--            catalog answers and NOTIFY) is not ON, or when the latest
--            inspection of it (vms.quality_result.stream_ok) could not pull
--            the stream; no catalog report or inspection yet counts as ON /
--            stream ok, as the SIP worker does.
--   unknown  before a device's first transition, and during the gaps in
--            vms.availability_gap: the SIP worker's restart grace (recorded
--            by a trigger when a device is found offline at the end of the
--            grace: the grace itself is unknown, not offline) and any gap a
--            DBA records (a server outage, for all devices).
-- Unknown time is excluded from the ratio's denominator; a period's end
-- later than now() is clipped to now().

-- Maintenance contracts (运维合同) and what they cover: units (and their
-- sub-units) or single devices; a device's own assignment wins over its
-- unit's, the nearest unit over its ancestors.
CREATE TABLE vms.maintenance_contract (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    contractor  text NOT NULL,
    starts_on   date,
    ends_on     date,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_on IS NULL OR starts_on IS NULL OR ends_on >= starts_on)
);
COMMENT ON TABLE vms.maintenance_contract IS
    'maintenance contracts (运维合同): the contractor paid by the availability and fault-fix figures of what the contract covers';

CREATE TABLE vms.maintenance_scope (
    contract_id  bigint NOT NULL REFERENCES vms.maintenance_contract (id) ON DELETE CASCADE,
    unit_id      bigint UNIQUE REFERENCES vms.org_unit (id) ON DELETE CASCADE,
    device_code  vms.gbcode UNIQUE REFERENCES vms.device (code) ON DELETE CASCADE,
    CHECK ((unit_id IS NULL) <> (device_code IS NULL))
);
CREATE INDEX maintenance_scope_contract_idx ON vms.maintenance_scope (contract_id);
COMMENT ON TABLE vms.maintenance_scope IS
    'what a maintenance contract covers: a unit (with its sub-units) or a device; at most one contract per unit and per device';

CREATE FUNCTION vms.contract_for(code vms.gbcode) RETURNS bigint
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    -- plpgsql, not sql: called once per alarm raised, its plan is kept
    RETURN (
    WITH RECURSIVE dev AS (
        SELECT x.code, x.unit_id FROM (
            SELECT c.device_code AS code, coalesce(c.unit_id, d.unit_id) AS unit_id, 1 AS pref
              FROM vms.channel c JOIN vms.device d ON d.code = c.device_code WHERE c.code = contract_for.code
            UNION ALL
            SELECT d.code, d.unit_id, 2 FROM vms.device d WHERE d.code = contract_for.code) x
         ORDER BY x.pref LIMIT 1),
    up(unit_id, depth) AS (
        SELECT unit_id, 0 FROM dev WHERE unit_id IS NOT NULL
        UNION ALL
        SELECT u.parent_id, up.depth + 1 FROM up JOIN vms.org_unit u ON u.id = up.unit_id
         WHERE u.parent_id IS NOT NULL AND up.depth < 64)
    SELECT coalesce((SELECT s.contract_id FROM vms.maintenance_scope s JOIN dev ON s.device_code = dev.code),
                    (SELECT s.contract_id FROM up JOIN vms.maintenance_scope s ON s.unit_id = up.unit_id
                      ORDER BY up.depth LIMIT 1)));
END $$;
COMMENT ON FUNCTION vms.contract_for(vms.gbcode) IS
    'the maintenance contract covering a device or channel: the device''s own, else its (channel''s, else device''s) unit''s or the nearest ancestor unit''s; NULL if none';

-- Catalog status history: every change of vms.channel_status.
CREATE TABLE vms.channel_status_event (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code    vms.gbcode NOT NULL,
    at      timestamptz NOT NULL,
    status  text NOT NULL
);
CREATE INDEX channel_status_event_code_idx ON vms.channel_status_event (code, at);
COMMENT ON TABLE vms.channel_status_event IS
    'every change of a channel''s catalog status (ON/OFF/VLOST/DEFECT/DEL) with its time, kept from vms.channel_status';

CREATE FUNCTION vms._channel_status_history() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO vms.channel_status_event (code, at, status)
        SELECT n.code, n.reported_at, n.status FROM new_rows n;
    ELSE
        INSERT INTO vms.channel_status_event (code, at, status)
        SELECT n.code, n.reported_at, n.status
          FROM new_rows n JOIN old_rows o ON o.code = n.code
         WHERE o.status IS DISTINCT FROM n.status;
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._channel_status_history() IS 'internal: appends catalog status changes to vms.channel_status_event';
CREATE TRIGGER channel_status_history_ins AFTER INSERT ON vms.channel_status
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._channel_status_history();
CREATE TRIGGER channel_status_history_upd AFTER UPDATE ON vms.channel_status
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._channel_status_history();

-- Periods in which a device's state is not known.
CREATE TABLE vms.availability_gap (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_code  vms.gbcode,
    from_ts      timestamptz NOT NULL,
    to_ts        timestamptz NOT NULL,
    reason       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (to_ts >= from_ts)
);
CREATE INDEX availability_gap_device_idx ON vms.availability_gap (device_code, from_ts);
COMMENT ON TABLE vms.availability_gap IS
    'periods in which a device''s state is unknown (SIP worker restart grace, recorded server outages); device_code NULL = every device';

-- The SIP worker marks a device offline at the end of its restart grace
-- when no keepalive came: the grace before that is unknown, not offline.
CREATE FUNCTION vms._availability_grace_gap() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    grace interval := coalesce(nullif(current_setting('vms.sip_restart_grace', true), ''), '180s')::interval;
BEGIN
    INSERT INTO vms.availability_gap (device_code, from_ts, to_ts, reason)
    SELECT n.device_code, n.at - grace, n.at, 'SIP worker restart grace (' || grace || '): state unknown'
      FROM new_rows n
     WHERE n.event = 'offline' AND n.cause LIKE '%restart grace%';
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._availability_grace_gap() IS
    'internal: an offline transition at the end of the SIP restart grace records the grace as an unknown period';
CREATE TRIGGER device_event_grace_gap AFTER INSERT ON vms.device_event
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._availability_grace_gap();

CREATE FUNCTION vms.availability_gap_add(from_ts timestamptz, to_ts timestamptz, reason text,
                                         device vms.gbcode DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    gap_id bigint;
BEGIN
    PERFORM vms._require_reason(reason, 'an availability gap');
    IF from_ts IS NULL OR to_ts IS NULL OR to_ts < from_ts THEN
        RAISE EXCEPTION 'an availability gap needs from_ts <= to_ts'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('to_ts is %s before from_ts.', from_ts - to_ts),
                  HINT = 'Give the start and the end of the period whose state is unknown.';
    END IF;
    INSERT INTO vms.availability_gap (device_code, from_ts, to_ts, reason)
    VALUES (device, availability_gap_add.from_ts, availability_gap_add.to_ts, reason)
    RETURNING id INTO gap_id;
    RETURN gap_id;
END $$;
COMMENT ON FUNCTION vms.availability_gap_add(timestamptz, timestamptz, text, vms.gbcode) IS
    'record a period whose state is unknown (a server outage: device NULL = every device); excluded from availability';

CREATE FUNCTION vms._mr_seconds(m tstzmultirange) RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(sum(extract(epoch FROM upper(r) - lower(r)))::float8, 0) FROM unnest(m) r
$$;
COMMENT ON FUNCTION vms._mr_seconds(tstzmultirange) IS 'internal: the length in seconds of a bounded multirange';

-- A state's segments: from each event to the next one of the same subject
-- (or the end); the last event before the period carries its state in.
-- Returns, per subject, the online and offline time within the period (gaps
-- removed) and the outages that began in it.
CREATE FUNCTION vms._availability_ranges(p_from timestamptz, p_to timestamptz, p_kind text)
    RETURNS TABLE (code vms.gbcode, period tstzmultirange, online tstzmultirange, offline tstzmultirange,
                   offline_events integer)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    t timestamptz := least(p_to, now());
BEGIN
    IF p_kind NOT IN ('device', 'channel') THEN
        RAISE EXCEPTION 'availability subjects are devices or channels, not "%"', p_kind
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use device or channel.';
    END IF;
    IF p_from IS NULL OR p_to IS NULL THEN
        RAISE EXCEPTION 'an availability period needs both ends'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Give both ends of the period.';
    END IF;
    IF t < p_from THEN
        t := p_from;   -- an empty period: every subject, no time
    END IF;
    RETURN QUERY
    WITH dev_ev AS (
        SELECT x.device_code, x.at, x.up, x.id FROM (
            SELECT e.device_code, e.at, e.event = 'online' AS up, e.id
              FROM vms.device_event e
             WHERE e.event IN ('online', 'offline') AND e.at >= p_from AND e.at < t
            UNION ALL
            SELECT l.device_code, l.at, l.up, l.id
              FROM vms.device d
             CROSS JOIN LATERAL (SELECT e.device_code, e.at, e.event = 'online' AS up, e.id
                                   FROM vms.device_event e
                                  WHERE e.device_code = d.code AND e.event IN ('online', 'offline') AND e.at < p_from
                                  ORDER BY e.at DESC, e.id DESC LIMIT 1) l) x),
    dev_seg AS (
        SELECT s.device_code, s.up,
               tstzrange(s.at, coalesce(lead(s.at) OVER (PARTITION BY s.device_code ORDER BY s.at, s.id), t)) AS r
          FROM dev_ev s),
    dev AS (
        SELECT d.code,
               coalesce(range_agg(s.r) FILTER (WHERE s.up), '{}') AS up_mr,
               coalesce(range_agg(s.r) FILTER (WHERE NOT s.up), '{}') AS down_mr,
               coalesce((SELECT range_agg(tstzrange(g.from_ts, g.to_ts)) FROM vms.availability_gap g
                          WHERE (g.device_code = d.code OR g.device_code IS NULL)
                            AND g.to_ts > p_from AND g.from_ts < t), '{}') AS gap_mr
          FROM vms.device d LEFT JOIN dev_seg s ON s.device_code = d.code
         GROUP BY d.code),
    -- channels: catalog status and stream results as 'bad' segments
    ch_ev AS (
        SELECT x.code, x.at, x.bad, x.src, x.id FROM (
            SELECT e.code, e.at, e.status <> 'ON' AS bad, 1 AS src, e.id
              FROM vms.channel_status_event e WHERE p_kind = 'channel' AND e.at >= p_from AND e.at < t
            UNION ALL
            SELECT l.code, l.at, l.bad, 1, l.id
              FROM vms.channel c
             CROSS JOIN LATERAL (SELECT e.code, e.at, e.status <> 'ON' AS bad, e.id FROM vms.channel_status_event e
                                  WHERE e.code = c.code AND e.at < p_from ORDER BY e.at DESC, e.id DESC LIMIT 1) l
             WHERE p_kind = 'channel'
            UNION ALL
            SELECT q.channel_code, q.at, NOT q.stream_ok, 2, q.id
              FROM vms.quality_result q WHERE p_kind = 'channel' AND q.at >= p_from AND q.at < t
            UNION ALL
            SELECT l.channel_code, l.at, l.bad, 2, l.id
              FROM vms.channel c
             CROSS JOIN LATERAL (SELECT q.channel_code, q.at, NOT q.stream_ok AS bad, q.id FROM vms.quality_result q
                                  WHERE q.channel_code = c.code AND q.at < p_from ORDER BY q.at DESC, q.id DESC LIMIT 1) l
             WHERE p_kind = 'channel') x),
    ch_seg AS (
        SELECT s.code, s.bad,
               tstzrange(s.at, coalesce(lead(s.at) OVER (PARTITION BY s.code, s.src ORDER BY s.at, s.id), t)) AS r
          FROM ch_ev s),
    ch_bad AS (
        SELECT s.code, range_agg(s.r) AS bad_mr FROM ch_seg s WHERE s.bad GROUP BY s.code),
    subj AS (
        SELECT d.code, d.up_mr, d.down_mr, d.gap_mr FROM dev d WHERE p_kind = 'device'
        UNION ALL
        SELECT c.code, d.up_mr - coalesce(b.bad_mr, '{}'),
               d.down_mr + (d.up_mr * coalesce(b.bad_mr, '{}')), d.gap_mr
          FROM vms.channel c JOIN dev d ON d.code = c.device_code
          LEFT JOIN ch_bad b ON b.code = c.code
         WHERE p_kind = 'channel'),
    per AS (SELECT tstzmultirange(tstzrange(p_from, t)) AS p)
    SELECT s.code, per.p,
           (s.up_mr - s.gap_mr) * per.p,
           (s.down_mr - s.gap_mr) * per.p,
           (SELECT count(*)::int FROM unnest(s.down_mr) r WHERE lower(r) >= p_from AND lower(r) < t)
      FROM subj s, per;
END $$;
COMMENT ON FUNCTION vms._availability_ranges(timestamptz, timestamptz, text) IS
    'internal: per device or channel, the period, its online and offline time (unknown gaps removed) and the outages that began in it';

CREATE FUNCTION vms.availability_intervals(from_ts timestamptz, to_ts timestamptz, kind text DEFAULT 'device')
    RETURNS TABLE (code text, state text, from_ts timestamptz, to_ts timestamptz)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT a.code::text, s.state, lower(s.r), upper(s.r)
      FROM vms._availability_ranges(availability_intervals.from_ts, availability_intervals.to_ts, kind) a
     CROSS JOIN LATERAL (
         SELECT 'online' AS state, r FROM unnest(a.online) r
         UNION ALL SELECT 'offline', r FROM unnest(a.offline) r
         UNION ALL SELECT 'unknown', r FROM unnest(a.period - a.online - a.offline) r) s
     ORDER BY 1, 3
$$;
COMMENT ON FUNCTION vms.availability_intervals(timestamptz, timestamptz, text) IS
    'the online, offline and unknown intervals of every device (kind device) or channel (kind channel) in [from_ts, least(to_ts, now())): gap-free, non-overlapping';

CREATE FUNCTION vms.availability(from_ts timestamptz, to_ts timestamptz, group_by text DEFAULT 'unit')
    RETURNS TABLE (group_key text, group_name text, online_ratio float8, offline_seconds float8,
                   offline_events integer, online_seconds float8, unknown_seconds float8, members integer)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
BEGIN
    IF group_by IS NULL OR group_by NOT IN ('device', 'channel', 'unit', 'region', 'contractor') THEN
        RAISE EXCEPTION 'availability cannot be grouped by "%"', group_by
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Groups are devices, channels, units, regions (civil codes) and maintenance contractors.',
                  HINT = 'Use device, channel, unit, region or contractor.';
    END IF;
    RETURN QUERY
    -- seconds summed in line (a function call per multirange cost more than the rest)
    WITH s AS (
        SELECT a.code, a.offline_events AS ev,
               coalesce((SELECT sum(extract(epoch FROM upper(r) - lower(r))) FROM unnest(a.online) r), 0)::float8 AS on_s,
               coalesce((SELECT sum(extract(epoch FROM upper(r) - lower(r))) FROM unnest(a.offline) r), 0)::float8 AS off_s,
               greatest(extract(epoch FROM least(availability.to_ts, now()) - availability.from_ts), 0)::float8 AS per_s
          FROM vms._availability_ranges(availability.from_ts, availability.to_ts,
                                        CASE WHEN group_by = 'device' THEN 'device' ELSE 'channel' END) a),
    m AS (SELECT s.code, s.on_s, s.off_s, s.per_s - s.on_s - s.off_s AS unk_s, s.ev FROM s),
    g AS (
        SELECT CASE group_by
                   WHEN 'device' THEN d.code::text
                   WHEN 'channel' THEN c.code::text
                   WHEN 'unit' THEN coalesce(c.unit_id, d.unit_id)::text
                   WHEN 'region' THEN coalesce(c.civil_code, d.civil_code)
                   ELSE k.contractor END AS key,
               CASE group_by
                   WHEN 'device' THEN d.name
                   WHEN 'channel' THEN c.name
                   WHEN 'unit' THEN (SELECT u.name FROM vms.org_unit u WHERE u.id = coalesce(c.unit_id, d.unit_id))
                   WHEN 'region' THEN (SELECT r.name FROM vms.region r WHERE r.civil_code = coalesce(c.civil_code, d.civil_code))
                   ELSE k.contractor END AS name,
               m.*
          FROM m
          LEFT JOIN vms.channel c ON group_by <> 'device' AND c.code = m.code
          JOIN vms.device d ON d.code = coalesce(c.device_code, m.code)
          LEFT JOIN LATERAL (SELECT k.contractor FROM vms.maintenance_contract k
                              WHERE group_by = 'contractor' AND k.id = vms.contract_for(m.code)) k ON true)
    SELECT g.key, min(g.name), sum(g.on_s) / nullif(sum(g.on_s) + sum(g.off_s), 0),
           sum(g.off_s), sum(g.ev)::int, sum(g.on_s), sum(g.unk_s), count(*)::int
      FROM g GROUP BY g.key ORDER BY g.key;
END $$;
COMMENT ON FUNCTION vms.availability(timestamptz, timestamptz, text) IS
    'online rate (在线率) and offline duration (离线时长) in [from_ts, least(to_ts, now())) per device, channel, unit, region or contractor: online_ratio = online / (online + offline) seconds summed over the members (channels for unit, region and contractor), unknown time excluded; offline_events = outages that began in the period; NULL ratio when nothing is known';
-- Alarms that follow the network: a device or channel going offline raises
-- an alarm (fault_type 'offline', source 'sip') at a level by device type,
-- coming back clears it with the reason; while a device is offline its
-- channels' own offline and stream alarms are suppressed under its alarm
-- (root cause); masks (屏蔽) record alarms without notifying them; response,
-- plan and fix deadlines per level and per maintenance contract; what is
-- overdue, and escalation when a deadline passes.

-- Level by fault and GB/T 28181 device type (digits 11-13 of the code); the
-- row without a type is the fault's default.
CREATE TABLE vms.alarm_rule (
    fault_type  text NOT NULL,
    gb_type     integer,
    level       smallint NOT NULL REFERENCES vms.alarm_level (level)
);
CREATE UNIQUE INDEX alarm_rule_idx ON vms.alarm_rule (fault_type, coalesce(gb_type, -1));
INSERT INTO vms.alarm_rule (fault_type, gb_type, level)
SELECT 'offline', t, 1 FROM unnest(ARRAY[200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211,
                                         500, 501, 502, 503, 505]) t
UNION ALL SELECT 'offline', t, 2 FROM unnest(ARRAY[111, 118, 130]) t
UNION ALL SELECT 'offline', NULL, 3;
COMMENT ON TABLE vms.alarm_rule IS
    'alarm level per fault type and GB/T 28181 device type (NULL type: the default); offline: platforms and servers I, DVR/NVR/HVR II, cameras and the rest III';

CREATE FUNCTION vms.alarm_level_for(fault_type text, code vms.gbcode) RETURNS smallint
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    RETURN coalesce((SELECT r.level FROM vms.alarm_rule r
                      WHERE r.fault_type = alarm_level_for.fault_type AND r.gb_type = vms.gbcode_type(alarm_level_for.code)),
                    (SELECT r.level FROM vms.alarm_rule r
                      WHERE r.fault_type = alarm_level_for.fault_type AND r.gb_type IS NULL),
                    3)::smallint;
END $$;
COMMENT ON FUNCTION vms.alarm_level_for(text, vms.gbcode) IS
    'the level of a fault of a device or channel: vms.alarm_rule for its type, else the fault''s default, else III';

-- Deadlines per contract and level; a NULL column takes the level's default.
CREATE TABLE vms.contract_deadline (
    contract_id     bigint NOT NULL REFERENCES vms.maintenance_contract (id) ON DELETE CASCADE,
    level           smallint NOT NULL REFERENCES vms.alarm_level (level),
    respond_within  interval,
    plan_within     interval,
    fix_within      interval,
    PRIMARY KEY (contract_id, level)
);
COMMENT ON TABLE vms.contract_deadline IS
    'response, plan and fix deadlines a maintenance contract sets per alarm level (NULL: the level''s default in vms.alarm_level)';

CREATE FUNCTION vms.alarm_deadlines(code vms.gbcode, level smallint)
    RETURNS TABLE (contract_id bigint, respond_within interval, plan_within interval, fix_within interval)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    k bigint := vms.contract_for(alarm_deadlines.code);
BEGIN
    RETURN QUERY
    SELECT k, coalesce(cd.respond_within, l.respond_within), coalesce(cd.plan_within, l.plan_within),
           coalesce(cd.fix_within, l.fix_within)
      FROM vms.alarm_level l
      LEFT JOIN vms.contract_deadline cd ON cd.contract_id = k AND cd.level = l.level
     WHERE l.level = alarm_deadlines.level;
END $$;
COMMENT ON FUNCTION vms.alarm_deadlines(vms.gbcode, smallint) IS
    'the deadlines an alarm of this level on this code gets: its maintenance contract''s, else the level''s defaults';

-- Masks (屏蔽): scope x fault types x time window.
CREATE TABLE vms.alarm_mask (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL,
    scope        jsonb NOT NULL,
    fault_types  text[],
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz,
    reason       text NOT NULL,
    created_by   text NOT NULL DEFAULT session_user,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at IS NULL OR ends_at > starts_at)
);
COMMENT ON TABLE vms.alarm_mask IS
    'alarm masks (屏蔽) for planned work and known faults: scope (regions, units, catalog_nodes, tags, codes), fault types (NULL: all), window [starts_at, ends_at); alarms raised under one are recorded, not notified';

CREATE FUNCTION vms.alarm_mask_covers(scope jsonb, code vms.gbcode) RETURNS boolean
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    WITH RECURSIVE subj AS (
        SELECT ch.code AS chan, ch.device_code AS dev, coalesce(ch.civil_code, d.civil_code) AS civil,
               coalesce(ch.unit_id, d.unit_id) AS unit
          FROM vms.channel ch JOIN vms.device d ON d.code = ch.device_code WHERE ch.code = alarm_mask_covers.code
        UNION ALL
        SELECT NULL, d.code, d.civil_code, d.unit_id FROM vms.device d WHERE d.code = alarm_mask_covers.code),
    units(id, depth) AS (
        SELECT s.unit, 0 FROM subj s WHERE s.unit IS NOT NULL
        UNION ALL
        SELECT u.parent_id, units.depth + 1 FROM units JOIN vms.org_unit u ON u.id = units.id
         WHERE u.parent_id IS NOT NULL AND units.depth < 64),
    chans AS (
        SELECT s.chan AS code FROM subj s WHERE s.chan IS NOT NULL
        UNION
        SELECT ch.code FROM subj s JOIN vms.channel ch ON ch.device_code = s.dev WHERE s.chan IS NULL)
    SELECT EXISTS (SELECT 1 FROM subj s, jsonb_array_elements_text(coalesce(scope -> 'codes', '[]')) x
                    WHERE x IN (s.chan::text, s.dev::text))
        OR EXISTS (SELECT 1 FROM subj s, jsonb_array_elements_text(coalesce(scope -> 'regions', '[]')) r
                    WHERE s.civil LIKE r || '%')
        OR EXISTS (SELECT 1 FROM units, jsonb_array_elements_text(coalesce(scope -> 'units', '[]')) u
                    WHERE units.id::text = u)
        OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(coalesce(scope -> 'catalog_nodes', '[]')) n
                    CROSS JOIN LATERAL vms.catalog_subtree(n::vms.gbcode) t
                    JOIN vms.catalog_member m ON m.node_code = t JOIN chans ON chans.code = m.channel_code)
        OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(coalesce(scope -> 'tags', '[]')) g
                    CROSS JOIN LATERAL vms.tag_subtree(g::bigint) t
                    JOIN vms.channel_tag ct ON ct.tag_id = t JOIN chans ON chans.code = ct.channel_code)
$$;
COMMENT ON FUNCTION vms.alarm_mask_covers(jsonb, vms.gbcode) IS
    'whether a mask scope covers a device or channel: codes (the device or channel, or a channel''s device), regions (civil-code prefixes), units (with sub-units), catalog_nodes and tags (subtrees; a device through any of its channels)';

CREATE FUNCTION vms.alarm_mask_for(code vms.gbcode, fault_type text, at timestamptz DEFAULT now()) RETURNS bigint
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    RETURN (SELECT m.id FROM vms.alarm_mask m
             WHERE m.starts_at <= alarm_mask_for.at AND (m.ends_at IS NULL OR alarm_mask_for.at < m.ends_at)
               AND (m.fault_types IS NULL OR alarm_mask_for.fault_type = ANY (m.fault_types))
               AND vms.alarm_mask_covers(m.scope, alarm_mask_for.code)
             ORDER BY m.id LIMIT 1);
END $$;
COMMENT ON FUNCTION vms.alarm_mask_for(vms.gbcode, text, timestamptz) IS 'the first mask in force at a time for a code and fault type; NULL if none';

CREATE FUNCTION vms.alarm_mask_add(name text, scope jsonb, fault_types text[], starts_at timestamptz,
                                   ends_at timestamptz, reason text) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    bad text;
    mask_id bigint;
BEGIN
    PERFORM vms._require_reason(reason, 'an alarm mask');
    IF jsonb_typeof(scope) IS DISTINCT FROM 'object' OR scope = '{}' THEN
        RAISE EXCEPTION 'an alarm mask needs a scope'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'The scope must be a non-empty JSON object.',
                  HINT = 'Use keys regions, units, catalog_nodes, tags, codes, each an array.';
    END IF;
    SELECT k INTO bad FROM jsonb_each(scope) e(k, v)
     WHERE k NOT IN ('regions', 'units', 'catalog_nodes', 'tags', 'codes') OR jsonb_typeof(v) <> 'array' LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'alarm mask scope key "%" is unknown or not an array', bad
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use keys regions, units, catalog_nodes, tags, codes, each an array.';
    END IF;
    PERFORM n::vms.gbcode FROM jsonb_array_elements_text(coalesce(scope -> 'catalog_nodes', '[]')) n;
    SELECT g INTO bad FROM jsonb_array_elements_text(coalesce(scope -> 'tags', '[]')) g WHERE g !~ '^[0-9]{1,18}$' LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'alarm mask tag "%" is not a tag id', bad USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF starts_at IS NULL OR (ends_at IS NOT NULL AND ends_at <= starts_at) THEN
        RAISE EXCEPTION 'an alarm mask needs a window that starts before it ends'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Give starts_at, and ends_at later (or NULL: until removed).';
    END IF;
    INSERT INTO vms.alarm_mask (name, scope, fault_types, starts_at, ends_at, reason)
    VALUES (alarm_mask_add.name, scope, fault_types, starts_at, ends_at, reason) RETURNING id INTO mask_id;
    RETURN mask_id;
END $$;
COMMENT ON FUNCTION vms.alarm_mask_add(text, jsonb, text[], timestamptz, timestamptz, text) IS
    'mask alarms (屏蔽) in a scope, for fault types (NULL: all), in [starts_at, ends_at), with a reason';

-- Root cause: a channel's offline or stream fault while its device has an
-- open offline alarm.
CREATE FUNCTION vms.alarm_root_for(code vms.gbcode, fault_type text) RETURNS bigint
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    IF alarm_root_for.fault_type NOT IN ('offline', 'stream') THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT a.id FROM vms.channel ch
              JOIN vms.alarm a ON a.code = ch.device_code AND a.fault_type = 'offline' AND a.state <> 'cleared'
             WHERE ch.code = alarm_root_for.code AND ch.device_code <> ch.code);
END $$;
COMMENT ON FUNCTION vms.alarm_root_for(vms.gbcode, text) IS
    'the open offline alarm of a channel''s device, for the channel''s offline and stream faults (root cause); NULL otherwise';

CREATE FUNCTION vms.alarm_plan(alarm_id bigint, note text) RETURNS boolean
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    a vms.alarm;
BEGIN
    UPDATE vms.alarm SET planned_at = now() WHERE id = alarm_id AND planned_at IS NULL AND state <> 'cleared'
    RETURNING * INTO a;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO vms.alarm_event (alarm_id, kind, level, notify, detail)
    VALUES (a.id, 'planned', a.level, false, jsonb_strip_nulls(jsonb_build_object('note', note)));
    RETURN true;
END $$;
COMMENT ON FUNCTION vms.alarm_plan(bigint, text) IS
    'record the repair plan of an open alarm (meets its plan deadline; opening a work order does it too); false if planned already or cleared';

-- The network raises and clears: device transitions from the SIP worker,
-- channel catalog status changes.
CREATE FUNCTION vms._alarm_device_events() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    e record;
BEGIN
    FOR e IN SELECT n.device_code, n.at, n.event, n.cause, n.address FROM new_rows n
              WHERE n.event IN ('online', 'offline') ORDER BY n.at, n.id LOOP
        IF e.event = 'offline' THEN
            PERFORM vms.alarm_raise(e.device_code, 'offline', vms.alarm_level_for('offline', e.device_code), 'sip',
                                    jsonb_strip_nulls(jsonb_build_object('cause', e.cause, 'at', e.at,
                                                                         'address', e.address)));
        ELSE
            PERFORM vms.alarm_clear(e.device_code, 'offline', 'back online: ' || coalesce(e.cause, 'device reported'));
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._alarm_device_events() IS
    'internal: a device going offline raises its offline alarm (level by type), coming back online clears it with the cause';
CREATE TRIGGER device_event_alarm AFTER INSERT ON vms.device_event
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._alarm_device_events();

CREATE FUNCTION vms._alarm_channel_status() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    e record;
BEGIN
    FOR e IN SELECT n.code, n.status FROM new_rows n ORDER BY n.at, n.id LOOP
        IF e.status = 'OFF' THEN
            PERFORM vms.alarm_raise(e.code, 'offline', vms.alarm_level_for('offline', e.code), 'sip',
                                    jsonb_build_object('status', e.status));
        ELSIF e.status IN ('ON', 'DEL') THEN
            PERFORM vms.alarm_clear(e.code, 'offline',
                                    CASE e.status WHEN 'ON' THEN 'catalog status ON' ELSE 'channel deleted by its device' END);
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._alarm_channel_status() IS
    'internal: a channel its catalog reports OFF raises its offline alarm, ON (or DEL) clears it (VLOST and DEFECT are the SIP worker''s video_loss and device_defect alarms)';
CREATE TRIGGER channel_status_event_alarm AFTER INSERT ON vms.channel_status_event
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._alarm_channel_status();

-- Deadlines passed: open alarms, not masked, not suppressed.
CREATE VIEW vms.alarm_overdue AS
SELECT a.id AS alarm_id, a.code, a.fault_type, a.level, a.source, d.deadline, d.due_at, now() - d.due_at AS overdue_by,
       a.contract_id, d.deadline = ANY (a.escalated) AS escalated
  FROM vms.alarm a
 CROSS JOIN LATERAL (VALUES ('respond', a.respond_by, a.acknowledged_at IS NULL),
                            ('plan', a.plan_by, a.planned_at IS NULL),
                            ('fix', a.fix_by, true)) d(deadline, due_at, pending)
 WHERE a.state <> 'cleared' AND d.pending AND d.due_at < now() AND a.mask_id IS NULL
   AND NOT EXISTS (SELECT 1 FROM vms.alarm r WHERE r.id = a.root_alarm_id AND r.state <> 'cleared');
COMMENT ON VIEW vms.alarm_overdue IS
    'open alarms past a deadline not met: respond (not acknowledged), plan (no plan or work order), fix (not cleared); masked and suppressed alarms excluded';

CREATE FUNCTION vms.alarm_escalate() RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    o record;
    n integer := 0;
    new_level smallint;
BEGIN
    FOR o IN SELECT v.alarm_id, v.deadline, v.due_at, v.level FROM vms.alarm_overdue v
              WHERE NOT v.escalated ORDER BY v.due_at, v.alarm_id LOOP
        UPDATE vms.alarm a SET level = greatest(a.level - 1, 1)::smallint, escalated = a.escalated || o.deadline
         WHERE a.id = o.alarm_id AND NOT o.deadline = ANY (a.escalated)
        RETURNING a.level INTO new_level;
        IF FOUND THEN
            INSERT INTO vms.alarm_event (alarm_id, kind, level, notify, detail)
            VALUES (o.alarm_id, 'escalated', new_level, true,
                    jsonb_build_object('deadline', o.deadline, 'due_at', o.due_at, 'from_level', o.level));
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.alarm_escalate() IS
    'escalate every alarm past a deadline not yet escalated for it: one level up (to I at most) and a notify event; returns how many; run it every minute';
-- Work orders (派工单): an alarm dispatched to a maintainer, through
--   open -> accepted (接单) -> on_site (到场) -> resolved (处理完成) -> confirmed (确认)
-- and back from resolved to accepted when the fix is rejected.  Every
-- transition keeps who, when and a note; the KPIs (response, on-site and
-- resolution times) come from those rows.

CREATE TABLE vms.work_order (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id    bigint NOT NULL REFERENCES vms.alarm (id) ON DELETE CASCADE,
    assignee    text NOT NULL,
    state       text NOT NULL DEFAULT 'open'
                CHECK (state IN ('open', 'accepted', 'on_site', 'resolved', 'confirmed')),
    opened_by   text NOT NULL DEFAULT session_user,
    opened_at   timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX work_order_alarm_idx ON vms.work_order (alarm_id) WHERE state <> 'confirmed';
COMMENT ON TABLE vms.work_order IS
    'work orders (派工单): an alarm dispatched to an assignee; states open, accepted (接单), on_site (到场), resolved (处理完成), confirmed (确认); one unconfirmed order per alarm';

CREATE TABLE vms.work_order_transition (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_order_id  bigint NOT NULL REFERENCES vms.work_order (id) ON DELETE CASCADE,
    from_state     text,
    to_state       text NOT NULL,
    actor          text NOT NULL DEFAULT session_user,
    at             timestamptz NOT NULL DEFAULT now(),
    note           text
);
CREATE INDEX work_order_transition_order_idx ON vms.work_order_transition (work_order_id, id);
COMMENT ON TABLE vms.work_order_transition IS
    'every work order transition: from and to state, who, when, note (a rejection is resolved -> accepted)';

CREATE FUNCTION vms.work_order_open(alarm_id bigint, assignee text) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    a vms.alarm;
    order_id bigint;
BEGIN
    IF coalesce(btrim(assignee), '') = '' THEN
        RAISE EXCEPTION 'a work order needs an assignee' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Name the maintainer (or team) the order is dispatched to.';
    END IF;
    SELECT * INTO a FROM vms.alarm x WHERE x.id = work_order_open.alarm_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alarm % does not exist', alarm_id USING ERRCODE = 'no_data_found';
    END IF;
    IF a.state = 'cleared' THEN
        RAISE EXCEPTION 'alarm % is cleared: no work order for it', alarm_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Alarm %s (%s on %s) was cleared: %s.', a.id, a.fault_type, a.code,
                                  coalesce(a.clear_reason, 'no reason given')),
                  HINT = 'Open work orders for active alarms.';
    END IF;
    IF EXISTS (SELECT 1 FROM vms.work_order w WHERE w.alarm_id = a.id AND w.state <> 'confirmed') THEN
        RAISE EXCEPTION 'alarm % has a work order already', alarm_id
            USING ERRCODE = 'unique_violation',
                  DETAIL = format('Work order %s is %s.',
                                  (SELECT w.id FROM vms.work_order w WHERE w.alarm_id = a.id AND w.state <> 'confirmed'),
                                  (SELECT w.state FROM vms.work_order w WHERE w.alarm_id = a.id AND w.state <> 'confirmed')),
                  HINT = 'Follow that order, or reassign it.';
    END IF;
    INSERT INTO vms.work_order (alarm_id, assignee) VALUES (a.id, btrim(assignee)) RETURNING id INTO order_id;
    INSERT INTO vms.work_order_transition (work_order_id, from_state, to_state, note)
    VALUES (order_id, NULL, 'open', 'dispatched to ' || btrim(assignee));
    -- dispatching is the repair plan
    PERFORM vms.alarm_plan(a.id, format('work order %s to %s', order_id, btrim(assignee)));
    RETURN order_id;
END $$;
COMMENT ON FUNCTION vms.work_order_open(bigint, text) IS
    'dispatch an active alarm to an assignee: a work order in state open (meets the alarm''s plan deadline); returns its id';

CREATE FUNCTION vms.work_order_move(order_id bigint, to_state text, note text DEFAULT NULL) RETURNS text
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    w vms.work_order;
    a vms.alarm;
    allowed text[];
BEGIN
    SELECT * INTO w FROM vms.work_order x WHERE x.id = order_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'work order % does not exist', order_id USING ERRCODE = 'no_data_found';
    END IF;
    allowed := CASE w.state WHEN 'open' THEN '{accepted}' WHEN 'accepted' THEN '{on_site}'
                            WHEN 'on_site' THEN '{resolved}' WHEN 'resolved' THEN '{confirmed,accepted}'
                            ELSE '{}' END;
    IF to_state IS NULL OR NOT to_state = ANY (allowed) THEN
        RAISE EXCEPTION 'work order % cannot go from % to %', order_id, w.state, coalesce(to_state, 'nothing')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = CASE WHEN cardinality(allowed) = 0 THEN 'A confirmed order is closed.'
                                ELSE format('From %s it can go to %s.', w.state, array_to_string(allowed, ' or ')) END,
                  HINT = 'The states run open, accepted, on_site, resolved, confirmed; a resolved order can be rejected back to accepted.';
    END IF;
    IF w.state = 'resolved' AND to_state = 'accepted' AND coalesce(btrim(note), '') = '' THEN
        RAISE EXCEPTION 'rejecting work order % needs a reason', order_id
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Say what is still wrong in the note.';
    END IF;
    IF to_state = 'confirmed' THEN
        SELECT * INTO a FROM vms.alarm x WHERE x.id = w.alarm_id;
        IF a.state <> 'cleared' THEN
            RAISE EXCEPTION 'work order % cannot be confirmed while its alarm is active', order_id
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('Alarm %s (%s on %s, level %s) is %s.', a.id, a.fault_type, a.code, a.level, a.state),
                      HINT = 'Confirm once the alarm has cleared (the fault is gone), or reject the order back to accepted.';
        END IF;
    END IF;
    UPDATE vms.work_order SET state = to_state, updated_at = now() WHERE id = w.id;
    INSERT INTO vms.work_order_transition (work_order_id, from_state, to_state, note)
    VALUES (w.id, w.state, to_state, note);
    -- accepting is the response to the alarm
    IF to_state = 'accepted' AND w.state = 'open' THEN
        PERFORM vms.alarm_acknowledge(w.alarm_id);
    END IF;
    RETURN to_state;
END $$;
COMMENT ON FUNCTION vms.work_order_move(bigint, text, text) IS
    'move a work order: open -> accepted (acknowledges the alarm) -> on_site -> resolved -> confirmed (only once the alarm has cleared), or resolved -> accepted (a rejection, with a reason); who, when and note kept';

CREATE FUNCTION vms.work_order_accept(order_id bigint, note text DEFAULT NULL) RETURNS text
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms.work_order_move(order_id, 'accepted', note);
COMMENT ON FUNCTION vms.work_order_accept(bigint, text) IS 'accept (接单) an open work order';
CREATE FUNCTION vms.work_order_arrive(order_id bigint, note text DEFAULT NULL) RETURNS text
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms.work_order_move(order_id, 'on_site', note);
COMMENT ON FUNCTION vms.work_order_arrive(bigint, text) IS 'the assignee is on site (到场)';
CREATE FUNCTION vms.work_order_resolve(order_id bigint, note text DEFAULT NULL) RETURNS text
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms.work_order_move(order_id, 'resolved', note);
COMMENT ON FUNCTION vms.work_order_resolve(bigint, text) IS 'the assignee reports the fault fixed (处理完成)';
CREATE FUNCTION vms.work_order_confirm(order_id bigint, note text DEFAULT NULL) RETURNS text
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms.work_order_move(order_id, 'confirmed', note);
COMMENT ON FUNCTION vms.work_order_confirm(bigint, text) IS 'confirm (确认) a resolved work order; refused while its alarm is active';
CREATE FUNCTION vms.work_order_reject(order_id bigint, note text) RETURNS text
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms.work_order_move(order_id, 'accepted', note);
COMMENT ON FUNCTION vms.work_order_reject(bigint, text) IS 'reject a resolved work order back to accepted, with the reason';

-- KPIs from the transitions: response = first acceptance, on site = first
-- arrival, resolution = last resolution, each counted from the opening.
CREATE VIEW vms.work_order_kpi AS
SELECT w.id AS work_order_id, w.alarm_id, w.assignee, w.state, a.code, a.fault_type, a.level, a.contract_id,
       t.opened_at, t.accepted_at, t.on_site_at, t.resolved_at, t.confirmed_at, t.rejections,
       extract(epoch FROM t.accepted_at - t.opened_at)::float8 AS response_seconds,
       extract(epoch FROM t.on_site_at - t.opened_at)::float8 AS on_site_seconds,
       extract(epoch FROM t.resolved_at - t.opened_at)::float8 AS resolution_seconds,
       t.accepted_at <= a.respond_by AS responded_in_time,
       coalesce(a.cleared_at, t.resolved_at) <= a.fix_by AS fixed_in_time
  FROM vms.work_order w
  JOIN vms.alarm a ON a.id = w.alarm_id
 CROSS JOIN LATERAL (
     SELECT min(x.at) FILTER (WHERE x.to_state = 'open') AS opened_at,
            min(x.at) FILTER (WHERE x.to_state = 'accepted' AND x.from_state = 'open') AS accepted_at,
            min(x.at) FILTER (WHERE x.to_state = 'on_site') AS on_site_at,
            max(x.at) FILTER (WHERE x.to_state = 'resolved') AS resolved_at,
            max(x.at) FILTER (WHERE x.to_state = 'confirmed') AS confirmed_at,
            count(*) FILTER (WHERE x.from_state = 'resolved' AND x.to_state = 'accepted')::int AS rejections
       FROM vms.work_order_transition x WHERE x.work_order_id = w.id) t;
COMMENT ON VIEW vms.work_order_kpi IS
    'per work order: opening, first acceptance, first arrival, last resolution, confirmation, rejections; response, on-site and resolution seconds from the opening; whether the alarm''s response and fix deadlines were met';
-- GA/T 1400 server side (issue 18): capture devices and lower platforms
-- register with vms (HTTP Digest), keep alive, and post list objects of
-- records with inline images.  The "vms viid-server" worker serves HTTP
-- (libmicrohttpd) and hands each complete request to
-- vms._viid_server_request; records are stored in vms.viid_record and
-- images in vms.viid_image, both partitioned by month of capture.

-- Clients: digest HA1 only (as vms.device_credential), never the password.
CREATE TABLE vms.viid_client (
    client_id   vms.gbcode PRIMARY KEY,
    realm       text NOT NULL,
    ha1_md5     text NOT NULL,
    ha1_sha256  text NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    options     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(options) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON vms.viid_client FROM PUBLIC;
COMMENT ON TABLE vms.viid_client IS
    'GA/T 1400 clients (capture devices, lower view libraries) that may post to the viid-server worker; digest HA1 values only, no passwords';
COMMENT ON COLUMN vms.viid_client.options IS
    'timezone (Asia/Shanghai) of the client''s local times, template or templates {kind: name} (inbound mapping through vms.viid_map), known_devices_only (false), max_future_s (300), keepalive_timeout_s (180), share_scope (what GET /VIID/APEs, Tollgates, Lanes show: an inspection scope; none: nothing)';

CREATE TABLE vms.viid_client_session (
    client_id          vms.gbcode PRIMARY KEY REFERENCES vms.viid_client (client_id) ON DELETE CASCADE,
    state              text NOT NULL DEFAULT 'unregistered' CHECK (state IN ('registered', 'unregistered')),
    registered_at      timestamptz,
    last_keepalive_at  timestamptz,
    remote_addr        text,
    requests           bigint NOT NULL DEFAULT 0,
    records            bigint NOT NULL DEFAULT 0,
    rejected           bigint NOT NULL DEFAULT 0,
    last_event_at      timestamptz
);
COMMENT ON TABLE vms.viid_client_session IS 'per client: session state as the viid-server worker last saw it, and what it posted';

CREATE TABLE vms.viid_record (
    kind         text NOT NULL,
    object_id    text NOT NULL,
    device_id    text NOT NULL,
    captured_at  timestamptz NOT NULL,
    client_id    text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    images       integer NOT NULL DEFAULT 0,
    doc          jsonb NOT NULL,
    PRIMARY KEY (kind, object_id, captured_at)
) PARTITION BY RANGE (captured_at);
COMMENT ON TABLE vms.viid_record IS
    'GA/T 1400 records received by the viid-server worker, partitioned by month of capture (UTC); doc is the mapped document without image data';

CREATE TABLE vms.viid_image (
    kind         text NOT NULL,
    object_id    text NOT NULL,
    image_id     text NOT NULL,
    captured_at  timestamptz NOT NULL,
    type         text,
    format       text NOT NULL,
    bytes        integer NOT NULL,
    data         bytea NOT NULL,
    PRIMARY KEY (object_id, image_id, captured_at)
) PARTITION BY RANGE (captured_at);
COMMENT ON TABLE vms.viid_image IS
    'images of the received GA/T 1400 records (SubImageList, ImageListObject), partitioned like vms.viid_record';
-- JPEG and the like do not compress: stored out of line without trying
ALTER TABLE vms.viid_image ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE vms.viid_record_retention (
    kind        text PRIMARY KEY REFERENCES vms.viid_kind (kind),
    keep_days   integer NOT NULL CHECK (keep_days > 0),
    image_days  integer NOT NULL CHECK (image_days > 0)
);
INSERT INTO vms.viid_record_retention VALUES
    ('MotorVehicle', 90, 30), ('NonMotorVehicle', 90, 30), ('Person', 90, 30), ('Face', 90, 30), ('Image', 30, 30);
COMMENT ON TABLE vms.viid_record_retention IS 'how long received records and their images are kept, per kind (vms.viid_record_prune)';

-- Forwarding: received records go on to upstream view libraries (the push's
-- outbox, retries and dead letters), so that vms sits in a district-city
-- chain.  A record is queued once, when it is first stored: a client that
-- sends it again does not make it travel twice.
CREATE TABLE vms.viid_forward (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
    upstream    text NOT NULL REFERENCES vms.viid_upstream (name) ON DELETE CASCADE ON UPDATE CASCADE,
    kinds       text[] CHECK (kinds <@ ARRAY['MotorVehicle', 'NonMotorVehicle', 'Person', 'Face', 'Image']),
    clients     text[],
    device_prefixes text[],
    with_images boolean NOT NULL DEFAULT true,
    enabled     boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE vms.viid_forward IS
    'rules forwarding received GA/T 1400 records to an upstream: kinds, source clients and device code prefixes (NULL: any), with or without image data; never back to the library the record came from';

-- Subscriptions (cascade: an upper library subscribes, vms notifies).  The
-- notifications travel through the push's outbox to the upstream whose
-- base_url the subscription's ReceiveAddr starts with, so they share its
-- session, retries and dead letters.
INSERT INTO vms.viid_kind VALUES
    ('SubscribeNotification', '/VIID/SubscribeNotifications', 'SubscribeNotificationListObject',
     'SubscribeNotificationObject', '{NotificationID}');
CREATE TABLE vms.viid_subscription (
    subscribe_id     text PRIMARY KEY CHECK (subscribe_id ~ '^[0-9A-Za-z_.-]{1,64}$'),
    client_id        vms.gbcode NOT NULL REFERENCES vms.viid_client (client_id) ON DELETE CASCADE,
    upstream         text NOT NULL REFERENCES vms.viid_upstream (name) ON DELETE CASCADE ON UPDATE CASCADE,
    title            text,
    details          text[] NOT NULL,
    kinds            text[] NOT NULL,
    resource_prefixes text[],
    begin_time       timestamptz NOT NULL,
    end_time         timestamptz NOT NULL,
    receive_addr     text NOT NULL,
    report_interval  integer NOT NULL DEFAULT 0 CHECK (report_interval >= 0),
    state            text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'cancelled')),
    notifications    bigint NOT NULL DEFAULT 0,
    doc              jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    cancelled_at     timestamptz
);
COMMENT ON TABLE vms.viid_subscription IS
    'GA/T 1400 subscriptions of clients (POST/PUT/DELETE /VIID/Subscribes): SubscribeDetail codes and the record kinds they cover, ResourceURI as device code prefixes, BeginTime/EndTime, ReceiveAddr and the upstream delivering there, ReportInterval (s), notifications queued';

CREATE VIEW vms.viid_client_status AS
SELECT c.client_id, c.enabled, coalesce(s.state, 'unregistered') AS state,
       coalesce(s.state = 'registered'
                AND s.last_keepalive_at > now() - make_interval(secs => coalesce((c.options ->> 'keepalive_timeout_s')::int, 180)),
                false) AS online,
       s.registered_at, s.last_keepalive_at, s.remote_addr, coalesce(s.requests, 0) AS requests,
       coalesce(s.records, 0) AS records, coalesce(s.rejected, 0) AS rejected, s.last_event_at
  FROM vms.viid_client c LEFT JOIN vms.viid_client_session s USING (client_id);
COMMENT ON VIEW vms.viid_client_status IS
    'per GA/T 1400 client: registered or not, online (registered and a keepalive within keepalive_timeout_s), records stored and rejected';

CREATE FUNCTION vms.viid_client_add(client_id vms.gbcode, password text, options jsonb DEFAULT '{}')
    RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r text := coalesce(options ->> 'realm', nullif(current_setting('vms.viid_server_realm', true), ''), 'vms');
    who text := client_id::text;
BEGIN
    IF password IS NULL OR length(password) = 0 OR length(password) > 128 THEN
        RAISE EXCEPTION 'client password must have 1 to 128 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(options) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'options must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF options ? 'timezone' AND NOT EXISTS (SELECT FROM pg_catalog.pg_timezone_names WHERE name = options ->> 'timezone') THEN
        RAISE EXCEPTION 'time zone "%" is unknown', options ->> 'timezone' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO vms.viid_client AS c (client_id, realm, ha1_md5, ha1_sha256, options)
    VALUES (client_id, r, md5(who || ':' || r || ':' || password),
            encode(sha256(convert_to(who || ':' || r || ':' || password, 'UTF8')), 'hex'), options - 'realm')
    ON CONFLICT ON CONSTRAINT viid_client_pkey DO UPDATE
        SET realm = EXCLUDED.realm, ha1_md5 = EXCLUDED.ha1_md5, ha1_sha256 = EXCLUDED.ha1_sha256,
            options = EXCLUDED.options, enabled = true, updated_at = now();
END $$;
COMMENT ON FUNCTION vms.viid_client_add(vms.gbcode, text, jsonb) IS
    'add or replace a GA/T 1400 client: its digest HA1 (realm: options.realm, else vms.viid_server_realm) and options; the password is not stored';

CREATE FUNCTION vms.viid_client_drop(client_id vms.gbcode) RETURNS boolean
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    WITH d AS (DELETE FROM vms.viid_client c WHERE c.client_id = viid_client_drop.client_id RETURNING 1)
    SELECT count(*) > 0 FROM d
$$;
COMMENT ON FUNCTION vms.viid_client_drop(vms.gbcode) IS 'remove a GA/T 1400 client; its stored records stay';

-- The worker's cache of clients (digest checks run without SQL).
CREATE FUNCTION vms._viid_server_clients(realm text)
    RETURNS TABLE (client_id text, ha1_md5 text, options jsonb)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT c.client_id::text, c.ha1_md5, c.options FROM vms.viid_client c
     WHERE c.enabled AND c.realm = _viid_server_clients.realm ORDER BY 1
$$;
COMMENT ON FUNCTION vms._viid_server_clients(text) IS 'internal: enabled clients of a realm, for the viid-server worker''s digest checks';

-- Monthly partitions (UTC), made when the first record of a month arrives.
CREATE FUNCTION vms._viid_record_partition(at timestamptz) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    lo timestamptz := date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    hi timestamptz := (date_trunc('month', at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
    suffix text := to_char(at AT TIME ZONE 'UTC', 'YYYY"m"MM');
BEGIN
    IF to_regclass('vms.viid_record_' || suffix) IS NULL THEN
        EXECUTE format('CREATE TABLE vms.%I PARTITION OF vms.viid_record FOR VALUES FROM (%L) TO (%L)',
                       'viid_record_' || suffix, lo, hi);
        EXECUTE format('COMMENT ON TABLE vms.%I IS %L', 'viid_record_' || suffix,
                       'received GA/T 1400 records captured in ' || suffix || ' (UTC)');
    END IF;
    IF to_regclass('vms.viid_image_' || suffix) IS NULL THEN
        EXECUTE format('CREATE TABLE vms.%I PARTITION OF vms.viid_image FOR VALUES FROM (%L) TO (%L)',
                       'viid_image_' || suffix, lo, hi);
        EXECUTE format('COMMENT ON TABLE vms.%I IS %L', 'viid_image_' || suffix,
                       'images of received GA/T 1400 records captured in ' || suffix || ' (UTC)');
    END IF;
END $$;
COMMENT ON FUNCTION vms._viid_record_partition(timestamptz) IS 'internal: the monthly partitions of vms.viid_record and vms.viid_image holding a time';

-- What a byte string is, by its magic number: jpeg, png, gif, bmp, webp, else NULL.
CREATE FUNCTION vms._viid_image_format(data bytea) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE
        WHEN substr(data, 1, 3) = '\xffd8ff'::bytea THEN 'jpeg'
        WHEN substr(data, 1, 8) = '\x89504e470d0a1a0a'::bytea THEN 'png'
        WHEN substr(data, 1, 4) = '\x47494638'::bytea THEN 'gif'
        WHEN substr(data, 1, 2) = '\x424d'::bytea AND length(data) > 26 THEN 'bmp'
        WHEN substr(data, 1, 4) = '\x52494646'::bytea AND substr(data, 9, 4) = '\x57454250'::bytea THEN 'webp'
    END
$$;
COMMENT ON FUNCTION vms._viid_image_format(bytea) IS 'internal: image format by magic number (jpeg, png, gif, bmp, webp), NULL when not an image';

CREATE FUNCTION vms._viid_status(url text, code integer, string text, id text DEFAULT '') RETURNS jsonb
    LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('RequestURL', url, 'StatusCode', code::text, 'StatusString', string,
                              'Id', coalesce(id, ''), 'LocalTime', to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDDHH24MISS'))
$$;
COMMENT ON FUNCTION vms._viid_status(text, integer, text, text) IS 'internal: a GA/T 1400 ResponseStatusObject (LocalTime in China Standard Time)';

-- One record: validate, map, store with its images.  Raises with the reason
-- when the record is refused; returns false when it was stored before.
CREATE FUNCTION vms._viid_ingest_one(client text, k vms.viid_kind, item jsonb, copts jsonb) RETURNS boolean
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    doc jsonb := item;
    tmpl text := coalesce(copts -> 'templates' ->> k.kind, copts ->> 'template');
    tz text := coalesce(copts ->> 'timezone', 'Asia/Shanghai');
    oid text;
    dev text;
    ts text;
    at timestamptz;
    problems text[];
    imgs jsonb;
    img jsonb;
    n integer := 0;
    raw bytea;
    fmt text;
    iid text;
    stored_images jsonb := '[]';
    full_doc jsonb;
    f vms.viid_forward;
    sub vms.viid_subscription;
    sent_to text[] := '{}';
    nid text;
    id_len integer := CASE WHEN k.kind = 'Image' THEN 41 ELSE 48 END;
BEGIN
    IF jsonb_typeof(item) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'item is not a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tmpl IS NOT NULL THEN
        IF k.kind = 'Image' THEN
            doc := jsonb_set(doc, '{ImageInfo}', vms.viid_map(tmpl, coalesce(doc -> 'ImageInfo', '{}')));
        ELSE
            doc := vms.viid_map(tmpl, doc);
        END IF;
    END IF;
    oid := doc #>> k.id_path;
    problems := vms.viid_id_problems(oid);
    IF cardinality(problems) > 0 THEN
        RAISE EXCEPTION '% "%" is not valid: %', array_to_string(k.id_path, '.'), left(coalesce(oid, ''), 64),
            array_to_string(problems, '; ') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(oid) <> id_len THEN
        RAISE EXCEPTION '% "%" must have % digits', array_to_string(k.id_path, '.'), oid, id_len
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    dev := coalesce(CASE WHEN k.kind = 'Image' THEN doc -> 'ImageInfo' ->> 'DeviceID' ELSE doc ->> 'DeviceID' END, left(oid, 20));
    IF vms.gbcode_parse_error(dev) IS NOT NULL THEN
        RAISE EXCEPTION 'DeviceID "%" is not a device code: %', left(dev, 64), vms.gbcode_parse_error(dev)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce((copts ->> 'known_devices_only')::boolean, false)
       AND NOT EXISTS (SELECT FROM vms.channel c WHERE c.code = dev::vms.gbcode)
       AND NOT EXISTS (SELECT FROM vms.device d WHERE d.code = dev::vms.gbcode) THEN
        RAISE EXCEPTION 'DeviceID "%" is not in the ledger', dev USING ERRCODE = 'invalid_parameter_value';
    END IF;
    ts := coalesce(CASE WHEN k.kind = 'Image' THEN doc -> 'ImageInfo' ->> 'ShotTime' END,
                   doc ->> 'PassTime', doc ->> 'ShotTime', doc ->> 'AppearTime', doc ->> 'FaceAppearTime',
                   doc ->> 'PersonAppearTime', doc ->> 'LocationMarkTime', substr(oid, 23, 14));
    IF ts !~ '^[0-9]{14}$' THEN
        RAISE EXCEPTION 'capture time "%" is not yyyyMMddHHmmss', left(ts, 64) USING ERRCODE = 'invalid_datetime_format';
    END IF;
    BEGIN
        at := make_timestamptz(substr(ts, 1, 4)::int, substr(ts, 5, 2)::int, substr(ts, 7, 2)::int,
                               substr(ts, 9, 2)::int, substr(ts, 11, 2)::int, substr(ts, 13, 2)::int, tz);
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'capture time "%" is not a valid time', ts USING ERRCODE = 'invalid_datetime_format';
    END;
    IF at > now() + make_interval(secs => coalesce((copts ->> 'max_future_s')::int, 300)) THEN
        RAISE EXCEPTION 'capture time "%" is in the future', ts USING ERRCODE = 'invalid_datetime_format';
    END IF;

    full_doc := doc;
    PERFORM vms._viid_record_partition(at);
    IF k.kind = 'Image' THEN
        imgs := jsonb_build_array(jsonb_build_object('ImageID', oid, 'Type', doc -> 'ImageInfo' ->> 'Type',
                                                     'FileFormat', doc -> 'ImageInfo' ->> 'FileFormat', 'Data', doc -> 'Data'));
        doc := doc - 'Data';
    ELSE
        imgs := doc -> 'SubImageList' -> 'SubImageInfoObject';
        IF imgs IS NOT NULL AND jsonb_typeof(imgs) <> 'array' THEN
            imgs := jsonb_build_array(imgs);
        END IF;
    END IF;
    FOR img IN SELECT * FROM jsonb_array_elements(coalesce(imgs, '[]')) LOOP
        n := n + 1;
        iid := img ->> 'ImageID';
        IF k.kind <> 'Image' AND cardinality(vms.viid_id_problems(iid)) > 0 THEN
            RAISE EXCEPTION 'image % ImageID "%" is not valid: %', n, left(coalesce(iid, ''), 64),
                array_to_string(vms.viid_id_problems(iid), '; ') USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(img -> 'Data') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION 'image % has no Data', coalesce(iid, n::text) USING ERRCODE = 'invalid_parameter_value';
        END IF;
        BEGIN
            raw := decode(img ->> 'Data', 'base64');
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'image % Data is not base64', iid USING ERRCODE = 'invalid_parameter_value';
        END;
        fmt := vms._viid_image_format(raw);
        IF fmt IS NULL THEN
            RAISE EXCEPTION 'image % is not an image (JPEG, PNG, GIF, BMP or WebP)', iid USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO vms.viid_image (kind, object_id, image_id, captured_at, type, format, bytes, data)
        VALUES (k.kind, oid, iid, at, img ->> 'Type', fmt, length(raw), raw)
        ON CONFLICT DO NOTHING;
        stored_images := stored_images || (img - 'Data');
    END LOOP;
    IF k.kind <> 'Image' AND n > 0 THEN
        doc := jsonb_set(doc, '{SubImageList,SubImageInfoObject}', stored_images);
    END IF;
    INSERT INTO vms.viid_record (kind, object_id, device_id, captured_at, client_id, images, doc)
    VALUES (k.kind, oid, dev, at, client, n, doc)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;           -- stored before: answered OK, not forwarded again
    END IF;
    FOR f IN SELECT r.* FROM vms.viid_forward r JOIN vms.viid_upstream u ON u.name = r.upstream
              WHERE r.enabled AND u.enabled AND u.system_id::text <> client
                AND (r.kinds IS NULL OR k.kind = ANY (r.kinds))
                AND (r.clients IS NULL OR client = ANY (r.clients))
                AND (r.device_prefixes IS NULL OR EXISTS (SELECT FROM unnest(r.device_prefixes) p WHERE dev LIKE p || '%'))
              ORDER BY r.name LOOP
        INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
        VALUES (f.upstream, k.kind, oid, CASE WHEN f.with_images THEN full_doc ELSE doc END);
        PERFORM vms._wake_worker('viid');
        sent_to := sent_to || f.upstream;
    END LOOP;
    -- subscriptions: one notification per record, due at the end of the
    -- subscription's ReportInterval window (so a window's go out together);
    -- not to a place the record was just forwarded to
    FOR sub IN SELECT * FROM vms.viid_subscription s
                WHERE s.state = 'active' AND k.kind = ANY (s.kinds) AND at >= s.begin_time AND at < s.end_time
                  AND now() < s.end_time AND s.upstream <> ALL (sent_to)
                  AND (s.resource_prefixes IS NULL OR EXISTS (SELECT FROM unnest(s.resource_prefixes) p WHERE dev LIKE p || '%'))
                ORDER BY s.subscribe_id LOOP
        nid := sub.subscribe_id || '-' || oid;
        INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc, next_attempt_at)
        VALUES (sub.upstream, 'SubscribeNotification', nid,
                jsonb_build_object('NotificationID', nid, 'SubscribeID', sub.subscribe_id, 'Title', sub.title,
                                   'TriggerTime', to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDDHH24MISS'),
                                   'InfoIDs', oid,
                                   k.kind || 'ObjectList', jsonb_build_object(k.item_object, jsonb_build_array(full_doc))),
                CASE WHEN sub.report_interval > 0
                     THEN to_timestamp(ceil(extract(epoch FROM now()) / sub.report_interval) * sub.report_interval)
                     ELSE now() END);
        UPDATE vms.viid_subscription s SET notifications = s.notifications + 1 WHERE s.subscribe_id = sub.subscribe_id;
        PERFORM vms._wake_worker('viid');
        sent_to := sent_to || sub.upstream;
    END LOOP;
    RETURN true;
END $$;
COMMENT ON FUNCTION vms._viid_ingest_one(text, vms.viid_kind, jsonb, jsonb) IS
    'internal: validate (ids, device, capture time, images), map and store one received record, queue it for the forwarding rules and subscriptions; raises with the reason when refused';

-- SubscribeDetail codes (GA/T 1400.3) and the received kinds they deliver:
-- 11 persons, 12 faces, 13 motor vehicles, 14 non-motor vehicles, 8 tollgate
-- records (motor vehicles), 16 files (images); ledger changes: 3 APEs, 4 APE
-- status, 7 tollgates, 9 lanes (vms._viid_subscription_ledger).
CREATE FUNCTION vms._viid_subscribe(client text, method text, item jsonb) RETURNS text
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    sid text := item ->> 'SubscribeID';
    codes text[];
    kinds text[];
    up text;
    b timestamptz;
    e timestamptz;
    addr text := item ->> 'ReceiveAddr';
    old vms.viid_subscription;
BEGIN
    IF sid IS NULL OR sid !~ '^[0-9A-Za-z_.-]{1,64}$' THEN
        RAISE EXCEPTION 'SubscribeID "%" is not valid (1-64 letters, digits, _ . -)', left(coalesce(sid, ''), 64)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO old FROM vms.viid_subscription s WHERE s.subscribe_id = sid;
    IF FOUND AND old.client_id::text <> client THEN
        RAISE EXCEPTION 'subscription "%" belongs to another client', sid USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF method = 'POST' AND FOUND AND old.state = 'active' THEN
        RAISE EXCEPTION 'subscription "%" exists: PUT changes it', sid USING ERRCODE = 'unique_violation';
    END IF;
    IF method = 'PUT' AND NOT FOUND THEN
        RAISE EXCEPTION 'subscription "%" does not exist', sid USING ERRCODE = 'undefined_object';
    END IF;
    IF method = 'PUT' AND old.state = 'cancelled' THEN
        RAISE EXCEPTION 'subscription "%" is cancelled: POST subscribes again', sid USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF method = 'PUT' THEN
        item := old.doc || item;
        addr := item ->> 'ReceiveAddr';
    END IF;
    codes := ARRAY(SELECT btrim(x) FROM unnest(string_to_array(item ->> 'SubscribeDetail', ',')) x WHERE btrim(x) <> '');
    IF cardinality(codes) = 0 OR EXISTS (SELECT FROM unnest(codes) x WHERE x !~ '^[0-9]{1,2}$') THEN
        RAISE EXCEPTION 'SubscribeDetail "%" is not a list of codes', left(coalesce(item ->> 'SubscribeDetail', ''), 64)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    kinds := ARRAY(SELECT DISTINCT CASE x WHEN '11' THEN 'Person' WHEN '12' THEN 'Face' WHEN '13' THEN 'MotorVehicle'
                                         WHEN '8' THEN 'MotorVehicle' WHEN '14' THEN 'NonMotorVehicle' WHEN '16' THEN 'Image' END
                     FROM unnest(codes) x WHERE x IN ('8', '11', '12', '13', '14', '16'));
    BEGIN
        b := CASE WHEN coalesce(item ->> 'BeginTime', '') = '' THEN now()
                  ELSE to_timestamp(item ->> 'BeginTime', 'YYYYMMDDHH24MISS')::timestamp AT TIME ZONE 'Asia/Shanghai' END;
        e := CASE WHEN coalesce(item ->> 'EndTime', '') = '' THEN 'infinity'
                  ELSE to_timestamp(item ->> 'EndTime', 'YYYYMMDDHH24MISS')::timestamp AT TIME ZONE 'Asia/Shanghai' END;
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'BeginTime or EndTime is not yyyyMMddHHmmss' USING ERRCODE = 'invalid_datetime_format';
    END;
    IF e <= b THEN
        RAISE EXCEPTION 'EndTime is not after BeginTime' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT u.name INTO up FROM vms.viid_upstream u
     WHERE u.enabled AND addr IS NOT NULL AND (addr = u.base_url OR addr LIKE u.base_url || '/%')
     ORDER BY (u.system_id::text = client) DESC, length(u.base_url) DESC, u.name LIMIT 1;
    IF up IS NULL THEN
        RAISE EXCEPTION 'ReceiveAddr "%" is not the address of a configured upstream', left(coalesce(addr, ''), 200)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Notifications travel through the push: add the subscriber with vms.viid_add_upstream.';
    END IF;
    INSERT INTO vms.viid_subscription AS s (subscribe_id, client_id, upstream, title, details, kinds, resource_prefixes,
                                          begin_time, end_time, receive_addr, report_interval, doc)
    VALUES (sid, client::vms.gbcode, up, item ->> 'Title', codes, kinds,
            nullif(ARRAY(SELECT btrim(x) FROM unnest(string_to_array(item ->> 'ResourceURI', ',')) x WHERE btrim(x) <> ''), '{}'),
            b, e, addr, greatest(coalesce((item ->> 'ReportInterval')::int, 0), 0), item)
    ON CONFLICT (subscribe_id) DO UPDATE SET
        upstream = EXCLUDED.upstream, title = EXCLUDED.title, details = EXCLUDED.details, kinds = EXCLUDED.kinds,
        resource_prefixes = EXCLUDED.resource_prefixes, begin_time = EXCLUDED.begin_time, end_time = EXCLUDED.end_time,
        receive_addr = EXCLUDED.receive_addr, report_interval = EXCLUDED.report_interval, doc = EXCLUDED.doc,
        state = 'active', cancelled_at = NULL, updated_at = now();
    RETURN sid;
END $$;
COMMENT ON FUNCTION vms._viid_subscribe(text, text, jsonb) IS
    'internal: create (POST) or change (PUT) a client''s subscription from a SubscribeObject; raises with the reason when refused';

CREATE FUNCTION vms.viid_subscription_cancel(subscribe_id text) RETURNS boolean
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    WITH c AS (UPDATE vms.viid_subscription s SET state = 'cancelled', cancelled_at = now(), updated_at = now()
                WHERE s.subscribe_id = viid_subscription_cancel.subscribe_id AND s.state = 'active' RETURNING 1)
    SELECT count(*) > 0 FROM c
$$;
COMMENT ON FUNCTION vms.viid_subscription_cancel(text) IS 'cancel a GA/T 1400 subscription (as DELETE /VIID/Subscribes does); true if it was active';

-- Directory and status subscriptions: ledger changes notify subscribers
-- with SubscribeDetail 3 (APEs added or changed), 4 (APE status: online),
-- 7 (tollgates), 9 (lanes), within the subscriber's share scope.
-- SECURITY DEFINER like vms._viid_sync_ledger: whoever edits the ledger may
-- not write the outbox; it takes nothing from the caller but the rows.
CREATE FUNCTION vms._viid_subscription_ledger() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    sub record;
    shared vms.gbcode[];
    n integer := 0;
BEGIN
    IF NOT EXISTS (SELECT FROM vms.viid_subscription s
                    WHERE s.state = 'active' AND now() >= s.begin_time AND now() < s.end_time
                      AND s.details && '{3,4,7,9}') THEN
        RETURN NULL;
    END IF;
    FOR sub IN SELECT s.*, c.options AS client_options FROM vms.viid_subscription s
                 JOIN vms.viid_client c USING (client_id)
                WHERE s.state = 'active' AND now() >= s.begin_time AND now() < s.end_time
                  AND s.details && '{3,4,7,9}' AND c.options ? 'share_scope'
                ORDER BY s.subscribe_id LOOP
        shared := ARRAY(SELECT vms.inspection_scope_channels(sub.client_options -> 'share_scope'));
        IF TG_TABLE_NAME = 'channel' AND TG_OP = 'INSERT' AND '3' = ANY (sub.details) THEN
            INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
            SELECT sub.upstream, 'SubscribeNotification', nid,
                   jsonb_build_object('NotificationID', nid, 'SubscribeID', sub.subscribe_id, 'Title', sub.title,
                                      'TriggerTime', to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDDHH24MISS'),
                                      'InfoIDs', ch.code::text, 'APEObjectList', jsonb_build_object('APEObject', jsonb_build_array(vms.viid_ape_doc(ch))))
              FROM new_rows ch
              CROSS JOIN LATERAL (SELECT sub.subscribe_id || '-' || ch.code::text || '-' || to_char(clock_timestamp(), 'YYYYMMDDHH24MISSUS') AS nid) x
             WHERE ch.code = ANY (shared);
        ELSIF TG_TABLE_NAME = 'channel' AND TG_OP = 'UPDATE' THEN
            INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
            SELECT sub.upstream, 'SubscribeNotification', nid,
                   jsonb_build_object('NotificationID', nid, 'SubscribeID', sub.subscribe_id, 'Title', sub.title,
                                      'TriggerTime', to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDDHH24MISS'),
                                      'InfoIDs', ch.code::text, 'APEObjectList', jsonb_build_object('APEObject', jsonb_build_array(vms.viid_ape_doc(ch))))
              FROM new_rows ch JOIN old_rows o ON o.code = ch.code
              CROSS JOIN LATERAL (SELECT sub.subscribe_id || '-' || ch.code::text || '-' || to_char(clock_timestamp(), 'YYYYMMDDHH24MISSUS') AS nid) x
             WHERE ch.code = ANY (shared)
               AND (('3' = ANY (sub.details) AND vms._channel_jsonb(ch) IS DISTINCT FROM vms._channel_jsonb(o))
                    OR ('4' = ANY (sub.details) AND ch.online IS DISTINCT FROM o.online));
        ELSIF TG_TABLE_NAME = 'checkpoint' AND '7' = ANY (sub.details) THEN
            INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
            SELECT sub.upstream, 'SubscribeNotification', nid,
                   jsonb_build_object('NotificationID', nid, 'SubscribeID', sub.subscribe_id, 'Title', sub.title,
                                      'TriggerTime', to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDDHH24MISS'),
                                      'InfoIDs', k.code::text, 'TollgateObjectList', jsonb_build_object('TollgateObject', jsonb_build_array(vms.viid_tollgate_doc(k))))
              FROM new_rows k
              CROSS JOIN LATERAL (SELECT sub.subscribe_id || '-' || k.code::text || '-' || to_char(clock_timestamp(), 'YYYYMMDDHH24MISSUS') AS nid) x
             WHERE EXISTS (SELECT FROM vms.lane_channel lc WHERE lc.checkpoint_code = k.code AND lc.channel_code = ANY (shared));
        ELSIF TG_TABLE_NAME = 'lane' AND '9' = ANY (sub.details) THEN
            INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
            SELECT sub.upstream, 'SubscribeNotification', nid,
                   jsonb_build_object('NotificationID', nid, 'SubscribeID', sub.subscribe_id, 'Title', sub.title,
                                      'TriggerTime', to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDDHH24MISS'),
                                      'InfoIDs', l.checkpoint_code::text || lpad(l.lane_no::text, 2, '0'),
                                      'LaneObjectList', jsonb_build_object('LaneObject', jsonb_build_array(vms.viid_lane_doc(l))))
              FROM new_rows l
              CROSS JOIN LATERAL (SELECT sub.subscribe_id || '-' || l.checkpoint_code::text || lpad(l.lane_no::text, 2, '0') || '-'
                                         || to_char(clock_timestamp(), 'YYYYMMDDHH24MISSUS') AS nid) x
             WHERE EXISTS (SELECT FROM vms.lane_channel lc WHERE lc.checkpoint_code = l.checkpoint_code
                              AND lc.lane_no = l.lane_no AND lc.channel_code = ANY (shared));
        END IF;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n > 0 THEN
            UPDATE vms.viid_subscription s SET notifications = s.notifications + n WHERE s.subscribe_id = sub.subscribe_id;
            PERFORM vms._wake_worker('viid');
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._viid_subscription_ledger() IS
    'internal: queue SubscribeNotifications for ledger changes (SubscribeDetail 3 APEs, 4 APE status, 7 tollgates, 9 lanes) within each subscriber''s share scope';
CREATE TRIGGER channel_viid_sub_ins AFTER INSERT ON vms.channel REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_subscription_ledger();
CREATE TRIGGER channel_viid_sub_upd AFTER UPDATE ON vms.channel REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_subscription_ledger();
CREATE TRIGGER checkpoint_viid_sub_ins AFTER INSERT ON vms.checkpoint REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_subscription_ledger();
CREATE TRIGGER checkpoint_viid_sub_upd AFTER UPDATE ON vms.checkpoint REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_subscription_ledger();
CREATE TRIGGER lane_viid_sub_ins AFTER INSERT ON vms.lane REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_subscription_ledger();
CREATE TRIGGER lane_viid_sub_upd AFTER UPDATE ON vms.lane REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_subscription_ledger();

-- The ledger as a client may see it: APEs, tollgates and lanes within its
-- share scope (options.share_scope, as an inspection scope: regions,
-- catalog_nodes, tags, channels); no scope, nothing.
CREATE FUNCTION vms._viid_directory(c vms.viid_client, path text) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    shared vms.gbcode[];
BEGIN
    IF c.options ? 'share_scope' THEN
        shared := ARRAY(SELECT vms.inspection_scope_channels(c.options -> 'share_scope'));
    ELSE
        shared := '{}';
    END IF;
    IF path = '/VIID/APEs' THEN
        RETURN jsonb_build_object('APEListObject', jsonb_build_object('APEObject',
            coalesce((SELECT jsonb_agg(vms.viid_ape_doc(ch) ORDER BY ch.code) FROM vms.channel ch WHERE ch.code = ANY (shared)), '[]')));
    ELSIF path = '/VIID/Tollgates' THEN
        RETURN jsonb_build_object('TollgateListObject', jsonb_build_object('TollgateObject',
            coalesce((SELECT jsonb_agg(vms.viid_tollgate_doc(k) ORDER BY k.code) FROM vms.checkpoint k
                       WHERE EXISTS (SELECT FROM vms.lane_channel lc WHERE lc.checkpoint_code = k.code AND lc.channel_code = ANY (shared))), '[]')));
    ELSE
        RETURN jsonb_build_object('LaneListObject', jsonb_build_object('LaneObject',
            coalesce((SELECT jsonb_agg(vms.viid_lane_doc(l) ORDER BY l.checkpoint_code, l.lane_no) FROM vms.lane l
                       WHERE EXISTS (SELECT FROM vms.lane_channel lc WHERE lc.checkpoint_code = l.checkpoint_code
                                        AND lc.lane_no = l.lane_no AND lc.channel_code = ANY (shared))), '[]')));
    END IF;
END $$;
COMMENT ON FUNCTION vms._viid_directory(vms.viid_client, text) IS
    'internal: APEListObject, TollgateListObject or LaneListObject of what a client''s share scope covers (GET /VIID/APEs, Tollgates, Lanes)';

-- One complete HTTP request from an authenticated client.  The worker runs
-- several in one short transaction and answers them after the commit.
CREATE FUNCTION vms._viid_server_request(client text, method text, path text, body text, remote text)
    RETURNS TABLE (http_status integer, response text, stored integer, rejected integer, event text)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    j jsonb;
    c vms.viid_client;
    s vms.viid_client_session;
    k vms.viid_kind;
    items jsonb;
    item jsonb;
    answers jsonb := '[]';
    oid text;
    ok integer := 0;
    bad integer := 0;
BEGIN
    SELECT * INTO c FROM vms.viid_client v WHERE v.client_id::text = client AND v.enabled;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 401, jsonb_build_object('ResponseStatusObject', vms._viid_status(path, 4, 'unknown or disabled client'))::text, 0, 0, 'auth';
        RETURN;
    END IF;
    IF method = 'GET' AND path = '/VIID/System/Time' THEN
        RETURN QUERY SELECT 200, jsonb_build_object('SystemTimeObject', jsonb_build_object(
            'VIIDServerID', coalesce(nullif(current_setting('vms.viid_server_id', true), ''), ''),
            'TimeMode', '1', 'LocalTime', to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDDHH24MISS'),
            'TimeZone', 'Asia/Shanghai'))::text, 0, 0, 'time';
        RETURN;
    END IF;
    IF method = 'GET' AND path IN ('/VIID/APEs', '/VIID/Tollgates', '/VIID/Lanes') THEN
        RETURN QUERY SELECT 200, vms._viid_directory(c, path)::text, 0, 0, 'directory';
        RETURN;
    END IF;
    IF path = '/VIID/Subscribes' AND method = 'DELETE' THEN
        -- the worker passes the IDList query argument as the body
        FOR oid IN SELECT btrim(x) FROM unnest(string_to_array(coalesce(body, ''), ',')) x WHERE btrim(x) <> '' LOOP
            IF EXISTS (SELECT FROM vms.viid_subscription sb WHERE sb.subscribe_id = oid AND sb.client_id = c.client_id AND sb.state = 'active') THEN
                PERFORM vms.viid_subscription_cancel(oid);
                ok := ok + 1;
                answers := answers || vms._viid_status(path, 0, 'OK', oid);
            ELSE
                bad := bad + 1;
                answers := answers || vms._viid_status(path, 4, 'no active subscription of this client with this id', left(oid, 64));
            END IF;
        END LOOP;
        IF ok + bad = 0 THEN
            RETURN QUERY SELECT 400, jsonb_build_object('ResponseStatusObject', vms._viid_status(path, 8, 'IDList is missing'))::text, 0, 0, 'bad_request';
            RETURN;
        END IF;
        RETURN QUERY SELECT 200, jsonb_build_object('ResponseStatusListObject',
            jsonb_build_object('ResponseStatusObject', answers))::text, 0, 0, 'subscription';
        RETURN;
    END IF;
    IF method NOT IN ('POST', 'PUT') OR (method = 'PUT' AND path <> '/VIID/Subscribes') THEN
        RETURN QUERY SELECT 405, jsonb_build_object('ResponseStatusObject', vms._viid_status(path, 4, 'method not allowed'))::text, 0, 0, 'bad_request';
        RETURN;
    END IF;
    BEGIN
        j := body::jsonb;
    EXCEPTION WHEN OTHERS THEN
        RETURN QUERY SELECT 400, jsonb_build_object('ResponseStatusObject',
            vms._viid_status(path, 7, 'malformed JSON: ' || left(SQLERRM, 200)))::text, 0, 0, 'bad_request';
        RETURN;
    END;
    IF jsonb_typeof(j) <> 'object' THEN
        RETURN QUERY SELECT 400, jsonb_build_object('ResponseStatusObject', vms._viid_status(path, 8, 'body is not a JSON object'))::text, 0, 0, 'bad_request';
        RETURN;
    END IF;

    IF path IN ('/VIID/System/Register', '/VIID/System/Keepalive', '/VIID/System/UnRegister') THEN
        oid := coalesce(j #>> '{RegisterObject,DeviceID}', j #>> '{KeepaliveObject,DeviceID}', j #>> '{UnRegisterObject,DeviceID}');
        IF oid IS DISTINCT FROM client THEN
            RETURN QUERY SELECT 400, jsonb_build_object('ResponseStatusObject',
                vms._viid_status(path, 8, 'DeviceID must be the authenticated client''s id', oid))::text, 0, 0, 'bad_request';
            RETURN;
        END IF;
        SELECT * INTO s FROM vms.viid_client_session v WHERE v.client_id = c.client_id FOR UPDATE;
        IF path = '/VIID/System/Keepalive' AND coalesce(s.state, 'unregistered') <> 'registered' THEN
            RETURN QUERY SELECT 401, jsonb_build_object('ResponseStatusObject', vms._viid_status(path, 4, 'not registered', client))::text, 0, 0, 'not_registered';
            RETURN;
        END IF;
        INSERT INTO vms.viid_client_session AS v (client_id, state, registered_at, last_keepalive_at, remote_addr, last_event_at)
        VALUES (c.client_id, CASE WHEN path = '/VIID/System/UnRegister' THEN 'unregistered' ELSE 'registered' END,
                CASE WHEN path = '/VIID/System/Register' THEN now() END, now(), remote, now())
        ON CONFLICT ON CONSTRAINT viid_client_session_pkey DO UPDATE SET
            state = EXCLUDED.state,
            registered_at = coalesce(EXCLUDED.registered_at, v.registered_at),
            last_keepalive_at = now(), remote_addr = EXCLUDED.remote_addr, last_event_at = now();
        RETURN QUERY SELECT 200, jsonb_build_object('ResponseStatusObject', vms._viid_status(path, 0, 'OK', client))::text, 0, 0,
            CASE path WHEN '/VIID/System/Register' THEN 'register' WHEN '/VIID/System/Keepalive' THEN 'keepalive' ELSE 'unregister' END;
        RETURN;
    END IF;

    IF path = '/VIID/Subscribes' THEN
        items := j -> 'SubscribeListObject' -> 'SubscribeObject';
        IF items IS NOT NULL AND jsonb_typeof(items) = 'object' THEN
            items := jsonb_build_array(items);
        END IF;
        IF items IS NULL OR jsonb_typeof(items) <> 'array' THEN
            RETURN QUERY SELECT 400, jsonb_build_object('ResponseStatusObject',
                vms._viid_status(path, 8, 'expected {"SubscribeListObject": {"SubscribeObject": [...]}}'))::text, 0, 0, 'bad_request';
            RETURN;
        END IF;
        FOR item IN SELECT * FROM jsonb_array_elements(items) LOOP
            oid := CASE WHEN jsonb_typeof(item) = 'object' THEN left(item ->> 'SubscribeID', 64) END;
            BEGIN
                IF jsonb_typeof(item) IS DISTINCT FROM 'object' THEN
                    RAISE EXCEPTION 'item is not a JSON object';
                END IF;
                PERFORM vms._viid_subscribe(client, method, item);
                ok := ok + 1;
                answers := answers || vms._viid_status(path, 0, 'OK', oid);
            EXCEPTION WHEN OTHERS THEN
                bad := bad + 1;
                answers := answers || vms._viid_status(path, 8, left(SQLERRM, 300), oid);
            END;
        END LOOP;
        RETURN QUERY SELECT 200, jsonb_build_object('ResponseStatusListObject',
            jsonb_build_object('ResponseStatusObject', answers))::text, 0, 0, 'subscription';
        RETURN;
    END IF;
    SELECT * INTO k FROM vms.viid_kind v WHERE v.path = _viid_server_request.path
       AND v.kind IN ('MotorVehicle', 'NonMotorVehicle', 'Person', 'Face', 'Image');
    IF NOT FOUND THEN
        RETURN QUERY SELECT 404, jsonb_build_object('ResponseStatusObject', vms._viid_status(path, 4, 'unknown resource'))::text, 0, 0, 'not_found';
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT FROM vms.viid_client_session v WHERE v.client_id = c.client_id AND v.state = 'registered') THEN
        RETURN QUERY SELECT 401, jsonb_build_object('ResponseStatusObject', vms._viid_status(path, 4, 'not registered: POST /VIID/System/Register first'))::text, 0, 0, 'not_registered';
        RETURN;
    END IF;
    items := j -> k.list_object -> k.item_object;
    IF items IS NULL OR jsonb_typeof(items) <> 'array' THEN
        RETURN QUERY SELECT 400, jsonb_build_object('ResponseStatusObject',
            vms._viid_status(path, 8, format('expected {"%s": {"%s": [...]}}', k.list_object, k.item_object)))::text, 0, 0, 'bad_request';
        RETURN;
    END IF;
    FOR item IN SELECT * FROM jsonb_array_elements(items) LOOP
        oid := CASE WHEN jsonb_typeof(item) = 'object' THEN left(item #>> k.id_path, 64) END;
        BEGIN
            PERFORM vms._viid_ingest_one(client, k, item, c.options);
            ok := ok + 1;
            answers := answers || vms._viid_status(path, 0, 'OK', oid);
        EXCEPTION WHEN OTHERS THEN
            bad := bad + 1;
            answers := answers || vms._viid_status(path, 8, left(SQLERRM, 300), oid);
        END;
    END LOOP;
    UPDATE vms.viid_client_session v SET requests = v.requests + 1, records = v.records + ok,
           rejected = v.rejected + bad, last_event_at = now()
     WHERE v.client_id = c.client_id;
    RETURN QUERY SELECT 200, jsonb_build_object('ResponseStatusListObject',
        jsonb_build_object('ResponseStatusObject', answers))::text, ok, bad, 'records';
END $$;
COMMENT ON FUNCTION vms._viid_server_request(text, text, text, text, text) IS
    'internal: answer one authenticated GA/T 1400 request (System Register/Keepalive/UnRegister/Time, object lists) for the viid-server worker';

-- Retention: rows older than their kind's keep_days / image_days go; a
-- partition whose whole month is past every kind's retention is dropped.
CREATE FUNCTION vms.viid_record_prune() RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n bigint := 0;
    m bigint;
    p record;
    oldest integer := (SELECT max(greatest(keep_days, image_days)) FROM vms.viid_record_retention);
BEGIN
    FOR p IN SELECT c.oid::regclass AS part, pg_get_expr(c.relpartbound, c.oid) AS bound
               FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent IN ('vms.viid_record'::regclass, 'vms.viid_image'::regclass) LOOP
        IF (substring(p.bound FROM 'TO \(''([^'']+)''\)'))::timestamptz < now() - make_interval(days => coalesce(oldest, 0) + 1) THEN
            EXECUTE format('DROP TABLE %s', p.part);
        END IF;
    END LOOP;
    DELETE FROM vms.viid_record r USING vms.viid_record_retention t
     WHERE r.kind = t.kind AND r.captured_at < now() - make_interval(days => t.keep_days);
    GET DIAGNOSTICS m = ROW_COUNT;
    n := n + m;
    DELETE FROM vms.viid_image r USING vms.viid_record_retention t
     WHERE r.kind = t.kind AND r.captured_at < now() - make_interval(days => t.image_days);
    GET DIAGNOSTICS m = ROW_COUNT;
    RETURN n + m;
END $$;
COMMENT ON FUNCTION vms.viid_record_prune() IS
    'delete received GA/T 1400 records and images past their kind''s retention (vms.viid_record_retention); drop whole expired partitions; returns rows deleted';
-- Kept figures and housekeeping: the operations figures per unit, region
-- and contractor over any period (vms.ops_figures), daily snapshots of them,
-- monthly assessment figures (运维考核) frozen when the month is closed,
-- scheduled runs (cron expressions, vms.cron_next) and retention of the
-- tables that grow without bound.

CREATE FUNCTION vms.ops_figures(from_ts timestamptz, to_ts timestamptz, group_by text DEFAULT 'unit')
    RETURNS TABLE (group_key text, group_name text, online_ratio float8, online_seconds float8,
                   offline_seconds float8, unknown_seconds float8, offline_events integer, members integer,
                   inspections integer, stream_success_rate float8, image_rate float8,
                   alarms_raised integer, alarms_cleared integer, fixed_in_time_rate float8,
                   work_orders integer, mean_response_seconds float8, mean_resolution_seconds float8)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    IF group_by IS NULL OR group_by NOT IN ('unit', 'region', 'contractor') THEN
        RAISE EXCEPTION 'operations figures cannot be grouped by "%"', group_by
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use unit, region or contractor.';
    END IF;
    RETURN QUERY
    WITH subj AS (
        SELECT DISTINCT ON (x.code) x.code, x.key FROM (
            SELECT c.code, 1 AS pref,
                   CASE group_by WHEN 'unit' THEN coalesce(c.unit_id, d.unit_id)::text
                                 WHEN 'region' THEN coalesce(c.civil_code, d.civil_code)
                                 ELSE (SELECT k.contractor FROM vms.maintenance_contract k
                                        WHERE k.id = vms.contract_for(c.code)) END AS key
              FROM vms.channel c JOIN vms.device d ON d.code = c.device_code
            UNION ALL
            SELECT d.code, 2,
                   CASE group_by WHEN 'unit' THEN d.unit_id::text
                                 WHEN 'region' THEN d.civil_code
                                 ELSE (SELECT k.contractor FROM vms.maintenance_contract k
                                        WHERE k.id = vms.contract_for(d.code)) END
              FROM vms.device d) x
         ORDER BY x.code, x.pref),
    av AS (SELECT coalesce(a.group_key, '') AS key, a.* FROM vms.availability(from_ts, to_ts, group_by) a),
    insp AS (
        SELECT coalesce(s.key, '') AS key, count(*)::int AS n, avg(q.stream_ok::int)::float8 AS sr,
               avg(q.image_ok::int)::float8 AS ir
          FROM vms.quality_result q JOIN subj s ON s.code = q.channel_code
         WHERE q.at >= from_ts AND q.at < to_ts GROUP BY 1),
    al AS (
        SELECT coalesce(s.key, '') AS key,
               count(*) FILTER (WHERE a.first_raised_at >= from_ts AND a.first_raised_at < to_ts)::int AS raised,
               count(*) FILTER (WHERE a.cleared_at >= from_ts AND a.cleared_at < to_ts)::int AS cleared,
               avg((a.cleared_at <= a.fix_by)::int) FILTER (WHERE a.cleared_at >= from_ts AND a.cleared_at < to_ts
                                                             AND a.fix_by IS NOT NULL)::float8 AS fit
          FROM vms.alarm a JOIN subj s ON s.code = a.code
         WHERE a.mask_id IS NULL AND a.root_alarm_id IS NULL
           AND ((a.first_raised_at >= from_ts AND a.first_raised_at < to_ts)
                OR (a.cleared_at >= from_ts AND a.cleared_at < to_ts))
         GROUP BY 1),
    wo AS (
        SELECT coalesce(s.key, '') AS key, count(*)::int AS n, avg(k.response_seconds) AS resp,
               avg(k.resolution_seconds) AS reso
          FROM vms.work_order_kpi k JOIN subj s ON s.code = k.code
         WHERE k.opened_at >= from_ts AND k.opened_at < to_ts GROUP BY 1),
    keys AS (SELECT key FROM av UNION SELECT key FROM insp UNION SELECT key FROM al UNION SELECT key FROM wo)
    SELECT nullif(keys.key, ''),
           coalesce(av.group_name,
                    CASE group_by WHEN 'unit' THEN (SELECT u.name FROM vms.org_unit u WHERE u.id::text = keys.key)
                                  WHEN 'region' THEN (SELECT r.name FROM vms.region r WHERE r.civil_code = keys.key)
                                  ELSE nullif(keys.key, '') END),
           av.online_ratio, coalesce(av.online_seconds, 0), coalesce(av.offline_seconds, 0),
           coalesce(av.unknown_seconds, 0), coalesce(av.offline_events, 0), coalesce(av.members, 0),
           coalesce(insp.n, 0), insp.sr, insp.ir,
           coalesce(al.raised, 0), coalesce(al.cleared, 0), al.fit,
           coalesce(wo.n, 0), wo.resp, wo.reso
      FROM keys
      LEFT JOIN av ON av.key = keys.key
      LEFT JOIN insp ON insp.key = keys.key
      LEFT JOIN al ON al.key = keys.key
      LEFT JOIN wo ON wo.key = keys.key
     ORDER BY keys.key;
END $$;
COMMENT ON FUNCTION vms.ops_figures(timestamptz, timestamptz, text) IS
    'operations figures in [from_ts, to_ts) per unit, region or contractor: availability (vms.availability over channels), inspections with 取流成功率 and 出图率, alarms raised and cleared (not masked or suppressed) with the share cleared by their fix deadline, work orders opened with mean response and resolution seconds';

-- Daily snapshots: one row per day, kind and group; recomputed when taken
-- again, until the month is closed.
CREATE TABLE vms.ops_daily (
    day                   date NOT NULL,
    group_by              text NOT NULL CHECK (group_by IN ('unit', 'region', 'contractor')),
    group_key             text NOT NULL,
    group_name            text,
    online_ratio          float8,
    online_seconds        float8 NOT NULL,
    offline_seconds       float8 NOT NULL,
    unknown_seconds       float8 NOT NULL,
    offline_events        integer NOT NULL,
    members               integer NOT NULL,
    inspections           integer NOT NULL,
    stream_success_rate   float8,
    image_rate            float8,
    alarms_raised         integer NOT NULL,
    alarms_cleared        integer NOT NULL,
    fixed_in_time_rate    float8,
    work_orders           integer NOT NULL,
    governance            jsonb,
    time_zone             text NOT NULL,
    computed_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, group_by, group_key)
);
COMMENT ON TABLE vms.ops_daily IS
    'daily snapshots of the operations figures per unit, region and contractor (group_key '''' = none); governance metrics as at computed_at';

-- Monthly assessment figures (运维考核), frozen when the month is closed.
CREATE TABLE vms.ops_month (
    month                    date NOT NULL CHECK (month = date_trunc('month', month)::date),
    group_by                 text NOT NULL CHECK (group_by IN ('unit', 'region', 'contractor')),
    group_key                text NOT NULL,
    group_name               text,
    online_ratio             float8,
    online_seconds           float8 NOT NULL,
    offline_seconds          float8 NOT NULL,
    unknown_seconds          float8 NOT NULL,
    offline_events           integer NOT NULL,
    members                  integer NOT NULL,
    inspections              integer NOT NULL,
    stream_success_rate      float8,
    image_rate               float8,
    alarms_raised            integer NOT NULL,
    alarms_cleared           integer NOT NULL,
    fixed_in_time_rate       float8,
    work_orders              integer NOT NULL,
    mean_response_seconds    float8,
    mean_resolution_seconds  float8,
    time_zone                text NOT NULL,
    frozen_at                timestamptz NOT NULL DEFAULT now(),
    frozen_by                text NOT NULL DEFAULT session_user,
    PRIMARY KEY (month, group_by, group_key)
);
COMMENT ON TABLE vms.ops_month IS
    'monthly assessment figures (运维考核) per unit, region and contractor, frozen by vms.ops_month_close: never updated or deleted';

CREATE FUNCTION vms._ops_month_frozen() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'closed monthly figures never change'
        USING ERRCODE = 'object_not_in_prerequisite_state',
              DETAIL = format('%s on vms.ops_month is refused: the month was closed with vms.ops_month_close.', TG_OP),
              HINT = 'Figures of a closed month are the ones reported; compute others with vms.ops_figures.';
END $$;
COMMENT ON FUNCTION vms._ops_month_frozen() IS 'internal: refuses UPDATE, DELETE and TRUNCATE of closed monthly figures';
CREATE TRIGGER ops_month_frozen BEFORE UPDATE OR DELETE ON vms.ops_month
    FOR EACH ROW EXECUTE FUNCTION vms._ops_month_frozen();
CREATE TRIGGER ops_month_no_truncate BEFORE TRUNCATE ON vms.ops_month
    FOR EACH STATEMENT EXECUTE FUNCTION vms._ops_month_frozen();

CREATE FUNCTION vms.ops_snapshot_day(day date, tz text DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    zone text := coalesce(tz, current_setting('TimeZone'));
    f timestamptz;
    t timestamptz;
    n integer := 0;
    k integer;
    g text;
BEGIN
    IF ops_snapshot_day.day IS NULL THEN
        RAISE EXCEPTION 'a snapshot needs a day' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM now() AT TIME ZONE zone;   -- an unknown zone fails here, with PostgreSQL's message
    f := ops_snapshot_day.day::timestamp AT TIME ZONE zone;
    t := (ops_snapshot_day.day + 1)::timestamp AT TIME ZONE zone;
    IF t > now() THEN
        RAISE EXCEPTION 'day % is not over in time zone %', ops_snapshot_day.day, zone
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'A snapshot is taken of a whole day.', HINT = 'Snapshot days that have ended (the scheduled run takes yesterday).';
    END IF;
    IF EXISTS (SELECT 1 FROM vms.ops_month m WHERE m.month = date_trunc('month', ops_snapshot_day.day)::date) THEN
        RAISE EXCEPTION 'month of % is closed', ops_snapshot_day.day
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Daily snapshots of a closed month are kept as they were.', HINT = 'Nothing to do.';
    END IF;
    FOREACH g IN ARRAY ARRAY['unit', 'region', 'contractor'] LOOP
        INSERT INTO vms.ops_daily AS o (day, group_by, group_key, group_name, online_ratio, online_seconds, offline_seconds,
                                        unknown_seconds, offline_events, members, inspections, stream_success_rate,
                                        image_rate, alarms_raised, alarms_cleared, fixed_in_time_rate, work_orders,
                                        governance, time_zone)
        SELECT ops_snapshot_day.day, g, coalesce(x.group_key, ''), x.group_name, x.online_ratio, x.online_seconds,
               x.offline_seconds, x.unknown_seconds, x.offline_events, x.members, x.inspections, x.stream_success_rate,
               x.image_rate, x.alarms_raised, x.alarms_cleared, x.fixed_in_time_rate, x.work_orders,
               CASE g WHEN 'unit' THEN (SELECT to_jsonb(m) - 'unit_id' - 'unit' FROM vms.governance_metrics_by_unit() m
                                         WHERE m.unit_id IS NOT DISTINCT FROM x.group_key)
                      WHEN 'region' THEN (SELECT to_jsonb(m) - 'civil_code' - 'region'
                                            FROM vms.governance_metrics_by_region(length(x.group_key)) m
                                           WHERE m.civil_code = x.group_key AND length(x.group_key) IN (2, 4, 6, 8)) END,
               zone
          FROM vms.ops_figures(f, t, g) x
        ON CONFLICT (day, group_by, group_key) DO UPDATE
           SET group_name = EXCLUDED.group_name, online_ratio = EXCLUDED.online_ratio,
               online_seconds = EXCLUDED.online_seconds, offline_seconds = EXCLUDED.offline_seconds,
               unknown_seconds = EXCLUDED.unknown_seconds, offline_events = EXCLUDED.offline_events,
               members = EXCLUDED.members, inspections = EXCLUDED.inspections,
               stream_success_rate = EXCLUDED.stream_success_rate, image_rate = EXCLUDED.image_rate,
               alarms_raised = EXCLUDED.alarms_raised, alarms_cleared = EXCLUDED.alarms_cleared,
               fixed_in_time_rate = EXCLUDED.fixed_in_time_rate, work_orders = EXCLUDED.work_orders,
               governance = EXCLUDED.governance, time_zone = EXCLUDED.time_zone, computed_at = now();
        GET DIAGNOSTICS k = ROW_COUNT;
        n := n + k;
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.ops_snapshot_day(date, text) IS
    'snapshot the operations figures of a whole day (midnight to midnight in tz, default the session''s) per unit, region and contractor into vms.ops_daily; taken again it recomputes, until the month is closed';

CREATE FUNCTION vms.ops_month_close(month date, tz text DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    zone text := coalesce(tz, current_setting('TimeZone'));
    m date := date_trunc('month', ops_month_close.month)::date;
    f timestamptz;
    t timestamptz;
    n integer;
BEGIN
    IF ops_month_close.month IS NULL THEN
        RAISE EXCEPTION 'closing needs a month' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM now() AT TIME ZONE zone;
    f := m::timestamp AT TIME ZONE zone;
    t := (m + interval '1 month')::timestamp AT TIME ZONE zone;
    IF t > now() THEN
        RAISE EXCEPTION 'month % is not over in time zone %', to_char(m, 'YYYY-MM'), zone
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'A month is closed once it has ended.', HINT = 'Close it after its last day (the scheduled run closes the previous month).';
    END IF;
    LOCK TABLE vms.ops_month IN SHARE ROW EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM vms.ops_month o WHERE o.month = m) THEN
        RAISE EXCEPTION 'month % is closed already', to_char(m, 'YYYY-MM')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Its %s rows of figures were frozen when it was closed.', (SELECT count(*) FROM vms.ops_month o WHERE o.month = m)),
                  HINT = 'Closed figures never change; compute others with vms.ops_figures.';
    END IF;
    INSERT INTO vms.ops_month (month, group_by, group_key, group_name, online_ratio, online_seconds, offline_seconds,
                               unknown_seconds, offline_events, members, inspections, stream_success_rate, image_rate,
                               alarms_raised, alarms_cleared, fixed_in_time_rate, work_orders, mean_response_seconds,
                               mean_resolution_seconds, time_zone)
    SELECT m, g, coalesce(x.group_key, ''), x.group_name, x.online_ratio, x.online_seconds, x.offline_seconds,
           x.unknown_seconds, x.offline_events, x.members, x.inspections, x.stream_success_rate, x.image_rate,
           x.alarms_raised, x.alarms_cleared, x.fixed_in_time_rate, x.work_orders, x.mean_response_seconds,
           x.mean_resolution_seconds, zone
      FROM unnest(ARRAY['unit', 'region', 'contractor']) g, vms.ops_figures(f, t, g) x;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.ops_month_close(date, text) IS
    'close a month that has ended (in tz, default the session''s): its figures per unit, region and contractor frozen into vms.ops_month; refused for a month closed already';

-- Retention: how long each growing table keeps its rows.
CREATE TABLE vms.retention_policy (
    table_name   text PRIMARY KEY,
    time_column  text NOT NULL,
    keep         interval NOT NULL CHECK (keep > interval '0'),
    only_where   text,
    enabled      boolean NOT NULL DEFAULT true
);
INSERT INTO vms.retention_policy (table_name, time_column, keep, only_where) VALUES
    ('device_event', 'at', '400 days', NULL),
    ('channel_status_event', 'at', '400 days', NULL),
    ('availability_gap', 'to_ts', '400 days', NULL),
    ('sip_request', 'created_at', '30 days', 'finished_at IS NOT NULL'),
    ('quality_result', 'at', '400 days', NULL),
    ('snapshot', 'taken_at', '90 days', 'NOT is_baseline'),
    ('search_history', 'searched_at', '180 days', NULL),
    ('mobile_position', 'at', '90 days', NULL),
    ('viid_outbox', 'created_at', '30 days', 'state <> ''pending'''),
    ('alarm', 'cleared_at', '730 days', 'state = ''cleared'''),
    ('ops_daily', 'day', '800 days', NULL),
    ('audit_log', 'at', '365 days', NULL);
COMMENT ON TABLE vms.retention_policy IS
    'retention of each table that grows without bound: rows whose time_column is older than keep (and match only_where) are deleted by vms.retention_prune; audit_log entries are archived with their hash anchors instead (vms.audit_archive_before)';

CREATE FUNCTION vms.retention_prune(only_table text DEFAULT NULL, batch integer DEFAULT 50000)
    RETURNS TABLE (table_name text, deleted bigint)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    p vms.retention_policy;
    n bigint;
BEGIN
    IF batch IS NULL OR batch < 1 THEN
        RAISE EXCEPTION 'batch must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF only_table IS NOT NULL AND NOT EXISTS (SELECT 1 FROM vms.retention_policy r WHERE r.table_name = only_table) THEN
        RAISE EXCEPTION 'no retention policy for "%"', only_table
            USING ERRCODE = 'invalid_parameter_value', HINT = 'See vms.retention_policy for the tables pruned.';
    END IF;
    FOR p IN SELECT * FROM vms.retention_policy r
              WHERE r.enabled AND (only_table IS NULL OR r.table_name = only_table) ORDER BY r.table_name LOOP
        IF to_regclass(format('vms.%I', p.table_name)) IS NULL THEN
            CONTINUE;
        END IF;
        IF p.table_name = 'audit_log' THEN
            -- archived with its hash anchors, never deleted
            table_name := p.table_name;
            deleted := vms.audit_archive_before(now() - p.keep);
            RETURN NEXT;
            CONTINUE;
        END IF;
        EXECUTE format('WITH d AS (DELETE FROM vms.%1$I WHERE ctid = ANY (ARRAY(SELECT ctid FROM vms.%1$I '
                       'WHERE %2$I < now() - $1 AND (%3$s) LIMIT $2)) RETURNING 1) SELECT count(*) FROM d',
                       p.table_name, p.time_column, coalesce(p.only_where, 'true'))
            INTO n USING p.keep, batch;
        table_name := p.table_name;
        deleted := n;
        RETURN NEXT;
    END LOOP;
END $$;
COMMENT ON FUNCTION vms.retention_prune(text, integer) IS
    'delete rows past their retention (vms.retention_policy), at most batch per table and call (audit_log: archived, all at once); returns how many per table';

-- Scheduled runs: cron expressions in the server's time zone.
CREATE TABLE vms.ops_schedule (
    name         text PRIMARY KEY,
    cron         text NOT NULL,
    action       text NOT NULL CHECK (action IN ('alarm_escalate', 'snapshot_day', 'month_close', 'retention_prune',
                                                 'governance_run', 'report_freeze')),
    args         jsonb NOT NULL DEFAULT '{}',
    enabled      boolean NOT NULL DEFAULT true,
    next_run_at  timestamptz,
    last_run_at  timestamptz,
    last_result  text,
    last_error   text
);
INSERT INTO vms.ops_schedule (name, cron, action) VALUES
    ('escalate overdue alarms', '* * * * *', 'alarm_escalate'),
    ('daily snapshot', '10 0 * * *', 'snapshot_day'),
    ('close last month', '30 0 1 * *', 'month_close'),
    ('retention', '0 3 * * *', 'retention_prune'),
    ('governance', '0 2 * * *', 'governance_run'),
    ('freeze report days', '20 0 * * *', 'report_freeze');
COMMENT ON TABLE vms.ops_schedule IS
    'scheduled operations runs (cron: minute hour day month weekday, server time zone): alarm_escalate, snapshot_day (yesterday), month_close (last month), retention_prune, governance_run (args.scope), report_freeze (the report days of the last args.days, default 7, that have ended); vms.ops_run_due runs those due';

CREATE FUNCTION vms.ops_run_due() RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    s vms.ops_schedule;
    n integer := 0;
    res text;
    yesterday date := (now() - interval '1 day')::date;
    last_month date := (date_trunc('month', now()) - interval '1 month')::date;
BEGIN
    FOR s IN SELECT * FROM vms.ops_schedule x
              WHERE x.enabled AND (x.next_run_at IS NULL OR x.next_run_at <= now())
              ORDER BY x.next_run_at NULLS FIRST, x.name FOR UPDATE SKIP LOCKED LOOP
        res := NULL;
        BEGIN
            -- a schedule seen for the first time is only timed, not run
            IF s.next_run_at IS NOT NULL THEN
                CASE s.action
                    WHEN 'alarm_escalate' THEN res := vms.alarm_escalate()::text || ' escalated';
                    WHEN 'snapshot_day' THEN res := vms.ops_snapshot_day(yesterday, s.args ->> 'tz')::text || ' rows';
                    WHEN 'month_close' THEN
                        IF EXISTS (SELECT 1 FROM vms.ops_month m WHERE m.month = last_month) THEN
                            res := 'closed already';
                        ELSE
                            res := vms.ops_month_close(last_month, s.args ->> 'tz')::text || ' rows';
                        END IF;
                    WHEN 'retention_prune' THEN
                        res := (SELECT coalesce(sum(p.deleted), 0) FROM vms.retention_prune() p)::text || ' deleted';
                    WHEN 'governance_run' THEN
                        res := 'run ' || (vms.governance_run(s.args ->> 'scope')).id;
                    WHEN 'report_freeze' THEN
                        -- the ended report days (Asia/Shanghai) of the last args.days from the first data on
                        res := (SELECT coalesce(sum(vms.report_freeze(g::date)), 0)
                                  FROM vms._report_data_start() ds(d),
                                       generate_series(greatest(ds.d, (now() AT TIME ZONE vms._report_tz())::date
                                                                      - coalesce((s.args ->> 'days')::int, 7)),
                                                       (now() AT TIME ZONE vms._report_tz())::date - 1, interval '1 day') g
                                 WHERE ds.d IS NOT NULL)::text || ' rows';
                END CASE;
                n := n + 1;
            END IF;
            UPDATE vms.ops_schedule x SET next_run_at = vms.cron_next(x.cron, now()),
                   last_run_at = CASE WHEN s.next_run_at IS NOT NULL THEN now() ELSE x.last_run_at END,
                   last_result = coalesce(res, x.last_result), last_error = CASE WHEN s.next_run_at IS NOT NULL THEN NULL ELSE x.last_error END
             WHERE x.name = s.name;
        EXCEPTION WHEN OTHERS THEN
            UPDATE vms.ops_schedule x SET next_run_at = vms.cron_next(x.cron, now()), last_run_at = now(),
                   last_error = SQLERRM
             WHERE x.name = s.name;
        END;
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.ops_run_due() IS
    'run the scheduled operations runs that are due (each in its own subtransaction: an error is kept in last_error) and time their next run with vms.cron_next; returns how many ran; call it every minute';
-- Notifications that reach people: routes (a webhook URL or an SMTP
-- server) with a filter, quiet hours and a body template, and the
-- transactional outbox a notifier worker delivers from (at least once,
-- with retries and dead letters; each document carries an id receivers
-- de-duplicate by).  Alarm events people should hear of (vms.alarm_event
-- with notify) and work-order transitions are queued here in the same
-- transaction that records them.  The vms notifier worker
-- (workers/notifier/notifier.c, libcurl) delivers them through
-- vms._notify_claim and vms._notify_result: see README, Operations centre.

CREATE TABLE vms.notify_route (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    kind          text NOT NULL CHECK (kind IN ('webhook', 'smtp')),
    url           text NOT NULL,
    filter        jsonb NOT NULL DEFAULT '{}',
    quiet_hours   jsonb,
    template      text,
    mail_to       text[],
    max_attempts  integer NOT NULL DEFAULT 10 CHECK (max_attempts BETWEEN 1 AND 1000),
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    mail_from     text
);
COMMENT ON COLUMN vms.notify_route.mail_from IS 'sender of this route''s mail (MAIL FROM and From:); NULL: the notifier''s vms.notifier_mail_from';
COMMENT ON TABLE vms.notify_route IS
    'where notifications go: a webhook (http/https URL, JSON POST) or SMTP (smtp/smtps URL, mail_to); filter by levels, sources, fault_types, units, regions, events; quiet_hours {"from","to","tz"}; template with {{placeholders}}';

CREATE TABLE vms.notify_outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    route_id         bigint NOT NULL REFERENCES vms.notify_route (id) ON DELETE CASCADE,
    dedup_key        text NOT NULL UNIQUE,
    doc              jsonb NOT NULL,
    body             text NOT NULL,
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status      text,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    dead_at          timestamptz
);
CREATE INDEX notify_outbox_due_idx ON vms.notify_outbox (next_attempt_at, id) WHERE state = 'pending';
COMMENT ON TABLE vms.notify_outbox IS
    'notifications to deliver, written in the transaction of the event: the document (with dedup_key as its id), the body to send, retries with backoff until max_attempts, then dead';

-- Filter keys; quiet hours and the template come in the same document.
CREATE FUNCTION vms.notify_route_add(name text, url text, filter jsonb DEFAULT '{}') RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    f jsonb := coalesce(filter, '{}');
    bad text;
    k text;
    route_id bigint;
BEGIN
    IF coalesce(btrim(name), '') = '' THEN
        RAISE EXCEPTION 'a notification route needs a name' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    k := CASE WHEN url ~* '^https?://[^/\s]+' THEN 'webhook' WHEN url ~* '^smtps?://[^/\s]+' THEN 'smtp' END;
    IF k IS NULL THEN
        RAISE EXCEPTION 'notification route URL "%" is neither http(s) nor smtp(s)', url
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A webhook is an http:// or https:// URL; mail goes through an smtp:// or smtps:// server.';
    END IF;
    IF jsonb_typeof(f) <> 'object' THEN
        RAISE EXCEPTION 'a notification filter must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT x INTO bad FROM jsonb_object_keys(f) x
     WHERE x NOT IN ('levels', 'sources', 'fault_types', 'units', 'regions', 'events', 'quiet_hours', 'template', 'mail_to',
                     'max_attempts', 'mail_from') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown notification filter key "%"', bad
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Keys: levels, sources, fault_types, units, regions, events (arrays); quiet_hours {"from": "22:00", "to": "07:00", "tz": "Asia/Shanghai"}; template; mail_to; mail_from; max_attempts.';
    END IF;
    SELECT x INTO bad FROM jsonb_each(f) e(x, v)
     WHERE x IN ('levels', 'sources', 'fault_types', 'units', 'regions', 'events', 'mail_to') AND jsonb_typeof(v) <> 'array' LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'notification filter key "%" must be an array', bad USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT x INTO bad FROM jsonb_array_elements_text(coalesce(f -> 'events', '[]')) x
     WHERE x NOT IN ('raised', 'escalated', 'cleared', 'unsuppressed', 'work_order') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown notification event "%"', bad
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Events: raised, escalated, cleared, unsuppressed, work_order.';
    END IF;
    IF f ? 'quiet_hours' THEN
        BEGIN
            PERFORM (f #>> '{quiet_hours,from}')::time, (f #>> '{quiet_hours,to}')::time,
                    now() AT TIME ZONE coalesce(f #>> '{quiet_hours,tz}', current_setting('TimeZone'));
            IF f #>> '{quiet_hours,from}' IS NULL OR f #>> '{quiet_hours,to}' IS NULL THEN
                RAISE EXCEPTION 'incomplete';
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'quiet_hours must be {"from": "HH:MM", "to": "HH:MM", "tz": "zone"}'
                USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Given: %s.', f -> 'quiet_hours');
        END;
    END IF;
    IF f ? 'mail_from' AND (jsonb_typeof(f -> 'mail_from') <> 'string' OR f ->> 'mail_from' !~ '^[^\s<>@,]+@[^\s<>@,]+$') THEN
        RAISE EXCEPTION 'mail_from must be one address like "vms@example.org"' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('Given: %s.', f -> 'mail_from');
    END IF;
    -- every recipient one address: it goes into To: and RCPT TO, where a
    -- line break would add headers or SMTP commands
    SELECT x::text INTO bad FROM jsonb_array_elements(coalesce(f -> 'mail_to', '[]')) x
     WHERE jsonb_typeof(x) <> 'string' OR x #>> '{}' !~ '^[^\s<>@,]+@[^\s<>@,]+$' LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'every mail_to element must be one address like "ops@example.org"'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Given: %s.', bad);
    END IF;
    IF k = 'smtp' AND jsonb_array_length(coalesce(f -> 'mail_to', '[]')) = 0 THEN
        RAISE EXCEPTION 'a mail route needs recipients' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Give "mail_to": ["ops@example.org"] in the filter document.';
    END IF;
    INSERT INTO vms.notify_route (name, kind, url, filter, quiet_hours, template, mail_to, max_attempts, mail_from)
    VALUES (btrim(notify_route_add.name), k, url,
            f - 'quiet_hours' - 'template' - 'mail_to' - 'max_attempts' - 'mail_from', f -> 'quiet_hours', f ->> 'template',
            ARRAY(SELECT jsonb_array_elements_text(coalesce(f -> 'mail_to', '[]'))),
            coalesce((f ->> 'max_attempts')::int, 10), f ->> 'mail_from')
    RETURNING id INTO route_id;
    RETURN route_id;
END $$;
COMMENT ON FUNCTION vms.notify_route_add(text, text, jsonb) IS
    'add a notification route: url http(s) (webhook) or smtp(s) (mail); filter keys levels, sources, fault_types, units (ids), regions (civil-code prefixes), events (raised, escalated, cleared, unsuppressed, work_order), and quiet_hours, template, mail_to, mail_from, max_attempts';

-- {{name}} in a template: the document's value at that key (a path with
-- dots for nested keys), escaped as the inside of a JSON string.
CREATE FUNCTION vms.notify_render(template text, doc jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path FROM CURRENT AS $$
DECLARE
    out text := '';
    rest text := template;
    m text[];
    v text;
BEGIN
    IF template IS NULL THEN
        RETURN doc::text;
    END IF;
    LOOP
        m := regexp_match(rest, '^(.*?)\{\{\s*([A-Za-z0-9_.]+)\s*\}\}(.*)$', 's');
        EXIT WHEN m IS NULL;
        v := doc #>> string_to_array(m[2], '.');
        out := out || m[1] || coalesce(substr(to_jsonb(coalesce(v, ''))::text, 2, length(to_jsonb(coalesce(v, ''))::text) - 2), '');
        rest := m[3];
    END LOOP;
    RETURN out || rest;
END $$;
COMMENT ON FUNCTION vms.notify_render(text, jsonb) IS
    'a body from a template: each {{key}} or {{a.b}} replaced by the document''s value, JSON-string-escaped (so DingTalk and WeCom robot bodies need no code); no template: the document itself';

-- The time a notification may go: now, or the end of the route's quiet hours.
CREATE FUNCTION vms._notify_not_before(q jsonb, at timestamptz) RETURNS timestamptz
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    tz text := coalesce(q ->> 'tz', current_setting('TimeZone'));
    f time := (q ->> 'from')::time;
    t time := (q ->> 'to')::time;
    local timestamp := at AT TIME ZONE tz;
    lt time := local::time;
BEGIN
    IF q IS NULL OR f = t THEN
        RETURN at;
    END IF;
    IF f < t AND lt >= f AND lt < t THEN
        RETURN (local::date + t) AT TIME ZONE tz;
    ELSIF f > t AND (lt >= f OR lt < t) THEN
        RETURN (CASE WHEN lt >= f THEN local::date + 1 ELSE local::date END + t) AT TIME ZONE tz;
    END IF;
    RETURN at;
END $$;
COMMENT ON FUNCTION vms._notify_not_before(jsonb, timestamptz) IS 'internal: when a notification may be sent: at once, or when the quiet hours end';

CREATE FUNCTION vms._notify_enqueue(kind text, source_id bigint, doc jsonb, level smallint, source text, fault_type text,
                                    code vms.gbcode) RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_variable
DECLARE
    n integer;
    unit bigint;
    civil text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.notify_route x WHERE x.enabled) THEN
        RETURN 0;
    END IF;
    SELECT coalesce(c.unit_id, d.unit_id), coalesce(c.civil_code, d.civil_code) INTO unit, civil
      FROM vms.channel c JOIN vms.device d ON d.code = c.device_code WHERE c.code = _notify_enqueue.code;
    IF NOT FOUND THEN
        SELECT d.unit_id, d.civil_code INTO unit, civil FROM vms.device d WHERE d.code = _notify_enqueue.code;
    END IF;
    INSERT INTO vms.notify_outbox (route_id, dedup_key, doc, body, next_attempt_at)
    SELECT r.id, format('vms:%s:%s:%s', r.id, kind, source_id),
           doc || jsonb_build_object('id', format('vms:%s:%s:%s', r.id, kind, source_id), 'route', r.name),
           vms.notify_render(r.template, doc || jsonb_build_object('id', format('vms:%s:%s:%s', r.id, kind, source_id),
                                                                    'route', r.name)),
           vms._notify_not_before(r.quiet_hours, now())
      FROM vms.notify_route r
     WHERE r.enabled
       AND (NOT r.filter ? 'events' OR (CASE WHEN kind = 'alarm' THEN doc ->> 'event' ELSE 'work_order' END)
                                       IN (SELECT jsonb_array_elements_text(r.filter -> 'events')))
       AND (NOT r.filter ? 'levels' OR level::text IN (SELECT jsonb_array_elements_text(r.filter -> 'levels')))
       AND (NOT r.filter ? 'sources' OR source IN (SELECT jsonb_array_elements_text(r.filter -> 'sources')))
       AND (NOT r.filter ? 'fault_types' OR fault_type IN (SELECT jsonb_array_elements_text(r.filter -> 'fault_types')))
       AND (NOT r.filter ? 'units' OR unit::text IN (SELECT jsonb_array_elements_text(r.filter -> 'units')))
       AND (NOT r.filter ? 'regions' OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(r.filter -> 'regions') p
                                                 WHERE civil LIKE p || '%'))
    ON CONFLICT (dedup_key) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms._notify_enqueue(text, bigint, jsonb, smallint, text, text, vms.gbcode) IS
    'internal: queue one event for every enabled route whose filter matches (in the event''s transaction)';

-- SECURITY DEFINER trigger: whoever may record an alarm event (alarm_raise
-- runs with the caller's rights; a DBA may grant INSERT on the alarm tables
-- to an operator role) must not fail once a route exists for want of
-- privileges on vms.notify_route, vms.notify_outbox or the internal
-- vms._notify_enqueue.  It trusts nothing from the caller but the rows the
-- statement inserted (the transition table) and the alarms they name; what
-- is queued and where it goes comes from the routes.  Not executable by
-- PUBLIC (99_privileges.sql): it only runs as the trigger.
CREATE FUNCTION vms._notify_alarm_events() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    e record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.notify_route WHERE enabled) THEN
        RETURN NULL;
    END IF;
    FOR e IN SELECT n.id, n.kind, n.level, n.at, n.actor, n.detail, a.id AS alarm_id, a.code, a.fault_type, a.source,
                    a.occurrences, a.first_raised_at, a.respond_by, a.fix_by, a.clear_reason,
                    (SELECT l.name_zh FROM vms.alarm_level l WHERE l.level = n.level) AS level_name
               FROM new_rows n JOIN vms.alarm a ON a.id = n.alarm_id
              WHERE n.notify ORDER BY n.id LOOP
        PERFORM vms._notify_enqueue('alarm', e.id,
            jsonb_strip_nulls(jsonb_build_object(
                'type', 'alarm', 'event', e.kind, 'alarm_id', e.alarm_id, 'code', e.code::text, 'fault_type', e.fault_type,
                'level', e.level, 'level_name', e.level_name, 'source', e.source, 'at', e.at, 'actor', e.actor,
                'occurrences', e.occurrences, 'first_raised_at', e.first_raised_at, 'respond_by', e.respond_by,
                'fix_by', e.fix_by, 'reason', coalesce(e.detail ->> 'reason', e.clear_reason), 'detail', e.detail)),
            e.level, e.source, e.fault_type, e.code);
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._notify_alarm_events() IS 'internal: alarm events people should hear of into the notification outbox';
CREATE TRIGGER alarm_event_notify AFTER INSERT ON vms.alarm_event
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._notify_alarm_events();

-- SECURITY DEFINER trigger, for the same reason as vms._notify_alarm_events:
-- a role that may move work orders must not need privileges on the routes,
-- the outbox or the internal vms._notify_enqueue.  It trusts only the
-- transition rows the statement inserted (and the work orders and alarms
-- they name).  Not executable by PUBLIC: it only runs as the trigger.
CREATE FUNCTION vms._notify_work_orders() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    e record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.notify_route WHERE enabled) THEN
        RETURN NULL;
    END IF;
    FOR e IN SELECT n.id, n.from_state, n.to_state, n.actor, n.at, n.note, w.id AS order_id, w.assignee,
                    a.id AS alarm_id, a.code, a.fault_type, a.level, a.source
               FROM new_rows n JOIN vms.work_order w ON w.id = n.work_order_id JOIN vms.alarm a ON a.id = w.alarm_id
              ORDER BY n.id LOOP
        PERFORM vms._notify_enqueue('work_order', e.id,
            jsonb_strip_nulls(jsonb_build_object(
                'type', 'work_order', 'event', 'work_order', 'work_order_id', e.order_id, 'from_state', e.from_state,
                'state', e.to_state, 'assignee', e.assignee, 'actor', e.actor, 'at', e.at, 'note', e.note,
                'alarm_id', e.alarm_id, 'code', e.code::text, 'fault_type', e.fault_type, 'level', e.level)),
            e.level, e.source, e.fault_type, e.code);
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._notify_work_orders() IS 'internal: work-order transitions into the notification outbox';
CREATE TRIGGER work_order_transition_notify AFTER INSERT ON vms.work_order_transition
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._notify_work_orders();

-- For the delivering worker: take due notifications, report outcomes.
-- The claim commits before the sends (no transaction across the network),
-- so it leases the rows: their next_attempt_at moves past the time the
-- worker may need to send them (twice vms.notifier_timeout_ms for each
-- round of vms.notifier_concurrency requests the batch takes), and a second
-- notifier skips them until then.  vms._notify_result ends the lease (a
-- retry sets the next attempt); a notifier that dies mid-batch leaves its
-- rows to be taken again when the lease runs out (at least once).
CREATE FUNCTION vms._notify_claim(lim integer DEFAULT 100)
    RETURNS TABLE (id bigint, kind text, url text, mail_to text[], dedup_key text, body text)
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    WITH due AS (
        SELECT q.id FROM vms.notify_outbox q WHERE q.state = 'pending' AND q.next_attempt_at <= now()
         ORDER BY q.next_attempt_at, q.id LIMIT lim FOR UPDATE SKIP LOCKED
    ), leased AS (
        UPDATE vms.notify_outbox o
           SET next_attempt_at = now() + 2
                   * coalesce(nullif(current_setting('vms.notifier_timeout_ms', true), '')::interval, interval '10 seconds')
                   * ceil(greatest(lim, 1)::numeric
                          / coalesce(nullif(current_setting('vms.notifier_concurrency', true), '')::integer, 16))::integer
          FROM due WHERE o.id = due.id
        RETURNING o.id, o.route_id, o.dedup_key, o.body
    )
    SELECT l.id, r.kind, r.url, r.mail_to, l.dedup_key, l.body
      FROM leased l JOIN vms.notify_route r ON r.id = l.route_id
     ORDER BY l.id
$$;
COMMENT ON FUNCTION vms._notify_claim(integer) IS
    'internal: due notifications for the notifier, leased (next_attempt_at moved past the time their sending may take) so that another notifier skips them';

CREATE FUNCTION vms._notify_result(outbox_id bigint, ok boolean, status text, error text) RETURNS text
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    o vms.notify_outbox;
    r vms.notify_route;
BEGIN
    SELECT * INTO o FROM vms.notify_outbox x WHERE x.id = outbox_id FOR UPDATE;
    IF NOT FOUND OR o.state <> 'pending' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO r FROM vms.notify_route x WHERE x.id = o.route_id;
    IF ok THEN
        UPDATE vms.notify_outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = now(),
               last_status = status, last_error = NULL WHERE id = o.id;
        RETURN 'delivered';
    ELSIF o.attempts + 1 >= r.max_attempts THEN
        UPDATE vms.notify_outbox SET state = 'dead', attempts = attempts + 1, dead_at = now(),
               last_status = status, last_error = error WHERE id = o.id;
        RETURN 'dead';
    END IF;
    -- back off: 10 s, 20 s, 40 s ... at most an hour
    UPDATE vms.notify_outbox SET attempts = attempts + 1, last_status = status, last_error = error,
           next_attempt_at = now() + least(interval '10 seconds' * power(2, o.attempts), interval '1 hour')
     WHERE id = o.id;
    RETURN 'retry';
END $$;
COMMENT ON FUNCTION vms._notify_result(bigint, boolean, text, text) IS
    'internal: the notifier reports a delivery: delivered, or retried with backoff, or dead after the route''s max_attempts';

CREATE FUNCTION vms.notify_redrive(ids bigint[] DEFAULT NULL) RETURNS integer
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    WITH r AS (UPDATE vms.notify_outbox SET state = 'pending', attempts = 0, next_attempt_at = now(), dead_at = NULL
                WHERE state = 'dead' AND (ids IS NULL OR id = ANY (ids)) RETURNING 1)
    SELECT count(*)::int FROM r
$$;
COMMENT ON FUNCTION vms.notify_redrive(bigint[]) IS 'send dead notifications again (all, or the given ids); returns how many';

INSERT INTO vms.retention_policy (table_name, time_column, keep, only_where)
VALUES ('notify_outbox', 'created_at', '30 days', 'state <> ''pending''');
-- Reports (运维报表): the O&M daily, weekly, monthly, quarterly and annual
-- reports as one self-contained HTML document (inline CSS and SVG, no
-- script, nothing fetched), built on the operations centre's figures.
--
-- Days.  Report days run midnight to midnight in China Standard Time
-- (Asia/Shanghai), whatever the session's time zone, so a report reads the
-- same everywhere.  A day's facts per channel (availability from
-- vms._availability_ranges, inspections, alarms, work orders, governance)
-- are frozen into the vms.report_* tables once the day is over: by
-- vms.report_freeze, or the first time a report needs the day.  A closed
-- period is built from frozen facts only, so its document never changes;
-- only the current day of an open period is computed live, and only an
-- open period's document shows when it was generated.
--
-- Permissions.  vms.report_html and vms.report_figures are SECURITY
-- DEFINER (they freeze days as the owner and read the owner's operations
-- tables) and keep only the channels vms.channel_visible_to allows the role
-- the session acts as (vms._acting_role()); a device's alarm counts when
-- one of its visible channels does.  The report_* tables carry row-level
-- security on the same rule for the plain views.

CREATE TABLE vms.report_frozen_day (
    day        date PRIMARY KEY,
    frozen_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.report_frozen_day IS
    'report days (Asia/Shanghai) whose facts are frozen in vms.report_channel_day, report_alarm_day, report_order_day and report_governance_day';

CREATE TABLE vms.report_channel_day (
    day              date NOT NULL,
    code             vms.gbcode NOT NULL,
    device_code      vms.gbcode NOT NULL,
    name             text,
    device_name      text,
    unit_id          bigint,
    unit_name        text,
    civil_code       text,
    region_name      text,
    contractor       text,
    lon              float8,
    lat              float8,
    online_seconds   float8 NOT NULL,
    offline_seconds  float8 NOT NULL,
    unknown_seconds  float8 NOT NULL,
    offline_events   integer NOT NULL,
    state_at_end     text NOT NULL CHECK (state_at_end IN ('online', 'offline', 'unknown')),
    inspections      integer NOT NULL,
    stream_ok        integer NOT NULL,
    image_ok         integer NOT NULL,
    faults           jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (day, code)
);
COMMENT ON TABLE vms.report_channel_day IS
    'frozen report facts per channel and day (Asia/Shanghai): ledger attributes as at the freeze, online/offline/unknown seconds, outages begun, state at the day''s end, inspections with streams pulled and pictures usable, inspection faults by check';

CREATE TABLE vms.report_alarm_day (
    day          date NOT NULL,
    alarm_id     bigint NOT NULL,
    code         vms.gbcode NOT NULL,
    device_code  vms.gbcode NOT NULL,
    civil_code   text,
    unit_id      bigint,
    contractor   text,
    fault_type   text NOT NULL,
    level        smallint NOT NULL,
    raised       boolean NOT NULL,
    cleared      boolean NOT NULL,
    met_fix      boolean,
    overdue      boolean NOT NULL,
    fix_by       timestamptz,
    cleared_at   timestamptz,
    PRIMARY KEY (day, alarm_id)
);
COMMENT ON TABLE vms.report_alarm_day IS
    'frozen report facts per alarm and day (not masked, not suppressed): raised that day, cleared that day (met_fix: by its fix deadline), fix deadline fell that day unmet (overdue)';

CREATE TABLE vms.report_order_day (
    day                 date NOT NULL,
    work_order_id       bigint NOT NULL,
    code                vms.gbcode NOT NULL,
    device_code         vms.gbcode NOT NULL,
    civil_code          text,
    unit_id             bigint,
    contractor          text,
    level               smallint NOT NULL,
    response_seconds    float8,
    on_site_seconds     float8,
    resolution_seconds  float8,
    PRIMARY KEY (day, work_order_id)
);
COMMENT ON TABLE vms.report_order_day IS
    'frozen report facts per work order opened that day: response, on-site and resolution seconds as at the freeze (vms.work_order_kpi)';

CREATE TABLE vms.report_governance_day (
    day          date NOT NULL,
    unit_key     text NOT NULL,
    unit_name    text,
    channels     bigint,
    fill_rate    numeric,
    pass_rate    numeric,
    naming_rate  numeric,
    tag_rate     numeric,
    image_rate   numeric,
    open_tasks   jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (day, unit_key)
);
COMMENT ON TABLE vms.report_governance_day IS
    'frozen governance metrics per unit and day (填报率 合格率 规范率 标注率 出图率: the day''s vms.ops_daily snapshot when taken, else as at a freeze made the next day; NULL for older days frozen later) and the governance tasks open at the day''s end by rule';

ALTER TABLE vms.report_channel_day ENABLE ROW LEVEL SECURITY;
CREATE POLICY report_channel_day_visible ON vms.report_channel_day FOR SELECT USING (vms.code_visible(code));
ALTER TABLE vms.report_alarm_day ENABLE ROW LEVEL SECURITY;
CREATE POLICY report_alarm_day_visible ON vms.report_alarm_day FOR SELECT
    USING (EXISTS (SELECT 1 FROM vms.channel c WHERE c.code = report_alarm_day.code OR c.device_code = report_alarm_day.code));
ALTER TABLE vms.report_order_day ENABLE ROW LEVEL SECURITY;
CREATE POLICY report_order_day_visible ON vms.report_order_day FOR SELECT
    USING (EXISTS (SELECT 1 FROM vms.channel c WHERE c.code = report_order_day.code OR c.device_code = report_order_day.code));

CREATE FUNCTION vms._report_tz() RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN 'Asia/Shanghai';
COMMENT ON FUNCTION vms._report_tz() IS 'internal: the time zone of report days (China Standard Time)';

CREATE FUNCTION vms._report_esc(s text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN replace(replace(replace(replace(replace(coalesce(s, ''), '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '"', '&quot;'), '''', '&#39;');
COMMENT ON FUNCTION vms._report_esc(text) IS 'internal: text escaped for HTML';

-- The first day with data: the earliest device transition, catalog status
-- change or inspection, as a report day; NULL when there is none.
CREATE FUNCTION vms._report_data_start() RETURNS date
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT (least((SELECT min(at) FROM vms.device_event WHERE event IN ('online', 'offline')),
                  (SELECT min(at) FROM vms.channel_status_event),
                  (SELECT min(at) FROM vms.quality_result),
                  (SELECT min(day)::timestamp AT TIME ZONE vms._report_tz() FROM vms.report_frozen_day))
            AT TIME ZONE vms._report_tz())::date
$$;
COMMENT ON FUNCTION vms._report_data_start() IS
    'internal: the first report day with data (device transitions, catalog status, inspections, frozen days)';

-- A day's facts, computed now (what the freeze stores).
CREATE FUNCTION vms._report_channel_facts(d date) RETURNS SETOF vms.report_channel_day
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    WITH p AS (SELECT d::timestamp AT TIME ZONE vms._report_tz() AS f, (d + 1)::timestamp AT TIME ZONE vms._report_tz() AS t),
    a AS (SELECT r.* FROM p, vms._availability_ranges(p.f, p.t, 'channel') r),
    q AS (SELECT q.channel_code AS code, count(*)::int AS n, count(*) FILTER (WHERE q.stream_ok)::int AS s,
                 count(*) FILTER (WHERE q.image_ok)::int AS i
            FROM vms.quality_result q, p WHERE q.at >= p.f AND q.at < p.t GROUP BY 1),
    qf AS (SELECT x.code, jsonb_object_agg(x.k, x.n) AS faults FROM (
               SELECT q.channel_code AS code, ab AS k, count(*) AS n
                 FROM vms.quality_result q, p, unnest(q.abnormal) ab
                WHERE q.at >= p.f AND q.at < p.t GROUP BY 1, 2) x GROUP BY 1)
    SELECT d, c.code, c.device_code, c.name, dv.name, coalesce(c.unit_id, dv.unit_id),
           (SELECT u.name FROM vms.org_unit u WHERE u.id = coalesce(c.unit_id, dv.unit_id)),
           coalesce(c.civil_code, dv.civil_code),
           (SELECT r.name FROM vms.region r WHERE r.civil_code = coalesce(c.civil_code, dv.civil_code)),
           (SELECT k.contractor FROM vms.maintenance_contract k WHERE k.id = vms.contract_for(c.code)),
           ST_X(c.geom), ST_Y(c.geom),
           vms._mr_seconds(a.online), vms._mr_seconds(a.offline),
           vms._mr_seconds(a.period) - vms._mr_seconds(a.online) - vms._mr_seconds(a.offline),
           a.offline_events,
           CASE WHEN upper(a.online) = upper(a.period) THEN 'online'
                WHEN upper(a.offline) = upper(a.period) THEN 'offline' ELSE 'unknown' END,
           coalesce(q.n, 0), coalesce(q.s, 0), coalesce(q.i, 0), coalesce(qf.faults, '{}')
      FROM a JOIN vms.channel c ON c.code = a.code JOIN vms.device dv ON dv.code = c.device_code
      LEFT JOIN q ON q.code = c.code LEFT JOIN qf ON qf.code = c.code
$$;
COMMENT ON FUNCTION vms._report_channel_facts(date) IS 'internal: a report day''s facts per channel, computed now';

CREATE FUNCTION vms._report_alarm_facts(d date) RETURNS SETOF vms.report_alarm_day
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    WITH p AS (SELECT d::timestamp AT TIME ZONE vms._report_tz() AS f, (d + 1)::timestamp AT TIME ZONE vms._report_tz() AS t)
    SELECT d, a.id, a.code, coalesce(c.device_code, a.code), coalesce(c.civil_code, dv.civil_code),
           coalesce(c.unit_id, dv.unit_id),
           (SELECT k.contractor FROM vms.maintenance_contract k WHERE k.id = a.contract_id),
           a.fault_type, a.level,
           a.first_raised_at >= p.f AND a.first_raised_at < p.t,
           coalesce(a.cleared_at >= p.f AND a.cleared_at < p.t, false),
           CASE WHEN a.cleared_at >= p.f AND a.cleared_at < p.t AND a.fix_by IS NOT NULL THEN a.cleared_at <= a.fix_by END,
           coalesce(a.fix_by >= p.f AND a.fix_by < p.t AND a.fix_by < now()
                    AND (a.cleared_at IS NULL OR a.cleared_at > a.fix_by), false),
           a.fix_by, CASE WHEN a.cleared_at < p.t THEN a.cleared_at END
      FROM p, vms.alarm a
      LEFT JOIN vms.channel c ON c.code = a.code
      LEFT JOIN vms.device dv ON dv.code = coalesce(c.device_code, a.code)
     WHERE a.mask_id IS NULL AND a.root_alarm_id IS NULL
       AND ((a.first_raised_at >= p.f AND a.first_raised_at < p.t)
            OR (a.cleared_at >= p.f AND a.cleared_at < p.t)
            OR (a.fix_by >= p.f AND a.fix_by < p.t AND a.fix_by < now() AND (a.cleared_at IS NULL OR a.cleared_at > a.fix_by)))
$$;
COMMENT ON FUNCTION vms._report_alarm_facts(date) IS 'internal: a report day''s alarm facts, computed now';

CREATE FUNCTION vms._report_order_facts(d date) RETURNS SETOF vms.report_order_day
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    WITH p AS (SELECT d::timestamp AT TIME ZONE vms._report_tz() AS f, (d + 1)::timestamp AT TIME ZONE vms._report_tz() AS t)
    SELECT d, k.work_order_id, k.code, coalesce(c.device_code, k.code), coalesce(c.civil_code, dv.civil_code),
           coalesce(c.unit_id, dv.unit_id),
           (SELECT m.contractor FROM vms.maintenance_contract m WHERE m.id = k.contract_id),
           k.level, k.response_seconds, k.on_site_seconds, k.resolution_seconds
      FROM p, vms.work_order_kpi k
      LEFT JOIN vms.channel c ON c.code = k.code
      LEFT JOIN vms.device dv ON dv.code = coalesce(c.device_code, k.code)
     WHERE k.opened_at >= p.f AND k.opened_at < p.t
$$;
COMMENT ON FUNCTION vms._report_order_facts(date) IS 'internal: the work orders opened on a report day with their KPIs, computed now';

CREATE FUNCTION vms._report_governance_facts(d date) RETURNS SETOF vms.report_governance_day
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    WITH t AS (SELECT (d + 1)::timestamp AT TIME ZONE vms._report_tz() AS t),
    m AS (
        SELECT coalesce(g.unit_id, '') AS unit_key, g.unit AS unit_name, g.channels, g.fill_rate, g.pass_rate,
               g.naming_rate, g.tag_rate, g.image_rate
          FROM vms.governance_metrics_by_unit() g
         WHERE d >= (now() AT TIME ZONE vms._report_tz())::date - 1
           AND NOT EXISTS (SELECT 1 FROM vms.ops_daily o WHERE o.day = d AND o.group_by = 'unit' AND o.governance IS NOT NULL)
        UNION ALL
        SELECT o.group_key, o.group_name, (o.governance ->> 'channels')::bigint, (o.governance ->> 'fill_rate')::numeric,
               (o.governance ->> 'pass_rate')::numeric, (o.governance ->> 'naming_rate')::numeric,
               (o.governance ->> 'tag_rate')::numeric, (o.governance ->> 'image_rate')::numeric
          FROM vms.ops_daily o WHERE o.day = d AND o.group_by = 'unit' AND o.governance IS NOT NULL),
    tk AS (
        SELECT x.unit_key, jsonb_object_agg(x.rule_code, x.n) AS open_tasks FROM (
            SELECT coalesce(coalesce(gt.unit_id, c.unit_id)::text, '') AS unit_key, gt.rule_code, count(*) AS n
              FROM t, vms.governance_task gt LEFT JOIN vms.channel c ON c.code = gt.channel_code
             WHERE gt.first_found_at < t.t
               AND (gt.closed_at >= t.t OR (gt.closed_at IS NULL AND gt.state IN ('open', 'assigned')))
             GROUP BY 1, 2) x GROUP BY 1)
    SELECT d, coalesce(m.unit_key, tk.unit_key), coalesce(m.unit_name, (SELECT u.name FROM vms.org_unit u WHERE u.id::text = tk.unit_key)),
           m.channels, m.fill_rate, m.pass_rate, m.naming_rate, m.tag_rate, m.image_rate, coalesce(tk.open_tasks, '{}')
      FROM m FULL JOIN tk ON tk.unit_key = m.unit_key
$$;
COMMENT ON FUNCTION vms._report_governance_facts(date) IS
    'internal: governance metrics per unit for a report day (its vms.ops_daily snapshot, else now for yesterday and today; none for older days) and the tasks open at its end by rule';

CREATE FUNCTION vms.report_freeze(day date) RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n integer;
    k integer;
BEGIN
    IF report_freeze.day IS NULL THEN
        RAISE EXCEPTION 'a report freeze needs a day' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Give a day that has ended in China Standard Time.';
    END IF;
    IF (report_freeze.day + 1)::timestamp AT TIME ZONE vms._report_tz() > now() THEN
        RAISE EXCEPTION 'report day % is not over', to_char(report_freeze.day, 'YYYY-MM-DD')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Report days run midnight to midnight in China Standard Time (Asia/Shanghai).',
                  HINT = 'Freeze days that have ended; the current day of a report is computed live.';
    END IF;
    INSERT INTO vms.report_frozen_day (day) VALUES (report_freeze.day) ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        RETURN 0;   -- frozen already (or by a concurrent session, which we waited for)
    END IF;
    INSERT INTO vms.report_channel_day SELECT * FROM vms._report_channel_facts(report_freeze.day);
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO vms.report_alarm_day SELECT * FROM vms._report_alarm_facts(report_freeze.day);
    GET DIAGNOSTICS k = ROW_COUNT;
    n := n + k;
    INSERT INTO vms.report_order_day SELECT * FROM vms._report_order_facts(report_freeze.day);
    GET DIAGNOSTICS k = ROW_COUNT;
    n := n + k;
    INSERT INTO vms.report_governance_day SELECT * FROM vms._report_governance_facts(report_freeze.day);
    GET DIAGNOSTICS k = ROW_COUNT;
    RETURN n + k;
END $$;
COMMENT ON FUNCTION vms.report_freeze(date) IS
    'freeze a report day (Asia/Shanghai) that has ended: its facts per channel, alarm, work order and unit go into the vms.report_* tables once and never change; returns the rows stored (0 when frozen already); reports freeze the days they need by themselves';

-- A period: [f, t) of report days, and the previous one of the same kind.
CREATE FUNCTION vms._report_period(kind text, period_start date,
                                   OUT f date, OUT t date, OUT pf date, OUT pt date, OUT title text)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    step interval;
    ds date;
BEGIN
    IF kind IS NULL OR kind NOT IN ('daily', 'weekly', 'monthly', 'quarterly', 'annual') THEN
        RAISE EXCEPTION 'unknown report kind "%"', coalesce(kind, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use daily, weekly, monthly, quarterly or annual.';
    END IF;
    IF period_start IS NULL OR NOT isfinite(period_start) THEN
        RAISE EXCEPTION 'a report needs the first day of its period'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Give the period''s first day, e.g. date ''2026-03-01''.';
    END IF;
    step := CASE kind WHEN 'daily' THEN interval '1 day' WHEN 'weekly' THEN interval '7 days'
                      WHEN 'monthly' THEN interval '1 month' WHEN 'quarterly' THEN interval '3 months'
                      ELSE interval '1 year' END;
    IF (kind = 'weekly' AND extract(isodow FROM period_start) <> 1)
       OR (kind = 'monthly' AND extract(day FROM period_start) <> 1)
       OR (kind = 'quarterly' AND (extract(day FROM period_start) <> 1 OR extract(month FROM period_start)::int % 3 <> 1))
       OR (kind = 'annual' AND to_char(period_start, 'MM-DD') <> '01-01') THEN
        RAISE EXCEPTION 'a % report cannot start on %', kind, to_char(period_start, 'YYYY-MM-DD')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = CASE kind WHEN 'weekly' THEN 'Weeks start on Monday.' WHEN 'monthly' THEN 'Give the first day of the month.'
                                   WHEN 'quarterly' THEN 'Give the first day of January, April, July or October.'
                                   ELSE 'Give the first of January.' END;
    END IF;
    f := period_start;
    t := (period_start + step)::date;
    pf := (period_start - step)::date;
    pt := period_start;
    IF f::timestamp AT TIME ZONE vms._report_tz() > now() THEN
        RAISE EXCEPTION 'the % report of % has not started', kind, to_char(f, 'YYYY-MM-DD')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Report days run midnight to midnight in China Standard Time (Asia/Shanghai).',
                  HINT = 'Ask for a period that has begun; the current one is reported as partial.';
    END IF;
    ds := vms._report_data_start();
    IF ds IS NULL OR t <= ds THEN
        RAISE EXCEPTION 'the % report of % is before any data', kind, to_char(f, 'YYYY-MM-DD')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = CASE WHEN ds IS NULL THEN 'Nothing has been recorded yet.'
                                ELSE format('The first data is of %s.', to_char(ds, 'YYYY-MM-DD')) END,
                  HINT = 'Ask for a period from the first day with data on.';
    END IF;
    title := CASE kind WHEN 'daily' THEN '日报' WHEN 'weekly' THEN '周报' WHEN 'monthly' THEN '月报'
                       WHEN 'quarterly' THEN '季报' ELSE '年报' END;
END $$;
COMMENT ON FUNCTION vms._report_period(text, date) IS
    'internal: a report period [f, t) and the previous one [pf, pt); 22023 for an unknown kind, a misaligned start, a period not started or before any data';

-- Load the facts of [pf, t) the acting role may see into temporary tables
-- (pg_temp.report_cd, report_al, report_wo, report_gv), freezing the days
-- that have ended.  Days not begun and days before the first data have no
-- rows: they are missing, never zero.
CREATE FUNCTION vms._report_load(pf date, t date, role oid) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    d date;
    ds date := vms._report_data_start();
    today date := (now() AT TIME ZONE vms._report_tz())::date;
BEGIN
    IF to_regclass('pg_temp.report_cd') IS NOT NULL THEN   -- a report earlier in this transaction
        DROP TABLE IF EXISTS pg_temp.report_cd, pg_temp.report_al, pg_temp.report_wo, pg_temp.report_gv, pg_temp.report_vis,
                             pg_temp.report_hidden;
    END IF;
    CREATE TEMP TABLE report_cd (LIKE vms.report_channel_day) ON COMMIT DROP;
    CREATE TEMP TABLE report_al (LIKE vms.report_alarm_day) ON COMMIT DROP;
    CREATE TEMP TABLE report_wo (LIKE vms.report_order_day) ON COMMIT DROP;
    CREATE TEMP TABLE report_gv (LIKE vms.report_governance_day) ON COMMIT DROP;
    FOR d IN SELECT g::date FROM generate_series(greatest(pf, ds), least(t - 1, today), interval '1 day') g LOOP
        IF d < today THEN
            PERFORM vms.report_freeze(d);
            INSERT INTO pg_temp.report_cd SELECT * FROM vms.report_channel_day x WHERE x.day = d;
            INSERT INTO pg_temp.report_al SELECT * FROM vms.report_alarm_day x WHERE x.day = d;
            INSERT INTO pg_temp.report_wo SELECT * FROM vms.report_order_day x WHERE x.day = d;
            INSERT INTO pg_temp.report_gv SELECT * FROM vms.report_governance_day x WHERE x.day = d;
        ELSE
            INSERT INTO pg_temp.report_cd SELECT * FROM vms._report_channel_facts(d);
            INSERT INTO pg_temp.report_al SELECT * FROM vms._report_alarm_facts(d);
            INSERT INTO pg_temp.report_wo SELECT * FROM vms._report_order_facts(d);
            INSERT INTO pg_temp.report_gv SELECT * FROM vms._report_governance_facts(d);
        END IF;
    END LOOP;
    -- the channels the role may not see, per day: dropped, and the units
    -- they belong to are not entirely visible
    CREATE TEMP TABLE report_hidden ON COMMIT DROP AS
    SELECT x.day, x.code, coalesce(x.unit_id::text, '') AS unit_key FROM pg_temp.report_cd x
     WHERE NOT vms.channel_visible_to(role, x.code, x.civil_code);
    DELETE FROM pg_temp.report_cd x USING pg_temp.report_hidden h WHERE h.day = x.day AND h.code = x.code;
    -- what the visible channels make visible: themselves, their devices, their units
    CREATE TEMP TABLE report_vis ON COMMIT DROP AS
    SELECT DISTINCT x.code::text AS code FROM pg_temp.report_cd x
    UNION SELECT DISTINCT x.device_code::text FROM pg_temp.report_cd x
    UNION SELECT DISTINCT 'unit:' || coalesce(x.unit_id::text, '') FROM pg_temp.report_cd x;
    CREATE INDEX ON pg_temp.report_vis (code);
    ANALYZE pg_temp.report_vis;
    DELETE FROM pg_temp.report_al x WHERE NOT EXISTS (SELECT 1 FROM pg_temp.report_vis v WHERE v.code = x.code::text);
    DELETE FROM pg_temp.report_wo x WHERE NOT EXISTS (SELECT 1 FROM pg_temp.report_vis v WHERE v.code = x.code::text);
    DELETE FROM pg_temp.report_gv x WHERE NOT EXISTS (SELECT 1 FROM pg_temp.report_vis v WHERE v.code = 'unit:' || x.unit_key);
    DROP TABLE pg_temp.report_vis;
    -- A unit's governance row is counted over all its channels (channels,
    -- rates, open tasks): it is withheld, marked, unless the role sees every
    -- channel of the unit that day and as many as the row counts.
    ALTER TABLE pg_temp.report_gv ADD COLUMN withheld boolean NOT NULL DEFAULT false,
                                  ADD COLUMN tasks_withheld boolean NOT NULL DEFAULT false;
    UPDATE pg_temp.report_gv g
       SET withheld = g.channels IS NOT NULL, tasks_withheld = g.open_tasks <> '{}', channels = NULL, fill_rate = NULL, pass_rate = NULL, naming_rate = NULL,
           tag_rate = NULL, image_rate = NULL, open_tasks = '{}'
     WHERE EXISTS (SELECT 1 FROM pg_temp.report_hidden h WHERE h.day = g.day AND h.unit_key = g.unit_key)
        OR (g.channels IS NOT NULL AND EXISTS (SELECT 1 FROM pg_temp.report_hidden h WHERE h.day = g.day)
            AND g.channels <> (SELECT count(*) FROM pg_temp.report_cd x
                                WHERE x.day = g.day AND coalesce(x.unit_id::text, '') = g.unit_key));
    DROP TABLE pg_temp.report_hidden;
    CREATE INDEX ON pg_temp.report_cd (day);
    CREATE INDEX ON pg_temp.report_cd (code);
    CREATE INDEX ON pg_temp.report_cd (device_code);
    CREATE INDEX ON pg_temp.report_al (alarm_id);
    ANALYZE pg_temp.report_cd;
    ANALYZE pg_temp.report_al;
END $$;
COMMENT ON FUNCTION vms._report_load(date, date, oid) IS
    'internal: the facts of report days [pf, t) a role may see, into temporary tables (days that have ended are frozen first)';

-- The headline figures of report days [f, t) from the loaded facts, one row
-- per figure: NULL when there is nothing to measure (never zero).
CREATE FUNCTION vms._report_summary(f date, t date)
    RETURNS TABLE (figure text, value float8)
    LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH c AS (SELECT sum(x.online_seconds) AS on_s, sum(x.offline_seconds) AS off_s, sum(x.offline_events) AS ev,
                      sum(x.inspections) AS n, sum(x.stream_ok) AS s, sum(x.image_ok) AS i, count(*) AS rows
                 FROM pg_temp.report_cd x WHERE x.day >= f AND x.day < t),
    a AS (SELECT l.level, count(*) FILTER (WHERE x.raised) AS raised, count(*) FILTER (WHERE x.cleared) AS cleared,
                 count(*) FILTER (WHERE x.raised AND NOT EXISTS (
                     SELECT 1 FROM pg_temp.report_al y WHERE y.alarm_id = x.alarm_id AND y.cleared AND y.day < t)) AS open,
                 avg(x.met_fix::int) FILTER (WHERE x.cleared AND x.met_fix IS NOT NULL) AS sla
            FROM generate_series(1, 4) l(level)
            LEFT JOIN pg_temp.report_al x ON x.level = l.level AND x.day >= f AND x.day < t
           GROUP BY l.level),
    w AS (SELECT count(*) AS n, avg(x.response_seconds) AS r, avg(x.on_site_seconds) AS o, avg(x.resolution_seconds) AS z
            FROM pg_temp.report_wo x WHERE x.day >= f AND x.day < t)
    SELECT 'online_ratio', c.on_s / nullif(c.on_s + c.off_s, 0) FROM c
    UNION ALL SELECT 'stream_success_rate', c.s::float8 / nullif(c.n, 0) FROM c
    UNION ALL SELECT 'image_rate', c.i::float8 / nullif(c.n, 0) FROM c
    UNION ALL SELECT 'offline_hours', CASE WHEN c.on_s + c.off_s > 0 THEN c.off_s / 3600 END FROM c
    UNION ALL SELECT 'offline_events', CASE WHEN c.rows > 0 THEN c.ev END FROM c
    UNION ALL SELECT 'alarms_raised_' || a.level, CASE WHEN c.rows > 0 THEN a.raised END FROM a, c
    UNION ALL SELECT 'alarms_cleared_' || a.level, CASE WHEN c.rows > 0 THEN a.cleared END FROM a, c
    UNION ALL SELECT 'alarms_open_' || a.level, CASE WHEN c.rows > 0 THEN a.open END FROM a, c
    UNION ALL SELECT 'sla_' || a.level, a.sla FROM a
    UNION ALL SELECT 'work_orders', CASE WHEN c.rows > 0 THEN w.n END FROM w, c
    UNION ALL SELECT 'wo_response_minutes', w.r / 60 FROM w
    UNION ALL SELECT 'wo_on_site_minutes', w.o / 60 FROM w
    UNION ALL SELECT 'wo_resolution_hours', w.z / 3600 FROM w;
END $$;
COMMENT ON FUNCTION vms._report_summary(date, date) IS 'internal: headline figures of report days [f, t) from the loaded facts';

-- The figures, their Chinese labels, units and order.
CREATE FUNCTION vms._report_figure_defs()
    RETURNS TABLE (ord integer, figure text, label text, unit text, chart boolean)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT * FROM (VALUES
        (1, 'online_ratio', '在线率', '%', true),
        (2, 'stream_success_rate', '取流成功率', '%', true),
        (3, 'image_rate', '出图率', '%', true),
        (4, 'offline_hours', '离线时长', '小时', true),
        (5, 'offline_events', '离线次数', '次', false),
        (10, 'alarms_raised_1', 'Ⅰ级告警 新增', '条', true), (11, 'alarms_raised_2', 'Ⅱ级告警 新增', '条', true),
        (12, 'alarms_raised_3', 'Ⅲ级告警 新增', '条', true), (13, 'alarms_raised_4', 'Ⅳ级告警 新增', '条', true),
        (20, 'alarms_cleared_1', 'Ⅰ级告警 已关闭', '条', true), (21, 'alarms_cleared_2', 'Ⅱ级告警 已关闭', '条', true),
        (22, 'alarms_cleared_3', 'Ⅲ级告警 已关闭', '条', true), (23, 'alarms_cleared_4', 'Ⅳ级告警 已关闭', '条', true),
        (30, 'alarms_open_1', 'Ⅰ级告警 期末未关闭', '条', false), (31, 'alarms_open_2', 'Ⅱ级告警 期末未关闭', '条', false),
        (32, 'alarms_open_3', 'Ⅲ级告警 期末未关闭', '条', false), (33, 'alarms_open_4', 'Ⅳ级告警 期末未关闭', '条', false),
        (40, 'sla_1', 'Ⅰ级 按时修复率', '%', true), (41, 'sla_2', 'Ⅱ级 按时修复率', '%', true),
        (42, 'sla_3', 'Ⅲ级 按时修复率', '%', true), (43, 'sla_4', 'Ⅳ级 按时修复率', '%', true),
        (50, 'work_orders', '派工单', '张', true),
        (51, 'wo_response_minutes', '平均响应时长', '分钟', true),
        (52, 'wo_on_site_minutes', '平均到场时长', '分钟', true),
        (53, 'wo_resolution_hours', '平均处理时长', '小时', true)) v
$$;
COMMENT ON FUNCTION vms._report_figure_defs() IS 'internal: the report''s headline figures with their Chinese labels, units and whether they get a daily chart';

CREATE FUNCTION vms._report_fmt(v float8, unit text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v IS NULL THEN '—'
                WHEN unit = '%' THEN round((v * 100)::numeric, 2)::text || '%'
                WHEN unit IN ('条', '次', '张') THEN round(v::numeric)::text || ' ' || unit
                ELSE round(v::numeric, 1)::text || ' ' || unit END
$$;
COMMENT ON FUNCTION vms._report_fmt(float8, text) IS 'internal: a figure as printed in a report, with its unit; — for no data';

CREATE FUNCTION vms._report_change(v float8, p float8, unit text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v IS NULL OR p IS NULL THEN '—'
                WHEN unit = '%' THEN CASE WHEN v >= p THEN '+' ELSE '' END || round(((v - p) * 100)::numeric, 2)::text || ' 个百分点'
                WHEN unit IN ('条', '次', '张') THEN CASE WHEN v >= p THEN '+' ELSE '' END || round((v - p)::numeric)::text || ' ' || unit
                ELSE CASE WHEN v >= p THEN '+' ELSE '' END || round((v - p)::numeric, 1)::text || ' ' || unit END
$$;
COMMENT ON FUNCTION vms._report_change(float8, float8, text) IS 'internal: the change from the previous period as printed (percentage points for rates)';

-- SECURITY DEFINER: it freezes days as the owner and reads the owner's
-- operations tables; it keeps only what vms.channel_visible_to allows the
-- role the session acts as (vms._acting_role()).
CREATE FUNCTION vms.report_figures(kind text, period_start date)
    RETURNS TABLE (figure text, label text, unit text, value float8, previous float8)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    p record;
BEGIN
    p := vms._report_period(kind, period_start);
    PERFORM vms._report_load(p.pf, p.t, vms._acting_role());
    RETURN QUERY
    SELECT d.figure, d.label, d.unit, cur.value, prev.value
      FROM vms._report_figure_defs() d
      JOIN vms._report_summary(p.f, p.t) cur ON cur.figure = d.figure
      JOIN vms._report_summary(p.pf, p.pt) prev ON prev.figure = d.figure
     ORDER BY d.ord;
END $$;
COMMENT ON FUNCTION vms.report_figures(text, date) IS
    'the headline figures of a report (kind daily, weekly, monthly, quarterly or annual from period_start) and of the previous period, over the channels the caller may see: exactly what vms.report_html prints';

-- The same figures per report day, for the trend charts.
CREATE FUNCTION vms._report_daily(f date, t date)
    RETURNS TABLE (day date, figure text, value float8)
    LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH c AS (SELECT x.day, sum(x.online_seconds) AS on_s, sum(x.offline_seconds) AS off_s,
                      sum(x.inspections) AS n, sum(x.stream_ok) AS s, sum(x.image_ok) AS i
                 FROM pg_temp.report_cd x WHERE x.day >= f AND x.day < t GROUP BY x.day),
    a AS (SELECT c.day, l.level, count(x.alarm_id) FILTER (WHERE x.raised) AS raised,
                 count(x.alarm_id) FILTER (WHERE x.cleared) AS cleared,
                 avg(x.met_fix::int) FILTER (WHERE x.cleared AND x.met_fix IS NOT NULL) AS sla
            FROM c CROSS JOIN generate_series(1, 4) l(level)
            LEFT JOIN pg_temp.report_al x ON x.day = c.day AND x.level = l.level
           GROUP BY c.day, l.level),
    w AS (SELECT c.day, count(x.work_order_id) AS n, avg(x.response_seconds) AS r, avg(x.on_site_seconds) AS o,
                 avg(x.resolution_seconds) AS z
            FROM c LEFT JOIN pg_temp.report_wo x ON x.day = c.day GROUP BY c.day)
    SELECT c.day, 'online_ratio', c.on_s / nullif(c.on_s + c.off_s, 0) FROM c
    UNION ALL SELECT c.day, 'stream_success_rate', c.s::float8 / nullif(c.n, 0) FROM c
    UNION ALL SELECT c.day, 'image_rate', c.i::float8 / nullif(c.n, 0) FROM c
    UNION ALL SELECT c.day, 'offline_hours', CASE WHEN c.on_s + c.off_s > 0 THEN c.off_s / 3600 END FROM c
    UNION ALL SELECT a.day, 'alarms_raised_' || a.level, a.raised FROM a
    UNION ALL SELECT a.day, 'alarms_cleared_' || a.level, a.cleared FROM a
    UNION ALL SELECT a.day, 'sla_' || a.level, a.sla FROM a
    UNION ALL SELECT w.day, 'work_orders', w.n FROM w
    UNION ALL SELECT w.day, 'wo_response_minutes', w.r / 60 FROM w
    UNION ALL SELECT w.day, 'wo_on_site_minutes', w.o / 60 FROM w
    UNION ALL SELECT w.day, 'wo_resolution_hours', w.z / 3600 FROM w;
END $$;
COMMENT ON FUNCTION vms._report_daily(date, date) IS 'internal: the headline figures per report day of [f, t) from the loaded facts';

-- A daily line chart: one polyline per series and run of days with data,
-- a dot on every value (so a one-day period shows its point); days without
-- data leave a gap.  series: [{"name": ..., "color": ..., "values": [v or null, ...]}].
CREATE FUNCTION vms._report_svg_chart(id text, title text, unit text, f date, n integer, series jsonb)
    RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path FROM CURRENT AS $$
DECLARE
    w constant float8 := 700;
    h constant float8 := 170;
    x0 constant float8 := 56;
    y0 constant float8 := 16;
    pw constant float8 := 620;
    ph constant float8 := 120;
    lo float8;
    hi float8;
    s jsonb;
    i integer;
    v float8;
    pts text;
    runs text := '';
    dots text := '';
    npts integer := 0;
    legend text := '';
    k integer := 0;
    scale float8 := CASE WHEN unit = '%' THEN 100 ELSE 1 END;
    fmt text := CASE WHEN unit IN ('条', '张', '次') THEN 'FM999999990' ELSE 'FM999999990.0' END;
BEGIN
    SELECT min((e.v)::float8), max((e.v)::float8) INTO lo, hi
      FROM jsonb_array_elements(series) x, jsonb_array_elements_text(x -> 'values') e(v) WHERE e.v IS NOT NULL;
    IF lo IS NULL THEN
        RETURN format('<figure class="chart"><figcaption>%s（%s）</figcaption><svg xmlns="http://www.w3.org/2000/svg" data-chart="%s" data-points="0" viewBox="0 0 %s %s" width="100%%" role="img"><text x="%s" y="%s" class="empty">本期无数据</text></svg></figure>',
                      vms._report_esc(title), vms._report_esc(unit), id, w, h, x0 + 10, y0 + ph / 2);
    END IF;
    lo := lo * scale;
    hi := hi * scale;
    IF unit = '%' THEN
        lo := greatest(0, floor(lo / 5) * 5 - 5); hi := least(100, ceil(hi / 5) * 5 + (CASE WHEN hi >= 100 THEN 0 ELSE 5 END));
    ELSE
        lo := least(0, lo); hi := greatest(hi * 1.1, lo + 1);
    END IF;
    IF hi <= lo THEN hi := lo + 1; END IF;
    FOR s IN SELECT x FROM jsonb_array_elements(series) x LOOP
        k := k + 1;
        pts := '';
        FOR i IN 0 .. n - 1 LOOP
            v := (s -> 'values' ->> i)::float8;
            IF v IS NULL THEN
                IF position(' ' IN pts) > 0 THEN
                    runs := runs || format('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>', s ->> 'color', trim(pts));
                END IF;
                pts := '';
                CONTINUE;
            END IF;
            npts := npts + 1;
            pts := pts || format('%s,%s ', round((x0 + CASE WHEN n = 1 THEN pw / 2 ELSE i * pw / (n - 1) END)::numeric, 1),
                                 round((y0 + ph - (v * scale - lo) / (hi - lo) * ph)::numeric, 1));
            dots := dots || format('<circle cx="%s" cy="%s" r="1.8" fill="%s"/>',
                                   round((x0 + CASE WHEN n = 1 THEN pw / 2 ELSE i * pw / (n - 1) END)::numeric, 1),
                                   round((y0 + ph - (v * scale - lo) / (hi - lo) * ph)::numeric, 1), s ->> 'color');
        END LOOP;
        IF position(' ' IN trim(pts)) > 0 THEN
            runs := runs || format('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>', s ->> 'color', trim(pts));
        END IF;
        IF jsonb_array_length(series) > 1 THEN
            legend := legend || format('<rect x="%s" y="%s" width="10" height="3" fill="%s"/><text x="%s" y="%s" class="lg">%s</text>',
                                       x0 + (k - 1) * 90, h - 6, s ->> 'color', x0 + (k - 1) * 90 + 14, h - 2, vms._report_esc(s ->> 'name'));
        END IF;
    END LOOP;
    RETURN format('<figure class="chart"><figcaption>%s（%s）</figcaption>', vms._report_esc(title), vms._report_esc(unit))
        || format('<svg xmlns="http://www.w3.org/2000/svg" data-chart="%s" data-points="%s" viewBox="0 0 %s %s" width="100%%" role="img">', id, npts, w, h)
        || format('<line x1="%s" y1="%s" x2="%s" y2="%s" class="ax"/><line x1="%s" y1="%s" x2="%s" y2="%s" class="ax"/>',
                  x0, y0, x0, y0 + ph, x0, y0 + ph, x0 + pw, y0 + ph)
        || format('<line x1="%s" y1="%s" x2="%s" y2="%s" class="grid"/>', x0, y0 + ph / 2, x0 + pw, y0 + ph / 2)
        || format('<text x="%s" y="%s" class="yl">%s</text><text x="%s" y="%s" class="yl">%s</text><text x="%s" y="%s" class="yl">%s</text>',
                  x0 - 4, y0 + 4, to_char(hi, fmt), x0 - 4, y0 + ph / 2 + 4, to_char((hi + lo) / 2, fmt), x0 - 4, y0 + ph + 4, to_char(lo, fmt))
        || format('<text x="%s" y="%s" class="xl">%s</text>', x0, y0 + ph + 16, to_char(f, 'MM-DD'))
        || CASE WHEN n > 1 THEN format('<text x="%s" y="%s" class="xl end">%s</text>', x0 + pw, y0 + ph + 16, to_char(f + n - 1, 'MM-DD')) ELSE '' END
        || runs || dots || legend || '</svg></figure>';
END $$;
COMMENT ON FUNCTION vms._report_svg_chart(text, text, text, date, integer, jsonb) IS
    'internal: an inline SVG daily line chart of one or more series (values per day, NULL for no data)';

-- A table of the period's figures per unit, region or contractor, the
-- worst rows (lowest online rate, and any under 90 %) marked.
CREATE FUNCTION vms._report_group_table(f date, t date, grp text) RETURNS text
    LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
BEGIN
    RETURN (
    WITH c AS (
        SELECT CASE grp WHEN 'unit' THEN coalesce(x.unit_name, '（未划分单位）')
                       WHEN 'region' THEN coalesce(x.region_name || ' ' || x.civil_code, x.civil_code, '（无行政区划）')
                       ELSE coalesce(x.contractor, '（无运维合同）') END AS g,
               count(DISTINCT x.code) AS members, sum(x.online_seconds) AS on_s, sum(x.offline_seconds) AS off_s,
               sum(x.inspections) AS n, sum(x.stream_ok) AS s, sum(x.image_ok) AS i
          FROM pg_temp.report_cd x WHERE x.day >= f AND x.day < t GROUP BY 1),
    um AS (SELECT y.unit_id, min(y.unit_name) AS unit_name FROM pg_temp.report_cd y GROUP BY y.unit_id),
    rm AS (SELECT y.civil_code, min(y.region_name) AS region_name FROM pg_temp.report_cd y GROUP BY y.civil_code),
    a AS (
        SELECT CASE grp WHEN 'unit' THEN coalesce(um.unit_name, '（未划分单位）')
                       WHEN 'region' THEN coalesce(rm.region_name || ' ' || x.civil_code, x.civil_code, '（无行政区划）')
                       ELSE coalesce(x.contractor, '（无运维合同）') END AS g,
               count(*) FILTER (WHERE x.raised) AS raised,
               avg(x.met_fix::int) FILTER (WHERE x.cleared AND x.met_fix IS NOT NULL) AS sla
          FROM pg_temp.report_al x
          LEFT JOIN um ON um.unit_id IS NOT DISTINCT FROM x.unit_id
          LEFT JOIN rm ON rm.civil_code IS NOT DISTINCT FROM x.civil_code
         WHERE x.day >= f AND x.day < t GROUP BY 1),
    r AS (
        SELECT c.*, c.on_s / nullif(c.on_s + c.off_s, 0) AS ratio, coalesce(a.raised, 0) AS raised, a.sla,
               rank() OVER (ORDER BY c.on_s / nullif(c.on_s + c.off_s, 0) ASC NULLS LAST) AS rk
          FROM c LEFT JOIN a ON a.g = c.g)
    SELECT format('<table class="groups" data-group="%s"><thead><tr><th>%s</th><th>点位数</th><th>在线率</th><th>离线时长</th><th>取流成功率</th><th>出图率</th><th>新增告警</th><th>按时修复率</th></tr></thead><tbody>',
                  grp, CASE grp WHEN 'unit' THEN '管理单位' WHEN 'region' THEN '行政区划' ELSE '运维单位' END)
        || coalesce(string_agg(
               format('<tr%s><td>%s%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>',
                      CASE WHEN r.ratio IS NOT NULL AND (r.rk = 1 OR r.ratio < 0.9) THEN ' class="worst"' ELSE '' END,
                      vms._report_esc(r.g),
                      CASE WHEN r.ratio IS NOT NULL AND (r.rk = 1 OR r.ratio < 0.9) THEN ' <span class="mark">▼ 最差</span>' ELSE '' END,
                      r.members, vms._report_fmt(r.ratio, '%'),
                      vms._report_fmt(CASE WHEN r.on_s + r.off_s > 0 THEN r.off_s / 3600 END, '小时'),
                      vms._report_fmt(r.s::float8 / nullif(r.n, 0), '%'), vms._report_fmt(r.i::float8 / nullif(r.n, 0), '%'),
                      vms._report_fmt(r.raised, '条'), vms._report_fmt(r.sla, '%')),
               '' ORDER BY r.ratio ASC NULLS LAST, r.g), '<tr><td colspan="8">本期无数据</td></tr>')
        || '</tbody></table>'
      FROM r);
END $$;
COMMENT ON FUNCTION vms._report_group_table(date, date, text) IS
    'internal: the HTML table of a period''s figures per unit, region or contractor, worst rows marked';

CREATE FUNCTION vms._report_fault_name(k text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE k WHEN 'stream' THEN '取流失败' WHEN 'signal_loss' THEN '信号丢失' WHEN 'black_screen' THEN '黑屏'
              WHEN 'brightness' THEN '亮度异常' WHEN 'blur' THEN '画面模糊' WHEN 'color_cast' THEN '偏色'
              WHEN 'noise' THEN '噪声' WHEN 'stripes' THEN '条纹干扰' WHEN 'freeze' THEN '画面冻结'
              WHEN 'jitter' THEN '画面抖动' WHEN 'mosaic' THEN '马赛克' WHEN 'occlusion' THEN '遮挡'
              WHEN 'scene_change' THEN '场景变更' WHEN 'offline' THEN '离线' ELSE k END;
COMMENT ON FUNCTION vms._report_fault_name(text) IS 'internal: the Chinese name of an inspection check or fault type';

-- SECURITY DEFINER: as vms.report_figures (freezes days as the owner, keeps
-- what vms.channel_visible_to allows the role the session acts as).
CREATE FUNCTION vms.report_html(kind text, period_start date) RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    p record;
    tz constant text := vms._report_tz();
    n integer;
    today date := (now() AT TIME ZONE vms._report_tz())::date;
    is_open boolean;
    days_with_data integer;
    prev_days integer;
    channels integer;
    all_visible boolean;
    last_day date;
    html text;
    part text;
    colors constant text[] := ARRAY['#c0392b', '#e67e22', '#2980b9', '#7f8c8d'];
    lv constant text[] := ARRAY['Ⅰ级', 'Ⅱ级', 'Ⅲ级', 'Ⅳ级'];
    minlon float8; maxlon float8; minlat float8; maxlat float8; kx float8; sc float8;
BEGIN
    p := vms._report_period(kind, period_start);
    PERFORM vms._report_load(p.pf, p.t, vms._acting_role());
    n := p.t - p.f;
    is_open := p.t > today;
    SELECT count(DISTINCT x.day) FILTER (WHERE x.online_seconds + x.offline_seconds > 0 OR x.inspections > 0),
           count(DISTINCT x.code), max(x.day)
      INTO days_with_data, channels, last_day
      FROM pg_temp.report_cd x WHERE x.day >= p.f AND x.day < p.t;
    SELECT count(DISTINCT x.day) FILTER (WHERE x.online_seconds + x.offline_seconds > 0 OR x.inspections > 0)
      INTO prev_days FROM pg_temp.report_cd x WHERE x.day >= p.pf AND x.day < p.pt;
    -- "all" from the role's rights alone, never from the data: a superuser,
    -- or a live grant of every channel at the highest security level; a
    -- scoped user learns nothing of the channels outside the scope
    all_visible := EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = vms._acting_role() AND r.rolsuper)
        OR EXISTS (SELECT 1 FROM vms.access_grant g JOIN pg_roles r ON r.rolname = g.grantee
                    WHERE g.scope_kind = 'all' AND g.revoked_at IS NULL AND g.valid_from <= now()
                      AND (g.valid_until IS NULL OR g.valid_until > now())
                      AND g.max_level >= (SELECT max(l.level) FROM vms.security_level l)
                      AND pg_has_role(vms._acting_role(), r.oid, 'MEMBER'));

    html := '<!DOCTYPE html>' || chr(10) || '<html lang="zh-CN"><head><meta charset="utf-8">'
        || '<meta name="viewport" content="width=device-width, initial-scale=1">'
        || format('<title>视频监控运维%s %s</title>', p.title, to_char(p.f, 'YYYY-MM-DD'))
        || '<style>'
        || '@page{size:A4;margin:14mm 12mm}'
        || 'body{font-family:"Noto Sans CJK SC","Noto Sans SC","Source Han Sans SC","Microsoft YaHei",sans-serif;color:#222;font-size:10.5pt;margin:0 auto;max-width:190mm;line-height:1.45}'
        || 'h1{font-size:18pt;margin:0 0 4pt}h2{font-size:13pt;border-bottom:2px solid #2c3e50;padding-bottom:2pt;margin:14pt 0 6pt;break-after:avoid}'
        || 'h3{font-size:11pt;margin:8pt 0 4pt;break-after:avoid}'
        || 'table{border-collapse:collapse;width:100%;margin:4pt 0 8pt;font-size:9.5pt}th,td{border:1px solid #bbb;padding:2pt 4pt;text-align:right}'
        || 'th:first-child,td:first-child{text-align:left}thead th{background:#ecf0f1}tr{break-inside:avoid}'
        || '.worst td{background:#fdecea}.mark{color:#c0392b;font-size:8.5pt}.up{color:#1e8449}.down{color:#c0392b}'
        || '.meta{color:#555;margin:0}.partial{background:#fff4e5;border:1px solid #e67e22;padding:4pt 6pt;margin:6pt 0}'
        || 'figure.chart{margin:0 0 6pt;break-inside:avoid}figcaption{font-weight:bold;font-size:9.5pt}'
        || 'svg text{font-family:inherit;font-size:9px;fill:#444}svg .yl{text-anchor:end}svg .xl.end{text-anchor:end}'
        || 'svg .ax{stroke:#888;stroke-width:1}svg .grid{stroke:#ddd;stroke-dasharray:3 3}svg .empty{fill:#999;font-size:12px}'
        || '.charts{display:grid;grid-template-columns:1fr 1fr;gap:0 10pt}'
        || 'footer{color:#555;font-size:8.5pt;border-top:1px solid #bbb;margin-top:12pt;padding-top:4pt}'
        || '</style></head><body>';
    html := html || '<header>' || format('<h1>视频监控运维%s</h1>', p.title)
        || format('<p class="meta">统计周期：%s 至 %s（%s 天，北京时间）</p>', to_char(p.f, 'YYYY-MM-DD'), to_char(p.t - 1, 'YYYY-MM-DD'), n)
        || format('<p class="meta">上期：%s 至 %s%s</p>', to_char(p.pf, 'YYYY-MM-DD'), to_char(p.pt - 1, 'YYYY-MM-DD'),
                  CASE WHEN prev_days < p.pt - p.pf THEN format('（部分数据：%s 天中有 %s 天有数据）', p.pt - p.pf, prev_days) ELSE '' END)
        || format('<p class="meta" data-channels="%s">统计范围：%s 个点位%s</p>', channels, channels,
                  CASE WHEN all_visible THEN '（全部）' ELSE '（按当前用户的授权范围）' END)
        || CASE WHEN is_open THEN format('<p class="meta">生成时间：%s（统计期未结束，数据截至生成时间）</p>',
                                         to_char(now() AT TIME ZONE tz, 'YYYY-MM-DD HH24:MI')) ELSE '' END
        || CASE WHEN days_with_data < n THEN
                format('<p class="partial" data-partial="true">部分数据：统计期 %s 天中有 %s 天有数据%s。缺少数据的日期不计为零，趋势图中留空。</p>',
                       n, days_with_data, CASE WHEN is_open THEN '（统计期未结束）' ELSE '' END)
                ELSE '' END
        || '</header>';

    -- 一、核心指标
    SELECT '<section id="headline"><h2>一、核心指标</h2><table class="figures"><thead><tr><th>指标</th><th>本期</th><th>上期</th><th>变化</th></tr></thead><tbody>'
        || string_agg(format('<tr><td>%s</td><td data-figure="%s" data-value="%s">%s</td><td data-previous="%s">%s</td><td class="%s">%s</td></tr>',
                             vms._report_esc(d.label), d.figure, coalesce(round(cur.value::numeric, 6)::text, ''),
                             vms._report_fmt(cur.value, d.unit), d.figure, vms._report_fmt(prev.value, d.unit),
                             -- green when better: less offline time, fewer alarms, quicker work orders
                             CASE WHEN cur.value IS NULL OR prev.value IS NULL OR cur.value = prev.value THEN ''
                                  WHEN (cur.value > prev.value) = (d.figure IN ('online_ratio', 'stream_success_rate', 'image_rate', 'work_orders')
                                                                   OR d.figure LIKE 'sla%' OR d.figure LIKE 'alarms_cleared%')
                                  THEN 'up' ELSE 'down' END,
                             vms._report_change(cur.value, prev.value, d.unit)), '' ORDER BY d.ord)
        || '</tbody></table></section>'
      INTO part
      FROM vms._report_figure_defs() d
      JOIN vms._report_summary(p.f, p.t) cur ON cur.figure = d.figure
      JOIN vms._report_summary(p.pf, p.pt) prev ON prev.figure = d.figure;
    html := html || part;

    -- 二、每日趋势
    CREATE TEMP TABLE report_series ON COMMIT DROP AS
    SELECT s.figure, jsonb_agg(to_jsonb(x.value) ORDER BY g.day) AS vals
      FROM (SELECT DISTINCT d.figure FROM vms._report_figure_defs() d WHERE d.chart) s
     CROSS JOIN (SELECT gs::date AS day FROM generate_series(p.f, p.t - 1, interval '1 day') gs) g
      LEFT JOIN vms._report_daily(p.f, p.t) x ON x.figure = s.figure AND x.day = g.day
     GROUP BY s.figure;
    html := html || '<section id="trends"><h2>二、每日趋势</h2><div class="charts">'
        || vms._report_svg_chart('online_ratio', '在线率', '%', p.f, n,
               (SELECT jsonb_build_array(jsonb_build_object('name', '在线率', 'color', '#2471a3', 'values', vals)) FROM pg_temp.report_series WHERE figure = 'online_ratio'))
        || vms._report_svg_chart('stream_success_rate', '取流成功率', '%', p.f, n,
               (SELECT jsonb_build_array(jsonb_build_object('name', '取流成功率', 'color', '#1e8449', 'values', vals)) FROM pg_temp.report_series WHERE figure = 'stream_success_rate'))
        || vms._report_svg_chart('image_rate', '出图率', '%', p.f, n,
               (SELECT jsonb_build_array(jsonb_build_object('name', '出图率', 'color', '#7d3c98', 'values', vals)) FROM pg_temp.report_series WHERE figure = 'image_rate'))
        || vms._report_svg_chart('offline_hours', '离线时长', '小时', p.f, n,
               (SELECT jsonb_build_array(jsonb_build_object('name', '离线时长', 'color', '#c0392b', 'values', vals)) FROM pg_temp.report_series WHERE figure = 'offline_hours'))
        || vms._report_svg_chart('alarms_raised', '新增告警（按级别）', '条', p.f, n,
               (SELECT jsonb_agg(jsonb_build_object('name', lv[l], 'color', colors[l], 'values', vals) ORDER BY l)
                  FROM generate_series(1, 4) l JOIN pg_temp.report_series ON figure = 'alarms_raised_' || l))
        || vms._report_svg_chart('alarms_cleared', '已关闭告警（按级别）', '条', p.f, n,
               (SELECT jsonb_agg(jsonb_build_object('name', lv[l], 'color', colors[l], 'values', vals) ORDER BY l)
                  FROM generate_series(1, 4) l JOIN pg_temp.report_series ON figure = 'alarms_cleared_' || l))
        || vms._report_svg_chart('sla', '按时修复率（按级别）', '%', p.f, n,
               (SELECT jsonb_agg(jsonb_build_object('name', lv[l], 'color', colors[l], 'values', vals) ORDER BY l)
                  FROM generate_series(1, 4) l JOIN pg_temp.report_series ON figure = 'sla_' || l))
        || vms._report_svg_chart('work_orders', '派工单', '张', p.f, n,
               (SELECT jsonb_build_array(jsonb_build_object('name', '派工单', 'color', '#2c3e50', 'values', vals)) FROM pg_temp.report_series WHERE figure = 'work_orders'))
        || vms._report_svg_chart('wo_minutes', '平均响应 / 到场时长', '分钟', p.f, n,
               (SELECT jsonb_agg(jsonb_build_object('name', CASE figure WHEN 'wo_response_minutes' THEN '响应' ELSE '到场' END,
                                                    'color', CASE figure WHEN 'wo_response_minutes' THEN '#2471a3' ELSE '#e67e22' END,
                                                    'values', vals) ORDER BY figure DESC)
                  FROM pg_temp.report_series WHERE figure IN ('wo_response_minutes', 'wo_on_site_minutes')))
        || vms._report_svg_chart('wo_resolution_hours', '平均处理时长', '小时', p.f, n,
               (SELECT jsonb_build_array(jsonb_build_object('name', '处理', 'color', '#7f8c8d', 'values', vals)) FROM pg_temp.report_series WHERE figure = 'wo_resolution_hours'))
        || '</div></section>';
    DROP TABLE pg_temp.report_series;

    -- 三、分单位 / 区域 / 运维单位
    html := html || '<section id="groups"><h2>三、分单位、分区域、分运维单位</h2>'
        || '<h3>按管理单位</h3>' || vms._report_group_table(p.f, p.t, 'unit')
        || '<h3>按行政区划</h3>' || vms._report_group_table(p.f, p.t, 'region')
        || '<h3>按运维单位</h3>' || vms._report_group_table(p.f, p.t, 'contractor')
        || '</section>';

    -- 四、清单
    SELECT '<section id="lists"><h2>四、清单</h2><h3>离线时长前十的设备（点位）</h3><table class="list" data-list="offline_top"><thead><tr><th>点位</th><th>编码</th><th>所属设备</th><th>管理单位</th><th>离线时长</th><th>离线次数</th></tr></thead><tbody>'
        || coalesce(string_agg(format('<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>',
                                      vms._report_esc(o.name), o.code, vms._report_esc(o.device_name), vms._report_esc(o.unit_name),
                                      vms._report_fmt(o.off_s / 3600, '小时'), vms._report_fmt(o.ev, '次')), '' ORDER BY o.off_s DESC, o.code),
                    '<tr><td colspan="6">本期无离线</td></tr>')
        || '</tbody></table>'
      INTO part
      FROM (SELECT x.code::text AS code, max(x.name) AS name, max(x.device_name) AS device_name, max(x.unit_name) AS unit_name,
                   sum(x.offline_seconds) AS off_s, sum(x.offline_events) AS ev
              FROM pg_temp.report_cd x WHERE x.day >= p.f AND x.day < p.t
             GROUP BY x.code HAVING sum(x.offline_seconds) > 0
             ORDER BY sum(x.offline_seconds) DESC, x.code::text LIMIT 10) o;
    html := html || part;
    SELECT '<h3>巡检发现的故障（按类型）</h3><table class="list" data-list="faults"><thead><tr><th>故障类型</th><th>次数</th><th>涉及点位</th></tr></thead><tbody>'
        || coalesce(string_agg(format('<tr><td>%s</td><td>%s</td><td>%s</td></tr>', vms._report_esc(vms._report_fault_name(q.k)),
                                      vms._report_fmt(q.n, '次'), q.ch), '' ORDER BY q.n DESC, q.k),
                    '<tr><td colspan="3">本期巡检未发现故障</td></tr>')
        || '</tbody></table>'
      INTO part
      FROM (SELECT e.key AS k, sum(e.value::numeric)::float8 AS n, count(DISTINCT x.code) AS ch
              FROM pg_temp.report_cd x, jsonb_each_text(x.faults) e WHERE x.day >= p.f AND x.day < p.t GROUP BY e.key) q;
    html := html || part;
    SELECT '<h3>超期告警</h3><table class="list" data-list="overdue"><thead><tr><th>编码</th><th>名称</th><th>级别</th><th>故障</th><th>修复期限</th><th>恢复时间</th></tr></thead><tbody>'
        || coalesce(string_agg(format('<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>',
                                      o.code, vms._report_esc(o.name), lv[o.level], vms._report_esc(vms._report_fault_name(o.fault_type)),
                                      to_char(o.fix_by AT TIME ZONE tz, 'YYYY-MM-DD HH24:MI'),
                                      coalesce(to_char(o.cleared_at AT TIME ZONE tz, 'YYYY-MM-DD HH24:MI'), '期末未恢复')),
                               '' ORDER BY o.fix_by, o.alarm_id),
                    '<tr><td colspan="6">本期无超期告警</td></tr>')
        || '</tbody></table></section>'
      INTO part
      FROM (SELECT x.alarm_id, x.code::text AS code, x.level, x.fault_type, x.fix_by,
                   coalesce((SELECT max(c.name) FROM pg_temp.report_cd c WHERE c.code = x.code),
                            (SELECT max(c.device_name) FROM pg_temp.report_cd c WHERE c.device_code = x.code)) AS name,
                   (SELECT max(y.cleared_at) FROM pg_temp.report_al y WHERE y.alarm_id = x.alarm_id AND y.cleared AND y.day < p.t) AS cleared_at
              FROM pg_temp.report_al x WHERE x.overdue AND x.day >= p.f AND x.day < p.t) o;
    html := html || part;

    -- 五、治理指标
    SELECT '<section id="governance"><h2>五、点位治理</h2>'
        || format('<p class="meta">截至 %s</p>', coalesce(to_char(max(g.day), 'YYYY-MM-DD'), '—'))
        || '<table class="groups" data-group="governance"><thead><tr><th>管理单位</th><th>点位数</th><th>填报率</th><th>合格率</th><th>规范率</th><th>标注率</th><th>出图率</th></tr></thead><tbody>'
        || coalesce(string_agg(CASE WHEN g.withheld THEN
                                   format('<tr class="withheld" data-withheld="true"><td>%s</td><td colspan="6">不显示：该单位有您无权查看的点位，其治理指标按全部点位统计</td></tr>',
                                          vms._report_esc(coalesce(g.unit_name, '（未划分单位）')))
                               ELSE format('<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>',
                                      vms._report_esc(coalesce(g.unit_name, '（未划分单位）')), coalesce(g.channels::text, '—'),
                                      vms._report_fmt(g.fill_rate, '%'), vms._report_fmt(g.pass_rate, '%'),
                                      vms._report_fmt(g.naming_rate, '%'), vms._report_fmt(g.tag_rate, '%'),
                                      vms._report_fmt(g.image_rate, '%')) END, '' ORDER BY g.unit_name, g.unit_key)
                        FILTER (WHERE g.channels IS NOT NULL OR g.withheld),
                    '<tr><td colspan="7">本期无治理数据</td></tr>')
        || '</tbody></table>'
      INTO part
      FROM pg_temp.report_gv g
     WHERE g.day = (SELECT max(y.day) FROM pg_temp.report_gv y WHERE y.day >= p.f AND y.day < p.t
                       AND (y.channels IS NOT NULL OR y.withheld));
    html := html || part;
    SELECT '<h3>未关闭的治理任务（按规则）</h3><table class="list" data-list="governance_tasks"><thead><tr><th>规则</th><th>说明</th><th>未关闭任务</th></tr></thead><tbody>'
        || coalesce(string_agg(format('<tr><td>%s</td><td>%s</td><td>%s</td></tr>', vms._report_esc(q.k),
                                      vms._report_esc((SELECT r.description FROM vms.governance_rule r WHERE r.code = q.k)),
                                      vms._report_fmt(q.n, '条')), '' ORDER BY q.n DESC, q.k),
                    '<tr><td colspan="3">无未关闭的治理任务</td></tr>')
        || '</tbody></table>'
      INTO part
      FROM (SELECT e.key AS k, sum(e.value::numeric)::float8 AS n
              FROM pg_temp.report_gv g, jsonb_each_text(g.open_tasks) e
             WHERE g.day = (SELECT max(y.day) FROM pg_temp.report_gv y WHERE y.day >= p.f AND y.day < p.t)
             GROUP BY e.key) q;
    SELECT part || coalesce('<p class="meta" data-withheld="tasks">不含以下单位的任务（有您无权查看的点位）：'
                            || string_agg(vms._report_esc(coalesce(g.unit_name, '（未划分单位）')), '、' ORDER BY g.unit_name, g.unit_key)
                            || '</p>', '') || '</section>'
      INTO part
      FROM pg_temp.report_gv g
     WHERE g.tasks_withheld AND g.day = (SELECT max(y.day) FROM pg_temp.report_gv y WHERE y.day >= p.f AND y.day < p.t);
    html := html || part;

    -- 六、点位分布
    SELECT min(x.lon), max(x.lon), min(x.lat), max(x.lat) INTO minlon, maxlon, minlat, maxlat
      FROM pg_temp.report_cd x WHERE x.day = last_day AND x.lon BETWEEN 73 AND 136 AND x.lat BETWEEN 3 AND 54;
    kx := cos(radians(coalesce((minlat + maxlat) / 2, 0)));
    sc := least(680 / greatest((maxlon - minlon) * kx, 1e-6), 400 / greatest(maxlat - minlat, 1e-6));
    SELECT '<section id="map"><h2>六、点位分布（期末状态）</h2>'
        || format('<svg xmlns="http://www.w3.org/2000/svg" data-chart="map" data-points="%s" viewBox="0 0 700 450" width="100%%" role="img">', count(*))
        || '<rect x="0" y="0" width="700" height="450" fill="#f7f9fa" stroke="#bbb"/>'
        || coalesce(string_agg(format('<circle cx="%s" cy="%s" r="2.2" fill="%s"/>',
                                      round((10 + (x.lon - minlon) * kx * sc)::numeric, 1), round((430 - (x.lat - minlat) * sc)::numeric, 1),
                                      CASE x.state_at_end WHEN 'online' THEN '#27ae60' WHEN 'offline' THEN '#c0392b' ELSE '#95a5a6' END),
                               '' ORDER BY x.state_at_end DESC, x.code), '<text x="20" y="220" class="empty">无坐标</text>')
        || '</svg>'
        || format('<p class="meta"><span style="color:#27ae60">●</span> 在线 %s　<span style="color:#c0392b">●</span> 离线 %s　<span style="color:#95a5a6">●</span> 未知 %s　（无有效坐标的点位不画）</p>',
                  count(*) FILTER (WHERE x.state_at_end = 'online'), count(*) FILTER (WHERE x.state_at_end = 'offline'),
                  count(*) FILTER (WHERE x.state_at_end = 'unknown'))
        || '</section>'
      INTO part
      FROM pg_temp.report_cd x WHERE x.day = last_day AND x.lon BETWEEN 73 AND 136 AND x.lat BETWEEN 3 AND 54;
    html := html || coalesce(part, '');

    html := html || '<footer><p>口径：在线率 = 在线时长 ÷（在线时长 + 离线时长），按点位（通道）时间加权，未知时段（设备首次上报前、服务重启宽限期、登记的停机）不计入；'
        || '离线时长为点位离线时间之和；取流成功率、出图率为巡检记录中取到码流、得到可用画面的比例；'
        || '告警不含屏蔽与根因抑制的告警，按时修复率 = 本期关闭的告警中在修复期限前恢复的比例；派工单时长自派单起计。'
        || '统计日按北京时间划分；已结束的日期按冻结的数据出报，重出报表结果不变。</p></footer>'
        || '</body></html>' || chr(10);
    RETURN html;
END $$;
COMMENT ON FUNCTION vms.report_html(text, date) IS
    'the O&M report (运维报表) of a period as one self-contained HTML5 document (inline CSS and SVG charts, no script, nothing fetched, A4): headline figures with the previous period and the change, daily trends, tables per unit, region and contractor with the worst rows marked, lists, governance, a dot map; kind daily, weekly, monthly, quarterly or annual from period_start (report days in Asia/Shanghai); only the channels the caller may see; a closed period gives the same bytes every time';

-- Plain views for charting tools (Grafana on PostgreSQL, spreadsheets): one
-- row per frozen report day and group (all, unit, region, contractor), from
-- the frozen facts; security_invoker, so row-level security shows a reader
-- only the channels their grants allow.
CREATE VIEW vms.report_daily WITH (security_invoker = true) AS
SELECT x.day, g.group_by, g.group_key, min(g.group_name) AS group_name, count(*)::int AS channels,
       sum(x.online_seconds) / nullif(sum(x.online_seconds) + sum(x.offline_seconds), 0) AS online_ratio,
       sum(x.online_seconds) AS online_seconds, sum(x.offline_seconds) AS offline_seconds,
       sum(x.unknown_seconds) AS unknown_seconds, sum(x.offline_events)::int AS offline_events,
       sum(x.inspections)::int AS inspections,
       sum(x.stream_ok)::float8 / nullif(sum(x.inspections), 0) AS stream_success_rate,
       sum(x.image_ok)::float8 / nullif(sum(x.inspections), 0) AS image_rate
  FROM vms.report_channel_day x
 CROSS JOIN LATERAL (VALUES ('all', '', '全部'), ('unit', coalesce(x.unit_id::text, ''), x.unit_name),
                            ('region', coalesce(x.civil_code, ''), x.region_name),
                            ('contractor', coalesce(x.contractor, ''), x.contractor)) g(group_by, group_key, group_name)
 GROUP BY x.day, g.group_by, g.group_key;
COMMENT ON VIEW vms.report_daily IS
    'per frozen report day (Asia/Shanghai) and group (all, unit, region, contractor; group_key '''' = none): 在线率 online_ratio, 离线时长 offline_seconds, outages, inspections with 取流成功率 stream_success_rate and 出图率 image_rate, over the channels the reader may see';

CREATE VIEW vms.report_daily_alarms WITH (security_invoker = true) AS
SELECT x.day, g.group_by, g.group_key, x.level,
       count(*) FILTER (WHERE x.raised)::int AS raised, count(*) FILTER (WHERE x.cleared)::int AS cleared,
       avg(x.met_fix::int) FILTER (WHERE x.cleared AND x.met_fix IS NOT NULL)::float8 AS fixed_in_time_rate,
       count(*) FILTER (WHERE x.overdue)::int AS overdue
  FROM vms.report_alarm_day x
 CROSS JOIN LATERAL (VALUES ('all', ''), ('unit', coalesce(x.unit_id::text, '')), ('region', coalesce(x.civil_code, '')),
                            ('contractor', coalesce(x.contractor, ''))) g(group_by, group_key)
 GROUP BY x.day, g.group_by, g.group_key, x.level;
COMMENT ON VIEW vms.report_daily_alarms IS
    'per frozen report day, group and alarm level: alarms raised, cleared, the share cleared by the fix deadline (SLA) and fix deadlines missed that day (masked and suppressed alarms excluded)';

CREATE VIEW vms.report_daily_work_orders WITH (security_invoker = true) AS
SELECT x.day, g.group_by, g.group_key, count(*)::int AS work_orders,
       avg(x.response_seconds) AS mean_response_seconds, avg(x.on_site_seconds) AS mean_on_site_seconds,
       avg(x.resolution_seconds) AS mean_resolution_seconds
  FROM vms.report_order_day x
 CROSS JOIN LATERAL (VALUES ('all', ''), ('unit', coalesce(x.unit_id::text, '')), ('region', coalesce(x.civil_code, '')),
                            ('contractor', coalesce(x.contractor, ''))) g(group_by, group_key)
 GROUP BY x.day, g.group_by, g.group_key;
COMMENT ON VIEW vms.report_daily_work_orders IS
    'per frozen report day and group: work orders opened and their mean response, on-site and resolution seconds (as at the freeze)';
-- Privileges: what PUBLIC and each duty role may use.  This file comes last
-- in the install script, so every object of the extension is either granted
-- here or left to the owner on purpose.  sql/security_surface.sql keeps the
-- same classification of every function and fails when a function is added
-- without one.  Schema changes of later versions repeat their part of this
-- in their upgrade script (its last section).
--
-- Functions.  First nothing is executable by PUBLIC: EXECUTE is revoked on
-- every function that belongs to the extension (a loop over pg_depend, so no
-- function of someone else's in schema vms is touched).  Then each class is
-- granted explicitly:
--
--   internal   vms._*: the owner's only, never PUBLIC or a duty role.  The
--              public functions that need one are SECURITY DEFINER (they
--              run as the owner; see the comment above each) or are left to
--              the owner themselves.
--   PUBLIC     the gbcode type (I/O, operators, support), pure functions,
--              the row-level security functions (whoever queries a table
--              runs them), vms.request_access (anyone may ask), and the
--              functions that run with the caller's own table privileges
--              and row-level security, so that EXECUTE alone gives nothing
--              (import, tags, alarms and the alarm rules they apply,
--              overrides).
--   vms_analyst       search, tiles, view cones, rights, export, reports.
--   vms_grant_admin   grant and revoke; periodic review.
--   vms_approver      decide requests; periodic review.
--   vms_auditor       verify the audit chain; periodic review.
--   owner      everything else, for superusers and the workers: the audit
--              writer, secrets, workers, SIP, GA/T 1400, inspection,
--              governance runs and metrics, device reports and passwords,
--              operations (availability, maintenance contracts, alarm
--              rules, masks, deadlines, escalation, work orders, kept
--              figures, scheduled runs, retention, notification routes),
--              vms.tag_search_results and vms.cron_next (which use internal
--              helpers), the security-level functions (which read the
--              security catalogue).  A DBA may GRANT EXECUTE on one of these
--              to an operator role; those that call internal helpers then
--              still work only for superusers.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT d.objid::regprocedure FROM pg_catalog.pg_depend d
              WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'e'
                AND d.refclassid = 'pg_catalog.pg_extension'::regclass
                AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'vms')
              ORDER BY d.objid LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;

-- PUBLIC: the type and pure functions
GRANT EXECUTE ON FUNCTION
    vms.gbcode_in(cstring), vms.gbcode_out(vms.gbcode), vms.gbcode_recv(internal), vms.gbcode_send(vms.gbcode),
    vms.gbcode_eq(vms.gbcode, vms.gbcode), vms.gbcode_ne(vms.gbcode, vms.gbcode),
    vms.gbcode_lt(vms.gbcode, vms.gbcode), vms.gbcode_le(vms.gbcode, vms.gbcode),
    vms.gbcode_gt(vms.gbcode, vms.gbcode), vms.gbcode_ge(vms.gbcode, vms.gbcode),
    vms.gbcode_cmp(vms.gbcode, vms.gbcode), vms.gbcode_sortsupport(internal),
    vms.gbcode_hash(vms.gbcode), vms.gbcode_hash_extended(vms.gbcode, bigint),
    vms.gbcode_make(text, integer, integer, integer, integer), vms.gbcode_parse_error(text),
    vms.gbcode_check(vms.gbcode), vms.gbcode_problems(vms.gbcode), vms.gbcode_centre(vms.gbcode),
    vms.gbcode_province(vms.gbcode), vms.gbcode_city(vms.gbcode), vms.gbcode_county(vms.gbcode),
    vms.gbcode_industry(vms.gbcode), vms.gbcode_network(vms.gbcode), vms.gbcode_type(vms.gbcode),
    vms.gbcode_type_name(vms.gbcode), vms.gbcode_serial(vms.gbcode), vms.gbcode_in_region(vms.gbcode, text),
    vms.gbcode_region_lower(text), vms.gbcode_region_upper(text),
    vms.gbcode_type_table(), vms.gbcode_industry_table(),
    vms.coord_convert(float8, float8, text, text), vms.to_wgs84(float8, float8, text),
    vms.convert_point(geometry, text, text),
    vms.wgs84_to_gcj02(geometry), vms.gcj02_to_wgs84(geometry), vms.gcj02_to_bd09(geometry),
    vms.bd09_to_gcj02(geometry), vms.wgs84_to_bd09(geometry), vms.bd09_to_wgs84(geometry),
    vms.view_cone(geometry, float8, float8, float8, integer),
    vms.text_grams(text), vms.keyword_grams(text), vms.text_contains(text, text),
    vms.channel_search_text(text, text, text, text),
    vms.try_float8(text), vms.is_ip(text), vms.governed_columns(regclass),
    vms.chain_digest(bytea), vms.chain_digest_name(), vms.secret_algorithm(),
    vms.viid_id_problems(text), vms.viid_object_id(text, integer, integer),
    vms.viid_image_id(vms.gbcode, integer, timestamp, integer), vms.inspection_alarm_level(text),
    vms.notify_render(text, jsonb)
  TO PUBLIC;
-- PUBLIC: row-level security (run by whoever reads or writes the tables) and asking for access
GRANT EXECUTE ON FUNCTION
    vms.channel_visible(vms.gbcode, text), vms.code_visible(vms.gbcode), vms.can_manage(vms.gbcode, text),
    vms.request_access(text, text, text[], smallint, text, timestamptz, timestamptz)
  TO PUBLIC;
-- PUBLIC: run with the caller's own table privileges and row-level security
GRANT EXECUTE ON FUNCTION
    vms.catalog_subtree(vms.gbcode), vms.tag_subtree(bigint), vms.tag_resolve(jsonb),
    vms.tag_create(text, text, text), vms.tag_assign(vms.gbcode, text, text), vms.tag_unassign(vms.gbcode, text),
    vms.alarm_raise(vms.gbcode, text, smallint, text, jsonb), vms.alarm_acknowledge(bigint),
    vms.alarm_clear(vms.gbcode, text, text), vms.clear_override(regclass, vms.gbcode, text),
    vms.alarm_plan(bigint, text), vms.alarm_level_for(text, vms.gbcode), vms.alarm_deadlines(vms.gbcode, smallint),
    vms.alarm_mask_covers(jsonb, vms.gbcode), vms.alarm_mask_for(vms.gbcode, text, timestamptz),
    vms.alarm_root_for(vms.gbcode, text), vms.contract_for(vms.gbcode),
    vms.channel_view_cone(vms.gbcode),
    vms.csv_rows(bytea, text), vms.csv_rows_file(text, text),
    vms.ledger_import(bytea, text, text), vms.ledger_import_file(text, text), vms.ledger_import_rows(bigint)
  TO PUBLIC;

-- vms_analyst: search, tiles, cones (SECURITY DEFINER: they return only what
-- vms.channel_visible_to allows the role the session acts as), rights, export
GRANT EXECUTE ON FUNCTION
    vms.search_points(jsonb, integer, integer), vms.search_geojson(jsonb, integer, integer),
    vms.search_save(text, jsonb), vms.search_saved(text, integer, integer), vms.search_rerun(bigint),
    vms.channel_tiles(integer, integer, integer, json), vms.channel_visible_to(oid, vms.gbcode, text),
    vms.cameras_seeing(geometry, float8), vms.cameras_seeing_area(geometry, float8),
    vms.area_coverage(geometry, float8),
    vms.can(text, vms.gbcode), vms.exercise_right(text, vms.gbcode, jsonb),
    vms.playback(vms.gbcode, timestamptz, timestamptz), vms.download(vms.gbcode, timestamptz, timestamptz),
    vms.ptz(vms.gbcode, text), vms.view_live(vms.gbcode), vms.snapshot(vms.gbcode),
    vms.export_ledger(),
    vms.report_html(text, date), vms.report_figures(text, date)
  TO vms_analyst;
GRANT EXECUTE ON FUNCTION
    vms.grant_access(name, text, text, text[], smallint, timestamptz, timestamptz, text),
    vms.revoke_access(bigint, text)
  TO vms_grant_admin;
GRANT EXECUTE ON FUNCTION vms.approve_request(bigint, text), vms.reject_request(bigint, text) TO vms_approver;
GRANT EXECUTE ON FUNCTION vms.audit_verify() TO vms_auditor;
GRANT EXECUTE ON FUNCTION vms.review_unused_grants(integer), vms.review_expiring_grants(interval)
  TO vms_grant_admin, vms_approver, vms_auditor;

-- Tables and views.  PUBLIC has none (PostgreSQL's default).  The duty roles
-- read what their duty needs; row-level security narrows vms.channel and the
-- tables keyed by a channel code to the reader's grants.  Left to the owner
-- on purpose: device credentials and sessions, import jobs, security
-- assignments, the governance runs and naming patterns, the worker, SIP,
-- GA/T 1400 and inspection tables and views, the operations centre's
-- tables (availability, contracts, alarm rules, work orders) (operations,
-- not analysis).
GRANT USAGE ON SCHEMA vms TO vms_analyst, vms_grant_admin, vms_approver, vms_auditor;
GRANT SELECT ON vms.region, vms.org_unit, vms.catalog_node, vms.point_type, vms.device, vms.channel,
                vms.channel_reported, vms.catalog_member, vms.checkpoint, vms.lane, vms.lane_channel,
                vms.tag_category, vms.tag, vms.channel_tag, vms.ledger_history, vms.alarm, vms.alarm_level,
                vms.governance_rule, vms.governance_task, vms.governance_worklist, vms.security_level,
                vms.ledger_template_column, vms.ledger_export, vms.gb_device_type, vms.gb_industry,
                vms.access_grant, vms.access_request
   TO vms_analyst;
-- reports (issue 19): the frozen report facts under row-level security and the plain views over them
GRANT SELECT ON vms.report_frozen_day, vms.report_channel_day, vms.report_alarm_day, vms.report_order_day,
                vms.report_daily, vms.report_daily_alarms, vms.report_daily_work_orders
   TO vms_analyst;
GRANT SELECT, INSERT, DELETE ON vms.saved_search TO vms_analyst;
GRANT SELECT, INSERT ON vms.search_history TO vms_analyst;
GRANT SELECT ON vms.access_grant, vms.access_request, vms.subject, vms.review_wide_grants TO vms_grant_admin, vms_approver;
GRANT SELECT ON vms.audit_log, vms.audit_archive TO vms_auditor;
