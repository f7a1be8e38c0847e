package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/config"
	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/store"
)

// runCLI runs flowhouse with args and returns its exit status and output.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// queryCheck is a query whose result is known, with its output in each
// format; both engines must print exactly this.
const queryCheck = `SELECT number AS n, toString(number) AS s, concat('it\'s', '\t', toString(number)) AS q,
	[number, 1] AS a, toDateTime(1700000000 + number, 'UTC') AS d, toFloat64(number) / 4 AS f
	FROM system.numbers LIMIT 3`

var queryWant = map[string]string{
	"tsv": "n\ts\tq\ta\td\tf\n" +
		"0\t0\tit\\'s\\t0\t[0,1]\t2023-11-14 22:13:20\t0\n" +
		"1\t1\tit\\'s\\t1\t[1,1]\t2023-11-14 22:13:21\t0.25\n" +
		"2\t2\tit\\'s\\t2\t[2,1]\t2023-11-14 22:13:22\t0.5\n",
	"table": "n  s  q         a      d                       f\n" +
		"-  -  --------  -----  -------------------  ----\n" +
		"0  0  it\\'s\\t0  [0,1]  2023-11-14 22:13:20     0\n" +
		"1  1  it\\'s\\t1  [1,1]  2023-11-14 22:13:21  0.25\n" +
		"2  2  it\\'s\\t2  [2,1]  2023-11-14 22:13:22   0.5\n",
}

// checkQueryOutputs runs queryCheck in every format with the current
// environment's configuration and checks the outputs by value.
func checkQueryOutputs(t *testing.T) {
	t.Helper()
	for _, f := range []string{"tsv", "table"} {
		code, out, errs := runCLI(t, "query", "-format", f, queryCheck)
		if code != 0 || out != queryWant[f] {
			t.Errorf("-format %s: exit %d, stderr %q\n got %q\nwant %q", f, code, errs, out, queryWant[f])
		}
	}
	code, out, errs := runCLI(t, "query", "-noheader", queryCheck, "-format", "tsv")
	if want := queryWant["tsv"][strings.IndexByte(queryWant["tsv"], '\n')+1:]; code != 0 || out != want {
		t.Errorf("-noheader: exit %d %q\n got %q\nwant %q", code, errs, out, want)
	}
	code, out, errs = runCLI(t, "query", "-format", "csv", queryCheck)
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	want := [][]string{{"n", "s", "q", "a", "d", "f"}}
	for i := range 3 {
		n := strconv.Itoa(i)
		want = append(want, []string{n, n, "it's\t" + n, "[" + n + ",1]", "2023-11-14 22:13:2" + n, []string{"0", "0.25", "0.5"}[i]})
	}
	if code != 0 || err != nil || len(recs) != 4 || strings.Join(recs[3], "|") != strings.Join(want[3], "|") || strings.Join(recs[0], "|") != strings.Join(want[0], "|") {
		t.Errorf("-format csv: exit %d %q %v\n got %q\nwant %q", code, errs, err, recs, want)
	}
	code, out, errs = runCLI(t, "query", "-format", "json", queryCheck)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("-format json: exit %d %q %q", code, errs, out)
	}
	var row struct {
		N uint64
		S string
		Q string
		A []uint64
		D string
		F float64
	}
	if err := json.Unmarshal([]byte(lines[2]), &row); err != nil || row.N != 2 || row.S != "2" || row.Q != "it's\t2" || len(row.A) != 2 || row.A[0] != 2 || row.D != "2023-11-14 22:13:22" || row.F != 0.5 {
		t.Errorf("-format json: %+v %v in %q", row, err, lines[2])
	}
	// Refused by the engine: by its parser and the read-only policy on the
	// embedded engine, by readonly=1 on a server.
	if code, _, errs := runCLI(t, "query", "INSERT INTO flows SELECT * FROM flows"); code != 1 || !strings.Contains(errs, "Code: 164.") || !strings.Contains(errs, "readonly mode") {
		t.Errorf("INSERT: exit %d %q", code, errs)
	}
	// The embedded engine formats the output: a FORMAT clause would
	// replace -format's. A server sends rows, whatever the clause says.
	code, out, errs = runCLI(t, "query", "-format", "tsv", "-noheader", "SELECT 1 FORMAT JSON")
	if os.Getenv("FLOWHOUSE_CLICKHOUSE_ADDR") == "" && (code != 2 || !strings.Contains(errs, "-format")) {
		t.Errorf("FORMAT clause: exit %d %q", code, errs)
	}
	if os.Getenv("FLOWHOUSE_CLICKHOUSE_ADDR") != "" && (code != 0 || out != "1\n") {
		t.Errorf("FORMAT clause on a server: exit %d %q %q", code, out, errs)
	}
	// An error of the engine, as ClickHouse writes it.
	if code, _, errs := runCLI(t, "query", "SELECT * FROM no_such_table"); code != 1 || !strings.Contains(errs, "Code: 60. DB::Exception") {
		t.Errorf("unknown table: exit %d %q", code, errs)
	}
}

