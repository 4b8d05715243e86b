-- permission policy: every way to reach a channel outside one's grants is
-- refused; expiry; separation of duties; audit chain tampering; secrets
\set SHOW_CONTEXT never
SET search_path = public, vms;
SET client_min_messages = warning;
-- the Futian district, its tags and catalogue, the 南园 cameras (sql/fixtures/)
\getenv abs_srcdir PG_ABS_SRCDIR
\set ECHO none
\i :abs_srcdir/sql/fixtures/futian.sql
\i :abs_srcdir/sql/fixtures/futian_tags.sql
\i :abs_srcdir/sql/fixtures/nanyuan.sql
\set ECHO all
CREATE ROLE regress_alice LOGIN IN ROLE vms_analyst;
CREATE ROLE regress_bob LOGIN IN ROLE vms_analyst;
CREATE ROLE regress_carol LOGIN IN ROLE vms_grant_admin, vms_analyst;
CREATE ROLE regress_dave LOGIN IN ROLE vms_approver;
CREATE ROLE regress_erin LOGIN IN ROLE vms_approver, vms_analyst;
GRANT CREATE ON DATABASE contrib_regression TO regress_alice;
INSERT INTO vms.subject VALUES ('regress_alice', (SELECT id FROM vms.org_unit WHERE name = '园岭派出所'));
UPDATE vms.channel SET civil_code = '44030402' WHERE code::text LIKE '44030402%';
-- channel 0001 of 园岭 is core (level 4) through its catalogue node
INSERT INTO vms.catalog_member VALUES ('44030400002160000001', '44030401001320000001');
INSERT INTO vms.security_assignment (scope_kind, scope_ref, level) VALUES ('catalog', '44030400002160000001', 4);
SELECT code, level FROM vms.channel_security_levels() ORDER BY code;

-- least privilege: nothing is visible without a grant
SET SESSION AUTHORIZATION regress_alice;
SELECT count(*) AS visible_without_grant FROM vms.channel;
SELECT vms.can('view_live', '44030401001320000003') AS can_view;
RESET SESSION AUTHORIZATION;

-- a grant administrator grants alice the 园岭 street for viewing and playback up to level 2
SET SESSION AUTHORIZATION regress_carol;
SELECT vms.grant_access('regress_alice', 'region', '44030401', '{view_live,playback}', 2::smallint,
                        now() + interval '1 day') > 0 AS granted;
