package collector

import (
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// totalsTemplate is a 5-tuple with an absolute start and end
// (flowStart/EndMilliseconds) and total counters only.
var totalsTemplate = []tf{{8, 4, 0}, {12, 4, 0}, {7, 2, 0}, {11, 2, 0}, {4, 1, 0}, {152, 8, 0}, {153, 8, 0}, {85, 8, 0}, {86, 8, 0}}

func totalsRecord(sport uint16, start, end time.Time, bytes, packets uint64) []byte {
	return rec(ip4a, ip4b, sport, uint16(443), uint8(6), uint64(start.UnixMilli()), uint64(end.UnixMilli()), bytes, packets)
}

// sendTotals decodes one IPFIX message exported (and received) at at,
// carrying the given totals records, and returns bytes and packets per
// record.
func sendTotals(t *testing.T, d *Decoder, at time.Time, domain uint32, records ...[]byte) [][2]uint64 {
	t.Helper()
	m := newIPFIX(uint32(at.Unix()), 0, domain).template(256, totalsTemplate...).data(256, records...)
	var out [][2]uint64
	for _, f := range d.Decode(at, exporterA, m.bytes(), nil) {
		out = append(out, [2]uint64{f.Bytes, f.Packets})
	}
	if len(out) != len(records) {
		t.Fatalf("%d flows from %d records", len(out), len(records))
	}
	return out
}

// listening returns a decoder that has heard from exporterA at t0 (a
// template, domains 1 and 2): flows begun since are counted whole.
func listening(t *testing.T, cfg DecoderConfig, m *metrics) *Decoder {
	t.Helper()
	d := NewDecoder(cfg, m)
	d.Decode(t0, exporterA, newIPFIX(uint32(t0.Unix()), 0, 1).template(256, totalsTemplate...).bytes(), nil)
	return d
}

func exporterOf(t *testing.T, d *Decoder) *exporter {
	t.Helper()
	e := d.exporters[exporterA.Addr()]
	if e == nil {
		t.Fatal("no exporter")
	}
	return e
}

// The start time is part of a flow's key: a flow that reuses the 5-tuple
// of one still remembered is another flow, whose first report is its
// total, and each flow's later reports are its own deltas.
func TestTotalsFlowStartTellsFlowsApart(t *testing.T) {
	d := listening(t, DecoderConfig{}, nil)
	first, second := t0.Add(time.Second), t0.Add(50*time.Second)
	got := sendTotals(t, d, t0.Add(time.Minute), 1,
		totalsRecord(40000, first, t0.Add(59*time.Second), 5000, 50),
		totalsRecord(40000, second, t0.Add(59*time.Second), 700, 7))
	want := [][2]uint64{{5000, 50}, {700, 7}}
	if got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("first reports %v, want %v", got, want)
	}
	got = sendTotals(t, d, t0.Add(2*time.Minute), 1,
		totalsRecord(40000, second, t0.Add(119*time.Second), 900, 9),
		totalsRecord(40000, first, t0.Add(119*time.Second), 8000, 80))
	want = [][2]uint64{{200, 2}, {3000, 30}}
	if got[0] != want[0] || got[1] != want[1] {
		t.Errorf("second reports %v, want %v", got, want)
	}
}

