package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/schema"
)

// Deps of the Batcher.
type Deps struct {
	// Writer inserts full batches: a DB, or a spool in front of one.
	Writer Writer
	Logger *slog.Logger
	// Registerer gets the flowhouse_store_* metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Flows is the flows table the batches are of (schema.FlowsWith the
	// mapped columns); nil is schema.Flows.
	Flows *schema.Table
	// Memory bounds the batches beyond the current one; the zero value is
	// DefaultMemory. serve sizes it from memory.limit.
	Memory MemoryBounds
}

// MemoryBounds are the bytes of batches (Batch.MemBytes, what they hold
// allocated) the batcher keeps while the database is slower than the
// input: past Queue a full batch goes to the spill queue, past Spill it is
// dropped. A queue holds at least one batch, whatever its size, so that a
// bound smaller than a batch still lets batches through one at a time.
type MemoryBounds struct {
	// Queue: batches waiting for a writer and being inserted.
	Queue int64
	// Spill: batches waiting to be written to the disk spool, and the
	// one being written; 0 drops what the insert queue has no room for.
	Spill int64
}

// DefaultMemory is what the default memory.limit (384 MiB) gives the
// store: 144 MiB of queued batches (about 14 of 50 000 flows at 210
// bytes each) and 48 MiB waiting for the spool.
func DefaultMemory() MemoryBounds { return MemoryBounds{Queue: 144 << 20, Spill: 48 << 20} }

// held is a batch out of the current one, with the bytes it was counted
// for, so that what is given back is what was taken.
type held struct {
	fb   *FlowBatch
	size int64
}

// queueSlots is the most batches either queue holds, whatever their
// size: bytes are the bound that matters; this keeps a stream of tiny
// batches (a quiet exporter's, flushed by batch_interval) bounded too.
const queueSlots = 1024

// Batcher collects flows from the collector's workers into columnar
// batches and hands each full (or old enough) batch to writer goroutines
// through a bounded queue. It implements flow.Sink.
//
// Write never waits for the database: when the queue is full (the
// database is slower than the input) the batch goes to a bounded spill
// queue, whose own goroutine writes it to the disk spool when the Writer
// is a Spiller; only what does not fit there either is dropped and
// counted. Write itself never does disk I/O and never blocks, because a
// collector blocked on its sink stops reading its sockets and loses
// datagrams anyway, without counting them per reason.
type Batcher struct {
	cfg   Config
	flows *schema.Table
	w     Writer
	log   *slog.Logger
	m     *metrics

	mu      sync.Mutex
	cur     *FlowBatch
	firstAt time.Time   // when cur got its first flow
	timer   *time.Timer // flushes cur batch_interval after firstAt
	stopped bool

	mem   MemoryBounds
	queue chan held
	// spills holds the batches the queue had no room for, waiting for the
	// spiller goroutine to write them to disk; nil when the Writer is no
	// Spiller or Memory.Spill is 0 (overflow is dropped then).
	spills  chan held
	spiller Spiller
	// queued and spilling are the bytes of the batches in the queue or
	// being inserted, and in the spill queue or being spilled.
	queued, spilling atomic.Int64
	// free recycles batches so their columns are allocated once; a batch
	// that does not fit (after a burst) is left to the GC.
	free chan *FlowBatch

	runCtx    context.Context // inserts run under it; canceled at Stop's deadline
	cancelRun context.CancelFunc
	started   bool
	wg        sync.WaitGroup

	// What fails batch after batch is logged at most every logInterval
	// (the metrics count every batch): drops, retries, batches given up
	// and batches that could not be spilled.
	dropLog, retryLog, giveUpLog, spillLog rate.Sometimes
}

// logInterval spaces the log lines of failures that repeat per batch.
const logInterval = 10 * time.Second

