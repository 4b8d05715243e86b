-- Ledger history, governed-value tracking and the reported (raw) layer.

CREATE TABLE vms.ledger_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name  text NOT NULL,
    code        vms.gbcode NOT NULL,
    op          text NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE')),
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changed_by  text NOT NULL DEFAULT session_user,
    acting_role text NOT NULL DEFAULT coalesce(nullif(current_setting('vms.acting_role', true), ''), current_user),
    application text DEFAULT current_setting('application_name', true),
    reason      text DEFAULT nullif(current_setting('vms.change_reason', true), ''),
    old_values  jsonb,
    new_values  jsonb
);
CREATE INDEX ledger_history_code_idx ON vms.ledger_history (code, changed_at);
CREATE INDEX ledger_history_time_idx ON vms.ledger_history (changed_at);
COMMENT ON TABLE vms.ledger_history IS 'every insert, update and delete of a device or channel: who, when, old and new values';
COMMENT ON COLUMN vms.ledger_history.changed_by IS 'session user (the person logged in)';
COMMENT ON COLUMN vms.ledger_history.acting_role IS 'current user at the time (differs under SET ROLE or SECURITY DEFINER)';
COMMENT ON COLUMN vms.ledger_history.reason IS 'value of the vms.change_reason setting, if the session set one';
COMMENT ON COLUMN vms.ledger_history.old_values IS 'whole row for DELETE; changed columns only for UPDATE';
COMMENT ON COLUMN vms.ledger_history.new_values IS 'whole row for INSERT; changed columns only for UPDATE';

CREATE FUNCTION vms._jsonb_diff(o jsonb, n jsonb, OUT old_part jsonb, OUT new_part jsonb)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(k, o -> k), '{}'), coalesce(jsonb_object_agg(k, n -> k), '{}')
      FROM jsonb_object_keys(n) AS k
     WHERE (o -> k) IS DISTINCT FROM (n -> k)
$$;
COMMENT ON FUNCTION vms._jsonb_diff(jsonb, jsonb) IS 'internal: the keys whose values differ, old and new';

-- A ledger row as history jsonb: the ledger content, without state columns
-- (online, keepalive times, updated_at, overridden) and derived columns
-- (geom_3857) that change without a
-- person changing the ledger.  Built column by column from builtin types:
-- to_jsonb() of a whole row looks up a cast per column per row and goes
-- through PostGIS's GeoJSON cast for the point, ten times slower in bulk.
-- STABLE, like jsonb_build_object, so the planner inlines them.
CREATE FUNCTION vms._device_jsonb(d vms.device) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('code', d.code::text, 'name', d.name, 'manufacturer', d.manufacturer,
        'model', d.model, 'firmware', d.firmware, 'ip_address', host(d.ip_address), 'port', d.port,
        'transport', d.transport, 'civil_code', d.civil_code, 'unit_id', d.unit_id);
