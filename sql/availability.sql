-- availability accounting: online/offline/unknown intervals of devices and
-- channels, and the online rate per device, channel, unit, region and
-- contractor, checked against figures computed by hand.  Every time is
-- pinned with its offset; outputs are seconds, never clock times, so the
-- file passes in any time zone and on any date after March 2026.
\set SHOW_CONTEXT never
SET search_path = public, vms;
-- the day measured: P = [2026-03-01 00:00Z, 2026-03-02 00:00Z), 86400 s
\set p0 '''2026-03-01 00:00:00+00'''
\set p1 '''2026-03-02 00:00:00+00'''
INSERT INTO vms.region (civil_code, name) VALUES ('110105', '朝阳区'), ('11010501', '建外街道'), ('110108', '海淀区');
INSERT INTO vms.org_unit (name) VALUES ('东区运维'), ('西区运维');
INSERT INTO vms.org_unit (name, parent_id) SELECT '东区二组', id FROM vms.org_unit WHERE name = '东区运维';
-- A: an NVR of 东区运维 with two channels; B: an IPC of 西区运维; C: a
-- device of 东区二组 (under 东区运维) that never spoke
INSERT INTO vms.device (code, name, civil_code, unit_id) VALUES
    ('11010500001180000001', 'A NVR', '110105', (SELECT id FROM vms.org_unit WHERE name = '东区运维')),
    ('11010800001320000002', 'B IPC', '110108', (SELECT id FROM vms.org_unit WHERE name = '西区运维')),
    ('11010500001180000003', 'C NVR', '110105', (SELECT id FROM vms.org_unit WHERE name = '东区二组'));
INSERT INTO vms.channel (code, device_code, name, civil_code) VALUES
    ('11010500001310000011', '11010500001180000001', 'A1', '11010501'),
    ('11010500001310000012', '11010500001180000001', 'A2', NULL),
    ('11010800001310000021', '11010800001320000002', 'B1', NULL),
    ('11010500001310000031', '11010500001180000003', 'C1', NULL);
-- contracts: 甲公司 covers 东区运维 (and so 东区二组) and 西区运维, but device B is 乙公司's
INSERT INTO vms.maintenance_contract (name, contractor) VALUES ('东区维保2026', '甲公司'), ('B专项', '乙公司');
INSERT INTO vms.maintenance_scope (contract_id, unit_id)
SELECT k.id, u.id FROM vms.maintenance_contract k, vms.org_unit u
 WHERE k.name = '东区维保2026' AND u.name IN ('东区运维', '西区运维');
INSERT INTO vms.maintenance_scope (contract_id, device_code)
SELECT id, '11010800001320000002' FROM vms.maintenance_contract WHERE name = 'B专项';
SELECT code, (SELECT contractor FROM vms.maintenance_contract WHERE id = vms.contract_for(code)) AS contractor
  FROM (VALUES ('11010500001180000001'::vms.gbcode), ('11010500001310000031'), ('11010800001310000021'),
               ('11010800001320000002')) v(code);

-- A: online since the evening before; keepalive timeout 06:00-08:00; at
-- 20:00 found offline at the end of the SIP worker's restart grace (the
-- 180 s before are unknown, not offline), and stays offline
INSERT INTO vms.device_event (device_code, at, event, cause) VALUES
    ('11010500001180000001', '2026-02-28 22:00+00', 'registered', 'expires 3600 s'),
    ('11010500001180000001', '2026-02-28 22:00+00', 'online', 'registered'),
    ('11010500001180000001', '2026-03-01 06:00+00', 'offline', 'keepalive timeout'),
    ('11010500001180000001', '2026-03-01 08:00+00', 'online', 'registered'),
    ('11010500001180000001', '2026-03-01 20:00+00', 'offline', 'no keepalive within the restart grace');
-- B: first heard of at 12:00 (unknown before); unregistered 18:00-18:30
INSERT INTO vms.device_event (device_code, at, event, cause) VALUES
    ('11010800001320000002', '2026-03-01 12:00+00', 'online', 'registered'),
    ('11010800001320000002', '2026-03-01 18:00+00', 'unregistered', 'Expires: 0'),
    ('11010800001320000002', '2026-03-01 18:00+00', 'offline', 'unregistered'),
    ('11010800001320000002', '2026-03-01 18:30+00', 'online', 'registered');
