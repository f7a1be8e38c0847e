package peers

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/internal/testkit"
)

const trafficPcap = "../../testdata/traffic.pcap"

// sink is a UDP listener on the loopback that keeps every datagram.
type sink struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  [][]byte
	last time.Time
	done chan struct{}
}

func newSink(t *testing.T, network, addr string) *sink {
	t.Helper()
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadBuffer(8 << 20)
	s := &sink{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.got = append(s.got, append([]byte(nil), buf[:n]...))
			s.last = time.Now()
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(); <-s.done })
	return s
}

func (s *sink) target() netip.AddrPort {
	return s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// drain waits until nothing has arrived for quiet since drain was called
// (at most max), then closes the listener and returns what arrived.
func (s *sink) drain(quiet, max time.Duration) [][]byte {
	start := time.Now()
	deadline := start.Add(max)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		ref := s.last
		s.mu.Unlock()
		if ref.Before(start) {
			ref = start // datagrams sent before drain may still be unread
		}
		idle := time.Since(ref)
		if idle >= quiet {
			break
		}
		time.Sleep(quiet / 4)
	}
	s.conn.Close()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got
}

func truthTotals(t *testing.T) (ipv4Flows, frames int) {
	t.Helper()
	b, err := os.ReadFile("../../testdata/traffic.truth.json")
	if err != nil {
		t.Fatal(err)
	}
	var truth struct {
		Frames int `json:"frames"`
		Totals map[string]struct {
			Flows int `json:"flows"`
		} `json:"totals"`
	}
	if err := json.Unmarshal(b, &truth); err != nil {
		t.Fatal(err)
	}
	return truth.Totals["ipv4"].Flows, truth.Frames
}

func TestSoftflowd(t *testing.T) {
	ipv4Flows, _ := truthTotals(t)
	cases := []struct {
		name    string
		network string
		addr    string
		version int
		extra   []string
	}{
		{"v5", "udp4", "127.0.0.1:0", 5, nil},
		{"v9", "udp4", "127.0.0.1:0", 9, []string{"-6"}},
		{"ipfix", "udp4", "127.0.0.1:0", 10, []string{"-6"}},
		{"ipfix-biflow", "udp4", "127.0.0.1:0", 10, []string{"-b", "-A", "milli", "-6"}},
		{"ipfix-ipv6-target", "udp6", "[::1]:0", 10, []string{"-6"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if c.network == "udp6" {
				if l, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
					t.Skipf("no IPv6 loopback here: %v", err)
				} else {
					l.Close()
				}
			}
			s := newSink(t, c.network, c.addr)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			if err := RunSoftflowd(ctx, t, trafficPcap, s.target(), c.version, c.extra...); err != nil {
				t.Fatal(err)
			}
			t.Logf("softflowd ran %v", time.Since(start).Round(time.Millisecond))
			got := s.drain(300*time.Millisecond, 3*time.Second)
			if len(got) == 0 {
				t.Fatal("no datagrams arrived")
			}
			records := 0
			for i, d := range got {
				if len(d) < 20 {
					t.Fatalf("datagram %d: %d bytes", i, len(d))
				}
				if v := int(binary.BigEndian.Uint16(d)); v != c.version {
					t.Fatalf("datagram %d: version %d, want %d", i, v, c.version)
				}
				switch c.version {
				case 5:
					n := int(binary.BigEndian.Uint16(d[2:]))
					if len(d) != 24+48*n {
						t.Errorf("datagram %d: v5 count %d but %d bytes", i, n, len(d))
					}
					records += n
				case 10:
					if l := int(binary.BigEndian.Uint16(d[2:])); l != len(d) {
						t.Errorf("datagram %d: IPFIX length field %d, datagram %d bytes", i, l, len(d))
					}
				}
			}
			if c.version == 5 && records != ipv4Flows {
				t.Errorf("v5 records %d, want one per IPv4 flow of the truth file (%d)", records, ipv4Flows)
			}
			t.Logf("%d datagrams", len(got))
		})
	}
}

func TestPmacctSFlow(t *testing.T) {
	_, frames := truthTotals(t)
	for _, rate := range []int{1, 10} {
		t.Run(fmt.Sprintf("rate%d", rate), func(t *testing.T) {
			t.Parallel()
			s := newSink(t, "udp4", "127.0.0.1:0")
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			start := time.Now()
			if err := RunPmacctSFlow(ctx, t, trafficPcap, s.target(), rate); err != nil {
				t.Fatal(err)
			}
			t.Logf("pmacctd ran %v", time.Since(start).Round(time.Millisecond))
			got := s.drain(300*time.Millisecond, 3*time.Second)
			if len(got) == 0 {
				t.Fatal("no datagrams arrived")
			}
			samples := 0
			for i, d := range got {
				if len(d) < 28 {
					t.Fatalf("datagram %d: %d bytes", i, len(d))
				}
				if v := binary.BigEndian.Uint32(d); v != 5 {
					t.Fatalf("datagram %d: sFlow version %d, want 5", i, v)
				}
				// agent address type 1 (IPv4), agent 127.0.0.1, sub-agent ID.
				if at, agent, sub := binary.BigEndian.Uint32(d[4:]), netip.AddrFrom4([4]byte(d[8:12])), binary.BigEndian.Uint32(d[12:]); at != 1 || agent != netip.MustParseAddr("127.0.0.1") || sub != PmacctAgentSubID {
					t.Fatalf("datagram %d: agent type %d address %v sub-agent %d", i, at, agent, sub)
				}
				samples += int(binary.BigEndian.Uint32(d[24:]))
			}
			// pmacct loses the last few samples of a file; sampling is random.
			if samples > frames || (rate == 1 && samples < frames-20) || samples < frames/rate/3 {
				t.Errorf("%d samples at rate 1/%d for %d frames", samples, rate, frames)
			}
			t.Logf("%d datagrams, %d samples", len(got), samples)
			noLeftovers(t)
		})
	}
}

