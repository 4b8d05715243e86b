-- helpers for benchmarks: time a statement, format a BENCH line
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
