package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/config"
	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/secret"
	"github.com/flowhouse/flowhouse/store"
)

// cleanEnv sets aside the FLOWHOUSE_ variables of the shell running the
// tests, so that only the test's own apply.
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, config.EnvPrefix) {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testKey sets a new key in FLOWHOUSE_SECRET_KEY and returns it parsed.
func testKey(t *testing.T) []byte {
	t.Helper()
	text, err := secret.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(secret.DefaultKeyEnv, text)
	key, _ := secret.ParseKey([]byte(text))
	return key
}

func seal(t *testing.T, key []byte, plain string) string {
	t.Helper()
	s, err := secret.Seal(key, plain)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// check-config opens every secret key, each of its forms, and fails
// naming the key of one that does not open, without showing a secret.
func TestCheckConfigOpensEverySecret(t *testing.T) {
	cleanEnv(t)
	key := testKey(t)
	other, _ := secret.ParseKey([]byte(strings.Repeat("cd", 32)))
	const plain = "s3cret-plain-long-enough-for-any-key"
	sealed := seal(t, key, plain)
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sealed, secret.SealedPrefix))
	raw[len(raw)-1] ^= 1
	missing := filepath.Join(t.TempDir(), "missing")

	secrets := []struct{ key, yaml string }{
		{"clickhouse.password", "clickhouse:\n  %s: %q\n"},
		{"clickhouse.embedded.http_token", "clickhouse:\n  embedded:\n    %s: %q\n"},
		{"enrich.exporters[0].snmp.community", "enrich:\n  exporters:\n    - match: 192.0.2.1\n      snmp:\n        %s: %q\n"},
		{"enrich.exporters[0].snmp.auth_passphrase", "enrich:\n  exporters:\n    - match: 192.0.2.1\n      snmp:\n        %s: %q\n"},
		{"enrich.exporters[0].snmp.priv_passphrase", "enrich:\n  exporters:\n    - match: 192.0.2.1\n      snmp:\n        %s: %q\n"},
		{"enrich.discovered_snmp.community", "enrich:\n  discovered_snmp:\n    %s: %q\n"},
		{"enrich.discovered_snmp.auth_passphrase", "enrich:\n  discovered_snmp:\n    %s: %q\n"},
		{"enrich.discovered_snmp.priv_passphrase", "enrich:\n  discovered_snmp:\n    %s: %q\n"},
		{"tokens.hmac_key", "tokens:\n  %s: %q\n"},
		{"http.metrics_token", "http:\n  %s: %q\n"},
	}
	forms := []struct {
		name    string
		file    bool   // the value is set as <key>_file
		value   string // what the key is set to
		wantOut string // in the output of a good sealed one, after "<leaf>"
		wantErr string // for a bad one, after "<key>: " (or "<key>_file: ")
	}{
		{"sealed", false, sealed, ": '***'\n", ""},
		{"file", true, writeTemp(t, "secret", plain+"\n"), "", ""},
		{"wrong key", false, seal(t, other, plain), "", "sealed value does not open with the configured key"},
		{"bad base64", false, "enc:***", "", "sealed value is not valid base64"},
		{"tampered", false, secret.SealedPrefix + base64.StdEncoding.EncodeToString(raw), "", "sealed value does not open"},
		{"missing file", true, missing, "", "cannot read " + missing},
	}
	for _, s := range secrets {
		leaf := s.key[strings.LastIndex(s.key, ".")+1:]
		for _, f := range forms {
			t.Run(s.key+"/"+f.name, func(t *testing.T) {
				k := leaf
				if f.file {
					k += "_file"
				}
				path := writeTemp(t, "flowhouse.yaml", fmt.Sprintf(s.yaml, k, f.value))
				code, out, errs := runCLI(t, "--config", path, "check-config")
				if f.wantErr == "" {
					wantOut := leaf + f.wantOut
					if f.file {
						wantOut = leaf + `: ""` + "\n"
					}
					if code != 0 || !strings.Contains(out, wantOut) || (f.file && !strings.Contains(out, k+": "+f.value+"\n")) {
						t.Fatalf("exit %d, stderr %q; output lacks %q or the file:\n%s", code, errs, wantOut, out)
					}
					if strings.Contains(out, plain) || strings.Contains(out, "enc:") {
						t.Errorf("output shows a secret:\n%s", out)
					}
					return
				}
				want := strings.TrimSuffix(s.key, leaf) + k + ": " + f.wantErr
				if code != 2 || !strings.Contains(errs, want) || out != "" {
					t.Fatalf("exit %d, stdout %q, stderr %q; want %q", code, out, errs, want)
				}
				if strings.Contains(errs, plain) || (len(f.value) > 16 && !f.file && strings.Contains(errs, f.value[4:])) {
					t.Errorf("error shows a secret: %q", errs)
				}
			})
		}
	}
}

