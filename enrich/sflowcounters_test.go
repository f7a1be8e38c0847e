package enrich

import (
	"math"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// unitEnricher is an Enricher whose sFlow rows stay queued (no flusher
// runs without Start), as if it had a database.
func unitEnricher(t *testing.T, mut func(*Config)) *Enricher {
	t.Helper()
	cfg := DefaultConfig()
	cfg.OUIDir = ""
	cfg.Exporters = []ExporterConfig{{Match: "192.0.2.0/24", Tenant: "acme"}}
	if mut != nil {
		mut(&cfg)
	}
	e, err := New(cfg, Deps{Next: &sinkFunc{}})
	if err != nil {
		t.Fatal(err)
	}
	e.w = &writer{}
	return e
}

var sfExporter = flow.AddrFromNetip(mustAddr("192.0.2.9"))

// The rows of one interface's counter samples, as sflowcounters.go says:
// the interval is the agent's uptime (here 20 s while the samples arrive
// 20.5 s and 19.5 s apart), the receive time when the uptime is no
// clock; duplicates make no row; the sequence or the uptime going back
// is a restart, and a counter going back beyond what the line allows a
// reset.
func TestSFlowCounterRows(t *testing.T) {
	const gbit = 1_000_000_000
	type step struct {
		name         string
		recvMs       int64
		uptime, seq  uint32
		in, out      uint64
		outcome      string
		valid, reset bool
		seconds      float64
		inBps        uint64
		inUtil       float32
	}
	steps := []step{
		{name: "first sample", recvMs: 1_000_000, uptime: 10_000, seq: 1, in: 0, out: 0, outcome: sampleQueued},
		{name: "20 s of uptime, 20.5 s of arrival", recvMs: 1_020_500, uptime: 30_000, seq: 2, in: 2_500_000_000, outcome: sampleQueued,
			valid: true, seconds: 20, inBps: gbit, inUtil: 100},
		{name: "duplicate", recvMs: 1_020_600, uptime: 30_000, seq: 2, in: 2_500_000_000, outcome: sampleDuplicate},
		{name: "19.5 s of arrival", recvMs: 1_040_000, uptime: 50_000, seq: 3, in: 3_750_000_000, outcome: sampleQueued,
			valid: true, seconds: 20, inBps: gbit / 2, inUtil: 50},
		{name: "uptime stuck: receive time", recvMs: 1_050_000, uptime: 50_000, seq: 4, in: 4_375_000_000, outcome: sampleQueued,
			valid: true, seconds: 10, inBps: gbit / 2, inUtil: 50},
		{name: "uptime back: agent restart", recvMs: 1_060_000, uptime: 2_000, seq: 5, in: 100, outcome: sampleQueued, reset: true},
		{name: "after the restart", recvMs: 1_080_000, uptime: 22_000, seq: 6, in: 100 + 250_000_000, outcome: sampleQueued,
			valid: true, seconds: 20, inBps: gbit / 10, inUtil: 10},
		{name: "sequence back: source restart", recvMs: 1_100_000, uptime: 42_000, seq: 1, in: 300_000_000, outcome: sampleQueued, reset: true},
		{name: "counter back (cleared)", recvMs: 1_120_000, uptime: 62_000, seq: 2, in: 5, outcome: sampleQueued, reset: true, seconds: 20},
	}
	e := unitEnricher(t, nil)
	reg := e.m
	for _, s := range steps {
		before := len(e.sflow.pending)
		e.WriteCounters([]flow.CounterSample{{ExporterAddr: sfExporter, TimeReceivedMs: s.recvMs, AgentUptimeMs: s.uptime,
			Sequence: s.seq, IfIndex: 7, SpeedBps: gbit, InOctets: s.in, OutOctets: s.out}})
		if s.outcome != sampleQueued {
			if len(e.sflow.pending) != before {
				t.Errorf("%s: a row was queued", s.name)
			}
			continue
		}
		if len(e.sflow.pending) != before+1 {
			t.Fatalf("%s: no row queued", s.name)
		}
		r := e.sflow.pending[before]
		if r.tenant != "acme" || r.exporter != sfExporter || r.source != sourceSFlow || r.ifIndex != 7 || r.cur.at != s.recvMs || r.cur.in != s.in || r.speedMbps != 1000 {
			t.Errorf("%s: row %+v", s.name, r)
		}
		if r.rate.valid != s.valid || r.rate.reset != s.reset || r.rate.inBps != s.inBps || math.Abs(float64(r.rate.inUtil-s.inUtil)) > 1e-4 || r.rate.seconds != s.seconds {
			t.Errorf("%s: rate %+v, want valid %v reset %v %gs %d bit/s %g%%", s.name, r.rate, s.valid, s.reset, s.seconds, s.inBps, s.inUtil)
		}
	}
	if v := testutil.ToFloat64(reg.sflowSamples[sampleDuplicate]); v != 1 {
		t.Errorf("duplicates counted %g, want 1", v)
	}
	if v := testutil.ToFloat64(reg.sflowSamples[sampleQueued]); v != float64(len(steps)-1) {
		t.Errorf("queued counted %g, want %d", v, len(steps)-1)
	}
}

// SNMP's speed wins over the counter record's; the record's serves
// interfaces SNMP does not know (or knows without a speed).
func TestSFlowCounterSpeed(t *testing.T) {
	e := unitEnricher(t, nil)
	x := e.exporterFor(sfExporter)
	x.ifaces.Store(&map[uint32]*Interface{1: {Index: 1, SpeedMbps: 10_000}, 2: {Index: 2}})
	var samples []flow.CounterSample
	for idx := uint32(1); idx <= 3; idx++ {
		samples = append(samples, flow.CounterSample{ExporterAddr: sfExporter, TimeReceivedMs: 1000, Sequence: 1, IfIndex: idx, SpeedBps: 1_000_000_000})
	}
	e.WriteCounters(samples)
	got := map[uint32]uint64{}
	for _, r := range e.sflow.pending {
		got[r.ifIndex] = r.speedMbps
	}
	if want := map[uint32]uint64{1: 10_000, 2: 1000, 3: 1000}; len(got) != 3 || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Errorf("speeds %v, want %v", got, want)
	}
}

