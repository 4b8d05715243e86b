-- vms.gbcode: input, output, errors, parts, ordering, binary form
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- vms functions live in schema vms; the comparison operators work on any search_path
SET search_path = public, vms;

-- err(sql): run a statement, show SQLSTATE, message and detail of its error
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; m text; d text;
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
    RETURN st || ': ' || m || coalesce(' | ' || nullif(d, ''), '');
END $$;

SELECT '34020000001320000001'::vms.gbcode;
SELECT '  34020000001320000001 '::vms.gbcode AS trimmed;
SELECT E'\t34020000001320000001\n'::vms.gbcode AS tabs_newlines;
SELECT '00000000000000000000'::vms.gbcode AS smallest, '99999999999999999999'::vms.gbcode AS largest;
SELECT pg_column_size('34020000001320000001'::vms.gbcode) AS bytes;

-- every kind of bad input: SQLSTATE 22P02 and where the problem is
SELECT pg_temp.err($$SELECT ''::vms.gbcode$$);
SELECT pg_temp.err($$SELECT '   '::vms.gbcode$$);
SELECT pg_temp.err($$SELECT '3402000000132000000'::vms.gbcode$$);
SELECT pg_temp.err($$SELECT '340200000013200000011'::vms.gbcode$$);
SELECT pg_temp.err($$SELECT '3402000000132000000x'::vms.gbcode$$);
SELECT pg_temp.err($$SELECT '34020000 001320000001'::vms.gbcode$$);
SELECT pg_temp.err($$SELECT '3402-0000-0013-2000-0001'::vms.gbcode$$);
SELECT pg_temp.err($$SELECT '３４020000001320000001'::vms.gbcode$$);
SELECT pg_temp.err($$SELECT '-4020000001320000001'::vms.gbcode$$);
SELECT pg_temp.err($$SELECT '+34020000001320000001'::vms.gbcode$$);
-- the full error as a client sees it
\set VERBOSITY default
SELECT '340200000013200000x1'::vms.gbcode;
SELECT vms.gbcode_parse_error('3402000000132000000'), vms.gbcode_parse_error('34020000001320000001');

-- casts
SELECT '34020000001320000001'::text::vms.gbcode::text;
SELECT '34020000001320000001'::varchar::vms.gbcode;
CREATE TEMP TABLE t_assign (c vms.gbcode);
INSERT INTO t_assign VALUES ('34020000001320000001'::text);
SELECT c FROM t_assign;

-- parts
SELECT vms.gbcode_centre(c) AS centre, vms.gbcode_province(c) AS province,
       vms.gbcode_city(c) AS city, vms.gbcode_county(c) AS county,
       vms.gbcode_industry(c) AS industry, vms.gbcode_type(c) AS type,
       vms.gbcode_type_name(c) AS type_name, vms.gbcode_network(c) AS network,
       vms.gbcode_serial(c) AS serial
  FROM (VALUES ('11010500001320000007'::vms.gbcode), ('44030400051180000123'),
               ('01000000002150000001'), ('34020000009993000999')) v(c);
SELECT vms.gbcode_make('11010500', 0, 132, 0, 7);
SELECT vms.gbcode_make('00000000', 0, 0, 0, 0);
SELECT pg_temp.err($$SELECT vms.gbcode_make('1101050', 0, 132, 0, 7)$$);
SELECT pg_temp.err($$SELECT vms.gbcode_make('1101050a', 0, 132, 0, 7)$$);
SELECT pg_temp.err($$SELECT vms.gbcode_make('11010500', 100, 132, 0, 7)$$);
SELECT pg_temp.err($$SELECT vms.gbcode_make('11010500', 0, 1000, 0, 7)$$);
SELECT pg_temp.err($$SELECT vms.gbcode_make('11010500', 0, 132, 10, 7)$$);
SELECT pg_temp.err($$SELECT vms.gbcode_make('11010500', 0, 132, 0, 1000000)$$);
SELECT pg_temp.err($$SELECT vms.gbcode_make('11010500', -1, 132, 0, 7)$$);
SELECT vms.gbcode_make(vms.gbcode_centre(c), vms.gbcode_industry(c)::int, vms.gbcode_type(c),
                       vms.gbcode_network(c), vms.gbcode_serial(c)::int) = c AS round_trip
  FROM (VALUES ('34020000001320000001'::vms.gbcode)) v(c);

