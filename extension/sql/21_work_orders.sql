-- Work orders (派工单): an alarm dispatched to a maintainer, through
--   open -> accepted (接单) -> on_site (到场) -> resolved (处理完成) -> confirmed (确认)
-- and back from resolved to accepted when the fix is rejected.  Every
-- transition keeps who, when and a note; the KPIs (response, on-site and
-- resolution times) come from those rows.

CREATE TABLE vms.work_order (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id    bigint NOT NULL REFERENCES vms.alarm (id) ON DELETE CASCADE,
    assignee    text NOT NULL,
    state       text NOT NULL DEFAULT 'open'
                CHECK (state IN ('open', 'accepted', 'on_site', 'resolved', 'confirmed')),
    opened_by   text NOT NULL DEFAULT session_user,
    opened_at   timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX work_order_alarm_idx ON vms.work_order (alarm_id) WHERE state <> 'confirmed';
COMMENT ON TABLE vms.work_order IS
    'work orders (派工单): an alarm dispatched to an assignee; states open, accepted (接单), on_site (到场), resolved (处理完成), confirmed (确认); one unconfirmed order per alarm';

CREATE TABLE vms.work_order_transition (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_order_id  bigint NOT NULL REFERENCES vms.work_order (id) ON DELETE CASCADE,
    from_state     text,
    to_state       text NOT NULL,
    actor          text NOT NULL DEFAULT session_user,
    at             timestamptz NOT NULL DEFAULT now(),
    note           text
);
CREATE INDEX work_order_transition_order_idx ON vms.work_order_transition (work_order_id, id);
COMMENT ON TABLE vms.work_order_transition IS
    'every work order transition: from and to state, who, when, note (a rejection is resolved -> accepted)';

CREATE FUNCTION vms.work_order_open(alarm_id bigint, assignee text) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    a vms.alarm;
    order_id bigint;
BEGIN
    IF coalesce(btrim(assignee), '') = '' THEN
        RAISE EXCEPTION 'a work order needs an assignee' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Name the maintainer (or team) the order is dispatched to.';
    END IF;
    SELECT * INTO a FROM vms.alarm x WHERE x.id = work_order_open.alarm_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alarm % does not exist', alarm_id USING ERRCODE = 'no_data_found';
    END IF;
    IF a.state = 'cleared' THEN
        RAISE EXCEPTION 'alarm % is cleared: no work order for it', alarm_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Alarm %s (%s on %s) was cleared: %s.', a.id, a.fault_type, a.code,
                                  coalesce(a.clear_reason, 'no reason given')),
                  HINT = 'Open work orders for active alarms.';
    END IF;
    IF EXISTS (SELECT 1 FROM vms.work_order w WHERE w.alarm_id = a.id AND w.state <> 'confirmed') THEN
        RAISE EXCEPTION 'alarm % has a work order already', alarm_id
            USING ERRCODE = 'unique_violation',
                  DETAIL = format('Work order %s is %s.',
                                  (SELECT w.id FROM vms.work_order w WHERE w.alarm_id = a.id AND w.state <> 'confirmed'),
                                  (SELECT w.state FROM vms.work_order w WHERE w.alarm_id = a.id AND w.state <> 'confirmed')),
                  HINT = 'Follow that order, or reassign it.';
    END IF;
    INSERT INTO vms.work_order (alarm_id, assignee) VALUES (a.id, btrim(assignee)) RETURNING id INTO order_id;
    INSERT INTO vms.work_order_transition (work_order_id, from_state, to_state, note)
    VALUES (order_id, NULL, 'open', 'dispatched to ' || btrim(assignee));
    -- dispatching is the repair plan
    PERFORM vms.alarm_plan(a.id, format('work order %s to %s', order_id, btrim(assignee)));
    RETURN order_id;
END $$;
COMMENT ON FUNCTION vms.work_order_open(bigint, text) IS
    'dispatch an active alarm to an assignee: a work order in state open (meets the alarm''s plan deadline); returns its id';

CREATE FUNCTION vms.work_order_move(order_id bigint, to_state text, note text DEFAULT NULL) RETURNS text
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    w vms.work_order;
    a vms.alarm;
    allowed text[];
