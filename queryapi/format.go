package queryapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/flowhouse/flowhouse/store"
)

// This file formats a result read as rows (the ClickHouse server backend,
// whose native protocol returns typed values, not formatted output) the
// way ClickHouse's own formats write it, and aligns any result as a table
// for a terminal.

// Result is a whole result as typed values, with the ClickHouse type name
// of each column.
type Result struct {
	Names  []string
	Types  []string
	Values [][]any
}

// ReadRows reads every row of rows (at most maxRows; 0 is no limit). The
// columns' types come from rows' ColumnTypes (clickhouse-go's driver.Rows);
// without them values are scanned as strings.
func ReadRows(rows store.Rows, maxRows int) (*Result, error) {
	defer rows.Close()
	res := &Result{Names: rows.Columns()}
	var scanTypes []reflect.Type
	if ct, ok := rows.(interface{ ColumnTypes() []driver.ColumnType }); ok {
		for _, c := range ct.ColumnTypes() {
			res.Types = append(res.Types, c.DatabaseTypeName())
			scanTypes = append(scanTypes, c.ScanType())
		}
	} else {
		for range res.Names {
			res.Types = append(res.Types, "String")
			scanTypes = append(scanTypes, reflect.TypeFor[string]())
		}
	}
	for rows.Next() {
		if maxRows > 0 && len(res.Values) >= maxRows {
			return nil, fmt.Errorf("the result has more than %d rows", maxRows)
		}
		dest := make([]any, len(scanTypes))
		for i, t := range scanTypes {
			dest[i] = reflect.New(t).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		row := make([]any, len(dest))
		for i, d := range dest {
			row[i] = reflect.ValueOf(d).Elem().Interface()
		}
		res.Values = append(res.Values, row)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return res, nil
}

// baseType strips Nullable(...) and LowCardinality(...).
func baseType(t string) string {
	for {
		switch {
		case strings.HasPrefix(t, "Nullable(") && strings.HasSuffix(t, ")"):
			t = t[len("Nullable(") : len(t)-1]
		case strings.HasPrefix(t, "LowCardinality(") && strings.HasSuffix(t, ")"):
			t = t[len("LowCardinality(") : len(t)-1]
		default:
			return t
		}
	}
}

// elemType is T of Array(T), or "".
func elemType(t string) string {
	t = baseType(t)
	if strings.HasPrefix(t, "Array(") && strings.HasSuffix(t, ")") {
		return t[len("Array(") : len(t)-1]
	}
	return ""
}

func isNumericType(t string) bool {
	t = baseType(t)
	for _, p := range []string{"Int", "UInt", "Float", "Decimal"} {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return false
}

// text is a value as ClickHouse's text formats write it, before any
// escaping; str says whether it is a string (escaped and quoted by the
// formats), null whether it is NULL.
func text(v any, typ string) (s string, str, null bool) {
	rv := reflect.ValueOf(v)
	for rv.IsValid() && rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return `\N`, false, true
		}
		rv = rv.Elem()
	}
	if !rv.IsValid() {
		return `\N`, false, true
	}
	base := baseType(typ)
	switch x := rv.Interface().(type) {
	case string:
		return x, true, false
	case []byte:
		return string(x), true, false
	case bool:
		return strconv.FormatBool(x), false, false
	case time.Time:
		switch {
		case base == "Date" || base == "Date32":
			return x.Format("2006-01-02"), true, false
		case strings.HasPrefix(base, "DateTime64("):
			prec := 3
			arg := strings.TrimSuffix(base[len("DateTime64("):], ")")
			if p, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(arg, ",", 2)[0])); err == nil && p >= 0 && p <= 9 {
				prec = p
			}
			layout := "2006-01-02 15:04:05"
			if prec > 0 {
				layout += "." + strings.Repeat("0", prec)
			}
			return x.Format(layout), true, false
		}
		return x.Format("2006-01-02 15:04:05"), true, false
	case net.IP:
		if base == "IPv6" {
			if a, ok := netip.AddrFromSlice(x.To16()); ok {
				return a.String(), true, false
			}
		}
		return x.String(), true, false
	case netip.Addr:
		return x.String(), true, false
	case float32:
		return formatFloat(float64(x), 32), false, false
	case float64:
		return formatFloat(x, 64), false, false
	case big.Int:
		return x.String(), false, false
	case fmt.Stringer:
		return x.String(), !isNumericType(typ), false
	}
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10), false, false
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(rv.Uint(), 10), false, false
	case reflect.String:
		return rv.String(), true, false
	case reflect.Slice, reflect.Array:
		et := elemType(typ)
		parts := make([]string, rv.Len())
		for i := range parts {
			parts[i] = quotedText(rv.Index(i).Interface(), et)
		}
		return "[" + strings.Join(parts, ",") + "]", true, false
	case reflect.Map:
		keys := rv.MapKeys()
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, quotedText(k.Interface(), "")+":"+quotedText(rv.MapIndex(k).Interface(), ""))
		}
		slices.Sort(parts)
		return "{" + strings.Join(parts, ",") + "}", true, false
	}
	return fmt.Sprint(rv.Interface()), true, false
}

