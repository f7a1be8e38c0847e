package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/store"
)

// ruleOptions are the flags of the detection stages.
type ruleOptions struct {
	cost         bool
	costRates    []float64
	costWindow   time.Duration
	costReps     int
	costEngines  []string
	costBudget   time.Duration
	costChunk    uint64
	costParallel int
	// costMeasureBudget: no further tick of evaluations starts after this
	// (evaluations of one rule are bounded by its timeout).
	costMeasureBudget time.Duration
	costWorker        string // set in the child process that runs the cost stage
	load              bool
	loadRate          float64
	loadDuration      time.Duration
	delay             bool
	delayOpts         delayOptions
}

func ruleFlags(ro *ruleOptions) func() error {
	var rates, engines string
	flag.BoolVar(&ro.cost, "rules-cost", true, "measure the evaluation cost of every rule on synthetic data (in a child process)")
	flag.StringVar(&rates, "rules-cost-rates", "100000,300000", "flow rates the cost stage fills the window at, ascending")
	flag.DurationVar(&ro.costWindow, "rules-cost-window", 10*time.Minute, "time the synthetic flows span, ending now")
	flag.IntVar(&ro.costReps, "rules-cost-reps", 4, "evaluations of each rule per size: the first tick (a backfill of the window) and the warm ones after it")
	flag.StringVar(&engines, "rules-cost-engines", "embedded", "engines of the cost stage: embedded, server")
	flag.DurationVar(&ro.costBudget, "rules-cost-insert-budget", 120*time.Second, "time the cost stage may spend filling flows per engine; sizes it cannot fill are measured at the rows inserted and extrapolated")
	flag.Uint64Var(&ro.costChunk, "rules-cost-chunk", 5_000_000, "rows per INSERT ... SELECT")
	flag.IntVar(&ro.costParallel, "rules-cost-parallel", 2, "INSERT ... SELECT statements at once")
	flag.DurationVar(&ro.costMeasureBudget, "rules-cost-measure-budget", 90*time.Second, "time after which no further tick of evaluations starts, per size")
	flag.StringVar(&ro.costWorker, "rules-cost-worker", "", "internal: run the cost stage here and write its JSON to this file")
	flag.BoolVar(&ro.load, "rules-load", true, "compare flowhouse's CPU under load with the rules on and off")
	flag.Float64Var(&ro.loadRate, "rules-load-rate", 300000, "offered flows/s of the rules-on/off comparison")
	flag.DurationVar(&ro.loadDuration, "rules-load-duration", 30*time.Second, "load duration of each of the two runs")
	delayFlags(&ro.delayOpts, &ro.delay)
	return func() error {
		var err error
		if ro.costRates, err = parseRates(rates); err != nil {
			return fmt.Errorf("-rules-cost-rates: %w", err)
		}
		ro.costEngines = strings.Split(engines, ",")
		if ro.costParallel < 1 {
			return errors.New("-rules-cost-parallel: at least 1")
		}
		if ro.costReps < 1 {
			return errors.New("-rules-cost-reps: at least 1")
		}
		return nil
	}
}

func parseRates(s string) ([]float64, error) {
	var out []float64
	for _, r := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", r)
		}
		out = append(out, v)
	}
	return out, nil
}

// costEngine is a database the cost stage fills and runs the rules on.
type costEngine struct {
	name   string
	db     store.DB
	reader dbapi.Querier
	// cpu is the CPU seconds that count as the rules': this process's,
	// plus the server process's on a server.
	cpu   func() float64
	close func()
}

func openCostEngine(ctx context.Context, o options, engine string) (*costEngine, error) {
	switch engine {
	case "embedded":
		return openEmbeddedCost(ctx, o)
	case "server":
		return openServerCost(ctx)
	}
	return nil, fmt.Errorf("-rules-cost-engines: unknown engine %q", engine)
}

