-- GA/T 1400 push to the governance chain's view library (视图库): upstreams,
-- sessions, the transactional outbox, template mapping and identifiers.

CREATE TABLE vms.viid_upstream (
    name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
    base_url      text NOT NULL CHECK (base_url ~ '^https?://[^/\s]+(/[^\s]*)?$' AND base_url !~ '/$'),
    system_id     vms.gbcode NOT NULL,
    username      text NOT NULL CHECK (length(username) BETWEEN 1 AND 127),
    password_enc  bytea NOT NULL,
    options       jsonb NOT NULL DEFAULT '{}',
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON vms.viid_upstream FROM PUBLIC;
COMMENT ON TABLE vms.viid_upstream IS 'upstream view libraries; the password is encrypted (vms.secret_encrypt)';
COMMENT ON COLUMN vms.viid_upstream.password_enc IS
    'the password, vms.secret_encrypt(password, ''viid_upstream.password_enc:'' || name): it decrypts only in its own row';

-- A password is bound to its upstream's row (the context of
-- vms.secret_encrypt): a value copied from another row does not decrypt, and
-- a value in the 0.1.0 form (no context) is not written any more, so the
-- upgrade's leftovers (see README, Secrets) stay in their own rows.  Renaming
-- an upstream needs its password again, since the name is in the context.
-- One function for every table of upstreams, vms.<kind>_upstream (name,
-- password_enc), written with vms.<kind>_add_upstream and
-- vms.<kind>_alter_upstream: vms.viid_upstream here, vms.sip_upstream
-- (25_cascade.sql); the context and the hint are taken from the table's name.
CREATE FUNCTION vms._upstream_secret_check() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    kind constant text := left(TG_TABLE_NAME, -length('_upstream'));
BEGIN
    IF TG_OP = 'INSERT' OR NEW.password_enc IS DISTINCT FROM OLD.password_enc THEN
        IF substr(NEW.password_enc, 1, 2) IS DISTINCT FROM 'V2'::bytea THEN
            RAISE EXCEPTION 'the password of upstream "%" is not encrypted for its row', NEW.name
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Use vms.%s_add_upstream or vms.%s_alter_upstream, or vms.secret_encrypt(password, %L || name).',
                                    kind, kind, TG_TABLE_NAME || '.password_enc:');
        END IF;
    ELSIF NEW.name IS DISTINCT FROM OLD.name THEN
        RAISE EXCEPTION 'renaming upstream "%" needs its password again', OLD.name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The password is encrypted for the upstream''s name.',
                  HINT = format('Set password_enc = vms.secret_encrypt(password, %L || new name) in the same UPDATE.',
                                TG_TABLE_NAME || '.password_enc:');
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._upstream_secret_check() IS
    'internal: an upstream''s password (vms.viid_upstream, vms.sip_upstream) is written in the bound form (V2) for its row; a rename re-encrypts it';
CREATE TRIGGER viid_upstream_secret_check BEFORE INSERT OR UPDATE ON vms.viid_upstream
    FOR EACH ROW EXECUTE FUNCTION vms._upstream_secret_check();
COMMENT ON COLUMN vms.viid_upstream.options IS
    'keepalive_s (60), batch_size (100), concurrency (4), timeout_ms (10000), max_attempts (10), retention_days (7), timezone (Asia/Shanghai), sync_ledger (false)';

CREATE TABLE vms.viid_session (
    upstream          text PRIMARY KEY REFERENCES vms.viid_upstream (name) ON DELETE CASCADE ON UPDATE CASCADE,
    state             text NOT NULL DEFAULT 'unregistered' CHECK (state IN ('unregistered', 'registered', 'failing')),
    registered_at     timestamptz,
    last_keepalive_at timestamptz,
    clock_offset_ms   bigint,
    failures          integer NOT NULL DEFAULT 0,
    last_status       integer,
    last_error        text,
    last_event_at     timestamptz
);
COMMENT ON TABLE vms.viid_session IS 'session state per upstream as the viid worker last saw it';

