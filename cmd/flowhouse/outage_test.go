package main

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
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

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/flowhouse/flowhouse/collector"
	"github.com/flowhouse/flowhouse/config"
	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/store"
	"github.com/flowhouse/flowhouse/store/spool"
)

// runSpooled is runServer with the given spool configuration, the
// test's registry, and hooks for the test. onStop gets the flows the
// collector decoded.
func runSpooled(ctx context.Context, cfg *config.Config, spoolCfg spool.Config, log *slog.Logger,
	reg *prometheus.Registry, onStart func(listeners []netip.AddrPort, coll *collector.Collector, sp *spool.Spool),
	onStop func(decoded uint64)) error {
	c := *cfg
	c.Spool = spoolCfg
	c.Spool.Enabled = true
	return runServer(ctx, &c, log, hooks{
		registry: reg,
		started:  func(r running) { onStart(r.listeners, r.collector, r.spool) },
		stopped:  onStop,
	})
}

// flowhouseRun is one run of runSpooled in the test process.
type flowhouseRun struct {
	listen  netip.AddrPort
	coll    *collector.Collector
	sp      *spool.Spool
	reg     *prometheus.Registry
	cancel  context.CancelFunc
	done    chan error
	decoded atomic.Uint64
}

func startSpooled(t *testing.T, cfg *config.Config, spoolCfg spool.Config) *flowhouseRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &flowhouseRun{cancel: cancel, done: make(chan error, 1), reg: prometheus.NewRegistry()}
	r.reg.MustRegister(collectors.NewGoCollector())
	up := make(chan struct{})
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	go func() {
		r.done <- runSpooled(ctx, cfg, spoolCfg, log, r.reg,
			func(l []netip.AddrPort, coll *collector.Collector, sp *spool.Spool) {
				r.listen, r.coll, r.sp = l[0], coll, sp
				close(up)
			},
			func(decoded uint64) { r.decoded.Store(decoded) })
	}()
	select {
	case <-up:
	case err := <-r.done:
		t.Fatalf("flowhouse ended at start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("flowhouse did not start within 60s")
	}
	// A failed test still stops flowhouse before its spool directory goes.
	t.Cleanup(func() {
		r.cancel()
		<-r.done
	})
	return r
}

// stop cancels flowhouse and returns the flows its collector decoded.
func (r *flowhouseRun) stop(t *testing.T) uint64 {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- nil // for the cleanup
		if err != nil {
			t.Errorf("flowhouse returned %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("flowhouse did not stop within 40s")
	}
	return r.decoded.Load()
}

func (r *flowhouseRun) decodedNow() uint64 {
	var n uint64
	for _, e := range r.coll.Stats() {
		n += e.Flows
	}
	return n
}

func (r *flowhouseRun) metric(name string) float64 {
	mfs, _ := r.reg.Gather()
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
			}
		}
	}
	return sum
}

// v5Sender sends NetFlow v5 datagrams of 30 flows at a steady rate; flow
// number n has source address 10.0.0.0+n, so every flow is a distinct row.
type v5Sender struct {
	conn   *net.UDPConn
	mu     sync.Mutex // held while sending; pause takes it
	paused bool
	sent   atomic.Uint64
	stopc  chan struct{}
	done   chan struct{}
	boot   time.Time
}

const flowsPerDatagram = 30

func newV5Sender(t *testing.T, target netip.AddrPort, perSecond int) *v5Sender {
	t.Helper()
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
	if err != nil {
		t.Fatal(err)
	}
	s := &v5Sender{conn: conn, stopc: make(chan struct{}), done: make(chan struct{}), boot: time.Now().Add(-time.Hour)}
	interval := time.Second * flowsPerDatagram / time.Duration(perSecond)
	go func() {
		defer close(s.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-s.stopc:
				return
			case <-tick.C:
			}
			s.mu.Lock()
			if !s.paused {
				s.sendOne()
			}
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { s.close() })
	return s
}

