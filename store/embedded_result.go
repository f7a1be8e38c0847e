package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	chproto "github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
)

// nativeRows is a result in ClickHouse's Native format, decoded a block
// at a time into clickhouse-go's own column types: the columns the server
// backend's rows hold, so Scan converts exactly as there.
type nativeRows struct {
	in    *bufio.Reader // the result; Peek finds its end
	r     *chproto.Reader
	sc    *column.ServerContext
	names []string
	types []string // the result's types as DESCRIBE gives them, once asked
	// describe asks the engine for the result's names and types; nil
	// once the connection that can ask is given back.
	describe func() (names, types []string, err error)
	block    *proto.Block
	row      int // rows of block read by Next
	err      error
}

// newNativeRows reads the first block of out. loc is the zone of a
// DateTime without one: the engine's, as the server backend uses the
// server's. describe is called when out does not say everything: an empty
// result has no block to name its columns, and the engine writes a
// DateTime column's type without its zone in Native (NativeWriter drops
// it for clients older than revision 54337, which a format is).
func newNativeRows(out []byte, loc *time.Location, describe func() ([]string, []string, error)) (*nativeRows, error) {
	rows := &nativeRows{sc: &column.ServerContext{Timezone: loc}, describe: describe}
	if len(out) == 0 {
		return rows, rows.described()
	}
	// ch-go's Reader buffers with a bufio.Reader of 128 KiB, and takes
	// one of that size as it is: then Peek sees what is left to decode.
	rows.in = bufio.NewReaderSize(bytes.NewReader(out), 128<<10)
	rows.r = chproto.NewReader(rows.in)
	if err := rows.nextBlock(); err != nil {
		return nil, fmt.Errorf("read result: %w", err)
	}
	if rows.block != nil {
		rows.names = rows.block.ColumnsNames()
	}
	return rows, nil
}

// described is an empty result with the columns the engine describes; a
// statement that cannot be described returns nothing and has none.
func (r *nativeRows) described() error {
	if r.describe == nil {
		return nil
	}
	names, types, err := r.describe()
	if err != nil {
		return nil
	}
	b := proto.NewBlock()
	b.ServerContext = r.sc
	for i, name := range names {
		if err := addResultColumn(b, name, types[i]); err != nil {
			return err
		}
	}
	r.names, r.block = names, b
	return nil
}

func addResultColumn(b *proto.Block, name, typ string) error {
	if err := checkResultType(typ); err != nil {
		return fmt.Errorf("column %s: %w", name, err)
	}
	if err := b.AddColumn(name, column.Type(typ)); err != nil {
		return fmt.Errorf("column %s: %w", name, err)
	}
	return nil
}

// nextBlock decodes the next block as clickhouse-go's proto.Block.Decode
// does at revision 0, with each DateTime's zone restored, or sets block to
// nil at the end.
func (r *nativeRows) nextBlock() error {
	r.block, r.row = nil, 0
	if _, err := r.in.Peek(1); errors.Is(err, io.EOF) {
		return nil
	}
	cols, err1 := r.r.UVarInt()
	rows, err2 := r.r.UVarInt()
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	b := proto.NewBlock()
	b.ServerContext = r.sc
	for i := range int(cols) {
		name, err1 := r.r.Str()
		typ, err2 := r.r.Str()
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		if err := addResultColumn(b, name, r.zoned(i, typ)); err != nil {
			return err
		}
		if rows == 0 {
			continue
		}
		c := b.Columns[i]
		if s, ok := c.(column.CustomSerialization); ok {
			if err := s.ReadStatePrefix(r.r); err != nil {
				return fmt.Errorf("column %s: %w", name, err)
			}
		}
		if err := c.Decode(r.r, int(rows)); err != nil {
			return fmt.Errorf("column %s: %w", name, err)
		}
	}
	r.block = b
	return nil
}

