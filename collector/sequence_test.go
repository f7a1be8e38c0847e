package collector

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// simExporter plays one exporter's stream: its numbering style, its clock
// (boot time, wall time), and its runs. Messages it makes can be sent,
// lost, or held back and sent late.
type simExporter struct {
	proto flow.Protocol
	// seq numbers a message from the units sent before it in the run,
	// its units (all) and its options records.
	seq      func(before, all, options uint32) uint32
	clock    bool // whether restarts move the clock the exporter reports
	before   uint32
	wallMs   int64
	bootMs   int64
	n        int // messages made in the run
	runs     int
	lastTmpl int // template generation sent last
	template int // template generation (a changed configuration)
	jitterMs int64
	// skipsOptions: IPFIX, the exporter leaves options records out of
	// its numbers.
	skipsOptions bool
	// countsFlows: NetFlow v9, the exporter numbers flows as v5 does,
	// not packets.
	countsFlows bool
}

// make builds the run's next message of all records (1 for sFlow),
// and says how many units the sequence numbers count for it.
func (x *simExporter) make(all uint32) (b []byte, units uint32) {
	x.wallMs += 1000
	uptime := uint32(x.wallMs - x.bootMs + x.jitterMs)
	x.jitterMs = 0
	var options uint32
	switch x.proto {
	case flow.ProtoNetFlowV5:
		b = v5Datagram(x.seq(x.before, all, 0), int(all))
		binary.BigEndian.PutUint32(b[4:], uptime)
		binary.BigEndian.PutUint32(b[8:], uint32(x.wallMs/1000))
		binary.BigEndian.PutUint32(b[12:], uint32(x.wallMs%1000)*1_000_000)
		units = all
	case flow.ProtoNetFlowV9:
		var recs [][]byte
		for range all {
			recs = append(recs, x.record())
		}
		m := newNFv9(uptime, uint32(x.wallMs/1000), x.seq(x.before, all, 0), 1).template(256, x.fields()...)
		b, units = m.data(256, recs...).bytes(), 1
		if x.countsFlows {
			units = all
		}
	case flow.ProtoIPFIX:
		// Options records with systemInitTimeMilliseconds in a run's
		// first message and every fifth, as exporters re-send them.
		if x.n%5 == 0 {
			options = 1
		}
		flows := all - options
		m := newIPFIX(uint32(x.wallMs/1000), x.seq(x.before, all, options), 1).template(256, x.fields()...)
		if options > 0 {
			m = m.optionsTemplate(300, []tf{{149, 4, 0}}, []tf{{160, 8, 0}})
		}
		var recs [][]byte
		for range flows {
			recs = append(recs, x.record())
		}
		m = m.data(256, recs...)
		if options > 0 {
			m = m.data(300, rec(uint32(1), uint64(x.bootMs)))
		}
		b, units = m.bytes(), all
	case flow.ProtoSFlowV5:
		b = binary.BigEndian.AppendUint32(nil, 5)
		b = binary.BigEndian.AppendUint32(b, 1)
		b = append(b, 127, 0, 0, 10)
		b = binary.BigEndian.AppendUint32(b, 0) // sub-agent
		b = binary.BigEndian.AppendUint32(b, x.seq(x.before, 1, 0))
		b = binary.BigEndian.AppendUint32(b, uptime)
		b = binary.BigEndian.AppendUint32(b, 0) // samples
		units = 1
	}
	if x.skipsOptions {
		units -= options
	}
	x.before += units
	x.n++
	return b, units
}

// fields is the data template of the exporter's configuration: each
// generation adds the ingress interface once more, so template 256 is
// redefined.
func (x *simExporter) fields() []tf {
	f := append([]tf{}, basicV4...)
	for range x.template {
		f = append(f, tf{10, 4, 0})
	}
	return f
}

func (x *simExporter) record() []byte {
	r := basicV4Record(1, 2, 3, 4)
	for range x.template {
		r = append(r, 0, 0, 0, 1)
	}
	return r
}

