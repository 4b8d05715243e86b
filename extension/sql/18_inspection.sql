-- Inspection plans (巡检计划), rounds and results (巡检记录).
--
-- A plan names its channels (regions, catalogue nodes, tags, channels), a
-- schedule (every N seconds, or cron-like), time windows with their own
-- profile and thresholds (e.g. night), the checks that count, and the
-- sample.  When a plan is due, a round (vms.inspection_run) and one task
-- per channel are created; the "vms inspector N" workers claim tasks with
-- FOR UPDATE SKIP LOCKED, sample the stream with FFmpeg outside any
-- transaction, and record each result here, raising and clearing alarms.

-- What the inspector may open for a channel: an rtsp://, rtsps://, http://
-- or https:// address with a host (credentials in the address are allowed),
-- at most 2048 characters, without white space or control characters.  Never
-- a server file or another FFmpeg protocol (file:, concat:, subfile:, pipe:,
-- data: ...); the inspector refuses those again at open time
-- (workers/inspect/inspector.c), for rows forced past this check.
ALTER TABLE vms.channel ADD CONSTRAINT channel_stream_url_check
    CHECK (length(stream_url) <= 2048
           AND stream_url ~ '^(rtsps?|https?)://[^[:space:][:cntrl:]/?#][^[:space:][:cntrl:]]*$');

CREATE TABLE vms.inspection_plan (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    scope           jsonb NOT NULL,
    every_s         integer CHECK (every_s BETWEEN 60 AND 31 * 86400),
    cron            text,
    windows         jsonb NOT NULL DEFAULT '[]',
    checks          text[] NOT NULL,
    profile         text NOT NULL DEFAULT 'normal' CHECK (profile IN ('strict', 'normal', 'loose')),
    thresholds      jsonb NOT NULL DEFAULT '{}',
    sample_seconds  real NOT NULL DEFAULT 2 CHECK (sample_seconds > 0 AND sample_seconds <= 30),
    sample_frames   integer NOT NULL DEFAULT 50 CHECK (sample_frames BETWEEN 1 AND 150),
    timeout_ms      integer NOT NULL DEFAULT 10000 CHECK (timeout_ms BETWEEN 1000 AND 120000),
    concurrency     integer NOT NULL DEFAULT 2 CHECK (concurrency BETWEEN 1 AND 64),
    enabled         boolean NOT NULL DEFAULT true,
    next_run_at     timestamptz NOT NULL DEFAULT now(),
    created_by      text NOT NULL DEFAULT session_user,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((every_s IS NULL) <> (cron IS NULL))
);
COMMENT ON TABLE vms.inspection_plan IS
    'inspection plans (巡检计划): scope, schedule (every_s or cron), time windows, checks, profile, thresholds, sample, concurrency';

CREATE TABLE vms.inspection_run (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan_id      bigint NOT NULL REFERENCES vms.inspection_plan (id) ON DELETE CASCADE,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    channels     integer NOT NULL DEFAULT 0,
    done         integer NOT NULL DEFAULT 0,
    stream_ok    integer NOT NULL DEFAULT 0,
    image_ok     integer NOT NULL DEFAULT 0,
    abnormal     integer NOT NULL DEFAULT 0,
    failed       integer NOT NULL DEFAULT 0,
    error        text
);
CREATE INDEX inspection_run_plan_idx ON vms.inspection_run (plan_id, started_at);
COMMENT ON TABLE vms.inspection_run IS 'one round of a plan over its channels, with its counts';
COMMENT ON COLUMN vms.inspection_run.failed IS 'tasks that failed without a result because the plan was not usable (see inspection_task.error)';
COMMENT ON COLUMN vms.inspection_run.error IS 'why the round could not start (the plan''s scope or schedule is not usable); NULL when it started';

CREATE TABLE vms.inspection_task (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       bigint NOT NULL REFERENCES vms.inspection_run (id) ON DELETE CASCADE,
    plan_id      bigint NOT NULL,
    channel_code vms.gbcode NOT NULL,
    source       text,
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done', 'failed')),
    worker       text,
    claimed_at   timestamptz,
    finished_at  timestamptz,
    error        text
);
CREATE INDEX inspection_task_pending_idx ON vms.inspection_task (id) WHERE state = 'pending';
CREATE INDEX inspection_task_run_idx ON vms.inspection_task (run_id);
COMMENT ON TABLE vms.inspection_task IS 'a channel to inspect in a round; claimed by one inspector worker at a time';
COMMENT ON COLUMN vms.inspection_task.error IS 'state failed: why the task could not be sampled (its plan''s settings are not usable)';

CREATE TABLE vms.snapshot (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_code vms.gbcode NOT NULL,
    taken_at     timestamptz NOT NULL DEFAULT now(),
    jpeg         bytea NOT NULL,
    is_baseline  boolean NOT NULL DEFAULT false
);
CREATE INDEX snapshot_channel_idx ON vms.snapshot (channel_code, taken_at);
CREATE UNIQUE INDEX snapshot_baseline_idx ON vms.snapshot (channel_code) WHERE is_baseline;
COMMENT ON TABLE vms.snapshot IS 'JPEG snapshots taken by inspection; one per channel is the baseline for scene_change';

