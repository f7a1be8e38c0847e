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

	// The fields below are for harnesses that run several servers that
	// name each other (internal/chcluster), and restart one on its data.

	// Dir is an existing directory to run in. Stop leaves it, so that a
	// restart with the same Options finds its data; its owner removes it.
	// Empty: a new temporary directory, removed by Stop.
	Dir string
	// Port is the native port. 0 picks a free one, and picks again when
	// the server could not bind it; a given port is tried once, and an
	// error wrapping ErrExitedEarly tells the caller to pick again.
	Port int
	// ExtraConfig is XML added inside config.xml's root element.
	ExtraConfig string
	// ProfileSettings is XML added to the default profile in users.xml.
	ProfileSettings string
}

// Server is one running ClickHouse server.
type Server struct {
	addr    string
	dir     string
	version string
	conn    driver.Conn
	ownDir  bool // dir was made by Start, so Stop removes it
	proc    *Process
	pid     int
	exited  <-chan struct{} // closed when the process has been reaped

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
	argv, err := ServerCommand()
	if err != nil {
		return nil, err
	}
	SweepStale(dirPrefix)
	if opts.Port != 0 {
		return startOnce(ctx, argv, opts)
	}

	// A free port found by listening can be taken by someone else before the
	// server binds it: try a few ports before giving up.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := startOnce(ctx, argv, opts)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, ErrExitedEarly) {
			break
		}
	}
	return nil, lastErr
}

// ErrExitedEarly is wrapped by Start's error when the server exited before
// it answered, most often because its port was taken meanwhile.
var ErrExitedEarly = errors.New("clickhouse server exited during startup")

func startOnce(ctx context.Context, argv []string, opts Options) (*Server, error) {
	port := opts.Port
	if port == 0 {
		var err error
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	s := &Server{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: opts.Dir}
	if s.dir == "" {
		dir, err := os.MkdirTemp("", dirPrefix)
		if err != nil {
			return nil, fmt.Errorf("chtest: create temp dir: %w", err)
		}
		s.dir, s.ownDir = dir, true
	}
	if err := s.launch(argv, port, opts); err != nil {
		s.removeOwnDir()
		return nil, err
	}
	if err := s.waitReady(ctx, opts.StartTimeout); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// launch writes the configuration and starts the process. stdout.log is
// appended to, so that a restart in the same directory keeps the first
// run's output.
func (s *Server) launch(argv []string, port int, opts Options) error {
	if err := writeConfig(s.dir, port, opts.ExtraConfig, opts.ProfileSettings); err != nil {
		return err
	}
	out, err := os.OpenFile(filepath.Join(s.dir, "log", "stdout.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("chtest: %w", err)
	}
	p, err := StartProcess(Command{
		Argv:        append(argv[:len(argv):len(argv)], "--config-file="+filepath.Join(s.dir, "config.xml")),
		Dir:         s.dir,
		Out:         out,
		MaxLifetime: opts.MaxLifetime,
	})
	if err != nil {
		out.Close()
		return err
	}
	s.proc, s.pid, s.exited = p, p.Pid(), p.Exited()
	os.WriteFile(filepath.Join(s.dir, PidFile), []byte(strconv.Itoa(s.pid)), 0o644)
	return nil
}

func (s *Server) removeOwnDir() {
	if s.ownDir {
		os.RemoveAll(s.dir)
	}
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
			return fmt.Errorf("%w (%v): %s", ErrExitedEarly, s.proc.Err(), s.logTail())
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

// Stop kills the server, waits for it to exit and removes its directory
// (unless Options.Dir gave it). ClickHouse needs no clean shutdown here:
// the data is thrown away, or, when kept, recovered like after a crash.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.conn != nil {
			s.conn.Close()
		}
		s.proc.Kill()
		s.removeOwnDir()
	})
	return nil
}

// Conn is the server's client connection (a small pool), for queries that
// Exec does not cover.
func (s *Server) Conn() driver.Conn { return s.conn }

// Exec runs a statement on the server's default database; for test setup.
func (s *Server) Exec(ctx context.Context, query string, args ...any) error {
	return s.conn.Exec(ctx, query, args...)
}

// NewDatabase creates a database with a name unique to this server and
// drops it when the test ends.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := DatabaseName(s.seq.Add(1), tb.Name())
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

// DatabaseName is a database name unique by seq that says which test made it.
func DatabaseName(seq int64, testName string) string {
	return fmt.Sprintf("t%d_%s", seq, sanitize(testName))
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

// ServerCommand finds the server binary: the command to run, to which
// --config-file=... is added.
func ServerCommand() ([]string, error) {
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

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// FreePorts returns n distinct loopback TCP ports that were free a moment
// ago: all are held open until the last is found, so none comes twice.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("chtest: find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

const dirPrefix = "flowhouse-chtest-"

// PidFile, in a directory SweepStale looks at, holds the pid whose exit
// makes the directory stale.
const PidFile = "server.pid"

// SweepStale removes the temporary directories named prefix* of earlier
// runs whose process (the pid in their server.pid) is gone: their test
// binary was killed before it could clean up.
func SweepStale(prefix string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	for _, dir := range dirs {
		info, err := os.Stat(dir)
		if err != nil || time.Since(info.ModTime()) < time.Minute {
			continue // possibly still starting
		}
		data, err := os.ReadFile(filepath.Join(dir, PidFile))
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