func TestMissingBinary(t *testing.T) {
	saved := lookPath
	lookPath = func(string) (string, error) { return "", exec.ErrNotFound }
	defer func() { lookPath = saved }()
	target := netip.MustParseAddrPort("127.0.0.1:9")
	for name, err := range map[string]error{
		"softflowd": RunSoftflowd(context.Background(), t, trafficPcap, target, 5),
		"pmacctd":   RunPmacctSFlow(context.Background(), t, trafficPcap, target, 1),
	} {
		if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "scripts/deps.sh") || !strings.Contains(err.Error(), name) {
			t.Errorf("%s missing: error %v", name, err)
		}
	}
}

func TestRefusals(t *testing.T) {
	if _, err := Binary("softflowd"); err != nil {
		t.Fatal(err) // the arguments are checked after the binary is found
	}
	ctx := context.Background()
	lo := netip.MustParseAddrPort("127.0.0.1:9")
	cases := map[string]error{
		"not loopback":   RunSoftflowd(ctx, t, trafficPcap, netip.MustParseAddrPort("192.0.2.1:2055"), 5),
		"port 0":         RunSoftflowd(ctx, t, trafficPcap, netip.MustParseAddrPort("127.0.0.1:0"), 5),
		"version":        RunSoftflowd(ctx, t, trafficPcap, lo, 7),
		"control socket": RunSoftflowd(ctx, t, trafficPcap, lo, 9, "-c", "/tmp/x.sock"),
		"no such pcap":   RunSoftflowd(ctx, t, "no-such.pcap", lo, 5),
	}
	for name, err := range cases {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestDeadline(t *testing.T) {
	if _, err := Binary("pmacctd"); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, "udp4", "127.0.0.1:0")
	// pmacctd needs about 4 s after the end of the file: a 1 s deadline kills it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	err := RunPmacctSFlow(ctx, t, trafficPcap, s.target(), 1)
	if err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("error %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v after a 1 s deadline", d)
	}
	noLeftovers(t)
}

// noLeftovers fails if a process still runs in one of this test's temporary
// directories: the exporters run there, and their children inherit it.
func noLeftovers(t *testing.T) {
	t.Helper()
	root := filepath.Dir(t.TempDir())
	var left []string
	gone := testkit.Within(3*time.Second, func() bool {
		left = left[:0]
		procs, _ := filepath.Glob("/proc/[0-9]*/cwd")
		for _, p := range procs {
			if cwd, err := os.Readlink(p); err == nil && strings.HasPrefix(cwd, root+string(filepath.Separator)) {
				left = append(left, filepath.Base(filepath.Dir(p)))
			}
		}
		return len(left) == 0
	})
	if !gone {
		t.Errorf("processes left running in %s: pids %v", root, left)
	}
}

// StartOVS brings up a bridge whose IPFIX reaches the target once packets
// are injected, and its daemons are gone once it is stopped.
func TestOVS(t *testing.T) {
	s := newSink(t, "udp4", "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o, err := StartOVS(ctx, t, OVSConfig{Target: s.target(), ActiveTimeout: 1, ObservationDomain: 3})
	if err != nil {
		t.Fatal(err)
	}
	const pkt = "eth(src=00:00:5e:00:53:01,dst=00:00:5e:00:53:02),eth_type(0x0800),ipv4(src=192.0.2.1,dst=198.51.100.1,proto=17,tos=0,ttl=64,frag=no),udp(src=1,dst=2)"
	if err := o.Receive(ctx, pkt, 64); err != nil {
		t.Fatal(err)
	}
	// The data record arrives after the templates, a second after the packet.
	var data bool
	if !testkit.Within(20*time.Second, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, d := range s.got {
			// An IPFIX message of domain 3 with a data set (ID >= 256) first.
			if len(d) >= 20 && binary.BigEndian.Uint16(d) == 10 && binary.BigEndian.Uint32(d[12:]) == 3 && binary.BigEndian.Uint16(d[16:]) >= 256 {
				data = true
			}
		}
		return data
	}) {
		t.Fatal("no IPFIX data set from OVS")
	}
	o.stop()
	noLeftovers(t)
	if err := o.Receive(ctx, pkt, 64); err == nil {
		t.Error("Receive worked after stop")
	}
}
