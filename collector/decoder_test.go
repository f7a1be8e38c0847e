package collector

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
)

var (
	exporterA = netip.MustParseAddrPort("127.0.0.10:40000")
	t0        = time.Date(2024, 1, 1, 0, 10, 0, 0, time.UTC)
	ip4a      = []byte{192, 0, 2, 1}
	ip4b      = []byte{198, 51, 100, 7}
)

// basicV4 is a template of the common IPv4 5-tuple and counters.
var basicV4 = []tf{{8, 4, 0}, {12, 4, 0}, {7, 2, 0}, {11, 2, 0}, {4, 1, 0}, {1, 8, 0}, {2, 8, 0}}

func basicV4Record(sport, dport uint16, bytes, packets uint64) []byte {
	return rec(ip4a, ip4b, sport, dport, uint8(6), bytes, packets)
}

func newTestDecoder() *Decoder {
	return NewDecoder(DecoderConfig{TemplateTimeout: 30 * time.Minute, MaxTemplatesPerExporter: 16}, nil)
}

func dropsOf(t *testing.T, d *Decoder) map[string]uint64 {
	t.Helper()
	s := d.Stats()
	if len(s) != 1 {
		t.Fatalf("want stats for 1 exporter, got %d", len(s))
	}
	return s[0].Drops
}

