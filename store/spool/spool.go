// Package spool keeps the batches the database cannot take on disk and
// replays them when it answers again, so that an outage of ClickHouse
// loses no flow (up to a bounded amount of disk) and costs no memory.
//
// A Spool is a store.Writer in front of the database. A batch goes to the
// database directly while it answers; when an insert fails with a
// retryable error (connection refused or reset, timeout, too many parts,
// server overloaded, ...) the batch is written to a segment file, and new
// batches go straight to disk until a background loop, probing with
// backoff, gets the oldest segment inserted. The loop then replays the
// segments oldest first while new batches go to the database again. See
// README.md in this directory for the delivery guarantees.
package spool

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/flowhouse/flowhouse/schema"
	"github.com/flowhouse/flowhouse/store"
)

// Deps of a Spool.
type Deps struct {
	// Next is the database the batches go to.
	Next store.Writer
	// Ping checks that the database answers, for probing while no segment
	// waits. Nil uses Next's Ping method when it has one.
	Ping   func(ctx context.Context) error
	Logger *slog.Logger
	// Registerer gets the flowhouse_spool_* metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// DedupToken sends each batch's id as insert_deduplication_token, so a
	// batch inserted twice (an insert that timed out but was committed,
	// then replayed) is stored once. Only for servers that know the
	// setting (see SupportsDedupToken): older ones reject every insert.
	DedupToken bool
	// Flows is the flows table replayed segments are read into, the
	// batcher's; nil is schema.Flows.
	Flows *schema.Table
}

// Spool is a store.Writer that spools to disk what the database cannot
// take. Its methods are safe for concurrent use.
type Spool struct {
	cfg  Config
	next store.Writer
	ping func(ctx context.Context) error
	log  *slog.Logger
	// remove deletes a replayed segment (os.Remove; tests make it fail).
	remove func(path string) error
	m      *metrics
	dedup  bool

	qdir string
	down atomic.Bool   // new batches go to disk, not to the database
	wake chan struct{} // tells the replay loop there is work, or a live insert ended
	// live counts the batcher's inserts in the database now; the replay
	// loop yields to them (see replayAllowed).
	live atomic.Int64

	mu              sync.Mutex
	started         bool
	stopped         bool
	segs            []segment // pending, by seq
	pendingBytes    int64     // segments and those being written
	quarantineBytes int64
	quarantineSegs  int
	nextSeq         uint64
	downSince       time.Time
	lastErr         error
	lastClass       store.ErrorClass
	fullSince       time.Time // first spool_full drop of the current outage
	rejected        int       // batches rejected since the last successful insert
	rejectedRows    int
	lastRejected    error
	unlock          func()
	// replayCredit is how many replayed inserts may run while live ones
	// do; each live insert earns replay_share/(1-replay_share) of one.
	replayCredit float64

	cancel context.CancelFunc
	done   chan struct{}

	// What fails batch after batch, or segment after segment, is logged
	// at most every logInterval (the metrics count each): drops when
	// full, segment writes, rejected batches, quarantined segments,
	// removals after replay.
	dropLog, writeLog, rejectLog, quarantineLog, removeLog rate.Sometimes

	// Owned by the replay loop.
	readBuf []byte
	batch   *store.FlowBatch
	dec     decoder
}

type segment struct {
	seq  uint64
	size int64
}

// Stats is what the spool holds now.
type Stats struct {
	PendingSegments     int
	PendingBytes        int64
	QuarantinedSegments int
	QuarantineBytes     int64
	// DatabaseUp is false while new batches go to disk.
	DatabaseUp bool
}

// logInterval spaces the log lines of failures that repeat per batch.
const logInterval = 10 * time.Second

