package alerts

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/notify"
)

// AlertVersionsKept is how far back alert_versions reaches (migration
// 0009; store.AlertVersionsRetention drops it on servers without TTL).
// Snapshots and stream positions must be younger.
const AlertVersionsKept = 3 * 24 * time.Hour

// SubjectMatch is a condition on an alert's subject: label Name has
// Value, or, with Name empty, any subject label has Value.
type SubjectMatch struct {
	Name, Value string
}

// Now is the database's clock, in whole seconds: alert_versions'
// written_at is stamped with it, so snapshots and stream positions are
// taken from it, never from this host's clock.
func (r *Reader) Now(ctx context.Context) (time.Time, error) {
	rows, err := r.db.Query(ctx, "SELECT toUInt32(now())")
	if err != nil {
		return time.Time{}, fmt.Errorf("alerts: database clock: %w", err)
	}
	defer rows.Close()
	var now uint32
	if !rows.Next() {
		return time.Time{}, fmt.Errorf("alerts: database clock: no row: %v", rows.Err())
	}
	if err := rows.Scan(&now); err != nil {
		return time.Time{}, fmt.Errorf("alerts: database clock: %w", err)
	}
	return fromUnix(now), rows.Err()
}

// Page returns at most f.Limit alerts of f and the cursor of the next
// page, nil on the last one.
//
// With f.Snapshot = S, an alert's place in the order is its updated_at
// as of S: for an alert written (changed) since S, the updated_at of its
// last row written at or before S, which is the prev_updated_at of its
// first alert_versions row written after S; for an alert born after S,
// the updated_at of that first row (usually after S, so new alerts come
// last). Rows written after S only add rows to alert_versions, never
// change those places: paging a snapshot gives every alert that existed
// at S exactly once, with its current state, and a new alert at most
// once. Filters on what changes (status, severity, since, until) are
// applied to the current state, so an alert that changes in or out of
// them is listed at most once.
func (r *Reader) Page(ctx context.Context, f Filter) ([]Alert, *Cursor, error) {
	limit := limitOf(f.Limit)
	as, keys, err := r.list(ctx, f, limit+1)
	if err != nil {
		return nil, nil, fmt.Errorf("alerts: list: %w", err)
	}
	if len(as) <= limit {
		return as, nil, nil
	}
	as = as[:limit]
	last := as[limit-1]
	next := &Cursor{UpdatedAt: last.UpdatedAt, ID: last.ID}
	if keys != nil {
		next.UpdatedAt = keys[limit-1]
	}
	return as, next, nil
}

// snapshotList is list with f.Snapshot (see Page). It orders and limits
// on the few columns the order and the filters need, then reads the whole
// rows of that page only: aggregating every column of every alert made a
// page cost the whole table (seconds at 100 000 alerts, make bench).
func (r *Reader) snapshotList(ctx context.Context, f Filter, limit int) ([]Alert, []time.Time, error) {
	inner, innerArgs, outer, outerArgs := f.conditions()
	snap := unix(f.Snapshot)
	vWhere, vArgs := "written_at > toDateTime(?)", []any{snap}
	if !f.AllTenants {
		vWhere, vArgs = vWhere+" AND tenant = ?", append(vArgs, f.Tenant)
	}
	if f.After != nil {
		at := unix(f.After.UpdatedAt)
		outer = append(outer, "(k > ? OR (k = ? AND id > ?))")
		outerArgs = append(outerArgs, at, at, f.After.ID)
	}
	if len(outer) == 0 {
		outer = []string{"1"}
	}
	// ANY LEFT JOIN: both engines take it (18.16 has no default
	// strictness); alerts without rows since S get v_changed = 0.
	q := "SELECT tenant, id, k FROM (" +
		"SELECT *, if(v_changed = 1, if(v_prev > 0, v_prev, v_first), toUInt32(l_updated_at)) AS k FROM (" +
		"SELECT tenant, id, argMax(updated_at, version) AS l_updated_at, argMax(status, version) AS l_status," +
		" argMax(severity, version) AS l_severity FROM alerts WHERE " + strings.Join(inner, " AND ") + " GROUP BY tenant, id" +
		") AS cur ANY LEFT JOIN (" +
		"SELECT tenant, id, toUInt8(1) AS v_changed, toUInt32(argMin(prev_updated_at, version)) AS v_prev," +
		" toUInt32(argMin(updated_at, version)) AS v_first FROM alert_versions WHERE " + vWhere + " GROUP BY tenant, id" +
		") AS v USING (tenant, id)" +
		") WHERE " + strings.Join(outer, " AND ") + fmt.Sprintf(" ORDER BY k, id LIMIT %d", limit)
	args := append(append(append([]any{}, innerArgs...), vArgs...), outerArgs...)
	type place struct {
		tenant, id string
		k          uint32
	}
	var page []place
	err := dbapi.Each(ctx, r.db, q, args, func(rows dbapi.Rows) error {
		var p place
		if err := rows.Scan(&p.tenant, &p.id, &p.k); err != nil {
			return err
		}
		page = append(page, p)
		return nil
	})
	if err != nil || len(page) == 0 {
		return nil, nil, err
	}
	ids := make([]string, len(page))
	for i, p := range page {
		ids[i] = p.id
	}
	where, wArgs := "has(?, id)", []any{ids}
	if !f.AllTenants {
		where, wArgs = "tenant = ? AND has(?, id)", []any{f.Tenant, ids}
	}
	full, err := r.query(ctx, latest(where, ""), wArgs)
	if err != nil {
		return nil, nil, err
	}
	byKey := make(map[[2]string]*Alert, len(full))
	for _, a := range full {
		byKey[[2]string{a.Tenant, a.ID}] = a
	}
	as, keys := make([]Alert, 0, len(page)), make([]time.Time, 0, len(page))
	for _, p := range page {
		if a := byKey[[2]string{p.tenant, p.id}]; a != nil {
			as, keys = append(as, *a), append(keys, time.Unix(int64(p.k), 0).UTC())
		}
	}
	return as, keys, nil
}

