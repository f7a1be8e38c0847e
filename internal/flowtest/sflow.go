package flowtest

import (
	"encoding/binary"
	"net/netip"
)

// IfCounters is a generic interface counters record, field by field as
// sflow_version_5.txt defines struct if_counters (enterprise 0, format 1).
type IfCounters struct {
	IfIndex, IfType                                                               uint32
	SpeedBps                                                                      uint64
	Direction, Status                                                             uint32
	InOctets                                                                      uint64
	InUcast, InMulticast, InBroadcast, InDiscards, InErrors, InUnknownProtos      uint32
	OutOctets                                                                     uint64
	OutUcast, OutMulticast, OutBroadcast, OutDiscards, OutErrors, PromiscuousMode uint32
}

// Record is the counter record (data format, length, the 88 bytes).
func (c IfCounters) Record() []byte {
	b := be32(nil, c.IfIndex, c.IfType)
	b = binary.BigEndian.AppendUint64(b, c.SpeedBps)
	b = be32(b, c.Direction, c.Status)
	b = binary.BigEndian.AppendUint64(b, c.InOctets)
	b = be32(b, c.InUcast, c.InMulticast, c.InBroadcast, c.InDiscards, c.InErrors, c.InUnknownProtos)
	b = binary.BigEndian.AppendUint64(b, c.OutOctets)
	b = be32(b, c.OutUcast, c.OutMulticast, c.OutBroadcast, c.OutDiscards, c.OutErrors, c.PromiscuousMode)
	return CounterRecord(1, b)
}

// EthernetCounters is struct ethernet_counters (enterprise 0, format 2):
// the thirteen dot3Stats counters, alignment errors first.
type EthernetCounters [13]uint32

// Record is the counter record (data format, length, the 52 bytes).
func (c EthernetCounters) Record() []byte { return CounterRecord(2, be32(nil, c[:]...)) }

// CounterRecord frames body as a counter record of the data format
// (enterprise << 12 | format), padded to 4 bytes as XDR opaque data is.
func CounterRecord(format uint32, body []byte) []byte {
	b := be32(nil, format, uint32(len(body)))
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// CounterSample is a counters_sample (sample format 2): sequence number,
// source ID (type << 24 | index), records.
func CounterSample(seq, sourceID uint32, records ...[]byte) []byte {
	return sample(2, be32(nil, seq, sourceID), records)
}

// ExpandedCounterSample is a counters_sample_expanded (sample format 4).
func ExpandedCounterSample(seq, sourceType, sourceIndex uint32, records ...[]byte) []byte {
	return sample(4, be32(nil, seq, sourceType, sourceIndex), records)
}

func sample(format uint32, head []byte, records [][]byte) []byte {
	body := be32(head, uint32(len(records)))
	for _, r := range records {
		body = append(body, r...)
	}
	return append(be32(nil, format, uint32(len(body))), body...)
}

// SFlowDatagram is an sFlow v5 datagram of an IPv4 agent holding samples.
func SFlowDatagram(agent netip.Addr, subAgent, seq, uptimeMs uint32, samples ...[]byte) []byte {
	a := agent.As4()
	b := be32(nil, 5, 1)
	b = append(b, a[:]...)
	b = be32(b, subAgent, seq, uptimeMs, uint32(len(samples)))
	for _, s := range samples {
		b = append(b, s...)
	}
	return b
}

func be32(b []byte, vs ...uint32) []byte {
	for _, v := range vs {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}
