package schema

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/flowhouse/flowhouse/flow"
)

// kept is a column the batch keeps: a ch-go column, so that it is
// written to and read from Native blocks by ch-go, filled from a field of
// flow.Flow found at a fixed offset. Appending copies one field of every
// flow, column after column, with no call per value.
type kept interface {
	proto.Column
	appendFlows(fs []flow.Flow)
	appendZeros(n int)
	setRow(i int, f *flow.Flow)
	// window is rows from..to of the column, sharing its memory.
	window(from, to int) proto.ColInput
	grow(n int)
	// memBytes is the memory the column holds, capacity included: what
	// the batch costs while it waits for the database.
	memBytes() int
}

// at is the field at offset off of f.
func at(f *flow.Flow, off uintptr) unsafe.Pointer { return unsafe.Add(unsafe.Pointer(f), off) }

// extend makes room for n more values at the end of s and returns them.
func extend[S ~[]E, E any](s *S, n int) []E {
	l := len(*s)
	*s = slices.Grow(*s, n)[:l+n]
	return (*s)[l:]
}

// fixed keeps a fixed-size field as it lies in memory, in the ch-go
// column of its Native type: numbers, enums (their number, Int8),
// addresses (IPv6: 16 bytes in network order).
type fixed[E comparable] struct {
	proto.Column
	data *[]E // the column's values
	off  uintptr
	view func([]E) proto.ColInput // values as a column of the same type
}

func (c *fixed[E]) appendFlows(fs []flow.Flow) {
	dst := extend(c.data, len(fs))
	fs = fs[:len(dst)]
	for i := range dst {
		dst[i] = *(*E)(at(&fs[i], c.off))
	}
}

func (c *fixed[E]) appendZeros(n int)          { clear(extend(c.data, n)) }
func (c *fixed[E]) setRow(i int, f *flow.Flow) { *(*E)(at(f, c.off)) = (*c.data)[i] }
func (c *fixed[E]) grow(n int)                 { *c.data = slices.Grow(*c.data, n) }
func (c *fixed[E]) memBytes() int {
	var e E
	return cap(*c.data) * int(unsafe.Sizeof(e))
}

func (c *fixed[E]) window(from, to int) proto.ColInput { return c.view((*c.data)[from:to]) }

// viewOf makes columns of type C over values of a column.
func viewOf[E any, C ~[]E, P interface {
	*C
	proto.Column
}]() func([]E) proto.ColInput {
	return func(v []E) proto.ColInput { c := C(v); return P(&c) }
}

// clamped keeps a uint64 field as UInt32, saturated: interface speeds
// are ifHighSpeed, a 32-bit gauge of Mbit/s.
type clamped struct{ *fixed[uint32] }

func (c clamped) appendFlows(fs []flow.Flow) {
	dst := extend(c.data, len(fs))
	fs = fs[:len(dst)]
	for i := range dst {
		dst[i] = uint32(min(*(*uint64)(at(&fs[i], c.off)), math.MaxUint32))
	}
}

func (c clamped) setRow(i int, f *flow.Flow) { *(*uint64)(at(f, c.off)) = uint64((*c.data)[i]) }

// dict keeps a string field as LowCardinality(String) is written: each
// distinct value once, in a dictionary, and a key per row, one byte while
// there are at most 256 values. The strings of a batch are the few names
// enrichment hands out, so a row costs a byte where a string header costs
// 16, and the Native block needs no dictionary built when it is written.
type dict struct {
	proto.ColLowCardinalityRaw
	index proto.ColStr
	off   uintptr
	vals  []string       // the dictionary, as Go strings
	keys  map[string]int // value -> key
	// recent maps the address of a string to its key (Fibonacci hashing):
	// enrichment hands the same string (the same memory) to many flows, so
	// most rows skip the map. A slot's pointer keeps its string alive, so an address
	// cannot be reused for another string while the slot holds it.
	recent [1 << recentBits]recentKey
}

const recentBits = 4

type recentKey struct {
	p   *byte
	n   int
	key int // key + 1; 0 marks an empty slot
}

func newDict(off uintptr) *dict {
	c := &dict{off: off, keys: map[string]int{}}
	c.Index = &c.index
	return c
}

func (c *dict) appendFlows(fs []flow.Flow) {
	for i := range fs {
		s := *(*string)(at(&fs[i], c.off))
		slot := c.slot(s)
		k := slot.key - 1
		if slot.p != unsafe.StringData(s) || slot.n != len(s) || k < 0 {
			k = c.miss(s, slot)
		}
		if c.Key == proto.KeyUInt8 {
			c.Keys8 = append(c.Keys8, uint8(k))
		} else {
			c.AppendKey(k)
		}
	}
}

func (c *dict) appendZeros(n int) {
	k := c.key("")
	for range n {
		c.AppendKey(k)
	}
}

// key is the dictionary key of s, added when new.
func (c *dict) key(s string) int {
	slot := c.slot(s)
	if slot.p == unsafe.StringData(s) && slot.n == len(s) && slot.key > 0 {
		return slot.key - 1
	}
	return c.miss(s, slot)
}

func (c *dict) slot(s string) *recentKey {
	return &c.recent[(uint64(uintptr(unsafe.Pointer(unsafe.StringData(s))))+uint64(len(s)))*0x9e3779b97f4a7c15>>(64-recentBits)]
}

