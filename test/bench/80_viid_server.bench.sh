#!/usr/bin/env bash
# GA/T 1400 server ingest: records/s the viid-server worker acknowledges
# (stored and committed) for MotorVehicles with one 20 KB image each, posted
# in batches of 100 by 8 concurrent clients (test/peers/viid_client.py
# bench, each with its own digest session); then the same without images;
# against COPY of the very same documents (image base64 inside) into an
# unindexed table in the same run.  Each rate also per CPU second of the
# worker (/proc/PID/stat): what it reaches with a core of its own.
# Called by test/scripts/bench.sh with: DIR PORT (the bench cluster).
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
dir=$1; port=$2
N=${VMS_BENCH_VIID_SERVER_RECORDS:-100000}
sport=${VMS_BENCH_VIID_SERVER_PORT:-$((port + 200))}
psql_b() { cluster_psql "$dir" "$port" bench -tA "$@"; }
client() { /usr/bin/python3 "$VMS_ROOT/test/peers/viid_client.py" --port "$sport" --user 34020000002000000001 \
             --password bench-pw --timeout 600 "$@"; }
# CPU seconds (user + system) the viid-server worker has used so far
worker_cpu() {
  local pid; pid=$(psql_b -c "SELECT pid FROM vms.worker_status WHERE name = 'viid-server'")
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$pid/stat"
}
json_field() { /usr/bin/python3 -c "import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])['$1'])"; }

psql_b -c "ALTER SYSTEM SET vms.viid_server_port = $sport" -c "ALTER SYSTEM SET vms.viid_server_listen = '127.0.0.1'" \
       -c "ALTER SYSTEM SET vms.viid_server_rate = 0" -c "ALTER SYSTEM SET vms.viid_server_max_body = '64MB'" \
       -c "SELECT pg_reload_conf()" >/dev/null
trap 'psql_b -c "ALTER SYSTEM RESET vms.viid_server_port" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true' EXIT
psql_b -c "SELECT vms.viid_client_add('34020000002000000001', 'bench-pw')" >/dev/null
for _ in $(seq 600); do
  [ "$(psql_b -c "SELECT state FROM vms.worker_status WHERE name = 'viid-server'")" = listening ] &&
    client time 2>/dev/null | grep -q '"status": 200' && break
  sleep 0.1
done

cpu0=$(worker_cpu)
with=$(client bench --clients 8 --count "$N" --batch 100 --images 1 --image-bytes 20480)
cpu1=$(worker_cpu)
with_rate=$(echo "$with" | json_field per_s)
with_acked=$(echo "$with" | json_field acked)
psql_b -c "TRUNCATE vms.viid_record, vms.viid_image" >/dev/null
cpu2=$(worker_cpu)
without=$(client bench --clients 8 --count "$N" --batch 100 --images 0)
cpu3=$(worker_cpu)
without_rate=$(echo "$without" | json_field per_s)

# the same documents COPY'd into an unindexed table
client bench --clients 8 --count "$N" --images 1 --image-bytes 20480 --dump "$dir/viid_docs.copy" >/dev/null
[ "$(id -u)" = 0 ] && chown "$PG_OS_USER" "$dir/viid_docs.copy"
psql_b -c "SET client_min_messages = warning; DROP TABLE IF EXISTS bench_viid_copy; CREATE UNLOGGED TABLE bench_viid_copy (doc jsonb)" >/dev/null
c0=$(date +%s.%N)
psql_b -c "COPY bench_viid_copy FROM '$dir/viid_docs.copy'" >/dev/null
c1=$(date +%s.%N)
copy_rate=$(echo "$N / ($c1 - $c0)" | bc -l)
rm -f "$dir/viid_docs.copy"
psql_b -c "DROP TABLE bench_viid_copy; TRUNCATE vms.viid_record, vms.viid_image" >/dev/null

printf 'BENCH viid_server_ingest_images_per_s %.1f records/s baseline=%.1f ratio=%.3f target=>=5000 and ratio>=0.25\n' \
  "$with_rate" "$copy_rate" "$(echo "$with_rate / $copy_rate" | bc -l)"
printf 'BENCH viid_server_ingest_acked %d records baseline=%d ratio=%.3f target=1.0\n' \
  "$with_acked" "$N" "$(echo "$with_acked / $N" | bc -l)"
# the same runs per CPU second of the worker: the rate the worker would
# reach with a core of its own (on 2 shared cores the 8 clients, the kernel
# and other load take the rest)
printf 'BENCH viid_server_ingest_images_per_worker_cpu_s %.1f records/s baseline=%.1f ratio=%.3f target=>=5000\n' \
  "$(echo "$with_acked / ($cpu1 - $cpu0)" | bc -l)" "$copy_rate" "$(echo "$with_acked / ($cpu1 - $cpu0) / $copy_rate" | bc -l)"
printf 'BENCH viid_server_ingest_no_images_per_worker_cpu_s %.1f records/s baseline=%.1f ratio=%.3f target=>=20000\n' \
  "$(echo "$N / ($cpu3 - $cpu2)" | bc -l)" "$copy_rate" "$(echo "$N / ($cpu3 - $cpu2) / $copy_rate" | bc -l)"
printf 'BENCH viid_server_ingest_no_images_per_s %.1f records/s baseline=%.1f ratio=%.3f target=>=20000\n' \
  "$without_rate" "$copy_rate" "$(echo "$without_rate / $copy_rate" | bc -l)"
