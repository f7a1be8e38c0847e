// Package token is flowhouse's API tokens: their format (a prefix that
// secret scanners know, random base62, a checksum), their store (only an
// HMAC of each secret, in the api_tokens table), their lifecycle
// (creation with an expiry, revocation, last use) and the authenticator
// of the API, which caches lookups for a few seconds.
//
// Tokens are modelled on Grafana's service account tokens and GitHub's
// and GitLab's: a role (read or admin), a scope (one tenant or all of
// them), an expiry by default, a last-used time, and revocation that
// every process sharing the database honours within tokens.cache_ttl.
package token

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/secret"
	"github.com/flowhouse/flowhouse/tenant"
)

// Deps are what the store uses but does not own.
type Deps struct {
	DB dbapi.DB
	// Tenants are the configured tenants; a token's tenant must be one.
	Tenants *tenant.Tenants
	// Secrets locate the configuration's secrets key, from which the
	// tokens' key is derived when tokens.hmac_key is not set.
	Secrets secret.Config
	Logger  *slog.Logger
	// Registerer receives the flowhouse_tokens_* metrics; nil: none.
	Registerer prometheus.Registerer
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Store creates, lists, revokes and authenticates tokens.
type Store struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	cache   *cache
	usage   *usage

	keyMu sync.Mutex
	key   hmacKey
}

// New builds the store; it does no I/O: the key is read or generated at
// Start, or at first use by a store that is not started (the CLI's).
func New(cfg Config, deps Deps) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	if deps.DB == nil {
		return nil, errors.New("tokens: no database")
	}
	s := &Store{cfg: cfg, deps: deps, log: deps.Logger, now: deps.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.metrics = newMetrics(deps.Registerer)
	s.cache = newCache(cfg.CacheTTL, cfg.CacheEntries)
	s.usage = newUsage(s)
	return s, nil
}

// Start loads the key, so that one that does not load stops the start,
// and begins writing last-used times. A key still to be generated is
// generated at first use: a flowhouse that never sees a token writes no
// key file.
func (s *Store) Start(context.Context) error {
	if err := s.loadKey(false); err != nil {
		return err
	}
	s.usage.start()
	return nil
}

// Stop writes the last-used times not written yet.
func (s *Store) Stop(ctx context.Context) error { return s.usage.stop(ctx) }

// hmacKey is the key, loaded once; a failure is retried at the next use.
func (s *Store) hmacKey() (hmacKey, error) {
	if err := s.loadKey(true); err != nil {
		return hmacKey{}, err
	}
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	return s.key, nil
}

func (s *Store) loadKey(generate bool) error {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if s.key.key != nil {
		return nil
	}
	k, err := loadKey(s.cfg, s.deps.Secrets, nil, generate)
	if err != nil || k.key == nil {
		return err
	}
	s.key = k
	s.log.Info("api token key loaded", "source", k.source, "key_id", k.id())
	return nil
}

// State of a token.
type State string

// States. OtherKey is a token whose hash was made with another key than
// this process's: it cannot authenticate here (processes of one
// deployment must share the key).
const (
	StateActive   State = "active"
	StateExpired  State = "expired"
	StateRevoked  State = "revoked"
	StateOtherKey State = "other_key"
)

// Info is what is known of a token, never its secret.
type Info struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Tenant     string     `json:"tenant,omitempty"`
	AllTenants bool       `json:"all_tenants"`
	Role       api.Role   `json:"role"`
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by"`
	ExpiresAt  time.Time  `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	RevokedBy  string     `json:"revoked_by,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	State      State      `json:"state"`
}

// Scope is which tokens a caller sees: all, or one tenant's (never the
// all-tenants tokens then).
type Scope struct {
	AllTenants bool
	Tenant     string
}

// ScopeOf is the scope of a principal.
func ScopeOf(p api.Principal) Scope { return Scope{AllTenants: p.AllTenants, Tenant: p.Tenant} }

// AllScope sees every token.
var AllScope = Scope{AllTenants: true}

