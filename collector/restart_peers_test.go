package collector

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/peers"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
)

// A real exporter restarted again and again: one softflowd process per
// run, each replaying testdata/traffic.pcap, through a relay that removes
// datagrams at known places, into a collector. Every second run replays a
// copy of the capture an hour later, so its clock (boot time, IE 160)
// says it restarted; the others restart with the same clock and only
// their sequence numbers say so. The collector must count exactly the
// units the relay removed, and one restart per new run. A run's last
// datagram is never removed: nothing after it in the run says it existed.
func TestSoftflowdRestartsThroughLossyRelay(t *testing.T) {
	peers.Require(t, "softflowd")
	pcaps := []string{filepath.Join("..", "testdata", "traffic.pcap"), shiftedPcap(t, filepath.Join("..", "testdata", "traffic.pcap"), time.Hour)}
	const runs = 5
	for _, tc := range []struct {
		name    string
		version int
		proto   flow.Protocol
	}{
		{"netflow v5", 5, flow.ProtoNetFlowV5},
		{"netflow v9", 9, flow.ProtoNetFlowV9},
		{"ipfix", 10, flow.ProtoIPFIX},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			c, err := New(testConfig(), Deps{Sink: &memSink{}, Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer c.Stop()
			r := newRelay(t, c)
			defer r.close()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var removed uint64
			for run := range runs {
				x, err := peers.RunSoftflowdCounted(ctx, t, pcaps[run%2], r.addr(), tc.version, "-6")
				if err != nil {
					t.Fatal(err)
				}
				// Remove two datagrams inside each run, and the first of a
				// run whose clock moved (3) and of one whose did not (2).
				drop := map[int]bool{5: true, 9: true}
				if run == 2 || run == 3 {
					drop[0] = true
				}
				removed += r.relayRun(x.Packets, drop)
			}
			s := statsOf(c, netip.MustParseAddr("127.0.0.1"))
			if len(s.Streams) != 1 {
				t.Fatalf("streams %+v", s.Streams)
			}
			st := s.Streams[0]
			if st.Lost != removed || st.Restarts != runs-1 || st.Resets != 0 {
				t.Errorf("collector: lost %d, restarts %d, resets %d; the relay removed %d units in %d runs",
					st.Lost, st.Restarts, st.Resets, removed, runs)
			}
			if got := sumRestarts(t, reg); got != runs-1 {
				t.Errorf("restarts_total %d, want %d (%s)", got, runs-1, restartSeries(t, reg))
			}
			// The relay's own decoder saw every datagram: no loss.
			rs := r.dec.Stats()[0].Streams[0]
			if rs.Lost != 0 || rs.Restarts != runs-1 {
				t.Errorf("relay decoder: lost %d, restarts %d; want 0, %d", rs.Lost, rs.Restarts, runs-1)
			}
			t.Logf("%s: %d runs, %d units removed, stream %+v; %s", tc.name, runs, removed, st, restartSeries(t, reg))
		})
	}
}

// relay stands between softflowd and the collector. Its own decoder reads
// every datagram, to know how many sequence units each carries.
type relay struct {
	t    *testing.T
	in   *net.UDPConn
	out  *net.UDPConn
	c    *Collector
	dec  *Decoder
	got  chan []byte
	sent uint64
}

func newRelay(t *testing.T, c *Collector) *relay {
	in, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	// softflowd sends a run in one burst; the relay must not lose any.
	if err := in.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, in: in, c: c, dec: NewDecoder(DecoderConfig{TemplateTimeout: 30 * time.Minute, MaxTemplatesPerExporter: 64}, nil),
		got: make(chan []byte, 4096)}
	r.out = dialFrom(t, "127.0.0.1:0", c.Addrs()[0])
	go func() {
		defer close(r.got)
		for {
			b := make([]byte, 65536)
			n, err := in.Read(b)
			if err != nil {
				return
			}
			r.got <- b[:n]
		}
	}()
	return r
}

func (r *relay) addr() netip.AddrPort { return r.in.LocalAddr().(*net.UDPAddr).AddrPort() }

func (r *relay) close() {
	r.in.Close()
	r.out.Close()
	for range r.got {
	}
}

// relayRun forwards a run's n datagrams but those at the indexes in drop,
// one at a time once the collector has taken the one before, and returns
// the sequence units it removed.
func (r *relay) relayRun(n int, drop map[int]bool) (removed uint64) {
	r.t.Helper()
	for i := range n {
		var b []byte
		select {
		case b = <-r.got:
		case <-time.After(10 * time.Second):
			r.t.Fatalf("relay: datagram %d of %d never came", i, n)
		}
		units := r.units(b)
		if drop[i] && i < n-1 {
			removed += units
			continue
		}
		if _, err := r.out.Write(b); err != nil {
			r.t.Fatal(err)
		}
		r.sent++
		if !testkit.Within(5*time.Second, func() bool { return statsOf(r.c, netip.MustParseAddr("127.0.0.1")).Datagrams >= r.sent }) {
			r.t.Fatalf("collector never took datagram %d", r.sent)
		}
	}
	return removed
}

// units is what a datagram counts in its exporter's sequence numbers:
// v5 flows (the header's count), one v9 packet, and softflowd's IPFIX
// data records without options records, which are the flows decoded.
func (r *relay) units(b []byte) uint64 {
	flows := r.dec.Decode(time.Now(), netip.MustParseAddrPort("127.0.0.1:9"), b, nil)
	switch binary.BigEndian.Uint16(b) {
	case 5:
		return uint64(binary.BigEndian.Uint16(b[2:]))
	case 9:
		return 1
	}
	return uint64(len(flows))
}

// shiftedPcap writes a copy of a (little-endian, classic) pcap with every
// packet d later, and returns its path.
func shiftedPcap(t *testing.T, path string, d time.Duration) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 {
		t.Fatalf("%s: not a little-endian microsecond pcap", path)
	}
	out := append([]byte(nil), b...)
	for off := 24; off+16 <= len(out); {
		sec := binary.LittleEndian.Uint32(out[off:])
		binary.LittleEndian.PutUint32(out[off:], sec+uint32(d/time.Second))
		off += 16 + int(binary.LittleEndian.Uint32(out[off+8:]))
	}
	p := filepath.Join(t.TempDir(), "shifted.pcap")
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
