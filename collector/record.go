package collector

import (
	"encoding/binary"
	"math"

	"github.com/flowhouse/flowhouse/flow"
)

// IANA information element IDs (RFC 7012 registry; NetFlow v9 shares 1-127).
const (
	ieOctetDeltaCount             = 1
	iePacketDeltaCount            = 2
	ieProtocolIdentifier          = 4
	ieIPClassOfService            = 5
	ieTCPControlBits              = 6
	ieSourceTransportPort         = 7
	ieSourceIPv4Address           = 8
	ieSourceIPv4PrefixLength      = 9
	ieIngressInterface            = 10
	ieDestinationTransportPort    = 11
	ieDestinationIPv4Address      = 12
	ieDestinationIPv4PrefixLength = 13
	ieEgressInterface             = 14
	ieIPNextHopIPv4Address        = 15
	ieBGPSourceAsNumber           = 16
	ieBGPDestinationAsNumber      = 17
	ieBGPNextHopIPv4Address       = 18
	ieFlowEndSysUpTime            = 21
	ieFlowStartSysUpTime          = 22
	iePostOctetDeltaCount         = 23
	iePostPacketDeltaCount        = 24
	ieSourceIPv6Address           = 27
	ieDestinationIPv6Address      = 28
	ieSourceIPv6PrefixLength      = 29
	ieDestinationIPv6PrefixLength = 30
	ieFlowLabelIPv6               = 31
	ieICMPTypeCodeIPv4            = 32
	ieSamplingInterval            = 34
	ieSamplerID                   = 48
	ieSamplerRandomInterval       = 50
	ieSourceMacAddress            = 56
	iePostDestinationMacAddress   = 57
	ieVlanID                      = 58
	iePostVlanID                  = 59
	ieIPVersion                   = 60
	ieFlowDirection               = 61
	ieIPNextHopIPv6Address        = 62
	ieBGPNextHopIPv6Address       = 63
	ieDestinationMacAddress       = 80
	iePostSourceMacAddress        = 81
	ieInterfaceName               = 82
	ieInterfaceDescription        = 83
	ieOctetTotalCount             = 85
	iePacketTotalCount            = 86
	ieICMPTypeCodeIPv6            = 139
	iePostOctetTotalCount         = 171
	iePostPacketTotalCount        = 172
	ieFlowStartSeconds            = 150
	ieFlowEndSeconds              = 151
	ieFlowStartMilliseconds       = 152
	ieFlowEndMilliseconds         = 153
	ieFlowStartMicroseconds       = 154
	ieFlowEndMicroseconds         = 155
	ieFlowStartNanoseconds        = 156
	ieFlowEndNanoseconds          = 157
	ieFlowStartDeltaMicroseconds  = 158
	ieFlowEndDeltaMicroseconds    = 159
	ieSystemInitTimeMilliseconds  = 160
	ieICMPTypeIPv4                = 176
	ieICMPCodeIPv4                = 177
	ieICMPTypeIPv6                = 178
	ieICMPCodeIPv6                = 179
	ieIPDiffServCodePoint         = 195
	iePaddingOctets               = 210
	ieInitiatorOctets             = 231
	ieResponderOctets             = 232
	ieIngressVRFID                = 234
	ieEgressVRFID                 = 235
	ieInitiatorPackets            = 298
	ieResponderPackets            = 299
	ieLayer2OctetDeltaCount       = 352
	ieLayer2OctetTotalCount       = 353
	ieObservationTimeSeconds      = 322
	ieObservationTimeMilliseconds = 323
	ieObservationTimeMicroseconds = 324
	ieObservationTimeNanoseconds  = 325
	ieDot1qVlanID                 = 243
	iePostDot1qVlanID             = 254
	ieSelectorID                  = 302
	ieSamplingPacketInterval      = 305
	ieSamplingPacketSpace         = 306
	ieSamplingSize                = 309
	ieSamplingPopulation          = 310
	ieSamplingProbability         = 311

	// penReverse is the enterprise number RFC 5103 assigns to reverse
	// information elements of biflows.
	penReverse = 29305
)

