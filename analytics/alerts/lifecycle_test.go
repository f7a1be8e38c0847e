package alerts_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/notify"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func rule(forH, keep alerts.Hold) alerts.Rule {
	return alerts.Rule{
		Tenant: "acme", Name: "ddos", Severity: notify.SeverityWarning,
		Labels:      map[string]string{"team": "noc"},
		Annotations: map[string]string{"summary": "{{.Labels.dst_address}} at {{.Value}} ({{.Severity}})"},
		For:         forH, KeepFiringFor: keep,
	}
}

func TestFingerprint(t *testing.T) {
	a := alerts.Fingerprint("acme", "ddos", map[string]string{"dst_address": "192.0.2.1", "exporter": "r1", "if_index": "3"})
	b := alerts.Fingerprint("acme", "ddos", map[string]string{"if_index": "3", "exporter": "r1", "dst_address": "192.0.2.1", "empty": ""})
	if a != b {
		t.Errorf("fingerprint depends on label order or empty labels: %s != %s", a, b)
	}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(a) {
		t.Errorf("fingerprint %q is not 16 hex digits", a)
	}
	want := notify.Fingerprint(map[string]string{"alertname": "ddos", "tenant": "acme", "dst_address": "192.0.2.1", "exporter": "r1", "if_index": "3"})
	if a != want {
		t.Errorf("fingerprint %s, want Alertmanager's over the subject, alertname and tenant: %s", a, want)
	}
	for _, other := range []string{
		alerts.Fingerprint("other", "ddos", map[string]string{"dst_address": "192.0.2.1", "exporter": "r1", "if_index": "3"}),
		alerts.Fingerprint("acme", "scan", map[string]string{"dst_address": "192.0.2.1", "exporter": "r1", "if_index": "3"}),
		alerts.Fingerprint("acme", "ddos", map[string]string{"dst_address": "192.0.2.2", "exporter": "r1", "if_index": "3"}),
	} {
		if other == a {
			t.Errorf("tenant, rule and subject must all change the fingerprint")
		}
	}
}

// step is one evaluation at t0 + i minutes.
type step struct {
	present  bool
	severity notify.Severity // the instance's, when set
	want     alerts.Status   // the active alert's status after it; "" none
}

func TestStateMachine(t *testing.T) {
	on := step{present: true}
	off := step{}
	firing := func(s step) step { s.want = alerts.StatusFiring; return s }
	pending := func(s step) step { s.want = alerts.StatusPending; return s }
	for _, tc := range []struct {
		name     string
		forH     alerts.Hold
		keep     alerts.Hold
		steps    []step
		notified []string // status/severity of each notification, in order
	}{
		{"no for: fires at once, resolves at once", alerts.Hold{}, alerts.Hold{},
			[]step{firing(on), off}, []string{"firing/warning", "resolved/warning"}},
		{"for 3 evaluations", alerts.Hold{Evaluations: 3}, alerts.Hold{},
			[]step{pending(on), pending(on), firing(on), firing(on), off}, []string{"firing/warning", "resolved/warning"}},
		{"for 2 minutes", alerts.Hold{Duration: 2 * time.Minute}, alerts.Hold{},
			[]step{pending(on), pending(on), firing(on)}, []string{"firing/warning"}},
		{"pending that disappears is dropped, silently", alerts.Hold{Evaluations: 2}, alerts.Hold{},
			[]step{pending(on), off, pending(on), off, off}, nil},
		{"flapping does not resolve nor fire again", alerts.Hold{}, alerts.Hold{Evaluations: 2},
			[]step{firing(on), firing(off), firing(on), firing(off), firing(on), firing(off), off},
			[]string{"firing/warning", "resolved/warning"}},
		{"keep firing for 3 minutes", alerts.Hold{}, alerts.Hold{Duration: 3 * time.Minute},
			[]step{firing(on), firing(off), firing(off), off}, []string{"firing/warning", "resolved/warning"}},
		{"severity change while firing notifies", alerts.Hold{}, alerts.Hold{},
			[]step{firing(on), firing(step{present: true, severity: notify.SeverityCritical}), firing(step{present: true, severity: notify.SeverityCritical}), off},
			[]string{"firing/warning", "firing/critical", "resolved/critical"}},
		{"severity change while pending does not", alerts.Hold{Evaluations: 3}, alerts.Hold{},
			[]step{pending(on), pending(step{present: true, severity: notify.SeverityCritical}), firing(step{present: true, severity: notify.SeverityCritical})},
			[]string{"firing/critical"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			m, err := alerts.New(alerts.Config{}, alerts.Deps{Notifier: rec})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			r := rule(tc.forH, tc.keep)
			var lastVersion uint64
			var lastID string
			for i, s := range tc.steps {
				var ins []alerts.Instance
				if s.present {
					in := inst(float64(100+i), "dst_address", "192.0.2.1")
					in.Severity = s.severity
					ins = append(ins, in)
				}
				eval(t, m, r, t0.Add(time.Duration(i)*time.Minute), ins...)
				active := m.Active("acme")
				switch {
				case s.want == "" && len(active) != 0:
					t.Fatalf("step %d: active %+v, want none", i, active)
				case s.want != "" && (len(active) != 1 || active[0].Status != s.want):
					t.Fatalf("step %d: active %+v, want one %s", i, active, s.want)
				case s.want != "":
					if active[0].ID != lastID {
						lastID, lastVersion = active[0].ID, 0
					}
					if active[0].Version <= lastVersion {
						t.Errorf("step %d: version %d after %d", i, active[0].Version, lastVersion)
					}
					lastVersion = active[0].Version
				}
			}
			if err := m.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, n := range rec.all() {
				got = append(got, string(n.Status)+"/"+string(n.Severity))
			}
			if !slices.Equal(got, tc.notified) {
				t.Errorf("notifications %q, want %q", got, tc.notified)
			}
		})
	}
}

