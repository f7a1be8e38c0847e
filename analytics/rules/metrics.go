package rules

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	runs       *prometheus.CounterVec
	errors     *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	skipped    *prometheus.CounterVec
	findings   *prometheus.GaugeVec
	last       *prometheus.GaugeVec
	outOfScope *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, rules []*scheduled) *metrics {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_rule_evaluations_total",
			Help: "Rule evaluations, by rule and result (ok, error).",
		}, []string{"rule", "result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_rule_errors_total",
			Help: "Failed rule evaluations, by rule and reason (timeout, connection, server, refused, other).",
		}, []string{"rule", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flowhouse_rule_evaluation_duration_seconds",
			Help:    "Time one evaluation of a rule took, its queries included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"rule"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_rule_skipped_evaluations_total",
			Help: "Scheduled evaluations skipped because the previous one of the rule was still running.",
		}, []string{"rule"}),
		findings: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowhouse_rule_findings",
			Help: "Instances the last evaluation of a rule found.",
		}, []string{"rule"}),
		last: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowhouse_rule_last_evaluation_timestamp_seconds",
			Help: "When the last successful evaluation of a rule ran.",
		}, []string{"rule"}),
		outOfScope: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_rule_out_of_scope_findings_total",
			Help: "Findings for tenants outside the rule's scope, dropped.",
		}, []string{"rule"}),
	}
	for _, r := range rules {
		m.runs.WithLabelValues(r.name, "ok")
		m.runs.WithLabelValues(r.name, "error")
		m.skipped.WithLabelValues(r.name)
	}
	if reg != nil {
		reg.MustRegister(m.runs, m.errors, m.duration, m.skipped, m.findings, m.last, m.outOfScope)
	}
	return m
}
