-- vms.gbcode against text keys: 1,000,000-row btree index lookups and a hash join.
SELECT setseed(0.7);
CREATE TABLE bench.k_gb AS
SELECT vms.gbcode_make(lpad((11010000 + i % 9000)::text, 8, '0'), i % 14, 132, 0, i % 1000000) AS code, i
  FROM generate_series(1, 1000000) i;
CREATE TABLE bench.k_txt AS SELECT code::text AS code, i FROM bench.k_gb;
ALTER TABLE bench.k_gb ADD PRIMARY KEY (code);
ALTER TABLE bench.k_txt ADD PRIMARY KEY (code);
CREATE TABLE bench.p_gb AS SELECT code FROM bench.k_gb ORDER BY random() LIMIT 200000;
CREATE TABLE bench.p_txt AS SELECT code::text AS code FROM bench.p_gb;
CREATE TABLE bench.j_gb AS SELECT code, i FROM bench.k_gb;
CREATE TABLE bench.j_txt AS SELECT code::text AS code, i FROM bench.k_gb;
VACUUM ANALYZE bench.k_gb, bench.k_txt, bench.p_gb, bench.p_txt, bench.j_gb, bench.j_txt;

-- index lookups: 200,000 probes through the btree (nested loop)
SET enable_hashjoin = off; SET enable_mergejoin = off;
SELECT bench.time_ms('SELECT count(*) FROM bench.p_gb p JOIN bench.k_gb k USING (code)', 5) AS gb_lookup \gset
SELECT bench.time_ms('SELECT count(*) FROM bench.p_txt p JOIN bench.k_txt k USING (code)', 5) AS txt_lookup \gset
RESET enable_hashjoin; RESET enable_mergejoin;
-- hash join of 1,000,000 x 1,000,000
SET enable_mergejoin = off; SET enable_nestloop = off; SET max_parallel_workers_per_gather = 0;
SELECT bench.time_ms('SELECT count(*) FROM bench.j_gb a JOIN bench.k_gb b USING (code)', 3) AS gb_hash \gset
SELECT bench.time_ms('SELECT count(*) FROM bench.j_txt a JOIN bench.k_txt b USING (code)', 3) AS txt_hash \gset
-- index build (sort) of 1,000,000 keys
SELECT bench.time_ms('CREATE INDEX ON bench.j_gb (code); DROP INDEX bench.j_gb_code_idx', 3) AS gb_build \gset
SELECT bench.time_ms('CREATE INDEX ON bench.j_txt (code); DROP INDEX bench.j_txt_code_idx', 3) AS txt_build \gset
SELECT pg_relation_size('bench.k_gb_pkey') AS gb_idx_size, pg_relation_size('bench.k_txt_pkey') AS txt_idx_size \gset

SELECT bench.line('gbcode_btree_lookup_200k', :gb_lookup, 'ms', :txt_lookup, '<=1.0');
SELECT bench.line('gbcode_hash_join_1m', :gb_hash, 'ms', :txt_hash, '<=1.0');
SELECT bench.line('gbcode_index_build_1m', :gb_build, 'ms', :txt_build, '<=1.0');
SELECT bench.line('gbcode_index_size_1m', :gb_idx_size / 1048576.0, 'MiB', :txt_idx_size / 1048576.0, '<=1.0');