func TestZeroFieldTemplateIsRejectedAndDoesNotHang(t *testing.T) {
	for _, version := range []uint16{9, 10} {
		d := newTestDecoder()
		var m *msg
		if version == 10 {
			m = newIPFIX(1704067800, 0, 1)
		} else {
			m = newNFv9(1000, 1704067800, 0, 1)
		}
		// The 36-byte datagram that makes goflow2 v2.2.6 allocate forever:
		// an empty template and a data set that refers to it.
		m.template(256).data(256, []byte{0, 0, 0, 0})
		done := make(chan []flow.Flow, 1)
		go func() { done <- d.Decode(t0, exporterA, m.bytes(), nil) }()
		select {
		case flows := <-done:
			if len(flows) != 0 {
				t.Errorf("v%d: got %d flows from an empty template", version, len(flows))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("v%d: decoding a zero-field template did not return", version)
		}
		drops := dropsOf(t, d)
		if version == 9 && drops[ReasonEmptyTemplate] != 1 {
			t.Errorf("v9: empty_template drops = %d, want 1", drops[ReasonEmptyTemplate])
		}
		if drops[ReasonTemplateNotFound] != 1 {
			t.Errorf("v%d: template_not_found drops = %d, want 1", version, drops[ReasonTemplateNotFound])
		}
	}
}

func TestUnknownTemplateKeepsOtherSets(t *testing.T) {
	d := newTestDecoder()
	m := newIPFIX(1704067800, 0, 1).
		data(300, basicV4Record(1, 2, 100, 1)). // never defined
		template(256, basicV4...).
		data(256, basicV4Record(1000, 443, 1500, 3), basicV4Record(1001, 443, 60, 1))
	flows := d.Decode(t0, exporterA, m.bytes(), nil)
	if len(flows) != 2 {
		t.Fatalf("got %d flows, want the 2 of the known template", len(flows))
	}
	if flows[0].SrcPort != 1000 || flows[0].Bytes != 1500 || flows[0].Packets != 3 || flows[1].SrcPort != 1001 {
		t.Errorf("wrong flows: %+v", flows)
	}
	if got := dropsOf(t, d)[ReasonTemplateNotFound]; got != 1 {
		t.Errorf("template_not_found = %d, want 1", got)
	}
}

func TestTemplateExpiryAndRedefinition(t *testing.T) {
	d := NewDecoder(DecoderConfig{TemplateTimeout: time.Minute}, nil)
	tmpl := newIPFIX(1704067800, 0, 1).template(256, basicV4...).bytes()
	d.Decode(t0, exporterA, tmpl, nil)

	dataMsg := newIPFIX(1704067800, 0, 1).data(256, basicV4Record(1, 2, 10, 1)).bytes()
	if n := len(d.Decode(t0.Add(30*time.Second), exporterA, dataMsg, nil)); n != 1 {
		t.Fatalf("within the timeout: %d flows, want 1", n)
	}
	if n := len(d.Decode(t0.Add(2*time.Minute), exporterA, dataMsg, nil)); n != 0 {
		t.Fatalf("after expiry: %d flows, want 0", n)
	}
	if got := dropsOf(t, d)[ReasonTemplateNotFound]; got != 1 {
		t.Errorf("template_not_found after expiry = %d, want 1", got)
	}

	// Redefine 256 with the ports swapped in order: the new layout wins.
	swapped := []tf{{8, 4, 0}, {12, 4, 0}, {11, 2, 0}, {7, 2, 0}, {4, 1, 0}, {1, 8, 0}, {2, 8, 0}}
	d.Decode(t0.Add(3*time.Minute), exporterA, newIPFIX(1704067800, 0, 1).template(256, swapped...).bytes(), nil)
	flows := d.Decode(t0.Add(3*time.Minute), exporterA, dataMsg, nil)
	if len(flows) != 1 || flows[0].DstPort != 1 || flows[0].SrcPort != 2 {
		t.Fatalf("redefined template not used: %+v", flows)
	}

	// RFC 7011 withdrawal: a template record with no fields.
	d.Decode(t0.Add(4*time.Minute), exporterA, newIPFIX(1704067800, 0, 1).template(256).bytes(), nil)
	if n := len(d.Decode(t0.Add(4*time.Minute), exporterA, dataMsg, nil)); n != 0 {
		t.Fatalf("after withdrawal: %d flows, want 0", n)
	}
}

func TestTemplatesAreScopedByDomainAndPort(t *testing.T) {
	d := newTestDecoder()
	d.Decode(t0, exporterA, newIPFIX(0, 0, 1).template(256, basicV4...).bytes(), nil)
	data := func(domain uint32) []byte {
		return newIPFIX(0, 0, domain).data(256, basicV4Record(1, 2, 10, 1)).bytes()
	}
	if n := len(d.Decode(t0, exporterA, data(1), nil)); n != 1 {
		t.Errorf("same domain: %d flows, want 1", n)
	}
	if n := len(d.Decode(t0, exporterA, data(2), nil)); n != 0 {
		t.Errorf("other domain used domain 1's template: %d flows", n)
	}
	otherPort := netip.AddrPortFrom(exporterA.Addr(), exporterA.Port()+1)
	if n := len(d.Decode(t0, otherPort, data(1), nil)); n != 0 {
		t.Errorf("other exporting process (port) used the template: %d flows", n)
	}
}

func TestTemplateFloodIsBounded(t *testing.T) {
	d := NewDecoder(DecoderConfig{MaxTemplatesPerExporter: 8}, nil)
	m := newIPFIX(0, 0, 1)
	for id := uint16(256); id < 256+20; id++ {
		m.template(id, basicV4...)
	}
	d.Decode(t0, exporterA, m.bytes(), nil)
	s := d.Stats()[0]
	if s.Templates != 8 {
		t.Errorf("templates kept = %d, want 8", s.Templates)
	}
	if s.Drops[ReasonTemplateLimit] != 12 {
		t.Errorf("template_limit drops = %d, want 12", s.Drops[ReasonTemplateLimit])
	}
}

func TestSamplingRates(t *testing.T) {
	samplerTmpl := []tf{{302, 4, 0}} // selectorId as scope
	tests := []struct {
		name    string
		options []tf
		record  []byte
		want    uint32
	}{
		// RFC 7011/5477: interval packets selected of every interval+space.
		{"packet interval and space (IE 305/306)", []tf{{305, 4, 0}, {306, 4, 0}}, rec(uint32(7), uint32(1), uint32(99)), 100},
		{"sampling interval (IE 34)", []tf{{34, 4, 0}}, rec(uint32(7), uint32(512)), 512},
		{"random interval (IE 50)", []tf{{50, 4, 0}}, rec(uint32(7), uint32(2000)), 2000},
		{"population and size (IE 309/310)", []tf{{309, 4, 0}, {310, 4, 0}}, rec(uint32(7), uint32(1), uint32(4096)), 4096},
		{"probability (IE 311)", []tf{{311, 8, 0}}, rec(uint32(7), uint64(0x3f50624dd2f1a9fc)), 1000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDecoder()
			tmpl := append(append([]tf{}, basicV4...), tf{302, 4, 0})
			m := newIPFIX(0, 0, 1).
				optionsTemplate(400, samplerTmpl, tc.options).
				data(400, tc.record).
				template(256, tmpl...).
				data(256, append(basicV4Record(1, 2, 10, 1), rec(uint32(7))...))
			flows := d.Decode(t0, exporterA, m.bytes(), nil)
			if len(flows) != 1 {
				t.Fatalf("got %d flows, want 1 (options records are not flows)", len(flows))
			}
			if flows[0].SamplingRate != tc.want || flows[0].SamplerID != 7 {
				t.Errorf("rate %d sampler %d, want rate %d sampler 7", flows[0].SamplingRate, flows[0].SamplerID, tc.want)
			}
		})
	}
}

