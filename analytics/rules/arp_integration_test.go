//go:build linux

package rules

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/enrich"
	"github.com/flowhouse/flowhouse/enrich/snmp"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/peers"
	"github.com/flowhouse/flowhouse/notify"
	"github.com/flowhouse/flowhouse/tenant"
)

// discardFlows is the enricher's next sink: this test reads what the pollers
// stored, not flows.
type discardFlows struct{}

func (discardFlows) Write([]flow.Flow) {}

// arpLab is a real snmpd in a network namespace whose neighbour table the
// test changes, polled by flowhouse's enricher into an engine, with the
// ARP rules run by the scheduler into an in-memory alert lifecycle.
type arpLab struct {
	t      *testing.T
	ns     string
	lanIdx uint32
	// agentPort is snmpd's port inside the namespace.
	agentPort int
	enricher  *enrich.Enricher
	exporter  netip.Addr
	sched     *Scheduler
	alerts    *alerts.Manager

	mu     sync.Mutex
	offset time.Duration // added to the wall clock of evaluations
}

func newARPLab(t *testing.T, e engine, neigh map[string]string) *arpLab {
	ns := peers.LabNamespace(t, "wan0", "lan0", neigh)
	ag := peers.StartSnmpd(t, ns, "arp-router")
	lab := &arpLab{t: t, ns: ns, lanIdx: peers.IfIndexOf(t, ns, "lan0"), agentPort: ag.Port, exporter: netip.MustParseAddr("192.0.2.1")}

	ecfg := enrich.DefaultConfig()
	// Polls happen when the test says (PollNow), not on a schedule.
	ecfg.Polling.Interfaces, ecfg.Polling.ARP, ecfg.Polling.Counters = time.Hour, time.Hour, time.Hour
	sc := snmp.DefaultConfig()
	sc.Enabled, sc.Agent, sc.Community, sc.Timeout, sc.Retries = true, ag.Addr, "public", 500*time.Millisecond, 1
	ecfg.Exporters = []enrich.ExporterConfig{{Match: lab.exporter.String(), Tenant: "acme", SNMP: sc}}
	tenants, err := tenant.New(ecfg.Tenants())
	if err != nil {
		t.Fatal(err)
	}
	lab.enricher, err = enrich.New(ecfg, enrich.Deps{Next: discardFlows{}, DB: e.DB, Tenants: tenants})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := lab.enricher.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.enricher.Stop() })

	if lab.alerts, err = alerts.New(alerts.Config{}, alerts.Deps{Tenants: tenants}); err != nil {
		t.Fatal(err)
	}
	if err := lab.alerts.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.alerts.Stop(context.Background()) })

	cfg := DefaultConfig()
	b := &cfg.Builtin
	// Short holds so that the test's few seconds of history qualify.
	b.ARPMACChange.Params.MinKnown = time.Second
	b.ARPMACManyIPs.Params.MinIPv4 = 4
	b.ARPNewMAC.Params.Warmup = time.Second
	lab.sched, err = New(cfg, SchedulerDeps{DB: e.DB, Reader: e.Reader, Alerts: lab.alerts, Tenants: tenants, Now: lab.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.sched.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	return lab
}

func (l *arpLab) now() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Now().Add(l.offset)
}

// advance moves the clock of evaluations ahead of the wall clock.
func (l *arpLab) advance(d time.Duration) {
	l.mu.Lock()
	l.offset += d
	l.mu.Unlock()
}

// setMAC gives ip another MAC in the namespace's neighbour table, in
// place, as `ip neigh replace` does on a router. (net-snmp 5.9.3 then
// garbles the entry's ipNetToPhysicalTable row; enrich reads IPv4 MACs
// from ipNetToMediaTable, which is right.)
func (l *arpLab) setMAC(ip, mac string) {
	l.neigh("replace", ip, mac)
}

