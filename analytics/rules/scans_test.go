package rules

import (
	"fmt"
	"slices"
	"testing"

	"github.com/flowhouse/flowhouse/flow"
)

// probes are one flow per (host, port) from src, with flags.
func (b fb) probes(s string, hosts []string, ports []uint16, flags uint8) []flow.Flow {
	var out []flow.Flow
	for _, h := range hosts {
		for _, p := range ports {
			out = append(out, b.f(len(out), s, h, tcp, 61337, p, flags, 1, 44))
		}
	}
	return out
}

func portRange(from, n int) []uint16 {
	out := make([]uint16, n)
	for i := range out {
		out[i] = uint16(from + i)
	}
	return out
}

func hostRange(format string, from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, from+i)
	}
	return out
}

func TestPortScanRule(t *testing.T) {
	b, s100 := newFB("t1", 1), newFB("t1", 100)
	ta, tb := newFB("a", 1), newFB("b", 1)
	target := []string{"192.0.2.50"}
	scan := func(b fb, n int) []flow.Flow { return b.probes("203.0.113.66", target, portRange(1, n), 0x02) }
	// What must not count: a server's answers to a client's many
	// ephemeral ports (ACK), RSTs without ACK, flows without flags.
	legit := concat(
		b.probes("198.51.100.5", []string{"192.0.2.60"}, portRange(40000, 300), 0x1a),
		b.probes("198.51.100.6", []string{"192.0.2.61"}, portRange(40000, 200), 0x04),
		b.probes("198.51.100.7", []string{"192.0.2.62"}, portRange(40000, 200), 0x00),
	)
	runCases(t, PortScan, []ruleCase[PortScanParams]{
		{name: "scan beside answers and resets", flows: concat(scan(b, 150), legit),
			want:      []string{"t1 dst_address=192.0.2.50,src_address=203.0.113.66"},
			summaries: []string{"203.0.113.66 probed 150 ports of 192.0.2.50 in 60s: port scan"}, class: "port_scan"},
		{name: "fin scan", flows: b.probes("203.0.113.66", target, portRange(1, 120), 0x01),
			want: []string{"t1 dst_address=192.0.2.50,src_address=203.0.113.66"}, class: "port_scan"},
		{name: "99 ports", flows: scan(b, 99)},
		{name: "100 ports over two hosts", flows: b.probes("203.0.113.66", []string{"192.0.2.50", "192.0.2.51"}, portRange(1, 60), 0x02)},
		{name: "bulk transfer", flows: b.bulk("203.0.113.240", "192.0.2.240")},
		{name: "sampled 1 in 100: 6 ports seen", flows: scan(s100, 6),
			want:      []string{"t1 dst_address=192.0.2.50,src_address=203.0.113.66"},
			summaries: []string{"probed 6 ports of 192.0.2.50 in 60s (sampled 1 in 100, about 600 probed): port scan"}},
		{name: "sampled 1 in 100: 4 ports seen", flows: scan(s100, 4)},
		{name: "ipv6", flows: b.probes("2001:db8:f::66", []string{"2001:db8::50"}, portRange(1, 120), 0x02),
			want: []string{"t1 dst_address=2001:db8::50,src_address=2001:db8:f::66"}, class: "port_scan"},
		{name: "tenants: b needs 200 ports", tenants: []string{"a", "b"}, flows: concat(scan(ta, 150), scan(tb, 150)),
			mod: func(c *Builtin[PortScanParams]) {
				c.Overrides = map[string]Override[PortScanParams]{"b": {Params: PortScanParams{MinPorts: 200}}}
			},
			want: []string{"a dst_address=192.0.2.50,src_address=203.0.113.66"}},
		{name: "ignored source", flows: scan(b, 150),
			mod: func(c *Builtin[PortScanParams]) { c.Params.IgnoreSources = []string{"203.0.113.66"} }},
	})
}

func TestHostScanRule(t *testing.T) {
	b, s100 := newFB("t1", 1), newFB("t1", 100)
	ta, tb := newFB("a", 1), newFB("b", 1)
	ssh := []uint16{22}
	sweep := func(b fb, hosts []string) []flow.Flow { return b.probes("203.0.113.77", hosts, ssh, 0x02) }
	twoNets := slices.Concat(hostRange("198.18.0.%d", 1, 20), hostRange("198.18.1.%d", 1, 20))
	runCases(t, HostScan, []ruleCase[HostScanParams]{
		{name: "sweep beside a client of many servers",
			flows:     concat(sweep(b, hostRange("192.0.2.%d", 1, 40)), b.probes("198.51.100.9", hostRange("192.0.2.%d", 100, 50), []uint16{443}, 0x1b)),
			want:      []string{"t1 dst_port=22,dst_prefix=192.0.2.0/24,src_address=203.0.113.77"},
			summaries: []string{"203.0.113.77 probed port 22 on 40 hosts of 192.0.2.0/24 in 60s: host scan"},
			class:     "host_scan"},
		{name: "31 hosts", flows: sweep(b, hostRange("192.0.2.%d", 1, 31))},
		{name: "40 hosts over two /24", flows: sweep(b, twoNets)},
		{name: "bulk transfer", flows: b.bulk("203.0.113.240", "192.0.2.240")},
		{name: "sampled 1 in 100: 6 hosts seen", flows: sweep(s100, hostRange("192.0.2.%d", 1, 6)),
			want:      []string{"t1 dst_port=22,dst_prefix=192.0.2.0/24,src_address=203.0.113.77"},
			summaries: []string{"on 6 hosts of 192.0.2.0/24 in 60s (sampled 1 in 100): host scan"}},
		{name: "sampled 1 in 100: 4 hosts seen", flows: sweep(s100, hostRange("192.0.2.%d", 1, 4))},
		{name: "ipv6 /64", flows: b.probes("2001:db8:f::77", hostRange("2001:db8:1:2::%x", 1, 40), ssh, 0x02),
			want: []string{"t1 dst_port=22,dst_prefix=2001:db8:1:2::/64,src_address=2001:db8:f::77"}, class: "host_scan"},
		{name: "tenants: b counts per /16", tenants: []string{"a", "b"}, flows: concat(sweep(ta, twoNets), sweep(tb, twoNets)),
			mod: func(c *Builtin[HostScanParams]) {
				c.Overrides = map[string]Override[HostScanParams]{"b": {Params: HostScanParams{IPv4Prefix: 16}}}
			},
			want: []string{"b dst_port=22,dst_prefix=198.18.0.0/16,src_address=203.0.113.77"}, summaries: []string{"on 40 hosts of 198.18.0.0/16"}},
	})
}
