package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/flowhouse/flowhouse/analytics/rules"
	"github.com/flowhouse/flowhouse/flowgen"
)

// RuleLoad is one run of flowhouse under load, with the built-in rules
// at their defaults or all disabled.
type RuleLoad struct {
	Rules string `json:"rules"` // "defaults" or "disabled"
	Step  Step   `json:"step"`
	// Evaluations and EvaluationSeconds are the rules' own count and
	// time (flowhouse_rule_evaluations_total, ..._duration_seconds_sum).
	Evaluations       float64 `json:"rule_evaluations"`
	EvaluationErrors  float64 `json:"rule_errors"`
	EvaluationSeconds float64 `json:"rule_evaluation_seconds"`
}

// RuleLoadResult compares the two runs.
type RuleLoadResult struct {
	Enabled       []string   `json:"rules_enabled"`
	Runs          []RuleLoad `json:"runs"`
	CPUSecondsOn  float64    `json:"cpu_seconds_rules_on"`
	CPUSecondsOff float64    `json:"cpu_seconds_rules_off"`
	// CPUCoresDiff is the difference of the runs' CPU seconds over the
	// load's duration: the rules' share of one core while ingesting. (The
	// runs' own mean CPU differs by their drain, which can be long.)
	CPUCoresDiff    float64 `json:"cpu_cores_difference"`
	LoadSeconds     float64 `json:"load_seconds"`
	LossRatioOn     float64 `json:"loss_ratio_rules_on"`
	LossRatioOff    float64 `json:"loss_ratio_rules_off"`
	MeanCoresDiffer float64 `json:"mean_cpu_cores_difference"`
}

// compare fills the comparison from the two runs (off, then on).
func (r *RuleLoadResult) compare() {
	if len(r.Runs) != 2 {
		return
	}
	off, on := r.Runs[0].Step, r.Runs[1].Step
	r.CPUSecondsOff, r.CPUSecondsOn = off.CPUSeconds, on.CPUSeconds
	r.LossRatioOff, r.LossRatioOn = off.LossRatio, on.LossRatio
	r.MeanCoresDiffer = on.CPUCores - off.CPUCores
	if r.LoadSeconds > 0 {
		r.CPUCoresDiff = (on.CPUSeconds - off.CPUSeconds) / r.LoadSeconds
	}
}

// ruleLoadStage runs flowhouse (embedded engine) under the same load
// twice: every built-in rule disabled, then all at their defaults.
func ruleLoadStage(ctx context.Context, o options, ro ruleOptions, protocols []flowgen.Protocol) (*RuleLoadResult, error) {
	lib, err := filepath.Abs(o.library)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "flowbench-ruleload-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	res := &RuleLoadResult{}
	for _, r := range builtinRules(rules.DefaultConfig()) {
		if r.Enabled {
			res.Enabled = append(res.Enabled, r.Name)
		}
	}
	lo := o
	lo.duration = ro.loadDuration
	for _, mode := range []string{"disabled", "defaults"} {
		target := storeTarget{name: "embedded (chDB)", library: lib, path: dir, rules: mode == "defaults"}
		st, err := step(ctx, lo, target, "rules_"+mode, ro.loadRate, protocols)
		if err != nil {
			return nil, fmt.Errorf("rules %s at %.0f flows/s: %w", mode, ro.loadRate, err)
		}
		st.ClickHouseEngine = target.name
		run := RuleLoad{Rules: mode, Step: st, Evaluations: st.metrics["flowhouse_rule_evaluations_total"],
			EvaluationErrors: st.metrics["flowhouse_rule_errors_total"], EvaluationSeconds: st.metrics["flowhouse_rule_evaluation_duration_seconds_sum"]}
		res.Runs = append(res.Runs, run)
		fmt.Fprintf(os.Stderr, "rules %s: achieved %.0f/s loss %.4f%% cpu %.1f s (%.2f cores), %0.f rule evaluations\n",
			mode, st.AchievedRate, st.LossRatio*100, st.CPUSeconds, st.CPUCores, run.Evaluations)
	}
	res.LoadSeconds = ro.loadDuration.Seconds()
	res.compare()
	return res, nil
}
