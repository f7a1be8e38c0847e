package api

import (
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Role is what a token may do.
type Role string

// Roles. Read tokens may only GET; admin tokens may also acknowledge
// alerts, manage tokens, run SQL, export and delete.
const (
	RoleRead  Role = "read"
	RoleAdmin Role = "admin"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleRead || r == RoleAdmin }

// Principal is who a request acts for: the token it carried.
type Principal struct {
	// TokenID is the token's public id (never its secret).
	TokenID string `json:"token_id"`
	// TokenName is the name given at creation, for logs and audit.
	TokenName string `json:"token_name"`
	// Tenant is the one tenant the token sees; empty when AllTenants.
	Tenant     string `json:"tenant,omitempty"`
	AllTenants bool   `json:"all_tenants"`
	Role       Role   `json:"role"`
}

// Sees reports whether the principal may see tenant's data.
func (p Principal) Sees(tenant string) bool {
	return p.AllTenants || (p.Tenant != "" && p.Tenant == tenant)
}

// Visible narrows tenants to those the principal sees, keeping the order.
func (p Principal) Visible(tenants []string) []string {
	if p.AllTenants {
		return slices.Clone(tenants)
	}
	var out []string
	for _, t := range tenants {
		if p.Sees(t) {
			out = append(out, t)
		}
	}
	return out
}

// Scope names what the principal sees: "*" or the tenant. Page tokens are
// bound to it.
func (p Principal) Scope() string {
	if p.AllTenants {
		return "*"
	}
	return "tenant:" + p.Tenant
}

// IsAdmin reports the admin role.
func (p Principal) IsAdmin() bool { return p.Role == RoleAdmin }

// TokenError is why a presented token was refused. Its Reason is one of
// the TokenReason constants; the answer is 401 with a message per reason.
type TokenError struct{ Reason string }

// Reasons a token is refused.
const (
	TokenMissing   = "missing"
	TokenMalformed = "malformed"
	TokenChecksum  = "checksum"
	TokenUnknown   = "unknown"
	TokenRevoked   = "revoked"
	TokenExpired   = "expired"
)

func (e *TokenError) Error() string {
	switch e.Reason {
	case TokenMissing:
		return "no token: send Authorization: Bearer <token> (flowhouse token create)"
	case TokenMalformed:
		return "the token is not a flowhouse token"
	case TokenChecksum:
		return "the token's checksum does not match: it was mistyped or truncated"
	case TokenRevoked:
		return "the token was revoked"
	case TokenExpired:
		return "the token has expired"
	}
	return "the token is not valid"
}

// Authenticator turns a presented token into a principal. An error that
// is a *TokenError is the client's (401); any other error is the
// server's (503: the token store cannot be read now).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Principal, error)
}

const principalKey = "flowhouse.principal"

// PrincipalOf is the principal of an authenticated request. Handlers of
// the /api/v1 group always have one.
func PrincipalOf(c *gin.Context) Principal {
	p, _ := c.Get(principalKey)
	pr, _ := p.(Principal)
	return pr
}

// WithPrincipal sets the principal of a request, for tests of handlers
// that run without the server's authentication.
func WithPrincipal(c *gin.Context, p Principal) { c.Set(principalKey, p) }

// bearer is the token of the Authorization header. Tokens in the URL are
// not accepted: URLs end up in logs, proxies and browser histories.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// authenticate is the middleware of the /api/v1 group: a valid token, and
// for read tokens a safe method.
func (s *Server) authenticate(c *gin.Context) {
	if len(c.Request.Header.Values("Authorization")) > 1 {
		WriteError(c, http.StatusBadRequest, CodeBadRequest, "more than one Authorization header")
		return
	}
	// Refused tokens cost a lookup each (a valid checksum is easy to
	// make): a client address with too many refusals waits, whatever
	// tokens it sends next.
	client := c.ClientIP()
	if limited, wait := s.failures.exhausted(client, time.Now()); limited {
		s.metrics.authFailures.WithLabelValues("throttled").Inc()
		c.Header("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		WriteError(c, http.StatusTooManyRequests, CodeRateLimited, "too many refused tokens from this address; retry later")
		return
	}
	tok := bearer(c.Request)
	var p Principal
	var err error
	switch {
	case tok == "":
		err = &TokenError{Reason: TokenMissing}
	case s.auth == nil:
		err = &TokenError{Reason: TokenUnknown}
	default:
		p, err = s.auth.Authenticate(c.Request.Context(), tok)
	}
	if err != nil {
		var te *TokenError
		if errors.As(err, &te) {
			s.failures.take(client, time.Now())
			s.metrics.authFailures.WithLabelValues(te.Reason).Inc()
			c.Header("WWW-Authenticate", `Bearer realm="flowhouse"`)
			WriteError(c, http.StatusUnauthorized, CodeUnauthorized, te.Error())
			return
		}
		s.metrics.authFailures.WithLabelValues("store").Inc()
		s.authLog.Do(func() { s.log.Warn("token check failed", "err", err) })
		WriteError(c, http.StatusServiceUnavailable, CodeUnavailable, "tokens cannot be checked now; retry")
		return
	}
	c.Set(principalKey, p)
	if !s.allow(c, p) {
		return
	}
	if p.Role != RoleAdmin && c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead {
		WriteError(c, http.StatusForbidden, CodeForbidden, "a read token may only GET; this needs an admin token")
		return
	}
	c.Next()
}

// AdminOnly guards a route that reads something only admins may see
// (tokens, SQL, exports): read tokens get 403.
func AdminOnly(c *gin.Context) {
	if !PrincipalOf(c).IsAdmin() {
		WriteError(c, http.StatusForbidden, CodeForbidden, "this needs an admin token")
		return
	}
	c.Next()
}

// TenantParam reads the tenant of a path (…/tenants/:tenant/…) that the
// principal must see. A tenant it does not see is answered 404, exactly
// as a tenant that does not exist: the answer must not tell them apart.
// exists reports the tenants there are.
func TenantParam(c *gin.Context, name string, exists func(string) bool) (string, bool) {
	t := c.Param(name)
	if !PrincipalOf(c).Sees(t) || !exists(t) {
		WriteError(c, http.StatusNotFound, CodeNotFound, "no such tenant")
		return "", false
	}
	return t, true
}
