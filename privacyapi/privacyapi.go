// Package privacyapi is the API of per-tenant export and deletion
// (package privacy): GET /tenants/{tenant}/export streams everything
// stored about a tenant as NDJSON; DELETE /tenants/{tenant}/data starts a
// deletion job, polled at /tenants/{tenant}/data/jobs/{id}. Admins only;
// a tenant-scoped admin only for its own tenant.
package privacyapi

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/privacy"
	"github.com/flowhouse/flowhouse/tenant"
)

// Spec is the OpenAPI fragment of these endpoints.
//
//go:embed openapi.yaml
var Spec []byte

// Config of the endpoints.
type Config struct {
	// DefaultWindow is the flows exported when since is not given (the
	// last DefaultWindow); MaxWindow the widest since..until allowed.
	DefaultWindow time.Duration `mapstructure:"default_window"`
	MaxWindow     time.Duration `mapstructure:"max_window"`
	// MaxExports is how many exports may run at once in this process;
	// beyond, 429. Each holds a database connection while it streams.
	MaxExports int `mapstructure:"max_exports"`
	// WriteTimeout is how long one write of an export may take: the
	// server's write timeout is moved on by this much at each write, so
	// a long export is not cut by it.
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
}

// DefaultConfig exports the last 24 hours of flows by default, at most
// 31 days.
func DefaultConfig() Config {
	return Config{DefaultWindow: 24 * time.Hour, MaxWindow: 31 * 24 * time.Hour, MaxExports: 1, WriteTimeout: 10 * time.Second}
}

// Validate names the wrong key.
func (c Config) Validate() error {
	switch {
	case c.DefaultWindow < time.Minute:
		return fmt.Errorf("default_window: %s is shorter than 1m", c.DefaultWindow)
	case c.MaxWindow < c.DefaultWindow:
		return fmt.Errorf("max_window: %s is shorter than default_window (%s)", c.MaxWindow, c.DefaultWindow)
	case c.MaxExports < 1 || c.MaxExports > 16:
		return fmt.Errorf("max_exports: %d is not in 1..16", c.MaxExports)
	case c.WriteTimeout < time.Second:
		return fmt.Errorf("write_timeout: %s is shorter than 1s", c.WriteTimeout)
	}
	return nil
}

// Deps are what the handlers use but do not own.
type Deps struct {
	// DB is read by exports (the store.DB: on the embedded engine its
	// results then stream block by block) and holds the jobs.
	DB dbapi.Querier
	// Tenants are the tenants there are and their exporters.
	Tenants *tenant.Tenants
	// Deleter runs the deletions; started and stopped by its owner.
	Deleter *privacy.Deleter
	Logger  *slog.Logger
}

// Handlers serve the endpoints.
type Handlers struct {
	cfg     Config
	deps    Deps
	jobs    privacy.Reader
	log     *slog.Logger
	exports chan struct{} // a slot per export running
}

// New builds the handlers; it does no I/O.
func New(cfg Config, deps Deps) *Handlers {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxExports < 1 {
		cfg.MaxExports = 1
	}
	return &Handlers{cfg: cfg, deps: deps, jobs: privacy.Reader{DB: deps.DB}, log: log, exports: make(chan struct{}, cfg.MaxExports)}
}

// Register adds the routes.
func (h *Handlers) Register(v1 *gin.RouterGroup) {
	v1.GET("/tenants/:tenant/export", api.AdminOnly, h.export)
	v1.DELETE("/tenants/:tenant/data", h.deleteData)
	v1.GET("/tenants/:tenant/data/jobs", api.AdminOnly, h.listJobs)
	v1.GET("/tenants/:tenant/data/jobs/:id", api.AdminOnly, h.getJob)
}

func (h *Handlers) tenant(c *gin.Context) (string, bool) {
	return api.TenantParam(c, "tenant", h.deps.Tenants.Has)
}

func (h *Handlers) match(a netip.Addr) string { return h.deps.Tenants.Match(a).Tenant }

func (h *Handlers) deleteData(c *gin.Context) {
	if !api.PrincipalOf(c).IsAdmin() { // the frame lets only admins DELETE; kept explicit
		api.WriteError(c, http.StatusForbidden, api.CodeForbidden, "this needs an admin token")
		return
	}
	t, ok := h.tenant(c)
	if !ok || !noQuery(c) {
		return
	}
	p := api.PrincipalOf(c)
	job, err := h.deps.Deleter.Request(c.Request.Context(), t, p.TokenID)
	if err != nil {
		h.unavailable(c, "deletion request", err)
		return
	}
	c.JSON(http.StatusAccepted, job)
}

func (h *Handlers) listJobs(c *gin.Context) {
	t, ok := h.tenant(c)
	if !ok || !noQuery(c) {
		return
	}
	jobs, err := h.jobs.Jobs(c.Request.Context(), t)
	if err != nil {
		h.unavailable(c, "deletion jobs", err)
		return
	}
	if jobs == nil {
		jobs = []privacy.Job{}
	}
	c.JSON(http.StatusOK, gin.H{"jobs": jobs})
}

func (h *Handlers) getJob(c *gin.Context) {
	t, ok := h.tenant(c)
	if !ok || !noQuery(c) {
		return
	}
	job, err := h.jobs.Job(c.Request.Context(), t, c.Param("id"))
	if errors.Is(err, privacy.ErrNoJob) {
		api.WriteError(c, http.StatusNotFound, api.CodeNotFound, "no such deletion job")
		return
	}
	if err != nil {
		h.unavailable(c, "deletion job", err)
		return
	}
	api.JSONWithETag(c, http.StatusOK, job)
}

// noQuery refuses query parameters where none are taken.
func noQuery(c *gin.Context) bool {
	if err := api.ParseQuery(c).Err(); err != nil {
		api.BadRequest(c, err)
		return false
	}
	return true
}

func (h *Handlers) unavailable(c *gin.Context, what string, err error) {
	h.log.Warn(what+" failed", "err", err)
	api.WriteError(c, http.StatusServiceUnavailable, api.CodeUnavailable, "the database cannot be read or written now; retry")
}

// closingContext ends when the request does or the server begins to stop.
func closingContext(c *gin.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(c.Request.Context())
	closing := api.Closing(c)
	go func() {
		select {
		case <-closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