// New builds a spool; it does no I/O.
func New(cfg Config, deps Deps) (*Spool, error) {
	if !cfg.Enabled {
		return nil, errors.New("spool: not enabled")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("spool config: %w", err)
	}
	if deps.Next == nil {
		return nil, errors.New("spool: needs a Next writer")
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if deps.Flows == nil {
		deps.Flows = schema.Flows
	}
	ping := deps.Ping
	if ping == nil {
		if p, ok := deps.Next.(interface{ Ping(context.Context) error }); ok {
			ping = p.Ping
		}
	}
	s := &Spool{
		cfg:    cfg,
		next:   deps.Next,
		ping:   ping,
		remove: os.Remove,
		log:    logger.With("component", "spool"),
		dedup:  deps.DedupToken,
		qdir:   filepath.Join(cfg.Dir, "quarantine"),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		batch:  deps.Flows.NewBatch(0),

		dropLog:       rate.Sometimes{Interval: logInterval},
		writeLog:      rate.Sometimes{Interval: logInterval},
		rejectLog:     rate.Sometimes{Interval: logInterval},
		quarantineLog: rate.Sometimes{Interval: logInterval},
		removeLog:     rate.Sometimes{Interval: logInterval},
	}
	s.m = newMetrics(deps.Registerer, s)
	return s, nil
}

// SupportsDedupToken tells whether a server of this version() knows the
// insert_deduplication_token setting (ClickHouse 22.2 and later).
func SupportsDedupToken(version string) bool {
	parts := strings.SplitN(strings.TrimSpace(version), ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return major > 22 || (major == 22 && minor >= 2)
}

const (
	segSuffix = ".seg"
	tmpSuffix = ".tmp"
	errSuffix = ".error"
)

func segName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segSuffix) }

func parseSeg(name string) (uint64, bool) {
	if !strings.HasSuffix(name, segSuffix) || len(name) != 20+len(segSuffix) {
		return 0, false
	}
	seq, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
	return seq, err == nil
}

// Start creates and locks the directory, finds the segments an earlier
// run left, and starts replaying them.
func (s *Spool) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.stopped {
		return errors.New("spool: already started")
	}
	if err := os.MkdirAll(s.qdir, 0o750); err != nil {
		return fmt.Errorf("spool: dir: %w", err)
	}
	unlock, err := lockDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("spool: dir %s: %w", s.cfg.Dir, err)
	}
	if err := s.scan(); err != nil {
		unlock()
		return err
	}
	s.unlock = unlock
	if len(s.segs) > 0 {
		s.log.Info("replaying segments left by an earlier run", "segments", len(s.segs), "bytes", s.pendingBytes, "dir", s.cfg.Dir)
	}
	if s.quarantineSegs > 0 {
		s.log.Warn("quarantined segments wait for an operator", "segments", s.quarantineSegs, "bytes", s.quarantineBytes, "dir", s.qdir)
	}
	s.started = true
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	go s.run(runCtx)
	return nil
}

func (s *Spool) scan() error {
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, tmpSuffix) {
			// A segment whose write did not finish: its batch was never
			// acknowledged, so it is not ours to keep.
			os.Remove(filepath.Join(s.cfg.Dir, name))
			continue
		}
		seq, ok := parseSeg(name)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.segs = append(s.segs, segment{seq, info.Size()})
		s.pendingBytes += info.Size()
		s.nextSeq = max(s.nextSeq, seq+1)
	}
	slices.SortFunc(s.segs, func(a, b segment) int { return cmpUint(a.seq, b.seq) })
	qentries, err := os.ReadDir(s.qdir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, e := range qentries {
		seq, ok := parseSeg(e.Name())
		if !ok {
			continue
		}
		if info, err := e.Info(); err == nil {
			s.quarantineBytes += info.Size()
			s.quarantineSegs++
		}
		s.nextSeq = max(s.nextSeq, seq+1)
	}
	return nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Stop ends the replay loop (a replay in flight is abandoned: its segment
// stays for the next start) and unlocks the directory. Segments stay on
// disk. Stop the batcher first: batches handed over after Stop fail.
func (s *Spool) Stop() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	started := s.started
	s.mu.Unlock()
	if !started {
		return nil
	}
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unlock != nil {
		s.unlock()
		s.unlock = nil
	}
	if len(s.segs) > 0 {
		s.log.Info("stopped with segments waiting; they are replayed at the next start", "segments", len(s.segs), "bytes", s.pendingBytes)
	}
	return nil
}

func (s *Spool) running() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.started:
		return errors.New("spool: not started")
	case s.stopped:
		return errors.New("spool: stopped")
	}
	return nil
}

// Stats says what the spool holds.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		PendingSegments:     len(s.segs),
		PendingBytes:        s.pendingBytes,
		QuarantinedSegments: s.quarantineSegs,
		QuarantineBytes:     s.quarantineBytes,
		DatabaseUp:          !s.down.Load(),
	}
}

