package token

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/tenant"
)

func TestMain(m *testing.M) { enginetest.Main(m) }

var tables = []string{"api_tokens", "api_token_usage"}

// testTenants are "a" (the default) and "b".
func testTenants(t testing.TB) *tenant.Tenants {
	t.Helper()
	ts, err := tenant.New(tenant.Config{Default: "a", Exporters: []tenant.Exporter{{Match: "192.0.2.1", Tenant: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newStore is a store on db with a key shared by every store of the test
// (they are processes of one deployment) unless hmacKey says otherwise.
func newStore(t testing.TB, db dbapi.DB, change func(*Config, *Deps)) (*Store, *prometheus.Registry) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.HMACKey = strings.Repeat("test-key-", 4)
	cfg.GeneratedKeyFile = t.TempDir() + "/tokens.key"
	reg := prometheus.NewRegistry()
	deps := Deps{DB: db, Tenants: testTenants(t), Registerer: reg}
	if change != nil {
		change(&cfg, &deps)
	}
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

func create(t testing.TB, s *Store, sp Spec) (string, Info) {
	t.Helper()
	sec, info, err := s.Create(context.Background(), sp)
	if err != nil {
		t.Fatalf("create %+v: %v", sp, err)
	}
	return sec, info
}

func refusal(err error) string {
	var te *api.TokenError
	if errors.As(err, &te) {
		return te.Reason
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return ""
}

// A created token authenticates as its principal; the table holds its
// hash, never the secret; a bad token costs no lookup, an unknown one a
// single lookup per cache_ttl.
func TestCreateAuthenticate(t *testing.T) {
	enginetest.Each(t, tables, func(t *testing.T, e enginetest.Engine) {
		ctx := context.Background()
		s, reg := newStore(t, e.DB, nil)
		sec, info := create(t, s, Spec{Name: "grafana", Tenant: "b", Role: api.RoleRead, CreatedBy: "cli:test"})
		if !strings.HasPrefix(info.ID, IDPrefix) || info.State != StateActive || info.Tenant != "b" || info.AllTenants ||
			info.ExpiresAt.Sub(info.CreatedAt) != 90*Day || info.CreatedBy != "cli:test" {
			t.Errorf("info %+v", info)
		}
		p, err := s.Authenticate(ctx, sec)
		if err != nil {
			t.Fatal(err)
		}
		want := api.Principal{TokenID: info.ID, TokenName: "grafana", Tenant: "b", Role: api.RoleRead}
		if p != want {
			t.Errorf("principal %+v, want %+v", p, want)
		}
		if _, err := s.Authenticate(ctx, sec); err != nil {
			t.Fatal(err)
		}
		var stored, withSecret uint64
		if err := dbapi.QueryRow(ctx, e.DB, []any{&stored, &withSecret},
			"SELECT count(), countIf(position(concat(id, name, hash, created_by), ?) > 0) FROM api_tokens", sec); err != nil {
			t.Fatal(err)
		}
		if stored != 1 || withSecret != 0 {
			t.Errorf("api_tokens: %d rows, %d holding the secret; want 1 and 0", stored, withSecret)
		}

		unknown, _ := Generate()
		for _, tt := range []struct{ tok, reason string }{
			{unknown, api.TokenUnknown}, {unknown, api.TokenUnknown},
			{"fhp_short", api.TokenMalformed}, {swap(sec, 9), api.TokenChecksum},
		} {
			if got := refusal(func() error { _, err := s.Authenticate(ctx, tt.tok); return err }()); got != tt.reason {
				t.Errorf("Authenticate(%q) = %q, want %q", tt.tok, got, tt.reason)
			}
		}
		for _, c := range []struct {
			metric, label string
			want          float64
		}{
			{"lookups", "ok", 2}, {"lookups", "unknown", 2}, {"lookups", "malformed", 1}, {"lookups", "checksum", 1},
			// The second use of each well-formed token is answered by the cache.
			{"cache", "miss", 2}, {"cache", "hit", 2},
		} {
			vec := s.metrics.lookups
			if c.metric == "cache" {
				vec = s.metrics.cache
			}
			if got := testutil.ToFloat64(vec.WithLabelValues(c.label)); got != c.want {
				t.Errorf("flowhouse_tokens_%s_total{result=%q} = %g, want %g", c.metric, c.label, got, c.want)
			}
		}
		if n, err := testutil.GatherAndCount(reg, "flowhouse_tokens_lookups_total"); err != nil || n != 7 {
			t.Errorf("flowhouse_tokens_lookups_total series: %d %v", n, err)
		}
	})
}

func TestCreateRefusesBadSpecs(t *testing.T) {
	s, _ := newStore(t, failingDB{}, nil)
	for _, tt := range []struct {
		name  string
		spec  Spec
		field string
	}{
		{"no name", Spec{Name: "  ", Tenant: "a", Role: api.RoleRead}, "name"},
		{"long name", Spec{Name: strings.Repeat("n", 129), Tenant: "a", Role: api.RoleRead}, "name"},
		{"control characters", Spec{Name: "a\nb", Tenant: "a", Role: api.RoleRead}, "name"},
		{"tenant and all", Spec{Name: "x", Tenant: "a", AllTenants: true, Role: api.RoleRead}, "tenant"},
		{"no scope", Spec{Name: "x", Role: api.RoleRead}, "tenant"},
		{"unknown tenant", Spec{Name: "x", Tenant: "c", Role: api.RoleRead}, "tenant"},
		{"bad role", Spec{Name: "x", Tenant: "a", Role: "root"}, "role"},
		{"negative expiry", Spec{Name: "x", Tenant: "a", Role: api.RoleRead, Expires: -time.Hour}, "expires"},
		{"expiry over the max", Spec{Name: "x", Tenant: "a", Role: api.RoleRead, Expires: 367 * Day}, "expires"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := s.Create(context.Background(), tt.spec)
			var se *SpecError
			if !errors.As(err, &se) || se.Field != tt.field {
				t.Errorf("Create: %v, want a SpecError on %s", err, tt.field)
			}
		})
	}
}

// A token revoked through one store (one process) is refused by another
// store on the same database within its cache_ttl, though the other had
// it cached; the revoking store refuses it at once.
func TestRevokeReachesOtherProcesses(t *testing.T) {
	enginetest.Each(t, tables, func(t *testing.T, e enginetest.Engine) {
		ctx := context.Background()
		const ttl = 300 * time.Millisecond
		ttlOf := func(c *Config, _ *Deps) { c.CacheTTL = ttl }
		a, _ := newStore(t, e.DB, ttlOf)
		b, _ := newStore(t, e.DB, ttlOf)
		sec, info := create(t, a, Spec{Name: "ci", AllTenants: true, Role: api.RoleAdmin, CreatedBy: "test"})
		for _, s := range []*Store{a, b} {
			if _, err := s.Authenticate(ctx, sec); err != nil {
				t.Fatal(err)
			}
		}
		revokedAt := time.Now()
		got, err := a.Revoke(ctx, AllScope, info.ID, "cli:test")
		if err != nil {
			t.Fatal(err)
		}
		if got.State != StateRevoked || got.RevokedBy != "cli:test" || got.RevokedAt == nil {
			t.Errorf("revoked info %+v", got)
		}
		if r := refusal(func() error { _, err := a.Authenticate(ctx, sec); return err }()); r != api.TokenRevoked {
			t.Errorf("the revoking store: %q, want revoked at once", r)
		}
		testkit.Eventually(t, "the other store to refuse the revoked token", 10*ttl, func() bool {
			_, err := b.Authenticate(ctx, sec)
			return refusal(err) == api.TokenRevoked
		})
		if lag := time.Since(revokedAt); lag > ttl+500*time.Millisecond { // a poll and a query past ttl, with room for a loaded machine
			t.Errorf("the other store refused it after %s, over cache_ttl %s", lag, ttl)
		}
		// Revoking again changes nothing.
		again, err := b.Revoke(ctx, AllScope, info.ID, "someone else")
		if err != nil || again.RevokedBy != "cli:test" || !again.RevokedAt.Equal(*got.RevokedAt) {
			t.Errorf("second revoke: %+v %v", again, err)
		}
		var versions uint64
		if err := dbapi.QueryRow(ctx, e.DB, []any{&versions}, "SELECT count() FROM api_tokens WHERE id = ?", info.ID); err != nil || versions != 2 {
			t.Errorf("api_tokens rows of the token: %d %v, want 2 (created, revoked)", versions, err)
		}
	})
}

// Expiry is checked against the clock on every request: a cached token
// stops working the second it expires.
func TestExpiry(t *testing.T) {
	enginetest.Each(t, tables, func(t *testing.T, e enginetest.Engine) {
		ctx := context.Background()
		clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
		s, _ := newStore(t, e.DB, func(c *Config, d *Deps) { c.CacheTTL = 3 * time.Hour; d.Now = clk.now })
		sec, info := create(t, s, Spec{Name: "short", Tenant: "a", Role: api.RoleRead, Expires: 2 * time.Hour})
		if want := clk.now().Add(2 * time.Hour); !info.ExpiresAt.Equal(want) {
			t.Fatalf("expires_at %s, want %s", info.ExpiresAt, want)
		}
		if _, err := s.Authenticate(ctx, sec); err != nil {
			t.Fatal(err)
		}
		clk.add(2*time.Hour - time.Second)
		if _, err := s.Authenticate(ctx, sec); err != nil {
			t.Errorf("a second before expiry: %v", err)
		}
		clk.add(time.Second)
		if r := refusal(func() error { _, err := s.Authenticate(ctx, sec); return err }()); r != api.TokenExpired {
			t.Errorf("at expiry: %q, want expired", r)
		}
		if hits := testutil.ToFloat64(s.metrics.cache.WithLabelValues("hit")); hits != 2 {
			t.Errorf("cache hits %g, want 2: expiry must be seen without a lookup", hits)
		}
		list, err := s.List(ctx, AllScope)
		if err != nil || len(list) != 1 || list[0].State != StateExpired {
			t.Errorf("list: %+v %v, want one expired token", list, err)
		}
	})
}

// A tenant's scope sees that tenant's tokens only: not another tenant's,
// not the all-tenants ones, not even by id.
func TestScope(t *testing.T) {
	enginetest.Each(t, tables, func(t *testing.T, e enginetest.Engine) {
		ctx := context.Background()
		s, _ := newStore(t, e.DB, nil)
		_, ta := create(t, s, Spec{Name: "a1", Tenant: "a", Role: api.RoleRead})
		_, tb := create(t, s, Spec{Name: "b1", Tenant: "b", Role: api.RoleAdmin})
		_, tall := create(t, s, Spec{Name: "all", AllTenants: true, Role: api.RoleAdmin})
		ids := func(sc Scope) []string {
			list, err := s.List(ctx, sc)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, in := range list {
				out = append(out, in.ID)
			}
			return out
		}
		// Lists are ordered by creation (whole seconds), then by id: the
		// tokens may be made within one second or across two.
		byCreation := []Info{ta, tb, tall}
		slices.SortFunc(byCreation, func(x, y Info) int {
			if c := x.CreatedAt.Unix() - y.CreatedAt.Unix(); c != 0 {
				return int(c)
			}
			return strings.Compare(x.ID, y.ID)
		})
		var all []string
		for _, in := range byCreation {
			all = append(all, in.ID)
		}
		for _, tt := range []struct {
			scope Scope
			want  []string
		}{
			{AllScope, all},
			{Scope{Tenant: "a"}, []string{ta.ID}},
			{Scope{Tenant: "b"}, []string{tb.ID}},
			{Scope{Tenant: "c"}, nil},
		} {
			got := ids(tt.scope)
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("list %+v: %v, want %v", tt.scope, got, tt.want)
			}
		}
		for _, id := range []string{tb.ID, tall.ID, "tok_000000000000", "not-an-id'"} {
			if _, err := s.Revoke(ctx, Scope{Tenant: "a"}, id, "x"); !errors.Is(err, ErrNotFound) {
				t.Errorf("tenant a revokes %q: %v, want ErrNotFound", id, err)
			}
			if _, err := s.Get(ctx, Scope{Tenant: "a"}, id); !errors.Is(err, ErrNotFound) {
				t.Errorf("tenant a gets %q: %v, want ErrNotFound", id, err)
			}
		}
		if got := ids(AllScope); len(got) != 3 {
			t.Errorf("after refused revokes: %v", got)
		}
		if in, err := s.Revoke(ctx, Scope{Tenant: "b"}, tb.ID, "b admin"); err != nil || in.State != StateRevoked {
			t.Errorf("tenant b revokes its token: %+v %v", in, err)
		}
	})
}

// Uses are written in one batch per interval, one row per token however
// often it was used, and show as last_used_at.
func TestLastUsed(t *testing.T) {
	enginetest.Each(t, tables, func(t *testing.T, e enginetest.Engine) {
		ctx := context.Background()
		clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
		s, _ := newStore(t, e.DB, func(_ *Config, d *Deps) { d.Now = clk.now })
		s1, i1 := create(t, s, Spec{Name: "one", Tenant: "a", Role: api.RoleRead})
		s2, i2 := create(t, s, Spec{Name: "two", Tenant: "a", Role: api.RoleRead})
		_, i3 := create(t, s, Spec{Name: "unused", Tenant: "a", Role: api.RoleRead})
		for range 5 {
			clk.add(time.Second)
			for _, sec := range []string{s1, s2} {
				if _, err := s.Authenticate(ctx, sec); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.usage.flush(ctx); err != nil {
			t.Fatal(err)
		}
		var rows uint64
		if err := dbapi.QueryRow(ctx, e.DB, []any{&rows}, "SELECT count() FROM api_token_usage"); err != nil || rows != 2 {
			t.Errorf("api_token_usage: %d rows %v, want 2 (one per token used)", rows, err)
		}
		list, err := s.List(ctx, Scope{Tenant: "a"})
		if err != nil {
			t.Fatal(err)
		}
		readmeExample(t, e, i1.ID, i2.ID, i3.ID)
		for _, in := range list {
			switch in.ID {
			case i1.ID, i2.ID:
				if in.LastUsedAt == nil || !in.LastUsedAt.Equal(clk.now()) {
					t.Errorf("%s last used %v, want %s", in.Name, in.LastUsedAt, clk.now())
				}
			case i3.ID:
				if in.LastUsedAt != nil {
					t.Errorf("unused token last used %v", in.LastUsedAt)
				}
			}
		}
	})
}

// Started, the store writes uses by itself, and at Stop what is left.
func TestUsageWrittenByStartStop(t *testing.T) {
	e := enginetest.Server(t)
	ctx := context.Background()
	s, _ := newStore(t, e.DB, func(c *Config, _ *Deps) { c.UsageInterval = 100 * time.Millisecond })
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	sec, info := create(t, s, Spec{Name: "one", Tenant: "a", Role: api.RoleRead})
	if _, err := s.Authenticate(ctx, sec); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the use to be written", 5*time.Second, func() bool {
		in, err := s.Get(ctx, AllScope, info.ID)
		return err == nil && in.LastUsedAt != nil
	})
	if _, err := s.Authenticate(ctx, sec); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if p := s.usage.pendingCopy(); len(p) != 0 {
		t.Errorf("after Stop, pending %v", p)
	}
}

// A store whose key differs (another deployment's, or a misconfigured
// process) accepts none of the tokens and lists them as other_key.
func TestOtherKey(t *testing.T) {
	e := enginetest.Server(t)
	ctx := context.Background()
	a, _ := newStore(t, e.DB, nil)
	other, _ := newStore(t, e.DB, func(c *Config, _ *Deps) { c.HMACKey = strings.Repeat("other-key", 4) })
	sec, info := create(t, a, Spec{Name: "x", Tenant: "a", Role: api.RoleRead})
	if r := refusal(func() error { _, err := other.Authenticate(ctx, sec); return err }()); r != api.TokenUnknown {
		t.Errorf("another key: %q, want unknown", r)
	}
	in, err := other.Get(ctx, AllScope, info.ID)
	if err != nil || in.State != StateOtherKey {
		t.Errorf("listed by the other key: %+v %v, want other_key", in, err)
	}
	if in, _ := a.Get(ctx, AllScope, info.ID); in.State != StateActive {
		t.Errorf("listed by its own key: %s", in.State)
	}
}

// A database that cannot be read is not the client's fault: the error
// is not a TokenError (the API answers 503), and nothing is cached.
func TestDatabaseErrorIsNotATokenError(t *testing.T) {
	s, _ := newStore(t, failingDB{}, nil)
	tok, _ := Generate()
	for range 2 {
		_, err := s.Authenticate(context.Background(), tok)
		var te *api.TokenError
		if err == nil || errors.As(err, &te) {
			t.Fatalf("Authenticate with the database down: %v, want a non-token error", err)
		}
	}
	if misses := testutil.ToFloat64(s.metrics.cache.WithLabelValues("miss")); misses != 2 {
		t.Errorf("cache misses %g, want 2 (a failure is not cached)", misses)
	}
	if errs := testutil.ToFloat64(s.metrics.lookups.WithLabelValues("error")); errs != 2 {
		t.Errorf("lookups error %g, want 2", errs)
	}
}

type failingDB struct{}

func (failingDB) Exec(context.Context, string, ...any) error { return errors.New("database down") }
func (failingDB) Query(context.Context, string, ...any) (dbapi.Rows, error) {
	return nil, errors.New("database down")
}

// readmeExample runs README's example query over api_tokens and
// api_token_usage for tenant a: the used tokens have a last use, the
// unused one 0.
func readmeExample(t *testing.T, e enginetest.Engine, used1, used2, unused string) {
	t.Helper()
	q := strings.Replace(testkit.READMEBlock(t, "### `api_token_usage`", "sql"), "'acme'", "'a'", 1)
	rows, err := e.DB.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("README example: %v", err)
	}
	defer rows.Close()
	got := map[string]bool{}
	for rows.Next() {
		var id, name, role string
		var expires, revoked, lastUsed time.Time
		if err := rows.Scan(&id, &name, &role, &expires, &revoked, &lastUsed); err != nil {
			t.Fatal(err)
		}
		got[id] = lastUsed.Unix() > 0
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !got[used1] || !got[used2] || got[unused] {
		t.Errorf("README example: used %v, want %s and %s used, %s not", got, used1, used2, unused)
	}
}
