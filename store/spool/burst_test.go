package spool

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/internal/slowlink"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/store"
)

// burstFlows makes n valid flows numbered from seq on (Bytes), so the
// test can count what the database holds, and tell a loss from a
// duplicate.
func burstFlows(seq uint64, n int) []flow.Flow {
	now := time.Now().UnixMilli()
	fs := make([]flow.Flow, n)
	for i := range fs {
		fs[i] = flow.Flow{Protocol: flow.ProtoIPFIX, Direction: flow.DirIngress, Tenant: "t",
			TimeReceivedMs: now, TimeStartMs: now - 1000, TimeEndMs: now,
			Bytes: seq + uint64(i), Packets: 1, SrcPort: uint16(i), DstPort: 443}
	}
	return fs
}

// TestBurstOnSlowServer: a real ClickHouse server behind a link that
// takes inserts at a fraction of the input, the batcher and the spool in
// front of it, as `flowhouse serve` wires them. A burst at twice what the
// slowed server takes, then normal load at half of it: every flow ends
// in the database once, the overflow went through the spool (spilled
// for backpressure, not for an outage), and the spool is empty after.
func TestBurstOnSlowServer(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a ClickHouse server")
	}
	ctx := context.Background()
	cfg, direct, slow := slowServer(t)
	// What the slowed server takes, in rows/s.
	capacity := measureCapacity(t, slow, cfg.Writers, cfg.BatchRows)
	sent := uint64(2 * cfg.Writers * cfg.BatchRows)
	t.Logf("the slowed server takes about %.0f rows/s", capacity)

	reg := prometheus.NewRegistry()
	scfg := testConfig(t, t.TempDir())
	scfg.MaxBytes = 512 << 20
	scfg.ReplayTimeout = 30 * time.Second
	sp, err := New(scfg, Deps{Next: slow, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sp.Stop()
	// Room for a batch in each writer and two queued, and four waiting
	// for the spool: a small bound, so that the burst spills.
	batch := store.NewFlowBatch(cfg.BatchRows).MemBytes()
	b, err := store.New(cfg, store.Deps{Writer: sp, Registerer: reg, Memory: store.MemoryBounds{Queue: 4 * batch, Spill: 4 * batch}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			b.Stop()
		}
	}()

	drive := func(rowsPerSec float64, d time.Duration) { sent = drive(b, sent, rowsPerSec, d) }
	drive(2*capacity, 10*time.Second)
	burstSpilled := testutil.ToFloat64(sp.m.rowsSpooled.WithLabelValues(store.SpillBackpressure))
	drive(capacity/2, 10*time.Second)
	t.Logf("sent %d rows; %v spilled during the burst", sent, burstSpilled)

	testkit.Eventually(t, "the spool to drain", 50*time.Second, func() bool { return sp.Stats().PendingSegments == 0 })
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	testkit.Eventually(t, "the spool to drain after the batcher's last batches", 30*time.Second, func() bool { return sp.Stats().PendingSegments == 0 })

	var count, distinct uint64
	if err := store.QueryRow(ctx, direct, []any{&count, &distinct}, "SELECT count(), uniqExact(bytes) FROM flows"); err != nil {
		t.Fatal(err)
	}
	if count != sent || distinct != sent {
		t.Errorf("the database holds %d rows (%d distinct), want the %d sent, once each", count, distinct, sent)
	}
	metric := func(name string) float64 { return gathered(t, reg, name) }
	spooled := func(reason string) float64 { return testutil.ToFloat64(sp.m.rowsSpooled.WithLabelValues(reason)) }
	if got := metric("flowhouse_store_rows_spilled_total"); got == 0 {
		t.Error("flowhouse_store_rows_spilled_total is 0: the burst never overflowed the insert queue")
	}
	if got := spooled(store.SpillBackpressure); got == 0 {
		t.Error(`flowhouse_spool_rows_spooled_total{reason="backpressure"} is 0`)
	}
	for _, name := range []string{"flowhouse_store_rows_dropped_total", "flowhouse_spool_rows_dropped_total"} {
		if got := metric(name); got != 0 {
			t.Errorf("%s = %v, want 0", name, got)
		}
	}
	t.Logf("spilled %v rows for backpressure, %v because an insert failed; replayed %v segments, %v live batches, replay yielded %v times",
		spooled(store.SpillBackpressure), spooled(SpillDatabaseDown),
		metric("flowhouse_spool_segments_replayed_total"), metric("flowhouse_spool_batches_direct_total"),
		metric("flowhouse_spool_replay_yields_total"))
}

// measureCapacity inserts 2 batches of rows per writer, as many at once
// as the batcher has writers, numbered 0 on, and returns the rows/s.
func measureCapacity(t *testing.T, db store.Writer, writers, rows int) float64 {
	t.Helper()
	t0 := time.Now()
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			var err error
			for i := range 2 {
				seq := uint64((2*w + i) * rows)
				if err = db.InsertFlows(context.Background(), batchOf(burstFlows(seq, rows))); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	return float64(2*writers*rows) / time.Since(t0).Seconds()
}

// gathered sums the counters of name in reg, every label.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// slowServer is a fresh database with the flows table on the test's
// ClickHouse server: direct is a connection to it, slow one through a
// link passing 1 MiB/s from the client to the server; cfg is slow's,
// with small batches so that the test takes seconds.
func slowServer(t *testing.T) (cfg store.Config, direct, slow *store.Server) {
	t.Helper()
	ctx := context.Background()
	addr, database := chtest.Database(t)
	cfg = store.DefaultConfig()
	cfg.Addr, cfg.Database = addr, database
	direct, err := store.OpenServer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close() })
	if _, err := migrations.Apply(ctx, direct, migrations.Options{Retention: cfg.Retention}); err != nil {
		t.Fatal(err)
	}
	link, err := slowlink.New(addr, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { link.Close() })
	cfg.Addr = link.Addr()
	cfg.BatchRows, cfg.BatchInterval = 5000, 200*time.Millisecond
	cfg.Writers = 2
	cfg.InsertTimeout = 30 * time.Second
	slow, err = store.OpenServer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slow.Close() })
	return cfg, direct, slow
}

// drive writes flows numbered from seq on into b every 10 ms at
// rowsPerSec for d, as the collector's workers would, and returns the
// next number.
func drive(b *store.Batcher, seq uint64, rowsPerSec float64, d time.Duration) uint64 {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start, due := time.Now(), 0.0
	for now := range tick.C {
		if now.Sub(start) >= d {
			return seq
		}
		due += rowsPerSec * 0.01
		n := int(due)
		due -= float64(n)
		if n > 0 {
			b.Write(burstFlows(seq, n))
			seq += uint64(n)
		}
	}
	return seq
}
