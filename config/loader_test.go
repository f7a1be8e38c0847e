package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A configuration of made-up sections, to test what the real sections do
// not use yet: maps, text types, secret tags, nested lists.
type enrichConfig struct {
	Networks   map[string]string `mapstructure:"networks" yaml:"networks"`
	Prefixes   []netip.Prefix    `mapstructure:"prefixes" yaml:"prefixes"`
	Level      slog.Level        `mapstructure:"level" yaml:"level"`
	Community  string            `mapstructure:"community" yaml:"community" secret:"true"`
	Tokens     []string          `mapstructure:"tokens" yaml:"tokens" secret:"true"`
	Notifiers  []notifierConfig  `mapstructure:"notifiers" yaml:"notifiers"`
	Ratio      float64           `mapstructure:"ratio" yaml:"ratio"`
	Small      int8              `mapstructure:"small" yaml:"small"`
	Interval   time.Duration     `mapstructure:"interval" yaml:"interval"`
	unexported int
}

type notifierConfig struct {
	URL      string            `mapstructure:"url" yaml:"url"`
	Password string            `mapstructure:"password" yaml:"password"`
	Headers  map[string]string `mapstructure:"headers" yaml:"headers"`
	Timeout  time.Duration     `mapstructure:"timeout" yaml:"timeout"`
}

type dbConfig struct {
	Addr     string `mapstructure:"addr" yaml:"addr"`
	Password string `mapstructure:"password" yaml:"password"`
	Rows     int    `mapstructure:"rows" yaml:"rows"`
}

type testRoot struct {
	DB     dbConfig     `mapstructure:"db"`
	Enrich enrichConfig `mapstructure:"enrich"`
}