// neigh changes the namespace's neighbour table: "replace IP MAC" or
// "del IP".
func (l *arpLab) neigh(op, ip string, mac ...string) {
	args := []string{"ip", "-n", l.ns, "neigh", op, ip}
	if len(mac) > 0 {
		args = append(args, "lladdr", mac[0])
	}
	args = append(args, "dev", "lan0")
	if op == "replace" {
		args = append(args, "nud", "permanent")
	}
	peers.MustRun(l.t, args...)
}

// poll runs the enricher's real pollers against the agent and returns
// when their rows are written.
func (l *arpLab) poll() time.Time {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.enricher.PollNow(ctx, l.exporter); err != nil {
		l.t.Fatal(err)
	}
	return time.Now()
}

// evaluate runs every ARP rule once and returns the active alerts by
// rule, as "subject value".
func (l *arpLab) evaluate() map[string][]alerts.Alert {
	l.t.Helper()
	for _, name := range []string{"arp_mac_change", "arp_flip_flop", "arp_mac_many_ips", "arp_new_mac"} {
		if err := l.sched.Run(name); err != nil {
			l.t.Fatal(err)
		}
	}
	out := map[string][]alerts.Alert{}
	for _, a := range l.alerts.Active("acme") {
		out[a.Rule] = append(out[a.Rule], a)
	}
	for _, as := range out {
		slices.SortFunc(as, func(x, y alerts.Alert) int { return strings.Compare(arpSubject(x), arpSubject(y)) })
	}
	if other := l.alerts.Active("default"); len(other) > 0 {
		l.t.Errorf("alerts of the default tenant: %+v", other)
	}
	return out
}

func arpSubject(a alerts.Alert) string {
	if ip, ok := a.Subject["ip_address"]; ok {
		return ip
	}
	return a.Subject["mac"]
}

// waitPast returns once the wall clock is at least d past t, in whole
// seconds: arp_observations keeps time in seconds, and the short holds
// of the test (min_known, warmup: 1s) must have passed between polls.
// It waits on the clock itself, not on something that might happen.
func waitPast(t time.Time, d time.Duration) {
	time.Sleep(time.Until(t.Truncate(time.Second).Add(d + time.Second)))
}

func wantAlerts(t *testing.T, got map[string][]alerts.Alert, rule string, want ...string) []alerts.Alert {
	t.Helper()
	var subjects []string
	for _, a := range got[rule] {
		subjects = append(subjects, arpSubject(a))
		if a.Status != alerts.StatusFiring {
			t.Errorf("%s %s is %s, want firing", rule, arpSubject(a), a.Status)
		}
	}
	if !slices.Equal(subjects, want) {
		for _, a := range got[rule] {
			t.Logf("%s: %v %q", rule, a.Subject, a.Annotations["summary"])
		}
		t.Fatalf("%s alerts for %q, want %q", rule, subjects, want)
	}
	return got[rule]
}