func TestQueryServerEngine(t *testing.T) {
	addr, database := chtest.Database(t)
	t.Setenv("FLOWHOUSE_CLICKHOUSE_ADDR", addr)
	t.Setenv("FLOWHOUSE_CLICKHOUSE_DATABASE", database)
	checkQueryOutputs(t)
}

// startEmbeddedServe runs flowhouse serve on the embedded engine in dir
// with the query endpoint on a free port; it returns the endpoint's
// address and a function stopping serve.
func startEmbeddedServe(t *testing.T, dir string) (string, func()) {
	t.Helper()
	t.Setenv("FLOWHOUSE_CLICKHOUSE_ADDR", "")
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_LIBRARY", embeddedLibrary(t))
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_PATH", dir)
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN", "127.0.0.1:0")
	t.Setenv("FLOWHOUSE_COLLECTOR_LISTENERS", "127.0.0.1:0")
	t.Setenv("FLOWHOUSE_HTTP_LISTEN", "127.0.0.1:0")
	t.Setenv("FLOWHOUSE_SPOOL_DIR", t.TempDir())
	t.Setenv("FLOWHOUSE_COLLECTOR_STATE_FILE", filepath.Join(t.TempDir(), "collector.state"))
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	up := make(chan string, 1)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() {
		done <- runServer(ctx, cfg, log, hooks{started: func(r running) { up <- r.queryAddr }})
	}()
	var queryAddr string
	select {
	case queryAddr = <-up:
	case err := <-done:
		t.Fatalf("serve ended at start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not start within 60s")
	}
	if queryAddr == "" {
		t.Fatal("serve started without its query endpoint")
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return queryAddr, stop
}

func TestQueryEmbeddedEngine(t *testing.T) {
	dir := t.TempDir()
	queryAddr, stop := startEmbeddedServe(t, dir)
	// flowhouse query finds serve's endpoint at the configured address.
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN", queryAddr)
	if code, out, errs := runCLI(t, "query", "SELECT count() FROM flows"); code != 0 || out != "count()\n0\n" {
		t.Fatalf("through the endpoint: exit %d %q %q", code, out, errs)
	}
	checkQueryOutputs(t)

	// Serve stopped: nothing answers, so the directory is opened.
	stop()
	checkQueryOutputs(t)

	// The endpoint off: the directory is opened straight away.
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN", "")
	if code, out, errs := runCLI(t, "query", "-format", "tsv", "-noheader", "SELECT count() FROM flows"); code != 0 || out != "0\n" {
		t.Errorf("endpoint off: exit %d %q %q", code, out, errs)
	}

	// Nothing answers and someone holds the directory: a clear error.
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN", queryAddr)
	cfg := store.DefaultConfig()
	cfg.Embedded.Library, cfg.Embedded.Path = embeddedLibrary(t), dir
	db, err := store.OpenEmbedded(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI(t, "query", "SELECT 1")
	db.Close()
	for _, want := range []string{"no flowhouse answers at http://" + queryAddr, "is in use by process " + strconv.Itoa(os.Getpid())} {
		if code != 1 || !strings.Contains(errs, want) {
			t.Errorf("directory held: exit %d, no %q in %q", code, want, errs)
		}
	}

	// Something else answers at the address (a ClickHouse server, say).
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("1\n")) }))
	defer other.Close()
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN", strings.TrimPrefix(other.URL, "http://"))
	if code, _, errs := runCLI(t, "query", "SELECT 1"); code != 1 || !strings.Contains(errs, "not flowhouse") {
		t.Errorf("other server: exit %d %q", code, errs)
	}

	// No endpoint and no database in the directory.
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN", "")
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_PATH", t.TempDir())
	if code, _, errs := runCLI(t, "query", "SELECT 1"); code != 1 || !strings.Contains(errs, "holds no embedded database") {
		t.Errorf("empty directory: exit %d %q", code, errs)
	}
}

func TestQueryEndpointNeedsItsToken(t *testing.T) {
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_TOKEN", "tok")
	queryAddr, _ := startEmbeddedServe(t, t.TempDir())
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN", queryAddr)
	if code, out, errs := runCLI(t, "query", "-noheader", "SELECT 7"); code != 0 || out != "7\n" {
		t.Errorf("with the token: exit %d %q %q", code, out, errs)
	}
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_TOKEN", "wrong")
	if code, _, errs := runCLI(t, "query", "SELECT 7"); code != 1 || !strings.Contains(errs, "Code: 516") || !strings.Contains(errs, "http_token") {
		t.Errorf("wrong token: exit %d %q", code, errs)
	}
}
