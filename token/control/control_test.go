package control_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/tenant"
	"github.com/flowhouse/flowhouse/token"
	"github.com/flowhouse/flowhouse/token/control"
)

func TestMain(m *testing.M) { enginetest.Main(m) }

func newStore(t *testing.T) *token.Store {
	t.Helper()
	ts, err := tenant.New(tenant.Config{Default: "a"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := token.DefaultConfig()
	cfg.HMACKey = strings.Repeat("control-", 5)
	s, err := token.New(cfg, token.Deps{DB: enginetest.Server(t).DB, Tenants: ts})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startServer(t *testing.T, path string, m token.Manager) *control.Server {
	t.Helper()
	s := control.New(path, control.Deps{Tokens: m})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

// Through the socket, a client creates, lists, gets and revokes tokens
// of the serving store; errors come back as the store gave them.
func TestThroughTheSocket(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	path := filepath.Join(t.TempDir(), "flowhouse.sock")
	srv := startServer(t, path, store)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v mode %v, want a socket 0600", err, fi.Mode())
	}
	c, err := control.Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sec, info, err := c.Create(ctx, token.Spec{Name: "via socket", Tenant: "a", Role: api.RoleAdmin, Expires: 7 * token.Day, CreatedBy: "cli:test"})
	if err != nil {
		t.Fatal(err)
	}
	if info.ExpiresAt.Sub(info.CreatedAt) != 7*token.Day || info.CreatedBy != "cli:test" {
		t.Errorf("info %+v", info)
	}
	p, err := store.Authenticate(ctx, sec)
	if err != nil || p.TokenID != info.ID || p.Role != api.RoleAdmin {
		t.Fatalf("the secret from the socket: %+v %v", p, err)
	}
	for _, sc := range []token.Scope{token.AllScope, {Tenant: "a"}} {
		if list, err := c.List(ctx, sc); err != nil || len(list) != 1 || list[0].ID != info.ID {
			t.Errorf("list %+v: %+v %v", sc, list, err)
		}
	}
	if list, err := c.List(ctx, token.Scope{Tenant: "b"}); err != nil || len(list) != 0 {
		t.Errorf("list of tenant b: %+v %v", list, err)
	}
	if _, _, err := c.Create(ctx, token.Spec{Name: "x", Tenant: "nope", Role: api.RoleRead}); !isSpecError(err, "tenant") {
		t.Errorf("unknown tenant: %v, want a SpecError on tenant", err)
	}
	if _, err := c.Revoke(ctx, token.AllScope, "tok_000000000000", "x"); !errors.Is(err, token.ErrNotFound) {
		t.Errorf("revoke unknown: %v", err)
	}
	in, err := c.Revoke(ctx, token.AllScope, info.ID, "cli:test")
	if err != nil || in.State != token.StateRevoked || in.RevokedBy != "cli:test" {
		t.Errorf("revoke: %+v %v", in, err)
	}
	if _, err := store.Authenticate(ctx, sec); err == nil {
		t.Error("the revoked token still authenticates on the serving store")
	}
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Stop the socket file is still there: %v", err)
	}
	if _, err := control.Dial(ctx, path); !errors.Is(err, control.ErrNoServer) {
		t.Errorf("dial after Stop: %v, want ErrNoServer", err)
	}
}

func isSpecError(err error, field string) bool {
	var se *token.SpecError
	return errors.As(err, &se) && se.Field == field
}

// A socket file left by a process that died is replaced; a live one is
// another flowhouse's and refused, as is a path that is not a socket.
func TestStartOverExistingFiles(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	dir := t.TempDir()

	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	startServer(t, stale, store)
	if _, err := control.Dial(ctx, stale); err != nil {
		t.Errorf("over a stale socket: %v", err)
	}

	second := control.New(stale, control.Deps{Tokens: store})
	if err := second.Start(ctx); err == nil || !strings.Contains(err.Error(), "another flowhouse serves tokens") {
		t.Errorf("second server on a live socket: %v", err)
	}
	if _, err := control.Dial(ctx, stale); err != nil {
		t.Errorf("the first server after the refused second: %v", err)
	}

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := control.New(file, control.Deps{Tokens: store}).Start(ctx); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "x" {
		t.Error("the regular file was changed")
	}
	if _, err := control.Dial(ctx, filepath.Join(dir, "missing.sock")); !errors.Is(err, control.ErrNoServer) {
		t.Errorf("dial a missing socket: %v", err)
	}
	off := control.New("", control.Deps{Tokens: store})
	if err := off.Start(ctx); err != nil {
		t.Errorf("off: %v", err)
	}
	if err := off.Stop(ctx); err != nil {
		t.Errorf("stop off: %v", err)
	}
}
