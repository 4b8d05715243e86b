-- District <-> city ledger over PostgreSQL's own logical replication (issue 16).
--
-- Up:   a district publishes its governed ledger (publication vms_ledger):
--       devices, channels (without unit_id: org units are district-local
--       identities), catalogue nodes and members, checkpoints, lanes and
--       their channels, catalog status, and its tags as natural-key rows
--       (vms.cluster_tag, vms.cluster_channel_tag: tag ids are identities
--       local to each node), and its own security levels (a tag's by
--       category and name, vms.cluster_security_assignment), which act at
--       the city as a floor on the district's own channels.  A city subscribes to many districts into the
--       same tables.  A code belongs to the first district that sends it
--       (vms.cluster_owner); a row another district sends under a code
--       already owned, or under a code the city holds itself, is not
--       applied but kept in vms.cluster_conflict.
-- Down: city corrections (vms.cluster_correction, one publication per
--       district filtered on its name) and the city's naming patterns.  A
--       district applies a correction as a person's edit would be applied
--       (history, override mark), so device reports never overwrite it.
-- No home-made replication: slots, origins and the apply workers are
-- PostgreSQL's.  The triggers below only route what the apply worker
-- writes; they fire in replica mode (ENABLE REPLICA / ALWAYS) because the
-- apply worker runs with session_replication_role = replica, where ordinary
-- triggers (history, updated_at, override marks, SIP, foreign keys) do not.

-- This node as a district.
CREATE TABLE vms.cluster_node (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    district      text NOT NULL CHECK (district ~ '^[a-z][a-z0-9_]{0,30}$'),
    published_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.cluster_node IS 'this node''s name as a district (set once by vms.cluster_publish); empty on a city';

-- The districts a city subscribes to.
CREATE TABLE vms.cluster_district (
    district      text PRIMARY KEY CHECK (district ~ '^[a-z][a-z0-9_]{0,30}$'),
    subscription  name NOT NULL UNIQUE,
    publication   name NOT NULL UNIQUE,
    added_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.cluster_district IS 'districts this city node subscribes to: the subscription receiving its ledger and the publication sending it corrections';

-- Which district a code belongs to at the city.
CREATE TABLE vms.cluster_owner (
    kind        text NOT NULL CHECK (kind IN ('device', 'channel', 'catalog_node', 'checkpoint')),
    code        vms.gbcode NOT NULL,
    district    text NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, code)
);
CREATE INDEX cluster_owner_district_idx ON vms.cluster_owner (district);
COMMENT ON TABLE vms.cluster_owner IS 'city: the district each replicated device, channel, catalogue node and checkpoint code belongs to (the first that sent it)';

CREATE TABLE vms.cluster_conflict (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    district    text NOT NULL,
    owner       text,
    table_name  text NOT NULL,
    op          text NOT NULL,
    code        text NOT NULL,
    row_data    jsonb
);
CREATE INDEX cluster_conflict_code_idx ON vms.cluster_conflict (code);
COMMENT ON TABLE vms.cluster_conflict IS 'city: changes a district sent for a code it does not own (owner: the district that does, NULL for a row of the city''s own); not applied';

-- Tags by natural key, kept on a district from vms.tag and vms.channel_tag.
CREATE TABLE vms.cluster_tag (
    district      text NOT NULL,
    category      text NOT NULL,
    name          text NOT NULL,
    parent        text,
    hierarchical  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (district, category, name)
);
COMMENT ON TABLE vms.cluster_tag IS 'a district''s tags by category and name (parent by name), replicated to the city which merges them by name';

CREATE TABLE vms.cluster_channel_tag (
    district      text NOT NULL,
    channel_code  vms.gbcode NOT NULL,
    category      text NOT NULL,
    name          text NOT NULL,
    source        text NOT NULL,
    assigned_by   text NOT NULL,
    assigned_at   timestamptz NOT NULL,
    PRIMARY KEY (district, channel_code, category, name)
);
CREATE INDEX cluster_channel_tag_channel_idx ON vms.cluster_channel_tag (channel_code);
COMMENT ON TABLE vms.cluster_channel_tag IS 'a district''s channel tags by tag category and name, replicated to the city as vms.channel_tag rows';

-- A district's vms.security_assignment, a tag's by category and name.
CREATE TABLE vms.cluster_security_assignment (
    district      text NOT NULL,
    scope_kind    text NOT NULL CHECK (scope_kind IN ('channel', 'catalog', 'tag')),
    scope_ref     text NOT NULL,
    level         smallint NOT NULL CHECK (level BETWEEN 1 AND 4),
    PRIMARY KEY (district, scope_kind, scope_ref)
);
COMMENT ON TABLE vms.cluster_security_assignment IS 'a district''s security levels (scope_ref: a channel or catalogue code, or a tag as category:name), replicated to the city, where they apply to the district''s own channels as a floor under the city''s levels';

-- A district's availability gaps (vms.availability_gap: periods whose state
-- is unknown; device_code NULL = the district's platform was down, every
-- device of that district), kept on a district with the district's name and
-- replicated to the city, where vms._availability_gaps() scopes them to the
-- district's own devices.  Gap ids are the district's (two districts both
-- have a gap 1).  The runs themselves (vms.availability_run) travel as they
-- are: their codes belong to the district (vms.cluster_owner).
CREATE TABLE vms.cluster_availability_gap (
    district     text NOT NULL,
    id           bigint NOT NULL,
    device_code  vms.gbcode,
    from_ts      timestamptz NOT NULL,
    to_ts        timestamptz NOT NULL,
    reason       text NOT NULL,
    PRIMARY KEY (district, id)
);
COMMENT ON TABLE vms.cluster_availability_gap IS 'a district''s availability gaps (vms.availability_gap with the district''s name), replicated to the city, where a gap with device_code NULL covers only that district''s devices';

-- City corrections, sent down to the district that owns the code.
CREATE TABLE vms.cluster_correction (
    district      text NOT NULL,
    target        text NOT NULL CHECK (target IN ('device', 'channel', 'security_level')),
    code          vms.gbcode NOT NULL,
    field         text NOT NULL,
    value         jsonb NOT NULL,
    reason        text NOT NULL,
    corrected_by  text NOT NULL DEFAULT session_user,
    corrected_at  timestamptz NOT NULL DEFAULT now(),
    applied       text,
    applied_at    timestamptz,
    PRIMARY KEY (district, target, code, field),
    CHECK (target <> 'security_level' OR field = 'level')
);
COMMENT ON TABLE vms.cluster_correction IS 'city corrections of district rows (a governed column of a device or channel, or a channel''s security level); replicated to the district, which applies them as overrides';
COMMENT ON COLUMN vms.cluster_correction.value IS 'the city''s value as JSON (a point as EWKT text; a security level as a number)';
COMMENT ON COLUMN vms.cluster_correction.applied IS 'district: how the correction was applied (applied, no such row, or the error); NULL at the city';

-- The subscription the current backend applies for, cached for the session
-- in vms.cluster_applying: 'district:<name>' (a city applying a district),
-- 'city' (a district applying its city), '-' otherwise.  The apply and table-sync workers are
-- listed in pg_stat_subscription with their pid.
CREATE FUNCTION vms._cluster_applying() RETURNS text
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    s text := current_setting('vms.cluster_applying', true);
    sub name;
