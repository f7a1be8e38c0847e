package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/flowhouse/flowhouse/config"
	"github.com/flowhouse/flowhouse/queryapi"
	"github.com/flowhouse/flowhouse/store"
)

const queryUsage = `usage: flowhouse [--config FILE] query [-format table|tsv|csv|json] [-noheader] [-timeout D] SQL
       flowhouse [--config FILE] query [flags] < file.sql     (SQL - or no SQL reads standard input)

Runs one read-only query (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS) on
the configured database and prints the result:
  table  aligned columns (the default when standard output is a terminal)
  tsv    tab-separated values, ClickHouse's escaping (the default otherwise)
  csv    comma-separated, strings quoted
  json   one JSON object per row (JSON lines, like ClickHouse's JSONEachRow)
tsv, csv and table start with a line of column names unless -noheader.

With the embedded engine, a running flowhouse serve owns the data directory:
the query goes to its query endpoint (clickhouse.embedded.http_listen, token
clickhouse.embedded.http_token), and the directory is opened directly only
when nothing answers there. Use the same configuration as flowhouse serve.

Flags:
`

// queryFormats maps -format to the format the embedded engine writes,
// with and without a header line.
var queryFormats = map[string][2]string{
	"table": {"TabSeparatedWithNamesAndTypes", "TabSeparatedWithNamesAndTypes"},
	"tsv":   {"TabSeparatedWithNames", "TabSeparated"},
	"csv":   {"CSVWithNames", "CSV"},
	"json":  {"JSONEachRow", "JSONEachRow"},
}

// queryMaxRows bounds a result read from a ClickHouse server row by row.
const queryMaxRows = 10_000_000

// queryError is a failure to report with exit status 1.
type queryError struct{ msg string }

func (e *queryError) Error() string { return e.msg }

// runQuery is `flowhouse query`.
func runQuery(configPath string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("flowhouse query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, queryUsage); fs.PrintDefaults() }
	format := fs.String("format", "", "table, tsv, csv or json (default table on a terminal, else tsv)")
	noHeader := fs.Bool("noheader", false, "no line of column names (tsv, csv, table)")
	timeout := fs.Duration("timeout", 0, "give up after this long (default clickhouse.embedded.query_timeout plus 10s)")
	// Flags may come before or after the SQL words.
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		words = append(words, fs.Arg(0))
		args = fs.Args()[1:]
	}
	sql := strings.Join(words, " ")
	if strings.TrimSpace(sql) == "" || sql == "-" {
		b, err := io.ReadAll(io.LimitReader(stdin, queryapi.MaxQueryBytes+1))
		if err != nil {
			fmt.Fprintln(stderr, "flowhouse query: read the query from standard input:", err)
			return 1
		}
		sql = string(b)
	}
	if strings.TrimSpace(sql) == "" {
		fmt.Fprintln(stderr, "flowhouse query: no query given")
		fs.Usage()
		return 2
	}
	if *format == "" {
		*format = "tsv"
		if isTerminal(stdout) {
			*format = "table"
		}
	}
	if _, ok := queryFormats[*format]; !ok {
		fmt.Fprintf(stderr, "flowhouse query: -format %q is not table, tsv, csv or json\n", *format)
		return 2
	}
	cfg, err := config.Load(configPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if *timeout <= 0 {
		*timeout = cfg.ClickHouse.Embedded.QueryTimeout + 10*time.Second
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, *timeout)
	defer cancelTimeout()

	q := querySpec{sql: sql, format: *format, header: !*noHeader}
	if cfg.ClickHouse.Addr != "" {
		err = queryServer(ctx, cfg, q, stdout)
	} else {
		err = queryEmbedded(ctx, cfg, q, stdout)
	}
	var fe *formatClauseError
	if errors.As(err, &fe) {
		fmt.Fprintln(stderr, "flowhouse query:", err)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "flowhouse query:", err)
		return 1
	}
	return 0
}

// formatClauseError is a query with a FORMAT clause of its own: the
// output is chosen with -format.
type formatClauseError struct{ format string }

func (e *formatClauseError) Error() string {
	return fmt.Sprintf("remove the FORMAT %s clause and choose the output with -format (table, tsv, csv, json)", e.format)
}

type querySpec struct {
	sql    string
	format string // table, tsv, csv, json
	header bool
}

