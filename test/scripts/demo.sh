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
    for p in receiver gbsim rtsp; do
      if [ -f "$dir/$p.pid" ]; then kill "$(cat "$dir/$p.pid")" 2>/dev/null || true; rm -f "$dir/$p.pid"; fi
    done
    echo "demo cluster, receiver and simulated devices stopped"
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
    echo "200 simulated GB/T 28181 NVRs (test/sim/gbsim) register with the SIP worker on udp/tcp 127.0.0.1:$((port + 2)) ..."
    sport=$((port + 2))
    cluster_psql "$dir" "$port" "$db" -c "ALTER SYSTEM SET vms.sip_id = '11010500002000000001'" \
      -c "ALTER SYSTEM SET vms.sip_listen = '127.0.0.1'" -c "ALTER SYSTEM SET vms.sip_port = $sport" \
      -c "ALTER SYSTEM SET vms.sip_keepalive_interval = 10" -c "SELECT pg_reload_conf()" >/dev/null
    cluster_psql "$dir" "$port" "$db" -c "SET client_min_messages = warning" -f "$VMS_ROOT/test/demo/demo_sip.sql" >/dev/null
    if [ -f "$dir/gbsim.pid" ]; then kill "$(cat "$dir/gbsim.pid")" 2>/dev/null || true; fi
    # bounded: the simulated devices stop after an hour (make stop ends them sooner)
    nohup "$VMS_ROOT/test/sim/gbsim" --server "127.0.0.1:$sport" --server-id 11010500002000000001 --domain 1101050000 \
      --devices 200 --first-code 11010500001180000001 --password demo-pw --keepalive 10 --channels 4 --page-size 2 \
      --alarm-every 300 --duration 3600 > "$dir/gbsim.out" 2>&1 &
    echo $! > "$dir/gbsim.pid"
    for _ in $(seq 150); do
      [ "$(cluster_psql "$dir" "$port" "$db" -tAc "SELECT count(*) FROM vms.device WHERE online AND code::text LIKE '110105000011800%'")" = 200 ] && break
      sleep 0.2
    done
    cluster_psql "$dir" "$port" "$db" -tA -c "SELECT count(vms.sip_query_catalog(code)) FROM vms.device WHERE online AND code::text LIKE '110105000011800%'" >/dev/null
    cluster_psql "$dir" "$port" "$db" -tA -c "SELECT vms.sip_subscribe('11010500001180000001', 'Catalog', 3600)" >/dev/null
    for _ in $(seq 150); do
      [ "$(cluster_psql "$dir" "$port" "$db" -tAc "SELECT count(*) FROM vms.sip_request WHERE state IN ('queued', 'sent', 'receiving')")" = 0 ] && break
      sleep 0.2
    done
    echo "inspection: RTSP test cameras on 127.0.0.1:$((port + 3)) (GStreamer), one round of a plan over 8 channels ..."
    rtsp_port=$((port + 3))
    mkdir -p "$dir/clips"
    for c in "street:testsrc2=size=640x360:rate=25:" "black:color=black:size=640x360:rate=25:" \
             "turned:testsrc2=size=640x360:rate=25:crop=480:270:x=150:y=80,scale=640:360"; do
      name=${c%%:*}; rest=${c#*:}; src=${rest%%:crop*}; src=${src%:}
      vf=$(echo "$rest" | grep -o 'crop.*' || true)
      [ -s "$dir/clips/$name.mp4" ] || ffmpeg -loglevel error -y -f lavfi -i "$src" -t 4 ${vf:+-vf "$vf"} \
        -c:v libx264 -preset veryfast -pix_fmt yuv420p -g 25 "$dir/clips/$name.mp4"
    done
    if [ -f "$dir/rtsp.pid" ]; then kill "$(cat "$dir/rtsp.pid")" 2>/dev/null || true; fi
    nohup /usr/bin/python3 "$VMS_ROOT/test/peers/rtsp_server.py" --dir "$dir/clips" --port "$rtsp_port" \
      > "$dir/rtsp.out" 2>&1 &
    echo $! > "$dir/rtsp.pid"
    for _ in $(seq 100); do grep -q ready "$dir/rtsp.out" && break; sleep 0.2; done
    if ! grep -q ready "$dir/rtsp.out"; then
      echo "the RTSP test cameras did not start ($dir/rtsp.out: $(tail -1 "$dir/rtsp.out")); is port $rtsp_port taken? VMS_DEMO_PORT=<port> make run uses ports <port>..<port>+3" >&2
      exit 1
    fi
    cluster_psql "$dir" "$port" "$db" -c "SET client_min_messages = warning" -v cam="rtsp://127.0.0.1:$rtsp_port" \
      -f "$VMS_ROOT/test/demo/demo_inspect.sql" >/dev/null
    for _ in $(seq 150); do
      [ "$(cluster_psql "$dir" "$port" "$db" -tAc "SELECT count(*) FROM vms.inspection_run WHERE finished_at IS NOT NULL")" -ge 1 ] && break
      sleep 0.2
    done
    cluster_psql "$dir" "$port" "$db" -f "$VMS_ROOT/test/demo/summary.sql"
    echo
    echo "reports: a month of synthetic history (test/demo/demo_reports.sql), then each kind as HTML and as a PDF printed by headless Chromium ..."
    cluster_psql "$dir" "$port" "$db" -c "SET client_min_messages = warning" -f "$VMS_ROOT/test/demo/demo_reports.sql" >/dev/null
    # the period holding yesterday (China time), of each kind
    cluster_psql "$dir" "$port" "$db" -tA -F ' ' -c "SELECT k, to_char(s, 'YYYY-MM-DD') FROM (SELECT (now() AT TIME ZONE 'Asia/Shanghai')::date - 1 AS y) x,
        LATERAL (VALUES ('daily', y), ('weekly', date_trunc('week', y)::date), ('monthly', date_trunc('month', y)::date),
                        ('quarterly', date_trunc('quarter', y)::date), ('annual', date_trunc('year', y)::date)) v(k, s)" \
      > "$RUN_DIR/report-periods.txt"
    profile=$(mktemp -d)
    while read -r kind start; do
      cluster_psql "$dir" "$port" "$db" -tA -c "SELECT vms.report_html('$kind', '$start')" > "$RUN_DIR/report-$kind.html"
      /usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync --user-data-dir="$profile" --no-pdf-header-footer \
        --print-to-pdf="$RUN_DIR/report-$kind.pdf" "file://$RUN_DIR/report-$kind.html" >/dev/null 2>&1 || echo "chromium could not print the $kind report" >&2
      echo "  $kind report from $start: $RUN_DIR/report-$kind.html  $RUN_DIR/report-$kind.pdf"
    done < "$RUN_DIR/report-periods.txt"
    rm -rf "$profile" "$RUN_DIR/report-periods.txt"
    echo
    echo "cluster running: psql -h $dir -p $port -U postgres $db    (stop it with: make stop)"
    ;;
  *)
    echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
