#!/usr/bin/env bash
# GA/T 1400 push rate: records/s delivered by the viid worker to the local
# receiver in batches, against posting the very same batch bodies with
# curl --parallel (libcurl) in the same run.
# Called by test/scripts/bench.sh with: DIR PORT (the bench cluster).
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
dir=$1; port=$2
N=${VMS_BENCH_VIID_RECORDS:-50000}
rport=${VMS_BENCH_VIID_RECEIVER_PORT:-$((port + 100))}
psql_b() { cluster_psql "$dir" "$port" bench -tA "$@"; }

/usr/bin/python3 "$VMS_ROOT/test/peers/viid_receiver.py" --port "$rport" > "$dir/receiver.out" 2>&1 &
rpid=$!
trap 'kill $rpid 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$rport/VIID/System/Time" && break; sleep 0.1; done

echo "# 50_viid: load average at start $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores" >&2
psql_b -c "SELECT vms.viid_add_upstream('bench', 'http://127.0.0.1:$rport', '11010500005030000001', 'admin', 'admin',
             '{\"batch_size\": 100, \"concurrency\": 8, \"timeout_ms\": 30000}')" >/dev/null
for _ in $(seq 100); do
  [ "$(psql_b -c "SELECT state FROM vms.viid_session WHERE upstream = 'bench'")" = registered ] && break; sleep 0.1
done

doc="jsonb_build_object('MotorVehicleID', vms.viid_object_id(vms.viid_image_id('11010500001320000001', 2, '2026-11-22 10:00:00', i % 100000), 2, i / 100000),
                        'PlateNo', '京A' || lpad(i::text, 5, '0'), 'PlateColor', '2', 'PassTime', '20261122100000',
                        'DeviceID', '11010500001320000001', 'TollgateID', '11010500051210000001', 'LaneNo', 1,
                        'StorageUrl1', 'http://img.example/' || i || '.jpg')"
e0=$(date +%s.%N)
psql_b -c "SELECT count(vms.viid_enqueue('bench', 'MotorVehicle', $doc)) FROM generate_series(1, $N) i" >/dev/null
# the push is timed from the commit of the enqueue (what the worker sees);
# records it delivered before this point are left out of the count
t0=$(date +%s.%N)
early=$(psql_b -c "SELECT count(*) FROM vms.viid_outbox WHERE upstream = 'bench' AND state = 'delivered'")
# the poll stops at the first pending record (counting all of them, as
# before, took tens of milliseconds of a core every 50 ms, beside the push)
for _ in $(seq 6000); do
  [ "$(psql_b -c "SELECT NOT EXISTS (SELECT FROM vms.viid_outbox WHERE upstream = 'bench' AND state = 'pending')")" = t ] && break
  sleep 0.05
done
t1=$(date +%s.%N)
delivered=$(psql_b -c "SELECT count(*) FROM vms.viid_outbox WHERE upstream = 'bench' AND state = 'delivered'")

# the same batches, posted by curl --parallel
psql_b -c "SELECT vms.viid_add_upstream('baseline', 'http://127.0.0.1:$rport', '11010500005030000001', 'admin', 'admin');
           UPDATE vms.viid_upstream SET enabled = false WHERE name = 'baseline'" >/dev/null
psql_b -c "SELECT count(vms.viid_enqueue('baseline', 'MotorVehicle', $doc)) FROM generate_series(1, $N) i" >/dev/null
rm -rf "$dir/batches"; mkdir -p "$dir/batches"
psql_b -c "SELECT body FROM vms._viid_batches('baseline', 100, 100000)" > "$dir/batches/all.json"
split -l 1 -d -a 5 "$dir/batches/all.json" "$dir/batches/b"
cfg="$dir/batches/curl.cfg"; : > "$cfg"
first=1
for f in "$dir"/batches/b*; do
  [ $first = 1 ] || echo next >> "$cfg"
  first=0
  printf 'url = "http://127.0.0.1:%s/VIID/MotorVehicles"\ndata-binary = "@%s"\nheader = "Content-Type: application/VIID+JSON;charset=UTF-8"\nheader = "User-Identify: 11010500005030000001"\noutput = "/dev/null"\n' "$rport" "$f" >> "$cfg"
