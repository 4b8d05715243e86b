#!/usr/bin/env bash
# Run pg_regress (sql/, expected/) against a throwaway cluster, then the TAP
# tests in test/t/.  Exits non-zero on any failure.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

what=${1:-all}
port=${VMS_TEST_PORT:-54329}
status=0

if [ "$what" = all ] || [ "$what" = regress ]; then
  dir=$(make_run_dir regress-cluster)
  out=$(make_run_dir regress-out)
  cluster_stop "$dir"; rm -rf "$dir/data"
  cluster_start "$dir" "$port"
  # VMS_REGRESS="a b" runs only those files
  tests=${VMS_REGRESS:-$(sed -n 's/^REGRESS *= *//p' "$VMS_ROOT/Makefile")}
  # shellcheck disable=SC2086
  if ! as_pg "$PGXS_DIR/src/test/regress/pg_regress" \
        --inputdir="$VMS_ROOT" --outputdir="$out" --bindir="$PG_BINDIR" \
        --host="$dir" --port="$port" --user=postgres --dbname=contrib_regression $tests; then
    status=1
    [ -f "$out/regression.diffs" ] && head -200 "$out/regression.diffs"
  fi
  cluster_stop "$dir"
fi

if [ "$what" = all ] || [ "$what" = upgrade ]; then
  # every released version upgraded in place equals a fresh install
  bash "$VMS_ROOT/test/scripts/upgrade_check.sh" || status=1
fi

if [ "$what" = all ] || [ "$what" = fuzz ]; then
  # the SIP/MANSCDP parsing path under libFuzzer with ASan/UBSan, briefly
  if ! make -s -C "$VMS_ROOT/test/fuzz" run FUZZ_SECONDS="${VMS_FUZZ_SECONDS:-20}" > "$RUN_DIR/fuzz.log" 2>&1; then
    status=1
    tail -60 "$RUN_DIR/fuzz.log"
  else
    grep -E '^Done|stat::number_of_executed_units' "$RUN_DIR/fuzz.log"
  fi
fi

if [ "$what" = all ] || [ "$what" = inspect ]; then
  # video quality diagnosis: the CLI over the labelled corpus (built once in
  # .run/corpus, kept between runs) and over RTSP (stall, refuse)
  make_run_dir inspect >/dev/null
  mkdir -p "$RUN_DIR/corpus"; ln -sfn ../corpus "$RUN_DIR/inspect/corpus"
  if ! { make -s -C "$VMS_ROOT/test/inspect" &&
         bash "$VMS_ROOT/test/corpus/make_clips.sh" "$RUN_DIR/corpus" &&
         VMS_RTSP_PORT=${VMS_RTSP_PORT:-18554} bash "$VMS_ROOT/test/inspect/run_checks.sh" "$RUN_DIR/inspect"; } \
       > "$RUN_DIR/inspect.log" 2>&1; then
    status=1
    grep -E 'FAIL|rror' "$RUN_DIR/inspect.log" | head -60; tail -20 "$RUN_DIR/inspect.log"
  else
    grep -E '^(ok|known gap|now passing|inspect checks)' "$RUN_DIR/inspect.log"
  fi
fi

if [ "$what" = all ] || [ "$what" = tap ]; then
  tapdir=$(make_run_dir tap)
  rm -rf "$tapdir/tmp_check"
  if ! (cd "$tapdir" && as_pg env TESTDIR="$tapdir" VMS_ROOT="$VMS_ROOT" \
          PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress" \
          prove -I "$PGXS_DIR/src/test/perl" -I "$VMS_ROOT/test/t" "$VMS_ROOT"/test/t/*.pl); then
    status=1
    find "$tapdir/tmp_check/log" -name '*.log' -newer "$tapdir" -exec tail -n 40 {} + 2>/dev/null | tail -200
  fi
fi

exit $status
