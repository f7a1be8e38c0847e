package notify

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultConfigValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := dispatchConfig(RouteConfig{Receivers: []string{"hook", "mail", "am"}}).Validate(); err != nil {
		t.Fatal(err)
	}
	r := RouteConfig{}.withDefaults()
	if r.GroupWait != 30*time.Second || r.GroupInterval != 5*time.Minute || r.RepeatInterval != 4*time.Hour ||
		r.MinSeverity != "info" || len(r.GroupBy) != 1 || r.GroupBy[0] != "alertname" || !r.SendResolved.Or(true) {
		t.Errorf("route defaults: %+v", r)
	}
}

// Every mistake is reported with the key to fix, and secrets never.
func TestConfigValidate(t *testing.T) {
	smtp := func(edit func(*SMTPConfig)) func(*Config) {
		return func(c *Config) { edit(&c.Receivers[1].SMTP) }
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"queue", func(c *Config) { c.QueueSize = 0 }, "queue_size: 0 is outside 1..1000000"},
		{"timeout", func(c *Config) { c.Timeout = 0 }, "timeout: 0s is outside"},
		{"retry initial", func(c *Config) { c.Retry.Initial = 0 }, "retry.initial: 0s must be positive"},
		{"retry max", func(c *Config) { c.Retry.Max = time.Millisecond }, "retry.max: 1ms is shorter than retry.initial"},
		{"attempts", func(c *Config) { c.Retry.MaxAttempts = 0 }, "retry.max_attempts: 0 must be at least 1"},
		{"max age", func(c *Config) { c.Retry.MaxAge = 0 }, "retry.max_age: 0s must be positive"},
		{"stop", func(c *Config) { c.StopTimeout = 0 }, "stop_timeout: 0s must be positive"},
		{"external url", func(c *Config) { c.ExternalURL = "flowhouse.example" }, "external_url: \"flowhouse.example\" is not an http or https URL"},
		{"receiver name", func(c *Config) { c.Receivers[0].Name = "" }, "receivers[0].name: required"},
		{"receiver name chars", func(c *Config) { c.Receivers[0].Name = "a b" }, "receivers[0].name: \"a b\" must be"},
		{"receiver twice", func(c *Config) { c.Receivers[1].Name = "hook" }, "receivers[1].name: \"hook\" is the name of another receiver"},
		{"receiver kindless", func(c *Config) { c.Receivers[0].Webhook = WebhookConfig{} }, "receivers[0]: set one of alertmanager, webhook or smtp"},
		{"receiver two kinds", func(c *Config) { c.Receivers[0].Alertmanager.URLs = []string{"http://a:9093"} }, "receivers[0]: alertmanager and webhook are set; a receiver is of one kind"},
		{"am urls", func(c *Config) {
			c.Receivers[2].Alertmanager.URLs = nil
			c.Receivers[2].Alertmanager.ResendInterval = time.Minute
		}, "receivers[2].alertmanager.urls: at least one"},
		{"am url", func(c *Config) { c.Receivers[2].Alertmanager.URLs = []string{"am:9093"} }, "receivers[2].alertmanager.urls[0]: \"am:9093\" is not an http or https URL"},
		{"am url twice", func(c *Config) {
			c.Receivers[2].Alertmanager.URLs = []string{"http://a:9093", "http://a:9093/"}
		}, "receivers[2].alertmanager.urls[1]: \"http://a:9093/\" is listed twice"},
		{"am resend", func(c *Config) { c.Receivers[2].Alertmanager.ResendInterval = time.Millisecond }, "receivers[2].alertmanager.resend_interval: 1ms is shorter than 1s"},
		{"webhook key", func(c *Config) { c.Receivers[0].Webhook.HMACKey = "" }, "receivers[0].webhook.hmac_key: required"},
		{"webhook user info", func(c *Config) { c.Receivers[0].Webhook.URL = "https://u:hunter2@hooks.example/x" }, "holds user information"},
		{"webhook tenant url", func(c *Config) {
			c.Receivers[0].Webhook.Tenants = []WebhookTenantConfig{{Tenant: "acme", URL: "ftp://x"}}
		}, "receivers[0].webhook.tenants[0].url: \"ftp://x\" is not an http or https URL"},
		{"webhook tenant key", func(c *Config) {
			c.Receivers[0].Webhook = WebhookConfig{Tenants: []WebhookTenantConfig{{Tenant: "acme", URL: "https://x/"}}}
		}, "receivers[0].webhook.tenants[0].hmac_key: required"},
		{"webhook tenant twice", func(c *Config) {
			c.Receivers[0].Webhook.Tenants = []WebhookTenantConfig{{Tenant: "acme", URL: "https://x/"}, {Tenant: "acme", URL: "https://y/"}}
		}, "receivers[0].webhook.tenants[1].tenant: \"acme\" is listed twice"},
		{"smtp host", smtp(func(s *SMTPConfig) { s.Smarthost = "mail.example" }), "receivers[1].smtp.smarthost: \"mail.example\" is not host:port"},
		{"smtp tls", smtp(func(s *SMTPConfig) { s.TLS = "ssl" }), "receivers[1].smtp.tls: \"ssl\" is not starttls, smtps or none"},
		{"smtp plain remote", smtp(func(s *SMTPConfig) { s.Smarthost = "mail.example:25" }), "receivers[1].smtp.tls: none sends mail and password in clear, so it is allowed only to a loopback smarthost"},
		{"smtp from", smtp(func(s *SMTPConfig) { s.From = "alerts" }), "receivers[1].smtp.from: \"alerts\" is not a mail address"},
		{"smtp to", smtp(func(s *SMTPConfig) { s.To = nil }), "receivers[1].smtp.to: at least one recipient"},
		{"smtp to addr", smtp(func(s *SMTPConfig) { s.To = []string{"ops@example.org", "x\r\nBcc: y@example.org"} }), "receivers[1].smtp.to[1]"},
		{"smtp password without user", smtp(func(s *SMTPConfig) { s.Password = "hunter2" }), "receivers[1].smtp.username: required with a password"},
		{"smtp user without password", smtp(func(s *SMTPConfig) { s.Username = "u" }), "receivers[1].smtp.password: required with a username"},
		{"smtp auth", smtp(func(s *SMTPConfig) { s.Username, s.Password, s.Auth = "u", "hunter2", "cram-md5" }), "receivers[1].smtp.auth: \"cram-md5\" is not plain or login"},
		{"smtp hello", smtp(func(s *SMTPConfig) { s.Hello = "a b" }), "receivers[1].smtp.hello"},
		{"route receivers", func(c *Config) { c.Routes[0].Receivers = nil }, "routes[0].receivers: at least one receiver is required"},
		{"route unknown receiver", func(c *Config) { c.Routes[0].Receivers = []string{"pager"} }, "routes[0].receivers[0]: \"pager\" is not the name of a receiver"},
		{"route receiver twice", func(c *Config) { c.Routes[0].Receivers = []string{"hook", "hook"} }, "routes[0].receivers[1]: \"hook\" is listed twice"},
		{"route severity", func(c *Config) { c.Routes[0].MinSeverity = "major" }, "routes[0].min_severity: \"major\" is not critical, error, warning or info"},
		{"route tenant", func(c *Config) { c.Routes[0].Tenants = []string{""} }, "routes[0].tenants[0]: empty"},
		{"route group_by", func(c *Config) { c.Routes[0].GroupBy = []string{"dst-addr"} }, "routes[0].group_by[0]: \"dst-addr\" is not a label name"},
		{"route group_by twice", func(c *Config) { c.Routes[0].GroupBy = []string{"a", "a"} }, "routes[0].group_by[1]: \"a\" is listed twice"},
		{"route negative", func(c *Config) { c.Routes[0].GroupWait = -time.Second }, "routes[0].group_wait: -1s is negative"},
		{"route repeat", func(c *Config) { c.Routes[0].RepeatInterval = time.Millisecond }, "routes[0].repeat_interval: 1ms is shorter than 1s"},
	} {
		c := dispatchConfig(RouteConfig{Receivers: []string{"hook"}})
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to say %q", tc.name, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows a secret: %v", tc.name, err)
		}
		if _, err := New(c, Deps{}); err == nil {
			t.Errorf("%s: New took a configuration Validate refuses", tc.name)
		}
	}
}

