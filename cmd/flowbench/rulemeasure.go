package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/analytics/rules"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/tenant"
)

// RuleCost is one rule's evaluations at one size.
type RuleCost struct {
	Rule            string  `json:"rule"`
	IntervalSeconds float64 `json:"interval_seconds"`
	Evaluations     int     `json:"evaluations"`
	Errors          int     `json:"errors"`
	LastError       string  `json:"last_error,omitempty"`
	WallMedianMs    float64 `json:"wall_median_ms"`
	WallP90Ms       float64 `json:"wall_p90_ms"`
	CPUMedianMs     float64 `json:"cpu_median_ms"`
	CPUP90Ms        float64 `json:"cpu_p90_ms"`
	// FirstWallMs and FirstCPUMs are the first tick's: after a start the
	// incremental rules read their whole window once; the medians are
	// over the ticks after it, each reading what came since the previous.
	FirstWallMs float64 `json:"first_wall_ms"`
	FirstCPUMs  float64 `json:"first_cpu_ms"`
	// CPUShare is CPUMedianMs per interval: cores used at the default
	// interval, once warm.
	CPUShare float64 `json:"cpu_share_of_one_core"`
}

// RuleCostSize is every rule's cost on one engine at one data size.
type RuleCostSize struct {
	Engine     string  `json:"engine"`
	Rate       float64 `json:"flows_per_second"`
	WindowSecs float64 `json:"window_seconds"`
	Rows       uint64  `json:"rows_wanted"`
	// RowsMeasured are the rows in flows during the measurement: fewer
	// than Rows when the insert budget ran out; then Extrapolated is set
	// and the *Extrapolated figures scale the measured ones linearly.
	RowsMeasured uint64 `json:"rows_measured"`
	Extrapolated bool   `json:"extrapolated"`
	// NotMeasured: so few more rows fit the budget than the previous size
	// had that this size is extrapolated from the previous one.
	NotMeasured        bool       `json:"not_measured,omitempty"`
	InsertRowsPerSec   float64    `json:"insert_rows_per_second"`
	InsertSeconds      float64    `json:"insert_seconds_total"`
	Parts              uint64     `json:"flows_active_parts"`
	IdleCores          float64    `json:"idle_cores_subtracted"`
	Rules              []RuleCost `json:"rules"`
	TotalCPUShare      float64    `json:"total_cpu_share_of_one_core"`
	TotalCPUShareExtra float64    `json:"total_cpu_share_extrapolated,omitempty"`
	Error              string     `json:"error,omitempty"`
}

// ruleCostWorker is the child process of the cost stage.
func ruleCostWorker(o options, ro ruleOptions) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var all []RuleCostSize
	for _, engine := range ro.costEngines {
		sizes, err := ruleCostEngine(ctx, o, ro, engine)
		if err != nil {
			sizes = append(sizes, RuleCostSize{Engine: engine, Error: err.Error()})
			fmt.Fprintf(os.Stderr, "rules cost on %s: %v\n", engine, err)
		}
		all = append(all, sizes...)
	}
	b, err := json.Marshal(all)
	if err != nil {
		return err
	}
	return os.WriteFile(ro.costWorker, b, 0o644)
}

