package token

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/flowhouse/flowhouse/secret"
)

// secretsKeyLabel derives the tokens' key from the configuration's
// secrets key: HMAC(secrets key, label), so that the key that opens enc:
// values never hashes tokens itself. Changing it would invalidate every
// token hashed so far.
const secretsKeyLabel = "flowhouse api token hmac v1"

// keyIDLabel makes a key's public fingerprint (key_id): rows say which
// key hashed them, so that a process with another key is told rather
// than silently making tokens no other process accepts.
const keyIDLabel = "flowhouse api token key id"

// hmacKey is the key of the token hashes and where it came from.
type hmacKey struct {
	key    []byte
	source string // for the log: never the key
}

// loadKey finds the key: hmac_key, else derived from the secrets key,
// else the generated key file, made when missing if generate is set
// (else the key is zero, nil error).
func loadKey(cfg Config, secrets secret.Config, getenv func(string) string, generate bool) (hmacKey, error) {
	if cfg.HMACKey != "" {
		return hmacKey{key: []byte(cfg.HMACKey), source: "tokens.hmac_key"}, nil
	}
	sk, err := secret.LoadKey(secrets, getenv)
	if err != nil {
		return hmacKey{}, fmt.Errorf("token key: %w", err)
	}
	if sk != nil {
		m := hmac.New(sha256.New, sk)
		m.Write([]byte(secretsKeyLabel))
		return hmacKey{key: m.Sum(nil), source: "derived from the secrets key (" + secret.ConfigPath + ")"}, nil
	}
	if !generate {
		k, err := readKeyFile(cfg.GeneratedKeyFile)
		if errors.Is(err, fs.ErrNotExist) {
			return hmacKey{}, nil
		}
		if err != nil {
			return hmacKey{}, fmt.Errorf("token key: tokens.generated_key_file: %w", err)
		}
		return hmacKey{key: k, source: "tokens.generated_key_file " + cfg.GeneratedKeyFile}, nil
	}
	k, made, err := loadOrGenerate(cfg.GeneratedKeyFile)
	if err != nil {
		return hmacKey{}, fmt.Errorf("token key: tokens.generated_key_file: %w", err)
	}
	src := "tokens.generated_key_file " + cfg.GeneratedKeyFile
	if made {
		src += " (generated now)"
	}
	return hmacKey{key: k, source: src}, nil
}

// loadOrGenerate reads the key in path, or makes one there: 32 random
// bytes, base64, mode 0600. The file appears whole or not at all (a
// hard link of a complete temporary file), and when two processes make
// one at once, the second reads the first's: no process ever keeps a key
// that is not the file's.
func loadOrGenerate(path string) (key []byte, made bool, err error) {
	if k, err := readKeyFile(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, false, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, false, err
	}
	raw := make([]byte, secret.KeySize)
	if _, err := rand.Read(raw); err != nil {
		return nil, false, err
	}
	tmp, err := os.CreateTemp(dir, ".tokens-key-*")
	if err != nil {
		return nil, false, err
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600.
	_, err = tmp.WriteString(base64.StdEncoding.EncodeToString(raw) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			k, err := readKeyFile(path)
			return k, false, err
		}
		return nil, false, err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the new name survives a crash
		d.Close()
	}
	return raw, true, nil
}

func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := secret.ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// hash is the token's hash at rest: HMAC-SHA256 under the key, hex.
func (k hmacKey) hash(tok string) string {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte(tok))
	return hex.EncodeToString(m.Sum(nil))
}

// id is the key's public fingerprint: 16 hex digits of an HMAC under it,
// which tells keys apart and reveals nothing of them.
func (k hmacKey) id() string {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte(keyIDLabel))
	return hex.EncodeToString(m.Sum(nil))[:16]
}