-- The channel's is made in C (extension/validate.c): the same value as
-- jsonb_build_object of the same keys and values, which looks up each
-- value's type on every call (7 µs a row, a third of the history a first
-- load of the ledger writes); the regress test import compares the two.
CREATE FUNCTION vms._channel_doc(code text, device_code text, name text, alias text, address text,
        civil_code text, street text, place_type text, point_type text, resolution text,
        azimuth real, fov_angle real, fov_range_m real, install_height_m real, capabilities text[],
        unit_id bigint, stream_url text, geom text, coord_source text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'vms_channel_doc' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION vms._channel_doc(text, text, text, text, text, text, text, text, text, text, real, real, real, real, text[], bigint, text, text, text) IS
    'internal: jsonb_build_object of the channel history keys and these values, made in C';
CREATE FUNCTION vms._channel_jsonb(c vms.channel) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN vms._channel_doc(c.code::text, c.device_code::text, c.name, c.alias, c.address, c.civil_code,
        c.street, c.place_type, c.point_type, c.resolution, c.azimuth, c.fov_angle, c.fov_range_m,
        c.install_height_m, c.capabilities, c.unit_id, c.stream_url, ST_AsEWKT(c.geom), c.coord_source);
COMMENT ON FUNCTION vms._device_jsonb(vms.device) IS 'internal: a device row as history jsonb';
COMMENT ON FUNCTION vms._channel_jsonb(vms.channel) IS 'internal: a channel row as history jsonb (point as EWKT)';

-- Statement-level triggers with transition tables: one INSERT into history
-- per statement, so a million-row import writes its history in one pass.
-- They run as the owner (people cannot write history themselves); a
-- statement trigger running as the person notes who is acting.
CREATE FUNCTION vms._note_acting_role() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('vms.acting_role', current_user, true);
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._note_acting_role() IS 'internal: remembers the acting role for history written as the owner';

-- One function for the three operations of both tables: the row builder is
-- vms._<table>_jsonb, applied to the statement's transition tables.
-- SECURITY DEFINER trigger: people may not write history or the audit log
-- themselves.  It takes nothing from the caller but the rows the statement
-- changed (transition tables) and the table name; the "state only" skip
-- (vms.ledger_writer) is honoured for superuser sessions (the workers) only.
CREATE FUNCTION vms._history_record() RETURNS trigger
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
COMMENT ON FUNCTION vms._history_record() IS 'internal: records inserted, deleted and changed ledger rows';

-- A code is the identity of a device or channel; history joins on it.
CREATE FUNCTION vms._forbid_recode() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.code IS DISTINCT FROM OLD.code THEN
        RAISE EXCEPTION 'the code of a % cannot be changed in place', TG_TABLE_NAME
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('Row %s would become %s.', OLD.code, NEW.code),
                  HINT = 'Insert the row under its new code and delete the old one, so history keeps both.';
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._forbid_recode() IS 'internal: codes are identities and are not updated';

CREATE TRIGGER device_no_recode BEFORE UPDATE OF code ON vms.device
    FOR EACH ROW EXECUTE FUNCTION vms._forbid_recode();
CREATE TRIGGER channel_no_recode BEFORE UPDATE OF code ON vms.channel
    FOR EACH ROW EXECUTE FUNCTION vms._forbid_recode();

CREATE TRIGGER device_acting_role BEFORE INSERT OR UPDATE OR DELETE ON vms.device
    FOR EACH STATEMENT EXECUTE FUNCTION vms._note_acting_role();
CREATE TRIGGER channel_acting_role BEFORE INSERT OR UPDATE OR DELETE ON vms.channel
    FOR EACH STATEMENT EXECUTE FUNCTION vms._note_acting_role();
CREATE TRIGGER device_history_ins AFTER INSERT ON vms.device
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._history_record();
CREATE TRIGGER device_history_upd AFTER UPDATE ON vms.device
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._history_record();
CREATE TRIGGER device_history_del AFTER DELETE ON vms.device
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._history_record();
CREATE TRIGGER channel_history_ins AFTER INSERT ON vms.channel
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._history_record();
CREATE TRIGGER channel_history_upd AFTER UPDATE ON vms.channel
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._history_record();
CREATE TRIGGER channel_history_del AFTER DELETE ON vms.channel
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._history_record();

-- Governed attributes --------------------------------------------------------
-- A person's insert or update marks the attributes it sets as overridden.
-- Writers that are not people (a device report, the bulk import which marks
-- overrides itself) set vms.ledger_writer for their transaction and skip this.

CREATE FUNCTION vms.governed_columns(tbl regclass) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE tbl
        WHEN 'vms.device'::regclass THEN
            '{name,manufacturer,model,firmware,ip_address,port,transport,civil_code,unit_id}'::text[]
        WHEN 'vms.channel'::regclass THEN
            '{name,alias,address,civil_code,street,place_type,point_type,resolution,azimuth,fov_angle,fov_range_m,install_height_m,capabilities,unit_id,stream_url,geom}'::text[]
    END
$$;
COMMENT ON FUNCTION vms.governed_columns(regclass) IS 'attribute columns of vms.device / vms.channel that people govern and devices report';

CREATE FUNCTION vms._mark_overridden() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n jsonb := to_jsonb(NEW);
    o jsonb := CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) END;
BEGIN
    NEW.overridden := ARRAY(
        SELECT DISTINCT k FROM (
            SELECT unnest(CASE WHEN TG_OP = 'UPDATE' THEN OLD.overridden ELSE '{}' END) AS k
            UNION ALL
            SELECT c FROM unnest(vms.governed_columns(TG_RELID)) AS c
             WHERE CASE WHEN TG_OP = 'INSERT' THEN jsonb_typeof(n -> c) <> 'null' AND n -> c <> '[]'
                        ELSE (n -> c) IS DISTINCT FROM (o -> c) END
        ) s ORDER BY k);
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._mark_overridden() IS 'internal: remembers which attributes a person set';

CREATE TRIGGER device_mark_overridden BEFORE INSERT OR UPDATE ON vms.device FOR EACH ROW
    WHEN (coalesce(current_setting('vms.ledger_writer', true), '') NOT IN ('system', 'state'))
    EXECUTE FUNCTION vms._mark_overridden();
CREATE TRIGGER channel_mark_overridden BEFORE INSERT OR UPDATE ON vms.channel FOR EACH ROW
    WHEN (coalesce(current_setting('vms.ledger_writer', true), '') NOT IN ('system', 'state'))
    EXECUTE FUNCTION vms._mark_overridden();

-- Reported layer -------------------------------------------------------------

