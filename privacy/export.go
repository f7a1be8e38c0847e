package privacy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// Streamer is a database that hands a result over block by block
// (store.Embedded.QueryEach): an export then holds one block, never a
// whole table. A ClickHouse server's rows stream as they are read, so a
// plain Query does as well there.
type Streamer interface {
	QueryEach(ctx context.Context, query string, args []any, each func(dbapi.Rows) error) error
}

// queryEach runs query and hands its rows to each, block by block where
// db can.
func queryEach(ctx context.Context, db dbapi.Querier, query string, args []any, each func(dbapi.Rows) error) error {
	if s, ok := db.(Streamer); ok {
		return s.QueryEach(ctx, query, args, each)
	}
	rows, err := db.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if err := each(rows); err != nil {
		return err
	}
	return rows.Close()
}

// ExportSpec is what one export covers.
type ExportSpec struct {
	Tenant       string
	Since, Until time.Time // the window of the flow tables (Table.Window)
}

// Header is the first line of an export.
type Header struct {
	Type   string    `json:"type"` // "export"
	Tenant string    `json:"tenant"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
	// Tables are the tables exported, in order, each with the type its
	// lines have.
	Tables []ExportTable `json:"tables"`
	// ExporterAddresses are the exporters whose statistics are exported.
	ExporterAddresses []string  `json:"exporter_addresses"`
	StartedAt         time.Time `json:"started_at"`
}

// ExportTable names a table and the type of its lines.
type ExportTable struct {
	Table string `json:"table"`
	Type  string `json:"type"`
}

// Trailer is the last line of a complete export.
type Trailer struct {
	Type       string           `json:"type"` // "end"
	Counts     map[string]int64 `json:"counts"`
	Complete   bool             `json:"complete"`
	FinishedAt time.Time        `json:"finished_at"`
}

// ExportWriter receives the lines of an export. Flush is called every
// few rows and between tables, so that a long export reaches the client
// as it goes; an error from it ends the export.
type ExportWriter interface {
	io.Writer
	Flush() error
}

// flushEvery is how many rows go between flushes.
const flushEvery = 1000

// Export writes every row stored about spec.Tenant to w as NDJSON: a
// Header, one line {"type": T, "row": {column: value}} per row of each
// table, and a Trailer. An export that fails midway ends without the
// trailer: the trailer is what says it is complete. match is the tenant
// of an exporter's address (tenant.Tenants.Match).
func Export(ctx context.Context, db dbapi.Querier, match func(netip.Addr) string, spec ExportSpec, w ExportWriter) (map[string]int64, error) {
	addrs, err := exporterAddresses(ctx, db, match, spec.Tenant)
	if err != nil {
		return nil, err
	}
	h := Header{Type: "export", Tenant: spec.Tenant, Since: spec.Since.UTC(), Until: spec.Until.UTC(), ExporterAddresses: addrs, StartedAt: time.Now().UTC()}
	for _, t := range append(Tables[:len(Tables):len(Tables)], ExportersTable) {
		h.Tables = append(h.Tables, ExportTable{Table: t.Name, Type: t.Type})
	}
	if err := writeLine(w, h); err != nil {
		return nil, err
	}
	counts := map[string]int64{}
	for _, t := range Tables {
		where, args := "tenant = ?", []any{spec.Tenant}
		if t.Window != "" {
			where += " AND " + t.Window + " >= ? AND " + t.Window + " < ?"
			args = append(args, spec.Since.UTC(), spec.Until.UTC())
		}
		if err := exportTable(ctx, db, t, where, args, w, counts); err != nil {
			return counts, err
		}
	}
	if len(addrs) > 0 {
		if err := exportTable(ctx, db, ExportersTable, "has(?, IPv6NumToString(exporter_address))", []any{addrs}, w, counts); err != nil {
			return counts, err
		}
	}
	for _, t := range h.Tables {
		counts[t.Type] += 0 // every type is counted, zeros included
	}
	tr := Trailer{Type: "end", Counts: counts, Complete: true, FinishedAt: time.Now().UTC()}
	if err := writeLine(w, tr); err != nil {
		return counts, err
	}
	return counts, w.Flush()
}

func writeLine(w ExportWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return err
	}
	return w.Flush()
}

// exportTable writes the rows of t that where selects. where is one of
// the fixed conditions of Export; its values are bound.
func exportTable(ctx context.Context, db dbapi.Querier, t Table, where string, args []any, w ExportWriter, counts map[string]int64) error {
	cols, err := columns(ctx, db, t.Name)
	if err != nil {
		return err
	}
	exprs := make([]string, len(cols))
	for i, c := range cols {
		exprs[i] = c.expr
	}
	query := "SELECT " + strings.Join(exprs, ", ") + " FROM " + t.Name + " WHERE " + where
	bw := bufio.NewWriterSize(w, 64<<10)
	err = queryEach(ctx, db, query, args, func(rows dbapi.Rows) error {
		for rows.Next() {
			line, err := rowLine(rows, t.Type, cols)
			if err != nil {
				return err
			}
			if _, err := bw.Write(line); err != nil {
				return err
			}
			if counts[t.Type]++; counts[t.Type]%flushEvery == 0 {
				if err := errors.Join(bw.Flush(), w.Flush(), ctx.Err()); err != nil {
					return err
				}
			}
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("privacy: export %s: %w", t.Name, err)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return w.Flush()
}

// rowLine scans one row and writes it as a line.
func rowLine(rows dbapi.Rows, typ string, cols []column) ([]byte, error) {
	dest := make([]any, len(cols))
	for i, c := range cols {
		dest[i] = newDest(c.kind)
	}
	if err := rows.Scan(dest...); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 512)
	b = append(b, `{"type":`...)
	b = strconv.AppendQuote(b, typ)
	b = append(b, `,"row":{`...)
	for i, c := range cols {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, c.name)
		b = append(b, ':')
		v, err := json.Marshal(jsonOf(dest[i]))
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", c.name, err)
		}
		b = append(b, v...)
	}
	return append(b, "}}\n"...), nil
}

func newDest(k kind) any {
	switch k {
	case kUint:
		return new(uint64)
	case kInt:
		return new(int64)
	case kFloat:
		return new(float64)
	case kTime:
		return new(uint32)
	case kArray + kString:
		return new([]string)
	case kArray + kUint:
		return new([]uint64)
	case kArray + kInt:
		return new([]int64)
	case kArray + kFloat:
		return new([]float64)
	case kArray + kTime:
		return new([]uint32)
	}
	return new(string)
}

// jsonOf is a scanned value as it is exported: times as RFC 3339 UTC,
// NaN and infinities as null.
func jsonOf(d any) any {
	switch v := d.(type) {
	case *uint32:
		return unixTime(*v)
	case *[]uint32:
		out := make([]string, len(*v))
		for i, s := range *v {
			out[i] = unixTime(s)
		}
		return out
	case *float64:
		return finite(*v)
	case *[]float64:
		out := make([]any, len(*v))
		for i, f := range *v {
			out[i] = finite(f)
		}
		return out
	}
	return d
}

func unixTime(s uint32) string { return time.Unix(int64(s), 0).UTC().Format(time.RFC3339) }

func finite(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return f
}
