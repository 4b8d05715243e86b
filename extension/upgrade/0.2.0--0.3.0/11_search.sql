-- The history without a synchronous INSERT (issue 11): in the database the
-- workers serve, while the notifier runs, a search queues its row in shared
-- memory (extension/search_history_queue.c) and the notifier writes the
-- queued rows in one statement when woken; elsewhere, or when the queue is
-- full or the filter larger than 1 kB, the search inserts its row itself.
CREATE FUNCTION vms._search_history_defer(filter jsonb, lim integer, off integer, result_count integer, took_ms float8)
    RETURNS boolean AS 'MODULE_PATHNAME', 'vms_search_history_defer' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION vms._search_history_defer(jsonb, integer, integer, integer, float8) IS
    'internal: queue a search''s history row for the notifier; false when the caller must insert it';
CREATE FUNCTION vms._search_history_take()
    RETURNS TABLE (username text, lim integer, off integer, result_count integer, took_ms numeric, searched_at timestamptz, filter jsonb)
    AS 'MODULE_PATHNAME', 'vms_search_history_take' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION vms._search_history_take() IS
    'internal: the queued search history rows of this database, held until the transaction ends (dropped at commit, queued again at rollback)';
CREATE FUNCTION vms.search_history_flush() RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO vms.search_history (username, searched_at, filter, lim, off, result_count, took_ms)
    SELECT t.username, t.searched_at, t.filter, t.lim, t.off, t.result_count, round(t.took_ms, 3)
      FROM vms._search_history_take() t ORDER BY t.searched_at;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.search_history_flush() IS
    'write the search history rows queued in shared memory for this database (the notifier worker does it when woken); returns how many';
REVOKE ALL ON FUNCTION vms._search_history_defer(jsonb, integer, integer, integer, float8), vms._search_history_take(),
    vms.search_history_flush() FROM PUBLIC;

