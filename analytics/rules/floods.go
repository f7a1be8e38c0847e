package rules

import (
	"errors"
	"fmt"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/notify"
)

// SYNFloodParams are the parameters of syn_flood.
type SYNFloodParams struct {
	Window time.Duration `mapstructure:"window" yaml:"window"`
	// Slice: the window is read in slices of this length, each once;
	// Settle: a slice is read this long after it ended.
	Slice  time.Duration `mapstructure:"slice" yaml:"slice"`
	Settle time.Duration `mapstructure:"settle" yaml:"settle"`
	// MinPPS: SYN-only packets per second to the destination.
	MinPPS float64 `mapstructure:"min_pps" yaml:"min_pps"`
	// MinSYNShare: SYN-only packets as a share of all TCP packets to it.
	MinSYNShare float64 `mapstructure:"min_syn_share" yaml:"min_syn_share"`
	// MinSources: distinct sources of the SYNs. A fast port scan is SYNs
	// from one source too: it is port_scan's.
	MinSources         int      `mapstructure:"min_sources" yaml:"min_sources"`
	IgnoreDestinations []string `mapstructure:"ignore_destinations" yaml:"ignore_destinations"`
}

func (p SYNFloodParams) Validate() error {
	var e paramErrs
	e.window("window", p.Window)
	e.slicing(p.Window, p.Slice, p.Settle)
	e.positive("min_pps", p.MinPPS)
	e.share("min_syn_share", p.MinSYNShare)
	e.positive("min_sources", float64(p.MinSources))
	e.prefixes("ignore_destinations", p.IgnoreDestinations)
	return errors.Join(e...)
}

// SYNFlood detects SYNs that are not answered: a destination whose TCP
// packets are mostly SYN without ACK. A busy server completes its
// handshakes, so its flows carry ACK and the share stays low.
var SYNFlood = Kind[SYNFloodParams]{
	Name:        "syn_flood",
	Description: "TCP SYN flood: most TCP packets to a destination are SYN without ACK, above a rate",
	Defaults: func() Builtin[SYNFloodParams] {
		return floodDefaults(notify.SeverityCritical, SYNFloodParams{Window: DefaultFloodWindow, Slice: DefaultSlice, Settle: DefaultSettle, MinPPS: 1000, MinSYNShare: 0.5, MinSources: 10})
	},
	Config: func(c *BuiltinConfig) *Builtin[SYNFloodParams] { return &c.SYNFlood },
	New: func(deps Deps) (Evaluator[SYNFloodParams], error) {
		registerSliceMetrics(deps.Registerer)
		return flood[SYNFloodParams]{
			slicing: func(p SYNFloodParams) slicing { return p.slicing() },
			demand: func(p SYNFloodParams) destDemand {
				return destDemand{Floor: prefilterFloor(p.MinPPS, p.Window), Sources: p.MinSources}
			},
			ignore: func(p SYNFloodParams) []string { return p.IgnoreDestinations },
			judge:  judgeSYNFlood,
		}, nil
	},
}

func judgeSYNFlood(p SYNFloodParams, dst string, rows []destRow, secs float64) (alerts.Instance, bool) {
	var tcp volume
	var syn float64
	var port uint16
	var sources uint64
	for _, r := range rows {
		if r.Proto != 6 {
			continue
		}
		tcp.add(r)
		syn += r.SYN
		sources += r.SYNSources
		port = r.TopPort
	}
	if tcp.Packets == 0 {
		return alerts.Instance{}, false
	}
	pps, share := syn/secs, syn/tcp.Packets
	if pps < p.MinPPS || share < p.MinSYNShare || sources < uint64(p.MinSources) {
		return alerts.Instance{}, false
	}
	summary := fmt.Sprintf("%s receiving %s of TCP SYN without ACK (%.0f%% of its TCP packets) from %d sources, mostly to port %d: SYN flood",
		dst, HumanPackets(pps), share*100, sources, port)
	desc := fmt.Sprintf("TCP to %s over the last %s: %s of SYN-only packets from %d sources, %.0f%% of %s of TCP (%s) from %d sources; top destination port of the SYNs: %d.",
		dst, fmtWindow(secs), HumanPackets(pps), sources, share*100, HumanPackets(tcp.Packets/secs),
		HumanBits(tcp.Bytes*8/secs), tcp.Sources, port)
	return floodInstance(dst, pps, "syn_flood", summary, desc, map[string]string{
		"pps": fmtNum(pps), "syn_share": fmt.Sprintf("%.3f", share), "sources": fmt.Sprint(sources),
		"tcp_sources": fmt.Sprint(tcp.Sources), "bps": fmtNum(tcp.Bytes * 8 / secs), "dst_port": fmt.Sprint(port),
	}), true
}

