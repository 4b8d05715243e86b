-- Access requests bind to the role that made them (a security fix, the
-- sibling of 20_grant_identity.sql, which it follows in name order and whose
-- vms.grantee_role it uses).  vms.access_request named its requester only by
-- name, so when that role was dropped and a new role created under the same
-- name, approving the old role's pending request granted the new role what
-- the old one asked for, the new role saw the old one's requests (row-level
-- security), and rejecting a dropped role's request raised "role does not
-- exist".  vms.access_request.requester_oid now records the requester's OID,
-- set from the name by a trigger, and every decision follows
-- vms.grantee_role(requester, requester_oid).
ALTER TABLE vms.access_request ADD COLUMN requester_oid oid;
ALTER TABLE vms.access_request ADD COLUMN bound_in bigint;
COMMENT ON COLUMN vms.access_request.requester_oid IS
    'the OID of the requester role when the request was made (set from requester by a trigger, never by the caller); the request is that role''s only while requester still names it (vms.grantee_role)';
COMMENT ON COLUMN vms.access_request.bound_in IS
    'the system identifier of the cluster the request was bound in (set with requester_oid by the same trigger); vms.access_request_rebind binds again only requests bound in another cluster';
COMMENT ON FUNCTION vms.grantee_role(name, oid) IS
    'the role a grant (grantee, grantee_oid) counts for, or a request (requester, requester_oid) is of: the OID while the name still names that role, else NULL (the role was dropped, recreated or renamed)';

-- The existing requests are bound to the roles their names name now: a
-- dropped role's request gets NULL, cannot be approved and is nobody's own.
-- (A role already recreated under a dropped role's name before this upgrade
-- cannot be told from the original: README, Permissions.)  Not audited as
-- request changes: no request changes (the audit trigger is left as the DBA
-- had set it; vms._trigger_set: 20_grant_identity.sql).
DO $$
DECLARE
    saved constant "char" := vms._trigger_set('vms.access_request', 'access_request_audit', 'D');
BEGIN
    UPDATE vms.access_request SET requester_oid = pg_catalog.to_regrole(pg_catalog.quote_ident(requester)),
                                  bound_in = (SELECT s.system_identifier FROM pg_catalog.pg_control_system() s);
    PERFORM vms._trigger_set('vms.access_request', 'access_request_audit', saved);
END $$;

-- A request binds to the role that made it, as a grant binds to its grantee
-- (above): requester_oid is set from requester when the request is made,
-- and the request is that role's only while vms.grantee_role(requester,
-- requester_oid) names it.  A role created later under a dropped role's
-- name neither sees the old role's requests nor gets them approved into
-- grants of its own.  A sibling of vms._grant_bind_role (PL/pgSQL cannot
-- name a row's columns from trigger arguments without a round trip through
-- jsonb): an update keeps the binding unless it changes the requester.
CREATE FUNCTION vms._request_bind_role() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.requester IS NOT DISTINCT FROM OLD.requester THEN
        NEW.requester_oid := OLD.requester_oid;
        NEW.bound_in := OLD.bound_in;
    ELSE
        NEW.requester_oid := pg_catalog.to_regrole(pg_catalog.quote_ident(NEW.requester));
        NEW.bound_in := (SELECT s.system_identifier FROM pg_catalog.pg_control_system() s);
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._request_bind_role() IS 'internal: binds an access request to the OID of its requester role when it is made (or its requester changes)';
CREATE TRIGGER access_request_role BEFORE INSERT OR UPDATE OF requester, requester_oid, bound_in ON vms.access_request
    FOR EACH ROW EXECUTE FUNCTION vms._request_bind_role();

-- The same for the pending requests after a restore into another cluster:
-- they come with the old cluster's OIDs and cannot be approved until the
-- owner binds them again by name.  Decided requests stay as they are (their
-- grants are bound by vms.access_grant_rebind); a pending request of a role
-- dropped before the dump cannot be told from the others, so such requests
-- are rejected before it (README).  Only requests bound in another cluster
-- (bound_in) are touched, as for grants.  Returns the requests whose role it
-- changed; each is audited as a request change.
CREATE FUNCTION vms.access_request_rebind()
    RETURNS TABLE (request_id bigint, requester name, old_oid oid, new_oid oid)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    here constant bigint := (SELECT s.system_identifier FROM pg_catalog.pg_control_system() s);
    saved "char";
BEGIN
    -- the trigger keeps a request's binding on every update but of its requester: off
    -- for this update, then back in the state it was in (ENABLE ALWAYS too)
    saved := vms._trigger_set('vms.access_request', 'access_request_role', 'D');
    RETURN QUERY
    WITH old AS (
        SELECT r.id, r.requester_oid FROM vms.access_request r
         WHERE r.state = 'pending' AND r.requester_oid IS NOT NULL AND r.bound_in IS DISTINCT FROM here
           FOR UPDATE),
    bound AS (
        UPDATE vms.access_request r SET requester_oid = pg_catalog.to_regrole(pg_catalog.quote_ident(r.requester)), bound_in = here
          FROM old WHERE r.id = old.id
        RETURNING r.id, r.requester, old.requester_oid AS old_oid, r.requester_oid AS new_oid)
    SELECT b.id, b.requester, b.old_oid, b.new_oid FROM bound b WHERE b.old_oid IS DISTINCT FROM b.new_oid;
    PERFORM vms._trigger_set('vms.access_request', 'access_request_role', saved);
