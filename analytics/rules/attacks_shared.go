package rules

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// The flood rules (amplification, syn_flood, udp_flood, icmp_flood) read
// one per-destination aggregation of the window: a scan of 60 s of flows
// is the expensive part of each of them, so they share it. The first rule
// of a tick runs the query, the others of the same tick (evaluated within
// a few seconds of it: the scheduler's jitter) reuse its rows.
//
// The query groups by tenant, destination, IP protocol and two "class
// ports": refl, the source port of UDP from a reflector port (0 for other
// traffic), and svc, the destination port of other UDP to a service port
// that legitimately receives many small packets from many clients (DNS,
// NTP, QUIC, VPN, ...). A destination has a handful of such rows; each
// rule sums the rows that concern it with its tenant's own port lists, so
// a tenant's override of a port list is exact even though the query is
// shared.

// destRow is one row of the per-destination aggregation.
type destRow struct {
	Proto   uint8
	Refl    uint16 // UDP source port when it is a reflector port, else 0
	Svc     uint16 // UDP destination port when it is a service port, else 0
	Packets float64
	Bytes   float64
	Sources uint64 // distinct source addresses (uniq: about 1% off)
	SYN     float64
	// SYNSources: distinct sources of the SYN-only flows.
	SYNSources uint64
	// TopPort is the most frequent destination port of the row's flows
	// (of SYN-only flows for TCP), when one port has most of them
	// (anyHeavy: a heavy hitter, else any port).
	TopPort uint16
}

// destKey is one destination of one tenant.
type destKey struct{ Tenant, Dst string }

// destDemand is what one rule needs of the shared query for the tenants
// of one window.
type destDemand struct {
	Window  time.Duration
	Tenants []string
	Refl    []uint16 // reflector source ports
	Svc     []uint16 // service destination ports
	// Floor: rows below this many (sampling-scaled) packets in the window
	// are not returned; for TCP the floor is on SYN-only packets.
	Floor float64
}

// covers reports whether the rows of a query made for d serve e: the same
// window, at least e's tenants and ports, and a floor no higher.
func (d destDemand) covers(e destDemand) bool {
	return d.Window == e.Window && d.Floor <= e.Floor && subset(e.Tenants, d.Tenants) &&
		subset(e.Refl, d.Refl) && subset(e.Svc, d.Svc)
}

func subset[T comparable](small, big []T) bool {
	for _, x := range small {
		if !slices.Contains(big, x) {
			return false
		}
	}
	return true
}

