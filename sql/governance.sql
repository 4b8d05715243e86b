-- point governance: each rule with a record that breaks it and one that does
-- not; task life cycle over re-runs; metrics
\set SHOW_CONTEXT never
SET search_path = public, vms;
SET client_min_messages = warning;

-- the Futian district: regions, units, a naming pattern, 16 channels (sql/fixtures/futian.sql)
\getenv abs_srcdir PG_ABS_SRCDIR
\set ECHO none
\i :abs_srcdir/sql/fixtures/futian.sql
\set ECHO all
-- the live tasks (compared with a kept copy of them after another run) and
-- what each enabled rule finds on its own (vms.governance_findings)
CREATE TEMP VIEW live_tasks AS
SELECT channel_code, rule_code, state, severity, detail, unit_id, civil_code FROM vms.governance_task
 WHERE state IN ('open', 'assigned', 'fixed', 'ignored');
CREATE TEMP VIEW rule_findings AS
SELECT f.channel_code, r.code AS rule_code, f.detail FROM vms.governance_rule r, vms.governance_findings(r) f
 WHERE r.enabled;
-- naming patterns are checked when written
INSERT INTO vms.naming_pattern VALUES ('44', '^(unclosed', NULL, 'bad');
INSERT INTO vms.naming_pattern VALUES ('45', '^x$', 'y', 'example does not match');

SELECT code, kind, severity, enabled FROM vms.governance_rule ORDER BY code;
SELECT channels, findings, opened, reopened, closed FROM vms.governance_run('4403');
SELECT t.channel_code, t.rule_code, t.state, t.detail FROM vms.governance_task t
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

-- the incremental run (issue 20): every rule over the channels changed since
-- the last run over the whole ledger, and duplicate_name and same_point over
-- the channels that share a unit and name or a point with them, now or when
-- that run saw them (8 channels, 8 findings: a partner's other rules are not
-- run).  Without such a run it is a full run; with nothing changed since, it
-- takes nothing.
SELECT incremental, channels = (SELECT count(*) FROM vms.channel) AS whole_ledger FROM vms.governance_run_changed();
SELECT incremental, channels, findings, opened, reopened, closed FROM vms.governance_run_changed();
-- 011 renamed away from its duplicate 010, 014 renamed onto 013's name, 009
-- (one of three on a point) deleted, 015's address changed, 017 added
UPDATE vms.channel SET name = '福华路北向南-011' WHERE code = '44030401001320000011';
UPDATE vms.channel SET name = '福华路北向南-013' WHERE code = '44030401001320000014';
DELETE FROM vms.channel WHERE code = '44030401001320000009';
UPDATE vms.channel SET address = '深圳市福田区福华路15号' WHERE code = '44030401001320000015';
INSERT INTO vms.channel (code, device_code, name, civil_code, geom)
VALUES ('44030401001320000017', '44030401001180000001', '福华路北向南-017', '44030401',
        ST_SetSRID(ST_MakePoint(114.038, 22.538), 4326));
SELECT incremental, channels, findings, opened, reopened, closed FROM vms.governance_run_changed();
-- the unchanged partners' tasks closed (007, 008, 010) or opened (013)
SELECT channel_code, rule_code, state, detail FROM vms.governance_task
 WHERE rule_code IN ('duplicate_name', 'same_point') ORDER BY channel_code, rule_code, id;
-- the same tasks as a full run: it opens, reopens and closes nothing, and
-- every live task reads the same
CREATE TEMP TABLE incremental_tasks AS TABLE live_tasks;
SELECT incremental, opened, reopened, closed FROM vms.governance_run();
SELECT count(*) AS differing_tasks FROM ((TABLE live_tasks EXCEPT TABLE incremental_tasks) UNION ALL (TABLE incremental_tasks EXCEPT TABLE live_tasks)) d;
-- the same first run with the foreign keys checked by their triggers row by
-- row (a trigger of one's own on the task table keeps a run out of replica
-- mode): the same tasks as the checks made once per run (all open now:
-- the assigned and ignored ones went with the DELETE)
DELETE FROM vms.governance_task;
CREATE FUNCTION public.regress_gov_noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER regress_gov_noop BEFORE INSERT ON vms.governance_task
    FOR EACH ROW EXECUTE FUNCTION public.regress_gov_noop();