-- separation of duties: administering grants shows no video data
SELECT count(*) AS carol_sees FROM vms.channel;
\set VERBOSITY default
SELECT vms.grant_access('regress_carol', 'all', NULL, '{view_live}', 4::smallint);
\set VERBOSITY terse
SELECT vms.grant_access('regress_alice', 'region', '4403x', '{view_live}', 1::smallint);
SELECT vms.grant_access('regress_alice', 'region', '44030401', '{fly}', 1::smallint);
SELECT vms.grant_access('regress_alice', 'region', '44030401', '{view_live}', 9::smallint);
SELECT vms.grant_access('regress_nobody', 'all', NULL, '{view_live}', 1::smallint);
RESET SESSION AUTHORIZATION;
-- a media server analysts may send video to (vms.media_server_allowed, the owner's)
INSERT INTO vms.media_server_allowed (network, note) VALUES ('10.0.0.0/24', 'regress policy');

SET SESSION AUTHORIZATION regress_alice;
SELECT count(*) AS alice_sees, min(civil_code), max(civil_code) FROM vms.channel;
-- the core channel of her street stays hidden (level 4 > granted 2)
SELECT count(*) AS core_channel FROM vms.channel WHERE code = '44030401001320000001';
SELECT vms.can('view_live', '44030401001320000003') AS view_ok, vms.can('ptz', '44030401001320000003') AS ptz_ok,
       vms.can('view_live', '44030402001320000001') AS other_street_ok, vms.can('view_live', '44030401001320000001') AS core_ok;
-- every way around it is refused: join, aggregate, view, function, COPY
SELECT count(*) AS via_join FROM vms.catalog_member m JOIN vms.channel c ON c.code = m.channel_code
 WHERE m.node_code = '44030400002160000001';
SELECT count(*) AS catalog_rows FROM vms.catalog_member WHERE channel_code = '44030401001320000001';
SELECT count(*) AS history_rows_of_hidden FROM vms.ledger_history WHERE code = '44030402001320000001';
CREATE SCHEMA regress_alice_s;
CREATE VIEW regress_alice_s.all_channels AS SELECT * FROM vms.channel;
SELECT count(*) AS via_view FROM regress_alice_s.all_channels WHERE civil_code LIKE '44030402%';
CREATE FUNCTION regress_alice_s.count_all() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM vms.channel';
SELECT regress_alice_s.count_all() AS via_definer_function;   -- runs as alice: her 13, no more
COPY (SELECT code FROM vms.channel WHERE civil_code LIKE '44030402%') TO STDOUT;
COPY vms.channel (code) TO STDOUT;
-- a leaky operator sees only rows the policy already let through
CREATE FUNCTION regress_alice_s.leak(text, text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS
    $$BEGIN RAISE WARNING 'leaked %', $1; RETURN true; END$$;
CREATE OPERATOR regress_alice_s.<<< (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_alice_s.leak);
-- (cheaper than the policy, it would run first if the policy were an ordinary condition)
SELECT count(*) FROM vms.channel WHERE code = '44030402001320000001' AND name OPERATOR(regress_alice_s.<<<) 'x';
-- a search_path attack on SECURITY DEFINER functions: a fake grant table first in the path
CREATE TABLE regress_alice_s.access_grant (LIKE vms.access_grant);
INSERT INTO regress_alice_s.access_grant (id, grantee, scope_kind, actions, max_level, valid_from, granted_by, granted_at)
VALUES (1, 'regress_alice', 'all', '{view_live,ptz}', 4, now() - interval '1 day', 'x', now());
SET search_path = regress_alice_s, vms, public;
SELECT vms.can('ptz', '44030401001320000003') AS ptz_after_attack, vms.can('view_live', '44030402001320000001') AS other_after_attack;
SELECT count(*) AS visible_after_attack FROM vms.channel;
RESET search_path;
SET search_path = public, vms;
-- search and tiles return only permitted points
SELECT count(*) AS search_results FROM vms.search_points('{"unit": "福田分局"}', 1000);
SELECT count(*) AS search_other_street FROM vms.search_points('{"bbox": [114.05, 22.5, 114.1, 22.55]}');
-- exercised rights are checked and audited
-- (vms.exercise_right is what vms.playback and the other rights check and audit with before they act)
SELECT vms.exercise_right('playback', '44030401001320000003', jsonb_build_object('from', now() - interval '1 hour', 'to', now())) > 0 AS playback_audited;
\set VERBOSITY default
SELECT vms.ptz('44030401001320000003', 'left');
\set VERBOSITY terse
SELECT vms.download('44030402001320000001', now() - interval '1 hour', now(), '{"ip": "10.0.0.5", "port": 30000}');
-- reading others' grants and secrets is refused
SELECT count(*) AS grants_alice_sees FROM vms.access_grant;
SELECT vms._can_for('regress_bob', 'view_live', '44030401001320000003');
SELECT count(*) FROM vms.audit_log;
SELECT * FROM vms.device_credential;
RESET SESSION AUTHORIZATION;

-- issue 12's bypass: a role with nothing but USAGE on schema vms asked the
-- internal search for the bootstrap superuser's OID (10) and got every
-- channel.  Internal functions are not executable by it any more ...
CREATE ROLE regress_mallory LOGIN;
GRANT USAGE ON SCHEMA vms TO regress_mallory;
SET SESSION AUTHORIZATION regress_mallory;
SELECT count(*) AS bypass_rows FROM vms._search_points_as(10, '{}', 100000, 0);
SELECT length(vms._channel_tiles_as(10, 0, 0, 0)) AS bypass_tile;
SELECT count(*) AS public_search FROM vms.search_points('{}');
RESET SESSION AUTHORIZATION;
-- ... and the visibility check refuses, before anything else, a role the
-- session user cannot act as, superuser or not, also when a definer
-- function of the owner's passes it along (as an application wrapper might)
CREATE FUNCTION public.regress_search_as_superuser() RETURNS bigint LANGUAGE sql SECURITY DEFINER
    AS $$ SELECT count(*) FROM vms._search_points_as(10, '{}', 100000, 0) $$;
GRANT EXECUTE ON FUNCTION public.regress_search_as_superuser() TO regress_mallory;
SET SESSION AUTHORIZATION regress_mallory;
\set VERBOSITY default
SELECT public.regress_search_as_superuser();
\set VERBOSITY terse
RESET SESSION AUTHORIZATION;
DROP FUNCTION public.regress_search_as_superuser();
SET SESSION AUTHORIZATION regress_alice;
SELECT vms.channel_visible_to(10, '44030402001320000001', '44030402');
SELECT vms.channel_visible_to('regress_bob'::regrole, '44030401001320000003', '44030401');
SELECT vms.channel_visible_to('regress_alice'::regrole, '44030401001320000003', '44030401') AS own_grant,
       vms.channel_visible_to('regress_alice'::regrole, '44030402001320000001', '44030402') AS other_street,
       vms.channel_visible_to('vms_analyst'::regrole, '44030401001320000003', '44030401') AS as_her_group;
RESET SESSION AUTHORIZATION;

-- expiry: an expired and a future grant give nothing
SET SESSION AUTHORIZATION regress_carol;
SELECT vms.grant_access('regress_bob', 'region', '44030402', '{view_live}', 1::smallint,
                        now() - interval '1 day', now() - interval '2 days') > 0 AS expired_grant;
SELECT vms.grant_access('regress_bob', 'region', '44030402', '{view_live}', 1::smallint,
                        now() + interval '2 days', now() + interval '1 day') > 0 AS future_grant;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_bob;
SELECT count(*) AS bob_sees FROM vms.channel;
RESET SESSION AUTHORIZATION;
-- a temporary grant for an event: visible while valid, gone once revoked
SET SESSION AUTHORIZATION regress_carol;
SELECT vms.grant_access('regress_bob', 'channel', '44030402001320000001', '{view_live}', 1::smallint, now() + interval '2 hours') AS temp_grant \gset
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_bob;
SELECT count(*) AS bob_sees_with_temporary_grant FROM vms.channel;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_carol;
SELECT vms.revoke_access(:temp_grant, '活动结束');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_bob;
SELECT count(*) AS bob_sees_after_revoke FROM vms.channel;
RESET SESSION AUTHORIZATION;

-- requests and separation of duties
SET SESSION AUTHORIZATION regress_bob;
SELECT vms.request_access('region', '44030402', '{view_live}', 1::smallint, '南园街道治安巡查', now() + interval '30 days') AS bob_request \gset
SELECT vms.approve_request(:bob_request);
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_erin;
SELECT vms.request_access('all', NULL, '{view_live}', 4::smallint, 'want everything') AS erin_request \gset
\set VERBOSITY default
SELECT vms.approve_request(:erin_request);
\set VERBOSITY terse
SELECT vms.approve_request(:bob_request) > 0 AS erin_approves_bob;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_dave;
SELECT vms.reject_request(:erin_request, '范围过大');
SELECT vms.approve_request(:bob_request);
SELECT requester, state, decided_by FROM vms.access_request ORDER BY id;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_bob;
SELECT count(*) AS bob_sees_after_approval FROM vms.channel;
SELECT vms.request_access('region', '44030402', '{view_live}', 1::smallint, '');
RESET SESSION AUTHORIZATION;
-- a requester takes back a pending request of their own; nobody else can,
-- and a withdrawn request is decided no more (audited as 'withdraw')
SET SESSION AUTHORIZATION regress_bob;
SELECT vms.request_access('region', '44030401', '{view_live}', 1::smallint, '临时巡查') AS bob_request2 \gset
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_erin;
\set VERBOSITY default
SELECT vms.withdraw_request(:bob_request2);
\set VERBOSITY terse
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_bob;
SELECT vms.withdraw_request(:bob_request2, '不再需要');
SELECT state, decided_by, decision_note FROM vms.access_request WHERE id = :bob_request2;
SELECT vms.withdraw_request(:bob_request2);
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_dave;
SELECT vms.approve_request(:bob_request2);
RESET SESSION AUTHORIZATION;
SELECT session_role, action, detail ->> 'state' AS state FROM vms.audit_log
 WHERE object = 'access_request:' || :bob_request2 ORDER BY seq;
-- a tag scope covers the tag's subtree (交通 > 路口), still bounded by level
SET SESSION AUTHORIZATION regress_carol;
SELECT vms.grant_access('regress_bob', 'tag', (SELECT id::text FROM vms.tag WHERE category = 'scenario' AND name = '交通'),
                        '{view_live}', 2::smallint) > 0 AS tag_grant;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_bob;
SELECT code FROM vms.channel WHERE civil_code = '44030401' ORDER BY code;   -- 0002 (交通); 0001 (路口) is core
RESET SESSION AUTHORIZATION;

-- periodic review
SELECT grantee, scope_kind, scope_ref FROM vms.review_expiring_grants('3 days') ORDER BY id;
SELECT grantee, scope_kind, scope_ref FROM vms.review_unused_grants(0) ORDER BY id;
SELECT grantee, scope_ref, unit FROM vms.review_wide_grants ORDER BY id;

-- refusals: the error rolls the refusing transaction back, so a refusal is
-- queued outside it and written by vms.audit_flush_denied() (the notifier
-- worker's job in the database it serves; this one it does not); a flush
-- that rolls back, whole or to a savepoint, loses nothing
BEGIN;
SELECT vms.audit_flush_denied() AS flushed_then_rolled_back;
ROLLBACK;
-- a prepared flush could be rolled back after its claims were freed: PREPARE
-- is refused (before max_prepared_transactions is looked at) and rolls back
BEGIN;
SELECT vms.audit_flush_denied() AS flushed_then_prepared;
PREPARE TRANSACTION 'vms_regress_flush';
BEGIN;
SAVEPOINT s;
SELECT vms.audit_flush_denied() AS flushed_in_savepoint;
ROLLBACK TO s;
SAVEPOINT r;
SELECT vms.audit_flush_denied() AS flushed;
RELEASE r;
-- released, the claims belong to the transaction: a later savepoint rolled
-- back does not queue them again (they would be written twice)
SAVEPOINT t;
ROLLBACK TO t;
SELECT vms.audit_flush_denied() AS none_after_release;
COMMIT;
SELECT vms.audit_flush_denied() AS nothing_left;
SELECT session_role, action, object, detail ? 'attempted_at' AS has_attempt_time
  FROM vms.audit_log WHERE action LIKE 'denied%' ORDER BY seq;
-- a refusal repeated is one entry that counts; past its role's share of
-- the queue (16 entries) a role's refusals count on one denied_more entry,
-- so one role cannot crowd out others' refusals
SET SESSION AUTHORIZATION regress_alice;
DO $$
BEGIN
    FOR i IN 1 .. 3 LOOP
        BEGIN
            PERFORM vms.exercise_right('ptz', '44030499001320000001');
        EXCEPTION WHEN insufficient_privilege THEN NULL;
        END;
    END LOOP;
    FOR i IN 2 .. 21 LOOP
        BEGIN
            PERFORM vms.exercise_right('ptz', ('440304990013200000' || lpad(i::text, 2, '0'))::vms.gbcode);
        EXCEPTION WHEN insufficient_privilege THEN NULL;
        END;
    END LOOP;
END $$;
RESET SESSION AUTHORIZATION;
SELECT pending FROM vms.audit_denied_status();
SELECT vms.audit_flush_denied() AS entries;
SELECT action, count(*) AS entries, sum(coalesce((detail ->> 'repeats')::int, 1)) FILTER (WHERE action = 'denied_ptz') AS ptz_refusals,
       max((detail ->> 'refusals')::int) AS refusals_folded
  FROM vms.audit_log WHERE session_role = 'regress_alice' AND action IN ('denied_ptz', 'denied_more') AND seq > 19
 GROUP BY action ORDER BY action;
-- the audit trail: every grant, request, decision, use and refusal
SELECT seq, session_role, action, object FROM vms.audit_log WHERE action NOT LIKE 'ledger%' ORDER BY seq;
SELECT * FROM vms.audit_verify();
\set VERBOSITY default
UPDATE vms.audit_log SET detail = '{}' WHERE seq = 1;
DELETE FROM vms.audit_log WHERE seq = 1;
TRUNCATE vms.audit_log;
\set VERBOSITY terse
-- tampering as a superuser with the triggers disabled is detected
ALTER TABLE vms.audit_log DISABLE TRIGGER USER;
CREATE TEMP TABLE audit_copy AS SELECT * FROM vms.audit_log;
UPDATE vms.audit_log SET detail = detail || '{"rows": 999}' WHERE seq = 5;
SELECT ok, first_bad_seq, problem FROM vms.audit_verify();
UPDATE vms.audit_log a SET detail = c.detail FROM audit_copy c WHERE a.seq = c.seq AND a.seq = 5;
SELECT ok FROM vms.audit_verify();
DELETE FROM vms.audit_log WHERE seq = 6;
SELECT ok, first_bad_seq, problem FROM vms.audit_verify();
INSERT INTO vms.audit_log SELECT * FROM audit_copy WHERE seq = 6;
-- swap the contents of two entries, keeping their places
UPDATE vms.audit_log a SET (at, session_role, action, object, detail, digest_alg, prev_hash, hash) =
       (SELECT c.at, c.session_role, c.action, c.object, c.detail, c.digest_alg, c.prev_hash, c.hash
          FROM audit_copy c WHERE c.seq = CASE a.seq WHEN 7 THEN 8 ELSE 7 END)
 WHERE a.seq IN (7, 8);
SELECT ok, first_bad_seq, problem FROM vms.audit_verify();
UPDATE vms.audit_log a SET (at, session_role, action, object, detail, digest_alg, prev_hash, hash) =
       (SELECT c.at, c.session_role, c.action, c.object, c.detail, c.digest_alg, c.prev_hash, c.hash
          FROM audit_copy c WHERE c.seq = a.seq)
 WHERE a.seq IN (7, 8);
ALTER TABLE vms.audit_log ENABLE TRIGGER USER;
SELECT ok FROM vms.audit_verify();
SELECT DISTINCT digest_alg FROM vms.audit_log;

-- issue 20: the write policies (vms.can_manage) are C over the acting
-- role's manage_ledger grants, compiled once as visibility is: the same
-- answer as vms._can_for for every channel and kind of grant (a region, a
-- channel, a catalogue at level 4, a grant of another action, an expired
-- and a revoked grant, then an odd-length region prefix), for channels yet
-- to be created too, and a grant or a revocation counts at once
CREATE ROLE regress_writer LOGIN;
GRANT USAGE ON SCHEMA vms TO regress_writer;
GRANT SELECT, INSERT, UPDATE ON vms.channel TO regress_writer;
INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level, valid_from, valid_until, revoked_at) VALUES
    ('regress_writer', 'region', '44030401', '{manage_ledger}', 2, now() - interval '1 day', NULL, NULL),
    ('regress_writer', 'channel', '44030402001320000002', '{manage_ledger}', 1, now() - interval '1 day', NULL, NULL),
    ('regress_writer', 'catalog', '44030400002160000001', '{manage_ledger}', 4, now() - interval '1 day', NULL, NULL),
    ('regress_writer', 'region', '4403040', '{view_live}', 4, now() - interval '1 day', NULL, NULL),
    ('regress_writer', 'all', NULL, '{manage_ledger}', 4, now() - interval '2 days', now() - interval '1 day', NULL),
    ('regress_writer', 'all', NULL, '{manage_ledger}', 4, now() - interval '1 day', NULL, now());
CREATE TEMP TABLE manage_case AS
SELECT c.code, c.civil_code FROM vms.channel c
UNION ALL VALUES ('44030401001320009901'::vms.gbcode, '44030401'), ('44030402001320009902', '44030402'),
                 ('44030401001320009903', NULL);
ALTER TABLE manage_case ADD by_sql boolean;
GRANT SELECT ON manage_case TO regress_writer;
CREATE FUNCTION pg_temp.manage_case_by_sql() RETURNS void LANGUAGE sql AS
    $$UPDATE manage_case SET by_sql = vms._can_for('regress_writer', 'manage_ledger', code, civil_code)$$;
SELECT pg_temp.manage_case_by_sql();
SET ROLE regress_writer;
SELECT count(*) AS cases, count(*) FILTER (WHERE by_sql) AS by_sql_allowed,
       count(*) FILTER (WHERE vms.can_manage(code, civil_code)) AS allowed,
       count(*) FILTER (WHERE vms.can_manage(code, civil_code) IS DISTINCT FROM by_sql) AS differ
  FROM manage_case;
-- the region is the one given: a channel granted by its code anywhere, one
-- of the region in it, not when it would leave it
SELECT vms.can_manage('44030402001320000002', '44030499') AS own_channel_anywhere,
       vms.can_manage('44030401001320000003', '44030401') AS in_region,
       vms.can_manage('44030401001320000003', '44030402') AS moved_out;
-- so an update may not move a channel out of the regions the role writes
\set VERBOSITY default
UPDATE vms.channel SET civil_code = '44030402' WHERE code = '44030401001320000003';
\set VERBOSITY terse
UPDATE vms.channel SET name = name WHERE code = '44030401001320000003' RETURNING code;
RESET ROLE;
-- an odd-length prefix covers what LIKE '4403040%' does
INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level)
VALUES ('regress_writer', 'region', '4403040', '{manage_ledger}', 1);
SELECT pg_temp.manage_case_by_sql();
SET ROLE regress_writer;
SELECT count(*) AS cases, count(*) FILTER (WHERE by_sql) AS by_sql_allowed,
       count(*) FILTER (WHERE vms.can_manage(code, civil_code) IS DISTINCT FROM by_sql) AS differ
  FROM manage_case;
RESET ROLE;
UPDATE vms.access_grant SET revoked_at = now() WHERE grantee = 'regress_writer' AND scope_kind = 'region' AND revoked_at IS NULL;
SET ROLE regress_writer;
SELECT vms.can_manage('44030401001320000003', '44030401') AS in_region_after_revoke;
UPDATE vms.channel SET name = name WHERE code = '44030401001320000003' RETURNING code;
RESET ROLE;

-- a grant whose role was dropped counts for nobody and breaks nothing
-- (pg_has_role with its name raised "role does not exist" in every policy
-- check of every non-superuser); alice's tile first, without it
SET SESSION AUTHORIZATION regress_alice;
SELECT md5(vms.channel_tiles(10, 836, 446)) AS alice_tile \gset
SELECT length(vms.channel_tiles(10, 836, 446)) > 0 AS alice_tile_has_channels;
RESET SESSION AUTHORIZATION;
CREATE ROLE regress_ghost;
INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level)
VALUES ('regress_ghost', 'all', NULL, '{view_live,manage_ledger}', 4);
DROP ROLE regress_ghost;
SET SESSION AUTHORIZATION regress_alice;
SELECT count(*) AS alice_sees_with_ghost_grant FROM vms.channel;
SELECT count(*) AS grants_alice_sees FROM vms.access_grant;
SELECT vms.can('view_live', '44030401001320000003') AS view_ok, vms.can('view_live', '44030402001320000001') AS other_ok;
SELECT md5(vms.channel_tiles(10, 836, 446)) = :'alice_tile' AS tile_as_before;
RESET SESSION AUTHORIZATION;
SET ROLE regress_writer;
SELECT vms.can_manage('44030402001320000002', '44030402') AS own_channel_with_ghost_grant;
RESET ROLE;
DELETE FROM vms.access_grant WHERE grantee = 'regress_ghost';

