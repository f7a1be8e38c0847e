package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/flowhouse/flowhouse/analytics/rules"
	"github.com/flowhouse/flowhouse/config"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/store"
	"github.com/flowhouse/flowhouse/tenant"
)

// checkRulesTimeout bounds reaching the database to dry-run SQL rules.
const checkRulesTimeout = 15 * time.Second

// checkRules checks the rules against the configured tenants and, when
// the database can be opened here, dry-runs every SQL rule on it as
// serve does at start. When it cannot (the embedded database is in use
// by a running serve, or not created yet), it says so on stderr and
// checks the rest.
func checkRules(ctx context.Context, cfg *config.Config, stderr io.Writer) error {
	tenants, err := tenant.New(cfg.Enrich.Tenants())
	if err != nil {
		return err
	}
	if len(cfg.Rules.SQL) == 0 {
		return rules.Check(ctx, cfg.Rules, nil, tenants)
	}
	reader, closeDB, why := openRuleReader(ctx, cfg)
	if reader == nil {
		fmt.Fprintf(stderr, "flowhouse check-config: SQL rules not dry-run on the engine (%s); serve does it at start\n", why)
		return rules.Check(ctx, cfg.Rules, nil, tenants)
	}
	defer closeDB()
	return rules.Check(ctx, cfg.Rules, reader, tenants)
}

// openRuleReader opens the database read-only for the dry run, or says
// why not.
func openRuleReader(ctx context.Context, cfg *config.Config) (dbapi.Querier, func(), string) {
	ctx, cancel := context.WithTimeout(ctx, checkRulesTimeout)
	defer cancel()
	if cfg.ClickHouse.Addr == "" {
		if _, err := os.Stat(filepath.Join(cfg.ClickHouse.Embedded.Path, "metadata")); err != nil {
			return nil, nil, "the embedded database " + cfg.ClickHouse.Embedded.Path + " does not exist yet"
		}
	}
	db, err := store.Open(ctx, cfg.ClickHouse, nil)
	if err != nil {
		return nil, nil, err.Error()
	}
	if err := migrations.Ready(ctx, db); err != nil {
		db.Close()
		return nil, nil, "the schema is not migrated: " + err.Error()
	}
	switch d := db.(type) {
	case *store.Server:
		return d.ReadOnly(), func() { db.Close() }, ""
	case *store.Embedded:
		ro, err := d.OpenReadOnly(ctx, store.ReadOnlyOptionsOf(cfg.ClickHouse.Embedded))
		if err != nil {
			db.Close()
			return nil, nil, err.Error()
		}
		return ro, func() { ro.Close(); db.Close() }, ""
	}
	db.Close()
	return nil, nil, fmt.Sprintf("no read-only interface on %T", db)
}
