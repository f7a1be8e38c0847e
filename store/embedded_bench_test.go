package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/store"
)

// BenchmarkEmbeddedInsertFlows measures rows per second into the embedded
// engine, rollup views included, in batches of the default batch_rows:
// the Native block written and streamed by InsertFlows.
func BenchmarkEmbeddedInsertFlows(b *testing.B) {
	db := migratedEmbedded(b)
	rows := store.DefaultConfig().BatchRows
	batch := store.NewFlowBatch(rows)
	batch.Append(benchFlows(rows))
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	n := 0
	for b.Loop() {
		if err := db.InsertFlows(ctx, batch); err != nil {
			b.Fatal(err)
		}
		n += batch.Len()
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "rows/s")
}

// BenchmarkEmbeddedInsertCost splits the embedded engine's CPU per row
// into the insert (Native block, sort, compression, the rollup views;
// merges stopped) and merging all the parts it made (OPTIMIZE ... FINAL
// of the three tables), for variants of batch size and schema: what
// bench/results/profile.md compares. Each variant is set up on the
// migrated tables and undone after.
func BenchmarkEmbeddedInsertCost(b *testing.B) {
	db := migratedEmbedded(b)
	ctx := context.Background()
	exec := func(qs ...string) {
		for _, q := range qs {
			if err := db.Exec(ctx, q); err != nil {
				b.Fatalf("%s: %v", q, err)
			}
		}
	}
	const total = 1_000_000
	tables := []string{"flows", "flows_1m", "flows_1h"}
	// SET is per connection: once for each of the pool's connections,
	// which Exec takes in turn.
	everyConn := func(q string) []string {
		n := store.DefaultConfig().Writers + 2
		qs := make([]string, n)
		for i := range qs {
			qs[i] = q
		}
		return qs
	}
	for _, v := range []struct {
		name        string
		rows        int
		setup, undo []string
	}{
		{name: "batch50k", rows: 50000},
		{name: "batch200k", rows: 200000},
		{name: "views_detached", rows: 50000,
			setup: []string{"DETACH TABLE flows_1m_mv", "DETACH TABLE flows_1h_mv"},
			undo:  []string{"ATTACH TABLE flows_1m_mv", "ATTACH TABLE flows_1h_mv"}},
		{name: "optimize_on_insert_off", rows: 50000,
			setup: everyConn("SET optimize_on_insert = 0"), undo: everyConn("SET optimize_on_insert = 1")},
	} {
		b.Run(v.name, func(b *testing.B) {
			batch := store.NewFlowBatch(v.rows)
			batch.Append(benchFlows(v.rows))
			for b.Loop() {
				for _, t := range tables {
					exec("TRUNCATE TABLE " + t)
				}
				exec(v.setup...)
				exec("SYSTEM STOP MERGES")
				c0 := processCPU(b)
				for n := 0; n < total; n += v.rows {
					if err := db.InsertFlows(ctx, batch); err != nil {
						b.Fatal(err)
					}
				}
				c1 := processCPU(b)
				exec("SYSTEM START MERGES")
				for _, t := range tables {
					exec("OPTIMIZE TABLE " + t + " FINAL")
				}
				c2 := processCPU(b)
				b.ReportMetric(float64(c1-c0)/total, "insert-cpu-ns/row")
				b.ReportMetric(float64(c2-c1)/total, "merge-all-cpu-ns/row")
				exec(v.undo...)
			}
		})
	}
}
