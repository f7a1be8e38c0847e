package alerts

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/flowhouse/flowhouse/notify"
)

type ruleKey struct{ tenant, rule string }

type ruleMeta struct{ generatorURL string }

// ruleState is one rule's active alerts. Its lock serialises the rule's
// evaluations with acknowledgements of its alerts.
type ruleState struct {
	mu     sync.Mutex
	key    ruleKey
	meta   ruleMeta
	alerts map[string]*Alert // by fingerprint, active only
	tmpl   map[string]*template.Template
}

// Result of an evaluation.
type Result struct {
	// Pending and Firing count the rule's active alerts after it.
	Pending, Firing int
	// Transitions in it.
	Created, Fired, Resolved, Dropped int
	// Invalid instances were refused (the error says why).
	Invalid int
}

// changes are what one locked operation queues for the writer and the
// notifier.
type changes struct {
	rows    []*Alert
	events  []Event
	notices []notify.Alert
	evented map[string]bool // alerts with an event already at their current version
}

func (c *changes) event(a *Alert, at time.Time, kind string, from, to Status, actor, note string) {
	if c.evented == nil {
		c.evented = map[string]bool{}
	}
	if c.evented[a.ID] {
		a.Version++ // one version per event
	}
	c.evented[a.ID] = true
	c.events = append(c.events, Event{
		AlertID: a.ID, Fingerprint: a.Fingerprint, Tenant: a.Tenant, Rule: a.Rule,
		At: at, Version: a.Version, Kind: kind, From: from, To: to,
		Severity: a.Severity, Value: a.LastValue, Actor: actor, Note: note,
	})
}

func (mgr *Manager) ruleState(k ruleKey) *ruleState {
	mgr.mu.Lock()
	defer mgr.mu.Unlock()
	rs := mgr.rules[k]
	if rs == nil {
		rs = &ruleState{key: k, alerts: map[string]*Alert{}, tmpl: map[string]*template.Template{}}
		mgr.rules[k] = rs
	}
	return rs
}

func (mgr *Manager) index(id string, rs *ruleState) {
	mgr.mu.Lock()
	if rs == nil {
		delete(mgr.byID, id)
	} else {
		mgr.byID[id] = rs
	}
	mgr.mu.Unlock()
}

// prepared is a valid instance with what the evaluation derived from it.
type prepared struct {
	subject     map[string]string
	value       float64
	severity    notify.Severity
	annotations map[string]string
}

// Evaluate applies one evaluation of a rule. Evaluations of one rule must
// not overlap (the caller serialises them); those of different rules
// may. It does no I/O: writes and notifications are queued. Instances
// that are not valid are refused and named in the error; the others are
// applied. Two instances with the same subject count once (the last).
func (mgr *Manager) Evaluate(ctx context.Context, ev Evaluation) (Result, error) {
	if !mgr.started.Load() {
		return Result{}, ErrNotStarted
	}
	r := ev.Rule
	if err := r.validate(); err != nil {
		return Result{}, fmt.Errorf("alerts: rule %q of tenant %q: %w", r.Name, r.Tenant, err)
	}
	if mgr.deps.Tenants != nil && !mgr.deps.Tenants.Has(r.Tenant) {
		return Result{}, fmt.Errorf("alerts: rule %q: unknown tenant %q", r.Name, r.Tenant)
	}
	at := ev.At
	if at.IsZero() {
		at = mgr.now()
	}
	at = at.UTC().Truncate(time.Second)
	rs := mgr.ruleState(ruleKey{r.Tenant, r.Name})
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if mgr.stopped.Load() {
		return Result{}, ErrStopped
	}
	rs.meta = ruleMeta{generatorURL: r.GeneratorURL}
	seen, res, err := mgr.prepare(rs, &r, ev.Instances)
	var out changes
	for _, fp := range slices.Sorted(maps.Keys(seen)) {
		mgr.observe(rs, &r, fp, seen[fp], at, &res, &out)
	}
	for _, fp := range slices.Sorted(maps.Keys(rs.alerts)) {
		if _, ok := seen[fp]; !ok {
			mgr.absent(rs, &r, rs.alerts[fp], at, &res, &out)
		}
	}
	for _, a := range rs.alerts {
		if a.Status == StatusFiring {
			res.Firing++
		} else {
			res.Pending++
		}
	}
	mgr.m.setActive(rs.key, res.Pending, res.Firing)
	mgr.emit(&out)
	return res, err
}

