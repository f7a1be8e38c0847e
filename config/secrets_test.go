package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/flowhouse/flowhouse/secret"
)

// secretKeys is every secret of the configuration, with YAML that sets it
// (%s: the key, %s: the value) and how to read it back.
var secretKeys = []struct {
	path, key string
	yaml      string
	get       func(*Config) string
}{
	{"clickhouse.", "password", "clickhouse:\n  %s: %s\n",
		func(c *Config) string { return c.ClickHouse.Password }},
	{"clickhouse.embedded.", "http_token", "clickhouse:\n  embedded:\n    %s: %s\n",
		func(c *Config) string { return c.ClickHouse.Embedded.HTTPToken }},
	{"enrich.exporters[0].snmp.", "community", "enrich:\n  exporters:\n    - match: 192.0.2.1\n      snmp:\n        %s: %s\n",
		func(c *Config) string { return c.Enrich.Exporters[0].SNMP.Community }},
	{"enrich.exporters[0].snmp.", "auth_passphrase", "enrich:\n  exporters:\n    - match: 192.0.2.1\n      snmp:\n        %s: %s\n",
		func(c *Config) string { return c.Enrich.Exporters[0].SNMP.AuthPassphrase }},
	{"enrich.exporters[0].snmp.", "priv_passphrase", "enrich:\n  exporters:\n    - match: 192.0.2.1\n      snmp:\n        %s: %s\n",
		func(c *Config) string { return c.Enrich.Exporters[0].SNMP.PrivPassphrase }},
	{"enrich.discovered_snmp.", "community", "enrich:\n  discovered_snmp:\n    %s: %s\n",
		func(c *Config) string { return c.Enrich.DiscoveredSNMP.Community }},
}

// Every secret can be read from a file: the convention new secrets (API
// tokens, SMTP and webhook passwords) follow by adding a <key>_file field.
func TestEverySecretHasAFile(t *testing.T) {
	var got []string
	var walk func(n *node)
	walk = func(n *node) {
		switch n.kind {
		case kindStruct:
			for _, f := range n.fields {
				if f.node.secret && f.node.kind == kindScalar {
					got = append(got, f.node.path)
					if f.file == nil {
						t.Errorf("%s is secret but has no %s%s key beside it", f.node.path, f.key, fileSuffix)
					}
				}
				walk(f.node)
			}
		case kindList, kindMap:
			if n.secret {
				t.Errorf("%s: a list or map of secrets cannot have a file; make it a list of structs", n.path)
			}
			walk(n.elem)
		}
	}
	walk(sections.tree)
	want := []string{
		"clickhouse.embedded.http_token", "clickhouse.password",
		"enrich.discovered_snmp.auth_passphrase", "enrich.discovered_snmp.community", "enrich.discovered_snmp.priv_passphrase",
		"enrich.exporters[].snmp.auth_passphrase", "enrich.exporters[].snmp.community", "enrich.exporters[].snmp.priv_passphrase",
		"http.metrics_token",
		"notify.receivers[].smtp.password", "notify.receivers[].webhook.hmac_key", "notify.receivers[].webhook.tenants[].hmac_key",
		"tokens.hmac_key",
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("secrets %q\nwant %q", got, want)
	}
	if n := sections.tree.lookup(secret.ConfigPath); n == nil || n.typ != reflect.TypeFor[secret.Config]() {
		t.Errorf("%s is not where the secret key is configured", secret.ConfigPath)
	}
}

