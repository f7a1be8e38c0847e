package api

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"
)

// limiters hold one token bucket per API token, so that one busy script
// cannot starve the other consumers.
type limiters struct {
	every rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	lim      *rate.Limiter
	lastSeen time.Time
}

// idleBucket is how long an unused bucket is kept; a full bucket is the
// same as a new one, so forgetting it changes nothing.
const idleBucket = 10 * time.Minute

func newLimiters(perSecond float64, burst int) *limiters {
	if perSecond <= 0 {
		return nil
	}
	return &limiters{every: rate.Limit(perSecond), burst: burst, buckets: map[string]*bucket{}}
}

// reserve takes one request from key's bucket; when none is left it
// returns how long until one is.
func (l *limiters) reserve(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key, now)
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// exhausted reports whether key's bucket has no request left, without
// taking one, and how long until it has.
func (l *limiters) exhausted(key string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return false, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		return false, 0
	}
	if tokens := b.lim.TokensAt(now); tokens < 1 {
		return true, time.Duration((1 - tokens) / float64(l.every) * float64(time.Second))
	}
	return false, 0
}

// take takes one request from key's bucket, even past empty.
func (l *limiters) take(key string, now time.Time) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key, now)
	b.lim.ReserveN(now, 1)
}

// bucket is key's bucket, made full when new; l.mu is held.
func (l *limiters) bucket(key string, now time.Time) *bucket {
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) > 10000 {
			l.evict(now)
		}
		b = &bucket{lim: rate.NewLimiter(l.every, l.burst)}
		l.buckets[key] = b
	}
	b.lastSeen = now
	return b
}

func (l *limiters) evict(now time.Time) {
	for k, b := range l.buckets {
		if now.Sub(b.lastSeen) > idleBucket {
			delete(l.buckets, k)
		}
	}
}

// allow applies the principal's rate limit; an exhausted bucket is 429
// with Retry-After in whole seconds.
func (s *Server) allow(c *gin.Context, p Principal) bool {
	if s.limits == nil {
		return true
	}
	now := time.Now()
	ok, wait := s.limits.reserve(p.TokenID, now)
	what := "rate limit of " + strconv.FormatFloat(float64(s.limits.every), 'g', -1, 64) + " requests/s per token exceeded"
	// A tenant's tokens share a bucket too, tenantTokens times one token's:
	// an admin minting tokens does not multiply what the tenant may ask.
	if ok && !p.AllTenants {
		if ok, wait = s.tenantLimits.reserve(p.Scope(), now); !ok {
			what = "rate limit of " + strconv.FormatFloat(float64(s.tenantLimits.every), 'g', -1, 64) + " requests/s for this tenant's tokens together exceeded"
		}
	}
	if ok {
		return true
	}
	s.metrics.rateLimited.Inc()
	c.Header("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	WriteError(c, http.StatusTooManyRequests, CodeRateLimited, what+"; retry later")
	return false
}

// tenantTokens is how many tokens' worth of requests a tenant's tokens
// may make together.
const tenantTokens = 4
