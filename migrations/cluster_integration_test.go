package migrations_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/chcluster"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/store"
)

func clusterStore(t *testing.T, c *chcluster.Cluster, node int, database string) (store.Config, store.DB) {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Addr, cfg.Database, cfg.Cluster = c.Nodes()[node].Addr(), database, c.Name()
	db, err := store.OpenServer(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return cfg, db
}

// Four processes migrate one cluster at once, each through another node:
// one applies every migration, the others wait for it and apply none,
// and schema_migrations (replicated) records each version once. A lock
// left behind (a process killed while migrating) stops the next one with
// the statement that frees it, and once freed it migrates.
func TestClusterMigrationsRunOnce(t *testing.T) {
	c := chcluster.Own(t)
	ctx := context.Background()
	database := c.NewDatabase(t)
	applied := make([]int, len(c.Nodes()))
	errs := make([]error, len(c.Nodes()))
	var wg sync.WaitGroup
	for i := range c.Nodes() {
		cfg, db := clusterStore(t, c, i, database)
		wg.Go(func() {
			done, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention, Layout: cfg.Layout()})
			applied[i], errs[i] = len(done), err
		})
	}
	wg.Wait()
	total := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("process %d: %v", i, err)
		}
		total += applied[i]
	}
	if want := len(migrations.All()); total != want {
		t.Errorf("the processes applied %v migrations, %d in all; want %d once", applied, total, want)
	}
	for i := range c.Nodes() {
		n, err := c.QueryUint64(ctx, i, "SELECT count() FROM "+database+".schema_migrations")
		if err != nil || n != uint64(len(migrations.All())) {
			t.Errorf("node %d: %d records (%v), want %d", i, n, err, len(migrations.All()))
		}
	}

	// A stale lock: the table a killed process left on node 1.
	fresh := c.NewDatabase(t)
	if err := c.Exec(ctx, 1, "CREATE TABLE "+fresh+".schema_migrations_lock (holder UInt8) ENGINE = ReplicatedMergeTree('/clickhouse/flowhouse/"+fresh+"/schema_migrations_lock', 'holder') ORDER BY holder"); err != nil {
		t.Fatal(err)
	}
	cfg, db := clusterStore(t, c, 2, fresh)
	_, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention, Layout: cfg.Layout(), LockWait: time.Second})
	if err == nil || !strings.Contains(err.Error(), "DROP TABLE IF EXISTS `"+fresh+"`.schema_migrations_lock ON CLUSTER `"+c.Name()+"`") {
		t.Fatalf("with a stale lock: %v, want the DROP that frees it", err)
	}
	if err := c.Exec(ctx, 0, "DROP TABLE IF EXISTS "+fresh+".schema_migrations_lock ON CLUSTER "+c.Name()); err != nil {
		t.Fatal(err)
	}
	if done, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention, Layout: cfg.Layout(), LockWait: time.Second}); err != nil || len(done) != len(migrations.All()) {
		t.Fatalf("after the lock was freed: %d applied, %v", len(done), err)
	}
}

// The retention job of a server without TTL (18.16) drops old partitions
// on every shard, listing them on every shard, through one node.
func TestClusterRetentionDropsOnEveryShard(t *testing.T) {
	c := chcluster.Own(t)
	ctx := context.Background()
	database := c.NewDatabase(t)
	cfg, db := clusterStore(t, c, 0, database)
	if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention, Layout: cfg.Layout()}); err != nil {
		t.Fatal(err)
	}
	// Through the front, whose key spreads one batch's rows over both
	// shards (straight to the shards, a batch goes whole to one).
	cfg.ClusterInserts = store.ClusterInsertsDistributed
	db, err := store.OpenServer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	old, recent := now.Add(-40*24*time.Hour), now.Add(-time.Hour)
	var fs []flow.Flow
	for i := range 400 {
		at := old
		if i%2 == 1 {
			at = recent
		}
		fs = append(fs, flow.Flow{TimeReceivedMs: at.UnixMilli(), TimeStartMs: at.UnixMilli(), TimeEndMs: at.UnixMilli(),
			Protocol: flow.ProtoIPFIX, ExporterAddr: flow.AddrFrom4([4]byte{192, 0, 2, 1}), SamplingRate: 1,
			SrcAddr: flow.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), DstAddr: flow.AddrFrom4([4]byte{198, 51, 100, 1}),
			SrcPort: uint16(i), DstPort: 443, IPProto: 6, IPVersion: 4, Bytes: 100, Packets: 1, Tenant: "acme"})
	}
	b := store.NewFlowBatch(len(fs))
	b.Append(fs)
	if err := db.InsertFlows(ctx, b); err != nil {
		t.Fatal(err)
	}
	for _, shard := range []int{0, 2} {
		if n, _ := c.QueryUint64(ctx, shard, "SELECT count() FROM "+database+".flows_local WHERE time_received < now() - 86400 * 30"); n == 0 {
			t.Fatalf("node %d has no old rows: the front's key should spread them over both shards", shard)
		}
	}
	r, err := store.NewRetention(cfg, store.RetentionDeps{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range c.Nodes() {
		var oldRows, recentRows uint64
		deadline := time.Now().Add(30 * time.Second)
		for {
			oldRows, _ = c.QueryUint64(ctx, i, "SELECT count() FROM "+database+".flows_local WHERE time_received < now() - 86400 * 30")
			recentRows, _ = c.QueryUint64(ctx, i, "SELECT count() FROM "+database+".flows_local WHERE time_received >= now() - 86400 * 30")
			if oldRows == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if oldRows != 0 || recentRows == 0 {
			t.Errorf("node %d: %d old rows left, %d recent rows", i, oldRows, recentRows)
		}
	}
	var total uint64
	if err := store.QueryRow(ctx, db, []any{&total}, "SELECT count() FROM flows"); err != nil || total != 200 {
		t.Errorf("through the front: %d rows (%v), want the 200 recent ones", total, err)
	}
}