// quotedText is a value inside an array or map: strings in quotes.
func quotedText(v any, typ string) string {
	rv := reflect.ValueOf(v)
	for rv.IsValid() && rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	s, str, null := text(v, typ)
	if rv.IsValid() {
		switch rv.Interface().(type) {
		case []byte, net.IP:
		default:
			if rv.Kind() == reflect.Slice || rv.Kind() == reflect.Map {
				return s // a nested array or map
			}
		}
	}
	if null {
		return "NULL"
	}
	if !str {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func formatFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return strconv.FormatFloat(f, 'g', -1, bits)
}

// TSVEscape escapes a value for TabSeparated as ClickHouse does (a
// single quote too).
func TSVEscape(s string) string {
	if !strings.ContainsAny(s, "\t\n\\\x00\r\b\f\v'") {
		return s
	}
	return strings.NewReplacer("\\", `\\`, "\t", `\t`, "\n", `\n`, "\x00", `\0`, "\r", `\r`, "\b", `\b`, "\f", `\f`, "\v", `\v`, "'", `\'`).Replace(s)
}

// WriteTSV writes res as TabSeparated, with a header line of the column
// names when header is set (TabSeparatedWithNames).
func WriteTSV(w io.Writer, res *Result, header bool) error {
	bw := bufio.NewWriter(w)
	if header {
		for i, n := range res.Names {
			if i > 0 {
				bw.WriteByte('\t')
			}
			bw.WriteString(TSVEscape(n))
		}
		bw.WriteByte('\n')
	}
	for _, row := range res.Values {
		for i, v := range row {
			if i > 0 {
				bw.WriteByte('\t')
			}
			bw.WriteString(tsvCell(v, res.Types[i]))
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

func tsvCell(v any, typ string) string {
	s, _, null := text(v, typ)
	if null {
		return s
	}
	return TSVEscape(s)
}

func csvQuote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// WriteCSV writes res as ClickHouse's CSV: strings, dates and arrays in
// double quotes, numbers bare, NULL as \N; a header line of the names
// when header is set (CSVWithNames).
func WriteCSV(w io.Writer, res *Result, header bool) error {
	bw := bufio.NewWriter(w)
	if header {
		for i, n := range res.Names {
			if i > 0 {
				bw.WriteByte(',')
			}
			bw.WriteString(csvQuote(n))
		}
		bw.WriteByte('\n')
	}
	for _, row := range res.Values {
		for i, v := range row {
			if i > 0 {
				bw.WriteByte(',')
			}
			s, str, null := text(v, res.Types[i])
			if str && !null {
				s = csvQuote(s)
			}
			bw.WriteString(s)
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// WriteJSONLines writes one JSON object per row (ClickHouse's
// JSONEachRow): integers as numbers, 64-bit ones too (as the embedded
// engine, ClickHouse 26, writes them; 18.16 quoted them), NaN and
// infinities as null, dates as strings, arrays as arrays.
func WriteJSONLines(w io.Writer, res *Result) error {
	bw := bufio.NewWriter(w)
	for _, row := range res.Values {
		bw.WriteByte('{')
		for i, v := range row {
			if i > 0 {
				bw.WriteByte(',')
			}
			k, _ := json.Marshal(res.Names[i])
			bw.Write(k)
			bw.WriteByte(':')
			b, err := json.Marshal(jsonValue(v, res.Types[i]))
			if err != nil {
				return fmt.Errorf("column %s: %w", res.Names[i], err)
			}
			bw.Write(b)
		}
		bw.WriteString("}\n")
	}
	return bw.Flush()
}

func jsonValue(v any, typ string) any {
	rv := reflect.ValueOf(v)
	for rv.IsValid() && rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil
		}
		rv = rv.Elem()
	}
	if !rv.IsValid() {
		return nil
	}
	switch rv.Interface().(type) {
	case []byte, net.IP, time.Time, netip.Addr, big.Int:
		s, _, _ := text(rv.Interface(), typ)
		return s
	}
	switch rv.Kind() {
	case reflect.Bool:
		return rv.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return rv.Uint()
	case reflect.Float32, reflect.Float64:
		f := rv.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil
		}
		return json.Number(formatFloat(f, rv.Type().Bits()))
	case reflect.String:
		return rv.String()
	case reflect.Slice, reflect.Array:
		et := elemType(typ)
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = jsonValue(rv.Index(i).Interface(), et)
		}
		return out
	case reflect.Map:
		out := make(map[string]any, rv.Len())
		for _, k := range rv.MapKeys() {
			ks, _, _ := text(k.Interface(), "")
			out[ks] = jsonValue(rv.MapIndex(k).Interface(), "")
		}
		return out
	}
	s, str, _ := text(rv.Interface(), typ)
	if !str {
		return json.Number(s)
	}
	return s
}

// Cells is a result as TabSeparated-escaped text with its column names
// and types: what WriteTable aligns.
type Cells struct {
	Names []string
	Types []string
	Rows  [][]string
}

// CellsOf renders res as TabSeparated text cells.
func CellsOf(res *Result) *Cells {
	c := &Cells{Names: res.Names, Types: res.Types}
	for _, row := range res.Values {
		cells := make([]string, len(row))
		for i, v := range row {
			cells[i] = tsvCell(v, res.Types[i])
		}
		c.Rows = append(c.Rows, cells)
	}
	return c
}

// ParseTSVWithNamesAndTypes reads the engine's TabSeparatedWithNamesAndTypes
// output into cells, leaving values escaped.
func ParseTSVWithNamesAndTypes(b []byte) (*Cells, error) {
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(b) == 0 {
		return &Cells{}, nil
	}
	if len(lines) < 2 {
		return nil, errors.New("TabSeparatedWithNamesAndTypes output without its two header lines")
	}
	c := &Cells{Names: strings.Split(lines[0], "\t"), Types: strings.Split(lines[1], "\t")}
	for i, n := range c.Names {
		c.Names[i] = tsvUnescape(n)
	}
	for i, t := range c.Types {
		c.Types[i] = tsvUnescape(t)
	}
	for _, l := range lines[2:] {
		row := strings.Split(l, "\t")
		if len(row) != len(c.Names) {
			return nil, fmt.Errorf("a row of %d values for %d columns", len(row), len(c.Names))
		}
		c.Rows = append(c.Rows, row)
	}
	return c, nil
}

func tsvUnescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case '0':
			b.WriteByte(0)
		case 'r':
			b.WriteByte('\r')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// WriteTable aligns cells in columns for a terminal: a header, a rule,
// numbers right-aligned, two spaces between columns. Values stay escaped
// as in TabSeparated, so a newline in a value shows as \n.
func WriteTable(w io.Writer, c *Cells, header bool) error {
	bw := bufio.NewWriter(w)
	if len(c.Names) == 0 {
		return bw.Flush()
	}
	width := make([]int, len(c.Names))
	if header {
		for i, n := range c.Names {
			width[i] = utf8.RuneCountInString(n)
		}
	}
	for _, row := range c.Rows {
		for i, v := range row {
			width[i] = max(width[i], utf8.RuneCountInString(v))
		}
	}
	right := make([]bool, len(c.Names))
	for i := range right {
		right[i] = i < len(c.Types) && isNumericType(c.Types[i])
	}
	line := func(cells []string) {
		var sb strings.Builder
		for i, v := range cells {
			if i > 0 {
				sb.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(v))
			if right[i] {
				sb.WriteString(pad + v)
			} else {
				sb.WriteString(v + pad)
			}
		}
		bw.WriteString(strings.TrimRight(sb.String(), " "))
		bw.WriteByte('\n')
	}
	if header {
		line(c.Names)
		rule := make([]string, len(width))
		for i, n := range width {
			rule[i] = strings.Repeat("-", n)
		}
		line(rule)
	}
	for _, row := range c.Rows {
		line(row)
	}
	return bw.Flush()
}
