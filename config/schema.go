package config

import (
	"encoding"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// nodeKind says how a configuration value is written.
type nodeKind int

const (
	kindScalar nodeKind = iota // string, bool, number, duration, text (un)marshaler
	kindStruct                 // a mapping with a fixed set of keys
	kindList                   // a YAML sequence; comma-separated in the environment
	kindMap                    // a mapping with free string keys
)

// node describes one value of the configuration: its Go type, how it is
// written, and (for structs) which keys it accepts. The schema is built once
// from the Go types, so the types are the only place where keys are declared.
type node struct {
	path   string // "collector.sampling", "collector.sampling[].prefix"
	typ    reflect.Type
	kind   nodeKind
	fields []*field          // kindStruct, in declaration order
	byKey  map[string]*field // kindStruct
	elem   *node             // kindList, kindMap
	secret bool              // redacted in output, never shown in errors
	env    string            // environment variable that sets it; "" when none
}

type field struct {
	key   string
	index int
	node  *node
	// file is the field beside a secret string whose key is the secret's
	// plus "_file": the secret may be read from that path instead.
	file *field
}

// fileSuffix makes the key of the file a secret may be read from.
const fileSuffix = "_file"

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
)

// isText reports whether t is written as a string through its
// UnmarshalText/MarshalText methods (netip.Prefix, slog.Level, ...).
func isText(t reflect.Type) bool {
	return reflect.PointerTo(t).Implements(textUnmarshalerType) &&
		(t.Implements(textMarshalerType) || reflect.PointerTo(t).Implements(textMarshalerType))
}

// buildNode describes type t found at path. It panics on types the loader
// cannot read: that is a programming error found by any test of the package.
func buildNode(t reflect.Type, path string) *node {
	n := &node{path: path, typ: t}
	switch {
	case t == durationType, isText(t):
		n.kind = kindScalar
		return n
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		n.kind = kindScalar
	case reflect.Slice:
		n.kind = kindList
		n.elem = buildNode(t.Elem(), path+"[]")
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			panic(fmt.Sprintf("config: %s: map keys must be strings, not %s", path, t.Key()))
		}
		n.kind = kindMap
		n.elem = buildNode(t.Elem(), path+".*")
	case reflect.Struct:
		n.kind = kindStruct
		n.byKey = map[string]*field{}
		for i := range t.NumField() {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			key, _, _ := strings.Cut(sf.Tag.Get("mapstructure"), ",")
			if key == "-" {
				continue
			}
			if key == "" || key != strings.ToLower(key) || strings.ContainsAny(key, ".[]* ") {
				panic(fmt.Sprintf("config: %s.%s: needs a lower-case mapstructure tag (keys are case-insensitive in viper)", path, sf.Name))
			}
			if _, dup := n.byKey[key]; dup {
				panic(fmt.Sprintf("config: %s: key %q declared twice", path, key))
			}
			f := &field{key: key, index: i, node: buildNode(sf.Type, joinKey(path, key))}
			if sf.Tag.Get("secret") == "true" {
				markSecret(f.node)
			}
			n.fields = append(n.fields, f)
			n.byKey[key] = f
		}
	default:
		panic(fmt.Sprintf("config: %s: type %s is not supported in configuration", path, t))
	}
	return n
}

func joinKey(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// markSecret marks a string value, or the strings of a list or map, secret.
func markSecret(n *node) {
	switch {
	case n.kind == kindScalar && n.typ.Kind() == reflect.String && n.typ != durationType:
		n.secret = true
	case (n.kind == kindList || n.kind == kindMap) && n.elem.kind == kindScalar && n.elem.typ.Kind() == reflect.String:
		n.secret = true
		n.elem.secret = true
	default:
		panic(fmt.Sprintf("config: %s: only strings, lists of strings and maps of strings can be secret, not %s", n.path, n.typ))
	}
}

// pairFiles links every secret string of a struct below n to the string
// field beside it whose key ends in fileSuffix. A secret without one is
// allowed here (test schemas have some); TestEverySecretHasAFile holds
// the real configuration to it.
func (n *node) pairFiles() {
	switch n.kind {
	case kindStruct:
		for _, f := range n.fields {
			if f.node.secret && f.node.kind == kindScalar {
				if g, ok := n.byKey[f.key+fileSuffix]; ok {
					if g.node.kind != kindScalar || g.node.typ.Kind() != reflect.String || isText(g.node.typ) || g.node.secret {
						panic(fmt.Sprintf("config: %s: the file of a secret must be a plain string, not secret itself", g.node.path))
					}
					f.file = g
				}
			}
			f.node.pairFiles()
		}
	case kindList, kindMap:
		n.elem.pairFiles()
	}
}

// lookup finds the node at a dotted path below n, walking through the
// elements of lists and maps ("notifiers.password" is the password of every
// notifier).
func (n *node) lookup(path string) *node {
	cur := n
	for _, key := range strings.Split(path, ".") {
		for cur.kind == kindList || cur.kind == kindMap {
			cur = cur.elem
		}
		if cur.kind != kindStruct {
			return nil
		}
		f, ok := cur.byKey[key]
		if !ok {
			return nil
		}
		cur = f.node
	}
	return cur
}

// leaves calls fn for every value below n that the environment can address:
// everything but structs, which are walked into.
func (n *node) leaves(fn func(*node)) {
	if n.kind != kindStruct {
		fn(n)
		return
	}
	for _, f := range n.fields {
		f.node.leaves(fn)
	}
}

// envName is the environment variable of a key path:
// "clickhouse.batch_rows" -> "FLOWHOUSE_CLICKHOUSE_BATCH_ROWS".
func envName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}
