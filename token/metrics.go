package token

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	lookups     *prometheus.CounterVec
	cache       *prometheus.CounterVec
	created     prometheus.Counter
	revoked     prometheus.Counter
	usageRows   prometheus.Counter
	usageErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flowhouse_tokens_lookups_total",
			Help: "Tokens presented to the API, by result: ok, malformed, checksum, unknown, revoked, expired, error (the database)."}, []string{"result"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flowhouse_tokens_cache_total",
			Help: "Lookups of well-formed tokens by hash, by whether the cache answered (hit) or the database (miss)."}, []string{"result"}),
		created: prometheus.NewCounter(prometheus.CounterOpts{Name: "flowhouse_tokens_created_total",
			Help: "Tokens created by this process."}),
		revoked: prometheus.NewCounter(prometheus.CounterOpts{Name: "flowhouse_tokens_revoked_total",
			Help: "Tokens revoked by this process."}),
		usageRows: prometheus.NewCounter(prometheus.CounterOpts{Name: "flowhouse_tokens_usage_rows_total",
			Help: "Last-use rows written to api_token_usage."}),
		usageErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "flowhouse_tokens_usage_write_errors_total",
			Help: "Failed writes of last uses (kept and written at the next interval)."}),
	}
	for _, r := range []string{"ok", "malformed", "checksum", "unknown", "revoked", "expired", "error"} {
		m.lookups.WithLabelValues(r)
	}
	m.cache.WithLabelValues("hit")
	m.cache.WithLabelValues("miss")
	if reg != nil {
		reg.MustRegister(m.lookups, m.cache, m.created, m.revoked, m.usageRows, m.usageErrors)
	}
	return m
}
