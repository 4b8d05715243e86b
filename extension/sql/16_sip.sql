-- GB/T 28181 device sessions, kept by the "vms sip" worker.
--
-- The worker holds live state in memory and writes it here in batches
-- (vms._sip_flush, about once a second): registrations, keepalive times,
-- online/offline transitions with their cause.  SQL asks the worker for
-- things through vms.sip_request (catalog, DeviceInfo, DeviceStatus,
-- subscriptions); the worker is woken when such a request commits.

CREATE TABLE vms.device_session (
    device_code        vms.gbcode PRIMARY KEY REFERENCES vms.device (code) ON DELETE CASCADE,
    transport          text CHECK (transport IN ('UDP', 'TCP')),
    address            inet,
    port               integer,
    user_agent         text,
    registered_at      timestamptz,
    expires_at         timestamptz,
    last_keepalive_at  timestamptz,
    keepalive_interval integer CHECK (keepalive_interval BETWEEN 5 AND 3600),
    keepalive_count    integer CHECK (keepalive_count BETWEEN 1 AND 100),
    online             boolean NOT NULL DEFAULT false,
    auth_failures      integer NOT NULL DEFAULT 0,
    banned_until       timestamptz,
    last_status        jsonb,
    last_info          jsonb,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    digest_qop         boolean NOT NULL DEFAULT true,
    gb_version         text,
    gb_version_override text CHECK (gb_version_override ~ '^[0-9]{1,2}\.[0-9]{1,2}$')
);
COMMENT ON TABLE vms.device_session IS
    'GB/T 28181 session of each device as the SIP worker last wrote it: registration, keepalive, online state, bans';
COMMENT ON COLUMN vms.device_session.keepalive_interval IS 'seconds between keepalives for this device; NULL = vms.sip_keepalive_interval';
COMMENT ON COLUMN vms.device_session.keepalive_count IS 'missed keepalives before offline; NULL = vms.sip_keepalive_count';
COMMENT ON COLUMN vms.device_session.expires_at IS 'end of the current registration; a device is offline once it passes';
COMMENT ON COLUMN vms.device_session.banned_until IS 'REGISTER is refused until then after repeated authentication failures';
COMMENT ON COLUMN vms.device_session.digest_qop IS
    'true (default): the digest challenge offers qop="auth" and REGISTER must answer with it (nc tracked, no replay); false for devices that cannot do qop: each nonce is then good for one REGISTER; set with vms.sip_set_digest_qop';

CREATE TABLE vms.device_event (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_code  vms.gbcode NOT NULL,
    at           timestamptz NOT NULL,
    event        text NOT NULL CHECK (event IN ('registered', 'unregistered', 'online', 'offline',
                                                'auth_failed', 'banned', 'added', 'expired')),
    cause        text,
    address      text
);
CREATE INDEX device_event_device_idx ON vms.device_event (device_code, at);
CREATE INDEX device_event_at_idx ON vms.device_event (at);
COMMENT ON TABLE vms.device_event IS
    'every device session transition with its time and cause (keepalive timeout, registration expired, unregister, restart grace...)';

-- What a device's catalog last said about each channel's status.
CREATE TABLE vms.channel_status (
    code         vms.gbcode PRIMARY KEY REFERENCES vms.channel (code) ON DELETE CASCADE,
    status       text NOT NULL CHECK (status IN ('ON', 'OFF', 'VLOST', 'DEFECT', 'DEL')),
    reported_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.channel_status IS
    'channel status from catalog answers and NOTIFY events; a channel is online when its device is and its status is ON';

CREATE TABLE vms.sip_request (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_code  vms.gbcode NOT NULL REFERENCES vms.device (code) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('catalog', 'device_info', 'device_status', 'subscribe', 'unsubscribe',
                                               'invite', 'bye')),
    params       jsonb NOT NULL DEFAULT '{}',
    state        text NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'sent', 'receiving', 'done', 'partial', 'failed', 'timeout')),
    requested_by text NOT NULL DEFAULT current_user,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    progress     jsonb,
    result       jsonb,
    error        text
);
CREATE INDEX sip_request_open_idx ON vms.sip_request (id) WHERE state IN ('queued', 'sent', 'receiving');
CREATE INDEX sip_request_device_idx ON vms.sip_request (device_code, created_at);
COMMENT ON TABLE vms.sip_request IS
    'requests to devices carried out by the SIP worker; progress shows catalog pages received (received of sum_num)';

CREATE TABLE vms.sip_subscription (
    device_code     vms.gbcode NOT NULL REFERENCES vms.device (code) ON DELETE CASCADE,
    event           text NOT NULL CHECK (event IN ('Catalog', 'Alarm', 'MobilePosition')),
    expires         integer NOT NULL CHECK (expires BETWEEN 60 AND 86400),
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'active', 'failed')),
    call_id         text,
    cseq            integer NOT NULL DEFAULT 0,
    subscribed_at   timestamptz,
    expires_at      timestamptz,
    last_notify_at  timestamptz,
    last_error      text,
    PRIMARY KEY (device_code, event)
);
COMMENT ON TABLE vms.sip_subscription IS
    'Catalog, Alarm and MobilePosition subscriptions; the SIP worker renews each before it expires';

CREATE TABLE vms.mobile_position (
    device_code  vms.gbcode NOT NULL,
    at           timestamptz NOT NULL,
    geom         geometry(Point, 4326) NOT NULL,
    speed        real,
    direction    real,
    altitude     real
);
CREATE INDEX mobile_position_device_idx ON vms.mobile_position (device_code, at);
COMMENT ON TABLE vms.mobile_position IS 'positions reported by mobile devices (MobilePosition NOTIFY), WGS-84';