CREATE TABLE vms.viid_kind (
    kind         text PRIMARY KEY,
    path         text NOT NULL,
    list_object  text NOT NULL,
    item_object  text NOT NULL,
    id_path      text[] NOT NULL
);
INSERT INTO vms.viid_kind VALUES
    ('APE', '/VIID/APEs', 'APEListObject', 'APEObject', '{ApeID}'),
    ('Tollgate', '/VIID/Tollgates', 'TollgateListObject', 'TollgateObject', '{TollgateID}'),
    ('Lane', '/VIID/Lanes', 'LaneListObject', 'LaneObject', '{LaneID}'),
    ('MotorVehicle', '/VIID/MotorVehicles', 'MotorVehicleListObject', 'MotorVehicleObject', '{MotorVehicleID}'),
    ('NonMotorVehicle', '/VIID/NonMotorVehicles', 'NonMotorVehicleListObject', 'NonMotorVehicleObject', '{NonMotorVehicleID}'),
    ('Face', '/VIID/Faces', 'FaceListObject', 'FaceObject', '{FaceID}'),
    ('Person', '/VIID/Persons', 'PersonListObject', 'PersonObject', '{PersonID}'),
    ('Image', '/VIID/Images', 'ImageListObject', 'ImageObject', '{ImageInfo,ImageID}');
COMMENT ON TABLE vms.viid_kind IS 'GA/T 1400 object kinds: resource path, list and item object names, where the object id is';

