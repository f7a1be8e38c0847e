package privacy_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/internal/chcluster"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/privacy"
	"github.com/flowhouse/flowhouse/store"
	"github.com/flowhouse/flowhouse/tenant"
)

// On a 2x2 cluster (18.16, mutations), a tenant's flows are deleted on
// every shard and every replica, its alerts (replicated to every node)
// everywhere, and another tenant's rows stay.
func TestDeletionOnCluster(t *testing.T) {
	ctx := context.Background()
	c := chcluster.Own(t)
	database := c.NewDatabase(t)
	cfg := store.DefaultConfig()
	cfg.Addr, cfg.Database, cfg.Cluster = c.Nodes()[0].Addr(), database, c.Name()
	db, err := store.OpenServer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention, Layout: cfg.Layout()}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		// Through the front: the key spreads the rows over both shards.
		"INSERT INTO flows (tenant, src_port, time_received) SELECT if(number % 2 = 0, 'a', 'b'), toUInt16(number), now() FROM system.numbers LIMIT 1000",
		"INSERT INTO alerts (tenant, id, version) SELECT 'a', 'x', 1",
		"INSERT INTO alerts (tenant, id, version) SELECT 'b', 'y', 1",
	} {
		if err := db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	// The front sends INSERT ... SELECT's rows in the background.
	testkit.Eventually(t, "the flows on their shards", 30*time.Second, func() bool {
		var n uint64
		return store.QueryRow(ctx, db, []any{&n}, "SELECT count() FROM flows") == nil && n == 1000
	})
	ts, _ := tenant.New(tenant.Config{Default: "a"})
	pcfg := privacy.DefaultConfig()
	pcfg.PollInterval = 50 * time.Millisecond
	d := privacy.New(pcfg, privacy.Deps{DB: db, Tenants: ts, Layout: cfg.Layout()})
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	job, err := d.Request(ctx, "a", "test")
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the deletion to end", time.Minute, func() bool {
		job, err = privacy.Reader{DB: db}.Job(ctx, "a", job.ID)
		return err == nil && !job.Active()
	})
	if job.Status != privacy.StatusDone {
		t.Fatalf("job %+v", job)
	}
	for i := range c.Nodes() {
		var a, b, alertsA uint64
		testkit.Eventually(t, "the deletion on every replica", 30*time.Second, func() bool {
			a, _ = c.QueryUint64(ctx, i, "SELECT count() FROM "+database+".flows_local WHERE tenant = 'a'")
			alertsA, _ = c.QueryUint64(ctx, i, "SELECT count() FROM "+database+".alerts WHERE tenant = 'a'")
			return a == 0 && alertsA == 0
		})
		b, _ = c.QueryUint64(ctx, i, "SELECT count() FROM "+database+".flows_local WHERE tenant = 'b'")
		if b == 0 {
			t.Errorf("node %d: tenant b's flows are gone too", i)
		}
	}
	var left uint64
	if err := store.QueryRow(ctx, db, []any{&left}, "SELECT count() FROM flows WHERE tenant = 'b'"); err != nil || left != 500 {
		t.Errorf("tenant b: %d flows through the front (%v), want 500", left, err)
	}
}
