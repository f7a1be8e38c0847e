package rules

import (
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// Tests of the slicing of the attack and scan rules: the window a tick
// evaluates, what it reads, how slices combine.

func TestSlicingSpan(t *testing.T) {
	s := slicing{Window: time.Minute, Slice: 10 * time.Second, Settle: 5 * time.Second}
	base := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	for _, c := range []struct {
		now      time.Duration // after base
		from, to time.Duration
	}{
		{5 * time.Second, -time.Minute, 0},                      // the slice [-10s, 0) just settled
		{4 * time.Second, -70 * time.Second, -10 * time.Second}, // not yet
		{14*time.Second + 900*time.Millisecond, -time.Minute, 0},
		{15 * time.Second, -50 * time.Second, 10 * time.Second},
	} {
		from, end := s.span(base.Add(c.now))
		if from != base.Add(c.from).Unix() || end != base.Add(c.to).Unix() {
			t.Errorf("now +%s: [%d, %d), want [%d, %d)", c.now, from-base.Unix(), end-base.Unix(), int64(c.from/time.Second), int64(c.to/time.Second))
		}
	}
}

// TestSlicedPlan: what each tick reads. A new state, a gap longer than
// the window or a clock gone back backfill; a later tick reads what
// settled since; a tick of the same slice, or one slice behind, reads
// nothing; slices leave the window.
func TestSlicedPlan(t *testing.T) {
	sl := slicing{Window: time.Minute, Slice: 10 * time.Second, Settle: 5 * time.Second}
	var s sliced[int]
	step := func(end int64, wantFrom int64, wantQuery bool) {
		t.Helper()
		qfrom, query := s.plan(sl, end-60, end)
		if query != wantQuery || (query && qfrom != wantFrom) {
			t.Fatalf("end %d: read from %d (%v), want from %d (%v)", end, qfrom, query, wantFrom, wantQuery)
		}
		if query {
			got := map[int64]int{}
			for k := qfrom; k < end; k += 10 {
				got[k] = int(k)
			}
			s.put(end, got)
		}
	}
	step(1000, 940, true)  // backfill
	step(1000, 0, false)   // the same slice: another rule of the tick
	step(1010, 1000, true) // one new slice
	step(1000, 0, false)   // a slice behind: served as is
	step(1030, 1010, true) // a missed tick: two slices
	held, secs := s.window(sl)
	if !slices.Equal(held, []int{970, 980, 990, 1000, 1010, 1020}) || secs != 60 {
		t.Errorf("window %v over %vs", held, secs)
	}
	if len(s.slices) != 6 {
		t.Errorf("%d slices held, want 6: older ones leave", len(s.slices))
	}
	step(1100, 1040, true) // a gap longer than the window
	step(1080, 1020, true) // the clock two slices back
}

func TestHashSet(t *testing.T) {
	var h hashSet
	h.add([]uint64{1, 2, 3}, 3)
	h.add([]uint64{3, 4}, 2)
	if h.count() != 4 {
		t.Errorf("union of {1,2,3} and {3,4}: %d", h.count())
	}
	// A slice whose set was cut: the count is at least its exact count.
	h.add([]uint64{5, 6}, 900)
	if h.count() != 900 {
		t.Errorf("with a cut set of 900: %d", h.count())
	}
	var u hashSet
	u.add([]uint64{1, 2}, 100)
	u.add([]uint64{3, 4}, 100)
	u.add([]uint64{5, 6}, 100)
	if u.count() != 100 {
		t.Errorf("three cut sets of 100: %d, want the lower bound 100", u.count())
	}
}

func TestSlicingValidate(t *testing.T) {
	p := SYNFlood.Defaults().Params
	p.Window = time.Minute
	p.Slice, p.Settle = 7*time.Second, 0
	err := p.Validate()
	for _, want := range []string{"slice: 7s does not divide the window 1m0s", "settle: 0s is outside 1s..5m"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	p = SYNFlood.Defaults().Params
	p.Slice = 1500 * time.Millisecond
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "slice: 1.5s is not a whole number") {
		t.Errorf("error %v", err)
	}
	p.Slice, p.Window = 20*time.Second, 2*time.Minute
	if err := p.Validate(); err != nil {
		t.Error(err)
	}
}

// rangeDB records the time range of every query of one kind.
type rangeDB struct {
	dbapi.Querier
	match  string
	mu     sync.Mutex
	ranges [][2]int64
}

var rangeRe = regexp.MustCompile(`time_received >= toDateTime\((\d+), 'UTC'\) AND time_received < toDateTime\((\d+), 'UTC'\)`)

func (r *rangeDB) Query(ctx context.Context, q string, args ...any) (dbapi.Rows, error) {
	if strings.Contains(q, r.match) {
		m := rangeRe.FindStringSubmatch(q)
		from, _ := strconv.ParseInt(m[1], 10, 64)
		to, _ := strconv.ParseInt(m[2], 10, 64)
		r.mu.Lock()
		r.ranges = append(r.ranges, [2]int64{from, to})
		r.mu.Unlock()
	}
	return r.Querier.Query(ctx, q, args...)
}

// take returns the ranges read since the last take, relative to
// attackNow, in seconds.
func (r *rangeDB) take() [][2]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.ranges
	for i := range out {
		out[i][0] -= attackNow.Unix()
		out[i][1] -= attackNow.Unix()
	}
	r.ranges = nil
	return out
}

