-- Vector tiles for the map system.  The signature (z, x, y, query_params)
-- is what pg_tileserv and martin look for to publish a function layer.
-- At zoom 13 and above every channel is a feature; below, channels are
-- clustered on a 64 x 64 grid per tile with a count, so a million channels
-- still draw.  A tile of zoom 13-16 holding more than 4,096 channels is
-- clustered too (on the grid of zoom-18 tiles).
--
-- Precomputed cluster levels.  A tile's 64 x 64 grid at zoom z is exactly
-- the grid of the tiles of zoom z + 6, so the clusters of zooms 0-12 are the
-- channels counted per tile of zooms 6-18 ("cells").  vms.channel_cluster
-- holds every occupied cell of levels 6-18 (count, online count, sums of the
-- Web-Mercator coordinates, the smallest member code); statement-level
-- triggers on vms.channel append what each statement changed to
-- vms.channel_cluster_delta (insert only: writers never wait for each other
-- or for a tile), and vms.channel_clusters_refresh() folds the appended rows
-- into the cells.  A tile reads both, so it is exact whether or not the
-- refresh has run.  A cell is the half-open tile [xmin, xmax) x (ymin, ymax]
-- with the edges ST_TileEnvelope computes, so the cells of a tile's grid hold
-- exactly the channels inside its envelope; the few points that && also
-- counts (within float4 rounding, about a metre, outside an edge) are read
-- from the ledger along the four edges.

-- the column and row of the zoom-18 tile holding a Web-Mercator point: the
-- same arithmetic as ST_TileEnvelope (xmin + size * x), corrected by one
-- where the division rounded across an edge
CREATE FUNCTION vms._tile_col(x float8) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN floor((x + 20037508.342789244::float8) / (40075016.685578488::float8 / 262144))::integer
         - (x < -20037508.342789244::float8 + (40075016.685578488::float8 / 262144)
                * floor((x + 20037508.342789244::float8) / (40075016.685578488::float8 / 262144)))::integer
         + (x >= -20037508.342789244::float8 + (40075016.685578488::float8 / 262144)
                * (floor((x + 20037508.342789244::float8) / (40075016.685578488::float8 / 262144)) + 1))::integer;
COMMENT ON FUNCTION vms._tile_col(float8) IS 'internal: the x of the zoom-18 tile whose [xmin, xmax) holds this Web-Mercator x';
CREATE FUNCTION vms._tile_row(y float8) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN floor((20037508.342789244::float8 - y) / (40075016.685578488::float8 / 262144))::integer
         - (y > 20037508.342789244::float8 - (40075016.685578488::float8 / 262144)
                * floor((20037508.342789244::float8 - y) / (40075016.685578488::float8 / 262144)))::integer
         + (y <= 20037508.342789244::float8 - (40075016.685578488::float8 / 262144)
                * (floor((20037508.342789244::float8 - y) / (40075016.685578488::float8 / 262144)) + 1))::integer;
COMMENT ON FUNCTION vms._tile_row(float8) IS 'internal: the y of the zoom-18 tile whose (ymin, ymax] holds this Web-Mercator y';

