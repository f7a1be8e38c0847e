package flowgen_test

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/collector"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/flowgen"
	"github.com/flowhouse/flowhouse/flowgen/tshark"
)

var start = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// allScenarios are active in the middle of a 3-second schedule.
func allScenarios(t testing.TB) []flowgen.Scenario {
	sc, err := flowgen.ParseScenarios("amplification,synflood,portscan,hostscan@500ms+1s,spike@1s+1s", 500*time.Millisecond, 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// testConfig is a run that does not send: it writes a pcap (if w is set)
// on a virtual clock, 3 seconds of schedule at 1000 flows/s, with every
// scenario, IPv6, sampling, and frequent template and counter refreshes.
func testConfig(t testing.TB, protos []flowgen.Protocol, exporters int, count uint64) flowgen.Config {
	cfg := flowgen.DefaultConfig()
	cfg.Protocols = protos
	cfg.Exporters = exporters
	cfg.Count = count
	cfg.Rate = float64(count) / 3
	cfg.Send = false
	cfg.Start = start
	cfg.Target = netip.MustParseAddrPort("127.0.0.1:20555")
	cfg.IPv6Share = 0.3
	cfg.SamplingRate = 100
	cfg.TemplatePackets = 10
	cfg.TemplateInterval = time.Second
	cfg.CounterInterval = time.Second
	cfg.Scenarios = allScenarios(t)
	return cfg
}

func run(t testing.TB, cfg flowgen.Config) *flowgen.Report {
	t.Helper()
	g, err := flowgen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := g.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestTsharkAgrees has tshark decode what flowgen wrote, per protocol, and
// compares its totals with flowgen's report exactly.
func TestTsharkAgrees(t *testing.T) {
	if _, err := tshark.Path(); err != nil {
		t.Fatalf("%v (the tshark tests need it)", err)
	}
	for _, tc := range []struct {
		proto flowgen.Protocol
		mode  tshark.Mode
	}{
		{flowgen.NetFlowV5, tshark.CFlow},
		{flowgen.NetFlowV9, tshark.CFlow},
		{flowgen.IPFIX, tshark.CFlow},
		{flowgen.SFlowV5, tshark.SFlow},
	} {
		t.Run(tc.proto.String(), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "out.pcap")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(t, []flowgen.Protocol{tc.proto}, 3, 3000)
			cfg.Pcap = f
			rep := run(t, cfg)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			sum, err := tshark.Summarize(ctx, path, cfg.Target.Port(), tc.mode, "")
			if err != nil {
				t.Fatal(err)
			}
			want := rep.Protocols[tc.proto.String()]
			got := sum.Protocols[tc.proto.String()]
			t.Logf("flowgen: %+v", want)
			t.Logf("tshark:  %+v", got)
			if got != want {
				t.Errorf("tshark decoded %+v\nflowgen reported %+v", got, want)
			}
			if len(sum.Protocols) != 1 || sum.Malformed != 0 || sum.Unknown != 0 {
				t.Errorf("protocols %v, malformed %d, unknown %d", sum.Protocols, sum.Malformed, sum.Unknown)
			}
			if sum.SequenceErrors != 0 || sum.Streams != cfg.Exporters {
				t.Errorf("tshark: %d sequence errors in %d streams", sum.SequenceErrors, sum.Streams)
			}
			var options, counters uint64
			for _, e := range rep.Exporters {
				options += e.OptionsRecords
				counters += e.CounterSamples
			}
			if uint64(sum.OptionsRecords) != options || uint64(sum.CounterSamples) != counters {
				t.Errorf("options records %d, counter samples %d; flowgen: %d, %d", sum.OptionsRecords, sum.CounterSamples, options, counters)
			}
			if tc.proto != flowgen.NetFlowV5 && (want.IPv6Flows == 0 || want.IPv6Flows == want.Flows) {
				t.Errorf("want a mix of IPv4 and IPv6, got %d of %d IPv6", want.IPv6Flows, want.Flows)
			}
			if tc.proto == flowgen.NetFlowV5 && want.IPv6Flows != 0 {
				t.Errorf("v5 carried %d IPv6 flows", want.IPv6Flows)
			}
		})
	}
}

// TestCollectorAgrees feeds every datagram to flowhouse's own decoder and
// checks flows, bytes, packets, sampling, sequence numbers and drops.
func TestCollectorAgrees(t *testing.T) {
	cfg := testConfig(t, []flowgen.Protocol{flowgen.NetFlowV5, flowgen.NetFlowV9, flowgen.IPFIX, flowgen.SFlowV5}, 8, 8000)
	dec := collector.NewDecoder(collector.DecoderConfig{}, nil)
	var got [5]flowgen.Counts
	rates := map[uint32]int{}
	var out []flow.Flow
	protoName := map[flow.Protocol]string{}
	cfg.OnDatagram = func(_ int, src netip.AddrPort, payload []byte, ts time.Time) {
		out = dec.Decode(ts, src, payload, out)
		for i := range out {
			f := &out[i]
			c := &got[f.Protocol]
			protoName[f.Protocol] = f.Protocol.String()
			v6 := f.IPVersion == 6
			c.Flows++
			c.Bytes += f.Bytes
			c.Packets += f.Packets
			if v6 {
				c.IPv6Flows++
				c.IPv6Bytes += f.Bytes
				c.IPv6Packets += f.Packets
			}
			rates[f.SamplingRate]++
		}
	}
	rep := run(t, cfg)
	for p, name := range protoName {
		want := rep.Protocols[name]
		want.Datagrams, want.PayloadBytes = 0, 0
		if got[p] != want {
			t.Errorf("%s: collector decoded %+v\nflowgen reported %+v", name, got[p], want)
		}
	}
	if len(protoName) != 4 {
		t.Errorf("protocols decoded: %v", protoName)
	}
	if len(rates) != 1 || rates[100] == 0 {
		t.Errorf("sampling rates decoded: %v, want all 100", rates)
	}
	stats := dec.Stats()
	if len(stats) != cfg.Exporters {
		t.Errorf("%d exporters seen", len(stats))
	}
	for _, s := range stats {
		if s.SequenceLost != 0 || len(s.Drops) != 0 {
			t.Errorf("exporter %s: %d lost by sequence numbers, drops %v", s.Addr, s.SequenceLost, s.Drops)
		}
		for _, st := range s.Streams {
			if st.Resets != 0 || st.Lost != 0 {
				t.Errorf("exporter %s stream %+v", s.Addr, st)
			}
		}
	}
	var counters, sent uint64
	for _, s := range stats {
		counters += s.CounterRecords
	}
	for _, e := range rep.Exporters {
		sent += e.CounterSamples // one interface counter record each
	}
	if counters == 0 || counters != sent {
		t.Errorf("%d sFlow interface counter records decoded, flowgen sent %d", counters, sent)
	}
}

// TestDeterministic: a seed on a virtual clock gives byte-identical output.
func TestDeterministic(t *testing.T) {
	capture := func(seed uint64) []byte {
		var buf bytes.Buffer
		cfg := testConfig(t, nil, 4, 4000)
		cfg.Seed = seed
		cfg.Pcap = &buf
		run(t, cfg)
		return buf.Bytes()
	}
	a, b, c := capture(7), capture(7), capture(8)
	if !bytes.Equal(a, b) {
		t.Error("two runs with seed 7 differ")
	}
	if bytes.Equal(a, c) {
		t.Error("seeds 7 and 8 give the same output")
	}
}

// TestScenarios checks what each scenario injects, through the collector's
// decoder, against the per-scenario counts of the report.
func TestScenarios(t *testing.T) {
	cfg := testConfig(t, []flowgen.Protocol{flowgen.IPFIX, flowgen.NetFlowV9}, 2, 6000)
	cfg.IPv6Share = 0
	dec := collector.NewDecoder(collector.DecoderConfig{}, nil)
	var out []flow.Flow
	type agg struct {
		flows, bytes, packets uint64
		srcs, ports, dsts     map[string]bool
	}
	newAgg := func() *agg { return &agg{srcs: map[string]bool{}, ports: map[string]bool{}, dsts: map[string]bool{}} }
	seen := map[string]*agg{}
	for _, k := range []string{"amplification", "synflood", "portscan", "hostscan"} {
		seen[k] = newAgg()
	}
	synTarget := flow.AddrFromNetip(flowgen.SYNFloodTarget.Addr())
	victim := flow.AddrFromNetip(flowgen.AmplificationVictim)
	psSrc, psDst := flow.AddrFromNetip(flowgen.PortScanSource), flow.AddrFromNetip(flowgen.PortScanTarget)
	hsSrc := flow.AddrFromNetip(flowgen.HostScanSource)
	var minStart, maxStart int64 = 1 << 62, 0
	cfg.OnDatagram = func(_ int, src netip.AddrPort, payload []byte, ts time.Time) {
		out = dec.Decode(ts, src, payload, out)
		for i := range out {
			f := &out[i]
			var k string
			switch {
			case f.DstAddr == victim && f.IPProto == 17:
				k = "amplification"
			case f.DstAddr == synTarget && f.DstPort == 443 && f.TCPFlags == 0x02:
				k = "synflood"
			case f.SrcAddr == psSrc && f.DstAddr == psDst:
				k = "portscan"
			case f.SrcAddr == hsSrc && f.DstPort == flowgen.HostScanPort:
				k = "hostscan"
			default:
				continue
			}
			a := seen[k]
			a.flows++
			a.bytes += f.Bytes
			a.packets += f.Packets
			a.srcs[f.SrcAddr.String()] = true
			a.dsts[f.DstAddr.String()] = true
			a.ports[string(rune(f.SrcPort))+"/"+string(rune(f.DstPort))] = true
			minStart, maxStart = min(minStart, f.TimeEndMs), max(maxStart, f.TimeEndMs)
		}
	}
	rep := run(t, cfg)
	for _, s := range rep.Scenarios {
		if s.Counts.Flows == 0 {
			t.Errorf("scenario %s sent nothing", s.Name)
			continue
		}
		a, ok := seen[s.Name]
		if !ok {
			continue // spike: checked below
		}
		if a.flows != s.Counts.Flows || a.bytes != s.Counts.Bytes || a.packets != s.Counts.Packets {
			t.Errorf("%s: decoded %d flows %d bytes %d packets, report %+v", s.Name, a.flows, a.bytes, a.packets, s.Counts)
		}
		switch s.Name {
		case "amplification":
			if len(a.srcs) < 50 || a.bytes/a.packets < 400 {
				t.Errorf("amplification: %d reflectors, %d bytes per packet", len(a.srcs), a.bytes/a.packets)
			}
		case "synflood":
			if len(a.srcs) < 50 || a.bytes/a.packets > 60 {
				t.Errorf("synflood: %d sources, %d bytes per packet", len(a.srcs), a.bytes/a.packets)
			}
		case "portscan":
			if len(a.ports) != int(a.flows) || len(a.srcs) != 1 {
				t.Errorf("portscan: %d port pairs in %d flows from %d sources", len(a.ports), a.flows, len(a.srcs))
			}
		case "hostscan":
			if len(a.dsts) < min(254, int(a.flows)) || len(a.srcs) != 1 {
				t.Errorf("hostscan: %d destinations in %d flows", len(a.dsts), a.flows)
			}
		}
	}
	// The injected scenarios run from 0.5 s to 2 s of a 3 s schedule (the
	// host scan to 1.5 s), and records end at most 1 s before they are
	// made; NetFlow v9 export times have whole seconds, which shifts the
	// decoded times by up to another second.
	if lo, hi := start.Add(-2*time.Second+500*time.Millisecond).UnixMilli(), start.Add(2*time.Second).UnixMilli(); minStart < lo || maxStart > hi {
		t.Errorf("scenario flows ended between %d and %d, want within [%d, %d]", minStart-start.UnixMilli(), maxStart-start.UnixMilli(), lo-start.UnixMilli(), hi-start.UnixMilli())
	}
	var scen flowgen.Counts
	for _, s := range rep.Scenarios {
		c := s.Counts
		scen.Flows += c.Flows
	}
	if rep.Background.Flows+scen.Flows != rep.Total.Flows {
		t.Errorf("background %d + scenarios %d != total %d", rep.Background.Flows, scen.Flows, rep.Total.Flows)
	}
}

// TestSendUDP sends to a local socket: datagrams come from each exporter's
// own 127.0.1.x address, and what arrives is what the report says.
func TestSendUDP(t *testing.T) {
	ln, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_ = ln.SetReadBuffer(8 << 20)
	type key struct {
		src netip.Addr
	}
	var mu sync.Mutex
	got := map[netip.Addr]flowgen.Counts{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, src, err := ln.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			mu.Lock()
			c := got[src.Addr()]
			c.Datagrams++
			c.PayloadBytes += uint64(n)
			got[src.Addr()] = c
			mu.Unlock()
		}
	}()
	cfg := flowgen.DefaultConfig()
	cfg.Target = ln.LocalAddr().(*net.UDPAddr).AddrPort()
	cfg.Exporters = 4
	cfg.Count = 4000
	cfg.Rate = 20000 // 0.2 s
	cfg.Scenarios = allScenarios(t)
	t0 := time.Now()
	rep := run(t, cfg)
	took := time.Since(t0)
	time.Sleep(100 * time.Millisecond)
	ln.Close()
	<-done
	if took < 150*time.Millisecond || took > 2*time.Second {
		t.Errorf("4000 flows at 20000/s took %v", took)
	}
	if rep.Unsent.Datagrams != 0 || rep.Total.Flows != 4000 {
		t.Errorf("report: unsent %+v, total %+v", rep.Unsent, rep.Total)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range rep.Exporters {
		ap, err := netip.ParseAddrPort(e.Address)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(ap.Addr().String(), "127.0.1.") {
			t.Errorf("exporter %d sends from %s", e.Index, ap)
		}
		c := got[ap.Addr()]
		if c.Datagrams != e.Counts.Datagrams || c.PayloadBytes != e.Counts.PayloadBytes {
			t.Errorf("exporter %s: received %d datagrams / %d bytes, report %d / %d",
				ap, c.Datagrams, c.PayloadBytes, e.Counts.Datagrams, e.Counts.PayloadBytes)
		}
	}
}

func TestConfigBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*flowgen.Config)
		want string
	}{
		{"unbounded", func(c *flowgen.Config) { c.Count, c.Duration = 0, 0 }, "count or a duration"},
		{"target outside loopback", func(c *flowgen.Config) { c.Target = netip.MustParseAddrPort("192.0.2.1:2055") }, "127.0.0.0/8"},
		{"sources leave loopback", func(c *flowgen.Config) { c.SourceBase = netip.MustParseAddr("127.255.255.250"); c.Exporters = 10 }, "127.0.0.0/8"},
		{"v5 sampling", func(c *flowgen.Config) { c.SamplingRate = 20000 }, "16383"},
		{"spike interface", func(c *flowgen.Config) { c.SpikeIfIndex = 9 }, "spike"},
	} {
		cfg := flowgen.DefaultConfig()
		cfg.Count = 10
		tc.mod(&cfg)
		if _, err := flowgen.New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

// BenchmarkGenerate measures generation and encoding on one core (no
// sending): flows/s is the figure to compare with the 500k target.
func BenchmarkGenerate(b *testing.B) {
	for _, p := range flowgen.Protocols {
		b.Run(p.String(), func(b *testing.B) {
			cfg := flowgen.DefaultConfig()
			cfg.Protocols = []flowgen.Protocol{p}
			cfg.Exporters = 16
			cfg.Count = uint64(b.N)
			cfg.Rate = 0
			cfg.Send = false
			cfg.Start = start
			cfg.OnDatagram = func(int, netip.AddrPort, []byte, time.Time) {}
			g, err := flowgen.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			rep, err := g.Run(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(rep.Total.Flows)/b.Elapsed().Seconds(), "flows/s")
		})
	}
}
