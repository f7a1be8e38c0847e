package store

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/flowhouse/flowhouse/flow"
)

// Open connects to the database the config names: the ClickHouse server
// at addr, or the embedded engine when addr is empty.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (DB, error) {
	if cfg.Addr == "" {
		return OpenEmbedded(ctx, cfg, logger)
	}
	return OpenServer(ctx, cfg, logger)
}

// Server is a DB on a ClickHouse server, over the native protocol.
type Server struct {
	conn   driver.Conn
	logger *slog.Logger
}

// NewServer prepares a connection pool to a ClickHouse server without
// connecting: connections are made on first use, so a server that is down
// now only delays inserts (the batcher retries them). The database must
// exist; OpenServer creates it.
func NewServer(cfg Config, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	conn, err := dial(cfg, cfg.Database)
	if err != nil {
		return nil, err
	}
	return &Server{conn: conn, logger: logger}, nil
}

// OpenServer connects to a ClickHouse server and creates the configured
// database when it does not exist, so a first start needs no manual step.
func OpenServer(ctx context.Context, cfg Config, logger *slog.Logger) (*Server, error) {
	s, err := NewServer(cfg, logger)
	if err != nil {
		return nil, err
	}
	err = s.conn.Ping(ctx)
	if ExceptionCode(err) == CodeUnknownDatabase {
		s.conn.Close()
		if err := createDatabase(ctx, cfg); err != nil {
			return nil, err
		}
		s.logger.Info("created database", "database", cfg.Database, "addr", cfg.Addr)
		if s, err = NewServer(cfg, logger); err != nil {
			return nil, err
		}
		err = s.conn.Ping(ctx)
	}
	if err != nil {
		s.conn.Close()
		return nil, fmt.Errorf("store: connect to %s: %w", cfg.Addr, err)
	}
	return s, nil
}

func dial(cfg Config, database string) (driver.Conn, error) {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr: []string{cfg.Addr},
		Auth: clickhouse.Auth{
			Database: database,
			Username: cfg.Username,
			Password: cfg.Password,
		},
		DialTimeout: cfg.DialTimeout,
		// A read stalled longer than an insert may take is a dead server.
		ReadTimeout:  cfg.InsertTimeout,
		Compression:  &clickhouse.Compression{Method: compressionMethods[cfg.Compression]},
		MaxOpenConns: cfg.Writers + 8,
		MaxIdleConns: cfg.Writers + 2,
	})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", cfg.Addr, err)
	}
	return conn, nil
}

var compressionMethods = map[string]clickhouse.CompressionMethod{
	"lz4":  clickhouse.CompressionLZ4,
	"zstd": clickhouse.CompressionZSTD,
	"none": clickhouse.CompressionNone,
}

func createDatabase(ctx context.Context, cfg Config) error {
	// The server's default database for this user: the configured one
	// does not exist yet, so it cannot be the connection's database.
	conn, err := dial(cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(cfg.Database)); err != nil {
		return fmt.Errorf("store: create database %s: %w", cfg.Database, err)
	}
	return nil
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "\\`") + "`" }

func (s *Server) Exec(ctx context.Context, query string, args ...any) error {
	return s.conn.Exec(ctx, query, args...)
}

func (s *Server) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	return s.conn.Query(ctx, query, args...)
}

func (s *Server) Ping(ctx context.Context) error { return s.conn.Ping(ctx) }

func (s *Server) Close() error { return s.conn.Close() }