// restart starts a new run after a 5 s outage: the sequence from the
// start, the clock (if it reports restarts) from a new boot time.
func (x *simExporter) restart() {
	x.wallMs += 5000
	if x.clock {
		x.bootMs = x.wallMs
	}
	x.before, x.n = 0, 0
	x.runs++
}

// Steps of a scenario.
type step struct {
	send, lose, hold int // messages sent, lost, held back
	late             int // held-back messages sent now, the latest first
	restart          bool
	changeTemplate   bool
	jitterMs         int64 // on the next message's uptime
	unknowable       bool  // the lost messages cannot be known lost
}

type style struct {
	name         string
	proto        flow.Protocol
	skipsOptions bool
	seq          func(before, all, options uint32) uint32
	countsFlows  bool
}

var styles = []style{
	{"v5 flows before", flow.ProtoNetFlowV5, false, func(b, _, _ uint32) uint32 { return b }, false},
	{"v5 index of the last flow", flow.ProtoNetFlowV5, false, func(b, all, _ uint32) uint32 { return b + all - 1 }, false},
	{"v9 first packet 1", flow.ProtoNetFlowV9, false, func(b, _, _ uint32) uint32 { return b + 1 }, false},
	{"v9 first packet 0", flow.ProtoNetFlowV9, false, func(b, _, _ uint32) uint32 { return b }, false},
	{"v9 flows before", flow.ProtoNetFlowV9, false, func(b, _, _ uint32) uint32 { return b }, true},
	{"v9 index of the last flow", flow.ProtoNetFlowV9, false, func(b, all, _ uint32) uint32 { return b + all - 1 }, true},
	{"ipfix RFC", flow.ProtoIPFIX, false, func(b, _, _ uint32) uint32 { return b }, false},
	{"ipfix options not counted", flow.ProtoIPFIX, true, func(b, _, _ uint32) uint32 { return b }, false},
	{"ipfix including", flow.ProtoIPFIX, false, func(b, all, _ uint32) uint32 { return b + all }, false},
	{"ipfix including, options not counted (softflowd)", flow.ProtoIPFIX, true, func(b, all, o uint32) uint32 { return b + all - o }, false},
	{"sflow first datagram 1", flow.ProtoSFlowV5, false, func(b, _, _ uint32) uint32 { return b + 1 }, false},
}

