-- vms.diagnose(): options, privileges and an unreachable source.
-- Real clips (file and rtsp://, stall, refuse, cancel) are in test/t/040_diagnose.pl.
\set SHOW_CONTEXT never
SET search_path = public, vms;
SET client_min_messages = warning;

-- the function and its comment exist; PUBLIC may not execute it
SELECT obj_description('vms.diagnose(text, jsonb)'::regprocedure, 'pg_proc') IS NOT NULL AS commented;
SELECT has_function_privilege('public', 'vms.diagnose(text, jsonb)', 'EXECUTE') AS public_may_execute;

-- a file that does not exist: one stream row, abnormal, not an error; the rest not evaluated
SELECT * FROM vms.diagnose('/nonexistent/vms-regress.mp4');
SELECT check_name, abnormal FROM vms.diagnose('/nonexistent/vms-regress.mp4', NULL) WHERE check_name = 'stream';
SELECT count(*) FROM vms.diagnose('/nonexistent/vms-regress.mp4', '{"profile": "strict", "frames": 10, "seconds": 1, "timeout_ms": 2000, "thresholds": {"blur_min": 0.5}}');
-- a baseline adds the scene_change row
SELECT check_name, metric, abnormal FROM vms.diagnose('/nonexistent/vms-regress.mp4', '{"baseline": "\\xffd8ffd9"}') WHERE check_name = 'scene_change';
-- a refused connection: stream abnormal
SELECT check_name, abnormal FROM vms.diagnose('rtsp://127.0.0.1:1/none', '{"timeout_ms": 3000}') WHERE check_name = 'stream';

-- bad sources and options
SELECT * FROM vms.diagnose(NULL);
SELECT * FROM vms.diagnose('');
SELECT * FROM vms.diagnose('/x.mp4', '[]');
SELECT * FROM vms.diagnose('/x.mp4', '{"frame": 10}');
SELECT * FROM vms.diagnose('/x.mp4', '{"profile": "paranoid"}');
SELECT * FROM vms.diagnose('/x.mp4', '{"profile": 1}');
SELECT * FROM vms.diagnose('/x.mp4', '{"frames": 0}');
SELECT * FROM vms.diagnose('/x.mp4', '{"frames": 2.5}');
SELECT * FROM vms.diagnose('/x.mp4', '{"frames": "50"}');
SELECT * FROM vms.diagnose('/x.mp4', '{"seconds": 0}');
SELECT * FROM vms.diagnose('/x.mp4', '{"timeout_ms": 10}');
SELECT * FROM vms.diagnose('/x.mp4', '{"thresholds": 3}');
SELECT * FROM vms.diagnose('/x.mp4', '{"thresholds": {"blurriness": 0.5}}');
SELECT * FROM vms.diagnose('/x.mp4', '{"thresholds": {"blur_min": "high"}}');
SELECT * FROM vms.diagnose('/x.mp4', '{"thresholds": {"blur_min": -1}}');
-- the colour cast's thresholds (issue 14): a share of pixels is at most 1, a luma level at most 255;
-- the former least-coloured-pixel thresholds are gone
SELECT * FROM vms.diagnose('/x.mp4', '{"thresholds": {"cast_grey_gain_min": 1.5}}');
SELECT * FROM vms.diagnose('/x.mp4', '{"thresholds": {"cast_lit_min": 300}}');
SELECT * FROM vms.diagnose('/x.mp4', '{"thresholds": {"cast_offset_min": 4}}');
SELECT * FROM vms.diagnose('/x.mp4', '{"baseline": "abc"}');
SELECT * FROM vms.diagnose('/x.mp4', '{"baseline": "zz"}');
SELECT * FROM vms.diagnose('/x.mp4', '{"baseline": 12}');

-- privileges: without a grant, no; with EXECUTE, URLs but not server files;
-- with pg_read_server_files, files too
CREATE ROLE vms_regress_diag;
GRANT USAGE ON SCHEMA vms TO vms_regress_diag;
SET ROLE vms_regress_diag;
SELECT * FROM vms.diagnose('rtsp://127.0.0.1:1/none');
RESET ROLE;
GRANT EXECUTE ON FUNCTION vms.diagnose(text, jsonb) TO vms_regress_diag;
SET ROLE vms_regress_diag;
SELECT * FROM vms.diagnose('/nonexistent/vms-regress.mp4');
SELECT * FROM vms.diagnose('file:/etc/passwd');
-- a file:// URL passes as a URL, but network sources may not use the file protocol
SELECT check_name, abnormal FROM vms.diagnose('file:///etc/passwd') WHERE check_name = 'stream';
SELECT check_name, abnormal FROM vms.diagnose('rtsp://127.0.0.1:1/none', '{"timeout_ms": 3000}') WHERE check_name = 'stream';
RESET ROLE;
GRANT pg_read_server_files TO vms_regress_diag;
SET ROLE vms_regress_diag;
SELECT check_name, abnormal FROM vms.diagnose('/nonexistent/vms-regress.mp4') WHERE check_name = 'stream';
RESET ROLE;
REVOKE pg_read_server_files FROM vms_regress_diag;
REVOKE EXECUTE ON FUNCTION vms.diagnose(text, jsonb) FROM vms_regress_diag;
REVOKE USAGE ON SCHEMA vms FROM vms_regress_diag;
DROP ROLE vms_regress_diag;