// timeFields collects the many ways a record can say when it started and
// ended; they are resolved once the whole record is read.
type timeFields struct {
	startMs, endMs         int64 // absolute, from 150-157
	startUp, endUp         uint32
	hasStartUp, hasEndUp   bool
	startDelta, endDelta   uint32
	hasStartDl, hasEndDl   bool
	systemInitMs           int64
	hasStartAbs, hasEndAbs bool
	// An observation time stands for both ends when nothing else is known
	// (exporters of single events, such as firewall logs).
	observedMs  int64
	hasObserved bool
}

func (t *timeFields) resolve(h *messageHeader, sysInitMs int64, nowMs int64) (start, end int64) {
	start, end = nowMs, nowMs
	if t.hasObserved {
		start, end = t.observedMs, t.observedMs
	}
	if t.systemInitMs != 0 {
		sysInitMs = t.systemInitMs
	}
	uptime := func(v uint32) int64 {
		if h.version == 9 {
			return uptimeToUnixMs(h.exportMs, h.sysUptime, v)
		}
		return sysInitMs + int64(v)
	}
	canUptime := h.version == 9 || sysInitMs != 0
	hasStart := t.hasStartAbs || (t.hasStartUp && canUptime) || t.hasStartDl
	hasEnd := t.hasEndAbs || (t.hasEndUp && canUptime) || t.hasEndDl
	switch {
	case t.hasStartAbs:
		start = t.startMs
	case t.hasStartUp && canUptime:
		start = uptime(t.startUp)
	case t.hasStartDl:
		start = h.exportMs - int64(t.startDelta)/1000
	}
	switch {
	case t.hasEndAbs:
		end = t.endMs
	case t.hasEndUp && canUptime:
		end = uptime(t.endUp)
	case t.hasEndDl:
		end = h.exportMs - int64(t.endDelta)/1000
	}
	// A record with only one end known is a point in time.
	switch {
	case hasStart && !hasEnd:
		end = start
	case hasEnd && !hasStart:
		start = end
	}
	return start, end
}

// ntpToUnixMs converts an RFC 7011 dateTimeMicroseconds/Nanoseconds value
// (NTP format: seconds since 1900 and a binary fraction).
func ntpToUnixMs(v uint64) int64 {
	const ntpToUnix = 2208988800
	sec := int64(v>>32) - ntpToUnix
	frac := int64((v & 0xffffffff) * 1000 >> 32)
	return sec*1000 + frac
}

// counter collects the ways a record can count one quantity (bytes or
// packets of one direction), for pick to choose from.
type counter struct {
	delta, post, init, total, postTotal uint64
	l2, l2Total                         uint64 // layer 2 octets (bytes only)
	has                                 uint8  // counterHas* bits
}

const (
	counterHasDelta = 1 << iota
	counterHasTotal
	counterHasPostTotal
	counterHasL2
	counterHasL2Total
)

// pick is RFC 7012's rule: a delta counter is the traffic of the report,
// a total (cumulative since the flow began) only stands in when the record
// has no delta of any kind; exporters that send both had totals stored.
// Without delta counters come post-NAT deltas, then initiator (responder
// for the reverse side) counters (RFC 5102 IE 231/298, Cisco NSEL); those
// three are taken only when not 0, as exporters fill the ones they do not
// count with 0. fromTotal says the value is a total, which the caller turns
// into the traffic since the flow's previous report (totals.go).
//
// Bytes are layer 3 octets (IP header and payload: IE 1 and its kin), as
// every protocol counts them, so that volumes compare across exporters.
// A record with no layer 3 octet counter at all, which is what exporters
// send for non-IP traffic (Open vSwitch, layer 2 NetFlow: only
// layer2OctetDeltaCount, IE 352, or its total, 353), gets its layer 2
// octets, the frame without FCS: the same rule as sFlow's non-IP samples.
// Without that, non-IP records were stored with 0 bytes.
func (c *counter) pick() (v uint64, fromTotal bool) {
	switch {
	case c.has&counterHasDelta != 0:
		return c.delta, false
	case c.post != 0:
		return c.post, false
	case c.init != 0:
		return c.init, false
	case c.has&counterHasTotal != 0:
		return c.total, true
	case c.has&counterHasPostTotal != 0:
		return c.postTotal, true
	case c.has&counterHasL2 != 0:
		return c.l2, false
	case c.has&counterHasL2Total != 0:
		return c.l2Total, true
	}
	return 0, false
}

