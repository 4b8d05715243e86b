-- Notifications that reach people: routes (a webhook URL or an SMTP
-- server) with a filter, quiet hours and a body template, and the
-- transactional outbox a notifier worker delivers from (at least once,
-- with retries and dead letters; each document carries an id receivers
-- de-duplicate by).  Alarm events people should hear of (vms.alarm_event
-- with notify) and work-order transitions are queued here in the same
-- transaction that records them.  The vms notifier worker
-- (workers/notifier/notifier.c, libcurl) delivers them through
-- vms._notify_claim and vms._notify_result: see README, Operations centre.

CREATE TABLE vms.notify_route (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    kind          text NOT NULL CHECK (kind IN ('webhook', 'smtp')),
    url           text NOT NULL,
    filter        jsonb NOT NULL DEFAULT '{}',
    quiet_hours   jsonb,
    template      text,
    mail_to       text[],
    max_attempts  integer NOT NULL DEFAULT 10 CHECK (max_attempts BETWEEN 1 AND 1000),
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    mail_from     text
);
COMMENT ON COLUMN vms.notify_route.mail_from IS 'sender of this route''s mail (MAIL FROM and From:); NULL: the notifier''s vms.notifier_mail_from';
COMMENT ON TABLE vms.notify_route IS
    'where notifications go: a webhook (http/https URL, JSON POST) or SMTP (smtp/smtps URL, mail_to); filter by levels, sources, fault_types, units, regions, events; quiet_hours {"from","to","tz"}; template with {{placeholders}}';

CREATE TABLE vms.notify_outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    route_id         bigint NOT NULL REFERENCES vms.notify_route (id) ON DELETE CASCADE,
    dedup_key        text NOT NULL UNIQUE,
    doc              jsonb NOT NULL,
    body             text NOT NULL,
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status      text,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    dead_at          timestamptz
);
CREATE INDEX notify_outbox_due_idx ON vms.notify_outbox (next_attempt_at, id) WHERE state = 'pending';
COMMENT ON TABLE vms.notify_outbox IS
    'notifications to deliver, written in the transaction of the event: the document (with dedup_key as its id), the body to send, retries with backoff until max_attempts, then dead';

-- Filter keys; quiet hours and the template come in the same document.
CREATE FUNCTION vms.notify_route_add(name text, url text, filter jsonb DEFAULT '{}') RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    f jsonb := coalesce(filter, '{}');
    bad text;
    k text;
    route_id bigint;
