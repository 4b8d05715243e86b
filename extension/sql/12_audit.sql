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

CREATE FUNCTION vms._audit_chain_head(OUT seq bigint, OUT hash bytea)
    AS 'MODULE_PATHNAME', 'vms_audit_chain_head' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION vms._audit_chain_head() IS
    'internal: the audit chain''s last entry (seq, hash; the last archived one when every entry is archived) as committed now, read through the latest snapshot (called holding the chain''s lock)';

-- Append one entry.  Entries are serialised by a lock held to commit, so
-- the chain has no forks and seq has no gaps.  The one append: vms.audit,
-- vms.audit_flush_denied and the commit-time append of pending entries
-- (vms._audit_pending_append) all come here.
-- SECURITY DEFINER: vms.audit_log is writable by its owner only.  The entry
-- records the session user, whoever calls.  Not executable by PUBLIC or the
-- duty roles (99_privileges.sql): entries come from the extension's own
-- definer functions and triggers, and from superusers.
-- An entry for a given session role: vms.audit's (the session user's own),
-- and the refusals queued past their rollback (vms.audit_flush_denied).
CREATE FUNCTION vms._audit_as(session_role text, action text, object text, detail jsonb DEFAULT '{}') RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    last vms.audit_log;
    e vms.audit_log;
BEGIN
    LOCK TABLE vms.audit_log IN SHARE ROW EXCLUSIVE MODE;
    -- the last entry as committed now, whatever the isolation level (every
    -- entry archived: the last archived one)
    SELECT h.seq, h.hash INTO last.seq, last.hash FROM vms._audit_chain_head() h;
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

CREATE FUNCTION vms.audit(action text, object text, detail jsonb DEFAULT '{}') RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    RETURN vms._audit_as(session_user, action, object, detail);
END $$;
COMMENT ON FUNCTION vms.audit(text, text, jsonb) IS 'append an entry to the hash-chained audit log (as the session user)';

-- Entries whose seq nobody needs at once (the ledger history trigger's, one
-- per statement that changed vms.device or vms.channel) are appended at
-- commit, not at the statement: appending takes the chain's lock until the
-- transaction ends, and a long import that edits the ledger early would
-- otherwise make every other audited action in the city (every
-- vms.exercise_right) wait for it.  vms._audit_later queues the entry here;
-- the deferred trigger below appends this transaction's queued entries in
-- order at commit, through vms._audit_as, and deletes them.  So the lock is
-- held from that trigger to the end of the commit only, the entry's `at` is
-- the time it is appended (at stays in seq order), and a rolled-back
-- transaction or subtransaction leaves no entry.  Others' queued rows are
-- invisible and never committed: the table is empty between transactions.
CREATE TABLE vms.audit_pending (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_role text NOT NULL,
    action       text NOT NULL,
    object       text,
    detail       jsonb NOT NULL DEFAULT '{}',
    first        boolean NOT NULL
);
REVOKE ALL ON vms.audit_pending FROM PUBLIC;
COMMENT ON TABLE vms.audit_pending IS
    'internal: audit entries queued by the ledger history trigger, appended to vms.audit_log at the commit of their transaction (and deleted then): empty between transactions';

-- SECURITY DEFINER: vms.audit_pending is the owner's.  Records the session
-- user, as vms.audit does.  first: no entry of this transaction is queued
-- yet, so the row's insert queues the commit-time append (one trigger
-- event per transaction, not one per entry).
CREATE FUNCTION vms._audit_later(action text, object text, detail jsonb DEFAULT '{}') RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO vms.audit_pending (session_role, action, object, detail, first)
    VALUES (session_user, _audit_later.action, _audit_later.object, coalesce(_audit_later.detail, '{}'),
            NOT EXISTS (SELECT 1 FROM vms.audit_pending));
END $$;
COMMENT ON FUNCTION vms._audit_later(text, text, jsonb) IS
    'internal: queue an audit entry (as the session user) to be appended to the chain when the transaction commits';

CREATE FUNCTION vms._audit_pending_append() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    p vms.audit_pending;
BEGIN
    FOR p IN SELECT * FROM vms.audit_pending ORDER BY id LOOP
        PERFORM vms._audit_as(p.session_role, p.action, p.object, p.detail);
        DELETE FROM vms.audit_pending q WHERE q.id = p.id;
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._audit_pending_append() IS
    'internal: at commit, appends the audit entries this transaction queued (vms._audit_later) to the chain in order and deletes them';
-- ALWAYS: a queued entry is appended whatever session_replication_role says
CREATE CONSTRAINT TRIGGER audit_pending_append AFTER INSERT ON vms.audit_pending
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.first)
    EXECUTE FUNCTION vms._audit_pending_append();
