package alerts

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/store"
)

// writer writes the alerts' rows and events from its own goroutine. What
// waits is coalesced: the newest row of each alert, and the events in
// order (bounded by max_pending_events). A failed write is retried with
// backoff; evaluation never waits for it.
type writer struct {
	db  dbapi.DB
	cfg Config
	m   *metrics
	log *slog.Logger

	mu       sync.Mutex
	rows     map[string]*Alert
	events   []Event
	seq      uint64        // puts so far
	written  uint64        // puts written, all of them up to it
	progress chan struct{} // closed when written advances
	started  bool

	// Of the writer's goroutine only (and of seed, before it starts):
	// lastAt is the updated_at of each active alert's last row written to
	// alert_versions (its next row's prev_updated_at); versioned is the
	// version whose alert_versions row is written while its alerts row
	// waits for a retry, so that a retry does not write it twice.
	lastAt    map[string]uint32
	versioned map[string]uint64

	wake    chan struct{}
	stopCh  chan struct{}
	stopCtx context.Context
	stopErr error
	done    chan struct{}
}

func newWriter(db dbapi.DB, cfg Config, m *metrics, log *slog.Logger) *writer {
	return &writer{
		db: db, cfg: cfg, m: m, log: log,
		rows:      map[string]*Alert{},
		lastAt:    map[string]uint32{},
		versioned: map[string]uint64{},
		progress:  make(chan struct{}),
		wake:      make(chan struct{}, 1),
		stopCh:    make(chan struct{}),
		done:      make(chan struct{}),
	}
}

// seed tells the writer the rows reloaded at start, the last written of
// each active alert.
func (w *writer) seed(alerts []*Alert) {
	for _, a := range alerts {
		w.lastAt[a.ID] = unix(a.UpdatedAt)
	}
}

func (w *writer) start() {
	w.mu.Lock()
	w.started = true
	w.mu.Unlock()
	go w.run()
}

