package enrich_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/config"
	"github.com/flowhouse/flowhouse/enrich"
	"github.com/flowhouse/flowhouse/enrich/snmp"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/secret"
	"github.com/prometheus/client_golang/prometheus"
)

func v3(addr, user, authProto, auth, privProto, priv string) snmp.Config {
	c := agentSNMP(addr, "")
	c.Version, c.User, c.AuthProtocol, c.AuthPassphrase = "3", user, authProto, auth
	c.Level = "authpriv"
	c.PrivProtocol, c.PrivPassphrase = privProto, priv
	if priv == "" {
		c.Level = "authnopriv"
	}
	return c
}

// A real snmpd on the host's loopback: v2c and v3 users answer sysName
// and the host's interfaces.
func TestHostAgentVersions(t *testing.T) {
	ag := startSnmpd(t, "", "test-router")
	for name, cfg := range map[string]snmp.Config{
		"v2c":                 agentSNMP(ag.addr, "public"),
		"v3 SHA+AES authPriv": v3(ag.addr, "flowro", "SHA", "flowauthpass1", "AES", "flowprivpass1"),
		"v3 SHA-256+AES-256":  v3(ag.addr, "flowro256", "SHA-256", "flowauthpass2", "AES-256C", "flowprivpass2"),
		"v3 SHA authNoPriv":   v3(ag.addr, "flowauth", "SHA", "flowauthpass3", "", ""),
	} {
		t.Run(name, func(t *testing.T) {
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			c, err := snmp.Open(context.Background(), cfg, ag.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sys, up, err := c.SysName()
			if err != nil || sys != "test-router" || up == 0 {
				t.Fatalf("sysName %q uptime %d err %v", sys, up, err)
			}
			ifs, err := c.Interfaces()
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, i := range ifs {
				found = found || i.Name == "lo"
			}
			if !found {
				t.Errorf("no lo among %+v", ifs)
			}
			if cs, err := c.Counters(); err != nil || len(cs) == 0 {
				t.Errorf("counters: %d, %v", len(cs), err)
			}
		})
	}
}

// Wrong credentials: a clear error, a counted failure, the circuit
// breaker opening, and flows still flowing.
func TestWrongCredentials(t *testing.T) {
	ag := startSnmpd(t, "", "test-router")
	cfg := testConfig()
	cfg.Polling.BreakerFailures = 2
	cfg.Polling.BreakerCooldown = time.Hour
	cfg.Polling.BreakerMaxCooldown = time.Hour
	badCommunity := agentSNMP(ag.addr, "wrong")
	badCommunity.Timeout, badCommunity.Retries = 200*time.Millisecond, 0
	cfg.Exporters = []enrich.ExporterConfig{
		{Match: "192.0.2.10", Tenant: "t", SNMP: badCommunity},
		{Match: "192.0.2.11", Tenant: "t", SNMP: v3(ag.addr, "flowro", "SHA", "wrongpassphrase", "AES", "flowprivpass1")},
		{Match: "192.0.2.12", Tenant: "t", SNMP: v3(ag.addr, "nosuchuser", "SHA", "flowauthpass1", "AES", "flowprivpass1")},
	}
	reg := prometheus.NewRegistry()
	next := &recorder{}
	e := newEnricher(t, cfg, nil, next, reg)
	ctx := withTimeout(t, 20*time.Second)
	// The pollers start on their own: wait for each breaker to open.
	for a, want := range map[string]string{"192.0.2.10": snmp.ReasonTimeout, "192.0.2.11": snmp.ReasonAuth, "192.0.2.12": snmp.ReasonAuth} {
		var st enrich.ExporterStatus
		testkit.Within(10*time.Second, func() bool {
			st, _ = e.Exporter(netip.MustParseAddr(a))
			return st.CircuitOpen
		})
		if st.Failures != 2 || st.LastReason != want || !st.CircuitOpen {
			t.Errorf("%s: status %+v, want 2 failures (%s) and the circuit open", a, st, want)
		}
		if strings.Contains(st.LastError, "wrongpassphrase") || strings.Contains(st.LastError, "flowprivpass1") {
			t.Errorf("%s: error shows a secret: %v", a, st.LastError)
		}
		t.Logf("%s: %s", a, st.LastError)
	}
	if n := metricValue(t, reg, "flowhouse_enrich_snmp_poll_failures_total", map[string]string{"kind": "interfaces", "reason": "auth"}); n != 2 {
		t.Errorf("auth failures of interface polls: %v, want 2", n)
	}
	// The breaker is open: the next poll is skipped without waiting.
	start := time.Now()
	err := e.PollNow(ctx, netip.MustParseAddr("192.0.2.10"))
	if err == nil || !strings.Contains(err.Error(), "circuit breaker open") || time.Since(start) > 100*time.Millisecond {
		t.Errorf("with the circuit open: %v after %s", err, time.Since(start))
	}
	if n := metricValue(t, reg, "flowhouse_enrich_snmp_polls_skipped_total", map[string]string{"kind": "interfaces"}); n < 1 {
		t.Errorf("skipped polls not counted")
	}
	e.Write([]flow.Flow{{ExporterAddr: addr("192.0.2.10"), InIf: 1}})
	if len(next.flows) != 1 || next.flows[0].Tenant != "t" || next.flows[0].InIfName != "" {
		t.Errorf("flows: %+v", next.flows)
	}
	if n := metricValue(t, reg, "flowhouse_enrich_cache_misses_total", map[string]string{"kind": "interface"}); n != 1 {
		t.Errorf("interface misses %v, want 1", n)
	}
}

// Sealed secrets open with the key from the environment, and a community
// may come from a file: config.Load opens them and the enricher polls with
// the plain text. A wrong key fails loading the configuration, naming the
// key, without the value.
func TestSealedCommunity(t *testing.T) {
	ag := startSnmpd(t, "", "sealed-router")
	key, err := secret.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("FH_TEST_KEY", key)
	sealed, err := secret.SealWithConfig(secret.Config{KeyEnv: "FH_TEST_KEY"}, "public")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	configWith := func(name, credential string) string {
		return write(name, "enrich:\n  secrets: {key_env: FH_TEST_KEY}\n  exporters:\n    - match: 192.0.2.20\n"+
			"      snmp: {enabled: true, agent: \""+ag.addr+"\", timeout: 500ms, retries: 1, "+credential+"}\n")
	}
	sealedConfig := configWith("sealed.yaml", "community: \""+sealed+"\"")
	fileConfig := configWith("file.yaml", "community_file: "+write("community", "public\n"))
	for _, path := range []string{sealedConfig, fileConfig} {
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		ecfg := testConfig()
		ecfg.Exporters = cfg.Enrich.Exporters
		e := newEnricher(t, ecfg, nil, &recorder{}, nil)
		if err := e.PollNow(withTimeout(t, 10*time.Second), netip.MustParseAddr("192.0.2.20")); err != nil {
			t.Fatalf("%s: %v", filepath.Base(path), err)
		}
		if st, _ := e.Exporter(netip.MustParseAddr("192.0.2.20")); st.SysName != "sealed-router" {
			t.Errorf("%s: status %+v", filepath.Base(path), st)
		}
	}

	other, _ := secret.GenerateKey()
	t.Setenv("FH_TEST_KEY", other)
	_, err = config.Load(sealedConfig)
	if err == nil || !strings.Contains(err.Error(), "enrich.exporters[0].snmp.community") || strings.Contains(err.Error(), sealed) {
		t.Errorf("wrong key: %v", err)
	}
}
