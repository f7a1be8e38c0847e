package rules

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// The flood rules (amplification, syn_flood, udp_flood, icmp_flood) read
// one per-destination aggregation, kept in slices (attacks_slices.go):
// reading the flows is the expensive part of each of them, so they share
// it. The first rule of a tick reads the slice that settled since the last
// tick, the others of the tick find it read.
//
// The query groups by slice, tenant, destination, IP protocol and two
// "class ports": refl, the source port of UDP from a reflector port (0
// for other traffic), and svc, the destination port of other UDP to a
// service port that legitimately receives many small packets from many
// clients (DNS, NTP, QUIC, VPN, ...). A destination has a handful of such
// rows; each rule sums the rows that concern it with its tenant's own port
// lists, so a tenant's override of a port list is exact even though the
// query is shared.

// destRow is one row of the per-destination aggregation: of one slice
// as read, or of the window as the slices combine.
type destRow struct {
	Proto   uint8
	Refl    uint16 // UDP source port when it is a reflector port, else 0
	Svc     uint16 // UDP destination port when it is a service port, else 0
	Packets float64
	Bytes   float64
	Sources uint64 // distinct source addresses
	SYN     float64
	// SYNSources: distinct sources of the SYN-only flows.
	SYNSources uint64
	// TopPort is the most frequent destination port of the row's flows
	// (of SYN-only flows for TCP), when one port has most of them
	// (anyHeavy: a heavy hitter, else any port); over the window, that of
	// the slice with the most packets.
	TopPort uint16
}

// sliceRow is a destRow of one slice with the (hashed) sources it
// counted, cut at the demand's set cap.
type sliceRow struct {
	destRow
	srcs, synSrcs []uint64
}

// destKey is one destination of one tenant.
type destKey struct{ Tenant, Dst string }

// destSlice is what one slice holds.
type destSlice map[destKey][]sliceRow

// destDemand is what one rule needs of the shared query for the tenants
// of one slicing.
type destDemand struct {
	Window, Slice, Settle time.Duration
	Tenants               []string
	Refl                  []uint16 // reflector source ports
	Svc                   []uint16 // service destination ports
	// Floor: rows below this many (sampling-scaled) packets in the window
	// are not returned; for TCP the floor is on SYN-only packets. Each
	// slice applies its share of it.
	Floor float64
	// ReflBytes, unless 0: UDP rows from reflector ports of at least this
	// many (sampling-scaled) bytes in the window are returned too, below
	// Floor (amplification's bit floor: large packets at few per second).
	ReflBytes float64
	// Sources: the most distinct sources a rule needs, which sizes the
	// per-slice source sets.
	Sources int
}

func (d destDemand) slicing() slicing { return slicing{d.Window, d.Slice, d.Settle} }

// covers reports whether the rows of a query made for d serve e: the same
// slicing, at least e's tenants and ports, a floor no higher, source sets
// as large.
func (d destDemand) covers(e destDemand) bool {
	return d.slicing() == e.slicing() && d.Floor <= e.Floor && d.Sources >= e.Sources &&
		(e.ReflBytes == 0 || (d.ReflBytes != 0 && d.ReflBytes <= e.ReflBytes)) &&
		subset(e.Tenants, d.Tenants) && subset(e.Refl, d.Refl) && subset(e.Svc, d.Svc)
}

func subset[T comparable](small, big []T) bool {
	for _, x := range small {
		if !slices.Contains(big, x) {
			return false
		}
	}
	return true
}

// union merges demands of one slicing: what one query must return for
// them all.
func (d destDemand) union(e destDemand) destDemand {
	out := d
	out.Floor, out.Sources = min(d.Floor, e.Floor), max(d.Sources, e.Sources)
	if out.ReflBytes == 0 || (e.ReflBytes != 0 && e.ReflBytes < out.ReflBytes) {
		out.ReflBytes = e.ReflBytes
	}
	out.Tenants = sortedUnion(d.Tenants, e.Tenants)
	out.Refl = sortedUnion(d.Refl, e.Refl)
	out.Svc = sortedUnion(d.Svc, e.Svc)
	return out
}

