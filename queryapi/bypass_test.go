package queryapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/flowhouse/flowhouse/internal/bypass"
	"github.com/flowhouse/flowhouse/store"
)

const canaryContent = "flowhouse-canary-7f3c9e"

// TestBypassCorpusIsRefused runs every attempt of internal/bypass over
// GET and POST: each is refused, its answer holds nothing of the canary,
// and inotify saw no file of the watched directory opened, read, written
// or created.
func TestBypassCorpusIsRefused(t *testing.T) {
	ep := newEndpoint(t, "", defaultOpts)
	targets, err := bypass.NewTargets(t.TempDir(), canaryContent)
	if err != nil {
		t.Fatal(err)
	}
	skipped := skippedSeparators(t, ep.ro)
	watch, err := bypass.NewWatch(targets.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	cases := bypass.Cases(targets)
	policy := 0
	for _, c := range cases {
		for _, method := range []string{http.MethodPost, http.MethodGet} {
			var a answer
			if method == http.MethodPost {
				a = post(t, ep.url, "", c.Query)
			} else {
				a = get(t, ep.url, c.Query)
			}
			code := a.header.Get("X-ClickHouse-Exception-Code")
			if a.status < 400 || a.status >= 500 || strings.Contains(a.body, canaryContent) {
				t.Errorf("%s %s: %d %q\nquery %q", method, c.Name, a.status, a.body, c.Query)
			}
			mustBePolicy := !c.ParserMayRefuse && (c.Sep == "" || skipped[c.Sep])
			if mustBePolicy && code != "164" {
				t.Errorf("%s %s: refused with code %s, want 164 (the policy): %q\nquery %q", method, c.Name, code, a.body, c.Query)
			}
			if code == "164" {
				policy++
			}
		}
		if events, err := watch.Events(); err != nil || len(events) > 0 {
			t.Fatalf("%s: files touched: %v %v\nquery %q", c.Name, events, err, c.Query)
		}
	}
	t.Logf("%d attempts over GET and POST, %d refused by the read-only policy or readonly=1, the rest by the parser; %d separators skipped by the engine's lexer",
		2*len(cases), policy, len(skipped))
	if len(skipped) < 10 {
		t.Errorf("only %d separators are skipped by the engine's lexer: the corpus no longer tests Unicode whitespace", len(skipped))
	}
	// The same engine still answers what is allowed.
	for _, q := range []string{
		"SELECT count() FROM numbers(10)", "SELECT $$a$$ AS h, 'x' FROM system.one", "SHOW TABLES", "DESCRIBE system.one",
		"EXPLAIN SELECT 1", "EXISTS t", "WITH 2 AS x SELECT x * count() FROM t", "SELECT 1 UNION ALL SELECT 2",
		"SELECT n FROM t WHERE n IN (SELECT number FROM numbers(3)) ORDER BY n", "SELECT\u00a01", "SHOW CREATE TABLE t",
		"SELECT * FROM t AS a JOIN (SELECT 1 AS n) AS b USING n", "EXPLAIN PIPELINE header = 1 SELECT 1",
	} {
		if a := post(t, ep.url, "", q); a.status != 200 {
			t.Errorf("allowed %q: %d %q", q, a.status, a.body)
		}
	}
}

// skippedSeparators asks the engine which separators its lexer skips
// between two tokens.
func skippedSeparators(t *testing.T, ro *store.ReadOnly) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, sep := range bypass.Separators() {
		if _, err := ro.Check(context.Background(), "SELECT"+sep+"1"); err == nil {
			out[sep] = true
		}
	}
	return out
}

// TestDefaultFormatIsOnlyAFormat: the default_format parameter reaches the
// engine as the output format, never as query text.
func TestDefaultFormatIsOnlyAFormat(t *testing.T) {
	ep := newEndpoint(t, "", defaultOpts)
	targets, err := bypass.NewTargets(t.TempDir(), canaryContent)
	if err != nil {
		t.Fatal(err)
	}
	watch, err := bypass.NewWatch(targets.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	for _, f := range []string{
		"TSV INTO OUTFILE '" + targets.Written + "'",
		"TSV; SELECT * FROM file('" + targets.Canary + "', 'LineAsString')",
		"TSV SETTINGS readonly = 0",
		"Template",
		"TSV\nINTO OUTFILE '" + targets.Written + "'",
	} {
		a := get(t, ep.url, "SELECT 1", "default_format", f)
		if a.status == 200 || strings.Contains(a.body, canaryContent) {
			t.Errorf("default_format %q: %d %q", f, a.status, a.body)
		}
		if events, err := watch.Events(); err != nil || len(events) > 0 {
			t.Fatalf("default_format %q: files touched: %v %v", f, events, err)
		}
	}
}
