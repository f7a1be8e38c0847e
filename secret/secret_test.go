package secret

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testKey(t *testing.T) []byte {
	t.Helper()
	text, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParseKey([]byte(text + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSealUnseal(t *testing.T) {
	key := testKey(t)
	s, err := Seal(key, "s3cret community")
	if err != nil || !IsSealed(s) || strings.Contains(s, "s3cret") {
		t.Fatalf("Seal: %q %v", s, err)
	}
	if p, err := Unseal(key, s); err != nil || p != "s3cret community" {
		t.Fatalf("Unseal: %q %v", p, err)
	}
	if p, err := Unseal(nil, "plain"); err != nil || p != "plain" {
		t.Errorf("plain value: %q %v", p, err)
	}
	other, _ := ParseKey([]byte(strings.Repeat("ab", 32)))
	if _, err := Unseal(other, s); err == nil || strings.Contains(err.Error(), s) {
		t.Errorf("wrong key: %v", err)
	}
	if _, err := Unseal(nil, s); !errors.Is(err, ErrNoKey) {
		t.Errorf("sealed value without a key: %v", err)
	}
	tampered := s[:len(s)-2] + "AA"
	if _, err := Unseal(key, tampered); err == nil {
		t.Error("tampered value opened")
	}
	if _, err := ParseKey([]byte("short")); err == nil {
		t.Error("short key accepted")
	}
}

func TestParseKey(t *testing.T) {
	raw := []byte("0123456789abcdef0123456789abcdef")
	for _, tt := range []struct {
		name, in string
		ok       bool
	}{
		{"raw bytes", string(raw), true},
		{"hex", hex.EncodeToString(raw), true},
		{"base64 with a newline", base64.StdEncoding.EncodeToString(raw) + "\n", true},
		{"base64 without padding", base64.RawStdEncoding.EncodeToString(raw), true},
		{"url base64", base64.URLEncoding.EncodeToString(raw), true},
		{"16 bytes", base64.StdEncoding.EncodeToString(raw[:16]), false},
		{"not a key", "correct horse battery staple", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKey([]byte(tt.in))
			if tt.ok && (err != nil || string(k) != string(raw)) {
				t.Errorf("got %x, %v", k, err)
			}
			if !tt.ok && err == nil {
				t.Errorf("accepted: %x", k)
			}
		})
	}
}

func TestLoadKey(t *testing.T) {
	text, _ := GenerateKey()
	env := func(vars map[string]string) func(string) string {
		return func(name string) string { return vars[name] }
	}
	good := writeFile(t, text+"\n")
	bad := writeFile(t, "not a key\n")
	for _, tt := range []struct {
		name    string
		cfg     Config
		vars    map[string]string
		wantKey bool
		wantErr string // the KeyError's key; "" for no error
		hidden  string // must not be in the error
	}{
		{"from the variable", Config{KeyEnv: "K"}, map[string]string{"K": text}, true, "", ""},
		{"variable first", Config{KeyEnv: "K", KeyFile: bad}, map[string]string{"K": text}, true, "", ""},
		{"empty variable: the file", Config{KeyEnv: "K", KeyFile: good}, map[string]string{"K": ""}, true, "", ""},
		{"none configured", Config{KeyEnv: "K"}, nil, false, "", ""},
		{"bad variable", Config{KeyEnv: "K"}, map[string]string{"K": "hunter2hunter2"}, false, "enrich.secrets.key_env", "hunter2"},
		{"missing file", Config{KeyFile: "/nonexistent/key"}, nil, false, "enrich.secrets.key_file", ""},
		{"bad file", Config{KeyFile: bad}, nil, false, "enrich.secrets.key_file", "not a key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, err := LoadKey(tt.cfg, env(tt.vars))
			var ke *KeyError
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tt.wantErr != "" && (!errors.As(err, &ke) || ke.Key != tt.wantErr):
				t.Fatalf("error %v, want one for %s", err, tt.wantErr)
			case tt.hidden != "" && strings.Contains(err.Error(), tt.hidden):
				t.Errorf("error shows the key: %v", err)
			case (k != nil) != tt.wantKey:
				t.Errorf("key %x, want one: %v", k, tt.wantKey)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	key := testKey(t)
	sealed, err := Seal(key, "hunter2")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sealed, SealedPrefix))
	raw[len(raw)-1] ^= 1
	tampered := SealedPrefix + base64.StdEncoding.EncodeToString(raw)
	dir := t.TempDir()
	r := NewResolverWithKey(key)
	for _, tt := range []struct {
		name      string
		r         *Resolver
		value     string
		file      string
		want      string
		wantKey   string // the KeyError's key
		wantInErr string
	}{
		{"plain", r, "hunter2", "", "hunter2", "", ""},
		{"empty", r, "", "", "", "", ""},
		{"sealed", r, sealed, "", "hunter2", "", ""},
		{"file", r, "", writeFile(t, "hunter2\n"), "hunter2", "", ""},
		{"file with CRLF", r, "", writeFile(t, "hunter2\r\n"), "hunter2", "", ""},
		{"only one newline trimmed", r, "", writeFile(t, "hunter2\n\n"), "hunter2\n", "", ""},
		{"file without newline", r, "", writeFile(t, " hunter2 "), " hunter2 ", "", ""},
		{"file content used as it is", r, "", writeFile(t, "enc:not-sealed"), "enc:not-sealed", "", ""},
		{"wrong key", NewResolverWithKey(testKey(t)), sealed, "", "", "x.password", "does not open"},
		{"no key", &Resolver{}, sealed, "", "", "x.password", "no secret key"},
		{"key did not load", NewResolver(Config{KeyFile: "/nonexistent"}, nil), sealed, "", "", "x.password", "did not load"},
		{"bad base64", r, "enc:%%%", "", "", "x.password", "base64"},
		{"too short", r, "enc:AAAA", "", "", "x.password", "too short"},
		{"tampered", r, tampered, "", "", "x.password", "does not open"},
		{"missing file", r, "", filepath.Join(dir, "nope"), "", "x.password_file", "cannot read " + filepath.Join(dir, "nope") + ": no such file"},
		{"directory", r, "", dir, "", "x.password_file", "cannot read " + dir},
		{"empty file", r, "", writeFile(t, "\n"), "", "x.password_file", "is empty"},
		{"huge file", r, "", writeFile(t, strings.Repeat("x", MaxFileBytes+1)), "", "x.password_file", "larger than"},
		{"both set", r, "hunter2", writeFile(t, "hunter2"), "", "x.password", "set together with x.password_file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.r.Resolve(Ref{Key: "x.password", Value: tt.value, FileKey: "x.password_file", File: tt.file})
			if tt.wantKey == "" {
				if err != nil || got != tt.want {
					t.Fatalf("got %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != tt.wantKey || !strings.Contains(err.Error(), tt.wantInErr) {
				t.Fatalf("error %v, want one for %s with %q", err, tt.wantKey, tt.wantInErr)
			}
			if !strings.HasPrefix(err.Error(), tt.wantKey+": ") {
				t.Errorf("error does not start with its key: %v", err)
			}
			if strings.Contains(err.Error(), "hunter2") || (IsSealed(tt.value) && strings.Contains(err.Error(), tt.value)) {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		cfg Config
		ok  bool
	}{
		{DefaultConfig(), true},
		{Config{}, true},
		{Config{KeyEnv: "MY_KEY", KeyFile: "/etc/flowhouse/key"}, true},
		{Config{KeyEnv: "MY KEY"}, false},
		{Config{KeyEnv: "1KEY"}, false},
	} {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%+v: %v", tt.cfg, err)
		}
	}
}

func TestSealWithConfig(t *testing.T) {
	text, _ := GenerateKey()
	t.Setenv("SECRET_TEST_KEY", text)
	sealed, err := SealWithConfig(Config{KeyEnv: "SECRET_TEST_KEY"}, "hunter2")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ParseKey([]byte(text))
	if got, err := NewResolverWithKey(key).Resolve(Ref{Key: "k", Value: sealed}); err != nil || got != "hunter2" {
		t.Errorf("resolved %q, %v", got, err)
	}
	if _, err := SealWithConfig(Config{KeyEnv: "SECRET_TEST_NO_KEY"}, "x"); err == nil || !strings.Contains(err.Error(), "no secret key") {
		t.Errorf("without a key: %v", err)
	}
}
