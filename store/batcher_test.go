package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/schema"
)

// fakeWriter records the batches it gets; fail decides per attempt.
type fakeWriter struct {
	mu       sync.Mutex
	sizes    []int
	rows     int
	attempts atomic.Int64
	fail     func(attempt int64) error
	block    chan struct{} // when set, inserts wait for it (or ctx)
}

func (w *fakeWriter) InsertFlows(ctx context.Context, b *FlowBatch) error {
	n := w.attempts.Add(1)
	if w.block != nil {
		select {
		case <-w.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if w.fail != nil {
		if err := w.fail(n); err != nil {
			return err
		}
	}
	// The batch is reused after InsertFlows returns: check its rows now.
	for i := range b.Len() {
		if f := b.Flow(i); f.Tenant != "t" || f.Bytes != uint64(f.DstPort) {
			return errors.New("corrupted row")
		}
	}
	w.mu.Lock()
	w.sizes = append(w.sizes, b.Len())
	w.rows += b.Len()
	w.mu.Unlock()
	return nil
}

func (w *fakeWriter) total() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rows
}

func flows(n int) []flow.Flow {
	fs := make([]flow.Flow, n)
	for i := range fs {
		fs[i] = flow.Flow{Tenant: "t", DstPort: uint16(i), Bytes: uint64(i)}
	}
	return fs
}

func testConfig() Config {
	c := DefaultConfig()
	c.BatchRows = 100
	c.BatchInterval = time.Hour
	c.Retry = RetryConfig{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, MaxElapsed: 0}
	c.InsertTimeout = time.Second
	c.StopTimeout = 5 * time.Second
	return c
}

func newTestBatcher(t *testing.T, cfg Config, w Writer) (*Batcher, *prometheus.Registry) {
	return newBoundedBatcher(t, cfg, w, MemoryBounds{})
}

// batchesOf is memory bounds that hold queue and spill batches of
// testConfig's size (and not one more).
func batchesOf(queue, spill int) MemoryBounds {
	b := schema.Flows.NewBatch(testConfig().BatchRows)
	b.Append(flows(testConfig().BatchRows))
	size := b.MemBytes()
	bound := func(n int) int64 {
		if n == 0 {
			return 0
		}
		return int64(n)*size + size/2
	}
	return MemoryBounds{Queue: bound(queue), Spill: bound(spill)}
}

func newBoundedBatcher(t *testing.T, cfg Config, w Writer, mem MemoryBounds) (*Batcher, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	b, err := New(cfg, Deps{Writer: w, Registerer: reg, Memory: mem})
	if err != nil {
		t.Fatal(err)
	}
	return b, reg
}

func TestBatcherConcurrentWritesAreAllInsertedInFullBatches(t *testing.T) {
	w := &fakeWriter{}
	cfg := testConfig()
	cfg.Writers = 2
	// This test is about copying, not dropping: the default bounds hold
	// every batch.
	b, reg := newTestBatcher(t, cfg, w)
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	const workers, writes, perWrite = 4, 500, 7
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fs := flows(perWrite)
			for range writes {
				b.Write(fs)
				// The caller reuses its slice at once; the batcher copied it.
				for i := range fs {
					fs[i].Tenant = "overwritten"
				}
				for i := range fs {
					fs[i].Tenant = "t"
				}
			}
		}()
	}
	wg.Wait()
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	const total = workers * writes * perWrite
	if w.total() != total {
		t.Fatalf("inserted %d rows, want %d", w.total(), total)
	}
	for i, n := range w.sizes {
		if n > cfg.BatchRows {
			t.Fatalf("batch %d has %d rows, more than batch_rows %d", i, n, cfg.BatchRows)
		}
	}
	full := 0
	for _, n := range w.sizes {
		if n == cfg.BatchRows {
			full++
		}
	}
	if full != total/cfg.BatchRows {
		t.Errorf("%d full batches, want %d (sizes %v)", full, total/cfg.BatchRows, w.sizes)
	}
	if got := testutil.ToFloat64(b.m.rowsInserted); got != total {
		t.Errorf("rows_inserted_total = %v, want %d", got, total)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n < 7 {
		t.Errorf("registry has %d metrics (err %v)", n, err)
	}
}

func TestBatcherFlushesOnInterval(t *testing.T) {
	w := &fakeWriter{}
	cfg := testConfig()
	cfg.BatchRows = 1000
	cfg.BatchInterval = 50 * time.Millisecond
	b, _ := newTestBatcher(t, cfg, w)
	b.Start(context.Background())
	defer b.Stop()

	start := time.Now()
	b.Write(flows(3))
	testkit.Eventually(t, "interval flush", 5*time.Second, func() bool { return w.total() == 3 })
	if el := time.Since(start); el < cfg.BatchInterval {
		t.Errorf("flushed after %s, before batch_interval %s", el, cfg.BatchInterval)
	}
	// A second batch gets its own full interval.
	b.Write(flows(2))
	time.Sleep(cfg.BatchInterval / 2)
	if w.total() != 3 {
		t.Fatalf("second batch flushed early: %d rows", w.total())
	}
	testkit.Eventually(t, "second interval flush", 5*time.Second, func() bool { return w.total() == 5 })
}

