package store

import (
	"database/sql"
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func TestBindArgs(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	for _, tc := range []struct {
		query string
		args  []any
		want  string
	}{
		{"SELECT 1", nil, "SELECT 1"},
		{"SELECT ?", []any{"it's \\ a\x00b"}, `SELECT 'it\'s \\ a\0b'`},
		{"SELECT '?', ?", []any{1}, "SELECT '?', 1"},
		{"SELECT 'it''s ?', ?", []any{1}, "SELECT 'it''s ?', 1"},
		{`SELECT 'a\'?', ?`, []any{1}, `SELECT 'a\'?', 1`},
		{`SELECT 'a \? b', ?`, []any{1}, `SELECT 'a ? b', 1`},
		{`SELECT \?, ?`, []any{1}, `SELECT ?, 1`},
		{"SELECT `a?`, \"b?\", ?", []any{1}, "SELECT `a?`, \"b?\", 1"},
		{"SELECT ? -- ?\n, ? # ?\n, ? /* ? /* ? */ ? */ , ?", []any{1, 2, 3, 4}, "SELECT 1 -- ?\n, 2 # ?\n, 3 /* ? /* ? */ ? */ , 4"},
		{"SELECT ?, ?, ?, ?", []any{nil, (*int)(nil), true, false}, "SELECT NULL, NULL, 1, 0"},
		{"SELECT ?, ?, ?", []any{int8(-1), uint64(math.MaxUint64), 3}, "SELECT -1, 18446744073709551615, 3"},
		{"SELECT ?, ?, ?", []any{1.0, float32(0.5), math.NaN()}, "SELECT cast(1, 'Float64'), cast(0.5, 'Float32'), cast('nan', 'Float64')"},
		{"SELECT ?, ?", []any{at, at.In(paris)}, "SELECT toDateTime(1767323045, 'UTC'), toDateTime(1767323045, 'Europe/Paris')"},
		{"SELECT ?", []any{at.Local()}, "SELECT toDateTime(1767323045)"},
		{"SELECT ?", []any{[]byte("x'y")}, `SELECT 'x\'y'`},
		{"SELECT ?", []any{[][]byte{[]byte("ab")}}, "SELECT [[97, 98]]"},
		{"SELECT ?", []any{[]string{"a", "b'"}}, `SELECT ['a', 'b\'']`},
		{"SELECT ?", []any{map[string]uint8{"k": 1}}, "SELECT map('k', 1)"},
		{"SELECT ?", []any{netip.MustParseAddr("192.0.2.1")}, "SELECT '192.0.2.1'"},
		{"SELECT ?, ?", []any{sql.NullString{}, sql.NullInt64{Int64: 5, Valid: true}}, "SELECT NULL, 5"},
	} {
		got, err := bindArgs(tc.query, tc.args)
		if err != nil || got != tc.want {
			t.Errorf("bindArgs(%q, %v)\n got %q, %v\nwant %q", tc.query, tc.args, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		query string
		args  []any
		want  string
	}{
		{"SELECT ?, ?", []any{1}, "more ? placeholders"},
		{"SELECT ?", []any{1, 2}, "2 arguments given for 1 ? placeholders"},
		{"SELECT 1", []any{1}, "1 arguments given for 0"},
		{"SELECT ?", []any{time.Second}, "time.Duration"},
		{"SELECT ?", []any{struct{}{}}, "cannot bind struct {}"},
	} {
		if _, err := bindArgs(tc.query, tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bindArgs(%q, %v): %v, want an error with %q", tc.query, tc.args, err, tc.want)
		}
	}
}

func TestParseType(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind colKind
		ok   func(*colType) bool
	}{
		{"LowCardinality(String)", kindString, nil},
		{"Nullable(UInt64)", kindNullable, func(c *colType) bool { return c.elem.kind == kindUInt64 }},
		{"Array(LowCardinality(Nullable(String)))", kindArray, func(c *colType) bool { return c.elem.kind == kindNullable }},
		{"DateTime('UTC')", kindDateTime, func(c *colType) bool { return c.loc == time.UTC }},
		{"DateTime", kindDateTime, func(c *colType) bool { return c.loc == time.Local }},
		{"DateTime64(3, 'Europe/Paris')", kindDateTime64, func(c *colType) bool { return c.size == 3 && c.loc.String() == "Europe/Paris" }},
		{"FixedString(16)", kindFixedString, func(c *colType) bool { return c.size == 16 }},
		{`Enum8('it\'s' = -1, 'a, b' = 2, 'x=y' = 3)`, kindEnum8, func(c *colType) bool {
			return c.enums[-1] == "it's" && c.enums[2] == "a, b" && c.enums[3] == "x=y"
		}},
		{"SimpleAggregateFunction(sum, UInt64)", kindUInt64, nil},
	} {
		c, err := parseType(tc.in, time.Local)
		if err != nil || c.kind != tc.kind || (tc.ok != nil && !tc.ok(c)) {
			t.Errorf("parseType(%q) = %+v, %v", tc.in, c, err)
		}
	}
	for _, in := range []string{"Decimal(18, 2)", "Map(String, UInt64)", "Tuple(UInt8, String)", "Int128", "DateTime('No/Where')"} {
		if _, err := parseType(in, time.UTC); err == nil {
			t.Errorf("parseType(%q) accepted", in)
		}
	}
}

func TestEngineErrorIsAClickHouseException(t *testing.T) {
	err := engineError("Code: 60. DB::Exception: Unknown table expression identifier 'nope' in scope SELECT * FROM nope. (UNKNOWN_TABLE)\n")
	var exc *clickhouse.Exception
	if !errors.As(err, &exc) || exc.Code != 60 || exc.CodeName != "UNKNOWN_TABLE" || !strings.HasPrefix(exc.Message, "Unknown table expression") {
		t.Fatalf("%#v", err)
	}
	if errorReason(err) != errServer {
		t.Errorf("classified %s, want %s like the server's exceptions", errorReason(err), errServer)
	}
	if err := engineError("something odd"); err.Error() != "something odd" {
		t.Errorf("%v", err)
	}
}

func TestValidateEmbeddedKeys(t *testing.T) {
	c := DefaultConfig()
	if c.Addr != "" {
		t.Fatalf("default addr %q, want the embedded engine", c.Addr)
	}
	c.Embedded.Path, c.Embedded.Library = "", ""
	err := c.Validate()
	for _, want := range []string{"embedded.path: required when addr is empty", "embedded.library: required when addr is empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to contain %q", err, want)
		}
	}
	// With a server, the embedded keys do not matter.
	c.Addr = "localhost:9000"
	if err := c.Validate(); err != nil {
		t.Errorf("server config with empty embedded keys: %v", err)
	}
}
