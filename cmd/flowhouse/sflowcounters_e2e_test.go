package main

import (
	"context"
	"math"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/flowtest"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/store"
)

// sFlow counter samples sent to serve, on both engines, are rows of
// interface_counters with source 'sflow', whose rates are those the
// counters and uptimes sent imply (computed here). The datagrams are
// built by the test, with known counters over time: pmacctd's sfprobe,
// the one sFlow exporter installed, sent nothing at all in 45-80 s runs
// capturing lo live (pcap_interface; its savefile mode sends no counter
// samples), and hsflowd is not in Debian.
func TestSFlowCountersEndToEnd(t *testing.T) {
	for _, engine := range []string{"server", "embedded"} {
		t.Run(engine, func(t *testing.T) { testSFlowCounters(t, engine) })
	}
}

func testSFlowCounters(t *testing.T, engine string) {
	s := startServerWith(t, engine, "enrich:\n  sflow_counters:\n    flush_interval: 100ms\n")
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(s.listeners[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	count := func() uint64 {
		var n uint64
		if err := store.QueryRow(ctx, s.db, []any{&n}, "SELECT count() FROM interface_counters WHERE source = 'sflow'"); err != nil {
			t.Fatal(err)
		}
		return n
	}
	type sample struct {
		uptime  uint32
		in, out uint64
	}
	var sent []sample
	start := time.Now()
	agent := netip.MustParseAddr("127.0.0.1")
	for i := range 3 {
		// The agent's clock runs at 1.5 times the arrivals': rates from
		// the receive times would be a third off.
		up := 5000 + uint32(time.Since(start).Milliseconds()*3/2)
		c := sample{uptime: up, in: 1<<45 + uint64(up)*125_000, out: uint64(up) * 12_500}
		sent = append(sent, c)
		dg := flowtest.SFlowDatagram(agent, 0, uint32(i+1), up, flowtest.CounterSample(uint32(i+1), 5,
			flowtest.IfCounters{IfIndex: 5, SpeedBps: 10_000_000_000, InOctets: c.in, OutOctets: c.out}.Record()))
		if _, err := conn.Write(dg); err != nil {
			t.Fatal(err)
		}
		if !testkit.Within(20*time.Second, func() bool { return count() == uint64(i+1) }) {
			t.Fatalf("sample %d: %d sflow rows", i, count())
		}
	}
	i := 0
	err = dbapi.Each(ctx, s.db, `SELECT in_octets, out_octets, interval_seconds, in_bps, out_bps, in_utilisation, speed_mbps, valid, tenant, if_index
		FROM interface_counters WHERE source = 'sflow' ORDER BY time_ms`, nil, func(r dbapi.Rows) error {
		var in, out, inBps, outBps, speed uint64
		var secs, inUtil float64
		var valid uint8
		var tenant string
		var ifIndex uint32
		if err := r.Scan(&in, &out, &secs, &inBps, &outBps, &inUtil, &speed, &valid, &tenant, &ifIndex); err != nil {
			return err
		}
		if in != sent[i].in || out != sent[i].out || speed != 10_000 || tenant != "default" || ifIndex != 5 || (valid == 1) != (i > 0) {
			t.Errorf("row %d: in %d out %d speed %d tenant %q if %d valid %d; sent %+v", i, in, out, speed, tenant, ifIndex, valid, sent[i])
		}
		if i > 0 {
			wantSecs := float64(sent[i].uptime-sent[i-1].uptime) / 1000
			wantIn := float64(sent[i].in-sent[i-1].in) * 8 / wantSecs
			wantOut := float64(sent[i].out-sent[i-1].out) * 8 / wantSecs
			if math.Abs(secs-wantSecs) > 1e-9 || math.Abs(float64(inBps)-wantIn) > 1 || math.Abs(float64(outBps)-wantOut) > 1 ||
				math.Abs(inUtil-wantIn/1e10*100) > 1e-6 {
				t.Errorf("row %d: %g s, %d/%d bit/s, %g%%; want %g s, %.0f/%.0f bit/s, %g%%", i, secs, inBps, outBps, inUtil, wantSecs, wantIn, wantOut, wantIn/1e10*100)
			}
		}
		i++
		return nil
	})
	if err != nil || i != len(sent) {
		t.Fatalf("read %d rows of %d: %v", i, len(sent), err)
	}
}
