-- Hygiene (issue 20's review notes): small correctness and maintainability
-- fixes.
--
-- vms.access_grant_rebind, vms.access_request_rebind (20_grant_identity.sql,
-- 20_request_identity.sql) and vms.ledger_first_load (20_import.sql) turn a
-- trigger off for a while; the rebinds turned it back on with a plain
-- ENABLE, which reset an ENABLE ALWAYS, ENABLE REPLICA or DISABLE the DBA had
-- set.  All three now save and restore the state with vms._trigger_set,
-- defined in 20_grant_identity.sql, whose own upgrade step (binding the
-- existing grants with the audit trigger off) is the first to use it; their
-- definitions in those fragments, which are 0.3.0's own, call it.

-- The two copies of the upstream password check, vms._viid_upstream_secret_check
-- (0.2.0) and vms._sip_upstream_secret_check (16_cascade.sql), are one
-- function (the same checks and error texts, the table's name giving the
-- context and the hint), used by both triggers.
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
CREATE OR REPLACE TRIGGER viid_upstream_secret_check BEFORE INSERT OR UPDATE ON vms.viid_upstream
    FOR EACH ROW EXECUTE FUNCTION vms._upstream_secret_check();
CREATE OR REPLACE TRIGGER sip_upstream_secret_check BEFORE INSERT OR UPDATE ON vms.sip_upstream
    FOR EACH ROW EXECUTE FUNCTION vms._upstream_secret_check();
DROP FUNCTION vms._viid_upstream_secret_check();
DROP FUNCTION vms._sip_upstream_secret_check();
REVOKE ALL ON FUNCTION vms._upstream_secret_check() FROM PUBLIC;

-- The SubscribeNotificationObject was built in six places (two in the
-- record ingest, 18_viid_server.sql, whose 0.3.0 definitions call this now,
-- and four in vms._viid_subscription_ledger): one function builds it.
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
CREATE OR REPLACE FUNCTION vms._viid_subscription_ledger() RETURNS trigger
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
REVOKE ALL ON FUNCTION vms._viid_notification(text, text, text, text, text, jsonb) FROM PUBLIC;
