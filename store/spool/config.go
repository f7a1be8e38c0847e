package spool

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config of the disk spool: where batches the database could not take
// wait, how much disk they may use, and how often the database is probed.
type Config struct {
	// Enabled puts the spool in front of the database. Without it a batch
	// that cannot be inserted waits in memory (the batcher's retries) and
	// is dropped when those run out.
	Enabled bool `mapstructure:"enabled" yaml:"enabled"`
	// Dir holds the segments; quarantined ones go to Dir/quarantine. One
	// flowhouse process per directory (it is locked).
	Dir string `mapstructure:"dir" yaml:"dir"`
	// MaxBytes bounds the segments waiting for replay; past it new batches
	// are dropped and counted (reason spool_full).
	MaxBytes int64 `mapstructure:"max_bytes" yaml:"max_bytes"`
	// MaxQuarantineBytes bounds the quarantine; past it a batch to
	// quarantine is dropped and counted (reason quarantine_full).
	MaxQuarantineBytes int64 `mapstructure:"max_quarantine_bytes" yaml:"max_quarantine_bytes"`
	// Fsync makes each segment durable before the batch counts as
	// accepted (file and directory). Off trades a machine crash's last
	// seconds for less I/O.
	Fsync bool `mapstructure:"fsync" yaml:"fsync"`
	// Probe is the backoff between attempts to reach the database while it
	// is down: doubled from Initial up to Max, with jitter.
	Probe ProbeConfig `mapstructure:"probe" yaml:"probe"`
	// ReplayTimeout bounds one replayed insert (and one probe).
	ReplayTimeout time.Duration `mapstructure:"replay_timeout" yaml:"replay_timeout"`
	// ReplayShare bounds the share of replayed inserts among all inserts
	// while the batcher's live inserts run (0 < share <= 1; 1 is no
	// bound). Live data comes first: a segment is replayed freely only
	// while no live insert is in the database.
	ReplayShare float64 `mapstructure:"replay_share" yaml:"replay_share"`
}

// ProbeConfig is the backoff of the replay loop while the database is down.
type ProbeConfig struct {
	Initial time.Duration `mapstructure:"initial" yaml:"initial"`
	Max     time.Duration `mapstructure:"max" yaml:"max"`
}

// DefaultConfig spools up to 1 GiB in ./var/spool and probes a down
// database from every 500 ms up to every 10 s.
func DefaultConfig() Config {
	return Config{
		Enabled:            true,
		Dir:                "./var/spool",
		MaxBytes:           1 << 30,
		MaxQuarantineBytes: 256 << 20,
		Fsync:              true,
		Probe:              ProbeConfig{Initial: 500 * time.Millisecond, Max: 10 * time.Second},
		ReplayTimeout:      30 * time.Second,
		// One replayed insert per three live ones: a database that is
		// busy with live data still drains a backlog at a third of its
		// live rate, and live data keeps three quarters of it.
		ReplayShare: 0.25,
	}
}

// Validate names every wrong key and says what is wrong with it.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("dir: required when the spool is enabled (a directory flowhouse may create and write)"))
	}
	if c.MaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("max_bytes: %d is less than 1 MiB (1048576)", c.MaxBytes))
	}
	if c.MaxQuarantineBytes < 0 {
		errs = append(errs, fmt.Errorf("max_quarantine_bytes: %d is negative", c.MaxQuarantineBytes))
	}
	if c.Probe.Initial < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("probe.initial: %s is shorter than 10ms", c.Probe.Initial))
	}
	if c.Probe.Max < c.Probe.Initial {
		errs = append(errs, fmt.Errorf("probe.max: %s is shorter than probe.initial %s", c.Probe.Max, c.Probe.Initial))
	}
	if !(c.ReplayShare > 0 && c.ReplayShare <= 1) {
		errs = append(errs, fmt.Errorf("replay_share: %v is outside (0, 1] (the share of replayed inserts while live ones run; 1 is no bound)", c.ReplayShare))
	}
	if c.ReplayTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("replay_timeout: %s is shorter than 100ms", c.ReplayTimeout))
	}
	return errors.Join(errs...)
}

// LogValue shows the settings an operator looks for.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Bool("enabled", c.Enabled),
		slog.String("dir", c.Dir),
		slog.Int64("max_bytes", c.MaxBytes),
	)
}
