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
    if [ -f "$dir/receiver.pid" ]; then kill "$(cat "$dir/receiver.pid")" 2>/dev/null || true; rm -f "$dir/receiver.pid"; fi
    echo "demo cluster and receiver stopped"
    ;;
  start)
    # the view library of the governance chain, played by the test receiver
    rport=$((port + 1))
    if ! curl -s -o /dev/null "http://127.0.0.1:$rport/VIID/System/Time"; then
      nohup /usr/bin/python3 "$VMS_ROOT/test/peers/viid_receiver.py" --port "$rport" \
        --log "$dir/received.log" > "$dir/receiver.out" 2>&1 &
      echo $! > "$dir/receiver.pid"
    fi
    [ -f "$dir/secret.key" ] || { head -c 32 /dev/urandom > "$dir/secret.key"; chmod 600 "$dir/secret.key"; }
    [ "$(id -u)" = 0 ] && chown "$PG_OS_USER" "$dir/secret.key"
    cluster_start "$dir" "$port" "vms.database = '$db'" "vms.secret_key_file = '$dir/secret.key'"
    if ! cluster_psql "$dir" "$port" postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
      cluster_psql "$dir" "$port" postgres -c "CREATE DATABASE $db"
      cluster_psql "$dir" "$port" "$db" -c "ALTER DATABASE $db SET search_path = \"\$user\", public, vms"
    fi
    cluster_psql "$dir" "$port" "$db" -c "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS vms CASCADE"
    cluster_psql "$dir" "$port" "$db" -c "ALTER EXTENSION vms UPDATE" >/dev/null 2>&1 || true
    echo "loading the demo ledger (about 11,000 channels) ..."
    cluster_psql "$dir" "$port" "$db" -v csv="$dir/demo_ledger.csv" -c "SET client_min_messages = warning" \
      -f "$VMS_ROOT/test/demo/demo_ledger.sql" >/dev/null
    echo "pushing vehicle-violation captures to the view library at http://127.0.0.1:$rport ..."
    cluster_psql "$dir" "$port" "$db" -c "SET client_min_messages = warning" -c "SET vms_demo.receiver = 'http://127.0.0.1:$rport'" \
      -f "$VMS_ROOT/test/demo/demo_viid.sql" >/dev/null
    cluster_psql "$dir" "$port" "$db" -f "$VMS_ROOT/test/demo/summary.sql"
    echo
    echo "cluster running: psql -h $dir -p $port -U postgres $db    (stop it with: make stop)"
    ;;
  *)
    echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
