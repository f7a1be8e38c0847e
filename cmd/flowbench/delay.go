package main

import (
	"context"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/flowhouse/flowhouse/flowgen"
)

// delayOptions are the flags of the detection delay stage.
type delayOptions struct {
	scenarios  string
	background float64
	perAttack  float64
	lead       time.Duration
	attack     time.Duration
	grace      time.Duration
	exporters  int
}

func delayFlags(d *delayOptions, on *bool) {
	flag.BoolVar(on, "rules-delay", true, "measure the detection delay of the flowgen attack scenarios")
	flag.StringVar(&d.scenarios, "rules-delay-scenarios", "amplification,synflood,portscan,hostscan,udpflood,icmpflood,bulk,spike",
		"scenarios of the delay stage (names flowgen does not know are reported as missing)")
	flag.Float64Var(&d.background, "rules-delay-background", 20000, "background flows/s of the delay stage")
	flag.Float64Var(&d.perAttack, "rules-delay-attack-rate", 5000, "flows/s of each attack scenario")
	flag.DurationVar(&d.lead, "rules-delay-lead", 60*time.Second, "background before the attacks start")
	flag.DurationVar(&d.attack, "rules-delay-attack", 60*time.Second, "how long the attacks last")
	flag.DurationVar(&d.grace, "rules-delay-grace", 20*time.Second, "background after the attacks, for late alerts")
	flag.IntVar(&d.exporters, "rules-delay-attack-exporters", 4, "exporters that see the attacks (127.0.2.x)")
}

// ScenarioDelay is what the pipeline made of one scenario.
type ScenarioDelay struct {
	Scenario string `json:"scenario"`
	Missing  bool   `json:"missing_in_flowgen,omitempty"`
	Address  string `json:"address,omitempty"` // victim or source the flows and alerts are matched by
	// Also are the other addresses of the scenario's description (a scan's
	// target, the bulk transfer's client) that alerts are matched by.
	Also   []string `json:"also_matched,omitempty"`
	Sent   uint64   `json:"flows_sent"`
	Stored uint64   `json:"flows_stored"`
	// FirstFlow is min(time_received) of the scenario's flows; Start is
	// when the attack generator started.
	FirstFlow     time.Time `json:"first_flow_received"`
	Start         time.Time `json:"attack_start"`
	Detected      bool      `json:"detected"`
	Rule          string    `json:"rule,omitempty"`
	Severity      string    `json:"severity,omitempty"`
	FiredAt       time.Time `json:"fired_at"`
	DelaySeconds  float64   `json:"delay_from_first_flow_seconds"`
	DelayStart    float64   `json:"delay_from_attack_start_seconds"`
	Rules         []string  `json:"rules_fired,omitempty"`
	AboveInfo     bool      `json:"fired_above_info"`
	MatchedAlerts int       `json:"matched_alerts"`
}

// DelayResult is the delay stage.
type DelayResult struct {
	Background     float64         `json:"background_flows_per_second"`
	PerAttack      float64         `json:"attack_flows_per_second_each"`
	Lead           string          `json:"lead"`
	Attack         string          `json:"attack"`
	Scenarios      []ScenarioDelay `json:"scenarios"`
	Alerts         []alertRow      `json:"alerts"`
	Unmatched      []string        `json:"unmatched_alerts"`
	Sent           uint64          `json:"flows_sent"`
	StoredAll      uint64          `json:"flows_stored"`
	RuleErrors     float64         `json:"rule_errors"`
	RuleEvaluation float64         `json:"rule_evaluations"`
}

