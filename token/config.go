package token

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is the tokens section.
type Config struct {
	// HMACKey keys the hash of every token at rest. Every process of a
	// deployment must have the same key. Empty: derived from the
	// configuration's secrets key (enrich.secrets), else generated once
	// into GeneratedKeyFile.
	HMACKey     string `mapstructure:"hmac_key" yaml:"hmac_key" secret:"true"`
	HMACKeyFile string `mapstructure:"hmac_key_file" yaml:"hmac_key_file"`
	// GeneratedKeyFile holds the key generated when neither HMACKey nor a
	// secrets key is configured: one host's processes share it.
	GeneratedKeyFile string `mapstructure:"generated_key_file" yaml:"generated_key_file"`
	// DefaultExpiry is a new token's lifetime when none is asked for.
	DefaultExpiry time.Duration `mapstructure:"default_expiry" yaml:"default_expiry"`
	// MaxExpiry bounds the lifetime that may be asked for.
	MaxExpiry time.Duration `mapstructure:"max_expiry" yaml:"max_expiry"`
	// CacheTTL is how long a lookup (found or not) is kept: the longest a
	// token revoked by another process keeps working here.
	CacheTTL time.Duration `mapstructure:"cache_ttl" yaml:"cache_ttl"`
	// CacheEntries bounds the cache.
	CacheEntries int `mapstructure:"cache_entries" yaml:"cache_entries"`
	// UsageInterval is how often last-used times are written: at most one
	// row per token per process per interval.
	UsageInterval time.Duration `mapstructure:"usage_interval" yaml:"usage_interval"`
	// ControlSocket is the unix socket through which `flowhouse token`
	// manages tokens while serve holds the embedded engine: "auto" puts
	// it beside the embedded data directory (./var/flowhouse.sock with
	// the defaults), "" turns it off.
	ControlSocket string `mapstructure:"control_socket" yaml:"control_socket"`
}

// AutoSocket is the ControlSocket value that puts the socket beside the
// embedded engine's data directory.
const AutoSocket = "auto"

// Day is the unit of the d suffix of durations (90d).
const Day = 24 * time.Hour

// DefaultConfig: tokens expire after 90 days unless asked otherwise, at
// most after 366 (a yearly rotation, as GitHub and GitLab bound theirs).
func DefaultConfig() Config {
	return Config{
		GeneratedKeyFile: "./var/tokens.key",
		DefaultExpiry:    90 * Day,
		MaxExpiry:        366 * Day,
		CacheTTL:         5 * time.Second,
		CacheEntries:     10000,
		UsageInterval:    time.Minute,
		ControlSocket:    AutoSocket,
	}
}

// minHMACKeyLen is the shortest hmac_key accepted, in bytes.
const minHMACKeyLen = 32

// maxSocketPath is the longest unix socket path Linux takes (sun_path
// less its terminating NUL).
const maxSocketPath = 107

// Validate names each wrong key.
func (c Config) Validate() error {
	var errs []error
	if c.HMACKey != "" && len(c.HMACKey) < minHMACKeyLen {
		// The length only: never the secret.
		errs = append(errs, fmt.Errorf("hmac_key: %d bytes, want at least %d (flowhouse seal -genkey makes one)", len(c.HMACKey), minHMACKeyLen))
	}
	if c.GeneratedKeyFile == "" {
		errs = append(errs, errors.New("generated_key_file: must be set (it is used only when neither hmac_key nor a secrets key is configured)"))
	}
	if c.DefaultExpiry <= 0 {
		errs = append(errs, fmt.Errorf("default_expiry: %s must be positive", c.DefaultExpiry))
	}
	if c.MaxExpiry <= 0 {
		errs = append(errs, fmt.Errorf("max_expiry: %s must be positive", c.MaxExpiry))
	} else if c.MaxExpiry > 100*366*Day {
		errs = append(errs, fmt.Errorf("max_expiry: %s is over 100 years", c.MaxExpiry))
	}
	if c.DefaultExpiry > 0 && c.MaxExpiry > 0 && c.DefaultExpiry > c.MaxExpiry {
		errs = append(errs, fmt.Errorf("default_expiry: %s is longer than max_expiry (%s)", c.DefaultExpiry, c.MaxExpiry))
	}
	if c.CacheTTL <= 0 {
		errs = append(errs, fmt.Errorf("cache_ttl: %s must be positive (it bounds how long a revoked token keeps working)", c.CacheTTL))
	}
	if c.CacheEntries < 1 {
		errs = append(errs, fmt.Errorf("cache_entries: %d must be at least 1", c.CacheEntries))
	}
	if c.UsageInterval <= 0 {
		errs = append(errs, fmt.Errorf("usage_interval: %s must be positive", c.UsageInterval))
	}
	if len(c.ControlSocket) > maxSocketPath {
		errs = append(errs, fmt.Errorf("control_socket: %d bytes, longer than a unix socket path may be (%d)", len(c.ControlSocket), maxSocketPath))
	}
	return errors.Join(errs...)
}

// SocketPath is where the control socket is for embeddedPath, the
// embedded engine's data directory: "" when it is off.
func (c Config) SocketPath(embeddedPath string) string {
	if c.ControlSocket != AutoSocket {
		return c.ControlSocket
	}
	return filepath.Join(filepath.Dir(filepath.Clean(embeddedPath)), "flowhouse.sock")
}

// ParseDuration reads a Go duration (720h, 30m) or a number of days with
// the d suffix (90d), as `flowhouse token create --expires` and the API
// take them.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || n <= 0 || n > 100*366 {
			return 0, fmt.Errorf("%q is not a number of days (90d)", s)
		}
		return time.Duration(n * float64(Day)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (90d, 720h)", s)
	}
	return d, nil
}

// FormatDuration writes d in days when it is whole days.
func FormatDuration(d time.Duration) string {
	if d > 0 && d%Day == 0 {
		return strconv.FormatInt(int64(d/Day), 10) + "d"
	}
	return d.String()
}
