// Package peers runs real flow exporters for flowhouse's end-to-end tests:
// softflowd (NetFlow v1/v5/v9, IPFIX) and pmacct's pmacctd with the sfprobe
// plugin (sFlow v5), which replay a capture file (testdata/traffic.pcap),
// and Open vSwitch's IPFIX exporter (StartOVS), into which a test injects
// packets. Each sends what it exports to a UDP port on the loopback, where
// the test's collector listens.
//
// The exporters are Debian packages that scripts/deps.sh installs. When one
// is missing, the Run functions return an error wrapping ErrNotInstalled
// that says so; tests fail on it rather than skip, so that a machine without
// the peers cannot pass the end-to-end tests silently.
//
// Every run is bounded: by the context's deadline, or DefaultTimeout when it
// has none. The exporter runs in its own process group, which is killed when
// the run ends early and swept for leftovers (pmacctd's plugin processes)
// when it ends normally. Targets must be loopback addresses.
package peers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// DefaultTimeout bounds a run whose context has no deadline. softflowd
// replays testdata/traffic.pcap in well under a second; pmacctd exits about
// 4 s after the end of the file.
const DefaultTimeout = 60 * time.Second

// PmacctAgentSubID is the sFlow sub-agent ID RunPmacctSFlow configures. The
// agent address is the target's loopback address (127.0.0.1 or ::1).
const PmacctAgentSubID = 7

// ErrNotInstalled reports an exporter binary that is not on this machine.
var ErrNotInstalled = errors.New("not installed (run scripts/deps.sh)")

// sbinDirs are searched after $PATH: Debian installs both exporters in
// /usr/sbin, which a non-root user's PATH often lacks.
var sbinDirs = []string{"/usr/sbin", "/sbin", "/usr/local/sbin"}

// lookPath finds a binary; a variable so tests can pretend one is missing.
var lookPath = func(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range sbinDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// Binary returns the path of an exporter binary ("softflowd", "pmacctd"), or
// an error wrapping ErrNotInstalled.
func Binary(name string) (string, error) {
	p, err := lookPath(name)
	if err != nil {
		return "", fmt.Errorf("peers: %s %w", name, ErrNotInstalled)
	}
	return p, nil
}

// Require fails the test at once unless every named binary is installed.
// Call it from the test goroutine.
func Require(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := Binary(n); err != nil {
			t.Fatal(err)
		}
	}
}

// RunSoftflowd replays pcapPath through softflowd and exports to target:
//
//	softflowd -d -a -r PCAP -n TARGET -v VERSION -p TMP/softflowd.pid EXTRA...
//
// version is 1, 5, 9 or 10 (IPFIX). softflowd tracks IPv6 flows with v9 and
// IPFIX only when given "-6" (pass it in extraArgs); other useful extras:
// "-b" (IPFIX biflow), "-A", "milli" (absolute times), "-T", "ether" (VLAN and
// MAC fields), "-t", "maxlife=60". With -a, flow times follow the capture's
// timestamps. softflowd exports everything at the end of the file and exits;
// RunSoftflowd returns then, or when ctx ends. "-c" and "-i" are refused:
// after -r, -c brings the control socket back and softflowd never exits.
//
// It may be called from any goroutine; it logs through t.
func RunSoftflowd(ctx context.Context, t testing.TB, pcapPath string, target netip.AddrPort, version int, extraArgs ...string) error {
	t.Helper()
	_, err := RunSoftflowdCounted(ctx, t, pcapPath, target, version, extraArgs...)
	return err
}

// SoftflowdExport is what softflowd says it exported in a run.
type SoftflowdExport struct {
	Flows, Records, Packets int
}

// RunSoftflowdCounted is RunSoftflowd, returning what softflowd reports
// it sent ("Flows exported: F (R records) in P packets"), so that a test
// can wait for every datagram to arrive.
func RunSoftflowdCounted(ctx context.Context, t testing.TB, pcapPath string, target netip.AddrPort, version int, extraArgs ...string) (SoftflowdExport, error) {
	t.Helper()
	var x SoftflowdExport
	bin, err := Binary("softflowd")
	if err != nil {
		return x, err
	}
	if err := checkTarget(target); err != nil {
		return x, err
	}
	if !slices.Contains([]int{1, 5, 9, 10}, version) {
		return x, fmt.Errorf("peers: softflowd export version %d: want 1, 5, 9 or 10", version)
	}
	for _, a := range extraArgs {
		if a == "-c" || a == "-i" || a == "-r" || a == "-n" || a == "-v" {
			return x, fmt.Errorf("peers: softflowd argument %q is not allowed here (RunSoftflowd sets -r, -n and -v; -c after -r makes softflowd hang)", a)
		}
	}
	pcap, err := inputFile(pcapPath)
	if err != nil {
		return x, err
	}
	dir := t.TempDir()
	args := []string{"-d", "-a", "-r", pcap, "-n", target.String(), "-v", strconv.Itoa(version),
		"-p", filepath.Join(dir, "softflowd.pid")}
	args = append(args, extraArgs...)
	out, err := run(ctx, t, bin, args, dir)
	if err != nil {
		return x, err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Flows exported:") {
			t.Logf("peers: softflowd -v %d to %v: %s", version, target, line)
			if _, err := fmt.Sscanf(line, "Flows exported: %d (%d records) in %d packets", &x.Flows, &x.Records, &x.Packets); err != nil {
				return x, fmt.Errorf("peers: softflowd's summary %q: %w", line, err)
			}
		}
	}
	return x, nil
}