func TestToggle(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Toggle
	}{{"", Unset}, {"true", On}, {"false", Off}, {"TRUE", On}} {
		var got Toggle
		if err := got.UnmarshalText([]byte(tc.in)); err != nil || got != tc.want {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		b, _ := got.MarshalText()
		var back Toggle
		if err := back.UnmarshalText(b); err != nil || back != got {
			t.Errorf("%v does not round-trip through %q", got, b)
		}
	}
	var bad Toggle
	if err := bad.UnmarshalText([]byte("yes")); err == nil {
		t.Error("yes taken as a toggle")
	}
	if !Unset.Or(true) || Unset.Or(false) || Off.Or(true) || !On.Or(false) {
		t.Error("Or")
	}
}

// check-config prints every key, empty lists too ("urls: []"): loaded
// back, a receiver is still of one kind.
func TestReceiverKindIgnoresEmptyLists(t *testing.T) {
	r := ReceiverConfig{Name: "mail",
		Alertmanager: AlertmanagerConfig{URLs: []string{}},
		Webhook:      WebhookConfig{Tenants: []WebhookTenantConfig{}},
		SMTP:         SMTPConfig{Smarthost: "127.0.0.1:25", TLS: TLSNone, From: "a@example.org", To: []string{"b@example.org"}}}
	if kind, set := r.kind(); kind != KindSMTP {
		t.Errorf("kind %q (set: %v), want smtp", kind, set)
	}
}
