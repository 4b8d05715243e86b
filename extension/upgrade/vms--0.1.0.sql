-- vms 0.1.0: the install script as it landed (frozen; never edit).
-- Later versions reach this schema through vms--0.1.0--<next>.sql.
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

CREATE FUNCTION vms._convert_point(p geometry, from_crs text, to_crs text)
    RETURNS geometry(Point, 4326)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN (SELECT ST_SetSRID(ST_MakePoint(r[1], r[2]), 4326)
              FROM (SELECT vms.coord_convert(ST_X(p), ST_Y(p), from_crs, to_crs) AS r) AS c);
COMMENT ON FUNCTION vms._convert_point(geometry, text, text) IS 'internal: convert a point geometry';

CREATE FUNCTION vms.wgs84_to_gcj02(geometry) RETURNS geometry(Point, 4326)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE RETURN vms._convert_point($1, 'WGS84', 'GCJ02');
CREATE FUNCTION vms.gcj02_to_wgs84(geometry) RETURNS geometry(Point, 4326)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE RETURN vms._convert_point($1, 'GCJ02', 'WGS84');
CREATE FUNCTION vms.gcj02_to_bd09(geometry) RETURNS geometry(Point, 4326)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE RETURN vms._convert_point($1, 'GCJ02', 'BD09');
CREATE FUNCTION vms.bd09_to_gcj02(geometry) RETURNS geometry(Point, 4326)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE RETURN vms._convert_point($1, 'BD09', 'GCJ02');
CREATE FUNCTION vms.wgs84_to_bd09(geometry) RETURNS geometry(Point, 4326)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE RETURN vms._convert_point($1, 'WGS84', 'BD09');
CREATE FUNCTION vms.bd09_to_wgs84(geometry) RETURNS geometry(Point, 4326)
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE RETURN vms._convert_point($1, 'BD09', 'WGS84');
COMMENT ON FUNCTION vms.wgs84_to_gcj02(geometry) IS 'WGS-84 point to GCJ-02 (Amap/Tencent)';
COMMENT ON FUNCTION vms.gcj02_to_wgs84(geometry) IS 'GCJ-02 point to WGS-84 (iterative inverse, < 1e-9 degrees)';
COMMENT ON FUNCTION vms.gcj02_to_bd09(geometry) IS 'GCJ-02 point to BD-09 (Baidu)';
COMMENT ON FUNCTION vms.bd09_to_gcj02(geometry) IS 'BD-09 point to GCJ-02';
COMMENT ON FUNCTION vms.wgs84_to_bd09(geometry) IS 'WGS-84 point to BD-09';
COMMENT ON FUNCTION vms.bd09_to_wgs84(geometry) IS 'BD-09 point to WGS-84';
-- The device ledger (台账): regions, units, catalogue trees, devices, channels,
-- checkpoints and lanes.  Attribute columns hold the governed value users
-- query; what devices report is kept apart in *_reported (see 04_reported.sql).
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
-- work_mem: the import sorts and hashes whole files; spilling a million wide
-- rows to disk costs more than the memory.  gin_pending_list_limit: the
-- keyword index takes new rows in large batches instead of every 4 MB.
-- jit: compiling the wide validation expressions costs more than it saves.
CREATE FUNCTION vms._ledger_import_rows(job_id bigint) RETURNS vms.import_job
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
    EXECUTE format($q$
        CREATE TEMP VIEW _ledger_raw AS
        SELECT line_no, fields, error, cardinality(fields) AS nfields, %s
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
                  THEN format('catalog "%s" names an unknown catalogue node', r.catalog) END
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
    SELECT job_id, line_no, reasons, fields FROM _ledger_checked WHERE reasons <> '{}';
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE vms.import_job j SET total_rows = total, rejected_rows = n WHERE j.id = job_id;
    RAISE NOTICE 'import %: % rows rejected, see vms.import_rejection (% s)', job_id, n,
        round(extract(epoch FROM clock_timestamp() - t0)::numeric, 1);

    DELETE FROM _ledger_checked WHERE reasons <> '{}';
    valid := total - n;
    CREATE INDEX ON _ledger_checked (line_no);
    ANALYZE _ledger_checked;

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
        SELECT r.code::vms.gbcode, r.dev_code::vms.gbcode, r.name, r.alias, r.address, r.civil_code, r.street,
               r.place_type, r.point_type_code, r.resolution, r.azimuth_f, r.fov_angle_f,
               r.fov_range_f, r.height_f,
               coalesce(ARRAY(SELECT btrim(x) FROM regexp_split_to_table(r.capabilities, '[|;；]') x
                               WHERE btrim(x) <> ''), '{}'),
               u.id, r.stream_url,
               CASE WHEN r.longitude IS NOT NULL
                    THEN (SELECT ST_SetSRID(ST_MakePoint(p[1], p[2]), 4326)
                            FROM vms.coord_convert(r.lon_f, r.lat_f, r.crs, 'WGS84') p) END,
               CASE WHEN r.longitude IS NOT NULL THEN r.crs END,
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
                   CASE WHEN r.longitude IS NOT NULL THEN 'geom' END], NULL)
          FROM _ledger_checked r
          LEFT JOIN vms.org_unit u ON u.name = r.unit
         WHERE r.line_no BETWEEN lo AND lo + chunk - 1
         ORDER BY r.code   -- key order: index pages are touched once, not at random
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
            overridden = ARRAY(SELECT DISTINCT unnest(c.overridden || EXCLUDED.overridden) ORDER BY 1);
        GET DIAGNOSTICS n = ROW_COUNT;
        loaded := loaded + n;

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
COMMENT ON FUNCTION vms._ledger_import_rows(bigint) IS 'internal: validate and load parsed template rows';

