package store_test

import (
	"context"
	"testing"

	"github.com/flowhouse/flowhouse/store"
)

// A batch larger than one Native block is sent in several blocks of one
// INSERT: every row arrives once, with its columns still aligned across
// block boundaries, and the server makes one part of it, as it did of
// one block.
func TestInsertFlowsInBlocksIsOneAlignedPart(t *testing.T) {
	db, _ := migratedDB(t)
	ctx := context.Background()
	// Merges would hide how many parts the insert made.
	if err := db.Exec(ctx, "SYSTEM STOP MERGES flows"); err != nil {
		t.Fatal(err)
	}
	const n = 2*8192 + 17 // two full blocks and a short one
	fs := benchFlows(n)
	var wantAE0 uint64
	for i := range fs {
		fs[i].Bytes = uint64(i + 1) // the row's identity
		if fs[i].InIfName == "ae0" {
			wantAE0 += fs[i].Bytes
		}
	}
	batch := store.NewFlowBatch(n)
	batch.Append(fs)
	if err := db.InsertFlows(ctx, batch); err != nil {
		t.Fatal(err)
	}
	var rows, sum, distinct, ae0, distinctSrc, parts uint64
	if err := store.QueryRow(ctx, db, []any{&rows, &sum, &distinct, &ae0, &distinctSrc},
		"SELECT count(), sum(bytes), uniqExact(bytes), sumIf(bytes, in_if_name = 'ae0'), uniqExact(src_address) FROM flows"); err != nil {
		t.Fatal(err)
	}
	if err := store.QueryRow(ctx, db, []any{&parts},
		"SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'flows' AND active"); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name      string
		got, want uint64
	}{
		{"rows", rows, n},
		{"sum of row identities", sum, n * (n + 1) / 2},
		{"distinct rows", distinct, n},
		{"bytes of rows whose in_if_name is ae0 (strings aligned with rows)", ae0, wantAE0},
		{"distinct src_address (addresses aligned with rows)", distinctSrc, n},
		{"active parts", parts, 1},
	}
	for _, w := range want {
		if w.got != w.want {
			t.Errorf("%s = %d, want %d", w.name, w.got, w.want)
		}
	}
}
