package rules

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
)

func TestScanThreshold(t *testing.T) {
	for _, c := range []struct {
		threshold, sampled int
		rate               uint64
		want               int
	}{
		{100, 5, 0, 100}, {100, 5, 1, 100}, {100, 5, 10, 10}, {100, 5, 30, 5},
		{100, 5, 1000, 5}, {32, 5, 4, 8}, {33, 5, 4, 9},
	} {
		if got := scanThreshold(c.threshold, c.sampled, c.rate); got != c.want {
			t.Errorf("scanThreshold(%d, %d, %d) = %d, want %d", c.threshold, c.sampled, c.rate, got, c.want)
		}
	}
}

func TestDestDemandCoversAndUnion(t *testing.T) {
	a := destDemand{Window: time.Minute, Tenants: []string{"a"}, Refl: []uint16{123, 53}, Floor: 100}
	b := destDemand{Window: time.Minute, Tenants: []string{"b"}, Svc: []uint16{443}, Floor: 50}
	u := a.union(b)
	if !u.covers(a) || !u.covers(b) || u.Floor != 50 || strings.Join(u.Tenants, ",") != "a,b" || len(u.Refl) != 2 || u.Refl[0] != 53 {
		t.Errorf("union %+v", u)
	}
	if a.covers(b) || b.covers(a) {
		t.Error("a and b cover each other")
	}
	lower := a
	lower.Floor = 10
	if a.covers(lower) {
		t.Error("a floor of 100 covers one of 10")
	}
	other := a
	other.Window = 2 * time.Minute
	if u.covers(other) {
		t.Error("a 1m result covers a 2m window")
	}
	// A byte floor: rows below the packet floor that a demand without
	// one lacks; the lower of two serves both.
	bytes := a
	bytes.ReflBytes = 1e6
	if a.covers(bytes) || !bytes.covers(a) {
		t.Error("byte floors: without one covers one, or one does not cover none")
	}
	lowerBytes := bytes
	lowerBytes.ReflBytes = 1e5
	if ub := bytes.union(lowerBytes).union(a); ub.ReflBytes != 1e5 || !ub.covers(bytes) || bytes.covers(lowerBytes) {
		t.Errorf("byte floor union %+v", ub)
	}
}

func TestAttackDefaultsValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	b := c.Builtin
	if !b.Amplification.Enabled || b.Amplification.Severity != "critical" || b.SYNFlood.Severity != "critical" ||
		b.UDPFlood.Severity != "error" || b.ICMPFlood.Severity != "error" || b.PortScan.Severity != "warning" || b.HostScan.Severity != "warning" {
		t.Errorf("severities: %+v", b)
	}
	c.Builtin.Amplification.Params.Ports = []int{0, 123}
	c.Builtin.Amplification.Params.MinMbps = -1
	c.Builtin.SYNFlood.Params.MinSYNShare = 1.5
	c.Builtin.UDPFlood.Params.Window = time.Second
	c.Builtin.HostScan.Params.IPv4Prefix = 20
	c.Builtin.PortScan.Params.IgnoreSources = []string{"not-an-address"}
	c.Builtin.ICMPFlood.Overrides = map[string]Override[ICMPFloodParams]{"x": {Params: ICMPFloodParams{MinPPS: -5}}}
	err := c.Validate()
	for _, want := range []string{
		"builtin.amplification.params.ports: 0 is not a port",
		"builtin.amplification.params.min_mbps: -1 is not a positive number",
		"builtin.syn_flood.params.min_syn_share: 1.5 is outside (0, 1]",
		"builtin.udp_flood.params.window: 1s is outside 10s..1h",
		"builtin.host_scan.params.ipv4_prefix: 20 is not 8, 16, 24 or 32",
		`builtin.port_scan.params.ignore_sources: "not-an-address" is neither an address nor a prefix`,
		"builtin.icmp_flood.overrides.x.params.min_pps: -5 is not a positive number",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}

func TestReflectorNames(t *testing.T) {
	if r := reflectorOf(123); r.Name != "NTP" || r.Class != "ntp_reflection" {
		t.Errorf("123: %+v", r)
	}
	if r := reflectorOf(4242); r.Name != "UDP/4242" || r.Class != "udp_reflection" {
		t.Errorf("4242: %+v", r)
	}
	for _, p := range []int{19, 53, 123, 161, 389, 1900, 11211} {
		if !hasPort(DefaultReflectorPorts(), uint16(p)) {
			t.Errorf("default reflector ports lack %d", p)
		}
	}
}

func TestIgnoredAddr(t *testing.T) {
	list := []string{"192.0.2.0/25", "2001:db8::1", "::ffff:198.51.100.0/120"}
	for addr, want := range map[string]bool{
		"192.0.2.1": true, "192.0.2.200": false, "2001:db8::1": true, "2001:db8::2": false,
		"198.51.100.7": true, "203.0.113.1": false,
	} {
		if got := ignoredAddr(list, addr); got != want {
			t.Errorf("%s: %v, want %v", addr, got, want)
		}
	}
}

