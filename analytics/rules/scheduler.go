package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/lifecycle"
	"github.com/flowhouse/flowhouse/store"
	"github.com/flowhouse/flowhouse/tenant"
	"github.com/prometheus/client_golang/prometheus"
)

// Lifecycle takes the evaluations; *alerts.Manager is one.
type Lifecycle interface {
	Evaluate(ctx context.Context, ev alerts.Evaluation) (alerts.Result, error)
}

// SchedulerDeps are what the scheduler uses besides its configuration.
type SchedulerDeps struct {
	// DB keeps the rules' own state (rule_state).
	DB dbapi.DB
	// Reader is the read-only query interface rules read through: a
	// store.ReadOnly on the embedded engine, Server.ReadOnly on a server.
	Reader dbapi.Querier
	Alerts Lifecycle
	// Tenants are the tenants rules cover by default.
	Tenants    *tenant.Tenants
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock of evaluations; nil is time.Now.
	Now func() time.Time
}

// scheduled is one rule as the scheduler runs it.
type scheduled struct {
	name, kind        string
	interval, timeout time.Duration
	scope             []string        // empty: every tenant
	disabled          map[string]bool // tenants whose override turns it off
	rule              func(tenant string) alerts.Rule
	evaluate          func(evalContext) ([]Finding, error)
	// prepare checks the rule against the engine before the first run
	// (SQL rules: a dry run); nil needs nothing.
	prepare func(ctx context.Context, db dbapi.Querier) error

	log rate.Sometimes
}

type evalContext struct {
	ctx     context.Context
	now     time.Time
	tenants []string
	db      dbapi.Querier
	caps    dbapi.Capabilities
}

// Scheduler runs the rules.
type Scheduler struct {
	cfg   Config
	deps  SchedulerDeps
	log   *slog.Logger
	now   func() time.Time
	m     *metrics
	rules []*scheduled
	slots chan struct{}
	caps  dbapi.Capabilities

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// New builds the rules of cfg. It does no I/O.
func New(cfg Config, deps SchedulerDeps) (*Scheduler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	if deps.Reader == nil || deps.Alerts == nil {
		return nil, errors.New("rules: a Reader and an Alerts lifecycle are required")
	}
	if deps.Tenants != nil {
		if err := cfg.CheckTenants(deps.Tenants.Names()); err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Scheduler{cfg: cfg, deps: deps, log: log.With("component", "rules"), now: deps.Now,
		slots: make(chan struct{}, cfg.Concurrency), stop: make(chan struct{})}
	if s.now == nil {
		s.now = time.Now
	}
	bdeps := Deps{DB: deps.DB, Logger: s.log, Registerer: deps.Registerer}
	for _, k := range builtins {
		r, err := k.build(&cfg.Builtin, bdeps)
		if err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		if r != nil {
			s.rules = append(s.rules, r)
		}
	}
	for _, sr := range cfg.SQL {
		s.rules = append(s.rules, sr.withDefaults().build(cfg.GeneratorURL))
	}
	for _, r := range s.rules {
		r.log = rate.Sometimes{Interval: time.Minute}
		if r.timeout == 0 {
			r.timeout = r.interval
		}
		inner := r.rule
		r.rule = func(t string) alerts.Rule {
			ar := inner(t)
			ar.GeneratorURL = cfg.GeneratorURL
			return ar
		}
	}
	s.m = newMetrics(deps.Registerer, s.rules)
	return s, nil
}

// Rules names the rules that run, in order.
func (s *Scheduler) Rules() []string {
	out := make([]string, len(s.rules))
	for i, r := range s.rules {
		out[i] = r.name
	}
	return out
}

// Prepare detects the engine and checks every SQL rule against it with a
// dry run; the error names the first rule that fails. Start calls it.
func (s *Scheduler) Prepare(ctx context.Context) error {
	caps, err := dbapi.DetectCapabilities(ctx, s.deps.Reader)
	if err != nil {
		return fmt.Errorf("rules: %w", err)
	}
	s.caps = caps
	for _, r := range s.rules {
		if r.prepare == nil {
			continue
		}
		if err := r.prepare(ctx, s.deps.Reader); err != nil {
			return fmt.Errorf("rules: %s rule %q: %w", r.kind, r.name, err)
		}
	}
	return nil
}

// Start checks the rules (Prepare) and starts their schedules.
func (s *Scheduler) Start(ctx context.Context) error {
	if err := s.Prepare(ctx); err != nil {
		return err
	}
	for _, r := range s.rules {
		s.wg.Add(1)
		go s.loop(r)
	}
	s.log.Info("rules started", "rules", len(s.rules))
	return nil
}

// Stop ends the schedules and waits for running evaluations, whose
// contexts are cancelled.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.once.Do(func() { close(s.stop) })
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("rules: stop: %w", ctx.Err())
	}
}

// Component is the scheduler as a lifecycle component.
func (s *Scheduler) Component() lifecycle.Component {
	return lifecycle.Component{Name: "rules", Start: s.Start, Stop: s.Stop}
}

