package notify

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/internal/loopback"
)

// Config of notifications: where alerts go (receivers), which alerts go
// where and how they are batched (routes), and how deliveries are retried.
// It is the "notify" section of the configuration.
//
// Routes and receivers are lists: an entry of a list starts from zero
// values, and a zero duration (or an unset send_resolved) takes the
// default documented on its key.
type Config struct {
	// ExternalURL is flowhouse's address as people reach it: the link in
	// mails and the webhook's externalURL. Empty: no link but the alert's
	// own generator URL.
	ExternalURL string `mapstructure:"external_url" yaml:"external_url"`
	// QueueSize bounds the alerts waiting for the dispatcher, and the
	// notifications waiting for each destination (one Alertmanager, one
	// webhook URL, one mail server); past it they are dropped and counted
	// (reason dropped_queue_full) rather than blocking rule evaluation.
	QueueSize int `mapstructure:"queue_size" yaml:"queue_size"`
	// Timeout bounds one delivery attempt (connect, send, answer).
	Timeout time.Duration `mapstructure:"timeout" yaml:"timeout"`
	// Retry of a failed delivery.
	Retry RetryConfig `mapstructure:"retry" yaml:"retry"`
	// StopTimeout bounds delivering what is queued when flowhouse stops.
	StopTimeout time.Duration `mapstructure:"stop_timeout" yaml:"stop_timeout"`
	// Receivers are the destinations, each of one kind.
	Receivers []ReceiverConfig `mapstructure:"receivers" yaml:"receivers"`
	// Routes send alerts to receivers; they are tried in order and the
	// first that matches wins, unless it has continue: true.
	Routes []RouteConfig `mapstructure:"routes" yaml:"routes"`
}

// RetryConfig is the backoff of a failed delivery: waits double from
// Initial up to Max (with jitter, store.Backoff); a delivery is given up
// after MaxAttempts attempts or when it is older than MaxAge.
type RetryConfig struct {
	Initial     time.Duration `mapstructure:"initial" yaml:"initial"`
	Max         time.Duration `mapstructure:"max" yaml:"max"`
	MaxAttempts int           `mapstructure:"max_attempts" yaml:"max_attempts"`
	MaxAge      time.Duration `mapstructure:"max_age" yaml:"max_age"`
}

// ReceiverConfig is one destination. Exactly one of Alertmanager, Webhook
// and SMTP is set; it is the receiver's kind.
type ReceiverConfig struct {
	// Name is what routes refer to, and the receiver label of metrics.
	Name         string             `mapstructure:"name" yaml:"name"`
	Alertmanager AlertmanagerConfig `mapstructure:"alertmanager" yaml:"alertmanager"`
	Webhook      WebhookConfig      `mapstructure:"webhook" yaml:"webhook"`
	SMTP         SMTPConfig         `mapstructure:"smtp" yaml:"smtp"`
}

// AlertmanagerConfig posts alerts to Prometheus Alertmanager (API v2), as
// Prometheus does; Alertmanager then groups, silences and notifies. Route
// timings (group_wait, repeat_interval, send_resolved) do not apply:
// every firing alert is posted at once and again every ResendInterval,
// and every resolve once.
type AlertmanagerConfig struct {
	// URLs are the Alertmanagers, e.g. http://alertmanager:9093 (a path
	// prefix is kept: /api/v2/alerts is appended). Each gets every alert,
	// as an HA pair needs.
	URLs []string `mapstructure:"urls" yaml:"urls"`
	// ResendInterval is how often firing alerts are posted again
	// (default 1m). Each post says the alert ends 4 intervals later, so
	// Alertmanager resolves it by itself if flowhouse stops sending.
	ResendInterval time.Duration `mapstructure:"resend_interval" yaml:"resend_interval"`
}

// WebhookConfig posts each notification as JSON in the shape of
// Alertmanager's webhook, signed with HMAC-SHA256 (see README).
type WebhookConfig struct {
	// URL receives the notifications of tenants without an entry in
	// Tenants. Empty: only the tenants listed are sent.
	URL string `mapstructure:"url" yaml:"url"`
	// HMACKey signs every request (X-Flowhouse-Signature). A secret:
	// plain, enc:..., or read from HMACKeyFile.
	HMACKey     string `mapstructure:"hmac_key" yaml:"hmac_key" secret:"true"`
	HMACKeyFile string `mapstructure:"hmac_key_file" yaml:"hmac_key_file"`
	// Tenants give a tenant its own URL, and its own key.
	Tenants []WebhookTenantConfig `mapstructure:"tenants" yaml:"tenants"`
	// MaxAlerts bounds the alerts of one request; the rest are counted in
	// truncatedAlerts. 0: no bound.
	MaxAlerts int `mapstructure:"max_alerts" yaml:"max_alerts"`
}

