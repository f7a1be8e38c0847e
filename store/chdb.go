package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ebitengine/purego"
)

// This file binds the few C functions of libchdb (chDB, ClickHouse as a
// shared library) that the embedded engine uses. They are bound with
// purego rather than cgo or chdb-go: the library is loaded only when the
// embedded engine is opened, so a binary that talks to a ClickHouse server
// never needs it, and a missing library is an error we can explain, not a
// panic in some package's init().

// installHint ends every error about the library.
const installHint = "install it with `make deps` or `scripts/chdb.sh install`, or point clickhouse.embedded.library (FLOWHOUSE_CLICKHOUSE_EMBEDDED_LIBRARY) at a libchdb.so"

// chdbLib holds the library's functions. Signatures follow chdb.h of
// chDB 26.7: a connection is a chdb_connection (a pointer), results and
// insert streams are opaque pointers, kept here as uintptr because Go
// never dereferences them.
type chdbLib struct {
	path string

	version     func() string
	setSignals  func(enabled int32)
	connect     func(argc int32, argv **byte) *uintptr
	closeConn   func(conn *uintptr)
	queryN      func(conn uintptr, query *byte, queryLen uintptr, format *byte, formatLen uintptr) uintptr
	resultError func(result uintptr) string
	resultBuf   func(result uintptr) *byte
	resultLen   func(result uintptr) uintptr
	destroy     func(result uintptr)

	streamQueryN func(conn uintptr, query *byte, queryLen uintptr, format *byte, formatLen uintptr) uintptr
	// The engine's own binding of {name:Type} query parameters: values
	// are text the engine parses as the declared type, never SQL.
	queryParamsN       func(conn uintptr, query *byte, queryLen uintptr, format *byte, formatLen uintptr, names **byte, nameLens *uintptr, values **byte, valueLens *uintptr, n uintptr) uintptr
	streamQueryParamsN func(conn uintptr, query *byte, queryLen uintptr, format *byte, formatLen uintptr, names **byte, nameLens *uintptr, values **byte, valueLens *uintptr, n uintptr) uintptr
	resultElapsed      func(result uintptr) float64
	resultRows         func(result uintptr) uint64
	resultBytes        func(result uintptr) uint64
	storageRowsRead    func(result uintptr) uint64
	storageBytesRead   func(result uintptr) uint64
	streamFetch        func(conn uintptr, stream uintptr) uintptr
	streamCancel       func(conn uintptr, stream uintptr)

	insertN       func(conn uintptr, query *byte, queryLen uintptr, format *byte, formatLen uintptr) uintptr
	insertError   func(stream uintptr) string
	insertAppend  func(stream uintptr, data *byte, n uintptr) int32
	insertDone    func(stream uintptr) uintptr
	insertDestroy func(stream uintptr)
}

var (
	libMu sync.Mutex
	lib   *chdbLib
)

