package inventoryapi_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/enrich"
	"github.com/flowhouse/flowhouse/enrich/snmp"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/apitest"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/internal/peers"
	"github.com/flowhouse/flowhouse/inventoryapi"
	"github.com/flowhouse/flowhouse/tenant"
)

// tables are those the tests fill, emptied before each on the embedded
// engine.
var tables = []string{"exporters", "exporter_attributes", "exporter_polls", "interfaces", "interface_counters", "devices", "alerts"}

// The cast: tenants a and b (apitest.Principals) and the default one.
const (
	edgeA    = "192.0.2.1"    // a, by address, polled (snmpd)
	inBofA   = "198.51.100.7" // a, inside b's prefix: the longest prefix wins
	silentA  = "203.0.113.9"  // a, polled, its agent does not answer
	edgeB    = "198.51.100.5" // b, by prefix, polled (snmpd)
	v6B      = "2001:db8::1"  // b, by an IPv6 prefix, counted only
	strayDef = "10.9.9.9"     // no entry: discovered, default tenant
	vrrpMAC  = "00:00:5e:00:01:01"
	ciscoA   = "00:00:0c:12:34:56"
	ciscoB   = "00:00:0c:aa:bb:cc"
	googleA  = "3c:5a:b4:00:00:01"
)

// world is a running API over a database filled through the real
// writers: the collector's statistics through the store, interfaces,
// attributes and polling status by enrichment polling a real snmpd.
type world struct {
	c       *apitest.Client
	e       enginetest.Engine
	sysName string
	now     time.Time
}

func enrichConfig(agent string, silent string) enrich.Config {
	cfg := enrich.DefaultConfig()
	cfg.OUIDir = ""
	cfg.Polling.Interfaces, cfg.Polling.ARP, cfg.Polling.Counters = time.Hour, time.Hour, time.Hour
	on := snmp.DefaultConfig()
	on.Enabled, on.Agent, on.Community, on.Timeout, on.Retries = true, agent, "public", time.Second, 1
	off := on
	off.Agent, off.Timeout, off.Retries = silent, 200*time.Millisecond, 0
	cfg.Exporters = []enrich.ExporterConfig{
		{Match: edgeA, Tenant: "a", Name: "edge-a", Site: "par1", Role: "edge", SNMP: on},
		{Match: "198.51.100.0/24", Tenant: "b", SNMP: on},
		{Match: inBofA + "/32", Tenant: "a", Name: "inner-a"},
		{Match: silentA, Tenant: "a", SNMP: off},
		{Match: "2001:db8::/32", Tenant: "b", Site: "v6"},
	}
	return cfg
}

type discard struct{}

func (discard) Write([]flow.Flow) {}

func newWorld(t *testing.T, e enginetest.Engine, agent *peers.SNMPAgent) *world {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := &world{e: e, sysName: "inventory-router", now: time.Now().UTC().Truncate(time.Second)}
	cfg := enrichConfig(agent.Addr, fmt.Sprintf("127.0.0.1:%d", peers.FreeUDPPort(t)))
	ts, err := tenant.New(cfg.Tenants())
	if err != nil {
		t.Fatal(err)
	}
	en, err := enrich.New(cfg, enrich.Deps{Next: discard{}, DB: e.DB, Tenants: ts})
	if err != nil {
		t.Fatal(err)
	}
	if err := en.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer en.Stop()
	for _, a := range []string{edgeA, edgeB} {
		if err := en.PollNow(ctx, netip.MustParseAddr(a)); err != nil {
			t.Fatalf("polling %s: %v", a, err)
		}
	}
	if err := en.PollNow(ctx, netip.MustParseAddr(silentA)); err == nil {
		t.Fatal("polling an agent that does not answer succeeded")
	}
	// The pollers' own first round may run beside PollNow: stop them,
	// then replace the devices the host's ARP table gave by the cast's.
	en.Stop()
	e.Exec(t, "TRUNCATE TABLE devices", "TRUNCATE TABLE arp_observations")
	w.fillStats(t, ctx)
	w.fillRows(t, ctx)

	entries, discovered := inventoryapi.EntriesOf(cfg)
	h := inventoryapi.New(inventoryapi.DefaultConfig(), inventoryapi.Deps{DB: e.Reader, Tenants: ts, Entries: entries, DiscoveredSNMP: discovered})
	w.c = apitest.Serve(t, api.Config{}, apitest.Principals("a", "b"), func(s *api.Server) {
		s.AddSpec("inventory", inventoryapi.Spec)
		s.Register(h.Register)
	})
	return w
}

func addr(s string) flow.Addr { return flow.AddrFromNetip(netip.MustParseAddr(s)) }