BEGIN
    IF coalesce(btrim(name), '') = '' THEN
        RAISE EXCEPTION 'a notification route needs a name' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    k := CASE WHEN url ~* '^https?://[^/\s]+' THEN 'webhook' WHEN url ~* '^smtps?://[^/\s]+' THEN 'smtp' END;
    IF k IS NULL THEN
        RAISE EXCEPTION 'notification route URL "%" is neither http(s) nor smtp(s)', url
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A webhook is an http:// or https:// URL; mail goes through an smtp:// or smtps:// server.';
    END IF;
    IF jsonb_typeof(f) <> 'object' THEN
        RAISE EXCEPTION 'a notification filter must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT x INTO bad FROM jsonb_object_keys(f) x
     WHERE x NOT IN ('levels', 'sources', 'fault_types', 'units', 'regions', 'events', 'quiet_hours', 'template', 'mail_to',
                     'max_attempts', 'mail_from') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown notification filter key "%"', bad
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Keys: levels, sources, fault_types, units, regions, events (arrays); quiet_hours {"from": "22:00", "to": "07:00", "tz": "Asia/Shanghai"}; template; mail_to; mail_from; max_attempts.';
    END IF;
    SELECT x INTO bad FROM jsonb_each(f) e(x, v)
     WHERE x IN ('levels', 'sources', 'fault_types', 'units', 'regions', 'events', 'mail_to') AND jsonb_typeof(v) <> 'array' LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'notification filter key "%" must be an array', bad USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT x INTO bad FROM jsonb_array_elements_text(coalesce(f -> 'events', '[]')) x
     WHERE x NOT IN ('raised', 'escalated', 'cleared', 'unsuppressed', 'work_order') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown notification event "%"', bad
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Events: raised, escalated, cleared, unsuppressed, work_order.';
    END IF;
    IF f ? 'quiet_hours' THEN
        BEGIN
            PERFORM (f #>> '{quiet_hours,from}')::time, (f #>> '{quiet_hours,to}')::time,
                    now() AT TIME ZONE coalesce(f #>> '{quiet_hours,tz}', current_setting('TimeZone'));
            IF f #>> '{quiet_hours,from}' IS NULL OR f #>> '{quiet_hours,to}' IS NULL THEN
                RAISE EXCEPTION 'incomplete';
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'quiet_hours must be {"from": "HH:MM", "to": "HH:MM", "tz": "zone"}'
                USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Given: %s.', f -> 'quiet_hours');
        END;
    END IF;
    IF f ? 'mail_from' AND (jsonb_typeof(f -> 'mail_from') <> 'string' OR f ->> 'mail_from' !~ '^[^\s<>@,]+@[^\s<>@,]+$') THEN
        RAISE EXCEPTION 'mail_from must be one address like "vms@example.org"' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('Given: %s.', f -> 'mail_from');
    END IF;
    -- every recipient one address: it goes into To: and RCPT TO, where a
    -- line break would add headers or SMTP commands
    SELECT x::text INTO bad FROM jsonb_array_elements(coalesce(f -> 'mail_to', '[]')) x
     WHERE jsonb_typeof(x) <> 'string' OR x #>> '{}' !~ '^[^\s<>@,]+@[^\s<>@,]+$' LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'every mail_to element must be one address like "ops@example.org"'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Given: %s.', bad);
    END IF;
    IF k = 'smtp' AND jsonb_array_length(coalesce(f -> 'mail_to', '[]')) = 0 THEN
        RAISE EXCEPTION 'a mail route needs recipients' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Give "mail_to": ["ops@example.org"] in the filter document.';
    END IF;
    INSERT INTO vms.notify_route (name, kind, url, filter, quiet_hours, template, mail_to, max_attempts, mail_from)
    VALUES (btrim(notify_route_add.name), k, url,
            f - 'quiet_hours' - 'template' - 'mail_to' - 'max_attempts' - 'mail_from', f -> 'quiet_hours', f ->> 'template',
            ARRAY(SELECT jsonb_array_elements_text(coalesce(f -> 'mail_to', '[]'))),
            coalesce((f ->> 'max_attempts')::int, 10), f ->> 'mail_from')
    RETURNING id INTO route_id;
    RETURN route_id;
END $$;
COMMENT ON FUNCTION vms.notify_route_add(text, text, jsonb) IS
    'add a notification route: url http(s) (webhook) or smtp(s) (mail); filter keys levels, sources, fault_types, units (ids), regions (civil-code prefixes), events (raised, escalated, cleared, unsuppressed, work_order), and quiet_hours, template, mail_to, mail_from, max_attempts';

-- {{name}} in a template: the document's value at that key (a path with
-- dots for nested keys), escaped as the inside of a JSON string.
CREATE FUNCTION vms.notify_render(template text, doc jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path FROM CURRENT AS $$
DECLARE
    out text := '';
    rest text := template;
    m text[];
    v text;
BEGIN
    IF template IS NULL THEN
        RETURN doc::text;
    END IF;
    LOOP
        m := regexp_match(rest, '^(.*?)\{\{\s*([A-Za-z0-9_.]+)\s*\}\}(.*)$', 's');
        EXIT WHEN m IS NULL;
        v := doc #>> string_to_array(m[2], '.');
        out := out || m[1] || coalesce(substr(to_jsonb(coalesce(v, ''))::text, 2, length(to_jsonb(coalesce(v, ''))::text) - 2), '');
        rest := m[3];
    END LOOP;
    RETURN out || rest;
END $$;
COMMENT ON FUNCTION vms.notify_render(text, jsonb) IS
    'a body from a template: each {{key}} or {{a.b}} replaced by the document''s value, JSON-string-escaped (so DingTalk and WeCom robot bodies need no code); no template: the document itself';

-- The time a notification may go: now, or the end of the route's quiet hours.
CREATE FUNCTION vms._notify_not_before(q jsonb, at timestamptz) RETURNS timestamptz
    LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    tz text := coalesce(q ->> 'tz', current_setting('TimeZone'));
    f time := (q ->> 'from')::time;
    t time := (q ->> 'to')::time;
    local timestamp := at AT TIME ZONE tz;
    lt time := local::time;
BEGIN
    IF q IS NULL OR f = t THEN
        RETURN at;
    END IF;
    IF f < t AND lt >= f AND lt < t THEN
        RETURN (local::date + t) AT TIME ZONE tz;
    ELSIF f > t AND (lt >= f OR lt < t) THEN
        RETURN (CASE WHEN lt >= f THEN local::date + 1 ELSE local::date END + t) AT TIME ZONE tz;
    END IF;
    RETURN at;
END $$;
COMMENT ON FUNCTION vms._notify_not_before(jsonb, timestamptz) IS 'internal: when a notification may be sent: at once, or when the quiet hours end';

CREATE FUNCTION vms._notify_enqueue(kind text, source_id bigint, doc jsonb, level smallint, source text, fault_type text,
                                    code vms.gbcode) RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_variable
DECLARE
    n integer;
    unit bigint;
    civil text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.notify_route x WHERE x.enabled) THEN
        RETURN 0;
    END IF;
    SELECT coalesce(c.unit_id, d.unit_id), coalesce(c.civil_code, d.civil_code) INTO unit, civil
      FROM vms.channel c JOIN vms.device d ON d.code = c.device_code WHERE c.code = _notify_enqueue.code;
    IF NOT FOUND THEN
        SELECT d.unit_id, d.civil_code INTO unit, civil FROM vms.device d WHERE d.code = _notify_enqueue.code;
    END IF;
    INSERT INTO vms.notify_outbox (route_id, dedup_key, doc, body, next_attempt_at)
    SELECT r.id, format('vms:%s:%s:%s', r.id, kind, source_id),
           doc || jsonb_build_object('id', format('vms:%s:%s:%s', r.id, kind, source_id), 'route', r.name),
           vms.notify_render(r.template, doc || jsonb_build_object('id', format('vms:%s:%s:%s', r.id, kind, source_id),
                                                                    'route', r.name)),
           vms._notify_not_before(r.quiet_hours, now())
      FROM vms.notify_route r
     WHERE r.enabled
       AND (NOT r.filter ? 'events' OR (CASE WHEN kind = 'alarm' THEN doc ->> 'event' ELSE 'work_order' END)
                                       IN (SELECT jsonb_array_elements_text(r.filter -> 'events')))
       AND (NOT r.filter ? 'levels' OR level::text IN (SELECT jsonb_array_elements_text(r.filter -> 'levels')))
       AND (NOT r.filter ? 'sources' OR source IN (SELECT jsonb_array_elements_text(r.filter -> 'sources')))
       AND (NOT r.filter ? 'fault_types' OR fault_type IN (SELECT jsonb_array_elements_text(r.filter -> 'fault_types')))
       AND (NOT r.filter ? 'units' OR unit::text IN (SELECT jsonb_array_elements_text(r.filter -> 'units')))
       AND (NOT r.filter ? 'regions' OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(r.filter -> 'regions') p
                                                 WHERE civil LIKE p || '%'))
    ON CONFLICT (dedup_key) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM vms._wake_worker('notifier');   -- at commit: the notifier sends it at once, not at its next poll
    END IF;
    RETURN n;