func openEmbeddedCost(ctx context.Context, o options) (*costEngine, error) {
	lib, err := filepath.Abs(o.library)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "flowbench-rules-")
	if err != nil {
		return nil, err
	}
	cfg := store.DefaultConfig()
	cfg.Embedded.Library, cfg.Embedded.Path = lib, dir
	db, err := store.OpenEmbedded(ctx, cfg, nil)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	e := &costEngine{name: "embedded (chDB)", db: db, cpu: selfCPU}
	e.close = func() { db.Close(); os.RemoveAll(dir) }
	if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention}); err != nil {
		e.close()
		return nil, err
	}
	opts := store.ReadOnlyOptionsOf(cfg.Embedded)
	opts.Conns = 2 // rules.DefaultConcurrency, as serve opens them
	ro, err := db.OpenReadOnly(ctx, opts)
	if err != nil {
		e.close()
		return nil, err
	}
	e.reader = ro
	e.close = func() { ro.Close(); db.Close(); os.RemoveAll(dir) }
	return e, nil
}

func openServerCost(ctx context.Context) (*costEngine, error) {
	srv, err := chtest.Start(ctx, chtest.Options{})
	if err != nil {
		return nil, err
	}
	pid := 0
	if b, err := os.ReadFile(filepath.Join(srv.Dir(), "server.pid")); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if err := srv.Exec(ctx, "CREATE DATABASE IF NOT EXISTS rulebench"); err != nil {
		srv.Stop()
		return nil, err
	}
	cfg := store.DefaultConfig()
	cfg.Addr, cfg.Database = srv.Addr(), "rulebench"
	db, err := store.OpenServer(ctx, cfg, nil)
	if err != nil {
		srv.Stop()
		return nil, err
	}
	e := &costEngine{name: "server " + srv.Version(), db: db, reader: db.ReadOnly()}
	e.cpu = func() float64 { c, _ := processCPU(pid); return c + selfCPU() }
	e.close = func() { db.Close(); srv.Stop() }
	if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention}); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// settle waits (at most a minute) for the background merges of the
// inserts to end, so that they do not count as the rules' CPU, and
// returns the active parts of flows.
func settle(ctx context.Context, db dbapi.Querier) uint64 {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var n uint64
		if err := dbapi.QueryRow(ctx, db, []any{&n}, "SELECT count() FROM system.merges"); err != nil || n == 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	var parts uint64
	_ = dbapi.QueryRow(ctx, db, []any{&parts}, "SELECT count() FROM system.parts WHERE active AND database = currentDatabase() AND table = 'flows'")
	return parts
}

// ruleCostStage runs the cost stage in a child process (the embedded
// engine boots once per process, on one directory, and its memory and
// threads go with the child) and reads what it measured.
func ruleCostStage(ctx context.Context, o options, ro ruleOptions) ([]RuleCostSize, error) {
	out, err := os.CreateTemp("", "flowbench-rules-*.json")
	if err != nil {
		return nil, err
	}
	out.Close()
	defer os.Remove(out.Name())
	rates := make([]string, len(ro.costRates))
	for i, r := range ro.costRates {
		rates[i] = strconv.FormatFloat(r, 'f', -1, 64)
	}
	cmd := exec.CommandContext(ctx, os.Args[0], "-rules-cost-worker="+out.Name(), "-library="+o.library,
		"-rules-cost-rates="+strings.Join(rates, ","), "-rules-cost-window="+ro.costWindow.String(),
		"-rules-cost-reps="+strconv.Itoa(ro.costReps), "-rules-cost-engines="+strings.Join(ro.costEngines, ","),
		"-rules-cost-insert-budget="+ro.costBudget.String(), "-rules-cost-chunk="+strconv.FormatUint(ro.costChunk, 10),
		"-rules-cost-parallel="+strconv.Itoa(ro.costParallel), "-rules-cost-measure-budget="+ro.costMeasureBudget.String())
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("rules cost stage: %w", err)
	}
	b, err := os.ReadFile(out.Name())
	if err != nil {
		return nil, err
	}
	var sizes []RuleCostSize
	return sizes, json.Unmarshal(b, &sizes)
}
