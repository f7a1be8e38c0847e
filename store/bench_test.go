package store_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/store"
)

// benchFlows are varied like real traffic: a few exporters and
// interfaces, many addresses and ports, so compression and the rollup
// views do realistic work.
func benchFlows(n int) []flow.Flow {
	now := time.Now().UnixMilli()
	fs := make([]flow.Flow, n)
	names := []string{"xe-0/0/0", "xe-0/0/1", "ae0", "ae1"}
	for i := range fs {
		fs[i] = flow.Flow{
			TimeReceivedMs: now + int64(i/1000), TimeStartMs: now - 1000, TimeEndMs: now,
			Protocol: flow.ProtoIPFIX, ExporterAddr: flow.AddrFrom4([4]byte{192, 0, 2, byte(i % 4)}), ExporterPort: 4739,
			SamplingRate: 1000, Direction: flow.DirIngress, InIf: uint32(i % 16), OutIf: uint32(i % 7),
			SrcAddr: flow.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
			DstAddr: flow.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i * 7)}),
			SrcPort: uint16(i * 13), DstPort: 443, IPProto: 6, IPVersion: 4, TCPFlags: 0x18,
			SrcAS: 64500 + uint32(i%50), DstAS: 64600, Bytes: uint64(40 + i%1460), Packets: 1 + uint64(i%10),
			Tenant: "acme", ExporterName: "edge1", InIfName: names[i%4], OutIfName: names[(i+1)%4],
			InIfSpeedMbps: 10000, OutIfSpeedMbps: 100000, InIfBoundary: "external", OutIfBoundary: "internal",
		}
	}
	return fs
}

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