func TestAlertContents(t *testing.T) {
	rec := &recorder{}
	m := started(t, alerts.Deps{Notifier: rec})
	r := rule(alerts.Hold{Evaluations: 2}, alerts.Hold{})
	r.GeneratorURL = "http://flowhouse/rules/ddos"
	eval(t, m, r, t0.Add(500*time.Millisecond), inst(10, "dst_address", "192.0.2.1", "exporter", "r1"))
	first := only(t, m, "acme")
	in := inst(30, "dst_address", "192.0.2.1", "exporter", "r1")
	in.Annotations = map[string]string{"description": "given"}
	eval(t, m, r, t0.Add(time.Minute), in)
	eval(t, m, r, t0.Add(2*time.Minute), inst(20, "exporter", "r1", "dst_address", "192.0.2.1"))
	a := only(t, m, "acme")
	if a.ID != first.ID || !strings.HasPrefix(a.ID, a.Fingerprint+"-") {
		t.Errorf("id %q then %q: want stable, fingerprint-prefixed", first.ID, a.ID)
	}
	want := alerts.Alert{
		ID: a.ID, Fingerprint: alerts.Fingerprint("acme", "ddos", map[string]string{"dst_address": "192.0.2.1", "exporter": "r1"}),
		Tenant: "acme", Rule: "ddos", Subject: map[string]string{"dst_address": "192.0.2.1", "exporter": "r1"},
		Severity: notify.SeverityWarning, Labels: map[string]string{"team": "noc"},
		Annotations: map[string]string{"summary": "192.0.2.1 at 20 (warning)"},
		Status:      alerts.StatusFiring, StartsAt: t0, FiredAt: t0.Add(time.Minute),
		UpdatedAt: t0.Add(2 * time.Minute), LastSeenAt: t0.Add(2 * time.Minute),
		LastValue: 20, PeakValue: 30, Evaluations: 3, Version: 3, // one per evaluation
	}
	if fmt.Sprintf("%+v", a) != fmt.Sprintf("%+v", want) {
		t.Errorf("alert\n got %+v\nwant %+v", a, want)
	}
	n := rec.waitN(t, 1)[0]
	wantN := notify.Alert{
		Fingerprint: a.Fingerprint, Tenant: "acme", Rule: "ddos", Status: notify.StatusFiring, Severity: notify.SeverityWarning,
		Labels:      map[string]string{"dst_address": "192.0.2.1", "exporter": "r1", "team": "noc"},
		Annotations: map[string]string{"summary": "192.0.2.1 at 30 (warning)", "description": "given"},
		StartsAt:    t0.Add(time.Minute), UpdatedAt: t0.Add(time.Minute), GeneratorURL: "http://flowhouse/rules/ddos",
	}
	if fmt.Sprintf("%+v", n) != fmt.Sprintf("%+v", wantN) {
		t.Errorf("notification\n got %+v\nwant %+v", n, wantN)
	}
}

