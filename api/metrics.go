package api

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics are the server's own metrics.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge

	authFailures *prometheus.CounterVec
	rateLimited  prometheus.Counter
	tlsReloadErr prometheus.Counter
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "flowhouse", Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "flowhouse", Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route pattern and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "flowhouse", Subsystem: "http", Name: "requests_in_flight",
			Help: "HTTP requests being handled.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "flowhouse", Subsystem: "http", Name: "auth_failures_total",
			Help: "API requests refused for their token, by reason (missing, malformed, checksum, unknown, revoked, expired, store).",
		}, []string{"reason"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flowhouse", Subsystem: "http", Name: "rate_limited_total",
			Help: "API requests refused with 429 by their token's rate limit.",
		}),
		tlsReloadErr: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flowhouse", Subsystem: "http", Name: "tls_reload_errors_total",
			Help: "Changed TLS certificate or key files that did not load (the previous certificate stays in use).",
		}),
	}
	if reg != nil {
		m.requests = register(reg, m.requests)
		m.duration = register(reg, m.duration)
		m.inFlight = register(reg, m.inFlight)
		m.authFailures = register(reg, m.authFailures)
		m.rateLimited = register(reg, m.rateLimited)
		m.tlsReloadErr = register(reg, m.tlsReloadErr)
	}
	return m
}

// register registers c, or returns the collector already registered in its
// place (two servers on one registry share their metrics).
func register[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing
			}
		}
		// A conflicting metric of another kind: count without exporting
		// rather than fail the whole server.
	}
	return c
}

// methodLabel keeps the method label bounded: clients can send any token.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}
