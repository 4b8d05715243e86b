-- Batch import and export of the ledger template (one row per monitoring point).

CREATE FUNCTION vms.csv_rows(data bytea, encoding text DEFAULT 'auto')
    RETURNS TABLE (line_no bigint, fields text[], error text)
    AS 'MODULE_PATHNAME', 'csv_rows_bytea' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION vms.csv_rows_file(path text, encoding text DEFAULT 'auto')
    RETURNS TABLE (line_no bigint, fields text[], error text)
    AS 'MODULE_PATHNAME', 'csv_rows_file' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION vms.csv_rows(bytea, text) IS
    'parse CSV (UTF8, GB18030, GBK or auto) into (line_no, fields, error); unreadable records come back with error set';
COMMENT ON FUNCTION vms.csv_rows_file(text, text) IS
    'vms.csv_rows over a server file; needs pg_read_server_files';

CREATE FUNCTION vms.is_ip(text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_is_ip' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vms.is_ip(text) IS 'true when the text is an IPv4 or IPv6 address';

CREATE TABLE vms.ledger_template_column (
    position    smallint PRIMARY KEY,
    key         text NOT NULL UNIQUE,
    header      text NOT NULL UNIQUE,
    required    boolean NOT NULL DEFAULT false,
    description text NOT NULL
);
INSERT INTO vms.ledger_template_column VALUES
    (1,  'code',             '监控点编码', true,  '20-digit GB/T 28181 code of the monitoring point'),
    (2,  'name',             '监控点名称', true,  'name of the point'),
    (3,  'device_code',      '设备编码',   false, 'code of the encoding device or platform; empty: the point is its own device (IPC)'),
    (4,  'device_name',      '设备名称',   false, 'device name; used when the device is new'),
    (5,  'manufacturer',     '厂商',       false, 'device manufacturer'),
    (6,  'model',            '型号',       false, 'device model'),
    (7,  'ip_address',       'IP地址',     false, 'device IPv4 or IPv6 address'),
    (8,  'port',             '端口',       false, 'device port, 1-65535'),
    (9,  'alias',            '别名',       false, 'alias of the point'),
    (10, 'address',          '安装地址',   false, 'installation address'),
    (11, 'civil_code',       '行政区划',   false, 'GB/T 2260 civil code, 2/4/6/8 digits'),
    (12, 'street',           '所属街镇',   false, 'owning street or town'),
    (13, 'place_type',       '场所类型',   false, 'place type'),
    (14, 'point_type',       '点位类型',   false, 'bullet/dome/capture/hemisphere/panoramic/other or 枪机/球机/抓拍机/半球/全景/其他'),
    (15, 'resolution',       '分辨率',     false, 'resolution class: 200W, 400W, 800W ...'),
    (16, 'longitude',        '经度',       false, 'longitude in the coordinate system of column 18'),
    (17, 'latitude',         '纬度',       false, 'latitude in the coordinate system of column 18'),
    (18, 'coord_system',     '坐标系',     false, 'WGS84 (default), CGCS2000, GCJ02 or BD09'),
    (19, 'azimuth',          '朝向',       false, 'orientation, degrees clockwise from north [0, 360)'),
    (20, 'fov_angle',        '视场角',     false, 'field-of-view angle in degrees (0, 360]'),
    (21, 'fov_range_m',      '可视距离',   false, 'useful viewing distance in metres'),
    (22, 'install_height_m', '安装高度',   false, 'installation height in metres'),
    (23, 'capabilities',     '能力集',     false, 'capabilities separated by | or ;'),
    (24, 'unit',             '管理单位',   false, 'management unit name; created when new'),
    (25, 'stream_url',       '取流地址',   false, 'stream URL (rtsp:// ...)'),
    (26, 'catalog',          '资源目录',   false, 'catalogue node codes separated by |');
COMMENT ON TABLE vms.ledger_template_column IS
    'columns of the ledger import/export template; a header may use the key or the Chinese header';

CREATE TABLE vms.import_job (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text,
    encoding        text,
    imported_by     text NOT NULL DEFAULT session_user,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    total_rows      bigint NOT NULL DEFAULT 0,
    loaded_rows     bigint NOT NULL DEFAULT 0,
    rejected_rows   bigint NOT NULL DEFAULT 0,
    created_devices bigint NOT NULL DEFAULT 0,
    created_units   bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE vms.import_job IS 'one row per ledger import: counts of rows read, loaded and rejected';

CREATE TABLE vms.import_rejection (
    job_id   bigint NOT NULL REFERENCES vms.import_job (id) ON DELETE CASCADE,
    line_no  bigint NOT NULL,
    reasons  text[] NOT NULL,
    fields   text[],
    PRIMARY KEY (job_id, line_no)
);
COMMENT ON TABLE vms.import_rejection IS 'every rejected import row with its line number (header = line 1) and reasons';

CREATE FUNCTION vms.try_float8(text) RETURNS float8
    AS 'MODULE_PATHNAME', 'vms_try_float8' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vms.try_float8(text) IS 'the number in the text, or NULL when it is not a plain finite decimal';

-- The row check of an import (issue 20), one pass in C over the records
-- staged in pg_temp._ledger_csv after the header line: the template's columns
-- (nullif(btrim(fields[coalesce(columns->>key, 0)]), '')),
-- the typed values, the reasons a row is rejected and the channel values
-- (ch_*) but the point; repeated flags a row without reasons whose code an
-- earlier such row had (as a code: every code repeated as text is flagged,
-- the import then finds those).  vms.ledger_import_rows calls it with the caller's
-- rights; it reads only the caller's own temporary table and, for the
-- catalog column, vms.catalog_node as the caller.
CREATE FUNCTION vms.ledger_check_rows(header_line bigint, columns jsonb, header_fields integer, point_types jsonb)
    RETURNS TABLE (line_no bigint, error text, nfields integer,
        code text, name text, device_code text, device_name text, manufacturer text, model text,
        ip_address text, port text, alias text, address text, civil_code text, street text, place_type text,
        point_type text, resolution text, longitude text, latitude text, coord_system text, azimuth text,
        fov_angle text, fov_range_m text, install_height_m text, capabilities text, unit text, stream_url text,
        catalog text, dev_code text, point_type_code text, port_i integer, lon_f float8, lat_f float8,
        azimuth_f float8, fov_angle_f float8, fov_range_f float8, height_f float8, crs text,
        reasons text[], ch_capabilities text[], ch_coord_source text, ch_overridden text[], repeated boolean)
    AS 'MODULE_PATHNAME', 'vms_ledger_check_rows' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION vms.ledger_check_rows(bigint, jsonb, integer, jsonb) IS
    'the row check of a ledger import over pg_temp._ledger_csv: template columns, typed values, reasons and channel values per record';

-- First load of an empty ledger (issue 20): the rows go in before the
-- channel table's secondary indexes and foreign keys, which are then built
-- and validated once, as COPY followed by CREATE INDEX would; row by row,
-- the indexes, foreign-key triggers and row-level security checks cost
-- several times the load itself.
--
-- SECURITY DEFINER: dropping and building indexes, and switching off the
-- foreign keys' check triggers, needs the owner.  vms.ledger_import_rows calls it (with the caller's rights, so it
-- is executable by PUBLIC like that function) after validation; it loads
-- the valid rows of pg_temp._ledger_checked, and only when everything the
-- caller's own INSERT would check holds:
--   * the acting role (vms._acting_role(): SET ROLE, else the session user)
--     has INSERT on vms.channel (else NULL: the ordinary path raises the
--     usual error);
--   * vms.channel is empty, checked under ACCESS EXCLUSIVE lock, held to
--     the end of the transaction (else NULL);
--   * row-level security: when the acting role is subject to it, every row
--     must pass the insert policy, vms.can_manage(code, civil_code), that is
--     vms._can_for(role, 'manage_ledger', ...): the same test is made for
--     all rows in one query (the role's grants joined to the rows, security
--     levels computed once) instead of once a row; a row that fails raises
--     the error the policy would (42501).  With row_security off for such a
--     role it returns NULL and the ordinary path raises.
-- It runs no code of the caller's: pg_temp._ledger_checked must be a plain
-- table of the session's own temporary schema (no rules, policies or
-- children) with the columns and types
-- vms.ledger_import_rows gives it (checked first), and it inserts only what
-- the caller could insert itself.  History is written by the channel's own
-- trigger, as the acting role (the statement trigger that notes the acting
-- role would name the owner here, so it is off for these statements and the
-- role set instead).  Indexes come back under their names and definitions,
-- clustering mark included.  Progress: a NOTICE per 100,000
-- rows, then one for the indexes.  Returns the rows loaded.
CREATE FUNCTION vms.ledger_first_load(job_id bigint) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
    SET maintenance_work_mem = '512MB' SET work_mem = '256MB' SET jit = off
    -- each chunk's rows by the line-number index: a generic plan (PL/pgSQL's
    -- after five chunks) may scan the whole staged table for every chunk
    SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    acting constant name := pg_catalog.pg_get_userbyid(vms._acting_role());
    chunk constant bigint := 100000;
    expected constant text[] := '{line_no:bigint,code:text,dev_code:text,name:text,alias:text,address:text,civil_code:text,street:text,place_type:text,point_type_code:text,resolution:text,"azimuth_f:double precision","fov_angle_f:double precision","fov_range_f:double precision","height_f:double precision",unit:text,stream_url:text,"ch_capabilities:text[]",ch_geom:geometry,ch_coord_source:text,"ch_overridden:text[]"}';
    idx record;
    indexes text[] := '{}';
    clustered text;
    fk record;
    fks text[] := '{}';
    acting_trigger "char";
    cells_trigger "char";
    bad text;
    lo bigint;
    hi bigint;
    loaded bigint := 0;
    valid bigint;
    nrows bigint;
    t0 timestamptz := clock_timestamp();