// ruleCostEngine fills one engine size after size and measures the
// rules at each.
func ruleCostEngine(ctx context.Context, o options, ro ruleOptions, engine string) ([]RuleCostSize, error) {
	eng, err := openCostEngine(ctx, o, engine)
	if err != nil {
		return nil, err
	}
	defer eng.close()
	tenants, mgr, err := costAlerts(ctx, eng)
	if err != nil {
		return nil, err
	}
	defer mgr.Stop(context.Background())
	var clock atomic.Int64
	cfg := rules.DefaultConfig()
	// A fresh scheduler per size, its rules' state emptied: stateful rules
	// measure from their previous sample, and each size's ticks run the
	// clock over the same times again.
	newScheduler := func() (*rules.Scheduler, error) {
		if err := eng.db.Exec(ctx, "TRUNCATE TABLE IF EXISTS rule_state"); err != nil {
			return nil, err
		}
		// A new Reader value too: rules that share results between them
		// (the flood rules) key them by the reader, and must not reuse
		// the previous size's.
		sched, err := rules.New(cfg, rules.SchedulerDeps{DB: eng.db, Reader: &sizeReader{eng.reader}, Alerts: mgr, Tenants: tenants,
			Now: func() time.Time { return time.Unix(0, clock.Load()).UTC() }})
		if err != nil {
			return nil, err
		}
		return sched, sched.Prepare(ctx)
	}
	end := time.Now().UTC().Truncate(time.Second)
	f := &filler{db: eng.db, end: end, window: ro.costWindow, chunk: ro.costChunk, parallel: ro.costParallel, budget: ro.costBudget}
	if err := detachViews(ctx, eng.db, true); err != nil {
		return nil, err
	}
	// No merges while filling and measuring: their CPU would count as the
	// rules', and waiting for them costs minutes. flows keeps a part per
	// chunk (reported).
	if err := eng.db.Exec(ctx, "SYSTEM STOP MERGES flows"); err != nil {
		return nil, err
	}
	m := &ruleMeter{eng: eng, clock: &clock, end: end, reps: ro.costReps, budget: ro.costMeasureBudget, intervals: ruleIntervals(cfg)}
	var out []RuleCostSize
	for _, rate := range ro.costRates {
		size := RuleCostSize{Engine: eng.name, Rate: rate, WindowSecs: ro.costWindow.Seconds(), Rows: uint64(rate * ro.costWindow.Seconds())}
		complete, err := f.fill(ctx, size.Rows)
		if err != nil {
			return out, err
		}
		size.RowsMeasured, size.InsertRowsPerSec, size.InsertSeconds = f.inserted, f.rowsPerSecond(), f.spent.Seconds()
		size.Extrapolated = !complete
		if n := len(out); !complete && n > 0 && f.inserted < out[n-1].RowsMeasured*3/2 {
			// Too few more rows to be worth measuring: extrapolated from
			// the previous size.
			prev := out[n-1]
			size.RowsMeasured, size.Parts, size.NotMeasured = prev.RowsMeasured, prev.Parts, true
			size.TotalCPUShareExtra = prev.TotalCPUShare * float64(size.Rows) / float64(prev.RowsMeasured)
			fmt.Fprintf(os.Stderr, "rules cost: only %d rows of %d fit the insert budget: not measured\n", f.inserted, size.Rows)
			return append(out, size), nil
		}
		if m.sched, err = newScheduler(); err != nil {
			return out, err
		}
		if err := m.size(ctx, f, &size); err != nil {
			return out, err
		}
		out = append(out, size)
		if !complete {
			break // the budget is spent: larger sizes cannot be filled either
		}
	}
	return out, nil
}

// size measures every rule on what f has filled so far.
func (m *ruleMeter) size(ctx context.Context, f *filler, size *RuleCostSize) error {
	// The rollups and counters at the rate measured (rows in flows over
	// the window).
	t := time.Now()
	if err := f.fillOthers(ctx, float64(f.inserted)/f.window.Seconds()); err != nil {
		return err
	}
	size.Parts = settle(ctx, m.eng.reader)
	size.IdleCores = m.idle(2 * time.Second)
	t1 := time.Now()
	size.Rules = m.measure(size.IdleCores)
	fmt.Fprintf(os.Stderr, "rules cost: filled the rest in %s, measured in %s\n", t1.Sub(t).Round(time.Second), time.Since(t1).Round(time.Second))
	for _, r := range size.Rules {
		size.TotalCPUShare += r.CPUShare
	}
	if size.Extrapolated && size.RowsMeasured > 0 {
		size.TotalCPUShareExtra = size.TotalCPUShare * float64(size.Rows) / float64(size.RowsMeasured)
	}
	fmt.Fprintf(os.Stderr, "rules cost on %s: %d rows: %d rules, %.1f%% of one core\n", m.eng.name, size.RowsMeasured, len(size.Rules), size.TotalCPUShare*100)
	return nil
}