// zoned is the type of column i, with the zone of a DateTime restored.
func (r *nativeRows) zoned(i int, typ string) string {
	if typ != "DateTime" {
		return typ
	}
	if r.types == nil && r.describe != nil {
		// Without the description the engine's zone stands in: the
		// instants are right, only their Location is not.
		_, r.types, _ = r.describe()
		if r.types == nil {
			r.types = []string{}
		}
	}
	if i < len(r.types) && strings.HasPrefix(r.types[i], "DateTime(") {
		return r.types[i]
	}
	return typ
}

// describeResult asks, on c, for the names and types of query's result
// without running it.
func describeResult(c *chdbConn, query string) func() ([]string, []string, error) {
	return func() ([]string, []string, error) {
		out, err := c.query("DESCRIBE TABLE ("+strings.TrimRight(query, "; \t\r\n")+"\n)", "Native")
		if err != nil {
			return nil, nil, err
		}
		desc, err := newNativeRows(out, time.UTC, nil)
		if err != nil {
			return nil, nil, err
		}
		var names, types []string
		for desc.Next() {
			// name, type, default_type, default_expression, comment, ...
			dest := make([]any, len(desc.Columns()))
			for i := range dest {
				dest[i] = new(string)
			}
			if err := desc.Scan(dest...); err != nil {
				return nil, nil, err
			}
			names, types = append(names, *dest[0].(*string)), append(types, *dest[1].(*string))
		}
		return names, types, desc.Err()
	}
}

func (r *nativeRows) Columns() []string { return r.names }

func (r *nativeRows) Next() bool {
	for r.err == nil && r.block != nil {
		if r.row < r.block.Rows() {
			r.row++
			return true
		}
		if r.in == nil {
			break
		}
		if err := r.nextBlock(); err != nil {
			r.err = fmt.Errorf("read result: %w", err)
		}
	}
	return false
}

// Scan is clickhouse-go's (clickhouse.rows.Scan): each column scans its
// row into its destination.
func (r *nativeRows) Scan(dest ...any) error {
	if r.block == nil || r.row == 0 {
		return errors.New("Scan called without a successful Next")
	}
	cols := r.block.Columns
	if len(cols) != len(dest) {
		return &clickhouse.OpError{Op: "Scan", Err: fmt.Errorf("expected %d destination arguments in Scan, not %d", len(cols), len(dest))}
	}
	for i, d := range dest {
		if err := cols[i].ScanRow(d, r.row-1); err != nil {
			return &clickhouse.OpError{Err: err, ColumnName: r.names[i]}
		}
	}
	return nil
}

func (r *nativeRows) Err() error { return r.err }

func (r *nativeRows) Close() error {
	r.in, r.r, r.block, r.describe = nil, nil, nil, nil
	return nil
}

// resultTypes are the types Query returns (see Rows), by name. Others
// are refused, as callers could not rely on them on both engines alike.
var resultTypes = map[string]bool{
	"UInt8": true, "UInt16": true, "UInt32": true, "UInt64": true,
	"Int8": true, "Int16": true, "Int32": true, "Int64": true,
	"Float32": true, "Float64": true, "Bool": true, "String": true, "FixedString": true,
	"Date": true, "Date32": true, "DateTime": true, "DateTime64": true,
	"Enum8": true, "Enum16": true, "IPv4": true, "IPv6": true, "UUID": true, "Nothing": true,
}

// checkResultType accepts the types of resultTypes, inside Nullable,
// Array, LowCardinality and SimpleAggregateFunction.
func checkResultType(t string) error {
	s := strings.TrimSpace(t)
	for {
		name, args, _ := strings.Cut(s, "(")
		args = strings.TrimSuffix(args, ")")
		switch name {
		case "Nullable", "Array", "LowCardinality":
			s = args
			continue
		case "SimpleAggregateFunction":
			if _, inner, ok := strings.Cut(args, ","); ok {
				s = strings.TrimSpace(inner)
				continue
			}
		}
		if resultTypes[name] {
			return nil
		}
		return fmt.Errorf("type %s is not decoded by the embedded engine's result reader: convert it in the query (toString, toFloat64, ...)", t)
	}
}
