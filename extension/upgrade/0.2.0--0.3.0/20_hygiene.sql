-- Hygiene (issue 20's review notes): small correctness and maintainability
-- fixes.
--
-- vms.access_grant_rebind, vms.access_request_rebind (20_grant_identity.sql,
-- 20_request_identity.sql) and vms.ledger_first_load (20_import.sql) turn a
-- trigger off for a while; the rebinds turned it back on with a plain
-- ENABLE, which reset an ENABLE ALWAYS, ENABLE REPLICA or DISABLE the DBA had
-- set.  All three now save and restore the state with this helper (their
-- definitions in those fragments, which are 0.3.0's own, call it).

-- Sets a trigger's firing state (pg_trigger.tgenabled: O enabled, A always,
-- R replica only, D disabled) and returns the state it had, so that a
-- function that turns a trigger off for a while puts it back as the DBA had
-- set it (a plain ENABLE would reset ENABLE ALWAYS, ENABLE REPLICA or
-- DISABLE):  saved := vms._trigger_set(t, name, 'D'); ...;
-- PERFORM vms._trigger_set(t, name, saved).  The state is read under the
-- lock ALTER TABLE ... TRIGGER takes, so no other change comes between.
CREATE FUNCTION vms._trigger_set(tbl regclass, trg name, state "char") RETURNS "char"
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    clause constant text := CASE state WHEN 'O' THEN 'ENABLE' WHEN 'A' THEN 'ENABLE ALWAYS'
                                       WHEN 'R' THEN 'ENABLE REPLICA' WHEN 'D' THEN 'DISABLE' END;
    was "char";
BEGIN
    IF clause IS NULL THEN
        RAISE EXCEPTION 'invalid trigger state "%"', state
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A state is one of pg_trigger.tgenabled''s: O, A, R or D.';
    END IF;
    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', tbl);
    SELECT t.tgenabled INTO was FROM pg_catalog.pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = trg;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'trigger "%" for table "%" does not exist', trg, tbl USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('ALTER TABLE %s %s TRIGGER %I', tbl, clause, trg);
    RETURN was;
END $$;
COMMENT ON FUNCTION vms._trigger_set(regclass, name, "char") IS
    'internal: sets a trigger''s firing state (O, A, R, D as in pg_trigger.tgenabled) and returns the one it had';
REVOKE ALL ON FUNCTION vms._trigger_set(regclass, name, "char") FROM PUBLIC;

-- The two copies of the upstream password check, vms._viid_upstream_secret_check
-- (0.2.0) and vms._sip_upstream_secret_check (16_cascade.sql), are one
-- function (the same checks and error texts, the table's name giving the
-- context and the hint), used by both triggers.
-- One function for every table of upstreams, vms.<kind>_upstream (name,
-- password_enc), written with vms.<kind>_add_upstream and
-- vms.<kind>_alter_upstream: vms.viid_upstream here, vms.sip_upstream
-- (25_cascade.sql); the context and the hint are taken from the table's name.
CREATE FUNCTION vms._upstream_secret_check() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    kind constant text := left(TG_TABLE_NAME, -length('_upstream'));
BEGIN
    IF TG_OP = 'INSERT' OR NEW.password_enc IS DISTINCT FROM OLD.password_enc THEN
        IF substr(NEW.password_enc, 1, 2) IS DISTINCT FROM 'V2'::bytea THEN
            RAISE EXCEPTION 'the password of upstream "%" is not encrypted for its row', NEW.name
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Use vms.%s_add_upstream or vms.%s_alter_upstream, or vms.secret_encrypt(password, %L || name).',
                                    kind, kind, TG_TABLE_NAME || '.password_enc:');
        END IF;
    ELSIF NEW.name IS DISTINCT FROM OLD.name THEN
        RAISE EXCEPTION 'renaming upstream "%" needs its password again', OLD.name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The password is encrypted for the upstream''s name.',
                  HINT = format('Set password_enc = vms.secret_encrypt(password, %L || new name) in the same UPDATE.',
                                TG_TABLE_NAME || '.password_enc:');
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._upstream_secret_check() IS
    'internal: an upstream''s password (vms.viid_upstream, vms.sip_upstream) is written in the bound form (V2) for its row; a rename re-encrypts it';
CREATE OR REPLACE TRIGGER viid_upstream_secret_check BEFORE INSERT OR UPDATE ON vms.viid_upstream
    FOR EACH ROW EXECUTE FUNCTION vms._upstream_secret_check();
CREATE OR REPLACE TRIGGER sip_upstream_secret_check BEFORE INSERT OR UPDATE ON vms.sip_upstream
    FOR EACH ROW EXECUTE FUNCTION vms._upstream_secret_check();
DROP FUNCTION vms._viid_upstream_secret_check();
DROP FUNCTION vms._sip_upstream_secret_check();
REVOKE ALL ON FUNCTION vms._upstream_secret_check() FROM PUBLIC;
