-- vms 0.1.0 -> 0.2.0.  Every schema change of 0.2.0 appears here as well as in
-- extension/sql/ (the fresh install); test/scripts/upgrade_check.sh proves the
-- two give the same schema.  Each change sits in a section named for its issue.
\echo Use "ALTER EXTENSION vms UPDATE TO '0.2.0'" to load this file. \quit


-- issue 13: workers
-- a database the workers do not serve (not vms.database) is told so
CREATE FUNCTION vms._worker_database_check() RETURNS boolean
    AS 'MODULE_PATHNAME', 'vms_worker_database_check' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION vms._worker_database_check() FROM PUBLIC;
COMMENT ON FUNCTION vms._worker_database_check() IS
    'internal: false, with a warning, when vms is in shared_preload_libraries and this database is not vms.database, so no worker serves it';
SELECT vms._worker_database_check();


-- issue 12: inspector, viid, secrets
-- Inspector sources: vms.channel.stream_url is an rtsp://, rtsps://, http://
-- or https:// address.  Rows stored by 0.1.0 that break the rule are kept:
-- the check is then left NOT VALID (new writes are checked, the inspector
-- refuses to open them) and a WARNING says how many; correct them and run
-- ALTER TABLE vms.channel VALIDATE CONSTRAINT channel_stream_url_check.
ALTER TABLE vms.channel ADD CONSTRAINT channel_stream_url_check
    CHECK (length(stream_url) <= 2048
           AND stream_url ~ '^(rtsps?|https?)://[^[:space:][:cntrl:]/?#][^[:space:][:cntrl:]]*$') NOT VALID;
DO $$
DECLARE
    n bigint;
BEGIN
    SELECT count(*) INTO n FROM vms.channel WHERE NOT (length(stream_url) <= 2048
           AND stream_url ~ '^(rtsps?|https?)://[^[:space:][:cntrl:]/?#][^[:space:][:cntrl:]]*$');
    IF n = 0 THEN
        ALTER TABLE vms.channel VALIDATE CONSTRAINT channel_stream_url_check;
    ELSE
        RAISE WARNING '% channels have a stream URL that is not an rtsp://, rtsps://, http:// or https:// address', n
            USING DETAIL = 'The inspector refuses to open them; new writes are checked.',
                  HINT = 'Correct or clear them, then ALTER TABLE vms.channel VALIDATE CONSTRAINT channel_stream_url_check.';
    END IF;
END $$;

-- Inspection plans: a bad plan fails its own tasks and rounds, reported.
ALTER TABLE vms.inspection_run ADD COLUMN failed integer NOT NULL DEFAULT 0, ADD COLUMN error text;
ALTER TABLE vms.inspection_task ADD COLUMN error text,
    DROP CONSTRAINT inspection_task_state_check,
    ADD CONSTRAINT inspection_task_state_check CHECK (state IN ('pending', 'running', 'done', 'failed'));
COMMENT ON COLUMN vms.inspection_run.failed IS 'tasks that failed without a result because the plan was not usable (see inspection_task.error)';
COMMENT ON COLUMN vms.inspection_run.error IS 'why the round could not start (the plan''s scope or schedule is not usable); NULL when it started';
COMMENT ON COLUMN vms.inspection_task.error IS 'state failed: why the task could not be sampled (its plan''s settings are not usable)';

CREATE OR REPLACE FUNCTION vms._inspection_threshold_problem(name text, value double precision) RETURNS text
    AS 'MODULE_PATHNAME', 'vms_inspection_threshold_problem' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vms._inspection_threshold_problem(text, double precision) IS
    'internal: NULL when the inspector takes this threshold value, else unknown or out of range';

CREATE OR REPLACE FUNCTION vms._inspection_check_thresholds(thresholds jsonb, place text) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    k text;
    v jsonb;
    problem text;
BEGIN
    IF jsonb_typeof(thresholds) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION '% must be a JSON object', place USING ERRCODE = 'invalid_parameter_value',
            HINT = 'For example {"blur_min": 0.5}.';
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(thresholds) LOOP
        IF jsonb_typeof(v) <> 'number' THEN
            RAISE EXCEPTION 'threshold "%" in % must be a number', k, place USING ERRCODE = 'invalid_parameter_value',
                DETAIL = format('The value given was %s.', v);
        END IF;
        problem := CASE WHEN abs(v::text::numeric) > 1e300 THEN 'out of range'
                        ELSE vms._inspection_threshold_problem(k, v::text::float8) END;
        IF problem = 'unknown' THEN
            RAISE EXCEPTION 'unknown threshold "%" in %', k, place USING ERRCODE = 'invalid_parameter_value',
                HINT = 'The thresholds are listed in extension/inspect/THRESHOLDS.md, for example "blur_min" or "noise_sigma_min".';
        ELSIF problem IS NOT NULL THEN
            RAISE EXCEPTION 'threshold "%" in % is out of range', k, place USING ERRCODE = 'invalid_parameter_value',
                DETAIL = format('The value given was %s.', v);
        END IF;
    END LOOP;
END $$;
COMMENT ON FUNCTION vms._inspection_check_thresholds(jsonb, text) IS
    'internal: thresholds are an object of known threshold names to numbers in range (22023 naming the key otherwise)';

CREATE OR REPLACE FUNCTION vms._inspection_check_plan(p vms.inspection_plan) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    bad text;
    w jsonb;
BEGIN
    PERFORM count(*) FROM vms.inspection_scope_channels(p.scope);
    IF p.cron IS NOT NULL THEN
        PERFORM vms.cron_next(p.cron);
    END IF;
    SELECT c INTO bad FROM unnest(p.checks) c
     WHERE c NOT IN ('stream', 'signal_loss', 'black_screen', 'brightness', 'blur', 'color_cast', 'noise',
                     'stripes', 'freeze', 'jitter', 'mosaic', 'occlusion', 'scene_change') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown check "%"', bad USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Checks: stream, signal_loss, black_screen, brightness, blur, color_cast, noise, stripes, freeze, jitter, mosaic, occlusion, scene_change.';
    END IF;
    IF cardinality(p.checks) = 0 THEN
        RAISE EXCEPTION 'an inspection plan needs at least one check' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(p.windows) <> 'array' THEN
        RAISE EXCEPTION 'windows must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR w IN SELECT jsonb_array_elements(p.windows) LOOP
        IF NOT (w ->> 'from' ~ '^([01][0-9]|2[0-3]):[0-5][0-9]$' AND w ->> 'to' ~ '^([01][0-9]|2[0-3]):[0-5][0-9]$') THEN
            RAISE EXCEPTION 'time window % needs "from" and "to" as HH:MM', w USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF w ? 'profile' AND w ->> 'profile' NOT IN ('strict', 'normal', 'loose') THEN
            RAISE EXCEPTION 'unknown profile "%" in a time window', w ->> 'profile' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF w ? 'thresholds' THEN
            PERFORM vms._inspection_check_thresholds(w -> 'thresholds', format('the window from %s to %s', w ->> 'from', w ->> 'to'));
        END IF;
    END LOOP;
    PERFORM vms._inspection_check_thresholds(p.thresholds, 'the plan''s thresholds');
