-- The device ledger (台账): regions, units, catalogue trees, devices, channels,
-- checkpoints and lanes.  Attribute columns hold the governed value users
-- query; what devices report is kept apart in *_reported (see 04_history.sql).
-- Only code and name (and a channel's device) are required: a missing
-- attribute is governance's business, not a constraint's.

CREATE FUNCTION vms._touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._touch_updated_at() IS 'internal: keeps updated_at current';

-- Decisions people take (ignore, revoke, reject, request) carry a reason.
CREATE FUNCTION vms._require_reason(reason text, what text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF coalesce(btrim(reason), '') = '' THEN
        RAISE EXCEPTION '% needs a reason', what USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION vms._require_reason(text, text) IS 'internal: refuses an empty reason for a decision';

-- Sets a trigger's firing state (pg_trigger.tgenabled: O enabled, A always,
-- R replica only, D disabled) and returns the state it had, so that a
-- function that turns a trigger off for a while puts it back as the DBA had
-- set it (a plain ENABLE would reset ENABLE ALWAYS, ENABLE REPLICA or
-- DISABLE):  saved := vms._trigger_set(t, name, 'D'); ...;
-- PERFORM vms._trigger_set(t, name, saved).  The state is read under the
-- lock ALTER TABLE ... TRIGGER takes, so no other change comes between.
CREATE FUNCTION vms._trigger_set(tbl regclass, trg name, state "char") RETURNS "char"
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    clause constant text := CASE state WHEN 'O' THEN 'ENABLE' WHEN 'A' THEN 'ENABLE ALWAYS'
                                       WHEN 'R' THEN 'ENABLE REPLICA' WHEN 'D' THEN 'DISABLE' END;
    was "char";
BEGIN
    IF clause IS NULL THEN
        RAISE EXCEPTION 'invalid trigger state "%"', state
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A state is one of pg_trigger.tgenabled''s: O, A, R or D.';
    END IF;
    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', tbl);
    SELECT t.tgenabled INTO was FROM pg_catalog.pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = trg;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'trigger "%" for table "%" does not exist', trg, tbl USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('ALTER TABLE %s %s TRIGGER %I', tbl, clause, trg);
    RETURN was;
END $$;
COMMENT ON FUNCTION vms._trigger_set(regclass, name, "char") IS
    'internal: sets a trigger''s firing state (O, A, R, D as in pg_trigger.tgenabled) and returns the one it had';

CREATE TABLE vms.region (
    civil_code   text PRIMARY KEY CHECK (civil_code ~ '^([0-9]{2}){1,4}$'),
    name         text NOT NULL,
    level        smallint GENERATED ALWAYS AS (length(civil_code) / 2) STORED,
    parent_code  text GENERATED ALWAYS AS
                   (CASE WHEN length(civil_code) > 2 THEN left(civil_code, length(civil_code) - 2) END) STORED,
    boundary     geometry(MultiPolygon, 4326),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX region_parent_idx ON vms.region (parent_code);
CREATE INDEX region_boundary_idx ON vms.region USING gist (boundary);
COMMENT ON TABLE vms.region IS 'civil regions (GB/T 2260 codes: 2 province, 4 city, 6 county, 8 grassroots) with optional boundary';
COMMENT ON COLUMN vms.region.level IS '1 province, 2 city, 3 county, 4 street/town';
COMMENT ON COLUMN vms.region.parent_code IS 'the code two digits shorter';

CREATE TABLE vms.org_unit (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code         text UNIQUE,
    name         text NOT NULL UNIQUE,
    parent_id    bigint REFERENCES vms.org_unit (id),
    civil_code   text CHECK (civil_code ~ '^([0-9]{2}){1,4}$'),
    created_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vms.org_unit IS 'organisation and management units (管理单位/责任单位), a tree';

CREATE TABLE vms.catalog_node (
    code          vms.gbcode PRIMARY KEY
                  CHECK (vms.gbcode_type(code) IN (215, 216)),
    name          text NOT NULL,
    parent_code   vms.gbcode REFERENCES vms.catalog_node (code) ON DELETE CASCADE
                  DEFERRABLE INITIALLY IMMEDIATE,
    business_group vms.gbcode,
    civil_code    text,
    source_device vms.gbcode,
    sort_order    integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (parent_code IS NULL OR vms.gbcode_type(code) = 216)
);
CREATE INDEX catalog_node_parent_idx ON vms.catalog_node (parent_code);
COMMENT ON TABLE vms.catalog_node IS 'catalogue trees: business groups (type 215, roots) and virtual organisations (216) under them';
COMMENT ON COLUMN vms.catalog_node.source_device IS 'platform whose catalog reported the node; NULL when made by hand';

CREATE TABLE vms.point_type (
    code     text PRIMARY KEY,
    name_zh  text NOT NULL,
    name_en  text NOT NULL
);
INSERT INTO vms.point_type VALUES
    ('bullet', '枪机', 'bullet camera'),
    ('dome', '球机', 'PTZ dome camera'),
    ('capture', '抓拍机', 'capture camera'),
    ('hemisphere', '半球', 'hemispherical camera'),
    ('panoramic', '全景', 'panoramic camera'),
    ('other', '其他', 'other');
COMMENT ON TABLE vms.point_type IS 'point types (点位类型) a channel can have';

CREATE TABLE vms.device (
    code              vms.gbcode PRIMARY KEY,
    name              text NOT NULL,
    manufacturer      text,
    model             text,
    firmware          text,
    ip_address        inet,
    port              integer CHECK (port BETWEEN 1 AND 65535),
    transport         text CHECK (transport IN ('UDP', 'TCP')),
    civil_code        text CHECK (civil_code ~ '^([0-9]{2}){1,4}$'),
    unit_id           bigint REFERENCES vms.org_unit (id),
    online            boolean NOT NULL DEFAULT false,
    status_changed_at timestamptz,
    registered_at     timestamptz,
    last_keepalive_at timestamptz,
    overridden        text[] NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_unit_idx ON vms.device (unit_id);
COMMENT ON TABLE vms.device IS 'encoding devices (NVR/DVR/encoders/IPC) and lower platforms; attribute columns are the governed values';
COMMENT ON COLUMN vms.device.overridden IS 'attributes set by people; a device report never overwrites these';
COMMENT ON COLUMN vms.device.online IS 'maintained by the SIP worker; channels follow their device';

-- Digest HA1 only: H(user:realm:password) for MD5 and SHA-256, never the password.
CREATE TABLE vms.device_credential (
    device_code  vms.gbcode PRIMARY KEY REFERENCES vms.device (code) ON DELETE CASCADE,
    realm        text NOT NULL,
    ha1_md5      text NOT NULL,
    ha1_sha256   text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON vms.device_credential FROM PUBLIC;
COMMENT ON TABLE vms.device_credential IS 'SIP digest HA1 values per device (no plain-text passwords); readable only by the owner';

CREATE TABLE vms.channel (
    code              vms.gbcode PRIMARY KEY,
    device_code       vms.gbcode NOT NULL REFERENCES vms.device (code) ON DELETE CASCADE,
    name              text NOT NULL,
    alias             text,
    address           text,
    civil_code        text CHECK (civil_code ~ '^([0-9]{2}){1,4}$'),
    street            text,
    place_type        text,
    point_type        text REFERENCES vms.point_type (code),
    resolution        text CHECK (resolution ~ '^[0-9]{2,4}W$'),
    azimuth           real CHECK (azimuth >= 0 AND azimuth < 360),
    fov_angle         real CHECK (fov_angle > 0 AND fov_angle <= 360),
    fov_range_m       real CHECK (fov_range_m > 0),
    install_height_m  real CHECK (install_height_m >= 0),
    capabilities      text[] NOT NULL DEFAULT '{}',
    unit_id           bigint REFERENCES vms.org_unit (id),
    stream_url        text,
    geom              geometry(Point, 4326),
    -- NULL where Web Mercator is undefined, so a bad location is governance's business, not an error
    geom_3857         geometry(Point, 3857) GENERATED ALWAYS AS (
                          CASE WHEN ST_X(geom) BETWEEN -180 AND 180 AND ST_Y(geom) BETWEEN -85.05 AND 85.05
                               THEN ST_Transform(geom, 3857) END) STORED,
    coord_source      text,
    online            boolean NOT NULL DEFAULT false,
    status_changed_at timestamptz,
    overridden        text[] NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX channel_device_idx ON vms.channel (device_code);
CREATE INDEX channel_geom_idx ON vms.channel USING gist (geom);
CREATE INDEX channel_civil_idx ON vms.channel (civil_code);
-- by unit: channel_unit_name_idx (unit_id, md5(name)), in 08_governance.sql
COMMENT ON TABLE vms.channel IS 'monitoring points (监控点): camera channels of a device, with location and view geometry';
COMMENT ON COLUMN vms.channel.street IS 'owning street or town (所属街镇)';
COMMENT ON COLUMN vms.channel.place_type IS 'place type (场所类型), free text governed by rules';
COMMENT ON COLUMN vms.channel.resolution IS 'resolution class such as 200W, 400W, 800W';
COMMENT ON COLUMN vms.channel.azimuth IS 'orientation (朝向) in degrees clockwise from north, [0, 360)';
COMMENT ON COLUMN vms.channel.fov_angle IS 'horizontal field-of-view angle in degrees';
COMMENT ON COLUMN vms.channel.fov_range_m IS 'useful viewing distance in metres';
COMMENT ON COLUMN vms.channel.capabilities IS 'capability set (能力集), e.g. {ptz,face,plate,audio,infrared}';
COMMENT ON COLUMN vms.channel.geom IS 'location in WGS-84; converted from the source system on input';
COMMENT ON COLUMN vms.channel.geom_3857 IS 'the location in Web Mercator, derived, for map tiles';
COMMENT ON COLUMN vms.channel.coord_source IS 'coordinate system the location was given in (WGS84, CGCS2000, GCJ02, BD09)';
COMMENT ON COLUMN vms.channel.overridden IS 'attributes set by people; a catalog report never overwrites these';

CREATE TABLE vms.catalog_member (
    node_code     vms.gbcode NOT NULL REFERENCES vms.catalog_node (code) ON DELETE CASCADE,
    channel_code  vms.gbcode NOT NULL REFERENCES vms.channel (code) ON DELETE CASCADE,
    PRIMARY KEY (node_code, channel_code)
);
CREATE INDEX catalog_member_channel_idx ON vms.catalog_member (channel_code);
COMMENT ON TABLE vms.catalog_member IS 'which catalogue nodes list a channel (a channel may sit in several trees)';

CREATE TABLE vms.checkpoint (
    code            vms.gbcode PRIMARY KEY,
    name            text NOT NULL,
    direction_mode  text NOT NULL DEFAULT 'updown' CHECK (direction_mode IN ('multi', 'updown')),
    address         text,
    road            text,
    civil_code      text CHECK (civil_code ~ '^([0-9]{2}){1,4}$'),
    unit_id         bigint REFERENCES vms.org_unit (id),
    geom            geometry(Point, 4326),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX checkpoint_geom_idx ON vms.checkpoint USING gist (geom);
COMMENT ON TABLE vms.checkpoint IS 'checkpoints (卡口) with direction mode multi (多方向) or updown (上下行)';

CREATE TABLE vms.lane (
    checkpoint_code vms.gbcode NOT NULL REFERENCES vms.checkpoint (code) ON DELETE CASCADE,
    lane_no         smallint NOT NULL CHECK (lane_no BETWEEN 1 AND 99),
    direction       text NOT NULL,
    lane_type       text NOT NULL DEFAULT 'motor' CHECK (lane_type IN ('motor', 'non_motor', 'bus', 'emergency', 'mixed')),
    name            text,
    PRIMARY KEY (checkpoint_code, lane_no)
);
COMMENT ON TABLE vms.lane IS 'lanes (车道) of a checkpoint; direction is up/down or a compass movement depending on the mode';
COMMENT ON COLUMN vms.lane.direction IS 'updown mode: up, down; multi mode: E2W W2E S2N N2S SE2NW NW2SE NE2SW SW2NE';

CREATE TABLE vms.lane_channel (
    checkpoint_code vms.gbcode NOT NULL,
    lane_no         smallint NOT NULL,
    channel_code    vms.gbcode NOT NULL REFERENCES vms.channel (code) ON DELETE CASCADE,
    PRIMARY KEY (checkpoint_code, lane_no, channel_code),
    FOREIGN KEY (checkpoint_code, lane_no) REFERENCES vms.lane ON DELETE CASCADE
);
CREATE INDEX lane_channel_channel_idx ON vms.lane_channel (channel_code);
COMMENT ON TABLE vms.lane_channel IS 'video points that watch a lane';

-- Lane direction must fit the checkpoint's mode.
CREATE FUNCTION vms._lane_check_direction() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    mode text;
BEGIN
    SELECT direction_mode INTO mode FROM vms.checkpoint WHERE code = NEW.checkpoint_code;
    IF mode = 'updown' AND NEW.direction NOT IN ('up', 'down') THEN
        RAISE EXCEPTION 'lane direction "%" does not fit checkpoint mode "updown"', NEW.direction
            USING ERRCODE = 'check_violation',
                  DETAIL = format('Checkpoint %s uses up/down-bound directions.', NEW.checkpoint_code),
                  HINT = 'Use up or down.';
    ELSIF mode = 'multi' AND NEW.direction NOT IN
          ('E2W', 'W2E', 'S2N', 'N2S', 'SE2NW', 'NW2SE', 'NE2SW', 'SW2NE') THEN
        RAISE EXCEPTION 'lane direction "%" does not fit checkpoint mode "multi"', NEW.direction
            USING ERRCODE = 'check_violation',
                  DETAIL = format('Checkpoint %s uses compass movements.', NEW.checkpoint_code),
                  HINT = 'Use one of E2W, W2E, S2N, N2S, SE2NW, NW2SE, NE2SW, SW2NE.';
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._lane_check_direction() IS 'internal: lane direction must match its checkpoint mode';
CREATE TRIGGER lane_check_direction BEFORE INSERT OR UPDATE ON vms.lane
    FOR EACH ROW EXECUTE FUNCTION vms._lane_check_direction();

CREATE TRIGGER region_touch BEFORE UPDATE ON vms.region FOR EACH ROW EXECUTE FUNCTION vms._touch_updated_at();
CREATE TRIGGER catalog_node_touch BEFORE UPDATE ON vms.catalog_node FOR EACH ROW EXECUTE FUNCTION vms._touch_updated_at();
CREATE TRIGGER device_touch BEFORE UPDATE ON vms.device FOR EACH ROW EXECUTE FUNCTION vms._touch_updated_at();
CREATE TRIGGER channel_touch BEFORE UPDATE ON vms.channel FOR EACH ROW EXECUTE FUNCTION vms._touch_updated_at();
CREATE TRIGGER checkpoint_touch BEFORE UPDATE ON vms.checkpoint FOR EACH ROW EXECUTE FUNCTION vms._touch_updated_at();

-- Every node of a catalogue subtree, the root included.
CREATE FUNCTION vms.catalog_subtree(root vms.gbcode) RETURNS SETOF vms.gbcode
    LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
    WITH RECURSIVE t(code) AS (
        SELECT n.code FROM vms.catalog_node n WHERE n.code = root
        UNION
        SELECT n.code FROM vms.catalog_node n JOIN t ON n.parent_code = t.code
    )
    SELECT code FROM t
$$;
COMMENT ON FUNCTION vms.catalog_subtree(vms.gbcode) IS 'codes of a catalogue node and all nodes below it';

-- Password → HA1 for MD5 and SHA-256 digest; the password itself is not kept.
CREATE FUNCTION vms.device_set_password(device vms.gbcode, password text, realm text DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r text := coalesce(realm, nullif(current_setting('vms.sip_realm', true), ''),
                       left(nullif(current_setting('vms.sip_id', true), ''), 10));
    who text := device::text;
BEGIN
    IF r IS NULL THEN
        RAISE EXCEPTION 'no SIP realm to compute the digest for device %', device
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Neither the realm argument nor vms.sip_realm nor vms.sip_id is set.',
                  HINT = 'Pass the realm, or set vms.sip_id to the platform''s 20-digit code.';
    END IF;
    IF length(password) = 0 OR length(password) > 128 THEN
        RAISE EXCEPTION 'device password must have 1 to 128 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO vms.device_credential AS c (device_code, realm, ha1_md5, ha1_sha256)
    VALUES (device, r, md5(who || ':' || r || ':' || password),
            encode(sha256(convert_to(who || ':' || r || ':' || password, 'UTF8')), 'hex'))
    ON CONFLICT (device_code) DO UPDATE
        SET realm = EXCLUDED.realm, ha1_md5 = EXCLUDED.ha1_md5,
            ha1_sha256 = EXCLUDED.ha1_sha256, updated_at = now();
END $$;
COMMENT ON FUNCTION vms.device_set_password(vms.gbcode, text, text) IS
    'store the SIP digest HA1 (MD5 and SHA-256) of a device password; the password is not stored';
