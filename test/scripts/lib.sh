# Shared shell helpers for the demo, tests and benchmarks: a throwaway
# PostgreSQL cluster under the project's .run/ folder, run by a non-root user.
# shellcheck shell=bash

VMS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG_BINDIR=$("${PG_CONFIG:-pg_config}" --bindir)
PGXS_DIR=$("${PG_CONFIG:-pg_config}" --pkglibdir)/pgxs
# VMS_RUN_DIR lets two runs on one machine keep apart
RUN_DIR="${VMS_RUN_DIR:-$VMS_ROOT/.run}"
# PostgreSQL refuses to run as root: as root, servers and clients run as postgres.
if [ "$(id -u)" = 0 ]; then PG_OS_USER=postgres; else PG_OS_USER=$(id -un); fi

as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$PG_OS_USER" -- env PATH="$PG_BINDIR:$PATH" "$@"
  else
    env PATH="$PG_BINDIR:$PATH" "$@"
  fi
}

# make_run_dir SUBDIR: a folder under .run/ that the server user owns
make_run_dir() {
  mkdir -p "$RUN_DIR/$1"
  [ "$(id -u)" = 0 ] && chown -R "$PG_OS_USER" "$RUN_DIR"
  # the server user must be able to reach the project folder
  local d="$VMS_ROOT"
  while [ "$d" != / ]; do
    if [ "$(id -u)" = 0 ] && ! runuser -u "$PG_OS_USER" -- test -x "$d"; then chmod o+x "$d"; fi
    d=$(dirname "$d")
  done
  echo "$RUN_DIR/$1"
}

# cluster_start DIR PORT [postgresql.conf lines...]
cluster_start() {
  local dir=$1 port=$2; shift 2
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg initdb -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 --auth=trust >/dev/null
    {
      echo "port = $port"
      echo "listen_addresses = '127.0.0.1'"
      echo "unix_socket_directories = '$dir'"
      echo "shared_preload_libraries = 'vms'"
      echo "max_worker_processes = 32"
      echo "fsync = off"
      echo "log_min_messages = warning"
      for line in "$@"; do echo "$line"; done
    } | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
  fi
  if ! as_pg pg_ctl -D "$dir/data" status >/dev/null 2>&1; then
    if [ -n "${CLUSTER_ENV[*]:-}" ]; then
      # CLUSTER_ENV (NAME=VALUE words) reaches the postmaster only, through a
      # wrapper pg_ctl starts (pg_ctl -p): with LD_PRELOAD on pg_ctl itself,
      # libfaketime in pg_ctl made the shared clock's semaphore and removed
      # it when pg_ctl exited, so a program the server ran later (COPY TO
      # PROGRAM) could not open it and exited 1, now and then
      local wrapper="$dir/postgres-env"
      { echo '#!/bin/sh'; printf 'exec env'; printf ' %q' "${CLUSTER_ENV[@]}"; printf ' %q "$@"\n' "$PG_BINDIR/postgres"; } > "$wrapper"
      chmod 755 "$wrapper"
      as_pg pg_ctl -D "$dir/data" -p "$wrapper" -l "$dir/server.log" -w -t 60 start >/dev/null
    else
      as_pg pg_ctl -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
    fi
  fi
}

cluster_stop() {
  local dir=$1
  if [ -f "$dir/data/PG_VERSION" ] && as_pg pg_ctl -D "$dir/data" status >/dev/null 2>&1; then
    as_pg pg_ctl -D "$dir/data" -m fast -w stop >/dev/null
  fi
}

# cluster_psql DIR PORT DB [psql args...]
cluster_psql() {
  local dir=$1 port=$2 db=$3; shift 3
  as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d "$db" "$@"
}

# the SQL (for psql -At) that prints every row of every table of schema vms
# (members and run-time partitions) as json, and every sequence's state, a
# line each: what the backup and pg_upgrade checks compare (sorted)
vms_snapshot_sql() {
  cat <<'SQL'
SELECT format('SELECT %L || '': '' || to_jsonb(t)::text FROM ONLY %s t', c.oid::regclass, c.oid::regclass)
  FROM pg_catalog.pg_class c
 WHERE c.relnamespace = 'vms'::regnamespace AND c.relkind = 'r'
 ORDER BY 1 \gexec
SELECT 'sequence ' || s.schemaname || '.' || s.sequencename || ': ' || coalesce(s.last_value::text, 'unused')
  FROM pg_catalog.pg_sequences s WHERE s.schemaname = 'vms';
SQL
}
