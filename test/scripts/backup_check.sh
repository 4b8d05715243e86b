#!/usr/bin/env bash
# Backup check: a pg_dump of a vms database, restored with pg_restore into an
# empty database, gives back every row of every table the extension owns.
#
# The vms tables are members of the extension; pg_dump dumps a member's rows
# only if it is marked with pg_extension_config_dump() (98_backup.sql).  This
# fills a database through the product's own functions (devices, channels
# with geometry, catalogue, tags, a security assignment, grants, audit rows
# and an archived audit segment, alarms, a work order, a governance run, a
# VIID partition made at run time, a user row in a seeded table), dumps it
# with pg_dump -Fc, restores it with pg_restore into a new empty database, and
# compares, table by table, every row (to_jsonb, sorted) of every table in
# schema vms, and the last value of every sequence.  Then the audit hash chain
# must verify in the restored database and a new insert must not collide.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

port=${VMS_BACKUP_PORT:-${VMS_UPGRADE_PORT:-54339}}
dir=$(make_run_dir backup-cluster)
cluster_stop "$dir"; rm -rf "$dir/data"
# no workers: nothing may write to the databases while they are compared
cluster_start "$dir" "$port" "shared_preload_libraries = ''"
trap 'cluster_stop "$dir"' EXIT
psql_() { cluster_psql "$dir" "$port" "$@"; }