BEGIN
    IF s IS NULL OR s = '' THEN
        SELECT su.subname INTO sub FROM pg_catalog.pg_stat_subscription st
          JOIN pg_catalog.pg_subscription su ON su.oid = st.subid
         WHERE st.pid = pg_catalog.pg_backend_pid() LIMIT 1;
        s := CASE WHEN sub = 'vms_city' THEN 'city'
                  ELSE coalesce((SELECT 'district:' || d.district FROM vms.cluster_district d
                                  WHERE d.subscription = sub), '-') END;
        PERFORM pg_catalog.set_config('vms.cluster_applying', s, false);
    END IF;
    RETURN s;
END $$;
COMMENT ON FUNCTION vms._cluster_applying() IS 'internal: which vms subscription this backend applies (district:<name>, city), or - when none';

CREATE FUNCTION vms._cluster_conflict(district text, owner text, tbl text, op text, code text, row_data jsonb)
    RETURNS void
    LANGUAGE sql SET search_path FROM CURRENT
    BEGIN ATOMIC
        INSERT INTO vms.cluster_conflict (district, owner, table_name, op, code, row_data)
        VALUES (district, owner, tbl, op, code, row_data);
    END;
COMMENT ON FUNCTION vms._cluster_conflict(text, text, text, text, text, jsonb) IS 'internal: records a district change refused at the city';

-- The lookups below run once a row in the apply worker, whose session keeps
-- their plans: planned while a table is still small (the first copy, a new
-- city) they could scan it, and keep scanning it as it grows; enable_seqscan
-- = off keeps them on the indexes.  The owner's kind is compared as text
-- (TG_TABLE_NAME is a name: name = text leaves the index only the code, a
-- walk of the whole index per row, 0.6 ms a row at 6,000 rows).

-- City, replica mode: a device, channel, catalogue node or checkpoint
-- arriving from a district.  INSERT claims the code for the district unless
-- another district owns it or the city has a row of its own under it; the
-- same district sending a row it already has (a table re-copied after a
-- re-subscription) replaces it.  UPDATE and DELETE apply only to rows the
-- sending district owns.  In C (extension/cluster_apply.c): it runs once a
-- replicated row in the apply worker, and as PL/pgSQL it was half of the
-- city's apply time of a large import.
CREATE FUNCTION vms._cluster_apply_owned() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'vms_cluster_apply_owned';
COMMENT ON FUNCTION vms._cluster_apply_owned() IS 'internal: city side of a replicated device, channel, catalogue node or checkpoint: ownership by district, conflicts recorded';

-- City, replica mode: rows hanging off a channel or checkpoint (catalogue
-- members, catalog status, lanes, lane channels, channel tags).  Refused
-- when the parent code belongs to another district or to the city itself;
-- a parent not there yet (tables are first copied in parallel) is fine.
-- Re-copied rows replace the city's copy.
CREATE FUNCTION vms._cluster_apply_child() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
DECLARE
    src text := coalesce(nullif(current_setting('vms.cluster_applying', true), ''), vms._cluster_applying());
    d text;
    r record := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    j jsonb := to_jsonb(r);
    -- an availability run's subject is a device or a channel
    pkind text := CASE WHEN TG_ARGV[0] = 'run' THEN CASE WHEN j ->> 'source' = 'device' THEN 'device' ELSE 'channel' END
                       ELSE TG_ARGV[0] END;
    c vms.gbcode := (j ->> coalesce(TG_ARGV[1], 'none'))::vms.gbcode;
    -- an UPDATE's old row: its key names the row it changes, which must be
    -- the sender's too (else a district could move another's row to its code)
    oj jsonb;
    okind text;
    oc vms.gbcode;
    kk text;
    cc vms.gbcode;
    owner text;
    present boolean;
BEGIN
    IF src NOT LIKE 'district:%' THEN
        RETURN r;
    END IF;
    d := substr(src, 10);
    IF TG_OP = 'UPDATE' THEN
        oj := to_jsonb(OLD);
    END IF;
    IF TG_TABLE_NAME IN ('cluster_tag', 'cluster_security_assignment', 'cluster_availability_gap') THEN
        -- no parent: only the sender's own, re-copied rows replace
        IF r.district IS DISTINCT FROM d OR (oj IS NOT NULL AND oj ->> 'district' IS DISTINCT FROM d) THEN
            PERFORM vms._cluster_conflict(d, CASE WHEN r.district IS DISTINCT FROM d THEN r.district ELSE oj ->> 'district' END,
                                          TG_TABLE_NAME, TG_OP,
                                          coalesce(j ->> 'scope_ref', j ->> 'id', (j ->> 'category') || ':' || (j ->> 'name')), j);
            RETURN NULL;
        END IF;
        IF TG_OP = 'INSERT' AND TG_TABLE_NAME = 'cluster_availability_gap' THEN
            DELETE FROM vms.cluster_availability_gap t WHERE t.district = NEW.district AND t.id = NEW.id;
        ELSIF TG_OP = 'INSERT' AND TG_TABLE_NAME = 'cluster_tag' THEN
            DELETE FROM vms.cluster_tag t WHERE t.district = NEW.district AND t.category = NEW.category AND t.name = NEW.name;
        ELSIF TG_OP = 'INSERT' THEN
            DELETE FROM vms.cluster_security_assignment t
             WHERE t.district = NEW.district AND t.scope_kind = NEW.scope_kind AND t.scope_ref = NEW.scope_ref;
        END IF;
        RETURN r;
    END IF;
    IF TG_TABLE_NAME = 'availability_run' THEN
        -- a district's runs have no district there: the city keeps the
        -- sender's, and a code's runs from any other district go when a
        -- district claims it (extension/cluster_apply.c)
        IF TG_OP <> 'DELETE' THEN
            NEW.district := d;
            r := NEW;
        END IF;
    ELSIF j ? 'district' AND (j ->> 'district' IS DISTINCT FROM d
                              OR (oj IS NOT NULL AND oj ->> 'district' IS DISTINCT FROM d)) THEN
        PERFORM vms._cluster_conflict(d, CASE WHEN j ->> 'district' IS DISTINCT FROM d THEN j ->> 'district'
                                              ELSE oj ->> 'district' END, TG_TABLE_NAME, TG_OP, c::text, j);
        RETURN NULL;
    END IF;
    IF oj IS NOT NULL THEN
        okind := CASE WHEN TG_ARGV[0] = 'run' THEN CASE WHEN oj ->> 'source' = 'device' THEN 'device' ELSE 'channel' END
                      ELSE TG_ARGV[0] END;
        oc := (oj ->> TG_ARGV[1])::vms.gbcode;
        IF okind = pkind AND oc IS NOT DISTINCT FROM c THEN
            okind := NULL;   -- same parent: one lookup
        END IF;
    END IF;
    -- the new row's parent, and an UPDATE's old parent when it differs
    FOR i IN 1 .. CASE WHEN okind IS NULL THEN 1 ELSE 2 END LOOP
        IF i = 1 THEN
            kk := pkind; cc := c;
        ELSE
            kk := okind; cc := oc;
        END IF;
        present := NULL;
        SELECT o.district INTO owner FROM vms.cluster_owner o WHERE o.kind = kk AND o.code = cc;
        IF owner IS NULL THEN
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM vms.%I WHERE code = $1)', kk) INTO present USING cc;
            IF present THEN
                owner := NULL;   -- the city's own row
            END IF;
        END IF;
        IF owner IS DISTINCT FROM d AND (owner IS NOT NULL OR present) THEN
            PERFORM vms._cluster_conflict(d, owner, TG_TABLE_NAME, TG_OP, cc::text, CASE WHEN i = 1 THEN j ELSE oj END);
            RETURN NULL;
        END IF;
    END LOOP;
    IF TG_OP = 'INSERT' THEN
        -- a row the district sends again (re-copy) replaces the city's copy
        CASE TG_TABLE_NAME
        WHEN 'catalog_member' THEN
            DELETE FROM vms.catalog_member t WHERE t.node_code = NEW.node_code AND t.channel_code = NEW.channel_code;
        WHEN 'channel_status' THEN
            DELETE FROM vms.channel_status t WHERE t.code = NEW.code;
        WHEN 'lane' THEN
            DELETE FROM vms.lane t WHERE t.checkpoint_code = NEW.checkpoint_code AND t.lane_no = NEW.lane_no;
        WHEN 'lane_channel' THEN
            DELETE FROM vms.lane_channel t WHERE t.checkpoint_code = NEW.checkpoint_code AND t.lane_no = NEW.lane_no
                                             AND t.channel_code = NEW.channel_code;
        WHEN 'cluster_channel_tag' THEN
            DELETE FROM vms.cluster_channel_tag t WHERE t.district = NEW.district AND t.channel_code = NEW.channel_code
                                                    AND t.category = NEW.category AND t.name = NEW.name;
        WHEN 'availability_run' THEN
            DELETE FROM vms.availability_run t WHERE t.source = NEW.source AND t.code = NEW.code AND t.from_ts = NEW.from_ts;
        END CASE;
    END IF;
    RETURN r;
