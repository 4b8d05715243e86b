#!/usr/bin/env bash
# run_checks.sh DIR — quick check of the video quality diagnosis:
#   builds test/inspect/vqd_cli, makes the corpus in DIR/corpus, diagnoses
#   every clip (normal profile) and asserts the manifest's expectations: the
#   expected checks abnormal, every other check normal (tolerated ones are
#   not asserted).  Verdicts listed in KNOWN below are the current accuracy
#   gaps: reported, not failed — a KNOWN entry that starts passing is
#   reported too, so the list can shrink.
#   Then the RTSP path through test/peers/rtsp_server.py: a clip diagnosed
#   over rtsp://, /stall abnormal `stream` on the timeout, /refuse on the
#   camera's refusal.
# Exit status non-zero on any failure.
set -euo pipefail
DIR=${1:?usage: run_checks.sh DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLI=$ROOT/test/inspect/vqd_cli
PORT=${VMS_RTSP_PORT:-18554}
mkdir -p "$DIR"
make -s -C "$ROOT/test/inspect" vqd_cli
bash "$ROOT/test/corpus/make_clips.sh" "$DIR/corpus"
# the real corpus (footage and photographs from Debian packages), cached beside it
VMS_DEB_CACHE=$DIR/corpus/debs bash "$ROOT/test/corpus/make_real_clips.sh" "$DIR/corpus/real"
C=$DIR/corpus
fail=0

# corpus file check: verdicts known to be wrong today (see THRESHOLDS.md,
# "Known gaps"): reported, not failed; one that starts passing is reported too
KNOWN="
syn cast_street_g1.mp4 color_cast
"

# judge CORPUS_NAME DIR: diagnose every clip (normal profile) and assert the
# manifest: clean clips and defects of medium and strong strength exactly
# (expected checks abnormal, every other check normal, tolerated ones not
# asserted); at mild strength (the first of a defect's three) a miss is
# reported, not failed, while a false alarm still fails; bad input must give
# every row (no crash) and the expected `stream` verdict
judge() {
  local name=$1 cdir=$2 res=$DIR/results_$1.tsv
  tail -n +2 "$cdir/manifest.tsv" | cut -f1,7 | tr '\t' ' ' |
    xargs -P 2 -L 1 sh -c 'b=""; [ "$1" != - ] && b="--baseline '"$cdir"'/$1"; '"$CLI"' $b "'"$cdir"'/$0" | sed "s|^|$0	|"' > "$res"
  # strength level of each defect clip: its rank among the clips of its condition and scene
  awk -F'\t' 'NR > 1 { k = $3 SUBSEP $2; lv = ($3 == "clean" || $3 == "bad" || $3 ~ /^scene/ || $3 == "blocking") ? 0 : ++n[k]; print $1 "\t" lv }' "$cdir/manifest.tsv" > "$DIR/levels_$name.tsv"
  while IFS=$'\t' read -r f chk metric ab detail; do
    [ -n "$ab" ] || continue
    IFS=$'\t' read -r _ _ cond _ exp tol _ < <(awk -F'\t' -v f="$f" '$1 == f' "$cdir/manifest.tsv")
    [[ ",$tol," == *",$chk,"* ]] && continue
    local lv; lv=$(awk -F'\t' -v f="$f" '$1 == f { print $2 }' "$DIR/levels_$name.tsv")
    local want=f; [[ ",$exp," == *",$chk,"* ]] && want=t
    [ "$cond" = bad ] && [ "$chk" != stream ] && [ "$exp" != - ] && continue   # no pictures: nothing else to judge
    local known=0; grep -qx "$name $f $chk" <<< "$KNOWN" && known=1
    if [ "$ab" != "$want" ]; then
      if [ $known = 1 ]; then echo "known gap: $name $f $chk=$ab ($metric) $detail"
      elif [ "$want" = t ] && [ "$lv" = 1 ]; then echo "mild miss: $name $f $chk ($metric) $detail"
      else echo "FAIL: $name $f $chk=$ab, expected $want ($metric) $detail"; fail=1; fi
    elif [ $known = 1 ]; then
      echo "now passing (remove from KNOWN): $name $f $chk"
    fi
  done < "$res"
  # every clip must have produced all its rows: bad input included, nothing crashed
  local n rows
  n=$(tail -n +2 "$cdir/manifest.tsv" | wc -l)
  rows=$(awk -F'\t' '$2 == "stream"' "$res" | cut -f1 | sort -u | wc -l)
  [ "$rows" = "$n" ] || { echo "FAIL: $name: $rows of $n clips diagnosed"; fail=1; }
  echo "$name corpus: $n clips judged"
}
judge syn "$C"
judge real "$C/real"
# bad input gives a reason
for f in bad_zero_length.mp4 bad_no_video.m4a bad_truncated.mp4 bad_tiny.mp4; do
  d=$(awk -F'\t' -v f="$f" '$1 == f && $2 == "stream" { print $4 "|" $5 }' "$DIR/results_real.tsv")
  case $d in t\|?*) echo "ok: $f stream abnormal: ${d#t|}" ;; *) echo "FAIL: $f: stream verdict '$d'"; fail=1 ;; esac
