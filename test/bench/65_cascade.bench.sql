-- GB/T 28181 cascade (issue 16), the database side of an upper platform's
-- requests over a share of 10,000 channels: the whole Catalog answer (every
-- page, GB2312, SumNum) against reading and serialising the same rows as
-- text; and the change check a Catalog subscription runs on each change
-- (one channel changed among 10,000) against evaluating the share alone.
-- The NOTIFY latency from a ledger change to the upper platform is measured
-- end to end in 65_cascade_notify.bench.sh.
\set ECHO none
SET client_min_messages = warning;
\o /dev/null
INSERT INTO vms.device (code, name, manufacturer, model)
VALUES ('34029900001180000001', 'bench cascade NVR', 'Hik', 'DS-9600') ON CONFLICT DO NOTHING;
INSERT INTO vms.channel (code, device_code, name, civil_code, address, geom, online)
SELECT ('3402990000132' || lpad(i::text, 7, '0'))::vms.gbcode, '34029900001180000001', '通道 ' || i, '340299',
       '路 ' || i || ' 号', public.ST_SetSRID(public.ST_MakePoint(117 + i / 100000.0, 31.8), 4326), true
  FROM generate_series(1, 10000) i
ON CONFLICT DO NOTHING;
-- an upstream the worker does not register to (disabled): only its share is measured
SELECT vms.sip_add_upstream('bench_city', '127.0.0.1', 9, '34010000002000000001', 'bench',
                            '{"local_id": "34029900002000000001", "catalog_page_size": 20}')
 WHERE NOT EXISTS (SELECT 1 FROM vms.sip_upstream WHERE name = 'bench_city');
SELECT vms.sip_alter_upstream('bench_city', enabled => false);
SELECT vms.sip_share('bench_city', '{"regions": ["340299"]}');

CREATE OR REPLACE FUNCTION bench.cascade_flip() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    UPDATE vms.channel SET online = NOT online WHERE code = '34029900001320000001';
    RETURN (SELECT count(*) FROM vms._sip_upstream_changes('bench_city', '2'));
END $$;

\o
SELECT bench.line('cascade_catalog_answer_10k',
       bench.time_ms($$SELECT sum(length(b)) FROM vms._sip_upstream_answer('bench_city', 'Catalog', '1', '34029900002000000001') b$$, 5),
       'ms',
       bench.time_ms($$SELECT sum(length(c::text)) FROM vms.channel c WHERE civil_code = '340299'$$, 5),
       '<= 2000 ms for 500 pages');
\o /dev/null
SELECT count(*) FROM vms._sip_upstream_changes('bench_city', '1', true);
\o
SELECT bench.line('cascade_notify_check_10k',
       bench.time_ms($$SELECT bench.cascade_flip()$$, 5), 'ms',
       bench.time_ms($$SELECT count(*) FROM vms.sip_shared_channels('bench_city')$$, 5),
       '<= 500 ms per change');
\o /dev/null
SELECT vms.sip_drop_upstream('bench_city');
DELETE FROM vms.channel WHERE device_code = '34029900001180000001';
DELETE FROM vms.device WHERE code = '34029900001180000001';
\o