CREATE TABLE vms.viid_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    upstream        text NOT NULL REFERENCES vms.viid_upstream (name) ON UPDATE CASCADE,
    kind            text NOT NULL REFERENCES vms.viid_kind (kind),
    object_id       text NOT NULL,
    doc             jsonb NOT NULL,
    -- the document as sent, serialised once when queued: the worker joins
    -- these into list objects without turning jsonb into text again
    payload         text GENERATED ALWAYS AS (doc::text) STORED,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     text,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    dead_at         timestamptz
);
-- the push takes due records oldest first straight from this index: no
-- sort of the backlog, no walk past delivered rows
CREATE INDEX viid_outbox_due_idx ON vms.viid_outbox (upstream, next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX viid_outbox_delivered_idx ON vms.viid_outbox (delivered_at) WHERE state = 'delivered';
COMMENT ON TABLE vms.viid_outbox IS 'records to push: pending, delivered or dead, with attempts, last status and times';

CREATE FUNCTION vms._viid_check_options(options jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    k text;
    v jsonb;
    limits constant jsonb := '{"keepalive_s": [10, 3600], "batch_size": [1, 1000], "concurrency": [1, 64],
                               "timeout_ms": [100, 120000], "max_attempts": [1, 100], "retention_days": [1, 365]}';
BEGIN
    IF jsonb_typeof(options) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'upstream options must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(options) LOOP
        IF limits ? k THEN
            IF jsonb_typeof(v) <> 'number' OR (v::text)::numeric <> trunc((v::text)::numeric)
               OR (v::text)::numeric NOT BETWEEN (limits -> k ->> 0)::numeric AND (limits -> k ->> 1)::numeric THEN
                RAISE EXCEPTION 'upstream option "%" must be an integer from % to %', k, limits -> k ->> 0, limits -> k ->> 1
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSIF k = 'sync_ledger' THEN
            IF jsonb_typeof(v) <> 'boolean' THEN
                RAISE EXCEPTION 'upstream option "sync_ledger" must be true or false' USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSIF k = 'timezone' THEN
            IF jsonb_typeof(v) <> 'string' OR NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = v #>> '{}') THEN
                RAISE EXCEPTION 'upstream option "timezone" must be a time zone name' USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSE
            RAISE EXCEPTION 'unknown upstream option "%"', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Options are keepalive_s, batch_size, concurrency, timeout_ms, max_attempts, retention_days, timezone, sync_ledger.';
        END IF;
    END LOOP;
    RETURN options;
END $$;
COMMENT ON FUNCTION vms._viid_check_options(jsonb) IS 'internal: validates upstream options';

CREATE FUNCTION vms.viid_add_upstream(name text, base_url text, system_id vms.gbcode, username text,
                                      password text, options jsonb DEFAULT '{}')
    RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF base_url IS NULL OR base_url !~ '^https?://[^/\s]+(/[^\s]*)?$' OR base_url ~ '/$' THEN
        RAISE EXCEPTION 'upstream base URL "%" is not usable', base_url
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give http(s)://host[:port][/prefix] without a trailing slash; /VIID/... is appended.';
    END IF;
    IF coalesce(password, '') = '' OR length(password) > 256 THEN
        RAISE EXCEPTION 'upstream password must have 1 to 256 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO vms.viid_upstream (name, base_url, system_id, username, password_enc, options)
    VALUES (name, base_url, system_id, username, vms.secret_encrypt(password, 'viid_upstream.password_enc:' || name),
            vms._viid_check_options(options));
    INSERT INTO vms.viid_session (upstream) VALUES (name);
    PERFORM vms._wake_worker('viid');
END $$;
COMMENT ON FUNCTION vms.viid_add_upstream(text, text, vms.gbcode, text, text, jsonb) IS
    'add an upstream view library (base URL without /VIID, our system id, digest user and password, options)';

CREATE FUNCTION vms.viid_alter_upstream(name text, base_url text DEFAULT NULL, username text DEFAULT NULL,
                                        password text DEFAULT NULL, options jsonb DEFAULT NULL,
                                        enabled boolean DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE vms.viid_upstream u SET
        base_url = coalesce(viid_alter_upstream.base_url, u.base_url),
        username = coalesce(viid_alter_upstream.username, u.username),
        password_enc = CASE WHEN viid_alter_upstream.password IS NOT NULL
                            THEN vms.secret_encrypt(viid_alter_upstream.password,
                                                    'viid_upstream.password_enc:' || u.name)
                            ELSE u.password_enc END,
        options = CASE WHEN viid_alter_upstream.options IS NULL THEN u.options
                       ELSE vms._viid_check_options(u.options || viid_alter_upstream.options) END,
        enabled = coalesce(viid_alter_upstream.enabled, u.enabled)
     WHERE u.name = viid_alter_upstream.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'upstream "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM vms._wake_worker('viid');
END $$;
COMMENT ON FUNCTION vms.viid_alter_upstream(text, text, text, text, jsonb, boolean) IS 'change an upstream; options are merged';

CREATE FUNCTION vms.viid_drop_upstream(name text, force boolean DEFAULT false) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    pending bigint;
BEGIN
    SELECT count(*) INTO pending FROM vms.viid_outbox o WHERE o.upstream = viid_drop_upstream.name AND o.state = 'pending';
    IF pending > 0 AND NOT force THEN
        RAISE EXCEPTION 'upstream "%" still has % pending records', name, pending
            USING ERRCODE = 'object_in_use', HINT = 'Wait for delivery, or drop with force => true to discard them.';
    END IF;
    DELETE FROM vms.viid_outbox o WHERE o.upstream = viid_drop_upstream.name;
    DELETE FROM vms.viid_upstream u WHERE u.name = viid_drop_upstream.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'upstream "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
END $$;
COMMENT ON FUNCTION vms.viid_drop_upstream(text, boolean) IS 'remove an upstream; refuses while records are pending unless forced';

CREATE VIEW vms.viid_session_status AS
SELECT u.name AS upstream, u.base_url, u.enabled, s.state, s.registered_at, s.last_keepalive_at,
       s.clock_offset_ms, s.failures, s.last_status, s.last_error, s.last_event_at,
       (SELECT count(*) FROM vms.viid_outbox o WHERE o.upstream = u.name AND o.state = 'pending') AS pending,
       (SELECT count(*) FROM vms.viid_outbox o WHERE o.upstream = u.name AND o.state = 'dead') AS dead
  FROM vms.viid_upstream u LEFT JOIN vms.viid_session s ON s.upstream = u.name;
COMMENT ON VIEW vms.viid_session_status IS 'per upstream: session state, clock offset, last error, pending and dead records';

-- Template mapping (数据治理模板映射) ------------------------------------------------
CREATE TABLE vms.viid_template (
    name  text PRIMARY KEY,
    kind  text REFERENCES vms.viid_kind (kind),
    spec  jsonb NOT NULL CHECK (jsonb_typeof(spec) = 'object')
);
COMMENT ON TABLE vms.viid_template IS
    'templates mapping a vendor''s near-GA/T 1400 document to the standard: {"rename": {from: to}, "values": {field: {from: to}}, "defaults": {field: value}, "dates": {field: input format}, "required": [fields]}';

CREATE FUNCTION vms.viid_map(template text, doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    t vms.viid_template;
    out jsonb := '{}';
    k text;
    v jsonb;
    f text;
    fmt text;
BEGIN
    SELECT * INTO t FROM vms.viid_template WHERE name = template;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'template "%" does not exist', template USING ERRCODE = 'undefined_object';
    END IF;
    IF jsonb_typeof(doc) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'document must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(doc) LOOP        -- renamed fields
        out := out || jsonb_build_object(coalesce(t.spec -> 'rename' ->> k, k), v);
    END LOOP;
    FOR f IN SELECT jsonb_object_keys(coalesce(t.spec -> 'values', '{}')) LOOP   -- value maps
        IF out ? f AND jsonb_typeof(out -> f) <> 'null' THEN
            IF NOT (t.spec -> 'values' -> f) ? (out ->> f) THEN
                RAISE EXCEPTION 'field "%" has value "%" that template "%" cannot map', f, out ->> f, template
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = format('Known values: %s.', (SELECT string_agg(x, ', ') FROM jsonb_object_keys(t.spec -> 'values' -> f) x));
            END IF;
            out := jsonb_set(out, ARRAY[f], t.spec -> 'values' -> f -> (out ->> f));
        END IF;
    END LOOP;
    FOR f, fmt IN SELECT * FROM jsonb_each_text(coalesce(t.spec -> 'dates', '{}')) LOOP   -- dates → yyyyMMddHHmmss
        IF out ? f AND jsonb_typeof(out -> f) = 'string' THEN
            BEGIN
                out := jsonb_set(out, ARRAY[f], to_jsonb(to_char(to_timestamp(out ->> f, fmt)::timestamp, 'YYYYMMDDHH24MISS')));
            EXCEPTION WHEN OTHERS THEN
                RAISE EXCEPTION 'field "%" value "%" is not a date in format "%"', f, out ->> f, fmt
                    USING ERRCODE = 'invalid_datetime_format';
            END;
        END IF;
    END LOOP;
    out := coalesce(t.spec -> 'defaults', '{}') || out;          -- defaults for what is missing
    FOR f IN SELECT jsonb_array_elements_text(coalesce(t.spec -> 'required', '[]')) LOOP
        IF NOT out ? f OR jsonb_typeof(out -> f) = 'null' OR out ->> f = '' THEN
            RAISE EXCEPTION 'field "%" is required by template "%"', f, template
                USING ERRCODE = 'not_null_violation';
        END IF;
    END LOOP;
    RETURN out;
END $$;
COMMENT ON FUNCTION vms.viid_map(text, jsonb) IS 'map a vendor document to GA/T 1400 with a template; an unmappable document fails naming the field';

-- Identifiers ---------------------------------------------------------------------
-- 41 digits: device (20) + type (2) + time yyyyMMddHHmmss (14) + serial (5)
-- 48 digits: the 41-digit source id + object type (2) + serial (5)
CREATE FUNCTION vms.viid_image_id(device vms.gbcode, type integer, at timestamp, serial integer) RETURNS text
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF type NOT BETWEEN 0 AND 99 OR serial NOT BETWEEN 0 AND 99999 THEN
        RAISE EXCEPTION 'type must be 0-99 and serial 0-99999' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN device::text || lpad(type::text, 2, '0') || to_char(at, 'YYYYMMDDHH24MISS') || lpad(serial::text, 5, '0');
END $$;
COMMENT ON FUNCTION vms.viid_image_id(vms.gbcode, integer, timestamp, integer) IS '41-digit image/file id: device, type, time, serial';

CREATE FUNCTION vms.viid_object_id(source_id text, type integer, serial integer) RETURNS text
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF cardinality(vms.viid_id_problems(source_id)) > 0 OR length(source_id) <> 41 THEN
        RAISE EXCEPTION 'source id "%" is not a valid 41-digit id', source_id
            USING ERRCODE = 'invalid_parameter_value', DETAIL = array_to_string(vms.viid_id_problems(source_id), '; ');
    END IF;
    IF type NOT BETWEEN 0 AND 99 OR serial NOT BETWEEN 0 AND 99999 THEN
        RAISE EXCEPTION 'type must be 0-99 and serial 0-99999' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN source_id || lpad(type::text, 2, '0') || lpad(serial::text, 5, '0');
END $$;

-- Problems of a 41- or 48-digit id: length, digits, device part, time part.
CREATE FUNCTION vms.viid_id_problems(id text) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    p text[] := '{}';
    ts text;
BEGIN
    IF id IS NULL OR length(id) NOT IN (41, 48) THEN
        RETURN ARRAY[format('length %s is neither 41 nor 48', coalesce(length(id), 0))];
    END IF;
    IF id !~ '^[0-9]+$' THEN
        RETURN ARRAY['contains characters that are not digits'];
    END IF;
    IF vms.gbcode_parse_error(left(id, 20)) IS NULL THEN
        p := p || ARRAY(SELECT 'device part: ' || detail FROM vms.gbcode_check(left(id, 20)::vms.gbcode));
    END IF;
    ts := substr(id, 23, 14);
    BEGIN
        IF to_char(to_timestamp(ts, 'YYYYMMDDHH24MISS'), 'YYYYMMDDHH24MISS') <> ts THEN
            p := p || format('time part %s is not a valid time', ts);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        p := p || format('time part %s is not a valid time', ts);
    END;
    RETURN p;
END $$;
COMMENT ON FUNCTION vms.viid_id_problems(text) IS 'what is wrong with a 41-digit image/file id or 48-digit object id (empty when valid)';
COMMENT ON FUNCTION vms.viid_object_id(text, integer, integer) IS '48-digit object id from its 41-digit source id, object type and serial';

-- Outbox ----------------------------------------------------------------------------
CREATE FUNCTION vms.viid_enqueue(upstream text, kind text, doc jsonb, template text DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    k vms.viid_kind;
    d jsonb := CASE WHEN template IS NULL THEN doc ELSE vms.viid_map(template, doc) END;
    oid_ text;
    id bigint;
BEGIN
    SELECT * INTO k FROM vms.viid_kind WHERE viid_kind.kind = viid_enqueue.kind;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown GA/T 1400 kind "%"', kind USING ERRCODE = 'invalid_parameter_value',
              HINT = (SELECT 'Kinds are ' || string_agg(vk.kind, ', ' ORDER BY vk.kind) || '.' FROM vms.viid_kind vk);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM vms.viid_upstream u WHERE u.name = viid_enqueue.upstream) THEN
        RAISE EXCEPTION 'upstream "%" does not exist', upstream USING ERRCODE = 'undefined_object';
    END IF;
    IF jsonb_typeof(d) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'document must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    oid_ := d #>> k.id_path;
    IF coalesce(oid_, '') = '' THEN
        RAISE EXCEPTION '% document lacks its id field "%"', kind, array_to_string(k.id_path, '.')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Records need stable ids so the receiver can de-duplicate repeated deliveries.';
    END IF;
    INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc) VALUES (upstream, kind, oid_, d) RETURNING viid_outbox.id INTO id;
    PERFORM vms._wake_worker('viid');
    RETURN id;
END $$;
COMMENT ON FUNCTION vms.viid_enqueue(text, text, jsonb, text) IS
    'queue a record for an upstream in the caller''s transaction (nothing is sent if it rolls back); optionally through a template';

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

-- Template mapping for vms.viid_enqueue_many (extension/viid_outbox.c):
-- every document as vms.viid_map maps it, in one call, for a template of
-- the documented shape (NULL for another shape: the caller then uses
-- vms.viid_map); the first bad document fails the call, naming its position.
CREATE FUNCTION vms._viid_map_many(template text, docs jsonb[]) RETURNS jsonb[]
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'vms_viid_map_many';
COMMENT ON FUNCTION vms._viid_map_many(text, jsonb[]) IS
    'internal: vms.viid_map over many documents in C for a template of the documented shape (else NULL); errors name the document''s position';

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

-- The next batches after a cursor (next_attempt_at, id): the worker moves
-- the cursor past what it has claimed, so records in flight are not claimed
-- twice and no claim re-reads them.
CREATE FUNCTION vms._viid_batches(upstream text, batch_size integer, max_batches integer,
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

-- Apply one answer to its batch: per-item status from ResponseStatusListObject.
CREATE FUNCTION vms._viid_results(upstream text, ids bigint[], http_status integer, body text, error text)
    RETURNS TABLE (delivered integer, failed integer, dead integer)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    j jsonb;
    statuses jsonb := '{}';
    all_status text;
    max_attempts integer;
    problem text;
BEGIN
    SELECT coalesce((u.options ->> 'max_attempts')::int, 10) INTO max_attempts
      FROM vms.viid_upstream u WHERE u.name = _viid_results.upstream;
    BEGIN
        j := body::jsonb;
    EXCEPTION WHEN OTHERS THEN
        j := NULL;
    END;
    IF j ? 'ResponseStatusListObject' THEN
        SELECT coalesce(jsonb_object_agg(s ->> 'Id', s ->> 'StatusCode'), '{}') INTO statuses
          FROM jsonb_array_elements(CASE jsonb_typeof(j -> 'ResponseStatusListObject' -> 'ResponseStatusObject')
                                        WHEN 'array' THEN j -> 'ResponseStatusListObject' -> 'ResponseStatusObject'
                                        ELSE jsonb_build_array(j -> 'ResponseStatusListObject' -> 'ResponseStatusObject') END) s;
    ELSIF j ? 'ResponseStatusObject' THEN
        all_status := j -> 'ResponseStatusObject' ->> 'StatusCode';
    END IF;
    problem := CASE
        WHEN error IS NOT NULL THEN 'transport: ' || left(error, 200)
        WHEN http_status NOT BETWEEN 200 AND 299 THEN 'HTTP ' || http_status
        WHEN j IS NULL THEN 'answer is not JSON' END;

    RETURN QUERY
    -- by id only (the primary key); a state condition here would lure the
    -- planner onto the pending index and a scan of the whole backlog
    WITH r AS MATERIALIZED (
        SELECT o.id, o.state, CASE WHEN problem IS NOT NULL THEN NULL
                                   ELSE coalesce(statuses ->> o.object_id, all_status) END AS code
          FROM vms.viid_outbox o WHERE o.id = ANY (ids)),
    upd AS (
        UPDATE vms.viid_outbox o SET
            state = CASE WHEN r.code = '0' THEN 'delivered'
                         WHEN o.attempts + 1 >= max_attempts THEN 'dead' ELSE 'pending' END,
            attempts = o.attempts + 1,
            delivered_at = CASE WHEN r.code = '0' THEN now() END,
            dead_at = CASE WHEN r.code IS DISTINCT FROM '0' AND o.attempts + 1 >= max_attempts THEN now() END,
            last_status = coalesce(r.code, nullif(http_status, 0)::text),
            last_error = CASE WHEN r.code = '0' THEN NULL
                              ELSE coalesce(problem, CASE WHEN r.code IS NULL THEN 'no status for this item'
                                                          ELSE 'StatusCode ' || r.code END) END,
            -- exponential backoff with jitter: 2^attempts s, at most 5 min
            next_attempt_at = CASE WHEN r.code = '0' THEN o.next_attempt_at
                                   ELSE now() + make_interval(secs => least(300, 2 ^ least(o.attempts, 9)) * (0.5 + random() / 2)) END
          FROM r WHERE o.id = r.id AND r.state = 'pending'
        RETURNING o.state)
    SELECT count(*) FILTER (WHERE state = 'delivered')::int, count(*) FILTER (WHERE state = 'pending')::int,
           count(*) FILTER (WHERE state = 'dead')::int FROM upd;
END $$;
COMMENT ON FUNCTION vms._viid_results(text, bigint[], integer, text, text) IS 'internal: record an answer: delivered, retry with backoff, or dead';

CREATE FUNCTION vms._viid_session_event(upstream text, event text, http_status integer, body text, error text)
    RETURNS boolean
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    j jsonb;
    ok boolean;
    code text;
    tz text;
    remote timestamptz;
BEGIN
    BEGIN
        j := body::jsonb;
    EXCEPTION WHEN OTHERS THEN
        j := NULL;
    END;
    code := j -> 'ResponseStatusObject' ->> 'StatusCode';
    ok := error IS NULL AND http_status BETWEEN 200 AND 299 AND coalesce(code, '0') = '0';
    IF event = 'time' THEN
        SELECT coalesce(u.options ->> 'timezone', 'Asia/Shanghai') INTO tz FROM vms.viid_upstream u WHERE u.name = upstream;
        BEGIN
            remote := to_timestamp(j -> 'SystemTimeObject' ->> 'LocalTime', 'YYYYMMDDHH24MISS')::timestamp AT TIME ZONE tz;
        EXCEPTION WHEN OTHERS THEN
            remote := NULL;
        END;
        UPDATE vms.viid_session s SET clock_offset_ms = round(extract(epoch FROM remote - clock_timestamp()) * 1000),
                                      last_event_at = now()
         WHERE s.upstream = _viid_session_event.upstream AND remote IS NOT NULL;
        RETURN remote IS NOT NULL;
    END IF;
    INSERT INTO vms.viid_session AS s (upstream) VALUES (upstream) ON CONFLICT DO NOTHING;
    UPDATE vms.viid_session s SET
        state = CASE WHEN ok THEN 'registered' WHEN event = 'register' THEN 'unregistered' ELSE 'failing' END,
        registered_at = CASE WHEN ok AND event = 'register' THEN now() ELSE s.registered_at END,
        last_keepalive_at = CASE WHEN ok AND event = 'keepalive' THEN now() ELSE s.last_keepalive_at END,
        failures = CASE WHEN ok THEN 0 ELSE s.failures + 1 END,
        last_status = http_status,
        last_error = CASE WHEN ok THEN s.last_error
                          ELSE event || ': ' || coalesce(error, 'HTTP ' || http_status || coalesce(', StatusCode ' || code, '')) END,
        last_event_at = now()
     WHERE s.upstream = _viid_session_event.upstream;
    IF event = 'keepalive' AND ok THEN
        PERFORM vms.viid_prune(upstream);
    END IF;
    RETURN ok;
END $$;
COMMENT ON FUNCTION vms._viid_session_event(text, text, integer, text, text) IS 'internal: record a register / keepalive / time answer';

CREATE FUNCTION vms.viid_prune(upstream text DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM vms.viid_outbox o USING vms.viid_upstream u
     WHERE o.upstream = u.name AND (viid_prune.upstream IS NULL OR u.name = viid_prune.upstream)
       AND o.state = 'delivered'
       AND o.delivered_at < now() - make_interval(days => coalesce((u.options ->> 'retention_days')::int, 7));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.viid_prune(text) IS 'delete delivered records older than the upstream''s retention (the worker runs it after keepalives)';

CREATE FUNCTION vms.viid_redrive(upstream text DEFAULT NULL, ids bigint[] DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n bigint;
BEGIN
    UPDATE vms.viid_outbox o SET state = 'pending', attempts = 0, next_attempt_at = now(), dead_at = NULL
     WHERE o.state = 'dead' AND (viid_redrive.upstream IS NULL OR o.upstream = viid_redrive.upstream)
       AND (viid_redrive.ids IS NULL OR o.id = ANY (viid_redrive.ids));
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM vms._wake_worker('viid');
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.viid_redrive(text, bigint[]) IS 'send dead records again (all, an upstream''s, or the given ids)';

-- Documents from the ledger ---------------------------------------------------------
CREATE FUNCTION vms.viid_ape_doc(c vms.channel) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'ApeID', c.code::text, 'Name', c.name, 'Model', d.model, 'IPAddr', host(d.ip_address), 'Port', d.port,
        'Longitude', round(ST_X(c.geom)::numeric, 6), 'Latitude', round(ST_Y(c.geom)::numeric, 6),
        'PlaceCode', c.civil_code, 'OrgCode', u.code, 'MonitorDirection', c.azimuth,
        'IsOnline', CASE WHEN c.online THEN '1' ELSE '2' END,
        'FunctionType', CASE WHEN c.point_type = 'capture' THEN '1' ELSE '2' END,
        'PositionType', c.place_type))
      FROM vms.device d LEFT JOIN vms.org_unit u ON u.id = c.unit_id WHERE d.code = c.device_code
$$;
COMMENT ON FUNCTION vms.viid_ape_doc(vms.channel) IS 'APEObject for a channel';

CREATE FUNCTION vms.viid_tollgate_doc(k vms.checkpoint) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path FROM CURRENT
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'TollgateID', k.code::text, 'Name', k.name, 'Longitude', round(ST_X(k.geom)::numeric, 6),
        'Latitude', round(ST_Y(k.geom)::numeric, 6), 'PlaceCode', k.civil_code, 'Status', '1',
        'TollgateCat', CASE k.direction_mode WHEN 'updown' THEN '10' ELSE '20' END,
        'LaneNum', (SELECT count(*) FROM vms.lane l WHERE l.checkpoint_code = k.code)));
COMMENT ON FUNCTION vms.viid_tollgate_doc(vms.checkpoint) IS 'TollgateObject for a checkpoint';

CREATE FUNCTION vms.viid_lane_doc(l vms.lane) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path FROM CURRENT
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'LaneID', l.checkpoint_code::text || lpad(l.lane_no::text, 2, '0'), 'TollgateID', l.checkpoint_code::text,
        'LaneNo', l.lane_no, 'Name', l.name,
        'Direction', CASE l.direction WHEN 'E2W' THEN '1' WHEN 'W2E' THEN '2' WHEN 'S2N' THEN '3' WHEN 'N2S' THEN '4'
                                       WHEN 'SE2NW' THEN '5' WHEN 'NW2SE' THEN '6' WHEN 'NE2SW' THEN '7' WHEN 'SW2NE' THEN '8'
                                       WHEN 'up' THEN '9' WHEN 'down' THEN '10' END,
        'ApeID', (SELECT min(lc.channel_code::text) FROM vms.lane_channel lc
                   WHERE lc.checkpoint_code = l.checkpoint_code AND lc.lane_no = l.lane_no)));