done

# ---- RTSP ----
mkdir -p "$DIR/rtsp"
cp "$C/clean_street_day.mp4" "$C/freeze_chart_n0.mp4" "$DIR/rtsp/"
/usr/bin/python3 "$ROOT/test/peers/rtsp_server.py" --dir "$DIR/rtsp" --port "$PORT" > "$DIR/rtsp.out" 2> "$DIR/rtsp.err" &
spid=$!
trap 'kill $spid 2>/dev/null || true' EXIT
for _ in $(seq 1800); do grep -q ready "$DIR/rtsp.out" && break; sleep 0.1; done   # up to 180 s on a loaded machine
grep -q ready "$DIR/rtsp.out" || { echo "FAIL: rtsp_server did not start"; cat "$DIR/rtsp.err"; exit 1; }

check_rtsp() {  # name expected_stream_abnormal stream_detail_regex expected_check...
  # (the time taken is printed, not judged: a loaded machine is slow; that the
  # stall ends on the timeout and the refusal on the camera's answer is judged)
  local name=$1 want=$2 detail_re=$3; shift 3
  local t0 t1 out
  t0=$(date +%s.%N)
  out=$("$CLI" --timeout-ms 6000 --connect-timeout-ms 3000 --read-timeout-ms 2000 "rtsp://127.0.0.1:$PORT/$name")
  t1=$(date +%s.%N)
  local got; got=$(awk -F'\t' '$1 == "stream" { print $3 }' <<< "$out")
  local detail; detail=$(awk -F'\t' '$1 == "stream" { print $4 }' <<< "$out")
  local el; el=$(echo "$t1 - $t0" | bc)
  if [ "$got" != "$want" ] || ! grep -qiE "$detail_re" <<< "$detail"; then
    echo "FAIL: rtsp /$name stream=$got (want $want), detail \"$detail\" (want /$detail_re/) in ${el}s"; fail=1
  else
    echo "ok: rtsp /$name stream=$got in ${el}s: $detail"
  fi
  for c in "$@"; do
    [ "$(awk -F'\t' -v c="$c" '$1 == c { print $3 }' <<< "$out")" = t ] ||
      { echo "FAIL: rtsp /$name: $c not abnormal"; fail=1; }
  done
  [ "$want" = t ] || [ "$(awk -F'\t' '$3 == "t"' <<< "$out" | wc -l)" = "$#" ] ||
    { echo "FAIL: rtsp /$name: unexpected alarms: $(awk -F'\t' '$3 == "t" { print $1 }' <<< "$out" | tr '\n' ' ')"; fail=1; }
}
check_rtsp clean_street_day f ''
check_rtsp freeze_chart_n0 f '' freeze
check_rtsp stall t 'timeout|timed out|no frames'
check_rtsp refuse t '404|not found'

[ $fail = 0 ] && echo "inspect checks: ok" || echo "inspect checks: FAILED"
exit $fail
