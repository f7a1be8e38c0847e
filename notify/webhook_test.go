package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/flowhouse/flowhouse/internal/receivers"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// hookServer is a webhook receiver: it answers each request with the
// next status of its script (200 when the script is done) and keeps
// what it received.
type hookServer struct {
	*httptest.Server
	mu       sync.Mutex
	script   []int
	requests []hookRequest
	// block, when set, holds every request until it is closed.
	block chan struct{}
}

type hookRequest struct {
	header http.Header
	body   []byte
	status int
}

func newHookServer(t *testing.T, script ...int) *hookServer {
	h := &hookServer{script: script}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		status := http.StatusOK
		if len(h.script) > 0 {
			status, h.script = h.script[0], h.script[1:]
		}
		h.requests = append(h.requests, hookRequest{header: r.Header.Clone(), body: body, status: status})
		block := h.block
		h.mu.Unlock()
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}
		if status == http.StatusTemporaryRedirect {
			w.Header().Set("Location", "http://elsewhere.example/hook?token=secret")
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, "answer %d", status)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) got() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.requests)
}

// message decodes request i's body.
func (r hookRequest) message(t *testing.T) WebhookMessage {
	t.Helper()
	var m WebhookMessage
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	return m
}

const hookKey = "webhook-test-key"

func hookConfig(urls ...string) Config {
	c := fastConfig()
	c.ExternalURL = "https://flowhouse.example"
	c.Receivers = []ReceiverConfig{{Name: "hook", Webhook: WebhookConfig{URL: urls[0], HMACKey: hookKey}}}
	c.Routes = []RouteConfig{{Receivers: []string{"hook"}, GroupWait: 50 * time.Millisecond, GroupInterval: 100 * time.Millisecond}}
	return c
}

