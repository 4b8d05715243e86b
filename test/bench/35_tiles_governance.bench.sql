-- Map tiles and governance runs over 1,000,000 channels (issue 20), on the
-- governance ledger of bench_lib.sql (bench.ledger_rows over the streets
-- of bench.city_regions: points uniform over the city box, region
-- boundaries, 3,000 far-away street boundaries of the rest of the province
-- that no channel lies in (bench.province_streets), naming patterns and a
-- fixed share of defects for each of the 12 rules); 30_search's ledger, if
-- loaded, is replaced.  -v rows=N for a
-- smaller ledger.
--
-- Tiles: the precomputed clusters are built from the ledger (timed, against
-- a bare aggregate of the same points per zoom-18 tile), then p50/p95 of
-- tiles at every zoom 8..18 (tile positions uniform over the city; 10-40 a
-- zoom, fewer where the city is one or two tiles, and 220 over all zooms) through
-- vms.channel_tiles, against the naive tile of the same run: ST_AsMVT over
-- every point of a plain table in the envelope, unclustered
-- (bench.bare_tile).  Every clustered tile's counts are checked against
-- bare PostGIS (geom_3857 && ST_TileEnvelope) as they are timed.  Then the
-- cost of keeping the clusters fresh during an import: 10 % more channels
-- inserted in one statement with every ledger trigger, against the same
-- insert with the cluster trigger disabled, and the refresh that folds
-- what it appended.
--
-- Governance: vms.governance_run() over the ledger, first run (opens every
-- task) and the next (refreshes them), against one sequential scan of the
-- channel table reading every row; what each rule found is printed
-- (governance_findings_<rule>, its share of the ledger as the ratio), and
-- the bench fails if a rule found nothing; then vms.governance_run_changed() after
-- 1 % of the channels changed, against the full run after it, which must
-- find every task as the incremental run left it.
SET search_path = public, vms;
SELECT setseed(0.35);
\if :{?rows}
\else
\set rows 1000000
\endif
-- The ledger: bench.ledger_rows over the city of bench.city_regions
-- (bench_lib.sql), with its region boundaries and naming patterns and a
-- fixed share of defects for each of the 12 governance rules, so that every
-- rule has work (the ledger of 30_search, which this file used before, has
-- neither boundaries nor naming patterns and a name shared by every
-- channel's unit: two rules found nothing there, eight more nothing either,
-- and duplicate_name everything).  Loaded here unless it is loaded already
-- (30_search's is replaced).
SELECT count(*) < :rows / 2 OR NOT EXISTS (SELECT 1 FROM vms.naming_pattern WHERE civil_prefix = '11010511')
       OR NOT EXISTS (SELECT 1 FROM vms.channel WHERE name = 'IPCamera')
       OR NOT EXISTS (SELECT 1 FROM vms.region WHERE level = 4 AND civil_code NOT LIKE '110105%') AS need_load
  FROM vms.channel \gset
\if :need_load
TRUNCATE vms.channel CASCADE;
DROP TABLE IF EXISTS bench.pts;
SELECT bench.city_regions();
ALTER TABLE vms.channel DISABLE TRIGGER USER;
INSERT INTO vms.org_unit (name) SELECT '分局' || i FROM generate_series(1, 20) i ON CONFLICT DO NOTHING;
INSERT INTO vms.device (code, name)
SELECT vms.gbcode_make('110105' || lpad((1 + i % 16)::text, 2, '0'), 0, 118, 0, i / 16), 'NVR-' || i
  FROM generate_series(0, :rows / 10 - 1) i ON CONFLICT DO NOTHING;
INSERT INTO vms.channel (code, device_code, name, address, civil_code, point_type, place_type, azimuth, fov_angle,
                         fov_range_m, resolution, capabilities, unit_id, geom, online, updated_at)
SELECT * FROM bench.ledger_rows(0, :rows, :rows / 10);
ALTER TABLE vms.channel ENABLE TRIGGER USER;
CLUSTER vms.channel USING channel_geom_idx;
VACUUM ANALYZE vms.channel;
\endif
-- the same points in a plain table for the naive tile (30_search made it)
SELECT to_regclass('bench.pts') IS NULL AS need_pts \gset
\if :need_pts
CREATE TABLE bench.pts AS SELECT code::text AS id, geom FROM vms.channel;
CREATE INDEX ON bench.pts USING gist (geom);
VACUUM ANALYZE bench.pts;
\endif

-- ENABLE TRIGGER USER (here and in 30_search) turns every trigger on for
-- ordinary sessions, also the city's replica-only row trigger of the cluster
-- cells (27_cluster_sync.sql), which would then count every insert twice
SELECT count(*) > 0 AS has_replica_tiles FROM pg_trigger
 WHERE tgrelid = 'vms.channel'::regclass AND tgname = 'channel_cluster_apply_tiles' \gset
\if :has_replica_tiles
ALTER TABLE vms.channel ENABLE REPLICA TRIGGER channel_cluster_apply_tiles;
\endif
-- the clusters of the ledger as loaded (loads above ran without triggers)
SELECT bench.time_ms('SELECT vms.channel_clusters_refresh(true)') AS build_ms \gset
SELECT bench.time_ms($$SELECT count(*) FROM (SELECT floor(ST_X(geom_3857) / 152.87), floor(ST_Y(geom_3857) / 152.87), count(*)
                                               FROM vms.channel WHERE geom_3857 IS NOT NULL GROUP BY 1, 2) s$$) AS agg_ms \gset
VACUUM ANALYZE vms.channel_cluster;

-- tiles at zoom z: n positions uniform over the city; the same tiles for both
CREATE FUNCTION bench.tile_latency(zmin int, zmax int, n int, OUT p50 float8, OUT p95 float8, OUT bare_p50 float8,
                                   OUT bare_p95 float8, OUT mismatches int)
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    mine float8[] := '{}';
    bare float8[] := '{}';
    z int; x int; y int; lon float8; lat float8;
    tile bytea;
BEGIN
    mismatches := 0;
    FOR i IN 1 .. n LOOP
        z := zmin + (i - 1) % (zmax - zmin + 1);
        lon := 116.22 + random() * 0.36; lat := 39.77 + random() * 0.26;
        x := floor((lon + 180) / 360 * 2 ^ z); y := floor((1 - ln(tan(radians(lat)) + 1 / cos(radians(lat))) / pi()) / 2 * 2 ^ z);
        t0 := clock_timestamp();
        tile := vms.channel_tiles(z, x, y);
        mine := mine || extract(epoch FROM clock_timestamp() - t0) * 1000;
        t0 := clock_timestamp();
        PERFORM length(bench.bare_tile(z, x, y));
        bare := bare || extract(epoch FROM clock_timestamp() - t0) * 1000;
        -- a clustered tile's counts add up to bare PostGIS over its envelope
        IF z < 13 AND i % 5 = 0 AND (SELECT count(*) FROM vms.channel c WHERE c.geom_3857 && ST_TileEnvelope(z, x, y))
              <> (SELECT coalesce(sum(f.n), 0) FROM bench.mvt_counts(tile) f) THEN
            mismatches := mismatches + 1;
        END IF;
    END LOOP;
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t), percentile_cont(0.95) WITHIN GROUP (ORDER BY t)
      INTO p50, p95 FROM unnest(mine) t;
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t), percentile_cont(0.95) WITHIN GROUP (ORDER BY t)
      INTO bare_p50, bare_p95 FROM unnest(bare) t;
