-- Cluster sync (city apply): a district's delete of a device, channel,
-- catalogue node or checkpoint takes the city's own rows under it as an
-- ordinary DELETE would (the foreign keys' actions, which do not fire in the
-- apply worker's replica mode), set-based at the transaction's commit.

-- City, replica mode: what the city does with its own rows under a code a
-- district deletes.  The apply worker runs in replica mode, where the
-- foreign keys' actions (ordinary triggers) do not fire: the city's rows
-- that reference a deleted device, channel, catalogue node or checkpoint
-- (share codes, tags, status, members, tasks, plans, credentials...) would
-- stay, orphaned, and hang on the code again if it came back.  The city
-- ends up with what an ordinary DELETE would leave: each single-column
-- foreign key to the deleted table's code (read from the catalogue: a table
-- added later is covered) gets its declared action on the city's rows, one
-- statement a key for all the codes of a transaction
-- (vms._cluster_cascade_fk).  The C trigger (extension/cluster_apply.c)
-- calls this at the transaction's commit in origin mode (switched once a
-- flush, for all kinds), so that the keys of the rows it deletes act in
-- turn, with vms.change_reason naming the district's delete for
-- vms.ledger_history.  Rows the deleting district replicates itself under
-- the code were deleted by its own cascade in the same transaction and are
-- gone by then (its later DELETE of a row already gone is skipped by the
-- apply worker: no error, no conflict).  A device, channel, catalogue node
-- or checkpoint that a district owns and that references the deleted code
-- directly is not touched (recorded, with its owner), nor is a city
-- catalogue node with a district's node below it (recorded); deeper levels
-- follow the keys' actions as an ordinary DELETE would.  A RESTRICT or NO ACTION key cannot stop the
-- district's delete (that would stop its stream): the city's rows under it
-- are kept and recorded in vms.cluster_conflict (op DELETE, owner NULL, the
-- city's table), as are the rows of a code whose own triggers or keys
-- refuse (retried code by code: the other codes' rows go) and the rows of a
-- table whose owner is neither the extension's owner nor a superuser (not
-- acted on: its triggers would run as the subscription's owner).  Transient
-- errors (deadlock, serialization, lock timeout, cancel, out of memory or
-- disk) are raised: the apply worker retries the transaction.  Keys with
-- several columns, or to another column than code, are not acted on: listed
-- (their rows under the codes, or one entry with code '*' a flush).
CREATE FUNCTION vms._cluster_cascade(kind text, codes vms.gbcode[], district text) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    fk record;
BEGIN
    IF coalesce(cardinality(codes), 0) = 0 THEN
        RETURN;
    END IF;
    FOR fk IN
        SELECT c.conrelid::regclass AS tbl, c.confdeltype AS action, a.attname AS col,
               CASE WHEN c.conrelid IN ('vms.device'::regclass, 'vms.channel'::regclass,
                                        'vms.catalog_node'::regclass, 'vms.checkpoint'::regclass)
                    THEN r.relname::text END AS owned_kind,
               (r.relowner = e.extowner OR ro.rolsuper) AS trusted
          FROM pg_catalog.pg_constraint c
          JOIN pg_catalog.pg_class r ON r.oid = c.conrelid
          JOIN pg_catalog.pg_roles ro ON ro.oid = r.relowner
          JOIN pg_catalog.pg_extension e ON e.extname = 'vms'
          JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
          JOIN pg_catalog.pg_attribute k ON k.attrelid = c.confrelid AND k.attnum = c.confkey[1]
         WHERE c.contype = 'f' AND c.confrelid = ('vms.' || kind)::regclass
           AND cardinality(c.conkey) = 1 AND k.attname = 'code'
           AND c.conparentid = 0   -- a partitioned table's key once, not again per partition
         ORDER BY c.conrelid::regclass::text, c.conname
    LOOP
        PERFORM vms._cluster_cascade_fk(fk.tbl, fk.col, fk.action, fk.owned_kind, fk.trusted, codes, district);
    END LOOP;
    -- the keys not acted on (several columns, or to another column than
    -- code) are listed: the rows under the deleted codes of a key that has
    -- code among its columns, one entry (code '*') for a key without
    FOR fk IN
        SELECT c.conrelid::regclass AS tbl, c.conname,
               (SELECT a.attname
                  FROM unnest(c.conkey, c.confkey) u (ck, fk)
                  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = u.ck
                  JOIN pg_catalog.pg_attribute k ON k.attrelid = c.confrelid AND k.attnum = u.fk
                 WHERE k.attname = 'code') AS col
          FROM pg_catalog.pg_constraint c
         WHERE c.contype = 'f' AND c.confrelid = ('vms.' || kind)::regclass AND c.conparentid = 0
           AND NOT (cardinality(c.conkey) = 1
                    AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute k
                                 WHERE k.attrelid = c.confrelid AND k.attnum = c.confkey[1] AND k.attname = 'code'))
         ORDER BY c.conrelid::regclass::text, c.conname
    LOOP
        IF fk.col IS NOT NULL THEN
            EXECUTE format('INSERT INTO vms.cluster_conflict (district, owner, table_name, op, code, row_data)
                            SELECT $2, NULL, %L, ''DELETE'', t.%I::text, pg_catalog.to_jsonb(t) || $3
                              FROM %s t WHERE t.%I = ANY ($1)', fk.tbl::text, fk.col, fk.tbl, fk.col)
                USING codes, district,
                      jsonb_build_object('kept', format('not acted on: foreign key %s has several columns', fk.conname));
        ELSE
            INSERT INTO vms.cluster_conflict (district, owner, table_name, op, code, row_data)
            VALUES (district, NULL, fk.tbl::text, 'DELETE', '*',
                    jsonb_build_object('kept', format('not acted on: foreign key %s references another column than code of %s deleted %s rows',
                                                      fk.conname, cardinality(codes), kind)));
        END IF;
    END LOOP;
END $$;
COMMENT ON FUNCTION vms._cluster_cascade(text, vms.gbcode[], text) IS
    'internal: city side of a district''s delete: the declared actions of the foreign keys to the deleted codes, on the city''s own rows';

CREATE FUNCTION vms._cluster_cascade_fk(tbl regclass, col name, action "char", owned_kind text, trusted boolean,
                                        codes vms.gbcode[], district text)
    RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    -- a city catalogue node with a district's node below it (codes
    -- colliding) would take that node along: kept, listed
    below text := CASE WHEN owned_kind = 'catalog_node' THEN
        ' EXISTS (WITH RECURSIVE sub (code) AS (SELECT n.code FROM vms.catalog_node n WHERE n.parent_code = t.code
                                                 UNION SELECT n.code FROM vms.catalog_node n JOIN sub s ON n.parent_code = s.code)
                  SELECT 1 FROM sub JOIN vms.cluster_owner o ON o.kind = ''catalog_node'' AND o.code = sub.code)' END;
    -- a device, channel, catalogue node or checkpoint a district owns is that district's
    owned text := format(' AND NOT EXISTS (SELECT 1 FROM vms.cluster_owner o WHERE o.kind = %L AND o.code = t.code)', owned_kind);
    own text := CASE WHEN owned_kind IS NULL THEN '' ELSE owned || coalesce(' AND NOT' || below, '') END;
    kept text := format('INSERT INTO vms.cluster_conflict (district, owner, table_name, op, code, row_data)
                         SELECT $2, NULL, %L, ''DELETE'', t.%I::text, pg_catalog.to_jsonb(t) || $3
                           FROM %s t WHERE t.%I = ANY ($1)%s', tbl::text, col, tbl, col, own);
    act text;
    found boolean;
    r record;
BEGIN
    IF owned_kind IS NOT NULL THEN
        -- a district's row under the code (another district's, when codes
        -- collide): not touched, listed with its owner
        EXECUTE format('INSERT INTO vms.cluster_conflict (district, owner, table_name, op, code, row_data)
                        SELECT $2, o.district, %L, ''DELETE'', t.%I::text, pg_catalog.to_jsonb(t) || $3
                          FROM %s t JOIN vms.cluster_owner o ON o.kind = %L AND o.code = t.code
                         WHERE t.%I = ANY ($1)', tbl::text, col, tbl, owned_kind, col)
            USING codes, district, jsonb_build_object('kept', 'a district''s row under the deleted code');
    END IF;
    IF below IS NOT NULL THEN
        EXECUTE format('INSERT INTO vms.cluster_conflict (district, owner, table_name, op, code, row_data)
                        SELECT $2, NULL, %L, ''DELETE'', t.%I::text, pg_catalog.to_jsonb(t) || $3
                          FROM %s t WHERE t.%I = ANY ($1)%s AND%s', tbl::text, col, tbl, col, owned, below)
            USING codes, district, jsonb_build_object('kept', 'a district''s catalogue node below it');
    END IF;
    -- most codes have no row of the city's under them
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s t WHERE t.%I = ANY ($1)%s)', tbl, col, own)
        INTO found USING codes;
    IF NOT found THEN
        RETURN;
    END IF;
    IF NOT trusted THEN
        -- its triggers would run as the subscription's owner: not acted on, listed
        EXECUTE kept USING codes, district,
            jsonb_build_object('kept', 'not acted on: the table''s owner is neither the extension''s owner nor a superuser');
        RETURN;
    END IF;
    IF action NOT IN ('c', 'n', 'd') THEN
        -- RESTRICT, NO ACTION: the district's delete is applied; the city's rows are kept and listed
        EXECUTE kept USING codes, district, jsonb_build_object('kept', 'the foreign key restricts the delete');
        RETURN;
    END IF;
    act := CASE WHEN action = 'c' THEN format('DELETE FROM %s t WHERE t.%I = ANY ($1)%s', tbl, col, own)
                ELSE format('UPDATE %s t SET %I = %s WHERE t.%I = ANY ($1)%s', tbl, col,
                            CASE WHEN action = 'n' THEN 'NULL' ELSE 'DEFAULT' END, col, own) END;
    BEGIN
        EXECUTE act USING codes;
        RETURN;
    EXCEPTION WHEN OTHERS THEN
        -- transient: the apply worker retries the transaction
        IF SQLSTATE IN ('40P01', '40001', '55P03', '57014') OR SQLSTATE LIKE '53%' THEN
            RAISE;
        END IF;
    END;
    -- a row refused (its own triggers or keys): code by code, each in its
    -- own subtransaction; only the codes that refuse are kept and listed
    FOR r IN EXECUTE format('SELECT DISTINCT t.%I::vms.gbcode AS c FROM %s t WHERE t.%I = ANY ($1)%s', col, tbl, col, own)
        USING codes
    LOOP
        BEGIN
            EXECUTE act USING ARRAY[r.c];
        EXCEPTION WHEN OTHERS THEN
            IF SQLSTATE IN ('40P01', '40001', '55P03', '57014') OR SQLSTATE LIKE '53%' THEN
                RAISE;
            END IF;
            EXECUTE kept USING ARRAY[r.c], district, jsonb_build_object('kept', SQLERRM, 'sqlstate', SQLSTATE);
        END;
    END LOOP;
END $$;
COMMENT ON FUNCTION vms._cluster_cascade_fk(regclass, name, "char", text, boolean, vms.gbcode[], text) IS
    'internal: one foreign key''s action (cascade, set null, set default) on the city''s rows under codes a district deleted; a restricting key''s rows, a refusing code''s rows (retried code by code), or a table not owned by the extension''s owner or a superuser: kept and recorded as conflicts, as is a district''s row under the codes (not touched); transient errors raised';

-- The deferred flush of the codes the apply worker deleted in a
-- transaction (buffered by vms._cluster_apply_owned, handed to
-- vms._cluster_cascade at commit; the WHEN is true once a transaction).
CREATE FUNCTION vms._cluster_apply_deleted_due() RETURNS boolean
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'vms_cluster_apply_deleted_due';
COMMENT ON FUNCTION vms._cluster_apply_deleted_due() IS 'internal: city side: the WHEN of the <table>_cluster_apply_deleted triggers, true for the first code of a transaction the apply worker buffers';
CREATE FUNCTION vms._cluster_apply_deleted_flush() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'vms_cluster_apply_deleted_flush';
COMMENT ON FUNCTION vms._cluster_apply_deleted_flush() IS 'internal: city side: applies the foreign keys'' actions for the codes the apply worker deleted in this transaction, at commit';
CREATE CONSTRAINT TRIGGER device_cluster_apply_deleted AFTER DELETE ON vms.device
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (vms._cluster_apply_deleted_due()) EXECUTE FUNCTION vms._cluster_apply_deleted_flush();
CREATE CONSTRAINT TRIGGER channel_cluster_apply_deleted AFTER DELETE ON vms.channel
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (vms._cluster_apply_deleted_due()) EXECUTE FUNCTION vms._cluster_apply_deleted_flush();
CREATE CONSTRAINT TRIGGER catalog_node_cluster_apply_deleted AFTER DELETE ON vms.catalog_node
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (vms._cluster_apply_deleted_due()) EXECUTE FUNCTION vms._cluster_apply_deleted_flush();
CREATE CONSTRAINT TRIGGER checkpoint_cluster_apply_deleted AFTER DELETE ON vms.checkpoint
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (vms._cluster_apply_deleted_due()) EXECUTE FUNCTION vms._cluster_apply_deleted_flush();
ALTER TABLE vms.device ENABLE REPLICA TRIGGER device_cluster_apply_deleted;
ALTER TABLE vms.channel ENABLE REPLICA TRIGGER channel_cluster_apply_deleted;
ALTER TABLE vms.catalog_node ENABLE REPLICA TRIGGER catalog_node_cluster_apply_deleted;
ALTER TABLE vms.checkpoint ENABLE REPLICA TRIGGER checkpoint_cluster_apply_deleted;
REVOKE ALL ON FUNCTION vms._cluster_cascade(text, vms.gbcode[], text),
    vms._cluster_cascade_fk(regclass, name, "char", text, boolean, vms.gbcode[], text),
    vms._cluster_apply_deleted_due(), vms._cluster_apply_deleted_flush() FROM PUBLIC;

-- The PL/pgSQL map-cell trigger keeps only UPDATE: a replicated channel's
-- INSERT and DELETE are counted by the C trigger (20_cluster_delete.sql);
-- its DELETE branch was dead.
CREATE OR REPLACE FUNCTION vms._cluster_apply_tiles() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    xs float8[];        -- the points, with vms._channel_cells's n, online change and code
    ys float8[];
    dn integer[];
    don integer[];
    codes text[];
BEGIN
    -- only the apply worker's changes: a local session's are counted by the
    -- statement triggers, and ALTER TABLE … ENABLE TRIGGER USER would
    -- otherwise make this one count them a second time
    IF current_setting('session_replication_role') <> 'replica' THEN
        RETURN NULL;
    END IF;
    IF OLD.geom_3857 IS DISTINCT FROM NEW.geom_3857 THEN
        -- moved: leaves its old cell and joins its new one
        xs := ARRAY[ST_X(OLD.geom_3857), ST_X(NEW.geom_3857)];
        ys := ARRAY[ST_Y(OLD.geom_3857), ST_Y(NEW.geom_3857)];
        dn := '{-1,1}';
        don := ARRAY[-OLD.online::int, NEW.online::int];
        codes := ARRAY[NULL, NEW.code::text];
    ELSIF OLD.online IS DISTINCT FROM NEW.online THEN
        -- only went on or offline
        xs := ARRAY[ST_X(NEW.geom_3857)];
        ys := ARRAY[ST_Y(NEW.geom_3857)];
        dn := '{0}';
        don := ARRAY[NEW.online::int - OLD.online::int];
    ELSE
        RETURN NULL;   -- most edits: the cells do not change
    END IF;
    INSERT INTO vms.channel_cluster_delta (level, cx, cy, n, n_online, sx, sy, code, gone)
    SELECT c.level, c.cx, c.cy, c.n, c.n_online, c.sx, c.sy, c.code, c.gone FROM vms._channel_cells(xs, ys, dn, don, codes) c;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._cluster_apply_tiles() IS 'internal: city side: a replicated channel''s update (moved, on or offline) appended to the map''s cluster cells';