END $$;
COMMENT ON FUNCTION vms._cluster_apply_child() IS 'internal: city side of rows under a replicated channel or checkpoint: refused when another district or the city owns the parent (an UPDATE''s old and new parent both)';

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

CREATE TRIGGER device_cluster_apply BEFORE INSERT OR UPDATE OR DELETE ON vms.device
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_owned();
CREATE TRIGGER channel_cluster_apply BEFORE INSERT OR UPDATE OR DELETE ON vms.channel
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_owned();
CREATE TRIGGER catalog_node_cluster_apply BEFORE INSERT OR UPDATE OR DELETE ON vms.catalog_node
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_owned();
CREATE TRIGGER checkpoint_cluster_apply BEFORE INSERT OR UPDATE OR DELETE ON vms.checkpoint
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_owned();
CREATE TRIGGER catalog_member_cluster_apply BEFORE INSERT OR UPDATE OR DELETE ON vms.catalog_member
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_child('channel', 'channel_code');
CREATE TRIGGER channel_status_cluster_apply BEFORE INSERT OR UPDATE OR DELETE ON vms.channel_status
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_child('channel', 'code');
CREATE TRIGGER lane_cluster_apply BEFORE INSERT OR UPDATE OR DELETE ON vms.lane
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_child('checkpoint', 'checkpoint_code');
CREATE TRIGGER lane_channel_cluster_apply BEFORE INSERT OR UPDATE OR DELETE ON vms.lane_channel
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_child('checkpoint', 'checkpoint_code');
CREATE TRIGGER cluster_tag_apply_own BEFORE INSERT OR UPDATE OR DELETE ON vms.cluster_tag
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_child('tag');
CREATE TRIGGER cluster_channel_tag_apply BEFORE INSERT OR UPDATE OR DELETE ON vms.cluster_channel_tag
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_child('channel', 'channel_code');
CREATE TRIGGER cluster_security_assignment_apply BEFORE INSERT OR UPDATE OR DELETE ON vms.cluster_security_assignment
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_child('security_assignment');
CREATE TRIGGER availability_run_cluster_apply BEFORE INSERT OR UPDATE OR DELETE ON vms.availability_run
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_child('run', 'code');
CREATE TRIGGER cluster_availability_gap_apply BEFORE INSERT OR UPDATE OR DELETE ON vms.cluster_availability_gap
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_child('gap');
ALTER TABLE vms.device ENABLE REPLICA TRIGGER device_cluster_apply;
ALTER TABLE vms.channel ENABLE REPLICA TRIGGER channel_cluster_apply;
ALTER TABLE vms.catalog_node ENABLE REPLICA TRIGGER catalog_node_cluster_apply;
ALTER TABLE vms.checkpoint ENABLE REPLICA TRIGGER checkpoint_cluster_apply;
ALTER TABLE vms.catalog_member ENABLE REPLICA TRIGGER catalog_member_cluster_apply;
ALTER TABLE vms.channel_status ENABLE REPLICA TRIGGER channel_status_cluster_apply;
ALTER TABLE vms.lane ENABLE REPLICA TRIGGER lane_cluster_apply;
ALTER TABLE vms.lane_channel ENABLE REPLICA TRIGGER lane_channel_cluster_apply;
ALTER TABLE vms.cluster_tag ENABLE REPLICA TRIGGER cluster_tag_apply_own;
ALTER TABLE vms.cluster_channel_tag ENABLE REPLICA TRIGGER cluster_channel_tag_apply;
ALTER TABLE vms.cluster_security_assignment ENABLE REPLICA TRIGGER cluster_security_assignment_apply;
ALTER TABLE vms.availability_run ENABLE REPLICA TRIGGER availability_run_cluster_apply;
ALTER TABLE vms.cluster_availability_gap ENABLE REPLICA TRIGGER cluster_availability_gap_apply;

-- The compiled permission policy reads catalogue membership and tags; the
-- statement triggers that drop it do not fire for the apply worker, which
-- fires row triggers only.
CREATE TRIGGER catalog_member_policy_apply AFTER INSERT OR UPDATE OR DELETE ON vms.catalog_member
    FOR EACH ROW EXECUTE FUNCTION vms._policy_changed();
CREATE TRIGGER catalog_node_policy_apply AFTER INSERT OR UPDATE OR DELETE ON vms.catalog_node
    FOR EACH ROW EXECUTE FUNCTION vms._policy_changed();
CREATE TRIGGER channel_tag_policy_apply AFTER INSERT OR UPDATE OR DELETE ON vms.channel_tag
    FOR EACH ROW EXECUTE FUNCTION vms._policy_changed();
CREATE TRIGGER tag_policy_apply AFTER INSERT OR UPDATE OR DELETE ON vms.tag
    FOR EACH ROW EXECUTE FUNCTION vms._policy_changed();
ALTER TABLE vms.catalog_member ENABLE REPLICA TRIGGER catalog_member_policy_apply;
ALTER TABLE vms.catalog_node ENABLE REPLICA TRIGGER catalog_node_policy_apply;
ALTER TABLE vms.channel_tag ENABLE REPLICA TRIGGER channel_tag_policy_apply;
ALTER TABLE vms.tag ENABLE REPLICA TRIGGER tag_policy_apply;

