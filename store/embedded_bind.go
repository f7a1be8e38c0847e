package store

import (
	"database/sql/driver"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// bindArgs replaces each `?` placeholder of query with args[i] written as
// a SQL literal, the way clickhouse-go binds positional arguments for the
// server backend, so a query behaves the same on both engines:
//
//   - a `?` inside a string literal, a quoted identifier or a comment is
//     text, and `\?` is a literal `?`;
//   - strings and []byte become quoted strings with \ ' and NUL escaped;
//     numbers and bools (1/0) are written as is, floats as
//     cast(x, 'Float64'); time.Time is toDateTime(unix seconds[, zone]):
//     the instant, to the second, in the value's zone; nil is NULL;
//     a fmt.Stringer (netip.Addr, ...) is its quoted String(); slices and
//     arrays become [a, b, ...] and maps map(k, v, ...); a driver.Valuer
//     is bound as its Value().
//
// It is stricter than clickhouse-go in one way: the number of arguments
// must match the number of placeholders (clickhouse-go ignores extras).
func bindArgs(query string, args []any) (string, error) {
	var out strings.Builder
	arg := 0
	last := 0
	var (
		quote        byte // ', " or ` while inside one
		lineComment  bool
		blockComment int // ClickHouse nests /* */
	)
	for i := 0; i < len(query); i++ {
		ch := query[i]
		switch {
		case lineComment:
			if ch == '\n' {
				lineComment = false
			}
		case blockComment > 0:
			if ch == '/' && i+1 < len(query) && query[i+1] == '*' {
				blockComment++
				i++
			} else if ch == '*' && i+1 < len(query) && query[i+1] == '/' {
				blockComment--
				i++
			}
		case quote != 0:
			switch {
			case ch == '\\' && i+1 < len(query) && query[i+1] == '?' && quote == '\'':
				// "\?" in a string literal is a "?" (clickhouse-go compatible).
				out.WriteString(query[last:i])
				out.WriteByte('?')
				i++
				last = i + 1
			case ch == '\\':
				i++ // skip the escaped character
			case ch == quote:
				if i+1 < len(query) && query[i+1] == quote {
					i++ // doubled quote stays inside
				} else {
					quote = 0
				}
			}
		default:
			switch {
			case ch == '\\' && i+1 < len(query) && query[i+1] == '?':
				out.WriteString(query[last:i])
				out.WriteByte('?')
				i++
				last = i + 1
			case ch == '?':
				if arg >= len(args) {
					return "", fmt.Errorf("bind: query has more ? placeholders than the %d arguments given", len(args))
				}
				lit, err := sqlLiteral(args[arg], false)
				if err != nil {
					return "", fmt.Errorf("bind: argument %d: %w", arg+1, err)
				}
				out.WriteString(query[last:i])
				out.WriteString(lit)
				last = i + 1
				arg++
			case ch == '\'' || ch == '"' || ch == '`':
				quote = ch
			case ch == '#':
				lineComment = true
			case ch == '-' && i+1 < len(query) && query[i+1] == '-':
				lineComment = true
				i++
			case ch == '/' && i+1 < len(query) && query[i+1] == '*':
				blockComment++
				i++
			}
		}
	}
	if arg != len(args) {
		return "", fmt.Errorf("bind: %d arguments given for %d ? placeholders", len(args), arg)
	}
	if last == 0 {
		return query, nil
	}
	out.WriteString(query[last:])
	return out.String(), nil
}

func quoteString(s string) string { return dbapi.QuoteString(s) }

// sqlLiteral writes v as a SQL literal. nested is true inside an array or
// map, where []byte is an array of UInt8 rather than a string (as in
// clickhouse-go).
func sqlLiteral(v any, nested bool) (string, error) {
	if valuer, ok := v.(driver.Valuer); ok {
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
			return "NULL", nil
		}
		value, err := valuer.Value()
		if err != nil {
			return "", err
		}
		v = value
	}
	switch v := v.(type) {
	case nil:
		return "NULL", nil
	case string:
		return quoteString(v), nil
	case []byte:
		if v == nil {
			return "NULL", nil
		}
		if !nested {
			return quoteString(string(v)), nil
		}
	case bool:
		if v {
			return "1", nil
		}
		return "0", nil
	case int:
		return strconv.FormatInt(int64(v), 10), nil
	case int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(v), nil
	case float32:
		return floatLiteral(float64(v), "Float32"), nil
	case float64:
		return floatLiteral(v, "Float64"), nil
	case time.Time:
		return timeLiteral(v)
	case *time.Time:
		if v == nil {
			return "NULL", nil
		}
		return timeLiteral(*v)
	case time.Duration:
		// clickhouse-go writes a Time literal, which servers before 25.x
		// lack: say which unit instead.
		return "", fmt.Errorf("time.Duration %s: bind it as a number of seconds or milliseconds", v)
	case fmt.Stringer:
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
			return "NULL", nil
		}
		return quoteString(v.String()), nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String:
		return quoteString(rv.String()), nil
	case reflect.Bool:
		return sqlLiteral(rv.Bool(), nested)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(rv.Uint(), 10), nil
	case reflect.Float32:
		return floatLiteral(rv.Float(), "Float32"), nil
	case reflect.Float64:
		return floatLiteral(rv.Float(), "Float64"), nil
	case reflect.Pointer:
		if rv.IsNil() {
			return "NULL", nil
		}
		return sqlLiteral(rv.Elem().Interface(), nested)
	case reflect.Slice, reflect.Array:
		items := make([]string, rv.Len())
		for i := range items {
			s, err := sqlLiteral(rv.Index(i).Interface(), true)
			if err != nil {
				return "", err
			}
			items[i] = s
		}
		return "[" + strings.Join(items, ", ") + "]", nil
	case reflect.Map:
		items := make([]string, 0, 2*rv.Len())
		iter := rv.MapRange()
		for iter.Next() {
			k, err := sqlLiteral(iter.Key().Interface(), true)
			if err != nil {
				return "", err
			}
			val, err := sqlLiteral(iter.Value().Interface(), true)
			if err != nil {
				return "", err
			}
			items = append(items, k, val)
		}
		return "map(" + strings.Join(items, ", ") + ")", nil
	}
	return "", fmt.Errorf("cannot bind %T", v)
}

// timeLiteral keeps the instant (to the second, as clickhouse-go does for
// positional arguments) and, unless it is Local, the value's zone, which
// decides how the engine prints it.
func timeLiteral(t time.Time) (string, error) {
	secs := strconv.FormatInt(t.Unix(), 10)
	zone := t.Location().String()
	if zone == "Local" || zone == "" {
		return "toDateTime(" + secs + ")", nil
	}
	if strings.ContainsAny(zone, `'\`) {
		return "", fmt.Errorf("time zone %q cannot be written in SQL", zone)
	}
	return "toDateTime(" + secs + ", '" + zone + "')", nil
}

// floatLiteral casts so that 1.0 stays a float (a bare 1 is an integer)
// and writes NaN and infinities the way ClickHouse reads them.
func floatLiteral(f float64, typ string) string {
	var s string
	switch {
	case math.IsNaN(f):
		s = "'nan'"
	case math.IsInf(f, 1):
		s = "'inf'"
	case math.IsInf(f, -1):
		s = "'-inf'"
	default:
		bits := 64
		if typ == "Float32" {
			bits = 32
		}
		s = strconv.FormatFloat(f, 'g', -1, bits)
	}
	return "cast(" + s + ", '" + typ + "')"
}
