//go:build linux

package peers

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/internal/testkit"
)

// LLDPLab is two switches in network namespaces joined by a veth pair,
// each running lldpd 1.0: sw-a (veth-a) with snmpd as AgentX master and
// lldpd as its subagent, so that sw-a's LLDP-MIB lists sw-b (veth-b).
type LLDPLab struct {
	// Agent is sw-a's snmpd (community public), reached from the test.
	Agent *SNMPAgent
	// NSA and NSB are the namespaces of sw-a and sw-b.
	NSA, NSB string
	// IfIndexA is veth-a's ifIndex in NSA, as `ip -n NSA link` shows it.
	IfIndexA uint32
	dir      string
	sockA    string
	sockB    string
	b        *exec.Cmd
}

// RequireLLDP fails the test unless lldpd, lldpcli and the namespace
// agents are available.
func RequireLLDP(t testing.TB) {
	t.Helper()
	RequireNetns(t)
	Require(t, "lldpd", "lldpcli")
}

// StartLLDPSwitches starts sw-a and sw-b and waits until sw-a's LLDP-MIB
// shows sw-b on veth-a; everything stops at the end of the test.
//
// Unlike the recipe of /work/shared/peers (a link-local veth from the
// root namespace), snmpd is reached through the in-process relay of
// StartSnmpd: a root-namespace interface name and subnet would collide
// between test binaries running at once.
func StartLLDPSwitches(t testing.TB) *LLDPLab {
	t.Helper()
	RequireLLDP(t)
	l := &LLDPLab{NSA: NewNetns(t), NSB: NewNetns(t), dir: t.TempDir()}
	// lldpcli runs setuid _lldpd (lldpd runs it at start to read -O):
	// the socket's directory and its parents must be traversable.
	for d := l.dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	MustRun(t, "ip", "link", "add", "veth-a", "netns", l.NSA, "type", "veth", "peer", "name", "veth-b", "netns", l.NSB)
	MustRun(t, "ip", "-n", l.NSA, "link", "set", "veth-a", "up")
	MustRun(t, "ip", "-n", l.NSB, "link", "set", "veth-b", "up")
	MustRun(t, "ip", "-n", l.NSA, "addr", "add", "192.0.2.1/30", "dev", "veth-a")
	MustRun(t, "ip", "-n", l.NSB, "addr", "add", "192.0.2.2/30", "dev", "veth-b")
	l.IfIndexA = IfIndexOf(t, l.NSA, "veth-a")
	if _, err := os.Stat("/run/lldpd"); errors.Is(err, os.ErrNotExist) {
		// lldpd's privilege-separation chroot, shared by every lldpd.
		t.Cleanup(func() { os.Remove("/run/lldpd/etc/localtime"); os.Remove("/run/lldpd/etc"); os.Remove("/run/lldpd") })
	}
	agentx := filepath.Join(l.dir, "agentx.sock")
	// snmpd before lldpd: a subagent started first retries only every 15 s.
	l.Agent = StartSnmpdWith(t, l.NSA, "sw-a", "master agentx\nagentXSocket "+agentx+"\n")
	l.sockA, l.sockB = filepath.Join(l.dir, "a.sock"), filepath.Join(l.dir, "b.sock")
	l.b = l.startLLDPD(t, l.NSB, "sw-b", l.sockB, "veth-b")
	l.startLLDPD(t, l.NSA, "sw-a", l.sockA, "veth-a", "-x", "-X", agentx)
	l.WaitNeighbor(t, "sw-b")
	return l
}

