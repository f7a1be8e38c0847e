package collector

import (
	"bytes"
	"encoding/binary"
	"net/netip"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/netsampler/goflow2/v2/decoders/sflow"
)

// InterfaceName is an interface name an exporter announced in an options record.
type InterfaceName struct {
	Exporter    netip.Addr
	IfIndex     uint32
	Name        string
	Description string
}

const (
	sflowHeaderProtoEthernet = 1
	sflowHeaderProtoIPv4     = 11
	sflowHeaderProtoIPv6     = 12
	// sFlow's compact interface format reserves this value for "internal"
	// (the agent itself) or unknown interfaces.
	sflowIfInternal = 0x3fffffff
	// sflowFCSLen is the Ethernet frame check sequence, which
	// sampled_ethernet's length includes.
	sflowFCSLen = 4

	// Counter record formats (enterprise 0) and the length of their
	// structures, sflow_version_5.txt: if_counters and ethernet_counters.
	sflowCountersGeneric     = 1
	sflowCountersEthernet    = 2
	sflowIfCountersLen       = 88
	sflowEthernetCountersLen = 52
)

// decodeSFlow decodes an sFlow v5 datagram. We walk the datagram and its
// samples ourselves (so counts are checked against the bytes present) and
// hand each record to goflow2's record decoders.
func (e *exporter) decodeSFlow(d *decodeContext, b []byte) {
	r := reader{b: b[4:]}
	var agentLen int
	switch r.u32() {
	case 1:
		agentLen = 4
	case 2:
		agentLen = 16
	default:
		if r.bad {
			e.drop(ReasonTruncated)
		} else {
			e.drop(ReasonMalformedSample)
		}
		return
	}
	r.skip(agentLen)
	subAgent := r.u32()
	seq := r.u32()
	// Flow times come from the receive time; the uptime tells restarts
	// (sequence.go) and is counter samples' interval (enrich).
	uptime := r.u32()
	nSamples := r.u32()
	if r.bad {
		e.drop(ReasonTruncated)
		return
	}
	// Each sample takes at least its 8-byte header: a count the datagram
	// cannot hold is a lie and the datagram is not trusted.
	if uint64(nSamples)*8 > uint64(len(r.b)) {
		e.drop(ReasonTooManySamples)
		return
	}
	e.sequence(flow.ProtoSFlowV5, subAgent, message{seq: seq, all: 1, flows: 1, clock: uptimeReading(uptime)})
	for i := uint32(0); i < nSamples; i++ {
		format := r.u32()
		length := r.u32()
		body := r.bytes(int(length))
		if r.bad {
			e.drop(ReasonMalformedSample)
			return
		}
		switch format {
		case sflow.SAMPLE_FORMAT_FLOW, sflow.SAMPLE_FORMAT_EXPANDED_FLOW:
			if !e.decodeSFlowFlowSample(d, subAgent, format == sflow.SAMPLE_FORMAT_EXPANDED_FLOW, body) {
				e.drop(ReasonMalformedSample)
			}
		case sflow.SAMPLE_FORMAT_COUNTER, sflow.SAMPLE_FORMAT_EXPANDED_COUNTER:
			if !e.decodeSFlowCounterSample(d, subAgent, uptime, format == sflow.SAMPLE_FORMAT_EXPANDED_COUNTER, body) {
				e.drop(ReasonMalformedSample)
			}
		default:
			e.drop(ReasonUnsupportedSample)
		}
	}
}

