package rules

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/store"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// engine is one database the rules are tested on: DB writes (flows, the
// rules' own state), Reader is the read-only interface rules read through.
type engine struct {
	Name   string
	DB     store.DB
	Reader dbapi.Querier
}

// Insert stores flows as the batcher would.
func (e engine) Insert(t testing.TB, flows []flow.Flow) {
	t.Helper()
	b := store.NewFlowBatch(len(flows))
	b.Append(flows)
	if err := e.DB.InsertFlows(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// Exec runs statements, failing the test on error.
func (e engine) Exec(t testing.TB, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if err := e.DB.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

var embedded struct {
	once sync.Once
	db   *store.Embedded
	ro   *store.ReadOnly
	err  error
}

// embeddedTables are emptied before each test on the embedded engine,
// which is opened once per process (chDB runs one engine per process).
var embeddedTables = []string{"flows", "flows_1m", "flows_1h", "interface_counters", "arp_observations", "alerts", "alert_events"}

// forEachEngine runs test on a fresh database of the ClickHouse 18.16
// server and on the embedded engine (tables emptied). The embedded run
// fails when libchdb.so is missing; FLOWHOUSE_SKIP_EMBEDDED=1 skips it.
func forEachEngine(t *testing.T, test func(t *testing.T, e engine)) {
	t.Run("server", func(t *testing.T) {
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
		test(t, engine{Name: "server", DB: db, Reader: db.ReadOnly()})
	})
	t.Run("embedded", func(t *testing.T) {
		if os.Getenv("FLOWHOUSE_SKIP_EMBEDDED") != "" {
			t.Skip("FLOWHOUSE_SKIP_EMBEDDED is set")
		}
		embedded.once.Do(openEmbedded)
		if embedded.err != nil {
			t.Fatal(embedded.err)
		}
		e := engine{Name: "embedded", DB: embedded.db, Reader: embedded.ro}
		for _, table := range embeddedTables {
			e.Exec(t, "TRUNCATE TABLE IF EXISTS "+table)
		}
		for _, table := range extraEmbeddedTables {
			e.Exec(t, "TRUNCATE TABLE IF EXISTS "+table)
		}
		test(t, e)
	})
}

// extraEmbeddedTables are the rules' own tables, emptied too.
var extraEmbeddedTables []string

func openEmbedded() {
	lib := os.Getenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_LIBRARY")
	if lib == "" {
		lib = filepath.Join("..", "..", "var", "lib", "libchdb.so")
	}
	if _, err := os.Stat(lib); err != nil {
		embedded.err = err
		return
	}
	dir, err := os.MkdirTemp("", "flowhouse-rules-")
	if err != nil {
		embedded.err = err
		return
	}
	cfg := store.DefaultConfig()
	cfg.Embedded.Library, cfg.Embedded.Path = lib, dir
	ctx := context.Background()
	db, err := store.OpenEmbedded(ctx, cfg, nil)
	if err != nil {
		embedded.err = err
		return
	}
	if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention}); err != nil {
		embedded.err = err
		return
	}
	opts := store.ReadOnlyOptionsOf(cfg.Embedded)
	opts.Conns = 2
	embedded.db = db
	embedded.ro, embedded.err = db.OpenReadOnly(ctx, opts)
}
