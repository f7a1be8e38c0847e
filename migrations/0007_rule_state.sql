-- State the built-in rules keep between evaluations (analytics/rules),
-- so that a restart does not start them from nothing: the volumetric
-- rules' baselines (an EWMA mean and variance of a rate per key).
--
-- One row per write of a key; the highest version is the current one.
-- ReplacingMergeTree keeps only it once parts merge: read with FINAL or
-- argMax(column, version) GROUP BY rule, tenant, key. Rules stop loading
-- keys not seen for their forget_after; on servers with TTL the rows go
-- 30 days after their latest sample (updated_at).
CREATE TABLE IF NOT EXISTS rule_state (
    rule             {{lc}},
    tenant           {{lc}},
    key              String,
    mean             Float64,
    variance         Float64,
    observed_seconds Float64,
    first_seen       DateTime('UTC'),
    last_seen        DateTime('UTC'),
    anomalous_since  DateTime('UTC'),
    updated_at       DateTime('UTC'),
    version          UInt64
)
ENGINE = {{engine "ReplacingMergeTree(version)"}}
ORDER BY (rule, tenant, key)
{{- if .Caps.TTL}}
TTL updated_at + INTERVAL 30 DAY
{{- end}};
