#!/usr/bin/env bash
# Video quality diagnosis: accuracy on the labelled corpus and throughput,
# both through the SQL function vms.diagnose() on the bench cluster.
# Called by test/scripts/bench.sh as:  bash 70_inspect.bench.sh DIR PORT
# (DIR is the cluster's socket folder, database `bench`, vms installed).
#
# Accuracy: every clip of test/corpus/make_clips.sh is diagnosed with the
# normal profile (two sessions at a time; the baseline JPEG of the
# scene-change clips is passed as hex); per check, precision and recall
# against the manifest's expected_abnormal_checks (tolerated_checks are not
# scored for that clip); false alarms = abnormal verdicts on clean clips /
# all verdicts on clean clips (and, stricter, clean clips with any alarm /
# clean clips).
# Throughput: 1080p 2 s clips (H.264, H.265), VMS_BENCH_INSPECT_RUNS runs
# each, alternating vms.diagnose() (50 frames / 2 s sample, threads=1 by
# design) with `ffmpeg -threads 1 -i clip -f null -` (decode only, same
# clip, same run).  Times are CPU seconds (user+sys): of the server backend
# for the diagnosis (from /proc/PID/stat around the call, in one session),
# of the process for ffmpeg; medians.  The diagnoses per hour per core are
# 3600 / diagnosis CPU seconds per sample.
set -euo pipefail
dir=${1:?usage: 70_inspect.bench.sh DIR PORT}
port=${2:?usage: 70_inspect.bench.sh DIR PORT}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/test/scripts/lib.sh"
CORPUS=${VMS_CORPUS_DIR:-$dir/corpus}
RUNS=${VMS_BENCH_INSPECT_RUNS:-7}
mkdir -p "$dir"

bash "$ROOT/test/corpus/make_clips.sh" "$CORPUS" >&2
MAN=$CORPUS/manifest.tsv
RES=$dir/inspect_results.tsv
# the server reads the clips: they must be reachable by its user
[ "$(id -u)" = 0 ] && chown -R "$PG_OS_USER" "$CORPUS"
sql() { as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d bench -tA "$@"; }
export -f sql as_pg
export dir port PG_BINDIR PG_OS_USER CORPUS

# ---- accuracy ----
# one clip: file, check, metric, abnormal (t/f/empty), detail, tab-separated
diag_clip() {
  local f=$1 b=$2 opts="'{}'::jsonb"
  [ "$b" != - ] && opts="jsonb_build_object('baseline', encode(pg_read_binary_file('$CORPUS/$b'), 'hex'))"
  sql -F $'\t' -c "SELECT '$f', check_name, round(metric::numeric, 4), abnormal, detail FROM vms.diagnose('$CORPUS/$f', $opts)"
}
export -f diag_clip
tail -n +2 "$MAN" | cut -f1,7 | tr '\t' ' ' | xargs -P 2 -L 1 bash -c 'diag_clip "$0" "$1"' > "$RES"