const floodQuery, portScanQuery = "GROUP BY s, tenant, dst_address, ip_protocol", "GROUP BY s, tenant, src_address, dst_address"

func evalAt(t *testing.T, s *scheduled, db dbapi.Querier, at time.Time) []Finding {
	t.Helper()
	out, err := s.evaluate(evalContext{ctx: context.Background(), now: at, tenants: []string{"t1"}, db: db})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func buildRule(t *testing.T, k registration, mod func(*BuiltinConfig)) *scheduled {
	t.Helper()
	c := DefaultConfig()
	// The ticks below are laid out over a minute's window.
	for _, p := range []*time.Duration{&c.Builtin.Amplification.Params.Window, &c.Builtin.SYNFlood.Params.Window,
		&c.Builtin.UDPFlood.Params.Window, &c.Builtin.ICMPFlood.Params.Window} {
		*p = time.Minute
	}
	if mod != nil {
		mod(&c.Builtin)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := k.build(&c.Builtin, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func summaries(fs []Finding) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Annotations["summary"]
	}
	return out
}

// steady is a flow a second from second `from` to `to` (relative to
// attackNow, to excluded), each of packets, from sources cycling
// over n.
func steady(tenant string, from, to, n int, dst string, proto uint8, sport, dport uint16, flags uint8, packets, size uint64) []flow.Flow {
	b := newFB(tenant, 1)
	var out []flow.Flow
	for sec := from; sec < to; sec++ {
		f := b.f(0, src(((sec%n)+n)%n, false), dst, proto, sport, dport, flags, packets, size)
		f.TimeReceivedMs = attackNow.Add(time.Duration(sec)*time.Second + 500*time.Millisecond).UnixMilli()
		f.TimeStartMs, f.TimeEndMs = f.TimeReceivedMs-2000, f.TimeReceivedMs-500
		out = append(out, f)
	}
	return out
}

// TestFloodSlicesAcrossTicks: a SYN flood evaluated tick by tick. The
// first tick backfills the window with one query; each later tick reads
// the one slice that settled, and the ranges read never overlap; the
// window combines the slices of several ticks to what a backfill of it
// finds; slices of a burst leave the window.
func TestFloodSlicesAcrossTicks(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		// 3000 SYN/s from 60 sources over [-60s, 0); a burst of
		// 12000 SYN/s to another host in [-60s, -50s) only: 2000/s over
		// the minute, nothing once its slice left.
		e.Insert(t, concat(
			steady("t1", -60, 0, 60, "192.0.2.10", tcp, 40000, 443, 0x02, 3000, 44),
			steady("t1", -60, -50, 10, "192.0.2.11", tcp, 40000, 80, 0x02, 12000, 44),
		))
		floodShare.reset()
		db := &rangeDB{Querier: e.Reader, match: floodQuery}
		mod := func(c *BuiltinConfig) { c.SYNFlood.Params.MinSources = 5 }
		s := buildRule(t, SYNFlood, mod)
		var all [][2]int64
		var got []string
		for i, at := range []time.Duration{-20, -10, 0, 1, 2} {
			got = summaries(evalAt(t, s, db, attackEval.Add(at*time.Second)))
			r := db.take()
			want := [][2]int64{{int64(at) - 10, int64(at)}}
			switch {
			case i == 0:
				want = [][2]int64{{-80, -20}} // the backfill
			case at > 0:
				want = nil // the same slice: nothing to read
			}
			if !slices.Equal(r, want) {
				t.Errorf("tick at %+ds read %v, want %v", at, r, want)
			}
			all = append(all, r...)
		}
		for i := 1; i < len(all); i++ {
			if all[i][0] < all[i-1][1] {
				t.Errorf("ranges %v overlap", all)
			}
		}
		want := []string{
			"192.0.2.10 receiving 3 kpps of TCP SYN without ACK (100% of its TCP packets) from 60 sources, mostly to port 443: SYN flood",
			"192.0.2.11 receiving 2 kpps of TCP SYN without ACK (100% of its TCP packets) from 10 sources, mostly to port 80: SYN flood",
		}
		if !slices.Equal(got, want) {
			t.Errorf("after the ticks: %q, want %q", got, want)
		}
		// Another querier: another state, which backfills.
		if backfill := summaries(evalAt(t, buildRule(t, SYNFlood, mod), e.Reader, attackEval)); !slices.Equal(backfill, want) {
			t.Errorf("a backfill: %q, want %q", backfill, want)
		}
		// The burst's slice leaves the window; the steady flood stays, now
		// over [-50s, 10s) of which [0, 10s) is empty.
		got = summaries(evalAt(t, s, db, attackEval.Add(10*time.Second)))
		if !slices.Equal(got, []string{"192.0.2.10 receiving 2.5 kpps of TCP SYN without ACK (100% of its TCP packets) from 50 sources, mostly to port 443: SYN flood"}) {
			t.Errorf("a tick later: %q", got)
		}
	})
}

