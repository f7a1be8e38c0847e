package collector

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

var updateHostile = flag.Bool("update-hostile", false, "rewrite testdata/hostile from the cases below")

// hostileCase is a datagram an attacker (or a broken exporter) could send,
// and the reason it must be counted under. Each is also a file in
// testdata/hostile, so the corpus is there for other tools and fuzzers.
type hostileCase struct {
	name   string
	prep   []byte // sent first (e.g. a valid template), may be nil
	b      []byte
	reason string
	count  uint64
	flows  int  // decoded from the valid sets that follow the hostile ones
	fuzz   bool // also a seed in testdata/fuzz: among the costliest we know
}

func hostileCases() []hostileCase {
	v5 := func(count uint16, records int) []byte {
		b := make([]byte, nf5HeaderLen+records*nf5RecordLen)
		binary.BigEndian.PutUint16(b, 5)
		binary.BigEndian.PutUint16(b[2:], count)
		return b
	}
	ipfixWithLength := func(length uint16) []byte {
		b := newIPFIX(0, 0, 1).template(256, basicV4...).bytes()
		binary.BigEndian.PutUint16(b[2:], length)
		return b
	}
	hugeTemplate := func() []byte {
		// Claims 65535 fields, carries 2.
		body := rec(uint16(256), uint16(65535), uint16(8), uint16(4), uint16(12), uint16(4))
		return newIPFIX(0, 0, 1).set(2, body).bytes()
	}
	templateFlood := func() []byte {
		m := newIPFIX(0, 0, 1)
		var body []byte
		for id := 256; id < 256+4000; id++ {
			body = append(body, rec(uint16(id), uint16(1), uint16(1), uint16(8))...)
		}
		return m.set(2, body).bytes()
	}
	sflowHeader := func(samples uint32) []byte {
		return rec(uint32(5), uint32(1), ip4a, uint32(0), uint32(1), uint32(0), samples)
	}
	expandedFlowSample := func(records uint32) []byte {
		// goflow2 v2.2.6 allocates a slice of this many records for an
		// expanded flow sample without any bound.
		sample := rec(uint32(1), uint32(0), uint32(1), uint32(1), uint32(0), uint32(0),
			uint32(0), uint32(1), uint32(0), uint32(2), records)
		return append(sflowHeader(1), rec(uint32(3), uint32(len(sample)), sample)...)
	}
	return append(templateHostileCases(), []hostileCase{
		{name: "empty", b: []byte{}, reason: ReasonTruncated, count: 1},
		{name: "unknown_version", b: rec(uint16(7), uint16(1), uint32(0)), reason: ReasonUnknownVersion, count: 1},
		{name: "v5_truncated_header", b: v5(1, 0)[:10], reason: ReasonTruncated, count: 1},
		{name: "v5_count_larger_than_records", b: v5(30, 2), reason: ReasonBadLength, count: 1},
		{name: "v5_count_smaller_than_records", b: v5(1, 3), reason: ReasonBadLength, count: 1},
		{name: "v5_count_zero", b: v5(0, 0), reason: ReasonBadLength, count: 1},
		{name: "v9_truncated_header", b: rec(uint16(9), uint16(1), uint32(0)), reason: ReasonTruncated, count: 1},
		{name: "v9_set_length_zero", b: append(newNFv9(1, 1, 0, 0).bytes(), 0, 0, 0, 0), reason: ReasonMalformedSet, count: 1},
		{name: "v9_set_length_past_end", b: append(newNFv9(1, 1, 0, 0).bytes(), 1, 0, 0x10, 0), reason: ReasonMalformedSet, count: 1},
		{name: "v9_zero_field_template", b: newNFv9(1, 1, 0, 0).template(256).data(256, []byte{0, 0, 0, 0}).bytes(), reason: ReasonEmptyTemplate, count: 1},
		{name: "ipfix_zero_field_template", b: newIPFIX(0, 0, 1).template(256).data(256, []byte{0, 0, 0, 0}).bytes(), reason: ReasonTemplateNotFound, count: 1},
		{name: "ipfix_length_beyond_datagram", b: ipfixWithLength(60000), reason: ReasonTruncated, count: 1},
		{name: "ipfix_length_below_header", b: ipfixWithLength(8), reason: ReasonBadLength, count: 1},
		{name: "ipfix_huge_template", b: hugeTemplate(), reason: ReasonMalformedSet, count: 1},
		{name: "ipfix_template_flood", b: templateFlood(), reason: ReasonTemplateLimit, count: 4000 - 64},
		{name: "ipfix_options_scope_beyond_fields", b: newIPFIX(0, 0, 1).set(3, rec(uint16(300), uint16(1), uint16(5), uint16(302), uint16(4))).bytes(), reason: ReasonMalformedSet, count: 1},
		{name: "ipfix_variable_length_past_record", prep: newIPFIX(0, 0, 1).template(257, tf{8, 4, 0}, tf{82, 0xffff, 0}).bytes(),
			b: newIPFIX(0, 1, 1).data(257, rec(ip4a, uint8(200), []byte("short"))).bytes(), reason: ReasonMalformedRecord, count: 1},
		{name: "ipfix_data_before_template", b: newIPFIX(0, 0, 9).data(999, basicV4Record(1, 2, 3, 4)).bytes(), reason: ReasonTemplateNotFound, count: 1},
		{name: "sflow_absurd_sample_count", b: sflowHeader(0xffffffff), reason: ReasonTooManySamples, count: 1},
		{name: "sflow_sample_length_past_end", b: append(sflowHeader(1), rec(uint32(1), uint32(5000))...), reason: ReasonMalformedSample, count: 1},
		{name: "sflow_expanded_sample_absurd_records", b: expandedFlowSample(0xffffffff), reason: ReasonMalformedSample, count: 1},
		{name: "sflow_bad_agent_address_type", b: rec(uint32(5), uint32(7), uint32(0)), reason: ReasonMalformedSample, count: 1},
		{name: "sflow_unknown_sample_format", b: append(sflowHeader(1), rec(uint32(77), uint32(4), uint32(0))...), reason: ReasonUnsupportedSample, count: 1},
	}...)
}

