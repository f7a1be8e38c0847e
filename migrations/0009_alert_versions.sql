-- The recent changes of every alert (analytics/alerts), append-only: one
-- row per row written to alerts, with the small columns a change is
-- known by. alerts is a ReplacingMergeTree whose merges drop the old
-- versions; the API needs them for two things:
--   * a list paged with a snapshot (the first page fixes a time S):
--     an alert changed after S keeps its place, the updated_at it had
--     as of S, which is the prev_updated_at of its first row written
--     after S;
--   * the change stream: rows in (written_at, id, version) order.
-- written_at is the database's clock at the insert, so the order is the
-- order the rows were written in, whatever updated_at (an evaluation's
-- time) says. Both uses read only rows written within the last day (a
-- page token's life), so rows are kept 3 days: by TTL where the server
-- has it, else by the store's retention job, which drops day partitions
-- (store.AlertVersionsRetention).
CREATE TABLE IF NOT EXISTS alert_versions (
    tenant          {{lc}},
    id              String,
    version         UInt64,
    rule            {{lc}},
    subject_names   Array(String),
    subject_values  Array(String),
    severity        {{lc}},
    status          {{lc}},
    acknowledged    UInt8,
    updated_at      DateTime('UTC'),
    prev_updated_at DateTime('UTC'),
    written_at      DateTime('UTC') DEFAULT now()
)
ENGINE = {{engine "MergeTree()"}}
PARTITION BY toYYYYMMDD(written_at)
ORDER BY (tenant, written_at, id, version)
{{- if .Caps.TTL}}
TTL written_at + INTERVAL 3 DAY
{{- end}}
{{settings}};
