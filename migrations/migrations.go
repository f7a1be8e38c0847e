// Package migrations creates and evolves flowhouse's schema.
//
// Each migration is an embedded SQL file NNNN_name.sql, a text/template
// rendered for the capabilities of the server it runs on (detected once
// from SELECT version()), so one logical schema runs on ClickHouse 18.16
// and on current releases: IPv6 or FixedString(16), TTL or none (the store's
// retention job drops partitions instead), codecs or none,
// LowCardinality(String) or String.
//
// Statements in a file end with ";" at the end of a line; lines starting
// with "--" are comments and are not sent. Every statement is written to be
// re-runnable (IF NOT EXISTS), so a migration interrupted halfway is
// completed by the next Apply. ALTER TABLE ... ADD COLUMN gets
// {{ifNotExists}}, which 18.16 lacks; there Apply takes "column already
// exists" as the statement done.
//
// Applied migrations are recorded in schema_migrations with the checksum
// of their template, not of the rendered SQL: changing the retention in
// the config does not make an applied migration look modified.
package migrations

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/store"
)

//go:embed *.sql
var files embed.FS

// Migration is one embedded SQL file.
type Migration struct {
	Version  int
	Name     string // file name without the version and extension, e.g. "flows"
	Checksum string // sha256 of the template, hex
	source   string
}

// File is the migration's file name.
func (m Migration) File() string { return fmt.Sprintf("%04d_%s.sql", m.Version, m.Name) }

var all = mustLoad()

func mustLoad() []Migration {
	ms, err := load(files)
	if err != nil {
		panic(err)
	}
	return ms
}

