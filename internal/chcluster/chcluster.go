// Package chcluster runs a real local ClickHouse cluster for integration
// tests: one standalone ZooKeeper and Shards x Replicas clickhouse-server
// processes on loopback, each node in its own directory with ports of its
// own, named together in <remote_servers> as one cluster (internal
// replication), with macros {shard} (1..Shards) and {replica} (n1, n2, ...
// across the cluster) and an ON CLUSTER DDL queue.
//
// The processes are chtest's: bound to the test binary (Pdeathsig, their
// own process group, a maximum lifetime), so a killed or hung test run
// cannot leave them behind. Several tests of a package share one cluster
// through Main and Shared:
//
//	func TestMain(m *testing.M) { chcluster.Main(m) }
//
//	func TestX(t *testing.T) {
//		c := chcluster.Shared(t)
//		db := c.NewDatabase(t)
//		...
//	}
package chcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/flowhouse/flowhouse/internal/chtest"
)

// DefaultName is the cluster's name in <remote_servers> and ON CLUSTER.
const DefaultName = "flowhouse"

// Options of Start; zero values take the defaults.
type Options struct {
	// Name of the cluster (default DefaultName): a letter or _, then
	// letters, digits and _.
	Name string
	// Shards and Replicas per shard; default 2 and 2.
	Shards, Replicas int
	// StartTimeout bounds the wait for each process to answer.
	StartTimeout time.Duration
	// MaxLifetime kills every process this long after Start, restarted
	// nodes included, whatever happens.
	MaxLifetime time.Duration
}

// Node is one clickhouse-server of the cluster.
type Node struct {
	shard           int
	replica         string
	dir             string
	port            int
	interserverPort int
	srv             *chtest.Server // nil while killed
}

// Addr is the node's native protocol address, host:port.
func (n *Node) Addr() string { return "127.0.0.1:" + strconv.Itoa(n.port) }

// Shard is the node's {shard} macro, 1..Shards.
func (n *Node) Shard() int { return n.shard }

// Replica is the node's {replica} macro, unique in the cluster.
func (n *Node) Replica() string { return n.replica }

// Dir is the node's directory (config, data, logs).
func (n *Node) Dir() string { return n.dir }

// Pid is the server process's, 0 while the node is killed.
func (n *Node) Pid() int {
	if n.srv == nil {
		return 0
	}
	return n.srv.Pid()
}

// Conn is a client connection to the node, nil while it is killed.
func (n *Node) Conn() driver.Conn {
	if n.srv == nil {
		return nil
	}
	return n.srv.Conn()
}

// Cluster is a running ZooKeeper and its ClickHouse nodes.
type Cluster struct {
	name      string
	shards    int
	dir       string
	deadline  time.Time // of every process, from Options.MaxLifetime
	startWait time.Duration
	zkPort    int
	zk        *zooKeeper
	nodes     []*Node

	mu       sync.Mutex // guards nodes[i].srv against concurrent Kill and Restart
	stopOnce sync.Once
	seq      atomic.Int64
}

const dirPrefix = "flowhouse-chcluster-"

