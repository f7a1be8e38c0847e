package main

// flowhouse as the other detector of the comparison: the binary with its
// default configuration (built-in rules at their defaults), the embedded
// engine in a temporary directory, every listener on a loopback port of
// ours; its alerts read from the alerts table over its query endpoint.

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type fnmFlowhouse struct {
	dir       string
	udpPort   int
	httpAddr  string
	queryAddr string
	cmd       *exec.Cmd
	done      chan struct{}
	log       *os.File
}

// fnmStartFlowhouse starts `flowhouse serve` and waits for it to be ready.
func fnmStartFlowhouse(ctx context.Context, o options) (*fnmFlowhouse, error) {
	lib, err := filepath.Abs(o.library)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(lib); err != nil {
		return nil, fmt.Errorf("embedded engine library: %w (run make deps)", err)
	}
	f := &fnmFlowhouse{done: make(chan struct{})}
	if f.dir, err = os.MkdirTemp("", "flowbench-detect-"); err != nil {
		return nil, err
	}
	ports := make([]int, 3)
	for i, network := range []string{"udp", "tcp", "tcp"} {
		if ports[i], err = freePort(network); err != nil {
			os.RemoveAll(f.dir)
			return nil, err
		}
	}
	f.udpPort = ports[0]
	f.httpAddr, f.queryAddr = fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2])
	if f.log, err = os.Create(filepath.Join(f.dir, "flowhouse.log")); err != nil {
		os.RemoveAll(f.dir)
		return nil, err
	}
	f.cmd = exec.Command(o.flowhouse, "serve")
	f.cmd.Env = append(os.Environ(),
		"FLOWHOUSE_CLICKHOUSE_ADDR=",
		"FLOWHOUSE_CLICKHOUSE_EMBEDDED_LIBRARY="+lib,
		"FLOWHOUSE_CLICKHOUSE_EMBEDDED_PATH="+filepath.Join(f.dir, "data"),
		"FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN="+f.queryAddr,
		"FLOWHOUSE_SPOOL_DIR="+filepath.Join(f.dir, "spool"),
		"FLOWHOUSE_COLLECTOR_STATE_FILE="+filepath.Join(f.dir, "collector.state"),
		fmt.Sprintf("FLOWHOUSE_COLLECTOR_LISTENERS=127.0.0.1:%d", f.udpPort),
		"FLOWHOUSE_HTTP_LISTEN="+f.httpAddr,
		"FLOWHOUSE_LOG_LEVEL=warn",
	)
	f.cmd.Stdout, f.cmd.Stderr = f.log, f.log
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := f.cmd.Start(); err != nil {
		f.log.Close()
		os.RemoveAll(f.dir)
		return nil, err
	}
	go func() { _ = f.cmd.Wait(); close(f.done) }()
	if err := waitReady(ctx, f.httpAddr, 60*time.Second); err != nil {
		tail, _ := os.ReadFile(f.log.Name())
		f.stop()
		return nil, fmt.Errorf("%w\n%s", err, tail)
	}
	return f, nil
}

func (f *fnmFlowhouse) target() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(f.udpPort))
}

// stop ends flowhouse (SIGTERM, SIGKILL after 30 s) and removes its
// directory.
func (f *fnmFlowhouse) stop() {
	defer os.RemoveAll(f.dir)
	defer f.log.Close()
	_ = f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-f.done:
	case <-time.After(30 * time.Second):
		_ = f.cmd.Process.Kill()
		<-f.done
	}
}

// fnmAlertsQuery lists every alert that fired: its current row.
const fnmAlertsQuery = `SELECT rule, subject_values AS subject,
	annotation_values[indexOf(annotation_names, 'classification')] AS classification,
	toUnixTimestamp(fired_at) AS fired, severity, last_value
FROM alerts FINAL
WHERE fired_at > toDateTime(0, 'UTC')
ORDER BY fired_at`

// alerts reads the alerts that fired so far through the query endpoint.
func (f *fnmFlowhouse) alerts(ctx context.Context) ([]fnmDetection, error) {
	rows, err := queryJSON[struct {
		Rule, Classification, Severity string
		Subject                        []string
		Fired                          int64
		LastValue                      float64 `json:"last_value"`
	}](ctx, &endpoint{addr: f.queryAddr}, fnmAlertsQuery)
	if err != nil {
		return nil, fmt.Errorf("alerts query: %w", err)
	}
	out := make([]fnmDetection, 0, len(rows))
	for _, row := range rows {
		kind := row.Rule
		if row.Classification != "" && row.Classification != row.Rule {
			kind += " (" + row.Classification + ")"
		}
		out = append(out, fnmDetection{Detector: "flowhouse", Subject: strings.Join(row.Subject, " "), Subjects: row.Subject,
			Kind: kind, At: time.Unix(row.Fired, 0), Power: fmt.Sprintf("%s %.4g", row.Severity, row.LastValue)})
	}
	return out, nil
}
