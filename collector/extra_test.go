package collector

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/nfmsg"
)

// penExample is an enterprise number for enterprise-specific fields in
// these tests (RFC 5612's, for documentation).
const penExample = 32473

// natMPLSFields map NAT (RFC 7012: IE 225-228, 281, 282), the top MPLS
// label (70), a MAC and an enterprise field.
var natMPLSFields = []ExtraField{
	{Column: "post_nat_src_address", IE: 225, Type: "ip"},
	{Column: "post_nat_dst_address", IE: 226, Type: "ip"},
	{Column: "post_napt_src_port", IE: 227, Type: "uint16"},
	{Column: "post_napt_dst_port", IE: 228, Type: "uint16"},
	{Column: "mpls_top_label", IE: 70, Type: "mpls_label"},
	{Column: "post_nat_src_address6", IE: 281, Type: "ip"},
	{Column: "vendor_counter", IE: 7, PEN: penExample, Type: "uint64"},
	{Column: "vendor_class", IE: 12, PEN: penExample, Type: "uint8"},
	{Column: "vendor_mac", IE: 13, PEN: penExample, Type: "mac"},
	{Column: "vendor_id", IE: 14, PEN: penExample, Type: "uint32"},
}

func extraDecoder(fields []ExtraField, m *metrics) *Decoder {
	return NewDecoder(DecoderConfig{MaxTemplatesPerExporter: 16, ExtraFields: fields}, m)
}