END $$;
COMMENT ON FUNCTION vms._notify_enqueue(text, bigint, jsonb, smallint, text, text, vms.gbcode) IS
    'internal: queue one event for every enabled route whose filter matches (in the event''s transaction) and wake the notifier when it commits';

-- SECURITY DEFINER trigger: whoever may record an alarm event (alarm_raise
-- runs with the caller's rights; a DBA may grant INSERT on the alarm tables
-- to an operator role) must not fail once a route exists for want of
-- privileges on vms.notify_route, vms.notify_outbox or the internal
-- vms._notify_enqueue.  It trusts nothing from the caller but the rows the
-- statement inserted (the transition table) and the alarms they name; what
-- is queued and where it goes comes from the routes.  Not executable by
-- PUBLIC (99_privileges.sql): it only runs as the trigger.
CREATE FUNCTION vms._notify_alarm_events() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    e record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.notify_route WHERE enabled) THEN
        RETURN NULL;
    END IF;
    FOR e IN SELECT n.id, n.kind, n.level, n.at, n.actor, n.detail, a.id AS alarm_id, a.code, a.fault_type, a.source,
                    a.occurrences, a.first_raised_at, a.respond_by, a.fix_by, a.clear_reason,
                    (SELECT l.name_zh FROM vms.alarm_level l WHERE l.level = n.level) AS level_name
               FROM new_rows n JOIN vms.alarm a ON a.id = n.alarm_id
              WHERE n.notify ORDER BY n.id LOOP
        PERFORM vms._notify_enqueue('alarm', e.id,
            jsonb_strip_nulls(jsonb_build_object(
                'type', 'alarm', 'event', e.kind, 'alarm_id', e.alarm_id, 'code', e.code::text, 'fault_type', e.fault_type,
                'level', e.level, 'level_name', e.level_name, 'source', e.source, 'at', e.at, 'actor', e.actor,
                'occurrences', e.occurrences, 'first_raised_at', e.first_raised_at, 'respond_by', e.respond_by,
                'fix_by', e.fix_by, 'reason', coalesce(e.detail ->> 'reason', e.clear_reason), 'detail', e.detail)),
            e.level, e.source, e.fault_type, e.code);
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._notify_alarm_events() IS 'internal: alarm events people should hear of into the notification outbox';
CREATE TRIGGER alarm_event_notify AFTER INSERT ON vms.alarm_event
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._notify_alarm_events();