-- the restart grace became an unknown period of 180 s before the flip
SELECT device_code, extract(epoch FROM to_ts - from_ts) AS grace_s, to_ts = '2026-03-01 20:00+00' AS ends_at_flip
  FROM vms.availability_gap;
-- the server was down 23:00-23:30: unknown for every device
SELECT vms.availability_gap_add('2026-03-01 23:00+00', '2026-03-01 23:30+00', 'server maintenance') > 0 AS gap_added;
-- A1: catalog says OFF 02:00-04:00; A2: inspections could not pull the stream 10:00-14:00
INSERT INTO vms.channel_status (code, status, reported_at) VALUES ('11010500001310000011', 'OFF', '2026-03-01 02:00+00');
UPDATE vms.channel_status SET status = 'ON', reported_at = '2026-03-01 04:00+00' WHERE code = '11010500001310000011';
UPDATE vms.channel_status SET reported_at = '2026-03-01 05:00+00' WHERE code = '11010500001310000011';  -- no change of status
SELECT code, status, extract(epoch FROM at - :p0) AS at_s FROM vms.channel_status_event ORDER BY id;
INSERT INTO vms.quality_result (channel_code, at, profile, stream_ok, image_ok, checks) VALUES
    ('11010500001310000012', '2026-02-28 23:00+00', 'default', true, true, '{}'),
    ('11010500001310000012', '2026-03-01 10:00+00', 'default', false, false, '{}'),
    ('11010500001310000012', '2026-03-01 14:00+00', 'default', true, true, '{}');

-- A's day, interval by interval (seconds from P's start), by hand:
-- online 0-6h, offline 6-8h, online 8h-19:57, unknown 19:57-20:00 (grace),
-- offline 20-23h, unknown 23-23:30 (server), offline 23:30-24h
SELECT state, extract(epoch FROM from_ts - :p0) AS from_s, extract(epoch FROM to_ts - :p0) AS to_s
  FROM vms.availability_intervals(:p0, :p1, 'device') WHERE code = '11010500001180000001' ORDER BY from_ts;
-- every subject's intervals cover the period exactly, without overlap
SELECT kind, count(DISTINCT code) AS subjects,
       bool_and(gap_free) AS gap_free, sum(extract(epoch FROM to_ts - from_ts)) / count(DISTINCT code) AS seconds_each
  FROM (SELECT k AS kind, i.code, i.from_ts, i.to_ts,
               coalesce(lag(i.to_ts) OVER (PARTITION BY k, i.code ORDER BY i.from_ts), :p0) = i.from_ts
               AND (lead(i.from_ts) OVER (PARTITION BY k, i.code ORDER BY i.from_ts) IS NOT NULL
                    OR i.to_ts = :p1) AS gap_free
          FROM unnest(ARRAY['device', 'channel']) k, vms.availability_intervals(:p0, :p1, k) i) x
 GROUP BY kind ORDER BY kind;

-- per device, by hand:
--   A  online 6h + 11h57m = 64620, offline 2h + 3h + 30m = 19800, unknown 180 + 1800, 2 outages
--   B  online 6h + 5h30m - 30m (server) = 39600, offline 1800, unknown 12h + 30m, 1 outage
--   C  nothing known: ratio NULL
SELECT group_key, group_name, round(online_ratio::numeric, 6) AS ratio, online_ratio = CASE group_name WHEN 'A NVR' THEN 64620.0 / (64620 + 19800) WHEN 'B IPC' THEN 39600.0 / (39600 + 1800) END AS by_hand,
       online_seconds, offline_seconds, unknown_seconds, offline_events, members
  FROM vms.availability(:p0, :p1, 'device');
-- per channel: A1 = A less the catalog's 2 h OFF (one more outage);
-- A2 = A less the stream's 4 h; B1 = B; C1 unknown
SELECT group_key, group_name, round(online_ratio::numeric, 6) AS ratio, online_seconds, offline_seconds,
       unknown_seconds, offline_events
  FROM vms.availability(:p0, :p1, 'channel');