CREATE FUNCTION vms._ledger_import(job_id bigint, data bytea, path text, encoding text)
    RETURNS vms.import_job
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    job vms.import_job;
BEGIN
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
    IF path IS NOT NULL THEN
        CREATE TEMP TABLE _ledger_csv ON COMMIT DROP AS SELECT * FROM vms.csv_rows_file(path, encoding);
    ELSE
        CREATE TEMP TABLE _ledger_csv ON COMMIT DROP AS SELECT * FROM vms.csv_rows(data, encoding);
    END IF;
    job := vms._ledger_import_rows(job_id);
    DROP TABLE _ledger_csv;
    RETURN job;
END $$;
COMMENT ON FUNCTION vms._ledger_import(bigint, bytea, text, text) IS 'internal: parse then load';

CREATE FUNCTION vms.ledger_import(data bytea, encoding text DEFAULT 'auto', source text DEFAULT NULL)
    RETURNS vms.import_job
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    job_id bigint;
BEGIN
    INSERT INTO vms.import_job (source, encoding) VALUES (coalesce(source, 'upload'), encoding)
    RETURNING id INTO job_id;
    RETURN vms._ledger_import(job_id, data, NULL, encoding);
END $$;
COMMENT ON FUNCTION vms.ledger_import(bytea, text, text) IS
    'import ledger template rows from CSV content (UTF8/GB18030/auto): valid rows upserted, bad rows kept in vms.import_rejection';

CREATE FUNCTION vms.ledger_import_file(path text, encoding text DEFAULT 'auto')
    RETURNS vms.import_job
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    job_id bigint;
BEGIN
    INSERT INTO vms.import_job (source, encoding) VALUES (path, encoding) RETURNING id INTO job_id;
    RETURN vms._ledger_import(job_id, NULL, path, encoding);
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
    fix_within     interval NOT NULL
);
INSERT INTO vms.alarm_level VALUES
    (1, 'I',   '紧急',   'urgent',   '30 minutes', '12 hours'),
    (2, 'II',  '严重',   'severe',   NULL,         '24 hours'),
    (3, 'III', '较严重', 'major',    NULL,         '48 hours'),
    (4, 'IV',  '普通',   'ordinary', NULL,         '5 days');
COMMENT ON TABLE vms.alarm_level IS 'alarm levels I-IV (紧急/严重/较严重/普通) with response and repair deadlines';

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
    clear_reason    text
);
CREATE UNIQUE INDEX alarm_open_idx ON vms.alarm (code, fault_type) WHERE state <> 'cleared';
CREATE INDEX alarm_time_idx ON vms.alarm (last_raised_at);
COMMENT ON TABLE vms.alarm IS 'alarm centre: devices, channels and workers raise here; one open row per code and fault type';
COMMENT ON COLUMN vms.alarm.code IS 'device or channel the alarm is about';
COMMENT ON COLUMN vms.alarm.occurrences IS 'how often the fault was raised while this alarm stayed open';

CREATE FUNCTION vms.alarm_raise(code vms.gbcode, fault_type text, level smallint,
                                source text, detail jsonb DEFAULT '{}')
    RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    lv vms.alarm_level;
    alarm_id bigint;
BEGIN
    SELECT * INTO lv FROM vms.alarm_level l WHERE l.level = alarm_raise.level;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alarm level % does not exist', alarm_raise.level
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Levels are 1 (I, urgent) to 4 (IV, ordinary).';
    END IF;
    INSERT INTO vms.alarm AS a (code, fault_type, level, source, detail, respond_by, fix_by)
    VALUES (alarm_raise.code, alarm_raise.fault_type, alarm_raise.level, alarm_raise.source,
            alarm_raise.detail, now() + lv.respond_within, now() + lv.fix_within)
    ON CONFLICT (code, fault_type) WHERE state <> 'cleared' DO UPDATE
        SET occurrences = a.occurrences + 1,
            last_raised_at = now(),
            level = least(a.level, EXCLUDED.level),
            respond_by = least(a.respond_by, EXCLUDED.respond_by),
            fix_by = least(a.fix_by, EXCLUDED.fix_by),
            detail = EXCLUDED.detail
    RETURNING a.id INTO alarm_id;
    PERFORM pg_notify('vms_alarm', json_build_object('id', alarm_id, 'code', alarm_raise.code::text,
                      'fault_type', alarm_raise.fault_type, 'level', alarm_raise.level)::text);
    RETURN alarm_id;
END $$;
COMMENT ON FUNCTION vms.alarm_raise(vms.gbcode, text, smallint, text, jsonb) IS
    'raise an alarm, or count one more occurrence of the open alarm for the same code and fault type; notifies channel vms_alarm';

