-- LLDP and CDP neighbours of exporters, polled over SNMP (LLDP-MIB
-- lldpRemTable, CISCO-CDP-MIB cdpCacheTable) by enrich, like interfaces.
--
-- A neighbour is what one exporter hears on one local interface from one
-- remote chassis: (tenant, exporter_address, local_if_index, protocol,
-- remote_chassis_id). The same chassis answering from another port, or
-- renamed, is that neighbour changed; another chassis on the port is a
-- new neighbour (and the old one gone, if it left).
--
-- neighbors holds each neighbour's latest state. A row is written when a
-- neighbour appears, changes or goes (gone = 1), and at least every
-- observation_refresh while it stays; readers take FINAL (or the latest
-- updated_at) and gone = 0 for the current topology.
CREATE TABLE IF NOT EXISTS neighbors (
    tenant                    {{lc}},
    exporter_address          {{ip}},
    local_if_index            UInt32,
    local_if_name             String,
    protocol                  {{lc}},
    remote_chassis_id         String,
    remote_chassis_id_subtype {{lc}},
    remote_port_id            String,
    remote_port_id_subtype    {{lc}},
    remote_port_description   String,
    remote_system_name        String,
    remote_system_description String,
    remote_platform           String,
    remote_management_address {{ip}},
    remote_capabilities       Array(String),
    remote_native_vlan        UInt16,
    remote_exporter_address   {{ip}},
    first_seen                DateTime('UTC'),
    last_seen                 DateTime('UTC'),
    gone                      UInt8,
    updated_at                DateTime('UTC')
)
ENGINE = {{engine "ReplacingMergeTree(updated_at)"}}
ORDER BY (tenant, exporter_address, local_if_index, protocol, remote_chassis_id);

-- Every change of a neighbour, as arp_observations records ARP entries:
-- event is new, changed (changed_fields names what changed), gone, or
-- refresh (at least every observation_refresh while it stays). The row
-- carries the neighbour's state after the event (before it, for gone).
CREATE TABLE IF NOT EXISTS neighbor_observations (
    time                      DateTime('UTC'),
    time_ms                   UInt64,
    tenant                    {{lc}},
    exporter_address          {{ip}},
    local_if_index            UInt32,
    local_if_name             String,
    protocol                  {{lc}},
    remote_chassis_id         String,
    remote_port_id            String,
    remote_port_description   String,
    remote_system_name        String,
    remote_management_address {{ip}},
    remote_capabilities       Array(String),
    event                     {{lc}},
    changed_fields            Array(String)
)
ENGINE = {{engine "MergeTree()"}}
PARTITION BY toYYYYMM(time)
ORDER BY (tenant, exporter_address, local_if_index, time);