// New builds a batcher; it does no I/O.
func New(cfg Config, deps Deps) (*Batcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("store config: %w", err)
	}
	if deps.Writer == nil {
		return nil, errors.New("store: batcher needs a Writer")
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if deps.Flows == nil {
		deps.Flows = schema.Flows
	}
	if deps.Memory == (MemoryBounds{}) {
		deps.Memory = DefaultMemory()
	}
	if deps.Memory.Queue < 1 || deps.Memory.Spill < 0 {
		return nil, fmt.Errorf("store: memory bounds %+v: the queue's must be positive, the spill queue's not negative", deps.Memory)
	}
	b := &Batcher{
		cfg:   cfg,
		flows: deps.Flows,
		w:     deps.Writer,
		log:   logger,
		mem:   deps.Memory,
		queue: make(chan held, queueSlots),
		// The batches a steady load cycles through: the current one, one
		// per writer and one queued behind each.
		free: make(chan *FlowBatch, 2*cfg.Writers+1),

		dropLog:   rate.Sometimes{Interval: logInterval},
		retryLog:  rate.Sometimes{Interval: logInterval},
		giveUpLog: rate.Sometimes{Interval: logInterval},
		spillLog:  rate.Sometimes{Interval: logInterval},
	}
	if sp, ok := deps.Writer.(Spiller); ok && deps.Memory.Spill > 0 {
		b.spiller = sp
		b.spills = make(chan held, queueSlots)
	}
	b.m = newMetrics(deps.Registerer, gauges{
		queueLen:   func() float64 { return float64(len(b.queue)) },
		spillLen:   func() float64 { return float64(len(b.spills)) },
		queueBytes: func() float64 { return float64(b.queued.Load()) },
		spillBytes: func() float64 { return float64(b.spilling.Load()) },
	})
	b.m.memoryLimit.WithLabelValues("queue").Set(float64(deps.Memory.Queue))
	b.m.memoryLimit.WithLabelValues("spill").Set(float64(deps.Memory.Spill))
	b.cur = b.newBatch()
	b.timer = time.AfterFunc(time.Hour, b.onTimer)
	b.timer.Stop()
	return b, nil
}

func (b *Batcher) newBatch() *FlowBatch {
	select {
	case fb := <-b.free:
		return fb
	default:
		// Batches grow to their working size; starting small keeps a
		// rarely used batcher (or a huge batch_rows) from reserving memory.
		return b.flows.NewBatch(min(b.cfg.BatchRows, 4096))
	}
}

// Start runs the writers. The batcher ends with Stop, not with ctx, so
// that Stop can still flush after the caller's context is canceled.
func (b *Batcher) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return errors.New("store: batcher already started")
	}
	if b.stopped {
		return errors.New("store: batcher already stopped")
	}
	b.started = true
	b.runCtx, b.cancelRun = context.WithCancel(context.WithoutCancel(ctx))
	for range b.cfg.Writers {
		b.wg.Add(1)
		go b.writer()
	}
	if b.spills != nil {
		b.wg.Add(1)
		go b.spillOverflow()
	}
	return nil
}

// Write copies flows into the current batch; it is safe for concurrent use.
func (b *Batcher) Write(flows []flow.Flow) {
	if len(flows) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		b.m.rowsDropped.WithLabelValues(DropStopped).Add(float64(len(flows)))
		return
	}
	for len(flows) > 0 {
		if b.cur.Len() == 0 {
			b.firstAt = time.Now()
			b.timer.Reset(b.cfg.BatchInterval)
		}
		k := min(b.cfg.BatchRows-b.cur.Len(), len(flows))
		b.cur.Append(flows[:k])
		flows = flows[k:]
		if b.cur.Len() >= b.cfg.BatchRows {
			b.flushLocked()
		}
	}
}

// Flush hands the current batch to the writers now.
func (b *Batcher) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.stopped && b.cur.Len() > 0 {
		b.flushLocked()
	}
}

func (b *Batcher) onTimer() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped || b.cur.Len() == 0 {
		return
	}
	// The timer may have been armed for a batch flushed by size since:
	// then this batch is younger and gets the rest of its interval.
	if age := time.Since(b.firstAt); age < b.cfg.BatchInterval {
		b.timer.Reset(b.cfg.BatchInterval - age)
		return
	}
	b.flushLocked()
}

