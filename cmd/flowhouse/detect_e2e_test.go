package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/flowgen"
	"github.com/flowhouse/flowhouse/internal/receivers"
	"github.com/flowhouse/flowhouse/notify"
)

// Detection end to end: flowgen's exporters (NetFlow v5, v9, IPFIX,
// sFlow) → the collector → the store → the rules → the alert lifecycle
// → real receivers: Debian's Alertmanager, a webhook receiver that
// checks the HMAC signature, and an aiosmtpd mail server. On both
// engines.

const webhookKey = "e2e-webhook-key"

type detectionReceivers struct {
	am      *receivers.Alertmanager
	amHook  *receivers.Hook
	webhook *receivers.Hook
	hookURL string
	smtp    *receivers.SMTP
}

func startDetectionReceivers(t *testing.T) *detectionReceivers {
	t.Helper()
	r := &detectionReceivers{amHook: &receivers.Hook{}}
	amHookServer := httptest.NewServer(r.amHook)
	t.Cleanup(amHookServer.Close)
	r.am = receivers.StartAlertmanager(t, amHookServer.URL)
	r.webhook = &receivers.Hook{Check: func(req *http.Request, body []byte) error {
		if !notify.Verify([]byte(webhookKey), req.Header, body, time.Now(), time.Minute) {
			return errors.New("bad signature")
		}
		return nil
	}}
	hookServer := httptest.NewServer(r.webhook)
	t.Cleanup(hookServer.Close)
	r.hookURL = hookServer.URL + "/flowhouse"
	r.smtp = receivers.StartSMTP(t, "plain", "unused", "unused")
	return r
}

// detectionConfig is the configuration of the test: the built-in rules
// with the overrides given, one SQL rule, and the three receivers.
func detectionConfig(r *detectionReceivers, builtin string) string {
	return fmt.Sprintf(`
rules:
  builtin:
%s
  sql:
    - name: heavy_destination
      interval: 2s
      tenants: [default]
      subject: [dst]
      annotations:
        summary: "{{.Labels.dst}} receives {{.Value}} bit/s"
      query: |
        SELECT IPv6NumToString(dst_address) AS dst, sum(bytes * sampling_rate) * 8 / 10 AS value
        FROM flows
        WHERE time_received >= now() - 10 AND IPv6NumToString(dst_address) = '::ffff:%s'
        GROUP BY dst
        HAVING value > 0
notify:
  external_url: http://127.0.0.1/flowhouse
  receivers:
    - name: am
      alertmanager:
        urls: [%s]
        resend_interval: 2s
    - name: hook
      webhook:
        url: %s
        hmac_key: %s
    - name: mail
      smtp:
        smarthost: %s
        tls: none
        from: flowhouse <alerts@example.org>
        to: [ops@example.org]
  routes:
    - receivers: [am, hook, mail]
      group_wait: 1s
      group_interval: 2s
`, builtin, flowgen.AmplificationVictim, r.am.URL, r.hookURL, webhookKey, r.smtp.Addr)
}

// runFlowgen sends flowgen's mix with the scenarios given to the
// server's first listener, in the background; wait waits for the end.
func runFlowgen(t *testing.T, s *server, rate float64, d time.Duration, scenarios string) (wait func() *flowgen.Report) {
	t.Helper()
	cfg := flowgen.DefaultConfig()
	cfg.Target = s.listeners[0]
	cfg.Rate, cfg.Duration = rate, d
	cfg.ScenarioShare = 0.5
	var err error
	if cfg.Scenarios, err = flowgen.ParseScenarios(scenarios, 0, 0); err != nil {
		t.Fatal(err)
	}
	g, err := flowgen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	var rep *flowgen.Report
	var runErr error
	done := make(chan struct{})
	go func() { defer close(done); rep, runErr = g.Run(ctx) }()
	var once sync.Once
	wait = func() *flowgen.Report {
		once.Do(func() {
			<-done
			cancel()
			if runErr != nil {
				t.Fatalf("flowgen: %v", runErr)
			}
		})
		return rep
	}
	t.Cleanup(func() { cancel(); <-done })
	return wait
}

