package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/analytics/rules"
	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/collector"
	"github.com/flowhouse/flowhouse/config"
	"github.com/flowhouse/flowhouse/enrich"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/lifecycle"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/notify"
	"github.com/flowhouse/flowhouse/schema"
	"github.com/flowhouse/flowhouse/store"
	"github.com/flowhouse/flowhouse/store/spool"
	"github.com/flowhouse/flowhouse/tenant"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// openTimeout bounds waiting for the database at start: long enough for a
// ClickHouse server started alongside flowhouse to come up.
const openTimeout = 60 * time.Second

func openDB(ctx context.Context, cfg *config.Config, log *slog.Logger) (store.DB, error) {
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	var lastErr error
	for delay := 250 * time.Millisecond; ; delay = min(delay*2, 5*time.Second) {
		db, err := store.Open(ctx, cfg.ClickHouse, log)
		if err == nil {
			return db, nil
		}
		lastErr = err
		if cfg.ClickHouse.Addr == "" {
			return nil, err // nothing to wait for
		}
		log.Warn("database not reachable yet", "addr", cfg.ClickHouse.Addr, "error", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("database %s not reachable within %s: %w", cfg.ClickHouse.Addr, openTimeout, lastErr)
		case <-time.After(delay):
		}
	}
}

// migrationOptions are the schema's, from the configuration: retention,
// mapped columns and the layout (one server or a cluster).
func migrationOptions(cfg *config.Config, log *slog.Logger) migrations.Options {
	return migrations.Options{Retention: cfg.ClickHouse.Retention, Logger: log, Extra: cfg.Collector.ExtraColumns(), Layout: cfg.ClickHouse.Layout()}
}

func migrate(ctx context.Context, cfg *config.Config, out io.Writer) error {
	log := cfg.Log.NewLogger(os.Stderr)
	db, err := openDB(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := migrations.Apply(ctx, db, migrationOptions(cfg, log))
	if err != nil {
		return err
	}
	for _, m := range applied {
		fmt.Fprintf(out, "applied %s\n", m.File())
	}
	if len(applied) == 0 {
		fmt.Fprintln(out, "schema is up to date")
	}
	return nil
}

// exporterStatsInterval is how often exporter statistics are written to
// the exporters table.
const exporterStatsInterval = 30 * time.Second

// serve runs flowhouse until SIGTERM or SIGINT. Components start in data
// order (store, then collector) and stop in reverse, so every flow the
// collector accepted is flushed before the process exits.
func serve(cfg *config.Config, stderr io.Writer) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	log := cfg.Log.NewLogger(stderr)
	slog.SetDefault(log)
	if os.Getenv("GOGC") == "" {
		// Most of the heap is flow batches that live for one insert: a
		// tighter GC target keeps the resident size near twice the live
		// batches instead of growing with every burst, for little CPU at
		// the rates measured (make bench). GOGC overrides it.
		debug.SetGCPercent(30)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// The Go heap's soft limit: the GC works harder as the heap nears
		// memory.limit instead of letting bursts grow it past the budget
		// the queues were sized from.
		debug.SetMemoryLimit(cfg.Memory.Limit)
	}
	return runServer(ctx, cfg, log, hooks{})
}

// hooks let tests watch a server run in their process.
type hooks struct {
	// registry replaces the process-wide metrics registry.
	registry *prometheus.Registry
	// started is called once everything listens.
	started func(running)
	// stopped gets the flows the collector decoded, once it has drained.
	stopped func(decoded uint64)
}

// running is what a started server exposes to hooks.
type running struct {
	listeners []netip.AddrPort
	httpAddr  string
	collector *collector.Collector
	spool     *spool.Spool // nil when the spool is disabled
	db        store.DB
	queryAddr string // the query endpoint's address; "" when it is off
	pprofAddr string // the profiles' listener (http.pprof_listen); "" when it is off
}