func TestExtraFieldsValidation(t *testing.T) {
	tooMany := make([]ExtraField, MaxExtraFields+1)
	for i := range tooMany {
		tooMany[i] = ExtraField{Column: fmt.Sprintf("c%d", i), IE: uint16(400 + i), Type: "uint8"}
	}
	addrs := make([]ExtraField, flow.ExtraAddrSlots+1)
	for i := range addrs {
		addrs[i] = ExtraField{Column: fmt.Sprintf("a%d", i), IE: uint16(400 + i), Type: "ip"}
	}
	for _, tc := range []struct {
		name   string
		fields []ExtraField
		want   string // "" for valid
	}{
		{"NAT, MPLS and enterprise fields", natMPLSFields, ""},
		{"unknown type", []ExtraField{{Column: "x", IE: 225, Type: "string"}}, `extra_fields[0].type: "string" is not one of ip, uint8, uint16, uint32, uint64, mac, mpls_label`},
		{"column with upper case", []ExtraField{{Column: "PostNat", IE: 225, Type: "ip"}}, `extra_fields[0].column: "PostNat" is not a column name`},
		{"column starting with a digit", []ExtraField{{Column: "1x", IE: 225, Type: "ip"}}, `extra_fields[0].column: "1x" is not a column name`},
		{"column of 64 characters", []ExtraField{{Column: "a" + strings.Repeat("b", 63), IE: 225, Type: "ip"}}, `extra_fields[0].column: "abbb`},
		{"empty column", []ExtraField{{IE: 225, Type: "ip"}}, `extra_fields[0].column: "" is not a column name`},
		{"fixed column", []ExtraField{{Column: "src_address", IE: 225, Type: "ip"}}, `extra_fields[0].column: "src_address" is a fixed column of flows`},
		{"column twice", []ExtraField{{Column: "x", IE: 225, Type: "ip"}, {Column: "y", IE: 226, Type: "ip"}, {Column: "x", IE: 227, Type: "uint16"}},
			`extra_fields[2].column: "x" is mapped already by extra_fields[0]`},
		{"element twice", []ExtraField{{Column: "x", IE: 225, Type: "ip"}, {Column: "y", IE: 225, Type: "ip"}}, `extra_fields[1].ie: pen 0 ie 225 is mapped already by extra_fields[0]`},
		{"same IE, other PEN", []ExtraField{{Column: "x", IE: 225, Type: "ip"}, {Column: "y", IE: 225, PEN: 9, Type: "ip"}}, ""},
		{"IE the fixed set decodes", []ExtraField{{Column: "x", IE: 235, Type: "uint32"}}, `extra_fields[0].ie: pen 0 ie 235 is decoded already, into column out_vrf_id`},
		{"flowDirection is the direction column", []ExtraField{{Column: "flow_direction", IE: 61, Type: "uint8"}}, `ie 61 is decoded already, into column direction`},
		{"reverse bytes of RFC 5103", []ExtraField{{Column: "x", IE: 1, PEN: 29305, Type: "uint64"}}, `pen 29305 ie 1 is decoded already, into column bytes (of the reverse flow)`},
		{"reverse NAT address is not decoded", []ExtraField{{Column: "x", IE: 225, PEN: 29305, Type: "ip"}}, ""},
		{"IE 0", []ExtraField{{Column: "x", Type: "ip"}}, `extra_fields[0].ie: 0 is no element`},
		{"IE with the enterprise bit and a PEN", []ExtraField{{Column: "x", IE: 0x8001, PEN: 9, Type: "ip"}}, `extra_fields[0].ie: 32769 is outside 1..32767 for an enterprise element`},
		{"more mappings than slots", tooMany, fmt.Sprintf("extra_fields: %d mappings, at most %d", MaxExtraFields+1, MaxExtraFields)},
		{"more addresses than slots", addrs, fmt.Sprintf("extra_fields: at most %d are of type ip", flow.ExtraAddrSlots)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ExtraFields = tc.fields
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}

// The slots: addresses in ExtraAddr, the rest in Extra, in configuration order.
func TestExtraColumnsLayout(t *testing.T) {
	cols := Config{ExtraFields: natMPLSFields}.ExtraColumns()
	want := []flow.ExtraColumn{
		{Name: "post_nat_src_address", Kind: flow.ExtraIP, Slot: 0}, {Name: "post_nat_dst_address", Kind: flow.ExtraIP, Slot: 1},
		{Name: "post_napt_src_port", Kind: flow.ExtraUint16, Slot: 0}, {Name: "post_napt_dst_port", Kind: flow.ExtraUint16, Slot: 1},
		{Name: "mpls_top_label", Kind: flow.ExtraMPLSLabel, Slot: 2}, {Name: "post_nat_src_address6", Kind: flow.ExtraIP, Slot: 2},
		{Name: "vendor_counter", Kind: flow.ExtraUint64, Slot: 3}, {Name: "vendor_class", Kind: flow.ExtraUint8, Slot: 4},
		{Name: "vendor_mac", Kind: flow.ExtraMAC, Slot: 5}, {Name: "vendor_id", Kind: flow.ExtraUint32, Slot: 6},
	}
	if fmt.Sprint(cols) != fmt.Sprint(want) {
		t.Errorf("got  %v\nwant %v", cols, want)
	}
}

// label stack entry of label 16004, TC 5, bottom of stack.
var mplsEntry = []byte{0x03, 0xe8, 0x4b}

func TestExtraFieldsDecode(t *testing.T) {
	v6 := []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99}
	natIANA := append(append([]tf{}, basicV4...), tf{225, 4, 0}, tf{226, 4, 0}, tf{227, 2, 0}, tf{228, 2, 0}, tf{70, 3, 0}, tf{281, 16, 0})
	natRecord := append(basicV4Record(40000, 443, 1500, 3), rec([]byte{203, 0, 113, 5}, []byte{198, 51, 100, 80}, uint16(61000), uint16(8443), mplsEntry, v6)...)
	checkNAT := func(t *testing.T, f flow.Flow) {
		t.Helper()
		if f.SrcPort != 40000 || f.Bytes != 1500 {
			t.Errorf("fixed fields %+v", f)
		}
		if got := f.ExtraAddr[0].String(); got != "203.0.113.5" {
			t.Errorf("post_nat_src_address %s", got)
		}
		if got := f.ExtraAddr[1].String(); got != "198.51.100.80" {
			t.Errorf("post_nat_dst_address %s", got)
		}
		if got := f.ExtraAddr[2].String(); got != "2001:db8::99" {
			t.Errorf("post_nat_src_address6 %s", got)
		}
		if f.Extra[0] != 61000 || f.Extra[1] != 8443 || f.Extra[2] != 16004 {
			t.Errorf("ports and label %v", f.Extra)
		}
	}
	t.Run("netflow v9", func(t *testing.T) {
		m := newNFv9(1000, uint32(t0.Unix()), 0, 1).template(256, natIANA...).data(256, natRecord, natRecord)
		flows := extraDecoder(natMPLSFields, nil).Decode(t0, exporterA, m.bytes(), nil)
		if len(flows) != 2 {
			t.Fatalf("%d flows", len(flows))
		}
		checkNAT(t, flows[1])
	})
	t.Run("ipfix", func(t *testing.T) {
		m := newIPFIX(uint32(t0.Unix()), 0, 1).template(256, natIANA...).data(256, natRecord)
		flows := extraDecoder(natMPLSFields, nil).Decode(t0, exporterA, m.bytes(), nil)
		if len(flows) != 1 {
			t.Fatalf("%d flows", len(flows))
		}
		checkNAT(t, flows[0])
	})
	// NetFlow v9 numbers vendor field types from 32768 up in the same
	// space (no enterprise numbers): Cisco ASA's NSEL 33000 (an ingress
	// ACL ID, 12 bytes) is not IE 232 responderOctets, which would make a
	// reverse flow of it, and 40001 (the translated source address) maps
	// as ie 40001, pen 0.
	t.Run("netflow v9 vendor types", func(t *testing.T) {
		fields := append(append([]tf{}, basicV4...), tf{33000, 12, 0}, tf{40001, 4, 0})
		record := append(basicV4Record(40000, 443, 1500, 3), rec(uint32(7), uint32(0xffffffff), uint32(9), []byte{203, 0, 113, 9})...)
		m := newNFv9(1000, uint32(t0.Unix()), 0, 1).template(256, fields...).data(256, record)
		d := extraDecoder([]ExtraField{{Column: "xlate_src_address", IE: 40001, Type: "ip"}}, nil)
		flows := d.Decode(t0, exporterA, m.bytes(), nil)
		if len(flows) != 1 || flows[0].Bytes != 1500 || flows[0].Packets != 3 {
			t.Fatalf("flows %+v, drops %v", flows, dropsOf(t, d))
		}
		if got := flows[0].ExtraAddr[0].String(); got != "203.0.113.9" {
			t.Errorf("xlate_src_address %s", got)
		}
	})
	// Enterprise fields, some of variable length, between unmapped
	// variable-length ones: each is read at its offset.
	t.Run("ipfix enterprise and variable length", func(t *testing.T) {
		fields := append(append([]tf{}, basicV4...),
			tf{ieInterfaceName, variableLength, 0}, // not mapped: skipped by its length
			tf{7, variableLength, penExample},      // uint64 sent in 3 bytes
			tf{12, 2, penExample},                  // uint8 sent in 2 bytes: the low byte
			tf{99, variableLength, penExample},     // not mapped, long form
			tf{13, 6, penExample},
			tf{14, 4, penExample},
			tf{225, variableLength, 0}, // an address of variable length
		)
		record := append(basicV4Record(1, 2, 3, 4),
			rec(nfmsg.Variable([]byte("ge-0/0/1")), nfmsg.Variable([]byte{1, 2, 3}), uint16(0x1234),
				nfmsg.Variable(make([]byte, 300)), []byte{0x02, 0x00, 0x5e, 0x10, 0x20, 0x30}, uint32(4000000000),
				nfmsg.Variable([]byte{192, 0, 2, 200}))...)
		m := newIPFIX(uint32(t0.Unix()), 0, 1).template(300, fields...).data(300, record)
		d := extraDecoder(natMPLSFields, nil)
		flows := d.Decode(t0, exporterA, m.bytes(), nil)
		if len(flows) != 1 {
			t.Fatalf("%d flows, drops %v", len(flows), dropsOf(t, d))
		}
		f := flows[0]
		if f.Extra[3] != 0x010203 || f.Extra[4] != 0x34 || f.Extra[5] != 0x02005e102030 || f.Extra[6] != 4000000000 {
			t.Errorf("enterprise fields %x", f.Extra)
		}
		if got := f.ExtraAddr[0].String(); got != "192.0.2.200" {
			t.Errorf("variable-length address %s", got)
		}
	})
	// A value of a length its kind cannot be is left out, as the fixed set
	// leaves out a 3-byte IPv4 address.
	t.Run("wrong lengths", func(t *testing.T) {
		fields := append(append([]tf{}, basicV4...), tf{225, 3, 0}, tf{70, 2, 0})
		m := newIPFIX(uint32(t0.Unix()), 0, 1).template(256, fields...).data(256, append(basicV4Record(1, 2, 3, 4), 1, 2, 3, 4, 5))
		flows := extraDecoder(natMPLSFields, nil).Decode(t0, exporterA, m.bytes(), nil)
		if len(flows) != 1 || !flows[0].ExtraAddr[0].IsZero() || flows[0].Extra[2] != 0 {
			t.Errorf("flows %+v", flows)
		}
	})
	// Without a mapping, the same records decode as before and fill no slot.
	t.Run("not mapped", func(t *testing.T) {
		m := newIPFIX(uint32(t0.Unix()), 0, 1).template(256, natIANA...).data(256, natRecord)
		flows := extraDecoder(nil, nil).Decode(t0, exporterA, m.bytes(), nil)
		if len(flows) != 1 || flows[0].Extra != ([flow.ExtraSlots]uint64{}) || flows[0].ExtraAddr != ([flow.ExtraAddrSlots]flow.Addr{}) || flows[0].Bytes != 1500 {
			t.Errorf("flows %+v", flows)
		}
	})
	// Options records never become flows: a mapped element in an options
	// template is not a flow's.
	t.Run("options template", func(t *testing.T) {
		m := newIPFIX(uint32(t0.Unix()), 0, 1).
			optionsTemplate(400, []tf{{ieIngressInterface, 4, 0}}, []tf{{225, 4, 0}}).
			data(400, rec(uint32(3), []byte{10, 0, 0, 1})).
			template(256, natIANA...).data(256, natRecord)
		flows := extraDecoder(natMPLSFields, nil).Decode(t0, exporterA, m.bytes(), nil)
		if len(flows) != 1 {
			t.Fatalf("%d flows", len(flows))
		}
		checkNAT(t, flows[0])
	})
}

func unknownCount(t *testing.T, m *metrics, pen, ie string) float64 {
	t.Helper()
	return testutil.ToFloat64(m.unknown.vec.WithLabelValues(pen, ie))
}

// Fields nothing decodes are counted per (PEN, IE) once per template
// definition: not per record, not per refresh, again when redefined.
func TestUnknownFieldsCountedPerTemplateDefinition(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry())
	d := extraDecoder(natMPLSFields, m)
	fields := append(append([]tf{}, basicV4...),
		tf{225, 4, 0},                        // mapped
		tf{ieFlowDirection, 1, 0},            // fixed
		tf{iePaddingOctets, 2, 0},            // padding
		tf{ieInterfaceName, 8, 0},            // nothing decodes it in data records
		tf{5, 4, 9},                          // enterprise, not mapped
		tf{225, 4, penReverse},               // reverse NAT address, not decoded
		tf{ieOctetDeltaCount, 8, penReverse}) // fixed (reverse)
	record := append(basicV4Record(1, 2, 3, 4), rec([]byte{10, 0, 0, 1}, uint8(1), uint16(0), make([]byte, 8), uint32(7), []byte{10, 0, 0, 2}, uint64(0))...)
	send := func(fs []tf, r []byte) {
		t.Helper()
		msg := newIPFIX(uint32(t0.Unix()), 0, 1).template(256, fs...).data(256, r, r, r)
		if flows := d.Decode(t0, exporterA, msg.bytes(), nil); len(flows) != 3 {
			t.Fatalf("%d flows", len(flows))
		}
	}
	send(fields, record)
	send(fields, record) // a refresh, as exporters send every few seconds
	want := map[[2]string]float64{{"0", "82"}: 1, {"9", "5"}: 1, {"29305", "225"}: 1}
	for k, v := range want {
		if got := unknownCount(t, m, k[0], k[1]); got != v {
			t.Errorf("pen %s ie %s: %v, want %v", k[0], k[1], got, v)
		}
	}
	if n := testutil.CollectAndCount(m.unknown.vec); n != len(want) {
		t.Errorf("%d series, want %d (mapped, fixed and padding fields are not unknown)", n, len(want))
	}
	// A redefinition of the template ID with other fields is a new definition.
	send(append(fields, tf{ieSourceIPv4PrefixLength, 1, 0}), append(record, 24))
	if got := unknownCount(t, m, "0", "82"); got != 2 {
		t.Errorf("after a redefinition: %v, want 2", got)
	}
	// Options templates are not counted: their records never become flows.
	d.Decode(t0, exporterA, newIPFIX(uint32(t0.Unix()), 0, 1).optionsTemplate(400, []tf{{ieIngressInterface, 4, 0}}, []tf{{999, 4, 0}}).bytes(), nil)
	if n := testutil.CollectAndCount(m.unknown.vec); n != len(want) {
		t.Errorf("%d series after an options template", n)
	}
}