BEGIN
    -- the staged rows: a plain table of this session's, typed as the import makes it
    IF to_regclass('pg_temp._ledger_checked') IS NULL
       OR (SELECT c.relkind <> 'r' OR c.relhasrules OR c.relhassubclass OR c.relrowsecurity
                  OR c.relnamespace <> pg_catalog.pg_my_temp_schema()
             FROM pg_catalog.pg_class c WHERE c.oid = to_regclass('pg_temp._ledger_checked'))
       OR EXISTS (SELECT 1 FROM unnest(expected) e
                   WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                                      WHERE a.attrelid = to_regclass('pg_temp._ledger_checked') AND a.attnum > 0
                                        AND NOT a.attisdropped
                                        AND a.attname || ':' || pg_catalog.format_type(a.atttypid, NULL) = e)) THEN
        RAISE EXCEPTION 'no rows staged for a ledger load'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'vms.ledger_import and vms.ledger_import_file stage and check the rows, then call it.';
    END IF;
    IF NOT has_table_privilege(acting, 'vms.channel', 'INSERT') THEN
        RETURN NULL;
    END IF;
    -- a ledger with rows is never locked here: whoever may insert one
    -- channel could otherwise hold every reader off until they commit
    IF EXISTS (SELECT 1 FROM vms.channel) THEN
        RETURN NULL;
    END IF;
    LOCK TABLE vms.channel IN ACCESS EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM vms.channel) THEN
        RETURN NULL;
    END IF;
    IF (SELECT c.relrowsecurity AND NOT r.rolsuper AND NOT r.rolbypassrls AND NOT pg_has_role(acting, c.relowner, 'USAGE')
          FROM pg_catalog.pg_class c, pg_catalog.pg_roles r WHERE c.oid = 'vms.channel'::regclass AND r.rolname = acting) THEN
        IF current_setting('row_security') = 'off' THEN
            RETURN NULL;
        END IF;
        -- vms._can_for(acting, 'manage_ledger', code, civil_code) for every
        -- row at once: a channel being created has its own code and the
        -- region it will have; no catalogue or tag membership names it yet
        WITH g AS (
            SELECT g.scope_kind, g.scope_ref, g.max_level FROM vms.access_grant g
             WHERE g.revoked_at IS NULL AND pg_has_role(acting, vms.grantee_role(g.grantee, g.grantee_oid), 'MEMBER')
               AND g.valid_from <= now() AND (g.valid_until IS NULL OR g.valid_until > now())
               AND 'manage_ledger' = ANY (g.actions)),
        lv AS MATERIALIZED (SELECT l.code, l.level FROM vms.channel_security_levels() l)
        SELECT r.code INTO bad
          FROM pg_temp._ledger_checked r LEFT JOIN lv ON lv.code = r.code::vms.gbcode
         WHERE NOT EXISTS (
             SELECT 1 FROM g
              WHERE g.max_level >= coalesce(lv.level, 1)
                AND CASE g.scope_kind
                      WHEN 'all' THEN true
                      WHEN 'region' THEN r.civil_code LIKE g.scope_ref || '%'
                      WHEN 'channel' THEN g.scope_ref::vms.gbcode = r.code::vms.gbcode
                      WHEN 'catalog' THEN EXISTS (SELECT 1 FROM vms.catalog_member m
                                                   WHERE m.channel_code = r.code::vms.gbcode
                                                     AND m.node_code IN (SELECT vms.catalog_subtree(g.scope_ref::vms.gbcode)))
                      WHEN 'tag' THEN EXISTS (SELECT 1 FROM vms.channel_tag ct
                                               WHERE ct.channel_code = r.code::vms.gbcode
                                                 AND ct.tag_id IN (SELECT vms.tag_subtree(g.scope_ref::bigint)))
                    END)
         LIMIT 1;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'new row violates row-level security policy for table "channel"'
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('Role %s may not manage channel %s (manage_ledger).', acting, bad);
        END IF;
    END IF;

    -- secondary indexes and foreign keys off; the primary key stays (other
    -- tables' foreign keys hang on it, and codes arrive in its order)
    FOR idx IN SELECT i.indexrelid::regclass AS name, pg_get_indexdef(i.indexrelid) AS def, i.indisclustered
                 FROM pg_catalog.pg_index i
                WHERE i.indrelid = 'vms.channel'::regclass AND NOT i.indisprimary
                  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid)
                ORDER BY i.indexrelid LOOP
        indexes := indexes || idx.def;
        IF idx.indisclustered THEN
            clustered := (SELECT relname FROM pg_catalog.pg_class WHERE oid = idx.name);
        END IF;
        EXECUTE format('DROP INDEX %s', idx.name);
    END LOOP;
    -- Foreign keys: their per-row check triggers on vms.channel are off
    -- while the rows go in (only a superuser may, and the owner of a C
    -- extension is one; otherwise they stay on) and each key is checked
    -- after, in one query that also locks the referenced rows FOR KEY SHARE,
    -- as the triggers would.  Dropping and adding the constraints instead
    -- would lock vms.device, vms.point_type and vms.org_unit exclusively
    -- until the import commits.
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        FOR fk IN SELECT k.conname, t.tgname, a.attname AS col, k.confrelid::regclass AS ref, b.attname AS refcol
                    FROM pg_catalog.pg_constraint k
                    JOIN pg_catalog.pg_trigger t ON t.tgconstraint = k.oid AND t.tgrelid = k.conrelid
                    JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
                    JOIN pg_catalog.pg_attribute b ON b.attrelid = k.confrelid AND b.attnum = k.confkey[1]
                   WHERE k.conrelid = 'vms.channel'::regclass AND k.contype = 'f' AND cardinality(k.conkey) = 1
                     AND t.tgfoid = 'pg_catalog."RI_FKey_check_ins"'::regproc AND t.tgenabled = 'O'
                   ORDER BY k.conname, t.tgname LOOP
            EXECUTE format('ALTER TABLE vms.channel DISABLE TRIGGER %I', fk.tgname);
            fks := fks || ARRAY[ARRAY[fk.conname::text, fk.tgname::text, fk.col::text, fk.ref::text, fk.refcol::text]];
        END LOOP;
    END IF;

    acting_trigger := vms._trigger_set('vms.channel', 'channel_acting_role', 'D');
    -- the map cells' deltas (vms._channel_clusters_track) once for the whole
    -- load, after it, instead of once per chunk: every chunk's points touch
    -- nearly every cell, so ten chunks appended ten times the rows (1.15 s
    -- in one pass over the loaded rows against 2 s)
    cells_trigger := vms._trigger_set('vms.channel', 'channel_clusters_ins', 'D');
    PERFORM set_config('vms.acting_role', acting, true);
    SELECT min(line_no), max(line_no), count(*) INTO lo, hi, valid FROM pg_temp._ledger_checked;
    WHILE lo <= hi LOOP
        -- the channel row of a staged row as vms.ledger_import_rows's upsert
        -- takes it: the values its validation made (ch_*), the unit by name
        -- (the regress test import compares a first load with its upsert)
        INSERT INTO vms.channel AS c (code, device_code, name, alias, address, civil_code, street,
                place_type, point_type, resolution, azimuth, fov_angle, fov_range_m,
                install_height_m, capabilities, unit_id, stream_url, geom, coord_source, overridden)
            SELECT r.code::vms.gbcode AS code, r.dev_code::vms.gbcode AS device_code, r.name, r.alias, r.address,
                   r.civil_code, r.street, r.place_type, r.point_type_code AS point_type, r.resolution,
                   r.azimuth_f::real AS azimuth, r.fov_angle_f::real AS fov_angle,
                   r.fov_range_f::real AS fov_range_m, r.height_f::real AS install_height_m,
                   r.ch_capabilities AS capabilities, u.id AS unit_id, r.stream_url, r.ch_geom AS geom,
                   r.ch_coord_source AS coord_source, r.ch_overridden AS overridden
              FROM pg_temp._ledger_checked r
              LEFT JOIN vms.org_unit u ON u.name = r.unit
              WHERE r.line_no BETWEEN lo AND lo + chunk - 1
              -- key order: the primary key's pages are touched once; by the
              -- code's own type, as the upsert does (the text would sort by
              -- the database's collation, strcoll a comparison)
              ORDER BY r.code::vms.gbcode;
        GET DIAGNOSTICS nrows = ROW_COUNT;
        loaded := loaded + nrows;
        RAISE NOTICE 'import %: loaded % of % valid rows (% s)', job_id, loaded, valid,
            round(extract(epoch FROM clock_timestamp() - t0)::numeric, 1);
        lo := lo + chunk;
    END LOOP;
    -- back as it was (ENABLE, ENABLE ALWAYS, ENABLE REPLICA or DISABLE)
    PERFORM vms._trigger_set('vms.channel', 'channel_acting_role', acting_trigger);
    PERFORM vms._trigger_set('vms.channel', 'channel_clusters_ins', cells_trigger);
    -- what the trigger would have appended, had it fired for the chunks
    -- (its firing rule: 'O' unless the session replicates, 'A' always, 'R'
    -- only then); the ledger was empty, so its rows are the loaded ones
    IF (CASE cells_trigger WHEN 'A' THEN true WHEN 'D' THEN false
                           WHEN 'R' THEN current_setting('session_replication_role') = 'replica'
                           ELSE current_setting('session_replication_role') <> 'replica' END) THEN
        INSERT INTO vms.channel_cluster_delta (level, cx, cy, n, n_online, sx, sy, code, gone)
        SELECT c.level, c.cx, c.cy, c.n, c.n_online, c.sx, c.sy, c.code, c.gone
          FROM (SELECT array_agg(ST_X(w.geom_3857)) AS xs, array_agg(ST_Y(w.geom_3857)) AS ys,
                       array_fill(1, ARRAY[count(*)::int]) AS dn, array_agg(w.online::int) AS don,
                       array_agg(w.code::text) AS codes
                  FROM vms.channel w WHERE w.geom_3857 IS NOT NULL) a,
               vms._channel_cells(a.xs, a.ys, a.dn, a.don, a.codes) c;
    END IF;

    FOR i IN 1 .. cardinality(indexes) LOOP
        EXECUTE indexes[i];
    END LOOP;
    IF clustered IS NOT NULL THEN
        EXECUTE format('ALTER TABLE vms.channel CLUSTER ON %I', clustered);
    END IF;
    FOR i IN 1 .. coalesce(array_length(fks, 1), 0) LOOP
        EXECUTE format('SELECT 1 FROM %s p WHERE p.%I IN (SELECT c.%I FROM vms.channel c) FOR KEY SHARE OF p',
                       fks[i][4], fks[i][5], fks[i][3]);
        EXECUTE format('SELECT c.%I::text FROM vms.channel c WHERE c.%I IS NOT NULL
                         AND NOT EXISTS (SELECT 1 FROM %s p WHERE p.%I = c.%I) LIMIT 1',
                       fks[i][3], fks[i][3], fks[i][4], fks[i][5], fks[i][3]) INTO bad;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'insert or update on table "channel" violates foreign key constraint "%"', fks[i][1]
                USING ERRCODE = 'foreign_key_violation',
                      DETAIL = format('Key (%s)=(%s) is not present in table "%s".', fks[i][3], bad,
                                      (SELECT relname FROM pg_catalog.pg_class WHERE oid = fks[i][4]::regclass));
        END IF;
        EXECUTE format('ALTER TABLE vms.channel ENABLE TRIGGER %I', fks[i][2]);
    END LOOP;
    RAISE NOTICE 'import %: built % indexes, checked % foreign keys (% s)', job_id, cardinality(indexes),
        coalesce(array_length(fks, 1), 0),
        round(extract(epoch FROM clock_timestamp() - t0)::numeric, 1);
    RETURN loaded;
