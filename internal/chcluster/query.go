package chcluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/internal/chtest"
)

func (c *Cluster) running(i int) (*chtest.Server, error) {
	n, err := c.node(i)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.srv == nil {
		return nil, fmt.Errorf("chcluster: node %d (%s) is killed", i, n.replica)
	}
	return n.srv, nil
}

// Exec runs a statement on node i.
func (c *Cluster) Exec(ctx context.Context, i int, query string, args ...any) error {
	srv, err := c.running(i)
	if err != nil {
		return err
	}
	if err := srv.Exec(ctx, query, args...); err != nil {
		return fmt.Errorf("chcluster: node %d: %w", i, err)
	}
	return nil
}

// QueryUint64 runs a query of one UInt64 value (a count()) on node i.
func (c *Cluster) QueryUint64(ctx context.Context, i int, query string, args ...any) (uint64, error) {
	srv, err := c.running(i)
	if err != nil {
		return 0, err
	}
	var v uint64
	if err := srv.Conn().QueryRow(ctx, query, args...).Scan(&v); err != nil {
		return 0, fmt.Errorf("chcluster: node %d: %w", i, err)
	}
	return v, nil
}

// NewDatabase creates a database on every node (ON CLUSTER, from node 0)
// and drops it the same way when the test ends. Every node must be
// running then: ON CLUSTER waits for all of them (distributed_ddl_task_timeout).
// 18.16 has no DROP ... SYNC; its DROP removes the replicas' znodes.
func (c *Cluster) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := chtest.DatabaseName(c.seq.Add(1), tb.Name())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Exec(ctx, 0, "CREATE DATABASE "+name+" ON CLUSTER "+c.name); err != nil {
		tb.Fatalf("chcluster: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Exec(ctx, 0, "DROP DATABASE IF EXISTS "+name+" ON CLUSTER "+c.name); err != nil {
			tb.Errorf("chcluster: drop database %s: %v", name, err)
		}
	})
	return name
}
