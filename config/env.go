package config

import (
	"fmt"
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
// An empty value sets the key to empty (see emptyValue).
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
		v, msgs := envConvert(n, value)
		for _, msg := range msgs {
			ps.add("environment "+name, 0, n.path, "%s%s", n.path, msg)
		}
		if msgs == nil {
			out = append(out, envValue{key: n.path, value: v.Interface()})
		}
	}
	return out
}

// notFromEnv is the message of keys the environment cannot set.
const notFromEnv = ": cannot be set from the environment; set it in the config file"

// envConvert turns a variable's value into n's type. On failure it returns
// what is wrong, each to be written after the key (": ..." or "[i]: ...").
func envConvert(n *node, value string) (reflect.Value, []string) {
	if value == "" {
		v, msg := emptyValue(n)
		if msg != "" {
			return v, []string{msg}
		}
		return v, nil
	}
	switch n.kind {
	case kindScalar:
		v, msg := convertScalar(n, scalar{text: value})
		if msg != "" {
			return v, []string{": " + msg}
		}
		return v, nil
	case kindList:
		if n.elem.kind != kindScalar {
			return reflect.Value{}, []string{notFromEnv}
		}
		parts := strings.Split(value, ",")
		list := reflect.MakeSlice(n.typ, 0, len(parts))
		var msgs []string
		for i, p := range parts {
			v, msg := convertScalar(n.elem, scalar{text: strings.TrimSpace(p)})
			if msg != "" {
				msgs = append(msgs, fmt.Sprintf("[%d]: %s", i, msg))
				continue
			}
			list = reflect.Append(list, v)
		}
		return list, msgs
	default:
		return reflect.Value{}, []string{notFromEnv}
	}
}

// emptyValue is what a variable set to "" sets: an empty string, an empty
// list, or a text type's empty form when it has one
// (FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN= turns the query endpoint
// off). Numbers, booleans and durations have no empty form, and taking the
// default instead would hide a variable that was meant to be filled in:
// they are an error.
func emptyValue(n *node) (reflect.Value, string) {
	switch {
	case n.kind == kindList && n.elem.kind == kindScalar:
		return reflect.MakeSlice(n.typ, 0, 0), ""
	case n.kind != kindScalar:
		return reflect.Value{}, notFromEnv
	case n.typ.Kind() == reflect.String && !isText(n.typ):
		return reflect.Zero(n.typ), ""
	case isText(n.typ) && n.typ != durationType:
		if v, msg := convertScalar(n, scalar{text: ""}); msg == "" {
			return v, ""
		}
	}
	return reflect.Value{}, fmt.Sprintf(": the variable is empty, which is not %s; set a value, or unset the variable to keep the default", wants(n))
}

// wants names what a scalar of n's type is written as.
func wants(n *node) string {
	switch {
	case n.typ == durationType:
		return `a duration (like "30s")`
	case isText(n.typ):
		return "a valid " + n.typ.String()
	}
	switch n.typ.Kind() {
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.Float32, reflect.Float64:
		return "a number"
	default:
		return "an integer"
	}
}
