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
