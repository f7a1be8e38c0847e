package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// RawQuerier runs a query and returns the engine's own output in a
// ClickHouse format (TabSeparated, CSVWithNames, JSONEachRow, Native, ...),
// as a ClickHouse server's HTTP interface would. A FORMAT clause in the
// query wins over format. The embedded engine's read-only handle
// (Embedded.OpenReadOnly) is one; the server backend is not: its native
// protocol returns blocks, not formatted output.
type RawQuerier interface {
	QueryRaw(ctx context.Context, query, format string) ([]byte, error)
}

// ReadOnlyOptions bound the queries of a ReadOnly handle.
type ReadOnlyOptions struct {
	// Conns is how many queries run at once; more wait for a connection.
	Conns int
	// Timeout is the engine's max_execution_time for each query, and
	// bounds the wait for a connection.
	Timeout time.Duration
	// MaxResultBytes is the engine's max_result_bytes (uncompressed
	// result blocks) and the most formatted output QueryRaw returns.
	MaxResultBytes int64
}

// ReadOnlyOptionsOf are the options the configuration asks for.
func ReadOnlyOptionsOf(cfg EmbeddedConfig) ReadOnlyOptions {
	return ReadOnlyOptions{Conns: cfg.QueryConcurrency, Timeout: cfg.QueryTimeout, MaxResultBytes: cfg.QueryMaxResultBytes}
}

// ReadOnly runs analysts' queries on the embedded engine on connections
// of its own, each a session set to readonly=1 with the limits as
// settings: the engine then refuses any statement that writes (INSERT,
// DDL, SET, ...), table functions that reach outside (file, url,
// executable, ...) and every attempt to change a setting, including the
// limits, so no query text can lift them. It does NOT stop the file()
// function nor INTO OUTFILE (measured on chDB 26.7): callers refuse those
// in the query text (queryapi.CheckReadOnly).
//
// A running query cannot be interrupted: ctx bounds only the wait for a
// connection, max_execution_time the query itself.
type ReadOnly struct {
	e        *Embedded
	conns    chan *chdbConn
	all      []*chdbConn
	tz       string
	maxBytes int64

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
	if opts.MaxResultBytes < 1 {
		return nil, fmt.Errorf("store: read-only max result bytes %d must be positive", opts.MaxResultBytes)
	}
	c, err := e.acquire(ctx)
	if err != nil {
		return nil, err
	}
	out, err := c.query("SELECT currentDatabase(), timezone()", "TabSeparated")
	e.release(c)
	if err != nil {
		return nil, fmt.Errorf("store: read-only connection: %w", err)
	}
	db, tz, _ := strings.Cut(strings.TrimSpace(string(out)), "\t")
	if !identifier.MatchString(db) {
		return nil, fmt.Errorf("store: read-only connection: current database %q", db)
	}
	r := &ReadOnly{
		e:        e,
		conns:    make(chan *chdbConn, opts.Conns),
		tz:       tz,
		maxBytes: opts.MaxResultBytes,
		closing:  make(chan struct{}),
	}
	// USE and the limits first: once readonly=1, no setting can change.
	setup := []string{
		"USE " + quoteIdent(db),
		fmt.Sprintf("SET max_execution_time = %d", int64(opts.Timeout/time.Second)),
		fmt.Sprintf("SET max_result_bytes = %d", opts.MaxResultBytes),
		"SET result_overflow_mode = 'throw'",
		"SET timeout_overflow_mode = 'throw'",
		"SET readonly = 1",
	}
	for range opts.Conns {
		c, err := e.all[0].lib.connectChdb(e.dir)
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

func (r *ReadOnly) closeAll() {
	for _, c := range r.all {
		c.close()
	}
}

// Timezone is the engine's time zone: the zone of DateTime values
// without one in query results.
func (r *ReadOnly) Timezone() string { return r.tz }

// QueryRaw runs query and returns its output in format (see RawQuerier).
// Errors from the engine are *clickhouse.Exception, with the engine's
// code; an output larger than MaxResultBytes is exception 396
// (TOO_MANY_ROWS_OR_BYTES), as the engine reports its own limit.
func (r *ReadOnly) QueryRaw(ctx context.Context, query, format string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var c *chdbConn
	select {
	case <-r.closing:
		return nil, errEmbeddedClosed
	case <-r.e.closing:
		return nil, errEmbeddedClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	case c = <-r.conns:
	}
	out, err := c.query(query, format)
	r.conns <- c
	if err != nil {
		return nil, err
	}
	if int64(len(out)) > r.maxBytes {
		return nil, &clickhouse.Exception{Code: 396, Name: "DB::Exception", CodeName: "TOO_MANY_ROWS_OR_BYTES",
			Message: fmt.Sprintf("Limit for result exceeded: the formatted result has %d bytes, more than the limit of %d (clickhouse.embedded.query_max_result_bytes)", len(out), r.maxBytes)}
	}
	return out, nil
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