CREATE TABLE vms.device_reported (
    code         vms.gbcode PRIMARY KEY REFERENCES vms.device (code) ON DELETE CASCADE,
    reported     jsonb NOT NULL,
    reported_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.device_reported IS 'what a device last reported about itself (DeviceInfo / registration), keyed by column name';

CREATE TABLE vms.channel_reported (
    code         vms.gbcode PRIMARY KEY REFERENCES vms.channel (code) ON DELETE CASCADE,
    reported     jsonb NOT NULL,
    reported_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.channel_reported IS 'what a device''s catalog last reported about a channel, keyed by column name';

-- Apply a report to one ledger row: store it raw, then copy into every
-- governed column that no person has overridden.
CREATE FUNCTION vms._apply_report(tbl regclass, code vms.gbcode, reported jsonb, extra jsonb)
    RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    governed text[] := vms.governed_columns(tbl);
    rawtbl text := CASE tbl WHEN 'vms.device'::regclass THEN 'vms.device_reported' ELSE 'vms.channel_reported' END;
    over text[];
    cols text[];
    unknown text;
    found_rows bigint;
BEGIN
    IF jsonb_typeof(reported) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'a report must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT k INTO unknown FROM jsonb_object_keys(reported) k WHERE k <> ALL (governed) LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'report key "%" is not a governed column of %', unknown, tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Keys must be among: %s.', array_to_string(governed, ', '));
    END IF;
    PERFORM set_config('vms.ledger_writer', 'system', true);

    EXECUTE format('SELECT overridden FROM %s WHERE code = $1 FOR UPDATE', tbl) INTO over USING code;
    GET DIAGNOSTICS found_rows = ROW_COUNT;   -- EXECUTE does not set FOUND
    IF found_rows = 0 THEN
        cols := ARRAY(SELECT k FROM jsonb_object_keys(reported || extra) k);
        EXECUTE format('INSERT INTO %s (code, %s) SELECT $1, %s FROM jsonb_populate_record(NULL::%s, $2)',
                       tbl, (SELECT string_agg(quote_ident(c), ', ') FROM unnest(cols) c),
                       (SELECT string_agg(quote_ident(c), ', ') FROM unnest(cols) c), tbl)
            USING code, reported || extra;
    ELSE
        cols := ARRAY(SELECT k FROM jsonb_object_keys(reported) k WHERE k <> ALL (over));
        IF cardinality(cols) > 0 THEN
            EXECUTE format('UPDATE %s t SET (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $2)) WHERE t.code = $1',
                           tbl, (SELECT string_agg(quote_ident(c), ', ') FROM unnest(cols) c),
                           (SELECT string_agg(quote_ident(c), ', ') FROM unnest(cols) c), tbl)
                USING code, reported;
        END IF;
    END IF;

    EXECUTE format('INSERT INTO %s (code, reported) VALUES ($1, $2)
                    ON CONFLICT (code) DO UPDATE SET reported = EXCLUDED.reported, reported_at = now()', rawtbl)
        USING code, reported;
    PERFORM set_config('vms.ledger_writer', '', true);
END $$;
COMMENT ON FUNCTION vms._apply_report(regclass, vms.gbcode, jsonb, jsonb) IS 'internal: store a report and apply it to non-overridden columns';

CREATE FUNCTION vms.device_apply_report(code vms.gbcode, reported jsonb) RETURNS void
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms._apply_report('vms.device', code, reported,
                             jsonb_build_object('name', coalesce(reported ->> 'name', code::text)));
COMMENT ON FUNCTION vms.device_apply_report(vms.gbcode, jsonb) IS
    'record what a device reports about itself; updates only attributes no person has set';

CREATE FUNCTION vms.channel_apply_report(code vms.gbcode, device vms.gbcode, reported jsonb) RETURNS void
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms._apply_report('vms.channel', code, reported,
                             jsonb_build_object('device_code', device,
                                                'name', coalesce(reported ->> 'name', code::text)));
COMMENT ON FUNCTION vms.channel_apply_report(vms.gbcode, vms.gbcode, jsonb) IS
    'record what a catalog reports about a channel; updates only attributes no person has set';

-- Give a governed attribute back to the device: drop the override and take
-- the last reported value (NULL if never reported).
CREATE FUNCTION vms.clear_override(tbl regclass, code vms.gbcode, col text) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    rawtbl text := CASE tbl WHEN 'vms.device'::regclass THEN 'vms.device_reported' ELSE 'vms.channel_reported' END;
BEGIN
    IF vms.governed_columns(tbl) IS NULL OR col <> ALL (vms.governed_columns(tbl)) THEN
        RAISE EXCEPTION '"%" is not a governed column of %', col, tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'See vms.governed_columns().';
    END IF;
    PERFORM set_config('vms.ledger_writer', 'system', true);
    EXECUTE format('UPDATE %1$s t SET %2$I = (SELECT %2$I FROM jsonb_populate_record(NULL::%1$s,
                        coalesce((SELECT r.reported FROM %3$s r WHERE r.code = $1), ''{}''))),
                        overridden = array_remove(t.overridden, $2)
                    WHERE t.code = $1', tbl, col, rawtbl)
        USING code, col;
    PERFORM set_config('vms.ledger_writer', '', true);
END $$;
COMMENT ON FUNCTION vms.clear_override(regclass, vms.gbcode, text) IS
    'drop a person''s override of one attribute and take the last reported value';
