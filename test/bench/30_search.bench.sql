-- Point search over 1,000,000 channels in a city-sized area with tags:
-- p50/p95 per filter through vms.search_points, against the bare PostGIS
-- query on a plain table of the same points (tiles and governance runs:
-- 35_tiles_governance.bench.sql, which loads a ledger of its own).
--
-- The targets compare like with like: the baseline is the query an analyst
-- would write in bare PostGIS for the same page, on a plain copy of the
-- channels with the columns search returns (same rows, same physical order,
-- a geometry and a geography index): the same columns, the same rows in the
-- same order (circle and KNN by ST_Distance on geography, ties by code; box
-- and polygon nearest their centre), as text sent to the server each call.
-- Both run as the bench's superuser, who sees every channel.  The
-- *_vs_unordered lines (no target) keep the older comparison with an
-- unordered LIMIT 100 of ids only, which returns other rows.
--
-- Keyword workload.  Channel names are <place><road><direction>-<n> with the
-- place drawn from 40 real place names of Beijing's Chaoyang district and the
-- road from 30 real road names there, each by a Zipf distribution of
-- exponent 1 over its list (rank r has weight 1/r: the first place names
-- about 23 % of the ledger, the last 0.6 %).  Search keywords follow the same
-- law: half are a place, half a road, each Zipf(1) over its list, and one in
-- four is a place followed by a road ("望京阜通东大街"), so rare keywords are
-- searched as rarely as they occur.  Worst case: the place whose share of the
-- ledger is nearest 10 %, first page of 100.
SET search_path = public, vms;
SELECT setseed(0.3);
\if :{?rows}
\else
\set rows 1000000
\endif
-- the vocabularies, ranked, with their Zipf(1) cumulative share
CREATE TABLE bench.place AS
SELECT w, r, CASE WHEN r = count(*) OVER () THEN 1 ELSE (sum(1.0 / r) OVER (ORDER BY r) / sum(1.0 / r) OVER ())::float8 END AS cum
  FROM unnest('{望京,建外,三里屯,酒仙桥,双井,劲松,潘家园,麦子店,国贸,大望路,四惠,十里堡,朝阳门,东大桥,团结湖,呼家楼,亮马桥,燕莎,太阳宫,芍药居,
               惠新西街,安贞,亚运村,奥林匹克公园,北苑,来广营,东坝,常营,管庄,高碑店,王四营,十八里店,小红门,南磨房,垡头,崔各庄,孙河,金盏,黑庄户,豆各庄}'::text[])
       WITH ORDINALITY p(w, r);
CREATE TABLE bench.road AS
SELECT w, r, CASE WHEN r = count(*) OVER () THEN 1 ELSE (sum(1.0 / r) OVER (ORDER BY r) / sum(1.0 / r) OVER ())::float8 END AS cum
  FROM unnest('{阜通东大街,建国路,工体北路,酒仙桥路,广渠路,劲松路,华威路,枣营路,东三环中路,朝阳路,京通快速路,姚家园路,望京西路,北四环东路,安立路,
               北苑路,京顺路,机场辅路,东五环路,东四环北路,光华路,金台路,朝阳北路,青年路,定福庄路,石佛营路,左家庄北路,三元桥路,霄云路,新源南路}'::text[])
       WITH ORDINALITY p(w, r);
-- load the ledger directly (setup, not measured): no history, keyword index built after
ALTER TABLE vms.channel DISABLE TRIGGER USER;
DROP INDEX vms.channel_keyword_idx;
INSERT INTO vms.org_unit (name) SELECT '分局' || i FROM generate_series(1, 20) i ON CONFLICT DO NOTHING;
INSERT INTO vms.device (code, name)
SELECT vms.gbcode_make('110105' || lpad((1 + i % 16)::text, 2, '0'), 0, 118, 0, i / 16), 'NVR-' || i
  FROM generate_series(0, :rows / 10 - 1) i ON CONFLICT DO NOTHING;
