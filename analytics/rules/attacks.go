package rules

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/notify"
)

// The flood rules: amplification, syn_flood, udp_flood, icmp_flood. Each
// classifies the traffic to one destination (reflector source ports, TCP
// flags, source cardinality, packet size) rather than waiting for a huge
// volume, and all read the shared per-destination query of
// attacks_shared.go. The subject of an alert is the destination alone, so
// that it stays the same while the attack's numbers change.

// reflector is a UDP service abused for reflection.
type reflector struct {
	Port  uint16
	Name  string // shown: "NTP"
	Class string // the classification annotation: "ntp_reflection"
}

var reflectors = []reflector{
	{19, "chargen", "chargen_reflection"},
	{53, "DNS", "dns_reflection"},
	{111, "portmap", "portmap_reflection"},
	{123, "NTP", "ntp_reflection"},
	{137, "NetBIOS", "netbios_reflection"},
	{161, "SNMP", "snmp_reflection"},
	{389, "CLDAP", "cldap_reflection"},
	{520, "RIP", "rip_reflection"},
	{1434, "MSSQL", "mssql_reflection"},
	{1900, "SSDP", "ssdp_reflection"},
	{3283, "ARD", "ard_reflection"},
	{3702, "WS-Discovery", "wsd_reflection"},
	{5353, "mDNS", "mdns_reflection"},
	{10001, "Ubiquiti discovery", "ubiquiti_reflection"},
	{11211, "memcached", "memcached_reflection"},
}

// reflectorOf names port's service; ports a user added get a generic name.
func reflectorOf(port uint16) reflector {
	for _, r := range reflectors {
		if r.Port == port {
			return r
		}
	}
	return reflector{port, fmt.Sprintf("UDP/%d", port), "udp_reflection"}
}

// DefaultReflectorPorts are the source ports of amplification.
func DefaultReflectorPorts() []int {
	out := make([]int, len(reflectors))
	for i, r := range reflectors {
		out[i] = int(r.Port)
	}
	return out
}

// DefaultServicePorts are UDP destination ports where a busy server
// legitimately receives many small packets from many clients (DNS, NTP,
// QUIC, IKE/IPsec NAT-T, OpenVPN, WireGuard, STUN/TURN, SIP, syslog,
// SNMP traps, flow export, DHCP, RADIUS): udp_flood leaves them out.
func DefaultServicePorts() []int {
	return []int{53, 67, 123, 162, 443, 500, 514, 1194, 1812, 1813, 2055, 3478, 4500, 4739, 5060, 6343, 9995, 51820}
}

// DefaultFloodWindow is the floods' window: long enough to average flows
// reported at 15-30 s active timeouts (a record of 60 s of traffic counts
// at most twice its rate), short enough that an attack at a few times a
// floor fills it to the floor within about one interval.
const DefaultFloodWindow = 30 * time.Second

// floodDefaults are the timing every flood rule starts from.
func floodDefaults[P Params](severity notify.Severity, p P) Builtin[P] {
	return Builtin[P]{
		Enabled: true, Interval: 10 * time.Second, Timeout: 10 * time.Second, Severity: severity,
		// At once: the rate is already an average over the 60 s window, so
		// a second look would see the same burst again (it stays in the
		// window for a minute) and only add an interval of delay.
		For:           Evaluations(0),
		KeepFiringFor: For(2 * time.Minute), // attacks pulse: no resolve between waves
		Params:        p,
	}
}

// flood is the evaluation every flood rule shares: the shared slices per
// slicing, then the rule's judgement of each destination of its tenants.
type flood[P Params] struct {
	slicing func(P) slicing
	// demand is what the rule needs of the query for one tenant's
	// parameters (slicing and tenants are filled in).
	demand func(P) destDemand
	ignore func(P) []string
	judge  func(p P, dst string, rows []destRow, secs float64) (alerts.Instance, bool)
}