// delayStage runs background traffic with the spike, then every attack
// scenario at once from its own exporters, through flowhouse serve on
// the embedded engine, and reads what fired from the alerts table.
func delayStage(ctx context.Context, o options, d delayOptions, protocols []flowgen.Protocol) (*DelayResult, error) {
	lib, err := filepath.Abs(o.library)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "flowbench-delay-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	srv, err := startServe(ctx, o, storeTarget{library: lib, path: dir}, "delay")
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	res := &DelayResult{Background: d.background, PerAttack: d.perAttack, Lead: d.lead.String(), Attack: d.attack.String()}
	attacks, spike := delayScenarios(d.scenarios)
	bg, atk, start, err := runDelayTraffic(ctx, o, d, srv.udpPort, protocols, attacks, spike)
	if err != nil {
		return nil, err
	}
	res.Sent = bg.Total.Flows
	if atk != nil {
		res.Sent += atk.Total.Flows
	}
	_ = waitDrained(srv.httpAddr, res.Sent)
	if m, err := scrape(srv.httpAddr); err == nil {
		res.RuleEvaluation, res.RuleErrors = m["flowhouse_rule_evaluations_total"], m["flowhouse_rule_errors_total"]
	}
	q := &endpoint{addr: srv.queryAddr}
	if err := q.row(ctx, "SELECT count() AS n FROM flows", &res.StoredAll); err != nil {
		return nil, err
	}
	if res.Alerts, err = q.alerts(ctx); err != nil {
		return nil, err
	}
	res.Scenarios = matchScenarios(ctx, q, d, attacks, spike, bg, atk, start, res.Alerts)
	res.Unmatched = unmatchedAlerts(res.Alerts, res.Scenarios)
	return res, nil
}

// delayScenarios splits the scenario list into the attack generator's
// (flowgen knows them; nil kinds are missing) and whether spike is on.
func delayScenarios(list string) (attacks []delayScenario, spike bool) {
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		k, err := flowgen.ParseScenarioKind(name)
		switch {
		case err != nil:
			attacks = append(attacks, delayScenario{name: name, missing: true})
		case k == flowgen.Spike:
			spike = true
		default:
			attacks = append(attacks, delayScenario{name: name, kind: k})
		}
	}
	return attacks, spike
}

type delayScenario struct {
	name    string
	kind    flowgen.ScenarioKind
	missing bool
}

// runDelayTraffic sends the background (with the spike after the lead)
// for lead+attack+grace and, after the lead, every attack scenario for
// attack from other exporters. It returns both reports and when the
// attacks started.
func runDelayTraffic(ctx context.Context, o options, d delayOptions, port int, protocols []flowgen.Protocol, attacks []delayScenario, spike bool) (bg, atk *flowgen.Report, start time.Time, err error) {
	target := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	bcfg := flowgen.DefaultConfig()
	bcfg.Target, bcfg.Exporters, bcfg.Protocols, bcfg.Rate = target, o.exporters, protocols, d.background
	bcfg.Duration = d.lead + d.attack + d.grace
	if spike {
		bcfg.Scenarios = []flowgen.Scenario{{Kind: flowgen.Spike, Start: d.lead, Duration: d.attack}}
	}
	acfg := flowgen.DefaultConfig()
	acfg.Seed, acfg.Target, acfg.Exporters, acfg.Protocols = 2, target, d.exporters, protocols
	acfg.SourceBase = netip.MustParseAddr("127.0.2.1")
	acfg.ScenarioShare, acfg.Duration = 1, d.attack
	for _, a := range attacks {
		if !a.missing {
			acfg.Scenarios = append(acfg.Scenarios, flowgen.Scenario{Kind: a.kind})
		}
	}
	acfg.Rate = d.perAttack * float64(len(acfg.Scenarios))
	bgen, err := flowgen.New(bcfg)
	if err != nil {
		return nil, nil, start, err
	}
	var wg sync.WaitGroup
	var aerr error
	if len(acfg.Scenarios) > 0 {
		agen, err := flowgen.New(acfg)
		if err != nil {
			return nil, nil, start, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-time.After(d.lead):
			case <-ctx.Done():
				return
			}
			start = time.Now()
			atk, aerr = agen.Run(ctx)
		}()
	}
	bg, err = bgen.Run(ctx)
	wg.Wait()
	if err == nil {
		err = aerr
	}
	return bg, atk, start, err
}

var ipv4InText = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`)

// scenarioAddresses are the IPv4 addresses of flowgen's description of
// the scenario's target, in order: the first is the victim of floods,
// the source of scans, the server of the bulk transfer.
func scenarioAddresses(rep *flowgen.Report, name string) []string {
	if rep == nil {
		return nil
	}
	for _, s := range rep.Scenarios {
		if s.Name == name {
			return ipv4InText.FindAllString(s.Target, -1)
		}
	}
	return nil
}

func scenarioAddress(rep *flowgen.Report, name string) string {
	if a := scenarioAddresses(rep, name); len(a) > 0 {
		return a[0]
	}
	return ""
}
