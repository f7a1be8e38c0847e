package sqlapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/queryapi"
	"github.com/flowhouse/flowhouse/store"
)

// Column is one column of a result.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Result is a query's answer, at most the rows asked for.
type Result struct {
	Columns   []Column          `json:"columns"`
	Rows      []json.RawMessage `json:"rows"`
	Truncated bool              `json:"truncated"`
}

// Querier runs an admin's query read-only and returns at most maxRows
// rows, Truncated when there were more.
type Querier interface {
	Query(ctx context.Context, query string, maxRows int) (*Result, error)
}

// FormatClauseError is a query with a FORMAT clause: the answer's format
// is this endpoint's JSON.
type FormatClauseError struct{ Format string }

func (e *FormatClauseError) Error() string {
	return "remove the FORMAT " + e.Format + " clause: this endpoint answers JSON"
}

// Embedded runs queries on the embedded engine's read-only handle: the
// engine's parser and readonly=1 decide what runs (store.ReadOnly), with
// its limits (clickhouse.embedded.query_*).
func Embedded(ro *store.ReadOnly) Querier { return embedded{ro} }

type embedded struct{ ro *store.ReadOnly }

// engineFormat has the engine write one JSON array per line: the names,
// the types, then each row, so rows are counted as they stream and the
// query is stopped past the rows asked for.
const engineFormat = "JSONCompactEachRowWithNamesAndTypes"

var errEnough = errors.New("sqlapi: enough rows")

func (e embedded) Query(ctx context.Context, query string, maxRows int) (*Result, error) {
	lines := &lineReader{max: maxRows}
	var stFormat string
	err := e.ro.Run(ctx, query, engineFormat, func(st store.Statement) io.Writer {
		if stFormat = st.Format; stFormat != "" {
			return refusingWriter{}
		}
		return lines
	})
	if stFormat != "" {
		return nil, &FormatClauseError{stFormat}
	}
	if err != nil && !errors.Is(err, errEnough) {
		return nil, err
	}
	if err := lines.flush(); err != nil {
		return nil, err
	}
	return lines.result()
}

// refusingWriter stops a query whose output is not the endpoint's format.
type refusingWriter struct{}

func (refusingWriter) Write([]byte) (int, error) { return 0, errEnough }

// lineReader collects the engine's output lines: names, types, rows.
type lineReader struct {
	max       int
	partial   []byte
	header    [][]byte
	rows      []json.RawMessage
	truncated bool
}

func (l *lineReader) Write(chunk []byte) (int, error) {
	n := len(chunk)
	for len(chunk) > 0 {
		i := bytes.IndexByte(chunk, '\n')
		if i < 0 {
			l.partial = append(l.partial, chunk...)
			break
		}
		line := append(l.partial, chunk[:i]...)
		l.partial, chunk = nil, chunk[i+1:]
		if err := l.line(line); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func (l *lineReader) line(line []byte) error {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil
	}
	if len(l.header) < 2 {
		l.header = append(l.header, bytes.Clone(line))
		return nil
	}
	return l.row(line)
}

func (l *lineReader) row(line []byte) error {
	if len(l.rows) >= l.max {
		l.truncated = true
		return errEnough
	}
	l.rows = append(l.rows, json.RawMessage(bytes.Clone(line)))
	return nil
}

func (l *lineReader) flush() error {
	if l.truncated {
		return nil
	}
	if len(l.partial) > 0 {
		line := l.partial
		l.partial = nil
		if err := l.line(line); err != nil && !errors.Is(err, errEnough) {
			return err
		}
	}
	return nil
}

func (l *lineReader) result() (*Result, error) {
	res := &Result{Rows: l.rows, Truncated: l.truncated, Columns: []Column{}}
	if res.Rows == nil {
		res.Rows = []json.RawMessage{}
	}
	if len(l.header) < 2 {
		return res, nil // a statement without a result
	}
	var names, types []string
	if err := json.Unmarshal(l.header[0], &names); err != nil {
		return nil, fmt.Errorf("sqlapi: the engine's column names: %w", err)
	}
	if err := json.Unmarshal(l.header[1], &types); err != nil || len(types) != len(names) {
		return nil, fmt.Errorf("sqlapi: the engine's column types: %v", err)
	}
	for i, n := range names {
		res.Columns = append(res.Columns, Column{Name: n, Type: types[i]})
	}
	return res, nil
}

// Server runs queries through a ClickHouse server's readonly=1 query
// interface (store.Server.ReadOnly), as subqueries: the server refuses
// every write, DDL, table function and setting, only SELECT can be
// written, and its grants decide the rest.
func Server(q dbapi.Querier) Querier { return server{q} }

type server struct{ q dbapi.Querier }

func (s server) Query(ctx context.Context, query string, maxRows int) (*Result, error) {
	if len(query) > store.MaxQueryBytes {
		return nil, &store.RefusedError{Reason: fmt.Sprintf("the query has %d bytes, more than the %d allowed", len(query), store.MaxQueryBytes)}
	}
	// readonly=1 still lets a session KILL queries (flowhouse's own
	// inserts run as the same user) and leaves INTO OUTFILE and FORMAT to
	// the client. As a subquery, the text can only be a SELECT: anything
	// else, a second statement or an unclosed comment is a syntax error
	// of the server's own parser. The line breaks keep a trailing --
	// comment from eating the parenthesis.
	rows, err := s.q.Query(ctx, "SELECT * FROM (\n"+query+"\n)")
	var ex *clickhouse.Exception
	if errors.As(err, &ex) && ex.Code == store.CodeSyntaxError {
		return nil, &store.RefusedError{Reason: "on a ClickHouse server this endpoint runs one SELECT (as a subquery), and this is not one: " + ex.Message}
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	res := &Result{Columns: []Column{}, Rows: []json.RawMessage{}}
	ct, ok := rows.(interface{ ColumnTypes() []driver.ColumnType })
	if !ok {
		return nil, errors.New("sqlapi: the server's rows have no column types")
	}
	var scanTypes []reflect.Type
	for _, c := range ct.ColumnTypes() {
		res.Columns = append(res.Columns, Column{Name: c.Name(), Type: c.DatabaseTypeName()})
		scanTypes = append(scanTypes, c.ScanType())
	}
	for rows.Next() {
		if len(res.Rows) >= maxRows {
			res.Truncated = true
			break
		}
		row, err := scanRow(rows, scanTypes, res.Columns)
		if err != nil {
			return nil, err
		}
		res.Rows = append(res.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return res, nil
}

func scanRow(rows dbapi.Rows, scanTypes []reflect.Type, cols []Column) (json.RawMessage, error) {
	dest := make([]any, len(scanTypes))
	for i, t := range scanTypes {
		dest[i] = reflect.New(t).Interface()
	}
	if err := rows.Scan(dest...); err != nil {
		return nil, err
	}
	values := make([]any, len(dest))
	for i, d := range dest {
		values[i] = queryapi.JSONValue(reflect.ValueOf(d).Elem().Interface(), cols[i].Type)
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(values); err != nil {
		return nil, fmt.Errorf("sqlapi: encode a row: %w", err)
	}
	w.Flush()
	return json.RawMessage(bytes.TrimSpace(buf.Bytes())), nil
}
