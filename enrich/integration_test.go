package enrich_test

import (
	"context"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/enrich"
	"github.com/flowhouse/flowhouse/enrich/oui"
	"github.com/flowhouse/flowhouse/enrich/snmp"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/store"
	"github.com/prometheus/client_golang/prometheus"
)

func TestMain(m *testing.M) { enginetest.Main(m) }

// recorder is the next Sink: it copies what it receives.
type recorder struct {
	mu    sync.Mutex
	flows []flow.Flow
}

func (r *recorder) Write(fs []flow.Flow) {
	r.mu.Lock()
	r.flows = append(r.flows, fs...)
	r.mu.Unlock()
}

func (r *recorder) last() flow.Flow {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flows[len(r.flows)-1]
}

var (
	ouiOnce sync.Once
	ouiReg  *oui.Registry
	ouiErr  error
)

func registry(t *testing.T) *oui.Registry {
	t.Helper()
	ouiOnce.Do(func() { ouiReg, ouiErr = oui.Load("/usr/share/ieee-data") })
	if ouiErr != nil {
		t.Fatalf("IEEE registry (apt-get install ieee-data): %v", ouiErr)
	}
	return ouiReg
}

func openDB(t *testing.T) store.DB {
	t.Helper()
	addr, database := chtest.Database(t)
	cfg := store.DefaultConfig()
	cfg.Addr, cfg.Database = addr, database
	ctx := withTimeout(t, 20*time.Second)
	db, err := store.OpenServer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention}); err != nil {
		t.Fatal(err)
	}
	return db
}

// agentSNMP is a v2c config for an agent at host:port.
func agentSNMP(addr, community string) snmp.Config {
	c := snmp.DefaultConfig()
	c.Enabled = true
	c.Agent = addr
	c.Community = community
	c.Timeout = 500 * time.Millisecond
	c.Retries = 1
	return c
}

