package config

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// scalar is one value as written: its text and, from YAML, its resolved tag
// ("!!str", "!!int", "!!bool", "!!float"); the environment has no tag.
type scalar struct {
	text string
	tag  string
}

// convertScalar turns s into a value of n's Go type. On failure it returns
// what is wrong, to be written after the key ("\"two\" is not an integer");
// the message never contains a secret value.
func convertScalar(n *node, s scalar) (reflect.Value, string) {
	t := n.typ
	out := reflect.New(t).Elem()
	switch {
	case t == durationType:
		if (s.tag == "!!int" || s.tag == "!!float") && s.text != "0" {
			return out, fmt.Sprintf("%s is not a duration: write it with a unit, like \"30s\" or \"5m\"", describe(n, s.text))
		}
		d, err := time.ParseDuration(s.text)
		if err != nil {
			return out, fmt.Sprintf("%s is not a duration (like \"30s\", \"5m\" or \"1h30m\")", describe(n, s.text))
		}
		out.SetInt(int64(d))
		return out, ""
	case isText(t):
		p := reflect.New(t)
		if err := p.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s.text)); err != nil {
			if n.secret {
				return out, fmt.Sprintf("%s is not a valid %s", describe(n, s.text), t)
			}
			return out, fmt.Sprintf("%s is not a valid %s: %v", describe(n, s.text), t, err)
		}
		return p.Elem(), ""
	}

	switch t.Kind() {
	case reflect.String:
		out.SetString(s.text)
	case reflect.Bool:
		b, err := strconv.ParseBool(s.text)
		if err != nil || s.tag == "!!int" || s.tag == "!!float" {
			return out, fmt.Sprintf("%s is not a boolean (true or false)", describe(n, s.text))
		}
		out.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if s.tag == "!!float" {
			return out, fmt.Sprintf("%s is not an integer", describe(n, s.text))
		}
		i, err := parseInt(s.text, t.Bits())
		if err != nil {
			if isRangeErr(err) {
				hi := int64(^uint64(0) >> (65 - t.Bits()))
				lo := -hi - 1
				return out, fmt.Sprintf("%s is out of range (%d..%d)", describe(n, s.text), lo, hi)
			}
			return out, fmt.Sprintf("%s is not an integer", describe(n, s.text))
		}
		out.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if s.tag == "!!float" {
			return out, fmt.Sprintf("%s is not an integer", describe(n, s.text))
		}
		u, err := parseUint(s.text, t.Bits())
		if err != nil {
			if _, ierr := parseInt(s.text, 64); isRangeErr(err) || ierr == nil || isRangeErr(ierr) {
				hi := ^uint64(0) >> (64 - t.Bits())
				return out, fmt.Sprintf("%s is out of range (0..%d)", describe(n, s.text), hi)
			}
			return out, fmt.Sprintf("%s is not an integer", describe(n, s.text))
		}
		out.SetUint(u)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s.text, t.Bits())
		if err != nil {
			return out, fmt.Sprintf("%s is not a number", describe(n, s.text))
		}
		out.SetFloat(f)
	default:
		return out, fmt.Sprintf("cannot hold a value of type %s", t)
	}
	return out, ""
}

// parseInt reads decimal integers, and 0x, 0o and 0b forms. A leading zero
// alone does not mean octal (YAML 1.2 reads 017 as 17).
func parseInt(s string, bits int) (int64, error) {
	if hasBasePrefix(s) {
		return strconv.ParseInt(s, 0, bits)
	}
	return strconv.ParseInt(strings.TrimPrefix(s, "+"), 10, bits)
}

func parseUint(s string, bits int) (uint64, error) {
	if hasBasePrefix(s) {
		return strconv.ParseUint(s, 0, bits)
	}
	return strconv.ParseUint(strings.TrimPrefix(s, "+"), 10, bits)
}

func hasBasePrefix(s string) bool {
	s = strings.TrimLeft(s, "+-")
	if len(s) < 2 || s[0] != '0' {
		return false
	}
	switch s[1] {
	case 'x', 'X', 'o', 'O', 'b', 'B':
		return true
	}
	return false
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}
