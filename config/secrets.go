package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/spf13/viper"

	"github.com/flowhouse/flowhouse/secret"
)

// getenvOf looks variables up in environ ("NAME=value" entries), the last
// entry of a name winning as in a shell.
func getenvOf(environ []string) func(string) string {
	return func(name string) string {
		value := ""
		for _, kv := range environ {
			if n, v, ok := strings.Cut(kv, "="); ok && n == name {
				value = v
			}
		}
		return value
	}
}

// keyEnv is the variable the secret key is read from, as the file or the
// environment sets it, so that a name with EnvPrefix chosen for it is not
// called an unknown variable. "" when the schema has no secret key.
func (l *loader) keyEnv(vp *viper.Viper, environ []string) string {
	path := secret.ConfigPath + ".key_env"
	n := l.tree.lookup(path)
	if n == nil {
		return ""
	}
	name := vp.GetString(path)
	for _, kv := range environ {
		if k, v, _ := strings.Cut(kv, "="); k == n.env {
			name = v
		}
	}
	return name
}

// openSecrets replaces every secret of root (addressable) by its plain
// text, with the key that secret.ConfigPath locates. Each secret that does
// not open, and a key that does not load, is a problem naming its key.
func (l *loader) openSecrets(root reflect.Value, environ []string, ps *problems) {
	var cfg secret.Config
	if v, ok := valueAt(root, l.tree, secret.ConfigPath); ok {
		cfg = v.Interface().(secret.Config)
	}
	r := secret.NewResolver(cfg, getenvOf(environ))
	if err := r.KeyErr(); err != nil {
		addSecretErr(ps, err)
	}
	openValue(root, l.tree, "", r, ps)
}

// valueAt is the value at a dotted path of structs below v.
func valueAt(v reflect.Value, n *node, path string) (reflect.Value, bool) {
	for _, key := range strings.Split(path, ".") {
		if n.kind != kindStruct {
			return reflect.Value{}, false
		}
		f, ok := n.byKey[key]
		if !ok {
			return reflect.Value{}, false
		}
		v, n = v.Field(f.index), f.node
	}
	return v, true
}

// openValue resolves the secrets below v (addressable, of n's type) in
// place; path is v's key, with list indexes ("enrich.exporters[0]").
func openValue(v reflect.Value, n *node, path string, r *secret.Resolver, ps *problems) {
	if !n.hasSecret() {
		return
	}
	switch n.kind {
	case kindScalar:
		resolveInto(v, secret.Ref{Key: path, Value: v.String()}, r, ps)
	case kindStruct:
		for _, f := range n.fields {
			key := joinKey(path, f.key)
			if f.file != nil {
				resolveInto(v.Field(f.index), secret.Ref{
					Key: key, Value: v.Field(f.index).String(),
					FileKey: joinKey(path, f.file.key), File: v.Field(f.file.index).String(),
				}, r, ps)
				continue
			}
			openValue(v.Field(f.index), f.node, key, r, ps)
		}
	case kindList:
		for i := range v.Len() {
			openValue(v.Index(i), n.elem, fmt.Sprintf("%s[%d]", path, i), r, ps)
		}
	case kindMap:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			// Map elements are not addressable: resolve a copy, store it back.
			e := reflect.New(n.elem.typ).Elem()
			e.Set(v.MapIndex(k))
			openValue(e, n.elem, path+"."+k.String(), r, ps)
			v.SetMapIndex(k, e)
		}
	}
}

// resolveInto sets v to the plain text of ref, and keeps that text out of
// every message.
func resolveInto(v reflect.Value, ref secret.Ref, r *secret.Resolver, ps *problems) {
	plain, err := r.Resolve(ref)
	if err != nil {
		addSecretErr(ps, err)
		return
	}
	ps.addSecret(plain)
	v.SetString(plain)
}

func addSecretErr(ps *problems, err error) {
	key := ""
	var ke *secret.KeyError
	if errors.As(err, &ke) {
		key = ke.Key
	}
	ps.add("", 0, key, "%v", err)
}
