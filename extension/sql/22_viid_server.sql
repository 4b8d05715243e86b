-- GA/T 1400 server side (issue 18): capture devices and lower platforms
-- register with vms (HTTP Digest), keep alive, and post list objects of
-- records with inline images.  The "vms viid-server" worker serves HTTP
-- (libmicrohttpd) and hands each complete request to
-- vms._viid_server_request; records are stored in vms.viid_record and
-- images in vms.viid_image, both partitioned by month of capture.

-- Clients: digest HA1 only (as vms.device_credential), never the password.
CREATE TABLE vms.viid_client (
    client_id   vms.gbcode PRIMARY KEY,
    realm       text NOT NULL,
    ha1_md5     text NOT NULL,
    ha1_sha256  text NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    options     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(options) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON vms.viid_client FROM PUBLIC;
COMMENT ON TABLE vms.viid_client IS
    'GA/T 1400 clients (capture devices, lower view libraries) that may post to the viid-server worker; digest HA1 values only, no passwords';
COMMENT ON COLUMN vms.viid_client.options IS
    'timezone (Asia/Shanghai) of the client''s local times, template or templates {kind: name} (inbound mapping through vms.viid_map), known_devices_only (false), max_future_s (300), keepalive_timeout_s (180), share_scope (what GET /VIID/APEs, Tollgates, Lanes show: an inspection scope; none: nothing)';

CREATE TABLE vms.viid_client_session (
    client_id          vms.gbcode PRIMARY KEY REFERENCES vms.viid_client (client_id) ON DELETE CASCADE,
    state              text NOT NULL DEFAULT 'unregistered' CHECK (state IN ('registered', 'unregistered')),
    registered_at      timestamptz,
    last_keepalive_at  timestamptz,
    remote_addr        text,
    requests           bigint NOT NULL DEFAULT 0,
    records            bigint NOT NULL DEFAULT 0,
    rejected           bigint NOT NULL DEFAULT 0,
    last_event_at      timestamptz
);
COMMENT ON TABLE vms.viid_client_session IS 'per client: session state as the viid-server worker last saw it, and what it posted';

CREATE TABLE vms.viid_record (
    kind         text NOT NULL,
    object_id    text NOT NULL,
    device_id    text NOT NULL,
    captured_at  timestamptz NOT NULL,
    client_id    text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    images       integer NOT NULL DEFAULT 0,
    doc          jsonb NOT NULL,
    PRIMARY KEY (kind, object_id, captured_at)
) PARTITION BY RANGE (captured_at);
COMMENT ON TABLE vms.viid_record IS
    'GA/T 1400 records received by the viid-server worker, partitioned by month of capture (UTC); doc is the mapped document without image data';

CREATE TABLE vms.viid_image (
    kind         text NOT NULL,
    object_id    text NOT NULL,
    image_id     text NOT NULL,
    captured_at  timestamptz NOT NULL,
    type         text,
    format       text NOT NULL,
    bytes        integer NOT NULL,
    data         bytea NOT NULL,
    PRIMARY KEY (object_id, image_id, captured_at)
) PARTITION BY RANGE (captured_at);
COMMENT ON TABLE vms.viid_image IS
    'images of the received GA/T 1400 records (SubImageList, ImageListObject), partitioned like vms.viid_record';
-- JPEG and the like do not compress: stored out of line without trying
ALTER TABLE vms.viid_image ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE vms.viid_record_retention (
    kind        text PRIMARY KEY REFERENCES vms.viid_kind (kind),
    keep_days   integer NOT NULL CHECK (keep_days > 0),
    image_days  integer NOT NULL CHECK (image_days > 0)
);
INSERT INTO vms.viid_record_retention VALUES
    ('MotorVehicle', 90, 30), ('NonMotorVehicle', 90, 30), ('Person', 90, 30), ('Face', 90, 30), ('Image', 30, 30);
COMMENT ON TABLE vms.viid_record_retention IS 'how long received records and their images are kept, per kind (vms.viid_record_prune)';

-- Forwarding: received records go on to upstream view libraries (the push's
-- outbox, retries and dead letters), so that vms sits in a district-city
-- chain.  A record is queued once, when it is first stored: a client that
-- sends it again does not make it travel twice.
CREATE TABLE vms.viid_forward (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
    upstream    text NOT NULL REFERENCES vms.viid_upstream (name) ON DELETE CASCADE ON UPDATE CASCADE,
    kinds       text[] CHECK (kinds <@ ARRAY['MotorVehicle', 'NonMotorVehicle', 'Person', 'Face', 'Image']),
    clients     text[],
    device_prefixes text[],
    with_images boolean NOT NULL DEFAULT true,
    enabled     boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE vms.viid_forward IS
    'rules forwarding received GA/T 1400 records to an upstream: kinds, source clients and device code prefixes (NULL: any), with or without image data; never back to the library the record came from';

-- Subscriptions (cascade: an upper library subscribes, vms notifies).  The
-- notifications travel through the push's outbox to the upstream whose
-- base_url the subscription's ReceiveAddr starts with, so they share its
-- session, retries and dead letters.
INSERT INTO vms.viid_kind VALUES
    ('SubscribeNotification', '/VIID/SubscribeNotifications', 'SubscribeNotificationListObject',
     'SubscribeNotificationObject', '{NotificationID}');
CREATE TABLE vms.viid_subscription (
    subscribe_id     text PRIMARY KEY CHECK (subscribe_id ~ '^[0-9A-Za-z_.-]{1,64}$'),
    client_id        vms.gbcode NOT NULL REFERENCES vms.viid_client (client_id) ON DELETE CASCADE,
    upstream         text NOT NULL REFERENCES vms.viid_upstream (name) ON DELETE CASCADE ON UPDATE CASCADE,
    title            text,
    details          text[] NOT NULL,
    kinds            text[] NOT NULL,
    resource_prefixes text[],
    begin_time       timestamptz NOT NULL,
    end_time         timestamptz NOT NULL,
    receive_addr     text NOT NULL,
    report_interval  integer NOT NULL DEFAULT 0 CHECK (report_interval >= 0),
    state            text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'cancelled')),
    notifications    bigint NOT NULL DEFAULT 0,
    doc              jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    cancelled_at     timestamptz
);
COMMENT ON TABLE vms.viid_subscription IS
    'GA/T 1400 subscriptions of clients (POST/PUT/DELETE /VIID/Subscribes): SubscribeDetail codes and the record kinds they cover, ResourceURI as device code prefixes, BeginTime/EndTime, ReceiveAddr and the upstream delivering there, ReportInterval (s), notifications queued';

CREATE VIEW vms.viid_client_status AS
SELECT c.client_id, c.enabled, coalesce(s.state, 'unregistered') AS state,
       coalesce(s.state = 'registered'
                AND s.last_keepalive_at > now() - make_interval(secs => coalesce((c.options ->> 'keepalive_timeout_s')::int, 180)),
                false) AS online,
       s.registered_at, s.last_keepalive_at, s.remote_addr, coalesce(s.requests, 0) AS requests,
       coalesce(s.records, 0) AS records, coalesce(s.rejected, 0) AS rejected, s.last_event_at
  FROM vms.viid_client c LEFT JOIN vms.viid_client_session s USING (client_id);
COMMENT ON VIEW vms.viid_client_status IS
    'per GA/T 1400 client: registered or not, online (registered and a keepalive within keepalive_timeout_s), records stored and rejected';

CREATE FUNCTION vms.viid_client_add(client_id vms.gbcode, password text, options jsonb DEFAULT '{}')
    RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r text := coalesce(options ->> 'realm', nullif(current_setting('vms.viid_server_realm', true), ''), 'vms');
    who text := client_id::text;
BEGIN
    IF password IS NULL OR length(password) = 0 OR length(password) > 128 THEN
        RAISE EXCEPTION 'client password must have 1 to 128 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(options) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'options must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF options ? 'timezone' AND NOT EXISTS (SELECT FROM pg_catalog.pg_timezone_names WHERE name = options ->> 'timezone') THEN
        RAISE EXCEPTION 'time zone "%" is unknown', options ->> 'timezone' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO vms.viid_client AS c (client_id, realm, ha1_md5, ha1_sha256, options)
    VALUES (client_id, r, md5(who || ':' || r || ':' || password),
            encode(sha256(convert_to(who || ':' || r || ':' || password, 'UTF8')), 'hex'), options - 'realm')
    ON CONFLICT ON CONSTRAINT viid_client_pkey DO UPDATE
        SET realm = EXCLUDED.realm, ha1_md5 = EXCLUDED.ha1_md5, ha1_sha256 = EXCLUDED.ha1_sha256,
            options = EXCLUDED.options, enabled = true, updated_at = now();
