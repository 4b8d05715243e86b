-- issue 20, governance over a ledger with region boundaries and naming
-- patterns (bench 35's ledger now has both): civil_code_mismatch and
-- outside_region over the whole ledger go region by region, each boundary
-- read once; naming_pattern looks a pattern up once a civil code.
-- civil_code_mismatch names, among the most specific regions covering a
-- point, one agreeing with the civil code first (no finding), else the
-- first by code (before: any one of them).
CREATE OR REPLACE FUNCTION vms._governance_findings(rule vms.governance_rule, scope text, codes vms.gbcode[])
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

CREATE OR REPLACE FUNCTION vms._governance_run(scope text, codes vms.gbcode[], incremental boolean,
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
