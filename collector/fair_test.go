package collector

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// flowsFrom counts the sink's flows per exporter address.
func (s *memSink) flowsFrom() map[netip.Addr]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[netip.Addr]int)
	for i := range s.flows {
		out[s.flows[i].ExporterAddr.Netip().Unmap()]++
	}
	return out
}

func dialFrom(t *testing.T, from string, to netip.AddrPort) *net.UDPConn {
	t.Helper()
	conn, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(from)), net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// flood sends b from conn until stop is closed, max datagrams are sent or
// the time is up, and counts what it sent in sent.
func flood(conn *net.UDPConn, b []byte, max int64, within time.Duration, stop <-chan struct{}, sent *atomic.Int64) {
	deadline := time.Now().Add(within)
	for sent.Load() < max {
		select {
		case <-stop:
			return
		default:
		}
		if sent.Load()%1024 == 0 && time.Now().After(deadline) {
			return
		}
		if _, err := conn.Write(b); err == nil {
			sent.Add(1)
		}
	}
}

// TestFloodingExporterCannotStarveOthers floods one worker with the
// reported template attack from one address while six exporters on the
// same worker send real captures. Each of the six must have every flow
// stored, and every datagram refused must be counted under the flooder.
//
// The flood goes to its own listener: a flood that outruns the reading
// goroutine overflows the kernel's socket buffer, and what the kernel drops
// no collector can attribute or prevent. What is tested is the worker's
// queue, which every exporter of the worker shares.
func TestFloodingExporterCannotStarveOthers(t *testing.T) {
	cfg := testConfig()
	cfg.Listeners = []string{"127.0.0.1:0", "127.0.0.1:0"}
	cfg.SocketsPerListener = 1
	cfg.Workers = 1
	cfg.QueueLength = 64 // small, so the flood keeps it full
	cfg.ReceiveBufferBytes = 8 << 20
	sink := &memSink{}
	c, err := New(cfg, Deps{Sink: sink, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()

	attack := costlyCases()[0] // the reported datagram: 115 IPFIX template sets declaring 65,535 fields
	flooder := dialFrom(t, "127.0.0.2:0", c.Addrs()[0])
	defer flooder.Close()
	stop := make(chan struct{})
	var sent atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); flood(flooder, attack.b, 1_000_000, 30*time.Second, stop, &sent) }()
	var once sync.Once
	stopFlood := func() { once.Do(func() { close(stop); wg.Wait() }) }
	defer stopFlood()
	// The victims start once the flood has had the queue to itself.
	if !testkit.Within(5*time.Second, func() bool { return testutil.ToFloat64(c.metrics.queueDrops) > 0 }) {
		t.Fatalf("%d flood datagrams sent and none refused: the flood does not load the worker", sent.Load())
	}

	victims := sendCaptures(t, c)
	stopFlood()
	c.Stop()
	sets := uint64(len(attack.b)-ipfixHeaderLen) / 12
	checkFairness(t, c, sink, victims, netip.MustParseAddr("127.0.0.2"), sent.Load(), sets)
}

type victim struct {
	name  string
	addr  netip.Addr
	flows int    // what decoding the capture alone gives
	lost  uint64 // sequence loss decoding it alone (softflowd's ether template numbering shows some)
}

// sendCaptures sends six real captures to the collector's second
// listener, each from its own address and all at the same time. Each sends
// a datagram once the previous one has been decoded or refused, as an
// exporter far below the worker's capacity would: every datagram of theirs
// meets a queue the flood keeps as full as it may.
func sendCaptures(t *testing.T, c *Collector) []victim {
	t.Helper()
	names := []string{"netflow5", "netflow9", "ipfix", "ipfix_biflow", "ipfix_ether", "sflow5"}
	var victims []victim
	var wg sync.WaitGroup
	for i, name := range names {
		flows, d := decodeCapture(t, name)
		v := victim{name: name, addr: netip.AddrFrom4([4]byte{127, 0, 1, byte(i + 1)}), flows: len(flows), lost: d.Stats()[0].SequenceLost}
		victims = append(victims, v)
		conn := dialFrom(t, netip.AddrPortFrom(v.addr, 0).String(), c.Addrs()[1])
		datagrams := testkit.ReadCapture(t, filepath.Join("testdata", "captures", name+".pcap"))
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			for i, dg := range datagrams {
				if _, err := conn.Write(dg.Payload); err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
				handled := func() bool {
					s := statsOf(c, v.addr)
					return s.Datagrams+s.Drops[ReasonQueueFull] > uint64(i)
				}
				if !testkit.Within(5*time.Second, handled) {
					t.Errorf("%s: datagram %d neither decoded nor refused", name, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	return victims
}

func statsOf(c *Collector, addr netip.Addr) flow.ExporterStats {
	for _, s := range c.Stats() {
		if s.Addr.Netip().Unmap() == addr {
			return s
		}
	}
	return flow.ExporterStats{}
}

// checkFairness wants every victim's flows stored and nothing dropped for
// them, and every refused datagram counted under the flooder, whose
// decoded datagrams each count all their sets as malformed.
func checkFairness(t *testing.T, c *Collector, sink *memSink, victims []victim, flooder netip.Addr, sent int64, sets uint64) {
	t.Helper()
	got := sink.flowsFrom()
	stats := map[netip.Addr]flow.ExporterStats{}
	for _, s := range c.Stats() {
		stats[s.Addr.Netip().Unmap()] = s
	}
	for _, v := range victims {
		s := stats[v.addr]
		if got[v.addr] != v.flows {
			t.Errorf("%s (%s): %d/%d flows stored", v.name, v.addr, got[v.addr], v.flows)
		}
		if len(s.Drops) != 0 || s.SequenceLost != v.lost {
			t.Errorf("%s: drops %v, sequence lost %d, want none and %d", v.name, s.Drops, s.SequenceLost, v.lost)
		}
	}
	f := stats[flooder]
	global := uint64(testutil.ToFloat64(c.metrics.queueDrops))
	perExporter := testutil.ToFloat64(c.metrics.drops.WithLabelValues(flooder.String(), ReasonQueueFull))
	if f.Drops[ReasonQueueFull] == 0 || f.Drops[ReasonQueueFull] != global || uint64(perExporter) != global {
		t.Errorf("queue_full: flooder %d, its metric %v, global %d: want the same, above 0", f.Drops[ReasonQueueFull], perExporter, global)
	}
	if f.Datagrams+f.Drops[ReasonQueueFull] > uint64(sent) || f.Drops[ReasonMalformedSet] != f.Datagrams*sets {
		t.Errorf("flooder: sent %d, decoded %d, refused %d, malformed_set %d", sent, f.Datagrams, f.Drops[ReasonQueueFull], f.Drops[ReasonMalformedSet])
	}
	t.Logf("flood: %d sent, %d decoded, %d refused at the queue; victims: %v", sent, f.Datagrams, f.Drops[ReasonQueueFull], got)
}
