-- Audit entries of ledger edits appended at commit (the chain's lock no
-- longer held from a ledger statement to the end of its transaction): the
-- queue vms.audit_pending, vms._audit_later and the deferred trigger that
-- appends through vms._audit_as; the history trigger queues instead of
-- appending.  vms.audit / vms._audit_as / vms.exercise_right stay immediate.

-- The chain's last entry is read through the latest snapshot (C), so a
-- REPEATABLE READ transaction's commit-time append follows the entries
-- committed since its snapshot instead of failing on a duplicate seq.
CREATE FUNCTION vms._audit_chain_head(OUT seq bigint, OUT hash bytea)
    AS 'MODULE_PATHNAME', 'vms_audit_chain_head' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION vms._audit_chain_head() IS
    'internal: the audit chain''s last entry (seq, hash; the last archived one when every entry is archived) as committed now, read through the latest snapshot (called holding the chain''s lock)';

CREATE OR REPLACE FUNCTION vms._audit_as(session_role text, action text, object text, detail jsonb DEFAULT '{}') RETURNS bigint
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

CREATE OR REPLACE FUNCTION vms._history_record() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    as_jsonb text := format('vms.%I', '_' || TG_TABLE_NAME || '_jsonb');
    nrows bigint;
    who text[];
BEGIN
    -- the SIP worker's online/offline flips are state, not ledger content;
    -- only a superuser session (the workers) may say so
    IF current_setting('vms.ledger_writer', true) = 'state'
       AND (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user) THEN
        RETURN NULL;
    END IF;
    -- who, when and why: the columns' defaults (vms.ledger_history), taken
    -- once for the statement's rows; as defaults they are evaluated a row
    -- at a time (three settings looked up, 1.7 s of a million-row load)
    who := ARRAY[session_user, coalesce(nullif(current_setting('vms.acting_role', true), ''), current_user),
                 current_setting('application_name', true), nullif(current_setting('vms.change_reason', true), '')];
    IF TG_OP = 'INSERT' THEN
        EXECUTE format('INSERT INTO vms.ledger_history (table_name, code, op, new_values,
                                changed_at, changed_by, acting_role, application, reason)
                        SELECT %L, n.code, ''INSERT'', %s(n), $1, $2[1], $2[2], $2[3], $2[4] FROM new_rows n',
                       TG_TABLE_NAME, as_jsonb) USING now(), who;
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format('INSERT INTO vms.ledger_history (table_name, code, op, old_values,
                                changed_at, changed_by, acting_role, application, reason)
                        SELECT %L, o.code, ''DELETE'', %s(o), $1, $2[1], $2[2], $2[3], $2[4] FROM old_rows o',
                       TG_TABLE_NAME, as_jsonb) USING now(), who;
    ELSE
        EXECUTE format('INSERT INTO vms.ledger_history (table_name, code, op, old_values, new_values,
                                changed_at, changed_by, acting_role, application, reason)
                        SELECT %L, n.code, ''UPDATE'', d.old_part, d.new_part, $1, $2[1], $2[2], $2[3], $2[4]
                          FROM new_rows n JOIN old_rows o ON o.code = n.code
                         CROSS JOIN LATERAL vms._jsonb_diff(%s(o), %s(n)) d
                         WHERE d.new_part <> ''{}''', TG_TABLE_NAME, as_jsonb, as_jsonb) USING now(), who;
    END IF;
    GET DIAGNOSTICS nrows = ROW_COUNT;
    -- one tamper-evident audit entry per statement; history holds the rows.
    -- Appended at commit (vms._audit_later): the chain's lock is not held
    -- from this statement to the end of a long import.
    IF nrows > 0 THEN
        PERFORM vms._audit_later('ledger_' || lower(TG_OP), TG_TABLE_NAME, jsonb_build_object('rows', nrows));
    END IF;
    RETURN NULL;
END $$;

REVOKE ALL ON FUNCTION vms._audit_later(text, text, jsonb), vms._audit_pending_append(), vms._audit_chain_head() FROM PUBLIC;