func TestBatcherRetriesUntilInsertSucceeds(t *testing.T) {
	w := &fakeWriter{fail: func(n int64) error {
		if n <= 3 {
			return context.DeadlineExceeded
		}
		return nil
	}}
	b, _ := newTestBatcher(t, testConfig(), w)
	b.Start(context.Background())
	b.Write(flows(100))
	testkit.Eventually(t, "insert after retries", 5*time.Second, func() bool { return w.total() == 100 })
	b.Stop()
	if got := testutil.ToFloat64(b.m.insertErrors.WithLabelValues(errTimeout)); got != 3 {
		t.Errorf("insert_errors_total{reason=timeout} = %v, want 3", got)
	}
	if got := testutil.ToFloat64(b.m.rowsInserted); got != 100 {
		t.Errorf("rows_inserted_total = %v, want 100", got)
	}
}

func TestBatcherDropsAfterMaxElapsed(t *testing.T) {
	w := &fakeWriter{fail: func(int64) error { return errors.New("nope") }}
	cfg := testConfig()
	cfg.Retry.MaxElapsed = 30 * time.Millisecond
	b, _ := newTestBatcher(t, cfg, w)
	b.Start(context.Background())
	b.Write(flows(100))
	testkit.Eventually(t, "drop", 5*time.Second, func() bool { return testutil.ToFloat64(b.m.rowsDropped.WithLabelValues(DropRetriesExhausted)) == 100 })
	b.Stop()
	if got := testutil.ToFloat64(b.m.insertErrors.WithLabelValues(errOther)); got < 2 {
		t.Errorf("insert_errors_total{reason=other} = %v, want at least 2 attempts", got)
	}
}

func TestBatcherWriteNeverBlocksWhenQueueIsFull(t *testing.T) {
	w := &fakeWriter{block: make(chan struct{})}
	cfg := testConfig()
	cfg.Writers = 1 // the counts below assume one blocked writer
	cfg.StopTimeout = 100 * time.Millisecond
	b, _ := newBoundedBatcher(t, cfg, w, batchesOf(3, 0))
	b.Start(context.Background())

	const total = 10_000
	fs := flows(50)
	b.Write(flows(cfg.BatchRows))
	testkit.Eventually(t, "the writer to take the first batch", 5*time.Second, func() bool { return w.attempts.Load() == 1 })
	start := time.Now()
	for range (total - cfg.BatchRows) / len(fs) {
		b.Write(fs)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("writing with a stuck database took %s", el)
	}
	// One batch in the writer, two queued, the rest dropped (the last
	// Write filled the current batch exactly, so it is empty).
	const kept = 3 * 100
	dropped := testutil.ToFloat64(b.m.rowsDropped.WithLabelValues(DropQueueFull))
	if dropped != total-kept {
		t.Errorf("rows_dropped_total{reason=queue_full} = %v, want %v", dropped, total-kept)
	}
	if got := testutil.ToFloat64(b.m.queueBatches); got != 2 {
		t.Errorf("queue_batches = %v, want 2", got)
	}

	start = time.Now()
	if err := b.Stop(); err == nil {
		t.Error("Stop with a stuck database returned no error")
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Stop took %s with stop_timeout %s", el, cfg.StopTimeout)
	}
	shutdown := testutil.ToFloat64(b.m.rowsDropped.WithLabelValues(DropShutdown))
	if shutdown != kept {
		t.Errorf("rows_dropped_total{reason=shutdown} = %v, want %d", shutdown, kept)
	}
	b.Write(fs)
	if got := testutil.ToFloat64(b.m.rowsDropped.WithLabelValues(DropStopped)); got != float64(len(fs)) {
		t.Errorf("rows_dropped_total{reason=stopped} = %v, want %d", got, len(fs))
	}
}