// prepare validates the instances and renders their annotations.
func (mgr *Manager) prepare(rs *ruleState, r *Rule, instances []Instance) (map[string]prepared, Result, error) {
	var res Result
	var errs []error
	seen := make(map[string]prepared, len(instances))
	for i := range instances {
		in := &instances[i]
		if err := in.validate(); err != nil {
			res.Invalid++
			if len(errs) < 5 {
				errs = append(errs, fmt.Errorf("instance %v: %w", in.Labels, err))
			}
			continue
		}
		p := prepared{subject: in.subject(), value: finite(in.Value), severity: r.Severity}
		if in.Severity != "" {
			p.severity = in.Severity
		}
		p.annotations = mgr.render(rs, r, p)
		maps.Copy(p.annotations, in.Annotations)
		seen[Fingerprint(r.Tenant, r.Name, p.subject)] = p
	}
	if res.Invalid > 0 {
		mgr.m.invalid.Add(float64(res.Invalid))
		err := fmt.Errorf("alerts: rule %q of tenant %q: %d instances refused: %w", r.Name, r.Tenant, res.Invalid, errors.Join(errs...))
		mgr.m.logInvalid.Do(func() { mgr.log.Warn("instances refused", "error", err) })
		return seen, res, err
	}
	return seen, res, nil
}

// finite keeps values the tables and JSON can hold: NaN is 0, infinities
// the largest floats.
func finite(v float64) float64 {
	switch {
	case math.IsNaN(v):
		return 0
	case math.IsInf(v, 1):
		return math.MaxFloat64
	case math.IsInf(v, -1):
		return -math.MaxFloat64
	}
	return v
}

// render executes the rule's annotation templates for one instance. A
// template that does not parse or execute gives its text as it is.
func (mgr *Manager) render(rs *ruleState, r *Rule, p prepared) map[string]string {
	out := make(map[string]string, len(r.Annotations))
	data := map[string]any{"Tenant": r.Tenant, "Rule": r.Name, "Severity": string(p.severity), "Labels": p.subject, "Value": p.value}
	for name, text := range r.Annotations {
		t, ok := rs.tmpl[text]
		if !ok {
			var err error
			if t, err = template.New(name).Option("missingkey=zero").Parse(text); err != nil {
				mgr.m.logTemplate.Do(func() { mgr.log.Warn("annotation template", "rule", r.Name, "annotation", name, "error", err) })
				t = nil
			}
			rs.tmpl[text] = t
		}
		if t == nil {
			out[name] = text
			continue
		}
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			out[name] = text
			continue
		}
		out[name] = b.String()
	}
	return out
}

func newID(fp string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fp + "-" + hex.EncodeToString(b[:])
}