ALTER TABLE vms.audit_pending ENABLE ALWAYS TRIGGER audit_pending_append;

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
CREATE FUNCTION vms.audit_denied_status(OUT pending bigint, OUT claimed bigint, OUT queued bigint, OUT dropped bigint,
                                        OUT discarded bigint)
    AS 'MODULE_PATHNAME', 'vms_audit_denied_status' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION vms.audit_denied_status() IS
    'the refusal queue of this server: entries waiting for the audit log, claimed by a flush in progress; refusals queued, dropped (queue full) and discarded (queued in a database dropped before they were flushed) since the server started; frees the entries of dropped databases first; NULLs when vms is not preloaded';

CREATE FUNCTION vms._audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    -- an entry archived with its hash anchors (vms.audit_archive_before)
    -- may leave the live log: the chain is proved through the archive
    IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW'
       AND EXISTS (SELECT 1 FROM vms.audit_archive a WHERE OLD.seq BETWEEN a.first_seq AND a.last_seq) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'vms.audit_log is append-only'
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('%s of audit entries is not allowed, for anyone.', TG_OP),
              HINT = 'Entries are added with vms.audit() and checked with vms.audit_verify(); old ones are archived with vms.audit_archive_before().';
END $$;
COMMENT ON FUNCTION vms._audit_append_only() IS 'internal: refuses UPDATE, DELETE and TRUNCATE on the audit log (deleting an entry that is archived excepted)';
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON vms.audit_log
    FOR EACH ROW EXECUTE FUNCTION vms._audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON vms.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION vms._audit_append_only();

-- Old entries can leave the live log for vms.audit_archive, a range at a
-- time, with the hash anchors that tie the range to the chain: the hash of
-- the entry before it and of its last entry.  The archived entries stay
-- as content (jsonb, re-hashed by vms.audit_verify) until detached for
-- keeping elsewhere (vms.audit_archive_detach); a detached range is proved
-- by its anchors and the content digest a kept copy must match.
CREATE TABLE vms.audit_archive (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    first_seq       bigint NOT NULL UNIQUE,
    last_seq        bigint NOT NULL UNIQUE,
    entries         bigint NOT NULL,
    prev_hash       bytea,
    last_hash       bytea NOT NULL,
    content         jsonb,
    content_digest  bytea NOT NULL,
    archived_at     timestamptz NOT NULL DEFAULT now(),
    archived_by     text NOT NULL DEFAULT session_user,
    detached_at     timestamptz,
    CHECK (last_seq >= first_seq AND entries = last_seq - first_seq + 1)
);
REVOKE ALL ON vms.audit_archive FROM PUBLIC;
COMMENT ON TABLE vms.audit_archive IS
    'archived ranges of the audit log with their hash anchors (prev_hash: the entry before, last_hash: the last entry) and content (NULL once detached; content_digest = chain_digest of the content as text)';

CREATE FUNCTION vms._audit_archive_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    -- the only change: detaching the content, anchors and digest unchanged
    IF TG_OP = 'UPDATE' AND NEW.content IS NULL AND OLD.content IS NOT NULL AND NEW.detached_at IS NOT NULL
       AND (NEW.id, NEW.first_seq, NEW.last_seq, NEW.entries, NEW.prev_hash, NEW.last_hash, NEW.content_digest,
            NEW.archived_at, NEW.archived_by)
           IS NOT DISTINCT FROM (OLD.id, OLD.first_seq, OLD.last_seq, OLD.entries, OLD.prev_hash, OLD.last_hash,
                                 OLD.content_digest, OLD.archived_at, OLD.archived_by) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'vms.audit_archive is append-only'
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('%s of archived audit ranges is not allowed, for anyone.', TG_OP),
              HINT = 'Ranges are added by vms.audit_archive_before() and their content detached by vms.audit_archive_detach().';
END $$;
COMMENT ON FUNCTION vms._audit_archive_guard() IS 'internal: refuses changes to archived audit ranges other than detaching their content';
CREATE TRIGGER audit_archive_no_change BEFORE UPDATE OR DELETE ON vms.audit_archive
    FOR EACH ROW EXECUTE FUNCTION vms._audit_archive_guard();
CREATE TRIGGER audit_archive_no_truncate BEFORE TRUNCATE ON vms.audit_archive
    FOR EACH STATEMENT EXECUTE FUNCTION vms._audit_archive_guard();

-- Walk the chain in seq order, archived ranges first, and report the first
-- entry that was edited, deleted (a gap in seq, or a predecessor whose
-- hash does not match) or reordered.  An archived range with content is
-- re-hashed entry by entry; a detached one stands on its anchors.
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
    d vms.audit_archive;
    n bigint := 0;
