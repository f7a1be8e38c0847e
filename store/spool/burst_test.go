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
	addr, database := chtest.Database(t)
	ctx := context.Background()
	cfg := store.DefaultConfig()
	cfg.Addr, cfg.Database = addr, database
	direct, err := store.OpenServer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if _, err := migrations.Apply(ctx, direct, migrations.Options{Retention: cfg.Retention}); err != nil {
		t.Fatal(err)
	}

	link, err := slowlink.New(addr, 1<<20) // 1 MiB/s from flowhouse to the server
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	cfg.Addr = link.Addr()
	cfg.BatchRows, cfg.BatchInterval = 5000, 200*time.Millisecond
	cfg.MaxQueueBatches, cfg.MaxSpillBatches, cfg.Writers = 2, 4, 2
	cfg.InsertTimeout = 30 * time.Second
	slow, err := store.OpenServer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()

	// What the slowed server takes, in rows/s: a few batches inserted by
	// as many concurrent inserts as the batcher has writers.
	var sent uint64
	t0 := time.Now()
	errs := make(chan error, cfg.Writers)
	for w := range cfg.Writers {
		go func() {
			var err error
			for i := range 2 {
				seq := uint64((2*w + i) * cfg.BatchRows)
				if err = slow.InsertFlows(ctx, batchOf(burstFlows(seq, cfg.BatchRows))); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range cfg.Writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	sent = uint64(2 * cfg.Writers * cfg.BatchRows)
	capacity := float64(sent) / time.Since(t0).Seconds()
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
	b, err := store.New(cfg, store.Deps{Writer: sp, Registerer: reg})
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

	// The load: flows every 10 ms at the phase's rate, as the collector's
	// workers would write them.
	drive := func(rowsPerSec float64, d time.Duration) {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start, due := time.Now(), 0.0
		for now := range tick.C {
			if now.Sub(start) >= d {
				return
			}
			due += rowsPerSec * 0.01
			n := int(due)
			due -= float64(n)
			if n > 0 {
				b.Write(burstFlows(sent, n))
				sent += uint64(n)
			}
		}
	}
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
	metric := func(name string, labels ...string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var sum float64
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				match := true
				for i := 0; i+1 < len(labels); i += 2 {
					found := false
					for _, l := range m.GetLabel() {
						found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
					}
					match = match && found
				}
				if match {
					sum += m.GetCounter().GetValue()
				}
			}
		}
		return sum
	}
	if got := metric("flowhouse_store_rows_spilled_total"); got == 0 {
		t.Error("flowhouse_store_rows_spilled_total is 0: the burst never overflowed the insert queue")
	}
	if got := metric("flowhouse_spool_rows_spooled_total", "reason", store.SpillBackpressure); got == 0 {
		t.Error(`flowhouse_spool_rows_spooled_total{reason="backpressure"} is 0`)
	}
	for _, name := range []string{"flowhouse_store_rows_dropped_total", "flowhouse_spool_rows_dropped_total"} {
		if got := metric(name); got != 0 {
			t.Errorf("%s = %v, want 0", name, got)
		}
	}
	t.Logf("spilled %v rows for backpressure, %v because an insert failed; replayed %v segments, %v live batches, replay yielded %v times",
		metric("flowhouse_spool_rows_spooled_total", "reason", store.SpillBackpressure),
		metric("flowhouse_spool_rows_spooled_total", "reason", SpillDatabaseDown),
		metric("flowhouse_spool_segments_replayed_total"), metric("flowhouse_spool_batches_direct_total"),
		metric("flowhouse_spool_replay_yields_total"))
}