-- SECURITY DEFINER trigger, for the same reason as vms._notify_alarm_events:
-- a role that may move work orders must not need privileges on the routes,
-- the outbox or the internal vms._notify_enqueue.  It trusts only the
-- transition rows the statement inserted (and the work orders and alarms
-- they name).  Not executable by PUBLIC: it only runs as the trigger.
CREATE FUNCTION vms._notify_work_orders() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    e record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vms.notify_route WHERE enabled) THEN
        RETURN NULL;
    END IF;
    FOR e IN SELECT n.id, n.from_state, n.to_state, n.actor, n.at, n.note, w.id AS order_id, w.assignee,
                    a.id AS alarm_id, a.code, a.fault_type, a.level, a.source
               FROM new_rows n JOIN vms.work_order w ON w.id = n.work_order_id JOIN vms.alarm a ON a.id = w.alarm_id
              ORDER BY n.id LOOP
        PERFORM vms._notify_enqueue('work_order', e.id,
            jsonb_strip_nulls(jsonb_build_object(
                'type', 'work_order', 'event', 'work_order', 'work_order_id', e.order_id, 'from_state', e.from_state,
                'state', e.to_state, 'assignee', e.assignee, 'actor', e.actor, 'at', e.at, 'note', e.note,
                'alarm_id', e.alarm_id, 'code', e.code::text, 'fault_type', e.fault_type, 'level', e.level)),
            e.level, e.source, e.fault_type, e.code);
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION vms._notify_work_orders() IS 'internal: work-order transitions into the notification outbox';
CREATE TRIGGER work_order_transition_notify AFTER INSERT ON vms.work_order_transition
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vms._notify_work_orders();

