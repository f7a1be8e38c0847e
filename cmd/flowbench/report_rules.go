package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/flowgen"
)

// ruleCostTarget is the CPU the rules may take at default intervals.
const ruleCostTarget = 0.10

// detectionStages runs the stages the flags turn on; a failing stage is
// recorded and the next one runs.
func detectionStages(ctx context.Context, o options, rep *Report, protocols []flowgen.Protocol) {
	fail := rep.failed
	if o.rules.cost {
		t := time.Now()
		sizes, err := ruleCostStage(ctx, o, o.rules)
		rep.RuleCost = sizes
		if err != nil {
			fail("rule_cost", err)
		}
		fmt.Fprintf(os.Stderr, "rules cost stage: %s\n", time.Since(t).Round(time.Second))
	}
	if o.rules.load {
		t := time.Now()
		res, err := ruleLoadStage(ctx, o, o.rules, protocols)
		rep.RuleLoad = res
		if err != nil {
			fail("rule_load", err)
		}
		fmt.Fprintf(os.Stderr, "rules load stage: %s\n", time.Since(t).Round(time.Second))
	}
	if o.rules.delay {
		t := time.Now()
		res, err := delayStage(ctx, o, o.rules.delayOpts, protocols)
		rep.Delay = res
		if err != nil {
			fail("detection_delay", err)
		}
		fmt.Fprintf(os.Stderr, "detection delay stage: %s\n", time.Since(t).Round(time.Second))
	}
}

func writeDetection(b *strings.Builder, rep *Report) {
	if len(rep.RuleCost) > 0 {
		writeRuleCost(b, rep.RuleCost)
	}
	if rep.RuleLoad != nil {
		writeRuleLoad(b, rep.RuleLoad)
	}
	if rep.Delay != nil {
		writeDelay(b, rep.Delay)
	}
	if len(rep.API) > 0 {
		writeAPI(b, rep)
	}
	if len(rep.StageErrors) > 0 {
		b.WriteString("\n## Stages that failed\n\n")
		for stage, err := range rep.StageErrors {
			fmt.Fprintf(b, "- %s: %s\n", stage, err)
		}
	}
}

