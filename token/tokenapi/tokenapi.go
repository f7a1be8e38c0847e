// Package tokenapi is the API of API tokens: list, create and revoke
// (admin tokens, scoped to what they see), and the token of the request
// itself (any token).
package tokenapi

import (
	_ "embed"
	"errors"
	"log/slog"
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/token"
)

// Spec is the OpenAPI fragment of the handlers.
//
//go:embed openapi.yaml
var Spec []byte

// Deps are what the handlers use.
type Deps struct {
	Tokens token.Manager
	Logger *slog.Logger
}

// Handlers serve /api/v1/tokens.
type Handlers struct {
	tokens token.Manager
	log    *slog.Logger
}

// New builds the handlers; it does no I/O.
func New(deps Deps) *Handlers {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handlers{tokens: deps.Tokens, log: log}
}

// Register adds the routes to the /api/v1 group.
func (h *Handlers) Register(v1 *gin.RouterGroup) {
	v1.GET("/tokens", api.AdminOnly, h.list)
	v1.POST("/tokens", api.AdminOnly, h.create)
	v1.GET("/tokens/self", h.self)
	v1.DELETE("/tokens/:id", api.AdminOnly, h.revoke)
}

var states = []string{string(token.StateActive), string(token.StateExpired), string(token.StateRevoked), string(token.StateOtherKey)}

func (h *Handlers) list(c *gin.Context) {
	p := api.PrincipalOf(c)
	q := api.ParseQuery(c, "tenant", "state")
	tenant, want := q.String("tenant"), q.Enum("state", states...)
	if err := q.Err(); err != nil {
		api.BadRequest(c, err)
		return
	}
	out := []token.Info{}
	// A tenant the caller does not see has, for it, no tokens: the same
	// answer as a tenant without tokens, or one that does not exist.
	if tenant == "" || p.Sees(tenant) {
		sc := token.ScopeOf(p)
		if tenant != "" {
			sc = token.Scope{Tenant: tenant}
		}
		list, err := h.tokens.List(c.Request.Context(), sc)
		if err != nil {
			h.unavailable(c, err)
			return
		}
		for _, in := range list {
			if len(want) == 0 || slices.Contains(want, string(in.State)) {
				out = append(out, in)
			}
		}
	}
	api.JSONWithETag(c, http.StatusOK, gin.H{"tokens": out})
}

type createBody struct {
	Name       string   `json:"name"`
	Tenant     string   `json:"tenant"`
	AllTenants bool     `json:"all_tenants"`
	Role       api.Role `json:"role"`
	ExpiresIn  string   `json:"expires_in"`
}

// Created is the answer to a creation.
type Created struct {
	Secret string     `json:"secret"`
	Token  token.Info `json:"token"`
}

func (h *Handlers) create(c *gin.Context) {
	var b createBody
	if !api.BindJSON(c, &b) {
		return
	}
	p := api.PrincipalOf(c)
	if !p.AllTenants {
		if b.AllTenants {
			api.WriteError(c, http.StatusForbidden, api.CodeForbidden, "a tenant's token cannot create all-tenants tokens")
			return
		}
		if b.Tenant == "" {
			b.Tenant = p.Tenant
		}
		// Whether the tenant exists is not told: it is not the caller's.
		if b.Tenant != p.Tenant {
			api.WriteError(c, http.StatusForbidden, api.CodeForbidden, "a tenant's token creates tokens of its own tenant only")
			return
		}
	}
	sp := token.Spec{Name: b.Name, Tenant: b.Tenant, AllTenants: b.AllTenants, Role: b.Role, CreatedBy: "token:" + p.TokenID + " (" + p.TokenName + ")"}
	if b.ExpiresIn != "" {
		d, err := token.ParseDuration(b.ExpiresIn)
		if err != nil {
			api.WriteError(c, http.StatusBadRequest, api.CodeBadRequest, "expires_in: "+err.Error())
			return
		}
		sp.Expires = d
	}
	secret, info, err := h.tokens.Create(c.Request.Context(), sp)
	var se *token.SpecError
	switch {
	case errors.As(err, &se):
		api.BadRequest(c, se)
		return
	case err != nil:
		h.unavailable(c, err)
		return
	}
	c.Header("Cache-Control", "no-store") // the secret must not be kept by a cache
	c.JSON(http.StatusCreated, Created{Secret: secret, Token: info})
}

func (h *Handlers) self(c *gin.Context) {
	p := api.PrincipalOf(c)
	in, err := h.tokens.Get(c.Request.Context(), token.AllScope, p.TokenID)
	switch {
	case errors.Is(err, token.ErrNotFound):
		api.WriteError(c, http.StatusNotFound, api.CodeNotFound, "this request's token is not in the token store")
	case err != nil:
		h.unavailable(c, err)
	default:
		c.JSON(http.StatusOK, in)
	}
}

func (h *Handlers) revoke(c *gin.Context) {
	p := api.PrincipalOf(c)
	in, err := h.tokens.Revoke(c.Request.Context(), token.ScopeOf(p), c.Param("id"), "token:"+p.TokenID+" ("+p.TokenName+")")
	switch {
	case errors.Is(err, token.ErrNotFound):
		api.WriteError(c, http.StatusNotFound, api.CodeNotFound, "no such token")
	case err != nil:
		h.unavailable(c, err)
	default:
		c.JSON(http.StatusOK, in)
	}
}

// unavailable answers 503 for a store that cannot be read or written:
// the error is logged, never shown (it may hold SQL).
func (h *Handlers) unavailable(c *gin.Context, err error) {
	_ = c.Error(err)
	h.log.Warn("api tokens: the store failed", "err", err)
	api.WriteError(c, http.StatusServiceUnavailable, api.CodeUnavailable, "tokens cannot be read or written now; retry")
}
