-- vms 0.1.0 -> 0.2.0.  Every schema change of 0.2.0 appears here as well as in
-- extension/sql/ (the fresh install); test/scripts/upgrade_check.sh proves the
-- two give the same schema.  Each change sits in a section named for its issue.
\echo Use "ALTER EXTENSION vms UPDATE TO '0.2.0'" to load this file. \quit


-- issue 13: workers
-- a database the workers do not serve (not vms.database) is told so
CREATE FUNCTION vms._worker_database_check() RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_worker_database_check' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION vms._worker_database_check() FROM PUBLIC;
COMMENT ON FUNCTION vms._worker_database_check() IS
    'internal: false, with a warning, when vms is in shared_preload_libraries and this database is not vms.database, so no worker serves it';
SELECT vms._worker_database_check();