// loadChdb loads the library once per process. dlopen cannot really be
// undone for a library that starts threads, so asking for a second,
// different file in the same process is an error rather than a reload.
func loadChdb(path string) (*chdbLib, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: embedded engine library %q: %w", path, err)
	}
	if _, err := os.Stat(abs); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("store: embedded engine library %s not found: %s", abs, installHint)
		}
		return nil, fmt.Errorf("store: embedded engine library %s: %w: %s", abs, err, installHint)
	}
	libMu.Lock()
	defer libMu.Unlock()
	if lib != nil {
		if lib.path != abs {
			return nil, fmt.Errorf("store: embedded engine library already loaded from %s; this process cannot load %s as well", lib.path, abs)
		}
		return lib, nil
	}
	// RTLD_LOCAL: the library carries a whole ClickHouse with its own
	// copies of common symbols; they must not leak into the process.
	handle, err := purego.Dlopen(abs, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("store: load embedded engine library %s: %w: it is not a usable libchdb.so; %s", abs, err, installHint)
	}
	l := &chdbLib{path: abs}
	for _, f := range []struct {
		name string
		fn   any
	}{
		{"chdb_version", &l.version},
		{"chdb_set_signal_handlers_enabled", &l.setSignals},
		{"chdb_connect", &l.connect},
		{"chdb_close_conn", &l.closeConn},
		{"chdb_query_n", &l.queryN},
		{"chdb_result_error", &l.resultError},
		{"chdb_result_buffer", &l.resultBuf},
		{"chdb_result_length", &l.resultLen},
		{"chdb_destroy_query_result", &l.destroy},
		{"chdb_stream_query_n", &l.streamQueryN},
		{"chdb_query_with_params_n", &l.queryParamsN},
		{"chdb_stream_query_with_params_n", &l.streamQueryParamsN},
		{"chdb_result_elapsed", &l.resultElapsed},
		{"chdb_result_rows_read", &l.resultRows},
		{"chdb_result_bytes_read", &l.resultBytes},
		{"chdb_result_storage_rows_read", &l.storageRowsRead},
		{"chdb_result_storage_bytes_read", &l.storageBytesRead},
		{"chdb_stream_fetch_result", &l.streamFetch},
		{"chdb_stream_cancel_query", &l.streamCancel},
		{"chdb_stream_insert_n", &l.insertN},
		{"chdb_stream_insert_error", &l.insertError},
		{"chdb_stream_append", &l.insertAppend},
		{"chdb_stream_done", &l.insertDone},
		{"chdb_destroy_insert_stream", &l.insertDestroy},
	} {
		// Dlsym first: RegisterLibFunc panics on a missing symbol, and an
		// older libchdb lacks the streaming insert.
		sym, err := purego.Dlsym(handle, f.name)
		if err != nil {
			return nil, fmt.Errorf("store: %s lacks %s, so it is not the libchdb flowhouse needs (chDB 26.7): %s", abs, f.name, installHint)
		}
		purego.RegisterFunc(f.fn, sym)
	}
	// chDB installs its own handlers for SIGSEGV and other signals when
	// it connects, replacing the Go runtime's: measured, a nil pointer
	// dereference in Go then kills the process instead of panicking. Off
	// before the first connection, the runtime keeps its handlers.
	l.setSignals(0)
	lib = l
	return l, nil
}

// cString is s with a terminating NUL, for char* arguments.
func cString(s string) *byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return &b[0]
}

// chdbConn is one connection (a session: its own current database and
// settings) to the engine of this process.
type chdbConn struct {
	lib    *chdbLib
	handle *uintptr // chdb_connection*, for chdb_close_conn
	conn   uintptr  // chdb_connection, for queries
}

// connectChdb opens a connection on the data directory dir. The first
// connection of a process boots the engine on dir with the server
// settings server (name=value, passed as clickhouse-local passes them:
// after "--"); every later one must name the same dir (the engine has one
// path per process), and its server settings are those of the boot.
func (l *chdbLib) connectChdb(dir string, server []string) (*chdbConn, error) {
	argv := []*byte{cString("clickhouse"), cString("--path=" + dir)}
	if len(server) > 0 {
		argv = append(argv, cString("--"))
		for _, s := range server {
			argv = append(argv, cString("--"+s))
		}
	}
	h := l.connect(int32(len(argv)), &argv[0])
	if h == nil || *h == 0 {
		// chdb_connect returns no reason (the engine may have printed one
		// on stderr); these are the causes seen.
		return nil, fmt.Errorf("store: the embedded engine did not open %s: is the directory writable, and not used by another process or by an engine on another directory in this process?", dir)
	}
	return &chdbConn{lib: l, handle: h, conn: *h}, nil
}

func (c *chdbConn) close() {
	if c.handle != nil {
		c.lib.closeConn(c.handle)
		c.handle = nil
	}
}

// query runs one statement and returns its whole output in format,
// copied into Go memory.
func (c *chdbConn) query(sql, format string) ([]byte, error) {
	out, _, err := c.queryParams(sql, format, nil)
	return out, err
}