-- City: the districts' own security levels, a floor under the city's own
-- (vms.channel_security_levels() takes the strictest).  A district's level
-- acts only on channels that district owns here (vms.cluster_owner): its
-- level for a code another district or the city holds does nothing.  A
-- catalogue level covers the district's channels in that node's subtree at
-- the city, a tag level (category:name) those under the city's tag of that
-- name.  The compiled policy is dropped when the levels change (any mode:
-- the apply worker fires row triggers only) and when a channel of a
-- district with levels is claimed or let go (a level may arrive before
-- its channel: the tables are first copied in parallel).
CREATE OR REPLACE FUNCTION vms._district_security_levels() RETURNS TABLE (code vms.gbcode, level smallint)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT s.code, a.level FROM vms.cluster_security_assignment a
     CROSS JOIN LATERAL (
        SELECT (CASE WHEN a.scope_kind = 'channel' THEN a.scope_ref END)::vms.gbcode WHERE a.scope_kind = 'channel'
        UNION ALL
        SELECT sc FROM vms._scope_channels('catalog', a.scope_ref) sc WHERE a.scope_kind = 'catalog'
        UNION ALL
        SELECT sc FROM vms.tag t CROSS JOIN LATERAL vms._scope_channels('tag', t.id::text) sc
         WHERE a.scope_kind = 'tag' AND t.category = split_part(a.scope_ref, ':', 1)
           AND t.name = substr(a.scope_ref, strpos(a.scope_ref, ':') + 1)) s (code)
      JOIN vms.cluster_owner o ON o.kind = 'channel' AND o.code = s.code AND o.district = a.district
     WHERE a.level > 1
$$;
COMMENT ON FUNCTION vms._district_security_levels() IS 'internal: at a city, the levels its districts set on their own channels (a floor under the city''s)';
-- In C (extension/cluster_apply.c), a probe of the primary key's index: it
-- runs for every code a district claims (the WHEN of
-- cluster_owner_policy_claim); a SQL function there was parsed and planned
-- again for each row of the apply worker, and a PL/pgSQL one with its query
-- still cost more than the probe.  Same answer: is there a row of the
-- district with a level above 1.
CREATE FUNCTION vms._cluster_has_levels(district text) RETURNS boolean
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'vms_cluster_has_levels';
COMMENT ON FUNCTION vms._cluster_has_levels(text) IS 'internal: has this district sent security levels above 1';
CREATE TRIGGER cluster_security_assignment_policy AFTER INSERT OR UPDATE OR DELETE ON vms.cluster_security_assignment
    FOR EACH ROW EXECUTE FUNCTION vms._policy_changed();
CREATE TRIGGER cluster_security_assignment_policy_truncate AFTER TRUNCATE ON vms.cluster_security_assignment
    FOR EACH STATEMENT EXECUTE FUNCTION vms._policy_changed();
CREATE TRIGGER cluster_owner_policy_claim AFTER INSERT ON vms.cluster_owner FOR EACH ROW
    WHEN (NEW.kind = 'channel' AND vms._cluster_has_levels(NEW.district)) EXECUTE FUNCTION vms._policy_changed();
CREATE TRIGGER cluster_owner_policy_release AFTER DELETE ON vms.cluster_owner FOR EACH ROW
    WHEN (OLD.kind = 'channel' AND vms._cluster_has_levels(OLD.district)) EXECUTE FUNCTION vms._policy_changed();
ALTER TABLE vms.cluster_security_assignment ENABLE ALWAYS TRIGGER cluster_security_assignment_policy;
ALTER TABLE vms.cluster_owner ENABLE ALWAYS TRIGGER cluster_owner_policy_claim;
ALTER TABLE vms.cluster_owner ENABLE ALWAYS TRIGGER cluster_owner_policy_release;