// withValid fills m with copies of a hostile set up to the size of the
// reported attack, leaving room for a valid template and a data record
// after them, and returns the datagram and the number of hostile sets.
// The valid sets are laid out alike in v9 and IPFIX.
func withValid(m *msg, id uint16, body []byte) ([]byte, uint64) {
	valid := newIPFIX(0, 0, 1).template(300, basicV4...).data(300, basicV4Record(1, 2, 3, 4)).bytes()
	room := attackBytes - (len(valid) - ipfixHeaderLen)
	n := uint64(0)
	for ; m.Len()+setHeaderLen+len(body) <= room; n++ {
		m.set(id, body)
	}
	return m.template(300, basicV4...).data(300, basicV4Record(1, 2, 3, 4)).bytes(), n
}

// templateHostileCases declare more fields than their sets hold, which
// goflow2 v2.2.6 allocates before reading. Each is followed by a valid
// template and data set that must still decode.
func templateHostileCases() []hostileCase {
	field := rec(uint16(8), uint16(4))
	enterprise := rec(uint16(0x8000|9999), uint16(4), uint32(12345))
	cases := []struct {
		name    string
		m       *msg
		set     uint16
		body    []byte
		perSet  uint64 // records counted per hostile set
		fuzzing bool
	}{
		{"ipfix_template_count_65535", newIPFIX(0, 0, 1), 2, rec(uint16(256), uint16(65535), field), 1, true},
		{"v9_template_count_65535", newNFv9(0, 0, 0, 1), 0, rec(uint16(256), uint16(65535), field), 1, true},
		{"ipfix_options_scope_count_65535", newIPFIX(0, 0, 1), 3, rec(uint16(256), uint16(65535), uint16(65535)), 1, true},
		{"ipfix_options_field_count_65535", newIPFIX(0, 0, 1), 3, rec(uint16(256), uint16(65535), uint16(1), field), 1, false},
		{"v9_options_scope_length_65532", newNFv9(0, 0, 0, 1), 1, rec(uint16(256), uint16(65532), uint16(65532)), 1, true},
		{"v9_options_option_length_65532", newNFv9(0, 0, 0, 1), 1, rec(uint16(256), uint16(4), uint16(65532), field), 1, false},
		// Counts that pass the 4-bytes-per-field check but not the 8 bytes
		// an enterprise field takes.
		{"ipfix_template_enterprise_beyond_set", newIPFIX(0, 0, 1), 2, rec(uint16(256), uint16(4), enterprise, enterprise), 1, true},
		{"ipfix_options_enterprise_beyond_set", newIPFIX(0, 0, 1), 3, rec(uint16(256), uint16(4), uint16(1), enterprise, enterprise), 1, false},
		// A good record first: it is kept, the rest of its set is not.
		{"ipfix_template_good_then_count_65535", newIPFIX(0, 0, 1), 2, rec(uint16(257), uint16(1), field, uint16(258), uint16(65535), field), 1, false},
		{"v9_options_good_then_length_65532", newNFv9(0, 0, 0, 1), 1, rec(uint16(257), uint16(4), uint16(4), field, field, uint16(258), uint16(4), uint16(65532)), 1, false},
	}
	var out []hostileCase
	for _, c := range cases {
		b, sets := withValid(c.m, c.set, c.body)
		out = append(out, hostileCase{name: c.name, b: b, reason: ReasonMalformedSet, count: sets * c.perSet, flows: 1, fuzz: c.fuzzing})
	}
	return out
}

