//go:build linux

package peers

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"
	"golang.org/x/sys/unix"

	"github.com/flowhouse/flowhouse/internal/testkit"
)

// Real net-snmp agents for the tests: on the host's loopback, or inside a
// network namespace the test creates (for interface names, aliases and
// ARP entries it controls), reached through a relay. Shared by enrich's
// tests and the ARP rules' (analytics/rules).

const snmpdConfTemplate = `agentAddress udp:127.0.0.1:%d
rocommunity  public 127.0.0.1
rocommunity  legacy 127.0.0.1 -V noipnet
rwcommunity  private 127.0.0.1 .1.3.6.1.2.1.31.1.1.1.18
rwcommunity  cachectl 127.0.0.1 .1.3.6.1.4.1.8072.1.5.3
view noipnet included .1
view noipnet excluded .1.3.6.1.2.1.4.35
createUser flowro    SHA     "flowauthpass1" AES     "flowprivpass1"
createUser flowro256 SHA-256 "flowauthpass2" AES-256 "flowprivpass2"
createUser flowauth  SHA     "flowauthpass3"
rouser flowro    authpriv
rouser flowro256 authpriv
rouser flowauth  auth
sysName %s
`

// RequireNetns fails the test unless it can create network namespaces
// and run snmpd: root, ip, snmpd and snmpset.
func RequireNetns(t testing.TB) {
	t.Helper()
	if err := NetnsUnavailable(); err != nil {
		t.Fatal(err)
	}
}

// NetnsUnavailable says why this machine cannot run the namespace
// agents (not root, a tool missing, no network namespaces), or nil.
func NetnsUnavailable() error {
	if os.Geteuid() != 0 {
		return errors.New("this test needs root to create network namespaces (ip netns add); run it as root, as CI does")
	}
	for _, bin := range []string{"ip", "snmpd", "snmpset"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("this test needs %s (scripts/deps.sh installs snmpd, snmp, iproute2): %w", bin, err)
		}
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return fmt.Errorf("network namespaces are not available: %w", err)
	}
	return nil
}

// MustRun runs a command, failing the test on error, and returns its
// combined output.
func MustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var nsSeq atomic.Int64