-- a grant binds to the role it was made to (grantee_oid, set by a trigger):
-- a new role created under a dropped role's name inherits none of its
-- grants, as it would inherit none of PostgreSQL's own privileges
CREATE ROLE regress_heir IN ROLE vms_analyst;
-- the OID given is not the one kept: it is always the grantee's own
INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level, grantee_oid)
VALUES ('regress_heir', 'all', NULL, '{view_live,manage_ledger}', 4, 'regress_alice'::regrole);
SELECT grantee_oid = 'regress_heir'::regrole AS bound_to_heir FROM vms.access_grant WHERE grantee = 'regress_heir';
UPDATE vms.access_grant SET grantee_oid = 'regress_alice'::regrole WHERE grantee = 'regress_heir';
SELECT grantee_oid = 'regress_heir'::regrole AS still_bound_to_heir FROM vms.access_grant WHERE grantee = 'regress_heir';
SET SESSION AUTHORIZATION regress_heir;
SELECT count(*) AS heir_sees, (SELECT count(*) FROM vms.access_grant) AS heir_grants FROM vms.channel;
SELECT vms.can('view_live', '44030402001320000001') AS view_ok, vms.can_manage('44030402001320000002', '44030402') AS manage_ok;
SELECT length(vms.channel_tiles(10, 836, 446)) AS heir_tile \gset
SELECT :heir_tile > 0 AS tile_has_channels;
RESET SESSION AUTHORIZATION;
-- renamed, the role's grants lapse (the grant's name no longer names it)
-- until it has its old name back: fail closed
ALTER ROLE regress_heir RENAME TO regress_heir_renamed;
SET SESSION AUTHORIZATION regress_heir_renamed;
SELECT count(*) AS renamed_sees, (SELECT count(*) FROM vms.access_grant) AS renamed_grants FROM vms.channel;
SELECT vms.can('view_live', '44030402001320000001') AS view_ok, vms.can_manage('44030402001320000002', '44030402') AS manage_ok;
RESET SESSION AUTHORIZATION;
ALTER ROLE regress_heir_renamed RENAME TO regress_heir;
SET SESSION AUTHORIZATION regress_heir;
SELECT count(*) AS renamed_back_sees FROM vms.channel;
RESET SESSION AUTHORIZATION;
-- dropped and created again: the new role of that name gets nothing
DROP ROLE regress_heir;
CREATE ROLE regress_heir IN ROLE vms_analyst;
SELECT grantee_oid <> 'regress_heir'::regrole AS bound_to_the_old_role,
       vms.grantee_role(grantee, grantee_oid) IS NULL AS counts_for_nobody
  FROM vms.access_grant WHERE grantee = 'regress_heir';