func newEnricher(t *testing.T, cfg enrich.Config, db store.DB, next *recorder, reg prometheus.Registerer) *enrich.Enricher {
	t.Helper()
	e, err := enrich.New(cfg, enrich.Deps{Next: next, DB: db, OUI: registry(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(withTimeout(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Stop() })
	return e
}

// testConfig polls slowly: tests poll with PollNow.
func testConfig() enrich.Config {
	cfg := enrich.DefaultConfig()
	cfg.Polling.Interfaces, cfg.Polling.ARP, cfg.Polling.Counters = time.Hour, time.Hour, time.Hour
	cfg.OUIDir = ""
	return cfg
}

func addr(s string) flow.Addr { return flow.AddrFromNetip(netip.MustParseAddr(s)) }

func mac(s string) flow.MAC {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return flow.MACFromSlice(hw)
}

func TestEnrichFromNamespaceAgent(t *testing.T) {
	ns := labNamespace(t, "wan0", "lan0", map[string]string{
		"10.255.3.9":  "00:00:0c:12:34:56", // Cisco
		"10.255.3.10": "02:11:22:33:44:55", // locally administered
	})
	run(t, "ip", "-n", ns, "-6", "neigh", "replace", "fd00:3::9", "lladdr", "3c:5a:b4:00:00:01", "dev", "lan0", "nud", "permanent")
	ag := startSnmpd(t, ns, "lab-router")
	wanIdx, lanIdx := ifIndexOf(t, ns, "wan0"), ifIndexOf(t, ns, "lan0")

	db := openDB(t)
	cfg := testConfig()
	cfg.Exporters = []enrich.ExporterConfig{{
		Match: "192.0.2.1", Tenant: "acme", Site: "par1", Role: "edge",
		SNMP:           agentSNMP(ag.addr, "public"),
		InterfaceRules: []enrich.InterfaceRule{{Description: "(?i)transit", Boundary: "external", Provider: "isp1", Connectivity: "transit"}},
	}}
	cfg.InterfaceRules = []enrich.InterfaceRule{{Name: "^lan", Boundary: "internal"}}
	next := &recorder{}
	reg := prometheus.NewRegistry()
	e := newEnricher(t, cfg, db, next, reg)
	exp := netip.MustParseAddr("192.0.2.1")

	ag.setAlias(t, wanIdx, "transit to isp1")
	if err := e.PollNow(withTimeout(t, 10*time.Second), exp); err != nil {
		t.Fatal(err)
	}
	f := flow.Flow{ExporterAddr: addr("192.0.2.1"), InIf: wanIdx, OutIf: lanIdx, SrcAddr: addr("198.51.100.7"), DstAddr: addr("10.255.3.9")}
	e.Write([]flow.Flow{f})
	got := next.last()
	if got.Tenant != "acme" || got.ExporterName != "lab-router" {
		t.Errorf("tenant %q name %q, want acme lab-router", got.Tenant, got.ExporterName)
	}
	if got.InIfName != "wan0" || got.InIfDescription != "transit to isp1" || got.InIfBoundary != "external" || got.InIfSpeedMbps != 10000 {
		t.Errorf("in interface: %q %q %q %d", got.InIfName, got.InIfDescription, got.InIfBoundary, got.InIfSpeedMbps)
	}
	if got.OutIfName != "lan0" || got.OutIfDescription != "lan0" || got.OutIfBoundary != "internal" {
		t.Errorf("out interface: %q %q %q", got.OutIfName, got.OutIfDescription, got.OutIfBoundary)
	}
	if got.DstMAC != mac("00:00:0c:12:34:56") || got.DstVendor != "Cisco Systems, Inc" {
		t.Errorf("dst mac %x vendor %q", uint64(got.DstMAC), got.DstVendor)
	}
	if got.SrcMAC != 0 || got.SrcVendor != "" {
		t.Errorf("src mac %x vendor %q, want none", uint64(got.SrcMAC), got.SrcVendor)
	}
	// IPv6 neighbour, locally administered MAC, MAC from the flow itself.
	e.Write([]flow.Flow{
		{ExporterAddr: addr("192.0.2.1"), SrcAddr: addr("fd00:3::9")},
		{ExporterAddr: addr("192.0.2.1"), SrcAddr: addr("10.255.3.10")},
		{ExporterAddr: addr("192.0.2.1"), SrcAddr: addr("10.255.3.9"), SrcMAC: mac("70:b3:d5:f2:f0:01")},
	})
	fs := next.flows[len(next.flows)-3:]
	if fs[0].SrcMAC != mac("3c:5a:b4:00:00:01") || fs[0].SrcVendor != "Google, Inc." {
		t.Errorf("IPv6 neighbour: mac %x vendor %q", uint64(fs[0].SrcMAC), fs[0].SrcVendor)
	}
	if fs[1].SrcMAC != mac("02:11:22:33:44:55") || fs[1].SrcVendor != "" {
		t.Errorf("locally administered: mac %x vendor %q", uint64(fs[1].SrcMAC), fs[1].SrcVendor)
	}
	if fs[2].SrcMAC != mac("70:b3:d5:f2:f0:01") || fs[2].SrcVendor != "TELEPLATFORMS" {
		t.Errorf("flow's own MAC (MA-S): mac %x vendor %q", uint64(fs[2].SrcMAC), fs[2].SrcVendor)
	}

	// Changes show after the next poll: alias, and an ARP entry moving to
	// another MAC; the device inventory keeps the address history.
	ag.setAlias(t, wanIdx, "peering at ix")
	// In place, as on a router (enrich reads IPv4 MACs from
	// ipNetToMediaTable, which net-snmp 5.9 keeps right then).
	run(t, "ip", "-n", ns, "neigh", "replace", "10.255.3.9", "lladdr", "00:00:0c:99:99:99", "dev", "lan0", "nud", "permanent")
	run(t, "ip", "-n", ns, "neigh", "replace", "10.255.3.11", "lladdr", "00:00:0c:12:34:56", "dev", "lan0", "nud", "permanent")
	// snmpd serves a change made within a second of its last walk only
	// once its cache expires: poll until the agent shows it.
	testkit.Eventually(t, "the agent serving the new MAC", 10*time.Second, func() bool {
		if err := e.PollNow(withTimeout(t, 10*time.Second), exp); err != nil {
			t.Fatal(err)
		}
		e.Write([]flow.Flow{f})
		got = next.last()
		return got.DstMAC == mac("00:00:0c:99:99:99")
	})
	if got.InIfDescription != "peering at ix" || got.InIfBoundary != "" {
		t.Errorf("after alias change: %q boundary %q", got.InIfDescription, got.InIfBoundary)
	}
	if got.DstMAC != mac("00:00:0c:99:99:99") {
		t.Errorf("after ARP change: dst mac %x", uint64(got.DstMAC))
	}
	var dev *enrich.Device
	for _, d := range e.Devices("acme") {
		if d.MAC == uint64(mac("00:00:0c:12:34:56")) {
			dev = &d
		}
	}
	if dev == nil || len(dev.IPs) != 2 || dev.Vendor != "Cisco Systems, Inc" || dev.LastExporter != exp || dev.LastIfIndex != lanIdx {
		t.Fatalf("device 00:00:0c:12:34:56: %+v", dev)
	}
	if n := metricValue(t, reg, "flowhouse_enrich_snmp_polls_total", map[string]string{"kind": "interfaces"}); n < 2 {
		// The scheduled first poll may run too.
		t.Errorf("interface polls counted %v, want at least 2", n)
	}

	// The tables hold what was polled.
	ctx := withTimeout(t, 10*time.Second)
	var alias string
	if err := store.QueryRow(ctx, db, []any{&alias}, "SELECT if_alias FROM interfaces FINAL WHERE tenant = 'acme' AND if_index = ?", wanIdx); err != nil {
		t.Fatal(err)
	}
	if alias != "peering at ix" {
		t.Errorf("interfaces.if_alias = %q", alias)
	}
	var events string
	if err := store.QueryRow(ctx, db, []any{&events},
		"SELECT arrayStringConcat(groupArray(event), ',') FROM (SELECT event FROM arp_observations WHERE ip_address = toFixedString(IPv6StringToNum('::ffff:10.255.3.9'), 16) ORDER BY time, event)"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(events, "new") || !strings.Contains(events, "changed") {
		t.Errorf("arp_observations events for 10.255.3.9: %q", events)
	}
	var nIPs uint64
	if err := store.QueryRow(ctx, db, []any{&nIPs}, "SELECT length(ip_history.address) FROM devices FINAL WHERE mac = ?", uint64(mac("00:00:0c:12:34:56"))); err != nil {
		t.Fatal(err)
	}
	if nIPs != 2 {
		t.Errorf("devices.ip_history has %d addresses, want 2", nIPs)
	}
	var valid uint64
	if err := store.QueryRow(ctx, db, []any{&valid}, "SELECT count() FROM interface_counters WHERE valid = 1 AND if_index = ?", wanIdx); err != nil {
		t.Fatal(err)
	}
	if valid < 1 {
		t.Errorf("interface_counters: %d rows with a rate for wan0, want at least 1 (second poll)", valid)
	}

	// Restart: a new Enricher on the same database, whose agent does not
	// answer, enriches from the reloaded state.
	e.Stop()
	cfg2 := cfg
	cfg2.Exporters = append([]enrich.ExporterConfig(nil), cfg.Exporters...)
	cfg2.Exporters[0].SNMP = agentSNMP("127.0.0.1:"+strconv.Itoa(freeUDPPort(t)), "public")
	next2 := &recorder{}
	e2 := newEnricher(t, cfg2, db, next2, nil)
	e2.Write([]flow.Flow{f})
	got = next2.last()
	if got.ExporterName != "lab-router" || got.InIfName != "wan0" || got.InIfDescription != "peering at ix" || got.DstMAC != mac("00:00:0c:99:99:99") || got.DstVendor != "Cisco Systems, Inc" {
		t.Errorf("after restart: %q %q %q %x %q", got.ExporterName, got.InIfName, got.InIfDescription, uint64(got.DstMAC), got.DstVendor)
	}
	if ds := e2.Devices("acme"); len(ds) != len(e.Devices("acme")) {
		t.Errorf("after restart: %d devices, want %d", len(ds), len(e.Devices("acme")))
	}
}

// Two tenants with the same private prefixes and ifIndexes get their own
// names, MACs and networks.
func TestCrossTenantIsolation(t *testing.T) {
	nsA := labNamespace(t, "a-wan", "a-lan", map[string]string{"10.255.3.9": "00:00:0c:aa:aa:aa"})
	nsB := labNamespace(t, "b-wan", "b-lan", map[string]string{"10.255.3.9": "00:00:0c:bb:bb:bb"})
	agA, agB := startSnmpd(t, nsA, "router-a"), startSnmpd(t, nsB, "router-b")
	idxA, idxB := ifIndexOf(t, nsA, "a-wan"), ifIndexOf(t, nsB, "b-wan")
	if idxA != idxB {
		t.Fatalf("ifIndexes differ (%d, %d): the test wants them equal", idxA, idxB)
	}
	cfg := testConfig()
	cfg.Exporters = []enrich.ExporterConfig{
		{Match: "10.0.0.1", Tenant: "a", SNMP: agentSNMP(agA.addr, "public")},
		{Match: "10.0.0.0/24", Tenant: "b", SNMP: agentSNMP(agB.addr, "public")},
	}
	cfg.Networks = []enrich.NetworkConfig{
		{Prefix: "10.255.3.0/24", Tenant: "a", Name: "a-office"},
		{Prefix: "10.255.3.0/24", Tenant: "b", Name: "b-datacenter"},
		{Prefix: "10.0.0.0/8", Name: "rfc1918"},
	}
	next := &recorder{}
	e := newEnricher(t, cfg, nil, next, nil)
	ctx := withTimeout(t, 20*time.Second)
	for _, a := range []string{"10.0.0.1", "10.0.0.2"} {
		if err := e.PollNow(ctx, netip.MustParseAddr(a)); err != nil {
			t.Fatal(err)
		}
	}
	e.Write([]flow.Flow{
		{ExporterAddr: addr("10.0.0.1"), InIf: idxA, DstAddr: addr("10.255.3.9")},
		{ExporterAddr: addr("10.0.0.2"), InIf: idxB, DstAddr: addr("10.255.3.9")},
	})
	a, b := next.flows[0], next.flows[1]
	// The same address is in each tenant's own network.
	if a.DstNetName != "a-office" || b.DstNetName != "b-datacenter" {
		t.Errorf("flow networks: tenant a %q, tenant b %q", a.DstNetName, b.DstNetName)
	}
	if a.Tenant != "a" || a.ExporterName != "router-a" || a.InIfName != "a-wan" || a.DstMAC != mac("00:00:0c:aa:aa:aa") {
		t.Errorf("tenant a: %q %q %q %x", a.Tenant, a.ExporterName, a.InIfName, uint64(a.DstMAC))
	}
	if b.Tenant != "b" || b.ExporterName != "router-b" || b.InIfName != "b-wan" || b.DstMAC != mac("00:00:0c:bb:bb:bb") {
		t.Errorf("tenant b: %q %q %q %x", b.Tenant, b.ExporterName, b.InIfName, uint64(b.DstMAC))
	}
	// A third exporter of tenant b without ARP data resolves from its
	// tenant's merged cache, never from tenant a's.
	e.Write([]flow.Flow{{ExporterAddr: addr("10.0.0.3"), DstAddr: addr("10.255.3.9")}})
	if c := next.last(); c.Tenant != "b" || c.DstMAC != mac("00:00:0c:bb:bb:bb") {
		t.Errorf("tenant b, other exporter: %q %x", c.Tenant, uint64(c.DstMAC))
	}
	for tenant, want := range map[string]string{"a": "a-office", "b": "b-datacenter", "other": "rfc1918"} {
		if n, ok := e.Network(tenant, netip.MustParseAddr("10.255.3.9")); !ok || n.Name != want {
			t.Errorf("network of 10.255.3.9 for %s: %+v, want %s", tenant, n, want)
		}
	}
	if ds := e.Devices("a"); len(ds) != 1 || ds[0].MAC != uint64(mac("00:00:0c:aa:aa:aa")) {
		t.Errorf("devices of a: %+v", ds)
	}
	// An unconfigured exporter is accepted under the default tenant.
	e.Write([]flow.Flow{{ExporterAddr: addr("203.0.113.5"), InIf: idxA}})
	if c := next.last(); c.Tenant != "default" || c.InIfName != "" {
		t.Errorf("discovered exporter: tenant %q if %q", c.Tenant, c.InIfName)
	}
	if st, ok := e.Exporter(netip.MustParseAddr("203.0.113.5")); !ok || !st.Discovered {
		t.Errorf("discovered exporter status: %+v", st)
	}
}

// The fallback to ipNetToMediaTable, with an agent whose view hides
// ipNetToPhysicalTable.
func TestARPFallbackToIPNetToMedia(t *testing.T) {
	ns := labNamespace(t, "wan0", "lan0", map[string]string{"10.255.3.9": "00:00:0c:12:34:56"})
	ag := startSnmpd(t, ns, "legacy")
	c, err := snmp.Open(context.Background(), agentSNMP(ag.addr, "legacy"), ag.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rows, table, err := c.ARP()
	if err != nil {
		t.Fatal(err)
	}
	if table != "ipNetToMedia" || len(rows) != 1 || rows[0].IP != netip.MustParseAddr("10.255.3.9") || rows[0].MAC != uint64(mac("00:00:0c:12:34:56")) {
		t.Errorf("fallback: table %s rows %+v", table, rows)
	}
	c2, err := snmp.Open(context.Background(), agentSNMP(ag.addr, "public"), ag.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, table, err := c2.ARP(); err != nil || table != "ipNetToPhysical+ipNetToMedia" {
		t.Errorf("full view: table %s err %v", table, err)
	}
}

// metricValue is the value of the series of name with labels.
func metricValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}
