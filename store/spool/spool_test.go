package spool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/flowtest"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/store"
)

// randomFlows fills every field of flow.Flow, so a field added to
// flow.Flow (and to the batch) but not to the segment format fails the
// round trip.
func randomFlows(r *rand.Rand, n int, distinct int) []flow.Flow {
	return flowtest.Random(r, n, distinct)
}

func batchOf(flows []flow.Flow) *store.FlowBatch {
	b := store.NewFlowBatch(len(flows))
	b.Append(flows)
	return b
}

func rowsOf(b *store.FlowBatch) []flow.Flow {
	out := make([]flow.Flow, b.Len())
	for i := range out {
		out[i] = b.Flow(i)
	}
	return out
}

// Every field comes back from a segment of the current format
// (compressed; the biggest case spans several 1 MiB compressed blocks)
// and from one of format 2, which an older flowhouse left in the spool.
func TestSegmentRoundTripEveryField(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		rows, distinct int // distinct strings per column: 1-, 2- and 4-byte indexes
		format         uint16
	}{{1, 1, 3}, {1000, 3, 3}, {5000, 1000, 3}, {70000, 1 << 24, 3}, {1000, 3, 2}, {70000, 1 << 24, 2}} {
		t.Run(fmt.Sprintf("format %d %d rows %d strings", tc.format, tc.rows, tc.distinct), func(t *testing.T) {
			in := batchOf(randomFlows(r, tc.rows, tc.distinct))
			id := [16]byte{1, 2, 3}
			data := newEncoder().encodeInput(in.Input(), in.Len(), id, 42, tc.format)
			if raw := newEncoder().encodeInput(in.Input(), in.Len(), id, 42, formatRaw); tc.format == formatVersion && tc.rows >= 5000 && len(data) >= len(raw) {
				t.Errorf("compressed segment of %d bytes, raw %d", len(data), len(raw))
			}
			out := store.NewFlowBatch(0)
			var d decoder
			h, err := d.decode(data, out)
			if err != nil {
				t.Fatal(err)
			}
			if h.id != id || h.createdNs != 42 || h.rows != tc.rows || h.version != int(tc.format) {
				t.Errorf("header %+v", h)
			}
			want, got := rowsOf(in), rowsOf(out)
			if len(got) != len(want) {
				t.Fatalf("%d rows back, want %d", len(got), len(want))
			}
			for i := range want {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Fatalf("row %d:\n got %+v\nwant %+v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestSegmentCorruptionDetected(t *testing.T) {
	in := batchOf(randomFlows(rand.New(rand.NewPCG(3, 4)), 100, 5))
	good := newEncoder().encode(in, [16]byte{}, 0)
	var d decoder
	for i := range good {
		bad := append([]byte(nil), good...)
		bad[i] ^= 0x10
		if _, err := d.decode(bad, store.NewFlowBatch(0)); !errors.Is(err, errCorrupt) {
			t.Fatalf("byte %d flipped: err %v, want corrupt", i, err)
		}
	}
	for _, n := range []int{0, 10, headerSize, len(good) - 1} {
		if _, err := d.decode(good[:n], store.NewFlowBatch(0)); !errors.Is(err, errCorrupt) {
			t.Fatalf("truncated to %d: err %v, want corrupt", n, err)
		}
	}
}

// fakeDB is a Next whose answer the test sets, recording what it inserted.
type fakeDB struct {
	mu      sync.Mutex
	fail    error
	failFor func(b *store.FlowBatch) error
	batches [][]flow.Flow
	calls   int
	tokens  []string
}

func (f *fakeDB) InsertFlows(ctx context.Context, b *store.FlowBatch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		return f.fail
	}
	if f.failFor != nil {
		if err := f.failFor(b); err != nil {
			return err
		}
	}
	f.batches = append(f.batches, rowsOf(b))
	return nil
}

func (f *fakeDB) Ping(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail
}

func (f *fakeDB) set(err error) {
	f.mu.Lock()
	f.fail = err
	f.mu.Unlock()
}

func (f *fakeDB) rows() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, b := range f.batches {
		n += len(b)
	}
	return n
}

var errRefused = fmt.Errorf("dial tcp 127.0.0.1:9000: %w", syscall.ECONNREFUSED)

func testConfig(t *testing.T, dir string) Config {
	cfg := DefaultConfig()
	cfg.Dir = dir
	cfg.Probe = ProbeConfig{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	cfg.ReplayTimeout = time.Second
	cfg.Fsync = false
	return cfg
}

func startSpool(t *testing.T, cfg Config, db store.Writer, reg prometheus.Registerer) *Spool {
	t.Helper()
	s, err := New(cfg, Deps{Next: db, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// numbered makes a batch whose flows carry seq in SrcPort/Packets.
func numbered(batch, rows int) *store.FlowBatch {
	flows := make([]flow.Flow, rows)
	for i := range flows {
		flows[i] = flow.Flow{Packets: uint64(batch), Bytes: uint64(i), Tenant: "t", TimeReceivedMs: 1e12}
	}
	return batchOf(flows)
}

func TestOutageSpoolsAndReplaysInOrder(t *testing.T) {
	db := &fakeDB{}
	reg := prometheus.NewRegistry()
	s := startSpool(t, testConfig(t, t.TempDir()), db, reg)
	ctx := context.Background()

	if err := s.InsertFlows(ctx, numbered(0, 10)); err != nil {
		t.Fatal(err)
	}
	db.set(errRefused)
	for i := 1; i <= 20; i++ {
		if err := s.InsertFlows(ctx, numbered(i, 10)); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.DatabaseUp || st.PendingSegments == 0 {
		t.Fatalf("after failures: %+v", st)
	}
	db.set(nil)
	testkit.Eventually(t, "replay", 10*time.Second, func() bool { return s.Stats().PendingSegments == 0 && db.rows() == 210 })
	// Batches spooled are replayed in the order they were spooled.
	db.mu.Lock()
	var order []uint64
	for _, b := range db.batches {
		order = append(order, b[0].Packets)
	}
	db.mu.Unlock()
	for i := 1; i < len(order); i++ {
		if order[i] < order[i-1] {
			t.Fatalf("replay order %v", order)
		}
	}
	if got := testutil.ToFloat64(s.m.rowsSpooled.WithLabelValues(SpillDatabaseDown)); got != 200 {
		t.Errorf("rows spooled %v, want 200", got)
	}
	if got := testutil.ToFloat64(s.m.rowsReplayed); got != 200 {
		t.Errorf("rows replayed %v, want 200", got)
	}
	if !s.Stats().DatabaseUp {
		t.Error("database still down after replay")
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n == 0 {
		t.Errorf("metrics: %d, %v", n, err)
	}
}

func TestRestartReplays(t *testing.T) {
	dir := t.TempDir()
	db := &fakeDB{fail: errRefused}
	s1 := startSpool(t, testConfig(t, dir), db, nil)
	for i := range 5 {
		if err := s1.InsertFlows(context.Background(), numbered(i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s1.Stop(); err != nil {
		t.Fatal(err)
	}
	// A write that never finished is not replayed.
	os.WriteFile(filepath.Join(dir, segName(999)+tmpSuffix), []byte("partial"), 0o600)

	db2 := &fakeDB{}
	s2 := startSpool(t, testConfig(t, dir), db2, nil)
	testkit.Eventually(t, "replay after restart", 10*time.Second, func() bool { return db2.rows() == 500 && s2.Stats().PendingSegments == 0 })
	for i, b := range db2.batches {
		if len(b) != 100 || b[0].Packets != uint64(i) {
			t.Fatalf("batch %d: %d rows, first %+v", i, len(b), b[0])
		}
	}
	if _, err := os.Stat(filepath.Join(dir, segName(999)+tmpSuffix)); !errors.Is(err, os.ErrNotExist) {
		t.Error("temporary file left behind")
	}
}

func TestTwoProcessesCannotShareADir(t *testing.T) {
	dir := t.TempDir()
	startSpool(t, testConfig(t, dir), &fakeDB{}, nil)
	s2, err := New(testConfig(t, dir), Deps{Next: &fakeDB{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second Start: %v", err)
	}
}

func TestCorruptSegmentsAreQuarantined(t *testing.T) {
	dir := t.TempDir()
	db := &fakeDB{fail: errRefused}
	s1 := startSpool(t, testConfig(t, dir), db, nil)
	for i := range 4 {
		if err := s1.InsertFlows(context.Background(), numbered(i, 50)); err != nil {
			t.Fatal(err)
		}
	}
	s1.Stop()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 4 {
		t.Fatalf("%d segments", len(segs))
	}
	// Payload bit flip, header bit flip, truncation; the last stays good.
	for i, damage := range []func([]byte) []byte{
		func(b []byte) []byte { b[len(b)-3] ^= 1; return b },
		func(b []byte) []byte { b[20] ^= 1; return b },
		func(b []byte) []byte { return b[:len(b)/2] },
	} {
		b, _ := os.ReadFile(segs[i])
		os.WriteFile(segs[i], damage(b), 0o600)
	}
	db2 := &fakeDB{}
	reg := prometheus.NewRegistry()
	s2 := startSpool(t, testConfig(t, dir), db2, reg)
	testkit.Eventually(t, "replay", 10*time.Second, func() bool { return s2.Stats().PendingSegments == 0 })
	if db2.rows() != 50 || db2.batches[0][0].Packets != 3 {
		t.Errorf("replayed %d rows, want only the good segment's 50", db2.rows())
	}
	if got := testutil.ToFloat64(s2.m.segmentsQuarantined.WithLabelValues(QuarantineCorrupt)); got != 3 {
		t.Errorf("corrupt segments counted %v, want 3", got)
	}
	// The payload flip keeps a readable header: its rows are counted.
	if got := testutil.ToFloat64(s2.m.rowsQuarantined.WithLabelValues(QuarantineCorrupt)); got < 50 {
		t.Errorf("corrupt rows counted %v, want at least 50", got)
	}
	q, _ := filepath.Glob(filepath.Join(dir, "quarantine", "*.seg"))
	e, _ := filepath.Glob(filepath.Join(dir, "quarantine", "*.seg.error"))
	if len(q) != 3 || len(e) != 3 {
		t.Errorf("quarantine holds %d segments and %d error files, want 3 and 3", len(q), len(e))
	}
	if st := s2.Stats(); st.QuarantinedSegments != 3 || st.QuarantineBytes == 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestSpoolFullDropsAndStaysFlat(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.MaxBytes = 1 << 20
	db := &fakeDB{fail: errRefused}
	reg := prometheus.NewRegistry()
	s := startSpool(t, cfg, db, reg)
	b := batchOf(randomFlows(rand.New(rand.NewPCG(5, 6)), 2000, 10)) // ~ 300 kB a segment
	var heap []uint64
	for i := range 300 {
		if err := s.InsertFlows(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			heap = append(heap, ms.HeapAlloc)
		}
	}
	st := s.Stats()
	if st.PendingBytes > cfg.MaxBytes || st.PendingSegments == 0 {
		t.Fatalf("stats %+v with max_bytes %d", st, cfg.MaxBytes)
	}
	spooled := testutil.ToFloat64(s.m.rowsSpooled.WithLabelValues(SpillDatabaseDown))
	dropped := testutil.ToFloat64(s.m.rowsDropped.WithLabelValues(DropSpoolFull))
	if spooled+dropped != 300*2000 || dropped == 0 {
		t.Errorf("spooled %v + dropped %v, want %d with drops", spooled, dropped, 300*2000)
	}
	if err := s.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "spool.max_bytes") {
		t.Errorf("Ready = %v, want the spool-full error", err)
	}
	// Memory does not grow with the batches dropped.
	if last, first := heap[len(heap)-1], heap[0]; last > first+8<<20 {
		t.Errorf("heap grew from %d to %d bytes while dropping", first, last)
	}
	// The database comes back: everything kept is replayed, readiness recovers.
	db.set(nil)
	testkit.Eventually(t, "replay", 10*time.Second, func() bool { return s.Stats().PendingSegments == 0 })
	if got := db.rows(); float64(got) != spooled {
		t.Errorf("replayed %d rows, spooled %v", got, spooled)
	}
	if err := s.Ready(context.Background()); err != nil {
		t.Errorf("Ready after replay: %v", err)
	}
}

func TestRejectedBatchIsQuarantinedAndReadinessSaysWhy(t *testing.T) {
	dir := t.TempDir()
	db := &fakeDB{fail: fmt.Errorf("insert 10 rows into flows: %w", &clickhouse.Exception{Code: 53, Name: "DB::Exception", Message: "Type mismatch"})}
	s := startSpool(t, testConfig(t, dir), db, nil)
	if err := s.InsertFlows(context.Background(), numbered(1, 10)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.PendingSegments != 0 || st.QuarantinedSegments != 1 || !st.DatabaseUp {
		t.Errorf("stats %+v: want the batch quarantined, not spooled", st)
	}
	err := s.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "flowhouse migrate") || !strings.Contains(err.Error(), "Type mismatch") {
		t.Errorf("Ready = %v", err)
	}
	if got := testutil.ToFloat64(s.m.rowsQuarantined.WithLabelValues(QuarantineRejected)); got != 10 {
		t.Errorf("rejected rows %v", got)
	}
	msg, _ := os.ReadFile(filepath.Join(dir, "quarantine", segName(0)+errSuffix))
	if !strings.Contains(string(msg), "Type mismatch") {
		t.Errorf("error file says %q", msg)
	}
	// The quarantined segment decodes: an operator can replay it.
	data, _ := os.ReadFile(filepath.Join(dir, "quarantine", segName(0)))
	var d decoder
	if h, err := d.decode(data, store.NewFlowBatch(0)); err != nil || h.rows != 10 {
		t.Errorf("quarantined segment: %v, %d rows", err, h.rows)
	}
	db.set(nil)
	if err := s.InsertFlows(context.Background(), numbered(2, 10)); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(context.Background()); err != nil {
		t.Errorf("Ready after a successful insert: %v", err)
	}
}

func TestRejectedDuringReplayIsQuarantined(t *testing.T) {
	db := &fakeDB{fail: errRefused}
	s := startSpool(t, testConfig(t, t.TempDir()), db, nil)
	for i := range 3 {
		s.InsertFlows(context.Background(), numbered(i, 10))
	}
	db.mu.Lock()
	db.fail = nil
	db.failFor = func(b *store.FlowBatch) error {
		if b.Flow(0).Packets == 1 {
			return &clickhouse.Exception{Code: 16, Message: "No such column"}
		}
		return nil
	}
	db.mu.Unlock()
	testkit.Eventually(t, "replay", 10*time.Second, func() bool { return s.Stats().PendingSegments == 0 })
	if db.rows() != 20 || s.Stats().QuarantinedSegments != 1 {
		t.Errorf("%d rows replayed, %d quarantined", db.rows(), s.Stats().QuarantinedSegments)
	}
}

func TestUnavailableIsSpooledWithReadiness(t *testing.T) {
	db := &fakeDB{fail: &clickhouse.Exception{Code: 516, Message: "Authentication failed"}}
	s := startSpool(t, testConfig(t, t.TempDir()), db, nil)
	s.InsertFlows(context.Background(), numbered(1, 10))
	if st := s.Stats(); st.PendingSegments != 1 || st.QuarantinedSegments != 0 {
		t.Errorf("stats %+v: want spooled", st)
	}
	if err := s.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "clickhouse.password") {
		t.Errorf("Ready = %v", err)
	}
	db.set(nil)
	testkit.Eventually(t, "replay", 10*time.Second, func() bool { return db.rows() == 10 })
}

func TestTimeoutAtShutdownIsSpooled(t *testing.T) {
	// An insert cut by the caller's deadline (the batcher stopping) goes
	// to disk, not to the quarantine.
	db := &fakeDB{}
	s := startSpool(t, testConfig(t, t.TempDir()), db, nil)
	db.set(errors.New("unrecognised failure"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.InsertFlows(ctx, numbered(1, 10)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.PendingSegments != 1 || st.QuarantinedSegments != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestSpill(t *testing.T) {
	db := &fakeDB{}
	s := startSpool(t, testConfig(t, t.TempDir()), db, nil)
	s.m.rowsDirect.Add(0)
	if err := s.Spill(numbered(1, 7), store.DropShutdown); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "replay", 10*time.Second, func() bool { return db.rows() == 7 })
	if db.calls != 1 {
		t.Errorf("%d inserts", db.calls)
	}
}

func TestStoppedSpoolRefuses(t *testing.T) {
	s := startSpool(t, testConfig(t, t.TempDir()), &fakeDB{}, nil)
	s.Stop()
	if err := s.InsertFlows(context.Background(), numbered(1, 1)); err == nil {
		t.Error("insert after Stop succeeded")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.Dir, c.MaxBytes, c.Probe.Initial, c.ReplayTimeout = "", 10, 0, 0
	err := c.Validate()
	for _, key := range []string{"dir:", "max_bytes:", "probe.initial:", "replay_timeout:"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate() = %v, want it to name %s", err, key)
		}
	}
	c.Enabled = false
	if c.Validate() != nil {
		t.Error("a disabled spool needs no valid settings")
	}
	if _, err := New(c, Deps{Next: &fakeDB{}}); err == nil {
		t.Error("New of a disabled spool succeeded")
	}
}

func TestSupportsDedupToken(t *testing.T) {
	for v, want := range map[string]bool{"18.16.1": false, "22.1.3.7": false, "22.2.1": true, "24.8.4.13": true, "x": false} {
		if SupportsDedupToken(v) != want {
			t.Errorf("SupportsDedupToken(%q) != %v", v, want)
		}
	}
}

type writerFunc func(ctx context.Context, b *store.FlowBatch) error

func (f writerFunc) InsertFlows(ctx context.Context, b *store.FlowBatch) error { return f(ctx, b) }

// TestReplayedSegmentThatCannotBeRemovedIsInsertedOnce: a segment whose
// file cannot be removed after its replay is not replayed again, so its
// rows are in the database once.
func TestReplayedSegmentThatCannotBeRemovedIsInsertedOnce(t *testing.T) {
	db := &fakeDB{}
	s, err := New(testConfig(t, t.TempDir()), Deps{Next: db, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	s.remove = func(string) error { return syscall.EACCES }
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	ctx := context.Background()
	db.set(errRefused)
	if err := s.InsertFlows(ctx, numbered(1, 10)); err != nil {
		t.Fatal(err)
	}
	db.set(nil)
	testkit.Eventually(t, "the segment replayed and forgotten", 10*time.Second, func() bool {
		return s.Stats().PendingSegments == 0 && s.Stats().DatabaseUp
	})
	if err := s.InsertFlows(ctx, numbered(2, 10)); err != nil {
		t.Fatal(err)
	}
	if got := db.rows(); got != 20 {
		t.Errorf("%d rows inserted, want 20: the segment was replayed %d times", got, (got-10)/10)
	}
}