-- nor when the grant is saved again with the same name
UPDATE vms.access_grant SET grantee = grantee WHERE grantee = 'regress_heir';
SELECT grantee_oid <> 'regress_heir'::regrole AS not_rebound FROM vms.access_grant WHERE grantee = 'regress_heir';
SET SESSION AUTHORIZATION regress_heir;
SELECT count(*) AS new_heir_sees, (SELECT count(*) FROM vms.access_grant) AS new_heir_grants FROM vms.channel;
SELECT vms.can('view_live', '44030402001320000001') AS view_ok, vms.can_manage('44030402001320000002', '44030402') AS manage_ok;
SELECT length(vms.channel_tiles(10, 836, 446)) < :heir_tile AS tile_lost_channels;
RESET SESSION AUTHORIZATION;
-- nor by the owner's rebind: it binds again only grants bound in another
-- cluster (bound_in, the system identifier), never a dead grant of this one
SELECT bound_in = (SELECT system_identifier FROM pg_control_system()) AS bound_here
  FROM vms.access_grant WHERE grantee = 'regress_heir';
SELECT count(*) AS rebound_here FROM vms.access_grant_rebind();
SELECT vms.grantee_role(grantee, grantee_oid) IS NULL AS still_nobodys FROM vms.access_grant WHERE grantee = 'regress_heir';
-- and bound_in is the trigger's to set, as grantee_oid is
UPDATE vms.access_grant SET bound_in = 1 WHERE grantee = 'regress_heir'
RETURNING bound_in = (SELECT system_identifier FROM pg_control_system()) AS bound_in_kept;
-- the new role's own grant, made the ordinary way, works
SET SESSION AUTHORIZATION regress_carol;
SELECT vms.grant_access('regress_heir', 'region', '44030402', '{view_live}', 1::smallint) > 0 AS granted;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_heir;
SELECT count(*) AS new_heir_sees, min(civil_code), max(civil_code), (SELECT count(*) FROM vms.access_grant) AS new_heir_grants
  FROM vms.channel;