// WebhookTenantConfig is one tenant's endpoint.
type WebhookTenantConfig struct {
	Tenant string `mapstructure:"tenant" yaml:"tenant"`
	URL    string `mapstructure:"url" yaml:"url"`
	// HMACKey is this tenant's key; empty: the receiver's. Give each
	// tenant its own: whoever holds a key can sign requests that the
	// other endpoints sharing it accept.
	HMACKey     string `mapstructure:"hmac_key" yaml:"hmac_key" secret:"true"`
	HMACKeyFile string `mapstructure:"hmac_key_file" yaml:"hmac_key_file"`
}

// SMTP transport security.
const (
	TLSStartTLS = "starttls" // plain connection upgraded by STARTTLS; refused if the server does not offer it
	TLSImplicit = "smtps"    // TLS from the first byte (port 465)
	TLSNone     = "none"     // no TLS: allowed only to a loopback address
)

// SMTPConfig sends one mail per notification.
type SMTPConfig struct {
	// Smarthost is the server, host:port (587 for STARTTLS, 465 SMTPS).
	Smarthost string `mapstructure:"smarthost" yaml:"smarthost"`
	// TLS is starttls (default), smtps or none (loopback only).
	TLS string `mapstructure:"tls" yaml:"tls"`
	// ServerName is the name the server's certificate is checked against;
	// default the smarthost's host.
	ServerName string `mapstructure:"server_name" yaml:"server_name"`
	// CAFile holds PEM certificates trusted besides the system's, for a
	// server with a private CA. Read at Start.
	CAFile string `mapstructure:"ca_file" yaml:"ca_file"`
	// Hello is the name sent in EHLO; default "localhost".
	Hello string `mapstructure:"hello" yaml:"hello"`
	// From is the sender: "flowhouse <alerts@example.org>".
	From string `mapstructure:"from" yaml:"from"`
	// To are the recipients.
	To []string `mapstructure:"to" yaml:"to"`
	// Username and Password authenticate (AUTH PLAIN or LOGIN, only over
	// TLS); empty Username: no AUTH. Password is a secret: plain,
	// enc:..., or read from PasswordFile.
	Username     string `mapstructure:"username" yaml:"username"`
	Password     string `mapstructure:"password" yaml:"password" secret:"true"`
	PasswordFile string `mapstructure:"password_file" yaml:"password_file"`
	// Auth is plain, login, or empty: PLAIN if the server offers it,
	// else LOGIN.
	Auth string `mapstructure:"auth" yaml:"auth"`
}

// RouteConfig sends the alerts it matches to its receivers, grouped.
type RouteConfig struct {
	// Tenants matched; empty: every tenant.
	Tenants []string `mapstructure:"tenants" yaml:"tenants"`
	// MinSeverity matched: critical, error, warning or info (default,
	// everything).
	MinSeverity string `mapstructure:"min_severity" yaml:"min_severity"`
	// Receivers are names from receivers.
	Receivers []string `mapstructure:"receivers" yaml:"receivers"`
	// GroupBy are the labels whose values make a group: its alerts go in
	// one notification (default [alertname]: one group per rule). The
	// tenant is always part of a group, so that no notification mixes
	// tenants.
	GroupBy []string `mapstructure:"group_by" yaml:"group_by"`
	// GroupWait is how long a new group waits for more alerts before its
	// first notification (default 30s).
	GroupWait time.Duration `mapstructure:"group_wait" yaml:"group_wait"`
	// GroupInterval is how long a group waits after a notification before
	// notifying what changed, new or resolved alerts (default 5m).
	GroupInterval time.Duration `mapstructure:"group_interval" yaml:"group_interval"`
	// RepeatInterval: a group still firing, with nothing new, is notified
	// again this long after its last notification (default 4h).
	RepeatInterval time.Duration `mapstructure:"repeat_interval" yaml:"repeat_interval"`
	// SendResolved notifies resolved alerts (default true).
	SendResolved Toggle `mapstructure:"send_resolved" yaml:"send_resolved"`
	// Continue: an alert this route matched is matched against the next
	// routes too.
	Continue bool `mapstructure:"continue" yaml:"continue"`
}

