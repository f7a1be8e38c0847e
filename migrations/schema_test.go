package migrations_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/schema"
	"github.com/flowhouse/flowhouse/store"
)

// openEmbedded is the embedded engine on a new directory. It fails (not
// skips) without the library, as the store's tests do; set
// FLOWHOUSE_SKIP_EMBEDDED=1 to skip.
func openEmbedded(t *testing.T) store.DB {
	t.Helper()
	if os.Getenv("FLOWHOUSE_SKIP_EMBEDDED") != "" {
		t.Skip("FLOWHOUSE_SKIP_EMBEDDED is set")
	}
	cfg := store.DefaultConfig()
	cfg.Embedded.Path = t.TempDir()
	cfg.Embedded.Library = os.Getenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_LIBRARY")
	if cfg.Embedded.Library == "" {
		cfg.Embedded.Library = filepath.Join("..", "var", "lib", "libchdb.so")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := store.OpenEmbedded(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("%v (run make deps, or set FLOWHOUSE_SKIP_EMBEDDED=1)", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// The flows table the migrations build is schema.Flows, on both engines:
// the columns inserts fill, in order, each of the type the table gives
// for the engine, and besides them only ALIAS columns. A column added to
// schema.Flows without its migration, or the other way round, fails here.
func TestFlowsTableIsTheSchema(t *testing.T) {
	onBothEngines(t, func(t *testing.T, db store.DB) {
		ctx := context.Background()
		if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: store.DefaultConfig().Retention}); err != nil {
			t.Fatal(err)
		}
		caps, err := store.DetectCapabilities(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		dialect := schema.Dialect{IPv6: caps.IPv6, LowCardinality: caps.LowCardinality}
		var want []string
		for _, c := range schema.Flows.Columns() {
			want = append(want, c.Name+" "+c.Type.In(dialect))
		}
		got, aliases := describeFlows(t, db)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("flows on %s:\n got %q\nwant %q", caps.Version, got, want)
		}
		if len(aliases) == 0 {
			t.Error("no ALIAS columns: bytes_scaled and packets_scaled are gone")
		}
	})
}

// A migration adding columns that ran but was not recorded (the process
// died in between) runs again on the next Apply, on both engines: with
// IF NOT EXISTS where the engine has it, and on 18.16, which has not,
// because Apply takes "column already exists" as done.
func TestApplyCompletesAnUnrecordedAddColumn(t *testing.T) {
	onBothEngines(t, func(t *testing.T, db store.DB) {
		ctx := context.Background()
		if _, err := migrations.Apply(ctx, db, migrations.Options{}); err != nil {
			t.Fatal(err)
		}
		if err := db.Exec(ctx, "ALTER TABLE schema_migrations DELETE WHERE version = 5"); err != nil {
			t.Fatal(err)
		}
		waitMutations(t, db)
		again, err := migrations.Apply(ctx, db, migrations.Options{})
		if err != nil || len(again) != 1 || again[0].File() != "0005_vrf.sql" {
			t.Fatalf("Apply after an unrecorded 0005: %v, %v", again, err)
		}
		if got, _ := describeFlows(t, db); len(got) != len(schema.Flows.Columns()) {
			t.Errorf("flows has %d columns, want %d", len(got), len(schema.Flows.Columns()))
		}
	})
}

// onBothEngines runs test on the 18.16 server and on the embedded engine.
func onBothEngines(t *testing.T, test func(t *testing.T, db store.DB)) {
	for _, engine := range []struct {
		name string
		open func(*testing.T) store.DB
	}{{"server", openDB}, {"embedded", openEmbedded}} {
		t.Run(engine.name, func(t *testing.T) { test(t, engine.open(t)) })
	}
}

// describeFlows is the flows table's stored columns, "name type", in
// order, and its ALIAS columns.
func describeFlows(t *testing.T, db store.DB) (stored, aliases []string) {
	t.Helper()
	for _, fields := range describe(t, db, "flows") {
		if fields[2] == "ALIAS" {
			aliases = append(aliases, fields[0])
		} else {
			stored = append(stored, fields[0]+" "+fields[1])
		}
	}
	return stored, aliases
}