SELECT vms.can('view_live', '44030402001320000001') AS view_ok, vms.can_manage('44030402001320000002', '44030402') AS manage_ok;
RESET SESSION AUTHORIZATION;
-- a name no role has (a restore's data load before its roles): kept, bound
-- to nothing, and a role created later under that name gets nothing
INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level)
VALUES ('regress_not_yet', 'all', NULL, '{view_live}', 4);
CREATE ROLE regress_not_yet IN ROLE vms_analyst;
SELECT grantee_oid IS NULL AS unbound FROM vms.access_grant WHERE grantee = 'regress_not_yet';
SET SESSION AUTHORIZATION regress_not_yet;
SELECT count(*) AS not_yet_sees FROM vms.channel;
RESET SESSION AUTHORIZATION;
-- restored into another cluster (data with --disable-triggers), a grant
-- keeps the old cluster's OID and counts for nobody until the owner binds
-- the live grants again by name, as pg_restore does for PostgreSQL's ACLs
-- (a grant that counts for nobody is revoked before the dump, README:
-- rebound by name it would count again)
UPDATE vms.access_grant SET revoked_at = now(), revoked_by = 'regress', revoke_reason = 'role dropped'
 WHERE vms.grantee_role(grantee, grantee_oid) IS NULL AND grantee = 'regress_heir';