CREATE TABLE vms.quality_result (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       bigint REFERENCES vms.inspection_run (id) ON DELETE CASCADE,
    task_id      bigint,
    channel_code vms.gbcode NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    profile      text NOT NULL,
    stream_ok    boolean NOT NULL,
    image_ok     boolean NOT NULL,
    abnormal     text[] NOT NULL DEFAULT '{}',
    checks       jsonb NOT NULL,
    sample       jsonb NOT NULL DEFAULT '{}',
    snapshot_id  bigint REFERENCES vms.snapshot (id) ON DELETE SET NULL
);
CREATE INDEX quality_result_channel_idx ON vms.quality_result (channel_code, at DESC);
CREATE INDEX quality_result_run_idx ON vms.quality_result (run_id);
-- snapshots past their retention are deleted 50,000 at a time, each setting
-- its results' snapshot_id to NULL: found by this index, not by a scan
CREATE INDEX quality_result_snapshot_idx ON vms.quality_result (snapshot_id) WHERE snapshot_id IS NOT NULL;
COMMENT ON TABLE vms.quality_result IS
    'every inspection result (巡检记录): per check metric, verdict and detail, stream and image availability, snapshot';
COMMENT ON COLUMN vms.quality_result.image_ok IS 'a usable picture: the stream opened and neither signal loss nor black screen';

-- Cron-like schedules: minute hour day-of-month month day-of-week, each
-- *, a number, a range a-b, a list, or a step */n or a-b/n.
CREATE FUNCTION vms._cron_field(field text, lo integer, hi integer) RETURNS integer[]
    LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    part text;
    m text[];
    a integer;
    b integer;
    step integer;
    out integer[] := '{}';
BEGIN
    FOREACH part IN ARRAY string_to_array(field, ',') LOOP
        m := regexp_match(part, '^(\*|[0-9]{1,2}(?:-[0-9]{1,2})?)(?:/([0-9]{1,2}))?$');
        IF m IS NULL THEN
            RAISE EXCEPTION 'bad cron field "%"', field USING ERRCODE = 'invalid_parameter_value',
                HINT = 'Use *, n, a-b, lists a,b and steps */n.';
        END IF;
        IF m[1] = '*' THEN a := lo; b := hi;
        ELSIF position('-' IN m[1]) > 0 THEN a := split_part(m[1], '-', 1)::int; b := split_part(m[1], '-', 2)::int;
        ELSE a := m[1]::int; b := a;
        END IF;
        step := coalesce(m[2]::int, 1);
        IF a < lo OR b > hi OR a > b OR step < 1 THEN
            RAISE EXCEPTION 'cron field "%" is out of range %-%', field, lo, hi USING ERRCODE = 'invalid_parameter_value';
        END IF;
        out := out || ARRAY(SELECT generate_series(a, b, step));
    END LOOP;
    RETURN out;
END $$;
COMMENT ON FUNCTION vms._cron_field(text, integer, integer) IS 'internal: the values one cron field allows';

CREATE FUNCTION vms.cron_next(expr text, after timestamptz DEFAULT now()) RETURNS timestamptz
    LANGUAGE plpgsql STABLE STRICT AS $$
DECLARE
    f text[] := regexp_split_to_array(btrim(expr), '\s+');
    mins integer[];
    hours integer[];
    doms integer[];
    months integer[];
    dows integer[];
    start timestamp := date_trunc('minute', after::timestamp) + interval '1 minute';
    day date;
    h integer;
    mi integer;
BEGIN
    IF cardinality(f) <> 5 THEN
        RAISE EXCEPTION 'cron expression "%" needs five fields', expr USING ERRCODE = 'invalid_parameter_value',
            HINT = 'minute hour day-of-month month day-of-week, e.g. "0 2 * * *" for 02:00 every day.';
    END IF;
    mins := vms._cron_field(f[1], 0, 59);
    hours := vms._cron_field(f[2], 0, 23);
    doms := vms._cron_field(f[3], 1, 31);
    months := vms._cron_field(f[4], 1, 12);
    dows := vms._cron_field(replace(f[5], '7', '0'), 0, 6);
    FOR d IN 0 .. 366 LOOP
        day := start::date + d;
        CONTINUE WHEN NOT (extract(month FROM day)::int = ANY (months) AND extract(day FROM day)::int = ANY (doms)
                           AND extract(dow FROM day)::int = ANY (dows));
        FOREACH h IN ARRAY (SELECT array_agg(x ORDER BY x) FROM unnest(hours) x) LOOP
            FOREACH mi IN ARRAY (SELECT array_agg(x ORDER BY x) FROM unnest(mins) x) LOOP
                IF day + make_time(h, mi, 0) >= start THEN
                    RETURN (day + make_time(h, mi, 0))::timestamptz;
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
    RAISE EXCEPTION 'cron expression "%" never fires', expr USING ERRCODE = 'invalid_parameter_value';
