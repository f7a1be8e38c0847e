package collector

import (
	"encoding/binary"

	"github.com/flowhouse/flowhouse/flow"
)

// Parsers of the packet headers that sFlow samples carry. They fill what
// the bytes present allow and stop quietly at the end of a truncated
// header: a sampled header is often cut short by design. Payload beyond
// the transport header is never looked at.

func parseEthernet(b []byte, f *flow.Flow) {
	if len(b) < 14 {
		return
	}
	f.DstMAC = flow.MACFromSlice(b[0:6])
	f.SrcMAC = flow.MACFromSlice(b[6:12])
	etype := binary.BigEndian.Uint16(b[12:])
	b = b[14:]
	for etype == 0x8100 || etype == 0x88a8 {
		if len(b) < 4 {
			return
		}
		if f.SrcVLAN == 0 {
			f.SrcVLAN = binary.BigEndian.Uint16(b) & 0x0fff
		}
		etype = binary.BigEndian.Uint16(b[2:])
		b = b[4:]
	}
	switch etype {
	case 0x0800:
		parseIPv4(b, f)
	case 0x86dd:
		parseIPv6(b, f)
	}
}

func parseIPv4(b []byte, f *flow.Flow) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return
	}
	ihl := int(b[0]&0x0f) * 4
	f.IPVersion = 4
	f.ToS = b[1]
	f.Bytes = uint64(binary.BigEndian.Uint16(b[2:]))
	f.IPProto = b[9]
	f.SrcAddr = flow.AddrFrom4([4]byte(b[12:16]))
	f.DstAddr = flow.AddrFrom4([4]byte(b[16:20]))
	// Only the first fragment carries the transport header.
	if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 || ihl < 20 || ihl > len(b) {
		return
	}
	parseTransport(b[ihl:], f)
}

func parseIPv6(b []byte, f *flow.Flow) {
	if len(b) < 40 || b[0]>>4 != 6 {
		return
	}
	f.IPVersion = 6
	f.ToS = b[0]<<4 | b[1]>>4
	f.FlowLabel = binary.BigEndian.Uint32(b[0:4]) & 0xfffff
	f.Bytes = uint64(binary.BigEndian.Uint16(b[4:])) + 40
	next := b[6]
	f.SrcAddr = flow.Addr(b[8:24])
	f.DstAddr = flow.Addr(b[24:40])
	b = b[40:]
	// Walk extension headers to the transport protocol.
	for i := 0; i < 8; i++ {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(b) < 8 {
				f.IPProto = next
				return
			}
			l := (int(b[1]) + 1) * 8
			next = b[0]
			if l > len(b) {
				f.IPProto = next
				return
			}
			b = b[l:]
		case 44: // fragment: transport header only in the first fragment
			if len(b) < 8 {
				f.IPProto = next
				return
			}
			next = b[0]
			first := binary.BigEndian.Uint16(b[2:])&0xfff8 == 0
			f.IPProto = next
			if !first {
				return
			}
			b = b[8:]
		default:
			f.IPProto = next
			parseTransport(b, f)
			return
		}
	}
}

func parseTransport(b []byte, f *flow.Flow) {
	switch f.IPProto {
	case 6:
		if len(b) >= 4 {
			f.SrcPort = binary.BigEndian.Uint16(b)
			f.DstPort = binary.BigEndian.Uint16(b[2:])
		}
		if len(b) >= 14 {
			f.TCPFlags = b[13]
		}
	case 17, 132: // UDP, SCTP
		if len(b) >= 4 {
			f.SrcPort = binary.BigEndian.Uint16(b)
			f.DstPort = binary.BigEndian.Uint16(b[2:])
		}
	case 1, 58:
		if len(b) >= 2 {
			f.ICMPType, f.ICMPCode = b[0], b[1]
			// Match NetFlow's convention so ICMP rows look alike across protocols.
			f.DstPort = uint16(b[0])<<8 | uint16(b[1])
		}
	}
}
