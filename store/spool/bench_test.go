package spool

import (
	"math/rand/v2"
	"testing"

	"github.com/flowhouse/flowhouse/store"
)

// Realistic batch: addresses and counters vary; enrichment strings are
// a few shared values (enrichment caches hand out the same strings).
func benchBatch(rows int) *store.FlowBatch {
	r := rand.New(rand.NewPCG(7, 8))
	flows := randomFlows(r, rows, 1)
	names := randomFlows(r, 50, 50)
	for i := range flows {
		n := &names[r.IntN(len(names))]
		f := &flows[i]
		f.Tenant, f.ExporterName, f.SrcVendor, f.DstVendor = n.Tenant, n.ExporterName, n.SrcVendor, n.DstVendor
		f.InIfName, f.InIfDescription, f.InIfBoundary = n.InIfName, n.InIfDescription, n.InIfBoundary
		f.OutIfName, f.OutIfDescription, f.OutIfBoundary = n.OutIfName, n.OutIfDescription, n.OutIfBoundary
	}
	return batchOf(flows)
}

// Worst case: every string a separate allocation, 50 values per column.
func BenchmarkEncodeUnsharedStrings(b *testing.B) {
	in := batchOf(randomFlows(rand.New(rand.NewPCG(7, 8)), 50000, 50))
	e := newEncoder()
	for b.Loop() {
		e.encode(in, [16]byte{}, 0)
	}
	b.ReportMetric(float64(in.Len()*b.N)/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkEncode(b *testing.B) {
	in := benchBatch(50000)
	e := newEncoder()
	b.ResetTimer()
	var size int
	for b.Loop() {
		size = len(e.encode(in, [16]byte{}, 0))
	}
	b.ReportMetric(float64(in.Len()*b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(size)/float64(in.Len()), "bytes/row")
}

func BenchmarkDecode(b *testing.B) {
	in := benchBatch(50000)
	data := newEncoder().encode(in, [16]byte{}, 0)
	out := store.NewFlowBatch(50000)
	var d decoder
	b.ResetTimer()
	for b.Loop() {
		out.Reset()
		if _, err := d.decode(data, out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(in.Len()*b.N)/b.Elapsed().Seconds(), "rows/s")
}