// set records the counter field kind (an IE of bytes or packets).
func (c *counter) set(kind uint16, v uint64) {
	switch kind {
	case ieOctetDeltaCount, iePacketDeltaCount:
		c.delta = v
		c.has |= counterHasDelta
	case iePostOctetDeltaCount, iePostPacketDeltaCount:
		c.post = v
	case ieInitiatorOctets, ieInitiatorPackets, ieResponderOctets, ieResponderPackets:
		c.init = v
	case ieOctetTotalCount, iePacketTotalCount:
		c.total = v
		c.has |= counterHasTotal
	case iePostOctetTotalCount, iePostPacketTotalCount:
		c.postTotal = v
		c.has |= counterHasPostTotal
	case ieLayer2OctetDeltaCount:
		c.l2 = v
		c.has |= counterHasL2
	case ieLayer2OctetTotalCount:
		c.l2Total = v
		c.has |= counterHasL2Total
	}
}

// reverseFields are the RFC 5103 reverse-direction values of a biflow record.
type reverseFields struct {
	bytes, packets counter
	tcpFlags       uint8
	times          timeFields
	present        bool
}

// decodeFlowRecord decodes one data record into one flow (two for a biflow
// with reverse traffic). It returns the bytes the record occupied.
func (e *exporter) decodeFlowRecord(d *decodeContext, h *messageHeader, t *template, b []byte) (int, bool) {
	f := d.next()
	f.Protocol = h.proto
	f.ObservationDomain = h.domain
	var (
		tf                      timeFields
		rev                     reverseFields
		inRecordRate            uint32
		pktInterval, pktSpace   uint64
		hasDSCP, hasToS         bool
		dscp                    uint8
		bytes, packets          counter
		bgpNextHop              flow.Addr
		icmpTC                  uint16
		hasICMPTC, hasICMPParts bool
	)
	off := 0
	for i := range t.fields {
		fd := &t.fields[i]
		v, used, ok := fieldValue(fd, b[off:])
		if !ok {
			d.unwind(1)
			return 0, false
		}
		off += used
		// A mapped element is none of the fixed set's (Validate refuses
		// those), so it is looked for only where the fixed set finds
		// nothing: the fields the fixed set decodes pay nothing for it.
		if fd.pen != 0 {
			switch {
			case t.extra != nil && t.extra[i].kind != flow.ExtraNone:
				storeExtra(f, t.extra[i], v)
			case fd.pen == penReverse:
				decodeReverse(fd.ie, v, &rev)
			}
			continue
		}
		switch fd.ie {
		case ieOctetDeltaCount, iePostOctetDeltaCount, ieInitiatorOctets, ieOctetTotalCount, iePostOctetTotalCount,
			ieLayer2OctetDeltaCount, ieLayer2OctetTotalCount:
			bytes.set(fd.ie, beUint(v))
		case iePacketDeltaCount, iePostPacketDeltaCount, ieInitiatorPackets, iePacketTotalCount, iePostPacketTotalCount:
			packets.set(fd.ie, beUint(v))
		case ieResponderOctets:
			rev.bytes.set(fd.ie, beUint(v))
			rev.present = true
		case ieResponderPackets:
			rev.packets.set(fd.ie, beUint(v))
			rev.present = true
		case ieProtocolIdentifier:
			f.IPProto = uint8(beUint(v))
		case ieIPClassOfService:
			f.ToS, hasToS = uint8(beUint(v)), true
		case ieIPDiffServCodePoint:
			dscp, hasDSCP = uint8(beUint(v)), true
		case ieTCPControlBits:
			f.TCPFlags = uint8(beUint(v))
		case ieSourceTransportPort:
			f.SrcPort = uint16(beUint(v))
		case ieDestinationTransportPort:
			f.DstPort = uint16(beUint(v))
		case ieSourceIPv4Address:
			if len(v) == 4 {
				f.SrcAddr, f.IPVersion = flow.AddrFrom4([4]byte(v)), 4
			}
		case ieDestinationIPv4Address:
			if len(v) == 4 {
				f.DstAddr, f.IPVersion = flow.AddrFrom4([4]byte(v)), 4
			}
		case ieSourceIPv6Address:
			if len(v) == 16 {
				f.SrcAddr, f.IPVersion = flow.Addr(v), 6
			}
		case ieDestinationIPv6Address:
			if len(v) == 16 {
				f.DstAddr, f.IPVersion = flow.Addr(v), 6
			}
		case ieIPNextHopIPv4Address, ieIPNextHopIPv6Address:
			f.NextHop = flow.AddrFromSlice(v)
		case ieBGPNextHopIPv4Address, ieBGPNextHopIPv6Address:
			bgpNextHop = flow.AddrFromSlice(v)
		case ieSourceIPv4PrefixLength, ieSourceIPv6PrefixLength:
			f.SrcMask = uint8(beUint(v))
		case ieDestinationIPv4PrefixLength, ieDestinationIPv6PrefixLength:
			f.DstMask = uint8(beUint(v))
		case ieIngressInterface:
			f.InIf = uint32(beUint(v))
		case ieEgressInterface:
			f.OutIf = uint32(beUint(v))
		case ieIngressVRFID:
			f.InVRF = uint32(beUint(v))
		case ieEgressVRFID:
			f.OutVRF = uint32(beUint(v))
		case ieBGPSourceAsNumber:
			f.SrcAS = uint32(beUint(v))
		case ieBGPDestinationAsNumber:
			f.DstAS = uint32(beUint(v))
		case ieFlowLabelIPv6:
			f.FlowLabel = uint32(beUint(v)) & 0xfffff
		case ieICMPTypeCodeIPv4, ieICMPTypeCodeIPv6:
			icmpTC, hasICMPTC = uint16(beUint(v)), true
		case ieICMPTypeIPv4, ieICMPTypeIPv6:
			f.ICMPType, hasICMPParts = uint8(beUint(v)), true
		case ieICMPCodeIPv4, ieICMPCodeIPv6:
			f.ICMPCode, hasICMPParts = uint8(beUint(v)), true
		case ieSourceMacAddress, iePostSourceMacAddress:
			if f.SrcMAC == 0 {
				f.SrcMAC = flow.MACFromSlice(v)
			}
		case ieDestinationMacAddress, iePostDestinationMacAddress:
			if f.DstMAC == 0 {
				f.DstMAC = flow.MACFromSlice(v)
			}
		case ieVlanID, ieDot1qVlanID:
			f.SrcVLAN = uint16(beUint(v)) & 0x0fff
		case iePostVlanID, iePostDot1qVlanID:
			f.DstVLAN = uint16(beUint(v)) & 0x0fff
		case ieIPVersion:
			f.IPVersion = uint8(beUint(v))
		case ieFlowDirection:
			if beUint(v) == 0 {
				f.Direction = flow.DirIngress
			} else {
				f.Direction = flow.DirEgress
			}
		case ieSamplingInterval, ieSamplerRandomInterval:
			inRecordRate = uint32(beUint(v))
		case ieSamplerID, ieSelectorID:
			f.SamplerID = uint32(beUint(v))
		case ieSamplingPacketInterval:
			pktInterval = beUint(v)
		case ieSamplingPacketSpace:
			pktSpace = beUint(v)
		default:
			if t.extra != nil && t.extra[i].kind != flow.ExtraNone {
				storeExtra(f, t.extra[i], v)
			} else {
				decodeTime(fd.ie, v, &tf)
			}
		}
	}
	// Initiator counters' responder side becomes the reverse flow, like
	// a biflow's.
	var fromTotal [totCounters]bool
	f.Bytes, fromTotal[totBytes] = bytes.pick()
	f.Packets, fromTotal[totPackets] = packets.pick()
	revBytes, revPackets := uint64(0), uint64(0)
	if rev.present {
		revBytes, fromTotal[totRevBytes] = rev.bytes.pick()
		revPackets, fromTotal[totRevPackets] = rev.packets.pick()
	}
	if f.NextHop.IsZero() {
		f.NextHop = bgpNextHop
	}
	if hasDSCP && !hasToS {
		f.ToS = dscp << 2
	}
	if hasICMPTC && !hasICMPParts {
		f.ICMPType, f.ICMPCode = uint8(icmpTC>>8), uint8(icmpTC)
	}
	if hasICMPTC || hasICMPParts {
		// One convention for every protocol: ICMP type and code also in
		// the destination port, as NetFlow v5 carries them.
		if (f.IPProto == 1 || f.IPProto == 58) && f.DstPort == 0 {
			f.DstPort = uint16(f.ICMPType)<<8 | uint16(f.ICMPCode)
		}
	} else {
		fillICMPFromPort(f)
	}
	if pktInterval > 0 {
		inRecordRate = packetSamplingRate(pktInterval, pktSpace)
	}
	f.SamplingRate = e.sampling.rate(h.domain, f.SamplerID, inRecordRate)
	f.TimeStartMs, f.TimeEndMs = tf.resolve(h, e.systemInitMs[h.domain], d.nowMs)
	if fromTotal != [totCounters]bool{} {
		var tot totalsReport
		tot.counters = [totCounters]uint64{f.Bytes, f.Packets, revBytes, revPackets}
		for i, t := range fromTotal {
			if t {
				tot.mask |= 1 << i
			}
		}
		e.totalsToDeltas(d, h, f, &tf, &tot)
		f.Bytes, f.Packets, revBytes, revPackets = tot.counters[0], tot.counters[1], tot.counters[2], tot.counters[3]
	}

	if rev.present && (revBytes > 0 || revPackets > 0) {
		fwd := *f
		r := d.next()
		*r = fwd
		r.SrcAddr, r.DstAddr = fwd.DstAddr, fwd.SrcAddr
		r.SrcPort, r.DstPort = fwd.DstPort, fwd.SrcPort
		r.SrcMAC, r.DstMAC = fwd.DstMAC, fwd.SrcMAC
		r.SrcMask, r.DstMask = fwd.DstMask, fwd.SrcMask
		r.SrcAS, r.DstAS = fwd.DstAS, fwd.SrcAS
		r.InIf, r.OutIf = fwd.OutIf, fwd.InIf
		r.InVRF, r.OutVRF = fwd.OutVRF, fwd.InVRF
		r.Bytes, r.Packets, r.TCPFlags = revBytes, revPackets, rev.tcpFlags
		if rev.times != (timeFields{}) {
			r.TimeStartMs, r.TimeEndMs = rev.times.resolve(h, e.systemInitMs[h.domain], d.nowMs)
		}
		// The forward record may describe a flow seen only in reverse.
		if fwd.Bytes == 0 && fwd.Packets == 0 {
			d.flows[len(d.flows)-2] = *r
			d.unwind(1)
		}
	}
	return off, true
}

