-- Snapshots of what the collector knows about each exporter. Each
-- snapshot is a new row; ReplacingMergeTree keeps the latest per
-- exporter when it merges, and exporters_latest shows only the latest
-- whether merged or not.
CREATE TABLE IF NOT EXISTS exporters (
    exporter_address  {{ip}},
    protocols         Array({{lc}}),
    first_seen        DateTime('UTC'),
    last_seen         DateTime('UTC'),
    datagrams         UInt64,
    flows             UInt64,
    bytes             UInt64,
    drop_reasons      Array({{lc}}),
    drop_counts       Array(UInt64),
    templates         UInt32,
    sequence_expected UInt64,
    sequence_lost     UInt64,
    streams Nested (
        protocol           {{lc}},
        observation_domain UInt32,
        last_sequence      UInt32,
        expected           UInt64,
        lost               UInt64,
        resets             UInt64
    ),
    updated_at        DateTime('UTC')
)
ENGINE = {{engine "ReplacingMergeTree(updated_at)"}}
ORDER BY exporter_address;

CREATE VIEW IF NOT EXISTS exporters_latest AS
SELECT * FROM exporters FINAL;
