package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/flowhouse/flowhouse/flow"
)

// Embedded is a DB on the embedded engine: chDB (ClickHouse 26.7 as a
// shared library) running inside this process on a data directory.
//
// The engine runs one statement at a time per connection (chdb.h; a
// second statement on a busy connection waits, measured), so Embedded
// keeps a small pool of connections: queries and inserts on different
// connections run in parallel, and a streaming insert, which must have
// its connection to itself, gets one. Query results are read whole into
// memory before Query returns, so a caller never holds a connection while
// it iterates.
type Embedded struct {
	dir    string
	server []string // the engine's server settings, name=value (serverSettings)
	// nice is clickhouse.embedded.engine_nice; with it above 0, inserts
	// run on insertThreads, OS threads kept for them: the engine lowers
	// the priority of the thread that calls it, and without CAP_SYS_NICE
	// cannot raise it back, so a thread Go's scheduler reused would run
	// the collector at the engine's priority.
	nice          int
	insertThreads chan func()
	lock          *os.File
	logger        *slog.Logger
	loc           *time.Location // the engine's time zone, for DateTime without one

	conns     chan *chdbConn
	all       []*chdbConn
	closing   chan struct{}
	closeOnce sync.Once

	bufs sync.Pool // *proto.Buffer for encoding inserts

	purging atomic.Bool
}

// lockFile in the data directory is flock()ed by the process that has the
// directory open. The engine locks DIR/status as well, but it reports a
// second process only on stderr and its connect just fails (measured);
// this lock is taken first and the error names the process holding it.
const lockFile = "flowhouse.lock"

// engineDir is the data directory of the engine open in this process: the
// library boots one engine per process, on one directory.
var (
	engineMu  sync.Mutex
	engineDir string
)

// OpenEmbedded loads libchdb from cfg.Embedded.Library, takes the data
// directory cfg.Embedded.Path (creating it), boots the engine on it and
// creates cfg.Database when missing. One Embedded can be open per
// process, and one process per directory; Close releases both.
func OpenEmbedded(ctx context.Context, cfg Config, logger *slog.Logger) (*Embedded, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Embedded.Path == "" || cfg.Embedded.Library == "" {
		return nil, errors.New("store: embedded engine needs embedded.path and embedded.library")
	}
	if !identifier.MatchString(cfg.Database) {
		return nil, fmt.Errorf("store: database %q must be letters, digits and _", cfg.Database)
	}
	// Inserts copy the batch's integer columns to the engine as they lie
	// in memory; the engine reads them as little-endian.
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		return nil, errors.New("store: the embedded engine needs a little-endian CPU")
	}
	l, err := loadChdb(cfg.Embedded.Library)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Embedded.Path)
	if err != nil {
		return nil, fmt.Errorf("store: embedded data directory %q: %w", cfg.Embedded.Path, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: create embedded data directory: %w", err)
	}

	engineMu.Lock()
	defer engineMu.Unlock()
	if engineDir != "" {
		return nil, fmt.Errorf("store: the embedded engine is already open on %s in this process; one process runs one embedded database", engineDir)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	e := &Embedded{
		dir:     dir,
		lock:    lock,
		logger:  logger,
		server:  cfg.Embedded.serverSettings(),
		nice:    cfg.Embedded.EngineNice,
		closing: make(chan struct{}),
	}
	// Writers may insert in parallel; two more serve queries meanwhile.
	n := cfg.Writers + 2
	e.conns = make(chan *chdbConn, n)
	fail := func(err error) (*Embedded, error) {
		if e.insertThreads != nil {
			close(e.insertThreads)
		}
		for _, c := range e.all {
			c.close()
		}
		unlockDir(lock)
		return nil, err
	}
	e.startInsertThreads(n)
	for i := range n {
		c, err := l.connectChdb(dir, e.server)
		if err != nil {
			return fail(err)
		}
		e.all = append(e.all, c)
		if i == 0 {
			if _, err := c.query("CREATE DATABASE IF NOT EXISTS "+quoteIdent(cfg.Database), "Null"); err != nil {
				return fail(fmt.Errorf("store: create database %s: %w", cfg.Database, err))
			}
		}
		// USE is per connection (each is a session).
		if _, err := c.query("USE "+quoteIdent(cfg.Database), "Null"); err != nil {
			return fail(fmt.Errorf("store: use database %s: %w", cfg.Database, err))
		}
		e.conns <- c
	}
	tz, err := e.all[0].query("SELECT timezone()", "TabSeparated")
	if err != nil {
		return fail(fmt.Errorf("store: ask the embedded engine's time zone: %w", err))
	}
	if e.loc, err = time.LoadLocation(strings.TrimSpace(string(tz))); err != nil {
		// Go lacks the zone database entry: instants stay right, only
		// the Location of DateTime values without a zone is off.
		e.loc = time.UTC
	}
	engineDir = dir
	logger.Info("embedded engine open", "path", dir, "library", l.path, "version", l.version(), "database", cfg.Database)
	return e, nil
}

// lockDir takes the data directory for this process, or says who has it.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("store: embedded data directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another process"
			if pid := strings.TrimSpace(string(holder)); pid != "" {
				who = "process " + pid
			}
			return nil, fmt.Errorf("store: embedded data directory %s is in use by %s (it holds %s): stop that flowhouse, or give this one another clickhouse.embedded.path", dir, who, path)
		}
		return nil, fmt.Errorf("store: lock embedded data directory %s: %w", dir, err)
	}
	// The pid is only for the message above; the lock is what counts.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func unlockDir(f *os.File) {
	// Closing the file releases the flock.
	_ = f.Close()
}

