package alerts

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/flowhouse/flowhouse/notify"
)

// Hold is how long a condition must last: a number of consecutive
// evaluations or a duration, at most one of them. The zero Hold is met at
// once.
type Hold struct {
	Evaluations int
	Duration    time.Duration
}

// met reports whether the hold is over after evals consecutive
// evaluations (the current one included) spanning elapsed.
func (h Hold) met(evals uint32, elapsed time.Duration) bool {
	if h.Evaluations > 0 {
		return int64(evals) >= int64(h.Evaluations)
	}
	return elapsed >= h.Duration
}

func (h Hold) validate(what string) error {
	switch {
	case h.Evaluations < 0 || h.Duration < 0:
		return fmt.Errorf("%s is negative", what)
	case h.Evaluations > 0 && h.Duration > 0:
		return fmt.Errorf("%s has both evaluations and a duration", what)
	}
	return nil
}

// Rule is what the lifecycle needs to know of a rule.
type Rule struct {
	Tenant string
	Name   string
	// Severity of its alerts; an instance may give its own.
	Severity notify.Severity
	// Labels are added to every alert of the rule (they override subject
	// labels of the same name, as in Prometheus). They are not part of the
	// fingerprint.
	Labels map[string]string
	// Annotations are text/template texts rendered per instance with
	// .Tenant, .Rule, .Severity, .Labels (the subject labels) and .Value;
	// plain text is a template too. An instance's own annotations
	// override them.
	Annotations map[string]string
	// For: how long an instance is pending before it fires.
	For Hold
	// KeepFiringFor: how long a firing instance no longer returned keeps
	// firing before it resolves.
	KeepFiringFor Hold
	// GeneratorURL goes into notifications.
	GeneratorURL string
}

// Instance is one alert instance an evaluation returned.
type Instance struct {
	// Labels are the subject (dst_address, exporter, if_index, ...).
	// Labels with an empty value are dropped, as Prometheus does.
	Labels map[string]string
	Value  float64
	// Severity overrides the rule's when set.
	Severity notify.Severity
	// Annotations override the rule's (e.g. a summary).
	Annotations map[string]string
}

// Evaluation is one evaluation of one rule.
type Evaluation struct {
	Rule Rule
	// At is when it was evaluated; zero is the manager's clock now.
	// Times are kept in whole seconds.
	At        time.Time
	Instances []Instance
}

// Alert is one alert: one episode of an instance, from first seen to
// resolved or dropped.
type Alert struct {
	// ID is unique and stays the same for the alert's life: the
	// fingerprint, "-", and 8 random hex digits.
	ID          string
	Fingerprint string
	Tenant      string
	Rule        string
	Subject     map[string]string
	Severity    notify.Severity
	// Labels are the rule's labels.
	Labels      map[string]string
	Annotations map[string]string
	Status      Status
	// StartsAt: first returned (pending since). FiredAt: started firing
	// (zero while pending). EndsAt: resolved or dropped (zero while active).
	StartsAt, FiredAt, EndsAt time.Time
	// UpdatedAt: the last change (every evaluation that concerns the
	// alert changes it). LastSeenAt: last returned by an evaluation.
	UpdatedAt, LastSeenAt time.Time
	// LastValue is the value of the latest evaluation that returned it;
	// PeakValue the highest of them.
	LastValue, PeakValue float64
	// Evaluations: consecutive evaluations that returned it; Missed:
	// consecutive evaluations since that did not.
	Evaluations, Missed uint32
	Acknowledged        bool
	AcknowledgedBy      string
	AcknowledgedAt      time.Time
	// Version increments on every change, from 1.
	Version uint64
}

// Event kinds.
const (
	KindTransition = "transition" // from_status -> to_status; from_status is empty for a new alert
	KindSeverity   = "severity"   // note: "old -> new"
	KindAck        = "ack"
	KindUnack      = "unack"
)