-- City, replica mode: the map's cluster cells (11_tiles.sql) are kept by
-- statement triggers with transition tables, which the apply worker never
-- fires; this row trigger appends the same signed sums for each replicated
-- channel updated (an insert or a delete: vms._cluster_apply_tiles_insert,
-- below, in C), so the city's tiles at zooms 0-12 count the districts' channels.
CREATE FUNCTION vms._cluster_apply_tiles() RETURNS trigger
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
-- the INSERT of a replicated channel (the bulk of a district's import) in C:
-- as PL/pgSQL it was a quarter of the city's apply time; and its DELETE (a
-- district's mass delete): as PL/pgSQL, 13 rows appended to the cells per
-- channel, it was four fifths of the city's apply time of 100,000 deletes
-- (7.5 s against 0.9 s with the replica triggers off)
CREATE FUNCTION vms._cluster_apply_tiles_insert() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'vms_cluster_apply_tiles_insert';
COMMENT ON FUNCTION vms._cluster_apply_tiles_insert() IS 'internal: city side: a replicated channel''s insert or delete appended to the map''s cluster cells (buffered in the apply worker, folded at commit)';
CREATE TRIGGER channel_cluster_apply_tiles AFTER UPDATE ON vms.channel
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_tiles();
CREATE TRIGGER channel_cluster_apply_tiles_ins AFTER INSERT OR DELETE ON vms.channel
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_tiles_insert();
ALTER TABLE vms.channel ENABLE REPLICA TRIGGER channel_cluster_apply_tiles;
ALTER TABLE vms.channel ENABLE REPLICA TRIGGER channel_cluster_apply_tiles_ins;
-- The apply worker's inserted and deleted channels are buffered by the C trigger above
-- and folded into vms.channel_cluster_delta set-based (summed per cell, as
-- the statement triggers do) by this deferred trigger at the transaction's
-- commit: one event a transaction (its WHEN is true for the first buffered
-- row only), and the cells commit with the channels or not at all.
CREATE FUNCTION vms._cluster_apply_tiles_due() RETURNS boolean
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'vms_cluster_apply_tiles_due';
COMMENT ON FUNCTION vms._cluster_apply_tiles_due() IS 'internal: city side: the WHEN of channel_cluster_apply_tiles_flush, true for the first channel of a transaction the apply worker buffers for the map''s cluster cells';
CREATE FUNCTION vms._cluster_apply_tiles_flush() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'vms_cluster_apply_tiles_flush';
COMMENT ON FUNCTION vms._cluster_apply_tiles_flush() IS 'internal: city side: folds the channels the apply worker buffered in this transaction into the map''s cluster cells, at commit';
CREATE CONSTRAINT TRIGGER channel_cluster_apply_tiles_flush AFTER INSERT OR DELETE ON vms.channel
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (vms._cluster_apply_tiles_due()) EXECUTE FUNCTION vms._cluster_apply_tiles_flush();
ALTER TABLE vms.channel ENABLE REPLICA TRIGGER channel_cluster_apply_tiles_flush;

-- City, replica mode: a district's tags become the city's tags (merged by
-- category and name) and its channel tags vms.channel_tag rows.
CREATE FUNCTION vms._cluster_tag_id(cat text, tag text, parent text DEFAULT NULL, hier boolean DEFAULT true)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
DECLARE
    tid bigint;
BEGIN
    SELECT t.id INTO tid FROM vms.tag t WHERE t.category = cat AND t.name = tag;
    IF tid IS NULL THEN
        INSERT INTO vms.tag_category (code, name, hierarchical) VALUES (cat, cat, hier) ON CONFLICT DO NOTHING;
        INSERT INTO vms.tag (category, name, parent_id)
        VALUES (cat, tag, CASE WHEN parent IS NOT NULL THEN vms._cluster_tag_id(cat, parent, NULL, hier) END)
        ON CONFLICT (category, name) DO NOTHING RETURNING id INTO tid;
        IF tid IS NULL THEN
            SELECT t.id INTO tid FROM vms.tag t WHERE t.category = cat AND t.name = tag;
        END IF;
    END IF;
    RETURN tid;
END $$;
COMMENT ON FUNCTION vms._cluster_tag_id(text, text, text, boolean) IS 'internal: the city''s tag id for a category and name, created (with its parent) if missing';

CREATE FUNCTION vms._cluster_apply_tags() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
DECLARE
    src text := coalesce(nullif(current_setting('vms.cluster_applying', true), ''), vms._cluster_applying());
BEGIN
    IF src NOT LIKE 'district:%' THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'cluster_tag' THEN
        IF TG_OP <> 'DELETE' THEN   -- a tag no district uses any more stays: another may use it
            PERFORM vms._cluster_tag_id(NEW.category, NEW.name, NEW.parent, NEW.hierarchical);
            IF NEW.parent IS NOT NULL THEN
                UPDATE vms.tag t SET parent_id = vms._cluster_tag_id(NEW.category, NEW.parent, NULL, NEW.hierarchical)
                 WHERE t.category = NEW.category AND t.name = NEW.name AND t.parent_id IS NULL;
            END IF;
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        DELETE FROM vms.channel_tag ct
         USING vms.tag t
         WHERE ct.channel_code = OLD.channel_code AND t.id = ct.tag_id
           AND t.category = OLD.category AND t.name = OLD.name;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO vms.channel_tag (channel_code, tag_id, source, assigned_by, assigned_at)
        VALUES (NEW.channel_code, vms._cluster_tag_id(NEW.category, NEW.name), NEW.source,
                NEW.assigned_by, NEW.assigned_at)
        ON CONFLICT (channel_code, tag_id) DO UPDATE
            SET source = EXCLUDED.source, assigned_by = EXCLUDED.assigned_by, assigned_at = EXCLUDED.assigned_at;
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._cluster_apply_tags() IS 'internal: city side of a district''s tags: merged by name into vms.tag and vms.channel_tag';
CREATE TRIGGER cluster_tag_apply AFTER INSERT OR UPDATE OR DELETE ON vms.cluster_tag
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_tags();
CREATE TRIGGER cluster_channel_tag_apply_tags AFTER INSERT OR UPDATE OR DELETE ON vms.cluster_channel_tag
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_tags();
ALTER TABLE vms.cluster_tag ENABLE REPLICA TRIGGER cluster_tag_apply;
ALTER TABLE vms.cluster_channel_tag ENABLE REPLICA TRIGGER cluster_channel_tag_apply_tags;

-- District: vms.tag and vms.channel_tag kept by natural key for the city,
-- and vms.security_assignment (a tag's by category and name).
-- Statement triggers, so that tagging in bulk costs one statement; nothing
-- is kept on a node that is not a district.  SECURITY DEFINER: whoever may
-- tag a channel (or delete one, which drops its tags) runs it, and may not
-- write the replicated copies themselves; it takes nothing from the caller
-- but the statement's transition rows.
CREATE FUNCTION vms._cluster_keep_tags() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    d text := (SELECT n.district FROM vms.cluster_node n);
BEGIN
    IF d IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'security_assignment' THEN
        IF TG_OP = 'TRUNCATE' THEN
            DELETE FROM vms.cluster_security_assignment k WHERE k.district = d;
            RETURN NULL;
        END IF;
        IF TG_OP IN ('DELETE', 'UPDATE') THEN
            DELETE FROM vms.cluster_security_assignment k USING old_rows o
             WHERE k.district = d AND k.scope_kind = o.scope_kind
               AND k.scope_ref = CASE WHEN o.scope_kind = 'tag'
                                      THEN (SELECT t.category || ':' || t.name FROM vms.tag t WHERE t.id::text = o.scope_ref)
                                      ELSE o.scope_ref END;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO vms.cluster_security_assignment (district, scope_kind, scope_ref, level)
            SELECT d, n.scope_kind, r.ref, n.level
              FROM new_rows n
             CROSS JOIN LATERAL (SELECT CASE WHEN n.scope_kind = 'tag'
                                             THEN (SELECT t.category || ':' || t.name FROM vms.tag t WHERE t.id::text = n.scope_ref)
                                             ELSE n.scope_ref END) r (ref)
             WHERE r.ref IS NOT NULL   -- a level on a tag that does not exist covers nothing
            ON CONFLICT (district, scope_kind, scope_ref) DO UPDATE SET level = EXCLUDED.level;
        END IF;
    ELSIF TG_TABLE_NAME = 'tag' THEN
        IF TG_OP = 'DELETE' THEN
            -- the channel tags went with the tag (cascade), before this ran;
            -- a level on it covers nothing any more
            DELETE FROM vms.cluster_channel_tag k USING old_rows o
             WHERE k.district = d AND k.category = o.category AND k.name = o.name;
            DELETE FROM vms.cluster_security_assignment k USING old_rows o
             WHERE k.district = d AND k.scope_kind = 'tag' AND k.scope_ref = o.category || ':' || o.name;
        ELSIF TG_OP = 'UPDATE' THEN
            UPDATE vms.cluster_channel_tag k SET category = n.category, name = n.name
              FROM old_rows o JOIN new_rows n ON n.id = o.id
             WHERE k.district = d AND k.category = o.category AND k.name = o.name
               AND (o.category, o.name) IS DISTINCT FROM (n.category, n.name);
            UPDATE vms.cluster_security_assignment k SET scope_ref = n.category || ':' || n.name
              FROM old_rows o JOIN new_rows n ON n.id = o.id
             WHERE k.district = d AND k.scope_kind = 'tag' AND k.scope_ref = o.category || ':' || o.name
               AND (o.category, o.name) IS DISTINCT FROM (n.category, n.name);
        END IF;
        IF TG_OP IN ('DELETE', 'UPDATE') THEN
            DELETE FROM vms.cluster_tag k USING old_rows o
             WHERE k.district = d AND k.category = o.category AND k.name = o.name;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO vms.cluster_tag (district, category, name, parent, hierarchical)
            SELECT d, n.category, n.name, p.name, g.hierarchical
              FROM new_rows n JOIN vms.tag_category g ON g.code = n.category
              LEFT JOIN vms.tag p ON p.id = n.parent_id
            ON CONFLICT (district, category, name) DO UPDATE SET parent = EXCLUDED.parent;
        END IF;
    ELSE
        IF TG_OP IN ('DELETE', 'UPDATE') THEN
            DELETE FROM vms.cluster_channel_tag k USING old_rows o JOIN vms.tag t ON t.id = o.tag_id
             WHERE k.district = d AND k.channel_code = o.channel_code AND k.category = t.category AND k.name = t.name;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO vms.cluster_channel_tag (district, channel_code, category, name, source, assigned_by, assigned_at)
            SELECT d, n.channel_code, t.category, t.name, n.source, n.assigned_by, n.assigned_at
              FROM new_rows n JOIN vms.tag t ON t.id = n.tag_id
            ON CONFLICT (district, channel_code, category, name) DO UPDATE
                SET source = EXCLUDED.source, assigned_by = EXCLUDED.assigned_by, assigned_at = EXCLUDED.assigned_at;
        END IF;
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._cluster_keep_tags() IS 'internal: district side: keeps vms.cluster_tag, vms.cluster_channel_tag and vms.cluster_security_assignment in step with vms.tag, vms.channel_tag and vms.security_assignment';
CREATE TRIGGER tag_cluster_keep_ins AFTER INSERT ON vms.tag
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._cluster_keep_tags();
CREATE TRIGGER tag_cluster_keep_upd AFTER UPDATE ON vms.tag
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._cluster_keep_tags();
CREATE TRIGGER tag_cluster_keep_del AFTER DELETE ON vms.tag
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._cluster_keep_tags();
CREATE TRIGGER channel_tag_cluster_keep_ins AFTER INSERT ON vms.channel_tag
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._cluster_keep_tags();
CREATE TRIGGER channel_tag_cluster_keep_upd AFTER UPDATE ON vms.channel_tag
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._cluster_keep_tags();
CREATE TRIGGER channel_tag_cluster_keep_del AFTER DELETE ON vms.channel_tag
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._cluster_keep_tags();
CREATE TRIGGER security_assignment_cluster_keep_ins AFTER INSERT ON vms.security_assignment
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._cluster_keep_tags();
CREATE TRIGGER security_assignment_cluster_keep_upd AFTER UPDATE ON vms.security_assignment
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._cluster_keep_tags();
CREATE TRIGGER security_assignment_cluster_keep_del AFTER DELETE ON vms.security_assignment
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._cluster_keep_tags();
CREATE TRIGGER security_assignment_cluster_keep_truncate AFTER TRUNCATE ON vms.security_assignment
    FOR EACH STATEMENT EXECUTE FUNCTION vms._cluster_keep_tags();

-- District: vms.availability_gap kept with the district's name for the city
-- (statement triggers; nothing is kept on a node that is not a district).
-- SECURITY DEFINER as vms._cluster_keep_tags: it takes nothing from the
-- caller but the statement's transition rows.
CREATE FUNCTION vms._cluster_keep_gaps() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    d text := (SELECT n.district FROM vms.cluster_node n);
BEGIN
    IF d IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM vms.cluster_availability_gap k WHERE k.district = d;
        RETURN NULL;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        DELETE FROM vms.cluster_availability_gap k USING old_rows o WHERE k.district = d AND k.id = o.id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO vms.cluster_availability_gap (district, id, device_code, from_ts, to_ts, reason)
        SELECT d, n.id, n.device_code, n.from_ts, n.to_ts, n.reason FROM new_rows n;
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._cluster_keep_gaps() IS 'internal: district side: keeps vms.cluster_availability_gap in step with vms.availability_gap';
CREATE TRIGGER availability_gap_cluster_keep_ins AFTER INSERT ON vms.availability_gap
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._cluster_keep_gaps();
CREATE TRIGGER availability_gap_cluster_keep_upd AFTER UPDATE ON vms.availability_gap
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._cluster_keep_gaps();
CREATE TRIGGER availability_gap_cluster_keep_del AFTER DELETE ON vms.availability_gap
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._cluster_keep_gaps();
CREATE TRIGGER availability_gap_cluster_keep_truncate AFTER TRUNCATE ON vms.availability_gap
    FOR EACH STATEMENT EXECUTE FUNCTION vms._cluster_keep_gaps();

-- District, always (the rows come from the city's publication): a
-- correction is applied as a person's edit is, with the district's history,
-- override mark, updated_at and triggers (session_replication_role is set
-- back to origin for it), so device reports never overwrite it.  A
-- withdrawn correction gives the attribute back to the device (its last
-- report) or drops the security level.  The outcome is noted in the row.
CREATE FUNCTION vms._cluster_apply_correction() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r vms.cluster_correction := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    me text := (SELECT n.district FROM vms.cluster_node n);
    role_before text := current_setting('session_replication_role');
    tbl regclass;
    n bigint;
    outcome text;
BEGIN
    IF me IS NULL OR r.district IS DISTINCT FROM me THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;   -- the city's own copy
    END IF;
    PERFORM set_config('session_replication_role', 'origin', true);
    PERFORM set_config('vms.change_reason', format('city correction by %s: %s', r.corrected_by, r.reason), true);
    BEGIN
        IF r.target = 'security_level' THEN
            IF TG_OP = 'DELETE' THEN
                DELETE FROM vms.security_assignment WHERE scope_kind = 'channel' AND scope_ref = r.code::text;
            ELSE
                INSERT INTO vms.security_assignment (scope_kind, scope_ref, level, assigned_by)
                VALUES ('channel', r.code::text, (r.value #>> '{}')::smallint, 'city:' || r.corrected_by)
                ON CONFLICT (scope_kind, scope_ref) DO UPDATE SET level = EXCLUDED.level,
                    assigned_by = EXCLUDED.assigned_by, assigned_at = now();
            END IF;
            outcome := 'applied';
        ELSE
            tbl := ('vms.' || r.target)::regclass;
            IF r.field <> ALL (vms.governed_columns(tbl)) THEN
                RAISE EXCEPTION '"%" is not a governed column of %', r.field, tbl USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF TG_OP = 'DELETE' THEN
                PERFORM vms.clear_override(tbl, r.code, r.field);
                n := 1;
            ELSE
                EXECUTE format('UPDATE %1$s t SET %2$I = (SELECT %2$I FROM jsonb_populate_record(NULL::%1$s, $2)),
                                       overridden = ARRAY(SELECT DISTINCT unnest(t.overridden || ARRAY[$3]) ORDER BY 1)
                                 WHERE t.code = $1', tbl, r.field)
                    USING r.code, jsonb_build_object(r.field, r.value), r.field;
                GET DIAGNOSTICS n = ROW_COUNT;
            END IF;
            outcome := CASE WHEN n = 0 THEN 'no such row' ELSE 'applied' END;
        END IF;
    EXCEPTION WHEN data_exception OR integrity_constraint_violation OR invalid_parameter_value
                   OR undefined_column OR feature_not_supported THEN
        -- a correction the district cannot take is noted, never retried forever
        outcome := 'refused: ' || SQLERRM;
    END;
    PERFORM set_config('vms.change_reason', '', true);
    PERFORM set_config('session_replication_role', role_before, true);
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    NEW.applied := outcome;
    NEW.applied_at := now();
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._cluster_apply_correction() IS 'internal: district side of a city correction: applied as an override with history, or its refusal noted';
CREATE TRIGGER cluster_correction_apply BEFORE INSERT OR UPDATE OR DELETE ON vms.cluster_correction
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_correction();
ALTER TABLE vms.cluster_correction ENABLE ALWAYS TRIGGER cluster_correction_apply;

-- District, replica mode: the city's naming pattern for a prefix replaces
-- the district's own.
CREATE FUNCTION vms._cluster_apply_naming() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF vms._cluster_applying() = 'city' THEN
        DELETE FROM vms.naming_pattern WHERE civil_prefix = NEW.civil_prefix;
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._cluster_apply_naming() IS 'internal: district side: the city''s naming pattern for a prefix replaces the district''s';
CREATE TRIGGER naming_pattern_cluster_apply BEFORE INSERT ON vms.naming_pattern
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_naming();
ALTER TABLE vms.naming_pattern ENABLE REPLICA TRIGGER naming_pattern_cluster_apply;

-- vms.cluster_city as the library defines it (superuser-only): the guards'
-- trigger condition, so that a session cannot turn them off with SET.
CREATE FUNCTION vms.cluster_is_city() RETURNS boolean
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'vms_cluster_is_city';
COMMENT ON FUNCTION vms.cluster_is_city() IS 'true on a city node (vms.cluster_city, set by vms.cluster_subscribe)';

-- City, sessions of people: a district's row is the district's; the city
-- corrects it with vms.cluster_correct.  Checked only on a city
-- (vms.cluster_city = on, set for the database by vms.cluster_subscribe;
-- superuser-only, read through vms.cluster_is_city()),
-- never for the apply worker (ordinary trigger, replica mode).
-- SECURITY DEFINER: anyone who may update a channel runs it, and may not
-- read the ownership table; it reads the owner of the row's own code only
-- and answers with an error naming the district, or nothing.
CREATE FUNCTION vms._cluster_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT SET enable_seqscan = off AS $$
DECLARE
    owner text;
BEGIN
    SELECT o.district INTO owner FROM vms.cluster_owner o WHERE o.kind = TG_TABLE_NAME::text AND o.code = OLD.code;
    IF owner IS NOT NULL THEN
        RAISE EXCEPTION '% % belongs to district %', TG_TABLE_NAME, OLD.code, owner
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Rows replicated from a district are changed by the district; a change made here would be lost at its next update.',
                  HINT = 'Use vms.cluster_correct() to send the district a correction.';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
COMMENT ON FUNCTION vms._cluster_guard() IS 'internal: at a city, refuses a local edit of a row a district owns';
CREATE TRIGGER device_cluster_guard BEFORE UPDATE OR DELETE ON vms.device FOR EACH ROW
    WHEN (vms.cluster_is_city()) EXECUTE FUNCTION vms._cluster_guard();
CREATE TRIGGER channel_cluster_guard BEFORE UPDATE OR DELETE ON vms.channel FOR EACH ROW
    WHEN (vms.cluster_is_city()) EXECUTE FUNCTION vms._cluster_guard();
CREATE TRIGGER checkpoint_cluster_guard BEFORE UPDATE OR DELETE ON vms.checkpoint FOR EACH ROW
    WHEN (vms.cluster_is_city()) EXECUTE FUNCTION vms._cluster_guard();

-- Wiring ----------------------------------------------------------------------

CREATE FUNCTION vms._cluster_name(district text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF district IS NULL OR district !~ '^[a-z][a-z0-9_]{0,30}$' THEN
        RAISE EXCEPTION 'district name "%" is not valid', district
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'It names subscriptions, publications and replication slots.',
                  HINT = 'Use 1 to 31 lower-case letters, digits or underscores, starting with a letter.';
    END IF;
    RETURN district;
END $$;
COMMENT ON FUNCTION vms._cluster_name(text) IS 'internal: checks a district name';

-- District: name this node and publish its ledger.  Transactional (it can
-- run inside a function); returns the publication's name.
CREATE FUNCTION vms.cluster_publish(district text) RETURNS text
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    d text := vms._cluster_name(district);
    was text := (SELECT n.district FROM vms.cluster_node n);
BEGIN
    IF was IS NOT NULL AND was <> d THEN
        RAISE EXCEPTION 'this node is already district "%"', was
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'The city owns this district''s codes under its name.',
                  HINT = 'See the README, District and city: re-seeding a district.';
    END IF;
    IF EXISTS (SELECT 1 FROM vms.cluster_district) THEN
        RAISE EXCEPTION 'this node is a city' USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'It subscribes to districts; a node is a district or a city.';
    END IF;
    INSERT INTO vms.cluster_node (district) VALUES (d) ON CONFLICT (singleton) DO NOTHING;
    INSERT INTO vms.cluster_tag (district, category, name, parent, hierarchical)
    SELECT d, t.category, t.name, p.name, g.hierarchical
      FROM vms.tag t JOIN vms.tag_category g ON g.code = t.category LEFT JOIN vms.tag p ON p.id = t.parent_id
    ON CONFLICT DO NOTHING;
    INSERT INTO vms.cluster_channel_tag (district, channel_code, category, name, source, assigned_by, assigned_at)
    SELECT d, ct.channel_code, t.category, t.name, ct.source, ct.assigned_by, ct.assigned_at
      FROM vms.channel_tag ct JOIN vms.tag t ON t.id = ct.tag_id
    ON CONFLICT DO NOTHING;
    INSERT INTO vms.cluster_security_assignment (district, scope_kind, scope_ref, level)
    SELECT d, a.scope_kind, CASE WHEN a.scope_kind = 'tag' THEN t.category || ':' || t.name ELSE a.scope_ref END, a.level
      FROM vms.security_assignment a LEFT JOIN vms.tag t ON a.scope_kind = 'tag' AND t.id::text = a.scope_ref
     WHERE a.scope_kind <> 'tag' OR t.id IS NOT NULL
    ON CONFLICT DO NOTHING;
    INSERT INTO vms.cluster_availability_gap (district, id, device_code, from_ts, to_ts, reason)
    SELECT d, g.id, g.device_code, g.from_ts, g.to_ts, g.reason FROM vms.availability_gap g
    ON CONFLICT DO NOTHING;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = 'vms_ledger') THEN
        CREATE PUBLICATION vms_ledger FOR TABLE
            vms.device (code, name, manufacturer, model, firmware, ip_address, port, transport, civil_code,
                        online, status_changed_at, registered_at, last_keepalive_at, overridden, created_at, updated_at),
            vms.channel (code, device_code, name, alias, address, civil_code, street, place_type, point_type,
                         resolution, azimuth, fov_angle, fov_range_m, install_height_m, capabilities, stream_url,
                         geom, coord_source, online, status_changed_at, overridden, created_at, updated_at),
            vms.catalog_node, vms.catalog_member,
            vms.checkpoint (code, name, direction_mode, address, road, civil_code, geom, created_at, updated_at),
            vms.lane, vms.lane_channel, vms.channel_status, vms.cluster_tag, vms.cluster_channel_tag,
            vms.cluster_security_assignment, vms.availability_run, vms.cluster_availability_gap
            -- not TRUNCATE: at the city it would hit the tables referencing
            -- these (credentials, tasks, ...) and stop the apply worker for good
            WITH (publish = 'insert, update, delete');
    END IF;
    -- a publication made before availability went up (0.3.0 upgrade): the
    -- city then runs ALTER SUBSCRIPTION ... REFRESH PUBLICATION
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables t
                    WHERE t.pubname = 'vms_ledger' AND t.schemaname = 'vms' AND t.tablename = 'availability_run') THEN
        ALTER PUBLICATION vms_ledger ADD TABLE vms.availability_run, vms.cluster_availability_gap;
    END IF;
    RETURN 'vms_ledger';
END $$;
COMMENT ON FUNCTION vms.cluster_publish(text) IS
    'district: name this node and publish its ledger (publication vms_ledger); run before the city subscribes';

-- City: register a district and publish its corrections; returns the
-- CREATE SUBSCRIPTION to run next, outside a transaction block (psql: \gexec).
CREATE FUNCTION vms.cluster_subscribe(conninfo text, district text) RETURNS text
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    d text := vms._cluster_name(district);
    sub name := 'vms_district_' || d;
    pub name := 'vms_city_' || d;
BEGIN
    IF EXISTS (SELECT 1 FROM vms.cluster_node) THEN
        RAISE EXCEPTION 'this node is a district' USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'It publishes its ledger; a node is a district or a city.';
    END IF;
    INSERT INTO vms.cluster_district (district, subscription, publication) VALUES (d, sub, pub)
    ON CONFLICT ON CONSTRAINT cluster_district_pkey DO NOTHING;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication p WHERE p.pubname = pub) THEN
        EXECUTE format('CREATE PUBLICATION %I FOR TABLE vms.cluster_correction WHERE (district = %L), vms.naming_pattern
                        WITH (publish = ''insert, update, delete'')', pub, d);
    END IF;
    EXECUTE format('ALTER DATABASE %I SET vms.cluster_city = on', current_database());
    PERFORM set_config('vms.cluster_city', 'on', false);
    -- binary: the rows travel in the types' binary forms (geometry as WKB, a
    -- code as its bytes), not as text parsed again row by row at the city
    RETURN format('CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION vms_ledger WITH (slot_name = %L, streaming = on, binary = true)',
                  sub, conninfo, sub);
END $$;
COMMENT ON FUNCTION vms.cluster_subscribe(text, text) IS
    'city: register a district and publish its corrections; returns the CREATE SUBSCRIPTION to run (outside a transaction block)';

-- District: follow the city's corrections; returns the CREATE SUBSCRIPTION.
CREATE FUNCTION vms.cluster_follow(conninfo text) RETURNS text
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    d text := (SELECT n.district FROM vms.cluster_node n);
BEGIN
    IF d IS NULL THEN
        RAISE EXCEPTION 'this node is not a district yet' USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Run vms.cluster_publish(district) first.';
    END IF;
    RETURN format('CREATE SUBSCRIPTION vms_city CONNECTION %L PUBLICATION %I WITH (slot_name = %L)',
                  conninfo, 'vms_city_' || d, 'vms_city_' || d);
END $$;
COMMENT ON FUNCTION vms.cluster_follow(text) IS
    'district: returns the CREATE SUBSCRIPTION that receives the city''s corrections (run it outside a transaction block)';

-- City: correct a district's row, or withdraw the correction (value NULL).
CREATE FUNCTION vms.cluster_correct(target text, code vms.gbcode, field text, value jsonb, reason text)
    RETURNS text
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_variable
DECLARE
    d text;
BEGIN
    PERFORM vms._require_reason(reason, 'a city correction');
    IF target NOT IN ('device', 'channel', 'security_level') THEN
        RAISE EXCEPTION 'unknown correction target "%"', target USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use device, channel or security_level.';
    END IF;
    IF target = 'security_level' THEN
        IF field IS DISTINCT FROM 'level' THEN
            RAISE EXCEPTION 'a security level correction sets the field "level"' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF value IS NOT NULL AND (jsonb_typeof(value) <> 'number' OR (value #>> '{}') NOT IN ('1', '2', '3', '4')) THEN
            RAISE EXCEPTION 'security level must be 1, 2, 3 or 4, not %', value USING ERRCODE = 'invalid_parameter_value';
        END IF;
    ELSIF field <> ALL (vms.governed_columns(('vms.' || target)::regclass)) OR field = 'unit_id' THEN
        RAISE EXCEPTION '"%" is not a column the city governs in vms.%', field, target
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'See vms.governed_columns(); unit_id is local to each node.';
    END IF;
    SELECT o.district INTO d FROM vms.cluster_owner o
     WHERE o.kind = CASE WHEN target = 'device' THEN 'device' ELSE 'channel' END AND o.code = code;
    IF d IS NULL THEN
        RAISE EXCEPTION '% % belongs to no district', CASE WHEN target = 'device' THEN 'device' ELSE 'channel' END, code
            USING ERRCODE = 'no_data_found', HINT = 'Change the city''s own rows directly.';
    END IF;
    IF value IS NULL THEN
        DELETE FROM vms.cluster_correction c
         WHERE c.district = d AND c.target = target AND c.code = code AND c.field = field;
    ELSE
        INSERT INTO vms.cluster_correction AS c (district, target, code, field, value, reason)
        VALUES (d, target, code, field, value, reason)
        ON CONFLICT ON CONSTRAINT cluster_correction_pkey DO UPDATE
            SET value = EXCLUDED.value, reason = EXCLUDED.reason,
                corrected_by = EXCLUDED.corrected_by, corrected_at = EXCLUDED.corrected_at;
    END IF;
    -- the city's own policy follows its security levels at once
    IF target = 'security_level' THEN
        IF value IS NULL THEN
            DELETE FROM vms.security_assignment a WHERE a.scope_kind = 'channel' AND a.scope_ref = code::text;
        ELSE
            INSERT INTO vms.security_assignment (scope_kind, scope_ref, level)
            VALUES ('channel', code::text, (value #>> '{}')::smallint)
            ON CONFLICT ON CONSTRAINT security_assignment_pkey DO UPDATE SET level = EXCLUDED.level,
                assigned_by = EXCLUDED.assigned_by, assigned_at = now();
        END IF;
    END IF;
    PERFORM vms.audit('cluster_correct', target || ' ' || code::text,
                      jsonb_build_object('district', d, 'field', field, 'value', value, 'reason', reason));
    RETURN d;
END $$;
COMMENT ON FUNCTION vms.cluster_correct(text, vms.gbcode, text, jsonb, text) IS
    'city: correct a governed column of a district''s device or channel, or a channel''s security level (value NULL withdraws); returns the district';

-- Both sides: the state of every vms subscription.
CREATE VIEW vms.cluster_status AS
SELECT coalesce(d.district, 'city') AS peer, s.subname AS subscription, s.subenabled AS enabled,
       st.pid, st.received_lsn, st.latest_end_lsn, st.last_msg_receipt_time, st.latest_end_time,
       ss.apply_error_count, ss.sync_error_count,
       (SELECT count(*) FROM pg_catalog.pg_subscription_rel r WHERE r.srsubid = s.oid AND r.srsubstate <> 'r') AS tables_syncing,
       CASE WHEN NOT s.subenabled THEN 'disabled'
            WHEN st.pid IS NULL THEN 'down'
            WHEN st.received_lsn IS NULL THEN 'connecting'
            WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_subscription_rel r WHERE r.srsubid = s.oid AND r.srsubstate <> 'r')
                THEN 'syncing'
            ELSE 'streaming' END AS state
  FROM pg_catalog.pg_subscription s
  LEFT JOIN vms.cluster_district d ON d.subscription = s.subname
  LEFT JOIN pg_catalog.pg_stat_subscription st ON st.subid = s.oid AND st.relid IS NULL
  LEFT JOIN pg_catalog.pg_stat_subscription_stats ss ON ss.subid = s.oid
 WHERE s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
   AND (s.subname = 'vms_city' OR d.district IS NOT NULL);
COMMENT ON VIEW vms.cluster_status IS
    'every vms subscription (a city''s districts, a district''s city): down (no apply worker: the peer cannot be reached or applying fails, see the server log), connecting, syncing, streaming or disabled';

-- City: corrections and whether the district's row shows them yet.
CREATE VIEW vms.cluster_correction_state AS
SELECT c.district, c.target, c.code, c.field, c.value, c.reason, c.corrected_by, c.corrected_at,
       CASE c.target
         WHEN 'channel' THEN (SELECT to_jsonb(x) -> c.field FROM vms.channel x WHERE x.code = c.code)
                             IS NOT DISTINCT FROM to_jsonb(jsonb_populate_record(NULL::vms.channel, jsonb_build_object(c.field, c.value))) -> c.field
         WHEN 'device' THEN (SELECT to_jsonb(x) -> c.field FROM vms.device x WHERE x.code = c.code)
                            IS NOT DISTINCT FROM to_jsonb(jsonb_populate_record(NULL::vms.device, jsonb_build_object(c.field, c.value))) -> c.field
       END AS district_shows_it
  FROM vms.cluster_correction c;
COMMENT ON VIEW vms.cluster_correction_state IS
    'city: each correction and whether the district''s replicated row carries it (NULL for security levels, which stay at the district)';
