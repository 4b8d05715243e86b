-- issue 20 (map tiles): precomputed cluster cells for the tiles of zooms
-- 0-12, kept by statement-level triggers on vms.channel, and the tile
-- function reading them for a role that sees every channel.  Same text as
-- extension/sql/11_tiles.sql.

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
CREATE OR REPLACE FUNCTION vms._channel_tiles_as(role oid, z integer, x integer, y integer)
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


-- 99_privileges.sql revokes EXECUTE from PUBLIC on every function of a fresh
-- install; the new functions are internal or the owner's
REVOKE ALL ON FUNCTION vms._tile_col(float8), vms._tile_row(float8), vms._channel_clusters_track(),
    vms.channel_clusters_refresh(boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION vms._channel_cells(float8[], float8[], integer[], integer[], text[]) FROM PUBLIC;

-- the channels an upgraded database already has
SELECT vms.channel_clusters_refresh(true);

-- issue 20 (governance run): the rules checked channel by channel run in one
-- scan of the ledger; tasks are refreshed in one pass and only new findings
-- are inserted; room on governance_task's pages for HOT updates.  Same text
-- as extension/sql/08_governance.sql.
ALTER TABLE vms.governance_task SET (fillfactor = 50);

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

-- issue 20 (governance): the run records what it saw, for the incremental
-- run (vms.governance_run_changed); the rules' findings over a list of
-- channels (internal); new tasks' foreign keys checked once per run.  Same
-- text as extension/sql/08_governance.sql.
-- (the default set after the rows are filled: ADD COLUMN with a default
-- would keep it as the column's "missing value", which a fresh table has not)
ALTER TABLE vms.governance_run ADD COLUMN incremental boolean,
    ADD COLUMN snapshot pg_snapshot, ADD COLUMN since timestamptz;
UPDATE vms.governance_run SET incremental = false;
ALTER TABLE vms.governance_run ALTER COLUMN incremental SET DEFAULT false,
    ALTER COLUMN incremental SET NOT NULL;
COMMENT ON COLUMN vms.governance_run.incremental IS 'a run of vms.governance_run_changed over the channels changed since the run before (channels: how many it covered)';
COMMENT ON COLUMN vms.governance_run.snapshot IS 'the transactions the run''s first statement saw (pg_current_snapshot()): a change by one from its xmin on is one the next incremental run takes';
COMMENT ON COLUMN vms.governance_run.since IS 'no transaction the snapshot leaves out started before this (the oldest open transaction then): ledger history from here on holds every change the run did not see';

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
DROP INDEX vms.channel_unit_idx;

-- Findings of one rule: (channel_code, detail) for channels in scope.
-- Each kind is one set-based query; scope is a civil-code prefix or NULL,
-- codes a list of channels or NULL (all).  The rules that compare channels
-- with each other (same_point, duplicate_name) find channels in scope and
-- listed only, counting each one's point or unit and name in the whole
-- ledger (a channel in a prefix shares its point or unit and name with
-- channels outside it as much as with those in it: a run over a prefix
-- finds for its channels what a run over the ledger finds).
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
        -- the most specific region whose boundary covers the point
        RETURN QUERY
        SELECT c.code, format('recorded civil code %s, but the location lies in %s (%s)', c.civil_code, r.civil_code, r.name)
          FROM (SELECT c.* FROM vms.channel c WHERE codes IS NULL
                 UNION ALL SELECT l.* FROM (SELECT DISTINCT u.code FROM unnest(codes) u(code)) u
                 CROSS JOIN LATERAL (SELECT c.* FROM vms.channel c WHERE c.code = u.code OFFSET 0) l) c
          CROSS JOIN LATERAL (SELECT g.civil_code, g.name FROM vms.region g
                               WHERE g.boundary IS NOT NULL AND ST_Covers(g.boundary, c.geom)
                               ORDER BY g.level DESC LIMIT 1) r
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
           AND c.geom IS NOT NULL AND NOT ST_IsEmpty(c.geom) AND c.civil_code IS NOT NULL
           AND NOT (r.civil_code LIKE c.civil_code || '%' OR c.civil_code LIKE r.civil_code || '%');
    WHEN 'outside_region' THEN
        RETURN QUERY
        SELECT c.code, format('location is %s m outside region %s (%s)',
                              round(ST_Distance(g.boundary::geography, c.geom::geography)), g.civil_code, g.name)
          FROM (SELECT c.* FROM vms.channel c WHERE codes IS NULL
                 UNION ALL SELECT l.* FROM (SELECT DISTINCT u.code FROM unnest(codes) u(code)) u
                 CROSS JOIN LATERAL (SELECT c.* FROM vms.channel c WHERE c.code = u.code OFFSET 0) l) c
          JOIN vms.region g ON g.civil_code = c.civil_code
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
           AND g.boundary IS NOT NULL AND c.geom IS NOT NULL AND NOT ST_IsEmpty(c.geom)
           AND NOT ST_Covers(g.boundary, c.geom);
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
        RETURN QUERY
        SELECT c.code, format('name "%s" does not match %s (e.g. %s)', c.name, np.pattern, coalesce(np.example, '-'))
          FROM (SELECT c.* FROM vms.channel c WHERE codes IS NULL
                 UNION ALL SELECT l.* FROM (SELECT DISTINCT u.code FROM unnest(codes) u(code)) u
                 CROSS JOIN LATERAL (SELECT c.* FROM vms.channel c WHERE c.code = u.code OFFSET 0) l) c
          CROSS JOIN LATERAL (SELECT n.pattern, n.example FROM vms.naming_pattern n
                               WHERE coalesce(c.civil_code, '') LIKE n.civil_prefix || '%'
                               ORDER BY length(n.civil_prefix) DESC LIMIT 1) np
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
           AND c.name !~ np.pattern;
    END CASE;
END $$;
COMMENT ON FUNCTION vms._governance_findings(vms.governance_rule, text, vms.gbcode[]) IS
    'internal: what one rule finds among the channels in the civil-code scope and the list (NULL: all)';

CREATE OR REPLACE FUNCTION vms.governance_findings(rule vms.governance_rule, scope text DEFAULT NULL)
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
                                  ORDER BY g.level DESC LIMIT 1) rg
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

CREATE OR REPLACE FUNCTION vms.governance_run(scope text DEFAULT NULL) RETURNS vms.governance_run
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
-- issue 20 (governance): a location at POINT EMPTY (which geometry(Point)
-- accepts) is missing to the rules required_fields and coordinates and to
-- the fill rate.  Same text as extension/sql/08_governance.sql.
CREATE OR REPLACE FUNCTION vms._missing_fields_expr(fields text[]) RETURNS text
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
REVOKE ALL ON FUNCTION vms._governance_row_expr(vms.governance_rule) FROM PUBLIC;
REVOKE ALL ON FUNCTION vms._gbcode_check_details(vms.gbcode) FROM PUBLIC;
REVOKE ALL ON FUNCTION vms._governance_findings(vms.governance_rule, text, vms.gbcode[]),
    vms._governance_run(text, vms.gbcode[], boolean, vms.gbcode[], vms.gbcode[]), vms.governance_run_changed() FROM PUBLIC;

-- issue 20: the map clusters' refresh is scheduled (every five minutes; a
-- run with nothing appended returns at once).  Same text as
-- extension/sql/23_ops_figures.sql.
ALTER TABLE vms.ops_schedule DROP CONSTRAINT ops_schedule_action_check;
ALTER TABLE vms.ops_schedule ADD CONSTRAINT ops_schedule_action_check
    CHECK (action IN ('alarm_escalate', 'snapshot_day', 'month_close', 'retention_prune',
                      'governance_run', 'report_freeze', 'clusters_refresh'));
