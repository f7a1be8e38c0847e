package store

import (
	"database/sql"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// binaryRows reads a RowBinaryWithNamesAndTypes result: the column count,
// the names, the type names, then the rows, each value in the type's
// binary encoding. Values are decoded one row at a time by Next and put
// into Go values by Scan with the rules of clickhouse-go (the server
// backend): each type scans into its own Go type (UInt32 into *uint32,
// not *int; DateTime into *time.Time), plus the extras clickhouse-go has
// (UInt8 into *bool, DateTime into *int64, strings into *[]byte,
// addresses into *string, *net.IP and *netip.Addr, enums into *string),
// **T for any T, sql.Scanner, and *[]T for arrays.
type binaryRows struct {
	names []string
	types []*colType
	r     binReader
	row   []any
	err   error
}

func newBinaryRows(data []byte, loc *time.Location) (*binaryRows, error) {
	rows := &binaryRows{r: binReader{b: data}}
	if len(data) == 0 {
		return rows, nil // a statement without a result
	}
	n := rows.r.uvarint()
	if rows.r.err == nil && n > uint64(len(data)) {
		rows.r.err = fmt.Errorf("%d columns in a %d byte result", n, len(data))
	}
	for range n {
		rows.names = append(rows.names, rows.r.string())
	}
	for i := range n {
		name := rows.r.string()
		if rows.r.err != nil {
			break
		}
		t, err := parseType(name, loc)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", rows.names[i], err)
		}
		rows.types = append(rows.types, t)
	}
	if rows.r.err != nil {
		return nil, fmt.Errorf("read result header: %w", rows.r.err)
	}
	return rows, nil
}

func (r *binaryRows) Columns() []string { return r.names }

func (r *binaryRows) Next() bool {
	r.row = nil
	if r.err != nil || r.r.off >= len(r.r.b) {
		return false
	}
	row := make([]any, len(r.types))
	for i, t := range r.types {
		row[i] = t.decode(&r.r)
	}
	if r.r.err != nil {
		r.err = fmt.Errorf("read result row: %w", r.r.err)
		return false
	}
	r.row = row
	return true
}

func (r *binaryRows) Scan(dest ...any) error {
	if r.row == nil {
		return errors.New("Scan called without a successful Next")
	}
	if len(dest) != len(r.row) {
		return fmt.Errorf("expected %d destination arguments in Scan, not %d", len(r.row), len(dest))
	}
	for i, d := range dest {
		if err := assign(r.types[i], r.row[i], d); err != nil {
			return fmt.Errorf("scan column %s: %w", r.names[i], err)
		}
	}
	return nil
}

func (r *binaryRows) Err() error { return r.err }

func (r *binaryRows) Close() error {
	r.r.b, r.row = nil, nil
	return nil
}

type colKind uint8

const (
	kindUInt8 colKind = iota
	kindUInt16
	kindUInt32
	kindUInt64
	kindInt8
	kindInt16
	kindInt32
	kindInt64
	kindFloat32
	kindFloat64
	kindBool
	kindString
	kindFixedString
	kindDate
	kindDate32
	kindDateTime
	kindDateTime64
	kindEnum8
	kindEnum16
	kindIPv4
	kindIPv6
	kindUUID
	kindNullable
	kindArray
	kindNothing
)

// colType is a parsed ClickHouse type name.
type colType struct {
	name  string
	kind  colKind
	size  int            // FixedString length, DateTime64 precision
	loc   *time.Location // DateTime, DateTime64
	elem  *colType       // Nullable, Array
	enums map[int16]string
}

var simpleKinds = map[string]colKind{
	"UInt8": kindUInt8, "UInt16": kindUInt16, "UInt32": kindUInt32, "UInt64": kindUInt64,
	"Int8": kindInt8, "Int16": kindInt16, "Int32": kindInt32, "Int64": kindInt64,
	"Float32": kindFloat32, "Float64": kindFloat64, "Bool": kindBool, "String": kindString,
	"Date": kindDate, "Date32": kindDate32, "IPv4": kindIPv4, "IPv6": kindIPv6, "UUID": kindUUID,
	"Nothing": kindNothing,
}