// Toggle is a boolean whose zero value means "not set", for a list
// entry's key whose default is true. It is written true or false.
type Toggle uint8

// The values of a Toggle.
const (
	Unset Toggle = iota
	Off
	On
)

// Or is t's value, or def when t is unset.
func (t Toggle) Or(def bool) bool {
	switch t {
	case On:
		return true
	case Off:
		return false
	}
	return def
}

// UnmarshalText reads true, false, or "" (unset).
func (t *Toggle) UnmarshalText(b []byte) error {
	switch strings.ToLower(string(b)) {
	case "":
		*t = Unset
	case "true":
		*t = On
	case "false":
		*t = Off
	default:
		return errors.New("not true or false")
	}
	return nil
}

// MarshalText writes true, false, or "" when unset.
func (t Toggle) MarshalText() ([]byte, error) {
	switch t {
	case On:
		return []byte("true"), nil
	case Off:
		return []byte("false"), nil
	}
	return []byte(""), nil
}

// Defaults of the keys of list entries, taken when they are zero.
const (
	DefaultResendInterval = time.Minute
	DefaultGroupWait      = 30 * time.Second
	DefaultGroupInterval  = 5 * time.Minute
	DefaultRepeatInterval = 4 * time.Hour
)

// DefaultGroupBy is a route's group_by when none is given.
var DefaultGroupBy = []string{LabelAlertname}

// DefaultConfig has no receiver and no route: nothing is sent until some
// are configured.
func DefaultConfig() Config {
	return Config{
		QueueSize: 1024,
		Timeout:   10 * time.Second,
		Retry: RetryConfig{
			Initial:     time.Second,
			Max:         time.Minute,
			MaxAttempts: 10,
			MaxAge:      time.Hour,
		},
		StopTimeout: 5 * time.Second,
	}
}

// withDefaults fills the zero keys of a route that have a default.
func (r RouteConfig) withDefaults() RouteConfig {
	if r.MinSeverity == "" {
		r.MinSeverity = string(SeverityInfo)
	}
	if len(r.GroupBy) == 0 {
		r.GroupBy = DefaultGroupBy
	}
	if r.GroupWait == 0 {
		r.GroupWait = DefaultGroupWait
	}
	if r.GroupInterval == 0 {
		r.GroupInterval = DefaultGroupInterval
	}
	if r.RepeatInterval == 0 {
		r.RepeatInterval = DefaultRepeatInterval
	}
	return r
}

// Receiver kinds, the kind label of metrics.
const (
	KindAlertmanager = "alertmanager"
	KindWebhook      = "webhook"
	KindSMTP         = "smtp"
)

// kind is the receiver's kind: the one sub-section that is set, or ""
// with the list of those set when it is not exactly one.
func (r ReceiverConfig) kind() (string, []string) {
	var set []string
	for _, k := range []struct {
		name string
		v    any
	}{{KindAlertmanager, r.Alertmanager}, {KindWebhook, r.Webhook}, {KindSMTP, r.SMTP}} {
		if !isEmpty(reflect.ValueOf(k.v)) {
			set = append(set, k.name)
		}
	}
	if len(set) == 1 {
		return set[0], set
	}
	return "", set
}

// isEmpty: zero, or holding only empty lists and maps. The effective
// configuration that check-config prints writes every key ("urls: []"),
// and loading it back must not make every kind look set.
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	case reflect.Struct:
		for i := range v.NumField() {
			if !isEmpty(v.Field(i)) {
				return false
			}
		}
		return true
	}
	return v.IsZero()
}