SELECT opened = (SELECT count(*) FROM incremental_tasks) AS all_opened, reopened, closed FROM vms.governance_run();
SELECT count(*) AS differing_tasks FROM (
    (SELECT channel_code, rule_code, severity, detail, unit_id, civil_code FROM live_tasks
     EXCEPT SELECT channel_code, rule_code, severity, detail, unit_id, civil_code FROM incremental_tasks)
    UNION ALL
    (SELECT channel_code, rule_code, severity, detail, unit_id, civil_code FROM incremental_tasks
     EXCEPT SELECT channel_code, rule_code, severity, detail, unit_id, civil_code FROM live_tasks)) d;
DROP TRIGGER regress_gov_noop ON vms.governance_task;
DROP FUNCTION public.regress_gov_noop();
-- the rule code_role asks vms._gbcode_check_details (one scalar call a
-- channel, issue 20): the same text as vms.gbcode_check's details joined,
-- for codes with every combination of problems
SELECT count(*) FILTER (WHERE d IS NOT NULL) AS codes_with_problems, count(DISTINCT d) AS distinct_details,
       count(*) FILTER (WHERE d IS DISTINCT FROM direct) AS mismatches
  FROM (SELECT vms._gbcode_check_details(g) AS d, (SELECT string_agg(k.detail, '; ') FROM vms.gbcode_check(g) k) AS direct
          FROM (SELECT (p || '030401' || i || t || n || '000001')::vms.gbcode AS g
                  FROM unnest(ARRAY['00', '44']) p, unnest(ARRAY['00', '01', '98', '99']) i,
                       unnest(ARRAY['132', '118', '999']) t, generate_series(0, 9) n) c) x;
-- a run's tasks are what each rule finds on its own (vms.governance_findings;
-- the run checks the channel-by-channel rules in one pass), code_role's as
-- written with vms.gbcode_check directly
SELECT count(*) AS differing_from_rules FROM (
    (SELECT channel_code, rule_code, detail FROM live_tasks EXCEPT TABLE rule_findings)
    UNION ALL
    (TABLE rule_findings EXCEPT SELECT channel_code, rule_code, detail FROM live_tasks)) d;
SELECT count(*) AS code_role_tasks,
       count(*) FILTER (WHERE t.detail IS DISTINCT FROM concat_ws('; ',
           CASE WHEN vms.gbcode_type(t.channel_code) NOT IN (131, 132)
                THEN format('type code %s is not a camera type', lpad(vms.gbcode_type(t.channel_code)::text, 3, '0')) END,
           (SELECT string_agg(k.detail, '; ') FROM vms.gbcode_check(t.channel_code) k))) AS differing
  FROM vms.governance_task t WHERE t.rule_code = 'code_role' AND t.state = 'open';
-- incremental runs read a group's count where no changed channel joined or
-- left it, as the runs over the whole ledger kept it
-- (vms.governance_name_group, vms.governance_point_group): a partner whose
-- group grows to two or shrinks to one flips in the run that sees the
-- change, and a later run that takes a member for another edit reads the
-- count kept (a stale count would close or open its task)
UPDATE vms.channel SET name = '福华路北向南-015' WHERE code = '44030401001320000016';
SELECT incremental, channels, opened, closed FROM vms.governance_run_changed();
SELECT channel_code, rule_code, state, detail FROM vms.governance_task
 WHERE rule_code = 'duplicate_name' AND channel_code IN ('44030401001320000015', '44030401001320000016')
   AND state IN ('open', 'assigned', 'fixed', 'ignored') ORDER BY channel_code;