// UDPFloodParams are the parameters of udp_flood.
type UDPFloodParams struct {
	Window time.Duration `mapstructure:"window" yaml:"window"`
	// Slice: the window is read in slices of this length, each once;
	// Settle: a slice is read this long after it ended.
	Slice      time.Duration `mapstructure:"slice" yaml:"slice"`
	Settle     time.Duration `mapstructure:"settle" yaml:"settle"`
	MinPPS     float64       `mapstructure:"min_pps" yaml:"min_pps"`
	MinSources int           `mapstructure:"min_sources" yaml:"min_sources"`
	// MaxAvgPacketBytes: floods are of small packets; downloads, video
	// and tunnels of large ones.
	MaxAvgPacketBytes float64 `mapstructure:"max_avg_packet_bytes" yaml:"max_avg_packet_bytes"`
	// ExcludeSrcPorts: UDP from these ports is amplification's business.
	ExcludeSrcPorts []int `mapstructure:"exclude_src_ports" yaml:"exclude_src_ports"`
	// ExcludeDstPorts: services that receive many small packets from many
	// clients.
	ExcludeDstPorts    []int    `mapstructure:"exclude_dst_ports" yaml:"exclude_dst_ports"`
	IgnoreDestinations []string `mapstructure:"ignore_destinations" yaml:"ignore_destinations"`
}

func (p UDPFloodParams) Validate() error {
	var e paramErrs
	e.window("window", p.Window)
	e.slicing(p.Window, p.Slice, p.Settle)
	e.positive("min_pps", p.MinPPS)
	e.positive("min_sources", float64(p.MinSources))
	e.positive("max_avg_packet_bytes", p.MaxAvgPacketBytes)
	e.ports("exclude_src_ports", p.ExcludeSrcPorts, true)
	e.ports("exclude_dst_ports", p.ExcludeDstPorts, true)
	e.prefixes("ignore_destinations", p.IgnoreDestinations)
	return errors.Join(e...)
}

// UDPFlood detects floods of small UDP packets from many sources; what
// comes from reflector ports is amplification, what goes to service ports
// (DNS, QUIC, VPN, ...) a busy server.
var UDPFlood = Kind[UDPFloodParams]{
	Name:        "udp_flood",
	Description: "UDP flood: small UDP packets from many sources to one destination, not from reflector ports nor to service ports",
	Defaults: func() Builtin[UDPFloodParams] {
		return floodDefaults(notify.SeverityError, UDPFloodParams{
			Window: DefaultFloodWindow, Slice: DefaultSlice, Settle: DefaultSettle, MinPPS: 2000, MinSources: 50, MaxAvgPacketBytes: 600,
			ExcludeSrcPorts: DefaultReflectorPorts(), ExcludeDstPorts: DefaultServicePorts(),
		})
	},
	Config: func(c *BuiltinConfig) *Builtin[UDPFloodParams] { return &c.UDPFlood },
	New: func(deps Deps) (Evaluator[UDPFloodParams], error) {
		registerSliceMetrics(deps.Registerer)
		return flood[UDPFloodParams]{
			slicing: func(p UDPFloodParams) slicing { return p.slicing() },
			demand: func(p UDPFloodParams) destDemand {
				return destDemand{Refl: toPorts(p.ExcludeSrcPorts), Svc: toPorts(p.ExcludeDstPorts),
					Floor: prefilterFloor(p.MinPPS, p.Window), Sources: p.MinSources}
			},
			ignore: func(p UDPFloodParams) []string { return p.IgnoreDestinations },
			judge:  judgeUDPFlood,
		}, nil
	},
}