func (c *dict) miss(s string, slot *recentKey) int {
	k, ok := c.keys[s]
	if !ok {
		k = c.add(s)
	}
	*slot = recentKey{p: unsafe.StringData(s), n: len(s), key: k + 1}
	return k
}

// add puts s in the dictionary, widening the keys when it outgrows them.
func (c *dict) add(s string) int {
	k := len(c.vals)
	switch {
	case c.Key == proto.KeyUInt8 && k > math.MaxUint8:
		c.Keys16 = widen(c.Keys16, c.Keys8)
		c.Keys8, c.Key = c.Keys8[:0], proto.KeyUInt16
	case c.Key == proto.KeyUInt16 && k > math.MaxUint16:
		c.Keys32 = widen(c.Keys32, c.Keys16)
		c.Keys16, c.Key = c.Keys16[:0], proto.KeyUInt32
	}
	c.vals = append(c.vals, s)
	c.index.Append(s)
	c.keys[s] = k
	return k
}

func widen[T, F uint16 | uint32 | uint8](dst []T, src []F) []T {
	for _, k := range src {
		dst = append(dst, T(k))
	}
	return dst
}

func (c *dict) keyAt(i int) int {
	switch c.Key {
	case proto.KeyUInt8:
		return int(c.Keys8[i])
	case proto.KeyUInt16:
		return int(c.Keys16[i])
	case proto.KeyUInt32:
		return int(c.Keys32[i])
	}
	return int(c.Keys64[i])
}

func (c *dict) setRow(i int, f *flow.Flow) { *(*string)(at(f, c.off)) = c.vals[c.keyAt(i)] }

func (c *dict) grow(n int) { c.Keys8 = slices.Grow(c.Keys8, n) }

// memBytes counts the keys of every width the column has used, the
// dictionary's strings and its map (about 50 bytes an entry).
func (c *dict) memBytes() int {
	n := cap(c.Keys8) + 2*cap(c.Keys16) + 4*cap(c.Keys32) + 8*cap(c.Keys64)
	n += cap(c.index.Buf) + 16*cap(c.index.Pos) + 16*cap(c.vals) + int(unsafe.Sizeof(c.recent))
	for _, v := range c.vals {
		n += len(v) + 50
	}
	return n
}

// Reset empties the column and forgets its strings, so a batch kept for
// reuse does not pin the names of flows written long ago.
func (c *dict) Reset() {
	c.ColLowCardinalityRaw.Reset()
	c.Key = proto.KeyUInt8
	clear(c.vals)
	c.vals = c.vals[:0]
	clear(c.keys)
	c.recent = [len(c.recent)]recentKey{}
}

var errDictKey = errors.New("key outside the dictionary")

// DecodeColumn reads the column from a Native block and checks every key.
func (c *dict) DecodeColumn(r *proto.Reader, rows int) error {
	c.Reset()
	if err := c.ColLowCardinalityRaw.DecodeColumn(r, rows); err != nil {
		return err
	}
	if c.Key == proto.KeyUInt64 || c.Rows() != rows {
		return fmt.Errorf("LowCardinality(String) of %d rows with %s keys: %d rows", rows, c.Key, c.Rows())
	}
	for i := range c.index.Rows() {
		s := c.index.Row(i)
		c.vals = append(c.vals, s)
		if _, dup := c.keys[s]; !dup {
			c.keys[s] = i
		}
	}
	for i := range rows {
		if c.keyAt(i) >= len(c.vals) {
			return fmt.Errorf("row %d: %w of %d values", i, errDictKey, len(c.vals))
		}
	}
	return nil
}

// narrow keeps a uint64 field (a mapped number, flow.Flow.Extra) in a
// narrower column: the decoder stored only what the column's width holds.
type narrow[E uint8 | uint16 | uint32] struct{ *fixed[E] }

func (c narrow[E]) appendFlows(fs []flow.Flow) {
	dst := extend(c.data, len(fs))
	fs = fs[:len(dst)]
	for i := range dst {
		dst[i] = E(*(*uint64)(at(&fs[i], c.off)))
	}
}

func (c narrow[E]) setRow(i int, f *flow.Flow) { *(*uint64)(at(f, c.off)) = uint64((*c.data)[i]) }

func narrowKeeper[E uint8 | uint16 | uint32, C ~[]E, P interface {
	*C
	proto.Column
}](off uintptr) func() kept {
	return func() kept {
		col := new(C)
		return narrow[E]{&fixed[E]{Column: P(col), data: (*[]E)(unsafe.Pointer(col)), off: off, view: viewOf[E, C, P]()}}
	}
}

// window is rows from..to with the whole dictionary: a block of a
// LowCardinality column carries its dictionary.
func (c *dict) window(from, to int) proto.ColInput {
	w := &dictWindow{ColLowCardinalityRaw: proto.ColLowCardinalityRaw{Index: c.Index, Key: c.Key}, vals: c.vals}
	switch c.Key {
	case proto.KeyUInt8:
		w.Keys8 = c.Keys8[from:to]
	case proto.KeyUInt16:
		w.Keys16 = c.Keys16[from:to]
	case proto.KeyUInt32:
		w.Keys32 = c.Keys32[from:to]
	default:
		w.Keys64 = c.Keys64[from:to]
	}
	return w
}

// dictWindow is rows of a dict column, with the dictionary's strings.
type dictWindow struct {
	proto.ColLowCardinalityRaw
	vals []string
}
