package notify

import (
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"regexp"
	"slices"
	"time"
	"unicode/utf8"
)

// Status is where an alert is in its lifecycle, as receivers see it.
type Status string

// The statuses notify takes. Pending alerts are the lifecycle's business:
// they are not notified.
const (
	StatusFiring   Status = "firing"
	StatusResolved Status = "resolved"
)

// Severity of an alert, PagerDuty's four levels, most severe first.
type Severity string

// The severities, most severe first.
const (
	SeverityCritical Severity = "critical"
	SeverityError    Severity = "error"
	SeverityWarning  Severity = "warning"
	SeverityInfo     Severity = "info"
)

// rank orders severities: critical 4 .. info 1; 0 for anything else.
func (s Severity) rank() int {
	switch s {
	case SeverityCritical:
		return 4
	case SeverityError:
		return 3
	case SeverityWarning:
		return 2
	case SeverityInfo:
		return 1
	}
	return 0
}

// Valid reports whether s is one of the four severities.
func (s Severity) Valid() bool { return s.rank() > 0 }

// Label names that notify sets itself on every alert it sends; an alert's
// own Labels cannot override them.
const (
	LabelAlertname = "alertname" // the rule
	LabelTenant    = "tenant"
	LabelSeverity  = "severity"
)

// Annotation names receivers show (others are passed along as they are).
const (
	AnnotationSummary     = "summary"
	AnnotationDescription = "description"
)

// Alert is one alert instance at one point of its lifecycle: what the
// alert lifecycle (package analytics) hands to Notifier.Notify when an
// instance starts firing, while it fires, and when it resolves.
//
// Notify keeps no reference to the maps: it copies them.
type Alert struct {
	// Fingerprint identifies the instance across notifications: 16
	// lower-case hex digits. Empty: Notify computes it as Alertmanager
	// does, Fingerprint(a.LabelSet()), so that the same instance has the
	// same fingerprint in flowhouse, in the webhook payload and in
	// Alertmanager.
	Fingerprint string
	// Tenant and Rule are required; they become the labels "tenant" and
	// "alertname".
	Tenant string
	Rule   string
	Status Status
	// Severity becomes the label "severity"; routes match on it.
	Severity Severity
	// Labels identify the instance (the subject of the rule: an address,
	// an exporter, ...). Names are Prometheus label names
	// ([a-zA-Z_][a-zA-Z0-9_]*); labels with an empty value are dropped,
	// as Prometheus does.
	Labels map[string]string
	// Annotations describe it: "summary" (one line) and "description".
	Annotations map[string]string
	// StartsAt is when the instance started firing; required.
	StartsAt time.Time
	// EndsAt is when it resolved: zero while firing. A resolved alert
	// with a zero EndsAt is taken as resolved at UpdatedAt, else now.
	EndsAt time.Time
	// UpdatedAt is when the lifecycle last evaluated it.
	UpdatedAt time.Time
	// GeneratorURL links to the rule or the alert in flowhouse; optional.
	GeneratorURL string
	// Restored: a firing alert that was notified before a restart. It is
	// posted to Alertmanagers again (which keep it firing there and notify
	// nothing new: Alertmanager deduplicates), and joins its group as
	// already notified, so grouped receivers are not told again until
	// something changes or repeat_interval passes.
	Restored bool
}

// LabelSet is the labels notify sends for a: the alert's own labels with
// empty values dropped, plus alertname (the rule), tenant and severity.
func (a *Alert) LabelSet() map[string]string {
	ls := make(map[string]string, len(a.Labels)+3)
	for k, v := range a.Labels {
		if v != "" {
			ls[k] = v
		}
	}
	ls[LabelAlertname] = a.Rule
	ls[LabelTenant] = a.Tenant
	ls[LabelSeverity] = string(a.Severity)
	return ls
}

// separator is Prometheus' label separator byte: it cannot occur in UTF-8.
const separator = 0xff

// Fingerprint is Alertmanager's fingerprint of a label set (prometheus
// common/model LabelSet.Fingerprint): FNV-1a 64 over the label names in
// sorted order, each followed by 0xff, its value and 0xff; 16 lower-case
// hex digits.
func Fingerprint(labels map[string]string) string {
	h := fnv.New64a()
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		h.Write([]byte(k))
		h.Write([]byte{separator})
		h.Write([]byte(labels[k]))
		h.Write([]byte{separator})
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

var (
	labelName   = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	fingerprint = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

// validate says what is wrong with a, for Notify's error. Alertmanager
// refuses a whole batch for one bad label name, so bad names are refused
// here, where the caller learns of it.
func (a *Alert) validate() error {
	var errs []error
	if a.Tenant == "" {
		errs = append(errs, errors.New("tenant is empty"))
	}
	if a.Rule == "" {
		errs = append(errs, errors.New("rule is empty"))
	}
	if a.Status != StatusFiring && a.Status != StatusResolved {
		errs = append(errs, fmt.Errorf("status %q is not firing or resolved", a.Status))
	}
	if !a.Severity.Valid() {
		errs = append(errs, fmt.Errorf("severity %q is not critical, error, warning or info", a.Severity))
	}
	if a.Fingerprint != "" && !fingerprint.MatchString(a.Fingerprint) {
		errs = append(errs, fmt.Errorf("fingerprint %q is not 16 lower-case hex digits", a.Fingerprint))
	}
	if a.StartsAt.IsZero() {
		errs = append(errs, errors.New("starts_at is zero"))
	}
	if a.Status == StatusFiring && !a.EndsAt.IsZero() {
		errs = append(errs, errors.New("ends_at is set on a firing alert"))
	}
	for _, m := range []struct {
		what string
		m    map[string]string
	}{{"label", a.Labels}, {"annotation", a.Annotations}} {
		for _, k := range slices.Sorted(maps.Keys(m.m)) {
			if !labelName.MatchString(k) {
				errs = append(errs, fmt.Errorf("%s name %q is not [a-zA-Z_][a-zA-Z0-9_]*", m.what, k))
			}
			if !utf8.ValidString(m.m[k]) {
				errs = append(errs, fmt.Errorf("%s %s is not valid UTF-8", m.what, k))
			}
		}
	}
	for _, s := range []struct{ what, v string }{{"tenant", a.Tenant}, {"rule", a.Rule}, {"generator_url", a.GeneratorURL}} {
		if !utf8.ValidString(s.v) {
			errs = append(errs, fmt.Errorf("%s is not valid UTF-8", s.what))
		}
	}
	return errors.Join(errs...)
}

// prepared is a copy of a valid alert as notify keeps it: its own maps,
// its fingerprint, its label set and its end time settled.
func (a *Alert) prepared(now time.Time) *Alert {
	c := *a
	c.Labels = maps.Clone(a.Labels)
	c.Annotations = maps.Clone(a.Annotations)
	if c.Fingerprint == "" {
		c.Fingerprint = Fingerprint(c.LabelSet())
	}
	if c.Status == StatusResolved && c.EndsAt.IsZero() {
		c.EndsAt = c.UpdatedAt
		if c.EndsAt.IsZero() {
			c.EndsAt = now
		}
	}
	return &c
}