ALTER TABLE vms.access_grant DISABLE TRIGGER access_grant_role;
UPDATE vms.access_grant SET grantee_oid = 4000000000, bound_in = 1   -- another cluster's OID and identifier
 WHERE grantee = 'regress_heir' AND revoked_at IS NULL AND grantee_oid = 'regress_heir'::regrole;
ALTER TABLE vms.access_grant ENABLE TRIGGER access_grant_role;
SET SESSION AUTHORIZATION regress_heir;
SELECT count(*) AS restored_heir_sees FROM vms.channel;
RESET SESSION AUTHORIZATION;
-- the rebind turns the binding trigger off for its update and back on as
-- the DBA had set it: ENABLE ALWAYS stays ALWAYS (a plain ENABLE reset it)
ALTER TABLE vms.access_grant ENABLE ALWAYS TRIGGER access_grant_role;
SELECT grantee, old_oid, new_oid = 'regress_heir'::regrole AS bound_to_heir FROM vms.access_grant_rebind();
SELECT tgenabled AS grant_trigger_state FROM pg_trigger WHERE tgrelid = 'vms.access_grant'::regclass AND tgname = 'access_grant_role';
ALTER TABLE vms.access_grant DISABLE TRIGGER access_grant_role;
SELECT count(*) AS rebound_again FROM vms.access_grant_rebind();
SELECT tgenabled AS grant_trigger_state FROM pg_trigger WHERE tgrelid = 'vms.access_grant'::regclass AND tgname = 'access_grant_role';
ALTER TABLE vms.access_grant ENABLE TRIGGER access_grant_role;
-- (the helper refuses a state that is not one, and a trigger that is not there)
SELECT vms._trigger_set('vms.access_grant', 'access_grant_role', 'E');
SELECT vms._trigger_set('vms.access_grant', 'no_such_trigger', 'D');
SET SESSION AUTHORIZATION regress_heir;
SELECT count(*) AS rebound_heir_sees FROM vms.channel;
RESET SESSION AUTHORIZATION;
-- the revoked grant of the dropped regress_heir and the never bound one stay as they were
SELECT grantee, revoked_at IS NOT NULL AS revoked, vms.grantee_role(grantee, grantee_oid) IS NULL AS counts_for_nobody
  FROM vms.access_grant WHERE grantee IN ('regress_heir', 'regress_not_yet') ORDER BY id;