psql_ postgres -c "CREATE DATABASE src" -c "CREATE DATABASE dst" || exit 1
psql_ src -c "SET client_min_messages = warning" -c "CREATE EXTENSION vms CASCADE" || exit 1
if ! psql_ src -v abs_srcdir="$VMS_ROOT" > "$dir/fill.log" 2>&1 <<'SQL'
SET client_min_messages = warning;
\i :abs_srcdir/sql/fixtures/futian.sql
\i :abs_srcdir/sql/fixtures/futian_tags.sql
CREATE ROLE backup_analyst LOGIN IN ROLE vms_analyst;
CREATE ROLE backup_admin LOGIN IN ROLE vms_grant_admin;
INSERT INTO vms.security_assignment (scope_kind, scope_ref, level) VALUES ('catalog', '44030400002160000001', 3);
SET SESSION AUTHORIZATION backup_admin;
SELECT vms.grant_access('backup_analyst', 'channel', '44030401001320000001', '{view_live,playback}', 3::smallint);
RESET SESSION AUTHORIZATION;
SELECT vms.alarm_raise('44030401001320000001', 'black_screen', 2::smallint, 'inspection', '{"luma": 3.1}') AS alarm_id \gset
SELECT vms.alarm_raise('44030401001320000002', 'blur', 3::smallint, 'inspection');
SELECT vms.work_order_open(:alarm_id, 'repair crew 1');
SELECT vms.governance_run();
SELECT vms.audit_archive_before(clock_timestamp());
SET SESSION AUTHORIZATION backup_admin;
SELECT vms.grant_access('backup_analyst', 'all', NULL, '{view_live}', 1::smallint);
RESET SESSION AUTHORIZATION;
-- a pending access request (bound to its requester's OID, requester_oid)
SET SESSION AUTHORIZATION backup_analyst;
SELECT vms.request_access('region', '44030401', '{playback}', 2::smallint, '回放取证');
RESET SESSION AUTHORIZATION;
-- a row of the operator's own in a seeded table is dumped; the seeded ones are not
INSERT INTO vms.point_type VALUES ('thermal', '热成像', 'thermal camera');
-- a partition made at run time, with a row in it
SELECT vms._viid_record_partition('2026-03-15 12:00+00');
INSERT INTO vms.viid_record (kind, object_id, device_id, captured_at, client_id, doc)
VALUES ('Person', '440304010013200000010220260315120000000010600001', '44030401001320000001',
        '2026-03-15 12:00+00', '44030401005030000001', '{"PersonID": "x"}');
SQL
then
  echo "FAIL backup: filling the source database failed"; tail -20 "$dir/fill.log"; exit 1
fi

# every table of schema vms (members and run-time partitions), each row as
# json, sorted; and every sequence's state
snapshot() {
  vms_snapshot_sql | psql_ "$1" -At
}
snapshot src | sort > "$dir/src.rows" || exit 1
status=0
# the source must hold data in the main tables, else the comparison proves little
for t in device channel catalog_node catalog_member tag channel_tag security_assignment access_grant access_request \
         audit_log audit_archive alarm alarm_event work_order governance_run governance_task \
         viid_record_2026m03 point_type ledger_history; do
  if ! grep -q "^vms\.$t: " "$dir/src.rows"; then echo "FAIL backup: the source has no rows in vms.$t"; status=1; fi
done

as_pg pg_dump -Fc -h "$dir" -p "$port" -U postgres -f "$dir/src.dump" src 2> "$dir/dump.log" || { cat "$dir/dump.log"; exit 1; }
# an empty database, as a restore meets it; the dump creates the extensions.
# Two steps (README, Operations: Backups): the tables' triggers (ledger
# history, audit, cluster sync...) exist as soon as CREATE EXTENSION has run,
# and must not fire on the restored rows; pg_restore disables them only in a
# data-only restore.  The monthly VIID partitions are not members: pg_dump
# writes them with CREATE TABLE + ATTACH PARTITION, and the attach already
# makes their primary key from the parent's, which CREATE EXTENSION made, so
# their own index and constraint entries are left out of the list.
as_pg pg_restore -l "$dir/src.dump" | grep -Ev ' (CONSTRAINT|INDEX|INDEX ATTACH) vms viid_(record|image)_[0-9]{4}m[0-9]{2} ' > "$dir/src.list"
if ! { as_pg pg_restore -L "$dir/src.list" --schema-only --exit-on-error -h "$dir" -p "$port" -U postgres -d dst "$dir/src.dump" &&
       as_pg pg_restore -L "$dir/src.list" --data-only --disable-triggers --exit-on-error -h "$dir" -p "$port" -U postgres -d dst "$dir/src.dump"; } \
     > "$dir/restore.log" 2>&1; then
  echo "FAIL backup: pg_restore into an empty database failed:"; tail -20 "$dir/restore.log"; exit 1
fi
snapshot dst | sort > "$dir/dst.rows" || exit 1
if ! diff -u "$dir/src.rows" "$dir/dst.rows" > "$dir/rows.diff"; then
  echo "FAIL backup: the restored database differs ('-' dumped, '+' restored):"; head -60 "$dir/rows.diff"; status=1
fi

# the audit chain verifies after the restore, and goes on
got=$(psql_ dst -At -c "SELECT ok, checked > 0 FROM vms.audit_verify()")
[ "$got" = "t|t" ] || { echo "FAIL backup: vms.audit_verify() after restore: $got"; status=1; }
# the restored grants keep their roles' OIDs (grantee_oid; the same cluster,
# so the same roles): the analyst's grants still count in the restored
# database, and vms.access_grant_rebind() finds nothing to bind again; so
# do the requests (requester_oid): the analyst still sees its own pending
# request, and vms.access_request_rebind() finds nothing either (every
# grant and request was bound in this cluster: bound_in, restored as dumped,
# is its system identifier, which is why the rebinds leave them alone)
got=$(psql_ dst -At -q <<'SQL'
SELECT count(*) > 0 AND bool_and(b.bound_in = (SELECT system_identifier FROM pg_control_system()))
  FROM (SELECT bound_in FROM vms.access_grant UNION ALL SELECT bound_in FROM vms.access_request) b;
SELECT count(*) FROM vms.access_grant_rebind();
SELECT count(*) FROM vms.access_request_rebind();
SET SESSION AUTHORIZATION backup_analyst;
SELECT count(*) FROM vms.channel;
SELECT count(*) FROM vms.access_request WHERE state = 'pending';
SQL
)
want=$(psql_ src -At -q -c "SET SESSION AUTHORIZATION backup_analyst" -c "SELECT count(*) FROM vms.channel")
[ "$got" = "t
0
0
$want
1" ] && [ "$want" -gt 0 ] || { echo "FAIL backup: the restored grants or requests do not count as before: bound here, rebound grants, requests, visible channels, own pending requests '$got', channels before '$want'"; status=1; }
# new rows take fresh ids: no collision with a restored one
if ! psql_ dst -At > "$dir/after.log" 2>&1 <<'SQL'
SET client_min_messages = warning;
SELECT vms.alarm_raise('44030401001320000003', 'blur', 3::smallint, 'inspection');
SELECT vms.tag_create('scenario', '医院');
SET SESSION AUTHORIZATION backup_admin;
SELECT vms.grant_access('backup_analyst', 'channel', '44030401001320000002', '{playback}', 2::smallint);
RESET SESSION AUTHORIZATION;
SELECT vms.governance_run();
INSERT INTO vms.device (code, name) VALUES ('44030401001180000002', '园岭NVR2');
SELECT ok FROM vms.audit_verify();
SQL
then
  echo "FAIL backup: new rows after the restore:"; tail -5 "$dir/after.log"; status=1
elif [ "$(tail -1 "$dir/after.log")" != t ]; then
  echo "FAIL backup: the audit chain does not verify after new entries: $(tail -1 "$dir/after.log")"; status=1
fi

if [ $status = 0 ]; then
  echo "ok backup pg_dump -Fc / pg_restore gives back every row ($(grep -vc '^sequence ' "$dir/src.rows") rows in $(cut -d: -f1 "$dir/src.rows" | grep -v '^sequence ' | sort -u | wc -l) tables, $(grep -c '^sequence ' "$dir/src.rows") sequences compared)"
fi
exit $status
