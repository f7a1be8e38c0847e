// Package pcapfile reads the UDP datagrams of a capture file: the
// collector's tests read real exporters' captures with it (through
// internal/testkit), and flowgen's replayer replays them.
package pcapfile

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Datagram is one UDP datagram of a capture.
type Datagram struct {
	Time    time.Time // capture time, UTC
	Src     netip.AddrPort
	Dst     netip.AddrPort
	Payload []byte
}

// packetSource is what both pcapgo readers are.
type packetSource interface {
	gopacket.PacketDataSource
	LinkType() layers.LinkType
}

// Read reads the UDP datagrams of a capture file (classic pcap or pcapng;
// any link type gopacket decodes, and Linux cooked v2). Other packets are
// skipped, and so are IP fragments: flow exports on the loopback are not
// fragmented. A datagram cut short by the capture's snap length is an
// error, since a decoder fed half a datagram would mislead.
func Read(path string) ([]Datagram, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	hdr, err := r.Peek(24)
	if err != nil {
		return nil, err
	}
	var src packetSource
	sll2 := false
	if bytes.Equal(hdr[:4], []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		src, err = pcapgo.NewNgReader(r, pcapgo.DefaultNgReaderOptions)
	} else {
		// gopacket v1.1.19 keeps link types in 8 bits: read the header's.
		link := binary.LittleEndian.Uint32(hdr[20:])
		if hdr[0] == 0xa1 { // big-endian magic (a1b2c3d4, a1b23c4d)
			link = binary.BigEndian.Uint32(hdr[20:])
		}
		sll2 = link == linkTypeSLL2
		src, err = pcapgo.NewReader(r)
	}
	if err != nil {
		return nil, err
	}
	var out []Datagram
	for i := 1; ; i++ {
		data, ci, err := src.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("packet %d: %w", i, err)
		}
		p := decodePacket(src.LinkType(), sll2, data)
		d, ok := datagramOf(p)
		if !ok {
			continue
		}
		if ci.CaptureLength < ci.Length || p.Metadata().Truncated {
			return out, fmt.Errorf("packet %d: UDP datagram cut short by the snap length (%d of %d bytes captured)", i, ci.CaptureLength, ci.Length)
		}
		d.Time = ci.Timestamp.UTC()
		out = append(out, d)
	}
}

// linkTypeSLL2 is Linux cooked capture v2 (what tcpdump -i any writes
// today), which gopacket v1.1.19 does not know: a 20-byte header that
// starts with the EtherType of what follows.
const linkTypeSLL2 = 276

func decodePacket(link layers.LinkType, sll2 bool, data []byte) gopacket.Packet {
	opts := gopacket.DecodeOptions{NoCopy: true}
	if sll2 && len(data) >= 20 {
		return gopacket.NewPacket(data[20:], layers.EthernetType(binary.BigEndian.Uint16(data)), opts)
	}
	return gopacket.NewPacket(data, link, opts)
}

// datagramOf returns the UDP datagram of p, unless p is not UDP over IP
// or is a fragment.
func datagramOf(p gopacket.Packet) (Datagram, bool) {
	udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if !ok {
		return Datagram{}, false
	}
	var srcIP, dstIP []byte
	switch ip := p.NetworkLayer().(type) {
	case *layers.IPv4:
		if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
			return Datagram{}, false
		}
		srcIP, dstIP = ip.SrcIP.To4(), ip.DstIP.To4()
	case *layers.IPv6:
		if fr, ok := p.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment); ok && (fr.MoreFragments || fr.FragmentOffset != 0) {
			return Datagram{}, false
		}
		srcIP, dstIP = ip.SrcIP, ip.DstIP
	default:
		return Datagram{}, false
	}
	s, _ := netip.AddrFromSlice(srcIP)
	d, _ := netip.AddrFromSlice(dstIP)
	return Datagram{
		Src:     netip.AddrPortFrom(s, uint16(udp.SrcPort)),
		Dst:     netip.AddrPortFrom(d, uint16(udp.DstPort)),
		Payload: bytes.Clone(udp.Payload),
	}, true
}
