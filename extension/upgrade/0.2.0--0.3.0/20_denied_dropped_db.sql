-- the refusal queue frees the entries of dropped databases (extension/audit_denied.c):
-- vms.audit_denied_status() reports their refusals as discarded (a new OUT column,
-- so the function is made again, with its grants)
DROP FUNCTION vms.audit_denied_status();
CREATE FUNCTION vms.audit_denied_status(OUT pending bigint, OUT claimed bigint, OUT queued bigint, OUT dropped bigint,
                                        OUT discarded bigint)
    AS 'MODULE_PATHNAME', 'vms_audit_denied_status' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION vms.audit_denied_status() IS
    'the refusal queue of this server: entries waiting for the audit log, claimed by a flush in progress; refusals queued, dropped (queue full) and discarded (queued in a database dropped before they were flushed) since the server started; frees the entries of dropped databases first; NULLs when vms is not preloaded';
REVOKE ALL ON FUNCTION vms.audit_denied_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vms.audit_denied_status() TO vms_auditor;
