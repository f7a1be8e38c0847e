-- The SNMP polling status of each polled exporter (enrich/), so that the
-- inventory API and analysts can tell an exporter that polls well from
-- one that fails, and why, also after a restart (which reloads it).
--
-- A row is written after a poll whose outcome differs from the last row
-- written (a failure, a recovery, another reason or error), and at least
-- every polling.interfaces while the polls succeed. The latest row per
-- (tenant, exporter) is the current one: read with FINAL or
-- argMax(column, updated_ms) GROUP BY tenant, exporter_address.
CREATE TABLE IF NOT EXISTS exporter_polls (
    tenant               {{lc}},
    exporter_address     {{ip}},
    last_success         DateTime('UTC'),
    last_failure         DateTime('UTC'),
    last_failed_kind     {{lc}},
    last_reason          {{lc}},
    last_error           String,
    consecutive_failures UInt32,
    failures             UInt64,
    circuit_open_until   DateTime('UTC'),
    updated_at           DateTime('UTC'),
    updated_ms           UInt64
)
ENGINE = {{engine "ReplacingMergeTree(updated_ms)"}}
ORDER BY (tenant, exporter_address);
