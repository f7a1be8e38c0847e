package config

import (
	"fmt"
	"reflect"
	"strings"
)

// section is one top-level key of the configuration (log, collector, ...):
// where its value lives in the root struct, its defaults and its validation.
type section struct {
	key      string
	index    int // field index in the root struct
	typ      reflect.Type
	defaults func() any
	validate func(any) error // nil: nothing to validate
	secrets  []string        // key paths relative to the section
}

// newSection declares a section of root type C. field returns the section's
// field in the root; its mapstructure tag is the section key. def returns the
// defaults; validate (may be nil) checks a loaded value and names keys
// relative to the section. secrets are key paths relative to the section
// (e.g. "password", "tls.key") whose values are redacted, in addition to the
// fields tagged `secret:"true"`.
func newSection[C, T any](field func(*C) *T, def func() T, validate func(T) error, secrets ...string) section {
	root := reflect.TypeFor[C]()
	if root.Kind() != reflect.Struct {
		panic("config: the root of a configuration must be a struct")
	}
	var zero C
	want := reflect.ValueOf(field(&zero)).Pointer()
	rv := reflect.ValueOf(&zero).Elem()
	for i := range root.NumField() {
		sf := root.Field(i)
		if sf.Type != reflect.TypeFor[T]() || rv.Field(i).Addr().Pointer() != want {
			continue
		}
		key, _, _ := strings.Cut(sf.Tag.Get("mapstructure"), ",")
		if key == "" || key != strings.ToLower(key) || strings.ContainsAny(key, ".[]* ") {
			panic(fmt.Sprintf("config: section field %s needs a lower-case mapstructure tag without dots or spaces", sf.Name))
		}
		s := section{
			key:      key,
			index:    i,
			typ:      sf.Type,
			defaults: func() any { return def() },
			secrets:  secrets,
		}
		if validate != nil {
			s.validate = func(v any) error { return validate(v.(T)) }
		}
		return s
	}
	panic(fmt.Sprintf("config: the field function of a %s section does not return a field of %s", reflect.TypeFor[T](), root))
}
