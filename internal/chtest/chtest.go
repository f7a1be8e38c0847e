// Package chtest runs a real ClickHouse server for integration tests.
//
// One server is started per test binary, on first use, in its own
// temporary directory and on a free loopback port; each test gets a fresh
// database on it. Use Main in TestMain so the server is stopped and its
// directory removed when the tests end:
//
//	func TestMain(m *testing.M) { chtest.Main(m) }
//
//	func TestX(t *testing.T) {
//		addr, db := chtest.Database(t)
//		...
//	}
//
// The server process is bound to the test binary: it gets SIGKILL when the
// binary dies (Pdeathsig), and is killed after a maximum lifetime anyway,
// so a killed or hung test run cannot leave it behind.
package chtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// EnvBinary names an environment variable that, when set, is the path of
// the server binary to run (clickhouse-server, or the single clickhouse
// binary, which is then run as "clickhouse server").
const EnvBinary = "FLOWHOUSE_CLICKHOUSE_SERVER"

// Defaults bounding the server's start and life.
const (
	DefaultStartTimeout = 30 * time.Second
	DefaultMaxLifetime  = 30 * time.Minute
)

// Options of Start; zero values take the defaults.
type Options struct {
	// StartTimeout bounds the wait for the server to answer SELECT 1.
	StartTimeout time.Duration
	// MaxLifetime kills the server after this long whatever happens, so a
	// hung test binary cannot keep it forever.
	MaxLifetime time.Duration
}

// Server is one running ClickHouse server.
type Server struct {
	addr    string
	dir     string
	version string
	conn    driver.Conn
	pid     int

	stop     chan struct{} // closed to ask the owner goroutine to kill the process
	exited   chan struct{} // closed when the process has been reaped
	waitErr  error
	stopOnce sync.Once
	seq      atomic.Int64
}

// Addr is the server's native protocol address, host:port.
func (s *Server) Addr() string { return s.addr }

// Version is what SELECT version() returned.
func (s *Server) Version() string { return s.version }

// Dir is the server's temporary directory (config, data, logs).
func (s *Server) Dir() string { return s.dir }

// Pid is the server process's, for benchmarks that read its CPU time.
func (s *Server) Pid() int { return s.pid }

// Start runs a new server and waits until it answers queries.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.MaxLifetime <= 0 {
		opts.MaxLifetime = DefaultMaxLifetime
	}
	argv, err := serverCommand()
	if err != nil {
		return nil, err
	}
	sweepStale()

	// A free port found by listening can be taken by someone else before the
	// server binds it: try a few ports before giving up.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := startOnce(ctx, argv, opts)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errExitedEarly) {
			break
		}
	}
	return nil, lastErr
}

var errExitedEarly = errors.New("clickhouse server exited during startup")