func (f flood[P]) Evaluate(ctx context.Context, env *Env[P]) ([]Finding, error) {
	keys, groups := bySlicing(env.Tenants, func(t string) slicing { return f.slicing(env.Params(t)) })
	var out []Finding
	for _, key := range keys {
		tenants := groups[key]
		d := destDemand{Window: key.Window, Slice: key.Slice, Settle: key.Settle, Floor: math.Inf(1)}
		for _, t := range tenants {
			td := f.demand(env.Params(t))
			td.Window, td.Slice, td.Settle, td.Tenants = key.Window, key.Slice, key.Settle, []string{t}
			d = d.union(td)
		}
		rows, secs, err := floodShare.get(ctx, env.DB, env.Rule, env.Now, d)
		if err != nil {
			return nil, err
		}
		if secs <= 0 {
			continue
		}
		for k, rs := range rows {
			if !slices.Contains(tenants, k.Tenant) {
				continue // another rule's tenant, in a shared result
			}
			p := env.Params(k.Tenant)
			if ignoredAddr(f.ignore(p), k.Dst) {
				continue
			}
			if in, ok := f.judge(p, k.Dst, rs, secs); ok {
				out = append(out, Finding{Tenant: k.Tenant, Instance: in})
			}
		}
	}
	slices.SortFunc(out, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.Labels["dst_address"], b.Labels["dst_address"]))
	})
	return out, nil
}

// volume is a sum of rows.
type volume struct {
	Packets, Bytes float64
	Sources        uint64
}

func (v *volume) add(r destRow) {
	v.Packets += r.Packets
	v.Bytes += r.Bytes
	v.Sources += r.Sources
}

func (v volume) avg() float64 {
	if v.Packets == 0 {
		return 0
	}
	return v.Bytes / v.Packets
}

// floodInstance is an instance whose subject is the destination.
func floodInstance(dst string, value float64, class, summary, description string, numbers map[string]string) alerts.Instance {
	ann := map[string]string{
		notify.AnnotationSummary: summary,
		"description":            description,
		"classification":         class,
	}
	for k, v := range numbers {
		ann[k] = v
	}
	return alerts.Instance{Labels: map[string]string{"dst_address": dst}, Value: value, Annotations: ann}
}

func fmtNum(v float64) string { return fmt.Sprintf("%.0f", v) }

// AmplificationParams are the parameters of amplification.
type AmplificationParams struct {
	Window time.Duration `mapstructure:"window" yaml:"window"`
	// Slice: the window is read in slices of this length, each once;
	// Settle: a slice is read this long after it ended.
	Slice  time.Duration `mapstructure:"slice" yaml:"slice"`
	Settle time.Duration `mapstructure:"settle" yaml:"settle"`
	// Ports are the reflector source ports.
	Ports             []int   `mapstructure:"ports" yaml:"ports"`
	MinSources        int     `mapstructure:"min_sources" yaml:"min_sources"`
	MinAvgPacketBytes float64 `mapstructure:"min_avg_packet_bytes" yaml:"min_avg_packet_bytes"`
	// The volume must pass one of the floors.
	MinMbps            float64  `mapstructure:"min_mbps" yaml:"min_mbps"`
	MinPPS             float64  `mapstructure:"min_pps" yaml:"min_pps"`
	IgnoreDestinations []string `mapstructure:"ignore_destinations" yaml:"ignore_destinations"`
}

func (p AmplificationParams) Validate() error {
	var e paramErrs
	e.window("window", p.Window)
	e.slicing(p.Window, p.Slice, p.Settle)
	e.ports("ports", p.Ports, false)
	e.positive("min_sources", float64(p.MinSources))
	e.positive("min_avg_packet_bytes", p.MinAvgPacketBytes)
	e.positive("min_mbps", p.MinMbps)
	e.positive("min_pps", p.MinPPS)
	e.prefixes("ignore_destinations", p.IgnoreDestinations)
	return errors.Join(e...)
}