END $$;
COMMENT ON FUNCTION vms.ledger_first_load(bigint) IS
    'the first load of an empty ledger for vms.ledger_import_rows: the staged rows first, secondary indexes and foreign keys after, row-level security checked for all rows at once';

-- Validate and load the records in pg_temp._ledger_csv for job_id.
-- Public, not internal: vms.ledger_import and vms.ledger_import_file run
-- with the caller's rights (table privileges, row-level security) and call
-- it, and internal functions are the owner's only.  Called directly it can
-- do nothing its caller could not do with INSERT and UPDATE.
-- work_mem: the import sorts and hashes whole files; spilling a million wide
-- rows to disk costs more than the memory.  gin_pending_list_limit: the
-- keyword index takes new rows in large batches instead of every 4 MB.
-- jit: compiling the wide validation expressions costs more than it saves.
CREATE FUNCTION vms.ledger_import_rows(job_id bigint) RETURNS vms.import_job
    LANGUAGE plpgsql SET search_path FROM CURRENT SET work_mem = '256MB'
    SET gin_pending_list_limit = '64MB' SET jit = off AS $$
DECLARE
    header text[];
    hdr_line bigint;
    col jsonb := '{}';
    h text;
    k text;
    missing text;
    total bigint;
    chunk constant bigint := 100000;
    lo bigint;
    hi bigint;
    job vms.import_job;
    n bigint;
    t0 timestamptz := clock_timestamp();
    valid bigint;
    loaded bigint := 0;
    first_load boolean;
    repeats boolean;
    point_types jsonb := (SELECT jsonb_object_agg(alias, code) FROM
                            (SELECT code, code AS alias FROM vms.point_type
                             UNION SELECT code, name_zh FROM vms.point_type) m);
