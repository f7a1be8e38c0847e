package token

import (
	"context"
	"crypto/subtle"
	"errors"
	"sync"
	"time"

	"github.com/flowhouse/flowhouse/api"
)

// Authenticate implements api.Authenticator: the token's shape and
// checksum first (no lookup for a malformed or mistyped token), then its
// hash, looked up in the cache or else the table, then revocation and
// expiry. Expiry is checked against the clock on every call, not only
// when the cache is refreshed. An error that is not an *api.TokenError
// is the database's (the API answers 503).
func (s *Store) Authenticate(ctx context.Context, tok string) (api.Principal, error) {
	if err := Parse(tok); err != nil {
		var te *api.TokenError
		if errors.As(err, &te) {
			s.metrics.lookups.WithLabelValues(te.Reason).Inc()
		}
		return api.Principal{}, err
	}
	k, err := s.hmacKey()
	if err != nil {
		s.metrics.lookups.WithLabelValues("error").Inc()
		return api.Principal{}, err
	}
	h := k.hash(tok)
	now := s.now()
	r, hit := s.cache.get(h, now)
	if hit {
		s.metrics.cache.WithLabelValues("hit").Inc()
	} else {
		s.metrics.cache.WithLabelValues("miss").Inc()
		if r, err = s.lookup(ctx, h); err != nil {
			s.metrics.lookups.WithLabelValues("error").Inc()
			return api.Principal{}, err
		}
		s.cache.put(h, r, now)
	}
	reason := ""
	switch {
	case r == nil || subtle.ConstantTimeCompare([]byte(r.hash), []byte(h)) != 1:
		reason = api.TokenUnknown
	case !r.revokedAt.IsZero():
		reason = api.TokenRevoked
	case !now.Before(r.expiresAt):
		reason = api.TokenExpired
	}
	if reason != "" {
		s.metrics.lookups.WithLabelValues(reason).Inc()
		return api.Principal{}, &api.TokenError{Reason: reason}
	}
	s.metrics.lookups.WithLabelValues("ok").Inc()
	s.usage.record(r.id, now)
	return api.Principal{TokenID: r.id, TokenName: r.name, Tenant: r.tenant, AllTenants: r.allTenants, Role: r.role}, nil
}

// lookup is the token of hash h, nil when there is none.
func (s *Store) lookup(ctx context.Context, h string) (*row, error) {
	rows, err := s.rows(ctx, "hash = ?", h)
	if err != nil {
		return nil, err
	}
	for i := range rows {
		if subtle.ConstantTimeCompare([]byte(rows[i].hash), []byte(h)) == 1 {
			return &rows[i], nil
		}
	}
	return nil, nil
}

// cache keeps lookups by hash, found (a row) or not (nil), for ttl: a
// client repeating a token, good or bad, costs the database one query
// per ttl. It holds hashes, never secrets.
type cache struct {
	ttl time.Duration
	max int

	mu sync.Mutex
	m  map[string]cacheEntry
}

type cacheEntry struct {
	r  *row
	at time.Time
}

func newCache(ttl time.Duration, max int) *cache {
	return &cache{ttl: ttl, max: max, m: map[string]cacheEntry{}}
}

func (c *cache) get(h string, now time.Time) (*row, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[h]
	if !ok {
		return nil, false
	}
	if age := now.Sub(e.at); age >= c.ttl || age < 0 {
		delete(c.m, h)
		return nil, false
	}
	return e.r, true
}

func (c *cache) put(h string, r *row, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		c.evict(now)
	}
	c.m[h] = cacheEntry{r: r, at: now}
}

// evict drops the stale entries, and when that is not enough a tenth of
// the others, chosen by map order (arbitrary): a flood of distinct bad
// tokens must not grow the cache, and losing an entry costs one query.
func (c *cache) evict(now time.Time) {
	for h, e := range c.m {
		if now.Sub(e.at) >= c.ttl {
			delete(c.m, h)
		}
	}
	drop := len(c.m) - c.max + 1 + c.max/10
	for h := range c.m {
		if drop <= 0 {
			break
		}
		delete(c.m, h)
		drop--
	}
}

// dropID forgets the lookups of token id (after this process revoked it).
func (c *cache) dropID(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, e := range c.m {
		if e.r != nil && e.r.id == id {
			delete(c.m, h)
		}
	}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
