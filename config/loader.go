package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"

	"github.com/spf13/viper"

	"github.com/flowhouse/flowhouse/secret"
)

// loader loads a configuration of one root struct type made of sections.
// It is generic over the root so that tests can use their own sections.
type loader struct {
	root     reflect.Type
	tree     *node
	sections []section
	env      map[string]*node // FLOWHOUSE_... -> the value it sets
	envNames []string
}

// newLoader checks that the sections cover every field of C and builds the
// schema. It panics on a mistake in the declarations.
func newLoader[C any](sections ...section) *loader {
	l := &loader{root: reflect.TypeFor[C](), sections: sections, env: map[string]*node{}}
	l.tree = buildNode(l.root, "")
	covered := map[int]bool{}
	for _, s := range sections {
		if covered[s.index] {
			panic(fmt.Sprintf("config: section %q declared twice", s.key))
		}
		covered[s.index] = true
		for _, p := range s.secrets {
			n := l.tree.byKey[s.key].node.lookup(p)
			if n == nil {
				panic(fmt.Sprintf("config: secret %q: no such key in section %q", p, s.key))
			}
			markSecret(n)
		}
	}
	for _, f := range l.tree.fields {
		if !covered[f.index] {
			panic(fmt.Sprintf("config: field for key %q of %s has no section", f.key, l.root))
		}
	}
	l.tree.pairFiles()
	if n := l.tree.lookup(secret.ConfigPath); n != nil && n.typ != reflect.TypeFor[secret.Config]() {
		panic(fmt.Sprintf("config: %s must be a secret.Config, not %s", secret.ConfigPath, n.typ))
	}
	l.tree.leaves(func(n *node) {
		name := envName(n.path)
		if other, dup := l.env[name]; dup {
			panic(fmt.Sprintf("config: keys %q and %q both map to %s", other.path, n.path, name))
		}
		if slices.Contains(NotConfigEnv, name) {
			panic(fmt.Sprintf("config: key %q maps to %s, which NotConfigEnv reserves", n.path, name))
		}
		n.env = name
		l.env[name] = n
		l.envNames = append(l.envNames, name)
	})
	sort.Strings(l.envNames)
	return l
}

// defaults returns a root value (addressable) holding every section's defaults.
func (l *loader) defaults() reflect.Value {
	v := reflect.New(l.root).Elem()
	for _, s := range l.sections {
		v.Field(s.index).Set(reflect.ValueOf(s.defaults()))
	}
	return v
}

// load reads defaults, then the file at path, then environ, then opens the
// secrets, then validates. The returned value is of the root type.
func (l *loader) load(path string, environ []string) (reflect.Value, error) {
	return l.loadOpen(path, environ, true)
}

// loadOpen is load, leaving secrets as written when open is false.
func (l *loader) loadOpen(path string, environ []string, open bool) (reflect.Value, error) {
	ps := &problems{}
	vp := viper.New()
	l.setDefaults(vp, l.tree, l.defaults())

	if path == "" {
		if _, err := os.Stat(DefaultFile); err == nil {
			path = DefaultFile
		} else if !errors.Is(err, fs.ErrNotExist) {
			ps.add("config "+DefaultFile, 0, "", "%v", err)
		}
	}
	if path != "" {
		source := "config " + path
		data, err := os.ReadFile(path)
		if err != nil {
			ps.add(source, 0, "", "cannot read: %v", unwrapPathError(err))
		} else if m := (&fileReader{source: source, ps: ps}).read(l.tree, data); m != nil {
			if err := vp.MergeConfigMap(m); err != nil {
				ps.add(source, 0, "", "%v", err)
			}
		}
	}

	for _, ev := range l.readEnv(environ, l.keyEnv(vp, environ), ps) {
		vp.Set(ev.key, ev.value)
	}

	out := reflect.New(l.root)
	// Values are already typed and checked; decoding only merges the layers.
	if err := vp.UnmarshalExact(out.Interface()); err != nil {
		ps.add("", 0, "", "internal error merging the configuration: %v", err)
	}
	l.collectSecrets(out.Elem(), l.tree, ps)
	if open {
		// Before validation, so that it sees the values that will be used.
		l.openSecrets(out.Elem(), environ, ps)
	}
	// Validate even after other problems: wrong values were left at their
	// defaults, and reporting everything at once saves round trips.
	l.validate(out.Elem(), ps)
	if err := ps.err(); err != nil {
		return reflect.Value{}, err
	}
	return out.Elem(), nil
}

// unwrapPathError drops the repeated path from "open PATH: reason".
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// setDefaults gives viper the default of every leaf, so that the file and
// the environment override them key by key.
func (l *loader) setDefaults(vp *viper.Viper, n *node, v reflect.Value) {
	if n.kind == kindStruct {
		for _, f := range n.fields {
			l.setDefaults(vp, f.node, v.Field(f.index))
		}
		return
	}
	if (v.Kind() == reflect.Slice || v.Kind() == reflect.Map) && v.IsNil() {
		return // the zero value is what an unset key decodes to anyway
	}
	vp.SetDefault(n.path, v.Interface())
}

// keyPrefix matches messages that start with a key ("batch_rows: ...",
// "sampling[0].rate: ...").
var keyPrefix = regexp.MustCompile(`^[a-z0-9_]+(\[[0-9]+\])*(\.[a-z0-9_]+(\[[0-9]+\])*)*: `)

// validate runs every section's validation; each message is prefixed with
// the section key.
func (l *loader) validate(root reflect.Value, ps *problems) {
	for _, s := range l.sections {
		if s.validate == nil {
			continue
		}
		for _, err := range splitErrors(s.validate(root.Field(s.index).Interface())) {
			msg := err.Error()
			if m := keyPrefix.FindString(msg); m != "" {
				ps.add("", 0, s.key+"."+m[:len(m)-2], "%s.%s", s.key, msg)
			} else {
				ps.add("", 0, s.key, "%s: %s", s.key, msg)
			}
		}
	}
}

// collectSecrets remembers every secret value of v so that no message
// shows it.
func (l *loader) collectSecrets(v reflect.Value, n *node, ps *problems) {
	switch {
	case n.secret && n.kind == kindScalar:
		ps.addSecret(v.String())
	case n.kind == kindStruct:
		for _, f := range n.fields {
			l.collectSecrets(v.Field(f.index), f.node, ps)
		}
	case n.kind == kindList:
		for i := range v.Len() {
			l.collectSecrets(v.Index(i), n.elem, ps)
		}
	case n.kind == kindMap:
		iter := v.MapRange()
		for iter.Next() {
			l.collectSecrets(iter.Value(), n.elem, ps)
		}
	}
}

// validateValue validates root (of the root type) without loading anything.
func (l *loader) validateValue(root reflect.Value) error {
	ps := &problems{}
	l.collectSecrets(root, l.tree, ps)
	l.validate(root, ps)
	return ps.err()
}