// parseType understands the types flowhouse's queries return; anything
// else is an error that says how to get around it. loc is the zone of a
// DateTime without one (the engine's, as the server backend uses the
// server's).
func parseType(s string, loc *time.Location) (*colType, error) {
	s = strings.TrimSpace(s)
	name, args := s, ""
	if i := strings.IndexByte(s, '('); i > 0 && strings.HasSuffix(s, ")") {
		name, args = s[:i], s[i+1:len(s)-1]
	}
	t := &colType{name: s}
	if k, ok := simpleKinds[name]; ok && args == "" {
		t.kind = k
		return t, nil
	}
	parts := splitTypeArgs(args)
	var err error
	switch name {
	case "LowCardinality":
		// RowBinary writes LowCardinality(T) as T.
		return parseType(args, loc)
	case "SimpleAggregateFunction":
		if len(parts) == 2 {
			return parseType(parts[1], loc)
		}
	case "Nullable", "Array":
		t.kind = kindNullable
		if name == "Array" {
			t.kind = kindArray
		}
		t.elem, err = parseType(args, loc)
		return t, err
	case "FixedString":
		t.kind = kindFixedString
		t.size, err = strconv.Atoi(args)
		if err == nil && t.size > 0 {
			return t, nil
		}
	case "DateTime":
		t.kind, t.loc = kindDateTime, loc
		if len(parts) == 1 {
			t.loc, err = zone(parts[0])
		}
		return t, err
	case "DateTime64":
		t.kind, t.loc = kindDateTime64, loc
		if len(parts) >= 1 {
			t.size, err = strconv.Atoi(parts[0])
			if err != nil || t.size < 0 || t.size > 9 {
				break
			}
		}
		if len(parts) == 2 {
			t.loc, err = zone(parts[1])
		}
		return t, err
	case "Enum8", "Enum16":
		t.kind = kindEnum8
		if name == "Enum16" {
			t.kind = kindEnum16
		}
		t.enums = map[int16]string{}
		for _, p := range parts {
			eq := strings.LastIndexByte(p, '=')
			if eq < 0 {
				return nil, fmt.Errorf("type %s: enum element %q", s, p)
			}
			label, err1 := unquote(strings.TrimSpace(p[:eq]))
			v, err2 := strconv.ParseInt(strings.TrimSpace(p[eq+1:]), 10, 16)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("type %s: enum element %q", s, p)
			}
			t.enums[int16(v)] = label
		}
		return t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("type %s: %w", s, err)
	}
	return nil, fmt.Errorf("type %s is not decoded by the embedded engine's result reader: convert it in the query (toString, toFloat64, ...)", s)
}

func zone(quoted string) (*time.Location, error) {
	name, err := unquote(strings.TrimSpace(quoted))
	if err != nil {
		return nil, err
	}
	return time.LoadLocation(name)
}

// splitTypeArgs splits at the commas that are outside quotes and
// parentheses.
func splitTypeArgs(s string) []string {
	var parts []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quote != 0:
			if ch == '\\' {
				i++
			} else if ch == quote {
				quote = 0
			}
		case ch == '\'' || ch == '`' || ch == '"':
			quote = ch
		case ch == '(':
			depth++
		case ch == ')':
			depth--
		case ch == ',' && depth == 0:
			parts = append(parts, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	if strings.TrimSpace(s[start:]) != "" {
		parts = append(parts, strings.TrimSpace(s[start:]))
	}
	return parts
}

// unquote reads a single-quoted ClickHouse string literal.
func unquote(s string) (string, error) {
	if len(s) < 2 || s[0] != '\'' || s[len(s)-1] != '\'' {
		return "", fmt.Errorf("%q is not a quoted string", s)
	}
	s = s[1 : len(s)-1]
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch == '\\' && i+1 < len(s) {
			i++
			switch s[i] {
			case 'n':
				ch = '\n'
			case 't':
				ch = '\t'
			case 'r':
				ch = '\r'
			case '0':
				ch = 0
			default:
				ch = s[i]
			}
		} else if ch == '\'' && i+1 < len(s) && s[i+1] == '\'' {
			i++
		}
		b.WriteByte(ch)
	}
	return b.String(), nil
}

// binReader reads a result buffer; the first error sticks.
type binReader struct {
	b   []byte
	off int
	err error
}