END $$;
COMMENT ON FUNCTION vms._inspection_check_plan(vms.inspection_plan) IS 'internal: a plan''s scope, schedule, checks, windows and thresholds are valid';

CREATE OR REPLACE FUNCTION vms._inspection_plan_trigger() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' OR to_jsonb(NEW) - 'next_run_at' IS DISTINCT FROM to_jsonb(OLD) - 'next_run_at' THEN
        PERFORM vms._inspection_check_plan(NEW);
    END IF;
    PERFORM vms._wake_worker('inspector 1');
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._inspection_plan_trigger() IS 'internal: validate a changed plan and wake the inspectors';

CREATE OR REPLACE FUNCTION vms._inspection_schedule() RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    p vms.inspection_plan;
    rid bigint;
    n integer;
    total integer := 0;
    why text;
BEGIN
    FOR p IN SELECT * FROM vms.inspection_plan
              WHERE enabled AND next_run_at <= now() FOR UPDATE SKIP LOCKED LOOP
        -- a round still going is not started again
        CONTINUE WHEN EXISTS (SELECT 1 FROM vms.inspection_run r WHERE r.plan_id = p.id AND r.finished_at IS NULL);
      BEGIN
        INSERT INTO vms.inspection_run (plan_id) VALUES (p.id) RETURNING id INTO rid;
        INSERT INTO vms.inspection_task (run_id, plan_id, channel_code, source)
        -- a channel without a stream URL whose device has a GB/T 28181 session is
        -- sampled through the SIP worker (INVITE, RTP/PS)
        SELECT rid, p.id, c.code,
               coalesce(c.stream_url, CASE WHEN EXISTS (SELECT 1 FROM vms.device_session ds
                                                          WHERE ds.device_code = c.device_code)
                                           THEN 'gb28181:' || c.code::text END)
          FROM vms.inspection_scope_channels(p.scope) s JOIN vms.channel c ON c.code = s;
        GET DIAGNOSTICS n = ROW_COUNT;
        UPDATE vms.inspection_run SET channels = n, finished_at = CASE WHEN n = 0 THEN now() END WHERE id = rid;
        UPDATE vms.inspection_plan
           SET next_run_at = CASE WHEN p.cron IS NOT NULL THEN vms.cron_next(p.cron)
                                  ELSE greatest(p.next_run_at + make_interval(secs => p.every_s), now()) END
         WHERE id = p.id;
        total := total + n;
      EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS why = MESSAGE_TEXT;
        INSERT INTO vms.inspection_run (plan_id, finished_at, error) VALUES (p.id, now(), why);
        UPDATE vms.inspection_plan SET next_run_at = now() + make_interval(secs => coalesce(p.every_s, 3600))
         WHERE id = p.id;
        RAISE WARNING 'inspection plan "%" could not start a round: %', p.name, why
            USING HINT = 'Correct the plan (vms.inspection_plan); the other plans are not affected.';
      END;
    END LOOP;
    RETURN total;
END $$;
COMMENT ON FUNCTION vms._inspection_schedule() IS 'internal: start rounds of due plans (run by the inspector workers)';

CREATE OR REPLACE FUNCTION vms._inspection_task_fail(task bigint, why text) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    t vms.inspection_task;
BEGIN
    UPDATE vms.inspection_task k SET state = 'failed', error = why, finished_at = now()
     WHERE k.id = task AND k.state IN ('pending', 'running')
    RETURNING * INTO t;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE vms.inspection_run r
       SET failed = r.failed + 1,
           finished_at = CASE WHEN NOT EXISTS (SELECT 1 FROM vms.inspection_task k WHERE k.run_id = r.id
                                                  AND k.state NOT IN ('done', 'failed')) THEN now() END
     WHERE r.id = t.run_id;
    RAISE WARNING 'inspection task % (channel %) failed: %', t.id, t.channel_code, why;
END $$;
COMMENT ON FUNCTION vms._inspection_task_fail(bigint, text) IS
    'internal: a task whose plan is not usable fails alone, with its reason, counted in its round';

CREATE OR REPLACE FUNCTION vms._inspection_claim(worker_name text)
    RETURNS TABLE (task_id bigint, channel_code text, source text, profile text, th_names text[], th_values float8[],
                   sample_seconds float8, sample_frames integer, timeout_ms integer, baseline bytea)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    t vms.inspection_task;
    p vms.inspection_plan;
    s record;
    names text[];
    vals float8[];
    why text;
BEGIN
  LOOP
    SELECT * INTO t FROM vms.inspection_task k
     WHERE (k.state = 'pending'
            OR (k.state = 'running' AND k.claimed_at < now() - make_interval(secs => 2 * (
                    SELECT pl.timeout_ms FROM vms.inspection_plan pl WHERE pl.id = k.plan_id) / 1000.0)))
       AND (SELECT count(*) FROM vms.inspection_task r
             WHERE r.plan_id = k.plan_id AND r.state = 'running'
               AND r.claimed_at >= now() - interval '10 min') <
           (SELECT pl.concurrency FROM vms.inspection_plan pl WHERE pl.id = k.plan_id)
     ORDER BY k.id LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE vms.inspection_task SET state = 'running', worker = worker_name, claimed_at = now()
     WHERE id = t.id;
    SELECT * INTO p FROM vms.inspection_plan WHERE id = t.plan_id;
    BEGIN
        s := vms._inspection_settings(p);
        IF s.profile IS NULL OR s.profile NOT IN ('strict', 'normal', 'loose') THEN
            RAISE EXCEPTION 'unknown profile "%"', s.profile USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM vms._inspection_check_thresholds(s.thresholds, 'the thresholds in force');
        names := ARRAY(SELECT k FROM jsonb_object_keys(s.thresholds) k ORDER BY k);
        vals := ARRAY(SELECT (s.thresholds ->> k)::float8 FROM jsonb_object_keys(s.thresholds) k ORDER BY k);
        EXIT;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS why = MESSAGE_TEXT;
        PERFORM vms._inspection_task_fail(t.id, format('plan "%s" is not usable: %s', p.name, why));
    END;
  END LOOP;
    RETURN QUERY
    SELECT t.id, t.channel_code::text, t.source, s.profile, names, vals,
           p.sample_seconds::float8, p.sample_frames, p.timeout_ms,
           CASE WHEN 'scene_change' = ANY (p.checks) THEN
                (SELECT sn.jpeg FROM vms.snapshot sn WHERE sn.channel_code = t.channel_code AND sn.is_baseline) END;