INSERT INTO vms.channel (code, device_code, name, address, civil_code, point_type, place_type, azimuth,
                         fov_angle, fov_range_m, capabilities, unit_id, geom)
SELECT vms.gbcode_make('110105' || lpad((1 + i % 16)::text, 2, '0'), 0, 132, 0, 500000 + i / 16),
       vms.gbcode_make('110105' || lpad((1 + (i / 10) % 16)::text, 2, '0'), 0, 118, 0, (i / 10) / 16),
       (SELECT w FROM bench.place WHERE cum >= u.a ORDER BY cum LIMIT 1)
         || (SELECT w FROM bench.road WHERE cum >= u.b ORDER BY cum LIMIT 1)
         || (ARRAY['东向西', '西向东', '南向北', '北向南'])[1 + i % 4] || '-' || lpad((i % 1000)::text, 3, '0'),
       '北京市朝阳区' || (ARRAY['阜通东大街', '建国路', '工体北路', '酒仙桥路'])[1 + i % 4] || (i % 300) || '号',
       '110105' || lpad((1 + i % 16)::text, 2, '0'),
       (ARRAY['bullet', 'dome', 'capture', 'hemisphere'])[1 + i % 4],
       (ARRAY['道路', '小区', '学校', '商圈'])[1 + (i / 4) % 4],
       (i * 37) % 360, 60 + (i % 4) * 20, 50 + (i % 5) * 30,
       CASE WHEN i % 3 = 0 THEN '{face}'::text[] ELSE '{}' END,
       (SELECT id FROM vms.org_unit WHERE name = '分局' || (1 + i % 20)),
       ST_SetSRID(ST_MakePoint(116.20 + random() * 0.40, 39.75 + random() * 0.30), 4326)
  FROM generate_series(0, :rows - 1) i, LATERAL (SELECT random() + 0 * i AS a, random() + 0 * i AS b) u;
CREATE INDEX channel_keyword_idx ON vms.channel
    USING gin (vms.text_grams(vms.channel_search_text(name, alias, address, place_type)));
ALTER TABLE vms.channel ENABLE TRIGGER USER;
SELECT vms.tag_create('scenario', '场景' || i) FROM generate_series(1, 20) i;
INSERT INTO vms.channel_tag (channel_code, tag_id, source)
SELECT c.code, t.id, 'import' FROM vms.channel c
  JOIN vms.tag t ON t.name IN ('场景' || (1 + abs(hashtext(c.code::text)) % 20), '场景' || (1 + abs(hashtext(c.name)) % 20))
ON CONFLICT DO NOTHING;
-- as a DBA would for map search: points near each other on the same pages
CLUSTER vms.channel USING channel_geom_idx;
VACUUM ANALYZE vms.channel;
VACUUM ANALYZE vms.channel_tag;

-- the same points in a plain table for the bare PostGIS baseline
CREATE TABLE bench.pts AS SELECT code::text AS id, geom FROM vms.channel;
CREATE INDEX ON bench.pts USING gist (geom);
CREATE INDEX ON bench.pts USING gist ((geom::geography));
VACUUM ANALYZE bench.pts;
-- the same rows with the columns search returns, for the same-page baselines
CREATE TABLE bench.chan AS
SELECT code::text AS code, name, alias, address, point_type, place_type, unit_id, online, geom FROM vms.channel;
CREATE INDEX ON bench.chan USING gist (geom);
CREATE INDEX ON bench.chan USING gist ((geom::geography));
VACUUM ANALYZE bench.chan;
-- random points inside the benchmark city, as bench.latency draws them
CREATE FUNCTION bench.rand_points(n int) RETURNS TABLE (x float8, y float8) LANGUAGE sql VOLATILE AS $$
    SELECT round((116.22 + random() * 0.36)::numeric, 6)::float8, round((39.77 + random() * 0.26)::numeric, 6)::float8
      FROM generate_series(1, n)
$$;
-- the page of a filter as the bare baseline queries below write it
CREATE FUNCTION bench.same_page(f jsonb, lim int) RETURNS TABLE (code text, d float8) LANGUAGE plpgsql AS $$
DECLARE
    p geography;
    g geometry;
