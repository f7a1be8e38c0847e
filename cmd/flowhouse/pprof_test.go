package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
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
			s := startServer(t, "server")
			if status, _ := get(t, "http://"+s.http+"/debug/pprof/"); status != http.StatusNotFound {
				t.Errorf("the API's listener answers /debug/pprof/ with %d, want 404", status)
			}
			if tt.listen == "" {
				if s.pprof != "" {
					t.Errorf("profiles served on %s without http.pprof_listen", s.pprof)
				}
				return
			}
			if !strings.HasPrefix(s.pprof, "127.0.0.1:") {
				t.Fatalf("profiles' address %q, want one on 127.0.0.1", s.pprof)
			}
			status, body := get(t, "http://"+s.pprof+"/debug/pprof/heap?debug=1")
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
