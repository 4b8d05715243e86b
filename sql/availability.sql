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
