-- Point governance (点位治理): rules stored as data, run over the ledger or a
-- region, producing tasks with a life cycle and metrics per unit and region.

CREATE TABLE vms.governance_rule (
    code        text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('required_fields', 'code_role', 'civil_code_mismatch',
                    'coordinates', 'outside_region', 'same_point', 'duplicate_name', 'naming_pattern', 'stale')),
    description text NOT NULL,
    severity    smallint NOT NULL DEFAULT 3 REFERENCES vms.alarm_level (level),
    enabled     boolean NOT NULL DEFAULT true,
    params      jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE vms.governance_rule IS 'governance rules as data: a kind of check, its parameters, severity (1-4 as alarm levels) and whether it runs';
COMMENT ON COLUMN vms.governance_rule.params IS 'required_fields: {"fields": [...], "point_types": [...]}; same_point: {"min_count": n}; stale: {"days": n}';

INSERT INTO vms.governance_rule (code, kind, description, severity, params) VALUES
    ('required_fields', 'required_fields', '必填属性缺失: required attributes missing', 3,
        '{"fields": ["name", "address", "civil_code", "point_type", "geom", "unit_id"]}'),
    ('capture_required_fields', 'required_fields', '抓拍机必填属性缺失: capture cameras also need resolution, azimuth and capabilities', 3,
        '{"fields": ["resolution", "azimuth", "capabilities"], "point_types": ["capture"]}'),
    ('azimuth_missing', 'required_fields', '朝向缺失: orientation missing', 4, '{"fields": ["azimuth"]}'),
    ('place_type_missing', 'required_fields', '场所类型缺失: place type missing', 4, '{"fields": ["place_type"]}'),
    ('code_role', 'code_role', '编码不合规: code is not a camera code, or has an unknown industry or a reserved network identifier', 2, '{"types": [131, 132]}'),
    ('civil_code_mismatch', 'civil_code_mismatch', '行政区划与位置不符: civil code disagrees with the region containing the location', 3, '{}'),
    ('coordinates', 'coordinates', '经纬度异常: coordinates missing, zero, outside China or swapped', 2, '{}'),
    ('outside_region', 'outside_region', '位置超出所属区域: location outside the declared region', 3, '{}'),
    ('same_point', 'same_point', '点位重叠: many channels at exactly the same point', 4, '{"min_count": 3}'),
    ('duplicate_name', 'duplicate_name', '名称重复: the same name used twice within a unit', 4, '{}'),
    ('naming_pattern', 'naming_pattern', '命名不规范: name does not follow the naming pattern of its region', 4, '{}'),
    ('stale', 'stale', '信息陈旧: record not updated for a long time', 4, '{"days": 365}');

CREATE TABLE vms.naming_pattern (
    civil_prefix text PRIMARY KEY CHECK (civil_prefix ~ '^([0-9]{2}){0,4}$'),
    pattern      text NOT NULL,
    example      text,
    description  text
);
COMMENT ON TABLE vms.naming_pattern IS 'naming patterns (regular expressions) per civil region prefix; the longest matching prefix applies; empty prefix = everywhere';

CREATE FUNCTION vms._naming_pattern_check() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM '' ~ NEW.pattern;   -- refuse patterns the regex engine cannot compile
    IF NEW.example IS NOT NULL AND NEW.example !~ NEW.pattern THEN
        RAISE EXCEPTION 'naming pattern does not match its own example "%"', NEW.example
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._naming_pattern_check() IS 'internal: patterns compile and match their example';
CREATE TRIGGER naming_pattern_check BEFORE INSERT OR UPDATE ON vms.naming_pattern
    FOR EACH ROW EXECUTE FUNCTION vms._naming_pattern_check();

CREATE TABLE vms.governance_run (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope        text,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    run_by       text NOT NULL DEFAULT session_user,
    channels     bigint,
    findings     bigint,
    opened       bigint,
    reopened     bigint,
    closed       bigint,
    incremental  boolean NOT NULL DEFAULT false,
    snapshot     pg_snapshot,
    since        timestamptz
);
COMMENT ON TABLE vms.governance_run IS 'one row per governance run: scope and counts of findings, tasks opened, reopened and closed';
COMMENT ON COLUMN vms.governance_run.incremental IS 'a run of vms.governance_run_changed over the channels changed since the run before (channels: how many it covered)';
COMMENT ON COLUMN vms.governance_run.snapshot IS 'the transactions the run''s first statement saw (pg_current_snapshot()): a change by one from its xmin on is one the next incremental run takes';
COMMENT ON COLUMN vms.governance_run.since IS 'no transaction the snapshot leaves out started before this (the oldest open transaction then): ledger history from here on holds every change the run did not see';

CREATE TABLE vms.governance_task (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_code   vms.gbcode NOT NULL REFERENCES vms.channel (code) ON DELETE CASCADE,
    rule_code      text NOT NULL REFERENCES vms.governance_rule (code) ON DELETE CASCADE,
    state          text NOT NULL DEFAULT 'open'
                   CHECK (state IN ('open', 'assigned', 'fixed', 'verified', 'ignored')),
    severity       smallint NOT NULL,
    detail         text,
    unit_id        bigint REFERENCES vms.org_unit (id),
    civil_code     text,
    first_found_at timestamptz NOT NULL DEFAULT now(),
    last_found_at  timestamptz NOT NULL DEFAULT now(),
    found_by_run   bigint REFERENCES vms.governance_run (id),
    assigned_to    text,
    assigned_at    timestamptz,
    fixed_at       timestamptz,
    fixed_by       text,
    closed_at      timestamptz,
    closed_by_run  bigint REFERENCES vms.governance_run (id),
    ignore_reason  text,
    CHECK (state <> 'ignored' OR ignore_reason IS NOT NULL)
) WITH (fillfactor = 50);   -- a run rewrites every live task it finds: room on the page for a HOT update
-- one live task per channel and rule: a re-run never duplicates it
CREATE UNIQUE INDEX governance_task_live_idx ON vms.governance_task (channel_code, rule_code)
    WHERE state IN ('open', 'assigned', 'fixed', 'ignored');
CREATE INDEX governance_task_unit_idx ON vms.governance_task (unit_id, state);
COMMENT ON TABLE vms.governance_task IS 'governance tasks: open → assigned → fixed → verified (closed by a run that no longer finds the problem), or ignored with a reason';

-- The groups the rules duplicate_name and same_point count, as the last run
-- over the whole ledger saw them (issue 20): a full run writes them all, an
-- incremental run recounts the groups a changed channel joined or left and
-- reads the others' counts here instead of counting their members again
-- (in a ledger of a few thousand names per unit the changed channels'
-- groups hold most of it).  Groups of one are not kept.
CREATE TABLE vms.governance_name_group (
    unit_id  bigint NOT NULL,
    name     text NOT NULL,
    channels bigint NOT NULL
);
-- by the name's digest: a name may be longer than a btree entry can hold
-- (one row per unit and name, as the runs group them)
CREATE INDEX governance_name_group_key ON vms.governance_name_group (unit_id, md5(name));
COMMENT ON TABLE vms.governance_name_group IS 'internal: channels per unit and name where two or more share them, as the last governance run over the whole ledger counted (duplicate_name)';
-- (a channel at POINT EMPTY has no point, and shares none)
CREATE TABLE vms.governance_point_group (
    geom     geometry(Point, 4326) NOT NULL CHECK (NOT ST_IsEmpty(geom)),
    channels bigint NOT NULL
);
CREATE INDEX governance_point_group_geom_idx ON vms.governance_point_group USING gist (geom);
COMMENT ON TABLE vms.governance_point_group IS 'internal: channels per point where two or more share it, as the last governance run over the whole ledger counted (same_point)';
-- the channels of a unit and name: an incremental run takes the members of
-- the groups a changed channel joined or left (without it, a pass over the
-- ledger: 0.25-0.5 s of 1.6 s at 1.1M channels); it also serves every
-- lookup by unit alone (unit filters, the foreign key from vms.unit), for
-- which a separate index on unit_id was kept before.  The name goes in as
-- its digest: a btree entry holds at most 2,704 bytes, and a ledger name
-- has no such limit (lookups compare the digest, then the name)
CREATE INDEX channel_unit_name_idx ON vms.channel (unit_id, md5(name));

-- vms.gbcode_check's details joined by '; ' (NULL: the code is fine), as
-- one scalar call: the rule code_role runs it once a channel (issue 20)
CREATE FUNCTION vms._gbcode_check_details(vms.gbcode) RETURNS text
    AS 'MODULE_PATHNAME', 'gbcode_check_details' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vms._gbcode_check_details(vms.gbcode) IS
    'internal: the details of vms.gbcode_check joined by "; " in its order, NULL when the code is fine';

