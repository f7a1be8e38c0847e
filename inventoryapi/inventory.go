// Package inventoryapi is the inventory part of the REST API: the
// exporters (what the collector counts of them, their attributes, their
// SNMP polling status and interfaces), the device inventory (MACs with
// their addresses over time, from the exporters' ARP tables) and the
// tenants with their counts. Every answer is scoped in SQL to the tenants
// the token sees.
//
// An exporter's tenant is the one its address matches in the
// configuration (package tenant), the same match enrichment stamps flows
// with, computed in SQL from the address: the collector's statistics
// (table exporters) carry no tenant. One collector keys exporters by
// source address only (its templates, sequence numbers and statistics),
// so an address is one exporter of one tenant; rows of the enrichment
// tables written under another tenant for that address (before the
// configuration moved it) are not shown.
package inventoryapi

import (
	_ "embed"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/enrich"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/tenant"
)

// Spec is the OpenAPI fragment of the inventory endpoints.
//
//go:embed openapi.yaml
var Spec []byte

// Config of the inventory endpoints.
type Config struct {
	// QueryTimeout bounds the queries of one request.
	QueryTimeout time.Duration `mapstructure:"query_timeout" yaml:"query_timeout"`
}

// DefaultConfig gives a request 10 s of queries.
func DefaultConfig() Config { return Config{QueryTimeout: 10 * time.Second} }

// Validate names the wrong key.
func (c Config) Validate() error {
	if c.QueryTimeout < 100*time.Millisecond {
		return fmt.Errorf("query_timeout: %s is shorter than 100ms", c.QueryTimeout)
	}
	return nil
}

// Entry is what the configuration says of the exporters of one
// enrich.exporters entry.
type Entry struct {
	Name, Site, Role string
	// SNMP: enrichment polls them.
	SNMP bool
}

// Deps of the handlers.
type Deps struct {
	// DB is the read-only query interface.
	DB dbapi.Querier
	// Tenants is the match of exporters to tenants enrichment uses.
	Tenants *tenant.Tenants
	// Entries are the exporter entries of the configuration, in the
	// order of Tenants' (Match(addr).Entry indexes them), and
	// DiscoveredSNMP whether discovered exporters are polled: see
	// EntriesOf. Without them, names come from SNMP only and an
	// exporter counts as SNMP-configured when it has a polling status.
	Entries        []Entry
	DiscoveredSNMP bool
	// PageTokens sign page tokens; nil makes a key for this process.
	PageTokens *api.PageTokens
	Logger     *slog.Logger
}

// EntriesOf is Deps.Entries and Deps.DiscoveredSNMP of an enrichment
// configuration (no secret leaves it).
func EntriesOf(cfg enrich.Config) ([]Entry, bool) {
	out := make([]Entry, len(cfg.Exporters))
	for i, e := range cfg.Exporters {
		out[i] = Entry{Name: e.Name, Site: e.Site, Role: e.Role, SNMP: e.SNMP.Enabled}
	}
	return out, cfg.DiscoveredSNMP.Enabled
}

// Handlers serve the inventory endpoints.
type Handlers struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	match *matcher
	pages *api.PageTokens
	now   func() time.Time
}

// New prepares the handlers; it does no I/O.
func New(cfg Config, deps Deps) *Handlers {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pages := deps.PageTokens
	if pages == nil {
		pages = api.NewPageTokens(nil)
	}
	return &Handlers{cfg: cfg, deps: deps, log: log.With("component", "inventoryapi"),
		match: newMatcher(deps.Tenants), pages: pages, now: time.Now}
}

// Register adds the routes to the /api/v1 group.
func (h *Handlers) Register(v1 *gin.RouterGroup) {
	v1.GET("/exporters", h.listExporters)
	v1.GET("/exporters/:addr", h.getExporter)
	v1.GET("/exporters/:addr/interfaces", h.exporterInterfaces)
	v1.GET("/exporters/:addr/neighbors", h.exporterNeighbors)
	v1.GET("/topology", h.topology)
	v1.GET("/devices", h.listDevices)
	v1.GET("/devices/:mac", h.getDevice)
	v1.GET("/tenants", api.AdminOnly, h.listTenants)
}

// entry is the configuration of entry i (-1: discovered).
func (h *Handlers) entry(i int) (Entry, bool) {
	if i < 0 || i >= len(h.deps.Entries) {
		return Entry{SNMP: h.deps.DiscoveredSNMP}, h.deps.Entries != nil
	}
	return h.deps.Entries[i], true
}

// unavailable answers a failed query: 503, the error in the log only
// (its text may hold SQL).
func (h *Handlers) unavailable(c *gin.Context, what string, err error) {
	h.log.Warn("inventory query failed", "what", what, "error", err)
	api.WriteError(c, http.StatusServiceUnavailable, api.CodeUnavailable, "the inventory cannot be read now; retry")
}

// scope is the tenants a request reads: those the principal sees, or
// the one of the tenant parameter, which must be one of them (404 as for
// a tenant that does not exist: the answers must not tell them apart).
func (h *Handlers) scope(c *gin.Context, tenantParam string) ([]string, bool) {
	p := api.PrincipalOf(c)
	if tenantParam != "" {
		if !p.Sees(tenantParam) || !h.deps.Tenants.Has(tenantParam) {
			api.WriteError(c, http.StatusNotFound, api.CodeNotFound, "no such tenant")
			return nil, false
		}
		return []string{tenantParam}, true
	}
	return p.Visible(h.deps.Tenants.Names()), true
}

func timeOf(s uint32) *time.Time {
	if s == 0 {
		return nil
	}
	t := time.Unix(int64(s), 0).UTC()
	return &t
}

func ratio(lost, expected uint64) float64 {
	if expected == 0 {
		return 0
	}
	return float64(lost) / float64(expected)
}
