package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// MaxQueryBytes bounds the text of an analyst's query.
const MaxQueryBytes = 1 << 20

// ReadOnlyOptions bound the queries of a ReadOnly handle.
type ReadOnlyOptions struct {
	// Conns is how many queries run at once; more wait for a connection.
	Conns int
	// Timeout is the engine's max_execution_time for each query, and
	// bounds the wait for a connection.
	Timeout time.Duration
	// MaxResultBytes is the most output one query may stream (and the
	// engine's max_result_bytes, on its uncompressed blocks).
	MaxResultBytes int64
	// MaxMemoryBytes is the engine's max_memory_usage per query (0: the
	// default, 1 GiB); GROUP BY and ORDER BY spill to disk past half of it.
	MaxMemoryBytes int64
	// MaxRowsToRead and MaxBytesToRead bound what a query reads from
	// tables; 0 is no limit.
	MaxRowsToRead, MaxBytesToRead int64
}

// ReadOnlyOptionsOf are the options the configuration asks for.
func ReadOnlyOptionsOf(cfg EmbeddedConfig) ReadOnlyOptions {
	return ReadOnlyOptions{
		Conns: cfg.QueryConcurrency, Timeout: cfg.QueryTimeout, MaxResultBytes: cfg.QueryMaxResultBytes,
		MaxMemoryBytes: cfg.QueryMaxMemoryBytes, MaxRowsToRead: cfg.QueryMaxRowsToRead, MaxBytesToRead: cfg.QueryMaxBytesToRead,
	}
}

// ReadOnly runs analysts' queries on the embedded engine. Two mechanisms
// of the engine make it read-only, and neither depends on query text we
// interpret ourselves:
//
//   - Every query is parsed by the engine and its syntax tree is checked
//     against allowlists before it runs (guard.go): one statement, of a
//     read-only kind, no table function but row generators, no file(),
//     no dictionary, no INTO OUTFILE, no SETTINGS. chDB runs file() and
//     INTO OUTFILE even at readonly=1 (measured), so this is what stops
//     them.
//   - Its connections are sessions at readonly=1, with the limits set
//     before: the engine refuses every write, DDL and change of a setting,
//     the limits included.
//
// Results stream to the caller chunk by chunk, so the result limit holds
// while the output is produced, and a caller that goes away cancels the
// query at the next chunk.
type ReadOnly struct {
	e     *Embedded
	conns chan *chdbConn
	all   []*chdbConn
	tz    string
	opts  ReadOnlyOptions

	db, displayName string

	tableFunctions map[string]bool // lowercase names
	formats        map[string]bool // lowercase output format names
	settings       map[string]bool // lowercase names of the engine's settings

	closing   chan struct{}
	closeOnce sync.Once
}

// OpenReadOnly opens opts.Conns read-only connections on the engine,
// using the same database as e. Close it before e.
func (e *Embedded) OpenReadOnly(ctx context.Context, opts ReadOnlyOptions) (*ReadOnly, error) {
	if opts.Conns < 1 {
		opts.Conns = 1
	}
	if opts.Timeout < time.Second {
		return nil, fmt.Errorf("store: read-only timeout %s is shorter than 1s", opts.Timeout)
	}
	if opts.MaxMemoryBytes == 0 {
		opts.MaxMemoryBytes = DefaultConfig().Embedded.QueryMaxMemoryBytes
	}
	if opts.MaxResultBytes < 1 || opts.MaxMemoryBytes < 1 {
		return nil, fmt.Errorf("store: read-only limits must be positive (result %d bytes, memory %d bytes)", opts.MaxResultBytes, opts.MaxMemoryBytes)
	}
	r := &ReadOnly{e: e, conns: make(chan *chdbConn, opts.Conns), opts: opts, closing: make(chan struct{})}
	db, err := r.loadCatalog(ctx)
	if err != nil {
		return nil, err
	}
	r.db = db
	setup := readOnlySetup(db, opts)
	for range opts.Conns {
		c, err := e.all[0].lib.connectChdb(e.dir, e.server)
		if err != nil {
			r.closeAll()
			return nil, err
		}
		r.all = append(r.all, c)
		for _, s := range setup {
			if _, err := c.query(s, "Null"); err != nil {
				r.closeAll()
				return nil, fmt.Errorf("store: read-only connection: %s: %w", s, err)
			}
		}
		r.conns <- c
	}
	return r, nil
}