END $$;
COMMENT ON FUNCTION vms.cron_next(text, timestamptz) IS
    'next time (server time zone) a five-field cron expression fires after the given time';

-- The channels a scope names: {"regions": [civil code prefixes], "catalog_nodes": [codes],
-- "tags": [tag ids], "channels": [codes]}; the union of all keys given.
CREATE FUNCTION vms.inspection_scope_channels(scope jsonb) RETURNS SETOF vms.gbcode
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    bad text;
BEGIN
    IF jsonb_typeof(scope) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'an inspection scope must be a JSON object' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use keys regions, catalog_nodes, tags, channels.';
    END IF;
    SELECT k INTO bad FROM jsonb_object_keys(scope) k
     WHERE k NOT IN ('regions', 'catalog_nodes', 'tags', 'channels') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown inspection scope key "%"', bad USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use keys regions, catalog_nodes, tags, channels.';
    END IF;
    SELECT k INTO bad FROM jsonb_each(scope) e(k, v) WHERE jsonb_typeof(v) <> 'array' LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'inspection scope key "%" must be an array', bad USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT DISTINCT c FROM (
        SELECT ch.code AS c FROM vms.channel ch
          JOIN jsonb_array_elements_text(coalesce(scope -> 'regions', '[]')) r ON ch.civil_code LIKE r || '%'
        UNION ALL
        SELECT s FROM jsonb_array_elements_text(coalesce(scope -> 'catalog_nodes', '[]')) n,
                      vms._scope_channels('catalog', n) s
        UNION ALL
        SELECT s FROM jsonb_array_elements_text(coalesce(scope -> 'tags', '[]')) t,
                      vms._scope_channels('tag', t) s
        UNION ALL
        SELECT ch.code FROM vms.channel ch
          JOIN jsonb_array_elements_text(coalesce(scope -> 'channels', '[]')) x ON ch.code = x::vms.gbcode
    ) u;
END $$;
COMMENT ON FUNCTION vms.inspection_scope_channels(jsonb) IS
    'channels of an inspection scope: regions (civil-code prefixes), catalog_nodes (subtrees), tags (subtrees), channels';

-- Thresholds (a plan's, or a time window's): names the inspector knows,
-- numbers in their range (extension/inspect/THRESHOLDS.md).
CREATE FUNCTION vms._inspection_threshold_problem(name text, value double precision) RETURNS text
    AS 'MODULE_PATHNAME', 'vms_inspection_threshold_problem' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vms._inspection_threshold_problem(text, double precision) IS
    'internal: NULL when the inspector takes this threshold value, else unknown or out of range';

CREATE FUNCTION vms._inspection_check_thresholds(thresholds jsonb, place text) RETURNS void
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

CREATE FUNCTION vms._inspection_check_plan(p vms.inspection_plan) RETURNS void
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
                     'stripes', 'freeze', 'jitter', 'mosaic', 'occlusion', 'scene_change', 'recording') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown check "%"', bad USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Checks: stream, signal_loss, black_screen, brightness, blur, color_cast, noise, stripes, freeze, jitter, mosaic, occlusion, scene_change, recording.';
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

-- The scheduler's own updates (next_run_at) are not checked again: a plan
-- forced past the check must fail its own round, not the scheduler's
-- statement and so every plan's round.  Disabling a plan is never refused;
-- enabling it again checks it.
CREATE FUNCTION vms._inspection_plan_trigger() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' OR (NEW.enabled AND NOT OLD.enabled)
       OR to_jsonb(NEW) - '{next_run_at,enabled}'::text[] IS DISTINCT FROM to_jsonb(OLD) - '{next_run_at,enabled}'::text[] THEN
        PERFORM vms._inspection_check_plan(NEW);
    END IF;
    PERFORM vms._wake_worker('inspector 1');
    RETURN NEW;
END $$;
COMMENT ON FUNCTION vms._inspection_plan_trigger() IS 'internal: validate a changed plan and wake the inspectors';
CREATE TRIGGER inspection_plan_check BEFORE INSERT OR UPDATE ON vms.inspection_plan
    FOR EACH ROW EXECUTE FUNCTION vms._inspection_plan_trigger();

CREATE FUNCTION vms.inspection_plan_add(name text, scope jsonb, schedule text, options jsonb DEFAULT '{}')
    RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    bad text;
    pid bigint;
