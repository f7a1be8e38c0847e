package collector

import (
	"encoding/binary"
	"flag"
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
	return []hostileCase{
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
	}
}

func TestHostileInputIsCountedAndBounded(t *testing.T) {
	dir := filepath.Join("testdata", "hostile")
	valid := newIPFIX(0, 0, 1).template(256, basicV4...).data(256, basicV4Record(1, 2, 3, 4)).bytes()
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, tc.name+".bin")
			if *updateHostile {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, tc.b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run go test ./collector -run Hostile -update-hostile)", err)
			}
			d := NewDecoder(DecoderConfig{MaxTemplatesPerExporter: 64}, nil)
			if tc.prep != nil {
				d.Decode(t0, exporterA, tc.prep, nil)
			}
			done := make(chan struct{})
			go func() { d.Decode(t0, exporterA, b, nil); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("decoding hung")
			}
			if got := dropsOf(t, d)[tc.reason]; got != tc.count {
				t.Errorf("%s = %d, want %d (all drops: %v)", tc.reason, got, tc.count, dropsOf(t, d))
			}
			// Repeating it keeps memory flat and the stream usable.
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for i := 0; i < 300; i++ {
				d.Decode(t0, exporterA, b, nil)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 8<<20 {
				t.Errorf("heap grew by %d bytes over 300 repetitions", grown)
			}
			if n := len(d.Decode(t0, netipAddrPort("127.0.0.99:1"), valid, nil)); n != 1 {
				t.Errorf("a valid datagram afterwards gave %d flows", n)
			}
		})
	}
}