END $$;
-- the "count" values of a tile's features (a minimal MVT reader: layer >
-- keys, values, features' tags; counts are uint values)
CREATE FUNCTION bench.mvt_counts(tile bytea) RETURNS TABLE (n bigint) LANGUAGE plpgsql AS $$
DECLARE
    p int := 0; lend int; e int; tag bigint; len bigint; keys text[]; vals bigint[]; tags int[]; v bigint;
    b int; shift int;
BEGIN
    -- varint reader inlined
    WHILE p < length(tile) LOOP
        tag := 0; shift := 0; LOOP b := get_byte(tile, p); p := p + 1; tag := tag | ((b & 127)::bigint << shift); EXIT WHEN b < 128; shift := shift + 7; END LOOP;
        len := 0; shift := 0; LOOP b := get_byte(tile, p); p := p + 1; len := len | ((b & 127)::bigint << shift); EXIT WHEN b < 128; shift := shift + 7; END LOOP;
        CONTINUE WHEN tag <> 26;
        lend := p + len; keys := '{}'; vals := '{}'; tags := '{}';
        WHILE p < lend LOOP
            tag := 0; shift := 0; LOOP b := get_byte(tile, p); p := p + 1; tag := tag | ((b & 127)::bigint << shift); EXIT WHEN b < 128; shift := shift + 7; END LOOP;
            IF tag & 7 = 0 THEN LOOP b := get_byte(tile, p); p := p + 1; EXIT WHEN b < 128; END LOOP; CONTINUE; END IF;
            len := 0; shift := 0; LOOP b := get_byte(tile, p); p := p + 1; len := len | ((b & 127)::bigint << shift); EXIT WHEN b < 128; shift := shift + 7; END LOOP;
            IF tag = 26 THEN
                keys := keys || convert_from(substring(tile FROM p + 1 FOR len::int), 'UTF8');
            ELSIF tag = 34 THEN
                e := p + len; v := NULL;
                WHILE p < e LOOP
                    tag := 0; shift := 0; LOOP b := get_byte(tile, p); p := p + 1; tag := tag | ((b & 127)::bigint << shift); EXIT WHEN b < 128; shift := shift + 7; END LOOP;
                    IF tag IN (32, 40) THEN
                        v := 0; shift := 0; LOOP b := get_byte(tile, p); p := p + 1; v := v | ((b & 127)::bigint << shift); EXIT WHEN b < 128; shift := shift + 7; END LOOP;
                    ELSIF tag & 7 = 0 THEN LOOP b := get_byte(tile, p); p := p + 1; EXIT WHEN b < 128; END LOOP;
                    ELSIF tag & 7 = 1 THEN p := p + 8;
                    ELSIF tag & 7 = 5 THEN p := p + 4;
                    ELSE
                        len := 0; shift := 0; LOOP b := get_byte(tile, p); p := p + 1; len := len | ((b & 127)::bigint << shift); EXIT WHEN b < 128; shift := shift + 7; END LOOP;
                        p := p + len::int;
                    END IF;
                END LOOP;
                vals := vals || v;
                p := e;
                CONTINUE;
            ELSIF tag = 18 THEN
                e := p + len;
                WHILE p < e LOOP
                    tag := 0; shift := 0; LOOP b := get_byte(tile, p); p := p + 1; tag := tag | ((b & 127)::bigint << shift); EXIT WHEN b < 128; shift := shift + 7; END LOOP;
                    IF tag & 7 = 0 THEN LOOP b := get_byte(tile, p); p := p + 1; EXIT WHEN b < 128; END LOOP; CONTINUE; END IF;
                    len := 0; shift := 0; LOOP b := get_byte(tile, p); p := p + 1; len := len | ((b & 127)::bigint << shift); EXIT WHEN b < 128; shift := shift + 7; END LOOP;
                    IF tag = 18 THEN
                        DECLARE te int := p + len; k int; val int; BEGIN
                            WHILE p < te LOOP
                                k := 0; shift := 0; LOOP b := get_byte(tile, p); p := p + 1; k := k | ((b & 127) << shift); EXIT WHEN b < 128; shift := shift + 7; END LOOP;
                                val := 0; shift := 0; LOOP b := get_byte(tile, p); p := p + 1; val := val | ((b & 127) << shift); EXIT WHEN b < 128; shift := shift + 7; END LOOP;
                                tags := tags || k || val;
                            END LOOP;
                        END;
                    ELSE
                        p := p + len::int;
                    END IF;
                END LOOP;
                p := e;
                CONTINUE;
            END IF;
            p := p + len::int;
        END LOOP;
        FOR i IN 1 .. cardinality(tags) / 2 LOOP
            IF keys[tags[2 * i - 1] + 1] = 'count' THEN n := vals[tags[2 * i] + 1]; RETURN NEXT; END IF;
        END LOOP;
        p := lend;
    END LOOP;
