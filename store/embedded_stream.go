package store

import (
	"context"
	"fmt"
)

// QueryEach runs a query as Query does, but hands its rows to each a
// block at a time, as the engine produces them, instead of reading the
// whole result first: a long result (a tenant's export) is then never
// held in memory. The Rows given to each are valid during the call only.
// A DateTime column keeps its instant, not its zone (convert it in the
// query, toUInt32(...)). When each returns an error, or ctx ends, the
// query is cancelled at its next block and that error is returned. The
// connection is taken for the whole result.
func (e *Embedded) QueryEach(ctx context.Context, query string, args []any, each func(Rows) error) error {
	sql, err := bindArgs(query, args)
	if err != nil {
		return err
	}
	c, err := e.acquire(ctx)
	if err != nil {
		return err
	}
	defer e.release(c)
	return c.stream(sql, "Native", func(chunk []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		rows, err := newNativeRows(chunk, e.loc, nil)
		if err != nil {
			return fmt.Errorf("read result: %w", err)
		}
		defer rows.Close()
		return each(rows)
	})
}
