package store

import (
	"bytes"
	"testing"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/flowhouse/flowhouse/internal/flowtest"
)

// A batch's shard must not change between its first insert and a replay
// from the spool, which stores the batch's own columns as a Native block
// and decodes them into a new batch: the shard's replicated tables can
// only drop a block they already have.
func TestBatchKeySurvivesSpoolRoundTrip(t *testing.T) {
	b := NewFlowBatch(1000)
	b.Append(flowtest.Realistic(1000, 7))
	var buf proto.Buffer
	if err := (proto.Block{Columns: len(b.Input()), Rows: b.Len()}).EncodeRawBlock(&buf, 0, b.Input()); err != nil {
		t.Fatal(err)
	}
	replayed := NewFlowBatch(0)
	var blk proto.Block
	if err := blk.DecodeRawBlock(proto.NewReader(bytes.NewReader(buf.Buf)), 0, replayed); err != nil {
		t.Fatal(err)
	}
	if replayed.Len() != b.Len() || batchKey(replayed) != batchKey(b) {
		t.Fatalf("replayed batch of %d rows has key %x, the batch of %d had %x", replayed.Len(), batchKey(replayed), b.Len(), batchKey(b))
	}
}

// Batches of different flows spread over the shards and their replicas.
func TestBatchKeySpreadsBatches(t *testing.T) {
	const shards, replicas, batches = 2, 2, 400
	var per [shards][replicas]int
	for i := range batches {
		b := NewFlowBatch(100)
		b.Append(flowtest.Realistic(100, i*100))
		k := batchKey(b)
		per[k%shards][k/shards%replicas]++
	}
	for s := range per {
		for r := range per[s] {
			if n := per[s][r]; n < batches/shards/replicas/2 {
				t.Errorf("shard %d replica %d took %d of %d batches: %v", s+1, r+1, n, batches, per)
			}
		}
	}
}
