package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/flowhouse/flowhouse/store"
)

// QueryEach hands a long result over block by block, the blocks together
// holding every row once, and stops the query when its callback fails.
func TestEmbeddedQueryEachStreamsBlocks(t *testing.T) {
	db := openEmbedded(t, t.TempDir())
	ctx := context.Background()
	var blocks, rows, sum uint64
	err := db.QueryEach(ctx, "SELECT number FROM numbers(?)", []any{300000}, func(r store.Rows) error {
		blocks++
		for r.Next() {
			var n uint64
			if err := r.Scan(&n); err != nil {
				return err
			}
			rows++
			sum += n
		}
		return r.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if rows != 300000 || sum != 300000*299999/2 || blocks < 2 {
		t.Errorf("rows %d sum %d in %d blocks, want 300000 rows summing to %d in more than one block", rows, sum, blocks, uint64(300000*299999/2))
	}
	stop := errors.New("enough")
	calls := 0
	err = db.QueryEach(ctx, "SELECT number FROM numbers(10000000)", nil, func(r store.Rows) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("a failing callback: %v after %d calls, want its error after 1", err, calls)
	}
	// The connection is usable afterwards.
	if err := db.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
}
