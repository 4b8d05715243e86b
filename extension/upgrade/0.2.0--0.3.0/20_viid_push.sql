-- Issue 20: the set-based form of vms.viid_enqueue (fresh install:
-- extension/sql/15_viid.sql).

-- The set-based form of vms.viid_enqueue: many records of one kind for one
-- upstream with one INSERT, the same template mapping and checks (the first
-- bad document fails the whole call, naming its position) and the same rule:
-- nothing is sent if the caller's transaction rolls back.  Returns the
-- outbox ids in the order of the documents.
CREATE FUNCTION vms.viid_enqueue_many(upstream text, kind text, docs jsonb[], template text DEFAULT NULL) RETURNS bigint[]
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    k vms.viid_kind;
    bad record;
    ids bigint[];
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
        docs := ARRAY(SELECT vms.viid_map(template, u.d) FROM unnest(docs) WITH ORDINALITY u(d, n) ORDER BY u.n);
    END IF;
    SELECT u.n, jsonb_typeof(u.d) = 'object' AS obj INTO bad
      FROM unnest(docs) WITH ORDINALITY u(d, n)
     WHERE jsonb_typeof(u.d) IS DISTINCT FROM 'object' OR coalesce(u.d #>> k.id_path, '') = ''
     ORDER BY u.n LIMIT 1;
    IF FOUND AND bad.obj IS NOT TRUE THEN
        RAISE EXCEPTION 'document % must be a JSON object', bad.n USING ERRCODE = 'invalid_parameter_value';
    ELSIF FOUND THEN
        RAISE EXCEPTION '% document % lacks its id field "%"', kind, bad.n, array_to_string(k.id_path, '.')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Records need stable ids so the receiver can de-duplicate repeated deliveries.';
    END IF;
    WITH q AS (
        INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
        SELECT viid_enqueue_many.upstream, viid_enqueue_many.kind, u.d #>> k.id_path, u.d
          FROM unnest(docs) WITH ORDINALITY u(d, n) ORDER BY u.n
        RETURNING viid_outbox.id)
    SELECT array_agg(q.id ORDER BY q.id) INTO ids FROM q;
    IF ids IS NOT NULL THEN
        PERFORM vms._wake_worker('viid');
    END IF;
    RETURN coalesce(ids, '{}');
END $$;
COMMENT ON FUNCTION vms.viid_enqueue_many(text, text, jsonb[], text) IS
    'queue many records of one kind for an upstream with one statement, in the caller''s transaction (as vms.viid_enqueue for each; the first bad document fails the call); returns their outbox ids in order';

-- the owner's only, as vms.viid_enqueue (99_privileges.sql does this in bulk on a fresh install)
REVOKE ALL ON FUNCTION vms.viid_enqueue_many(text, text, jsonb[], text) FROM PUBLIC;
