-- notification routes and the outbox: what is queued for whom, rendered
-- bodies (a DingTalk robot template), quiet hours at pinned times, the
-- delivery bookkeeping (delivered, retried with backoff, dead, redriven)
-- and de-duplication ids
\set SHOW_CONTEXT never
SET search_path = public, vms;
INSERT INTO vms.device (code, name, civil_code) VALUES
    ('11010500001180000001', 'NVR', '110105'), ('11010500001320000002', 'IPC', '110105'),
    ('11010800001180000003', '海淀NVR', '110108');
-- a DingTalk robot for level I and II alarms of 朝阳 (110105): raised, escalated, cleared
SELECT vms.notify_route_add('朝阳钉钉', 'https://oapi.dingtalk.com/robot/send?access_token=x',
    '{"levels": [1, 2], "regions": ["110105"], "events": ["raised", "escalated", "cleared"],
      "template": "{\"msgtype\": \"text\", \"text\": {\"content\": \"{{level_name}}告警 {{code}} {{fault_type}} {{reason}} ({{id}})\"}}"}') AS dingtalk \gset
-- mail for work orders, quiet at night
SELECT vms.notify_route_add('运维邮件', 'smtp://127.0.0.1:2525',
    '{"events": ["work_order"], "mail_to": ["ops@example.org"], "quiet_hours": {"from": "22:00", "to": "07:00", "tz": "Asia/Shanghai"}}') AS mail \gset
SELECT name, kind, filter, quiet_hours, mail_to, template IS NOT NULL AS templated FROM vms.notify_route ORDER BY id;

-- the NVR goes offline: queued for the robot; the IPC (level III) and the
-- Haidian NVR (another region) are not
INSERT INTO vms.device_event (device_code, at, event, cause) VALUES
    ('11010500001180000001', now(), 'offline', 'keepalive timeout'),
    ('11010500001320000002', now(), 'offline', 'keepalive timeout'),
    ('11010800001180000003', now(), 'offline', 'keepalive timeout');
SELECT r.name, o.doc ->> 'event' AS event, o.doc ->> 'code' AS code, o.doc ->> 'level' AS level, o.state,
       o.dedup_key = o.doc ->> 'id' AS doc_carries_its_id, o.dedup_key ~ '^vms:[0-9]+:alarm:[0-9]+$' AS id_form,
       (o.body::jsonb) #>> '{text,content}' ~ '^严重告警 11010500001180000001 offline  \(vms:[0-9]+:alarm:[0-9]+\)$' AS rendered
  FROM vms.notify_outbox o JOIN vms.notify_route r ON r.id = o.route_id ORDER BY o.id;
-- it comes back: the clear is queued with its reason
INSERT INTO vms.device_event (device_code, at, event, cause) VALUES ('11010500001180000001', now(), 'online', 'registered');
SELECT o.doc ->> 'event' AS event, (o.body::jsonb) #>> '{text,content}' LIKE '%back online: registered%' AS reason_in_body
  FROM vms.notify_outbox o ORDER BY o.id;
-- the same event queued again is not queued twice
SELECT vms._notify_enqueue('alarm', (SELECT min(id) FROM vms.alarm_event), '{"event": "raised"}', 2::smallint, 'sip',
                           'offline', '11010500001180000001') AS queued_again;
-- a work order on the Haidian NVR's alarm: mail, not before 07:00 Shanghai when opened at night
SELECT vms.work_order_open(id, '张工') > 0 AS opened FROM vms.alarm WHERE code = '11010800001180000003';
SELECT r.name, o.doc ->> 'state' AS state, o.doc ->> 'assignee' AS assignee,
       o.next_attempt_at = vms._notify_not_before(r.quiet_hours, o.created_at) AS held_by_quiet_hours
  FROM vms.notify_outbox o JOIN vms.notify_route r ON r.id = o.route_id WHERE r.kind = 'smtp';
-- quiet hours 22:00-07:00 in Shanghai at pinned times (seconds of delay)
SELECT at, extract(epoch FROM vms._notify_not_before('{"from": "22:00", "to": "07:00", "tz": "Asia/Shanghai"}', at::timestamptz) - at::timestamptz) AS held_s
  FROM (VALUES ('2026-03-01 23:30+08'), ('2026-03-01 06:00+08'), ('2026-03-01 12:00+08'), ('2026-03-01 22:00+08'),
               ('2026-03-01 07:00+08')) v(at);