// queryParams is query with the query parameters params bound by the
// engine, and the engine's statistics of the query.
func (c *chdbConn) queryParams(sql, format string, params []Param) ([]byte, QueryStats, error) {
	var r uintptr
	if len(params) == 0 {
		r = c.lib.queryN(c.conn, unsafe.StringData(sql), uintptr(len(sql)), unsafe.StringData(format), uintptr(len(format)))
	} else {
		a := newParamArgs(params)
		r = c.lib.queryParamsN(c.conn, unsafe.StringData(sql), uintptr(len(sql)), unsafe.StringData(format), uintptr(len(format)),
			&a.names[0], &a.nameLens[0], &a.values[0], &a.valueLens[0], uintptr(len(params)))
		a.pin.Unpin()
	}
	if r == 0 {
		return nil, QueryStats{}, errors.New("embedded engine returned no result")
	}
	defer c.lib.destroy(r)
	if msg := c.lib.resultError(r); msg != "" {
		return nil, QueryStats{}, engineError(msg)
	}
	st := c.stats(r)
	n := c.lib.resultLen(r)
	if n == 0 {
		return nil, st, nil
	}
	return append([]byte(nil), unsafe.Slice(c.lib.resultBuf(r), n)...), st, nil
}

// QueryStats are what the engine reports of a query it ran.
type QueryStats struct {
	// ResultRows and ResultBytes are the rows of the result and their
	// size in the engine's own (uncompressed, unformatted) blocks.
	ResultRows, ResultBytes uint64
	// ReadRows and ReadBytes are what the query read from storage.
	ReadRows, ReadBytes uint64
	// Elapsed is the engine's own time for the query.
	Elapsed time.Duration
}

func (c *chdbConn) stats(r uintptr) QueryStats {
	return QueryStats{
		ResultRows: c.lib.resultRows(r), ResultBytes: c.lib.resultBytes(r),
		ReadRows: c.lib.storageRowsRead(r), ReadBytes: c.lib.storageBytesRead(r),
		Elapsed: time.Duration(c.lib.resultElapsed(r) * float64(time.Second)),
	}
}

// insert runs an INSERT statement (without FORMAT) whose data is data in
// format, through chDB's streaming insert: binary-safe and without the
// size limit that data inlined after the statement runs into.
func (c *chdbConn) insert(sql, format string, data []byte) error {
	s := c.lib.insertN(c.conn, unsafe.StringData(sql), uintptr(len(sql)), unsafe.StringData(format), uintptr(len(format)))
	// The handle is never NULL and must be destroyed on every path.
	defer c.lib.insertDestroy(s)
	if msg := c.lib.insertError(s); msg != "" {
		return engineError(msg)
	}
	if len(data) > 0 {
		if c.lib.insertAppend(s, &data[0], uintptr(len(data))) != 0 {
			msg := c.lib.insertError(s)
			if msg == "" {
				msg = "append to insert stream failed"
			}
			return engineError(msg)
		}
	}
	r := c.lib.insertDone(s)
	if r == 0 {
		return errors.New("embedded engine returned no result for the insert")
	}
	defer c.lib.destroy(r)
	if msg := c.lib.resultError(r); msg != "" {
		return engineError(msg)
	}
	return nil
}

// exceptionText is how the engine reports exceptions:
// "Code: 60. DB::Exception: Unknown table ... (UNKNOWN_TABLE)".
var exceptionText = regexp.MustCompile(`(?s)^Code: (\d+)\. (?:(DB::Exception): )?(.*?)(?: \(([A-Z0-9_]+)\))?\s*$`)

// engineError turns the engine's message into the *clickhouse.Exception
// the server backend returns, so code that looks at exception codes
// (and the batcher's error classification) works the same on both.
func engineError(msg string) error {
	m := exceptionText.FindStringSubmatch(msg)
	if m == nil {
		return errors.New(strings.TrimSpace(msg))
	}
	// A streamed query's error wraps the exception's text in another.
	for {
		inner := exceptionText.FindStringSubmatch(m[3])
		if inner == nil || inner[1] != m[1] {
			break
		}
		m = inner
	}
	code, _ := strconv.Atoi(m[1])
	name := m[2]
	if name == "" {
		name = "DB::Exception"
	}
	return &clickhouse.Exception{Code: int32(code), Name: name, CodeName: m[4], Message: m[3]}
}

