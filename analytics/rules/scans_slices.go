package rules

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// The scan rules keep their probes in slices (attacks_slices.go), each
// rule its own: per slice and (source, target), the distinct ports or
// hosts probed, as a set cut at setCap, whose union over the window is
// the fan-out. A union rather than a sum of per-slice counts: a client
// that retries one closed port, or a sampled SYN of each connection to
// one server, is one port in every slice, which a sum would make six.

// scanSpec is one scan query, without its time range.
type scanSpec struct {
	rule    string // for the truncation metric
	tenants []string
	// sel: the subject's columns (source, target, port) as text and port;
	// group: what they group by; value: the counted value as UInt64.
	sel, group, value string
	// thresholds: each tenant's fan-out threshold and its sampled
	// minimum; cap: the set cap.
	thresholds [][2]int
	cap        int
}

// floorSQL is the per-slice floor of a group whose highest sampling rate
// is rate: the loosest tenant's threshold at that rate (scanThreshold)
// times half the slice's share of the window, rounded down and at least
// 1. A scan at the threshold spread evenly over the window shows twice
// that in each slice, so the slices it only partly covers (its first and
// last) are kept too, as long as they hold half a slice's share; what
// slices below the floor held is lost, less than half the threshold over
// the window. Half rather than less: a floor of 1 groups every probe of
// the slice (Internet background noise is probes from many sources, a few
// each), which is what the floor avoids.
func (q scanSpec) floorSQL(sl slicing, rate string) string {
	expr := ""
	for i, t := range q.thresholds {
		e := fmt.Sprintf("toUInt64(floor(if(%s <= 1, %d, greatest(%d, ceil(%d / %s))) * %g))", rate, t[0], t[1], t[0], rate, sl.share()/2)
		if i == 0 {
			expr = e
		} else {
			expr = "least(" + expr + ", " + e + ")"
		}
	}
	return "greatest(1, " + expr + ")"
}

// sql reads the probes of the slices in [from, end): sources that sent
// at least the floor of probes in a slice (a scan of n ports or hosts is
// at least n probes; counting by source first is cheap, the distinct
// counts then run on the few candidates), grouped by slice and subject.
func (q scanSpec) sql(sl slicing, from, end int64) string {
	base := fmt.Sprintf("time_received >= toDateTime(%d, 'UTC') AND time_received < toDateTime(%d, 'UTC') AND %s AND %s",
		from, end, TenantIn("tenant", q.tenants), probe)
	// GLOBAL IN: on a cluster (clickhouse.cluster) flows is a Distributed
	// front, whose subquery must be answered over all shards once, not per
	// shard (ClickHouse refuses the plain IN there); on one server it is IN.
	return fmt.Sprintf(`SELECT %s AS s, toString(tenant), %s,
    toUInt64(length(groupUniqArray(%s) AS vals)) AS n, toUInt64(max(sampling_rate)) AS r, toFloat64(sum(%s)),
    arraySlice(vals, 1, %d)
FROM flows
WHERE %s AND (%s, src_address) GLOBAL IN (
    SELECT %s, src_address FROM flows WHERE %s
    GROUP BY %s, src_address HAVING count() >= %s)
GROUP BY s, tenant, %s
HAVING n >= %s
ORDER BY s, n DESC
LIMIT %d BY s`,
		sl.sliceExpr(), q.sel, q.value, Packets, q.cap,
		base, sl.sliceExpr(), sl.sliceExpr(), base, sl.sliceExpr(), q.floorSQL(sl, "max(sampling_rate)"),
		q.group, q.floorSQL(sl, "r"), scanSliceRows+1)
}

// scanKey is one subject of a scan rule.
type scanKey struct {
	Tenant, Src, Dst string
	Port             uint16
}

// scanPart is what one slice holds of a subject.
type scanPart struct {
	fanOut, rate uint64
	probes       float64
	vals         []uint64
}

type scanSlice map[scanKey]scanPart

// scanState is the slices of one scan rule and slicing.
type scanState struct {
	db   dbapi.Querier
	sig  string // the query without its time range: what the slices were read for
	sl   sliced[scanSlice]
	rows []scanRow
	secs float64
}

