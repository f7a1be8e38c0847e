package queryapi_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/queryapi"
	"github.com/flowhouse/flowhouse/store"
)

// The library runs one embedded engine per process: every test here
// shares the one opened on first use, closed by TestMain.
var (
	engineOnce sync.Once
	engine     *store.Embedded
	engineErr  error
	engineDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if engine != nil {
		engine.Close()
	}
	if engineDir != "" {
		os.RemoveAll(engineDir)
	}
	os.Exit(code)
}

// sharedEngine is the engine with table t: (n UInt64, s String, a
// Array(UInt32), d DateTime('UTC')), rows n = 1..3. It fails the test
// when libchdb.so is missing, or skips it with FLOWHOUSE_SKIP_EMBEDDED.
func sharedEngine(t *testing.T) *store.Embedded {
	t.Helper()
	if os.Getenv("FLOWHOUSE_SKIP_EMBEDDED") != "" {
		t.Skip("FLOWHOUSE_SKIP_EMBEDDED is set")
	}
	lib, err := filepath.Abs(filepath.Join("..", "var", "lib", "libchdb.so"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(lib); err != nil {
		t.Fatalf("the embedded engine's library is missing (%v): run `make deps` (or scripts/chdb.sh install), or set FLOWHOUSE_SKIP_EMBEDDED=1 to skip these tests", err)
	}
	engineOnce.Do(func() {
		engineDir, engineErr = os.MkdirTemp("", "queryapi-test-")
		if engineErr != nil {
			return
		}
		cfg := store.DefaultConfig()
		cfg.Embedded.Library, cfg.Embedded.Path = lib, engineDir
		engine, engineErr = store.OpenEmbedded(context.Background(), cfg, nil)
		if engineErr != nil {
			return
		}
		ctx := context.Background()
		for _, s := range []string{
			"CREATE TABLE t (n UInt64, s String, a Array(UInt32), d DateTime('UTC')) ENGINE = MergeTree ORDER BY n",
			`INSERT INTO t VALUES (1, 'one', [1], 1700000000), (2, 'tab\there', [], 1700000001), (3, 'quote''"', [3,4], 1700000002)`,
		} {
			if engineErr = engine.Exec(ctx, s); engineErr != nil {
				return
			}
		}
	})
	if engineErr != nil {
		t.Fatal(engineErr)
	}
	return engine
}

type endpoint struct {
	url string
	ro  *store.ReadOnly
}

func newEndpoint(t *testing.T, token string, opts store.ReadOnlyOptions) *endpoint {
	t.Helper()
	e := sharedEngine(t)
	ro, err := e.OpenReadOnly(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := queryapi.New(queryapi.Config{Token: token, Timeout: 10 * time.Second}, queryapi.Deps{Querier: ro, Timezone: ro.Timezone()})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		ro.Close()
	})
	return &endpoint{url: hs.URL, ro: ro}
}

var defaultOpts = store.ReadOnlyOptions{Conns: 2, Timeout: 5 * time.Second, MaxResultBytes: 10 << 20}

type answer struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func get(t *testing.T, base, query string, params ...string) answer {
	t.Helper()
	v := url.Values{"query": {query}}
	for i := 0; i+1 < len(params); i += 2 {
		v.Set(params[i], params[i+1])
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/?"+v.Encode(), nil)
	return do(t, req)
}

func post(t *testing.T, base, rawQuery, body string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/?"+rawQuery, strings.NewReader(body))
	return do(t, req)
}

const selectT = "SELECT n, s, a, d FROM t ORDER BY n"

func TestFormats(t *testing.T) {
	ep := newEndpoint(t, "", defaultOpts)
	tsvRows := "1\tone\t[1]\t2023-11-14 22:13:20\n2\ttab\\there\t[]\t2023-11-14 22:13:21\n3\tquote\\'\"\t[3,4]\t2023-11-14 22:13:22\n" // ClickHouse escapes ' in TSV
	for _, tc := range []struct {
		format string // default_format; "" for the default
		check  func(t *testing.T, body string)
		ctype  string
	}{
		{"", func(t *testing.T, body string) { equal(t, body, tsvRows) }, "text/tab-separated-values"},
		{"TabSeparated", func(t *testing.T, body string) { equal(t, body, tsvRows) }, "text/tab-separated-values"},
		{"TSV", func(t *testing.T, body string) { equal(t, body, tsvRows) }, "text/tab-separated-values"},
		{"TabSeparatedWithNames", func(t *testing.T, body string) { equal(t, body, "n\ts\ta\td\n"+tsvRows) }, "text/tab-separated-values"},
		{"CSV", func(t *testing.T, body string) { checkCSV(t, body, false) }, "text/csv"},
		{"CSVWithNames", func(t *testing.T, body string) { checkCSV(t, body, true) }, "text/csv"},
		{"JSONEachRow", func(t *testing.T, body string) {
			var got []map[string]any
			for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("%v in %q", err, line)
				}
				got = append(got, m)
			}
			if len(got) != 3 || got[1]["s"] != "tab\there" || got[2]["s"] != `quote'"` || fmt.Sprint(got[2]["a"]) != "[3 4]" || got[0]["d"] != "2023-11-14 22:13:20" || fmt.Sprint(got[0]["n"]) != "1" {
				t.Errorf("JSONEachRow: %v", got)
			}
		}, "application/x-ndjson"},
		{"JSON", func(t *testing.T, body string) {
			var doc struct {
				Meta []struct{ Name, Type string }
				Data []map[string]any
				Rows int
			}
			if err := json.Unmarshal([]byte(body), &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Rows != 3 || len(doc.Meta) != 4 || doc.Meta[3].Type != "DateTime('UTC')" || doc.Data[1]["s"] != "tab\there" {
				t.Errorf("JSON: %+v", doc)
			}
		}, "application/json"},
		{"JSONCompact", func(t *testing.T, body string) {
			var doc struct{ Data [][]any }
			if err := json.Unmarshal([]byte(body), &doc); err != nil {
				t.Fatal(err)
			}
			if len(doc.Data) != 3 || doc.Data[2][1] != `quote'"` {
				t.Errorf("JSONCompact: %+v", doc)
			}
		}, "application/json"},
	} {
		t.Run("default_format="+tc.format, func(t *testing.T) {
			var a answer
			if tc.format == "" {
				a = get(t, ep.url, selectT)
			} else {
				a = get(t, ep.url, selectT, "default_format", tc.format)
			}
			if a.status != 200 {
				t.Fatalf("%d %s", a.status, a.body)
			}
			if !strings.HasPrefix(a.header.Get("Content-Type"), tc.ctype) {
				t.Errorf("Content-Type %q, want %s", a.header.Get("Content-Type"), tc.ctype)
			}
			if a.header.Get("X-ClickHouse-Timezone") == "" || a.header.Get(queryapi.EngineHeader) != "embedded" {
				t.Errorf("headers %v", a.header)
			}
			tc.check(t, a.body)
		})
	}
	// The FORMAT clause wins over default_format, as in ClickHouse.
	a := get(t, ep.url, selectT+" FORMAT CSVWithNames", "default_format", "JSON")
	if a.status != 200 || a.header.Get("X-ClickHouse-Format") != "CSVWithNames" {
		t.Fatalf("%d %v %s", a.status, a.header, a.body)
	}
	checkCSV(t, a.body, true)
}

func equal(t *testing.T, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

func checkCSV(t *testing.T, body string, header bool) {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("%v in %q", err, body)
	}
	want := [][]string{
		{"1", "one", "[1]", "2023-11-14 22:13:20"},
		{"2", "tab\there", "[]", "2023-11-14 22:13:21"},
		{"3", `quote'"`, "[3,4]", "2023-11-14 22:13:22"},
	}
	if header {
		want = append([][]string{{"n", "s", "a", "d"}}, want...)
	}
	if fmt.Sprint(recs) != fmt.Sprint(want) {
		t.Errorf("CSV:\n got %q\nwant %q", recs, want)
	}
}

func TestGetAndPost(t *testing.T) {
	ep := newEndpoint(t, "", defaultOpts)
	for name, a := range map[string]answer{
		"POST body":            post(t, ep.url, "", "SELECT count() FROM t"),
		"POST query+body":      post(t, ep.url, "query="+url.QueryEscape("SELECT count() "), "FROM t"),
		"POST form-looking":    post(t, ep.url, "", "SELECT count() FROM t WHERE s LIKE '%e%' OR 1+1=2"),
		"GET query":            get(t, ep.url, "SELECT count() FROM t"),
		"GET trailing ;":       get(t, ep.url, "SELECT count() FROM t;"),
		"POST default_format":  post(t, ep.url, "default_format=TSV", "SELECT count() FROM t"),
		"GET comment and WITH": get(t, ep.url, "-- how many\nWITH 1 AS one SELECT count() * one FROM t"),
	} {
		if a.status != 200 || a.body != "3\n" {
			t.Errorf("%s: %d %q", name, a.status, a.body)
		}
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("SELECT count() FROM t"))
	zw.Close()
	req, _ := http.NewRequest(http.MethodPost, ep.url+"/", &gz)
	req.Header.Set("Content-Encoding", "gzip")
	if a := do(t, req); a.status != 200 || a.body != "3\n" {
		t.Errorf("gzip body: %d %q", a.status, a.body)
	}
	// ping, and / without a query, answer Ok.
	for _, path := range []string{"/ping", "/"} {
		req, _ := http.NewRequest(http.MethodGet, ep.url+path, nil)
		if a := do(t, req); a.status != 200 || a.body != "Ok.\n" {
			t.Errorf("GET %s: %d %q", path, a.status, a.body)
		}
	}
	req, _ = http.NewRequest(http.MethodGet, ep.url+"/play", nil)
	if a := do(t, req); a.status != 404 {
		t.Errorf("GET /play: %d %q", a.status, a.body)
	}
	req, _ = http.NewRequest(http.MethodDelete, ep.url+"/", nil)
	if a := do(t, req); a.status != 405 {
		t.Errorf("DELETE /: %d %q", a.status, a.body)
	}
}

func TestErrors(t *testing.T) {
	ep := newEndpoint(t, "", defaultOpts)
	for _, tc := range []struct {
		query  string
		status int
		code   string
		text   string
	}{
		{"SELECT * FROM no_such_table", 404, "60", "Code: 60. DB::Exception: "},
		{"SELECT nope(", 400, "62", "Code: 62. DB::Exception: "},
		{"INSERT INTO t VALUES (9, 'x', [], 0)", 403, "164", "not INSERT"},
		{"DROP TABLE t", 403, "164", "not DROP"},
		{"SELECT 1; DROP TABLE t", 400, "62", "Multi-statements are not allowed"},
		{"SELECT 1 INTO OUTFILE '/tmp/flowhouse-queryapi-test'", 403, "164", "INTO OUTFILE"},
		{"SELECT file('/etc/hostname')", 403, "164", "the function file is not allowed"},
		{"SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')", 403, "164", "table function url is not allowed"},
		{"SELECT 1 SETTINGS max_execution_time = 1000", 403, "164", "readonly mode"},
		{"SELECT 1", 400, "73", "Unknown format"}, // with default_format=NoSuchFormat below
	} {
		var a answer
		if tc.code == "73" {
			a = get(t, ep.url, tc.query, "default_format", "NoSuchFormat")
		} else {
			a = post(t, ep.url, "", tc.query)
		}
		if a.status != tc.status || a.header.Get("X-ClickHouse-Exception-Code") != tc.code || !strings.HasPrefix(a.body, "Code: "+tc.code+".") || !strings.Contains(a.body, tc.text) {
			t.Errorf("%s: %d code %q %q; want %d, code %s, %q", tc.query, a.status, a.header.Get("X-ClickHouse-Exception-Code"), a.body, tc.status, tc.code, tc.text)
		}
	}
	if _, err := os.Stat("/tmp/flowhouse-queryapi-test"); err == nil {
		t.Error("INTO OUTFILE wrote its file")
	}
	var n uint64
	if err := store.QueryRow(context.Background(), sharedEngine(t), []any{&n}, "SELECT count() FROM t"); err != nil || n != 3 {
		t.Errorf("t has %d rows (%v) after the refused writes, want 3", n, err)
	}
}

func TestLimits(t *testing.T) {
	small := newEndpoint(t, "", store.ReadOnlyOptions{Conns: 1, Timeout: time.Second, MaxResultBytes: 2000})
	a := get(t, small.url, "SELECT number FROM system.numbers LIMIT 100000")
	if a.status != 400 || a.header.Get("X-ClickHouse-Exception-Code") != "396" {
		t.Errorf("large result: %d %q", a.status, a.body)
	}
	// Within the engine's max_result_bytes, but the JSON is larger.
	a = get(t, small.url, "SELECT number FROM system.numbers LIMIT 150", "default_format", "JSON")
	if a.status != 400 || !strings.Contains(a.body, "query_max_result_bytes") {
		t.Errorf("large formatted result: %d %q", a.status, a.body)
	}
	start := time.Now()
	a = get(t, small.url, "SELECT count() FROM numbers(1000000000000)")
	if a.status != 400 || a.header.Get("X-ClickHouse-Exception-Code") != "159" || time.Since(start) > 10*time.Second {
		t.Errorf("long query: %d %q after %s", a.status, a.body, time.Since(start))
	}
}

func TestToken(t *testing.T) {
	ep := newEndpoint(t, "s3cret", defaultOpts)
	q := url.Values{"query": {"SELECT 1"}}.Encode()
	for _, tc := range []struct {
		name   string
		set    func(r *http.Request)
		status int
	}{
		{"none", func(r *http.Request) {}, 401},
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }, 200},
		{"wrong bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }, 403},
		{"X-ClickHouse-Key", func(r *http.Request) {
			r.Header.Set("X-ClickHouse-User", "default")
			r.Header.Set("X-ClickHouse-Key", "s3cret")
		}, 200},
		{"basic", func(r *http.Request) { r.SetBasicAuth("default", "s3cret") }, 200},
		{"wrong basic", func(r *http.Request) { r.SetBasicAuth("default", "x") }, 403},
		{"password param", func(r *http.Request) { r.URL.RawQuery += "&user=default&password=s3cret" }, 200},
		{"one right, one wrong", func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer s3cret")
			r.URL.RawQuery += "&password=x"
		}, 403},
	} {
		req, _ := http.NewRequest(http.MethodGet, ep.url+"/?"+q, nil)
		tc.set(req)
		a := do(t, req)
		if a.status != tc.status {
			t.Errorf("%s: %d %q, want %d", tc.name, a.status, a.body, tc.status)
		}
		if tc.status == 200 && a.body != "1\n" {
			t.Errorf("%s: %q", tc.name, a.body)
		}
		if tc.status == 401 && (a.header.Get("X-ClickHouse-Exception-Code") != "194" || a.header.Get("WWW-Authenticate") == "") {
			t.Errorf("%s: headers %v", tc.name, a.header)
		}
		if tc.status == 403 && a.header.Get("X-ClickHouse-Exception-Code") != "516" {
			t.Errorf("%s: headers %v", tc.name, a.header)
		}
	}
	// /ping needs no token, as on ClickHouse.
	req, _ := http.NewRequest(http.MethodGet, ep.url+"/ping", nil)
	if a := do(t, req); a.status != 200 {
		t.Errorf("/ping: %d", a.status)
	}
}