ALTER TABLE vms.access_grant DISABLE TRIGGER access_grant_audit;
DELETE FROM vms.access_grant WHERE grantee IN ('regress_heir', 'regress_not_yet');
ALTER TABLE vms.access_grant ENABLE TRIGGER access_grant_audit;
DROP ROLE regress_heir, regress_not_yet;

-- a request binds to the role that made it too (requester_oid, set by a
-- trigger): a role created again under a dropped role's name neither sees
-- the old role's requests nor gets them approved into grants of its own
CREATE ROLE regress_asker IN ROLE vms_analyst;
SET SESSION AUTHORIZATION regress_asker;
SELECT vms.request_access('region', '44030401', '{view_live}', 1::smallint, '园岭巡查') AS asker_request \gset
SELECT vms.request_access('all', NULL, '{view_live}', 4::smallint, '全部') AS asker_request2 \gset
SELECT count(*) AS asker_sees_own_requests FROM vms.access_request;
RESET SESSION AUTHORIZATION;
SELECT count(*) AS bound_to_asker FROM vms.access_request WHERE requester_oid = 'regress_asker'::regrole;
-- the OID given is not the one kept, nor can it be changed
INSERT INTO vms.access_request (requester, scope_kind, scope_ref, actions, max_level, reason, requester_oid)
VALUES ('regress_asker', 'all', NULL, '{view_live}', 4, 'forged', 'regress_dave'::regrole)
RETURNING requester_oid = 'regress_asker'::regrole AS forged_ignored;
UPDATE vms.access_request SET requester_oid = 'regress_dave'::regrole WHERE requester = 'regress_asker'
RETURNING requester_oid = 'regress_asker'::regrole AS still_bound;
DELETE FROM vms.access_request WHERE reason = 'forged';
-- dropped: its requests cannot be approved, and can be rejected (asked by
-- name, the separation-of-duties check raised "role does not exist")
DROP ROLE regress_asker;
SET SESSION AUTHORIZATION regress_dave;
\set VERBOSITY default
SELECT vms.approve_request(:asker_request);
\set VERBOSITY terse
SELECT vms.reject_request(:asker_request2, '申请人已注销');
RESET SESSION AUTHORIZATION;
-- created again: the new role of the name does not see the old role's
-- requests, and the pending one is not approved into a grant for it
CREATE ROLE regress_asker IN ROLE vms_analyst;
SET SESSION AUTHORIZATION regress_asker;
SELECT count(*) AS new_asker_sees_requests FROM vms.access_request;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_dave;
\set VERBOSITY default
SELECT vms.approve_request(:asker_request);
\set VERBOSITY terse
RESET SESSION AUTHORIZATION;
SELECT r.state, count(g.*) AS grants, vms.grantee_role(r.requester, r.requester_oid) IS NULL AS nobodys
  FROM vms.access_request r LEFT JOIN vms.access_grant g ON g.request_id = r.id
 WHERE r.id = :asker_request GROUP BY r.id;
