package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowhouse/flowhouse/alertapi"
	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/config"
	"github.com/flowhouse/flowhouse/internal/lifecycle"
	"github.com/flowhouse/flowhouse/inventoryapi"
	"github.com/flowhouse/flowhouse/privacy"
	"github.com/flowhouse/flowhouse/privacyapi"
	"github.com/flowhouse/flowhouse/sqlapi"
	"github.com/flowhouse/flowhouse/store"
	"github.com/flowhouse/flowhouse/trafficapi"
)

// apiParts are the API's own components: the read-only handle its
// queries run on and the deletion jobs.
type apiParts struct {
	reader  *readOnly
	deleter *privacy.Deleter
}

// newAPI builds the HTTP server with every API package registered on it.
// Handlers are built before anything starts (routes must be registered
// before the server serves); what they read is opened at start.
func (p *parts) newAPI(cfg *config.Config, db store.DB, log *slog.Logger, reg *prometheus.Registry) error {
	p.api.reader = &readOnly{name: "api", timeout: max(cfg.HTTP.WriteTimeout-5*time.Second, time.Second)}
	p.api.deleter = privacy.New(cfg.Privacy, privacy.Deps{DB: db, Tenants: p.tenants, Layout: cfg.ClickHouse.Layout(), Logger: log.With("component", "privacy")})
	var err error
	if p.tokens, err = newTokenParts(cfg, db, p.tenants, log, reg); err != nil {
		return err
	}
	p.server = api.New(cfg.HTTP, api.Deps{Logger: log, Gatherer: reg, Registerer: reg, Authenticator: p.tokens.store})
	p.tokens.register(p.server)
	pages := api.NewPageTokens(nil)

	var acks alertapi.AckManager
	if p.alerts != nil {
		// Only the process running the rules takes acknowledgements: they
		// change the alerts its rules evaluate.
		acks = p.alerts
	}
	alertsH, err := alertapi.New(cfg.API.Alerts, alertapi.Deps{Reader: alerts.NewReader(db), Manager: acks,
		PageTokens: pages, Logger: log.With("component", "alertapi")})
	if err != nil {
		return err
	}
	entries, discoveredSNMP := inventoryapi.EntriesOf(cfg.Enrich)
	handlers := []struct {
		name     string
		spec     []byte
		register func(*gin.RouterGroup)
	}{
		{"alerts", alertapi.Spec, alertsH.Register},
		{"inventory", inventoryapi.Spec, inventoryapi.New(cfg.API.Inventory, inventoryapi.Deps{DB: p.api.reader, Tenants: p.tenants,
			Entries: entries, DiscoveredSNMP: discoveredSNMP, PageTokens: pages, Logger: log.With("component", "inventoryapi")}).Register},
		{"traffic", trafficapi.Spec, trafficapi.New(cfg.API.Traffic, trafficapi.Deps{Reader: p.api.reader, Tenants: p.tenants,
			Retention: cfg.ClickHouse.Retention, Logger: log.With("component", "trafficapi")}).Register},
		{"sql", sqlapi.Spec, sqlapi.New(cfg.API.SQL, sqlapi.Deps{Querier: sqlReader{p.api.reader}}).Register},
		{"privacy", privacyapi.Spec, privacyapi.New(cfg.API.Export, privacyapi.Deps{DB: db, Tenants: p.tenants,
			Deleter: p.api.deleter, Logger: log.With("component", "privacyapi")}).Register},
	}
	for _, h := range handlers {
		p.server.AddSpec(h.name, h.spec)
		p.server.Register(h.register)
	}
	return nil
}

// components of the API, started before the HTTP server so that its
// handlers find them open.
func (p *parts) apiComponents(cfg *config.Config) []lifecycle.Component {
	a, db := &p.api, p.db
	return []lifecycle.Component{
		p.tokens.component(), // stopped after http, so the last uses are written
		{Name: "api reader", Start: func(ctx context.Context) error { return a.reader.start(ctx, cfg, db) }, Stop: noContext(a.reader.stop)},
		{Name: "deletion jobs", Start: a.deleter.Start, Stop: noError(a.deleter.Stop)},
	}
}

// sqlReader runs the SQL endpoint's queries on the API's read-only
// handle, through the guard on the embedded engine.
type sqlReader struct{ r *readOnly }

func (s sqlReader) Query(ctx context.Context, query string, maxRows int) (*sqlapi.Result, error) {
	switch {
	case s.r.ro != nil:
		return sqlapi.Embedded(s.r.ro).Query(ctx, query, maxRows)
	case s.r.q != nil:
		return sqlapi.Server(s.r.q).Query(ctx, query, maxRows)
	}
	return nil, fmt.Errorf("sql: the read-only query interface is not open")
}