func TestStartStop(t *testing.T) {
	e := sharedEngine(t)
	ro, err := e.OpenReadOnly(context.Background(), defaultOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	srv := queryapi.New(queryapi.Config{Listen: "127.0.0.1:0"}, queryapi.Deps{Querier: ro})
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a := get(t, "http://"+srv.Addr(), "SELECT 40 + 2"); a.body != "42\n" {
		t.Errorf("%d %q", a.status, a.body)
	}
	busy := queryapi.New(queryapi.Config{Listen: srv.Addr()}, queryapi.Deps{Querier: ro})
	if err := busy.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "http_listen") {
		t.Errorf("second listener on %s: %v", srv.Addr(), err)
	}
	if err := srv.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + srv.Addr() + "/ping"); err == nil {
		t.Error("still answering after Stop")
	}
}

// TestClientGoneCancelsTheQuery: a client that stops reading a large
// result frees the endpoint's one connection for the next query, long
// before the query's own time limit.
func TestClientGoneCancelsTheQuery(t *testing.T) {
	e := sharedEngine(t)
	ro, err := e.OpenReadOnly(context.Background(), store.ReadOnlyOptions{Conns: 1, Timeout: 10 * time.Minute, MaxResultBytes: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	srv := queryapi.New(queryapi.Config{Timeout: 20 * time.Second}, queryapi.Deps{Querier: ro})
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/?" + url.Values{"query": {"SELECT number, toString(number) FROM numbers(1000000000000)"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.CopyN(io.Discard, resp.Body, 4<<20); err != nil || resp.StatusCode != 200 {
		t.Fatalf("streaming: %d, read %d bytes: %v", resp.StatusCode, n, err)
	}
	resp.Body.Close()
	// With the connection still busy, this would wait its 20 s and fail.
	if a := get(t, hs.URL, "SELECT 1"); a.status != 200 || a.body != "1\n" {
		t.Fatalf("after the client went away: %d %q", a.status, a.body)
	}
}

// TestResultLimitHoldsWhileStreaming: output past the limit stops the
// query mid-stream, and the answer is broken off with the exception at
// its end, never passed off as a whole result.
func TestResultLimitHoldsWhileStreaming(t *testing.T) {
	ep := newEndpoint(t, "", store.ReadOnlyOptions{Conns: 1, Timeout: time.Minute, MaxResultBytes: 8 << 20})
	resp, err := http.Get(ep.url + "/?" + url.Values{"query": {"SELECT number, toString(number) FROM numbers(100000000)"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || err == nil {
		t.Errorf("status %d, read error %v: want 200 and a broken-off body", resp.StatusCode, err)
	}
	if len(body) > 9<<20 || !strings.Contains(string(body), "Code: 396.") {
		t.Errorf("%d bytes, ending %q", len(body), body[max(0, len(body)-200):])
	}
}

// A result of many blocks in each kind of format is one well-formed
// output: the engine writes each block it streams as a whole output, so
// formats of rows stream, those with names (and types) lines stream
// with them once, and the others (JSON, XML, Pretty) come whole.
func TestManyBlocksOneOutput(t *testing.T) {
	ep := newEndpoint(t, "", store.ReadOnlyOptions{Conns: 1, Timeout: 30 * time.Second, MaxResultBytes: 64 << 20})
	const rows = 300000
	// numbers_mt and the ORDER BY make several blocks, out of order.
	query := fmt.Sprintf("SELECT number FROM numbers_mt(%d) ORDER BY number %% 7, number FORMAT ", rows)
	lines := func(body string) []string { return strings.Split(strings.TrimSuffix(body, "\n"), "\n") }
	tests := []struct {
		format string
		check  func(t *testing.T, body string)
	}{
		{"TSV", func(t *testing.T, body string) {
			if n := len(lines(body)); n != rows {
				t.Errorf("%d lines, want %d", n, rows)
			}
		}},
		{"CSVWithNames", func(t *testing.T, body string) {
			ls := lines(body)
			if len(ls) != rows+1 || ls[0] != `"number"` || strings.Count(body, `"number"`) != 1 {
				t.Errorf("%d lines, %d names lines, first %q; want %d and 1", len(ls), strings.Count(body, `"number"`), ls[0], rows+1)
			}
		}},
		{"JSONCompactEachRowWithNamesAndTypes", func(t *testing.T, body string) {
			ls := lines(body)
			if len(ls) != rows+2 || ls[0] != `["number"]` || ls[1] != `["UInt64"]` || strings.Count(body, `["number"]`) != 1 {
				t.Errorf("%d lines, first %q %q; want %d with names and types once", len(ls), ls[0], ls[1], rows+2)
			}
		}},
		{"JSON", func(t *testing.T, body string) {
			var doc struct {
				Data []struct {
					Number json.Number `json:"number"`
				} `json:"data"`
				Rows int `json:"rows"`
			}
			if err := json.Unmarshal([]byte(body), &doc); err != nil || len(doc.Data) != rows || doc.Rows != rows {
				t.Errorf("one JSON document of %d rows: %d rows, %v", rows, len(doc.Data), err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			a := get(t, ep.url, query+tt.format)
			if a.status != 200 {
				t.Fatalf("%d %.300s", a.status, a.body)
			}
			tt.check(t, a.body)
		})
	}
}