func decodeTime(ie uint16, v []byte, tf *timeFields) {
	switch ie {
	case ieFlowStartSeconds:
		tf.startMs, tf.hasStartAbs = int64(beUint(v))*1000, true
	case ieFlowEndSeconds:
		tf.endMs, tf.hasEndAbs = int64(beUint(v))*1000, true
	case ieFlowStartMilliseconds:
		tf.startMs, tf.hasStartAbs = int64(beUint(v)), true
	case ieFlowEndMilliseconds:
		tf.endMs, tf.hasEndAbs = int64(beUint(v)), true
	case ieFlowStartMicroseconds, ieFlowStartNanoseconds:
		if len(v) == 8 {
			tf.startMs, tf.hasStartAbs = ntpToUnixMs(binary.BigEndian.Uint64(v)), true
		}
	case ieFlowEndMicroseconds, ieFlowEndNanoseconds:
		if len(v) == 8 {
			tf.endMs, tf.hasEndAbs = ntpToUnixMs(binary.BigEndian.Uint64(v)), true
		}
	case ieFlowStartSysUpTime:
		tf.startUp, tf.hasStartUp = uint32(beUint(v)), true
	case ieFlowEndSysUpTime:
		tf.endUp, tf.hasEndUp = uint32(beUint(v)), true
	case ieFlowStartDeltaMicroseconds:
		tf.startDelta, tf.hasStartDl = uint32(beUint(v)), true
	case ieFlowEndDeltaMicroseconds:
		tf.endDelta, tf.hasEndDl = uint32(beUint(v)), true
	case ieSystemInitTimeMilliseconds:
		tf.systemInitMs = int64(beUint(v))
	case ieObservationTimeSeconds:
		tf.observedMs, tf.hasObserved = int64(beUint(v))*1000, true
	case ieObservationTimeMilliseconds:
		tf.observedMs, tf.hasObserved = int64(beUint(v)), true
	case ieObservationTimeMicroseconds, ieObservationTimeNanoseconds:
		if len(v) == 8 {
			tf.observedMs, tf.hasObserved = ntpToUnixMs(binary.BigEndian.Uint64(v)), true
		}
	}
}