func (r *binReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.err = fmt.Errorf("result ends after %d bytes, wanted %d more", len(r.b), n)
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *binReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.err = errors.New("bad length in result")
		return 0
	}
	r.off += n
	return v
}

func (r *binReader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("string of %d bytes in a %d byte result", n, len(r.b))
		return ""
	}
	return string(r.take(int(n)))
}

func (r *binReader) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *binReader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

func (r *binReader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (r *binReader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

// enumValue is an Enum8/Enum16 value: its label and number.
type enumValue struct {
	label string
	value int16
}

// decode reads one value as the Go type Scan starts from.
func (t *colType) decode(r *binReader) any {
	switch t.kind {
	case kindUInt8:
		return r.u8()
	case kindUInt16:
		return r.u16()
	case kindUInt32:
		return r.u32()
	case kindUInt64:
		return r.u64()
	case kindInt8:
		return int8(r.u8())
	case kindInt16:
		return int16(r.u16())
	case kindInt32:
		return int32(r.u32())
	case kindInt64:
		return int64(r.u64())
	case kindFloat32:
		return math.Float32frombits(r.u32())
	case kindFloat64:
		return math.Float64frombits(r.u64())
	case kindBool:
		return r.u8() != 0
	case kindString:
		return r.string()
	case kindFixedString:
		return string(r.take(t.size))
	case kindDate:
		return time.Unix(int64(r.u16())*86400, 0).UTC()
	case kindDate32:
		return time.Unix(int64(int32(r.u32()))*86400, 0).UTC()
	case kindDateTime:
		return time.Unix(int64(r.u32()), 0).In(t.loc)
	case kindDateTime64:
		ticks := int64(r.u64())
		scale := int64(math.Pow10(t.size))
		return time.Unix(ticks/scale, ticks%scale*int64(math.Pow10(9-t.size))).In(t.loc)
	case kindEnum8:
		v := int16(int8(r.u8()))
		return enumValue{t.enums[v], v}
	case kindEnum16:
		v := int16(r.u16())
		return enumValue{t.enums[v], v}
	case kindIPv4:
		v := r.u32()
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	case kindIPv6:
		// Network byte order, as in the table.
		var a [16]byte
		copy(a[:], r.take(16))
		return netip.AddrFrom16(a)
	case kindUUID:
		// Two little-endian UInt64 halves, high half first.
		var u [16]byte
		hi, lo := r.u64(), r.u64()
		binary.BigEndian.PutUint64(u[:8], hi)
		binary.BigEndian.PutUint64(u[8:], lo)
		return u
	case kindNullable:
		if r.u8() != 0 {
			return nil
		}
		return t.elem.decode(r)
	case kindArray:
		n := r.uvarint()
		if n > uint64(len(r.b)-r.off) {
			r.err = fmt.Errorf("array of %d elements in the %d bytes left", n, len(r.b)-r.off)
			return nil
		}
		a := make([]any, n)
		for i := range a {
			a[i] = t.elem.decode(r)
		}
		return a
	}
	return nil // kindNothing: only ever NULL
}

func uuidString(u [16]byte) string {
	s := hex.EncodeToString(u[:])
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

var byteType = reflect.TypeFor[byte]()

// assign puts value v of type t into dest (see binaryRows).
func assign(t *colType, v any, dest any) error {
	if v == nil {
		return assignNull(dest)
	}
	if done, err := assignSpecial(t, v, dest); done {
		return err
	}
	rv := reflect.ValueOf(dest)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("destination %T is not a non-nil pointer", dest)
	}
	// A value of the type's own Go type.
	if vv := reflect.ValueOf(v); rv.Elem().Type() == vv.Type() {
		rv.Elem().Set(vv)
		return nil
	}
	if s, ok := dest.(sql.Scanner); ok {
		return s.Scan(scannerValue(v))
	}
	// **T: a new T.
	if rv.Elem().Kind() == reflect.Pointer {
		p := reflect.New(rv.Elem().Type().Elem())
		if err := assign(t, v, p.Interface()); err != nil {
			return err
		}
		rv.Elem().Set(p)
		return nil
	}
	return fmt.Errorf("converting %s to %T is unsupported", t.name, dest)
}

// assignSpecial covers the destinations that are not the value's own Go
// type; done says whether it handled dest.
func assignSpecial(t *colType, v any, dest any) (done bool, err error) {
	switch t.kind {
	case kindUInt8:
		if d, ok := dest.(*bool); ok {
			*d = v.(uint8) != 0
			return true, nil
		}
	case kindInt64:
		if d, ok := dest.(*time.Duration); ok {
			*d = time.Duration(v.(int64))
			return true, nil
		}
	case kindString, kindFixedString:
		s := v.(string)
		switch d := dest.(type) {
		case *[]byte:
			*d = []byte(s)
			return true, nil
		case encoding.BinaryUnmarshaler:
			return true, d.UnmarshalBinary([]byte(s))
		}
		if t.kind == kindFixedString {
			// *[N]byte of the column's length.
			rt := reflect.TypeOf(dest)
			if rt.Kind() == reflect.Pointer && rt.Elem().Kind() == reflect.Array && rt.Elem().Elem() == byteType {
				if rt.Elem().Len() != t.size {
					return true, fmt.Errorf("converting %s to %T: lengths differ", t.name, dest)
				}
				reflect.Copy(reflect.ValueOf(dest).Elem(), reflect.ValueOf([]byte(s)))
				return true, nil
			}
		}
	case kindDateTime:
		if d, ok := dest.(*int64); ok {
			*d = v.(time.Time).Unix()
			return true, nil
		}
	case kindEnum8, kindEnum16:
		e := v.(enumValue)
		switch d := dest.(type) {
		case *string:
			*d = e.label
		case *int8:
			if t.kind != kindEnum8 {
				return false, nil
			}
			*d = int8(e.value)
		case *int16:
			*d = e.value
		case *int32:
			*d = int32(e.value)
		case *int64:
			*d = int64(e.value)
		case *int:
			*d = int(e.value)
		default:
			return false, nil
		}
		return true, nil
	case kindIPv4, kindIPv6:
		a := v.(netip.Addr)
		switch d := dest.(type) {
		case *netip.Addr:
			*d = a
		case *net.IP:
			*d = net.IP(a.AsSlice())
		case *string:
			// net.IP's String, as clickhouse-go: ::ffff:a.b.c.d prints as a.b.c.d.
			*d = net.IP(a.AsSlice()).String()
		case *[]byte:
			if t.kind != kindIPv6 {
				return false, nil
			}
			*d = a.AsSlice()
		case *[16]byte:
			if t.kind != kindIPv6 {
				return false, nil
			}
			*d = a.As16()
		case *uint32:
			if t.kind != kindIPv4 {
				return false, nil
			}
			b := a.As4()
			*d = binary.BigEndian.Uint32(b[:])
		default:
			return false, nil
		}
		return true, nil
	case kindUUID:
		if d, ok := dest.(*string); ok {
			*d = uuidString(v.([16]byte))
			return true, nil
		}
	case kindArray:
		rv := reflect.ValueOf(dest)
		if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Slice {
			return false, nil
		}
		a := v.([]any)
		s := reflect.MakeSlice(rv.Elem().Type(), len(a), len(a))
		for i, e := range a {
			if err := assign(t.elem, e, s.Index(i).Addr().Interface()); err != nil {
				return true, fmt.Errorf("element %d: %w", i, err)
			}
		}
		rv.Elem().Set(s)
		return true, nil
	case kindNullable:
		return true, assign(t.elem, v, dest)
	}
	return false, nil
}

// scannerValue is what a sql.Scanner gets: what clickhouse-go gives it.
func scannerValue(v any) any {
	switch v := v.(type) {
	case enumValue:
		return v.label
	case netip.Addr:
		return net.IP(v.AsSlice())
	}
	return v
}

// assignNull puts NULL into dest: nil for a pointer, slice, map or
// interface, Scan(nil) for a sql.Scanner, an error for anything else (as
// clickhouse-go does, rather than leave a zero that looks like data).
func assignNull(dest any) error {
	if s, ok := dest.(sql.Scanner); ok {
		return s.Scan(nil)
	}
	rv := reflect.ValueOf(dest)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("destination %T is not a non-nil pointer", dest)
	}
	switch rv.Elem().Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Slice, reflect.Map:
		rv.Elem().SetZero()
		return nil
	}
	return fmt.Errorf("NULL cannot be put into %T: use %s or a sql.Null type", dest, "*"+reflect.TypeOf(dest).String())
}
