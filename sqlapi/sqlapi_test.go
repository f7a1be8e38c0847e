package sqlapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/apitest"
	"github.com/flowhouse/flowhouse/internal/bypass"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/sqlapi"
	"github.com/flowhouse/flowhouse/store"
)

func TestMain(m *testing.M) { enginetest.Main(m) }

// serve starts an API server with the SQL endpoint on q.
func serve(t *testing.T, cfg sqlapi.Config, q sqlapi.Querier) *apitest.Client {
	t.Helper()
	return apitest.Serve(t, api.Config{}, apitest.Principals("a", "b"), func(s *api.Server) {
		s.AddSpec("sql", sqlapi.Spec)
		s.Register(sqlapi.New(cfg, sqlapi.Deps{Querier: q}).Register)
	}).WithToken(apitest.AdminAll)
}

// querier is the endpoint's querier on e: the guarded read-only handle on
// the embedded engine, readonly=1 on the server.
func querier(t *testing.T, e enginetest.Engine) sqlapi.Querier {
	if ro, ok := e.Reader.(*store.ReadOnly); ok {
		return sqlapi.Embedded(ro)
	}
	return sqlapi.Server(e.Reader)
}

// addr is an address column's value for s on e.
func addr(t *testing.T, e enginetest.Engine, s string) string {
	caps, err := dbapi.DetectCapabilities(context.Background(), e.DB)
	if err != nil {
		t.Fatal(err)
	}
	if caps.IPv6 {
		return fmt.Sprintf("toIPv6('%s')", s)
	}
	return fmt.Sprintf("IPv6StringToNum('%s')", s)
}

type result struct {
	Columns []struct{ Name, Type string }
	Rows    [][]any
	Count   int  `json:"row_count"`
	Trunc   bool `json:"truncated"`
}

func TestSQLAnswers(t *testing.T) {
	enginetest.Each(t, []string{"exporter_attributes"}, func(t *testing.T, e enginetest.Engine) {
		for i, tenant := range []string{"a", "a", "b"} {
			e.Exec(t, fmt.Sprintf(`INSERT INTO exporter_attributes (tenant, exporter_address, name, discovered, updated_at)
SELECT '%s', %s, 'edge-%d', 1, toDateTime(1700000000 + %d)`, tenant, addr(t, e, fmt.Sprintf("::ffff:10.0.0.%d", i+1)), i, i))
		}
		c := serve(t, sqlapi.DefaultConfig(), querier(t, e))
		var res result
		r := c.Do("POST", "/api/v1/sql", map[string]any{"query": "SELECT tenant, count() AS n, max(name) FROM exporter_attributes GROUP BY tenant ORDER BY tenant"})
		if r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		r.JSON(t, &res)
		if len(res.Columns) != 3 || res.Columns[0].Name != "tenant" || res.Columns[1].Name != "n" || res.Columns[1].Type != "UInt64" {
			t.Errorf("columns %+v", res.Columns)
		}
		got := fmt.Sprint(res.Rows)
		if got != "[[a 2 edge-1] [b 1 edge-2]]" || res.Count != 2 || res.Trunc {
			t.Errorf("rows %s count %d truncated %v, want [[a 2 edge-1] [b 1 edge-2]], 2, false", got, res.Count, res.Trunc)
		}
		// max_rows cuts the result and says so.
		res = result{}
		c.Do("POST", "/api/v1/sql", map[string]any{"query": "SELECT name, IPv6NumToString(exporter_address) FROM exporter_attributes ORDER BY name", "max_rows": 2}).JSON(t, &res)
		if fmt.Sprint(res.Rows) != "[[edge-0 ::ffff:10.0.0.1] [edge-1 ::ffff:10.0.0.2]]" || !res.Trunc || res.Count != 2 {
			t.Errorf("max_rows 2: rows %v truncated %v", res.Rows, res.Trunc)
		}
		// A statement other than SELECT: the embedded engine's guard allows
		// SHOW; on a server only a SELECT can be written (a subquery).
		res = result{}
		r = c.Do("POST", "/api/v1/sql", map[string]any{"query": "SHOW TABLES"})
		if e.Name == "server" {
			if r.Status != 400 {
				t.Errorf("SHOW TABLES on a server: %d %s, want 400", r.Status, r.Body)
			}
		} else if r.JSON(t, &res); !strings.Contains(fmt.Sprint(res.Rows), "flows_1m") {
			t.Errorf("SHOW TABLES: %v", res.Rows)
		}
	})
}