-- The one definition of the cells' arithmetic: which cell of each of the 13
-- levels 6-18 (the zoom-`level` tile) a channel's point falls in, and the
-- signed sums per cell that vms.channel_cluster and
-- vms.channel_cluster_delta hold.  Per point: its Web-Mercator x and y
-- (NULL: counted nowhere), n (1 a member joins the cell, -1 one leaves, 0
-- one stays and only went on or offline), the change of the online count,
-- and the code of a joining member (else NULL); gone counts the members
-- that left.  Every writer of the cells calls it: the statement triggers
-- with their transition rows, the refresh's rebuild with the ledger, the
-- city's apply triggers with the replicated rows (cluster_apply.c, and
-- vms._cluster_apply_tiles).  LANGUAGE sql and IMMUTABLE so that the
-- planner inlines it into the caller's query; the coordinates as float8
-- arrays, the unnests in the select list (a function scan would store each
-- array's rows first) and the sums of level 18 as integers (not numeric at
-- the 13 levels) keep it as fast as the statements it replaced.
CREATE FUNCTION vms._channel_cells(xs float8[], ys float8[], dn integer[], don integer[], codes text[])
    RETURNS TABLE (level integer, cx integer, cy integer, n bigint, n_online bigint, sx float8, sy float8,
                   code text, gone bigint)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT l, c.cx >> (18 - l), c.cy >> (18 - l), sum(c.n), sum(c.n_online), sum(c.sx), sum(c.sy), min(c.code), sum(c.gone)
      FROM (SELECT vms._tile_col(r.x) AS cx, vms._tile_row(r.y) AS cy, sum(r.n)::integer AS n,
                   sum(r.n_online)::integer AS n_online, sum(r.n * r.x) AS sx, sum(r.n * r.y) AS sy, min(r.code) AS code,
                   sum(greatest(-r.n, 0))::integer AS gone
              FROM (SELECT unnest(xs) AS x, unnest(ys) AS y, unnest(dn) AS n, unnest(don) AS n_online,
                           unnest(codes) AS code) r
             WHERE r.x IS NOT NULL
             GROUP BY 1, 2) c,
           generate_series(6, 18) l
     GROUP BY 1, 2, 3;
END;
COMMENT ON FUNCTION vms._channel_cells(float8[], float8[], integer[], integer[], text[]) IS
    'internal: the map cells (levels 6-18) that points (Web-Mercator x, y) joining (n 1), leaving (-1) or changing their online flag (0) change, with their signed sums';

CREATE TABLE vms.channel_cluster (
    level    smallint NOT NULL CHECK (level BETWEEN 6 AND 18),
    cx       integer NOT NULL,
    cy       integer NOT NULL,
    n        integer NOT NULL,
    n_online integer NOT NULL,
    sx       float8 NOT NULL,
    sy       float8 NOT NULL,
    code     text,
    PRIMARY KEY (level, cx, cy)
);
COMMENT ON TABLE vms.channel_cluster IS
    'internal: channels per occupied tile of zooms 6-18 (the cluster cells of tiles at zooms 0-12) as of the last vms.channel_clusters_refresh';
CREATE TABLE vms.channel_cluster_delta (
    level    smallint NOT NULL,
    cx       integer NOT NULL,
    cy       integer NOT NULL,
    n        integer NOT NULL,
    n_online integer NOT NULL,
    sx       float8 NOT NULL,
    sy       float8 NOT NULL,
    code     text,
    gone     integer NOT NULL
);
CREATE INDEX channel_cluster_delta_cell_idx ON vms.channel_cluster_delta (level, cx, cy);
COMMENT ON TABLE vms.channel_cluster_delta IS
    'internal: what ledger statements changed in vms.channel_cluster since its last refresh (signed; gone counts members that left, whose code may have been the smallest)';