// A flood of templates of made-up fields makes at most maxUnknownSeries
// series; the rest are counted in one "other" series.
func TestUnknownFieldsSeriesAreBounded(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry())
	d := extraDecoder(nil, m)
	const flood = maxUnknownSeries + 100
	for i := range flood {
		msg := newIPFIX(uint32(t0.Unix()), 0, 1).template(256, tf{8, 4, 0}, tf{uint16(1 + i%1000), 4, uint32(1000 + i)})
		d.Decode(t0, exporterA, msg.bytes(), nil)
	}
	if n := testutil.CollectAndCount(m.unknown.vec); n != maxUnknownSeries+1 {
		t.Errorf("%d series, want %d and other", n, maxUnknownSeries)
	}
	if got := unknownCount(t, m, "other", "other"); got != flood-maxUnknownSeries {
		t.Errorf("other: %v, want %d", got, flood-maxUnknownSeries)
	}
	if got := unknownCount(t, m, "1000", "1"); got != 1 {
		t.Errorf("first pair: %v", got)
	}
}

// fixedColumns and fixedReverseColumns are what decodeFlowRecord decodes:
// every element that changes a flow, sent alone or beside the elements it
// needs, is in them, and every element in them changes a flow. A case
// added to the decoder without its line there (or the other way round)
// fails here, before a mapping of it is accepted or it is counted unknown.
func TestFixedColumnsAreWhatIsDecoded(t *testing.T) {
	type base struct {
		ipfix  bool
		fields []tf
		values []byte
	}
	rev := func(ie uint16) tf { return tf{ie, 8, penReverse} }
	for _, tc := range []struct {
		pen   uint32
		bases []base
		want  func(ie uint16) bool
	}{
		{0, []base{
			{false, []tf{{8, 4, 0}}, ip4a},
			{false, []tf{{8, 4, 0}, {ieSamplingPacketInterval, 4, 0}}, rec(ip4a, uint32(1))}, // packet space needs an interval
			{false, []tf{{8, 4, 0}, {ieSamplingPacketSpace, 4, 0}}, rec(ip4a, uint32(1000))}, // and a large space shows an interval
			{true, []tf{{8, 4, 0}, {ieFlowStartSysUpTime, 4, 0}}, rec(ip4a, uint32(1000))},   // the init time anchors uptimes
		}, func(ie uint16) bool { _, ok := fixedColumns[ie]; return ok }},
		{penReverse, []base{
			{true, []tf{{8, 4, 0}, {1, 8, 0}, {2, 8, 0}, rev(1)}, rec(ip4a, uint64(10), uint64(1), uint64(20))},
			{true, []tf{{8, 4, 0}, {1, 8, 0}, {2, 8, 0}, rev(2)}, rec(ip4a, uint64(10), uint64(1), uint64(2))},
			{true, []tf{{8, 4, 0}, {1, 8, 0}, rev(1), rev(ieSystemInitTimeMilliseconds)}, rec(ip4a, uint64(10), uint64(20), uint64(t0.UnixMilli()-60000))},
			{true, []tf{{8, 4, 0}, {1, 8, 0}, rev(1), {ieFlowStartSysUpTime, 4, penReverse}}, rec(ip4a, uint64(10), uint64(20), uint32(1000))},
		}, func(ie uint16) bool { _, ok := fixedColumn(penReverse, ie); return ok }},
	} {
		for ie := uint16(1); ie < 512; ie++ {
			decoded := false
			for _, b := range tc.bases {
				baseline := decodeOne(b.ipfix, b.fields, b.values)
				for _, length := range []uint16{1, 2, 4, 6, 8, 16} {
					value := make([]byte, length)
					for i := range value {
						value[i] = 0x5a
					}
					got := decodeOne(b.ipfix, append(append([]tf{}, b.fields...), tf{ie, length, tc.pen}), append(append([]byte{}, b.values...), value...))
					decoded = decoded || fmt.Sprint(got) != fmt.Sprint(baseline)
				}
			}
			if want := tc.want(ie); decoded != want {
				t.Errorf("pen %d ie %d: decoded %v, in the table of fixed columns %v", tc.pen, ie, decoded, want)
			}
		}
	}
}

func decodeOne(ipfix bool, fields []tf, record []byte) []flow.Flow {
	m := newNFv9(100000, uint32(t0.Unix()), 0, 1)
	if ipfix {
		m = newIPFIX(uint32(t0.Unix()), 0, 1)
	}
	return newTestDecoder().Decode(t0, exporterA, m.template(256, fields...).data(256, record).bytes(), nil)
}