END $$;
COMMENT ON FUNCTION vms.viid_client_add(vms.gbcode, text, jsonb) IS
    'add or replace a GA/T 1400 client: its digest HA1 (realm: options.realm, else vms.viid_server_realm) and options; the password is not stored';

CREATE FUNCTION vms.viid_client_drop(client_id vms.gbcode) RETURNS boolean
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    WITH d AS (DELETE FROM vms.viid_client c WHERE c.client_id = viid_client_drop.client_id RETURNING 1)
    SELECT count(*) > 0 FROM d
$$;
COMMENT ON FUNCTION vms.viid_client_drop(vms.gbcode) IS 'remove a GA/T 1400 client; its stored records stay';

-- The worker's cache of clients (digest checks run without SQL).
CREATE FUNCTION vms._viid_server_clients(realm text)
    RETURNS TABLE (client_id text, ha1_md5 text, options jsonb)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT c.client_id::text, c.ha1_md5, c.options FROM vms.viid_client c
     WHERE c.enabled AND c.realm = _viid_server_clients.realm ORDER BY 1
$$;
COMMENT ON FUNCTION vms._viid_server_clients(text) IS 'internal: enabled clients of a realm, for the viid-server worker''s digest checks';

-- Monthly partitions (UTC), made when the first record of a month arrives.
CREATE FUNCTION vms._viid_record_partition(at timestamptz) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    lo timestamptz := date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    hi timestamptz := (date_trunc('month', at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
    suffix text := to_char(at AT TIME ZONE 'UTC', 'YYYY"m"MM');
BEGIN
    IF to_regclass('vms.viid_record_' || suffix) IS NULL THEN
        EXECUTE format('CREATE TABLE vms.%I PARTITION OF vms.viid_record FOR VALUES FROM (%L) TO (%L)',
                       'viid_record_' || suffix, lo, hi);
        EXECUTE format('COMMENT ON TABLE vms.%I IS %L', 'viid_record_' || suffix,
                       'received GA/T 1400 records captured in ' || suffix || ' (UTC)');
    END IF;
    IF to_regclass('vms.viid_image_' || suffix) IS NULL THEN
        EXECUTE format('CREATE TABLE vms.%I PARTITION OF vms.viid_image FOR VALUES FROM (%L) TO (%L)',
                       'viid_image_' || suffix, lo, hi);
        EXECUTE format('COMMENT ON TABLE vms.%I IS %L', 'viid_image_' || suffix,
                       'images of received GA/T 1400 records captured in ' || suffix || ' (UTC)');
    END IF;
END $$;
COMMENT ON FUNCTION vms._viid_record_partition(timestamptz) IS 'internal: the monthly partitions of vms.viid_record and vms.viid_image holding a time';

-- What a byte string is, by its magic number: jpeg, png, gif, bmp, webp, else NULL.
CREATE FUNCTION vms._viid_image_format(data bytea) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE
        WHEN substr(data, 1, 3) = '\xffd8ff'::bytea THEN 'jpeg'
        WHEN substr(data, 1, 8) = '\x89504e470d0a1a0a'::bytea THEN 'png'
        WHEN substr(data, 1, 4) = '\x47494638'::bytea THEN 'gif'
        WHEN substr(data, 1, 2) = '\x424d'::bytea AND length(data) > 26 THEN 'bmp'
        WHEN substr(data, 1, 4) = '\x52494646'::bytea AND substr(data, 9, 4) = '\x57454250'::bytea THEN 'webp'
    END
$$;
COMMENT ON FUNCTION vms._viid_image_format(bytea) IS 'internal: image format by magic number (jpeg, png, gif, bmp, webp), NULL when not an image';

CREATE FUNCTION vms._viid_status(url text, code integer, string text, id text DEFAULT '') RETURNS jsonb
    LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('RequestURL', url, 'StatusCode', code::text, 'StatusString', string,
                              'Id', coalesce(id, ''), 'LocalTime', to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDDHH24MISS'))
$$;
COMMENT ON FUNCTION vms._viid_status(text, integer, text, text) IS 'internal: a GA/T 1400 ResponseStatusObject (LocalTime in China Standard Time)';

-- The SubscribeNotificationObject for one object, as every subscription
-- path queues it (records received, ledger changes): its id, the
-- subscription's id and title, the time (China Standard Time), the object's
-- id and the object in its list (item_object 'MotorVehicleObject' in
-- 'MotorVehicleObjectList', 'APEObject' in 'APEObjectList'...).
CREATE FUNCTION vms._viid_notification(nid text, subscribe_id text, title text, info_ids text, item_object text, item jsonb)
    RETURNS jsonb
    LANGUAGE sql STABLE
    RETURN jsonb_build_object('NotificationID', nid, 'SubscribeID', subscribe_id, 'Title', title,
                              'TriggerTime', to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDDHH24MISS'),
                              'InfoIDs', info_ids, item_object || 'List', jsonb_build_object(item_object, jsonb_build_array(item)));
COMMENT ON FUNCTION vms._viid_notification(text, text, text, text, text, jsonb) IS
    'internal: a GA/T 1400 SubscribeNotificationObject carrying one object (TriggerTime in China Standard Time)';

-- One record: validate, map, store with its images.  Raises with the reason
-- when the record is refused; returns false when it was stored before.
CREATE FUNCTION vms._viid_ingest_one(client text, k vms.viid_kind, item jsonb, copts jsonb) RETURNS boolean
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    doc jsonb := item;
    tmpl text := coalesce(copts -> 'templates' ->> k.kind, copts ->> 'template');
    tz text := coalesce(copts ->> 'timezone', 'Asia/Shanghai');
    oid text;
    dev text;
    ts text;
    at timestamptz;
    problems text[];
    imgs jsonb;
    img jsonb;
    n integer := 0;
    raw bytea;
    fmt text;
    iid text;
    stored_images jsonb := '[]';
    full_doc jsonb;
    f vms.viid_forward;
    sub vms.viid_subscription;
    sent_to text[] := '{}';
    nid text;
    id_len integer := CASE WHEN k.kind = 'Image' THEN 41 ELSE 48 END;
BEGIN
    IF jsonb_typeof(item) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'item is not a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tmpl IS NOT NULL THEN
        IF k.kind = 'Image' THEN
            doc := jsonb_set(doc, '{ImageInfo}', vms.viid_map(tmpl, coalesce(doc -> 'ImageInfo', '{}')));
        ELSE
            doc := vms.viid_map(tmpl, doc);
        END IF;
    END IF;
    oid := doc #>> k.id_path;
    problems := vms.viid_id_problems(oid);
    IF cardinality(problems) > 0 THEN
        RAISE EXCEPTION '% "%" is not valid: %', array_to_string(k.id_path, '.'), left(coalesce(oid, ''), 64),
            array_to_string(problems, '; ') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(oid) <> id_len THEN
        RAISE EXCEPTION '% "%" must have % digits', array_to_string(k.id_path, '.'), oid, id_len
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    dev := coalesce(CASE WHEN k.kind = 'Image' THEN doc -> 'ImageInfo' ->> 'DeviceID' ELSE doc ->> 'DeviceID' END, left(oid, 20));
    IF vms.gbcode_parse_error(dev) IS NOT NULL THEN
        RAISE EXCEPTION 'DeviceID "%" is not a device code: %', left(dev, 64), vms.gbcode_parse_error(dev)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce((copts ->> 'known_devices_only')::boolean, false)
       AND NOT EXISTS (SELECT FROM vms.channel c WHERE c.code = dev::vms.gbcode)
       AND NOT EXISTS (SELECT FROM vms.device d WHERE d.code = dev::vms.gbcode) THEN
        RAISE EXCEPTION 'DeviceID "%" is not in the ledger', dev USING ERRCODE = 'invalid_parameter_value';
    END IF;
    ts := coalesce(CASE WHEN k.kind = 'Image' THEN doc -> 'ImageInfo' ->> 'ShotTime' END,
                   doc ->> 'PassTime', doc ->> 'ShotTime', doc ->> 'AppearTime', doc ->> 'FaceAppearTime',
                   doc ->> 'PersonAppearTime', doc ->> 'LocationMarkTime', substr(oid, 23, 14));
    IF ts !~ '^[0-9]{14}$' THEN
        RAISE EXCEPTION 'capture time "%" is not yyyyMMddHHmmss', left(ts, 64) USING ERRCODE = 'invalid_datetime_format';
    END IF;
    BEGIN
        at := make_timestamptz(substr(ts, 1, 4)::int, substr(ts, 5, 2)::int, substr(ts, 7, 2)::int,
                               substr(ts, 9, 2)::int, substr(ts, 11, 2)::int, substr(ts, 13, 2)::int, tz);
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'capture time "%" is not a valid time', ts USING ERRCODE = 'invalid_datetime_format';
    END;
    IF at > now() + make_interval(secs => coalesce((copts ->> 'max_future_s')::int, 300)) THEN
        RAISE EXCEPTION 'capture time "%" is in the future', ts USING ERRCODE = 'invalid_datetime_format';
    END IF;

    full_doc := doc;
    PERFORM vms._viid_record_partition(at);
    IF k.kind = 'Image' THEN
        imgs := jsonb_build_array(jsonb_build_object('ImageID', oid, 'Type', doc -> 'ImageInfo' ->> 'Type',
                                                     'FileFormat', doc -> 'ImageInfo' ->> 'FileFormat', 'Data', doc -> 'Data'));
        doc := doc - 'Data';
    ELSE
        imgs := doc -> 'SubImageList' -> 'SubImageInfoObject';
        IF imgs IS NOT NULL AND jsonb_typeof(imgs) <> 'array' THEN
            imgs := jsonb_build_array(imgs);
        END IF;
    END IF;
    FOR img IN SELECT * FROM jsonb_array_elements(coalesce(imgs, '[]')) LOOP
        n := n + 1;
        iid := img ->> 'ImageID';
        IF k.kind <> 'Image' AND cardinality(vms.viid_id_problems(iid)) > 0 THEN
            RAISE EXCEPTION 'image % ImageID "%" is not valid: %', n, left(coalesce(iid, ''), 64),
                array_to_string(vms.viid_id_problems(iid), '; ') USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(img -> 'Data') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION 'image % has no Data', coalesce(iid, n::text) USING ERRCODE = 'invalid_parameter_value';
        END IF;
        BEGIN
            raw := decode(img ->> 'Data', 'base64');
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'image % Data is not base64', iid USING ERRCODE = 'invalid_parameter_value';
        END;
        fmt := vms._viid_image_format(raw);
        IF fmt IS NULL THEN
            RAISE EXCEPTION 'image % is not an image (JPEG, PNG, GIF, BMP or WebP)', iid USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO vms.viid_image (kind, object_id, image_id, captured_at, type, format, bytes, data)
        VALUES (k.kind, oid, iid, at, img ->> 'Type', fmt, length(raw), raw)
        ON CONFLICT DO NOTHING;
        stored_images := stored_images || (img - 'Data');
    END LOOP;
    IF k.kind <> 'Image' AND n > 0 THEN
        doc := jsonb_set(doc, '{SubImageList,SubImageInfoObject}', stored_images);
    END IF;
    INSERT INTO vms.viid_record (kind, object_id, device_id, captured_at, client_id, images, doc)
    VALUES (k.kind, oid, dev, at, client, n, doc)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;           -- stored before: answered OK, not forwarded again
    END IF;
    FOR f IN SELECT r.* FROM vms.viid_forward r JOIN vms.viid_upstream u ON u.name = r.upstream
              WHERE r.enabled AND u.enabled AND u.system_id::text <> client
                AND (r.kinds IS NULL OR k.kind = ANY (r.kinds))
                AND (r.clients IS NULL OR client = ANY (r.clients))
                AND (r.device_prefixes IS NULL OR EXISTS (SELECT FROM unnest(r.device_prefixes) p WHERE dev LIKE p || '%'))
              ORDER BY r.name LOOP
        INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
        VALUES (f.upstream, k.kind, oid, CASE WHEN f.with_images THEN full_doc ELSE doc END);
        PERFORM vms._wake_worker('viid');
        sent_to := sent_to || f.upstream;
    END LOOP;
    -- subscriptions: one notification per record, due at the end of the
    -- subscription's ReportInterval window (so a window's go out together);
    -- not to a place the record was just forwarded to; only records of the
    -- channels the subscriber's share scope covers
    FOR sub IN SELECT * FROM vms.viid_subscription s
                WHERE s.state = 'active' AND k.kind = ANY (s.kinds) AND at >= s.begin_time AND at < s.end_time
                  AND now() < s.end_time AND s.upstream <> ALL (sent_to)
                  AND (s.resource_prefixes IS NULL OR EXISTS (SELECT FROM unnest(s.resource_prefixes) p WHERE dev LIKE p || '%'))
                  AND dev = ANY (vms._viid_share_codes((SELECT cl.options -> 'share_scope' FROM vms.viid_client cl
                                                        WHERE cl.client_id = s.client_id)))
                ORDER BY s.subscribe_id LOOP
        nid := sub.subscribe_id || '-' || oid;
        INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc, next_attempt_at)
        VALUES (sub.upstream, 'SubscribeNotification', nid,
                vms._viid_notification(nid, sub.subscribe_id, sub.title, oid, k.item_object, full_doc),
                CASE WHEN sub.report_interval > 0
                     THEN to_timestamp(ceil(extract(epoch FROM now()) / sub.report_interval) * sub.report_interval)
                     ELSE now() END);
        UPDATE vms.viid_subscription s SET notifications = s.notifications + 1 WHERE s.subscribe_id = sub.subscribe_id;
        PERFORM vms._wake_worker('viid');
        sent_to := sent_to || sub.upstream;
    END LOOP;
    RETURN true;
END $$;
COMMENT ON FUNCTION vms._viid_ingest_one(text, vms.viid_kind, jsonb, jsonb) IS
    'internal: validate (ids, device, capture time, images), map and store one received record, queue it for the forwarding rules and subscriptions; raises with the reason when refused';

-- What a client's share scope covers, as channel codes: the devices whose
-- records its subscriptions notify.  No scope, or one that is not a valid
-- inspection scope (a bad code, an unknown key): nothing, so that one
-- subscriber's broken scope never stops the ingest of everyone's records.
CREATE FUNCTION vms._viid_share_codes(scope jsonb) RETURNS text[]
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
BEGIN
    IF scope IS NULL THEN
        RETURN '{}';
    END IF;
    RETURN ARRAY(SELECT c::text FROM vms.inspection_scope_channels(scope) c);
EXCEPTION WHEN OTHERS THEN
    RETURN '{}';
END $$;
COMMENT ON FUNCTION vms._viid_share_codes(jsonb) IS
    'internal: channel codes a GA/T 1400 client''s share scope covers (none without a valid scope)';

-- Checks of vms.viid_id_problems and the capture time as booleans that
-- never raise, for many records in one statement (C, viid_images.c): true
-- only when nothing is wrong (anything else goes the per-record way, which
-- says what).
CREATE FUNCTION vms._viid_ts_ok(ts text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_viid_ts_ok' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION vms._viid_ts_ok(text) IS 'internal: true when a text is a real time yyyyMMddHHmmss (never raises)';

CREATE FUNCTION vms._viid_id_ok(id text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_viid_id_ok' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION vms._viid_id_ok(text) IS 'internal: true when vms.viid_id_problems finds nothing wrong with an id (never raises)';

-- The image data of an object list, decoded in C before the body becomes
-- jsonb (workers/viid_server/viid_images.c): the body with each decoded
-- Data string at an image's standard place replaced by "", and per image its
-- record, its place in SubImageInfoObject (both from 1), its bytes and
-- their format (as vms._viid_image_format: NULL when not an image).
CREATE FUNCTION vms._viid_split_images(doc text, list_object text, item_object text, image_kind boolean,
                                       OUT body text, OUT items integer[], OUT subs integer[], OUT data bytea[],
                                       OUT formats text[])
    AS 'MODULE_PATHNAME', 'vms_viid_split_images' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION vms._viid_split_images(text, text, text, boolean) IS
    'internal: decode the base64 image data of a GA/T 1400 object list body in C; the body without it, and the images by record and place';

CREATE TYPE vms._viid_item AS (ord integer, oid text, dev text, at timestamptz, images integer, pos integer,
                               doc jsonb, good boolean);
COMMENT ON TYPE vms._viid_item IS
    'internal: one record of an object list as vms._viid_ingest_many checked it (pos: where its images start in the decoded images)';

-- The records of one object list (no inbound template), with the images
-- vms._viid_split_images decoded.  Every record that passes each check of
-- vms._viid_ingest_one here is stored with a few statements for all of
-- them: images, records, forwarding and subscription notifications.  Any
-- other record (a check fails, or its shape is unusual) goes through
-- vms._viid_ingest_one alone in a subtransaction, its image data put back,
-- and is answered with that reason; with fast false every record does.
-- Answers one ResponseStatusObject per item, in order.
CREATE FUNCTION vms._viid_ingest_many(client text, k vms.viid_kind, path text, items jsonb, copts jsonb,
                                      img_item integer[], img_sub integer[], img_data bytea[], img_fmt text[], fast boolean,
                                      OUT answers jsonb, OUT ok integer, OUT bad integer)
    LANGUAGE plpgsql SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    tz text := coalesce(copts ->> 'timezone', 'Asia/Shanghai');
    known boolean := coalesce((copts ->> 'known_devices_only')::boolean, false);
    latest timestamptz := now() + make_interval(secs => coalesce((copts ->> 'max_future_s')::int, 300));
    id_len integer := CASE WHEN k.kind = 'Image' THEN 41 ELSE 48 END;
    rows vms._viid_item[];
    fresh integer[];
    sent text[] := '{}';
    ans jsonb[] := '{}';
    m timestamptz;
    at_ord integer;
    at_sub integer;
    at_pos integer;
    item jsonb;
    oid text;
    p text[];
    n integer;
BEGIN
    ok := 0;
    bad := 0;
    -- every record's checks in one statement; the images are matched to
    -- their SubImageInfoObject elements by one join for the whole list (a
    -- lookup of the decoded images per record was quadratic in the records)
    rows := ARRAY(
        WITH im AS MATERIALIZED (
            SELECT x.i, x.j, x.n::int AS pos, x.f AS fmt
              FROM unnest(img_item, img_sub, img_fmt) WITH ORDINALITY x(i, j, f, n)),
        e AS MATERIALIZED (
            SELECT x.item, x.ord, jsonb_typeof(x.item) = 'object' AS obj
              FROM jsonb_array_elements(items) WITH ORDINALITY x(item, ord)),
        -- per record: its SubImageInfoObject elements (an ImageObject: its
        -- one image) with their decoded image, if any
        g AS (
            SELECT s.ord, count(s.img)::int AS n, min(im.pos) AS pos,
                   bool_and(im.fmt IS NOT NULL) AS all_images,
                   bool_and(jsonb_typeof(s.img) = 'object' AND s.img -> 'Data' = '""'::jsonb
                            AND im.fmt IS NOT NULL AND vms._viid_id_ok(s.img ->> 'ImageID')) AS subs_fine,
                   jsonb_agg(CASE WHEN jsonb_typeof(s.img) = 'object' THEN s.img - 'Data' ELSE s.img END ORDER BY s.j) AS stripped
              FROM (SELECT e.ord, x.img, x.j
                      FROM e CROSS JOIN LATERAL jsonb_array_elements(
                               CASE WHEN e.obj AND k.kind <> 'Image'
                                         AND jsonb_typeof(e.item -> 'SubImageList' -> 'SubImageInfoObject') = 'array'
                                    THEN e.item -> 'SubImageList' -> 'SubImageInfoObject' END) WITH ORDINALITY x(img, j)
                    UNION ALL
                    SELECT e.ord, NULL, 1 FROM e WHERE k.kind = 'Image') s
              LEFT JOIN im ON im.i = s.ord AND im.j = s.j
             GROUP BY s.ord),
        -- per record: how many images were decoded
        c AS (SELECT im.i, count(*) AS n FROM im GROUP BY im.i)
        SELECT ROW(e.ord, a.oid, b.dev, t.at, gn.n, g.pos,
                   CASE WHEN NOT e.obj THEN e.item
                        WHEN k.kind = 'Image' THEN e.item - 'Data'
                        WHEN gn.n > 0 THEN jsonb_set(e.item, '{SubImageList,SubImageInfoObject}', g.stripped)
                        ELSE e.item END,
                   coalesce(fast AND e.obj AND length(a.oid) = id_len AND vms._viid_id_ok(a.oid)
                   AND vms.gbcode_parse_error(b.dev) IS NULL
                   AND (NOT known OR CASE WHEN vms.gbcode_parse_error(b.dev) IS NULL
                                          THEN EXISTS (SELECT FROM vms.channel ch WHERE ch.code = b.dev::vms.gbcode)
                                               OR EXISTS (SELECT FROM vms.device d WHERE d.code = b.dev::vms.gbcode) END)
                   AND t.at IS NOT NULL AND t.at <= latest
                   AND gf.fine AND gn.n = coalesce(c.n, 0), false))::vms._viid_item
          FROM e
          LEFT JOIN g ON g.ord = e.ord
          LEFT JOIN c ON c.i = e.ord
         CROSS JOIN LATERAL (SELECT CASE WHEN e.obj THEN e.item #>> k.id_path END AS oid) a
         CROSS JOIN LATERAL (
            SELECT CASE WHEN e.obj THEN coalesce(CASE WHEN k.kind = 'Image' THEN e.item -> 'ImageInfo' ->> 'DeviceID'
                                                      ELSE e.item ->> 'DeviceID' END, left(a.oid, 20)) END AS dev,
                   CASE WHEN e.obj THEN coalesce(CASE WHEN k.kind = 'Image' THEN e.item -> 'ImageInfo' ->> 'ShotTime' END,
                                                 e.item ->> 'PassTime', e.item ->> 'ShotTime', e.item ->> 'AppearTime',
                                                 e.item ->> 'FaceAppearTime', e.item ->> 'PersonAppearTime',
                                                 e.item ->> 'LocationMarkTime', substr(a.oid, 23, 14)) END AS ts) b
         CROSS JOIN LATERAL (
            SELECT CASE WHEN vms._viid_ts_ok(b.ts)
                        THEN make_timestamptz(substr(b.ts, 1, 4)::int, substr(b.ts, 5, 2)::int, substr(b.ts, 7, 2)::int,
                                              substr(b.ts, 9, 2)::int, substr(b.ts, 11, 2)::int, substr(b.ts, 13, 2)::int, tz) END AS at) t
         CROSS JOIN LATERAL (SELECT CASE WHEN k.kind = 'Image' THEN 1 ELSE coalesce(g.n, 0) END AS n) gn
         CROSS JOIN LATERAL (
            -- the images: every one decoded, an image, with a valid ImageID (an ImageObject's is the record's id)
            SELECT CASE WHEN NOT e.obj THEN false
                        WHEN k.kind = 'Image' THEN e.item -> 'Data' = '""'::jsonb AND g.all_images IS TRUE
                        WHEN e.item -> 'SubImageList' -> 'SubImageInfoObject' IS NULL THEN true
                        WHEN jsonb_typeof(e.item -> 'SubImageList' -> 'SubImageInfoObject') <> 'array' THEN false
                        ELSE coalesce(g.subs_fine, true) END AS fine) gf
         ORDER BY e.ord);

    -- the good ones, all together
    FOR m IN SELECT DISTINCT date_trunc('month', r.at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' FROM unnest(rows) r WHERE r.good LOOP
        PERFORM vms._viid_record_partition(m);
    END LOOP;
    IF EXISTS (SELECT FROM unnest(rows) r WHERE r.good) THEN
        WITH g AS (SELECT * FROM unnest(rows) r WHERE r.good),
        pics AS (
            INSERT INTO vms.viid_image (kind, object_id, image_id, captured_at, type, format, bytes, data)
            -- in the images' order, sorted without their data (a sort
            -- would copy every image): each image's data taken after it
            SELECT k.kind, s.oid, s.image_id, s.at, s.type, s.f, length(img_data[s.n]), img_data[s.n]
              FROM (SELECT g.oid,
                           CASE WHEN k.kind = 'Image' THEN g.oid ELSE g.doc -> 'SubImageList' -> 'SubImageInfoObject' -> (x.j - 1) ->> 'ImageID' END AS image_id,
                           g.at,
                           CASE WHEN k.kind = 'Image' THEN g.doc -> 'ImageInfo' ->> 'Type'
                                ELSE g.doc -> 'SubImageList' -> 'SubImageInfoObject' -> (x.j - 1) ->> 'Type' END AS type,
                           x.f, x.n
                      FROM unnest(img_item, img_sub, img_fmt) WITH ORDINALITY x(i, j, f, n) JOIN g ON g.ord = x.i
                     ORDER BY x.i, x.j OFFSET 0) s
            ON CONFLICT DO NOTHING),
        stored AS (
            INSERT INTO vms.viid_record (kind, object_id, device_id, captured_at, client_id, images, doc)
            SELECT k.kind, g.oid, g.dev, g.at, client, g.images, g.doc FROM g ORDER BY g.ord
            ON CONFLICT DO NOTHING
            RETURNING object_id, captured_at)
        SELECT array_agg(f.ord) INTO fresh
          FROM (SELECT min(g.ord) AS ord FROM stored s JOIN g ON g.oid = s.object_id AND g.at = s.captured_at
                 GROUP BY s.object_id, s.captured_at) f;
    END IF;
    -- forwarding rules, then subscriptions, for the records stored now (not
    -- those stored before); never back to the client, and a subscription
    -- notifies no place the record was just forwarded to
    IF fresh IS NOT NULL AND EXISTS (SELECT FROM vms.viid_forward f WHERE f.enabled) THEN
        WITH q AS (
            INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
            SELECT r.upstream, k.kind, g.oid,
                   CASE WHEN r.with_images THEN vms._viid_with_images(k.kind, g.doc, g.pos, img_data) ELSE g.doc END
              FROM unnest(rows) g
              JOIN vms.viid_forward r ON r.enabled AND (r.kinds IS NULL OR k.kind = ANY (r.kinds))
                   AND (r.clients IS NULL OR client = ANY (r.clients))
                   AND (r.device_prefixes IS NULL OR EXISTS (SELECT FROM unnest(r.device_prefixes) dp WHERE g.dev LIKE dp || '%'))
              JOIN vms.viid_upstream u ON u.name = r.upstream AND u.enabled AND u.system_id::text <> client
             WHERE g.ord = ANY (fresh)
             ORDER BY g.ord, r.name
            RETURNING upstream, object_id)
        SELECT coalesce(array_agg(q.upstream || ' ' || q.object_id), '{}') INTO sent FROM q;
        IF cardinality(sent) > 0 THEN
            PERFORM vms._wake_worker('viid');
        END IF;
    END IF;
    IF fresh IS NOT NULL AND EXISTS (SELECT FROM vms.viid_subscription s
                                      WHERE s.state = 'active' AND k.kind = ANY (s.kinds) AND now() < s.end_time) THEN
        WITH subs AS MATERIALIZED (
            SELECT s.subscribe_id, s.upstream, s.title, s.report_interval, s.begin_time, s.end_time, s.resource_prefixes,
                   vms._viid_share_codes(c.options -> 'share_scope') AS shared
              FROM vms.viid_subscription s JOIN vms.viid_client c ON c.client_id = s.client_id
             WHERE s.state = 'active' AND k.kind = ANY (s.kinds) AND now() < s.end_time),
        due AS (
            SELECT DISTINCT ON (g.ord, s.upstream) g.ord, g.oid, g.doc, g.pos, s.subscribe_id, s.upstream, s.title, s.report_interval
              FROM unnest(rows) g
              JOIN subs s ON g.at >= s.begin_time AND g.at < s.end_time AND g.dev = ANY (s.shared)
                   AND (s.resource_prefixes IS NULL OR EXISTS (SELECT FROM unnest(s.resource_prefixes) rp WHERE g.dev LIKE rp || '%'))
             WHERE g.ord = ANY (fresh) AND s.upstream || ' ' || g.oid <> ALL (sent)
             ORDER BY g.ord, s.upstream, s.subscribe_id),
        q AS (
            INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc, next_attempt_at)
            SELECT d.upstream, 'SubscribeNotification', d.subscribe_id || '-' || d.oid,
                   vms._viid_notification(d.subscribe_id || '-' || d.oid, d.subscribe_id, d.title, d.oid, k.item_object,
                                          vms._viid_with_images(k.kind, d.doc, d.pos, img_data)),
                   CASE WHEN d.report_interval > 0
                        THEN to_timestamp(ceil(extract(epoch FROM now()) / d.report_interval) * d.report_interval)
                        ELSE now() END
              FROM due d ORDER BY d.ord, d.subscribe_id
            RETURNING 1)
        UPDATE vms.viid_subscription s SET notifications = s.notifications + c.n
          FROM (SELECT due.subscribe_id, count(*) AS n FROM due GROUP BY 1) c
         WHERE s.subscribe_id = c.subscribe_id;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n > 0 THEN
            PERFORM vms._wake_worker('viid');
        END IF;
    END IF;

    -- the others, one by one, with their image data back in place
    FOR at_ord IN SELECT r.ord FROM unnest(rows) r WHERE NOT r.good ORDER BY r.ord LOOP
        item := items -> (at_ord - 1);
        FOR at_sub, at_pos IN SELECT x.j, x.n FROM unnest(img_item, img_sub) WITH ORDINALITY x(i, j, n) WHERE x.i = at_ord LOOP
            p := CASE WHEN k.kind = 'Image' THEN '{Data}'
                      WHEN jsonb_typeof(item -> 'SubImageList' -> 'SubImageInfoObject') = 'array'
                      THEN ARRAY['SubImageList', 'SubImageInfoObject', (at_sub - 1)::text, 'Data']
                      ELSE '{SubImageList,SubImageInfoObject,Data}' END;
            IF item #> p = '""'::jsonb THEN
                item := jsonb_set(item, p, to_jsonb(translate(encode(img_data[at_pos], 'base64'), E'\n', '')));
            END IF;
        END LOOP;
        oid := CASE WHEN jsonb_typeof(item) = 'object' THEN left(item #>> k.id_path, 64) END;
        BEGIN
            PERFORM vms._viid_ingest_one(client, k, item, copts);
            ok := ok + 1;
            ans[at_ord] := vms._viid_status(path, 0, 'OK', oid);
        EXCEPTION WHEN OTHERS THEN
            bad := bad + 1;
            ans[at_ord] := vms._viid_status(path, 8, left(SQLERRM, 300), oid);
        END;
    END LOOP;
    SELECT coalesce(jsonb_agg(CASE WHEN r.good THEN vms._viid_status(path, 0, 'OK', left(r.oid, 64)) ELSE ans[r.ord] END
                              ORDER BY r.ord), '[]'),
           ok + count(*) FILTER (WHERE r.good)
      INTO answers, ok
      FROM unnest(rows) r;
END $$;
COMMENT ON FUNCTION vms._viid_ingest_many(text, vms.viid_kind, text, jsonb, jsonb, integer[], integer[], bytea[], text[], boolean) IS
    'internal: validate, store, forward and notify the records of one GA/T 1400 object list together, the images decoded beforehand; records that fail a check go through vms._viid_ingest_one for their reason';

-- A stored record (image data removed) with its images' data put back as
-- base64, as it is forwarded and notified; pos: where its images start in
-- the decoded images.
CREATE FUNCTION vms._viid_with_images(kind text, doc jsonb, pos integer, data bytea[]) RETURNS jsonb
    LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN pos IS NULL THEN doc
                WHEN kind = 'Image' THEN doc || jsonb_build_object('Data', translate(encode(data[pos], 'base64'), E'\n', ''))
                WHEN jsonb_typeof(doc -> 'SubImageList' -> 'SubImageInfoObject') = 'array'
                THEN jsonb_set(doc, '{SubImageList,SubImageInfoObject}',
                               (SELECT jsonb_agg(s.img || jsonb_build_object('Data', translate(encode(data[pos + s.j::int - 1], 'base64'), E'\n', ''))
                                                 ORDER BY s.j)
                                  FROM jsonb_array_elements(doc -> 'SubImageList' -> 'SubImageInfoObject') WITH ORDINALITY s(img, j)))
                ELSE doc END
$$;
COMMENT ON FUNCTION vms._viid_with_images(text, jsonb, integer, bytea[]) IS
    'internal: a received record with the base64 data of its decoded images put back (forwarding, notifications)';

-- SubscribeDetail codes (GA/T 1400.3) and the received kinds they deliver:
-- 11 persons, 12 faces, 13 motor vehicles, 14 non-motor vehicles, 8 tollgate
-- records (motor vehicles), 16 files (images); ledger changes: 3 APEs, 4 APE
-- status, 7 tollgates, 9 lanes (vms._viid_subscription_ledger).
CREATE FUNCTION vms._viid_subscribe(client text, method text, item jsonb) RETURNS text
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    sid text := item ->> 'SubscribeID';
    codes text[];
    kinds text[];
    up text;
    b timestamptz;
    e timestamptz;
    addr text := item ->> 'ReceiveAddr';
    old vms.viid_subscription;
BEGIN
    IF sid IS NULL OR sid !~ '^[0-9A-Za-z_.-]{1,64}$' THEN
        RAISE EXCEPTION 'SubscribeID "%" is not valid (1-64 letters, digits, _ . -)', left(coalesce(sid, ''), 64)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO old FROM vms.viid_subscription s WHERE s.subscribe_id = sid;
    IF FOUND AND old.client_id::text <> client THEN
        RAISE EXCEPTION 'subscription "%" belongs to another client', sid USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF method = 'POST' AND FOUND AND old.state = 'active' THEN
        RAISE EXCEPTION 'subscription "%" exists: PUT changes it', sid USING ERRCODE = 'unique_violation';
    END IF;
    IF method = 'PUT' AND NOT FOUND THEN
        RAISE EXCEPTION 'subscription "%" does not exist', sid USING ERRCODE = 'undefined_object';
    END IF;
    IF method = 'PUT' AND old.state = 'cancelled' THEN
        RAISE EXCEPTION 'subscription "%" is cancelled: POST subscribes again', sid USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF method = 'PUT' THEN
        item := old.doc || item;
        addr := item ->> 'ReceiveAddr';
    END IF;
    codes := ARRAY(SELECT btrim(x) FROM unnest(string_to_array(item ->> 'SubscribeDetail', ',')) x WHERE btrim(x) <> '');
    IF cardinality(codes) = 0 OR EXISTS (SELECT FROM unnest(codes) x WHERE x !~ '^[0-9]{1,2}$') THEN
        RAISE EXCEPTION 'SubscribeDetail "%" is not a list of codes', left(coalesce(item ->> 'SubscribeDetail', ''), 64)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    kinds := ARRAY(SELECT DISTINCT CASE x WHEN '11' THEN 'Person' WHEN '12' THEN 'Face' WHEN '13' THEN 'MotorVehicle'
                                         WHEN '8' THEN 'MotorVehicle' WHEN '14' THEN 'NonMotorVehicle' WHEN '16' THEN 'Image' END
                     FROM unnest(codes) x WHERE x IN ('8', '11', '12', '13', '14', '16'));
    BEGIN
        b := CASE WHEN coalesce(item ->> 'BeginTime', '') = '' THEN now()
                  ELSE to_timestamp(item ->> 'BeginTime', 'YYYYMMDDHH24MISS')::timestamp AT TIME ZONE 'Asia/Shanghai' END;
        e := CASE WHEN coalesce(item ->> 'EndTime', '') = '' THEN 'infinity'
                  ELSE to_timestamp(item ->> 'EndTime', 'YYYYMMDDHH24MISS')::timestamp AT TIME ZONE 'Asia/Shanghai' END;
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'BeginTime or EndTime is not yyyyMMddHHmmss' USING ERRCODE = 'invalid_datetime_format';
    END;
    IF e <= b THEN
        RAISE EXCEPTION 'EndTime is not after BeginTime' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT u.name INTO up FROM vms.viid_upstream u
     WHERE u.enabled AND addr IS NOT NULL AND (addr = u.base_url OR addr LIKE u.base_url || '/%')
     ORDER BY (u.system_id::text = client) DESC, length(u.base_url) DESC, u.name LIMIT 1;
    IF up IS NULL THEN
        RAISE EXCEPTION 'ReceiveAddr "%" is not the address of a configured upstream', left(coalesce(addr, ''), 200)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Notifications travel through the push: add the subscriber with vms.viid_add_upstream.';
    END IF;
    INSERT INTO vms.viid_subscription AS s (subscribe_id, client_id, upstream, title, details, kinds, resource_prefixes,
                                          begin_time, end_time, receive_addr, report_interval, doc)
    VALUES (sid, client::vms.gbcode, up, item ->> 'Title', codes, kinds,
            nullif(ARRAY(SELECT btrim(x) FROM unnest(string_to_array(item ->> 'ResourceURI', ',')) x WHERE btrim(x) <> ''), '{}'),
            b, e, addr, greatest(coalesce((item ->> 'ReportInterval')::int, 0), 0), item)
    ON CONFLICT (subscribe_id) DO UPDATE SET
        upstream = EXCLUDED.upstream, title = EXCLUDED.title, details = EXCLUDED.details, kinds = EXCLUDED.kinds,
        resource_prefixes = EXCLUDED.resource_prefixes, begin_time = EXCLUDED.begin_time, end_time = EXCLUDED.end_time,
        receive_addr = EXCLUDED.receive_addr, report_interval = EXCLUDED.report_interval, doc = EXCLUDED.doc,
        state = 'active', cancelled_at = NULL, updated_at = now();
    RETURN sid;
END $$;
COMMENT ON FUNCTION vms._viid_subscribe(text, text, jsonb) IS
    'internal: create (POST) or change (PUT) a client''s subscription from a SubscribeObject; raises with the reason when refused';

CREATE FUNCTION vms.viid_subscription_cancel(subscribe_id text) RETURNS boolean
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    WITH c AS (UPDATE vms.viid_subscription s SET state = 'cancelled', cancelled_at = now(), updated_at = now()
                WHERE s.subscribe_id = viid_subscription_cancel.subscribe_id AND s.state = 'active' RETURNING 1)
    SELECT count(*) > 0 FROM c
$$;
COMMENT ON FUNCTION vms.viid_subscription_cancel(text) IS 'cancel a GA/T 1400 subscription (as DELETE /VIID/Subscribes does); true if it was active';

-- Directory and status subscriptions: ledger changes notify subscribers
-- with SubscribeDetail 3 (APEs added or changed), 4 (APE status: online),
-- 7 (tollgates), 9 (lanes), within the subscriber's share scope.
-- SECURITY DEFINER like vms._viid_sync_ledger: whoever edits the ledger may
-- not write the outbox; it takes nothing from the caller but the rows.
CREATE FUNCTION vms._viid_subscription_ledger() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    sub record;
    shared vms.gbcode[];
    n integer := 0;
BEGIN
    IF NOT EXISTS (SELECT FROM vms.viid_subscription s
                    WHERE s.state = 'active' AND now() >= s.begin_time AND now() < s.end_time
                      AND s.details && '{3,4,7,9}') THEN
        RETURN NULL;
    END IF;
    FOR sub IN SELECT s.*, c.options AS client_options FROM vms.viid_subscription s
                 JOIN vms.viid_client c USING (client_id)
                WHERE s.state = 'active' AND now() >= s.begin_time AND now() < s.end_time
                  AND s.details && '{3,4,7,9}' AND c.options ? 'share_scope'
                ORDER BY s.subscribe_id LOOP
        shared := ARRAY(SELECT vms.inspection_scope_channels(sub.client_options -> 'share_scope'));
        IF TG_TABLE_NAME = 'channel' AND TG_OP = 'INSERT' AND '3' = ANY (sub.details) THEN
            INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
            SELECT sub.upstream, 'SubscribeNotification', nid,
                   vms._viid_notification(nid, sub.subscribe_id, sub.title, ch.code::text, 'APEObject', vms.viid_ape_doc(ch))
              FROM new_rows ch
              CROSS JOIN LATERAL (SELECT sub.subscribe_id || '-' || ch.code::text || '-' || to_char(clock_timestamp(), 'YYYYMMDDHH24MISSUS') AS nid) x
             WHERE ch.code = ANY (shared);
        ELSIF TG_TABLE_NAME = 'channel' AND TG_OP = 'UPDATE' THEN
            INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
            SELECT sub.upstream, 'SubscribeNotification', nid,
                   vms._viid_notification(nid, sub.subscribe_id, sub.title, ch.code::text, 'APEObject', vms.viid_ape_doc(ch))
              FROM new_rows ch JOIN old_rows o ON o.code = ch.code
              CROSS JOIN LATERAL (SELECT sub.subscribe_id || '-' || ch.code::text || '-' || to_char(clock_timestamp(), 'YYYYMMDDHH24MISSUS') AS nid) x
             WHERE ch.code = ANY (shared)
               AND (('3' = ANY (sub.details) AND vms._channel_jsonb(ch) IS DISTINCT FROM vms._channel_jsonb(o))
                    OR ('4' = ANY (sub.details) AND ch.online IS DISTINCT FROM o.online));
        ELSIF TG_TABLE_NAME = 'checkpoint' AND '7' = ANY (sub.details) THEN
            INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
            SELECT sub.upstream, 'SubscribeNotification', nid,
                   vms._viid_notification(nid, sub.subscribe_id, sub.title, k.code::text, 'TollgateObject', vms.viid_tollgate_doc(k))
              FROM new_rows k
              CROSS JOIN LATERAL (SELECT sub.subscribe_id || '-' || k.code::text || '-' || to_char(clock_timestamp(), 'YYYYMMDDHH24MISSUS') AS nid) x
             WHERE EXISTS (SELECT FROM vms.lane_channel lc WHERE lc.checkpoint_code = k.code AND lc.channel_code = ANY (shared));
        ELSIF TG_TABLE_NAME = 'lane' AND '9' = ANY (sub.details) THEN
            INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc)
            SELECT sub.upstream, 'SubscribeNotification', nid,
                   vms._viid_notification(nid, sub.subscribe_id, sub.title, l.checkpoint_code::text || lpad(l.lane_no::text, 2, '0'),
                                          'LaneObject', vms.viid_lane_doc(l))
              FROM new_rows l
              CROSS JOIN LATERAL (SELECT sub.subscribe_id || '-' || l.checkpoint_code::text || lpad(l.lane_no::text, 2, '0') || '-'
                                         || to_char(clock_timestamp(), 'YYYYMMDDHH24MISSUS') AS nid) x
             WHERE EXISTS (SELECT FROM vms.lane_channel lc WHERE lc.checkpoint_code = l.checkpoint_code
                              AND lc.lane_no = l.lane_no AND lc.channel_code = ANY (shared));
        END IF;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n > 0 THEN
            UPDATE vms.viid_subscription s SET notifications = s.notifications + n WHERE s.subscribe_id = sub.subscribe_id;
            PERFORM vms._wake_worker('viid');
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._viid_subscription_ledger() IS
    'internal: queue SubscribeNotifications for ledger changes (SubscribeDetail 3 APEs, 4 APE status, 7 tollgates, 9 lanes) within each subscriber''s share scope';
CREATE TRIGGER channel_viid_sub_ins AFTER INSERT ON vms.channel REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_subscription_ledger();
CREATE TRIGGER channel_viid_sub_upd AFTER UPDATE ON vms.channel REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_subscription_ledger();
CREATE TRIGGER checkpoint_viid_sub_ins AFTER INSERT ON vms.checkpoint REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_subscription_ledger();
CREATE TRIGGER checkpoint_viid_sub_upd AFTER UPDATE ON vms.checkpoint REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_subscription_ledger();
CREATE TRIGGER lane_viid_sub_ins AFTER INSERT ON vms.lane REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_subscription_ledger();
CREATE TRIGGER lane_viid_sub_upd AFTER UPDATE ON vms.lane REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._viid_subscription_ledger();

-- The ledger as a client may see it: APEs, tollgates and lanes within its
-- share scope (options.share_scope, as an inspection scope: regions,
-- catalog_nodes, tags, channels); no scope, nothing.
CREATE FUNCTION vms._viid_directory(c vms.viid_client, path text) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    shared vms.gbcode[];
BEGIN
    IF c.options ? 'share_scope' THEN
        shared := ARRAY(SELECT vms.inspection_scope_channels(c.options -> 'share_scope'));
    ELSE
        shared := '{}';
    END IF;
    IF path = '/VIID/APEs' THEN
        RETURN jsonb_build_object('APEListObject', jsonb_build_object('APEObject',
            coalesce((SELECT jsonb_agg(vms.viid_ape_doc(ch) ORDER BY ch.code) FROM vms.channel ch WHERE ch.code = ANY (shared)), '[]')));
    ELSIF path = '/VIID/Tollgates' THEN
        RETURN jsonb_build_object('TollgateListObject', jsonb_build_object('TollgateObject',
            coalesce((SELECT jsonb_agg(vms.viid_tollgate_doc(k) ORDER BY k.code) FROM vms.checkpoint k
                       WHERE EXISTS (SELECT FROM vms.lane_channel lc WHERE lc.checkpoint_code = k.code AND lc.channel_code = ANY (shared))), '[]')));
    ELSE
        RETURN jsonb_build_object('LaneListObject', jsonb_build_object('LaneObject',
            coalesce((SELECT jsonb_agg(vms.viid_lane_doc(l) ORDER BY l.checkpoint_code, l.lane_no) FROM vms.lane l
                       WHERE EXISTS (SELECT FROM vms.lane_channel lc WHERE lc.checkpoint_code = l.checkpoint_code
                                        AND lc.lane_no = l.lane_no AND lc.channel_code = ANY (shared))), '[]')));
    END IF;
END $$;
COMMENT ON FUNCTION vms._viid_directory(vms.viid_client, text) IS
    'internal: APEListObject, TollgateListObject or LaneListObject of what a client''s share scope covers (GET /VIID/APEs, Tollgates, Lanes)';

-- One complete HTTP request from an authenticated client.  The worker runs
-- several in one short transaction and answers them after the commit.
CREATE FUNCTION vms._viid_server_request(client text, method text, path text, body text, remote text)
    RETURNS TABLE (http_status integer, response text, stored integer, rejected integer, event text)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    j jsonb;
    c vms.viid_client;
    s vms.viid_client_session;
    k vms.viid_kind;
    items jsonb;
    item jsonb;
    answers jsonb := '[]';
    oid text;
    ok integer := 0;
    bad integer := 0;
    split record;
    did_split boolean := false;
    many record;
BEGIN
    SELECT * INTO c FROM vms.viid_client v WHERE v.client_id::text = client AND v.enabled;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 401, jsonb_build_object('ResponseStatusObject', vms._viid_status(path, 4, 'unknown or disabled client'))::text, 0, 0, 'auth';
        RETURN;
    END IF;
    IF method = 'GET' AND path = '/VIID/System/Time' THEN
        RETURN QUERY SELECT 200, jsonb_build_object('SystemTimeObject', jsonb_build_object(
            'VIIDServerID', coalesce(nullif(current_setting('vms.viid_server_id', true), ''), ''),
            'TimeMode', '1', 'LocalTime', to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDDHH24MISS'),
            'TimeZone', 'Asia/Shanghai'))::text, 0, 0, 'time';
        RETURN;
    END IF;
    IF method = 'GET' AND path IN ('/VIID/APEs', '/VIID/Tollgates', '/VIID/Lanes') THEN
        RETURN QUERY SELECT 200, vms._viid_directory(c, path)::text, 0, 0, 'directory';
        RETURN;
    END IF;
    IF path = '/VIID/Subscribes' AND method = 'DELETE' THEN
        -- the worker passes the IDList query argument as the body
        -- each id on its own: one that fails is answered with its reason,
        -- the others are cancelled
        FOR oid IN SELECT btrim(x) FROM unnest(string_to_array(coalesce(body, ''), ',')) x WHERE btrim(x) <> '' LOOP
            BEGIN
                IF EXISTS (SELECT FROM vms.viid_subscription sb WHERE sb.subscribe_id = oid AND sb.client_id = c.client_id AND sb.state = 'active') THEN
                    PERFORM vms.viid_subscription_cancel(oid);
                    ok := ok + 1;
                    answers := answers || vms._viid_status(path, 0, 'OK', left(oid, 64));
                ELSE
                    bad := bad + 1;
                    answers := answers || vms._viid_status(path, 4, 'no active subscription of this client with this id', left(oid, 64));
                END IF;
            EXCEPTION WHEN OTHERS THEN
                bad := bad + 1;
                answers := answers || vms._viid_status(path, 8, left(SQLERRM, 300), left(oid, 64));
            END;
        END LOOP;
        IF ok + bad = 0 THEN
            RETURN QUERY SELECT 400, jsonb_build_object('ResponseStatusObject', vms._viid_status(path, 8, 'IDList is missing'))::text, 0, 0, 'bad_request';
            RETURN;
        END IF;
        RETURN QUERY SELECT 200, jsonb_build_object('ResponseStatusListObject',
            jsonb_build_object('ResponseStatusObject', answers))::text, 0, 0, 'subscription';
        RETURN;
    END IF;
    IF method NOT IN ('POST', 'PUT') OR (method = 'PUT' AND path <> '/VIID/Subscribes') THEN
        RETURN QUERY SELECT 405, jsonb_build_object('ResponseStatusObject', vms._viid_status(path, 4, 'method not allowed'))::text, 0, 0, 'bad_request';
        RETURN;
    END IF;
    -- an object list with no inbound template: its images are decoded in C
    -- first, and the much smaller rest becomes jsonb
    IF method = 'POST' THEN
        SELECT * INTO k FROM vms.viid_kind v WHERE v.path = _viid_server_request.path
           AND v.kind IN ('MotorVehicle', 'NonMotorVehicle', 'Person', 'Face', 'Image');
        IF FOUND AND coalesce(c.options -> 'templates' ->> k.kind, c.options ->> 'template') IS NULL THEN
            split := vms._viid_split_images(body, k.list_object, k.item_object, k.kind = 'Image');
            body := split.body;
            did_split := true;
        END IF;
    END IF;
    BEGIN
        j := body::jsonb;
    EXCEPTION WHEN OTHERS THEN
        RETURN QUERY SELECT 400, jsonb_build_object('ResponseStatusObject',
            vms._viid_status(path, 7, 'malformed JSON: ' || left(SQLERRM, 200)))::text, 0, 0, 'bad_request';
        RETURN;
    END;
    IF jsonb_typeof(j) <> 'object' THEN
        RETURN QUERY SELECT 400, jsonb_build_object('ResponseStatusObject', vms._viid_status(path, 8, 'body is not a JSON object'))::text, 0, 0, 'bad_request';
        RETURN;
    END IF;

    IF path IN ('/VIID/System/Register', '/VIID/System/Keepalive', '/VIID/System/UnRegister') THEN
        oid := coalesce(j #>> '{RegisterObject,DeviceID}', j #>> '{KeepaliveObject,DeviceID}', j #>> '{UnRegisterObject,DeviceID}');
        IF oid IS DISTINCT FROM client THEN
            RETURN QUERY SELECT 400, jsonb_build_object('ResponseStatusObject',
                vms._viid_status(path, 8, 'DeviceID must be the authenticated client''s id', oid))::text, 0, 0, 'bad_request';
            RETURN;
        END IF;
        SELECT * INTO s FROM vms.viid_client_session v WHERE v.client_id = c.client_id FOR UPDATE;
        IF path = '/VIID/System/Keepalive' AND coalesce(s.state, 'unregistered') <> 'registered' THEN
            RETURN QUERY SELECT 401, jsonb_build_object('ResponseStatusObject', vms._viid_status(path, 4, 'not registered', client))::text, 0, 0, 'not_registered';
            RETURN;
        END IF;
        -- on its own: should the session row fail, this request is answered
        -- 500 and the others of the worker's batch go on
        BEGIN
            INSERT INTO vms.viid_client_session AS v (client_id, state, registered_at, last_keepalive_at, remote_addr, last_event_at)
            VALUES (c.client_id, CASE WHEN path = '/VIID/System/UnRegister' THEN 'unregistered' ELSE 'registered' END,
                    CASE WHEN path = '/VIID/System/Register' THEN now() END, now(), remote, now())
            ON CONFLICT ON CONSTRAINT viid_client_session_pkey DO UPDATE SET
                state = EXCLUDED.state,
                registered_at = coalesce(EXCLUDED.registered_at, v.registered_at),
                last_keepalive_at = now(), remote_addr = EXCLUDED.remote_addr, last_event_at = now();
        EXCEPTION WHEN OTHERS THEN
            RETURN QUERY SELECT 500, jsonb_build_object('ResponseStatusObject',
                vms._viid_status(path, 1, 'internal error: ' || left(SQLERRM, 200) || '; send it again', client))::text, 0, 0, 'internal';
            RETURN;
        END;
        RETURN QUERY SELECT 200, jsonb_build_object('ResponseStatusObject', vms._viid_status(path, 0, 'OK', client))::text, 0, 0,
            CASE path WHEN '/VIID/System/Register' THEN 'register' WHEN '/VIID/System/Keepalive' THEN 'keepalive' ELSE 'unregister' END;
        RETURN;
    END IF;

    IF path = '/VIID/Subscribes' THEN
        items := j -> 'SubscribeListObject' -> 'SubscribeObject';
        IF items IS NOT NULL AND jsonb_typeof(items) = 'object' THEN
            items := jsonb_build_array(items);
        END IF;
        IF items IS NULL OR jsonb_typeof(items) <> 'array' THEN
            RETURN QUERY SELECT 400, jsonb_build_object('ResponseStatusObject',
                vms._viid_status(path, 8, 'expected {"SubscribeListObject": {"SubscribeObject": [...]}}'))::text, 0, 0, 'bad_request';
            RETURN;
        END IF;
        FOR item IN SELECT * FROM jsonb_array_elements(items) LOOP
            oid := CASE WHEN jsonb_typeof(item) = 'object' THEN left(item ->> 'SubscribeID', 64) END;
            BEGIN
                IF jsonb_typeof(item) IS DISTINCT FROM 'object' THEN
                    RAISE EXCEPTION 'item is not a JSON object';
                END IF;
                PERFORM vms._viid_subscribe(client, method, item);
                ok := ok + 1;
                answers := answers || vms._viid_status(path, 0, 'OK', oid);
            EXCEPTION WHEN OTHERS THEN
                bad := bad + 1;
                answers := answers || vms._viid_status(path, 8, left(SQLERRM, 300), oid);
            END;
        END LOOP;
        RETURN QUERY SELECT 200, jsonb_build_object('ResponseStatusListObject',
            jsonb_build_object('ResponseStatusObject', answers))::text, 0, 0, 'subscription';
        RETURN;
    END IF;
    SELECT * INTO k FROM vms.viid_kind v WHERE v.path = _viid_server_request.path
       AND v.kind IN ('MotorVehicle', 'NonMotorVehicle', 'Person', 'Face', 'Image');
    IF NOT FOUND THEN
        RETURN QUERY SELECT 404, jsonb_build_object('ResponseStatusObject', vms._viid_status(path, 4, 'unknown resource'))::text, 0, 0, 'not_found';
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT FROM vms.viid_client_session v WHERE v.client_id = c.client_id AND v.state = 'registered') THEN
        RETURN QUERY SELECT 401, jsonb_build_object('ResponseStatusObject', vms._viid_status(path, 4, 'not registered: POST /VIID/System/Register first'))::text, 0, 0, 'not_registered';
        RETURN;
    END IF;
    items := j -> k.list_object -> k.item_object;
    IF items IS NULL OR jsonb_typeof(items) <> 'array' THEN
        RETURN QUERY SELECT 400, jsonb_build_object('ResponseStatusObject',
            vms._viid_status(path, 8, format('expected {"%s": {"%s": [...]}}', k.list_object, k.item_object)))::text, 0, 0, 'bad_request';
        RETURN;
    END IF;
    IF did_split THEN
        -- all records together; should that fail as a whole (it should
        -- not), each record on its own, as with a template
        BEGIN
            many := vms._viid_ingest_many(client, k, path, items, c.options, split.items, split.subs, split.data, split.formats, true);
        EXCEPTION WHEN OTHERS THEN
            many := vms._viid_ingest_many(client, k, path, items, c.options, split.items, split.subs, split.data, split.formats, false);
        END;
        answers := many.answers;
        ok := many.ok;
        bad := many.bad;
    ELSE
        FOR item IN SELECT * FROM jsonb_array_elements(items) LOOP
            oid := CASE WHEN jsonb_typeof(item) = 'object' THEN left(item #>> k.id_path, 64) END;
            BEGIN
                PERFORM vms._viid_ingest_one(client, k, item, c.options);
                ok := ok + 1;
                answers := answers || vms._viid_status(path, 0, 'OK', oid);
            EXCEPTION WHEN OTHERS THEN
                bad := bad + 1;
                answers := answers || vms._viid_status(path, 8, left(SQLERRM, 300), oid);
            END;
        END LOOP;
    END IF;
    UPDATE vms.viid_client_session v SET requests = v.requests + 1, records = v.records + ok,
           rejected = v.rejected + bad, last_event_at = now()
     WHERE v.client_id = c.client_id;
    RETURN QUERY SELECT 200, jsonb_build_object('ResponseStatusListObject',
        jsonb_build_object('ResponseStatusObject', answers))::text, ok, bad, 'records';
END $$;
COMMENT ON FUNCTION vms._viid_server_request(text, text, text, text, text) IS
    'internal: answer one authenticated GA/T 1400 request (System Register/Keepalive/UnRegister/Time, object lists) for the viid-server worker';

-- Retention: rows older than their kind's keep_days / image_days go; a
-- partition whose whole month is past every kind's retention is dropped.
CREATE FUNCTION vms.viid_record_prune() RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n bigint := 0;
    m bigint;
    p record;
    oldest integer := (SELECT max(greatest(keep_days, image_days)) FROM vms.viid_record_retention);
BEGIN
    FOR p IN SELECT c.oid::regclass AS part, pg_get_expr(c.relpartbound, c.oid) AS bound
               FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent IN ('vms.viid_record'::regclass, 'vms.viid_image'::regclass) LOOP
        IF (substring(p.bound FROM 'TO \(''([^'']+)''\)'))::timestamptz < now() - make_interval(days => coalesce(oldest, 0) + 1) THEN
            EXECUTE format('DROP TABLE %s', p.part);
        END IF;
    END LOOP;
    DELETE FROM vms.viid_record r USING vms.viid_record_retention t
     WHERE r.kind = t.kind AND r.captured_at < now() - make_interval(days => t.keep_days);
    GET DIAGNOSTICS m = ROW_COUNT;
    n := n + m;
    DELETE FROM vms.viid_image r USING vms.viid_record_retention t
     WHERE r.kind = t.kind AND r.captured_at < now() - make_interval(days => t.image_days);
    GET DIAGNOSTICS m = ROW_COUNT;
    RETURN n + m;
END $$;
COMMENT ON FUNCTION vms.viid_record_prune() IS
    'delete received GA/T 1400 records and images past their kind''s retention (vms.viid_record_retention); drop whole expired partitions; returns rows deleted';
