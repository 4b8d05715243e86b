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
C=$DIR/corpus
fail=0

# file check: verdicts that are known to be wrong today (see THRESHOLDS.md, "Known gaps")
KNOWN="
cast_street_g1.mp4 color_cast
"

tail -n +2 "$C/manifest.tsv" | cut -f1,7 | tr '\t' ' ' |
  xargs -P 2 -L 1 sh -c 'b=""; [ "$1" != - ] && b="--baseline '"$C"'/$1"; '"$CLI"' $b "'"$C"'/$0" | sed "s|^|$0	|"' > "$DIR/results.tsv"

while IFS=$'\t' read -r f chk metric ab detail; do
  [ -n "$ab" ] || continue
  IFS=$'\t' read -r _ _ _ _ exp tol _ < <(awk -F'\t' -v f="$f" '$1 == f' "$C/manifest.tsv")
  [[ ",$tol," == *",$chk,"* ]] && continue
  want=f; [[ ",$exp," == *",$chk,"* ]] && want=t
  known=0; grep -qx "$f $chk" <<< "$KNOWN" && known=1
  if [ "$ab" != "$want" ]; then
    if [ $known = 1 ]; then echo "known gap: $f $chk=$ab ($metric) $detail"
    else echo "FAIL: $f $chk=$ab, expected $want ($metric) $detail"; fail=1; fi
  elif [ $known = 1 ]; then
    echo "now passing (remove from KNOWN): $f $chk"
  fi
done < "$DIR/results.tsv"
# every clip must have produced all its rows
n=$(tail -n +2 "$C/manifest.tsv" | wc -l)
rows=$(cut -f1 "$DIR/results.tsv" | sort -u | wc -l)
[ "$rows" = "$n" ] || { echo "FAIL: $rows of $n clips diagnosed"; fail=1; }

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
