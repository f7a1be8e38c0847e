package flowgen

import (
	"math"
	"net/netip"
)

// Flow is one generated flow: NetFlow and IPFIX exporters encode it as one
// record; sFlow exporters as Samples sampled packets of size SampleLen().
type Flow struct {
	Src, Dst, NextHop  netip.Addr
	SrcPort, DstPort   uint16
	Proto              uint8
	TCPFlags           uint8
	ToS                uint8
	ICMPType, ICMPCode uint8
	SrcMask, DstMask   uint8
	InIf, OutIf        uint32
	SrcVLAN, DstVLAN   uint16
	SrcMAC, DstMAC     [6]byte
	FlowLabel          uint32
	Packets, Bytes     uint64
	StartMs, EndMs     int64 // Unix milliseconds
	Scenario           ScenarioKind
	// Samples is how many sampled packets an sFlow exporter sends for this
	// flow: 1, or 10 while a spike multiplies the traffic of an interface.
	Samples int
}

// IPv6 reports whether the flow is IPv6.
func (f *Flow) IPv6() bool { return f.Src.Is6() }

const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// minIPLen is the smallest IP total length of a packet of the flow's
// protocol: IP header plus transport header.
func minIPLen(proto uint8, v6 bool) int {
	n := 20
	if v6 {
		n = 40
	}
	switch proto {
	case protoTCP:
		return n + 20
	default: // UDP, ICMP echo: 8-byte headers
		return n + 8
	}
}

// SampleLen is the IP total length of the packet an sFlow agent samples
// from this flow: the flow's mean packet size, within what the protocol
// and a 1500-byte MTU allow.
func (f *Flow) SampleLen() int {
	n := 0
	if f.Packets > 0 {
		n = int((f.Bytes + f.Packets/2) / f.Packets)
	}
	lo := minIPLen(f.Proto, f.IPv6())
	return max(lo, min(n, 1500))
}

// host is one end system of the population.
type host struct {
	v4, v6       netip.Addr
	mac          [6]byte
	ephLo, ephHi uint16
}

// service is a kind of traffic: its port, transport and the shape of its
// flows in each direction (request: client to server; response: back).
type service struct {
	name   string
	proto  uint8
	port   uint16
	weight float64
	// packets per flow: Pareto(xm, alpha); mean packet size: lognormal
	// around a median (bytes of IP total length).
	reqXm, reqAlpha, reqSize    float64
	respXm, respAlpha, respSize float64
	maxPackets                  float64
}

var services = []service{
	{name: "https", proto: protoTCP, port: 443, weight: 38, reqXm: 2, reqAlpha: 1.3, reqSize: 130, respXm: 3, respAlpha: 1.1, respSize: 1100, maxPackets: 2e6},
	{name: "quic", proto: protoUDP, port: 443, weight: 12, reqXm: 2, reqAlpha: 1.3, reqSize: 160, respXm: 3, respAlpha: 1.1, respSize: 1200, maxPackets: 2e6},
	{name: "http", proto: protoTCP, port: 80, weight: 8, reqXm: 2, reqAlpha: 1.4, reqSize: 220, respXm: 3, respAlpha: 1.2, respSize: 900, maxPackets: 1e6},
	{name: "dns", proto: protoUDP, port: 53, weight: 18, reqXm: 1, reqAlpha: 3, reqSize: 72, respXm: 1, respAlpha: 3, respSize: 150, maxPackets: 20},
	{name: "ntp", proto: protoUDP, port: 123, weight: 4, reqXm: 1, reqAlpha: 5, reqSize: 76, respXm: 1, respAlpha: 5, respSize: 76, maxPackets: 4},
	{name: "ssh", proto: protoTCP, port: 22, weight: 4, reqXm: 5, reqAlpha: 1.2, reqSize: 120, respXm: 5, respAlpha: 1.2, respSize: 220, maxPackets: 1e6},
	{name: "smtp", proto: protoTCP, port: 25, weight: 4, reqXm: 8, reqAlpha: 1.3, reqSize: 700, respXm: 6, respAlpha: 1.5, respSize: 90, maxPackets: 1e5},
	{name: "icmp-echo", proto: protoICMP, port: 0, weight: 4, reqXm: 1, reqAlpha: 1.5, reqSize: 84, respXm: 1, respAlpha: 1.5, respSize: 84, maxPackets: 20},
}