var testLoader = newLoader[testRoot](
	newSection(func(c *testRoot) *dbConfig { return &c.DB },
		func() dbConfig { return dbConfig{Addr: "localhost:9000", Rows: 10} },
		func(c dbConfig) error {
			var errs []error
			if c.Rows < 1 {
				errs = append(errs, fmt.Errorf("rows: %d must be at least 1", c.Rows))
			}
			if c.Addr == "" {
				errs = append(errs, errors.New("addr or a socket is required"))
			} else if !strings.Contains(c.Addr, ":") {
				errs = append(errs, fmt.Errorf("addr: %q is not host:port", c.Addr))
			}
			return errors.Join(errs...)
		}, "password"),
	newSection(func(c *testRoot) *enrichConfig { return &c.Enrich },
		func() enrichConfig {
			return enrichConfig{Level: slog.LevelInfo, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
		},
		nil, "notifiers.password", "notifiers.headers"),
)

func loadTest(t *testing.T, file string, env ...string) (testRoot, error) {
	t.Helper()
	path := ""
	if file != "" {
		path = writeFile(t, file)
	}
	v, err := testLoader.load(path, env)
	if err != nil {
		return testRoot{}, err
	}
	return v.Interface().(testRoot), nil
}

func TestLoaderTypes(t *testing.T) {
	t.Chdir(t.TempDir())
	got, err := loadTest(t, `
db:
  password: pw
enrich:
  networks: {Office: 192.0.2.0/24, lab: 198.51.100.0/24}
  prefixes: [192.0.2.0/24, "2001:db8::/32"]
  level: debug
  community: public
  tokens: [a, b]
  ratio: 0.25
  small: -128
  interval: 0
  notifiers:
    - url: http://example/hook
      password: np
      headers: {X-Token: t1}
      timeout: 5s
`, "FLOWHOUSE_DB_ROWS=0x20")
	if err != nil {
		t.Fatal(err)
	}
	want := testRoot{
		DB: dbConfig{Addr: "localhost:9000", Password: "pw", Rows: 32},
		Enrich: enrichConfig{
			Networks:  map[string]string{"Office": "192.0.2.0/24", "lab": "198.51.100.0/24"},
			Prefixes:  []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
			Level:     slog.LevelDebug,
			Community: "public",
			Tokens:    []string{"a", "b"},
			Ratio:     0.25,
			Small:     -128,
			Notifiers: []notifierConfig{{URL: "http://example/hook", Password: "np", Headers: map[string]string{"X-Token": "t1"}, Timeout: 5 * time.Second}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	// Redaction: tagged fields, declared paths, inside list elements and maps.
	red := redact(reflect.ValueOf(got), testLoader.tree).Interface().(testRoot)
	if red.DB.Password != "***" || red.Enrich.Community != "***" || red.Enrich.Tokens[1] != "***" ||
		red.Enrich.Notifiers[0].Password != "***" || red.Enrich.Notifiers[0].Headers["X-Token"] != "***" {
		t.Errorf("not redacted: %+v", red)
	}
	if got.Enrich.Tokens[1] != "b" || got.Enrich.Notifiers[0].Password != "np" || got.Enrich.Notifiers[0].Headers["X-Token"] != "t1" {
		t.Errorf("redact changed the original: %+v", got)
	}
	if red.Enrich.Notifiers[0].URL != "http://example/hook" || red.Enrich.Networks["lab"] != "198.51.100.0/24" {
		t.Errorf("redacted more than secrets: %+v", red)
	}

	// Output loads back.
	out, err := testLoader.marshalYAML(reflect.ValueOf(got))
	if err != nil {
		t.Fatal(err)
	}
	back, err := loadTest(t, string(out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, got) {
		t.Errorf("round trip:\n got  %+v\n want %+v\n%s", back, got, out)
	}
}

func TestLoaderProblems(t *testing.T) {
	t.Chdir(t.TempDir())
	tests := []struct {
		name string
		file string
		env  []string
		want []string
	}{
		{"bad prefix", "enrich:\n  prefixes: [192.0.2.0/33]\n", nil,
			[]string{`config {file}:2: enrich.prefixes[0]: "192.0.2.0/33" is not a valid netip.Prefix`}},
		{"bad level", "enrich:\n  level: loud\n", nil,
			[]string{`config {file}:2: enrich.level: "loud" is not a valid slog.Level`}},
		{"int8 range", "enrich:\n  small: 200\n", nil,
			[]string{`config {file}:2: enrich.small: "200" is out of range (-128..127)`}},
		{"not a number", "enrich:\n  ratio: half\n", nil,
			[]string{`config {file}:2: enrich.ratio: "half" is not a number`}},
		{"map given a list", "enrich:\n  networks: [a]\n", nil,
			[]string{`config {file}:2: enrich.networks: must be a mapping, not a list`}},
		{"map from the environment", "", []string{"FLOWHOUSE_ENRICH_NETWORKS=a"},
			[]string{`environment FLOWHOUSE_ENRICH_NETWORKS: enrich.networks: cannot be set from the environment`}},
		{"bad list element from the environment", "", []string{"FLOWHOUSE_ENRICH_PREFIXES=10.0.0.0/8,nope"},
			[]string{`environment FLOWHOUSE_ENRICH_PREFIXES: enrich.prefixes[1]: "nope" is not a valid netip.Prefix`}},
		{"empty list element", "enrich:\n  tokens: [a, ~]\n", nil,
			[]string{`config {file}:2: enrich.tokens[1]: empty list element`}},
		{"nested unknown key in list", "enrich:\n  notifiers:\n    - url: x\n      timeuot: 1s\n", nil,
			[]string{`config {file}:4: unknown key "enrich.notifiers[0].timeuot" (did you mean "timeout"?)`}},
		{"bad type in list element", "enrich:\n  notifiers:\n    - timeout: 5\n", nil,
			[]string{`config {file}:3: enrich.notifiers[0].timeout: "5" is not a duration`}},
		{"merge key", "base: &b {rows: 5}\ndb:\n  <<: *b\n", nil,
			[]string{`config {file}:1: unknown key "base"`, `config {file}:3: db: YAML merge keys (<<) are not supported`}},
		{"alias", "db:\n  addr: &a host:1\nenrich:\n  community: *a\n", nil, nil},
		{"two documents", "db: {rows: 2}\n---\ndb: {rows: 3}\n", nil,
			[]string{`config {file}:2: only one YAML document is allowed`}},
		{"validation message without key", "db:\n  addr: ''\n", nil,
			[]string{`db: addr or a socket is required`}},
		{"secret token in list", "enrich:\n  tokens: [tok-123456, {a: tok-123456}]\ndb:\n  addr: tok-123456\n", nil,
			[]string{`config {file}:2: enrich.tokens[1]: must be a single value, not a mapping`,
				`db.addr: "***" is not host:port`}},
		{"secret header value", "enrich:\n  notifiers: [{headers: {X: [hdr-secret]}}]\n", []string{"FLOWHOUSE_DB_ROWS=hdr-secret"},
			[]string{`config {file}:2: enrich.notifiers[0].headers.X: must be a single value, not a list`,
				`environment FLOWHOUSE_DB_ROWS: db.rows: "***" is not an integer`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = writeFile(t, tt.file)
			}
			_, err := testLoader.load(path, tt.env)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %v", tt.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, want := range tt.want {
				want = strings.ReplaceAll(want, "{file}", path)
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("problem %d:\n got  %s\n want %s...", i, lines[i], want)
				}
			}
		})
	}
}

func TestSecretScrubbing(t *testing.T) {
	t.Chdir(t.TempDir())
	_, err := loadTest(t, "enrich:\n  tokens: [tok-123456, {a: tok-123456}]\ndb:\n  addr: tok-123456\n  rows: 0\n")
	if err == nil || strings.Contains(err.Error(), "tok-123456") {
		t.Errorf("secret shown or no error: %v", err)
	}
	// A secret given in the wrong shape is still a secret, wherever else
	// its value shows up.
	_, err = loadTest(t, "enrich:\n  notifiers: [{headers: {X: [hdr-secret]}}]\n", "FLOWHOUSE_DB_ROWS=hdr-secret")
	if err == nil || strings.Contains(err.Error(), "hdr-secret") {
		t.Errorf("secret shown or no error: %v", err)
	}
	// Short secrets are scrubbed where quoted only, not from every word.
	_, err = loadTest(t, "db:\n  password: a\n  addr: a\n  rows: 0\n")
	if err == nil || strings.Contains(err.Error(), `"a"`) || !strings.Contains(err.Error(), `db.addr: "***" is not host:port`) ||
		!strings.Contains(err.Error(), "db.rows: 0 must be at least 1") {
		t.Errorf("short secret shown, or message garbled: %v", err)
	}
}

func TestDeclarationMistakesPanic(t *testing.T) {
	type noTag struct {
		A int
	}
	type upper struct {
		A int `mapstructure:"Abc"`
	}
	type unsupported struct {
		C chan int `mapstructure:"c"`
	}
	type collide struct {
		AB int `mapstructure:"a_b"`
		A  struct {
			B int `mapstructure:"b"`
		} `mapstructure:"a"`
	}
	type secretInt struct {
		N int `mapstructure:"n" secret:"true"`
	}
	type rootNoTag struct{ S noTag }
	type rootUpper struct {
		S upper `mapstructure:"s"`
	}
	type rootUnsupported struct {
		S unsupported `mapstructure:"s"`
	}
	type rootCollide struct {
		S collide `mapstructure:"s"`
	}
	type rootSecretInt struct {
		S secretInt `mapstructure:"s"`
	}
	type rootTwo struct {
		A dbConfig `mapstructure:"a"`
		B dbConfig `mapstructure:"b"`
	}
	def := func() dbConfig { return dbConfig{} }
	tests := map[string]func(){
		"section without tag": func() {
			newSection(func(c *rootNoTag) *noTag { return &c.S }, func() noTag { return noTag{} }, nil)
		},
		"upper-case key": func() {
			newLoader[rootUpper](newSection(func(c *rootUpper) *upper { return &c.S }, func() upper { return upper{} }, nil))
		},
		"unsupported type": func() {
			newLoader[rootUnsupported](newSection(func(c *rootUnsupported) *unsupported { return &c.S }, func() unsupported { return unsupported{} }, nil))
		},
		"environment collision": func() {
			newLoader[rootCollide](newSection(func(c *rootCollide) *collide { return &c.S }, func() collide { return collide{} }, nil))
		},
		"secret int": func() {
			newLoader[rootSecretInt](newSection(func(c *rootSecretInt) *secretInt { return &c.S }, func() secretInt { return secretInt{} }, nil))
		},
		"unknown secret path": func() {
			newLoader[rootTwo](newSection(func(c *rootTwo) *dbConfig { return &c.A }, def, nil, "passwd"),
				newSection(func(c *rootTwo) *dbConfig { return &c.B }, def, nil))
		},
		"field without section": func() {
			newLoader[rootTwo](newSection(func(c *rootTwo) *dbConfig { return &c.A }, def, nil))
		},
		"section twice": func() {
			newLoader[rootTwo](newSection(func(c *rootTwo) *dbConfig { return &c.A }, def, nil),
				newSection(func(c *rootTwo) *dbConfig { return &c.A }, def, nil))
		},
		"not a field": func() {
			var other dbConfig
			newSection(func(*rootTwo) *dbConfig { return &other }, def, nil)
		},
	}
	for name, fn := range tests {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			fn()
		})
	}
}