UPDATE vms.channel SET address = '深圳市福田区福华路十五号' WHERE code = '44030401001320000015';
SELECT incremental, channels, opened, closed FROM vms.governance_run_changed();
SELECT channel_code, rule_code, state, detail FROM vms.governance_task
 WHERE rule_code = 'duplicate_name' AND channel_code IN ('44030401001320000015', '44030401001320000016')
   AND state IN ('open', 'assigned', 'fixed', 'ignored') ORDER BY channel_code;
-- the group shrinks to one: the partner's task is closed, and an edit of
-- it later opens none
UPDATE vms.channel SET name = '福华路北向南-016' WHERE code = '44030401001320000016';
SELECT incremental, channels, opened, closed FROM vms.governance_run_changed();
UPDATE vms.channel SET address = '深圳市福田区福华路15号' WHERE code = '44030401001320000015';
SELECT incremental, channels, opened, closed FROM vms.governance_run_changed();
SELECT count(*) AS live_duplicate_name_tasks FROM vms.governance_task
 WHERE rule_code = 'duplicate_name' AND channel_code IN ('44030401001320000015', '44030401001320000016')
   AND state IN ('open', 'assigned', 'fixed', 'ignored');
-- points: three channels moved onto one point (same_point's min_count 3),
-- one of them edited elsewhere (reads the kept count), then one moved away
-- (the two left behind are closed)
UPDATE vms.channel SET geom = ST_SetSRID(ST_MakePoint(114.04, 22.54), 4326)
 WHERE code IN ('44030401001320000014', '44030401001320000015', '44030401001320000016');
SELECT incremental, channels, opened, closed FROM vms.governance_run_changed();
UPDATE vms.channel SET address = '深圳市福田区福华路14号' WHERE code = '44030401001320000014';
SELECT incremental, channels, opened, closed FROM vms.governance_run_changed();
SELECT channel_code, rule_code, state, detail FROM vms.governance_task
 WHERE rule_code = 'same_point' AND state IN ('open', 'assigned', 'fixed', 'ignored') ORDER BY channel_code;
UPDATE vms.channel SET geom = ST_SetSRID(ST_MakePoint(114.037, 22.537), 4326) WHERE code = '44030401001320000016';
SELECT incremental, channels, opened, closed FROM vms.governance_run_changed();
UPDATE vms.channel SET address = '深圳市福田区福华路14号之一' WHERE code = '44030401001320000014';
SELECT incremental, channels, opened, closed FROM vms.governance_run_changed();
SELECT count(*) AS live_same_point_tasks FROM vms.governance_task
 WHERE rule_code = 'same_point' AND state IN ('open', 'assigned', 'fixed', 'ignored');
-- the kept counts are today's, and a full run changes no task
SELECT count(*) AS differing_name_groups FROM (
    (SELECT unit_id, name, channels FROM vms.governance_name_group
     EXCEPT SELECT unit_id, name, count(*) FROM vms.channel WHERE unit_id IS NOT NULL AND name IS NOT NULL
             GROUP BY 1, 2 HAVING count(*) > 1)
    UNION ALL
    (SELECT unit_id, name, count(*) FROM vms.channel WHERE unit_id IS NOT NULL AND name IS NOT NULL
      GROUP BY 1, 2 HAVING count(*) > 1
     EXCEPT SELECT unit_id, name, channels FROM vms.governance_name_group)) d;
SELECT count(*) AS differing_point_groups FROM (
    (SELECT ST_AsEWKT(geom), channels FROM vms.governance_point_group
     EXCEPT SELECT ST_AsEWKT(geom), count(*) FROM vms.channel WHERE geom IS NOT NULL GROUP BY geom HAVING count(*) > 1)
    UNION ALL
    (SELECT ST_AsEWKT(geom), count(*) FROM vms.channel WHERE geom IS NOT NULL GROUP BY geom HAVING count(*) > 1
     EXCEPT SELECT ST_AsEWKT(geom), channels FROM vms.governance_point_group)) d;
DROP TABLE incremental_tasks;
CREATE TEMP TABLE incremental_tasks AS TABLE live_tasks;
SELECT incremental, opened, reopened, closed FROM vms.governance_run();
SELECT count(*) AS differing_tasks FROM ((TABLE live_tasks EXCEPT TABLE incremental_tasks) UNION ALL (TABLE incremental_tasks EXCEPT TABLE live_tasks)) d;
-- same_point with a min_count of 1 (every located channel): counted in the
-- ledger, as the kept counts hold groups of two or more only
UPDATE vms.governance_rule SET params = '{"min_count": 1}' WHERE code = 'same_point';
SELECT opened, closed FROM vms.governance_run();
SELECT count(*) AS differing_from_rules FROM (
    (SELECT channel_code, rule_code, detail FROM live_tasks EXCEPT TABLE rule_findings)
    UNION ALL
    (TABLE rule_findings EXCEPT SELECT channel_code, rule_code, detail FROM live_tasks)) d;
UPDATE vms.governance_rule SET params = '{"min_count": 3}' WHERE code = 'same_point';
-- a run needs READ COMMITTED (its snapshot is recorded for the next
-- incremental run, and it must see what committed before its lock)
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT incremental FROM vms.governance_run_changed();
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT incremental FROM vms.governance_run();
ROLLBACK;
-- at a city node the incremental run is a full run: a channel renamed
-- without history (as the replication apply writes it) is still found
BEGIN;
INSERT INTO vms.cluster_district (district, subscription, publication) VALUES ('d1', 'vms_sub_d1', 'vms_pub_d1');
SET LOCAL session_replication_role = replica;
UPDATE vms.channel SET name = '福华路北向南-016' WHERE code = '44030401001320000015';
SET LOCAL session_replication_role = origin;
SELECT incremental, opened FROM vms.governance_run_changed();
SELECT channel_code, detail FROM vms.governance_task
 WHERE rule_code = 'duplicate_name' AND channel_code IN ('44030401001320000015', '44030401001320000016')
   AND state = 'open' ORDER BY channel_code;
ROLLBACK;
-- a name longer than a btree entry holds (2,704 bytes) is indexed by its
-- digest: two channels sharing one are a kept group like any other
BEGIN;
UPDATE vms.channel SET name = repeat('长名', 1600)
 WHERE code IN ('44030401001320000015', '44030401001320000016');
SELECT incremental, opened FROM vms.governance_run_changed();
SELECT channel_code, length(detail) FROM vms.governance_task
 WHERE rule_code = 'duplicate_name' AND channel_code IN ('44030401001320000015', '44030401001320000016')
   AND state = 'open' ORDER BY channel_code;
SELECT unit_id, length(name), channels FROM vms.governance_name_group WHERE length(name) > 1000;
ROLLBACK;
-- a run over a civil-code prefix counts its channels' points and units and
-- names in the whole ledger, as a run over the ledger does: 016 (civil code
-- 4403, outside the prefix 44030401) moves onto the point of 014 and 015
-- (three channels: same_point) and takes 012's name; the run over 44030401
-- finds both groups for its channels.  It leaves what a run over the
-- ledger would, so the incremental run after it stays incremental, and a
-- full run after that opens, reopens and closes nothing
BEGIN;
SELECT incremental FROM vms.governance_run();
UPDATE vms.channel SET geom = ST_SetSRID(ST_MakePoint(114.04, 22.54), 4326), name = '福华路北向南-012'
 WHERE code = '44030401001320000016';
SELECT scope, opened, closed FROM vms.governance_run('44030401');
SELECT channel_code, rule_code, state, detail FROM vms.governance_task
 WHERE rule_code IN ('same_point', 'duplicate_name') AND state IN ('open', 'assigned', 'fixed', 'ignored')
 ORDER BY channel_code, rule_code;
UPDATE vms.channel SET address = '深圳市福田区福华路15号之二' WHERE code = '44030401001320000015';
SELECT incremental, channels, opened, closed FROM vms.governance_run_changed();
CREATE TEMP TABLE scoped_tasks AS TABLE live_tasks;
SELECT incremental, opened, reopened, closed FROM vms.governance_run();
SELECT count(*) AS differing_tasks FROM ((TABLE live_tasks EXCEPT TABLE scoped_tasks) UNION ALL (TABLE scoped_tasks EXCEPT TABLE live_tasks)) d;
ROLLBACK;
-- POINT EMPTY (geometry(Point) accepts it) is a missing point to every rule
-- and to the grouping: coordinates and required_fields find it missing,
-- outside_region and civil_code_mismatch have no location to judge, and
-- channels at POINT EMPTY share no point (same_point), in full and
-- incremental runs alike.  Three channels onto one point (a same_point
-- group), one of them to POINT EMPTY (the two left are closed), then the
-- other two: the incremental runs leave what a full run does
BEGIN;
SELECT incremental FROM vms.governance_run();
UPDATE vms.channel SET geom = ST_SetSRID(ST_MakePoint(114.04, 22.54), 4326) WHERE code = '44030401001320000016';
SELECT incremental, channels, opened, closed FROM vms.governance_run_changed();
UPDATE vms.channel SET geom = ST_GeomFromText('POINT EMPTY', 4326) WHERE code = '44030401001320000016';
SELECT incremental, channels, opened, closed FROM vms.governance_run_changed();
SELECT channel_code, rule_code, state, detail FROM vms.governance_task
 WHERE channel_code IN ('44030401001320000014', '44030401001320000015', '44030401001320000016')
   AND rule_code IN ('same_point', 'coordinates', 'required_fields', 'outside_region', 'civil_code_mismatch')
   AND (state IN ('open', 'assigned', 'fixed', 'ignored') OR closed_by_run = (SELECT max(id) FROM vms.governance_run))
 ORDER BY channel_code, rule_code, id;
UPDATE vms.channel SET geom = ST_GeomFromText('POINT EMPTY', 4326)
 WHERE code IN ('44030401001320000014', '44030401001320000015');
SELECT incremental, channels, opened, closed FROM vms.governance_run_changed();
SELECT channel_code, rule_code, detail FROM vms.governance_task
 WHERE channel_code IN ('44030401001320000014', '44030401001320000015', '44030401001320000016')
   AND rule_code IN ('same_point', 'coordinates', 'required_fields', 'outside_region', 'civil_code_mismatch')
   AND state IN ('open', 'assigned', 'fixed', 'ignored')
 ORDER BY channel_code, rule_code;
SELECT count(*) AS empty_point_groups FROM vms.governance_point_group WHERE ST_IsEmpty(geom);
CREATE TEMP TABLE empty_point_tasks AS TABLE live_tasks;
SELECT incremental, opened, reopened, closed FROM vms.governance_run();
SELECT count(*) AS differing_tasks FROM ((TABLE live_tasks EXCEPT TABLE empty_point_tasks) UNION ALL (TABLE empty_point_tasks EXCEPT TABLE live_tasks)) d;
-- and what each rule finds on its own, over the ledger and over a prefix
SELECT count(*) AS differing_from_rules FROM (
    (SELECT channel_code, rule_code, detail FROM live_tasks EXCEPT TABLE rule_findings)
    UNION ALL
    (TABLE rule_findings EXCEPT SELECT channel_code, rule_code, detail FROM live_tasks)) d;
SELECT r.code, f.channel_code, f.detail FROM vms.governance_rule r, vms.governance_findings(r, '4403') f
 WHERE r.kind IN ('same_point', 'coordinates', 'outside_region', 'civil_code_mismatch')
   AND f.channel_code IN ('44030401001320000014', '44030401001320000015', '44030401001320000016')
 ORDER BY 1, 2;
-- the fill rate counts the location as missing
SELECT channels, fill_rate FROM vms.governance_metrics_by_region(8) WHERE civil_code = '44030401';
ROLLBACK;
-- a run over a civil-code prefix judges a task by its channel's civil code
-- now, not the one recorded when the task was opened: a channel that moved
-- out of the prefix keeps its tasks as they are (not taken: its assigned
-- task is not closed, and a full run later finds it the same task), one
-- that moved in has its tasks refreshed or closed like any channel in scope
BEGIN;
SELECT incremental FROM vms.governance_run();
UPDATE vms.channel SET address = NULL WHERE code = '44030401001320000016';
SELECT opened FROM vms.governance_run();
SELECT vms.governance_task_assign(id, '园岭派出所-李四') FROM vms.governance_task
 WHERE channel_code = '44030401001320000014' AND rule_code = 'azimuth_missing' AND state = 'open';
SELECT channel_code, rule_code, state, civil_code FROM vms.governance_task
 WHERE (channel_code, rule_code) IN (('44030401001320000014', 'azimuth_missing'), ('44030401001320000016', 'required_fields'))
   AND state IN ('open', 'assigned', 'fixed', 'ignored') ORDER BY channel_code;
-- 014 moves out to 44030402, 016 (4403, missing its address) moves in with
-- the address filled
UPDATE vms.channel SET civil_code = '44030402' WHERE code = '44030401001320000014';
UPDATE vms.channel SET civil_code = '44030401', address = '深圳市福田区福华路16号' WHERE code = '44030401001320000016';
SELECT scope, opened, closed FROM vms.governance_run('44030401');
SELECT t.channel_code, t.rule_code, t.civil_code AS recorded, c.civil_code AS now FROM vms.governance_task t
  JOIN vms.channel c ON c.code = t.channel_code
 WHERE t.closed_by_run = (SELECT max(id) FROM vms.governance_run) ORDER BY 1, 2;
SELECT channel_code, rule_code, state, assigned_to, civil_code, closed_by_run = (SELECT max(id) FROM vms.governance_run) AS closed_by_this_run
  FROM vms.governance_task
 WHERE (channel_code, rule_code) IN (('44030401001320000014', 'azimuth_missing'), ('44030401001320000016', 'required_fields'))
 ORDER BY channel_code, id;
-- a run over 014's new prefix refreshes it (and opens the tasks of its new
-- civil code); the full run after the two opens, reopens and closes nothing
SELECT scope, opened FROM vms.governance_run('44030402');
SELECT incremental, opened, reopened, closed FROM vms.governance_run();
SELECT channel_code, rule_code, state, assigned_to FROM vms.governance_task
 WHERE channel_code = '44030401001320000014' AND rule_code = 'azimuth_missing' ORDER BY id;
