package schema

import (
	"fmt"
	"reflect"
	"unsafe"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/flowhouse/flowhouse/flow"
)

// Column is one column of a table: its name and type, and where its
// values come from.
type Column struct {
	Name string
	Type Type

	keep   func() kept // makes the batch's column; nil for a computed one
	kept   string      // the batch column's name in Native blocks of the batch (the spool)
	millis bool        // kept in Unix milliseconds, inserted as DateTime seconds
	span   [2]string   // computed: milliseconds from one millis column to another
}

// Field is a column holding the flow.Flow field named field as it is:
// numbers and enums by their number, addresses as their 16 bytes,
// strings through a dictionary. The field's type must fit t's values.
func Field(name string, t Type, field string) Column {
	return Column{Name: name, Type: t, kept: name, keep: keeper(name, t.native, flowField(name, field))}
}

// Millis is a DateTime column from a flow.Flow field of Unix
// milliseconds; the batch keeps the milliseconds (as name_ms).
func Millis(name, field string) Column {
	return Column{Name: name, Type: DateTime, kept: name + "_ms", millis: true, keep: keeper(name, "Int64", flowField(name, field))}
}

// Clamped is a UInt32 column from a uint64 field, saturated.
func Clamped(name, field string) Column {
	sf := flowField(name, field)
	if sf.Type.Kind() != reflect.Uint64 {
		panic(fmt.Sprintf("schema: column %s: field %s is %s, not uint64", name, field, sf.Type))
	}
	sf.Type = reflect.TypeFor[uint32]() // what the batch keeps of it
	keep := keeper(name, "UInt32", sf)
	return Column{Name: name, Type: UInt32, kept: name, keep: func() kept { return clamped{keep().(*fixed[uint32])} }}
}

// ExtraType is the column type of a mapped element of kind k: addresses
// as the fixed address columns, MACs as src_mac, MPLS labels (20 bits) as
// UInt32, numbers at their width.
func ExtraType(k flow.ExtraKind) (Type, bool) {
	switch k {
	case flow.ExtraIP:
		return IP, true
	case flow.ExtraUint8:
		return UInt8, true
	case flow.ExtraUint16:
		return UInt16, true
	case flow.ExtraUint32, flow.ExtraMPLSLabel:
		return UInt32, true
	case flow.ExtraUint64, flow.ExtraMAC:
		return UInt64, true
	}
	return Type{}, false
}

// Extra is the column of a mapped element, kept from its slot of
// flow.Flow (ExtraAddr for addresses, Extra for the rest).
func Extra(x flow.ExtraColumn) (Column, error) {
	t, ok := ExtraType(x.Kind)
	if !ok {
		return Column{}, fmt.Errorf("column %s: no column type for kind %s", x.Name, x.Kind)
	}
	addrs, nums := flowField(x.Name, "ExtraAddr"), flowField(x.Name, "Extra")
	if x.Slot < 0 || x.Kind.IsAddr() && x.Slot >= addrs.Type.Len() || !x.Kind.IsAddr() && x.Slot >= nums.Type.Len() {
		return Column{}, fmt.Errorf("column %s: slot %d of %s is outside flow.Flow", x.Name, x.Slot, x.Kind)
	}
	c := Column{Name: x.Name, Type: t, kept: x.Name}
	switch off := nums.Offset + uintptr(x.Slot)*8; t {
	case IP:
		sf := addrs
		sf.Type, sf.Offset = addrs.Type.Elem(), addrs.Offset+uintptr(x.Slot)*addrs.Type.Elem().Size()
		c.keep = keeper(x.Name, t.native, sf)
	case UInt8:
		c.keep = narrowKeeper[uint8, proto.ColUInt8](off)
	case UInt16:
		c.keep = narrowKeeper[uint16, proto.ColUInt16](off)
	case UInt32:
		c.keep = narrowKeeper[uint32, proto.ColUInt32](off)
	default:
		sf := nums
		sf.Type, sf.Offset = nums.Type.Elem(), off
		c.keep = keeper(x.Name, t.native, sf)
	}
	return c, nil
}

// Span is a UInt32 column computed at insert: the milliseconds from the
// Millis column from to the Millis column to, 0 when either is unknown or
// they are out of order.
func Span(name, from, to string) Column {
	return Column{Name: name, Type: UInt32, span: [2]string{from, to}}
}

func flowField(column, field string) reflect.StructField {
	sf, ok := reflect.TypeFor[flow.Flow]().FieldByName(field)
	if !ok || len(sf.Index) != 1 {
		panic(fmt.Sprintf("schema: column %s: flow.Flow has no field %s", column, field))
	}
	return sf
}

