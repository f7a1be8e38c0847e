package notify

import (
	"context"
	"github.com/flowhouse/flowhouse/internal/receivers"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// t0 is the start of the tests' fake time.
var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// testAlert is a firing alert of tenant and rule with extra labels as
// name, value pairs.
func testAlert(tenant, rule string, sev Severity, kv ...string) Alert {
	a := Alert{
		Tenant: tenant, Rule: rule, Status: StatusFiring, Severity: sev,
		Labels:      map[string]string{},
		Annotations: map[string]string{AnnotationSummary: rule + " on " + tenant},
		StartsAt:    t0, UpdatedAt: t0,
		GeneratorURL: "http://flowhouse.example/rules/" + rule,
	}
	for i := 0; i+1 < len(kv); i += 2 {
		a.Labels[kv[i]] = kv[i+1]
	}
	return a
}

func resolvedAt(a Alert, at time.Time) Alert {
	a.Status = StatusResolved
	a.EndsAt = at
	a.UpdatedAt = at
	return a
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	receivers.WaitFor(t, timeout, what, cond)
}

// counter reads flowhouse_notify_failed_total or _sent_total.
func failed(n *Notifier, recv, reason string) float64 {
	for _, r := range n.receivers {
		if r.name == recv {
			return testutil.ToFloat64(n.m.failed.WithLabelValues(r.kind, r.name, reason))
		}
	}
	panic("no receiver " + recv)
}

func sent(n *Notifier, recv string) float64 {
	for _, r := range n.receivers {
		if r.name == recv {
			return testutil.ToFloat64(n.m.sent.WithLabelValues(r.kind, r.name))
		}
	}
	panic("no receiver " + recv)
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int { return receivers.FreePort(t) }

// startNotifier makes and starts a Notifier, stopped at the test's end.
func startNotifier(t testing.TB, cfg Config) *Notifier {
	t.Helper()
	n, err := New(cfg, Deps{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Stop() })
	return n
}

// fastConfig retries quickly, for tests against real receivers.
func fastConfig() Config {
	c := DefaultConfig()
	c.Timeout = 5 * time.Second
	c.Retry = RetryConfig{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, MaxAttempts: 5, MaxAge: time.Minute}
	return c
}

func mustNotify(t testing.TB, n *Notifier, a Alert) {
	t.Helper()
	if err := n.Notify(a); err != nil {
		t.Fatal(err)
	}
}

// testLogger logs through t until the test ends.
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
