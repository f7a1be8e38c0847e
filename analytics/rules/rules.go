// Package rules runs flowhouse's detection: built-in rules (attacks,
// scans, volume anomalies, interface utilisation, ARP security) and
// users' SQL rules, each on its own schedule, over what the store holds.
// What a run finds goes to the alert lifecycle (package alerts), which
// decides pending, firing and resolved, keeps alerts and notifies.
//
// The scheduler runs each rule on its interval, with jitter, never two
// runs of one rule at once, under a per-rule timeout, at most
// Concurrency rules at a time. Rules read through the store's read-only
// query interface on their own connections, so a slow or failing rule
// holds up neither ingestion nor the other rules beyond its share; its
// errors are counted and logged, rate-limited.
package rules

import (
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/flowhouse/flowhouse/notify"
)

// Config is the rules section.
type Config struct {
	// Enabled runs the rules, the alert lifecycle and notifications in
	// this process. Of several processes on one database (collectors in
	// front of a cluster), exactly one must have it: each would otherwise
	// evaluate every rule and notify every alert.
	Enabled bool `mapstructure:"enabled" yaml:"enabled"`
	// Concurrency: rules evaluated at once.
	Concurrency int `mapstructure:"concurrency" yaml:"concurrency"`
	// Jitter: each run starts up to this share of the interval late (0 to
	// 0.5), so rules of the same interval do not all run at once.
	Jitter float64 `mapstructure:"jitter" yaml:"jitter"`
	// GeneratorURL is put into notifications as the alert's source link
	// (an alerts page of yours); empty sends none.
	GeneratorURL string        `mapstructure:"generator_url" yaml:"generator_url"`
	Builtin      BuiltinConfig `mapstructure:"builtin" yaml:"builtin"`
	SQL          []SQLRule     `mapstructure:"sql" yaml:"sql"`
}

// Defaults of Config.
const (
	DefaultConcurrency = 2
	DefaultJitter      = 0.1
)

// DefaultConfig has every built-in rule with its defaults and no SQL rule.
func DefaultConfig() Config {
	c := Config{Enabled: true, Concurrency: DefaultConcurrency, Jitter: DefaultJitter}
	for _, k := range builtins {
		k.setDefaults(&c.Builtin)
	}
	return c
}

// Validate checks what can be checked without the database: SQL rules
// are also checked against the engine when the scheduler starts.
func (c Config) Validate() error {
	var errs []error
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency: %d is below 1", c.Concurrency))
	}
	if c.Jitter < 0 || c.Jitter > 0.5 {
		errs = append(errs, fmt.Errorf("jitter: %g is outside 0..0.5", c.Jitter))
	}
	for _, k := range builtins {
		errs = append(errs, k.validate(&c.Builtin, "builtin")...)
	}
	names := map[string]bool{}
	for _, k := range builtins {
		names[k.name()] = true
	}
	for i, r := range c.SQL {
		key := fmt.Sprintf("sql[%d]", i)
		if r.Name != "" {
			key = fmt.Sprintf("sql[%d] (%s)", i, r.Name)
		}
		if names[r.Name] {
			errs = append(errs, fmt.Errorf("%s.name: %q is already a rule's name", key, r.Name))
		}
		names[r.Name] = true
		errs = append(errs, r.validate(key)...)
	}
	return errors.Join(errs...)
}

// CheckTenants names rule scopes and overrides of tenants that do not
// exist.
func (c Config) CheckTenants(known []string) error {
	var errs []error
	check := func(key string, ts []string) {
		for _, t := range ts {
			if !slices.Contains(known, t) {
				errs = append(errs, fmt.Errorf("%s: tenant %q is not configured (enrich.exporters[].tenant or enrich.default_tenant)", key, t))
			}
		}
	}
	for _, k := range builtins {
		scope, overrides := k.tenants(&c.Builtin)
		check("builtin."+k.name()+".tenants", scope)
		check("builtin."+k.name()+".overrides", overrides)
	}
	for i, r := range c.SQL {
		check(fmt.Sprintf("sql[%d].tenants", i), r.Tenants)
	}
	return errors.Join(errs...)
}

// Names of rules and labels follow Prometheus.
var (
	ruleName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	// reservedLabels are set by notify on every alert.
	reservedLabels = []string{notify.LabelAlertname, notify.LabelTenant, notify.LabelSeverity}
)

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
