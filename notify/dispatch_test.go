package notify

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// The dispatcher's state is driven here with explicit times: its clock
// is the simulate loop's, so hours pass in microseconds.

func dispatchConfig(routes ...RouteConfig) Config {
	c := DefaultConfig()
	c.Receivers = []ReceiverConfig{
		{Name: "hook", Webhook: WebhookConfig{URL: "http://127.0.0.1:9/hook", HMACKey: "k"}},
		{Name: "mail", SMTP: SMTPConfig{Smarthost: "127.0.0.1:25", TLS: TLSNone, From: "alerts@example.org", To: []string{"ops@example.org"}}},
		{Name: "am", Alertmanager: AlertmanagerConfig{URLs: []string{"http://127.0.0.1:9"}}},
	}
	c.Routes = routes
	return c
}

func newTestDispatcher(t *testing.T, routes ...RouteConfig) *Notifier {
	t.Helper()
	n, err := New(dispatchConfig(routes...), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// event is an alert handed to the dispatcher at a time after t0.
type event struct {
	at    time.Duration
	alert Alert
}

// fire is a firing alert with label id, started at 'at'.
func fire(at time.Duration, tenant, rule, id string, sev Severity, kv ...string) event {
	a := testAlert(tenant, rule, sev, append([]string{"id", id}, kv...)...)
	a.StartsAt, a.UpdatedAt = t0.Add(at), t0.Add(at)
	return event{at, a}
}

// resolve is ev's alert resolved at 'at'.
func resolve(at time.Duration, ev event) event {
	return event{at, resolvedAt(ev.alert, t0.Add(at))}
}

// simulate runs the dispatcher as its goroutine does: after alerts
// arrive, and whenever next() says, it flushes; it returns what it made,
// one line each, until horizon.
func simulate(n *Notifier, events []event, horizon time.Duration) []string {
	d := n.disp
	var out []string
	i := 0
	for {
		now := time.Time{}
		if i < len(events) {
			now = t0.Add(events[i].at)
		}
		if next := d.next(); !next.IsZero() && (now.IsZero() || next.Before(now)) {
			now = next
		}
		if now.IsZero() || now.After(t0.Add(horizon)) {
			return out
		}
		for i < len(events) && !t0.Add(events[i].at).After(now) {
			d.add(events[i].alert.prepared(now), now)
			i++
		}
		ns, posts := d.flush(now)
		for _, x := range ns {
			var ids []string
			for _, a := range x.alerts {
				id := a.Labels["id"]
				if a.Status == StatusResolved {
					id += "(resolved)"
				}
				ids = append(ids, id)
			}
			out = append(out, fmt.Sprintf("%s %s %s %s", now.Sub(t0), x.status, x.groupKey, strings.Join(ids, ",")))
		}
		for _, p := range posts {
			var items []string
			for _, a := range p.alerts {
				items = append(items, fmt.Sprintf("%s:%s until %s", a.Labels["id"], a.Labels[LabelSeverity], a.EndsAt.Sub(t0)))
			}
			kind := "post"
			if p.resend {
				kind = "resend"
			}
			out = append(out, fmt.Sprintf("%s %s %s %s", now.Sub(t0), p.recv.name, kind, strings.Join(items, " ")))
		}
	}
}

func TestRouting(t *testing.T) {
	n := newTestDispatcher(t,
		RouteConfig{Tenants: []string{"acme"}, MinSeverity: "critical", Receivers: []string{"am"}},
		RouteConfig{Tenants: []string{"acme"}, MinSeverity: "warning", Receivers: []string{"hook"}, Continue: true},
		RouteConfig{MinSeverity: "error", Receivers: []string{"mail"}},
		RouteConfig{Tenants: []string{"globex", "initech"}, Receivers: []string{"hook"}},
	)
	for _, tc := range []struct {
		tenant string
		sev    Severity
		want   []int
	}{
		{"acme", SeverityCritical, []int{0}}, // the first match wins
		{"acme", SeverityError, []int{1, 2}}, // continue: on to the next match
		{"acme", SeverityWarning, []int{1}},  // route 2 needs error
		{"acme", SeverityInfo, nil},          // below every acme route and route 2
		{"globex", SeverityCritical, []int{2}},
		{"globex", SeverityInfo, []int{3}},
		{"initech", SeverityWarning, []int{3}},
		{"umbrella", SeverityWarning, nil},
		{"umbrella", SeverityError, []int{2}},
	} {
		a := testAlert(tc.tenant, "R", tc.sev)
		var got []int
		for _, r := range match(n.routes, &a) {
			got = append(got, r.index)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: routes %v, want %v", tc.tenant, tc.sev, got, tc.want)
		}
	}
}

func TestGroupingRepeatResolve(t *testing.T) {
	hook := RouteConfig{Receivers: []string{"hook"}}
	a1 := fire(0, "acme", "R", "a1", SeverityWarning)
	const k = `{}/0:{alertname="R", tenant="acme"}`
	for _, tc := range []struct {
		name    string
		route   RouteConfig
		events  []event
		horizon time.Duration
		want    []string
	}{
		{
			name:  "group_wait batches alerts into one notification",
			route: hook,
			events: []event{
				a1,
				fire(10*time.Second, "acme", "R", "a2", SeverityWarning),
				fire(29*time.Second, "acme", "R", "a3", SeverityCritical),
			},
			horizon: time.Hour,
			want:    []string{"30s firing " + k + " a1,a2,a3"},
		},
		{
			name:  "tenants never share a group",
			route: hook,
			events: []event{
				a1,
				fire(time.Second, "globex", "R", "b1", SeverityWarning),
			},
			horizon: time.Hour,
			want: []string{
				"30s firing " + k + " a1",
				`31s firing {}/0:{alertname="R", tenant="globex"} b1`,
			},
		},
		{
			name:  "each rule is a group by default",
			route: hook,
			events: []event{
				a1,
				fire(0, "acme", "S", "s1", SeverityWarning),
			},
			horizon: time.Hour,
			want: []string{
				"30s firing " + k + " a1",
				`30s firing {}/0:{alertname="S", tenant="acme"} s1`,
			},
		},
		{
			name:  "group_by another label groups across rules",
			route: RouteConfig{Receivers: []string{"hook"}, GroupBy: []string{"dst"}},
			events: []event{
				fire(0, "acme", "R", "r1", SeverityWarning, "dst", "192.0.2.1"),
				fire(time.Second, "acme", "S", "s1", SeverityWarning, "dst", "192.0.2.1"),
				fire(2*time.Second, "acme", "S", "s2", SeverityWarning, "dst", "192.0.2.2"),
			},
			horizon: time.Hour,
			want: []string{
				`30s firing {}/0:{dst="192.0.2.1", tenant="acme"} r1,s1`,
				`32s firing {}/0:{dst="192.0.2.2", tenant="acme"} s2`,
			},
		},
		{
			name:    "a group still firing is notified again after repeat_interval (4h default)",
			route:   hook,
			events:  []event{a1},
			horizon: 8*time.Hour + time.Minute,
			// Flushes tick every group_interval (5m) from 30s: the repeat
			// is the first tick at least 4h after the last notification.
			want: []string{"30s firing " + k + " a1", "4h0m30s firing " + k + " a1", "8h0m30s firing " + k + " a1"},
		},
		{
			name:    "repeat_interval and group_interval as configured",
			route:   RouteConfig{Receivers: []string{"hook"}, GroupWait: time.Second, GroupInterval: time.Minute, RepeatInterval: 10 * time.Minute},
			events:  []event{a1},
			horizon: 25 * time.Minute,
			want:    []string{"1s firing " + k + " a1", "10m1s firing " + k + " a1", "20m1s firing " + k + " a1"},
		},
		{
			name:    "a notified alert that resolves is notified resolved at the next group_interval",
			route:   hook,
			events:  []event{a1, resolve(2*time.Minute, a1)},
			horizon: 10 * time.Hour,
			want:    []string{"30s firing " + k + " a1", "5m30s resolved " + k + " a1(resolved)"},
		},
		{
			name:    "send_resolved false: no resolved notification",
			route:   RouteConfig{Receivers: []string{"hook"}, SendResolved: Off},
			events:  []event{a1, resolve(2*time.Minute, a1)},
			horizon: 10 * time.Hour,
			want:    []string{"30s firing " + k + " a1"},
		},
		{
			name:  "send_resolved false: firing again is news",
			route: RouteConfig{Receivers: []string{"hook"}, SendResolved: Off},
			events: []event{
				a1, resolve(2*time.Minute, a1),
				fire(20*time.Minute, "acme", "R", "a1", SeverityWarning),
			},
			horizon: time.Hour,
			want:    []string{"30s firing " + k + " a1", "20m30s firing " + k + " a1"},
		},
		{
			name:    "an alert that resolves within group_wait is never notified",
			route:   hook,
			events:  []event{a1, resolve(10*time.Second, a1)},
			horizon: 10 * time.Hour,
			want:    nil,
		},
		{
			name:  "a new alert in a notified group waits for group_interval",
			route: hook,
			events: []event{
				a1,
				fire(time.Minute, "acme", "R", "a2", SeverityWarning),
			},
			horizon: time.Hour,
			want:    []string{"30s firing " + k + " a1", "5m30s firing " + k + " a1,a2"},
		},
		{
			name:  "a resolve and a new alert go in one notification",
			route: hook,
			events: []event{
				a1,
				fire(time.Second, "acme", "R", "a2", SeverityWarning),
				resolve(time.Minute, a1),
				fire(2*time.Minute, "acme", "R", "a3", SeverityWarning),
			},
			horizon: time.Hour,
			want:    []string{"30s firing " + k + " a1,a2", "5m30s firing " + k + " a1(resolved),a2,a3"},
		},
		{
			name:    "the resolve of an alert the group never had is ignored",
			route:   hook,
			events:  []event{resolve(time.Minute, a1)},
			horizon: time.Hour,
			want:    nil,
		},
		{
			name:    "an update of a firing alert is not news",
			route:   hook,
			events:  []event{a1, {time.Minute, func() Alert { a := a1.alert; a.UpdatedAt = t0.Add(time.Minute); return a }()}},
			horizon: time.Hour,
			want:    []string{"30s firing " + k + " a1"},
		},
		{
			name:    "below min_severity nothing is sent",
			route:   RouteConfig{Receivers: []string{"hook"}, MinSeverity: "error"},
			events:  []event{a1},
			horizon: time.Hour,
			want:    nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestDispatcher(t, tc.route)
			got := simulate(n, tc.events, tc.horizon)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			if tc.horizon >= 10*time.Hour && len(n.disp.groups) != 0 {
				t.Errorf("%d groups left after everything resolved", len(n.disp.groups))
			}
		})
	}
}

func TestContinueMakesOneGroupPerRoute(t *testing.T) {
	n := newTestDispatcher(t,
		RouteConfig{Tenants: []string{"acme"}, Receivers: []string{"hook"}, Continue: true, GroupWait: time.Second},
		RouteConfig{Receivers: []string{"mail"}},
	)
	got := simulate(n, []event{fire(0, "acme", "R", "a1", SeverityError)}, time.Hour)
	want := []string{`1s firing {}/0:{alertname="R", tenant="acme"} a1`, `30s firing {}/1:{alertname="R", tenant="acme"} a1`}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// Alertmanager receivers take alerts as they come: posted at once, again
// every resend_interval with endsAt 4 intervals ahead, resolved once.
func TestAlertmanagerResend(t *testing.T) {
	n := newTestDispatcher(t, RouteConfig{Receivers: []string{"am"}})
	a1 := fire(0, "acme", "R", "a1", SeverityWarning)
	a1.alert.Fingerprint = "00000000000000a1" // the lifecycle's, kept across the severity change
	changed := a1.alert
	changed.Annotations = map[string]string{AnnotationSummary: "now worse"}
	critical := changed
	critical.Severity = SeverityCritical
	got := simulate(n, []event{
		a1,
		{10 * time.Second, a1.alert}, // the same again: nothing new
		{90 * time.Second, changed},  // posted at once
		{130 * time.Second, critical},
		resolve(3*time.Minute, event{0, critical}),
	}, 10*time.Minute)
	want := []string{
		"0s am post a1:warning until 4m0s",
		"1m0s am resend a1:warning until 5m0s",
		"1m30s am post a1:warning until 5m30s",
		"2m0s am resend a1:warning until 6m0s",
		// Under new labels it is another alert to Alertmanager: the old
		// one is resolved in the same post.
		"2m10s am post a1:warning until 2m10s a1:critical until 6m10s",
		"3m0s am post a1:critical until 3m0s",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if len(n.disp.groups) != 0 {
		t.Errorf("an Alertmanager-only route made %d groups", len(n.disp.groups))
	}
}

// A resolve is posted to Alertmanager even for an alert this process
// never posted: Alertmanager may hold it from before a restart.
func TestAlertmanagerResolveUnknown(t *testing.T) {
	n := newTestDispatcher(t, RouteConfig{Receivers: []string{"am"}})
	got := simulate(n, []event{resolve(time.Minute, fire(0, "acme", "R", "a1", SeverityWarning))}, time.Hour)
	if want := []string{"1m0s am post a1:warning until 1m0s"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// A firing alert handed back after a restart (Restored) is posted to
// Alertmanager again but is not news to grouped receivers: they hear of
// its group again only when something changes (at the group's next
// group_interval tick, as for any group already notified).
func TestRestoredAlertsAreNotNotifiedAgain(t *testing.T) {
	n := newTestDispatcher(t, RouteConfig{Receivers: []string{"hook", "am"}})
	restored := fire(0, "acme", "R", "a1", SeverityWarning)
	restored.alert.Restored = true
	const k = `{}/0:{alertname="R", tenant="acme"}`
	got := simulate(n, []event{
		restored,
		fire(time.Minute, "acme", "R", "a2", SeverityWarning),
		resolve(20*time.Minute, restored),
	}, 30*time.Minute)
	var grouped []string
	for _, line := range got {
		if !strings.Contains(line, " am ") {
			grouped = append(grouped, line)
		}
	}
	want := []string{
		"5m30s firing " + k + " a1,a2",
		"20m30s firing " + k + " a1(resolved),a2",
	}
	if !slices.Equal(grouped, want) {
		t.Errorf("grouped notifications:\n  %s\nwant:\n  %s", strings.Join(grouped, "\n  "), strings.Join(want, "\n  "))
	}
	if got[0] != "0s am post a1:warning until 4m0s" {
		t.Errorf("the restored alert was not posted to Alertmanager at once: %q", got[0])
	}
}