func TestSamplingRatePerSampler(t *testing.T) {
	d := newTestDecoder()
	tmpl := append(append([]tf{}, basicV4...), tf{48, 1, 0}) // v9 FLOW_SAMPLER_ID
	m := newNFv9(60000, 1704067800, 0, 3).
		optionsTemplate(260, []tf{{1, 4, 0}}, []tf{{48, 1, 0}, {49, 1, 0}, {50, 4, 0}}).
		data(260, rec(uint32(0), uint8(1), uint8(2), uint32(10)), rec(uint32(0), uint8(2), uint8(2), uint32(100))).
		template(256, tmpl...).
		data(256,
			append(basicV4Record(1, 2, 10, 1), 1),
			append(basicV4Record(3, 4, 10, 1), 2),
			append(basicV4Record(5, 6, 10, 1), 9)) // unknown sampler
	flows := d.Decode(t0, exporterA, m.bytes(), nil)
	if len(flows) != 3 {
		t.Fatalf("got %d flows, want 3", len(flows))
	}
	for i, want := range []uint32{10, 100, 1} {
		if flows[i].SamplingRate != want {
			t.Errorf("flow %d (sampler %d): rate %d, want %d", i, flows[i].SamplerID, flows[i].SamplingRate, want)
		}
	}
}

func TestSamplingConfigOverridesAndDefaults(t *testing.T) {
	rules := []SamplingRule{
		{Prefix: "127.0.0.0/8", Rate: 64},                    // fallback for all loopback exporters
		{Prefix: "127.0.0.10/32", Rate: 500, Override: true}, // this one lies about its rate
	}
	d := NewDecoder(DecoderConfig{Sampling: rules}, nil)
	v5 := func(rate uint16) []byte {
		b := make([]byte, nf5HeaderLen+nf5RecordLen)
		binary.BigEndian.PutUint16(b, 5)
		binary.BigEndian.PutUint16(b[2:], 1)
		binary.BigEndian.PutUint16(b[22:], rate)
		return b
	}
	if f := d.Decode(t0, exporterA, v5(10), nil); f[0].SamplingRate != 500 {
		t.Errorf("override: rate %d, want 500", f[0].SamplingRate)
	}
	other := netip.MustParseAddrPort("127.0.0.11:1")
	if f := d.Decode(t0, other, v5(0), nil); f[0].SamplingRate != 64 {
		t.Errorf("fallback: rate %d, want 64", f[0].SamplingRate)
	}
	if f := d.Decode(t0, other, v5(0x4000|20), nil); f[0].SamplingRate != 20 {
		t.Errorf("header rate with mode bits: rate %d, want 20", f[0].SamplingRate)
	}
}

func TestNetFlowV5LyingCount(t *testing.T) {
	d := newTestDecoder()
	b := make([]byte, nf5HeaderLen+2*nf5RecordLen)
	binary.BigEndian.PutUint16(b, 5)
	binary.BigEndian.PutUint16(b[2:], 30) // says 30, carries 2
	if flows := d.Decode(t0, exporterA, b, nil); len(flows) != 0 {
		t.Errorf("got %d flows from a datagram with a lying count", len(flows))
	}
	if got := dropsOf(t, d)[ReasonBadLength]; got != 1 {
		t.Errorf("bad_length = %d, want 1", got)
	}
}

func TestNetFlowV9Times(t *testing.T) {
	d := newTestDecoder()
	tmpl := append(append([]tf{}, basicV4...), tf{22, 4, 0}, tf{21, 4, 0})
	// Exported at uptime 100 s, 2024-01-01T00:10:00Z; the flow ran from
	// uptime 40 s to 90 s, so 00:09:00 to 00:09:50.
	m := newNFv9(100_000, 1704067800, 5, 0).template(256, tmpl...).
		data(256, append(basicV4Record(1, 2, 10, 1), rec(uint32(40_000), uint32(90_000))...))
	f := d.Decode(t0, exporterA, m.bytes(), nil)
	if len(f) != 1 {
		t.Fatalf("got %d flows", len(f))
	}
	wantStart := time.Date(2024, 1, 1, 0, 9, 0, 0, time.UTC).UnixMilli()
	if f[0].TimeStartMs != wantStart || f[0].TimeEndMs != wantStart+50_000 {
		t.Errorf("start %d end %d, want %d and %d", f[0].TimeStartMs, f[0].TimeEndMs, wantStart, wantStart+50_000)
	}
}