// RunPmacctSFlow replays pcapPath through pmacctd's sfprobe plugin, which
// sends sFlow v5 to target with the given sampling rate (1 = every packet).
// The configuration goes to t.TempDir():
//
//	daemonize: false
//	pcap_savefile: PCAP
//	pcap_savefile_wait: false
//	plugins: sfprobe[sf]
//	sfprobe_receiver[sf]: TARGET
//	sfprobe_agentip[sf]: 127.0.0.1 (::1 for an IPv6 target)
//	sfprobe_agentsubid[sf]: 7
//	sampling_rate[sf]: RATE
//
// pmacctd exits by itself about 4 s after the end of the file. It sends flow
// samples (raw packet header + extended switch data, ifIndex 0x3fffffff),
// and loses the last few samples of the file. With pcap_savefile_wait true
// and a signal it would send duplicates, hence false.
//
// It may be called from any goroutine; it logs through t.
func RunPmacctSFlow(ctx context.Context, t testing.TB, pcapPath string, target netip.AddrPort, samplingRate int) error {
	t.Helper()
	bin, err := Binary("pmacctd")
	if err != nil {
		return err
	}
	if err := checkTarget(target); err != nil {
		return err
	}
	if samplingRate < 1 {
		return fmt.Errorf("peers: sampling rate %d: want 1 or more", samplingRate)
	}
	pcap, err := inputFile(pcapPath)
	if err != nil {
		return err
	}
	dir := t.TempDir()
	agent := "127.0.0.1"
	if target.Addr().Is6() && !target.Addr().Is4In6() {
		agent = "::1"
	}
	logFile := filepath.Join(dir, "pmacctd.log")
	conf := strings.Join([]string{
		"daemonize: false",
		"pidfile: " + filepath.Join(dir, "pmacctd.pid"),
		"logfile: " + logFile,
		"pcap_savefile: " + pcap,
		"pcap_savefile_wait: false",
		"plugins: sfprobe[sf]",
		"sfprobe_receiver[sf]: " + target.String(),
		"sfprobe_agentip[sf]: " + agent,
		"sfprobe_agentsubid[sf]: " + strconv.Itoa(PmacctAgentSubID),
		"sampling_rate[sf]: " + strconv.Itoa(samplingRate),
		"",
	}, "\n")
	confFile := filepath.Join(dir, "pmacctd.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		return err
	}
	_, err = run(ctx, t, bin, []string{"-f", confFile}, dir)
	log, _ := os.ReadFile(logFile)
	var exit *exec.ExitError
	if err != nil && ctx.Err() == nil && errors.As(err, &exit) && exit.ExitCode() == 1 && pmacctRaceExit(log) {
		t.Logf("peers: pmacctd exited with status 1 after a normal end of file (its core noticed the plugin's exit first); taken as success")
		return nil
	}
	if err != nil && len(log) > 0 {
		err = fmt.Errorf("%w\npmacctd.log:\n%s", err, tail(log, 4096))
	}
	return err
}

// pmacctRaceExit recognises pmacctd 1.7's racy shutdown at the end of a
// savefile: the sfprobe plugin stops on the core's request, and when the
// core sees the plugin gone before it exits itself, it logs "no more plugins
// active" and exits with status 1 instead of 0. Everything was sent.
func pmacctRaceExit(log []byte) bool {
	s := string(log)
	return strings.Contains(s, "Shutting down on user request") &&
		strings.Contains(s, "no more plugins active. Shutting down.") &&
		!strings.Contains(s, "ERROR")
}

func checkTarget(target netip.AddrPort) error {
	if !target.IsValid() || target.Port() == 0 || !target.Addr().Unmap().IsLoopback() {
		return fmt.Errorf("peers: target %v: want a loopback address (127.0.0.1 or ::1) and a port", target)
	}
	return nil
}

func inputFile(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("peers: capture to replay: %w", err)
	}
	return abs, nil
}

// run runs one exporter to completion, bounded by ctx (or DefaultTimeout),
// in its own process group, and returns its combined output.
func run(ctx context.Context, t testing.TB, bin string, args []string, dir string) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	setProcessGroup(cmd)
	cmd.WaitDelay = 2 * time.Second
	name := filepath.Base(bin)
	t.Logf("peers: running %s %s", bin, strings.Join(args, " "))
	start := time.Now()
	err := cmd.Run()
	if cmd.Process != nil {
		killProcessGroup(cmd.Process.Pid) // leftovers, e.g. pmacctd's plugin
	}
	switch {
	case ctx.Err() != nil:
		return out.Bytes(), fmt.Errorf("peers: %s did not finish within its deadline (%v elapsed; %v), killed\noutput:\n%s",
			name, time.Since(start).Round(time.Millisecond), ctx.Err(), tail(out.Bytes(), 4096))
	case err != nil:
		return out.Bytes(), fmt.Errorf("peers: %s: %w\noutput:\n%s", name, err, tail(out.Bytes(), 4096))
	}
	return out.Bytes(), nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return append([]byte("..."), b[len(b)-n:]...)
	}
	return b
}