// union merges demands of one window: what one query must return for
// them all.
func (d destDemand) union(e destDemand) destDemand {
	out := destDemand{Window: d.Window, Floor: min(d.Floor, e.Floor)}
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

// destEntry is one query's result, or the query under way.
type destEntry struct {
	db     dbapi.Querier
	end    time.Time
	demand destDemand
	done   chan struct{}
	rows   map[destKey][]destRow
	err    error
}

// destCache shares the per-destination query between the flood rules.
type destCache struct {
	mu sync.Mutex
	// demands: the latest demand of each rule and window, so that the
	// first rule of a tick queries what the others will want too.
	demands map[string]destDemand
	entries []*destEntry
}

// floodShare is the cache of every flood rule in the process; entries are
// told apart by the querier they read.
var floodShare = newDestCache()

func newDestCache() *destCache { return &destCache{demands: map[string]destDemand{}} }

// shareAge is how much older than a rule's evaluation time a shared
// result may be: rules of one tick start within the jitter of each other
// (10% of the interval), and a few seconds at the end of a 60 s window
// change little.
func shareAge(interval time.Duration) time.Duration { return min(interval/2, 5*time.Second) }

// get returns the rows of the window of d that ends at now, by tenant and
// destination, from a result shared with other rules or from a query.
func (c *destCache) get(ctx context.Context, db dbapi.Querier, rule string, now time.Time, maxAge time.Duration, d destDemand) (map[destKey][]destRow, error) {
	if t := reflect.TypeOf(db); t == nil || !t.Comparable() {
		return c.query(ctx, db, now, d) // results are told apart by querier: this one cannot be
	}
	c.mu.Lock()
	c.demands[rule+"/"+d.Window.String()] = d
	c.evict(now)
	for _, e := range c.entries {
		if e.db == db && !e.end.After(now) && now.Sub(e.end) <= maxAge && e.demand.covers(d) {
			c.mu.Unlock()
			select {
			case <-e.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for the shared flood query: %w", ctx.Err())
			}
			if e.err == nil {
				return e.rows, nil
			}
			return c.query(ctx, db, now, d) // the other rule's run failed: try on our own
		}
	}
	q := d
	for _, o := range c.demands {
		if o.Window == d.Window {
			q = q.union(o)
		}
	}
	e := &destEntry{db: db, end: now, demand: q, done: make(chan struct{})}
	c.entries = append(c.entries, e)
	c.mu.Unlock()
	e.rows, e.err = c.query(ctx, db, now, q)
	close(e.done)
	return e.rows, e.err
}

// evict drops results that no rule can use any more. Called locked.
func (c *destCache) evict(now time.Time) {
	c.entries = slices.DeleteFunc(c.entries, func(e *destEntry) bool {
		select {
		case <-e.done:
			return now.Sub(e.end) > time.Minute || e.end.After(now.Add(time.Minute))
		default:
			return false
		}
	})
}

// reset forgets everything (tests reuse one embedded engine and times).
func (c *destCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.demands = map[string]destDemand{}
	c.entries = nil
}

func (c *destCache) query(ctx context.Context, db dbapi.Querier, now time.Time, d destDemand) (map[destKey][]destRow, error) {
	rows, err := db.Query(ctx, destSQL(now, d))
	if err != nil {
		return nil, fmt.Errorf("per-destination flood query: %w", err)
	}
	defer rows.Close()
	out := map[destKey][]destRow{}
	for rows.Next() {
		var k destKey
		var r destRow
		if err := rows.Scan(&k.Tenant, &k.Dst, &r.Proto, &r.Refl, &r.Svc, &r.Packets, &r.Bytes, &r.Sources, &r.SYN, &r.SYNSources, &r.TopPort); err != nil {
			return nil, fmt.Errorf("per-destination flood query: %w", err)
		}
		k.Dst = ParseAddr(k.Dst)
		out[k] = append(out[k], r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("per-destination flood query: %w", err)
	}
	return out, nil
}

// synOnly is the condition of a TCP flow that carried SYN and never ACK:
// a handshake that did not complete (or a SYN-only sampled packet).
const synOnly = "bitAnd(tcp_flags, 18) = 2"

// destSQL is the shared query. Grouping every destination of the window
// with distinct counts costs microseconds per row, so it runs in two
// steps: the subquery finds the candidate destinations with sums alone
// (packets not TCP, SYN-only TCP packets, above the floor), and only their
// flows are grouped with distinct counts. The subquery groups by address
// alone, all tenants together (a tenant column in the key triples its
// cost): an address that is a candidate in one tenant's traffic is one in
// all, which costs a few rows, never a finding, since the outer query
// and the rules judge each tenant on its own. The WHERE keeps only the
// protocols the rules look at; the HAVING drops the small rows of the
// candidates.
func destSQL(now time.Time, d destDemand) string {
	refl, svc := portList(d.Refl), portList(d.Svc)
	where := fmt.Sprintf("%s AND %s AND ip_protocol IN (1, 6, 17, 58)", ReceivedWithin(now, d.Window), TenantIn("tenant", d.Tenants))
	floor := strconv.FormatFloat(d.Floor, 'f', 0, 64)
	return fmt.Sprintf(`SELECT toString(tenant), %s, ip_protocol,
    if(ip_protocol = 17 AND src_port IN (%s), src_port, 0) AS refl,
    if(ip_protocol = 17 AND refl = 0 AND dst_port IN (%s), dst_port, 0) AS svc,
    toFloat64(sum(%s)) AS pk, toFloat64(sum(bytes * sampling_rate)) AS bt,
    toUInt64(uniq(src_address)) AS srcs,
    toFloat64(sumIf(%s, %s)) AS syn, toUInt64(uniqIf(src_address, %s)) AS synsrcs,
    toUInt16(anyHeavyIf(dst_port, ip_protocol != 6 OR %s)) AS top
FROM flows
WHERE %s AND dst_address IN (
    SELECT dst_address FROM flows WHERE %s
    GROUP BY dst_address
    HAVING sumIf(%s, ip_protocol != 6) >= %s OR sumIf(%s, ip_protocol = 6 AND %s) >= %s)
GROUP BY tenant, dst_address, ip_protocol, refl, svc
HAVING if(ip_protocol = 6, syn, pk) >= %s`,
		AddrText("dst_address"), refl, svc, Packets, Packets, synOnly, synOnly, synOnly,
		where, where, Packets, floor, Packets, synOnly, floor, floor)
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

// prefilterFloor is the SQL floor for a rate floor: the packets a window
// holds at that rate, divided by 4 because a destination's traffic may be
// split over a few rows (a multi-vector amplification).
func prefilterFloor(pps float64, window time.Duration) float64 {
	return max(0, pps*window.Seconds()/4)
}

// byWindow groups tenants by the window their parameters give, so that
// each window is one query; windows come out in order.
func byWindow(tenants []string, window func(tenant string) time.Duration) ([]time.Duration, map[time.Duration][]string) {
	groups := map[time.Duration][]string{}
	for _, t := range tenants {
		w := window(t)
		groups[w] = append(groups[w], t)
	}
	keys := make([]time.Duration, 0, len(groups))
	for w := range groups {
		keys = append(keys, w)
	}
	slices.Sort(keys)
	return keys, groups
}
