-- the audit log archived by range with hash anchors: vms.audit_verify
-- still proves the whole chain, through archived content and through the
-- anchors of a detached range; tampering with either is found
\set SHOW_CONTEXT never
SET search_path = public, vms;
SELECT count(*) AS entries_before FROM vms.audit_log;
SELECT vms.audit('regress_' || i, 'object ' || i, jsonb_build_object('i', i)) FROM generate_series(1, 5) i;
-- entries 1-5 archived; the archiving is entry 6
SELECT vms.audit_archive_before(clock_timestamp()) AS archived;
SELECT seq, action, object FROM vms.audit_log ORDER BY seq;
SELECT first_seq, last_seq, entries, prev_hash IS NULL AS from_the_start, content IS NOT NULL AS has_content,
       content_digest = vms.chain_digest(convert_to(content::text, 'UTF8')) AS digest_matches
  FROM vms.audit_archive ORDER BY first_seq;
SELECT * FROM vms.audit_verify();
-- more entries, a second range (6-8; the archiving is 9), then 10 live
SELECT vms.audit('regress_more', NULL, '{}') FROM generate_series(1, 2);
SELECT vms.audit_archive_before(clock_timestamp()) AS archived;
SELECT vms.audit('regress_live', NULL, '{}');
SELECT first_seq, last_seq, (SELECT hash FROM vms.audit_log WHERE seq = 10) IS NOT NULL AS live_tail FROM vms.audit_archive ORDER BY 1;
SELECT * FROM vms.audit_verify();
-- nothing older: nothing archived
SELECT vms.audit_archive_before('2000-01-01 00:00+00') AS archived_nothing;
-- the first range detached: its document comes back, matching its digest;
-- the chain is proved through its anchors (the detaching is entry 11)
SELECT vms.audit_archive_detach(id) AS doc FROM vms.audit_archive WHERE first_seq = 1 \gset
SELECT jsonb_array_length(:'doc'::jsonb) AS detached_entries,
       vms.chain_digest(convert_to(:'doc'::jsonb::text, 'UTF8')) = content_digest AS kept_copy_matches,
       content IS NULL AS detached
  FROM vms.audit_archive WHERE first_seq = 1;
SELECT * FROM vms.audit_verify();
\set VERBOSITY default
-- the archive and the log stay append-only
UPDATE vms.audit_archive SET entries = entries WHERE first_seq = 6;
DELETE FROM vms.audit_archive;
DELETE FROM vms.audit_log WHERE seq = 10;
SELECT vms.audit_archive_detach(-1);
\set VERBOSITY terse
-- tampering, with the guards switched off as an intruder with the owner's
-- rights could: archived content edited (digest no longer matches) ...
ALTER TABLE vms.audit_archive DISABLE TRIGGER audit_archive_no_change;
UPDATE vms.audit_archive SET content = jsonb_set(content, '{0,detail}', '{"i": 99}') WHERE first_seq = 6;
SELECT * FROM vms.audit_verify();
-- ... and with its digest recomputed: the entry's own hash gives it away
UPDATE vms.audit_archive SET content_digest = vms.chain_digest(convert_to(content::text, 'UTF8')) WHERE first_seq = 6;
SELECT * FROM vms.audit_verify();
-- a detached range whose anchor was replaced
UPDATE vms.audit_archive a SET content = NULL, last_hash = '\x00' WHERE first_seq = 6;
SELECT * FROM vms.audit_verify();
ALTER TABLE vms.audit_archive ENABLE TRIGGER audit_archive_no_change;
-- archiving refuses a broken chain
\set VERBOSITY default
SELECT vms.audit_archive_before(clock_timestamp());
\set VERBOSITY terse
-- retention archives the log instead of deleting it
SELECT table_name, keep FROM vms.retention_policy WHERE table_name = 'audit_log';