// where is the scope as a SQL condition with its arguments.
func (sc Scope) where() (string, []any) {
	if sc.AllTenants {
		return "1", nil
	}
	return "all_tenants = 0 AND tenant = ?", []any{sc.Tenant}
}

// Spec is a token to create.
type Spec struct {
	Name string
	// Tenant the token sees, or AllTenants; exactly one of them.
	Tenant     string
	AllTenants bool
	Role       api.Role
	// Expires is the lifetime; 0 is tokens.default_expiry.
	Expires time.Duration
	// CreatedBy is who asks: a token's id and name, or cli:<user>.
	CreatedBy string
}

// SpecError is a Spec that cannot be created: the caller's mistake.
type SpecError struct {
	Field, Msg string
}

func (e *SpecError) Error() string { return e.Field + ": " + e.Msg }

// ErrNotFound is a token that does not exist in the caller's scope.
var ErrNotFound = errors.New("no such token")

// maxNameLen bounds a token's name, in bytes.
const maxNameLen = 128

// minExpiry is the shortest lifetime: the table keeps seconds.
const minExpiry = time.Minute

func (s *Store) checkSpec(sp *Spec) error {
	sp.Name = strings.TrimSpace(sp.Name)
	switch {
	case sp.Name == "":
		return &SpecError{"name", "required: say what the token is for"}
	case len(sp.Name) > maxNameLen:
		return &SpecError{"name", fmt.Sprintf("longer than %d bytes", maxNameLen)}
	case strings.IndexFunc(sp.Name, unicode.IsControl) >= 0:
		return &SpecError{"name", "has control characters"}
	case sp.AllTenants && sp.Tenant != "":
		return &SpecError{"tenant", "give a tenant or all_tenants, not both"}
	case !sp.AllTenants && sp.Tenant == "":
		return &SpecError{"tenant", "required: the tenant the token sees (or all_tenants)"}
	case !sp.AllTenants && (s.deps.Tenants == nil || !s.deps.Tenants.Has(sp.Tenant)):
		return &SpecError{"tenant", fmt.Sprintf("%q is not a configured tenant", truncate(sp.Tenant))}
	case !sp.Role.Valid():
		return &SpecError{"role", fmt.Sprintf("%q is not read or admin", truncate(string(sp.Role)))}
	case sp.Expires == 0:
		sp.Expires = s.cfg.DefaultExpiry
	case sp.Expires < minExpiry:
		return &SpecError{"expires", fmt.Sprintf("%s is shorter than %s", sp.Expires, minExpiry)}
	case sp.Expires > s.cfg.MaxExpiry:
		return &SpecError{"expires", fmt.Sprintf("%s is longer than tokens.max_expiry (%s)", FormatDuration(sp.Expires), FormatDuration(s.cfg.MaxExpiry))}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Create makes a token: its secret, shown to the caller once and kept
// nowhere, and what is stored of it.
func (s *Store) Create(ctx context.Context, sp Spec) (string, Info, error) {
	if err := s.checkSpec(&sp); err != nil {
		return "", Info{}, err
	}
	k, err := s.hmacKey()
	if err != nil {
		return "", Info{}, err
	}
	secretText, err := Generate()
	if err != nil {
		return "", Info{}, err
	}
	id, err := newID()
	if err != nil {
		return "", Info{}, err
	}
	now := s.now().UTC().Truncate(time.Second)
	r := row{id: id, name: sp.Name, tenant: sp.Tenant, allTenants: sp.AllTenants, role: sp.Role,
		hash: k.hash(secretText), keyID: k.id(), createdAt: now, createdBy: sp.CreatedBy,
		expiresAt: now.Add(sp.Expires).Truncate(time.Second), version: 1}
	if err := s.insert(ctx, r); err != nil {
		return "", Info{}, err
	}
	s.metrics.created.Inc()
	s.log.Info("api token created", "id", id, "name", sp.Name, "tenant", sp.Tenant, "all_tenants", sp.AllTenants,
		"role", sp.Role, "expires_at", r.expiresAt, "created_by", sp.CreatedBy)
	return secretText, s.info(r, nil, k.id()), nil
}

// List is every token of scope, the oldest first, with its last use.
func (s *Store) List(ctx context.Context, sc Scope) ([]Info, error) {
	k, err := s.hmacKey()
	if err != nil {
		return nil, err
	}
	cond, args := sc.where()
	rows, err := s.rows(ctx, cond, args...)
	if err != nil {
		return nil, err
	}
	used, err := s.lastUsed(ctx, cond, args)
	if err != nil {
		return nil, err
	}
	out := make([]Info, len(rows))
	for i, r := range rows {
		var lu *time.Time
		if t, ok := used[r.id]; ok {
			lu = &t
		}
		out[i] = s.info(r, lu, k.id())
	}
	return out, nil
}

// Get is one token of scope; ErrNotFound when scope does not see it.
func (s *Store) Get(ctx context.Context, sc Scope, id string) (Info, error) {
	k, err := s.hmacKey()
	if err != nil {
		return Info{}, err
	}
	r, err := s.one(ctx, sc, id)
	if err != nil {
		return Info{}, err
	}
	used, err := s.lastUsed(ctx, "id = ?", []any{id})
	if err != nil {
		return Info{}, err
	}
	var lu *time.Time
	if t, ok := used[id]; ok {
		lu = &t
	}
	return s.info(r, lu, k.id()), nil
}

// Revoke ends a token of scope, at once on this process and within
// tokens.cache_ttl on every other; by says who did it. Revoking a
// revoked token changes nothing.
func (s *Store) Revoke(ctx context.Context, sc Scope, id, by string) (Info, error) {
	k, err := s.hmacKey()
	if err != nil {
		return Info{}, err
	}
	r, err := s.one(ctx, sc, id)
	if err != nil {
		return Info{}, err
	}
	if r.revokedAt.IsZero() {
		r.revokedAt, r.revokedBy = s.now().UTC().Truncate(time.Second), by
		r.version++
		if err := s.insert(ctx, r); err != nil {
			return Info{}, err
		}
		s.metrics.revoked.Inc()
		s.log.Info("api token revoked", "id", id, "name", r.name, "revoked_by", by)
	}
	s.cache.dropID(id)
	return s.info(r, nil, k.id()), nil
}

func (s *Store) one(ctx context.Context, sc Scope, id string) (row, error) {
	if !ValidID(id) {
		return row{}, ErrNotFound
	}
	cond, args := sc.where()
	rows, err := s.rows(ctx, "id = ? AND "+cond, append([]any{id}, args...)...)
	if err != nil {
		return row{}, err
	}
	if len(rows) == 0 {
		return row{}, ErrNotFound
	}
	return rows[0], nil
}

func (s *Store) info(r row, lastUsed *time.Time, keyID string) Info {
	in := Info{ID: r.id, Name: r.name, Tenant: r.tenant, AllTenants: r.allTenants, Role: r.role,
		CreatedAt: r.createdAt, CreatedBy: r.createdBy, ExpiresAt: r.expiresAt, RevokedBy: r.revokedBy,
		LastUsedAt: lastUsed, State: StateActive}
	switch {
	case !r.revokedAt.IsZero():
		t := r.revokedAt
		in.RevokedAt, in.State = &t, StateRevoked
	case !s.now().Before(r.expiresAt):
		in.State = StateExpired
	case r.keyID != keyID:
		in.State = StateOtherKey
	}
	return in
}

// Manager is what manages tokens: the Store, and the control socket's
// client, which reaches the Store of a running flowhouse serve.
type Manager interface {
	Create(ctx context.Context, sp Spec) (string, Info, error)
	List(ctx context.Context, sc Scope) ([]Info, error)
	Get(ctx context.Context, sc Scope, id string) (Info, error)
	Revoke(ctx context.Context, sc Scope, id, by string) (Info, error)
}

var _ Manager = (*Store)(nil)