-- SECURITY DEFINER: whoever may write vms.channel (under its row-level
-- security) keeps the owner's cluster tables in step; it reads only the
-- statement's transition rows and appends signed sums to the delta table.
CREATE FUNCTION vms._channel_clusters_track() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    -- the statement's points, with vms._channel_cells's n, online change
    -- and code, as arrays in the same statement (in variables, or passed as
    -- parameters, 100,000 of them cost a fifth more)
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM vms.channel_cluster_delta;
        DELETE FROM vms.channel_cluster;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO vms.channel_cluster_delta (level, cx, cy, n, n_online, sx, sy, code, gone)
        SELECT c.level, c.cx, c.cy, c.n, c.n_online, c.sx, c.sy, c.code, c.gone
          FROM (SELECT array_agg(ST_X(w.geom_3857)) AS xs, array_agg(ST_Y(w.geom_3857)) AS ys,
                       array_fill(1, ARRAY[count(*)::int]) AS dn, array_agg(w.online::int) AS don,
                       array_agg(w.code::text) AS codes
                  FROM new_rows w WHERE w.geom_3857 IS NOT NULL) a,
               vms._channel_cells(a.xs, a.ys, a.dn, a.don, a.codes) c;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO vms.channel_cluster_delta (level, cx, cy, n, n_online, sx, sy, code, gone)
        SELECT c.level, c.cx, c.cy, c.n, c.n_online, c.sx, c.sy, c.code, c.gone
          FROM (SELECT array_agg(ST_X(o.geom_3857)) AS xs, array_agg(ST_Y(o.geom_3857)) AS ys,
                       array_fill(-1, ARRAY[count(*)::int]) AS dn, array_agg(-o.online::int) AS don
                  FROM old_rows o WHERE o.geom_3857 IS NOT NULL) a,
               vms._channel_cells(a.xs, a.ys, a.dn, a.don, NULL) c;
    ELSE
        -- a channel that moved leaves its old cell and joins its new one; one
        -- that only went on or offline changes its cell's online count
        INSERT INTO vms.channel_cluster_delta (level, cx, cy, n, n_online, sx, sy, code, gone)
        SELECT c.level, c.cx, c.cy, c.n, c.n_online, c.sx, c.sy, c.code, c.gone
          FROM (SELECT array_agg(ST_X(q.g)) AS xs, array_agg(ST_Y(q.g)) AS ys, array_agg(q.n) AS dn,
                       array_agg(q.n_online) AS don, array_agg(q.code) AS codes
                  FROM (SELECT o.geom_3857 AS g, -1 AS n, -o.online::int AS n_online, NULL::text AS code
                          FROM old_rows o JOIN new_rows w ON w.code = o.code
                         WHERE o.geom_3857 IS NOT NULL AND o.geom_3857 IS DISTINCT FROM w.geom_3857
                        UNION ALL
                        SELECT w.geom_3857, 1, w.online::int, w.code::text
                          FROM old_rows o JOIN new_rows w ON w.code = o.code
                         WHERE w.geom_3857 IS NOT NULL AND o.geom_3857 IS DISTINCT FROM w.geom_3857
                        UNION ALL
                        SELECT w.geom_3857, 0, w.online::int - o.online::int, NULL
                          FROM old_rows o JOIN new_rows w ON w.code = o.code
                         WHERE w.geom_3857 IS NOT NULL AND o.geom_3857 IS NOT DISTINCT FROM w.geom_3857
                           AND o.online IS DISTINCT FROM w.online) q) a,
               vms._channel_cells(a.xs, a.ys, a.dn, a.don, a.codes) c;
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._channel_clusters_track() IS
    'internal: appends what a statement on vms.channel changed to the cluster cells (statement-level, transition tables)';
CREATE TRIGGER channel_clusters_ins AFTER INSERT ON vms.channel REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._channel_clusters_track();
CREATE TRIGGER channel_clusters_upd AFTER UPDATE ON vms.channel REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._channel_clusters_track();
CREATE TRIGGER channel_clusters_del AFTER DELETE ON vms.channel REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vms._channel_clusters_track();
CREATE TRIGGER channel_clusters_trunc AFTER TRUNCATE ON vms.channel
    FOR EACH STATEMENT EXECUTE FUNCTION vms._channel_clusters_track();

