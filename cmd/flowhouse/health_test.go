package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/api"
)

// startAPI runs flowhouse's own HTTP server on a loopback port with one
// readiness check that returns checkErr, and returns its port.
func startAPI(t *testing.T, checkErr error) string {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	srv := api.New(cfg, api.Deps{Checks: []api.Check{{
		Name: "database",
		Func: func(context.Context) error { return checkErr },
	}}})
	if err := srv.Start(context.Background()); err != nil {
		t.Fatalf("start api: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
	})
	_, port, err := net.SplitHostPort(srv.Addr())
	if err != nil {
		t.Fatalf("api address %q: %v", srv.Addr(), err)
	}
	return port
}

func TestHealth(t *testing.T) {
	ready := startAPI(t, nil)
	notReady := startAPI(t, errors.New("no database"))
	// A port nothing listens on: bind one and close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	tests := []struct {
		name   string
		args   []string
		listen string // FLOWHOUSE_HTTP_LISTEN when args has no -url
		code   int
		stderr string
	}{
		{"ready, from http.listen on every address", nil, "0.0.0.0:" + ready, 0, ""},
		{"ready, from http.listen without host", nil, ":" + ready, 0, ""},
		{"ready, -url", []string{"-url", "http://127.0.0.1:" + ready + "/readyz"}, "", 0, ""},
		{"not ready: 503 and the failed check", nil, "127.0.0.1:" + notReady, 1, "503 Service Unavailable"},
		{"nothing listening", []string{"-url", "http://127.0.0.1:" + strconv.Itoa(closed) + "/readyz"}, "", 1, "connection refused"},
		{"bad flag", []string{"-bogus"}, "", 2, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.listen != "" {
				t.Setenv("FLOWHOUSE_HTTP_LISTEN", tt.listen)
			}
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"health"}, tt.args...), &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tt.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tt.stderr)
			}
			if code == 0 && !strings.HasPrefix(stdout.String(), "ok http://127.0.0.1:"+ready+"/readyz") {
				t.Errorf("stdout %q: want the URL probed", stdout.String())
			}
		})
	}
}

func TestReadyzURL(t *testing.T) {
	tests := []struct {
		listen string
		https  bool
		want   string
	}{
		{"127.0.0.1:8080", false, "http://127.0.0.1:8080/readyz"},
		{"0.0.0.0:8080", false, "http://127.0.0.1:8080/readyz"},
		{":8080", false, "http://127.0.0.1:8080/readyz"},
		{"[::]:8443", true, "https://[::1]:8443/readyz"},
		{"flowhouse.example.net:8443", true, "https://flowhouse.example.net:8443/readyz"},
	}
	for _, tt := range tests {
		if got := readyzURL(tt.listen, tt.https); got != tt.want {
			t.Errorf("readyzURL(%q, %v) = %q, want %q", tt.listen, tt.https, got, tt.want)
		}
	}
}