// InsertFlows inserts the batch into the database, or keeps it on disk
// when the database cannot take it now. It returns nil when the batch is
// in the database, on disk, quarantined, or dropped and counted (the
// spool is full); an error only when the batch could not be written to
// disk, so that the caller retries or counts it.
func (s *Spool) InsertFlows(ctx context.Context, b *store.FlowBatch) error {
	n := b.Len()
	if n == 0 {
		return nil
	}
	if err := s.running(); err != nil {
		return err
	}
	id := newID()
	if !s.down.Load() {
		err := s.insertLive(ctx, b, id)
		if err == nil {
			s.m.rowsDirect.Add(float64(n))
			s.m.batchesDirect.Inc()
			s.noteSuccess()
			return nil
		}
		class := store.Classify(err)
		if class == store.Rejected && ctx.Err() == nil {
			return s.quarantineBatch(b, id, err)
		}
		s.markDown(err, class)
	}
	return s.spill(b, id, SpillDatabaseDown)
}

// insertLive inserts one of the batcher's batches, and lets the replay
// loop know when it is done: it earns replay a share of the database.
func (s *Spool) insertLive(ctx context.Context, b *store.FlowBatch, id [16]byte) error {
	s.live.Add(1)
	err := s.next.InsertFlows(s.withToken(ctx, id), b)
	s.live.Add(-1)
	if s.cfg.ReplayShare < 1 {
		s.mu.Lock()
		s.replayCredit = min(s.replayCredit+s.cfg.ReplayShare/(1-s.cfg.ReplayShare), 1)
		s.mu.Unlock()
	}
	s.poke()
	return err
}

// Spill writes the batch to disk without trying the database: for a
// batcher whose insert queue is full (reason store.SpillBackpressure), or
// stopping with batches it had no time to insert (store.DropShutdown), or
// that gave up retrying (store.DropRetriesExhausted). The batch gets its
// id here, so it is inserted once: by the replay, under that id.
func (s *Spool) Spill(b *store.FlowBatch, reason string) error {
	if b.Len() == 0 {
		return nil
	}
	if err := s.running(); err != nil {
		return err
	}
	return s.spill(b, newID(), reason)
}

func newID() [16]byte {
	var id [16]byte
	crand.Read(id[:])
	return id
}

func (s *Spool) withToken(ctx context.Context, id [16]byte) context.Context {
	if !s.dedup {
		return ctx
	}
	return store.WithDedupToken(ctx, "flowhouse-"+hex.EncodeToString(id[:]))
}

func (s *Spool) spill(b *store.FlowBatch, id [16]byte, reason string) error {
	n := b.Len()
	s.mu.Lock()
	full := s.pendingBytes >= s.cfg.MaxBytes
	s.mu.Unlock()
	if full {
		s.dropFull(n)
		return nil
	}
	e := encoders.Get().(*encoder)
	defer func() { e.release(); encoders.Put(e) }()
	data := e.encode(b, id, time.Now().UnixNano())
	size := int64(len(data))

	s.mu.Lock()
	if s.pendingBytes+size > s.cfg.MaxBytes {
		s.mu.Unlock()
		s.dropFull(n)
		return nil
	}
	s.pendingBytes += size
	seq := s.nextSeq
	s.nextSeq++
	s.mu.Unlock()

	if err := writeAtomic(s.cfg.Dir, segName(seq), data, s.cfg.Fsync); err != nil {
		s.mu.Lock()
		s.pendingBytes -= size
		s.mu.Unlock()
		s.m.writeErrors.Inc()
		s.writeLog.Do(func() { s.log.Error("cannot write a segment (logged at most every 10s)", "rows", n, "err", err) })
		return fmt.Errorf("spool: %w", err)
	}
	s.mu.Lock()
	i, _ := slices.BinarySearchFunc(s.segs, seq, func(sg segment, seq uint64) int { return cmpUint(sg.seq, seq) })
	s.segs = slices.Insert(s.segs, i, segment{seq, size})
	s.mu.Unlock()
	s.m.rowsSpooled.WithLabelValues(reason).Add(float64(n))
	s.poke()
	return nil
}