ROLLBACK;
-- a point on the border of two streets lies in both (ST_Covers): the most
-- specific regions covering it include either street's code, so neither
-- is a civil_code_mismatch; in a third code agreeing with neither, the
-- finding names the first street by code.  The incremental run, the full
-- run after it (which changes nothing) and the rule alone agree.
BEGIN;
SELECT incremental FROM vms.governance_run();
INSERT INTO vms.channel (code, device_code, name, civil_code, geom) VALUES
    ('44030401001320000031', '44030401001180000001', '福华路东向西-031', '44030402', ST_SetSRID(ST_MakePoint(114.05, 22.52), 4326)),
    ('44030401001320000032', '44030401001180000001', '福华路东向西-032', '44030401', ST_SetSRID(ST_MakePoint(114.05, 22.52), 4326)),
    ('44030401001320000033', '44030401001180000001', '福华路东向西-033', '44030403', ST_SetSRID(ST_MakePoint(114.05, 22.52), 4326));
SELECT incremental FROM vms.governance_run_changed();
SELECT channel_code, detail FROM vms.governance_task
 WHERE rule_code = 'civil_code_mismatch' AND channel_code >= '44030401001320000031' AND state = 'open' ORDER BY 1;
SELECT incremental, opened, reopened, closed FROM vms.governance_run();
SELECT f.channel_code, f.detail FROM vms.governance_rule r, vms.governance_findings(r) f
 WHERE r.code = 'civil_code_mismatch' AND f.channel_code >= '44030401001320000031' ORDER BY 1;
ROLLBACK;