// observe applies an instance the evaluation returned.
func (mgr *Manager) observe(rs *ruleState, r *Rule, fp string, p prepared, at time.Time, res *Result, out *changes) {
	a := rs.alerts[fp]
	if a == nil {
		a = &Alert{
			ID: newID(fp), Fingerprint: fp, Tenant: r.Tenant, Rule: r.Name, Subject: p.subject,
			Severity: p.severity, Labels: maps.Clone(r.Labels), Annotations: p.annotations,
			Status: StatusPending, StartsAt: at, UpdatedAt: at, LastSeenAt: at,
			LastValue: p.value, PeakValue: p.value, Evaluations: 1, Version: 1,
		}
		res.Created++
		if r.For.met(1, 0) {
			a.Status, a.FiredAt = StatusFiring, at
			res.Fired++
		}
		rs.alerts[fp] = a
		mgr.index(a.ID, rs)
		out.event(a, at, KindTransition, "", a.Status, "", "")
		mgr.m.transition("", a.Status)
		mgr.queue(rs, a, a.Status == StatusFiring, out)
		return
	}
	if a.Evaluations < math.MaxUint32 {
		a.Evaluations++
	}
	a.Missed, a.LastSeenAt, a.UpdatedAt, a.LastValue = 0, at, at, p.value
	a.PeakValue = max(a.PeakValue, p.value)
	a.Labels, a.Annotations = maps.Clone(r.Labels), p.annotations
	a.Version++
	notice := false
	if old := a.Severity; old != p.severity {
		a.Severity = p.severity
		out.event(a, at, KindSeverity, a.Status, a.Status, "", string(old)+" -> "+string(p.severity))
		notice = a.Status == StatusFiring
	}
	if a.Status == StatusPending && r.For.met(a.Evaluations, at.Sub(a.StartsAt)) {
		a.Status, a.FiredAt = StatusFiring, at
		res.Fired++
		out.event(a, at, KindTransition, StatusPending, StatusFiring, "", "")
		mgr.m.transition(StatusPending, StatusFiring)
		notice = true
	}
	mgr.queue(rs, a, notice, out)
}

// absent applies the absence of an active alert from the evaluation.
func (mgr *Manager) absent(rs *ruleState, r *Rule, a *Alert, at time.Time, res *Result, out *changes) {
	if a.Missed < math.MaxUint32 {
		a.Missed++
	}
	a.UpdatedAt = at
	a.Version++
	switch {
	case a.Status == StatusPending:
		a.Status, a.EndsAt = StatusDropped, at
		res.Dropped++
		out.event(a, at, KindTransition, StatusPending, StatusDropped, "", "")
		mgr.m.transition(StatusPending, StatusDropped)
	case r.KeepFiringFor.met(a.Missed, at.Sub(a.LastSeenAt)):
		a.Status, a.EndsAt = StatusResolved, at
		note := ""
		if a.Acknowledged {
			note = "acknowledgement by " + a.AcknowledgedBy + " cleared"
			a.Acknowledged, a.AcknowledgedBy, a.AcknowledgedAt = false, "", time.Time{}
		}
		res.Resolved++
		out.event(a, at, KindTransition, StatusFiring, StatusResolved, "", note)
		mgr.m.transition(StatusFiring, StatusResolved)
	}
	if !a.Status.Active() {
		delete(rs.alerts, a.Fingerprint)
		mgr.index(a.ID, nil)
	}
	mgr.queue(rs, a, a.Status == StatusResolved, out)
}

// queue adds a's current row, and its notification when notice.
func (mgr *Manager) queue(rs *ruleState, a *Alert, notice bool, out *changes) {
	out.rows = append(out.rows, a.clone())
	if notice {
		out.notices = append(out.notices, a.notification(rs.meta))
	}
}

func (mgr *Manager) emit(out *changes) {
	if mgr.w != nil && (len(out.rows) > 0 || len(out.events) > 0) {
		mgr.w.put(out.rows, out.events)
	}
	if mgr.n != nil {
		for _, n := range out.notices {
			mgr.n.send(n)
		}
	}
}

// restore puts reloaded alerts in place. Two active alerts of one
// fingerprint (a lost write) keep the newer.
func (mgr *Manager) restore(alerts []*Alert) {
	for _, a := range alerts {
		rs := mgr.ruleState(ruleKey{a.Tenant, a.Rule})
		rs.mu.Lock()
		if old := rs.alerts[a.Fingerprint]; old == nil || old.UpdatedAt.Before(a.UpdatedAt) {
			if old != nil {
				mgr.index(old.ID, nil)
			}
			rs.alerts[a.Fingerprint] = a
			mgr.index(a.ID, rs)
		}
		p, f := 0, 0
		for _, x := range rs.alerts {
			if x.Status == StatusFiring {
				f++
			} else {
				p++
			}
		}
		mgr.m.setActive(rs.key, p, f)
		rs.mu.Unlock()
	}
}

