package notify

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// alertmanagerBin is Debian's prometheus-alertmanager (0.25 on bookworm).
const alertmanagerBin = "/usr/bin/prometheus-alertmanager"

// alertmanager is a real Alertmanager started by a test.
type alertmanager struct {
	url string
}

// startAlertmanager runs Alertmanager on a free loopback port with its
// own configuration and storage under t.TempDir(), clustering off
// (--cluster.listen-address= empty: no gossip port on every address).
// It notifies hookURL, with Alertmanager's own webhook, grouping by
// alertname with short timings.
func startAlertmanager(t *testing.T, hookURL string) *alertmanager {
	t.Helper()
	requireBinary(t, alertmanagerBin, "prometheus-alertmanager")
	dir := t.TempDir()
	conf := fmt.Sprintf(`route:
  receiver: hook
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %s
        send_resolved: true
`, hookURL)
	confFile := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, "alertmanager "+addr, alertmanagerBin,
		"--config.file="+confFile,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--web.external-url=http://"+addr,
		"--cluster.listen-address=",
		"--log.level=warn")
	am := &alertmanager{url: "http://" + addr}
	waitFor(t, 20*time.Second, "alertmanager ready on "+addr, func() bool {
		if d.exited() {
			t.Fatalf("alertmanager exited: %s", d.out.String())
		}
		resp, err := http.Get(am.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return am
}

// gettableAlert is what GET /api/v2/alerts lists (the fields looked at).
type gettableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	UpdatedAt    time.Time         `json:"updatedAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
	Status       struct {
		State string `json:"state"`
	} `json:"status"`
}

func (am *alertmanager) alerts(t *testing.T) []gettableAlert {
	t.Helper()
	resp, err := http.Get(am.url + "/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []gettableAlert
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// amHook keeps the webhook payloads Alertmanager sends.
type amHook struct {
	mu       sync.Mutex
	payloads []map[string]any
}

func (h *amHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var m map[string]any
	if json.Unmarshal(body, &m) == nil {
		h.mu.Lock()
		h.payloads = append(h.payloads, m)
		h.mu.Unlock()
	}
}

func (h *amHook) withStatus(status string) map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.payloads {
		if p["status"] == status {
			return p
		}
	}
	return nil
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
	ams := []*alertmanager{startAlertmanager(t, hs.URL), startAlertmanager(t, hs.URL)}

	c := fastConfig()
	c.Receivers = []ReceiverConfig{{Name: "am", Alertmanager: AlertmanagerConfig{
		URLs: []string{ams[0].url, ams[1].url + "/"}, ResendInterval: time.Second}}}
	c.Routes = []RouteConfig{{Receivers: []string{"am"}}}
	n := startNotifier(t, c)

	a := testAlert("acme", "HighTraffic", SeverityCritical, "dst_addr", "192.0.2.7", "direction", "in")
	a.Annotations[AnnotationDescription] = "3.2 Gbit/s to 192.0.2.7, baseline 40 Mbit/s"
	a.StartsAt = time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	mustNotify(t, n, a)
	posted := time.Now()

	want := a.LabelSet()
	find := func(am *alertmanager) *gettableAlert {
		for _, g := range am.alerts(t) {
			if maps.Equal(g.Labels, want) {
				return &g
			}
		}
		return nil
	}
	firstEnd := make([]time.Time, len(ams))
	for i, am := range ams {
		var g *gettableAlert
		waitFor(t, 20*time.Second, "the alert in alertmanager "+am.url, func() bool { g = find(am); return g != nil })
		if g.Status.State != "active" {
			t.Errorf("%s: state %q, want active", am.url, g.Status.State)
		}
		if !maps.Equal(g.Annotations, a.Annotations) {
			t.Errorf("%s: annotations %v, want %v", am.url, g.Annotations, a.Annotations)
		}
		if !g.StartsAt.Equal(a.StartsAt) {
			t.Errorf("%s: startsAt %v, want %v", am.url, g.StartsAt, a.StartsAt)
		}
		if g.GeneratorURL != a.GeneratorURL {
			t.Errorf("%s: generatorURL %q", am.url, g.GeneratorURL)
		}
		if fp := Fingerprint(want); g.Fingerprint != fp {
			t.Errorf("%s: Alertmanager's fingerprint %s, ours %s", am.url, g.Fingerprint, fp)
		}
		// endsAt is 4 re-send intervals ahead of the post.
		if g.EndsAt.Before(posted.Add(3*time.Second)) || g.EndsAt.After(time.Now().Add(5*time.Second)) {
			t.Errorf("%s: endsAt %v, want about 4s after %v", am.url, g.EndsAt, posted)
		}
		firstEnd[i] = g.EndsAt
	}
	// The re-sends (every second) move endsAt on.
	for i, am := range ams {
		waitFor(t, 20*time.Second, "a re-send moving endsAt on in "+am.url, func() bool {
			g := find(am)
			return g != nil && g.EndsAt.After(firstEnd[i].Add(time.Second))
		})
	}
	waitFor(t, 20*time.Second, "Alertmanager's firing notification", func() bool { return hook.withStatus("firing") != nil })

	end := time.Now().UTC().Truncate(time.Millisecond)
	mustNotify(t, n, resolvedAt(a, end))
	for _, am := range ams {
		waitFor(t, 20*time.Second, "the alert to leave the active alerts of "+am.url, func() bool { return find(am) == nil })
	}
	var resolved map[string]any
	waitFor(t, 20*time.Second, "Alertmanager's resolved notification", func() bool {
		resolved = hook.withStatus("resolved")
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
