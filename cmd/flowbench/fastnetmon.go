package main

// The detection comparison stage (-fastnetmon): flowgen's attacks, all at
// once with their distinct victims over a background mix, sent to
// flowhouse (its default configuration) and, copy for copy, to two
// FastNetMon CE instances (its default thresholds, and thresholds low
// enough for the bench's attacks). For each attack and each detector: was
// it detected, how was it classified, how long after the attack started;
// and for the bulk transfer (the negative control) whether anything was
// raised. Passes: unsampled, then sampled 1-in-10. The stage is bounded
// (fnmStageLimit), sends only on 127.0.0.0/8, and removes what it made.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/flowgen"
)

const (
	fnmStageLimit = 3 * time.Minute
	fnmRate       = 20000 // flows/s offered in all
	fnmShare      = 0.8   // of them, the attacks' while they run
	fnmExporters  = 4     // NetFlow v9 and IPFIX, alternately
)

// The detectors, in the report's order.
const (
	detFlowhouse = "flowhouse (defaults)"
	detFNMDef    = "fastnetmon (defaults)"
	detFNMLow    = "fastnetmon (lowered)"
)

var fnmDetectors = []string{detFlowhouse, detFNMDef, detFNMLow}

// fnmDetection is one finding: a flowhouse alert that fired or a
// FastNetMon ban.
type fnmDetection struct {
	Detector string
	Subject  string
	Subjects []string
	Kind     string // rule (classification), or FastNetMon's attack type
	At       time.Time
	Power    string
	idx      int // in the pass's list, when scored
}

// fnmScenario is an injected pattern and the addresses a finding about it
// names (victim, or scanner and target).
type fnmScenario struct {
	kind    flowgen.ScenarioKind
	addrs   []netip.Addr
	control bool
}

var fnmScenarios = []fnmScenario{
	{kind: flowgen.Amplification, addrs: []netip.Addr{flowgen.AmplificationVictim}},
	{kind: flowgen.SYNFlood, addrs: []netip.Addr{flowgen.SYNFloodTarget.Addr()}},
	{kind: flowgen.UDPFlood, addrs: []netip.Addr{flowgen.UDPFloodVictim}},
	{kind: flowgen.ICMPFlood, addrs: []netip.Addr{flowgen.ICMPFloodVictim}},
	{kind: flowgen.PortScan, addrs: []netip.Addr{flowgen.PortScanSource, flowgen.PortScanTarget}},
	{kind: flowgen.HostScan, addrs: []netip.Addr{flowgen.HostScanSource}},
	{kind: flowgen.Bulk, addrs: []netip.Addr{flowgen.BulkServer.Addr(), flowgen.BulkClient.Addr()}, control: true},
}

type fnmPassSpec struct {
	name                  string
	sampling              uint32
	warmup, attack, grace time.Duration
}

var fnmPasses = []fnmPassSpec{
	{name: "unsampled", sampling: 1, warmup: 10 * time.Second, attack: 50 * time.Second, grace: 20 * time.Second},
	{name: "sampled 1-in-10", sampling: 10, warmup: 5 * time.Second, attack: 25 * time.Second, grace: 15 * time.Second},
}

// FNMVerdict is one detector's result on one scenario.
type FNMVerdict struct {
	Detector       string   `json:"detector"`
	Detected       bool     `json:"detected"`
	Classification string   `json:"classification,omitempty"`
	DelaySeconds   *float64 `json:"delay_seconds,omitempty"` // from the scenario's start to the first finding
	Subject        string   `json:"subject,omitempty"`
	Power          string   `json:"power,omitempty"` // FastNetMon: pps and direction; flowhouse: severity and value
	// BeforeAttack: a finding about the scenario's addresses before it
	// started (FastNetMon bans an address once, for ban_time).
	BeforeAttack string `json:"before_attack,omitempty"`
}