func TestHostileInputIsCountedAndBounded(t *testing.T) {
	valid := newIPFIX(0, 0, 1).template(256, basicV4...).data(256, basicV4Record(1, 2, 3, 4)).bytes()
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			b := hostileFile(t, tc)
			d := NewDecoder(DecoderConfig{MaxTemplatesPerExporter: 64}, nil)
			if tc.prep != nil {
				d.Decode(t0, exporterA, tc.prep, nil)
			}
			done := make(chan int)
			go func() { done <- len(d.Decode(t0, exporterA, b, nil)) }()
			select {
			case n := <-done:
				if n != tc.flows {
					t.Errorf("%d flows from the datagram's valid sets, want %d", n, tc.flows)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("decoding hung")
			}
			if got := dropsOf(t, d)[tc.reason]; got != tc.count {
				t.Errorf("%s = %d, want %d (all drops: %v)", tc.reason, got, tc.count, dropsOf(t, d))
			}
			assertBoundedRepeats(t, d, b)
			if n := len(d.Decode(t0, netipAddrPort("127.0.0.99:1"), valid, nil)); n != 1 {
				t.Errorf("a valid datagram afterwards gave %d flows", n)
			}
		})
	}
}

// hostileFile returns the case's datagram as testdata/hostile holds it,
// writing it there (and, for the costliest, into the fuzz corpus) first
// with -update-hostile.
func hostileFile(t *testing.T, tc hostileCase) []byte {
	t.Helper()
	file := filepath.Join("testdata", "hostile", tc.name+".bin")
	if *updateHostile {
		writeFile(t, file, tc.b)
		if tc.fuzz {
			seed := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", tc.b)
			for _, target := range []string{"FuzzDecode", "FuzzDecodeAfterTemplates"} {
				writeFile(t, filepath.Join("testdata", "fuzz", target, "hostile_"+tc.name), []byte(seed))
			}
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test ./collector -run Hostile -update-hostile)", err)
	}
	return b
}