// TestJudgeAmplification: rows of ports the tenant does not count, of TCP
// or of non-reflector UDP do not add up to an attack.
func TestJudgeAmplification(t *testing.T) {
	p := Amplification.Defaults().Params
	rows := []destRow{
		{Proto: 17, Refl: 123, Packets: 60000, Bytes: 60000 * 468, Sources: 6},
		{Proto: 17, Refl: 4242, Packets: 60000, Bytes: 60000 * 1400, Sources: 50},
		{Proto: 6, Packets: 60000, Bytes: 60000 * 1400, Sources: 50},
		{Proto: 17, Svc: 443, Packets: 60000, Bytes: 60000 * 1400, Sources: 50},
	}
	if in, ok := judgeAmplification(p, "192.0.2.1", rows, 60); ok {
		t.Errorf("fired: %s", in.Annotations["summary"])
	}
	rows[0].Sources = 10
	in, ok := judgeAmplification(p, "192.0.2.1", rows, 60)
	if !ok || in.Annotations["summary"] != "192.0.2.1 receiving 3.74 Mbit/s of UDP from 10 sources on port 123: NTP reflection" ||
		in.Annotations["pps"] != "1000" || in.Labels["dst_address"] != "192.0.2.1" || len(in.Labels) != 1 {
		t.Errorf("%v %+v", ok, in)
	}
}

// countingDB counts the shared per-destination queries.
type countingDB struct {
	dbapi.Querier
	dest atomic.Int32
}

func (c *countingDB) Query(ctx context.Context, q string, args ...any) (dbapi.Rows, error) {
	if strings.Contains(q, "GROUP BY s, tenant, dst_address, ip_protocol") {
		c.dest.Add(1)
	}
	return c.Querier.Query(ctx, q, args...)
}

// TestFloodRulesShareOneQuery: the four flood rules of one tick read one
// query; a later tick, a lower floor or another database query again.
func TestFloodRulesShareOneQuery(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		b := newFB("t1", 1)
		e.Insert(t, concat(
			b.many(50, false, "192.0.2.200", udp, port(123), highPort, 0, 2000, 468),
			b.many(200, false, "192.0.2.10", tcp, highPort, port(443), 0x02, 3000, 44),
			b.many(300, false, "192.0.2.220", udp, highPort, highPort, 0, 5000, 80),
			b.many(100, false, "192.0.2.230", icmp, port(0), port(0x800), 0, 3000, 84),
		))
		floodShare.reset()
		db := &countingDB{Querier: e.Reader}
		c := DefaultConfig()
		c.Builtin.ICMPFlood.Overrides = map[string]Override[ICMPFloodParams]{"t2": {Params: ICMPFloodParams{MinPPS: 10}}}
		run := func(at time.Time, kinds ...registration) int {
			t.Helper()
			n := 0
			for _, k := range kinds {
				s, err := k.build(&c.Builtin, Deps{})
				if err != nil {
					t.Fatal(err)
				}
				found, err := s.evaluate(evalContext{ctx: context.Background(), now: at, tenants: []string{"t1"}, db: db})
				if err != nil {
					t.Fatal(err)
				}
				n += len(found)
			}
			return n
		}
		floods := []registration{Amplification, SYNFlood, UDPFlood, ICMPFlood}
		// The first tick learns what each rule needs: a rule whose needs
		// the result so far does not cover queries on its own.
		if n := run(attackEval.Add(-time.Minute), floods...); n != 0 || db.dest.Load() > 4 {
			t.Errorf("warm-up: %d findings, %d queries", n, db.dest.Load())
		}
		db.dest.Store(0)
		if n := run(attackEval, floods...); n != 4 || db.dest.Load() != 1 {
			t.Errorf("a tick: %d findings, %d queries, want 4 and 1", n, db.dest.Load())
		}
		if n := run(attackEval.Add(2*time.Second), floods...); n != 4 || db.dest.Load() != 1 {
			t.Errorf("2 s later: %d findings, %d queries, want 4 and 1", n, db.dest.Load())
		}
		if run(attackEval.Add(10*time.Second), SYNFlood, UDPFlood); db.dest.Load() != 2 {
			t.Errorf("the next tick: %d queries, want 2", db.dest.Load())
		}
		// The demands the rules left make the query serve them all.
		c.Builtin.SYNFlood.Params.MinPPS = 10
		if run(attackEval.Add(10*time.Second), SYNFlood); db.dest.Load() != 3 {
			t.Errorf("a lower floor: %d queries, want 3", db.dest.Load())
		}
		other := &countingDB{Querier: e.Reader}
		db = other
		if run(attackEval.Add(10*time.Second), ICMPFlood); other.dest.Load() != 1 {
			t.Errorf("another database: %d queries, want 1", other.dest.Load())
		}
	})
}

// TestFloodRulesShareConcurrently: rules evaluated at once (the
// scheduler's concurrency) wait for the one query under way.
func TestFloodRulesShareConcurrently(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		b := newFB("t1", 1)
		e.Insert(t, b.many(200, false, "192.0.2.10", tcp, highPort, port(443), 0x02, 3000, 44))
		floodShare.reset()
		db := &countingDB{Querier: e.Reader}
		c := DefaultConfig()
		var ss []*scheduled
		for _, k := range []registration{Amplification, SYNFlood, UDPFlood, ICMPFlood} {
			s, err := k.build(&c.Builtin, Deps{})
			if err != nil {
				t.Fatal(err)
			}
			ss = append(ss, s)
		}
		tick := func(at time.Time) []int {
			found := make([]int, len(ss))
			errs := make(chan error, len(ss))
			for i, s := range ss {
				go func() {
					f, err := s.evaluate(evalContext{ctx: context.Background(), now: at, tenants: []string{"t1"}, db: db})
					found[i] = len(f)
					errs <- err
				}()
			}
			for range ss {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			return found
		}
		tick(attackEval.Add(-time.Minute)) // learns the demands
		db.dest.Store(0)
		if found := tick(attackEval); db.dest.Load() != 1 || found[1] != 1 || found[0]+found[2]+found[3] != 0 {
			t.Errorf("%d queries, findings per rule %v; want 1 query and the SYN flood alone", db.dest.Load(), found)
		}
	})
}