func (s *Spool) dropFull(rows int) {
	s.m.rowsDropped.WithLabelValues(DropSpoolFull).Add(float64(rows))
	s.mu.Lock()
	if s.fullSince.IsZero() {
		s.fullSince = time.Now()
	}
	pending, segs := s.pendingBytes, len(s.segs)
	s.mu.Unlock()
	s.dropLog.Do(func() {
		s.log.Error("spool full, dropping flows (logged at most every 10s)", "reason", DropSpoolFull, "rows", rows,
			"pending_bytes", pending, "segments", segs, "max_bytes", s.cfg.MaxBytes)
	})
}

// writeAtomic writes name in dir so that it exists whole or not at all:
// a temporary file, fsync, rename, fsync of the directory.
func writeAtomic(dir, name string, data []byte, sync bool) error {
	tmp := filepath.Join(dir, name+tmpSuffix)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if sync {
		return syncDir(dir)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *Spool) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Spool) markDown(err error, class store.ErrorClass) {
	s.mu.Lock()
	s.lastErr, s.lastClass = err, class
	wasDown := s.down.Swap(true)
	if !wasDown {
		s.downSince = time.Now()
	}
	segs := len(s.segs)
	s.mu.Unlock()
	if !wasDown {
		s.log.Warn("database cannot take inserts, spooling batches to disk", "class", class.String(), "err", err, "segments", segs)
		s.poke()
	}
}

func (s *Spool) markUp() {
	if !s.down.Load() {
		return
	}
	s.mu.Lock()
	since, segs := s.downSince, len(s.segs)
	s.fullSince = time.Time{}
	s.down.Store(false)
	s.mu.Unlock()
	s.log.Info("database takes inserts again", "down_for", time.Since(since).Round(time.Millisecond), "segments_to_replay", segs)
}

func (s *Spool) noteSuccess() {
	s.mu.Lock()
	s.rejected, s.rejectedRows, s.lastRejected = 0, 0, nil
	s.mu.Unlock()
}

func (s *Spool) noteRejected(rows int, err error) {
	s.mu.Lock()
	s.rejected++
	s.rejectedRows += rows
	s.lastRejected = err
	s.mu.Unlock()
}

// quarantineBatch keeps a batch the database refused in the quarantine
// directory, with the error next to it.
func (s *Spool) quarantineBatch(b *store.FlowBatch, id [16]byte, cause error) error {
	n := b.Len()
	s.noteRejected(n, cause)
	e := encoders.Get().(*encoder)
	defer func() { e.release(); encoders.Put(e) }()
	data := e.encode(b, id, time.Now().UnixNano())
	size := int64(len(data))
	s.mu.Lock()
	if s.quarantineBytes+size > s.cfg.MaxQuarantineBytes {
		s.mu.Unlock()
		s.m.rowsDropped.WithLabelValues(DropQuarantineFull).Add(float64(n))
		s.rejectLog.Do(func() {
			s.log.Error("database rejected a batch and the quarantine is full: dropping it (logged at most every 10s)", "rows", n, "err", cause, "reason", DropQuarantineFull)
		})
		return nil
	}
	s.quarantineBytes += size
	seq := s.nextSeq
	s.nextSeq++
	s.mu.Unlock()
	name := segName(seq)
	err := writeAtomic(s.qdir, name, data, s.cfg.Fsync)
	if err != nil {
		s.mu.Lock()
		s.quarantineBytes -= size
		s.mu.Unlock()
		s.m.writeErrors.Inc()
		s.m.rowsDropped.WithLabelValues(DropQuarantineFull).Add(float64(n))
		s.rejectLog.Do(func() {
			s.log.Error("database rejected a batch and it cannot be quarantined: dropping it (logged at most every 10s)", "rows", n, "err", cause, "write_err", err)
		})
		return nil
	}
	writeAtomic(s.qdir, name+errSuffix, []byte(cause.Error()+"\n"), false)
	s.mu.Lock()
	s.quarantineSegs++
	s.mu.Unlock()
	s.m.segmentsQuarantined.WithLabelValues(QuarantineRejected).Inc()
	s.m.rowsQuarantined.WithLabelValues(QuarantineRejected).Add(float64(n))
	s.rejectLog.Do(func() {
		s.log.Error("database rejected a batch: quarantined (logged at most every 10s)", "rows", n, "file", filepath.Join(s.qdir, name), "err", cause)
	})
	return nil
}