func sortedUnion[T interface{ ~string | ~uint16 }](a, b []T) []T {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// floodState is the slices of one querier and slicing, shared by the
// flood rules, with the window they combine into.
type floodState struct {
	db  dbapi.Querier
	key slicing
	// lock is held while the slices advance (a query) and are read; a
	// channel so that waiting for it obeys the context.
	lock   chan struct{}
	demand destDemand // what the slices held were read for
	sl     sliced[destSlice]
	rows   map[destKey][]destRow
	secs   float64
	used   time.Time
}

// destCache shares the per-destination slices between the flood rules.
type destCache struct {
	mu sync.Mutex
	// demands: the latest demand of each rule and slicing, so that the
	// first rule of a tick queries what the others will want too.
	demands map[string]destDemand
	states  []*floodState
}

// floodShare is the state of every flood rule in the process; states are
// told apart by the querier they read.
var floodShare = newDestCache()

func newDestCache() *destCache { return &destCache{demands: map[string]destDemand{}} }

// get returns the rows of the window of d evaluated at now, by tenant and
// destination, and the seconds they cover: from the slices held, after
// reading those that settled since the last tick. The first rule of a
// tick reads the new slice, the others of the tick find it read: one
// query per slice whatever the rules' phases.
func (c *destCache) get(ctx context.Context, db dbapi.Querier, rule string, now time.Time, d destDemand) (map[destKey][]destRow, float64, error) {
	key := d.slicing()
	if t := reflect.TypeOf(db); t == nil || !t.Comparable() {
		// States are told apart by querier: this one cannot be, so it
		// reads the whole window on its own.
		st := &floodState{db: db, key: key, demand: d, lock: make(chan struct{}, 1)}
		err := st.advance(ctx, now)
		return st.rows, st.secs, err
	}
	c.mu.Lock()
	c.demands[rule+"/"+key.String()] = d
	q := d
	for k, o := range c.demands {
		if strings.HasSuffix(k, "/"+key.String()) {
			q = q.union(o)
		}
	}
	st := c.state(db, key, now)
	c.mu.Unlock()
	select {
	case st.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("waiting for the shared flood slices: %w", ctx.Err())
	}
	defer func() { <-st.lock }()
	if !st.demand.covers(d) {
		// Slices read for less (a higher floor, fewer ports or tenants)
		// lack rows this rule needs: read the window again for all.
		st.demand = q
		st.sl.reset()
	}
	if err := st.advance(ctx, now); err != nil {
		return nil, 0, err
	}
	return st.rows, st.secs, nil
}

// state finds or makes the state of db and key, and drops states no rule
// used for ten minutes of evaluation time. Called locked.
func (c *destCache) state(db dbapi.Querier, key slicing, now time.Time) *floodState {
	var found *floodState
	c.states = slices.DeleteFunc(c.states, func(st *floodState) bool {
		if st.db == db && st.key == key {
			found = st
			return false
		}
		return now.Sub(st.used).Abs() > 10*time.Minute && len(st.lock) == 0
	})
	if found == nil {
		found = &floodState{db: db, key: key, lock: make(chan struct{}, 1)}
		c.states = append(c.states, found)
	}
	found.used = now
	return found
}

// advance reads the slices that settled since the last read and combines
// the window. A failed query leaves the state as it was: the next tick
// reads the range again.
func (st *floodState) advance(ctx context.Context, now time.Time) error {
	from, end := st.key.span(now)
	qfrom, query := st.sl.plan(st.key, from, end)
	if !query {
		return nil
	}
	got, err := queryDestSlices(ctx, st.db, qfrom, end, st.demand)
	if err != nil {
		return err
	}
	st.sl.put(end, got)
	held, secs := st.sl.window(st.key)
	st.rows, st.secs = combineDest(held), secs
	return nil
}

// clearStates forgets the slices read and keeps the rules' demands (a
// benchmark's new tick).
func (c *destCache) clearStates() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.states = nil
}