done
b0=$(date +%s.%N)
curl -s --no-progress-meter --parallel --parallel-max 8 -K "$cfg"
b1=$(date +%s.%N)

# the set-based enqueue against one vms.viid_enqueue per record, both over
# the same documents built beforehand (building them is not timed) and
# rolled back, so the push above is not fed twice
times=$(psql_b -v ON_ERROR_STOP=1 <<SQL
CREATE TEMP TABLE many_docs AS SELECT array_agg($doc ORDER BY i) AS docs FROM generate_series(1, $N) i;
BEGIN;
SELECT extract(epoch FROM clock_timestamp()) AS m0 \\gset
SELECT count(vms.viid_enqueue('baseline', 'MotorVehicle', x)) FROM many_docs, unnest(many_docs.docs) x \\g /dev/null
SELECT extract(epoch FROM clock_timestamp()) - :m0 AS one;
ROLLBACK;
BEGIN;
SELECT extract(epoch FROM clock_timestamp()) AS m0 \\gset
SELECT cardinality(vms.viid_enqueue_many('baseline', 'MotorVehicle', docs)) FROM many_docs \\g /dev/null
SELECT extract(epoch FROM clock_timestamp()) - :m0 AS many;
ROLLBACK;
-- the same through a template that renames, maps a value, converts a date,
-- adds a default and requires two fields
INSERT INTO vms.viid_template VALUES ('bench_vendor', 'MotorVehicle',
    '{"rename": {"Plate": "PlateNo", "Colour": "PlateColor"}, "values": {"PlateColor": {"1": "1", "2": "2"}},
      "dates": {"PassTime": "YYYYMMDDHH24MISS"}, "defaults": {"InfoKind": 1}, "required": ["MotorVehicleID", "PlateNo"]}')
    ON CONFLICT DO NOTHING;
BEGIN;
SELECT extract(epoch FROM clock_timestamp()) AS m0 \\gset
SELECT cardinality(vms.viid_enqueue_many('baseline', 'MotorVehicle', docs, 'bench_vendor')) FROM many_docs \\g /dev/null
SELECT extract(epoch FROM clock_timestamp()) - :m0 AS templated;
ROLLBACK;
SQL
)
one_s=$(echo "$times" | sed -n 1p); many_s=$(echo "$times" | sed -n 2p); tpl_s=$(echo "$times" | sed -n 3p)
echo "# 50_viid: load average at end $(cut -d' ' -f1-3 /proc/loadavg)" >&2

rate=$(echo "($N - $early) / ($t1 - $t0)" | bc -l)
enqueue_rate=$(echo "$N / ($t0 - $e0)" | bc -l)
base=$(echo "$N / ($b1 - $b0)" | bc -l)
printf 'BENCH viid_push_records_per_s %.1f records/s baseline=%.1f ratio=%.3f target=>=0.8 and >=10000\n' "$rate" "$base" "$(echo "$rate / $base" | bc -l)"
printf 'BENCH viid_push_delivered %d records baseline=%d ratio=%.3f target=1.0\n' "$delivered" "$N" "$(echo "$delivered / $N" | bc -l)"
printf 'BENCH viid_enqueue_records_per_s %.1f records/s baseline=%.1f ratio=%.3f target=n/a\n' "$enqueue_rate" "$base" "$(echo "$enqueue_rate / $base" | bc -l)"
one_rate=$(echo "$N / $one_s" | bc -l)
many_rate=$(echo "$N / $many_s" | bc -l)
printf 'BENCH viid_enqueue_many_records_per_s %.1f records/s baseline=%.1f ratio=%.3f target=>=50000\n' "$many_rate" "$one_rate" "$(echo "$many_rate / $one_rate" | bc -l)"
tpl_rate=$(echo "$N / $tpl_s" | bc -l)
printf 'BENCH viid_enqueue_many_template_records_per_s %.1f records/s baseline=%.1f ratio=%.3f target=>=50000\n' "$tpl_rate" "$many_rate" "$(echo "$tpl_rate / $many_rate" | bc -l)"