// fillStats writes the collector's statistics as the collector does: an
// older snapshot of edgeA first, which the answers must not show.
func (w *world) fillStats(t *testing.T, ctx context.Context) {
	t.Helper()
	ms := w.now.UnixMilli()
	old := []flow.ExporterStats{{Addr: addr(edgeA), Protocols: []string{"netflow_v9"}, FirstSeenMs: ms - 7200e3, LastSeenMs: ms - 3600e3, Datagrams: 1, Flows: 1}}
	if err := w.e.DB.InsertExporterStats(ctx, w.now.Add(-time.Hour), old); err != nil {
		t.Fatal(err)
	}
	stats := []flow.ExporterStats{
		{Addr: addr(edgeA), Protocols: []string{"ipfix"}, FirstSeenMs: ms - 7200e3, LastSeenMs: ms - 1000, Datagrams: 1000, Flows: 25000, Bytes: 1400000,
			Drops: map[string]uint64{"template_not_found": 7, "queue_full": 2}, Templates: 3, SequenceExpected: 25000, SequenceLost: 250,
			Streams: []flow.StreamStats{{Protocol: "ipfix", ObservationDomain: 1, LastSequence: 24999, Expected: 20000, Lost: 200},
				{Protocol: "ipfix", ObservationDomain: 2, LastSequence: 5000, Expected: 5000, Lost: 50, Resets: 1, Restarts: 3, SourcePort: 4739}}},
		{Addr: addr(inBofA), Protocols: []string{"netflow_v5"}, FirstSeenMs: ms - 60e3, LastSeenMs: ms, Datagrams: 10, Flows: 300},
		{Addr: addr(edgeB), Protocols: []string{"sflow_v5"}, FirstSeenMs: ms - 60e3, LastSeenMs: ms, Datagrams: 20, Flows: 40},
		{Addr: addr(v6B), Protocols: []string{"ipfix"}, FirstSeenMs: ms - 60e3, LastSeenMs: ms, Datagrams: 30, Flows: 90},
		{Addr: addr(strayDef), Protocols: []string{"netflow_v9"}, FirstSeenMs: ms - 60e3, LastSeenMs: ms, Datagrams: 5, Flows: 5},
	}
	if err := w.e.DB.InsertExporterStats(ctx, w.now, stats); err != nil {
		t.Fatal(err)
	}
	// edgeB is heard by a second collector too, and was by a third that
	// stopped an hour ago: the second adds up, the third no longer counts.
	second := []flow.ExporterStats{{Addr: addr(edgeB), Collector: "second", Protocols: []string{"ipfix"}, FirstSeenMs: ms - 120e3, LastSeenMs: ms - 5e3,
		Datagrams: 5, Flows: 7, SequenceExpected: 7, SequenceLost: 1, Streams: []flow.StreamStats{{Protocol: "ipfix", ObservationDomain: 9, Expected: 7, Lost: 1}}}}
	if err := w.e.DB.InsertExporterStats(ctx, w.now.Add(-30*time.Second), second); err != nil {
		t.Fatal(err)
	}
	gone := []flow.ExporterStats{{Addr: addr(edgeB), Collector: "gone", Protocols: []string{"netflow_v5"}, FirstSeenMs: ms - 7200e3, LastSeenMs: ms - 3600e3, Datagrams: 1000, Flows: 1000}}
	if err := w.e.DB.InsertExporterStats(ctx, w.now.Add(-time.Hour), gone); err != nil {
		t.Fatal(err)
	}
}

// ip is the SQL of an address column's value from its text.
func ip(caps dbapi.Capabilities, a string) string {
	m := netip.AddrFrom16(netip.MustParseAddr(a).As16()).String()
	if caps.IPv6 {
		return "toIPv6('" + m + "')"
	}
	return "toFixedString(IPv6StringToNum('" + m + "'), 16)"
}

func macNum(s string) string { return "MACStringToNum('" + s + "')" }

