-- Issue 13 follow-up (session 9): a requester withdraws their own pending
-- access request (the state 'withdrawn' and its audit action existed, no
-- function set them).
-- SECURITY DEFINER: the requester takes back a pending request of their own
-- (access_request is the owner's to write).  Only the role that asked, as
-- the session user (vms.request_access records the session user), bound by
-- requester_oid and still under its name (vms.grantee_role): a role created
-- under a dropped requester's name withdraws nothing.  Audited as 'withdraw'
-- by the table's trigger.
CREATE FUNCTION vms.withdraw_request(request_id bigint, note text DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF length(note) > 1000 THEN
        RAISE EXCEPTION 'note is too long'
            USING ERRCODE = 'string_data_right_truncation',
                  DETAIL = format('The note has %s characters; at most 1000 are allowed.', length(note)),
                  HINT = 'Shorten the note; nothing was withdrawn.';
    END IF;
    UPDATE vms.access_request r
       SET state = 'withdrawn', decided_by = session_user, decided_at = now(), decision_note = note
     WHERE r.id = request_id AND r.state = 'pending'
       AND vms.grantee_role(r.requester, r.requester_oid) = (SELECT a.oid FROM pg_catalog.pg_roles a WHERE a.rolname = session_user);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'access request % is not a pending request of yours', request_id
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Only the role that asked, in its own session, withdraws a request, and only while it is pending.',
                  HINT = 'Your requests: SELECT id, state FROM vms.access_request;';
    END IF;
END $$;
COMMENT ON FUNCTION vms.withdraw_request(bigint, text) IS 'take back your own pending access request (requesters)';
REVOKE ALL ON FUNCTION vms.withdraw_request(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vms.withdraw_request(bigint, text) TO PUBLIC;
