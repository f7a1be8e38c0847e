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
	return startFlowgen(t, cfg)
}

// startFlowgen runs flowgen with cfg in the background; wait waits for
// its end and its report.
func startFlowgen(t *testing.T, cfg flowgen.Config) (wait func() *flowgen.Report) {
	t.Helper()
	g, err := flowgen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration+time.Minute)
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

// testBuiltin shortens the windows and lowers the packet-rate floors to
// the scale of a test (a few thousand flows/s on two cores shared with
// the engine), and resolves at once (keep_firing_for 0), so that each
// attack fires and resolves within a minute. Classification (ports,
// flags, sources, packet sizes) is at its defaults.
const testBuiltin = `
    amplification: {keep_firing_for: "0", params: {window: 20s}}
    syn_flood: {keep_firing_for: "0", params: {window: 20s, min_pps: 100}}
    udp_flood: {keep_firing_for: "0", params: {window: 20s, min_pps: 100}}
    icmp_flood: {keep_firing_for: "0", params: {window: 20s, min_pps: 100}}
    port_scan: {keep_firing_for: "0", params: {window: 20s}}
    host_scan: {keep_firing_for: "0", params: {window: 20s}}`

// attacks are flowgen's scenarios, the rule that must name each, and the
// address its alert is about.
var attacks = []struct {
	scenario, rule, class string
	subject               string
}{
	{"amplification", "amplification", "reflection", flowgen.AmplificationVictim.String()},
	{"synflood", "syn_flood", "syn_flood", flowgen.SYNFloodTarget.Addr().String()},
	{"udpflood", "udp_flood", "udp_flood", flowgen.UDPFloodVictim.String()},
	{"icmpflood", "icmp_flood", "icmp_flood", flowgen.ICMPFloodVictim.String()},
	{"portscan", "port_scan", "port_scan", flowgen.PortScanSource.String()},
	{"hostscan", "host_scan", "host_scan", flowgen.HostScanSource.String()},
}

func testDetection(t *testing.T, engine string) {
	r := startDetectionReceivers(t)
	s := startServerWith(t, engine, detectionConfig(r, testBuiltin))
	const attack = 30 * time.Second
	var scenarios []string
	for _, a := range attacks {
		scenarios = append(scenarios, fmt.Sprintf("%s@5s+%s", a.scenario, attack))
	}
	scenarios = append(scenarios, fmt.Sprintf("bulk@5s+%s", attack)) // the negative control
	wait := runFlowgen(t, s, 6000, 5*time.Second+attack, strings.Join(scenarios, ","))

	fired := map[string]alerts.Alert{}
	receivers.WaitFor(t, 60*time.Second, "every attack's alert firing", func() bool {
		for _, a := range attacks {
			if _, ok := fired[a.rule]; ok {
				continue
			}
			for _, x := range alertsOf(t, s, a.rule) {
				if x.Status == alerts.StatusFiring && about(x, a.subject) {
					fired[a.rule] = x
				}
			}
		}
		return len(fired) == len(attacks)
	})
	for _, a := range attacks {
		x := fired[a.rule]
		if !strings.Contains(x.Annotations["classification"], a.class) {
			t.Errorf("%s: classification %q, want %q (%s)", a.rule, x.Annotations["classification"], a.class, x.Annotations["summary"])
		}
		t.Logf("%s fired %s after its first flow was received: %s", a.rule, x.FiredAt.Sub(firstReceived(t, s, a.subject)), x.Annotations["summary"])
	}
	checkNotifications(t, r, flowgen.AmplificationVictim.String())

	wait()
	receivers.WaitFor(t, 90*time.Second, "every alert resolved once the attacks stopped", func() bool {
		for _, a := range attacks {
			for _, x := range alertsOf(t, s, a.rule) {
				if x.ID == fired[a.rule].ID && x.Status != alerts.StatusResolved {
					return false
				}
			}
		}
		return true
	})
	checkResolvedNotifications(t, r, flowgen.AmplificationVictim.String())
	checkNothingAbove(t, s, notify.SeverityInfo, flowgen.BulkServer.Addr().String(), flowgen.BulkClient.Addr().String())
	checkOnlyExpected(t, s)
}

// checkNotifications: the SQL rule's alert about victim reached every
// receiver.
func checkNotifications(t *testing.T, r *detectionReceivers, victim string) {
	t.Helper()
	receivers.WaitFor(t, 30*time.Second, "the alert in Alertmanager", func() bool {
		return slices.ContainsFunc(r.am.Alerts(t), func(g receivers.GettableAlert) bool {
			return g.Labels["alertname"] == "heavy_destination" && g.Labels["dst"] == victim && g.Labels["tenant"] == "default"
		})
	})
	receivers.WaitFor(t, 30*time.Second, "Alertmanager's own notification", func() bool { return r.amHook.WithStatus("firing") != nil })
	receivers.WaitFor(t, 30*time.Second, "a signed webhook notification", func() bool { return webhookAlert(r.webhook, "firing", victim) })
	receivers.WaitFor(t, 30*time.Second, "a mail", func() bool { return mailAbout(t, r.smtp, "FIRING", victim) })
}

func checkResolvedNotifications(t *testing.T, r *detectionReceivers, victim string) {
	t.Helper()
	receivers.WaitFor(t, 60*time.Second, "the alerts resolved in Alertmanager", func() bool {
		return !slices.ContainsFunc(r.am.Alerts(t), func(g receivers.GettableAlert) bool { return g.Labels["alertname"] == "heavy_destination" })
	})
	receivers.WaitFor(t, 30*time.Second, "a resolved webhook notification", func() bool { return webhookAlert(r.webhook, "resolved", victim) })
	receivers.WaitFor(t, 30*time.Second, "a resolved mail", func() bool { return mailAbout(t, r.smtp, "RESOLVED", victim) })
}

// checkNothingAbove: no alert above sev names any of addrs (the bulk
// transfer is not an attack).
func checkNothingAbove(t *testing.T, s *server, sev notify.Severity, addrs ...string) {
	t.Helper()
	list, err := alerts.NewReader(s.db).List(context.Background(), alerts.Filter{AllTenants: true, Limit: alerts.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range list {
		for _, addr := range addrs {
			if about(a, addr) && a.Severity != sev {
				t.Errorf("the bulk transfer raised %s %s: %s", a.Severity, a.Rule, a.Annotations["summary"])
			}
		}
	}
}

// checkOnlyExpected: every alert of an attack rule is about an attack of
// that rule (no rule fired on another scenario or on the background).
func checkOnlyExpected(t *testing.T, s *server) {
	t.Helper()
	for _, a := range attacks {
		for _, x := range alertsOf(t, s, a.rule) {
			if !about(x, a.subject) {
				t.Errorf("%s also fired on %v: %s", a.rule, x.Subject, x.Annotations["summary"])
			}
		}
	}
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