-- per unit (channels as members): 东区运维 = A1 + A2 = 107640 / (107640 + 61200);
-- 东区二组 only C1 (nothing known); 西区运维 = B1
SELECT group_name, round(online_ratio::numeric, 6) AS ratio, online_ratio = CASE group_name WHEN '东区运维' THEN 107640.0 / (107640 + 61200) WHEN '西区运维' THEN 39600.0 / (39600 + 1800) END AS by_hand,
       online_seconds, offline_seconds, offline_events, members
  FROM vms.availability(:p0, :p1, 'unit') ORDER BY group_name;
SELECT group_key, group_name, round(online_ratio::numeric, 6) AS ratio, offline_seconds, offline_events, members
  FROM vms.availability(:p0, :p1, 'region');
-- per contractor: 甲公司 = A1, A2 and C1 (through 东区二组's parent); 乙公司 = B1 (the device's own contract)
SELECT group_key, round(online_ratio::numeric, 6) AS ratio, online_seconds, offline_seconds, offline_events, members
  FROM vms.availability(:p0, :p1, 'contractor');

-- a period cutting intervals: 07:00-21:00.  A: offline 7-8h and 20-21h
-- (the 06:00 outage began before: not counted), online 8h-19:57, unknown
-- 180 s; B: unknown until 12:00, online 6h + 2h30m, offline 30 min
SELECT group_key, online_seconds, offline_seconds, unknown_seconds, offline_events
  FROM vms.availability('2026-03-01 07:00+00', '2026-03-01 21:00+00', 'device') WHERE members > 0 AND group_key <> '11010500001180000003';
-- a period starting before the first event: A's unknown until its first
-- event (2026-02-28 22:00), then online; B and C unknown before theirs
SELECT group_key, online_seconds, offline_seconds, unknown_seconds
  FROM vms.availability('2026-02-01 00:00+00', :p1, 'device');
-- a period ending in the future is clipped to now(): the same figures as up to now()
SELECT (SELECT array_agg(a ORDER BY a.group_key) FROM vms.availability(:p0, '2999-01-01 00:00+00', 'device') a)
     = (SELECT array_agg(a ORDER BY a.group_key) FROM vms.availability(:p0, now(), 'device') a) AS future_clipped_to_now,
       (SELECT max(to_ts) FROM vms.availability_intervals(:p0, '2999-01-01 00:00+00')) = now() AS intervals_end_now;
-- an empty period (to before from): every member, no time, no ratio
SELECT group_key, online_ratio, online_seconds, offline_seconds, unknown_seconds, offline_events
  FROM vms.availability(:p1, :p0, 'device');
\set VERBOSITY default
SELECT * FROM vms.availability(:p0, :p1, 'street');
SELECT vms.availability_gap_add(:p1, :p0, 'backwards');
SELECT vms.availability_gap_add(:p0, :p1, ' ');

-- Kept runs (vms.availability_run) against the events.  vms.availability
-- sums the runs; here every figure is also computed straight from the
-- events, point by point: the period is cut at every event, gap bound and
-- end, each piece takes the state of the last event at or before its start
-- (a channel: its device's, bad if its latest catalog status is not ON or
-- its latest inspection pulled no stream), unknown inside a gap; an outage
-- begins where a subject is offline and was not one microsecond before.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.dev_state(d vms.gbcode, x timestamptz) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT e.event = 'online' FROM vms.device_event e
     WHERE e.device_code = d AND e.event IN ('online', 'offline') AND e.at <= x ORDER BY e.at DESC, e.id DESC LIMIT 1 $$;
CREATE FUNCTION pg_temp.ch_state(c vms.gbcode, x timestamptz) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN s THEN coalesce((SELECT e.status = 'ON' FROM vms.channel_status_event e WHERE e.code = c AND e.at <= x
                            ORDER BY e.at DESC, e.id DESC LIMIT 1), true)
             AND coalesce((SELECT q.stream_ok FROM vms.quality_result q WHERE q.channel_code = c AND q.at <= x
                            ORDER BY q.at DESC, q.id DESC LIMIT 1), true) ELSE s END
      FROM pg_temp.dev_state((SELECT device_code FROM vms.channel WHERE code = c), x) s $$;