func writeRuleCost(b *strings.Builder, sizes []RuleCostSize) {
	b.WriteString("\n## Detection: evaluation cost of the rules\n\n" +
		"Synthetic flows (INSERT ... SELECT FROM system.numbers, several at once; 3 tenants, 300 exporters with 8 input and 8 output interfaces, 50k destinations with a log-uniform tail (the busiest about 9%), random sources, " +
		"70% TCP (4% SYN-only) / 25% UDP / 5% ICMP, sampling 1 and 1000) spread over the window ending when the stage started. The rollup views are detached while filling (they make the insert about ten times slower here); " +
		"flows_1m and flows_1h are filled directly with one row per bucket, exporter, interface pair and protocol at the rate's sums; interface_counters with every interface every 30 s; arp_observations with 75k neighbours refreshed hourly over 3 hours. " +
		"Merges of flows are stopped (a part per INSERT). Every rule is run with Scheduler.Run (findings go to a real alerts.Manager on the same engine; a fresh scheduler per size, rule_state emptied) on a fixed clock, in ticks as its schedule would run it (a tick per interval, at most 60 s, ending at the data's end): " +
		"rules of one interval at the same instant, so rules that share a query (the flood rules) share it as in serve and the first of them in the list pays for it. " +
		"CPU is getrusage(RUSAGE_SELF) of the process around each run (the embedded engine runs in it; on a server the server's /proc/PID/stat is added), less the process's idle CPU over the run. " +
		"Share = median CPU per evaluation / default interval; the target is the sum under 10% of one core.\n")
	for _, s := range sizes {
		if s.Error != "" {
			fmt.Fprintf(b, "\n%s: **failed**: %s\n", s.Engine, s.Error)
			continue
		}
		fmt.Fprintf(b, "\n### %s, %.0f flows/s x %.0f s = %d rows", s.Engine, s.Rate, s.WindowSecs, s.Rows)
		if s.NotMeasured {
			fmt.Fprintf(b, ": **not measured**\n\nThe insert budget ran out (%.0f rows/s, %.0f s): too few more rows fitted to be worth measuring. "+
				"Extrapolated linearly in rows from the previous size's %d rows (an estimate, not a measurement): **%.1f%% of one core**.\n",
				s.InsertRowsPerSec, s.InsertSeconds, s.RowsMeasured, s.TotalCPUShareExtra*100)
			continue
		}
		if s.Extrapolated {
			fmt.Fprintf(b, " (**measured at %d rows**: the insert budget ran out)", s.RowsMeasured)
		}
		fmt.Fprintf(b, "\n\nFilled at %.0f rows/s (%.0f s so far), %d active parts; idle CPU subtracted %.3f cores.\n\n", s.InsertRowsPerSec, s.InsertSeconds, s.Parts, s.IdleCores)
		b.WriteString("The first tick after a start reads each rule's whole window; the medians are over the ticks after it (each reads what came since the previous), which is what runs in steady state and what the share counts.\n\n")
		b.WriteString("| rule | interval | evaluations | errors | first tick wall / CPU ms | wall median ms | wall p90 ms | CPU median ms | CPU p90 ms | share of one core |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, r := range s.Rules {
			fmt.Fprintf(b, "| %s | %gs | %d | %d | %.0f / %.0f | %.0f | %.0f | %.0f | %.0f | %.2f%% |\n", r.Rule, r.IntervalSeconds, r.Evaluations, r.Errors, r.FirstWallMs, r.FirstCPUMs, r.WallMedianMs, r.WallP90Ms, r.CPUMedianMs, r.CPUP90Ms, r.CPUShare*100)
		}
		verdict := "within"
		if s.TotalCPUShare > ruleCostTarget {
			verdict = "**over**"
		}
		fmt.Fprintf(b, "| **total** | | | | | | | | **%.1f%%** (%s the target of %.0f%%) |\n", s.TotalCPUShare*100, verdict, ruleCostTarget*100)
		if s.Extrapolated {
			fmt.Fprintf(b, "\nExtrapolated linearly to %d rows (an estimate, not measured): %.1f%% of one core.\n", s.Rows, s.TotalCPUShareExtra*100)
		}
		for _, r := range s.Rules {
			if r.LastError != "" {
				fmt.Fprintf(b, "\n%s failed: `%s`\n", r.Rule, r.LastError)
			}
		}
	}
}

func writeRuleLoad(b *strings.Builder, r *RuleLoadResult) {
	fmt.Fprintf(b, "\n## Detection: CPU of the rules while ingesting\n\nflowhouse serve (embedded engine) under the same flowgen load twice: every built-in rule disabled (FLOWHOUSE_RULES_BUILTIN_<NAME>_ENABLED=false), then all at their defaults (%d enabled: %s). CPU from /proc/PID/stat over the load and the drain.\n\n",
		len(r.Enabled), strings.Join(r.Enabled, ", "))
	b.WriteString("| rules | offered/s | achieved/s | sent | stored | loss | CPU s | wall s | CPU (cores) | rule evaluations | rule errors | rule time s |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, run := range r.Runs {
		s := run.Step
		fmt.Fprintf(b, "| %s | %.0f | %.0f | %d | %d | %.3f%% | %.1f | %.1f | %.2f | %.0f | %.0f | %.1f |\n", run.Rules, s.OfferedRate, s.AchievedRate, s.Sent, s.Stored, s.LossRatio*100,
			s.CPUSeconds, s.WallSeconds, s.CPUCores, run.Evaluations, run.EvaluationErrors, run.EvaluationSeconds)
	}
	fmt.Fprintf(b, "\nDifference (on - off): %+.1f CPU s over the %.0f s of load: **%+.2f cores** (%+.0f%% of one core); loss %.2f%% with the rules, %.2f%% without. "+
		"(The runs' mean CPU over load and drain differs by %+.2f cores: the drain lasts as long as the rows keep coming, up to a minute.) "+
		"A rule runs first within 10%% of its interval after the start, then every interval: in a run shorter than an interval (60 s rules in a 30 s run) it runs once, "+
		"so the difference weighs those rules' first evaluations more than a steady state would; the table of rule evaluations says how many ran. "+
		"The data they read is only what this run ingested (at most the run's length).\n", r.CPUSecondsOn-r.CPUSecondsOff, r.LoadSeconds, r.CPUCoresDiff, r.CPUCoresDiff*100,
		r.LossRatioOn*100, r.LossRatioOff*100, r.MeanCoresDiffer)
}