// Documentation addresses (RFC 5737, RFC 3849): the only ones flowgen
// puts in records.
var (
	clientNet4 = [3]byte{192, 0, 2}
	serverNet4 = [2][3]byte{{198, 51, 100}, {203, 0, 113}}
	gateway4   = netip.AddrFrom4([4]byte{198, 51, 100, 1})
	gateway6   = netip.MustParseAddr("2001:db8:ffff::1")
	zero4      = netip.AddrFrom4([4]byte{})
	zero6      = netip.IPv6Unspecified()
	// upstreamMAC is the next router on every exporter's uplink
	// (RFC 7042 documentation MAC).
	upstreamMAC = [6]byte{0x00, 0x00, 0x5e, 0x00, 0x53, 0x01}
)

// maxRecordPackets keeps bytes (packets times at most 1500) within the
// 32-bit counters of NetFlow v5 and our v9 template, even after a spike.
const maxRecordPackets = 280_000

// model draws background traffic from a population of hosts and services.
type model struct {
	r       rng
	clients []host
	servers []host
	svcCum  []float64
	v6Share float64
}

func newModel(seed uint64, hosts int, v6Share float64) *model {
	m := &model{r: newRNG(seed), v6Share: v6Share}
	nClients := max(1, hosts*7/10)
	nServers := max(1, hosts-nClients)
	m.clients = make([]host, nClients)
	m.servers = make([]host, nServers)
	for i := range m.clients {
		h := &m.clients[i]
		h.v4 = netip.AddrFrom4([4]byte{clientNet4[0], clientNet4[1], clientNet4[2], byte(1 + i%199)})
		h.v6 = addr6(0x0001, uint64(i/65536), m.r.u64()|1)
		if m.r.chance(0.6) {
			h.ephLo, h.ephHi = 32768, 60999 // Linux
		} else {
			h.ephLo, h.ephHi = 49152, 65535 // Windows, macOS, IANA
		}
		h.mac = [6]byte{0x02, 0x00, byte(i >> 16), byte(i >> 8), byte(i), 0x01}
	}
	for i := range m.servers {
		h := &m.servers[i]
		net := serverNet4[(i/253)%2]
		h.v4 = netip.AddrFrom4([4]byte{net[0], net[1], net[2], byte(2 + i%253)})
		h.v6 = addr6(0x0053, uint64(i/65536), uint64(i%65536)+0x10)
		h.ephLo, h.ephHi = 32768, 60999
		h.mac = upstreamMAC
	}
	sum := 0.0
	for _, s := range services {
		sum += s.weight
		m.svcCum = append(m.svcCum, sum)
	}
	return m
}