func newKey(t *testing.T) (text string, key []byte) {
	t.Helper()
	text, err := secret.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	key, err = secret.ParseKey([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return text, key
}

func secretFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Each secret key is opened by Load whatever its form, and one that does
// not open is an error naming the key, never the secret.
func TestSecretsOpen(t *testing.T) {
	keyText, key := newKey(t)
	_, otherKey := newKey(t)
	const plain = "s3cret-value"
	sealed, _ := secret.Seal(key, plain)
	wrongKey, _ := secret.Seal(otherKey, plain)
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sealed, secret.SealedPrefix))
	raw[len(raw)-1] ^= 1
	tampered := secret.SealedPrefix + base64.StdEncoding.EncodeToString(raw)
	missing := filepath.Join(t.TempDir(), "missing")
	env := []string{"FLOWHOUSE_SECRET_KEY=" + keyText}

	type setting struct {
		file  bool
		value string
	}
	forms := []struct {
		name    string
		set     []setting
		wantErr string // "" opens to plain; else the message after the key
		errKey  string // "" : the value's key; "_file": the file's key
	}{
		{"plain", []setting{{false, plain}}, "", ""},
		{"sealed", []setting{{false, sealed}}, "", ""},
		{"file", []setting{{true, secretFile(t, plain+"\n")}}, "", ""},
		{"wrong key", []setting{{false, wrongKey}}, "sealed value does not open with the configured key", ""},
		{"bad base64", []setting{{false, "enc:not base64!"}}, "sealed value is not valid base64", ""},
		{"tampered", []setting{{false, tampered}}, "sealed value does not open", ""},
		{"missing file", []setting{{true, missing}}, "cannot read " + missing + ": no such file or directory", "_file"},
		{"both", []setting{{false, plain}, {true, secretFile(t, plain)}}, "set together with ", ""},
	}
	for _, sk := range secretKeys {
		for _, form := range forms {
			t.Run(sk.path+sk.key+"/"+form.name, func(t *testing.T) {
				var lines []string
				for i, s := range form.set {
					k := sk.key
					if s.file {
						k += "_file"
					}
					y := fmt.Sprintf(sk.yaml, k, quote(s.value))
					if i > 0 {
						y = y[strings.LastIndex(strings.TrimSuffix(y, "\n"), "\n")+1:] // the key's line only
					}
					lines = append(lines, y)
				}
				c, err := load(writeFile(t, strings.Join(lines, "")), env)
				if form.wantErr == "" {
					if err != nil {
						t.Fatal(err)
					}
					if got := sk.get(c); got != plain {
						t.Errorf("%s%s = %q, want %q", sk.path, sk.key, got, plain)
					}
					return
				}
				key := sk.path + sk.key + form.errKey
				var ce *Error
				if !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0].Key != key ||
					!strings.HasPrefix(ce.Problems[0].Message, key+": "+form.wantErr) {
					t.Fatalf("error %v\nwant one problem %s: %s...", err, key, form.wantErr)
				}
				if form.name == "both" && !strings.Contains(err.Error(), sk.path+sk.key+"_file") {
					t.Errorf("does not name both keys: %v", err)
				}
				if strings.Contains(err.Error(), plain) || strings.Contains(err.Error(), secret.SealedPrefix) {
					t.Errorf("error shows the secret: %v", err)
				}
			})
		}
	}
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

// A secret read from a file is printed as its file: the output loads back
// and holds nothing of the secret.
func TestSecretFromFileOutput(t *testing.T) {
	pw := secretFile(t, "p4ssw0rd\n")
	c, err := load(writeFile(t, "clickhouse:\n  password_file: "+pw+"\n  embedded:\n    http_token: tok3n-value\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.ClickHouse.Password != "p4ssw0rd" {
		t.Fatalf("password %q", c.ClickHouse.Password)
	}
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"  password: \"\"\n  password_file: " + pw + "\n", "    http_token: '***'\n    http_token_file: \"\"\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "p4ssw0rd") || strings.Contains(string(out), "tok3n") {
		t.Errorf("output shows a secret:\n%s", out)
	}
	back, err := load(writeFile(t, string(out)), nil)
	if err != nil {
		t.Fatalf("output does not load back: %v\n%s", err, out)
	}
	if back.ClickHouse.Password != "p4ssw0rd" {
		t.Errorf("loaded back, the password is %q", back.ClickHouse.Password)
	}
}

// The key comes from whatever variable key_env names, and that variable
// is not called unknown even when it has the FLOWHOUSE_ prefix.
func TestSecretKeyVariable(t *testing.T) {
	keyText, key := newKey(t)
	sealed, _ := secret.Seal(key, "opened")
	for _, tt := range []struct {
		name string
		file string
		env  []string
	}{
		{"default variable", "", []string{"FLOWHOUSE_SECRET_KEY=" + keyText}},
		{"named in the file", "  secrets: {key_env: FLOWHOUSE_MY_KEY}\n", []string{"FLOWHOUSE_MY_KEY=" + keyText}},
		{"named in the environment", "", []string{"FLOWHOUSE_ENRICH_SECRETS_KEY_ENV=FLOWHOUSE_MY_KEY", "FLOWHOUSE_MY_KEY=" + keyText}},
		{"outside the prefix", "  secrets: {key_env: MY_KEY}\n", []string{"MY_KEY=" + keyText}},
		{"key file", "  secrets: {key_env: \"\", key_file: " + secretFile(t, keyText+"\n") + "}\n", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(writeFile(t, "enrich:\n  discovered_snmp: {community: "+quote(sealed)+"}\n"+tt.file), tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if c.Enrich.DiscoveredSNMP.Community != "opened" {
				t.Errorf("community %q", c.Enrich.DiscoveredSNMP.Community)
			}
		})
	}
	// Another FLOWHOUSE_ variable is still unknown.
	_, err := load(writeFile(t, "enrich:\n  secrets: {key_env: FLOWHOUSE_MY_KEY}\n"), []string{"FLOWHOUSE_MY_KEX=x"})
	if err == nil || !strings.Contains(err.Error(), "unknown variable FLOWHOUSE_MY_KEX") {
		t.Errorf("unknown variable: %v", err)
	}
}