// Every refusal is a 4xx with a code, the engine's message where it is
// about the query, and no file touched.
func TestSQLRefusals(t *testing.T) {
	enginetest.Each(t, nil, func(t *testing.T, e enginetest.Engine) {
		targets, err := bypass.NewTargets(t.TempDir(), "sqlapi-canary-51d0")
		if err != nil {
			t.Fatal(err)
		}
		watch, err := bypass.NewWatch(targets.Dir)
		if err != nil {
			t.Fatal(err)
		}
		defer watch.Close()
		c := serve(t, sqlapi.DefaultConfig(), querier(t, e))
		tests := []struct {
			name  string
			body  any
			token string
			codes []string // accepted codes: the engines refuse some at different stages
		}{
			{"write", map[string]any{"query": "INSERT INTO flows (tenant) SELECT 'x'"}, "", []string{sqlapi.CodeRefused}},
			{"DDL", map[string]any{"query": "DROP TABLE flows"}, "", []string{sqlapi.CodeRefused}},
			{"file()", map[string]any{"query": "SELECT * FROM file('" + targets.Canary + "', 'LineAsString')"}, "", []string{sqlapi.CodeRefused}},
			{"scalar file()", map[string]any{"query": "SELECT file('" + targets.Canary + "')"}, "", []string{sqlapi.CodeRefused, sqlapi.CodeError}},
			{"Unicode whitespace", map[string]any{"query": "SELECT\u00a0*\u2003FROM\u3000file('" + targets.Canary + "',\u00a0'LineAsString')"}, "", []string{sqlapi.CodeRefused, sqlapi.CodeError}},
			{"heredoc", map[string]any{"query": "SELECT $$x$$, file($$" + targets.Canary + "$$)"}, "", []string{sqlapi.CodeRefused, sqlapi.CodeError}},
			{"SETTINGS", map[string]any{"query": "SELECT 1 SETTINGS readonly = 0"}, "", []string{sqlapi.CodeRefused}},
			{"several statements", map[string]any{"query": "SELECT 1; DROP TABLE flows"}, "", []string{sqlapi.CodeError, sqlapi.CodeRefused}},
			{"unknown table", map[string]any{"query": "SELECT * FROM no_such_table"}, "", []string{sqlapi.CodeError}},
			{"syntax error", map[string]any{"query": "SELEKT 1"}, "", []string{sqlapi.CodeError, sqlapi.CodeRefused}}, // a server cannot tell it from a statement that is not a SELECT,
			{"empty query", map[string]any{"query": " "}, "", []string{api.CodeBadRequest}},
			{"max_rows 0", map[string]any{"query": "SELECT 1", "max_rows": 0}, "", []string{api.CodeBadRequest}},
			{"max_rows too many", map[string]any{"query": "SELECT 1", "max_rows": 100_000_000}, "", []string{api.CodeBadRequest}},
			{"unknown field", map[string]any{"query": "SELECT 1", "tenant": "a"}, "", []string{api.CodeBadRequest}},
			{"not JSON", "SELECT 1", "", []string{api.CodeBadRequest}},
			{"tenant-scoped admin", map[string]any{"query": "SELECT 1"}, apitest.AdminA, []string{sqlapi.CodeNeedsAllTenants}},
			{"read token", map[string]any{"query": "SELECT 1"}, apitest.ReadAll, []string{api.CodeForbidden}},
		}
		for _, tt := range tests {
			cl := c
			if tt.token != "" {
				cl = c.WithToken(tt.token)
			}
			r := cl.Do("POST", "/api/v1/sql", tt.body)
			if r.Status < 400 || r.Status >= 500 || !contains(tt.codes, r.ErrorCode()) || strings.Contains(string(r.Body), "sqlapi-canary") {
				t.Errorf("%s: %d %s, want 4xx with one of %v", tt.name, r.Status, r.Body, tt.codes)
			}
			if events, err := watch.Events(); err != nil || len(events) > 0 {
				t.Errorf("%s: files touched: %v %v", tt.name, events, err)
			}
		}
		// A FORMAT clause is refused by the embedded engine, whose output it
		// would change, and is a syntax error in a server's subquery.
		r := c.Do("POST", "/api/v1/sql", map[string]any{"query": "SELECT 1 FORMAT CSV"})
		if r.Status != 400 || (e.Name == "embedded" && r.ErrorCode() != sqlapi.CodeRefused) {
			t.Errorf("FORMAT: %d %s", r.Status, r.Body)
		}
		// INTO OUTFILE is refused by the embedded engine's guard, and is a
		// syntax error in the subquery a server runs.
		r = c.Do("POST", "/api/v1/sql", map[string]any{"query": "SELECT 1 INTO OUTFILE '" + targets.Written + "'"})
		if r.Status != 400 || (e.Name == "embedded" && r.ErrorCode() != sqlapi.CodeRefused) {
			t.Errorf("INTO OUTFILE: %d %s", r.Status, r.Body)
		}
		if events, err := watch.Events(); err != nil || len(events) > 0 {
			t.Errorf("INTO OUTFILE: files touched: %v %v", events, err)
		}
	})
}

