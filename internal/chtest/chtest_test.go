package chtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func TestMain(m *testing.M) { Main(m) }

func TestDatabaseIsFreshAndUsable(t *testing.T) {
	addr, db := Database(t)
	_, db2 := Database(t)
	if db == db2 {
		t.Fatalf("two calls gave the same database %q", db)
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: db}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	if err := conn.Exec(ctx, "CREATE TABLE t (x UInt8) ENGINE = Memory"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "INSERT INTO t (x) SELECT 7"); err != nil {
		t.Fatal(err)
	}
	var got uint8
	if err := conn.QueryRow(ctx, "SELECT x FROM t").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != 7 {
		t.Fatalf("got %d, want 7", got)
	}
	var tables uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ?", db2).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Fatalf("database %s has %d tables, want a fresh one", db2, tables)
	}
}

func TestStopKillsServerAndRemovesDir(t *testing.T) {
	srv, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Version() == "" {
		t.Fatal("empty version")
	}
	pid := srv.pid
	dir := srv.Dir()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("server pid %d still alive after Stop", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("dir %s not removed: %v", dir, err)
	}
}

func TestMaxLifetimeKillsServer(t *testing.T) {
	srv, err := Start(context.Background(), Options{MaxLifetime: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	select {
	case <-srv.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("server outlived its max lifetime")
	}
}

func TestMissingBinaryNamesTheFix(t *testing.T) {
	t.Setenv(EnvBinary, filepath.Join(t.TempDir(), "no-such-clickhouse"))
	if _, err := Start(context.Background(), Options{}); err == nil || !strings.Contains(err.Error(), EnvBinary) {
		t.Fatalf("Start with a wrong %s: err = %v, want it named", EnvBinary, err)
	}

	t.Setenv(EnvBinary, "")
	t.Setenv("PATH", t.TempDir())
	saved := fallbackPaths
	fallbackPaths = nil
	defer func() { fallbackPaths = saved }()
	_, err := Start(context.Background(), Options{})
	if err == nil || !strings.Contains(err.Error(), "make test-deps") {
		t.Fatalf("Start without a binary: err = %v, want it to say to run make test-deps", err)
	}
}

func TestSanitize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"TestX", "testx"},
		{"TestX/sub_case#01", "testx_sub_case_01"},
		{"Test/with spaces and ÜTF", "test_with_spaces_and_tf"},
	} {
		if got := sanitize(tc.in); got != tc.want {
			t.Errorf("sanitize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
