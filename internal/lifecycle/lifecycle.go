// Package lifecycle starts a process's components in data order and
// stops them in reverse, so that what a later component hands to an
// earlier one is always flushed before the earlier one stops; a start
// that fails stops what had started. Each component brings its own
// readiness checks, registered with the HTTP server as it starts.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// Check is one readiness check: nil means ready.
type Check struct {
	Name string
	Func func(ctx context.Context) error
}

// Registrar takes readiness checks (the api server does).
type Registrar interface {
	AddCheck(name string, fn func(ctx context.Context) error)
}

// Component is one part of the process. Start and Stop may be nil.
type Component struct {
	Name  string
	Start func(ctx context.Context) error
	// Stop is called once, in reverse start order; ctx bounds it.
	Stop   func(ctx context.Context) error
	Checks []Check
}

// Runner runs components.
type Runner struct {
	log     *slog.Logger
	checks  Registrar
	started []Component
}

// New returns a runner that registers checks with checks (nil: nowhere).
func New(log *slog.Logger, checks Registrar) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{log: log, checks: checks}
}

// Start starts components in order. When one fails, those started are
// stopped in reverse and the error names the one that failed.
func (r *Runner) Start(ctx context.Context, components ...Component) error {
	for _, c := range components {
		if r.checks != nil {
			for _, ch := range c.Checks {
				r.checks.AddCheck(ch.Name, ch.Func)
			}
		}
		if c.Start != nil {
			if err := c.Start(ctx); err != nil {
				stopErr := r.Stop(context.WithoutCancel(ctx))
				return errors.Join(fmt.Errorf("start %s: %w", c.Name, err), stopErr)
			}
		}
		r.started = append(r.started, c)
		r.log.Debug("started", "component", c.Name)
	}
	return nil
}

// Stop stops every started component, the last started first, and
// returns their errors joined, each named.
func (r *Runner) Stop(ctx context.Context) error {
	var errs []error
	for i := len(r.started) - 1; i >= 0; i-- {
		c := r.started[i]
		if c.Stop == nil {
			continue
		}
		if err := c.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", c.Name, err))
		}
		r.log.Debug("stopped", "component", c.Name)
	}
	r.started = nil
	return errors.Join(errs...)
}
