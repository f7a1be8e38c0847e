// Package trafficapi is the traffic part of the REST API: top talkers
// (GET /api/v1/traffic/top) and traffic over time (GET
// /api/v1/traffic/series), sampling-scaled, read from the per-hour or
// per-minute rollups when they can answer exactly, else from raw flows.
package trafficapi

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/store"
)

// Spec is the package's OpenAPI fragment.
//
//go:embed openapi.yaml
var Spec []byte

// Tenants says which tenants exist (a *tenant.Tenants is one).
type Tenants interface {
	Has(name string) bool
}

// Deps are what the handlers use but do not own.
type Deps struct {
	// Reader runs the queries: the store's read-only interface.
	Reader dbapi.Querier
	// Tenants are the tenants an all-tenants token may filter by.
	Tenants Tenants
	// Retention of the tables (the store's configuration): a table is
	// read only for a range it still holds.
	Retention store.RetentionConfig
	// Logger receives query failures; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Handlers serve the traffic endpoints.
type Handlers struct {
	cfg     Config
	deps    Deps
	sources []source
	log     *slog.Logger

	capsMu sync.Mutex
	caps   *dbapi.Capabilities // detected at the first request that queries
}

// New builds the handlers; it does no I/O.
func New(cfg Config, deps Deps) *Handlers {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	return &Handlers{cfg: cfg, deps: deps, sources: sourcesOf(cfg, deps.Retention), log: log}
}

// Register adds the routes to the /api/v1 group. Both only read, so any
// token may call them.
func (h *Handlers) Register(v1 *gin.RouterGroup) {
	v1.GET("/traffic/top", h.top)
	v1.GET("/traffic/series", h.series)
}

// request is what both endpoints share: the range, the tenant scope and
// the filters.
type request struct {
	since, until time.Time
	tenant       string // "" reads every tenant (all-tenants tokens only)
	conds        conditions
	caps         dbapi.Capabilities
}

var commonParams = append([]string{"since", "until", "tenant"}, filterParams()...)

func params(extra ...string) []string { return append(slices.Clone(commonParams), extra...) }

// parseCommon reads the range and the filters into r; problems are
// recorded in q.
func (h *Handlers) parseCommon(q *api.Query) request {
	var r request
	now := h.deps.Now().UTC()
	r.since, r.until = q.Time("since").Truncate(time.Second), q.Time("until").Truncate(time.Second)
	if r.until.IsZero() {
		r.until = now.Truncate(time.Second)
	}
	if r.since.IsZero() {
		r.since = r.until.Add(-time.Hour)
	}
	if r.since.Unix() < 0 {
		q.Failf("since: %s is before 1970", r.since.Format(time.RFC3339))
	}
	if !r.since.Before(r.until) {
		q.Failf("since: %s is not before until %s", r.since.Format(time.RFC3339), r.until.Format(time.RFC3339))
	}
	if r.until.After(now.Add(h.cfg.MaxFuture)) {
		q.Failf("until: %s is more than %s in the future", r.until.Format(time.RFC3339), showDuration(h.cfg.MaxFuture))
	}
	r.tenant = q.String("tenant")
	r.conds = parseFilters(q)
	return r
}

// scope checks the tenant parameter against the principal: a tenant it
// does not see is answered 404 exactly as one that does not exist. A
// tenant token always reads its own tenant.
func (h *Handlers) scope(c *gin.Context, r *request) bool {
	p := api.PrincipalOf(c)
	if !p.AllTenants && p.Tenant == "" {
		// Without this, no tenant condition would read every tenant.
		api.WriteError(c, http.StatusForbidden, api.CodeForbidden, "the token sees no tenant")
		return false
	}
	if !p.AllTenants {
		if r.tenant != "" && r.tenant != p.Tenant {
			api.WriteError(c, http.StatusNotFound, api.CodeNotFound, "no such tenant")
			return false
		}
		r.tenant = p.Tenant
		return true
	}
	if r.tenant != "" && (h.deps.Tenants == nil || !h.deps.Tenants.Has(r.tenant)) {
		api.WriteError(c, http.StatusNotFound, api.CodeNotFound, "no such tenant")
		return false
	}
	return true
}

// parseBy reads a dimension parameter; "" when absent and not required.
func parseBy(q *api.Query, name string, required bool) string {
	by := q.String(name)
	if by == "" && !required {
		return ""
	}
	if _, ok := dimensions[by]; !ok {
		if by == "" {
			q.Failf("%s: required, one of %s", name, strings.Join(dimensionNames, ", "))
		} else {
			q.Failf("%s: %q is not one of %s", name, short(by), strings.Join(dimensionNames, ", "))
		}
		return ""
	}
	return by
}

func parseOrder(q *api.Query) string {
	order := q.String("order")
	if order == "" {
		return "bytes"
	}
	if _, ok := orders[order]; !ok {
		q.Failf("order: %q is not one of bytes, packets, flows", short(order))
		return "bytes"
	}
	return order
}

// rawNeed is why a request needs raw flows: its dimension or a filter.
func rawNeed(by string, conds conditions) string {
	if by != "" && dimensions[by].rawOnly {
		return "by=" + by
	}
	return conds.raw
}

// fail answers a failed query: the client learns that the database did
// not answer, not why (its message may quote the SQL); the log has it.
func (h *Handlers) fail(ctx context.Context, c *gin.Context, what string, err error) {
	h.log.Warn("traffic query failed", "query", what, "err", err)
	msg := "traffic cannot be read now; retry"
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		msg = fmt.Sprintf("the traffic query took longer than %s; narrow the range or the filters", showDuration(h.cfg.QueryTimeout))
	}
	api.WriteError(c, http.StatusServiceUnavailable, api.CodeUnavailable, msg)
}

// capabilities of the engine, asked once: they change the SQL of
// address filters. A failure is not kept, so the next request asks again.
func (h *Handlers) capabilities(ctx context.Context) (dbapi.Capabilities, error) {
	h.capsMu.Lock()
	defer h.capsMu.Unlock()
	if h.caps != nil {
		return *h.caps, nil
	}
	caps, err := dbapi.DetectCapabilities(ctx, h.deps.Reader)
	if err != nil {
		return caps, err
	}
	h.caps = &caps
	return caps, nil
}

// Totals are sums over a range and their averages over it.
type Totals struct {
	Bytes   uint64  `json:"bytes"`
	Packets uint64  `json:"packets"`
	Flows   uint64  `json:"flows"`
	BPS     float64 `json:"bps"`
	PPS     float64 `json:"pps"`
}

func (t *Totals) rates(seconds float64) {
	t.BPS = float64(t.Bytes) * 8 / seconds
	t.PPS = float64(t.Packets) / seconds
}

func (t *Totals) add(o Totals) {
	t.Bytes += o.Bytes
	t.Packets += o.Packets
	t.Flows += o.Flows
}

func (t Totals) metric(order string) uint64 {
	switch order {
	case "packets":
		return t.Packets
	case "flows":
		return t.Flows
	}
	return t.Bytes
}