// errSkipped: the segment was quarantined or vanished; it says nothing
// about the database.
var errSkipped = errors.New("segment skipped")

// run replays segments oldest first, and probes the database with
// backoff while it is down.
func (s *Spool) run(ctx context.Context) {
	defer close(s.done)
	backoff := store.Backoff{Initial: s.cfg.Probe.Initial, Max: s.cfg.Probe.Max}
	for {
		seg, ok := s.oldest()
		if (!ok && !s.down.Load()) || (ok && !s.replayAllowed()) {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			}
			continue
		}
		var err error
		if ok {
			err = s.replay(ctx, seg)
		} else {
			err = s.probe(ctx)
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			s.markUp()
			backoff.Reset()
			continue
		}
		if errors.Is(err, errSkipped) {
			continue
		}
		s.markDown(err, store.Classify(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff.Next()):
		}
	}
}

// replayAllowed says whether the next segment may be replayed now. Live
// batches come first: segments spooled because the database was slower
// than the input are replayed while it is up, and an unbounded replay
// would take the database from the batcher, whose queue would overflow
// again. So while a live insert is in the database, a replay needs a
// credit, earned by live inserts (replay_share of the inserts); with no
// live insert running (the batcher's queue is empty, or the database is
// marked down and batches go to disk) the database is idle for live data
// and replay runs freely. At most one replay runs at a time, so a live
// insert never waits behind more than one.
func (s *Spool) replayAllowed() bool {
	if s.down.Load() || s.cfg.ReplayShare >= 1 || s.live.Load() == 0 {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replayCredit >= 1 {
		s.replayCredit--
		return true
	}
	s.m.replayYields.Inc()
	return false
}

func (s *Spool) oldest() (segment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.segs) == 0 {
		return segment{}, false
	}
	return s.segs[0], true
}

func (s *Spool) probe(ctx context.Context) error {
	if s.ping == nil {
		return nil // nothing to ask: try the next batch
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.ReplayTimeout)
	defer cancel()
	return s.ping(pctx)
}

// replay inserts one segment and removes it, or quarantines it.
func (s *Spool) replay(ctx context.Context, seg segment) error {
	path := filepath.Join(s.cfg.Dir, segName(seg.seq))
	data, err := s.read(path)
	if errors.Is(err, os.ErrNotExist) {
		s.log.Warn("a segment vanished before it was replayed", "file", path)
		s.forget(seg)
		return errSkipped
	}
	if err != nil {
		s.quarantineSegment(seg, QuarantineCorrupt, 0, err)
		return errSkipped
	}
	s.batch.Reset()
	h, err := s.dec.decode(data, s.batch)
	if err != nil {
		rows := 0
		if h2, herr := readHeader(data); herr == nil {
			rows = h2.rows
		}
		s.quarantineSegment(seg, QuarantineCorrupt, rows, err)
		s.batch.Reset()
		return errSkipped
	}
	ictx, cancel := context.WithTimeout(ctx, s.cfg.ReplayTimeout)
	err = s.next.InsertFlows(s.withToken(ictx, h.id), s.batch)
	cancel()
	s.batch.Reset()
	if err != nil {
		if store.Classify(err) == store.Rejected && ctx.Err() == nil {
			s.noteRejected(h.rows, err)
			s.quarantineSegment(seg, QuarantineRejected, h.rows, err)
			return errSkipped
		}
		return err
	}
	if err := s.remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		// The rows are in the database: this process forgets the segment
		// so it never inserts them twice (returning the error would mark
		// the database down and replay it again). Left on disk, it would
		// be replayed after a restart: the operator must delete it.
		s.removeLog.Do(func() {
			s.log.Error("a replayed segment cannot be removed: delete it by hand, or it is inserted again after a restart (logged at most every 10s)", "file", path, "err", err)
		})
	}
	s.forget(seg)
	s.m.rowsReplayed.Add(float64(h.rows))
	s.m.segmentsReplayed.Inc()
	s.noteSuccess()
	return nil
}

