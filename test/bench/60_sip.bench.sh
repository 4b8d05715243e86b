#!/usr/bin/env bash
# SIP worker: N simulated GB/T 28181 devices (test/sim/gbsim) register and
# keep alive over loopback at 60 s x 3.  Prints per N the registration-storm
# time, worker CPU and RSS per device and the false offline transitions
# (target 0); then the keepalive rate the worker sustains on one core under
# a flood, against a raw UDP echo loop (gbsim --mode echo) driven by the
# same load generator in the same run.
# Called by test/scripts/bench.sh with: DIR PORT (the bench cluster).
#   VMS_BENCH_SIP_DEVICES  sizes (default "10000 50000"; 100000 fits in memory)
#   VMS_BENCH_SIP_SECONDS  steady keepalive time per size (default 200 > 60 s x 3)
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
dir=$1; port=$2
sizes=${VMS_BENCH_SIP_DEVICES:-10000 50000}
steady=${VMS_BENCH_SIP_SECONDS:-200}
sip_port=$((port + 200))
echo_port=$((port + 201))
gbsim="$VMS_ROOT/test/sim/gbsim"
make -s -C "$VMS_ROOT/test/sim"
psql_b() { cluster_psql "$dir" "$port" bench -tA "$@"; }
max=0; for n in $sizes; do [ "$n" -gt "$max" ] && max=$n; done

# the platform, and devices that authenticate with the default password
psql_b -c "ALTER SYSTEM SET vms.sip_id = '34020000002000000001'" \
       -c "ALTER SYSTEM SET vms.sip_listen = '127.0.0.1'" \
       -c "ALTER SYSTEM SET vms.sip_port = $sip_port" \
       -c "ALTER SYSTEM SET vms.sip_password = 'bench-pw'" \
       -c "ALTER SYSTEM SET vms.sip_keepalive_interval = 60" \
       -c "ALTER SYSTEM SET vms.sip_keepalive_count = 3" \
       -c "SELECT pg_reload_conf()" >/dev/null
psql_b -c "SET vms.ledger_writer = 'system';
           INSERT INTO vms.device (code, name)
           SELECT ('3402000000132' || lpad(i::text, 7, '0'))::vms.gbcode, 'bench IPC ' || i
             FROM generate_series(1, $max) i ON CONFLICT DO NOTHING" >/dev/null
psql_b -c "SELECT vms.worker_restart('sip')" >/dev/null
for _ in $(seq 100); do
  [ "$(psql_b -c "SELECT state FROM vms.worker_status WHERE name = 'sip'")" = running ] && break; sleep 0.2
done
wpid() { psql_b -c "SELECT pid FROM vms.worker_status WHERE name = 'sip'"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
stat() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" "$1" | tail -1; }

# baseline: a raw UDP echo loop, the same load generator
"$gbsim" --mode echo --listen "127.0.0.1:$echo_port" --duration 20 > "$dir/echo.out" 2>&1 &
sleep 0.5
"$gbsim" --mode flood --no-register --any-reply --server "127.0.0.1:$echo_port" --devices 1000 --duration 8 \
  > "$dir/echo_flood.out" 2>/dev/null
wait
echo_rate=$(stat "$dir/echo_flood.out" keepalive_rate)

for n in $sizes; do
  pid=$(wpid)
  rss0=$(rss_kb "$pid")
  offline0=$(psql_b -c "SELECT count(*) FROM vms.device_event WHERE event = 'offline'")
  c0=$(cpu_ticks "$pid")
  # registration storm (as fast as the worker answers), then keepalives every 60 s ± 20 %
  "$gbsim" --server "127.0.0.1:$sip_port" --devices "$n" --password bench-pw --keepalive 60 --keepalive-jitter 0.2 \
    --expires 3600 --reg-rate 0 --reg-window 2000 --duration "$steady" > "$dir/sip_$n.out" 2> "$dir/sip_$n.err"
  c1=$(cpu_ticks "$pid")
  rss1=$(rss_kb "$pid")
  sleep 2   # the last batch of writes
  storm_ms=$(stat "$dir/sip_$n.out" reg_storm_ms)
  registered=$(stat "$dir/sip_$n.out" registered)
  ka_ok=$(stat "$dir/sip_$n.out" keepalive_ok)
  online=$(psql_b -c "SELECT count(*) FROM vms.device WHERE online AND code <= ('3402000000132' || lpad('$n', 7, '0'))::vms.gbcode")
  offline=$(( $(psql_b -c "SELECT count(*) FROM vms.device_event WHERE event = 'offline'") - offline0 ))
  cpu_s=$(echo "($c1 - $c0) / $hz" | bc -l)
  # the echo loop would need two round trips per device (challenge, then 200)
  storm_base=$(echo "2 * $n * 1000 / $echo_rate" | bc -l)
  printf 'BENCH sip_register_storm_%d_ms %d ms baseline=%.1f ratio=%.1f target=n/a (%s of %d registered; baseline = 2 round trips per device at the echo rate)\n' \
    "$n" "$storm_ms" "$storm_base" "$(echo "$storm_ms / $storm_base" | bc -l)" "$registered" "$n"
  printf 'BENCH sip_false_offline_%d %d transitions baseline=0 ratio=%.4f target=0 (%d of %d online at the end, %d s at 60 s x 3)\n' \
    "$n" "$offline" "$(echo "$offline / $n" | bc -l)" "$online" "$n" "$steady"
  printf 'BENCH sip_keepalives_%d_per_s %.1f msg/s baseline=%.1f ratio=%.4f target=n/a (offered load: N / 60 s)\n' \
    "$n" "$(echo "$ka_ok / $steady" | bc -l)" "$(echo "$n / 60" | bc -l)" "$(echo "$ka_ok / $steady / ($n / 60)" | bc -l)"
  printf 'BENCH sip_worker_cpu_%d %.4f core baseline=1.0 ratio=%.4f target=n/a (worker CPU over the run, storm included)\n' \
    "$n" "$(echo "$cpu_s / $steady" | bc -l)" "$(echo "$cpu_s / $steady" | bc -l)"
  printf 'BENCH sip_worker_rss_per_device_%d %.0f bytes baseline=n/a ratio=n/a target=n/a (worker RSS growth over the run / N)\n' \
    "$n" "$(echo "($rss1 - $rss0) * 1024 / $n" | bc -l)"
done

# the worker's sustained keepalive rate on one core: as fast as it answers
pid=$(wpid); c0=$(cpu_ticks "$pid")
"$gbsim" --mode flood --server "127.0.0.1:$sip_port" --devices 1000 --password bench-pw --duration 8 \
  > "$dir/sip_flood.out" 2>/dev/null
c1=$(cpu_ticks "$pid")
rate=$(stat "$dir/sip_flood.out" keepalive_rate)
printf 'BENCH sip_keepalive_rate %.1f msg/s baseline=%.1f ratio=%.3f target=>=0.3 (baseline: raw UDP echo loop, same generator; worker CPU %.2f core)\n' \
  "$rate" "$echo_rate" "$(echo "$rate / $echo_rate" | bc -l)" "$(echo "($c1 - $c0) / $hz / 8" | bc -l)"