BEGIN
    IF f ? 'circle' THEN
        p := ST_SetSRID(ST_MakePoint((f #>> '{circle,lon}')::float8, (f #>> '{circle,lat}')::float8), 4326)::geography;
        RETURN QUERY SELECT c.code, ST_Distance(c.geom::geography, p) AS d FROM bench.chan c
                      WHERE ST_DWithin(c.geom::geography, p, (f #>> '{circle,radius_m}')::float8) ORDER BY 2, 1 LIMIT lim;
    ELSIF f ? 'near' THEN
        p := ST_SetSRID(ST_MakePoint((f #>> '{near,lon}')::float8, (f #>> '{near,lat}')::float8), 4326)::geography;
        RETURN QUERY SELECT c.code, ST_Distance(c.geom::geography, p) FROM bench.chan c ORDER BY c.geom::geography <-> p LIMIT lim;
    ELSIF f ? 'bbox' THEN
        g := ST_MakeEnvelope((f #>> '{bbox,0}')::float8, (f #>> '{bbox,1}')::float8, (f #>> '{bbox,2}')::float8, (f #>> '{bbox,3}')::float8, 4326);
        RETURN QUERY SELECT c.code, NULL::float8 FROM bench.chan c WHERE c.geom && g ORDER BY c.geom <-> ST_Centroid(g), c.code LIMIT lim;
    ELSE
        g := ST_SetSRID(ST_GeomFromGeoJSON(f -> 'polygon'), 4326);
        RETURN QUERY SELECT c.code, NULL::float8 FROM bench.chan c WHERE ST_Intersects(c.geom, g) ORDER BY c.geom <-> ST_PointOnSurface(g), c.code LIMIT lim;
    END IF;
END $$;
-- p50 and p95 in ms of two query templates run in turns on the same random
-- point (as bench.latency draws it), which of the two first alternating: a
-- search and its bare baseline see the same points and the same machine load
CREATE FUNCTION bench.latency_pair(tmpl_a text, tmpl_b text, n int, OUT a_p50 float8, OUT a_p95 float8, OUT b_p50 float8, OUT b_p95 float8)
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    ta float8[] := '{}';
    tb float8[] := '{}';
    x numeric;
    y numeric;
BEGIN
    FOR i IN 1 .. n LOOP
        x := round((116.22 + random() * 0.36)::numeric, 6);
        y := round((39.77 + random() * 0.26)::numeric, 6);
        FOR j IN 0 .. 1 LOOP
            t0 := clock_timestamp();
            IF (i + j) % 2 = 0 THEN
                EXECUTE format(tmpl_a, x, y);
                ta := ta || extract(epoch FROM clock_timestamp() - t0) * 1000;
            ELSE
                EXECUTE format(tmpl_b, x, y);
                tb := tb || extract(epoch FROM clock_timestamp() - t0) * 1000;
            END IF;
        END LOOP;
    END LOOP;
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t), percentile_cont(0.95) WITHIN GROUP (ORDER BY t) INTO a_p50, a_p95 FROM unnest(ta) t;
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t), percentile_cont(0.95) WITHIN GROUP (ORDER BY t) INTO b_p50, b_p95 FROM unnest(tb) t;
END $$;
-- the same-page baselines return what search returns: 30 random points per
-- shape, every row and its order.  The bare KNN orders by geography <->,
-- PostGIS's index distance on the sphere, while search orders by ST_Distance
-- on the spheroid: its pages differ now and then (two points swapped within
-- a fraction of a metre, or another tenth point), counted apart.
SELECT count(*) FILTER (WHERE NOT same AND NOT f ? 'near') AS same_rows_mismatches, count(*) FILTER (WHERE NOT f ? 'near') AS same_rows_checked,
       count(*) FILTER (WHERE NOT same AND f ? 'near') AS knn_sphere_differs, count(*) FILTER (WHERE f ? 'near') AS knn_checked FROM (
    SELECT f.filter AS f, (SELECT array_agg(code::text || round(coalesce(distance_m, 0)::numeric, 3)) FROM vms.search_points(f.filter, f.lim))
           IS NOT DISTINCT FROM (SELECT array_agg(code || round(coalesce(d, 0)::numeric, 3)) FROM bench.same_page(f.filter, f.lim)) AS same
      FROM (SELECT jsonb_build_object('circle', jsonb_build_object('lon', x, 'lat', y, 'radius_m', 500)) AS filter, 100 AS lim FROM bench.rand_points(30) UNION ALL
            SELECT jsonb_build_object('bbox', jsonb_build_array(x, y, x + 0.01, y + 0.008)), 100 FROM bench.rand_points(30) UNION ALL
            SELECT jsonb_build_object('polygon', jsonb_build_object('type', 'Polygon', 'coordinates',
                       jsonb_build_array(jsonb_build_array(jsonb_build_array(x, y), jsonb_build_array(x + 0.01, y), jsonb_build_array(x + 0.005, y + 0.008), jsonb_build_array(x, y))))), 100
              FROM bench.rand_points(30) UNION ALL
            SELECT jsonb_build_object('near', jsonb_build_object('lon', x, 'lat', y)), 10 FROM bench.rand_points(30)) f) s \gset

SELECT a_p50 AS vms_circle_p50, a_p95 AS vms_circle_p95, b_p50 AS same_circle_p50, b_p95 AS same_circle_p95 FROM bench.latency_pair($$SELECT * FROM vms.search_points('{"circle": {"lon": %1$s, "lat": %2$s, "radius_m": 500}}')$$,
    $$SELECT code, name, alias, address, point_type, place_type, unit_id, online, ST_X(geom), ST_Y(geom), ST_Distance(geom::geography, 'SRID=4326;POINT(%1$s %2$s)'::geography) AS d FROM bench.chan WHERE ST_DWithin(geom::geography, 'SRID=4326;POINT(%1$s %2$s)'::geography, 500) ORDER BY d, code LIMIT 100$$, 500) \gset
SELECT * FROM bench.latency($$SELECT count(*) FROM (SELECT id FROM bench.pts WHERE ST_DWithin(geom::geography, ST_SetSRID(ST_MakePoint(%1$s, %2$s), 4326)::geography, 500) LIMIT 100) s$$, 200) \gset base_circle_
SELECT a_p50 AS vms_polygon_p50, a_p95 AS vms_polygon_p95, b_p50 AS same_polygon_p50, b_p95 AS same_polygon_p95 FROM bench.latency_pair($$SELECT * FROM vms.search_points(format('{"polygon": {"type": "Polygon", "coordinates": [[[%%s, %%s], [%%s, %%s], [%%s, %%s], [%%s, %%s]]]}}', %1$s, %2$s, %1$s + 0.01, %2$s, %1$s + 0.005, %2$s + 0.008, %1$s, %2$s)::jsonb)$$,
    $$SELECT code, name, alias, address, point_type, place_type, unit_id, online, ST_X(geom), ST_Y(geom), NULL::float8 FROM bench.chan WHERE ST_Intersects(geom, ST_SetSRID(ST_MakePolygon(ST_MakeLine(ARRAY[ST_MakePoint(%1$s, %2$s), ST_MakePoint(%1$s + 0.01, %2$s), ST_MakePoint(%1$s + 0.005, %2$s + 0.008), ST_MakePoint(%1$s, %2$s)])), 4326)) ORDER BY geom <-> ST_PointOnSurface(ST_SetSRID(ST_MakePolygon(ST_MakeLine(ARRAY[ST_MakePoint(%1$s, %2$s), ST_MakePoint(%1$s + 0.01, %2$s), ST_MakePoint(%1$s + 0.005, %2$s + 0.008), ST_MakePoint(%1$s, %2$s)])), 4326)), code LIMIT 100$$, 500) \gset
SELECT * FROM bench.latency($$SELECT count(*) FROM (SELECT id FROM bench.pts WHERE ST_Intersects(geom, ST_SetSRID(ST_MakePolygon(ST_MakeLine(ARRAY[ST_MakePoint(%1$s, %2$s), ST_MakePoint(%1$s + 0.01, %2$s), ST_MakePoint(%1$s + 0.005, %2$s + 0.008), ST_MakePoint(%1$s, %2$s)])), 4326)) LIMIT 100) s$$, 200) \gset base_polygon_
SELECT a_p50 AS vms_bbox_p50, a_p95 AS vms_bbox_p95, b_p50 AS same_bbox_p50, b_p95 AS same_bbox_p95 FROM bench.latency_pair($$SELECT * FROM vms.search_points(format('{"bbox": [%%s, %%s, %%s, %%s]}', %1$s, %2$s, %1$s + 0.01, %2$s + 0.008)::jsonb)$$,
    $$SELECT code, name, alias, address, point_type, place_type, unit_id, online, ST_X(geom), ST_Y(geom), NULL::float8 FROM bench.chan WHERE geom && ST_MakeEnvelope(%1$s, %2$s, %1$s + 0.01, %2$s + 0.008, 4326) ORDER BY geom <-> ST_SetSRID(ST_MakePoint(%1$s + 0.005, %2$s + 0.004), 4326), code LIMIT 100$$, 500) \gset
SELECT * FROM bench.latency($$SELECT count(*) FROM (SELECT id FROM bench.pts WHERE geom && ST_MakeEnvelope(%1$s, %2$s, %1$s + 0.01, %2$s + 0.008, 4326) LIMIT 100) s$$, 200) \gset base_bbox_
SELECT a_p50 AS vms_knn_p50, a_p95 AS vms_knn_p95, b_p50 AS same_knn_p50, b_p95 AS same_knn_p95 FROM bench.latency_pair($$SELECT * FROM vms.search_points('{"near": {"lon": %1$s, "lat": %2$s}}', 10)$$,
    $$SELECT code, name, alias, address, point_type, place_type, unit_id, online, ST_X(geom), ST_Y(geom), ST_Distance(geom::geography, 'SRID=4326;POINT(%1$s %2$s)'::geography) FROM bench.chan ORDER BY geom::geography <-> 'SRID=4326;POINT(%1$s %2$s)'::geography LIMIT 10$$, 500) \gset
SELECT * FROM bench.latency($$SELECT count(*) FROM (SELECT id FROM bench.pts ORDER BY geom <-> ST_SetSRID(ST_MakePoint(%1$s, %2$s), 4326) LIMIT 10) s$$, 200) \gset base_knn_
-- a keyword: place or road by Zipf(1), a quarter of them place + road
CREATE FUNCTION bench.zipf_keyword() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN u < 0.25 THEN (SELECT w FROM bench.place, (SELECT random() AS v) v WHERE cum >= v.v ORDER BY cum LIMIT 1)
                                  || (SELECT w FROM bench.road, (SELECT random() AS v) v WHERE cum >= v.v ORDER BY cum LIMIT 1)
                WHEN u < 0.625 THEN (SELECT w FROM bench.place, (SELECT random() AS v) v WHERE cum >= v.v ORDER BY cum LIMIT 1)
                ELSE (SELECT w FROM bench.road, (SELECT random() AS v) v WHERE cum >= v.v ORDER BY cum LIMIT 1) END
      FROM (SELECT random() AS u) x
$$;
SELECT * FROM bench.latency($$SELECT count(*) FROM vms.search_points(jsonb_build_object('keyword', bench.zipf_keyword() || left('%1$s', 0)))$$, 400) \gset vms_keyword_
-- worst case: the place whose share of the ledger is nearest 10 %
SELECT w AS worst_kw, share AS worst_share FROM (
    SELECT p.w, (SELECT count(*) FROM vms.channel c WHERE c.name LIKE p.w || '%')::float8 / (SELECT count(*) FROM vms.channel) AS share
      FROM bench.place p WHERE p.r <= 5) s ORDER BY abs(share - 0.1) LIMIT 1 \gset
SELECT * FROM bench.latency($$SELECT count(*) FROM vms.search_points(jsonb_build_object('keyword', '$$ || :'worst_kw' || $$' || left('%1$s', 0)))$$, 50) \gset vms_kwworst_
SELECT * FROM bench.latency($$SELECT count(*) FROM vms.search_points('{"tags_all": ["场景3", "场景7"], "circle": {"lon": %1$s, "lat": %2$s, "radius_m": 1000}}')$$, 200) \gset vms_tags_circle_

SELECT bench.line('search_same_rows_mismatches', :same_rows_mismatches, 'pages', :same_rows_checked, '0');
SELECT bench.line('search_knn10_bare_sphere_order_differs', :knn_sphere_differs, 'pages', :knn_checked, 'none');
SELECT bench.line('search_circle_500m_p50', :vms_circle_p50, 'ms', :same_circle_p50, '<=1.5');
SELECT bench.line('search_circle_500m_p95', :vms_circle_p95, 'ms', :same_circle_p95, '<=1.5 and p95<=5ms');
SELECT bench.line('search_polygon_p50', :vms_polygon_p50, 'ms', :same_polygon_p50, '<=1.5');
SELECT bench.line('search_polygon_p95', :vms_polygon_p95, 'ms', :same_polygon_p95, '<=1.5');
SELECT bench.line('search_bbox_p50', :vms_bbox_p50, 'ms', :same_bbox_p50, '<=1.5');
SELECT bench.line('search_bbox_p95', :vms_bbox_p95, 'ms', :same_bbox_p95, '<=1.5');
SELECT bench.line('search_knn10_p50', :vms_knn_p50, 'ms', :same_knn_p50, '<=1.5');
SELECT bench.line('search_knn10_p95', :vms_knn_p95, 'ms', :same_knn_p95, '<=1.5 and p95<=5ms');
SELECT bench.line('search_circle_500m_p50_vs_unordered', :vms_circle_p50, 'ms', :base_circle_p50, 'none');
SELECT bench.line('search_circle_500m_p95_vs_unordered', :vms_circle_p95, 'ms', :base_circle_p95, 'none');
SELECT bench.line('search_polygon_p50_vs_unordered', :vms_polygon_p50, 'ms', :base_polygon_p50, 'none');
SELECT bench.line('search_polygon_p95_vs_unordered', :vms_polygon_p95, 'ms', :base_polygon_p95, 'none');
SELECT bench.line('search_bbox_p50_vs_unordered', :vms_bbox_p50, 'ms', :base_bbox_p50, 'none');
SELECT bench.line('search_bbox_p95_vs_unordered', :vms_bbox_p95, 'ms', :base_bbox_p95, 'none');
SELECT bench.line('search_knn10_p50_vs_unordered', :vms_knn_p50, 'ms', :base_knn_p50, 'none');
SELECT bench.line('search_knn10_p95_vs_unordered', :vms_knn_p95, 'ms', :base_knn_p95, 'none');
SELECT bench.line('search_keyword_zipf_p50', :vms_keyword_p50, 'ms', 20, 'p95<=20ms');
SELECT bench.line('search_keyword_zipf_p95', :vms_keyword_p95, 'ms', 20, 'p95<=20ms');
SELECT bench.line('search_keyword_worst_' || round(:worst_share * 100) || 'pct_p50', :vms_kwworst_p50, 'ms', 50, 'first_page<=50ms');
SELECT bench.line('search_keyword_worst_' || round(:worst_share * 100) || 'pct_p95', :vms_kwworst_p95, 'ms', 50, 'first_page<=50ms');
SELECT bench.line('search_tags_all_circle_p50', :vms_tags_circle_p50, 'ms', :base_circle_p50, 'none');
SELECT bench.line('search_tags_all_circle_p95', :vms_tags_circle_p95, 'ms', :base_circle_p95, 'none');
