package notify

import (
	"github.com/flowhouse/flowhouse/internal/receivers"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	smtpUser     = "flowhouse"
	smtpPassword = "s3cret-pw"
)

type (
	smtpServer = receivers.SMTP
	smtpRecord = receivers.SMTPRecord
)

func startSMTP(t *testing.T, mode string) *smtpServer {
	return receivers.StartSMTP(t, mode, smtpUser, smtpPassword)
}

func smtpConfig(s *smtpServer, tls string) Config {
	c := fastConfig()
	c.ExternalURL = "https://flowhouse.example/ui"
	c.Receivers = []ReceiverConfig{{Name: "mail", SMTP: SMTPConfig{
		Smarthost: s.Addr, TLS: tls, CAFile: s.CAFile, Hello: "flowhouse.test",
		From: "flowhouse <alerts@example.org>", To: []string{"Ops <ops@example.org>", "noc@example.net"},
		Username: smtpUser, Password: smtpPassword,
	}}}
	c.Routes = []RouteConfig{{Receivers: []string{"mail"}, GroupWait: 50 * time.Millisecond, GroupInterval: 100 * time.Millisecond}}
	return c
}

// readMessage parses a received message and decodes its body.
func readMessage(t *testing.T, data string) (*mail.Message, string) {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(data))
	if err != nil {
		t.Fatalf("message does not parse: %v\n%s", err, data)
	}
	var r io.Reader = m.Body
	if m.Header.Get("Content-Transfer-Encoding") == "quoted-printable" {
		r = quotedprintable.NewReader(m.Body)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return m, string(b)
}

// A real SMTP server, aiosmtpd, with each transport: STARTTLS then AUTH
// (PLAIN chosen from what the server offers, or LOGIN as configured),
// implicit TLS then AUTH, and plain SMTP on loopback. The message's
// envelope, headers and body are checked as the server received them.
func TestSMTP(t *testing.T) {
	for _, tc := range []struct {
		name, mode, tls, auth string
		wantMechanism         string
	}{
		{"starttls, auth offered", "starttls", TLSStartTLS, "", "PLAIN"},
		{"starttls, auth login", "starttls", TLSStartTLS, "login", "LOGIN"},
		{"smtps, auth plain", "smtps", TLSImplicit, "plain", "PLAIN"},
		{"plain on loopback, no auth", "plain", TLSNone, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startSMTP(t, tc.mode)
			c := smtpConfig(s, tc.tls)
			c.Receivers[0].SMTP.Auth = tc.auth
			if tc.mode == "plain" {
				c.Receivers[0].SMTP.Username, c.Receivers[0].SMTP.Password = "", ""
			}
			n := startNotifier(t, c)
			a1 := testAlert("acme", "HighTraffic", SeverityWarning, "dst_addr", "192.0.2.7")
			a1.Annotations[AnnotationSummary] = "Débit élevé vers 192.0.2.7"
			a1.Annotations[AnnotationDescription] = "3.2 Gbit/s, baseline 40 Mbit/s"
			a2 := testAlert("acme", "HighTraffic", SeverityCritical, "dst_addr", "192.0.2.8")
			a2.StartsAt = t0.Add(time.Second)
			before := time.Now().Add(-time.Second)
			mustNotify(t, n, a1)
			mustNotify(t, n, a2)
			var msgs []smtpRecord
			waitFor(t, 20*time.Second, "the message at the server", func() bool { _, msgs = s.Records(t); return len(msgs) >= 1 })
			got := msgs[0]
			if got.From != "alerts@example.org" || strings.Join(got.To, ",") != "ops@example.org,noc@example.net" {
				t.Errorf("envelope from %q to %q", got.From, got.To)
			}
			if wantTLS := tc.mode != "plain"; got.TLS != wantTLS {
				t.Errorf("tls %v, want %v", got.TLS, wantTLS)
			}
			if tc.wantMechanism != "" && (got.User != smtpUser || got.Mechanism != tc.wantMechanism) {
				t.Errorf("authenticated as %q with %q, want %q with %s", got.User, got.Mechanism, smtpUser, tc.wantMechanism)
			}
			m, body := readMessage(t, got.Data)
			h := m.Header
			date, err := h.Date()
			if err != nil || date.Before(before) || date.After(time.Now().Add(time.Second)) {
				t.Errorf("Date %q: %v", h.Get("Date"), err)
			}
			if id := h.Get("Message-ID"); !regexp.MustCompile(`^<[0-9a-f]{24}\.\d+@example\.org>$`).MatchString(id) {
				t.Errorf("Message-ID %q", id)
			}
			for k, want := range map[string]string{
				"From":                      `"flowhouse" <alerts@example.org>`,
				"To":                        `"Ops" <ops@example.org>, <noc@example.net>`,
				"MIME-Version":              "1.0",
				"Content-Type":              "text/plain; charset=utf-8",
				"Content-Transfer-Encoding": "quoted-printable",
				"Auto-Submitted":            "auto-generated",
				"X-Flowhouse-Tenant":        "acme",
			} {
				if h.Get(k) != want {
					t.Errorf("%s: %q, want %q", k, h.Get(k), want)
				}
			}
			subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
			if want := "[FIRING:2] critical: HighTraffic (tenant acme)"; err != nil || subject != want {
				t.Errorf("Subject %q (%v), want %q", subject, err, want)
			}
			for _, want := range []string{
				"2 firing, 0 resolved: HighTraffic, tenant acme.",
				"[FIRING] warning HighTraffic\nSummary: Débit élevé vers 192.0.2.7\nDescription: 3.2 Gbit/s, baseline 40 Mbit/s\nStarted: 2026-12-01T12:00:00Z\n",
				"Labels:\n  alertname = HighTraffic\n  dst_addr = 192.0.2.7\n  severity = warning\n  tenant = acme\n",
				"[FIRING] critical HighTraffic\nSummary: HighTraffic on acme\nStarted: 2026-12-01T12:00:01Z\n",
				"Source: http://flowhouse.example/rules/HighTraffic\n",
				"Fingerprint: " + Fingerprint(a1.LabelSet()) + "\n",
				"flowhouse: https://flowhouse.example/ui\n",
				`Group: {}/0:{alertname="HighTraffic", tenant="acme"}`,
			} {
				if !strings.Contains(strings.ReplaceAll(body, "\r\n", "\n"), want) {
					t.Errorf("body lacks %q:\n%s", want, body)
				}
			}
			if tc.mode != "starttls" || tc.auth != "" {
				return
			}
			// The resolve: a second message.
			end := time.Now().UTC().Truncate(time.Second)
			mustNotify(t, n, resolvedAt(a1, end))
			mustNotify(t, n, resolvedAt(a2, end))
			waitFor(t, 20*time.Second, "the resolved message", func() bool { _, msgs = s.Records(t); return len(msgs) >= 2 })
			m, body = readMessage(t, msgs[1].Data)
			subject, _ = new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
			if want := "[RESOLVED:2] critical: HighTraffic (tenant acme)"; subject != want {
				t.Errorf("Subject %q, want %q", subject, want)
			}
			if !strings.Contains(body, "Ended: "+end.Format(time.RFC3339)) {
				t.Errorf("resolved body lacks the end:\n%s", body)
			}
			if m.Header.Get("Message-ID") == h.Get("Message-ID") {
				t.Error("two messages with one Message-ID")
			}
			waitFor(t, 10*time.Second, "sent", func() bool { return sent(n, "mail") == 2 })
		})
	}
}