// addr6 builds 2001:db8:<site>:<subnet>::/64 plus an interface ID.
func addr6(site uint16, subnet, iid uint64) netip.Addr {
	var b [16]byte
	b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
	b[4], b[5] = byte(site>>8), byte(site)
	b[6], b[7] = byte(subnet>>8), byte(subnet)
	for i := 0; i < 8; i++ {
		b[15-i] = byte(iid >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

// port draws an ephemeral port from the host's range.
func (m *model) port(h *host) uint16 { return uint16(m.r.rangeIn(int(h.ephLo), int(h.ephHi))) }

// skewed picks an index in [0, n) with a preference for low ones: u^1.5
// (clients) or, with strong, u^2.5 (a few popular servers, a long tail).
func (m *model) skewed(n int, strong bool) int {
	u := m.r.float()
	x := u * math.Sqrt(u)
	if strong {
		x *= u
	}
	return min(int(float64(n)*x), n-1)
}

// background fills f with one flow of ordinary traffic seen by exporter x
// at nowMs. allowV6 is false for exporters that cannot carry IPv6 (v5).
func (m *model) background(f *Flow, x *exporterModel, allowV6 bool, nowMs int64) {
	r := &m.r
	s := &services[r.weighted(m.svcCum)]
	ci := m.skewed(len(m.clients), false)
	c := &m.clients[ci]
	sv := &m.servers[m.skewed(len(m.servers), true)]
	v6 := allowV6 && r.chance(m.v6Share)
	response := r.chance(0.5)

	*f = Flow{Proto: s.proto, Samples: 1}
	if v6 && s.proto == protoICMP {
		f.Proto = protoICMPv6
	}
	cAddr, sAddr := c.v4, sv.v4
	f.SrcMask, f.DstMask = 24, 24
	if v6 {
		cAddr, sAddr = c.v6, sv.v6
		if f.Proto != protoICMPv6 {
			f.FlowLabel = uint32(r.u64()) & 0xfffff
		}
	}
	access := x.accessIf(c.v4.As4()[3])
	cPort, sPort := m.port(c), s.port
	xm, alpha, size := s.reqXm, s.reqAlpha, s.reqSize
	if !response {
		f.Src, f.Dst, f.SrcPort, f.DstPort = cAddr, sAddr, cPort, sPort
		f.InIf, f.OutIf = access, 1
		f.SrcMAC, f.DstMAC = c.mac, x.mac
		f.NextHop = gateway4
		if v6 {
			f.NextHop = gateway6
			f.SrcMask, f.DstMask = 64, 48
		}
	} else {
		f.Src, f.Dst, f.SrcPort, f.DstPort = sAddr, cAddr, sPort, cPort
		f.InIf, f.OutIf = 1, access
		f.SrcMAC, f.DstMAC = upstreamMAC, x.mac
		f.NextHop = zero4
		if v6 {
			f.NextHop = zero6
			f.SrcMask, f.DstMask = 48, 64
		}
		xm, alpha, size = s.respXm, s.respAlpha, s.respSize
	}
	f.SrcVLAN, f.DstVLAN = x.vlan(f.InIf), x.vlan(f.OutIf)

	pk := math.Floor(r.pareto(xm, alpha))
	pk = min(pk, s.maxPackets, maxRecordPackets)
	f.Packets = uint64(max(pk, 1))
	lo := minIPLen(f.Proto, v6)
	var psize int
	switch s.name {
	case "ntp", "icmp-echo":
		psize = int(size) // fixed-size packets
		if v6 {
			psize += 20
		}
	default:
		psize = int(r.lognormal(math.Log(size), 0.35))
	}
	psize = max(lo, min(psize, 1500))
	f.Bytes = f.Packets * uint64(psize)

	switch f.Proto {
	case protoTCP:
		f.TCPFlags = m.tcpFlags(f.Packets, response)
	case protoICMP, protoICMPv6:
		f.SrcPort = 0
		f.ICMPType = 8
		if response {
			f.ICMPType = 0
		}
		if f.Proto == protoICMPv6 {
			f.ICMPType = 128
			if response {
				f.ICMPType = 129
			}
		}
		f.DstPort = uint16(f.ICMPType) << 8
	}
	switch x := r.float(); {
	case x < 0.05:
		f.ToS = 0x48 // AF21
	case x < 0.07:
		f.ToS = 0x20 // CS1, scavenger
	case x < 0.09 && f.Proto == protoUDP:
		f.ToS = 0xb8 // EF
	}
	m.times(f, nowMs)
}

// tcpFlags returns the OR of the TCP flags of a flow's packets.
func (m *model) tcpFlags(packets uint64, response bool) uint8 {
	const fin, syn, rst, psh, ack = 0x01, 0x02, 0x04, 0x08, 0x10
	r := &m.r
	switch {
	case packets == 1 && !response:
		return syn
	case packets == 1:
		if r.chance(0.7) {
			return syn | ack
		}
		return rst | ack
	case packets <= 3:
		if r.chance(0.5) {
			return syn | ack
		}
		return fin | ack
	}
	switch x := r.float(); {
	case x < 0.6:
		return fin | syn | psh | ack // whole connection
	case x < 0.8:
		return syn | psh | ack // still open
	case x < 0.95:
		return psh | ack // active timeout: the middle of a long connection
	default:
		return syn | rst | psh | ack
	}
}

// times sets start and end: the flow ended shortly before nowMs and lasted
// about as long as its packets need, at most one active timeout (60 s).
func (m *model) times(f *Flow, nowMs int64) {
	f.EndMs = nowMs - int64(m.r.intn(1000))
	if f.Packets > 1 {
		d := float64(f.Packets-1) * m.r.lognormal(math.Log(15), 1)
		f.StartMs = f.EndMs - int64(min(d, 59_000))
	} else {
		f.StartMs = f.EndMs
	}
}
