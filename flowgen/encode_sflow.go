package flowgen

import (
	"time"
)

// sFlow v5 (sflow.org/sflow_version_5.txt): flow samples carry a raw
// Ethernet header of the sampled packet and an extended switch record;
// counter samples carry generic interface counters.

const (
	sflowHeaderLen       = 28 // with an IPv4 agent address
	sflowMaxHeader       = 128
	sflowFlowSampleFixed = 8 + 32 + (8 + 16) + (8 + 16) // without the header bytes
	sflowCounterSample   = 8 + 12 + 8 + 88
	sflowStripped        = 4 // the FCS
	maxInterfaces        = 8
)

// ifCounters are the generic interface counters an agent reports.
type ifCounters struct {
	inOctets, outOctets uint64
	inPkts, outPkts     uint32
}

type sflowEncoder struct {
	buf      []byte
	n        int // flow samples in this datagram
	counters int // counter samples in this datagram
	mtu      int
	agent    [4]byte
	subAgent uint32
	seq      uint32 // datagrams
	bootMs   int64
	rate     uint32
	ifCount  int
	ipID     uint16
	tcpSeq   uint32

	flowSeq, counterSeq, pool [maxInterfaces + 1]uint32
	ctr                       [maxInterfaces + 1]ifCounters

	counterInterval time.Duration
	lastCounters    time.Duration
	sentCounters    bool
	counterSamples  uint64
}

func newSFlowEncoder(mtu int, agent [4]byte, subAgent, seq, rate uint32, bootMs int64, ifCount int, counterInterval time.Duration, r *rng) *sflowEncoder {
	e := &sflowEncoder{
		buf: make([]byte, 0, mtu), mtu: mtu, agent: agent, subAgent: subAgent, seq: seq,
		bootMs: bootMs, rate: max(rate, 1), ifCount: ifCount, counterInterval: counterInterval,
		ipID: uint16(r.u64()), tcpSeq: uint32(r.u64()),
	}
	for i := 1; i <= ifCount; i++ {
		e.ctr[i].inOctets = r.u64() >> 24
		e.ctr[i].outOctets = r.u64() >> 24
		e.ctr[i].inPkts = uint32(r.u64() >> 40)
		e.ctr[i].outPkts = uint32(r.u64() >> 40)
		e.flowSeq[i] = uint32(r.u64() >> 40)
		e.counterSeq[i] = uint32(r.u64() >> 48)
	}
	return e
}

func (e *sflowEncoder) records() int { return e.n }

func (e *sflowEncoder) begin(at time.Duration) {
	e.buf = e.buf[:sflowHeaderLen]
	e.n, e.counters = 0, 0
	if e.counterInterval > 0 && (!e.sentCounters || at-e.lastCounters >= e.counterInterval) {
		e.sentCounters, e.lastCounters = true, at
		for i := 1; i <= e.ifCount; i++ {
			e.putCounterSample(uint32(i))
		}
	}
}

func (e *sflowEncoder) putCounterSample(ifIndex uint32) {
	var b []byte
	e.buf, b = grow(e.buf, sflowCounterSample)
	c := &e.ctr[ifIndex]
	e.counterSeq[ifIndex]++
	speed := uint64(1_000_000_000)
	if ifIndex == 1 {
		speed = 10_000_000_000
	}
	be.PutUint32(b[0:], 2) // counter sample
	be.PutUint32(b[4:], sflowCounterSample-8)
	be.PutUint32(b[8:], e.counterSeq[ifIndex])
	be.PutUint32(b[12:], ifIndex) // source ID: type 0 (ifIndex)
	be.PutUint32(b[16:], 1)       // one record
	be.PutUint32(b[20:], 1)       // generic interface counters
	be.PutUint32(b[24:], 88)
	r := b[28:]
	clear(r)
	be.PutUint32(r[0:], ifIndex)
	be.PutUint32(r[4:], 6) // ethernetCsmacd
	be.PutUint64(r[8:], speed)
	be.PutUint32(r[16:], 1) // full duplex
	be.PutUint32(r[20:], 3) // admin and oper up
	be.PutUint64(r[24:], c.inOctets)
	be.PutUint32(r[32:], c.inPkts)
	be.PutUint64(r[56:], c.outOctets)
	be.PutUint32(r[64:], c.outPkts)
	e.counters++
	e.counterSamples++
}

// sampleFrame returns the sampled packet's IP total length, the frame
// length on the wire (FCS included) and how many header bytes are sent.
func sampleFrame(f *Flow) (ipLen, frameLen, hdrLen int) {
	ipLen = f.SampleLen()
	eth := max(14+ipLen, 60) // Ethernet pads short frames to 60 bytes
	return ipLen, eth + sflowStripped, min(eth, sflowMaxHeader)
}

