package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/config"
	"github.com/flowhouse/flowhouse/flowgen"
	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/store"
)

// startHostSnmpd runs net-snmp's snmpd on 127.0.0.1 at a free port,
// serving this machine's interfaces, until the test ends.
func startHostSnmpd(t *testing.T, sysName string) int {
	t.Helper()
	if _, err := exec.LookPath("snmpd"); err != nil {
		t.Fatalf("snmpd is missing (scripts/deps.sh installs it): %v", err)
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "snmpd.conf")
	body := fmt.Sprintf("agentAddress udp:127.0.0.1:%d\nrocommunity public 127.0.0.1\nsysName %s\n", port, sysName)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("snmpd", "-f", "-C", "-c", conf, "-Lf", filepath.Join(dir, "snmpd.log"),
		"-p", filepath.Join(dir, "snmpd.pid"), "-M", "/dev/null", "-m", "")
	cmd.Env = append(os.Environ(), "SNMP_PERSISTENT_DIR="+filepath.Join(dir, "persist"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return port
}

// TestEndToEndEnrichmentFromSNMP sends flows from a simulated exporter
// whose address maps to a real SNMP agent, and checks that the stored
// flows carry the tenant, the exporter's name and the agent's interface
// names.
func TestEndToEndEnrichmentFromSNMP(t *testing.T) {
	port := startHostSnmpd(t, "e2e-router")
	addr, database := chtest.Database(t)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "flowhouse.yaml")
	yaml := fmt.Sprintf(`clickhouse:
  addr: %s
  database: %s
  batch_interval: 200ms
collector:
  listeners: ["127.0.0.1:0"]
http:
  listen: 127.0.0.1:0
spool:
  dir: %s
enrich:
  exporters:
    - match: 127.0.1.1
      tenant: acme
      snmp:
        enabled: true
        version: "2c"
        community: public
        agent: 127.0.0.1:%d
`, addr, database, filepath.Join(dir, "spool"), port)
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLOWHOUSE_COLLECTOR_STATE_FILE", filepath.Join(dir, "collector.state"))
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	up := make(chan running, 1)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() { done <- runServer(ctx, cfg, log, hooks{started: func(r running) { up <- r }}) }()
	var r running
	select {
	case r = <-up:
	case err := <-done:
		t.Fatalf("serve ended at start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not start")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	// Wait for the first interface poll, so the flows meet a warm cache.
	testkit.Eventually(t, "first SNMP interface poll", 30*time.Second, func() bool {
		return scrapeMetric(t, r.httpAddr, `flowhouse_enrich_snmp_polls_total{kind="interfaces"}`) >= 1
	})

	gcfg := flowgen.DefaultConfig()
	gcfg.Target = r.listeners[0]
	gcfg.Exporters = 1
	gcfg.SourceBase = netip.MustParseAddr("127.0.1.1")
	gcfg.Protocols = []flowgen.Protocol{flowgen.IPFIX}
	gcfg.Count = 3000
	gcfg.Rate = 20000
	gen, err := flowgen.New(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	report, err := gen.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(context.Background(), cfg.ClickHouse, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	testkit.Eventually(t, "all flows stored", 30*time.Second, func() bool {
		var n uint64
		_ = store.QueryRow(context.Background(), db, []any{&n}, "SELECT count() FROM flows")
		return n >= report.Total.Flows
	})

	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	names := map[uint32]string{}
	for _, i := range ifaces {
		names[uint32(i.Index)] = i.Name
	}
	rows, err := db.Query(context.Background(), `
		SELECT tenant, exporter_name, in_if_index, in_if_name, out_if_index, out_if_name, count()
		FROM flows GROUP BY tenant, exporter_name, in_if_index, in_if_name, out_if_index, out_if_name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	named := 0
	for rows.Next() {
		var tenant, exporter, inName, outName string
		var inIdx, outIdx uint32
		var n uint64
		if err := rows.Scan(&tenant, &exporter, &inIdx, &inName, &outIdx, &outName, &n); err != nil {
			t.Fatal(err)
		}
		if tenant != "acme" || exporter != "e2e-router" {
			t.Errorf("%d flows with tenant %q exporter %q, want acme / e2e-router (sysName)", n, tenant, exporter)
		}
		if inName != names[inIdx] || outName != names[outIdx] {
			t.Errorf("ifIndex %d -> %q, %d -> %q; the agent names them %q, %q", inIdx, inName, outIdx, outName, names[inIdx], names[outIdx])
		}
		if inName != "" {
			named++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if named == 0 {
		t.Errorf("no flow got an interface name; host interfaces: %v", names)
	}
}

func scrapeMetric(t *testing.T, httpAddr, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(scrapeMetrics(t, httpAddr), "\n") {
		if strings.HasPrefix(line, series+" ") {
			v, _ := strconv.ParseFloat(strings.TrimPrefix(line, series+" "), 64)
			return v
		}
	}
	return 0
}

// scrapeMetrics is serve's /metrics page; "" when it does not answer.
func scrapeMetrics(t *testing.T, httpAddr string) string {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