func TestSequenceLoss(t *testing.T) {
	d := newTestDecoder()
	tmpl := newNFv9(1, 1, 0, 0).template(256, basicV4...).bytes()
	d.Decode(t0, exporterA, tmpl, nil)
	for _, seq := range []uint32{1, 2, 5, 6} { // 3 and 4 lost
		d.Decode(t0, exporterA, newNFv9(1, 1, seq, 0).data(256, basicV4Record(1, 2, 3, 4)).bytes(), nil)
	}
	s := d.Stats()[0]
	if s.SequenceLost != 2 || s.SequenceExpected != 7 {
		t.Errorf("lost %d of %d, want 2 of 7", s.SequenceLost, s.SequenceExpected)
	}

	// IPFIX counts data records, not messages.
	d = newTestDecoder()
	send := func(seq uint32, n int) {
		m := newIPFIX(0, seq, 1).template(256, basicV4...)
		var recs [][]byte
		for i := 0; i < n; i++ {
			recs = append(recs, basicV4Record(1, 2, 3, 4))
		}
		d.Decode(t0, exporterA, m.data(256, recs...).bytes(), nil)
	}
	send(0, 3)
	send(3, 2)
	send(9, 1) // records 5..8 lost
	s = d.Stats()[0]
	if s.SequenceLost != 4 || s.SequenceExpected != 10 {
		t.Errorf("IPFIX: lost %d of %d, want 4 of 10", s.SequenceLost, s.SequenceExpected)
	}
}

func TestIPFIXBiflowBecomesTwoFlows(t *testing.T) {
	d := newTestDecoder()
	tmpl := append(append([]tf{}, basicV4...), tf{1, 8, penReverse}, tf{2, 8, penReverse})
	m := newIPFIX(0, 0, 1).template(256, tmpl...).
		data(256, append(basicV4Record(40000, 80, 500, 5), rec(uint64(9000), uint64(7))...))
	f := d.Decode(t0, exporterA, m.bytes(), nil)
	if len(f) != 2 {
		t.Fatalf("got %d flows, want forward and reverse", len(f))
	}
	fwd, rev := f[0], f[1]
	if fwd.Bytes != 500 || fwd.Packets != 5 || fwd.SrcPort != 40000 {
		t.Errorf("forward: %+v", fwd)
	}
	if rev.Bytes != 9000 || rev.Packets != 7 || rev.SrcPort != 80 || rev.DstPort != 40000 ||
		rev.SrcAddr != fwd.DstAddr || rev.DstAddr != fwd.SrcAddr {
		t.Errorf("reverse: %+v", rev)
	}
}

func TestAddressesRoundTripAndAreCopied(t *testing.T) {
	d := newTestDecoder()
	v6a := netip.MustParseAddr("2001:db8::1").AsSlice()
	v6b := netip.MustParseAddr("2001:db8:ffff::abcd").AsSlice()
	m := newIPFIX(0, 0, 1).
		template(256, basicV4...).
		template(257, tf{27, 16, 0}, tf{28, 16, 0}, tf{1, 4, 0}).
		data(256, basicV4Record(1, 2, 3, 4)).
		data(257, rec(v6a, v6b, uint32(99)))
	buf := m.bytes()
	f := d.Decode(t0, exporterA, buf, nil)
	for i := range buf {
		buf[i] = 0xee // the socket buffer is reused for the next datagram
	}
	if len(f) != 2 {
		t.Fatalf("got %d flows", len(f))
	}
	checks := []struct {
		got  flow.Addr
		want string
	}{
		{f[0].SrcAddr, "192.0.2.1"}, {f[0].DstAddr, "198.51.100.7"},
		{f[1].SrcAddr, "2001:db8::1"}, {f[1].DstAddr, "2001:db8:ffff::abcd"},
	}
	for _, c := range checks {
		if c.got.String() != c.want {
			t.Errorf("address %s, want %s", c.got, c.want)
		}
	}
	if f[0].IPVersion != 4 || f[1].IPVersion != 6 {
		t.Errorf("ip versions %d %d", f[0].IPVersion, f[1].IPVersion)
	}
}