// engineFormat is the ClickHouse format the embedded engine is asked for.
func (q querySpec) engineFormat() string {
	f := queryFormats[q.format]
	if q.header {
		return f[0]
	}
	return f[1]
}

// writeEngineOutput prints what the embedded engine wrote: as it is, or
// aligned for -format table.
func (q querySpec) writeEngineOutput(w io.Writer, out []byte) error {
	if q.format != "table" {
		_, err := w.Write(out)
		return err
	}
	cells, err := queryapi.ParseTSVWithNamesAndTypes(out)
	if err != nil {
		return err
	}
	return queryapi.WriteTable(w, cells, q.header)
}

// queryEmbedded asks the serving process's endpoint, else opens the data
// directory itself.
func queryEmbedded(ctx context.Context, cfg *config.Config, q querySpec, w io.Writer) error {
	ecfg := cfg.ClickHouse.Embedded
	var endpointErr error
	if ecfg.HTTPListen != "" {
		out, answered, err := queryEndpoint(ctx, ecfg, q)
		if answered {
			if err != nil {
				return err
			}
			return q.writeEngineOutput(w, out)
		}
		endpointErr = err
	}
	dir, err := filepath.Abs(ecfg.Path)
	if err != nil {
		return err
	}
	noEndpoint := "the query endpoint is off (clickhouse.embedded.http_listen is empty)"
	if endpointErr != nil {
		noEndpoint = fmt.Sprintf("no flowhouse answers at %s (%v)", endpointURL(ecfg.HTTPListen), endpointErr)
	}
	if _, err := os.Stat(filepath.Join(dir, "metadata")); err != nil {
		return &queryError{fmt.Sprintf("%s, and %s holds no embedded database: has flowhouse serve run with this configuration (clickhouse.embedded.path)?", noEndpoint, dir)}
	}
	if inUse, pid, err := store.EmbeddedDirInUse(dir); err != nil {
		return err
	} else if inUse {
		who := "another process"
		if pid != "" {
			who = "process " + pid
		}
		return &queryError{fmt.Sprintf("%s, and the data directory %s is in use by %s, which owns it: "+
			"query through that flowhouse serve's endpoint (run flowhouse query with the same configuration, or set clickhouse.embedded.http_listen in it), or stop it", noEndpoint, dir, who)}
	}
	scfg := cfg.ClickHouse
	scfg.Writers = 1
	db, err := store.OpenEmbedded(ctx, scfg, nil)
	if err != nil {
		return fmt.Errorf("%s, and opening the data directory failed: %w", noEndpoint, err)
	}
	defer db.Close()
	opts := store.ReadOnlyOptionsOf(ecfg)
	opts.Conns = 1
	ro, err := db.OpenReadOnly(ctx, opts)
	if err != nil {
		return err
	}
	defer ro.Close()
	// The same read-only handle as the endpoint's: the engine's parser
	// decides what may run (store.ReadOnly).
	st, out, err := ro.QueryRaw(ctx, q.sql, q.engineFormat())
	if err != nil {
		return exceptionError(err)
	}
	if st.Format != "" {
		return &formatClauseError{st.Format}
	}
	return q.writeEngineOutput(w, out)
}

// exceptionError shows an engine exception as ClickHouse would.
func exceptionError(err error) error {
	var ex *clickhouse.Exception
	var refused *store.RefusedError
	if errors.As(err, &refused) {
		return &queryError{queryapi.ExceptionText(164, "READONLY", "Cannot execute query in readonly mode: "+refused.Reason)}
	}
	if errors.As(err, &ex) {
		return &queryError{queryapi.ExceptionText(int(ex.Code), ex.CodeName, ex.Message)}
	}
	return err
}

