package store

import (
	"strings"
	"testing"
)

func TestValidateQueryEndpoint(t *testing.T) {
	for _, tc := range []struct {
		listen, token string
		want          string // "" for valid
	}{
		{"127.0.0.1:8123", "", ""},
		{"localhost:8123", "", ""},
		{"[::1]:8123", "", ""},
		{"", "", ""}, // off
		{"0.0.0.0:8123", "", "http_token is required"},
		{":8123", "", "http_token is required"},
		{"192.0.2.1:8123", "", "http_token is required"},
		{"0.0.0.0:8123", "t", ""},
		{"8123", "", "not host:port"},
	} {
		cfg := DefaultConfig()
		cfg.Embedded.HTTPListen, cfg.Embedded.HTTPToken = tc.listen, tc.token
		err := cfg.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("http_listen %q token %q: %v, want %q", tc.listen, tc.token, err, tc.want)
		}
	}
	// A ClickHouse server: the endpoint's keys do not matter.
	cfg := DefaultConfig()
	cfg.Addr, cfg.Embedded.HTTPListen = "127.0.0.1:9000", "0.0.0.0:8123"
	if err := cfg.Validate(); err != nil {
		t.Errorf("server engine: %v", err)
	}
}