func TestAck(t *testing.T) {
	clk := newClock()
	ctx := context.Background()
	m := started(t, alerts.Deps{Now: clk.Now})
	r := rule(alerts.Hold{}, alerts.Hold{})
	eval(t, m, r, t0, inst(1, "dst_address", "192.0.2.1"))
	a := only(t, m, "acme")

	if _, err := m.Ack(ctx, "acme", a.ID, "alice", a.Version+1); !errors.As(err, new(*alerts.VersionError)) {
		t.Fatalf("ack with a stale version: %v, want a VersionError", err)
	}
	if _, err := m.Ack(ctx, "other", a.ID, "alice", 0); !errors.Is(err, alerts.ErrNotFound) {
		t.Fatalf("ack by another tenant: %v, want ErrNotFound", err)
	}
	if _, err := m.Ack(ctx, "acme", "nope", "alice", 0); !errors.Is(err, alerts.ErrNotFound) {
		t.Fatalf("ack of no alert: %v, want ErrNotFound", err)
	}
	acked, err := m.Ack(ctx, "acme", a.ID, "alice", a.Version)
	if err != nil {
		t.Fatal(err)
	}
	if !acked.Acknowledged || acked.AcknowledgedBy != "alice" || !acked.AcknowledgedAt.Equal(clk.Now()) || acked.Version != a.Version+1 {
		t.Fatalf("acked: %+v", acked)
	}
	again, err := m.Ack(ctx, "acme", a.ID, "bob", 0)
	if err != nil || again.Version != acked.Version || again.AcknowledgedBy != "alice" {
		t.Fatalf("second ack: %+v, %v: want no change", again, err)
	}
	un, err := m.Unack(ctx, "acme", a.ID, "bob", acked.Version)
	if err != nil || un.Acknowledged || un.AcknowledgedBy != "" || un.Version != acked.Version+1 {
		t.Fatalf("unack: %+v, %v", un, err)
	}
	if _, err := m.Ack(ctx, "acme", a.ID, "", 0); err == nil {
		t.Fatal("ack without an actor: no error")
	}
	// Acknowledged, then still firing: the flag stays; then resolved: gone.
	if _, err := m.Ack(ctx, "acme", a.ID, "carol", 0); err != nil {
		t.Fatal(err)
	}
	eval(t, m, r, t0.Add(time.Minute), inst(1, "dst_address", "192.0.2.1"))
	if a := only(t, m, "acme"); !a.Acknowledged || a.AcknowledgedBy != "carol" {
		t.Fatalf("acknowledgement lost by an evaluation: %+v", a)
	}
	eval(t, m, r, t0.Add(2*time.Minute))
	eval(t, m, r, t0.Add(3*time.Minute), inst(1, "dst_address", "192.0.2.1"))
	if a2 := only(t, m, "acme"); a2.Acknowledged || a2.ID == a.ID {
		t.Fatalf("after resolve and a new firing: %+v, want a new alert, not acknowledged", a2)
	}
	if _, err := m.Ack(ctx, "acme", a.ID, "alice", 0); !errors.Is(err, alerts.ErrNotFound) {
		t.Fatalf("ack of a resolved alert without a database: %v, want ErrNotFound", err)
	}
}

func TestInvalidInstancesRefused(t *testing.T) {
	m := started(t, alerts.Deps{})
	r := rule(alerts.Hold{}, alerts.Hold{})
	res, err := m.Evaluate(context.Background(), alerts.Evaluation{Rule: r, At: t0, Instances: []alerts.Instance{
		inst(1, "dst_address", "192.0.2.1"), inst(1, "bad-name", "x"), inst(1, "alertname", "x"),
		{Labels: map[string]string{"a": "b"}, Severity: "fatal"},
	}})
	if err == nil || res.Invalid != 3 || res.Firing != 1 {
		t.Fatalf("result %+v, err %v: want 3 refused, 1 firing", res, err)
	}
	bad := r
	bad.Severity = "huge"
	if _, err := m.Evaluate(context.Background(), alerts.Evaluation{Rule: bad, At: t0}); err == nil {
		t.Fatal("rule with a bad severity: no error")
	}
	bad = r
	bad.For = alerts.Hold{Evaluations: 2, Duration: time.Minute}
	if _, err := m.Evaluate(context.Background(), alerts.Evaluation{Rule: bad, At: t0}); err == nil {
		t.Fatal("rule with both kinds of for: no error")
	}
	m2, _ := alerts.New(alerts.Config{}, alerts.Deps{})
	if _, err := m2.Evaluate(context.Background(), alerts.Evaluation{Rule: r, At: t0}); !errors.Is(err, alerts.ErrNotStarted) {
		t.Fatalf("evaluate before Start: %v", err)
	}
}

// blocking is a Notifier that blocks until released.
type blocking struct{ release chan struct{} }

func (b *blocking) Notify(notify.Alert) error { <-b.release; return nil }