func (e *exporter) decodeSFlowFlowSample(d *decodeContext, subAgent uint32, expanded bool, b []byte) bool {
	r := reader{b: b}
	r.u32() // sample sequence number
	if expanded {
		r.u32() // source ID type
		r.u32() // source ID index
	} else {
		r.u32()
	}
	rate := r.u32()
	r.u32() // sample pool
	r.u32() // drops
	var in, out uint32
	if expanded {
		inFormat, inValue := r.u32(), r.u32()
		outFormat, outValue := r.u32(), r.u32()
		if inFormat == 0 {
			in = inValue
		}
		if outFormat == 0 {
			out = outValue
		}
	} else {
		inRaw, outRaw := r.u32(), r.u32()
		// Compact format: two bits of format, 30 bits of value; only
		// format 0 is an ifIndex.
		if inRaw>>30 == 0 && inRaw != sflowIfInternal {
			in = inRaw
		}
		if outRaw>>30 == 0 && outRaw != sflowIfInternal {
			out = outRaw
		}
	}
	nRecords := r.u32()
	if r.bad || uint64(nRecords)*8 > uint64(len(r.b)) {
		return false
	}

	f := d.next()
	f.Protocol = flow.ProtoSFlowV5
	f.ObservationDomain = subAgent
	f.SamplingRate = e.sampling.rate(subAgent, 0, rate)
	f.InIf, f.OutIf = in, out
	f.Packets = 1
	f.TimeStartMs, f.TimeEndMs = d.nowMs, d.nowMs
	var frameBytes uint64
	var hasSwitch bool
	var sw sflow.ExtendedSwitch
	for i := uint32(0); i < nRecords; i++ {
		hdr := sflow.RecordHeader{DataFormat: r.u32(), Length: r.u32()}
		body := r.bytes(int(hdr.Length))
		if r.bad {
			d.unwind(1)
			return false
		}
		if hdr.DataFormat == sflow.FLOW_TYPE_ETH {
			if !sampledEthernet(body, f, &frameBytes) {
				d.unwind(1)
				return false
			}
			continue
		}
		rec, err := sflow.DecodeFlowRecord(&hdr, bytes.NewBuffer(body))
		if err != nil {
			d.unwind(1)
			return false
		}
		switch v := rec.Data.(type) {
		case sflow.SampledHeader:
			data := v.HeaderData
			if int(v.OriginalLength) < len(data) {
				data = data[:v.OriginalLength] // drop XDR padding
			}
			frameBytes = uint64(v.FrameLength) - uint64(min(v.Stripped, v.FrameLength))
			switch v.Protocol {
			case sflowHeaderProtoEthernet:
				parseEthernet(data, f)
			case sflowHeaderProtoIPv4:
				parseIPv4(data, f)
			case sflowHeaderProtoIPv6:
				parseIPv6(data, f)
			}
		case sflow.SampledIPv4:
			if f.IPVersion == 0 {
				fillSampledIP(f, &v.SampledIPBase, 4)
				f.ToS = uint8(v.Tos)
			}
		case sflow.SampledIPv6:
			if f.IPVersion == 0 {
				fillSampledIP(f, &v.SampledIPBase, 6)
				f.ToS = uint8(v.Priority)
			}
		case sflow.ExtendedSwitch:
			sw, hasSwitch = v, true
		case sflow.ExtendedRouter:
			f.NextHop = flow.AddrFromSlice(v.NextHop)
			f.SrcMask, f.DstMask = uint8(v.SrcMaskLen), uint8(v.DstMaskLen)
		case sflow.ExtendedGateway:
			f.SrcAS = v.SrcAS
			f.DstAS = v.AS
			if len(v.ASPath) > 0 {
				f.DstAS = v.ASPath[len(v.ASPath)-1]
			}
			if f.NextHop.IsZero() {
				f.NextHop = flow.AddrFromSlice(v.NextHop)
			}
		}
	}
	if hasSwitch {
		if f.SrcVLAN == 0 {
			f.SrcVLAN = uint16(sw.SrcVlan)
		}
		f.DstVLAN = uint16(sw.DstVlan)
	}
	// Bytes are the IP total length, as NetFlow and IPFIX count octets, so
	// that one query gives comparable volumes across protocols; without an
	// IP header, the frame without FCS stands in, as layer 2 octets do for
	// NetFlow and IPFIX records of non-IP traffic (counter.pick).
	if f.Bytes == 0 {
		f.Bytes = frameBytes
	}
	return true
}

// sampledEthernet reads an Ethernet frame data record (sFlow v5 flow
// format 2: length, src_mac, dst_mac, type). Its MACs are XDR opaque[6],
// each padded to 8 bytes (hsflowd's SFLSampled_ethernet: src_mac[8]);
// goflow2 v2.2.6 reads them as 6 bytes each, which put two bytes of
// padding into the destination MAC.
func sampledEthernet(b []byte, f *flow.Flow, frameBytes *uint64) bool {
	const macLen, macXDRLen = 6, 8
	if len(b) < 4+2*macXDRLen+4 {
		return false
	}
	length := binary.BigEndian.Uint32(b)
	if f.SrcMAC == 0 && f.DstMAC == 0 {
		f.SrcMAC = flow.MACFromSlice(b[4 : 4+macLen])
		f.DstMAC = flow.MACFromSlice(b[4+macXDRLen : 4+macXDRLen+macLen])
	}
	if *frameBytes == 0 && length >= sflowFCSLen {
		// The MAC packet's length includes the FCS; the frame without it,
		// as a sampled header's frame_length less stripped gives.
		*frameBytes = uint64(length - sflowFCSLen)
	}
	return true
}

func fillSampledIP(f *flow.Flow, v *sflow.SampledIPBase, version uint8) {
	f.IPVersion = version
	f.SrcAddr, f.DstAddr = flow.AddrFromSlice(v.SrcIP), flow.AddrFromSlice(v.DstIP)
	f.IPProto = uint8(v.Protocol)
	f.SrcPort, f.DstPort = uint16(v.SrcPort), uint16(v.DstPort)
	f.TCPFlags = uint8(v.TcpFlags)
	f.Bytes = uint64(v.Length)
}