var receiverName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Validate names every wrong key, relative to the section, and says what
// is wrong with it. It reads no file.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.ExternalURL != "" {
		if err := checkHTTPURL(c.ExternalURL); err != nil {
			add("external_url: %v", err)
		}
	}
	if c.QueueSize < 1 || c.QueueSize > 1_000_000 {
		add("queue_size: %d is outside 1..1000000", c.QueueSize)
	}
	if c.Timeout <= 0 || c.Timeout > 5*time.Minute {
		add("timeout: %s is outside (0, 5m]", c.Timeout)
	}
	if c.Retry.Initial <= 0 {
		add("retry.initial: %s must be positive", c.Retry.Initial)
	}
	if c.Retry.Max < c.Retry.Initial {
		add("retry.max: %s is shorter than retry.initial %s", c.Retry.Max, c.Retry.Initial)
	}
	if c.Retry.MaxAttempts < 1 {
		add("retry.max_attempts: %d must be at least 1", c.Retry.MaxAttempts)
	}
	if c.Retry.MaxAge <= 0 {
		add("retry.max_age: %s must be positive", c.Retry.MaxAge)
	}
	if c.StopTimeout <= 0 {
		add("stop_timeout: %s must be positive", c.StopTimeout)
	}
	names := map[string]bool{}
	for i, r := range c.Receivers {
		key := fmt.Sprintf("receivers[%d]", i)
		switch {
		case r.Name == "":
			add("%s.name: required", key)
		case !receiverName.MatchString(r.Name):
			add("%s.name: %q must be letters, digits, '_', '.' and '-'", key, r.Name)
		case names[r.Name]:
			add("%s.name: %q is the name of another receiver", key, r.Name)
		}
		names[r.Name] = true
		kind, set := r.kind()
		switch kind {
		case KindAlertmanager:
			errs = append(errs, r.Alertmanager.validate(key+".alertmanager")...)
		case KindWebhook:
			errs = append(errs, r.Webhook.validate(key+".webhook")...)
		case KindSMTP:
			errs = append(errs, r.SMTP.validate(key+".smtp")...)
		default:
			if len(set) == 0 {
				add("%s: set one of alertmanager, webhook or smtp", key)
			} else {
				add("%s: %s are set; a receiver is of one kind (make one receiver of each)", key, strings.Join(set, " and "))
			}
		}
	}
	for i, r := range c.Routes {
		errs = append(errs, r.validate(fmt.Sprintf("routes[%d]", i), names)...)
	}
	return errors.Join(errs...)
}

func (a AlertmanagerConfig) validate(key string) []error {
	var errs []error
	if len(a.URLs) == 0 {
		errs = append(errs, fmt.Errorf("%s.urls: at least one Alertmanager URL is required", key))
	}
	seen := map[string]bool{}
	for i, u := range a.URLs {
		if err := checkHTTPURL(u); err != nil {
			errs = append(errs, fmt.Errorf("%s.urls[%d]: %v", key, i, err))
		} else if seen[strings.TrimRight(u, "/")] {
			errs = append(errs, fmt.Errorf("%s.urls[%d]: %q is listed twice", key, i, u))
		}
		seen[strings.TrimRight(u, "/")] = true
	}
	if a.ResendInterval != 0 && a.ResendInterval < time.Second {
		errs = append(errs, fmt.Errorf("%s.resend_interval: %s is shorter than 1s", key, a.ResendInterval))
	}
	return errs
}

func (w WebhookConfig) validate(key string) []error {
	var errs []error
	hasKey := w.HMACKey != "" || w.HMACKeyFile != ""
	if w.URL == "" && len(w.Tenants) == 0 {
		errs = append(errs, fmt.Errorf("%s.url: required (or tenants)", key))
	}
	if w.URL != "" {
		if err := checkHTTPURL(w.URL); err != nil {
			errs = append(errs, fmt.Errorf("%s.url: %v", key, err))
		}
		if !hasKey {
			errs = append(errs, fmt.Errorf("%s.hmac_key: required, to sign requests (or hmac_key_file)", key))
		}
	}
	tenants := map[string]bool{}
	for i, t := range w.Tenants {
		tk := fmt.Sprintf("%s.tenants[%d]", key, i)
		switch {
		case t.Tenant == "":
			errs = append(errs, fmt.Errorf("%s.tenant: required", tk))
		case tenants[t.Tenant]:
			errs = append(errs, fmt.Errorf("%s.tenant: %q is listed twice", tk, t.Tenant))
		}
		tenants[t.Tenant] = true
		if err := checkHTTPURL(t.URL); err != nil {
			errs = append(errs, fmt.Errorf("%s.url: %v", tk, err))
		}
		if !hasKey && t.HMACKey == "" && t.HMACKeyFile == "" {
			errs = append(errs, fmt.Errorf("%s.hmac_key: required, to sign requests (or hmac_key_file, or the receiver's hmac_key)", tk))
		}
	}
	if w.MaxAlerts < 0 {
		errs = append(errs, fmt.Errorf("%s.max_alerts: %d is negative (0 is no bound)", key, w.MaxAlerts))
	}
	return errs
}