// readOnlySetup are the statements that make a connection read-only: USE
// and the limits first, since once readonly=1 no setting can change.
func readOnlySetup(db string, opts ReadOnlyOptions) []string {
	return []string{
		"USE " + quoteIdent(db),
		fmt.Sprintf("SET max_execution_time = %d", int64(opts.Timeout/time.Second)),
		"SET timeout_overflow_mode = 'throw'",
		fmt.Sprintf("SET max_result_bytes = %d", opts.MaxResultBytes),
		"SET result_overflow_mode = 'throw'",
		fmt.Sprintf("SET max_memory_usage = %d", opts.MaxMemoryBytes),
		fmt.Sprintf("SET max_bytes_before_external_group_by = %d", opts.MaxMemoryBytes/2),
		fmt.Sprintf("SET max_bytes_before_external_sort = %d", opts.MaxMemoryBytes/2),
		fmt.Sprintf("SET max_rows_to_read = %d", opts.MaxRowsToRead),
		fmt.Sprintf("SET max_bytes_to_read = %d", opts.MaxBytesToRead),
		"SET read_overflow_mode = 'throw'",
		// The query reaches the parser as a string literal inside
		// formatQuerySingleLine(...): room for the largest one accepted.
		fmt.Sprintf("SET max_query_size = %d", 4*MaxQueryBytes+1024),
		"SET readonly = 1",
	}
}

// loadCatalog reads what the policy needs from the engine: its database
// and time zone, its table functions and its output formats.
func (r *ReadOnly) loadCatalog(ctx context.Context) (db string, err error) {
	c, err := r.e.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer r.e.release(c)
	out, err := c.query("SELECT currentDatabase(), timezone(), displayName()", "TabSeparated")
	if err != nil {
		return "", fmt.Errorf("store: read-only connection: %w", err)
	}
	fields := strings.Split(strings.TrimSpace(string(out)), "\t")
	if len(fields) != 3 {
		return "", fmt.Errorf("store: read-only connection: current database, time zone and name: %q", out)
	}
	db, r.tz, r.displayName = fields[0], fields[1], fields[2]
	if !identifier.MatchString(db) {
		return "", fmt.Errorf("store: read-only connection: current database %q", db)
	}
	if r.tableFunctions, err = lowerNames(c, "SELECT name FROM system.table_functions"); err != nil {
		return "", err
	}
	for _, name := range knownTableFunctions {
		r.tableFunctions[name] = true
	}
	if r.formats, err = lowerNames(c, "SELECT name FROM system.formats WHERE is_output"); err != nil {
		return "", err
	}
	if r.settings, err = lowerNames(c, "SELECT name FROM system.settings"); err != nil {
		return "", err
	}
	return db, nil
}

func lowerNames(c *chdbConn, query string) (map[string]bool, error) {
	out, err := c.query(query, "TabSeparatedRaw")
	if err != nil {
		return nil, fmt.Errorf("store: read-only connection: %s: %w", query, err)
	}
	names := map[string]bool{}
	for _, n := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		names[strings.ToLower(n)] = true
	}
	return names, nil
}

func (r *ReadOnly) closeAll() {
	for _, c := range r.all {
		c.close()
	}
}

// Timezone is the engine's time zone: the zone of DateTime values
// without one in query results.
func (r *ReadOnly) Timezone() string { return r.tz }

// Database is the database the queries run in.
func (r *ReadOnly) Database() string { return r.db }

// DisplayName is the engine's displayName() (the host's name).
func (r *ReadOnly) DisplayName() string { return r.displayName }

// AnalystQuery is one analyst's query with what its client sent along.
type AnalystQuery struct {
	// Text is the query; Format its output format unless it has a
	// FORMAT clause.
	Text, Format string
	// Params are the values of its {name:Type} query parameters, bound
	// by the engine (the guard decides on the query with them bound).
	Params []Param
	// Settings are applied to a session of the query's own when the
	// policy allows them (see embedded_settings.go).
	Settings []Setting
	// Progress, when set, is given the engine's statistics of the query
	// so far before each chunk of output is written.
	Progress func(QueryStats)
}