// The previous samples are bounded: a new interface beyond
// max_interfaces is dropped (counted) unless an interface has been idle
// for idle_timeout, which is then forgotten.
func TestSFlowCounterBound(t *testing.T) {
	e := unitEnricher(t, func(c *Config) {
		c.SFlowCounters.MaxInterfaces = 2
		c.SFlowCounters.IdleTimeout = time.Minute
	})
	at := func(ms int64, idx uint32) {
		e.WriteCounters([]flow.CounterSample{{ExporterAddr: sfExporter, TimeReceivedMs: ms, Sequence: uint32(ms / 1000), IfIndex: idx}})
	}
	at(0, 1)
	at(30_000, 2)
	at(40_000, 3) // full, none idle
	if v := testutil.ToFloat64(e.m.sflowSamples[sampleInterfaceLimit]); v != 1 || len(e.sflow.prev) != 2 {
		t.Fatalf("interface_limit %g, %d kept; want 1 and 2", v, len(e.sflow.prev))
	}
	at(70_000, 3) // interface 1 idle since 0: forgotten
	if _, ok := e.sflow.prev[sflowKey{sfExporter, 1}]; ok || len(e.sflow.prev) != 2 {
		t.Errorf("after eviction: %v", e.sflow.prev)
	}
	// Interface 2 (30 s ago) kept its previous sample: its next has a rate.
	at(90_000, 2)
	if r := e.sflow.pending[len(e.sflow.pending)-1]; r.ifIndex != 2 || !r.rate.valid {
		t.Errorf("interface 2 after the eviction: %+v", r)
	}
}

// Rows wait in a bounded queue while the database is slow.
func TestSFlowCounterBacklog(t *testing.T) {
	e := unitEnricher(t, func(c *Config) { c.SFlowCounters.MaxPendingRows = batchRows })
	for i := range batchRows + 3 {
		e.WriteCounters([]flow.CounterSample{{ExporterAddr: sfExporter, TimeReceivedMs: int64(i) * 1000, Sequence: uint32(i + 1), IfIndex: 1}})
	}
	if len(e.sflow.pending) != batchRows || testutil.ToFloat64(e.m.sflowSamples[sampleBacklog]) != 3 {
		t.Errorf("%d rows queued, %g backlog drops; want %d and 3", len(e.sflow.pending), testutil.ToFloat64(e.m.sflowSamples[sampleBacklog]), batchRows)
	}
	if len(e.sflow.take()) != batchRows || len(e.sflow.pending) != 0 {
		t.Error("take did not empty the queue")
	}
}
