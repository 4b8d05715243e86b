#!/usr/bin/env bash
# Upgrade check: every released version, upgraded with ALTER EXTENSION vms
# UPDATE, must give exactly the schema of a fresh CREATE EXTENSION vms.
#
# pg_dump skips an extension's member objects, except in --binary-upgrade
# mode, which writes every member (tables, functions, operators, opclasses,
# policies, grants, comments) as pg_upgrade would restore it.  The dump is cut
# into its "-- Name:" blocks, OID-setting calls and dropped-column placeholders
# are removed, and the sorted blocks are compared, so creation order does not
# matter but every definition, privilege and comment does.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

port=${VMS_UPGRADE_PORT:-54339}
dir=$(make_run_dir upgrade-cluster)
cluster_stop "$dir"; rm -rf "$dir/data"
# no workers: this compares schemas only
cluster_start "$dir" "$port" "shared_preload_libraries = ''"
trap 'cluster_stop "$dir"' EXIT

current=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$VMS_ROOT/vms.control")
# every version with a frozen install script is a starting point
bases=$(ls "$VMS_ROOT"/extension/upgrade/ | sed -n 's/^vms--\([0-9.]*\)\.sql$/\1/p' | sort -V)

normalise() {
  # blocks start at pg_dump's "-- Name:" / "-- TOC entry" comment lines
  grep -v -e 'binary_upgrade_set_next' -e 'binary_upgrade_set_record_init_privs' \
          -e '^SELECT pg_catalog.set_config' -e 'pg.dropped' -e 'relfrozenxid = ' -e "^WHERE oid = '[0-9]*';" \
          -e '^-- Dumped ' -e '^-- TOC entry' -e '^-- Dependencies:' \
          -e '^\\restrict ' -e '^\\unrestrict ' -e '^-- PostgreSQL database dump' |
  # the config-table OIDs in binary_upgrade_create_empty_extension
  sed -E "s/(binary_upgrade_create_empty_extension\('[a-z_]+', '[a-z_]+', [a-z]+, '[^']*', )'\{[0-9,]*\}'/\1'{oids}'/" |
  awk 'BEGIN { RS = "\n--\n-- Name: " } NR > 1 { gsub(/\n+$/, ""); gsub(/\n/, "\\n"); print }' |
  sort
}

dump() {
  as_pg pg_dump --schema-only --binary-upgrade --no-owner -h "$dir" -p "$port" -U postgres "$1" | normalise
}

status=0
cluster_psql "$dir" "$port" postgres -c "CREATE DATABASE fresh" || exit 1
cluster_psql "$dir" "$port" fresh -c "CREATE EXTENSION vms CASCADE" || exit 1
dump fresh > "$dir/fresh.dump"
for base in $bases; do
  [ "$base" = "$current" ] && continue
  db="from_${base//./_}"
  cluster_psql "$dir" "$port" postgres -c "CREATE DATABASE $db" || exit 1
  if ! cluster_psql "$dir" "$port" "$db" -c "CREATE EXTENSION vms VERSION '$base' CASCADE" \
                                          -c "ALTER EXTENSION vms UPDATE"; then
    echo "FAIL upgrade $base -> $current: the update scripts do not run"; status=1; continue
  fi
  got=$(cluster_psql "$dir" "$port" "$db" -At -c "SELECT extversion FROM pg_extension WHERE extname = 'vms'")
  if [ "$got" != "$current" ]; then
    echo "FAIL upgrade $base -> $current: ALTER EXTENSION UPDATE reached $got"; status=1; continue
  fi
  dump "$db" > "$dir/$db.dump"
  if ! diff -u "$dir/fresh.dump" "$dir/$db.dump" | sed 's/\\n/\n/g' > "$dir/$db.diff"; then
    echo "FAIL upgrade $base -> $current differs from a fresh install ('-' fresh, '+' upgraded):"
    head -150 "$dir/$db.diff"
    status=1
  else
    echo "ok upgrade $base -> $current gives the fresh schema ($(wc -l < "$dir/fresh.dump") objects compared)"
  fi
done
exit $status
