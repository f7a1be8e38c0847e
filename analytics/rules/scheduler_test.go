package rules

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/testkit"
)

// fakeLifecycle records evaluations.
type fakeLifecycle struct {
	mu    sync.Mutex
	evals []alerts.Evaluation
}

func (f *fakeLifecycle) Evaluate(_ context.Context, ev alerts.Evaluation) (alerts.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.evals = append(f.evals, ev)
	return alerts.Result{}, nil
}

func (f *fakeLifecycle) forRule(name string) []alerts.Evaluation {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []alerts.Evaluation
	for _, ev := range f.evals {
		if ev.Rule.Name == name {
			out = append(out, ev)
		}
	}
	return out
}

type noReader struct{}

func (noReader) Query(context.Context, string, ...any) (dbapi.Rows, error) {
	return nil, errors.New("no database in this test")
}

// schedulerWith builds a scheduler over hand-made rules (no engine).
func schedulerWith(t *testing.T, concurrency int, rs ...*scheduled) (*Scheduler, *fakeLifecycle, *prometheus.Registry) {
	t.Helper()
	cfg := Config{Concurrency: concurrency, Jitter: 0.1}
	life := &fakeLifecycle{}
	reg := prometheus.NewRegistry()
	s, err := New(cfg, SchedulerDeps{Reader: noReader{}, Alerts: life, Tenants: testTenants(t, "acme", "globex")})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.rule == nil {
			name := r.name
			r.rule = func(tn string) alerts.Rule { return alerts.Rule{Tenant: tn, Name: name, Severity: "info"} }
		}
	}
	s.rules = rs
	s.m = newMetrics(reg, rs)
	for _, r := range s.rules {
		s.wg.Add(1)
		go s.loop(r)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	return s, life, reg
}

// A rule that hangs is cut at its timeout and counted; it never runs
// twice at once, and the other rule keeps its schedule meanwhile.
func TestSchedulerTimeoutsAndNoOverlap(t *testing.T) {
	var running, overlaps, slowRuns atomic.Int32
	slow := &scheduled{name: "slow", interval: 50 * time.Millisecond, timeout: 40 * time.Millisecond,
		evaluate: func(ec evalContext) ([]Finding, error) {
			if running.Add(1) > 1 {
				overlaps.Add(1)
			}
			defer running.Add(-1)
			slowRuns.Add(1)
			<-ec.ctx.Done() // hangs until the timeout
			return nil, ec.ctx.Err()
		}}
	var fastRuns atomic.Int32
	fast := &scheduled{name: "fast", interval: 20 * time.Millisecond, timeout: 20 * time.Millisecond,
		evaluate: func(ec evalContext) ([]Finding, error) {
			fastRuns.Add(1)
			return []Finding{
				{Tenant: "acme", Instance: alerts.Instance{Labels: map[string]string{"dst_address": "192.0.2.1"}, Value: 1}},
				{Tenant: "nobody", Instance: alerts.Instance{Labels: map[string]string{"dst_address": "192.0.2.2"}, Value: 1}},
			}, nil
		}}
	_, life, _ := schedulerWith(t, 2, slow, fast)
	s := life
	testkit.Eventually(t, "three timed-out runs of the slow rule", 10*time.Second, func() bool { return slowRuns.Load() >= 3 })
	testkit.Eventually(t, "ten runs of the fast rule", 10*time.Second, func() bool { return fastRuns.Load() >= 10 })
	if n := overlaps.Load(); n != 0 {
		t.Errorf("%d overlapping runs of one rule", n)
	}
	if n := len(s.forRule("slow")); n != 0 {
		t.Errorf("a failed run was applied %d times to the alerts", n)
	}
	evs := s.forRule("fast")
	var acme, globex int
	for _, ev := range evs {
		switch ev.Rule.Tenant {
		case "acme":
			acme++
			if len(ev.Instances) != 1 || ev.Instances[0].Labels["dst_address"] != "192.0.2.1" {
				t.Fatalf("acme evaluation %+v", ev)
			}
		case "globex":
			globex++
			if len(ev.Instances) != 0 {
				t.Fatalf("globex got another tenant's findings: %+v", ev)
			}
		default:
			t.Fatalf("evaluation for tenant %q outside the scope", ev.Rule.Tenant)
		}
	}
	if acme == 0 || globex == 0 {
		t.Errorf("evaluations per tenant: acme %d, globex %d; every tenant in scope gets one per run", acme, globex)
	}
}

func TestSchedulerCountsErrors(t *testing.T) {
	slow := &scheduled{name: "slow", interval: 30 * time.Millisecond, timeout: 20 * time.Millisecond,
		evaluate: func(ec evalContext) ([]Finding, error) { <-ec.ctx.Done(); return nil, ec.ctx.Err() }}
	broken := &scheduled{name: "broken", interval: 30 * time.Millisecond, timeout: 20 * time.Millisecond,
		evaluate: func(evalContext) ([]Finding, error) { return nil, errors.New("boom") }}
	fine := &scheduled{name: "fine", interval: 30 * time.Millisecond, timeout: 20 * time.Millisecond,
		evaluate: func(evalContext) ([]Finding, error) { return nil, nil }}
	s, _, _ := schedulerWith(t, 3, slow, broken, fine)
	testkit.Eventually(t, "errors counted", 10*time.Second, func() bool {
		return testutil.ToFloat64(s.m.errors.WithLabelValues("slow", "timeout")) >= 2 &&
			testutil.ToFloat64(s.m.errors.WithLabelValues("broken", "other")) >= 2 &&
			testutil.ToFloat64(s.m.runs.WithLabelValues("fine", "ok")) >= 2
	})
	if n := testutil.ToFloat64(s.m.runs.WithLabelValues("fine", "error")); n != 0 {
		t.Errorf("the fine rule has %g errors", n)
	}
}

// Stop cancels a running evaluation and returns.
func TestSchedulerStopCancelsRuns(t *testing.T) {
	started := make(chan struct{}, 1)
	hang := &scheduled{name: "hang", interval: time.Hour, timeout: time.Hour,
		evaluate: func(ec evalContext) ([]Finding, error) {
			started <- struct{}{}
			<-ec.ctx.Done()
			return nil, ec.ctx.Err()
		}}
	s, _, _ := schedulerWith(t, 1, hang)
	go s.Run("hang")
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}