END $$;
COMMENT ON FUNCTION vms._inspection_claim(text) IS 'internal: an inspector worker takes a due task (SKIP LOCKED, per-plan concurrency)';

CREATE OR REPLACE FUNCTION vms._inspection_record(task bigint, result jsonb, jpeg bytea) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    t vms.inspection_task;
    p vms.inspection_plan;
    v_checks jsonb := coalesce(result -> 'checks', '{}');
    v_stream_ok boolean;
    v_image_ok boolean;
    bad text[];
    snap bigint;
    qid bigint;
    c text;
BEGIN
    SELECT * INTO t FROM vms.inspection_task WHERE id = task FOR UPDATE;
    IF NOT FOUND OR t.state IN ('done', 'failed') THEN
        RETURN NULL;
    END IF;
    SELECT * INTO p FROM vms.inspection_plan WHERE id = t.plan_id;
    v_stream_ok := NOT coalesce((v_checks #>> '{stream,abnormal}')::boolean, true);
    v_image_ok := v_stream_ok AND NOT coalesce((v_checks #>> '{signal_loss,abnormal}')::boolean, false)
                              AND NOT coalesce((v_checks #>> '{black_screen,abnormal}')::boolean, false);
    bad := ARRAY(SELECT k FROM jsonb_each(v_checks) e(k, v)
                  WHERE (v ->> 'abnormal')::boolean AND k = ANY (p.checks) ORDER BY k);
    IF jpeg IS NOT NULL AND length(jpeg) > 0 THEN
        INSERT INTO vms.snapshot (channel_code, jpeg, is_baseline)
        VALUES (t.channel_code, jpeg,
                v_image_ok AND cardinality(bad) = 0
                AND NOT EXISTS (SELECT 1 FROM vms.snapshot s WHERE s.channel_code = t.channel_code AND s.is_baseline))
        RETURNING id INTO snap;
    END IF;
    INSERT INTO vms.quality_result (run_id, task_id, channel_code, profile, stream_ok, image_ok, abnormal, checks, sample, snapshot_id)
    VALUES (t.run_id, t.id, t.channel_code, coalesce(result ->> 'profile', p.profile), v_stream_ok, v_image_ok, bad,
            v_checks, result - 'checks', snap)
    RETURNING id INTO qid;
    FOREACH c IN ARRAY p.checks LOOP
        IF c = ANY (bad) THEN
            PERFORM vms.alarm_raise(t.channel_code, c, vms.inspection_alarm_level(c), 'inspection',
                                    jsonb_build_object('metric', v_checks #> ARRAY[c, 'metric'],
                                                       'detail', v_checks #>> ARRAY[c, 'detail'], 'result', qid));
        ELSIF (v_checks #>> ARRAY[c, 'abnormal']) = 'false' THEN
            PERFORM vms.alarm_clear(t.channel_code, c, 'inspection found it normal again');
        END IF;
    END LOOP;
    UPDATE vms.inspection_task SET state = 'done', finished_at = now() WHERE id = t.id;
    UPDATE vms.inspection_run r
       SET done = r.done + 1, stream_ok = r.stream_ok + v_stream_ok::int, image_ok = r.image_ok + v_image_ok::int,
           abnormal = r.abnormal + (cardinality(bad) > 0)::int,
           finished_at = CASE WHEN NOT EXISTS (SELECT 1 FROM vms.inspection_task k WHERE k.run_id = r.id
                                                  AND k.state NOT IN ('done', 'failed') AND k.id <> t.id) THEN now() END
     WHERE r.id = t.run_id;
    RETURN qid;
END $$;
COMMENT ON FUNCTION vms._inspection_record(bigint, jsonb, bytea) IS
    'internal: store an inspection result and its snapshot, raise/clear alarms, count it in its round';

CREATE OR REPLACE VIEW vms.inspection_run_rates AS
SELECT r.id AS run_id, p.name AS plan, r.started_at, r.finished_at, r.channels, r.done,
       round(r.stream_ok::numeric / nullif(r.done, 0), 4) AS stream_success_rate,
       round(r.image_ok::numeric / nullif(r.done, 0), 4) AS image_rate,
       r.abnormal, r.failed, r.error
  FROM vms.inspection_run r JOIN vms.inspection_plan p ON p.id = r.plan_id;
COMMENT ON VIEW vms.inspection_run_rates IS
    'per round: 取流成功率 stream_success_rate and 出图率 image_rate over the channels done; failed tasks and a round that could not start, with the error';

-- Secrets bound to their row and column (AEAD associated data).  The
-- one-argument functions become two-argument ones (the context defaults to
-- ''); 0.1.0 values (V1, no context) are re-encrypted for their rows here
-- when vms.secret_key_file is readable, else they keep working where they
-- are (read, never written again) and a WARNING says how to finish.
DROP FUNCTION vms.secret_encrypt(text);
DROP FUNCTION vms.secret_decrypt(bytea);
CREATE FUNCTION vms.secret_encrypt(plain text, context text DEFAULT '') RETURNS bytea
    AS 'MODULE_PATHNAME', 'vms_secret_encrypt' LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION vms.secret_decrypt(secret bytea, context text DEFAULT '') RETURNS text
    AS 'MODULE_PATHNAME', 'vms_secret_decrypt' LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION vms.secret_decrypt(bytea, text) FROM PUBLIC;
COMMENT ON FUNCTION vms.secret_encrypt(text, text) IS
    'encrypt a secret with the key in vms.secret_key_file (SM4-GCM, or AES-256-GCM without SM4), bound to its context: where it will be stored, as ''table.column:key''';
COMMENT ON FUNCTION vms.secret_decrypt(bytea, text) IS
    'decrypt a stored secret read from its context (''table.column:key'', as given to vms.secret_encrypt); superusers; workers use the C API';
COMMENT ON COLUMN vms.viid_upstream.password_enc IS
    'the password, vms.secret_encrypt(password, ''viid_upstream.password_enc:'' || name): it decrypts only in its own row';

CREATE OR REPLACE FUNCTION vms._viid_upstream_secret_check() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.password_enc IS DISTINCT FROM OLD.password_enc THEN
        IF substr(NEW.password_enc, 1, 2) IS DISTINCT FROM 'V2'::bytea THEN
            RAISE EXCEPTION 'the password of upstream "%" is not encrypted for its row', NEW.name
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use vms.viid_add_upstream or vms.viid_alter_upstream, or vms.secret_encrypt(password, ''viid_upstream.password_enc:'' || name).';
        END IF;
    ELSIF NEW.name IS DISTINCT FROM OLD.name THEN
        RAISE EXCEPTION 'renaming upstream "%" needs its password again', OLD.name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The password is encrypted for the upstream''s name.',
                  HINT = 'Set password_enc = vms.secret_encrypt(password, ''viid_upstream.password_enc:'' || new name) in the same UPDATE.';
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._viid_upstream_secret_check() IS
    'internal: an upstream password is written in the bound form (V2) for its row; a rename re-encrypts it';
CREATE TRIGGER viid_upstream_secret_check BEFORE INSERT OR UPDATE ON vms.viid_upstream
    FOR EACH ROW EXECUTE FUNCTION vms._viid_upstream_secret_check();

CREATE OR REPLACE FUNCTION vms.viid_add_upstream(name text, base_url text, system_id vms.gbcode, username text,
                                      password text, options jsonb DEFAULT '{}')
    RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF base_url IS NULL OR base_url !~ '^https?://[^/\s]+(/[^\s]*)?$' OR base_url ~ '/$' THEN
        RAISE EXCEPTION 'upstream base URL "%" is not usable', base_url
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give http(s)://host[:port][/prefix] without a trailing slash; /VIID/... is appended.';
    END IF;
    IF coalesce(password, '') = '' OR length(password) > 256 THEN
        RAISE EXCEPTION 'upstream password must have 1 to 256 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO vms.viid_upstream (name, base_url, system_id, username, password_enc, options)
    VALUES (name, base_url, system_id, username, vms.secret_encrypt(password, 'viid_upstream.password_enc:' || name),
            vms._viid_check_options(options));
    INSERT INTO vms.viid_session (upstream) VALUES (name);
    PERFORM vms._wake_worker('viid');
END $$;
COMMENT ON FUNCTION vms.viid_add_upstream(text, text, vms.gbcode, text, text, jsonb) IS
    'add an upstream view library (base URL without /VIID, our system id, digest user and password, options)';

CREATE OR REPLACE FUNCTION vms.viid_alter_upstream(name text, base_url text DEFAULT NULL, username text DEFAULT NULL,
                                        password text DEFAULT NULL, options jsonb DEFAULT NULL,
                                        enabled boolean DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE vms.viid_upstream u SET
        base_url = coalesce(viid_alter_upstream.base_url, u.base_url),
        username = coalesce(viid_alter_upstream.username, u.username),
        password_enc = CASE WHEN viid_alter_upstream.password IS NOT NULL
                            THEN vms.secret_encrypt(viid_alter_upstream.password,
                                                    'viid_upstream.password_enc:' || u.name)
                            ELSE u.password_enc END,
        options = CASE WHEN viid_alter_upstream.options IS NULL THEN u.options
                       ELSE vms._viid_check_options(u.options || viid_alter_upstream.options) END,
        enabled = coalesce(viid_alter_upstream.enabled, u.enabled)
     WHERE u.name = viid_alter_upstream.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'upstream "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM vms._wake_worker('viid');
END $$;
COMMENT ON FUNCTION vms.viid_alter_upstream(text, text, text, text, jsonb, boolean) IS 'change an upstream; options are merged';

DO $$
DECLARE
    n bigint;
BEGIN
    UPDATE vms.viid_upstream
       SET password_enc = vms.secret_encrypt(vms.secret_decrypt(password_enc), 'viid_upstream.password_enc:' || name)
     WHERE substr(password_enc, 1, 2) = 'V1'::bytea;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        RAISE NOTICE 're-encrypted % upstream passwords, each bound to its row', n;
    END IF;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'upstream passwords are left in the 0.1.0 form: %', SQLERRM
        USING DETAIL = 'They keep working in their own rows; values copied between rows are not refused until re-encrypted.',
              HINT = 'With vms.secret_key_file set, run as a superuser: UPDATE vms.viid_upstream SET password_enc = vms.secret_encrypt(vms.secret_decrypt(password_enc), ''viid_upstream.password_enc:'' || name) WHERE substr(password_enc, 1, 2) = ''V1''::bytea;';
END $$;

-- issue 12: permission policy
-- Keep this section last: its privilege statements (the same as
-- extension/sql/99_privileges.sql) cover every function created above.  A
-- section added after it revokes EXECUTE from PUBLIC on its own new
-- functions and grants them as 99_privileges.sql does.
-- Whom definer functions act for.

CREATE FUNCTION vms._acting_role() RETURNS oid
    AS 'MODULE_PATHNAME', 'vms_acting_role' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION vms._acting_role() IS
    'internal: the role this session acts as (SET ROLE, else the session user), whom definer functions act for';
-- Helpers that callers run with their own rights are public, not internal.
ALTER FUNCTION vms._convert_point(geometry, text, text) RENAME TO convert_point;
COMMENT ON FUNCTION vms.convert_point(geometry, text, text) IS 'a WGS-84-stored point converted between WGS84, CGCS2000, GCJ02 and BD09 (SRID 4326)';
ALTER FUNCTION vms._ledger_import_rows(bigint) RENAME TO ledger_import_rows;
COMMENT ON FUNCTION vms.ledger_import_rows(bigint) IS 'validate and load the template rows staged in pg_temp._ledger_csv (line_no, fields, error) for an import job; the second half of vms.ledger_import';
CREATE OR REPLACE FUNCTION vms.ledger_import(data bytea, encoding text DEFAULT 'auto', source text DEFAULT NULL)
    RETURNS vms.import_job
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    job_id bigint;
    job vms.import_job;
BEGIN
    INSERT INTO vms.import_job (source, encoding) VALUES (coalesce(source, 'upload'), encoding)
    RETURNING id INTO job_id;
    -- Big imports stage rows in temp tables; 8 MB of local buffers makes
    -- every pass over them go to disk.  The setting can only grow before the
    -- session's first temp table, so a later import keeps what it has.
    IF current_setting('temp_buffers') = '8MB' AND to_regclass('pg_temp._ledger_csv') IS NULL THEN
        BEGIN
            PERFORM set_config('temp_buffers', '512MB', false);
        EXCEPTION WHEN invalid_parameter_value OR cant_change_runtime_param THEN
            NULL;
        END;
    END IF;
    IF to_regclass('pg_temp._ledger_csv') IS NOT NULL THEN
        DROP TABLE _ledger_csv;   -- left by an earlier failed import in this session
    END IF;
    CREATE TEMP TABLE _ledger_csv ON COMMIT DROP AS SELECT * FROM vms.csv_rows(data, encoding);
    job := vms.ledger_import_rows(job_id);
    DROP TABLE _ledger_csv;
    RETURN job;
END $$;
CREATE OR REPLACE FUNCTION vms.ledger_import_file(path text, encoding text DEFAULT 'auto')
    RETURNS vms.import_job
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    job_id bigint;
    job vms.import_job;
BEGIN
    INSERT INTO vms.import_job (source, encoding) VALUES (path, encoding) RETURNING id INTO job_id;
    -- Big imports stage rows in temp tables; 8 MB of local buffers makes
    -- every pass over them go to disk.  The setting can only grow before the
    -- session's first temp table, so a later import keeps what it has.
    IF current_setting('temp_buffers') = '8MB' AND to_regclass('pg_temp._ledger_csv') IS NULL THEN
        BEGIN
            PERFORM set_config('temp_buffers', '512MB', false);
        EXCEPTION WHEN invalid_parameter_value OR cant_change_runtime_param THEN
            NULL;
        END;
    END IF;
    IF to_regclass('pg_temp._ledger_csv') IS NOT NULL THEN
        DROP TABLE _ledger_csv;   -- left by an earlier failed import in this session
    END IF;
    CREATE TEMP TABLE _ledger_csv ON COMMIT DROP AS SELECT * FROM vms.csv_rows_file(path, encoding);
    job := vms.ledger_import_rows(job_id);
    DROP TABLE _ledger_csv;
    RETURN job;
END $$;
DROP FUNCTION vms._ledger_import(bigint, bytea, text, text);
-- Definer entry points acting for the role the session acts as.
CREATE OR REPLACE FUNCTION vms.search_points(filter jsonb DEFAULT '{}', lim integer DEFAULT 100, off integer DEFAULT 0)
    RETURNS TABLE (code vms.gbcode, name text, alias text, address text, point_type text, place_type text,
                   unit_id bigint, online boolean, lon float8, lat float8, distance_m float8)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path FROM CURRENT
    BEGIN ATOMIC
        SELECT * FROM vms._search_points_as(vms._acting_role(), filter, lim, off);
    END;
ALTER FUNCTION vms.search_save(text, jsonb) SECURITY DEFINER;
CREATE OR REPLACE FUNCTION vms.channel_tiles(z integer, x integer, y integer, query_params json DEFAULT '{}')
    RETURNS bytea
    LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path FROM CURRENT
    RETURN vms._channel_tiles_as(vms._acting_role(), z, x, y);
CREATE OR REPLACE FUNCTION vms.cameras_seeing(target geometry, max_range_m float8 DEFAULT 500)
    RETURNS TABLE (code vms.gbcode, name text, distance_m float8, bearing float8)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT c.code, c.name, d.dist, d.bearing
      FROM vms.channel c
     CROSS JOIN LATERAL (SELECT ST_DistanceSphere(c.geom, target) AS dist,
                                degrees(ST_Azimuth(c.geom, target)) AS bearing) d
     WHERE c.geom && vms._metre_box(target, max_range_m)
       AND vms.channel_visible_to(vms._acting_role(), c.code, c.civil_code)
       AND c.fov_range_m IS NOT NULL AND d.dist <= least(c.fov_range_m, max_range_m)
       AND (c.fov_angle >= 360 OR d.dist = 0
            OR (c.azimuth IS NOT NULL AND c.fov_angle IS NOT NULL
                AND abs(mod((d.bearing - c.azimuth)::numeric + 540, 360) - 180) <= c.fov_angle / 2))
     ORDER BY d.dist
$$;
CREATE OR REPLACE FUNCTION vms.cameras_seeing_area(area geometry, max_range_m float8 DEFAULT 500)
    RETURNS TABLE (code vms.gbcode, name text, seen_share float8)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT c.code, c.name,
           ST_Area(ST_Intersection(k.cone, area)::geography) / nullif(ST_Area(area::geography), 0)
      FROM vms.channel c
     CROSS JOIN LATERAL (SELECT vms.view_cone(c.geom, c.azimuth, c.fov_angle, least(c.fov_range_m, max_range_m)) AS cone) k
     WHERE c.geom && vms._metre_box(ST_Envelope(area), max_range_m)
       AND vms.channel_visible_to(vms._acting_role(), c.code, c.civil_code)
       AND k.cone IS NOT NULL AND ST_Intersects(k.cone, area)
     ORDER BY 3 DESC
$$;
CREATE OR REPLACE FUNCTION vms.area_coverage(area geometry, max_range_m float8 DEFAULT 500) RETURNS float8
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT coalesce(ST_Area(ST_Intersection(ST_Union(vms.view_cone(c.geom, c.azimuth, c.fov_angle,
                                                                   least(c.fov_range_m, max_range_m))), area)::geography)
                    / nullif(ST_Area(area::geography), 0), 0)
      FROM vms.channel c
     WHERE c.geom && vms._metre_box(ST_Envelope(area), max_range_m)
       AND vms.channel_visible_to(vms._acting_role(), c.code, c.civil_code)
       AND ST_Intersects(vms.view_cone(c.geom, c.azimuth, c.fov_angle, least(c.fov_range_m, max_range_m)), area)
$$;
CREATE OR REPLACE FUNCTION vms.can(action text, channel vms.gbcode) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT
    RETURN CASE WHEN action <> ALL ('{view_live,playback,download,ptz,snapshot,manage_ledger,export}')
                THEN vms._raise_unknown_action(action)
                ELSE vms._can_for(pg_catalog.pg_get_userbyid(vms._acting_role()), action, channel) END;
COMMENT ON FUNCTION vms.can(text, vms.gbcode) IS 'may the role this session acts as (SET ROLE, else the session user) do this action (view_live, playback, download, ptz, snapshot, manage_ledger, export) on the channel now';
CREATE OR REPLACE FUNCTION vms.can_manage(code vms.gbcode, civil_code text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT vms._can_for(pg_catalog.pg_get_userbyid(vms._acting_role()), 'manage_ledger', code, civil_code)
$$;
COMMENT ON FUNCTION vms.can_manage(vms.gbcode, text) IS 'may the role this session acts as write this channel (manage_ledger); the write policies of vms.channel';
CREATE OR REPLACE FUNCTION vms.exercise_right(action text, channel vms.gbcode, detail jsonb DEFAULT '{}') RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    acting name := pg_catalog.pg_get_userbyid(vms._acting_role());
BEGIN
    IF NOT vms._can_for(acting, action, channel) THEN
        PERFORM vms.audit('denied_' || action, channel::text, detail);
        RAISE EXCEPTION 'permission denied to % channel %', replace(action, '_', ' '), channel
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Ask for access with vms.request_access().';
    END IF;
    UPDATE vms.access_grant g SET last_used_at = now()
     WHERE g.revoked_at IS NULL AND pg_has_role(acting, g.grantee, 'MEMBER') AND action = ANY (g.actions);
    RETURN vms.audit(action, channel::text, detail);
END $$;
ALTER FUNCTION vms.export_ledger() SECURITY DEFINER;
COMMENT ON FUNCTION vms.export_ledger() IS 'the ledger template rows the role this session acts as may export; the export is audited';
-- One way to pin search_path: FROM CURRENT, i.e. vms, the schema of PostGIS
-- (whichever it is), pg_temp, as CREATE/ALTER EXTENSION set it.
ALTER FUNCTION vms._can_for(name, text, vms.gbcode, text) SET search_path FROM CURRENT;
ALTER FUNCTION vms._check_scope(text, text, text[], smallint, timestamptz, timestamptz) SET search_path FROM CURRENT;
ALTER FUNCTION vms.grant_access(name, text, text, text[], smallint, timestamptz, timestamptz, text) SET search_path FROM CURRENT;
ALTER FUNCTION vms.revoke_access(bigint, text) SET search_path FROM CURRENT;
ALTER FUNCTION vms.request_access(text, text, text[], smallint, text, timestamptz, timestamptz) SET search_path FROM CURRENT;
ALTER FUNCTION vms.approve_request(bigint, text) SET search_path FROM CURRENT;
ALTER FUNCTION vms.reject_request(bigint, text) SET search_path FROM CURRENT;
ALTER FUNCTION vms._audit_row() SET search_path FROM CURRENT;
ALTER FUNCTION vms.audit(text, text, jsonb) SET search_path FROM CURRENT;
ALTER FUNCTION vms.audit_verify() SET search_path FROM CURRENT;
-- every object has a comment
COMMENT ON FUNCTION vms.gbcode_in(cstring) IS 'gbcode input: 20 ASCII digits (full-width digits, separators and inner spaces are rejected)';
COMMENT ON FUNCTION vms.gbcode_out(vms.gbcode) IS 'gbcode output: the 20 digits';
COMMENT ON FUNCTION vms.gbcode_recv(internal) IS 'gbcode binary input (12 bytes)';
COMMENT ON FUNCTION vms.gbcode_send(vms.gbcode) IS 'gbcode binary output (12 bytes)';
COMMENT ON FUNCTION vms.gbcode_lt(vms.gbcode, vms.gbcode) IS 'implements < for gbcode (text order)';
COMMENT ON FUNCTION vms.gbcode_le(vms.gbcode, vms.gbcode) IS 'implements <= for gbcode (text order)';
COMMENT ON FUNCTION vms.gbcode_eq(vms.gbcode, vms.gbcode) IS 'implements = for gbcode';
COMMENT ON FUNCTION vms.gbcode_ne(vms.gbcode, vms.gbcode) IS 'implements <> for gbcode';
COMMENT ON FUNCTION vms.gbcode_ge(vms.gbcode, vms.gbcode) IS 'implements >= for gbcode (text order)';
COMMENT ON FUNCTION vms.gbcode_gt(vms.gbcode, vms.gbcode) IS 'implements > for gbcode (text order)';
COMMENT ON FUNCTION vms.gbcode_cmp(vms.gbcode, vms.gbcode) IS 'btree comparison of two gbcodes: -1, 0 or 1';
COMMENT ON FUNCTION vms.gbcode_sortsupport(internal) IS 'btree sort support for gbcode';
COMMENT ON FUNCTION vms.gbcode_hash(vms.gbcode) IS 'hash of a gbcode (hash indexes, hash joins)';
COMMENT ON FUNCTION vms.gbcode_hash_extended(vms.gbcode, bigint) IS 'seeded 64-bit hash of a gbcode (hash partitioning)';
COMMENT ON OPERATOR pg_catalog.< (vms.gbcode, vms.gbcode) IS 'less than, in the order of the codes'' text';
COMMENT ON OPERATOR pg_catalog.<= (vms.gbcode, vms.gbcode) IS 'less than or equal, in the order of the codes'' text';
COMMENT ON OPERATOR pg_catalog.= (vms.gbcode, vms.gbcode) IS 'equal';
COMMENT ON OPERATOR pg_catalog.<> (vms.gbcode, vms.gbcode) IS 'not equal';
COMMENT ON OPERATOR pg_catalog.>= (vms.gbcode, vms.gbcode) IS 'greater than or equal, in the order of the codes'' text';
COMMENT ON OPERATOR pg_catalog.> (vms.gbcode, vms.gbcode) IS 'greater than, in the order of the codes'' text';
COMMENT ON OPERATOR FAMILY vms.gbcode_ops USING btree IS 'btree operators of gbcode';
COMMENT ON OPERATOR CLASS vms.gbcode_ops USING btree IS 'default btree operator class of gbcode';
COMMENT ON OPERATOR FAMILY vms.gbcode_hash_ops USING hash IS 'hash operators of gbcode';
COMMENT ON OPERATOR CLASS vms.gbcode_hash_ops USING hash IS 'default hash operator class of gbcode';
COMMENT ON CAST (text AS vms.gbcode) IS 'parse 20 digits (assignment: INSERT of text works)';
COMMENT ON CAST (vms.gbcode AS text) IS 'the 20 digits';
COMMENT ON CAST (varchar AS vms.gbcode) IS 'parse 20 digits (assignment: INSERT of varchar works)';
COMMENT ON CAST (vms.gbcode AS varchar) IS 'the 20 digits';
-- Privileges (extension/sql/99_privileges.sql); the table grants are unchanged.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT d.objid::regprocedure FROM pg_catalog.pg_depend d
              WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'e'
                AND d.refclassid = 'pg_catalog.pg_extension'::regclass
                AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'vms')
              ORDER BY d.objid LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;

-- PUBLIC: the type and pure functions
GRANT EXECUTE ON FUNCTION
    vms.gbcode_in(cstring), vms.gbcode_out(vms.gbcode), vms.gbcode_recv(internal), vms.gbcode_send(vms.gbcode),
    vms.gbcode_eq(vms.gbcode, vms.gbcode), vms.gbcode_ne(vms.gbcode, vms.gbcode),
    vms.gbcode_lt(vms.gbcode, vms.gbcode), vms.gbcode_le(vms.gbcode, vms.gbcode),
    vms.gbcode_gt(vms.gbcode, vms.gbcode), vms.gbcode_ge(vms.gbcode, vms.gbcode),
    vms.gbcode_cmp(vms.gbcode, vms.gbcode), vms.gbcode_sortsupport(internal),
    vms.gbcode_hash(vms.gbcode), vms.gbcode_hash_extended(vms.gbcode, bigint),
    vms.gbcode_make(text, integer, integer, integer, integer), vms.gbcode_parse_error(text),
    vms.gbcode_check(vms.gbcode), vms.gbcode_problems(vms.gbcode), vms.gbcode_centre(vms.gbcode),
    vms.gbcode_province(vms.gbcode), vms.gbcode_city(vms.gbcode), vms.gbcode_county(vms.gbcode),
    vms.gbcode_industry(vms.gbcode), vms.gbcode_network(vms.gbcode), vms.gbcode_type(vms.gbcode),
    vms.gbcode_type_name(vms.gbcode), vms.gbcode_serial(vms.gbcode), vms.gbcode_in_region(vms.gbcode, text),
    vms.gbcode_region_lower(text), vms.gbcode_region_upper(text),
    vms.gbcode_type_table(), vms.gbcode_industry_table(),
    vms.coord_convert(float8, float8, text, text), vms.to_wgs84(float8, float8, text),
    vms.convert_point(geometry, text, text),
    vms.wgs84_to_gcj02(geometry), vms.gcj02_to_wgs84(geometry), vms.gcj02_to_bd09(geometry),
    vms.bd09_to_gcj02(geometry), vms.wgs84_to_bd09(geometry), vms.bd09_to_wgs84(geometry),
    vms.view_cone(geometry, float8, float8, float8, integer),
    vms.text_grams(text), vms.keyword_grams(text), vms.text_contains(text, text),
    vms.channel_search_text(text, text, text, text),
    vms.try_float8(text), vms.is_ip(text), vms.governed_columns(regclass),
    vms.chain_digest(bytea), vms.chain_digest_name(), vms.secret_algorithm(),
    vms.viid_id_problems(text), vms.viid_object_id(text, integer, integer),
    vms.viid_image_id(vms.gbcode, integer, timestamp, integer), vms.inspection_alarm_level(text)
  TO PUBLIC;
-- PUBLIC: row-level security (run by whoever reads or writes the tables) and asking for access
GRANT EXECUTE ON FUNCTION
    vms.channel_visible(vms.gbcode, text), vms.code_visible(vms.gbcode), vms.can_manage(vms.gbcode, text),
    vms.request_access(text, text, text[], smallint, text, timestamptz, timestamptz)
  TO PUBLIC;
-- PUBLIC: run with the caller's own table privileges and row-level security
GRANT EXECUTE ON FUNCTION
    vms.catalog_subtree(vms.gbcode), vms.tag_subtree(bigint), vms.tag_resolve(jsonb),
    vms.tag_create(text, text, text), vms.tag_assign(vms.gbcode, text, text), vms.tag_unassign(vms.gbcode, text),
    vms.alarm_raise(vms.gbcode, text, smallint, text, jsonb), vms.alarm_acknowledge(bigint),
    vms.alarm_clear(vms.gbcode, text, text), vms.clear_override(regclass, vms.gbcode, text),
    vms.channel_view_cone(vms.gbcode),
    vms.csv_rows(bytea, text), vms.csv_rows_file(text, text),
    vms.ledger_import(bytea, text, text), vms.ledger_import_file(text, text), vms.ledger_import_rows(bigint)
  TO PUBLIC;

-- vms_analyst: search, tiles, cones (SECURITY DEFINER: they return only what
-- vms.channel_visible_to allows the role the session acts as), rights, export
GRANT EXECUTE ON FUNCTION
    vms.search_points(jsonb, integer, integer), vms.search_geojson(jsonb, integer, integer),
    vms.search_save(text, jsonb), vms.search_saved(text, integer, integer), vms.search_rerun(bigint),
    vms.channel_tiles(integer, integer, integer, json), vms.channel_visible_to(oid, vms.gbcode, text),
    vms.cameras_seeing(geometry, float8), vms.cameras_seeing_area(geometry, float8),
    vms.area_coverage(geometry, float8),
    vms.can(text, vms.gbcode), vms.exercise_right(text, vms.gbcode, jsonb),
    vms.playback(vms.gbcode, timestamptz, timestamptz), vms.download(vms.gbcode, timestamptz, timestamptz),
    vms.ptz(vms.gbcode, text), vms.view_live(vms.gbcode), vms.snapshot(vms.gbcode),
    vms.export_ledger()
  TO vms_analyst;
GRANT EXECUTE ON FUNCTION
    vms.grant_access(name, text, text, text[], smallint, timestamptz, timestamptz, text),
    vms.revoke_access(bigint, text)
  TO vms_grant_admin;
GRANT EXECUTE ON FUNCTION vms.approve_request(bigint, text), vms.reject_request(bigint, text) TO vms_approver;
GRANT EXECUTE ON FUNCTION vms.audit_verify() TO vms_auditor;
GRANT EXECUTE ON FUNCTION vms.review_unused_grants(integer), vms.review_expiring_grants(interval)
  TO vms_grant_admin, vms_approver, vms_auditor;


-- issue 11: deterministic tests
-- the stale rule names the day in ISO form (YYYY-MM-DD), whatever the
-- session's DateStyle (it printed 10-18-2025 under "Postgres, MDY")
CREATE OR REPLACE FUNCTION vms.governance_findings(rule vms.governance_rule, scope text DEFAULT NULL)
    RETURNS TABLE (channel_code vms.gbcode, detail text)
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    p jsonb := rule.params;
BEGIN
    CASE rule.kind
    WHEN 'required_fields' THEN
        RETURN QUERY EXECUTE format($q$
        SELECT code, 'missing: ' || array_to_string(missing, ', ')
          FROM (SELECT c.code, %s AS missing FROM vms.channel c
                 WHERE ($1 IS NULL OR c.civil_code LIKE $1 || '%%')
                   AND ($2 IS NULL OR c.point_type = ANY ($2))) m
         WHERE cardinality(missing) > 0 $q$,
            vms._missing_fields_expr(ARRAY(SELECT jsonb_array_elements_text(p -> 'fields'))))
        USING scope, CASE WHEN p ? 'point_types' THEN ARRAY(SELECT jsonb_array_elements_text(p -> 'point_types')) END;
    WHEN 'code_role' THEN
        RETURN QUERY
        SELECT c.code, concat_ws('; ',
                   CASE WHEN vms.gbcode_type(c.code) NOT IN (SELECT (jsonb_array_elements_text(p -> 'types'))::int)
                        THEN format('type code %s is not a camera type', lpad(vms.gbcode_type(c.code)::text, 3, '0')) END,
                   (SELECT string_agg(k.detail, '; ') FROM vms.gbcode_check(c.code) k))
          FROM vms.channel c
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
           AND (vms.gbcode_type(c.code) NOT IN (SELECT (jsonb_array_elements_text(p -> 'types'))::int)
                OR cardinality(vms.gbcode_problems(c.code)) > 0);
    WHEN 'coordinates' THEN
        RETURN QUERY
        SELECT c.code,
               CASE WHEN c.geom IS NULL THEN 'location missing'
                    WHEN ST_X(c.geom) = 0 AND ST_Y(c.geom) = 0 THEN 'location is (0, 0)'
                    WHEN ST_X(c.geom) BETWEEN 3.8 AND 53.6 AND ST_Y(c.geom) BETWEEN 73.5 AND 135.1
                        THEN format('longitude and latitude look swapped (%s, %s)', ST_X(c.geom), ST_Y(c.geom))
                    ELSE format('location (%s, %s) is outside China', ST_X(c.geom), ST_Y(c.geom)) END
          FROM vms.channel c
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
           AND (c.geom IS NULL
                OR NOT (ST_X(c.geom) BETWEEN 73.5 AND 135.1 AND ST_Y(c.geom) BETWEEN 3.8 AND 53.6));
    WHEN 'civil_code_mismatch' THEN
        -- the most specific region whose boundary covers the point
        RETURN QUERY
        SELECT c.code, format('recorded civil code %s, but the location lies in %s (%s)', c.civil_code, r.civil_code, r.name)
          FROM vms.channel c
          CROSS JOIN LATERAL (SELECT g.civil_code, g.name FROM vms.region g
                               WHERE g.boundary IS NOT NULL AND ST_Covers(g.boundary, c.geom)
                               ORDER BY g.level DESC LIMIT 1) r
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
           AND c.geom IS NOT NULL AND c.civil_code IS NOT NULL
           AND NOT (r.civil_code LIKE c.civil_code || '%' OR c.civil_code LIKE r.civil_code || '%');
    WHEN 'outside_region' THEN
        RETURN QUERY
        SELECT c.code, format('location is %s m outside region %s (%s)',
                              round(ST_Distance(g.boundary::geography, c.geom::geography)), g.civil_code, g.name)
          FROM vms.channel c
          JOIN vms.region g ON g.civil_code = c.civil_code
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
           AND g.boundary IS NOT NULL AND c.geom IS NOT NULL AND NOT ST_Covers(g.boundary, c.geom);
    WHEN 'same_point' THEN
        RETURN QUERY
        SELECT c.code, format('%s channels share the point %s', s.n, ST_AsText(c.geom))
          FROM vms.channel c
          JOIN (SELECT geom AS g, count(*) AS n FROM vms.channel
                 WHERE geom IS NOT NULL AND (scope IS NULL OR civil_code LIKE scope || '%')
                 GROUP BY geom HAVING count(*) >= coalesce((p ->> 'min_count')::int, 3)) s
            ON c.geom = s.g
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%');
    WHEN 'duplicate_name' THEN
        RETURN QUERY
        SELECT c.code, format('name "%s" is used by %s channels of the same unit', c.name, d.n)
          FROM vms.channel c
          JOIN (SELECT unit_id, name, count(*) AS n FROM vms.channel
                 WHERE unit_id IS NOT NULL AND (scope IS NULL OR civil_code LIKE scope || '%')
                 GROUP BY unit_id, name HAVING count(*) > 1) d
            ON d.unit_id = c.unit_id AND d.name = c.name
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%');
    WHEN 'naming_pattern' THEN
        RETURN QUERY
        SELECT c.code, format('name "%s" does not match %s (e.g. %s)', c.name, np.pattern, coalesce(np.example, '-'))
          FROM vms.channel c
          CROSS JOIN LATERAL (SELECT n.pattern, n.example FROM vms.naming_pattern n
                               WHERE coalesce(c.civil_code, '') LIKE n.civil_prefix || '%'
                               ORDER BY length(n.civil_prefix) DESC LIMIT 1) np
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
           AND c.name !~ np.pattern;
    WHEN 'stale' THEN
        RETURN QUERY
        SELECT c.code, format('not updated since %s', to_char(c.updated_at, 'YYYY-MM-DD'))
          FROM vms.channel c
         WHERE (scope IS NULL OR c.civil_code LIKE scope || '%')
           AND c.updated_at < now() - make_interval(days => coalesce((p ->> 'days')::int, 365));
    END CASE;
END $$;