-- Requests ------------------------------------------------------------------

CREATE FUNCTION vms._sip_request(device vms.gbcode, kind text, params jsonb DEFAULT '{}')
    RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    rid bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.device d WHERE d.code = device) THEN
        RAISE EXCEPTION 'device % is not in the ledger', device
            USING ERRCODE = 'undefined_object',
                  HINT = 'Add the device to vms.device first.';
    END IF;
    INSERT INTO vms.sip_request (device_code, kind, params) VALUES (device, kind, params)
        RETURNING id INTO rid;
    PERFORM vms._wake_worker('sip');
    RETURN rid;
END $$;
COMMENT ON FUNCTION vms._sip_request(vms.gbcode, text, jsonb) IS 'internal: queue a request for the SIP worker and wake it at commit';

CREATE FUNCTION vms.sip_query_catalog(device vms.gbcode) RETURNS bigint
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms._sip_request(device, 'catalog');
COMMENT ON FUNCTION vms.sip_query_catalog(vms.gbcode) IS
    'ask a device for its catalog; the answer pages are upserted into the ledger (raw layer, 215/216 trees); returns the request id';

CREATE FUNCTION vms.sip_query_device_info(device vms.gbcode) RETURNS bigint
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms._sip_request(device, 'device_info');
COMMENT ON FUNCTION vms.sip_query_device_info(vms.gbcode) IS
    'ask a device for DeviceInfo (manufacturer, model, firmware); reported into the device raw layer; returns the request id';

CREATE FUNCTION vms.sip_query_device_status(device vms.gbcode) RETURNS bigint
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms._sip_request(device, 'device_status');
COMMENT ON FUNCTION vms.sip_query_device_status(vms.gbcode) IS
    'ask a device for DeviceStatus; the answer lands in the request result and vms.device_session.last_status';