COMMENT ON FUNCTION vms.viid_lane_doc(vms.lane) IS 'LaneObject for a lane (LaneID = checkpoint code + 2-digit lane number)';

-- Ledger changes reach upstreams that asked for it (options.sync_ledger).
-- SECURITY DEFINER trigger: whoever edits the ledger may not read the
-- upstreams or write the outbox.  It takes nothing from the caller but the
-- changed rows, and queues them only for enabled upstreams that asked.
CREATE FUNCTION vms._viid_sync_ledger() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.viid_upstream WHERE enabled AND (options ->> 'sync_ledger')::boolean) THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'channel' AND TG_OP = 'UPDATE' THEN
        -- only ledger content; online flips and keepalive state are not worth a push
        INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
        SELECT u.name, 'APE', n.code::text, vms.viid_ape_doc(n)
          FROM new_rows n JOIN old_rows o ON o.code = n.code CROSS JOIN vms.viid_upstream u
         WHERE u.enabled AND (u.options ->> 'sync_ledger')::boolean
           AND vms._channel_jsonb(n) IS DISTINCT FROM vms._channel_jsonb(o);
    ELSIF TG_TABLE_NAME = 'channel' THEN
        INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
        SELECT u.name, 'APE', n.code::text, vms.viid_ape_doc(n)
          FROM new_rows n CROSS JOIN vms.viid_upstream u
         WHERE u.enabled AND (u.options ->> 'sync_ledger')::boolean;
    ELSIF TG_TABLE_NAME = 'checkpoint' THEN
        INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
        SELECT u.name, 'Tollgate', n.code::text, vms.viid_tollgate_doc(n)
          FROM new_rows n CROSS JOIN vms.viid_upstream u
         WHERE u.enabled AND (u.options ->> 'sync_ledger')::boolean;
    ELSE
        INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
        SELECT u.name, 'Lane', n.checkpoint_code::text || lpad(n.lane_no::text, 2, '0'), vms.viid_lane_doc(n)
          FROM new_rows n CROSS JOIN vms.viid_upstream u
         WHERE u.enabled AND (u.options ->> 'sync_ledger')::boolean;
    END IF;
    PERFORM vms._wake_worker('viid');
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._viid_sync_ledger() IS 'internal: queue APE, Tollgate and Lane updates when the ledger changes';
CREATE TRIGGER channel_viid_ins AFTER INSERT ON vms.channel REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_sync_ledger();
CREATE TRIGGER channel_viid_upd AFTER UPDATE ON vms.channel REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_sync_ledger();
CREATE TRIGGER checkpoint_viid_ins AFTER INSERT ON vms.checkpoint REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_sync_ledger();
CREATE TRIGGER checkpoint_viid_upd AFTER UPDATE ON vms.checkpoint REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_sync_ledger();
CREATE TRIGGER lane_viid_ins AFTER INSERT ON vms.lane REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_sync_ledger();
CREATE TRIGGER lane_viid_upd AFTER UPDATE ON vms.lane REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_sync_ledger();