END $$;
COMMENT ON FUNCTION vms.access_request_rebind() IS
    'after a restore into another cluster: bind the pending access requests again to the roles their requester names name there; returns the requests changed';

-- SECURITY DEFINER: turns a request into a grant.  Checks: the session user
-- holds vms_approver, the request is pending, the role that made it still
-- has its name (vms.grantee_role(requester, requester_oid): not dropped,
-- recreated or renamed since), and the session user is not (a member of)
-- that role; the grant copies the request unchanged and binds to that role.
CREATE OR REPLACE FUNCTION vms.approve_request(request_id bigint, note text DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    r vms.access_request;
    who oid;
    gid bigint;
    bound oid;
BEGIN
    PERFORM vms._require_role('vms_approver');
    SELECT * INTO r FROM vms.access_request WHERE id = request_id FOR UPDATE;
    IF NOT FOUND OR r.state <> 'pending' THEN
        RAISE EXCEPTION 'access request % is not pending', request_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
    who := vms.grantee_role(r.requester, r.requester_oid);
    IF who IS NULL THEN
        RAISE EXCEPTION 'role of access request % no longer exists', request_id
            USING ERRCODE = 'undefined_object',
                  DETAIL = format('Request %s was made by role %s, which %s.', request_id, r.requester,
                                  coalesce('has been renamed to ' || (SELECT a.rolname FROM pg_catalog.pg_roles a WHERE a.oid = r.requester_oid),
                                           'was dropped' || CASE WHEN pg_catalog.to_regrole(pg_catalog.quote_ident(r.requester)) IS NOT NULL
                                                                 THEN '; the role of that name now is another role' ELSE '' END)),
                  HINT = 'Reject it with vms.reject_request(); whoever needs the access asks for it with vms.request_access().';
    END IF;
    IF pg_has_role(session_user, who, 'MEMBER') THEN
        RAISE EXCEPTION 'nobody approves their own request'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('Request %s was made by %s.', request_id, r.requester),
                  HINT = 'Another approver must decide it.';
    END IF;
    INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level, valid_from, valid_until, request_id, note)
    VALUES (r.requester, r.scope_kind, r.scope_ref, r.actions, r.max_level, r.valid_from, r.valid_until, r.id, note)
    RETURNING id, grantee_oid INTO gid, bound;
    -- the grant binds by name: a role dropped and created again under it
    -- since the check above must not get it
    IF bound IS DISTINCT FROM who THEN
        RAISE EXCEPTION 'role of access request % changed while it was approved', request_id
            USING ERRCODE = 'serialization_failure',
                  DETAIL = format('Role %s was dropped and created again meanwhile.', r.requester),
                  HINT = 'Try again.';
    END IF;
    UPDATE vms.access_request SET state = 'approved', decided_by = session_user, decided_at = now(),
                                  decision_note = note, grant_id = gid
     WHERE id = request_id;
    RETURN gid;
END $$;
COMMENT ON FUNCTION vms.approve_request(bigint, text) IS 'approve a pending request (approvers; never their own); creates the grant';

-- SECURITY DEFINER: updates vms.access_request.  Checks: the session user
-- holds vms_approver, gives a note, and does not decide its own request:
-- is not (a member of) the role that made it, by its OID whatever its name
-- now (a dropped role's request can be rejected by anyone else; asked by
-- name, pg_has_role raised "role does not exist").
CREATE OR REPLACE FUNCTION vms.reject_request(request_id bigint, note text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM vms._require_role('vms_approver');
    PERFORM vms._require_reason(note, 'rejecting a request');
    UPDATE vms.access_request SET state = 'rejected', decided_by = session_user, decided_at = now(), decision_note = note
     WHERE id = request_id AND state = 'pending' AND NOT coalesce(pg_has_role(session_user, requester_oid, 'MEMBER'), false);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'access request % is not pending, or is your own', request_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION vms.reject_request(bigint, text) IS 'reject a pending request with a note (approvers)';

ALTER POLICY access_request_view ON vms.access_request
    USING (pg_has_role(current_user, vms.grantee_role(requester, requester_oid), 'MEMBER') OR pg_has_role(current_user, 'vms_approver', 'MEMBER')
           OR pg_has_role(current_user, 'vms_auditor', 'MEMBER'));

-- privileges (99_privileges.sql): the trigger function is internal,
-- vms.access_request_rebind the owner's; approve_request and reject_request
-- keep theirs (CREATE OR REPLACE)
REVOKE ALL ON FUNCTION vms._request_bind_role() FROM PUBLIC;
REVOKE ALL ON FUNCTION vms.access_request_rebind() FROM PUBLIC;
