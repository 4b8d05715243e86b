-- Background workers: status and control for DBAs.  Workers exist only when
-- vms is in shared_preload_libraries; the SQL API works without them.

CREATE FUNCTION vms._worker_status()
    RETURNS TABLE (name text, backend_type text, pid integer, started timestamptz, state text,
                   wanted boolean, restarts integer, counters jsonb, last_error text)
    AS 'MODULE_PATHNAME', 'vms_worker_status' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION vms._worker_status() IS 'internal: the worker slots in shared memory';

CREATE VIEW vms.worker_status AS SELECT * FROM vms._worker_status();
COMMENT ON VIEW vms.worker_status IS
    'vms workers: name, backend_type (as in pg_stat_activity), pid, started, state, wanted (false after worker_stop), restarts, counters, last_error';

CREATE FUNCTION vms.worker_stop(name text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_worker_stop' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION vms.worker_start(name text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_worker_start' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION vms.worker_restart(name text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_worker_restart' LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION vms.worker_stop(text), vms.worker_start(text), vms.worker_restart(text) FROM PUBLIC;
COMMENT ON FUNCTION vms.worker_stop(text) IS 'stop a worker and keep it stopped (superuser); true if it was running';
COMMENT ON FUNCTION vms.worker_start(text) IS 'let the launcher run a stopped worker again (superuser); true if it was stopped';
COMMENT ON FUNCTION vms.worker_restart(text) IS 'terminate a worker; the launcher starts it again (superuser)';

CREATE FUNCTION vms._wake_worker(name text) RETURNS void
    AS 'MODULE_PATHNAME', 'vms_wake_worker' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION vms._wake_worker(text) IS 'internal: wake a worker when this transaction commits';

CREATE FUNCTION vms._worker_database_check() RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_worker_database_check' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION vms._worker_database_check() FROM PUBLIC;
COMMENT ON FUNCTION vms._worker_database_check() IS
    'internal: false, with a warning, when vms is in shared_preload_libraries and this database is not vms.database, so no worker serves it';
-- CREATE EXTENSION vms (and ALTER EXTENSION vms UPDATE) in such a database warns
SELECT vms._worker_database_check();
