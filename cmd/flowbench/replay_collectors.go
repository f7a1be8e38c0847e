package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flowhouse/flowhouse/flowgen/replay"
)

var loopbackIP = netip.MustParseAddr("127.0.0.1")

func startReplayCollector(ctx context.Context, o options, env *replayEnvironment, name string) (replayCollector, error) {
	switch name {
	case "embedded", "server":
		return fhReplay{o: o, env: env, name: name}, nil
	case "goflow2":
		return perStep{start: func() (*extCollector, error) { return startGoflow2(ctx, env) }}, nil
	case "nfcapd":
		return perStep{start: func() (*extCollector, error) { return startNfcapd(ctx, env) }}, nil
	}
	return nil, fmt.Errorf("unknown collector %q", name)
}

// fhReplay runs flowhouse serve afresh for each step, in a database (or
// embedded data directory) of its own, as the ingest stage does: what a
// step delivered is the rows in the database once serve has stopped (it
// inserts what it still holds before it exits).
type fhReplay struct {
	o    options
	env  *replayEnvironment
	name string
}

func (f fhReplay) stop() error { return nil }

func (f fhReplay) target() (storeTarget, func(), error) {
	if f.name == "server" {
		return storeTarget{name: "server", addr: f.env.server.Addr()}, func() {}, nil
	}
	lib, err := filepath.Abs(f.o.library)
	if err != nil {
		return storeTarget{}, nil, err
	}
	dir, err := os.MkdirTemp(f.env.tmp, "embedded-")
	if err != nil {
		return storeTarget{}, nil, err
	}
	return storeTarget{name: "embedded", library: lib, path: dir}, func() { os.RemoveAll(dir) }, nil
}

func (f fhReplay) step(ctx context.Context, send func(netip.AddrPort) (*replay.Report, error)) (ReplayStep, error) {
	var st ReplayStep
	target, done, err := f.target()
	if err != nil {
		return st, err
	}
	defer done()
	f.env.runs++
	database := fmt.Sprintf("replay_%d", f.env.runs)
	srv, err := startServe(ctx, f.o, target, database, disableRulesEnv()...)
	if err != nil {
		return st, err
	}
	defer srv.stop()
	serverPid := 0
	if f.name == "server" {
		serverPid = f.env.server.Pid()
	}
	cpu0, _ := processCPU(srv.pid())
	ch0, _ := processCPU(serverPid)
	k0 := udpReceiveErrors()
	rep, err := send(netip.AddrPortFrom(loopbackIP, uint16(srv.udpPort)))
	if err != nil {
		return st, err
	}
	st.fromReplay(rep)
	sendEnd := time.Now()
	// What it has not inserted after 10 s it inserts when it stops.
	_, err = waitStable(ctx, func() (uint64, bool, error) { return fhProgress(srv) }, fhDrain)
	st.DrainSeconds = time.Since(sendEnd).Seconds()
	st.KernelDrops = udpReceiveErrors() - k0
	if err != nil {
		return st, err
	}
	srv.stop()
	if ps := srv.cmd.ProcessState; ps != nil {
		st.CPUSeconds = (ps.UserTime() + ps.SystemTime()).Seconds() - cpu0
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			st.PeakRSSMiB = float64(ru.Maxrss) / 1024 // KiB on Linux
		}
	}
	if st.Delivered, err = target.countRows(ctx, database); err != nil {
		return st, fmt.Errorf("counting the stored rows: %w", err)
	}
	if serverPid > 0 {
		ch1, _ := processCPU(serverPid)
		st.ServerCPUSeconds = ch1 - ch0
	}
	return st, nil
}

// fhDrain bounds the wait for flowhouse to insert what it holds and to
// replay what it spilled, before it is stopped.
const fhDrain = 30 * time.Second

// fhProgress is the rows inserted, and whether flows are still on their
// way: datagrams queued for decoding, decoded flows neither inserted nor
// dropped yet (in the batcher, or spilled to the spool by backpressure).
func fhProgress(srv *served) (uint64, bool, error) {
	m, err := scrape(srv.httpAddr)
	inserted := rowsStored(m)
	done := inserted + m["flowhouse_store_rows_dropped_total"] + m["flowhouse_spool_rows_dropped_total"]
	busy := m["flowhouse_collector_queue_depth"] > 0 || m["flowhouse_spool_segments_pending"] > 0 ||
		done < m["flowhouse_collector_flows_total"]
	return uint64(inserted), busy, err
}

