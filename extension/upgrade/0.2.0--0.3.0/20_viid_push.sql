-- Issue 20: the set-based form of vms.viid_enqueue, and vms._viid_batches
-- in PL/pgSQL so its plan is kept (fresh install: extension/sql/15_viid.sql).

-- The insert of vms.viid_enqueue_many (extension/viid_outbox.c): checks
-- every document as vms.viid_enqueue does (a JSON object with a non-empty
-- id; the first bad one fails the call, naming its position), then one
-- INSERT ... SELECT over them; the two foreign-key checks that PostgreSQL
-- would run per row (half of the time) are run once, locking the upstream
-- and the kind FOR KEY SHARE as they would.
CREATE FUNCTION vms._viid_outbox_insert(upstream text, kind text, id_path text[], docs jsonb[]) RETURNS bigint[]
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'vms_viid_outbox_insert';
COMMENT ON FUNCTION vms._viid_outbox_insert(text, text, text[], jsonb[]) IS
    'internal: the outbox rows of vms.viid_enqueue_many: documents checked, foreign keys checked once for the statement; ids in document order';

REVOKE ALL ON FUNCTION vms._viid_outbox_insert(text, text, text[], jsonb[]) FROM PUBLIC;

-- Template mapping for vms.viid_enqueue_many (extension/viid_outbox.c):
-- every document as vms.viid_map maps it, in one call, for a template of
-- the documented shape (NULL for another shape: the caller then uses
-- vms.viid_map); the first bad document fails the call, naming its position.
CREATE FUNCTION vms._viid_map_many(template text, docs jsonb[]) RETURNS jsonb[]
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'vms_viid_map_many';
COMMENT ON FUNCTION vms._viid_map_many(text, jsonb[]) IS
    'internal: vms.viid_map over many documents in C for a template of the documented shape (else NULL); errors name the document''s position';

REVOKE ALL ON FUNCTION vms._viid_map_many(text, jsonb[]) FROM PUBLIC;

-- The set-based form of vms.viid_enqueue: many records of one kind for one
-- upstream with one INSERT, the same template mapping and checks (the first
-- bad document fails the whole call, naming its position) and the same rule:
-- nothing is sent if the caller's transaction rolls back.  Returns the
-- outbox ids in the order of the documents.
CREATE FUNCTION vms.viid_enqueue_many(upstream text, kind text, docs jsonb[], template text DEFAULT NULL) RETURNS bigint[]
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    k vms.viid_kind;
    ids bigint[];
    mapped jsonb[];
    msg text;
    state text;
    hint text;
BEGIN
    SELECT * INTO k FROM vms.viid_kind WHERE viid_kind.kind = viid_enqueue_many.kind;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown GA/T 1400 kind "%"', kind USING ERRCODE = 'invalid_parameter_value',
              HINT = (SELECT 'Kinds are ' || string_agg(vk.kind, ', ' ORDER BY vk.kind) || '.' FROM vms.viid_kind vk);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM vms.viid_upstream u WHERE u.name = viid_enqueue_many.upstream) THEN
        RAISE EXCEPTION 'upstream "%" does not exist', upstream USING ERRCODE = 'undefined_object';
    END IF;
    IF template IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM vms.viid_template t WHERE t.name = viid_enqueue_many.template) THEN
            RAISE EXCEPTION 'template "%" does not exist', template USING ERRCODE = 'undefined_object';
        END IF;
        mapped := vms._viid_map_many(template, docs);
        IF mapped IS NOT NULL THEN
            docs := mapped;
        ELSE
            -- a template of another shape than the documented one: vms.viid_map
            BEGIN
                docs := ARRAY(SELECT vms.viid_map(template, u.d) FROM unnest(docs) WITH ORDINALITY u(d, n) ORDER BY u.n);
            EXCEPTION WHEN OTHERS THEN
                -- only when a document fails: find the first that does, and
                -- raise its error (same code, message and hint) with its position
                FOR i IN 1 .. coalesce(cardinality(docs), 0) LOOP
                    BEGIN
                        PERFORM vms.viid_map(template, docs[i]);
                    EXCEPTION WHEN OTHERS THEN
                        GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE, hint = PG_EXCEPTION_HINT;
                        IF hint <> '' THEN
                            RAISE EXCEPTION USING MESSAGE = format('document %s: %s', i, msg), ERRCODE = state, HINT = hint;
                        END IF;
                        RAISE EXCEPTION USING MESSAGE = format('document %s: %s', i, msg), ERRCODE = state;
                    END;
                END LOOP;
                RAISE;
            END;
        END IF;
    END IF;
    -- each document a JSON object with a non-empty id, checked by the insert
    -- (the first that is not fails the call, naming its position)
    ids := coalesce(vms._viid_outbox_insert(viid_enqueue_many.upstream, viid_enqueue_many.kind, k.id_path, docs), '{}');
    IF cardinality(ids) > 0 THEN
        PERFORM vms._wake_worker('viid');
    END IF;
    RETURN ids;
END $$;
COMMENT ON FUNCTION vms.viid_enqueue_many(text, text, jsonb[], text) IS
    'queue many records of one kind for an upstream with one statement, in the caller''s transaction (as vms.viid_enqueue for each; the first bad document fails the call); returns their outbox ids in order';

-- the owner's only, as vms.viid_enqueue (99_privileges.sql does this in bulk on a fresh install)
REVOKE ALL ON FUNCTION vms.viid_enqueue_many(text, text, jsonb[], text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION vms._viid_batches(upstream text, batch_size integer, max_batches integer,
                                  after_at timestamptz DEFAULT '-infinity', after_id bigint DEFAULT 0)
    RETURNS TABLE (path text, ids bigint[], body text, last_at timestamptz, last_id bigint)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
BEGIN
    -- PL/pgSQL, not SQL: a SQL function with SET is not inlined and was
    -- parsed and planned again at every call (a tenth of the push's time);
    -- here the plan is kept for the session
    RETURN QUERY
    WITH due AS (
        SELECT o.id, o.kind, o.payload, o.next_attempt_at FROM vms.viid_outbox o
         WHERE o.upstream = _viid_batches.upstream AND o.state = 'pending' AND o.next_attempt_at <= now()
           AND (o.next_attempt_at, o.id) > (after_at, after_id)
         ORDER BY o.next_attempt_at, o.id LIMIT batch_size * max_batches),
    cursor AS (
        SELECT d.next_attempt_at, d.id FROM due d ORDER BY d.next_attempt_at DESC, d.id DESC LIMIT 1),
    numbered AS (
        SELECT d.*, (row_number() OVER (PARTITION BY d.kind ORDER BY d.id) - 1) / batch_size AS b FROM due d)
    SELECT k.path, array_agg(n.id ORDER BY n.id),
           format('{"%s": {"%s": [%s]}}', k.list_object, k.item_object, string_agg(n.payload, ', ' ORDER BY n.id)),
           (SELECT c.next_attempt_at FROM cursor c), (SELECT c.id FROM cursor c)
      FROM numbered n JOIN vms.viid_kind k ON k.kind = n.kind
     GROUP BY k.path, k.list_object, k.item_object, n.b
     ORDER BY min(n.id);
END $$;
COMMENT ON FUNCTION vms._viid_batches(text, integer, integer, timestamptz, bigint) IS
    'internal: the next list-object batches for an upstream after a claim cursor';
