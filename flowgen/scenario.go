package flowgen

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"
)

// ScenarioKind names a traffic pattern flowgen can inject.
type ScenarioKind uint8

const (
	Background ScenarioKind = iota
	Amplification
	SYNFlood
	PortScan
	HostScan
	Spike
	UDPFlood
	ICMPFlood
	Bulk
	numScenarioKinds
)

var scenarioNames = [numScenarioKinds]string{"background", "amplification", "synflood", "portscan", "hostscan", "spike", "udpflood", "icmpflood", "bulk"}

func (k ScenarioKind) String() string {
	if k < numScenarioKinds {
		return scenarioNames[k]
	}
	return fmt.Sprintf("scenario(%d)", k)
}

// ParseScenarioKind accepts the names -scenario takes.
func ParseScenarioKind(s string) (ScenarioKind, error) {
	for k := Amplification; k < numScenarioKinds; k++ {
		if s == scenarioNames[k] {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown scenario %q (want amplification, synflood, portscan, hostscan, spike, udpflood, icmpflood or bulk)", s)
}

// Scenario is one injected pattern and when it is active, measured on the
// run's schedule (flow i is due at i/rate) from the start of the run.
type Scenario struct {
	Kind     ScenarioKind
	Start    time.Duration
	Duration time.Duration // 0: until the end of the run
}

func (s Scenario) active(at time.Duration) bool {
	return at >= s.Start && (s.Duration == 0 || at < s.Start+s.Duration)
}

func (s Scenario) String() string {
	out := s.Kind.String() + "@" + s.Start.String()
	if s.Duration > 0 {
		out += "+" + s.Duration.String()
	}
	return out
}

// ParseScenarios parses a comma-separated list of NAME or NAME@START or
// NAME@START+DURATION (Go durations); missing parts take the defaults.
func ParseScenarios(list string, defStart, defDuration time.Duration) ([]Scenario, error) {
	var out []Scenario
	seen := map[ScenarioKind]bool{}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, timing, hasTiming := strings.Cut(item, "@")
		k, err := ParseScenarioKind(name)
		if err != nil {
			return nil, err
		}
		if seen[k] {
			return nil, fmt.Errorf("scenario %s given twice", k)
		}
		seen[k] = true
		sc := Scenario{Kind: k, Start: defStart, Duration: defDuration}
		if hasTiming {
			start, dur, hasDur := strings.Cut(timing, "+")
			if sc.Start, err = time.ParseDuration(start); err != nil {
				return nil, fmt.Errorf("scenario %s: start: %v", item, err)
			}
			if hasDur {
				if sc.Duration, err = time.ParseDuration(dur); err != nil {
					return nil, fmt.Errorf("scenario %s: duration: %v", item, err)
				}
			}
		}
		if sc.Start < 0 || sc.Duration < 0 {
			return nil, fmt.Errorf("scenario %s: negative time", item)
		}
		out = append(out, sc)
	}
	return out, nil
}

// Scenario targets: fixed documentation addresses inside the simulated
// network (behind the exporters' access interfaces), so tests and alert
// rules know what to look for.
var (
	AmplificationVictim = netip.MustParseAddr("192.0.2.200")
	SYNFloodTarget      = netip.MustParseAddrPort("192.0.2.10:443")
	PortScanSource      = netip.MustParseAddr("203.0.113.66")
	PortScanTarget      = netip.MustParseAddr("192.0.2.50")
	HostScanSource      = netip.MustParseAddr("203.0.113.77")
	HostScanPort        = uint16(22)
	UDPFloodVictim      = netip.MustParseAddr("192.0.2.220")
	ICMPFloodVictim     = netip.MustParseAddr("192.0.2.230")
	// BulkServer sends a long TCP transfer to BulkClient (the negative
	// control of the flood rules: one source, handshake and ACKs).
	BulkServer = netip.MustParseAddrPort("203.0.113.240:443")
	BulkClient = netip.MustParseAddrPort("192.0.2.240:50080")
	// AmplificationPorts are the reflector services (DNS, NTP, SSDP,
	// memcached, CLDAP, chargen) amplification flows come from.
	AmplificationPorts = []uint16{53, 123, 1900, 11211, 389, 19}
)

// portScanSourcePort is the one source port of the port scan (scanners
// keep theirs fixed).
const portScanSourcePort = 61337

// injector draws the flows of injected scenarios.
type injector struct {
	r        rng
	nextPort uint16 // port scan: next destination port
	nextHost uint8  // host scan: next last octet
	bulkSeq  uint64 // bulk: records of the transfer so far
}

func newInjector(seed uint64) *injector {
	return &injector{r: newRNG(seed ^ 0x5ce7a810), nextPort: 1, nextHost: 1}
}

// outside returns a random address of the outside documentation ranges.
func (in *injector) outside() netip.Addr {
	net := serverNet4[in.r.intn(2)]
	return netip.AddrFrom4([4]byte{net[0], net[1], net[2], byte(in.r.rangeIn(2, 254))})
}

// inject fills f with one flow of scenario k, seen by exporter x at nowMs.
// Scenario flows come in on the uplink (ifIndex 1) and are IPv4.
func (in *injector) inject(f *Flow, k ScenarioKind, x *exporterModel, nowMs int64) {
	r := &in.r
	*f = Flow{Scenario: k, Samples: 1, SrcMask: 24, DstMask: 24, InIf: 1, NextHop: zero4, SrcMAC: upstreamMAC, DstMAC: x.mac}
	var size int
	switch k {
	case Amplification:
		f.Proto = protoUDP
		f.Src, f.Dst = in.outside(), AmplificationVictim
		f.SrcPort = AmplificationPorts[r.intn(len(AmplificationPorts))]
		f.DstPort = uint16(r.rangeIn(1024, 65535))
		f.Packets = uint64(min(math.Floor(r.pareto(1, 1.3)), 5000))
		switch f.SrcPort {
		case 123:
			size = 468 // monlist reply
		case 1900:
			size = r.rangeIn(300, 420)
		default:
			size = r.rangeIn(1100, 1500)
		}
	case SYNFlood:
		f.Proto, f.TCPFlags = protoTCP, 0x02
		f.Src, f.Dst = in.outside(), SYNFloodTarget.Addr()
		f.SrcPort, f.DstPort = uint16(r.rangeIn(1024, 65535)), SYNFloodTarget.Port()
		f.Packets = 1
		if r.chance(0.1) {
			f.Packets = 2 // a retransmission from the same spoofed port
		}
		size = 44
	case PortScan:
		f.Proto, f.TCPFlags = protoTCP, 0x02
		f.Src, f.Dst = PortScanSource, PortScanTarget
		f.SrcPort, f.DstPort = portScanSourcePort, in.nextPort
		in.nextPort++
		if in.nextPort == 0 {
			in.nextPort = 1
		}
		f.Packets, size = 1, 44
	case HostScan:
		f.Proto, f.TCPFlags = protoTCP, 0x02
		f.Src = HostScanSource
		f.Dst = netip.AddrFrom4([4]byte{clientNet4[0], clientNet4[1], clientNet4[2], in.nextHost})
		in.nextHost = in.nextHost%254 + 1
		f.SrcPort, f.DstPort = uint16(r.rangeIn(32768, 60999)), HostScanPort
		f.Packets, size = 1, 60
	case UDPFlood:
		f.Proto = protoUDP
		f.Src, f.Dst = in.outside(), UDPFloodVictim
		f.SrcPort, f.DstPort = uint16(r.rangeIn(1024, 65535)), uint16(r.rangeIn(1024, 65535))
		f.Packets = uint64(1 + r.intn(2))
		size = r.rangeIn(60, 120)
	case ICMPFlood:
		f.Proto, f.ICMPType = protoICMP, 8
		f.Src, f.Dst = in.outside(), ICMPFloodVictim
		f.DstPort = uint16(f.ICMPType) << 8
		f.Packets = uint64(1 + r.intn(3))
		size = 84
	case Bulk:
		size = in.bulk(f)
	}
	f.Bytes = f.Packets * uint64(size)
	if f.InIf == 0 { // from the inside: in on the host's access interface
		f.InIf = x.accessIf(f.Src.As4()[3])
	} else {
		f.OutIf = x.accessIf(f.Dst.As4()[3])
	}
	f.SrcVLAN, f.DstVLAN = x.vlan(f.InIf), x.vlan(f.OutIf)
	f.EndMs = nowMs - int64(r.intn(1000))
	f.StartMs = f.EndMs - int64(f.Packets-1)*int64(r.rangeIn(1, 20))
}

// bulk fills f with the next record of the bulk transfer and returns its
// packet size: records alternate between the server's data (full-size
// segments) and the client's ACKs; the first record of each direction
// carries the handshake's SYN (SYN, then SYN-ACK).
func (in *injector) bulk(f *Flow) int {
	const syn, psh, ack = 0x02, 0x08, 0x10
	toClient := in.bulkSeq%2 == 1
	f.Proto, f.TCPFlags = protoTCP, psh|ack
	if in.bulkSeq < 2 {
		f.TCPFlags |= syn
	}
	in.bulkSeq++
	if toClient {
		f.Src, f.Dst = BulkServer.Addr(), BulkClient.Addr()
		f.SrcPort, f.DstPort = BulkServer.Port(), BulkClient.Port()
		f.Packets = uint64(in.r.rangeIn(800, 1200))
		return 1500
	}
	f.Src, f.Dst = BulkClient.Addr(), BulkServer.Addr()
	f.SrcPort, f.DstPort = BulkClient.Port(), BulkServer.Port()
	f.InIf, f.OutIf = 0, 1                                             // set below from the client's access interface
	f.SrcMAC, f.NextHop = [6]byte{0x02, 0, 0, 0, 0x50, 0x80}, gateway4 // to the exporter's MAC, as set
	f.Packets = uint64(in.r.rangeIn(400, 600))                         // one ACK per two segments
	return 52
}

// spike multiplies a flow crossing the spiking interface by ten.
func spike(f *Flow) {
	f.Packets *= 10
	f.Bytes *= 10
	f.Samples = 10
	f.Scenario = Spike
}
