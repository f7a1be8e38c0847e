// Package httpserve runs an http.Server in the background on a listener
// the caller opened, and shuts it down gracefully: the lifecycle shared by
// flowhouse's HTTP servers (the API and the query endpoint).
package httpserve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
)

// Background is one http.Server served in a goroutine. The zero value is
// ready; it serves once.
type Background struct {
	mu   sync.Mutex
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Serve serves srv on ln until Stop; onError gets a failure of Serve other
// than the server being closed.
func (b *Background) Serve(ln net.Listener, srv *http.Server, onError func(error)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		return errors.New("httpserve: already serving")
	}
	b.srv, b.ln, b.done = srv, ln, make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && onError != nil {
			onError(err)
		}
	}(b.done)
	return nil
}

// Addr is the address listened on (with the real port when it was 0), or
// "" before Serve.
func (b *Background) Addr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ln == nil {
		return ""
	}
	return b.ln.Addr().String()
}

// Stop stops accepting connections and waits for the requests in flight
// until ctx ends; then it closes the remaining connections and returns the
// context's error. Stopping a server that does not serve does nothing.
func (b *Background) Stop(ctx context.Context) error {
	b.mu.Lock()
	srv, done := b.srv, b.done
	b.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	if err != nil {
		_ = srv.Close()
	}
	<-done
	return err
}
