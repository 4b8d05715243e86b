-- GB/T 28181 cascade (级联): vms as a lower platform.  Upper platforms the
-- SIP worker registers to (vms.sip_upstream, password encrypted for its
-- row), their registration state and its transitions, and what each one is
-- shared (a scope of the inspection plans' shape, with per-upstream codes
-- and names).  The worker answers an upper platform's queries from
-- vms._sip_upstream_answer, which builds the MANSCDP bodies here, in SQL.

CREATE TABLE vms.sip_upstream (
    name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
    host          text NOT NULL CHECK (host ~ '^[0-9]{1,3}(\.[0-9]{1,3}){3}$'),
    port          integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    platform_id   vms.gbcode NOT NULL,
    password_enc  bytea NOT NULL,
    options       jsonb NOT NULL DEFAULT '{}',
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON vms.sip_upstream FROM PUBLIC;
COMMENT ON TABLE vms.sip_upstream IS
    'upper GB/T 28181 platforms the SIP worker registers to (vms as a lower platform); the password is encrypted (vms.secret_encrypt)';
COMMENT ON COLUMN vms.sip_upstream.host IS 'the upper platform''s SIP address (IPv4)';
COMMENT ON COLUMN vms.sip_upstream.platform_id IS 'the upper platform''s 20-digit SIP id';
COMMENT ON COLUMN vms.sip_upstream.password_enc IS
    'the password, vms.secret_encrypt(password, ''sip_upstream.password_enc:'' || name): it decrypts only in its own row';
COMMENT ON COLUMN vms.sip_upstream.options IS
    'local_id (vms.sip_id), realm (first 10 digits of platform_id), transport (udp, or tcp: one connection vms opens), expires (3600), keepalive_interval (60), keepalive_count (3), charset (GB2312), send_status (true), catalog_page_size (20), media_nets (the networks an INVITE may make a device stream to; the upstream''s own address), catalog_push_interval (600 s; 0: never), reconcile_interval (10 s: a subscribed share is compared with what was told this often, besides at once on a change), catalog_tree (false: channels under vms''s id; true: under their catalogue nodes, which are presented too)';

-- the bound form of vms.secret_encrypt for the row, as for vms.viid_upstream
-- (the same trigger function, 15_viid.sql)
CREATE TRIGGER sip_upstream_secret_check BEFORE INSERT OR UPDATE ON vms.sip_upstream
    FOR EACH ROW EXECUTE FUNCTION vms._upstream_secret_check();

-- Registration state: one row per upstream, written by the worker in
-- batches; every change of state is a row of vms.sip_upstream_event, and
-- only the transitions listed in vms.sip_upstream_transition can be.
CREATE TABLE vms.sip_upstream_transition (
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    PRIMARY KEY (from_state, to_state)
);
INSERT INTO vms.sip_upstream_transition VALUES
    ('unregistered', 'registering'), ('unregistered', 'disabled'),
    ('registering', 'registered'), ('registering', 'failing'), ('registering', 'disabled'),
    ('registered', 'registering'), ('registered', 'failing'), ('registered', 'disabled'),
    ('failing', 'registering'), ('failing', 'disabled'),
    ('disabled', 'unregistered'), ('disabled', 'registering');
COMMENT ON TABLE vms.sip_upstream_transition IS
    'the registration state machine of an upper platform: the transitions vms.sip_upstream_event may record';

CREATE TABLE vms.sip_upstream_state (
    upstream           text PRIMARY KEY REFERENCES vms.sip_upstream (name) ON DELETE CASCADE ON UPDATE CASCADE,
    state              text NOT NULL DEFAULT 'unregistered'
                       CHECK (state IN ('unregistered', 'registering', 'registered', 'failing', 'disabled')),
    since              timestamptz NOT NULL DEFAULT now(),
    registered_at      timestamptz,
    expires_at         timestamptz,
    last_keepalive_at  timestamptz,
    missed_keepalives  integer NOT NULL DEFAULT 0,
    failures           integer NOT NULL DEFAULT 0,
    last_status        integer,
    last_error         text,
    next_attempt_at    timestamptz,
    alarm_cursor       bigint,
    subscriptions      jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE vms.sip_upstream_state IS
    'registration to each upper platform as the SIP worker last wrote it: state since when, expiry, keepalives answered and missed, consecutive failures, the last status and error, the next attempt';
COMMENT ON COLUMN vms.sip_upstream_state.alarm_cursor IS
    'the last vms.alarm id considered for forwarding to this upper platform (NULL: not started; forwarding starts at the newest alarm)';
COMMENT ON COLUMN vms.sip_upstream_state.subscriptions IS
    'the upper platform''s subscriptions the worker serves: {"Catalog"|"Alarm"|"MobilePosition": {"expires_at": epoch, "filter": the SUBSCRIBE body, "interval", and its dialog: "call_id", "their_tag", "our_tag", "cseq"}}; a restarted worker serves them on';

CREATE TABLE vms.sip_upstream_event (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    upstream    text NOT NULL REFERENCES vms.sip_upstream (name) ON DELETE CASCADE ON UPDATE CASCADE,
    at          timestamptz NOT NULL,
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    cause       text,
    FOREIGN KEY (from_state, to_state) REFERENCES vms.sip_upstream_transition (from_state, to_state)
);
CREATE INDEX sip_upstream_event_upstream_idx ON vms.sip_upstream_event (upstream, at);
COMMENT ON TABLE vms.sip_upstream_event IS 'every registration state change of an upper platform, with its time and cause';

-- What an upstream is shared: a scope ({"regions", "catalog_nodes", "tags",
-- "channels"}, as inspection plans), and per channel the code and name the
-- upper platform knows it by.
CREATE TABLE vms.sip_share (
    upstream    text PRIMARY KEY REFERENCES vms.sip_upstream (name) ON DELETE CASCADE ON UPDATE CASCADE,
    scope       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.sip_share IS 'the scope of channels shared with each upper platform (regions, catalog_nodes, tags, channels)';

CREATE TABLE vms.sip_share_code (
    upstream      text NOT NULL REFERENCES vms.sip_upstream (name) ON DELETE CASCADE ON UPDATE CASCADE,
    channel_code  vms.gbcode NOT NULL REFERENCES vms.channel (code) ON DELETE CASCADE,
    custom_code   vms.gbcode,
    custom_name   text CHECK (length(custom_name) BETWEEN 1 AND 100),
    PRIMARY KEY (upstream, channel_code),
    UNIQUE (upstream, custom_code),
    CHECK (custom_code IS NOT NULL OR custom_name IS NOT NULL)
);
-- (a delete of the referenced row finds these rows by the index, not by a scan)
CREATE INDEX sip_share_code_channel_idx ON vms.sip_share_code (channel_code);
COMMENT ON TABLE vms.sip_share_code IS
    'per upper platform, the code and/or name a shared channel is presented under (自定义编码/名称); the ledger keeps its own';

CREATE FUNCTION vms._sip_upstream_options(options jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    k text;
    v jsonb;
    limits constant jsonb := '{"expires": [60, 86400], "keepalive_interval": [5, 3600], "keepalive_count": [1, 100],
                               "catalog_page_size": [1, 100], "reconcile_interval": [1, 3600]}';
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
        ELSIF k = 'catalog_push_interval' THEN
            -- the whole share pushed to a Catalog subscription this often (0: never)
            IF jsonb_typeof(v) <> 'number' OR (v::text)::numeric <> trunc((v::text)::numeric)
               OR NOT ((v::text)::numeric = 0 OR (v::text)::numeric BETWEEN 10 AND 86400) THEN
                RAISE EXCEPTION 'upstream option "catalog_push_interval" must be 0 (never) or an integer from 10 to 86400'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSIF k = 'local_id' THEN
            IF jsonb_typeof(v) <> 'string' OR v #>> '{}' !~ '^[0-9]{20}$' THEN
                RAISE EXCEPTION 'upstream option "local_id" must be a 20-digit code' USING ERRCODE = 'invalid_parameter_value',
                    DETAIL = 'It is the id vms registers under; without it vms.sip_id is used.';
            END IF;
        ELSIF k = 'realm' THEN
            IF jsonb_typeof(v) <> 'string' OR v #>> '{}' !~ '^[0-9A-Za-z.-]{1,64}$' THEN
                RAISE EXCEPTION 'upstream option "realm" must be a SIP domain such as 3402000000' USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSIF k = 'transport' THEN
            IF jsonb_typeof(v) <> 'string' OR lower(v #>> '{}') NOT IN ('udp', 'tcp') THEN
                RAISE EXCEPTION 'upstream option "transport" must be "udp" or "tcp"' USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSIF k = 'charset' THEN
            IF jsonb_typeof(v) <> 'string' OR upper(v #>> '{}') NOT IN ('GB2312', 'UTF-8') THEN
                RAISE EXCEPTION 'upstream option "charset" must be "GB2312" or "UTF-8"' USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSIF k IN ('send_status', 'catalog_tree') THEN
            IF jsonb_typeof(v) <> 'boolean' THEN
                RAISE EXCEPTION 'upstream option "%" must be true or false', k USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSIF k = 'media_nets' THEN
            -- where an INVITE of the upper platform may make a device stream to
            IF jsonb_typeof(v) <> 'array' OR jsonb_array_length(v) = 0
               OR EXISTS (SELECT 1 FROM jsonb_array_elements(v) e WHERE jsonb_typeof(e) <> 'string'
                                 OR e #>> '{}' !~ '^[0-9A-Fa-f.:]+(/[0-9]{1,3})?$') THEN
                RAISE EXCEPTION 'upstream option "media_nets" must be a non-empty array of networks such as "10.1.0.0/16"'
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = 'An INVITE whose SDP names a media address outside them is refused (488); without the option only the upstream''s own address is allowed.';
            END IF;
            BEGIN
                PERFORM e::cidr FROM jsonb_array_elements_text(v) e;
            EXCEPTION WHEN invalid_text_representation THEN
                RAISE EXCEPTION 'upstream option "media_nets" holds an invalid network' USING ERRCODE = 'invalid_parameter_value',
                    DETAIL = 'Each is an address with an optional prefix length and no bits set right of it, such as "10.1.0.0/16".';
            END;
        ELSE
            RAISE EXCEPTION 'unknown upstream option "%"', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Options are local_id, realm, transport, expires, keepalive_interval, keepalive_count, charset, send_status, catalog_page_size, media_nets, catalog_push_interval, reconcile_interval, catalog_tree.';
        END IF;
    END LOOP;
    RETURN options;
END $$;
COMMENT ON FUNCTION vms._sip_upstream_options(jsonb) IS 'internal: validates an upper platform''s options';

CREATE FUNCTION vms._sip_upstream_host(host text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF host IS NULL OR host !~ '^[0-9]{1,3}(\.[0-9]{1,3}){3}$'
       OR EXISTS (SELECT 1 FROM unnest(string_to_array(host, '.')) o WHERE o::integer > 255) THEN
        RAISE EXCEPTION 'upstream host "%" is not an IPv4 address', host
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the upper platform''s SIP address, such as 10.1.2.3; the worker does not resolve names.';
    END IF;
    RETURN host;
END $$;
COMMENT ON FUNCTION vms._sip_upstream_host(text) IS 'internal: an upper platform''s host is an IPv4 address';

CREATE FUNCTION vms.sip_add_upstream(name text, host text, port integer, platform_id vms.gbcode,
                                     password text, options jsonb DEFAULT '{}')
    RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9_.-]{1,63}$' THEN
        RAISE EXCEPTION 'upstream name "%" is not usable', name
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 1 to 63 letters, digits, ".", "_" or "-".';
    END IF;
    IF port IS NULL OR port NOT BETWEEN 1 AND 65535 THEN
        RAISE EXCEPTION 'upstream port % is not a port number', port USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF platform_id IS NULL THEN
        RAISE EXCEPTION 'the upper platform''s id is required' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF coalesce(password, '') = '' OR length(password) > 256 THEN
        RAISE EXCEPTION 'upstream password must have 1 to 256 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM vms.sip_upstream u WHERE u.name = sip_add_upstream.name) THEN
        RAISE EXCEPTION 'upstream "%" already exists', name
            USING ERRCODE = 'duplicate_object', HINT = 'Change it with vms.sip_alter_upstream.';
    END IF;
    INSERT INTO vms.sip_upstream (name, host, port, platform_id, password_enc, options)
    VALUES (name, vms._sip_upstream_host(host), port, platform_id,
            vms.secret_encrypt(password, 'sip_upstream.password_enc:' || name),
            vms._sip_upstream_options(coalesce(options, '{}')));
    INSERT INTO vms.sip_upstream_state (upstream) VALUES (name);
    PERFORM vms._wake_worker('sip');
END $$;
COMMENT ON FUNCTION vms.sip_add_upstream(text, text, integer, vms.gbcode, text, jsonb) IS
    'add an upper GB/T 28181 platform to register to: name, its IPv4 address and port, its 20-digit id, the password, options';

CREATE FUNCTION vms.sip_alter_upstream(name text, host text DEFAULT NULL, port integer DEFAULT NULL,
                                       platform_id vms.gbcode DEFAULT NULL, password text DEFAULT NULL,
                                       options jsonb DEFAULT NULL, enabled boolean DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF port IS NOT NULL AND port NOT BETWEEN 1 AND 65535 THEN
        RAISE EXCEPTION 'upstream port % is not a port number', port USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF password IS NOT NULL AND (password = '' OR length(password) > 256) THEN
        RAISE EXCEPTION 'upstream password must have 1 to 256 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE vms.sip_upstream u SET
        host = CASE WHEN sip_alter_upstream.host IS NULL THEN u.host ELSE vms._sip_upstream_host(sip_alter_upstream.host) END,
        port = coalesce(sip_alter_upstream.port, u.port),
        platform_id = coalesce(sip_alter_upstream.platform_id, u.platform_id),
        password_enc = CASE WHEN sip_alter_upstream.password IS NOT NULL
                            THEN vms.secret_encrypt(sip_alter_upstream.password, 'sip_upstream.password_enc:' || u.name)
                            ELSE u.password_enc END,
        options = CASE WHEN sip_alter_upstream.options IS NULL THEN u.options
                       ELSE vms._sip_upstream_options(u.options || sip_alter_upstream.options) END,
        enabled = coalesce(sip_alter_upstream.enabled, u.enabled)
     WHERE u.name = sip_alter_upstream.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'upstream "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM vms._wake_worker('sip');
END $$;
COMMENT ON FUNCTION vms.sip_alter_upstream(text, text, integer, vms.gbcode, text, jsonb, boolean) IS
    'change an upper platform; options are merged; the worker registers again with what changed';

CREATE FUNCTION vms.sip_drop_upstream(name text) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM vms.sip_upstream u WHERE u.name = sip_drop_upstream.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'upstream "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM vms._wake_worker('sip');
END $$;
COMMENT ON FUNCTION vms.sip_drop_upstream(text) IS 'remove an upper platform with its state, events, share and codes';

-- the scope keys of inspection plans, checked with this function's own words
CREATE FUNCTION vms._sip_check_scope(scope jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    bad text;
BEGIN
    IF jsonb_typeof(scope) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'a share scope must be a JSON object' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use keys regions, catalog_nodes, tags, channels, as in inspection plans.';
    END IF;
    SELECT k INTO bad FROM jsonb_object_keys(scope) k WHERE k NOT IN ('regions', 'catalog_nodes', 'tags', 'channels') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown share scope key "%"', bad USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use keys regions, catalog_nodes, tags, channels, as in inspection plans.';
    END IF;
    SELECT k INTO bad FROM jsonb_each(scope) e(k, v) WHERE jsonb_typeof(v) <> 'array' LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'share scope key "%" must be an array', bad USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT x INTO bad FROM jsonb_array_elements(coalesce(scope -> 'channels', '[]')) x
     WHERE jsonb_typeof(x) <> 'string' OR vms.gbcode_parse_error(x #>> '{}') IS NOT NULL LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'share scope channel % is not a 20-digit code', bad USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN scope;
END $$;
COMMENT ON FUNCTION vms._sip_check_scope(jsonb) IS 'internal: a share scope has the keys and shape of an inspection scope';

CREATE FUNCTION vms.sip_share(upstream text, scope jsonb) RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.sip_upstream u WHERE u.name = sip_share.upstream) THEN
        RAISE EXCEPTION 'upstream "%" does not exist', upstream USING ERRCODE = 'undefined_object';
    END IF;
    INSERT INTO vms.sip_share AS s (upstream, scope) VALUES (upstream, vms._sip_check_scope(scope))
        ON CONFLICT ON CONSTRAINT sip_share_pkey DO UPDATE SET scope = EXCLUDED.scope, updated_at = now();
    SELECT count(*) INTO n FROM vms.inspection_scope_channels(scope);
    PERFORM vms._wake_worker('sip');
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.sip_share(text, jsonb) IS
    'share channels with an upper platform: a scope of regions (civil-code prefixes), catalog_nodes and tags (subtrees) and channels, replacing the previous one; returns how many channels it covers now';

CREATE FUNCTION vms.sip_share_map(upstream text, channel vms.gbcode, code vms.gbcode DEFAULT NULL, name text DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.sip_upstream u WHERE u.name = sip_share_map.upstream) THEN
        RAISE EXCEPTION 'upstream "%" does not exist', upstream USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM vms.channel c WHERE c.code = sip_share_map.channel) THEN
        RAISE EXCEPTION 'channel % does not exist', channel USING ERRCODE = 'undefined_object';
    END IF;
    IF name IS NOT NULL AND length(name) NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION 'a presented name must have 1 to 100 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF code IS NOT NULL AND code <> channel AND EXISTS (SELECT 1 FROM vms.channel c WHERE c.code = sip_share_map.code) THEN
        RAISE EXCEPTION 'code % is another channel''s', code USING ERRCODE = 'unique_violation',
            DETAIL = 'The upper platform would see two channels under one code.';
    END IF;
    IF code IS NOT NULL AND EXISTS (SELECT 1 FROM vms.sip_share_code m WHERE m.upstream = sip_share_map.upstream
                                       AND m.custom_code = sip_share_map.code AND m.channel_code <> sip_share_map.channel) THEN
        RAISE EXCEPTION 'code % is already presented to "%" for another channel', code, upstream
            USING ERRCODE = 'unique_violation';
    END IF;
    IF code IS NULL AND name IS NULL THEN
        DELETE FROM vms.sip_share_code m WHERE m.upstream = sip_share_map.upstream AND m.channel_code = sip_share_map.channel;
    ELSE
        INSERT INTO vms.sip_share_code AS m (upstream, channel_code, custom_code, custom_name)
        VALUES (upstream, channel, code, name)
        ON CONFLICT ON CONSTRAINT sip_share_code_pkey
        DO UPDATE SET custom_code = EXCLUDED.custom_code, custom_name = EXCLUDED.custom_name;
    END IF;
END $$;
COMMENT ON FUNCTION vms.sip_share_map(text, vms.gbcode, vms.gbcode, text) IS
    'present a channel to an upper platform under another code and/or name (both NULL: its own again)';

CREATE FUNCTION vms.sip_shared_channels(upstream text)
    RETURNS TABLE (channel vms.gbcode, code vms.gbcode, name text, online boolean)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT c.code, coalesce(m.custom_code, c.code), coalesce(m.custom_name, c.name),
           c.online AND coalesce(st.status, 'ON') = 'ON'
      FROM vms.sip_share s
      CROSS JOIN LATERAL vms.inspection_scope_channels(s.scope) sc
      JOIN vms.channel c ON c.code = sc
      LEFT JOIN vms.sip_share_code m ON m.upstream = s.upstream AND m.channel_code = c.code
      LEFT JOIN vms.channel_status st ON st.code = c.code
     WHERE s.upstream = sip_shared_channels.upstream
$$;
COMMENT ON FUNCTION vms.sip_shared_channels(text) IS
    'the channels an upper platform is shared, with the code and name it knows each by, and whether each is online';

CREATE VIEW vms.sip_upstream_status AS
SELECT u.name AS upstream, u.host, u.port, u.platform_id, u.enabled, u.options,
       s.state, s.since, s.registered_at, s.expires_at, s.last_keepalive_at, s.missed_keepalives,
       s.failures, s.last_status, s.last_error, s.next_attempt_at,
       (SELECT count(*) FROM vms.sip_shared_channels(u.name)) AS shared, s.subscriptions
  FROM vms.sip_upstream u LEFT JOIN vms.sip_upstream_state s ON s.upstream = u.name;
COMMENT ON VIEW vms.sip_upstream_status IS
    'upper platforms (list): address, id, options, registration state, keepalives, failures, last error, channels shared, the subscriptions served';

-- Worker side ---------------------------------------------------------------

-- every upper platform with its effective options and the state last written
CREATE FUNCTION vms._sip_upstreams()
    RETURNS TABLE (name text, host text, port integer, platform_id text, password_enc bytea, enabled boolean,
                   local_id text, realm text, expires integer, keepalive_interval integer, keepalive_count integer,
                   charset text, send_status boolean, page_size integer, state text, failures integer,
                   push_interval integer, reconcile_interval integer, catalog_tree boolean, transport text)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT u.name, u.host, u.port, u.platform_id::text, u.password_enc, u.enabled,
           coalesce(u.options ->> 'local_id', current_setting('vms.sip_id', true)),
           coalesce(u.options ->> 'realm', left(u.platform_id::text, 10)),
           coalesce((u.options ->> 'expires')::integer, 3600),
           coalesce((u.options ->> 'keepalive_interval')::integer, 60),
           coalesce((u.options ->> 'keepalive_count')::integer, 3),
           upper(coalesce(u.options ->> 'charset', 'GB2312')),
           coalesce((u.options ->> 'send_status')::boolean, true),
           coalesce((u.options ->> 'catalog_page_size')::integer, 20),
           coalesce(s.state, 'unregistered'), coalesce(s.failures, 0),
           coalesce((u.options ->> 'catalog_push_interval')::integer, 600),
           coalesce((u.options ->> 'reconcile_interval')::integer, 10),
           coalesce((u.options ->> 'catalog_tree')::boolean, false),
           upper(coalesce(u.options ->> 'transport', 'udp'))
      FROM vms.sip_upstream u LEFT JOIN vms.sip_upstream_state s ON s.upstream = u.name
     ORDER BY u.name
$$;
COMMENT ON FUNCTION vms._sip_upstreams() IS 'internal: upper platforms for the SIP worker, options with their defaults';

-- The worker's batched state writes: [{"u": upstream, "st": state, "at": epoch,
-- "c": cause, "ra"/"ex"/"ka"/"na": epochs, "mk": missed, "f": failures,
-- "ls": last status, "le": last error, "sb": the subscriptions served}].  A state change is an event; one
-- that is not a transition of the state machine is refused with a warning
-- and the others are written.
CREATE FUNCTION vms._sip_upstream_flush(doc jsonb) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    x jsonb;
    cur text;
    at timestamptz;
BEGIN
    FOR x IN SELECT * FROM jsonb_array_elements(doc) LOOP
        at := to_timestamp((x ->> 'at')::float8);
        SELECT s.state INTO cur FROM vms.sip_upstream_state s WHERE s.upstream = x ->> 'u' FOR UPDATE;
        CONTINUE WHEN NOT FOUND;			-- dropped meanwhile
        BEGIN
            IF cur IS DISTINCT FROM x ->> 'st' THEN
                INSERT INTO vms.sip_upstream_event (upstream, at, from_state, to_state, cause)
                VALUES (x ->> 'u', at, cur, x ->> 'st', x ->> 'c');
            END IF;
            UPDATE vms.sip_upstream_state s SET
                state = x ->> 'st',
                since = CASE WHEN cur IS DISTINCT FROM x ->> 'st' THEN at ELSE s.since END,
                registered_at = to_timestamp((x ->> 'ra')::float8),
                expires_at = to_timestamp((x ->> 'ex')::float8),
                last_keepalive_at = to_timestamp((x ->> 'ka')::float8),
                missed_keepalives = coalesce((x ->> 'mk')::integer, 0),
                failures = coalesce((x ->> 'f')::integer, 0),
                last_status = (x ->> 'ls')::integer,
                last_error = x ->> 'le',
                next_attempt_at = to_timestamp((x ->> 'na')::float8),
                subscriptions = coalesce(x -> 'sb', '{}')
             WHERE s.upstream = x ->> 'u';
        EXCEPTION WHEN foreign_key_violation OR check_violation THEN
            RAISE WARNING 'vms sip: upstream "%" cannot go from % to %', x ->> 'u', cur, x ->> 'st';
        END;
    END LOOP;
END $$;
COMMENT ON FUNCTION vms._sip_upstream_flush(jsonb) IS 'internal: the SIP worker records upper platforms'' registration states and transitions';

-- The shared channels as the upper platform sees them; one_code: only the
-- one it knows by that code.  Without catalog_tree each hangs under vms's
-- id (local_id).  With it, each hangs under its catalogue node (the lowest
-- code among the 215/216 nodes it is a member of), with that node's
-- business group, and the nodes come too (is_node): those the shared
-- channels are in, their ancestors and the business groups they name; a
-- virtual organisation under its parent (or its business group, or vms's
-- id), a business group under vms's id.  Numbered nodes first, then by
-- code, so that a node arrives before what hangs under it.
CREATE FUNCTION vms._sip_upstream_items(upstream text, one_code text)
    RETURNS TABLE (rn integer, code text, name text, online boolean, manufacturer text, model text,
                   civil_code text, address text, lon float8, lat float8,
                   parent text, business_group text, is_node boolean)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    WITH RECURSIVE u AS (
        SELECT x.local_id, x.catalog_tree FROM vms._sip_upstreams() x WHERE x.name = upstream
    ), ch AS (
        SELECT sc.code::text AS code, sc.name, sc.online, d.manufacturer, d.model, c.civil_code, c.address,
               ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat,
               CASE WHEN u.catalog_tree THEN (SELECT m.node_code FROM vms.catalog_member m
                                               WHERE m.channel_code = c.code ORDER BY m.node_code LIMIT 1) END AS node
          FROM u, vms.sip_shared_channels(upstream) sc
          JOIN vms.channel c ON c.code = sc.channel
          JOIN vms.device d ON d.code = c.device_code
    ), tree AS (
        SELECT n.code, n.name, n.parent_code, n.business_group, n.civil_code
          FROM vms.catalog_node n WHERE n.code IN (SELECT ch.node FROM ch)
        UNION
        SELECT p.code, p.name, p.parent_code, p.business_group, p.civil_code
          FROM tree t JOIN vms.catalog_node p ON p.code = t.parent_code OR p.code = t.business_group
    ), items AS (
        SELECT ch.code, ch.name, ch.online, ch.manufacturer, ch.model, ch.civil_code, ch.address, ch.lon, ch.lat,
               coalesce(ch.node::text, u.local_id) AS parent,
               (SELECT CASE WHEN vms.gbcode_type(n.code) = 215 THEN n.code ELSE n.business_group END::text
                  FROM vms.catalog_node n WHERE n.code = ch.node) AS business_group,
               false AS is_node
          FROM ch, u
        UNION ALL
        SELECT t.code::text, t.name, true, NULL, NULL, t.civil_code, NULL, NULL, NULL,
               CASE WHEN vms.gbcode_type(t.code) = 215 THEN u.local_id
                    ELSE coalesce(t.parent_code::text, t.business_group::text, u.local_id) END,
               CASE WHEN vms.gbcode_type(t.code) = 216 THEN t.business_group::text END,
               true
          FROM tree t, u
    )
    SELECT row_number() OVER (ORDER BY i.is_node DESC, i.code)::integer, i.code, i.name, i.online, i.manufacturer,
           i.model, i.civil_code, i.address, i.lon, i.lat, i.parent, i.business_group, i.is_node
      FROM items i
     WHERE one_code IS NULL OR i.code = one_code
$$;
COMMENT ON FUNCTION vms._sip_upstream_items(text, text) IS
    'internal: the channels shared with an upper platform as it knows them, with their parent and business group (and with catalog_tree the catalogue nodes above them), nodes first';

-- one <Item> of a Catalog answer or NOTIFY (event: ADD, DEL, UPDATE, ON, OFF;
-- NULL in an answer); a catalogue node (business group 215, virtual
-- organisation 216) has its name, parent and business group only
CREATE FUNCTION vms._sip_catalog_item(code text, name text, manufacturer text, model text, civil_code text,
                                      address text, online boolean, lon float8, lat float8, parent text, event text,
                                      business_group text DEFAULT NULL, is_node boolean DEFAULT false)
    RETURNS xml
    LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN event = 'DEL' THEN xmlelement(name "Item", xmlelement(name "DeviceID", code), xmlelement(name "Event", event))
    WHEN is_node THEN xmlelement(name "Item",
        xmlelement(name "DeviceID", code),
        xmlelement(name "Name", name),
        CASE WHEN substr(code, 11, 3) = '216' THEN xmlelement(name "ParentID", parent) END,
        CASE WHEN business_group IS NOT NULL THEN xmlelement(name "BusinessGroupID", business_group) END,
        CASE WHEN event IS NOT NULL THEN xmlelement(name "Event", event) END)
    ELSE xmlelement(name "Item",
        xmlelement(name "DeviceID", code),
        xmlelement(name "Name", name),
        xmlelement(name "Manufacturer", coalesce(manufacturer, '')),
        xmlelement(name "Model", coalesce(model, '')),
        xmlelement(name "Owner", '0'),
        xmlelement(name "CivilCode", coalesce(civil_code, left(parent, 6))),
        xmlelement(name "Address", coalesce(address, '')),
        xmlelement(name "Parental", 0),
        xmlelement(name "ParentID", parent),
        CASE WHEN business_group IS NOT NULL THEN xmlelement(name "BusinessGroupID", business_group) END,
        xmlelement(name "SafetyWay", 0),
        xmlelement(name "RegisterWay", 1),
        xmlelement(name "Secrecy", 0),
        xmlelement(name "Status", CASE WHEN online THEN 'ON' ELSE 'OFF' END),
        CASE WHEN lon IS NOT NULL THEN xmlelement(name "Longitude", round(lon::numeric, 6)) END,
        CASE WHEN lat IS NOT NULL THEN xmlelement(name "Latitude", round(lat::numeric, 6)) END,
        CASE WHEN event IS NOT NULL THEN xmlelement(name "Event", event) END) END
$$;
COMMENT ON FUNCTION vms._sip_catalog_item(text, text, text, text, text, text, boolean, float8, float8, text, text, text, boolean) IS
    'internal: one Catalog <Item> for an upper platform (with its Event in a NOTIFY); a catalogue node with its parent and business group';

-- The MANSCDP answer bodies to an upper platform's query, in its charset:
-- Catalog in pages of catalog_page_size items, each with the SumNum of the
-- whole answer; DeviceInfo; DeviceStatus.  device_id is what the query
-- named: vms's own id (local_id) is the whole share, a code the upstream
-- knows a shared channel by is that channel, and any other code gets an
-- answer that says nothing about it (a Catalog with SumNum 0, or a Result
-- of ERROR).
CREATE FUNCTION vms._sip_upstream_answer(upstream text, cmd text, sn text, device_id text)
    RETURNS SETOF bytea
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    u record;
    enc text;
    head text;
    total integer;
    whole boolean;
BEGIN
    SELECT * INTO u FROM vms._sip_upstreams() x WHERE x.name = _sip_upstream_answer.upstream;
    IF NOT FOUND OR sn IS NULL OR sn !~ '^[0-9]{1,15}$' THEN
        RETURN;
    END IF;
    enc := CASE u.charset WHEN 'UTF-8' THEN 'UTF8' ELSE 'GB18030' END;
    head := '<?xml version="1.0" encoding="' || u.charset || '"?>' || E'\r\n';
    whole := device_id IS NULL OR device_id = '' OR device_id = u.local_id;
    SELECT count(*) INTO total FROM vms._sip_upstream_items(upstream, CASE WHEN whole THEN NULL ELSE device_id END);

    IF cmd = 'Catalog' THEN
        IF total = 0 THEN
            RETURN NEXT convert_to(head || xmlelement(name "Response",
                xmlelement(name "CmdType", 'Catalog'), xmlelement(name "SN", sn),
                xmlelement(name "DeviceID", coalesce(nullif(device_id, ''), u.local_id)),
                xmlelement(name "SumNum", 0),
                xmlelement(name "DeviceList", xmlattributes(0 AS "Num")))::text, enc);
            RETURN;
        END IF;
        RETURN QUERY
        SELECT convert_to(head || xmlelement(name "Response",
                   xmlelement(name "CmdType", 'Catalog'), xmlelement(name "SN", sn),
                   xmlelement(name "DeviceID", coalesce(nullif(device_id, ''), u.local_id)),
                   xmlelement(name "SumNum", total),
                   xmlelement(name "DeviceList", xmlattributes(count(*) AS "Num"),
                       xmlagg(vms._sip_catalog_item(i.code, i.name, i.manufacturer, i.model, i.civil_code, i.address,
                                                    i.online, i.lon, i.lat, i.parent, NULL, i.business_group, i.is_node)
                       ORDER BY i.rn)))::text, enc)
          FROM vms._sip_upstream_items(upstream, CASE WHEN whole THEN NULL ELSE device_id END) i
         GROUP BY (i.rn - 1) / u.page_size
         ORDER BY (i.rn - 1) / u.page_size;
    ELSIF cmd = 'DeviceInfo' THEN
        IF whole THEN
            RETURN NEXT convert_to(head || xmlelement(name "Response",
                xmlelement(name "CmdType", 'DeviceInfo'), xmlelement(name "SN", sn),
                xmlelement(name "DeviceID", u.local_id), xmlelement(name "Result", 'OK'),
                xmlelement(name "DeviceName", 'vms'), xmlelement(name "Manufacturer", 'vms'),
                xmlelement(name "Model", 'vms'),
                xmlelement(name "Firmware", (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vms')),
                xmlelement(name "Channel", (SELECT count(*) FROM vms._sip_upstream_items(upstream, NULL) i WHERE NOT i.is_node)))::text, enc);
        ELSIF total = 1 THEN
            RETURN QUERY SELECT convert_to(head || xmlelement(name "Response",
                xmlelement(name "CmdType", 'DeviceInfo'), xmlelement(name "SN", sn),
                xmlelement(name "DeviceID", i.code), xmlelement(name "Result", 'OK'),
                xmlelement(name "DeviceName", i.name), xmlelement(name "Manufacturer", coalesce(i.manufacturer, '')),
                xmlelement(name "Model", coalesce(i.model, '')), xmlelement(name "Channel", 1))::text, enc)
              FROM vms._sip_upstream_items(upstream, CASE WHEN whole THEN NULL ELSE device_id END) i;
        ELSE
            RETURN NEXT convert_to(head || xmlelement(name "Response",
                xmlelement(name "CmdType", 'DeviceInfo'), xmlelement(name "SN", sn),
                xmlelement(name "DeviceID", device_id), xmlelement(name "Result", 'ERROR'))::text, enc);
        END IF;
    ELSIF cmd = 'DeviceStatus' THEN
        IF whole OR total = 1 THEN
            RETURN NEXT convert_to(head || xmlelement(name "Response",
                xmlelement(name "CmdType", 'DeviceStatus'), xmlelement(name "SN", sn),
                xmlelement(name "DeviceID", CASE WHEN whole THEN u.local_id ELSE device_id END),
                xmlelement(name "Result", 'OK'),
                xmlelement(name "Online", CASE WHEN whole OR (SELECT i.online FROM vms._sip_upstream_items(upstream, CASE WHEN whole THEN NULL ELSE device_id END) i)
                                               THEN 'ONLINE' ELSE 'OFFLINE' END),
                xmlelement(name "Status", 'OK'), xmlelement(name "Encode", 'ON'), xmlelement(name "Record", 'OFF'),
                xmlelement(name "DeviceTime", to_char(localtimestamp, 'YYYY-MM-DD"T"HH24:MI:SS')),
                xmlelement(name "Alarmstatus", xmlattributes(0 AS "Num")))::text, enc);
        ELSE
            RETURN NEXT convert_to(head || xmlelement(name "Response",
                xmlelement(name "CmdType", 'DeviceStatus'), xmlelement(name "SN", sn),
                xmlelement(name "DeviceID", device_id), xmlelement(name "Result", 'ERROR'))::text, enc);
        END IF;
    END IF;
END $$;
COMMENT ON FUNCTION vms._sip_upstream_answer(text, text, text, text) IS
    'internal: the MANSCDP answer bodies (Catalog pages with SumNum, DeviceInfo, DeviceStatus) to an upper platform''s query, shared channels only';

-- Catalog subscriptions of upper platforms: what each was last told of each
-- shared channel, so that a change becomes a NOTIFY event (ADD, DEL, UPDATE,
-- ON, OFF; a channel that leaves the scope is a DEL).  A channel told DEL is
-- kept as deleted until the next full push says DEL again, in case the upper
-- platform missed the first.
CREATE TABLE vms.sip_share_told (
    upstream  text NOT NULL REFERENCES vms.sip_upstream (name) ON DELETE CASCADE ON UPDATE CASCADE,
    code      text NOT NULL,
    digest    text NOT NULL,
    online    boolean NOT NULL,
    deleted   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (upstream, code)
);
COMMENT ON TABLE vms.sip_share_told IS
    'what a subscribed upper platform was last told of each shared channel (presented code, a digest of its attributes, online; deleted: told DEL, said again at the next full push)';

-- The changes since what the upstream was last told, as Catalog NOTIFY
-- bodies (pages of catalog_page_size, SumNum = all the changes; ON and OFF
-- only with send_status), recorded as told.  baseline: record the present
-- share as told and return nothing (a new subscription).  whole_share: the periodic
-- full push that reconciles what the upper platform holds: every shared
-- channel (ADD if never told, else UPDATE with its Status), and DEL for
-- every channel told DEL since the last push or gone from the share.
CREATE FUNCTION vms._sip_upstream_changes(upstream text, sn text, baseline boolean DEFAULT false,
                                          whole_share boolean DEFAULT false)
    RETURNS SETOF bytea
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    u record;
    enc text;
    head text;
BEGIN
    SELECT * INTO u FROM vms._sip_upstreams() x WHERE x.name = _sip_upstream_changes.upstream;
    IF NOT FOUND OR sn IS NULL OR sn !~ '^[0-9]{1,15}$' THEN
        RETURN;
    END IF;
    IF baseline THEN
        DELETE FROM vms.sip_share_told t WHERE t.upstream = _sip_upstream_changes.upstream;
        INSERT INTO vms.sip_share_told (upstream, code, digest, online)
        SELECT _sip_upstream_changes.upstream, i.code,
               md5(concat_ws('|', i.name, i.manufacturer, i.model, i.civil_code, i.address, i.lon, i.lat, i.parent, i.business_group)), i.online
          FROM vms._sip_upstream_items(_sip_upstream_changes.upstream, NULL) i;
        RETURN;
    END IF;
    enc := CASE u.charset WHEN 'UTF-8' THEN 'UTF8' ELSE 'GB18030' END;
    head := '<?xml version="1.0" encoding="' || u.charset || '"?>' || E'\r\n';
    -- one statement: the changes, the record of what is told now, and the bodies
    RETURN QUERY
    WITH items AS (
        SELECT i.*, md5(concat_ws('|', i.name, i.manufacturer, i.model, i.civil_code, i.address, i.lon, i.lat, i.parent, i.business_group)) AS digest
          FROM vms._sip_upstream_items(_sip_upstream_changes.upstream, NULL) i
    ), ch AS (
        SELECT c.code, c.name, c.manufacturer, c.model, c.civil_code, c.address, c.online, c.lon, c.lat, c.digest,
               c.parent, c.business_group, c.is_node,
               CASE WHEN t.code IS NULL OR t.deleted THEN 'ADD' WHEN whole_share OR t.digest <> c.digest THEN 'UPDATE'
                    WHEN c.online THEN 'ON' ELSE 'OFF' END AS event
          FROM items c
          LEFT JOIN vms.sip_share_told t ON t.upstream = _sip_upstream_changes.upstream AND t.code = c.code
         WHERE whole_share OR t.code IS NULL OR t.deleted OR t.digest <> c.digest OR t.online <> c.online
        UNION ALL
        SELECT t.code, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, false, 'DEL'
          FROM vms.sip_share_told t
         WHERE t.upstream = _sip_upstream_changes.upstream AND (whole_share OR NOT t.deleted)
           AND NOT EXISTS (SELECT 1 FROM items i WHERE i.code = t.code)
    ), gone AS (
        -- told DEL: kept as deleted until a full push has said it again
        DELETE FROM vms.sip_share_told t USING ch
         WHERE whole_share AND t.upstream = _sip_upstream_changes.upstream AND t.code = ch.code AND ch.event = 'DEL'
    ), deleted AS (
        UPDATE vms.sip_share_told t SET deleted = true FROM ch
         WHERE NOT whole_share AND t.upstream = _sip_upstream_changes.upstream AND t.code = ch.code AND ch.event = 'DEL'
    ), told AS (
        INSERT INTO vms.sip_share_told AS t (upstream, code, digest, online)
        SELECT _sip_upstream_changes.upstream, ch.code, ch.digest, ch.online FROM ch WHERE ch.event <> 'DEL'
        ON CONFLICT ON CONSTRAINT sip_share_told_pkey
        DO UPDATE SET digest = EXCLUDED.digest, online = EXCLUDED.online, deleted = false
    )
    SELECT convert_to(head || xmlelement(name "Notify",
               xmlelement(name "CmdType", 'Catalog'), xmlelement(name "SN", sn),
               xmlelement(name "DeviceID", u.local_id),
               xmlelement(name "SumNum", n.total),
               xmlelement(name "DeviceList", xmlattributes(count(*) AS "Num"),
                   xmlagg(vms._sip_catalog_item(n.code, n.name, n.manufacturer, n.model, n.civil_code, n.address,
                                                n.online, n.lon, n.lat, n.parent, n.event, n.business_group, n.is_node)
                          ORDER BY n.rn)))::text, enc)
      FROM (SELECT ch.*, row_number() OVER (ORDER BY ch.event = 'DEL', ch.is_node DESC, ch.code) AS rn,
                   count(*) OVER () AS total
              FROM ch WHERE whole_share OR u.send_status OR ch.event NOT IN ('ON', 'OFF')) n
     GROUP BY (n.rn - 1) / u.page_size, n.total
     ORDER BY (n.rn - 1) / u.page_size;
END $$;
COMMENT ON FUNCTION vms._sip_upstream_changes(text, text, boolean, boolean) IS
    'internal: the changes of an upper platform''s share since it was last told (Catalog NOTIFY bodies: ADD, DEL, UPDATE, ON, OFF), recorded as told; baseline: record the share as told; whole_share: the whole share and the DELs told since the last full push';

-- Alarms of shared channels forwarded to an upper platform: the new rows of
-- vms.alarm since the upstream's cursor (at most 100 a call), each as a
-- MANSCDP Notify Alarm in the upstream's charset under the code it knows the
-- channel by; the cursor moves past every alarm looked at.  The first call
-- only sets the cursor: history is not forwarded.  The fault type goes back
-- to AlarmMethod/AlarmType as vms._sip_alarm reads them (other faults, such
-- as inspection findings, as method 6, device fault); the level is the
-- AlarmPriority.  filter: the body of the upper platform's Alarm
-- SUBSCRIBE (the bodies then go out as its NOTIFYs): only alarms from its
-- StartAlarmPriority to its EndAlarmPriority (0 or absent: all) and of its
-- AlarmMethods (digits such as "25"; 0 or absent: all) are sent; the cursor
-- moves past the others too.
CREATE FUNCTION vms._sip_upstream_alarms(upstream text, sn bigint, filter jsonb DEFAULT NULL) RETURNS SETOF bytea
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    u record;
    cursor_id bigint;
    upto bigint;
    enc text;
    lo integer := 1;
    hi integer := 4;
    methods text := '';
BEGIN
    IF filter ->> 'StartAlarmPriority' ~ '^[1-4]$' THEN
        lo := (filter ->> 'StartAlarmPriority')::integer;
    END IF;
    IF filter ->> 'EndAlarmPriority' ~ '^[1-4]$' THEN
        hi := (filter ->> 'EndAlarmPriority')::integer;
    END IF;
    IF filter ->> 'AlarmMethod' ~ '^[0-9]{1,10}$' AND filter ->> 'AlarmMethod' !~ '0' THEN
        methods := filter ->> 'AlarmMethod';
    END IF;
    SELECT * INTO u FROM vms._sip_upstreams() x WHERE x.name = _sip_upstream_alarms.upstream;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT s.alarm_cursor INTO cursor_id FROM vms.sip_upstream_state s WHERE s.upstream = _sip_upstream_alarms.upstream FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF cursor_id IS NULL THEN
        UPDATE vms.sip_upstream_state s SET alarm_cursor = coalesce((SELECT max(id) FROM vms.alarm), 0)
         WHERE s.upstream = _sip_upstream_alarms.upstream;
        RETURN;
    END IF;
    SELECT max(id) INTO upto FROM (SELECT a.id FROM vms.alarm a WHERE a.id > cursor_id ORDER BY a.id LIMIT 100) x;
    IF upto IS NULL THEN
        RETURN;
    END IF;
    enc := CASE u.charset WHEN 'UTF-8' THEN 'UTF8' ELSE 'GB18030' END;
    RETURN QUERY
    SELECT convert_to('<?xml version="1.0" encoding="' || u.charset || '"?>' || E'\r\n' || xmlelement(name "Notify",
               xmlelement(name "CmdType", 'Alarm'),
               xmlelement(name "SN", sn + row_number() OVER (ORDER BY a.id)),
               xmlelement(name "DeviceID", sc.code),
               xmlelement(name "AlarmPriority", greatest(1, least(4, a.level))),
               xmlelement(name "AlarmMethod", m.method),
               xmlelement(name "AlarmTime", to_char(a.last_raised_at, 'YYYY-MM-DD"T"HH24:MI:SS')),
               xmlelement(name "AlarmDescription", left(coalesce(a.detail ->> 'description', a.fault_type), 200)),
               CASE WHEN m.atype IS NOT NULL THEN xmlelement(name "Info", xmlelement(name "AlarmType", m.atype)) END)::text,
           enc)
      FROM vms.alarm a
      JOIN vms.sip_shared_channels(_sip_upstream_alarms.upstream) sc ON sc.channel = a.code
      CROSS JOIN LATERAL (SELECT CASE a.fault_type
                  WHEN 'video_loss' THEN '2' WHEN 'tamper' THEN '2' WHEN 'disk_full' THEN '2'
                  WHEN 'high_temperature' THEN '2' WHEN 'low_temperature' THEN '2'
                  WHEN 'manual_video_alarm' THEN '5' WHEN 'motion_detection' THEN '5' WHEN 'left_object' THEN '5'
                  WHEN 'object_removed' THEN '5' WHEN 'tripwire' THEN '5' WHEN 'intrusion' THEN '5'
                  ELSE CASE WHEN a.fault_type ~ '^sip_alarm_[0-9]{1,2}' THEN substring(a.fault_type FROM '^sip_alarm_([0-9]{1,2})')
                            ELSE '6' END END AS method,
                  CASE a.fault_type
                  WHEN 'video_loss' THEN '1' WHEN 'tamper' THEN '2' WHEN 'disk_full' THEN '3'
                  WHEN 'high_temperature' THEN '4' WHEN 'low_temperature' THEN '5'
                  WHEN 'manual_video_alarm' THEN '1' WHEN 'motion_detection' THEN '2' WHEN 'left_object' THEN '3'
                  WHEN 'object_removed' THEN '4' WHEN 'tripwire' THEN '5' WHEN 'intrusion' THEN '6'
                  ELSE substring(a.fault_type FROM '^sip_alarm_[0-9]{1,2}_([0-9]{1,2})$') END AS atype) m
     WHERE a.id > cursor_id AND a.id <= upto
       AND greatest(1, least(4, a.level)) BETWEEN lo AND hi
       AND (methods = '' OR (length(m.method) = 1 AND strpos(methods, m.method) > 0))
     ORDER BY a.id;
    UPDATE vms.sip_upstream_state s SET alarm_cursor = upto WHERE s.upstream = _sip_upstream_alarms.upstream;
END $$;
COMMENT ON FUNCTION vms._sip_upstream_alarms(text, bigint, jsonb) IS
    'internal: new alarms of channels shared with an upper platform as MANSCDP Alarm notifications (at most 100 a call; filter: an Alarm subscription''s priorities and methods); moves its cursor';

-- MobilePosition subscriptions of upper platforms: the position last sent
-- for each shared channel, and when.
CREATE TABLE vms.sip_share_position_told (
    upstream  text NOT NULL REFERENCES vms.sip_upstream (name) ON DELETE CASCADE ON UPDATE CASCADE,
    code      text NOT NULL,
    at        timestamptz NOT NULL,
    PRIMARY KEY (upstream, code),
    sent_at   timestamptz,
    position  text,
    held      boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE vms.sip_share_position_told IS
    'for each channel shared with a subscribed upper platform (by presented code): the time of the last position (vms.mobile_position) looked at, when one was last sent and what it said';
COMMENT ON COLUMN vms.sip_share_position_told.sent_at IS 'when a MobilePosition NOTIFY of the channel was last sent';
COMMENT ON COLUMN vms.sip_share_position_told.position IS
    'what it said: longitude, latitude (6 decimals), speed, direction, altitude';
COMMENT ON COLUMN vms.sip_share_position_told.held IS
    'a change of its position is held back (sent less than an Interval ago): looked at again when it is due';

-- The device codes of vms.mobile_position reported since the worker last
-- compared, per upper platform subscribed to positions (queued by
-- vms._sip_position_touched): a compare on a report looks at the shared
-- channels of these devices (and those held back) only, not at the whole share.
CREATE TABLE vms.sip_position_change (
    upstream     text NOT NULL REFERENCES vms.sip_upstream (name) ON DELETE CASCADE ON UPDATE CASCADE,
    device_code  vms.gbcode NOT NULL,
    PRIMARY KEY (upstream, device_code)
);
COMMENT ON TABLE vms.sip_position_change IS
    'internal: the device codes that reported positions since the SIP worker last compared, per upper platform subscribed to positions (one row a code until taken)';

-- The positions of shared channels that changed since the upstream was sent
-- one: the latest vms.mobile_position of each channel (reported under its own
-- code or its device's), one MANSCDP Notify MobilePosition each under the
-- code the upstream knows it by, recorded as sent.  A newer report that says
-- the same (longitude, latitude, speed, direction, altitude as sent) is not a
-- change: it is only recorded as looked at.  gap: the subscription's Interval;
-- a channel sent less than gap seconds ago is not sent again yet, but keeps
-- its change: the row with a NULL body says when the first such channel is
-- due (its last NOTIFY + gap), and the newest position then goes.  restart: a
-- new subscription, every channel's latest position is sent again.  whole:
-- every shared channel is looked at (the periodic compare); else only the
-- channels of the devices that reported since the last compare
-- (vms.sip_position_change, taken here) and those with a change held back.
CREATE FUNCTION vms._sip_upstream_positions(upstream text, sn bigint, restart boolean DEFAULT false, gap integer DEFAULT 0,
                                            whole boolean DEFAULT true)
    RETURNS TABLE (body bytea, due timestamptz)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    u record;
    enc text;
    wait interval := make_interval(secs => greatest(coalesce(gap, 0), 0));
    reported vms.gbcode[];
BEGIN
    SELECT * INTO u FROM vms._sip_upstreams() x WHERE x.name = _sip_upstream_positions.upstream;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF restart THEN
        DELETE FROM vms.sip_share_position_told t WHERE t.upstream = _sip_upstream_positions.upstream;
    END IF;
    -- the codes reported since the last compare, taken first: the compare below is a later statement (a later
    -- snapshot), so it sees every report committed with a code taken here.  A code a reporting transaction still
    -- holds (locked by its trigger) is skipped: it stays queued, and that transaction's wake follows its commit.
    WITH taken AS (
        DELETE FROM vms.sip_position_change q
         WHERE q.upstream = _sip_upstream_positions.upstream
           AND q.device_code IN (SELECT l.device_code FROM vms.sip_position_change l
                                  WHERE l.upstream = _sip_upstream_positions.upstream FOR UPDATE SKIP LOCKED)
        RETURNING q.device_code)
    SELECT coalesce(array_agg(t.device_code), '{}') INTO reported FROM taken t;
    enc := CASE u.charset WHEN 'UTF-8' THEN 'UTF8' ELSE 'GB18030' END;
    RETURN QUERY
    WITH latest AS (
        SELECT sc.code::text AS code, p.at, round(ST_X(p.geom)::numeric, 6) AS lon, round(ST_Y(p.geom)::numeric, 6) AS lat,
               coalesce(p.speed, 0) AS speed, coalesce(p.direction, 0) AS direction, coalesce(p.altitude, 0) AS altitude
          FROM vms.sip_shared_channels(_sip_upstream_positions.upstream) sc
          JOIN vms.channel c ON c.code = sc.channel
          -- the channels looked at before their positions are (one hashed set each)
          CROSS JOIN LATERAL (SELECT restart OR whole
                                  OR c.code IN (SELECT x.code FROM vms.channel x
                                                 WHERE x.code = ANY (reported) OR x.device_code = ANY (reported))
                                  OR sc.code::text IN (SELECT h.code FROM vms.sip_share_position_told h
                                                        WHERE h.upstream = _sip_upstream_positions.upstream AND h.held)
                                     AS look) w
          CROSS JOIN LATERAL (SELECT mp.at, mp.geom, mp.speed, mp.direction, mp.altitude
                                FROM vms.mobile_position mp
                               WHERE w.look AND mp.device_code IN (c.code, c.device_code)
                               ORDER BY mp.at DESC LIMIT 1) p
    ), newer AS (
        SELECT l.*, concat_ws(' ', l.lon, l.lat, l.speed, l.direction, l.altitude) AS position,
               t.position AS told_position, t.sent_at AS told_sent_at
          FROM latest l
          LEFT JOIN vms.sip_share_position_told t ON t.upstream = _sip_upstream_positions.upstream AND t.code = l.code
         WHERE t.at IS NULL OR l.at > t.at
    ), cand AS (
        SELECT n.*, n.told_position IS DISTINCT FROM n.position AND (n.told_sent_at IS NULL OR n.told_sent_at <= now() - wait) AS send
          FROM newer n
    ), recorded AS (
        -- sent now, or a newer report of the same position (looked at); a change not yet due stays as it was,
        -- marked held (a held row always exists: it was sent less than an Interval ago)
        INSERT INTO vms.sip_share_position_told AS t (upstream, code, at, sent_at, position, held)
        SELECT _sip_upstream_positions.upstream, c.code, c.at, CASE WHEN c.send THEN now() ELSE c.told_sent_at END, c.position,
               NOT c.send AND c.told_position IS DISTINCT FROM c.position
          FROM cand c
        ON CONFLICT ON CONSTRAINT sip_share_position_told_pkey
        DO UPDATE SET at = CASE WHEN EXCLUDED.held THEN t.at ELSE EXCLUDED.at END, sent_at = EXCLUDED.sent_at,
                      position = CASE WHEN EXCLUDED.held THEN t.position ELSE EXCLUDED.position END, held = EXCLUDED.held
    )
    SELECT r.body, r.due FROM (
        SELECT convert_to('<?xml version="1.0" encoding="' || u.charset || '"?>' || E'\r\n' || xmlelement(name "Notify",
                   xmlelement(name "CmdType", 'MobilePosition'),
                   xmlelement(name "SN", sn + row_number() OVER (ORDER BY c.code)),
                   xmlelement(name "DeviceID", c.code),
                   xmlelement(name "Time", to_char(c.at, 'YYYY-MM-DD"T"HH24:MI:SS')),
                   xmlelement(name "Longitude", c.lon),
                   xmlelement(name "Latitude", c.lat),
                   xmlelement(name "Speed", c.speed),
                   xmlelement(name "Direction", c.direction),
                   xmlelement(name "Altitude", c.altitude))::text, enc) AS body, NULL::timestamptz AS due, c.code AS k
          FROM cand c
         WHERE c.send
        UNION ALL
        SELECT NULL, min(c.told_sent_at) + wait, NULL
          FROM cand c
         WHERE NOT c.send AND c.told_position IS DISTINCT FROM c.position
        HAVING count(*) > 0) r
     ORDER BY r.k NULLS LAST;
END $$;
COMMENT ON FUNCTION vms._sip_upstream_positions(text, bigint, boolean, integer, boolean) IS
    'internal: the changed positions of channels shared with an upper platform as MANSCDP MobilePosition notifications, at most one per channel every gap seconds (a NULL body says when the next held back is due); recorded as sent; whole false: only the channels of devices that reported since the last compare, and those held back';

-- true the first time in a transaction: the mark of vms._sip_position_touched's one wake a transaction, kept in C
-- (extension/xact_claims.c) rather than in a setting that a session could set to skip its wake
CREATE FUNCTION vms._sip_position_first_wake() RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_sip_position_first_wake' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION vms._sip_position_first_wake() FROM PUBLIC;
COMMENT ON FUNCTION vms._sip_position_first_wake() IS
    'internal: true the first time in this transaction, false after (a savepoint rolled back takes the mark with it, a released one keeps it): vms._sip_position_touched wakes the SIP worker once a transaction';

-- a report of a position wakes the SIP worker while an upper platform subscribes to positions: it sends the change
-- at once (rate-limited by the subscription's Interval)
CREATE FUNCTION vms._sip_position_touched() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM vms.sip_upstream_state s WHERE s.state = 'registered' AND s.subscriptions ? 'MobilePosition') THEN
        -- the devices reported, per subscribed upper platform.  A code already queued is not rewritten but locked
        -- until this transaction ends (DO UPDATE ... WHERE false), so the worker's take skips it instead of taking
        -- it for a compare that cannot see this report yet.  Locked (or inserted) in key order: two statements
        -- reporting the same devices wait for each other, they do not deadlock (the SIP worker reports its
        -- batch's positions in code order too)
        INSERT INTO vms.sip_position_change AS q (upstream, device_code)
        SELECT s.upstream, r.device_code
          FROM vms.sip_upstream_state s CROSS JOIN (SELECT DISTINCT n.device_code FROM reported n) r
         WHERE s.state = 'registered' AND s.subscriptions ? 'MobilePosition'
         ORDER BY s.upstream, r.device_code
        ON CONFLICT ON CONSTRAINT sip_position_change_pkey DO UPDATE SET device_code = EXCLUDED.device_code WHERE false;
        -- one wake a transaction (not one a statement: a report is one): it commits with all of the transaction's
        -- reports and codes, so the compare it wakes sees them.  A savepoint rolled back takes the mark with it.
        IF vms._sip_position_first_wake() THEN
            INSERT INTO vms.sip_share_change (source) VALUES ('mobile_position');
            PERFORM vms._wake_worker('sip');
        END IF;
    END IF;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION vms._sip_position_touched() FROM PUBLIC;
COMMENT ON FUNCTION vms._sip_position_touched() IS
    'internal (statement trigger, SECURITY DEFINER to queue for any role that may report positions): queue the devices reported for upper platforms subscribed to positions, and wake the SIP worker (one wake a transaction) to send what changed';

-- An INVITE of an upper platform (the worker calls this before relaying it):
-- the ledger channel and device of the code it asks for, and whether every
-- media address its SDP names (c= lines) is inside the upstream's media_nets
-- (default: the upstream's own address only), so that a device is never made
-- to stream elsewhere.  Every INVITE is written to the audit log, relayed or not.
CREATE FUNCTION vms._sip_upstream_relay(upstream text, code text, media text, source text)
    RETURNS TABLE (channel text, device text, refusal text)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_variable
DECLARE
    u vms.sip_upstream;
    nets cidr[];
    a text;
    addr inet;
BEGIN
    SELECT * INTO u FROM vms.sip_upstream s WHERE s.name = _sip_upstream_relay.upstream;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT s.channel::text, c.device_code::text INTO channel, device
      FROM vms.sip_shared_channels(u.name) s JOIN vms.channel c ON c.code = s.channel
     WHERE s.code::text = _sip_upstream_relay.code;
    nets := coalesce((SELECT array_agg(n::cidr) FROM jsonb_array_elements_text(u.options -> 'media_nets') n),
                     ARRAY[set_masklen(u.host::inet, 32)::cidr]);
    IF channel IS NULL THEN
        refusal := 'not shared';
    ELSIF coalesce(media, '') = '' THEN
        refusal := 'no media address in the SDP';
    ELSE
        FOREACH a IN ARRAY string_to_array(media, ',') LOOP
            BEGIN
                addr := a::inet;
            EXCEPTION WHEN invalid_text_representation THEN
                addr := NULL;            -- a host name, or garbage
            END;
            -- only the canonical form: a device's inet_aton reads 010.1.2.3
            -- as octal, an address other than the one checked here
            IF addr IS NULL OR host(addr) <> a OR NOT addr <<= ANY (nets) THEN
                refusal := format('media address %s is outside media_nets', a);
                EXIT;
            END IF;
        END LOOP;
    END IF;
    PERFORM vms.audit('sip_upstream_invite', u.name,
        jsonb_build_object('upstream', u.name, 'code', code, 'channel', channel, 'device', device,
                           'media', to_jsonb(string_to_array(media, ',')), 'source', source,
                           'result', coalesce(refusal, 'relayed')));
    RETURN NEXT;
END $$;
COMMENT ON FUNCTION vms._sip_upstream_relay(text, text, text, text) IS
    'internal: an upper platform''s INVITE: its channel and device, refused when its media addresses are outside media_nets; audited';

CREATE FUNCTION vms._sip_upstream_bye(upstream text, code text, channel text, media text, source text, ended_by text)
    RETURNS void
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    SELECT NULL FROM vms.audit('sip_upstream_bye', upstream,
        jsonb_build_object('upstream', upstream, 'code', code, 'channel', channel,
                           'media', to_jsonb(string_to_array(media, ',')), 'source', source, 'ended_by', ended_by))
$$;
COMMENT ON FUNCTION vms._sip_upstream_bye(text, text, text, text, text, text) IS
    'internal: a relayed call of an upper platform ended: audited with who or what ended it (ended_by: upstream, device, cancel, timeout, dropped, disabled, no ack)';

-- NOTIFY on the change itself: a statement that changes what an upper
-- platform may be told (the ledger's channels and devices, channel status,
-- catalogue nodes and membership, tags, a share, its codes or an upstream's
-- options, a new alarm) queues a
-- row here and wakes the SIP worker at its commit, while an upstream is
-- registered; the worker takes the queue and compares at once.  Its periodic
-- compare stays as the reconciler.
CREATE TABLE vms.sip_share_change (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source     text NOT NULL,
    queued_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.sip_share_change IS
    'internal: statements that changed what an upper platform may be told (source: the table; mobile_position: a reported position, while an upper platform subscribes to positions), queued for the SIP worker (it empties the queue and compares the shares or positions at once)';

-- SECURITY DEFINER: whoever may change the ledger must be able to queue the
-- wake, without any privilege on the queue; it writes only the table's name.
CREATE FUNCTION vms._sip_share_touched() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM vms.sip_upstream_state s WHERE s.state = 'registered') THEN
        INSERT INTO vms.sip_share_change (source) VALUES (TG_TABLE_NAME);
        PERFORM vms._wake_worker('sip');
    END IF;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION vms._sip_share_touched() FROM PUBLIC;
COMMENT ON FUNCTION vms._sip_share_touched() IS
    'internal (statement trigger, SECURITY DEFINER to queue for any role that may change the ledger): wake the SIP worker to tell upper platforms what changed';
CREATE TRIGGER sip_share_touched AFTER INSERT OR UPDATE OR DELETE ON vms.channel
    FOR EACH STATEMENT EXECUTE FUNCTION vms._sip_share_touched();
CREATE TRIGGER sip_share_touched AFTER UPDATE ON vms.device
    FOR EACH STATEMENT EXECUTE FUNCTION vms._sip_share_touched();
CREATE TRIGGER sip_share_touched AFTER INSERT OR UPDATE OR DELETE ON vms.channel_status
    FOR EACH STATEMENT EXECUTE FUNCTION vms._sip_share_touched();
CREATE TRIGGER sip_share_touched AFTER INSERT OR UPDATE OR DELETE ON vms.catalog_member
    FOR EACH STATEMENT EXECUTE FUNCTION vms._sip_share_touched();
CREATE TRIGGER sip_share_touched AFTER INSERT OR UPDATE OR DELETE ON vms.catalog_node
    FOR EACH STATEMENT EXECUTE FUNCTION vms._sip_share_touched();
CREATE TRIGGER sip_share_touched AFTER INSERT OR UPDATE OR DELETE ON vms.channel_tag
    FOR EACH STATEMENT EXECUTE FUNCTION vms._sip_share_touched();
CREATE TRIGGER sip_share_touched AFTER INSERT OR UPDATE OR DELETE ON vms.sip_share
    FOR EACH STATEMENT EXECUTE FUNCTION vms._sip_share_touched();
CREATE TRIGGER sip_share_touched AFTER INSERT OR UPDATE OR DELETE ON vms.sip_share_code
    FOR EACH STATEMENT EXECUTE FUNCTION vms._sip_share_touched();
CREATE TRIGGER sip_share_touched AFTER UPDATE ON vms.sip_upstream
    FOR EACH STATEMENT EXECUTE FUNCTION vms._sip_share_touched();
CREATE TRIGGER sip_share_touched AFTER INSERT ON vms.alarm
    FOR EACH STATEMENT EXECUTE FUNCTION vms._sip_share_touched();
CREATE TRIGGER sip_position_touched AFTER INSERT ON vms.mobile_position
    REFERENCING NEW TABLE AS reported FOR EACH STATEMENT EXECUTE FUNCTION vms._sip_position_touched();

CREATE FUNCTION vms._sip_take_share_changes() RETURNS TABLE (share bigint, positions bigint)
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    WITH taken AS (DELETE FROM vms.sip_share_change RETURNING source)
    SELECT count(*) FILTER (WHERE source <> 'mobile_position'), count(*) FILTER (WHERE source = 'mobile_position') FROM taken
$$;
COMMENT ON FUNCTION vms._sip_take_share_changes() IS
    'internal: the SIP worker takes the queued changes (the rows its snapshot sees; later commits stay queued): how many of the shares, how many of positions';

-- A control or query of an upper platform for a channel (the worker calls
-- this before relaying it): DeviceControl (PTZ, PTZPreciseCtrl, record,
-- guard, alarm reset, I-frame, drag zoom, home position; not TeleBoot,
-- FormatSDCard, DeviceUpgrade or anything else not listed), RecordInfo and
-- PresetQuery, for a code it is shared.  root and cmd are the root element
-- and the CmdType the worker read (its first <CmdType>); request is the body
-- as the worker parsed it, as json (duplicate keys kept, in document order).
-- Refused: a body whose top level names an element twice or that has a
-- CmdType, SN or DeviceID below the top level, another CmdType than the
-- worker's, an element not listed for the command, or a value not of its
-- form.  Nothing of the upper platform's body goes to the device as it came:
-- body is the command's elements rebuilt from the listed fields only (after
-- DeviceID; the worker wraps them with CmdType, its SN and the channel, as
-- for vms's own commands).  Gives the ledger channel and device, a refusal,
-- the answer the upper platform gets when it is refused or the device cannot
-- be reached (Result ERROR; a query: SumNum 0), and the body.  Every one is
-- audited, relayed or not.
CREATE FUNCTION vms._sip_upstream_control(upstream text, code text, sn text, root text, cmd text, request json,
                                          source text)
    RETURNS TABLE (channel text, device text, refusal text, answer bytea, body text)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_variable
DECLARE
    u record;
    -- per command: each element it may have, as the pattern of its text, or an object of its children's patterns
    allowed jsonb := CASE WHEN root = 'Control' AND cmd = 'DeviceControl' THEN jsonb_build_object(
        'PTZCmd', '^[0-9A-Fa-f]{16}$',
        'PTZPreciseCtrl', jsonb_build_object('Pan', '^-?[0-9]{1,6}(\.[0-9]{1,6})?$', 'Tilt', '^-?[0-9]{1,6}(\.[0-9]{1,6})?$',
                                             'Zoom', '^-?[0-9]{1,6}(\.[0-9]{1,6})?$'),
        'RecordCmd', '^(Record|StopRecord)$', 'GuardCmd', '^(SetGuard|ResetGuard)$', 'AlarmCmd', '^ResetAlarm$',
        'IFameCmd', '^Send$',
        'DragZoomIn', jsonb_build_object('Length', '^[0-9]{1,6}$', 'Width', '^[0-9]{1,6}$', 'MidPointX', '^[0-9]{1,6}$',
                                         'MidPointY', '^[0-9]{1,6}$', 'LengthX', '^[0-9]{1,6}$', 'LengthY', '^[0-9]{1,6}$'),
        'DragZoomOut', jsonb_build_object('Length', '^[0-9]{1,6}$', 'Width', '^[0-9]{1,6}$', 'MidPointX', '^[0-9]{1,6}$',
                                          'MidPointY', '^[0-9]{1,6}$', 'LengthX', '^[0-9]{1,6}$', 'LengthY', '^[0-9]{1,6}$'),
        'HomePosition', jsonb_build_object('Enabled', '^[01]$', 'ResetTime', '^[0-9]{1,9}$', 'PresetIndex', '^[0-9]{1,3}$'),
        'Info', jsonb_build_object('ControlPriority', '^[0-9]{1,3}$', 'AlarmMethod', '^[0-9/]{0,16}$',
                                   'AlarmType', '^[0-9/]{0,16}$'),
        'StreamNumber', '^[0-9]{1,2}$')
        WHEN root = 'Query' AND cmd = 'RecordInfo' THEN jsonb_build_object(
        'StartTime', '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$',
        'EndTime', '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$',
        'FilePath', '^[^[:cntrl:]]{0,255}$', 'Address', '^[^[:cntrl:]]{0,255}$', 'Secrecy', '^[01]$',
        'Type', '^(time|alarm|manual|all)$', 'RecorderID', '^[0-9]{0,20}$', 'IndistinctQuery', '^[01]$',
        'StreamNumber', '^[0-9]{1,2}$', 'AlarmMethod', '^[0-9/]{0,16}$', 'AlarmType', '^[0-9/]{0,16}$')
        WHEN root = 'Query' AND cmd = 'PresetQuery' THEN '{}'::jsonb END;
    what text := coalesce(left(cmd, 40), 'a message without CmdType');
    e record;
    f record;
    parts text[] := '{}';
    sub text[];
    t text;  -- <x>the value, XML-escaped</x>
    enc text;
BEGIN
    SELECT * INTO u FROM vms._sip_upstreams() x WHERE x.name = _sip_upstream_control.upstream;
    IF NOT FOUND OR sn IS NULL OR sn !~ '^[0-9]{1,15}$' THEN
        RETURN;
    END IF;
    SELECT s.channel::text, c.device_code::text INTO channel, device
      FROM vms.sip_shared_channels(u.name) s JOIN vms.channel c ON c.code = s.channel
     WHERE s.code::text = _sip_upstream_control.code;
    IF channel IS NULL THEN
        refusal := 'not shared';
    ELSIF allowed IS NULL THEN
        refusal := format('%s is not relayed', what);
    ELSIF json_typeof(request) IS DISTINCT FROM 'object' THEN
        refusal := 'the body is not an element with children';
    END IF;
    -- one of each element at the top; CmdType, SN and DeviceID only there, and the CmdType the worker acts on
    IF refusal IS NULL THEN
        SELECT format('<%s> appears twice', left(k, 40)) INTO refusal
          FROM json_object_keys(request) k GROUP BY k HAVING count(*) > 1 LIMIT 1;
    END IF;
    IF refusal IS NULL AND request ->> 'CmdType' IS DISTINCT FROM cmd THEN
        refusal := 'its CmdType is not the one the worker read';
    END IF;
    IF refusal IS NULL THEN
        WITH RECURSIVE t(k, v, depth) AS (
            SELECT j.key, j.value, 1 FROM json_each(request) j
            UNION ALL
            SELECT j.key, j.value, t.depth + 1
              FROM t, LATERAL json_each(CASE WHEN json_typeof(t.v) = 'object' THEN t.v ELSE '{}' END) j
             WHERE t.depth < 10)
        SELECT format('<%s> is nested in the body', k) INTO refusal
          FROM t WHERE depth > 1 AND k IN ('CmdType', 'SN', 'DeviceID') LIMIT 1;
    END IF;
    -- the body rebuilt from the listed elements only, each value of its form (XML-escaped)
    IF refusal IS NULL THEN
        FOR e IN SELECT j.key AS k, j.value AS v, allowed -> j.key AS pat FROM json_each(request) j
                  WHERE j.key NOT IN ('CmdType', 'SN', 'DeviceID') LOOP
            IF e.pat IS NULL THEN
                refusal := format('%s %s is not relayed', CASE WHEN cmd = 'DeviceControl' THEN 'control' ELSE cmd END, left(e.k, 40));
            ELSIF jsonb_typeof(e.pat) = 'string' THEN
                IF json_typeof(e.v) <> 'string' OR (e.v #>> '{}') !~ (e.pat #>> '{}') THEN
                    refusal := format('%s is not of the form %s', e.k, e.pat #>> '{}');
                ELSE
                    t := xmlelement(name x, e.v #>> '{}')::text;
                    parts := parts || format('<%s>%s</%s>', e.k, substr(t, 4, length(t) - 7), e.k);
                END IF;
            ELSIF json_typeof(e.v) <> 'object' THEN
                refusal := format('%s is not an element with children', e.k);
            ELSE
                sub := '{}';
                FOR f IN SELECT j.key AS k, j.value AS v, e.pat -> j.key AS pat, count(*) OVER (PARTITION BY j.key) AS n
                           FROM json_each(e.v) j LOOP
                    IF f.n > 1 THEN
                        refusal := format('<%s> appears twice in %s', left(f.k, 40), e.k);
                    ELSIF f.pat IS NULL THEN
                        refusal := format('%s in %s is not relayed', left(f.k, 40), e.k);
                    ELSIF json_typeof(f.v) <> 'string' OR (f.v #>> '{}') !~ (f.pat #>> '{}') THEN
                        refusal := format('%s in %s is not of the form %s', f.k, e.k, f.pat #>> '{}');
                    ELSE
                        t := xmlelement(name x, f.v #>> '{}')::text;
                        sub := sub || format('<%s>%s</%s>', f.k, substr(t, 4, length(t) - 7), f.k);
                    END IF;
                    EXIT WHEN refusal IS NOT NULL;
                END LOOP;
                parts := parts || format('<%s>%s</%s>', e.k, array_to_string(sub, ''), e.k);
            END IF;
            EXIT WHEN refusal IS NOT NULL;
        END LOOP;
    END IF;
    IF refusal IS NULL THEN
        -- well-formed, or an error here rather than a malformed MESSAGE
        body := xmlparse(content array_to_string(parts, E'\r\n'))::text;
    END IF;
    enc := CASE u.charset WHEN 'UTF-8' THEN 'UTF8' ELSE 'GB18030' END;
    answer := convert_to('<?xml version="1.0" encoding="' || u.charset || '"?>' || E'\r\n' || xmlelement(name "Response",
        xmlelement(name "CmdType", cmd), xmlelement(name "SN", sn), xmlelement(name "DeviceID", code),
        CASE WHEN cmd = 'DeviceControl' THEN xmlelement(name "Result", 'ERROR') END,
        CASE WHEN cmd = 'RecordInfo' THEN xmlconcat(xmlelement(name "Name", ''), xmlelement(name "SumNum", 0),
                                                     xmlelement(name "RecordList", xmlattributes(0 AS "Num"))) END,
        CASE WHEN cmd = 'PresetQuery' THEN xmlconcat(xmlelement(name "SumNum", 0),
                                                      xmlelement(name "PresetList", xmlattributes(0 AS "Num"))) END)::text, enc);
    PERFORM vms.audit('sip_upstream_control', u.name,
        jsonb_build_object('upstream', u.name, 'code', code, 'channel', channel, 'device', device, 'cmd', cmd,
                           'request', CASE WHEN json_typeof(request) = 'object' THEN request::jsonb - 'SN' - 'DeviceID' END,
                           'source', source, 'result', coalesce(refusal, 'relayed')));
    RETURN NEXT;
END $$;
COMMENT ON FUNCTION vms._sip_upstream_control(text, text, text, text, text, json, text) IS
    'internal: an upper platform''s PTZ/DeviceControl, RecordInfo or PresetQuery for a channel: its channel and device, or why it is refused (a duplicated or nested CmdType/SN/DeviceID, an element not listed, a value not of its form), with the answer for a refusal, and the command''s elements rebuilt from the listed fields (nothing of the body goes on as it came); audited';

-- A device's answer to a control or query relayed from an upper platform
-- (DeviceControl, RecordInfo, PresetQuery), rebuilt for the upper platform as
-- the request sent down is: nothing of the device's body goes up as it came.
-- answer is the device's body as the worker parsed it (json; the worker
-- checked that it is a Response of the relayed CmdType that names no element
-- twice at the top).  Up go, in a fixed order, only the listed elements, each
-- a string of its form and length (else left out), escaped by PostgreSQL's
-- XML functions, in the upstream's charset: the upper platform's SN, the code
-- the upper platform knows the channel by (code) as the answer's DeviceID and
-- every item's, and its presented name as every Name; the device's SumNum
-- (else the items' count).  DeviceControl: Result OK or ERROR (anything else
-- is ERROR).  RecordInfo items: FilePath, Address, StartTime, EndTime,
-- Secrecy, Type, RecorderID (only when it is the channel itself, then as the
-- presented code), FileSize, StreamNumber; one without a valid StartTime and
-- EndTime is left out.  PresetQuery items: PresetID (required), PresetName.
-- An item that names a field twice, or is not an element with children, is
-- left out.  Nothing when code is not how the upper platform knows channel
-- now (vms.sip_shared_channels).  A RecordInfo or PresetQuery answer goes in
-- pages (rows) of at most 8,000 bytes each (at least one item a page), as
-- catalog answers are paged: each with the SumNum of the whole answer, its
-- Num the items on that page.
CREATE FUNCTION vms._sip_upstream_control_answer(upstream text, code text, channel text, sn text, cmd text, answer json)
    RETURNS SETOF bytea
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
#variable_conflict use_variable
DECLARE
    u record;
    time_pat constant text := '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$';
    list text := CASE cmd WHEN 'RecordInfo' THEN 'RecordList' WHEN 'PresetQuery' THEN 'PresetList' END;
    -- each item's fields in the order they go up, with the pattern of their text
    fields text[] := CASE cmd
        WHEN 'RecordInfo' THEN ARRAY[['FilePath', '^[^[:cntrl:]]{0,255}$'], ['Address', '^[^[:cntrl:]]{0,255}$'],
                                     ['StartTime', time_pat], ['EndTime', time_pat], ['Secrecy', '^[01]$'],
                                     ['Type', '^(time|alarm|manual|all)$'], ['RecorderID', '^[0-9]{20}$'],
                                     ['FileSize', '^[0-9]{1,15}$'], ['StreamNumber', '^[0-9]{1,2}$']]
        WHEN 'PresetQuery' THEN ARRAY[['PresetID', '^[0-9]{1,3}$'], ['PresetName', '^[^[:cntrl:]]{0,64}$']] END;
    required text[] := CASE cmd WHEN 'RecordInfo' THEN ARRAY['StartTime', 'EndTime'] ELSE ARRAY['PresetID'] END;
    presented_name text;
    name_xml text;  -- the presented name, XML-escaped
    it json;
    parts text[];
    items text[] := '{}';
    v text;
    t text;
    ok boolean;
    sum_num text;
    result text;
    doc text;
    enc text;
    page_bytes constant integer := 8000;  -- a page's body at most (one item always goes)
    budget integer;
    pages text[] := '{}';
    page text := '';
    used integer := 0;
    n integer;
    nums integer[] := '{}';
    on_page integer := 0;  -- items on the page being filled
BEGIN
    SELECT * INTO u FROM vms._sip_upstreams() x WHERE x.name = _sip_upstream_control_answer.upstream;
    IF NOT FOUND OR sn IS NULL OR sn !~ '^[0-9]{1,15}$' OR code IS NULL OR code !~ '^[0-9]{20}$'
       OR cmd IS NULL OR cmd NOT IN ('DeviceControl', 'RecordInfo', 'PresetQuery')
       OR json_typeof(answer) IS DISTINCT FROM 'object' THEN
        RETURN;
    END IF;
    -- only under the code the upper platform knows this channel by now (a relay outlives a remapping or a drop)
    SELECT s.name INTO presented_name FROM vms.sip_shared_channels(u.name) s
     WHERE s.code::text = _sip_upstream_control_answer.code AND s.channel::text = _sip_upstream_control_answer.channel;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    enc := CASE u.charset WHEN 'UTF-8' THEN 'UTF8' ELSE 'GB18030' END;
    doc := format('<Response>%s<CmdType>%s</CmdType>%s<SN>%s</SN>%s<DeviceID>%s</DeviceID>%s', E'\r\n', cmd, E'\r\n', sn,
                  E'\r\n', code, E'\r\n');
    IF cmd = 'DeviceControl' THEN
        result := CASE WHEN answer ->> 'Result' IN ('OK', 'ERROR') THEN answer ->> 'Result' ELSE 'ERROR' END;
        doc := doc || format('<Result>%s</Result>%s', result, E'\r\n');
    ELSE
        t := xmlelement(name x, coalesce(presented_name, ''))::text;
        name_xml := substr(t, 4, length(t) - 7);
        FOR it IN SELECT e FROM json_array_elements(CASE WHEN json_typeof(answer -> list) = 'array' THEN answer -> list
                                                        ELSE '[]' END) e LOOP
            CONTINUE WHEN json_typeof(it) <> 'object'
                 OR (SELECT count(*) <> count(DISTINCT k) FROM json_object_keys(it) k);
            parts := CASE cmd WHEN 'RecordInfo' THEN ARRAY[format('<DeviceID>%s</DeviceID>', code),
                                                           '<Name>' || name_xml || '</Name>']
                              ELSE '{}' END;
            ok := true;
            FOR i IN 1 .. array_length(fields, 1) LOOP
                v := CASE WHEN json_typeof(it -> fields[i][1]) = 'string' THEN it ->> fields[i][1] END;
                IF v IS NOT NULL AND v !~ fields[i][2] THEN
                    v := NULL;
                END IF;
                IF fields[i][1] = 'RecorderID' THEN
                    v := CASE WHEN v = channel THEN code END;
                END IF;
                IF v IS NULL AND fields[i][1] = ANY (required) THEN
                    ok := false;
                    EXIT;
                END IF;
                IF v IS NOT NULL THEN
                    t := xmlelement(name x, v)::text;
                    parts := parts || format('<%s>%s</%s>', fields[i][1], substr(t, 4, length(t) - 7), fields[i][1]);
                END IF;
            END LOOP;
            IF ok THEN
                items := items || ('<Item>' || array_to_string(parts, '') || '</Item>');
            END IF;
        END LOOP;
        sum_num := CASE WHEN answer ->> 'SumNum' ~ '^[0-9]{1,9}$' THEN (answer ->> 'SumNum')::integer::text
                        ELSE coalesce(array_length(items, 1), 0)::text END;
        IF cmd = 'RecordInfo' THEN
            doc := doc || format('<Name>%s</Name>%s', name_xml, E'\r\n');
        END IF;
        doc := doc || format('<SumNum>%s</SumNum>%s', sum_num, E'\r\n');
        -- the items in pages: what a page holds beside them (declaration, head, list tags, end) counted first
        budget := page_bytes - octet_length(convert_to(doc, enc)) - 120;
        FOREACH t IN ARRAY items LOOP
            n := octet_length(convert_to(t, enc)) + 2;
            IF on_page > 0 AND used + n > budget THEN
                pages := pages || page;
                nums := nums || on_page;
                page := '';
                used := 0;
                on_page := 0;
            END IF;
            page := page || t || E'\r\n';
            used := used + n;
            on_page := on_page + 1;
        END LOOP;
        pages := pages || page;
        nums := nums || on_page;
        FOR i IN 1 .. array_length(pages, 1) LOOP
            RETURN NEXT convert_to('<?xml version="1.0" encoding="' || u.charset || '"?>' || E'\r\n'
                || xmlparse(document doc
                    || CASE WHEN nums[i] = 0 THEN format('<%s Num="0"/>', list)
                            ELSE format('<%s Num="%s">%s%s</%s>', list, nums[i], E'\r\n', pages[i], list) END
                    || E'\r\n</Response>')::text || E'\r\n', enc);
        END LOOP;
        RETURN;
    END IF;
    doc := doc || '</Response>';
    -- well-formed, or an error here rather than a malformed MESSAGE
    RETURN NEXT convert_to('<?xml version="1.0" encoding="' || u.charset || '"?>' || E'\r\n'
                           || xmlparse(document doc)::text || E'\r\n', enc);
END $$;
COMMENT ON FUNCTION vms._sip_upstream_control_answer(text, text, text, text, text, json) IS
    'internal: a device''s answer to a relayed DeviceControl, RecordInfo or PresetQuery rebuilt for the upper platform from the listed fields only (bounded, escaped), under the code and name it knows the channel by (nothing when code is not that channel''s for it) and its SN, in its charset; lists in pages of at most 8,000 bytes';
