package rules

import (
	"testing"

	"github.com/flowhouse/flowhouse/flow"
)

// Flood rules on both engines: for each, an attack, negatives close to
// the thresholds, the bulk transfer, a sampled attack, IPv6 and two
// tenants of which one overrides a parameter.

const udp, tcp, icmp, icmp6 = 17, 6, 1, 58

func TestAmplificationRule(t *testing.T) {
	b := newFB("t1", 1)
	ntp := func(b fb, n int, pps float64, size uint64) []flow.Flow {
		return b.many(n, false, "192.0.2.200", udp, port(123), highPort, 0, pps, size)
	}
	resolver := b.many(40, false, "192.0.2.53", udp, port(53), highPort, 0, 3000, 150)
	s100 := newFB("t1", 100)
	ta, tb, tc := newFB("a", 1), newFB("b", 1), newFB("c", 1)
	runCases(t, Amplification, []ruleCase[AmplificationParams]{
		{name: "ntp reflection beside a busy resolver", flows: concat(ntp(b, 50, 2000, 468), resolver),
			want:      []string{"t1 dst_address=192.0.2.200"},
			summaries: []string{"192.0.2.200 receiving 7.49 Mbit/s of UDP from 50 sources on port 123: NTP reflection"},
			class:     "ntp_reflection"},
		{name: "9 sources", flows: ntp(b, 9, 2000, 468)},
		{name: "small packets", flows: ntp(b, 50, 2000, 290)},
		{name: "below both volume floors", flows: ntp(b, 25, 500, 468)},
		{name: "multi-vector: DNS dominant",
			flows: concat(ntp(b, 30, 1000, 468), b.many(20, false, "192.0.2.200", udp, port(53), highPort, 0, 1000, 1400)),
			want:  []string{"t1 dst_address=192.0.2.200"}, summaries: []string{"from 50 sources on port 53: DNS reflection (and 1 more"},
			class: "dns_reflection"},
		{name: "bulk transfer", flows: b.bulk("203.0.113.240", "192.0.2.240")},
		{name: "sampled 1 in 100", flows: s100.many(30, false, "192.0.2.200", udp, port(11211), highPort, 0, 2000, 1400),
			want:      []string{"t1 dst_address=192.0.2.200"},
			summaries: []string{"192.0.2.200 receiving 22.4 Mbit/s of UDP from 30 sources on port 11211: memcached reflection"},
			class:     "memcached_reflection"},
		{name: "ipv6", flows: b.many(20, true, "2001:db8::200", udp, port(389), highPort, 0, 1500, 1400),
			want: []string{"t1 dst_address=2001:db8::200"}, class: "cldap_reflection"},
		{name: "tenants: b needs 100 sources, c counts only chargen", tenants: []string{"a", "b", "c"},
			flows: concat(ntp(ta, 50, 2000, 468), ntp(tb, 50, 2000, 468), ntp(tc, 50, 2000, 468)),
			mod: func(c *Builtin[AmplificationParams]) {
				c.Overrides = map[string]Override[AmplificationParams]{
					"b": {Params: AmplificationParams{MinSources: 100}},
					"c": {Params: AmplificationParams{Ports: []int{19}}},
				}
			},
			want: []string{"a dst_address=192.0.2.200"}, class: "ntp_reflection"},
		{name: "ignored destination", flows: ntp(b, 50, 2000, 468),
			mod: func(c *Builtin[AmplificationParams]) { c.Params.IgnoreDestinations = []string{"192.0.2.0/24"} }},
	})
}

