//go:build linux

package peers

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/flowhouse/flowhouse/internal/testkit"
)

// SNMPSim is a running snmpsimd (Debian's snmpsim 0.4) serving one
// recording.
type SNMPSim struct {
	Addr      string // 127.0.0.1:port
	Community string // the recording's name without .snmprec
	cmd       *exec.Cmd
}

// Stop ends snmpsimd now (the test's cleanup does it otherwise).
func (s *SNMPSim) Stop() {
	if s.cmd.ProcessState == nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

// StartSnmpsim serves the .snmprec recording (lines OID|type|value) on a
// loopback port as v2c community community until the test ends.
func StartSnmpsim(t testing.TB, recording, community string) *SNMPSim {
	t.Helper()
	bin, err := Binary("snmpsimd")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data, cache := filepath.Join(dir, "data"), filepath.Join(dir, "cache")
	for _, d := range []string{data, cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(recording)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, community+".snmprec"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	port := FreeUDPPort(t)
	s := &SNMPSim{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Community: community}
	args := []string{"--data-dir=" + data, "--cache-dir=" + cache, "--agent-udpv4-endpoint=" + s.Addr,
		"--v2c-arch", "--logging-method=file:" + filepath.Join(dir, "snmpsimd.log")}
	if os.Geteuid() == 0 {
		// snmpsimd refuses to run as root: it drops to nobody, who must
		// read the data and write the cache.
		args = append(args, "--process-user=nobody", "--process-group=nogroup")
		for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(cache, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd = cmd
	t.Cleanup(s.Stop)
	answers := func() bool {
		g := &gosnmp.GoSNMP{Target: "127.0.0.1", Port: uint16(port), Community: community, Version: gosnmp.Version2c, Timeout: 300 * time.Millisecond}
		if err := g.Connect(); err != nil {
			return false
		}
		defer g.Conn.Close()
		res, err := g.Get([]string{"1.3.6.1.2.1.1.5.0"})
		return err == nil && len(res.Variables) == 1 && res.Variables[0].Type == gosnmp.OctetString
	}
	if !testkit.Within(20*time.Second, answers) {
		log, _ := os.ReadFile(filepath.Join(dir, "snmpsimd.log"))
		t.Fatalf("snmpsimd did not answer on %s within 20s; log:\n%s", s.Addr, log)
	}
	return s
}
