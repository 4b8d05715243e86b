-- Permission policy (视频访问权限体系): security levels, scoped and time-bound
-- grants, access requests with separation of duties, row-level security,
-- periodic review, secrets.

DO $$
BEGIN
    -- group roles for duties; a person gets one by GRANT vms_analyst TO alice
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vms_analyst') THEN CREATE ROLE vms_analyst NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vms_grant_admin') THEN CREATE ROLE vms_grant_admin NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vms_approver') THEN CREATE ROLE vms_approver NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vms_auditor') THEN CREATE ROLE vms_auditor NOLOGIN; END IF;
END $$;

CREATE TABLE vms.security_level (
    level       smallint PRIMARY KEY CHECK (level BETWEEN 1 AND 4),
    name_zh     text NOT NULL,
    name_en     text NOT NULL
);
INSERT INTO vms.security_level VALUES (1, '一般', 'general'), (2, '敏感', 'sensitive'),
                                      (3, '重要', 'important'), (4, '核心', 'core');
COMMENT ON TABLE vms.security_level IS 'resource security levels (资源安全等级); a channel without an assignment is level 1';

CREATE TABLE vms.security_assignment (
    scope_kind   text NOT NULL CHECK (scope_kind IN ('channel', 'catalog', 'tag')),
    scope_ref    text NOT NULL,
    level        smallint NOT NULL REFERENCES vms.security_level (level),
    assigned_by  text NOT NULL DEFAULT session_user,
    assigned_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope_kind, scope_ref)
);
COMMENT ON TABLE vms.security_assignment IS 'security level catalogue (资源安全等级目录): levels for a channel, a catalogue subtree or a tag subtree; the strictest applies';

-- The channels a catalogue or tag scope covers: the node's or tag's subtree
-- and every channel listed there.  Security levels and grants share it.
CREATE FUNCTION vms._scope_channels(kind text, ref text) RETURNS SETOF vms.gbcode
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
BEGIN
    IF kind = 'catalog' THEN
        RETURN QUERY SELECT m.channel_code FROM vms.catalog_subtree(ref::vms.gbcode) n
                       JOIN vms.catalog_member m ON m.node_code = n;
    ELSIF kind = 'tag' THEN
        RETURN QUERY SELECT ct.channel_code FROM vms.tag_subtree(ref::bigint) t
                       JOIN vms.channel_tag ct ON ct.tag_id = t;
    END IF;
END $$;
COMMENT ON FUNCTION vms._scope_channels(text, text) IS 'internal: channels covered by a catalogue or tag scope';

-- A city's floor from its districts' own levels: nothing here; 27_cluster_sync.sql
-- replaces it once the replicated tables exist.
CREATE FUNCTION vms._district_security_levels() RETURNS TABLE (code vms.gbcode, level smallint)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT NULL::vms.gbcode, NULL::smallint WHERE false
$$;
COMMENT ON FUNCTION vms._district_security_levels() IS 'internal: at a city, the levels its districts set on their own channels (a floor under the city''s)';

-- Channels above level 1 and their effective (strictest) level: this node's
-- assignments and, at a city, the districts' levels for their own channels.
CREATE FUNCTION vms.channel_security_levels() RETURNS TABLE (code vms.gbcode, level smallint)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT code, max(level)::smallint FROM (
        SELECT a.scope_ref::vms.gbcode AS code, a.level FROM vms.security_assignment a WHERE a.scope_kind = 'channel'
        UNION ALL
        SELECT sc, a.level FROM vms.security_assignment a
          CROSS JOIN LATERAL vms._scope_channels(a.scope_kind, a.scope_ref) sc
         WHERE a.scope_kind IN ('catalog', 'tag')
        UNION ALL
        SELECT d.code, d.level FROM vms._district_security_levels() d) s
    WHERE level > 1 GROUP BY code
$$;
COMMENT ON FUNCTION vms.channel_security_levels() IS 'channels whose effective security level is above 1, with that level (at a city, the strictest of its own and the owning district''s)';

CREATE FUNCTION vms.channel_security_level(channel vms.gbcode) RETURNS smallint
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT coalesce((SELECT level FROM vms.channel_security_levels() WHERE code = channel), 1)::smallint
$$;
COMMENT ON FUNCTION vms.channel_security_level(vms.gbcode) IS 'effective security level of one channel (1 when nothing assigns one)';

CREATE TABLE vms.subject (
    role_name  name PRIMARY KEY,
    unit_id    bigint NOT NULL REFERENCES vms.org_unit (id)
);
COMMENT ON TABLE vms.subject IS 'the organisation unit each PostgreSQL role (user or group) belongs to';

CREATE TABLE vms.access_request (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    requester     name NOT NULL DEFAULT current_user,
    scope_kind    text NOT NULL,
    scope_ref     text,
    actions       text[] NOT NULL,
    max_level     smallint NOT NULL,
    valid_from    timestamptz NOT NULL DEFAULT now(),
    valid_until   timestamptz,
    reason        text NOT NULL,
    state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'approved', 'rejected', 'withdrawn')),
    requested_at  timestamptz NOT NULL DEFAULT now(),
    decided_by    name,
    decided_at    timestamptz,
    decision_note text,
    grant_id      bigint,
    requester_oid oid,
    bound_in      bigint
);
COMMENT ON TABLE vms.access_request IS 'access requests (权限申请): who asks for which scope, actions, level and period, and why';
COMMENT ON COLUMN vms.access_request.requester_oid IS
    'the OID of the requester role when the request was made (set from requester by a trigger, never by the caller); the request is that role''s only while requester still names it (vms.grantee_role)';
