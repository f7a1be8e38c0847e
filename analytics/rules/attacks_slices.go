package rules

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The attack and scan rules are incremental. Time is cut into slices of
// `slice` seconds on time_received, aligned on the Unix epoch. Each tick
// reads only the slices that completed since the last tick and ended at
// least `settle` ago (the batcher inserts a flow within about a second of
// its reception), grouped by slice, and keeps the per-slice partial
// aggregates in memory. The window's value is the combination of the
// slices inside it: sums add, distinct counts are the union of per-slice
// sets of (hashed) values, exact up to a cap. A flow is so read once
// instead of window/interval times.
//
// A slice is read once: rows inserted after it was read (the disk spool
// replayed after a database outage) are not counted, and nothing is
// counted twice.

// slicing is where the slices of a query are: the window they combine
// into, the slice length and the settle delay. Tenants of the same
// slicing share their slices.
type slicing struct {
	Window, Slice, Settle time.Duration
}

func (s slicing) String() string { return fmt.Sprintf("%s/%s/%s", s.Window, s.Slice, s.Settle) }

// span is the window evaluated at now, in Unix seconds: [from, end), end
// being the end of the last slice that ended settle before now.
func (s slicing) span(now time.Time) (from, end int64) {
	sl := int64(s.Slice / time.Second)
	end = now.Add(-s.Settle).Unix()
	end -= ((end % sl) + sl) % sl
	return end - int64(s.Window/time.Second), end
}

// share is the part of the window one slice is: per-slice floors are the
// window's floors times this.
func (s slicing) share() float64 { return s.Slice.Seconds() / s.Window.Seconds() }

// sliceExpr is the SQL of the start of a flow's slice, in Unix seconds.
func (s slicing) sliceExpr() string {
	sl := int64(s.Slice / time.Second)
	return fmt.Sprintf("toUInt32(intDiv(toUInt32(time_received), %d) * %d)", sl, sl)
}

// bySlicing groups tenants by the slicing their parameters give, so that
// each slicing is one query; slicings come out in order.
func bySlicing(tenants []string, of func(tenant string) slicing) ([]slicing, map[slicing][]string) {
	groups := map[slicing][]string{}
	for _, t := range tenants {
		s := of(t)
		groups[s] = append(groups[s], t)
	}
	keys := make([]slicing, 0, len(groups))
	for s := range groups {
		keys = append(keys, s)
	}
	slices.SortFunc(keys, func(a, b slicing) int {
		if a.Window != b.Window {
			return int(a.Window - b.Window)
		}
		if a.Slice != b.Slice {
			return int(a.Slice - b.Slice)
		}
		return int(a.Settle - b.Settle)
	})
	return keys, groups
}

// sliced holds the per-slice partial aggregates V of one query.
type sliced[V any] struct {
	// read is the end of what was read (Unix seconds), 0 when nothing
	// was.
	read   int64
	slices map[int64]V // by the slice's start
}

// plan says what to read for the window [from, end): [qfrom, end), or
// nothing. Nothing read yet, a gap longer than the window (a pause, a
// failing database) or a clock gone back by more than a slice (tests)
// reads the whole window again (backfill). A request a slice behind what
// was read (a rule of the same tick that started before another rule
// advanced the slices) is served from what is held: it is no query.
func (s *sliced[V]) plan(sl slicing, from, end int64) (qfrom int64, query bool) {
	switch {
	case s.read == 0 || s.read < from || s.read-end > int64(sl.Slice/time.Second):
		s.reset()
		return from, true
	case s.read >= end:
		return 0, false
	default:
		return s.read, true
	}
}

// put stores what a query of [qfrom, end) returned: the slices it read
// replace nothing (they were not read before), and slices without rows
// are read too.
func (s *sliced[V]) put(end int64, got map[int64]V) {
	if s.slices == nil {
		s.slices = map[int64]V{}
	}
	for k, v := range got {
		s.slices[k] = v
	}
	s.read = end
}

// window drops the slices older than the window that ends at what was
// read and returns the others, oldest first, with the seconds they cover.
// That is the whole window: what was read always starts with a backfill
// of it. Rates are so over the window, whether the state is new (a
// restart) or old (an attack that began 20 s ago is averaged over the
// window, as "this many bytes arrived in the last minute").
func (s *sliced[V]) window(sl slicing) ([]V, float64) {
	from := s.read - int64(sl.Window/time.Second)
	var keys []int64
	for k := range s.slices {
		if k < from {
			delete(s.slices, k)
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]V, len(keys))
	for i, k := range keys {
		out[i] = s.slices[k]
	}
	return out, sl.Window.Seconds()
}

func (s *sliced[V]) reset() { *s = sliced[V]{} }

// Caps of the in-memory state: rows kept per slice (the largest first;
// a slice that has more is counted in flowhouse_rule_slice_truncated_total)
// and values kept per distinct-count set (beyond it the count is a lower
// bound, see hashSet).
var (
	floodSliceRows = 5000
	scanSliceRows  = 20000
)

const (
	minSetCap = 64
	maxSetCap = 4096
)

// setCap is how many values a distinct-count set keeps for a threshold:
// twice the threshold, so that counts near it are exact.
func setCap(threshold int) int { return min(maxSetCap, max(minSetCap, 2*threshold)) }

var sliceTruncated = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "flowhouse_rule_slice_truncated_total",
	Help: "Slices of the incremental attack and scan rules that held more rows than the cap: the smallest were dropped.",
}, []string{"rule"})

// registerSliceMetrics registers the slice metrics once per registry.
func registerSliceMetrics(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	if err := reg.Register(sliceTruncated); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			panic(fmt.Sprintf("rules: slice metrics: %v", err))
		}
	}
}

// hashSet is a distinct count over slices: the union of the per-slice
// sets of values, exact while no slice's set was cut at the cap; when
// one was, the count is the largest of the union and the per-slice exact
// counts, a lower bound of the window's distinct count (and above the cap,
// so above any threshold the cap was chosen for).
type hashSet struct {
	seen map[uint64]struct{}
	most uint64 // the largest per-slice count
	cut  bool
}

func (h *hashSet) add(values []uint64, count uint64) {
	if h.seen == nil {
		h.seen = make(map[uint64]struct{}, len(values))
	}
	for _, v := range values {
		h.seen[v] = struct{}{}
	}
	h.most = max(h.most, count)
	if count > uint64(len(values)) {
		h.cut = true
	}
}

func (h *hashSet) count() uint64 {
	n := uint64(len(h.seen))
	if h.cut {
		n = max(n, h.most)
	}
	return n
}

// sliceParams checks the slicing parameters of a rule.
func (e *paramErrs) slicing(window, slice, settle time.Duration) {
	if slice < time.Second || slice%time.Second != 0 {
		e.add("slice", "%s is not a whole number of seconds, at least 1s", slice)
	} else if window > 0 && (slice > window || window%slice != 0) {
		e.add("slice", "%s does not divide the window %s", slice, window)
	}
	if settle < time.Second || settle > 5*time.Minute {
		e.add("settle", "%s is outside 1s..5m", settle)
	}
}

// Defaults of the slicing: the rules' interval, and the batcher's delay
// with a margin.
const (
	DefaultSlice  = 10 * time.Second
	DefaultSettle = 5 * time.Second
)
