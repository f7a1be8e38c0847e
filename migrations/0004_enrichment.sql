-- Enrichment: what SNMP polling learns about exporters, kept so that a
-- restart reloads it (enrich/). Every table is keyed by tenant first:
-- tenants may reuse private address space and interface indexes.
--
-- Exporter attributes: configuration plus SNMP sysName; the latest row per
-- (tenant, exporter) is the current one.
CREATE TABLE IF NOT EXISTS exporter_attributes (
    tenant           {{lc}},
    exporter_address {{ip}},
    name             String,
    sys_name         String,
    site             {{lc}},
    role             {{lc}},
    discovered       UInt8,
    updated_at       DateTime('UTC')
)
ENGINE = {{engine "ReplacingMergeTree(updated_at)"}}
ORDER BY (tenant, exporter_address);

-- The interface table of each exporter (ifName, ifDescr, ifAlias,
-- ifHighSpeed, ifOperStatus) with its classification. A row is written
-- when an interface changes, and at least every observation_refresh.
CREATE TABLE IF NOT EXISTS interfaces (
    tenant           {{lc}},
    exporter_address {{ip}},
    if_index         UInt32,
    if_name          String,
    if_descr         String,
    if_alias         String,
    speed_mbps       UInt64,
    oper_status      UInt8,
    boundary         {{lc}},
    provider         {{lc}},
    connectivity     {{lc}},
    updated_at       DateTime('UTC')
)
ENGINE = {{engine "ReplacingMergeTree(updated_at)"}}
ORDER BY (tenant, exporter_address, if_index);

-- HC octet counters per poll, with the rate and utilisation since the
-- previous poll (valid = 0 for the first sample and after a reset).
CREATE TABLE IF NOT EXISTS interface_counters (
    time             DateTime('UTC'),
    time_ms          UInt64,
    tenant           {{lc}},
    exporter_address {{ip}},
    if_index         UInt32,
    in_octets        UInt64,
    out_octets       UInt64,
    interval_seconds Float64,
    in_bps           UInt64,
    out_bps          UInt64,
    in_utilisation   Float64,
    out_utilisation  Float64,
    speed_mbps       UInt64,
    valid            UInt8,
    reset            UInt8
)
ENGINE = {{engine "MergeTree()"}}
PARTITION BY toYYYYMM(time)
ORDER BY (tenant, exporter_address, if_index, time);

-- ARP/ND entries of exporters: a row when an entry appears (new), changes
-- MAC or interface (changed), disappears (gone), and at least every
-- observation_refresh while it stays (refresh).
CREATE TABLE IF NOT EXISTS arp_observations (
    time             DateTime('UTC'),
    time_ms          UInt64,
    tenant           {{lc}},
    exporter_address {{ip}},
    if_index         UInt32,
    ip_address       {{ip}},
    mac              UInt64,
    vendor           {{lc}},
    event            {{lc}}
)
ENGINE = {{engine "MergeTree()"}}
PARTITION BY toYYYYMM(time)
ORDER BY (tenant, ip_address, time);

-- Device inventory: each MAC of a tenant with its addresses over time.
CREATE TABLE IF NOT EXISTS devices (
    tenant                {{lc}},
    mac                   UInt64,
    vendor                {{lc}},
    first_seen            DateTime('UTC'),
    last_seen             DateTime('UTC'),
    last_exporter_address {{ip}},
    last_if_index         UInt32,
    ip_history Nested (
        address    {{ip}},
        first_seen DateTime('UTC'),
        last_seen  DateTime('UTC')
    ),
    updated_at            DateTime('UTC')
)
ENGINE = {{engine "ReplacingMergeTree(updated_at)"}}
ORDER BY (tenant, mac);
