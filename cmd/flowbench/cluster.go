package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/internal/chcluster"
	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/internal/flowtest"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/store"
)

// clusterOptions: the cluster stage inserts the same batches with
// flowhouse's store into one ClickHouse server and into a local cluster
// of 2 shards x 2 replicas, to say what the cluster's front costs.
type clusterOptions struct {
	on      bool
	rows    int // per case
	batches int // rows/batches a batch
}

func (c *clusterOptions) flags() {
	flag.BoolVar(&c.on, "cluster", true, "run the cluster stage: inserts into one server and into a local 2x2 cluster (needs zookeeper)")
	flag.IntVar(&c.rows, "cluster-rows", 1_000_000, "rows inserted in each case of the cluster stage")
	flag.IntVar(&c.batches, "cluster-batches", 20, "batches those rows are inserted in")
}

func (c clusterOptions) check() error {
	if c.on && (c.rows < c.batches || c.batches < 1) {
		return errors.New("-cluster-rows must be at least -cluster-batches, which must be positive")
	}
	return nil
}

// ClusterCase is one way of inserting the stage's rows.
type ClusterCase struct {
	Name       string  `json:"name"`
	Rows       uint64  `json:"rows_stored"`
	Seconds    float64 `json:"seconds"`
	RowsPerSec float64 `json:"rows_per_second"`
	MsPerBatch float64 `json:"ms_per_batch"`
}

// ClusterResult is the cluster stage's measurement.
type ClusterResult struct {
	Version   string        `json:"clickhouse_version"`
	BatchRows int           `json:"batch_rows"`
	Cases     []ClusterCase `json:"cases"`
}

// clusterStage inserts into a fresh server, then into the cluster both
// ways flowhouse can (straight into the shards, and through the front
// synchronously), then through the front with ClickHouse's default
// background sends, each into a database of its own; every case is
// checked to have stored every row.
func clusterStage(ctx context.Context, o clusterOptions) (*ClusterResult, error) {
	batches := benchBatches(o.rows, o.batches)
	res := &ClusterResult{BatchRows: o.rows / o.batches}
	srv, err := chtest.Start(ctx, chtest.Options{})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	res.Version = srv.Version()
	single := store.DefaultConfig()
	single.Addr, single.Database = srv.Addr(), "bench_single"
	if err := clusterCase(ctx, res, "one server", single, single, batches); err != nil {
		return res, err
	}
	srv.Stop()

	c, err := chcluster.Start(ctx, chcluster.Options{Shards: 2, Replicas: 2})
	if err != nil {
		return res, err
	}
	defer c.Stop()
	// flowhouse's default last: each case's merges go on into the next,
	// so the last case runs on the busiest cluster.
	shards := store.DefaultConfig()
	shards.Addr, shards.Database, shards.Cluster = c.Nodes()[0].Addr(), "bench_shards", c.Name()
	front := shards
	front.Database, front.ClusterInserts = "bench_sync", store.ClusterInsertsDistributed
	if err := clusterCase(ctx, res, "2x2 cluster, through the front, synchronous (cluster_inserts: distributed)", front, front, batches); err != nil {
		return res, err
	}
	// The same schema, written by a store that does not know it is a
	// cluster: its inserts into the front leave insert_distributed_sync
	// at the server's default (0, background sends).
	front.Database = "bench_async"
	async := front
	async.Cluster = ""
	if err := clusterCase(ctx, res, "2x2 cluster, through the front, background sends (not offered)", front, async, batches); err != nil {
		return res, err
	}
	return res, clusterCase(ctx, res, "2x2 cluster, each batch straight to one shard (cluster_inserts: shards, the default)", shards, shards, batches)
}

// clusterCase migrates with schema's layout, inserts every batch with a
// store of insert's configuration, and waits until every row is stored.
func clusterCase(ctx context.Context, res *ClusterResult, name string, schema, insert store.Config, batches []*store.FlowBatch) error {
	sdb, err := store.OpenServer(ctx, schema, nil)
	if err != nil {
		return err
	}
	defer sdb.Close()
	if _, err := migrations.Apply(ctx, sdb, migrations.Options{Retention: schema.Retention, Layout: schema.Layout()}); err != nil {
		return err
	}
	idb, err := store.OpenServer(ctx, insert, nil)
	if err != nil {
		return err
	}
	defer idb.Close()
	want := uint64(0)
	start := time.Now()
	for _, b := range batches {
		if err := idb.InsertFlows(ctx, b); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		want += uint64(b.Len())
	}
	return countCase(ctx, res, name, sdb, want, len(batches), start)
}

// countCase waits until db's flows has want rows and records the case.
func countCase(ctx context.Context, res *ClusterResult, name string, db store.DB, want uint64, batches int, start time.Time) error {
	var n uint64
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if err := store.QueryRow(ctx, db, []any{&n}, "SELECT count() FROM flows"); err != nil {
			return err
		}
		if n >= want || time.Now().After(deadline) {
			break
		}
	}
	d := time.Since(start)
	res.Cases = append(res.Cases, ClusterCase{Name: name, Rows: n, Seconds: d.Seconds(),
		RowsPerSec: float64(n) / d.Seconds(), MsPerBatch: float64(d.Milliseconds()) / float64(batches)})
	fmt.Fprintf(os.Stderr, "cluster stage: %s: %d rows in %s\n", name, n, d.Round(time.Millisecond))
	if n != want {
		return fmt.Errorf("%s: %d rows stored of %d inserted", name, n, want)
	}
	return nil
}

// benchBatches are rows realistic flows in batches.
func benchBatches(rows, batches int) []*store.FlowBatch {
	per := rows / batches
	out := make([]*store.FlowBatch, batches)
	for i := range out {
		out[i] = store.NewFlowBatch(per)
		out[i].Append(flowtest.Realistic(per, i*per))
	}
	return out
}

func writeCluster(b *strings.Builder, r *ClusterResult) {
	fmt.Fprintf(b, "\n## Inserts into a cluster\n\n"+
		"flowhouse's store inserting the same %d-row batches into one ClickHouse %s server and into a local cluster of 2 shards x 2 replicas "+
		"(4 servers and ZooKeeper on this machine's cores, so the cluster has no more CPU than the one server: this measures what the front and replication cost, not how a cluster scales). "+
		"Rows per second until every row could be counted.\n\n", r.BatchRows, r.Version)
	b.WriteString("| case | rows | seconds | rows/s | ms per batch |\n| --- | --- | --- | --- | --- |\n")
	for _, c := range r.Cases {
		fmt.Fprintf(b, "| %s | %d | %.2f | %.0f | %.0f |\n", c.Name, c.Rows, c.Seconds, c.RowsPerSec, c.MsPerBatch)
	}
}

// clusterStageRun runs the stage into rep when it is on.
func clusterStageRun(ctx context.Context, o options, rep *Report) {
	if !o.cluster.on {
		return
	}
	t := time.Now()
	r, err := clusterStage(ctx, o.cluster)
	rep.Cluster = r
	if err != nil {
		rep.failed("cluster", err)
	}
	fmt.Fprintf(os.Stderr, "cluster stage: %s\n", time.Since(t).Round(time.Second))
}
