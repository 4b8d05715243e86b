#!/usr/bin/env bash
# Notifier throughput: notifications/s the vms notifier worker delivers from
# vms.notify_outbox to a local webhook receiver (test/peers/notify_receiver.py),
# against curl --parallel posting the very same bodies with the same headers
# to the same receiver in the same run.  The rows are queued straight into the
# outbox (what the alarm triggers write), so this times delivery alone.
# Called by test/scripts/bench.sh with: DIR PORT (the bench cluster, whose
# workers serve database "bench").  VMS_BENCH_NOTIFY_N sets the count.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
dir=$1; port=$2
N=${VMS_BENCH_NOTIFY_N:-10000}
PAR=16		# the notifier's default vms.notifier_concurrency
rport=$((port + 101))
psql_b() { cluster_psql "$dir" "$port" bench -tA "$@"; }

/usr/bin/python3 "$VMS_ROOT/test/peers/notify_receiver.py" --http-port "$rport" --no-log > "$dir/notify_receiver.out" 2>&1 &
rpid=$!
trap 'kill $rpid 2>/dev/null || true; psql_b -c "DELETE FROM vms.notify_route WHERE name = '"'"'bench'"'"'" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$rport/stats" && break; sleep 0.1; done
accepted() { curl -s "http://127.0.0.1:$rport/stats" | sed -E 's/.*"accepted": ([0-9]+).*/\1/'; }

# the worker must be running in this database
for _ in $(seq 300); do
  [ "$(psql_b -c "SELECT state FROM vms.worker_status WHERE name = 'notifier'")" = running ] && break; sleep 0.1
done

route=$(psql_b -v rport="$rport" <<'SQL'
SELECT vms.notify_route_add('bench', 'http://127.0.0.1:' || :'rport' || '/robot/send',
         jsonb_build_object('template', $t${"msgtype": "text", "text": {"content": "{{level_name}}告警 {{code}} {{fault_type}} ({{id}})"}}$t$));
SQL
)
doc="jsonb_build_object('type', 'alarm', 'event', 'raised', 'alarm_id', i, 'code', '110105000013200' || lpad(i::text, 5, '0'),
                        'fault_type', 'offline', 'level', 3, 'level_name', '一般', 'source', 'sip', 'id', 'vms:$route:alarm:' || i)"
rm -rf "$dir/notify"; mkdir -p "$dir/notify"

# the notifier: queued in one transaction, timed from its commit until none is pending
before=$(accepted)
t0=$(date +%s.%N)
psql_b -c "INSERT INTO vms.notify_outbox (route_id, dedup_key, doc, body)
           SELECT $route, 'vms:$route:alarm:' || i, $doc, vms.notify_render(r.template, $doc)
             FROM generate_series(1, $N) i, vms.notify_route r WHERE r.id = $route" >/dev/null
for _ in $(seq 12000); do
  [ "$(psql_b -c "SELECT count(*) FROM vms.notify_outbox WHERE route_id = $route AND state = 'pending'")" = 0 ] && break
  sleep 0.05
done
t1=$(date +%s.%N)
delivered=$(psql_b -c "SELECT count(*) FROM vms.notify_outbox WHERE route_id = $route AND state = 'delivered'")
received=$(( $(accepted) - before ))

# the same bodies and headers, posted by curl --parallel
psql_b -c "SELECT dedup_key, body FROM vms.notify_outbox WHERE route_id = $route ORDER BY id" -F $'\t' > "$dir/notify/all.tsv"
cfg="$dir/notify/curl.cfg"; : > "$cfg"
k=0
while IFS=$'\t' read -r key body; do
  k=$((k + 1))
  printf '%s' "$body" > "$dir/notify/b$k"
  [ $k = 1 ] || echo next >> "$cfg"
  printf 'url = "http://127.0.0.1:%s/robot/send"\ndata-binary = "@%s"\nheader = "Content-Type: application/json; charset=utf-8"\nheader = "Idempotency-Key: %s"\nheader = "X-Vms-Notification-Id: %s"\nheader = "Expect:"\noutput = "/dev/null"\n' \
    "$rport" "$dir/notify/b$k" "$key" "$key" >> "$cfg"
done < "$dir/notify/all.tsv"
b0=$(date +%s.%N)
curl -s --no-progress-meter --parallel --parallel-max $PAR -K "$cfg"
b1=$(date +%s.%N)

rate=$(echo "$N / ($t1 - $t0)" | bc -l)
base=$(echo "$N / ($b1 - $b0)" | bc -l)
printf 'BENCH notifier_per_s %.1f notifications/s baseline=%.1f ratio=%.3f target=>=0.8\n' "$rate" "$base" "$(echo "$rate / $base" | bc -l)"
printf 'BENCH notifier_delivered %d notifications baseline=%d ratio=%.3f target=1.0\n' "$delivered" "$N" "$(echo "$delivered / $N" | bc -l)"
printf 'BENCH notifier_received %d notifications baseline=%d ratio=%.3f target=1.0\n' "$received" "$N" "$(echo "$received / $N" | bc -l)"
