-- Where a row of interface_counters comes from: 'snmp' (the counter polls
-- of enrich) or 'sflow' (the generic interface counters records of sFlow
-- counter samples). Rows written before this column read as 'snmp': they
-- all came from SNMP. Each source is its own series of samples (their
-- counters and times interleave): rates are computed within a source,
-- and readers keep the sources apart.
--
-- The sorting key stays (tenant, exporter_address, if_index, time): 18.16
-- cannot change it, and an interface's rows of both sources are few
-- enough per granule that filtering on source costs nothing.
ALTER TABLE interface_counters
    ADD COLUMN {{ifNotExists}}source {{lc}} DEFAULT 'snmp' AFTER if_index;