// Event is one entry of an alert's history.
type Event struct {
	AlertID, Fingerprint, Tenant, Rule string
	At                                 time.Time
	// Version of the alert after the event.
	Version  uint64
	Kind     string
	From, To Status
	Severity notify.Severity
	Value    float64
	// Actor who acknowledged; empty for the lifecycle's own events.
	Actor, Note string
}

func (a *Alert) clone() *Alert {
	c := *a
	c.Subject = maps.Clone(a.Subject)
	c.Labels = maps.Clone(a.Labels)
	c.Annotations = maps.Clone(a.Annotations)
	return &c
}

// Label names notify sets itself; subjects and rule labels cannot use them.
var reserved = map[string]bool{notify.LabelAlertname: true, notify.LabelTenant: true, notify.LabelSeverity: true}

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// Fingerprint of an instance: Alertmanager's FNV-1a 64 over the sorted
// label names and values of the subject labels (empty values dropped)
// plus alertname (the rule) and tenant; 16 hex digits. Severity is not
// part of it.
func Fingerprint(tenant, rule string, subject map[string]string) string {
	ls := make(map[string]string, len(subject)+2)
	for k, v := range subject {
		if v != "" {
			ls[k] = v
		}
	}
	ls[notify.LabelAlertname] = rule
	ls[notify.LabelTenant] = tenant
	return notify.Fingerprint(ls)
}

func checkLabels(what string, m map[string]string, noReserved bool) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !labelName.MatchString(k) {
			errs = append(errs, fmt.Errorf("%s name %q is not [a-zA-Z_][a-zA-Z0-9_]*", what, k))
		} else if noReserved && reserved[k] {
			errs = append(errs, fmt.Errorf("%s name %q is reserved", what, k))
		}
		if !utf8.ValidString(m[k]) {
			errs = append(errs, fmt.Errorf("%s %s is not valid UTF-8", what, k))
		}
	}
	return errors.Join(errs...)
}

func (r *Rule) validate() error {
	var errs []error
	if r.Tenant == "" {
		errs = append(errs, errors.New("tenant is empty"))
	}
	if r.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if !utf8.ValidString(r.Tenant) || !utf8.ValidString(r.Name) {
		errs = append(errs, errors.New("tenant or name is not valid UTF-8"))
	}
	if !r.Severity.Valid() {
		errs = append(errs, fmt.Errorf("severity %q is not critical, error, warning or info", r.Severity))
	}
	errs = append(errs, r.For.validate("for"), r.KeepFiringFor.validate("keep_firing_for"),
		checkLabels("label", r.Labels, true), checkLabels("annotation", r.Annotations, false))
	return errors.Join(errs...)
}

func (in *Instance) validate() error {
	var errs []error
	if in.Severity != "" && !in.Severity.Valid() {
		errs = append(errs, fmt.Errorf("severity %q is not critical, error, warning or info", in.Severity))
	}
	errs = append(errs, checkLabels("label", in.Labels, true), checkLabels("annotation", in.Annotations, false))
	return errors.Join(errs...)
}

// subject is the instance's labels without empty values.
func (in *Instance) subject() map[string]string {
	s := make(map[string]string, len(in.Labels))
	for k, v := range in.Labels {
		if v != "" {
			s[k] = v
		}
	}
	return s
}

// notification is what notify gets for a.
func (a *Alert) notification(meta ruleMeta) notify.Alert {
	labels := maps.Clone(a.Subject)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, a.Labels)
	n := notify.Alert{
		Fingerprint:  a.Fingerprint,
		Tenant:       a.Tenant,
		Rule:         a.Rule,
		Status:       notify.StatusFiring,
		Severity:     a.Severity,
		Labels:       labels,
		Annotations:  maps.Clone(a.Annotations),
		StartsAt:     a.FiredAt,
		UpdatedAt:    a.UpdatedAt,
		GeneratorURL: meta.generatorURL,
	}
	if a.Status == StatusResolved {
		n.Status, n.EndsAt = notify.StatusResolved, a.EndsAt
	}
	return n
}
