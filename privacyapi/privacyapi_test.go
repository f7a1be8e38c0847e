package privacyapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/apitest"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/privacy"
	"github.com/flowhouse/flowhouse/privacyapi"
	"github.com/flowhouse/flowhouse/tenant"
)

func TestMain(m *testing.M) { enginetest.Main(m) }

// allTables are emptied on the embedded engine before each test.
var allTables = append(privacy.TableNames(), "deletion_jobs")

// Exporters: a's 10.0.0.1, b's 10.0.0.2, and 10.0.0.9, which the
// configuration gives to a but b's exporter_attributes also claim.
func tenants(t *testing.T) *tenant.Tenants {
	ts, err := tenant.New(tenant.Config{Default: "a", Exporters: []tenant.Exporter{
		{Match: "10.0.0.1", Tenant: "a"}, {Match: "10.0.0.2", Tenant: "b"}, {Match: "10.0.0.9", Tenant: "a"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// marker is in every string a tenant's rows hold: b's must never show in
// a's export.
func marker(tenant string) string { return "mk" + tenant + "q7z" }

func ip(t *testing.T, e enginetest.Engine, s string) string {
	caps, err := dbapi.DetectCapabilities(context.Background(), e.DB)
	if err != nil {
		t.Fatal(err)
	}
	if caps.IPv6 {
		return fmt.Sprintf("toIPv6('::ffff:%s')", s)
	}
	return fmt.Sprintf("IPv6StringToNum('::ffff:%s')", s)
}

// seed writes rows of tenant into every table keyed by tenant, n flows,
// and its exporter's statistics.
func seed(t *testing.T, e enginetest.Engine, tenant, exporter string, n int) {
	m, x := marker(tenant), ip(t, e, exporter)
	ts := time.Now().Add(-time.Hour).Unix()
	e.Exec(t,
		fmt.Sprintf(`INSERT INTO flows (time_received, tenant, exporter_address, exporter_name, in_if_name, bytes, packets, sampling_rate)
SELECT toDateTime(%d + number %% 60, 'UTC'), '%s', %s, '%s', 'if-%[4]s', 100 + number, 1, 10 FROM system.numbers LIMIT %d`, ts, tenant, x, m, n),
		fmt.Sprintf(`INSERT INTO alerts (tenant, id, rule, status, label_names, label_values, version) SELECT '%s', 'al-%s', 'r-%[2]s', 'firing', ['host'], ['%[2]s'], 1`, tenant, m),
		fmt.Sprintf(`INSERT INTO alert_versions (tenant, id, version, rule) SELECT '%s', 'al-%s', 1, 'r-%[2]s'`, tenant, m),
		fmt.Sprintf(`INSERT INTO alert_events (tenant, alert_id, rule, kind, note, version) SELECT '%s', 'al-%s', 'r-%[2]s', 'fire', 'n-%[2]s', 1`, tenant, m),
		fmt.Sprintf(`INSERT INTO rule_state (rule, tenant, key, mean, variance, updated_at, version) SELECT 'r-%s', '%s', 'k-%[1]s', 1.5, nan, now(), 1`, m, tenant),
		fmt.Sprintf(`INSERT INTO devices (tenant, mac, vendor, last_exporter_address, `+"`ip_history.address`, `ip_history.first_seen`, `ip_history.last_seen`"+`, updated_at)
SELECT '%s', 42, 'v-%s', %s, [%[3]s], [toDateTime(%d, 'UTC')], [toDateTime(%[4]d, 'UTC')], toDateTime(%[4]d, 'UTC')`, tenant, m, x, ts),
		fmt.Sprintf(`INSERT INTO interfaces (tenant, exporter_address, if_index, if_name, updated_at) SELECT '%s', %s, 1, 'ifn-%s', now()`, tenant, x, m),
		fmt.Sprintf(`INSERT INTO interface_counters (time, tenant, exporter_address, if_index, in_octets) SELECT toDateTime(%d, 'UTC'), '%s', %s, 1, 7`, ts, tenant, x),
		fmt.Sprintf(`INSERT INTO arp_observations (time, tenant, exporter_address, ip_address, mac, vendor, event) SELECT now(), '%s', %s, %[2]s, 42, 'arp-%s', 'new'`, tenant, x, m),
		fmt.Sprintf(`INSERT INTO neighbors (tenant, exporter_address, local_if_index, protocol, remote_chassis_id, remote_system_name, remote_capabilities, updated_at) SELECT '%s', %s, 1, 'lldp', 'ch-%s', 'nb-%[3]s', ['bridge'], now()`, tenant, x, m),
		fmt.Sprintf(`INSERT INTO neighbor_observations (time, tenant, exporter_address, local_if_index, protocol, remote_chassis_id, event, changed_fields) SELECT now(), '%s', %s, 1, 'lldp', 'ch-%s', 'new', []`, tenant, x, m),
		fmt.Sprintf(`INSERT INTO exporter_attributes (tenant, exporter_address, name, updated_at) SELECT '%s', %s, 'ea-%s', now()`, tenant, x, m),
		fmt.Sprintf(`INSERT INTO exporter_polls (tenant, exporter_address, last_error, updated_at, updated_ms) SELECT '%s', %s, 'pe-%s', now(), 1`, tenant, x, m),
	)
	stats := []flow.ExporterStats{{Addr: flow.AddrFromNetip(netip.MustParseAddr(exporter)), Protocols: []string{"ipfix"}, Datagrams: 5,
		Drops: map[string]uint64{"d-" + m: 1}, Streams: []flow.StreamStats{{Protocol: "ipfix", ObservationDomain: 1}}}}
	if err := e.DB.InsertExporterStats(context.Background(), time.Now(), stats); err != nil {
		t.Fatal(err)
	}
}

// seedShared gives 10.0.0.9 statistics and b's attributes: neither
// tenant's export nor deletion may touch its statistics.
func seedShared(t *testing.T, e enginetest.Engine) {
	e.Exec(t, fmt.Sprintf(`INSERT INTO exporter_attributes (tenant, exporter_address, name, updated_at) SELECT 'b', %s, 'shared-%s', now()`, ip(t, e, "10.0.0.9"), marker("b")))
	stats := []flow.ExporterStats{{Addr: flow.AddrFromNetip(netip.MustParseAddr("10.0.0.9")), Protocols: []string{"sflow_v5"}, Datagrams: 9}}
	if err := e.DB.InsertExporterStats(context.Background(), time.Now(), stats); err != nil {
		t.Fatal(err)
	}
}

type fixture struct {
	c       *apitest.Client
	deleter *privacy.Deleter
}

func serve(t *testing.T, e enginetest.Engine, cfg privacyapi.Config) fixture {
	t.Helper()
	ts := tenants(t)
	pcfg := privacy.DefaultConfig()
	pcfg.PollInterval = 50 * time.Millisecond
	d := privacy.New(pcfg, privacy.Deps{DB: e.DB, Tenants: ts})
	c := apitest.Serve(t, api.Config{}, apitest.Principals("a", "b"), func(s *api.Server) {
		s.AddSpec("privacy", privacyapi.Spec)
		s.Register(privacyapi.New(cfg, privacyapi.Deps{DB: e.DB, Tenants: ts, Deleter: d}).Register)
	})
	return fixture{c: c, deleter: d}
}

type line struct {
	Type   string           `json:"type"`
	Row    map[string]any   `json:"row"`
	Tenant string           `json:"tenant"`
	Tables []map[string]any `json:"tables"`
	Counts map[string]int64 `json:"counts"`
	Done   bool             `json:"complete"`
	Addrs  []string         `json:"exporter_addresses"`
}

func parse(t *testing.T, body []byte) []line {
	t.Helper()
	var out []line
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", len(out)+1, err, sc.Bytes())
		}
		out = append(out, l)
	}
	return out
}

// The export of a holds a's rows of every table, its exporter's
// statistics, and nothing of b; a header and a trailer frame it.
func TestExport(t *testing.T) {
	enginetest.Each(t, allTables, func(t *testing.T, e enginetest.Engine) {
		seed(t, e, "a", "10.0.0.1", 2500)
		seed(t, e, "b", "10.0.0.2", 300)
		seedShared(t, e)
		f := serve(t, e, privacyapi.DefaultConfig())
		r := f.c.WithToken(apitest.AdminA).Get("/api/v1/tenants/a/export")
		if r.Status != 200 || r.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("%d %s %.300s", r.Status, r.Header.Get("Content-Type"), r.Body)
		}
		for _, bad := range []string{marker("b"), "10.0.0.2", "10.0.0.9\""} {
			if bytes.Contains(r.Body, []byte(bad)) && !(bad == "10.0.0.9\"" && onlyInAttributes(t, r.Body)) {
				t.Errorf("a's export holds %q", bad)
			}
		}
		lines := parse(t, r.Body)
		head, tail := lines[0], lines[len(lines)-1]
		if head.Type != "export" || head.Tenant != "a" || len(head.Tables) != len(privacy.TableNames()) || !slices.Equal(head.Addrs, []string{"::ffff:10.0.0.1"}) {
			t.Errorf("header %+v", head)
		}
		if tail.Type != "end" || !tail.Done {
			t.Fatalf("trailer %+v", tail)
		}
		got := map[string]int64{}
		for _, l := range lines[1 : len(lines)-1] {
			got[l.Type]++
			if l.Type != "exporter" && l.Row["tenant"] != "a" {
				t.Errorf("a %s row of tenant %v", l.Type, l.Row["tenant"])
			}
		}
		for _, tb := range append(privacy.Tables, privacy.ExportersTable) {
			if got[tb.Type] == 0 || got[tb.Type] != tail.Counts[tb.Type] {
				t.Errorf("%s: %d lines, trailer says %d; want some, as many", tb.Type, got[tb.Type], tail.Counts[tb.Type])
			}
		}
		if got["flow"] != 2500 || got["exporter"] != 1 {
			t.Errorf("flows %d exporters %d, want 2500 and 1", got["flow"], got["exporter"])
		}
		// Values come out typed: addresses as text, times in RFC 3339, NaN as null.
		for _, l := range lines {
			switch l.Type {
			case "flow":
				if l.Row["exporter_address"] != "::ffff:10.0.0.1" || l.Row["bytes"].(float64) < 100 {
					t.Fatalf("flow row %v", l.Row)
				}
				if _, err := time.Parse(time.RFC3339, l.Row["time_received"].(string)); err != nil {
					t.Fatalf("time_received %v", l.Row["time_received"])
				}
			case "rule_state":
				if l.Row["variance"] != nil || l.Row["mean"] != 1.5 {
					t.Errorf("rule_state row %v", l.Row)
				}
			case "device":
				if fmt.Sprint(l.Row["ip_history.address"]) != "[::ffff:10.0.0.1]" {
					t.Errorf("device row %v", l.Row)
				}
			}
		}
		// The window bounds the flows: none an hour ago in the last 10 minutes.
		since := url.QueryEscape(time.Now().Add(-10 * time.Minute).Format(time.RFC3339))
		lines = parse(t, f.c.WithToken(apitest.AdminAll).Get("/api/v1/tenants/a/export?since="+since).Body)
		if c := lines[len(lines)-1].Counts; c["flow"] != 0 || c["alert"] != 1 {
			t.Errorf("last 10 minutes: counts %v, want no flow and the alert", c)
		}
	})
}

// onlyInAttributes: 10.0.0.9 may show in a's exporter_attributes (a's
// configuration claims it) but not as an exporter row.
func onlyInAttributes(t *testing.T, body []byte) bool {
	for _, l := range parse(t, body) {
		if l.Type == "exporter" && l.Row["exporter_address"] == "::ffff:10.0.0.9" {
			return false
		}
	}
	return true
}

func TestScopingAndBadInput(t *testing.T) {
	enginetest.Each(t, allTables, func(t *testing.T, e enginetest.Engine) {
		f := serve(t, e, privacyapi.DefaultConfig())
		tests := []struct {
			token, method, path string
			status              int
		}{
			{apitest.AdminA, "GET", "/api/v1/tenants/b/export", 404},
			{apitest.AdminA, "DELETE", "/api/v1/tenants/b/data", 404},
			{apitest.AdminA, "GET", "/api/v1/tenants/b/data/jobs", 404},
			{apitest.AdminA, "GET", "/api/v1/tenants/b/data/jobs/del_00000000000000000000", 404},
			{apitest.ReadA, "GET", "/api/v1/tenants/a/export", 403},
			{apitest.ReadA, "DELETE", "/api/v1/tenants/a/data", 403},
			{apitest.ReadA, "GET", "/api/v1/tenants/a/data/jobs", 403},
			{apitest.ReadAll, "GET", "/api/v1/tenants/a/export", 403},
			{apitest.AdminAll, "GET", "/api/v1/tenants/a/data/jobs", 200},
			{apitest.AdminAll, "GET", "/api/v1/tenants/nope/export", 404},
			{apitest.AdminAll, "GET", "/api/v1/tenants/a'%20OR%201=1--/export", 404},
			{apitest.AdminAll, "DELETE", "/api/v1/tenants/a'%20OR%20''='/data", 404},
			{apitest.AdminAll, "GET", "/api/v1/tenants/a/data/jobs/x'%20OR%201=1--", 404},
			{apitest.AdminAll, "GET", "/api/v1/tenants/a/data/jobs/del_00000000000000000000", 404},
			{apitest.AdminAll, "GET", "/api/v1/tenants/a/export?since=1'%20OR%201=1", 400},
			{apitest.AdminAll, "GET", "/api/v1/tenants/a/export?until=2026-13-01T00:00:00Z", 400},
			{apitest.AdminAll, "GET", "/api/v1/tenants/a/export?since=2020-01-01T00:00:00Z&until=2021-01-01T00:00:00Z", 400},
			{apitest.AdminAll, "GET", "/api/v1/tenants/a/export?since=2021-01-01T00:00:00Z&until=2020-01-01T00:00:00Z", 400},
			{apitest.AdminAll, "GET", "/api/v1/tenants/a/export?tenant=b", 400},
			{apitest.AdminAll, "GET", "/api/v1/tenants/a/data/jobs?status=done", 400},
		}
		for _, tt := range tests {
			r := f.c.WithToken(tt.token).Do(tt.method, tt.path, nil)
			if r.Status != tt.status || (r.Status >= 400 && r.ErrorCode() == "") {
				t.Errorf("%s %s %s: %d %.200s, want %d", tt.token, tt.method, tt.path, r.Status, r.Body, tt.status)
			}
			if strings.Contains(strings.ToLower(string(r.Body)), "select ") || strings.Contains(string(r.Body), "Code: ") {
				t.Errorf("%s %s: SQL in the answer: %s", tt.method, tt.path, r.Body)
			}
		}
	})
}

// Deleting a removes a's rows from every table, leaves b's and the
// shared exporter's, and the job, done, is readable by another reader.
func TestDeletion(t *testing.T) {
	enginetest.Each(t, allTables, func(t *testing.T, e enginetest.Engine) {
		seed(t, e, "a", "10.0.0.1", 500)
		seed(t, e, "b", "10.0.0.2", 300)
		seedShared(t, e)
		before := countsOf(t, e, "b")
		f := serve(t, e, privacyapi.DefaultConfig())
		var job privacy.Job
		r := f.c.WithToken(apitest.AdminA).Do("DELETE", "/api/v1/tenants/a/data", nil)
		if r.Status != 202 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		r.JSON(t, &job)
		if job.Status != privacy.StatusPending || job.Tenant != "a" || job.RequestedBy != "tok_admin_a" || len(job.Tables) != len(privacy.TableNames()) {
			t.Errorf("job %+v", job)
		}
		// Asked again while pending: the same job.
		var again privacy.Job
		f.c.WithToken(apitest.AdminAll).Do("DELETE", "/api/v1/tenants/a/data", nil).JSON(t, &again)
		if again.ID != job.ID {
			t.Errorf("a second request made job %s, want %s", again.ID, job.ID)
		}
		if err := f.deleter.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer f.deleter.Stop()
		path := "/api/v1/tenants/a/data/jobs/" + job.ID
		testkit.Eventually(t, "the job to end", 60*time.Second, func() bool {
			f.c.WithToken(apitest.AdminA).Get(path).JSON(t, &job)
			return job.Status == privacy.StatusDone || job.Status == privacy.StatusFailed
		})
		if job.Status != privacy.StatusDone || job.FinishedAt == nil || job.Error != "" {
			t.Fatalf("job %+v", job)
		}
		for _, tb := range job.Tables {
			if tb.Status != privacy.StatusDone || tb.Rows == nil || (*tb.Rows == 0) {
				t.Errorf("table %s: %s rows %v, want done with rows", tb.Table, tb.Status, tb.Rows)
			}
		}
		for table, n := range countsOf(t, e, "a") {
			if n != 0 {
				t.Errorf("%s: %d rows of a left", table, n)
			}
		}
		if after := countsOf(t, e, "b"); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("b's rows changed: %v, were %v", after, before)
		}
		var shared uint64
		if err := dbapi.QueryRow(context.Background(), e.DB, []any{&shared}, "SELECT count() FROM exporters WHERE IPv6NumToString(exporter_address) = '::ffff:10.0.0.9'"); err != nil || shared != 1 {
			t.Errorf("the shared exporter's statistics: %d rows (%v), want 1", shared, err)
		}
		// Another reader (the read-only interface) sees the job as done.
		other, err := privacy.Reader{DB: e.Reader}.Job(context.Background(), "a", job.ID)
		if err != nil || other.Status != privacy.StatusDone {
			t.Errorf("second reader: %+v %v", other, err)
		}
		var list struct{ Jobs []privacy.Job }
		f.c.WithToken(apitest.AdminA).Get("/api/v1/tenants/a/data/jobs").JSON(t, &list)
		if len(list.Jobs) != 1 || list.Jobs[0].ID != job.ID {
			t.Errorf("jobs %+v", list.Jobs)
		}
		// b's tenant-scoped view of jobs holds none of a's.
		f.c.WithToken(apitest.AdminAll).Get("/api/v1/tenants/b/data/jobs").JSON(t, &list)
		if len(list.Jobs) != 0 {
			t.Errorf("b's jobs %+v", list.Jobs)
		}
	})
}

// countsOf is how many rows of tenant each table has (the exporters
// table: of its exporter).
func countsOf(t *testing.T, e enginetest.Engine, tenant string) map[string]uint64 {
	out := map[string]uint64{}
	for _, tb := range privacy.Tables {
		var n uint64
		if err := dbapi.QueryRow(context.Background(), e.DB, []any{&n}, "SELECT count() FROM "+tb.Name+" WHERE tenant = ?", tenant); err != nil {
			t.Fatal(err)
		}
		out[tb.Name] = n
	}
	addr := map[string]string{"a": "::ffff:10.0.0.1", "b": "::ffff:10.0.0.2"}[tenant]
	var n uint64
	if err := dbapi.QueryRow(context.Background(), e.DB, []any{&n}, "SELECT count() FROM exporters WHERE IPv6NumToString(exporter_address) = ?", addr); err != nil {
		t.Fatal(err)
	}
	out["exporters"] = n
	return out
}