// A wrong password is refused by the server (535): counted once as smtp,
// not retried, nothing delivered.
func TestSMTPWrongPassword(t *testing.T) {
	s := startSMTP(t, "starttls")
	c := smtpConfig(s, TLSStartTLS)
	c.Receivers[0].SMTP.Password = "wrong"
	n := startNotifier(t, c)
	mustNotify(t, n, testAlert("acme", "R", SeverityWarning))
	waitFor(t, 20*time.Second, "the failure counted", func() bool { return failed(n, "mail", ReasonSMTP) == 1 })
	// A second notification goes through the same worker: when it has
	// been attempted, the first will not be retried any more.
	mustNotify(t, n, testAlert("acme", "S", SeverityWarning))
	waitFor(t, 20*time.Second, "the second failure", func() bool { return failed(n, "mail", ReasonSMTP) == 2 })
	auths, msgs := s.Records(t)
	if len(auths) != 2 || auths[0].OK || auths[0].User != smtpUser {
		t.Errorf("AUTH attempts at the server: %+v, want 2 refused", auths)
	}
	if len(msgs) != 0 || sent(n, "mail") != 0 || failed(n, "mail", ReasonGaveUp) != 0 {
		t.Errorf("%d messages, sent %v, gave_up %v", len(msgs), sent(n, "mail"), failed(n, "mail", ReasonGaveUp))
	}
}

// STARTTLS is required by default: a server that does not offer it gets
// nothing, not even the password, and the failure is counted as tls.
func TestSMTPRequiresSTARTTLS(t *testing.T) {
	s := startSMTP(t, "plain")
	n := startNotifier(t, smtpConfig(s, TLSStartTLS))
	mustNotify(t, n, testAlert("acme", "R", SeverityWarning))
	waitFor(t, 20*time.Second, "the failure counted", func() bool { return failed(n, "mail", ReasonTLS) == 1 })
	if auths, msgs := s.Records(t); len(auths)+len(msgs) != 0 {
		t.Errorf("the server got %v %v", auths, msgs)
	}
}

// A certificate the client does not trust is refused, not retried.
func TestSMTPUntrustedCertificate(t *testing.T) {
	s := startSMTP(t, "starttls")
	c := smtpConfig(s, TLSStartTLS)
	c.Receivers[0].SMTP.CAFile = ""
	n := startNotifier(t, c)
	mustNotify(t, n, testAlert("acme", "R", SeverityWarning))
	waitFor(t, 20*time.Second, "the failure counted", func() bool { return failed(n, "mail", ReasonTLS) == 1 })
	if failed(n, "mail", ReasonGaveUp) != 0 {
		t.Error("a certificate error was retried")
	}
}

// Labels and annotations come from rules (SQL rules: from query
// results): a line break in them must not make a header.
func TestSMTPHeaderInjection(t *testing.T) {
	s, err := newSMTPSender(SMTPConfig{Smarthost: "127.0.0.1:25", TLS: TLSNone, From: "alerts@example.org", To: []string{"ops@example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	a := testAlert("acme\r\nBcc: evil@example.org", "R\r\nBcc: evil@example.org", SeverityWarning)
	p := a.prepared(t0)
	x := &notification{groupKey: "k", tenant: p.Tenant, status: StatusFiring, created: t0,
		groupLabels: map[string]string{LabelAlertname: p.Rule, LabelTenant: p.Tenant}, alerts: []*Alert{p}}
	m, _ := readMessage(t, string(s.message(x, "", "id")))
	if len(m.Header["Bcc"]) != 0 {
		t.Errorf("a label made a Bcc header: %v", m.Header)
	}
	if !strings.Contains(m.Header.Get("Subject"), "Bcc: evil") {
		t.Errorf("Subject %q lost the rule's text", m.Header.Get("Subject"))
	}
}
