package chcluster

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/flowhouse/flowhouse/internal/chtest"
)

// installed reports what is missing to run a cluster.
func installed() error {
	if _, err := chtest.ServerCommand(); err != nil {
		return err
	}
	return zooKeeperInstalled()
}

// Require skips the test, saying what to install, unless clickhouse-server
// and ZooKeeper are here. In CI (CI=true) it fails instead: a CI machine
// without them must not pass the cluster tests by skipping them.
func Require(tb testing.TB) {
	tb.Helper()
	err := installed()
	switch {
	case err == nil:
	case os.Getenv("CI") == "true":
		tb.Fatal(err)
	default:
		tb.Skip(err)
	}
}

var shared struct {
	once    sync.Once
	mu      sync.Mutex
	cluster *Cluster
	err     error
}

// Shared returns the 2x2 cluster (DefaultName) shared by all tests of
// this binary, starting it on first use; see Require for when it skips.
// Without Main its processes die with the binary, and its directory is
// left for the next run to sweep. Tests that Kill a node must Restart it
// before they end: the next test expects every node.
func Shared(tb testing.TB) *Cluster {
	tb.Helper()
	Require(tb)
	shared.once.Do(func() {
		c, err := Start(context.Background(), Options{})
		shared.mu.Lock()
		shared.cluster, shared.err = c, err
		shared.mu.Unlock()
	})
	if shared.err != nil {
		tb.Fatalf("%v", shared.err)
	}
	return shared.cluster
}

// Own starts a 2x2 cluster (DefaultName) of the test's own, which it may
// kill nodes of freely, and stops it when the test ends; see Require for
// when it skips.
func Own(tb testing.TB) *Cluster {
	tb.Helper()
	Require(tb)
	c, err := Start(context.Background(), Options{})
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() {
		if err := c.Stop(); err != nil {
			tb.Errorf("chcluster: stop: %v", err)
		}
	})
	return c
}

// Main runs the tests, then stops the shared cluster if a test started
// it. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	shared.mu.Lock()
	c := shared.cluster
	shared.mu.Unlock()
	if c != nil {
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "chcluster: stop: %v\n", err)
		}
	}
	os.Exit(code)
}
