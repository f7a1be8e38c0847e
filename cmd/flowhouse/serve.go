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
	"syscall"
	"time"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/collector"
	"github.com/flowhouse/flowhouse/config"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/store"
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
	return runServer(ctx, cfg, log, nil)
}

// started tells tests where a running server listens.
type started func(listeners []netip.AddrPort, httpAddr string)

// runServer runs until ctx ends, then stops everything in order.
func runServer(ctx context.Context, cfg *config.Config, log *slog.Logger, onStart started) error {

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	db, err := openDB(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	// Apply logs each migration it applies.
	if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.ClickHouse.Retention, Logger: log}); err != nil {
		return err
	}

	batcher, err := store.New(cfg.ClickHouse, store.Deps{Writer: db, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	retention, err := store.NewRetention(cfg.ClickHouse, store.RetentionDeps{DB: db, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	coll, err := collector.New(cfg.Collector, collector.Deps{Sink: batcher, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	server := api.New(cfg.HTTP, api.Deps{
		Logger: log, Gatherer: reg, Registerer: reg,
		Checks: []api.Check{
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
		},
	})

	if err := batcher.Start(ctx); err != nil {
		return err
	}
	if err := retention.Start(ctx); err != nil {
		return err
	}
	if err := server.Start(ctx); err != nil {
		return err
	}
	if err := coll.Start(ctx); err != nil {
		_ = batcher.Stop()
		return err
	}
	log.Info("flowhouse started", "version", buildVersion(), "listeners", coll.Addrs(), "http", server.Addr(), "clickhouse", cfg.ClickHouse.Addr)

	if onStart != nil {
		onStart(coll.Addrs(), server.Addr())
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
	var errs []error
	if err := batcher.Stop(); err != nil {
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
