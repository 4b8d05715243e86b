-- GA/T 1400: upstream settings, template mapping, identifiers, the outbox and
-- how answers are applied (the worker itself is tested in test/t/020_viid_push.pl)
\set SHOW_CONTEXT never
SET search_path = public, vms;
SET client_min_messages = warning;
-- a key of its own, in this cluster's data directory (the server's working directory)
COPY (SELECT 1) TO PROGRAM 'cat >/dev/null && head -c 32 /dev/urandom > vms_regress_viid_key && chmod 600 vms_regress_viid_key';
SET vms.secret_key_file = 'vms_regress_viid_key';
-- the 南园 cameras, whose changes sync_ledger sends (sql/fixtures/nanyuan.sql)
\getenv abs_srcdir PG_ABS_SRCDIR
\set ECHO none
\i :abs_srcdir/sql/fixtures/nanyuan.sql
\set ECHO all

SELECT vms.viid_add_upstream('district', 'http://127.0.0.1:9', '11010500005030000001', 'admin', 'admin',
                             '{"batch_size": 2, "max_attempts": 3}');
SELECT name, base_url, system_id, username, length(password_enc) > 30 AS encrypted, options FROM vms.viid_upstream;
SELECT vms.secret_decrypt(password_enc, 'viid_upstream.password_enc:' || name) FROM vms.viid_upstream;

-- secrets are bound to their row and column (the context is the AEAD's
-- associated data): a password copied to another upstream does not decrypt
-- there, for SQL or for the worker (same C function, same context)
SELECT vms.viid_add_upstream('county', 'http://127.0.0.1:9', '11010500005030000001', 'admin', 'county-pass');
SELECT name, vms.secret_decrypt(password_enc, 'viid_upstream.password_enc:' || name) FROM vms.viid_upstream ORDER BY name;
UPDATE vms.viid_upstream SET password_enc = (SELECT password_enc FROM vms.viid_upstream WHERE name = 'district')
 WHERE name = 'county';
\set VERBOSITY default
SELECT vms.secret_decrypt(password_enc, 'viid_upstream.password_enc:' || name) FROM vms.viid_upstream WHERE name = 'county';
SELECT vms.secret_decrypt(password_enc) FROM vms.viid_upstream WHERE name = 'district';   -- no context: not its place
-- the 0.1.0 form (no context) is not written any more; a rename needs the password again
UPDATE vms.viid_upstream SET password_enc = 'V1'::bytea || substr(password_enc, 3) WHERE name = 'county';
UPDATE vms.viid_upstream SET name = 'county2' WHERE name = 'county';
\set VERBOSITY terse
UPDATE vms.viid_upstream SET name = 'county2', password_enc = vms.secret_encrypt('county-pass', 'viid_upstream.password_enc:county2')
 WHERE name = 'county';
