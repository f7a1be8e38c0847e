package enrich_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/enrich"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/store"
)

// Enricher -> the store's batcher -> ClickHouse: the flows table holds
// the enrichment.
func TestEnrichedFlowsInClickHouse(t *testing.T) {
	ns := labNamespace(t, "wan0", "lan0", map[string]string{"10.255.3.9": "00:00:0c:12:34:56"})
	ag := startSnmpd(t, ns, "store-router")
	wanIdx := ifIndexOf(t, ns, "wan0")
	ag.setAlias(t, wanIdx, "uplink to ISP")

	db := openDB(t)
	scfg := store.DefaultConfig()
	scfg.BatchInterval = 50 * time.Millisecond
	batcher, err := store.New(scfg, store.Deps{Writer: db})
	if err != nil {
		t.Fatal(err)
	}
	ctx := withTimeout(t, 30*time.Second)
	if err := batcher.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Exporters = []enrich.ExporterConfig{{Match: "192.0.2.1", Tenant: "acme", SNMP: agentSNMP(ag.addr, "public"),
		InterfaceRules: []enrich.InterfaceRule{{Description: "ISP", Boundary: "external"}}}}
	e, err := enrich.New(cfg, enrich.Deps{Next: batcher, DB: db, OUI: registry(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	if err := e.PollNow(ctx, netip.MustParseAddr("192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	e.Write([]flow.Flow{{TimeReceivedMs: now, TimeStartMs: now, TimeEndMs: now, Protocol: flow.ProtoIPFIX,
		ExporterAddr: addr("192.0.2.1"), InIf: wanIdx, SrcAddr: addr("198.51.100.1"), DstAddr: addr("10.255.3.9"),
		Bytes: 1000, Packets: 1, SamplingRate: 1}})
	if err := batcher.Stop(); err != nil {
		t.Fatal(err)
	}
	var tenant, name, ifName, ifDescr, boundary, vendor, macStr string
	var speed uint32
	if err := store.QueryRow(ctx, db, []any{&tenant, &name, &ifName, &ifDescr, &speed, &boundary, &macStr, &vendor},
		"SELECT tenant, exporter_name, in_if_name, in_if_description, in_if_speed_mbps, in_if_boundary, MACNumToString(dst_mac), dst_vendor FROM flows"); err != nil {
		t.Fatal(err)
	}
	if tenant != "acme" || name != "store-router" || ifName != "wan0" || ifDescr != "uplink to ISP" || speed != 10000 ||
		boundary != "external" || macStr != "00:00:0C:12:34:56" || vendor != "Cisco Systems, Inc" {
		t.Errorf("flows row: %q %q %q %q %d %q %q %q", tenant, name, ifName, ifDescr, speed, boundary, macStr, vendor)
	}
}

// Counter deltas continue across a restart: the last sample is reloaded.
func TestCountersSurviveRestart(t *testing.T) {
	ag := startSnmpd(t, "", "counter-router")
	db := openDB(t)
	cfg := testConfig()
	cfg.Exporters = []enrich.ExporterConfig{{Match: "192.0.2.30", Tenant: "c", SNMP: agentSNMP(ag.addr, "public")}}
	exp := netip.MustParseAddr("192.0.2.30")
	e1 := newEnricher(t, cfg, db, &recorder{}, nil)
	ctx := withTimeout(t, 20*time.Second)
	if err := e1.PollNow(ctx, exp); err != nil {
		t.Fatal(err)
	}
	e1.Stop()
	time.Sleep(1100 * time.Millisecond) // a later second
	e2 := newEnricher(t, cfg, db, &recorder{}, nil)
	if err := e2.PollNow(ctx, exp); err != nil {
		t.Fatal(err)
	}
	// By interface: a scheduled poll may run besides PollNow (a slow
	// machine), which adds samples with a rate but no first sample.
	// Each interface has one first sample, from before the restart:
	// after it the reloaded sample gives the first poll its rate.
	var first, firstSamples, withRate, firstOnly uint64
	if err := store.QueryRow(ctx, db, []any{&first, &firstSamples, &withRate, &firstOnly},
		`SELECT uniqExactIf(if_index, valid = 0 AND reset = 0), countIf(valid = 0 AND reset = 0), uniqExactIf(if_index, valid = 1),
			(SELECT count() FROM (SELECT if_index FROM interface_counters WHERE tenant = 'c' GROUP BY if_index HAVING max(valid) = 0))
		FROM interface_counters WHERE tenant = 'c'`); err != nil {
		t.Fatal(err)
	}
	if first == 0 || firstSamples != first || withRate != first || firstOnly != 0 {
		t.Errorf("interface_counters: %d interfaces with a first sample (%d first samples), %d with a rate after the restart, %d with no rate; want one first sample per interface, every one with a rate", first, firstSamples, withRate, firstOnly)
	}
}
