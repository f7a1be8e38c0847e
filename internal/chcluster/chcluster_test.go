package chcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/flowhouse/flowhouse/internal/testkit"
)

func TestMain(m *testing.M) { Main(m) }

// TestLayout: every node has its own macros, and the cluster names every
// node by shard and replica number.
func TestLayout(t *testing.T) {
	start := time.Now()
	c := Shared(t)
	t.Logf("shared 2x2 cluster ready %s after the first Shared call", time.Since(start).Round(time.Millisecond))
	logRSS(t, c)
	ctx := context.Background()
	if got := len(c.Nodes()); got != 4 {
		t.Fatalf("%d nodes, want 4", got)
	}
	for i, want := range []struct {
		shard   int
		replica string
	}{{1, "n1"}, {1, "n2"}, {2, "n3"}, {2, "n4"}} {
		n := c.Nodes()[i]
		if n.Shard() != want.shard || n.Replica() != want.replica || n.Addr() != c.Addrs()[i] {
			t.Errorf("node %d: shard %d replica %s addr %s, want shard %d replica %s addr %s",
				i, n.Shard(), n.Replica(), n.Addr(), want.shard, want.replica, c.Addrs()[i])
		}
		macros := map[string]string{}
		rows, err := n.Conn().Query(ctx, "SELECT macro, substitution FROM system.macros")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				t.Fatal(err)
			}
			macros[k] = v
		}
		rows.Close()
		if macros["shard"] != strconv.Itoa(want.shard) || macros["replica"] != want.replica || len(macros) != 2 {
			t.Errorf("node %d: system.macros %v, want shard %d replica %s", i, macros, want.shard, want.replica)
		}
	}

	var got []string
	rows, err := c.Nodes()[0].Conn().Query(ctx,
		"SELECT shard_num, replica_num, host_address, port FROM system.clusters WHERE cluster = ? ORDER BY shard_num, replica_num", c.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var shard, replica uint32
		var host string
		var port uint16
		if err := rows.Scan(&shard, &replica, &host, &port); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d/%d %s:%d", shard, replica, host, port))
	}
	want := []string{"1/1 " + c.Addrs()[0], "1/2 " + c.Addrs()[1], "2/1 " + c.Addrs()[2], "2/2 " + c.Addrs()[3]}
	if !slices.Equal(got, want) {
		t.Fatalf("system.clusters for %s on node 0: %q, want %q", c.Name(), got, want)
	}
}

// TestReplicaCatchesUpAfterRestart: rows inserted through a Distributed
// table reach both replicas of their shard; a replica killed meanwhile
// gets what it missed once restarted on its directory and ports.
func TestReplicaCatchesUpAfterRestart(t *testing.T) {
	c := Shared(t)
	db := c.NewDatabase(t)
	ctx := context.Background()
	for _, q := range []string{
		"CREATE TABLE " + db + ".t ON CLUSTER " + c.Name() + " (d Date, x UInt64) " +
			"ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/" + db + "/t', '{replica}') PARTITION BY toYYYYMM(d) ORDER BY x",
		"CREATE TABLE " + db + ".t_all ON CLUSTER " + c.Name() + " AS " + db + ".t ENGINE = Distributed(" + c.Name() + ", " + db + ", t, rand())",
	} {
		if err := c.Exec(ctx, 0, q); err != nil {
			t.Fatal(err)
		}
	}
	syncCtx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	insert := func(from, rows int) {
		t.Helper()
		q := fmt.Sprintf("INSERT INTO %s.t_all SELECT toDate('2024-01-01'), %d + number FROM system.numbers LIMIT %d", db, from, rows)
		if err := c.Exec(syncCtx, 0, q); err != nil {
			t.Fatal(err)
		}
	}
	count := func(i int) uint64 {
		t.Helper()
		n, err := c.QueryUint64(ctx, i, "SELECT count() FROM "+db+".t")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	replicasAgree := func(total uint64) func() bool {
		return func() bool {
			s1, s2 := count(0), count(2)
			return count(1) == s1 && count(3) == s2 && s1+s2 == total
		}
	}

	insert(0, 1000)
	testkit.Eventually(t, "both replicas of each shard to hold their shard's share of 1000 rows", 20*time.Second, replicasAgree(1000))
	if s1, s2 := count(0), count(2); s1 == 0 || s2 == 0 {
		t.Fatalf("shards hold %d and %d rows: rand() should have sent some to each", s1, s2)
	}

	const victim = 3 // shard 2's second replica
	pid := c.Nodes()[victim].Pid()
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() { // the next test wants every node
		if !restarted {
			if err := c.Restart(ctx, victim); err != nil {
				t.Error(err)
			}
		}
	})
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("killed node's pid %d: kill -0 says %v, want no such process", pid, err)
	}
	if err := c.Exec(ctx, victim, "SELECT 1"); err == nil {
		t.Fatal("Exec on a killed node succeeded")
	}

	insert(1000, 1000) // shard 2's share goes to n3 only
	start := time.Now()
	if err := c.Restart(ctx, victim); err != nil {
		t.Fatal(err)
	}
	restarted = true
	t.Logf("restarted node answered after %s", time.Since(start).Round(time.Millisecond))
	if got := c.Nodes()[victim].Pid(); got == pid || got == 0 {
		t.Fatalf("restarted node has pid %d (was %d)", got, pid)
	}
	testkit.Eventually(t, "the restarted replica to catch up with its shard", 30*time.Second, replicasAgree(2000))
	t.Logf("caught up %s after the restart", time.Since(start).Round(time.Millisecond))
	for i := range c.Nodes() {
		total, err := c.QueryUint64(ctx, i, "SELECT count() FROM "+db+".t_all")
		if err != nil || total != 2000 {
			t.Errorf("node %d: count() of the Distributed table = %d, %v; want 2000", i, total, err)
		}
	}
}

