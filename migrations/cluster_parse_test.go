package migrations_test

import (
	"context"
	"testing"

	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/store"
)

// The modern cluster DDL parses on a current ClickHouse: the embedded
// engine's own parser (EXPLAIN AST) takes every statement. It cannot run
// them: it has no ZooKeeper and no cluster.
func TestClusterDDLParsesOnModernEngine(t *testing.T) {
	db := openEmbedded(t)
	caps, err := store.DetectCapabilities(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	p := migrations.Params{Caps: caps, Retention: store.DefaultConfig().Retention,
		Layout: dbapi.Layout{Cluster: "fh_cluster", Database: "fh"}}
	n := 0
	for _, m := range migrations.All() {
		stmts, err := m.Render(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, stmt := range stmts {
			n++
			rows, err := db.Query(context.Background(), "EXPLAIN AST "+stmt)
			if err != nil {
				t.Errorf("%s: %v\n%s", m.File(), err, stmt)
				continue
			}
			lines := 0
			for rows.Next() {
				lines++
			}
			rows.Close()
			if lines == 0 {
				t.Errorf("%s: EXPLAIN AST gave nothing for\n%s", m.File(), stmt)
			}
		}
	}
	if n < 30 {
		t.Errorf("%d statements parsed; the cluster schema has more", n)
	}
}