CREATE FUNCTION vms._sip_check_event(event text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF event IS NULL OR event NOT IN ('Catalog', 'Alarm', 'MobilePosition') THEN
        RAISE EXCEPTION 'unknown subscription event "%"', event
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use Catalog, Alarm or MobilePosition.';
    END IF;
END $$;
COMMENT ON FUNCTION vms._sip_check_event(text) IS 'internal: a subscription event is Catalog, Alarm or MobilePosition';

CREATE FUNCTION vms.sip_subscribe(device vms.gbcode, event text, expires integer DEFAULT 3600)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM vms._sip_check_event(event);
    IF expires IS NULL OR expires NOT BETWEEN 60 AND 86400 THEN
        RAISE EXCEPTION 'subscription expiry % is out of range', expires
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A subscription lasts 60 to 86400 seconds and is renewed before it ends.';
    END IF;
    RETURN vms._sip_request(device, 'subscribe', jsonb_build_object('event', event, 'expires', expires));
END $$;
COMMENT ON FUNCTION vms.sip_subscribe(vms.gbcode, text, integer) IS
    'subscribe to a device''s Catalog, Alarm or MobilePosition events; the worker renews before expiry; returns the request id';

CREATE FUNCTION vms.sip_unsubscribe(device vms.gbcode, event text) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM vms._sip_check_event(event);
    RETURN vms._sip_request(device, 'unsubscribe', jsonb_build_object('event', event));
END $$;
COMMENT ON FUNCTION vms.sip_unsubscribe(vms.gbcode, text) IS 'end a subscription (SUBSCRIBE with Expires: 0); returns the request id';

-- Live media: INVITE a channel to send RTP/PS to an address, and BYE.
CREATE FUNCTION vms.sip_invite(channel vms.gbcode, ip text, port integer, transport text DEFAULT 'udp')
    RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    dev vms.gbcode;
BEGIN
    SELECT c.device_code INTO dev FROM vms.channel c WHERE c.code = channel;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % is not in the ledger', channel USING ERRCODE = 'undefined_object';
    END IF;
    IF ip IS NULL OR ip !~ '^[0-9]{1,3}(\.[0-9]{1,3}){3}$' OR port IS NULL OR port NOT BETWEEN 1024 AND 65535 THEN
        RAISE EXCEPTION 'media address %:% is not an IPv4 address and a port from 1024 to 65535', ip, port
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF transport IS NULL OR transport NOT IN ('udp', 'tcp') THEN
        RAISE EXCEPTION 'media transport "%" is neither udp nor tcp', transport
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'tcp: RTP framed per RFC 4571, the device connects to ip:port (setup:passive).';
    END IF;
    RETURN vms._sip_request(dev, 'invite', jsonb_build_object('channel', channel::text, 'ip', ip, 'port', port,
                                                              'transport', transport));
END $$;
COMMENT ON FUNCTION vms.sip_invite(vms.gbcode, text, integer, text) IS
    'ask a channel for live video: INVITE (SDP recvonly, PS/90000 over RTP to ip:port, udp or tcp per RFC 4571 with the platform passive); the result holds the call id; end it with vms.sip_bye';

CREATE FUNCTION vms.sip_bye(invite_request bigint) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r vms.sip_request;
BEGIN
    SELECT * INTO r FROM vms.sip_request WHERE id = invite_request AND kind = 'invite';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no INVITE request %', invite_request USING ERRCODE = 'undefined_object';
    END IF;
    RETURN vms._sip_request(r.device_code, 'bye', jsonb_build_object('call_id', r.result ->> 'call_id'));
END $$;
COMMENT ON FUNCTION vms.sip_bye(bigint) IS 'end the media session an INVITE request started';

-- Poll a request until it finishes or the timeout passes; each poll sees
-- the worker's latest commit.
CREATE FUNCTION vms.sip_request_wait(request_id bigint, timeout_s double precision DEFAULT 30)
    RETURNS vms.sip_request
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r vms.sip_request;
    deadline timestamptz := clock_timestamp() + make_interval(secs => least(greatest(timeout_s, 0), 600));
BEGIN
    LOOP
        SELECT * INTO r FROM vms.sip_request WHERE id = request_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no SIP request %', request_id USING ERRCODE = 'undefined_object';
        END IF;
        EXIT WHEN r.state NOT IN ('queued', 'sent', 'receiving') OR clock_timestamp() >= deadline;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN r;
END $$;
COMMENT ON FUNCTION vms.sip_request_wait(bigint, double precision) IS
    'wait (at most timeout_s, capped at 600) for a SIP request to finish and return it; call it after the request committed';

CREATE VIEW vms.sip_device_status AS
SELECT d.code, d.name, d.online, s.transport, s.address, s.port, s.registered_at, s.expires_at,
       s.last_keepalive_at,
       coalesce(s.keepalive_interval, (SELECT g.setting::int FROM pg_catalog.pg_settings g
                                        WHERE g.name = 'vms.sip_keepalive_interval'), 60) AS keepalive_interval,
       coalesce(s.keepalive_count, (SELECT g.setting::int FROM pg_catalog.pg_settings g
                                     WHERE g.name = 'vms.sip_keepalive_count'), 3) AS keepalive_count,
       s.auth_failures, s.banned_until, d.status_changed_at,
       (SELECT e.cause FROM vms.device_event e WHERE e.device_code = d.code ORDER BY e.at DESC, e.id DESC LIMIT 1) AS last_cause
  FROM vms.device d LEFT JOIN vms.device_session s ON s.device_code = d.code;
COMMENT ON VIEW vms.sip_device_status IS
    'devices with their GB/T 28181 session: online, registration, last keepalive, keepalive parameters, bans, last transition cause';

-- Worker side ----------------------------------------------------------------

CREATE FUNCTION vms._sip_wake_on_credential() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM vms._wake_worker('sip');
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._sip_wake_on_credential() IS 'internal: a changed password reaches the SIP worker at commit';
CREATE TRIGGER device_credential_wake_sip AFTER INSERT OR UPDATE OR DELETE ON vms.device_credential
    FOR EACH STATEMENT EXECUTE FUNCTION vms._sip_wake_on_credential();

-- Devices whose credential, ledger row or SIP settings changed, for the
-- worker to reload.  The worker takes (deletes) the rows its snapshot sees
-- and reloads those devices in a later statement, so a change is never
-- skipped whatever order transactions start and commit in; a code whose
-- device row is gone ends its session there.
CREATE TABLE vms.sip_device_change (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_code  text NOT NULL,
    queued_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.sip_device_change IS
    'internal: codes of devices whose credential, ledger row or digest/keepalive settings changed, queued for the SIP worker (it empties the queue)';

-- SECURITY DEFINER: whoever may change a device, its credential or its
-- session settings must be able to queue the code for the worker, without
-- any privilege on the queue; the function writes only the changed row's
-- code into vms.sip_device_change and cannot be called other than as a
-- trigger.
CREATE FUNCTION vms._sip_queue_device_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        IF TG_OP = 'DELETE' THEN
            INSERT INTO vms.sip_device_change (device_code) SELECT o.code::text FROM old_rows o;
        ELSE
            INSERT INTO vms.sip_device_change (device_code) SELECT n.code::text FROM new_rows n;
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO vms.sip_device_change (device_code) VALUES (OLD.device_code::text);
    ELSE
        INSERT INTO vms.sip_device_change (device_code) VALUES (NEW.device_code::text);
    END IF;
    PERFORM vms._wake_worker('sip');
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION vms._sip_queue_device_change() FROM PUBLIC;
COMMENT ON FUNCTION vms._sip_queue_device_change() IS
    'internal (trigger, SECURITY DEFINER to write the queue for any role that may change a device): queue a device for the SIP worker to reload';
CREATE TRIGGER device_credential_sip_change AFTER INSERT OR UPDATE OR DELETE ON vms.device_credential
    FOR EACH ROW EXECUTE FUNCTION vms._sip_queue_device_change();
CREATE TRIGGER device_added_sip_change AFTER INSERT ON vms.device
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._sip_queue_device_change();
CREATE TRIGGER device_deleted_sip_change AFTER DELETE ON vms.device
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._sip_queue_device_change();
CREATE TRIGGER device_session_settings_sip_change AFTER UPDATE OF digest_qop, keepalive_interval, keepalive_count
    ON vms.device_session FOR EACH ROW
    WHEN (OLD.digest_qop IS DISTINCT FROM NEW.digest_qop OR OLD.keepalive_interval IS DISTINCT FROM NEW.keepalive_interval
          OR OLD.keepalive_count IS DISTINCT FROM NEW.keepalive_count)
    EXECUTE FUNCTION vms._sip_queue_device_change();
CREATE TRIGGER device_session_settings_sip_new AFTER INSERT ON vms.device_session FOR EACH ROW
    WHEN (NOT NEW.digest_qop OR NEW.keepalive_interval IS NOT NULL OR NEW.keepalive_count IS NOT NULL)
    EXECUTE FUNCTION vms._sip_queue_device_change();

CREATE FUNCTION vms._sip_take_device_changes() RETURNS SETOF text
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    WITH taken AS (DELETE FROM vms.sip_device_change RETURNING device_code)
    SELECT DISTINCT t.device_code FROM taken t
$$;
REVOKE ALL ON FUNCTION vms._sip_take_device_changes() FROM PUBLIC;
COMMENT ON FUNCTION vms._sip_take_device_changes() IS
    'internal: the SIP worker takes the queued device changes (the rows its snapshot sees; later commits stay queued)';

-- Digest qop per device: on by default; off for devices that cannot do it.
CREATE FUNCTION vms.sip_set_digest_qop(device vms.gbcode, qop boolean) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF qop IS NULL THEN
        RAISE EXCEPTION 'qop must be true or false' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM vms.device d WHERE d.code = device) THEN
        RAISE EXCEPTION 'device % is not in the ledger', device
            USING ERRCODE = 'undefined_object',
                  HINT = 'Add the device to vms.device first.';
    END IF;
    INSERT INTO vms.device_session AS s (device_code, digest_qop) VALUES (device, qop)
    ON CONFLICT (device_code) DO UPDATE SET digest_qop = EXCLUDED.digest_qop;
END $$;
REVOKE ALL ON FUNCTION vms.sip_set_digest_qop(vms.gbcode, boolean) FROM PUBLIC;
COMMENT ON FUNCTION vms.sip_set_digest_qop(vms.gbcode, boolean) IS
    'whether the digest challenge to a device offers and requires qop="auth" (default true); false only for devices that cannot do qop; reaches the SIP worker at commit';

-- Devices and their credentials and sessions, for the worker's memory
-- (times as Unix epoch seconds); all of them, those whose credentials
-- changed since a time, or one.
CREATE FUNCTION vms._sip_devices(since timestamptz DEFAULT '-infinity', one_code text DEFAULT NULL)
    RETURNS TABLE (code text, realm text, ha1_md5 text, ha1_sha256 text, online boolean,
                   registered_at float8, expires_at float8, last_keepalive_at float8,
                   keepalive_interval integer, keepalive_count integer, transport text, address text,
                   port integer, auth_failures integer, banned_until float8, credential_at timestamptz,
                   digest_qop boolean)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT d.code::text, c.realm, c.ha1_md5, c.ha1_sha256, coalesce(s.online, false),
           extract(epoch FROM s.registered_at)::float8, extract(epoch FROM s.expires_at)::float8,
           extract(epoch FROM s.last_keepalive_at)::float8, s.keepalive_interval, s.keepalive_count,
           s.transport, host(s.address), s.port, coalesce(s.auth_failures, 0),
           extract(epoch FROM s.banned_until)::float8, c.updated_at, coalesce(s.digest_qop, true)
      FROM vms.device d
      LEFT JOIN vms.device_credential c ON c.device_code = d.code
      LEFT JOIN vms.device_session s ON s.device_code = d.code
     WHERE (one_code IS NULL OR d.code = one_code::vms.gbcode)
       AND (since = '-infinity' OR c.updated_at > since OR d.created_at > since)
$$;
COMMENT ON FUNCTION vms._sip_devices(timestamptz, text) IS 'internal: what the SIP worker keeps in memory per device';

-- One batch of session changes: sessions (s), transitions (e) and online
-- flips (f), times as Unix epoch seconds.  Flips go to vms.device /
-- vms.channel as state writes (no ledger history); channels follow their
-- device and their own catalog status.
CREATE FUNCTION vms._sip_flush(batch jsonb) RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n integer;
BEGIN
    PERFORM set_config('vms.ledger_writer', 'state', true);
    INSERT INTO vms.device_session AS t (device_code, transport, address, port, user_agent, registered_at,
                                         expires_at, last_keepalive_at, online, auth_failures, banned_until, updated_at)
    SELECT s.d::vms.gbcode, s.tr, s.ad::inet, s.pt, s.ua, to_timestamp(s.ra), to_timestamp(s.ex),
           to_timestamp(s.ka), s.o, s.af, to_timestamp(s.bu), now()
      FROM jsonb_to_recordset(batch -> 's') AS s(d text, tr text, ad text, pt int, ua text, ra float8,
                                                ex float8, ka float8, o boolean, af int, bu float8)
      JOIN vms.device dv ON dv.code = s.d::vms.gbcode
    ON CONFLICT (device_code) DO UPDATE
       SET transport = EXCLUDED.transport, address = EXCLUDED.address, port = EXCLUDED.port,
           user_agent = coalesce(EXCLUDED.user_agent, t.user_agent), registered_at = EXCLUDED.registered_at,
           expires_at = EXCLUDED.expires_at, last_keepalive_at = EXCLUDED.last_keepalive_at,
           online = EXCLUDED.online, auth_failures = EXCLUDED.auth_failures,
           banned_until = EXCLUDED.banned_until, updated_at = now();
    GET DIAGNOSTICS n = ROW_COUNT;

    INSERT INTO vms.device_event (device_code, at, event, cause, address)
    SELECT e.d::vms.gbcode, to_timestamp(e.at), e.ev, e.c, e.ad
      FROM jsonb_to_recordset(batch -> 'e') AS e(d text, at float8, ev text, c text, ad text)
      JOIN vms.device dv ON dv.code = e.d::vms.gbcode
     ORDER BY e.at;

    WITH flips AS (
        SELECT DISTINCT ON (s.d) s.d::vms.gbcode AS code, s.o AS online, to_timestamp(s.at) AS at
          FROM jsonb_to_recordset(batch -> 'f') AS s(d text, o boolean, at float8)
         ORDER BY s.d, s.at DESC),
    dev AS (
        UPDATE vms.device d SET online = f.online, status_changed_at = f.at
          FROM flips f WHERE d.code = f.code AND d.online IS DISTINCT FROM f.online
        RETURNING d.code)
    UPDATE vms.channel c SET online = x.want, status_changed_at = x.at
      FROM (SELECT ch.code, f.at, f.online AND coalesce(cs.status, 'ON') = 'ON' AS want
              FROM flips f JOIN vms.channel ch ON ch.device_code = f.code
              LEFT JOIN vms.channel_status cs ON cs.code = ch.code) x
     WHERE c.code = x.code AND c.online IS DISTINCT FROM x.want;
    PERFORM set_config('vms.ledger_writer', '', true);
    RETURN n;
END $$;
COMMENT ON FUNCTION vms._sip_flush(jsonb) IS 'internal: the SIP worker''s batched session writes and online/offline transitions';

-- GB/T 28181 catalog item → governed channel columns (raw layer).
CREATE FUNCTION vms._sip_item_report(item jsonb) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE SET search_path FROM CURRENT AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'name', nullif(item ->> 'Name', ''),
        'address', nullif(item ->> 'Address', ''),
        'civil_code', CASE WHEN item ->> 'CivilCode' ~ '^([0-9]{2}){1,4}$' THEN item ->> 'CivilCode' END,
        'geom', CASE WHEN item ->> 'Longitude' ~ '^-?[0-9]{1,3}(\.[0-9]+)?$'
                      AND item ->> 'Latitude' ~ '^-?[0-9]{1,2}(\.[0-9]+)?$'
                      AND (item ->> 'Longitude')::float8 BETWEEN -180 AND 180
                      AND (item ->> 'Latitude')::float8 BETWEEN -90 AND 90
                      AND NOT ((item ->> 'Longitude')::float8 = 0 AND (item ->> 'Latitude')::float8 = 0)
                     THEN format('SRID=4326;POINT(%s %s)', item ->> 'Longitude', item ->> 'Latitude') END,
        -- GB/T 28181-2022 fields the ledger has: PointCommonName (点位俗称) as the
        -- alias, ManagementUnit naming a management unit by its code (only:
        -- a unit's name is free text anyone can repeat, and a device must not
        -- move its channels into a unit by naming it), and the camera
        -- structure PTZType (1 dome, 2 hemisphere, 3/4 fixed or remote
        -- bullet, 5 remote hemisphere, 6 panoramic) as the point type
        'alias', nullif(btrim(left(item ->> 'PointCommonName', 200)), ''),
        'unit_id', (SELECT u.id FROM vms.org_unit u
                     WHERE u.code = nullif(btrim(item ->> 'ManagementUnit'), '')),
        'point_type', CASE btrim(item ->> 'PTZType') WHEN '1' THEN 'dome' WHEN '2' THEN 'hemisphere'
                          WHEN '3' THEN 'bullet' WHEN '4' THEN 'bullet' WHEN '5' THEN 'hemisphere'
                          WHEN '6' THEN 'panoramic' END,
        'fov_angle', CASE WHEN item ->> 'HorizontalFieldAngle' ~ '^[0-9]{1,3}(\.[0-9]+)?$'
                           AND (item ->> 'HorizontalFieldAngle')::float8 > 0
                           AND (item ->> 'HorizontalFieldAngle')::float8 <= 360
                          THEN (item ->> 'HorizontalFieldAngle')::float8 END,
        'fov_range_m', CASE WHEN item ->> 'MaxViewDistance' ~ '^[0-9]{1,6}(\.[0-9]+)?$'
                             AND (item ->> 'MaxViewDistance')::float8 > 0
                            THEN (item ->> 'MaxViewDistance')::float8 END))
