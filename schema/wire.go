package schema

import (
	"fmt"
	"strings"

	"github.com/ClickHouse/ch-go/proto"
)

// InsertBlock is rows from..to of the batch as the columns of the table
// as a server has it: types are the server's column types in insert
// order (the header block it answers an INSERT with). The batch's own
// columns are sent without a copy; a column whose type on the server
// differs from its Native type but carries the same values on the wire
// (FixedString(16) for IPv6 on servers without it, Enum8 for its number,
// DateTime in another zone) is sent under the server's type, and
// LowCardinality(String) is written out as String where the table has
// no LowCardinality (migrations {{lc}} on old servers). The decision is
// the table's actual type, not the server's version: a table created on
// an old server keeps its types after an upgrade. The input is valid
// until s is used again.
func (b *Batch) InsertBlock(s *Scratch, from, to int, types []proto.ColumnType) (proto.Input, error) {
	if from < 0 || to > b.n || from > to {
		return nil, fmt.Errorf("schema: rows %d..%d of a batch of %d", from, to, b.n)
	}
	if len(types) != len(b.t.columns) {
		return nil, fmt.Errorf("schema: table %s has %d columns, the server's has %d", b.t.Name, len(b.t.columns), len(types))
	}
	s.prepare(b.t.slots)
	s.input = s.input[:0]
	for i, c := range b.t.columns {
		col := b.t.inserts[i].native(b, s, from, to)
		col, err := onWire(col, types[i])
		if err != nil {
			return nil, fmt.Errorf("schema: column %s: %w", c.Name, err)
		}
		s.input = append(s.input, proto.InputColumn{Name: c.Name, Data: col})
	}
	return s.input, nil
}

// onWire is col as a column of the server's type t.
func onWire(col proto.ColInput, t proto.ColumnType) (proto.ColInput, error) {
	have := col.Type()
	switch {
	case have == t:
		return col, nil
	case wireType(have) == wireType(t):
		return retyped{ColInput: col, t: t}, nil
	}
	if d, ok := col.(*dict); ok {
		col = d.window(0, d.Rows())
	}
	if w, ok := col.(*dictWindow); ok && t == proto.ColumnTypeString {
		return dictStrings{w}, nil
	}
	return nil, fmt.Errorf("the server's column is %s, the batch's %s", t, have)
}

// wireType is how a column of type t is written in a Native block, for
// the types that share their encoding with another.
func wireType(t proto.ColumnType) proto.ColumnType {
	s := string(t)
	switch {
	case s == "IPv6":
		return "FixedString(16)"
	case strings.HasPrefix(s, "Enum8("):
		return proto.ColumnTypeInt8
	case strings.HasPrefix(s, "Enum16("):
		return proto.ColumnTypeInt16
	case s == "DateTime" || strings.HasPrefix(s, "DateTime("):
		return proto.ColumnTypeUInt32
	}
	return t
}

// retyped is a column sent under another type of the same encoding.
type retyped struct {
	proto.ColInput
	t proto.ColumnType
}

func (c retyped) Type() proto.ColumnType { return c.t }

// dictStrings writes rows of a dictionary column as a String column:
// each row's string from the dictionary, with no column in between.
type dictStrings struct{ w *dictWindow }

func (c dictStrings) Type() proto.ColumnType { return proto.ColumnTypeString }
func (c dictStrings) Rows() int              { return c.w.Rows() }

func (c dictStrings) EncodeColumn(b *proto.Buffer) {
	switch w := c.w; w.Key {
	case proto.KeyUInt8:
		putStrings(b, w.Keys8, w.vals)
	case proto.KeyUInt16:
		putStrings(b, w.Keys16, w.vals)
	case proto.KeyUInt32:
		putStrings(b, w.Keys32, w.vals)
	default:
		putStrings(b, w.Keys64, w.vals)
	}
}

func (c dictStrings) WriteColumn(w *proto.Writer) { w.ChainBuffer(c.EncodeColumn) }

func putStrings[K uint8 | uint16 | uint32 | uint64](b *proto.Buffer, keys []K, vals []string) {
	for _, k := range keys {
		b.PutString(vals[k])
	}
}
