package rules

import (
	"context"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/tenant"
)

func testTenants(t *testing.T, names ...string) *tenant.Tenants {
	t.Helper()
	cfg := tenant.Config{Default: names[0]}
	for i, n := range names[1:] {
		cfg.Exporters = append(cfg.Exporters, tenant.Exporter{Match: netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}).String(), Tenant: n})
	}
	ts, err := tenant.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func newManager(t *testing.T, ts *tenant.Tenants) *alerts.Manager {
	t.Helper()
	m, err := alerts.New(alerts.Config{}, alerts.Deps{Tenants: ts})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop(context.Background()) })
	return m
}

// bigTalkers is the README's example SQL rule.
const bigTalkers = `SELECT tenant, IPv6NumToString(dst_address) AS dst, sum(bytes * sampling_rate) AS value,
       uniq(src_address) AS sources
FROM flows
WHERE time_received >= now() - 300
GROUP BY tenant, dst
HAVING value > 100000`

func flowTo(tenantName, dst string, bytes uint64, at time.Time) flow.Flow {
	return flow.Flow{TimeReceivedMs: at.UnixMilli(), TimeStartMs: at.UnixMilli(), TimeEndMs: at.UnixMilli(),
		Tenant: tenantName, SamplingRate: 10, Bytes: bytes, Packets: 1, IPProto: 6, IPVersion: 4,
		SrcAddr: flow.AddrFromNetip(netip.MustParseAddr("198.51.100.1")), DstAddr: flow.AddrFromNetip(netip.MustParseAddr(dst))}
}

func TestSQLRuleFiresAndResolves(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		ts := testTenants(t, "acme", "globex")
		m := newManager(t, ts)
		cfg := DefaultConfig()
		cfg.Builtin = BuiltinConfig{} // only the SQL rule
		cfg.SQL = []SQLRule{{Name: "big_talkers", Query: bigTalkers, Subject: []string{"dst"}, Severity: "error",
			Annotations: map[string]string{"summary": "{{.Labels.dst}} got {{.Value}} bytes from {{.Columns.sources}} sources"}}}
		s, err := New(cfg, SchedulerDeps{DB: e.DB, Reader: e.Reader, Alerts: m, Tenants: ts})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Prepare(context.Background()); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		e.Insert(t, []flow.Flow{
			flowTo("acme", "192.0.2.10", 20000, now), // 200 000 scaled: fires
			flowTo("acme", "192.0.2.11", 5000, now),  // 50 000: below
			flowTo("globex", "192.0.2.10", 30000, now),
		})
		if err := s.Run("big_talkers"); err != nil {
			t.Fatal(err)
		}
		got := map[string]alerts.Alert{}
		for _, tn := range []string{"acme", "globex"} {
			for _, a := range m.Active(tn) {
				got[tn+" "+a.Subject["dst"]] = a
			}
		}
		if len(got) != 2 {
			t.Fatalf("active alerts %v, want acme and globex 192.0.2.10", keys(got))
		}
		a := got["acme 192.0.2.10"]
		if a.Status != alerts.StatusFiring || a.Severity != "error" || a.LastValue != 200000 {
			t.Errorf("acme alert %+v", a)
		}
		if want := "192.0.2.10 got 200000 bytes from 1 sources"; a.Annotations["summary"] != want {
			t.Errorf("summary %q, want %q", a.Annotations["summary"], want)
		}
		if a.Annotations["sources"] != "1" {
			t.Errorf("extra column as annotation: %v", a.Annotations)
		}
		e.Exec(t, "TRUNCATE TABLE flows")
		if err := s.Run("big_talkers"); err != nil {
			t.Fatal(err)
		}
		if n := len(m.Active("acme")) + len(m.Active("globex")); n != 0 {
			t.Errorf("%d alerts still active once the rows are gone", n)
		}
	})
}

func keys[V any](m map[string]V) []string { return slices.Sorted(mapKeys(m)) }