func TestSuggest(t *testing.T) {
	candidates := []string{"listeners", "workers", "queue_length", "template_timeout", "sampling"}
	for in, want := range map[string]string{
		"listner":         "listeners",
		"workres":         "workers",
		"WORKERS":         "workers",
		"queue_lenght":    "queue_length",
		"templte_timeout": "template_timeout",
		"addr":            "",
		"x":               "",
	} {
		if got := suggest(in, candidates); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
	if d := editDistance("ab", "ba"); d != 1 {
		t.Errorf("transposition costs %d", d)
	}
	if d := editDistance("", "abc"); d != 3 {
		t.Errorf("insertions cost %d", d)
	}
}

func TestLogConfig(t *testing.T) {
	if err := DefaultLogConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	err := LogConfig{Level: "trace", Format: "xml"}.Validate()
	if err == nil || !strings.Contains(err.Error(), `level: "trace"`) || !strings.Contains(err.Error(), `format: "xml"`) {
		t.Errorf("error %v", err)
	}
	var sb strings.Builder
	LogConfig{Level: "warn", Format: "json"}.NewLogger(&sb).Info("hidden")
	LogConfig{Level: "warn", Format: "json"}.NewLogger(&sb).Warn("shown")
	if s := sb.String(); strings.Contains(s, "hidden") || !strings.Contains(s, `"msg":"shown"`) {
		t.Errorf("log output %q", s)
	}
}
