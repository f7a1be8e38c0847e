// Package flow defines the record that moves through flowhouse:
// the collector fills it from a datagram, enrichment adds names to it,
// and the store writes it as one row of the flows table.
//
// It is a plain value type with fixed-size fields so that the hot path
// can fill and batch records without allocating per flow.
package flow

import (
	"net/netip"
)

// Protocol of the datagram a flow came from.
type Protocol uint8

const (
	ProtoUnknown Protocol = iota
	ProtoNetFlowV5
	ProtoNetFlowV9
	ProtoIPFIX
	ProtoSFlowV5
)

func (p Protocol) String() string {
	switch p {
	case ProtoNetFlowV5:
		return "netflow_v5"
	case ProtoNetFlowV9:
		return "netflow_v9"
	case ProtoIPFIX:
		return "ipfix"
	case ProtoSFlowV5:
		return "sflow_v5"
	}
	return "unknown"
}

// Direction as the exporter reports it (IE 61 flowDirection); unknown when absent.
type Direction uint8

const (
	DirUnknown Direction = iota
	DirIngress
	DirEgress
)

// Addr is an IPv6 address in network byte order; IPv4 is stored as
// IPv4-mapped IPv6 (::ffff:a.b.c.d) so one column holds both families.
// The zero value means "absent".
type Addr [16]byte

// AddrFrom4 maps an IPv4 address into Addr.
func AddrFrom4(b [4]byte) Addr {
	var a Addr
	a[10], a[11] = 0xff, 0xff
	copy(a[12:], b[:])
	return a
}

// AddrFromSlice copies a 4- or 16-byte address; anything else gives the zero Addr.
func AddrFromSlice(b []byte) Addr {
	var a Addr
	switch len(b) {
	case 4:
		a[10], a[11] = 0xff, 0xff
		copy(a[12:], b)
	case 16:
		copy(a[:], b)
	}
	return a
}

// AddrFromNetip converts a netip.Addr (IPv4 is mapped).
func AddrFromNetip(ip netip.Addr) Addr {
	if !ip.IsValid() {
		return Addr{}
	}
	return Addr(ip.As16())
}

// IsZero reports whether the address is absent.
func (a Addr) IsZero() bool { return a == Addr{} }

// Netip returns the address, unmapping IPv4.
func (a Addr) Netip() netip.Addr {
	if a.IsZero() {
		return netip.Addr{}
	}
	return netip.AddrFrom16(a).Unmap()
}

func (a Addr) String() string {
	if a.IsZero() {
		return ""
	}
	return a.Netip().String()
}

// MAC is a 48-bit hardware address in the low bits, as ClickHouse's
// MACNumToString expects; 0 means absent.
type MAC uint64

// MACFromSlice reads 6 bytes; anything else gives 0.
func MACFromSlice(b []byte) MAC {
	if len(b) != 6 {
		return 0
	}
	return MAC(uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5]))
}

// Flow is one flow record. Times are Unix milliseconds, UTC.
// Bytes and Packets are as the exporter counted them (not scaled by
// SamplingRate); analysts scale with bytes * sampling_rate.
type Flow struct {
	TimeReceivedMs int64
	TimeStartMs    int64
	TimeEndMs      int64

	Protocol          Protocol
	ExporterAddr      Addr
	ExporterPort      uint16
	ObservationDomain uint32 // v9 source ID, IPFIX observation domain, sFlow sub-agent ID
	SamplerID         uint32
	SamplingRate      uint32 // 1 in N; 1 when unsampled or unknown
	Direction         Direction

	InIf   uint32
	OutIf  uint32
	InVRF  uint32 // IE 234 ingressVRFID; 0 when absent
	OutVRF uint32 // IE 235 egressVRFID

	SrcAddr   Addr
	DstAddr   Addr
	NextHop   Addr
	SrcPort   uint16
	DstPort   uint16
	IPProto   uint8
	TCPFlags  uint8
	ToS       uint8
	IPVersion uint8 // 4 or 6; 0 when the record had no IP layer
	ICMPType  uint8
	ICMPCode  uint8
	SrcMask   uint8
	DstMask   uint8
	SrcVLAN   uint16
	DstVLAN   uint16
	SrcMAC    MAC
	DstMAC    MAC
	SrcAS     uint32
	DstAS     uint32
	Bytes     uint64
	Packets   uint64
	FlowLabel uint32 // IPv6 flow label where known

	// Information elements mapped to columns by configuration (see
	// ExtraColumn); zero when the record had none.
	Extra     [ExtraSlots]uint64
	ExtraAddr [ExtraAddrSlots]Addr

	// Enrichment fields: empty until the enrich stage fills them.
	Tenant           string
	ExporterName     string
	InIfName         string
	InIfDescription  string
	InIfSpeedMbps    uint64
	InIfBoundary     string
	OutIfName        string
	OutIfDescription string
	OutIfSpeedMbps   uint64
	OutIfBoundary    string
	SrcVendor        string
	DstVendor        string
	// Network attributes of the source and destination addresses, from
	// the configured networks (CIDR map) of the flow's tenant.
	SrcNetName string
	SrcNetRole string
	SrcNetSite string
	DstNetName string
	DstNetRole string
	DstNetSite string
}
