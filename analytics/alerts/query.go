package alerts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/notify"
)

// Reader reads alerts and their events from the tables. Writes are
// asynchronous: a change shows here once written (Manager.Flush waits
// for that).
type Reader struct {
	db dbapi.DB
}

// NewReader reads from db.
func NewReader(db dbapi.DB) *Reader { return &Reader{db: db} }

// Cursor is a position in a list ordered by (updated_at, id).
type Cursor struct {
	UpdatedAt time.Time
	ID        string
}

// Filter of List. Empty fields do not filter.
type Filter struct {
	// Tenant whose alerts are listed; required unless AllTenants.
	Tenant     string
	AllTenants bool
	Status     []Status
	Severity   []notify.Severity
	Rule       string
	// Exporter matches the alerts whose subject names it: the subject
	// label exporter_address (the interface rules) or exporter (SQL
	// rules may name their column so).
	Exporter string
	// Subject: every match must hold.
	Subject []SubjectMatch
	// Since and Until bound updated_at: Since <= updated_at < Until.
	Since, Until time.Time
	// Snapshot, when set, orders the list by each alert's updated_at as
	// of that time rather than its current one (see Page), so that a
	// list paged while alerts change gives each alert once. It must be
	// within the last AlertVersionsKept.
	Snapshot time.Time
	// After continues a list after that alert (keyset pagination); with
	// a Snapshot, UpdatedAt is the order key Page gave.
	After *Cursor
	// Limit is the most alerts returned: default 50, at most 1000.
	Limit int
}

// Limits of List.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// alertColumns are the columns of alerts but the key (tenant, id), in the
// order scan reads them.
var alertColumns = []string{
	"fingerprint", "rule", "subject_names", "subject_values", "severity",
	"label_names", "label_values", "annotation_names", "annotation_values", "status",
	"starts_at", "fired_at", "ends_at", "updated_at", "last_seen_at",
	"last_value", "peak_value", "evaluations", "missed",
	"acknowledged", "acknowledged_by", "acknowledged_at", "version",
}

var timeColumns = map[string]bool{"starts_at": true, "fired_at": true, "ends_at": true, "updated_at": true, "last_seen_at": true, "acknowledged_at": true}

// latest is the query of the newest row of each alert whose immutable
// columns match inner (tenant, id, rule), filtered by outer on the
// newest values (l_<column>). It aggregates with argMax rather than
// reading FINAL: a condition on a column that changes (status) must see
// only the newest row, which FINAL does not promise when the condition
// is moved to PREWHERE.
func latest(inner, outer string) string {
	in := make([]string, len(alertColumns))
	out := make([]string, len(alertColumns))
	for i, c := range alertColumns {
		in[i] = fmt.Sprintf("argMax(%s, version) AS l_%s", c, c)
		out[i] = "l_" + c
		if timeColumns[c] {
			out[i] = "toUInt32(l_" + c + ")"
		}
	}
	if outer == "" {
		outer = "1"
	}
	return "SELECT tenant, id, " + strings.Join(out, ", ") +
		" FROM (SELECT tenant, id, " + strings.Join(in, ", ") + " FROM alerts WHERE " + inner + " GROUP BY tenant, id)" +
		" WHERE " + outer + " ORDER BY l_updated_at, id"
}

func scanAlert(rows dbapi.Rows, extra ...any) (*Alert, error) {
	var (
		a                                         Alert
		sev, status                               string
		subN, subV, labN, labV, annN, annV        []string
		starts, fired, ends, updated, seen, ackAt uint32
		acked                                     uint8
	)
	if err := rows.Scan(append([]any{&a.Tenant, &a.ID, &a.Fingerprint, &a.Rule, &subN, &subV, &sev, &labN, &labV, &annN, &annV, &status,
		&starts, &fired, &ends, &updated, &seen, &a.LastValue, &a.PeakValue, &a.Evaluations, &a.Missed,
		&acked, &a.AcknowledgedBy, &ackAt, &a.Version}, extra...)...); err != nil {
		return nil, err
	}
	a.Severity, a.Status, a.Acknowledged = notify.Severity(sev), Status(status), acked != 0
	a.Subject, a.Labels, a.Annotations = zip(subN, subV), zip(labN, labV), zip(annN, annV)
	a.StartsAt, a.FiredAt, a.EndsAt = fromUnix(starts), fromUnix(fired), fromUnix(ends)
	a.UpdatedAt, a.LastSeenAt, a.AcknowledgedAt = fromUnix(updated), fromUnix(seen), fromUnix(ackAt)
	return &a, nil
}

func zip(names, values []string) map[string]string {
	m := make(map[string]string, len(names))
	for i, k := range names {
		if i < len(values) {
			m[k] = values[i]
		}
	}
	return m
}

func fromUnix(s uint32) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(int64(s), 0).UTC()
}

