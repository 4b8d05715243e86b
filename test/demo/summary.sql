-- What the demo ledger holds, for `make run`.
SET search_path = public, vms;
\pset footer off
\echo
\echo '== vms demo: 朝阳区 synthetic district =='
SELECT (SELECT count(*) FROM vms.region) AS regions,
       (SELECT count(*) FROM vms.org_unit) AS units,
       (SELECT count(*) FROM vms.catalog_node) AS catalogue_nodes,
       (SELECT count(*) FROM vms.device) AS devices,
       (SELECT count(*) FROM vms.channel) AS channels,
       (SELECT count(*) FROM vms.checkpoint) AS checkpoints,
       (SELECT count(*) FROM vms.lane) AS lanes,
       (SELECT count(*) FROM vms.ledger_history) AS history_rows;
\echo '-- channels per street (top 5), with location and orientation coverage'
SELECT r.name AS street, count(*) AS channels,
       round(100.0 * count(c.geom) / count(*), 1) AS with_location_pct,
       round(100.0 * count(c.azimuth) / count(*), 1) AS with_azimuth_pct
  FROM vms.channel c JOIN vms.region r ON r.civil_code = c.civil_code
 GROUP BY r.name ORDER BY channels DESC, street LIMIT 5;
\echo '-- point types'
SELECT coalesce(p.name_zh, '（未填）') AS point_type, count(*) AS channels
  FROM vms.channel c LEFT JOIN vms.point_type p ON p.code = c.point_type
 GROUP BY 1 ORDER BY 2 DESC;
\echo '-- latest import and what it rejected'
SELECT id, total_rows, loaded_rows, rejected_rows, created_devices, finished_at - started_at AS took
  FROM vms.import_job ORDER BY id DESC LIMIT 1;
SELECT line_no, array_to_string(reasons, '; ') AS reasons
  FROM vms.import_rejection WHERE job_id = (SELECT max(id) FROM vms.import_job) ORDER BY line_no;
\echo '-- a sample point (governed values; GCJ-02 input stored as WGS-84)'
SELECT code, name, address, point_type, azimuth, ST_AsText(geom, 6) AS wgs84, coord_source
  FROM vms.channel WHERE coord_source = 'GCJ02' ORDER BY code LIMIT 1;
\echo '-- GA/T 1400 push to the governance chain (vms viid worker)'
SELECT upstream, state, registered_at IS NOT NULL AS registered, clock_offset_ms, pending, dead
  FROM vms.viid_session_status;
SELECT kind, state, count(*) FROM vms.viid_outbox GROUP BY 1, 2 ORDER BY 1, 2;
SELECT name, backend_type, state, restarts, counters FROM vms.worker_status;
\echo
\echo '== GB/T 28181 access: the SIP worker and 200 simulated NVRs =='
SELECT count(*) FILTER (WHERE online) AS devices_online, count(*) AS devices,
       min(registered_at) AS first_registered, max(last_keepalive_at) AS last_keepalive
  FROM vms.sip_device_status WHERE code::text LIKE '110105000011800%';
\echo '-- catalog queries (paged answers upserted into the ledger raw layer)'
SELECT kind, state, count(*) AS requests, sum((result ->> 'channels')::int) AS channels_reported
  FROM vms.sip_request GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(*) AS sip_channels, count(*) FILTER (WHERE online) AS online
  FROM vms.channel WHERE device_code::text LIKE '110105000011800%';
\echo '-- session transitions recorded'
SELECT event, cause, count(*) FROM vms.device_event GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 6;
\echo '-- workers'
SELECT name, backend_type, state, counters FROM vms.worker_status ORDER BY name;
\echo
\echo '== inspection (巡检): the latest round over the RTSP test cameras =='
SELECT plan, channels, done, stream_success_rate AS "取流成功率", image_rate AS "出图率", abnormal
  FROM vms.inspection_run_rates ORDER BY run_id DESC LIMIT 1;
SELECT channel, stream_ok, image_ok, array_to_string(abnormal, ',') AS abnormal,
       left(checks -> 'stream' ->> 'detail', 60) AS stream
  FROM vms.inspection_log ORDER BY id DESC LIMIT 8;
\echo '-- open alarms by source and fault'
SELECT source, fault_type, level, count(*) FROM vms.alarm WHERE state = 'open' GROUP BY 1, 2, 3 ORDER BY 1, 2;