// runServer runs until ctx ends, then stops everything in order.
func runServer(ctx context.Context, cfg *config.Config, log *slog.Logger, h hooks) error {
	reg := h.registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	db, err := openDB(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	// Apply logs each migration it applies.
	if _, err := migrations.Apply(ctx, db, migrationOptions(cfg, log)); err != nil {
		return err
	}
	p, err := newParts(ctx, cfg, db, log, reg)
	if err != nil {
		return err
	}
	runner := lifecycle.New(log, p.server)
	if err := runner.Start(ctx, p.components(cfg, h)...); err != nil {
		return err
	}
	p.started.Store(true)
	storage := "clickhouse server " + cfg.ClickHouse.Addr
	if cfg.ClickHouse.Addr == "" {
		storage = "embedded engine in " + cfg.ClickHouse.Embedded.Path
	}
	log.Info("flowhouse started", "version", buildVersion(), "listeners", p.coll.Addrs(), "http", p.server.Addr(), "storage", storage)
	if h.started != nil {
		h.started(running{listeners: p.coll.Addrs(), httpAddr: p.server.Addr(), collector: p.coll, spool: p.spool, db: db, queryAddr: p.queries.addr(), pprofAddr: p.pprof.bg.Addr()})
	}
	<-ctx.Done()
	log.Info("stopping: draining the collector and flushing batches")
	err = runner.Stop(context.Background())
	log.Info("stopped")
	return err
}

// parts are the components of flowhouse serve, built (no I/O but the
// database's version) before any starts.
type parts struct {
	db        store.DB
	spool     *spool.Spool // nil when the spool is disabled
	batcher   *store.Batcher
	retention *store.Retention
	tenants   *tenant.Tenants
	enricher  *enrich.Enricher
	coll      *collector.Collector
	server    *api.Server
	queries   *queryEndpointRunner
	pprof     *pprofServer
	stats     *statsWriter
	notifier  *notify.Notifier
	alerts    *alerts.Manager
	reader    *readOnly
	rules     *rules.Scheduler
	api       apiParts
	tokens    *tokenParts // API tokens (token.go)
	// started is set once every component runs: the HTTP server starts
	// early, and /readyz must not say ready before the collector listens
	// (an exporter's first datagrams, its templates, would be lost).
	started atomic.Bool
}

func newParts(ctx context.Context, cfg *config.Config, db store.DB, log *slog.Logger, reg *prometheus.Registry) (*parts, error) {
	p := &parts{db: db, queries: &queryEndpointRunner{log: log}, pprof: &pprofServer{listen: cfg.HTTP.PprofListen, log: log}}
	// The flows table with the mapped columns, which the batches and the
	// spool's replay are of; Apply has added the columns.
	flows, err := schema.FlowsWith(cfg.Collector.ExtraColumns())
	if err != nil {
		return nil, fmt.Errorf("collector.extra_fields: %w", err)
	}
	// The spool sits between the batcher and the database: what cannot be
	// inserted now is kept on disk and replayed when the database is back.
	var writer store.Writer = db
	if cfg.Spool.Enabled {
		caps, err := store.DetectCapabilities(ctx, db)
		if err != nil {
			return nil, err
		}
		if p.spool, err = spool.New(cfg.Spool, spool.Deps{Next: db, Logger: log, Registerer: reg,
			DedupToken: spool.SupportsDedupToken(caps.Version), Flows: flows}); err != nil {
			return nil, err
		}
		writer = p.spool
	}
	plan, queueLength, err := cfg.MemoryPlan()
	if err != nil {
		return nil, err
	}
	mem := store.MemoryBounds{Queue: plan.QueueBytes, Spill: plan.SpillBytes}
	if p.batcher, err = store.New(cfg.ClickHouse, store.Deps{Writer: writer, Logger: log, Registerer: reg, Flows: flows, Memory: mem}); err != nil {
		return nil, err
	}
	if p.retention, err = store.NewRetention(cfg.ClickHouse, store.RetentionDeps{DB: db, Logger: log, Registerer: reg}); err != nil {
		return nil, err
	}
	// Who owns which exporter: enrichment stamps flows with it, and what
	// reads the store will get the same.
	if p.tenants, err = tenant.New(cfg.Enrich.Tenants()); err != nil {
		return nil, err
	}
	// Enrichment sits between the collector and the store: it reads its
	// caches only, so it never slows decoding down. It keeps its poll
	// results through the database's query interface (a store.DB is a
	// dbapi.DB).
	if p.enricher, err = enrich.New(cfg.Enrich, enrich.Deps{Next: p.batcher, DB: db, Tenants: p.tenants, Logger: log, Registerer: reg}); err != nil {
		return nil, err
	}
	ccfg := cfg.Collector
	ccfg.QueueLength = queueLength
	if ccfg.Name == "" {
		// The host's name keeps collectors on several machines apart
		// without configuration; one that fails to say leaves it empty.
		ccfg.Name, _ = os.Hostname()
	}
	if p.coll, err = collector.New(ccfg, collector.Deps{Sink: p.enricher, Counters: p.enricher, Logger: log, Registerer: reg}); err != nil {
		return nil, err
	}
	p.stats = &statsWriter{db: db, coll: p.coll, log: log}
	if err := p.newDetection(cfg, db, log, reg); err != nil {
		return nil, err
	}
	if err := p.newAPI(cfg, db, log, reg); err != nil {
		return nil, err
	}
	return p, nil
}

// newDetection builds what reads the store for alerts: the rules, the
// alert lifecycle they feed and the notifier it hands alerts to.
//
// With rules.enabled false there is none of it: in a deployment of several
// processes on one database, one runs the rules, so that each runs once
// per interval and each alert is notified once.
func (p *parts) newDetection(cfg *config.Config, db store.DB, log *slog.Logger, reg *prometheus.Registry) error {
	if !cfg.Rules.Enabled {
		log.Info("rules are run by another process (rules.enabled is false): no rules, alert lifecycle or notifications here")
		return nil
	}
	var err error
	if p.notifier, err = notify.New(cfg.Notify, notify.Deps{Logger: log, Registerer: reg}); err != nil {
		return err
	}
	if p.alerts, err = alerts.New(cfg.Alerts, alerts.Deps{DB: db, Notifier: p.notifier, Tenants: p.tenants, Logger: log, Registerer: reg}); err != nil {
		return err
	}
	p.reader = &readOnly{name: "rules", conns: cfg.Rules.Concurrency}
	rulesCfg := cfg.Rules
	rulesCfg.UseObservationRefresh(cfg.Enrich.Polling.ObservationRefresh)
	p.rules, err = rules.New(rulesCfg, rules.SchedulerDeps{DB: db, Reader: p.reader, Alerts: p.alerts,
		Tenants: p.tenants, Logger: log, Registerer: reg})
	return err
}

// components are the parts in data order: each is started after what it
// hands its data to, and stopped before it. The HTTP server and the query
// endpoint start first so that they answer until the end.
func (p *parts) components(cfg *config.Config, h hooks) []lifecycle.Component {
	cs := []lifecycle.Component{
		{Name: "startup", Checks: []lifecycle.Check{{Name: "started", Func: func(context.Context) error {
			if !p.started.Load() {
				return errors.New("flowhouse is starting: the collector does not listen yet")
			}
			return nil
		}}}},
		{Name: "database", Checks: []lifecycle.Check{
			{Name: "database", Func: p.db.Ping},
			{Name: "migrations", Func: func(ctx context.Context) error { return migrations.Ready(ctx, p.db) }},
		}},
		{Name: "pprof", Start: p.pprof.start, Stop: withTimeout(5*time.Second, p.pprof.stop)},
		{Name: "query endpoint",
			Start: func(ctx context.Context) error { return p.queries.start(ctx, cfg, p.db) },
			Stop:  withTimeout(5*time.Second, p.queries.stop)},
	}
	cs = append(cs, p.apiComponents(cfg)...)
	cs = append(cs, lifecycle.Component{Name: "http", Start: p.server.Start, Stop: withTimeout(5*time.Second, p.server.Stop)})
	if p.rules != nil {
		cs = append(cs, []lifecycle.Component{
			{Name: "notify", Start: p.notifier.Start, Stop: noContext(p.notifier.Stop)},
			p.alerts.Component(),
			{Name: "rule reader", Start: func(ctx context.Context) error { return p.reader.start(ctx, cfg, p.db) }, Stop: noContext(p.reader.stop)},
			p.rules.Component(),
		}...)
	}
	if p.spool != nil {
		cs = append(cs, lifecycle.Component{Name: "spool", Start: p.spool.Start, Stop: noContext(p.spool.Stop),
			Checks: []lifecycle.Check{{Name: "spool", Func: p.spool.Ready}}})
	}
	cs = append(cs,
		lifecycle.Component{Name: "batcher", Start: p.batcher.Start, Stop: func(context.Context) error {
			if err := p.batcher.Stop(); err != nil {
				return fmt.Errorf("flushing batches: %w", err)
			}
			return nil
		}},
		lifecycle.Component{Name: "retention", Start: p.retention.Start, Stop: noContext(p.retention.Stop)},
		lifecycle.Component{Name: "exporter statistics", Start: p.stats.start, Stop: p.stats.stop},
		lifecycle.Component{Name: "enrichment", Start: p.enricher.Start, Stop: noContext(p.enricher.Stop)},
	)
	if h.stopped != nil {
		// Stopped right after the collector has drained.
		cs = append(cs, lifecycle.Component{Name: "stopped hook", Stop: func(context.Context) error {
			var decoded uint64
			for _, e := range p.coll.Stats() {
				decoded += e.Flows
			}
			h.stopped(decoded)
			return nil
		}})
	}
	return append(cs, lifecycle.Component{Name: "collector", Start: p.coll.Start, Stop: noError(p.coll.Stop)})
}

func withTimeout(d time.Duration, stop func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return stop(ctx)
	}
}

