package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// served is a running flowhouse serve.
type served struct {
	cmd      *exec.Cmd
	httpAddr string
	udpPort  int
	// queryAddr is the embedded engine's query endpoint (clickhouse.embedded.http_listen).
	queryAddr string
	logFile   *os.File
	spoolDir  string
	stopped   bool
}

// startServe runs flowhouse serve on target with database and the extra
// environment, and waits until it is ready.
func startServe(ctx context.Context, o options, target storeTarget, database string, env ...string) (*served, error) {
	udpPort, err := freePort("udp")
	if err != nil {
		return nil, err
	}
	httpPort, err := freePort("tcp")
	if err != nil {
		return nil, err
	}
	queryPort, err := freePort("tcp")
	if err != nil {
		return nil, err
	}
	s := &served{httpAddr: fmt.Sprintf("127.0.0.1:%d", httpPort), udpPort: udpPort,
		queryAddr: fmt.Sprintf("127.0.0.1:%d", queryPort)}
	if s.spoolDir, err = os.MkdirTemp("", "flowbench-spool-"); err != nil {
		return nil, err
	}
	if s.logFile, err = os.CreateTemp("", "flowbench-flowhouse-*.log"); err != nil {
		os.RemoveAll(s.spoolDir)
		return nil, err
	}
	s.cmd = exec.CommandContext(ctx, o.flowhouse, append(append([]string(nil), target.args...), "serve")...)
	s.cmd.Env = append(os.Environ(),
		"FLOWHOUSE_CLICKHOUSE_ADDR="+target.addr,
		"FLOWHOUSE_CLICKHOUSE_EMBEDDED_LIBRARY="+target.library,
		"FLOWHOUSE_CLICKHOUSE_EMBEDDED_PATH="+target.path,
		"FLOWHOUSE_SPOOL_DIR="+s.spoolDir,
		"FLOWHOUSE_COLLECTOR_STATE_FILE="+filepath.Join(s.spoolDir, "collector.state"),
		"FLOWHOUSE_CLICKHOUSE_DATABASE="+database,
		fmt.Sprintf("FLOWHOUSE_COLLECTOR_LISTENERS=127.0.0.1:%d", udpPort),
		"FLOWHOUSE_HTTP_LISTEN="+s.httpAddr,
		"FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN="+s.queryAddr,
		"FLOWHOUSE_LOG_LEVEL=warn",
	)
	s.cmd.Env = append(s.cmd.Env, env...)
	s.cmd.Stdout, s.cmd.Stderr = s.logFile, s.logFile
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.stopped = true
		s.cleanup()
		return nil, err
	}
	if err := waitReady(ctx, s.httpAddr, 60*time.Second); err != nil {
		err = fmt.Errorf("%w\n%s", err, s.logTail())
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *served) pid() int { return s.cmd.Process.Pid }

func (s *served) logTail() string {
	_, _ = s.logFile.Seek(0, io.SeekStart)
	tail, _ := io.ReadAll(s.logFile)
	if len(tail) > 4000 {
		tail = tail[len(tail)-4000:]
	}
	return string(tail)
}

// stop ends flowhouse (SIGTERM, SIGKILL after 30 s); it is idempotent.
func (s *served) stop() {
	if !s.stopped {
		s.stopped = true
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-done
		}
	}
	s.cleanup()
}

func (s *served) cleanup() {
	if s.logFile != nil {
		s.logFile.Close()
		os.Remove(s.logFile.Name())
		s.logFile = nil
	}
	os.RemoveAll(s.spoolDir)
}
