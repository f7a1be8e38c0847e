package rules

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/notify"
)

// Params are the parameters of a built-in rule: a struct whose fields
// carry mapstructure tags (the keys under params: in the configuration).
// Validate names the keys that are wrong, relative to params ("floor_mbps:
// -1 is negative").
type Params interface {
	Validate() error
}

// Finding is one instance a rule found, for one tenant.
type Finding struct {
	Tenant string
	alerts.Instance
}

// Evaluator is one built-in rule's logic. Evaluate is never called twice
// at once for one evaluator (the scheduler serialises the runs of a rule),
// so an evaluator may keep state between runs without locks.
type Evaluator[P Params] interface {
	// Evaluate returns what the rule finds now for the tenants of env.
	// Findings for other tenants are dropped (and counted). An error
	// fails the whole run: nothing is applied to the alerts.
	Evaluate(ctx context.Context, env *Env[P]) ([]Finding, error)
}

// Env is what one evaluation of a rule gets.
type Env[P Params] struct {
	// Rule is the rule's name.
	Rule string
	// Now is the evaluation time, UTC, in whole seconds.
	Now time.Time
	// Interval is the rule's interval.
	Interval time.Duration
	// Tenants are the tenants this run covers (the rule's scope, without
	// tenants whose override disables it), sorted.
	Tenants []string
	// DB is the store's query interface, read-only where the engine
	// allows it. Queries must run on both engines: the embedded engine
	// (current ClickHouse) and ClickHouse servers down to 18.16 (no Map,
	// no window functions; addresses are FixedString(16) there, IPv6 on
	// current servers; see Caps).
	DB   dbapi.Querier
	Caps dbapi.Capabilities

	base     P
	byTenant map[string]P
}

// Params returns tenant's parameters: the rule's, with the tenant's
// overrides applied.
func (e *Env[P]) Params(tenant string) P {
	if p, ok := e.byTenant[tenant]; ok {
		return p
	}
	return e.base
}

// Deps are what a built-in rule's constructor gets.
type Deps struct {
	// DB reads and writes the rule's own tables (rule_state).
	DB     dbapi.DB
	Logger *slog.Logger
	// Registerer, for metrics of the rule's own (nil registers none).
	Registerer prometheus.Registerer
}

// Kind is a built-in rule: its name (the key under rules.builtin), what
// it detects, its defaults, and its constructor.
type Kind[P Params] struct {
	Name        string
	Description string
	// Defaults is the rule's configuration when nothing is set.
	Defaults func() Builtin[P]
	// Config picks the rule's section of the configuration.
	Config func(*BuiltinConfig) *Builtin[P]
	// New builds the evaluator. It does no I/O.
	New func(Deps) (Evaluator[P], error)
}

// Builtin is the configuration of one built-in rule.
type Builtin[P Params] struct {
	Enabled  bool            `mapstructure:"enabled" yaml:"enabled"`
	Interval time.Duration   `mapstructure:"interval" yaml:"interval"`
	Timeout  time.Duration   `mapstructure:"timeout" yaml:"timeout"`
	Severity notify.Severity `mapstructure:"severity" yaml:"severity"`
	// For: pending this long (evaluations "3", or a duration "30s") before
	// firing. KeepFiringFor: firing this long after it was last found.
	For           Hold `mapstructure:"for" yaml:"for"`
	KeepFiringFor Hold `mapstructure:"keep_firing_for" yaml:"keep_firing_for"`
	// Tenants is the scope; empty is every tenant.
	Tenants     []string          `mapstructure:"tenants" yaml:"tenants"`
	Labels      map[string]string `mapstructure:"labels" yaml:"labels"`
	Annotations map[string]string `mapstructure:"annotations" yaml:"annotations"`
	Params      P                 `mapstructure:"params" yaml:"params"`
	// Overrides per tenant: a parameter left out (or zero) keeps the
	// rule's value.
	Overrides map[string]Override[P] `mapstructure:"overrides" yaml:"overrides"`
}

// Override is one tenant's change to a built-in rule.
type Override[P Params] struct {
	Disabled bool            `mapstructure:"disabled" yaml:"disabled"`
	Severity notify.Severity `mapstructure:"severity" yaml:"severity"`
	Params   P               `mapstructure:"params" yaml:"params"`
}