func (s *v5Sender) sendOne() {
	first := s.sent.Load()
	b := make([]byte, 24+flowsPerDatagram*48)
	now := time.Now()
	uptime := uint32(now.Sub(s.boot).Milliseconds())
	binary.BigEndian.PutUint16(b[0:], 5)
	binary.BigEndian.PutUint16(b[2:], flowsPerDatagram)
	binary.BigEndian.PutUint32(b[4:], uptime)
	binary.BigEndian.PutUint32(b[8:], uint32(now.Unix()))
	binary.BigEndian.PutUint32(b[12:], uint32(now.Nanosecond()))
	binary.BigEndian.PutUint32(b[16:], uint32(first))
	for i := range flowsPerDatagram {
		r := b[24+i*48:]
		binary.BigEndian.PutUint32(r[0:], 0x0a000000+uint32(first)+uint32(i)) // src 10.0.0.0 + n
		copy(r[4:8], []byte{192, 0, 2, 1})
		binary.BigEndian.PutUint16(r[12:], 1)
		binary.BigEndian.PutUint16(r[14:], 2)
		binary.BigEndian.PutUint32(r[16:], 1)   // packets
		binary.BigEndian.PutUint32(r[20:], 100) // bytes
		binary.BigEndian.PutUint32(r[24:], uptime-1000)
		binary.BigEndian.PutUint32(r[28:], uptime)
		binary.BigEndian.PutUint16(r[32:], 40000)
		binary.BigEndian.PutUint16(r[34:], 443)
		r[38] = 6
	}
	if _, err := s.conn.Write(b); err == nil {
		s.sent.Add(flowsPerDatagram)
	}
}

func (s *v5Sender) pause() {
	s.mu.Lock()
	s.paused = true
	s.mu.Unlock()
}

func (s *v5Sender) resume(target netip.AddrPort) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paused = false
	return nil
}

func (s *v5Sender) close() {
	select {
	case <-s.stopc:
	default:
		close(s.stopc)
		<-s.done
		s.conn.Close()
	}
}

// chProcess controls the dedicated ClickHouse server's process: stop and
// continue it, kill it and start it again on the same port and data.
type chProcess struct {
	srv  *chtest.Server
	pid  int
	own  *exec.Cmd // the restarted process, once there is one
	exit chan struct{}
}

func (c *chProcess) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(c.pid, sig); err != nil {
		t.Fatalf("signal %v to clickhouse %d: %v", sig, c.pid, err)
	}
}

// restart runs the server again with the config chtest wrote (same port,
// same data directory) and waits until it answers.
func (c *chProcess) restart(t *testing.T) {
	t.Helper()
	bin := os.Getenv(chtest.EnvBinary)
	args := []string{}
	if bin == "" {
		if p, err := exec.LookPath("clickhouse-server"); err == nil {
			bin = p
		} else {
			for _, p := range []string{"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"} {
				if _, err := os.Stat(p); err == nil {
					bin = p
					break
				}
			}
		}
	}
	if bin == "" {
		t.Fatal("no clickhouse-server binary to restart")
	}
	if filepath.Base(bin) == "clickhouse" {
		args = append(args, "server")
	}
	args = append(args, "--config-file="+filepath.Join(c.srv.Dir(), "config.xml"))
	out, err := os.Create(filepath.Join(c.srv.Dir(), "log", "restart.log"))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	c.exit = make(chan struct{})
	go func() {
		// Pdeathsig fires when the forking thread exits: keep it for the
		// life of the process, as chtest does.
		runtime.LockOSThread()
		cmd := exec.Command(bin, args...)
		cmd.Dir = c.srv.Dir()
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		c.own = cmd
		started <- nil
		cmd.Wait()
		out.Close()
		close(c.exit)
	}()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	c.pid = c.own.Process.Pid
	t.Cleanup(func() {
		c.own.Process.Kill()
		<-c.exit
	})
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{c.srv.Addr()}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	answers := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err = conn.Ping(ctx)
		return err == nil
	}
	if !testkit.Within(30*time.Second, answers) {
		t.Fatalf("restarted clickhouse does not answer: %v", err)
	}
}

