#!/usr/bin/env bash
# Run pg_regress (sql/, expected/) against a throwaway cluster, then the TAP
# tests in test/t/.  Exits non-zero on any failure.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

what=${1:-all}
port=${VMS_TEST_PORT:-54329}
status=0

# regress_suite LABEL [postgresql.conf lines...]: every pg_regress file alone
# in a fresh database (pg_regress drops and creates contrib_regression for
# each file, then loads postgis and vms), on a throwaway cluster whose
# settings are test/regress.conf plus the given lines.  PG_REGRESS_BINDIR
# may name a folder whose psql sets the client's time zone.
regress_suite() {
  local label=$1; shift
  local dir out t failed=0
  dir=$(make_run_dir regress-cluster)
  out=$(make_run_dir "regress-out/$label")
  cluster_stop "$dir"; rm -rf "$dir/data"
  cluster_start "$dir" "$port" "include '$VMS_ROOT/test/regress.conf'" "$@" || return 1
  if [ -n "${FAKE_START:-}" ]; then
    # the step must not run on the real clock: every process of the cluster,
    # workers included, and a fresh session are at the fake time, in the zone
    local ok
    ok=$(cluster_psql "$dir" "$port" postgres -At -c "
      SELECT current_setting('TimeZone') = '$FAKE_TZ'
         AND now() >= timezone('$FAKE_TZ', '$FAKE_START'::timestamp)
         AND now() < timezone('$FAKE_TZ', '$FAKE_START'::timestamp) + interval '10 min'
         AND (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'vms launcher') = 1
         AND NOT EXISTS (SELECT 1 FROM pg_stat_activity
                          WHERE backend_start < timezone('$FAKE_TZ', '$FAKE_START'::timestamp) - interval '1 min')")
    if [ "$ok" != t ]; then
      echo "FAIL: regress $label: the cluster is not on the fake clock ($FAKE_START $FAKE_TZ)"
      cluster_psql "$dir" "$port" postgres -c "SELECT now(), current_setting('TimeZone')" \
        -c "SELECT backend_type, backend_start FROM pg_stat_activity ORDER BY 2"
      cluster_stop "$dir"
      return 1
    fi
    echo "regress $label: cluster clock at $(cluster_psql "$dir" "$port" postgres -At -c "SELECT now()")"
  fi
  rm -f "$out/regression.diffs"
  for t in $tests; do
    if [ -n "${FAKE_START:-}" ]; then
      # a fresh postmaster per file: each file starts seconds before the fake
      # midnight (libfaketime's clock starts at FAKE_START with the process)
      cluster_stop "$dir"; cluster_start "$dir" "$port" || return 1
      if [ "$(cluster_psql "$dir" "$port" postgres -At -c "SELECT now() < timezone('$FAKE_TZ', '$FAKE_START'::timestamp) + interval '5 s'")" != t ]; then
        echo "FAIL: regress $label $t: the restarted cluster is past its fake midnight before the file began"; failed=1; continue
      fi
    fi
    rm -rf "${out:?}/$t"; mkdir -p "$out/$t"; chown -R "$PG_OS_USER" "$out/$t" 2>/dev/null
    if as_pg "$PGXS_DIR/src/test/regress/pg_regress" \
          --inputdir="$VMS_ROOT" --outputdir="$out/$t" --bindir="${PG_REGRESS_BINDIR:-$PG_BINDIR}" \
          --host="$dir" --port="$port" --user=postgres --dbname=contrib_regression \
          --load-extension=postgis --load-extension=vms "$t" > "$out/$t.log" 2>&1; then
      echo "ok regress $label $t"
    else
      failed=1
      echo "FAILED regress $label $t"
      if [ -f "$out/$t/regression.diffs" ]; then cat "$out/$t/regression.diffs" >> "$out/regression.diffs"
      else tail -20 "$out/$t.log"; fi
    fi
  done
  cluster_stop "$dir"
  if [ $failed = 1 ] && [ -f "$out/regression.diffs" ]; then
    echo "diffs: $out/regression.diffs"; head -200 "$out/regression.diffs"
  fi
  return $failed
}

if [ "$what" = all ] || [ "$what" = regress ] || [ "$what" = regress-faketime ]; then
  # VMS_REGRESS="a b" runs only those files
  tests=${VMS_REGRESS:-$(sed -n 's/^REGRESS *= *//p' "$VMS_ROOT/Makefile")}
fi
if [ "$what" = all ] || [ "$what" = regress ]; then
  regress_suite plain || status=1
fi

if [ "$what" = all ] || [ "$what" = regress ] || [ "$what" = regress-faketime ]; then
  # The same suite again with the whole cluster on a fake clock (libfaketime,
  # preloaded into the postmaster and so into every process it forks), years
  # ahead, every file starting at 23:59:55 local time so that it crosses midnight,
  # server and client in a zone that is not UTC: the end of 2031 in Shanghai,
  # and in Santiago the midnight at which Chile's daylight saving time starts
  # (00:00 -> 01:00).
  ftdir=$(make_run_dir faketime)
  ftlib=$(dpkg -L libfaketime 2>/dev/null | grep '/libfaketime\.so\.1$' | head -1)
  if [ -z "$ftlib" ] || ! cc -shared -fPIC -O2 -o "$ftdir/faketime_select.so" "$VMS_ROOT/test/scripts/faketime_select.c"; then
    echo "FAIL: libfaketime (Debian package faketime) or a C compiler is missing"; status=1
  else
    chmod 755 "$ftdir/faketime_select.so"
    for run in "Asia/Shanghai|2031-12-31 23:59:55" "America/Santiago|2031-09-06 23:59:55"; do
      FAKE_TZ=${run%%|*}; FAKE_START=${run#*|}
      # pg_regress sets PGTZ=PST8PDT for its psql; this psql sets the zone of the run
      printf '#!/bin/sh\nPGTZ=%s; export PGTZ\nexec %s/psql "$@"\n' "$FAKE_TZ" "$PG_BINDIR" > "$ftdir/psql"
      chmod 755 "$ftdir/psql"
      CLUSTER_ENV=("LD_PRELOAD=$ftdir/faketime_select.so $ftlib" "FAKETIME=@$FAKE_START" "TZ=$FAKE_TZ"
                   "FAKETIME_DONT_FAKE_MONOTONIC=1")
      PG_REGRESS_BINDIR=$ftdir regress_suite "faketime-${FAKE_TZ//\//-}" "timezone = '$FAKE_TZ'" "log_timezone = '$FAKE_TZ'" || status=1
      CLUSTER_ENV=()
    done
  fi
fi

if [ "$what" = all ] || [ "$what" = upgrade ]; then
  # every released version upgraded in place equals a fresh install
  bash "$VMS_ROOT/test/scripts/upgrade_check.sh" || status=1
fi

if [ "$what" = all ] || [ "$what" = backup ]; then
  # a pg_dump of a filled database, restored into an empty one, gives back every row
  bash "$VMS_ROOT/test/scripts/backup_check.sh" || status=1
fi

if [ "$what" = all ] || [ "$what" = pg-upgrade ]; then
  # pg_upgrade of a cluster with a filled vms database keeps every row
  bash "$VMS_ROOT/test/scripts/pg_upgrade_check.sh" || status=1
fi

if [ "$what" = all ] || [ "$what" = layout ]; then
  # workers/sip stays a layering: no include or call cycle between its files (needs make's objects)
  python3 "$VMS_ROOT/test/scripts/sip_layout_check.py" "$VMS_ROOT/workers/sip" || status=1
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
