package enrich_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/collector"
	"github.com/flowhouse/flowhouse/enrich"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/flowtest"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/store"
	"github.com/prometheus/client_golang/prometheus"
)

// counterRow is a row of interface_counters as the test reads it back.
type counterRow struct {
	source          string
	ifIndex         uint32
	timeMs          uint64
	in, out         uint64
	seconds         float64
	inBps, outBps   uint64
	inUtil, outUtil float64
	speedMbps       uint64
	valid, reset    uint8
}

func readCounters(t *testing.T, ctx context.Context, db store.DB, tenant string) []counterRow {
	t.Helper()
	var rows []counterRow
	err := dbapi.Each(ctx, db, `SELECT source, if_index, time_ms, in_octets, out_octets, interval_seconds, in_bps, out_bps,
		in_utilisation, out_utilisation, speed_mbps, valid, reset FROM interface_counters WHERE tenant = ? ORDER BY source, if_index, time_ms`,
		[]any{tenant}, func(r dbapi.Rows) error {
			var c counterRow
			if err := r.Scan(&c.source, &c.ifIndex, &c.timeMs, &c.in, &c.out, &c.seconds, &c.inBps, &c.outBps, &c.inUtil, &c.outUtil, &c.speedMbps, &c.valid, &c.reset); err != nil {
				return err
			}
			rows = append(rows, c)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// sflowSetup is a database and a configuration with one exporter of
// tenant at addr, polled by a real snmpd, whose sFlow rows are flushed
// every 50 ms.
func sflowSetup(t *testing.T, addr, tenant string) (enrich.Config, store.DB) {
	t.Helper()
	ag := startSnmpd(t, "", "sflow-"+tenant)
	cfg := testConfig()
	cfg.Exporters = []enrich.ExporterConfig{{Match: addr, Tenant: tenant, SNMP: agentSNMP(ag.addr, "public")}}
	cfg.SFlowCounters.FlushInterval = 50 * time.Millisecond
	return cfg, openDB(t)
}

// sent is one counter sample the test sent: what the rates derive from.
type sent struct {
	uptime  uint32
	in, out uint64
}

// sFlow counter samples sent to the real collector become rows of
// interface_counters (source 'sflow') through the enricher, on the
// ClickHouse server, beside the rows of SNMP polls of the same exporter
// and interface (source 'snmp'), each series with its own rates. The
// expected rates are computed here from the counters and uptimes sent:
// the agent's clock runs at 1.5 times the arrivals', so a rate computed
// from the receive time would be a third off. Interface 1 is
// polled by SNMP, whose speed wins; interface 9999 is not, and has the
// counter record's.
func TestSFlowCountersReachInterfaceCounters(t *testing.T) {
	cfg, db := sflowSetup(t, "127.0.0.1", "sf")
	reg := prometheus.NewRegistry()
	e := newEnricher(t, cfg, db, &recorder{}, reg)
	exp := netip.MustParseAddr("127.0.0.1")
	ctx := withTimeout(t, 60*time.Second)
	if err := e.PollNow(ctx, exp); err != nil {
		t.Fatal(err)
	}
	snmpSpeed := e.Interfaces(exp)[1].SpeedMbps
	if snmpSpeed == 0 {
		t.Fatalf("snmpd gave interface 1 no speed: %+v", e.Interfaces(exp)[1])
	}

	ccfg := collector.DefaultConfig()
	ccfg.Listeners = []string{"127.0.0.1:0"}
	ccfg.ReceiveBufferBytes = 1 << 20
	ccfg.StateFile = "" // templates are not what this test is about
	coll, err := collector.New(ccfg, collector.Deps{Sink: &recorder{}, Counters: e, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := coll.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(coll.Stop)
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(coll.Addrs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	const gbit = 1_000_000_000
	// Per sample: interface 1 gains 3000 octets in and 1000 out per agent
	// second; 9999 gains 50 MB in per second. The agent's uptime runs at
	// 1.5 times the arrivals' clock.
	var sent1, sent9999 []sent
	start := time.Now()
	const samples = 4
	for i := range samples {
		up := 1000 + uint32(time.Since(start).Milliseconds()*3/2)
		s1 := sent{uptime: up, in: 1<<40 + uint64(up)*3, out: 5 + uint64(up)}
		s9 := sent{uptime: up, in: uint64(up) * 50_000}
		sent1, sent9999 = append(sent1, s1), append(sent9999, s9)
		dg := flowtest.SFlowDatagram(exp, 0, uint32(i+1), up,
			flowtest.CounterSample(uint32(i+1), 1, flowtest.IfCounters{IfIndex: 1, SpeedBps: gbit, Status: 3, InOctets: s1.in, OutOctets: s1.out,
				InUcast: 100 * uint32(i+1), InBroadcast: 1, InErrors: 10 * uint32(i+1), OutDiscards: 7}.Record(),
				flowtest.EthernetCounters{1: 3 * uint32(i+1), 12: 42}.Record()),
			flowtest.ExpandedCounterSample(uint32(i+1), 0, 9999, flowtest.IfCounters{IfIndex: 9999, SpeedBps: gbit, InOctets: s9.in}.Record()),
		)
		if _, err := conn.Write(dg); err != nil {
			t.Fatal(err)
		}
		// The next sample once this one is stored: intervals of real time.
		want := 2 * (i + 1)
		if !testkit.Within(10*time.Second, func() bool { return countSFlow(t, ctx, db) >= want }) {
			t.Fatalf("sample %d: %d sflow rows, want %d", i, countSFlow(t, ctx, db), want)
		}
		if i == 1 {
			// An SNMP poll between the samples: its own series.
			if err := e.PollNow(ctx, exp); err != nil {
				t.Fatal(err)
			}
		}
	}

	rows := readCounters(t, ctx, db, "sf")
	bySource := map[string]map[uint32][]counterRow{}
	for _, r := range rows {
		if bySource[r.source] == nil {
			bySource[r.source] = map[uint32][]counterRow{}
		}
		bySource[r.source][r.ifIndex] = append(bySource[r.source][r.ifIndex], r)
	}
	checkSeries(t, "interface 1", bySource["sflow"][1], sent1, snmpSpeed)
	checkSeries(t, "interface 9999", bySource["sflow"][9999], sent9999, 1000)
	if n := len(bySource["sflow"]); n != 2 {
		t.Errorf("sflow rows for %d interfaces, want 2", n)
	}
	// The SNMP polls of interface 1 (at least the two of the test): each
	// with a rate from the poll before (not from an sFlow sample in
	// between), at the agent's own counters.
	snmp1 := bySource["snmp"][1]
	if len(snmp1) < 2 || snmp1[0].valid != 0 {
		t.Fatalf("snmp rows of interface 1: %+v", snmp1)
	}
	for i := 1; i < len(snmp1); i++ {
		secs := float64(snmp1[i].timeMs-snmp1[i-1].timeMs) / 1000
		if snmp1[i].valid != 1 || math.Abs(snmp1[i].seconds-secs) > 1e-6 || snmp1[i].in < snmp1[i-1].in || snmp1[i].in >= 1<<40 {
			t.Errorf("snmp row %d: %+v; want a rate over %g s since the previous poll, at the agent's counters", i, snmp1[i], secs)
		}
	}
	if v := metricValue(t, reg, "flowhouse_collector_sflow_counter_records_total", map[string]string{"format": "0:1", "outcome": "kept"}); v != 2*samples {
		t.Errorf("generic interface records kept: %g, want %d", v, 2*samples)
	}
	if v := metricValue(t, reg, "flowhouse_collector_sflow_counter_records_total", map[string]string{"format": "0:2", "outcome": "kept"}); v != samples {
		t.Errorf("ethernet records kept: %g, want %d", v, samples)
	}
	checkOtherCounters(t, ctx, db, samples)
}

// checkOtherCounters: the sFlow rows of interface 1 hold the packets,
// errors, discards and Ethernet counters its samples carried, as sent
// (cumulative); interface 9999's samples had none, and SNMP rows never do.
func checkOtherCounters(t *testing.T, ctx context.Context, db store.DB, samples int) {
	t.Helper()
	rows, err := db.Query(ctx, `SELECT source, if_index, in_packets, in_errors, out_discards, dot3_fcs_errors, dot3_symbol_errors
		FROM interface_counters WHERE tenant = 'sf' ORDER BY source, if_index, time_ms`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var src string
		var ifIndex, inErr, outDisc, fcs, symbol uint32
		var inPkts uint64
		if err := rows.Scan(&src, &ifIndex, &inPkts, &inErr, &outDisc, &fcs, &symbol); err != nil {
			t.Fatal(err)
		}
		want := [5]uint64{}
		if src == "sflow" && ifIndex == 1 {
			seen++
			want = [5]uint64{100*uint64(seen) + 1, 10 * uint64(seen), 7, 3 * uint64(seen), 42}
		}
		if got := [5]uint64{inPkts, uint64(inErr), uint64(outDisc), uint64(fcs), uint64(symbol)}; got != want {
			t.Errorf("%s interface %d: packets, errors, discards, FCS, symbol errors %v, want %v", src, ifIndex, got, want)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if seen != samples {
		t.Errorf("%d sflow rows of interface 1, want %d", seen, samples)
	}
}

func countSFlow(t *testing.T, ctx context.Context, db store.DB) int {
	t.Helper()
	var n uint64
	if err := store.QueryRow(ctx, db, []any{&n}, "SELECT count() FROM interface_counters WHERE tenant = 'sf' AND source = 'sflow'"); err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// checkSeries compares an interface's sflow rows with the samples sent:
// the first has no rate, each later one the octets sent over the uptime
// sent, in bit/s and percent of speedMbps.
func checkSeries(t *testing.T, name string, rows []counterRow, sent []sent, speedMbps uint64) {
	t.Helper()
	if len(rows) != len(sent) {
		t.Fatalf("%s: %d rows, want %d", name, len(rows), len(sent))
	}
	for i, r := range rows {
		what := fmt.Sprintf("%s row %d", name, i)
		if r.in != sent[i].in || r.out != sent[i].out || r.speedMbps != speedMbps || r.reset != 0 {
			t.Errorf("%s: octets %d/%d speed %d reset %d; want %d/%d speed %d", what, r.in, r.out, r.speedMbps, r.reset, sent[i].in, sent[i].out, speedMbps)
		}
		if i == 0 {
			if r.valid != 0 {
				t.Errorf("%s: the first sample has a rate", what)
			}
			continue
		}
		secs := float64(sent[i].uptime-sent[i-1].uptime) / 1000
		inBps := float64(sent[i].in-sent[i-1].in) * 8 / secs
		outBps := float64(sent[i].out-sent[i-1].out) * 8 / secs
		if r.valid != 1 || math.Abs(r.seconds-secs) > 1e-9 || math.Abs(float64(r.inBps)-inBps) > 1 || math.Abs(float64(r.outBps)-outBps) > 1 {
			t.Errorf("%s: valid %d, %g s, %d/%d bit/s; want %g s, %.0f/%.0f bit/s", what, r.valid, r.seconds, r.inBps, r.outBps, secs, inBps, outBps)
		}
		if want := inBps / (float64(speedMbps) * 1e6) * 100; math.Abs(r.inUtil-want) > 1e-3*math.Max(want, 1e-3) {
			t.Errorf("%s: in utilisation %g%%, want %g%%", what, r.inUtil, want)
		}
	}
}

// After a restart, each source continues from its own last row: the
// sFlow sample's rate is from the last sFlow row (its receive time: the
// agent's uptime of then is not kept), the SNMP poll's from the last
// poll, though both series have rows of interface 1 interleaved.
func TestSFlowCountersSurviveRestart(t *testing.T) {
	cfg, db := sflowSetup(t, "127.0.0.2", "sr")
	exp := netip.MustParseAddr("127.0.0.2")
	ctx := withTimeout(t, 60*time.Second)
	sample := func(e *enrich.Enricher, atMs int64, seq uint32, in uint64) {
		e.WriteCounters([]flow.CounterSample{{ExporterAddr: flow.AddrFromNetip(exp), TimeReceivedMs: atMs, AgentUptimeMs: seq * 1000,
			Sequence: seq, IfIndex: 1, InOctets: in}})
	}
	rowsOf := func(source string) []counterRow {
		var out []counterRow
		for _, r := range readCounters(t, ctx, db, "sr") {
			if r.source == source {
				out = append(out, r)
			}
		}
		return out
	}
	t0 := time.Now().Add(-time.Minute).UnixMilli()
	e1 := newEnricher(t, cfg, db, &recorder{}, nil)
	if err := e1.PollNow(ctx, exp); err != nil {
		t.Fatal(err)
	}
	sample(e1, t0, 1, 1<<50)
	e1.Stop() // writes the queued row
	if n := len(rowsOf("sflow")); n != 1 {
		t.Fatalf("%d sflow rows after the first enricher, want 1", n)
	}
	e2 := newEnricher(t, cfg, db, &recorder{}, nil)
	sample(e2, t0+30_000, 2, 1<<50+3_000_000)
	if !testkit.Within(10*time.Second, func() bool { return len(rowsOf("sflow")) == 2 }) {
		t.Fatalf("sflow rows %+v", rowsOf("sflow"))
	}
	if err := e2.PollNow(ctx, exp); err != nil {
		t.Fatal(err)
	}
	sf := rowsOf("sflow")[1]
	if sf.valid != 1 || sf.seconds != 30 || sf.inBps != 800_000 {
		t.Errorf("sflow row after the restart: %+v; want valid, 30 s, 800000 bit/s", sf)
	}
	snmp := rowsOf("snmp")
	last := snmp[len(snmp)-1]
	if len(snmp) < 2 || last.valid != 1 || last.in >= 1<<50 || last.inBps > 1e9 {
		t.Errorf("snmp rows after the restart: %+v; want the last with a rate from the SNMP series", snmp)
	}
}