// alertsOf lists the alerts of a rule, newest first.
func alertsOf(t *testing.T, s *server, rule string) []alerts.Alert {
	t.Helper()
	list, err := alerts.NewReader(s.db).List(context.Background(), alerts.Filter{AllTenants: true, Rule: rule, Limit: alerts.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// about reports whether an alert's subject names addr.
func about(a alerts.Alert, addr string) bool {
	for _, v := range a.Subject {
		if v == addr {
			return true
		}
	}
	return false
}

// firstReceived is when the first flow to or from addr was received.
func firstReceived(t *testing.T, s *server, addr string) time.Time {
	t.Helper()
	rows, err := s.db.Query(context.Background(), `SELECT min(time_received) FROM flows
		WHERE IPv6NumToString(dst_address) = ? OR IPv6NumToString(src_address) = ?`, "::ffff:"+addr, "::ffff:"+addr)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var first time.Time
	if !rows.Next() {
		t.Fatalf("no flows of %s", addr)
	}
	if err := rows.Scan(&first); err != nil {
		t.Fatal(err)
	}
	return first
}

func TestEndToEndDetection(t *testing.T) {
	for _, engine := range []string{"server", "embedded"} {
		t.Run(engine, func(t *testing.T) { testDetection(t, engine) })
	}
}

func testDetection(t *testing.T, engine string) {
	r := startDetectionReceivers(t)
	s := startServerWith(t, engine, detectionConfig(r, "    {}"))
	const attack = 25 * time.Second
	wait := runFlowgen(t, s, 3000, 5*time.Second+attack, fmt.Sprintf("amplification@5s+%s", attack))
	victim := flowgen.AmplificationVictim.String()

	var fired alerts.Alert
	receivers.WaitFor(t, 60*time.Second, "the SQL rule's alert firing", func() bool {
		for _, a := range alertsOf(t, s, "heavy_destination") {
			if a.Status == alerts.StatusFiring && a.Subject["dst"] == victim {
				fired = a
				return true
			}
		}
		return false
	})
	t.Logf("heavy_destination fired %s after the first attack flow was received (%s)",
		fired.FiredAt.Sub(firstReceived(t, s, victim)), fired.Annotations["summary"])
	receivers.WaitFor(t, 30*time.Second, "the alert in Alertmanager", func() bool {
		return slices.ContainsFunc(r.am.Alerts(t), func(g receivers.GettableAlert) bool {
			return g.Labels["alertname"] == "heavy_destination" && g.Labels["dst"] == victim && g.Labels["tenant"] == "default"
		})
	})
	receivers.WaitFor(t, 30*time.Second, "Alertmanager's own notification", func() bool { return r.amHook.WithStatus("firing") != nil })
	receivers.WaitFor(t, 30*time.Second, "a signed webhook notification", func() bool { return webhookAlert(r.webhook, "firing", victim) })
	receivers.WaitFor(t, 30*time.Second, "a mail", func() bool { return mailAbout(t, r.smtp, "FIRING", victim) })

	wait()
	receivers.WaitFor(t, 90*time.Second, "the alert resolved once the attack stopped", func() bool {
		list := alertsOf(t, s, "heavy_destination")
		return len(list) > 0 && list[0].ID == fired.ID && list[0].Status == alerts.StatusResolved
	})
	receivers.WaitFor(t, 30*time.Second, "the alert resolved in Alertmanager", func() bool {
		return !slices.ContainsFunc(r.am.Alerts(t), func(g receivers.GettableAlert) bool { return g.Labels["alertname"] == "heavy_destination" })
	})
	receivers.WaitFor(t, 30*time.Second, "a resolved webhook notification", func() bool { return webhookAlert(r.webhook, "resolved", victim) })
	receivers.WaitFor(t, 30*time.Second, "a resolved mail", func() bool { return mailAbout(t, r.smtp, "RESOLVED", victim) })
}

// webhookAlert reports whether the webhook got a payload of that status
// holding an alert about addr (each payload passed the HMAC check).
func webhookAlert(h *receivers.Hook, status, addr string) bool {
	for _, p := range h.Payloads() {
		if p["status"] != status || p["version"] != "4" {
			continue
		}
		as, _ := p["alerts"].([]any)
		for _, a := range as {
			m, _ := a.(map[string]any)
			labels, _ := m["labels"].(map[string]any)
			if m["status"] == status && labels["dst"] == addr && m["fingerprint"] != "" {
				return true
			}
		}
	}
	return false
}

func mailAbout(t *testing.T, s *receivers.SMTP, status, addr string) bool {
	_, msgs := s.Records(t)
	for _, m := range msgs {
		if strings.Contains(m.Data, "Subject: ["+status) && strings.Contains(m.Data, addr) {
			return true
		}
	}
	return false
}