// Locate is the tenant of the alert id, for principals that see every
// tenant; ErrNotFound when there is none.
func (r *Reader) Locate(ctx context.Context, id string) (string, error) {
	rows, err := r.db.Query(ctx, "SELECT tenant FROM alerts WHERE id = ? LIMIT 1", id)
	if err != nil {
		return "", fmt.Errorf("alerts: locate %s: %w", id, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return "", fmt.Errorf("alerts: locate %s: %w", id, err)
		}
		return "", ErrNotFound
	}
	var tenant string
	if err := rows.Scan(&tenant); err != nil {
		return "", fmt.Errorf("alerts: locate %s: %w", id, err)
	}
	return tenant, rows.Err()
}

// Position is a place in the stream of changes: alert_versions rows in
// (written_at, id, version) order.
type Position struct {
	WrittenAt time.Time
	ID        string
	Version   uint64
}

// Change is one row written for an alert: its state after the change.
type Change struct {
	Position
	Tenant, Rule string
	Subject      map[string]string
	Severity     notify.Severity
	Status       Status
	Acknowledged bool
	UpdatedAt    time.Time
}

// ChangeFilter selects changes. Status, Severity and Rule are matched on
// the state after each change.
type ChangeFilter struct {
	Tenant     string
	AllTenants bool
	Status     []Status
	Severity   []notify.Severity
	Rule       string
	// After: the changes after this position.
	After Position
	// Settle: only changes written at least this long ago by the
	// database's clock (whole seconds, at least 1 s): rows of one second
	// are written in any id order, so a second is read once it is over
	// and its inserts are visible.
	Settle time.Duration
	Limit  int
}

// Changes returns at most f.Limit changes after f.After, in order.
func (r *Reader) Changes(ctx context.Context, f ChangeFilter) ([]Change, error) {
	if f.Tenant == "" && !f.AllTenants {
		return nil, fmt.Errorf("alerts: changes without a tenant")
	}
	at := unix(f.After.WrittenAt)
	settle := max(uint32((f.Settle+time.Second-1)/time.Second), 1)
	where := []string{"written_at <= toDateTime(toUInt32(now()) - ?)",
		"(written_at > toDateTime(?) OR (written_at = toDateTime(?) AND (id > ? OR (id = ? AND version > ?))))"}
	args := []any{settle, at, at, f.After.ID, f.After.ID, f.After.Version}
	if !f.AllTenants {
		where, args = append(where, "tenant = ?"), append(args, f.Tenant)
	}
	if f.Rule != "" {
		where, args = append(where, "rule = ?"), append(args, f.Rule)
	}
	if len(f.Status) > 0 {
		where, args = append(where, "has(?, status)"), append(args, strs(f.Status))
	}
	if len(f.Severity) > 0 {
		where, args = append(where, "has(?, severity)"), append(args, strs(f.Severity))
	}
	q := "SELECT tenant, id, version, rule, subject_names, subject_values, severity, status, acknowledged," +
		" toUInt32(updated_at), toUInt32(written_at) FROM alert_versions WHERE " + strings.Join(where, " AND ") +
		fmt.Sprintf(" ORDER BY written_at, id, version LIMIT %d", limitOf(f.Limit))
	rows, err := r.db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("alerts: changes: %w", err)
	}
	defer rows.Close()
	return scanChanges(rows)
}

func scanChanges(rows dbapi.Rows) ([]Change, error) {
	var out []Change
	for rows.Next() {
		var (
			c                Change
			subN, subV       []string
			sev, status      string
			acked            uint8
			updated, written uint32
		)
		if err := rows.Scan(&c.Tenant, &c.ID, &c.Version, &c.Rule, &subN, &subV, &sev, &status, &acked, &updated, &written); err != nil {
			return nil, fmt.Errorf("alerts: changes: %w", err)
		}
		c.Subject, c.Severity, c.Status, c.Acknowledged = zip(subN, subV), notify.Severity(sev), Status(status), acked != 0
		c.UpdatedAt, c.WrittenAt = fromUnix(updated), fromUnix(written)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alerts: changes: %w", err)
	}
	return out, nil
}
