package chtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
)

var shared struct {
	once sync.Once
	mu   sync.Mutex
	srv  *Server
	err  error
}

// Shared returns the server shared by all tests of this binary, starting
// it on first use. Without Main it is killed when the binary exits but its
// temporary directory is left for the next run to sweep.
func Shared() (*Server, error) {
	shared.once.Do(func() {
		srv, err := Start(context.Background(), Options{})
		shared.mu.Lock()
		shared.srv, shared.err = srv, err
		shared.mu.Unlock()
	})
	return shared.srv, shared.err
}

// Main runs the tests and then stops the shared server, if any test
// started it. Call it from TestMain.
func Main(m *testing.M) { MainThen(m, nil) }

// MainThen is Main with after run once the tests end, before the server
// stops (to close what the tests kept open across tests).
func MainThen(m *testing.M, after func()) {
	code := m.Run()
	if after != nil {
		after()
	}
	shared.mu.Lock()
	srv := shared.srv
	shared.mu.Unlock()
	if srv != nil {
		if err := srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "chtest: stop server: %v\n", err)
		}
	}
	os.Exit(code)
}

// SharedServer returns the shared server, or fails the test when it cannot start.
func SharedServer(tb testing.TB) *Server {
	tb.Helper()
	srv, err := Shared()
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return srv
}

// Addr is the native address of the shared server; it fails the test
// when no server can be started.
func Addr(tb testing.TB) string {
	tb.Helper()
	return SharedServer(tb).Addr()
}

// Database returns the shared server's address and a fresh database on
// it, dropped when the test ends. This is what tests in other packages
// (end-to-end tests) use to point flowhouse at a server.
func Database(tb testing.TB) (addr, database string) {
	tb.Helper()
	srv := SharedServer(tb)
	return srv.Addr(), srv.NewDatabase(tb)
}
