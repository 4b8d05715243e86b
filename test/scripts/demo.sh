#!/usr/bin/env bash
# make run / make stop: a throwaway cluster under .run/demo with
# shared_preload_libraries=vms, the demo ledger loaded, and a summary.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

port=${VMS_DEMO_PORT:-54321}
dir=$(make_run_dir demo)
db=vms_demo

case "${1:-start}" in
  stop)
    cluster_stop "$dir"
    echo "demo cluster stopped"
    ;;
  start)
    cluster_start "$dir" "$port"
    if ! cluster_psql "$dir" "$port" postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
      cluster_psql "$dir" "$port" postgres -c "CREATE DATABASE $db"
      cluster_psql "$dir" "$port" "$db" -c "ALTER DATABASE $db SET search_path = \"\$user\", public, vms"
    fi
    cluster_psql "$dir" "$port" "$db" -c "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS vms CASCADE"
    cluster_psql "$dir" "$port" "$db" -c "ALTER EXTENSION vms UPDATE" >/dev/null 2>&1 || true
    echo "loading the demo ledger (about 11,000 channels) ..."
    cluster_psql "$dir" "$port" "$db" -v csv="$dir/demo_ledger.csv" -c "SET client_min_messages = warning" \
      -f "$VMS_ROOT/test/demo/demo_ledger.sql" >/dev/null
    cluster_psql "$dir" "$port" "$db" -f "$VMS_ROOT/test/demo/summary.sql"
    echo
    echo "cluster running: psql -h $dir -p $port -U postgres $db    (stop it with: make stop)"
    ;;
  *)
    echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