func (st *ReplayStep) fromReplay(r *replay.Report) {
	st.Density, st.Sent, st.Datagrams, st.Achieved = r.Density, r.Flows, r.Datagrams, r.FlowsPerSecond
}

// waitStable polls get until it is not busy and has not moved for 1 s, or
// most has passed, and returns its last value. While busy it waits
// however long the value stands still: a starved server's insert of one
// batch takes seconds.
func waitStable(ctx context.Context, get func() (uint64, bool, error), most time.Duration) (uint64, error) {
	start, moved := time.Now(), time.Now()
	last, busy, err := get()
	for err == nil && (busy || time.Since(moved) < time.Second) && time.Since(start) < most {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		var n uint64
		if n, busy, err = get(); n != last {
			last, moved = n, time.Now()
		}
	}
	return last, err
}

// perStep is a collector started afresh for each step (goflow2, nfcapd:
// they start in milliseconds, and their outputs are counted per process).
type perStep struct {
	start func() (*extCollector, error)
}

func (p perStep) stop() error { return nil }

func (p perStep) step(ctx context.Context, send func(netip.AddrPort) (*replay.Report, error)) (ReplayStep, error) {
	var st ReplayStep
	c, err := p.start()
	if err != nil {
		return st, err
	}
	defer c.proc.kill()
	cpu0, _ := processCPU(c.proc.pid())
	k0 := udpReceiveErrors()
	rep, err := send(netip.AddrPortFrom(loopbackIP, uint16(c.port)))
	if err != nil {
		return st, err
	}
	st.fromReplay(rep)
	sendEnd := time.Now()
	// Drained when the count stops moving (goflow2's lines) or the
	// process stops using CPU (nfcapd, which writes on exit), or after
	// replayDrain: goflow2 queues what it reads in memory and decodes
	// far slower than a high step offers, and what it has not written by
	// then is not delivered.
	_, err = waitStable(ctx, c.progress, replayDrain)
	st.DrainSeconds = time.Since(sendEnd).Seconds()
	cpu1, _ := processCPU(c.proc.pid())
	st.CPUSeconds = cpu1 - cpu0
	st.PeakRSSMiB = peakRSSMiB(c.proc.pid())
	st.KernelDrops = udpReceiveErrors() - k0
	if err != nil {
		return st, err
	}
	if c.kill {
		c.proc.kill()
	} else if err := c.proc.stop(); err != nil {
		return st, err
	}
	st.Delivered, err = c.delivered()
	return st, err
}

// extCollector is a goflow2 or nfcapd process and how to count its flows.
type extCollector struct {
	proc      *proc
	port      int
	progress  func() (uint64, bool, error) // moves while it works
	delivered func() (uint64, error)       // once it has stopped
	// kill stops it with SIGKILL: goflow2 would go on through its queue
	// on SIGTERM; nfcapd writes its file on SIGTERM.
	kill bool
}

// replayDrain is how long after a step's last datagram a goflow2 or
// nfcapd may take to deliver.
const replayDrain = 3 * time.Second

func startGoflow2(ctx context.Context, env *replayEnvironment) (*extCollector, error) {
	port, err := freePort("udp")
	if err != nil {
		return nil, err
	}
	httpPort, err := freePort("tcp")
	if err != nil {
		return nil, err
	}
	out := filepath.Join(env.tmp, fmt.Sprintf("goflow2-%d.json", port))
	p, err := startProc(ctx, env.tmp, env.goflow2, "-listen", fmt.Sprintf("netflow://127.0.0.1:%d", port),
		"-transport", "file", "-transport.file", out, "-format", "json",
		"-addr", fmt.Sprintf("127.0.0.1:%d", httpPort), "-loglevel", "warn")
	if err != nil {
		return nil, err
	}
	size := func() (uint64, bool, error) {
		fi, err := os.Stat(out)
		if errors.Is(err, os.ErrNotExist) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		return uint64(fi.Size()), false, nil
	}
	c := &extCollector{proc: p, port: port, progress: size, delivered: func() (uint64, error) { defer os.Remove(out); return countLines(out) }, kill: true}
	return c, p.waitUDP(port)
}

