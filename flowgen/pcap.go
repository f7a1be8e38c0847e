package flowgen

import (
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// PcapWriter writes datagrams as Ethernet/IPv4/UDP frames to a classic
// pcap file (microsecond timestamps), which tshark and tcpdump read:
// gopacket's layers build the frames and pcapgo writes the file.
type PcapWriter struct {
	w   *pcapgo.Writer
	buf gopacket.SerializeBuffer
	id  uint16
	// Ethernet: zero MACs, as a capture on the loopback interface shows.
	eth layers.Ethernet
}

// NewPcapWriter writes the file header and returns the writer.
func NewPcapWriter(w io.Writer) (*PcapWriter, error) {
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return nil, err
	}
	return &PcapWriter{
		w:   pw,
		buf: gopacket.NewSerializeBuffer(),
		eth: layers.Ethernet{SrcMAC: make([]byte, 6), DstMAC: make([]byte, 6), EthernetType: layers.EthernetTypeIPv4},
	}, nil
}

// WriteDatagram writes one UDP datagram from src to dst (IPv4 only).
func (p *PcapWriter) WriteDatagram(src, dst netip.AddrPort, payload []byte, ts time.Time) error {
	if !src.Addr().Is4() || !dst.Addr().Is4() {
		return fmt.Errorf("pcap: IPv4 addresses only")
	}
	if len(payload) > 65507 {
		return fmt.Errorf("pcap: datagram of %d bytes too large", len(payload))
	}
	s, d := src.Addr().As4(), dst.Addr().As4()
	p.id++
	ip := layers.IPv4{Version: 4, IHL: 5, Id: p.id, Flags: layers.IPv4DontFragment, TTL: 64,
		Protocol: layers.IPProtocolUDP, SrcIP: s[:], DstIP: d[:]}
	udp := layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	if err := udp.SetNetworkLayerForChecksum(&ip); err != nil {
		return err
	}
	if err := gopacket.SerializeLayers(p.buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&p.eth, &ip, &udp, gopacket.Payload(payload)); err != nil {
		return fmt.Errorf("pcap: %w", err)
	}
	frame := p.buf.Bytes()
	ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(frame), Length: len(frame)}
	return p.w.WritePacket(ci, frame)
}
