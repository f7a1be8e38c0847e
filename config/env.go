package config

import (
	"reflect"
	"slices"
	"sort"
	"strings"
)

// EnvPrefix starts every environment variable of the configuration:
// FLOWHOUSE_<SECTION>_<KEY>, e.g. FLOWHOUSE_CLICKHOUSE_ADDR.
const EnvPrefix = "FLOWHOUSE_"

// NotConfigEnv are variables with EnvPrefix that are not configuration and
// that Load ignores instead of calling them unknown. Keep it short: every
// name here is one that a typo can no longer be caught on.
var NotConfigEnv = []string{
	"FLOWHOUSE_CLICKHOUSE_SERVER", // internal/chtest: the ClickHouse server binary of tests
	"FLOWHOUSE_SECRET_KEY",        // enrich.secrets.key_env's default: the key of enc: values
	"FLOWHOUSE_SKIP_EMBEDDED",     // store tests: skip the embedded engine's tests
}

// envValue is one configuration value read from the environment.
type envValue struct {
	key   string // key path, e.g. "collector.workers"
	value any    // typed like the field
}

// readEnv checks every FLOWHOUSE_ variable of environ ("NAME=value"
// entries, as os.Environ returns them) against the schema and returns the
// values of the known ones. Unknown names are problems, like unknown keys in
// the file, except keyEnv, the variable configured to hold the secret key.
// An empty value counts as unset.
func (l *loader) readEnv(environ []string, keyEnv string, ps *problems) []envValue {
	vars := map[string]string{}
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, EnvPrefix) && !slices.Contains(NotConfigEnv, name) {
			vars[name] = value
		}
	}
	names := make([]string, 0, len(vars))
	for name := range vars {
		names = append(names, name)
	}
	sort.Strings(names)

	var out []envValue
	for _, name := range names {
		value := vars[name]
		n, ok := l.env[name]
		if !ok {
			if name != keyEnv {
				ps.add("environment", 0, "", "unknown variable %s%s", name, didYouMean(name, l.envNames, false))
			}
			continue
		}
		if n.secret {
			ps.addSecret(value)
			if n.kind == kindList {
				for _, e := range strings.Split(value, ",") {
					ps.addSecret(strings.TrimSpace(e))
				}
			}
		}
		if value == "" {
			continue
		}
		source := "environment " + name
		switch n.kind {
		case kindScalar:
			v, msg := convertScalar(n, scalar{text: value})
			if msg != "" {
				ps.add(source, 0, n.path, "%s: %s", n.path, msg)
				continue
			}
			out = append(out, envValue{key: n.path, value: v.Interface()})
		case kindList:
			if n.elem.kind != kindScalar {
				ps.add(source, 0, n.path, "%s: cannot be set from the environment; set it in the config file", n.path)
				continue
			}
			parts := strings.Split(value, ",")
			list := reflect.MakeSlice(n.typ, 0, len(parts))
			good := true
			for i, p := range parts {
				v, msg := convertScalar(n.elem, scalar{text: strings.TrimSpace(p)})
				if msg != "" {
					ps.add(source, 0, n.path, "%s[%d]: %s", n.path, i, msg)
					good = false
					continue
				}
				list = reflect.Append(list, v)
			}
			if good {
				out = append(out, envValue{key: n.path, value: list.Interface()})
			}
		default:
			ps.add(source, 0, n.path, "%s: cannot be set from the environment; set it in the config file", n.path)
		}
	}
	return out
}