func TestVariableLengthAndEnterpriseFields(t *testing.T) {
	d := newTestDecoder()
	// An enterprise field and a variable-length string between known fields.
	tmpl := []tf{{8, 4, 0}, {9999, 4, 12345}, {82, 0xffff, 0}, {12, 4, 0}, {1, 4, 0}}
	long := make([]byte, 300)
	m := newIPFIX(0, 0, 1).template(256, tmpl...).data(256,
		rec(ip4a, uint32(1), uint8(3), []byte("eth"), ip4b, uint32(10)),
		rec(ip4a, uint32(1), uint8(255), uint16(300), long, ip4b, uint32(20)))
	f := d.Decode(t0, exporterA, m.bytes(), nil)
	if len(f) != 2 || f[0].Bytes != 10 || f[1].Bytes != 20 || f[1].DstAddr.String() != "198.51.100.7" {
		t.Fatalf("variable-length decoding wrong: %+v", f)
	}
}

func TestMalformedInputIsCountedNotFatal(t *testing.T) {
	valid := newIPFIX(0, 0, 1).template(256, basicV4...).data(256, basicV4Record(1, 2, 3, 4)).bytes()
	tests := []struct {
		name   string
		b      []byte
		reason string
	}{
		{"empty", nil, ReasonTruncated},
		{"unknown version", []byte{0, 7, 0, 0, 0, 0}, ReasonUnknownVersion},
		{"ipfix length beyond datagram", valid[:len(valid)-5], ReasonTruncated},
		{"ipfix set length beyond message", func() []byte {
			b := append([]byte(nil), valid...)
			binary.BigEndian.PutUint16(b[18:], 4000)
			return b
		}(), ReasonMalformedSet},
		{"v9 header only", []byte{0, 9, 0, 1}, ReasonTruncated},
		{"sflow absurd sample count", func() []byte {
			b := rec(uint32(5), uint32(1), ip4a, uint32(0), uint32(1), uint32(0), uint32(0xffffffff))
			return b
		}(), ReasonTooManySamples},
		{"sflow bad agent address type", rec(uint32(5), uint32(9)), ReasonMalformedSample},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDecoder()
			d.Decode(t0, exporterA, tc.b, nil)
			if got := dropsOf(t, d)[tc.reason]; got != 1 {
				t.Errorf("%s = %d, want 1 (drops %v)", tc.reason, got, dropsOf(t, d))
			}
			// The stream goes on: a valid datagram right after decodes.
			if n := len(d.Decode(t0, exporterA, valid, nil)); n != 1 {
				t.Errorf("valid datagram after a bad one gave %d flows", n)
			}
		})
	}
}

func TestInitiatorResponderCountersAndObservationTime(t *testing.T) {
	d := newTestDecoder()
	// A firewall-style record (Cisco NSEL uses these IANA elements):
	// initiator/responder counters instead of delta counters, and one
	// observation time instead of start and end.
	tmpl := []tf{{8, 4, 0}, {12, 4, 0}, {7, 2, 0}, {11, 2, 0}, {4, 1, 0}, {231, 8, 0}, {232, 8, 0}, {298, 4, 0}, {299, 4, 0}, {323, 8, 0}}
	at := time.Date(2024, 1, 1, 0, 5, 0, 0, time.UTC).UnixMilli()
	m := newIPFIX(0, 0, 1).template(256, tmpl...).
		data(256, rec(ip4a, ip4b, uint16(50000), uint16(443), uint8(6), uint64(1200), uint64(48000), uint32(10), uint32(40), uint64(at)))
	f := d.Decode(t0, exporterA, m.bytes(), nil)
	if len(f) != 2 {
		t.Fatalf("got %d flows, want initiator and responder", len(f))
	}
	if f[0].Bytes != 1200 || f[0].Packets != 10 || f[0].DstPort != 443 || f[0].TimeStartMs != at || f[0].TimeEndMs != at {
		t.Errorf("initiator flow: %+v", f[0])
	}
	if f[1].Bytes != 48000 || f[1].Packets != 40 || f[1].SrcPort != 443 || f[1].DstAddr != f[0].SrcAddr {
		t.Errorf("responder flow: %+v", f[1])
	}
}

