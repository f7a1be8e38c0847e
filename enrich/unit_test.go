package enrich

import (
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/enrich/oui"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/tenant"
)

func TestCounterDelta(t *testing.T) {
	for _, c := range []struct {
		prev, cur uint64
		bits      uint
		max       uint64
		want      uint64
		ok        bool
	}{
		{100, 250, 64, 0, 150, true},
		{1<<32 - 10, 5, 32, 0, 15, true},        // 32-bit wrap
		{^uint64(0) - 9, 5, 64, 1000, 15, true}, // 64-bit wrap within line rate
		{1_000_000, 10, 64, 1000, 0, false},     // reset: the wrapped delta is impossible
		{1_000_000, 10, 64, 0, 0, false},        // reset, speed unknown
	} {
		got, ok := counterDelta(c.prev, c.cur, c.bits, c.max)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("counterDelta(%d, %d, %d, %d) = %d, %v; want %d, %v", c.prev, c.cur, c.bits, c.max, got, ok, c.want, c.ok)
		}
	}
	r := rateOf(counterSample{at: 0, in: 0, out: 0}, counterSample{at: 10_000, in: 12_500_000, out: 0}, 100)
	if !r.valid || r.inBps != 10_000_000 || r.inUtil != 10 || r.seconds != 10 {
		t.Errorf("rate %+v, want 10 Mbit/s = 10%% of 100 Mbit/s", r)
	}
	if r := rateOf(counterSample{at: 0, in: 5_000_000}, counterSample{at: 10_000, in: 10}, 100); r.valid || !r.reset {
		t.Errorf("counter reset: %+v", r)
	}
}

func TestOUIRegistry(t *testing.T) {
	reg, err := oui.Load("/usr/share/ieee-data")
	if err != nil {
		t.Fatalf("apt-get install ieee-data: %v", err)
	}
	for mac, want := range map[uint64]string{
		0x00000c123456: "Cisco Systems, Inc",
		0x70b3d5f2f001: "TELEPLATFORMS", // MA-S inside an MA-L of the IEEE RA: longest prefix
		0x020000000001: "",              // locally administered
		0:              "",
	} {
		if got := reg.Vendor(mac); got != want {
			t.Errorf("Vendor(%012x) = %q, want %q", mac, got, want)
		}
	}
	if reg.Vendor(0x70b3d5000000) == "TELEPLATFORMS" {
		t.Error("MA-S vendor leaks to its MA-L neighbours")
	}
	t.Logf("%d prefixes", reg.Len())
}

// TestNetworks; the exporter match is package tenant's (TestMatch).
func TestNetworks(t *testing.T) {
	n := newNetworks([]NetworkConfig{
		{Prefix: "10.0.0.0/8", Name: "private"},
		{Prefix: "10.1.0.0/16", Tenant: "a", Name: "a-site"},
		{Prefix: "2001:db8::/32", Name: "doc6"},
	})
	a := func(s string) flow.Addr { return flow.AddrFromNetip(mustAddr(s)) }
	for _, c := range []struct{ tenant, ip, want string }{
		{"a", "10.1.2.3", "a-site"}, {"b", "10.1.2.3", "private"}, {"a", "10.2.0.1", "private"},
		{"a", "2001:db8::1", "doc6"}, {"a", "192.0.2.1", ""},
	} {
		got := ""
		if nw := n.lookup(c.tenant, a(c.ip)); nw != nil {
			got = nw.Name
		}
		if got != c.want {
			t.Errorf("%s %s: %q, want %q", c.tenant, c.ip, got, c.want)
		}
	}
}

func TestClassify(t *testing.T) {
	rules := compileRules([]InterfaceRule{
		{Name: "^xe-", Description: "(?i)transit", Boundary: "external", Provider: "isp", Connectivity: "transit"},
		{Name: "^xe-", Boundary: "internal"},
	})
	i := &Interface{Name: "xe-0/0/1", Alias: "Transit: ISP"}
	classify(rules, i)
	if i.Boundary != "external" || i.Provider != "isp" || i.Connectivity != "transit" {
		t.Errorf("%+v", i)
	}
	j := &Interface{Name: "xe-0/0/2", Descr: "core"}
	classify(rules, j)
	if j.Boundary != "internal" || j.Provider != "" {
		t.Errorf("%+v", j)
	}
}

func TestValidateNamesKeys(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DefaultTenant = ""
	cfg.Exporters = []ExporterConfig{{Match: "not-an-ip"}, {Match: "192.0.2.1", InterfaceRules: []InterfaceRule{{Name: "(", Boundary: "outside"}}}}
	cfg.Exporters[1].SNMP.Enabled = true
	cfg.Exporters[1].SNMP.Version = "3"
	cfg.Exporters[1].SNMP.AuthPassphrase = "hunter2"
	cfg.Networks = []NetworkConfig{{Prefix: "10/8"}}
	cfg.Polling.Jitter = 2
	cfg.Polling.Neighbors = 0
	cfg.SFlowCounters = SFlowCountersConfig{MaxInterfaces: 0, IdleTimeout: time.Second, FlushInterval: 0, MaxPendingRows: 10}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"default_tenant", "exporters[0].match", "exporters[1].interface_rules[0].name",
		"exporters[1].interface_rules[0].boundary", "exporters[1].snmp.user", "exporters[1].snmp.priv_passphrase",
		"networks[0].prefix", "polling.jitter", "polling.neighbors", "sflow_counters.max_interfaces", "sflow_counters.idle_timeout",
		"sflow_counters.flush_interval", "sflow_counters.max_pending_rows"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Error("error shows a secret")
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// TestSharedTenants: the Enricher stamps flows with the tenants it is
// given, and refuses tenants built from another configuration (it tells
// the entries apart by their index).
func TestSharedTenants(t *testing.T) {
	cfg := DefaultConfig()
	cfg.OUIDir = ""
	cfg.Exporters = []ExporterConfig{{Match: "192.0.2.0/24", Tenant: "acme", Name: "edge"}}
	ts, err := tenant.New(cfg.Tenants())
	if err != nil {
		t.Fatal(err)
	}
	next := &sinkFunc{}
	e, err := New(cfg, Deps{Next: next, Tenants: ts})
	if err != nil {
		t.Fatal(err)
	}
	e.Write([]flow.Flow{{ExporterAddr: flow.AddrFromNetip(mustAddr("192.0.2.9"))}, {ExporterAddr: flow.AddrFromNetip(mustAddr("198.51.100.1"))}})
	if len(next.got) != 2 || next.got[0].Tenant != "acme" || next.got[0].ExporterName != "edge" || next.got[1].Tenant != "default" {
		t.Fatalf("flows %+v", next.got)
	}
	if st, ok := e.Exporter(mustAddr("198.51.100.1")); !ok || !st.Discovered || st.Tenant != "default" {
		t.Errorf("unmatched exporter: %+v", st)
	}
	other := cfg
	other.Exporters = []ExporterConfig{{Match: "192.0.2.0/24", Tenant: "globex"}}
	if _, err := New(other, Deps{Next: next, Tenants: ts}); err == nil || !strings.Contains(err.Error(), "Deps.Tenants") {
		t.Fatalf("tenants of another configuration: error %v", err)
	}
}

type sinkFunc struct{ got []flow.Flow }

func (s *sinkFunc) Write(flows []flow.Flow) { s.got = append(s.got, flows...) }