-- state at x: true online, false offline, NULL unknown (gaps ignored)
CREATE FUNCTION pg_temp.state(kind text, k vms.gbcode, x timestamptz) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE kind WHEN 'device' THEN pg_temp.dev_state(k, x) ELSE pg_temp.ch_state(k, x) END $$;
CREATE FUNCTION pg_temp.reference(p0 timestamptz, p1 timestamptz, kind text)
    RETURNS TABLE (code vms.gbcode, on_s numeric, off_s numeric, ev integer) LANGUAGE sql STABLE AS $$
    WITH per AS (SELECT p0 AS f, greatest(least(p1, now()), p0) AS t),
    subj AS (SELECT d.code, d.code AS dev FROM vms.device d WHERE kind = 'device'
             UNION ALL SELECT c.code, c.device_code FROM vms.channel c WHERE kind = 'channel'),
    cut AS (
        SELECT s.code, s.dev, b.x FROM subj s, per
         CROSS JOIN LATERAL (
             SELECT per.f UNION SELECT per.t
             UNION SELECT e.at FROM vms.device_event e WHERE e.device_code = s.dev
             UNION SELECT e.at FROM vms.channel_status_event e WHERE e.code = s.code
             UNION SELECT q.at FROM vms.quality_result q WHERE q.channel_code = s.code
             UNION SELECT g.from_ts FROM vms.availability_gap g WHERE g.device_code IS NULL OR g.device_code = s.dev
             UNION SELECT g.to_ts FROM vms.availability_gap g WHERE g.device_code IS NULL OR g.device_code = s.dev) b(x)
         WHERE b.x >= per.f AND b.x <= per.t),
    piece AS (
        SELECT c.code, c.dev, c.x, lead(c.x) OVER (PARTITION BY c.code ORDER BY c.x) AS nx FROM cut c),
    st AS (
        SELECT p.code, extract(epoch FROM p.nx - p.x) AS len,
               CASE WHEN EXISTS (SELECT 1 FROM vms.availability_gap g
                                  WHERE (g.device_code IS NULL OR g.device_code = p.dev) AND g.from_ts <= p.x AND p.x < g.to_ts)
                    THEN NULL ELSE pg_temp.state(kind, p.code, p.x) END AS up,
               pg_temp.state(kind, p.code, p.x) = false
               AND pg_temp.state(kind, p.code, p.x - interval '1 microsecond') IS DISTINCT FROM false AS begins
          FROM piece p WHERE p.nx IS NOT NULL)
    SELECT s.code, coalesce(sum(st.len) FILTER (WHERE st.up), 0), coalesce(sum(st.len) FILTER (WHERE NOT st.up), 0),
           (count(*) FILTER (WHERE st.begins))::int
      FROM subj s LEFT JOIN st ON st.code = s.code GROUP BY s.code $$;
-- the kept runs equal a rebuild from the events; the figures equal the
-- reference and the multirange computation from the events
-- (vms._availability_ranges) for each period
CREATE TEMP TABLE period (p0 timestamptz, p1 timestamptz);
CREATE FUNCTION pg_temp.runs_now() RETURNS TABLE (line text) LANGUAGE sql STABLE AS $$
    SELECT format('%s %s %s %s %s %s %s %s', r.source, r.code, r.from_ts, r.up, r.to_ts,
                  trim_scale(r.online_before - first_value(r.online_before) OVER w),
                  trim_scale(r.offline_before - first_value(r.offline_before) OVER w),
                  r.outages_before - first_value(r.outages_before) OVER w)
      FROM vms.availability_run r WINDOW w AS (PARTITION BY r.source, r.code ORDER BY r.from_ts) $$;
CREATE FUNCTION pg_temp.check_runs(periods integer) RETURNS TABLE (runs_exact boolean, checked bigint, mismatches bigint)
    LANGUAGE plpgsql AS $$
DECLARE
    kept text;