// flowColumns are the flows table's columns in the order the batch
// supplies them. The list is the INSERT's column list, which servers as
// old as 18.16 require.
var flowColumns = []struct {
	name  string
	value func(b *FlowBatch, s *insertScratch) any
}{
	{"time_received", func(b *FlowBatch, s *insertScratch) any { return s.seconds(0, b.timeReceivedMs) }},
	{"flow_start", func(b *FlowBatch, s *insertScratch) any { return s.seconds(1, b.timeStartMs) }},
	{"flow_end", func(b *FlowBatch, s *insertScratch) any { return s.seconds(2, b.timeEndMs) }},
	{"flow_duration_ms", func(b *FlowBatch, s *insertScratch) any { return s.durations(b.timeStartMs, b.timeEndMs) }},
	{"tenant", func(b *FlowBatch, _ *insertScratch) any { return b.tenant }},
	{"exporter_address", func(b *FlowBatch, _ *insertScratch) any { return b.exporterAddress }},
	{"exporter_port", func(b *FlowBatch, _ *insertScratch) any { return b.exporterPort }},
	{"exporter_name", func(b *FlowBatch, _ *insertScratch) any { return b.exporterName }},
	{"protocol", func(b *FlowBatch, _ *insertScratch) any { return b.protocol }},
	{"observation_domain", func(b *FlowBatch, _ *insertScratch) any { return b.observationDomain }},
	{"sampler_id", func(b *FlowBatch, _ *insertScratch) any { return b.samplerID }},
	{"sampling_rate", func(b *FlowBatch, _ *insertScratch) any { return b.samplingRate }},
	{"direction", func(b *FlowBatch, _ *insertScratch) any { return b.direction }},
	{"in_if_index", func(b *FlowBatch, _ *insertScratch) any { return b.inIfIndex }},
	{"in_if_name", func(b *FlowBatch, _ *insertScratch) any { return b.inIfName }},
	{"in_if_description", func(b *FlowBatch, _ *insertScratch) any { return b.inIfDescription }},
	{"in_if_speed_mbps", func(b *FlowBatch, _ *insertScratch) any { return b.inIfSpeedMbps }},
	{"in_if_boundary", func(b *FlowBatch, _ *insertScratch) any { return b.inIfBoundary }},
	{"out_if_index", func(b *FlowBatch, _ *insertScratch) any { return b.outIfIndex }},
	{"out_if_name", func(b *FlowBatch, _ *insertScratch) any { return b.outIfName }},
	{"out_if_description", func(b *FlowBatch, _ *insertScratch) any { return b.outIfDescription }},
	{"out_if_speed_mbps", func(b *FlowBatch, _ *insertScratch) any { return b.outIfSpeedMbps }},
	{"out_if_boundary", func(b *FlowBatch, _ *insertScratch) any { return b.outIfBoundary }},
	{"src_address", func(b *FlowBatch, _ *insertScratch) any { return b.srcAddress }},
	{"dst_address", func(b *FlowBatch, _ *insertScratch) any { return b.dstAddress }},
	{"next_hop", func(b *FlowBatch, _ *insertScratch) any { return b.nextHop }},
	{"src_port", func(b *FlowBatch, _ *insertScratch) any { return b.srcPort }},
	{"dst_port", func(b *FlowBatch, _ *insertScratch) any { return b.dstPort }},
	{"ip_protocol", func(b *FlowBatch, _ *insertScratch) any { return b.ipProtocol }},
	{"ip_version", func(b *FlowBatch, _ *insertScratch) any { return b.ipVersion }},
	{"tcp_flags", func(b *FlowBatch, _ *insertScratch) any { return b.tcpFlags }},
	{"tos", func(b *FlowBatch, _ *insertScratch) any { return b.tos }},
	{"icmp_type", func(b *FlowBatch, _ *insertScratch) any { return b.icmpType }},
	{"icmp_code", func(b *FlowBatch, _ *insertScratch) any { return b.icmpCode }},
	{"src_mask", func(b *FlowBatch, _ *insertScratch) any { return b.srcMask }},
	{"dst_mask", func(b *FlowBatch, _ *insertScratch) any { return b.dstMask }},
	{"src_vlan", func(b *FlowBatch, _ *insertScratch) any { return b.srcVLAN }},
	{"dst_vlan", func(b *FlowBatch, _ *insertScratch) any { return b.dstVLAN }},
	{"src_mac", func(b *FlowBatch, _ *insertScratch) any { return b.srcMAC }},
	{"dst_mac", func(b *FlowBatch, _ *insertScratch) any { return b.dstMAC }},
	{"src_vendor", func(b *FlowBatch, _ *insertScratch) any { return b.srcVendor }},
	{"dst_vendor", func(b *FlowBatch, _ *insertScratch) any { return b.dstVendor }},
	{"src_net_name", func(b *FlowBatch, _ *insertScratch) any { return b.srcNetName }},
	{"src_net_role", func(b *FlowBatch, _ *insertScratch) any { return b.srcNetRole }},
	{"src_net_site", func(b *FlowBatch, _ *insertScratch) any { return b.srcNetSite }},
	{"dst_net_name", func(b *FlowBatch, _ *insertScratch) any { return b.dstNetName }},
	{"dst_net_role", func(b *FlowBatch, _ *insertScratch) any { return b.dstNetRole }},
	{"dst_net_site", func(b *FlowBatch, _ *insertScratch) any { return b.dstNetSite }},
	{"src_as", func(b *FlowBatch, _ *insertScratch) any { return b.srcAS }},
	{"dst_as", func(b *FlowBatch, _ *insertScratch) any { return b.dstAS }},
	{"bytes", func(b *FlowBatch, _ *insertScratch) any { return b.bytes }},
	{"packets", func(b *FlowBatch, _ *insertScratch) any { return b.packets }},
	{"flow_label", func(b *FlowBatch, _ *insertScratch) any { return b.flowLabel }},
}

// FlowColumns lists the flows table's columns that inserts fill, in order.
func FlowColumns() []string {
	names := make([]string, len(flowColumns))
	for i, c := range flowColumns {
		names[i] = c.name
	}
	return names
}

