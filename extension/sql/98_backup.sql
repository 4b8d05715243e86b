-- Backups: every vms table is made by this script, so it is a member of the
-- extension, and pg_dump leaves a member's rows out unless the table is
-- marked with pg_extension_config_dump().  Mark them all here, after every
-- other file has made its tables (99_privileges.sql makes none), so that a
-- table added to an earlier file is marked without being named.  The
-- identity sequences are members too; marking them dumps their setval, so
-- an insert after a restore does not collide with a restored id.
-- Partitioned parents (vms.viid_record, vms.viid_image) hold no rows of their
-- own; their monthly partitions are made at run time, outside this script, so
-- they are not members and pg_dump dumps them (definition and rows) as it
-- does any table.  Marking the parents is harmless and keeps "every member
-- table" true.
-- Tables this script seeds get a filter that leaves the seeded rows out:
-- CREATE EXTENSION seeds them again on restore, then the dump's COPY adds
-- the rest (as PostGIS does for spatial_ref_sys).  Edits to seeded rows are
-- therefore not in the dump (README, Operations: Backups).  A new seeded
-- table must get its filter here: the install fails otherwise.
DO $$
DECLARE
    r record;
    n bigint;
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
        IF r.relkind <> 'S' THEN
            -- the filter must leave out every row this script wrote
            EXECUTE format('SELECT count(*) FROM %s %s', r.tab, coalesce(r.filter, '')) INTO n;
            IF n > 0 THEN
                RAISE EXCEPTION 'table % has % rows the extension seeds that its backup filter does not leave out', r.tab, n
                    USING ERRCODE = 'invalid_table_definition',
                          DETAIL = 'A restore runs CREATE EXTENSION vms, which seeds them, then copies the dumped rows: they would be twice.',
                          HINT = 'Add or extend the table''s filter in extension/sql/98_backup.sql.';
            END IF;
        END IF;
        PERFORM pg_catalog.pg_extension_config_dump(r.tab, coalesce(r.filter, ''));
    END LOOP;
END $$;