BEGIN
    SELECT fields, line_no INTO header, hdr_line FROM _ledger_csv ORDER BY line_no LIMIT 1;
    IF header IS NULL THEN
        RAISE EXCEPTION 'import file has no readable header row'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The first line must name the template columns; see vms.ledger_template_column.';
    END IF;
    FOR i IN 1 .. cardinality(header) LOOP
        h := btrim(header[i]);
        SELECT t.key INTO k FROM vms.ledger_template_column t WHERE t.key = lower(h) OR t.header = h;
        IF k IS NULL THEN
            RAISE EXCEPTION 'unknown column "%" in import header', h
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Column %s of the header is not a template column.', i),
                      HINT = 'Template columns are listed in vms.ledger_template_column (key or Chinese header).';
        END IF;
        IF col ? k THEN
            RAISE EXCEPTION 'column "%" appears twice in import header', h
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        col := col || jsonb_build_object(k, i);
    END LOOP;
    SELECT t.header INTO missing FROM vms.ledger_template_column t
     WHERE t.required AND NOT col ? t.key ORDER BY position LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'import header lacks required column "%"', missing
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Text columns of every data record (absent columns read as NULL), then
    -- typed values, point type code, the list of reasons and the channel
    -- values, in one pass: vms.ledger_check_rows (C) reads _ledger_csv and
    -- checks each row; the regress test import_check compares it with the
    -- SQL definition it replaced.  The raw fields stay in _ledger_csv: only
    -- rejected rows need them, and without them every later pass over
    -- _ledger_checked reads half as much.  ch_overridden lists the governed
    -- attributes the file sets (a later report never overwrites them); ch_*
    -- are the channel values both loads take (vms.ledger_first_load and the
    -- upsert below); a rejected row's values are never used.  Only the
    -- columns used below are kept (the others are the texts the typed values
    -- came from): a million rows of them wrote and read 50 MB more.
    CREATE TEMP TABLE _ledger_checked ON COMMIT DROP AS
    SELECT r.line_no, r.code, r.dev_code, r.name, r.alias, r.address, r.civil_code, r.street, r.place_type,
           r.point_type_code, r.resolution, r.azimuth_f, r.fov_angle_f, r.fov_range_f, r.height_f, r.unit,
           r.stream_url, r.catalog, r.device_name, r.manufacturer, r.model, r.ip_address, r.port_i,
           r.reasons, r.ch_capabilities, r.ch_coord_source, r.ch_overridden, r.repeated,
           CASE WHEN r.longitude IS NULL OR r.lon_f IS NULL OR r.lat_f IS NULL OR r.crs IS NULL THEN NULL
                -- vms.coord_convert returns WGS-84 and CGCS2000 points unchanged
                WHEN r.crs IN ('WGS84', 'CGCS2000') THEN ST_SetSRID(ST_MakePoint(r.lon_f, r.lat_f), 4326)
                ELSE (SELECT ST_SetSRID(ST_MakePoint(p[1], p[2]), 4326)
                        FROM vms.coord_convert(r.lon_f, r.lat_f, r.crs, 'WGS84') p) END AS ch_geom
      FROM vms.ledger_check_rows(hdr_line, col, cardinality(header), point_types) r;
    GET DIAGNOSTICS total = ROW_COUNT;
    RAISE NOTICE 'import %: read and checked % data rows (% s)', job_id, total,
        round(extract(epoch FROM clock_timestamp() - t0)::numeric, 1);

    -- statistics for the columns the plans below depend on (all forty cost
    -- more than the statements); without them the repeated codes are found
    -- by sorting every code instead of hashing them (reasons too: without
    -- its statistics "reasons = '{}'" is guessed at 0.5 % of the rows, and
    -- the million codes were sorted by the collation, 2-3 s)
    ANALYZE _ledger_checked (line_no, code, dev_code, unit, catalog, reasons);

    -- The same code twice: the last row wins, earlier ones are reported.
    -- Only when the check flagged a row (hashing a million codes here costs
    -- a second when none repeats).  One pass asks that and counts the
    -- rejected rows, so a clean file skips the join with _ledger_csv too.
    SELECT coalesce(bool_or(c.repeated), false), count(*) FILTER (WHERE c.reasons <> '{}')
      INTO repeats, n FROM _ledger_checked c;
    IF repeats THEN
        UPDATE _ledger_checked c SET reasons = c.reasons || format('code repeated at line %s, which is imported instead', d.last_line)
          FROM (SELECT code, max(line_no) AS last_line FROM _ledger_checked
                 WHERE reasons = '{}' GROUP BY code HAVING count(*) > 1) d
         WHERE c.code = d.code AND c.line_no < d.last_line AND c.reasons = '{}';
    END IF;

    IF repeats OR n > 0 THEN
        INSERT INTO vms.import_rejection (job_id, line_no, reasons, fields)
        SELECT job_id, c.line_no, c.reasons, r.fields
          FROM _ledger_checked c JOIN _ledger_csv r ON r.line_no = c.line_no
         WHERE c.reasons <> '{}';
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    UPDATE vms.import_job j SET total_rows = total, rejected_rows = n WHERE j.id = job_id;
    RAISE NOTICE 'import %: % rows rejected, see vms.import_rejection (% s)', job_id, n,
        round(extract(epoch FROM clock_timestamp() - t0)::numeric, 1);

    IF n > 0 THEN
        DELETE FROM _ledger_checked WHERE reasons <> '{}';
    END IF;
    valid := total - n;
    CREATE INDEX ON _ledger_checked (line_no);

    PERFORM set_config('vms.ledger_writer', 'system', true);

    INSERT INTO vms.org_unit (name)
    SELECT DISTINCT unit FROM _ledger_checked WHERE unit IS NOT NULL
    ON CONFLICT (name) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE vms.import_job j SET created_units = n WHERE j.id = job_id;

    -- Devices: new ones are created from the device columns; existing ones
    -- take the device columns that the file fills in.
    WITH upserted AS (
        INSERT INTO vms.device AS d (code, name, manufacturer, model, ip_address, port, civil_code, overridden)
        SELECT dev_code::vms.gbcode,
               coalesce(device_name, CASE WHEN dev_code = code THEN name END, dev_code),
               manufacturer, model, ip_address::inet, port_i, civil_code,
               array_remove(ARRAY[CASE WHEN device_name IS NOT NULL OR dev_code = code THEN 'name' END,
                                  CASE WHEN manufacturer IS NOT NULL THEN 'manufacturer' END,
                                  CASE WHEN model IS NOT NULL THEN 'model' END,
                                  CASE WHEN ip_address IS NOT NULL THEN 'ip_address' END,
                                  -- a valid row has a port number exactly when it has a port
                                  CASE WHEN port_i IS NOT NULL THEN 'port' END,
                                  CASE WHEN civil_code IS NOT NULL THEN 'civil_code' END], NULL)
          FROM _ledger_checked
         -- each device from its last row: found by hashing, not by sorting
         -- every row as DISTINCT ON (dev_code) ... line_no DESC would
         WHERE line_no IN (SELECT max(line_no) FROM _ledger_checked GROUP BY dev_code::vms.gbcode)
         ORDER BY dev_code
        ON CONFLICT (code) DO UPDATE SET
            name = CASE WHEN EXCLUDED.overridden @> '{name}' THEN EXCLUDED.name ELSE d.name END,
            manufacturer = coalesce(EXCLUDED.manufacturer, d.manufacturer),
            model = coalesce(EXCLUDED.model, d.model),
            ip_address = coalesce(EXCLUDED.ip_address, d.ip_address),
            port = coalesce(EXCLUDED.port, d.port),
            civil_code = coalesce(EXCLUDED.civil_code, d.civil_code),
            overridden = ARRAY(SELECT DISTINCT unnest(d.overridden || EXCLUDED.overridden) ORDER BY 1)
        -- a device the file leaves as it is keeps its row: no new version,
        -- no index entries, no history to compare
        WHERE (d.name, d.manufacturer, d.model, d.ip_address, d.port, d.civil_code)
              IS DISTINCT FROM
              (CASE WHEN EXCLUDED.overridden @> '{name}' THEN EXCLUDED.name ELSE d.name END,
               coalesce(EXCLUDED.manufacturer, d.manufacturer), coalesce(EXCLUDED.model, d.model),
               coalesce(EXCLUDED.ip_address, d.ip_address), coalesce(EXCLUDED.port, d.port),
               coalesce(EXCLUDED.civil_code, d.civil_code))
              OR NOT d.overridden @> EXCLUDED.overridden
        RETURNING (xmax = 0) AS created)
    SELECT count(*) FILTER (WHERE created) INTO n FROM upserted;
    UPDATE vms.import_job j SET created_devices = n WHERE j.id = job_id;
    RAISE NOTICE 'import %: % devices created (% s)', job_id, n,
        round(extract(epoch FROM clock_timestamp() - t0)::numeric, 1);

    -- A first load into an empty ledger takes vms.ledger_first_load: rows
    -- first, secondary indexes and foreign keys after.  Anything else, or a
    -- caller it does not serve (NULL), upserts chunk by chunk with the
    -- caller's rights.  (Two statements: the query of the first must be
    -- closed before the second alters the table.)
    first_load := NOT EXISTS (SELECT 1 FROM vms.channel);
    IF first_load THEN
        loaded := vms.ledger_first_load(job_id);
        first_load := loaded IS NOT NULL;
        loaded := coalesce(loaded, 0);
    END IF;
    IF first_load THEN
        UPDATE vms.import_job j SET loaded_rows = loaded WHERE j.id = job_id;
        INSERT INTO vms.catalog_member (node_code, channel_code)
        SELECT btrim(x)::vms.gbcode, r.code::vms.gbcode
          FROM _ledger_checked r, regexp_split_to_table(r.catalog, '\|') x
         WHERE r.catalog IS NOT NULL
        ON CONFLICT DO NOTHING;
    ELSE
        SELECT min(line_no), max(line_no) INTO lo, hi FROM _ledger_checked;
        WHILE lo <= hi LOOP
            INSERT INTO vms.channel AS c (code, device_code, name, alias, address, civil_code, street,
                    place_type, point_type, resolution, azimuth, fov_angle, fov_range_m,
                    install_height_m, capabilities, unit_id, stream_url, geom, coord_source, overridden)
            SELECT n.* FROM (
            -- the channel row of a staged row: the values the validation made
            -- (ch_*), the unit by name
            SELECT r.code::vms.gbcode AS code, r.dev_code::vms.gbcode AS device_code, r.name, r.alias, r.address,
                   r.civil_code, r.street, r.place_type, r.point_type_code AS point_type, r.resolution,
                   r.azimuth_f::real AS azimuth, r.fov_angle_f::real AS fov_angle,
                   r.fov_range_f::real AS fov_range_m, r.height_f::real AS install_height_m,
                   r.ch_capabilities AS capabilities, u.id AS unit_id, r.stream_url, r.ch_geom AS geom,
                   r.ch_coord_source AS coord_source, r.ch_overridden AS overridden
              FROM _ledger_checked r
              LEFT JOIN vms.org_unit u ON u.name = r.unit
             WHERE r.line_no BETWEEN lo AND lo + chunk - 1) n
             -- a re-imported row that changes nothing (as far as the caller
             -- sees) does not reach the upsert: no row lock, no new version, no
             -- index entries, no history to diff.  The WHERE of DO UPDATE below
             -- says the same for the rows it does see.
             WHERE NOT EXISTS (
                 SELECT 1 FROM vms.channel o
                  WHERE o.code = n.code
                    AND (o.device_code, o.name, o.alias, o.address, o.civil_code, o.street, o.place_type,
                         o.point_type, o.resolution, o.azimuth, o.fov_angle, o.fov_range_m, o.install_height_m,
                         o.capabilities, o.unit_id, o.stream_url, o.geom, o.coord_source)
                        IS NOT DISTINCT FROM
                        (n.device_code, n.name, coalesce(n.alias, o.alias), coalesce(n.address, o.address),
                         coalesce(n.civil_code, o.civil_code), coalesce(n.street, o.street),
                         coalesce(n.place_type, o.place_type), coalesce(n.point_type, o.point_type),
                         coalesce(n.resolution, o.resolution), coalesce(n.azimuth, o.azimuth),
                         coalesce(n.fov_angle, o.fov_angle), coalesce(n.fov_range_m, o.fov_range_m),
                         coalesce(n.install_height_m, o.install_height_m),
                         CASE WHEN n.overridden @> '{capabilities}' THEN n.capabilities ELSE o.capabilities END,
                         coalesce(n.unit_id, o.unit_id), coalesce(n.stream_url, o.stream_url),
                         coalesce(n.geom, o.geom), coalesce(n.coord_source, o.coord_source))
                    AND o.overridden @> n.overridden)
             ORDER BY n.code   -- key order: index pages are touched once, not at random
            ON CONFLICT (code) DO UPDATE SET
                device_code = EXCLUDED.device_code,
                name = EXCLUDED.name,
                alias = coalesce(EXCLUDED.alias, c.alias),
                address = coalesce(EXCLUDED.address, c.address),
                civil_code = coalesce(EXCLUDED.civil_code, c.civil_code),
                street = coalesce(EXCLUDED.street, c.street),
                place_type = coalesce(EXCLUDED.place_type, c.place_type),
                point_type = coalesce(EXCLUDED.point_type, c.point_type),
                resolution = coalesce(EXCLUDED.resolution, c.resolution),
                azimuth = coalesce(EXCLUDED.azimuth, c.azimuth),
                fov_angle = coalesce(EXCLUDED.fov_angle, c.fov_angle),
                fov_range_m = coalesce(EXCLUDED.fov_range_m, c.fov_range_m),
                install_height_m = coalesce(EXCLUDED.install_height_m, c.install_height_m),
                capabilities = CASE WHEN EXCLUDED.overridden @> '{capabilities}' THEN EXCLUDED.capabilities ELSE c.capabilities END,
                unit_id = coalesce(EXCLUDED.unit_id, c.unit_id),
                stream_url = coalesce(EXCLUDED.stream_url, c.stream_url),
                geom = coalesce(EXCLUDED.geom, c.geom),
                coord_source = coalesce(EXCLUDED.coord_source, c.coord_source),
                overridden = ARRAY(SELECT DISTINCT unnest(c.overridden || EXCLUDED.overridden) ORDER BY 1)
            -- a re-imported row that changes nothing is left alone: no new row
            -- version, no entries in the indexes, no history row to diff
            WHERE (c.device_code, c.name, c.alias, c.address, c.civil_code, c.street, c.place_type, c.point_type,
                   c.resolution, c.azimuth, c.fov_angle, c.fov_range_m, c.install_height_m, c.capabilities,
                   c.unit_id, c.stream_url, c.geom, c.coord_source)
                  IS DISTINCT FROM
                  (EXCLUDED.device_code, EXCLUDED.name, coalesce(EXCLUDED.alias, c.alias),
                   coalesce(EXCLUDED.address, c.address), coalesce(EXCLUDED.civil_code, c.civil_code),
                   coalesce(EXCLUDED.street, c.street), coalesce(EXCLUDED.place_type, c.place_type),
                   coalesce(EXCLUDED.point_type, c.point_type), coalesce(EXCLUDED.resolution, c.resolution),
                   coalesce(EXCLUDED.azimuth, c.azimuth), coalesce(EXCLUDED.fov_angle, c.fov_angle),
                   coalesce(EXCLUDED.fov_range_m, c.fov_range_m),
                   coalesce(EXCLUDED.install_height_m, c.install_height_m),
                   CASE WHEN EXCLUDED.overridden @> '{capabilities}' THEN EXCLUDED.capabilities ELSE c.capabilities END,
                   coalesce(EXCLUDED.unit_id, c.unit_id), coalesce(EXCLUDED.stream_url, c.stream_url),
                   coalesce(EXCLUDED.geom, c.geom), coalesce(EXCLUDED.coord_source, c.coord_source))
                  OR NOT c.overridden @> EXCLUDED.overridden;   -- as a set: the first load stores it unsorted
            -- loaded: valid rows taken in, whether they changed the ledger or not
            SELECT loaded + count(*) INTO loaded FROM _ledger_checked r
             WHERE r.line_no BETWEEN lo AND lo + chunk - 1;

            INSERT INTO vms.catalog_member (node_code, channel_code)
            SELECT btrim(x)::vms.gbcode, r.code::vms.gbcode
              FROM _ledger_checked r, regexp_split_to_table(r.catalog, '\|') x
             WHERE r.catalog IS NOT NULL AND r.line_no BETWEEN lo AND lo + chunk - 1
            ON CONFLICT DO NOTHING;

            UPDATE vms.import_job j SET loaded_rows = loaded WHERE j.id = job_id;
            RAISE NOTICE 'import %: loaded % of % valid rows (% s)', job_id, loaded, valid,
                round(extract(epoch FROM clock_timestamp() - t0)::numeric, 1);
            lo := lo + chunk;
        END LOOP;
    END IF;

    PERFORM set_config('vms.ledger_writer', '', true);
    UPDATE vms.import_job j SET finished_at = clock_timestamp() WHERE j.id = job_id RETURNING * INTO job;
    DROP TABLE _ledger_checked;
    RETURN job;