var insertFlowsQuery = "INSERT INTO flows (" + strings.Join(FlowColumns(), ", ") + ")"

// insertScratch holds the columns computed at insert time (seconds from
// milliseconds), reused across inserts.
type insertScratch struct {
	secs  [3][]int64
	dur   []uint32
	views [4][][]byte // one per address column
}

var scratchPool = sync.Pool{New: func() any { return new(insertScratch) }}

func (s *insertScratch) seconds(slot int, ms []int64) []int64 {
	out := s.secs[slot][:0]
	for _, v := range ms {
		// DateTime is unsigned: anything before 1970 is stored as 1970.
		out = append(out, max(v, 0)/1000)
	}
	s.secs[slot] = out
	return out
}

func (s *insertScratch) durations(start, end []int64) []uint32 {
	out := s.dur[:0]
	for i := range start {
		var d uint32
		if start[i] > 0 && end[i] >= start[i] {
			d = uint32(min(end[i]-start[i], 1<<32-1))
		}
		out = append(out, d)
	}
	s.dur = out
	return out
}

// fixedViews feeds 16-byte values to a FixedString(16) column as slices
// of the batch's own arrays: no copy and no allocation per row. (Appending
// netip.Addr to FixedString stores garbage for IPv4, measured on 18.16;
// and in clickhouse-go v2.51 a BinaryMarshaler is checked as one row, so
// it cannot carry a whole column.)
func fixedViews(views [][]byte, addrs [][16]byte) [][]byte {
	views = views[:0]
	for i := range addrs {
		views = append(views, addrs[i][:])
	}
	return views
}

// InsertFlows inserts the batch as one columnar INSERT.
func (s *Server) InsertFlows(ctx context.Context, b *FlowBatch) error {
	if b.Len() == 0 {
		return nil
	}
	batch, err := s.conn.PrepareBatch(ctx, insertFlowsQuery)
	if err != nil {
		return fmt.Errorf("prepare insert into flows: %w", err)
	}
	defer batch.Close()
	cols := batch.Columns()
	if len(cols) != len(flowColumns) {
		return fmt.Errorf("insert into flows: server expects %d columns, batch has %d", len(cols), len(flowColumns))
	}
	scratch := scratchPool.Get().(*insertScratch)
	defer func() {
		// The views point into this batch: drop them so a pooled scratch
		// does not keep a batch's memory alive.
		for i := range scratch.views {
			clear(scratch.views[i])
		}
		scratchPool.Put(scratch)
	}()
	views := 0
	for i, c := range flowColumns {
		v := c.value(b, scratch)
		if a, ok := v.([][16]byte); ok && isFixedString(cols[i].Type()) {
			scratch.views[views] = fixedViews(scratch.views[views], a)
			v = scratch.views[views]
			views++
		}
		if err := batch.Column(i).Append(v); err != nil {
			return fmt.Errorf("insert into flows: column %s: %w", c.name, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d rows into flows: %w", b.Len(), err)
	}
	return nil
}

// isFixedString decides the address encoding by the column's actual
// type, not by server version: a table created on an old server keeps its
// FixedString(16) columns after the server is upgraded.
func isFixedString(t column.Type) bool { return strings.HasPrefix(string(t), "FixedString") }

var exporterColumns = []string{
	"exporter_address", "protocols", "first_seen", "last_seen",
	"datagrams", "flows", "bytes", "drop_reasons", "drop_counts", "templates",
	"sequence_expected", "sequence_lost",
	"streams.protocol", "streams.observation_domain", "streams.last_sequence",
	"streams.expected", "streams.lost", "streams.resets",
	"updated_at",
}

var insertExportersQuery = "INSERT INTO exporters (" + strings.Join(exporterColumns, ", ") + ")"

// InsertExporterStats writes one row per exporter. Drops become two
// parallel arrays sorted by reason, streams a Nested column.
func (s *Server) InsertExporterStats(ctx context.Context, at time.Time, stats []flow.ExporterStats) error {
	if len(stats) == 0 {
		return nil
	}
	n := len(stats)
	values := exporterValues(at, stats)

	batch, err := s.conn.PrepareBatch(ctx, insertExportersQuery)
	if err != nil {
		return fmt.Errorf("prepare insert into exporters: %w", err)
	}
	defer batch.Close()
	cols := batch.Columns()
	if len(cols) != len(values) {
		return fmt.Errorf("insert into exporters: server expects %d columns, have %d", len(cols), len(values))
	}
	for i, v := range values {
		if a, ok := v.([][16]byte); ok && isFixedString(cols[i].Type()) {
			v = fixedViews(nil, a)
		}
		if err := batch.Column(i).Append(v); err != nil {
			return fmt.Errorf("insert into exporters: column %s: %w", exporterColumns[i], err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d rows into exporters: %w", n, err)
	}
	return nil
}