awk -F'\t' -v OFS='\t' '
  FNR == NR { if (FNR > 1) { ex[$1] = "," $5 ","; tol[$1] = "," $6 ","; cond[$1] = $3 } next }
  {
    f = $1; c = $2; a = $4
    if (a == "") next                      # not evaluated
    if (index(tol[f], "," c ",")) next
    want = index(ex[f], "," c ",") > 0
    seen[c] = 1
    if (want && a == "t") tp[c]++
    else if (want) fn[c]++
    else if (a == "t") fp[c]++
    if (cond[f] == "clean") { cv++; if (a == "t") { cf++; bad[f] = 1 } ; clips[f] = 1 }
  }
  END {
    n = split("stream signal_loss black_screen brightness blur color_cast noise stripes freeze jitter mosaic occlusion scene_change", order, " ")
    for (i = 1; i <= n; i++) {
      c = order[i]
      if (!(c in seen) || tp[c] + fn[c] == 0) continue
      p = (tp[c] + fp[c]) ? tp[c] / (tp[c] + fp[c]) : 1
      r = tp[c] / (tp[c] + fn[c])
      printf "BENCH inspect_%s_precision %.3f fraction baseline=1.0 ratio=%.3f target=0.95\n", c, p, p
      printf "BENCH inspect_%s_recall %.3f fraction baseline=1.0 ratio=%.3f target=0.95\n", c, r, r
      printf "# %s: tp=%d fp=%d fn=%d\n", c, tp[c], fp[c], fn[c] > "/dev/stderr"
    }
    nc = 0; nb = 0
    for (f in clips) { nc++; if (f in bad) nb++ }
    printf "BENCH inspect_clean_false_alarm_rate %.4f fraction baseline=0.0 ratio=%.4f target=0.02\n", cv ? cf / cv : 0, cv ? cf / cv : 0
    printf "BENCH inspect_clean_clips_with_alarm %.4f fraction baseline=0.0 ratio=%.4f target=0.02\n", nc ? nb / nc : 0, nc ? nb / nc : 0
    printf "# clean: %d abnormal of %d verdicts; %d of %d clips with an alarm\n", cf, cv, nb, nc > "/dev/stderr"
  }' "$MAN" "$RES"
# the misses and false alarms, for whoever tunes the checks
awk -F'\t' 'FNR == NR { if (FNR > 1) { ex[$1] = "," $5 ","; tol[$1] = "," $6 "," } next }
  $4 != "" && !index(tol[$1], "," $2 ",") && (index(ex[$1], "," $2 ",") > 0) != ($4 == "t") {
    print "# " ($4 == "t" ? "false alarm" : "missed") ": " $1 " " $2 " " $3 }' "$MAN" "$RES" >&2

# ---- throughput ----
cpu() {  # CPU seconds (user+sys) of one command
  /usr/bin/time -f '%U %S' -o "$dir/time.out" "$@" > /dev/null 2>&1 || true
  awk '{ printf "%.4f\n", $1 + $2 }' "$dir/time.out"
}
TCK=$(getconf CLK_TCK)
cpu_sql() {  # CPU seconds (user+sys) of the server backend for one vms.diagnose()
  local st="SELECT (split_part(s, ' ', 14)::bigint + split_part(s, ' ', 15)::bigint) FROM pg_read_file('/proc/' || pg_backend_pid() || '/stat') s"
  sql -c "$st" -c "SELECT count(*) FROM vms.diagnose('$1', '{\"frames\": 50, \"seconds\": 2}')" -c "$st" |
    awk -v tck="$TCK" 'NR == 1 { a = $1 } NR == 3 { printf "%.4f\n", ($1 - a) / tck }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for codec in h264 h265; do
  clip=$CORPUS/throughput_1080p_$codec.mp4
  if [ ! -s "$clip" ]; then
    echo "# no $clip (libx265 missing?): no $codec throughput figure" >&2
    continue
  fi
  : > "$dir/vqd.t"; : > "$dir/ff.t"
  for _ in $(seq "$RUNS"); do
    cpu_sql "$clip" >> "$dir/vqd.t"
    cpu ffmpeg -hide_banner -nostdin -loglevel error -threads 1 -i "$clip" -f null - >> "$dir/ff.t"
  done
  v=$(median < "$dir/vqd.t"); b=$(median < "$dir/ff.t")
  awk -v v="$v" -v b="$b" -v c="$codec" 'BEGIN {
    printf "BENCH inspect_1080p_%s_diagnoses_per_hour_per_core %.0f diagnoses/h baseline=%.0f ratio=%.3f target=>=%.0f\n", c, 3600 / v, 3600 / b, b / v, 3600 / b / 1.25
    printf "BENCH inspect_1080p_%s_time_vs_ffmpeg_decode %.4f s/sample baseline=%.4f ratio=%.3f target=1.25\n", c, v, b, v / b }'
done