func (b *Batcher) flushLocked() {
	b.timer.Stop()
	full := held{fb: b.cur, size: b.cur.MemBytes()}
	if offer(b.queue, &b.queued, full, b.mem.Queue) {
		b.cur = b.newBatch()
		return
	}
	// The database is slower than the input: the batch waits for the
	// spiller instead, which writes it to disk without blocking Write.
	reason := DropQueueFull
	if b.spills != nil {
		reason = DropSpillQueueFull
		if offer(b.spills, &b.spilling, full, b.mem.Spill) {
			b.cur = b.newBatch()
			return
		}
	}
	n := full.fb.Len()
	b.m.rowsDropped.WithLabelValues(reason).Add(float64(n))
	b.logDrop(reason, n)
	full.fb.Reset()
}

// offer queues h on q, counting its size into used, if used stays within
// limit or nothing is counted yet (a batch bigger than the bound still
// goes, alone), and q has a slot. Only flushLocked adds, under the
// batcher's lock; the consumers subtract.
func offer(q chan held, used *atomic.Int64, h held, limit int64) bool {
	if u := used.Load(); u > 0 && u+h.size > limit {
		return false
	}
	used.Add(h.size)
	select {
	case q <- h:
		return true
	default:
		used.Add(-h.size)
		return false
	}
}

// spillOverflow writes the batches the insert queue had no room for to the
// spool, which replays them when the database has time. A batch goes back
// to the pool only after Spill returned: the spool encodes it there.
func (b *Batcher) spillOverflow() {
	defer b.wg.Done()
	for h := range b.spills {
		fb := h.fb
		n := fb.Len()
		if err := b.spiller.Spill(fb, SpillBackpressure); err != nil {
			b.spillLog.Do(func() {
				b.log.Error("cannot spill an overflowing batch to disk, dropping it (logged at most every 10s)", "rows", n, "err", err)
			})
			b.m.rowsDropped.WithLabelValues(DropQueueFull).Add(float64(n))
		} else {
			b.m.rowsSpilled.Add(float64(n))
		}
		b.spilling.Add(-h.size)
		b.recycle(fb)
	}
}

func (b *Batcher) recycle(fb *FlowBatch) {
	fb.Reset()
	select {
	case b.free <- fb:
	default:
	}
}

func (b *Batcher) logDrop(reason string, rows int) {
	b.dropLog.Do(func() {
		b.log.Warn("dropping flows (logged at most every 10s)", "reason", reason, "rows", rows,
			"queue_batches", len(b.queue), "queue_bytes", b.queued.Load(), "spill_queue_bytes", b.spilling.Load())
	})
}

// Stop flushes the current batch and waits for the queued ones to be
// inserted, for at most stop_timeout; what is left then is dropped and
// counted. Writes after Stop are dropped.
func (b *Batcher) Stop() error {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return nil
	}
	b.stopped = true
	b.timer.Stop()
	started := b.started
	last := b.cur
	b.cur = b.flows.NewBatch(0)
	// From here nothing else sends to the queue: every sender checks
	// stopped under the lock.
	b.mu.Unlock()

	if !started {
		lost := last.Len()
		close(b.queue)
		for h := range b.queue {
			lost += h.fb.Len()
		}
		if b.spills != nil {
			close(b.spills)
			for h := range b.spills {
				lost += h.fb.Len()
			}
		}
		if lost > 0 {
			b.m.rowsDropped.WithLabelValues(DropShutdown).Add(float64(lost))
			return fmt.Errorf("store: stopped before start, %d flows dropped", lost)
		}
		return nil
	}

	deadline := time.NewTimer(b.cfg.StopTimeout)
	defer deadline.Stop()
	expired := false
	if n := last.Len(); n > 0 {
		// Unlike Write, Stop may wait for room in the queue: the writers
		// are draining it and nothing else is coming.
		select {
		case b.queue <- held{fb: last}: // uncounted: nothing comes after it
		case <-deadline.C:
			expired = true
			b.dropOrSpill(last, DropShutdown)
		}
	}
	close(b.queue)
	if b.spills != nil {
		// The spiller writes what is left in its queue to disk, which
		// takes milliseconds per batch; stop_timeout bounds it with the
		// writers.
		close(b.spills)
	}

	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	if !expired {
		select {
		case <-done:
			b.cancelRun()
			return nil
		case <-deadline.C:
		}
	}
	b.cancelRun() // aborts the insert in flight; writers drop the rest
	<-done
	return fmt.Errorf("store: stop_timeout %s passed before all flows were inserted", b.cfg.StopTimeout)
}