// RFC 7012: a delta counter is the traffic of the report, a total is
// cumulative since the flow began. A record with both is its deltas, in
// either order of the template and in either direction of a biflow. A
// record with totals only is the traffic since the flow's previous
// report: a flow reported several times is counted once.
func TestDeltaCountersOverTotals(t *testing.T) {
	key := []tf{{8, 4, 0}, {12, 4, 0}, {7, 2, 0}, {11, 2, 0}, {4, 1, 0}}
	keyRec := rec(ip4a, ip4b, uint16(40000), uint16(443), uint8(6))
	type counts struct{ bytes, packets, revBytes, revPackets uint64 }
	u := func(v ...uint64) []any {
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = x
		}
		return out
	}
	const R = penReverse
	tests := []struct {
		name    string
		fields  []tf
		reports [][]any  // one record per report, in order
		want    []counts // the flows stored for each report (rev 0: no reverse flow)
	}{
		{"deltas then totals", []tf{{1, 8, 0}, {2, 8, 0}, {85, 8, 0}, {86, 8, 0}},
			[][]any{u(1500, 3, 675000, 1350)}, []counts{{1500, 3, 0, 0}}},
		{"totals then deltas", []tf{{85, 8, 0}, {86, 8, 0}, {1, 8, 0}, {2, 8, 0}},
			[][]any{u(675000, 1350, 1500, 3)}, []counts{{1500, 3, 0, 0}}},
		{"deltas and totals, reported again: the deltas each time", []tf{{1, 8, 0}, {2, 8, 0}, {85, 8, 0}, {86, 8, 0}},
			[][]any{u(1500, 3, 1500, 3), u(600, 2, 2100, 5)}, []counts{{1500, 3, 0, 0}, {600, 2, 0, 0}}},
		{"totals only, first report: its total", []tf{{85, 8, 0}, {86, 8, 0}},
			[][]any{u(675000, 1350)}, []counts{{675000, 1350, 0, 0}}},
		{"totals only, reported 4 times: each report's part of 1000 packets", []tf{{85, 8, 0}, {86, 8, 0}},
			[][]any{u(40000, 100), u(120000, 300), u(240000, 600), u(400000, 1000)},
			[]counts{{40000, 100, 0, 0}, {80000, 200, 0, 0}, {120000, 300, 0, 0}, {160000, 400, 0, 0}}},
		{"totals only, no traffic since the last report", []tf{{85, 8, 0}, {86, 8, 0}},
			[][]any{u(9000, 9), u(9000, 9)}, []counts{{9000, 9, 0, 0}, {0, 0, 0, 0}}},
		{"totals going back: a new flow with the same key", []tf{{85, 8, 0}, {86, 8, 0}},
			[][]any{u(3000, 30), u(5000, 50), u(800, 8), u(1000, 10)},
			[]counts{{3000, 30, 0, 0}, {2000, 20, 0, 0}, {800, 8, 0, 0}, {200, 2, 0, 0}}},
		{"only packets going back is a new flow too", []tf{{85, 8, 0}, {86, 8, 0}},
			[][]any{u(3000, 30), u(3100, 2)}, []counts{{3000, 30, 0, 0}, {3100, 2, 0, 0}}},
		{"post-NAT deltas over totals", []tf{{85, 8, 0}, {86, 8, 0}, {23, 8, 0}, {24, 8, 0}},
			[][]any{u(675000, 1350, 1400, 2)}, []counts{{1400, 2, 0, 0}}},
		{"deltas over post-NAT deltas", []tf{{23, 8, 0}, {24, 8, 0}, {1, 8, 0}, {2, 8, 0}},
			[][]any{u(1400, 2, 1500, 3)}, []counts{{1500, 3, 0, 0}}},
		{"post-NAT deltas of 0 (not counted): totals, turned into deltas", []tf{{23, 8, 0}, {24, 8, 0}, {85, 8, 0}, {86, 8, 0}},
			[][]any{u(0, 0, 5000, 5), u(0, 0, 7000, 7)}, []counts{{5000, 5, 0, 0}, {2000, 2, 0, 0}}},
		{"post-NAT totals only", []tf{{171, 8, 0}, {172, 8, 0}},
			[][]any{u(5000, 5), u(7500, 8)}, []counts{{5000, 5, 0, 0}, {2500, 3, 0, 0}}},
		{"totals over post-NAT totals", []tf{{171, 8, 0}, {172, 8, 0}, {85, 8, 0}, {86, 8, 0}},
			[][]any{u(4900, 5, 5000, 5), u(7400, 8, 7500, 8)}, []counts{{5000, 5, 0, 0}, {2500, 3, 0, 0}}},
		{"delta packets, total bytes: only the bytes are turned", []tf{{2, 8, 0}, {85, 8, 0}},
			[][]any{u(3, 3000), u(2, 5000)}, []counts{{3000, 3, 0, 0}, {2000, 2, 0, 0}}},
		{"initiator/responder over totals", []tf{{85, 8, 0}, {86, 8, 0}, {231, 8, 0}, {232, 8, 0}, {298, 4, 0}, {299, 4, 0}},
			[][]any{append(u(99000, 990, 1200, 48000), uint32(10), uint32(40))}, []counts{{1200, 10, 48000, 40}}},
		{"layer 2 octets when the record has no layer 3 counter (non-IP traffic)", []tf{{352, 8, 0}, {2, 8, 0}},
			[][]any{u(1514, 1)}, []counts{{1514, 1, 0, 0}}},
		{"layer 3 octets over layer 2", []tf{{352, 8, 0}, {1, 8, 0}, {2, 8, 0}},
			[][]any{u(1514, 1500, 1)}, []counts{{1500, 1, 0, 0}}},
		{"layer 3 totals over layer 2 deltas", []tf{{85, 8, 0}, {352, 8, 0}, {2, 8, 0}},
			[][]any{u(3000, 1514, 1), u(4500, 1514, 1)}, []counts{{3000, 1, 0, 0}, {1500, 1, 0, 0}}},
		{"layer 2 totals only, turned into deltas", []tf{{353, 8, 0}, {86, 8, 0}},
			[][]any{u(1000, 10), u(1600, 16)}, []counts{{1000, 10, 0, 0}, {600, 6, 0, 0}}},
		{"reverse: layer 2 octets", []tf{{1, 8, 0}, {2, 8, 0}, {352, 8, R}, {2, 8, R}},
			[][]any{u(1500, 3, 640, 10)}, []counts{{1500, 3, 640, 10}}},
		{"reverse: totals then deltas", []tf{{1, 8, 0}, {2, 8, 0}, {85, 8, R}, {86, 8, R}, {1, 8, R}, {2, 8, R}},
			[][]any{u(1500, 3, 99000, 990, 900, 9)}, []counts{{1500, 3, 900, 9}}},
		{"reverse: deltas then totals", []tf{{1, 8, 0}, {2, 8, 0}, {1, 8, R}, {2, 8, R}, {85, 8, R}, {86, 8, R}},
			[][]any{u(1500, 3, 900, 9, 99000, 990)}, []counts{{1500, 3, 900, 9}}},
		{"reverse: post-NAT deltas over totals", []tf{{1, 8, 0}, {2, 8, 0}, {85, 8, R}, {86, 8, R}, {23, 8, R}, {24, 8, R}},
			[][]any{u(1500, 3, 99000, 990, 800, 8)}, []counts{{1500, 3, 800, 8}}},
		{"reverse: totals only, reported 3 times", []tf{{1, 8, 0}, {2, 8, 0}, {85, 8, R}, {86, 8, R}},
			[][]any{u(1500, 3, 99000, 990), u(500, 1, 150000, 1500), u(0, 0, 160000, 1600)},
			[]counts{{1500, 3, 99000, 990}, {500, 1, 51000, 510}, {0, 0, 10000, 100}}},
		{"reverse: post-NAT totals only", []tf{{1, 8, 0}, {2, 8, 0}, {171, 8, R}, {172, 8, R}},
			[][]any{u(1500, 3, 8000, 8), u(1500, 3, 9000, 9)}, []counts{{1500, 3, 8000, 8}, {1500, 3, 1000, 1}}},
		{"biflow of totals only, both sides turned", []tf{{85, 8, 0}, {86, 8, 0}, {85, 8, R}, {86, 8, R}},
			[][]any{u(1000, 10, 4000, 20), u(1600, 16, 9000, 45), u(1600, 16, 9500, 47)},
			[]counts{{1000, 10, 4000, 20}, {600, 6, 5000, 25}, {0, 0, 500, 2}}},
		{"biflow of totals, reverse going back alone: a new flow", []tf{{85, 8, 0}, {86, 8, 0}, {85, 8, R}, {86, 8, R}},
			[][]any{u(1000, 10, 4000, 20), u(1200, 12, 300, 3)},
			[]counts{{1000, 10, 4000, 20}, {1200, 12, 300, 3}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDecoder()
			tmpl := append(append([]tf{}, key...), tc.fields...)
			for i, values := range tc.reports {
				at := t0.Add(time.Duration(i) * time.Minute)
				m := newIPFIX(uint32(at.Unix()), 0, 1).template(256, tmpl...).
					data(256, append(append([]byte{}, keyRec...), rec(values...)...))
				f := d.Decode(at, exporterA, m.bytes(), nil)
				w := tc.want[i]
				// The forward side is the flow from ip4a; a report with
				// traffic in reverse only is one flow, the reverse one.
				var got counts
				for _, fl := range f {
					if fl.SrcAddr == flow.AddrFromSlice(ip4a) {
						got.bytes, got.packets = fl.Bytes, fl.Packets
					} else {
						got.revBytes, got.revPackets = fl.Bytes, fl.Packets
					}
				}
				if len(f) == 0 || len(f) > 2 {
					t.Fatalf("report %d: %d flows", i+1, len(f))
				}
				if got != w {
					t.Errorf("report %d: got %+v, want %+v", i+1, got, w)
				}
			}
		})
	}
}