// TestFloodSlicesLateRowsNotCounted: rows inserted into slices already
// read (a spool replayed after an outage) are not counted, neither by
// the ticks of the same slice nor by later ones; a new state would.
func TestFloodSlicesLateRowsNotCounted(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		flood := steady("t1", -60, 0, 60, "192.0.2.10", tcp, 40000, 443, 0x02, 3000, 44)
		e.Insert(t, flood)
		floodShare.reset()
		db := &rangeDB{Querier: e.Reader, match: floodQuery}
		s := buildRule(t, SYNFlood, nil)
		first := evalAt(t, s, db, attackEval)
		e.Insert(t, flood) // late: the same minute again
		for _, at := range []time.Duration{2 * time.Second, 10 * time.Second} {
			got := evalAt(t, s, db, attackEval.Add(at))
			wantPPS := "3000"
			if at == 10*time.Second {
				wantPPS = "2500" // [-50s, 0) of the first rows, [0, 10s) empty
			}
			if len(got) != 1 || got[0].Annotations["pps"] != wantPPS {
				t.Errorf("+%s: %q, want pps %s", at, summaries(got), wantPPS)
			}
		}
		if len(first) != 1 || first[0].Annotations["pps"] != "3000" {
			t.Errorf("first: %q", summaries(first))
		}
		// Another state (a restart) reads the late rows too.
		fresh := evalAt(t, buildRule(t, SYNFlood, nil), &rangeDB{Querier: e.Reader}, attackEval)
		if len(fresh) != 1 || fresh[0].Annotations["pps"] != "6000" {
			t.Errorf("a new state: %q, want pps 6000", summaries(fresh))
		}
	})
}

// TestFloodSlicesSteadyAtFloor: an amplification at exactly the packet
// floor, split over four reflector ports, holds in each slice exactly the
// slice's share of the prefilter floor per row: it fires. A hair less
// does not.
func TestFloodSlicesSteadyAtFloor(t *testing.T) {
	// min_mbps out of reach: the floor is min_pps, 1000/s, so the
	// prefilter keeps rows of 1000*60/4 packets a window, 2500 a slice.
	mod := func(c *BuiltinConfig) { c.Amplification.Params.MinMbps = 1000 }
	attack := func(last uint64) []flow.Flow {
		var out []flow.Flow
		for i, p := range []uint16{53, 123, 389, 1900} {
			pk := uint64(250)
			if i == 3 {
				pk = last
			}
			out = append(out, steady("t1", -60, 0, 10+i, "192.0.2.200", udp, p, 40000, 0, pk, 400)...)
		}
		return out
	}
	forEachEngine(t, func(t *testing.T, e engine) {
		for _, c := range []struct {
			last uint64
			want []string
		}{
			{250, []string{"192.0.2.200 receiving 3.2 Mbit/s of UDP from 46 sources on port 53: DNS reflection (and 3 more reflector ports)"}},
			{249, nil},
		} {
			e.Exec(t, "TRUNCATE TABLE flows")
			e.Insert(t, attack(c.last))
			floodShare.reset()
			s := buildRule(t, Amplification, mod)
			// Tick by tick: every slice is read on its own.
			evalAt(t, s, e.Reader, attackEval.Add(-time.Minute))
			var got []string
			for at := -50; at <= 0; at += 10 {
				got = summaries(evalAt(t, s, e.Reader, attackEval.Add(time.Duration(at)*time.Second)))
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("%d packets/s on port 1900: %q, want %q", c.last, got, c.want)
			}
		}
	})
}

