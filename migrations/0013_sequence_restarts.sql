-- Restarts of each sequence stream: how often the exporter began a new
-- run (a reload, a crash, a reboot), told by its boot time, its IPFIX
-- systemInitTimeMilliseconds, its sFlow uptime or a jump back beyond any
-- reordering. Loss is counted within runs, never across a restart. And
-- the stream's transport session: NetFlow and IPFIX number messages per
-- session (RFC 7011 section 3.1), over UDP the exporter's source port.
-- Rows written before this migration read as 0 restarts per stream:
-- ClickHouse fills a Nested column added later with defaults, one per
-- element of its siblings (checked on 18.16).
--
-- exporters_latest was created as SELECT * and keeps the columns it had
-- then, so it is made again to show the new one.
ALTER TABLE exporters
    ADD COLUMN {{ifNotExists}}`streams.restarts` Array(UInt64) AFTER `streams.resets`,
    ADD COLUMN {{ifNotExists}}`streams.source_port` Array(UInt16) AFTER `streams.restarts`;

DROP TABLE IF EXISTS exporters_latest;

CREATE VIEW IF NOT EXISTS exporters_latest AS
SELECT * FROM exporters FINAL;