// FNMScenario is one scenario of a pass.
type FNMScenario struct {
	Scenario       string       `json:"scenario"`
	Addresses      []string     `json:"addresses"`
	Control        bool         `json:"negative_control,omitempty"`
	OfferedPPS     float64      `json:"offered_pps"` // sampling-scaled, over the attack
	OfferedMbps    float64      `json:"offered_mbps"`
	OfferedFlowsPS float64      `json:"offered_flows_per_second"` // records
	Verdicts       []FNMVerdict `json:"verdicts"`
}

// FNMOther counts a detector's findings about no scenario (or before it).
type FNMOther struct {
	Detector string   `json:"detector"`
	Count    int      `json:"count"`
	Examples []string `json:"examples,omitempty"`
}

// FNMPass is one run of every scenario at once.
type FNMPass struct {
	Name           string        `json:"name"`
	SamplingRate   uint32        `json:"sampling_rate"`
	Protocols      string        `json:"protocols"`
	Exporters      int           `json:"exporters"`
	OfferedRate    float64       `json:"offered_flows_per_second"`
	AchievedRate   float64       `json:"achieved_flows_per_second"`
	ScenarioShare  float64       `json:"scenario_share"`
	Warmup         string        `json:"warmup"`
	Attack         string        `json:"attack"`
	FlowsSent      uint64        `json:"flows_sent"`
	ForwardErrors  uint64        `json:"forward_errors"`
	Scenarios      []FNMScenario `json:"scenarios"`
	Other          []FNMOther    `json:"other_findings"`
	FlowhouseError string        `json:"flowhouse_error,omitempty"`
	// FastNetMon's own count of the flows it decoded, and the datagrams
	// its socket dropped, per instance.
	FNMReceived map[string]uint64 `json:"fastnetmon_flows_decoded"`
	FNMDrops    map[string]uint64 `json:"fastnetmon_socket_drops"`
}

// FNMReport is the stage's section of report.json.
type FNMReport struct {
	FastNetMon  string                   `json:"fastnetmon_version"`
	Thresholds  map[string]FNMThresholds `json:"fastnetmon_thresholds"`
	Passes      []FNMPass                `json:"passes"`
	WallSeconds float64                  `json:"wall_seconds"`
}

// fastnetmonStage runs the comparison when -fastnetmon is set and adds
// its section to report.md and report.json in o.out.
func fastnetmonStage(ctx context.Context, o options) error {
	if !o.fnm {
		return nil
	}
	if _, err := os.Stat(o.flowhouse); err != nil {
		return fmt.Errorf("flowhouse binary %s: %w (run make build)", o.flowhouse, err)
	}
	ctx, cancel := context.WithTimeout(ctx, fnmStageLimit)
	defer cancel()
	began := time.Now()
	rep := &FNMReport{FastNetMon: fnmVersion(), Thresholds: map[string]FNMThresholds{detFNMDef: fnmDefaults, detFNMLow: fnmLowered}}
	for _, spec := range fnmPasses {
		p, err := fnmRunPass(ctx, o, spec)
		if err != nil {
			return fmt.Errorf("fastnetmon comparison, %s: %w", spec.name, err)
		}
		rep.Passes = append(rep.Passes, p)
		fmt.Fprintf(os.Stderr, "fastnetmon comparison, %s: %d flows at %.0f/s\n", spec.name, p.FlowsSent, p.AchievedRate)
	}
	rep.WallSeconds = time.Since(began).Seconds()
	return fnmWriteReport(o.out, rep)
}

func fnmVersion() string {
	out, _ := execOutput(fnmBinary, "--version")
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "Version:"))
}

