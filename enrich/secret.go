package enrich

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
	"strings"
)

// SealedPrefix marks a configuration value sealed with Seal.
const SealedPrefix = "enc:"

// KeySize is the AES-256 key length in bytes.
const KeySize = 32

// sealAAD binds sealed values to their use: a ciphertext made for
// something else does not open as a flowhouse secret.
var sealAAD = []byte("flowhouse secret v1")

// Seal encrypts plaintext with AES-256-GCM under key and returns
// "enc:" + base64(nonce || ciphertext || tag), for `flowhouse seal`.
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

// Unseal returns the plaintext of an "enc:" value, and any other value
// unchanged. key may be nil when no value is sealed. Errors never contain
// the value.
func Unseal(key []byte, value string) (string, error) {
	if !IsSealed(value) {
		return value, nil
	}
	if key == nil {
		return "", errors.New("value is sealed (enc:) but no secret key is configured (secrets.key_env or secrets.key_file)")
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

// LoadKey reads the key from the environment variable cfg.KeyEnv when it
// is set and not empty, else from cfg.KeyFile. It returns nil, nil when
// neither gives a key (then only plain values can be used).
func LoadKey(cfg SecretsConfig) ([]byte, error) {
	if cfg.KeyEnv != "" {
		if v := os.Getenv(cfg.KeyEnv); v != "" {
			k, err := ParseKey([]byte(v))
			if err != nil {
				return nil, fmt.Errorf("secrets.key_env %s: %w", cfg.KeyEnv, err)
			}
			return k, nil
		}
	}
	if cfg.KeyFile != "" {
		b, err := os.ReadFile(cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("secrets.key_file: %w", err)
		}
		k, err := ParseKey(b)
		if err != nil {
			return nil, fmt.Errorf("secrets.key_file %s: %w", cfg.KeyFile, err)
		}
		return k, nil
	}
	return nil, nil
}

// GenerateKey returns a new random key, base64, for a key file.
func GenerateKey() (string, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// SealWithConfig seals plaintext with the key cfg locates: what a
// `flowhouse seal` command calls.
func SealWithConfig(cfg SecretsConfig, plaintext string) (string, error) {
	key, err := LoadKey(cfg)
	if err != nil {
		return "", err
	}
	if key == nil {
		return "", errors.New("no secret key: set the environment variable named by secrets.key_env or secrets.key_file")
	}
	return Seal(key, plaintext)
}
