-- vms.diagnose(): on-demand video quality diagnosis of one source.
-- (C in extension/inspect/diagnose_fn.c over vqd; thresholds in
-- extension/inspect/THRESHOLDS.md)
--
-- Privileges: not granted to PUBLIC.  The function opens network
-- connections from the database server (to any rtsp://, http:// or https://
-- address the caller names, so an ordinary role could use the server to
-- probe or reach hosts it cannot reach itself) and keeps a backend busy
-- decoding video for up to timeout_ms.  Superusers may call it; grant
-- EXECUTE to the operators who diagnose cameras.  File paths are checked
-- again inside the function: only roles with the privileges of
-- pg_read_server_files may name a server file, as for COPY FROM a file.
CREATE FUNCTION vms.diagnose(source text, options jsonb DEFAULT '{}')
RETURNS TABLE (check_name text, metric double precision, abnormal boolean, detail text)
LANGUAGE C VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'vms_diagnose';
REVOKE ALL ON FUNCTION vms.diagnose(text, jsonb) FROM PUBLIC;

COMMENT ON FUNCTION vms.diagnose(text, jsonb) IS
'Samples a video source (rtsp:// over TCP, http(s)://, or a server file path for members of pg_read_server_files) with FFmpeg and returns one row per check: stream, signal_loss, black_screen, brightness, blur, color_cast, noise, stripes, freeze, jitter, mosaic, occlusion, and scene_change when a baseline is given. metric and abnormal are NULL when a check could not be evaluated. Options: profile (strict|normal|loose), frames (1-150, default 50), seconds (default 2), timeout_ms (default 10000), connect_timeout_ms (default 5000), read_timeout_ms (default 3000), thresholds (object of threshold name to number), baseline (hex of a JPEG/PNG snapshot, encode(bytea, ''hex'')). Never waits past timeout_ms; a query cancel stops it at once. Not executable by PUBLIC: it opens network connections from the server; grant EXECUTE to the roles that diagnose cameras.';
