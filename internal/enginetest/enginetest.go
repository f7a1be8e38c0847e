// Package enginetest gives tests a migrated database on each engine: a
// fresh database on the shared ClickHouse 18.16 server (package chtest)
// and the embedded engine, opened once per test binary (chDB runs one
// engine per process) with the tables a test names emptied before it.
//
//	func TestMain(m *testing.M) { enginetest.Main(m) }
//
//	func TestX(t *testing.T) {
//		enginetest.Each(t, []string{"flows"}, func(t *testing.T, e enginetest.Engine) { ... })
//	}
package enginetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/store"
)

// Engine is one migrated database: DB writes, Reader is the read-only
// query interface (store.ReadOnly on the embedded engine, readonly=1 on
// the server).
type Engine struct {
	Name   string
	DB     store.DB
	Reader dbapi.Querier
}

// Exec runs statements, failing the test on error.
func (e Engine) Exec(t testing.TB, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if err := e.DB.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// Main runs the tests, then stops the server and closes and removes the
// embedded engine.
func Main(m *testing.M) { chtest.MainThen(m, closeEmbedded) }

// Server is a fresh migrated database on the shared server.
func Server(t testing.TB) Engine {
	t.Helper()
	addr, database := chtest.Database(t)
	cfg := store.DefaultConfig()
	cfg.Addr, cfg.Database = addr, database
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := store.OpenServer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention}); err != nil {
		t.Fatal(err)
	}
	return Engine{Name: "server", DB: db, Reader: db.ReadOnly()}
}

var embedded struct {
	once sync.Once
	dir  string
	db   *store.Embedded
	ro   *store.ReadOnly
	err  error
}

// Embedded is the process's embedded engine, migrated, with tables
// emptied. It fails the test when libchdb.so is missing (run make deps);
// FLOWHOUSE_SKIP_EMBEDDED=1 skips it.
func Embedded(t testing.TB, tables ...string) Engine {
	t.Helper()
	if os.Getenv("FLOWHOUSE_SKIP_EMBEDDED") != "" {
		t.Skip("FLOWHOUSE_SKIP_EMBEDDED is set")
	}
	embedded.once.Do(openEmbedded)
	if embedded.err != nil {
		t.Fatal(embedded.err)
	}
	e := Engine{Name: "embedded", DB: embedded.db, Reader: embedded.ro}
	for _, table := range tables {
		e.Exec(t, "TRUNCATE TABLE IF EXISTS "+table)
	}
	return e
}

// Each runs test on the server and on the embedded engine (tables
// emptied there first).
func Each(t *testing.T, tables []string, test func(t *testing.T, e Engine)) {
	t.Run("server", func(t *testing.T) { test(t, Server(t)) })
	t.Run("embedded", func(t *testing.T) { test(t, Embedded(t, tables...)) })
}

// Library is the embedded engine's library: FLOWHOUSE_CLICKHOUSE_EMBEDDED_LIBRARY,
// else var/lib/libchdb.so of the repository.
func Library() string {
	if lib := os.Getenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_LIBRARY"); lib != "" {
		return lib
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "var", "lib", "libchdb.so")
}

func openEmbedded() {
	lib := Library()
	if _, err := os.Stat(lib); err != nil {
		embedded.err = fmt.Errorf("the embedded engine's library is missing (%v): run `make deps`, or set FLOWHOUSE_SKIP_EMBEDDED=1 to skip", err)
		return
	}
	dir, err := os.MkdirTemp("", "flowhouse-enginetest-")
	if err != nil {
		embedded.err = err
		return
	}
	embedded.dir = dir
	cfg := store.DefaultConfig()
	cfg.Embedded.Library, cfg.Embedded.Path = lib, dir
	ctx := context.Background()
	db, err := store.OpenEmbedded(ctx, cfg, nil)
	if err != nil {
		embedded.err = err
		return
	}
	embedded.db = db
	if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention}); err != nil {
		embedded.err = err
		return
	}
	opts := store.ReadOnlyOptionsOf(cfg.Embedded)
	opts.Conns = 2
	embedded.ro, embedded.err = db.OpenReadOnly(ctx, opts)
}

func closeEmbedded() {
	if embedded.ro != nil {
		embedded.ro.Close()
	}
	if embedded.db != nil {
		embedded.db.Close()
	}
	if embedded.dir != "" {
		os.RemoveAll(embedded.dir)
	}
}