$$;
COMMENT ON FUNCTION vms._sip_item_report(jsonb) IS
    'internal: a catalog item as a channel report (name, address, civil code, location, PTZType as point type; 2022''s PointCommonName as alias, ManagementUnit as unit, HorizontalFieldAngle and MaxViewDistance as view angle and range)';

-- Apply catalog items (a query's pages, or a NOTIFY's events) from one
-- device.  Each item is applied on its own, so a bad one is reported and the
-- others land.  Returns counts and the rejected items with their reasons.
CREATE FUNCTION vms._sip_catalog_apply(device vms.gbcode, items jsonb) RETURNS jsonb
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    item jsonb;
    item_code vms.gbcode;
    typ integer;
    ev text;
    st text;
    dev_online boolean;
    channels integer := 0;
    nodes integer := 0;
    skipped integer := 0;
    foreign_items integer := 0;
    owner vms.gbcode;
    rejected jsonb := '[]';
BEGIN
    SELECT d.online INTO dev_online FROM vms.device d WHERE d.code = device;
    -- catalogue nodes first (sorted so parents tend to precede children)
    FOR item IN SELECT i FROM jsonb_array_elements(items) i
                 WHERE i ->> 'DeviceID' ~ '^[0-9]{10}21[56][0-9]{7}$'
                 ORDER BY substr(i ->> 'DeviceID', 11, 3), coalesce(i ->> 'ParentID', '')
    LOOP
        BEGIN
            item_code := (item ->> 'DeviceID')::vms.gbcode;
            ev := upper(coalesce(item ->> 'Event', 'ADD'));
            IF ev = 'DEL' THEN
                DELETE FROM vms.catalog_node n WHERE n.code = item_code AND n.source_device = device;
            ELSE
                INSERT INTO vms.catalog_node AS n (code, name, business_group, civil_code, source_device)
                VALUES (item_code, coalesce(nullif(item ->> 'Name', ''), item_code::text),
                        CASE WHEN item ->> 'BusinessGroupID' ~ '^[0-9]{10}215[0-9]{7}$' THEN (item ->> 'BusinessGroupID')::vms.gbcode END,
                        CASE WHEN item ->> 'CivilCode' ~ '^([0-9]{2}){1,4}$' THEN item ->> 'CivilCode' END, device)
                ON CONFLICT ON CONSTRAINT catalog_node_pkey DO UPDATE
                    SET name = EXCLUDED.name, business_group = EXCLUDED.business_group,
                        civil_code = coalesce(EXCLUDED.civil_code, n.civil_code)
                    WHERE n.source_device = device;     -- a node another device (or a person) made is not ours to change
                IF NOT FOUND THEN
                    foreign_items := foreign_items + 1;
                    rejected := rejected || jsonb_build_object('code', item ->> 'DeviceID',
                                                               'reason', 'catalogue node of another device');
                    CONTINUE;
                END IF;
            END IF;
            nodes := nodes + 1;
        EXCEPTION WHEN OTHERS THEN
            rejected := rejected || jsonb_build_object('code', item ->> 'DeviceID', 'reason', SQLERRM);
        END;
    END LOOP;
    -- virtual organisations hang under their parent once all nodes exist
    UPDATE vms.catalog_node n SET parent_code = p.code
      FROM jsonb_array_elements(items) i JOIN vms.catalog_node p ON p.code::text = i ->> 'ParentID'
     WHERE n.code::text = i ->> 'DeviceID' AND vms.gbcode_type(n.code) = 216
       AND n.source_device = device AND p.source_device = device
       AND vms.gbcode_type(p.code) = 216 AND p.code <> n.code
       AND n.parent_code IS DISTINCT FROM p.code;

    FOR item IN SELECT i FROM jsonb_array_elements(items) i
                 WHERE NOT (coalesce(i ->> 'DeviceID', '') ~ '^[0-9]{10}21[56][0-9]{7}$')
    LOOP
        BEGIN
            IF NOT (coalesce(item ->> 'DeviceID', '') ~ '^[0-9]{20}$') THEN
                RAISE EXCEPTION 'DeviceID is not a 20-digit code' USING ERRCODE = 'invalid_text_representation';
            END IF;
            item_code := (item ->> 'DeviceID')::vms.gbcode;
            typ := vms.gbcode_type(item_code);
            IF typ NOT BETWEEN 131 AND 199 THEN
                skipped := skipped + 1;     -- sub-devices and platforms are not channels
                CONTINUE;
            END IF;
            -- a channel belongs to the device that first reported it (a lower
            -- platform owns every channel it reports); another device's
            -- report about it changes nothing
            SELECT c.device_code INTO owner FROM vms.channel c WHERE c.code = item_code;
            IF FOUND AND owner IS DISTINCT FROM device THEN
                foreign_items := foreign_items + 1;
                rejected := rejected || jsonb_build_object('code', item ->> 'DeviceID',
                                                           'reason', 'channel of another device');
                CONTINUE;
            END IF;
            ev := upper(coalesce(item ->> 'Event', 'ADD'));
            st := CASE WHEN ev IN ('ON', 'OFF', 'VLOST', 'DEFECT', 'DEL') THEN ev
                       WHEN upper(item ->> 'Status') IN ('ON', 'ONLINE', 'OK') THEN 'ON'
                       WHEN upper(item ->> 'Status') IN ('OFF', 'OFFLINE') THEN 'OFF' END;
            IF ev IN ('ADD', 'UPDATE') THEN
                PERFORM vms.channel_apply_report(item_code, device, vms._sip_item_report(item));
                -- raw layer: the whole item, 2022 fields included (26_device_control.sql)
                INSERT INTO vms.channel_catalog_item AS r (code, device_code, item) VALUES (item_code, device, item)
                ON CONFLICT (code) DO UPDATE SET device_code = EXCLUDED.device_code, item = EXCLUDED.item, reported_at = now();
                -- catalogue membership: ParentID or BusinessGroupID naming a 215/216 node
                INSERT INTO vms.catalog_member (node_code, channel_code)
                SELECT n.code, item_code FROM vms.catalog_node n
                 WHERE n.code::text IN (item ->> 'ParentID', item ->> 'BusinessGroupID')
                   AND n.source_device = device
                ON CONFLICT DO NOTHING;
            ELSIF owner IS NULL THEN
                RAISE EXCEPTION 'event % for a channel this device does not have', ev
                    USING ERRCODE = 'undefined_object';
            END IF;
            IF st IS NOT NULL THEN
                INSERT INTO vms.channel_status AS s (code, status, reported_at) VALUES (item_code, st, now())
                ON CONFLICT ON CONSTRAINT channel_status_pkey DO UPDATE SET status = EXCLUDED.status, reported_at = now();
                PERFORM set_config('vms.ledger_writer', 'state', true);
                UPDATE vms.channel c SET online = coalesce(dev_online, false) AND st = 'ON', status_changed_at = now()
                 WHERE c.code = item_code AND c.online IS DISTINCT FROM (coalesce(dev_online, false) AND st = 'ON');
                PERFORM set_config('vms.ledger_writer', '', true);
                IF st IN ('VLOST', 'DEFECT') THEN
                    PERFORM vms.alarm_raise(item_code, CASE st WHEN 'VLOST' THEN 'video_loss' ELSE 'device_defect' END,
                                            3::smallint, 'sip', jsonb_build_object('event', ev));
                END IF;
            END IF;
            channels := channels + 1;
        EXCEPTION WHEN OTHERS THEN
            rejected := rejected || jsonb_build_object('code', item ->> 'DeviceID', 'reason', SQLERRM);
        END;
    END LOOP;
    IF foreign_items > 0 THEN
        RAISE LOG 'vms sip: % catalog item(s) from device % name channels or catalogue nodes of another device: not applied',
            foreign_items, device;
    END IF;
    RETURN jsonb_build_object('channels', channels, 'nodes', nodes, 'skipped', skipped, 'foreign', foreign_items,
                              'rejected', rejected);
