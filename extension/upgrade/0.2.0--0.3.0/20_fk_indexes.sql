-- Indexes for foreign keys whose referenced rows are deleted (found by a
-- review of the district -> city delete path): without an index leading
-- with the referencing column, every deleted channel scanned
-- vms.sip_share_code and vms.inspection_recording to cascade, and every
-- snapshot past its retention (vms.retention_prune, 50,000 a call) scanned
-- vms.quality_result to set snapshot_id NULL.  The regress test ledger lists
-- the foreign keys of the tables that are deleted from in bulk that lack one.
CREATE INDEX sip_share_code_channel_idx ON vms.sip_share_code (channel_code);
CREATE INDEX inspection_recording_channel_idx ON vms.inspection_recording (channel_code);
CREATE INDEX inspection_recording_run_idx ON vms.inspection_recording (run_id);
CREATE INDEX inspection_recording_check_idx ON vms.inspection_recording (check_id) WHERE check_id IS NOT NULL;
CREATE INDEX recording_gap_check_idx ON vms.recording_gap (check_id);
CREATE INDEX quality_result_snapshot_idx ON vms.quality_result (snapshot_id) WHERE snapshot_id IS NOT NULL;