func judgeUDPFlood(p UDPFloodParams, dst string, rows []destRow, secs float64) (alerts.Instance, bool) {
	var v volume
	var port uint16
	var most float64
	for _, r := range rows {
		if r.Proto != 17 || (r.Refl != 0 && hasPort(p.ExcludeSrcPorts, r.Refl)) || (r.Svc != 0 && hasPort(p.ExcludeDstPorts, r.Svc)) {
			continue
		}
		v.add(r)
		if r.Packets > most {
			most, port = r.Packets, r.TopPort
		}
	}
	pps, bps := v.Packets/secs, v.Bytes*8/secs
	if v.Packets == 0 || pps < p.MinPPS || v.Sources < uint64(p.MinSources) || v.avg() > p.MaxAvgPacketBytes {
		return alerts.Instance{}, false
	}
	summary := fmt.Sprintf("%s receiving %s (%s) of UDP from %d sources, %.0f bytes per packet: UDP flood",
		dst, HumanPackets(pps), HumanBits(bps), v.Sources, v.avg())
	desc := fmt.Sprintf("UDP to %s over the last %s, not from reflector ports nor to service ports: %s, %s from %d sources, %.0f bytes per packet; top destination port %d.",
		dst, fmtWindow(secs), HumanPackets(pps), HumanBits(bps), v.Sources, v.avg(), port)
	return floodInstance(dst, pps, "udp_flood", summary, desc, map[string]string{
		"pps": fmtNum(pps), "bps": fmtNum(bps), "sources": fmt.Sprint(v.Sources),
		"avg_packet_bytes": fmtNum(v.avg()), "dst_port": fmt.Sprint(port),
	}), true
}

// ICMPFloodParams are the parameters of icmp_flood.
type ICMPFloodParams struct {
	Window time.Duration `mapstructure:"window" yaml:"window"`
	// Slice: the window is read in slices of this length, each once;
	// Settle: a slice is read this long after it ended.
	Slice              time.Duration `mapstructure:"slice" yaml:"slice"`
	Settle             time.Duration `mapstructure:"settle" yaml:"settle"`
	MinPPS             float64       `mapstructure:"min_pps" yaml:"min_pps"`
	MinSources         int           `mapstructure:"min_sources" yaml:"min_sources"`
	IgnoreDestinations []string      `mapstructure:"ignore_destinations" yaml:"ignore_destinations"`
}

func (p ICMPFloodParams) Validate() error {
	var e paramErrs
	e.window("window", p.Window)
	e.slicing(p.Window, p.Slice, p.Settle)
	e.positive("min_pps", p.MinPPS)
	e.positive("min_sources", float64(p.MinSources))
	e.prefixes("ignore_destinations", p.IgnoreDestinations)
	return errors.Join(e...)
}

// ICMPFlood detects ICMP (and ICMPv6) floods: no legitimate traffic sends
// a host thousands of ICMP packets a second.
var ICMPFlood = Kind[ICMPFloodParams]{
	Name:        "icmp_flood",
	Description: "ICMP flood: ICMP or ICMPv6 to one destination above a packet rate, from enough sources",
	Defaults: func() Builtin[ICMPFloodParams] {
		return floodDefaults(notify.SeverityError, ICMPFloodParams{Window: DefaultFloodWindow, Slice: DefaultSlice, Settle: DefaultSettle, MinPPS: 1000, MinSources: 3})
	},
	Config: func(c *BuiltinConfig) *Builtin[ICMPFloodParams] { return &c.ICMPFlood },
	New: func(deps Deps) (Evaluator[ICMPFloodParams], error) {
		registerSliceMetrics(deps.Registerer)
		return flood[ICMPFloodParams]{
			slicing: func(p ICMPFloodParams) slicing { return p.slicing() },
			demand: func(p ICMPFloodParams) destDemand {
				return destDemand{Floor: prefilterFloor(p.MinPPS, p.Window), Sources: p.MinSources}
			},
			ignore: func(p ICMPFloodParams) []string { return p.IgnoreDestinations },
			judge:  judgeICMPFlood,
		}, nil
	},
}

func judgeICMPFlood(p ICMPFloodParams, dst string, rows []destRow, secs float64) (alerts.Instance, bool) {
	var v volume
	for _, r := range rows {
		if r.Proto == 1 || r.Proto == 58 {
			v.add(r)
		}
	}
	pps, bps := v.Packets/secs, v.Bytes*8/secs
	if v.Packets == 0 || pps < p.MinPPS || v.Sources < uint64(p.MinSources) {
		return alerts.Instance{}, false
	}
	summary := fmt.Sprintf("%s receiving %s (%s) of ICMP from %d sources: ICMP flood", dst, HumanPackets(pps), HumanBits(bps), v.Sources)
	desc := fmt.Sprintf("ICMP and ICMPv6 to %s over the last %s: %s, %s from %d sources, %.0f bytes per packet.",
		dst, fmtWindow(secs), HumanPackets(pps), HumanBits(bps), v.Sources, v.avg())
	return floodInstance(dst, pps, "icmp_flood", summary, desc, map[string]string{
		"pps": fmtNum(pps), "bps": fmtNum(bps), "sources": fmt.Sprint(v.Sources), "avg_packet_bytes": fmtNum(v.avg()),
	}), true
}