func decodeReverse(ie uint16, v []byte, r *reverseFields) {
	switch ie {
	case ieOctetDeltaCount, iePostOctetDeltaCount, ieOctetTotalCount, iePostOctetTotalCount,
		ieLayer2OctetDeltaCount, ieLayer2OctetTotalCount:
		r.bytes.set(ie, beUint(v))
		r.present = true
	case iePacketDeltaCount, iePostPacketDeltaCount, iePacketTotalCount, iePostPacketTotalCount:
		r.packets.set(ie, beUint(v))
		r.present = true
	case ieTCPControlBits:
		r.tcpFlags = uint8(beUint(v))
	default:
		decodeTime(ie, v, &r.times)
	}
}

// packetSamplingRate is RFC 7011's systematic count-based sampling: of
// every interval+space packets, interval are selected.
func packetSamplingRate(interval, space uint64) uint32 {
	if interval == 0 {
		return 0
	}
	r := (interval + space) / interval
	if r > math.MaxUint32 {
		r = math.MaxUint32
	}
	return uint32(r)
}

// decodeOptionsRecord reads an options data record for what flowhouse
// uses: sampler rates, the system init time, interface names. Options
// records are metadata and never become flows.
func (e *exporter) decodeOptionsRecord(h *messageHeader, t *template, b []byte) (int, bool) {
	var (
		samplerID              uint32
		rate                   uint32
		interval, space        uint64
		size, population       uint64
		probability            float64
		ifIndex                uint32
		hasIfIndex             bool
		ifName, ifDesc         string
		sysInit                int64
		hasSamplingInformation bool
	)
	off := 0
	for i := range t.fields {
		fd := &t.fields[i]
		v, used, ok := fieldValue(fd, b[off:])
		if !ok {
			return 0, false
		}
		off += used
		if fd.pen != 0 {
			continue
		}
		isScope := i < t.scopeLen
		// NetFlow v9 scope fields are scope types (1 system, 2 interface),
		// not information elements.
		if isScope && h.version == 9 {
			if fd.ie == 2 {
				ifIndex, hasIfIndex = uint32(beUint(v)), true
			}
			continue
		}
		switch fd.ie {
		case ieSamplerID, ieSelectorID:
			samplerID = uint32(beUint(v))
		case ieSamplingInterval, ieSamplerRandomInterval:
			rate, hasSamplingInformation = uint32(beUint(v)), true
		case ieSamplingPacketInterval:
			interval, hasSamplingInformation = beUint(v), true
		case ieSamplingPacketSpace:
			space = beUint(v)
		case ieSamplingSize:
			size, hasSamplingInformation = beUint(v), true
		case ieSamplingPopulation:
			population = beUint(v)
		case ieSamplingProbability:
			if len(v) == 8 {
				probability, hasSamplingInformation = math.Float64frombits(binary.BigEndian.Uint64(v)), true
			} else if len(v) == 4 {
				probability, hasSamplingInformation = float64(math.Float32frombits(binary.BigEndian.Uint32(v))), true
			}
		case ieSystemInitTimeMilliseconds:
			sysInit = int64(beUint(v))
		case ieIngressInterface, ieEgressInterface:
			ifIndex, hasIfIndex = uint32(beUint(v)), true
		case ieInterfaceName:
			ifName = string(trimNul(v))
		case ieInterfaceDescription:
			ifDesc = string(trimNul(v))
		}
	}
	if hasSamplingInformation {
		switch {
		case interval > 0:
			rate = packetSamplingRate(interval, space)
		case size > 0 && population > 0:
			rate = uint32(population / size)
		case probability > 0 && probability <= 1:
			rate = uint32(math.Round(1 / probability))
		}
		if rate > 0 {
			e.sampling.learn(h.domain, samplerID, rate)
		}
	}
	if sysInit != 0 && e.systemInitMs[h.domain] != sysInit && len(e.systemInitMs) < maxSystemInits {
		e.systemInitMs[h.domain] = sysInit
		e.optionsChanges++
	}
	if hasIfIndex && (ifName != "" || ifDesc != "") && len(e.ifNames) < maxIfNames {
		if n := e.ifNames[ifIndex]; n.Name != ifName || n.Description != ifDesc {
			e.ifNames[ifIndex] = InterfaceName{Exporter: e.addr, IfIndex: ifIndex, Name: ifName, Description: ifDesc}
			e.optionsChanges++
		}
	}
	return off, true
}

func trimNul(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