func keysOf(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

// The payload, field by field, as Alertmanager's webhook has them, and
// its signature checked two ways: Verify, and HMAC-SHA256 recomputed here
// from the header and the exact body received.
func TestWebhookPayload(t *testing.T) {
	h := newHookServer(t)
	n := startNotifier(t, hookConfig(h.URL+"/hook?token=abc"))
	a1 := testAlert("acme", "HighTraffic", SeverityWarning, "dst_addr", "192.0.2.7")
	a1.Annotations[AnnotationDescription] = "3.2 Gbit/s to 192.0.2.7"
	a2 := testAlert("acme", "HighTraffic", SeverityWarning, "dst_addr", "192.0.2.8")
	a2.Annotations[AnnotationDescription] = "2.9 Gbit/s to 192.0.2.8"
	a2.StartsAt = t0.Add(time.Second)
	mustNotify(t, n, a1)
	mustNotify(t, n, a2)
	waitFor(t, 10*time.Second, "the firing notification", func() bool { return len(h.got()) == 1 })

	req := h.got()[0]
	if ct := req.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	// The signature, recomputed independently of Sign.
	ts := req.header.Get(HeaderTimestamp)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 10*time.Second {
		t.Errorf("%s %q is not a recent Unix time", HeaderTimestamp, ts)
	}
	mac := hmac.New(sha256.New, []byte(hookKey))
	mac.Write([]byte(ts + "."))
	mac.Write(req.body)
	if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); req.header.Get(HeaderSignature) != want {
		t.Errorf("%s = %q, want %q", HeaderSignature, req.header.Get(HeaderSignature), want)
	}
	if !Verify([]byte(hookKey), req.header, req.body, time.Now(), 5*time.Minute) {
		t.Error("Verify refuses the request")
	}
	if Verify([]byte("another key"), req.header, req.body, time.Now(), 5*time.Minute) {
		t.Error("Verify takes another key")
	}
	if Verify([]byte(hookKey), req.header, append(slices.Clone(req.body), ' '), time.Now(), 5*time.Minute) {
		t.Error("Verify takes a changed body")
	}
	if Verify([]byte(hookKey), req.header, req.body, time.Now().Add(time.Hour), 5*time.Minute) {
		t.Error("Verify takes an hour-old timestamp (a replay)")
	}
	if len(req.header.Get(HeaderDelivery)) != 24 {
		t.Errorf("%s = %q", HeaderDelivery, req.header.Get(HeaderDelivery))
	}

	// The shape: exactly Alertmanager's keys.
	var raw map[string]any
	if err := json.Unmarshal(req.body, &raw); err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{"alerts", "commonAnnotations", "commonLabels", "externalURL", "groupKey", "groupLabels", "receiver", "status", "truncatedAlerts", "version"}
	if got := keysOf(raw); !slices.Equal(got, wantKeys) {
		t.Errorf("keys %v, want %v", got, wantKeys)
	}
	for i, x := range raw["alerts"].([]any) {
		want := []string{"annotations", "endsAt", "fingerprint", "generatorURL", "labels", "startsAt", "status"}
		if got := keysOf(x.(map[string]any)); !slices.Equal(got, want) {
			t.Errorf("alerts[%d] keys %v, want %v", i, got, want)
		}
		if got := x.(map[string]any)["endsAt"]; got != "0001-01-01T00:00:00Z" {
			t.Errorf("alerts[%d] endsAt %v while firing", i, got)
		}
	}
	m := req.message(t)
	check := func(what string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("version", m.Version, "4")
	check("groupKey", m.GroupKey, `{}/0:{alertname="HighTraffic", tenant="acme"}`)
	check("truncatedAlerts", m.TruncatedAlerts, 0)
	check("status", m.Status, "firing")
	check("receiver", m.Receiver, "hook")
	check("groupLabels", m.GroupLabels, map[string]string{"alertname": "HighTraffic", "tenant": "acme"})
	check("commonLabels", m.CommonLabels, map[string]string{"alertname": "HighTraffic", "severity": "warning", "tenant": "acme"})
	check("commonAnnotations", m.CommonAnnotations, map[string]string{"summary": "HighTraffic on acme"})
	check("externalURL", m.ExternalURL, "https://flowhouse.example")
	if len(m.Alerts) != 2 {
		t.Fatalf("%d alerts, want 2", len(m.Alerts))
	}
	for i, a := range []Alert{a1, a2} {
		g := m.Alerts[i]
		check("status", g.Status, "firing")
		check("labels", g.Labels, a.LabelSet())
		check("annotations", g.Annotations, a.Annotations)
		check("startsAt", g.StartsAt.Format(time.RFC3339Nano), a.StartsAt.Format(time.RFC3339Nano))
		check("endsAt", g.EndsAt.IsZero(), true)
		check("generatorURL", g.GeneratorURL, a.GeneratorURL)
		check("fingerprint", g.Fingerprint, Fingerprint(a.LabelSet()))
	}

	// a1 resolves: the group still fires, a1 comes resolved with its end.
	end := time.Now().UTC().Truncate(time.Second)
	mustNotify(t, n, resolvedAt(a1, end))
	waitFor(t, 10*time.Second, "the resolve of a1", func() bool { return len(h.got()) == 2 })
	m = h.got()[1].message(t)
	check("status with one alert still firing", m.Status, "firing")
	if len(m.Alerts) != 2 {
		t.Fatalf("%d alerts, want 2", len(m.Alerts))
	}
	check("resolved alert status", m.Alerts[0].Status, "resolved")
	check("resolved alert endsAt", m.Alerts[0].EndsAt.Format(time.RFC3339), end.Format(time.RFC3339))
	check("still firing", m.Alerts[1].Status, "firing")

	mustNotify(t, n, resolvedAt(a2, end))
	waitFor(t, 10*time.Second, "the resolve of a2", func() bool { return len(h.got()) == 3 })
	m = h.got()[2].message(t)
	check("status when all resolved", m.Status, "resolved")
	check("alerts when all resolved", len(m.Alerts), 1)
	// The receiver may answer before the sender counts its delivery.
	waitFor(t, 10*time.Second, "three deliveries counted", func() bool { return sent(n, "hook") == 3 })
}

func TestWebhookRetries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		script   []int
		attempts int // requests for the first notification
		sent     float64
		failed   map[string]float64
	}{
		{"500 twice then 200 is retried and delivered", []int{500, 500, 200}, 3, 1, map[string]float64{ReasonHTTP5xx: 2}},
		{"400 is not retried", []int{400}, 1, 0, map[string]float64{ReasonHTTP4xx: 1}},
		{"404 is not retried", []int{404}, 1, 0, map[string]float64{ReasonHTTP4xx: 1}},
		{"429 is retried", []int{429, 200}, 2, 1, map[string]float64{ReasonHTTP4xx: 1}},
		{"408 is retried", []int{408, 200}, 2, 1, map[string]float64{ReasonHTTP4xx: 1}},
		{"a redirect is not followed", []int{307}, 1, 0, map[string]float64{ReasonHTTPOther: 1}},
		{"503 every time is given up after max_attempts", []int{503, 503, 503, 503, 503}, 5, 0, map[string]float64{ReasonHTTP5xx: 5, ReasonGaveUp: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHookServer(t, tc.script...)
			n := startNotifier(t, hookConfig(h.URL))
			mustNotify(t, n, testAlert("acme", "First", SeverityCritical))
			// A second notification, to the same destination: its worker
			// takes it only when it is done with the first, so when it
			// arrives the first will not be retried any more.
			waitFor(t, 10*time.Second, "the first notification's attempts", func() bool { return len(h.got()) >= tc.attempts })
			mustNotify(t, n, testAlert("acme", "Second", SeverityCritical))
			waitFor(t, 10*time.Second, "the second notification", func() bool {
				for _, r := range h.got() {
					if strings.Contains(string(r.body), `"alertname":"Second"`) {
						return true
					}
				}
				return false
			})
			first := 0
			for _, r := range h.got() {
				if strings.Contains(string(r.body), `"alertname":"First"`) {
					first++
				}
			}
			if first != tc.attempts {
				t.Errorf("%d requests for the first notification, want %d", first, tc.attempts)
			}
			waitFor(t, 10*time.Second, "the counters", func() bool { return sent(n, "hook") == tc.sent+1 })
			for _, reason := range reasonsOf[KindWebhook] {
				if got := failed(n, "hook", reason); got != tc.failed[reason] {
					t.Errorf("failed{reason=%q} = %v, want %v", reason, got, tc.failed[reason])
				}
			}
		})
	}
}

