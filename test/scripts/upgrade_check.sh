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

dump() {
  # (its warnings about self-referencing foreign keys of config tables are expected)
  as_pg pg_dump --schema-only --binary-upgrade --no-owner -h "$dir" -p "$port" -U postgres "$1" 2> "$dir/$1.pg_dump.log" | /usr/bin/python3 "$VMS_ROOT/test/scripts/dump_normalise.py"
}

# the rows the extension itself writes (levels, kinds, rules, schedules...),
# one line each, table by table; columns that record when a row was written
# are left out, since the two databases are made at different moments
rows() {
  cluster_psql "$dir" "$port" "$1" -At <<'SQL'
SELECT format('SELECT %L || '': '' || (to_jsonb(t) - %L::text[])::text FROM %s t',
              c.oid::regclass, coalesce(ts.cols, '{}'), c.oid::regclass)
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_class c ON c.oid = d.objid
  LEFT JOIN LATERAL (SELECT array_agg(a.attname::text) AS cols FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                        AND a.atttypid IN ('timestamptz'::regtype, 'timestamp'::regtype)) ts ON true
 WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'vms')
   AND c.relkind IN ('r', 'p')
 ORDER BY 1 \gexec
-- the tables and sequences pg_dump dumps the rows of (98_backup.sql), with their filters
SELECT 'pg_extension_config_dump: ' || u.tab::regclass::text || ' ' || quote_literal(u.cond)
  FROM pg_catalog.pg_extension e, unnest(e.extconfig, e.extcondition) AS u (tab, cond)
 WHERE e.extname = 'vms';
SQL
}

# the duty roles the extension creates, their attributes and memberships
roles() {
  cluster_psql "$dir" "$port" postgres -At -c "
    SELECT r.rolname || ' login=' || r.rolcanlogin || ' super=' || r.rolsuper || ' inherit=' || r.rolinherit
           || ' member of: ' || coalesce((SELECT string_agg(g.rolname, ',' ORDER BY g.rolname)
                                            FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
                                           WHERE m.member = r.oid), '')
      FROM pg_catalog.pg_roles r WHERE r.rolname LIKE 'vms\_%' ORDER BY 1"
}

status=0
# released install scripts are frozen: installed databases were made from them
if ! (cd "$VMS_ROOT/extension/upgrade" && sha256sum --quiet -c FROZEN.sha256); then
  echo "FAIL a released install script changed (extension/upgrade/FROZEN.sha256); ship the change in an upgrade script instead"
  status=1
fi
# the upgrades run first, in a cluster with no vms roles yet, so that the roles
# they end with are the ones the upgrade path itself creates
upgraded=()
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
  upgraded+=("$base")
done
roles > "$dir/upgraded.roles"

cluster_psql "$dir" "$port" postgres -c "CREATE DATABASE fresh" || exit 1
cluster_psql "$dir" "$port" fresh -c "CREATE EXTENSION vms CASCADE" || exit 1
dump fresh > "$dir/fresh.dump"
rows fresh | sort > "$dir/fresh.rows"
roles > "$dir/fresh.roles"
if ! diff -u "$dir/fresh.roles" "$dir/upgraded.roles" > "$dir/roles.diff"; then
  echo "FAIL the upgrades leave other vms roles than a fresh install ('-' fresh, '+' upgraded):"
  cat "$dir/roles.diff"; status=1
fi

for base in "${upgraded[@]}"; do
  db="from_${base//./_}"
  dump "$db" > "$dir/$db.dump"
  rows "$db" | sort > "$dir/$db.rows"
  if ! diff -u "$dir/fresh.dump" "$dir/$db.dump" | sed 's/\\n/\n/g' > "$dir/$db.diff"; then
    echo "FAIL upgrade $base -> $current differs from a fresh install ('-' fresh, '+' upgraded):"
    head -150 "$dir/$db.diff"
    status=1
  elif ! diff -u "$dir/fresh.rows" "$dir/$db.rows" > "$dir/$db.rows.diff"; then
    echo "FAIL upgrade $base -> $current leaves other rows than a fresh install writes ('-' fresh, '+' upgraded):"
    head -60 "$dir/$db.rows.diff"
    status=1
  else
    echo "ok upgrade $base -> $current gives the fresh schema ($(wc -l < "$dir/fresh.dump") objects, $(wc -l < "$dir/fresh.rows") rows, $(wc -l < "$dir/fresh.roles") roles compared)"
  fi