COMMENT ON COLUMN vms.access_request.bound_in IS
    'the system identifier of the cluster the request was bound in (set with requester_oid by the same trigger); vms.access_request_rebind binds again only requests bound in another cluster';

CREATE TABLE vms.access_grant (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    grantee      name NOT NULL,
    scope_kind   text NOT NULL CHECK (scope_kind IN ('all', 'region', 'catalog', 'tag', 'channel')),
    scope_ref    text,
    actions      text[] NOT NULL,
    max_level    smallint NOT NULL REFERENCES vms.security_level (level),
    valid_from   timestamptz NOT NULL DEFAULT now(),
    valid_until  timestamptz,
    granted_by   name NOT NULL DEFAULT session_user,
    granted_at   timestamptz NOT NULL DEFAULT now(),
    request_id   bigint REFERENCES vms.access_request (id),
    note         text,
    revoked_at   timestamptz,
    revoked_by   name,
    revoke_reason text,
    last_used_at timestamptz,
    grantee_oid  oid,
    bound_in     bigint,
    CHECK ((scope_kind = 'all') = (scope_ref IS NULL)),
    CHECK (valid_until IS NULL OR valid_until > valid_from),
    CHECK (actions <@ '{view_live,playback,download,ptz,snapshot,manage_ledger,export}' AND cardinality(actions) > 0)
);
CREATE INDEX access_grant_grantee_idx ON vms.access_grant (grantee) WHERE revoked_at IS NULL;
COMMENT ON TABLE vms.access_grant IS 'grants: role x scope (all, region subtree, catalogue subtree, tag, channel) x actions x highest level x validity window';
COMMENT ON COLUMN vms.access_grant.actions IS 'view_live, playback, download, ptz, snapshot, manage_ledger, export';
COMMENT ON COLUMN vms.access_grant.grantee_oid IS
    'the OID of the grantee role when the grant was made (set from grantee by a trigger, never by the caller); the grant counts only while grantee still names that role (vms.grantee_role)';
COMMENT ON COLUMN vms.access_grant.bound_in IS
    'the system identifier of the cluster the grant was bound in (set with grantee_oid by the same trigger); vms.access_grant_rebind binds again only grants bound in another cluster, that is restored from its dump';

-- A grant binds to the role it was made to, as PostgreSQL's own ACLs bind to
-- role OIDs: it counts only while its grantee name still names the role of
-- grantee_oid.  A dropped role's grant counts for nobody, and a role created
-- later under the same name (a new OID) inherits nothing; a renamed role's
-- grants lapse until it gets its old name back (fail closed: the grant's
-- name, which people read, would no longer say who holds it).  The one
-- place that rule is written: every membership check passes
-- vms.grantee_role(g.grantee, g.grantee_oid) to pg_has_role, which is NULL
-- (false) for NULL.  A SQL-standard body, no SET and no SECURITY DEFINER,
-- so that the planner inlines it into the queries and policies that read
-- grants; PUBLIC, since the access_grant_view policy runs as the reader.
CREATE FUNCTION vms.grantee_role(grantee name, grantee_oid oid) RETURNS oid
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN CASE WHEN pg_catalog.to_regrole(pg_catalog.quote_ident(grantee)) = grantee_oid THEN grantee_oid END;
COMMENT ON FUNCTION vms.grantee_role(name, oid) IS
    'the role a grant (grantee, grantee_oid) counts for, or a request (requester, requester_oid) is of: the OID while the name still names that role, else NULL (the role was dropped, recreated or renamed)';

-- Sets grantee_oid from the grantee's name on every insert (a grant made
-- now, or one loaded by a data-only restore with triggers on, bound by role
-- name as pg_restore binds PostgreSQL's own ACLs; the documented restore
-- runs with --disable-triggers and keeps the dumped OIDs, see
-- vms.access_grant_rebind; a name no role has gets NULL and the grant counts
-- for nobody), and bound_in to this cluster's system identifier.  An update keeps the binding unless it changes
-- the grantee, so nobody can set grantee_oid by hand, and re-saving a
-- dropped role's grant does not bind it to a new role of that name.
CREATE FUNCTION vms._grant_bind_role() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.grantee IS NOT DISTINCT FROM OLD.grantee THEN
        NEW.grantee_oid := OLD.grantee_oid;
        NEW.bound_in := OLD.bound_in;
    ELSE
        NEW.grantee_oid := pg_catalog.to_regrole(pg_catalog.quote_ident(NEW.grantee));
        NEW.bound_in := (SELECT s.system_identifier FROM pg_catalog.pg_control_system() s);
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._grant_bind_role() IS 'internal: binds a grant to the OID of its grantee role when it is made (or its grantee changes)';
CREATE TRIGGER access_grant_role BEFORE INSERT OR UPDATE OF grantee, grantee_oid, bound_in ON vms.access_grant
    FOR EACH ROW EXECUTE FUNCTION vms._grant_bind_role();