// TestScanSlicesSettle: a port scan in the last slice of the minute is
// not read before the slice settled, then is; a scan spread over ticks
// is the union of the ports of its slices, a port probed in every slice
// counting once.
func TestScanSlicesSettle(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		b := newFB("t1", 1)
		var flows []flow.Flow
		for i, p := range portRange(1, 120) {
			f := b.f(0, "203.0.113.66", "192.0.2.50", tcp, 61337, p, 0x02, 1, 44)
			f.TimeReceivedMs = attackNow.Add(-10*time.Second + time.Duration(i)*80*time.Millisecond).UnixMilli()
			flows = append(flows, f)
		}
		// A client retrying one closed port every second of the minute:
		// one port in every slice.
		flows = append(flows, steady("t1", -60, 0, 1, "192.0.2.51", tcp, 61000, 8080, 0x02, 1, 44)...)
		// Another source probing 30 ports in one slice and 30 others
		// (15 of them again) in the next: 45 distinct.
		for i, p := range slices.Concat(portRange(1000, 30), portRange(1015, 30)) {
			f := b.f(0, "203.0.113.67", "192.0.2.52", tcp, 61337, p, 0x02, 1, 44)
			at := -40*time.Second + time.Duration(i)*100*time.Millisecond
			if i >= 30 {
				at = -30*time.Second + time.Duration(i-30)*100*time.Millisecond
			}
			f.TimeReceivedMs = attackNow.Add(at).UnixMilli()
			flows = append(flows, f)
		}
		e.Insert(t, flows)
		db := &rangeDB{Querier: e.Reader, match: portScanQuery}
		// A threshold of 5 ports: six slices of the retrying client would
		// be six ports if slices added their counts.
		s := buildRule(t, PortScan, func(c *BuiltinConfig) { c.PortScan.Params.MinPorts, c.PortScan.Params.MinPortsSampled = 5, 1 })
		got := summaries(evalAt(t, s, db, attackNow.Add(4*time.Second)))
		if !slices.Equal(got, []string{"203.0.113.67 probed 45 ports of 192.0.2.52 in 60s: port scan"}) {
			t.Errorf("before the last slice settled: %q", got)
		}
		got = summaries(evalAt(t, s, db, attackEval))
		want := []string{
			"203.0.113.66 probed 120 ports of 192.0.2.50 in 60s: port scan",
			"203.0.113.67 probed 45 ports of 192.0.2.52 in 60s: port scan",
		}
		if !slices.Equal(got, want) {
			t.Errorf("once it settled: %q, want %q", got, want)
		}
		if r := db.take(); !slices.Equal(r, [][2]int64{{-70, -10}, {-10, 0}}) {
			t.Errorf("read %v", r)
		}
	})
}

// TestScanSlicesRowCap: a slice holding more rows than the cap keeps the
// largest fan-outs and counts the slice.
func TestScanSlicesRowCap(t *testing.T) {
	defer func(n int) { scanSliceRows = n }(scanSliceRows)
	scanSliceRows = 2
	forEachEngine(t, func(t *testing.T, e engine) {
		b := newFB("t1", 1)
		var flows []flow.Flow
		for i, n := range []int{110, 130, 120} {
			for j, p := range portRange(1, n) {
				f := b.f(0, src(i, false), "192.0.2.50", tcp, 61337, p, 0x02, 1, 44)
				f.TimeReceivedMs = attackNow.Add(-10*time.Second + time.Duration(j)*50*time.Millisecond).UnixMilli()
				flows = append(flows, f)
			}
		}
		e.Insert(t, flows)
		before := testutil.ToFloat64(sliceTruncated.WithLabelValues("port_scan"))
		got := summaries(evalAt(t, buildRule(t, PortScan, nil), e.Reader, attackEval))
		want := []string{
			"198.51.100.3 probed 130 ports of 192.0.2.50 in 60s: port scan",
			"198.51.100.4 probed 120 ports of 192.0.2.50 in 60s: port scan",
		}
		if !slices.Equal(got, want) {
			t.Errorf("%q, want %q", got, want)
		}
		if n := testutil.ToFloat64(sliceTruncated.WithLabelValues("port_scan")) - before; n != 1 {
			t.Errorf("%v slices counted truncated, want 1", n)
		}
	})
}

// TestFloodSlicesBitFloor: an amplification of large packets, at the bit
// floor and below the packet floor in every slice, is kept by the
// per-slice byte floor and fires.
func TestFloodSlicesBitFloor(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		// 200 packets/s of 1400 bytes: 2.24 Mbit/s, 2000 packets a slice
		// where the packet floor keeps 2500.
		e.Insert(t, steady("t1", -60, 0, 20, "192.0.2.201", udp, 123, 40000, 0, 200, 1400))
		floodShare.reset()
		s := buildRule(t, Amplification, nil)
		evalAt(t, s, e.Reader, attackEval.Add(-time.Minute))
		var got []string
		for at := -50; at <= 0; at += 10 {
			got = summaries(evalAt(t, s, e.Reader, attackEval.Add(time.Duration(at)*time.Second)))
		}
		if want := []string{"192.0.2.201 receiving 2.24 Mbit/s of UDP from 20 sources on port 123: NTP reflection"}; !slices.Equal(got, want) {
			t.Errorf("%q, want %q", got, want)
		}
	})
}