func (l *LLDPLab) startLLDPD(t testing.TB, ns, host, sock, ifname string, extra ...string) *exec.Cmd {
	t.Helper()
	conf := filepath.Join(l.dir, host+".conf")
	body := "configure system hostname " + host + "\nconfigure lldp tx-interval 1\nconfigure lldp portidsubtype ifname\n"
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"netns", "exec", ns, "lldpd", "-d", "-u", sock, "-O", conf, "-I", ifname}, extra...)
	cmd := exec.Command("ip", args...)
	out, err := os.Create(filepath.Join(l.dir, host+".out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopByPID(cmd); out.Close() })
	return cmd
}

// stopByPID ends lldpd (ip netns exec execs it: the PID is lldpd's
// monitor) and reaps it; its privilege-separated child exits with it.
func stopByPID(cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// lldpcli runs lldpcli against a switch's lldpd.
func (l *LLDPLab) lldpcli(t testing.TB, sock string, args ...string) string {
	t.Helper()
	return MustRun(t, append([]string{"lldpcli", "-u", sock}, args...)...)
}

// neighbors is sw-a's `lldpcli show neighbors -f keyvalue`; "" while
// lldpd is not listening yet.
func (l *LLDPLab) neighbors() string {
	out, _ := exec.Command("lldpcli", "-u", l.sockA, "show", "neighbors", "-f", "keyvalue").CombinedOutput()
	return string(out)
}

// remSysNames is sw-a's lldpRemSysName column as snmpwalk shows it.
func (l *LLDPLab) remSysNames() string {
	out, _ := exec.Command("ip", "netns", "exec", l.NSA, "snmpwalk", "-v2c", "-c", "public", "-On",
		fmt.Sprintf("127.0.0.1:%d", l.Agent.Port), "1.0.8802.1.1.2.1.4.1.1.9").CombinedOutput()
	return string(out)
}

// WaitNeighbor waits until sw-a's lldpd lists a neighbour named sysName,
// and its LLDP-MIB (through AgentX) does.
func (l *LLDPLab) WaitNeighbor(t testing.TB, sysName string) {
	t.Helper()
	var out, walk string
	if !testkit.Within(30*time.Second, func() bool {
		out = l.neighbors()
		if !strings.Contains(out, ".chassis.name="+sysName+"\n") {
			return false
		}
		walk = l.remSysNames()
		return strings.Contains(walk, "\""+sysName+"\"")
	}) {
		t.Fatalf("sw-a does not show %s within 30s; lldpcli says:\n%s\nsnmpwalk lldpRemSysName:\n%s", sysName, out, walk)
	}
}

// WaitNoNeighbor waits until sw-a's lldpd lists no neighbour.
func (l *LLDPLab) WaitNoNeighbor(t testing.TB) {
	t.Helper()
	var out string
	if !testkit.Within(15*time.Second, func() bool {
		out = l.neighbors()
		return !strings.Contains(out, ".chassis.name=")
	}) {
		t.Fatalf("sw-a still hears a neighbour after 15s:\n%s", out)
	}
}

// SetHostnameB renames sw-b (lldpcli configure system hostname) and waits
// until sw-a hears the new name.
func (l *LLDPLab) SetHostnameB(t testing.TB, name string) {
	t.Helper()
	l.lldpcli(t, l.sockB, "configure", "system", "hostname", name)
	l.WaitNeighbor(t, name)
}

// SetPortB sets the port ID (subtype local) and description sw-b sends
// from veth-b, and waits until sw-a hears the new port ID.
func (l *LLDPLab) SetPortB(t testing.TB, id, desc string) {
	t.Helper()
	l.lldpcli(t, l.sockB, "configure", "ports", "veth-b", "lldp", "portidsubtype", "local", id, "description", desc)
	var out string
	if !testkit.Within(15*time.Second, func() bool {
		out = l.neighbors()
		return strings.Contains(out, ".port.local="+id+"\n")
	}) {
		t.Fatalf("sw-a does not hear port %s within 15s:\n%s", id, out)
	}
}

// StopB stops sw-b's lldpd (which sends a shutdown LLDPDU) and waits until
// sw-a has forgotten it.
func (l *LLDPLab) StopB(t testing.TB) {
	t.Helper()
	stopByPID(l.b)
	l.WaitNoNeighbor(t)
}

// String names the lab in failures.
func (l *LLDPLab) String() string { return fmt.Sprintf("lldp lab %s/%s", l.NSA, l.NSB) }