// costAlerts are the tenants of the synthetic flows (t0, t1, t2) and a
// started alert lifecycle on the engine.
func costAlerts(ctx context.Context, eng *costEngine) (*tenant.Tenants, *alerts.Manager, error) {
	tenants, err := tenant.New(tenant.Config{Default: "t0", Exporters: []tenant.Exporter{
		{Match: "10.1.0.1", Tenant: "t1"}, {Match: "10.1.0.2", Tenant: "t2"}}})
	if err != nil {
		return nil, nil, err
	}
	mgr, err := alerts.New(alerts.DefaultConfig(), alerts.Deps{DB: eng.db, Tenants: tenants})
	if err != nil {
		return nil, nil, err
	}
	return tenants, mgr, mgr.Start(ctx)
}

// ruleMeter runs the rules on a fixed clock and measures them.
type ruleMeter struct {
	eng       *costEngine
	sched     *rules.Scheduler
	clock     *atomic.Int64
	end       time.Time
	reps      int
	budget    time.Duration // no further tick starts after this
	intervals map[string]time.Duration
}

// idle is the CPU the process (and server) uses doing nothing, in cores.
func (m *ruleMeter) idle(d time.Duration) float64 {
	c0, t0 := m.eng.cpu(), time.Now()
	time.Sleep(d)
	return (m.eng.cpu() - c0) / time.Since(t0).Seconds()
}

// measure runs reps ticks of every rule (at least two: the first, and one
// warm tick, whatever the budget). In tick k each rule's clock is
// the data's end less (reps-1-k) of its interval (at most 60 s), as its
// schedule would run it: rules of one interval run at the same time, so
// the flood rules share their per-destination query as in serve (the
// first of them in the list pays for it). The idle CPU of the process
// over the evaluation's time is subtracted.
func (m *ruleMeter) measure(idle float64) []RuleCost {
	names := m.sched.Rules()
	wall := make(map[string][]float64, len(names))
	cpu := make(map[string][]float64, len(names))
	res := make(map[string]*RuleCost, len(names))
	for _, n := range names {
		res[n] = &RuleCost{Rule: n, IntervalSeconds: m.intervals[n].Seconds()}
	}
	start := time.Now()
	for k := range m.reps {
		if k > 1 && m.budget > 0 && time.Since(start) > m.budget {
			fmt.Fprintf(os.Stderr, "rules cost: measurement budget spent after %d ticks\n", k)
			break
		}
		for _, n := range names {
			step := min(m.intervals[n], time.Minute)
			if step <= 0 {
				step = 10 * time.Second
			}
			m.clock.Store(m.end.Add(-time.Duration(m.reps-1-k) * step).UnixNano())
			c0, t0 := m.eng.cpu(), time.Now()
			err := m.sched.Run(n)
			w := time.Since(t0).Seconds()
			c := max(0, m.eng.cpu()-c0-idle*w)
			r := res[n]
			r.Evaluations++
			if err != nil {
				r.Errors++
				r.LastError = err.Error()
			}
			if k == 0 {
				r.FirstWallMs, r.FirstCPUMs = w*1000, c*1000
				if m.reps > 1 {
					continue
				}
			}
			wall[n] = append(wall[n], w*1000)
			cpu[n] = append(cpu[n], c*1000)
		}
	}
	out := make([]RuleCost, 0, len(names))
	for _, n := range names {
		r := res[n]
		r.WallMedianMs, r.WallP90Ms = quantile(wall[n], 0.5), quantile(wall[n], 0.9)
		r.CPUMedianMs, r.CPUP90Ms = quantile(cpu[n], 0.5), quantile(cpu[n], 0.9)
		if r.IntervalSeconds > 0 {
			r.CPUShare = r.CPUMedianMs / 1000 / r.IntervalSeconds
		}
		out = append(out, *r)
	}
	return out
}

// sizeReader is the engine's reader under a new identity.
type sizeReader struct{ dbapi.Querier }