// fillRows writes what has no writer to call here, in the tables' own
// schema: devices (enrichment writes them from ARP polls), counters,
// alerts, and rows written for another tenant than the address's.
func (w *world) fillRows(t *testing.T, ctx context.Context) {
	t.Helper()
	caps, err := dbapi.DetectCapabilities(ctx, w.e.DB)
	if err != nil {
		t.Fatal(err)
	}
	at := func(d time.Duration) string { return fmt.Sprintf("toDateTime(%d)", w.now.Add(d).Unix()) }
	dev := func(tn, mac, vendor, exp string, ifIndex int, ips []string, updated time.Duration) string {
		addrs, firsts, lasts := "[", "[", "["
		for i, a := range ips {
			if i > 0 {
				addrs, firsts, lasts = addrs+", ", firsts+", ", lasts+", "
			}
			addrs += ip(caps, a)
			firsts += at(-time.Duration(i+2) * time.Hour)
			lasts += at(-time.Duration(i) * time.Minute)
		}
		return fmt.Sprintf(`INSERT INTO devices (tenant, mac, vendor, first_seen, last_seen, last_exporter_address, last_if_index,
			ip_history.address, ip_history.first_seen, ip_history.last_seen, updated_at)
			SELECT '%s', %s, '%s', %s, %s, %s, %d, %s], %s], %s], %s`,
			tn, macNum(mac), vendor, at(-48*time.Hour), at(updated), ip(caps, exp), ifIndex, addrs, firsts, lasts, at(updated))
	}
	w.e.Exec(t,
		// The older row of a's Cisco: another vendor text and an address
		// it no longer has in its latest row.
		dev("a", ciscoA, "Old Vendor Name", edgeA, 1, []string{"10.0.0.99"}, -time.Hour),
		dev("a", ciscoA, "Cisco Systems, Inc", edgeA, 1, []string{"10.0.0.5", "10.0.0.6"}, 0),
		dev("a", vrrpMAC, "ICANN, IANA Department", edgeA, 1, []string{"10.0.0.1"}, 0),
		dev("a", googleA, "Google, Inc.", inBofA, 3, []string{"2001:db8:a::9"}, 0),
		// b reuses a's private space: the same virtual MAC and address.
		dev("b", vrrpMAC, "ICANN, IANA Department", edgeB, 1, []string{"10.0.0.1"}, 0),
		dev("b", ciscoB, "Cisco Systems, Inc", edgeB, 1, []string{"10.0.0.5"}, 0),
		// Rows of b for addresses that are a's or the default tenant's.
		fmt.Sprintf(`INSERT INTO exporter_attributes (tenant, exporter_address, name, sys_name, site, role, discovered, updated_at)
			SELECT 'b', %s, 'stale-b', 'stale-b', 'x', 'x', 0, %s`, ip(caps, strayDef), at(0)),
		fmt.Sprintf(`INSERT INTO exporter_polls (tenant, exporter_address, last_success, last_failure, last_failed_kind, last_reason,
			last_error, consecutive_failures, failures, circuit_open_until, updated_at, updated_ms)
			SELECT 'b', %s, %s, toDateTime(0), '', '', '', 0, 0, toDateTime(0), %s, %d`, ip(caps, edgeA), at(0), at(0), w.now.UnixMilli()),
		// Later than any real poll: a's rate is this one, and b's, later
		// still, is for the same address in another tenant.
		counters("a", ip(caps, edgeA), 1, "snmp", 8000, 4000, 0.8, at(time.Minute), w.now.Add(time.Minute).UnixMilli()),
		counters("b", ip(caps, edgeA), 1, "snmp", 99, 99, 99, at(2*time.Minute), w.now.Add(2*time.Minute).UnixMilli()),
		// sFlow counter samples of the same interface, before and after
		// that poll: the later is the latest rate, of either source.
		counters("a", ip(caps, edgeA), 1, "sflow", 7, 7, 7, at(30*time.Second), w.now.Add(30*time.Second).UnixMilli()),
		counters("a", ip(caps, edgeA), 1, "sflow", 16000, 2000, 1.6, at(90*time.Second), w.now.Add(90*time.Second).UnixMilli()),
		// Alerts: a has one firing (after a pending row) and one resolved,
		// b one pending.
		alert("a", "a1", "pending", 1), alert("a", "a1", "firing", 2),
		alert("a", "a2", "firing", 1), alert("a", "a2", "resolved", 2),
		alert("b", "b1", "pending", 1),
	)
}

func counters(tn, exp string, ifIndex int, source string, inBps, outBps int, util float64, at string, ms int64) string {
	return fmt.Sprintf(`INSERT INTO interface_counters (time, time_ms, tenant, exporter_address, if_index, source, in_octets, out_octets,
		interval_seconds, in_bps, out_bps, in_utilisation, out_utilisation, speed_mbps, valid, reset)
		SELECT %s, %d, '%s', %s, %d, '%s', 1, 1, 60, %d, %d, %g, %g, 1000, 1, 0`, at, ms, tn, exp, ifIndex, source, inBps, outBps, util, util/2)
}

func alert(tn, id, status string, version int) string {
	return fmt.Sprintf("INSERT INTO alerts (tenant, id, status, version) SELECT '%s', '%s', '%s', %d", tn, id, status, version)
}