// Each tenant's notifications go to its own URL, signed with its own
// key; the others go to the receiver's URL; a webhook without a URL for
// a tenant counts what it cannot send.
func TestWebhookPerTenant(t *testing.T) {
	acme, other := newHookServer(t), newHookServer(t)
	c := hookConfig(other.URL)
	c.Receivers[0].Webhook.Tenants = []WebhookTenantConfig{{Tenant: "acme", URL: acme.URL, HMACKey: "acme-key"}}
	c.Receivers = append(c.Receivers, ReceiverConfig{Name: "acme-only", Webhook: WebhookConfig{
		Tenants: []WebhookTenantConfig{{Tenant: "acme", URL: acme.URL, HMACKey: "acme-key"}}}})
	c.Routes = []RouteConfig{
		{Receivers: []string{"hook"}, GroupWait: 50 * time.Millisecond, Continue: true},
		{Tenants: []string{"globex"}, Receivers: []string{"acme-only"}, GroupWait: 50 * time.Millisecond},
	}
	n := startNotifier(t, c)
	mustNotify(t, n, testAlert("acme", "R", SeverityWarning))
	mustNotify(t, n, testAlert("globex", "R", SeverityWarning))
	waitFor(t, 10*time.Second, "both tenants' notifications", func() bool { return len(acme.got()) == 1 && len(other.got()) == 1 })
	waitFor(t, 10*time.Second, "no_url counted", func() bool { return failed(n, "acme-only", ReasonNoURL) == 1 })
	for _, tc := range []struct {
		srv    *hookServer
		tenant string
		key    string
	}{{acme, "acme", "acme-key"}, {other, "globex", hookKey}} {
		r := tc.srv.got()[0]
		if m := r.message(t); m.GroupLabels[LabelTenant] != tc.tenant {
			t.Errorf("%s's URL got tenant %q", tc.tenant, m.GroupLabels[LabelTenant])
		}
		if !Verify([]byte(tc.key), r.header, r.body, time.Now(), time.Minute) {
			t.Errorf("%s's request is not signed with its key", tc.tenant)
		}
	}
	if Verify([]byte(hookKey), acme.got()[0].header, acme.got()[0].body, time.Now(), time.Minute) {
		t.Error("acme's request verifies under the shared key")
	}
}

