-- ledger history: every insert, update and delete with who, when, old and new
\set SHOW_CONTEXT never
SET search_path = public, vms;
SET client_min_messages = warning;
TRUNCATE vms.ledger_history;
CREATE ROLE vms_regress_editor;
GRANT USAGE ON SCHEMA vms TO vms_regress_editor;
GRANT SELECT, INSERT, UPDATE, DELETE ON vms.device, vms.channel, vms.ledger_history TO vms_regress_editor;
-- row-level security: the editor may manage the whole ledger
INSERT INTO vms.access_grant (grantee, scope_kind, actions, max_level, granted_by)
VALUES ('vms_regress_editor', 'all', '{view_live,manage_ledger}', 4, 'regress');

INSERT INTO vms.device (code, name) VALUES ('11010500001180000010', 'NVR-10');
INSERT INTO vms.channel (code, device_code, name) VALUES
    ('11010500001320000010', '11010500001180000010', '东门'),
    ('11010500001320000011', '11010500001180000010', '西门');
SET ROLE vms_regress_editor;
SET vms.change_reason = '现场核查 2026-11';
UPDATE vms.channel SET name = '东门入口', azimuth = 120 WHERE code = '11010500001320000010';
-- an update that changes nothing records nothing
UPDATE vms.channel SET name = name WHERE code = '11010500001320000011';
-- state columns (online) are not ledger history
UPDATE vms.channel SET online = true WHERE code = '11010500001320000011';
DELETE FROM vms.channel WHERE code = '11010500001320000011';
RESET vms.change_reason;
RESET ROLE;

SELECT table_name, code, op, changed_by = session_user AS by_session_user, acting_role, reason,
       old_values - 'created_at' AS old_values, new_values ->> 'name' AS new_name, new_values ? 'online' AS has_online
  FROM vms.ledger_history ORDER BY id;
SELECT old_values, new_values FROM vms.ledger_history WHERE op = 'UPDATE';
SELECT old_values ->> 'name' AS deleted_name FROM vms.ledger_history WHERE op = 'DELETE';
-- multi-row statements record one row per changed record
UPDATE vms.channel SET alias = 'A' WHERE device_code = '11010500001180000010';
SELECT count(*) FROM vms.ledger_history WHERE op = 'UPDATE' AND new_values ? 'alias';
-- history of a device deleted with its channels (cascade)
DELETE FROM vms.device WHERE code = '11010500001180000010';
SELECT table_name, op, count(*) FROM vms.ledger_history WHERE op = 'DELETE' GROUP BY 1, 2 ORDER BY 1;
REVOKE ALL ON vms.device, vms.channel, vms.ledger_history FROM vms_regress_editor;
ALTER TABLE vms.access_grant DISABLE TRIGGER access_grant_audit;
DELETE FROM vms.access_grant WHERE grantee = 'vms_regress_editor';
ALTER TABLE vms.access_grant ENABLE TRIGGER access_grant_audit;
REVOKE USAGE ON SCHEMA vms FROM vms_regress_editor;
DROP ROLE vms_regress_editor;
-- history rows carry every ledger column except state columns: a column
-- added to the table without adding it to history fails here
SELECT array_agg(attname ORDER BY attname) FILTER (WHERE NOT vms._channel_jsonb(c) ? attname) AS channel_columns_missing_from_history
  FROM pg_attribute, (SELECT NULL::vms.channel AS c) r
 WHERE attrelid = 'vms.channel'::regclass AND attnum > 0 AND NOT attisdropped
   AND attname NOT IN ('online', 'status_changed_at', 'overridden', 'created_at', 'updated_at', 'geom_3857');
SELECT array_agg(attname ORDER BY attname) FILTER (WHERE NOT vms._device_jsonb(d) ? attname) AS device_columns_missing_from_history
  FROM pg_attribute, (SELECT NULL::vms.device AS d) r
 WHERE attrelid = 'vms.device'::regclass AND attnum > 0 AND NOT attisdropped
   AND attname NOT IN ('online', 'status_changed_at', 'registered_at', 'last_keepalive_at', 'overridden', 'created_at', 'updated_at');