func TestBatcherStopFlushesPartialBatch(t *testing.T) {
	w := &fakeWriter{}
	b, _ := newTestBatcher(t, testConfig(), w)
	b.Start(context.Background())
	b.Write(flows(42))
	if w.total() != 0 {
		t.Fatalf("partial batch inserted before Stop")
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if w.total() != 42 {
		t.Fatalf("after Stop: %d rows inserted, want 42", w.total())
	}
	if err := b.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestBatcherStopWithoutStartCountsLoss(t *testing.T) {
	b, _ := newTestBatcher(t, testConfig(), &fakeWriter{})
	b.Write(flows(250))
	if err := b.Stop(); err == nil {
		t.Fatal("Stop before Start lost flows silently")
	}
	if got := testutil.ToFloat64(b.m.rowsDropped.WithLabelValues(DropShutdown)); got != 250 {
		t.Errorf("rows_dropped_total{reason=shutdown} = %v, want 250", got)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	if _, err := New(testConfig(), Deps{}); err == nil {
		t.Error("New without a writer succeeded")
	}
	cfg := testConfig()
	cfg.BatchRows = 0
	if _, err := New(cfg, Deps{Writer: &fakeWriter{}}); err == nil {
		t.Error("New with batch_rows 0 succeeded")
	}
}

// spillWriter is a database that takes no insert until unblocked, in
// front of a spool that records what it is handed; spillErr fails Spill,
// spillBlock holds it.
type spillWriter struct {
	fakeWriter
	spillMu    sync.Mutex
	spilled    int
	reasons    map[string]int
	spillErr   error
	spillBlock chan struct{}
	spillCalls atomic.Int64
}

func (w *spillWriter) Spill(b *FlowBatch, reason string) error {
	w.spillCalls.Add(1)
	if w.spillBlock != nil {
		<-w.spillBlock
	}
	if w.spillErr != nil {
		return w.spillErr
	}
	// The batch goes back to the pool after Spill: it must be whole now.
	for i := range b.Len() {
		if f := b.Flow(i); f.Tenant != "t" || f.Bytes != uint64(f.DstPort) {
			return errors.New("corrupted row")
		}
	}
	w.spillMu.Lock()
	defer w.spillMu.Unlock()
	if w.reasons == nil {
		w.reasons = map[string]int{}
	}
	w.reasons[reason] += b.Len()
	w.spilled += b.Len()
	return nil
}

func (w *spillWriter) spilledRows(reason string) int {
	w.spillMu.Lock()
	defer w.spillMu.Unlock()
	return w.reasons[reason]
}

// With the database stuck on one batch and two more queued (the queue's
// memory bound holds three),
// every further batch is either spilled (reason backpressure) or, when
// the spill queue is full or Spill fails, dropped with the reason; Write
// never waits for either.
func TestBatcherOverflowGoesToTheSpool(t *testing.T) {
	for _, tc := range []struct {
		name        string
		spillErr    error
		blockSpill  bool
		spillQueue  int
		wantSpilled float64 // rows_spilled_total
		wantDrop    map[string]float64
	}{
		{name: "spilled", spillQueue: 7, wantSpilled: 7 * 100,
			wantDrop: map[string]float64{DropQueueFull: 0, DropSpillQueueFull: 0}},
		// One batch in Spill (held), one waiting in the spill queue (the
		// bound holds two), the other five dropped as spill_queue_full.
		{name: "spill queue full", spillQueue: 2, blockSpill: true, wantSpilled: 2 * 100,
			wantDrop: map[string]float64{DropQueueFull: 0, DropSpillQueueFull: 5 * 100}},
		{name: "spill fails", spillQueue: 7, spillErr: errors.New("disk full"), wantSpilled: 0,
			wantDrop: map[string]float64{DropQueueFull: 7 * 100, DropSpillQueueFull: 0}},
		{name: "spilling off", spillQueue: 0, wantSpilled: 0,
			wantDrop: map[string]float64{DropQueueFull: 7 * 100, DropSpillQueueFull: 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &spillWriter{fakeWriter: fakeWriter{block: make(chan struct{})}, spillErr: tc.spillErr}
			if tc.blockSpill {
				w.spillBlock = make(chan struct{})
			}
			cfg := testConfig()
			cfg.Writers = 1
			b, _ := newBoundedBatcher(t, cfg, w, batchesOf(3, tc.spillQueue))
			b.Start(context.Background())
			b.Write(flows(cfg.BatchRows))
			testkit.Eventually(t, "the writer to take the first batch", 5*time.Second, func() bool { return w.attempts.Load() == 1 })
			start := time.Now()
			// 2 batches fill the queue, 7 overflow.
			for range 9 {
				b.Write(flows(cfg.BatchRows))
				if tc.blockSpill {
					// The spiller holds the first overflow: the counts
					// below need it taken before the next ones come.
					testkit.Eventually(t, "the spiller to take a batch", 5*time.Second, func() bool { return w.spillCalls.Load() >= 1 || len(b.spills) == 0 })
				}
			}
			if el := time.Since(start); el > time.Second {
				t.Fatalf("writing with a stuck database took %s", el)
			}
			if tc.blockSpill {
				close(w.spillBlock)
			}
			testkit.Eventually(t, "the spill queue to drain", 5*time.Second, func() bool {
				return len(b.spills) == 0 && testutil.ToFloat64(b.m.rowsSpilled)+
					testutil.ToFloat64(b.m.rowsDropped.WithLabelValues(DropQueueFull))+
					testutil.ToFloat64(b.m.rowsDropped.WithLabelValues(DropSpillQueueFull)) == 7*100
			})
			if got := testutil.ToFloat64(b.m.rowsSpilled); got != tc.wantSpilled {
				t.Errorf("rows_spilled_total = %v, want %v", got, tc.wantSpilled)
			}
			if got := w.spilledRows(SpillBackpressure); got != int(tc.wantSpilled) {
				t.Errorf("rows spilled with reason %s = %d, want %v", SpillBackpressure, got, tc.wantSpilled)
			}
			for reason, want := range tc.wantDrop {
				if got := testutil.ToFloat64(b.m.rowsDropped.WithLabelValues(reason)); got != want {
					t.Errorf("rows_dropped_total{reason=%s} = %v, want %v", reason, got, want)
				}
			}
			close(w.block)
			if err := b.Stop(); err != nil {
				t.Fatal(err)
			}
			if got := w.total(); got != 3*100 {
				t.Errorf("inserted %d rows, want the 300 of the writer and the queue", got)
			}
		})
	}
}

// Batches waiting in the spill queue at Stop are spilled, not lost.
func TestBatcherStopSpillsTheSpillQueue(t *testing.T) {
	w := &spillWriter{fakeWriter: fakeWriter{block: make(chan struct{})}, spillBlock: make(chan struct{})}
	cfg := testConfig()
	cfg.Writers = 1
	b, _ := newBoundedBatcher(t, cfg, w, batchesOf(2, 3))
	b.Start(context.Background())
	b.Write(flows(cfg.BatchRows))
	testkit.Eventually(t, "the writer to take the first batch", 5*time.Second, func() bool { return w.attempts.Load() == 1 })
	b.Write(flows(4 * cfg.BatchRows)) // 1 queued, 3 to the spill queue
	close(w.spillBlock)
	close(w.block)
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := w.spilledRows(SpillBackpressure); got != 3*100 {
		t.Errorf("spilled %d rows, want 300", got)
	}
	if got := w.total(); got != 2*100 {
		t.Errorf("inserted %d rows, want 200", got)
	}
}

// The queues are bounded by the bytes their batches hold, not by a count:
// with the database and the spool both stuck, batches of every size (full
// ones, and small ones flushed early) fill each queue up to its bound and
// not past it, every flow is inserted, spilled or counted as dropped, and
// the gauges say what is held.
func TestBatcherQueuesAreBoundedInBytes(t *testing.T) {
	w := &spillWriter{fakeWriter: fakeWriter{block: make(chan struct{})}, spillBlock: make(chan struct{})}
	cfg := testConfig()
	cfg.Writers = 1
	mem := MemoryBounds{Queue: 400 << 10, Spill: 200 << 10}
	b, _ := newBoundedBatcher(t, cfg, w, mem)
	b.Start(context.Background())
	written := 0
	for i := range 200 {
		n := cfg.BatchRows
		if i%3 == 0 {
			n = 7 // a small batch, flushed early
		}
		b.Write(flows(n))
		if n < cfg.BatchRows {
			b.Flush()
		}
		written += n
		if q, s := b.queued.Load(), b.spilling.Load(); q > mem.Queue || s > mem.Spill {
			t.Fatalf("after %d batches: %d bytes queued (bound %d), %d waiting for the spool (bound %d)", i+1, q, mem.Queue, s, mem.Spill)
		}
	}
	if got := testutil.ToFloat64(b.m.queueBytes); got < float64(mem.Queue)/2 {
		t.Errorf("flowhouse_store_queue_bytes = %v: the queue did not fill toward its %d bytes", got, mem.Queue)
	}
	if got := testutil.ToFloat64(b.m.spillBytes); got < float64(mem.Spill)/2 {
		t.Errorf("flowhouse_store_spill_queue_bytes = %v: the spill queue did not fill toward its %d bytes", got, mem.Spill)
	}
	dropped := testutil.ToFloat64(b.m.rowsDropped.WithLabelValues(DropSpillQueueFull))
	if dropped == 0 {
		t.Error("nothing dropped as spill_queue_full with both queues stuck")
	}
	close(w.spillBlock)
	close(w.block)
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := w.total() + w.spilledRows(SpillBackpressure) + int(dropped); got != written {
		t.Errorf("inserted %d + spilled %d + dropped %v = %d, want the %d written", w.total(), w.spilledRows(SpillBackpressure), dropped, got, written)
	}
	if q, s := b.queued.Load(), b.spilling.Load(); q != 0 || s != 0 {
		t.Errorf("after Stop %d bytes counted queued, %d spilling: every batch must give back what it took", q, s)
	}
}