func TestSlowNotifierDoesNotBlockEvaluation(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := &blocking{release: make(chan struct{})}
	m, err := alerts.New(alerts.Config{NotifyQueueSize: 2}, alerts.Deps{Notifier: b, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := rule(alerts.Hold{}, alerts.Hold{})
	var ins []alerts.Instance
	for i := range 20 {
		ins = append(ins, inst(1, "dst_address", fmt.Sprintf("192.0.2.%d", i)))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		eval(t, m, r, t0, ins...)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("evaluation blocked on the notifier")
	}
	dropped := value(t, reg, "flowhouse_alerts_notify_failures_total", "reason", "queue_full")
	if dropped < 17 { // 20, less up to 2 queued and 1 being notified
		t.Errorf("dropped %v notifications, want at least 17", dropped)
	}
	close(b.release)
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// value of the series of name whose labels include the given pairs.
func value(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, mt := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range mt.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue metric
				}
			}
			switch {
			case mt.Counter != nil:
				return mt.Counter.GetValue()
			case mt.Gauge != nil:
				return mt.Gauge.GetValue()
			}
		}
	}
	return 0
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := started(t, alerts.Deps{Registerer: reg})
	r := rule(alerts.Hold{Evaluations: 2}, alerts.Hold{})
	eval(t, m, r, t0, inst(1, "dst_address", "a"), inst(1, "dst_address", "b"))
	eval(t, m, r, t0.Add(time.Minute), inst(1, "dst_address", "a"))
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"flowhouse_alerts", []string{"tenant", "acme", "rule", "ddos", "state", "firing"}, 1},
		{"flowhouse_alerts", []string{"tenant", "acme", "rule", "ddos", "state", "pending"}, 0},
		{"flowhouse_alerts_transitions_total", []string{"from", "new", "to", "pending"}, 2},
		{"flowhouse_alerts_transitions_total", []string{"from", "pending", "to", "firing"}, 1},
		{"flowhouse_alerts_transitions_total", []string{"from", "pending", "to", "dropped"}, 1},
	} {
		if got := value(t, reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// flakyDB fails every Exec until healed and records the inserts.
type flakyDB struct {
	mu      sync.Mutex
	healed  bool
	inserts []string
}

func (f *flakyDB) Exec(_ context.Context, q string, _ ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.healed {
		return errors.New("database away")
	}
	f.inserts = append(f.inserts, q[:strings.Index(q, " (")])
	return nil
}

func (f *flakyDB) Query(context.Context, string, ...any) (dbapi.Rows, error) { return emptyRows{}, nil }

func (f *flakyDB) heal() { f.mu.Lock(); f.healed = true; f.mu.Unlock() }

type emptyRows struct{}

func (emptyRows) Next() bool        { return false }
func (emptyRows) Scan(...any) error { return nil }
func (emptyRows) Columns() []string { return nil }
func (emptyRows) Err() error        { return nil }
func (emptyRows) Close() error      { return nil }

func TestPersistFailuresRetried(t *testing.T) {
	reg := prometheus.NewRegistry()
	db := &flakyDB{}
	m, err := alerts.New(alerts.Config{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, MaxPendingEvents: 3},
		alerts.Deps{DB: db, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := rule(alerts.Hold{}, alerts.Hold{})
	var ins []alerts.Instance
	for i := range 5 { // one new alert each, the others unchanged: 5 events
		ins = append(ins, inst(1, "dst_address", fmt.Sprint(i)))
		eval(t, m, r, t0, ins...)
	}
	testkit.Eventually(t, "failed writes counted", 5*time.Second, func() bool {
		return value(t, reg, "flowhouse_alerts_persist_failures_total", "reason", "other") >= 2
	})
	if got := value(t, reg, "flowhouse_alerts_persist_failures_total", "reason", "queue_full"); got != 2 {
		t.Errorf("events dropped: %v, want 2 (5 events, 3 kept)", got)
	}
	db.heal()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// Events, then alert_versions, then alerts: a reader of an alerts row
	// finds the others written.
	if want := []string{"INSERT INTO alert_events", "INSERT INTO alert_versions", "INSERT INTO alerts"}; !slices.Equal(db.inserts, want) {
		t.Errorf("inserts %q, want %q (coalesced)", db.inserts, want)
	}
}

func TestConcurrentRulesAndAcks(t *testing.T) {
	rec := &recorder{}
	m := started(t, alerts.Deps{Notifier: rec, DB: &flakyDB{healed: true}})
	var wg sync.WaitGroup
	const rules, evals = 8, 30
	for i := range rules {
		wg.Add(2)
		r := rule(alerts.Hold{Evaluations: 2}, alerts.Hold{Evaluations: 1})
		r.Name = fmt.Sprintf("rule%d", i)
		go func() {
			defer wg.Done()
			for e := range evals {
				var ins []alerts.Instance
				if e%3 != 2 {
					ins = []alerts.Instance{inst(float64(e), "dst_address", "a"), inst(float64(e), "dst_address", "b")}
				}
				if _, err := m.Evaluate(context.Background(), alerts.Evaluation{Rule: r, At: t0.Add(time.Duration(e) * time.Minute), Instances: ins}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range evals {
				for _, a := range m.Active("acme") {
					m.Ack(context.Background(), "acme", a.ID, "alice", 0)
				}
			}
		}()
	}
	wg.Wait()
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Each rule: pending, firing at the 2nd, resolved at the 3rd, per
	// subject, every 3 evaluations: 10 firing and 10 resolved each.
	counts := map[notify.Status]int{}
	for _, n := range rec.all() {
		counts[n.Status]++
	}
	if want := rules * 2 * evals / 3; counts[notify.StatusFiring] != want || counts[notify.StatusResolved] != want {
		t.Errorf("notifications %v, want %d of each", counts, want)
	}
}

func TestStopCountsWhatIsNotWritten(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := alerts.New(alerts.Config{RetryInitial: time.Millisecond, RetryMax: time.Millisecond},
		alerts.Deps{DB: &flakyDB{}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	eval(t, m, rule(alerts.Hold{}, alerts.Hold{}), t0, inst(1, "dst_address", "a"))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := m.Stop(ctx); err == nil || !strings.Contains(err.Error(), "1 alert rows and 1 events not written") {
		t.Fatalf("Stop with the database away: %v", err)
	}
	if got := value(t, reg, "flowhouse_alerts_persist_failures_total", "reason", "shutdown"); got != 2 {
		t.Errorf("lost at shutdown: %v, want 2", got)
	}
	if _, err := m.Evaluate(context.Background(), alerts.Evaluation{Rule: rule(alerts.Hold{}, alerts.Hold{}), At: t0}); !errors.Is(err, alerts.ErrStopped) {
		t.Errorf("evaluate after Stop: %v, want ErrStopped", err)
	}
}

// tableFlakyDB fails the inserts into one table until healed, and keeps
// the ids, versions and prev_updated_at of the alert_versions rows.
type tableFlakyDB struct {
	mu       sync.Mutex
	failing  string
	failures int
	versions []string // "id v<version> prev=<unix>"
}

func (f *tableFlakyDB) Exec(_ context.Context, q string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	table := strings.TrimPrefix(q[:strings.Index(q, " (")], "INSERT INTO ")
	if table == f.failing {
		f.failures++
		return errors.New("database away")
	}
	if table == "alert_versions" {
		ids, versions, prevs := args[1].([]string), args[2].([]uint64), args[10].([]uint32)
		for i := range ids {
			f.versions = append(f.versions, fmt.Sprintf("%s v%d prev=%d", ids[i], versions[i], prevs[i]))
		}
	}
	return nil
}

func (f *tableFlakyDB) Query(context.Context, string, ...any) (dbapi.Rows, error) {
	return emptyRows{}, nil
}

func (f *tableFlakyDB) state() (int, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failures, slices.Clone(f.versions)
}

// An alert_versions row is written once per version written, even when
// the alerts insert after it fails and is retried, and its
// prev_updated_at is the updated_at of the alert's previous row.
func TestAlertVersionsWrittenOnce(t *testing.T) {
	db := &tableFlakyDB{failing: "alerts"}
	m, err := alerts.New(alerts.Config{RetryInitial: time.Millisecond, RetryMax: 2 * time.Millisecond}, alerts.Deps{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := rule(alerts.Hold{}, alerts.Hold{})
	eval(t, m, r, t0, inst(1, "dst_address", "a"))
	testkit.Eventually(t, "alerts insert retried", 5*time.Second, func() bool { n, _ := db.state(); return n >= 3 })
	db.mu.Lock()
	db.failing = ""
	db.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	eval(t, m, r, t0.Add(time.Minute), inst(1, "dst_address", "a"))
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	_, got := db.state()
	want := []string{"v1 prev=0", fmt.Sprintf("v2 prev=%d", t0.Unix())}
	for i := range got {
		got[i] = got[i][strings.Index(got[i], " ")+1:]
	}
	if !slices.Equal(got, want) {
		t.Errorf("alert_versions rows %q, want %q", got, want)
	}
}