END $$;
SELECT * FROM bench.tile_latency(8, 8, 10) \gset z8_
SELECT * FROM bench.tile_latency(9, 9, 10) \gset z9_
SELECT * FROM bench.tile_latency(10, 10, 20) \gset z10_
SELECT * FROM bench.tile_latency(11, 11, 40) \gset z11_
SELECT * FROM bench.tile_latency(12, 12, 40) \gset z12_
SELECT * FROM bench.tile_latency(13, 13, 40) \gset z13_
SELECT * FROM bench.tile_latency(14, 14, 40) \gset z14_
SELECT * FROM bench.tile_latency(15, 15, 40) \gset z15_
SELECT * FROM bench.tile_latency(16, 16, 40) \gset z16_
SELECT * FROM bench.tile_latency(17, 17, 40) \gset z17_
SELECT * FROM bench.tile_latency(18, 18, 40) \gset z18_
SELECT * FROM bench.tile_latency(8, 18, 220) \gset all_

-- keeping the clusters fresh during an import: 10 % more channels in one
-- statement, every ledger trigger on, against the same rows without the
-- cluster trigger (codes apart, rolled back)
CREATE TABLE bench.more AS SELECT * FROM bench.ledger_rows(:rows, :rows / 10, :rows / 10);
CREATE FUNCTION bench.insert_more(clusters boolean) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; ms float8;
BEGIN
    IF NOT clusters THEN ALTER TABLE vms.channel DISABLE TRIGGER channel_clusters_ins; END IF;
    t0 := clock_timestamp();
    INSERT INTO vms.channel (code, device_code, name, address, civil_code, point_type, place_type, azimuth, fov_angle,
                             fov_range_m, resolution, capabilities, unit_id, geom, online, updated_at)
    SELECT * FROM bench.more;
    ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
    IF NOT clusters THEN ALTER TABLE vms.channel ENABLE TRIGGER channel_clusters_ins; END IF;
    RETURN ms;