-- region membership
SELECT vms.gbcode_in_region('11010500001320000007', p) AS inside, p
  FROM unnest(ARRAY['11', '1101', '110105', '11010500', '12', '1102', '110106', '11010501']) p;
SELECT vms.gbcode_region_lower('1101'), vms.gbcode_region_upper('1101');
SELECT pg_temp.err($$SELECT vms.gbcode_in_region('11010500001320000007', '110')$$);
SELECT pg_temp.err($$SELECT vms.gbcode_in_region('11010500001320000007', '11x1')$$);
SELECT pg_temp.err($$SELECT vms.gbcode_in_region('11010500001320000007', '')$$);

-- semantic check
SELECT c, vms.gbcode_problems(c) FROM (VALUES ('34020000001320000001'::vms.gbcode),
       ('34020000999990000001'), ('34020000001329000001'), ('00020000001320000001'),
       ('34020000301130000001'), ('34020000003500000001'), ('34020000004500000001')) v(c);
SELECT * FROM vms.gbcode_check('00020000991199000001');
SELECT count(*) AS types, count(*) FILTER (WHERE type IN (131, 132, 215, 216)) AS key_types FROM vms.gb_device_type;
SELECT * FROM vms.gb_industry WHERE industry IN (0, 4, 14, 45) ORDER BY industry;

-- ordering equals text ordering
CREATE TEMP TABLE t_codes AS
SELECT lpad((i * 7919 % 100000)::text, 8, '0') || lpad((i * 31 % 1000000)::text, 6, '0')
       || lpad((i * 104729 % 1000000)::text, 6, '0') AS t
  FROM generate_series(1, 2000) i;
INSERT INTO t_codes VALUES ('00000000000000000000'), ('99999999999999999999'), ('09999999999999999999'),
                           ('10000000000000000000'), ('99999999999999999998');
SELECT count(*) AS mismatches FROM (
    SELECT t, row_number() OVER (ORDER BY t COLLATE "C") AS by_text,
              row_number() OVER (ORDER BY t::vms.gbcode) AS by_code FROM t_codes) s
 WHERE by_text <> by_code;
SELECT count(*) AS mismatches FROM t_codes a, t_codes b
 WHERE a.t < b.t COLLATE "C" AND NOT (a.t::vms.gbcode < b.t::vms.gbcode)
   AND a.t < '005' AND b.t < '005';
SELECT '11010500001320000007'::vms.gbcode < '11010500001320000008', 
       '11010500001320000007'::vms.gbcode <= '11010500001320000007',
       '11010500001320000007'::vms.gbcode = '11010500001320000007',
       '11010500001320000007'::vms.gbcode <> '11010500001320000007',
       '11010500001320000007'::vms.gbcode >= '21010500001320000007',
       '11010500001320000007'::vms.gbcode > '11010500001310000007';
SELECT vms.gbcode_cmp('11010500001320000007', '11010500001320000008'),
       vms.gbcode_cmp('11010500001320000008', '11010500001320000008'),
       vms.gbcode_cmp('11010500011320000000', '11010500001399999999');

-- binary send/receive round trip through COPY BINARY
CREATE TEMP TABLE t_bin (c vms.gbcode);
INSERT INTO t_bin VALUES ('34020000001320000001'), ('99999999999999999999');
-- (files in this cluster's data directory, no other run's)
SELECT current_setting('data_directory') || '/vms_regress_gbcode.bin' AS bin_file \gset
COPY t_bin TO :'bin_file' WITH (FORMAT binary);
CREATE TEMP TABLE t_bin2 (c vms.gbcode);
COPY t_bin2 FROM :'bin_file' WITH (FORMAT binary);
SELECT * FROM t_bin2 ORDER BY c;
SELECT vms.gbcode_send('34020000001320000001');
-- a binary value that is not a 20-digit code is refused
\set VERBOSITY terse
SELECT pg_temp.err($$COPY t_bin2 FROM PROGRAM 'printf ''PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0\0\1\0\0\0\14\377\377\377\377\0\0\0\0\0\0\0\0\377\377''' WITH (FORMAT binary)$$);

-- hashing: consistent with equality, usable for hash joins and partitions
SELECT vms.gbcode_hash('34020000001320000001') = vms.gbcode_hash(' 34020000001320000001');
SELECT vms.gbcode_hash_extended('34020000001320000001', 0) = vms.gbcode_hash_extended('34020000001320000001', 0),
       vms.gbcode_hash_extended('34020000001320000001', 0) <> vms.gbcode_hash_extended('34020000001320000001', 1);
