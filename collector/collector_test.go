package collector

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type memSink struct {
	mu    sync.Mutex
	flows []flow.Flow
}

func (s *memSink) Write(flows []flow.Flow) {
	s.mu.Lock()
	s.flows = append(s.flows, flows...)
	s.mu.Unlock()
}

func (s *memSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.flows)
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Listeners = []string{"127.0.0.1:0"}
	cfg.ReceiveBufferBytes = 1 << 20
	cfg.StateFile = "" // tests that keep state name their own file
	return cfg
}

func TestCollectorReceivesOverUDP(t *testing.T) {
	sink := &memSink{}
	reg := prometheus.NewRegistry()
	c, err := New(testConfig(), Deps{Sink: sink, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := c.Addrs()[0]
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// The template and 50 data messages, plus garbage in between that must
	// be counted and must not disturb the stream.
	send := func(b []byte) {
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	send(newIPFIX(0, 0, 1).template(256, basicV4...).bytes())
	for i := 0; i < 50; i++ {
		send(newIPFIX(0, uint32(i*2), 1).data(256, basicV4Record(uint16(i), 80, 100, 1), basicV4Record(uint16(i), 81, 100, 1)).bytes())
		if i%10 == 0 {
			send([]byte{0xde, 0xad, 0xbe, 0xef})
		}
	}
	testkit.Within(5*time.Second, func() bool { return sink.count() >= 100 })
	c.Stop()
	if n := sink.count(); n != 100 {
		t.Fatalf("sink got %d flows, want 100", n)
	}
	stats := c.Stats()
	if len(stats) != 1 {
		t.Fatalf("stats for %d exporters, want 1", len(stats))
	}
	s := stats[0]
	if s.Datagrams != 56 || s.Flows != 100 || s.Drops[ReasonUnknownVersion] != 5 || s.SequenceLost != 0 {
		t.Errorf("stats: %+v", s)
	}
	exporter := s.Addr.String()
	if v := testutil.ToFloat64(c.metrics.flows.WithLabelValues(exporter, "ipfix")); v != 100 {
		t.Errorf("flows metric = %v, want 100", v)
	}
	if v := testutil.ToFloat64(c.metrics.drops.WithLabelValues(exporter, ReasonUnknownVersion)); v != 5 {
		t.Errorf("drops metric = %v, want 5", v)
	}
}

func TestCollectorListenerConflictIsAnError(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	cfg := testConfig()
	cfg.Listeners = []string{pc.LocalAddr().String()} // taken, without SO_REUSEPORT
	c, err := New(cfg, Deps{Sink: &memSink{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err == nil {
		c.Stop()
		t.Fatal("Start succeeded on a port held by another socket")
	}
}

func TestConfigValidationNamesKeys(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Workers = 0
	cfg.Listeners = []string{"nonsense"}
	cfg.Sampling = []SamplingRule{{Prefix: "10.0.0.0/33", Rate: 0}}
	cfg.TotalsIdleTimeout = time.Millisecond
	cfg.MaxTotalsPerExporter = 0
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, key := range []string{"workers:", "listeners[0]:", "sampling[0].prefix:", "sampling[0].rate:", "totals_idle_timeout:", "max_totals_flows_per_exporter:"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
}

func TestCollectorLargeDatagram(t *testing.T) {
	sink := &memSink{}
	c, err := New(testConfig(), Deps{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(c.Addrs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m := newIPFIX(0, 0, 1).template(256, basicV4...)
	var recs [][]byte
	for i := 0; i < 300; i++ { // 300 records of 29 bytes: larger than the pooled buffers
		recs = append(recs, basicV4Record(uint16(i), 443, 1000, 1))
	}
	b := m.data(256, recs...).bytes()
	if len(b) <= smallDatagram {
		t.Fatalf("datagram of %d bytes is not large", len(b))
	}
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	testkit.Within(5*time.Second, func() bool { return sink.count() >= 300 })
	c.Stop()
	if n := sink.count(); n != 300 {
		t.Fatalf("got %d flows from a %d-byte datagram, want 300", n, len(b))
	}
}
