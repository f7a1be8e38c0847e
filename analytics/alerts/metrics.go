package alerts

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Reasons of flowhouse_alerts_persist_failures_total.
const (
	// An insert failed (timeout, connection, server, other): retried.
	ReasonTimeout    = "timeout"
	ReasonConnection = "connection"
	ReasonServer     = "server"
	ReasonOther      = "other"
	// Events dropped: max_pending_events were waiting.
	ReasonQueueFull = "queue_full"
	// Rows or events not written when Stop's context ended.
	ReasonShutdown = "shutdown"
)

// Reasons of flowhouse_alerts_notify_failures_total.
const (
	NotifyQueueFull = "queue_full" // our queue to the Notifier was full
	NotifyRefused   = "refused"    // the Notifier returned an error
)

type metrics struct {
	active        *prometheus.GaugeVec
	transitions   *prometheus.CounterVec
	persistFailed *prometheus.CounterVec
	notified      *prometheus.CounterVec
	notifyFailed  *prometheus.CounterVec
	invalid       prometheus.Counter

	logInvalid, logTemplate, logWrite, logNotify rate.Sometimes
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowhouse_alerts",
			Help: "Active alerts by tenant, rule and state (pending, firing).",
		}, []string{"tenant", "rule", "state"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_alerts_transitions_total",
			Help: "Alert status transitions; from is \"new\" for an alert first seen.",
		}, []string{"from", "to"}),
		persistFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_alerts_persist_failures_total",
			Help: "Failed writes of alerts (retried) and events or rows lost, by reason.",
		}, []string{"reason"}),
		notified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_alerts_notifications_total",
			Help: "Notifications handed to the notifier, by status.",
		}, []string{"status"}),
		notifyFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_alerts_notify_failures_total",
			Help: "Notifications not handed to the notifier, by reason.",
		}, []string{"reason"}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowhouse_alerts_invalid_instances_total",
			Help: "Instances of evaluations refused (bad label names, severity).",
		}),
		logInvalid:  rate.Sometimes{Interval: time.Minute},
		logTemplate: rate.Sometimes{Interval: time.Minute},
		logWrite:    rate.Sometimes{Interval: time.Minute},
		logNotify:   rate.Sometimes{Interval: time.Minute},
	}
	for _, r := range []string{ReasonTimeout, ReasonConnection, ReasonServer, ReasonOther, ReasonQueueFull, ReasonShutdown} {
		m.persistFailed.WithLabelValues(r)
	}
	for _, r := range []string{NotifyQueueFull, NotifyRefused} {
		m.notifyFailed.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.active, m.transitions, m.persistFailed, m.notified, m.notifyFailed, m.invalid)
	}
	return m
}

func (m *metrics) setActive(k ruleKey, pending, firing int) {
	m.active.WithLabelValues(k.tenant, k.rule, string(StatusPending)).Set(float64(pending))
	m.active.WithLabelValues(k.tenant, k.rule, string(StatusFiring)).Set(float64(firing))
}

func (m *metrics) transition(from, to Status) {
	f := string(from)
	if f == "" {
		f = "new"
	}
	m.transitions.WithLabelValues(f, string(to)).Inc()
}