END $$;
COMMENT ON FUNCTION vms.ledger_import_rows(bigint) IS 'validate and load the template rows staged in pg_temp._ledger_csv (line_no, fields, error) for an import job; the second half of vms.ledger_import';

CREATE FUNCTION vms.ledger_import(data bytea, encoding text DEFAULT 'auto', source text DEFAULT NULL)
    RETURNS vms.import_job
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    job_id bigint;
    job vms.import_job;
BEGIN
    INSERT INTO vms.import_job (source, encoding) VALUES (coalesce(source, 'upload'), encoding)
    RETURNING id INTO job_id;
    -- Big imports stage rows in temp tables; 8 MB of local buffers makes
    -- every pass over them go to disk.  The setting can only grow before the
    -- session's first temp table, so a later import keeps what it has.
    IF current_setting('temp_buffers') = '8MB' AND to_regclass('pg_temp._ledger_csv') IS NULL THEN
        BEGIN
            PERFORM set_config('temp_buffers', '512MB', false);
        EXCEPTION WHEN invalid_parameter_value OR cant_change_runtime_param THEN
            NULL;
        END;
    END IF;
    IF to_regclass('pg_temp._ledger_csv') IS NOT NULL THEN
        DROP TABLE _ledger_csv;   -- left by an earlier failed import in this session
    END IF;
    CREATE TEMP TABLE _ledger_csv ON COMMIT DROP AS SELECT * FROM vms.csv_rows(data, encoding);
    job := vms.ledger_import_rows(job_id);
    DROP TABLE _ledger_csv;
    RETURN job;
