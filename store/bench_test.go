package store_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/flowtest"
	"github.com/flowhouse/flowhouse/store"
)

// benchFlows are varied like real traffic: a few exporters and
// interfaces, many addresses and ports, so compression and the rollup
// views do realistic work.
func benchFlows(n int) []flow.Flow { return flowtest.Realistic(n, 0) }

// BenchmarkInsertFlows measures rows per second into the local server,
// rollup views included, in batches of the default batch_rows, and what
// it costs this process: client-ns/row is user+system CPU of the test
// binary per row (the server runs in its own process), so it does not
// depend on how fast the shared machine's server answers; with
// -benchmem, B/op is the garbage an insert leaves for the GC.
func BenchmarkInsertFlows(b *testing.B) {
	db, cfg := migratedDB(b)
	benchInsert(b, db, cfg)
}

// BenchmarkInsertFlowsCompression is BenchmarkInsertFlows with each
// clickhouse.compression: on loopback, what compressing costs the
// collector against the bytes it saves.
func BenchmarkInsertFlowsCompression(b *testing.B) {
	_, cfg := migratedDB(b)
	for _, c := range []string{"none", "lz4", "zstd"} {
		b.Run(c, func(b *testing.B) {
			cfg.Compression = c
			db, err := store.OpenServer(context.Background(), cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			benchInsert(b, db, cfg)
		})
	}
}

func benchInsert(b *testing.B, db store.DB, cfg store.Config) {
	batch := store.NewFlowBatch(cfg.BatchRows)
	batch.Append(benchFlows(cfg.BatchRows))
	ctx := context.Background()
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU(b)
	rows := 0
	for b.Loop() {
		if err := db.InsertFlows(ctx, batch); err != nil {
			b.Fatal(err)
		}
		rows += batch.Len()
	}
	b.ReportMetric(float64(rows)/time.Since(start).Seconds(), "rows/s")
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(rows), "client-ns/row")
}

// processCPU is this process's user+system CPU time (every thread).
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFlowBatchAppend is the collector-side cost of batching a flow.
func BenchmarkFlowBatchAppend(b *testing.B) {
	fs := benchFlows(64)
	batch := store.NewFlowBatch(50000)
	for b.Loop() {
		if batch.Len()+len(fs) > 50000 {
			batch.Reset()
		}
		batch.Append(fs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(fs)), "ns/flow")
}