CREATE FUNCTION vms.alarm_acknowledge(alarm_id bigint) RETURNS boolean
    LANGUAGE sql SET search_path FROM CURRENT
    BEGIN ATOMIC
        WITH a AS (UPDATE vms.alarm SET state = 'acknowledged', acknowledged_by = session_user,
                          acknowledged_at = now()
                    WHERE id = alarm_id AND state = 'open' RETURNING 1)
        SELECT count(*) > 0 FROM a;
    END;
COMMENT ON FUNCTION vms.alarm_acknowledge(bigint) IS 'acknowledge an open alarm; false if it was not open';

CREATE FUNCTION vms.alarm_clear(code vms.gbcode, fault_type text, reason text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE sql SET search_path FROM CURRENT
    BEGIN ATOMIC
        WITH a AS (UPDATE vms.alarm a SET state = 'cleared', cleared_at = now(), clear_reason = reason
                    WHERE a.code = alarm_clear.code AND a.fault_type = alarm_clear.fault_type
                      AND a.state <> 'cleared' RETURNING 1)
        SELECT count(*) > 0 FROM a;
    END;
COMMENT ON FUNCTION vms.alarm_clear(vms.gbcode, text, text) IS 'clear the open alarm for a code and fault type; false if none was open';
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
        SELECT c.code, format('not updated since %s', c.updated_at::date)
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
    x float8;
BEGIN
    IF v IS NULL THEN
        PERFORM vms._filter_error(key, format('"%s" is missing', field));
    ELSIF jsonb_typeof(v) <> 'number' THEN
        PERFORM vms._filter_error(key, format('%s must be a number, not %s', coalesce('"' || field || '"', 'each value'), v));
    END IF;
    x := (v #>> '{}')::float8;
    IF (lo IS NOT NULL AND x < lo) OR (hi IS NOT NULL AND x > hi) THEN
        PERFORM vms._filter_error(key, format('%s is outside [%s, %s]', x, coalesce(lo::text, '-inf'), coalesce(hi::text, 'inf')));
    END IF;
    RETURN x;
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
    IF NOT ST_IsValid(g) THEN
        PERFORM vms._filter_error(key, 'geometry is not valid: ' || ST_IsValidReason(g));
    END IF;
    IF ST_XMin(g) < -180 OR ST_XMax(g) > 180 OR ST_YMin(g) < -90 OR ST_YMax(g) > 90 THEN
        PERFORM vms._filter_error(key, 'coordinates must be WGS-84 longitude/latitude');
    END IF;
    RETURN g;
END $$;
COMMENT ON FUNCTION vms._filter_geojson(text, jsonb, text[]) IS 'internal: a validated WGS-84 geometry from a filter';

-- A box around a geometry holding every point within radius_m metres of it
-- (longitude degrees are shortest at the latitude furthest from the equator).
CREATE FUNCTION vms._metre_box(center geometry, radius_m float8) RETURNS geometry
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ST_Expand(ST_Envelope(center),
                     radius_m / (111320 * greatest(cos(radians(greatest(abs(ST_YMin(center)), abs(ST_YMax(center))))), 0.01)) * 1.01,
                     radius_m / 110574 * 1.01);
COMMENT ON FUNCTION vms._metre_box(geometry, float8) IS 'internal: degree box enclosing a metre radius, for index prefilters';

-- Build the query of a filter: validates every key, returns SQL selecting
-- (code, distance_m) from vms.channel c, and its parameters.
CREATE FUNCTION vms._search_sql(filter jsonb, OUT where_sql text, OUT order_sql text, OUT dist_sql text,
                                OUT geoms geometry[], OUT nums float8[])
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    k text;
    v jsonb;
    conds text[] := '{}';
    order_by text := 'c.code';
    centre geometry;   -- of a spatial filter: results come nearest first, through the spatial index
    dist text := 'NULL::float8';
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
            IF jsonb_typeof(v) <> 'object' THEN
                PERFORM vms._filter_error(k, 'must be {"lon": .., "lat": .., "radius_m": ..}');
            END IF;
            g := ST_SetSRID(ST_MakePoint(vms._filter_num(k, v -> 'lon', -180, 180, 'lon'), vms._filter_num(k, v -> 'lat', -90, 90, 'lat')), 4326);
            r := vms._filter_num(k, v -> 'radius_m', 0, 100000, 'radius_m');
            geoms := geoms || g || vms._metre_box(g, r);
            nums := nums || r;
            centre := g;
            conds := conds || format('c.geom && $1[%s]', cardinality(geoms))
                           || format('ST_DistanceSphere(c.geom, $1[%s]) <= $2[%s]', cardinality(geoms) - 1, cardinality(nums));
        WHEN 'polygon' THEN
            g := vms._filter_geojson(k, v, '{POLYGON,MULTIPOLYGON}');
            geoms := geoms || g;
            centre := coalesce(centre, ST_PointOnSurface(g));
            conds := conds || format('ST_Intersects(c.geom, $1[%s])', cardinality(geoms));
        WHEN 'line' THEN
            IF jsonb_typeof(v) <> 'object' OR NOT v ? 'geojson' THEN
                PERFORM vms._filter_error(k, 'must be {"geojson": <LineString>, "buffer_m": ..}');
            END IF;
            g := vms._filter_geojson(k, v -> 'geojson', '{LINESTRING,MULTILINESTRING}');
            r := vms._filter_num(k, v -> 'buffer_m', 0, 10000, 'buffer_m');
            centre := coalesce(centre, ST_Centroid(g));
            geoms := geoms || g || vms._metre_box(ST_Envelope(g), r);
            nums := nums || r;
            conds := conds || format('c.geom && ST_Expand($1[%s], 0)', cardinality(geoms))
                           || format('ST_DWithin(c.geom::geography, $1[%s]::geography, $2[%s])', cardinality(geoms) - 1, cardinality(nums));
        WHEN 'near' THEN
            IF jsonb_typeof(v) <> 'object' THEN
                PERFORM vms._filter_error(k, 'must be {"lon": .., "lat": ..}');
            END IF;
            g := ST_SetSRID(ST_MakePoint(vms._filter_num(k, v -> 'lon', -180, 180, 'lon'), vms._filter_num(k, v -> 'lat', -90, 90, 'lat')), 4326);
            geoms := geoms || g;
            order_by := format('c.geom <-> $1[%s]', cardinality(geoms));
            dist := format('ST_DistanceSphere(c.geom, $1[%s])', cardinality(geoms));
            conds := conds || 'c.geom IS NOT NULL'::text;
        END CASE;
    END LOOP;
    -- circle / near distance is reported when a centre is known
    IF dist = 'NULL::float8' AND filter ? 'circle' THEN
        dist := 'ST_DistanceSphere(c.geom, $1[' || (SELECT i FROM generate_subscripts(geoms, 1) i
                  WHERE GeometryType(geoms[i]) = 'POINT' LIMIT 1) || '])';
    END IF;
    IF NOT filter ? 'near' AND centre IS NOT NULL THEN
        geoms := geoms || centre;
        order_by := format('c.geom <-> $1[%s], c.code', cardinality(geoms));
    ELSIF order_by = 'c.code' AND filter ? 'keyword' THEN
        -- a common keyword matches a large share of the ledger: ordering
        -- every match would read them all, so keyword results come in
        -- storage order and the scan stops at the page
        order_by := NULL;
    END IF;
    where_sql := coalesce(nullif(array_to_string(conds, ' AND '), ''), 'true');
    order_sql := order_by;
    dist_sql := dist;
END $$;
COMMENT ON FUNCTION vms._search_sql(jsonb) IS 'internal: validate a search filter and build its query';

-- Runs as the owner so the spatial index serves the filter, and checks each
-- candidate against the caller's grants (vms.channel_visible_to): under
-- row-level security PostGIS's operators, not being leakproof, could only
-- filter rows the policy had already passed, one by one.
CREATE FUNCTION vms._search_points_as(role oid, filter jsonb, lim integer, off integer)
    RETURNS TABLE (code vms.gbcode, name text, alias text, address text, point_type text, place_type text,
                   unit_id bigint, online boolean, lon float8, lat float8, distance_m float8)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path FROM CURRENT
    -- a search returns a page of points: starting parallel workers costs more than it saves
    SET max_parallel_workers_per_gather = 0 AS $$
DECLARE
    q record;
    t0 timestamptz := clock_timestamp();
    n integer;
BEGIN
    IF lim IS NULL OR lim < 0 OR lim > 100000 THEN
        RAISE EXCEPTION 'search limit must be between 0 and 100000, not %', lim USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF off IS NULL OR off < 0 THEN
        RAISE EXCEPTION 'search offset must be 0 or more, not %', off USING ERRCODE = 'invalid_parameter_value';
    END IF;
    q := vms._search_sql(filter);
    RETURN QUERY EXECUTE format(
        'SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                ST_X(c.geom), ST_Y(c.geom), %s
           FROM vms.channel c WHERE %s AND vms.channel_visible_to($5, c.code, c.civil_code) %s LIMIT $3 OFFSET $4',
        q.dist_sql, q.where_sql, CASE WHEN q.order_sql IS NOT NULL THEN 'ORDER BY ' || q.order_sql ELSE '' END)
        USING q.geoms, q.nums, lim, off, role;
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO vms.search_history (filter, lim, off, result_count, took_ms)
    VALUES (filter, lim, off, n, round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 3));
END $$;
COMMENT ON FUNCTION vms._search_points_as(oid, jsonb, integer, integer) IS 'internal: a search for a role the session user can act as';

CREATE FUNCTION vms.search_points(filter jsonb DEFAULT '{}', lim integer DEFAULT 100, off integer DEFAULT 0)
    RETURNS TABLE (code vms.gbcode, name text, alias text, address text, point_type text, place_type text,
                   unit_id bigint, online boolean, lon float8, lat float8, distance_m float8)
    LANGUAGE sql VOLATILE
    BEGIN ATOMIC
        SELECT * FROM vms._search_points_as((SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user),
                                            filter, lim, off);
    END;
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
    EXECUTE format('INSERT INTO vms.channel_tag (channel_code, tag_id, source)
                    SELECT c.code, $3, $4 FROM vms.channel c WHERE %s ON CONFLICT DO NOTHING', q.where_sql)
        USING q.geoms, q.nums, tag_id, source;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.tag_search_results(jsonb, text, text) IS 'tag every channel matching a search filter; returns how many got the tag';

CREATE FUNCTION vms.search_save(name text, filter jsonb) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
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

-- Cameras whose cone contains a point: distance within range and bearing
-- within half the field of view of the azimuth.
CREATE FUNCTION vms.cameras_seeing(target geometry, max_range_m float8 DEFAULT 500)
    RETURNS TABLE (code vms.gbcode, name text, distance_m float8, bearing float8)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT c.code, c.name, d.dist, d.bearing
      FROM vms.channel c
     CROSS JOIN LATERAL (SELECT ST_DistanceSphere(c.geom, target) AS dist,
                                degrees(ST_Azimuth(c.geom, target)) AS bearing) d
     WHERE c.geom && vms._metre_box(target, max_range_m)
       AND c.fov_range_m IS NOT NULL AND d.dist <= least(c.fov_range_m, max_range_m)
       AND (c.fov_angle >= 360 OR d.dist = 0
            OR (c.azimuth IS NOT NULL AND c.fov_angle IS NOT NULL
                AND abs(mod((d.bearing - c.azimuth)::numeric + 540, 360) - 180) <= c.fov_angle / 2))
     ORDER BY d.dist
$$;
COMMENT ON FUNCTION vms.cameras_seeing(geometry, float8) IS 'cameras whose view cone contains the point, nearest first';

CREATE FUNCTION vms.cameras_seeing_area(area geometry, max_range_m float8 DEFAULT 500)
    RETURNS TABLE (code vms.gbcode, name text, seen_share float8)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT c.code, c.name,
           ST_Area(ST_Intersection(k.cone, area)::geography) / nullif(ST_Area(area::geography), 0)
      FROM vms.channel c
     CROSS JOIN LATERAL (SELECT vms.view_cone(c.geom, c.azimuth, c.fov_angle, least(c.fov_range_m, max_range_m)) AS cone) k
     WHERE c.geom && vms._metre_box(ST_Envelope(area), max_range_m)
       AND k.cone IS NOT NULL AND ST_Intersects(k.cone, area)
     ORDER BY 3 DESC
$$;
COMMENT ON FUNCTION vms.cameras_seeing_area(geometry, float8) IS 'cameras whose view cone overlaps the area, with the share of the area each sees';

CREATE FUNCTION vms.area_coverage(area geometry, max_range_m float8 DEFAULT 500) RETURNS float8
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT coalesce(ST_Area(ST_Intersection(ST_Union(vms.view_cone(c.geom, c.azimuth, c.fov_angle,
                                                                   least(c.fov_range_m, max_range_m))), area)::geography)
                    / nullif(ST_Area(area::geography), 0), 0)
      FROM vms.channel c
     WHERE c.geom && vms._metre_box(ST_Envelope(area), max_range_m)
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
CREATE FUNCTION vms._channel_tiles_as(role oid, z integer, x integer, y integer)
    RETURNS bytea
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    bounds geometry;
    cell float8;
    tile bytea;
BEGIN
    IF z < 0 OR z > 22 OR x < 0 OR y < 0 OR x >= (1 << z) OR y >= (1 << z) THEN
        RAISE EXCEPTION 'tile %/%/% does not exist', z, x, y
            USING ERRCODE = 'invalid_parameter_value', HINT = 'z is 0-22 and x, y are 0 to 2^z - 1.';
    END IF;
    bounds := ST_TileEnvelope(z, x, y);
    IF z >= 13 THEN
        SELECT ST_AsMVT(f, 'channels', 4096, 'geom') INTO tile FROM (
            SELECT ST_AsMVTGeom(c.geom_3857, bounds, 4096, 64, true) AS geom,
                   c.code::text AS code, c.name, c.point_type, c.online, c.azimuth
              FROM vms.channel c
             WHERE c.geom && ST_Transform(bounds, 4326) AND c.geom_3857 && bounds
               AND vms.channel_visible_to(role, c.code, c.civil_code)) f;
    ELSE
        cell := (ST_XMax(bounds) - ST_XMin(bounds)) / 64;
        SELECT ST_AsMVT(f, 'channels', 4096, 'geom') INTO tile FROM (
            SELECT ST_AsMVTGeom(ST_SetSRID(ST_MakePoint(avg(ST_X(c.geom_3857)), avg(ST_Y(c.geom_3857))), 3857),
                                bounds, 4096, 64, true) AS geom,
                   count(*) AS count, count(*) FILTER (WHERE c.online) AS online_count,
                   min(c.code::text) AS code
              FROM vms.channel c
             WHERE c.geom && ST_Transform(bounds, 4326) AND c.geom_3857 && bounds
               AND vms.channel_visible_to(role, c.code, c.civil_code)
             GROUP BY floor((ST_X(c.geom_3857) - ST_XMin(bounds)) / cell),
                      floor((ST_Y(c.geom_3857) - ST_YMin(bounds)) / cell)) f;
    END IF;
    RETURN coalesce(tile, '\x'::bytea);
END $$;
COMMENT ON FUNCTION vms._channel_tiles_as(oid, integer, integer, integer) IS 'internal: a tile for a role the session user can act as';

CREATE FUNCTION vms.channel_tiles(z integer, x integer, y integer, query_params json DEFAULT '{}')
    RETURNS bytea
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN vms._channel_tiles_as((SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user), z, x, y);
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
CREATE FUNCTION vms.audit(action text, object text, detail jsonb DEFAULT '{}') RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = vms, pg_catalog, pg_temp AS $$
DECLARE
    last vms.audit_log;
    e vms.audit_log;
BEGIN
    LOCK TABLE vms.audit_log IN SHARE ROW EXCLUSIVE MODE;
    SELECT * INTO last FROM vms.audit_log ORDER BY seq DESC LIMIT 1;
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
    RAISE EXCEPTION 'vms.audit_log is append-only'
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('%s of audit entries is not allowed, for anyone.', TG_OP),
              HINT = 'Entries are added with vms.audit() and checked with vms.audit_verify().';
END $$;
COMMENT ON FUNCTION vms._audit_append_only() IS 'internal: refuses UPDATE, DELETE and TRUNCATE on the audit log';
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON vms.audit_log
    FOR EACH ROW EXECUTE FUNCTION vms._audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON vms.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION vms._audit_append_only();

-- Walk the chain in seq order and report the first entry that was edited,
-- deleted (a gap in seq, or a predecessor whose hash does not match) or
-- reordered.
CREATE FUNCTION vms.audit_verify()
    RETURNS TABLE (ok boolean, checked bigint, first_bad_seq bigint, problem text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = vms, pg_catalog, pg_temp AS $$
DECLARE
    e vms.audit_log;
    prev vms.audit_log;
    n bigint := 0;
BEGIN
    FOR e IN SELECT * FROM vms.audit_log ORDER BY seq LOOP
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
COMMENT ON FUNCTION vms.audit_verify() IS 'verify the audit chain; reports the first modified, deleted or reordered entry';
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
CREATE FUNCTION vms._can_for(who name, action text, channel vms.gbcode, new_civil_code text DEFAULT NULL) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = vms, public, pg_catalog, pg_temp AS $$
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
CREATE FUNCTION vms.can(action text, channel vms.gbcode) RETURNS boolean
    LANGUAGE sql STABLE SET search_path FROM CURRENT
    RETURN CASE WHEN action <> ALL ('{view_live,playback,download,ptz,snapshot,manage_ledger,export}')
                THEN vms._raise_unknown_action(action)
                ELSE vms._can_for(current_user, action, channel) END;
COMMENT ON FUNCTION vms._raise_unknown_action(text) IS 'internal: error for an unknown action';
COMMENT ON FUNCTION vms.can(text, vms.gbcode) IS 'may the current user do this action (view_live, playback, download, ptz, snapshot, manage_ledger, export) on the channel now';

-- Grants, requests, approvals --------------------------------------------------
CREATE FUNCTION vms._check_scope(scope_kind text, scope_ref text, actions text[], max_level smallint,
                                 valid_from timestamptz, valid_until timestamptz) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = vms, public, pg_catalog, pg_temp AS $$
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

CREATE FUNCTION vms.grant_access(grantee name, scope_kind text, scope_ref text, actions text[], max_level smallint,
                                 valid_until timestamptz DEFAULT NULL, valid_from timestamptz DEFAULT now(),
                                 note text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = vms, public, pg_catalog, pg_temp AS $$
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

CREATE FUNCTION vms.revoke_access(grant_id bigint, reason text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = vms, public, pg_catalog, pg_temp AS $$
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

CREATE FUNCTION vms.request_access(scope_kind text, scope_ref text, actions text[], max_level smallint,
                                   reason text, valid_until timestamptz DEFAULT NULL,
                                   valid_from timestamptz DEFAULT now())
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = vms, public, pg_catalog, pg_temp AS $$
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

CREATE FUNCTION vms.approve_request(request_id bigint, note text DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = vms, public, pg_catalog, pg_temp AS $$
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

CREATE FUNCTION vms.reject_request(request_id bigint, note text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = vms, public, pg_catalog, pg_temp AS $$
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
CREATE FUNCTION vms._audit_row() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = vms, public, pg_catalog, pg_temp AS $$
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
CREATE FUNCTION vms.exercise_right(action text, channel vms.gbcode, detail jsonb DEFAULT '{}') RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = vms, public, pg_catalog, pg_temp AS $$
BEGIN
    IF NOT vms._can_for(session_user, action, channel) THEN
        PERFORM vms.audit('denied_' || action, channel::text, detail);
        RAISE EXCEPTION 'permission denied to % channel %', replace(action, '_', ' '), channel
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Ask for access with vms.request_access().';
    END IF;
    UPDATE vms.access_grant g SET last_used_at = now()
     WHERE g.revoked_at IS NULL AND pg_has_role(session_user, g.grantee, 'MEMBER') AND action = ANY (g.actions);
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
CREATE FUNCTION vms.export_ledger() RETURNS SETOF vms.ledger_export
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY SELECT e.* FROM vms.ledger_export e WHERE vms.can('export', e."监控点编码"::vms.gbcode);
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM vms.audit('export', 'ledger', jsonb_build_object('rows', n));
END $$;
COMMENT ON FUNCTION vms.export_ledger() IS 'the ledger template rows the current user may export; the export is audited';

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
CREATE FUNCTION vms.secret_encrypt(plain text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'vms_secret_encrypt' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION vms.secret_decrypt(secret bytea) RETURNS text
    AS 'MODULE_PATHNAME', 'vms_secret_decrypt' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION vms.secret_algorithm() RETURNS text
    AS 'MODULE_PATHNAME', 'vms_secret_algorithm' LANGUAGE C STABLE;
REVOKE ALL ON FUNCTION vms.secret_decrypt(bytea) FROM PUBLIC;
COMMENT ON FUNCTION vms.secret_encrypt(text) IS 'encrypt a secret with the key in vms.secret_key_file (SM4-GCM, or AES-256-GCM without SM4)';
COMMENT ON FUNCTION vms.secret_decrypt(bytea) IS 'decrypt a stored secret (superusers; workers use the C API)';
COMMENT ON FUNCTION vms.secret_algorithm() IS 'the cipher vms.secret_encrypt uses';

-- Row-level security ----------------------------------------------------------
-- Analysts see the channels they hold a grant for; everything keyed by a
-- channel code follows the channel.  Policies call functions.
CREATE FUNCTION vms.code_visible(code vms.gbcode) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path FROM CURRENT AS $$
    SELECT EXISTS (SELECT 1 FROM vms.channel c WHERE c.code = code_visible.code)
$$;
COMMENT ON FUNCTION vms.code_visible(vms.gbcode) IS 'is the channel with this code visible to the current user (row-level security of channel-keyed tables)';

CREATE FUNCTION vms.can_manage(code vms.gbcode, civil_code text) RETURNS boolean
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT vms._can_for(current_user, 'manage_ledger', code, civil_code)
$$;
COMMENT ON FUNCTION vms.can_manage(vms.gbcode, text) IS 'may the current user write this channel (manage_ledger)';

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

-- Privileges for the duty roles --------------------------------------------------
GRANT USAGE ON SCHEMA vms TO vms_analyst, vms_grant_admin, vms_approver, vms_auditor;
GRANT SELECT ON vms.region, vms.org_unit, vms.catalog_node, vms.point_type, vms.device, vms.channel,
                vms.channel_reported, vms.catalog_member, vms.checkpoint, vms.lane, vms.lane_channel,
                vms.tag_category, vms.tag, vms.channel_tag, vms.ledger_history, vms.alarm, vms.alarm_level,
                vms.governance_rule, vms.governance_task, vms.governance_worklist, vms.security_level,
                vms.ledger_template_column, vms.ledger_export, vms.gb_device_type, vms.gb_industry,
                vms.access_grant, vms.access_request
   TO vms_analyst;
GRANT SELECT, INSERT, DELETE ON vms.saved_search TO vms_analyst;
GRANT SELECT, INSERT ON vms.search_history TO vms_analyst;
GRANT SELECT ON vms.access_grant, vms.access_request, vms.subject, vms.review_wide_grants TO vms_grant_admin, vms_approver;
GRANT SELECT ON vms.audit_log TO vms_auditor;
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
    VALUES (name, base_url, system_id, username, vms.secret_encrypt(password), vms._viid_check_options(options));
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
                            THEN vms.secret_encrypt(viid_alter_upstream.password) ELSE u.password_enc END,
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
    updated_at         timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.device_session IS
    'GB/T 28181 session of each device as the SIP worker last wrote it: registration, keepalive, online state, bans';
COMMENT ON COLUMN vms.device_session.keepalive_interval IS 'seconds between keepalives for this device; NULL = vms.sip_keepalive_interval';
COMMENT ON COLUMN vms.device_session.keepalive_count IS 'missed keepalives before offline; NULL = vms.sip_keepalive_count';
COMMENT ON COLUMN vms.device_session.expires_at IS 'end of the current registration; a device is offline once it passes';
COMMENT ON COLUMN vms.device_session.banned_until IS 'REGISTER is refused until then after repeated authentication failures';

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

-- Devices and their credentials and sessions, for the worker's memory
-- (times as Unix epoch seconds); all of them, those whose credentials
-- changed since a time, or one.
CREATE FUNCTION vms._sip_devices(since timestamptz DEFAULT '-infinity', one_code text DEFAULT NULL)
    RETURNS TABLE (code text, realm text, ha1_md5 text, ha1_sha256 text, online boolean,
                   registered_at float8, expires_at float8, last_keepalive_at float8,
                   keepalive_interval integer, keepalive_count integer, transport text, address text,
                   port integer, auth_failures integer, banned_until float8, credential_at timestamptz)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT d.code::text, c.realm, c.ha1_md5, c.ha1_sha256, coalesce(s.online, false),
           extract(epoch FROM s.registered_at)::float8, extract(epoch FROM s.expires_at)::float8,
           extract(epoch FROM s.last_keepalive_at)::float8, s.keepalive_interval, s.keepalive_count,
           s.transport, host(s.address), s.port, coalesce(s.auth_failures, 0),
           extract(epoch FROM s.banned_until)::float8, c.updated_at
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
                        civil_code = coalesce(EXCLUDED.civil_code, n.civil_code);
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
                ON CONFLICT DO NOTHING;
            ELSIF NOT EXISTS (SELECT 1 FROM vms.channel c WHERE c.code = item_code AND c.device_code = device) THEN
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
    RETURN jsonb_build_object('channels', channels, 'nodes', nodes, 'skipped', skipped, 'rejected', rejected);
END $$;
COMMENT ON FUNCTION vms._sip_catalog_apply(vms.gbcode, jsonb) IS
    'internal: upsert catalog items (channels into the raw layer, 215/216 into catalogue trees, events ON/OFF/DEL/VLOST/DEFECT into channel status)';

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
    abnormal     integer NOT NULL DEFAULT 0
);
CREATE INDEX inspection_run_plan_idx ON vms.inspection_run (plan_id, started_at);
COMMENT ON TABLE vms.inspection_run IS 'one round of a plan over its channels, with its counts';

CREATE TABLE vms.inspection_task (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       bigint NOT NULL REFERENCES vms.inspection_run (id) ON DELETE CASCADE,
    plan_id      bigint NOT NULL,
    channel_code vms.gbcode NOT NULL,
    source       text,
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done')),
    worker       text,
    claimed_at   timestamptz,
    finished_at  timestamptz
);
CREATE INDEX inspection_task_pending_idx ON vms.inspection_task (id) WHERE state = 'pending';
CREATE INDEX inspection_task_run_idx ON vms.inspection_task (run_id);
COMMENT ON TABLE vms.inspection_task IS 'a channel to inspect in a round; claimed by one inspector worker at a time';

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
        IF w ? 'thresholds' AND jsonb_typeof(w -> 'thresholds') <> 'object' THEN
            RAISE EXCEPTION 'window thresholds must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    SELECT k INTO bad FROM jsonb_each(p.thresholds) e(k, v) WHERE jsonb_typeof(v) <> 'number' LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'threshold "%" must be a number', bad USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION vms._inspection_check_plan(vms.inspection_plan) IS 'internal: a plan''s scope, schedule, checks and windows are valid';

CREATE FUNCTION vms._inspection_plan_trigger() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM vms._inspection_check_plan(NEW);
    PERFORM vms._wake_worker('inspector 1');
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._inspection_plan_trigger() IS 'internal: validate a plan and wake the inspectors';
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
-- contains the current time (windows may wrap midnight), else the plan's.
CREATE FUNCTION vms._inspection_settings(p vms.inspection_plan, at timestamptz DEFAULT now(),
                                         OUT profile text, OUT thresholds jsonb)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT coalesce(w ->> 'profile', p.profile), p.thresholds || coalesce(w -> 'thresholds', '{}')
      FROM (SELECT 1) one
      LEFT JOIN LATERAL (
          SELECT w FROM jsonb_array_elements(p.windows) w
           WHERE CASE WHEN (w ->> 'from')::time <= (w ->> 'to')::time
                      THEN at::time >= (w ->> 'from')::time AND at::time < (w ->> 'to')::time
                      ELSE at::time >= (w ->> 'from')::time OR at::time < (w ->> 'to')::time END
           LIMIT 1) win ON true
$$;
COMMENT ON FUNCTION vms._inspection_settings(vms.inspection_plan, timestamptz) IS
    'internal: profile and thresholds of the time window in force, else the plan''s';

-- Due plans become rounds: one task per channel in scope.  Returns the
-- number of tasks created.
CREATE FUNCTION vms._inspection_schedule() RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    p vms.inspection_plan;
    rid bigint;
    n integer;
    total integer := 0;
BEGIN
    FOR p IN SELECT * FROM vms.inspection_plan
              WHERE enabled AND next_run_at <= now() FOR UPDATE SKIP LOCKED LOOP
        -- a round still going is not started again
        CONTINUE WHEN EXISTS (SELECT 1 FROM vms.inspection_run r WHERE r.plan_id = p.id AND r.finished_at IS NULL);
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
    END LOOP;
    RETURN total;
END $$;
COMMENT ON FUNCTION vms._inspection_schedule() IS 'internal: start rounds of due plans (run by the inspector workers)';

-- A worker takes one task, within its plan's concurrency; the sampling
-- options come with it.  Tasks left running by a worker that died are
-- taken again after the plan's timeout twice over.
CREATE FUNCTION vms._inspection_claim(worker_name text)
    RETURNS TABLE (task_id bigint, channel_code text, source text, profile text, th_names text[], th_values float8[],
                   sample_seconds float8, sample_frames integer, timeout_ms integer, baseline bytea)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    t vms.inspection_task;
    p vms.inspection_plan;
    s record;
BEGIN
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
    s := vms._inspection_settings(p);
    RETURN QUERY
    SELECT t.id, t.channel_code::text, t.source, s.profile,
           ARRAY(SELECT k FROM jsonb_object_keys(s.thresholds) k ORDER BY k),
           ARRAY(SELECT (s.thresholds ->> k)::float8 FROM jsonb_object_keys(s.thresholds) k ORDER BY k),
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
    IF NOT FOUND OR t.state = 'done' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO p FROM vms.inspection_plan WHERE id = t.plan_id;
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
                                                  AND k.state <> 'done' AND k.id <> t.id) THEN now() END
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
       r.abnormal
  FROM vms.inspection_run r JOIN vms.inspection_plan p ON p.id = r.plan_id;
COMMENT ON VIEW vms.inspection_run_rates IS 'per round: 取流成功率 stream_success_rate and 出图率 image_rate over the channels done';

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
