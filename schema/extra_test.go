package schema

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/flowhouse/flowhouse/flow"
)

// natMPLS is a configuration's mapped columns: NAT, an MPLS label, an
// enterprise counter.
var natMPLS = []flow.ExtraColumn{
	{Name: "post_nat_src_address", Kind: flow.ExtraIP, Slot: 0},
	{Name: "post_nat_src_port", Kind: flow.ExtraUint16, Slot: 0},
	{Name: "mpls_label_1", Kind: flow.ExtraMPLSLabel, Slot: 1},
	{Name: "vendor_id", Kind: flow.ExtraUint8, Slot: 2},
	{Name: "vendor_mac", Kind: flow.ExtraMAC, Slot: 3},
	{Name: "post_nat_dst_address", Kind: flow.ExtraIP, Slot: 1},
}

// The mapped columns come after every fixed one, in configuration order,
// each of the type its kind has.
func TestFlowsWithAddsTheMappedColumnsLast(t *testing.T) {
	tb, err := FlowsWith(natMPLS)
	if err != nil {
		t.Fatal(err)
	}
	fixed := Flows.Names()
	got := tb.Columns()
	if !slices.Equal(tb.Names()[:len(fixed)], fixed) || len(got) != len(fixed)+len(natMPLS) {
		t.Fatalf("columns %v", tb.Names())
	}
	want := []string{"post_nat_src_address IPv6", "post_nat_src_port UInt16", "mpls_label_1 UInt32",
		"vendor_id UInt8", "vendor_mac UInt64", "post_nat_dst_address IPv6"}
	var have []string
	for _, c := range got[len(fixed):] {
		have = append(have, c.Name+" "+c.Type.In(Modern))
	}
	if !slices.Equal(have, want) {
		t.Errorf("mapped columns %q, want %q", have, want)
	}
	if n, _ := FlowsWith(nil); n != Flows {
		t.Error("no mapping is the fixed table")
	}
}

func TestFlowsWithRefusesClashes(t *testing.T) {
	for name, cols := range map[string][]flow.ExtraColumn{
		"a fixed column":  {{Name: "bytes", Kind: flow.ExtraUint64}},
		"twice":           {{Name: "x", Kind: flow.ExtraUint64}, {Name: "x", Kind: flow.ExtraUint32, Slot: 1}},
		"slot outside":    {{Name: "x", Kind: flow.ExtraUint64, Slot: flow.ExtraSlots}},
		"address outside": {{Name: "x", Kind: flow.ExtraIP, Slot: flow.ExtraAddrSlots}},
		"no kind":         {{Name: "x"}},
	} {
		if _, err := FlowsWith(cols); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// Each kind is kept from its slot and given back as it was, narrowed
// columns at their width.
func TestMappedColumnsKeepTheirSlots(t *testing.T) {
	tb, err := FlowsWith(natMPLS)
	if err != nil {
		t.Fatal(err)
	}
	var f flow.Flow
	f.ExtraAddr[0] = flow.AddrFrom4([4]byte{192, 0, 2, 1})
	f.ExtraAddr[1] = flow.AddrFrom4([4]byte{198, 51, 100, 7})
	f.Extra = [flow.ExtraSlots]uint64{40000, 16004, 200, 0x0200_5e00_0001}
	b := tb.NewBatch(1)
	b.Append([]flow.Flow{f})
	if got := b.Flow(0); got.ExtraAddr != f.ExtraAddr || got.Extra != f.Extra {
		t.Errorf("got %v %v, want %v %v", got.Extra, got.ExtraAddr, f.Extra, f.ExtraAddr)
	}
	var s Scratch
	vals := map[string]string{}
	for i, c := range decodeBlock(t, b.Insert(&s)) {
		vals[tb.Names()[i]] = c[0]
	}
	addr := f.ExtraAddr[1]
	for name, want := range map[string]string{"post_nat_src_port": "40000", "vendor_id": "200", "post_nat_dst_address": fmt.Sprint(addr[:])} {
		if vals[name] != want {
			t.Errorf("%s = %s, want %s", name, vals[name], want)
		}
	}
}

// Blocks of a batch (the spool's segments) written before a mapping was
// added or removed still read: a column the block lacks is zero, one the
// table no longer has is read past; a column whose type changed is an
// error, never a silent misreading.
func TestNativeBlocksAcrossMappingChanges(t *testing.T) {
	before, err := FlowsWith(natMPLS[:3])
	if err != nil {
		t.Fatal(err)
	}
	after, err := FlowsWith(append([]flow.ExtraColumn{natMPLS[1]}, natMPLS[3]))
	if err != nil {
		t.Fatal(err)
	}
	var f flow.Flow
	f.SrcPort, f.ExtraAddr[0], f.Extra[0], f.Extra[1] = 443, flow.AddrFrom4([4]byte{10, 0, 0, 1}), 1234, 16004
	block := func(tb *Table) []byte {
		b := tb.NewBatch(1)
		b.Append([]flow.Flow{f})
		input := b.Input()
		var buf proto.Buffer
		if err := (proto.Block{Columns: len(input), Rows: 1}).EncodeRawBlock(&buf, 0, input); err != nil {
			t.Fatal(err)
		}
		return buf.Buf
	}
	read := func(data []byte, tb *Table) (flow.Flow, error) {
		out := tb.NewBatch(0)
		var blk proto.Block
		if err := blk.DecodeRawBlock(proto.NewReader(strings.NewReader(string(data))), 0, out); err != nil {
			return flow.Flow{}, err
		}
		return out.Flow(0), nil
	}
	got, err := read(block(before), after)
	if err != nil {
		t.Fatal(err)
	}
	// after keeps post_nat_src_port in slot 0 and vendor_id in slot 2.
	if got.SrcPort != 443 || got.Extra[0] != 1234 || got.Extra[2] != 0 || !got.ExtraAddr[0].IsZero() || got.Extra[1] != 0 {
		t.Errorf("block of before read by after: %+v %v", got.Extra, got.ExtraAddr)
	}
	retyped, err := FlowsWith([]flow.ExtraColumn{{Name: "post_nat_src_port", Kind: flow.ExtraUint32}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := read(block(before), retyped); err == nil || !strings.Contains(err.Error(), "post_nat_src_port") {
		t.Errorf("a retyped column read as %v", err)
	}
}