// Run is Execute of a query without parameters or settings.
func (r *ReadOnly) Run(ctx context.Context, query, format string, open func(Statement) io.Writer) error {
	_, err := r.Execute(ctx, AnalystQuery{Text: query, Format: format}, open)
	return err
}

// Execute checks q (see ReadOnly), then runs it and streams its output,
// in q.Format unless the query has a FORMAT clause, to the writer open
// returns, and returns the engine's statistics of it. open is called once
// the query is accepted, before any output; what it returns receives the
// output chunk by chunk, as the engine makes it. A query or setting
// refused by the policy is a *RefusedError; one the engine refuses or
// fails is a *clickhouse.Exception with the engine's code (inside an
// *InvalidQueryError when the query, a parameter or a setting's value is
// at fault); output past MaxResultBytes stops the query with exception
// 396 (TOO_MANY_ROWS_OR_BYTES), as the engine reports its own limit. When
// ctx ends, the query is cancelled at its next chunk.
func (r *ReadOnly) Execute(ctx context.Context, q AnalystQuery, open func(Statement) io.Writer) (QueryStats, error) {
	sets, err := r.settingStatements(q.Settings)
	if err != nil {
		return QueryStats{}, err
	}
	c, err := r.acquire(ctx)
	if err != nil {
		return QueryStats{}, err
	}
	st, err := r.check(c, q.Text, q.Params)
	if err != nil {
		r.release(c, false, false)
		return QueryStats{}, err
	}
	// The connection stays taken while a session of the query's own runs
	// it, so query_concurrency still bounds the queries.
	run := c
	if len(sets) > 0 {
		if run, err = r.session(sets); err != nil {
			r.release(c, false, false)
			return QueryStats{}, err
		}
		defer run.close()
	}
	var w io.Writer
	written := int64(0)
	start := time.Now()
	stats, err := r.output(run, st, q, func(chunk []byte, soFar QueryStats) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if written += int64(len(chunk)); written > r.opts.MaxResultBytes {
			return &clickhouse.Exception{Code: CodeTooManyRowsOrBytes, Name: "DB::Exception", CodeName: "TOO_MANY_ROWS_OR_BYTES",
				Message: fmt.Sprintf("Limit for result exceeded: the output passed %d bytes (clickhouse.embedded.query_max_result_bytes); the query was stopped", r.opts.MaxResultBytes)}
		}
		if w == nil {
			w = open(st)
		}
		if q.Progress != nil {
			q.Progress(soFar)
		}
		_, err := w.Write(chunk)
		return err
	})
	if err == nil && w == nil {
		open(st) // an empty result
	}
	// A session of the query's own is closed, which frees what it held.
	failed := err != nil
	r.release(c, failed && run == c, failed || time.Since(start) > time.Second)
	return stats, err
}

// output runs st with q's parameters. SELECTs stream; the engine streams
// nothing else (SHOW, DESCRIBE, EXISTS, EXPLAIN: "Streaming query is not
// supported"), and their output, small by nature, comes whole, under the
// same limit.
func (r *ReadOnly) output(c *chdbConn, st Statement, q AnalystQuery, each func([]byte, QueryStats) error) (QueryStats, error) {
	format := q.Format
	if st.Format != "" {
		format = st.Format
	}
	header, streamable := streamHeaderLines(format)
	if streamable && (st.Kind == "SelectWithUnionQuery" || st.Kind == "SelectIntersectExceptQuery") {
		first := true
		return c.streamParams(st.text, q.Format, q.Params, func(chunk []byte, stats QueryStats) error {
			if !first {
				chunk = dropLines(chunk, header)
			}
			first = false
			if len(chunk) == 0 {
				return nil
			}
			return each(chunk, stats)
		})
	}
	out, stats, err := c.queryParams(st.text, q.Format, q.Params)
	if err != nil || len(out) == 0 {
		return stats, err
	}
	return stats, each(out, stats)
}

