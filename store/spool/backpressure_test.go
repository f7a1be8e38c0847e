package spool

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/store"
)

// heldDB holds the inserts of batches whose first flow has Packets ==
// hold until release is closed; the others go in at once. It counts
// what it stored per batch number (Packets).
type heldDB struct {
	hold    uint64
	release chan struct{}
	mu      sync.Mutex
	rows    map[uint64]int
	inserts int
}

func (d *heldDB) InsertFlows(ctx context.Context, b *store.FlowBatch) error {
	if b.Len() > 0 && b.Flow(0).Packets == d.hold {
		select {
		case <-d.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rows == nil {
		d.rows = map[uint64]int{}
	}
	for i := range b.Len() {
		d.rows[b.Flow(i).Packets]++
	}
	d.inserts++
	return nil
}

func (d *heldDB) stored(batch uint64) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rows[batch]
}

// While a live insert is in the database, segments are replayed at
// replay_share of the inserts (share 0.25: one replay per three live
// inserts that ended); once no live insert runs, the rest replays freely.
func TestReplayYieldsToLiveInserts(t *testing.T) {
	db := &heldDB{hold: 100, release: make(chan struct{})}
	cfg := testConfig(t, t.TempDir())
	cfg.ReplayShare = 0.25
	cfg.ReplayTimeout = 10 * time.Second
	s := startSpool(t, cfg, db, nil)
	ctx := context.Background()

	// A live insert that stays in the database, then segments spilled by
	// backpressure behind it.
	held := make(chan error, 1)
	go func() { held <- s.InsertFlows(ctx, numbered(100, 10)) }()
	testkit.Eventually(t, "the held insert to run", 5*time.Second, func() bool { return s.live.Load() == 1 })
	const segs = 5
	for i := range segs {
		if err := s.Spill(numbered(1+i, 10), store.SpillBackpressure); err != nil {
			t.Fatal(err)
		}
	}
	replayed := func() float64 { return testutil.ToFloat64(s.m.segmentsReplayed) }
	yields := func() float64 { return testutil.ToFloat64(s.m.replayYields) }
	testkit.Eventually(t, "the replay loop to yield", 5*time.Second, func() bool { return yields() > 0 })
	if got := replayed(); got != 0 {
		t.Fatalf("replayed %v segments with a live insert running and no credit", got)
	}
	for round := 1; round <= 2; round++ {
		for i := range 3 {
			if err := s.InsertFlows(ctx, numbered(200+3*round+i, 10)); err != nil {
				t.Fatal(err)
			}
			// Credit for a replay comes with the third live insert, not
			// before: a replay now would be one without credit.
			if got := replayed(); i < 2 && got != float64(round-1) {
				t.Fatalf("round %d, after %d live inserts: %v segments replayed, want %d", round, i+1, got, round-1)
			}
		}
		if !testkit.Within(5*time.Second, func() bool { return replayed() == float64(round) }) {
			t.Fatalf("round %d: %v segments replayed after %d live inserts, want %d", round, replayed(), 3*round, round)
		}
	}
	if got := replayed(); got != 2 {
		t.Fatalf("%v segments replayed after 6 live inserts, want 2", got)
	}
	// The oldest first.
	for i := range 2 {
		if db.stored(uint64(1+i)) != 10 {
			t.Errorf("segment %d not replayed first", 1+i)
		}
	}
	close(db.release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the rest to replay with no live insert", 5*time.Second, func() bool { return s.Stats().PendingSegments == 0 })
	for i := range segs {
		if got := db.stored(uint64(1 + i)); got != 10 {
			t.Errorf("batch %d: %d rows stored, want 10 (once)", 1+i, got)
		}
	}
	if got := testutil.ToFloat64(s.m.rowsSpooled.WithLabelValues(store.SpillBackpressure)); got != segs*10 {
		t.Errorf("rows_spooled_total{reason=backpressure} = %v, want %d", got, segs*10)
	}
	if got := testutil.ToFloat64(s.m.rowsSpooled.WithLabelValues(SpillDatabaseDown)); got != 0 {
		t.Errorf("rows_spooled_total{reason=database_down} = %v, want 0: the database was never down", got)
	}
	if !s.Stats().DatabaseUp {
		t.Error("a slow database was marked down")
	}
}

func TestReplayShareValidate(t *testing.T) {
	for _, share := range []float64{0, -0.5, 1.5} {
		cfg := DefaultConfig()
		cfg.ReplayShare = share
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "replay_share") {
			t.Errorf("replay_share %v: %v, want an error naming replay_share", share, err)
		}
	}
	cfg := DefaultConfig()
	cfg.ReplayShare = 1
	if err := cfg.Validate(); err != nil {
		t.Errorf("replay_share 1: %v", err)
	}
}

// The batcher in front of the spool in front of a database that holds
// every insert: the insert queue overflows into the spool until it is
// full, then flows are dropped as spool_full; nothing is lost uncounted,
// and once the database takes inserts again everything spilled is
// inserted exactly once.
func TestBatcherOverflowThroughSpool(t *testing.T) {
	db := &heldDB{hold: 0, release: make(chan struct{})} // holds batch 0
	cfg := testConfig(t, t.TempDir())
	cfg.MaxBytes = 1 << 20
	cfg.ReplayTimeout = 10 * time.Second
	s := startSpool(t, cfg, db, nil)
	ctx := context.Background()
	bcfg := store.DefaultConfig()
	bcfg.BatchRows, bcfg.BatchInterval = 1000, time.Hour
	bcfg.Writers = 1
	// The held batch and one queued fill the insert queue; the rest
	// overflow.
	batch := store.NewFlowBatch(bcfg.BatchRows).MemBytes()
	b, err := store.New(bcfg, store.Deps{Writer: s, Memory: store.MemoryBounds{Queue: 2*batch + batch/2, Spill: 1 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Batch n's flows carry Packets n; batch 0 is held in the database.
	const batches = 40
	r := rand.New(rand.NewPCG(3, 4))
	for n := range batches {
		fs := make([]flow.Flow, bcfg.BatchRows)
		for i := range fs {
			// Random addresses: segments are compressed, and rows that
			// compress to nothing would never fill the spool.
			fs[i] = flow.Flow{Packets: uint64(n), Bytes: uint64(i), Tenant: "t", TimeReceivedMs: 1e12,
				SrcAddr: flow.Addr(randomBytes16(r)), DstAddr: flow.Addr(randomBytes16(r))}
		}
		b.Write(fs)
		if n == 0 {
			testkit.Eventually(t, "batch 0 in the database", 5*time.Second, func() bool { return s.live.Load() == 1 })
		}
	}
	dropped := func() float64 { return testutil.ToFloat64(s.m.rowsDropped.WithLabelValues(DropSpoolFull)) }
	spooled := func() float64 { return testutil.ToFloat64(s.m.rowsSpooled.WithLabelValues(store.SpillBackpressure)) }
	// 1 in the database, 1 queued, 38 overflowing: spooled or dropped.
	testkit.Eventually(t, "every overflowing batch spooled or dropped", 10*time.Second, func() bool {
		return spooled()+dropped() == (batches-2)*float64(bcfg.BatchRows)
	})
	if dropped() == 0 || spooled() == 0 {
		t.Fatalf("spooled %v, dropped %v: want both with a 1 MiB spool", spooled(), dropped())
	}
	if st := s.Stats(); st.PendingBytes > cfg.MaxBytes {
		t.Errorf("spool holds %d bytes, max_bytes %d", st.PendingBytes, cfg.MaxBytes)
	}
	close(db.release)
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the spool to drain", 10*time.Second, func() bool { return s.Stats().PendingSegments == 0 })
	var stored, lost int
	for n := range batches {
		switch got := db.stored(uint64(n)); got {
		case bcfg.BatchRows:
			stored += got
		case 0:
			lost += bcfg.BatchRows
		default:
			t.Errorf("batch %d: %d rows stored, want all or none", n, got)
		}
	}
	if float64(lost) != dropped() {
		t.Errorf("%d rows missing from the database, %v counted as spool_full", lost, dropped())
	}
	if float64(stored) != 2*float64(bcfg.BatchRows)+spooled() {
		t.Errorf("%d rows stored, want the 2 live batches and the %v spooled", stored, spooled())
	}
}

func randomBytes16(r *rand.Rand) (b [16]byte) {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
