package config

import (
	"bytes"
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// redactedValue replaces a secret that is set.
const redactedValue = "***"

// redact returns a copy of v (of n's type) with every secret that is set
// replaced by "***", and every secret read from its _file left empty.
// Lists and maps holding secrets are copied, so that v itself is never
// changed.
func redact(v reflect.Value, n *node) reflect.Value {
	if !n.hasSecret() {
		return v
	}
	switch n.kind {
	case kindScalar:
		out := reflect.New(n.typ).Elem()
		if v.String() != "" {
			out.SetString(redactedValue)
		}
		return out
	case kindStruct:
		out := reflect.New(n.typ).Elem()
		out.Set(v)
		for _, f := range n.fields {
			r := redact(v.Field(f.index), f.node)
			if f.file != nil && v.Field(f.file.index).String() != "" {
				// The value was read from the file: printing it as set
				// would make the output set both, which does not load.
				r = reflect.Zero(r.Type())
			}
			out.Field(f.index).Set(r)
		}
		return out
	case kindList:
		if v.IsNil() {
			return v
		}
		out := reflect.MakeSlice(n.typ, v.Len(), v.Len())
		for i := range v.Len() {
			out.Index(i).Set(redact(v.Index(i), n.elem))
		}
		return out
	default: // kindMap
		if v.IsNil() {
			return v
		}
		out := reflect.MakeMapWithSize(n.typ, v.Len())
		iter := v.MapRange()
		for iter.Next() {
			out.SetMapIndex(iter.Key(), redact(iter.Value(), n.elem))
		}
		return out
	}
}

func (n *node) hasSecret() bool {
	if n.secret {
		return true
	}
	if n.elem != nil && n.elem.hasSecret() {
		return true
	}
	for _, f := range n.fields {
		if f.node.hasSecret() {
			return true
		}
	}
	return false
}

// marshalYAML writes v (of the root type) as the YAML that Load reads back.
func (l *loader) marshalYAML(v reflect.Value) ([]byte, error) {
	root, err := toNode(v, l.tree)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// toNode turns a value into YAML in the form the loader reads: keys in
// declaration order, durations as Go duration strings, text types as text.
func toNode(v reflect.Value, n *node) (*yaml.Node, error) {
	switch n.kind {
	case kindStruct:
		out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for _, f := range n.fields {
			val, err := toNode(v.Field(f.index), f.node)
			if err != nil {
				return nil, err
			}
			out.Content = append(out.Content, strNode(f.key), val)
		}
		return out, nil
	case kindList:
		out := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		if v.Len() == 0 {
			out.Style = yaml.FlowStyle // []
		}
		for i := range v.Len() {
			e, err := toNode(v.Index(i), n.elem)
			if err != nil {
				return nil, err
			}
			out.Content = append(out.Content, e)
		}
		return out, nil
	case kindMap:
		out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		if v.Len() == 0 {
			out.Style = yaml.FlowStyle // {}
		}
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			e, err := toNode(v.MapIndex(k), n.elem)
			if err != nil {
				return nil, err
			}
			out.Content = append(out.Content, strNode(k.String()), e)
		}
		return out, nil
	}

	switch {
	case n.typ == durationType:
		return strNode(formatDuration(time.Duration(v.Int()))), nil
	case isText(n.typ):
		var m encoding.TextMarshaler
		if tm, ok := v.Interface().(encoding.TextMarshaler); ok {
			m = tm
		} else {
			p := reflect.New(n.typ)
			p.Elem().Set(v)
			m = p.Interface().(encoding.TextMarshaler)
		}
		text, err := m.MarshalText()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.path, err)
		}
		return strNode(string(text)), nil
	case n.typ.Kind() == reflect.String:
		return strNode(v.String()), nil
	}
	out := &yaml.Node{}
	if err := out.Encode(v.Interface()); err != nil {
		return nil, fmt.Errorf("%s: %w", n.path, err)
	}
	return out, nil
}

func strNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

// formatDuration writes 30m rather than 30m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