END $$;
COMMENT ON FUNCTION vms.ledger_import(bytea, text, text) IS
    'import ledger template rows from CSV content (UTF8/GB18030/auto): valid rows upserted, bad rows kept in vms.import_rejection';

CREATE FUNCTION vms.ledger_import_file(path text, encoding text DEFAULT 'auto')
    RETURNS vms.import_job
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    job_id bigint;
    job vms.import_job;
BEGIN
    INSERT INTO vms.import_job (source, encoding) VALUES (path, encoding) RETURNING id INTO job_id;
    -- Big imports stage rows in temp tables; 8 MB of local buffers makes
    -- every pass over them go to disk.  The setting can only grow before the
    -- session's first temp table, so a later import keeps what it has.
    IF current_setting('temp_buffers') = '8MB' AND to_regclass('pg_temp._ledger_csv') IS NULL THEN
        BEGIN
            PERFORM set_config('temp_buffers', '512MB', false);
        EXCEPTION WHEN invalid_parameter_value OR cant_change_runtime_param THEN
            NULL;
        END;
    END IF;
    IF to_regclass('pg_temp._ledger_csv') IS NOT NULL THEN
        DROP TABLE _ledger_csv;   -- left by an earlier failed import in this session
    END IF;
    CREATE TEMP TABLE _ledger_csv ON COMMIT DROP AS SELECT * FROM vms.csv_rows_file(path, encoding);
    job := vms.ledger_import_rows(job_id);
    DROP TABLE _ledger_csv;
    RETURN job;