BEGIN
    -- the sums are kept from an arbitrary origin per subject (after a
    -- retention cut): compared from each subject's first run
    kept := (SELECT string_agg(x.line, E'\n' ORDER BY x.line) FROM pg_temp.runs_now() x);
    PERFORM vms.availability_rebuild();
    runs_exact := kept IS NOT DISTINCT FROM (SELECT string_agg(x.line, E'\n' ORDER BY x.line) FROM pg_temp.runs_now() x);
    TRUNCATE period;
    INSERT INTO period
    SELECT a, a + random() * interval '4 days'
      FROM (SELECT '2026-03-31 00:00+00'::timestamptz + random() * interval '12 days' AS a FROM generate_series(1, periods)) x;
    INSERT INTO period VALUES ('2026-01-01 00:00+00', '2999-01-01 00:00+00'), ('2026-04-05 00:00+00', '2026-04-05 00:00+00'),
                              ('2026-04-05 00:00+00', '2026-04-01 00:00+00'), ('2026-04-02 12:00+00', '2026-04-03 12:00+00');
    SELECT count(*), count(*) FILTER (WHERE n.code IS NULL OR r.code IS NULL OR o.code IS NULL
                                         OR (n.online_s, n.offline_s, n.offline_events) IS DISTINCT FROM (r.on_s, r.off_s, r.ev)
                                         OR (n.online_s, n.offline_s, n.offline_events) IS DISTINCT FROM (o.on_s, o.off_s, o.ev)
                                         OR n.period_s <> greatest(extract(epoch FROM least(n.p1, now()) - n.p0), 0))
      INTO checked, mismatches
      FROM (SELECT p.p0, p.p1, k, x.* FROM period p, unnest(ARRAY['device', 'channel']) k,
                   vms._availability_figures(p.p0, p.p1, k) x) n
      FULL JOIN (SELECT p.p0, p.p1, k, x.* FROM period p, unnest(ARRAY['device', 'channel']) k,
                        pg_temp.reference(p.p0, p.p1, k) x) r USING (p0, p1, k, code)
      FULL JOIN (SELECT p.p0, p.p1, k, a.code,
                        coalesce((SELECT sum(extract(epoch FROM upper(g) - lower(g))) FROM unnest(a.online) g), 0) AS on_s,
                        coalesce((SELECT sum(extract(epoch FROM upper(g) - lower(g))) FROM unnest(a.offline) g), 0) AS off_s,
                        a.offline_events AS ev
                   FROM period p, unnest(ARRAY['device', 'channel']) k, vms._availability_ranges(p.p0, p.p1, k) a) o
        USING (p0, p1, k, code);
    RETURN NEXT;
END $$;
SELECT setseed(0.42);
-- eight devices of two channels each, 東区运维
INSERT INTO vms.device (code, name, unit_id)
SELECT vms.gbcode_make('11010500', 0, 118, 0, 100 + i), 'R' || i, (SELECT id FROM vms.org_unit WHERE name = '东区运维')
  FROM generate_series(1, 8) i;
INSERT INTO vms.channel (code, device_code, name)
SELECT vms.gbcode_make('11010500', 0, 131, 0, 1000 + 10 * i + j), vms.gbcode_make('11010500', 0, 118, 0, 100 + i), 'R' || i || '.' || j
  FROM generate_series(1, 8) i, generate_series(1, 2) j;
CREATE TEMP TABLE rnd_dev AS SELECT code FROM vms.device WHERE name LIKE 'R%';
CREATE TEMP TABLE rnd_ch AS SELECT code FROM vms.channel WHERE name LIKE 'R%';
-- events in random order, in several statements: times on a 10-minute grid
-- (ties between events and with gap bounds), whole and odd microseconds
CREATE FUNCTION pg_temp.random_at() RETURNS timestamptz LANGUAGE sql VOLATILE AS $$
    SELECT '2026-04-01 00:00+00'::timestamptz + (random() * 1000)::int * interval '10 min'
           + CASE WHEN random() < 0.2 THEN random() * interval '10 min' ELSE interval '0' END $$;