-- audit entries of ledger edits (one per statement) are queued in
-- vms.audit_pending and appended to the chain at commit, in statement
-- order, after the entries appended at once meanwhile (vms.audit returns
-- its seq); a rolled-back subtransaction drops its own entries only
SELECT max(seq) AS audit_before FROM vms.audit_log \gset
BEGIN;
INSERT INTO vms.device (code, name) VALUES ('11010500001180000020', 'NVR-20');
INSERT INTO vms.channel (code, device_code, name) VALUES ('11010500001320000020', '11010500001180000020', '北门');
SAVEPOINT s;
UPDATE vms.channel SET name = '北门入口' WHERE code = '11010500001320000020';
SELECT count(*) AS pending_in_savepoint FROM vms.audit_pending;
ROLLBACK TO SAVEPOINT s;
UPDATE vms.channel SET alias = 'N' WHERE code = '11010500001320000020';
SELECT vms.audit('regress_immediate', 'x') - :audit_before AS immediate_entry;
SELECT action, object, detail FROM vms.audit_pending ORDER BY id;
SELECT count(*) AS in_log_before_commit FROM vms.audit_log WHERE seq > :audit_before;
COMMIT;
SELECT seq - :audit_before AS n, session_role = session_user AS by_session_user, action, object, detail
  FROM vms.audit_log WHERE seq > :audit_before ORDER BY seq;
SELECT count(*) AS pending_after_commit FROM vms.audit_pending;
-- a rolled-back transaction leaves no entry and nothing pending
SELECT max(seq) AS audit_before FROM vms.audit_log \gset
BEGIN;
UPDATE vms.channel SET name = '北门二' WHERE code = '11010500001320000020';
ROLLBACK;
SELECT count(*) AS entries_after_rollback FROM vms.audit_log WHERE seq > :audit_before;
SELECT count(*) AS pending_after_rollback FROM vms.audit_pending;
-- SET CONSTRAINTS ... IMMEDIATE appends what is queued at once; a savepoint
-- rolled back after it undoes that append, and the commit appends again
BEGIN;
UPDATE vms.channel SET name = '北门三' WHERE code = '11010500001320000020';
SAVEPOINT s;
SET CONSTRAINTS vms.audit_pending_append IMMEDIATE;
SELECT count(*) AS appended_at_once, (SELECT count(*) FROM vms.audit_pending) AS pending
  FROM vms.audit_log WHERE seq > :audit_before;
UPDATE vms.channel SET name = '北门四' WHERE code = '11010500001320000020';
ROLLBACK TO SAVEPOINT s;
SELECT count(*) AS appended_after_rollback_to_savepoint, (SELECT count(*) FROM vms.audit_pending) AS pending
  FROM vms.audit_log WHERE seq > :audit_before;
COMMIT;
SELECT seq - :audit_before AS n, action, object, detail FROM vms.audit_log WHERE seq > :audit_before ORDER BY seq;
-- an import: one entry per statement, as the ordinary path writes
SELECT max(seq) AS audit_before FROM vms.audit_log \gset
SELECT (j).loaded_rows, (j).rejected_rows, (j).created_devices
  FROM (SELECT vms.ledger_import(convert_to(E'code,name,device_code\n11010500001320000030,东站,11010500001180000030\n11010500001320000031,西站,11010500001180000030\n11010500001320000020,北门五,11010500001180000020\n', 'UTF8'), 'auto', 'history.csv') AS j) s;
SELECT seq - :audit_before AS n, action, object, detail FROM vms.audit_log WHERE seq > :audit_before ORDER BY seq;
SELECT count(*) AS pending_after_import FROM vms.audit_pending;
-- at stays in seq order, and the chain holds
SELECT count(*) FILTER (WHERE at < prev_at) AS at_out_of_order
  FROM (SELECT at, lag(at) OVER (ORDER BY seq) AS prev_at FROM vms.audit_log) s;
SELECT ok, problem FROM vms.audit_verify();
DELETE FROM vms.device WHERE code IN ('11010500001180000020', '11010500001180000030');
