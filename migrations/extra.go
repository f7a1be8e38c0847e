package migrations

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/schema"
	"github.com/flowhouse/flowhouse/store"
)

// extraVersion is the version schema_migrations records a mapped column
// under: no migration file has it (they start at 1), so Status and
// Pending never mistake one for the other.
const extraVersion = 0

// extraRecordName is how schema_migrations names the migration that added
// a mapped column.
func extraRecordName(column string) string { return "extra_field_" + column }

// applyExtra is the migration of each mapped column (collector.extra_fields):
// ALTER TABLE flows ADD COLUMN for those flows lacks, recorded in
// schema_migrations, after the versioned migrations so that the mapped
// columns come after every fixed one. A column that is there already,
// from an earlier start, is left as it is; one of another type is an
// error, because its stored values would be read as the new type. Nothing
// is ever dropped: a mapping removed from the configuration leaves its
// column and its data, and inserts leave it at its default.
func applyExtra(ctx context.Context, db store.DB, p Params, extra []flow.ExtraColumn, logger *slog.Logger) error {
	caps := p.Caps
	if len(extra) == 0 {
		return nil
	}
	have, err := flowsColumns(ctx, db)
	if err != nil {
		return err
	}
	recorded, err := extraRecords(ctx, db)
	if err != nil {
		return err
	}
	dialect := schema.Dialect{IPv6: caps.IPv6, LowCardinality: caps.LowCardinality}
	ifNotExists := funcs(Params{Caps: caps})["ifNotExists"].(func() string)()
	for _, x := range extra {
		t, ok := schema.ExtraType(x.Kind)
		if !ok {
			return fmt.Errorf("migrations: mapped column %s: no type for %s", x.Name, x.Kind)
		}
		want := t.In(dialect)
		got, exists := have[x.Name]
		switch {
		case exists && got.kind != "":
			return fmt.Errorf("migrations: mapped column %s: flows has it as an %s column: map the element to another column", x.Name, got.kind)
		case exists && got.typ != want:
			return fmt.Errorf("migrations: mapped column %s: flows has it as %s, the mapping (type %s) makes it %s: the type of a mapped column is never changed; map the element to a new column (the old one keeps its data)",
				x.Name, got.typ, x.Kind, want)
		case !exists:
			if err := addExtraColumn(ctx, db, p, "ALTER TABLE flows ADD COLUMN "+ifNotExists+x.Name+" "+want); err != nil {
				return fmt.Errorf("migrations: add mapped column %s: %w", x.Name, err)
			}
		}
		if recorded[x.Name] {
			continue
		}
		sum := sha256.Sum256([]byte(x.Name + " " + x.Kind.String()))
		if err := db.Exec(ctx, "INSERT INTO schema_migrations (version, name, checksum, applied_at) SELECT ?, ?, ?, now()",
			uint32(extraVersion), extraRecordName(x.Name), hex.EncodeToString(sum[:])); err != nil {
			return fmt.Errorf("migrations: record mapped column %s: %w", x.Name, err)
		}
		logger.Info("added mapped column", "column", x.Name, "type", want, "server_version", caps.Version)
	}
	return nil
}

// addExtraColumn runs the ALTER of a mapped column, on a cluster on each
// shard's tables and the front.
func addExtraColumn(ctx context.Context, db store.DB, p Params, stmt string) error {
	stmts := []string{stmt}
	if p.Layout.Clustered() {
		var err error
		if stmts, err = clusterStatements(p.Layout, stmt); err != nil {
			return err
		}
	}
	_, err := execStatements(ctx, db, p.Caps, stmts)
	return err
}

type columnInfo struct {
	typ  string
	kind string // default_kind: "" for a stored column, ALIAS, MATERIALIZED, DEFAULT
}

func flowsColumns(ctx context.Context, db store.DB) (map[string]columnInfo, error) {
	rows, err := db.Query(ctx, "SELECT name, type, default_kind FROM system.columns WHERE database = currentDatabase() AND table = 'flows'")
	if err != nil {
		return nil, fmt.Errorf("migrations: read the columns of flows: %w", err)
	}
	defer rows.Close()
	out := map[string]columnInfo{}
	for rows.Next() {
		var name string
		var c columnInfo
		if err := rows.Scan(&name, &c.typ, &c.kind); err != nil {
			return nil, fmt.Errorf("migrations: read the columns of flows: %w", err)
		}
		out[name] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrations: read the columns of flows: %w", err)
	}
	return out, nil
}

// extraRecords are the mapped columns schema_migrations records.
func extraRecords(ctx context.Context, db store.DB) (map[string]bool, error) {
	rows, err := db.Query(ctx, "SELECT name FROM schema_migrations WHERE version = ?", uint32(extraVersion))
	if err != nil {
		return nil, fmt.Errorf("migrations: read schema_migrations: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("migrations: read schema_migrations: %w", err)
		}
		if column, ok := strings.CutPrefix(name, extraRecordName("")); ok {
			out[column] = true
		}
	}
	return out, rows.Err()
}