// fnmRunPass starts the three detectors, sends the scenarios, waits for
// the findings and scores them.
func fnmRunPass(ctx context.Context, o options, spec fnmPassSpec) (FNMPass, error) {
	p := FNMPass{Name: spec.name, SamplingRate: spec.sampling, Protocols: "netflow_v9, ipfix", Exporters: fnmExporters,
		OfferedRate: fnmRate, ScenarioShare: fnmShare, Warmup: spec.warmup.String(), Attack: spec.attack.String()}
	fh, err := fnmStartFlowhouse(ctx, o)
	if err != nil {
		return p, err
	}
	defer fh.stop()
	limit := spec.warmup + spec.attack + spec.grace + 30*time.Second
	var fnms []*fnmInstance
	for _, th := range []FNMThresholds{fnmDefaults, fnmLowered} {
		f, err := fnmStart(fmt.Sprint(th.PPS), th, limit)
		if err != nil {
			return p, err
		}
		defer f.stop()
		fnms = append(fnms, f)
	}
	fw := &fnmForwarder{conns: map[int]*net.UDPConn{}, targets: []netip.AddrPort{fnms[0].target(), fnms[1].target()}}
	defer fw.close()
	gen, err := flowgen.New(fnmGenConfig(spec, fh.target(), fw.onDatagram))
	if err != nil {
		return p, err
	}
	g, err := gen.Run(ctx)
	if err != nil {
		return p, err
	}
	p.FlowsSent, p.AchievedRate, p.ForwardErrors = g.Total.Flows, g.FlowsPerSecond, fw.errors
	start := g.Start.Add(spec.warmup)
	found, err := fnmAwaitFlowhouse(ctx, fh, start, time.Now().Add(spec.grace))
	if err != nil {
		p.FlowhouseError = err.Error()
	}
	p.FNMReceived, p.FNMDrops = map[string]uint64{}, map[string]uint64{}
	for i, det := range []string{detFNMDef, detFNMLow} {
		p.FNMReceived[det], p.FNMDrops[det] = fnms[i].received()
	}
	found = append(found, relabel(fnms[0].events(detFNMDef), detFNMDef)...)
	found = append(found, relabel(fnms[1].events(detFNMLow), detFNMLow)...)
	p.Scenarios, p.Other = fnmScore(found, start, g, spec)
	return p, nil
}

func relabel(ds []fnmDetection, detector string) []fnmDetection {
	for i := range ds {
		ds[i].Detector = detector
	}
	return ds
}

func fnmGenConfig(spec fnmPassSpec, target netip.AddrPort, onDatagram func(int, netip.AddrPort, []byte, time.Time)) flowgen.Config {
	cfg := flowgen.DefaultConfig()
	cfg.Target = target
	cfg.Exporters, cfg.Protocols = fnmExporters, []flowgen.Protocol{flowgen.NetFlowV9, flowgen.IPFIX}
	cfg.Rate, cfg.Duration = fnmRate, spec.warmup+spec.attack
	cfg.SamplingRate, cfg.ScenarioShare = spec.sampling, fnmShare
	cfg.Seed = 7
	for _, s := range fnmScenarios {
		cfg.Scenarios = append(cfg.Scenarios, flowgen.Scenario{Kind: s.kind, Start: spec.warmup, Duration: spec.attack})
	}
	cfg.OnDatagram = onDatagram
	return cfg
}

// fnmAwaitFlowhouse polls flowhouse's alerts until an alert names every
// attack (not the control) or the deadline passes.
func fnmAwaitFlowhouse(ctx context.Context, fh *fnmFlowhouse, start, deadline time.Time) ([]fnmDetection, error) {
	var found []fnmDetection
	var err error
	for {
		if found, err = fh.alerts(ctx); err == nil {
			found = relabel(found, detFlowhouse)
			all := true
			for _, s := range fnmScenarios {
				all = all && (s.control || len(fnmMatch(found, s, start)) > 0)
			}
			if all {
				return found, nil
			}
		}
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			return found, err
		}
		time.Sleep(2 * time.Second)
	}
}

// fnmMatch is the findings about s's addresses at or after start (for
// flowhouse less a second: its fired_at has whole seconds), earliest
// first.
func fnmMatch(found []fnmDetection, s fnmScenario, start time.Time) []fnmDetection {
	var out []fnmDetection
	for _, d := range found {
		slack := time.Duration(0)
		if d.Detector == detFlowhouse {
			slack = time.Second
		}
		if d.At.Before(start.Add(-slack)) {
			continue
		}
		for _, subj := range d.Subjects {
			a, err := netip.ParseAddr(subj)
			if err == nil && containsAddr(s.addrs, a.Unmap()) {
				out = append(out, d)
				break
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}