// seal's output is what check-config opens; seal works while the file
// holds a value sealed with another key, which check-config refuses.
func TestSealCommand(t *testing.T) {
	cleanEnv(t)
	testKey(t)
	var out, errs bytes.Buffer
	if code := runSeal("", nil, strings.NewReader("hunter2\n"), &out, &errs); code != 0 {
		t.Fatalf("seal: exit %d %q", code, errs.String())
	}
	sealed := strings.TrimSpace(out.String())
	if !secret.IsSealed(sealed) || strings.Contains(sealed, "hunter2") {
		t.Fatalf("sealed %q", sealed)
	}
	good := writeTemp(t, "good.yaml", "clickhouse:\n  password: "+sealed+"\n")
	if code, _, errs := runCLI(t, "--config", good, "check-config"); code != 0 {
		t.Errorf("check-config of the sealed value: exit %d %q", code, errs)
	}

	other, _ := secret.ParseKey([]byte(strings.Repeat("ef", 32)))
	stale := writeTemp(t, "stale.yaml", "clickhouse:\n  password: "+seal(t, other, "old")+"\n")
	out.Reset()
	if code := runSeal(stale, nil, strings.NewReader("new"), &out, &errs); code != 0 || !secret.IsSealed(strings.TrimSpace(out.String())) {
		t.Errorf("seal with a stale value in the file: exit %d %q", code, errs.String())
	}
	if code, _, errs := runCLI(t, "--config", stale, "check-config"); code != 2 || !strings.Contains(errs, "clickhouse.password: sealed value does not open") {
		t.Errorf("check-config of the stale value: exit %d %q", code, errs)
	}
	if code := runSeal("", []string{"extra"}, strings.NewReader(""), io.Discard, io.Discard); code != 2 {
		t.Errorf("seal extra: exit %d", code)
	}
}

// A sealed clickhouse.password, or one in password_file, is what reaches
// the server; the sealed text itself is not a password it accepts.
func TestSealedPasswordReachesTheServer(t *testing.T) {
	cleanEnv(t)
	key := testKey(t)
	addr, database := chtest.Database(t)
	base := fmt.Sprintf("clickhouse:\n  addr: %q\n  database: %s\n  username: %s\n", addr, database, chtest.PasswordUser)
	sealed := seal(t, key, chtest.Password)
	for _, tt := range []struct {
		name, yaml string
		ok         bool
	}{
		{"sealed", base + "  password: " + sealed + "\n", true},
		{"file", base + "  password_file: " + writeTemp(t, "pw", chtest.Password+"\n") + "\n", true},
		{"sealed wrong password", base + "  password: " + seal(t, key, "not-the-password") + "\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := writeTemp(t, "flowhouse.yaml", tt.yaml)
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			db, err := store.Open(ctx, cfg.ClickHouse, nil)
			if !tt.ok {
				if err == nil {
					db.Close()
					t.Fatal("the server accepted a wrong password")
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
			// And through the commands: migrate, then a query.
			if code, out, errs := runCLI(t, "--config", path, "migrate"); code != 0 {
				t.Fatalf("migrate: exit %d %q %q", code, out, errs)
			}
			if code, out, errs := runCLI(t, "--config", path, "query", "-format", "tsv", "-noheader", "SELECT count() FROM schema_migrations"); code != 0 || out == "0\n" {
				t.Errorf("query: exit %d %q %q", code, out, errs)
			}
		})
	}
	// What used to happen: the enc: text sent as the password is refused.
	cfg := store.DefaultConfig()
	cfg.Addr, cfg.Database, cfg.Username, cfg.Password = addr, database, chtest.PasswordUser, sealed
	if db, err := store.OpenServer(context.Background(), cfg, nil); err == nil {
		db.Close()
		t.Error("the server accepted the sealed text as the password")
	}
}

// A sealed http_token, or one in http_token_file, is the token the query
// endpoint asks for, and the one `flowhouse query` sends.
func TestSealedTokenOpensTheQueryEndpoint(t *testing.T) {
	for _, form := range []string{"sealed", "file"} {
		t.Run(form, func(t *testing.T) {
			cleanEnv(t)
			key := testKey(t)
			const token = "t0ken-of-the-endpoint"
			sealed := seal(t, key, token)
			if form == "sealed" {
				t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_TOKEN", sealed)
			} else {
				t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_TOKEN_FILE", writeTemp(t, "token", token+"\n"))
			}
			queryAddr, _ := startEmbeddedServe(t, t.TempDir())
			for _, tt := range []struct {
				bearer string
				status int
			}{{token, http.StatusOK}, {sealed, http.StatusForbidden}, {"", http.StatusUnauthorized}} {
				req, _ := http.NewRequest(http.MethodGet, "http://"+queryAddr+"/?query=SELECT+7", nil)
				if tt.bearer != "" {
					req.Header.Set("Authorization", "Bearer "+tt.bearer)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.status || (tt.status == http.StatusOK && string(body) != "7\n") {
					t.Errorf("bearer %q: %d %q, want %d", tt.bearer, resp.StatusCode, body, tt.status)
				}
			}
			t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN", queryAddr)
			if code, out, errs := runCLI(t, "query", "-noheader", "SELECT 7"); code != 0 || out != "7\n" {
				t.Errorf("flowhouse query: exit %d %q %q", code, out, errs)
			}
		})
	}
}
