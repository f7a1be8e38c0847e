package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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
}

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

	queue chan *FlowBatch
	// spills holds the batches the queue had no room for, waiting for the
	// spiller goroutine to write them to disk; nil when the Writer is no
	// Spiller or max_spill_batches is 0 (overflow is dropped then).
	spills  chan *FlowBatch
	spiller Spiller
	// free recycles batches so their columns are allocated once. It can
	// hold every batch that can exist: the current one, the queued ones,
	// one per writer, the spill queue's and the one being spilled.
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
	b := &Batcher{
		cfg:   cfg,
		flows: deps.Flows,
		w:     deps.Writer,
		log:   logger,
		queue: make(chan *FlowBatch, cfg.MaxQueueBatches),
		free:  make(chan *FlowBatch, cfg.MaxQueueBatches+cfg.Writers+1+cfg.MaxSpillBatches+1),

		dropLog:   rate.Sometimes{Interval: logInterval},
		retryLog:  rate.Sometimes{Interval: logInterval},
		giveUpLog: rate.Sometimes{Interval: logInterval},
		spillLog:  rate.Sometimes{Interval: logInterval},
	}
	if sp, ok := deps.Writer.(Spiller); ok && cfg.MaxSpillBatches > 0 {
		b.spiller = sp
		b.spills = make(chan *FlowBatch, cfg.MaxSpillBatches)
	}
	b.m = newMetrics(deps.Registerer, func() float64 { return float64(len(b.queue)) },
		func() float64 { return float64(len(b.spills)) })
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
	full := b.cur
	select {
	case b.queue <- full:
		b.cur = b.newBatch()
		return
	default:
	}
	// The database is slower than the input: the batch waits for the
	// spiller instead, which writes it to disk without blocking Write.
	reason := DropQueueFull
	if b.spills != nil {
		select {
		case b.spills <- full:
			b.cur = b.newBatch()
			return
		default:
			reason = DropSpillQueueFull
		}
	}
	n := full.Len()
	b.m.rowsDropped.WithLabelValues(reason).Add(float64(n))
	b.logDrop(reason, n)
	full.Reset()
}

// spillOverflow writes the batches the insert queue had no room for to the
// spool, which replays them when the database has time. A batch goes back
// to the pool only after Spill returned: the spool encodes it there.
func (b *Batcher) spillOverflow() {
	defer b.wg.Done()
	for fb := range b.spills {
		n := fb.Len()
		if err := b.spiller.Spill(fb, SpillBackpressure); err != nil {
			b.spillLog.Do(func() {
				b.log.Error("cannot spill an overflowing batch to disk, dropping it (logged at most every 10s)", "rows", n, "err", err)
			})
			b.m.rowsDropped.WithLabelValues(DropQueueFull).Add(float64(n))
		} else {
			b.m.rowsSpilled.Add(float64(n))
		}
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
		b.log.Warn("dropping flows (logged at most every 10s)", "reason", reason, "rows", rows, "queue_batches", len(b.queue))
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
		for fb := range b.queue {
			lost += fb.Len()
		}
		if b.spills != nil {
			close(b.spills)
			for fb := range b.spills {
				lost += fb.Len()
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
		case b.queue <- last:
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
	for fb := range b.queue {
		b.insert(fb)
		b.recycle(fb)
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
