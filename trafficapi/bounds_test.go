package trafficapi

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/apitest"
	"github.com/flowhouse/flowhouse/internal/dbapi"
)

var fixedNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) string { return fixedNow.Add(d).Format(time.RFC3339) }

// TestBounds: every bound is a 400 whose message names the parameter,
// given before any SQL runs.
func TestBounds(t *testing.T) {
	reader := &refusingReader{}
	c := serve(t, DefaultConfig(), Deps{Reader: reader, Now: func() time.Time { return fixedNow }})
	many := strings.TrimSuffix(strings.Repeat("1,", 33), ",")
	tests := []struct {
		name, path, query string
		status            int
		mention           string
	}{
		{"since after until", "top", "by=exporter&since=" + at(-time.Hour) + "&until=" + at(-2*time.Hour), 400, "since: "},
		{"since equal to until", "series", "since=" + at(-time.Hour) + "&until=" + at(-time.Hour), 400, "is not before until"},
		{"until far ahead", "top", "by=exporter&until=" + at(time.Hour), 400, "until: 2026-06-01T13:00:00Z is more than 5m in the future"},
		{"since not a time", "top", "by=exporter&since=yesterday", 400, "since: \"yesterday\" is neither"},
		{"since before 1970", "top", "by=exporter&since=1969-12-31T00:00:00Z&until=1970-01-01T01:00:00Z", 400, "since: 1969-12-31T00:00:00Z is before 1970"},
		{"until not a time", "series", "until=2026-13-01", 400, "until: "},
		{"by missing", "top", "", 400, "by: required"},
		{"by unknown", "top", "by=host", 400, `by: "host" is not one of`},
		{"series by unknown", "series", "by=host", 400, `by: "host"`},
		{"order unknown", "top", "by=exporter&order=size", 400, `order: "size"`},
		{"limit 0", "top", "by=exporter&limit=0", 400, "limit: "},
		{"limit over 1000", "top", "by=exporter&limit=1001", 400, "limit: \"1001\" is not an integer in 1..1000"},
		{"split limit over 20", "series", "by=exporter&limit=21", 400, "limit: \"21\" is not an integer in 1..20"},
		{"raw range over a day", "top", "by=src_address&since=" + at(-48*time.Hour), 400,
			"flows: since..until spans 2d, more than the 1d read from it at most"},
		{"raw range, and the rollups say why not", "top", "by=src_address&since=" + at(-48*time.Hour), 400,
			"flows_1h: by=src_address is only in raw flows"},
		{"a raw filter", "top", "by=exporter&port=53&since=" + at(-48*time.Hour), 400, "flows_1m: the filter port is only in raw flows"},
		{"rollup range over a year", "top", "by=exporter&since=" + at(-400*day), 400, "flows_1h: since..until spans 400d, more than the 366d"},
		{"off the minute and too long for raw flows", "top", "by=exporter&since=" + at(-7*day-30*time.Second), 400,
			"flows_1m: since and until are not on whole minutes"},
		{"older than raw flows' retention", "top", "by=src_address&since=" + at(-40*day) + "&until=" + at(-40*day+time.Hour), 400,
			"flows: since is older than its retention of 30d"},
		{"step too short", "series", "step=5s", 400, "step: \"5s\" is not a duration"},
		{"step too long", "series", "step=2d", 400, "step: \"2d\""},
		{"step not whole seconds", "series", "step=1500ms", 400, "step: "},
		{"step not a duration", "series", "step=fast", 400, "step: "},
		{"too many points", "series", "step=10s&since=" + at(-24*time.Hour), 400,
			"step: 10s over since..until (1d) gives 8640 points, more than 2000; use a step of at least 44s"},
		{"series step not whole minutes, range too long for raw flows", "series", "step=90s&since=" + at(-25*time.Hour), 400,
			"flows_1m: step 1m30s is not a whole number of minutes"},
		{"unknown parameter", "top", "by=exporter&host=10.0.0.1", 400, `unknown query parameter "host"`},
		{"repeated parameter", "top", "by=exporter&port=1&port=2", 400, "port: given 2 times"},
		{"exporter not an address", "top", "by=exporter&exporter=router1", 400, `exporter: "router1" is not an address or a CIDR prefix`},
		{"prefix too long", "top", "by=exporter&src_address=10.0.0.0/33", 400, "src_address: "},
		{"address with a zone", "top", "by=exporter&dst_address=fe80::1%25eth0", 400, "dst_address: "},
		{"port out of range", "top", "by=exporter&port=65536", 400, `port: "65536" is not an integer in 0..65535`},
		{"negative port", "top", "by=exporter&dst_port=-1", 400, "dst_port: "},
		{"protocol unknown", "top", "by=exporter&protocol=tcpx", 400, `protocol: "tcpx" is neither`},
		{"protocol over 255", "top", "by=exporter&protocol=256", 400, "protocol: "},
		{"ip version 5", "top", "by=exporter&ip_version=5", 400, `ip_version: "5" is not one of 4, 6`},
		{"direction unknown", "series", "direction=up", 400, `direction: "up" is not one of ingress, egress, unknown`},
		{"boundary unknown", "series", "in_if_boundary=edge", 400, "in_if_boundary: "},
		{"AS over 32 bits", "series", "src_as=4294967296", 400, "src_as: "},
		{"ifIndex not a number", "series", "out_if_index=xe-0/0/1", 400, "out_if_index: "},
		{"too many values", "top", "by=exporter&port=" + many, 400, "port: 33 values, at most 32"},
		{"several problems at once", "top", "by=host&limit=0", 400, "limit: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.WithToken(apitest.ReadA).Get("/api/v1/traffic/" + tt.path + "?" + tt.query)
			var e api.ErrorBody
			r.JSON(t, &e)
			if r.Status != tt.status || e.Error.Code != "bad_request" || !strings.Contains(e.Error.Message, tt.mention) {
				t.Errorf("%d %s\nwant %d mentioning %q", r.Status, r.Body, tt.status, tt.mention)
			}
		})
	}
	t.Run("a token of no tenant", func(t *testing.T) {
		for _, path := range []string{"top?by=exporter", "series"} {
			if r := c.WithToken(noTenant).Get("/api/v1/traffic/" + path); r.Status != 403 {
				t.Errorf("%s: %d %s, want 403", path, r.Status, r.Body)
			}
		}
	})
	if n := reader.count(); n != 0 {
		t.Errorf("%d queries ran for refused requests: %v", n, reader.calls)
	}
}