func load(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, err
	}
	var ms []Migration
	seen := map[int]string{}
	for _, file := range names {
		base := strings.TrimSuffix(file, ".sql")
		num, name, ok := strings.Cut(base, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil || version < 1 || name == "" {
			return nil, fmt.Errorf("migrations: %s: want NNNN_name.sql", file)
		}
		if prev, dup := seen[version]; dup {
			return nil, fmt.Errorf("migrations: %s and %s have the same version", prev, file)
		}
		seen[version] = file
		data, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(data)
		m := Migration{Version: version, Name: name, Checksum: hex.EncodeToString(sum[:]), source: string(data)}
		// Parse now so that a broken template fails every test, not a deployment.
		if _, err := m.parse(); err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// All returns the embedded migrations in version order.
func All() []Migration { return append([]Migration(nil), all...) }

// Options of rendering and applying.
type Options struct {
	// Retention goes into the tables' TTL on servers that have TTL.
	Retention store.RetentionConfig
	Logger    *slog.Logger
	// Extra are the mapped columns (collector.Config.ExtraColumns) that
	// Apply adds to flows after the versioned migrations.
	Extra []flow.ExtraColumn
	// Layout is one server (the zero value) or a cluster, whose DDL is
	// rendered ON CLUSTER with Replicated engines and Distributed fronts
	// (cluster.go). Apply then also holds a cluster-wide lock.
	Layout dbapi.Layout
	// LockWait bounds the wait for another process's migration lock on a
	// cluster (DefaultLockWait when 0).
	LockWait time.Duration
}

// Params is what templates see.
type Params struct {
	Caps      store.Capabilities
	Retention store.RetentionConfig
	Layout    dbapi.Layout
}

func (m Migration) parse() (*template.Template, error) {
	// Function bodies do not matter for parsing, only names.
	t, err := template.New(m.File()).Funcs(funcs(Params{})).Parse(m.source)
	if err != nil {
		return nil, fmt.Errorf("migrations: %s: %w", m.File(), err)
	}
	return t, nil
}

// Render returns the statements of m for a server with caps, in p's
// layout.
func (m Migration) Render(p Params) ([]string, error) {
	t, err := m.parse()
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	if err := t.Funcs(funcs(p)).Execute(&b, p); err != nil {
		return nil, fmt.Errorf("migrations: render %s: %w", m.File(), err)
	}
	stmts := splitStatements(b.String())
	if !p.Layout.Clustered() {
		return stmts, nil
	}
	var out []string
	for _, stmt := range stmts {
		rewritten, err := clusterStatements(p.Layout, stmt)
		if err != nil {
			return nil, fmt.Errorf("migrations: %s: %w", m.File(), err)
		}
		out = append(out, rewritten...)
	}
	return out, nil
}

// splitStatements cuts at ";" ending a line and drops comment lines.
func splitStatements(sql string) []string {
	var stmts []string
	var cur strings.Builder
	flush := func() {
		if s := strings.TrimSpace(cur.String()); s != "" {
			stmts = append(stmts, s)
		}
		cur.Reset()
	}
	for _, line := range strings.Split(sql, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") || trimmed == "" {
			continue
		}
		if strings.HasSuffix(trimmed, ";") {
			cur.WriteString(strings.TrimSuffix(strings.TrimRight(line, " \t"), ";"))
			flush()
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
	}
	flush()
	return stmts
}

// State of one migration on a database.
type State struct {
	Migration
	Applied   bool
	AppliedAt time.Time
	// Modified: the applied checksum differs from the embedded file's.
	Modified        bool
	AppliedChecksum string
}

// migrationsTable is schema_migrations, rendered as a migration is so
// that a cluster has it on every node, replicated: every process then
// reads the same record of what was applied.
var migrationsTable = Migration{Name: "schema_migrations", source: `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime('UTC')
) ENGINE = {{engine "MergeTree()"}} ORDER BY version;`}

// Status reports each embedded migration's state on db. A database that
// was never migrated has every migration pending.
func Status(ctx context.Context, db store.DB) ([]State, error) {
	applied, err := appliedVersions(ctx, db)
	if err != nil {
		return nil, err
	}
	states := make([]State, len(all))
	for i, m := range all {
		states[i].Migration = m
		if a, ok := applied[m.Version]; ok {
			states[i].Applied = true
			states[i].AppliedAt = a.at
			states[i].AppliedChecksum = a.checksum
			states[i].Modified = a.checksum != m.Checksum
		}
	}
	return states, nil
}

// Ready is the readiness check of the schema: an error, saying what to
// run, while migrations are pending.
func Ready(ctx context.Context, db store.DB) error {
	pending, err := Pending(ctx, db)
	if err != nil {
		return err
	}
	if len(pending) > 0 {
		return fmt.Errorf("%d migrations pending, first %s: run flowhouse migrate", len(pending), pending[0].File())
	}
	return nil
}

// Pending returns the migrations not applied to db yet; readiness checks
// call it ("migrations applied?" is len == 0).
func Pending(ctx context.Context, db store.DB) ([]Migration, error) {
	states, err := Status(ctx, db)
	if err != nil {
		return nil, err
	}
	var pending []Migration
	for _, s := range states {
		if !s.Applied {
			pending = append(pending, s.Migration)
		}
	}
	return pending, nil
}

type appliedRecord struct {
	checksum string
	at       time.Time
}

func appliedVersions(ctx context.Context, db store.DB) (map[int]appliedRecord, error) {
	var exists uint8
	if err := store.QueryRow(ctx, db, []any{&exists},
		"SELECT toUInt8(count() > 0) FROM system.tables WHERE database = currentDatabase() AND name = 'schema_migrations'"); err != nil {
		return nil, fmt.Errorf("migrations: look for schema_migrations: %w", err)
	}
	out := map[int]appliedRecord{}
	if exists == 0 {
		return out, nil
	}
	rows, err := db.Query(ctx, "SELECT version, checksum, applied_at FROM schema_migrations ORDER BY version, applied_at")
	if err != nil {
		return nil, fmt.Errorf("migrations: read schema_migrations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			version  uint32
			checksum string
			at       time.Time
		)
		if err := rows.Scan(&version, &checksum, &at); err != nil {
			return nil, fmt.Errorf("migrations: read schema_migrations: %w", err)
		}
		// Two instances migrating at once may both record a version:
		// the first record is the one that counts.
		if _, dup := out[int(version)]; !dup {
			out[int(version)] = appliedRecord{checksum: checksum, at: at}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrations: read schema_migrations: %w", err)
	}
	return out, nil
}

// Apply brings db up to date: it applies the pending migrations in order
// and records each. It is idempotent. It refuses to run when an applied
// migration's file has changed since, because the schema would then not
// be what the files say.
//
// On one server, two flowhouse instances applying at the same time are not
// locked against each other; every statement tolerates a rerun, so the
// worst outcome is a version recorded twice. On a cluster, where DDL runs
// on every node and processes start together, Apply holds a cluster-wide
// lock (lock.go): one process migrates, the others wait and then find
// nothing pending.
func Apply(ctx context.Context, db store.DB, opts Options) ([]Migration, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	caps, err := store.DetectCapabilities(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	if opts.Layout.Clustered() {
		release, err := lockCluster(ctx, db, opts.Layout, opts.LockWait, logger)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	params := Params{Caps: caps, Retention: opts.Retention, Layout: opts.Layout}
	if err := execMigration(ctx, db, migrationsTable, params); err != nil {
		return nil, fmt.Errorf("migrations: create schema_migrations: %w", err)
	}
	states, err := Status(ctx, db)
	if err != nil {
		return nil, err
	}
	for _, s := range states {
		if s.Modified {
			return nil, fmt.Errorf("migrations: %s was applied with checksum %s but the file now has %s: add a new migration instead of editing an applied one",
				s.File(), s.AppliedChecksum, s.Checksum)
		}
	}
	var done []Migration
	for _, s := range states {
		if s.Applied {
			continue
		}
		if err := execMigration(ctx, db, s.Migration, params); err != nil {
			return done, err
		}
		// INSERT ... SELECT rather than VALUES: 18.16 waits for a data block
		// after an INSERT ... VALUES sent as a query.
		if err := db.Exec(ctx, "INSERT INTO schema_migrations (version, name, checksum, applied_at) SELECT ?, ?, ?, now()",
			uint32(s.Version), s.Name, s.Checksum); err != nil {
			return done, fmt.Errorf("migrations: record %s: %w", s.File(), err)
		}
		logger.Info("applied migration", "migration", s.File(), "server_version", caps.Version, "cluster", opts.Layout.Cluster)
		done = append(done, s.Migration)
	}
	return done, applyExtra(ctx, db, params, opts.Extra, logger)
}

// execMigration runs m's statements rendered with p.
func execMigration(ctx context.Context, db store.DB, m Migration, p Params) error {
	stmts, err := m.Render(p)
	if err != nil {
		return err
	}
	if i, err := execStatements(ctx, db, p.Caps, stmts); err != nil {
		return fmt.Errorf("migrations: %s statement %d: %w", m.File(), i+1, err)
	}
	return nil
}

// execStatements runs stmts in order, taking an ADD COLUMN rerun as done,
// and says which failed.
func execStatements(ctx context.Context, db store.DB, caps store.Capabilities, stmts []string) (int, error) {
	for i, stmt := range stmts {
		if err := db.Exec(ctx, stmt); err != nil && !columnAdded(caps, stmt, err) {
			return i, fmt.Errorf("%w\n%s", err, stmt)
		}
	}
	return 0, nil
}

// columnAdded tells the error of an ADD COLUMN rerun on a server without
// IF NOT EXISTS for it (18.16): the column is there, so the statement's
// work is done. (ALTER TABLE applies all its ADD COLUMNs or none.)
func columnAdded(caps store.Capabilities, stmt string, err error) bool {
	var exc *clickhouse.Exception
	return !caps.AlterIfNotExists && strings.Contains(stmt, "ADD COLUMN") &&
		errors.As(err, &exc) && exc.Code == errIllegalColumn && strings.Contains(exc.Message, "already exists")
}

// errIllegalColumn is ClickHouse's ILLEGAL_COLUMN, which 18.16 raises for
// a column added twice.
const errIllegalColumn = 44