func writeFile(t *testing.T, file string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// maxAllocPerByte bounds what decoding may allocate per byte of a hostile
// datagram, once its exporter is known; goflow2 v2.2.6's template decoders
// allocated 65,000 bytes per byte of a set declaring 65,535 fields.
const maxAllocPerByte = 4

// assertBoundedRepeats decodes b 300 more times: memory stays flat, and
// what each decode allocates stays within maxAllocPerByte of b's size.
func assertBoundedRepeats(t *testing.T, d *Decoder, b []byte) {
	t.Helper()
	const repeats = 300
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < repeats; i++ {
		d.Decode(t0, exporterA, b, nil)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 8<<20 {
		t.Errorf("heap grew by %d bytes over %d repetitions", grown, repeats)
	}
	perDecode := (after.TotalAlloc - before.TotalAlloc) / repeats
	if limit := uint64(maxAllocPerByte*len(b) + 1024); perDecode > limit {
		t.Errorf("each decode of %d bytes allocated %d bytes, want at most %d", len(b), perDecode, limit)
	}
	t.Logf("%d bytes: %d allocated per decode", len(b), perDecode)
}

// attackBytes is the size of the reported template attack: 115 IPFIX
// template sets of 12 bytes after the 16-byte header, a datagram that
// crosses a 1500-byte path unfragmented.
const attackBytes = 1396

// fillSets appends copies of one set to m until the next would pass n bytes.
func fillSets(m *msg, id uint16, body []byte, n int) []byte {
	for m.Len()+setHeaderLen+len(body) <= n {
		m.set(id, body)
	}
	return m.bytes()
}

// costlyCase is a datagram built to cost the most decoding per byte.
type costlyCase struct {
	name string
	prep [][]byte // decoded first, not measured
	b    []byte
}

// costlyCases are the worst datagrams we know how to build, each of
// attackBytes: what goflow2 v2.2.6 allocates before reading (declared field
// counts), what scans whole template stores (floods against a full store,
// alternating definitions and withdrawals), and the cheapest records a
// legitimate template allows.
func costlyCases() []costlyCase {
	oneField := rec(uint16(8), uint16(4))
	// fill defines n templates in another domain of the same exporter.
	fill := func(n int) [][]byte {
		var out [][]byte
		m := newIPFIX(0, 0, 2)
		for id := 256; id < 256+n; id++ {
			if m.Len() > 60000 {
				out = append(out, m.bytes())
				m = newIPFIX(0, 0, 2)
			}
			m.template(uint16(id), tf{8, 4, 0})
		}
		return append(out, m.bytes())
	}
	var flood, alternate []byte
	for id := 2000; len(flood)+8 <= 1200; id++ {
		flood = append(flood, rec(uint16(id), uint16(1), oneField)...)
	}
	for len(alternate)+12 <= 1200 {
		alternate = append(alternate, rec(uint16(256), uint16(1), oneField, uint16(2), uint16(0))...)
	}
	oneByte := newIPFIX(0, 0, 1).template(256, tf{4, 1, 0}).bytes()
	return []costlyCase{
		{name: "ipfix_template_count_65535", b: fillSets(newIPFIX(0, 0, 1), 2, rec(uint16(256), uint16(65535), oneField), attackBytes)},
		{name: "v9_template_count_65535", b: fillSets(newNFv9(0, 0, 0, 1), 0, rec(uint16(256), uint16(65535), oneField), attackBytes)},
		{name: "ipfix_options_scope_count_65535", b: fillSets(newIPFIX(0, 0, 1), 3, rec(uint16(256), uint16(65535), uint16(65535)), attackBytes)},
		{name: "v9_options_scope_length_65532", b: fillSets(newNFv9(0, 0, 0, 1), 1, rec(uint16(256), uint16(65532), uint16(65532)), attackBytes)},
		{name: "ipfix_templates_into_full_store", prep: fill(1024), b: fillSets(newIPFIX(0, 0, 1), 2, flood, attackBytes)},
		{name: "ipfix_define_withdraw_alternating", prep: fill(1023), b: fillSets(newIPFIX(0, 0, 1), 2, alternate, attackBytes)},
		{name: "ipfix_options_withdraw_all_repeated", prep: fill(1023), b: fillSets(newIPFIX(0, 0, 1), 3, bytes.Repeat(rec(uint16(3), uint16(0)), 300), attackBytes)},
		{name: "ipfix_one_byte_records", prep: [][]byte{oneByte}, b: fillSets(newIPFIX(0, 1, 1), 256, make([]byte, 1200), attackBytes)},
	}
}
