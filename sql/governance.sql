-- point governance: each rule with a record that breaks it and one that does
-- not; task life cycle over re-runs; metrics
\set SHOW_CONTEXT never
SET search_path = public, vms;
SET client_min_messages = warning;

-- a district of Shenzhen with two streets, kept apart from other tests by its codes
INSERT INTO vms.region (civil_code, name, boundary) VALUES
    ('440304', '福田区', ST_Multi(ST_MakeEnvelope(114.00, 22.50, 114.10, 22.55, 4326))),
    ('44030401', '园岭街道', ST_Multi(ST_MakeEnvelope(114.00, 22.50, 114.05, 22.55, 4326))),
    ('44030402', '南园街道', ST_Multi(ST_MakeEnvelope(114.05, 22.50, 114.10, 22.55, 4326)));
INSERT INTO vms.org_unit (name, civil_code) VALUES ('福田分局', '440304'), ('园岭派出所', '44030401');
UPDATE vms.org_unit SET parent_id = (SELECT id FROM vms.org_unit WHERE name = '福田分局') WHERE name = '园岭派出所';
INSERT INTO vms.naming_pattern VALUES
    ('4403', '^.+(路|街|大道).*(东|西|南|北)向(东|西|南|北)-[0-9]{3}$', '福华路东向西-001', 'road + direction + number');
INSERT INTO vms.naming_pattern VALUES ('44', '^(unclosed', NULL, 'bad');
INSERT INTO vms.naming_pattern VALUES ('45', '^x$', 'y', 'example does not match');

INSERT INTO vms.device (code, name) VALUES ('44030401001180000001', '园岭NVR');
CREATE TEMP TABLE fx (code text, name text, geom geometry, civil text, extra jsonb);
INSERT INTO fx VALUES
    ('44030401001320000001', '福华路东向西-001', ST_SetSRID(ST_MakePoint(114.01, 22.51), 4326), '44030401', '{}'),
    ('44030401001320000002', '摄像机2',          ST_SetSRID(ST_MakePoint(114.02, 22.51), 4326), '44030401', '{"address": null}'),
    ('44030401001320000003', '福华路西向东-003', NULL, '44030401', '{}'),
    ('44030401001320000004', '福华路西向东-004', ST_SetSRID(ST_MakePoint(0, 0), 4326), '44030401', '{}'),
    ('44030401001320000005', '福华路西向东-005', ST_SetSRID(ST_MakePoint(22.52, 114.02), 4326), '44030401', '{}'),
    ('44030401001320000006', '福华路西向东-006', ST_SetSRID(ST_MakePoint(114.07, 22.52), 4326), '44030401', '{}'),
    ('44030401001320000007', '福华路南向北-007', ST_SetSRID(ST_MakePoint(114.03, 22.53), 4326), '44030401', '{}'),
    ('44030401001320000008', '福华路南向北-008', ST_SetSRID(ST_MakePoint(114.03, 22.53), 4326), '44030401', '{}'),
    ('44030401001320000009', '福华路南向北-009', ST_SetSRID(ST_MakePoint(114.03, 22.53), 4326), '44030401', '{}'),
    ('44030401001320000010', '福华路北向南-010', ST_SetSRID(ST_MakePoint(114.031, 22.531), 4326), '44030401', '{}'),
    ('44030401001320000011', '福华路北向南-010', ST_SetSRID(ST_MakePoint(114.032, 22.532), 4326), '44030401', '{}'),
    ('44030401001110000012', '福华路北向南-012', ST_SetSRID(ST_MakePoint(114.033, 22.533), 4326), '44030401', '{}'),
    ('44030401991329000013', '福华路北向南-013', ST_SetSRID(ST_MakePoint(114.034, 22.534), 4326), '44030401', '{}'),
    ('44030401001320000014', '福华路北向南-014', ST_SetSRID(ST_MakePoint(114.035, 22.535), 4326), '44030401', '{"azimuth": null, "place_type": null}'),
    ('44030401001320000015', '福华路北向南-015', ST_SetSRID(ST_MakePoint(114.036, 22.536), 4326), '44030401', '{"point_type": "capture", "resolution": null}'),
    ('44030401001320000016', '福华路北向南-016', ST_SetSRID(ST_MakePoint(114.037, 22.537), 4326), '4403', '{}');
INSERT INTO vms.channel (code, device_code, name, address, civil_code, point_type, geom, unit_id, azimuth,
                         place_type, resolution, capabilities)
