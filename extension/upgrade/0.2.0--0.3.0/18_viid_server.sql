-- Issue 18: GA/T 1400 server (fresh install: extension/sql/22_viid_server.sql).
-- Object lists are stored together (vms._viid_ingest_many) with their images
-- decoded in C first (vms._viid_split_images); record notifications only for
-- channels of the subscriber's share scope; DELETE /VIID/Subscribes and the
-- session row of Register/Keepalive/UnRegister each on their own.

CREATE OR REPLACE FUNCTION vms._viid_ingest_one(client text, k vms.viid_kind, item jsonb, copts jsonb) RETURNS boolean
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

CREATE OR REPLACE FUNCTION vms._viid_server_request(client text, method text, path text, body text, remote text)
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

-- internal: the owner's only (99_privileges.sql does this in bulk on a fresh install)
REVOKE ALL ON FUNCTION vms._viid_share_codes(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION vms._viid_ts_ok(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION vms._viid_id_ok(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION vms._viid_split_images(text, text, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION vms._viid_ingest_many(text, vms.viid_kind, text, jsonb, jsonb, integer[], integer[], bytea[], text[], boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION vms._viid_with_images(text, jsonb, integer, bytea[]) FROM PUBLIC;
