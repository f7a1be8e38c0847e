package collector

import (
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestAdmissionSharesTheQueue(t *testing.T) {
	type step struct {
		exporter int // 0 or 1: offer datagrams of this exporter...
		offer    int // ...this many, one after the other
		admitted int // and this many get in
		drain    int // then the worker takes this many from the queue's head
	}
	tests := []struct {
		name  string
		queue int
		share float64
		steps []step
	}{
		{"a lone exporter fills share/(1+share) of the queue", 8, 1, []step{{0, 10, 4, 0}}},
		{"a larger share lets it fill more", 8, 3, []step{{0, 10, 6, 0}}},
		{"share 0 lets it fill the queue", 8, 0, []step{{0, 10, 8, 0}}},
		{"a second exporter still finds room", 8, 1, []step{{0, 10, 4, 0}, {1, 10, 2, 0}, {0, 1, 0, 0}}},
		{"room comes back as the worker drains", 8, 1, []step{{0, 10, 4, 0}, {1, 10, 2, 3}, {0, 10, 2, 0}, {1, 2, 1, 0}}},
		{"a one-slot queue takes one datagram", 1, 1, []step{{0, 3, 1, 1}, {1, 3, 1, 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dec := NewDecoder(DecoderConfig{}, nil)
			w := &worker{queue: make(chan packet, tc.queue), dec: dec, share: tc.share}
			exporters := []*exporter{
				dec.sharedExporter(netip.MustParseAddr("127.0.0.1"), 0),
				dec.sharedExporter(netip.MustParseAddr("127.0.0.2"), 0),
			}
			for i, s := range tc.steps {
				e := exporters[s.exporter]
				admitted := 0
				for j := 0; j < s.offer; j++ {
					if !w.admit(e) {
						continue
					}
					select {
					case w.queue <- packet{e: e}:
						admitted++
					default:
						release(e)
					}
				}
				if admitted != s.admitted {
					t.Errorf("step %d: %d of exporter %d's datagrams admitted, want %d", i, admitted, s.exporter, s.admitted)
				}
				for j := 0; j < s.drain; j++ {
					release((<-w.queue).e)
				}
			}
			if sum := exporters[0].queued.Load() + exporters[1].queued.Load(); sum != int64(len(w.queue)) {
				t.Errorf("exporters count %d datagrams waiting, the queue holds %d", sum, len(w.queue))
			}
		})
	}
}

// TestQueueDropsAreCountedUnderTheirExporter refuses every datagram of
// one exporter and reads the count back from its statistics and metrics.
func TestQueueDropsAreCountedUnderTheirExporter(t *testing.T) {
	cfg := testConfig()
	cfg.Workers = 1
	cfg.QueueLength = 1
	c, err := New(cfg, Deps{Sink: &memSink{}, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	r := newRoutes(c)
	now := time.UnixMilli(1_700_000_000_000)
	payload := newIPFIX(0, 0, 1).template(256, basicV4...).bytes()
	src := netip.MustParseAddrPort("127.0.0.7:5000")
	for i := 0; i < 5; i++ { // the first fills the queue, which nobody drains
		c.enqueue(r, payload, src, now.Add(time.Duration(i)*time.Millisecond))
	}
	s := statsOf(c, src.Addr())
	if s.Drops[ReasonQueueFull] != 4 || s.Datagrams != 0 || s.LastSeenMs != now.UnixMilli()+4 || s.FirstSeenMs != now.UnixMilli() {
		t.Errorf("stats after 4 refusals: %+v", s)
	}
	if v := testutil.ToFloat64(c.metrics.drops.WithLabelValues("127.0.0.7", ReasonQueueFull)); v != 4 {
		t.Errorf("drops metric = %v, want 4", v)
	}
	if v := testutil.ToFloat64(c.metrics.queueDrops); v != 4 {
		t.Errorf("global queue drops = %v, want 4", v)
	}
}

// TestEnqueueAllocatesNothing holds the reading goroutine's hot path to no
// allocation per datagram once an exporter is known.
func TestEnqueueAllocatesNothing(t *testing.T) {
	c, err := New(testConfig(), Deps{Sink: &memSink{}})
	if err != nil {
		t.Fatal(err)
	}
	r := newRoutes(c)
	payload := newIPFIX(0, 0, 1).template(256, basicV4...).bytes()
	src := netip.MustParseAddrPort("127.0.0.7:5000")
	now := time.Now()
	c.enqueue(r, payload, src, now)
	take := func() {
		for _, w := range c.workers {
			select {
			case p := <-w.queue:
				release(p.e)
				putBuffer(p.buf)
			default:
			}
		}
	}
	take()
	if n := testing.AllocsPerRun(1000, func() { c.enqueue(r, payload, src, now); take() }); n != 0 {
		t.Errorf("%v allocations per datagram", n)
	}
}

func BenchmarkEnqueue(b *testing.B) {
	c, err := New(testConfig(), Deps{Sink: &memSink{}, Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	r := newRoutes(c)
	payload := loadBench(b, "ipfix.pcap")[1]
	src := netip.MustParseAddrPort("127.0.0.7:5000")
	now := time.Now()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		c.enqueue(r, payload, src, now)
		for _, w := range c.workers {
			select {
			case p := <-w.queue:
				release(p.e)
				putBuffer(p.buf)
			default:
			}
		}
	}
}

func TestExporterQueueShareValidation(t *testing.T) {
	for _, share := range []float64{-1, math.NaN(), math.Inf(1)} {
		cfg := DefaultConfig()
		cfg.ExporterQueueShare = share
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "exporter_queue_share:") {
			t.Errorf("share %v: error %v, want one naming exporter_queue_share", share, err)
		}
	}
	for _, share := range []float64{0, 0.5, 1, 8} {
		cfg := DefaultConfig()
		cfg.ExporterQueueShare = share
		if err := cfg.Validate(); err != nil {
			t.Errorf("share %v refused: %v", share, err)
		}
	}
}