END $$;
COMMENT ON FUNCTION vms._sip_catalog_apply(vms.gbcode, jsonb) IS
    'internal: upsert catalog items (channels into the raw layer, 215/216 into catalogue trees, events ON/OFF/DEL/VLOST/DEFECT into channel status); items naming another device''s channel or catalogue node are not applied (counted as foreign)';

-- An Alarm notification (MANSCDP Notify CmdType Alarm) into the alarm centre.
CREATE FUNCTION vms._sip_alarm(device vms.gbcode, body jsonb) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    subject vms.gbcode := device;
    method text := coalesce(body ->> 'AlarmMethod', '');
    atype text := coalesce(body #>> '{Info,AlarmType}', body ->> 'AlarmType', '');
    prio int := CASE WHEN body ->> 'AlarmPriority' ~ '^[1-4]$' THEN (body ->> 'AlarmPriority')::int ELSE 4 END;
    fault text;
BEGIN
    IF body ->> 'DeviceID' ~ '^[0-9]{20}$' AND EXISTS (
           SELECT 1 FROM vms.channel c WHERE c.code = (body ->> 'DeviceID')::vms.gbcode AND c.device_code = device) THEN
        subject := (body ->> 'DeviceID')::vms.gbcode;
    END IF;
    fault := CASE
        WHEN method = '2' AND atype = '1' THEN 'video_loss'
        WHEN method = '2' AND atype = '2' THEN 'tamper'
        WHEN method = '2' AND atype = '3' THEN 'disk_full'
        WHEN method = '2' AND atype = '4' THEN 'high_temperature'
        WHEN method = '2' AND atype = '5' THEN 'low_temperature'
        WHEN method = '5' AND atype = '1' THEN 'manual_video_alarm'
        WHEN method = '5' AND atype = '2' THEN 'motion_detection'
        WHEN method = '5' AND atype = '3' THEN 'left_object'
        WHEN method = '5' AND atype = '4' THEN 'object_removed'
        WHEN method = '5' AND atype = '5' THEN 'tripwire'
        WHEN method = '5' AND atype = '6' THEN 'intrusion'
        WHEN method = '6' THEN 'device_fault'
        ELSE 'sip_alarm_' || CASE WHEN method ~ '^[0-9]{1,2}$' THEN method ELSE 'x' END
                          || CASE WHEN atype ~ '^[0-9]{1,2}$' THEN '_' || atype ELSE '' END
    END;
    RETURN vms.alarm_raise(subject, fault, prio::smallint, 'sip',
                           jsonb_build_object('priority', prio, 'method', method, 'type', atype,
                                              'time', body ->> 'AlarmTime',
                                              'description', left(body ->> 'AlarmDescription', 500),
                                              'reporter', device::text));
END $$;
COMMENT ON FUNCTION vms._sip_alarm(vms.gbcode, jsonb) IS
    'internal: an Alarm notification from a device into vms.alarm (priority 1-4 as the level; method/type as the fault type)';

CREATE FUNCTION vms._sip_position(device vms.gbcode, body jsonb) RETURNS void
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    INSERT INTO vms.mobile_position (device_code, at, geom, speed, direction, altitude)
    SELECT device, now(), ST_SetSRID(ST_MakePoint((body ->> 'Longitude')::float8, (body ->> 'Latitude')::float8), 4326),
           CASE WHEN body ->> 'Speed' ~ '^[0-9.]+$' THEN (body ->> 'Speed')::real END,
           CASE WHEN body ->> 'Direction' ~ '^[0-9.]+$' THEN (body ->> 'Direction')::real END,
           CASE WHEN body ->> 'Altitude' ~ '^-?[0-9.]+$' THEN (body ->> 'Altitude')::real END
     WHERE body ->> 'Longitude' ~ '^-?[0-9]{1,3}(\.[0-9]+)?$' AND body ->> 'Latitude' ~ '^-?[0-9]{1,2}(\.[0-9]+)?$'
       AND abs((body ->> 'Longitude')::float8) <= 180 AND abs((body ->> 'Latitude')::float8) <= 90
$$;
COMMENT ON FUNCTION vms._sip_position(vms.gbcode, jsonb) IS 'internal: a MobilePosition notification into vms.mobile_position';

-- Unknown devices accepted under vms.sip_unknown_devices = accept: a
-- minimal ledger row, named by its code, that governance will flag.
CREATE FUNCTION vms._sip_add_device(device vms.gbcode, info jsonb) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM set_config('vms.ledger_writer', 'system', true);
    INSERT INTO vms.device (code, name, ip_address, civil_code)
    VALUES (device, device::text, (info ->> 'address')::inet, left(device::text, 6))
    ON CONFLICT DO NOTHING;
    PERFORM set_config('vms.ledger_writer', '', true);
    INSERT INTO vms.device_event (device_code, at, event, cause, address)
    VALUES (device, now(), 'added', 'unknown device accepted (vms.sip_unknown_devices = accept)', info ->> 'address');
END $$;
COMMENT ON FUNCTION vms._sip_add_device(vms.gbcode, jsonb) IS 'internal: put a device that registered unannounced into the ledger for governance';

-- Answers to queries: applied, and the request finished with the outcome.
CREATE FUNCTION vms._sip_catalog_result(device vms.gbcode, answer jsonb) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    outcome jsonb := vms._sip_catalog_apply(device, coalesce(answer -> 'items', '[]'));
BEGIN
    PERFORM vms._sip_request_update((answer ->> 'request')::bigint, answer ->> 'state', answer -> 'progress',
                                    outcome, answer ->> 'error');
END $$;
COMMENT ON FUNCTION vms._sip_catalog_result(vms.gbcode, jsonb) IS 'internal: a finished catalog query: items applied, request closed with counts and rejects';

CREATE FUNCTION vms._sip_info_result(device vms.gbcode, answer jsonb) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    doc jsonb := answer -> 'answer';
BEGIN
    IF answer ->> 'kind' = 'device_info' THEN
        PERFORM vms.device_apply_report(device, jsonb_strip_nulls(jsonb_build_object(
            'manufacturer', nullif(left(doc ->> 'Manufacturer', 100), ''),
            'model', nullif(left(doc ->> 'Model', 100), ''),
            'firmware', nullif(left(doc ->> 'Firmware', 100), ''),
            'name', (SELECT d.name FROM vms.device d WHERE d.code = device))));
        UPDATE vms.device_session SET last_info = doc WHERE device_code = device;
    ELSE
        UPDATE vms.device_session SET last_status = doc WHERE device_code = device;
    END IF;
    PERFORM vms._sip_request_update((answer ->> 'request')::bigint, 'done', NULL, doc, NULL);
END $$;
COMMENT ON FUNCTION vms._sip_info_result(vms.gbcode, jsonb) IS 'internal: a DeviceInfo or DeviceStatus answer into the raw layer / session, and the request closed';

-- Requests for the worker: claim queued ones, report results.
CREATE FUNCTION vms._sip_claim_requests(lim integer DEFAULT 100)
    RETURNS TABLE (id bigint, device_code text, kind text, params jsonb)
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    UPDATE vms.sip_request r SET state = 'sent', started_at = now()
     WHERE r.id IN (SELECT q.id FROM vms.sip_request q WHERE q.state = 'queued' ORDER BY q.id LIMIT lim
                    FOR UPDATE SKIP LOCKED)
    RETURNING r.id, r.device_code::text, r.kind, r.params
$$;
COMMENT ON FUNCTION vms._sip_claim_requests(integer) IS 'internal: the SIP worker takes queued requests';

CREATE FUNCTION vms._sip_request_update(rid bigint, new_state text, progress jsonb, result jsonb, err text)
    RETURNS void
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    UPDATE vms.sip_request
       SET state = new_state, progress = coalesce($3, progress), result = coalesce($4, result), error = $5,
           finished_at = CASE WHEN new_state IN ('done', 'partial', 'failed', 'timeout') THEN now() END
     WHERE id = rid
$$;
COMMENT ON FUNCTION vms._sip_request_update(bigint, text, jsonb, jsonb, text) IS 'internal: the SIP worker records a request''s progress or outcome';

-- Requests left 'sent' by a worker that stopped cannot finish: fail them.
CREATE FUNCTION vms._sip_recover_requests() RETURNS integer
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    WITH r AS (
        UPDATE vms.sip_request SET state = 'failed', finished_at = now(),
               error = 'the SIP worker restarted while the request was in flight'
         WHERE state IN ('sent', 'receiving') RETURNING 1)
    SELECT count(*)::int FROM r
$$;
COMMENT ON FUNCTION vms._sip_recover_requests() IS 'internal: at worker start, fail requests a previous worker left in flight';

CREATE FUNCTION vms._sip_subscription_record(device vms.gbcode, info jsonb) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    st text := info ->> 'state';
    exp integer := coalesce((info ->> 'expires')::int, 3600);
BEGIN
    IF st = 'ended' THEN
        DELETE FROM vms.sip_subscription s WHERE s.device_code = device AND s.event = info ->> 'event';
    ELSE
        INSERT INTO vms.sip_subscription AS s (device_code, event, expires, state, call_id, cseq,
                                               subscribed_at, expires_at, last_error)
        VALUES (device, info ->> 'event', least(greatest(exp, 60), 86400), st, info ->> 'call_id',
                coalesce((info ->> 'cseq')::int, 0), CASE WHEN st = 'active' THEN now() END,
                CASE WHEN st = 'active' THEN now() + make_interval(secs => exp) END, info ->> 'error')
        ON CONFLICT (device_code, event) DO UPDATE
           SET expires = EXCLUDED.expires, state = EXCLUDED.state, call_id = EXCLUDED.call_id,
               cseq = EXCLUDED.cseq, subscribed_at = coalesce(EXCLUDED.subscribed_at, s.subscribed_at),
               expires_at = CASE WHEN EXCLUDED.state = 'active' THEN EXCLUDED.expires_at ELSE s.expires_at END,
               last_error = EXCLUDED.last_error;
    END IF;
    IF info ? 'request' THEN
        PERFORM vms._sip_request_update((info ->> 'request')::bigint,
                                        CASE WHEN st IN ('active', 'ended') THEN 'done' ELSE 'failed' END,
                                        NULL, info - 'request', info ->> 'error');
    END IF;
END $$;
COMMENT ON FUNCTION vms._sip_subscription_record(vms.gbcode, jsonb) IS
    'internal: the SIP worker records a subscription''s state (and closes the request that asked for it)';

CREATE FUNCTION vms._sip_subscriptions()
    RETURNS TABLE (device_code text, event text, expires integer, state text, expires_at float8)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT s.device_code::text, s.event, s.expires, s.state, extract(epoch FROM s.expires_at)::float8
      FROM vms.sip_subscription s
$$;
COMMENT ON FUNCTION vms._sip_subscriptions() IS 'internal: subscriptions the SIP worker keeps renewing';