-- Fold the appended changes into the cells (or, with rebuild, count every
-- cell again from the ledger).  Cells that lost a member get their smallest
-- code again: level 18 from the ledger, each coarser level from its four
-- cells below.  Runs as its owner, one at a time; writers go on appending.
CREATE FUNCTION vms.channel_clusters_refresh(rebuild boolean DEFAULT false) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    folded bigint;
    xs float8[];        -- the ledger's points (rebuild)
    ys float8[];
    don integer[];
    codes text[];
    s constant float8 := 40075016.685578488::float8 / 262144;
    w constant float8 := 20037508.342789244::float8;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'vms.channel_clusters_refresh runs only at READ COMMITTED'
            USING ERRCODE = 'invalid_transaction_state',
                  DETAIL = 'It must see every change committed before it takes its lock.';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('vms.channel_clusters_refresh'));
    IF rebuild THEN
        -- writers wait at their append until this commits; their changes
        -- committed before are all in the ledger this counts
        LOCK TABLE vms.channel_cluster_delta IN EXCLUSIVE MODE;
        DELETE FROM vms.channel_cluster_delta;
        DELETE FROM vms.channel_cluster;
        SELECT array_agg(ST_X(c.geom_3857)), array_agg(ST_Y(c.geom_3857)), array_agg(c.online::int), array_agg(c.code::text)
          INTO xs, ys, don, codes
          FROM vms.channel c WHERE c.geom_3857 IS NOT NULL;
        INSERT INTO vms.channel_cluster (level, cx, cy, n, n_online, sx, sy, code)
        SELECT c.level, c.cx, c.cy, c.n, c.n_online, c.sx, c.sy, c.code
          FROM vms._channel_cells(xs, ys, array_fill(1, ARRAY[coalesce(cardinality(xs), 0)]), don, codes) c;
        GET DIAGNOSTICS folded = ROW_COUNT;
        RETURN folded;
    END IF;
    -- nothing appended (the scheduled run every five minutes, most of the
    -- time): no cell changes, and no cell lost its smallest code
    IF NOT EXISTS (SELECT 1 FROM vms.channel_cluster_delta) THEN
        RETURN 0;
    END IF;
    WITH d AS (DELETE FROM vms.channel_cluster_delta RETURNING *),
         g AS (SELECT d.level, d.cx, d.cy, sum(d.n) AS n, sum(d.n_online) AS n_online, sum(d.sx) AS sx,
                      sum(d.sy) AS sy, min(d.code) AS code, sum(d.gone) AS gone
                 FROM d GROUP BY 1, 2, 3),
         u AS (UPDATE vms.channel_cluster b
                  SET n = b.n + g.n, n_online = b.n_online + g.n_online, sx = b.sx + g.sx, sy = b.sy + g.sy,
                      code = CASE WHEN g.gone = 0 THEN least(b.code, g.code) END
                 FROM g WHERE b.level = g.level AND b.cx = g.cx AND b.cy = g.cy
               RETURNING b.level, b.cx, b.cy),
         i AS (INSERT INTO vms.channel_cluster (level, cx, cy, n, n_online, sx, sy, code)
               SELECT g.level, g.cx, g.cy, g.n, g.n_online, g.sx, g.sy, CASE WHEN g.gone = 0 THEN g.code END
                 FROM g WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.level = g.level AND u.cx = g.cx AND u.cy = g.cy)
               RETURNING 1)
    SELECT (SELECT count(*) FROM u) + (SELECT count(*) FROM i) INTO folded;
    DELETE FROM vms.channel_cluster WHERE n <= 0;
    UPDATE vms.channel_cluster b
       SET code = (SELECT min(c.code::text) FROM vms.channel c
                    WHERE c.geom && ST_Expand(ST_Transform(ST_MakeEnvelope(-w + s * b.cx, w - s * (b.cy + 1),
                                                                           -w + s * (b.cx + 1), w - s * b.cy, 3857), 4326), 1e-6)
                      AND vms._tile_col(ST_X(c.geom_3857)) = b.cx AND vms._tile_row(ST_Y(c.geom_3857)) = b.cy)
     WHERE b.level = 18 AND b.code IS NULL;
    FOR l IN REVERSE 17 .. 6 LOOP
        UPDATE vms.channel_cluster b
           SET code = (SELECT min(k.code) FROM vms.channel_cluster k
                        WHERE k.level = l + 1 AND k.cx BETWEEN 2 * b.cx AND 2 * b.cx + 1 AND k.cy BETWEEN 2 * b.cy AND 2 * b.cy + 1)
         WHERE b.level = l AND b.code IS NULL;
    END LOOP;
    RETURN folded;
