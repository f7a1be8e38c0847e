package inventoryapi

import (
	"context"
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// Tenant is one tenant with what the inventory holds of it.
type Tenant struct {
	Name string `json:"name"`
	// Default: the tenant of the exporters no entry matches (discovered).
	Default bool `json:"default"`
	// Configured: an enrich.exporters entry names it.
	Configured          bool        `json:"configured"`
	Exporters           uint64      `json:"exporters"`
	DiscoveredExporters uint64      `json:"discovered_exporters"`
	Devices             uint64      `json:"devices"`
	Alerts              AlertCounts `json:"alerts"`
}

// AlertCounts are a tenant's current alerts by status.
type AlertCounts struct {
	Firing  uint64 `json:"firing"`
	Pending uint64 `json:"pending"`
}

// TenantList is the answer of GET /tenants.
type TenantList struct {
	Tenants []Tenant `json:"tenants"`
}

func (h *Handlers) listTenants(c *gin.Context) {
	q := api.ParseQuery(c)
	if err := q.Err(); err != nil {
		api.BadRequest(c, err)
		return
	}
	names, _ := h.scope(c, "")
	list := TenantList{Tenants: make([]Tenant, len(names))}
	byName := map[string]*Tenant{}
	for i, n := range names {
		list.Tenants[i] = Tenant{Name: n, Default: n == h.deps.Tenants.Default(), Configured: slices.Contains(h.match.names[1:], n)}
		byName[n] = &list.Tenants[i]
	}
	if len(names) > 0 {
		ctx, cancel := context.WithTimeout(c.Request.Context(), h.cfg.QueryTimeout)
		defer cancel()
		if err := h.countTenants(ctx, names, byName); err != nil {
			h.unavailable(c, "tenants", err)
			return
		}
	}
	api.JSONWithETag(c, http.StatusOK, list)
}

// countTenants counts each tenant's exporters, devices and current
// alerts, each query scoped to the tenants given.
func (h *Handlers) countTenants(ctx context.Context, names []string, byName map[string]*Tenant) error {
	keys := h.keysQuery(exporterFilter{tenants: names})
	kq, kargs := keys.sql()
	alerts := `SELECT t, countIf(s = 'firing'), countIf(s = 'pending') FROM (
		SELECT toString(tenant) AS t, id, argMax(status, version) AS s FROM alerts WHERE has(?, toString(tenant)) GROUP BY tenant, id
	) GROUP BY t`
	for _, step := range []struct {
		q    string
		args []any
		set  func(t *Tenant, a, b uint64)
	}{
		{"SELECT t, count(), countIf(e < 0) FROM (" + kq + ") GROUP BY t", kargs,
			func(t *Tenant, n, disc uint64) { t.Exporters, t.DiscoveredExporters = n, disc }},
		{"SELECT toString(tenant), uniqExact(mac), toUInt64(0) FROM devices WHERE has(?, toString(tenant)) GROUP BY tenant", []any{names},
			func(t *Tenant, n, _ uint64) { t.Devices = n }},
		{alerts, []any{names}, func(t *Tenant, firing, pending uint64) { t.Alerts = AlertCounts{firing, pending} }},
	} {
		err := dbapi.Each(ctx, h.deps.DB, step.q, step.args, func(r dbapi.Rows) error {
			var name string
			var a, b uint64
			if err := r.Scan(&name, &a, &b); err != nil {
				return err
			}
			if t := byName[name]; t != nil {
				step.set(t, a, b)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