func TestSYNFloodRule(t *testing.T) {
	b := newFB("t1", 1)
	syn := func(b fb, n int, v6 bool, dst string, dport uint16, pps float64) []flow.Flow {
		return b.many(n, v6, dst, tcp, highPort, port(dport), 0x02, pps, 44)
	}
	legit := func(n int, pps float64) []flow.Flow {
		return b.from(1000).many(n, false, "192.0.2.10", tcp, highPort, port(443), 0x1b, pps, 400)
	}
	s100 := newFB("t1", 100)
	ta, tb := newFB("a", 1), newFB("b", 1)
	runCases(t, SYNFlood, []ruleCase[SYNFloodParams]{
		{name: "flood on a server", flows: concat(syn(b, 200, false, "192.0.2.10", 443, 3000), legit(50, 1000)),
			want:      []string{"t1 dst_address=192.0.2.10"},
			summaries: []string{"192.0.2.10 receiving 3 kpps of TCP SYN without ACK (75% of its TCP packets) from 200 sources, mostly to port 443: SYN flood"},
			class:     "syn_flood"},
		{name: "busy server with stray SYNs", flows: concat(syn(b, 100, false, "192.0.2.10", 443, 1500), legit(400, 20000))},
		{name: "share 44%", flows: concat(syn(b, 100, false, "192.0.2.10", 443, 1200), legit(100, 1500))},
		{name: "900 pps", flows: syn(b, 100, false, "192.0.2.10", 443, 900)},
		{name: "9 sources", flows: syn(b, 9, false, "192.0.2.10", 443, 3000)},
		{name: "bulk transfer", flows: b.bulk("203.0.113.240", "192.0.2.240")},
		{name: "sampled 1 in 100", flows: syn(s100, 300, false, "192.0.2.10", 443, 1500),
			want: []string{"t1 dst_address=192.0.2.10"}, summaries: []string{"receiving 1.5 kpps of TCP SYN"}, class: "syn_flood"},
		{name: "ipv6", flows: syn(b, 100, true, "2001:db8::10", 80, 2000),
			want: []string{"t1 dst_address=2001:db8::10"}, summaries: []string{"mostly to port 80: SYN flood"}, class: "syn_flood"},
		{name: "tenants: b needs 5000 pps", tenants: []string{"a", "b"},
			flows: concat(syn(ta, 200, false, "192.0.2.10", 443, 3000), syn(tb, 200, false, "192.0.2.10", 443, 3000)),
			mod: func(c *Builtin[SYNFloodParams]) {
				c.Overrides = map[string]Override[SYNFloodParams]{"b": {Params: SYNFloodParams{MinPPS: 5000}}}
			},
			want: []string{"a dst_address=192.0.2.10"}},
	})
}

