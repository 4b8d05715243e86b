-- Row-level security cost: a 500 m circle search over the 1,100,000 channels
-- 35_tiles_governance leaves (its governance ledger, where a street's
-- channels lie in the street) as a user holding 1,000 grants, against the
-- same search as a superuser (who bypasses the policy), in the same run.
SET search_path = public, vms;
SELECT setseed(0.9);
DROP ROLE IF EXISTS bench_user;
CREATE ROLE bench_user IN ROLE vms_analyst;
GRANT USAGE ON SCHEMA bench TO bench_user;
-- 4 street grants and 996 single-channel grants
INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level, granted_by)
SELECT 'bench_user', 'region', '110105' || lpad(i::text, 2, '0'), '{view_live}', 2, 'bench'
  FROM generate_series(1, 4) i;
INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level, granted_by)
SELECT 'bench_user', 'channel', code::text, '{view_live,playback}', 2, 'bench'
  FROM vms.channel TABLESAMPLE SYSTEM (1) LIMIT 996;
SELECT count(*) AS grants FROM vms.access_grant WHERE grantee = 'bench_user' \gset

SELECT * FROM bench.latency($$SELECT count(*) FROM vms.search_points('{"circle": {"lon": %1$s, "lat": %2$s, "radius_m": 500}}')$$, 300) \gset su_
SET ROLE bench_user;
SELECT count(*) AS user_sees FROM vms.channel \gset
SELECT * FROM bench.latency($$SELECT count(*) FROM vms.search_points('{"circle": {"lon": %1$s, "lat": %2$s, "radius_m": 500}}')$$, 300) \gset user_
RESET ROLE;
SELECT bench.line('rls_circle_500m_p50_' || :grants || '_grants', :user_p50, 'ms', :su_p50, '<=1.5');
SELECT bench.line('rls_circle_500m_p95_' || :grants || '_grants', :user_p95, 'ms', :su_p95, '<=1.5');
SELECT bench.line('rls_visible_channels', :user_sees, 'rows', 1000000, 'n/a');