// injections are SQL in every form a parameter could carry it.
var injections = []string{
	"' OR '1'='1",
	"1 OR 1=1",
	"1) OR (1=1",
	"exporter; DROP TABLE flows",
	"bytes DESC, (SELECT 1)",
	"0 UNION ALL SELECT * FROM system.tables --",
	`\'; SELECT 1; --`,
	"1/*x*/",
	"10.0.0.1' OR ''='",
	"::/0) OR (1=1",
	"tcp,udp) OR (1",
	"1\x00",
}

// TestInjection: SQL in any parameter is refused with a 400 (tenant: 404,
// as any tenant the token does not see) before any query runs, and no
// answer quotes SQL.
func TestInjection(t *testing.T) {
	reader := &refusingReader{}
	c := serve(t, DefaultConfig(), Deps{Reader: reader}).WithToken(apitest.ReadAll)
	for _, ep := range []struct {
		path   string
		params []string
	}{{"top", topParams}, {"series", seriesParams}} {
		for _, p := range ep.params {
			for i, inj := range injections {
				t.Run(fmt.Sprintf("%s/%s/%d", ep.path, p, i), func(t *testing.T) {
					q := url.Values{p: {inj}}
					if ep.path == "top" && p != "by" {
						q.Set("by", "exporter")
					}
					r := c.Get("/api/v1/traffic/" + ep.path + "?" + q.Encode())
					want := 400
					if p == "tenant" {
						want = 404
					}
					if r.Status != want {
						t.Errorf("%s=%q: %d %s, want %d", p, inj, r.Status, r.Body, want)
					}
					for _, sql := range []string{"bytes_scaled", "time_received", "toDateTime", "GROUP BY"} {
						if strings.Contains(string(r.Body), sql) {
							t.Errorf("%s=%q: the answer quotes SQL: %s", p, inj, r.Body)
						}
					}
				})
			}
		}
	}
	if n := reader.count(); n != 0 {
		t.Errorf("%d queries ran: %v", n, reader.calls)
	}
}

// versionReader answers the capability check like a current server and
// fails every other query as fail says.
type versionReader struct {
	fail func(ctx context.Context) error
}

func (r versionReader) Query(ctx context.Context, q string, _ ...any) (dbapi.Rows, error) {
	if q == "SELECT version()" {
		return &oneString{v: "26.7.2.1"}, nil
	}
	return nil, r.fail(ctx)
}

type oneString struct {
	v    string
	done bool
}

func (o *oneString) Next() bool { n := !o.done; o.done = true; return n }
func (o *oneString) Scan(dest ...any) error {
	*dest[0].(*string) = o.v
	return nil
}
func (o *oneString) Columns() []string { return []string{"version()"} }
func (o *oneString) Err() error        { return nil }
func (o *oneString) Close() error      { return nil }

// TestDatabaseFailures: a failing or slow database is a 503 that says
// what to do, never the database's message (it may quote the SQL).
func TestDatabaseFailures(t *testing.T) {
	failing := versionReader{fail: func(context.Context) error {
		return errors.New("code: 62, message: Syntax error: SELECT sum(bytes_scaled) AS v_bytes FROM flows WHERE tenant = 'a'")
	}}
	slow := versionReader{fail: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
	cfg := DefaultConfig()
	cfg.QueryTimeout = 200 * time.Millisecond
	for _, tt := range []struct {
		name    string
		reader  dbapi.Querier
		mention string
	}{
		{"failing", failing, "traffic cannot be read now; retry"},
		{"slow", slow, "the traffic query took longer than 200ms; narrow the range or the filters"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := serve(t, cfg, Deps{Reader: tt.reader}).WithToken(apitest.ReadA)
			for _, path := range []string{"/api/v1/traffic/top?by=exporter", "/api/v1/traffic/series?by=exporter"} {
				r := c.Get(path)
				if r.Status != 503 || r.ErrorCode() != "unavailable" || !strings.Contains(string(r.Body), tt.mention) ||
					strings.Contains(string(r.Body), "SELECT") {
					t.Errorf("%s: %d %s, want 503 saying %q", path, r.Status, r.Body, tt.mention)
				}
			}
		})
	}
}