done

# 0.3.0 binds each grant to its grantee role's OID (20_grant_identity.sql);
# the upgrade binds the grants made before by name: a live role's to its
# OID, a dropped role's to nothing, so a role created later under the
# dropped role's name gets nothing, and a grant made after the upgrade binds
# itself.  The same for access requests (requester_oid, 20_request_identity.sql):
# the dropped role's pending request is bound to none, is not the new role's
# and cannot be approved.  (After the schema comparison: these grants,
# requests and roles are data.)
cluster_psql "$dir" "$port" postgres -q -c "CREATE DATABASE grants_backfill" || exit 1
got=$(cluster_psql "$dir" "$port" grants_backfill -At -q -v ON_ERROR_STOP=1 <<'SQL' 2>&1
SET client_min_messages = warning;
CREATE EXTENSION vms VERSION '0.2.0' CASCADE;
CREATE ROLE upgrade_grant_kept;
CREATE ROLE upgrade_grant_gone;
INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level)
VALUES ('upgrade_grant_kept', 'region', '4403', '{view_live}', 1), ('upgrade_grant_gone', 'all', NULL, '{view_live}', 4);
INSERT INTO vms.access_request (requester, scope_kind, scope_ref, actions, max_level, reason)
VALUES ('upgrade_grant_kept', 'region', '4403', '{view_live}', 1, 'kept'), ('upgrade_grant_gone', 'all', NULL, '{view_live}', 4, 'gone');
DROP ROLE upgrade_grant_gone;
-- a DBA's trigger states (as on a logical-replication subscriber) survive
-- the upgrade step that binds these rows with the audit triggers off
ALTER TABLE vms.access_grant ENABLE ALWAYS TRIGGER access_grant_audit;
ALTER TABLE vms.access_request ENABLE REPLICA TRIGGER access_request_audit;
ALTER EXTENSION vms UPDATE;
CREATE ROLE upgrade_grant_gone;
INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level)
VALUES ('upgrade_grant_gone', 'region', '4404', '{view_live}', 1);
SELECT format('%s %s bound=%s counts=%s', g.grantee, g.scope_kind, coalesce((g.grantee_oid = to_regrole(g.grantee))::text, 'none'),
              (vms.grantee_role(g.grantee, g.grantee_oid) IS NOT NULL)::text)
  FROM vms.access_grant g ORDER BY g.id;
SELECT format('request %s %s bound=%s its=%s', r.requester, r.scope_kind, coalesce((r.requester_oid = to_regrole(r.requester))::text, 'none'),
              (vms.grantee_role(r.requester, r.requester_oid) IS NOT NULL)::text)
  FROM vms.access_request r ORDER BY r.id;
CREATE ROLE upgrade_request_approver IN ROLE vms_approver;
SET SESSION AUTHORIZATION upgrade_request_approver;
DO $$ BEGIN
    PERFORM vms.approve_request((SELECT max(id) FROM vms.access_request));
EXCEPTION WHEN undefined_object THEN RAISE NOTICE 'gone';
END $$;
RESET SESSION AUTHORIZATION;
SELECT format('approved %s', count(*)) FROM vms.access_grant WHERE request_id IS NOT NULL;
SELECT format('audit triggers %s', string_agg(t.tgenabled::text, ' ' ORDER BY t.tgname))
  FROM pg_catalog.pg_trigger t WHERE t.tgname IN ('access_grant_audit', 'access_request_audit');
DROP ROLE upgrade_request_approver;
SQL
)
want='upgrade_grant_kept region bound=true counts=true
upgrade_grant_gone all bound=none counts=false
upgrade_grant_gone region bound=true counts=true
request upgrade_grant_kept region bound=true its=true
request upgrade_grant_gone all bound=none its=false
approved 0
audit triggers A R'
if [ "$got" = "$want" ]; then
  echo "ok upgrade binds the grants and requests made before 0.3.0 to their roles (a dropped role's to none), audit trigger states kept"
else
  echo "FAIL upgrade: grants or requests made before 0.3.0 are not bound to their roles as expected:"; echo "$got"; status=1
fi
cluster_psql "$dir" "$port" postgres -q -c "DROP DATABASE grants_backfill" -c "DROP ROLE upgrade_grant_kept, upgrade_grant_gone" >/dev/null
exit $status
