package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/collector"
	"github.com/flowhouse/flowhouse/config"
	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/internal/peers"
	"github.com/flowhouse/flowhouse/store"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// tuple is what the truth file and the flows table both say about a flow.
type tuple struct {
	src, dst     string
	sport, dport uint16
	proto        uint8
}

type counts struct{ packets, bytes uint64 }

type truthFile struct {
	Flows []struct {
		Src     string `json:"src"`
		Dst     string `json:"dst"`
		Sport   uint16 `json:"sport"`
		Dport   uint16 `json:"dport"`
		Proto   uint8  `json:"proto"`
		Family  string `json:"family"`
		Packets uint64 `json:"packets"`
		Bytes   uint64 `json:"bytes"`
	} `json:"flows"`
}

func loadTruth(t *testing.T, ipv4Only bool) map[tuple]counts {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "traffic.truth.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tf truthFile
	if err := json.Unmarshal(b, &tf); err != nil {
		t.Fatal(err)
	}
	out := map[tuple]counts{}
	for _, f := range tf.Flows {
		if ipv4Only && f.Family != "ipv4" {
			continue
		}
		k := tuple{f.Src, f.Dst, f.Sport, f.Dport, f.Proto}
		c := out[k]
		c.packets += f.Packets
		c.bytes += f.Bytes
		out[k] = c
	}
	return out
}

// server is flowhouse serve running in the test process, on a fresh
// database of the test ClickHouse server or on the embedded engine.
type server struct {
	cfg       *config.Config
	db        store.DB
	ownDB     bool // db was opened by the test, not borrowed from the server
	listeners []netip.AddrPort
	http      string
	query     string // the query endpoint's address (embedded engine)
	pprof     string // the profiles' address (http.pprof_listen); "" when off
	coll      *collector.Collector
	cancel    context.CancelFunc
	done      chan error
	up        chan struct{} // closed when serve listens
}

