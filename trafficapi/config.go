package trafficapi

import (
	"errors"
	"fmt"
	"time"
)

// Config bounds what one traffic request may ask of the database.
type Config struct {
	// QueryTimeout bounds each query of a request (a context deadline:
	// the server cancels the query, the embedded engine stops it at its
	// next block and at its own embedded.query_timeout). Keep it below the
	// API's write_timeout, or the answer is cut before the error is sent.
	QueryTimeout time.Duration `mapstructure:"query_timeout" yaml:"query_timeout"`
	// MaxRange is the longest since..until read from each table. Raw
	// flows are one row per flow, so their range is short; the rollups
	// hold a row per minute or hour and dimension.
	MaxRange MaxRange `mapstructure:"max_range" yaml:"max_range"`
	// MaxPoints bounds the buckets of a series: (until - since) / step.
	MaxPoints int `mapstructure:"max_points" yaml:"max_points"`
	// MaxFuture is how far past now until may be (clocks differ a little;
	// a range far in the future is a mistake).
	MaxFuture time.Duration `mapstructure:"max_future" yaml:"max_future"`
}

// MaxRange is the longest range read from each table.
type MaxRange struct {
	Flows   time.Duration `mapstructure:"flows" yaml:"flows"`
	Flows1m time.Duration `mapstructure:"flows_1m" yaml:"flows_1m"`
	Flows1h time.Duration `mapstructure:"flows_1h" yaml:"flows_1h"`
}

const day = 24 * time.Hour

// DefaultConfig reads a day of raw flows, 31 days of minute rollups and
// 366 days of hourly rollups at most (within store's default retention
// of 30, 90 and 730 days), answers series of up to 2000 points, and
// gives each query 20 s (the API's write_timeout is 30 s).
func DefaultConfig() Config {
	return Config{
		QueryTimeout: 20 * time.Second,
		MaxRange:     MaxRange{Flows: day, Flows1m: 31 * day, Flows1h: 366 * day},
		MaxPoints:    2000,
		MaxFuture:    5 * time.Minute,
	}
}

// Validate names each wrong key and says what is wrong with it.
func (c Config) Validate() error {
	var errs []error
	if c.QueryTimeout < time.Second {
		errs = append(errs, fmt.Errorf("query_timeout: %s is shorter than 1s", c.QueryTimeout))
	}
	for _, r := range []struct {
		key  string
		d    time.Duration
		unit time.Duration
	}{
		{"max_range.flows", c.MaxRange.Flows, time.Minute},
		{"max_range.flows_1m", c.MaxRange.Flows1m, time.Minute},
		{"max_range.flows_1h", c.MaxRange.Flows1h, time.Hour},
	} {
		if r.d < r.unit {
			errs = append(errs, fmt.Errorf("%s: %s is shorter than %s", r.key, r.d, r.unit))
		}
	}
	if c.MaxPoints < 10 || c.MaxPoints > 100_000 {
		errs = append(errs, fmt.Errorf("max_points: %d is outside 10..100000", c.MaxPoints))
	}
	if c.MaxFuture < 0 || c.MaxFuture > day {
		errs = append(errs, fmt.Errorf("max_future: %s is outside 0..24h", c.MaxFuture))
	}
	return errors.Join(errs...)
}