// TestOutageNoFlowLost offers steady NetFlow v5 load while the database
// hangs (SIGSTOP), dies and comes back (SIGKILL, restart on the same port
// and data), and while flowhouse itself restarts, once with the database
// up and once with it hung. Every flow sent must be in ClickHouse at the
// end; duplicates (18.16 has no insert deduplication) are whole batches
// whose insert timed out after the server had committed it.
func TestOutageNoFlowLost(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection against a dedicated ClickHouse server")
	}
	started := time.Now()
	ctx := context.Background()
	srv, err := chtest.Start(ctx, chtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	pidText, err := os.ReadFile(filepath.Join(srv.Dir(), "server.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if err != nil {
		t.Fatal(err)
	}
	ch := &chProcess{srv: srv, pid: pid}
	if err := srv.Exec(ctx, "CREATE DATABASE outage"); err != nil {
		t.Fatal(err)
	}

	t.Setenv("FLOWHOUSE_CLICKHOUSE_ADDR", srv.Addr())
	t.Setenv("FLOWHOUSE_CLICKHOUSE_DATABASE", "outage")
	t.Setenv("FLOWHOUSE_CLICKHOUSE_BATCH_INTERVAL", "300ms")
	t.Setenv("FLOWHOUSE_CLICKHOUSE_INSERT_TIMEOUT", "2s")
	t.Setenv("FLOWHOUSE_CLICKHOUSE_DIAL_TIMEOUT", "1s")
	t.Setenv("FLOWHOUSE_CLICKHOUSE_STOP_TIMEOUT", "15s")
	t.Setenv("FLOWHOUSE_COLLECTOR_LISTENERS", "127.0.0.1:0")
	t.Setenv("FLOWHOUSE_HTTP_LISTEN", "127.0.0.1:0")
	t.Setenv("FLOWHOUSE_COLLECTOR_STATE_FILE", filepath.Join(t.TempDir(), "collector.state"))
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	spoolCfg := spool.DefaultConfig()
	spoolCfg.Dir = t.TempDir()
	spoolCfg.Probe = spool.ProbeConfig{Initial: 200 * time.Millisecond, Max: time.Second}
	spoolCfg.ReplayTimeout = 2 * time.Second

	fh := startSpooled(t, cfg, spoolCfg)
	// Restarts listen on the same port, so the sender keeps its target.
	cfg.Collector.Listeners = []string{fh.listen.String()}
	sender := newV5Sender(t, fh.listen, 6000)
	var decoded uint64
	var spooled, replayed float64

	// drained waits until the spool is empty and the database up.
	drained := func(what string) {
		testkit.Eventually(t, what, 30*time.Second, func() bool {
			st := fh.sp.Stats()
			return st.PendingSegments == 0 && st.DatabaseUp
		})
	}
	// restartFlowhouse stops flowhouse mid-load (flows in its batches and
	// queue) and starts it again on the same port and spool directory.
	restartFlowhouse := func(check func()) {
		sender.pause()
		sent := sender.sent.Load()
		testkit.Eventually(t, "flowhouse to decode what was sent", 10*time.Second, func() bool { return decoded+fh.decodedNow() == sent })
		decoded += fh.stop(t)
		spooled += fh.metric("flowhouse_spool_rows_spooled_total")
		replayed += fh.metric("flowhouse_spool_rows_replayed_total")
		if check != nil {
			check()
		}
		fh = startSpooled(t, cfg, spoolCfg)
		sender.resume(fh.listen)
	}

	time.Sleep(3 * time.Second)

	t.Log("phase 1: the database hangs (SIGSTOP) for 12s")
	ch.signal(t, syscall.SIGSTOP)
	time.Sleep(12 * time.Second)
	if st := fh.sp.Stats(); st.DatabaseUp || st.PendingSegments == 0 {
		t.Errorf("during the hang: spool %+v, want the database down and segments pending", st)
	}
	ch.signal(t, syscall.SIGCONT)
	time.Sleep(2 * time.Second)
	drained("replay after the hang")

	t.Log("phase 2: the database is killed and restarted on the same port and data")
	ch.signal(t, syscall.SIGKILL)
	time.Sleep(4 * time.Second)
	if st := fh.sp.Stats(); st.DatabaseUp {
		t.Errorf("database killed: spool %+v, want it down", st)
	}
	ch.restart(t)
	time.Sleep(2 * time.Second)
	drained("replay after the restart")

	t.Log("phase 3: flowhouse restarts mid-load with the database up")
	restartFlowhouse(nil)
	time.Sleep(2 * time.Second)

	t.Log("phase 4: flowhouse restarts mid-load while the database hangs; the next run replays")
	ch.signal(t, syscall.SIGSTOP)
	time.Sleep(3 * time.Second)
	restartFlowhouse(func() {
		segs, _ := filepath.Glob(filepath.Join(spoolCfg.Dir, "*.seg"))
		if len(segs) == 0 {
			t.Error("flowhouse stopped during the hang with no segment on disk")
		}
		ch.signal(t, syscall.SIGCONT)
	})
	time.Sleep(2 * time.Second)

	sender.pause()
	sent := sender.sent.Load()
	testkit.Eventually(t, "flowhouse to decode what was sent", 10*time.Second, func() bool { return decoded+fh.decodedNow() == sent })
	drained("final replay")
	decoded += fh.stop(t)
	spooled += fh.metric("flowhouse_spool_rows_spooled_total")
	replayed += fh.metric("flowhouse_spool_rows_replayed_total")
	quarantined := fh.metric("flowhouse_spool_segments_quarantined_total")
	dropped := fh.metric("flowhouse_spool_rows_dropped_total") + fh.metric("flowhouse_store_rows_dropped_total")

	db, err := store.OpenServer(ctx, cfg.ClickHouse, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows, distinct uint64
	if err := store.QueryRow(ctx, db, []any{&rows, &distinct}, "SELECT count(), uniqExact(src_address) FROM flows"); err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %d flows, decoded %d, stored %d rows (%d distinct, %d duplicates); spooled %.0f, replayed %.0f; %.1fs",
		sent, decoded, rows, distinct, rows-distinct, spooled, replayed, time.Since(started).Seconds())
	if decoded != sent {
		t.Errorf("flowhouse decoded %d flows of %d sent", decoded, sent)
	}
	if distinct != sent {
		t.Errorf("%d distinct flows stored, %d sent: %d lost", distinct, sent, int64(sent)-int64(distinct))
	}
	if spooled == 0 || replayed != spooled {
		t.Errorf("spooled %.0f rows, replayed %.0f: want the outages to go through the spool and all of it replayed", spooled, replayed)
	}
	if quarantined != 0 || dropped != 0 {
		t.Errorf("%.0f segments quarantined, %.0f rows dropped", quarantined, dropped)
	}
	// Duplicates come only from an insert the server committed after the
	// client gave up on it (one per hang at most with one writer): whole
	// batches of at most a batch interval of load each.
	var worst uint64
	if err := store.QueryRow(ctx, db, []any{&worst},
		"SELECT max(c) FROM (SELECT src_address, count() AS c FROM flows GROUP BY src_address)"); err != nil {
		t.Fatal(err)
	}
	if maxDup := uint64(4 * 6000); rows-distinct > maxDup || worst > 2 {
		t.Errorf("%d duplicate rows (a flow up to %d times): more than a few timed-out batches", rows-distinct, worst)
	}
}
