#!/usr/bin/env bash
# pg_upgrade check: a cluster with a filled vms database goes through
# pg_upgrade (the way a DBA moves a cluster to new binaries) and comes out
# with the same extension version and every row.
#
# pg_upgrade dumps the schema with pg_dump --binary-upgrade, which creates
# the extension's member objects one by one, in dependency order; an object
# whose parse needs gbcode's default operator class (ORDER BY, DISTINCT,
# GROUP BY, UNION... on a gbcode) but does not depend on it stops the
# restore ("could not identify an ordering operator for type vms.gbcode").
# This fills a database (the Futian fixture: devices, channels, catalogue
# with a channel in two nodes, tags, a grant, an alarm, audit rows) and a
# database installed at 0.2.0 and updated with ALTER EXTENSION, runs
# pg_upgrade from an old cluster into a new one (same binaries: the check is
# of the dump and restore pg_upgrade does), and compares every row of every
# table in schema vms, the ledger export and the sequences, then checks the
# audit chain, the analyst's grant, a dead grant (its role dropped and made
# again) and a search in the new cluster.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

old_port=${VMS_PGUP_PORT:-54349}
new_port=$((old_port + 1))
dir=$(make_run_dir pg-upgrade)
cluster_stop "$dir/old"; cluster_stop "$dir/new"
rm -rf "${dir:?}/old" "$dir/new" "$dir/work"
mkdir -p "$dir/old" "$dir/new" "$dir/work"; chown -R "$PG_OS_USER" "$dir"
# no workers: nothing may write to the database between the two snapshots
conf=("shared_preload_libraries = ''")
cleanup() { cluster_stop "$dir/old"; cluster_stop "$dir/new"; }
trap cleanup EXIT
psql_old() { cluster_psql "$dir/old" "$old_port" "$@"; }
psql_new() { cluster_psql "$dir/new" "$new_port" "$@"; }

cluster_start "$dir/old" "$old_port" "${conf[@]}" || exit 1
psql_old postgres -c "CREATE DATABASE cams" -c "CREATE DATABASE from_020" || exit 1
# a database installed at 0.2.0 goes through pg_upgrade once updated to the
# current version (README, Upgrading: at 0.2.0 its views stop the restore)
psql_old from_020 -c "SET client_min_messages = warning" -c "CREATE EXTENSION vms VERSION '0.2.0' CASCADE" \
                  -c "ALTER EXTENSION vms UPDATE" > "$dir/from_020.log" 2>&1 ||
  { echo "FAIL pg_upgrade: installing 0.2.0 and updating it failed"; cat "$dir/from_020.log"; exit 1; }
if ! psql_old cams -v abs_srcdir="$VMS_ROOT" > "$dir/fill.log" 2>&1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION vms CASCADE;
\i :abs_srcdir/sql/fixtures/futian.sql
\i :abs_srcdir/sql/fixtures/futian_tags.sql
-- a channel in two catalogue nodes: the export joins them in code order
INSERT INTO vms.catalog_member VALUES ('44030400002150000001', '44030401001320000007');
CREATE ROLE pgup_analyst LOGIN IN ROLE vms_analyst;
CREATE ROLE pgup_gone;
CREATE ROLE pgup_admin LOGIN IN ROLE vms_grant_admin;
SET SESSION AUTHORIZATION pgup_admin;
SELECT vms.grant_access('pgup_analyst', 'region', '44030401', '{view_live}', 4::smallint);
-- a dead grant: its role dropped, and a new role made under the same name
SELECT vms.grant_access('pgup_gone', 'all', NULL, '{view_live}', 4::smallint);
RESET SESSION AUTHORIZATION;
DROP ROLE pgup_gone;
CREATE ROLE pgup_gone;
SELECT vms.alarm_raise('44030401001320000001', 'black_screen', 2::smallint, 'inspection');
SQL
then
  echo "FAIL pg_upgrade: filling the old cluster failed"; tail -20 "$dir/fill.log"; exit 1
