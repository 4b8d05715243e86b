-- Refused rights in the audit log (a fix, not an issue's feature): until
-- 0.3.0 vms.exercise_right wrote the "denied_" entry and then raised 42501,
-- which rolled the entry back, so no refusal was ever audited.  Now the
-- refusal goes to a queue in shared memory (extension/audit_denied.c) that
-- vms.audit_flush_denied() empties into the audit log; the notifier worker
-- calls it when woken.  vms.audit keeps its behaviour through vms._audit_as.
-- An entry for a given session role: vms.audit's (the session user's own),
-- and the refusals queued past their rollback (vms.audit_flush_denied).
CREATE FUNCTION vms._audit_as(session_role text, action text, object text, detail jsonb DEFAULT '{}') RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    last vms.audit_log;
    e vms.audit_log;
BEGIN
    LOCK TABLE vms.audit_log IN SHARE ROW EXCLUSIVE MODE;
    SELECT * INTO last FROM vms.audit_log ORDER BY seq DESC LIMIT 1;
    IF NOT FOUND THEN
        -- every entry archived: the chain goes on from the last archived one
        SELECT a.last_seq, a.last_hash INTO last.seq, last.hash FROM vms.audit_archive a ORDER BY a.last_seq DESC LIMIT 1;
    END IF;
    e.seq := coalesce(last.seq, 0) + 1;
    e.at := clock_timestamp();
    e.session_role := _audit_as.session_role;
    e.action := _audit_as.action;
    e.object := _audit_as.object;
    e.detail := coalesce(_audit_as.detail, '{}');
    e.digest_alg := vms.chain_digest_name();
    e.prev_hash := last.hash;
    e.hash := vms.chain_digest(vms._audit_bytes(e.seq, e.at, e.session_role, e.action, e.object, e.detail, e.prev_hash));
    INSERT INTO vms.audit_log VALUES (e.*);
    RETURN e.seq;
END $$;
COMMENT ON FUNCTION vms._audit_as(text, text, text, jsonb) IS 'internal: append an entry to the hash-chained audit log for a given session role';

CREATE OR REPLACE FUNCTION vms.audit(action text, object text, detail jsonb DEFAULT '{}') RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    RETURN vms._audit_as(session_user, action, object, detail);
END $$;
COMMENT ON FUNCTION vms.audit(text, text, jsonb) IS 'append an entry to the hash-chained audit log (as the session user)';

-- Refusals.  vms.exercise_right raises 42501 for a right the role lacks,
-- which rolls back whatever its transaction wrote, an audit entry too; so a
-- refusal is recorded outside the transaction (extension/audit_denied.c):
-- in the server log at once and in a bounded queue in shared memory, which
-- vms.audit_flush_denied() empties into the audit log (the notifier worker
-- calls it as soon as it is woken, in the database it serves; elsewhere run
-- it from cron).  Entries are claimed until the flushing transaction ends,
-- so a flush that rolls back loses nothing.
CREATE FUNCTION vms._audit_denied(action text, object text, detail jsonb) RETURNS void
    AS 'MODULE_PATHNAME', 'vms_audit_denied' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION vms._audit_denied(text, text, jsonb) IS
    'internal: record a refusal outside the transaction (server log now, the audit log at the next vms.audit_flush_denied)';
CREATE FUNCTION vms._audit_denied_take()
    RETURNS TABLE (at timestamptz, last_at timestamptz, repeats integer, session_role text, action text, object text, detail jsonb)
    AS 'MODULE_PATHNAME', 'vms_audit_denied_take' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION vms._audit_denied_take() IS
    'internal: the queued refusals of this database, oldest first (repeats: how many refusals an entry stands for, the first at at, the last at last_at), claimed until the transaction ends (freed at commit, queued again at rollback)';
CREATE FUNCTION vms.audit_flush_denied() RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    d record;
    n bigint := 0;
BEGIN
    -- the chain's lock first, without waiting: a transaction holding it
    -- (anyone's audited call, until it ends) must not stall the notifier,
    -- which calls this; the refusals stay queued for the next flush
    BEGIN
        LOCK TABLE vms.audit_log IN SHARE ROW EXCLUSIVE MODE NOWAIT;
    EXCEPTION WHEN lock_not_available THEN
        RETURN 0;
    END;
    FOR d IN SELECT * FROM vms._audit_denied_take() LOOP
        IF d.action = 'denied_more' THEN
            PERFORM vms._audit_as(d.session_role, d.action, NULL,
                                  jsonb_build_object('refusals', d.repeats, 'first_attempt_at', d.at, 'last_attempt_at', d.last_at,
                                                     'why', CASE WHEN d.session_role = '*'
                                                                 THEN 'refusals past this database''s share of the queue, any role'
                                                                 ELSE 'refusals past this role''s share of the queue' END));
        ELSE
            PERFORM vms._audit_as(d.session_role, d.action, d.object,
                                  d.detail || jsonb_build_object('attempted_at', d.at)
                                  || CASE WHEN d.repeats > 1 THEN jsonb_build_object('repeats', d.repeats, 'last_attempt_at', d.last_at)
                                          ELSE '{}' END);
        END IF;
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.audit_flush_denied() IS
    'write the refusals queued in shared memory for this database into the audit log (as the refused session role, detail.attempted_at the time of the refusal, repeats and last_attempt_at for a repeated one; denied_more for refusals past a role''s or the database''s share of the queue); returns how many entries, 0 without waiting while another transaction holds the audit log''s lock; the notifier worker does this when woken';
CREATE FUNCTION vms.audit_denied_status(OUT pending bigint, OUT claimed bigint, OUT queued bigint, OUT dropped bigint)
    AS 'MODULE_PATHNAME', 'vms_audit_denied_status' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION vms.audit_denied_status() IS
    'the refusal queue of this server: entries waiting for the audit log, claimed by a flush in progress, queued and dropped (queue full) since the server started; NULLs when vms is not preloaded';

CREATE OR REPLACE FUNCTION vms.exercise_right(action text, channel vms.gbcode, detail jsonb DEFAULT '{}') RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    acting name := pg_catalog.pg_get_userbyid(vms._acting_role());
BEGIN
    IF NOT vms._can_for(acting, action, channel) THEN
        -- outside this transaction, which the error rolls back
        PERFORM vms._audit_denied('denied_' || action, channel::text, detail);
        RAISE EXCEPTION 'permission denied to % channel %', replace(action, '_', ' '), channel
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Ask for access with vms.request_access().';
    END IF;
    UPDATE vms.access_grant g SET last_used_at = now()
     WHERE g.revoked_at IS NULL AND pg_has_role(acting, vms.grantee_role(g.grantee, g.grantee_oid), 'MEMBER') AND action = ANY (g.actions);
    RETURN vms.audit(action, channel::text, detail);
END $$;
COMMENT ON FUNCTION vms.exercise_right(text, vms.gbcode, jsonb) IS 'use a right on a channel: refused (42501, audited) without a grant, else audited; returns the audit entry';

REVOKE ALL ON FUNCTION vms._audit_as(text, text, text, jsonb), vms._audit_denied(text, text, jsonb),
    vms._audit_denied_take(), vms.audit_flush_denied(), vms.audit_denied_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vms.audit_denied_status() TO vms_auditor;