CREATE FUNCTION pg_temp.add_events(n integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO vms.device_event (device_code, at, event, cause)
    SELECT (SELECT code FROM rnd_dev ORDER BY random() + g * 0 LIMIT 1), pg_temp.random_at(),
           (ARRAY['online', 'offline', 'offline', 'online', 'registered'])[1 + floor(random() * 5)::int], 'random'
      FROM generate_series(1, n) g;
    INSERT INTO vms.channel_status_event (code, at, status)
    SELECT (SELECT code FROM rnd_ch ORDER BY random() + g * 0 LIMIT 1), pg_temp.random_at(),
           (ARRAY['ON', 'OFF', 'ON', 'VLOST'])[1 + floor(random() * 4)::int]
      FROM generate_series(1, n / 4) g;
    INSERT INTO vms.quality_result (channel_code, at, profile, stream_ok, image_ok, checks)
    SELECT (SELECT code FROM rnd_ch ORDER BY random() + g * 0 LIMIT 1), pg_temp.random_at(), 'default',
           random() < 0.6, true, '{}'
      FROM generate_series(1, n / 4) g;
END $$;
SELECT pg_temp.add_events(60);
SELECT pg_temp.add_events(60);
SELECT pg_temp.add_events(60);
-- unknown periods: every device's, one device's, overlapping
SELECT vms.availability_gap_add(a, a + interval '5 hours', 'random outage') > 0 AS gap
  FROM (SELECT pg_temp.random_at() AS a FROM generate_series(1, 3)) x;
SELECT vms.availability_gap_add(a, a + random() * interval '1 day', 'random device gap', d) > 0 AS gap
  FROM (SELECT pg_temp.random_at() AS a, (SELECT code FROM rnd_dev ORDER BY random() + g * 0 LIMIT 1) AS d
          FROM generate_series(1, 4) g) x;
SELECT * FROM pg_temp.check_runs(25);
-- changed events: some moved in time (UPDATE), some deleted in the middle
UPDATE vms.device_event SET at = pg_temp.random_at() WHERE cause = 'random' AND random() < 0.1;
UPDATE vms.channel_status_event SET status = CASE status WHEN 'ON' THEN 'OFF' ELSE 'ON' END WHERE random() < 0.2;
UPDATE vms.quality_result SET at = pg_temp.random_at() WHERE random() < 0.2;
DELETE FROM vms.device_event WHERE cause = 'random' AND random() < 0.1;
DELETE FROM vms.quality_result WHERE random() < 0.1;
SELECT pg_temp.add_events(40);
SELECT * FROM pg_temp.check_runs(25);
-- retention: the oldest events go (runs cut at each subject's first remaining event)
DELETE FROM vms.device_event WHERE at < '2026-04-03 00:00+00';
DELETE FROM vms.channel_status_event WHERE at < '2026-04-02 00:00+00';
DELETE FROM vms.quality_result WHERE at < '2026-04-04 00:00+00';
SELECT * FROM pg_temp.check_runs(25);
-- every figure of vms.availability per unit equals the reference summed over the unit's channels
SELECT count(*) AS periods,
       count(*) FILTER (WHERE (a.online_seconds, a.offline_seconds, a.offline_events, a.online_ratio)
                              IS DISTINCT FROM (r.on_s::float8, r.off_s::float8, r.ev::int,
                                                r.on_s::float8 / nullif(r.on_s::float8 + r.off_s::float8, 0))) AS mismatches
  FROM period p
 CROSS JOIN LATERAL (SELECT * FROM vms.availability(p.p0, p.p1, 'unit') WHERE group_name = '东区运维') a
 CROSS JOIN LATERAL (SELECT sum(x.on_s) AS on_s, sum(x.off_s) AS off_s, sum(x.ev) AS ev
                       FROM pg_temp.reference(p.p0, p.p1, 'channel') x JOIN vms.channel c ON c.code = x.code
                      WHERE coalesce(c.unit_id, (SELECT unit_id FROM vms.device WHERE code = c.device_code))
                            = (SELECT id FROM vms.org_unit WHERE name = '东区运维')) r;
-- TRUNCATE empties the kept runs of its source
TRUNCATE vms.quality_result CASCADE;
SELECT count(*) FILTER (WHERE source = 'stream') AS stream_runs, count(*) FILTER (WHERE source = 'device') > 0 AS device_runs
  FROM vms.availability_run;