// loop runs r every interval. The first run comes after a random share
// of the jitter; each later one is due an interval after the previous
// was due, delayed by up to Jitter of the interval. A run that lasts past
// the next due time makes that run late, never concurrent: what it
// missed is counted.
func (s *Scheduler) loop(r *scheduled) {
	defer s.wg.Done()
	due := s.now().Add(s.jitter(r.interval))
	for {
		timer := time.NewTimer(time.Until(due))
		select {
		case <-s.stop:
			timer.Stop()
			return
		case <-timer.C:
		}
		s.run(r)
		due = due.Add(r.interval)
		if now := s.now(); due.Before(now) {
			missed := now.Sub(due)/r.interval + 1
			s.m.skipped.WithLabelValues(r.name).Add(float64(missed))
			due = due.Add(missed * r.interval)
		}
		due = due.Add(s.jitter(r.interval))
	}
}

func (s *Scheduler) jitter(interval time.Duration) time.Duration {
	if s.cfg.Jitter <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(float64(interval)*s.cfg.Jitter) + 1))
}

// Run evaluates the rule named now, outside its schedule, and waits for
// it (tests and benchmarks; an operator's "run now"). It must not be
// used while the scheduler runs the same rule.
func (s *Scheduler) Run(name string) error {
	for _, r := range s.rules {
		if r.name == name {
			return s.run(r)
		}
	}
	return fmt.Errorf("rules: no rule %q", name)
}

// run does one evaluation of r and hands its findings to the lifecycle.
func (s *Scheduler) run(r *scheduled) error {
	select {
	case s.slots <- struct{}{}:
	case <-s.stop:
		return nil
	}
	defer func() { <-s.slots }()
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	at := s.now().UTC().Truncate(time.Second)
	tenants := s.tenants(r)
	start := time.Now()
	findings, err := r.evaluate(evalContext{ctx: ctx, now: at, tenants: tenants, db: s.deps.Reader, caps: s.caps})
	s.m.duration.WithLabelValues(r.name).Observe(time.Since(start).Seconds())
	if err == nil {
		err = s.apply(ctx, r, at, tenants, findings)
	}
	if err != nil {
		reason := errorReason(ctx, err)
		s.m.runs.WithLabelValues(r.name, "error").Inc()
		s.m.errors.WithLabelValues(r.name, reason).Inc()
		r.log.Do(func() { s.log.Warn("rule evaluation failed", "rule", r.name, "reason", reason, "error", err) })
		return fmt.Errorf("rules: %s: %w", r.name, err)
	}
	s.m.runs.WithLabelValues(r.name, "ok").Inc()
	s.m.last.WithLabelValues(r.name).Set(float64(at.Unix()))
	s.m.findings.WithLabelValues(r.name).Set(float64(len(findings)))
	return nil
}

// apply gives each tenant of the run its findings, none included: an
// instance no longer found resolves.
func (s *Scheduler) apply(ctx context.Context, r *scheduled, at time.Time, tenants []string, findings []Finding) error {
	byTenant := make(map[string][]alerts.Instance, len(tenants))
	for _, f := range findings {
		if !slices.Contains(tenants, f.Tenant) {
			s.m.outOfScope.WithLabelValues(r.name).Inc()
			continue
		}
		byTenant[f.Tenant] = append(byTenant[f.Tenant], f.Instance)
	}
	var errs []error
	for _, t := range tenants {
		if _, err := s.deps.Alerts.Evaluate(ctx, alerts.Evaluation{Rule: r.rule(t), At: at, Instances: byTenant[t]}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// tenants are the tenants a run of r covers, sorted.
func (s *Scheduler) tenants(r *scheduled) []string {
	all := r.scope
	if len(all) == 0 && s.deps.Tenants != nil {
		all = s.deps.Tenants.Names()
	}
	out := make([]string, 0, len(all))
	for _, t := range all {
		if !r.disabled[t] {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func errorReason(ctx context.Context, err error) string {
	var refused *store.RefusedError
	switch {
	case errors.As(err, &refused):
		return "refused"
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return store.ErrorReason(err)
}

// Check is what `flowhouse check-config` runs: cfg's rules against the
// tenants known and, when reader is not nil, every SQL rule's dry run on
// the engine. Nothing is evaluated.
func Check(ctx context.Context, cfg Config, reader dbapi.Querier, tenants *tenant.Tenants) error {
	if reader == nil {
		reader = unavailable{}
	}
	s, err := New(cfg, SchedulerDeps{Reader: reader, Alerts: discard{}, Tenants: tenants})
	if err != nil {
		return err
	}
	if _, ok := reader.(unavailable); ok {
		return nil
	}
	return s.Prepare(ctx)
}

type discard struct{}

func (discard) Evaluate(context.Context, alerts.Evaluation) (alerts.Result, error) {
	return alerts.Result{}, nil
}

type unavailable struct{}

func (unavailable) Query(context.Context, string, ...any) (dbapi.Rows, error) {
	return nil, errors.New("no database")
}
