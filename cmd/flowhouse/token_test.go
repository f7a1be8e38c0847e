package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/config"
	"github.com/flowhouse/flowhouse/internal/apitest"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/token"
	"github.com/flowhouse/flowhouse/token/tokenapi"
)

var secretLine = regexp.MustCompile(`(?m)^token: +(fhp_[0-9A-Za-z]{42})$`)
var idLine = regexp.MustCompile(`(?m)^id: +(tok_[0-9A-Za-z]{12})$`)

// createToken runs flowhouse token create and returns the secret and id
// it printed.
func createToken(t *testing.T, args ...string) (secret, id string) {
	t.Helper()
	code, out, errs := runCLI(t, append([]string{"token", "create"}, args...)...)
	if code != 0 {
		t.Fatalf("token create %q: exit %d\n%s%s", args, code, out, errs)
	}
	s, i := secretLine.FindStringSubmatch(out), idLine.FindStringSubmatch(out)
	if s == nil || i == nil || !strings.Contains(out, "shown only once") {
		t.Fatalf("token create printed:\n%s", out)
	}
	if token.Parse(s[1]) != nil {
		t.Fatalf("the secret printed does not parse: %q", s[1])
	}
	return s[1], i[1]
}

// self is GET /api/v1/tokens/self with the token: its status and id.
func self(t *testing.T, httpAddr, secret string) (int, string) {
	t.Helper()
	r := apitest.NewClient(t, "http://"+httpAddr).WithToken(secret).Get("/api/v1/tokens/self")
	var in token.Info
	if r.Status == 200 {
		r.JSON(t, &in)
	}
	return r.Status, in.ID
}

// serveAgain runs serve on the configuration of an earlier server (its
// data directory), as a restart does.
func serveAgain(t *testing.T, cfg *config.Config) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	up := make(chan struct{})
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() {
		s.done <- runServer(ctx, cfg, log, hooks{started: func(r running) { s.http, s.db = r.httpAddr, r.db; close(up) }})
	}()
	select {
	case <-up:
	case err := <-s.done:
		t.Fatalf("serve ended at start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not start within 60s")
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

// On the embedded engine, flowhouse token goes through serve's control
// socket while serve runs, and opens the data directory itself when it
// does not; the tokens it makes work on the API either way.
func TestTokenCLIEmbedded(t *testing.T) {
	cleanEnv(t)
	t.Setenv("FLOWHOUSE_TOKENS_GENERATED_KEY_FILE", filepath.Join(t.TempDir(), "tokens.key"))
	srv := startServerWith(t, "embedded", "")
	sock := srv.cfg.Tokens.SocketPath(srv.cfg.ClickHouse.Embedded.Path)
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("serve's control socket %s: %v", sock, err)
	}

	secret, id := createToken(t, "--tenant", "default", "--role", "admin", "--name", "through the socket", "--expires", "30d")
	if status, got := self(t, srv.http, secret); status != 200 || got != id {
		t.Fatalf("the new token on the API: %d %q, want 200 %s", status, got, id)
	}
	code, out, errs := runCLI(t, "token", "list", "--json")
	var list []token.Info
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].ID != id ||
		list[0].CreatedBy != cliUser() || list[0].ExpiresAt.Sub(list[0].CreatedAt) != 30*token.Day {
		t.Fatalf("token list --json: exit %d %q %q", code, out, errs)
	}
	code, out, _ = runCLI(t, "token", "list")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "LAST USED") ||
		!strings.Contains(lines[1], id) || !strings.Contains(lines[1], "tenant default") || !strings.HasSuffix(lines[1], "active") {
		t.Errorf("token list: exit %d\n%s", code, out)
	}
	if code, out, errs := runCLI(t, "token", "revoke", id); code != 0 || !strings.Contains(out, "revoked "+id) {
		t.Fatalf("token revoke: exit %d %q %q", code, out, errs)
	}
	// Revoked through serve's own store: refused at once.
	if status, _ := self(t, srv.http, secret); status != 401 {
		t.Errorf("the revoked token: %d, want 401", status)
	}

	// With the socket off, serve holds the directory: the command says so.
	t.Setenv("FLOWHOUSE_TOKENS_CONTROL_SOCKET", "")
	if code, _, errs := runCLI(t, "token", "list"); code != 1 || !strings.Contains(errs, "is held by process") {
		t.Errorf("socket off while serve runs: exit %d %q", code, errs)
	}
	t.Setenv("FLOWHOUSE_TOKENS_CONTROL_SOCKET", token.AutoSocket)

	// Serve stopped: the command opens the directory itself.
	srv.stop(t)
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket outlived serve: %v", err)
	}
	secret2, id2 := createToken(t, "--all-tenants", "--role", "read", "--name", "directly")
	again := serveAgain(t, srv.cfg)
	if status, got := self(t, again.http, secret2); status != 200 || got != id2 {
		t.Errorf("a token made without serve, on serve: %d %q", status, got)
	}
	if status, _ := self(t, again.http, secret); status != 401 {
		t.Errorf("the revoked token after a restart: %d, want 401", status)
	}
}

