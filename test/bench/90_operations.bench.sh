#!/usr/bin/env bash
# Operations centre: vms.availability over a month of 50,000 devices with
# synthetic transitions (by unit: channels as members; by device), and a
# mass outage of 10,000 devices turned into alarms (the SIP worker's flush
# of 10,000 offline flips in one statement, with the alarm triggers) against
# the same insert without them.  Its own database, so the 1M-channel ledger
# of the search benchmark does not count.  VMS_BENCH_OPS_DEVICES sets the size.
# vms.availability sums the kept runs (vms.availability_run), built here by
# vms.availability_rebuild() after the history is loaded with triggers off.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
dir=$1 port=$2
n=${VMS_BENCH_OPS_DEVICES:-50000}
psql_b() { cluster_psql "$dir" "$port" bench_ops -tA "$@"; }
cluster_psql "$dir" "$port" postgres -c "DROP DATABASE IF EXISTS bench_ops" -c "CREATE DATABASE bench_ops" >/dev/null
psql_b -c "SET client_min_messages = warning; CREATE EXTENSION vms CASCADE" >/dev/null
psql_b -f "$VMS_ROOT/test/bench/bench_lib.sql" >/dev/null
psql_b -v n="$n" >/dev/null <<'SQL'
SELECT setseed(0.15);
INSERT INTO vms.org_unit (name, civil_code) SELECT '运维单位' || u, '1101' || lpad(u::text, 2, '0') FROM generate_series(1, 100) u;
INSERT INTO vms.maintenance_contract (name, contractor) SELECT '合同' || k, '承包商' || k FROM generate_series(1, 5) k;
INSERT INTO vms.maintenance_scope (contract_id, unit_id) SELECT 1 + (id % 5), id FROM vms.org_unit;
ALTER TABLE vms.device DISABLE TRIGGER USER;
ALTER TABLE vms.channel DISABLE TRIGGER USER;
INSERT INTO vms.device (code, name, unit_id, civil_code)
SELECT vms.gbcode_make('11010500', 0, 132, 0, i), 'IPC ' || i, 1 + i % 100, '1101' || lpad((1 + i % 100)::text, 2, '0')
  FROM generate_series(1, :n) i;
INSERT INTO vms.channel (code, device_code, name)
SELECT vms.gbcode_make('11010500', 0, 131, 0, i), vms.gbcode_make('11010500', 0, 132, 0, i), 'cam ' || i
  FROM generate_series(1, :n) i;
ALTER TABLE vms.device ENABLE TRIGGER USER;
ALTER TABLE vms.channel ENABLE TRIGGER USER;
-- 30 days (2026-03-01 .. 03-31 UTC): online at the start, then outages of
-- 1 minute to 4 hours, on average one every two days per device
ALTER TABLE vms.device_event DISABLE TRIGGER USER;
INSERT INTO vms.device_event (device_code, at, event, cause)
SELECT code, '2026-02-28 23:00+00', 'online', 'registered' FROM vms.device;
INSERT INTO vms.device_event (device_code, at, event, cause)
SELECT d.code, t.at + x.dt, x.ev, 'bench'
  FROM vms.device d
 CROSS JOIN LATERAL (SELECT '2026-03-01 00:00+00'::timestamptz + random() * interval '30 days' AS at,
                            random() * interval '4 hours' + interval '1 minute' AS len
                       FROM generate_series(1, 15) WHERE d.code IS NOT NULL) t
 CROSS JOIN LATERAL (VALUES (interval '0', 'offline'), (t.len, 'online')) x(dt, ev);
ALTER TABLE vms.device_event ENABLE TRIGGER USER;
SQL
# loaded with the triggers off (no alarms for the history): the kept runs
# are built as the upgrade builds them
rebuild=$(psql_b -c "SELECT bench.time_ms('SELECT vms.availability_rebuild()', 1)")
psql_b -c "VACUUM ANALYZE" >/dev/null
events=$(psql_b -c "SELECT count(*) FROM vms.device_event")
runs=$(psql_b -c "SELECT count(*) FROM vms.availability_run")
echo "# $n devices, $events transitions, $runs kept runs built in $rebuild ms" >&2
psql_b -v n="$n" <<'SQL'
-- baseline: offline seconds per unit straight from the events (lead()),
-- without unknown time, gaps, channels or clipping
SELECT bench.time_ms($$
  SELECT d.unit_id, sum(extract(epoch FROM least(coalesce(e.nxt, '2026-04-01 00:00+00'), '2026-04-01 00:00+00')
                                   - greatest(e.at, '2026-03-01 00:00+00'))) FILTER (WHERE e.event = 'offline')
    FROM (SELECT device_code, at, event, lead(at) OVER (PARTITION BY device_code ORDER BY at, id) AS nxt
            FROM vms.device_event WHERE event IN ('online', 'offline') AND at < '2026-04-01 00:00+00') e
    JOIN vms.device d ON d.code = e.device_code
   GROUP BY 1$$, 3) AS base \gset
SELECT bench.time_ms($$SELECT count(*) FROM vms.availability('2026-03-01 00:00+00', '2026-04-01 00:00+00', 'unit')$$, 3) AS unit_ms \gset
SELECT bench.time_ms($$SELECT count(*) FROM vms.availability('2026-03-01 00:00+00', '2026-04-01 00:00+00', 'device')$$, 3) AS device_ms \gset
SELECT bench.line('availability_month_by_unit_' || :n || '_devices', :unit_ms, 'ms', :base, '<1000ms');
SELECT bench.line('availability_month_by_device_' || :n || '_devices', :device_ms, 'ms', :base, 'n/a');
-- the same month with a recorded server outage (2 h unknown for every device)
SELECT vms.availability_gap_add('2026-03-15 00:00+00', '2026-03-15 02:00+00', 'bench: server outage') > 0 AS gap \gset
SELECT bench.time_ms($$SELECT count(*) FROM vms.availability('2026-03-01 00:00+00', '2026-04-01 00:00+00', 'unit')$$, 3) AS gap_ms \gset
SELECT bench.line('availability_month_by_unit_with_outage_' || :n || '_devices', :gap_ms, 'ms', :base, '<1000ms');
-- mass outage: 10,000 offline flips in one statement, as the SIP worker's flush writes them
CREATE TEMP TABLE outage AS SELECT code FROM vms.device ORDER BY code LIMIT 10000;
ALTER TABLE vms.device_event DISABLE TRIGGER USER;
SELECT bench.time_ms($$INSERT INTO vms.device_event (device_code, at, event, cause)
                       SELECT code, now(), 'offline', 'keepalive timeout' FROM outage$$) AS bare_ms \gset
ALTER TABLE vms.device_event ENABLE TRIGGER USER;
SELECT bench.time_ms($$INSERT INTO vms.device_event (device_code, at, event, cause)
                       SELECT code, now(), 'offline', 'keepalive timeout' FROM outage$$) AS outage_ms \gset
SELECT count(*) AS raised FROM vms.alarm WHERE fault_type = 'offline' AND state = 'open' \gset
SELECT bench.line('mass_outage_10000_alarms_raised_' || :raised, :outage_ms, 'ms', :bare_ms, '<5000ms');
SELECT bench.time_ms($$INSERT INTO vms.device_event (device_code, at, event, cause)
                       SELECT code, now(), 'online', 'registered' FROM outage$$) AS back_ms \gset
SELECT bench.line('mass_return_10000_alarms_cleared', :back_ms, 'ms', :bare_ms, '<5000ms');
SQL