END $$;
COMMENT ON FUNCTION vms.channel_clusters_refresh(boolean) IS
    'fold the ledger changes appended since the last refresh into the precomputed map clusters (rebuild: count them again from the ledger); returns the cells written';

-- Runs as the owner (the spatial index serves the tile) and keeps only the
-- channels the caller may see, as search does.
-- SECURITY DEFINER, internal (not executable by PUBLIC or the duty roles):
-- reached through vms.channel_tiles, which passes vms._acting_role().  It
-- first asks vms.channel_visible_to about the role, which refuses a role the
-- session user cannot act as.  Every point feature, and every cluster drawn
-- from the ledger, has passed vms.channel_visible_to(role, ...).  The
-- precomputed cells count every channel, so they are read only for a role
-- that sees every channel: a superuser, or a member of a live grant on
-- everything whose level is at least every level the security catalogue
-- assigns (what vms.channel_visible_to then answers true for every channel);
-- any other role's clusters are counted from the ledger, channel by channel,
-- and whether a tile of zoom 13-16 is clustered depends only on what the
-- role sees in it.  z/x/y are range-checked numbers.
CREATE FUNCTION vms._channel_tiles_as(role oid, z integer, x integer, y integer)
    RETURNS bytea
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    bounds geometry;
    area geometry;
    strips geometry[];
    cell float8;
    tile bytea;
    lvl integer;
    g integer;          -- the grid: g x g cells of zoom lvl
    x0 integer;
    y0 integer;
    s float8;
    w constant float8 := 20037508.342789244::float8;
    sees_all boolean;
    n bigint;
