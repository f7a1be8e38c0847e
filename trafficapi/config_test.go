package trafficapi

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		name   string
		change func(*Config)
		key    string
	}{
		{"timeout", func(c *Config) { c.QueryTimeout = 500 * time.Millisecond }, "query_timeout: 500ms is shorter than 1s"},
		{"raw range", func(c *Config) { c.MaxRange.Flows = 0 }, "max_range.flows: 0s is shorter than 1m0s"},
		{"minute range", func(c *Config) { c.MaxRange.Flows1m = time.Second }, "max_range.flows_1m: "},
		{"hour range", func(c *Config) { c.MaxRange.Flows1h = time.Minute }, "max_range.flows_1h: 1m0s is shorter than 1h0m0s"},
		{"points", func(c *Config) { c.MaxPoints = 5 }, "max_points: 5 is outside 10..100000"},
		{"future", func(c *Config) { c.MaxFuture = -time.Second }, "max_future: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.change(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.key) {
				t.Errorf("%v, want an error naming %q", err, tt.key)
			}
		})
	}
}
