-- vms.gbcode in indexes, joins and partitions
\set SHOW_CONTEXT never
SET search_path = public, vms;
CREATE TABLE t_idx (code vms.gbcode PRIMARY KEY, n int);
INSERT INTO t_idx
SELECT vms.gbcode_make(lpad((110101 + i % 17)::text, 6, '0') || '00', 0, 132, 0, i), i
  FROM generate_series(1, 20000) i;
ANALYZE t_idx;

-- equality and region membership use the btree index
EXPLAIN (COSTS OFF) SELECT * FROM t_idx WHERE code = '11010800001320000007';
SELECT n FROM t_idx WHERE code = '11010800001320000007';
EXPLAIN (COSTS OFF) SELECT count(*) FROM t_idx WHERE vms.gbcode_in_region(code, '110105');
SELECT count(*) FROM t_idx WHERE vms.gbcode_in_region(code, '110105');
SELECT count(*) FROM t_idx WHERE vms.gbcode_county(code) = '110105';
EXPLAIN (COSTS OFF) SELECT code FROM t_idx ORDER BY code LIMIT 3;
SELECT code FROM t_idx ORDER BY code LIMIT 3;
SELECT code FROM t_idx ORDER BY code DESC LIMIT 2;

-- hash index and hash join
CREATE INDEX t_idx_hash ON t_idx USING hash (code);
SET enable_indexscan = off; SET enable_bitmapscan = on;
EXPLAIN (COSTS OFF) SELECT n FROM t_idx WHERE code = '11010800001320000007';
RESET enable_indexscan;
CREATE TABLE t_idx2 AS SELECT code, n * 2 AS m FROM t_idx WHERE n % 3 = 0;
ANALYZE t_idx2;
SET enable_mergejoin = off; SET enable_nestloop = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM t_idx a JOIN t_idx2 b USING (code);
SELECT count(*) FROM t_idx a JOIN t_idx2 b USING (code);
RESET enable_mergejoin; SET enable_hashjoin = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM t_idx a JOIN t_idx2 b USING (code);
SELECT count(*) FROM t_idx a JOIN t_idx2 b USING (code);
RESET enable_hashjoin; RESET enable_nestloop;
SELECT count(DISTINCT code) FROM t_idx;
SELECT vms.gbcode_type(code), count(*) FROM t_idx GROUP BY 1;

-- hash partitioning (uses the extended hash function)
CREATE TABLE t_part (code vms.gbcode PRIMARY KEY, v text) PARTITION BY HASH (code);
CREATE TABLE t_part_0 PARTITION OF t_part FOR VALUES WITH (MODULUS 4, REMAINDER 0);
CREATE TABLE t_part_1 PARTITION OF t_part FOR VALUES WITH (MODULUS 4, REMAINDER 1);
CREATE TABLE t_part_2 PARTITION OF t_part FOR VALUES WITH (MODULUS 4, REMAINDER 2);
CREATE TABLE t_part_3 PARTITION OF t_part FOR VALUES WITH (MODULUS 4, REMAINDER 3);
INSERT INTO t_part SELECT code, n::text FROM t_idx;
SELECT sum(c) = 20000 AS all_rows,
       bool_and(c BETWEEN 4000 AND 6000) AS spread_evenly
  FROM (SELECT tableoid::regclass, count(*) c FROM t_part GROUP BY 1) s;
EXPLAIN (COSTS OFF) SELECT * FROM t_part WHERE code = '11010800001320000007';
SELECT v FROM t_part WHERE code = '11010800001320000007';
-- range partitioning by civil region works too
CREATE TABLE t_range (code vms.gbcode) PARTITION BY RANGE (code);
CREATE TABLE t_range_1101 PARTITION OF t_range FOR VALUES FROM ('11010000000000000000') TO ('11020000000000000000');
CREATE TABLE t_range_other PARTITION OF t_range DEFAULT;
INSERT INTO t_range VALUES ('11010500001320000007'), ('44030400051180000123');
SELECT tableoid::regclass, code FROM t_range ORDER BY code;
DROP TABLE t_idx, t_idx2, t_part, t_range;
