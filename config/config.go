// Package config loads the whole flowhouse configuration: defaults, then one
// YAML file, then FLOWHOUSE_<SECTION>_<KEY> environment variables, then each
// section's validation. Unknown keys and variables are errors, as are values
// of the wrong type; all problems are reported at once, and secrets are never
// shown, neither in errors nor in the effective configuration that
// `flowhouse check-config` prints.
//
// Keys are declared once, by the mapstructure tags of each component's
// Config struct. Adding a section is a field in Config and a line in
// sections.
package config

import (
	"fmt"
	"os"
	"reflect"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/analytics/rules"
	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/collector"
	"github.com/flowhouse/flowhouse/enrich"
	"github.com/flowhouse/flowhouse/internal/membudget"
	"github.com/flowhouse/flowhouse/notify"
	"github.com/flowhouse/flowhouse/privacy"
	"github.com/flowhouse/flowhouse/store"
	"github.com/flowhouse/flowhouse/store/spool"
	"github.com/flowhouse/flowhouse/token"
)

// DefaultFile is read when Load is given no path and the file exists.
const DefaultFile = "flowhouse.yaml"

// Config is the whole configuration. Each field is a section; its
// mapstructure tag is the section's key in the file and in environment
// variable names.
type Config struct {
	Log        LogConfig        `mapstructure:"log" yaml:"log"`
	Collector  collector.Config `mapstructure:"collector" yaml:"collector"`
	ClickHouse store.Config     `mapstructure:"clickhouse" yaml:"clickhouse"`
	Spool      spool.Config     `mapstructure:"spool" yaml:"spool"`
	HTTP       api.Config       `mapstructure:"http" yaml:"http"`
	Enrich     enrich.Config    `mapstructure:"enrich" yaml:"enrich"`
	Rules      rules.Config     `mapstructure:"rules" yaml:"rules"`
	Alerts     alerts.Config    `mapstructure:"alerts" yaml:"alerts"`
	Notify     notify.Config    `mapstructure:"notify" yaml:"notify"`
	Tokens     token.Config     `mapstructure:"tokens" yaml:"tokens"`
	API        APIConfig        `mapstructure:"api" yaml:"api"`
	Privacy    privacy.Config   `mapstructure:"privacy" yaml:"privacy"`
	Memory     membudget.Config `mapstructure:"memory" yaml:"memory"`
}

// sections declares every section: its field, defaults, validation and the
// key paths of its secrets (besides fields tagged `secret:"true"`). The order
// is the order of validation messages.
var sections = newLoader[Config](
	newSection(func(c *Config) *LogConfig { return &c.Log }, DefaultLogConfig, LogConfig.Validate),
	newSection(func(c *Config) *collector.Config { return &c.Collector }, collector.DefaultConfig, collector.Config.Validate),
	newSection(func(c *Config) *store.Config { return &c.ClickHouse }, store.DefaultConfig, store.Config.Validate),
	newSection(func(c *Config) *spool.Config { return &c.Spool }, spool.DefaultConfig, spool.Config.Validate),
	newSection(func(c *Config) *api.Config { return &c.HTTP }, api.DefaultConfig, api.Config.Validate),
	newSection(func(c *Config) *enrich.Config { return &c.Enrich }, enrich.DefaultConfig, enrich.Config.Validate),
	newSection(func(c *Config) *rules.Config { return &c.Rules }, rules.DefaultConfig, rules.Config.Validate),
	newSection(func(c *Config) *alerts.Config { return &c.Alerts }, alerts.DefaultConfig, alerts.Config.Validate),
	newSection(func(c *Config) *notify.Config { return &c.Notify }, notify.DefaultConfig, notify.Config.Validate),
	newSection(func(c *Config) *token.Config { return &c.Tokens }, token.DefaultConfig, token.Config.Validate),
	newSection(func(c *Config) *APIConfig { return &c.API }, DefaultAPIConfig, APIConfig.Validate),
	newSection(func(c *Config) *privacy.Config { return &c.Privacy }, privacy.DefaultConfig, privacy.Config.Validate),
	newSection(func(c *Config) *membudget.Config { return &c.Memory }, membudget.DefaultConfig, membudget.Config.Validate),
)

