#!/usr/bin/env bash
# SIP worker: N simulated GB/T 28181 devices (test/sim/gbsim) register and
# keep alive over loopback at 60 s x 3.  Prints per N the registration-storm
# time, worker CPU (over the run and per device in the steady state after the
# storm) and RSS per device and the false offline transitions (target 0);
# then, three times, the keepalive rate the worker sustains on one core under
# a flood against a raw UDP echo loop (gbsim --mode echo) driven by the same
# load generator just before it: the median and the worst of the three
# ratios (target 0.5), and how many keepalives the fast path read.
# Devices come from many loopback addresses (gbsim --bind-spread: 250
# devices an address), as devices on a network do: the worker limits 401
# challenges per source address, and 100,000 devices from one address would
# take 80 minutes to register.
# Called by test/scripts/bench.sh with: DIR PORT (the bench cluster).
#   VMS_BENCH_SIP_DEVICES  sizes (default "10000 50000 100000")
#   VMS_BENCH_SIP_SECONDS  steady keepalive time per size (default 200 > 60 s x 3)
#   VMS_BENCH_SIP_PORT     the worker's SIP port (default PORT + 200; the echo loop's is one more)
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
dir=$1; port=$2
sizes=${VMS_BENCH_SIP_DEVICES:-10000 50000 100000}
steady=${VMS_BENCH_SIP_SECONDS:-200}
sip_port=${VMS_BENCH_SIP_PORT:-$((port + 200))}
echo_port=$((sip_port + 1))
gbsim="$VMS_ROOT/test/sim/gbsim"
make -s -C "$VMS_ROOT/test/sim"
psql_b() { cluster_psql "$dir" "$port" bench -tA "$@"; }
max=0; for n in $sizes; do [ "$n" -gt "$max" ] && max=$n; done
# source addresses: 127.0.0.1 and up, one UDP socket each, 250 devices an address
spread() { local s=$(( ($1 + 249) / 250 )); echo "--bind 127.0.0.1 --sockets $s --bind-spread $s"; }

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
counter() { psql_b -c "SELECT coalesce((counters ->> '$1')::bigint, 0) FROM vms.worker_status WHERE name = 'sip'"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
stat() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" "$1" | tail -1; }
load() { cut -d' ' -f1 /proc/loadavg; }

for n in $sizes; do
  pid=$(wpid)
  rss0=$(rss_kb "$pid")
  offline0=$(psql_b -c "SELECT count(*) FROM vms.device_event WHERE event = 'offline'")
  reg0=$(counter registrations)
  c0=$(cpu_ticks "$pid")
  t0=$(date +%s.%N)
  # registration storm (as fast as the worker answers), then keepalives every 60 s ± 20 %
  # shellcheck disable=SC2046
  "$gbsim" --server "127.0.0.1:$sip_port" --devices "$n" $(spread "$n") --password bench-pw --keepalive 60 \
    --keepalive-jitter 0.2 --expires 3600 --reg-rate 0 --reg-window 2000 --duration "$steady" \
    > "$dir/sip_$n.out" 2> "$dir/sip_$n.err" &
  gb=$!
  # the end of the storm: every device registered (the steady state is measured from there)
  cs=""; ts=""
  while kill -0 "$gb" 2>/dev/null; do
    if [ "$(( $(counter registrations) - reg0 ))" -ge "$n" ]; then cs=$(cpu_ticks "$pid"); ts=$(date +%s.%N); break; fi
    sleep 0.5
  done
  wait "$gb"
  c1=$(cpu_ticks "$pid"); t1=$(date +%s.%N)
  rss1=$(rss_kb "$pid")
  sleep 2   # the last batch of writes
  storm_ms=$(stat "$dir/sip_$n.out" reg_storm_ms)
  registered=$(stat "$dir/sip_$n.out" registered)
  ka_ok=$(stat "$dir/sip_$n.out" keepalive_ok)
  online=$(psql_b -c "SELECT count(*) FROM vms.device WHERE online AND code <= ('3402000000132' || lpad('$n', 7, '0'))::vms.gbcode")
  offline=$(( $(psql_b -c "SELECT count(*) FROM vms.device_event WHERE event = 'offline'") - offline0 ))
  cpu_s=$(echo "($c1 - $c0) / $hz" | bc -l)
  # the echo loop would need two round trips per device (challenge, then 200); measured below, 1000 devices
  "$gbsim" --mode echo --listen "127.0.0.1:$echo_port" --duration 6 > "$dir/echo_$n.out" 2>&1 &
  sleep 0.5
  # shellcheck disable=SC2046
  "$gbsim" --mode flood --no-register --any-reply --server "127.0.0.1:$echo_port" --devices 1000 $(spread 1000) \
    --duration 4 > "$dir/echo_flood_$n.out" 2>/dev/null
  wait
  echo_rate=$(stat "$dir/echo_flood_$n.out" keepalive_rate)
  storm_base=$(echo "2 * $n * 1000 / $echo_rate" | bc -l)
  printf 'BENCH sip_register_storm_%d_ms %d ms baseline=%.1f ratio=%.1f target=n/a (%s of %d registered; baseline = 2 round trips per device at the echo rate)\n' \
    "$n" "$storm_ms" "$storm_base" "$(echo "$storm_ms / $storm_base" | bc -l)" "$registered" "$n"
  printf 'BENCH sip_false_offline_%d %d transitions baseline=0 ratio=%.4f target=0 (%d of %d online at the end, %d s at 60 s x 3)\n' \
    "$n" "$offline" "$(echo "$offline / $n" | bc -l)" "$online" "$n" "$steady"
  printf 'BENCH sip_keepalives_%d_per_s %.1f msg/s baseline=%.1f ratio=%.4f target=n/a (offered load: N / 60 s)\n' \
    "$n" "$(echo "$ka_ok / $steady" | bc -l)" "$(echo "$n / 60" | bc -l)" "$(echo "$ka_ok / $steady / ($n / 60)" | bc -l)"
  printf 'BENCH sip_worker_cpu_%d %.4f core baseline=1.0 ratio=%.4f target=n/a (worker CPU over the run, storm included; load %s)\n' \
    "$n" "$(echo "$cpu_s / $steady" | bc -l)" "$(echo "$cpu_s / $steady" | bc -l)" "$(load)"
  if [ -n "$cs" ]; then
    steady_s=$(echo "$t1 - $ts" | bc -l)
    per_dev=$(echo "($c1 - $cs) / $hz / $steady_s / $n * 1000000" | bc -l)
    printf 'BENCH sip_worker_cpu_per_device_%d %.2f us/s baseline=n/a ratio=n/a target=n/a (worker CPU per second per device after the storm, %.0f s; %.4f core)\n' \
      "$n" "$per_dev" "$steady_s" "$(echo "($c1 - $cs) / $hz / $steady_s" | bc -l)"
  else
    printf 'BENCH sip_worker_cpu_per_device_%d n/a us/s baseline=n/a ratio=n/a target=n/a (not every device registered before the run ended)\n' "$n"
  fi
  printf 'BENCH sip_worker_rss_per_device_%d %.0f bytes baseline=n/a ratio=n/a target=n/a (worker RSS growth over the run / N; RSS %d MB at the end)\n' \
    "$n" "$(echo "($rss1 - $rss0) * 1024 / $n" | bc -l)" "$((rss1 / 1024))"
done

# the worker's sustained keepalive rate on one core, as fast as it answers, three times,
# each right after the raw UDP echo loop with the same generator and the same sources
ratios=""; cpu_ratios=""
for r in 1 2 3; do
  "$gbsim" --mode echo --listen "127.0.0.1:$echo_port" --duration 11 > "$dir/echo_$r.out" 2>&1 &
  sleep 0.5
  # shellcheck disable=SC2046
  "$gbsim" --mode flood --no-register --any-reply --server "127.0.0.1:$echo_port" --devices 1000 $(spread 1000) \
    --duration 8 > "$dir/echo_flood_$r.out" 2>/dev/null
  wait
  echo_rate=$(stat "$dir/echo_flood_$r.out" keepalive_rate)
  pid=$(wpid); c0=$(cpu_ticks "$pid"); f0=$(counter keepalives_fast); k0=$(counter keepalives); l0=$(load)
  # shellcheck disable=SC2046
  "$gbsim" --mode flood --server "127.0.0.1:$sip_port" --devices 1000 $(spread 1000) --password bench-pw --duration 10 \
    > "$dir/sip_flood_$r.out" 2>/dev/null
  c1=$(cpu_ticks "$pid")
  sleep 0.3   # counters are published every 100 ms
  rate=$(stat "$dir/sip_flood_$r.out" keepalive_rate)
  secs=$(stat "$dir/sip_flood_$r.out" elapsed_s)
  fast=$(( $(counter keepalives_fast) - f0 )); all=$(( $(counter keepalives) - k0 ))
  ratio=$(echo "$rate / $echo_rate" | bc -l)
  # per CPU second: what one core of each would carry (the worker's includes the 1000 registrations)
  per_cpu=$(echo "$all / (($c1 - $c0) / $hz)" | bc -l)
  echo_per_cpu=$(echo "$(stat "$dir/echo_$r.out" echoed) / ($(stat "$dir/echo_$r.out" cpu_user_s) + $(stat "$dir/echo_$r.out" cpu_sys_s))" | bc -l)
  cpu_ratio=$(echo "$per_cpu / $echo_per_cpu" | bc -l)
  ratios="$ratios$ratio $rate $echo_rate $(echo "($c1 - $c0) / $hz / $secs" | bc -l) $fast $all $l0"$'\n'
  cpu_ratios="$cpu_ratios$cpu_ratio $per_cpu $echo_per_cpu $l0"$'\n'
  echo "# flood run $r: worker $rate msg/s, echo loop $echo_rate msg/s, ratio $ratio; per CPU second $per_cpu against $echo_per_cpu, ratio $cpu_ratio; $fast of $all keepalives by the fast path, load $l0" >&2
done
sorted=$(printf '%s' "$ratios" | sort -g)
cpu_sorted=$(printf '%s' "$cpu_ratios" | sort -g)
for which in median worst; do
  case $which in median) k=2 ;; worst) k=1 ;; esac
  read -r ratio rate echo_rate cpu fast all l <<< "$(echo "$sorted" | sed -n ${k}p)"
  printf 'BENCH sip_keepalive_rate_%s %.1f msg/s baseline=%.1f ratio=%.3f target=>=0.5 (%s of 3 flood runs; baseline: raw UDP echo loop, same generator, just before; worker CPU %.2f core; %s of %s keepalives by the fast path; load %s)\n' \
    "$which" "$rate" "$echo_rate" "$ratio" "$which" "$cpu" "$fast" "$all" "$l"
  read -r ratio per_cpu echo_per_cpu l <<< "$(echo "$cpu_sorted" | sed -n ${k}p)"
  printf 'BENCH sip_keepalives_per_cpu_second_%s %.0f msg/cpu-s baseline=%.0f ratio=%.3f target=>=0.5 (%s of the same 3 runs: keepalives per CPU second of the worker against echoes per CPU second of the echo loop; load %s)\n' \
    "$which" "$per_cpu" "$echo_per_cpu" "$ratio" "$which" "$l"
done