// NewNetns creates a network namespace with lo up; it is deleted at the end.
func NewNetns(t testing.TB) string {
	t.Helper()
	RequireNetns(t)
	name := fmt.Sprintf("fh-lab-%d-%d", os.Getpid(), nsSeq.Add(1))
	MustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	MustRun(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// FreeUDPPort is a UDP port of 127.0.0.1 free a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// SNMPAgent is a running snmpd.
type SNMPAgent struct {
	Addr string // host:port reachable from the test
	NS   string // namespace, "" on the host
	Port int    // port inside its namespace
}

// StartSnmpd runs snmpd (in ns when not empty) until the test ends.
func StartSnmpd(t testing.TB, ns, sysName string) *SNMPAgent {
	t.Helper()
	return StartSnmpdWith(t, ns, sysName, "")
}

// StartSnmpdWith is StartSnmpd with more lines of snmpd.conf (e.g. an
// AgentX master).
func StartSnmpdWith(t testing.TB, ns, sysName, extraConf string) *SNMPAgent {
	t.Helper()
	if _, err := exec.LookPath("snmpd"); err != nil {
		t.Fatalf("snmpd is missing (apt-get install snmpd; scripts/deps.sh does): %v", err)
	}
	dir := t.TempDir()
	port := 1161
	if ns == "" {
		port = FreeUDPPort(t)
	}
	conf := filepath.Join(dir, "snmpd.conf")
	if err := os.WriteFile(conf, append(fmt.Appendf(nil, snmpdConfTemplate, port, sysName), extraConf...), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"snmpd", "-f", "-C", "-c", conf, "-Lf", filepath.Join(dir, "snmpd.log"), "-p", filepath.Join(dir, "snmpd.pid"), "-M", "/dev/null", "-m", ""}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "SNMP_PERSISTENT_DIR="+filepath.Join(dir, "persist"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	a := &SNMPAgent{NS: ns, Port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	if ns != "" {
		a.Addr = startRelay(t, ns, port)
	}
	// Ready when it answers.
	answers := func() bool {
		host, p, _ := net.SplitHostPort(a.Addr)
		pn, _ := strconv.Atoi(p)
		g := &gosnmp.GoSNMP{Target: host, Port: uint16(pn), Community: "public", Version: gosnmp.Version2c, Timeout: 200 * time.Millisecond, Retries: 0}
		if err := g.Connect(); err != nil {
			return false
		}
		_, err := g.Get([]string{"1.3.6.1.2.1.1.5.0"})
		g.Conn.Close()
		return err == nil
	}
	if !testkit.Within(10*time.Second, answers) {
		log, _ := os.ReadFile(filepath.Join(dir, "snmpd.log"))
		t.Fatalf("snmpd did not answer on %s within 10s; log:\n%s", a.Addr, log)
	}
	a.NoCache(t)
	return a
}

// SetAlias sets ifAlias of ifIndex with the agent's write community.
func (a *SNMPAgent) SetAlias(t testing.TB, ifIndex uint32, alias string) {
	t.Helper()
	args := []string{"snmpset", "-v2c", "-c", "private", "-On", fmt.Sprintf("127.0.0.1:%d", a.Port),
		fmt.Sprintf("1.3.6.1.2.1.31.1.1.1.18.%d", ifIndex), "s", alias}
	if a.NS != "" {
		args = append([]string{"ip", "netns", "exec", a.NS}, args...)
	}
	MustRun(t, args...)
}

// NoCache sets snmpd's cache timeouts (NET-SNMP-AGENT-MIB nsCacheTimeout)
// of ipNetToPhysicalTable and ifTable to 0, so that a change made by the
// test shows in the next poll, not 5 s later.
func (a *SNMPAgent) NoCache(t testing.TB) {
	t.Helper()
	for _, table := range []string{"1.3.6.1.2.1.4.35", "1.3.6.1.2.1.2.2"} {
		args := []string{"snmpset", "-v2c", "-c", "cachectl", "-On", fmt.Sprintf("127.0.0.1:%d", a.Port),
			"1.3.6.1.4.1.8072.1.5.3.1.2." + table, "i", "0"}
		if a.NS != "" {
			args = append([]string{"ip", "netns", "exec", a.NS}, args...)
		}
		MustRun(t, args...)
	}
}

// inNetns runs fn on an OS thread moved into namespace ns; sockets fn
// creates stay in ns.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread stays locked and dies with the goroutine.
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// startRelay forwards UDP from a host loopback port to 127.0.0.1:port in
// ns, one namespace socket per client, datagram for datagram.
func startRelay(t testing.TB, ns string, port int) string {
	t.Helper()
	l, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		peers = map[string]*net.UDPConn{}
		done  = make(chan struct{})
	)
	t.Cleanup(func() {
		close(done)
		l.Close()
		mu.Lock()
		for _, c := range peers {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := l.ReadFromUDP(buf)
			if err != nil {
				return
			}
			mu.Lock()
			c := peers[from.String()]
			if c == nil {
				err = inNetns(ns, func() error {
					var err error
					c, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
					return err
				})
				if err != nil {
					mu.Unlock()
					continue
				}
				peers[from.String()] = c
				go func(c *net.UDPConn, to *net.UDPAddr) {
					b := make([]byte, 65536)
					for {
						n, err := c.Read(b)
						if err != nil {
							return
						}
						l.WriteToUDP(b[:n], to)
					}
				}(c, from)
			}
			mu.Unlock()
			c.Write(bytes.Clone(buf[:n]))
		}
	}()
	return l.LocalAddr().String()
}

// IfIndexOf reads an interface's ifIndex in ns.
func IfIndexOf(t testing.TB, ns, name string) uint32 {
	t.Helper()
	out := MustRun(t, "ip", "-n", ns, "-o", "link", "show", "dev", name)
	idx, _, _ := strings.Cut(out, ":")
	n, err := strconv.Atoi(strings.TrimSpace(idx))
	if err != nil {
		t.Fatalf("ifindex of %s in %s: %q", name, ns, out)
	}
	return uint32(n)
}

// LabNamespace is a namespace with named interfaces and fixed neighbours:
// wan0 (10.255.2.1/24) and lan0 (10.255.3.1/24), a veth pair, and the
// neighbours given as ip -> mac on lan0.
func LabNamespace(t testing.TB, wan, lan string, neigh map[string]string) string {
	t.Helper()
	ns := NewNetns(t)
	MustRun(t, "ip", "-n", ns, "link", "add", wan, "type", "veth", "peer", "name", lan)
	MustRun(t, "ip", "-n", ns, "addr", "add", "10.255.2.1/24", "dev", wan)
	MustRun(t, "ip", "-n", ns, "addr", "add", "10.255.3.1/24", "dev", lan)
	MustRun(t, "ip", "-n", ns, "link", "set", wan, "up")
	MustRun(t, "ip", "-n", ns, "link", "set", lan, "up")
	for ip, mac := range neigh {
		MustRun(t, "ip", "-n", ns, "neigh", "replace", ip, "lladdr", mac, "dev", lan, "nud", "permanent")
	}
	return ns
}
