#!/usr/bin/env bash
# GB/T 28181 cascade, NOTIFY latency end to end (issue 16): a share of 10,000
# channels; an upper platform (test/peers/gb_upper.py) that vms registers to
# and that subscribes to its catalog; one channel's online state flipped by an
# UPDATE, timed from that statement's commit (clock_timestamp() right after it,
# in the same session) to the arrival of the NOTIFY item (ON/OFF) at the upper
# platform's socket, N times (VMS_BENCH_CASCADE_NOTIFIES, default 30); the
# median and the worst.  Change-driven (the ledger's statement trigger queues
# vms.sip_share_change and wakes the worker; reconcile_interval 3600) against
# the periodic compare alone as before (the trigger disabled, the share
# compared every 2 s: reconcile_interval 2), in the same run.
# Called by test/scripts/bench.sh with: DIR PORT (the bench cluster).
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
dir=$1; port=$2
N=${VMS_BENCH_CASCADE_NOTIFIES:-30}
sip_port=$((port + 200))
up_port=$((port + 202))
upper_id=34010000002000000001
psql_b() { cluster_psql "$dir" "$port" bench -tA "$@"; }

psql_b -c "ALTER SYSTEM SET vms.sip_id = '34020000002000000001'" \
       -c "ALTER SYSTEM SET vms.sip_listen = '127.0.0.1'" \
       -c "ALTER SYSTEM SET vms.sip_port = $sip_port" \
       -c "SELECT pg_reload_conf()" >/dev/null
psql_b <<'SQL' >/dev/null
SET client_min_messages = warning;
INSERT INTO vms.device (code, name, manufacturer, model)
VALUES ('34029800001180000001', 'bench notify NVR', 'Hik', 'DS-9600') ON CONFLICT DO NOTHING;
INSERT INTO vms.channel (code, device_code, name, civil_code, online)
SELECT ('3402980000132' || lpad(i::text, 7, '0'))::vms.gbcode, '34029800001180000001', '通道 ' || i, '340298', true
  FROM generate_series(1, 10000) i
ON CONFLICT DO NOTHING;
SQL
psql_b -c "SELECT vms.sip_drop_upstream('bench_notify') WHERE EXISTS (SELECT 1 FROM vms.sip_upstream WHERE name = 'bench_notify')" >/dev/null
psql_b -c "SELECT vms.worker_restart('sip')" >/dev/null
for _ in $(seq 300); do
  [ "$(psql_b -c "SELECT state FROM vms.worker_status WHERE name = 'sip'")" = running ] && break; sleep 0.1
done
rm -f "$dir/upper_notify.log"
/usr/bin/python3 "$VMS_ROOT/test/peers/gb_upper.py" --port "$up_port" --id "$upper_id" --log "$dir/upper_notify.log" \
  --duration 3600 > "$dir/gb_upper.out" 2>&1 &
upid=$!
cleanup() {
  kill $upid 2>/dev/null || true
  psql_b -c "ALTER TABLE vms.channel ENABLE TRIGGER sip_share_touched" \
         -c "SELECT vms.sip_drop_upstream('bench_notify') WHERE EXISTS (SELECT 1 FROM vms.sip_upstream WHERE name = 'bench_notify')" \
         -c "DELETE FROM vms.channel WHERE device_code = '34029800001180000001'" \
         -c "DELETE FROM vms.device WHERE code = '34029800001180000001'" >/dev/null 2>&1 || true
}
trap cleanup EXIT
psql_b -c "SELECT vms.sip_add_upstream('bench_notify', '127.0.0.1', $up_port, '$upper_id', 'bench',
             '{\"local_id\": \"34029800002000000001\", \"catalog_page_size\": 20, \"reconcile_interval\": 3600,
               \"catalog_push_interval\": 0, \"keepalive_interval\": 60}')" \
       -c "SELECT vms.sip_share('bench_notify', '{\"regions\": [\"340298\"]}')" >/dev/null
# registered, subscribed, and what the upper platform was told recorded (the subscription's baseline)
for _ in $(seq 1200); do
  [ "$(psql_b -c "SELECT (SELECT state = 'registered' AND subscriptions ? 'Catalog' FROM vms.sip_upstream_state
                           WHERE upstream = 'bench_notify') AND (SELECT count(*) = 10000 FROM vms.sip_share_told
                           WHERE upstream = 'bench_notify')")" = t ] && break
  sleep 0.1
done

# N flips, one at a time: the latency of each in ms, sorted (codes compared as strings: as numbers
# awk's doubles cannot tell 20-digit codes apart)
measure() {
  local label=$1 out=()
  for i in $(seq "$N"); do
    code=$(printf '3402980000132%07d' "$i")
    ev=$(psql_b -c "SELECT CASE WHEN online THEN 'OFF' ELSE 'ON' END FROM vms.channel WHERE code = '$code'")
    t0=$(psql_b -c "UPDATE vms.channel SET online = NOT online WHERE code = '$code'" \
                -c "SELECT extract(epoch FROM clock_timestamp())" | tail -1)
    [ -n "${VMS_BENCH_DEBUG:-}" ] && echo "t0=$t0 now=$(date +%s.%N)" >&2
    t1=''
    for _ in $(seq 3000); do
      t1=$(awk -v c="$code" -v e="$ev" -v t="$t0" '($2 "") == (c "") && $3 == e && $1 >= t - 0.5 { print $1; exit }' "$dir/upper_notify.log")
      [ -n "$t1" ] && break
      sleep 0.01
    done
    [ -n "$t1" ] || { echo "cascade notify bench ($label): no NOTIFY $ev for $code" >&2; exit 1; }
    [ -n "${VMS_BENCH_DEBUG:-}" ] && echo "t1=$t1 $code $ev" >&2
    out+=("$(echo "($t1 - $t0) * 1000" | bc -l)")
  done
  printf '%s\n' "${out[@]}" | sort -g > "$dir/notify_$label.ms"
}
median() { awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }' "$1"; }
worst() { tail -1 "$1"; }

measure trigger
# the baseline: as before, the share compared every 2 s and nothing else
psql_b -c "ALTER TABLE vms.channel DISABLE TRIGGER sip_share_touched" \
       -c "SELECT vms.sip_alter_upstream('bench_notify', options => '{\"reconcile_interval\": 2}')" >/dev/null
sleep 3   # the worker takes the new interval at its next claim round
measure poll
psql_b -c "ALTER TABLE vms.channel ENABLE TRIGGER sip_share_touched" >/dev/null

t_med=$(median "$dir/notify_trigger.ms"); p_med=$(median "$dir/notify_poll.ms")
t_max=$(worst "$dir/notify_trigger.ms"); p_max=$(worst "$dir/notify_poll.ms")
printf 'BENCH cascade_notify_latency_10k %.1f ms baseline=%.1f ratio=%.3f target=<=500 ms (median of %d flips, commit to NOTIFY at the upper platform; worst %.1f ms; baseline: the 2 s periodic compare alone, worst %.1f ms)\n' \
  "$t_med" "$p_med" "$(echo "$t_med / $p_med" | bc -l)" "$N" "$t_max" "$p_max"