END $$;
BEGIN;
SELECT bench.insert_more(false) AS insert_plain_ms \gset
ROLLBACK;
BEGIN;
SELECT bench.insert_more(true) AS insert_kept_ms \gset
COMMIT;
SELECT bench.time_ms('SELECT vms.channel_clusters_refresh()') AS refresh_ms \gset
VACUUM ANALYZE vms.channel_cluster;   -- as autovacuum would after the fold's updates
SELECT * FROM bench.tile_latency(8, 12, 50) \gset after_

-- governance: first run opens the tasks, the second refreshes them
SELECT bench.time_ms('SELECT count(*) FROM vms.channel c WHERE c.name IS NOT NULL') AS scan_ms \gset
SELECT bench.time_ms('SELECT vms.governance_run()') AS gov1_ms \gset
SELECT bench.time_ms('SELECT vms.governance_run()') AS gov2_ms \gset
SELECT count(*) AS channels FROM vms.channel \gset
SELECT findings, opened FROM vms.governance_run ORDER BY id LIMIT 1 \gset gov_
-- what each rule found in the run (its live tasks): every rule must have
-- found something, or the run's figure leaves its work out
CREATE TEMP TABLE bench_rule_findings AS
SELECT r.code, count(t.id) AS n FROM vms.governance_rule r
  LEFT JOIN vms.governance_task t ON t.rule_code = r.code AND t.state IN ('open', 'assigned', 'fixed', 'ignored')
 WHERE r.enabled GROUP BY r.code;
DO $$
DECLARE idle text;
BEGIN
    SELECT string_agg(code, ', ' ORDER BY code) INTO idle FROM bench_rule_findings WHERE n = 0;
    IF idle IS NOT NULL OR (SELECT count(*) FROM bench_rule_findings) < 12 THEN
        RAISE EXCEPTION 'governance bench: rules that found nothing: %', coalesce(idle, '(fewer than 12 rules enabled)')
            USING DETAIL = 'A rule with no finding in the bench ledger leaves its work out of the governance figure.';
    END IF;
END $$;

-- the incremental run over 1 % of the channels changed since: 90 % of them
-- an address edited, 9 % moved to another point (anywhere in the city: most
-- then lie in another street than their civil code's), 1 % renamed (a
-- rename takes the channel's old and new unit-and-name group along: here a
-- name is unique in its unit but for the 1 % of factory default names,
-- which a few hundred channels of a unit share), against the full run
-- after it (same ledger, same tasks); that full run must open, reopen and
-- close nothing, and every live task must read the same as after the
-- incremental run (governance_incremental_mismatches)
CREATE TEMP TABLE bench_changed AS
SELECT code, row_number() OVER (ORDER BY md5(code::text)) AS k FROM vms.channel ORDER BY md5(code::text) LIMIT :channels / 100;
UPDATE vms.channel c SET address = coalesce(c.address, '') || '（改）' FROM bench_changed b WHERE b.code = c.code AND b.k % 100 >= 10;
UPDATE vms.channel c SET geom = ST_SetSRID(ST_MakePoint(116.20 + random() * 0.40, 39.75 + random() * 0.30), 4326)
  FROM bench_changed b WHERE b.code = c.code AND b.k % 100 BETWEEN 1 AND 9;
