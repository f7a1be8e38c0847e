package store

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// This file decides which settings an analyst's client may send along
// with a query (ClickHouse's HTTP interface takes every unknown URL
// parameter as one). The read-only sessions are at readonly=1, where the
// engine refuses any change of a setting, so the settings allowed here are
// set on a session of their own, opened for the query with the limits
// first, then these, then readonly=1 (ReadOnly.Execute). Only settings
// that change how a result is written, and limits that can only be
// lowered, are allowed: none of them changes how a query is parsed (the
// guard decides on a session with the default settings) or what it may
// touch.

// codeCannotParseNumber is the engine's CANNOT_PARSE_NUMBER.
const codeCannotParseNumber = 72

// Setting is a setting a client sends with its query, its value as text.
type Setting struct{ Name, Value string }

// outputSettings change only how results are written (or how the values
// of query parameters and strings are read as dates): their value goes to
// the engine as a string literal, which it parses as the setting's type.
// Settings that name files (format_schema, output_format_schema) are not
// among them.
var outputSettings = map[string]bool{
	"output_format_json_quote_64bit_integers":          true,
	"output_format_json_quote_64bit_floats":            true,
	"output_format_json_quote_denormals":               true,
	"output_format_json_quote_decimals":                true,
	"output_format_json_escape_forward_slashes":        true,
	"output_format_json_named_tuples_as_objects":       true,
	"output_format_json_array_of_rows":                 true,
	"output_format_json_validate_utf8":                 true,
	"output_format_json_pretty_print":                  true,
	"output_format_write_statistics":                   true,
	"output_format_decimal_trailing_zeros":             true,
	"output_format_csv_crlf_end_of_line":               true,
	"output_format_tsv_crlf_end_of_line":               true,
	"output_format_pretty_max_rows":                    true,
	"output_format_pretty_max_column_pad_width":        true,
	"output_format_pretty_max_value_width":             true,
	"output_format_pretty_color":                       true,
	"output_format_pretty_grid_charset":                true,
	"output_format_pretty_row_numbers":                 true,
	"output_format_markdown_escape_special_characters": true,
	"output_format_arrow_string_as_string":             true,
	"output_format_parquet_string_as_string":           true,
	"format_csv_delimiter":                             true,
	"format_csv_null_representation":                   true,
	"format_tsv_null_representation":                   true,
	"bool_true_representation":                         true,
	"bool_false_representation":                        true,
	"date_time_output_format":                          true,
	"date_time_input_format":                           true,
	"interval_output_format":                           true,
	"session_timezone":                                 true,
	"extremes":                                         true,
}

// limit is a limit a client may lower, never raise past the endpoint's
// configured one (0: none configured, any value is lower).
type limit struct {
	of      func(ReadOnlyOptions) float64 // the configured limit; 0: none
	seconds bool                          // a number of seconds, maybe fractional; else a count
}

var limitSettings = map[string]limit{
	"max_execution_time": {of: func(o ReadOnlyOptions) float64 { return o.Timeout.Seconds() }, seconds: true},
	"max_result_bytes":   {of: func(o ReadOnlyOptions) float64 { return float64(o.MaxResultBytes) }},
	"max_memory_usage":   {of: func(o ReadOnlyOptions) float64 { return float64(o.MaxMemoryBytes) }},
	"max_rows_to_read":   {of: func(o ReadOnlyOptions) float64 { return float64(o.MaxRowsToRead) }},
	"max_bytes_to_read":  {of: func(o ReadOnlyOptions) float64 { return float64(o.MaxBytesToRead) }},
	// Not configured: any value is at most no limit.
	"max_result_rows":      {of: func(ReadOnlyOptions) float64 { return 0 }},
	"max_rows_to_group_by": {of: func(ReadOnlyOptions) float64 { return 0 }},
	"max_rows_to_sort":     {of: func(ReadOnlyOptions) float64 { return 0 }},
	"max_bytes_to_sort":    {of: func(ReadOnlyOptions) float64 { return 0 }},
	"max_columns_to_read":  {of: func(ReadOnlyOptions) float64 { return 0 }},
}

// overflowModes say what a limit does when reached: either way it holds.
var overflowModes = map[string]bool{
	"result_overflow_mode":  true,
	"read_overflow_mode":    true,
	"timeout_overflow_mode": true,
	"sort_overflow_mode":    true,
}