SELECT extract(epoch FROM vms._notify_not_before('{"from": "12:00", "to": "13:00", "tz": "UTC"}', '2026-03-01 12:30+00') - '2026-03-01 12:30+00'::timestamptz) AS lunch_s;

-- delivery: the worker's side
UPDATE vms.notify_outbox SET next_attempt_at = now() - interval '1 second';
SELECT count(*) AS claimed, bool_and(body IS NOT NULL) AS bodies, array_agg(DISTINCT kind ORDER BY kind) AS kinds FROM vms._notify_claim(100);
-- the claim leased them: a second notifier claiming now gets none of them
SELECT count(*) AS pending, bool_and(next_attempt_at > now()) AS leased FROM vms.notify_outbox WHERE state = 'pending';
SELECT count(*) AS claimed_again FROM vms._notify_claim(100);
SELECT vms._notify_result(min(id), true, '200', NULL) AS first FROM vms.notify_outbox;
SELECT vms._notify_result(max(id), false, '503', 'robot busy') AS second FROM vms.notify_outbox;
SELECT state, attempts, last_status, last_error, extract(epoch FROM next_attempt_at - now()) BETWEEN 9 AND 11 AS backoff_10s
  FROM vms.notify_outbox WHERE id = (SELECT max(id) FROM vms.notify_outbox);
UPDATE vms.notify_route SET max_attempts = 2;
SELECT vms._notify_result(max(id), false, NULL, 'connection refused') AS third FROM vms.notify_outbox;
SELECT vms._notify_result(max(id), true, '200', NULL) AS after_dead FROM vms.notify_outbox;
SELECT state, count(*) FROM vms.notify_outbox GROUP BY 1 ORDER BY 1;
SELECT vms.notify_redrive() AS redriven;
SELECT state, attempts FROM vms.notify_outbox WHERE id = (SELECT max(id) FROM vms.notify_outbox);

-- the template renderer on its own: nested keys, escaping, missing keys
SELECT vms.notify_render('{"t": "{{a}} {{b.c}} [{{missing}}]"}', '{"a": "say \"hi\"\n", "b": {"c": 5}}') AS rendered,
       vms.notify_render(NULL, '{"a": 1}') AS no_template;
\set VERBOSITY default
SELECT vms.notify_route_add('x', 'ftp://example.org');
SELECT vms.notify_route_add('x', 'https://example.org', '{"level": [1]}');
SELECT vms.notify_route_add('x', 'https://example.org', '{"events": ["opened"]}');
SELECT vms.notify_route_add('x', 'smtp://example.org');
SELECT vms.notify_route_add('x', 'https://example.org', '{"quiet_hours": {"from": "25:00", "to": "07:00"}}');
SELECT vms.notify_route_add('x', 'smtp://example.org', '{"mail_to": ["a@example.org"], "mail_from": "not an address"}');
-- every mail_to element is one address: a line break would add mail headers
SELECT vms.notify_route_add('x', 'smtp://example.org', '{"mail_to": ["ops@example.org", "a@example.org\r\nBcc: evil@example.org"]}');
SELECT vms.notify_route_add('x', 'smtp://example.org', '{"mail_to": ["ops@example.org", 5]}');
SELECT vms.notify_route_add('x', 'smtp://example.org', '{"mail_to": ["ops@example.org, evil@example.org"]}');

-- a role that may only insert alarm events (a DBA's grant) still gets them
-- queued: the notify trigger runs as the owner (SECURITY DEFINER)
SELECT min(id) AS nvr_alarm FROM vms.alarm WHERE code = '11010500001180000001' \gset
CREATE ROLE regress_notify_writer;
GRANT USAGE ON SCHEMA vms TO regress_notify_writer;
GRANT INSERT ON vms.alarm_event TO regress_notify_writer;
SET ROLE regress_notify_writer;
INSERT INTO vms.alarm_event (alarm_id, kind, level, notify) VALUES (:nvr_alarm, 'escalated', 1, true);
RESET ROLE;
SELECT r.name, o.doc ->> 'event' AS event, o.doc ->> 'level' AS level, o.state
  FROM vms.notify_outbox o JOIN vms.notify_route r ON r.id = o.route_id WHERE o.doc ->> 'event' = 'escalated';
SELECT has_function_privilege('regress_notify_writer', 'vms._notify_alarm_events()', 'EXECUTE') AS writer_may_call_trigger_fn;
DROP OWNED BY regress_notify_writer;
DROP ROLE regress_notify_writer;
