-- Point search (点位搜索): tags, catalogue, unit, types, keyword and spatial
-- filters combined, saved searches and history, GeoJSON for the map system.

CREATE FUNCTION vms.text_grams(text) RETURNS text[]
    AS 'MODULE_PATHNAME', 'vms_text_grams' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.keyword_grams(text) RETURNS text[]
    AS 'MODULE_PATHNAME', 'vms_keyword_grams' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vms.text_contains(haystack text, needle text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_text_contains' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE COST 1;
COMMENT ON FUNCTION vms.text_contains(text, text) IS 'does the text contain the keyword (ASCII letters without case); the keyword recheck';
COMMENT ON FUNCTION vms.text_grams(text) IS 'every character and adjacent pair of a text (ASCII folded to lower case): the keyword index keys';
COMMENT ON FUNCTION vms.keyword_grams(text) IS 'the grams a text must contain to contain this keyword';

-- The text keyword search looks in: name, alias, address, place type.
CREATE FUNCTION vms.channel_visible_to(role oid, code vms.gbcode, civil_code text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_channel_visible_to' LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION vms.channel_visible_to(oid, vms.gbcode, text) IS
    'may this role (one the session user can act as) see the channel; what search and tiles check';
-- The role a session acts as (SET ROLE, else the session user), also inside
-- SECURITY DEFINER functions: whom the definer entry points act for.
CREATE FUNCTION vms._acting_role() RETURNS oid
    AS 'MODULE_PATHNAME', 'vms_acting_role' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION vms._acting_role() IS
    'internal: the role this session acts as (SET ROLE, else the session user), whom definer functions act for';

CREATE FUNCTION vms.channel_search_text(name text, alias text, address text, place_type text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN concat_ws(' ', name, alias, address, place_type);
COMMENT ON FUNCTION vms.channel_search_text(text, text, text, text) IS 'the text keyword search looks in';

CREATE INDEX channel_keyword_idx ON vms.channel
    USING gin (vms.text_grams(vms.channel_search_text(name, alias, address, place_type)));
CREATE INDEX channel_capabilities_idx ON vms.channel USING gin (capabilities);
CREATE INDEX channel_point_type_idx ON vms.channel (point_type);

CREATE TABLE vms.saved_search (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner       text NOT NULL DEFAULT session_user,
    name        text NOT NULL,
    filter      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner, name)
);
COMMENT ON TABLE vms.saved_search IS 'saved searches (常用搜索) per user';

CREATE TABLE vms.search_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username     text NOT NULL DEFAULT session_user,
    searched_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    filter       jsonb NOT NULL,
    lim          integer,
    off          integer,
    result_count integer,
    took_ms      numeric
);
CREATE INDEX search_history_user_idx ON vms.search_history (username, searched_at);
COMMENT ON TABLE vms.search_history IS 'search history (历史搜索): every vms.search_points call';

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

CREATE FUNCTION vms._filter_error(key text, problem text, hint text DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'invalid search filter "%": %', key, problem
        USING ERRCODE = 'invalid_parameter_value', HINT = coalesce(hint, 'See the README for the filter keys and their values.');
END $$;
COMMENT ON FUNCTION vms._filter_error(text, text, text) IS 'internal: the 22023 error for a bad filter value';

CREATE FUNCTION vms._filter_num(key text, v jsonb, lo float8 DEFAULT NULL, hi float8 DEFAULT NULL,
                                field text DEFAULT NULL) RETURNS float8
    LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    x numeric;
BEGIN
    IF v IS NULL THEN
        PERFORM vms._filter_error(key, format('"%s" is missing', field));
    ELSIF jsonb_typeof(v) <> 'number' THEN
        PERFORM vms._filter_error(key, format('%s must be a number, not %s', coalesce('"' || field || '"', 'each value'), v));
    END IF;
    -- compared as numeric first: a JSON number such as 1e400 does not fit a float8
    x := (v #>> '{}')::numeric;
    IF (lo IS NOT NULL AND x < lo::numeric) OR (hi IS NOT NULL AND x > hi::numeric)
       OR abs(x) > 1e300 THEN
        PERFORM vms._filter_error(key, format('%s%s is outside [%s, %s]', coalesce('"' || field || '" ', ''),
                                             CASE WHEN abs(x) > 1e15 THEN btrim(to_char(x, '9.9EEEE')) ELSE x::text END,
                                             coalesce(lo::text, '-inf'), coalesce(hi::text, 'inf')));
    END IF;
    RETURN x::float8;
END $$;
COMMENT ON FUNCTION vms._filter_num(text, jsonb, float8, float8, text) IS 'internal: a number from a filter, range-checked';

CREATE FUNCTION vms._filter_strings(key text, v jsonb) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF jsonb_typeof(v) = 'string' THEN
        RETURN ARRAY[v #>> '{}'];
    ELSIF jsonb_typeof(v) = 'array' AND jsonb_array_length(v) > 0
          AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v) e WHERE jsonb_typeof(e) <> 'string') THEN
        RETURN ARRAY(SELECT jsonb_array_elements_text(v));
    END IF;
    PERFORM vms._filter_error(key, 'must be a string or a non-empty array of strings');
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._filter_strings(text, jsonb) IS 'internal: a string or array of strings from a filter';

CREATE FUNCTION vms._filter_geojson(key text, v jsonb, kinds text[]) RETURNS geometry
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    g geometry;
BEGIN
    IF jsonb_typeof(v) IS DISTINCT FROM 'object' THEN
        PERFORM vms._filter_error(key, 'must be a GeoJSON geometry object');
    END IF;
    BEGIN
        g := ST_SetSRID(ST_GeomFromGeoJSON(v::text), 4326);
    EXCEPTION WHEN OTHERS THEN
        PERFORM vms._filter_error(key, 'is not valid GeoJSON: ' || SQLERRM);
    END;
    IF GeometryType(g) <> ALL (kinds) THEN
        PERFORM vms._filter_error(key, format('must be a %s, not a %s', array_to_string(kinds, ' or '), GeometryType(g)));
    END IF;
    IF ST_IsEmpty(g) THEN
        PERFORM vms._filter_error(key, 'geometry is empty');
    END IF;
    IF NOT ST_IsValid(g) THEN
        PERFORM vms._filter_error(key, 'geometry is not valid: ' || ST_IsValidReason(g));
    END IF;
    IF ST_XMin(g) < -180 OR ST_XMax(g) > 180 OR ST_YMin(g) < -90 OR ST_YMax(g) > 90 THEN
        PERFORM vms._filter_error(key, 'coordinates must be WGS-84 longitude/latitude');
    END IF;
    RETURN g;
END $$;
COMMENT ON FUNCTION vms._filter_geojson(text, jsonb, text[]) IS 'internal: a validated WGS-84 geometry from a filter';

-- Index prefilters for geodesic distances (WGS-84 spheroid, as ST_DWithin and
-- ST_Distance on geography measure them).  Every curve of length r from a point
-- at latitude φ stays within r / a(1 - e²) radians of latitude of it (the
-- meridian radius of curvature is at least a(1 - e²)) and changes longitude by
-- at most r / (a cos φ') radians, φ' the latitude furthest from the equator it
-- can reach (a parallel's radius N cos φ is at least a cos φ).  So this box
-- holds every point within radius_m metres of any point of center's planar
-- envelope, at any latitude; near a pole or across the antimeridian it spans
-- every longitude.  A millimetre and a part in 10⁹ are added for rounding.
CREATE FUNCTION vms._metre_box(center geometry, radius_m float8) RETURNS geometry
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    r float8 := greatest(radius_m, 0) * (1 + 1e-9) + 1e-3;
    dlat float8 := degrees(r / 6335439.327083168);
    far float8 := greatest(abs(ST_YMin(center)), abs(ST_YMax(center))) + dlat;
    dlon float8 := CASE WHEN far >= 89.9999 THEN 360 ELSE degrees(r / (6378137 * cos(radians(far)))) END;
    wrap boolean := ST_XMin(center) - dlon < -180 OR ST_XMax(center) + dlon > 180;
BEGIN
    -- PL/pgSQL, not a SQL function: a search computes it on every call, and
    -- the SQL form (not inlinable) cost about 20 µs a call against 3 µs here
    RETURN ST_MakeEnvelope(CASE WHEN wrap THEN -180 ELSE ST_XMin(center) - dlon END,
                           greatest(ST_YMin(center) - dlat, -90),
                           CASE WHEN wrap THEN 180 ELSE ST_XMax(center) + dlon END,
                           least(ST_YMax(center) + dlat, 90), 4326);
END $$;
COMMENT ON FUNCTION vms._metre_box(geometry, float8) IS
    'internal: lon/lat box holding every point within a geodesic distance of a geometry''s envelope, for index prefilters';

-- Geography edges are great-circle arcs, which bow away from the equator
-- between their vertices: the lon/lat box of the arcs of a line (each arc's
-- highest and lowest point counted where it lies between the vertices; an arc
-- across the antimeridian or over a pole makes the box span every longitude).
CREATE FUNCTION vms._arc_envelope(g geometry) RETURNS geometry
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    xmin float8 := ST_XMin(g);
    xmax float8 := ST_XMax(g);
    ymin float8 := ST_YMin(g);
    ymax float8 := ST_YMax(g);
    part geometry;
    a1 float8; a2 float8; a3 float8; b1 float8; b2 float8; b3 float8;
    n1 float8; n2 float8; n3 float8; nn float8;
    h1 float8; h2 float8; h3 float8; hn float8;
    lon1 float8; lat1 float8; lon2 float8; lat2 float8;
BEGIN
    FOR part IN SELECT (ST_Dump(g)).geom LOOP
        FOR i IN 1 .. ST_NPoints(part) - 1 LOOP
            lon1 := radians(ST_X(ST_PointN(part, i)));     lat1 := radians(ST_Y(ST_PointN(part, i)));
            lon2 := radians(ST_X(ST_PointN(part, i + 1))); lat2 := radians(ST_Y(ST_PointN(part, i + 1)));
            IF abs(lon2 - lon1) >= pi() THEN
                xmin := -180; xmax := 180;
            END IF;
            a1 := cos(lat1) * cos(lon1); a2 := cos(lat1) * sin(lon1); a3 := sin(lat1);
            b1 := cos(lat2) * cos(lon2); b2 := cos(lat2) * sin(lon2); b3 := sin(lat2);
            n1 := a2 * b3 - a3 * b2; n2 := a3 * b1 - a1 * b3; n3 := a1 * b2 - a2 * b1;
            nn := n1 * n1 + n2 * n2 + n3 * n3;
            CONTINUE WHEN nn < 1e-30;
            -- H: the great circle's point nearest the north pole (z minus its part along n)
            h1 := -n3 * n1 / nn; h2 := -n3 * n2 / nn; h3 := 1 - n3 * n3 / nn;
            hn := sqrt(h1 * h1 + h2 * h2 + h3 * h3);
            CONTINUE WHEN hn < 1e-15;
            -- H lies on the arc A→B when A×H and H×B both point along n
            IF (a2 * h3 - a3 * h2) * n1 + (a3 * h1 - a1 * h3) * n2 + (a1 * h2 - a2 * h1) * n3 >= 0
               AND (h2 * b3 - h3 * b2) * n1 + (h3 * b1 - h1 * b3) * n2 + (h1 * b2 - h2 * b1) * n3 >= 0 THEN
                ymax := greatest(ymax, degrees(asin(least(h3 / hn, 1))));
            END IF;
            IF (a2 * h3 - a3 * h2) * n1 + (a3 * h1 - a1 * h3) * n2 + (a1 * h2 - a2 * h1) * n3 <= 0
               AND (h2 * b3 - h3 * b2) * n1 + (h3 * b1 - h1 * b3) * n2 + (h1 * b2 - h2 * b1) * n3 <= 0 THEN
                ymin := least(ymin, -degrees(asin(least(h3 / hn, 1))));
            END IF;
        END LOOP;
    END LOOP;
    RETURN ST_MakeEnvelope(xmin, ymin, xmax, ymax, 4326);
END $$;
COMMENT ON FUNCTION vms._arc_envelope(geometry) IS 'internal: lon/lat box of a line''s great-circle arcs (geography edges)';

-- Any two points δ degrees apart in the lon/lat plane are at most
-- δ · a²/b metres apart on the spheroid (the straight lon/lat path between
-- them is no longer: the meridian radius of curvature is at most a²/b and a
-- parallel's radius at most a).  A KNN scan on geometry gives δ cheaply.
CREATE FUNCTION vms._degrees_reach(deg float8) RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN radians(deg) * 6399593.625758493 * (1 + 1e-9) + 1e-3;
COMMENT ON FUNCTION vms._degrees_reach(float8) IS
    'internal: an upper bound of the geodesic metres between two points that many lon/lat degrees apart';

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

-- Build the query of a filter: validates every key and returns
--   where_sql    the exact conditions on vms.channel c ($1 geoms, $2 nums);
--   knn_where_sql the same for the candidate scan of a distance order (a
--                circle around the order's point keeps only its box there);
--   order_sql    a planar order (nearest a box's or polygon's or line's
--                centre, by the spatial index) or by code, NULL for none;
--   geo_point    the point of a geodesic order (near, else circle), with
--   geo_k        near's k and geo_radius the circle's radius when the circle
--                is centred there.
CREATE FUNCTION vms._search_sql(filter jsonb, OUT where_sql text, OUT knn_where_sql text, OUT order_sql text,
                                OUT geoms geometry[], OUT nums float8[],
                                OUT geo_point geometry, OUT geo_k integer, OUT geo_radius float8)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    k text;
    v jsonb;
    conds text[] := '{}';
    knn_conds text[] := '{}';
    order_by text := 'c.code';
    centre geometry;   -- of a planar spatial filter: results come nearest first, through the spatial index
    circle_centre geometry;
    circle_r float8;
    circle_box integer;
    near_point geometry;
    ids bigint[];
    texts text[];
    kw_grams text[];
    g geometry;
    r float8;
    known constant text[] := '{tags_all,tags_any,catalog,unit,point_type,place_type,capability,keyword,bbox,circle,polygon,line,near}';
BEGIN
    geoms := '{}'; nums := '{}'; texts := '{}';
    IF filter IS NULL OR jsonb_typeof(filter) <> 'object' THEN
        RAISE EXCEPTION 'search filter must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example {"keyword": "望京", "point_type": "dome"}.';
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(filter) LOOP
        IF k <> ALL (known) THEN
            RAISE EXCEPTION 'unknown search filter key "%"', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Keys are ' || array_to_string(known, ', ') || '.';
        END IF;
        CASE k
        WHEN 'tags_all', 'tags_any' THEN
            IF jsonb_typeof(v) <> 'array' OR jsonb_array_length(v) = 0 THEN
                PERFORM vms._filter_error(k, 'must be a non-empty array of tag ids or names');
            END IF;
            IF k = 'tags_all' THEN
                -- a channel needs each tag (or a tag below it)
                conds := conds || ARRAY(
                    SELECT format('EXISTS (SELECT 1 FROM vms.channel_tag ct WHERE ct.channel_code = c.code AND ct.tag_id = ANY (%L::bigint[]))',
                                  ARRAY(SELECT vms.tag_subtree(vms.tag_resolve(e))))
                      FROM jsonb_array_elements(v) e);
            ELSE
                ids := ARRAY(SELECT vms.tag_subtree(vms.tag_resolve(e)) FROM jsonb_array_elements(v) e);
                conds := conds || format('EXISTS (SELECT 1 FROM vms.channel_tag ct WHERE ct.channel_code = c.code AND ct.tag_id = ANY (%L::bigint[]))', ids);
            END IF;
        WHEN 'catalog' THEN
            IF jsonb_typeof(v) <> 'string' OR vms.gbcode_parse_error(v #>> '{}') IS NOT NULL THEN
                PERFORM vms._filter_error(k, 'must be the 20-digit code of a catalogue node');
            END IF;
            IF NOT EXISTS (SELECT 1 FROM vms.catalog_node WHERE code = (v #>> '{}')::vms.gbcode) THEN
                PERFORM vms._filter_error(k, format('catalogue node %s does not exist', v #>> '{}'));
            END IF;
            conds := conds || format('c.code IN (SELECT m.channel_code FROM vms.catalog_member m WHERE m.node_code = ANY (%L::vms.gbcode[]))',
                                     ARRAY(SELECT vms.catalog_subtree((v #>> '{}')::vms.gbcode)));
        WHEN 'unit' THEN
            IF jsonb_typeof(v) = 'number' THEN
                ids := ARRAY(SELECT id FROM vms.org_unit WHERE id = (v #>> '{}')::numeric);
            ELSIF jsonb_typeof(v) = 'string' THEN
                ids := ARRAY(SELECT id FROM vms.org_unit WHERE name = v #>> '{}');
            ELSE
                PERFORM vms._filter_error(k, 'must be a unit id or name');
            END IF;
            IF cardinality(ids) = 0 THEN
                PERFORM vms._filter_error(k, format('unit %s does not exist', v));
            END IF;
            -- the unit and the units under it
            ids := ARRAY(WITH RECURSIVE u(id) AS (SELECT unnest(ids) UNION
                         SELECT o.id FROM vms.org_unit o JOIN u ON o.parent_id = u.id) SELECT id FROM u);
            conds := conds || format('c.unit_id = ANY (%L::bigint[])', ids);
        WHEN 'point_type' THEN
            texts := vms._filter_strings(k, v);
            IF EXISTS (SELECT 1 FROM unnest(texts) t WHERE NOT EXISTS
                       (SELECT 1 FROM vms.point_type p WHERE p.code = t OR p.name_zh = t)) THEN
                PERFORM vms._filter_error(k, 'unknown point type', 'Point types are listed in vms.point_type.');
            END IF;
            conds := conds || format('c.point_type = ANY (%L::text[])',
                                     ARRAY(SELECT p.code FROM vms.point_type p, unnest(texts) t WHERE p.code = t OR p.name_zh = t));
        WHEN 'place_type' THEN
            conds := conds || format('c.place_type = ANY (%L::text[])', vms._filter_strings(k, v));
        WHEN 'capability' THEN
            conds := conds || format('c.capabilities @> %L::text[]', vms._filter_strings(k, v));
        WHEN 'keyword' THEN
            IF jsonb_typeof(v) <> 'string' OR btrim(v #>> '{}') = '' OR length(v #>> '{}') > 100 THEN
                PERFORM vms._filter_error(k, 'must be a non-empty string of at most 100 characters');
            END IF;
            kw_grams := vms.keyword_grams(btrim(v #>> '{}'));
            conds := conds || format('vms.text_grams(vms.channel_search_text(c.name, c.alias, c.address, c.place_type)) @> %L::text[]', kw_grams)
                           || format('vms.text_contains(vms.channel_search_text(c.name, c.alias, c.address, c.place_type), %L)',
                                     btrim(v #>> '{}'));
        WHEN 'bbox' THEN
            -- planar: the points the box covers in lon/lat (geometry &&)
            IF jsonb_typeof(v) <> 'array' OR jsonb_array_length(v) <> 4 THEN
                PERFORM vms._filter_error(k, 'must be [minlon, minlat, maxlon, maxlat]');
            END IF;
            IF vms._filter_num(k, v -> 0, -180, 180) > vms._filter_num(k, v -> 2, -180, 180)
               OR vms._filter_num(k, v -> 1, -90, 90) > vms._filter_num(k, v -> 3, -90, 90) THEN
                PERFORM vms._filter_error(k, 'minimum is greater than maximum');
            END IF;
            geoms := geoms || ST_MakeEnvelope((v ->> 0)::float8, (v ->> 1)::float8, (v ->> 2)::float8, (v ->> 3)::float8, 4326);
            centre := coalesce(centre, ST_Centroid(geoms[cardinality(geoms)]));
            conds := conds || format('c.geom && $1[%s]', cardinality(geoms));
        WHEN 'circle' THEN
            -- geodesic: ST_DWithin on geography (WGS-84 spheroid), through a box that holds the circle
            IF jsonb_typeof(v) <> 'object' THEN
                PERFORM vms._filter_error(k, 'must be {"lon": .., "lat": .., "radius_m": ..}');
            END IF;
            PERFORM vms._filter_keys(k, v, '{lon,lat,radius_m}');
            g := ST_SetSRID(ST_MakePoint(vms._filter_num(k, v -> 'lon', -180, 180, 'lon'), vms._filter_num(k, v -> 'lat', -90, 90, 'lat')), 4326);
            r := vms._filter_num(k, v -> 'radius_m', 0, 100000, 'radius_m');
            geoms := geoms || g || vms._metre_box(g, r);
            nums := nums || r;
            circle_centre := g; circle_r := r; circle_box := cardinality(conds) + 1;
            conds := conds || format('c.geom && $1[%s]', cardinality(geoms))
                           || format('ST_DWithin(c.geom::geography, $1[%s]::geography, $2[%s])', cardinality(geoms) - 1, cardinality(nums));
        WHEN 'polygon' THEN
            -- planar: ST_Intersects on geometry
            g := vms._filter_geojson(k, v, '{POLYGON,MULTIPOLYGON}');
            geoms := geoms || g;
            centre := coalesce(centre, ST_PointOnSurface(g));
            conds := conds || format('ST_Intersects(c.geom, $1[%s])', cardinality(geoms));
        WHEN 'line' THEN
            -- geodesic: ST_DWithin on geography (the line's edges are great-circle arcs)
            IF jsonb_typeof(v) <> 'object' OR NOT v ? 'geojson' THEN
                PERFORM vms._filter_error(k, 'must be {"geojson": <LineString>, "buffer_m": ..}');
            END IF;
            PERFORM vms._filter_keys(k, v, '{geojson,buffer_m}');
            g := vms._filter_geojson(k, v -> 'geojson', '{LINESTRING,MULTILINESTRING}');
            r := vms._filter_num(k, v -> 'buffer_m', 0, 10000, 'buffer_m');
            centre := coalesce(centre, ST_Centroid(g));
            geoms := geoms || g || vms._metre_box(vms._arc_envelope(g), r);
            nums := nums || r;
            conds := conds || format('c.geom && $1[%s]', cardinality(geoms))
                           || format('ST_DWithin(c.geom::geography, $1[%s]::geography, $2[%s])', cardinality(geoms) - 1, cardinality(nums));
        WHEN 'near' THEN
            -- geodesic: the k nearest by ST_Distance on geography, ties by code
            IF jsonb_typeof(v) <> 'object' THEN
                PERFORM vms._filter_error(k, 'must be {"lon": .., "lat": .., "k": ..}');
            END IF;
            PERFORM vms._filter_keys(k, v, '{lon,lat,k}');
            near_point := ST_SetSRID(ST_MakePoint(vms._filter_num(k, v -> 'lon', -180, 180, 'lon'), vms._filter_num(k, v -> 'lat', -90, 90, 'lat')), 4326);
            IF v ? 'k' THEN
                r := vms._filter_num(k, v -> 'k', 1, 10000, 'k');
                IF r <> trunc(r) THEN
                    PERFORM vms._filter_error(k, format('"k" must be a whole number, not %s', r));
                END IF;
                geo_k := r::integer;
            END IF;
            conds := conds || 'c.geom IS NOT NULL'::text;
        END CASE;
    END LOOP;
    geo_point := coalesce(near_point, circle_centre);
    knn_conds := conds;
    IF circle_centre IS NOT NULL AND near_point IS NULL THEN
        -- the candidates of the distance order need only the circle's box (see _search_points_as)
        knn_conds := conds[1:circle_box] || conds[circle_box + 2:];
        geo_radius := circle_r;
    END IF;
    IF geo_point IS NOT NULL THEN
        order_by := NULL;
    ELSIF centre IS NOT NULL THEN
        geoms := geoms || centre;
        order_by := format('c.geom <-> $1[%s], c.code', cardinality(geoms));
    ELSIF filter ? 'keyword' THEN
        -- a common keyword matches a large share of the ledger: ordering
        -- every match would read them all, so keyword results come in
        -- storage order and the scan stops at the page
        order_by := NULL;
    END IF;
    where_sql := coalesce(nullif(array_to_string(conds, ' AND '), ''), 'true');
    knn_where_sql := coalesce(nullif(array_to_string(knn_conds, ' AND '), ''), 'true');
    order_sql := order_by;
END $$;
COMMENT ON FUNCTION vms._search_sql(jsonb) IS 'internal: validate a search filter and build its query';

CREATE FUNCTION vms._filter_keys(key text, v jsonb, allowed text[]) RETURNS void
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

-- Runs as the owner so the spatial index serves the filter, and checks each
-- candidate against the caller's grants (vms.channel_visible_to): under
-- row-level security PostGIS's operators, not being leakproof, could only
-- filter rows the policy had already passed, one by one.
--
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

CREATE FUNCTION vms.search_geojson(filter jsonb DEFAULT '{}', lim integer DEFAULT 1000, off integer DEFAULT 0)
    RETURNS jsonb
    LANGUAGE sql VOLATILE SET search_path FROM CURRENT AS $$
    SELECT jsonb_build_object('type', 'FeatureCollection', 'features', coalesce(jsonb_agg(
               jsonb_build_object('type', 'Feature', 'id', s.code::text,
                   'geometry', CASE WHEN s.lon IS NOT NULL THEN jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(s.lon, s.lat)) END,
                   'properties', jsonb_strip_nulls(jsonb_build_object('code', s.code::text, 'name', s.name, 'alias', s.alias,
                       'address', s.address, 'point_type', s.point_type, 'place_type', s.place_type,
                       'online', s.online, 'distance_m', round(s.distance_m::numeric, 1))))), '[]'))
      FROM vms.search_points(filter, lim, off) s
$$;
COMMENT ON FUNCTION vms.search_geojson(jsonb, integer, integer) IS 'a search as a GeoJSON FeatureCollection for the map system';

-- Tag every channel a search returns (批量打标签).
CREATE FUNCTION vms.tag_search_results(filter jsonb, tag text, source text DEFAULT 'rule') RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    q record;
    tag_id bigint := vms.tag_resolve(to_jsonb(tag));
    n bigint;
BEGIN
    q := vms._search_sql(filter);
    IF q.geo_k IS NOT NULL THEN
        -- near with k: the k nearest the caller may see
        INSERT INTO vms.channel_tag (channel_code, tag_id, source)
        SELECT s.code, tag_id, source FROM vms.search_points(filter, q.geo_k) s ON CONFLICT DO NOTHING;
    ELSE
        EXECUTE format('INSERT INTO vms.channel_tag (channel_code, tag_id, source)
                        SELECT c.code, $3, $4 FROM vms.channel c WHERE %s ON CONFLICT DO NOTHING', q.where_sql)
            USING q.geoms, q.nums, tag_id, source;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.tag_search_results(jsonb, text, text) IS 'tag every channel matching a search filter; returns how many got the tag';

-- SECURITY DEFINER so that it may validate the filter with the internal
-- vms._search_sql.  It writes one vms.saved_search row whose owner is the
-- session user (the column default, as the table's policy requires) and
-- replaces only the session user's own search of that name.
CREATE FUNCTION vms.search_save(name text, filter jsonb) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    id bigint;
BEGIN
    PERFORM vms._search_sql(filter);     -- refuse a filter that would not run
    INSERT INTO vms.saved_search AS s (name, filter) VALUES (search_save.name, search_save.filter)
    ON CONFLICT (owner, name) DO UPDATE SET filter = EXCLUDED.filter RETURNING s.id INTO id;
    RETURN id;
END $$;
COMMENT ON FUNCTION vms.search_save(text, jsonb) IS 'save (or replace) a search under a name for the current user';

CREATE FUNCTION vms.search_saved(saved_name text, lim integer DEFAULT 100, off integer DEFAULT 0)
    RETURNS TABLE (code vms.gbcode, name text, alias text, address text, point_type text, place_type text,
                   unit_id bigint, online boolean, lon float8, lat float8, distance_m float8)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    f jsonb;
BEGIN
    SELECT s.filter INTO f FROM vms.saved_search s WHERE s.owner = session_user AND s.name = saved_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'saved search "%" does not exist', saved_name
            USING ERRCODE = 'undefined_object', HINT = 'See vms.saved_search for your saved searches.';
    END IF;
    RETURN QUERY SELECT * FROM vms.search_points(f, lim, off);
END $$;
COMMENT ON FUNCTION vms.search_saved(text, integer, integer) IS 'run one of the current user''s saved searches';

CREATE FUNCTION vms.search_rerun(history_id bigint)
    RETURNS TABLE (code vms.gbcode, name text, alias text, address text, point_type text, place_type text,
                   unit_id bigint, online boolean, lon float8, lat float8, distance_m float8)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    h vms.search_history;
BEGIN
    SELECT * INTO h FROM vms.search_history s WHERE s.id = history_id AND s.username = session_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'search history entry % does not exist', history_id
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN QUERY SELECT * FROM vms.search_points(h.filter, h.lim, h.off);
END $$;
COMMENT ON FUNCTION vms.search_rerun(bigint) IS 'run a search from the current user''s history again';
