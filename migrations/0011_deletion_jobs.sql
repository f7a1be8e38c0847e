-- Deletions of a tenant's data (privacy/): one row per change of a job;
-- the highest version is the current one. ReplacingMergeTree keeps only
-- it once parts merge: read with FINAL. The tables a job deletes from are
-- parallel arrays (18.16 has no Map): table_names[i] is in state
-- table_statuses[i] and had table_rows[i] rows of the tenant when its
-- deletion began.
CREATE TABLE IF NOT EXISTS deletion_jobs (
    tenant             {{lc}},
    id                 String,
    status             {{lc}},
    table_names        Array(String),
    table_statuses     Array(String),
    table_rows         Array(UInt64),
    exporter_addresses Array(String),
    requested_by       String,
    requested_at       DateTime('UTC'),
    finished_at        DateTime('UTC'),
    error              String,
    version            UInt64
)
ENGINE = {{engine "ReplacingMergeTree(version)"}}
ORDER BY (tenant, id);