// Amplification detects UDP reflection: traffic from reflector ports, of
// many sources and large packets, to one destination.
var Amplification = Kind[AmplificationParams]{
	Name:        "amplification",
	Description: "UDP reflection/amplification: large packets from many sources on reflector ports (DNS, NTP, SSDP, memcached, CLDAP, ...) to one destination",
	Defaults: func() Builtin[AmplificationParams] {
		return floodDefaults(notify.SeverityCritical, AmplificationParams{
			Window: DefaultFloodWindow, Slice: DefaultSlice, Settle: DefaultSettle, Ports: DefaultReflectorPorts(), MinSources: 10, MinAvgPacketBytes: 300,
			MinMbps: 2, MinPPS: 1000,
		})
	},
	Config: func(c *BuiltinConfig) *Builtin[AmplificationParams] { return &c.Amplification },
	New: func(deps Deps) (Evaluator[AmplificationParams], error) {
		registerSliceMetrics(deps.Registerer)
		return flood[AmplificationParams]{
			slicing: func(p AmplificationParams) slicing { return p.slicing() },
			demand: func(p AmplificationParams) destDemand {
				// Either floor suffices: packets, or bytes of large packets.
				return destDemand{Refl: toPorts(p.Ports), Floor: prefilterFloor(p.MinPPS, p.Window),
					ReflBytes: prefilterFloor(p.MinMbps*1e6/8, p.Window), Sources: p.MinSources}
			},
			ignore: func(p AmplificationParams) []string { return p.IgnoreDestinations },
			judge:  judgeAmplification,
		}, nil
	},
}

func judgeAmplification(p AmplificationParams, dst string, rows []destRow, secs float64) (alerts.Instance, bool) {
	var v volume
	byPort := map[uint16]*volume{}
	for _, r := range rows {
		if r.Proto != 17 || r.Refl == 0 || !hasPort(p.Ports, r.Refl) {
			continue
		}
		v.add(r)
		if byPort[r.Refl] == nil {
			byPort[r.Refl] = &volume{}
		}
		byPort[r.Refl].add(r)
	}
	bps, pps := v.Bytes*8/secs, v.Packets/secs
	if v.Packets == 0 || v.Sources < uint64(p.MinSources) || v.avg() < p.MinAvgPacketBytes ||
		(bps < p.MinMbps*1e6 && pps < p.MinPPS) {
		return alerts.Instance{}, false
	}
	ports := make([]uint16, 0, len(byPort))
	for port := range byPort {
		ports = append(ports, port)
	}
	// The dominant vector first: most bytes, then the lower port.
	slices.SortFunc(ports, func(a, b uint16) int {
		return cmp.Or(cmp.Compare(byPort[b].Bytes, byPort[a].Bytes), cmp.Compare(a, b))
	})
	top := reflectorOf(ports[0])
	vectors := make([]string, len(ports))
	for i, port := range ports {
		pv := byPort[port]
		vectors[i] = fmt.Sprintf("%s (port %d): %s, %d sources, %.0f bytes per packet",
			reflectorOf(port).Name, port, HumanBits(pv.Bytes*8/secs), pv.Sources, pv.avg())
	}
	summary := fmt.Sprintf("%s receiving %s of UDP from %d sources on port %d: %s reflection",
		dst, HumanBits(bps), v.Sources, top.Port, top.Name)
	if len(ports) > 1 {
		summary += fmt.Sprintf(" (and %d more reflector ports)", len(ports)-1)
	}
	desc := fmt.Sprintf("UDP from reflector ports to %s over the last %s: %s, %s, %.0f bytes per packet. Vectors: %s.",
		dst, fmtWindow(secs), HumanBits(bps), HumanPackets(pps), v.avg(), strings.Join(vectors, "; "))
	return floodInstance(dst, bps, top.Class, summary, desc, map[string]string{
		"bps": fmtNum(bps), "pps": fmtNum(pps), "sources": fmt.Sprint(v.Sources),
		"avg_packet_bytes": fmtNum(v.avg()), "reflector_port": fmt.Sprint(top.Port), "reflector": top.Name,
	}), true
}