SELECT code::vms.gbcode, '44030401001180000001', name,
       CASE WHEN extra ? 'address' THEN NULL ELSE '深圳市福田区福华路' END, civil,
       coalesce(extra ->> 'point_type', 'bullet'), geom,
       (SELECT id FROM vms.org_unit WHERE name = '园岭派出所'),
       CASE WHEN extra ? 'azimuth' THEN NULL ELSE 90 END,
       CASE WHEN extra ? 'place_type' THEN NULL ELSE '道路' END,
       CASE WHEN extra ? 'resolution' THEN NULL ELSE '400W' END, '{}'
  FROM fx;
-- one stale record: keep its old timestamp by bypassing the touch trigger
ALTER TABLE vms.channel DISABLE TRIGGER channel_touch;
UPDATE vms.channel SET updated_at = now() - interval '400 days' WHERE code = '44030401001320000016';
ALTER TABLE vms.channel ENABLE TRIGGER channel_touch;

SELECT code, kind, severity, enabled FROM vms.governance_rule ORDER BY code;
SELECT channels, findings, opened, reopened, closed FROM vms.governance_run('4403');
SELECT t.channel_code, t.rule_code, t.state, regexp_replace(t.detail, '[0-9]{4}-[0-9]{2}-[0-9]{2}', 'YYYY-MM-DD') AS detail FROM vms.governance_task t
 WHERE t.civil_code LIKE '4403%' ORDER BY t.channel_code, t.rule_code;
-- the clean record breaks no rule
SELECT count(*) AS tasks_for_clean_record FROM vms.governance_task WHERE channel_code = '44030401001320000001';

-- a re-run finds the same problems and duplicates nothing
SELECT channels, findings, opened, reopened, closed FROM vms.governance_run('4403');
SELECT count(*) AS live_tasks, count(DISTINCT (channel_code, rule_code)) AS distinct_pairs
  FROM vms.governance_task WHERE civil_code LIKE '4403%' AND state IN ('open', 'assigned', 'fixed', 'ignored');

-- life cycle: fix a record, claim a fix that was not made, ignore one, assign one
UPDATE vms.channel SET name = '福华路东向西-002', address = '深圳市福田区福华路2号' WHERE code = '44030401001320000002';
SELECT vms.governance_task_fixed(id) FROM vms.governance_task
 WHERE channel_code = '44030401001320000002' AND state = 'open';
SELECT vms.governance_task_fixed(id) FROM vms.governance_task
 WHERE channel_code = '44030401001320000003' AND rule_code = 'coordinates';
SELECT vms.governance_task_ignore(id, '施工临时点位，月底拆除') FROM vms.governance_task
 WHERE channel_code = '44030401001320000016' AND rule_code = 'stale';
SELECT vms.governance_task_assign(id, '园岭派出所-张三') FROM vms.governance_task
 WHERE channel_code = '44030401001320000004' AND rule_code = 'coordinates';
SELECT channels, findings, opened, reopened, closed FROM vms.governance_run('4403');
SELECT channel_code, rule_code, state, assigned_to, ignore_reason, closed_by_run IS NOT NULL AS closed_by_run
  FROM vms.governance_task
 WHERE channel_code IN ('44030401001320000002', '44030401001320000003', '44030401001320000004', '44030401001320000016')
 ORDER BY channel_code, rule_code, id;

-- work lists and metrics
SELECT unit, rule_code, severity, open, assigned, awaiting_verification FROM vms.governance_worklist
 WHERE unit = '园岭派出所' ORDER BY rule_code;
SELECT unit, channels, fill_rate, pass_rate, naming_rate, tag_rate, image_rate
  FROM vms.governance_metrics_by_unit() WHERE unit = '园岭派出所';
SELECT civil_code, region, channels, fill_rate, pass_rate, naming_rate
  FROM vms.governance_metrics_by_region(6) WHERE civil_code = '440304';

-- bad input
\set VERBOSITY default
SELECT vms.governance_run('4403x');
SELECT vms.governance_task_ignore(1, ' ');
SELECT vms.governance_task_assign(-1, 'x');
SELECT * FROM vms.governance_metrics_by_region(5);
UPDATE vms.governance_rule SET params = '{"fields": ["colour"]}' WHERE code = 'azimuth_missing';
SELECT vms.governance_run('4403');
UPDATE vms.governance_rule SET params = '{"fields": ["azimuth"]}' WHERE code = 'azimuth_missing';
