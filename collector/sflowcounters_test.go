package collector

import (
	"net/netip"
	"testing"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/flowtest"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var agent = netip.MustParseAddr("192.0.2.9")

// Every field of if_counters has its own value, so a field read at the
// wrong offset (sflow_version_5.txt: ifSpeed and the octet counters are
// hypers) shows.
func distinctIfCounters(ifIndex uint32, speed, in, out uint64) flowtest.IfCounters {
	return flowtest.IfCounters{
		IfIndex: ifIndex, IfType: 6, SpeedBps: speed, Direction: 1, Status: 3,
		InOctets: in, InUcast: 101, InMulticast: 102, InBroadcast: 103, InDiscards: 104, InErrors: 105, InUnknownProtos: 106,
		OutOctets: out, OutUcast: 201, OutMulticast: 202, OutBroadcast: 203, OutDiscards: 204, OutErrors: 205, PromiscuousMode: 1,
	}
}

// Generic interface counters are handed on with the sample's Ethernet
// counters joined to them (counted alone when the sample has no generic
// record to say which interface they are), other formats skipped and
// counted by format, and a record too short
// for its format counted malformed while the records and samples after
// it are still decoded.
func TestSFlowCounterRecords(t *testing.T) {
	m := newMetrics(nil)
	d := NewDecoder(DecoderConfig{}, m)
	dg := flowtest.SFlowDatagram(agent, 7, 500, 86_400_000,
		flowtest.CounterSample(10, 3,
			distinctIfCounters(3, 10_000_000_000, 1<<40+5, 1<<41+7).Record(),
			flowtest.EthernetCounters{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}.Record(),
			flowtest.CounterRecord(1001, make([]byte, 28)),   // processor: skipped
			flowtest.CounterRecord(5<<12|1, make([]byte, 8)), // another enterprise's: "other"
		),
		flowtest.ExpandedCounterSample(11, 0, 70_000,
			flowtest.CounterRecord(1, make([]byte, 40)), // if_counters cut short
			distinctIfCounters(70_000, 0, 99, 0).Record(),
		),
		flowtest.CounterSample(12, 4,
			flowtest.CounterRecord(2, make([]byte, 20)), // ethernet_counters cut short
			distinctIfCounters(4, 1_000_000_000, 0, 12345).Record(),
		),
		flowtest.CounterSample(14, 5, flowtest.EthernetCounters{9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9}.Record()),
	)
	if flows := d.Decode(t0, exporterA, dg, nil); len(flows) != 0 {
		t.Fatalf("%d flows from counter samples", len(flows))
	}
	base := flow.CounterSample{ExporterAddr: flow.AddrFromNetip(exporterA.Addr()), TimeReceivedMs: t0.UnixMilli(), AgentUptimeMs: 86_400_000, ObservationDomain: 7,
		InPackets: 101 + 102 + 103, InDiscards: 104, InErrors: 105, InUnknownProtos: 106,
		OutPackets: 201 + 202 + 203, OutDiscards: 204, OutErrors: 205}
	want := []flow.CounterSample{base, base, base}
	want[0].Sequence, want[0].IfIndex, want[0].SpeedBps, want[0].InOctets, want[0].OutOctets = 10, 3, 10_000_000_000, 1<<40+5, 1<<41+7
	want[0].Ethernet, want[0].HasEthernet = flow.EthernetCounters{AlignmentErrors: 1, FCSErrors: 2,
		SingleCollisionFrames: 3, MultipleCollisionFrames: 4, SQETestErrors: 5, DeferredTransmissions: 6, LateCollisions: 7,
		ExcessiveCollisions: 8, InternalMacTransmitErrors: 9, CarrierSenseErrors: 10, FrameTooLongs: 11, InternalMacReceiveErrors: 12, Symbol: 13}, true
	want[1].Sequence, want[1].IfIndex, want[1].InOctets = 11, 70_000, 99
	want[2].Sequence, want[2].IfIndex, want[2].SpeedBps, want[2].OutOctets = 12, 4, 1_000_000_000, 12345
	got := d.Counters()
	if len(got) != len(want) {
		t.Fatalf("%d counter samples, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("counter sample %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	s := d.Stats()[0]
	if s.CounterRecords != 3 || s.Drops[ReasonMalformedSample] != 2 || len(s.Drops) != 1 {
		t.Errorf("stats: %d counter records, drops %v; want 3 and 2 malformed_sample", s.CounterRecords, s.Drops)
	}
	for _, c := range []struct {
		format, outcome string
		want            float64
	}{
		{"0:1", "kept", 3}, {"0:1", "malformed", 1},
		{"0:2", "kept", 1}, {"0:2", "counted", 1}, {"0:2", "malformed", 1},
		{"0:1001", "skipped", 1}, {"other", "skipped", 1},
		{"0:5", "skipped", 0},
	} {
		if v := testutil.ToFloat64(m.counterRecords.WithLabelValues(c.format, c.outcome)); v != c.want {
			t.Errorf("counter records %s %s = %g, want %g", c.format, c.outcome, v, c.want)
		}
	}
	// The next datagram has its own samples only.
	d.Decode(t0, exporterA, flowtest.SFlowDatagram(agent, 7, 501, 86_420_000, flowtest.CounterSample(13, 3, distinctIfCounters(3, 0, 1, 1).Record())), nil)
	if got := d.Counters(); len(got) != 1 || got[0].Sequence != 13 || got[0].AgentUptimeMs != 86_420_000 {
		t.Errorf("second datagram: %+v", got)
	}
}

// A counter sample whose own framing is broken is malformed as a whole;
// the samples after it (framed by the datagram) are still decoded.
func TestSFlowBrokenCounterSample(t *testing.T) {
	for _, c := range []struct {
		name   string
		broken []byte
	}{
		// format 2, length 12: sequence, source ID, 2^32-1 records
		{"absurd record count", rec(uint32(2), uint32(12), uint32(1), uint32(3), uint32(0xffffffff))},
		{"record length past the sample", func() []byte {
			b := flowtest.CounterSample(1, 3, distinctIfCounters(3, 0, 0, 0).Record())
			b = b[:len(b)-8]
			putLen(b) // the sample's length is what it holds: the datagram's framing stays intact
			return b
		}()},
	} {
		t.Run(c.name, func(t *testing.T) {
			broken := c.broken
			d := newTestDecoder()
			d.Decode(t0, exporterA, flowtest.SFlowDatagram(agent, 0, 1, 1000, broken,
				flowtest.CounterSample(2, 5, distinctIfCounters(5, 0, 42, 0).Record())), nil)
			if got := d.Counters(); len(got) != 1 || got[0].IfIndex != 5 || got[0].InOctets != 42 {
				t.Errorf("samples after the broken one: %+v", got)
			}
			if n := dropsOf(t, d)[ReasonMalformedSample]; n != 1 {
				t.Errorf("malformed_sample = %d, want 1", n)
			}
		})
	}
}

// putLen sets a sample's length field to the bytes after its header.
func putLen(sample []byte) {
	n := uint32(len(sample) - 8)
	sample[4], sample[5], sample[6], sample[7] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}

// A datagram of counter samples (one per interface, as an agent sends
// them every polling interval) decodes without allocating.
func BenchmarkDecodeSFlowCounters(b *testing.B) {
	var samples [][]byte
	for i := uint32(1); i <= 8; i++ {
		samples = append(samples, flowtest.CounterSample(i, i, distinctIfCounters(i, 10_000_000_000, uint64(i)<<30, uint64(i)<<31).Record(),
			flowtest.EthernetCounters{}.Record()))
	}
	dg := flowtest.SFlowDatagram(agent, 0, 1, 1000, samples...)
	d := newTestDecoder()
	d.Decode(t0, exporterA, dg, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		d.Decode(t0, exporterA, dg, nil)
	}
	if len(d.Counters()) != 8 {
		b.Fatalf("%d counter samples", len(d.Counters()))
	}
}
