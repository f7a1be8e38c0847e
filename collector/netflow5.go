package collector

import (
	"encoding/binary"

	"github.com/flowhouse/flowhouse/flow"
)

const (
	nf5HeaderLen = 24
	nf5RecordLen = 48
)

// decodeNetFlowV5 decodes a v5 datagram. The record count in the header is
// checked against the datagram length, never trusted alone: a datagram
// whose count disagrees with its size is dropped whole, since either the
// count or the length is lying and we cannot tell which records are real.
func (e *exporter) decodeNetFlowV5(d *decodeContext, b []byte) {
	if len(b) < nf5HeaderLen {
		e.drop(ReasonTruncated)
		return
	}
	count := int(binary.BigEndian.Uint16(b[2:]))
	if count == 0 || nf5HeaderLen+count*nf5RecordLen != len(b) {
		e.drop(ReasonBadLength)
		return
	}
	sysUptime := binary.BigEndian.Uint32(b[4:])
	exportMs := int64(binary.BigEndian.Uint32(b[8:]))*1000 + int64(binary.BigEndian.Uint32(b[12:]))/1_000_000
	sequence := binary.BigEndian.Uint32(b[16:])
	engine := uint32(b[20])<<8 | uint32(b[21])
	samplingField := binary.BigEndian.Uint16(b[22:])
	// Top two bits are the sampling mode, the rest the interval.
	headerRate := uint32(samplingField & 0x3fff)

	e.sequence(flow.ProtoNetFlowV5, engine, message{seq: sequence, all: uint32(count), flows: uint32(count), session: d.src.Port(),
		clock: bootReading(exportMs, sysUptime)})
	rate := e.sampling.rate(engine, 0, headerRate)

	for i := 0; i < count; i++ {
		r := b[nf5HeaderLen+i*nf5RecordLen:]
		f := d.next()
		f.Protocol = flow.ProtoNetFlowV5
		f.ObservationDomain = engine
		f.SamplingRate = rate
		f.SrcAddr = flow.AddrFrom4([4]byte(r[0:4]))
		f.DstAddr = flow.AddrFrom4([4]byte(r[4:8]))
		f.NextHop = flow.AddrFrom4([4]byte(r[8:12]))
		f.InIf = uint32(binary.BigEndian.Uint16(r[12:]))
		f.OutIf = uint32(binary.BigEndian.Uint16(r[14:]))
		f.Packets = uint64(binary.BigEndian.Uint32(r[16:]))
		f.Bytes = uint64(binary.BigEndian.Uint32(r[20:]))
		f.TimeStartMs = uptimeToUnixMs(exportMs, sysUptime, binary.BigEndian.Uint32(r[24:]))
		f.TimeEndMs = uptimeToUnixMs(exportMs, sysUptime, binary.BigEndian.Uint32(r[28:]))
		f.SrcPort = binary.BigEndian.Uint16(r[32:])
		f.DstPort = binary.BigEndian.Uint16(r[34:])
		f.TCPFlags = r[37]
		f.IPProto = r[38]
		f.ToS = r[39]
		f.SrcAS = uint32(binary.BigEndian.Uint16(r[40:]))
		f.DstAS = uint32(binary.BigEndian.Uint16(r[42:]))
		f.SrcMask = r[44]
		f.DstMask = r[45]
		f.IPVersion = 4
		fillICMPFromPort(f)
	}
}

// uptimeToUnixMs turns a sysUptime-relative timestamp into Unix ms. The
// difference is taken modulo 2^32 so that an uptime counter that wrapped
// between the flow and the export still gives the right time.
func uptimeToUnixMs(exportMs int64, sysUptime, at uint32) int64 {
	return exportMs - int64(int32(sysUptime-at))
}

// fillICMPFromPort derives ICMP type and code from the destination port,
// where NetFlow v5 and most v9 exporters put them (type*256+code).
func fillICMPFromPort(f *flow.Flow) {
	if (f.IPProto == 1 || f.IPProto == 58) && f.ICMPType == 0 && f.ICMPCode == 0 {
		f.ICMPType = uint8(f.DstPort >> 8)
		f.ICMPCode = uint8(f.DstPort)
	}
}
