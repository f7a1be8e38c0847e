package rules

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
)

// Helpers of the attack and scan rule tests: hand-built flows and a run
// of one rule through the built-in framework (defaults, overrides, merge).

// attackNow is the evaluation time: recent, because the embedded
// engine's TTL drops flows older than the retention as they are inserted.
var attackNow = time.Now().UTC().Truncate(time.Minute)

// attackEval is when a rule evaluates the minute before attackNow: its
// last slice, [attackNow-10s, attackNow), has settled.
var attackEval = attackNow.Add(DefaultSettle)

// fb builds flows received within the minute before now.
type fb struct {
	now    time.Time
	tenant string
	rate   uint32
	off    int
}

func newFB(tenant string, rate uint32) fb {
	return fb{now: attackNow, tenant: tenant, rate: max(rate, 1)}
}

// from shifts the sources of many by off, so that two groups of flows
// come from different hosts.
func (b fb) from(off int) fb { b.off = off; return b }

func ip(s string) flow.Addr { return flow.AddrFromNetip(netip.MustParseAddr(s)) }

// src is the i-th of many source addresses: IPv4 from the outside
// documentation ranges, IPv6 under 2001:db8:f::/48.
func src(i int, v6 bool) string {
	if v6 {
		return fmt.Sprintf("2001:db8:f:%x::%x", i/200, i%200+1)
	}
	nets := []string{"198.51.100", "203.0.113", "198.18.0", "198.18.1", "198.18.2"}
	return fmt.Sprintf("%s.%d", nets[(i/250)%len(nets)], i%250+2)
}

// f is one flow; packets are as exported (scaled by the rate in SQL).
func (b fb) f(i int, s, d string, proto uint8, sport, dport uint16, flags uint8, packets, size uint64) flow.Flow {
	recv := b.now.Add(-time.Duration(1+i%55) * time.Second).UnixMilli()
	sa, da := ip(s), ip(d)
	v := uint8(4)
	if sa.Netip().Is6() {
		v = 6
	}
	return flow.Flow{
		TimeReceivedMs: recv, TimeStartMs: recv - 2000, TimeEndMs: recv - 500,
		Protocol: flow.ProtoIPFIX, ExporterAddr: ip("192.0.2.254"), SamplingRate: b.rate, Tenant: b.tenant,
		SrcAddr: sa, DstAddr: da, SrcPort: sport, DstPort: dport, IPProto: proto, IPVersion: v,
		TCPFlags: flags, Packets: packets, Bytes: packets * size, InIf: 1, OutIf: 2,
	}
}

// many is n flows from n sources to dst carrying pps (sampling-scaled)
// over the 60 s window.
func (b fb) many(n int, v6 bool, dst string, proto uint8, sport, dport func(i int) uint16, flags uint8, pps float64, size uint64) []flow.Flow {
	per := max(1, uint64(pps*60/float64(n)/float64(b.rate)+0.5))
	out := make([]flow.Flow, n)
	for i := range out {
		out[i] = b.f(i, src(i+b.off, v6), dst, proto, sport(i), dport(i), flags, per, size)
	}
	return out
}

func port(p uint16) func(int) uint16 { return func(int) uint16 { return p } }
func highPort(i int) uint16          { return uint16(1024 + (i*7919)%64000) }

// bulk is a legitimate TCP transfer between one server and one client,
// a few times a busy host's volume: the handshake (SYN, SYN-ACK in the
// first records), data with ACK from the server, ACKs from the client.
func (b fb) bulk(server, client string) []flow.Flow {
	var out []flow.Flow
	for i := range 60 {
		flags := uint8(0x18)
		if i == 0 {
			flags = 0x1a
		}
		out = append(out,
			b.f(i, server, client, 6, 443, 50080, flags, 40000/uint64(b.rate)+1, 1500), // ~8 Mbit/s, 670 pps
			b.f(i, client, server, 6, 50080, 443, flags, 20000/uint64(b.rate)+1, 52))
	}
	return out
}

func concat(lists ...[]flow.Flow) []flow.Flow { return slices.Concat(lists...) }

// ruleCase is one table row of a rule's test: flows, the tenants the run
// covers, a change of the rule's configuration, and what it must find.
type ruleCase[P Params] struct {
	name    string
	flows   []flow.Flow
	tenants []string // default: t1
	mod     func(*Builtin[P])
	// want: the subjects found, "tenant key=value,...", sorted.
	want []string
	// summaries: a substring of each finding's summary, in want's order.
	summaries []string
	class     string // every finding's classification
}

// runKind evaluates k once at attackEval through the framework, with
// defaults changed by mod: the first evaluation of a new evaluator
// backfills the whole window, the minute before attackNow.
func runKind[P Params](t *testing.T, e engine, k Kind[P], tenants []string, mod func(*Builtin[P])) []Finding {
	t.Helper()
	floodShare.reset()
	var c BuiltinConfig
	k.setDefaults(&c)
	// The cases spread their flows over the minute before attackNow, so
	// they pin the window to that minute, whatever the default.
	if w := reflect.ValueOf(&k.Config(&c).Params).Elem().FieldByName("Window"); w.IsValid() {
		w.Set(reflect.ValueOf(time.Minute))
	}
	if mod != nil {
		mod(k.Config(&c))
	}
	if errs := k.validate(&c, "builtin"); len(errs) > 0 {
		t.Fatalf("config: %v", errs)
	}
	s, err := k.build(&c, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	var run []string
	for _, tn := range tenants {
		if !s.disabled[tn] {
			run = append(run, tn)
		}
	}
	out, err := s.evaluate(evalContext{ctx: context.Background(), now: attackEval, tenants: run, db: e.Reader})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func subject(f Finding) string {
	keys := make([]string, 0, len(f.Labels))
	for k := range f.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + f.Labels[k]
	}
	return f.Tenant + " " + strings.Join(parts, ",")
}

func runCases[P Params](t *testing.T, k Kind[P], cases []ruleCase[P]) {
	forEachEngine(t, func(t *testing.T, e engine) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				e.Exec(t, "TRUNCATE TABLE flows")
				e.Insert(t, c.flows)
				tenants := c.tenants
				if tenants == nil {
					tenants = []string{"t1"}
				}
				got := runKind(t, e, k, tenants, c.mod)
				checkFindings(t, got, c.want, c.summaries, c.class)
			})
		}
	})
}

func checkFindings(t *testing.T, got []Finding, want, summaries []string, class string) {
	t.Helper()
	subjects := make([]string, len(got))
	for i, f := range got {
		subjects[i] = subject(f)
	}
	slices.Sort(subjects)
	if !slices.Equal(subjects, want) && !(len(subjects) == 0 && len(want) == 0) {
		for _, f := range got {
			t.Logf("found %s: %s", subject(f), f.Annotations["summary"])
		}
		t.Fatalf("subjects %q, want %q", subjects, want)
	}
	slices.SortFunc(got, func(a, b Finding) int { return strings.Compare(subject(a), subject(b)) })
	for i, f := range got {
		if i < len(summaries) && !strings.Contains(f.Annotations["summary"], summaries[i]) {
			t.Errorf("%s: summary %q does not contain %q", subject(f), f.Annotations["summary"], summaries[i])
		}
		if class != "" && f.Annotations["classification"] != class {
			t.Errorf("%s: classification %q, want %q", subject(f), f.Annotations["classification"], class)
		}
		if f.Annotations["description"] == "" || f.Value <= 0 {
			t.Errorf("%s: description %q, value %v", subject(f), f.Annotations["description"], f.Value)
		}
	}
}