func TestWebhookMaxAlerts(t *testing.T) {
	h := newHookServer(t)
	c := hookConfig(h.URL)
	c.Receivers[0].Webhook.MaxAlerts = 2
	n := startNotifier(t, c)
	for i := range 3 {
		mustNotify(t, n, testAlert("acme", "R", SeverityWarning, "i", strconv.Itoa(i)))
	}
	waitFor(t, 10*time.Second, "the notification", func() bool { return len(h.got()) == 1 })
	m := h.got()[0].message(t)
	if len(m.Alerts) != 2 || m.TruncatedAlerts != 1 {
		t.Errorf("%d alerts, truncatedAlerts %d; want 2 and 1", len(m.Alerts), m.TruncatedAlerts)
	}
}

func TestWebhookNetworkErrors(t *testing.T) {
	t.Run("connection refused is retried, then given up", func(t *testing.T) {
		c := hookConfig(fmt.Sprintf("http://127.0.0.1:%d/hook", freePort(t)))
		c.Retry.MaxAttempts = 2
		n := startNotifier(t, c)
		mustNotify(t, n, testAlert("acme", "R", SeverityWarning))
		waitFor(t, 10*time.Second, "gave_up", func() bool { return failed(n, "hook", ReasonGaveUp) == 1 })
		if got := failed(n, "hook", ReasonConnection); got != 2 {
			t.Errorf("failed{connection} = %v, want 2", got)
		}
	})
	t.Run("no answer within timeout", func(t *testing.T) {
		h := newHookServer(t)
		h.block = make(chan struct{})
		defer close(h.block)
		c := hookConfig(h.URL)
		c.Timeout = 100 * time.Millisecond
		c.Retry.MaxAttempts = 1
		n := startNotifier(t, c)
		mustNotify(t, n, testAlert("acme", "R", SeverityWarning))
		waitFor(t, 10*time.Second, "gave_up", func() bool { return failed(n, "hook", ReasonGaveUp) == 1 })
		if got := failed(n, "hook", ReasonTimeout); got != 1 {
			t.Errorf("failed{timeout} = %v, want 1", got)
		}
	})
}

