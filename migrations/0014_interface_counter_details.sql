-- The other counters of sFlow's generic interface counters (format 0:1)
-- and its Ethernet counters (format 0:2, EtherLike-MIB's dot3Stats), as
-- the agent keeps them: cumulative since its counters last started, in
-- the row of the sample that carried them. Packets add unicast, multicast
-- and broadcast. SNMP rows, and sFlow rows whose sample had no Ethernet
-- record, hold 0: flowhouse polls only the octet counters.
ALTER TABLE interface_counters
    ADD COLUMN {{ifNotExists}}in_packets                 UInt64 AFTER reset,
    ADD COLUMN {{ifNotExists}}out_packets                UInt64 AFTER in_packets,
    ADD COLUMN {{ifNotExists}}in_discards                UInt32 AFTER out_packets,
    ADD COLUMN {{ifNotExists}}out_discards               UInt32 AFTER in_discards,
    ADD COLUMN {{ifNotExists}}in_errors                  UInt32 AFTER out_discards,
    ADD COLUMN {{ifNotExists}}out_errors                 UInt32 AFTER in_errors,
    ADD COLUMN {{ifNotExists}}in_unknown_protos          UInt32 AFTER out_errors,
    ADD COLUMN {{ifNotExists}}dot3_alignment_errors      UInt32 AFTER in_unknown_protos,
    ADD COLUMN {{ifNotExists}}dot3_fcs_errors            UInt32 AFTER dot3_alignment_errors,
    ADD COLUMN {{ifNotExists}}dot3_single_collisions     UInt32 AFTER dot3_fcs_errors,
    ADD COLUMN {{ifNotExists}}dot3_multiple_collisions   UInt32 AFTER dot3_single_collisions,
    ADD COLUMN {{ifNotExists}}dot3_sqe_test_errors       UInt32 AFTER dot3_multiple_collisions,
    ADD COLUMN {{ifNotExists}}dot3_deferred_transmissions UInt32 AFTER dot3_sqe_test_errors,
    ADD COLUMN {{ifNotExists}}dot3_late_collisions       UInt32 AFTER dot3_deferred_transmissions,
    ADD COLUMN {{ifNotExists}}dot3_excessive_collisions  UInt32 AFTER dot3_late_collisions,
    ADD COLUMN {{ifNotExists}}dot3_mac_transmit_errors   UInt32 AFTER dot3_excessive_collisions,
    ADD COLUMN {{ifNotExists}}dot3_carrier_sense_errors  UInt32 AFTER dot3_mac_transmit_errors,
    ADD COLUMN {{ifNotExists}}dot3_frame_too_longs       UInt32 AFTER dot3_carrier_sense_errors,
    ADD COLUMN {{ifNotExists}}dot3_mac_receive_errors    UInt32 AFTER dot3_frame_too_longs,
    ADD COLUMN {{ifNotExists}}dot3_symbol_errors         UInt32 AFTER dot3_mac_receive_errors;