// reset forgets everything (tests reuse one embedded engine and times).
func (c *destCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.demands = map[string]destDemand{}
	c.states = nil
}

func queryDestSlices(ctx context.Context, db dbapi.Querier, from, end int64, d destDemand) (map[int64]destSlice, error) {
	rows, err := db.Query(ctx, destSQL(from, end, d))
	if err != nil {
		return nil, fmt.Errorf("per-destination flood query: %w", err)
	}
	defer rows.Close()
	out := map[int64]destSlice{}
	n := map[int64]int{}
	for rows.Next() {
		var s uint32
		var k destKey
		var r sliceRow
		if err := rows.Scan(&s, &k.Tenant, &k.Dst, &r.Proto, &r.Refl, &r.Svc, &r.Packets, &r.Bytes, &r.Sources,
			&r.SYN, &r.SYNSources, &r.TopPort, &r.srcs, &r.synSrcs); err != nil {
			return nil, fmt.Errorf("per-destination flood query: %w", err)
		}
		if n[int64(s)]++; n[int64(s)] > floodSliceRows {
			sliceTruncated.WithLabelValues("floods").Inc() // the one row over the cap: the slice had more
			continue
		}
		if out[int64(s)] == nil {
			out[int64(s)] = destSlice{}
		}
		k.Dst = ParseAddr(k.Dst)
		out[int64(s)][k] = append(out[int64(s)][k], r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("per-destination flood query: %w", err)
	}
	for s := from; s < end; s += int64(d.Slice / time.Second) {
		if out[s] == nil {
			out[s] = destSlice{} // read, empty
		}
	}
	return out, nil
}

// combineDest adds the slices of the window up, row by row of each
// destination (protocol and class ports): sums add, sources are the
// union of the slices' sets (hashSet), the top port is that of the slice
// with the most packets (SYN-only packets for TCP).
func combineDest(held []destSlice) map[destKey][]destRow {
	type rowKey struct {
		destKey
		Proto     uint8
		Refl, Svc uint16
	}
	type acc struct {
		destRow
		srcs, syns hashSet
		most       float64
	}
	accs := map[rowKey]*acc{}
	var order []rowKey
	for _, s := range held {
		for k, rs := range s {
			for _, r := range rs {
				rk := rowKey{k, r.Proto, r.Refl, r.Svc}
				a := accs[rk]
				if a == nil {
					a = &acc{destRow: destRow{Proto: r.Proto, Refl: r.Refl, Svc: r.Svc}}
					accs[rk] = a
					order = append(order, rk)
				}
				a.Packets += r.Packets
				a.Bytes += r.Bytes
				a.SYN += r.SYN
				a.srcs.add(r.srcs, r.Sources)
				a.syns.add(r.synSrcs, r.SYNSources)
				w := r.Packets
				if r.Proto == 6 {
					w = r.SYN
				}
				if w > a.most {
					a.most, a.TopPort = w, r.TopPort
				}
			}
		}
	}
	out := map[destKey][]destRow{}
	for _, rk := range order {
		a := accs[rk]
		a.Sources, a.SYNSources = a.srcs.count(), a.syns.count()
		out[rk.destKey] = append(out[rk.destKey], a.destRow)
	}
	return out
}

// synOnly is the condition of a TCP flow that carried SYN and never ACK:
// a handshake that did not complete (or a SYN-only sampled packet).
const synOnly = "bitAnd(tcp_flags, 18) = 2"

// destSQL is the shared query, of the slices in [from, end). Grouping
// every destination with distinct counts costs microseconds per row, so
// it runs in two steps: the subquery finds the candidate destinations of
// each slice with sums alone (packets not TCP, SYN-only TCP packets,
// above the slice's share of the floor), and only their flows are grouped
// with distinct counts. The subquery groups by slice and address alone,
// all tenants together (a tenant column in the key triples its cost): an
// address that is a candidate in one tenant's traffic is one in all,
// which costs a few rows, never a finding, since the outer query and the
// rules judge each tenant on its own. The WHERE keeps only the protocols
// the rules look at; the HAVING drops the small rows of the candidates.
// Sources are counted exactly (groupUniqArray of hashes) and the first
// setCap hashes are returned, for the union over slices.
func destSQL(from, end int64, d destDemand) string {
	sl := d.slicing()
	refl, svc := portList(d.Refl), portList(d.Svc)
	where := fmt.Sprintf("time_received >= toDateTime(%d, 'UTC') AND time_received < toDateTime(%d, 'UTC') AND %s AND ip_protocol IN (1, 6, 17, 58)",
		from, end, TenantIn("tenant", d.Tenants))
	// The slice's share of the floor, rounded down: a steady attack at
	// exactly the floor holds exactly its share in every slice.
	floor := strconv.FormatFloat(math.Floor(d.Floor*sl.share()), 'f', 0, 64)
	candBytes, rowBytes := "0", "0"
	if d.ReflBytes > 0 {
		b := strconv.FormatFloat(math.Floor(d.ReflBytes*sl.share()), 'f', 0, 64)
		candBytes = fmt.Sprintf("sumIf(bytes * sampling_rate, ip_protocol = 17 AND src_port IN (%s)) >= %s", refl, b)
		rowBytes = fmt.Sprintf("refl != 0 AND bt >= %s", b)
	}
	hash := "cityHash64(src_address)"
	cut := setCap(d.Sources)
	// GLOBAL IN: on a cluster (clickhouse.cluster) flows is a Distributed
	// front, whose subquery must be answered over all shards once, not per
	// shard (ClickHouse refuses the plain IN there); on one server it is IN.
	return fmt.Sprintf(`SELECT %s AS s, toString(tenant), %s, ip_protocol,
    if(ip_protocol = 17 AND src_port IN (%s), src_port, 0) AS refl,
    if(ip_protocol = 17 AND refl = 0 AND dst_port IN (%s), dst_port, 0) AS svc,
    toFloat64(sum(%s)) AS pk, toFloat64(sum(bytes * sampling_rate)) AS bt,
    toUInt64(length(groupUniqArray(%s) AS srcset)) AS srcs,
    toFloat64(sumIf(%s, %s)) AS syn, toUInt64(length(groupUniqArrayIf(%s, %s) AS synset)) AS synsrcs,
    toUInt16(anyHeavyIf(dst_port, ip_protocol != 6 OR %s)) AS top,
    arraySlice(srcset, 1, %d), arraySlice(synset, 1, %d)
FROM flows
WHERE %s AND (%s, dst_address) GLOBAL IN (
    SELECT %s, dst_address FROM flows WHERE %s
    GROUP BY %s, dst_address
    HAVING sumIf(%s, ip_protocol != 6) >= %s OR sumIf(%s, ip_protocol = 6 AND %s) >= %s OR %s)
GROUP BY s, tenant, dst_address, ip_protocol, refl, svc
HAVING if(ip_protocol = 6, syn, pk) >= %s OR %s
ORDER BY s, if(ip_protocol = 6, syn, pk) DESC
LIMIT %d BY s`,
		sl.sliceExpr(), AddrText("dst_address"), refl, svc, Packets, hash, Packets, synOnly, hash, synOnly, synOnly,
		cut, cut, where, sl.sliceExpr(), sl.sliceExpr(), where, sl.sliceExpr(),
		Packets, floor, Packets, synOnly, floor, candBytes, floor, rowBytes, floodSliceRows+1)
}

// portList is the SQL list of ports; an empty list is (0), which no
// classified port is.
func portList(ports []uint16) string {
	if len(ports) == 0 {
		return "0"
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ", ")
}

// prefilterFloor is the SQL floor for a rate floor: the packets (or
// bytes) a window holds at that rate, divided by 4 because a
// destination's traffic may be split over a few rows (a multi-vector
// amplification).
func prefilterFloor(rate float64, window time.Duration) float64 {
	return max(0, rate*window.Seconds()/4)
}