// TestARPRulesAgainstRealAgent: the ARP table of a real snmpd changes
// under the test; flowhouse's enricher polls it into arp_observations;
// the rules fire with the right subjects and resolve.
func TestARPRulesAgainstRealAgent(t *testing.T) {
	if err := peers.NetnsUnavailable(); err != nil {
		t.Skip(err)
	}
	const (
		ip       = "10.255.3.9"
		macMany  = "02:42:ac:11:00:99"
		newIntel = "10.255.3.30"
	)
	forEachEngine(t, func(t *testing.T, e engine) {
		lab := newARPLab(t, e, map[string]string{
			ip:             macDocA,
			"10.255.3.254": macVRRP, // the gateway's virtual MAC: never reported
			"10.255.3.20":  macMany, "10.255.3.21": macMany, "10.255.3.22": macMany, "10.255.3.23": macMany,
		})
		first := lab.poll()
		got := lab.evaluate()
		// The first poll: no change, and no MAC is new (warm-up).
		wantAlerts(t, got, "arp_mac_change")
		wantAlerts(t, got, "arp_new_mac")
		many := wantAlerts(t, got, "arp_mac_many_ips", macMany)
		if s := many[0].Annotations["summary"]; !strings.Contains(s, "02:42:ac:11:00:99 (locally administered) answers for 4 addresses (4 IPv4, 0 IPv6) on exporter 192.0.2.1: 10.255.3.20, 10.255.3.21, 10.255.3.22, 10.255.3.23") {
			t.Errorf("arp_mac_many_ips summary %q", s)
		}

		waitPast(first, time.Second)
		lab.setMAC(ip, macLocal)
		lab.neigh("replace", newIntel, macIntel)
		lab.neigh("replace", "10.255.3.253", macHSRP)
		lab.neigh("del", "10.255.3.20") // macMany now answers for 3: resolves
		second := lab.poll()
		got = lab.evaluate()
		change := wantAlerts(t, got, "arp_mac_change", ip)
		want := ip + " moved from " + describeMAC(mustMAC(t, macDocA), lab.enricher.Vendor(mustMAC(t, macDocA))) +
			" to 02:42:ac:11:00:02 (locally administered) on exporter 192.0.2.1 ifIndex " + fmt.Sprint(lab.lanIdx)
		if s := change[0].Annotations["summary"]; s != want {
			t.Errorf("arp_mac_change summary\n %q\nwant %q", s, want)
		}
		news := wantAlerts(t, got, "arp_new_mac", macIntel, macLocal)
		if news[0].Severity != notify.SeverityWarning || news[1].Severity != notify.SeverityInfo {
			t.Errorf("arp_new_mac severities %s (vendor MAC), %s (locally administered); want warning, info", news[0].Severity, news[1].Severity)
		}
		if s := news[0].Annotations["summary"]; !strings.Contains(s, "at "+newIntel+" on exporter 192.0.2.1 ifIndex "+fmt.Sprint(lab.lanIdx)) {
			t.Errorf("arp_new_mac summary %q", s)
		}
		wantAlerts(t, got, "arp_mac_many_ips")
		wantAlerts(t, got, "arp_flip_flop")

		// Back and forth: the third change between the two MACs.
		// snmpd serves a change made within a second of its last walk only
		// after its cache expires (observed: such changes were not seen by
		// the next poll); each change comes a second after the last poll.
		waitPast(second, time.Second)
		lab.setMAC(ip, macDocA)
		third := lab.poll()
		wantAlerts(t, lab.evaluate(), "arp_flip_flop")
		waitPast(third, time.Second)
		lab.setMAC(ip, macLocal)
		lab.poll()
		got = lab.evaluate()
		flip := wantAlerts(t, got, "arp_flip_flop", ip)
		if flip[0].LastValue != 3 || !strings.Contains(flip[0].Annotations["summary"], ip+" flipped 3 times between ") {
			t.Errorf("arp_flip_flop value %g summary %q", flip[0].LastValue, flip[0].Annotations["summary"])
		}
		if flip[0].Severity != notify.SeverityError {
			t.Errorf("arp_flip_flop severity %s", flip[0].Severity)
		}

		// What enrich wrote for the address: the MAC changes as such.
		if ev := arpEvents(t, e, ip); !slices.Equal(ev, []string{"new", "changed", "changed", "changed"}) {
			t.Errorf("events of %s: %q, want new and three changed", ip, ev)
		}

		// The windows (1h) pass without a change: everything resolves.
		lab.advance(61 * time.Minute)
		got = lab.evaluate()
		for _, rule := range []string{"arp_mac_change", "arp_flip_flop", "arp_new_mac", "arp_mac_many_ips"} {
			wantAlerts(t, got, rule)
		}
	})
}

// arpEvents are the events stored for ip, in order.
func arpEvents(t *testing.T, e engine, ip string) []string {
	t.Helper()
	rows, err := e.Reader.Query(context.Background(), "SELECT toString(event) FROM arp_observations WHERE "+
		AddrText("ip_address")+" = '::ffff:"+ip+"' ORDER BY time_ms")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var ev string
		if err := rows.Scan(&ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