// put queues rows (snapshots, not shared) and events.
func (w *writer) put(rows []*Alert, events []Event) {
	w.mu.Lock()
	w.merge(rows, events, false)
	w.seq++
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// merge adds rows, keeping the newest of each alert, and events, before
// those waiting when they come back from a failed write. w.mu is held.
func (w *writer) merge(rows []*Alert, events []Event, failed bool) {
	for _, a := range rows {
		if old := w.rows[a.ID]; old == nil || old.Version < a.Version {
			w.rows[a.ID] = a
		}
	}
	if failed {
		w.events = append(slices.Clone(events), w.events...)
	} else {
		w.events = append(w.events, events...)
	}
	if over := len(w.events) - w.cfg.MaxPendingEvents; over > 0 {
		w.events = slices.Delete(w.events, 0, over)
		w.m.persistFailed.WithLabelValues(ReasonQueueFull).Add(float64(over))
		w.m.logWrite.Do(func() {
			w.log.Warn("alert events dropped: too many waiting for the database", "dropped", over, "max_pending_events", w.cfg.MaxPendingEvents)
		})
	}
}

func (w *writer) run() {
	defer close(w.done)
	b := store.Backoff{Initial: w.cfg.RetryInitial, Max: w.cfg.RetryMax}
	for {
		select {
		case <-w.wake:
		case <-w.stopCh:
			w.stopErr = w.final(w.stopCtx)
			return
		}
		for {
			more, err := w.writeOnce(context.Background())
			if err == nil {
				b.Reset()
				if !more {
					break
				}
				continue
			}
			select {
			case <-time.After(b.Next()):
			case <-w.stopCh:
				w.stopErr = w.final(w.stopCtx)
				return
			}
		}
	}
}

// final writes what waits until it is written or ctx ends, and counts
// what is left.
func (w *writer) final(ctx context.Context) error {
	b := store.Backoff{Initial: w.cfg.RetryInitial, Max: w.cfg.RetryMax}
	for ctx.Err() == nil {
		more, err := w.writeOnce(ctx)
		if err == nil && !more {
			return nil
		}
		if err != nil {
			select {
			case <-time.After(b.Next()):
			case <-ctx.Done():
			}
		}
	}
	w.mu.Lock()
	rows, events := len(w.rows), len(w.events)
	w.mu.Unlock()
	if rows+events == 0 {
		return nil
	}
	w.m.persistFailed.WithLabelValues(ReasonShutdown).Add(float64(rows + events))
	return fmt.Errorf("alerts: %d alert rows and %d events not written at shutdown", rows, events)
}

// writeOnce writes what waits; more says whether something came in
// meanwhile.
func (w *writer) writeOnce(base context.Context) (more bool, err error) {
	w.mu.Lock()
	rows, events, seq := w.rows, w.events, w.seq
	w.rows, w.events = map[string]*Alert{}, nil
	w.mu.Unlock()
	if len(rows) == 0 && len(events) == 0 {
		w.advance(seq)
		return false, nil
	}
	ordered := slices.SortedFunc(maps.Values(rows), func(x, y *Alert) int { return strings.Compare(x.ID, y.ID) })
	// Events first, then alert_versions, then alerts: whoever reads an
	// alerts row finds the events and the alert_versions row of its
	// version already written (the API's ETag and its snapshot paging
	// count on it).
	ctx, cancel := context.WithTimeout(base, w.cfg.WriteTimeout)
	err = insertEvents(ctx, w.db, events)
	cancel()
	if err != nil {
		w.failed(err, ordered, events)
		return true, err
	}
	if err = w.writeVersions(base, ordered); err != nil {
		w.failed(err, ordered, nil)
		return true, err
	}
	ctx, cancel = context.WithTimeout(base, w.cfg.WriteTimeout)
	err = insertAlerts(ctx, w.db, ordered)
	cancel()
	if err != nil {
		w.failed(err, ordered, nil)
		return true, err
	}
	for _, a := range ordered {
		delete(w.versioned, a.ID)
		if !a.Status.Active() {
			delete(w.lastAt, a.ID)
		}
	}
	w.advance(seq)
	w.mu.Lock()
	more = len(w.rows) > 0 || len(w.events) > 0
	w.mu.Unlock()
	return more, nil
}

// writeVersions writes the alert_versions rows of rows not written yet.
func (w *writer) writeVersions(base context.Context, rows []*Alert) error {
	var todo []*Alert
	for _, a := range rows {
		if a.Version > w.versioned[a.ID] {
			todo = append(todo, a)
		}
	}
	prev := make([]uint32, len(todo))
	for i, a := range todo {
		prev[i] = w.lastAt[a.ID]
	}
	ctx, cancel := context.WithTimeout(base, w.cfg.WriteTimeout)
	defer cancel()
	if err := insertVersions(ctx, w.db, todo, prev); err != nil {
		return err
	}
	for _, a := range todo {
		w.versioned[a.ID], w.lastAt[a.ID] = a.Version, unix(a.UpdatedAt)
	}
	return nil
}

func (w *writer) failed(err error, rows []*Alert, events []Event) {
	w.mu.Lock()
	w.merge(rows, events, true)
	w.mu.Unlock()
	w.m.persistFailed.WithLabelValues(store.ErrorReason(err)).Inc()
	w.m.logWrite.Do(func() { w.log.Warn("writing alerts failed, will retry", "error", err) })
}

func (w *writer) advance(seq uint64) {
	w.mu.Lock()
	if seq > w.written {
		w.written = seq
		close(w.progress)
		w.progress = make(chan struct{})
	}
	w.mu.Unlock()
}

// flush waits until what was put before it is written.
func (w *writer) flush(ctx context.Context) error {
	w.mu.Lock()
	target := w.seq
	started := w.started
	w.mu.Unlock()
	if !started {
		return nil
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
	for {
		w.mu.Lock()
		written, ch := w.written, w.progress
		w.mu.Unlock()
		if written >= target {
			return nil
		}
		select {
		case <-ch:
		case <-w.done:
			return ErrStopped
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (w *writer) stop(ctx context.Context) error {
	w.mu.Lock()
	started := w.started
	w.mu.Unlock()
	if !started {
		return nil
	}
	w.stopCtx = ctx
	close(w.stopCh)
	<-w.done
	return w.stopErr
}

// column of an insert: expr is a format with the bound array's alias.
type column struct {
	name string
	expr string
	vals any // a slice, one element per row
}

// insert writes rows given as columns with INSERT ... SELECT over ARRAY
// JOIN of bound arrays, through Exec, which both engines run (18.16
// waits for data after INSERT ... VALUES sent as a query), chunk rows per
// statement (the text stays below max_query_size).
func insert(ctx context.Context, db dbapi.DB, table string, cols []column, chunk int) error {
	n := reflect.ValueOf(cols[0].vals).Len()
	names, exprs, binds, aliases := make([]string, len(cols)), make([]string, len(cols)), make([]string, len(cols)), make([]string, len(cols))
	for i, c := range cols {
		alias := fmt.Sprintf("a%d", i)
		names[i], aliases[i], binds[i] = c.name, alias, "? AS "+alias
		exprs[i] = alias
		if c.expr != "" {
			exprs[i] = fmt.Sprintf(c.expr, alias)
		}
	}
	q := "INSERT INTO " + table + " (" + strings.Join(names, ", ") + ") SELECT " + strings.Join(exprs, ", ") +
		" FROM (SELECT " + strings.Join(binds, ", ") + ") ARRAY JOIN " + strings.Join(aliases, ", ")
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		args := make([]any, len(cols))
		for i, c := range cols {
			args[i] = reflect.ValueOf(c.vals).Slice(lo, hi).Interface()
		}
		if err := db.Exec(ctx, q, args...); err != nil {
			return fmt.Errorf("insert %d rows into %s: %w", hi-lo, table, err)
		}
	}
	return nil
}

const (
	toTime    = "toDateTime(%s)"
	toStrings = "arrayMap(x -> toString(x), %s)" // an empty array is Array(Nothing) otherwise
)

func unix(t time.Time) uint32 {
	if t.IsZero() || t.Unix() < 0 {
		return 0
	}
	return uint32(t.Unix())
}

// pairs is m as sorted names and their values.
func pairs(m map[string]string) ([]string, []string) {
	names := slices.Sorted(maps.Keys(m))
	values := make([]string, len(names))
	for i, k := range names {
		values[i] = m[k]
	}
	return names, values
}

func insertAlerts(ctx context.Context, db dbapi.DB, as []*Alert) error {
	if len(as) == 0 {
		return nil
	}
	n := len(as)
	var (
		tenant, id, fp, rule, sev, status, ackBy  = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		subN, subV, labN, labV, annN, annV        = make([][]string, n), make([][]string, n), make([][]string, n), make([][]string, n), make([][]string, n), make([][]string, n)
		starts, fired, ends, updated, seen, ackAt = make([]uint32, n), make([]uint32, n), make([]uint32, n), make([]uint32, n), make([]uint32, n), make([]uint32, n)
		last, peak                                = make([]float64, n), make([]float64, n)
		evals, missed                             = make([]uint32, n), make([]uint32, n)
		acked                                     = make([]uint16, n)
		version                                   = make([]uint64, n)
	)
	for i, a := range as {
		tenant[i], id[i], fp[i], rule[i], sev[i], status[i], ackBy[i] = a.Tenant, a.ID, a.Fingerprint, a.Rule, string(a.Severity), string(a.Status), a.AcknowledgedBy
		subN[i], subV[i] = pairs(a.Subject)
		labN[i], labV[i] = pairs(a.Labels)
		annN[i], annV[i] = pairs(a.Annotations)
		starts[i], fired[i], ends[i], updated[i], seen[i], ackAt[i] = unix(a.StartsAt), unix(a.FiredAt), unix(a.EndsAt), unix(a.UpdatedAt), unix(a.LastSeenAt), unix(a.AcknowledgedAt)
		last[i], peak[i], evals[i], missed[i], version[i] = a.LastValue, a.PeakValue, a.Evaluations, a.Missed, a.Version
		if a.Acknowledged {
			acked[i] = 1
		}
	}
	return insert(ctx, db, "alerts", []column{
		{"tenant", "", tenant}, {"id", "", id}, {"fingerprint", "", fp}, {"rule", "", rule},
		{"subject_names", toStrings, subN}, {"subject_values", toStrings, subV}, {"severity", "", sev},
		{"label_names", toStrings, labN}, {"label_values", toStrings, labV},
		{"annotation_names", toStrings, annN}, {"annotation_values", toStrings, annV}, {"status", "", status},
		{"starts_at", toTime, starts}, {"fired_at", toTime, fired}, {"ends_at", toTime, ends},
		{"updated_at", toTime, updated}, {"last_seen_at", toTime, seen},
		{"last_value", "toFloat64(%s)", last}, {"peak_value", "toFloat64(%s)", peak},
		{"evaluations", "", evals}, {"missed", "", missed},
		{"acknowledged", "", acked}, {"acknowledged_by", "", ackBy}, {"acknowledged_at", toTime, ackAt},
		{"version", "", version},
	}, 50)
}

func insertEvents(ctx context.Context, db dbapi.DB, es []Event) error {
	if len(es) == 0 {
		return nil
	}
	n := len(es)
	var (
		tenant, id, fp, rule, kind, from, to, sev, actor, note = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		at                                                     = make([]uint32, n)
		version                                                = make([]uint64, n)
		value                                                  = make([]float64, n)
	)
	for i, e := range es {
		tenant[i], id[i], fp[i], rule[i], kind[i] = e.Tenant, e.AlertID, e.Fingerprint, e.Rule, e.Kind
		from[i], to[i], sev[i], actor[i], note[i] = string(e.From), string(e.To), string(e.Severity), e.Actor, e.Note
		at[i], version[i], value[i] = unix(e.At), e.Version, e.Value
	}
	return insert(ctx, db, "alert_events", []column{
		{"tenant", "", tenant}, {"alert_id", "", id}, {"fingerprint", "", fp}, {"rule", "", rule},
		{"at", toTime, at}, {"version", "", version}, {"kind", "", kind},
		{"from_status", "", from}, {"to_status", "", to}, {"severity", "", sev},
		{"value", "toFloat64(%s)", value}, {"actor", "", actor}, {"note", "", note},
	}, 500)
}

// insertVersions writes the alert_versions rows of as; prev are their
// prev_updated_at (0 for an alert's first row). written_at is the
// table's default, the database's clock.
func insertVersions(ctx context.Context, db dbapi.DB, as []*Alert, prev []uint32) error {
	if len(as) == 0 {
		return nil
	}
	n := len(as)
	var (
		tenant, id, rule, sev, status = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		subN, subV                    = make([][]string, n), make([][]string, n)
		updated                       = make([]uint32, n)
		acked                         = make([]uint16, n)
		version                       = make([]uint64, n)
	)
	for i, a := range as {
		tenant[i], id[i], rule[i], sev[i], status[i] = a.Tenant, a.ID, a.Rule, string(a.Severity), string(a.Status)
		subN[i], subV[i] = pairs(a.Subject)
		updated[i], version[i] = unix(a.UpdatedAt), a.Version
		if a.Acknowledged {
			acked[i] = 1
		}
	}
	return insert(ctx, db, "alert_versions", []column{
		{"tenant", "", tenant}, {"id", "", id}, {"version", "", version}, {"rule", "", rule},
		{"subject_names", toStrings, subN}, {"subject_values", toStrings, subV},
		{"severity", "", sev}, {"status", "", status}, {"acknowledged", "", acked},
		{"updated_at", toTime, updated}, {"prev_updated_at", toTime, prev},
	}, 50)
}
