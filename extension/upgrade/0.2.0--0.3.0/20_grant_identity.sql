-- Grants bind to the role they were made to (a security fix).  A grant named
-- its grantee role only by name, so when the role was dropped the grant
-- stayed, and a new role created later under the same name silently
-- inherited it.  vms.access_grant.grantee_oid now records the grantee's OID,
-- set from the name by a trigger, and a grant counts only while the name
-- still names that role (vms.grantee_role), as PostgreSQL's own ACLs bind
-- to role OIDs.  Every membership check of the other fragments
-- (13_audit_denied, 17_device_control, 20_import, 20_import_rls,
-- 20_tiles_governance) passes vms.grantee_role(grantee, grantee_oid) to
-- pg_has_role; the ones after this file need it to exist.
ALTER TABLE vms.access_grant ADD COLUMN grantee_oid oid;
COMMENT ON COLUMN vms.access_grant.grantee_oid IS
    'the OID of the grantee role when the grant was made (set from grantee by a trigger, never by the caller); the grant counts only while grantee still names that role (vms.grantee_role)';

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
    'the role a grant (grantee, grantee_oid) counts for: grantee_oid while grantee still names that role, else NULL (the role was dropped, recreated or renamed)';

-- The existing grants are bound to the roles their names name now: a
-- dropped role's grant gets NULL and counts for nobody.  (A role already
-- recreated under a dropped role's name before this upgrade cannot be told
-- from the original: README, Permissions.)  Not audited as grant changes:
-- no grant changes.
ALTER TABLE vms.access_grant DISABLE TRIGGER access_grant_audit;
UPDATE vms.access_grant SET grantee_oid = pg_catalog.to_regrole(pg_catalog.quote_ident(grantee));
ALTER TABLE vms.access_grant ENABLE TRIGGER access_grant_audit;

-- Sets grantee_oid from the grantee's name on every insert (a grant made
-- now, or one restored by pg_restore, which re-binds grants by role name as
-- it re-binds PostgreSQL's own ACLs; a name no role has gets NULL and the
-- grant counts for nobody).  An update keeps the binding unless it changes
-- the grantee, so nobody can set grantee_oid by hand, and re-saving a
-- dropped role's grant does not bind it to a new role of that name.
CREATE FUNCTION vms._grant_bind_role() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.grantee IS NOT DISTINCT FROM OLD.grantee THEN
        NEW.grantee_oid := OLD.grantee_oid;
    ELSE
        NEW.grantee_oid := pg_catalog.to_regrole(pg_catalog.quote_ident(NEW.grantee));
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._grant_bind_role() IS 'internal: binds a grant to the OID of its grantee role when it is made (or its grantee changes)';
CREATE TRIGGER access_grant_role BEFORE INSERT OR UPDATE OF grantee, grantee_oid ON vms.access_grant
    FOR EACH ROW EXECUTE FUNCTION vms._grant_bind_role();

-- A restore into another cluster (roles carried by pg_dumpall --roles-only,
-- so with new OIDs; the data step runs with --disable-triggers) brings the
-- grants with the OIDs of the old cluster, and they count for nobody until
-- they are bound again by name, as pg_restore binds PostgreSQL's own ACLs:
-- the owner runs this once after the restore.  It binds every live grant
-- whose OID is not the one its name names now to that role (NULL when no
-- role has the name); revoked grants and grants never bound (NULL) stay as
-- they are.  A grant that counted for nobody before the dump cannot be told
-- from the others here, so such grants are revoked before it (README).  It
-- returns the grants it changed; each is audited as a grant change.
CREATE FUNCTION vms.access_grant_rebind()
    RETURNS TABLE (grant_id bigint, grantee name, old_oid oid, new_oid oid)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    -- the trigger keeps a grant's binding on every update but of its grantee
    ALTER TABLE vms.access_grant DISABLE TRIGGER access_grant_role;
    RETURN QUERY
    WITH old AS (
        SELECT g.id, g.grantee_oid FROM vms.access_grant g
         WHERE g.revoked_at IS NULL AND g.grantee_oid IS NOT NULL
           AND g.grantee_oid IS DISTINCT FROM pg_catalog.to_regrole(pg_catalog.quote_ident(g.grantee))
           FOR UPDATE)
    UPDATE vms.access_grant g SET grantee_oid = pg_catalog.to_regrole(pg_catalog.quote_ident(g.grantee))
      FROM old WHERE g.id = old.id
    RETURNING g.id, g.grantee, old.grantee_oid, g.grantee_oid;
    ALTER TABLE vms.access_grant ENABLE TRIGGER access_grant_role;
END $$;
COMMENT ON FUNCTION vms.access_grant_rebind() IS
    'after a restore into another cluster: bind the live grants again to the roles their grantee names name there (as pg_restore does for ACLs); returns the grants changed';

-- privileges (99_privileges.sql): the trigger function is internal,
-- vms.access_grant_rebind the owner's; vms.grantee_role is PUBLIC with the
-- row-level security functions
REVOKE ALL ON FUNCTION vms._grant_bind_role() FROM PUBLIC;
REVOKE ALL ON FUNCTION vms.access_grant_rebind() FROM PUBLIC;
REVOKE ALL ON FUNCTION vms.grantee_role(name, oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vms.grantee_role(name, oid) TO PUBLIC;

-- vms.review_wide_grants lists g.*, expanded when the view was made: made
-- again, as a fresh install makes it, it shows grantee_oid too (in the
-- column order of vms.access_grant, so CREATE OR REPLACE cannot add it)
DROP VIEW vms.review_wide_grants;
CREATE VIEW vms.review_wide_grants WITH (security_invoker = true) AS
SELECT g.*, u.name AS unit, u.civil_code AS unit_civil_code
  FROM vms.access_grant g
  LEFT JOIN vms.subject s ON s.role_name = g.grantee
  LEFT JOIN vms.org_unit u ON u.id = s.unit_id
 WHERE g.revoked_at IS NULL AND (g.valid_until IS NULL OR g.valid_until > now())
   AND (g.scope_kind = 'all'
        OR (g.scope_kind = 'region' AND (u.civil_code IS NULL OR g.scope_ref NOT LIKE u.civil_code || '%')));
COMMENT ON VIEW vms.review_wide_grants IS 'live grants wider than the area of the grantee''s unit (or to everything)';
GRANT SELECT ON vms.review_wide_grants TO vms_grant_admin, vms_approver;
