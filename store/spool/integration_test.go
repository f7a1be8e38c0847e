package spool

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/store"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// On a real server: batches go in, and the deduplication token really
// reaches the server (18.16 does not know the setting and says so, which
// is why the wiring only enables it from 22.2 on).
func TestServerInsertAndDedupToken(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a ClickHouse server")
	}
	addr, database := chtest.Database(t)
	cfg := store.DefaultConfig()
	cfg.Addr, cfg.Database = addr, database
	ctx := context.Background()
	db, err := store.OpenServer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention}); err != nil {
		t.Fatal(err)
	}
	caps, err := store.DetectCapabilities(ctx, db)
	if err != nil {
		t.Fatal(err)
	}

	s, err := New(testConfig(t, t.TempDir()), Deps{Next: db})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if err := s.InsertFlows(ctx, numbered(1, 1000)); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := store.QueryRow(ctx, db, []any{&n}, "SELECT count() FROM flows"); err != nil || n != 1000 {
		t.Fatalf("count %d, %v", n, err)
	}

	withToken, err := New(testConfig(t, t.TempDir()), Deps{Next: db, DedupToken: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := withToken.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer withToken.Stop()
	if err := withToken.InsertFlows(ctx, numbered(2, 10)); err != nil {
		t.Fatal(err)
	}
	if SupportsDedupToken(caps.Version) {
		t.Skipf("server %s knows the setting", caps.Version)
	}
	err = withToken.Ready(ctx)
	if err == nil || !strings.Contains(err.Error(), "insert_deduplication_token") {
		t.Errorf("server %s: Ready = %v, want the unknown setting quarantined", caps.Version, err)
	}
}

// gate fails every insert while closed, then passes them to the server.
type gate struct {
	next store.Writer
	open atomic.Bool
}

func (g *gate) InsertFlows(ctx context.Context, b *store.FlowBatch) error {
	if !g.open.Load() {
		return errRefused
	}
	return g.next.InsertFlows(ctx, b)
}

func (g *gate) Ping(ctx context.Context) error {
	if !g.open.Load() {
		return errRefused
	}
	return nil
}

// TestReplayRate measures replay into the test server (logged, not
// asserted: it depends on the machine).
func TestReplayRate(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a ClickHouse server")
	}
	addr, database := chtest.Database(t)
	cfg := store.DefaultConfig()
	cfg.Addr, cfg.Database = addr, database
	ctx := context.Background()
	db, err := store.OpenServer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention}); err != nil {
		t.Fatal(err)
	}
	g := &gate{next: db}
	scfg := testConfig(t, t.TempDir())
	scfg.Fsync = true
	scfg.ReplayTimeout = 30 * time.Second // a 50k-row insert takes over 1s under -race
	s, err := New(scfg, Deps{Next: g})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	const batches, rows = 4, 50000
	// Benchmark rows made valid for the table (enum values, times).
	in := benchBatch(rows)
	flows := make([]flow.Flow, rows)
	for i := range flows {
		f := in.Flow(i)
		f.Protocol, f.Direction = flow.ProtoIPFIX, flow.DirIngress
		f.TimeReceivedMs, f.TimeStartMs, f.TimeEndMs = 1.7e12, 1.7e12-1000, 1.7e12
		flows[i] = f
	}
	b := batchOf(flows)
	t0 := time.Now()
	for range batches {
		if err := s.InsertFlows(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	spoolTime := time.Since(t0)
	t0 = time.Now()
	g.open.Store(true)
	if !testkit.Within(2*time.Minute, func() bool { return s.Stats().PendingSegments == 0 }) {
		t.Fatalf("replay not done in 2 minutes: %+v", s.Stats())
	}
	replayTime := time.Since(t0)
	var n uint64
	if err := store.QueryRow(ctx, db, []any{&n}, "SELECT count() FROM flows"); err != nil || n != batches*rows {
		t.Fatalf("count %d, %v; spool %+v", n, err, s.Stats())
	}
	t1 := time.Now()
	if err := db.InsertFlows(ctx, b); err != nil {
		t.Fatal(err)
	}
	t.Logf("for comparison, one direct insert of the same %d rows: %s (%.0f rows/s)", rows, time.Since(t1).Round(time.Millisecond), rows/time.Since(t1).Seconds())
	t.Logf("spooled %d rows in %s (%.0f rows/s, fsync on), replayed them into ClickHouse %s in %s (%.0f rows/s)",
		batches*rows, spoolTime.Round(time.Millisecond), batches*rows/spoolTime.Seconds(),
		func() string { c, _ := store.DetectCapabilities(ctx, db); return c.Version }(),
		replayTime.Round(time.Millisecond), batches*rows/replayTime.Seconds())
}
