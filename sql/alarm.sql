-- alarms: levels I-IV, one open alarm per code and fault type with a count
\set SHOW_CONTEXT never
SET search_path = public, vms;
SELECT level, roman, name_zh, name_en, respond_within, fix_within FROM vms.alarm_level ORDER BY level;
SELECT vms.alarm_raise('11010500001320000005', 'black_screen', 3::smallint, 'inspection', '{"luma": 3.1}') AS first_id \gset
SELECT vms.alarm_raise('11010500001320000005', 'black_screen', 2::smallint, 'inspection', '{"luma": 2.0}') = :first_id AS same_alarm;
SELECT fault_type, level, state, occurrences, detail, fix_by - last_raised_at AS fix_window_after_escalation
  FROM vms.alarm WHERE id = :first_id;
SELECT vms.alarm_raise('11010500001320000005', 'blur', 4::smallint, 'inspection') <> :first_id AS other_fault_other_alarm;
SELECT vms.alarm_acknowledge(:first_id), vms.alarm_acknowledge(:first_id);
SELECT state, acknowledged_by = session_user FROM vms.alarm WHERE id = :first_id;
SELECT vms.alarm_clear('11010500001320000005', 'black_screen', 'picture back'), vms.alarm_clear('11010500001320000005', 'black_screen');
-- after clearing, the same fault opens a new alarm
SELECT vms.alarm_raise('11010500001320000005', 'black_screen', 1::smallint, 'inspection') <> :first_id AS new_alarm;
SELECT fault_type, state, level, respond_by IS NOT NULL AS has_response_deadline FROM vms.alarm ORDER BY id;
\set VERBOSITY default
SELECT vms.alarm_raise('11010500001320000005', 'x', 5::smallint, 'inspection');
\set VERBOSITY terse
SELECT vms.alarm_raise('11010500001320000005', 'x', 1::smallint, 'astrology');