func (r *Reader) query(ctx context.Context, q string, args []any) ([]*Alert, error) {
	rows, err := r.db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Alert
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// List returns the alerts matching f, ordered by (updated_at, id).
func (r *Reader) List(ctx context.Context, f Filter) ([]Alert, error) {
	as, _, err := r.list(ctx, f, limitOf(f.Limit))
	if err != nil {
		return nil, fmt.Errorf("alerts: list: %w", err)
	}
	return as, nil
}

func limitOf(limit int) int {
	switch {
	case limit <= 0:
		return DefaultLimit
	case limit > MaxLimit:
		return MaxLimit
	}
	return limit
}

// conditions are f's conditions on the immutable columns (inner: every
// row of an alert has the same) and on the newest values (outer).
func (f Filter) conditions() (inner []string, innerArgs []any, outer []string, outerArgs []any) {
	inner = []string{"1"}
	if !f.AllTenants {
		inner, innerArgs = append(inner, "tenant = ?"), append(innerArgs, f.Tenant)
	}
	if f.Rule != "" {
		inner, innerArgs = append(inner, "rule = ?"), append(innerArgs, f.Rule)
	}
	if f.Exporter != "" {
		inner = append(inner, "(subject_values[indexOf(subject_names, 'exporter_address')] = ? OR subject_values[indexOf(subject_names, 'exporter')] = ?)")
		innerArgs = append(innerArgs, f.Exporter, f.Exporter)
	}
	for _, m := range f.Subject {
		if m.Name == "" {
			inner, innerArgs = append(inner, "has(subject_values, ?)"), append(innerArgs, m.Value)
		} else {
			inner, innerArgs = append(inner, "(has(subject_names, ?) AND subject_values[indexOf(subject_names, ?)] = ?)"), append(innerArgs, m.Name, m.Name, m.Value)
		}
	}
	if len(f.Status) > 0 {
		outer, outerArgs = append(outer, "has(?, l_status)"), append(outerArgs, strs(f.Status))
	}
	if len(f.Severity) > 0 {
		outer, outerArgs = append(outer, "has(?, l_severity)"), append(outerArgs, strs(f.Severity))
	}
	if !f.Since.IsZero() {
		outer, outerArgs = append(outer, "l_updated_at >= toDateTime(?)"), append(outerArgs, unix(f.Since))
	}
	if !f.Until.IsZero() {
		outer, outerArgs = append(outer, "l_updated_at < toDateTime(?)"), append(outerArgs, unix(f.Until))
	}
	return inner, innerArgs, outer, outerArgs
}

func strs[S ~string](xs []S) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = string(x)
	}
	return out
}

// list reads at most limit alerts of f and, with a Snapshot, their order
// keys.
func (r *Reader) list(ctx context.Context, f Filter, limit int) ([]Alert, []time.Time, error) {
	if f.Tenant == "" && !f.AllTenants {
		return nil, nil, errors.New("list without a tenant")
	}
	if !f.Snapshot.IsZero() {
		return r.snapshotList(ctx, f, limit)
	}
	inner, innerArgs, outer, outerArgs := f.conditions()
	if f.After != nil {
		at := unix(f.After.UpdatedAt)
		outer = append(outer, "(l_updated_at > toDateTime(?) OR (l_updated_at = toDateTime(?) AND id > ?))")
		outerArgs = append(outerArgs, at, at, f.After.ID)
	}
	q := latest(strings.Join(inner, " AND "), strings.Join(outer, " AND ")) + fmt.Sprintf(" LIMIT %d", limit)
	as, err := r.query(ctx, q, append(innerArgs, outerArgs...))
	if err != nil {
		return nil, nil, err
	}
	out := make([]Alert, len(as))
	for i, a := range as {
		out[i] = *a
	}
	return out, nil, nil
}

func (r *Reader) alert(ctx context.Context, tenant, id string) (*Alert, error) {
	as, err := r.query(ctx, latest("tenant = ? AND id = ?", ""), []any{tenant, id})
	if err != nil {
		return nil, err
	}
	if len(as) == 0 {
		return nil, ErrNotFound
	}
	return as[0], nil
}

// Get returns an alert of tenant with its events, oldest first.
// ErrNotFound when the tenant has no such alert.
func (r *Reader) Get(ctx context.Context, tenant, id string) (Alert, []Event, error) {
	a, err := r.alert(ctx, tenant, id)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Alert{}, nil, err
		}
		return Alert{}, nil, fmt.Errorf("alerts: get %s: %w", id, err)
	}
	rows, err := r.db.Query(ctx, `SELECT alert_id, fingerprint, tenant, rule, toUInt32(at), version, kind,
		from_status, to_status, severity, value, actor, note
		FROM alert_events WHERE tenant = ? AND alert_id = ? ORDER BY version, at`, tenant, id)
	if err != nil {
		return Alert{}, nil, fmt.Errorf("alerts: events of %s: %w", id, err)
	}
	defer rows.Close()
	var events []Event
	for rows.Next() {
		var e Event
		var at uint32
		var from, to, sev string
		if err := rows.Scan(&e.AlertID, &e.Fingerprint, &e.Tenant, &e.Rule, &at, &e.Version, &e.Kind,
			&from, &to, &sev, &e.Value, &e.Actor, &e.Note); err != nil {
			return Alert{}, nil, fmt.Errorf("alerts: events of %s: %w", id, err)
		}
		e.At, e.From, e.To, e.Severity = fromUnix(at), Status(from), Status(to), notify.Severity(sev)
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return Alert{}, nil, fmt.Errorf("alerts: events of %s: %w", id, err)
	}
	return *a, events, nil
}

// loadActive reads the pending and firing alerts of every tenant.
func loadActive(ctx context.Context, db dbapi.DB) ([]*Alert, error) {
	return NewReader(db).query(ctx, latest("1", "has(['pending', 'firing'], l_status)"), nil)
}
