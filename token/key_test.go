package token

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/secret"
)

// The key comes from hmac_key, else from the secrets key, else from the
// generated file, and says which.
func TestLoadKeyPrecedence(t *testing.T) {
	sk, _ := secret.ParseKey([]byte(strings.Repeat("ab", 32)))
	env := func(name string) string {
		if name == "TEST_SECRETS_KEY" {
			return strings.Repeat("ab", 32)
		}
		return ""
	}
	secrets := secret.Config{KeyEnv: "TEST_SECRETS_KEY"}
	derived := hmac.New(sha256.New, sk)
	derived.Write([]byte("flowhouse api token hmac v1"))

	cfg := DefaultConfig()
	cfg.GeneratedKeyFile = filepath.Join(t.TempDir(), "sub", "tokens.key")
	cfg.HMACKey = strings.Repeat("k", 40)
	for _, tt := range []struct {
		name    string
		hmacKey string
		secrets secret.Config
		want    []byte
		source  string
	}{
		{"hmac_key wins", cfg.HMACKey, secrets, []byte(cfg.HMACKey), "tokens.hmac_key"},
		{"derived from the secrets key", "", secrets, derived.Sum(nil), "derived from the secrets key"},
		{"generated", "", secret.Config{KeyEnv: "UNSET_VARIABLE"}, nil, "tokens.generated_key_file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			c.HMACKey = tt.hmacKey
			k, err := loadKey(c, tt.secrets, env, true)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(k.source, tt.source) {
				t.Errorf("source %q, want %q", k.source, tt.source)
			}
			if tt.want != nil && !bytes.Equal(k.key, tt.want) {
				t.Errorf("key %x, want %x", k.key, tt.want)
			}
			if tt.want == nil && len(k.key) != secret.KeySize {
				t.Errorf("generated key of %d bytes", len(k.key))
			}
			if bytes.Equal(k.key, sk) {
				t.Error("the secrets key itself hashes tokens")
			}
		})
	}
	// Without generate, a missing file is no key and no error.
	c0 := cfg
	c0.HMACKey, c0.GeneratedKeyFile = "", filepath.Join(t.TempDir(), "none.key")
	if k, err := loadKey(c0, secret.Config{}, env, false); err != nil || k.key != nil {
		t.Errorf("no generation: %x %v, want no key, no error", k.key, err)
	}
	if _, err := os.Stat(c0.GeneratedKeyFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the key file was made without generate: %v", err)
	}
	// A secrets key that does not load is an error, not a fallback to
	// another key (which would make tokens no other process accepts).
	bad := func(string) string { return "not a key" }
	c := cfg
	c.HMACKey = ""
	if _, err := loadKey(c, secrets, bad, true); err == nil || !strings.Contains(err.Error(), "enrich.secrets.key_env") {
		t.Errorf("bad secrets key: %v, want an error naming enrich.secrets.key_env", err)
	}
}

// The generated key is made once, 0600, and read back afterwards; made by
// many at once, every one gets the same key.
func TestGeneratedKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "var", "tokens.key")
	const n = 8
	keys := make([][]byte, n)
	made := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, m, err := loadOrGenerate(path)
			if err != nil {
				t.Error(err)
			}
			keys[i], made[i] = k, m
		}()
	}
	wg.Wait()
	makers := 0
	for i := range n {
		if !bytes.Equal(keys[i], keys[0]) || len(keys[i]) != secret.KeySize {
			t.Fatalf("key %d is %x, key 0 is %x", i, keys[i], keys[0])
		}
		if made[i] {
			makers++
		}
	}
	if makers != 1 {
		t.Errorf("%d callers made the key, want 1", makers)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("the directory holds %d files, want the key only (no temporary file left)", len(entries))
	}
	again, made2, err := loadOrGenerate(path)
	if err != nil || made2 || !bytes.Equal(again, keys[0]) {
		t.Errorf("read again: %x made %v err %v", again, made2, err)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadOrGenerate(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("a corrupt key file: %v, want an error naming it", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"defaults", func(*Config) {}, ""},
		{"short hmac_key", func(c *Config) { c.HMACKey = "short-secret" }, "hmac_key: 12 bytes, want at least 32"},
		{"no generated_key_file", func(c *Config) { c.GeneratedKeyFile = "" }, "generated_key_file: must be set"},
		{"default over max", func(c *Config) { c.DefaultExpiry = 400 * Day }, "default_expiry: 9600h0m0s is longer than max_expiry"},
		{"zero max", func(c *Config) { c.MaxExpiry = 0 }, "max_expiry: 0s must be positive"},
		{"zero cache_ttl", func(c *Config) { c.CacheTTL = 0 }, "cache_ttl: 0s must be positive"},
		{"zero cache_entries", func(c *Config) { c.CacheEntries = 0 }, "cache_entries: 0 must be at least 1"},
		{"zero usage_interval", func(c *Config) { c.UsageInterval = 0 }, "usage_interval: 0s must be positive"},
		{"long socket", func(c *Config) { c.ControlSocket = "/" + strings.Repeat("s", 120) }, "control_socket: 121 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.change(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %v, want %q", err, tt.want)
			}
			if c.HMACKey != "" && strings.Contains(err.Error(), c.HMACKey) {
				t.Errorf("the error shows the key: %v", err)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90d", 90 * Day, true}, {"1.5d", 36 * time.Hour, true}, {"720h", 720 * time.Hour, true}, {"30m", 30 * time.Minute, true},
		{"d", 0, false}, {"-1d", 0, false}, {"0d", 0, false}, {"90", 0, false}, {"ninety days", 0, false}, {"99999999d", 0, false},
	} {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDuration(%q) = %s, %v; want %s ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	if got := FormatDuration(90 * Day); got != "90d" {
		t.Errorf("FormatDuration(90d) = %q", got)
	}
	if got := FormatDuration(90 * time.Minute); got != "1h30m0s" {
		t.Errorf("FormatDuration(90m) = %q", got)
	}
}

func TestSocketPath(t *testing.T) {
	c := DefaultConfig()
	if got := c.SocketPath("./var/data"); got != "var/flowhouse.sock" {
		t.Errorf("auto beside ./var/data: %q", got)
	}
	if got := c.SocketPath("/srv/fh/data/"); got != "/srv/fh/flowhouse.sock" {
		t.Errorf("auto beside /srv/fh/data/: %q", got)
	}
	c.ControlSocket = ""
	if got := c.SocketPath("./var/data"); got != "" {
		t.Errorf("off: %q", got)
	}
	c.ControlSocket = "/run/fh.sock"
	if got := c.SocketPath("./var/data"); got != "/run/fh.sock" {
		t.Errorf("explicit: %q", got)
	}
}

// The cache stays within its bound under a flood of distinct entries,
// and forgets entries at ttl.
func TestCacheBound(t *testing.T) {
	c := newCache(time.Second, 100)
	now := time.Unix(1000, 0)
	for i := range 1000 {
		c.put(string(rune(i)), nil, now)
		if c.len() > 100 {
			t.Fatalf("after %d puts the cache holds %d, over 100", i+1, c.len())
		}
	}
	c.put("x", &row{id: "tok_x"}, now)
	if _, ok := c.get("x", now.Add(999*time.Millisecond)); !ok {
		t.Error("an entry younger than ttl is gone")
	}
	if _, ok := c.get("x", now.Add(time.Second)); ok {
		t.Error("an entry of age ttl is still served")
	}
	c.put("y", &row{id: "tok_y"}, now)
	c.dropID("tok_y")
	if _, ok := c.get("y", now); ok {
		t.Error("dropID left the entry")
	}
}