// A flow that was already running when a restarted flowhouse first heard
// again from an exporter an earlier run heard (the state file says so) is
// counted from then on, at its average rate: the earlier run may have
// stored its past. A flow that began since is counted whole; and so is
// every flow of an exporter heard for the first time, whose past nobody
// stored (a first start, a capture replayed).
func TestTotalsFlowsOlderThanTheCollector(t *testing.T) {
	for _, resumed := range []bool{true, false} {
		d := newTestDecoder()
		// The exporter's first datagram: a template only.
		d.Decode(t0, exporterA, newIPFIX(uint32(t0.Unix()), 0, 1).template(256, totalsTemplate...).bytes(), nil)
		exporterOf(t, d).resumed = resumed
		at := t0.Add(30 * time.Second)
		got := sendTotals(t, d, at, 1,
			// 90 s old, 30 s of it since the exporter's first datagram.
			totalsRecord(40000, t0.Add(-60*time.Second), at, 9000, 900),
			// Begun after it.
			totalsRecord(40001, t0.Add(10*time.Second), at, 2000, 20),
			// Ended before it: all of it before.
			totalsRecord(40002, t0.Add(-20*time.Second), t0.Add(-time.Second), 500, 5))
		want := [][2]uint64{{3000, 300}, {2000, 20}, {0, 0}}
		if !resumed {
			want = [][2]uint64{{9000, 900}, {2000, 20}, {500, 5}}
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("resumed %v, record %d: %v, want %v", resumed, i, got[i], want[i])
			}
		}
		if resumed {
			checkNextReport(t, d, at)
		}
	}
}

func checkNextReport(t *testing.T, d *Decoder, at time.Time) {
	t.Helper()
	// Its next report is the traffic since this one, wherever it began.
	at = at.Add(time.Minute)
	got := sendTotals(t, d, at, 1, totalsRecord(40000, t0.Add(-60*time.Second), at, 15000, 1500))
	if got[0] != [2]uint64{6000, 600} {
		t.Errorf("next report: %v, want [6000 600]", got[0])
	}
}

// NetFlow v9 has totals too (IN_PERMANENT_BYTES/PKTS, 85/86), its start
// in sysUpTime; the export time's missing fraction does not split a flow.
func TestTotalsNetFlowV9SysUptime(t *testing.T) {
	d := newTestDecoder()
	tmpl := []tf{{8, 4, 0}, {12, 4, 0}, {7, 2, 0}, {11, 2, 0}, {4, 1, 0}, {22, 4, 0}, {21, 4, 0}, {85, 8, 0}, {86, 8, 0}}
	// The exporter's first datagram, at uptime 10 s; the flow starts at 50 s.
	d.Decode(t0, exporterA, newNFv9(10_000, uint32(t0.Unix()), 0, 1).template(256, tmpl...).bytes(), nil)
	var got []uint64
	for i, r := range []struct {
		uptime, end uint32
		bytes       uint64
	}{{70_000, 69_500, 1000}, {130_700, 130_100, 2500}, {190_300, 189_900, 2600}} {
		at := t0.Add(time.Duration(i+1) * time.Minute)
		m := newNFv9(r.uptime, uint32(at.Unix()), uint32(i), 1).template(256, tmpl...).
			data(256, rec(ip4a, ip4b, uint16(40000), uint16(443), uint8(6), uint32(50_000), r.end, r.bytes, uint64(r.bytes/100)))
		f := d.Decode(at, exporterA, m.bytes(), nil)
		if len(f) != 1 {
			t.Fatalf("report %d: %d flows", i+1, len(f))
		}
		got = append(got, f[0].Bytes)
	}
	if want := []uint64{1000, 1500, 100}; got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("bytes per report %v, want %v", got, want)
	}
}

