package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/collector"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flowhouse.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// normalize makes empty slices and maps nil, so that "sampling: []" and an
// unset list compare equal.
func normalize(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				normalize(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		for i := range v.Len() {
			normalize(v.Index(i))
		}
	case reflect.Map:
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
		}
	}
}

func equal(a, b *Config) bool {
	ca, cb := *a, *b
	normalize(reflect.ValueOf(&ca).Elem())
	normalize(reflect.ValueOf(&cb).Elem())
	return reflect.DeepEqual(ca, cb)
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name string
		file string   // YAML; "" for no file
		env  []string // NAME=value
		// want changes the defaults into the expected config.
		want func(c *Config)
		// wantErrs are lines of the error, in order; {file} is the file's path.
		wantErrs []string
	}{
		{
			name: "defaults without file or environment",
			want: func(*Config) {},
		},
		{
			name: "empty file",
			file: "# nothing here\n",
			want: func(*Config) {},
		},
		{
			name: "null section keeps defaults",
			file: "collector:\nclickhouse:\n  addr:\n",
			want: func(*Config) {},
		},
		{
			name: "file overrides defaults",
			file: `
log:
  level: debug
collector:
  listeners: [":9995", "127.0.0.1:9996"]
  workers: 8
  template_timeout: 10m
  sampling:
    - prefix: 192.0.2.0/24
      rate: 100
      override: true
    - prefix: 2001:db8::/32
      rate: 0x10
clickhouse:
  addr: db.example:9000
  password: "s3cr3t"
  batch_interval: 250ms
  retry:
    max: 1m
http:
  listen: ":8081"
`,
			want: func(c *Config) {
				c.Log.Level = "debug"
				c.Collector.Listeners = []string{":9995", "127.0.0.1:9996"}
				c.Collector.Workers = 8
				c.Collector.TemplateTimeout = 10 * time.Minute
				c.Collector.Sampling = []collector.SamplingRule{
					{Prefix: "192.0.2.0/24", Rate: 100, Override: true},
					{Prefix: "2001:db8::/32", Rate: 16},
				}
				c.ClickHouse.Addr = "db.example:9000"
				c.ClickHouse.Password = "s3cr3t"
				c.ClickHouse.BatchInterval = 250 * time.Millisecond
				c.ClickHouse.Retry.Max = time.Minute
				c.HTTP.Listen = ":8081"
			},
		},
		{
			name: "environment overrides file",
			file: "collector:\n  workers: 8\n  listeners: [':1']\nclickhouse:\n  addr: file:9000\n",
			env: []string{
				"FLOWHOUSE_COLLECTOR_WORKERS=4",
				"FLOWHOUSE_COLLECTOR_LISTENERS=:2055, :4739",
				"FLOWHOUSE_CLICKHOUSE_ADDR=env:9000",
				"FLOWHOUSE_CLICKHOUSE_PASSWORD=from-env",
				"FLOWHOUSE_CLICKHOUSE_RETRY_MAX_ELAPSED=0",
				"FLOWHOUSE_CLICKHOUSE_BATCH_INTERVAL=2s",
				"FLOWHOUSE_LOG_FORMAT=json",
				"FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN=", // empty sets "": the query endpoint off
				"OTHER_VARIABLE=ignored",
				"flowhouse_collector_workers=ignored", // not the prefix
			},
			want: func(c *Config) {
				c.Collector.Workers = 4
				c.Collector.Listeners = []string{":2055", ":4739"}
				c.ClickHouse.Addr = "env:9000"
				c.ClickHouse.Password = "from-env"
				c.ClickHouse.Retry.MaxElapsed = 0
				c.ClickHouse.BatchInterval = 2 * time.Second
				c.ClickHouse.Embedded.HTTPListen = ""
				c.Log.Format = "json"
			},
		},
		{
			name:     "unknown nested key",
			file:     "collector:\n  workers: 2\n  listner: [':2055']\n",
			wantErrs: []string{`config {file}:3: unknown key "collector.listner" (did you mean "listeners"?)`},
		},
		{
			name: "memory budget from the environment",
			env:  []string{"FLOWHOUSE_MEMORY_LIMIT=1073741824"},
			want: func(c *Config) { c.Memory.Limit = 1 << 30 },
		},
		{
			name:     "memory budget below the minimum",
			file:     "memory:\n  limit: 1000\n",
			wantErrs: []string{`memory.limit: 1000 bytes is less than 64 MiB (67108864)`},
		},
		{
			name:     "memory budget too small for the collector's queues",
			file:     "memory:\n  limit: 67108864\ncollector:\n  queue_length: 65536\n",
			wantErrs: []string{"memory.limit: 67108864 bytes is too small for collector.queue_length 65536: the workers' queues take 268435456 bytes when full, and may take a quarter of the limit (16777216); raise memory.limit, or lower collector.queue_length or set it to 0 to size the queues from memory.limit"},
		},
		{
			name:     "unknown top-level key",
			file:     "colector:\n  workers: 2\n",
			wantErrs: []string{`config {file}:1: unknown key "colector" (did you mean "collector"?)`},
		},
		{
			name:     "unknown key without suggestion",
			file:     "clickhouse:\n  retry:\n    jitter: 0.5\n",
			wantErrs: []string{`config {file}:3: unknown key "clickhouse.retry.jitter"`},
		},
		{
			name:     "unknown key in a list element",
			file:     "collector:\n  sampling:\n    - prefix: 192.0.2.0/24\n      rate: 10\n    - prefx: 198.51.100.0/24\n      rate: 10\n",
			wantErrs: []string{`config {file}:5: unknown key "collector.sampling[1].prefx" (did you mean "prefix"?)`, `collector.sampling[1].prefix: ""`},
		},
		{
			name: "extra fields",
			file: "collector:\n  extra_fields:\n    - {column: post_nat_src_address, ie: 225, type: ip}\n    - {column: vendor_id, ie: 12, pen: 9, type: uint32}\n",
			want: func(c *Config) {
				c.Collector.ExtraFields = []collector.ExtraField{
					{Column: "post_nat_src_address", IE: 225, Type: "ip"},
					{Column: "vendor_id", IE: 12, PEN: 9, Type: "uint32"},
				}
			},
		},
		{
			name: "extra fields: unknown key, IE out of range",
			file: "collector:\n  extra_fields:\n    - {column: a, ie: 225, type: ip, enterprise: 9}\n    - {column: b, ie: 70000, type: uint8}\n",
			wantErrs: []string{
				`config {file}:3: unknown key "collector.extra_fields[0].enterprise"`,
				`config {file}:4: collector.extra_fields[1].ie: "70000" is out of range (0..65535)`,
			},
		},
		{
			name: "extra fields: wrong mappings",
			file: "collector:\n  extra_fields:\n    - {column: a, ie: 40000, pen: 9, type: ip}\n    - {column: Bytes, ie: 61, type: uint128}\n",
			wantErrs: []string{
				`collector.extra_fields[0].ie: 40000 is outside 1..32767 for an enterprise element`,
				`collector.extra_fields[1].column: "Bytes" is not a column name`,
				`collector.extra_fields[1].ie: pen 0 ie 61 is decoded already, into column direction`,
				`collector.extra_fields[1].type: "uint128" is not one of ip, uint8, uint16, uint32, uint64, mac, mpls_label`,
			},
		},
		{
			name:     "key in the wrong case",
			file:     "collector:\n  Workers: 2\n",
			wantErrs: []string{`config {file}:2: unknown key "collector.Workers" (did you mean "workers"?)`},
		},
		{
			name:     "duplicate key",
			file:     "collector:\n  workers: 2\n  workers: 3\n",
			wantErrs: []string{`config {file}:3: duplicate key "collector.workers" (first at line 2)`},
		},
		{
			name:     "unknown environment variable",
			env:      []string{"FLOWHOUSE_COLLECTOR_WORKRES=4"},
			wantErrs: []string{`environment: unknown variable FLOWHOUSE_COLLECTOR_WORKRES (did you mean FLOWHOUSE_COLLECTOR_WORKERS?)`},
		},
		{
			name:     "unknown section in the environment",
			env:      []string{"FLOWHOUSE_ENRICH_SNMP=1"},
			wantErrs: []string{`environment: unknown variable FLOWHOUSE_ENRICH_SNMP`},
		},
		{
			name:     "list of structs from the environment",
			env:      []string{"FLOWHOUSE_COLLECTOR_SAMPLING=192.0.2.0/24"},
			wantErrs: []string{`environment FLOWHOUSE_COLLECTOR_SAMPLING: collector.sampling: cannot be set from the environment; set it in the config file`},
		},
		{
			name:     "not an integer",
			file:     "collector:\n  workers: two\n",
			wantErrs: []string{`config {file}:2: collector.workers: "two" is not an integer`},
		},
		{
			name:     "float for an integer",
			file:     "collector:\n  workers: 2.5\n",
			wantErrs: []string{`config {file}:2: collector.workers: "2.5" is not an integer`},
		},
		{
			name:     "negative unsigned",
			file:     "collector:\n  sampling:\n    - {prefix: 192.0.2.0/24, rate: -1}\n",
			wantErrs: []string{`config {file}:3: collector.sampling[0].rate: "-1" is out of range (0..4294967295)`},
		},
		{
			name:     "not an integer in the environment",
			env:      []string{"FLOWHOUSE_CLICKHOUSE_BATCH_ROWS=lots"},
			wantErrs: []string{`environment FLOWHOUSE_CLICKHOUSE_BATCH_ROWS: clickhouse.batch_rows: "lots" is not an integer`},
		},
		{
			name:     "duration without unit",
			file:     "collector:\n  template_timeout: 30\n",
			wantErrs: []string{`config {file}:2: collector.template_timeout: "30" is not a duration: write it with a unit, like "30s" or "5m"`},
		},
		{
			name:     "bad duration",
			file:     "clickhouse:\n  batch_interval: soon\n",
			wantErrs: []string{`config {file}:2: clickhouse.batch_interval: "soon" is not a duration`},
		},
		{
			name:     "bad duration in the environment",
			env:      []string{"FLOWHOUSE_HTTP_READ_TIMEOUT=10"},
			wantErrs: []string{`environment FLOWHOUSE_HTTP_READ_TIMEOUT: http.read_timeout: "10" is not a duration`},
		},
		{
			name:     "not a boolean",
			file:     "collector:\n  sampling:\n    - {prefix: 192.0.2.0/24, rate: 1, override: maybe}\n",
			wantErrs: []string{`config {file}:3: collector.sampling[0].override: "maybe" is not a boolean (true or false)`},
		},
		{
			name:     "scalar for a list",
			file:     "collector:\n  listeners: \":2055\"\n",
			wantErrs: []string{`config {file}:2: collector.listeners: must be a list, not a single value`},
		},
		{
			name:     "list for a scalar",
			file:     "clickhouse:\n  addr: [a, b]\n",
			wantErrs: []string{`config {file}:2: clickhouse.addr: must be a single value, not a list`},
		},
		{
			name:     "scalar for a section",
			file:     "collector: yes\n",
			wantErrs: []string{`config {file}:1: collector: must be a mapping of keys, not a single value`},
		},
		{
			name:     "top level not a mapping",
			file:     "- a\n- b\n",
			wantErrs: []string{`config {file}:1: the configuration: must be a mapping of keys, not a list`},
		},
		{
			name:     "YAML syntax error",
			file:     "collector:\n  workers: 2\n listeners: x\n",
			wantErrs: []string{`config {file}:2: invalid YAML: did not find expected key`},
		},
		{
			name:     "invalid value from Validate",
			file:     "clickhouse:\n  batch_rows: 0\n",
			wantErrs: []string{`clickhouse.batch_rows: 0 must be at least 1`},
		},
		{
			name: "all problems at once",
			file: "collector:\n  workers: two\n  listner: []\nclickhouse:\n  batch_rows: 0\n  writers: 0\n",
			env:  []string{"FLOWHOUSE_HTTP_LISTN=:1", "FLOWHOUSE_LOG_LEVEL=loud"},
			wantErrs: []string{
				`config {file}:2: collector.workers: "two" is not an integer`,
				`config {file}:3: unknown key "collector.listner" (did you mean "listeners"?)`,
				`environment: unknown variable FLOWHOUSE_HTTP_LISTN (did you mean FLOWHOUSE_HTTP_LISTEN?)`,
				`log.level: "loud" is not debug, info, warn or error`,
				`clickhouse.batch_rows: 0 must be at least 1`,
				`clickhouse.writers: 0 is outside 1..64`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir()) // no ./flowhouse.yaml
			path := ""
			if tt.file != "" {
				path = writeFile(t, tt.file)
			}
			got, err := load(path, tt.env)
			if tt.wantErrs != nil {
				if err == nil {
					t.Fatalf("no error, want %q", tt.wantErrs)
				}
				var ce *Error
				if !errors.As(err, &ce) {
					t.Fatalf("error %T is not an *Error: %v", err, err)
				}
				lines := strings.Split(err.Error(), "\n")
				if len(lines) != len(tt.wantErrs) {
					t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(tt.wantErrs), err)
				}
				for i, want := range tt.wantErrs {
					want = strings.ReplaceAll(want, "{file}", path)
					if !strings.HasPrefix(lines[i], want) {
						t.Errorf("problem %d:\n got  %s\n want %s...", i, lines[i], want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := Default()
			tt.want(want)
			if !equal(got, want) {
				t.Errorf("got  %+v\nwant %+v", *got, *want)
			}
		})
	}
}

func TestLoadDefaultFile(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile(filepath.Join(dir, DefaultFile), []byte("collector:\n  workers: 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Collector.Workers != 7 {
		t.Errorf("./flowhouse.yaml not read: workers %d", c.Collector.Workers)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := load(path, nil)
	want := "config " + path + ": cannot read: no such file or directory"
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

func TestLoadUsesProcessEnvironment(t *testing.T) {
	t.Chdir(t.TempDir())
	// Only this test's variables: whatever the shell exported is set aside.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, EnvPrefix) {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	t.Setenv("FLOWHOUSE_COLLECTOR_WORKERS", "5")
	t.Setenv("FLOWHOUSE_CLICKHOUSE_SERVER", "/usr/bin/clickhouse") // test tooling, not configuration
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Collector.Workers != 5 {
		t.Errorf("workers %d, want 5 from the environment", c.Collector.Workers)
	}
}

// Secrets never appear in errors, whatever the source of the secret and of
// the error.
func TestSecretsNotInErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  []string
	}{
		{"validation error quoting the secret", "clickhouse:\n  password: hunter2\n  addr: hunter2\n", nil},
		{"secret from the environment", "clickhouse:\n  addr: hunter2\n", []string{"FLOWHOUSE_CLICKHOUSE_PASSWORD=hunter2"}},
		{"secret of the wrong shape", "clickhouse:\n  password: [hunter2]\n  addr: hunter2\n", nil},
		{"secret in a rejected file", "clickhouse:\n  password: hunter2\n  pasword: hunter2\n  batch_rows: hunter2\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(writeFile(t, tt.file), tt.env)
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("secret in error:\n%v", err)
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	for _, tt := range []struct{ password, want string }{{"hunter2", "***"}, {"", ""}} {
		c := Default()
		c.ClickHouse.Password = tt.password
		r := c.Redacted()
		if r.ClickHouse.Password != tt.want {
			t.Errorf("password %q redacted to %q, want %q", tt.password, r.ClickHouse.Password, tt.want)
		}
		if c.ClickHouse.Password != tt.password {
			t.Errorf("Redacted changed the original")
		}
		r.ClickHouse.Password = tt.password
		if !reflect.DeepEqual(r, c) {
			t.Errorf("Redacted changed more than the password")
		}
		out, err := c.YAML()
		if err != nil {
			t.Fatal(err)
		}
		if tt.password != "" && strings.Contains(string(out), tt.password) {
			t.Errorf("YAML shows the password:\n%s", out)
		}
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, tt := range []struct{ name, file string }{
		{"defaults", ""},
		{"everything changed", `
log: {level: warn, format: json}
collector:
  listeners: ["[::1]:2055", "0.0.0.0:4739"]
  workers: 3
  template_timeout: 1h30m
  sampling:
    - {prefix: 192.0.2.0/24, rate: 512, override: true}
clickhouse:
  addr: "db:9000"
  username: "yes"
  password: "p: w#d"
  database: "null"
  dial_timeout: "017s"
  retry: {initial: 1s, max: 2s, max_elapsed: 0s}
  retention: {flows: 0s}
http:
  listen: ":0"
  readiness_timeout: 1500ms
`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = writeFile(t, tt.file)
			}
			orig, err := load(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			out, err := orig.YAML()
			if err != nil {
				t.Fatal(err)
			}
			back, err := load(writeFile(t, string(out)), nil)
			if err != nil {
				t.Fatalf("output does not load back: %v\n%s", err, out)
			}
			if !equal(back, orig.Redacted()) {
				t.Errorf("round trip changed the config:\n got  %+v\n want %+v\n%s", *back, *orig.Redacted(), out)
			}
			again, _ := back.YAML()
			if string(again) != string(out) {
				t.Errorf("YAML not stable:\n%s\n---\n%s", out, again)
			}
		})
	}
}

func TestYAMLShape(t *testing.T) {
	c := Default()
	c.ClickHouse.Password = "hunter2"
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"log:\n  level: info\n",
		"  template_timeout: 30m\n",
		"  password: '***'\n",
		"  sampling: []\n",
		"    initial: 500ms\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("YAML lacks %q:\n%s", want, out)
		}
	}
	// Sections come in declaration order.
	order := []string{"\nlog:", "\ncollector:", "\nclickhouse:", "\nhttp:"}
	last := -1
	for _, s := range order {
		i := strings.Index("\n"+string(out), s)
		if i < last {
			t.Errorf("section %q out of order", s)
		}
		last = i
	}
}

func TestValidate(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	c.Collector.Workers = 0
	c.HTTP.Listen = "nowhere"
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	want := "collector.workers: 0 is outside 1..256\nhttp.listen: \"nowhere\" is not host:port"
	if err.Error() != want {
		t.Errorf("error\n%s\nwant\n%s", err, want)
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.Problems[0].Key != "collector.workers" {
		t.Errorf("problems %+v", ce)
	}
}

func TestEnvVars(t *testing.T) {
	vars := EnvVars()
	for name, key := range map[string]string{
		"FLOWHOUSE_CLICKHOUSE_ADDR":              "clickhouse.addr",
		"FLOWHOUSE_CLICKHOUSE_PASSWORD":          "clickhouse.password",
		"FLOWHOUSE_CLICKHOUSE_RETRY_MAX_ELAPSED": "clickhouse.retry.max_elapsed",
		"FLOWHOUSE_COLLECTOR_LISTENERS":          "collector.listeners",
		"FLOWHOUSE_COLLECTOR_WORKERS":            "collector.workers",
		"FLOWHOUSE_HTTP_LISTEN":                  "http.listen",
		"FLOWHOUSE_LOG_LEVEL":                    "log.level",
	} {
		if vars[name] != key {
			t.Errorf("%s sets %q, want %q", name, vars[name], key)
		}
	}
}

func TestPasswordIsSecret(t *testing.T) {
	n := sections.tree.lookup("clickhouse.password")
	if n == nil || !n.secret {
		t.Fatal("clickhouse.password is not secret")
	}
}