// embeddedLibrary is where make deps installs libchdb.so.
func embeddedLibrary(t *testing.T) string {
	t.Helper()
	lib, err := filepath.Abs(filepath.Join("..", "..", "var", "lib", "libchdb.so"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(lib); err != nil {
		if os.Getenv("FLOWHOUSE_SKIP_EMBEDDED") != "" {
			t.Skip("FLOWHOUSE_SKIP_EMBEDDED is set")
		}
		t.Fatalf("embedded engine library missing (%v): run make deps or scripts/chdb.sh install", err)
	}
	return lib
}

func startServer(t *testing.T, engine string) *server {
	t.Helper()
	return startServerWith(t, engine, "")
}

// startServerWith starts serve with configYAML as its configuration file
// (empty: none), under the test's environment variables.
func startServerWith(t *testing.T, engine, configYAML string) *server {
	t.Helper()
	return startConfigured(t, engine, serverConfig(t, engine, configYAML))
}

// serverConfig is the configuration of a test's serve on engine: its own
// database, spool and state file, and configYAML (empty: none).
func serverConfig(t *testing.T, engine, configYAML string) *config.Config {
	t.Helper()
	configPath := ""
	if configYAML != "" {
		configPath = filepath.Join(t.TempDir(), "flowhouse.yaml")
		if err := os.WriteFile(configPath, []byte(configYAML), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	switch engine {
	case "server":
		addr, database := chtest.Database(t)
		t.Setenv("FLOWHOUSE_CLICKHOUSE_ADDR", addr)
		t.Setenv("FLOWHOUSE_CLICKHOUSE_DATABASE", database)
	case "cluster":
		// The caller set the address, database and cluster.
	case "embedded":
		t.Setenv("FLOWHOUSE_CLICKHOUSE_ADDR", "") // empty: the embedded engine
		t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_LIBRARY", embeddedLibrary(t))
		t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_PATH", t.TempDir())
	default:
		t.Fatalf("unknown engine %q", engine)
	}
	t.Setenv("FLOWHOUSE_CLICKHOUSE_BATCH_INTERVAL", "200ms")
	t.Setenv("FLOWHOUSE_COLLECTOR_LISTENERS", "127.0.0.1:0")
	t.Setenv("FLOWHOUSE_HTTP_LISTEN", "127.0.0.1:0")
	t.Setenv("FLOWHOUSE_SPOOL_DIR", t.TempDir())
	t.Setenv("FLOWHOUSE_COLLECTOR_STATE_FILE", filepath.Join(t.TempDir(), "collector.state"))
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN", "127.0.0.1:0")
	cfg, err := config.Load(configPath)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startConfigured starts serve with cfg; several runs of one cfg (one
// after the other) share its database and state.
func startConfigured(t *testing.T, engine string, cfg *config.Config) *server {
	t.Helper()
	s := launchConfigured(t, cfg)
	s.waitUp(t, engine)
	return s
}

// launchConfigured starts serve with cfg without waiting for it: several
// launched together start (and migrate) at once.
func launchConfigured(t *testing.T, cfg *config.Config) *server {
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{cfg: cfg, cancel: cancel, done: make(chan error, 1), up: make(chan struct{})}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() {
		s.done <- runServer(ctx, cfg, log, hooks{started: func(r running) {
			s.listeners, s.http, s.db, s.query, s.coll = r.listeners, r.httpAddr, r.db, r.queryAddr, r.collector
			s.pprof = r.pprofAddr
			close(s.up)
		}})
	}()
	t.Cleanup(func() {
		s.stop(t)
		if s.ownDB {
			s.db.Close()
		}
	})
	return s
}

// waitUp waits until a launched serve listens; with a server engine, the
// test then queries through a connection of its own.
func (s *server) waitUp(t *testing.T, engine string) {
	t.Helper()
	select {
	case <-s.up:
	case err := <-s.done:
		s.cancel()
		s.cancel = nil // it has ended: nothing to stop
		t.Fatalf("serve ended at start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not start within 60s")
	}
	cfg := s.cfg
	if engine != "embedded" {
		// Query through a connection of our own, as an analyst would.
		db, err := store.Open(context.Background(), cfg.ClickHouse, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.db, s.ownDB = db, true
	}
}

// dbAfterStop returns a database handle usable once serve has stopped:
// the embedded engine's directory belongs to one process user at a time,
// so it is opened again after serve closed it.
func (s *server) dbAfterStop(t *testing.T) store.DB {
	t.Helper()
	if s.ownDB {
		return s.db
	}
	db, err := store.Open(context.Background(), s.cfg.ClickHouse, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.db, s.ownDB = db, true
	return db
}

func (s *server) stop(t *testing.T) {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("serve returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("serve did not stop within 30s")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// stored reads the flows of one protocol, summed per 5-tuple, and how
// many there are.
func stored(t *testing.T, db store.DB, protocol string) (map[tuple]counts, uint64) {
	t.Helper()
	sums, flows := storedPerTuple(t, db, "protocol = ?", protocol)
	var n uint64
	for _, c := range flows {
		n += c
	}
	return sums, n
}

// storedPerTuple reads the flows where where holds, summed per 5-tuple,
// and the number of flows of each.
func storedPerTuple(t *testing.T, db store.DB, where string, args ...any) (map[tuple]counts, map[tuple]uint64) {
	t.Helper()
	rows, err := db.Query(context.Background(), `
		SELECT IPv6NumToString(src_address) AS src, IPv6NumToString(dst_address) AS dst, src_port, dst_port, ip_protocol,
		       sum(packets), sum(bytes), count()
		FROM flows WHERE `+where+`
		GROUP BY src, dst, src_port, dst_port, ip_protocol`, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	sums, flows := map[tuple]counts{}, map[tuple]uint64{}
	for rows.Next() {
		var src, dst string
		var sport, dport uint16
		var proto uint8
		var packets, bytes, c uint64
		if err := rows.Scan(&src, &dst, &sport, &dport, &proto, &packets, &bytes, &c); err != nil {
			t.Fatal(err)
		}
		k := tuple{unmap(src), unmap(dst), sport, dport, proto}
		sums[k] = counts{packets, bytes}
		flows[k] = c
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return sums, flows
}

func unmap(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	return a.Unmap().String()
}

// waitRows waits until the row count of protocol stops changing.
func waitRows(t *testing.T, db store.DB, protocol string, want uint64) uint64 {
	t.Helper()
	var last uint64
	stable := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		var n uint64
		if err := store.QueryRow(context.Background(), db, []any{&n}, "SELECT count() FROM flows WHERE protocol = ?", protocol); err != nil {
			t.Fatal(err)
		}
		if n == want && want > 0 {
			return n
		}
		if n == last && n > 0 {
			stable++
			if stable >= 8 {
				return n
			}
		} else {
			stable = 0
		}
		last = n
	}
	return last
}

// TestEndToEndRealExporters runs real exporters against flowhouse serve on
// both engines and compares what is stored with the traffic's ground truth.
func TestEndToEndRealExporters(t *testing.T) {
	for _, engine := range []string{"server", "embedded"} {
		t.Run(engine, func(t *testing.T) { testEndToEnd(t, engine) })
	}
}

func testEndToEnd(t *testing.T, engine string) {
	peers.Require(t, "softflowd", "pmacctd")
	traffic, err := filepath.Abs(filepath.Join("..", "..", "testdata", "traffic.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, engine)
	target := s.listeners[0]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	cases := []struct {
		name     string
		protocol string
		run      func() error
		ipv4Only bool
		records  uint64 // rows softflowd sends for traffic.pcap (one per truth flow)
	}{
		{"netflow v5", "netflow_v5", func() error { return peers.RunSoftflowd(ctx, t, traffic, target, 5) }, true, 352},
		{"netflow v9", "netflow_v9", func() error { return peers.RunSoftflowd(ctx, t, traffic, target, 9, "-6") }, false, 414},
		{"ipfix", "ipfix", func() error { return peers.RunSoftflowd(ctx, t, traffic, target, 10, "-6") }, false, 414},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); err != nil {
				t.Fatal(err)
			}
			waitRows(t, s.db, tc.protocol, tc.records)
			got, rows := stored(t, s.db, tc.protocol)
			want := loadTruth(t, tc.ipv4Only)
			if rows != tc.records {
				t.Errorf("%d rows stored, want %d", rows, tc.records)
			}
			compareTuples(t, got, want)
		})
	}

	t.Run("sflow v5", func(t *testing.T) {
		if err := peers.RunPmacctSFlow(ctx, t, traffic, target, 1); err != nil {
			t.Fatal(err)
		}
		waitRows(t, s.db, "sflow_v5", 0)
		got, rows := stored(t, s.db, "sflow_v5")
		want := loadTruth(t, false)
		// pmacct drops its last few samples at the end of the file (see
		// testdata/gen/README.md), so what is stored is a subset: every
		// tuple must be a real flow, with no more packets or bytes than it
		// had, and in total at most a handful of packets may be missing.
		var gotPackets, wantPackets uint64
		for k, c := range got {
			w, ok := want[k]
			if !ok {
				t.Errorf("stored tuple %+v is not in the traffic", k)
				continue
			}
			if c.packets > w.packets || c.bytes > w.bytes {
				t.Errorf("tuple %+v: stored %+v, more than the traffic's %+v", k, c, w)
			}
			gotPackets += c.packets
		}
		for _, w := range want {
			wantPackets += w.packets
		}
		if rows != gotPackets || wantPackets-gotPackets > 10 {
			t.Errorf("stored %d samples (%d packets) of %d packets sent", rows, gotPackets, wantPackets)
		}
	})

	// Metrics and health while running.
	body := scrapeMetrics(t, s.http)
	for _, metric := range []string{"flowhouse_collector_flows_total", "flowhouse_store_rows_inserted_total"} {
		if !strings.Contains(body, metric) {
			t.Errorf("/metrics lacks %s", metric)
		}
	}
	resp, err := http.Get("http://" + s.http + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz = %d", resp.StatusCode)
	}

	// Stopping writes the exporter statistics.
	s.stop(t)
	db := s.dbAfterStop(t)
	var datagrams, flows uint64
	if err := store.QueryRow(context.Background(), db, []any{&datagrams, &flows},
		"SELECT argMax(datagrams, updated_at), argMax(flows, updated_at) FROM exporters"); err != nil {
		t.Fatal(err)
	}
	var total uint64
	if err := store.QueryRow(context.Background(), db, []any{&total}, "SELECT count() FROM flows"); err != nil {
		t.Fatal(err)
	}
	if flows != total || datagrams == 0 {
		t.Errorf("exporters table says %d flows in %d datagrams; flows table has %d rows", flows, datagrams, total)
	}
}

func compareTuples(t *testing.T, got, want map[tuple]counts) {
	t.Helper()
	bad := 0
	for k, w := range want {
		if g := got[k]; g != w {
			if bad < 5 {
				t.Errorf("tuple %+v: stored %+v, traffic %+v", k, g, w)
			}
			bad++
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			if bad < 5 {
				t.Errorf("stored tuple %+v is not in the traffic", k)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d tuples differ of %d", bad, len(want))
	}
}
