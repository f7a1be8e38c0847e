package tokenapi_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/apitest"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/tenant"
	"github.com/flowhouse/flowhouse/token"
	"github.com/flowhouse/flowhouse/token/tokenapi"
)

func TestMain(m *testing.M) { enginetest.Main(m) }

// cast are real tokens of the store, made for the test.
type cast struct {
	adminA, adminAll, readA, adminB string
	ids                             map[string]string // secret -> id
}

// start serves the tokens API over a real store, authenticating with it.
func start(t *testing.T, e enginetest.Engine) (*apitest.Client, *token.Store, cast) {
	t.Helper()
	ts, err := tenant.New(tenant.Config{Default: "a", Exporters: []tenant.Exporter{{Match: "192.0.2.1", Tenant: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := token.DefaultConfig()
	cfg.HMACKey = strings.Repeat("api-test-", 4)
	cfg.GeneratedKeyFile = t.TempDir() + "/tokens.key"
	store, err := token.New(cfg, token.Deps{DB: e.DB, Tenants: ts})
	if err != nil {
		t.Fatal(err)
	}
	cs := cast{ids: map[string]string{}}
	for _, m := range []struct {
		dst  *string
		spec token.Spec
	}{
		{&cs.adminA, token.Spec{Name: "admin a", Tenant: "a", Role: api.RoleAdmin}},
		{&cs.adminAll, token.Spec{Name: "admin all", AllTenants: true, Role: api.RoleAdmin}},
		{&cs.readA, token.Spec{Name: "read a", Tenant: "a", Role: api.RoleRead}},
		{&cs.adminB, token.Spec{Name: "admin b", Tenant: "b", Role: api.RoleAdmin}},
	} {
		sec, info, err := store.Create(context.Background(), m.spec)
		if err != nil {
			t.Fatal(err)
		}
		*m.dst, cs.ids[sec] = sec, info.ID
	}
	c := apitest.Serve(t, api.Config{}, store, func(s *api.Server) {
		s.AddSpec("tokens", tokenapi.Spec)
		s.Register(tokenapi.New(tokenapi.Deps{Tokens: store}).Register)
	})
	return c, store, cs
}

type list struct {
	Tokens []token.Info `json:"tokens"`
}

func names(r apitest.Response, t *testing.T) []string {
	t.Helper()
	var l list
	r.JSON(t, &l)
	var out []string
	for _, in := range l.Tokens {
		out = append(out, in.Name)
	}
	slices.Sort(out)
	return out
}

// Who sees which tokens, and who may create and revoke which.
func TestScopes(t *testing.T) {
	enginetest.Each(t, []string{"api_tokens", "api_token_usage"}, func(t *testing.T, e enginetest.Engine) {
		c, _, cs := start(t, e)
		for _, tt := range []struct {
			name, tok, path string
			status          int
			want            []string
		}{
			{"all-tenants admin sees all", cs.adminAll, "/api/v1/tokens", 200, []string{"admin a", "admin all", "admin b", "read a"}},
			{"tenant admin sees its tenant's", cs.adminA, "/api/v1/tokens", 200, []string{"admin a", "read a"}},
			{"tenant admin filtering on another tenant sees nothing", cs.adminA, "/api/v1/tokens?tenant=b", 200, nil},
			{"tenant admin filtering on an unknown tenant sees nothing", cs.adminA, "/api/v1/tokens?tenant=zz", 200, nil},
			{"all-tenants admin filters by tenant", cs.adminAll, "/api/v1/tokens?tenant=b", 200, []string{"admin b"}},
			{"filter by state", cs.adminAll, "/api/v1/tokens?state=revoked", 200, nil},
			{"read token may not list", cs.readA, "/api/v1/tokens", 403, nil},
			{"unknown parameter", cs.adminAll, "/api/v1/tokens?tenantt=a", 400, nil},
			{"unknown state", cs.adminAll, "/api/v1/tokens?state=dead", 400, nil},
		} {
			t.Run(tt.name, func(t *testing.T) {
				r := c.WithToken(tt.tok).Get(tt.path)
				if r.Status != tt.status {
					t.Fatalf("%d, want %d: %s", r.Status, tt.status, r.Body)
				}
				if r.Status == 200 {
					if got := names(r, t); !slices.Equal(got, tt.want) {
						t.Errorf("tokens %q, want %q", got, tt.want)
					}
				}
			})
		}

		for _, tt := range []struct {
			name, tok string
			body      any
			status    int
		}{
			{"tenant admin, own tenant implied", cs.adminA, map[string]any{"name": "grafana", "role": "read"}, 201},
			{"tenant admin, own tenant", cs.adminA, map[string]any{"name": "ci", "tenant": "a", "role": "admin", "expires_in": "30d"}, 201},
			{"tenant admin, other tenant", cs.adminA, map[string]any{"name": "x", "tenant": "b", "role": "read"}, 403},
			{"tenant admin, unknown tenant", cs.adminA, map[string]any{"name": "x", "tenant": "zz", "role": "read"}, 403},
			{"tenant admin, all tenants", cs.adminA, map[string]any{"name": "x", "all_tenants": true, "role": "read"}, 403},
			{"read token", cs.readA, map[string]any{"name": "x", "role": "read"}, 403},
			{"all admin, unknown tenant", cs.adminAll, map[string]any{"name": "x", "tenant": "zz", "role": "read"}, 400},
			{"all admin, no scope", cs.adminAll, map[string]any{"name": "x", "role": "read"}, 400},
			{"all admin, all tenants", cs.adminAll, map[string]any{"name": "fleet", "all_tenants": true, "role": "read"}, 201},
			{"bad role", cs.adminAll, map[string]any{"name": "x", "tenant": "a", "role": "root"}, 400},
			{"bad expiry", cs.adminAll, map[string]any{"name": "x", "tenant": "a", "role": "read", "expires_in": "soon"}, 400},
			{"expiry over max", cs.adminAll, map[string]any{"name": "x", "tenant": "a", "role": "read", "expires_in": "400d"}, 400},
			{"unknown field", cs.adminAll, map[string]any{"name": "x", "tenant": "a", "role": "read", "expires": "1d"}, 400},
			{"no name", cs.adminAll, map[string]any{"tenant": "a", "role": "read"}, 400},
		} {
			t.Run("create/"+tt.name, func(t *testing.T) {
				r := c.WithToken(tt.tok).Do(http.MethodPost, "/api/v1/tokens", tt.body)
				if r.Status != tt.status {
					t.Fatalf("%d, want %d: %s", r.Status, tt.status, r.Body)
				}
				if r.Status != 201 {
					if r.ErrorCode() == "" {
						t.Errorf("no error code: %s", r.Body)
					}
					return
				}
				var got tokenapi.Created
				r.JSON(t, &got)
				if token.Parse(got.Secret) != nil || r.Header.Get("Cache-Control") != "no-store" {
					t.Errorf("secret %q, Cache-Control %q", got.Secret, r.Header.Get("Cache-Control"))
				}
				// The new token works, and says what it is.
				self := c.WithToken(got.Secret).Get("/api/v1/tokens/self")
				var in token.Info
				self.JSON(t, &in)
				if self.Status != 200 || in.ID != got.Token.ID || in.Role != got.Token.Role || in.Tenant != got.Token.Tenant {
					t.Errorf("self: %d %+v, want %+v", self.Status, in, got.Token)
				}
				if !strings.HasPrefix(in.CreatedBy, "token:"+cs.ids[tt.tok]+" (") {
					t.Errorf("created_by %q, want the creating token's id %s", in.CreatedBy, cs.ids[tt.tok])
				}
			})
		}
	})
}

// Revocation is scoped: another tenant's token is 404, exactly as one
// that does not exist; a revoked token is refused at once.
func TestRevoke(t *testing.T) {
	enginetest.Each(t, []string{"api_tokens", "api_token_usage"}, func(t *testing.T, e enginetest.Engine) {
		c, _, cs := start(t, e)
		a := c.WithToken(cs.adminA)
		for _, tt := range []struct {
			name, id string
			status   int
		}{
			{"another tenant's", cs.ids[cs.adminB], 404},
			{"the all-tenants one", cs.ids[cs.adminAll], 404},
			{"unknown", "tok_000000000000", 404},
			{"not an id", "'; DROP TABLE api_tokens", 404},
		} {
			r := a.Do(http.MethodDelete, "/api/v1/tokens/"+strings.ReplaceAll(tt.id, " ", "%20"), nil)
			if r.Status != tt.status || r.ErrorCode() != api.CodeNotFound {
				t.Errorf("%s: %d %s, want %d", tt.name, r.Status, r.Body, tt.status)
			}
		}
		if r := c.WithToken(cs.readA).Do(http.MethodDelete, "/api/v1/tokens/"+cs.ids[cs.readA], nil); r.Status != 403 {
			t.Errorf("read token revoking: %d", r.Status)
		}
		if r := c.WithToken(cs.readA).Get("/api/v1/tokens/self"); r.Status != 200 {
			t.Errorf("read token before revocation: %d", r.Status)
		}
		r := a.Do(http.MethodDelete, "/api/v1/tokens/"+cs.ids[cs.readA], nil)
		var in token.Info
		r.JSON(t, &in)
		if r.Status != 200 || in.State != token.StateRevoked || in.RevokedBy != "token:"+cs.ids[cs.adminA]+" (admin a)" {
			t.Fatalf("revoke: %d %+v", r.Status, in)
		}
		if r := c.WithToken(cs.readA).Get("/api/v1/tokens/self"); r.Status != 401 || !strings.Contains(string(r.Body), "revoked") {
			t.Errorf("revoked token: %d %s, want 401 revoked", r.Status, r.Body)
		}
		if got := names(c.WithToken(cs.adminAll).Get("/api/v1/tokens?state=revoked"), t); !slices.Equal(got, []string{"read a"}) {
			t.Errorf("revoked tokens %q", got)
		}
		// Still there for the other tenant.
		if r := c.WithToken(cs.adminB).Get("/api/v1/tokens/self"); r.Status != 200 {
			t.Errorf("tenant b's admin after the refused revocations: %d", r.Status)
		}
	})
}

// A list answered with an ETag is 304 to a poller until something changes.
func TestListETag(t *testing.T) {
	c, _, cs := start(t, enginetest.Server(t))
	all := c.WithToken(cs.adminAll)
	first := all.Get("/api/v1/tokens")
	tag := first.Header.Get("ETag")
	if r := all.Get("/api/v1/tokens", "If-None-Match", tag); r.Status != 304 {
		t.Errorf("unchanged: %d, want 304", r.Status)
	}
	all.Do(http.MethodDelete, "/api/v1/tokens/"+cs.ids[cs.readA], nil)
	if r := all.Get("/api/v1/tokens", "If-None-Match", tag); r.Status != 200 {
		t.Errorf("after a revocation: %d, want 200", r.Status)
	}
}
