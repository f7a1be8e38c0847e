-- Rollups of flows per minute and per hour, without addresses and ports.
-- SummingMergeTree adds up bytes, packets and flows of rows with equal
-- sort keys when it merges parts, so readers must still sum() (or use
-- FINAL). The sampling rate is part of the key, which keeps the scaled
-- sums exact: bytes_scaled = bytes * sampling_rate on every row. (A view
-- cannot compute a stored scaled sum: an alias named like a column it
-- reads, such as sum(bytes) AS bytes, replaces that column everywhere else
-- in the query.)
--
-- The views are fed by each insert into flows. The time bucket is named
-- time_received in every table so that queries move between them
-- unchanged.
{{- define "columns"}}
    time_received      DateTime('UTC'),
    tenant             {{lc}},
    exporter_address   {{ip}},
    exporter_name      {{lc}},
    protocol           Enum8('unknown' = 0, 'netflow_v5' = 1, 'netflow_v9' = 2, 'ipfix' = 3, 'sflow_v5' = 4),
    direction          Enum8('unknown' = 0, 'ingress' = 1, 'egress' = 2),
    sampling_rate      UInt32,
    in_if_index        UInt32,
    in_if_name         {{lc}},
    in_if_description  {{lc}},
    in_if_speed_mbps   UInt32,
    in_if_boundary     {{lc}},
    out_if_index       UInt32,
    out_if_name        {{lc}},
    out_if_description {{lc}},
    out_if_speed_mbps  UInt32,
    out_if_boundary    {{lc}},
    ip_protocol        UInt8,
    ip_version         UInt8,
    src_as             UInt32,
    dst_as             UInt32,
    bytes              UInt64{{codec "T64, LZ4"}},
    packets            UInt64{{codec "T64, LZ4"}},
    flows              UInt64{{codec "T64, LZ4"}},
    bytes_scaled       UInt64 ALIAS bytes * sampling_rate,
    packets_scaled     UInt64 ALIAS packets * sampling_rate
{{- end}}
{{- define "rest"}}direction, ip_protocol, ip_version, src_as, dst_as, sampling_rate, protocol, exporter_name, in_if_name, in_if_description, in_if_speed_mbps, in_if_boundary, out_if_name, out_if_description, out_if_speed_mbps, out_if_boundary{{end}}
{{- define "dimensions"}}tenant, exporter_address, in_if_index, out_if_index, {{template "rest"}}{{end}}
{{- define "keys"}}
PRIMARY KEY (tenant, exporter_address, time_received, in_if_index, out_if_index)
ORDER BY (tenant, exporter_address, time_received, in_if_index, out_if_index, {{template "rest"}})
{{- end}}

CREATE TABLE IF NOT EXISTS flows_1m ({{template "columns"}}
)
ENGINE = {{engine "SummingMergeTree((bytes, packets, flows))"}}
PARTITION BY toYYYYMMDD(time_received)
{{- template "keys"}}
{{ttl "time_received" .Retention.Flows1m}}
{{settings}};

CREATE MATERIALIZED VIEW IF NOT EXISTS flows_1m_mv TO flows_1m AS
SELECT
    toStartOfMinute(time_received) AS time_received,
    {{template "dimensions"}},
    sum(bytes) AS bytes,
    sum(packets) AS packets,
    count() AS flows
FROM flows
GROUP BY time_received, {{template "dimensions"}};

CREATE TABLE IF NOT EXISTS flows_1h ({{template "columns"}}
)
ENGINE = {{engine "SummingMergeTree((bytes, packets, flows))"}}
PARTITION BY toYYYYMM(time_received)
{{- template "keys"}}
{{ttl "time_received" .Retention.Flows1h}}
{{settings}};

CREATE MATERIALIZED VIEW IF NOT EXISTS flows_1h_mv TO flows_1h AS
SELECT
    toStartOfHour(time_received) AS time_received,
    {{template "dimensions"}},
    sum(bytes) AS bytes,
    sum(packets) AS packets,
    count() AS flows
FROM flows
GROUP BY time_received, {{template "dimensions"}};