// scanSlices is a scan rule's state, by slicing. A rule's runs never
// overlap, so it needs no lock.
type scanSlices struct{ states map[slicing]*scanState }

// rows returns the window's rows of q evaluated at now and the seconds
// they cover, after reading the slices that settled since the last run.
func (s *scanSlices) rows(ctx context.Context, db dbapi.Querier, key slicing, now time.Time, q scanSpec) ([]scanRow, float64, error) {
	if s.states == nil {
		s.states = map[slicing]*scanState{}
	}
	st := s.states[key]
	sig := q.sql(key, 0, 0)
	if st == nil || st.sig != sig || !sameQuerier(st.db, db) {
		st = &scanState{db: db, sig: sig}
		s.states[key] = st
	}
	from, end := key.span(now)
	qfrom, query := st.sl.plan(key, from, end)
	if !query {
		return st.rows, st.secs, nil
	}
	got, err := readScanSlices(ctx, db, q, key, qfrom, end)
	if err != nil {
		return nil, 0, err
	}
	st.sl.put(end, got)
	held, secs := st.sl.window(key)
	st.rows, st.secs = combineScans(held), secs
	// Slicings no tenant has any more go (an override changed).
	for k, o := range s.states {
		if o != st && now.Sub(time.Unix(o.sl.read, 0)) > 10*time.Minute {
			delete(s.states, k)
		}
	}
	return st.rows, st.secs, nil
}

// sameQuerier: slices read from one database serve only it.
func sameQuerier(a, b dbapi.Querier) bool {
	if t := reflect.TypeOf(a); t == nil || !t.Comparable() || reflect.TypeOf(b) != t {
		return false
	}
	return a == b
}

func readScanSlices(ctx context.Context, db dbapi.Querier, q scanSpec, key slicing, from, end int64) (map[int64]scanSlice, error) {
	rows, err := db.Query(ctx, q.sql(key, from, end))
	if err != nil {
		return nil, fmt.Errorf("%s query: %w", strings.ReplaceAll(q.rule, "_", " "), err)
	}
	defer rows.Close()
	out := map[int64]scanSlice{}
	for s := from; s < end; s += int64(key.Slice / time.Second) {
		out[s] = scanSlice{} // read, empty unless rows come
	}
	n := map[int64]int{}
	for rows.Next() {
		var s uint32
		var k scanKey
		var p scanPart
		if err := rows.Scan(&s, &k.Tenant, &k.Src, &k.Dst, &k.Port, &p.fanOut, &p.rate, &p.probes, &p.vals); err != nil {
			return nil, fmt.Errorf("%s query: %w", strings.ReplaceAll(q.rule, "_", " "), err)
		}
		if n[int64(s)]++; n[int64(s)] > scanSliceRows {
			sliceTruncated.WithLabelValues(q.rule).Inc()
			continue
		}
		k.Src, k.Dst = ParseAddr(k.Src), ParseAddr(k.Dst)
		if out[int64(s)] == nil {
			out[int64(s)] = scanSlice{}
		}
		out[int64(s)][k] = p
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s query: %w", strings.ReplaceAll(q.rule, "_", " "), err)
	}
	return out, nil
}

// combineScans adds a subject's slices up: the fan-out is the union of
// their sets (hashSet), the sampling rate the highest, probes add.
func combineScans(held []scanSlice) []scanRow {
	type acc struct {
		set    hashSet
		rate   uint64
		probes float64
	}
	accs := map[scanKey]*acc{}
	var order []scanKey
	for _, s := range held {
		for k, p := range s {
			a := accs[k]
			if a == nil {
				a = &acc{}
				accs[k] = a
				order = append(order, k)
			}
			a.set.add(p.vals, p.fanOut)
			a.rate = max(a.rate, p.rate)
			a.probes += p.probes
		}
	}
	out := make([]scanRow, 0, len(order))
	for _, k := range order {
		a := accs[k]
		out = append(out, scanRow{Tenant: k.Tenant, Src: k.Src, Dst: k.Dst, Port: k.Port,
			FanOut: a.set.count(), Rate: a.rate, Probes: a.probes})
	}
	return out
}