func noContext(stop func() error) func(context.Context) error {
	return func(context.Context) error { return stop() }
}

func noError(stop func()) func(context.Context) error {
	return func(context.Context) error { stop(); return nil }
}

// statsWriter writes the exporters' statistics to the exporters table
// every exporterStatsInterval, and once more when it stops, after the
// collector has drained.
type statsWriter struct {
	db   store.DB
	coll *collector.Collector
	log  *slog.Logger
	quit chan struct{}
	done chan struct{}
}

func (w *statsWriter) start(context.Context) error {
	w.quit, w.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(w.done)
		ticker := time.NewTicker(exporterStatsInterval)
		defer ticker.Stop()
		for {
			select {
			case <-w.quit:
				return
			case <-ticker.C:
				w.write()
			}
		}
	}()
	return nil
}

func (w *statsWriter) stop(context.Context) error {
	close(w.quit)
	<-w.done
	w.write()
	return nil
}

func (w *statsWriter) write() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if stats := w.coll.Stats(); len(stats) > 0 {
		if err := w.db.InsertExporterStats(ctx, time.Now(), stats); err != nil {
			w.log.Warn("writing exporter statistics failed", "error", err)
		}
	}
}

// readOnly is a read-only query interface opened at start: on the
// embedded engine its own guarded read-only connections (so its readers
// never wait for the insert connections, nor inserts for them), on a
// server the server's readonly=1. The rules have one, the API another.
type readOnly struct {
	name  string
	conns int // embedded connections; 0: clickhouse.embedded.query_concurrency
	// timeout, when shorter, replaces clickhouse.embedded.query_timeout
	// as the engine's max_execution_time: the embedded engine cannot be
	// interrupted between blocks of some queries, and the API's answers
	// must come before the HTTP server's write_timeout cuts them.
	timeout time.Duration
	q       dbapi.Querier
	ro      *store.ReadOnly
}

func (r *readOnly) start(ctx context.Context, cfg *config.Config, db store.DB) error {
	switch d := db.(type) {
	case *store.Server:
		r.q = d.ReadOnly()
	case *store.Embedded:
		opts := store.ReadOnlyOptionsOf(cfg.ClickHouse.Embedded)
		if r.conns > 0 {
			opts.Conns = r.conns
		}
		if r.timeout > 0 && r.timeout < opts.Timeout {
			opts.Timeout = r.timeout
		}
		ro, err := d.OpenReadOnly(ctx, opts)
		if err != nil {
			return fmt.Errorf("%s: read-only connections: %w", r.name, err)
		}
		r.q, r.ro = ro, ro
	default:
		return fmt.Errorf("%s: no read-only query interface on %T", r.name, db)
	}
	return nil
}

func (r *readOnly) Query(ctx context.Context, query string, args ...any) (dbapi.Rows, error) {
	if r.q == nil {
		return nil, fmt.Errorf("%s: the read-only query interface is not open", r.name)
	}
	return r.q.Query(ctx, query, args...)
}

func (r *readOnly) stop() error {
	if r.ro != nil {
		return r.ro.Close()
	}
	return nil
}