// A key that does not load is a problem even with nothing sealed: it
// would be at the first sealed value.
func TestSecretKeyProblems(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "key")
	for _, tt := range []struct {
		name, file string
		env        []string
		key, want  string
	}{
		{"missing key file", "enrich:\n  secrets: {key_file: " + missing + "}\n", nil,
			"enrich.secrets.key_file", "enrich.secrets.key_file: cannot read " + missing + ": no such file or directory"},
		{"bad key in the variable", "", []string{"FLOWHOUSE_SECRET_KEY=hunter2hunter2"},
			"enrich.secrets.key_env", "enrich.secrets.key_env: variable FLOWHOUSE_SECRET_KEY: secret key must be 32 bytes"},
		{"bad variable name", "enrich:\n  secrets: {key_env: \"MY KEY\"}\n", nil,
			"enrich.secrets.key_env", `enrich.secrets.key_env: "MY KEY" is not an environment variable name`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(writeFile(t, tt.file), tt.env)
			var ce *Error
			if !errors.As(err, &ce) || ce.Problems[0].Key != tt.key || !strings.HasPrefix(ce.Problems[0].Message, tt.want) {
				t.Fatalf("error %v\nwant %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error shows the key: %v", err)
			}
		})
	}
}

// LoadUnopened (flowhouse seal) leaves secrets as written, so a value
// sealed with another key or a missing file does not stop it.
func TestLoadUnopened(t *testing.T) {
	_, other := newKey(t)
	sealed, _ := secret.Seal(other, "x")
	missing := filepath.Join(t.TempDir(), "missing")
	path := writeFile(t, "clickhouse:\n  password: "+quote(sealed)+"\n  embedded: {http_token_file: "+missing+"}\n")
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, EnvPrefix) {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	if _, err := Load(path); err == nil {
		t.Fatal("Load opened a value sealed with another key")
	}
	c, err := LoadUnopened(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.ClickHouse.Password != sealed || c.ClickHouse.Embedded.HTTPTokenFile != missing || c.ClickHouse.Embedded.HTTPToken != "" {
		t.Errorf("changed: %+v", c.ClickHouse)
	}
}

// Validation sees the secrets as opened, and messages quoting them are
// scrubbed whatever form they were written in.
func TestOpenedSecretsNotInErrors(t *testing.T) {
	keyText, key := newKey(t)
	sealed, _ := secret.Seal(key, "hunter2")
	for _, tt := range []struct{ name, file string }{
		{"from a file", "clickhouse:\n  password_file: " + secretFile(t, "hunter2\n") + "\n  addr: hunter2\n"},
		{"sealed", "clickhouse:\n  password: " + quote(sealed) + "\n  addr: hunter2\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(writeFile(t, tt.file), []string{"FLOWHOUSE_SECRET_KEY=" + keyText})
			if err == nil || !strings.Contains(err.Error(), "clickhouse.addr") {
				t.Fatalf("no error on addr: %v", err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("secret in error:\n%v", err)
			}
		})
	}
	// A non-loopback endpoint is accepted with its token in a file.
	if _, err := load(writeFile(t, "clickhouse:\n  embedded:\n    http_listen: 0.0.0.0:8123\n    http_token_file: "+secretFile(t, "t0ken")+"\n"), nil); err != nil {
		t.Errorf("token from a file: %v", err)
	}
}

// Secrets in lists and maps are opened too, and named by index and map key.
func TestSecretsInListsAndMaps(t *testing.T) {
	t.Chdir(t.TempDir())
	_, err := loadTest(t, "enrich:\n  tokens: [plain, \"enc:AAAA\"]\n  notifiers: [{headers: {X-Token: \"enc:AAAA\"}}]\n")
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 2 {
		t.Fatalf("error %v", err)
	}
	for i, want := range []string{"enrich.tokens[1]", "enrich.notifiers[0].headers.X-Token"} {
		if p := ce.Problems[i]; p.Key != want || !strings.HasPrefix(p.Message, want+": value is sealed (enc:) but no secret key is configured") {
			t.Errorf("problem %d: %+v, want one for %s", i, p, want)
		}
	}
	got, err := loadTest(t, "enrich:\n  tokens: [plain]\n")
	if err != nil || got.Enrich.Tokens[0] != "plain" {
		t.Errorf("plain token: %v %v", got.Enrich.Tokens, err)
	}
}
