package notify

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons of flowhouse_notify_failed_total. The first ones are failed
// attempts (each attempt counts once); dropped_queue_full, gave_up and
// shutdown are notifications lost without an attempt that answered.
const (
	ReasonTimeout    = "timeout"    // no answer within timeout
	ReasonConnection = "connection" // refused, reset, unreachable, DNS
	ReasonTLS        = "tls"        // handshake or certificate refused; not retried
	ReasonHTTP4xx    = "http_4xx"   // not retried, but 408 and 429
	ReasonHTTP5xx    = "http_5xx"   // retried
	ReasonHTTPOther  = "http_other" // 1xx or 3xx (redirects are not followed); not retried
	ReasonSMTP       = "smtp"       // the mail server refused: 4xx retried, 5xx not
	ReasonNoURL      = "no_url"     // a webhook has no URL for the alert's tenant
	ReasonQueueFull  = "dropped_queue_full"
	ReasonGaveUp     = "gave_up"  // retry.max_attempts or retry.max_age reached
	ReasonShutdown   = "shutdown" // stop_timeout passed while it waited
)

var reasonsOf = map[string][]string{
	KindAlertmanager: {ReasonTimeout, ReasonConnection, ReasonTLS, ReasonHTTP4xx, ReasonHTTP5xx, ReasonHTTPOther, ReasonQueueFull, ReasonGaveUp, ReasonShutdown},
	KindWebhook:      {ReasonTimeout, ReasonConnection, ReasonTLS, ReasonHTTP4xx, ReasonHTTP5xx, ReasonHTTPOther, ReasonNoURL, ReasonQueueFull, ReasonGaveUp, ReasonShutdown},
	KindSMTP:         {ReasonTimeout, ReasonConnection, ReasonTLS, ReasonSMTP, ReasonQueueFull, ReasonGaveUp, ReasonShutdown},
}

type metrics struct {
	alerts *prometheus.CounterVec
	sent   *prometheus.CounterVec
	failed *prometheus.CounterVec
}

// queueCollector reads the queue lengths when scraped.
type queueCollector struct {
	alerts, notifications *prometheus.Desc
	n                     *Notifier
}

func (q *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- q.alerts
	ch <- q.notifications
}

func (q *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(q.alerts, prometheus.GaugeValue, float64(len(q.n.in)))
	for _, r := range q.n.receivers {
		depth := 0
		for _, t := range r.targets {
			depth += len(t.q)
		}
		ch <- prometheus.MustNewConstMetric(q.notifications, prometheus.GaugeValue, float64(depth), r.kind, r.name)
	}
}

func newMetrics(reg prometheus.Registerer, n *Notifier) *metrics {
	m := &metrics{
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_notify_alerts_total",
			Help: "Alerts taken by Notify, by status (firing, resolved).",
		}, []string{"status"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_notify_sent_total",
			Help: "Notifications delivered (2xx, or mail accepted), by receiver kind and receiver; one per Alertmanager URL.",
		}, []string{"kind", "receiver"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_notify_failed_total",
			Help: "Failed delivery attempts by reason (timeout, connection, tls, http_4xx, http_5xx, http_other, smtp, no_url), and notifications lost (dropped_queue_full, gave_up, shutdown), by receiver kind and receiver.",
		}, []string{"kind", "receiver", "reason"}),
	}
	for _, s := range []Status{StatusFiring, StatusResolved} {
		m.alerts.WithLabelValues(string(s))
	}
	// Known label values exist from the start, so rate() sees the first one.
	for _, r := range n.receivers {
		m.sent.WithLabelValues(r.kind, r.name)
		for _, reason := range reasonsOf[r.kind] {
			m.failed.WithLabelValues(r.kind, r.name, reason)
		}
	}
	if reg != nil {
		reg.MustRegister(m.alerts, m.sent, m.failed, &queueCollector{
			alerts: prometheus.NewDesc("flowhouse_notify_queue_alerts",
				"Alerts waiting for the dispatcher (bounded by queue_size).", nil, nil),
			notifications: prometheus.NewDesc("flowhouse_notify_queue_notifications",
				"Notifications waiting for delivery, by receiver kind and receiver (bounded by queue_size per destination).",
				[]string{"kind", "receiver"}, nil),
			n: n,
		})
	}
	return m
}

func (m *metrics) fail(r *receiver, reason string) {
	m.failed.WithLabelValues(r.kind, r.name, reason).Inc()
}
