package secret

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// MaxFileBytes bounds a secret file: secrets are short, and a path that
// names something else (a log, a device) should fail rather than fill
// memory.
const MaxFileBytes = 64 << 10

// Ref is one secret of a configuration: its value and, when it can come
// from a file, that file, each with its key so that errors name it.
type Ref struct {
	Key     string // "clickhouse.password"
	Value   string
	FileKey string // "clickhouse.password_file"; "" when the secret has no file key
	File    string // a path; "" when not set
}

// KeyError is a secret that cannot be resolved. Key is the key to fix
// (the _file key when the file is the problem); the message never holds
// the secret.
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }

// Resolver turns the secrets of a configuration into plain text with one
// key, loaded once. The zero value has no key: it resolves plain values
// and files, and refuses sealed values.
type Resolver struct {
	key    []byte
	keyErr error
}

// NewResolver loads the key cfg locates (see LoadKey; getenv nil is
// os.Getenv). A key that does not load is kept as KeyErr, so that the
// caller reports it once and the resolver still reads plain values.
func NewResolver(cfg Config, getenv func(string) string) *Resolver {
	key, err := LoadKey(cfg, getenv)
	return &Resolver{key: key, keyErr: err}
}

// NewResolverWithKey resolves with key (nil: no key), for code that holds
// the key itself.
func NewResolverWithKey(key []byte) *Resolver { return &Resolver{key: key} }

// KeyErr says why the configured key did not load; nil when it loaded or
// when none is configured.
func (r *Resolver) KeyErr() error { return r.keyErr }

// Resolve returns the plain text of ref: the content of ref.File when it
// is set (without one trailing newline, as editors and `echo` leave one),
// else ref.Value, opened when it is sealed. Setting both is an error, as
// is an empty or unreadable file; a file's content is used as it is, so a
// secret that starts with "enc:" can be given in a file. Errors are
// *KeyError.
func (r *Resolver) Resolve(ref Ref) (string, error) {
	if ref.File != "" {
		if ref.Value != "" {
			return "", &KeyError{Key: ref.Key, Err: fmt.Errorf("set together with %s; set only one of them", ref.FileKey)}
		}
		b, err := readLimited(ref.File)
		if err != nil {
			return "", &KeyError{Key: ref.FileKey, Err: err}
		}
		s := trimNewline(string(b))
		if s == "" {
			return "", &KeyError{Key: ref.FileKey, Err: fmt.Errorf("%s is empty", ref.File)}
		}
		return s, nil
	}
	if !IsSealed(ref.Value) {
		return ref.Value, nil
	}
	if r.keyErr != nil {
		return "", &KeyError{Key: ref.Key, Err: fmt.Errorf("is sealed, and the secret key did not load (%s.key_env or %s.key_file)", ConfigPath, ConfigPath)}
	}
	plain, err := Unseal(r.key, ref.Value)
	if err != nil {
		return "", &KeyError{Key: ref.Key, Err: err}
	}
	return plain, nil
}

// trimNewline removes one trailing "\n" or "\r\n", no more: white space
// around a secret may belong to it.
func trimNewline(s string) string {
	if t, ok := strings.CutSuffix(s, "\r\n"); ok {
		return t
	}
	return strings.TrimSuffix(s, "\n")
}

// readLimited reads a file of at most MaxFileBytes. Errors name the path
// (what the user set), not the content.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes; a secret file holds one secret", path, MaxFileBytes)
	}
	return b, nil
}

// unwrapPath drops the path repeated in "open PATH: reason".
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