BEGIN
    IF z < 0 OR z > 22 OR x < 0 OR y < 0 OR x >= (1 << z) OR y >= (1 << z) THEN
        RAISE EXCEPTION 'tile %/%/% does not exist', z, x, y
            USING ERRCODE = 'invalid_parameter_value', HINT = 'z is 0-22 and x, y are 0 to 2^z - 1.';
    END IF;
    PERFORM vms.channel_visible_to(role, NULL, NULL);   -- refuses a role the session user cannot act as
    bounds := ST_TileEnvelope(z, x, y);
    -- a tile holds the channels whose Web-Mercator point its envelope covers
    -- (geom_3857 && bounds); the lon/lat box around it, widened by a
    -- micro-degree for rounding in the transform, only lets the index find them
    area := ST_Expand(ST_Transform(bounds, 4326), 1e-6);
    sees_all := EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = role AND r.rolsuper)
                OR EXISTS (SELECT 1 FROM vms.access_grant a
                            WHERE a.scope_kind = 'all' AND a.revoked_at IS NULL
                              AND a.valid_from <= statement_timestamp()
                              AND (a.valid_until IS NULL OR a.valid_until > statement_timestamp())
                              AND a.max_level >= (SELECT coalesce(max(k.level), 1)   -- at a city, its districts' levels too
                                                     FROM (SELECT level FROM vms.security_assignment
                                                           UNION ALL SELECT level FROM vms.cluster_security_assignment) k)
                              AND pg_catalog.pg_has_role(role, vms.grantee_role(a.grantee, a.grantee_oid), 'MEMBER'));
    -- the grid: 64 x 64 cells of zoom z + 6 below zoom 13; from 13 to 16 a
    -- tile holding more than 4,096 channels (more than the 64 x 64 grid
    -- could show) is clustered too, on the tiles of zoom 18 (32 x 32 at 13
    -- down to 4 x 4 at 16); otherwise every channel is a point feature
    IF z < 13 THEN
        lvl := z + 6;
    ELSIF z <= 16 THEN
        lvl := 18;
        g := 1 << (lvl - z);
        IF sees_all THEN
            SELECT coalesce(sum(u.n), 0) INTO n
              FROM (SELECT b.n FROM vms.channel_cluster b
                     WHERE b.level = 18 AND b.cx BETWEEN x * g AND x * g + g - 1 AND b.cy BETWEEN y * g AND y * g + g - 1
                    UNION ALL
                    SELECT d.n FROM vms.channel_cluster_delta d
                     WHERE d.level = 18 AND d.cx BETWEEN x * g AND x * g + g - 1 AND d.cy BETWEEN y * g AND y * g + g - 1) u;
        ELSE
            SELECT count(*) INTO n FROM vms.channel c
             WHERE c.geom && area AND c.geom_3857 && bounds AND vms.channel_visible_to(role, c.code, c.civil_code);
        END IF;
        IF n <= 4096 THEN
            lvl := NULL;
        END IF;
    END IF;
    IF lvl IS NULL THEN
        SELECT ST_AsMVT(f, 'channels', 4096, 'geom') INTO tile FROM (
            SELECT ST_AsMVTGeom(c.geom_3857, bounds, 4096, 64, true) AS geom,
                   c.code::text AS code, c.name, c.point_type, c.online, c.azimuth
              FROM vms.channel c
             WHERE c.geom && area AND c.geom_3857 && bounds
               AND vms.channel_visible_to(role, c.code, c.civil_code)) f;
        RETURN coalesce(tile, '\x'::bytea);
    END IF;
    g := 1 << (lvl - z);
    cell := (ST_XMax(bounds) - ST_XMin(bounds)) / g;
    IF NOT sees_all THEN
        -- a role that does not see every channel: clusters of what it sees
        SELECT ST_AsMVT(f, 'channels', 4096, 'geom') INTO tile FROM (
            SELECT ST_AsMVTGeom(ST_SetSRID(ST_MakePoint(avg(ST_X(c.geom_3857)), avg(ST_Y(c.geom_3857))), 3857),
                                bounds, 4096, 64, true) AS geom,
                   count(*) AS count, count(*) FILTER (WHERE c.online) AS online_count,
                   min(c.code::text) AS code
              FROM vms.channel c
             WHERE c.geom && area AND c.geom_3857 && bounds
               AND vms.channel_visible_to(role, c.code, c.civil_code)
             GROUP BY floor((ST_X(c.geom_3857) - ST_XMin(bounds)) / cell),
                      floor((ST_Y(c.geom_3857) - ST_YMin(bounds)) / cell)) f;
        RETURN coalesce(tile, '\x'::bytea);
    END IF;
    -- every channel: the precomputed cells of zoom lvl inside the tile (and
    -- the changes appended since their refresh) ...
    x0 := x * g;
    y0 := y * g;
    s := 40075016.685578488::float8 / (1 << lvl);
    -- ... and, from the ledger, the points && counts although they lie
    -- (by float4 rounding) just outside an edge: strips 10 m either side
    strips := ARRAY[ST_MakeEnvelope(ST_XMin(bounds) - 10, ST_YMin(bounds) - 10, ST_XMin(bounds) + 10, ST_YMax(bounds) + 10, 3857),
                    ST_MakeEnvelope(ST_XMax(bounds) - 10, ST_YMin(bounds) - 10, ST_XMax(bounds) + 10, ST_YMax(bounds) + 10, 3857),
                    ST_MakeEnvelope(ST_XMin(bounds) - 10, ST_YMin(bounds) - 10, ST_XMax(bounds) + 10, ST_YMin(bounds) + 10, 3857),
                    ST_MakeEnvelope(ST_XMin(bounds) - 10, ST_YMax(bounds) - 10, ST_XMax(bounds) + 10, ST_YMax(bounds) + 10, 3857)];
    strips := ARRAY(SELECT ST_Expand(ST_Transform(e, 4326), 1e-6) FROM unnest(strips) e);
    SELECT ST_AsMVT(f, 'channels', 4096, 'geom') INTO tile FROM (
        SELECT ST_AsMVTGeom(ST_SetSRID(ST_MakePoint(k.sx / k.n, k.sy / k.n), 3857), bounds, 4096, 64, true) AS geom,
               k.n AS count, k.n_online AS online_count,
               CASE WHEN k.gone = 0 THEN k.code
                    -- a member left since the refresh: the smallest code from the ledger
                    ELSE (SELECT min(c.code::text) FROM vms.channel c
                           WHERE c.geom && ST_Expand(ST_Transform(ST_MakeEnvelope(-w + s * k.cx, w - s * (k.cy + 1),
                                                                                  -w + s * (k.cx + 1), w - s * k.cy, 3857), 4326), 1e-6)
                             AND vms._tile_col(ST_X(c.geom_3857)) >> (18 - lvl) = k.cx
                             AND vms._tile_row(ST_Y(c.geom_3857)) >> (18 - lvl) = k.cy) END AS code
          FROM (SELECT u.cx, u.cy, sum(u.n)::bigint AS n, sum(u.n_online)::bigint AS n_online,
                       sum(u.sx) AS sx, sum(u.sy) AS sy, min(u.code) AS code, sum(u.gone) AS gone
                  FROM (SELECT b.cx, b.cy, b.n, b.n_online, b.sx, b.sy, b.code, 0 AS gone FROM vms.channel_cluster b
                         WHERE b.level = lvl AND b.cx BETWEEN x0 AND x0 + g - 1 AND b.cy BETWEEN y0 AND y0 + g - 1
                        UNION ALL
                        SELECT d.cx, d.cy, d.n, d.n_online, d.sx, d.sy, d.code, d.gone FROM vms.channel_cluster_delta d
                         WHERE d.level = lvl AND d.cx BETWEEN x0 AND x0 + g - 1 AND d.cy BETWEEN y0 AND y0 + g - 1) u
                 GROUP BY u.cx, u.cy HAVING sum(u.n) > 0) k
        UNION ALL
        SELECT ST_AsMVTGeom(ST_SetSRID(ST_MakePoint(avg(ST_X(c.geom_3857)), avg(ST_Y(c.geom_3857))), 3857),
                            bounds, 4096, 64, true),
               count(*), count(*) FILTER (WHERE c.online), min(c.code::text)
          FROM vms.channel c
         WHERE (c.geom && strips[1] OR c.geom && strips[2] OR c.geom && strips[3] OR c.geom && strips[4])
           AND c.geom_3857 && bounds
           AND NOT (vms._tile_col(ST_X(c.geom_3857)) >> (18 - lvl) BETWEEN x0 AND x0 + g - 1
                    AND vms._tile_row(ST_Y(c.geom_3857)) >> (18 - lvl) BETWEEN y0 AND y0 + g - 1)
         GROUP BY floor((ST_X(c.geom_3857) - ST_XMin(bounds)) / cell),
                  floor((ST_Y(c.geom_3857) - ST_YMin(bounds)) / cell)) f;
    RETURN coalesce(tile, '\x'::bytea);
END $$;
COMMENT ON FUNCTION vms._channel_tiles_as(oid, integer, integer, integer) IS 'internal: a tile for a role the session user can act as';

-- SECURITY DEFINER so that it may call the internal vms._channel_tiles_as;
-- it draws for the role the session acts as and takes no role argument.
CREATE FUNCTION vms.channel_tiles(z integer, x integer, y integer, query_params json DEFAULT '{}')
    RETURNS bytea
    LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path FROM CURRENT
    RETURN vms._channel_tiles_as(vms._acting_role(), z, x, y);
COMMENT ON FUNCTION vms.channel_tiles(integer, integer, integer, json) IS
    'channels as a Mapbox vector tile (layer "channels"): points with code, name, point_type, online, azimuth from z13; clusters with count below';