// Default returns the configuration used when nothing is set.
func Default() *Config {
	c := sections.defaults().Interface().(Config)
	return &c
}

// Load reads the configuration: defaults, then the YAML file at path (when
// path is empty, ./flowhouse.yaml if it exists, else no file), then the
// FLOWHOUSE_ environment variables, then opens every secret, then
// validates every section. The error is an *Error listing every problem.
//
// Opening a secret (package secret) reads its _file or opens its sealed
// enc: value with the key of enrich.secrets, so the Config returned holds
// every secret as plain text; a secret that does not open is a problem
// naming its key.
func Load(path string) (*Config, error) {
	return load(path, os.Environ())
}

// LoadUnopened is Load without opening secrets: no _file is read and
// enc: values stay sealed. It is for `flowhouse seal`, which must work
// while the file holds values that its key does not open (while a key is
// being changed).
func LoadUnopened(path string) (*Config, error) {
	return loadOpen(path, os.Environ(), false)
}

// load is Load with the environment given ("NAME=value" entries).
func load(path string, environ []string) (*Config, error) {
	return loadOpen(path, environ, true)
}

func loadOpen(path string, environ []string, open bool) (*Config, error) {
	v, err := sections.loadOpen(path, environ, open)
	if err != nil {
		return nil, err
	}
	c := v.Interface().(Config)
	if _, _, err := c.MemoryPlan(); err != nil {
		return nil, &Error{Problems: []Problem{{Key: "memory.limit", Message: err.Error()}}}
	}
	return &c, nil
}

// MemoryPlan divides memory.limit between the parts, and sizes the
// collector's queues from it unless collector.queue_length is set; then
// they must fit in their share.
func (c *Config) MemoryPlan() (membudget.Plan, int, error) {
	p, err := c.Memory.Plan()
	if err != nil {
		return p, 0, fmt.Errorf("memory.%w", err)
	}
	if c.Collector.QueueLength == 0 {
		return p, c.Collector.QueueLengthWithin(p.DatagramBytes), nil
	}
	if need := c.Collector.QueueBytes(); need > p.DatagramBytes {
		return p, 0, fmt.Errorf("memory.limit: %d bytes is too small for collector.queue_length %d: the workers' queues take %d bytes when full, and may take a quarter of the limit (%d); raise memory.limit, or lower collector.queue_length or set it to 0 to size the queues from memory.limit",
			c.Memory.Limit, c.Collector.QueueLength, need, p.DatagramBytes)
	}
	return p, c.Collector.QueueLength, nil
}

// Validate runs every section's validation (Load already did), for a
// configuration changed in code. The error is an *Error.
func (c *Config) Validate() error {
	return sections.validateValue(reflect.ValueOf(*c))
}

// Redacted returns a copy with every secret that is set replaced by "***";
// secrets that are empty stay empty, and so do secrets read from their
// _file (the file's path shows where they come from). c is not changed.
func (c *Config) Redacted() *Config {
	r := redact(reflect.ValueOf(*c), sections.tree).Interface().(Config)
	return &r
}

// YAML is the effective configuration, redacted, as YAML that Load reads
// back (durations as "30s", every key present), for `flowhouse check-config`.
func (c *Config) YAML() ([]byte, error) {
	return sections.marshalYAML(reflect.ValueOf(*c.Redacted()))
}

// EnvVars lists every environment variable Load reads, sorted, with the key
// each one sets: FLOWHOUSE_CLICKHOUSE_ADDR -> clickhouse.addr.
func EnvVars() map[string]string {
	out := make(map[string]string, len(sections.env))
	for name, n := range sections.env {
		out[name] = n.path
	}
	return out
}

// LoadEnviron is Load with the environment given ("NAME=value" entries)
// instead of the process's: for tests that check that deployment files
// (compose, Dockerfile, systemd) set only variables Load accepts.
func LoadEnviron(path string, environ []string) (*Config, error) {
	return load(path, environ)
}