func TestSequenceRestarts(t *testing.T) {
	run := func(n int) step { return step{send: n} }
	tests := []struct {
		name       string
		clock      bool
		steps      []step
		restarts   uint64
		reason     string // the restarts' reason label
		skipProtos []flow.Protocol
	}{
		{name: "restarts shown by the clock", clock: true,
			steps: []step{run(20), {restart: true}, run(20), {restart: true}, run(20)}, restarts: 2},
		{name: "restarts shown by the sequence only", clock: false,
			steps: []step{run(20), {restart: true}, run(20), {restart: true}, run(20)}, restarts: 2, reason: "sequence"},
		{name: "loss inside runs and right after a restart, clock", clock: true,
			steps: []step{run(10), {lose: 2}, run(10), {restart: true}, run(12), {restart: true}, {lose: 1}, run(5), {lose: 3}, run(10)}, restarts: 2, reason: "any"},
		{name: "loss inside runs and right after a restart, sequence only", clock: false,
			steps: []step{run(10), {lose: 2}, run(10), {restart: true}, run(12), {restart: true}, {lose: 1}, run(5), {lose: 3}, run(10)}, restarts: 2, reason: "sequence"},
		{name: "reordering is taken back", clock: true,
			steps: []step{run(10), {hold: 1}, run(2), {late: 1}, run(5), {hold: 2}, run(1), {late: 2}, run(10)}},
		{name: "a message later than the window still fills its gap", clock: false,
			steps: []step{run(10), {hold: 1}, run(12), {late: 1}, run(5)}},
		{name: "a restart's first messages lost beyond the window are not known", clock: true,
			steps: []step{run(20), {restart: true}, run(40), {restart: true}, {lose: 25, unknowable: true}, run(10)}, restarts: 2, reason: "any"},
		{name: "clock jitter within tolerance is no restart", clock: true,
			steps: []step{run(5), {jitterMs: 1500}, run(5), {jitterMs: -1500}, run(5)}},
		{name: "a short run with a changed template", clock: false,
			steps: []step{run(3), {restart: true, changeTemplate: true}, run(5)}, restarts: 1, reason: "template",
			skipProtos: []flow.Protocol{flow.ProtoNetFlowV5, flow.ProtoSFlowV5}},
		{name: "a changed template alone is no restart", clock: true,
			steps:      []step{run(10), {changeTemplate: true}, run(10)},
			skipProtos: []flow.Protocol{flow.ProtoNetFlowV5, flow.ProtoSFlowV5}},
	}
	sizes := []uint32{3, 3, 5, 2, 7, 1, 4, 6}
	for _, sty := range styles {
		for _, tc := range tests {
			if skip(tc.skipProtos, sty.proto) {
				continue
			}
			t.Run(sty.name+"/"+tc.name, func(t *testing.T) {
				reg := prometheus.NewRegistry()
				m := newMetrics(reg)
				d := NewDecoder(DecoderConfig{TemplateTimeout: 30 * time.Minute, MaxTemplatesPerExporter: 16}, m)
				x := &simExporter{proto: sty.proto, seq: sty.seq, skipsOptions: sty.skipsOptions, countsFlows: sty.countsFlows,
					clock: tc.clock, wallMs: 1_704_067_200_000}
				x.bootMs = x.wallMs - 3_600_000
				var held [][]byte
				var want uint64 // units removed
				i := 0
				size := func() uint32 { i++; return sizes[i%len(sizes)] + 1 }
				for _, s := range tc.steps {
					if s.restart {
						x.restart()
					}
					if s.changeTemplate {
						x.template++
					}
					x.jitterMs = s.jitterMs
					for range s.send {
						b, _ := x.make(size())
						d.Decode(t0, exporterA, b, nil)
					}
					if s.jitterMs != 0 && s.send == 0 {
						b, _ := x.make(size())
						d.Decode(t0, exporterA, b, nil)
					}
					for range s.lose {
						_, u := x.make(size())
						if !s.unknowable {
							want += uint64(u)
						}
					}
					for range s.hold {
						b, _ := x.make(size())
						held = append(held, b)
					}
					for range s.late {
						d.Decode(t0, exporterA, held[len(held)-1], nil)
						held = held[:len(held)-1]
					}
				}
				s := d.Stats()[0]
				if len(s.Streams) != 1 {
					t.Fatalf("streams %+v", s.Streams)
				}
				st := s.Streams[0]
				if st.Lost != want || st.Restarts != tc.restarts || st.Resets != 0 {
					t.Errorf("lost %d, restarts %d, resets %d; want %d, %d, 0", st.Lost, st.Restarts, st.Resets, want, tc.restarts)
				}
				if got := testutil.ToFloat64(m.sequenceLost.WithLabelValues(exporterA.Addr().String())); uint64(got) < want {
					t.Errorf("sequence_gap_total %v, want at least %d", got, want)
				}
				if s.SequenceLost != want || len(s.Drops) != 0 {
					t.Errorf("exporter: lost %d, drops %v", s.SequenceLost, s.Drops)
				}
				reason := tc.reason
				if reason == "" {
					reason = map[flow.Protocol]string{flow.ProtoNetFlowV5: "boot_time", flow.ProtoNetFlowV9: "boot_time",
						flow.ProtoIPFIX: "system_init", flow.ProtoSFlowV5: "uptime"}[sty.proto]
				}
				if got := sumRestarts(t, reg); got != tc.restarts {
					t.Errorf("restarts_total %d, want %d (%s)", got, tc.restarts, restartSeries(t, reg))
				}
				if tc.restarts > 0 && reason != "any" {
					if got := testutil.ToFloat64(m.restarts.WithLabelValues(exporterA.Addr().String(), sty.proto.String(), reason)); uint64(got) != tc.restarts {
						t.Errorf("restarts_total{reason=%q} %v, want %d (all: %s)", reason, got, tc.restarts, restartSeries(t, reg))
					}
				}
			})
		}
	}
}

func skip(ps []flow.Protocol, p flow.Protocol) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