// endpointURL is where the endpoint listening on listen is reached: an
// unspecified host (":8123", "0.0.0.0:8123") is reached on loopback.
func endpointURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen + "/"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// queryEndpoint posts the query to a serving flowhouse. answered is false
// when nothing listens there (then err says why), so the caller may open
// the directory itself; any answer, even an error, is final.
func queryEndpoint(ctx context.Context, ecfg store.EmbeddedConfig, q querySpec) (out []byte, answered bool, err error) {
	base := endpointURL(ecfg.HTTPListen)
	u := base + "?default_format=" + url.QueryEscape(q.engineFormat())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(q.sql))
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Content-Type", "text/plain; charset=UTF-8")
	if ecfg.HTTPToken != "" {
		req.Header.Set("Authorization", "Bearer "+ecfg.HTTPToken)
	}
	client := &http.Client{Transport: &http.Transport{
		Proxy:       nil, // the endpoint is local; never through HTTP_PROXY
		DialContext: (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
	}}
	resp, err := client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, false, op.Err
		}
		return nil, true, fmt.Errorf("query endpoint %s: %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, ecfg.QueryMaxResultBytes+1))
	if err != nil {
		return nil, true, fmt.Errorf("query endpoint %s: read the answer: %w", base, err)
	}
	if resp.Header.Get(queryapi.EngineHeader) == "" {
		return nil, true, &queryError{fmt.Sprintf("something that is not flowhouse answers at %s (%s; a ClickHouse server's HTTP interface uses port 8123 too): "+
			"set clickhouse.embedded.http_listen to the address of flowhouse serve's query endpoint", base, resp.Status)}
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if code := resp.Header.Get("X-ClickHouse-Exception-Code"); code == "194" || code == "516" {
			msg += " (clickhouse.embedded.http_token must be the serving flowhouse's)"
		}
		return nil, true, &queryError{msg}
	}
	if f := resp.Header.Get("X-ClickHouse-Format"); f != "" && f != q.engineFormat() {
		return nil, true, &formatClauseError{f}
	}
	return body, true, nil
}

// queryServer runs the query on the ClickHouse server with readonly=1
// and formats the rows.
func queryServer(ctx context.Context, cfg *config.Config, q querySpec, w io.Writer) error {
	db, err := store.OpenServer(ctx, cfg.ClickHouse, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.Query(clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"readonly": 1})), q.sql)
	var ex *clickhouse.Exception
	if errors.As(err, &ex) && ex.Code == 164 && strings.Contains(ex.Message, "'readonly'") {
		// The user is read-only already, and may not even set it again.
		rows, err = db.Query(ctx, q.sql)
	}
	if err != nil {
		return exceptionError(err)
	}
	res, err := queryapi.ReadRows(rows, queryMaxRows)
	if err != nil {
		return exceptionError(err)
	}
	switch q.format {
	case "table":
		return queryapi.WriteTable(w, queryapi.CellsOf(res), q.header)
	case "csv":
		return queryapi.WriteCSV(w, res, q.header)
	case "json":
		return queryapi.WriteJSONLines(w, res)
	}
	return queryapi.WriteTSV(w, res, q.header)
}

// isTerminal says whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// queryEndpointRunner is the read-only HTTP query endpoint of flowhouse serve
// and the read-only connections it runs on; the zero value is off.
type queryEndpointRunner struct {
	ro     *store.ReadOnly
	server *queryapi.Server
	log    *slog.Logger
}

// start starts the endpoint when the embedded engine is in use and
// clickhouse.embedded.http_listen is set; otherwise it stays off.
func (q *queryEndpointRunner) start(ctx context.Context, cfg *config.Config, db store.DB) error {
	ecfg := cfg.ClickHouse.Embedded
	emb, ok := db.(*store.Embedded)
	if cfg.ClickHouse.Addr != "" || ecfg.HTTPListen == "" || !ok {
		return nil
	}
	ro, err := emb.OpenReadOnly(ctx, store.ReadOnlyOptionsOf(ecfg))
	if err != nil {
		return fmt.Errorf("query endpoint: %w", err)
	}
	server := queryapi.New(queryapi.ConfigOf(ecfg), queryapi.Deps{Querier: ro, Timezone: ro.Timezone(), Logger: q.log})
	if err := server.Start(ctx); err != nil {
		ro.Close()
		return err
	}
	q.ro, q.server = ro, server
	return nil
}

func (q *queryEndpointRunner) addr() string {
	if q.server == nil {
		return ""
	}
	return q.server.Addr()
}

// stop waits for running queries until ctx ends, then closes the
// connections (which waits for a query the engine is still running).
func (q *queryEndpointRunner) stop(ctx context.Context) error {
	if q.server == nil {
		return nil
	}
	err := q.server.Stop(ctx)
	q.ro.Close()
	q.server = nil
	return err
}