fi

# every row of every table of schema vms, the sequences, and the export
snapshot() {
  { vms_snapshot_sql; echo "SELECT 'ledger_export: ' || to_jsonb(e)::text FROM vms.ledger_export e;"; } | "$@" -At
}
# what the analyst sees through its grant, and a search
as_analyst() {
  "$@" -At <<'SQL'
SET SESSION AUTHORIZATION pgup_analyst;
SELECT 'visible channels: ' || count(*) FROM vms.channel;
RESET SESSION AUTHORIZATION;
SELECT 'grants that count: ' || string_agg(g.grantee || ' ' || g.scope_kind, ', ' ORDER BY g.id)
  FROM vms.access_grant g WHERE vms.grantee_role(g.grantee, g.grantee_oid) IS NOT NULL;
SET SESSION AUTHORIZATION pgup_analyst;
SELECT 'search: ' || string_agg(s.code::text, ',' ORDER BY s.code::text)
  FROM vms.search_points('{"keyword": "福华路", "catalog": "44030400002150000001"}') s;
SQL
}
# (the search writes a search history row: before the snapshot)
as_analyst psql_old cams > "$dir/old.analyst" 2>&1 || { echo "FAIL pg_upgrade: the analyst's queries in the old cluster:"; cat "$dir/old.analyst"; exit 1; }
snapshot psql_old cams | sort > "$dir/old.rows" || exit 1
old_version=$(psql_old cams -At -c "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vms'")
status=0
# the source must hold what the checks look at, else they prove little
for t in channel catalog_member access_grant audit_log alarm channel_tag; do
  grep -q "^vms\.$t: " "$dir/old.rows" || { echo "FAIL pg_upgrade: the old cluster has no rows in vms.$t"; status=1; }
done
grep -q '^ledger_export: .*"资源目录": "44030400002150000001|44030400002160000001"' "$dir/old.rows" ||
  { echo "FAIL pg_upgrade: the old cluster's export has no channel in two catalogue nodes"; status=1; }
grep -q '^visible channels: [1-9]' "$dir/old.analyst" && grep -q '^search: 4403' "$dir/old.analyst" &&
  grep -qx 'grants that count: pgup_analyst region' "$dir/old.analyst" ||
  { echo "FAIL pg_upgrade: the analyst sees nothing in the old cluster: $(tr '\n' ' ' < "$dir/old.analyst")"; status=1; }
cluster_stop "$dir/old"

# the new cluster: initdb'd like the old one (cluster_start), then stopped
cluster_start "$dir/new" "$new_port" "${conf[@]}" || exit 1
cluster_stop "$dir/new"
# pg_upgrade runs as on a production server, vms preloaded in both clusters:
# the workers must not start under pg_upgrade (-b, binary upgrade), where a
# worker's writes in the old cluster came after pg_upgrade had read its
# counters ("MultiXactId 3 has not been created yet" in the new one)
for c in old new; do
  printf "shared_preload_libraries = 'vms'\nvms.database = 'cams'\n" | as_pg tee -a "$dir/$c/data/postgresql.conf" >/dev/null
done
# pg_upgrade writes its logs into the current folder and the new data folder
if ! (cd "$dir/work" && as_pg "$PG_BINDIR/pg_upgrade" -U postgres \
        -b "$PG_BINDIR" -B "$PG_BINDIR" -d "$dir/old/data" -D "$dir/new/data" \
        -p "$old_port" -P "$new_port" -s "$dir/work") > "$dir/pg_upgrade.log" 2>&1; then
  echo "FAIL pg_upgrade: pg_upgrade failed:"; tail -15 "$dir/pg_upgrade.log"
  find "$dir/new/data" -path '*pg_upgrade_output.d*' -name '*.log' -exec grep -h -B2 -A6 -E '^(pg_restore: )?(error|ERROR)' {} + 2>/dev/null | head -40
  exit 1