INSERT INTO vms.ops_schedule (name, cron, action) VALUES ('map clusters', '*/5 * * * *', 'clusters_refresh')
    ON CONFLICT (name) DO NOTHING;
COMMENT ON TABLE vms.ops_schedule IS
    'scheduled operations runs (cron: minute hour day month weekday, server time zone): alarm_escalate, snapshot_day (yesterday in args.tz, default Asia/Shanghai as report days), month_close (last month, same zone), retention_prune, governance_run (args.scope), report_freeze (the report days of the last args.days, default 7, that have ended), clusters_refresh (vms.channel_clusters_refresh: the map''s precomputed clusters take the ledger changes appended since the last refresh); vms.ops_run_due runs those due';

CREATE OR REPLACE FUNCTION vms.ops_run_due() RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    s vms.ops_schedule;
    n integer := 0;
    res text;
    d record;
BEGIN
    FOR s IN SELECT * FROM vms.ops_schedule x
              WHERE x.enabled AND (x.next_run_at IS NULL OR x.next_run_at <= now())
              ORDER BY x.next_run_at NULLS FIRST, x.name FOR UPDATE SKIP LOCKED LOOP
        res := NULL;
        BEGIN
            -- a schedule seen for the first time is only timed, not run
            IF s.next_run_at IS NOT NULL THEN
                CASE s.action
                    WHEN 'alarm_escalate' THEN res := vms.alarm_escalate()::text || ' escalated';
                    WHEN 'snapshot_day' THEN
                        d := vms._ops_schedule_days(now(), s.args ->> 'tz');
                        res := vms.ops_snapshot_day(d.yesterday, d.zone)::text || ' rows (' || d.yesterday || ' ' || d.zone || ')';
                    WHEN 'month_close' THEN
                        d := vms._ops_schedule_days(now(), s.args ->> 'tz');
                        IF EXISTS (SELECT 1 FROM vms.ops_month m WHERE m.month = d.last_month) THEN
                            res := 'closed already';
                        ELSE
                            res := vms.ops_month_close(d.last_month, d.zone)::text || ' rows';
                        END IF;
                    WHEN 'retention_prune' THEN
                        res := (SELECT coalesce(sum(p.deleted), 0) FROM vms.retention_prune() p)::text || ' deleted';
                    WHEN 'governance_run' THEN
                        res := 'run ' || (vms.governance_run(s.args ->> 'scope')).id;
                    WHEN 'report_freeze' THEN
                        -- the ended report days (Asia/Shanghai) of the last args.days from the first data on
                        res := (SELECT coalesce(sum(vms.report_freeze(g::date)), 0)
                                  FROM vms._report_data_start() ds(d),
                                       generate_series(greatest(ds.d, (now() AT TIME ZONE vms._report_tz())::date
                                                                      - coalesce((s.args ->> 'days')::int, 7)),
                                                       (now() AT TIME ZONE vms._report_tz())::date - 1, interval '1 day') g
                                 WHERE ds.d IS NOT NULL)::text || ' rows';
                    WHEN 'clusters_refresh' THEN
                        res := vms.channel_clusters_refresh()::text || ' cells';
                END CASE;
                n := n + 1;
            END IF;
            UPDATE vms.ops_schedule x SET next_run_at = vms.cron_next(x.cron, now()),
                   last_run_at = CASE WHEN s.next_run_at IS NOT NULL THEN now() ELSE x.last_run_at END,
                   last_result = coalesce(res, x.last_result), last_error = CASE WHEN s.next_run_at IS NOT NULL THEN NULL ELSE x.last_error END
             WHERE x.name = s.name;
        EXCEPTION WHEN OTHERS THEN
            UPDATE vms.ops_schedule x SET next_run_at = vms.cron_next(x.cron, now()), last_run_at = now(),
                   last_error = SQLERRM
             WHERE x.name = s.name;
        END;
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.ops_run_due() IS
    'run the scheduled operations runs that are due (each in its own subtransaction: an error is kept in last_error) and time their next run with vms.cron_next; returns how many ran; call it every minute';