-- The rules checked channel by channel (required_fields, code_role,
-- coordinates, stale) as one SQL expression over alias c: the detail of the
-- finding, or NULL.  vms.governance_findings runs one of them; a governance
-- run checks all of them in one scan of the ledger (issue 20).
CREATE FUNCTION vms._governance_row_expr(rule vms.governance_rule) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    p jsonb := rule.params;
    types text;
BEGIN
    CASE rule.kind
    WHEN 'required_fields' THEN
        RETURN format('CASE WHEN %s THEN ''missing: '' || nullif(array_to_string(%s, '', ''), '''') END',
                      CASE WHEN p ? 'point_types'
                           THEN format('c.point_type = ANY (%L::text[])', ARRAY(SELECT jsonb_array_elements_text(p -> 'point_types')))
                           ELSE 'true' END,
                      vms._missing_fields_expr(ARRAY(SELECT jsonb_array_elements_text(p -> 'fields'))));
    WHEN 'code_role' THEN
        types := format('%L::int[]', ARRAY(SELECT (jsonb_array_elements_text(p -> 'types'))::int));
        -- vms._gbcode_check_details: vms.gbcode_check's details joined
        RETURN format($e$CASE WHEN vms.gbcode_type(c.code) <> ALL (%1$s) OR vms._gbcode_check_details(c.code) IS NOT NULL
            THEN concat_ws('; ',
                   CASE WHEN vms.gbcode_type(c.code) <> ALL (%1$s)
                        THEN format('type code %%s is not a camera type', lpad(vms.gbcode_type(c.code)::text, 3, '0')) END,
                   vms._gbcode_check_details(c.code)) END$e$, types);
    WHEN 'coordinates' THEN
        -- (POINT EMPTY, which geometry(Point) accepts, is no location either)
        RETURN $e$CASE WHEN c.geom IS NULL OR ST_IsEmpty(c.geom) THEN 'location missing'
            WHEN NOT (ST_X(c.geom) BETWEEN 73.5 AND 135.1 AND ST_Y(c.geom) BETWEEN 3.8 AND 53.6) THEN
                CASE WHEN ST_X(c.geom) = 0 AND ST_Y(c.geom) = 0 THEN 'location is (0, 0)'
                     WHEN ST_X(c.geom) BETWEEN 3.8 AND 53.6 AND ST_Y(c.geom) BETWEEN 73.5 AND 135.1
                         THEN format('longitude and latitude look swapped (%s, %s)', ST_X(c.geom), ST_Y(c.geom))
                     ELSE format('location (%s, %s) is outside China', ST_X(c.geom), ST_Y(c.geom)) END END$e$;
    WHEN 'stale' THEN
        RETURN format($e$CASE WHEN c.updated_at < now() - make_interval(days => %s)
            THEN format('not updated since %%s', to_char(c.updated_at, 'YYYY-MM-DD')) END$e$,
                      coalesce((p ->> 'days')::int, 365));
    ELSE
        RETURN NULL;
    END CASE;
END $$;
COMMENT ON FUNCTION vms._governance_row_expr(vms.governance_rule) IS
    'internal: a rule checked channel by channel as an SQL expression over alias c (its finding''s detail, or NULL)';

-- Findings of one rule: (channel_code, detail) for channels in scope.
-- Each kind is one set-based query; scope is a civil-code prefix or NULL,
-- codes a list of channels or NULL (all).  The rules that compare channels
-- with each other (same_point, duplicate_name) find channels in scope and
-- listed only, counting each one's point or unit and name in the whole
-- ledger (a channel in a prefix shares its point or unit and name with
-- channels outside it as much as with those in it: a run over a prefix
-- finds for its channels what a run over the ledger finds).  The
-- channels taken, here and in vms._governance_run: the ledger when codes
-- is NULL, else each listed channel through the primary key (a LATERAL
-- lookup behind OFFSET 0: with = ANY over the 30,000 codes of an
-- incremental run the planner scanned the whole ledger in every query).
-- An incremental run finds civil_code_mismatch, outside_region,
-- naming_pattern, duplicate_name and same_point in vms._governance_run
-- itself, over the rows it took, in the same words (regress governance and
-- bench 35 compare it with a full run).
CREATE FUNCTION vms._governance_findings(rule vms.governance_rule, scope text, codes vms.gbcode[])
    RETURNS TABLE (channel_code vms.gbcode, detail text)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    p jsonb := rule.params;
BEGIN
    IF rule.kind IN ('required_fields', 'code_role', 'coordinates', 'stale') THEN
        -- OFFSET 0 keeps the expression computed once a channel
        RETURN QUERY EXECUTE format($q$
        SELECT s.code, s.detail
          FROM (SELECT c.code, %s AS detail FROM (SELECT c.* FROM vms.channel c WHERE $2 IS NULL
                 UNION ALL SELECT l.* FROM (SELECT DISTINCT u.code FROM unnest($2::vms.gbcode[]) u(code)) u
                 CROSS JOIN LATERAL (SELECT c.* FROM vms.channel c WHERE c.code = u.code OFFSET 0) l) c
                 WHERE ($1 IS NULL OR c.civil_code LIKE $1 || '%%') OFFSET 0) s
         WHERE s.detail IS NOT NULL $q$, vms._governance_row_expr(rule))
        USING scope, codes;
        RETURN;
    END IF;
    CASE rule.kind
    WHEN 'civil_code_mismatch' THEN
        -- the most specific regions whose boundaries cover the point: a
        -- finding when none of them agrees with the civil code (one code
        -- a prefix of the other), naming the first of them by code
        IF codes IS NULL THEN
            -- over the ledger, region by region (issue 20): each boundary
            -- read once (ST_SetSRID copies it out of TOAST) and tested only
            -- against the channels in its box whose civil code disagrees
            -- with it, the channels of one region in a row (PostGIS keeps
            -- the polygon prepared).  Channel by channel, every test read
            -- its boundary from TOAST again and the regions alternated:
            -- 15 us a channel with 16 streets of 400 vertices.  Whether a
            -- more specific or an agreeing region covers the channel too is
            -- asked of vms.region through its boundary's index (the regions
            -- of the CTE have none: read all of them, a province's thousands
            -- of streets, for every candidate, 40,000 far-away streets took
            -- a minute over 108,000 channels).  The CTE copies only the
            -- boundaries whose box holds a channel (probing the channels'
            -- index): the others cover none.
            RETURN QUERY
            WITH g AS MATERIALIZED (
                SELECT g.civil_code, g.name, g.level, ST_SetSRID(g.boundary, ST_SRID(g.boundary)) AS boundary
                  FROM vms.region g WHERE g.boundary IS NOT NULL
                   AND EXISTS (SELECT 1 FROM vms.channel c WHERE c.geom && g.boundary))
            SELECT DISTINCT ON (c.code) c.code,
                   format('recorded civil code %s, but the location lies in %s (%s)', c.civil_code, g.civil_code, g.name)
              FROM g CROSS JOIN LATERAL (
                       SELECT c.code, c.civil_code, c.geom FROM vms.channel c
                        WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
                          AND NOT (g.civil_code LIKE c.civil_code || '%' OR c.civil_code LIKE g.civil_code || '%')
                          AND ST_Covers(g.boundary, c.geom) AND NOT ST_IsEmpty(c.geom) OFFSET 0) c
             WHERE NOT EXISTS (SELECT 1 FROM vms.region h
                                WHERE h.boundary IS NOT NULL
                                  AND (h.level > g.level
                                       OR h.level = g.level AND (h.civil_code LIKE c.civil_code || '%'
                                                                 OR c.civil_code LIKE h.civil_code || '%'))
                                  AND ST_Covers(h.boundary, c.geom))
             ORDER BY c.code, g.civil_code;
        ELSE
            RETURN QUERY
            SELECT c.code, format('recorded civil code %s, but the location lies in %s (%s)', c.civil_code, r.civil_code, r.name)
              FROM (SELECT l.* FROM (SELECT DISTINCT u.code FROM unnest(codes) u(code)) u
                     CROSS JOIN LATERAL (SELECT c.* FROM vms.channel c WHERE c.code = u.code OFFSET 0) l) c
              CROSS JOIN LATERAL (SELECT g.civil_code, g.name FROM vms.region g
                                   WHERE g.boundary IS NOT NULL AND ST_Covers(g.boundary, c.geom)
                                   ORDER BY g.level DESC, (g.civil_code LIKE c.civil_code || '%' OR c.civil_code LIKE g.civil_code || '%') DESC,
                                            g.civil_code LIMIT 1) r
             WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
               AND c.geom IS NOT NULL AND NOT ST_IsEmpty(c.geom) AND c.civil_code IS NOT NULL
               AND NOT (r.civil_code LIKE c.civil_code || '%' OR c.civil_code LIKE r.civil_code || '%');
        END IF;
    WHEN 'outside_region' THEN
        IF codes IS NULL THEN
            -- over the ledger, region by region: each boundary read once
            -- (as above; and as geography once, for the distance of a
            -- finding) and its channels tested in a row, through the index
            -- on the civil code (a hash join met the regions in the
            -- ledger's order, reading each boundary again as it changed);
            -- only the regions some channel in scope declares (a province's
            -- streets that none does are not read, nor made geography)
            RETURN QUERY
            WITH g AS MATERIALIZED (
                SELECT g.civil_code, g.name, ST_SetSRID(g.boundary, ST_SRID(g.boundary)) AS boundary,
                       g.boundary::geography AS area
                  FROM vms.region g
                 WHERE g.boundary IS NOT NULL AND (scope IS NULL OR g.civil_code LIKE scope || '%')
                   AND EXISTS (SELECT 1 FROM vms.channel c WHERE c.civil_code = g.civil_code))
            SELECT c.code, format('location is %s m outside region %s (%s)',
                                  round(ST_Distance(g.area, c.geom::geography)), g.civil_code, g.name)
              FROM g CROSS JOIN LATERAL (SELECT c.code, c.geom FROM vms.channel c
                                          WHERE c.civil_code = g.civil_code AND (scope IS NULL OR c.civil_code LIKE scope || '%')
                                            AND c.geom IS NOT NULL AND NOT ST_IsEmpty(c.geom) OFFSET 0) c
             WHERE NOT ST_Covers(g.boundary, c.geom);
        ELSE
            RETURN QUERY
            SELECT c.code, format('location is %s m outside region %s (%s)',
                                  round(ST_Distance(g.boundary::geography, c.geom::geography)), g.civil_code, g.name)
              FROM (SELECT l.* FROM (SELECT DISTINCT u.code FROM unnest(codes) u(code)) u
                     CROSS JOIN LATERAL (SELECT c.* FROM vms.channel c WHERE c.code = u.code OFFSET 0) l) c
              JOIN vms.region g ON g.civil_code = c.civil_code
             WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
               AND g.boundary IS NOT NULL AND c.geom IS NOT NULL AND NOT ST_IsEmpty(c.geom)
               AND NOT ST_Covers(g.boundary, c.geom);
        END IF;
    WHEN 'same_point' THEN
        -- channels at POINT EMPTY share no point: they have none
        IF codes IS NULL THEN
            RETURN QUERY
            SELECT c.code, format('%s channels share the point %s', s.n, ST_AsText(c.geom))
              FROM vms.channel c
              JOIN (SELECT geom AS g, count(*) AS n FROM vms.channel
                     WHERE geom IS NOT NULL AND NOT ST_IsEmpty(geom)
                       -- (over a prefix, the points of its channels, hashed)
                       AND (scope IS NULL OR geom IN (SELECT y.geom FROM vms.channel y WHERE y.civil_code LIKE scope || '%'))
                     GROUP BY geom HAVING count(*) >= coalesce((p ->> 'min_count')::int, 3)) s
                ON c.geom = s.g
             WHERE (scope IS NULL OR c.civil_code LIKE scope || '%');
        ELSE
            -- the listed channels' points, each counted in the whole ledger
            -- (the spatial index finds the channels on a point)
            RETURN QUERY
            SELECT c.code, format('%s channels share the point %s', s.n, ST_AsText(c.geom))
              FROM (SELECT c.* FROM vms.channel c WHERE codes IS NULL
                 UNION ALL SELECT l.* FROM (SELECT DISTINCT u.code FROM unnest(codes) u(code)) u
                 CROSS JOIN LATERAL (SELECT c.* FROM vms.channel c WHERE c.code = u.code OFFSET 0) l) c
              JOIN (SELECT k.g, (SELECT count(*) FROM vms.channel x
                                  WHERE x.geom && k.g AND x.geom = k.g) AS n
                      FROM (SELECT DISTINCT k.geom AS g FROM (SELECT c.* FROM vms.channel c WHERE codes IS NULL
                 UNION ALL SELECT l.* FROM (SELECT DISTINCT u.code FROM unnest(codes) u(code)) u
                 CROSS JOIN LATERAL (SELECT c.* FROM vms.channel c WHERE c.code = u.code OFFSET 0) l) k
                             WHERE k.geom IS NOT NULL AND NOT ST_IsEmpty(k.geom)
                               AND (scope IS NULL OR k.civil_code LIKE scope || '%')) k) s
                ON c.geom = s.g AND s.n >= coalesce((p ->> 'min_count')::int, 3)
             WHERE (scope IS NULL OR c.civil_code LIKE scope || '%');
        END IF;
    WHEN 'duplicate_name' THEN
        -- with a list: the listed channels' names, each counted in the whole ledger
        RETURN QUERY
        SELECT c.code, format('name "%s" is used by %s channels of the same unit', c.name, d.n)
          FROM (SELECT c.* FROM vms.channel c WHERE codes IS NULL
                 UNION ALL SELECT l.* FROM (SELECT DISTINCT u.code FROM unnest(codes) u(code)) u
                 CROSS JOIN LATERAL (SELECT c.* FROM vms.channel c WHERE c.code = u.code OFFSET 0) l) c
          JOIN (SELECT unit_id, name, count(*) AS n FROM vms.channel
                 WHERE unit_id IS NOT NULL
                   -- (over a prefix, the units and names of its channels, hashed)
                   AND (scope IS NULL OR (unit_id, name) IN (SELECT y.unit_id, y.name FROM vms.channel y
                                                              WHERE y.civil_code LIKE scope || '%'))
                   AND (codes IS NULL OR (unit_id, name) IN (SELECT k.unit_id, k.name FROM (SELECT c.* FROM vms.channel c WHERE codes IS NULL
                 UNION ALL SELECT l.* FROM (SELECT DISTINCT u.code FROM unnest(codes) u(code)) u
                 CROSS JOIN LATERAL (SELECT c.* FROM vms.channel c WHERE c.code = u.code OFFSET 0) l) k))
                 GROUP BY unit_id, name HAVING count(*) > 1) d
            ON d.unit_id = c.unit_id AND d.name = c.name
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%');
    WHEN 'naming_pattern' THEN
        -- (OFFSET 0 keeps the name's test out of the pattern lookup, which
        -- over the ledger is then made once a civil code, memoized, instead
        -- of once a channel)
        IF codes IS NULL THEN
            RETURN QUERY
            SELECT s.code, format('name "%s" does not match %s (e.g. %s)', s.name, s.pattern, coalesce(s.example, '-'))
              FROM (SELECT c.code, c.name, np.pattern, np.example
                      FROM vms.channel c
                      CROSS JOIN LATERAL (SELECT n.pattern, n.example FROM vms.naming_pattern n
                                           WHERE coalesce(c.civil_code, '') LIKE n.civil_prefix || '%'
                                           ORDER BY length(n.civil_prefix) DESC LIMIT 1) np
                     WHERE (scope IS NULL OR c.civil_code LIKE scope || '%') OFFSET 0) s
             WHERE s.name !~ s.pattern;
        ELSE
            RETURN QUERY
            SELECT c.code, format('name "%s" does not match %s (e.g. %s)', c.name, np.pattern, coalesce(np.example, '-'))
              FROM (SELECT l.* FROM (SELECT DISTINCT u.code FROM unnest(codes) u(code)) u
                     CROSS JOIN LATERAL (SELECT c.* FROM vms.channel c WHERE c.code = u.code OFFSET 0) l) c
              CROSS JOIN LATERAL (SELECT n.pattern, n.example FROM vms.naming_pattern n
                                   WHERE coalesce(c.civil_code, '') LIKE n.civil_prefix || '%'
                                   ORDER BY length(n.civil_prefix) DESC LIMIT 1) np
             WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
               AND c.name !~ np.pattern;
        END IF;
    END CASE;
END $$;
COMMENT ON FUNCTION vms._governance_findings(vms.governance_rule, text, vms.gbcode[]) IS
    'internal: what one rule finds among the channels in the civil-code scope and the list (NULL: all)';

CREATE FUNCTION vms.governance_findings(rule vms.governance_rule, scope text DEFAULT NULL)
    RETURNS TABLE (channel_code vms.gbcode, detail text)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT f.channel_code, f.detail FROM vms._governance_findings(rule, scope, NULL) f
$$;
COMMENT ON FUNCTION vms.governance_findings(vms.governance_rule, text) IS 'what one rule finds: (channel, detail) for channels in the civil-code scope';

-- Run every enabled rule; open new tasks, refresh live ones, reopen fixed
-- ones whose problem is still there, and verify (close) those whose problem
-- is gone.  Ignored tasks stay ignored.  The channels taken: those in scope
-- (a civil-code prefix, NULL: all) and, when codes is not NULL, in codes
-- (vms.governance_run_changed), for duplicate_name also those in name_codes
-- and for same_point those in point_codes (the partners of the groups a
-- changed channel joined or left); only the tasks of the rules a channel
-- was taken for are written.  Over the whole ledger (scope NULL) those two
-- rules read their groups' counts in vms.governance_name_group and
-- vms.governance_point_group, which a full run writes first and an
-- incremental run finds brought up to date by vms.governance_run_changed.
--
-- Runs one at a time (an advisory lock).  New tasks are inserted in one
-- statement sorted by channel and rule.  For a superuser (the owner, the
-- operations worker) their foreign keys are checked once for the whole
-- statement instead of by four trigger calls a row (session_replication_role
-- replica for that INSERT only, while governance_task has no trigger but
-- the foreign keys' own), with
-- the same locks the checks take: the rules FOR KEY SHARE before they are
-- read, the channels FOR KEY SHARE as the insert reads them (a channel
-- deleted meanwhile gets no task, as ON DELETE CASCADE would have removed
-- it), the units of the new tasks after the insert (a unit gone raises the
-- foreign-key error).  Anyone else's run inserts with the triggers.
CREATE FUNCTION vms._governance_run(scope text, codes vms.gbcode[], incremental boolean,
                                    name_codes vms.gbcode[], point_codes vms.gbcode[]) RETURNS vms.governance_run
    LANGUAGE plpgsql SET search_path FROM CURRENT SET work_mem = '256MB' SET jit = off
    SET max_parallel_workers_per_gather = 0 AS $$
#variable_conflict use_variable
DECLARE
    run vms.governance_run;
    r vms.governance_rule;
    n bigint;
    row_rules text[];
    row_severities smallint[];
    row_exprs text;
    -- (and only while governance_task has no trigger of its own that
    -- replica mode would skip or fire)
    bulk boolean := (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                                     WHERE t.tgrelid = 'vms.governance_task'::regclass AND NOT t.tgisinternal);
    replication_role text;
    seqscan text;
    bad text;
    units bigint[];
    -- the channels of the rules comparing channels with each other
    dup_codes vms.gbcode[] := CASE WHEN codes IS NOT NULL THEN
        ARRAY(SELECT u.code FROM unnest(codes) u(code) UNION SELECT u.code FROM unnest(name_codes) u(code)) END;
    point_rule_codes vms.gbcode[] := CASE WHEN codes IS NOT NULL THEN
        ARRAY(SELECT u.code FROM unnest(codes) u(code) UNION SELECT u.code FROM unnest(point_codes) u(code)) END;
    -- the listed channels' rows as vms.governance_run_changed read them
    -- (pg_temp._gov_taken: code, ch, changed, for_dup, for_point), for the
    -- rules, instead of looking each up again for each rule
    taken boolean := codes IS NOT NULL AND pg_catalog.to_regclass('pg_temp._gov_taken') IS NOT NULL;
BEGIN
    IF scope IS NOT NULL AND scope !~ '^([0-9]{2}){1,4}$' THEN
        RAISE EXCEPTION 'governance scope must be a 2, 4, 6 or 8-digit civil code, not "%"', scope
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'a governance run needs the READ COMMITTED isolation level'
            USING ERRCODE = 'invalid_transaction_state',
                  DETAIL = 'It must see every change committed before it takes its lock, and record the snapshot it read by.';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('vms.governance_run'));
    -- what this run sees, for the next incremental run: every transaction
    -- its snapshot leaves out started at or after "since" (the oldest open
    -- transaction's start; with prepared transactions or without the right
    -- to see other sessions, no bound)
    INSERT INTO vms.governance_run (scope, incremental, snapshot, since)
    VALUES (scope, incremental, pg_catalog.pg_current_snapshot(),
            CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_xacts)
                      OR NOT (bulk OR pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'))
                 THEN '-infinity'
                 ELSE least(clock_timestamp(), (SELECT min(a.xact_start) FROM pg_catalog.pg_stat_activity a)) END)
    RETURNING * INTO run;
    PERFORM 1 FROM vms.governance_rule g WHERE g.enabled ORDER BY g.code FOR KEY SHARE;

    CREATE TEMP TABLE _gov_found (channel_code vms.gbcode, rule_code text, severity smallint, detail text)
        ON COMMIT DROP;
    -- the rules checked channel by channel: all in one scan of the ledger
    SELECT array_agg(g.code ORDER BY g.code), array_agg(g.severity ORDER BY g.code),
           string_agg(vms._governance_row_expr(g), ', ' ORDER BY g.code)
      INTO row_rules, row_severities, row_exprs
      FROM vms.governance_rule g
     WHERE g.enabled AND g.kind IN ('required_fields', 'code_role', 'coordinates', 'stale');
    IF row_rules IS NOT NULL THEN
        -- each channel's details unnested beside the rules (channel outside:
        -- the rules outside rescanned the whole ledger once a rule)
        EXECUTE format($q$
        INSERT INTO _gov_found
        SELECT s.code, k.rule_code, k.severity, k.detail
          FROM (SELECT c.code, ARRAY[%s]::text[] AS details FROM %s c
                 WHERE ($1 IS NULL OR c.civil_code LIKE $1 || '%%') OFFSET 0) s
         CROSS JOIN LATERAL unnest(s.details, $2::text[], $3::smallint[]) k(detail, rule_code, severity)
         WHERE k.detail IS NOT NULL $q$, row_exprs,
            CASE WHEN taken THEN '(SELECT (t.ch).* FROM pg_temp._gov_taken t WHERE t.changed)'
                 ELSE $s$(SELECT c.* FROM vms.channel c WHERE $4 IS NULL
                 UNION ALL SELECT l.* FROM (SELECT DISTINCT u.code FROM unnest($4::vms.gbcode[]) u(code)) u
                 CROSS JOIN LATERAL (SELECT c.* FROM vms.channel c WHERE c.code = u.code OFFSET 0) l)$s$ END)
        USING scope, row_rules, row_severities, codes;
    END IF;
    -- a run over the whole ledger counts its name and point groups once
    -- (vms.governance_name_group, vms.governance_point_group), for its own
    -- rules and the next incremental run's; an incremental run finds them
    -- recounted where a changed channel joined or left one
    -- (vms.governance_run_changed) and counted by the run before elsewhere
    IF scope IS NULL AND codes IS NULL THEN
        DELETE FROM vms.governance_name_group;
        INSERT INTO vms.governance_name_group (unit_id, name, channels)
        SELECT c.unit_id, c.name, count(*) FROM vms.channel c
         WHERE c.unit_id IS NOT NULL AND c.name IS NOT NULL
         GROUP BY c.unit_id, c.name HAVING count(*) > 1;
        DELETE FROM vms.governance_point_group;
        INSERT INTO vms.governance_point_group (geom, channels)
        SELECT c.geom, count(*) FROM vms.channel c WHERE c.geom IS NOT NULL AND NOT ST_IsEmpty(c.geom)
         GROUP BY c.geom HAVING count(*) > 1;
        ANALYZE vms.governance_name_group, vms.governance_point_group;
    END IF;
    -- the others, one query each
    FOR r IN SELECT * FROM vms.governance_rule g
              WHERE g.enabled AND g.kind NOT IN ('required_fields', 'code_role', 'coordinates', 'stale')
              ORDER BY g.code LOOP
        -- the rules reading one channel and the regions or naming patterns,
        -- as vms._governance_findings words them, over the taken rows
        IF taken AND r.kind = 'civil_code_mismatch' THEN
            INSERT INTO _gov_found
            SELECT c.code, r.code, r.severity,
                   format('recorded civil code %s, but the location lies in %s (%s)', c.civil_code, rg.civil_code, rg.name)
              FROM (SELECT (t.ch).* FROM pg_temp._gov_taken t WHERE t.changed) c
             CROSS JOIN LATERAL (SELECT g.civil_code, g.name FROM vms.region g
                                  WHERE g.boundary IS NOT NULL AND ST_Covers(g.boundary, c.geom)
                                  ORDER BY g.level DESC, (g.civil_code LIKE c.civil_code || '%' OR c.civil_code LIKE g.civil_code || '%') DESC,
                                           g.civil_code LIMIT 1) rg
             WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
               AND c.geom IS NOT NULL AND NOT ST_IsEmpty(c.geom) AND c.civil_code IS NOT NULL
               AND NOT (rg.civil_code LIKE c.civil_code || '%' OR c.civil_code LIKE rg.civil_code || '%');
        ELSIF taken AND r.kind = 'outside_region' THEN
            INSERT INTO _gov_found
            SELECT c.code, r.code, r.severity,
                   format('location is %s m outside region %s (%s)',
                          round(ST_Distance(g.boundary::geography, c.geom::geography)), g.civil_code, g.name)
              FROM (SELECT (t.ch).* FROM pg_temp._gov_taken t WHERE t.changed) c
              JOIN vms.region g ON g.civil_code = c.civil_code
             WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
               AND g.boundary IS NOT NULL AND c.geom IS NOT NULL AND NOT ST_IsEmpty(c.geom)
               AND NOT ST_Covers(g.boundary, c.geom);
        ELSIF taken AND r.kind = 'naming_pattern' THEN
            INSERT INTO _gov_found
            SELECT c.code, r.code, r.severity,
                   format('name "%s" does not match %s (e.g. %s)', c.name, np.pattern, coalesce(np.example, '-'))
              FROM (SELECT (t.ch).* FROM pg_temp._gov_taken t WHERE t.changed) c
             CROSS JOIN LATERAL (SELECT x.pattern, x.example FROM vms.naming_pattern x
                                  WHERE coalesce(c.civil_code, '') LIKE x.civil_prefix || '%'
                                  ORDER BY length(x.civil_prefix) DESC LIMIT 1) np
             WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
               AND c.name !~ np.pattern;
        ELSIF taken AND scope IS NULL AND r.kind = 'duplicate_name' THEN
            INSERT INTO _gov_found
            SELECT c.code, r.code, r.severity, format('name "%s" is used by %s channels of the same unit', c.name, g.channels)
              FROM (SELECT (t.ch).* FROM pg_temp._gov_taken t WHERE t.for_dup) c
              JOIN vms.governance_name_group g ON g.unit_id = c.unit_id AND md5(g.name) = md5(c.name) AND g.name = c.name;
        ELSIF scope IS NULL AND r.kind = 'duplicate_name' THEN
            -- as vms._governance_findings, with the counts kept
            INSERT INTO _gov_found
            SELECT c.code, r.code, r.severity, format('name "%s" is used by %s channels of the same unit', c.name, g.channels)
              FROM (SELECT c.* FROM vms.channel c WHERE codes IS NULL
                     UNION ALL SELECT l.* FROM unnest(dup_codes) u(code)
                     CROSS JOIN LATERAL (SELECT c.* FROM vms.channel c WHERE c.code = u.code OFFSET 0) l) c
              JOIN vms.governance_name_group g ON g.unit_id = c.unit_id AND g.name = c.name;
        ELSIF taken AND scope IS NULL AND r.kind = 'same_point' AND coalesce((r.params ->> 'min_count')::int, 3) >= 2 THEN
            INSERT INTO _gov_found
            SELECT c.code, r.code, r.severity, format('%s channels share the point %s', g.channels, ST_AsText(c.geom))
              FROM (SELECT (t.ch).* FROM pg_temp._gov_taken t WHERE t.for_point) c
              JOIN vms.governance_point_group g ON g.geom = c.geom
             WHERE g.channels >= coalesce((r.params ->> 'min_count')::int, 3);
        ELSIF scope IS NULL AND r.kind = 'same_point' AND coalesce((r.params ->> 'min_count')::int, 3) >= 2 THEN
            -- (points of one channel are not kept: a min_count of 1 counts
            -- them in the ledger)
            INSERT INTO _gov_found
            SELECT c.code, r.code, r.severity, format('%s channels share the point %s', g.channels, ST_AsText(c.geom))
              FROM (SELECT c.* FROM vms.channel c WHERE codes IS NULL
                     UNION ALL SELECT l.* FROM unnest(point_rule_codes) u(code)
                     CROSS JOIN LATERAL (SELECT c.* FROM vms.channel c WHERE c.code = u.code OFFSET 0) l) c
              JOIN vms.governance_point_group g ON g.geom = c.geom
             WHERE g.channels >= coalesce((r.params ->> 'min_count')::int, 3);
        ELSE
            INSERT INTO _gov_found SELECT f.channel_code, r.code, r.severity, f.detail
              FROM vms._governance_findings(r, scope, CASE r.kind WHEN 'duplicate_name' THEN dup_codes
                                                                  WHEN 'same_point' THEN point_rule_codes ELSE codes END) f;
        END IF;
    END LOOP;
    ANALYZE _gov_found;
    -- the live tasks this run may meet: over the whole ledger, all; over a
    -- civil-code prefix, those of the channels in it now (a task's
    -- civil_code is its channel's when the task was opened: the tasks of a
    -- channel that moved out are neither refreshed nor closed, as it is not
    -- taken, until a run over its new prefix or the ledger judges them; a
    -- channel that moved in is taken, and its tasks refreshed or closed);
    -- with a list (vms.governance_run_changed, over the whole ledger), the
    -- listed channels' (a partner only taken for duplicate_name or
    -- same_point, those rules' tasks)
    CREATE TEMP TABLE _gov_live ON COMMIT DROP AS
    SELECT t.id, t.channel_code, t.rule_code, t.state FROM vms.governance_task t
     WHERE codes IS NULL AND scope IS NULL AND t.state IN ('open', 'assigned', 'fixed', 'ignored')
    UNION ALL
    SELECT t.id, t.channel_code, t.rule_code, t.state
      FROM vms.governance_task t JOIN vms.channel c ON c.code = t.channel_code
     WHERE codes IS NULL AND scope IS NOT NULL AND c.civil_code LIKE scope || '%'
       AND t.state IN ('open', 'assigned', 'fixed', 'ignored')
    UNION ALL
    SELECT t.id, t.channel_code, t.rule_code, t.state
      FROM (SELECT u.code, NULL::text AS kind FROM unnest(codes) u(code)
            UNION SELECT u.code, 'duplicate_name' FROM (SELECT unnest(name_codes) EXCEPT SELECT unnest(codes)) u(code)
            UNION SELECT u.code, 'same_point' FROM (SELECT unnest(point_codes) EXCEPT SELECT unnest(codes)) u(code)) u
     CROSS JOIN LATERAL (SELECT t.* FROM vms.governance_task t
                          WHERE t.channel_code = u.code AND t.state IN ('open', 'assigned', 'fixed', 'ignored')
                            AND (u.kind IS NULL OR t.rule_code IN (SELECT g.code FROM vms.governance_rule g WHERE g.kind = u.kind))
                         OFFSET 0) t;
    ANALYZE _gov_live;

    -- a task marked fixed whose problem is still there opens again, live
    -- tasks are refreshed with what was found (by id: repeating the channel
    -- and rule against the task table made the planner multiply their
    -- selectivities, expect one row and rescan the findings for each task)
    SELECT count(*) INTO n FROM _gov_live l JOIN _gov_found f USING (channel_code, rule_code) WHERE l.state = 'fixed';
    UPDATE vms.governance_run SET reopened = n WHERE id = run.id;
    -- (an incremental run's few tasks each through the primary key: the
    -- planner, expecting cold pages, preferred to scan every task)
    IF codes IS NOT NULL THEN
        seqscan := current_setting('enable_seqscan');
        PERFORM set_config('enable_seqscan', 'off', true);
    END IF;
    UPDATE vms.governance_task t
       SET state = CASE WHEN t.state = 'fixed' THEN 'open' ELSE t.state END,
           fixed_at = CASE WHEN t.state = 'fixed' THEN NULL ELSE t.fixed_at END,
           fixed_by = CASE WHEN t.state = 'fixed' THEN NULL ELSE t.fixed_by END,
           last_found_at = now(), detail = f.detail, severity = f.severity
      FROM _gov_found f JOIN _gov_live l ON l.channel_code = f.channel_code AND l.rule_code = f.rule_code
     WHERE t.id = l.id AND t.state IN ('open', 'assigned', 'fixed', 'ignored');
    IF codes IS NOT NULL THEN
        PERFORM set_config('enable_seqscan', seqscan, true);
    END IF;

    -- new findings: new tasks (an anti-join on the live tasks and a hash
    -- join on the ledger: with LEFT JOIN ... IS NULL the planner expected a
    -- few rows and looked the channels up one by one).  In bulk, the
    -- channels are locked FOR KEY SHARE as they are read (a channel deleted
    -- meanwhile gets no task, as ON DELETE CASCADE would have removed it),
    -- the units of the new tasks after the insert.
    IF bulk THEN
        replication_role := current_setting('session_replication_role');
        PERFORM set_config('session_replication_role', 'replica', true);
        WITH ins AS (
            INSERT INTO vms.governance_task (channel_code, rule_code, severity, detail, unit_id, civil_code, found_by_run)
            SELECT x.channel_code, x.rule_code, x.severity, x.detail, x.unit_id, x.civil_code, run.id
              FROM (SELECT f.channel_code, f.rule_code, f.severity, f.detail, c.unit_id, c.civil_code
                      FROM _gov_found f JOIN vms.channel c ON c.code = f.channel_code
                     WHERE NOT EXISTS (SELECT 1 FROM _gov_live l
                                        WHERE l.channel_code = f.channel_code AND l.rule_code = f.rule_code)
                       FOR KEY SHARE OF c) x
             ORDER BY x.channel_code, x.rule_code
            ON CONFLICT (channel_code, rule_code) WHERE state IN ('open', 'assigned', 'fixed', 'ignored') DO NOTHING
            RETURNING unit_id)
        SELECT count(*), array_agg(DISTINCT ins.unit_id) FILTER (WHERE ins.unit_id IS NOT NULL)
          INTO n, units FROM ins;
        PERFORM set_config('session_replication_role', replication_role, true);
        IF units IS NOT NULL THEN
            -- the foreign key on the unit, for all new tasks at once
            PERFORM 1 FROM vms.org_unit u WHERE u.id = ANY (units) FOR KEY SHARE OF u;
            SELECT w.id::text INTO bad FROM unnest(units) w(id)
             WHERE NOT EXISTS (SELECT 1 FROM vms.org_unit u WHERE u.id = w.id) LIMIT 1;
            IF bad IS NOT NULL THEN
                RAISE EXCEPTION 'insert or update on table "governance_task" violates foreign key constraint "governance_task_unit_id_fkey"'
                    USING ERRCODE = 'foreign_key_violation',
                          DETAIL = format('Key (unit_id)=(%s) is not present in table "org_unit".', bad);
            END IF;
        END IF;
    ELSE
        INSERT INTO vms.governance_task (channel_code, rule_code, severity, detail, unit_id, civil_code, found_by_run)
        SELECT f.channel_code, f.rule_code, f.severity, f.detail, c.unit_id, c.civil_code, run.id
          FROM _gov_found f JOIN vms.channel c ON c.code = f.channel_code
         WHERE NOT EXISTS (SELECT 1 FROM _gov_live l WHERE l.channel_code = f.channel_code AND l.rule_code = f.rule_code)
         ORDER BY f.channel_code, f.rule_code
        ON CONFLICT (channel_code, rule_code) WHERE state IN ('open', 'assigned', 'fixed', 'ignored') DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    UPDATE vms.governance_run SET opened = n WHERE id = run.id;

    -- problems gone: verified
    UPDATE vms.governance_task t
       SET state = 'verified', closed_at = now(), closed_by_run = run.id
      FROM (SELECT l.id FROM _gov_live l
             WHERE l.state IN ('open', 'assigned', 'fixed')
               AND NOT EXISTS (SELECT 1 FROM _gov_found f
                                WHERE f.channel_code = l.channel_code AND f.rule_code = l.rule_code)
               AND l.rule_code IN (SELECT code FROM vms.governance_rule WHERE enabled)) x
     WHERE t.id = x.id AND t.state IN ('open', 'assigned', 'fixed');
    GET DIAGNOSTICS n = ROW_COUNT;

    UPDATE vms.governance_run g
       SET closed = n, findings = (SELECT count(*) FROM _gov_found),
           -- (an incremental run's channels as listed: all of them were
           -- in the ledger when listed, and looking them up again cost
           -- as much as a rule)
           channels = CASE WHEN codes IS NOT NULL AND scope IS NULL
                           THEN (SELECT count(*) FROM (SELECT u.code FROM unnest(dup_codes) u(code)
                                                        UNION SELECT u.code FROM unnest(point_rule_codes) u(code)) u)
                           ELSE (SELECT count(*) FROM (SELECT c.* FROM vms.channel c WHERE codes IS NULL
                 UNION ALL SELECT l.* FROM (SELECT u.code FROM unnest(dup_codes) u(code)
                                            UNION SELECT u.code FROM unnest(point_rule_codes) u(code)) u
                 CROSS JOIN LATERAL (SELECT c.* FROM vms.channel c WHERE c.code = u.code OFFSET 0) l) c
                        WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')) END,
           finished_at = clock_timestamp()
     WHERE g.id = run.id RETURNING * INTO run;
    DROP TABLE _gov_found;
    DROP TABLE _gov_live;
    RETURN run;
END $$;
COMMENT ON FUNCTION vms._governance_run(text, vms.gbcode[], boolean, vms.gbcode[], vms.gbcode[]) IS
    'internal: a governance run over the channels in scope (and in codes, unless NULL; for duplicate_name also name_codes, for same_point point_codes): opens, refreshes, reopens and verifies their tasks';

CREATE FUNCTION vms.governance_run(scope text DEFAULT NULL) RETURNS vms.governance_run
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    SELECT vms._governance_run(scope, NULL, false, NULL, NULL)
$$;
COMMENT ON FUNCTION vms.governance_run(text) IS
    'run every enabled governance rule over the ledger or a civil-code prefix; opens, refreshes, reopens and verifies tasks';

-- The incremental run (issue 20): every enabled rule over the channels
-- changed since the last run over the whole ledger (full or incremental,
-- finished), with the same tasks opened, refreshed, reopened and closed
-- for them as a full run would.  "Changed": a channel whose ledger history
-- has a row the last run's snapshot may not have seen (inserted, updated,
-- deleted; written by a transaction from the snapshot's xmin on).  The
-- snapshot recorded is the one before the history is read, so a change
-- committed while the run reads it is taken by the next run.  The rules
-- that compare channels with each other are exact: a channel taken reads
-- its unit and name's (duplicate_name) or its point's (same_point) count
-- in vms.governance_name_group / vms.governance_point_group, and where a
-- changed channel joined or left such a group (added, deleted, renamed,
-- moved to another unit or point: every unit, name and point it had in the
-- history since, and its own now) the group is counted again there (a
-- point's group within 1e-9 degrees) and every channel of it is taken too
-- for that rule, so a partner left alone has its task closed, one newly
-- paired gets one and every partner's detail gets the new count; a
-- partner's other rules read only its own record, which did not change,
-- and are not run for it.  A group no changed channel joined or left kept
-- its members since the run before counted it.  Not taken (a full run,
-- vms.governance_run(), as scheduled nightly, takes them): changes to the
-- rules, naming patterns or region boundaries, writes made without history
-- (vms.ledger_writer 'state': online flips, which touch updated_at, so a
-- stale task they end waits for the full run; an UPDATE that changes no
-- ledger column, which touches updated_at too; TRUNCATE
-- and a superuser's writes under session_replication_role = replica, after
-- which a full run also recounts the kept groups), and channels that only
-- grew stale with time.  At a city node (vms.cluster_district has rows) it
-- is a full run: replicated channels leave no history there.  Without an earlier run over the
-- whole ledger it is a full run.
CREATE FUNCTION vms.governance_run_changed() RETURNS vms.governance_run
    LANGUAGE plpgsql SET search_path FROM CURRENT SET work_mem = '256MB' SET jit = off AS $$
DECLARE
    last vms.governance_run;
    run vms.governance_run;
    codes vms.gbcode[];
    name_codes vms.gbcode[];
    point_codes vms.gbcode[];
    cur bigint;
    snap pg_snapshot;
    snap_since timestamptz;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'a governance run needs the READ COMMITTED isolation level'
            USING ERRCODE = 'invalid_transaction_state',
                  DETAIL = 'It must see every change committed before it takes its lock, and record the snapshot it read by.';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('vms.governance_run'));
    SELECT * INTO last FROM vms.governance_run g
     WHERE g.scope IS NULL AND g.finished_at IS NOT NULL AND g.snapshot IS NOT NULL
     ORDER BY g.id DESC LIMIT 1;
    IF last.id IS NULL THEN
        RETURN vms._governance_run(NULL, NULL, false, NULL, NULL);
    END IF;
    -- a city's channels arrive by replication, whose apply writes no
    -- history here (it stays at the districts): no history says what
    -- changed, and the kept group counts may be stale, so it is a full run
    IF EXISTS (SELECT 1 FROM vms.cluster_district) THEN
        RAISE NOTICE 'a city node runs every rule over the whole ledger'
            USING DETAIL = 'Channels replicated from the districts leave no history at the city, so the channels changed since the last run are not known.';
        RETURN vms._governance_run(NULL, NULL, false, NULL, NULL);
    END IF;
    -- (a run over a civil-code prefix since then left for the channels in
    -- it what a run over the ledger would, and touched no other channel's
    -- task nor the kept counts: nothing to take again for it)
    -- what this run sees, taken before the history is read (as
    -- vms._governance_run records it for a full run)
    SELECT pg_catalog.pg_current_snapshot(),
           CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_xacts)
                     OR NOT ((SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
                             OR pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'))
                THEN '-infinity'
                ELSE least(clock_timestamp(), (SELECT min(a.xact_start) FROM pg_catalog.pg_stat_activity a)) END
      INTO snap, snap_since;
    -- History rows the last run may not have seen: written by a
    -- transaction at or after its snapshot's xmin (the oldest then running).
    -- Not pg_visible_in_snapshot: a row written in a subtransaction carries
    -- the subtransaction's xid, which the snapshot's list of running
    -- transactions leaves out; a subtransaction's xid is above its parent's,
    -- so one below xmin belongs to a transaction that had ended.  Rows
    -- between xmin and the ones it saw are taken again: more work, never
    -- less.  A row's xmin as a full id: the epoch of now, or the one before
    -- for an xid above now's (only old rows err, towards "newer").
    cur := pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())::text::bigint;
    -- each changed channel: whether it may have joined or left a group of
    -- units and names, or of points (inserted, deleted, or that column
    -- changed), every value of those columns in its history since (EWKT
    -- for points), and its record now
    CREATE TEMP TABLE _gov_changed ON COMMIT DROP AS
    WITH h AS MATERIALIZED (
        SELECT h.id, h.code, h.op, h.old_values, h.new_values
          FROM vms.ledger_history h
         WHERE h.table_name = 'channel' AND h.changed_at >= last.since
           AND (((cur >> 32) - (h.xmin::text::bigint > (cur & 4294967295))::int) * 4294967296
                + h.xmin::text::bigint)::text::xid8 >= pg_catalog.pg_snapshot_xmin(last.snapshot)),
    was AS (
        SELECT h.code,
               bool_or(h.op <> 'UPDATE' OR h.old_values ?| ARRAY['unit_id', 'name']) AS regrouped,
               bool_or(h.op <> 'UPDATE' OR h.old_values ? 'geom') AS repointed,
               array_agg(h.old_values ->> 'unit_id') FILTER (WHERE h.old_values ? 'unit_id')
                 || array_agg(h.new_values ->> 'unit_id') FILTER (WHERE h.new_values ? 'unit_id') AS unit_ids,
               array_agg(h.old_values ->> 'name') FILTER (WHERE h.old_values ? 'name')
                 || array_agg(h.new_values ->> 'name') FILTER (WHERE h.new_values ? 'name') AS names,
               array_agg(h.old_values ->> 'geom') FILTER (WHERE h.old_values ? 'geom')
                 || array_agg(h.new_values ->> 'geom') FILTER (WHERE h.new_values ? 'geom') AS geoms
          FROM h GROUP BY h.code)
    SELECT w.code, w.regrouped, w.repointed, w.unit_ids, w.names, w.geoms, c.code IS NULL AS gone,
           c.unit_id, c.name, c.geom, c AS ch
      FROM was w LEFT JOIN vms.channel c ON c.code = w.code;
    -- the unit-and-name groups they may have joined or left (every unit
    -- with every name a channel had), each counted again with its members
    CREATE TEMP TABLE _gov_name_keys ON COMMIT DROP AS
    SELECT DISTINCT u.unit_id, n.name
      FROM _gov_changed m
     CROSS JOIN LATERAL (SELECT v::bigint AS unit_id FROM unnest(m.unit_ids) v UNION SELECT m.unit_id) u
     CROSS JOIN LATERAL (SELECT v AS name FROM unnest(m.names) v UNION SELECT m.name) n
     WHERE m.regrouped AND u.unit_id IS NOT NULL AND n.name IS NOT NULL;
    ANALYZE _gov_name_keys;   -- a few keys: hashed, against one pass over the ledger
    CREATE TEMP TABLE _gov_name_members ON COMMIT DROP AS
    SELECT c.code, c.unit_id, c.name, c AS ch FROM _gov_name_keys k
      JOIN vms.channel c ON c.unit_id = k.unit_id AND md5(c.name) = md5(k.name) AND c.name = k.name;
    DELETE FROM vms.governance_name_group g USING _gov_name_keys k
     WHERE g.unit_id = k.unit_id AND md5(g.name) = md5(k.name) AND g.name = k.name;
    INSERT INTO vms.governance_name_group (unit_id, name, channels)
    SELECT m.unit_id, m.name, count(*) FROM _gov_name_members m GROUP BY m.unit_id, m.name HAVING count(*) > 1;
    -- the same for points: every channel within 1e-9 degrees of a point
    -- they had or have (EWKT's digits), each point among those counted again
    CREATE TEMP TABLE _gov_points ON COMMIT DROP AS
    SELECT DISTINCT p.geom
      FROM _gov_changed m
     CROSS JOIN LATERAL (SELECT ST_GeomFromEWKT(v) AS geom FROM unnest(m.geoms) v UNION SELECT m.geom) p
     WHERE m.repointed AND p.geom IS NOT NULL AND NOT ST_IsEmpty(p.geom);
    ANALYZE _gov_points;
    CREATE TEMP TABLE _gov_point_members ON COMMIT DROP AS
    SELECT DISTINCT ON (c.code) c.code, c.geom, c AS ch FROM _gov_points p JOIN vms.channel c ON c.geom && ST_Expand(p.geom, 1e-9);
    DELETE FROM vms.governance_point_group g USING _gov_points p WHERE g.geom && ST_Expand(p.geom, 1e-9);
    INSERT INTO vms.governance_point_group (geom, channels)
    SELECT m.geom, count(*) FROM _gov_point_members m GROUP BY m.geom HAVING count(*) > 1;
    SELECT (SELECT array_agg(m.code) FROM _gov_changed m WHERE NOT m.gone),
           (SELECT array_agg(m.code) FROM _gov_name_members m),
           (SELECT array_agg(m.code) FROM _gov_point_members m)
      INTO codes, name_codes, point_codes;
    -- their rows as read here, for the rules vms._governance_run checks
    -- itself (not again through the primary key, rule by rule)
    CREATE TEMP TABLE _gov_taken ON COMMIT DROP AS
    SELECT x.code, (array_agg(x.ch))[1] AS ch, bool_or(x.k = 'c') AS changed,
           bool_or(x.k IN ('c', 'n')) AS for_dup, bool_or(x.k IN ('c', 'p')) AS for_point
      FROM (SELECT m.code, m.ch, 'c' AS k FROM _gov_changed m WHERE NOT m.gone
            UNION ALL SELECT m.code, m.ch, 'n' FROM _gov_name_members m
            UNION ALL SELECT m.code, m.ch, 'p' FROM _gov_point_members m) x
     GROUP BY x.code;
    DROP TABLE _gov_changed, _gov_name_keys, _gov_name_members, _gov_points, _gov_point_members;
    run := vms._governance_run(NULL, coalesce(codes, '{}'), true, name_codes, point_codes);
    DROP TABLE _gov_taken;
    UPDATE vms.governance_run g SET snapshot = snap, since = snap_since WHERE g.id = run.id RETURNING * INTO run;
    RETURN run;
END $$;
COMMENT ON FUNCTION vms.governance_run_changed() IS
    'incremental governance run: every enabled rule over the channels changed since the last run over the whole ledger, and duplicate_name and same_point over the channels of the unit-and-name and point groups they joined or left (counted again; other groups'' counts kept from the run before); the same tasks opened, refreshed and closed for them as a full run; a full run when there was none';

-- Task life cycle ------------------------------------------------------------
CREATE FUNCTION vms.governance_task_assign(task_id bigint, assignee text) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE vms.governance_task SET state = 'assigned', assigned_to = assignee, assigned_at = now()
     WHERE id = task_id AND state IN ('open', 'assigned');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'governance task % is not open', task_id
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Only open or assigned tasks can be assigned.';
    END IF;
END $$;
COMMENT ON FUNCTION vms.governance_task_assign(bigint, text) IS 'assign an open task to a person or unit';

CREATE FUNCTION vms.governance_task_fixed(task_id bigint) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE vms.governance_task SET state = 'fixed', fixed_at = now(), fixed_by = session_user
     WHERE id = task_id AND state IN ('open', 'assigned');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'governance task % is not open or assigned', task_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION vms.governance_task_fixed(bigint) IS 'report a task fixed; the next run verifies it or opens it again';

CREATE FUNCTION vms.governance_task_ignore(task_id bigint, reason text) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM vms._require_reason(reason, 'ignoring a governance task');
    UPDATE vms.governance_task SET state = 'ignored', ignore_reason = reason, closed_at = now()
     WHERE id = task_id AND state IN ('open', 'assigned', 'fixed');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'governance task % is not live', task_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION vms.governance_task_ignore(bigint, text) IS 'ignore a task with a reason; later runs leave it ignored';

-- Work lists (治理清单) per unit and rule.
CREATE VIEW vms.governance_worklist WITH (security_invoker = true) AS
SELECT coalesce(u.name, '（无管理单位）') AS unit, t.unit_id, t.rule_code, r.description, t.severity,
       count(*) FILTER (WHERE t.state = 'open') AS open,
       count(*) FILTER (WHERE t.state = 'assigned') AS assigned,
       count(*) FILTER (WHERE t.state = 'fixed') AS awaiting_verification,
       min(t.first_found_at) AS oldest
  FROM vms.governance_task t
  JOIN vms.governance_rule r ON r.code = t.rule_code
  LEFT JOIN vms.org_unit u ON u.id = t.unit_id
 WHERE t.state IN ('open', 'assigned', 'fixed')
 GROUP BY 1, 2, 3, 4, 5;
COMMENT ON VIEW vms.governance_worklist IS 'work list per management unit and rule: open, assigned and awaiting verification';

-- Metrics ----------------------------------------------------------------------
-- 填报率 fill_rate: filled share of the fields of rule required_fields;
-- 合格率 pass_rate: share of channels with no live task (ignored excluded);
-- 规范率 naming_rate: share without a live naming_pattern task;
-- 标注率 tag_rate: share with at least one tag;
-- 出图率 image_rate: share of the inspected channels whose latest inspection
--   returned a usable picture (NULL where nothing was inspected);
-- 录像完整率 recording_integrity: recorded over expected seconds of each
--   channel's latest recording check (vms.recording_check; NULL where no
--   channel was checked).
-- SQL expression over alias c: the fields (columns of vms.channel) a channel lacks.
CREATE FUNCTION vms._missing_fields_expr(fields text[]) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    bad text;
BEGIN
    SELECT f INTO bad FROM unnest(fields) f
     WHERE NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'vms.channel'::regclass
                          AND attname = f AND attnum > 0 AND NOT attisdropped) LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'required field "%" is not a column of vms.channel', bad
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Fix the params of the governance rule.';
    END IF;
    -- (a location at POINT EMPTY, which geometry(Point) accepts, is missing)
    RETURN 'array_remove(ARRAY[' || coalesce((SELECT string_agg(
               CASE WHEN f = 'capabilities' THEN 'CASE WHEN cardinality(c.capabilities) = 0 THEN ''capabilities'' END'
                    WHEN f = 'geom' THEN 'CASE WHEN c.geom IS NULL OR ST_IsEmpty(c.geom) THEN ''geom'' END'
                    ELSE format('CASE WHEN c.%I IS NULL THEN %L END', f, f) END, ', ')
             FROM unnest(fields) f), '') || ']::text[], NULL)';
END $$;
COMMENT ON FUNCTION vms._missing_fields_expr(text[]) IS 'internal: SQL listing which of the fields a channel lacks (a location at POINT EMPTY is missing)';

CREATE FUNCTION vms._governance_metrics(group_key text)
    RETURNS TABLE (key text, name text, channels bigint, fill_rate numeric, pass_rate numeric,
                   naming_rate numeric, tag_rate numeric, image_rate numeric, recording_integrity numeric)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    fields text[] := ARRAY(SELECT jsonb_array_elements_text(params -> 'fields')
                             FROM vms.governance_rule WHERE code = 'required_fields');
    digits int;
BEGIN
    IF group_key = 'unit' THEN
        digits := NULL;
    ELSIF group_key ~ '^region:[2468]$' THEN
        digits := split_part(group_key, ':', 2)::int;
    ELSE
        RAISE EXCEPTION 'unknown metrics grouping "%"', group_key USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY EXECUTE format($q$
    WITH per_channel AS (
        SELECT CASE WHEN $1 IS NULL THEN c.unit_id::text ELSE left(c.civil_code, $1) END AS k,
               1 - cardinality(%s)::numeric / greatest($2, 1) AS filled,
               NOT EXISTS (SELECT 1 FROM vms.governance_task t WHERE t.channel_code = c.code
                              AND t.state IN ('open', 'assigned', 'fixed')) AS passes,
               NOT EXISTS (SELECT 1 FROM vms.governance_task t WHERE t.channel_code = c.code
                              AND t.rule_code = 'naming_pattern' AND t.state IN ('open', 'assigned', 'fixed')) AS named_ok,
               EXISTS (SELECT 1 FROM vms.channel_tag ct WHERE ct.channel_code = c.code) AS tagged,
               (SELECT q.image_ok FROM vms.quality_result q WHERE q.channel_code = c.code
                 ORDER BY q.at DESC, q.id DESC LIMIT 1) AS image_ok,
               rc.expected_s AS rec_expected, rc.recorded_s AS rec_recorded
          FROM vms.channel c
          LEFT JOIN LATERAL (SELECT k.expected_s, k.recorded_s FROM vms.recording_check k
                              WHERE k.channel_code = c.code ORDER BY k.checked_at DESC, k.id DESC LIMIT 1) rc ON true)
    SELECT p.k, CASE WHEN $1 IS NULL THEN u.name ELSE g.name END, count(*),
           round(avg(p.filled), 4), round(avg(p.passes::int), 4), round(avg(p.named_ok::int), 4),
           round(avg(p.tagged::int), 4), round(avg(p.image_ok::int), 4),
           round((sum(p.rec_recorded) / nullif(sum(p.rec_expected), 0))::numeric, 4)
      FROM per_channel p
      LEFT JOIN vms.org_unit u ON $1 IS NULL AND u.id::text = p.k
      LEFT JOIN vms.region g ON $1 IS NOT NULL AND g.civil_code = p.k
     GROUP BY p.k, 2 ORDER BY p.k $q$, vms._missing_fields_expr(fields))
    USING digits, cardinality(fields);
END $$;
COMMENT ON FUNCTION vms._governance_metrics(text) IS 'internal: metrics grouped by unit or by civil-code prefix';

CREATE FUNCTION vms.governance_metrics_by_unit()
    RETURNS TABLE (unit_id text, unit text, channels bigint, fill_rate numeric, pass_rate numeric,
                   naming_rate numeric, tag_rate numeric, image_rate numeric, recording_integrity numeric)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$ SELECT * FROM vms._governance_metrics('unit') $$;
COMMENT ON FUNCTION vms.governance_metrics_by_unit() IS
    'per management unit: 填报率 fill_rate, 合格率 pass_rate, 规范率 naming_rate, 标注率 tag_rate, 出图率 image_rate (of inspected channels; NULL if none), 录像完整率 recording_integrity (recorded over expected seconds of each channel''s latest recording check; NULL if none)';

CREATE FUNCTION vms.governance_metrics_by_region(digits integer DEFAULT 8)
    RETURNS TABLE (civil_code text, region text, channels bigint, fill_rate numeric, pass_rate numeric,
                   naming_rate numeric, tag_rate numeric, image_rate numeric, recording_integrity numeric)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$ SELECT * FROM vms._governance_metrics('region:' || digits) $$;
COMMENT ON FUNCTION vms.governance_metrics_by_region(integer) IS
    'the same metrics per civil region, grouping channels by the first 2, 4, 6 or 8 digits of their civil code';