-- A restore into another cluster (roles carried by pg_dumpall --roles-only,
-- so with new OIDs; the data step runs with --disable-triggers) brings the
-- grants with the OIDs of the old cluster, and they count for nobody until
-- they are bound again by name, as pg_restore binds PostgreSQL's own ACLs:
-- the owner runs this once after the restore.  It binds every live grant
-- bound in another cluster (bound_in: that cluster's system identifier, as
-- dumped) to the role its name names here (NULL when no role has the name)
-- and marks it bound here; revoked grants and grants never bound (NULL)
-- stay as they are.  Grants bound in this cluster are never touched, so a
-- dropped role's grant is not handed to a new role of its name by running
-- this where it does not belong (a restore into the same cluster finds
-- nothing).  A grant that counted for nobody before the dump cannot be told
-- from the others in another cluster, so such grants are revoked before it
-- (README).  It returns the grants whose role it changed; each is audited
-- as a grant change.
CREATE FUNCTION vms.access_grant_rebind()
    RETURNS TABLE (grant_id bigint, grantee name, old_oid oid, new_oid oid)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    here constant bigint := (SELECT s.system_identifier FROM pg_catalog.pg_control_system() s);
    saved "char";
BEGIN
    -- the trigger keeps a grant's binding on every update but of its grantee: off
    -- for this update, then back in the state it was in (ENABLE ALWAYS too)
    saved := vms._trigger_set('vms.access_grant', 'access_grant_role', 'D');
    RETURN QUERY
    WITH old AS (
        SELECT g.id, g.grantee_oid FROM vms.access_grant g
         WHERE g.revoked_at IS NULL AND g.grantee_oid IS NOT NULL AND g.bound_in IS DISTINCT FROM here
           FOR UPDATE),
    bound AS (
        UPDATE vms.access_grant g SET grantee_oid = pg_catalog.to_regrole(pg_catalog.quote_ident(g.grantee)), bound_in = here
          FROM old WHERE g.id = old.id
        RETURNING g.id, g.grantee, old.grantee_oid AS old_oid, g.grantee_oid AS new_oid)
    SELECT b.id, b.grantee, b.old_oid, b.new_oid FROM bound b WHERE b.old_oid IS DISTINCT FROM b.new_oid;
    PERFORM vms._trigger_set('vms.access_grant', 'access_grant_role', saved);
END $$;
COMMENT ON FUNCTION vms.access_grant_rebind() IS
    'after a restore into another cluster: bind the live grants again to the roles their grantee names name there (as pg_restore does for ACLs); returns the grants changed';

-- A request binds to the role that made it, as a grant binds to its grantee
-- (above): requester_oid is set from requester when the request is made,
-- and the request is that role's only while vms.grantee_role(requester,
-- requester_oid) names it.  A role created later under a dropped role's
-- name neither sees the old role's requests nor gets them approved into
-- grants of its own.  A sibling of vms._grant_bind_role (PL/pgSQL cannot
-- name a row's columns from trigger arguments without a round trip through
-- jsonb): an update keeps the binding unless it changes the requester.
CREATE FUNCTION vms._request_bind_role() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.requester IS NOT DISTINCT FROM OLD.requester THEN
        NEW.requester_oid := OLD.requester_oid;
        NEW.bound_in := OLD.bound_in;
    ELSE
        NEW.requester_oid := pg_catalog.to_regrole(pg_catalog.quote_ident(NEW.requester));
        NEW.bound_in := (SELECT s.system_identifier FROM pg_catalog.pg_control_system() s);
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._request_bind_role() IS 'internal: binds an access request to the OID of its requester role when it is made (or its requester changes)';
CREATE TRIGGER access_request_role BEFORE INSERT OR UPDATE OF requester, requester_oid, bound_in ON vms.access_request
    FOR EACH ROW EXECUTE FUNCTION vms._request_bind_role();

-- The same for the pending requests after a restore into another cluster:
-- they come with the old cluster's OIDs and cannot be approved until the
-- owner binds them again by name.  Decided requests stay as they are (their
-- grants are bound by vms.access_grant_rebind); a pending request of a role
-- dropped before the dump cannot be told from the others, so such requests
-- are rejected before it (README).  Only requests bound in another cluster
-- (bound_in) are touched, as for grants.  Returns the requests whose role it
-- changed; each is audited as a request change.
CREATE FUNCTION vms.access_request_rebind()
    RETURNS TABLE (request_id bigint, requester name, old_oid oid, new_oid oid)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    here constant bigint := (SELECT s.system_identifier FROM pg_catalog.pg_control_system() s);
    saved "char";
BEGIN
    -- the trigger keeps a request's binding on every update but of its requester: off
    -- for this update, then back in the state it was in (ENABLE ALWAYS too)
    saved := vms._trigger_set('vms.access_request', 'access_request_role', 'D');
    RETURN QUERY
    WITH old AS (
        SELECT r.id, r.requester_oid FROM vms.access_request r
         WHERE r.state = 'pending' AND r.requester_oid IS NOT NULL AND r.bound_in IS DISTINCT FROM here
           FOR UPDATE),
    bound AS (
        UPDATE vms.access_request r SET requester_oid = pg_catalog.to_regrole(pg_catalog.quote_ident(r.requester)), bound_in = here
          FROM old WHERE r.id = old.id
        RETURNING r.id, r.requester, old.requester_oid AS old_oid, r.requester_oid AS new_oid)
    SELECT b.id, b.requester, b.old_oid, b.new_oid FROM bound b WHERE b.old_oid IS DISTINCT FROM b.new_oid;
    PERFORM vms._trigger_set('vms.access_request', 'access_request_role', saved);
END $$;
COMMENT ON FUNCTION vms.access_request_rebind() IS
    'after a restore into another cluster: bind the pending access requests again to the roles their requester names name there; returns the requests changed';

