-- Tamper-evident audit trail: append-only, each entry hash-chained to the
-- previous one (SM3 through OpenSSL where available, SHA-256 otherwise).

CREATE FUNCTION vms.chain_digest(bytea) RETURNS bytea
    AS 'MODULE_PATHNAME', 'vms_chain_digest' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.chain_digest_name() RETURNS text
    AS 'MODULE_PATHNAME', 'vms_chain_digest_name' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION vms.chain_digest(bytea) IS 'SM3 digest (SHA-256 where OpenSSL lacks SM3) used by the audit chain';
COMMENT ON FUNCTION vms.chain_digest_name() IS 'the digest vms.chain_digest uses: sm3 or sha256';

CREATE TABLE vms.audit_log (
    seq          bigint PRIMARY KEY,
    at           timestamptz NOT NULL,
    session_role text NOT NULL,
    action       text NOT NULL,
    object       text,
    detail       jsonb NOT NULL DEFAULT '{}',
    digest_alg   text NOT NULL,
    prev_hash    bytea,
    hash         bytea NOT NULL
);
REVOKE ALL ON vms.audit_log FROM PUBLIC;
COMMENT ON TABLE vms.audit_log IS 'append-only audit trail; hash = digest(prev_hash || entry), verified by vms.audit_verify()';

-- The bytes an entry's hash covers.
CREATE FUNCTION vms._audit_bytes(seq bigint, at timestamptz, session_role text, action text, object text,
                                 detail jsonb, prev_hash bytea) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN coalesce(prev_hash, '\x'::bytea)
           || convert_to(concat_ws(E'\x1f', seq::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                                   session_role, action, coalesce(object, ''), detail::text), 'UTF8');
COMMENT ON FUNCTION vms._audit_bytes(bigint, timestamptz, text, text, text, jsonb, bytea) IS 'internal: the bytes an audit hash covers';

-- Append one entry.  Entries are serialised by a lock held to commit, so
-- the chain has no forks and seq has no gaps.
-- SECURITY DEFINER: vms.audit_log is writable by its owner only.  The entry
-- records the session user, whoever calls.  Not executable by PUBLIC or the
-- duty roles (99_privileges.sql): entries come from the extension's own
-- definer functions and triggers, and from superusers.
CREATE FUNCTION vms.audit(action text, object text, detail jsonb DEFAULT '{}') RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    last vms.audit_log;
    e vms.audit_log;
BEGIN
    LOCK TABLE vms.audit_log IN SHARE ROW EXCLUSIVE MODE;
    SELECT * INTO last FROM vms.audit_log ORDER BY seq DESC LIMIT 1;
    e.seq := coalesce(last.seq, 0) + 1;
    e.at := clock_timestamp();
    e.session_role := session_user;
    e.action := audit.action;
    e.object := audit.object;
    e.detail := coalesce(audit.detail, '{}');
    e.digest_alg := vms.chain_digest_name();
    e.prev_hash := last.hash;
    e.hash := vms.chain_digest(vms._audit_bytes(e.seq, e.at, e.session_role, e.action, e.object, e.detail, e.prev_hash));
    INSERT INTO vms.audit_log VALUES (e.*);
    RETURN e.seq;
END $$;
COMMENT ON FUNCTION vms.audit(text, text, jsonb) IS 'append an entry to the hash-chained audit log (as the session user)';

CREATE FUNCTION vms._audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'vms.audit_log is append-only'
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('%s of audit entries is not allowed, for anyone.', TG_OP),
              HINT = 'Entries are added with vms.audit() and checked with vms.audit_verify().';
END $$;
COMMENT ON FUNCTION vms._audit_append_only() IS 'internal: refuses UPDATE, DELETE and TRUNCATE on the audit log';
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON vms.audit_log
    FOR EACH ROW EXECUTE FUNCTION vms._audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON vms.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION vms._audit_append_only();

-- Walk the chain in seq order and report the first entry that was edited,
-- deleted (a gap in seq, or a predecessor whose hash does not match) or
-- reordered.
-- SECURITY DEFINER: reads the whole audit log; takes no arguments and
-- returns only whether the chain holds, how many entries it checked and
-- the first bad sequence number, never entry contents.  Granted to
-- vms_auditor (99_privileges.sql).
CREATE FUNCTION vms.audit_verify()
    RETURNS TABLE (ok boolean, checked bigint, first_bad_seq bigint, problem text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    e vms.audit_log;
    prev vms.audit_log;
    n bigint := 0;
BEGIN
    FOR e IN SELECT * FROM vms.audit_log ORDER BY seq LOOP
        n := n + 1;
        IF e.seq <> coalesce(prev.seq, 0) + 1 THEN
            RETURN QUERY SELECT false, n, coalesce(prev.seq, 0) + 1,
                format('entries %s to %s are missing (deleted)', coalesce(prev.seq, 0) + 1, e.seq - 1);
            RETURN;
        END IF;
        IF e.hash IS DISTINCT FROM vms.chain_digest(vms._audit_bytes(e.seq, e.at, e.session_role, e.action,
                                                                     e.object, e.detail, e.prev_hash)) THEN
            RETURN QUERY SELECT false, n, e.seq, format('entry %s was modified', e.seq);
            RETURN;
        END IF;
        IF e.prev_hash IS DISTINCT FROM prev.hash THEN
            RETURN QUERY SELECT false, n, e.seq,
                format('entry %s does not follow entry %s (deleted, replaced or reordered)', e.seq, prev.seq);
            RETURN;
        END IF;
        prev := e;
    END LOOP;
    RETURN QUERY SELECT true, n, NULL::bigint, NULL::text;
END $$;
COMMENT ON FUNCTION vms.audit_verify() IS 'verify the audit chain; reports the first modified, deleted or reordered entry';
