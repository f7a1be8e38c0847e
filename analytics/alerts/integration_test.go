package alerts_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/notify"
)

func TestMain(m *testing.M) { enginetest.Main(m) }

// TestServer runs the suite on the ClickHouse 18.16 server, a fresh
// database per test.
func TestServer(t *testing.T) {
	suite(t, func(t *testing.T) dbapi.DB { return enginetest.Server(t).DB })
}

// TestEmbedded runs the suite on the embedded engine, its alert tables
// emptied before each subtest.
func TestEmbedded(t *testing.T) {
	suite(t, func(t *testing.T) dbapi.DB { return enginetest.Embedded(t, "alerts", "alert_events").DB })
}

func suite(t *testing.T, open func(t *testing.T) dbapi.DB) {
	t.Run("restart keeps alerts and acknowledgements", func(t *testing.T) { testRestart(t, open(t)) })
	t.Run("list and get", func(t *testing.T) { testListGet(t, open(t)) })
	t.Run("schema example", func(t *testing.T) { testSchemaExample(t, open(t)) })
}

// testSchemaExample runs the example query of README.md's schema reference.
func testSchemaExample(t *testing.T, db dbapi.DB) {
	query := testkit.READMEBlock(t, "Example: the alerts firing now", "sql")
	m := startOn(t, db, &recorder{}, newClock())
	r := rule(alerts.Hold{Evaluations: 2}, alerts.Hold{})
	eval(t, m, r, t0, inst(1, "dst_address", "a"), inst(1, "dst_address", "b"))
	eval(t, m, r, t0.Add(time.Minute), inst(1, "dst_address", "a"))
	flush(t, m)
	rows, err := db.Query(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var n int
	for rows.Next() {
		var id, rule, sev string
		var names, values []string
		var fired time.Time
		var last float64
		var acked uint8
		if err := rows.Scan(&id, &rule, &sev, &names, &values, &fired, &last, &acked); err != nil {
			t.Fatal(err)
		}
		if rule != "ddos" || !slices.Equal(values, []string{"a"}) || !fired.Equal(t0.Add(time.Minute)) {
			t.Errorf("row %s %s %v %v", id, rule, values, fired)
		}
		n++
	}
	if err := rows.Err(); err != nil || n != 1 {
		t.Fatalf("%d rows, err %v; want the one firing alert", n, err)
	}
}

func startOn(t *testing.T, db dbapi.DB, rec *recorder, clk *clock) *alerts.Manager {
	t.Helper()
	m, err := alerts.New(alerts.Config{}, alerts.Deps{DB: db, Notifier: rec, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop(context.Background()) })
	return m
}

func stop(t *testing.T, m *alerts.Manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func flush(t *testing.T, m *alerts.Manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func byDst(as []alerts.Alert) map[string]alerts.Alert {
	out := map[string]alerts.Alert{}
	for _, a := range as {
		out[a.Subject["dst_address"]] = a
	}
	return out
}

func notices(ns []notify.Alert) []string {
	var out []string
	for _, n := range ns {
		line := fmt.Sprintf("%s %s %s", n.Rule, n.Labels["dst_address"], n.Status)
		if n.Restored {
			line += " (restored)"
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return out
}

// history is an alert's events as "kind from>to actor", with versions
// checked to increase.
func history(t *testing.T, r *alerts.Reader, tenant, id string) []string {
	t.Helper()
	_, events, err := r.Get(context.Background(), tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var last uint64
	for _, e := range events {
		if e.Version <= last || e.AlertID != id || e.Tenant != tenant {
			t.Errorf("event %+v after version %d", e, last)
		}
		last = e.Version
		out = append(out, strings.TrimSpace(fmt.Sprintf("%s %s>%s %s", e.Kind, e.From, e.To, e.Actor)))
	}
	return out
}

func testRestart(t *testing.T, db dbapi.DB) {
	ctx := context.Background()
	clk := newClock()
	rec1 := &recorder{}
	m1 := startOn(t, db, rec1, clk)
	ddos := rule(alerts.Hold{Evaluations: 2}, alerts.Hold{Evaluations: 2})
	scan := rule(alerts.Hold{}, alerts.Hold{})
	scan.Name = "scan"
	a, b, d := inst(5, "dst_address", "192.0.2.1"), inst(7, "dst_address", "192.0.2.2"), inst(9, "dst_address", "192.0.2.4")
	c := inst(1, "dst_address", "192.0.2.3")

	eval(t, m1, ddos, t0, a, b)
	eval(t, m1, ddos, t0.Add(time.Minute), a, b)
	eval(t, m1, scan, t0.Add(time.Minute), c)
	eval(t, m1, scan, t0.Add(2*time.Minute))
	active := byDst(m1.Active("acme"))
	if _, err := m1.Ack(ctx, "acme", active["192.0.2.1"].ID, "alice", active["192.0.2.1"].Version); err != nil {
		t.Fatal(err)
	}
	eval(t, m1, ddos, t0.Add(2*time.Minute), a, d)
	before := byDst(m1.Active("acme"))
	flush(t, m1)
	stop(t, m1)
	if got, want := notices(rec1.all()), []string{"ddos 192.0.2.1 firing", "ddos 192.0.2.2 firing", "scan 192.0.2.3 firing", "scan 192.0.2.3 resolved"}; !slices.Equal(got, want) {
		t.Fatalf("first run notified %q, want %q", got, want)
	}

	rec2 := &recorder{}
	m2 := startOn(t, db, rec2, clk)
	after := byDst(m2.Active("acme"))
	if fmt.Sprintf("%+v", after) != fmt.Sprintf("%+v", before) {
		t.Fatalf("after restart:\n got %+v\nwant %+v", after, before)
	}
	if x := after["192.0.2.1"]; x.Status != alerts.StatusFiring || !x.Acknowledged || x.AcknowledgedBy != "alice" {
		t.Fatalf("A after restart: %+v", x)
	}
	// The firing alerts are handed back as already notified (so that
	// Alertmanager keeps them); then A still firing: nothing; B resolves
	// (2nd evaluation missed); D fires (2nd evaluation seen).
	eval(t, m2, ddos, t0.Add(3*time.Minute), a, d)
	stop(t, m2)
	if got, want := notices(rec2.all()), []string{"ddos 192.0.2.1 firing (restored)", "ddos 192.0.2.2 firing (restored)", "ddos 192.0.2.2 resolved", "ddos 192.0.2.4 firing"}; !slices.Equal(got, want) {
		t.Fatalf("second run notified %q, want %q (nothing new for A)", got, want)
	}

	r := alerts.NewReader(db)
	for _, tc := range []struct {
		id   string
		want []string
	}{
		{before["192.0.2.1"].ID, []string{"transition >pending", "transition pending>firing", "ack firing>firing alice"}},
		{before["192.0.2.2"].ID, []string{"transition >pending", "transition pending>firing", "transition firing>resolved"}},
		{before["192.0.2.4"].ID, []string{"transition >pending", "transition pending>firing"}},
	} {
		if got := history(t, r, "acme", tc.id); !slices.Equal(got, tc.want) {
			t.Errorf("events of %s: %q, want %q", tc.id, got, tc.want)
		}
	}
	resolved, err := r.List(ctx, alerts.Filter{Tenant: "acme", Rule: "scan"})
	if err != nil || len(resolved) != 1 {
		t.Fatalf("scan alerts: %+v, %v", resolved, err)
	}
	if x := resolved[0]; x.Status != alerts.StatusResolved || !x.EndsAt.Equal(t0.Add(2*time.Minute)) || x.Version != 2 {
		t.Errorf("resolved C: %+v", x)
	}
	if got := history(t, r, "acme", resolved[0].ID); !slices.Equal(got, []string{"transition >firing", "transition firing>resolved"}) {
		t.Errorf("events of C: %q", got)
	}
	m3 := startOn(t, db, &recorder{}, clk)
	if _, err := m3.Ack(ctx, "acme", resolved[0].ID, "alice", 0); !errors.Is(err, alerts.ErrNotActive) {
		t.Errorf("ack of a resolved alert: %v, want ErrNotActive", err)
	}
	if _, err := m3.Ack(ctx, "other", resolved[0].ID, "alice", 0); !errors.Is(err, alerts.ErrNotFound) {
		t.Errorf("ack of another tenant's alert: %v, want ErrNotFound", err)
	}
	if b := byDst(m3.Active("acme")); len(b) != 2 || b["192.0.2.4"].Status != alerts.StatusFiring {
		t.Errorf("third start: %+v, want A and D firing", b)
	}
	stop(t, m3)

	// notify_on_start: the firing alerts are notified again.
	rec4 := &recorder{}
	m4, err := alerts.New(alerts.Config{NotifyOnStart: true}, alerts.Deps{DB: db, Notifier: rec4, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := m4.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stop(t, m4)
	if got, want := notices(rec4.all()), []string{"ddos 192.0.2.1 firing", "ddos 192.0.2.4 firing"}; !slices.Equal(got, want) {
		t.Errorf("notify_on_start notified %q, want %q", got, want)
	}
}

func testListGet(t *testing.T, db dbapi.DB) {
	ctx := context.Background()
	clk := newClock()
	m := startOn(t, db, &recorder{}, clk)
	ddos := rule(alerts.Hold{}, alerts.Hold{})
	scan := rule(alerts.Hold{}, alerts.Hold{})
	scan.Name = "scan"
	crit := inst(3, "dst_address", "y1")
	crit.Severity = notify.SeverityCritical
	other := ddos
	other.Tenant = "other"

	eval(t, m, ddos, t0, inst(1, "dst_address", "x1"))
	eval(t, m, scan, t0.Add(time.Minute), crit)
	eval(t, m, other, t0.Add(2*time.Minute), inst(1, "dst_address", "z1"))
	eval(t, m, ddos, t0.Add(3*time.Minute), inst(2, "dst_address", "x2"))
	flush(t, m)
	r := m.Reader()

	all, err := r.List(ctx, alerts.Filter{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, a := range all {
		ids[a.Subject["dst_address"]] = a.ID
	}
	// x1 and x2 share updated_at: ordered by id.
	x1, x2 := ids["x1"], ids["x2"]
	late := []string{x1, x2}
	slices.Sort(late)
	zs, err := r.List(ctx, alerts.Filter{Tenant: "other"})
	if err != nil || len(zs) != 1 {
		t.Fatalf("other tenant: %+v, %v", zs, err)
	}
	for _, tc := range []struct {
		name string
		f    alerts.Filter
		want []string
	}{
		{"tenant", alerts.Filter{Tenant: "acme"}, append([]string{ids["y1"]}, late...)},
		{"firing", alerts.Filter{Tenant: "acme", Status: []alerts.Status{alerts.StatusFiring}}, []string{ids["y1"], x2}},
		{"resolved", alerts.Filter{Tenant: "acme", Status: []alerts.Status{alerts.StatusResolved}}, []string{x1}},
		{"critical", alerts.Filter{Tenant: "acme", Severity: []notify.Severity{notify.SeverityCritical}}, []string{ids["y1"]}},
		{"rule", alerts.Filter{Tenant: "acme", Rule: "ddos"}, late},
		{"since", alerts.Filter{Tenant: "acme", Since: t0.Add(2 * time.Minute)}, late},
		{"until", alerts.Filter{Tenant: "acme", Until: t0.Add(2 * time.Minute)}, []string{ids["y1"]}},
		{"after", alerts.Filter{Tenant: "acme", After: &alerts.Cursor{UpdatedAt: t0.Add(3 * time.Minute), ID: late[0]}}, late[1:]},
		{"limit", alerts.Filter{Tenant: "acme", Limit: 2}, []string{ids["y1"], late[0]}},
		{"all tenants", alerts.Filter{AllTenants: true, Status: []alerts.Status{alerts.StatusFiring}, Rule: "ddos"}, []string{zs[0].ID, x2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.List(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var gotIDs []string
			for _, a := range got {
				gotIDs = append(gotIDs, a.ID)
			}
			if !slices.Equal(gotIDs, tc.want) {
				t.Errorf("ids %q, want %q", gotIDs, tc.want)
			}
		})
	}
	// Pages of one cover the list in order.
	var paged []string
	f := alerts.Filter{Tenant: "acme", Limit: 1}
	for range 5 {
		page, err := r.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page[0].ID)
		f.After = &alerts.Cursor{UpdatedAt: page[0].UpdatedAt, ID: page[0].ID}
	}
	if want := append([]string{ids["y1"]}, late...); !slices.Equal(paged, want) {
		t.Errorf("paged %q, want %q", paged, want)
	}
	// No labels, annotations nor subject: empty arrays.
	bare := alerts.Rule{Tenant: "bare", Name: "global", Severity: notify.SeverityInfo}
	eval(t, m, bare, t0, alerts.Instance{Value: 1})
	flush(t, m)
	if got, err := r.List(ctx, alerts.Filter{Tenant: "bare"}); err != nil || len(got) != 1 ||
		len(got[0].Subject)+len(got[0].Labels)+len(got[0].Annotations) != 0 || got[0].Status != alerts.StatusFiring {
		t.Errorf("alert without labels: %+v, %v", got, err)
	}
	if _, err := r.List(ctx, alerts.Filter{}); err == nil {
		t.Error("list without a tenant: no error")
	}

	got, events, err := r.Get(ctx, "acme", ids["y1"])
	if err != nil {
		t.Fatal(err)
	}
	want := m.Active("acme")[0] // y1, updated first
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("get\n got %+v\nwant %+v", got, want)
	}
	if len(events) != 1 || events[0].Kind != alerts.KindTransition || events[0].To != alerts.StatusFiring ||
		events[0].Severity != notify.SeverityCritical || events[0].Value != 3 || !events[0].At.Equal(t0.Add(time.Minute)) {
		t.Errorf("events of y1: %+v", events)
	}
	if _, _, err := r.Get(ctx, "acme", zs[0].ID); !errors.Is(err, alerts.ErrNotFound) {
		t.Errorf("get of another tenant's alert: %v, want ErrNotFound", err)
	}
}
