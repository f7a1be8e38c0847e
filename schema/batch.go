package schema

import (
	"errors"
	"fmt"
	"math"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/flowhouse/flowhouse/flow"
)

// Batch holds flows column by column, in ch-go columns: what the table
// keeps of each flow (times in milliseconds, strings in dictionaries).
// Appending copies the flows; Reset keeps the memory, so a batch reused
// between flushes stops allocating once it has grown to its usual size.
// A batch is written as a Native block two ways: as the table's columns
// for an insert (Insert, InsertBlock), and as its own columns, which
// lose nothing, for keeping on disk (Input, and DecodeResult to read
// it back).
type Batch struct {
	t    *Table
	n    int
	cols []kept
}

// Table is the table the batch is of.
func (b *Batch) Table() *Table { return b.t }

// Len is the number of flows in the batch.
func (b *Batch) Len() int { return b.n }

// Reset empties the batch and keeps its memory.
func (b *Batch) Reset() {
	b.n = 0
	for _, c := range b.cols {
		c.Reset()
	}
}

// Append copies flows into the batch.
func (b *Batch) Append(flows []flow.Flow) {
	for _, c := range b.cols {
		c.appendFlows(flows)
	}
	b.n += len(flows)
}

// MemBytes is the memory the batch's columns hold, allocated capacity
// included, so it stays what the batch costs after Reset: the store
// bounds the batches waiting for the database by it.
func (b *Batch) MemBytes() int64 {
	var n int
	for _, c := range b.cols {
		n += c.memBytes()
	}
	return int64(n)
}

// Flow returns row i as a flow.Flow. Values the table keeps narrower
// than the flow (interface speeds) come back as the table keeps them.
func (b *Batch) Flow(i int) flow.Flow {
	var f flow.Flow
	for _, c := range b.cols {
		c.setRow(i, &f)
	}
	return f
}

// Scratch is what inserts compute from a batch: DateTime seconds,
// durations. Reuse one between inserts (one at a time); Release drops
// what it holds of the last batch.
type Scratch struct {
	slots []proto.ColUInt32
	input proto.Input
}

// Release forgets the last batch, so a kept Scratch does not pin it.
func (s *Scratch) Release() {
	clear(s.input)
	s.input = s.input[:0]
}

func (s *Scratch) prepare(slots int) {
	for len(s.slots) < slots {
		s.slots = append(s.slots, nil)
	}
}

func (s *Scratch) slot(i int) *proto.ColUInt32 {
	s.slots[i] = s.slots[i][:0]
	return &s.slots[i]
}

// Insert is the batch as the table's columns, in insert order, for a
// Native block (proto.Block.EncodeRawBlock). It is valid until s is used
// again.
func (b *Batch) Insert(s *Scratch) proto.Input {
	s.prepare(b.t.slots)
	s.input = s.input[:0]
	for i, c := range b.t.columns {
		s.input = append(s.input, proto.InputColumn{Name: c.Name, Data: b.t.inserts[i].native(b, s, 0, b.n)})
	}
	return s.input
}

// Input is the batch's own columns for a Native block, by their kept
// names: nothing is lost, and DecodeResult reads the block back.
func (b *Batch) Input() proto.Input {
	in := make(proto.Input, len(b.cols))
	for i, c := range b.cols {
		in[i] = proto.InputColumn{Name: b.t.kept[i].kept, Data: c}
	}
	return in
}

// DecodeResult replaces the batch's rows with a Native block of its
// columns (proto.Block.DecodeRawBlock calls it): columns are found by
// name, so a block written before a column was added reads with that
// column's zero value, and one the batch no longer keeps is read past.
func (b *Batch) DecodeResult(r *proto.Reader, version int, blk proto.Block) error {
	if version != 0 {
		return errors.New("schema: batch blocks are read at protocol version 0")
	}
	b.Reset()
	seen := make([]bool, len(b.cols))
	for range blk.Columns {
		name, err := r.Str()
		if err != nil {
			return fmt.Errorf("column name: %w", err)
		}
		typ, err := r.Str()
		if err != nil {
			return fmt.Errorf("column %s type: %w", name, err)
		}
		col, err := b.column(name, proto.ColumnType(typ), seen)
		if err != nil {
			return err
		}
		if blk.Rows == 0 {
			continue
		}
		if s, ok := col.(proto.StateDecoder); ok {
			if err := s.DecodeState(r); err != nil {
				return fmt.Errorf("column %s: %w", name, err)
			}
		}
		if err := col.DecodeColumn(r, blk.Rows); err != nil {
			return fmt.Errorf("column %s: %w", name, err)
		}
	}
	for k, c := range b.cols {
		if !seen[k] {
			c.appendZeros(blk.Rows)
		}
	}
	b.n = blk.Rows
	return nil
}

// column is where the block's column name of type typ is read into.
func (b *Batch) column(name string, typ proto.ColumnType, seen []bool) (proto.ColResult, error) {
	k, ok := b.t.keptIdx[name]
	if !ok {
		var auto proto.ColAuto
		if err := auto.Infer(typ); err != nil {
			return nil, fmt.Errorf("column %s, not kept by this table: %w", name, err)
		}
		return auto.Data, nil
	}
	if seen[k] {
		return nil, fmt.Errorf("column %s twice", name)
	}
	seen[k] = true
	if c := b.cols[k]; !typ.Conflicts(c.Type()) {
		return c, nil
	}
	return nil, fmt.Errorf("column %s is %s, the batch keeps %s", name, typ, b.cols[k].Type())
}

// insertion is how an insert gets one column's values from a batch.
type insertion interface {
	// native is rows from..to in the column's Native type.
	native(b *Batch, s *Scratch, from, to int) proto.ColInput
}

// direct is a kept column, inserted as it is.
type direct int

func (k direct) native(b *Batch, _ *Scratch, from, to int) proto.ColInput {
	if from == 0 && to == b.n {
		return b.cols[k]
	}
	return b.cols[k].window(from, to)
}

func (b *Batch) millis(k int) []int64 { return *b.cols[k].(*fixed[int64]).data }

// seconds is a DateTime column from one kept in milliseconds. DateTime is
// unsigned, 32 bits: a time before 1970 is stored as 1970, one past 2106
// as 2106.
type seconds struct{ from, slot int }

func toSeconds(ms int64) uint32 { return uint32(min(max(ms, 0)/1000, math.MaxUint32)) }

func (d seconds) native(b *Batch, s *Scratch, from, to int) proto.ColInput {
	out := s.slot(d.slot)
	for _, v := range b.millis(d.from)[from:to] {
		*out = append(*out, toSeconds(v))
	}
	return proto.Alias(out, proto.ColumnType(DateTime.native))
}

// span is the milliseconds between two kept times.
type span struct{ from, to, slot int }

func (d span) fill(b *Batch, s *Scratch, from, to int) *proto.ColUInt32 {
	start, end := b.millis(d.from)[from:to], b.millis(d.to)[from:to]
	out := s.slot(d.slot)
	for i := range start {
		var v uint32
		if start[i] > 0 && end[i] >= start[i] {
			v = uint32(min(end[i]-start[i], math.MaxUint32))
		}
		*out = append(*out, v)
	}
	return out
}

func (d span) native(b *Batch, s *Scratch, from, to int) proto.ColInput {
	return proto.Alias(d.fill(b, s, from, to), proto.ColumnTypeUInt32)
}