// Ack acknowledges an active alert of tenant for actor. expected, when
// not 0, is the version the caller saw (If-Match): a *VersionError when
// it is not the current one. Acknowledging an acknowledged alert changes
// nothing. ErrNotFound: no such alert of the tenant; ErrNotActive: it has
// resolved or was dropped.
func (mgr *Manager) Ack(ctx context.Context, tenant, id, actor string, expected uint64) (Alert, error) {
	return mgr.setAck(ctx, tenant, id, actor, "", expected, true)
}

// AckWithNote is Ack with a comment, kept as the note of the ack event.
func (mgr *Manager) AckWithNote(ctx context.Context, tenant, id, actor, note string, expected uint64) (Alert, error) {
	return mgr.setAck(ctx, tenant, id, actor, note, expected, true)
}

// Unack clears an acknowledgement, as Ack sets it.
func (mgr *Manager) Unack(ctx context.Context, tenant, id, actor string, expected uint64) (Alert, error) {
	return mgr.setAck(ctx, tenant, id, actor, "", expected, false)
}

func (mgr *Manager) setAck(ctx context.Context, tenant, id, actor, note string, expected uint64, ack bool) (Alert, error) {
	if !mgr.started.Load() {
		return Alert{}, ErrNotStarted
	}
	if actor == "" {
		return Alert{}, errors.New("alerts: acknowledgement without an actor")
	}
	mgr.mu.Lock()
	rs := mgr.byID[id]
	mgr.mu.Unlock()
	if rs == nil || len(id) < 16 {
		return Alert{}, mgr.missing(ctx, tenant, id)
	}
	rs.mu.Lock()
	a := rs.alerts[id[:16]]
	if a == nil || a.ID != id || a.Tenant != tenant {
		rs.mu.Unlock() // no I/O under the rule's lock
		return Alert{}, mgr.missing(ctx, tenant, id)
	}
	defer rs.mu.Unlock()
	if mgr.stopped.Load() {
		return Alert{}, ErrStopped
	}
	if expected != 0 && expected != a.Version {
		return *a.clone(), &VersionError{Expected: expected, Current: a.Version}
	}
	if a.Acknowledged == ack {
		return *a.clone(), nil
	}
	now := mgr.now().UTC().Truncate(time.Second)
	a.Version++
	a.UpdatedAt = now
	kind := KindUnack
	if ack {
		kind = KindAck
		a.Acknowledged, a.AcknowledgedBy, a.AcknowledgedAt = true, actor, now
	} else {
		a.Acknowledged, a.AcknowledgedBy, a.AcknowledgedAt = false, "", time.Time{}
	}
	var out changes
	out.event(a, now, kind, a.Status, a.Status, actor, note)
	out.rows = append(out.rows, a.clone())
	mgr.emit(&out)
	return *a.clone(), nil
}

// missing tells a final alert (ErrNotActive) from none (ErrNotFound).
func (mgr *Manager) missing(ctx context.Context, tenant, id string) error {
	if mgr.deps.DB == nil {
		return ErrNotFound
	}
	_, err := NewReader(mgr.deps.DB).alert(ctx, tenant, id)
	switch {
	case err == nil:
		return ErrNotActive
	case errors.Is(err, ErrNotFound):
		return ErrNotFound
	}
	return fmt.Errorf("alerts: look up %s: %w", id, err)
}

// Active returns the active alerts of tenant from memory, ordered by
// (updated_at, id).
func (mgr *Manager) Active(tenant string) []Alert {
	mgr.mu.Lock()
	var states []*ruleState
	for k, rs := range mgr.rules {
		if k.tenant == tenant {
			states = append(states, rs)
		}
	}
	mgr.mu.Unlock()
	var out []Alert
	for _, rs := range states {
		rs.mu.Lock()
		for _, a := range rs.alerts {
			out = append(out, *a.clone())
		}
		rs.mu.Unlock()
	}
	slices.SortFunc(out, func(x, y Alert) int {
		if c := x.UpdatedAt.Compare(y.UpdatedAt); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	return out
}
