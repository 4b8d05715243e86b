-- Backups (0.3.0): mark every member table and sequence with
-- pg_extension_config_dump(), so that pg_dump dumps their rows; the seeded
-- rows are left out by the same filters as a fresh install's
-- extension/sql/98_backup.sql (see there).  This fragment runs after the
-- others, so that the tables they make are marked too.  Unlike the fresh
-- install it does not check that the filters leave out every row present:
-- a database being upgraded may hold rows of its own in those tables.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.oid::regclass AS tab, c.relkind, f.filter
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_class c ON c.oid = d.objid
          LEFT JOIN (VALUES
              ('vms.alarm_level'::regclass, 'WHERE level NOT IN (1, 2, 3, 4)'),
              ('vms.alarm_rule', 'WHERE NOT (fault_type = ''offline'' AND coalesce(gb_type, -1) IN '
                                 '(-1, 111, 118, 130, 200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, '
                                 '500, 501, 502, 503, 505))'),
              ('vms.governance_rule', 'WHERE code NOT IN (''azimuth_missing'', ''capture_required_fields'', '
                                      '''civil_code_mismatch'', ''code_role'', ''coordinates'', ''duplicate_name'', '
                                      '''naming_pattern'', ''outside_region'', ''place_type_missing'', '
                                      '''required_fields'', ''same_point'', ''stale'')'),
              ('vms.ledger_template_column', 'WHERE "position" NOT BETWEEN 1 AND 26'),
              ('vms.ops_schedule', 'WHERE name NOT IN (''close last month'', ''daily snapshot'', '
                                   '''escalate overdue alarms'', ''freeze report days'', ''governance'', ''map clusters'', '
                                   '''retention'')'),
              ('vms.point_type', 'WHERE code NOT IN (''bullet'', ''capture'', ''dome'', ''hemisphere'', ''other'', ''panoramic'')'),
              ('vms.retention_policy', 'WHERE table_name NOT IN (''alarm'', ''audit_log'', ''availability_gap'', '
                                       '''channel_status_event'', ''device_event'', ''mobile_position'', ''notify_outbox'', '
                                       '''ops_daily'', ''quality_result'', ''search_history'', ''sip_request'', '
                                       '''snapshot'', ''viid_outbox'')'),
              ('vms.security_level', 'WHERE level NOT IN (1, 2, 3, 4)'),
              ('vms.sip_upstream_transition', 'WHERE (from_state, to_state) NOT IN ('
                  '(''unregistered'', ''registering''), (''unregistered'', ''disabled''), '
                  '(''registering'', ''registered''), (''registering'', ''failing''), (''registering'', ''disabled''), '
                  '(''registered'', ''registering''), (''registered'', ''failing''), (''registered'', ''disabled''), '
                  '(''failing'', ''registering''), (''failing'', ''disabled''), '
                  '(''disabled'', ''unregistered''), (''disabled'', ''registering''))'),
              ('vms.tag_category', 'WHERE code NOT IN (''capability'', ''custom'', ''place_type'', ''responsible_unit'', ''scenario'')'),
              ('vms.viid_kind', 'WHERE kind NOT IN (''APE'', ''Face'', ''Image'', ''Lane'', ''MotorVehicle'', '
                                '''NonMotorVehicle'', ''Person'', ''SubscribeNotification'', ''Tollgate'')'),
              ('vms.viid_record_retention', 'WHERE kind NOT IN (''Face'', ''Image'', ''MotorVehicle'', '
                                            '''NonMotorVehicle'', ''Person'')')
          ) AS f (tab, filter) ON f.tab = c.oid
         WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0 AND d.deptype = 'e'
           AND d.refclassid = 'pg_catalog.pg_extension'::regclass
           AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'vms')
           AND c.relkind IN ('r', 'p', 'S')
         ORDER BY c.oid::regclass::text
    LOOP
        PERFORM pg_catalog.pg_extension_config_dump(r.tab, coalesce(r.filter, ''));
    END LOOP;
END $$;