SET SESSION AUTHORIZATION regress_asker;
SELECT count(*) AS new_asker_sees FROM vms.channel;
SELECT vms.withdraw_request(:asker_request);   -- not the new role's to take back
RESET SESSION AUTHORIZATION;
SELECT count(*) AS rebound_here FROM vms.access_request_rebind();   -- bound in this cluster: never
SELECT state FROM vms.access_request WHERE id = :asker_request;
-- renamed, a role's requests lapse as its grants do (bob no longer sees
-- his own until he has his old name back)
ALTER ROLE regress_bob RENAME TO regress_bob_renamed;
SET SESSION AUTHORIZATION regress_bob_renamed;
SELECT count(*) AS renamed_bob_sees_requests FROM vms.access_request;
RESET SESSION AUTHORIZATION;
ALTER ROLE regress_bob_renamed RENAME TO regress_bob;
SET SESSION AUTHORIZATION regress_bob;
SELECT count(*) AS bob_sees_requests FROM vms.access_request;
RESET SESSION AUTHORIZATION;
-- and an approver that made a request cannot decide it under a new name
-- (separation of duties by the role's OID); nor can another approve it
SET SESSION AUTHORIZATION regress_erin;
SELECT vms.request_access('region', '44030401', '{view_live}', 1::smallint, '园岭巡查') AS erin_request2 \gset
RESET SESSION AUTHORIZATION;
ALTER ROLE regress_erin RENAME TO regress_erin_renamed;
SET SESSION AUTHORIZATION regress_erin_renamed;
SELECT vms.reject_request(:erin_request2, '自己撤回');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_dave;
\set VERBOSITY default
SELECT vms.approve_request(:erin_request2);
\set VERBOSITY terse
RESET SESSION AUTHORIZATION;
ALTER ROLE regress_erin_renamed RENAME TO regress_erin;
SET SESSION AUTHORIZATION regress_dave;
SELECT vms.reject_request(:erin_request2, '范围重复');
RESET SESSION AUTHORIZATION;
-- restored into another cluster, a pending request keeps the old OID and
-- cannot be approved until the owner binds it again by name (a pending
-- request of a role gone is rejected before the dump, README)
SET SESSION AUTHORIZATION regress_dave;
SELECT vms.reject_request(:asker_request, '申请人已注销');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_asker;
SELECT vms.request_access('region', '44030401', '{view_live}', 1::smallint, '园岭巡查') AS asker_request3 \gset
RESET SESSION AUTHORIZATION;
ALTER TABLE vms.access_request DISABLE TRIGGER access_request_role;
UPDATE vms.access_request SET requester_oid = 4000000000, bound_in = 1 WHERE id = :asker_request3;
ALTER TABLE vms.access_request ENABLE TRIGGER access_request_role;
SET SESSION AUTHORIZATION regress_asker;
SELECT count(*) AS restored_asker_sees_requests FROM vms.access_request;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_dave;
SELECT vms.approve_request(:asker_request3);
RESET SESSION AUTHORIZATION;
ALTER TABLE vms.access_request ENABLE REPLICA TRIGGER access_request_role;
SELECT request_id = :asker_request3 AS the_restored_one, requester, old_oid, new_oid = 'regress_asker'::regrole AS bound_to_asker
  FROM vms.access_request_rebind();
SELECT tgenabled AS request_trigger_state FROM pg_trigger WHERE tgrelid = 'vms.access_request'::regclass AND tgname = 'access_request_role';
ALTER TABLE vms.access_request ENABLE ALWAYS TRIGGER access_request_role;
SELECT count(*) AS rebound_again FROM vms.access_request_rebind();
SELECT tgenabled AS request_trigger_state FROM pg_trigger WHERE tgrelid = 'vms.access_request'::regclass AND tgname = 'access_request_role';
ALTER TABLE vms.access_request ENABLE TRIGGER access_request_role;
SET SESSION AUTHORIZATION regress_dave;
SELECT vms.approve_request(:asker_request3) > 0 AS approved;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_asker;
SELECT count(*) AS asker_sees_own_requests, (SELECT count(*) FROM vms.channel) AS asker_sees FROM vms.access_request;
RESET SESSION AUTHORIZATION;
SELECT g.grantee_oid = 'regress_asker'::regrole AS grant_bound_to_asker FROM vms.access_grant g WHERE g.request_id = :asker_request3;
ALTER TABLE vms.access_grant DISABLE TRIGGER access_grant_audit;
DELETE FROM vms.access_grant WHERE grantee = 'regress_asker';
ALTER TABLE vms.access_grant ENABLE TRIGGER access_grant_audit;
DELETE FROM vms.access_request WHERE requester = 'regress_asker';
DROP ROLE regress_asker;

-- secrets: encrypted with a key kept outside the database
COPY (SELECT 1) TO PROGRAM 'cat >/dev/null && head -c 32 /dev/urandom > vms_regress_key && chmod 600 vms_regress_key';
\set VERBOSITY default
SELECT vms.secret_encrypt('upstream-pass');
SET vms.secret_key_file = 'vms_regress_key';
SELECT vms.secret_algorithm();
SELECT vms.secret_encrypt('upstream-pass') AS s \gset
SELECT position('upstream' IN encode(:'s'::bytea, 'escape')) = 0 AS not_plain,
       vms.secret_decrypt(:'s'::bytea) AS round_trip,
       vms.secret_encrypt('upstream-pass') <> :'s'::bytea AS fresh_nonce;
-- one byte flipped (XOR: set to 0xff it stayed the same 1 time in 256)
SELECT vms.secret_decrypt(set_byte(:'s'::bytea, 24, get_byte(:'s'::bytea, 24) # 255));
SELECT vms.secret_decrypt('\x00'::bytea);
SET SESSION AUTHORIZATION regress_alice;
SELECT vms.secret_decrypt(:'s'::bytea);
RESET SESSION AUTHORIZATION;
RESET vms.secret_key_file;
\set VERBOSITY terse

-- clean up the roles (cluster-wide)
DROP SCHEMA regress_alice_s CASCADE;
DELETE FROM vms.subject WHERE role_name LIKE 'regress_%';
ALTER TABLE vms.access_grant DISABLE TRIGGER access_grant_audit;
DELETE FROM vms.access_grant WHERE grantee LIKE 'regress_%';
DELETE FROM vms.media_server_allowed WHERE note = 'regress policy';
ALTER TABLE vms.access_grant ENABLE TRIGGER access_grant_audit;
REVOKE CREATE ON DATABASE contrib_regression FROM regress_alice;
REVOKE USAGE ON SCHEMA vms FROM regress_mallory;
REVOKE ALL ON vms.channel FROM regress_writer;
REVOKE USAGE ON SCHEMA vms FROM regress_writer;
DROP TABLE manage_case;
DROP ROLE regress_alice, regress_bob, regress_carol, regress_dave, regress_erin, regress_mallory, regress_writer;