func sumRestarts(t *testing.T, reg *prometheus.Registry) uint64 {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "flowhouse_collector_exporter_restarts_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return uint64(n)
}

func restartSeries(t *testing.T, reg *prometheus.Registry) string {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := ""
	for _, mf := range mfs {
		if mf.GetName() != "flowhouse_collector_exporter_restarts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out += fmt.Sprintf("%v=%v ", m.GetLabel(), m.GetCounter().GetValue())
		}
	}
	return out
}

// TestSequenceSessions: NetFlow and IPFIX number messages per transport
// session, which over UDP is the exporter's source port. Two exporting
// processes of one device number their own; a restarted process, or a NAT
// rebinding, moves the exporter's one stream to a new port.
func TestSequenceSessions(t *testing.T) {
	portA, portB := netip.AddrPortFrom(exporterA.Addr(), 40000), netip.AddrPortFrom(exporterA.Addr(), 40001)
	const boot, wall = 1_704_060_000_000, 1_704_067_200_000 // boot time and first export time, ms
	// v9 packet: numbered from 1 per packet; the clock says when it booted.
	packet := func(seq uint32, bootMs int64, n int) []byte {
		wallMs := int64(wall + n*1000)
		m := newNFv9(uint32(wallMs-bootMs), uint32(wallMs/1000), seq, 1).template(256, basicV4...)
		return m.data(256, basicV4Record(1, 2, 3, 4)).bytes()
	}
	type send struct {
		from netip.AddrPort
		seq  uint32
		boot int64
	}
	tests := []struct {
		name           string
		sends          []send
		streams        int
		lost, restarts uint64
	}{
		{name: "two processes of one device, interleaved, each numbered on its own",
			sends: []send{{portA, 1, boot}, {portB, 1, boot - 5000}, {portA, 2, boot}, {portB, 2, boot - 5000},
				{portA, 3, boot}, {portB, 3, boot - 5000}, {portB, 4, boot - 5000}, {portA, 4, boot}},
			streams: 2},
		{name: "two long-running processes first heard mid-run",
			sends:   []send{{portA, 500, boot}, {portB, 9000, boot}, {portA, 501, boot}, {portB, 9001, boot}, {portA, 503, boot}},
			streams: 2, lost: 1},
		// The second process's clock must not stay in the first's stream:
		// the first's next message, after a loss, would read as a restart.
		{name: "two long-running processes with clocks of their own, first heard mid-run",
			sends: []send{{portA, 500, boot}, {portB, 9000, boot - 600_000}, {portA, 502, boot}, {portB, 9001, boot - 600_000},
				{portA, 503, boot}, {portB, 9002, boot - 600_000}},
			streams: 2, lost: 1},
		{name: "a restarted process on a new port, clock moved",
			sends:   []send{{portA, 1, boot}, {portA, 2, boot}, {portA, 3, boot}, {portB, 1, boot + 60_000}, {portB, 2, boot + 60_000}, {portB, 4, boot + 60_000}},
			streams: 1, lost: 1, restarts: 1},
		{name: "a restarted process on a new port, no clock",
			sends:   []send{{portA, 100, 0}, {portA, 101, 0}, {portA, 102, 0}, {portB, 1, 0}, {portB, 3, 0}},
			streams: 1, lost: 1, restarts: 1},
		{name: "a NAT gives the exporter a new port mid-run",
			sends:   []send{{portA, 10, boot}, {portA, 11, boot}, {portB, 13, boot}, {portB, 14, boot}},
			streams: 1, lost: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDecoder()
			for i, s := range tc.sends {
				d.Decode(t0, s.from, packet(s.seq, s.boot, i), nil)
			}
			st := d.Stats()[0]
			var restarts uint64
			for _, s := range st.Streams {
				restarts += s.Restarts
			}
			if len(st.Streams) != tc.streams || st.SequenceLost != tc.lost || restarts != tc.restarts {
				t.Errorf("streams %d, lost %d, restarts %d; want %d, %d, %d (%+v)",
					len(st.Streams), st.SequenceLost, restarts, tc.streams, tc.lost, tc.restarts, st.Streams)
			}
		})
	}
}