// stream runs one statement and hands its output to each, chunk by chunk,
// as the engine produces it, so a result is never held whole in memory.
// The chunk is the engine's memory, valid only during the call: each
// copies what it keeps. When each returns an error, or the statement
// fails, the query is cancelled and the engine frees what it held.
//
// Fetch and cancel are serialised on this goroutine, as chdb.h requires
// of a connection, so a cancel takes effect between chunks.
func (c *chdbConn) stream(sql, format string, each func(chunk []byte) error) error {
	_, err := c.streamParams(sql, format, nil, func(chunk []byte, _ QueryStats) error { return each(chunk) })
	return err
}

// streamParams is stream with the query parameters params bound by the
// engine; each is also given the engine's statistics of the query so far
// (summed over the chunks), and the whole query's are returned.
func (c *chdbConn) streamParams(sql, format string, params []Param, each func(chunk []byte, soFar QueryStats) error) (QueryStats, error) {
	var s uintptr
	if len(params) == 0 {
		s = c.lib.streamQueryN(c.conn, unsafe.StringData(sql), uintptr(len(sql)), unsafe.StringData(format), uintptr(len(format)))
	} else {
		a := newParamArgs(params)
		s = c.lib.streamQueryParamsN(c.conn, unsafe.StringData(sql), uintptr(len(sql)), unsafe.StringData(format), uintptr(len(format)),
			&a.names[0], &a.nameLens[0], &a.values[0], &a.valueLens[0], uintptr(len(params)))
		a.pin.Unpin()
	}
	var total QueryStats
	if s == 0 {
		return total, errors.New("embedded engine returned no result for the streaming query")
	}
	defer c.lib.destroy(s)
	if msg := c.lib.resultError(s); msg != "" {
		return total, engineError(msg)
	}
	for {
		r := c.lib.streamFetch(c.conn, s)
		if r == 0 {
			c.lib.streamCancel(c.conn, s)
			return total, errors.New("embedded engine returned no chunk")
		}
		if msg := c.lib.resultError(r); msg != "" {
			c.lib.destroy(r)
			c.lib.streamCancel(c.conn, s)
			return total, engineError(msg)
		}
		total = total.add(c.stats(r))
		n := c.lib.resultLen(r)
		if n == 0 {
			c.lib.destroy(r)
			return total, nil
		}
		err := each(unsafe.Slice(c.lib.resultBuf(r), n), total)
		c.lib.destroy(r)
		if err != nil {
			c.lib.streamCancel(c.conn, s)
			return total, err
		}
	}
}

// Param is one query parameter: the value of {Name:Type} in the query, as
// text the engine parses as Type (ClickHouse's escaped text format, e.g.
// [1,2] for an array, a string unquoted).
type Param struct{ Name, Value string }

// paramArgs are params as the C arrays chdb_*_with_params_n take, pinned
// so that the collector neither moves nor frees what C reads; unpin when
// the call returns.
type paramArgs struct {
	names, values       []*byte
	nameLens, valueLens []uintptr
	pin                 runtime.Pinner
}

var emptyByte byte

func newParamArgs(params []Param) *paramArgs {
	a := &paramArgs{}
	for _, p := range params {
		a.names = append(a.names, bytePtr(p.Name, &a.pin))
		a.nameLens = append(a.nameLens, uintptr(len(p.Name)))
		a.values = append(a.values, bytePtr(p.Value, &a.pin))
		a.valueLens = append(a.valueLens, uintptr(len(p.Value)))
	}
	if len(params) > 0 {
		a.pin.Pin(&a.names[0])
		a.pin.Pin(&a.values[0])
		a.pin.Pin(&a.nameLens[0])
		a.pin.Pin(&a.valueLens[0])
	}
	return a
}

func bytePtr(s string, pin *runtime.Pinner) *byte {
	if s == "" {
		return &emptyByte
	}
	p := unsafe.StringData(s)
	pin.Pin(p)
	return p
}

func (s QueryStats) add(o QueryStats) QueryStats {
	return QueryStats{
		ResultRows: s.ResultRows + o.ResultRows, ResultBytes: s.ResultBytes + o.ResultBytes,
		ReadRows: s.ReadRows + o.ReadRows, ReadBytes: s.ReadBytes + o.ReadBytes,
		Elapsed: s.Elapsed + o.Elapsed,
	}
}
