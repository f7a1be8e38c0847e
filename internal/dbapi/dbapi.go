// Package dbapi is the query interface of flowhouse's database: SQL text,
// positional `?` arguments bound on the client side, and rows scanned into
// basic Go types. It also says what an engine can do (Capabilities), which
// changes the SQL its users render.
//
// It sits below every package that queries: enrichment, which comes before
// the store in the data path, keeps and reloads its state through it
// without importing store, and a store.DB is a DB as it is.
package dbapi

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// DB runs statements and queries. Both engines of package store implement
// it (a store.DB is one).
type DB interface {
	// Exec runs a statement that returns no rows (DDL, ALTER, INSERT ... SELECT).
	Exec(ctx context.Context, query string, args ...any) error
	Querier
}

// Querier runs a SELECT. Rows must be closed.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (Rows, error)
}

// Rows is a result being read. Scan accepts pointers to string, integer
// and float types of the column's width, bool, time.Time, []byte and
// slices of those for arrays.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Columns() []string
	Err() error
	Close() error
}

// QueryRow runs a query expected to return one row and scans it.
func QueryRow(ctx context.Context, db Querier, dest []any, query string, args ...any) error {
	rows, err := db.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return fmt.Errorf("no rows from %q", query)
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	return rows.Close()
}

// Each runs query and hands every row to scan; the first error of the
// query, of a scan or of the iteration ends it.
func Each(ctx context.Context, db Querier, query string, args []any, scan func(Rows) error) error {
	rows, err := db.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Capabilities of a database engine that change the SQL flowhouse renders.
type Capabilities struct {
	Version string
	// IPv6 column type (else FixedString(16) holding the same 16 bytes).
	IPv6 bool
	// TTL clauses on tables (else the retention job drops partitions).
	TTL bool
	// Codecs: per-column CODEC(...) clauses.
	Codecs bool
	// LowCardinality(String) without experimental settings.
	LowCardinality bool
	// AlterIfNotExists: ALTER TABLE ... ADD COLUMN IF NOT EXISTS.
	AlterIfNotExists bool
}

// modernVersion is the oldest release whose features the modern schema
// uses (20.3 LTS has IPv6, TTL, codecs and stable LowCardinality). Older
// servers, 18.16 being the one we can test, get the legacy schema, which
// is valid on every release in between too.
var modernVersion = [2]int{20, 3}

// CapabilitiesOf maps a version() string to capabilities.
func CapabilitiesOf(version string) (Capabilities, error) {
	parts := strings.SplitN(strings.TrimSpace(version), ".", 3)
	if len(parts) < 2 {
		return Capabilities{}, fmt.Errorf("version %q: want major.minor", version)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return Capabilities{}, fmt.Errorf("version %q: want numeric major.minor", version)
	}
	modern := major > modernVersion[0] || (major == modernVersion[0] && minor >= modernVersion[1])
	return Capabilities{
		Version:          version,
		IPv6:             modern,
		TTL:              modern,
		Codecs:           modern,
		LowCardinality:   modern,
		AlterIfNotExists: modern,
	}, nil
}

// DetectCapabilities asks the database for its version.
func DetectCapabilities(ctx context.Context, db Querier) (Capabilities, error) {
	var version string
	if err := QueryRow(ctx, db, []any{&version}, "SELECT version()"); err != nil {
		return Capabilities{}, fmt.Errorf("detect capabilities: %w", err)
	}
	return CapabilitiesOf(version)
}
