#!/usr/bin/env bash
# Video quality diagnosis: accuracy on the labelled corpus and throughput,
# both through the SQL function vms.diagnose() on the bench cluster.
# Called by test/scripts/bench.sh as:  bash 70_inspect.bench.sh DIR PORT
# (DIR is the cluster's socket folder, database `bench`, vms installed).
#
# Accuracy, on the synthetic corpus (test/corpus/make_clips.sh) and the real
# one (test/corpus/make_real_clips.sh, three builds with other seeds and
# encoder settings; the worst build is reported): every clip is diagnosed
# with the normal profile (two sessions at a time; the baseline JPEG of the
# scene-change clips is passed as hex); per check: precision, recall per
# strength (s1 mild, s2 medium, s3 strong) against the manifest's
# expected_abnormal_checks (tolerated_checks are not scored for that clip),
# and the false-alarm rate on clean clips (abnormal verdicts / verdicts);
# and the share of clean clips with any alarm.  Targets: recall >= 0.95 at
# s2/s3, no false alarm on clean clips.
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
# the real corpus in three builds (other seeds and encoder settings): accuracy
# must hold on every draw, the worst is reported
for b in 0 1 2; do
  VMS_CORPUS_SEED=$((b + 1)) VMS_CORPUS_VARIANT=$b VMS_DEB_CACHE=$CORPUS/debs \
    bash "$ROOT/test/corpus/make_real_clips.sh" "$CORPUS/real_build$b" >&2
done
# the server reads the clips: they must be reachable by its user
[ "$(id -u)" = 0 ] && chown -R "$PG_OS_USER" "$CORPUS"
sql() { as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d bench -tA "$@"; }
export -f sql as_pg
export dir port PG_BINDIR PG_OS_USER CORPUS

# ---- accuracy ----
# one clip: file, check, metric, abnormal (t/f/empty), detail, tab-separated
diag_clip() {
  local d=$1 f=$2 b=$3 opts="'{}'::jsonb"
  [ "$b" != - ] && opts="jsonb_build_object('baseline', encode(pg_read_binary_file('$d/$b'), 'hex'))"
  sql -F $'\t' -c "SELECT '$f', check_name, round(metric::numeric, 4), abnormal, replace(detail, E'\t', ' ') FROM vms.diagnose('$d/$f', $opts)" ||
    printf '%s\tstream\t\t\terror: vms.diagnose raised\n' "$f"
}
export -f diag_clip
# score NAME DIR: per check precision, recall per strength (1 mild, 2 medium,
# 3 strong: a defect's rank among the clips of its condition and scene) and
# the false-alarm rate on clean clips (abnormal verdicts / verdicts);
# tolerated checks are not scored; lines "metric value" to stdout
score() {
  local name=$1 d=$2 res=$dir/inspect_results_$1.tsv
  tail -n +2 "$d/manifest.tsv" | cut -f1,7 | tr '\t' ' ' | xargs -P 2 -L 1 bash -c 'diag_clip "$0" "$1" "$2"' "$d" > "$res"
  awk -F'\t' -v OFS='\t' '
    FNR == NR { if (FNR > 1) { ex[$1] = "," $5 ","; tol[$1] = "," $6 ","; cond[$1] = $3
                 k = $3 SUBSEP $2; lv[$1] = ($3 == "clean" || $3 == "bad" || $3 ~ /^scene/ || $3 == "blocking") ? 0 : ++n[k]
                 if ($3 ~ /^scene_change/) lv[$1] = 3 } next }
    {
      f = $1; c = $2; a = $4
      if (a == "" || index(tol[f], "," c ",")) next
      want = index(ex[f], "," c ",") > 0
      seen[c] = 1
      if (want) { pos[c, lv[f]]++; if (a == "t") hit[c, lv[f]]++ }
      if (a == "t") { flag[c]++; if (want) tp[c]++ }
      if (cond[f] == "clean") { cv[c]++; if (a == "t") cf[c]++ }
    }
    END {
      nk = split("stream signal_loss black_screen brightness blur color_cast noise stripes freeze jitter mosaic occlusion scene_change", order, " ")
      for (i = 1; i <= nk; i++) {
        c = order[i]
        if (!(c in seen)) continue
        if (flag[c] + 0 > 0 || tp[c] + 0 > 0) print c "_precision", (flag[c] ? tp[c] / flag[c] : 1)
        for (l = 1; l <= 3; l++) if (pos[c, l] > 0) print c "_recall_s" l, hit[c, l] / pos[c, l]
        if (cv[c] > 0) print c "_clean_false_alarm_rate", cf[c] / cv[c]
      }
    }' "$d/manifest.tsv" "$res"
  awk -F'\t' 'FNR == NR { if (FNR > 1) { ex[$1] = "," $5 ","; tol[$1] = "," $6 "," } next }
    $4 != "" && !index(tol[$1], "," $2 ",") && (index(ex[$1], "," $2 ",") > 0) != ($4 == "t") {
      print "# '"$name"' " ($4 == "t" ? "false alarm" : "missed") ": " $1 " " $2 " " $3 }' "$d/manifest.tsv" "$res" >&2
  # clean clips with any alarm (of all clean clips)
  awk -F'\t' 'FNR == NR { if (FNR > 1 && $3 == "clean") { cl[$1] = 1; nc++ } next }
    ($1 in cl) && $4 == "t" && $2 != "stream" { bad[$1] = 1 }
    END { nb = 0; for (f in bad) nb++; print "clean_clips_with_alarm", nc ? nb / nc : 0 }' "$d/manifest.tsv" "$res"
}
# worst over builds: lowest precision/recall, highest false-alarm rates
emit() {  # emit CORPUS < "metric value" lines of every build
  awk -v corp="$1" '{ w = ($1 ~ /false_alarm|with_alarm/); if (!($1 in v) || (w ? $2 > v[$1] : $2 < v[$1])) v[$1] = $2; if (!($1 in o)) o[$1] = ++n; k[o[$1]] = $1 }
    END { for (i = 1; i <= n; i++) { m = k[i]; w = (m ~ /false_alarm|with_alarm/)
      t = w ? (m ~ /with_alarm/ ? "0" : "0.0") : (m ~ /recall_s1/ ? "-" : "0.95")
      printf "BENCH inspect_%s_%s %.3f fraction baseline=%s ratio=%.3f target=%s\n", corp, m, v[m], w ? "0.0" : "1.0", v[m], t } }'
}
score syn "$CORPUS" | emit syn
for b in 0 1 2; do score "real_build$b" "$CORPUS/real_build$b"; done | emit real

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