// v5Datagram is a NetFlow v5 datagram of count flows with sequence seq.
func v5Datagram(seq uint32, count int) []byte {
	b := make([]byte, nf5HeaderLen+count*nf5RecordLen)
	binary.BigEndian.PutUint16(b[0:], 5)
	binary.BigEndian.PutUint16(b[2:], uint16(count))
	binary.BigEndian.PutUint32(b[16:], seq)
	return b
}

// Each stream's numbering is learned from the messages that tell the
// numberings apart, and loss is reported only as the learned numbering
// says: a v5 exporter numbering its datagrams by the index of their
// last flow shows no loss, an IPFIX exporter that leaves options
// records out of its count shows none after its first options record,
// and real loss is counted exactly in each style.
func TestSequenceNumberingStyles(t *testing.T) {
	counts := []int{3, 3, 5, 2, 7, 1, 4}
	tests := []struct {
		name string
		seq  func(before, count uint32) uint32 // the style: the number of a datagram
		skip int                               // a datagram lost at this index (0: none)
	}{
		{"v5 flows before", func(before, _ uint32) uint32 { return before }, 0},
		{"v5 index of the last flow", func(before, count uint32) uint32 { return before + count - 1 }, 0},
		{"v5 flows including", func(before, count uint32) uint32 { return before + count }, 0},
		{"v5 flows before, one lost", func(before, _ uint32) uint32 { return before }, 4},
		{"v5 index of the last flow, one lost", func(before, count uint32) uint32 { return before + count - 1 }, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDecoder()
			before, lost := uint32(1000), uint64(0)
			for i, n := range counts {
				if i == tc.skip && tc.skip > 0 {
					lost += uint64(n)
				} else {
					d.Decode(t0, exporterA, v5Datagram(tc.seq(before, uint32(n)), n), nil)
				}
				before += uint32(n)
			}
			s := d.Stats()[0]
			if s.SequenceLost != lost {
				t.Errorf("lost %d, want %d", s.SequenceLost, lost)
			}
		})
	}

	// IPFIX: the first messages have no options record, so "options
	// counted" and "not counted" agree on them; the first options record
	// tells them apart.
	for _, optionsCounted := range []bool{true, false} {
		d := newTestDecoder()
		seq := uint32(0)
		send := func(records, options int) {
			m := newIPFIX(0, seq, 1).template(256, basicV4...).optionsTemplate(300, []tf{{149, 4, 0}}, []tf{{34, 4, 0}})
			var recs [][]byte
			for range records {
				recs = append(recs, basicV4Record(1, 2, 3, 4))
			}
			m = m.data(256, recs...)
			for range options {
				m = m.data(300, rec(uint32(1), uint32(100)))
			}
			d.Decode(t0, exporterA, m.bytes(), nil)
			seq += uint32(records)
			if optionsCounted {
				seq += uint32(options)
			}
		}
		send(3, 0)
		send(3, 0)
		send(2, 1)
		send(4, 1)
		send(1, 0)
		if s := d.Stats()[0]; s.SequenceLost != 0 {
			t.Errorf("IPFIX, options records counted %v: lost %d, want 0", optionsCounted, s.SequenceLost)
		}
	}
}
