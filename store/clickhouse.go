package store

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/schema"
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
	conn      driver.Conn
	clustered bool
	shards    *shardRouter // inserts of flows straight into the shards (clickhouse.cluster_inserts)
	flows     *nativePool  // INSERTs of flows (native.go)
	logger    *slog.Logger
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
	s := &Server{conn: conn, clustered: cfg.Layout().Clustered(), flows: newNativePool(cfg, "flows"), logger: logger}
	if s.clustered && cfg.ClusterInserts == ClusterInsertsShards {
		s.shards = newShardRouter(cfg, conn)
	}
	return s, nil
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
		ReadTimeout: cfg.InsertTimeout,
		// And so is a write: clickhouse-go bounds only Send by the context,
		// not the blocks an INSERT flushes before it (InsertFlows), which
		// would wait for ever on a server that stopped reading.
		DialContext: func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{Timeout: cfg.DialTimeout}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return &writeDeadlineConn{Conn: c, timeout: cfg.InsertTimeout}, nil
		},
		Compression:  &clickhouse.Compression{Method: compressionMethods[cfg.WireCompression()]},
		MaxOpenConns: cfg.Writers + 8,
		MaxIdleConns: cfg.Writers + 2,
	})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", cfg.Addr, err)
	}
	return conn, nil
}

// writeDeadlineConn fails a write that the peer does not take within
// timeout.
type writeDeadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *writeDeadlineConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
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
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(cfg.Database)+cfg.Layout().OnCluster()); err != nil {
		return fmt.Errorf("store: create database %s: %w", cfg.Database, err)
	}
	return nil
}

func quoteIdent(s string) string { return dbapi.QuoteIdent(s) }

func (s *Server) Exec(ctx context.Context, query string, args ...any) error {
	return s.conn.Exec(ctx, query, args...)
}

func (s *Server) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	return s.conn.Query(ctx, query, args...)
}

func (s *Server) Ping(ctx context.Context) error { return s.conn.Ping(ctx) }

func (s *Server) Close() error {
	s.flows.close()
	if s.shards != nil {
		s.shards.close()
	}
	return s.conn.Close()
}

// FlowColumns lists the fixed columns of the flows table that inserts
// fill, in order (a batch's table adds the mapped ones).
func FlowColumns() []string { return schema.Flows.Names() }

// insertFlowsQuery names the columns of the batch's table: servers as old
// as 18.16 require it, and a column no longer mapped, which stays in the
// database, gets its default.
func insertFlowsQuery(table string, b *FlowBatch) string {
	return "INSERT INTO " + table + " (" + strings.Join(b.Table().Names(), ", ") + ")"
}

// insertScratch is what an insert computes from a batch, reused across
// inserts.
type insertScratch struct{ schema.Scratch }

var scratchPool = sync.Pool{New: func() any { return new(insertScratch) }}

// release drops what the scratch holds of a batch, so that a pooled
// scratch does not keep a batch's memory alive.
func (s *insertScratch) release() {
	s.Release()
	scratchPool.Put(s)
}

// fixedViews feeds 16-byte values to a FixedString(16) column as slices
// of the batch's own arrays: no copy and no allocation per row. (Appending
// netip.Addr to FixedString stores garbage for IPv4, measured on 18.16;
// and in clickhouse-go v2.51 a BinaryMarshaler is checked as one row, so
// it cannot carry a whole column.)
func fixedViews[A ~[16]byte](views [][]byte, addrs []A) [][]byte {
	views = views[:0]
	for i := range addrs {
		views = append(views, addrs[i][:])
	}
	return views
}

// insertBlockRows is the rows of each Native block an INSERT of flows is
// sent in: the encoded block (about 1 MB before compression) is the
// buffer an insert reuses, and stays in the CPU's caches while it is
// compressed. The server squashes the blocks of one INSERT back into
// parts of min_insert_block_size_rows (a million rows), so a batch is
// still one part, written when the INSERT ends.
const insertBlockRows = 8192

// dedupTokenKey is the context key of WithDedupToken.
type dedupTokenKey struct{}

// WithDedupToken makes the inserts of flows under ctx send token as
// insert_deduplication_token, so the server stores a batch inserted twice
// (a retry after a lost answer) once. Only servers that know the setting
// (ClickHouse 22.2 and later) accept it.
func WithDedupToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, dedupTokenKey{}, token)
}

// InsertFlows inserts the batch as one INSERT of the batch's own columns,
// in blocks of insertBlockRows rows (native.go). A failed insert drops its
// connection, so the server cancels the whole INSERT and the retry does
// not store a part of it twice.
func (s *Server) InsertFlows(ctx context.Context, b *FlowBatch) error {
	if b.Len() == 0 {
		return nil
	}
	var settings []proto.Setting
	if token, ok := ctx.Value(dedupTokenKey{}).(string); ok {
		settings = append(settings, proto.Setting{Key: "insert_deduplication_token", Value: token})
		if s.clustered {
			// A retried block that a shard has already is then still
			// pushed to the rollup views, whose Replicated tables drop
			// what they have: the rollups of a block whose first attempt
			// died between the raw part and the view's part are not lost.
			// (Servers without tokens, such as 18.16, skip the views of a
			// duplicate block; README says what that costs.) Not on one
			// server, whose rollup tables do not deduplicate.
			settings = append(settings, proto.Setting{Key: "deduplicate_blocks_in_dependent_materialized_views", Value: "1"})
		}
	}
	if s.shards != nil {
		if err := s.shards.insert(ctx, b, settings); err != nil {
			return fmt.Errorf("insert %d rows into flows_local: %w", b.Len(), err)
		}
		return nil
	}
	if s.clustered {
		// Through the front (cluster_inserts: distributed), the insert
		// returns once every shard has its rows: a failure is then the
		// insert's, and its retry (same rows, same shards by the front's
		// key, same blocks) is dropped by the shards that have it
		// already. In the background mode (0) the node that took the
		// insert queues the rows on its disk and sends them later, so an
		// acknowledged batch could still be lost with that node's disk,
		// and a full queue is not pushed back to the collector.
		settings = append(settings, proto.Setting{Key: "insert_distributed_sync", Value: "1"})
	}
	if err := s.flows.insertFlows(ctx, b, settings); err != nil {
		return fmt.Errorf("insert %d rows into flows: %w", b.Len(), err)
	}
	return nil
}

// isFixedString decides the address encoding by the column's actual
// type, not by server version: a table created on an old server keeps its
// FixedString(16) columns after the server is upgraded.
func isFixedString(t column.Type) bool { return strings.HasPrefix(string(t), "FixedString") }

var exporterColumns = []string{
	"exporter_address", "collector", "protocols", "first_seen", "last_seen",
	"datagrams", "flows", "bytes", "drop_reasons", "drop_counts", "templates",
	"sequence_expected", "sequence_lost",
	"streams.protocol", "streams.observation_domain", "streams.last_sequence",
	"streams.expected", "streams.lost", "streams.resets", "streams.restarts", "streams.source_port",
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
		if a, ok := v.([]proto.IPv6); ok && isFixedString(cols[i].Type()) {
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

// ReadOnly returns the server's query interface at readonly=1: the
// server refuses every write, DDL and change of a setting in what runs
// through it, and its grants decide the rest. It is what the SQL of
// alert rules runs through on a server.
func (s *Server) ReadOnly() dbapi.Querier { return readOnlyServer{s} }

type readOnlyServer struct{ s *Server }

func (r readOnlyServer) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	return r.s.conn.Query(clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"readonly": 1})), query, args...)
}
