package notify

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// recorder replaces the senders of a Notifier's destinations and keeps
// what they were given, with the (fake) time.
type recorder struct {
	mu   sync.Mutex
	got  []recorded
	fail int // fail the next attempts
}

type recorded struct {
	at       time.Time
	receiver string
	body     []byte
}

func (r *recorder) install(n *Notifier) {
	for _, recv := range n.receivers {
		for _, t := range recv.targets {
			t.send = func(_ context.Context, t *target, j *job) error {
				r.mu.Lock()
				defer r.mu.Unlock()
				if r.fail > 0 {
					r.fail--
					return &deliveryError{reason: ReasonHTTP5xx, err: errTest}
				}
				r.got = append(r.got, recorded{time.Now(), t.recv.name, j.body})
				return nil
			}
		}
	}
}

func (r *recorder) take() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.got
	r.got = nil
	return out
}

type testError string

func (e testError) Error() string { return string(e) }

const errTest = testError("refused by the test")

// The real dispatcher and workers, with the default timings (group_wait
// 30s, group_interval 5m, repeat_interval 4h, resend_interval 1m), on
// synctest's fake clock: hours pass at once, and synctest.Wait returns
// when every goroutine of the Notifier is idle, so nothing sleeps for
// real and nothing is timing-dependent.
func TestDefaultTimingsThroughTheLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := DefaultConfig()
		c.Receivers = []ReceiverConfig{
			{Name: "hook", Webhook: WebhookConfig{URL: "http://127.0.0.1:9/", HMACKey: "k"}},
			{Name: "am", Alertmanager: AlertmanagerConfig{URLs: []string{"http://127.0.0.1:9/"}}},
		}
		c.Routes = []RouteConfig{{Receivers: []string{"hook", "am"}}}
		n, err := New(c, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		rec := &recorder{}
		rec.install(n)
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		a := testAlert("acme", "R", SeverityWarning)
		a.StartsAt = start
		mustNotify(t, n, a)

		expect := func(what string, want ...string) {
			t.Helper()
			synctest.Wait()
			got := rec.take()
			var names []string
			for _, g := range got {
				names = append(names, g.receiver)
			}
			if len(names) != len(want) {
				t.Fatalf("%s: delivered to %v, want %v", what, names, want)
			}
			for i := range want {
				if names[i] != want[i] {
					t.Fatalf("%s: delivered to %v, want %v", what, names, want)
				}
			}
		}
		expect("at once", "am") // Alertmanager gets it at once
		time.Sleep(29 * time.Second)
		expect("before group_wait")
		time.Sleep(2 * time.Second)
		expect("after group_wait", "hook")
		// Every minute Alertmanager gets it again; the webhook nothing
		// until repeat_interval.
		time.Sleep(30 * time.Second)
		expect("1m", "am")
		time.Sleep(4*time.Hour - 2*time.Minute)
		got := rec.take()
		for _, g := range got {
			if g.receiver != "am" {
				t.Fatalf("%s got a notification before repeat_interval", g.receiver)
			}
		}
		if len(got) != 238 { // every minute from 2m to 3h59m
			t.Errorf("%d re-sends to Alertmanager from 2m to 3h59m, want 238", len(got))
		}
		time.Sleep(3 * time.Minute) // past 4h from the first notification, and the next 5m tick
		synctest.Wait()
		hooks := 0
		for _, g := range rec.take() {
			if g.receiver == "hook" {
				hooks++
				if d := g.at.Sub(start); d != 4*time.Hour+30*time.Second {
					t.Errorf("repeat at %s, want 4h0m30s", d)
				}
			}
		}
		if hooks != 1 {
			t.Errorf("%d repeats, want 1", hooks)
		}

		// The resolve: Alertmanager at once, with the end; the webhook
		// at the next group_interval tick; then nothing more.
		end := time.Now()
		mustNotify(t, n, resolvedAt(a, end))
		synctest.Wait()
		got = rec.take()
		if len(got) != 1 || got[0].receiver != "am" {
			t.Fatalf("after the resolve: %v", got)
		}
		var posted []amAlert
		if err := json.Unmarshal(got[0].body, &posted); err != nil || len(posted) != 1 || !posted[0].EndsAt.Equal(end.UTC().Truncate(time.Millisecond)) {
			t.Errorf("resolve posted %s", got[0].body)
		}
		time.Sleep(5 * time.Minute)
		expect("resolved at the next tick", "hook")
		time.Sleep(24 * time.Hour)
		expect("a day later")

		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// Retries wait store.Backoff's delays (on the fake clock here), and a
// re-send to Alertmanager that cannot be delivered before the next one is
// dropped without counting a loss: the next carries the same alerts.
func TestRetryBackoffAndSupersededResend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := DefaultConfig()
		c.Retry = RetryConfig{Initial: time.Second, Max: 8 * time.Second, MaxAttempts: 10, MaxAge: time.Hour}
		c.Receivers = []ReceiverConfig{{Name: "hook", Webhook: WebhookConfig{URL: "http://127.0.0.1:9/", HMACKey: "k"}}}
		c.Routes = []RouteConfig{{Receivers: []string{"hook"}, GroupWait: time.Second}}
		n, err := New(c, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		rec := &recorder{fail: 4}
		rec.install(n)
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		mustNotify(t, n, testAlert("acme", "R", SeverityWarning))
		time.Sleep(time.Minute)
		synctest.Wait()
		got := rec.take()
		if len(got) != 1 {
			t.Fatalf("%d deliveries, want 1", len(got))
		}
		// group_wait 1s, then waits drawn from the upper half of 1s, 2s,
		// 4s, 8s: between 8.5s and 16s after it.
		if d := got[0].at.Sub(start); d < 1*time.Second+7500*time.Millisecond || d > 1*time.Second+15*time.Second {
			t.Errorf("delivered %s after Notify, want 8.5s..16s", d)
		}
		if f := failed(n, "hook", ReasonHTTP5xx); f != 4 {
			t.Errorf("failed{http_5xx} = %v, want 4", f)
		}
		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
	})

	synctest.Test(t, func(t *testing.T) {
		c := DefaultConfig()
		c.Retry = RetryConfig{Initial: 20 * time.Second, Max: time.Minute, MaxAttempts: 10, MaxAge: time.Hour}
		c.Receivers = []ReceiverConfig{{Name: "am", Alertmanager: AlertmanagerConfig{URLs: []string{"http://127.0.0.1:9/"}}}}
		c.Routes = []RouteConfig{{Receivers: []string{"am"}}}
		n, err := New(c, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		rec := &recorder{}
		rec.install(n)
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		mustNotify(t, n, testAlert("acme", "R", SeverityWarning))
		synctest.Wait()
		if got := rec.take(); len(got) != 1 {
			t.Fatalf("%d posts, want 1", len(got))
		}
		rec.mu.Lock()
		rec.fail = 1000
		rec.mu.Unlock()
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if g := failed(n, "am", ReasonGaveUp); g != 0 {
			t.Errorf("gave_up = %v for superseded re-sends, want 0", g)
		}
		if f := failed(n, "am", ReasonHTTP5xx); f < 10 || f > 40 {
			t.Errorf("failed{http_5xx} = %v in 10 minutes of re-sends every minute, want 2-3 attempts each", f)
		}
		rec.mu.Lock()
		rec.fail = 0
		rec.mu.Unlock()
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := rec.take(); len(got) == 0 {
			t.Error("no post once Alertmanager answers again")
		}
		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// The metrics pass client_golang's linter (promtool's rules), and every
// receiver has its series from the start, so rate() sees the first
// failure.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, err := New(dispatchConfig(RouteConfig{Receivers: []string{"hook", "mail", "am"}}), Deps{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	want := len(reasonsOf[KindWebhook]) + len(reasonsOf[KindSMTP]) + len(reasonsOf[KindAlertmanager])
	if got := testutil.CollectAndCount(n.m.failed); got != want {
		t.Errorf("%d failed_total series, want %d", got, want)
	}
	mustNotify(t, n, testAlert("acme", "R", SeverityWarning))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP flowhouse_notify_queue_alerts Alerts waiting for the dispatcher (bounded by queue_size).
# TYPE flowhouse_notify_queue_alerts gauge
flowhouse_notify_queue_alerts 1
# HELP flowhouse_notify_queue_notifications Notifications waiting for delivery, by receiver kind and receiver (bounded by queue_size per destination).
# TYPE flowhouse_notify_queue_notifications gauge
flowhouse_notify_queue_notifications{kind="alertmanager",receiver="am"} 0
flowhouse_notify_queue_notifications{kind="smtp",receiver="mail"} 0
flowhouse_notify_queue_notifications{kind="webhook",receiver="hook"} 0
`), "flowhouse_notify_queue_alerts", "flowhouse_notify_queue_notifications"); err != nil {
		t.Error(err)
	}
}