BEGIN
    SELECT k INTO bad FROM jsonb_object_keys(options) k
     WHERE k NOT IN ('windows', 'checks', 'profile', 'thresholds', 'sample_seconds', 'sample_frames',
                     'timeout_ms', 'concurrency', 'enabled') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown inspection plan option "%"', bad USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Options: windows, checks, profile, thresholds, sample_seconds, sample_frames, timeout_ms, concurrency, enabled.';
    END IF;
    IF schedule IS NULL OR NOT (schedule ~ '^every [0-9]+ ?(s|min|h|d)$' OR schedule ~ '^cron ') THEN
        RAISE EXCEPTION 'schedule "%" is neither "every N s|min|h|d" nor "cron <five fields>"', schedule
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example: every 30 min, or cron 0 2 * * *.';
    END IF;
    INSERT INTO vms.inspection_plan AS p (name, scope, every_s, cron, windows, checks, profile, thresholds,
                                          sample_seconds, sample_frames, timeout_ms, concurrency, enabled, next_run_at)
    VALUES (name, scope,
            CASE WHEN schedule LIKE 'every %' THEN
                 (regexp_match(schedule, '[0-9]+'))[1]::int *
                 CASE (regexp_match(schedule, '(s|min|h|d)$'))[1] WHEN 's' THEN 1 WHEN 'min' THEN 60 WHEN 'h' THEN 3600 ELSE 86400 END END,
            CASE WHEN schedule LIKE 'cron %' THEN substr(schedule, 6) END,
            coalesce(options -> 'windows', '[]'),
            CASE WHEN options ? 'checks' THEN ARRAY(SELECT jsonb_array_elements_text(options -> 'checks'))
                 ELSE '{stream,signal_loss,black_screen,brightness,blur,color_cast,noise,stripes,freeze,jitter,mosaic,occlusion,scene_change}' END,
            coalesce(options ->> 'profile', 'normal'), coalesce(options -> 'thresholds', '{}'),
            coalesce((options ->> 'sample_seconds')::real, 2), coalesce((options ->> 'sample_frames')::int, 50),
            coalesce((options ->> 'timeout_ms')::int, 10000), coalesce((options ->> 'concurrency')::int, 2),
            coalesce((options ->> 'enabled')::boolean, true),
            CASE WHEN schedule LIKE 'cron %' THEN vms.cron_next(substr(schedule, 6)) ELSE now() END)
    RETURNING id INTO pid;
    RETURN pid;
END $$;
COMMENT ON FUNCTION vms.inspection_plan_add(text, jsonb, text, jsonb) IS
    'add an inspection plan: scope, schedule ("every 30 min" / "cron 0 2 * * *"), options (windows, checks, profile, thresholds, sample_seconds, sample_frames, timeout_ms, concurrency, enabled)';

CREATE FUNCTION vms.inspection_run_now(plan text) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE vms.inspection_plan SET next_run_at = now() WHERE name = plan;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no inspection plan "%"', plan USING ERRCODE = 'undefined_object';
    END IF;
END $$;
COMMENT ON FUNCTION vms.inspection_run_now(text) IS 'start a round of a plan at once';

-- The profile and thresholds in force now: the first time window that
-- contains the current time, else the plan's.  A window is [from, to) in
-- the server's time zone; it wraps midnight when to < from, and from = to
-- is the whole day (so 00:00-00:00 holds at 23:59 too).
CREATE FUNCTION vms._inspection_settings(p vms.inspection_plan, at timestamptz DEFAULT now(),
                                         OUT profile text, OUT thresholds jsonb)
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT coalesce(w ->> 'profile', p.profile), p.thresholds || coalesce(w -> 'thresholds', '{}')
      FROM (SELECT 1) one
      LEFT JOIN LATERAL (
          SELECT w FROM jsonb_array_elements(p.windows) w
           WHERE CASE WHEN (w ->> 'from')::time = (w ->> 'to')::time THEN true
                      WHEN (w ->> 'from')::time < (w ->> 'to')::time
                      THEN at::time >= (w ->> 'from')::time AND at::time < (w ->> 'to')::time
                      ELSE at::time >= (w ->> 'from')::time OR at::time < (w ->> 'to')::time END
           LIMIT 1) win ON true
$$;
COMMENT ON FUNCTION vms._inspection_settings(vms.inspection_plan, timestamptz) IS
    'internal: profile and thresholds of the time window in force, else the plan''s';

-- Due plans become rounds: one task per channel in scope.  Returns the
-- number of tasks created.  A plan whose round cannot start (its scope or
-- schedule is not usable: forced past the plan check, or older than it)
-- gets a finished round with the error, a WARNING in the server log, and
-- its next try in an hour (or its own period); the other plans go on.
-- A plan with the "recording" check also queries each channel's recordings
-- (vms._inspection_recording_start, 26_device_control.sql); each call first
-- collects the answers that came in (vms._inspection_recording_collect).
-- A plan whose only check is "recording" samples no video.
CREATE FUNCTION vms._inspection_schedule() RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    p vms.inspection_plan;
    rid bigint;
    n integer;
    nrec integer;
    total integer := 0;
    why text;