-- issue 11 (KNN 10 at the bare query's speed): near alone answers from one
-- index probe when a lower bound proves the page exact (vms._degrees_floor_rate),
-- and skips vms._search_sql.
-- The converse, for a KNN scan on geometry that stops early: every point δ or
-- more lon/lat degrees from center (φ0, λ0), for any δ up to cap, is at least
-- δ · rate - 1 mm metres from it on the spheroid, rate being what this
-- returns.  The geodesic to such a point leaves the lon/lat disk of radius δ
-- (which must keep off the poles and the antimeridian), so it is no shorter
-- than the distance to a point Q on that disk's edge.  For Q, haversine:
-- sin²(σ/2) = sin²(Δφ/2) + cos φ0 cos φ sin²(Δλ/2) on the unit sphere, where
-- cos φ0 cos φ >= c = cos φ0 cos(|φ0| + cap), so sin²(σ/2) >= c (sin²(Δφ/2) +
-- sin²(Δλ/2)) >= c (δ/2)² (1 - cap²/24)² (sin y >= y - y³/6, Δφ² + Δλ² = δ²,
-- radians), and σ >= 2 sin(σ/2).  The spheroid's geodesic is at least
-- a(1 - e²) σ (no radius of curvature is smaller).  0 (no bound) for a cap
-- beyond 5 degrees or near a pole or the antimeridian; a part in 10⁹ is taken
-- off for rounding.  A rate, not a distance: a search computes it once and
-- compares each candidate by a multiplication.
CREATE FUNCTION vms._degrees_floor_rate(center geometry, cap float8) RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN cap > 0 AND cap <= 5 AND abs(ST_Y(center)) + cap < 89 AND abs(ST_X(center)) + cap < 179
                THEN 6335439.327083168 * sqrt(cos(radians(ST_Y(center))) * cos(radians(abs(ST_Y(center)) + cap)))
                     * radians(1) * (1 - radians(cap) ^ 2 / 24) * (1 - 1e-9)
                ELSE 0 END;
COMMENT ON FUNCTION vms._degrees_floor_rate(geometry, float8) IS
    'internal: metres per lon/lat degree that bound from below the geodesic distance from a point to any point at least that many degrees (up to a cap) from it';
REVOKE ALL ON FUNCTION vms._degrees_floor_rate(geometry, float8) FROM PUBLIC;

-- issue 11 (search speed): vms.search_points carries the search body itself
-- instead of calling vms._search_points_as (one body, two functions, built by
-- the same DO block as the fresh install).
-- One body, two functions, both SECURITY DEFINER: vms.search_points searches
-- for vms._acting_role() (the role the session acts as); the internal
-- vms._search_points_as (not executable by PUBLIC or the duty roles) for a
-- role it is given.  Every row either returns has passed
-- vms.channel_visible_to(role, ...), which first refuses a role the session
-- user cannot act as; the filter only narrows (every value is validated by
-- vms._search_sql and passed as a parameter).  search_points used to call
-- _search_points_as, which copied every row of a page from one PL/pgSQL
-- result set into another (about 25 us a page of 100).
DO $do$
DECLARE
    body constant text := $body$
DECLARE
    /* role */
    q record;
    t0 timestamptz := clock_timestamp();
    n integer;
    kk integer;
    found_n integer;
    max_deg float8;
    reach float8;
    box geometry;
    shape text;
    g1 geometry;
    g2 geometry;
    kw text;
    grams text[];
    share float8;
    per_page float8;
    probe_rows float8;
    pages bigint;
    tid_end tid;
    m bigint;
    n2 integer;
    nn integer;
    rate float8;
    gp geometry;
    gk integer;
BEGIN
    IF lim IS NULL OR lim < 0 OR lim > 100000 THEN
        RAISE EXCEPTION 'search limit must be between 0 and 100000, not %', lim USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF off IS NULL OR off < 0 THEN
        RAISE EXCEPTION 'search offset must be 0 or more, not %', off USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- near alone, the commonest map query, skips building a query: the same
    -- checks as vms._search_sql, which any other filter (or a bad value, for
    -- its error) goes through
    IF jsonb_typeof(filter) = 'object' AND filter - 'near' = '{}'::jsonb AND jsonb_typeof(filter -> 'near') = 'object'
       AND (filter -> 'near') - '{lon,lat,k}'::text[] = '{}'::jsonb
       AND jsonb_typeof(filter #> '{near,lon}') = 'number' AND jsonb_typeof(filter #> '{near,lat}') = 'number'
       AND (filter #>> '{near,lon}')::numeric BETWEEN -180 AND 180 AND (filter #>> '{near,lat}')::numeric BETWEEN -90 AND 90
       AND (filter #> '{near,k}' IS NULL
            OR (jsonb_typeof(filter #> '{near,k}') = 'number' AND (filter #>> '{near,k}')::numeric BETWEEN 1 AND 10000
                AND (filter #>> '{near,k}')::numeric % 1 = 0)) THEN
        shape := 'near';
        gp := ST_SetSRID(ST_MakePoint((filter #>> '{near,lon}')::float8, (filter #>> '{near,lat}')::float8), 4326);
        gk := (filter #>> '{near,k}')::integer;
    ELSE
        q := vms._search_sql(filter);
        gp := q.geo_point;
        gk := q.geo_k;
        -- The common shapes (one bbox, polygon, circle or near, nothing else) run
        -- static queries, the very SQL the general path would build for them
        -- (recognised by its text): PL/pgSQL plans each once per session instead
        -- of planning a dynamic query on every call.
        shape := CASE
            WHEN q.where_sql = 'c.geom && $1[1]' AND q.order_sql = 'c.geom <-> $1[2], c.code' THEN 'bbox'
            WHEN q.where_sql = 'ST_Intersects(c.geom, $1[1])' AND q.order_sql = 'c.geom <-> $1[2], c.code' THEN 'polygon'
            WHEN q.where_sql = 'c.geom && $1[2] AND ST_DWithin(c.geom::geography, $1[1]::geography, $2[1])'
                 AND q.knn_where_sql = 'c.geom && $1[2]' AND q.geo_radius IS NOT NULL THEN 'circle'
            WHEN q.where_sql = 'c.geom IS NOT NULL' AND q.knn_where_sql = 'c.geom IS NOT NULL' THEN 'near' END;
        IF shape IS NULL AND q.order_sql IS NULL AND q.geo_point IS NULL AND filter ? 'keyword' THEN
            kw := btrim(filter ->> 'keyword');
            grams := vms.keyword_grams(kw);
            IF q.where_sql = format('vms.text_grams(vms.channel_search_text(c.name, c.alias, c.address, c.place_type)) @> %L::text[]', grams)
                             || ' AND ' || format('vms.text_contains(vms.channel_search_text(c.name, c.alias, c.address, c.place_type), %L)', kw) THEN
                shape := 'keyword';
            END IF;
        END IF;
    END IF;
    IF shape = 'keyword' THEN
        -- Keyword results come in storage order and the scan stops at the
        -- page.  The keyword index finds every match before the first row
        -- (a GIN bitmap: about 0.2 us a match, growing with the ledger),
        -- while reading the table from its start costs about 1 us a row and
        -- stops at the page.  share: ANALYZE's element statistics of the
        -- keyword index, the share of the keyword's rarest gram (an upper
        -- bound of its own; a gram they do not list counts as 0).  When the
        -- page is expected within probe_rows = (lim + off) / share rows and
        -- that costs less than the bitmap (probe_rows * 5 <= matches), the
        -- first 2 * probe_rows rows' pages are read in order (a TID range
        -- scan).  Both read in storage order, so the rows are the same; a
        -- page not filled there continues past those pages.  There the
        -- match is text_contains alone, on the text channel_search_text
        -- builds (concat_ws written out: the SQL function is not inlined):
        -- containing the keyword implies containing its grams.
        SELECT min(coalesce(u.f, 0)) INTO share
          FROM unnest(grams) g
          LEFT JOIN (SELECT e, f FROM pg_stats s, unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) u(e, f)
                      WHERE s.schemaname = 'vms' AND s.tablename = 'channel_keyword_idx') u ON u.e = g;
        SELECT c.reltuples / greatest(c.relpages, 1) INTO per_page FROM pg_class c WHERE c.oid = 'vms.channel'::regclass;
        probe_rows := CASE WHEN share > 0 THEN (lim + off) / share END;
        IF probe_rows <= 20000 AND probe_rows * 5 <= share * per_page * (pg_relation_size('vms.channel') / current_setting('block_size')::int) THEN
            pages := ceil(2 * probe_rows / per_page);
            tid_end := format('(%s,0)', pages)::tid;
            RETURN QUERY
                SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                       ST_X(c.geom), ST_Y(c.geom), NULL::float8
                  FROM vms.channel c
                 WHERE c.ctid < tid_end AND vms.text_contains(concat_ws(' ', c.name, c.alias, c.address, c.place_type), kw)
                   AND vms.channel_visible_to(role, c.code, c.civil_code)
                 LIMIT lim OFFSET off;
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n < lim THEN
                -- m: the matches in the pages read (all of them were skipped or returned)
                IF n > 0 THEN
                    m := off + n;
                ELSE
                    SELECT count(*) INTO m FROM vms.channel c
                     WHERE c.ctid < tid_end AND vms.text_contains(concat_ws(' ', c.name, c.alias, c.address, c.place_type), kw)
                       AND vms.channel_visible_to(role, c.code, c.civil_code);
                END IF;
                RETURN QUERY
                    SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                           ST_X(c.geom), ST_Y(c.geom), NULL::float8
                      FROM vms.channel c
                     WHERE vms.text_grams(vms.channel_search_text(c.name, c.alias, c.address, c.place_type)) @> grams
                       AND vms.text_contains(vms.channel_search_text(c.name, c.alias, c.address, c.place_type), kw)
                       AND c.ctid >= tid_end AND vms.channel_visible_to(role, c.code, c.civil_code)
                     LIMIT lim - n OFFSET greatest(off - m, 0);
                GET DIAGNOSTICS n2 = ROW_COUNT;
                n := n + n2;
            END IF;
        ELSE
            RETURN QUERY
                SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                       ST_X(c.geom), ST_Y(c.geom), NULL::float8
                  FROM vms.channel c
                 WHERE vms.text_grams(vms.channel_search_text(c.name, c.alias, c.address, c.place_type)) @> grams
                   AND vms.text_contains(vms.channel_search_text(c.name, c.alias, c.address, c.place_type), kw)
                   AND vms.channel_visible_to(role, c.code, c.civil_code)
                 LIMIT lim OFFSET off;
            GET DIAGNOSTICS n = ROW_COUNT;
        END IF;
    ELSIF gp IS NULL THEN
        IF shape = 'bbox' THEN
            g1 := q.geoms[1]; g2 := q.geoms[2];
            RETURN QUERY
                SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                       ST_X(c.geom), ST_Y(c.geom), NULL::float8
                  FROM vms.channel c WHERE c.geom && g1 AND vms.channel_visible_to(role, c.code, c.civil_code)
                 ORDER BY c.geom <-> g2, c.code LIMIT lim OFFSET off;
        ELSIF shape = 'polygon' THEN
            g1 := q.geoms[1]; g2 := q.geoms[2];
            RETURN QUERY
                SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                       ST_X(c.geom), ST_Y(c.geom), NULL::float8
                  FROM vms.channel c WHERE ST_Intersects(c.geom, g1) AND vms.channel_visible_to(role, c.code, c.civil_code)
                 ORDER BY c.geom <-> g2, c.code LIMIT lim OFFSET off;
        ELSE
            -- a query built for this call is planned for its values (the
            -- function's generic-plan setting is for the static queries; it
            -- comes back at the next call)
            PERFORM set_config('plan_cache_mode', 'auto', true);
            RETURN QUERY EXECUTE format(
                'SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                        ST_X(c.geom), ST_Y(c.geom), NULL::float8
                   FROM vms.channel c WHERE %s AND vms.channel_visible_to($5, c.code, c.civil_code) %s LIMIT $3 OFFSET $4',
                q.where_sql, CASE WHEN q.order_sql IS NOT NULL THEN 'ORDER BY ' || q.order_sql ELSE '' END)
                USING q.geoms, q.nums, lim, off, role;
        END IF;
        GET DIAGNOSTICS n = ROW_COUNT;
    ELSE
        -- Geodesic order (near, or a circle's centre): the first kk points by
        -- ST_Distance on geography, ties by code.  The spatial index orders by
        -- lon/lat degrees, so first take the kk nearest in degrees: if there
        -- are kk, every one of them lies within reach metres
        -- (vms._degrees_reach), so the kk nearest in metres all lie in the
        -- box of that reach (vms._metre_box); those are then ranked exactly.
        kk := CASE WHEN gk IS NOT NULL THEN least(gk, lim + off) ELSE lim + off END;
        IF kk > off THEN
            g1 := gp;
            IF shape IS DISTINCT FROM 'near' THEN
                g2 := q.geoms[cardinality(q.geoms)];
            END IF;
            IF shape = 'circle' THEN
                SELECT count(*), max(d) INTO found_n, max_deg
                  FROM (SELECT c.geom <-> g1 AS d FROM vms.channel c
                         WHERE c.geom && g2 AND vms.channel_visible_to(role, c.code, c.civil_code)
                         ORDER BY c.geom <-> g1 LIMIT kk) s;
            ELSIF shape = 'near' THEN
                -- near alone, first in one index probe: the nn nearest in
                -- degrees (enough for kk nearest in metres at the point's
                -- latitude, where a degree of longitude is cos φ of one of
                -- latitude), ranked by geodesic distance.  The page is exact
                -- when there are fewer than nn points, or when its last point
                -- is nearer than any point beyond the probe can be
                -- (vms._degrees_floor_rate times the probe's last degree distance);
                -- otherwise it returns nothing and the two probes below run.
                IF kk <= 1000 THEN
                    nn := ceil(kk * 1.1 / greatest(cos(radians(ST_Y(g1))), 0.25))::integer + 6;
                    rate := vms._degrees_floor_rate(g1, 0.5);
                    RETURN QUERY
                        SELECT w.code, w.name, w.alias, w.address, w.point_type, w.place_type, w.unit_id, w.online,
                               ST_X(w.geom), ST_Y(w.geom), w.d
                          FROM (SELECT s.*, row_number() OVER w AS rn, count(*) OVER w AS cnt, max(s.dd) OVER w AS maxdd,
                                       nth_value(s.d, kk) OVER w AS dk
                                  FROM (SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online, c.geom,
                                               c.geom <-> g1 AS dd, ST_Distance(c.geom::geography, g1::geography) AS d
                                          FROM vms.channel c
                                         WHERE c.geom IS NOT NULL AND vms.channel_visible_to(role, c.code, c.civil_code)
                                         ORDER BY c.geom <-> g1 LIMIT nn) s
                                WINDOW w AS (ORDER BY s.d, s.code ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)) w
                         WHERE (w.cnt < nn OR (w.maxdd <= 0.5 AND w.dk < w.maxdd * rate - 1e-3)) AND w.rn > off AND w.rn <= kk
                         ORDER BY w.rn;
                    GET DIAGNOSTICS n = ROW_COUNT;
                END IF;
                IF coalesce(n, 0) = 0 THEN
                    -- near alone, the general way: the candidates, their reach box
                    -- and the ranking in one statement (one plan kept for the
                    -- session): the box of the kk nearest in degrees, or every
                    -- point when there are fewer (a box larger than any coordinate)
                    RETURN QUERY
                        WITH k AS MATERIALIZED (
                            SELECT c.geom <-> g1 AS d FROM vms.channel c
                             WHERE c.geom IS NOT NULL AND vms.channel_visible_to(role, c.code, c.civil_code)
                             ORDER BY c.geom <-> g1 LIMIT kk),
                        r AS (SELECT CASE WHEN count(*) = kk THEN vms._metre_box(g1, vms._degrees_reach(max(k.d)))
                                          ELSE ST_MakeEnvelope(-1e30, -1e30, 1e30, 1e30, 4326) END AS box
                                FROM k)
                        SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                               ST_X(c.geom), ST_Y(c.geom), ST_Distance(c.geom::geography, g1::geography)
                          FROM r, vms.channel c
                         WHERE c.geom IS NOT NULL AND c.geom && r.box AND vms.channel_visible_to(role, c.code, c.civil_code)
                         ORDER BY 11, c.code LIMIT kk - off OFFSET off;
                    GET DIAGNOSTICS n = ROW_COUNT;
                END IF;
            ELSE
                EXECUTE format(
                    'SELECT count(*), max(d) FROM (SELECT c.geom <-> $3 AS d FROM vms.channel c
                      WHERE %s AND vms.channel_visible_to($5, c.code, c.civil_code) ORDER BY c.geom <-> $3 LIMIT $4) s',
                    q.knn_where_sql)
                    INTO found_n, max_deg USING q.geoms, q.nums, q.geo_point, kk, role;
            END IF;
            IF found_n = kk THEN
                reach := vms._degrees_reach(max_deg);
                -- within a circle around the point the k nearest lie in the circle's box anyway
                IF reach < q.geo_radius OR q.geo_radius IS NULL THEN
                    box := vms._metre_box(q.geo_point, reach);
                END IF;
            END IF;
            IF shape = 'circle' THEN
                -- the circle's box stands in for a reach box the circle holds;
                -- the distance that orders a point also decides it unless it
                -- lies within a millimetre of the radius, where ST_DWithin
                -- does (the two differ by far less: both are the spheroid's
                -- geodesic), so most points cost one geodesic, not two
                box := coalesce(box, g2);
                RETURN QUERY
                    SELECT s.code, s.name, s.alias, s.address, s.point_type, s.place_type, s.unit_id, s.online,
                           ST_X(s.geom), ST_Y(s.geom), s.d
                      FROM (SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                                   c.geom, ST_Distance(c.geom::geography, g1::geography) AS d
                              FROM vms.channel c
                             WHERE c.geom && g2 AND c.geom && box AND vms.channel_visible_to(role, c.code, c.civil_code)
                            OFFSET 0) s
                     WHERE s.d < q.geo_radius - 1e-3
                        OR (s.d <= q.geo_radius + 1e-3 AND ST_DWithin(s.geom::geography, g1::geography, q.geo_radius))
                     ORDER BY s.d, s.code LIMIT kk - off OFFSET off;
            ELSIF shape = 'near' THEN
                NULL;   -- answered above
            ELSE
                PERFORM set_config('plan_cache_mode', 'auto', true);
                RETURN QUERY EXECUTE format(
                    'SELECT c.code, c.name, c.alias, c.address, c.point_type, c.place_type, c.unit_id, c.online,
                            ST_X(c.geom), ST_Y(c.geom), ST_Distance(c.geom::geography, $6)
                       FROM vms.channel c WHERE %s%s AND vms.channel_visible_to($5, c.code, c.civil_code)
                      ORDER BY 11, c.code LIMIT $3 OFFSET $4',
                    q.where_sql, CASE WHEN box IS NOT NULL THEN ' AND c.geom && $7' ELSE '' END)
                    USING q.geoms, q.nums, kk - off, off, role, q.geo_point::geography, box;
            END IF;
            IF shape IS DISTINCT FROM 'near' THEN
                GET DIAGNOSTICS n = ROW_COUNT;
            END IF;
        END IF;
    END IF;
    -- queued for the notifier where it runs (vms._search_history_defer),
    -- else inserted here
    IF NOT vms._search_history_defer(filter, lim, off, coalesce(n, 0), extract(epoch FROM clock_timestamp() - t0)::float8 * 1000) THEN
        INSERT INTO vms.search_history (filter, lim, off, result_count, took_ms)
        VALUES (filter, lim, off, coalesce(n, 0), round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 3));
    END IF;
END $body$;
    cols constant text := 'RETURNS TABLE (code vms.gbcode, name text, alias text, address text, point_type text, place_type text,
                   unit_id bigint, online boolean, lon float8, lat float8, distance_m float8)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path FROM CURRENT
    SET max_parallel_workers_per_gather = 0
    SET plan_cache_mode = force_generic_plan';
BEGIN
    -- a search returns a page of points: starting parallel workers costs more
    -- than it saves; the static queries of the common shapes keep one plan
    -- per session (generic plans)
    EXECUTE format('CREATE OR REPLACE FUNCTION vms._search_points_as(role oid, filter jsonb, lim integer, off integer) %s AS %L',
                   cols, replace(body, '/* role */', ''));
    EXECUTE format('CREATE OR REPLACE FUNCTION vms.search_points(filter jsonb DEFAULT ''{}'', lim integer DEFAULT 100, off integer DEFAULT 0) %s AS %L',
                   cols, replace(body, '/* role */', 'role constant oid := vms._acting_role();'));
END $do$;
COMMENT ON FUNCTION vms._search_points_as(oid, jsonb, integer, integer) IS 'internal: a search for a role the session user can act as';
COMMENT ON FUNCTION vms.search_points(jsonb, integer, integer) IS
    'search monitoring points: tags_all, tags_any, catalog, unit, point_type, place_type, capability, keyword, bbox, circle, polygon, line, near';

-- unknown-key check of circle, line and near without a query when every key is allowed
CREATE OR REPLACE FUNCTION vms._filter_keys(key text, v jsonb, allowed text[]) RETURNS void
    LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    bad text;
BEGIN
    -- every key allowed: decided without a query (a search calls this for
    -- each circle, line or near)
    IF (v - allowed) = '{}'::jsonb THEN
        RETURN;
    END IF;
    SELECT min(x) INTO bad FROM jsonb_object_keys(v) x WHERE x <> ALL (allowed);
    IF bad IS NOT NULL THEN
        PERFORM vms._filter_error(key, format('unknown key "%s"', bad),
                                  'Its keys are ' || array_to_string(allowed, ', ') || '.');
    END IF;
END $$;
COMMENT ON FUNCTION vms._filter_keys(text, jsonb, text[]) IS 'internal: refuses unknown keys inside a filter object';
