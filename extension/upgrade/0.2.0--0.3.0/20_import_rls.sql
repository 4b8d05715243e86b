-- issue 20 (ledger import): a non-superuser's import must not fall back to
-- row-by-row policy checks.  The write policies of vms.channel call
-- vms.can_manage for every row an import writes; it was SQL over
-- vms._can_for (three queries a call, about a millisecond a row of a
-- re-import) and is now C with the acting role's manage_ledger grants
-- compiled once, as vms.channel_visible compiles a user's grants.

-- What the policy cache compiles for a user at a time: the scopes of the
-- grants that carry the action (any action when it is NULL; catalogue and
-- tag grants expanded to channels), restricted channels, and when the set
-- next changes.  Runs as the table owner, from C.
CREATE FUNCTION vms._grant_scope_action(usr oid, at timestamptz, action text)
    RETURNS TABLE (kind text, ref text, level smallint, next_change timestamptz)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    WITH mine AS (
        SELECT g.* FROM vms.access_grant g
         WHERE g.revoked_at IS NULL AND pg_has_role(usr, vms.grantee_role(g.grantee, g.grantee_oid), 'MEMBER')
           AND (action IS NULL OR action = ANY (g.actions))),
    live AS (
        SELECT g.* FROM mine g WHERE g.valid_from <= at AND (g.valid_until IS NULL OR g.valid_until > at))
    SELECT g.scope_kind, g.scope_ref, g.max_level, NULL::timestamptz FROM live g
     WHERE g.scope_kind IN ('all', 'region', 'channel')
    UNION ALL
    SELECT 'channel', sc::text, g.max_level, NULL FROM live g
     CROSS JOIN LATERAL vms._scope_channels(g.scope_kind, g.scope_ref) sc
     WHERE g.scope_kind IN ('catalog', 'tag')
    UNION ALL
    SELECT 'restricted', s.code::text, s.level, NULL FROM vms.channel_security_levels() s
    UNION ALL
    SELECT NULL, NULL, NULL, min(t) FROM (
        SELECT valid_until AS t FROM mine WHERE valid_until > at
        UNION ALL SELECT valid_from FROM mine WHERE valid_from > at) c
$$;
COMMENT ON FUNCTION vms._grant_scope_action(oid, timestamptz, text) IS 'internal: a user''s grants that carry an action (any when NULL) compiled for row-level security';
CREATE OR REPLACE FUNCTION vms._grant_scope(usr oid, at timestamptz)
    RETURNS TABLE (kind text, ref text, level smallint, next_change timestamptz)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT * FROM vms._grant_scope_action(usr, at, NULL)
$$;

-- The write policies' test, in C (extension/access_policy.c) with the
-- acting role's manage_ledger grants compiled once, as vms.channel_visible
-- does for reading: a bulk import evaluates it for every row it writes, and
-- vms._can_for costs three queries a call.  It answers what
-- vms._can_for(acting role, 'manage_ledger', code, civil_code) answers,
-- except that the region is always the civil code given (the row's as it
-- will be): an update may not move a channel out of the regions the role
-- may write.
CREATE OR REPLACE FUNCTION vms.can_manage(code vms.gbcode, civil_code text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_can_manage' LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION vms.can_manage(vms.gbcode, text) IS 'may the role this session acts as write this channel, in the region given (manage_ledger); the write policies of vms.channel';
REVOKE ALL ON FUNCTION vms._grant_scope_action(oid, timestamptz, text) FROM PUBLIC;

-- A grant whose grantee role was dropped counts for nobody.  pg_has_role
-- with the grantee's name raised "role does not exist" for it, and since
-- every policy check reads all grants, one such row broke every
-- non-superuser's reads and writes of vms.channel (and of vms.access_grant)
-- until it was deleted; the checks now pass the role's OID
-- (vms.grantee_role(grantee, grantee_oid), 20_grant_identity.sql: NULL for
-- a dropped or recreated role), for which pg_has_role is NULL.
CREATE OR REPLACE FUNCTION vms._can_for(who name, action text, channel vms.gbcode, new_civil_code text DEFAULT NULL) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    c record;
    lvl smallint;
BEGIN
    -- only about yourself: the session user must be able to act as the role asked about
    IF NOT pg_has_role(session_user, who, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to check the grants of role "%"', who
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT ch.code, ch.civil_code INTO c FROM vms.channel ch WHERE ch.code = channel;
    IF NOT FOUND THEN
        -- a channel being created: its region is the one it will have
        SELECT channel AS code, new_civil_code AS civil_code INTO c;
    END IF;
    lvl := vms.channel_security_level(channel);
    RETURN EXISTS (
        SELECT 1 FROM vms.access_grant g
         WHERE g.revoked_at IS NULL AND pg_has_role(who, vms.grantee_role(g.grantee, g.grantee_oid), 'MEMBER')
           AND g.valid_from <= now() AND (g.valid_until IS NULL OR g.valid_until > now())
           AND action = ANY (g.actions) AND g.max_level >= lvl
           AND CASE g.scope_kind
                 WHEN 'all' THEN true
                 WHEN 'region' THEN c.civil_code LIKE g.scope_ref || '%'
                 WHEN 'channel' THEN g.scope_ref::vms.gbcode = channel
                 WHEN 'catalog' THEN EXISTS (SELECT 1 FROM vms.catalog_member m
                                              WHERE m.channel_code = channel
                                                AND m.node_code IN (SELECT vms.catalog_subtree(g.scope_ref::vms.gbcode)))
                 WHEN 'tag' THEN EXISTS (SELECT 1 FROM vms.channel_tag ct
                                          WHERE ct.channel_code = channel
                                            AND ct.tag_id IN (SELECT vms.tag_subtree(g.scope_ref::bigint)))
               END);
END $$;
ALTER POLICY access_grant_view ON vms.access_grant
    USING (pg_has_role(current_user, vms.grantee_role(grantee, grantee_oid), 'MEMBER') OR pg_has_role(current_user, 'vms_grant_admin', 'MEMBER')
           OR pg_has_role(current_user, 'vms_auditor', 'MEMBER'));