-- What the policy cache compiles for a user at a time: the scopes of the
-- grants that carry the action (any action when it is NULL; catalogue and
-- tag grants expanded to channels), restricted channels, and when the set
-- next changes.  Runs as the table owner, from C.
-- Membership is asked with vms.grantee_role(grantee, grantee_oid), here and
-- wherever grants are read: a grant whose role was dropped (or recreated)
-- has none and counts for nobody, where pg_has_role with the name would
-- raise "role does not exist" and break every policy check.
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
CREATE FUNCTION vms._grant_scope(usr oid, at timestamptz)
    RETURNS TABLE (kind text, ref text, level smallint, next_change timestamptz)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT * FROM vms._grant_scope_action(usr, at, NULL)
$$;
COMMENT ON FUNCTION vms._grant_scope(oid, timestamptz) IS 'internal: a user''s grants compiled for row-level security';

CREATE FUNCTION vms.channel_visible(code vms.gbcode, civil_code text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_channel_visible' LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION vms.channel_visible(vms.gbcode, text) IS
    'may the current user see this channel (any valid grant covering it at its security level); used by row-level security';

CREATE FUNCTION vms._policy_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'vms_policy_changed' LANGUAGE C;
COMMENT ON FUNCTION vms._policy_changed() IS 'internal: drops every session''s compiled policy when grants or scopes change';
CREATE TRIGGER access_grant_policy AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vms.access_grant
    FOR EACH STATEMENT EXECUTE FUNCTION vms._policy_changed();
CREATE TRIGGER security_assignment_policy AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vms.security_assignment
    FOR EACH STATEMENT EXECUTE FUNCTION vms._policy_changed();
CREATE TRIGGER catalog_member_policy AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vms.catalog_member
    FOR EACH STATEMENT EXECUTE FUNCTION vms._policy_changed();
CREATE TRIGGER catalog_node_policy AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vms.catalog_node
    FOR EACH STATEMENT EXECUTE FUNCTION vms._policy_changed();
CREATE TRIGGER channel_tag_policy AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vms.channel_tag
    FOR EACH STATEMENT EXECUTE FUNCTION vms._policy_changed();
CREATE TRIGGER tag_policy AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vms.tag
    FOR EACH STATEMENT EXECUTE FUNCTION vms._policy_changed();

-- can(action, channel) -------------------------------------------------------
-- SECURITY DEFINER: it reads every grant, security level, catalogue
-- membership and tag of the channel, which the caller may not read.
-- Checks first that the session user can act as the role asked about
-- (pg_has_role MEMBER, as vms.channel_visible_to does), so it answers only
-- about oneself; it returns one boolean and nothing of what it read.
CREATE FUNCTION vms._can_for(who name, action text, channel vms.gbcode, new_civil_code text DEFAULT NULL) RETURNS boolean
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
COMMENT ON FUNCTION vms._can_for(name, text, vms.gbcode, text) IS 'internal: may a role (that the session user can act as) do an action on a channel';

CREATE FUNCTION vms._raise_unknown_action(action text) RETURNS boolean
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'unknown action "%"', action
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Actions are view_live, playback, download, ptz, snapshot, manage_ledger, export.';
END $$;
-- SECURITY DEFINER so that it may call the internal vms._can_for; it asks
-- only about the role the session acts as (vms._acting_role(): SET ROLE,
-- else the session user), never about a role named by the caller.
CREATE FUNCTION vms.can(action text, channel vms.gbcode) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT
    RETURN CASE WHEN action <> ALL ('{view_live,playback,download,ptz,snapshot,manage_ledger,export}')
                THEN vms._raise_unknown_action(action)
                ELSE vms._can_for(pg_catalog.pg_get_userbyid(vms._acting_role()), action, channel) END;
COMMENT ON FUNCTION vms._raise_unknown_action(text) IS 'internal: error for an unknown action';
COMMENT ON FUNCTION vms.can(text, vms.gbcode) IS 'may the role this session acts as (SET ROLE, else the session user) do this action (view_live, playback, download, ptz, snapshot, manage_ledger, export) on the channel now';

-- Grants, requests, approvals --------------------------------------------------
CREATE FUNCTION vms._check_scope(scope_kind text, scope_ref text, actions text[], max_level smallint,
                                 valid_from timestamptz, valid_until timestamptz) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
BEGIN
    IF scope_kind NOT IN ('all', 'region', 'catalog', 'tag', 'channel') THEN
        RAISE EXCEPTION 'unknown scope kind "%"', scope_kind USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Scopes are all, region, catalog, tag, channel.';
    END IF;
    IF (scope_kind = 'all') <> (scope_ref IS NULL) THEN
        RAISE EXCEPTION 'scope "%" %', scope_kind, CASE WHEN scope_kind = 'all' THEN 'takes no reference' ELSE 'needs a reference' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF scope_kind = 'region' AND scope_ref !~ '^([0-9]{2}){1,4}$' THEN
        RAISE EXCEPTION 'region scope "%" is not a 2/4/6/8-digit civil code', scope_ref USING ERRCODE = 'invalid_parameter_value';
    ELSIF scope_kind IN ('catalog', 'channel') AND vms.gbcode_parse_error(scope_ref) IS NOT NULL THEN
        RAISE EXCEPTION '% scope "%" is not a 20-digit code', scope_kind, scope_ref USING ERRCODE = 'invalid_parameter_value';
    ELSIF scope_kind = 'catalog' AND NOT EXISTS (SELECT 1 FROM vms.catalog_node WHERE code = scope_ref::vms.gbcode) THEN
        RAISE EXCEPTION 'catalogue node % does not exist', scope_ref USING ERRCODE = 'invalid_parameter_value';
    ELSIF scope_kind = 'channel' AND NOT EXISTS (SELECT 1 FROM vms.channel WHERE code = scope_ref::vms.gbcode) THEN
        RAISE EXCEPTION 'channel % does not exist', scope_ref USING ERRCODE = 'invalid_parameter_value';
    ELSIF scope_kind = 'tag' AND (scope_ref !~ '^[0-9]{1,18}$' OR NOT EXISTS (SELECT 1 FROM vms.tag WHERE id = scope_ref::bigint)) THEN
        RAISE EXCEPTION 'tag % does not exist', scope_ref USING ERRCODE = 'invalid_parameter_value',
              HINT = 'A tag scope is a tag id.';
    END IF;
    IF actions IS NULL OR cardinality(actions) = 0
       OR NOT actions <@ '{view_live,playback,download,ptz,snapshot,manage_ledger,export}' THEN
        RAISE EXCEPTION 'actions % are not a non-empty subset of the known actions', actions
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Actions are view_live, playback, download, ptz, snapshot, manage_ledger, export.';
    END IF;
    IF max_level IS NULL OR max_level NOT BETWEEN 1 AND 4 THEN
        RAISE EXCEPTION 'security level % does not exist', max_level USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF valid_until IS NOT NULL AND valid_until <= coalesce(valid_from, now()) THEN
        RAISE EXCEPTION 'validity window ends before it starts' USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION vms._check_scope(text, text, text[], smallint, timestamptz, timestamptz) IS 'internal: validates a grant or request';

CREATE FUNCTION vms._require_role(duty name) RETURNS void
    LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT pg_has_role(session_user, duty, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied: % is not a member of %', session_user, duty
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;
COMMENT ON FUNCTION vms._require_role(name) IS 'internal: the session user must hold a duty role';

-- SECURITY DEFINER: writes vms.access_grant, which nobody else may write.
-- Checks: the session user holds vms_grant_admin, the grantee exists and is
-- neither the session user nor a role it belongs to, and the scope, actions,
-- level and window are valid (vms._check_scope).
CREATE FUNCTION vms.grant_access(grantee name, scope_kind text, scope_ref text, actions text[], max_level smallint,
                                 valid_until timestamptz DEFAULT NULL, valid_from timestamptz DEFAULT now(),
                                 note text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM vms._require_role('vms_grant_admin');
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = grantee) THEN
        RAISE EXCEPTION 'role "%" does not exist', grantee USING ERRCODE = 'undefined_object';
    END IF;
    IF pg_has_role(session_user, grantee, 'MEMBER') THEN
        RAISE EXCEPTION 'nobody grants to themselves'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('%s is %s or a member of it.', session_user, grantee),
                  HINT = 'Another grant administrator must grant this, or use vms.request_access().';
    END IF;
    PERFORM vms._check_scope(scope_kind, scope_ref, actions, max_level, valid_from, valid_until);
    INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level, valid_from, valid_until, note)
    VALUES (grantee, scope_kind, scope_ref, actions, max_level, valid_from, valid_until, note)
    RETURNING access_grant.id INTO id;
    RETURN id;
END $$;
COMMENT ON FUNCTION vms.grant_access(name, text, text, text[], smallint, timestamptz, timestamptz, text) IS
    'grant a role actions on a scope up to a security level for a period (grant administrators; never to themselves)';

-- SECURITY DEFINER: updates vms.access_grant.  Checks: the session user
-- holds vms_grant_admin and gives a reason; only live grants are revoked.
CREATE FUNCTION vms.revoke_access(grant_id bigint, reason text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM vms._require_role('vms_grant_admin');
    PERFORM vms._require_reason(reason, 'revoking a grant');
    UPDATE vms.access_grant SET revoked_at = now(), revoked_by = session_user, revoke_reason = reason
     WHERE id = grant_id AND revoked_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'grant % does not exist or is already revoked', grant_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION vms.revoke_access(bigint, text) IS 'revoke a grant with a reason (grant administrators)';

-- SECURITY DEFINER: writes vms.access_request, which nobody else may write.
-- Open to everyone (asking grants nothing); the requester is always the
-- session user, the reason is required and the scope is validated.
CREATE FUNCTION vms.request_access(scope_kind text, scope_ref text, actions text[], max_level smallint,
                                   reason text, valid_until timestamptz DEFAULT NULL,
                                   valid_from timestamptz DEFAULT now())
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM vms._require_reason(reason, 'an access request');
    PERFORM vms._check_scope(scope_kind, scope_ref, actions, max_level, valid_from, valid_until);
    INSERT INTO vms.access_request (requester, scope_kind, scope_ref, actions, max_level, valid_from, valid_until, reason)
    VALUES (session_user, scope_kind, scope_ref, actions, max_level, valid_from, valid_until, reason)
    RETURNING access_request.id INTO id;
    RETURN id;
END $$;
COMMENT ON FUNCTION vms.request_access(text, text, text[], smallint, text, timestamptz, timestamptz) IS
    'ask for access (权限申请): scope, actions, level, reason and period; an approver decides';

-- SECURITY DEFINER: turns a request into a grant.  Checks: the session user
-- holds vms_approver, the request is pending, the role that made it still
-- has its name (vms.grantee_role(requester, requester_oid): not dropped,
-- recreated or renamed since), and the session user is not (a member of)
-- that role; the grant copies the request unchanged and binds to that role.
CREATE FUNCTION vms.approve_request(request_id bigint, note text DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    r vms.access_request;
    who oid;
    gid bigint;
    bound oid;
BEGIN
    PERFORM vms._require_role('vms_approver');
    SELECT * INTO r FROM vms.access_request WHERE id = request_id FOR UPDATE;
    IF NOT FOUND OR r.state <> 'pending' THEN
        RAISE EXCEPTION 'access request % is not pending', request_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
    who := vms.grantee_role(r.requester, r.requester_oid);
    IF who IS NULL THEN
        RAISE EXCEPTION 'role of access request % no longer exists', request_id
            USING ERRCODE = 'undefined_object',
                  DETAIL = format('Request %s was made by role %s, which %s.', request_id, r.requester,
                                  coalesce('has been renamed to ' || (SELECT a.rolname FROM pg_catalog.pg_roles a WHERE a.oid = r.requester_oid),
                                           'was dropped' || CASE WHEN pg_catalog.to_regrole(pg_catalog.quote_ident(r.requester)) IS NOT NULL
                                                                 THEN '; the role of that name now is another role' ELSE '' END)),
                  HINT = 'Reject it with vms.reject_request(); whoever needs the access asks for it with vms.request_access().';
    END IF;
    IF pg_has_role(session_user, who, 'MEMBER') THEN
        RAISE EXCEPTION 'nobody approves their own request'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('Request %s was made by %s.', request_id, r.requester),
                  HINT = 'Another approver must decide it.';
    END IF;
    INSERT INTO vms.access_grant (grantee, scope_kind, scope_ref, actions, max_level, valid_from, valid_until, request_id, note)
    VALUES (r.requester, r.scope_kind, r.scope_ref, r.actions, r.max_level, r.valid_from, r.valid_until, r.id, note)
    RETURNING id, grantee_oid INTO gid, bound;
    -- the grant binds by name: a role dropped and created again under it
    -- since the check above must not get it
    IF bound IS DISTINCT FROM who THEN
        RAISE EXCEPTION 'role of access request % changed while it was approved', request_id
            USING ERRCODE = 'serialization_failure',
                  DETAIL = format('Role %s was dropped and created again meanwhile.', r.requester),
                  HINT = 'Try again.';
    END IF;
    UPDATE vms.access_request SET state = 'approved', decided_by = session_user, decided_at = now(),
                                  decision_note = note, grant_id = gid
     WHERE id = request_id;
    RETURN gid;
END $$;
COMMENT ON FUNCTION vms.approve_request(bigint, text) IS 'approve a pending request (approvers; never their own); creates the grant';

-- SECURITY DEFINER: updates vms.access_request.  Checks: the session user
-- holds vms_approver, gives a note, and does not decide its own request:
-- is not (a member of) the role that made it, by its OID whatever its name
-- now (a dropped role's request can be rejected by anyone else; asked by
-- name, pg_has_role raised "role does not exist").
CREATE FUNCTION vms.reject_request(request_id bigint, note text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM vms._require_role('vms_approver');
    PERFORM vms._require_reason(note, 'rejecting a request');
    UPDATE vms.access_request SET state = 'rejected', decided_by = session_user, decided_at = now(), decision_note = note
     WHERE id = request_id AND state = 'pending' AND NOT coalesce(pg_has_role(session_user, requester_oid, 'MEMBER'), false);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'access request % is not pending, or is your own', request_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION vms.reject_request(bigint, text) IS 'reject a pending request with a note (approvers)';

-- SECURITY DEFINER: the requester takes back a pending request of their own
-- (access_request is the owner's to write).  Only the role that asked, as
-- the session user (vms.request_access records the session user), bound by
-- requester_oid and still under its name (vms.grantee_role): a role created
-- under a dropped requester's name withdraws nothing.  Audited as 'withdraw'
-- by the table's trigger.
CREATE FUNCTION vms.withdraw_request(request_id bigint, note text DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF length(note) > 1000 THEN
        RAISE EXCEPTION 'note is too long'
            USING ERRCODE = 'string_data_right_truncation',
                  DETAIL = format('The note has %s characters; at most 1000 are allowed.', length(note)),
                  HINT = 'Shorten the note; nothing was withdrawn.';
    END IF;
    UPDATE vms.access_request r
       SET state = 'withdrawn', decided_by = session_user, decided_at = now(), decision_note = note
     WHERE r.id = request_id AND r.state = 'pending'
       AND vms.grantee_role(r.requester, r.requester_oid) = (SELECT a.oid FROM pg_catalog.pg_roles a WHERE a.rolname = session_user);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'access request % is not a pending request of yours', request_id
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Only the role that asked, in its own session, withdraws a request, and only while it is pending.',
                  HINT = 'Your requests: SELECT id, state FROM vms.access_request;';
    END IF;
END $$;
COMMENT ON FUNCTION vms.withdraw_request(bigint, text) IS 'take back your own pending access request (requesters)';

-- Audit of grants and requests, whichever way they change.
-- SECURITY DEFINER trigger: appends to the audit log through vms.audit,
-- which the people changing grants may not call.  Takes no arguments from
-- anyone: it writes the changed row, as the trigger saw it.
CREATE FUNCTION vms._audit_row() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    act text;
BEGIN
    IF TG_TABLE_NAME = 'access_grant' THEN
        IF TG_OP = 'INSERT' THEN
            act := 'grant';
        ELSIF NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL THEN
            act := 'revoke';
        ELSIF (to_jsonb(NEW) - 'last_used_at') = (to_jsonb(OLD) - 'last_used_at') THEN
            RETURN NULL;    -- use is audited where it happens
        ELSE
            act := 'grant_change';
        END IF;
    ELSE
        act := CASE WHEN TG_OP = 'INSERT' THEN 'request'
                    WHEN NEW.state = 'approved' THEN 'approve'
                    WHEN NEW.state = 'rejected' THEN 'reject'
                    WHEN NEW.state = 'withdrawn' THEN 'withdraw'
                    ELSE 'request_change' END;
    END IF;
    PERFORM vms.audit(act, TG_TABLE_NAME || ':' || NEW.id, to_jsonb(NEW));
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._audit_row() IS 'internal: audits grants, revocations, requests, approvals, rejections';
CREATE TRIGGER access_grant_audit AFTER INSERT OR UPDATE ON vms.access_grant FOR EACH ROW EXECUTE FUNCTION vms._audit_row();
CREATE TRIGGER access_request_audit AFTER INSERT OR UPDATE ON vms.access_request FOR EACH ROW EXECUTE FUNCTION vms._audit_row();

-- Exercised rights: checked, audited, and the grant's use recorded --------------
-- SECURITY DEFINER: writes the audit log and the grants' last_used_at.
-- Checks the right for the role the session acts as (vms._acting_role());
-- a refusal is audited and raised, so nothing is returned without a grant.
CREATE FUNCTION vms.exercise_right(action text, channel vms.gbcode, detail jsonb DEFAULT '{}') RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    acting name := pg_catalog.pg_get_userbyid(vms._acting_role());
BEGIN
    IF NOT vms._can_for(acting, action, channel) THEN
        -- outside this transaction, which the error rolls back
        PERFORM vms._audit_denied('denied_' || action, channel::text, detail);
        RAISE EXCEPTION 'permission denied to % channel %', replace(action, '_', ' '), channel
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Ask for access with vms.request_access().';
    END IF;
    UPDATE vms.access_grant g SET last_used_at = now()
     WHERE g.revoked_at IS NULL AND pg_has_role(acting, vms.grantee_role(g.grantee, g.grantee_oid), 'MEMBER') AND action = ANY (g.actions);
    RETURN vms.audit(action, channel::text, detail);
END $$;
COMMENT ON FUNCTION vms.exercise_right(text, vms.gbcode, jsonb) IS 'use a right on a channel: refused (42501, audited) without a grant, else audited; returns the audit entry';

-- vms.ptz, vms.view_live, vms.playback, vms.download and vms.snapshot
-- (check, audit, and send the command or INVITE) are in 26_device_control.sql

-- Export of the ledger as a right: only what the user may export, audited.
-- SECURITY DEFINER: it appends to the audit log (vms.audit is the owner's).
-- It returns only rows vms.can('export') allows the role the session acts
-- as; an export grant covering a channel at its level also makes it visible,
-- so this is never more than the caller's own view of vms.ledger_export.
CREATE FUNCTION vms.export_ledger() RETURNS SETOF vms.ledger_export
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY SELECT e.* FROM vms.ledger_export e WHERE vms.can('export', e."监控点编码"::vms.gbcode);
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM vms.audit('export', 'ledger', jsonb_build_object('rows', n));
END $$;
COMMENT ON FUNCTION vms.export_ledger() IS 'the ledger template rows the role this session acts as may export; the export is audited';

-- Periodic review (定期审核) -----------------------------------------------------
CREATE FUNCTION vms.review_unused_grants(days integer DEFAULT 30) RETURNS SETOF vms.access_grant
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT * FROM vms.access_grant
     WHERE revoked_at IS NULL AND (valid_until IS NULL OR valid_until > now())
       AND coalesce(last_used_at, granted_at) < now() - make_interval(days => days)
     ORDER BY coalesce(last_used_at, granted_at)
$$;
COMMENT ON FUNCTION vms.review_unused_grants(integer) IS 'live grants not used (or never used) for N days';

CREATE FUNCTION vms.review_expiring_grants(within interval DEFAULT '7 days') RETURNS SETOF vms.access_grant
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT * FROM vms.access_grant
     WHERE revoked_at IS NULL AND valid_until > now() AND valid_until <= now() + within
     ORDER BY valid_until
$$;
COMMENT ON FUNCTION vms.review_expiring_grants(interval) IS 'live grants that expire within the interval';

CREATE VIEW vms.review_wide_grants WITH (security_invoker = true) AS
SELECT g.*, u.name AS unit, u.civil_code AS unit_civil_code
  FROM vms.access_grant g
  LEFT JOIN vms.subject s ON s.role_name = g.grantee
  LEFT JOIN vms.org_unit u ON u.id = s.unit_id
 WHERE g.revoked_at IS NULL AND (g.valid_until IS NULL OR g.valid_until > now())
   AND (g.scope_kind = 'all'
        OR (g.scope_kind = 'region' AND (u.civil_code IS NULL OR g.scope_ref NOT LIKE u.civil_code || '%')));
COMMENT ON VIEW vms.review_wide_grants IS 'live grants wider than the area of the grantee''s unit (or to everything)';

-- Secrets ---------------------------------------------------------------------
-- A stored secret is bound to where it is stored: the context, "table.column:key"
-- (e.g. 'viid_upstream.password_enc:' || name), is the AEAD's associated data,
-- so a value copied to another row or column does not decrypt there
-- (extension/crypto.c; 0.1.0 values are read until re-encrypted).
CREATE FUNCTION vms.secret_encrypt(plain text, context text DEFAULT '') RETURNS bytea
    AS 'MODULE_PATHNAME', 'vms_secret_encrypt' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION vms.secret_decrypt(secret bytea, context text DEFAULT '') RETURNS text
    AS 'MODULE_PATHNAME', 'vms_secret_decrypt' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION vms.secret_algorithm() RETURNS text
    AS 'MODULE_PATHNAME', 'vms_secret_algorithm' LANGUAGE C STABLE;
REVOKE ALL ON FUNCTION vms.secret_decrypt(bytea, text) FROM PUBLIC;
COMMENT ON FUNCTION vms.secret_encrypt(text, text) IS
    'encrypt a secret with the key in vms.secret_key_file (SM4-GCM, or AES-256-GCM without SM4), bound to its context: where it will be stored, as ''table.column:key''';
COMMENT ON FUNCTION vms.secret_decrypt(bytea, text) IS
    'decrypt a stored secret read from its context (''table.column:key'', as given to vms.secret_encrypt); superusers; workers use the C API';
COMMENT ON FUNCTION vms.secret_algorithm() IS 'the cipher vms.secret_encrypt uses';

-- Row-level security ----------------------------------------------------------
-- Analysts see the channels they hold a grant for; everything keyed by a
-- channel code follows the channel.  Policies call functions.
CREATE FUNCTION vms.code_visible(code vms.gbcode) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path FROM CURRENT AS $$
    SELECT EXISTS (SELECT 1 FROM vms.channel c WHERE c.code = code_visible.code)
$$;
COMMENT ON FUNCTION vms.code_visible(vms.gbcode) IS 'is the channel with this code visible to the current user (row-level security of channel-keyed tables)';

-- The write policies' test, in C (extension/access_policy.c) with the
-- acting role's manage_ledger grants compiled once, as vms.channel_visible
-- does for reading: a bulk import evaluates it for every row it writes, and
-- vms._can_for costs three queries a call.  It answers what
-- vms._can_for(acting role, 'manage_ledger', code, civil_code) answers,
-- except that the region is always the civil code given (the row's as it
-- will be): an update may not move a channel out of the regions the role
-- may write.
CREATE FUNCTION vms.can_manage(code vms.gbcode, civil_code text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_can_manage' LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION vms.can_manage(vms.gbcode, text) IS 'may the role this session acts as write this channel, in the region given (manage_ledger); the write policies of vms.channel';

ALTER TABLE vms.channel ENABLE ROW LEVEL SECURITY;
CREATE POLICY channel_view ON vms.channel FOR SELECT USING (vms.channel_visible(code, civil_code));
CREATE POLICY channel_insert ON vms.channel FOR INSERT WITH CHECK (vms.can_manage(code, civil_code));
CREATE POLICY channel_update ON vms.channel FOR UPDATE USING (vms.can_manage(code, civil_code));
CREATE POLICY channel_delete ON vms.channel FOR DELETE USING (vms.can_manage(code, civil_code));

ALTER TABLE vms.channel_reported ENABLE ROW LEVEL SECURITY;
CREATE POLICY channel_reported_view ON vms.channel_reported USING (vms.code_visible(code));
ALTER TABLE vms.channel_tag ENABLE ROW LEVEL SECURITY;
CREATE POLICY channel_tag_view ON vms.channel_tag USING (vms.code_visible(channel_code));
ALTER TABLE vms.catalog_member ENABLE ROW LEVEL SECURITY;
CREATE POLICY catalog_member_view ON vms.catalog_member USING (vms.code_visible(channel_code));
ALTER TABLE vms.lane_channel ENABLE ROW LEVEL SECURITY;
CREATE POLICY lane_channel_view ON vms.lane_channel USING (vms.code_visible(channel_code));
ALTER TABLE vms.governance_task ENABLE ROW LEVEL SECURITY;
CREATE POLICY governance_task_view ON vms.governance_task USING (vms.code_visible(channel_code));
ALTER TABLE vms.ledger_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY ledger_history_view ON vms.ledger_history FOR SELECT
    USING (table_name = 'channel' AND vms.code_visible(code));
ALTER TABLE vms.alarm ENABLE ROW LEVEL SECURITY;
CREATE POLICY alarm_view ON vms.alarm USING (vms.code_visible(code));
ALTER TABLE vms.access_grant ENABLE ROW LEVEL SECURITY;
CREATE POLICY access_grant_view ON vms.access_grant FOR SELECT
    USING (pg_has_role(current_user, vms.grantee_role(grantee, grantee_oid), 'MEMBER') OR pg_has_role(current_user, 'vms_grant_admin', 'MEMBER')
           OR pg_has_role(current_user, 'vms_auditor', 'MEMBER'));
ALTER TABLE vms.access_request ENABLE ROW LEVEL SECURITY;
CREATE POLICY access_request_view ON vms.access_request FOR SELECT
    USING (pg_has_role(current_user, vms.grantee_role(requester, requester_oid), 'MEMBER') OR pg_has_role(current_user, 'vms_approver', 'MEMBER')
           OR pg_has_role(current_user, 'vms_auditor', 'MEMBER'));
ALTER TABLE vms.search_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY search_history_own ON vms.search_history USING (username = session_user) WITH CHECK (username = session_user);
ALTER TABLE vms.saved_search ENABLE ROW LEVEL SECURITY;
CREATE POLICY saved_search_own ON vms.saved_search USING (owner = session_user) WITH CHECK (owner = session_user);

-- Privileges for the duty roles: extension/sql/99_privileges.sql, at the end of
-- the install script, so that every object is covered or excluded there.