// Memory is bounded per exporter: a flood of unique keys evicts (counted)
// rather than grows, and flows not reported for the idle timeout are
// forgotten (counted), their next report then counting as a first.
func TestTotalsMemoryBound(t *testing.T) {
	reg := prometheus.NewRegistry()
	d := listening(t, DecoderConfig{MaxTotalsPerExporter: 8, TotalsIdleTimeout: 10 * time.Minute}, newMetrics(reg))
	at := t0.Add(time.Second)
	for p := range 100 {
		sendTotals(t, d, at, 1, totalsRecord(uint16(1000+p), t0.Add(time.Second), at, 100, 1))
	}
	e := exporterOf(t, d)
	if n := len(e.totals.entries); n != 8 {
		t.Errorf("%d flows remembered, want the bound, 8", n)
	}
	if e.totals.evictions != 92 {
		t.Errorf("evictions %d, want 92", e.totals.evictions)
	}
	if v := testutil.ToFloat64(d.metrics.totalsForgot.WithLabelValues("127.0.0.10", totalsForgottenCapacity)); v != 92 {
		t.Errorf("capacity metric %v, want 92", v)
	}

	// One flow reported at the idle timeout's edge stays; the rest go.
	d = listening(t, DecoderConfig{MaxTotalsPerExporter: 8, TotalsIdleTimeout: 10 * time.Minute}, newMetrics(prometheus.NewRegistry()))
	start := t0.Add(time.Second)
	sendTotals(t, d, t0.Add(time.Minute), 1,
		totalsRecord(1, start, t0.Add(time.Minute), 100, 1),
		totalsRecord(2, start, t0.Add(time.Minute), 100, 1),
		totalsRecord(3, start, t0.Add(time.Minute), 100, 1))
	sendTotals(t, d, t0.Add(6*time.Minute), 1, totalsRecord(1, start, t0.Add(6*time.Minute), 300, 3))
	got := sendTotals(t, d, t0.Add(12*time.Minute), 1,
		totalsRecord(1, start, t0.Add(12*time.Minute), 400, 4),
		totalsRecord(2, start, t0.Add(12*time.Minute), 700, 7))
	e = exporterOf(t, d)
	if e.totals.expirations != 2 || len(e.totals.entries) != 2 {
		t.Errorf("expirations %d, entries %d; want 2 and 2", e.totals.expirations, len(e.totals.entries))
	}
	if got[0] != [2]uint64{100, 1} || got[1] != [2]uint64{700, 7} {
		t.Errorf("after expiry: %v, want [[100 1] [700 7]]", got)
	}
	if v := testutil.ToFloat64(d.metrics.totalsForgot.WithLabelValues("127.0.0.10", totalsForgottenIdle)); v != 2 {
		t.Errorf("idle metric %v, want 2", v)
	}
}

// Observation domains are flows of their own, as are exporters; records
// with delta counters never make a table, so they pay nothing for it.
func TestTotalsPerDomainAndOnlyForTotals(t *testing.T) {
	d := listening(t, DecoderConfig{}, nil)
	at := t0.Add(time.Minute)
	r := totalsRecord(40000, t0.Add(time.Second), at, 1000, 10)
	sendTotals(t, d, at, 1, r)
	if got := sendTotals(t, d, at, 2, r); got[0] != [2]uint64{1000, 10} {
		t.Errorf("same key in another domain: %v, want its total", got[0])
	}

	d = newTestDecoder()
	m := newIPFIX(uint32(t0.Unix()), 0, 1).template(256, basicV4...).data(256, basicV4Record(1, 2, 300, 3))
	d.Decode(t0, exporterA, m.bytes(), nil)
	if e := exporterOf(t, d); e.totals != nil {
		t.Error("a table for an exporter that sends deltas")
	}
}

// BenchmarkDecodeTotals decodes messages of 30 totals-only records of
// flows it already knows, as an exporter reporting long flows sends them:
// the cost of turning totals into deltas, per flow.
func BenchmarkDecodeTotals(b *testing.B) {
	d := NewDecoder(DecoderConfig{}, nil)
	const n = 30
	msgs := make([][]byte, 64)
	for i := range msgs {
		var recs [][]byte
		for p := range n {
			recs = append(recs, totalsRecord(uint16(1000+p), t0.Add(time.Second), t0.Add(time.Minute), uint64(i+1)*1500, uint64(i+1)))
		}
		msgs[i] = newIPFIX(uint32(t0.Unix()), 0, 1).template(256, totalsTemplate...).data(256, recs...).bytes()
	}
	out := make([]flow.Flow, 0, 64)
	for _, m := range msgs {
		out = d.Decode(t0, exporterA, m, out)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out = d.Decode(t0, exporterA, msgs[i%len(msgs)], out)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/flow")
}
