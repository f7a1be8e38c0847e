package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/config"
)

// FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN= turns the query endpoint off
// (an empty variable used to count as unset).
func TestEmptyListenTurnsTheQueryEndpointOff(t *testing.T) {
	cleanEnv(t)
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_LIBRARY", embeddedLibrary(t))
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_PATH", t.TempDir())
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN", "")
	t.Setenv("FLOWHOUSE_COLLECTOR_LISTENERS", "127.0.0.1:0")
	t.Setenv("FLOWHOUSE_HTTP_LISTEN", "127.0.0.1:0")
	t.Setenv("FLOWHOUSE_SPOOL_DIR", t.TempDir())
	t.Setenv("FLOWHOUSE_COLLECTOR_STATE_FILE", filepath.Join(t.TempDir(), "collector.state"))
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClickHouse.Embedded.HTTPListen != "" {
		t.Fatalf("http_listen %q", cfg.ClickHouse.Embedded.HTTPListen)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	up := make(chan string, 1)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() {
		done <- runServer(ctx, cfg, log, hooks{started: func(r running) { up <- r.queryAddr }})
	}()
	select {
	case addr := <-up:
		if addr != "" {
			t.Errorf("query endpoint on %s", addr)
		}
	case err := <-done:
		t.Fatalf("serve ended at start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not start within 60s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
}
