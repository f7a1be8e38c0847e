// Package store writes flows to ClickHouse: a batcher that turns the
// collector's flows into columnar batches, a bounded queue in front of the
// writers, the DB abstraction every flowhouse component queries through,
// and the retention job for servers without TTL.
package store

import (
	"context"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// DB is the one way flowhouse talks to its database. There are (or will
// be) two implementations: a ClickHouse server over the native protocol,
// and the embedded engine, whose queries return a result buffer in a
// chosen format. So the interface speaks in SQL text, positional `?`
// arguments bound on the client side, and rows scanned into basic Go
// types; bulk inserts are methods because each engine has its own fast
// path for them.
type DB interface {
	// Exec runs a statement that returns no rows (DDL, ALTER, INSERT ...
	// SELECT); Query runs a SELECT, whose Rows must be closed.
	dbapi.DB
	// InsertFlows inserts a whole batch into the flows table in one insert.
	InsertFlows(ctx context.Context, b *FlowBatch) error
	// InsertExporterStats writes one snapshot row per exporter, stamped at.
	InsertExporterStats(ctx context.Context, at time.Time, stats []flow.ExporterStats) error
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	Close() error
}

// Rows is a result being read (package dbapi, which enrichment queries
// through without importing store).
type Rows = dbapi.Rows

// Writer is what the batcher hands full batches to: a DB, or a disk
// spool in front of one.
type Writer interface {
	InsertFlows(ctx context.Context, b *FlowBatch) error
}

// QueryRow runs a query expected to return one row and scans it.
func QueryRow(ctx context.Context, db DB, dest []any, query string, args ...any) error {
	return dbapi.QueryRow(ctx, db, dest, query, args...)
}

// Capabilities of a database engine that change the SQL flowhouse renders.
type Capabilities = dbapi.Capabilities

// CapabilitiesOf maps a version() string to capabilities.
func CapabilitiesOf(version string) (Capabilities, error) { return dbapi.CapabilitiesOf(version) }

// DetectCapabilities asks the database for its version.
func DetectCapabilities(ctx context.Context, db DB) (Capabilities, error) {
	return dbapi.DetectCapabilities(ctx, db)
}
