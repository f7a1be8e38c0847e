package alerts_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/notify"
)

// recorder is a Notifier that keeps what it gets.
type recorder struct {
	mu  sync.Mutex
	got []notify.Alert
}

func (r *recorder) Notify(a notify.Alert) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, a)
	return nil
}

func (r *recorder) all() []notify.Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notify.Alert(nil), r.got...)
}

// waitN waits until r has n notifications and returns them.
func (r *recorder) waitN(t *testing.T, n int) []notify.Alert {
	t.Helper()
	testkit.Eventually(t, "notifications", 5*time.Second, func() bool { return len(r.all()) >= n })
	return r.all()
}

// clock is a fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// started is a started manager; it is stopped when the test ends.
func started(t *testing.T, deps alerts.Deps) *alerts.Manager {
	t.Helper()
	m, err := alerts.New(alerts.Config{}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop(context.Background()) })
	return m
}

func inst(value float64, labels ...string) alerts.Instance {
	in := alerts.Instance{Value: value, Labels: map[string]string{}}
	for i := 0; i+1 < len(labels); i += 2 {
		in.Labels[labels[i]] = labels[i+1]
	}
	return in
}

func eval(t *testing.T, m *alerts.Manager, r alerts.Rule, at time.Time, ins ...alerts.Instance) alerts.Result {
	t.Helper()
	res, err := m.Evaluate(context.Background(), alerts.Evaluation{Rule: r, At: at, Instances: ins})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// only is the one active alert of tenant.
func only(t *testing.T, m *alerts.Manager, tenant string) alerts.Alert {
	t.Helper()
	as := m.Active(tenant)
	if len(as) != 1 {
		t.Fatalf("active alerts of %s: %d, want 1: %+v", tenant, len(as), as)
	}
	return as[0]
}
