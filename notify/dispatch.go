package notify

import (
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// This file is the dispatcher's state: which alerts each group holds,
// what has been notified, and when the next notification is due. It does
// no I/O and reads no clock: every method is given the time, so tests
// drive it through hours in microseconds. Only the dispatcher goroutine
// touches it.

// notification is one group's message to the grouped receivers of its
// route (webhook and mail): the alerts that fire and, when the route
// sends resolved alerts, those that resolved since the last one.
type notification struct {
	groupKey    string
	route       *route
	tenant      string
	groupLabels map[string]string
	status      Status   // firing when any alert fires
	alerts      []*Alert // firing and resolved, by start time then fingerprint
	created     time.Time
}

// amPost is one post to one Alertmanager receiver (to each of its URLs).
type amPost struct {
	recv    *receiver
	alerts  []amAlert
	resend  bool // only a periodic re-send of firing alerts: the next one supersedes it
	created time.Time
}

// amAlert is an alert as Alertmanager's API v2 takes it
// (postableAlert).
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// group is what one route holds for one tenant and one value of its
// group_by labels: Alertmanager's aggregation group.
type group struct {
	key    string
	route  *route
	tenant string
	labels map[string]string
	alerts map[string]*Alert // by fingerprint, the latest state of each
	// next is when the group is next flushed: group_wait after it was
	// made, then every group_interval.
	next time.Time
	// notified: a notification was made; lastFiring is the firing set it
	// carried, lastSent its time (for repeat_interval).
	notified   bool
	lastFiring map[string]bool
	lastSent   time.Time
}

// amState is what an Alertmanager receiver has been told.
type amState struct {
	recv     *receiver
	interval time.Duration
	// active are the firing alerts, by the alert's fingerprint, with the
	// label set last posted for them.
	active map[string]*amActive
	// pending are posted at the next flush: new and changed firing
	// alerts, and resolves.
	pending    []amAlert
	nextResend time.Time // zero while nothing fires
}

type amActive struct {
	alert    *Alert
	labels   map[string]string
	labelsFP string
}

type dispatcher struct {
	routes []*route
	groups map[string]*group
	am     []*amState
	amOf   map[*receiver]*amState
}

func newDispatcher(routes []*route, receivers []*receiver) *dispatcher {
	d := &dispatcher{routes: routes, groups: map[string]*group{}, amOf: map[*receiver]*amState{}}
	for _, r := range receivers {
		if r.kind == KindAlertmanager {
			s := &amState{recv: r, interval: r.resendInterval, active: map[string]*amActive{}}
			d.am = append(d.am, s)
			d.amOf[r] = s
		}
	}
	return d
}

// add takes one alert (prepared: fingerprint set, maps owned).
func (d *dispatcher) add(a *Alert, now time.Time) {
	amDone := map[*amState]bool{}
	for _, r := range match(d.routes, a) {
		if r.grouped {
			d.addToGroup(r, a, now)
		}
		for _, recv := range r.receivers {
			// An alert two routes send to one Alertmanager is posted once.
			if s := d.amOf[recv]; s != nil && !amDone[s] {
				amDone[s] = true
				s.add(a, now)
			}
		}
	}
}

func (d *dispatcher) addToGroup(r *route, a *Alert, now time.Time) {
	ls := a.LabelSet()
	gl := map[string]string{LabelTenant: a.Tenant}
	for _, name := range r.groupBy {
		if v, ok := ls[name]; ok {
			gl[name] = v
		}
	}
	key := "{}/" + strconv.Itoa(r.index) + ":" + labelsString(gl)
	g := d.groups[key]
	if g == nil {
		if a.Status == StatusResolved {
			// Nothing of this group fires: nothing to tell.
			return
		}
		g = &group{key: key, route: r, tenant: a.Tenant, labels: gl, alerts: map[string]*Alert{},
			next: now.Add(r.groupWait)}
		d.groups[key] = g
	}
	if a.Restored && a.Status == StatusFiring {
		if _, known := g.alerts[a.Fingerprint]; !known {
			if g.lastFiring == nil {
				g.lastFiring = map[string]bool{}
			}
			g.notified, g.lastFiring[a.Fingerprint] = true, true
			if g.lastSent.IsZero() {
				g.lastSent = now
			}
		}
	}
	if _, known := g.alerts[a.Fingerprint]; !known && a.Status == StatusResolved {
		return
	}
	g.alerts[a.Fingerprint] = a
}

func (s *amState) add(a *Alert, now time.Time) {
	ls := a.LabelSet()
	lfp := Fingerprint(ls)
	old := s.active[a.Fingerprint]
	if old != nil && old.labelsFP != lfp {
		// The same instance under new labels (its severity changed) is
		// another alert to Alertmanager: resolve the old one.
		s.queue(amAlert{Labels: old.labels, Annotations: old.alert.Annotations,
			StartsAt: old.alert.StartsAt, EndsAt: now, GeneratorURL: old.alert.GeneratorURL})
	}
	if a.Status == StatusResolved {
		delete(s.active, a.Fingerprint)
		// Sent even for an alert never posted by this process: the
		// Alertmanager may hold it from before a restart.
		s.queue(amAlert{Labels: ls, Annotations: a.Annotations, StartsAt: a.StartsAt, EndsAt: a.EndsAt, GeneratorURL: a.GeneratorURL})
		if len(s.active) == 0 {
			s.nextResend = time.Time{}
		}
		return
	}
	changed := old == nil || old.labelsFP != lfp || !maps.Equal(old.alert.Annotations, a.Annotations) ||
		!old.alert.StartsAt.Equal(a.StartsAt) || old.alert.GeneratorURL != a.GeneratorURL
	s.active[a.Fingerprint] = &amActive{alert: a, labels: ls, labelsFP: lfp}
	if changed {
		s.queue(amAlert{Labels: ls, Annotations: a.Annotations, StartsAt: a.StartsAt, GeneratorURL: a.GeneratorURL})
	}
	if s.nextResend.IsZero() {
		s.nextResend = now.Add(s.interval)
	}
}

// queue adds x to pending, replacing an earlier state of the same label
// set: Alertmanager gets one state per alert and post.
func (s *amState) queue(x amAlert) {
	fp := Fingerprint(x.Labels)
	for i := range s.pending {
		if Fingerprint(s.pending[i].Labels) == fp {
			s.pending[i] = x
			return
		}
	}
	s.pending = append(s.pending, x)
}

// flush returns what is due at now: group notifications, and posts to
// Alertmanagers.
func (d *dispatcher) flush(now time.Time) ([]*notification, []*amPost) {
	var ns []*notification
	for _, key := range slices.Sorted(maps.Keys(d.groups)) {
		g := d.groups[key]
		if g.next.After(now) {
			continue
		}
		if n := g.flush(now); n != nil {
			ns = append(ns, n)
		}
		if len(g.alerts) == 0 {
			delete(d.groups, key)
		} else {
			g.next = now.Add(g.route.groupInterval)
		}
	}
	var posts []*amPost
	for _, s := range d.am {
		if p := s.flush(now); p != nil {
			posts = append(posts, p)
		}
	}
	return ns, posts
}

// flush decides, as Alertmanager's dedup stage does, whether the group
// has news: a firing alert not in the last notification, a resolved
// alert (when the route sends them), or repeat_interval passed while
// alerts fire. Resolved alerts leave the group either way.
func (g *group) flush(now time.Time) *notification {
	var firing, resolved []*Alert
	for _, a := range g.alerts {
		if a.Status == StatusFiring {
			firing = append(firing, a)
		} else {
			resolved = append(resolved, a)
		}
	}
	r := g.route
	send := false
	if !g.notified {
		send = len(firing) > 0
	} else {
		for _, a := range firing {
			send = send || !g.lastFiring[a.Fingerprint]
		}
		send = send || (r.sendResolved && len(resolved) > 0)
		send = send || (len(firing) > 0 && now.Sub(g.lastSent) >= r.repeatInterval)
	}
	for _, a := range resolved {
		delete(g.alerts, a.Fingerprint)
	}
	if !send {
		// A resolve not told: forget the alert, so that firing again is news.
		for _, a := range resolved {
			delete(g.lastFiring, a.Fingerprint)
		}
		return nil
	}
	alerts := firing
	if r.sendResolved {
		alerts = append(alerts, resolved...)
	}
	sortAlerts(alerts)
	g.notified, g.lastSent = true, now
	g.lastFiring = make(map[string]bool, len(firing))
	for _, a := range firing {
		g.lastFiring[a.Fingerprint] = true
	}
	status := StatusResolved
	if len(firing) > 0 {
		status = StatusFiring
	}
	return &notification{groupKey: g.key, route: r, tenant: g.tenant, groupLabels: g.labels,
		status: status, alerts: alerts, created: now}
}

// flush posts what is pending and, every resend interval, every firing
// alert again. A firing alert is posted with endsAt 4 intervals ahead,
// as Prometheus does: re-sends move it on, and if they stop Alertmanager
// resolves the alert by itself.
func (s *amState) flush(now time.Time) *amPost {
	resend := !s.nextResend.IsZero() && !now.Before(s.nextResend)
	if len(s.pending) == 0 && !resend {
		return nil
	}
	validUntil := now.Add(4 * s.interval)
	var out []amAlert
	posted := map[string]bool{}
	for _, x := range s.pending {
		if x.EndsAt.IsZero() {
			x.EndsAt = validUntil
		}
		posted[Fingerprint(x.Labels)] = true
		out = append(out, x)
	}
	onlyResend := len(s.pending) == 0
	s.pending = nil
	if resend {
		for _, fp := range slices.Sorted(maps.Keys(s.active)) {
			a := s.active[fp]
			if posted[a.labelsFP] {
				continue
			}
			out = append(out, amAlert{Labels: a.labels, Annotations: a.alert.Annotations,
				StartsAt: a.alert.StartsAt, EndsAt: validUntil, GeneratorURL: a.alert.GeneratorURL})
		}
		s.nextResend = now.Add(s.interval)
	}
	if len(out) == 0 {
		return nil
	}
	return &amPost{recv: s.recv, alerts: out, resend: onlyResend, created: now}
}

// next is when flush has something to do; zero when nothing is
// scheduled.
func (d *dispatcher) next() time.Time {
	var t time.Time
	earlier := func(u time.Time) {
		if !u.IsZero() && (t.IsZero() || u.Before(t)) {
			t = u
		}
	}
	for _, g := range d.groups {
		earlier(g.next)
	}
	for _, s := range d.am {
		earlier(s.nextResend)
	}
	return t
}

// labelsString writes a label set as Prometheus does ({a="1", b="2"}),
// the group part of Alertmanager's groupKey.
func labelsString(ls map[string]string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range slices.Sorted(maps.Keys(ls)) {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(ls[k]))
	}
	b.WriteByte('}')
	return b.String()
}

func sortAlerts(as []*Alert) {
	sort.Slice(as, func(i, j int) bool {
		if !as[i].StartsAt.Equal(as[j].StartsAt) {
			return as[i].StartsAt.Before(as[j].StartsAt)
		}
		return as[i].Fingerprint < as[j].Fingerprint
	})
}