-- For the delivering worker: take due notifications, report outcomes.
-- The claim commits before the sends (no transaction across the network),
-- so it leases the rows: their next_attempt_at moves past the time the
-- worker may need to send them (twice vms.notifier_timeout_ms for each
-- round of vms.notifier_concurrency requests the batch takes), and a second
-- notifier skips them until then.  vms._notify_result ends the lease (a
-- retry sets the next attempt); a notifier that dies mid-batch leaves its
-- rows to be taken again when the lease runs out (at least once).
CREATE FUNCTION vms._notify_claim(lim integer DEFAULT 100)
    RETURNS TABLE (id bigint, kind text, url text, mail_to text[], dedup_key text, body text)
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    WITH due AS (
        SELECT q.id FROM vms.notify_outbox q WHERE q.state = 'pending' AND q.next_attempt_at <= now()
         ORDER BY q.next_attempt_at, q.id LIMIT lim FOR UPDATE SKIP LOCKED
    ), leased AS (
        UPDATE vms.notify_outbox o
           SET next_attempt_at = now() + 2
                   * coalesce(nullif(current_setting('vms.notifier_timeout_ms', true), '')::interval, interval '10 seconds')
                   * ceil(greatest(lim, 1)::numeric
                          / coalesce(nullif(current_setting('vms.notifier_concurrency', true), '')::integer, 16))::integer
          FROM due WHERE o.id = due.id
        RETURNING o.id, o.route_id, o.dedup_key, o.body
    )
    SELECT l.id, r.kind, r.url, r.mail_to, l.dedup_key, l.body
      FROM leased l JOIN vms.notify_route r ON r.id = l.route_id
     ORDER BY l.id
$$;
COMMENT ON FUNCTION vms._notify_claim(integer) IS
    'internal: due notifications for the notifier, leased (next_attempt_at moved past the time their sending may take) so that another notifier skips them';

CREATE FUNCTION vms._notify_result(outbox_id bigint, ok boolean, status text, error text) RETURNS text
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    o vms.notify_outbox;
    r vms.notify_route;
BEGIN
    SELECT * INTO o FROM vms.notify_outbox x WHERE x.id = outbox_id FOR UPDATE;
    IF NOT FOUND OR o.state <> 'pending' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO r FROM vms.notify_route x WHERE x.id = o.route_id;
    IF ok THEN
        UPDATE vms.notify_outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = now(),
               last_status = status, last_error = NULL WHERE id = o.id;
        RETURN 'delivered';
    ELSIF o.attempts + 1 >= r.max_attempts THEN
        UPDATE vms.notify_outbox SET state = 'dead', attempts = attempts + 1, dead_at = now(),
               last_status = status, last_error = error WHERE id = o.id;
        RETURN 'dead';
    END IF;
    -- back off: 10 s, 20 s, 40 s ... at most an hour
    UPDATE vms.notify_outbox SET attempts = attempts + 1, last_status = status, last_error = error,
           next_attempt_at = now() + least(interval '10 seconds' * power(2, o.attempts), interval '1 hour')
     WHERE id = o.id;
    RETURN 'retry';
END $$;
COMMENT ON FUNCTION vms._notify_result(bigint, boolean, text, text) IS
    'internal: the notifier reports a delivery: delivered, or retried with backoff, or dead after the route''s max_attempts';

CREATE FUNCTION vms.notify_redrive(ids bigint[] DEFAULT NULL) RETURNS integer
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    WITH r AS (UPDATE vms.notify_outbox SET state = 'pending', attempts = 0, next_attempt_at = now(), dead_at = NULL
                WHERE state = 'dead' AND (ids IS NULL OR id = ANY (ids)) RETURNING 1),
    n AS (SELECT count(*)::int AS n FROM r)
    -- wake the notifier at commit when there is something to send
    SELECT n.n FROM n LEFT JOIN LATERAL (SELECT vms._wake_worker('notifier') WHERE n.n > 0) w ON true
$$;
COMMENT ON FUNCTION vms.notify_redrive(bigint[]) IS 'send dead notifications again (all, or the given ids); returns how many';

INSERT INTO vms.retention_policy (table_name, time_column, keep, only_where)
VALUES ('notify_outbox', 'created_at', '30 days', 'state <> ''pending''');
