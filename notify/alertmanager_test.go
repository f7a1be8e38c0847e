package notify

import (
	"encoding/json"
	"fmt"
	"github.com/flowhouse/flowhouse/internal/receivers"
	"maps"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

// The real receivers (package receivers), under this file's names.
type (
	gettableAlert = receivers.GettableAlert
	amHook        = receivers.Hook
)

func startAlertmanager(t *testing.T, hookURL string) *receivers.Alertmanager {
	return receivers.StartAlertmanager(t, hookURL)
}

// TestAlertmanager posts to an HA pair of real Alertmanagers: the alert
// appears in each one's GET /api/v2/alerts with the labels and
// annotations sent and the same fingerprint as ours, its endsAt moves on
// with each re-send, and once resolved it leaves the active alerts.
// Alertmanager's own webhook then notifies it firing and resolved, and
// its payload has exactly the keys of ours.
func TestAlertmanager(t *testing.T) {
	hook := &amHook{}
	hs := httptest.NewServer(hook)
	t.Cleanup(hs.Close)
	ams := []*receivers.Alertmanager{startAlertmanager(t, hs.URL), startAlertmanager(t, hs.URL)}

	c := fastConfig()
	c.Receivers = []ReceiverConfig{{Name: "am", Alertmanager: AlertmanagerConfig{
		URLs: []string{ams[0].URL, ams[1].URL + "/"}, ResendInterval: time.Second}}}
	c.Routes = []RouteConfig{{Receivers: []string{"am"}}}
	n := startNotifier(t, c)

	a := testAlert("acme", "HighTraffic", SeverityCritical, "dst_addr", "192.0.2.7", "direction", "in")
	a.Annotations[AnnotationDescription] = "3.2 Gbit/s to 192.0.2.7, baseline 40 Mbit/s"
	a.StartsAt = time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	mustNotify(t, n, a)
	posted := time.Now()

	want := a.LabelSet()
	find := func(am *receivers.Alertmanager) *gettableAlert {
		for _, g := range am.Alerts(t) {
			if maps.Equal(g.Labels, want) {
				return &g
			}
		}
		return nil
	}
	firstEnd := make([]time.Time, len(ams))
	for i, am := range ams {
		var g *gettableAlert
		waitFor(t, 20*time.Second, "the alert in alertmanager "+am.URL, func() bool { g = find(am); return g != nil })
		if g.Status.State != "active" {
			t.Errorf("%s: state %q, want active", am.URL, g.Status.State)
		}
		if !maps.Equal(g.Annotations, a.Annotations) {
			t.Errorf("%s: annotations %v, want %v", am.URL, g.Annotations, a.Annotations)
		}
		if !g.StartsAt.Equal(a.StartsAt) {
			t.Errorf("%s: startsAt %v, want %v", am.URL, g.StartsAt, a.StartsAt)
		}
		if g.GeneratorURL != a.GeneratorURL {
			t.Errorf("%s: generatorURL %q", am.URL, g.GeneratorURL)
		}
		if fp := Fingerprint(want); g.Fingerprint != fp {
			t.Errorf("%s: Alertmanager's fingerprint %s, ours %s", am.URL, g.Fingerprint, fp)
		}
		// endsAt is 4 re-send intervals ahead of the post.
		if g.EndsAt.Before(posted.Add(3*time.Second)) || g.EndsAt.After(time.Now().Add(5*time.Second)) {
			t.Errorf("%s: endsAt %v, want about 4s after %v", am.URL, g.EndsAt, posted)
		}
		firstEnd[i] = g.EndsAt
	}
	// The re-sends (every second) move endsAt on.
	for i, am := range ams {
		waitFor(t, 20*time.Second, "a re-send moving endsAt on in "+am.URL, func() bool {
			g := find(am)
			return g != nil && g.EndsAt.After(firstEnd[i].Add(time.Second))
		})
	}
	waitFor(t, 20*time.Second, "Alertmanager's firing notification", func() bool { return hook.WithStatus("firing") != nil })

	end := time.Now().UTC().Truncate(time.Millisecond)
	mustNotify(t, n, resolvedAt(a, end))
	for _, am := range ams {
		waitFor(t, 20*time.Second, "the alert to leave the active alerts of "+am.URL, func() bool { return find(am) == nil })
	}
	var resolved map[string]any
	waitFor(t, 20*time.Second, "Alertmanager's resolved notification", func() bool {
		resolved = hook.WithStatus("resolved")
		return resolved != nil
	})
	t.Logf("Alertmanager's resolved notification: %v", resolved)
	ra := resolved["alerts"].([]any)[0].(map[string]any)
	if ra["endsAt"] != end.Format(time.RFC3339Nano) && ra["endsAt"] != end.Format("2006-01-02T15:04:05.000Z07:00") {
		t.Errorf("Alertmanager notified endsAt %v, we resolved at %v", ra["endsAt"], end.Format(time.RFC3339Nano))
	}
	if fmt.Sprint(ra["labels"]) != fmt.Sprint(want) {
		t.Errorf("Alertmanager notified labels %v, want %v", ra["labels"], want)
	}
	// Alertmanager's webhook payload and ours have the same keys.
	ra2 := resolvedAt(a, end)
	x := &notification{groupKey: "k", status: StatusResolved, groupLabels: map[string]string{},
		alerts: []*Alert{ra2.prepared(end)}}
	body, err := webhookBody(x, &receiver{name: "r"}, "")
	if err != nil {
		t.Fatal(err)
	}
	var ours map[string]any
	if err := json.Unmarshal(body, &ours); err != nil {
		t.Fatal(err)
	}
	if a, b := keysOf(resolved), keysOf(ours); !slices.Equal(a, b) {
		t.Errorf("Alertmanager's webhook keys %v, ours %v", a, b)
	}
	if a, b := keysOf(ra), keysOf(ours["alerts"].([]any)[0].(map[string]any)); !slices.Equal(a, b) {
		t.Errorf("Alertmanager's webhook alert keys %v, ours %v", a, b)
	}
	if resolved["version"] != WebhookVersion {
		t.Errorf("Alertmanager's webhook version %v, ours %s", resolved["version"], WebhookVersion)
	}
	if s := sent(n, "am"); s < 4 {
		t.Errorf("sent = %v, want at least 2 posts to each of 2 Alertmanagers", s)
	}
	for _, reason := range reasonsOf[KindAlertmanager] {
		if f := failed(n, "am", reason); f != 0 {
			t.Errorf("failed{%s} = %v", reason, f)
		}
	}
}
