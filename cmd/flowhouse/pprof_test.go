package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The profiles are served only when http.pprof_listen is set, on their
// own listener, never on the API's.
func TestPprofListenerOnlyWhenConfigured(t *testing.T) {
	for _, tt := range []struct {
		name, listen string
	}{
		{"off by default", ""},
		{"on loopback", "127.0.0.1:0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("FLOWHOUSE_HTTP_PPROF_LISTEN", tt.listen)
			cfg := serverConfig(t, "server", "")
			ctx, cancel := context.WithCancel(context.Background())
			done, up := make(chan error, 1), make(chan running, 1)
			log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))
			go func() { done <- runServer(ctx, cfg, log, hooks{started: func(r running) { up <- r }}) }()
			var r running
			select {
			case r = <-up:
			case err := <-done:
				t.Fatalf("serve ended at start: %v", err)
			case <-time.After(60 * time.Second):
				t.Fatal("serve did not start within 60s")
			}
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("serve: %v", err)
				}
			}()
			if status, _ := get(t, "http://"+r.httpAddr+"/debug/pprof/"); status != http.StatusNotFound {
				t.Errorf("the API's listener answers /debug/pprof/ with %d, want 404", status)
			}
			if tt.listen == "" {
				if r.pprofAddr != "" {
					t.Errorf("profiles served on %s without http.pprof_listen", r.pprofAddr)
				}
				return
			}
			if !strings.HasPrefix(r.pprofAddr, "127.0.0.1:") {
				t.Fatalf("profiles' address %q, want one on 127.0.0.1", r.pprofAddr)
			}
			status, body := get(t, "http://"+r.pprofAddr+"/debug/pprof/heap?debug=1")
			if status != http.StatusOK || !strings.Contains(body, "heap profile:") {
				t.Errorf("GET /debug/pprof/heap?debug=1: %d %.80q, want 200 with a heap profile", status, body)
			}
		})
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