// keeper picks the batch column for values of the Native type native
// taken from field sf, checking that the field holds such values.
func keeper(column, native string, sf reflect.StructField) func() kept {
	if fixed, ok := fixedKeepers[native]; ok {
		return fixed(column, native, sf)
	}
	if native == LowCardinalityString.native && sf.Type.Kind() == reflect.String {
		return func() kept { return newDict(sf.Offset) }
	}
	panic(fmt.Sprintf("schema: column %s: field %s (%s) cannot hold %s values", column, sf.Name, sf.Type, native))
}

// fixedKeepers are the ch-go columns of the fixed-size Native types.
var fixedKeepers = map[string]func(column, native string, sf reflect.StructField) func() kept{
	"UInt8":  fixedKeeper[uint8, proto.ColUInt8],
	"Int8":   fixedKeeper[int8, proto.ColInt8],
	"UInt16": fixedKeeper[uint16, proto.ColUInt16],
	"UInt32": fixedKeeper[uint32, proto.ColUInt32],
	"UInt64": fixedKeeper[uint64, proto.ColUInt64],
	"Int64":  fixedKeeper[int64, proto.ColInt64],
	"IPv6":   fixedKeeper[proto.IPv6, proto.ColIPv6],
}

// fixedKeeper keeps field sf in a ch-go column C of E values: the field
// must be E's size, an integer for an integer, bytes for bytes.
func fixedKeeper[E comparable, C ~[]E, P interface {
	*C
	proto.Column
}](column, native string, sf reflect.StructField) func() kept {
	e := reflect.TypeFor[E]()
	ok := sf.Type.Size() == e.Size()
	switch sf.Type.Kind() {
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		ok = ok && e.Kind() != reflect.Array
	case reflect.Array:
		ok = ok && e.Kind() == reflect.Array && sf.Type.Elem().Kind() == reflect.Uint8
	default:
		ok = false
	}
	if !ok {
		panic(fmt.Sprintf("schema: column %s: field %s (%s) cannot hold %s values", column, sf.Name, sf.Type, native))
	}
	return func() kept {
		col := new(C) // C is []E, so its memory is a []E
		return &fixed[E]{Column: P(col), data: (*[]E)(unsafe.Pointer(col)), off: sf.Offset, view: viewOf[E, C, P]()}
	}
}

// Table is a table's columns in insert order, and how a batch keeps them.
type Table struct {
	Name    string
	columns []Column
	kept    []Column // the columns the batch keeps, in the batch's order
	keptIdx map[string]int
	inserts []insertion // per column, how an insert gets its values
	slots   int         // computed columns, each with scratch of its own
}

// NewTable checks the columns and works out the batch that holds them.
// It panics on a mistake, so that a wrong table fails every test.
func NewTable(name string, columns ...Column) *Table {
	t := &Table{Name: name, columns: columns, keptIdx: map[string]int{}}
	names := map[string]bool{}
	millis := map[string]int{}
	for _, c := range columns {
		if names[c.Name] {
			panic(fmt.Sprintf("schema: table %s: column %s twice", name, c.Name))
		}
		names[c.Name] = true
		if c.keep == nil {
			from, ok1 := millis[c.span[0]]
			to, ok2 := millis[c.span[1]]
			if !ok1 || !ok2 {
				panic(fmt.Sprintf("schema: table %s: column %s spans %v, not two Millis columns before it", name, c.Name, c.span))
			}
			t.inserts = append(t.inserts, span{from: from, to: to, slot: t.slot()})
			continue
		}
		k := len(t.kept)
		t.kept = append(t.kept, c)
		t.keptIdx[c.kept] = k
		if c.millis {
			millis[c.Name] = k
			t.inserts = append(t.inserts, seconds{from: k, slot: t.slot()})
		} else {
			t.inserts = append(t.inserts, direct(k))
		}
	}
	return t
}

func (t *Table) slot() int {
	t.slots++
	return t.slots - 1
}

// Columns are the table's columns in insert order.
func (t *Table) Columns() []Column { return append([]Column(nil), t.columns...) }

// Names are the column names in insert order: an INSERT's column list.
func (t *Table) Names() []string {
	names := make([]string, len(t.columns))
	for i, c := range t.columns {
		names[i] = c.Name
	}
	return names
}

// NewBatch makes an empty batch with room for capacity rows.
func (t *Table) NewBatch(capacity int) *Batch {
	b := &Batch{t: t, cols: make([]kept, len(t.kept))}
	for i, c := range t.kept {
		b.cols[i] = c.keep()
		b.cols[i].grow(capacity)
	}
	return b
}