var validName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Start runs ZooKeeper, then every node, and returns once all answer.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	opts, err := withDefaults(opts)
	if err != nil {
		return nil, err
	}
	if err := installed(); err != nil {
		return nil, err
	}
	chtest.SweepStale(dirPrefix)
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("chcluster: create temp dir: %w", err)
	}
	c := &Cluster{
		name:      opts.Name,
		shards:    opts.Shards,
		dir:       dir,
		deadline:  time.Now().Add(opts.MaxLifetime),
		startWait: opts.StartTimeout,
	}
	// Free ports found by listening can be taken before a process binds
	// them; the nodes name each other's ports, so all are picked again.
	for attempt := 0; ; attempt++ {
		err = c.startAll(ctx, opts.Replicas)
		if err == nil {
			return c, nil
		}
		c.killAll()
		if attempt == 2 || !(errors.Is(err, chtest.ErrExitedEarly) || errors.Is(err, errZooKeeperExited)) {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

func withDefaults(opts Options) (Options, error) {
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if !validName.MatchString(opts.Name) {
		return opts, fmt.Errorf("chcluster: cluster name %q: want a letter or _, then letters, digits and _", opts.Name)
	}
	if opts.Shards < 0 || opts.Replicas < 0 {
		return opts, fmt.Errorf("chcluster: %d shards x %d replicas: want positive counts", opts.Shards, opts.Replicas)
	}
	if opts.Shards == 0 {
		opts.Shards = 2
	}
	if opts.Replicas == 0 {
		opts.Replicas = 2
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = chtest.DefaultStartTimeout
	}
	if opts.MaxLifetime <= 0 {
		opts.MaxLifetime = chtest.DefaultMaxLifetime
	}
	return opts, nil
}

// startAll lays out fresh directories and ports, starts ZooKeeper, then
// the nodes side by side.
func (c *Cluster) startAll(ctx context.Context, replicas int) error {
	if err := resetDir(c.dir); err != nil {
		return err
	}
	n := c.shards * replicas
	ports, err := chtest.FreePorts(1 + 2*n)
	if err != nil {
		return err
	}
	c.zkPort, c.nodes = ports[0], make([]*Node, n)
	for i := range c.nodes {
		c.nodes[i] = &Node{
			shard:           i/replicas + 1,
			replica:         "n" + strconv.Itoa(i+1),
			dir:             filepath.Join(c.dir, "n"+strconv.Itoa(i+1)),
			port:            ports[1+2*i],
			interserverPort: ports[2+2*i],
		}
	}
	zk, err := startZooKeeper(ctx, filepath.Join(c.dir, "zk"), c.zkPort, c.startWait, time.Until(c.deadline))
	if err != nil {
		return err
	}
	c.zk = zk
	// The sweep of a later run removes this directory once ZooKeeper,
	// which dies with the test binary, is gone.
	os.WriteFile(filepath.Join(c.dir, chtest.PidFile), []byte(strconv.Itoa(zk.proc.Pid())), 0o644)

	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { errs[i] = c.startNode(ctx, i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func resetDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("chcluster: clear %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("chcluster: %w", err)
	}
	return nil
}

// startNode runs node i on its directory and ports, which stay the same
// across restarts: the other nodes' config and ZooKeeper name them.
func (c *Cluster) startNode(ctx context.Context, i int) error {
	n := c.nodes[i]
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return fmt.Errorf("chcluster: %w", err)
	}
	srv, err := chtest.Start(ctx, chtest.Options{
		StartTimeout:    c.startWait,
		MaxLifetime:     time.Until(c.deadline),
		Dir:             n.dir,
		Port:            n.port,
		ExtraConfig:     c.nodeConfig(n),
		ProfileSettings: profileSettings,
	})
	if err != nil {
		return fmt.Errorf("chcluster: node %d (%s): %w", i, n.replica, err)
	}
	if err := waitZooKeeperSession(ctx, srv, c.startWait); err != nil {
		srv.Stop()
		return fmt.Errorf("chcluster: node %d (%s): %w", i, n.replica, err)
	}
	c.mu.Lock()
	n.srv = srv
	c.mu.Unlock()
	return nil
}

// waitZooKeeperSession waits until the node reads ZooKeeper: a server
// answers queries before its session is up, and an ON CLUSTER statement
// sent in between had the connection closed (seen once in a few runs).
func waitZooKeeperSession(ctx context.Context, srv *chtest.Server, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		var n uint64
		err := srv.Conn().QueryRow(ctx, "SELECT count() FROM system.zookeeper WHERE path = '/'").Scan(&n)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no ZooKeeper session within %s: %w", timeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Name is the cluster's, for ON CLUSTER and Distributed(...).
func (c *Cluster) Name() string { return c.name }

// Dir is the cluster's temporary directory (n1, n2, ... and zk).
func (c *Cluster) Dir() string { return c.dir }

// ZooKeeperAddr is ZooKeeper's client address, host:port.
func (c *Cluster) ZooKeeperAddr() string { return "127.0.0.1:" + strconv.Itoa(c.zkPort) }

// ZooKeeperPid is the ZooKeeper (java) process's, 0 once stopped.
func (c *Cluster) ZooKeeperPid() int {
	if c.zk == nil {
		return 0
	}
	return c.zk.proc.Pid()
}

// Nodes are in shard order: shard 1's replicas, then shard 2's, ...
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Addrs are the native addresses of every node, in Nodes' order.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

func (c *Cluster) node(i int) (*Node, error) {
	if i < 0 || i >= len(c.nodes) {
		return nil, fmt.Errorf("chcluster: node %d: the cluster has nodes 0..%d", i, len(c.nodes)-1)
	}
	return c.nodes[i], nil
}

// Kill sends node i SIGKILL and waits until it is reaped; its directory
// stays for Restart.
func (c *Cluster) Kill(i int) error {
	n, err := c.node(i)
	if err != nil {
		return err
	}
	c.mu.Lock()
	srv := n.srv
	n.srv = nil
	c.mu.Unlock()
	if srv == nil {
		return fmt.Errorf("chcluster: kill node %d (%s): not running", i, n.replica)
	}
	return srv.Stop()
}

// Restart starts a killed node i again on the same directory and ports
// and waits until it answers. Catching up with its replicas is the
// caller's to wait for.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	n, err := c.node(i)
	if err != nil {
		return err
	}
	c.mu.Lock()
	running := n.srv != nil
	c.mu.Unlock()
	if running {
		return fmt.Errorf("chcluster: restart node %d (%s): still running", i, n.replica)
	}
	return c.startNode(ctx, i)
}

// killAll kills what runs: the nodes, then ZooKeeper.
func (c *Cluster) killAll() {
	for i, n := range c.nodes {
		if n != nil && n.srv != nil {
			c.Kill(i)
		}
	}
	if c.zk != nil {
		c.zk.proc.Kill()
		c.zk = nil
	}
}

// Stop kills every process, waits until all are reaped and removes the
// cluster's directory. The data is thrown away, so no clean shutdown.
func (c *Cluster) Stop() error {
	var err error
	c.stopOnce.Do(func() {
		c.killAll()
		if rmErr := os.RemoveAll(c.dir); rmErr != nil {
			err = fmt.Errorf("chcluster: remove %s: %w", c.dir, rmErr)
		}
	})
	return err
}
