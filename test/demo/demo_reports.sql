-- A month of synthetic operations history for the demo district, so the
-- reports (vms.report_html) have something to show: the ledger's NVRs
-- online from 30 days ago (China time), outages on random days, daily
-- inspections of one camera in eight with some failures, the alarms of
-- the outages and faults with their deadlines, work orders for most of
-- them, and two maintenance contractors.  Deterministic (setseed); written
-- once (a second `make run` finds it and does nothing).
SET search_path = public, vms;
SELECT setseed(0.19);

DO $$
DECLARE
    d0 date := (now() AT TIME ZONE 'Asia/Shanghai')::date - 30;
    t0 timestamptz;
BEGIN
    IF EXISTS (SELECT 1 FROM vms.device_event WHERE cause = 'demo history') THEN
        RETURN;
    END IF;
    t0 := d0::timestamp AT TIME ZONE 'Asia/Shanghai';

    -- maintenance contractors: the traffic unit's and the streets'
    INSERT INTO vms.maintenance_contract (name, contractor, starts_on)
    VALUES ('朝阳交通视频维保', '京视运维公司', d0), ('朝阳街道视频维保', '安达信息技术', d0)
    ON CONFLICT (name) DO NOTHING;
    INSERT INTO vms.maintenance_scope (contract_id, unit_id)
    SELECT k.id, u.id FROM vms.maintenance_contract k, vms.org_unit u
     WHERE (k.name = '朝阳交通视频维保' AND u.name = '朝阳交通支队')
        OR (k.name = '朝阳街道视频维保' AND u.name = '朝阳分局')
    ON CONFLICT DO NOTHING;

    -- the past is written with its own times: alarms are inserted below
    ALTER TABLE vms.device_event DISABLE TRIGGER device_event_alarm;
    CREATE TEMP TABLE demo_dev AS
    SELECT d.code, row_number() OVER (ORDER BY d.code) AS i FROM vms.device d
     WHERE EXISTS (SELECT 1 FROM vms.channel c WHERE c.device_code = d.code);
    INSERT INTO vms.device_event (device_code, at, event, cause)
    SELECT code, t0, 'online', 'demo history' FROM demo_dev;
    -- outages: about one device in six, once or twice a month, 1 to 20 hours;
    -- the streets to the east (higher numbers) fare worse
    CREATE TEMP TABLE demo_out AS
    SELECT o.code, o.down, o.down + make_interval(hours => 1 + (random() * 19)::int) AS up
      FROM (SELECT d.code, t0 + make_interval(days => 1 + (random() * 27)::int, hours => (random() * 23)::int) AS down
              FROM demo_dev d, generate_series(1, 2) k
             WHERE random() < 0.06 + 0.12 * (substr(d.code::text, 7, 2)::int % 16) / 16.0) o;
    DELETE FROM demo_out a USING demo_out b WHERE a.code = b.code AND a.down > b.down AND a.down < b.up;
    INSERT INTO vms.device_event (device_code, at, event, cause)
    SELECT code, down, 'offline', 'demo history: keepalive timeout' FROM demo_out
    UNION ALL
    SELECT code, up, 'online', 'demo history: registered' FROM demo_out WHERE up < now();
    ALTER TABLE vms.device_event ENABLE TRIGGER device_event_alarm;

    -- their alarms (level by device type), fixed by the deadline mostly
    INSERT INTO vms.alarm (code, fault_type, level, source, state, first_raised_at, last_raised_at,
                           respond_by, fix_by, cleared_at, clear_reason, detail)
    SELECT o.code, 'offline', vms.alarm_level_for('offline', o.code), 'sip', 'cleared', o.down, o.down,
           o.down + interval '30 minutes', o.down + interval '12 hours', o.up, 'back online: registered', '{"demo": true}'
      FROM demo_out o WHERE o.up < now();

    -- inspections: one camera in eight, daily at a fixed minute of the morning
    INSERT INTO vms.quality_result (channel_code, at, profile, stream_ok, image_ok, abnormal, checks)
    SELECT x.code, x.at, 'demo', x.r >= 0.03, x.r >= 0.08,
           CASE WHEN x.r < 0.03 THEN '{stream}'::text[]
                WHEN x.r < 0.08 THEN ARRAY[(ARRAY['black_screen', 'signal_loss', 'blur', 'occlusion', 'color_cast'])[1 + (x.r * 1000)::int % 5]]
                WHEN x.r < 0.11 THEN ARRAY[(ARRAY['blur', 'freeze', 'noise', 'brightness'])[1 + (x.r * 1000)::int % 4]]
                ELSE '{}' END, '{}'
      FROM (SELECT c.code, ((d0 + k) + time '08:00' + make_interval(mins => (abs(hashtext(c.code::text)) % 180)))
                   AT TIME ZONE 'Asia/Shanghai' AS at, random() AS r
              FROM vms.channel c, generate_series(0, 29) k
             WHERE abs(hashtext(c.code::text)) % 8 = 0) x
     WHERE x.at < now();

    -- alarms for the picture faults, a few still open past their deadline
    INSERT INTO vms.alarm (code, fault_type, level, source, state, first_raised_at, last_raised_at,
                           respond_by, fix_by, cleared_at, clear_reason, detail)
    SELECT DISTINCT ON (q.channel_code, q.abnormal[1]) q.channel_code, q.abnormal[1],
           CASE WHEN q.abnormal[1] IN ('stream', 'signal_loss', 'black_screen') THEN 2 ELSE 3 END, 'inspection',
           CASE WHEN random() < 0.85 THEN 'cleared' ELSE 'open' END, q.at, q.at,
           q.at + interval '30 minutes', q.at + CASE WHEN q.abnormal[1] IN ('stream', 'signal_loss', 'black_screen') THEN interval '24 hours' ELSE interval '48 hours' END,
           NULL, NULL, '{"demo": true}'
      FROM vms.quality_result q
     WHERE q.profile = 'demo' AND cardinality(q.abnormal) > 0
       AND NOT EXISTS (SELECT 1 FROM vms.alarm x WHERE x.code = q.channel_code AND x.fault_type = q.abnormal[1]
                                                   AND x.state <> 'cleared')
     ORDER BY q.channel_code, q.abnormal[1], q.at;
    UPDATE vms.alarm a SET cleared_at = least(a.first_raised_at + make_interval(hours => 2 + (random() * 60)::int), now()),
                           clear_reason = 'demo: fixed'
     WHERE a.state = 'cleared' AND a.cleared_at IS NULL AND a.detail ? 'demo';

    -- work orders for most alarms: dispatched, accepted, on site, resolved
    CREATE TEMP TABLE demo_wo AS
    SELECT a.id AS alarm_id, a.first_raised_at + make_interval(mins => 5 + (random() * 25)::int) AS opened,
           a.cleared_at, random() AS r
      FROM vms.alarm a WHERE a.detail ? 'demo' AND random() < 0.7;
    INSERT INTO vms.work_order (alarm_id, assignee, state, opened_at, updated_at)
    SELECT w.alarm_id, (ARRAY['维修一组', '维修二组', '维修三组'])[1 + (w.r * 3)::int % 3],
           CASE WHEN w.cleared_at IS NULL THEN 'accepted' ELSE 'confirmed' END, w.opened, w.opened
      FROM demo_wo w WHERE w.opened < now();
    INSERT INTO vms.work_order_transition (work_order_id, from_state, to_state, actor, at, note)
    SELECT o.id, s.f, s.t, o.assignee, s.at, 'demo'
      FROM vms.work_order o JOIN demo_wo w ON w.alarm_id = o.alarm_id
     CROSS JOIN LATERAL (VALUES
         (1, NULL, 'open', o.opened_at),
         (2, 'open', 'accepted', o.opened_at + make_interval(mins => 3 + (w.r * 40)::int)),
         (3, 'accepted', 'on_site', o.opened_at + make_interval(mins => 30 + (w.r * 120)::int)),
         (4, 'on_site', 'resolved', greatest(w.cleared_at - interval '5 minutes', o.opened_at + make_interval(mins => 31 + (w.r * 120)::int))),
         (5, 'resolved', 'confirmed', w.cleared_at)) s(n, f, t, at)
     WHERE s.at < now() AND (s.n <= 2 OR w.cleared_at IS NOT NULL)
     ORDER BY o.id, s.n;
    DROP TABLE demo_dev, demo_out, demo_wo;
END $$;