var errEmbeddedClosed = errors.New("store: embedded engine is closed")

// acquire takes a connection for one statement; release gives it back.
func (e *Embedded) acquire(ctx context.Context) (*chdbConn, error) {
	// Checked first: select picks at random among ready cases.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-e.closing:
		return nil, errEmbeddedClosed
	default:
	}
	select {
	case c := <-e.conns:
		return c, nil
	case <-e.closing:
		return nil, errEmbeddedClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (e *Embedded) release(c *chdbConn) { e.conns <- c }

// Exec runs a statement and discards its output. A statement that has
// started runs to its end: the engine has no way to interrupt it, so ctx
// bounds only the wait for a connection.
func (e *Embedded) Exec(ctx context.Context, query string, args ...any) error {
	sql, err := bindArgs(query, args)
	if err != nil {
		return err
	}
	c, err := e.acquire(ctx)
	if err != nil {
		return err
	}
	defer e.release(c)
	_, err = c.query(sql, "Null")
	return err
}

// Query runs a query and returns its rows, read in full (see Embedded) in
// the Native format and decoded by clickhouse-go's column types, so they
// scan as the server backend's do.
func (e *Embedded) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	sql, err := bindArgs(query, args)
	if err != nil {
		return nil, err
	}
	c, err := e.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer e.release(c)
	out, err := c.query(sql, "Native")
	if err != nil {
		return nil, err
	}
	// The first block is read while c can still describe the result.
	rows, err := newNativeRows(out, e.loc, describeResult(c, sql))
	if rows != nil {
		rows.describe = nil
	}
	return rows, err
}

// Ping runs SELECT 1.
func (e *Embedded) Ping(ctx context.Context) error { return e.Exec(ctx, "SELECT 1") }

// Close waits for running statements, closes the connections (which stops
// the engine) and releases the data directory.
func (e *Embedded) Close() error {
	e.closeOnce.Do(func() {
		close(e.closing)
		for range e.all {
			<-e.conns
		}
		// Every insert holds a connection: none runs on the insert
		// threads any more.
		if e.insertThreads != nil {
			close(e.insertThreads)
		}
		for _, c := range e.all {
			c.close()
		}
		unlockDir(e.lock)
		engineMu.Lock()
		engineDir = ""
		engineMu.Unlock()
		e.logger.Info("embedded engine closed", "path", e.dir)
	})
	return nil
}