BEGIN
    SELECT * INTO w FROM vms.work_order x WHERE x.id = order_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'work order % does not exist', order_id USING ERRCODE = 'no_data_found';
    END IF;
    allowed := CASE w.state WHEN 'open' THEN '{accepted}' WHEN 'accepted' THEN '{on_site}'
                            WHEN 'on_site' THEN '{resolved}' WHEN 'resolved' THEN '{confirmed,accepted}'
                            ELSE '{}' END;
    IF to_state IS NULL OR NOT to_state = ANY (allowed) THEN
        RAISE EXCEPTION 'work order % cannot go from % to %', order_id, w.state, coalesce(to_state, 'nothing')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = CASE WHEN cardinality(allowed) = 0 THEN 'A confirmed order is closed.'
                                ELSE format('From %s it can go to %s.', w.state, array_to_string(allowed, ' or ')) END,
                  HINT = 'The states run open, accepted, on_site, resolved, confirmed; a resolved order can be rejected back to accepted.';
    END IF;
    IF w.state = 'resolved' AND to_state = 'accepted' AND coalesce(btrim(note), '') = '' THEN
        RAISE EXCEPTION 'rejecting work order % needs a reason', order_id
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Say what is still wrong in the note.';
    END IF;
    IF to_state = 'confirmed' THEN
        SELECT * INTO a FROM vms.alarm x WHERE x.id = w.alarm_id;
        IF a.state <> 'cleared' THEN
            RAISE EXCEPTION 'work order % cannot be confirmed while its alarm is active', order_id
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('Alarm %s (%s on %s, level %s) is %s.', a.id, a.fault_type, a.code, a.level, a.state),
                      HINT = 'Confirm once the alarm has cleared (the fault is gone), or reject the order back to accepted.';
        END IF;
    END IF;
    UPDATE vms.work_order SET state = to_state, updated_at = now() WHERE id = w.id;
    INSERT INTO vms.work_order_transition (work_order_id, from_state, to_state, note)
    VALUES (w.id, w.state, to_state, note);
    -- accepting is the response to the alarm
    IF to_state = 'accepted' AND w.state = 'open' THEN
        PERFORM vms.alarm_acknowledge(w.alarm_id);
    END IF;
    RETURN to_state;
END $$;
COMMENT ON FUNCTION vms.work_order_move(bigint, text, text) IS
    'move a work order: open -> accepted (acknowledges the alarm) -> on_site -> resolved -> confirmed (only once the alarm has cleared), or resolved -> accepted (a rejection, with a reason); who, when and note kept';

CREATE FUNCTION vms.work_order_accept(order_id bigint, note text DEFAULT NULL) RETURNS text
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms.work_order_move(order_id, 'accepted', note);
COMMENT ON FUNCTION vms.work_order_accept(bigint, text) IS 'accept (接单) an open work order';
CREATE FUNCTION vms.work_order_arrive(order_id bigint, note text DEFAULT NULL) RETURNS text
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms.work_order_move(order_id, 'on_site', note);
COMMENT ON FUNCTION vms.work_order_arrive(bigint, text) IS 'the assignee is on site (到场)';
CREATE FUNCTION vms.work_order_resolve(order_id bigint, note text DEFAULT NULL) RETURNS text
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms.work_order_move(order_id, 'resolved', note);
COMMENT ON FUNCTION vms.work_order_resolve(bigint, text) IS 'the assignee reports the fault fixed (处理完成)';
CREATE FUNCTION vms.work_order_confirm(order_id bigint, note text DEFAULT NULL) RETURNS text
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms.work_order_move(order_id, 'confirmed', note);
COMMENT ON FUNCTION vms.work_order_confirm(bigint, text) IS 'confirm (确认) a resolved work order; refused while its alarm is active';
CREATE FUNCTION vms.work_order_reject(order_id bigint, note text) RETURNS text
    LANGUAGE sql SET search_path FROM CURRENT
    RETURN vms.work_order_move(order_id, 'accepted', note);
COMMENT ON FUNCTION vms.work_order_reject(bigint, text) IS 'reject a resolved work order back to accepted, with the reason';

-- KPIs from the transitions: response = first acceptance, on site = first
-- arrival, resolution = last resolution, each counted from the opening.
CREATE VIEW vms.work_order_kpi AS
SELECT w.id AS work_order_id, w.alarm_id, w.assignee, w.state, a.code, a.fault_type, a.level, a.contract_id,
       t.opened_at, t.accepted_at, t.on_site_at, t.resolved_at, t.confirmed_at, t.rejections,
       extract(epoch FROM t.accepted_at - t.opened_at)::float8 AS response_seconds,
       extract(epoch FROM t.on_site_at - t.opened_at)::float8 AS on_site_seconds,
       extract(epoch FROM t.resolved_at - t.opened_at)::float8 AS resolution_seconds,
       t.accepted_at <= a.respond_by AS responded_in_time,
       coalesce(a.cleared_at, t.resolved_at) <= a.fix_by AS fixed_in_time
  FROM vms.work_order w
  JOIN vms.alarm a ON a.id = w.alarm_id
 CROSS JOIN LATERAL (
     SELECT min(x.at) FILTER (WHERE x.to_state = 'open') AS opened_at,
            min(x.at) FILTER (WHERE x.to_state = 'accepted' AND x.from_state = 'open') AS accepted_at,
            min(x.at) FILTER (WHERE x.to_state = 'on_site') AS on_site_at,
            max(x.at) FILTER (WHERE x.to_state = 'resolved') AS resolved_at,
            max(x.at) FILTER (WHERE x.to_state = 'confirmed') AS confirmed_at,
            count(*) FILTER (WHERE x.from_state = 'resolved' AND x.to_state = 'accepted')::int AS rejections
       FROM vms.work_order_transition x WHERE x.work_order_id = w.id) t;
COMMENT ON VIEW vms.work_order_kpi IS
    'per work order: opening, first acceptance, first arrival, last resolution, confirmation, rejections; response, on-site and resolution seconds from the opening; whether the alarm''s response and fix deadlines were met';
