package collector

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// holdEnv makes the test binary a helper process that holds a UDP socket
// with SO_REUSEPORT, as another flowhouse would (TestHelperHoldUDP).
const holdEnv = "COLLECTOR_TEST_HOLD_UDP"

func reusePortConfig() net.ListenConfig {
	return net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
}

// TestHelperHoldUDP is not a test: run with holdEnv set, it binds that
// address with SO_REUSEPORT, prints the bound address and holds it until
// its standard input closes.
func TestHelperHoldUDP(t *testing.T) {
	addr := os.Getenv(holdEnv)
	if addr == "" {
		t.Skip("helper process only")
	}
	network := "udp"
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Is4() {
		network = "udp4" // "udp" would make 0.0.0.0 the dual-stack wildcard
	}
	lc := reusePortConfig()
	pc, err := lc.ListenPacket(context.Background(), network, addr)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(pc.LocalAddr().String())
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// holdInOtherProcess starts the helper holding addr and returns its pid
// and the port it bound; the helper ends with the test.
func holdInOtherProcess(t *testing.T, addr string) (int, uint16) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldUDP$")
	cmd.Env = append(os.Environ(), holdEnv+"="+addr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper: %v", err)
		}
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	var bound string
	select {
	case bound = <-line:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("helper did not bind within 10s")
	}
	ap, err := netip.ParseAddrPort(bound)
	if err != nil {
		t.Fatalf("helper: %q", bound)
	}
	return cmd.Process.Pid, ap.Port()
}

func startCollector(t *testing.T, addr string) (*Collector, error) {
	t.Helper()
	cfg := testConfig()
	cfg.Listeners = []string{addr}
	c, err := New(cfg, Deps{Sink: &memSink{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		return nil, err
	}
	t.Cleanup(c.Stop)
	return c, nil
}

// A second collector on an address in use is refused, and the message
// names who holds it; SO_REUSEPORT alone would have let it share.
func TestSecondCollectorOnAnAddressIsRefused(t *testing.T) {
	self := fmt.Sprintf("this process (pid %d", os.Getpid())
	tests := []struct {
		name string
		// hold takes an address and returns the one to start on, and what
		// the error must say.
		hold func(t *testing.T) (addr, want string)
	}{
		{"another collector of this process", func(t *testing.T) (string, string) {
			c, err := startCollector(t, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			return c.Addrs()[0].String(), self
		}},
		{"a plain socket of this process", func(t *testing.T) (string, string) {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pc.Close() })
			return pc.LocalAddr().String(), self
		}},
		{"another process sharing with SO_REUSEPORT", func(t *testing.T) (string, string) {
			pid, port := holdInOtherProcess(t, "127.0.0.1:0")
			return fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("pid %d (%s", pid, os.Args[0])
		}},
		{"another process on the IPv4 wildcard", func(t *testing.T) (string, string) {
			pid, port := holdInOtherProcess(t, "0.0.0.0:0")
			return fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("pid %d (%s -test.run=^TestHelperHoldUDP$) on 0.0.0.0:%d", pid, os.Args[0], port)
		}},
		{"another process on the dual-stack wildcard", func(t *testing.T) (string, string) {
			pid, port := holdInOtherProcess(t, "[::]:0")
			return fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("pid %d (%s -test.run=^TestHelperHoldUDP$) on [::]:%d", pid, os.Args[0], port)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, want := tt.hold(t)
			c, err := startCollector(t, addr)
			if err == nil {
				t.Fatalf("second collector started on %s (%v)", addr, c.Addrs())
			}
			if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "listen on "+addr+": already used by "+want) {
				t.Errorf("error %q\ndoes not name %q", err, want)
			}
			t.Log(err)
		})
	}
}

// What is not a conflict still starts: port 0, distinct addresses on one
// port, an address again once its collector stopped.
func TestCollectorsThatDoNotConflictStart(t *testing.T) {
	a, err := startCollector(t, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := startCollector(t, "127.0.0.1:0"); err != nil {
		t.Errorf("a second collector on port 0: %v", err)
	}
	port := a.Addrs()[0].Port()
	if _, err := startCollector(t, fmt.Sprintf("127.0.0.2:%d", port)); err != nil {
		t.Errorf("another loopback address on the same port: %v", err)
	}
	a.Stop()
	if _, err := startCollector(t, fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		t.Errorf("the address again after its collector stopped: %v", err)
	}
}

// Two collectors that pass the probe at the same moment both bind; the
// check after binding refuses them rather than letting both run.
func TestCheckAfterBindingCatchesAConcurrentStart(t *testing.T) {
	l, err := openListener(context.Background(), "127.0.0.1:0", 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	if err := l.checkAlone(); err != nil {
		t.Fatalf("alone: %v", err)
	}
	lc := reusePortConfig()
	other, err := lc.ListenPacket(context.Background(), "udp", l.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	err = l.checkAlone()
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("this process (pid %d", os.Getpid())) {
		t.Errorf("after another socket joined: %v", err)
	}
}

func TestParseProcNetUDP(t *testing.T) {
	const table = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 0100007F:0807 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 4242 2 0000000000000000 0
  124: 00000000:10CB 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4243 2 0000000000000000 0
  125: 0100007F:0808 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4244 2 0000000000000000 0
  126: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   106        0 4245 2 0000000000000000 0
  127: 00000000000000000000000001000000:0BB9 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   106        0 4246 2 0000000000000000 0
  128: 0000000000000000FFFF00000100007F:0BBA 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   106        0 4247 2 0000000000000000 0
  129: garbage
`
	want := []udpSocket{
		{netip.MustParseAddrPort("127.0.0.1:2055"), 1000, 4242},
		{netip.MustParseAddrPort("0.0.0.0:4299"), 0, 4243},
		// 125 is connected: it receives from its peer only.
		{netip.MustParseAddrPort("[::]:3000"), 106, 4245},
		{netip.MustParseAddrPort("[::1]:3001"), 106, 4246},
		{netip.MustParseAddrPort("127.0.0.1:3002"), 106, 4247},
	}
	got := parseProcNetUDP([]byte(table))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

func TestOverlaps(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"127.0.0.1", "127.0.0.2", false},
		{"0.0.0.0", "127.0.0.1", true},
		{"127.0.0.1", "0.0.0.0", true},
		{"::", "127.0.0.1", true},
		{"::", "::1", true},
		{"0.0.0.0", "::1", false},
		{"::1", "127.0.0.1", false},
		{"::ffff:127.0.0.1", "127.0.0.1", true},
		{"0.0.0.0", "::", true},
	} {
		if got := overlaps(netip.MustParseAddr(tt.a), netip.MustParseAddr(tt.b)); got != tt.want {
			t.Errorf("overlaps(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