// purgeMemory hands the allocator's free pages back to the system, in the
// background and once at a time: the engine's allocator keeps the memory
// of a large query for reuse, and the collector shares the process.
func (e *Embedded) purgeMemory() {
	if !e.purging.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer e.purging.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.Exec(ctx, "SYSTEM JEMALLOC PURGE"); err != nil && !errors.Is(err, errEmbeddedClosed) {
			e.logger.Debug("embedded engine: memory purge failed", "error", err)
		}
	}()
}

// Dir is the absolute data directory.
func (e *Embedded) Dir() string { return e.dir }

// insertNative streams one Native block into the statement's table
// through chDB's streaming insert, written by ch-go from the columns of
// input. Native is columnar like the batch, so most columns are copied as
// they lie in memory. Measured on the flows table with its rollup views,
// 50000-row batches: 1.3 to 2 times the rows per second of a RowBinary
// file read by INSERT ... SELECT FROM file(), 2 to 4 times streamed
// RowBinary; RowBinary inlined after the INSERT statement fails past
// about 2570 rows (BenchmarkEmbeddedInsertFlows measures this path).
func (e *Embedded) insertNative(ctx context.Context, query string, input proto.Input, rows int) error {
	buf, _ := e.bufs.Get().(*proto.Buffer)
	if buf == nil {
		buf = new(proto.Buffer)
	}
	defer e.bufs.Put(buf)
	buf.Reset()
	if err := (proto.Block{Columns: len(input), Rows: rows}).EncodeRawBlock(buf, 0, input); err != nil {
		return fmt.Errorf("native block: %w", err)
	}
	c, err := e.acquire(ctx)
	if err != nil {
		return err
	}
	defer e.release(c)
	if e.insertThreads == nil {
		return c.insert(query, "Native", buf.Buf)
	}
	// The insert's threads, the calling one included, run at the
	// engine's nice value (os_thread_priority).
	query += " SETTINGS os_thread_priority = " + strconv.Itoa(e.nice)
	done := make(chan error, 1)
	e.insertThreads <- func() { done <- c.insert(query, "Native", buf.Buf) }
	return <-done
}

// startInsertThreads starts n goroutines, each locked to an OS thread of
// its own for its whole life, that run inserts when engine_nice is set.
// They end when Close closes the channel, and their threads with them
// (a goroutine that exits locked takes its thread along).
func (e *Embedded) startInsertThreads(n int) {
	if e.nice == 0 {
		return
	}
	e.insertThreads = make(chan func())
	for range n {
		go func() {
			runtime.LockOSThread()
			for f := range e.insertThreads {
				f()
			}
		}()
	}
}

// InsertFlows inserts the batch as one Native block of the table's
// columns (its table: schema.Flows and the mapped columns).
func (e *Embedded) InsertFlows(ctx context.Context, b *FlowBatch) error {
	if b.Len() == 0 {
		return nil
	}
	scratch := scratchPool.Get().(*insertScratch)
	defer scratch.release()
	if err := e.insertNative(ctx, insertFlowsQuery("flows", b), b.Insert(&scratch.Scratch), b.Len()); err != nil {
		return fmt.Errorf("insert %d rows into flows: %w", b.Len(), err)
	}
	return nil
}

// InsertExporterStats writes one row per exporter, like the server's:
// drops as two arrays sorted by reason, streams as a Nested column.
func (e *Embedded) InsertExporterStats(ctx context.Context, at time.Time, stats []flow.ExporterStats) error {
	if len(stats) == 0 {
		return nil
	}
	if err := e.insertNative(ctx, insertExportersQuery, exporterInput(exporterValues(at, stats)), len(stats)); err != nil {
		return fmt.Errorf("insert %d rows into exporters: %w", len(stats), err)
	}
	return nil
}
