#!/usr/bin/env bash
# make bench: run every benchmark in test/bench/ against a throwaway cluster
# and print its BENCH lines:
#   BENCH <name> <value> <unit> baseline=<value> ratio=<value> target=<value>
set -euo pipefail
. "$(dirname "$0")/lib.sh"

port=${VMS_BENCH_PORT:-54339}
dir=$(make_run_dir bench)
cluster_stop "$dir"; rm -rf "$dir/data"
head -c 32 /dev/urandom > "$dir/secret.key"; chmod 600 "$dir/secret.key"
[ "$(id -u)" = 0 ] && chown "$PG_OS_USER" "$dir/secret.key"
cluster_start "$dir" "$port" "shared_buffers = 1GB" "work_mem = 64MB" "maintenance_work_mem = 512MB" \
  "max_wal_size = 8GB" "checkpoint_timeout = 30min" "synchronous_commit = off" "jit = off" \
  "vms.database = 'bench'" "vms.secret_key_file = '$dir/secret.key'"
trap 'cluster_stop "$dir"' EXIT
cluster_psql "$dir" "$port" postgres -c "CREATE DATABASE bench"
cluster_psql "$dir" "$port" bench -c "SET client_min_messages = warning; CREATE EXTENSION vms CASCADE"
cluster_psql "$dir" "$port" bench -f "$VMS_ROOT/test/bench/bench_lib.sql" >/dev/null

for b in "$VMS_ROOT"/test/bench/${VMS_BENCH_ONLY:-*}.bench.*; do
  echo "# $(basename "$b")" >&2
  case "$b" in
    *.sql) cluster_psql "$dir" "$port" bench -tA -v dir="$dir" -v csv="$dir/bench_ledger_1m.csv" ${VMS_BENCH_ROWS:+-v rows="$VMS_BENCH_ROWS"} \
             -c "SET client_min_messages = warning" -f "$b" | grep '^BENCH' ;;
    *.sh)  bash "$b" "$dir" "$port" | grep '^BENCH' ;;
  esac || { echo "benchmark $(basename "$b") failed" >&2; exit 1; }
done