// decodeSFlowCounterSample decodes the records of a counters_sample (or
// its expanded form). A record the sample's framing holds but that is too
// short for its format is counted malformed and the next record read; a
// sample whose framing is broken is malformed as a whole (false).
func (e *exporter) decodeSFlowCounterSample(d *decodeContext, subAgent, uptime uint32, expanded bool, b []byte) bool {
	r := reader{b: b}
	seq := r.u32()
	r.u32() // source ID (type and index); the records name their interface
	if expanded {
		r.u32()
	}
	n := r.u32()
	if r.bad || uint64(n)*8 > uint64(len(r.b)) {
		return false
	}
	// The records of one sample describe one data source (interface), in
	// any order: its Ethernet counters join its generic ones.
	generic := -1
	var eth []byte
	for i := uint32(0); i < n; i++ {
		format := r.u32()
		body := r.bytes(int(r.u32()))
		if r.bad {
			return false
		}
		switch format {
		case sflowCountersGeneric:
			if len(body) < sflowIfCountersLen {
				e.counterRecord(format, outcomeMalformed)
				continue
			}
			c := d.nextCounter()
			decodeIfCounters(body, c)
			c.ObservationDomain, c.Sequence, c.AgentUptimeMs = subAgent, seq, uptime
			generic = len(d.counters) - 1
			e.counterRecords++
			e.counterRecord(format, outcomeKept)
		case sflowCountersEthernet:
			if len(body) < sflowEthernetCountersLen {
				e.counterRecord(format, outcomeMalformed)
				continue
			}
			eth = body
		default:
			e.counterRecord(format, outcomeSkipped)
		}
	}
	if eth != nil {
		if generic < 0 {
			// Without the interface's generic record nothing says which
			// interface these are (the sample's source ID is its data
			// source, not always an ifIndex): counted, not kept.
			e.counterRecord(sflowCountersEthernet, outcomeCounted)
		} else {
			decodeEthernetCounters(eth, &d.counters[generic].Ethernet)
			d.counters[generic].HasEthernet = true
			e.counterRecord(sflowCountersEthernet, outcomeKept)
		}
	}
	return true
}

// decodeEthernetCounters reads an ethernet_counters structure (13
// counters of 4 bytes, checked by the caller).
func decodeEthernetCounters(b []byte, x *flow.EthernetCounters) {
	for i, p := range []*uint32{&x.AlignmentErrors, &x.FCSErrors, &x.SingleCollisionFrames, &x.MultipleCollisionFrames,
		&x.SQETestErrors, &x.DeferredTransmissions, &x.LateCollisions, &x.ExcessiveCollisions,
		&x.InternalMacTransmitErrors, &x.CarrierSenseErrors, &x.FrameTooLongs, &x.InternalMacReceiveErrors, &x.Symbol} {
		*p = binary.BigEndian.Uint32(b[4*i:])
	}
}

// counterRecord counts a counter record by format and outcome; a
// malformed record is also a malformed_sample drop of the exporter.
func (e *exporter) counterRecord(format uint32, outcome int) {
	if outcome == outcomeMalformed {
		e.drop(ReasonMalformedSample)
	}
	e.m.counterRecord(format, outcome)
}

// decodeIfCounters reads an if_counters structure (88 bytes, checked by
// the caller): ifIndex 0, ifType 4, ifSpeed 8 (hyper), ifDirection 16,
// ifStatus 20, ifInOctets 24 (hyper), six in counters 32-55,
// ifOutOctets 56 (hyper), five out counters and ifPromiscuousMode 64-87.
func decodeIfCounters(b []byte, c *flow.CounterSample) {
	u32 := func(off int) uint32 { return binary.BigEndian.Uint32(b[off:]) }
	c.IfIndex = u32(0)
	c.SpeedBps = binary.BigEndian.Uint64(b[8:])
	c.InOctets = binary.BigEndian.Uint64(b[24:])
	c.InPackets = uint64(u32(32)) + uint64(u32(36)) + uint64(u32(40))
	c.InDiscards, c.InErrors, c.InUnknownProtos = u32(44), u32(48), u32(52)
	c.OutOctets = binary.BigEndian.Uint64(b[56:])
	c.OutPackets = uint64(u32(64)) + uint64(u32(68)) + uint64(u32(72))
	c.OutDiscards, c.OutErrors = u32(76), u32(80)
}

// reader reads XDR (sFlow) fields; a read past the end sets bad and
// returns zeros, so callers check once after a run of reads.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u32() uint32 {
	if len(r.b) < 4 {
		r.bad, r.b = true, nil
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) skip(n int) { r.bytes(n) }

// bytes returns n bytes and skips their XDR padding to a multiple of 4.
func (r *reader) bytes(n int) []byte {
	if n < 0 || n > len(r.b) {
		r.bad, r.b = true, nil
		return nil
	}
	v := r.b[:n]
	pad := (4 - n%4) % 4
	if n+pad > len(r.b) {
		pad = len(r.b) - n
	}
	r.b = r.b[n+pad:]
	return v
}
