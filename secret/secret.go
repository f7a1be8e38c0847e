// Package secret is flowhouse's one mechanism for secrets in the
// configuration: values sealed with AES-256-GCM ("enc:..." values, made by
// `flowhouse seal`), the key that opens them, and values read from files.
//
// A secret of the configuration is written in one of three ways:
//
//	password: hunter2                        # plain text
//	password: enc:3q2+7w...                  # sealed with the key (Seal)
//	password_file: /run/secrets/ch_password  # the file's content
//
// Adding a secret to a component's Config is two fields: the value, tagged
// `secret:"true"` (so check-config redacts it and no error shows it), and
// beside it a string field whose key is the value's key plus "_file":
//
//	Token     string `mapstructure:"token" yaml:"token" secret:"true"`
//	TokenFile string `mapstructure:"token_file" yaml:"token_file"`
//
// config.Load then opens the value (or reads the file) once, at start, and
// the component gets the plain text. Code that holds secrets outside the
// configuration file uses a Resolver directly.
package secret

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// SealedPrefix marks a configuration value sealed with Seal.
const SealedPrefix = "enc:"

// KeySize is the AES-256 key length in bytes.
const KeySize = 32

// DefaultKeyEnv is the variable the key is read from by default.
const DefaultKeyEnv = "FLOWHOUSE_SECRET_KEY"

// ConfigPath is where the configuration holds Config, so that messages
// name the keys a user sets. It stays under enrich, where sealing began,
// so existing configuration files keep working.
const ConfigPath = "enrich.secrets"

// sealAAD binds sealed values to their use: a ciphertext made for
// something else does not open as a flowhouse secret. Changing it would
// make every value sealed so far unreadable.
var sealAAD = []byte("flowhouse secret v1")

// Config locates the key of "enc:" values: the environment variable KeyEnv
// when it is set and not empty, else the file KeyFile. The key is 32
// bytes, given raw, as 64 hex digits or as base64.
type Config struct {
	KeyFile string `mapstructure:"key_file" yaml:"key_file"`
	KeyEnv  string `mapstructure:"key_env" yaml:"key_env"`
}

// DefaultConfig reads the key from FLOWHOUSE_SECRET_KEY.
func DefaultConfig() Config {
	return Config{KeyEnv: DefaultKeyEnv}
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate names the wrong key. It reads nothing: a key that does not
// load is reported by the Resolver, where a sealed value needs it.
func (c Config) Validate() error {
	if c.KeyEnv != "" && !envName.MatchString(c.KeyEnv) {
		return fmt.Errorf("key_env: %q is not an environment variable name", c.KeyEnv)
	}
	return nil
}

// Seal encrypts plaintext with AES-256-GCM under key and returns
// "enc:" + base64(nonce || ciphertext || tag).
func Seal(key []byte, plaintext string) (string, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	out := aead.Seal(nonce, nonce, []byte(plaintext), sealAAD)
	return SealedPrefix + base64.StdEncoding.EncodeToString(out), nil
}

// IsSealed reports whether value is an "enc:" value.
func IsSealed(value string) bool { return strings.HasPrefix(value, SealedPrefix) }

// ErrNoKey is returned for a sealed value when no key is configured.
var ErrNoKey = errors.New("value is sealed (enc:) but no secret key is configured: set the variable named by " + ConfigPath + ".key_env, or " + ConfigPath + ".key_file")

// Unseal returns the plaintext of an "enc:" value, and any other value
// unchanged. key may be nil when no value is sealed. Errors never contain
// the value.
func Unseal(key []byte, value string) (string, error) {
	if !IsSealed(value) {
		return value, nil
	}
	if key == nil {
		return "", ErrNoKey
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(value, SealedPrefix))
	if err != nil {
		return "", errors.New("sealed value is not valid base64")
	}
	aead, err := newAEAD(key)
	if err != nil {
		return "", err
	}
	if len(raw) < aead.NonceSize()+aead.Overhead() {
		return "", errors.New("sealed value is too short")
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], sealAAD)
	if err != nil {
		return "", errors.New("sealed value does not open with the configured key (wrong key or corrupted value)")
	}
	return string(plain), nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secret key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// ParseKey reads a key given as 32 raw bytes, 64 hex digits or base64 of
// 32 bytes (surrounding white space ignored).
func ParseKey(b []byte) ([]byte, error) {
	if len(b) == KeySize {
		return append([]byte(nil), b...), nil
	}
	s := string(bytes.TrimSpace(b))
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("secret key must be %d bytes: raw, 64 hex digits or base64", KeySize)
}

// LoadKey reads the key from the variable cfg.KeyEnv when getenv finds it
// set and not empty, else from the file cfg.KeyFile. It returns nil, nil
// when neither gives a key: then only values that are not sealed can be
// used. getenv nil is os.Getenv. Errors are *KeyError naming the
// variable or the file, never the key itself.
func LoadKey(cfg Config, getenv func(string) string) ([]byte, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if cfg.KeyEnv != "" {
		if v := getenv(cfg.KeyEnv); v != "" {
			k, err := ParseKey([]byte(v))
			if err != nil {
				return nil, &KeyError{Key: ConfigPath + ".key_env", Err: fmt.Errorf("variable %s: %w", cfg.KeyEnv, err)}
			}
			return k, nil
		}
	}
	if cfg.KeyFile != "" {
		b, err := readLimited(cfg.KeyFile)
		if err != nil {
			return nil, &KeyError{Key: ConfigPath + ".key_file", Err: err}
		}
		k, err := ParseKey(b)
		if err != nil {
			return nil, &KeyError{Key: ConfigPath + ".key_file", Err: fmt.Errorf("%s: %w", cfg.KeyFile, err)}
		}
		return k, nil
	}
	return nil, nil
}

// GenerateKey returns a new random key, base64, for a key file or the
// key variable.
func GenerateKey() (string, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// SealWithConfig seals plaintext with the key cfg locates: what
// `flowhouse seal` does.
func SealWithConfig(cfg Config, plaintext string) (string, error) {
	key, err := LoadKey(cfg, nil)
	if err != nil {
		return "", err
	}
	if key == nil {
		return "", errors.New("no secret key: set the environment variable named by " + ConfigPath + ".key_env, or " + ConfigPath + ".key_file")
	}
	return Seal(key, plaintext)
}