SELECT name, vms.secret_decrypt(password_enc, 'viid_upstream.password_enc:' || name) FROM vms.viid_upstream ORDER BY name;
SELECT vms.viid_drop_upstream('county2');
-- the key file holds exactly 32 bytes: longer or shorter is refused, not cut
-- (files in the data directory, this cluster's own)
SELECT current_setting('vms.secret_key_file') AS regress_key \gset
COPY (SELECT 1) TO PROGRAM 'cat >/dev/null && head -c 33 /dev/urandom > vms_regress_key_33 && head -c 31 /dev/urandom > vms_regress_key_31 && chmod 600 vms_regress_key_33 vms_regress_key_31';
\set VERBOSITY default
SET vms.secret_key_file = 'vms_regress_key_33';
SELECT vms.secret_encrypt('x', 'test.secret:1');
SET vms.secret_key_file = 'vms_regress_key_31';
SELECT vms.secret_decrypt(password_enc, 'viid_upstream.password_enc:' || name) FROM vms.viid_upstream;
\set VERBOSITY terse
SET vms.secret_key_file = :'regress_key';
SELECT upstream, state, pending, dead FROM vms.viid_session_status;
\set VERBOSITY default
SELECT vms.viid_add_upstream('bad', 'ftp://x', '11010500005030000001', 'a', 'b');
SELECT vms.viid_add_upstream('bad', 'http://x', '11010500005030000001', 'a', 'b', '{"batch_size": 0}');
SELECT vms.viid_add_upstream('bad', 'http://x', '11010500005030000001', 'a', 'b', '{"colour": 1}');
SELECT vms.viid_add_upstream('bad', 'http://x', '11010500005030000001', 'a', '');
SELECT vms.viid_alter_upstream('nosuch', enabled => false);
\set VERBOSITY terse
SELECT vms.viid_alter_upstream('district', options => '{"keepalive_s": 30}');
SELECT options FROM vms.viid_upstream;

-- identifiers: 41-digit image id and 48-digit object id, and their checks
SELECT vms.viid_image_id('11010500001320000001', 2, '2026-11-22 10:05:09', 42) AS image_id \gset
SELECT :'image_id', length(:'image_id');
SELECT vms.viid_object_id(:'image_id', 2, 7) AS object_id \gset
SELECT :'object_id', length(:'object_id'), vms.viid_id_problems(:'object_id');
SELECT vms.viid_id_problems('1101050000132000000102202611221005090004');        -- 40 digits
SELECT vms.viid_id_problems('11010500009990000001022026112210050900042');       -- wrong device part
SELECT vms.viid_id_problems('11010500001320000001022026133210050900042');       -- month 13
SELECT vms.viid_id_problems('1101050000132000000102202611221005090004x');       -- not digits
SELECT vms.viid_object_id('123', 2, 1);
SELECT vms.viid_image_id('11010500001320000001', 100, now()::timestamp, 1);

-- templates: renamed fields, value maps, dates, defaults, required fields
INSERT INTO vms.viid_template VALUES ('vendor_a', 'MotorVehicle', '{
    "rename": {"plate": "PlateNo", "color": "PlateColor", "time": "PassTime", "id": "MotorVehicleID"},
    "values": {"PlateColor": {"蓝": "2", "黄": "1", "白": "3", "黑": "4"}},
    "dates": {"PassTime": "YYYY-MM-DD HH24:MI:SS"},
    "defaults": {"InfoKind": 1},
    "required": ["MotorVehicleID", "PlateNo", "PassTime"]}');
SELECT vms.viid_map('vendor_a', '{"id": "V1", "plate": "京A12345", "color": "蓝", "time": "2026-11-22 10:05:09"}');
\set VERBOSITY default
SELECT vms.viid_map('vendor_a', '{"id": "V1", "plate": "京A12345", "color": "紫", "time": "2026-11-22 10:05:09"}');
SELECT vms.viid_map('vendor_a', '{"id": "V1", "plate": "京A12345", "time": "22/11/2026"}');
SELECT vms.viid_map('vendor_a', '{"id": "V1", "time": "2026-11-22 10:05:09"}');
SELECT vms.viid_map('nosuch', '{}');
\set VERBOSITY terse

-- the outbox: enqueue in the caller's transaction, batches by kind
BEGIN;
SELECT vms.viid_enqueue('district', 'MotorVehicle', '{"MotorVehicleID": "MV-ROLLBACK"}') > 0;
ROLLBACK;
SELECT vms.viid_enqueue('district', 'MotorVehicle', jsonb_build_object('MotorVehicleID', 'MV-' || i)) > 0
  FROM generate_series(1, 3) i;
SELECT vms.viid_enqueue('district', 'Face', '{"FaceID": "F-1"}') > 0;
SELECT vms.viid_enqueue('district', 'MotorVehicle', '{"id": "MV-9", "plate": "京B1", "time": "2026-11-22 10:00:00"}', 'vendor_a') > 0;
SELECT vms.viid_enqueue('district', 'Image', '{"ImageInfo": {"ImageID": "IMG-1"}}') > 0;
\set VERBOSITY default
SELECT vms.viid_enqueue('district', 'Car', '{}');
SELECT vms.viid_enqueue('district', 'Face', '{"Name": "no id"}');
SELECT vms.viid_enqueue('nowhere', 'Face', '{"FaceID": "x"}');
\set VERBOSITY terse

-- the set-based form (issue 20): vms.viid_enqueue_many queues exactly the
-- rows one vms.viid_enqueue per document queues (every column but the id,
-- in the same order), with a template and without; both in one transaction,
-- so now() is the same, then rolled back
BEGIN;
CREATE TEMP TABLE many_in AS
SELECT n, jsonb_build_object('id', 'MANY-' || n, 'plate', '京C' || n, 'color', (ARRAY['蓝', '黄', '白', '黑'])[1 + n % 4],
                             'time', to_char(timestamp '2026-11-22 10:00:00' + n * interval '1 minute', 'YYYY-MM-DD HH24:MI:SS'))
       || CASE WHEN n % 3 = 0 THEN '{"InfoKind": 2, "extra": [1, {"a": null}]}'::jsonb ELSE '{}'::jsonb END
       -- null values (not mapped, not replaced by a default), a field renamed
       -- onto one the document has (jsonb_each's order decides), numbers
       || CASE WHEN n % 5 = 0 THEN '{"InfoKind": null, "color": null}'::jsonb ELSE '{}'::jsonb END
       || CASE WHEN n % 7 = 0 THEN jsonb_build_object('MotorVehicleID', 'OWN-' || n, 'speed', n * 1.5) ELSE '{}'::jsonb END AS d
  FROM generate_series(1, 500) n;
-- the mapping in C gives what vms.viid_map gives, document by document; a
-- template of another shape (a number to rename to) is left to vms.viid_map
INSERT INTO vms.viid_template VALUES ('vendor_odd', 'MotorVehicle', '{"rename": {"id": "MotorVehicleID", "plate": 5}}');
SELECT vms._viid_map_many('vendor_a', array_agg(d ORDER BY n)) = array_agg(vms.viid_map('vendor_a', d) ORDER BY n) AS c_maps_as_viid_map,
       vms._viid_map_many('vendor_odd', array_agg(d ORDER BY n)) IS NULL AS odd_shape_left_to_viid_map
  FROM many_in;
CREATE TEMP TABLE one_odd AS
SELECT n, vms.viid_enqueue('district', 'MotorVehicle', d, 'vendor_odd') AS id FROM many_in ORDER BY n;
CREATE TEMP TABLE many_odd AS
SELECT vms.viid_enqueue_many('district', 'MotorVehicle', array_agg(d ORDER BY n), 'vendor_odd') AS ids FROM many_in;
CREATE TEMP TABLE one_ids AS
SELECT n, vms.viid_enqueue('district', 'MotorVehicle', d, 'vendor_a') AS id FROM many_in ORDER BY n;
CREATE TEMP TABLE one_plain AS
SELECT n, vms.viid_enqueue('district', 'Face', jsonb_build_object('FaceID', 'F-MANY-' || n, 'n', n)) AS id FROM many_in ORDER BY n;
CREATE TEMP TABLE many_ids AS
SELECT vms.viid_enqueue_many('district', 'MotorVehicle', array_agg(d ORDER BY n), 'vendor_a') AS ids FROM many_in;
CREATE TEMP TABLE many_plain AS
SELECT vms.viid_enqueue_many('district', 'Face', array_agg(jsonb_build_object('FaceID', 'F-MANY-' || n, 'n', n) ORDER BY n)) AS ids FROM many_in;
CREATE FUNCTION pg_temp.rows_of(ids bigint[]) RETURNS jsonb[] LANGUAGE sql AS $$
    SELECT array_agg(to_jsonb(o) - 'id' ORDER BY u.n) FROM unnest(ids) WITH ORDINALITY u(id, n) JOIN vms.viid_outbox o ON o.id = u.id $$;
SELECT cardinality(m.ids) AS queued,
       m.ids = (SELECT array_agg(x ORDER BY x) FROM unnest(m.ids) x) AS ids_ascending,
       pg_temp.rows_of(m.ids) = pg_temp.rows_of((SELECT array_agg(id ORDER BY n) FROM one_ids)) AS same_rows_templated,
       pg_temp.rows_of(p.ids) = pg_temp.rows_of((SELECT array_agg(id ORDER BY n) FROM one_plain)) AS same_rows_plain,
       pg_temp.rows_of(o.ids) = pg_temp.rows_of((SELECT array_agg(id ORDER BY n) FROM one_odd)) AS same_rows_odd,
       (pg_temp.rows_of(m.ids))[3] #>> '{doc}' AS third, (pg_temp.rows_of(m.ids))[35] #>> '{doc}' AS thirty_fifth
  FROM many_ids m, many_plain p, many_odd o;
ROLLBACK;
-- the upstream's and the kind's rows are locked FOR KEY SHARE by the
-- caller's transaction (xmax is its id), as the per-row foreign-key checks
-- lock them, so a concurrent delete or key change waits for it
BEGIN;
SELECT u.xmax::text = pg_current_xact_id()::text AS upstream_locked, k.xmax::text = pg_current_xact_id()::text AS kind_locked
  FROM vms.viid_upstream u, vms.viid_kind k WHERE u.name = 'district' AND k.kind = 'Person';
SELECT cardinality(vms.viid_enqueue_many('district', 'Person', ARRAY['{"PersonID": "P-1"}']::jsonb[])) AS queued;
SELECT u.xmax::text = pg_current_xact_id()::text AS upstream_locked, k.xmax::text = pg_current_xact_id()::text AS kind_locked
  FROM vms.viid_upstream u, vms.viid_kind k WHERE u.name = 'district' AND k.kind = 'Person';
-- with any other trigger on the outbox the plain INSERT runs, every trigger firing
CREATE TEMP TABLE fired (n int);
CREATE FUNCTION pg_temp.count_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO fired VALUES (1); RETURN NULL; END $$;
CREATE TRIGGER count_row AFTER INSERT ON vms.viid_outbox FOR EACH ROW EXECUTE FUNCTION pg_temp.count_row();
SELECT cardinality(vms.viid_enqueue_many('district', 'Face', ARRAY['{"FaceID": "F-T1"}', '{"FaceID": "F-T2"}']::jsonb[])) AS queued;
SELECT count(*) AS fired FROM fired;
ROLLBACK;
-- the insert alone refuses an upstream that is not there as the foreign key does
\set VERBOSITY default
SELECT vms._viid_outbox_insert('nowhere', 'Face', '{FaceID}', ARRAY['{"FaceID": "x"}']::jsonb[]);
INSERT INTO vms.viid_outbox (upstream, kind, object_id, doc) VALUES ('nowhere', 'Face', 'x', '{}');
-- a bad document fails the whole call naming its position: not an object,
-- no id, a value the template cannot map, a missing required field, a bad
-- date; the same checks as vms.viid_enqueue with the same error codes
SELECT vms.viid_enqueue_many('district', 'Face', ARRAY['{"FaceID": "F-A"}', '{"FaceID": "F-B"}', '[1]']::jsonb[]);
SELECT vms.viid_enqueue_many('district', 'Face', ARRAY['{"FaceID": "F-A"}', '{"Name": "no id"}', '{"FaceID": ""}']::jsonb[]);
SELECT vms.viid_enqueue_many('district', 'MotorVehicle', ARRAY['{"id": "V1", "plate": "京A1", "time": "2026-11-22 10:05:09"}',
    '{"id": "V2", "plate": "京A2", "color": "紫", "time": "2026-11-22 10:05:09"}']::jsonb[], 'vendor_a');
\echo :LAST_ERROR_SQLSTATE
SELECT vms.viid_enqueue_many('district', 'MotorVehicle', ARRAY['{"id": "V1", "plate": "京A1", "time": "2026-11-22 10:05:09"}',
    '{"id": "V2", "plate": "京A2", "time": "2026-11-22 10:05:09"}', '{"id": "V3", "time": "2026-11-22 10:05:09"}']::jsonb[], 'vendor_a');
\echo :LAST_ERROR_SQLSTATE
SELECT vms.viid_enqueue_many('district', 'MotorVehicle', ARRAY['{"id": "V1", "plate": "京A1", "time": "22/11/2026"}']::jsonb[], 'vendor_a');
\echo :LAST_ERROR_SQLSTATE
SELECT vms.viid_enqueue_many('district', 'MotorVehicle', ARRAY['{}']::jsonb[], 'nosuch');
SELECT vms.viid_enqueue_many('district', 'Car', ARRAY['{}']::jsonb[]);
SELECT vms.viid_enqueue_many('nowhere', 'Face', ARRAY['{"FaceID": "x"}']::jsonb[]);
\set VERBOSITY terse
SELECT vms.viid_enqueue_many('district', 'Face', '{}'), vms.viid_enqueue_many('district', 'Face', NULL);
-- nothing of the failed calls nor of the rolled-back ones is queued
SELECT count(*) AS left_behind FROM vms.viid_outbox WHERE object_id LIKE 'F-%' AND object_id <> 'F-1' OR object_id ~ '^(MANY-|P-|V[0-9]$)';
SELECT object_id, kind, state FROM vms.viid_outbox ORDER BY id;
SELECT path, cardinality(ids), body FROM vms._viid_batches('district', 2, 10);

-- answers: per-item status, HTTP errors, transport errors, garbage, dead after max_attempts
SELECT * FROM vms._viid_results('district', (SELECT array_agg(id) FROM vms.viid_outbox WHERE object_id IN ('MV-1', 'MV-2')), 200,
    '{"ResponseStatusListObject": {"ResponseStatusObject": [{"Id": "MV-1", "StatusCode": "0"}, {"Id": "MV-2", "StatusCode": "6"}]}}', NULL);
SELECT * FROM vms._viid_results('district', (SELECT array_agg(id) FROM vms.viid_outbox WHERE object_id = 'MV-3'), 500, '', NULL);
SELECT * FROM vms._viid_results('district', (SELECT array_agg(id) FROM vms.viid_outbox WHERE object_id = 'F-1'), 0, '', 'Connection refused');
SELECT * FROM vms._viid_results('district', (SELECT array_agg(id) FROM vms.viid_outbox WHERE object_id = 'IMG-1'), 200, 'not json', NULL);
SELECT * FROM vms._viid_results('district', (SELECT array_agg(id) FROM vms.viid_outbox WHERE object_id = 'MV-9'), 200,
    '{"ResponseStatusObject": {"StatusCode": "0"}}', NULL);
SELECT object_id, state, attempts, last_status, last_error, next_attempt_at > now() AS backing_off
  FROM vms.viid_outbox ORDER BY id;
-- MV-2 fails twice more: dead with its reason, then re-driven
SELECT * FROM vms._viid_results('district', (SELECT array_agg(id) FROM vms.viid_outbox WHERE object_id = 'MV-2'), 200,
    '{"ResponseStatusListObject": {"ResponseStatusObject": [{"Id": "MV-2", "StatusCode": "6"}]}}', NULL);
SELECT * FROM vms._viid_results('district', (SELECT array_agg(id) FROM vms.viid_outbox WHERE object_id = 'MV-2'), 200,
    '{"ResponseStatusListObject": {"ResponseStatusObject": []}}', NULL);
SELECT object_id, state, attempts, last_error FROM vms.viid_outbox WHERE object_id = 'MV-2';
SELECT vms.viid_redrive('district');
SELECT object_id, state, attempts FROM vms.viid_outbox WHERE object_id = 'MV-2';

-- sessions
SELECT vms._viid_session_event('district', 'register', 200, '{"ResponseStatusObject": {"StatusCode": "0"}}', NULL);
SELECT vms._viid_session_event('district', 'time', 200,
    format('{"SystemTimeObject": {"LocalTime": "%s"}}', to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDDHH24MISS')), NULL);
SELECT vms._viid_session_event('district', 'keepalive', 401, '', NULL);
SELECT state, registered_at IS NOT NULL AS registered_once, abs(clock_offset_ms) < 5000 AS clock_close, failures, last_error
  FROM vms.viid_session;

-- ledger changes reach upstreams with sync_ledger
SELECT vms.viid_alter_upstream('district', options => '{"sync_ledger": true}');
INSERT INTO vms.checkpoint (code, name, direction_mode) VALUES ('11010500051210000009', '测试卡口', 'updown');
INSERT INTO vms.lane (checkpoint_code, lane_no, direction) VALUES ('11010500051210000009', 1, 'up');
UPDATE vms.channel SET name = name || '（改）' WHERE code = '44030402001320000001';
UPDATE vms.channel SET online = true WHERE code = '44030402001320000002';
SELECT kind, object_id, doc ->> 'Name' AS name FROM vms.viid_outbox WHERE kind IN ('APE', 'Tollgate', 'Lane') ORDER BY id;

-- dropping refuses while records are pending
\set VERBOSITY default
SELECT vms.viid_drop_upstream('district');
\set VERBOSITY terse
SELECT vms.viid_drop_upstream('district', force => true);
SELECT count(*) FROM vms.viid_outbox;
-- the workers (this cluster preloads vms; the worker waits for the extension in vms.database)
SELECT name, backend_type, wanted, state IN ('starting', 'waiting for CREATE EXTENSION vms', 'waiting for vms.sip_id') AS waiting FROM vms.worker_status ORDER BY name;
\set VERBOSITY default
-- CREATE EXTENSION here warned that no worker serves this database (pg_regress
-- loads vms before the test, so the check is called as the install script does)
SELECT vms._worker_database_check() AS served;
SELECT vms.worker_stop('nosuch');
SET ROLE vms_analyst;
SELECT vms.worker_stop('viid');
RESET ROLE;
