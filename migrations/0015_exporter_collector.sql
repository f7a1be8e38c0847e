-- Several collectors can hear one exporter (a router exporting to two
-- destinations, or a balancer that moved it). Each collector's snapshot
-- is its own row: the collector is part of the key, so ReplacingMergeTree
-- keeps the latest snapshot of every (exporter, collector) instead of
-- letting one collector's replace another's. Rows written before this
-- migration have collector ''.
ALTER TABLE exporters
    ADD COLUMN {{ifNotExists}}collector {{lc}} AFTER exporter_address,
    MODIFY ORDER BY (exporter_address, collector);

DROP TABLE IF EXISTS exporters_latest;

CREATE VIEW IF NOT EXISTS exporters_latest AS
SELECT * FROM exporters FINAL;