// AllowedSettings are the names of the settings a client may send, sorted.
func AllowedSettings() []string {
	var names []string
	for n := range outputSettings {
		names = append(names, n)
	}
	for n := range limitSettings {
		names = append(names, n)
	}
	for n := range overflowModes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// settingStatements are the SET statements that apply settings on a
// session, in the order given, or the refusal of one: a *RefusedError
// (code 164) for a setting that exists but may not be changed here, an *InvalidQueryError with UNKNOWN_SETTING for a name that
// is no setting. Names are taken from the tables above, never from the
// request; values are numbers formatted here or quoted string literals.
func (r *ReadOnly) settingStatements(settings []Setting) ([]string, error) {
	var sets []string
	for _, s := range settings {
		set, err := r.settingStatement(s)
		if err != nil {
			return nil, err
		}
		sets = append(sets, set...)
	}
	return sets, nil
}

func (r *ReadOnly) settingStatement(s Setting) ([]string, error) {
	name := s.Name
	if outputSettings[name] {
		return []string{"SET " + name + " = " + quoteString(s.Value)}, nil
	}
	if l, ok := limitSettings[name]; ok {
		return r.limitStatements(name, l, s.Value)
	}
	if overflowModes[name] {
		v := strings.ToLower(strings.TrimSpace(s.Value))
		if v != "throw" && v != "break" {
			return nil, refuse("the setting %s may be 'throw' or 'break', not %q", name, s.Value)
		}
		return []string{"SET " + name + " = '" + v + "'"}, nil
	}
	if name == "readonly" {
		// The sessions are at readonly=1 already.
		if strings.TrimSpace(s.Value) == "1" {
			return nil, nil
		}
		return nil, refuse("Cannot modify 'readonly' setting in readonly mode: the endpoint's sessions are readonly=1")
	}
	if r.settings[strings.ToLower(name)] {
		return nil, refuse("Cannot modify '%s' setting in readonly mode: a client may set only output format settings and lower the limits (see the README's query endpoint section)", name)
	}
	return nil, &InvalidQueryError{&clickhouse.Exception{Code: CodeUnknownSetting, Name: "DB::Exception", CodeName: "UNKNOWN_SETTING",
		Message: fmt.Sprintf("Unknown setting '%s'", name)}}
}

// limitStatements lower a limit to value; a value above the configured
// limit changes nothing.
func (r *ReadOnly) limitStatements(name string, l limit, value string) ([]string, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
	// 'throw'/'break' and the like are modes; ClickHouse spells numbers only.
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) || (!l.seconds && v != math.Trunc(v)) {
		kind := "a whole number"
		if l.seconds {
			kind = "a number of seconds"
		}
		return nil, &InvalidQueryError{&clickhouse.Exception{Code: codeCannotParseNumber, Name: "DB::Exception", CodeName: "CANNOT_PARSE_NUMBER",
			Message: fmt.Sprintf("Cannot parse %q as %s for the setting %s", value, kind, name)}}
	}
	configured := l.of(r.opts)
	if configured > 0 && (v == 0 || v > configured) {
		// The configured limit holds: a client asking for more (or for
		// none) gets it. Refusing would break clients that derive a limit
		// from their own deadline (clickhouse-go sends max_execution_time
		// = its context's deadline + 5 s).
		return nil, nil
	}
	literal := strconv.FormatFloat(v, 'f', -1, 64)
	sets := []string{"SET " + name + " = " + literal}
	if name == "max_memory_usage" && v > 0 {
		// The spill thresholds follow the memory limit, as at setup.
		half := strconv.FormatFloat(math.Floor(v/2), 'f', -1, 64)
		sets = append(sets, "SET max_bytes_before_external_group_by = "+half, "SET max_bytes_before_external_sort = "+half)
	}
	return sets, nil
}

// session is a connection of its own for one query with settings: the
// limits, then sets, then readonly=1. Close it after the query.
func (r *ReadOnly) session(sets []string) (*chdbConn, error) {
	c, err := r.e.all[0].lib.connectChdb(r.e.dir, r.e.server)
	if err != nil {
		return nil, err
	}
	setup := readOnlySetup(r.db, r.opts)
	last := setup[len(setup)-1] // SET readonly = 1
	stmts := append(append(setup[:len(setup)-1:len(setup)-1], sets...), last)
	for _, s := range stmts {
		if _, err := c.query(s, "Null"); err != nil {
			c.close()
			if slices.Contains(sets, s) {
				return nil, &InvalidQueryError{err} // the client's value
			}
			return nil, fmt.Errorf("store: read-only session: %s: %w", s, err)
		}
	}
	return c, nil
}