BEGIN
    PERFORM vms._inspection_recording_collect();
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
          FROM vms.inspection_scope_channels(p.scope) s JOIN vms.channel c ON c.code = s
         WHERE EXISTS (SELECT 1 FROM unnest(p.checks) k WHERE k <> 'recording');
        GET DIAGNOSTICS n = ROW_COUNT;
        nrec := CASE WHEN 'recording' = ANY (p.checks)
                     THEN vms._inspection_recording_start(rid, p, now()) ELSE 0 END;
        UPDATE vms.inspection_run SET channels = n, finished_at = CASE WHEN n = 0 AND nrec = 0 THEN now() END
         WHERE id = rid;
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

-- A task that cannot be sampled because its plan's settings are not usable:
-- failed with the reason (the round counts it and may finish), and a
-- WARNING in the server log.
CREATE FUNCTION vms._inspection_task_fail(task bigint, why text) RETURNS void
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

-- A worker takes one task, within its plan's concurrency; the sampling
-- options come with it.  Tasks left running by a worker that died are
-- taken again after the plan's timeout twice over.  A task whose plan's
-- settings in force are not usable (a threshold that is not a number, a
-- window that does not parse: forced past the plan check) fails alone
-- (vms._inspection_task_fail) and the next task is taken: one bad plan never
-- stops the others.
CREATE FUNCTION vms._inspection_claim(worker_name text)
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

-- Alarm level per fault found by inspection (I = most urgent).
CREATE FUNCTION vms.inspection_alarm_level(check_name text) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN check_name IN ('stream', 'signal_loss', 'black_screen') THEN 2
        WHEN check_name IN ('occlusion', 'scene_change', 'freeze') THEN 2
        WHEN check_name IN ('blur', 'brightness', 'jitter') THEN 3
        ELSE 4 END::smallint;
COMMENT ON FUNCTION vms.inspection_alarm_level(text) IS
    'alarm level of an inspection fault: II for no picture, tampering and freeze; III for blur, brightness, jitter; IV for the rest';