func (e *sflowEncoder) add(f *Flow) bool {
	ipLen, frameLen, hdrLen := sampleFrame(f)
	size := sflowFlowSampleFixed + pad4(hdrLen)
	if e.n+e.counters > 0 && len(e.buf)+size > e.mtu {
		return false
	}
	var b []byte
	e.buf, b = grow(e.buf, size)
	in, out := f.InIf, f.OutIf
	e.flowSeq[in]++
	e.pool[in] += e.rate
	be.PutUint32(b[0:], 1) // flow sample
	be.PutUint32(b[4:], uint32(size-8))
	be.PutUint32(b[8:], e.flowSeq[in])
	be.PutUint32(b[12:], in) // source ID: type 0, ingress interface
	be.PutUint32(b[16:], e.rate)
	be.PutUint32(b[20:], e.pool[in])
	be.PutUint32(b[24:], 0) // drops
	be.PutUint32(b[28:], in)
	be.PutUint32(b[32:], out)
	be.PutUint32(b[36:], 2) // records
	// Raw packet header.
	be.PutUint32(b[40:], 1)
	be.PutUint32(b[44:], uint32(16+pad4(hdrLen)))
	be.PutUint32(b[48:], 1) // ISO 8802-3 Ethernet
	be.PutUint32(b[52:], uint32(frameLen))
	be.PutUint32(b[56:], sflowStripped)
	be.PutUint32(b[60:], uint32(hdrLen))
	h := b[64 : 64+pad4(hdrLen)]
	clear(h)
	e.putFrame(h[:hdrLen], f, ipLen)
	// Extended switch.
	s := b[64+pad4(hdrLen):]
	be.PutUint32(s[0:], 1001)
	be.PutUint32(s[4:], 16)
	be.PutUint32(s[8:], uint32(f.SrcVLAN))
	be.PutUint32(s[12:], 0)
	be.PutUint32(s[16:], uint32(f.DstVLAN))
	be.PutUint32(s[20:], 0)
	e.n++

	wire := uint64(frameLen) * uint64(e.rate)
	e.ctr[in].inOctets += wire
	e.ctr[in].inPkts += e.rate
	e.ctr[out].outOctets += wire
	e.ctr[out].outPkts += e.rate
	return true
}

// putFrame writes the first len(h) bytes of the sampled frame (h is zeroed).
func (e *sflowEncoder) putFrame(h []byte, f *Flow, ipLen int) {
	copy(h[0:6], f.DstMAC[:])
	copy(h[6:12], f.SrcMAC[:])
	ip := h[14:]
	var l4 []byte
	if f.IPv6() {
		be.PutUint16(h[12:], 0x86dd)
		be.PutUint32(ip[0:], 6<<28|uint32(f.ToS)<<20|f.FlowLabel&0xfffff)
		be.PutUint16(ip[4:], uint16(ipLen-40))
		ip[6] = f.Proto
		ip[7] = 64
		src, dst := f.Src.As16(), f.Dst.As16()
		copy(ip[8:24], src[:])
		copy(ip[24:40], dst[:])
		l4 = ip[40:]
	} else {
		be.PutUint16(h[12:], 0x0800)
		e.ipID++
		ip[0] = 0x45
		ip[1] = f.ToS
		be.PutUint16(ip[2:], uint16(ipLen))
		be.PutUint16(ip[4:], e.ipID)
		be.PutUint16(ip[6:], 0x4000) // don't fragment
		ip[8] = 64
		ip[9] = f.Proto
		src, dst := f.Src.As4(), f.Dst.As4()
		copy(ip[12:16], src[:])
		copy(ip[16:20], dst[:])
		be.PutUint16(ip[10:], ipChecksum(ip[:20]))
		l4 = ip[20:]
	}
	switch f.Proto {
	case protoTCP:
		be.PutUint16(l4[0:], f.SrcPort)
		be.PutUint16(l4[2:], f.DstPort)
		e.tcpSeq += 1448
		be.PutUint32(l4[4:], e.tcpSeq)
		if f.TCPFlags != 0x02 {
			be.PutUint32(l4[8:], e.tcpSeq^0x5a5a5a5a)
		}
		l4[12] = 5 << 4
		l4[13] = sampleTCPFlags(f, ipLen)
		be.PutUint16(l4[14:], 64240)
	case protoUDP:
		be.PutUint16(l4[0:], f.SrcPort)
		be.PutUint16(l4[2:], f.DstPort)
		hl := 20
		if f.IPv6() {
			hl = 40
		}
		be.PutUint16(l4[4:], uint16(ipLen-hl))
	case protoICMP, protoICMPv6:
		l4[0], l4[1] = f.ICMPType, f.ICMPCode
		be.PutUint16(l4[4:], uint16(e.ipID))
		be.PutUint16(l4[6:], 1)
	}
}

// sampleTCPFlags are the flags of one packet of the flow.
func sampleTCPFlags(f *Flow, ipLen int) uint8 {
	switch {
	case f.TCPFlags == 0x02 || f.TCPFlags == 0x12 || f.TCPFlags == 0x14:
		return f.TCPFlags // single-packet flows: that packet
	case ipLen > minIPLen(protoTCP, f.IPv6()) && f.TCPFlags&0x08 != 0:
		return 0x18 // PSH|ACK: data
	default:
		return 0x10
	}
}

func ipChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

func (e *sflowEncoder) finish(nowMs int64) []byte {
	h := e.buf[:sflowHeaderLen]
	be.PutUint32(h[0:], 5)
	be.PutUint32(h[4:], 1) // IPv4 agent address
	copy(h[8:12], e.agent[:])
	be.PutUint32(h[12:], e.subAgent)
	be.PutUint32(h[16:], e.seq)
	be.PutUint32(h[20:], uptime(nowMs, e.bootMs))
	be.PutUint32(h[24:], uint32(e.n+e.counters))
	e.seq++
	return e.buf
}
