package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/flowhouse/flowhouse/internal/httpserve"
)

// pprofServer serves Go's runtime profiles at /debug/pprof/ on
// http.pprof_listen (validated to be loopback). It has its own mux: the
// pprof package's init registers on http.DefaultServeMux, which nothing
// else in flowhouse serves, so the API never exposes them.
type pprofServer struct {
	listen string
	log    *slog.Logger
	bg     httpserve.Background
}

func (p *pprofServer) start(context.Context) error {
	if p.listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", p.listen)
	if err != nil {
		return fmt.Errorf("http.pprof_listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// No write timeout: a CPU profile or trace answers after its ?seconds=.
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second}
	srv.Handler = mux
	p.log.Warn("serving Go profiles (http.pprof_listen): for debugging, not for production", "addr", ln.Addr().String())
	return p.bg.Serve(ln, srv, func(err error) { p.log.Error("pprof listener failed", "error", err) })
}

func (p *pprofServer) stop(ctx context.Context) error { return p.bg.Stop(ctx) }