// streamHeaderLines says whether output in format can be streamed block
// by block, and how many lines of names (and types) start it. The engine
// writes each block it streams as a whole output of the format, so a
// format with a prefix or a suffix (JSON's object, XML, Pretty's frames,
// Values' commas, Parquet's footer) would come as several documents: it
// is not streamed, but answered whole, within the result limits. Formats
// of rows stream as they are; those that start with lines of names and
// types stream with those lines dropped from every block but the first.
// Names are matched exactly, and an unknown one is not streamed.
func streamHeaderLines(format string) (lines int, ok bool) {
	switch format {
	case "TabSeparated", "TSV", "TabSeparatedRaw", "TSVRaw", "CSV", "JSONEachRow", "JSONLines", "NDJSON",
		"JSONStringsEachRow", "JSONCompactEachRow", "JSONCompactStringsEachRow", "TSKV", "LineAsString",
		"RawBLOB", "Native", "RowBinary", "Null":
		return 0, true
	case "TabSeparatedWithNames", "TSVWithNames", "TabSeparatedRawWithNames", "TSVRawWithNames", "CSVWithNames",
		"JSONCompactEachRowWithNames", "JSONCompactStringsEachRowWithNames":
		return 1, true
	case "TabSeparatedWithNamesAndTypes", "TSVWithNamesAndTypes", "TabSeparatedRawWithNamesAndTypes",
		"TSVRawWithNamesAndTypes", "CSVWithNamesAndTypes", "JSONCompactEachRowWithNamesAndTypes",
		"JSONCompactStringsEachRowWithNamesAndTypes":
		return 2, true
	}
	return 0, false
}

// dropLines is chunk without its first n lines.
func dropLines(chunk []byte, n int) []byte {
	for ; n > 0 && len(chunk) > 0; n-- {
		i := bytes.IndexByte(chunk, '\n')
		if i < 0 {
			return nil
		}
		chunk = chunk[i+1:]
	}
	return chunk
}

// QueryRaw runs query as Run does and returns its whole output.
func (r *ReadOnly) QueryRaw(ctx context.Context, query, format string) (Statement, []byte, error) {
	var buf bytes.Buffer
	var st Statement
	err := r.Run(ctx, query, format, func(s Statement) io.Writer { st = s; return &buf })
	return st, buf.Bytes(), err
}

// Query checks query as Run does (after binding args), runs it on a
// read-only connection and returns its rows: the guarded query interface
// of the embedded engine for code that scans values (the SQL of alert
// rules). Only SELECTs are accepted: their result comes as Native blocks.
func (r *ReadOnly) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	sql, err := bindArgs(query, args)
	if err != nil {
		return nil, err
	}
	c, err := r.acquire(ctx)
	if err != nil {
		return nil, err
	}
	st, err := r.check(c, sql, nil)
	if err != nil {
		r.release(c, false, false)
		return nil, err
	}
	if st.Kind != "SelectWithUnionQuery" && st.Kind != "SelectIntersectExceptQuery" {
		r.release(c, false, false)
		return nil, refuse("only SELECT queries return rows here, not %s", st.Kind)
	}
	start := time.Now()
	// Streamed so that the caller's deadline cancels the query at its
	// next chunk; Native chunks concatenate into one Native result.
	var out []byte
	err = c.stream(st.text, "Native", func(chunk []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if int64(len(out)+len(chunk)) > r.opts.MaxResultBytes {
			return &clickhouse.Exception{Code: CodeTooManyRowsOrBytes, Name: "DB::Exception", CodeName: "TOO_MANY_ROWS_OR_BYTES",
				Message: fmt.Sprintf("Limit for result exceeded: the result passed %d bytes", r.opts.MaxResultBytes)}
		}
		out = append(out, chunk...)
		return nil
	})
	if err != nil {
		r.release(c, true, time.Since(start) > time.Second)
		return nil, err
	}
	rows, err := newNativeRows(out, r.e.loc, describeResult(c, st.text))
	if rows != nil {
		rows.describe = nil
	}
	r.release(c, err != nil, time.Since(start) > time.Second)
	return rows, err
}