func startOnce(ctx context.Context, argv []string, opts Options) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("chtest: create temp dir: %w", err)
	}
	if err := writeConfig(dir, port); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	out, err := os.Create(filepath.Join(dir, "log", "stdout.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("chtest: %w", err)
	}

	s := &Server{
		addr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		dir:    dir,
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	started := make(chan error, 1)
	go s.own(append(argv, "--config-file="+filepath.Join(dir, "config.xml")), out, opts.MaxLifetime, started)
	if err := <-started; err != nil {
		out.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("chtest: start %s: %w", argv[0], err)
	}
	os.WriteFile(filepath.Join(dir, pidFile), []byte(strconv.Itoa(s.pid)), 0o644)

	if err := s.waitReady(ctx, opts.StartTimeout); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// own starts the process and reaps it on a goroutine locked to its OS
// thread: Pdeathsig fires when the thread that forked the child exits, so
// that thread must live exactly as long as the child is wanted.
func (s *Server) own(argv []string, out *os.File, lifetime time.Duration, started chan<- error) {
	runtime.LockOSThread()
	// Never unlocked: when this goroutine returns, its thread exits with it.
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		started <- err
		return
	}
	s.pid = cmd.Process.Pid
	started <- nil

	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	killTimer := time.NewTimer(lifetime)
	defer killTimer.Stop()
	select {
	case err := <-waited:
		s.waitErr = err
	case <-s.stop:
		cmd.Process.Kill()
		s.waitErr = <-waited
	case <-killTimer.C:
		cmd.Process.Kill()
		s.waitErr = fmt.Errorf("killed after max lifetime %s: %w", lifetime, <-waited)
	}
	out.Close()
	close(s.exited)
}

func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{s.addr},
		DialTimeout: time.Second,
		// Tests create and drop databases concurrently: a few connections suffice.
		MaxOpenConns: 4,
	})
	if err != nil {
		return fmt.Errorf("chtest: open client: %w", err)
	}
	var lastErr error
	for {
		select {
		case <-s.exited:
			conn.Close()
			return fmt.Errorf("%w (%v): %s", errExitedEarly, s.waitErr, s.logTail())
		default:
		}
		var version string
		qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
		lastErr = conn.QueryRow(qctx, "SELECT version()").Scan(&version)
		qcancel()
		if lastErr == nil {
			s.version = version
			s.conn = conn
			return nil
		}
		select {
		case <-ctx.Done():
			conn.Close()
			return fmt.Errorf("chtest: server at %s did not answer within %s: %v: %s", s.addr, timeout, lastErr, s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop kills the server, waits for it to exit and removes its directory.
// ClickHouse needs no clean shutdown here: the data is thrown away.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.conn != nil {
			s.conn.Close()
		}
		close(s.stop)
		<-s.exited
		os.RemoveAll(s.dir)
	})
	return nil
}

// Exec runs a statement on the server's default database; for test setup.
func (s *Server) Exec(ctx context.Context, query string, args ...any) error {
	return s.conn.Exec(ctx, query, args...)
}

// NewDatabase creates a database with a name unique to this server and
// drops it when the test ends.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("t%d_%s", s.seq.Add(1), sanitize(tb.Name()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("chtest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name); err != nil {
			tb.Logf("chtest: drop database %s: %v", name, err)
		}
	})
	return name
}

var nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)

func sanitize(testName string) string {
	s := nonIdent.ReplaceAllString(strings.ToLower(testName), "_")
	if len(s) > 40 {
		s = s[:40]
	}
	return strings.Trim(s, "_")
}

func (s *Server) logTail() string {
	var b strings.Builder
	for _, name := range []string{"stdout.log", "server.err.log"} {
		data, err := os.ReadFile(filepath.Join(s.dir, "log", name))
		if err != nil || len(data) == 0 {
			continue
		}
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		fmt.Fprintf(&b, "\n--- %s ---\n%s", name, data)
	}
	return b.String()
}

// fallbackPaths are tried when clickhouse-server is not on PATH: Debian
// installs it in /usr/sbin, which is not on every user's PATH.
var fallbackPaths = []string{"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"}

// serverCommand finds the server binary.
func serverCommand() ([]string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("chtest: %s=%s: %w", EnvBinary, p, err)
		}
		if filepath.Base(p) == "clickhouse" {
			return []string{p, "server"}, nil
		}
		return []string{p}, nil
	}
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return []string{p}, nil
	}
	for _, p := range fallbackPaths {
		if _, err := os.Stat(p); err == nil {
			return []string{p}, nil
		}
	}
	if p, err := exec.LookPath("clickhouse"); err == nil {
		return []string{p, "server"}, nil
	}
	return nil, fmt.Errorf("chtest: no ClickHouse server binary found (looked for clickhouse-server in PATH, /usr/sbin and /usr/bin, and clickhouse in PATH; or set %s): run `make test-deps` (or scripts/deps.sh) to install it", EnvBinary)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("chtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

const (
	dirPrefix = "flowhouse-chtest-"
	pidFile   = "server.pid"
)

// sweepStale removes directories of earlier runs whose server is gone
// (their test binary was killed before it could clean up).
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		info, err := os.Stat(dir)
		if err != nil || time.Since(info.ModTime()) < time.Minute {
			continue // possibly still starting
		}
		data, err := os.ReadFile(filepath.Join(dir, pidFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 {
			continue
		}
		if syscall.Kill(pid, 0) == nil {
			continue // still running: someone else's
		}
		os.RemoveAll(dir)
	}
}
