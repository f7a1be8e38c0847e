package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// fileReader checks a YAML document against the schema and turns what is
// right in it into typed values. Everything wrong becomes a problem with
// its line; wrong values are left out, so that the rest still loads and
// validates and all problems are reported at once.
type fileReader struct {
	source string // "config PATH"
	ps     *problems
}

var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// read parses data and returns the nested map of the values it sets, keyed
// like the schema, with typed leaves.
func (r *fileReader) read(root *node, data []byte) map[string]any {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file
		}
		r.yamlError(err)
		return nil
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		line := 0
		if err == nil {
			line = more.Line
		}
		r.ps.add(r.source, line, "", "only one YAML document is allowed")
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil
	}
	return r.structMap(root, doc.Content[0], "")
}

func (r *fileReader) yamlError(err error) {
	msg := err.Error()
	if m := yamlLineErr.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		r.ps.add(r.source, line, "", "invalid YAML: %s", m[2])
		return
	}
	r.ps.add(r.source, 0, "", "invalid YAML: %s", msg)
}

func (r *fileReader) problem(y *yaml.Node, key, format string, args ...any) {
	r.ps.add(r.source, y.Line, key, format, args...)
}

// structMap reads a mapping for struct node n (the root, a section, or a
// struct inside a section) into a nested map, so that keys it does not set
// keep their defaults.
func (r *fileReader) structMap(n *node, y *yaml.Node, path string) map[string]any {
	m := map[string]any{}
	ok := r.eachKey(n, y, path, func(f *field, v *yaml.Node, key string) {
		if f.node.kind == kindStruct {
			if sub := r.structMap(f.node, v, key); sub != nil {
				m[f.key] = sub
			}
			return
		}
		if val, ok := r.value(f.node, v, key); ok {
			m[f.key] = val.Interface()
		}
	})
	if !ok {
		return nil
	}
	return m
}

// eachKey checks that y is a mapping of n's keys and calls fn for each
// known key whose value is not null (null keeps the default).
func (r *fileReader) eachKey(n *node, y *yaml.Node, path string, fn func(f *field, v *yaml.Node, key string)) bool {
	y = resolve(y)
	if y.Kind != yaml.MappingNode {
		what := "the configuration"
		if path != "" {
			what = path
		}
		r.problem(y, path, "%s: must be a mapping of keys, not %s", what, kindName(y))
		return false
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(y.Content); i += 2 {
		k, v := y.Content[i], resolve(y.Content[i+1])
		full := joinKey(path, k.Value)
		if k.Tag == "!!merge" {
			r.problem(k, full, "%s: YAML merge keys (<<) are not supported", orRoot(path))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			r.problem(k, full, "duplicate key %q (first at line %d)", full, first)
			continue
		}
		seen[k.Value] = k.Line
		f, ok := n.byKey[k.Value]
		if !ok {
			r.problem(k, full, "unknown key %q%s", full, didYouMean(k.Value, n.keys(), true))
			continue
		}
		if isNull(v) {
			continue
		}
		fn(f, v, full)
	}
	return true
}

// value reads y as a value of node n (anything but a struct inside a
// section) and returns it typed.
func (r *fileReader) value(n *node, y *yaml.Node, path string) (reflect.Value, bool) {
	y = resolve(y)
	if n.secret {
		r.secretsIn(y) // whatever its shape, no message may show it
	}
	switch n.kind {
	case kindScalar:
		if y.Kind != yaml.ScalarNode {
			r.problem(y, path, "%s: must be a single value, not %s", path, kindName(y))
			return reflect.Value{}, false
		}
		v, msg := convertScalar(n, scalar{text: y.Value, tag: y.Tag})
		if msg != "" {
			r.problem(y, path, "%s: %s", path, msg)
			return reflect.Value{}, false
		}
		return v, true

	case kindList:
		if y.Kind != yaml.SequenceNode {
			r.problem(y, path, "%s: must be a list, not %s", path, kindName(y))
			return reflect.Value{}, false
		}
		out := reflect.MakeSlice(n.typ, 0, len(y.Content))
		good := true
		for i, e := range y.Content {
			ep := fmt.Sprintf("%s[%d]", path, i)
			if isNull(resolve(e)) {
				r.problem(e, ep, "%s: empty list element", ep)
				good = false
				continue
			}
			v, ok := r.value(n.elem, e, ep)
			if !ok {
				good = false
				continue
			}
			out = reflect.Append(out, v)
		}
		return out, good

	case kindMap:
		if y.Kind != yaml.MappingNode {
			r.problem(y, path, "%s: must be a mapping, not %s", path, kindName(y))
			return reflect.Value{}, false
		}
		out := reflect.MakeMapWithSize(n.typ, len(y.Content)/2)
		good := true
		seen := map[string]int{}
		for i := 0; i+1 < len(y.Content); i += 2 {
			k, e := y.Content[i], y.Content[i+1]
			full := path + "." + k.Value
			if first, dup := seen[k.Value]; dup {
				r.problem(k, full, "duplicate key %q (first at line %d)", full, first)
				good = false
				continue
			}
			seen[k.Value] = k.Line
			if isNull(resolve(e)) {
				r.problem(e, full, "%s: empty value", full)
				good = false
				continue
			}
			v, ok := r.value(n.elem, e, full)
			if !ok {
				good = false
				continue
			}
			out.SetMapIndex(reflect.ValueOf(k.Value).Convert(n.typ.Key()), v)
		}
		return out, good

	default: // kindStruct inside a list or map: no defaults, zero values
		out := reflect.New(n.typ).Elem()
		good := true
		if !r.eachKey(n, y, path, func(f *field, v *yaml.Node, key string) {
			if val, ok := r.value(f.node, v, key); ok {
				out.Field(f.index).Set(val)
			} else {
				good = false
			}
		}) {
			return out, false
		}
		return out, good
	}
}

// secretsIn remembers every scalar value below y (not mapping keys) as
// secret.
func (r *fileReader) secretsIn(y *yaml.Node) {
	y = resolve(y)
	switch y.Kind {
	case yaml.ScalarNode:
		r.ps.addSecret(y.Value)
	case yaml.MappingNode:
		for i := 1; i < len(y.Content); i += 2 {
			r.secretsIn(y.Content[i])
		}
	default:
		for _, c := range y.Content {
			r.secretsIn(c)
		}
	}
}

func (n *node) keys() []string {
	out := make([]string, len(n.fields))
	for i, f := range n.fields {
		out[i] = f.key
	}
	sort.Strings(out)
	return out
}

func resolve(y *yaml.Node) *yaml.Node {
	for y.Kind == yaml.AliasNode && y.Alias != nil {
		y = y.Alias
	}
	return y
}

func isNull(y *yaml.Node) bool {
	return y.Kind == yaml.ScalarNode && y.Tag == "!!null"
}

func kindName(y *yaml.Node) string {
	switch y.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	default:
		return "empty"
	}
}

func orRoot(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}