fi
# no workers again for the comparison
echo "shared_preload_libraries = ''" | as_pg tee -a "$dir/new/data/postgresql.conf" >/dev/null
cluster_start "$dir/new" "$new_port" || exit 1
new_version=$(psql_new cams -At -c "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vms'")
[ -n "$new_version" ] && [ "$new_version" = "$old_version" ] ||
  { echo "FAIL pg_upgrade: extension version '$old_version' before, '$new_version' after"; status=1; }
got=$(psql_new from_020 -At -c "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vms'" -c "SELECT count(*) FROM vms.ledger_export")
[ "$got" = "$old_version
0" ] || { echo "FAIL pg_upgrade: the database updated from 0.2.0 after pg_upgrade: $(echo "$got" | tr '\n' ' ')"; status=1; }
snapshot psql_new cams | sort > "$dir/new.rows" || { echo "FAIL pg_upgrade: the upgraded cluster cannot be read (above)"; exit 1; }
if ! diff -u "$dir/old.rows" "$dir/new.rows" > "$dir/rows.diff"; then
  echo "FAIL pg_upgrade: the upgraded cluster holds other rows ('-' old, '+' new):"; head -40 "$dir/rows.diff"; status=1
fi
# pg_upgrade keeps role OIDs: the grant counts as before, without a rebind,
# and the dead grant stays dead
as_analyst psql_new cams > "$dir/new.analyst" 2>&1
if ! diff -u "$dir/old.analyst" "$dir/new.analyst" > "$dir/analyst.diff"; then
  echo "FAIL pg_upgrade: the analyst sees other channels after the upgrade:"; cat "$dir/analyst.diff"; status=1
fi
# the audit chain verifies and goes on; new rows take fresh ids
got=$(psql_new cams -At -q <<'SQL' 2>&1
SET client_min_messages = warning;
SELECT ok AND checked > 0 FROM vms.audit_verify();
SELECT max(id) AS last_alarm FROM vms.alarm \gset
SELECT vms.alarm_raise('44030401001320000002', 'blur', 3::smallint, 'inspection') > :last_alarm;
INSERT INTO vms.catalog_member VALUES ('44030400002160000001', '44030401001320000009');
SELECT "资源目录" FROM vms.ledger_export WHERE "监控点编码" = '44030401001320000009';
SELECT ok FROM vms.audit_verify();
-- a new system identifier: the grants count for the roles they were bound
-- to (same OIDs), but were bound "in another cluster" for
-- vms.access_grant_rebind(), which must not run here (README, Upgrading)
SELECT bool_and(g.bound_in <> s.system_identifier) FROM vms.access_grant g, pg_catalog.pg_control_system() s;
SQL
)
want='t
t
44030400002160000001
t
t'
[ "$got" = "$want" ] || { echo "FAIL pg_upgrade: audit chain, new rows or export after the upgrade: $(echo "$got" | tr '\n' ' ')"; status=1; }

# Whatever pg_dump happens to create before gbcode's operator classes today:
# nothing of the extension may need them to parse.  In a transaction that is
# rolled back, the classes are dropped and every view, SQL-standard function
# body, policy, CHECK, default, generated column and trigger WHEN clause of
# schema vms is parsed again (defaults, generated columns and CHECKs as a
# SELECT of the expression over the table).
got=$(psql_new from_020 -At -q <<'SQL' 2>&1
SET client_min_messages = warning;
BEGIN;
CREATE TEMP TABLE stmts AS
SELECT 'view ' || c.oid::regclass AS what,
       format('CREATE OR REPLACE VIEW %s AS %s', c.oid::regclass, pg_get_viewdef(c.oid)) AS stmt
  FROM pg_catalog.pg_class c WHERE c.relnamespace = 'vms'::regnamespace AND c.relkind IN ('v', 'm')
UNION ALL
SELECT 'function ' || p.oid::regprocedure, pg_get_functiondef(p.oid)
  FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'vms'::regnamespace AND p.prosqlbody IS NOT NULL
UNION ALL
SELECT 'policy ' || pol.polname || ' on ' || pol.polrelid::regclass,
       format('ALTER POLICY %I ON %s %s %s', pol.polname, pol.polrelid::regclass,
              'USING (' || pg_get_expr(pol.polqual, pol.polrelid) || ')',
              'WITH CHECK (' || pg_get_expr(pol.polwithcheck, pol.polrelid) || ')')
  FROM pg_catalog.pg_policy pol JOIN pg_catalog.pg_class c ON c.oid = pol.polrelid
 WHERE c.relnamespace = 'vms'::regnamespace
UNION ALL
SELECT 'check ' || con.conname || ' on ' || con.conrelid::regclass,
       format('SELECT %s FROM %s LIMIT 0', pg_get_expr(con.conbin, con.conrelid), con.conrelid::regclass)
  FROM pg_catalog.pg_constraint con
 WHERE con.connamespace = 'vms'::regnamespace AND con.contype = 'c' AND con.conrelid <> 0
UNION ALL
SELECT 'default ' || ad.adrelid::regclass || '.' || a.attname,
       format('SELECT %s FROM %s LIMIT 0', pg_get_expr(ad.adbin, ad.adrelid), ad.adrelid::regclass)
  FROM pg_catalog.pg_attrdef ad
  JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
  JOIN pg_catalog.pg_class c ON c.oid = ad.adrelid WHERE c.relnamespace = 'vms'::regnamespace
UNION ALL
SELECT 'trigger ' || t.tgname || ' on ' || t.tgrelid::regclass,
       regexp_replace(pg_get_triggerdef(t.oid), '^CREATE (CONSTRAINT )?TRIGGER (\S+)', 'CREATE \1TRIGGER scan_\2')
  FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'vms'::regnamespace AND NOT t.tgisinternal AND t.tgqual IS NOT NULL;
SELECT 'parsed: ' || count(*) FILTER (WHERE what LIKE 'view %') || ' views, '
       || count(*) FILTER (WHERE what LIKE 'function %') || ' function bodies, ' || count(*) || ' in all' FROM stmts;
ALTER EXTENSION vms DROP OPERATOR CLASS vms.gbcode_ops USING btree;
ALTER EXTENSION vms DROP OPERATOR FAMILY vms.gbcode_ops USING btree;
ALTER EXTENSION vms DROP OPERATOR CLASS vms.gbcode_hash_ops USING hash;
ALTER EXTENSION vms DROP OPERATOR FAMILY vms.gbcode_hash_ops USING hash;
DROP OPERATOR FAMILY vms.gbcode_ops USING btree CASCADE;
DROP OPERATOR FAMILY vms.gbcode_hash_ops USING hash CASCADE;
DO $$
DECLARE s record;
BEGIN
    FOR s IN SELECT * FROM stmts LOOP
        BEGIN
            EXECUTE s.stmt;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING '% needs gbcode''s operator class to parse: %', s.what, SQLERRM;
        END;
    END LOOP;
END $$;
ROLLBACK;
SQL
)
if ! echo "$got" | grep -q '^parsed: [1-9][0-9]* views, [1-9][0-9]* function bodies' || echo "$got" | grep -q 'WARNING\|ERROR'; then
  echo "FAIL pg_upgrade: objects that need gbcode's operator class to parse (pg_upgrade may create them before it):"; echo "$got"; status=1
fi

if [ $status = 0 ]; then
  echo "ok pg_upgrade of a vms $new_version cluster (and of a database updated from 0.2.0) keeps every row ($(grep -vc '^sequence \|^ledger_export' "$dir/new.rows") rows in $(grep -v '^sequence \|^ledger_export' "$dir/new.rows" | cut -d: -f1 | sort -u | wc -l) tables, $(grep -c '^ledger_export' "$dir/new.rows") exported channels, grants, audit chain; ${got#parsed: } parsed without gbcode's operator classes)"
  cleanup; trap - EXIT
  rm -rf "${dir:?}"
fi
exit $status