-- Per-channel baselines (issue 14): a camera's own history, per hour-of-day
-- band, informs its verdicts.  What is learnt: for brightness (mean luma),
-- color_cast (chroma offset of the least coloured pixels) and noise (sigma),
-- the last `keep` metrics of the channel's usable results (stream ok, no
-- signal loss or black screen, the check evaluated and not suppressed by
-- another) in each 3-hour band of the day (hour in the session's TimeZone,
-- the server's for the inspector), with their median and MAD; for
-- color_cast also the picture's median chroma (the result's "grey": [Cb,
-- Cr] offsets, as the inspector reports it), so that a cast is known by
-- its direction, not only its size.  Once a band
-- has `min_samples` results it is used: an alarm whose metric lies within
-- the band's usual spread is the channel's normal (a camera always dark at
-- 02:00: reported normal, "usual for this channel"), and a normal verdict
-- far from it is flagged (a camera normally bright that goes dark, a cast
-- or noise the camera does not usually show, a picture whose colour moved
-- away from the channel's usual colour).  What the baseline finds
-- abnormal is not learnt, so a departure stays flagged until it ends or an
-- operator accepts it with
-- vms.inspection_baseline_reset() (the channel then learns afresh).
CREATE TABLE vms.inspection_baseline (
    channel_code vms.gbcode NOT NULL,
    check_name   text NOT NULL,
    hour_band    smallint NOT NULL CHECK (hour_band BETWEEN 0 AND 7),
    recent       double precision[] NOT NULL DEFAULT '{}',
    median       double precision,
    mad          double precision,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    recent_grey  double precision[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (channel_code, check_name, hour_band)
);
COMMENT ON TABLE vms.inspection_baseline IS
    'per channel, check and 3-hour band of the day: the channel''s recent metrics (oldest first), their median and MAD; learnt from usable inspection results, reset with vms.inspection_baseline_reset';
COMMENT ON COLUMN vms.inspection_baseline.recent_grey IS
    'color_cast only: the recent results'' picture median chroma, Cb and Cr offsets in turn (oldest first; the same results as recent when every one had it)';

CREATE FUNCTION vms.inspection_hour_band(at timestamptz) RETURNS smallint
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN (extract(hour FROM at)::integer / 3)::smallint;
COMMENT ON FUNCTION vms.inspection_hour_band(timestamptz) IS
    'the baseline band of a time: its hour of day (in the session''s TimeZone) / 3, 0 (00:00-02:59) to 7 (21:00-23:59)';

-- Which checks have a baseline, and how it judges (levels of the check's metric):
--   min_samples    results in the band before the band is used
--   keep           metrics kept per band (the newest)
--   usual_within   an alarm within max(usual_within, 3 x 1.4826 MAD) of the median is usual
--   depart_beyond  a normal verdict beyond max(depart_beyond, 5 x 1.4826 MAD) is a departure
--   direction      0 either way, 1 only above the median (more cast, more noise)
--   shift_usual, shift_depart  color_cast: the same two for the distance of the
--                  picture's median chroma from the band's (chroma levels)
CREATE FUNCTION vms.inspection_baseline_rules(OUT check_name text, OUT min_samples integer, OUT keep integer,
                                              OUT usual_within double precision, OUT depart_beyond double precision,
                                              OUT direction smallint, OUT shift_usual double precision,
                                              OUT shift_depart double precision)
    RETURNS SETOF record LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    VALUES ('brightness'::text, 8, 30, 12::float8, 35::float8, 0::smallint, NULL::float8, NULL::float8),
           ('color_cast', 8, 30, 3, 6, 1, 4, 8),
           ('noise', 8, 30, 2, 4, 1, NULL, NULL)
$$;
COMMENT ON FUNCTION vms.inspection_baseline_rules() IS
    'the checks judged against a channel''s baseline and how: samples needed, metrics kept, the usual spread and the departure, in the check''s metric units (and for color_cast, of the picture''s median chroma)';

-- A result's checks judged against the channel's baseline for the band of
-- `at`: each baselined check gets "baseline" {band, median, mad, samples,
-- verdict usual|departure|within|outside}; an alarm within the usual spread
-- becomes normal and a normal verdict beyond the departure becomes abnormal,
-- both with "raw_abnormal" (the picture's own verdict) and the reason first
-- in the detail.  Checks not evaluated, suppressed by another check, or in a
-- band still learning are left as they are.
CREATE FUNCTION vms._inspection_baseline_apply(channel vms.gbcode, at timestamptz, checks jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    r record;
    b vms.inspection_baseline;
    v jsonb;
    x double precision;
    d double precision;
    dev double precision;
    s double precision;
    n integer;
    info jsonb;
    band smallint := vms.inspection_hour_band(at);
    res jsonb := checks;
    -- the picture's median chroma against the band's (color_cast)
    gcb double precision;
    gcr double precision;
    mcb double precision;
    mcr double precision;
    gd double precision;
    gs double precision;
    gn integer;
    usual boolean;
    depart boolean;
    why text;
BEGIN
    IF checks IS NULL OR jsonb_typeof(checks) <> 'object' THEN
        RETURN checks;
    END IF;
    FOR r IN SELECT * FROM vms.inspection_baseline_rules() LOOP
        v := checks -> r.check_name;
        CONTINUE WHEN v IS NULL OR jsonb_typeof(v) <> 'object' OR jsonb_typeof(v -> 'metric') IS DISTINCT FROM 'number'
                   OR jsonb_typeof(v -> 'abnormal') IS DISTINCT FROM 'boolean'
                   OR coalesce(v ->> 'detail', '') LIKE 'suppressed by%';
        SELECT * INTO b FROM vms.inspection_baseline ib
         WHERE ib.channel_code = channel AND ib.check_name = r.check_name AND ib.hour_band = band;
        n := coalesce(cardinality(b.recent), 0);
        CONTINUE WHEN n < r.min_samples;
        x := (v ->> 'metric')::double precision;
        d := x - b.median;
        s := 1.4826 * b.mad;
        dev := CASE WHEN r.direction = 0 THEN abs(d) ELSE d * r.direction END;
        usual := abs(d) <= greatest(r.usual_within, 3 * s);
        depart := dev >= greatest(r.depart_beyond, 5 * s);
        why := NULL;
        info := jsonb_build_object('band', band, 'median', round(b.median::numeric, 2), 'mad', round(b.mad::numeric, 2),
                                   'samples', n);
        gn := coalesce(cardinality(b.recent_grey), 0) / 2;
        IF r.shift_usual IS NOT NULL AND gn >= r.min_samples AND jsonb_typeof(v -> 'grey') = 'array'
           AND jsonb_typeof(v -> 'grey' -> 0) = 'number' AND jsonb_typeof(v -> 'grey' -> 1) = 'number' THEN
            gcb := (v -> 'grey' ->> 0)::double precision;
            gcr := (v -> 'grey' ->> 1)::double precision;
            SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY b.recent_grey[2 * i - 1]),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY b.recent_grey[2 * i])
              INTO mcb, mcr FROM generate_series(1, gn) i;
            SELECT 1.4826 * percentile_cont(0.5) WITHIN GROUP (ORDER BY sqrt((b.recent_grey[2 * i - 1] - mcb) ^ 2
                                                                             + (b.recent_grey[2 * i] - mcr) ^ 2))
              INTO gs FROM generate_series(1, gn) i;
            gd := sqrt((gcb - mcb) ^ 2 + (gcr - mcr) ^ 2);
            info := info || jsonb_build_object('grey_median', jsonb_build_array(round(mcb::numeric, 1), round(mcr::numeric, 1)),
                                               'grey_shift', round(gd::numeric, 1));
            usual := usual AND gd <= greatest(r.shift_usual, 3 * gs);
            IF NOT depart AND gd >= greatest(r.shift_depart, 5 * gs) THEN
                depart := true;
                why := format('colour moved from this channel''s usual at this hour (picture median Cb %s, Cr %s against %s, %s over %s results)',
                              round(gcb::numeric, 1), round(gcr::numeric, 1), round(mcb::numeric, 1), round(mcr::numeric, 1), gn);
            END IF;
        END IF;
        IF (v ->> 'abnormal')::boolean AND usual THEN
            v := v || jsonb_build_object('abnormal', false, 'raw_abnormal', true,
                                         'baseline', info || '{"verdict": "usual"}',
                                         'detail', format('usual for this channel at this hour (median %s over %s results): %s',
                                                          round(b.median::numeric, 1), n, v ->> 'detail'));
        ELSIF NOT (v ->> 'abnormal')::boolean AND depart THEN
            v := v || jsonb_build_object('abnormal', true, 'raw_abnormal', false,
                                         'baseline', info || '{"verdict": "departure"}',
                                         'detail', coalesce(why,
                                                            format('%s than usual for this channel at this hour (%s against a median of %s over %s results)',
                                                                   CASE WHEN r.check_name = 'brightness' AND d < 0 THEN 'darker'
                                                                        WHEN r.check_name = 'brightness' THEN 'brighter'
                                                                        WHEN r.check_name = 'noise' THEN 'noisier'
                                                                        ELSE 'more colour cast' END,
                                                                   round(x::numeric, 1), round(b.median::numeric, 1), n))
                                                   || ': ' || (v ->> 'detail'));
        ELSE
            v := v || jsonb_build_object('baseline', info || jsonb_build_object('verdict',
                                         CASE WHEN (v ->> 'abnormal')::boolean THEN 'outside' ELSE 'within' END));
        END IF;
        res := jsonb_set(res, ARRAY[r.check_name], v);
    END LOOP;
    RETURN res;
END $$;
COMMENT ON FUNCTION vms._inspection_baseline_apply(vms.gbcode, timestamptz, jsonb) IS
    'internal: a result''s checks judged against the channel''s baseline for the hour band (usual alarms cleared, departures flagged)';

-- Learn from a result (after _inspection_baseline_apply): a usable picture's
-- baselined checks that were evaluated, not suppressed, and not found
-- abnormal by the baseline (a departure, or an alarm outside the usual).
CREATE FUNCTION vms._inspection_baseline_learn(channel vms.gbcode, at timestamptz, checks jsonb) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r record;
    v jsonb;
    arr double precision[];
    grey double precision[];
    med double precision;
    band smallint := vms.inspection_hour_band(at);
BEGIN
    IF checks IS NULL OR jsonb_typeof(checks) <> 'object'
       OR coalesce((checks #>> '{stream,abnormal}')::boolean, true)
       OR coalesce((checks #>> '{signal_loss,abnormal}')::boolean, false)
       OR coalesce((checks #>> '{black_screen,abnormal}')::boolean, false) THEN
        RETURN;
    END IF;
    FOR r IN SELECT * FROM vms.inspection_baseline_rules() LOOP
        v := checks -> r.check_name;
        CONTINUE WHEN v IS NULL OR jsonb_typeof(v) <> 'object' OR jsonb_typeof(v -> 'metric') IS DISTINCT FROM 'number'
                   OR coalesce(v ->> 'detail', '') LIKE 'suppressed by%'
                   OR (v #>> '{baseline,verdict}') IN ('departure', 'outside');
        grey := CASE WHEN r.shift_usual IS NOT NULL AND jsonb_typeof(v -> 'grey') = 'array'
                           AND jsonb_typeof(v -> 'grey' -> 0) = 'number' AND jsonb_typeof(v -> 'grey' -> 1) = 'number'
                      THEN ARRAY[(v -> 'grey' ->> 0)::double precision, (v -> 'grey' ->> 1)::double precision]
                      ELSE '{}' END;
        INSERT INTO vms.inspection_baseline AS ib (channel_code, check_name, hour_band, recent, updated_at, recent_grey)
        VALUES (channel, r.check_name, band, ARRAY[(v ->> 'metric')::double precision], at, grey)
        ON CONFLICT (channel_code, check_name, hour_band) DO UPDATE
           SET recent = (ib.recent || EXCLUDED.recent)[greatest(1, cardinality(ib.recent) + 2 - r.keep):],
               recent_grey = (ib.recent_grey || EXCLUDED.recent_grey)
                             [greatest(1, cardinality(ib.recent_grey) + cardinality(EXCLUDED.recent_grey) + 1 - 2 * r.keep):],
               updated_at = EXCLUDED.updated_at
        RETURNING ib.recent INTO arr;
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY e) INTO med FROM unnest(arr) e;
        UPDATE vms.inspection_baseline ib
           SET median = med,
               mad = (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(e - med)) FROM unnest(arr) e)
         WHERE ib.channel_code = channel AND ib.check_name = r.check_name AND ib.hour_band = band;
    END LOOP;
END $$;
COMMENT ON FUNCTION vms._inspection_baseline_learn(vms.gbcode, timestamptz, jsonb) IS
    'internal: add a usable result''s metrics to the channel''s baseline for the hour band (what the baseline finds abnormal is not learnt)';

CREATE FUNCTION vms.inspection_baseline_reset(channel vms.gbcode, check_name text DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n integer;
BEGIN
    IF inspection_baseline_reset.check_name IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM vms.inspection_baseline_rules() r WHERE r.check_name = inspection_baseline_reset.check_name) THEN
        RAISE EXCEPTION 'check "%" has no baseline', inspection_baseline_reset.check_name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Only the checks of vms.inspection_baseline_rules() learn a per-channel baseline.',
                  HINT = 'Pass NULL to reset every check of the channel.';
    END IF;
    DELETE FROM vms.inspection_baseline ib
     WHERE ib.channel_code = channel
       AND (inspection_baseline_reset.check_name IS NULL OR ib.check_name = inspection_baseline_reset.check_name);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms.inspection_baseline_reset(vms.gbcode, text) IS
    'forget a channel''s learnt baseline (every check, or one), e.g. after the camera was moved, relit or repaired: it learns afresh from its next results; returns the bands dropped';

-- One result: stored with its snapshot; alarms raised for abnormal checks
-- of the plan's check set and cleared for checks now normal; the round's
-- counts updated and the round closed when its last task is done.
CREATE FUNCTION vms._inspection_record(task bigint, result jsonb, jpeg bytea) RETURNS bigint
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
    -- the channel's own history for this hour of day (issue 14: baselines)
    v_checks := vms._inspection_baseline_apply(t.channel_code, now(), v_checks);
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
    PERFORM vms._inspection_baseline_learn(t.channel_code, now(), v_checks);
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

CREATE FUNCTION vms.inspection_set_baseline(channel vms.gbcode, snapshot_id bigint) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.snapshot s WHERE s.id = snapshot_id AND s.channel_code = channel) THEN
        RAISE EXCEPTION 'snapshot % is not of channel %', snapshot_id, channel USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE vms.snapshot SET is_baseline = false WHERE channel_code = channel AND is_baseline;
    UPDATE vms.snapshot SET is_baseline = true WHERE id = snapshot_id;
END $$;
COMMENT ON FUNCTION vms.inspection_set_baseline(vms.gbcode, bigint) IS
    'make a snapshot the channel''s baseline for scene_change (after a deliberate camera move)';

CREATE VIEW vms.inspection_run_rates AS
SELECT r.id AS run_id, p.name AS plan, r.started_at, r.finished_at, r.channels, r.done,
       round(r.stream_ok::numeric / nullif(r.done, 0), 4) AS stream_success_rate,
       round(r.image_ok::numeric / nullif(r.done, 0), 4) AS image_rate,
       r.abnormal, r.failed, r.error
  FROM vms.inspection_run r JOIN vms.inspection_plan p ON p.id = r.plan_id;
COMMENT ON VIEW vms.inspection_run_rates IS
    'per round: 取流成功率 stream_success_rate and 出图率 image_rate over the channels done; failed tasks and a round that could not start, with the error';

-- the result no later one of the same channel follows (at, then id): not
-- DISTINCT ON (channel_code), which needs gbcode's btree operator class to
-- parse, and pg_upgrade's restore creates it after the views (05_import.sql,
-- ledger_export); a filter on channel_code still reaches the index
CREATE VIEW vms.channel_latest_quality AS
SELECT q.channel_code, q.at, q.stream_ok, q.image_ok, q.abnormal, q.snapshot_id
  FROM vms.quality_result q
 WHERE NOT EXISTS (SELECT 1 FROM vms.quality_result n
                    WHERE n.channel_code = q.channel_code AND (n.at, n.id) > (q.at, q.id));
COMMENT ON VIEW vms.channel_latest_quality IS 'the latest inspection result of each channel';

CREATE VIEW vms.inspection_unit_rates AS
SELECT c.unit_id, u.name AS unit, count(*) AS channels_inspected,
       round(avg(l.stream_ok::int), 4) AS stream_success_rate,
       round(avg(l.image_ok::int), 4) AS image_rate
  FROM vms.channel_latest_quality l JOIN vms.channel c ON c.code = l.channel_code
  LEFT JOIN vms.org_unit u ON u.id = c.unit_id
 GROUP BY c.unit_id, u.name;
COMMENT ON VIEW vms.inspection_unit_rates IS 'per unit, from each channel''s latest result: 取流成功率 and 出图率';

CREATE VIEW vms.inspection_log AS
SELECT q.id, q.at, p.name AS plan, q.run_id, q.channel_code, c.name AS channel, q.profile, q.stream_ok, q.image_ok,
       q.abnormal, q.checks, q.sample, q.snapshot_id
  FROM vms.quality_result q
  LEFT JOIN vms.inspection_run r ON r.id = q.run_id
  LEFT JOIN vms.inspection_plan p ON p.id = r.plan_id
  LEFT JOIN vms.channel c ON c.code = q.channel_code;
COMMENT ON VIEW vms.inspection_log IS '巡检记录: every result with its plan, round, channel, verdicts and metrics, for review';