// Notify never waits: with the dispatcher not running, the queue fills
// and what does not fit is dropped and counted for each receiver its
// routes name.
func TestNotifyNeverBlocks(t *testing.T) {
	c := hookConfig("http://127.0.0.1:9/")
	c.QueueSize = 2
	n, err := New(c, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 5 {
		err := n.Notify(testAlert("acme", "R", SeverityWarning, "i", strconv.Itoa(i)))
		if want := i >= 2; want != (err == ErrQueueFull) {
			t.Errorf("Notify %d: %v", i, err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("5 Notify calls took %s", d)
	}
	if got := failed(n, "hook", ReasonQueueFull); got != 3 {
		t.Errorf("dropped_queue_full = %v, want 3", got)
	}
	if err := n.Notify(Alert{Tenant: "acme"}); err == nil || !strings.Contains(err.Error(), "rule is empty") {
		t.Errorf("an invalid alert: %v", err)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(testAlert("acme", "R", SeverityWarning)); err != ErrStopped {
		t.Errorf("Notify after Stop: %v", err)
	}
}

// A destination's queue that is full drops the notification (counted)
// and the dispatcher goes on.
func TestDestinationQueueFull(t *testing.T) {
	h := newHookServer(t)
	h.block = make(chan struct{})
	c := hookConfig(h.URL)
	c.QueueSize = 1
	n := startNotifier(t, c)
	mustNotify(t, n, testAlert("acme", "R1", SeverityWarning))
	waitFor(t, 10*time.Second, "the first request, held by the server", func() bool { return len(h.got()) == 1 })
	mustNotify(t, n, testAlert("acme", "R2", SeverityWarning)) // queued behind it
	waitFor(t, 10*time.Second, "the dispatcher to take R2", func() bool { return len(n.in) == 0 })
	mustNotify(t, n, testAlert("acme", "R3", SeverityWarning)) // no room
	waitFor(t, 10*time.Second, "dropped_queue_full", func() bool { return failed(n, "hook", ReasonQueueFull) == 1 })
	close(h.block)
	waitFor(t, 10*time.Second, "R1 and R2 delivered", func() bool { return sent(n, "hook") == 2 })
}

// Stop waits stop_timeout at most for what is queued, and counts the rest.
func TestStopIsBounded(t *testing.T) {
	h := newHookServer(t)
	h.block = make(chan struct{})
	defer close(h.block)
	c := hookConfig(h.URL)
	c.StopTimeout = 200 * time.Millisecond
	n, err := New(c, Deps{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustNotify(t, n, testAlert("acme", "R1", SeverityWarning))
	waitFor(t, 10*time.Second, "the request, held by the server", func() bool { return len(h.got()) == 1 })
	start := time.Now()
	err = n.Stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Stop took %s with stop_timeout 200ms", d)
	}
	if err == nil || failed(n, "hook", ReasonShutdown) != 1 {
		t.Errorf("Stop: %v, shutdown %v; want an error and 1", err, failed(n, "hook", ReasonShutdown))
	}
}

// The verification examples of README.md, run as they are written
// against a request signed here: Python's verify() and the shell lines.
func TestREADMEVerifyExamples(t *testing.T) {
	block := func(after, lang string) string {
		t.Helper()
		return testkit.READMEBlock(t, after, lang)
	}
	receivers.RequireBinary(t, receivers.Python3, "python3")
	receivers.RequireBinary(t, "/usr/bin/openssl", "openssl")
	body := []byte(`{"version":"4","alerts":[{"labels":{"x":"ü"}}]}` + "\n")
	key := "readme-key"
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	sig := Sign([]byte(key), ts, body)
	dir := t.TempDir()
	bodyFile := filepath.Join(dir, "body.json")
	if err := os.WriteFile(bodyFile, body, 0o600); err != nil {
		t.Fatal(err)
	}
	py := block("In Python:", "python") + `
import sys
headers = {"X-Flowhouse-Timestamp": sys.argv[1], "X-Flowhouse-Signature": sys.argv[2]}
body = open(sys.argv[3], "rb").read()
print(verify(sys.argv[4].encode(), headers, body))
`
	for _, tc := range []struct {
		name, sig, key, want string
	}{{"signed", sig, key, "True"}, {"wrong key", sig, "other", "False"}, {"tampered", Sign([]byte(key), ts, []byte("{}")), key, "False"}} {
		out, err := exec.Command(receivers.Python3, "-c", py, ts, tc.sig, bodyFile, tc.key).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("python, %s: %s %v, want %s", tc.name, out, err, tc.want)
		}
	}
	sh := exec.Command("bash", "-c", block("In a shell", "sh"))
	sh.Dir = dir
	sh.Env = append(os.Environ(), "ts="+ts, "sig="+sig, "KEY="+key)
	if out, err := sh.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "valid" {
		t.Errorf("shell: %q %v, want valid", out, err)
	}
	old := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	if out, _ := exec.Command(receivers.Python3, "-c", py, old, Sign([]byte(key), old, body), bodyFile, key).CombinedOutput(); strings.TrimSpace(string(out)) != "False" {
		t.Errorf("python takes an hour-old timestamp: %s", out)
	}
}