// TestStopRemovesEverything starts a cluster of its own (one shard, two
// replicas, another name) and checks that Stop leaves no process and no
// directory.
func TestStopRemovesEverything(t *testing.T) {
	Require(t)
	start := time.Now()
	c, err := Start(context.Background(), Options{Name: "other_1", Shards: 1, Replicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1x2 cluster started in %s", time.Since(start).Round(time.Millisecond))
	stopped := false
	defer func() {
		if !stopped {
			c.Stop()
		}
	}()
	ctx := context.Background()
	n, err := c.QueryUint64(ctx, 1, "SELECT count() FROM system.clusters WHERE cluster = 'other_1' AND shard_num = 1")
	if err != nil || n != 2 {
		t.Fatalf("system.clusters rows of other_1: %d, %v; want 2", n, err)
	}
	if r := c.Nodes()[1].Replica(); r != "n2" {
		t.Fatalf("second node's replica %q, want n2", r)
	}
	pids := []int{c.ZooKeeperPid()}
	for _, n := range c.Nodes() {
		pids = append(pids, n.Pid())
	}
	dir := c.Dir()
	stopped = true
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d after Stop: kill -0 says %v, want no such process", pid, err)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("cluster dir %s after Stop: %v, want it removed", dir, err)
	}
	if err := c.Exec(ctx, 0, "SELECT 1"); err == nil {
		t.Error("Exec after Stop succeeded")
	}
}

func TestStartRejectsOptions(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Name: "bad-name"}, `cluster name "bad-name"`},
		{Options{Name: "1st"}, `cluster name "1st"`},
		{Options{Shards: -1}, "want positive counts"},
		{Options{Replicas: -2}, "want positive counts"},
	} {
		_, err := Start(context.Background(), tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Start(%+v): %v, want an error with %q", tc.opts, err, tc.want)
		}
	}
}

// recordTB records how Require ended the test instead of ending it.
type recordTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordTB) Helper()           {}
func (r *recordTB) Skip(args ...any)  { r.skipped = fmt.Sprint(args...) }
func (r *recordTB) Fatal(args ...any) { r.failed = fmt.Sprint(args...) }

func TestRequireSkipsOrFailsInCI(t *testing.T) {
	saved := zkServerScript
	zkServerScript = filepath.Join(t.TempDir(), "zkServer.sh")
	defer func() { zkServerScript = saved }()
	for _, tc := range []struct {
		ci           string
		skip, failed bool
	}{{"", true, false}, {"false", true, false}, {"true", false, true}} {
		t.Setenv("CI", tc.ci)
		r := &recordTB{TB: t}
		Require(r)
		if (r.skipped != "") != tc.skip || (r.failed != "") != tc.failed {
			t.Errorf("CI=%q: skipped %q, failed %q; want skip %v, fail %v", tc.ci, r.skipped, r.failed, tc.skip, tc.failed)
		}
		if msg := r.skipped + r.failed; !strings.Contains(msg, "scripts/deps.sh") || !strings.Contains(msg, zkServerScript) {
			t.Errorf("CI=%q: %q does not say what is missing and how to install it", tc.ci, msg)
		}
	}
}

// logRSS reports the resident memory of the cluster's processes.
func logRSS(t *testing.T, c *Cluster) {
	t.Helper()
	parts := []string{fmt.Sprintf("zookeeper %d MB", rssMB(t, c.ZooKeeperPid()))}
	total := rssMB(t, c.ZooKeeperPid())
	for _, n := range c.Nodes() {
		mb := rssMB(t, n.Pid())
		total += mb
		parts = append(parts, fmt.Sprintf("%s %d MB", n.Replica(), mb))
	}
	t.Logf("RSS %d MB: %s", total, strings.Join(parts, ", "))
}

func rssMB(t *testing.T, pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return kb / 1024
		}
	}
	t.Fatalf("/proc/%d/status has no VmRSS", pid)
	return 0
}
