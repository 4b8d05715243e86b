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