// A rule that fails its dry run stops the start, naming the rule and why.
func TestSQLRuleValidationAtStart(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		ts := testTenants(t, "acme", "globex")
		for _, tc := range []struct {
			name, query string
			subject     []string
			tenants     []string
			want        string
		}{
			{"no_subject", "SELECT tenant, 1 AS value FROM flows", []string{"dst"}, nil, `no column "dst"`},
			{"no_value", "SELECT tenant, 'x' AS dst FROM flows", []string{"dst"}, nil, `no column "value"`},
			{"no_tenant", "SELECT 'x' AS dst, 1 AS value", []string{"dst"}, nil, "no tenant column"},
			{"bad_sql", "SELEC 1", []string{"dst"}, nil, "the engine refuses the query"},
			{"unknown_table", "SELECT 'x' AS dst, 1 AS value FROM nosuchtable", []string{"dst"}, []string{"acme"}, "the engine refuses the query"},
			{"write", "INSERT INTO flows SELECT * FROM flows", []string{"dst"}, []string{"acme"}, "the engine refuses the query"},
			{"file", "SELECT 'x' AS dst, 1 AS value FROM file('/etc/passwd', 'LineAsString', 'line String')", []string{"dst"}, []string{"acme"}, "the engine refuses the query"},
			{"settings", "SELECT 'x' AS dst, 1 AS value SETTINGS readonly = 0", []string{"dst"}, []string{"acme"}, "the engine refuses the query"},
			{"two_statements", "SELECT 'x' AS dst, 1 AS value; DROP TABLE flows", []string{"dst"}, []string{"acme"}, "the engine refuses the query"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := DefaultConfig()
				cfg.Builtin = BuiltinConfig{}
				cfg.SQL = []SQLRule{{Name: tc.name, Query: tc.query, Subject: tc.subject, Tenants: tc.tenants}}
				s, err := New(cfg, SchedulerDeps{DB: e.DB, Reader: e.Reader, Alerts: newManager(t, ts), Tenants: ts})
				if err != nil {
					t.Fatal(err)
				}
				err = s.Prepare(context.Background())
				if err == nil || !strings.Contains(err.Error(), `sql rule "`+tc.name+`"`) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one naming the rule and %q", err, tc.want)
				}
			})
		}
		if err := e.DB.Exec(context.Background(), "SELECT count() FROM flows"); err != nil {
			t.Fatalf("the flows table after the refused queries: %v", err)
		}
	})
}

func TestSQLRuleConfigProblems(t *testing.T) {
	for _, tc := range []struct {
		rule SQLRule
		want string
	}{
		{SQLRule{Name: "bad name", Query: "SELECT 1", Subject: []string{"x"}}, `sql[0] (bad name).name: "bad name" is not a rule name`},
		{SQLRule{Name: "r", Subject: []string{"x"}}, "sql[0] (r).query: is empty"},
		{SQLRule{Name: "r", Query: "SELECT 1"}, "sql[0] (r).subject: names no column"},
		{SQLRule{Name: "r", Query: "SELECT 1", Subject: []string{"tenant"}}, `sql[0] (r).subject: "tenant" cannot be a subject column`},
		{SQLRule{Name: "r", Query: "SELECT 1", Subject: []string{"x"}, Severity: "loud"}, `sql[0] (r).severity: "loud" is not`},
		{SQLRule{Name: "r", Query: "SELECT 1", Subject: []string{"x"}, Interval: time.Minute, Timeout: 2 * time.Minute}, "sql[0] (r).timeout: 2m0s is longer than the interval"},
		{SQLRule{Name: "r", Query: "SELECT 1", Subject: []string{"x"}, Labels: map[string]string{"severity": "x"}}, `sql[0] (r).labels: "severity" is set by flowhouse itself`},
		{SQLRule{Name: "r", Query: "SELECT 1", Subject: []string{"x"}, Annotations: map[string]string{"summary": "{{.Labels"}}, "sql[0] (r).annotations.summary:"},
	} {
		cfg := DefaultConfig()
		cfg.SQL = []SQLRule{tc.rule}
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.rule, err, tc.want)
		}
	}
	cfg := DefaultConfig()
	cfg.SQL = []SQLRule{{Name: "r", Query: "SELECT 1", Subject: []string{"x"}, Tenants: []string{"nobody"}}}
	if err := cfg.CheckTenants([]string{"acme"}); err == nil || !strings.Contains(err.Error(), `sql[0].tenants: tenant "nobody" is not configured`) {
		t.Errorf("unknown tenant: %v", err)
	}
}

func TestHoldText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Hold
		err  bool
	}{
		{"", Hold{}, false}, {"0", Hold{}, false}, {"3", Evaluations(3), false},
		{"45s", For(45 * time.Second), false}, {"2m", For(2 * time.Minute), false},
		{"-1", Hold{}, true}, {"-5s", Hold{}, true}, {"soon", Hold{}, true},
	} {
		var h Hold
		err := h.UnmarshalText([]byte(tc.in))
		if (err != nil) != tc.err || (!tc.err && h != tc.want) {
			t.Errorf("%q: %+v, %v", tc.in, h, err)
		}
		if !tc.err && tc.in != "" {
			if b, _ := h.MarshalText(); string(b) != strings.ReplaceAll(tc.in, "2m", "2m0s") {
				t.Errorf("%q marshals to %q", tc.in, b)
			}
		}
	}
}

// The SQL rule of README.md passes its dry run on both engines.
func TestREADMESQLRule(t *testing.T) {
	_, block, ok := strings.Cut(testkit.READMEBlock(t, "### SQL rules", "yaml"), "      query: |\n")
	if !ok {
		t.Fatal("README.md's SQL rule example has no query")
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(block, "\n"), "\n") {
		lines = append(lines, strings.TrimPrefix(l, "        "))
	}
	query := strings.Join(lines, "\n")
	forEachEngine(t, func(t *testing.T, e engine) {
		ts := testTenants(t, "acme")
		cfg := DefaultConfig()
		cfg.SQL = []SQLRule{{Name: "big_talkers", Query: query, Subject: []string{"dst"}}}
		if err := Check(context.Background(), cfg, e.Reader, ts); err != nil {
			t.Fatalf("%v\n%s", err, query)
		}
	})
}