// Check says whether query may run, as Run would decide, without running
// it.
func (r *ReadOnly) Check(ctx context.Context, query string) (Statement, error) {
	c, err := r.acquire(ctx)
	if err != nil {
		return Statement{}, err
	}
	defer r.release(c, false, false)
	return r.check(c, query, nil)
}

// check has the engine parse query (see guard.go) and applies the policy.
// With params, the tree checked is the one with the parameters bound: the
// engine substitutes them in EXPLAIN AST as in the query that runs (a
// value becomes a literal of the declared type, or an Identifier's an
// identifier), so no value can change what is decided.
func (r *ReadOnly) check(c *chdbConn, query string, params []Param) (Statement, error) {
	if len(query) > MaxQueryBytes {
		return Statement{}, refuse("the query has %d bytes, more than the %d allowed", len(query), MaxQueryBytes)
	}
	canonical, err := c.query(formatQueryPrefix+quoteString(query)+")", "RawBLOB")
	if err != nil {
		return Statement{}, &InvalidQueryError{withoutFormatQuery(err)}
	}
	text := string(canonical)
	if err := checkCanonical(text); err != nil {
		return Statement{}, err
	}
	dump, _, err := c.queryParams("EXPLAIN AST "+text, "TabSeparatedRaw", params)
	if err != nil {
		var ex *clickhouse.Exception
		if errors.As(err, &ex) && ex.Code == CodeReadonly {
			return Statement{}, err // SETTINGS refused by readonly=1
		}
		return Statement{}, &InvalidQueryError{err}
	}
	kind, format, err := checkTree(strings.Split(strings.TrimSuffix(string(dump), "\n"), "\n"), r.tableFunctions, r.formats)
	if err != nil {
		return Statement{}, err
	}
	return Statement{Kind: kind, Format: format, text: text}, nil
}

const formatQueryPrefix = "SELECT formatQuerySingleLine("

// withoutFormatQuery takes the statement that wrapped the query out of the
// engine's message about it ("...: In scope SELECT formatQuerySingleLine(
// '<the query>')."): the analyst wrote only the query.
func withoutFormatQuery(err error) error {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		if i := strings.Index(ex.Message, ": In scope "+formatQueryPrefix); i >= 0 {
			cp := *ex
			cp.Message = ex.Message[:i]
			return &cp
		}
	}
	return err
}

func (r *ReadOnly) acquire(ctx context.Context) (*chdbConn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-r.closing:
		return nil, errEmbeddedClosed
	case <-r.e.closing:
		return nil, errEmbeddedClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	case c := <-r.conns:
		return c, nil
	}
}

// release gives c back. After a query that failed or was cancelled, the
// engine keeps its memory until the connection's next statement
// (measured: 1 GiB held by an aborted GROUP BY, in system.processes), and
// the allocator keeps freed pages after any large query: a trivial
// statement releases the query, and a purge hands the pages back to the
// system, so RSS returns to where it was (measured: within 20 MB after a
// 1 GiB refusal).
func (r *ReadOnly) release(c *chdbConn, failed, slow bool) {
	if failed {
		_, _ = c.query("SELECT 1", "Null")
	}
	if failed || slow {
		r.e.purgeMemory()
	}
	r.conns <- c
}

// Close waits for running queries and closes the connections. Call it
// before closing the Embedded it was opened on.
func (r *ReadOnly) Close() error {
	r.closeOnce.Do(func() {
		close(r.closing)
		for range r.all {
			<-r.conns
		}
		r.closeAll()
	})
	return nil
}

// EmbeddedDirInUse says whether another process has the embedded data
// directory dir open (holds its lock file), and that process's id as it
// wrote it. A directory without the lock file is not in use. It takes the
// lock for an instant, so it also answers true for this process's own
// engine.
func EmbeddedDirInUse(dir string) (inUse bool, pid string, err error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, "", nil
	}
	if err != nil {
		return false, "", err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder, _ := os.ReadFile(path)
			return true, strings.TrimSpace(string(holder)), nil
		}
		return false, "", err
	}
	// Closing f releases the shared lock.
	return false, "", nil
}
