package rules

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/collector"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/flowgen"
)

// flowgenFlows runs flowgen for the minute before attackNow with the
// scenarios given, sampled 1 in 10, through the four exporter protocols
// and the collector's decoder: what flowhouse would store.
func flowgenFlows(t *testing.T, scenarios string, rate float64, share float64) []flow.Flow {
	t.Helper()
	cfg := flowgen.DefaultConfig()
	cfg.Send, cfg.Rate, cfg.Duration = false, rate, 55*time.Second
	cfg.Start = attackNow.Add(-58 * time.Second)
	cfg.SamplingRate, cfg.IPv6Share, cfg.ScenarioShare = 10, 0.2, share
	sc, err := flowgen.ParseScenarios(scenarios, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Scenarios = sc
	dec := collector.NewDecoder(collector.DecoderConfig{}, nil)
	var out, buf []flow.Flow
	cfg.OnDatagram = func(_ int, src netip.AddrPort, payload []byte, ts time.Time) {
		buf = dec.Decode(ts, src, payload, buf[:0])
		for i := range buf {
			buf[i].Tenant = "t1"
		}
		out = append(out, buf...)
	}
	g, err := flowgen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAttackRulesOnFlowgen: every attack flowgen injects is found by its
// rule and by no other, the bulk transfer and the background by none.
func TestAttackRulesOnFlowgen(t *testing.T) {
	flows := flowgenFlows(t, "amplification,synflood,udpflood,icmpflood,portscan,hostscan,bulk", 3000, 0.9)
	want := map[string][]string{
		"amplification": {"t1 dst_address=" + flowgen.AmplificationVictim.String()},
		"syn_flood":     {"t1 dst_address=" + flowgen.SYNFloodTarget.Addr().String()},
		"udp_flood":     {"t1 dst_address=" + flowgen.UDPFloodVictim.String()},
		"icmp_flood":    {"t1 dst_address=" + flowgen.ICMPFloodVictim.String()},
		"port_scan":     {"t1 dst_address=" + flowgen.PortScanTarget.String() + ",src_address=" + flowgen.PortScanSource.String()},
		"host_scan":     {"t1 dst_port=22,dst_prefix=192.0.2.0/24,src_address=" + flowgen.HostScanSource.String()},
	}
	forEachEngine(t, func(t *testing.T, e engine) {
		e.Insert(t, flows)
		got := allAttackFindings(t, e, []string{"t1"})
		for rule, w := range want {
			if !slices.Equal(got[rule], w) {
				t.Errorf("%s found %q, want %q", rule, got[rule], w)
			}
		}
	})
}

// TestAttackRulesSilentOnBackgroundAndBulk: ordinary traffic and a bulk
// transfer fire nothing.
func TestAttackRulesSilentOnBackgroundAndBulk(t *testing.T) {
	flows := flowgenFlows(t, "bulk", 3000, 0.3)
	forEachEngine(t, func(t *testing.T, e engine) {
		e.Insert(t, flows)
		for rule, subjects := range allAttackFindings(t, e, []string{"t1"}) {
			if len(subjects) > 0 {
				t.Errorf("%s found %q", rule, subjects)
			}
		}
	})
}

// allAttackFindings runs every attack and scan rule with its defaults
// and returns the subjects each found, sorted.
func allAttackFindings(t *testing.T, e engine, tenants []string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	add := func(rule string, fs []Finding) {
		for _, f := range fs {
			out[rule] = append(out[rule], subject(f))
			if strings.Contains(subject(f), flowgen.BulkServer.Addr().String()) || strings.Contains(subject(f), flowgen.BulkClient.Addr().String()) {
				t.Errorf("%s fires on the bulk transfer: %s", rule, f.Annotations["summary"])
			}
		}
		slices.Sort(out[rule])
	}
	add("amplification", runKind(t, e, Amplification, tenants, nil))
	add("syn_flood", runKind(t, e, SYNFlood, tenants, nil))
	add("udp_flood", runKind(t, e, UDPFlood, tenants, nil))
	add("icmp_flood", runKind(t, e, ICMPFlood, tenants, nil))
	add("port_scan", runKind(t, e, PortScan, tenants, nil))
	add("host_scan", runKind(t, e, HostScan, tenants, nil))
	return out
}