func (b *Batcher) writer() {
	defer b.wg.Done()
	for h := range b.queue {
		b.insert(h.fb)
		b.queued.Add(-h.size)
		b.recycle(h.fb)
	}
}

// insert retries with exponential backoff and jitter until the batch is
// in, retry.max_elapsed passes, or Stop's deadline does.
func (b *Batcher) insert(fb *FlowBatch) {
	n := fb.Len()
	if n == 0 {
		return
	}
	first := time.Now()
	backoff := Backoff{Initial: b.cfg.Retry.Initial, Max: b.cfg.Retry.Max}
	for attempt := 1; ; attempt++ {
		if b.runCtx.Err() != nil {
			b.dropOrSpill(fb, DropShutdown)
			return
		}
		ctx, cancel := context.WithTimeout(b.runCtx, b.cfg.InsertTimeout)
		t0 := time.Now()
		err := b.w.InsertFlows(ctx, fb)
		cancel()
		if err == nil {
			b.m.insertSeconds.Observe(time.Since(t0).Seconds())
			b.m.rowsInserted.Add(float64(n))
			b.m.batchesInserted.Inc()
			b.m.batchRows.Observe(float64(n))
			if attempt > 1 {
				b.log.Info("insert succeeded after retries", "rows", n, "attempts", attempt)
			}
			return
		}
		if b.runCtx.Err() != nil {
			b.dropOrSpill(fb, DropShutdown)
			return
		}
		b.m.insertErrors.WithLabelValues(ErrorReason(err)).Inc()
		if b.cfg.Retry.MaxElapsed > 0 && time.Since(first)+backoff.Delay() > b.cfg.Retry.MaxElapsed {
			b.giveUpLog.Do(func() {
				b.log.Error("giving up on a batch after failed inserts (logged at most every 10s)", "rows", n, "attempts", attempt, "err", err)
			})
			b.dropOrSpill(fb, DropRetriesExhausted)
			return
		}
		b.retryLog.Do(func() {
			b.log.Warn("insert failed, retrying (logged at most every 10s)", "rows", n, "attempt", attempt, "backoff", backoff.Delay(), "err", err)
		})
		select {
		case <-time.After(backoff.Next()):
		case <-b.runCtx.Done():
		}
	}
}

// Spiller is a Writer that can keep a batch without the database (the
// disk spool). What the batcher cannot insert before stop_timeout, or
// within retry.max_elapsed, or what the insert queue has no room for, is
// spilled instead of dropped. reason says why (SpillBackpressure, or the
// drop reason the batch escapes: DropShutdown, DropRetriesExhausted), for
// the spiller's metrics. Spill must be done with the batch when it
// returns: the batcher reuses it.
type Spiller interface {
	Spill(b *FlowBatch, reason string) error
}

func (b *Batcher) dropOrSpill(fb *FlowBatch, reason string) {
	n := fb.Len()
	if sp, ok := b.w.(Spiller); ok {
		err := sp.Spill(fb, reason)
		if err == nil {
			return
		}
		b.spillLog.Do(func() {
			b.log.Error("cannot spill a batch to disk, dropping it (logged at most every 10s)", "rows", n, "reason", reason, "err", err)
		})
	}
	b.m.rowsDropped.WithLabelValues(reason).Add(float64(n))
}
