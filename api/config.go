package api

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/flowhouse/flowhouse/internal/loopback"
)

// Config of the HTTP server.
type Config struct {
	// Listen is the TCP address, host:port. Port 0 picks a free port.
	Listen string `mapstructure:"listen" yaml:"listen"`
	// ReadTimeout bounds reading a request, headers and body.
	ReadTimeout time.Duration `mapstructure:"read_timeout" yaml:"read_timeout"`
	// WriteTimeout bounds handling a request and writing its response.
	WriteTimeout time.Duration `mapstructure:"write_timeout" yaml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle for longer.
	IdleTimeout time.Duration `mapstructure:"idle_timeout" yaml:"idle_timeout"`
	// ReadinessTimeout bounds each /readyz check.
	ReadinessTimeout time.Duration `mapstructure:"readiness_timeout" yaml:"readiness_timeout"`
	// TLSCertFile and TLSKeyFile, both set, serve HTTPS; the files are
	// reloaded when they change.
	TLSCertFile string `mapstructure:"tls_cert_file" yaml:"tls_cert_file"`
	TLSKeyFile  string `mapstructure:"tls_key_file" yaml:"tls_key_file"`
	// RateLimit is the requests per second each API token may make, with
	// bursts of RateBurst; 0 turns the limit off.
	RateLimit float64 `mapstructure:"rate_limit" yaml:"rate_limit"`
	RateBurst int     `mapstructure:"rate_burst" yaml:"rate_burst"`
	// MetricsToken, when set, is required from /metrics scrapers as
	// Authorization: Bearer (Prometheus' authorization.credentials): the
	// metrics name every tenant and exporter.
	MetricsToken     string `mapstructure:"metrics_token" yaml:"metrics_token" secret:"true"`
	MetricsTokenFile string `mapstructure:"metrics_token_file" yaml:"metrics_token_file"`
	// AuthFailureRate is the refused tokens per second a client address
	// may have, with bursts of AuthFailureBurst; beyond, it is answered
	// 429 before any lookup. 0 turns the limit off.
	AuthFailureRate  float64 `mapstructure:"auth_failure_rate" yaml:"auth_failure_rate"`
	AuthFailureBurst int     `mapstructure:"auth_failure_burst" yaml:"auth_failure_burst"`
	// PprofListen, when set, serves Go's net/http/pprof profiles on a
	// listener of their own, separate from the API so that no token,
	// timeout or middleware applies to a 30 s CPU profile. Profiles show
	// memory contents and cost CPU, so it is off by default and only a
	// loopback address is accepted.
	PprofListen string `mapstructure:"pprof_listen" yaml:"pprof_listen"`
}

// DefaultConfig listens on loopback only: exposing the API is a choice.
func DefaultConfig() Config {
	return Config{
		Listen:           "127.0.0.1:8080",
		ReadTimeout:      10 * time.Second,
		WriteTimeout:     30 * time.Second,
		IdleTimeout:      2 * time.Minute,
		ReadinessTimeout: 2 * time.Second,
		RateLimit:        20,
		RateBurst:        40,
		AuthFailureRate:  2,
		AuthFailureBurst: 30,
	}
}

// Validate names each wrong key and says what is wrong with it.
func (c Config) Validate() error {
	var errs []error
	// An empty host means every interface; host names are resolved at Start.
	if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %q is not host:port", c.Listen))
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		errs = append(errs, fmt.Errorf("listen: port %q is not a number in 0..65535", port))
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s: %s must be positive", key, d))
		}
	}
	positive("read_timeout", c.ReadTimeout)
	positive("write_timeout", c.WriteTimeout)
	positive("idle_timeout", c.IdleTimeout)
	positive("readiness_timeout", c.ReadinessTimeout)
	if c.ReadinessTimeout > 0 && c.WriteTimeout > 0 && c.ReadinessTimeout >= c.WriteTimeout {
		errs = append(errs, fmt.Errorf("readiness_timeout: %s must be shorter than write_timeout (%s)", c.ReadinessTimeout, c.WriteTimeout))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls_cert_file and tls_key_file: set both for HTTPS, or neither"))
	}
	if c.RateLimit < 0 {
		errs = append(errs, fmt.Errorf("rate_limit: %g must not be negative (0 turns the limit off)", c.RateLimit))
	}
	if c.RateLimit > 0 && c.RateBurst < 1 {
		errs = append(errs, fmt.Errorf("rate_burst: %d must be at least 1 when rate_limit is set", c.RateBurst))
	}
	if c.AuthFailureRate < 0 {
		errs = append(errs, fmt.Errorf("auth_failure_rate: %g must not be negative (0 turns the limit off)", c.AuthFailureRate))
	}
	if c.PprofListen != "" && !loopback.Addr(c.PprofListen) {
		errs = append(errs, fmt.Errorf("pprof_listen: %q is not a loopback host:port (profiles show memory contents: only 127.0.0.1, ::1 or localhost)", c.PprofListen))
	}
	if c.AuthFailureRate > 0 && c.AuthFailureBurst < 1 {
		errs = append(errs, fmt.Errorf("auth_failure_burst: %d must be at least 1 when auth_failure_rate is set", c.AuthFailureBurst))
	}
	return errors.Join(errs...)
}
