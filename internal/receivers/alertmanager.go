package receivers

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// AlertmanagerBin is Debian's prometheus-alertmanager (0.25 on bookworm).
const AlertmanagerBin = "/usr/bin/prometheus-alertmanager"

// Alertmanager is a real Alertmanager started by a test.
type Alertmanager struct {
	URL string
}

// StartAlertmanager runs Alertmanager on a free loopback port with its
// own configuration and storage under t.TempDir(), clustering off
// (--cluster.listen-address= empty: no gossip port on every address).
// It notifies hookURL, with Alertmanager's own webhook, grouping by
// alertname with short timings.
func StartAlertmanager(t *testing.T, hookURL string) *Alertmanager {
	t.Helper()
	RequireBinary(t, AlertmanagerBin, "prometheus-alertmanager")
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
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	d := StartDaemon(t, "alertmanager "+addr, AlertmanagerBin,
		"--config.file="+confFile,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--web.external-url=http://"+addr,
		"--cluster.listen-address=",
		"--log.level=warn")
	am := &Alertmanager{URL: "http://" + addr}
	WaitFor(t, 20*time.Second, "alertmanager ready on "+addr, func() bool {
		if d.Exited() {
			t.Fatalf("alertmanager exited: %s", d.Output())
		}
		resp, err := http.Get(am.URL + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return am
}

// GettableAlert is what GET /api/v2/alerts lists (the fields looked at).
type GettableAlert struct {
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

// Alerts lists the alerts Alertmanager holds.
func (am *Alertmanager) Alerts(t testing.TB) []GettableAlert {
	t.Helper()
	resp, err := http.Get(am.URL + "/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []GettableAlert
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Hook keeps the JSON payloads posted to it (Alertmanager's webhook, or
// flowhouse's own). Serve it with httptest.NewServer.
type Hook struct {
	mu       sync.Mutex
	payloads []map[string]any
	// Check, when set, is called with each request and its body; a
	// non-nil error answers 400 and the payload is not kept.
	Check func(r *http.Request, body []byte) error
}

func (h *Hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if h.Check != nil {
		if err := h.Check(r, body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	var m map[string]any
	if json.Unmarshal(body, &m) == nil {
		h.mu.Lock()
		h.payloads = append(h.payloads, m)
		h.mu.Unlock()
	}
}

// Payloads are the payloads kept so far.
func (h *Hook) Payloads() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.payloads...)
}

// WithStatus is the first payload of that status ("firing", "resolved").
func (h *Hook) WithStatus(status string) map[string]any {
	for _, p := range h.Payloads() {
		if p["status"] == status {
			return p
		}
	}
	return nil
}
