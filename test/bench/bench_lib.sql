-- helpers for benchmarks: time a statement, format a BENCH line
SET check_function_bodies = off;
CREATE SCHEMA IF NOT EXISTS bench;

-- median wall time in milliseconds of running q `runs` times
CREATE OR REPLACE FUNCTION bench.time_ms(q text, runs int DEFAULT 1) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    times float8[] := '{}';
BEGIN
    FOR i IN 1 .. runs LOOP
        t0 := clock_timestamp();
        EXECUTE q;
        times := times || extract(epoch FROM clock_timestamp() - t0) * 1000;
    END LOOP;
    RETURN (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t) FROM unnest(times) t);
END $$;

CREATE OR REPLACE FUNCTION bench.line(name text, value float8, unit text, baseline float8, target text)
RETURNS text LANGUAGE sql AS $$
    SELECT format('BENCH %s %s %s baseline=%s ratio=%s target=%s', name, round(value::numeric, 3), unit,
                  round(baseline::numeric, 3), round((value / nullif(baseline, 0))::numeric, 3), target)
$$;

-- p50 and p95 in ms of n runs of a query template; %1$s and %2$s are replaced
-- by a random longitude and latitude inside the benchmark city each run
CREATE OR REPLACE FUNCTION bench.latency(tmpl text, n int, OUT p50 float8, OUT p95 float8)
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    times float8[] := '{}';
    q text;
BEGIN
    FOR i IN 1 .. n LOOP
        q := format(tmpl, round((116.22 + random() * 0.36)::numeric, 6), round((39.77 + random() * 0.26)::numeric, 6));
        t0 := clock_timestamp();
        EXECUTE q;
        times := times || extract(epoch FROM clock_timestamp() - t0) * 1000;
    END LOOP;
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t), percentile_cont(0.95) WITHIN GROUP (ORDER BY t)
      INTO p50, p95 FROM unnest(times) t;
END $$;

-- the naive tile: every point of a plain table, no clustering
CREATE OR REPLACE FUNCTION bench.bare_tile(z int, x int, y int) RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT ST_AsMVT(f, 'pts', 4096, 'geom') FROM (
        SELECT ST_AsMVTGeom(ST_Transform(p.geom, 3857), ST_TileEnvelope(z, x, y), 4096, 64, true) AS geom, p.id
          FROM bench.pts p WHERE p.geom && ST_Transform(ST_TileEnvelope(z, x, y), 4326)) f
$$;
