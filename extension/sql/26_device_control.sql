-- Device control, recordings and GB/T 28181-2022 devices (issue 17).
--
-- Every command goes through the SIP request queue (vms.sip_request) as the
-- queries of 16_sip.sql do: SQL checks the input, the right and the device,
-- builds the MANSCDP elements of the command (xmlelement, so every value is
-- escaped by PostgreSQL's XML functions) and queues them; the SIP worker
-- wraps them in <Control>/<Query> with CmdType, SN and DeviceID, sends the
-- MESSAGE and records the answer.  Bad input is refused before anything is
-- queued: an unknown command, a speed or preset out of range, a time range
-- that ends before it starts, a device that is offline.

-- The request kinds this file adds, beside whatever kinds the table already
-- allows (the list is read from the constraint, so other areas' kinds stay).
DO $$
DECLARE
    kinds text[];
BEGIN
    SELECT array_agg(DISTINCT m[1]) INTO kinds
      FROM pg_catalog.pg_constraint c
     CROSS JOIN LATERAL regexp_matches(pg_catalog.pg_get_constraintdef(c.oid), '''([a-z_]+)''::text', 'g') m
     WHERE c.conrelid = 'vms.sip_request'::regclass AND c.conname = 'sip_request_kind_check';
    kinds := ARRAY(SELECT DISTINCT k FROM unnest(kinds || '{device_control,device_query,record_info,mansrtsp}'::text[]) k ORDER BY k);
    ALTER TABLE vms.sip_request DROP CONSTRAINT sip_request_kind_check;
    EXECUTE format('ALTER TABLE vms.sip_request ADD CONSTRAINT sip_request_kind_check CHECK (kind IN (%s))',
                   (SELECT string_agg(quote_literal(k), ', ') FROM unnest(kinds) k));
END $$;

-- Device time: GB/T 28181 times carry no zone; devices take the platform's
-- clock from the REGISTER answer's Date, which the worker writes in the
-- server's time zone (the TimeZone setting of postgresql.conf), whatever
-- the calling session has SET.
CREATE FUNCTION vms._device_tz() RETURNS text
    LANGUAGE sql STABLE SET search_path FROM CURRENT
    RETURN coalesce((SELECT s.reset_val FROM pg_catalog.pg_settings s WHERE s.name = 'TimeZone'), 'UTC');
COMMENT ON FUNCTION vms._device_tz() IS 'internal: the time zone device times are written and read in (the server''s TimeZone)';

CREATE FUNCTION vms._device_time(t timestamptz) RETURNS text
    LANGUAGE sql STABLE SET search_path FROM CURRENT
    RETURN to_char(t AT TIME ZONE vms._device_tz(), 'YYYY-MM-DD"T"HH24:MI:SS');
COMMENT ON FUNCTION vms._device_time(timestamptz) IS 'internal: a time as a device reads it (yyyy-MM-ddTHH:mm:ss, server time zone)';

CREATE FUNCTION vms._device_time_parse(t text) RETURNS timestamptz
    LANGUAGE sql STABLE SET search_path FROM CURRENT
    RETURN CASE WHEN t ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?$'
                THEN replace(t, 'T', ' ')::timestamp AT TIME ZONE vms._device_tz() END;
COMMENT ON FUNCTION vms._device_time_parse(text) IS 'internal: a device''s time (no zone, server time zone) as timestamptz; NULL when malformed';

-- PTZCmd (GB/T 28181 appendix A.3): 8 bytes, as 16 hex digits.
--   1 A5h   2 0Fh (version 0 in the high nibble; low nibble (Ah + 5h + 0h) mod 16)
--   3 address low 8 bits (01h)   4 instruction
--   5 data 1   6 data 2   7 data 3 (high nibble) and address high 4 bits (0)
--   8 checksum: (byte 1 + ... + byte 7) mod 256
-- PTZ instructions (A.3.2): 00b zoom-out zoom-in up down left right; byte 5
-- the pan speed, byte 6 the tilt speed, byte 7's high nibble the zoom speed.
-- FI instructions (A.3.3): 0100b iris-close iris-open focus-near focus-far;
-- byte 5 the focus speed, byte 6 the iris speed.
-- Speeds are 1 to 255; the zoom speed (4 bits) is speed / 16, at least 1.
CREATE FUNCTION vms.ptz_cmd(command text, speed integer DEFAULT 128) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    s integer := speed;
    z integer := greatest(speed / 16, 1) * 16;
    b integer[];
BEGIN
    IF speed IS NULL OR speed NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'PTZ speed % is out of range', coalesce(speed::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A speed is 1 (slowest) to 255 (fastest); zoom uses its upper four bits.';
    END IF;
    b := CASE command
        WHEN 'stop'       THEN ARRAY[0, 0, 0, 0]
        WHEN 'right'      THEN ARRAY[1, s, 0, 0]
        WHEN 'left'       THEN ARRAY[2, s, 0, 0]
        WHEN 'down'       THEN ARRAY[4, 0, s, 0]
        WHEN 'up'         THEN ARRAY[8, 0, s, 0]
        WHEN 'down_right' THEN ARRAY[5, s, s, 0]
        WHEN 'down_left'  THEN ARRAY[6, s, s, 0]
        WHEN 'up_right'   THEN ARRAY[9, s, s, 0]
        WHEN 'up_left'    THEN ARRAY[10, s, s, 0]
        WHEN 'zoom_in'    THEN ARRAY[16, 0, 0, z]
        WHEN 'zoom_out'   THEN ARRAY[32, 0, 0, z]
        WHEN 'focus_far'  THEN ARRAY[65, s, 0, 0]
        WHEN 'focus_near' THEN ARRAY[66, s, 0, 0]
        WHEN 'iris_open'  THEN ARRAY[68, 0, s, 0]
        WHEN 'iris_close' THEN ARRAY[72, 0, s, 0]
    END;
    IF b IS NULL THEN
        RAISE EXCEPTION 'unknown PTZ command "%"', command
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Commands are up, down, left, right, up_left, up_right, down_left, down_right, zoom_in, '
                         'zoom_out, focus_near, focus_far, iris_open, iris_close and stop.';
    END IF;
    b := ARRAY[165, 15, 1] || b;
    RETURN (SELECT string_agg(lpad(upper(to_hex(x)), 2, '0'), '' ORDER BY i)
              FROM unnest(b || ((SELECT sum(y) FROM unnest(b) y)::integer % 256)) WITH ORDINALITY u(x, i));
END $$;
COMMENT ON FUNCTION vms.ptz_cmd(text, integer) IS
    'the GB/T 28181 PTZCmd (8 bytes as 16 hex digits, with its checksum) for a pan/tilt/zoom, focus or iris command at a speed of 1-255';

-- Preset instructions (A.3.4): 81h set, 82h call, 83h delete; byte 6 the
-- preset number (1-255).
CREATE FUNCTION vms.ptz_preset_cmd(action text, preset integer) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    b integer[];
BEGIN
    IF preset IS NULL OR preset NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'preset % is out of range', coalesce(preset::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'Presets are numbered 1 to 255.';
    END IF;
    b := ARRAY[165, 15, 1, CASE action WHEN 'set' THEN 129 WHEN 'call' THEN 130 WHEN 'delete' THEN 131 END, 0, preset, 0];
    IF b[4] IS NULL THEN
        RAISE EXCEPTION 'unknown preset action "%"', action
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Actions are set, call and delete.';
    END IF;
    RETURN (SELECT string_agg(lpad(upper(to_hex(x)), 2, '0'), '' ORDER BY i)
              FROM unnest(b || ((SELECT sum(y) FROM unnest(b) y)::integer % 256)) WITH ORDINALITY u(x, i));
END $$;
COMMENT ON FUNCTION vms.ptz_preset_cmd(text, integer) IS
    'the GB/T 28181 PTZCmd (16 hex digits) that sets, calls or deletes a preset (1-255)';

-- GB/T 28181-2016 and -2022 (X-GB-Ver) ------------------------------------------
-- A device says which edition it speaks in the X-GB-Ver header of its
-- REGISTER (2.0 = 2016, 3.0 = 2022; recorded in device_session.gb_version).
-- The commands the 2022 edition added are sent only to a device that
-- registered with 3.0 or later, or whose owner set vms.sip_set_gb_version
-- (for firmware that speaks 2022 without the header); any other device is
-- refused before anything is sent, as a 2016 device would answer them with
-- an error or not at all.

-- The 2022 feature a MANSCDP command uses, or NULL for one 2016 has.
CREATE FUNCTION vms._gb2022_feature(cmd text, body text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN cmd IN ('HomePositionQuery', 'CruiseTrackListQuery', 'CruiseTrackQuery', 'PTZPositionQuery', 'SDCardStatusQuery')
            THEN cmd
        WHEN cmd = 'DeviceControl' THEN substring(body FROM '^\s*<(PTZPreciseCtrl|DeviceUpgrade|FormatSDCard|TargetTrack)[\s>/]')
        WHEN cmd = 'DeviceConfig' THEN substring(body FROM '^\s*<(SnapShotConfig|OSDConfig|VideoRecordPlan|VideoAlarmRecord|PictureMask|FrameMirror|AlarmReport|VideoParamAttribute)[\s>/]')
        WHEN cmd = 'ConfigDownload'
            THEN substring(body FROM '<ConfigType>(VideoParamAttribute|OSDConfig|VideoRecordPlan|VideoAlarmRecord|PictureMask|FrameMirror|AlarmReport|SnapShotConfig)</ConfigType>')
    END;
COMMENT ON FUNCTION vms._gb2022_feature(text, text) IS
    'internal: the GB/T 28181-2022 feature (PTZPreciseCtrl, HomePositionQuery, CruiseTrackListQuery, SnapShotConfig, OSDConfig, VideoRecordPlan...) a command uses; NULL for a 2016 command';

-- The edition a device is treated as: the owner's setting, else its X-GB-Ver.
CREATE FUNCTION vms._device_gb_version(device vms.gbcode) RETURNS text
    LANGUAGE sql STABLE SET search_path FROM CURRENT
    RETURN (SELECT coalesce(s.gb_version_override, s.gb_version) FROM vms.device_session s WHERE s.device_code = device);
COMMENT ON FUNCTION vms._device_gb_version(vms.gbcode) IS
    'internal: the GB/T 28181 version a device is treated as (vms.sip_set_gb_version, else the X-GB-Ver of its REGISTER; NULL: none, taken as 2016)';

CREATE FUNCTION vms._require_gb2022(device vms.gbcode, feature text) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    v text;
BEGIN
    IF feature IS NULL THEN
        RETURN;
    END IF;
    v := vms._device_gb_version(device);
    IF v IS NULL OR v !~ '^[0-9]{1,2}(\.[0-9]{1,2})*$' OR split_part(v, '.', 1)::int < 3 THEN
        RAISE EXCEPTION '% is a GB/T 28181-2022 command and device % speaks %', feature, device,
                        CASE WHEN v IS NULL THEN 'GB/T 28181-2016 (no X-GB-Ver)' ELSE format('X-GB-Ver %s (GB/T 28181-2016 or older)', v) END
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Commands the 2022 edition added go only to devices that register with X-GB-Ver: 3.0 or later; nothing was sent.',
                  HINT = 'If the device does speak 2022 without saying so, the owner can call vms.sip_set_gb_version(device, ''3.0'').';
    END IF;
END $$;
COMMENT ON FUNCTION vms._require_gb2022(vms.gbcode, text) IS
    'internal: refuses (0A000) a GB/T 28181-2022 feature for a device that registered as 2016 or without X-GB-Ver, unless vms.sip_set_gb_version says otherwise';

-- The owner's override for firmware that speaks 2022 and says nothing (or
-- says 2.0): the version taken instead of X-GB-Ver; NULL goes back to it.
CREATE FUNCTION vms.sip_set_gb_version(device vms.gbcode, version text) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF version IS NOT NULL AND version !~ '^[0-9]{1,2}\.[0-9]{1,2}$' THEN
        RAISE EXCEPTION 'GB/T 28181 version "%" is not major.minor', version
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Versions are 2.0 (2016) or 3.0 (2022); NULL uses the device''s X-GB-Ver.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM vms.device d WHERE d.code = device) THEN
        RAISE EXCEPTION 'device % is not in the ledger', device
            USING ERRCODE = 'undefined_object', HINT = 'Add the device to vms.device first.';
    END IF;
    INSERT INTO vms.device_session AS s (device_code, gb_version_override) VALUES (device, version)
    ON CONFLICT (device_code) DO UPDATE SET gb_version_override = EXCLUDED.gb_version_override;
    PERFORM vms.audit('device_gb_version', device::text, jsonb_build_object('version', version));
END $$;
REVOKE ALL ON FUNCTION vms.sip_set_gb_version(vms.gbcode, text) FROM PUBLIC;
COMMENT ON FUNCTION vms.sip_set_gb_version(vms.gbcode, text) IS
    'treat a device as speaking this GB/T 28181 version (3.0 = 2022: its 2022-only commands are sent) whatever its X-GB-Ver says; NULL goes back to the X-GB-Ver of its REGISTER';

-- Queue a control or query for the worker.  target: a channel or a device;
-- the request goes to its device, which must be online.  right: the action
-- checked with vms.exercise_right (which audits it), then the target must be
-- a channel; or NULL for the owner's device-management commands (a channel
-- or a device), then audited here as 'device_control'.
-- root/cmd: the MANSCDP root element and CmdType; body: the elements after
-- DeviceID; answer: whether the device answers with a Response (else the
-- request is done at the MESSAGE's 200).
CREATE FUNCTION vms._device_request(target vms.gbcode, kind text, root text, cmd text, body xml,
                                    answer boolean, right_name text, detail jsonb)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    dev vms.gbcode;
    dev_online boolean;
    rid bigint;
    acting name := pg_catalog.pg_get_userbyid(vms._acting_role());
BEGIN
    IF right_name IS NOT NULL THEN
        PERFORM vms.exercise_right(right_name, target, detail || jsonb_build_object('cmd', cmd));
        -- a right is held on a channel, at the channel's security level: a
        -- device code (an NVR, a platform) has no level of its own and its
        -- channels may be above the grant, so only a channel is addressed
        IF NOT EXISTS (SELECT 1 FROM vms.channel c WHERE c.code = target) THEN
            RAISE EXCEPTION 'no channel %', target
                USING ERRCODE = 'undefined_object',
                      DETAIL = format('The %s right is held on channels; %s is not in vms.channel.', right_name, target),
                      HINT = 'Name one of the device''s channels, not the device.';
        END IF;
        SELECT d.code, d.online INTO dev, dev_online
          FROM vms.channel c JOIN vms.device d ON d.code = c.device_code WHERE c.code = target;
    ELSE
        SELECT d.code, d.online INTO dev, dev_online FROM vms.device d WHERE d.code = target;
        IF NOT FOUND THEN
            SELECT d.code, d.online INTO dev, dev_online
              FROM vms.channel c JOIN vms.device d ON d.code = c.device_code WHERE c.code = target;
        END IF;
    END IF;
    IF dev IS NULL THEN
        RAISE EXCEPTION 'no channel or device %', target
            USING ERRCODE = 'undefined_object', HINT = 'The code must be in vms.channel or vms.device.';
    END IF;
    IF NOT dev_online THEN
        RAISE EXCEPTION 'device % is offline', dev
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('%s %s was not sent.', cmd, detail ->> 'command'),
                  HINT = 'See vms.sip_device_status for why; commands go only to registered, online devices.';
    END IF;
    -- a GB/T 28181-2022 command only to a device that speaks 2022
    PERFORM vms._require_gb2022(dev, vms._gb2022_feature(cmd, body::text));
    IF right_name IS NULL THEN
        PERFORM vms.audit('device_control', target::text, detail || jsonb_build_object('cmd', cmd));
    END IF;
    INSERT INTO vms.sip_request (device_code, kind, params, requested_by)
    VALUES (dev, kind, jsonb_build_object('target', target::text, 'root', root, 'cmd', cmd,
                                          'xml', coalesce(body::text, ''), 'answer', answer) || detail,
            acting)
    RETURNING id INTO rid;
    PERFORM vms._wake_worker('sip');
    RETURN rid;
END $$;
COMMENT ON FUNCTION vms._device_request(vms.gbcode, text, text, text, xml, boolean, text, jsonb) IS
    'internal: check, audit and queue a DeviceControl/DeviceConfig/query MESSAGE for the SIP worker';

-- PTZ and presets: the 'ptz' right on the channel, checked and audited.
-- SECURITY DEFINER: it queues into vms.sip_request (the owner's) for the
-- role the session acts as, after vms.exercise_right has checked that role's
-- grant on the channel and audited the use; the caller names only the
-- channel and the command, which is encoded here, never passed through.
CREATE FUNCTION vms.ptz(channel vms.gbcode, command text, speed integer DEFAULT 128) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    cmd text := vms.ptz_cmd(command, speed);     -- refuses a bad command or speed before anything else
BEGIN
    RETURN vms._device_request(channel, 'device_control', 'Control', 'DeviceControl', xmlelement(name "PTZCmd", cmd),
                               false, 'ptz', jsonb_build_object('command', command, 'speed', speed, 'ptz_cmd', cmd));
END $$;
COMMENT ON FUNCTION vms.ptz(vms.gbcode, text, integer) IS
    'turn a camera: pan/tilt/zoom, focus, iris or stop (vms.ptz_cmd) at a speed of 1-255; checked (ptz right) and audited; returns the SIP request id';

-- SECURITY DEFINER as vms.ptz.
CREATE FUNCTION vms.ptz_preset(channel vms.gbcode, action text, preset integer) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    cmd text := vms.ptz_preset_cmd(action, preset);
BEGIN
    RETURN vms._device_request(channel, 'device_control', 'Control', 'DeviceControl', xmlelement(name "PTZCmd", cmd),
                               false, 'ptz', jsonb_build_object('command', 'preset_' || action, 'preset', preset,
                                                                'ptz_cmd', cmd));
END $$;
COMMENT ON FUNCTION vms.ptz_preset(vms.gbcode, text, integer) IS
    'set, call or delete a preset (1-255) of a camera; checked (ptz right) and audited; returns the SIP request id';

-- SECURITY DEFINER as vms.ptz.
CREATE FUNCTION vms.ptz_home(channel vms.gbcode, enabled boolean, preset integer DEFAULT 1,
                             reset_s integer DEFAULT 60) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF enabled IS NULL OR preset IS NULL OR preset NOT BETWEEN 1 AND 255 OR reset_s IS NULL OR reset_s NOT BETWEEN 1 AND 86400 THEN
        RAISE EXCEPTION 'home position % (preset %, after % s) is out of range', enabled, preset, reset_s
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The home position is a preset of 1 to 255 the camera returns to after 1 to 86400 idle seconds.';
    END IF;
    RETURN vms._device_request(channel, 'device_control', 'Control', 'DeviceControl',
                               xmlelement(name "HomePosition",
                                          xmlelement(name "Enabled", CASE WHEN enabled THEN 1 ELSE 0 END),
                                          xmlelement(name "ResetTime", reset_s),
                                          xmlelement(name "PresetIndex", preset)),
                               true, 'ptz', jsonb_build_object('command', 'home_position', 'enabled', enabled,
                                                               'preset', preset, 'reset_s', reset_s));
END $$;
COMMENT ON FUNCTION vms.ptz_home(vms.gbcode, boolean, integer, integer) IS
    'set or clear a camera''s home position (看守位: a preset it returns to after reset_s idle seconds); checked (ptz right) and audited; returns the SIP request id';

-- GB/T 28181-2022 PTZPreciseCtrl. SECURITY DEFINER as vms.ptz.
CREATE FUNCTION vms.ptz_precise(channel vms.gbcode, pan double precision, tilt double precision,
                                zoom double precision) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF pan IS NULL OR NOT (pan >= 0 AND pan < 360) OR tilt IS NULL OR NOT (tilt BETWEEN -90 AND 90)
       OR zoom IS NULL OR NOT (zoom BETWEEN 1 AND 1000) THEN
        RAISE EXCEPTION 'precise position pan % tilt % zoom % is out of range', pan, tilt, zoom
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Pan is 0 to 360 degrees (excluded), tilt -90 to 90 degrees, zoom 1 to 1000 times.';
    END IF;
    RETURN vms._device_request(channel, 'device_control', 'Control', 'DeviceControl',
                               xmlelement(name "PTZPreciseCtrl",
                                          xmlelement(name "Pan", round(pan::numeric, 2)),
                                          xmlelement(name "Tilt", round(tilt::numeric, 2)),
                                          xmlelement(name "Zoom", round(zoom::numeric, 2))),
                               true, 'ptz', jsonb_build_object('command', 'precise', 'pan', pan, 'tilt', tilt, 'zoom', zoom));
END $$;
COMMENT ON FUNCTION vms.ptz_precise(vms.gbcode, double precision, double precision, double precision) IS
    'GB/T 28181-2022 precise PTZ (PTZPreciseCtrl): move to pan/tilt degrees and zoom; checked (ptz right) and audited; returns the SIP request id';

-- Device management (the owner's, audited): guard, recording, reboot, alarm reset, configuration.
CREATE FUNCTION vms.device_guard(target vms.gbcode, arm boolean) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF arm IS NULL THEN
        RAISE EXCEPTION 'arm must be true or false' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN vms._device_request(target, 'device_control', 'Control', 'DeviceControl',
                               xmlelement(name "GuardCmd", CASE WHEN arm THEN 'SetGuard' ELSE 'ResetGuard' END),
                               true, NULL, jsonb_build_object('command', CASE WHEN arm THEN 'SetGuard' ELSE 'ResetGuard' END));
END $$;
COMMENT ON FUNCTION vms.device_guard(vms.gbcode, boolean) IS
    'arm (布防, SetGuard) or disarm (撤防, ResetGuard) a device or channel; many devices send alarms only when armed; returns the SIP request id';

CREATE FUNCTION vms.device_record(channel vms.gbcode, start boolean) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF start IS NULL THEN
        RAISE EXCEPTION 'start must be true or false' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN vms._device_request(channel, 'device_control', 'Control', 'DeviceControl',
                               xmlelement(name "RecordCmd", CASE WHEN start THEN 'Record' ELSE 'StopRecord' END),
                               true, NULL, jsonb_build_object('command', CASE WHEN start THEN 'Record' ELSE 'StopRecord' END));
END $$;
COMMENT ON FUNCTION vms.device_record(vms.gbcode, boolean) IS
    'start (Record) or stop (StopRecord) a channel''s recording on its device; returns the SIP request id';

CREATE FUNCTION vms.device_teleboot(device vms.gbcode) RETURNS bigint
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms._device_request(device, 'device_control', 'Control', 'DeviceControl', xmlelement(name "TeleBoot", 'Boot'),
                               false, NULL, jsonb_build_object('command', 'TeleBoot'));
COMMENT ON FUNCTION vms.device_teleboot(vms.gbcode) IS 'reboot a device remotely (TeleBoot); the device does not answer; returns the SIP request id';

CREATE FUNCTION vms.device_alarm_reset(target vms.gbcode, alarm_method integer DEFAULT NULL,
                                       alarm_type integer DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF alarm_method NOT BETWEEN 1 AND 7 OR alarm_type NOT BETWEEN 1 AND 99 OR (alarm_type IS NOT NULL AND alarm_method IS NULL) THEN
        RAISE EXCEPTION 'alarm method % type % is out of range', alarm_method, alarm_type
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'AlarmMethod is 1 to 7 and AlarmType a number within it; leave both NULL to reset every alarm.';
    END IF;
    RETURN vms._device_request(target, 'device_control', 'Control', 'DeviceControl',
                               xmlconcat(xmlelement(name "AlarmCmd", 'ResetAlarm'),
                                         CASE WHEN alarm_method IS NOT NULL THEN
                                             xmlelement(name "Info", xmlelement(name "AlarmMethod", alarm_method),
                                                        CASE WHEN alarm_type IS NOT NULL THEN xmlelement(name "AlarmType", alarm_type) END)
                                         END),
                               true, NULL, jsonb_strip_nulls(jsonb_build_object('command', 'ResetAlarm',
                                                                                 'alarm_method', alarm_method, 'alarm_type', alarm_type)));
END $$;
COMMENT ON FUNCTION vms.device_alarm_reset(vms.gbcode, integer, integer) IS
    'reset a device''s alarm (AlarmCmd ResetAlarm), optionally of one AlarmMethod/AlarmType; returns the SIP request id';

CREATE FUNCTION vms.device_config_download(device vms.gbcode, config_type text) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF config_type IS NULL OR config_type NOT IN ('BasicParam', 'VideoParamOpt', 'VideoParamAttribute', 'OSDConfig',
                                                   'VideoRecordPlan', 'VideoAlarmRecord', 'PictureMask', 'FrameMirror',
                                                   'AlarmReport', 'SnapShotConfig', 'SVACEncodeConfig', 'SVACDecodeConfig') THEN
        RAISE EXCEPTION 'unknown configuration type "%"', config_type
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Types are BasicParam, VideoParamOpt, SVACEncodeConfig, SVACDecodeConfig and, from GB/T 28181-2022, '
                         'VideoParamAttribute, OSDConfig, VideoRecordPlan, VideoAlarmRecord, PictureMask, FrameMirror, AlarmReport, SnapShotConfig.';
    END IF;
    RETURN vms._device_request(device, 'device_query', 'Query', 'ConfigDownload', xmlelement(name "ConfigType", config_type),
                               true, NULL, jsonb_build_object('command', 'ConfigDownload', 'config_type', config_type));
END $$;
COMMENT ON FUNCTION vms.device_config_download(vms.gbcode, text) IS
    'read a device''s configuration (ConfigDownload: BasicParam, VideoParamOpt, 2022''s OSDConfig, VideoRecordPlan...); the answer lands in the request result; a BasicParam''s HeartBeatInterval/Count become the device''s keepalive parameters';

-- DeviceConfig: BasicParam (Name, Expiration, HeartBeatInterval,
-- HeartBeatCount) or SnapShotConfig (SnapNum, Interval, UploadURL, SessionID).
CREATE FUNCTION vms.device_config(device vms.gbcode, config jsonb) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    section text;
    allowed text[];
    bad text;
BEGIN
    IF jsonb_typeof(config) IS DISTINCT FROM 'object' OR (SELECT count(*) FROM jsonb_object_keys(config)) <> 1 THEN
        RAISE EXCEPTION 'a device configuration is one object: {"BasicParam": {...}} or {"SnapShotConfig": {...}}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    section := (SELECT k FROM jsonb_object_keys(config) k);
    allowed := CASE section WHEN 'BasicParam' THEN '{Name,Expiration,HeartBeatInterval,HeartBeatCount}'::text[]
                            WHEN 'SnapShotConfig' THEN '{SnapNum,Interval,UploadURL,SessionID}'::text[] END;
    IF allowed IS NULL OR jsonb_typeof(config -> section) <> 'object' THEN
        RAISE EXCEPTION 'unknown configuration "%"', section
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Configure BasicParam or SnapShotConfig.';
    END IF;
    SELECT k INTO bad FROM jsonb_each(config -> section) e(k, v)
     WHERE k <> ALL (allowed) OR jsonb_typeof(v) NOT IN ('string', 'number')
        OR (k IN ('Expiration', 'HeartBeatInterval', 'HeartBeatCount', 'SnapNum', 'Interval')
            AND NOT (v #>> '{}' ~ '^[0-9]{1,6}$'))
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'configuration item "%" of % is unknown or not a valid value', bad, section
            USING ERRCODE = 'invalid_parameter_value', HINT = format('%s takes %s.', section, array_to_string(allowed, ', '));
    END IF;
    RETURN vms._device_request(device, 'device_control', 'Control', 'DeviceConfig',
                               (SELECT format('<%1$s>%2$s</%1$s>', section,
                                              string_agg(format('<%1$s>%2$s</%1$s>', k,
                                                                replace(replace(replace(v #>> '{}', '&', '&amp;'), '<', '&lt;'), '>', '&gt;')),
                                                         '' ORDER BY array_position(allowed, k)))::xml
                                  FROM jsonb_each(config -> section) e(k, v)),
                               true, NULL, jsonb_build_object('command', 'DeviceConfig', 'config', config));
END $$;
COMMENT ON FUNCTION vms.device_config(vms.gbcode, jsonb) IS
    'configure a device (DeviceConfig): {"BasicParam": {Name, Expiration, HeartBeatInterval, HeartBeatCount}} or {"SnapShotConfig": {SnapNum, Interval, UploadURL, SessionID}}; returns the SIP request id';

-- Queries answered with one Response: presets, and 2022's home position and cruise tracks.
CREATE FUNCTION vms.sip_query_presets(channel vms.gbcode) RETURNS bigint
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms._device_request(channel, 'device_query', 'Query', 'PresetQuery', NULL, true, NULL,
                               jsonb_build_object('command', 'PresetQuery'));
COMMENT ON FUNCTION vms.sip_query_presets(vms.gbcode) IS 'ask a camera for its presets (PresetQuery); the PresetList lands in the request result; returns the request id';

CREATE FUNCTION vms.sip_query_home_position(channel vms.gbcode) RETURNS bigint
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms._device_request(channel, 'device_query', 'Query', 'HomePositionQuery', NULL, true, NULL,
                               jsonb_build_object('command', 'HomePositionQuery'));
COMMENT ON FUNCTION vms.sip_query_home_position(vms.gbcode) IS 'ask a GB/T 28181-2022 camera for its home position (HomePositionQuery); returns the request id';

CREATE FUNCTION vms.sip_query_cruise_tracks(channel vms.gbcode) RETURNS bigint
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms._device_request(channel, 'device_query', 'Query', 'CruiseTrackListQuery', NULL, true, NULL,
                               jsonb_build_object('command', 'CruiseTrackListQuery'));
COMMENT ON FUNCTION vms.sip_query_cruise_tracks(vms.gbcode) IS 'ask a GB/T 28181-2022 camera for its cruise tracks (CruiseTrackListQuery); returns the request id';

-- Recordings (录像) -------------------------------------------------------------

-- What devices answered to RecordInfo, one row per record file.
CREATE TABLE vms.channel_record (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_code   vms.gbcode NOT NULL REFERENCES vms.channel (code) ON DELETE CASCADE,
    device_code    vms.gbcode NOT NULL,
    start_time     timestamptz NOT NULL,
    end_time       timestamptz NOT NULL CHECK (end_time >= start_time),
    record_type    text,
    secrecy        smallint,
    file_path      text,
    file_size      bigint,
    stream_number  smallint,
    recorder_id    text,
    name           text,
    address        text,
    request_id     bigint,
    reported_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX channel_record_key ON vms.channel_record (channel_code, start_time, end_time, file_path, stream_number)
    NULLS NOT DISTINCT;
COMMENT ON TABLE vms.channel_record IS
    'recordings a device reported (RecordInfo): period, type (time/alarm/manual), secrecy, file path, size, stream number';

-- Expected recording: a channel without rows records around the clock;
-- with rows, only within them (server time zone, 0 = Sunday).
CREATE TABLE vms.recording_plan (
    channel_code  vms.gbcode NOT NULL REFERENCES vms.channel (code) ON DELETE CASCADE,
    weekday       smallint NOT NULL CHECK (weekday BETWEEN 0 AND 6),
    start_time    time NOT NULL,
    end_time      time NOT NULL,
    PRIMARY KEY (channel_code, weekday, start_time),
    CHECK (end_time > start_time OR end_time = '00:00')
);
COMMENT ON TABLE vms.recording_plan IS
    'when a channel should record (weekday 0 = Sunday, times in the server time zone, end 00:00 = midnight); a channel without rows should record continuously';

CREATE TABLE vms.recording_check (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_code  vms.gbcode NOT NULL REFERENCES vms.channel (code) ON DELETE CASCADE,
    period        tstzrange NOT NULL,
    expected_s    double precision NOT NULL,
    recorded_s    double precision NOT NULL,
    gaps          integer NOT NULL,
    alarm_id      bigint,
    checked_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recording_check_channel_idx ON vms.recording_check (channel_code, checked_at);
COMMENT ON TABLE vms.recording_check IS
    'recording-integrity checks (录像完整性): per channel and period, seconds expected and recorded, gaps found, the alarm raised';

CREATE TABLE vms.recording_gap (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_code  vms.gbcode NOT NULL REFERENCES vms.channel (code) ON DELETE CASCADE,
    gap           tstzrange NOT NULL,
    check_id      bigint NOT NULL REFERENCES vms.recording_check (id) ON DELETE CASCADE,
    found_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recording_gap_channel_idx ON vms.recording_gap (channel_code, lower(gap));
-- (a delete of the referenced row finds these rows by the index, not by a scan)
CREATE INDEX recording_gap_check_idx ON vms.recording_gap (check_id);
COMMENT ON TABLE vms.recording_gap IS 'periods a channel should have recorded and has no record for (录像断点), as the last check found them';

CREATE FUNCTION vms._check_period(from_time timestamptz, to_time timestamptz) RETURNS void
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF from_time IS NULL OR to_time IS NULL OR to_time <= from_time THEN
        RAISE EXCEPTION 'time range % to % ends before it starts', from_time, to_time
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'The end of a period must come after its start.';
    END IF;
    IF NOT isfinite(from_time) OR NOT isfinite(to_time) THEN
        RAISE EXCEPTION 'time range % to % is not finite', from_time, to_time
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'A period needs a finite start and end.';
    END IF;
END $$;
COMMENT ON FUNCTION vms._check_period(timestamptz, timestamptz) IS 'internal: a period is finite and ends after it starts';

CREATE FUNCTION vms.sip_query_records(channel vms.gbcode, from_time timestamptz, to_time timestamptz,
                                      record_type text DEFAULT 'all') RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM vms._check_period(from_time, to_time);
    IF record_type IS NULL OR record_type NOT IN ('all', 'time', 'alarm', 'manual') THEN
        RAISE EXCEPTION 'unknown record type "%"', record_type
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Types are all, time, alarm and manual.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM vms.channel c WHERE c.code = channel) THEN
        RAISE EXCEPTION 'channel % is not in the ledger', channel USING ERRCODE = 'undefined_object';
    END IF;
    RETURN vms._device_request(channel, 'record_info', 'Query', 'RecordInfo',
                               xmlconcat(xmlelement(name "StartTime", vms._device_time(from_time)),
                                         xmlelement(name "EndTime", vms._device_time(to_time)),
                                         xmlelement(name "Secrecy", 0),
                                         xmlelement(name "Type", record_type)),
                               true, NULL, jsonb_build_object('command', 'RecordInfo', 'from', from_time, 'to', to_time,
                                                              'type', record_type));
END $$;
COMMENT ON FUNCTION vms.sip_query_records(vms.gbcode, timestamptz, timestamptz, text) IS
    'ask a channel''s device for its recordings in a period (RecordInfo, paged with SumNum); they land in vms.channel_record; returns the request id';

-- Worker side: a finished RecordInfo query.  answer: {request, state,
-- progress, items: [RecordList items], error}.  The period queried is
-- replaced by what the device listed; each item is checked on its own.
CREATE FUNCTION vms._sip_records_result(device vms.gbcode, answer jsonb) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    rid bigint := (answer ->> 'request')::bigint;
    req vms.sip_request;
    item jsonb;
    st timestamptz;
    en timestamptz;
    ch vms.gbcode;
    n integer := 0;
    rejected jsonb := '[]';
BEGIN
    SELECT * INTO req FROM vms.sip_request r WHERE r.id = rid;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    ch := (req.params ->> 'target')::vms.gbcode;
    IF answer ->> 'state' IN ('done', 'partial') THEN
        DELETE FROM vms.channel_record r
         WHERE r.channel_code = ch
           AND r.start_time >= (req.params ->> 'from')::timestamptz AND r.end_time <= (req.params ->> 'to')::timestamptz;
    END IF;
    FOR item IN SELECT i FROM jsonb_array_elements(coalesce(answer -> 'items', '[]')) i LOOP
        BEGIN
            st := vms._device_time_parse(item ->> 'StartTime');
            en := vms._device_time_parse(item ->> 'EndTime');
            IF st IS NULL OR en IS NULL OR en < st THEN
                RAISE EXCEPTION 'StartTime/EndTime missing, malformed or reversed' USING ERRCODE = 'invalid_datetime_format';
            END IF;
            IF item ->> 'DeviceID' IS DISTINCT FROM ch::text AND item ? 'DeviceID' THEN
                RAISE EXCEPTION 'record of another channel' USING ERRCODE = 'invalid_parameter_value';
            END IF;
            INSERT INTO vms.channel_record AS r (channel_code, device_code, start_time, end_time, record_type, secrecy,
                                                 file_path, file_size, stream_number, recorder_id, name, address,
                                                 request_id)
            VALUES (ch, device, st, en, left(item ->> 'Type', 20),
                    CASE WHEN item ->> 'Secrecy' ~ '^[0-9]{1,4}$' THEN (item ->> 'Secrecy')::smallint END,
                    left(item ->> 'FilePath', 1000),
                    CASE WHEN item ->> 'FileSize' ~ '^[0-9]{1,18}$' THEN (item ->> 'FileSize')::bigint END,
                    CASE WHEN item ->> 'StreamNumber' ~ '^[0-9]{1,4}$' THEN (item ->> 'StreamNumber')::smallint END,
                    left(item ->> 'RecorderID', 40), left(item ->> 'Name', 200), left(item ->> 'Address', 200), rid)
            ON CONFLICT (channel_code, start_time, end_time, file_path, stream_number) DO UPDATE
               SET record_type = EXCLUDED.record_type, secrecy = EXCLUDED.secrecy, file_size = EXCLUDED.file_size,
                   recorder_id = EXCLUDED.recorder_id, name = EXCLUDED.name, address = EXCLUDED.address,
                   request_id = EXCLUDED.request_id, reported_at = now();
            n := n + 1;
        EXCEPTION WHEN OTHERS THEN
            rejected := rejected || jsonb_build_object('item', item, 'reason', SQLERRM);
        END;
    END LOOP;
    PERFORM vms._sip_request_update(rid, answer ->> 'state', answer -> 'progress',
                                    jsonb_build_object('records', n, 'rejected', rejected), answer ->> 'error');
END $$;
COMMENT ON FUNCTION vms._sip_records_result(vms.gbcode, jsonb) IS
    'internal: a finished RecordInfo query: the records into vms.channel_record (replacing the period''s), the request closed with counts and rejects';

-- Worker side: the outcome of a DeviceControl, DeviceConfig or one-answer
-- query.  answer: {request, state, answer: the Response as JSON, error}, as
-- json, so that elements a Response repeats (2022's VideoRecordPlan has a
-- RecordSchedule per weekday, a TimeSegment per period) are all there.  A
-- Response whose Result is not OK fails the request with the device's
-- reason; a BasicParam's keepalive interval and count become the session's;
-- a channel's VideoRecordPlan (recording enabled) becomes its
-- vms.recording_plan.
CREATE FUNCTION vms._sip_control_result(device vms.gbcode, answer json) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    doc jsonb := (answer -> 'answer')::jsonb;
    st text := coalesce(answer ->> 'state', 'done');
    err text := answer ->> 'error';
    bp jsonb := doc -> 'BasicParam';
    plan json := answer -> 'answer' -> 'VideoRecordPlan';
    target text := (SELECT r.params ->> 'target' FROM vms.sip_request r WHERE r.id = (answer ->> 'request')::bigint);
BEGIN
    IF st = 'done' AND upper(coalesce(doc ->> 'Result', 'OK')) <> 'OK' THEN
        st := 'failed';
        err := 'the device answered ' || left(doc ->> 'Result', 20)
               || coalesce(': ' || left(coalesce(doc ->> 'Reason', doc ->> 'Info', doc ->> 'ErrorCode'), 200), '');
    END IF;
    IF st = 'done' AND jsonb_typeof(bp) = 'object'
       AND (bp ->> 'HeartBeatInterval' ~ '^[0-9]{1,4}$' OR bp ->> 'HeartBeatCount' ~ '^[0-9]{1,3}$') THEN
        INSERT INTO vms.device_session AS s (device_code, keepalive_interval, keepalive_count)
        SELECT device, x.i, x.c
          FROM (SELECT CASE WHEN bp ->> 'HeartBeatInterval' ~ '^[0-9]{1,4}$'
                             AND (bp ->> 'HeartBeatInterval')::int BETWEEN 5 AND 3600 THEN (bp ->> 'HeartBeatInterval')::int END AS i,
                       CASE WHEN bp ->> 'HeartBeatCount' ~ '^[0-9]{1,3}$'
                             AND (bp ->> 'HeartBeatCount')::int BETWEEN 1 AND 100 THEN (bp ->> 'HeartBeatCount')::int END AS c) x
         WHERE EXISTS (SELECT 1 FROM vms.device d WHERE d.code = device)
        ON CONFLICT (device_code) DO UPDATE
           SET keepalive_interval = coalesce(EXCLUDED.keepalive_interval, s.keepalive_interval),
               keepalive_count = coalesce(EXCLUDED.keepalive_count, s.keepalive_count);
    END IF;
    -- WeekDayNum 1 (Monday) to 7 (Sunday); a segment ending 23:59:59 ends at midnight
    IF st = 'done' AND json_typeof(plan) = 'object' AND plan ->> 'RecordEnable' = '1'
       AND EXISTS (SELECT 1 FROM vms.channel c WHERE c.code::text = target AND c.device_code = device) THEN
        DELETE FROM vms.recording_plan p WHERE p.channel_code::text = target;
        INSERT INTO vms.recording_plan (channel_code, weekday, start_time, end_time)
        SELECT DISTINCT ON (w.wd, w.st) target::vms.gbcode, w.wd, w.st, w.en
          FROM (SELECT (d.v ->> 'WeekDayNum')::int % 7 AS wd,
                       make_time((g.seg ->> 'StartHour')::int, (g.seg ->> 'StartMin')::int, (g.seg ->> 'StartSec')::int) AS st,
                       CASE WHEN (g.seg ->> 'StopHour', g.seg ->> 'StopMin', g.seg ->> 'StopSec') = ('23', '59', '59') THEN time '00:00'
                            ELSE make_time((g.seg ->> 'StopHour')::int, (g.seg ->> 'StopMin')::int, (g.seg ->> 'StopSec')::int) END AS en
                  FROM json_each(plan) d(k, v)
                 CROSS JOIN LATERAL json_each(CASE WHEN json_typeof(d.v) = 'object' THEN d.v ELSE '{}' END) g(k, seg)
                 WHERE d.k = 'RecordSchedule' AND d.v ->> 'WeekDayNum' ~ '^[1-7]$' AND g.k = 'TimeSegment'
                   AND json_typeof(g.seg) = 'object'
                   AND g.seg ->> 'StartHour' ~ '^([01]?[0-9]|2[0-3])$' AND g.seg ->> 'StopHour' ~ '^([01]?[0-9]|2[0-3])$'
                   AND g.seg ->> 'StartMin' ~ '^[0-5]?[0-9]$' AND g.seg ->> 'StopMin' ~ '^[0-5]?[0-9]$'
                   AND g.seg ->> 'StartSec' ~ '^[0-5]?[0-9]$' AND g.seg ->> 'StopSec' ~ '^[0-5]?[0-9]$') w
         WHERE w.en > w.st OR w.en = '00:00'
         ORDER BY w.wd, w.st, w.en DESC;
    END IF;
    PERFORM vms._sip_request_update((answer ->> 'request')::bigint, st, (answer -> 'progress')::jsonb, doc, err);
END $$;
COMMENT ON FUNCTION vms._sip_control_result(vms.gbcode, json) IS
    'internal: a device''s answer to a control, configuration or query: request done, or failed with the device''s reason; BasicParam keepalive settings applied to the session; a channel''s VideoRecordPlan into vms.recording_plan';

-- Recording integrity (录像完整性) ------------------------------------------------

-- The periods a channel should have recorded within [from_time, to_time).
CREATE FUNCTION vms.recording_expected(channel vms.gbcode, from_time timestamptz, to_time timestamptz)
    RETURNS tstzmultirange
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM vms.recording_plan p WHERE p.channel_code = channel)
                THEN tstzmultirange(tstzrange(from_time, to_time))
                ELSE coalesce((
                    SELECT range_agg(tstzrange((d + p.start_time) AT TIME ZONE vms._device_tz(),
                                               (d + CASE WHEN p.end_time = '00:00' THEN interval '1 day'
                                                         ELSE p.end_time - time '00:00' END) AT TIME ZONE vms._device_tz())
                                     * tstzrange(from_time, to_time))
                      FROM generate_series(date_trunc('day', from_time AT TIME ZONE vms._device_tz()),
                                           to_time AT TIME ZONE vms._device_tz(), interval '1 day') d
                      JOIN vms.recording_plan p ON p.channel_code = channel AND p.weekday = extract(dow FROM d)),
                    '{}'::tstzmultirange)
           END
$$;
COMMENT ON FUNCTION vms.recording_expected(vms.gbcode, timestamptz, timestamptz) IS
    'the periods a channel should have recorded in [from, to): all of it, or its vms.recording_plan windows';

-- Check a channel's recordings against what it should have recorded: every
-- gap of at least min_gap is stored (replacing the period's earlier ones) and
-- raises a recording_gap alarm (level III); a check without gaps clears it.
CREATE FUNCTION vms.recording_check(channel vms.gbcode, from_time timestamptz, to_time timestamptz,
                                    min_gap interval DEFAULT '1 minute')
    RETURNS vms.recording_check
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    expected tstzmultirange;
    missing tstzmultirange;
    r vms.recording_check;
BEGIN
    PERFORM vms._check_period(from_time, to_time);
    IF min_gap IS NULL OR min_gap < interval '0' THEN
        RAISE EXCEPTION 'minimum gap % is negative', min_gap USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM vms.channel c WHERE c.code = channel) THEN
        RAISE EXCEPTION 'channel % is not in the ledger', channel USING ERRCODE = 'undefined_object';
    END IF;
    expected := vms.recording_expected(channel, from_time, to_time);
    missing := expected - coalesce((SELECT range_agg(tstzrange(cr.start_time, cr.end_time))
                                      FROM vms.channel_record cr
                                     WHERE cr.channel_code = channel
                                       AND cr.start_time < to_time AND cr.end_time > from_time), '{}');
    INSERT INTO vms.recording_check (channel_code, period, expected_s, recorded_s, gaps)
    SELECT channel, tstzrange(from_time, to_time),
           coalesce((SELECT sum(extract(epoch FROM upper(e) - lower(e))) FROM unnest(expected) e), 0),
           coalesce((SELECT sum(extract(epoch FROM upper(e) - lower(e))) FROM unnest(expected) e), 0)
           - coalesce((SELECT sum(extract(epoch FROM upper(m) - lower(m))) FROM unnest(missing) m), 0),
           (SELECT count(*) FROM unnest(missing) m WHERE upper(m) - lower(m) >= min_gap)
    RETURNING * INTO r;
    DELETE FROM vms.recording_gap g WHERE g.channel_code = channel AND g.gap <@ tstzrange(from_time, to_time);
    INSERT INTO vms.recording_gap (channel_code, gap, check_id)
    SELECT channel, m, r.id FROM unnest(missing) m WHERE upper(m) - lower(m) >= min_gap ORDER BY lower(m);
    IF r.gaps > 0 THEN
        r.alarm_id := vms.alarm_raise(channel, 'recording_gap', 3::smallint, 'inspection',
                                      jsonb_build_object('check', r.id, 'gaps', r.gaps,
                                                         'missing_s', round((r.expected_s - r.recorded_s)::numeric, 1),
                                                         'from', from_time, 'to', to_time,
                                                         'first_gap', (SELECT min(lower(m)) FROM unnest(missing) m
                                                                        WHERE upper(m) - lower(m) >= min_gap)));
        UPDATE vms.recording_check c SET alarm_id = r.alarm_id WHERE c.id = r.id;
    ELSE
        PERFORM vms.alarm_clear(channel, 'recording_gap', 'recording complete in the last check');
    END IF;
    RETURN r;
END $$;
COMMENT ON FUNCTION vms.recording_check(vms.gbcode, timestamptz, timestamptz, interval) IS
    'recording integrity of a channel in [from, to): gaps (of at least min_gap) against its expected recording (continuous, or vms.recording_plan) stored in vms.recording_gap, a recording_gap alarm raised, or cleared when complete';

-- 录像完整率 per management unit: recorded / expected seconds over the
-- latest check of each channel whose period lies within [from, to).
CREATE FUNCTION vms.recording_integrity(from_time timestamptz, to_time timestamptz)
    RETURNS TABLE (unit_id bigint, unit_name text, channels bigint, expected_s double precision,
                   recorded_s double precision, gaps bigint, integrity double precision)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT c.unit_id, u.name, count(*), sum(k.expected_s), sum(k.recorded_s), sum(k.gaps),
           CASE WHEN sum(k.expected_s) > 0 THEN round((sum(k.recorded_s) / sum(k.expected_s))::numeric, 4)::float8 END
      FROM (SELECT DISTINCT ON (rc.channel_code, rc.period) rc.*
              FROM vms.recording_check rc
             WHERE rc.period <@ tstzrange(from_time, to_time)
             ORDER BY rc.channel_code, rc.period, rc.checked_at DESC, rc.id DESC) k
      JOIN vms.channel c ON c.code = k.channel_code
      LEFT JOIN vms.org_unit u ON u.id = c.unit_id
     GROUP BY c.unit_id, u.name
     ORDER BY c.unit_id NULLS LAST
$$;
COMMENT ON FUNCTION vms.recording_integrity(timestamptz, timestamptz) IS
    '录像完整率 per management unit: recorded over expected seconds of the recording checks within [from, to), with channel and gap counts';

-- Recording checks of inspection plans (check "recording") ------------------------
-- A round of a plan with the check asks each channel in scope for its
-- recordings (RecordInfo) over the period since the plan last checked it
-- (the first time: the plan's period, or a day for a cron plan; at most 7
-- days), up to the round's start; the queue is asynchronous, so a later
-- pass of the scheduler (every inspector loop) collects the answers and runs
-- vms.recording_check on each channel whose device answered in full.
CREATE TABLE vms.inspection_recording (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id        bigint NOT NULL REFERENCES vms.inspection_run (id) ON DELETE CASCADE,
    plan_id       bigint NOT NULL REFERENCES vms.inspection_plan (id) ON DELETE CASCADE,
    channel_code  vms.gbcode NOT NULL REFERENCES vms.channel (code) ON DELETE CASCADE,
    period        tstzrange NOT NULL,
    request_id    bigint,
    state         text NOT NULL DEFAULT 'queried' CHECK (state IN ('queried', 'checked', 'failed')),
    check_id      bigint REFERENCES vms.recording_check (id) ON DELETE SET NULL,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX inspection_recording_open_idx ON vms.inspection_recording (id) WHERE state = 'queried';
CREATE INDEX inspection_recording_plan_idx ON vms.inspection_recording (plan_id, channel_code, upper(period));
-- (a delete of the referenced row finds these rows by the index, not by a scan)
CREATE INDEX inspection_recording_channel_idx ON vms.inspection_recording (channel_code);
CREATE INDEX inspection_recording_run_idx ON vms.inspection_recording (run_id);
CREATE INDEX inspection_recording_check_idx ON vms.inspection_recording (check_id) WHERE check_id IS NOT NULL;
COMMENT ON TABLE vms.inspection_recording IS
    'the recording checks of inspection rounds (check "recording"): per channel the period asked (RecordInfo request), then checked (vms.recording_check) or failed with the reason';

-- A round's recording part: one RecordInfo query per channel in scope.  A
-- channel whose device is offline (or any refusal) fails alone, with the
-- reason.  Returns the number of channels queried or failed (a channel
-- checked up to the round's start already is skipped).
CREATE FUNCTION vms._inspection_recording_start(run bigint, p vms.inspection_plan, started timestamptz)
    RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    ch vms.gbcode;
    upto timestamptz := date_trunc('second', started);
    since timestamptz;
    rid bigint;
    n integer := 0;
BEGIN
    FOR ch IN SELECT s FROM vms.inspection_scope_channels(p.scope) s ORDER BY s LOOP
        SELECT max(upper(r.period)) INTO since FROM vms.inspection_recording r
         WHERE r.plan_id = p.id AND r.channel_code = ch AND r.state = 'checked';
        since := greatest(coalesce(since, upto - make_interval(secs => coalesce(p.every_s, 86400))),
                          upto - interval '7 days');
        CONTINUE WHEN since >= upto;
        n := n + 1;
        BEGIN
            rid := vms.sip_query_records(ch, since, upto);
            INSERT INTO vms.inspection_recording (run_id, plan_id, channel_code, period, request_id)
            VALUES (run, p.id, ch, tstzrange(since, upto), rid);
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO vms.inspection_recording (run_id, plan_id, channel_code, period, state, error, finished_at)
            VALUES (run, p.id, ch, tstzrange(since, upto), 'failed', SQLERRM, now());
        END;
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms._inspection_recording_start(bigint, vms.inspection_plan, timestamptz) IS
    'internal: a round''s recording check starts: a RecordInfo query per channel in scope for the period since the plan last checked it';

-- Collect the answers: a query done -> vms.recording_check over its period
-- (gaps stored, recording_gap alarm raised or cleared); failed, timed out
-- or partial (pages missing: gaps would be false) -> failed with the reason.
-- A round whose video tasks are done and whose recording queries are all
-- collected is finished.  Returns the number of queries collected.
CREATE FUNCTION vms._inspection_recording_collect() RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r record;
    c vms.recording_check;
    n integer := 0;
BEGIN
    FOR r IN SELECT ir.id, ir.run_id, ir.channel_code, ir.period, q.state AS qstate, q.error AS qerror
               FROM vms.inspection_recording ir
               LEFT JOIN vms.sip_request q ON q.id = ir.request_id
              WHERE ir.state = 'queried'
                AND (q.id IS NULL OR q.state IN ('done', 'partial', 'failed', 'timeout'))
              ORDER BY ir.id
                FOR UPDATE OF ir SKIP LOCKED LOOP
        BEGIN
            IF r.qstate = 'done' THEN
                c := vms.recording_check(r.channel_code, lower(r.period), upper(r.period));
                UPDATE vms.inspection_recording SET state = 'checked', check_id = c.id, finished_at = now()
                 WHERE id = r.id;
            ELSE
                UPDATE vms.inspection_recording
                   SET state = 'failed', finished_at = now(),
                       error = CASE WHEN r.qstate IS NULL THEN 'the RecordInfo request is gone'
                                    WHEN r.qstate = 'partial' THEN 'the device''s record list was incomplete'
                                    ELSE 'RecordInfo ' || r.qstate END || coalesce(': ' || r.qerror, '')
                 WHERE id = r.id;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            UPDATE vms.inspection_recording SET state = 'failed', error = SQLERRM, finished_at = now() WHERE id = r.id;
        END;
        n := n + 1;
        UPDATE vms.inspection_run u SET finished_at = now()
         WHERE u.id = r.run_id AND u.finished_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM vms.inspection_task k WHERE k.run_id = u.id AND k.state NOT IN ('done', 'failed'))
           AND NOT EXISTS (SELECT 1 FROM vms.inspection_recording x WHERE x.run_id = u.id AND x.state = 'queried');
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms._inspection_recording_collect() IS
    'internal: collect the RecordInfo answers of inspection rounds and run vms.recording_check on each (run by the inspector workers'' scheduling step)';

-- Snapshots (vms.snapshot) --------------------------------------------------------
-- One JPEG of a channel, taken by a short-lived background worker ("vms
-- snapshot", workers/snapshot/snapshot.c) while the caller waits: the
-- device's own GB/T 28181-2022 snapshot (DeviceConfig SnapShotConfig with an
-- upload URL the worker serves) for a device that speaks 2022, else (or
-- when the device does not deliver) a frame sampled over INVITE as the
-- inspector samples.  The worker runs short transactions of its own; the
-- use of the right is audited by the first of them (vms._snapshot_begin),
-- committed before the device is asked anything, so neither the caller's
-- rollback nor a cancel undoes it; the caller holds no lock of the audit
-- log while it waits.  Limits: one snapshot of a channel at a time, and
-- vms.snapshot_min_interval between two; vms.snapshot_max_per_role per
-- session role and vms.snapshot_max_concurrent in the cluster at once
-- (workers/snapshot/snapshot.c).
CREATE TABLE vms.snapshot_request (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token           text NOT NULL UNIQUE,
    channel_code    vms.gbcode NOT NULL REFERENCES vms.channel (code) ON DELETE CASCADE,
    device_code     vms.gbcode NOT NULL,
    requested_by    name NOT NULL,
    method          text CHECK (method IN ('device', 'invite', 'none')),
    sip_request_id  bigint,
    state           text NOT NULL DEFAULT 'started' CHECK (state IN ('started', 'done', 'failed')),
    jpeg            bytea,
    error           text,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz
);
CREATE INDEX snapshot_request_channel_idx ON vms.snapshot_request (channel_code, started_at);
COMMENT ON TABLE vms.snapshot_request IS
    'snapshots taken with vms.snapshot: who asked, how (device: the 2022 device''s own upload; invite: a frame sampled over INVITE), the JPEG or why there is none';
COMMENT ON COLUMN vms.snapshot_request.token IS 'the secret of the upload URL (/snapshot/<token>) and the SnapShotConfig SessionID; good for one upload while the worker waits';

CREATE FUNCTION vms._snapshot_take(channel text, requester name) RETURNS text
    LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'vms_snapshot_take';
COMMENT ON FUNCTION vms._snapshot_take(text, name) IS
    'internal: run the snapshot worker for a channel and wait for it (a cancel stops it); returns the token of its vms.snapshot_request row';

-- Worker side: record the request; how to take it.  The use of the right
-- is audited here, in the worker's own transaction, committed before the
-- device is asked anything: as the caller's session role (session_role; the
-- role it acted as, requester, in the detail), and the grants' last use
-- recorded.  The caller checked the right before starting the worker.
CREATE FUNCTION vms._snapshot_begin(channel vms.gbcode, token text, requester name, session_role name) RETURNS text
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    dev vms.gbcode;
    v text;
    how text;
    rid bigint;
BEGIN
    SELECT c.device_code INTO dev FROM vms.channel c WHERE c.code = channel;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % is not in the ledger', channel USING ERRCODE = 'undefined_object';
    END IF;
    INSERT INTO vms.snapshot_request (token, channel_code, device_code, requested_by)
    VALUES (_snapshot_begin.token, channel, dev, requester)
    RETURNING id INTO rid;
    v := vms._device_gb_version(dev);
    how := CASE WHEN v ~ '^[0-9]{1,2}(\.[0-9]{1,2})*$' AND split_part(v, '.', 1)::int >= 3 THEN 'device' ELSE 'invite' END;
    UPDATE vms.access_grant g SET last_used_at = now()
     WHERE g.revoked_at IS NULL AND pg_has_role(requester, vms.grantee_role(g.grantee, g.grantee_oid), 'MEMBER') AND 'snapshot' = ANY (g.actions);
    PERFORM vms._audit_as(coalesce(session_role, requester), 'snapshot', channel::text,
                          jsonb_build_object('request', rid, 'method', how, 'role', requester));
    RETURN how;
END $$;
COMMENT ON FUNCTION vms._snapshot_begin(vms.gbcode, text, name, name) IS
    'internal: the snapshot worker records a request and audits the use (as the caller''s session role, committed before the device is asked); device (the device speaks GB/T 28181-2022: its own snapshot) or invite';

-- Worker side: DeviceConfig SnapShotConfig for the SIP worker (one picture,
-- uploaded to url, SessionID the token).
CREATE FUNCTION vms._snapshot_device_config(token text, url text) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r vms.snapshot_request;
    rid bigint;
BEGIN
    SELECT * INTO r FROM vms.snapshot_request s WHERE s.token = _snapshot_device_config.token;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no snapshot request with that token' USING ERRCODE = 'undefined_object';
    END IF;
    INSERT INTO vms.sip_request (device_code, kind, params, requested_by)
    VALUES (r.device_code, 'device_control',
            jsonb_build_object('target', r.channel_code::text, 'root', 'Control', 'cmd', 'DeviceConfig',
                               'xml', xmlelement(name "SnapShotConfig",
                                                 xmlelement(name "SnapNum", 1), xmlelement(name "Interval", 1),
                                                 xmlelement(name "UploadURL", url),
                                                 xmlelement(name "SessionID", r.token))::text,
                               'answer', true, 'command', 'SnapShotConfig', 'snapshot', r.id),
            r.requested_by)
    RETURNING id INTO rid;
    UPDATE vms.snapshot_request s SET method = 'device', sip_request_id = rid WHERE s.id = r.id;
    PERFORM vms._wake_worker('sip');
    RETURN rid;
END $$;
COMMENT ON FUNCTION vms._snapshot_device_config(text, text) IS
    'internal: the snapshot worker queues DeviceConfig SnapShotConfig (SnapNum 1, the upload URL, SessionID the token) for the SIP worker';

-- Worker side: the outcome.
CREATE FUNCTION vms._snapshot_finish(token text, method text, jpeg bytea, error text) RETURNS void
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    UPDATE vms.snapshot_request s
       SET method = CASE WHEN _snapshot_finish.method IN ('device', 'invite') THEN _snapshot_finish.method ELSE 'none' END,
           jpeg = _snapshot_finish.jpeg, error = left(_snapshot_finish.error, 2000),
           state = CASE WHEN _snapshot_finish.jpeg IS NOT NULL THEN 'done' ELSE 'failed' END,
           finished_at = clock_timestamp()
     WHERE s.token = _snapshot_finish.token
$$;
COMMENT ON FUNCTION vms._snapshot_finish(text, text, bytea, text) IS
    'internal: the snapshot worker stores the JPEG, or why there is none';

-- SECURITY DEFINER: it checks the snapshot right of the role the session
-- acts as (vms._can_for; a refusal is audited by vms.exercise_right),
-- and runs the snapshot worker (internal), which audits the use in its own
-- committed transaction (vms._snapshot_begin), so that no lock of the audit
-- log is held while the device is waited for and the entry stays whatever
-- the caller's transaction does.  The caller names only the channel.
CREATE FUNCTION vms.snapshot(channel vms.gbcode) RETURNS bytea
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    acting name := pg_catalog.pg_get_userbyid(vms._acting_role());
    dev vms.gbcode;
    dev_online boolean;
    tok text;
    r vms.snapshot_request;
BEGIN
    IF NOT vms._can_for(acting, 'snapshot', channel) THEN
        PERFORM vms.exercise_right('snapshot', channel);    -- audits the refusal and raises
    END IF;
    SELECT c.device_code, d.online INTO dev, dev_online
      FROM vms.channel c JOIN vms.device d ON d.code = c.device_code WHERE c.code = channel;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no channel %', channel
            USING ERRCODE = 'undefined_object', HINT = 'A snapshot is of a channel of vms.channel.';
    END IF;
    IF NOT dev_online THEN
        RAISE EXCEPTION 'device % is offline', dev
            USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = format('No snapshot of channel %s was asked for.', channel),
                  HINT = 'See vms.sip_device_status for why; snapshots come only from registered, online devices.';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'vms.snapshot needs the READ COMMITTED isolation level'
            USING ERRCODE = 'invalid_transaction_state',
                  DETAIL = 'The picture is stored by a worker''s transaction, which a snapshot taken earlier in this transaction would not see.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'relation' AND l.granted
                  AND l.relation IN ('vms.audit_log'::regclass, 'vms.snapshot_request'::regclass)
                  AND l.mode NOT IN ('AccessShareLock', 'RowShareLock')) THEN
        RAISE EXCEPTION 'vms.snapshot cannot run in a transaction that has written the audit log or snapshot requests'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'The snapshot worker audits the use in its own transaction, which would wait for this one.',
                  HINT = 'Take the snapshot in a transaction of its own, or before the audited actions.';
    END IF;
    IF EXISTS (SELECT 1 FROM vms.snapshot_request s
                WHERE s.channel_code = channel
                  AND s.started_at > clock_timestamp() - coalesce(current_setting('vms.snapshot_min_interval', true), '0')::interval) THEN
        RAISE EXCEPTION 'a snapshot of channel % was taken less than % ago', channel, current_setting('vms.snapshot_min_interval', true)
            USING ERRCODE = 'configuration_limit_exceeded',
                  DETAIL = 'vms.snapshot_min_interval is the least time between the starts of two snapshots of a channel.',
                  HINT = 'Try again later.';
    END IF;
    tok := vms._snapshot_take(channel::text, acting);
    SELECT * INTO r FROM vms.snapshot_request s WHERE s.token = tok;
    IF r.id IS NULL THEN
        RAISE EXCEPTION 'the snapshot worker of channel % recorded nothing', channel
            USING ERRCODE = 'system_error', HINT = 'See the server log (vms snapshot).';
    END IF;
    IF r.jpeg IS NULL THEN
        RAISE EXCEPTION 'no snapshot of channel %', channel
            USING ERRCODE = CASE WHEN r.error LIKE '%within%' OR r.error LIKE '%timeout%' OR r.error LIKE '%no answer%'
                                 THEN 'connection_failure' ELSE 'connection_exception' END,
                  DETAIL = r.error, HINT = format('The attempt is vms.snapshot_request %s.', r.id);
    END IF;
    RETURN r.jpeg;
END $$;
COMMENT ON FUNCTION vms.snapshot(vms.gbcode) IS
    'a JPEG of a channel now: the GB/T 28181-2022 device''s own snapshot (SnapShotConfig, uploaded to vms over HTTP), else a frame sampled over INVITE; waits at most vms.snapshot_timeout; checked (snapshot right) and audited (by the worker, committed whatever the caller does); limited per channel, session role and cluster (vms.snapshot_min_interval, vms.snapshot_max_per_role, vms.snapshot_max_concurrent); each attempt is in vms.snapshot_request';

-- GB/T 28181-2022 devices ---------------------------------------------------------

COMMENT ON COLUMN vms.device_session.gb_version IS
    'the X-GB-Ver header of the device''s last REGISTER (2.0 = GB/T 28181-2016, 3.0 = 2022); NULL when it sent none';
COMMENT ON COLUMN vms.device_session.gb_version_override IS
    'the GB/T 28181 version the owner set for the device (vms.sip_set_gb_version), taken instead of gb_version; NULL: none';

-- Worker side: the version a device registered with.
CREATE FUNCTION vms._sip_gb_version(device vms.gbcode, info jsonb) RETURNS void
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    UPDATE vms.device_session s SET gb_version = left(info ->> 'version', 10)
     WHERE s.device_code = device AND s.gb_version IS DISTINCT FROM left(info ->> 'version', 10)
$$;
COMMENT ON FUNCTION vms._sip_gb_version(vms.gbcode, jsonb) IS 'internal: the SIP worker records the X-GB-Ver a device registered with';

-- Every catalog item as the device sent it, with the fields the ledger has
-- no column for (2022: PointType, PointCommonName, MAC, FunctionType,
-- EncodeType, InstallTime, ManagementUnit, ContactInfo, RecordSaveDays,
-- Horizontal/VerticalFieldAngle, MaxViewDistance, SecurityLevelCode,
-- RegisterWay...).
CREATE TABLE vms.channel_catalog_item (
    code         vms.gbcode PRIMARY KEY REFERENCES vms.channel (code) ON DELETE CASCADE,
    device_code  vms.gbcode NOT NULL,
    item         jsonb NOT NULL,
    reported_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.channel_catalog_item IS
    'raw layer: each channel''s last catalog item as its device sent it, every field (the 2022 ones included)';

-- Media sessions --------------------------------------------------------------------
-- Live view, playback and download INVITE the channel (through its device)
-- to send RTP/PS to a media server: the address given ({"ip", "port",
-- "transport": "udp"|"tcp_passive"|"tcp_active"}, "tcp" meaning
-- tcp_passive), else vms.media_server ('ip:port' or 'ip:port/<transport>',
-- a superuser's setting).  Media transport per GB/T 28181-2016/2022: udp is
-- RTP over UDP; over TCP (RTP framed per RFC 4571, m=video <port>
-- TCP/RTP/AVP, a=connection:new) tcp_passive has the media server listen
-- and the device connect (a=setup:passive), tcp_active has the device
-- listen and the media server connect (a=setup:active; the address it
-- listens on, from its SDP answer, is in vms.media_sessions).  Each caller
-- is a viewer (vms.media_viewer) and leaves with vms.media_leave(session);
-- the owner ends a whole session with vms.sip_bye(request id).
--
-- The device sends to (UDP) or connects to (TCP, setup:passive) whatever
-- address the INVITE names, so an address is a target the caller aims the
-- devices at: besides the default, an analyst may name only a media server
-- the owner lists here.  Superusers may name any address.  Never one of
-- 0.0.0.0/8, 224.0.0.0/4 (multicast), 240.0.0.0/4 and 255.255.255.255; a
-- loopback address (127.0.0.0/8: the device itself) only when an entry of
-- its own inside 127.0.0.0/8 lists it (devices on the server's host, as in
-- tests), whoever asks.
CREATE TABLE vms.media_server_allowed (
    network  cidr NOT NULL CHECK (family(network) = 4),
    ports    int4range NOT NULL DEFAULT int4range(1024, 65535, '[]')
             CHECK (NOT isempty(ports) AND ports <@ int4range(1024, 65535, '[]')),
    note     text,
    added_by name NOT NULL DEFAULT current_user,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (network, ports)
);
COMMENT ON TABLE vms.media_server_allowed IS
    'the owner''s allowlist of media servers analysts may send video to (vms.view_live, vms.playback, vms.download): an IPv4 network and a port range each';
COMMENT ON COLUMN vms.media_server_allowed.network IS 'IPv4 network (or one host, /32) of media servers';
COMMENT ON COLUMN vms.media_server_allowed.ports IS 'the ports allowed on it, within 1024-65535';

CREATE FUNCTION vms._media_server() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'vms_media_server';
COMMENT ON FUNCTION vms._media_server() IS
    'internal: the setting vms.media_server (superuser-only), read through the library so that a session''s placeholder value is never read; NULL when empty';

CREATE FUNCTION vms._media_target(media jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    m jsonb := media;
    dflt text := vms._media_server();
    addr inet;
    port integer;
    kind text;
    allowed boolean;
BEGIN
    IF m IS NULL AND dflt IS NOT NULL THEN
        IF dflt !~ '^[0-9.]+:[0-9]{1,5}(/(udp|tcp|tcp_passive|tcp_active))?$' THEN
            RAISE EXCEPTION 'vms.media_server "%" is not ip:port or ip:port/transport', dflt
                USING ERRCODE = 'invalid_parameter_value', HINT = 'The transport is udp, tcp_passive (or tcp) or tcp_active.';
        END IF;
        m := jsonb_build_object('ip', split_part(dflt, ':', 1), 'port', split_part(split_part(dflt, ':', 2), '/', 1)::int,
                                'transport', coalesce(nullif(split_part(dflt, '/', 2), ''), 'udp'));
    END IF;
    IF m IS NULL THEN
        RAISE EXCEPTION 'no media server address'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass media => ''{"ip": "10.0.0.5", "port": 30000}'' (an address of vms.media_server_allowed), or have a superuser set vms.media_server = ''ip:port''.';
    END IF;
    IF jsonb_typeof(m) IS DISTINCT FROM 'object' OR coalesce(m ->> 'ip', '') !~ '^[0-9]{1,3}(\.[0-9]{1,3}){3}$'
       OR coalesce(m ->> 'port', '') !~ '^[0-9]{1,5}$' OR (m ->> 'port')::int NOT BETWEEN 1024 AND 65535 THEN
        RAISE EXCEPTION 'media address % is not {"ip": IPv4, "port": 1024-65535, "transport": udp, tcp_passive or tcp_active}', m
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF m ? 'transport' AND (jsonb_typeof(m -> 'transport') IS DISTINCT FROM 'string'
                            OR m ->> 'transport' NOT IN ('udp', 'tcp', 'tcp_passive', 'tcp_active')) THEN
        RAISE EXCEPTION 'unknown media transport %', m -> 'transport'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'udp: RTP over UDP; tcp_passive (or tcp): RTP over TCP, the media server listens and the device connects; tcp_active: the device listens and the media server connects.',
                  HINT = 'Pass "transport": "udp", "tcp_passive" or "tcp_active".';
    END IF;
    BEGIN
        addr := (m ->> 'ip')::inet;
    EXCEPTION WHEN invalid_text_representation THEN
        RAISE EXCEPTION 'media address "%" is not an IPv4 address', m ->> 'ip'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'Each of its four numbers is 0 to 255.';
    END;
    port := (m ->> 'port')::int;
    kind := CASE WHEN addr << inet '0.0.0.0/8' OR addr = inet '0.0.0.0' THEN 'unspecified'
                 WHEN addr <<= inet '127.0.0.0/8' THEN 'loopback'
                 WHEN addr = inet '255.255.255.255' THEN 'broadcast'
                 WHEN addr <<= inet '224.0.0.0/4' THEN 'multicast'
                 WHEN addr <<= inet '240.0.0.0/4' THEN 'reserved' END;
    IF kind = 'loopback' THEN
        -- only when the owner listed a loopback address itself (0.0.0.0/0 does not count)
        allowed := EXISTS (SELECT 1 FROM vms.media_server_allowed a
                            WHERE a.network <<= cidr '127.0.0.0/8' AND a.network >>= addr AND a.ports @> port);
    ELSIF kind IS NOT NULL THEN
        allowed := false;
    END IF;
    IF NOT allowed THEN
        RAISE EXCEPTION 'media address % is % address', host(addr), CASE kind WHEN 'unspecified' THEN 'an unspecified' ELSE 'a ' || kind END
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Devices are never told to send video to an unspecified, loopback, broadcast, multicast or reserved address.',
                  HINT = CASE kind WHEN 'loopback' THEN 'A media server on the devices'' own host is used only when the owner lists its loopback address in vms.media_server_allowed.'
                                   ELSE 'Name the unicast address of a media server.' END;
    END IF;
    -- besides the default (a superuser's setting) an analyst names only an allowed media server
    IF media IS NOT NULL AND allowed IS NULL
       AND NOT coalesce((SELECT g.rolsuper FROM pg_catalog.pg_roles g WHERE g.oid = vms._acting_role()), false)
       AND NOT EXISTS (SELECT 1 FROM vms.media_server_allowed a WHERE a.network >>= addr AND a.ports @> port) THEN
        RAISE EXCEPTION 'media server %:% is not allowed', host(addr), port
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Video goes only to the default media server (vms.media_server) or to one listed in vms.media_server_allowed.',
                  HINT = 'Leave media out to use the default, or ask the owner to add the media server to vms.media_server_allowed.';
    END IF;
    RETURN jsonb_build_object('ip', host(addr), 'port', port,
                              'transport', CASE coalesce(m ->> 'transport', 'udp') WHEN 'tcp' THEN 'tcp_passive'
                                                                                   ELSE coalesce(m ->> 'transport', 'udp') END);
END $$;
COMMENT ON FUNCTION vms._media_target(jsonb) IS
    'internal: the media server address and transport (udp, tcp_passive, tcp_active) of a session: the one given (an allowed media server unless the caller is a superuser), else vms.media_server; never an unspecified, broadcast, multicast or reserved address, loopback only when listed';

-- Viewers (WVP #923: forty plays of one camera must not be forty INVITEs).
-- Live view of one channel to one media server (same ip, port and
-- transport) is shared: the first vms.view_live INVITEs the device, later
-- ones, while that session is being set up or open, join it as further
-- viewers, each checked against its own grant and audited on its own.  A
-- media server that needs a stream of its own per viewer gives each a
-- different port, which makes a session of its own.  Playback and download
-- are never shared: each caller has its own period, speed and playback
-- control (pause, seek, scale), so its session has exactly one viewer.  A
-- viewer leaves with vms.media_leave, or when its right lapses; the device
-- gets its BYE when the last viewer is gone.
CREATE TABLE vms.media_viewer (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id   bigint NOT NULL REFERENCES vms.sip_request (id) ON DELETE CASCADE,
    viewer       name NOT NULL,
    joined_at    timestamptz NOT NULL DEFAULT now(),
    left_at      timestamptz,
    left_reason  text
);
CREATE INDEX media_viewer_session_idx ON vms.media_viewer (session_id) WHERE left_at IS NULL;
CREATE INDEX sip_request_invite_channel_idx ON vms.sip_request ((params ->> 'channel')) WHERE kind = 'invite';
COMMENT ON TABLE vms.media_viewer IS
    'the viewers of each media session (vms.view_live shares one session per channel and media server among them; playback and download have one each): who, since when, and when and why they left';
COMMENT ON COLUMN vms.media_viewer.session_id IS 'the session: the id of its INVITE request in vms.sip_request (what vms.view_live, vms.playback and vms.download return)';
COMMENT ON COLUMN vms.media_viewer.left_reason IS 'why the viewer left: left (vms.media_leave), the owner''s right lapsed, the session ended, or the INVITE''s failure or timeout with the device''s words';

-- the advisory lock that makes concurrent view_live calls of a channel join one session
CREATE FUNCTION vms._media_lock(channel vms.gbcode) RETURNS void
    LANGUAGE sql AS $$
    SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('vms.media_session'), pg_catalog.hashtext(channel::text))
$$;
COMMENT ON FUNCTION vms._media_lock(vms.gbcode) IS
    'internal: serialises the joining and ending of a channel''s media sessions (transaction-scoped advisory lock)';

-- SECURITY DEFINER (all three): each checks the right with
-- vms.exercise_right for the role the session acts as (which audits it),
-- then queues the INVITE into vms.sip_request (the owner's); the caller
-- names only the channel, the period and the media address.
CREATE FUNCTION vms.view_live(channel vms.gbcode, media jsonb DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    m jsonb := vms._media_target(media);
    detail jsonb := m || jsonb_build_object('command', 'Play', 'channel', channel::text, 'mode', 'Play');
    sid bigint;
    dev vms.gbcode;
    dev_online boolean;
BEGIN
    -- concurrent callers of one channel queue here, so that one INVITEs and the others join
    PERFORM vms._media_lock(channel);
    SELECT r.id, r.device_code INTO sid, dev FROM vms.sip_request r
     WHERE r.kind = 'invite' AND r.params ->> 'channel' = channel::text AND r.params ->> 'mode' = 'Play'
       AND r.params ->> 'ip' = m ->> 'ip' AND r.params ->> 'port' = m ->> 'port'
       AND coalesce(r.params ->> 'transport', 'udp') = m ->> 'transport'
       AND (r.state IN ('queued', 'sent') OR EXISTS (SELECT 1 FROM vms.media_sessions s WHERE s.id = r.id))
     ORDER BY r.id DESC LIMIT 1;
    IF sid IS NULL THEN
        sid := vms._device_request(channel, 'invite', NULL, 'INVITE', NULL, true, 'view_live', detail);
    ELSE
        -- a viewer more: its own right checked and audited, nothing sent
        PERFORM vms.exercise_right('view_live', channel, detail || jsonb_build_object('cmd', 'INVITE', 'session', sid, 'shared', true));
        SELECT d.online INTO dev_online FROM vms.device d WHERE d.code = dev;
        IF NOT coalesce(dev_online, false) THEN
            RAISE EXCEPTION 'device % is offline', dev
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('Live view of %s was not joined.', channel),
                      HINT = 'See vms.sip_device_status for why; commands go only to registered, online devices.';
        END IF;
    END IF;
    INSERT INTO vms.media_viewer (session_id, viewer) VALUES (sid, pg_catalog.pg_get_userbyid(vms._acting_role()));
    RETURN sid;
END $$;
COMMENT ON FUNCTION vms.view_live(vms.gbcode, jsonb) IS
    'live video of a channel to a media server (INVITE s=Play; media {"ip", "port", "transport": udp|tcp_passive|tcp_active} or vms.media_server); checked (view_live right) and audited per caller; a session of the same channel to the same media server being set up or open is joined instead of a new INVITE; returns the session id (the INVITE request''s; its result holds the call id and SSRC); leave it with vms.media_leave';

CREATE FUNCTION vms.playback(channel vms.gbcode, from_time timestamptz, to_time timestamptz, media jsonb DEFAULT NULL,
                             speed double precision DEFAULT 1)
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    m jsonb;
    sid bigint;
BEGIN
    PERFORM vms._check_period(from_time, to_time);
    -- the scales of vms.playback_control: MANSRTSP's Scale, forward only
    IF speed IS NULL OR speed NOT IN (0.125, 0.25, 0.5, 1, 2, 4, 8, 16) THEN
        RAISE EXCEPTION 'playback speed % is not one of 0.125, 0.25, 0.5, 1, 2, 4, 8, 16', coalesce(speed::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A playback starts at one of the scales MANSRTSP''s Scale header takes.';
    END IF;
    m := vms._media_target(media);
    sid := vms._device_request(channel, 'invite', NULL, 'INVITE', NULL, true, 'playback',
                               m || jsonb_build_object('command', 'Playback', 'channel', channel::text, 'mode', 'Playback',
                                                       'from', from_time, 'to', to_time,
                                                       'start', floor(extract(epoch FROM from_time))::bigint,
                                                       'end', ceil(extract(epoch FROM to_time))::bigint, 'speed', speed));
    -- never shared: one viewer, the caller
    INSERT INTO vms.media_viewer (session_id, viewer) VALUES (sid, pg_catalog.pg_get_userbyid(vms._acting_role()));
    RETURN sid;
END $$;
COMMENT ON FUNCTION vms.playback(vms.gbcode, timestamptz, timestamptz, jsonb, double precision) IS
    'play back a channel''s recording of a period to a media server (INVITE s=Playback with u= and t=) at a speed (0.125-16, default 1: at another speed the session''s first control, once the device accepted, is a MANSRTSP PLAY with that Scale); checked (playback right) and audited; never shared; returns the session id (the INVITE request''s); end it with vms.media_leave';

CREATE FUNCTION vms.download(channel vms.gbcode, from_time timestamptz, to_time timestamptz, media jsonb DEFAULT NULL,
                             speed integer DEFAULT 4)
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    m jsonb;
    sid bigint;
BEGIN
    PERFORM vms._check_period(from_time, to_time);
    IF speed IS NULL OR speed NOT BETWEEN 1 AND 32 THEN
        RAISE EXCEPTION 'download speed % is out of range', coalesce(speed::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'The device sends 1 to 32 times as fast as recorded.';
    END IF;
    m := vms._media_target(media);
    sid := vms._device_request(channel, 'invite', NULL, 'INVITE', NULL, true, 'download',
                               m || jsonb_build_object('command', 'Download', 'channel', channel::text, 'mode', 'Download',
                                                       'from', from_time, 'to', to_time,
                                                       'start', floor(extract(epoch FROM from_time))::bigint,
                                                       'end', ceil(extract(epoch FROM to_time))::bigint, 'speed', speed));
    -- never shared: one viewer, the caller
    INSERT INTO vms.media_viewer (session_id, viewer) VALUES (sid, pg_catalog.pg_get_userbyid(vms._acting_role()));
    RETURN sid;
END $$;
COMMENT ON FUNCTION vms.download(vms.gbcode, timestamptz, timestamptz, jsonb, integer) IS
    'download a channel''s recording of a period to a media server (INVITE s=Download with u=, t= and a=downloadspeed); checked (download right) and audited; never shared; returns the session id (the INVITE request''s); end it with vms.media_leave';

-- What is open: INVITEs answered 200, not yet ended by a BYE of ours, and
-- younger than the 10 minutes after which the worker ends a session nobody
-- ended.
CREATE VIEW vms.media_sessions AS
SELECT r.id, (r.params ->> 'channel')::vms.gbcode AS channel_code, r.device_code,
       coalesce(r.params ->> 'mode', 'Play') AS mode, r.requested_by, r.finished_at AS started_at,
       r.finished_at + interval '10 minutes' AS ends_by, r.result ->> 'call_id' AS call_id, r.progress ->> 'ssrc' AS ssrc,
       r.params ->> 'ip' AS media_ip, (r.params ->> 'port')::integer AS media_port,
       coalesce(r.params ->> 'transport', 'udp') AS transport,
       (r.params ->> 'from')::timestamptz AS from_time, (r.params ->> 'to')::timestamptz AS to_time,
       (SELECT count(*) FROM vms.media_viewer v WHERE v.session_id = r.id AND v.left_at IS NULL) AS viewers,
       r.result -> 'device_media' ->> 'ip' AS device_media_ip, (r.result -> 'device_media' ->> 'port')::integer AS device_media_port,
       CASE coalesce(r.params ->> 'mode', 'Play')
           WHEN 'Playback' THEN coalesce((SELECT (c.params ->> 'value')::double precision FROM vms.sip_request c
                                           WHERE c.kind = 'mansrtsp' AND c.params ->> 'session' = r.id::text
                                             AND c.params ->> 'command' = 'scale' AND c.state NOT IN ('failed', 'timeout')
                                           ORDER BY c.id DESC LIMIT 1), 1)
           WHEN 'Download' THEN (r.params ->> 'speed')::double precision
           ELSE 1 END AS speed
  FROM vms.sip_request r
 WHERE r.kind = 'invite' AND r.state = 'done' AND r.finished_at > now() - interval '10 minutes'
   AND NOT EXISTS (SELECT 1 FROM vms.sip_request b
                    WHERE b.kind = 'bye' AND b.device_code = r.device_code
                      AND b.params ->> 'call_id' = r.result ->> 'call_id' AND b.state <> 'failed');
COMMENT ON VIEW vms.media_sessions IS
    'open media sessions (live view, playback, download): channel, mode, who asked first, media server and transport, call id and SSRC, viewers still watching, where the device listens (device_media_ip/port, from its SDP answer; tcp_active connects there), and the speed (playback: the scale of its last control not failed, the one it started at included, else 1; download: its downloadspeed; live: 1), until a BYE or the worker''s 10-minute limit';
CREATE INDEX sip_request_sessions_idx ON vms.sip_request (finished_at) WHERE kind = 'invite' AND state = 'done';

-- Worker side, every few seconds: (1) viewers of a session that ended (BYE,
-- the 10-minute limit, an INVITE that failed or timed out) are released
-- with the reason; (2) viewers who no longer hold the right (the grant
-- expired or was revoked, the role is gone) leave, audited; (3) an open
-- session (vms.view_live, vms.playback, vms.download) without viewers is
-- ended: a BYE is queued, and audited.  Returns the number of sessions ended.
CREATE FUNCTION vms._media_sessions_lapsed() RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    vw record;
    ss record;
    why text;
    n integer := 0;
BEGIN
    UPDATE vms.media_viewer x
       SET left_at = now(),
           left_reason = CASE WHEN r.state IN ('failed', 'timeout') THEN 'INVITE ' || r.state || coalesce(': ' || r.error, '')
                              ELSE 'the session ended' END
      FROM vms.sip_request r
     WHERE x.left_at IS NULL AND r.id = x.session_id AND r.state NOT IN ('queued', 'sent')
       AND NOT EXISTS (SELECT 1 FROM vms.media_sessions m WHERE m.id = r.id);
    FOR vw IN SELECT w.id, w.session_id, w.viewer, (r.params ->> 'channel')::vms.gbcode AS channel_code,
                    coalesce(r.params ->> 'mode', 'Play') AS mode
               FROM vms.media_viewer w JOIN vms.sip_request r ON r.id = w.session_id
              WHERE w.left_at IS NULL
    LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles g WHERE g.rolname = vw.viewer)
           AND vms._can_for(vw.viewer, CASE vw.mode WHEN 'Playback' THEN 'playback' WHEN 'Download' THEN 'download'
                                                   ELSE 'view_live' END, vw.channel_code) THEN
            CONTINUE;
        END IF;
        UPDATE vms.media_viewer SET left_at = now(), left_reason = 'the owner''s right lapsed' WHERE id = vw.id;
        PERFORM vms.audit('media_viewer_left', vw.channel_code::text,
                          jsonb_build_object('session', vw.session_id, 'mode', vw.mode, 'viewer', vw.viewer,
                                             'reason', 'the owner''s right lapsed'));
    END LOOP;
    FOR ss IN SELECT m.id, m.device_code, m.call_id, m.channel_code, m.mode, m.requested_by
               FROM vms.media_sessions m JOIN vms.sip_request r ON r.id = m.id
              WHERE r.params ? 'mode' AND m.call_id IS NOT NULL AND m.viewers = 0
    LOOP
        -- a view_live joining right now wins: looked at again under the channel's lock
        PERFORM vms._media_lock(ss.channel_code);
        CONTINUE WHEN EXISTS (SELECT 1 FROM vms.media_viewer w WHERE w.session_id = ss.id AND w.left_at IS NULL);
        why := coalesce((SELECT w.left_reason FROM vms.media_viewer w WHERE w.session_id = ss.id
                          ORDER BY w.left_at DESC, w.id DESC LIMIT 1), 'no viewer');
        PERFORM vms._media_session_end(ss.id, ss.device_code, ss.call_id, ss.channel_code, ss.mode, ss.requested_by, why);
        n := n + 1;
    END LOOP;
    IF n > 0 THEN
        PERFORM vms._wake_worker('sip');
    END IF;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms._media_sessions_lapsed() IS
    'internal: the SIP worker releases the viewers of ended sessions, lets viewers whose right lapsed (expired, revoked, role gone) leave (audited), and ends open sessions without viewers: BYE queued and audited';

-- The BYE of a session nobody watches any more, audited.
CREATE FUNCTION vms._media_session_end(session bigint, device vms.gbcode, call_id text, channel vms.gbcode, mode text,
                                       owner text, reason text) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO vms.sip_request (device_code, kind, params, requested_by)
    VALUES (device, 'bye', jsonb_build_object('call_id', call_id, 'reason', reason, 'session', session), owner);
    PERFORM vms.audit('media_session_ended', channel::text,
                      jsonb_build_object('session', session, 'mode', mode, 'owner', owner, 'reason', reason));
END $$;
COMMENT ON FUNCTION vms._media_session_end(bigint, vms.gbcode, text, vms.gbcode, text, text, text) IS
    'internal: queue the BYE of a media session whose last viewer left, and audit it';

-- A viewer leaves: the caller's latest viewing of the session ends
-- (audited); when it was the last viewer of an open session, the device
-- gets its BYE.  A session still being set up is ended by the worker once
-- the device accepted it.  SECURITY DEFINER: a caller ends only its own
-- viewing.  Returns the number of viewers left.
CREATE FUNCTION vms.media_leave(session bigint) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    acting name := pg_catalog.pg_get_userbyid(vms._acting_role());
    r vms.sip_request;
    vid bigint;
    m vms.media_sessions;
    left_n integer;
BEGIN
    SELECT * INTO r FROM vms.sip_request q WHERE q.id = session AND q.kind = 'invite' AND q.params ? 'mode';
    IF FOUND THEN
        PERFORM vms._media_lock((r.params ->> 'channel')::vms.gbcode);
        SELECT w.id INTO vid FROM vms.media_viewer w
         WHERE w.session_id = session AND w.viewer = acting AND w.left_at IS NULL
         ORDER BY w.id DESC LIMIT 1 FOR UPDATE;
    END IF;
    IF vid IS NULL THEN
        RAISE EXCEPTION 'no media session % of yours is open', session
            USING ERRCODE = 'undefined_object', HINT = 'See vms.media_sessions.';
    END IF;
    UPDATE vms.media_viewer SET left_at = now(), left_reason = 'left' WHERE id = vid;
    PERFORM vms.audit('media_viewer_left', r.params ->> 'channel',
                      jsonb_build_object('session', session, 'mode', r.params ->> 'mode', 'viewer', acting, 'reason', 'left'));
    SELECT count(*) INTO left_n FROM vms.media_viewer w WHERE w.session_id = session AND w.left_at IS NULL;
    IF left_n = 0 THEN
        SELECT * INTO m FROM vms.media_sessions s WHERE s.id = session;
        IF FOUND AND m.call_id IS NOT NULL THEN
            PERFORM vms._media_session_end(m.id, m.device_code, m.call_id, m.channel_code, m.mode, m.requested_by,
                                           'the last viewer left');
            PERFORM vms._wake_worker('sip');
        END IF;
    END IF;
    RETURN left_n;
END $$;
COMMENT ON FUNCTION vms.media_leave(bigint) IS
    'leave a media session (the id vms.view_live, vms.playback or vms.download returned): the caller''s viewing ends, audited; the last viewer''s leaving sends the device its BYE; returns the viewers left';

-- Playback control (GB/T 28181 MANSRTSP over INFO in the session's dialog):
-- pause, resume, seek (seconds from the start of the period) and scale.
-- SECURITY DEFINER as vms.playback: only the session's owner (or a
-- superuser) controls it, with the playback right checked and audited.
CREATE FUNCTION vms.playback_control(session bigint, action text, value double precision DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    m vms.media_sessions;
    acting name := pg_catalog.pg_get_userbyid(vms._acting_role());
    n bigint;
    body text;
BEGIN
    IF action IS NULL OR action NOT IN ('pause', 'resume', 'seek', 'scale') THEN
        RAISE EXCEPTION 'unknown playback action "%"', action
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Actions are pause, resume, seek and scale.';
    END IF;
    IF action = 'seek' AND (value IS NULL OR value < 0 OR value >= 86400 * 31) THEN
        RAISE EXCEPTION 'seek position % is out of range', value
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'Seek takes the seconds from the start of the period played back.';
    END IF;
    IF action = 'scale' AND (value IS NULL OR value NOT IN (0.125, 0.25, 0.5, 1, 2, 4, 8, 16)) THEN
        RAISE EXCEPTION 'playback scale % is not one of 0.125, 0.25, 0.5, 1, 2, 4, 8, 16', value
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO m FROM vms.media_sessions s WHERE s.id = session AND s.mode = 'Playback';
    IF NOT FOUND OR (m.requested_by IS DISTINCT FROM acting
                     AND NOT (SELECT g.rolsuper FROM pg_catalog.pg_roles g WHERE g.rolname = acting)) THEN
        RAISE EXCEPTION 'no playback session % of yours is open', session
            USING ERRCODE = 'undefined_object', HINT = 'See vms.media_sessions.';
    END IF;
    n := 1 + (SELECT count(*) FROM vms.sip_request r WHERE r.kind = 'mansrtsp' AND r.params ->> 'session' = session::text);
    body := CASE action
        WHEN 'pause' THEN format(E'PAUSE RTSP/1.0\r\nCSeq: %s\r\nPauseTime: now\r\n\r\n', n)
        WHEN 'resume' THEN format(E'PLAY RTSP/1.0\r\nCSeq: %s\r\nRange: npt=now-\r\n\r\n', n)
        WHEN 'seek' THEN format(E'PLAY RTSP/1.0\r\nCSeq: %s\r\nRange: npt=%s-\r\n\r\n', n, round(value::numeric, 3))
        ELSE format(E'PLAY RTSP/1.0\r\nCSeq: %s\r\nScale: %s\r\n\r\n', n, to_char(value, 'FM90.0999'))
    END;
    RETURN vms._device_request(m.channel_code, 'mansrtsp', NULL, 'INFO', NULL, true, 'playback',
                               jsonb_build_object('command', action, 'value', value, 'session', session,
                                                  'call_id', m.call_id, 'body', body));
END $$;
COMMENT ON FUNCTION vms.playback_control(bigint, text, double precision) IS
    'control an open playback session (MANSRTSP in an INFO): pause, resume, seek (seconds from the start) or scale (0.125-16); its owner only, playback right checked and audited; returns the request id';

-- A playback asked at a speed other than 1 starts at it: once the device
-- accepted the INVITE (the worker writes its 200, ACKed, as done with the
-- call id), the session's first control is queued here, the MANSRTSP PLAY
-- with that Scale that vms.playback_control sends, for the caller of
-- vms.playback (whose right was checked and use audited with the speed).
-- The worker claims it on its next round and sends it as an INFO in the
-- session's dialog.
CREATE FUNCTION vms._playback_speed_start() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v double precision := (NEW.params ->> 'speed')::double precision;
    n bigint := 1 + (SELECT count(*) FROM vms.sip_request r WHERE r.kind = 'mansrtsp' AND r.params ->> 'session' = NEW.id::text);
BEGIN
    INSERT INTO vms.sip_request (device_code, kind, params, requested_by)
    VALUES (NEW.device_code, 'mansrtsp',
            jsonb_build_object('target', NEW.params ->> 'channel', 'root', NULL, 'cmd', 'INFO', 'xml', '', 'answer', true,
                               'command', 'scale', 'value', v, 'session', NEW.id, 'call_id', NEW.result ->> 'call_id',
                               'body', format(E'PLAY RTSP/1.0\r\nCSeq: %s\r\nScale: %s\r\n\r\n', n, to_char(v, 'FM90.0999')),
                               'start', true),
            NEW.requested_by);
    PERFORM vms._wake_worker('sip');
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._playback_speed_start() IS
    'internal (trigger): a playback INVITE the device accepted, asked at a speed other than 1, gets its first control queued: the MANSRTSP PLAY with that Scale';
CREATE TRIGGER sip_request_playback_speed AFTER UPDATE OF state ON vms.sip_request
    FOR EACH ROW
    WHEN (NEW.kind = 'invite' AND NEW.state = 'done' AND OLD.state IS DISTINCT FROM 'done'
          AND NEW.params ->> 'mode' = 'Playback' AND (NEW.params ->> 'speed')::double precision <> 1
          AND NEW.result ? 'call_id')
    EXECUTE FUNCTION vms._playback_speed_start();
COMMENT ON TRIGGER sip_request_playback_speed ON vms.sip_request IS
    'a playback asked at a speed other than 1 starts at it (vms._playback_speed_start)';
