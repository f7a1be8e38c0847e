package schema

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/flowtest"
)

// asKept is what a batch gives back of f: interface speeds are 32 bits.
func asKept(f flow.Flow) flow.Flow {
	f.InIfSpeedMbps = min(f.InIfSpeedMbps, math.MaxUint32)
	f.OutIfSpeedMbps = min(f.OutIfSpeedMbps, math.MaxUint32)
	return f
}

// everySlot is the flows table with every extra slot of flow.Flow mapped,
// at full width, so that a round trip of random flows keeps every field.
func everySlot(t testing.TB) *Table {
	t.Helper()
	var cols []flow.ExtraColumn
	for i := range flow.ExtraSlots {
		cols = append(cols, flow.ExtraColumn{Name: fmt.Sprintf("n%d", i), Kind: flow.ExtraUint64, Slot: i})
	}
	for i := range flow.ExtraAddrSlots {
		cols = append(cols, flow.ExtraColumn{Name: fmt.Sprintf("a%d", i), Kind: flow.ExtraIP, Slot: i})
	}
	tb, err := FlowsWith(cols)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestBatchKeepsEveryField(t *testing.T) {
	flows := everySlot(t)
	// Dictionaries of 1-, 2- and 4-byte keys.
	for _, distinct := range []int{1, 300, 70000} {
		in := flowtest.Random(rand.New(rand.NewPCG(1, uint64(distinct))), 70000, distinct)
		b := flows.NewBatch(0)
		for start := 0; start < len(in); start += 1000 {
			b.Append(in[start:min(start+1000, len(in))])
		}
		if b.Len() != len(in) {
			t.Fatalf("Len %d", b.Len())
		}
		for i, f := range in {
			if got := b.Flow(i); got != asKept(f) {
				t.Fatalf("%d distinct strings, row %d:\n got %+v\nwant %+v", distinct, i, got, asKept(f))
			}
		}
	}
}

// A batch written as a Native block of its own columns and read back is
// the same batch.
func TestBatchNativeRoundTrip(t *testing.T) {
	flows := everySlot(t)
	in := flows.NewBatch(0)
	in.Append(flowtest.Random(rand.New(rand.NewPCG(2, 3)), 5000, 400))
	input := in.Input()
	var buf proto.Buffer
	if err := (proto.Block{Columns: len(input), Rows: in.Len()}).EncodeRawBlock(&buf, 0, input); err != nil {
		t.Fatal(err)
	}
	out := flows.NewBatch(0)
	out.Append(flowtest.Random(rand.New(rand.NewPCG(4, 5)), 10, 10)) // replaced by the block
	var blk proto.Block
	if err := blk.DecodeRawBlock(proto.NewReader(strings.NewReader(string(buf.Buf))), 0, out); err != nil {
		t.Fatal(err)
	}
	if out.Len() != in.Len() {
		t.Fatalf("%d rows back, want %d", out.Len(), in.Len())
	}
	for i := range in.Len() {
		if got, want := out.Flow(i), in.Flow(i); got != want {
			t.Fatalf("row %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
}

func TestTypesByDialect(t *testing.T) {
	legacy := Dialect{}
	for _, tc := range []struct {
		t              Type
		modern, legacy string
	}{
		{IP, "IPv6", "FixedString(16)"},
		{LowCardinalityString, "LowCardinality(String)", "String"},
		{DateTime, "DateTime('UTC')", "DateTime('UTC')"},
		{ProtocolEnum, ProtocolEnum.String(), ProtocolEnum.String()},
	} {
		if tc.t.In(Modern) != tc.modern || tc.t.In(legacy) != tc.legacy {
			t.Errorf("%s: %s, %s", tc.t, tc.t.In(Modern), tc.t.In(legacy))
		}
	}
	if ProtocolEnum.Native() != "Int8" || IP.Native() != "IPv6" {
		t.Error("an enum is sent as its number, an address as IPv6")
	}
}

func TestNewTableRefusesMistakes(t *testing.T) {
	for name, columns := range map[string]func() []Column{
		"unknown field":      func() []Column { return []Column{Field("a", UInt32, "NoSuchField")} },
		"too narrow":         func() []Column { return []Column{Field("a", UInt16, "InIf")} },
		"string as number":   func() []Column { return []Column{Field("a", UInt64, "Tenant")} },
		"number as string":   func() []Column { return []Column{Field("a", LowCardinalityString, "InIf")} },
		"bytes as number":    func() []Column { return []Column{Field("a", UInt64, "SrcMAC"), Field("b", UInt32, "ExporterAddr")} },
		"clamped not uint64": func() []Column { return []Column{Clamped("a", "InIf")} },
		"twice":              func() []Column { return []Column{Field("a", UInt32, "InIf"), Field("a", UInt32, "OutIf")} },
		"span of nothing":    func() []Column { return []Column{Millis("t", "TimeStartMs"), Span("d", "t", "u")} },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			NewTable("x", columns()...)
		}()
	}
}

// A batch keeps strings as dictionary keys, so a row of the flows table
// costs about 200 bytes where it cost 440 as Go values (string headers).
func TestBatchBytesPerRow(t *testing.T) {
	const rows = 50000
	fs := make([]flow.Flow, rows)
	names := []string{"xe-0/0/0", "xe-0/0/1", "ae0", "ae1"}
	for i := range fs {
		fs[i] = flow.Flow{SrcPort: uint16(i), Tenant: "acme", ExporterName: "edge1", InIfName: names[i%4], OutIfName: names[(i+1)%4]}
	}
	var m0, m1 runtime.MemStats
	runtime.GC() // twice: the first may leave what earlier tests freed
	runtime.GC()
	runtime.ReadMemStats(&m0)
	b := Flows.NewBatch(rows)
	b.Append(fs)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	perRow := (float64(m1.HeapAlloc) - float64(m0.HeapAlloc)) / rows
	t.Logf("%.1f bytes/row; MemBytes says %.1f", perRow, float64(b.MemBytes())/rows)
	if perRow > 230 {
		t.Errorf("a batch takes %.1f bytes a row", perRow)
	}
	// The store bounds waiting batches by MemBytes: it must count what
	// the heap holds, within a few percent.
	if got, heap := float64(b.MemBytes()), perRow*rows; got < 0.95*heap || got > 1.1*heap {
		t.Errorf("MemBytes = %.0f, the heap grew by %.0f", got, heap)
	}
	b.Reset()
	if got, heap := float64(b.MemBytes()), perRow*rows; got < 0.95*heap {
		t.Errorf("after Reset MemBytes = %.0f: the batch still holds its memory (%.0f)", got, heap)
	}
	runtime.KeepAlive(b)
	runtime.KeepAlive(fs)
}

// decodeBlock is a Native block of input read back by ch-go's own
// columns, each row as fmt prints it (addresses as their 16 bytes, times
// as Unix seconds), so that columns of equal values but other types
// (IPv6 and FixedString(16), LowCardinality(String) and String) compare.
func decodeBlock(t *testing.T, input proto.Input) [][]string {
	t.Helper()
	rows := 0
	if len(input) > 0 {
		rows = input[0].Data.Rows()
	}
	var buf proto.Buffer
	if err := (proto.Block{Columns: len(input), Rows: rows}).EncodeRawBlock(&buf, 0, input); err != nil {
		t.Fatal(err)
	}
	var res proto.Results
	var blk proto.Block
	if err := blk.DecodeRawBlock(proto.NewReader(strings.NewReader(string(buf.Buf))), 0, res.Auto()); err != nil {
		t.Fatal(err)
	}
	out := make([][]string, len(res))
	for i := range res {
		row := reflect.ValueOf(res[i].Data).MethodByName("Row") // every ch-go column has Row(int) T
		for r := range rows {
			v := row.Call([]reflect.Value{reflect.ValueOf(r)})[0].Interface()
			switch x := v.(type) {
			case time.Time:
				v = x.Unix()
			case proto.IPv6:
				v = x[:]
			}
			out[i] = append(out[i], fmt.Sprint(v))
		}
	}
	return out
}

// InsertBlock gives rows from..to of every column (kept, dictionary
// strings, DateTime from milliseconds, durations), the same values as
// the whole batch's Native block, in the table's types on a current
// server and in an old server's (FixedString(16) addresses, String for
// LowCardinality(String)).
func TestInsertBlockIsARangeOfInsert(t *testing.T) {
	flows := everySlot(t)
	b := flows.NewBatch(0)
	fs := flowtest.Random(rand.New(rand.NewPCG(8, 9)), 300, 20)
	fs[0].TimeReceivedMs, fs[1].TimeReceivedMs = -5, math.MaxInt64 // clamped to DateTime's range
	b.Append(fs)
	var s Scratch
	whole := decodeBlock(t, b.Insert(&s))
	for _, d := range []Dialect{Modern, {}} {
		var types []proto.ColumnType
		for _, c := range flows.Columns() {
			typ := c.Type.In(d)
			if strings.HasPrefix(typ, "Enum8(") {
				typ = c.Type.Native() // read back as numbers, as whole is
			}
			types = append(types, proto.ColumnType(typ))
		}
		for _, r := range []struct{ from, to int }{{0, 300}, {0, 1}, {7, 131}, {299, 300}, {150, 150}} {
			input, err := b.InsertBlock(&s, r.from, r.to, types)
			if err != nil {
				t.Fatalf("%+v rows %d..%d: %v", d, r.from, r.to, err)
			}
			for i, col := range input {
				if col.Data.Type() != types[i] {
					t.Errorf("%+v column %s is %s, want %s", d, col.Name, col.Data.Type(), types[i])
				}
			}
			got := decodeBlock(t, input)
			for i, name := range flows.Names() {
				for k := range r.to - r.from {
					if g, w := got[i][k], whole[i][r.from+k]; g != w {
						t.Fatalf("%+v column %s row %d: %s, want %s", d, name, r.from+k, g, w)
					}
				}
			}
		}
	}
	types := make([]proto.ColumnType, len(flows.Names()))
	for i := range types {
		types[i] = proto.ColumnTypeString
	}
	if _, err := b.InsertBlock(&s, 0, 1, types); err == nil {
		t.Error("every column as String: no error")
	}
	for _, r := range []struct{ from, to int }{{-1, 3}, {0, 301}, {5, 4}} {
		if _, err := b.InsertBlock(&s, r.from, r.to, types); err == nil {
			t.Errorf("rows %d..%d of 300: no error", r.from, r.to)
		}
	}
	runtime.KeepAlive(fs)
}