END $$;
COMMENT ON FUNCTION vms.ledger_import_file(text, text) IS
    'vms.ledger_import over a server file (needs pg_read_server_files)';

-- Export in the same template: COPY (SELECT * FROM vms.ledger_export) TO ... CSV HEADER
-- The catalogue codes are joined in text order under "C" (byte order): for
-- 20-digit codes the same order as gbcode's, but it parses without gbcode's
-- btree operator class, which pg_upgrade's restore (pg_dump --binary-upgrade)
-- creates after this view: an ORDER BY, DISTINCT, GROUP BY or UNION on a gbcode
-- in a view or a SQL-standard function body fails there
-- (test/scripts/pg_upgrade_check.sh).
CREATE VIEW vms.ledger_export WITH (security_invoker = true) AS
SELECT c.code::text AS "监控点编码", c.name AS "监控点名称", c.device_code::text AS "设备编码",
       d.name AS "设备名称", d.manufacturer AS "厂商", d.model AS "型号",
       host(d.ip_address) AS "IP地址", d.port AS "端口", c.alias AS "别名", c.address AS "安装地址",
       c.civil_code AS "行政区划", c.street AS "所属街镇", c.place_type AS "场所类型",
       c.point_type AS "点位类型", c.resolution AS "分辨率",
       round(ST_X(c.geom)::numeric, 7) AS "经度", round(ST_Y(c.geom)::numeric, 7) AS "纬度",
       CASE WHEN c.geom IS NOT NULL THEN 'WGS84' END AS "坐标系",
       c.azimuth AS "朝向", c.fov_angle AS "视场角", c.fov_range_m AS "可视距离",
       c.install_height_m AS "安装高度", nullif(array_to_string(c.capabilities, '|'), '') AS "能力集",
       u.name AS "管理单位", c.stream_url AS "取流地址",
       (SELECT string_agg(m.node_code::text, '|' ORDER BY m.node_code::text COLLATE "C") FROM vms.catalog_member m
         WHERE m.channel_code = c.code) AS "资源目录"
  FROM vms.channel c
  JOIN vms.device d ON d.code = c.device_code
  LEFT JOIN vms.org_unit u ON u.id = c.unit_id;
COMMENT ON VIEW vms.ledger_export IS
    'the ledger in the import template: COPY (SELECT * FROM vms.ledger_export ORDER BY 1) TO STDOUT WITH (FORMAT csv, HEADER)';
