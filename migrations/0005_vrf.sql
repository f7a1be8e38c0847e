-- The VRF of each interface of a flow, as the exporter reports it (IPFIX
-- IE 234 ingressVRFID and 235 egressVRFID, the same field types in NetFlow
-- v9); 0 when it sends none. They stand after the interfaces' columns.
-- The rollups do not get them: an interface belongs to one VRF, so
-- in_if_index and out_if_index already split the rollups as VRFs would.
--
-- 18.16 has no IF NOT EXISTS for ADD COLUMN; there Apply takes "column
-- already exists" as this statement done, so that a rerun completes.
ALTER TABLE flows
    ADD COLUMN {{ifNotExists}}in_vrf_id  UInt32 AFTER out_if_boundary,
    ADD COLUMN {{ifNotExists}}out_vrf_id UInt32 AFTER in_vrf_id;