func TestUDPFloodRule(t *testing.T) {
	b := newFB("t1", 1)
	flood := func(b fb, n int, v6 bool, dst string, pps float64, size uint64) []flow.Flow {
		return b.many(n, v6, dst, udp, highPort, func(i int) uint16 { return highPort(i + 17) }, 0, pps, size)
	}
	one := func(s, d string, sport, dport uint16, pps float64, size uint64) []flow.Flow {
		var out []flow.Flow
		for i := range 30 {
			out = append(out, b.f(i, s, d, udp, sport, dport, 0, uint64(pps*2), size))
		}
		return out
	}
	// What must not fire: a QUIC download, IPsec and WireGuard tunnels,
	// a video call, a busy QUIC server, reflection (amplification's).
	legit := concat(
		one("203.0.113.5", "192.0.2.11", 443, 51000, 20000, 1200),
		one("203.0.113.6", "192.0.2.12", 4500, 4500, 8000, 1400),
		one("203.0.113.7", "192.0.2.13", 51820, 40000, 5000, 100),
		b.many(3, false, "192.0.2.15", udp, port(3478), highPort, 0, 3000, 1100),
		b.many(200, false, "192.0.2.14", udp, highPort, port(443), 0, 6000, 90),
		b.many(100, false, "192.0.2.16", udp, port(123), highPort, 0, 5000, 76),
	)
	dns := func(b fb) []flow.Flow { return b.many(200, false, "192.0.2.53", udp, highPort, port(53), 0, 4000, 70) }
	s100 := newFB("t1", 100)
	ta, tb := newFB("a", 1), newFB("b", 1)
	runCases(t, UDPFlood, []ruleCase[UDPFloodParams]{
		{name: "flood beside downloads, tunnels and servers", flows: concat(flood(b, 300, false, "192.0.2.220", 5000, 80), legit),
			want:      []string{"t1 dst_address=192.0.2.220"},
			summaries: []string{"192.0.2.220 receiving 5 kpps (3.2 Mbit/s) of UDP from 300 sources, 80 bytes per packet: UDP flood"},
			class:     "udp_flood"},
		{name: "49 sources", flows: flood(b, 49, false, "192.0.2.220", 5000, 80)},
		{name: "620-byte packets", flows: flood(b, 300, false, "192.0.2.220", 5000, 620)},
		{name: "1900 pps", flows: flood(b, 300, false, "192.0.2.220", 1900, 80)},
		{name: "bulk transfer", flows: b.bulk("203.0.113.240", "192.0.2.240")},
		{name: "sampled 1 in 100", flows: flood(s100, 200, false, "192.0.2.220", 3000, 64),
			want: []string{"t1 dst_address=192.0.2.220"}, summaries: []string{"receiving 3 kpps"}, class: "udp_flood"},
		{name: "ipv6", flows: flood(b, 100, true, "2001:db8::220", 4000, 100),
			want: []string{"t1 dst_address=2001:db8::220"}, class: "udp_flood"},
		{name: "tenants: b does not exclude DNS", tenants: []string{"a", "b"}, flows: concat(dns(ta), dns(tb)),
			mod: func(c *Builtin[UDPFloodParams]) {
				c.Overrides = map[string]Override[UDPFloodParams]{"b": {Params: UDPFloodParams{ExcludeDstPorts: []int{443}}}}
			},
			want: []string{"b dst_address=192.0.2.53"}, summaries: []string{"from 200 sources, 70 bytes per packet"}},
	})
}

func TestICMPFloodRule(t *testing.T) {
	b := newFB("t1", 1)
	echo := func(b fb, n int, v6 bool, dst string, pps float64) []flow.Flow {
		proto := uint8(icmp)
		if v6 {
			proto = icmp6
		}
		return b.many(n, v6, dst, proto, port(0), port(8<<8), 0, pps, 84)
	}
	s100 := newFB("t1", 100)
	ta, tb := newFB("a", 1), newFB("b", 1)
	runCases(t, ICMPFlood, []ruleCase[ICMPFloodParams]{
		{name: "flood beside monitoring pings", flows: concat(echo(b, 100, false, "192.0.2.230", 3000), echo(b, 1, false, "192.0.2.231", 10)),
			want:      []string{"t1 dst_address=192.0.2.230"},
			summaries: []string{"192.0.2.230 receiving 3 kpps (2.02 Mbit/s) of ICMP from 100 sources: ICMP flood"},
			class:     "icmp_flood"},
		{name: "900 pps", flows: echo(b, 100, false, "192.0.2.230", 900)},
		{name: "2 sources", flows: echo(b, 2, false, "192.0.2.230", 5000)},
		{name: "bulk transfer", flows: b.bulk("203.0.113.240", "192.0.2.240")},
		{name: "sampled 1 in 100", flows: echo(s100, 50, false, "192.0.2.230", 2000),
			want: []string{"t1 dst_address=192.0.2.230"}, summaries: []string{"receiving 2 kpps"}, class: "icmp_flood"},
		{name: "ipv6", flows: echo(b, 50, true, "2001:db8::230", 2000),
			want: []string{"t1 dst_address=2001:db8::230"}, class: "icmp_flood"},
		{name: "tenants: b needs 10 kpps", tenants: []string{"a", "b"},
			flows: concat(echo(ta, 100, false, "192.0.2.230", 3000), echo(tb, 100, false, "192.0.2.230", 3000)),
			mod: func(c *Builtin[ICMPFloodParams]) {
				c.Overrides = map[string]Override[ICMPFloodParams]{"b": {Params: ICMPFloodParams{MinPPS: 10000}}}
			},
			want: []string{"a dst_address=192.0.2.230"}},
	})
}
