package config

import (
	"strings"
	"testing"
)

// An empty variable sets its key empty where the type has an empty value,
// and is an error naming the variable where it has none.
func TestEmptyEnvironmentValues(t *testing.T) {
	tests := []struct {
		name string
		env  string
		want func(*Config) bool // nil: an error is wanted
		err  string
	}{
		{"string", "FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN", func(c *Config) bool { return c.ClickHouse.Embedded.HTTPListen == "" }, ""},
		{"secret string", "FLOWHOUSE_CLICKHOUSE_PASSWORD", func(c *Config) bool { return c.ClickHouse.Password == "" }, ""},
		{"path", "FLOWHOUSE_ENRICH_OUI_DIR", func(c *Config) bool { return c.Enrich.OUIDir == "" }, ""},
		{"list", "FLOWHOUSE_COLLECTOR_LISTENERS", nil, "collector.listeners: at least one address is required"},
		{"integer", "FLOWHOUSE_COLLECTOR_WORKERS", nil, "environment FLOWHOUSE_COLLECTOR_WORKERS: collector.workers: the variable is empty, which is not an integer; set a value, or unset the variable to keep the default"},
		{"unsigned", "FLOWHOUSE_ENRICH_DISCOVERED_SNMP_PORT", nil, "environment FLOWHOUSE_ENRICH_DISCOVERED_SNMP_PORT: enrich.discovered_snmp.port: the variable is empty, which is not an integer"},
		{"number", "FLOWHOUSE_ENRICH_POLLING_JITTER", nil, "environment FLOWHOUSE_ENRICH_POLLING_JITTER: enrich.polling.jitter: the variable is empty, which is not a number"},
		{"boolean", "FLOWHOUSE_SPOOL_ENABLED", nil, "environment FLOWHOUSE_SPOOL_ENABLED: spool.enabled: the variable is empty, which is not a boolean"},
		{"duration", "FLOWHOUSE_CLICKHOUSE_BATCH_INTERVAL", nil, `environment FLOWHOUSE_CLICKHOUSE_BATCH_INTERVAL: clickhouse.batch_interval: the variable is empty, which is not a duration (like "30s")`},
	}
	t.Chdir(t.TempDir())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load("", []string{tt.env + "="})
			if tt.want == nil {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v\nwant %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(c) {
				t.Errorf("%s= did not set the key empty", tt.env)
			}
		})
	}
}