// countLines counts the newlines of a file (goflow2 writes a flow a line).
func countLines(path string) (uint64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil // nothing written
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n uint64
	for {
		k, err := f.Read(buf)
		n += uint64(bytes.Count(buf[:k], []byte{'\n'}))
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func startNfcapd(ctx context.Context, env *replayEnvironment) (*extCollector, error) {
	port, err := freePort("udp")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(env.tmp, "nfcapd-")
	if err != nil {
		return nil, err
	}
	// One file for the step (rotation every hour); nfcapd writes it out
	// on SIGTERM.
	p, err := startProc(ctx, env.tmp, "nfcapd", "-w", dir, "-b", "127.0.0.1", "-p", strconv.Itoa(port), "-t", "3600")
	if err != nil {
		return nil, err
	}
	c := &extCollector{proc: p, port: port,
		progress:  func() (uint64, bool, error) { cpu, err := processCPU(p.pid()); return uint64(cpu * 100), false, err },
		delivered: func() (uint64, error) { defer os.RemoveAll(dir); return nfdumpFlows(dir) }}
	return c, p.waitUDP(port)
}

var nfdumpFlowsLine = regexp.MustCompile(`(?m)^Flows: (\d+)$`)

// nfdumpFlows counts the flows of the nfcapd files in dir (nfdump -I
// sums their statistics records).
func nfdumpFlows(dir string) (uint64, error) {
	out, err := exec.Command("nfdump", "-R", dir, "-I").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("nfdump -R %s -I: %w\n%s", dir, err, out)
	}
	var total uint64
	ms := nfdumpFlowsLine.FindAllSubmatch(out, -1)
	if ms == nil {
		return 0, fmt.Errorf("nfdump -I: no flow count in:\n%s", out)
	}
	for _, m := range ms {
		n, _ := strconv.ParseUint(string(m[1]), 10, 64)
		total += n
	}
	return total, nil
}

// proc is an external collector process, its output to a log file.
type proc struct {
	cmd     *exec.Cmd
	log     *os.File
	done    chan struct{}
	stopped bool
}

func startProc(ctx context.Context, tmp string, name string, args ...string) (*proc, error) {
	log, err := os.CreateTemp(tmp, filepath.Base(name)+"-*.log")
	if err != nil {
		return nil, err
	}
	p := &proc{log: log, done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, name, args...)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// waitUDP waits until the process has bound 127.0.0.1:port (the
// templates a replay sends first must not go to a closed port).
func (p *proc) waitUDP(port int) error {
	want := fmt.Sprintf(" 0100007F:%04X ", port)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if b, err := os.ReadFile("/proc/net/udp"); err == nil && strings.Contains(string(b), want) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before listening: %s", p.cmd.Path, p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
	p.kill()
	return fmt.Errorf("%s did not listen on port %d", p.cmd.Path, port)
}

func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log.Name())
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// stop ends the process with SIGTERM (SIGKILL after 30 s) and waits.
func (p *proc) stop() error {
	if p.stopped {
		return nil
	}
	p.stopped = true
	defer os.Remove(p.log.Name())
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop on SIGTERM", p.cmd.Path)
	}
}

func (p *proc) kill() {
	if !p.stopped {
		p.stopped = true
		_ = p.cmd.Process.Kill()
		<-p.done
		os.Remove(p.log.Name())
	}
}

// buildGoflow2 installs goflow2 at goflow2Version (from the module cache,
// or the module proxy) under bin/, once.
func buildGoflow2(ctx context.Context, tmp string) (string, error) {
	bin, err := filepath.Abs(filepath.Join("bin", "goflow2-"+goflow2Version))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	gobin := filepath.Join(tmp, "gobin")
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/netsampler/goflow2/v2/cmd/goflow2@"+goflow2Version)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install goflow2@%s: %w\n%s", goflow2Version, err, out)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(filepath.Join(gobin, "goflow2"), bin); err != nil {
		return "", fmt.Errorf("goflow2 binary: %w", err)
	}
	return bin, nil
}

// commandVersion is the first line a command prints for its version flag.
func commandVersion(name, flag string) string {
	out, err := exec.Command(name, flag).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