func (s SMTPConfig) validate(key string) []error {
	var errs []error
	host, port, err := net.SplitHostPort(s.Smarthost)
	if err != nil || host == "" || port == "" {
		errs = append(errs, fmt.Errorf("%s.smarthost: %q is not host:port", key, s.Smarthost))
	}
	switch s.TLS {
	case "", TLSStartTLS, TLSImplicit:
	case TLSNone:
		if err == nil && !loopback.Host(host) {
			errs = append(errs, fmt.Errorf("%s.tls: none sends mail and password in clear, so it is allowed only to a loopback smarthost, not %q", key, host))
		}
	default:
		errs = append(errs, fmt.Errorf("%s.tls: %q is not starttls, smtps or none", key, s.TLS))
	}
	if _, err := mail.ParseAddress(s.From); err != nil {
		errs = append(errs, fmt.Errorf("%s.from: %q is not a mail address: %v", key, s.From, err))
	}
	if len(s.To) == 0 {
		errs = append(errs, fmt.Errorf("%s.to: at least one recipient is required", key))
	}
	for i, to := range s.To {
		if _, err := mail.ParseAddress(to); err != nil {
			errs = append(errs, fmt.Errorf("%s.to[%d]: %q is not a mail address: %v", key, i, to, err))
		}
	}
	if strings.ContainsAny(s.Hello, " \r\n") {
		errs = append(errs, fmt.Errorf("%s.hello: %q is not a host name", key, s.Hello))
	}
	hasPassword := s.Password != "" || s.PasswordFile != ""
	switch {
	case s.Username == "" && hasPassword:
		errs = append(errs, fmt.Errorf("%s.username: required with a password", key))
	case s.Username != "" && !hasPassword:
		errs = append(errs, fmt.Errorf("%s.password: required with a username (or password_file)", key))
	}
	switch s.Auth {
	case "", "plain", "login":
		if s.Auth != "" && s.Username == "" {
			errs = append(errs, fmt.Errorf("%s.auth: %s needs username and password", key, s.Auth))
		}
	default:
		errs = append(errs, fmt.Errorf("%s.auth: %q is not plain or login (or empty: what the server offers)", key, s.Auth))
	}
	return errs
}

func (r RouteConfig) validate(key string, receivers map[string]bool) []error {
	var errs []error
	if len(r.Receivers) == 0 {
		errs = append(errs, fmt.Errorf("%s.receivers: at least one receiver is required", key))
	}
	for i, name := range r.Receivers {
		if !receivers[name] {
			errs = append(errs, fmt.Errorf("%s.receivers[%d]: %q is not the name of a receiver", key, i, name))
		} else if slices.Index(r.Receivers, name) != i {
			errs = append(errs, fmt.Errorf("%s.receivers[%d]: %q is listed twice", key, i, name))
		}
	}
	if r.MinSeverity != "" && !Severity(r.MinSeverity).Valid() {
		errs = append(errs, fmt.Errorf("%s.min_severity: %q is not critical, error, warning or info", key, r.MinSeverity))
	}
	for i, t := range r.Tenants {
		if t == "" {
			errs = append(errs, fmt.Errorf("%s.tenants[%d]: empty (leave tenants out to match every tenant)", key, i))
		}
	}
	for i, l := range r.GroupBy {
		switch {
		case !labelName.MatchString(l):
			errs = append(errs, fmt.Errorf("%s.group_by[%d]: %q is not a label name", key, i, l))
		case slices.Index(r.GroupBy, l) != i:
			errs = append(errs, fmt.Errorf("%s.group_by[%d]: %q is listed twice", key, i, l))
		}
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{{"group_wait", r.GroupWait}, {"group_interval", r.GroupInterval}, {"repeat_interval", r.RepeatInterval}} {
		if d.d < 0 {
			errs = append(errs, fmt.Errorf("%s.%s: %s is negative (0 takes the default)", key, d.key, d.d))
		}
	}
	if r.GroupInterval > 0 && r.GroupInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("%s.group_interval: %s is shorter than 100ms", key, r.GroupInterval))
	}
	if r.RepeatInterval > 0 && r.RepeatInterval < time.Second {
		errs = append(errs, fmt.Errorf("%s.repeat_interval: %s is shorter than 1s", key, r.RepeatInterval))
	}
	return errs
}

// checkHTTPURL accepts absolute http and https URLs with a host and no
// user information (a password in a URL would be shown in logs).
func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a URL", s)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q is not an http or https URL", s)
	case u.Host == "":
		return fmt.Errorf("%q has no host", s)
	case u.User != nil:
		return fmt.Errorf("%q holds user information; URLs are logged, so credentials do not belong in them", redactURL(u))
	}
	return nil
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}