BEGIN
    FOR d IN SELECT * FROM vms.audit_archive x
              WHERE x.content IS NOT NULL
                AND x.content_digest IS DISTINCT FROM vms.chain_digest(convert_to(x.content::text, 'UTF8'))
              ORDER BY x.first_seq LIMIT 1 LOOP
        RETURN QUERY SELECT false, n, d.first_seq,
            format('the archive of entries %s to %s does not match its digest (modified)', d.first_seq, d.last_seq);
        RETURN;
    END LOOP;
    FOR e IN SELECT (jsonb_populate_record(NULL::vms.audit_log, x)).*
               FROM vms.audit_archive a CROSS JOIN LATERAL jsonb_array_elements(a.content) x
              WHERE a.content IS NOT NULL
             UNION ALL
             SELECT * FROM vms.audit_log l
              WHERE l.seq > coalesce((SELECT max(a.last_seq) FROM vms.audit_archive a), 0)
             ORDER BY 1 LOOP
        -- a detached archive may fill the gap before this entry: its anchors
        -- must tie it to the entry before it
        WHILE e.seq <> coalesce(prev.seq, 0) + 1 LOOP
            SELECT * INTO d FROM vms.audit_archive a
             WHERE a.content IS NULL AND a.first_seq = coalesce(prev.seq, 0) + 1 AND a.last_seq < e.seq;
            EXIT WHEN NOT FOUND;
            IF d.prev_hash IS DISTINCT FROM prev.hash THEN
                RETURN QUERY SELECT false, n, d.first_seq,
                    format('the detached archive of entries %s to %s does not follow entry %s', d.first_seq, d.last_seq,
                           coalesce(prev.seq, 0));
                RETURN;
            END IF;
            n := n + d.entries;
            prev.seq := d.last_seq;
            prev.hash := d.last_hash;
        END LOOP;
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
COMMENT ON FUNCTION vms.audit_verify() IS
    'verify the audit chain, archived ranges included; reports the first modified, deleted or reordered entry';

-- Archive the entries older than a time (all up to the last such one).
-- The chain must hold first: an archive never hides tampering.  The
-- archiving is itself an entry of the chain.
CREATE FUNCTION vms.audit_archive_before(before timestamptz) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    lo bigint;
    hi bigint;
    v record;
    doc jsonb;
BEGIN
    LOCK TABLE vms.audit_log IN SHARE ROW EXCLUSIVE MODE;
    SELECT min(l.seq) INTO lo FROM vms.audit_log l
     WHERE l.seq > coalesce((SELECT max(a.last_seq) FROM vms.audit_archive a), 0);
    SELECT max(l.seq) INTO hi FROM vms.audit_log l WHERE l.at < before AND l.seq >= lo;
    IF hi IS NULL THEN
        RETURN 0;
    END IF;
    SELECT * INTO v FROM vms.audit_verify();
    IF NOT v.ok THEN
        RAISE EXCEPTION 'the audit chain does not hold: nothing archived'
            USING ERRCODE = 'data_corrupted', DETAIL = format('vms.audit_verify(): %s.', v.problem),
                  HINT = 'Investigate the tampering first; an archive must not hide it.';
    END IF;
    SELECT jsonb_agg(to_jsonb(l) ORDER BY l.seq) INTO doc FROM vms.audit_log l WHERE l.seq BETWEEN lo AND hi;
    INSERT INTO vms.audit_archive (first_seq, last_seq, entries, prev_hash, last_hash, content, content_digest)
    VALUES (lo, hi, hi - lo + 1, (SELECT l.prev_hash FROM vms.audit_log l WHERE l.seq = lo),
            (SELECT l.hash FROM vms.audit_log l WHERE l.seq = hi), doc, vms.chain_digest(convert_to(doc::text, 'UTF8')));
    DELETE FROM vms.audit_log l WHERE l.seq BETWEEN lo AND hi;
    PERFORM vms.audit('audit_archive', format('%s-%s', lo, hi), jsonb_build_object('entries', hi - lo + 1));
    RETURN hi - lo + 1;
END $$;
COMMENT ON FUNCTION vms.audit_archive_before(timestamptz) IS
    'move the audit entries older than a time into vms.audit_archive with their hash anchors (refused if the chain does not hold); returns how many; the archiving is audited';

CREATE FUNCTION vms.audit_archive_detach(archive_id bigint) RETURNS jsonb
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    d vms.audit_archive;
BEGIN
    SELECT * INTO d FROM vms.audit_archive a WHERE a.id = archive_id FOR UPDATE;
    IF NOT FOUND OR d.content IS NULL THEN
        RAISE EXCEPTION 'audit archive % has no content to detach', archive_id
            USING ERRCODE = 'no_data_found', HINT = 'See vms.audit_archive: detached ranges have content NULL.';
    END IF;
    UPDATE vms.audit_archive a SET content = NULL, detached_at = now() WHERE a.id = d.id;
    PERFORM vms.audit('audit_archive_detach', format('%s-%s', d.first_seq, d.last_seq),
                      jsonb_build_object('content_digest', encode(d.content_digest, 'hex')));
    RETURN d.content;
END $$;
COMMENT ON FUNCTION vms.audit_archive_detach(bigint) IS
    'return an archived range''s entries and drop them from the database (keep the returned document: its chain_digest as text is the range''s content_digest); the range''s anchors stay and vms.audit_verify proves the chain through them';