func writeDelay(b *strings.Builder, d *DelayResult) {
	fmt.Fprintf(b, "\n## Detection: delay per scenario\n\nflowgen -> flowhouse serve (embedded engine, default rules) -> alerts. Background %.0f flows/s from its own exporters (the spike on ifIndex 2 after the lead); after %s every attack scenario at once, %.0f flows/s each, for %s, from 4 other exporters (127.0.2.x). "+
		"Delay = alerts.fired_at of the earliest alert naming the scenario's address - min(time_received) of its flows in flows (both whole seconds). %d flows sent, %d stored; %.0f rule evaluations, %.0f errors.\n\n",
		d.Background, d.Lead, d.PerAttack, d.Attack, d.Sent, d.StoredAll, d.RuleEvaluation, d.RuleErrors)
	b.WriteString("| scenario | address | flows sent / stored | detected | rule | severity | delay from first flow s | from attack start s | rules that fired | above info |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, s := range d.Scenarios {
		if s.Missing {
			fmt.Fprintf(b, "| %s | | | not in flowgen yet | | | | | | |\n", s.Scenario)
			continue
		}
		det, delay, fromStart := "no", "", ""
		if s.Detected {
			det, delay, fromStart = "yes", fmt.Sprintf("%.0f", s.DelaySeconds), fmt.Sprintf("%.0f", s.DelayStart)
		}
		if s.Scenario == "bulk" {
			det += " (control)"
		}
		fmt.Fprintf(b, "| %s | %s | %d / %d | %s | %s | %s | %s | %s | %s | %v |\n", s.Scenario, s.Address, s.Sent, s.Stored, det, s.Rule, s.Severity, delay, fromStart, strings.Join(s.Rules, ", "), s.AboveInfo)
	}
	b.WriteString("\nflowgen reports each flow once, when it is due, ending within the second before: an exporter with an active and inactive timeout near zero. " +
		"The delay is counted from the first attack flow *received*, so an exporter's timeouts do not change it: they come before that point. " +
		"With 15 s timeouts (the issue's exporters) the first record of an attack arrives up to 15 s after its first packet, and for the first 15 s records arrive as the exporter's timers expire rather than all at once: " +
		"add up to 15 s for 'first attack packet -> fired', and somewhat less than that for rules that average a window (60 s), whose threshold is reached a little later while the window fills. " +
		"The spike's flows cannot be told from the background's: its first flow is taken to be at its scheduled start.\n")
	if len(d.Unmatched) > 0 {
		fmt.Fprintf(b, "\nAlerts no scenario accounts for (%d):\n\n", len(d.Unmatched))
		for i, u := range d.Unmatched {
			if i == 20 {
				fmt.Fprintf(b, "- ... %d more\n", len(d.Unmatched)-20)
				break
			}
			fmt.Fprintf(b, "- %s\n", u)
		}
	}
}

// rewrite writes the report again from its JSON, with the derived
// figures of the detection stages recomputed.
func rewrite(o options) error {
	b, err := os.ReadFile(filepath.Join(o.out, "report.json"))
	if err != nil {
		return err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return err
	}
	if r := rep.RuleLoad; r != nil {
		if r.LoadSeconds == 0 {
			r.LoadSeconds = o.rules.loadDuration.Seconds()
		}
		r.compare()
	}
	return write(o.out, &rep)
}