// On a ClickHouse server, flowhouse token opens the database itself,
// beside a running serve, which accepts the token and, once revoked by
// the command, refuses it within tokens.cache_ttl.
func TestTokenCLIServer(t *testing.T) {
	cleanEnv(t)
	t.Setenv("FLOWHOUSE_TOKENS_GENERATED_KEY_FILE", filepath.Join(t.TempDir(), "tokens.key"))
	t.Setenv("FLOWHOUSE_TOKENS_CACHE_TTL", "500ms")
	srv := startServerWith(t, "server", "")
	if sock := srv.cfg.Tokens.SocketPath(srv.cfg.ClickHouse.Embedded.Path); fileExists(sock) {
		t.Errorf("serve on a server opened a control socket at %s", sock)
	}
	secret, id := createToken(t, "--all-tenants", "--role", "admin", "--name", "direct")
	if status, got := self(t, srv.http, secret); status != 200 || got != id {
		t.Fatalf("the new token on the API: %d %q", status, got)
	}
	// The token works on the API: it creates another.
	c := apitest.NewClient(t, "http://"+srv.http).WithToken(secret)
	r := c.Do("POST", "/api/v1/tokens", map[string]any{"name": "from the api", "tenant": "default", "role": "read"})
	var made tokenapi.Created
	r.JSON(t, &made)
	if r.Status != 201 || made.Token.CreatedBy != "token:"+id+" (direct)" {
		t.Fatalf("create through the API: %d %s", r.Status, r.Body)
	}
	if code, out, _ := runCLI(t, "token", "list", "--tenant", "default"); code != 0 || !strings.Contains(out, made.Token.ID) || strings.Contains(out, id) {
		t.Errorf("token list --tenant default: exit %d\n%s", code, out)
	}
	if code, _, errs := runCLI(t, "token", "revoke", id); code != 0 {
		t.Fatalf("token revoke: exit %d %q", code, errs)
	}
	testkit.Eventually(t, "serve to refuse the token revoked by the command", 10*time.Second, func() bool {
		status, _ := self(t, srv.http, secret)
		return status == 401
	})
	for _, tt := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"token", "revoke", "tok_000000000000"}, 1, "no such token"},
		{[]string{"token", "create", "--tenant", "nope", "--role", "read", "--name", "x"}, 2, `tenant: "nope" is not a configured tenant`},
		{[]string{"token", "create", "--role", "read", "--name", "x"}, 2, "give --tenant T or --all-tenants"},
		{[]string{"token", "create", "--tenant", "default", "--role", "god", "--name", "x"}, 2, "is not read or admin"},
		{[]string{"token", "create", "--tenant", "default", "--role", "read", "--name", "x", "--expires", "400d"}, 2, "longer than tokens.max_expiry"},
		{[]string{"token", "create", "--tenant", "default", "--role", "read", "--name", "x", "--expires", "soon"}, 2, "--expires"},
		{[]string{"token", "frobnicate"}, 2, "unknown subcommand"},
		{[]string{"token", "revoke"}, 2, "give one token id"},
	} {
		if code, _, errs := runCLI(t, tt.args...); code != tt.code || !strings.Contains(errs, tt.err) {
			t.Errorf("%q: exit %d %q, want %d and %q", tt.args, code, errs, tt.code, tt.err)
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
