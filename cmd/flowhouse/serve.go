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
	"syscall"
	"time"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/collector"
	"github.com/flowhouse/flowhouse/config"
	"github.com/flowhouse/flowhouse/enrich"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/store"
	"github.com/flowhouse/flowhouse/store/spool"
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

func migrate(ctx context.Context, cfg *config.Config, out io.Writer) error {
	log := cfg.Log.NewLogger(os.Stderr)
	db, err := openDB(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.ClickHouse.Retention, Logger: log})
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
	if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.ClickHouse.Retention, Logger: log}); err != nil {
		return err
	}

	// The spool sits between the batcher and the database: what cannot be
	// inserted now is kept on disk and replayed when the database is back.
	var writer store.Writer = db
	var sp *spool.Spool
	if cfg.Spool.Enabled {
		caps, err := store.DetectCapabilities(ctx, db)
		if err != nil {
			return err
		}
		sp, err = spool.New(cfg.Spool, spool.Deps{Next: db, Logger: log, Registerer: reg,
			DedupToken: spool.SupportsDedupToken(caps.Version)})
		if err != nil {
			return err
		}
		writer = sp
	}
	batcher, err := store.New(cfg.ClickHouse, store.Deps{Writer: writer, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	stopStore := func() error {
		err := batcher.Stop()
		if sp != nil {
			err = errors.Join(err, sp.Stop())
		}
		return err
	}
	retention, err := store.NewRetention(cfg.ClickHouse, store.RetentionDeps{DB: db, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	// Enrichment sits between the collector and the store: it reads its
	// caches only, so it never slows decoding down.
	enricher, err := enrich.New(cfg.Enrich, enrich.Deps{Next: batcher, DB: db, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	coll, err := collector.New(cfg.Collector, collector.Deps{Sink: enricher, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	checks := []api.Check{
		{Name: "database", Func: db.Ping},
		{Name: "migrations", Func: func(ctx context.Context) error {
			pending, err := migrations.Pending(ctx, db)
			if err != nil {
				return err
			}
			if len(pending) > 0 {
				return fmt.Errorf("%d migrations pending, first %s: run flowhouse migrate", len(pending), pending[0].File())
			}
			return nil
		}},
	}
	if sp != nil {
		checks = append(checks, api.Check{Name: "spool", Func: sp.Ready})
	}
	server := api.New(cfg.HTTP, api.Deps{Logger: log, Gatherer: reg, Registerer: reg, Checks: checks})

	// The read-only query endpoint, on the embedded engine only (a
	// ClickHouse server has its own HTTP interface). Stopped when
	// runServer returns, before db is closed.
	queries, err := startQueryEndpoint(ctx, cfg, db, log)
	if err != nil {
		return err
	}
	defer queries.stop()

	if sp != nil {
		if err := sp.Start(ctx); err != nil {
			return err
		}
	}
	if err := batcher.Start(ctx); err != nil {
		_ = stopStore()
		return err
	}
	if err := retention.Start(ctx); err != nil {
		_ = stopStore()
		return err
	}
	if err := enricher.Start(ctx); err != nil {
		_ = retention.Stop()
		_ = stopStore()
		return err
	}
	if err := server.Start(ctx); err != nil {
		enricher.Stop()
		_ = retention.Stop()
		_ = stopStore()
		return err
	}
	if err := coll.Start(ctx); err != nil {
		_ = server.Stop(context.Background())
		enricher.Stop()
		_ = retention.Stop()
		_ = stopStore()
		return err
	}
	storage := "clickhouse server " + cfg.ClickHouse.Addr
	if cfg.ClickHouse.Addr == "" {
		storage = "embedded engine in " + cfg.ClickHouse.Embedded.Path
	}
	log.Info("flowhouse started", "version", buildVersion(), "listeners", coll.Addrs(), "http", server.Addr(), "storage", storage)

	if h.started != nil {
		h.started(running{listeners: coll.Addrs(), httpAddr: server.Addr(), collector: coll, spool: sp, db: db, queryAddr: queries.addr()})
	}
	writeStats := func() {
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer wcancel()
		if stats := coll.Stats(); len(stats) > 0 {
			if err := db.InsertExporterStats(wctx, time.Now(), stats); err != nil {
				log.Warn("writing exporter statistics failed", "error", err)
			}
		}
	}
	ticker := time.NewTicker(exporterStatsInterval)
	defer ticker.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-ticker.C:
			writeStats()
		}
	}

	log.Info("stopping: draining the collector and flushing batches")
	coll.Stop()
	if h.stopped != nil {
		var decoded uint64
		for _, e := range coll.Stats() {
			decoded += e.Flows
		}
		h.stopped(decoded)
	}
	enricher.Stop()
	var errs []error
	if err := stopStore(); err != nil {
		errs = append(errs, fmt.Errorf("flushing batches: %w", err))
	}
	writeStats()
	if err := retention.Stop(); err != nil {
		errs = append(errs, err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := server.Stop(sctx); err != nil {
		errs = append(errs, err)
	}
	log.Info("stopped")
	return errors.Join(errs...)
}