// The corpus of internal/bypass, through the API: nothing is answered
// 200 or 5xx, nothing of the canary comes back, no file is touched.
func TestSQLBypassCorpus(t *testing.T) {
	enginetest.Each(t, nil, func(t *testing.T, e enginetest.Engine) {
		targets, err := bypass.NewTargets(t.TempDir(), "sqlapi-canary-77e1")
		if err != nil {
			t.Fatal(err)
		}
		watch, err := bypass.NewWatch(targets.Dir)
		if err != nil {
			t.Fatal(err)
		}
		defer watch.Close()
		c := serve(t, sqlapi.DefaultConfig(), querier(t, e))
		n := 0
		for _, cs := range bypass.Cases(targets) {
			r := c.Do("POST", "/api/v1/sql", map[string]any{"query": cs.Query})
			n++
			if r.Status < 400 || r.Status >= 500 || strings.Contains(string(r.Body), "sqlapi-canary") {
				t.Errorf("%s: %d %.300s\nquery %q", cs.Name, r.Status, r.Body, cs.Query)
			}
			if events, err := watch.Events(); err != nil || len(events) > 0 {
				t.Fatalf("%s: files touched: %v %v", cs.Name, events, err)
			}
		}
		t.Logf("%d attempts refused", n)
	})
}

func TestSQLTimeout(t *testing.T) {
	enginetest.Each(t, nil, func(t *testing.T, e enginetest.Engine) {
		cfg := sqlapi.DefaultConfig()
		cfg.Timeout = time.Second
		q := querier(t, e)
		query := "SELECT sleep(2)"
		if emb, ok := e.DB.(*store.Embedded); ok {
			opts := store.ReadOnlyOptionsOf(store.DefaultConfig().Embedded)
			opts.Timeout, opts.MaxRowsToRead, opts.Conns = time.Second, 0, 1
			ro, err := emb.OpenReadOnly(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer ro.Close()
			q = sqlapi.Embedded(ro)
			query = "SELECT count() FROM numbers_mt(1000000000000)"
		}
		c := serve(t, cfg, q)
		start := time.Now()
		r := c.Do("POST", "/api/v1/sql", map[string]any{"query": query})
		if r.Status != http.StatusRequestTimeout || r.ErrorCode() != sqlapi.CodeTimeout {
			t.Errorf("%d %s, want 408 query_timeout", r.Status, r.Body)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("answered after %s", d)
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