UPDATE vms.channel c SET name = c.name || '-改' FROM bench_changed b WHERE b.code = c.code AND b.k % 100 = 0;
SELECT count(*) AS changed FROM bench_changed \gset
SELECT bench.time_ms('SELECT vms.governance_run_changed()') AS govinc_ms \gset
SELECT channels AS inc_channels, incremental AS inc_was_incremental FROM vms.governance_run ORDER BY id DESC LIMIT 1 \gset
CREATE TEMP TABLE bench_inc_tasks AS
SELECT channel_code, rule_code, state, severity, detail FROM vms.governance_task WHERE state IN ('open', 'assigned', 'fixed', 'ignored');
SELECT bench.time_ms('SELECT vms.governance_run()') AS gov3_ms \gset
SELECT opened + reopened + closed AS after_inc FROM vms.governance_run ORDER BY id DESC LIMIT 1 \gset
SELECT count(*) AS inc_diff FROM (
    (SELECT channel_code, rule_code, state, severity, detail FROM vms.governance_task
      WHERE state IN ('open', 'assigned', 'fixed', 'ignored') EXCEPT SELECT * FROM bench_inc_tasks)
    UNION ALL
    (SELECT * FROM bench_inc_tasks EXCEPT SELECT channel_code, rule_code, state, severity, detail FROM vms.governance_task
      WHERE state IN ('open', 'assigned', 'fixed', 'ignored'))) d \gset

SELECT bench.line('tile_clusters_build', :build_ms / 1000, 's', :agg_ms / 1000, 'none');
SELECT bench.line('tile_z' || z || '_p' || p, v, 'ms', b, CASE WHEN p = 95 THEN 'p95<=50ms' ELSE 'none' END)
  FROM (VALUES (8, 50, :z8_p50, :z8_bare_p50), (8, 95, :z8_p95, :z8_bare_p95),
               (9, 50, :z9_p50, :z9_bare_p50), (9, 95, :z9_p95, :z9_bare_p95),
               (10, 50, :z10_p50, :z10_bare_p50), (10, 95, :z10_p95, :z10_bare_p95),
               (11, 50, :z11_p50, :z11_bare_p50), (11, 95, :z11_p95, :z11_bare_p95),
               (12, 50, :z12_p50, :z12_bare_p50), (12, 95, :z12_p95, :z12_bare_p95),
               (13, 50, :z13_p50, :z13_bare_p50), (13, 95, :z13_p95, :z13_bare_p95),
               (14, 50, :z14_p50, :z14_bare_p50), (14, 95, :z14_p95, :z14_bare_p95),
               (15, 50, :z15_p50, :z15_bare_p50), (15, 95, :z15_p95, :z15_bare_p95),
               (16, 50, :z16_p50, :z16_bare_p50), (16, 95, :z16_p95, :z16_bare_p95),
               (17, 50, :z17_p50, :z17_bare_p50), (17, 95, :z17_p95, :z17_bare_p95),
               (18, 50, :z18_p50, :z18_bare_p50), (18, 95, :z18_p95, :z18_bare_p95)) t(z, p, v, b);
SELECT bench.line('tile_z8_18_p50', :all_p50, 'ms', :all_bare_p50, 'none');
SELECT bench.line('tile_z8_18_p95', :all_p95, 'ms', :all_bare_p95, 'p95<=50ms');
SELECT bench.line('tile_z8_12_p95_after_import', :after_p95, 'ms', :after_bare_p95, 'p95<=50ms');
SELECT bench.line('tile_cluster_count_mismatches', :z8_mismatches + :z9_mismatches + :z10_mismatches + :z11_mismatches
                  + :z12_mismatches + :all_mismatches + :after_mismatches, 'tiles', 0, '0');
SELECT bench.line('tile_clusters_upkeep_insert_' || :rows / 10, :insert_kept_ms / 1000, 's', :insert_plain_ms / 1000, 'none');
SELECT bench.line('tile_clusters_refresh_after_insert', :refresh_ms / 1000, 's', :insert_plain_ms / 1000, 'none');
SELECT bench.line('governance_findings_' || code, n, 'tasks', :channels, '>0') FROM bench_rule_findings ORDER BY code;
SELECT bench.line('governance_findings_total', :gov_findings, 'findings', :channels, 'none');
SELECT bench.line('governance_run_' || :channels, :gov1_ms / 1000, 's', :scan_ms / 1000, '<=20s');
SELECT bench.line('governance_rerun_' || :channels, :gov2_ms / 1000, 's', :scan_ms / 1000, '<=20s');
SELECT bench.line('governance_incremental_' || :changed || '_changed', :govinc_ms / 1000, 's', :gov3_ms / 1000, '<=0.1');
SELECT bench.line('governance_incremental_channels_taken', :inc_channels, 'channels', :channels, 'none');
SELECT bench.line('governance_incremental_mismatches', :after_inc + :inc_diff + CASE WHEN :'inc_was_incremental' THEN 0 ELSE 1 END,
                  'tasks', 0, '0');
