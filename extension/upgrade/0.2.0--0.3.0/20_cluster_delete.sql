-- Cluster sync (city apply): a replicated channel's DELETE is counted in the
-- map's cluster cells by the C trigger that counts its INSERT (buffered in
-- the apply worker, folded at commit by the deferred flush trigger), not by
-- the PL/pgSQL row trigger, which keeps UPDATE.  That PL/pgSQL DELETE
-- appended 13 rows a channel and was four fifths of the city's apply time of
-- a district's mass delete.
COMMENT ON FUNCTION vms._cluster_apply_tiles_insert() IS 'internal: city side: a replicated channel''s insert or delete appended to the map''s cluster cells (buffered in the apply worker, folded at commit)';
DROP TRIGGER channel_cluster_apply_tiles ON vms.channel;
DROP TRIGGER channel_cluster_apply_tiles_ins ON vms.channel;
DROP TRIGGER channel_cluster_apply_tiles_flush ON vms.channel;
CREATE TRIGGER channel_cluster_apply_tiles AFTER UPDATE ON vms.channel
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_tiles();
CREATE TRIGGER channel_cluster_apply_tiles_ins AFTER INSERT OR DELETE ON vms.channel
    FOR EACH ROW EXECUTE FUNCTION vms._cluster_apply_tiles_insert();
ALTER TABLE vms.channel ENABLE REPLICA TRIGGER channel_cluster_apply_tiles;
ALTER TABLE vms.channel ENABLE REPLICA TRIGGER channel_cluster_apply_tiles_ins;
CREATE CONSTRAINT TRIGGER channel_cluster_apply_tiles_flush AFTER INSERT OR DELETE ON vms.channel
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (vms._cluster_apply_tiles_due()) EXECUTE FUNCTION vms._cluster_apply_tiles_flush();
ALTER TABLE vms.channel ENABLE REPLICA TRIGGER channel_cluster_apply_tiles_flush;