func (s *Spool) read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	n := int(info.Size())
	if cap(s.readBuf) < n {
		s.readBuf = make([]byte, n)
	}
	s.readBuf = s.readBuf[:n]
	if _, err := io.ReadFull(f, s.readBuf); err != nil {
		return nil, err
	}
	return s.readBuf, nil
}

func (s *Spool) forget(seg segment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := slices.IndexFunc(s.segs, func(x segment) bool { return x.seq == seg.seq }); i >= 0 {
		s.segs = slices.Delete(s.segs, i, i+1)
		s.pendingBytes -= seg.size
	}
	if s.pendingBytes < s.cfg.MaxBytes {
		s.fullSince = time.Time{}
	}
}

// quarantineSegment moves a pending segment to the quarantine directory,
// with the reason next to it; when the quarantine is full it is deleted
// and its rows counted as dropped.
func (s *Spool) quarantineSegment(seg segment, reason string, rows int, cause error) {
	name := segName(seg.seq)
	path := filepath.Join(s.cfg.Dir, name)
	s.mu.Lock()
	room := s.quarantineBytes+seg.size <= s.cfg.MaxQuarantineBytes
	if room {
		s.quarantineBytes += seg.size
	}
	s.mu.Unlock()
	var err error
	if room {
		err = os.Rename(path, filepath.Join(s.qdir, name))
		if err == nil {
			writeAtomic(s.qdir, name+errSuffix, []byte(reason+": "+cause.Error()+"\n"), false)
			if s.cfg.Fsync {
				syncDir(s.qdir)
				syncDir(s.cfg.Dir)
			}
		} else {
			s.mu.Lock()
			s.quarantineBytes -= seg.size
			s.mu.Unlock()
		}
	}
	if !room || err != nil {
		os.Remove(path)
		s.m.rowsDropped.WithLabelValues(DropQuarantineFull).Add(float64(rows))
		s.quarantineLog.Do(func() {
			s.log.Error("segment to quarantine dropped: the quarantine is full (logged at most every 10s)", "file", path, "rows", rows, "reason", reason, "err", cause, "move_err", err)
		})
	} else {
		s.mu.Lock()
		s.quarantineSegs++
		s.mu.Unlock()
		s.m.segmentsQuarantined.WithLabelValues(reason).Inc()
		s.m.rowsQuarantined.WithLabelValues(reason).Add(float64(rows))
		s.quarantineLog.Do(func() {
			s.log.Error("segment quarantined (logged at most every 10s)", "reason", reason, "file", filepath.Join(s.qdir, name), "rows", rows, "err", cause)
		})
	}
	s.forget(seg)
}

// Ready fails, saying what to do, while the database rejects batches
// (they are quarantined), refuses inserts for a reason an operator must
// fix, or is down with the spool full.
func (s *Spool) Ready(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	down := s.down.Load()
	switch {
	case s.rejected > 0:
		return fmt.Errorf("the database rejected %d batches (%d flows) since the last successful insert, last: %v; "+
			"they are kept in %s. The flows table does not accept what flowhouse writes: run `flowhouse migrate` and compare "+
			"`SHOW CREATE TABLE flows` with the schema in README; once inserts succeed, move the quarantined .seg files back "+
			"into %s and restart flowhouse to replay them",
			s.rejected, s.rejectedRows, s.lastRejected, s.qdir, s.cfg.Dir)
	case down && s.lastClass == store.Unavailable:
		return fmt.Errorf("the database refuses inserts: %v; flows are spooled in %s (%d of max_bytes %d) and replayed once it "+
			"takes them: check clickhouse.username, clickhouse.password and clickhouse.database, and run `flowhouse migrate`",
			s.lastErr, s.cfg.Dir, s.pendingBytes, s.cfg.MaxBytes)
	case down && !s.fullSince.IsZero():
		return fmt.Errorf("the database has taken no insert since %s (last error: %v) and the spool in %s is full "+
			"(%d bytes, max_bytes %d): new flows are dropped (flowhouse_spool_rows_dropped_total{reason=\"spool_full\"}); "+
			"bring the database back or raise spool.max_bytes",
			s.downSince.UTC().Format(time.RFC3339), s.lastErr, s.cfg.Dir, s.pendingBytes, s.cfg.MaxBytes)
	}
	return nil
}
