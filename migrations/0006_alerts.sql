-- Alerts (analytics/alerts): the current row of every alert instance and
-- the history of what happened to it. Label sets are parallel arrays of
-- names and values (ClickHouse 18.16 has no Map): the value of label x is
-- label_values[indexOf(label_names, 'x')].
--
-- One row per change of an alert; the highest version is the current
-- one. ReplacingMergeTree keeps only it once parts merge: read with FINAL
-- or argMax(column, version) GROUP BY tenant, id.
CREATE TABLE IF NOT EXISTS alerts (
    tenant            {{lc}},
    id                String,
    fingerprint       String,
    rule              {{lc}},
    subject_names     Array(String),
    subject_values    Array(String),
    severity          {{lc}},
    label_names       Array(String),
    label_values      Array(String),
    annotation_names  Array(String),
    annotation_values Array(String),
    status            {{lc}},
    starts_at         DateTime('UTC'),
    fired_at          DateTime('UTC'),
    ends_at           DateTime('UTC'),
    updated_at        DateTime('UTC'),
    last_seen_at      DateTime('UTC'),
    last_value        Float64,
    peak_value        Float64,
    evaluations       UInt32,
    missed            UInt32,
    acknowledged      UInt8,
    acknowledged_by   String,
    acknowledged_at   DateTime('UTC'),
    version           UInt64
)
ENGINE = {{engine "ReplacingMergeTree(version)"}}
ORDER BY (tenant, id);

-- What happened to each alert, append-only: its transitions, severity
-- changes and acknowledgements, each with the alert's version after it.
CREATE TABLE IF NOT EXISTS alert_events (
    tenant      {{lc}},
    alert_id    String,
    fingerprint String,
    rule        {{lc}},
    at          DateTime('UTC'),
    version     UInt64,
    kind        {{lc}},
    from_status {{lc}},
    to_status   {{lc}},
    severity    {{lc}},
    value       Float64,
    actor       String,
    note        String
)
ENGINE = {{engine "MergeTree()"}}
PARTITION BY toYYYYMM(at)
ORDER BY (tenant, alert_id, version);
