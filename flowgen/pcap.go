package flowgen

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// PcapWriter writes datagrams as Ethernet/IPv4/UDP frames to a classic
// pcap file (microsecond timestamps), which tshark and tcpdump read.
type PcapWriter struct {
	w   io.Writer
	buf []byte
	id  uint16
}

// NewPcapWriter writes the file header and returns the writer.
func NewPcapWriter(w io.Writer) (*PcapWriter, error) {
	h := make([]byte, 24)
	le := binary.LittleEndian
	le.PutUint32(h[0:], 0xa1b2c3d4)
	le.PutUint16(h[4:], 2)
	le.PutUint16(h[6:], 4)
	le.PutUint32(h[16:], 65535) // snaplen
	le.PutUint32(h[20:], 1)     // LINKTYPE_ETHERNET
	if _, err := w.Write(h); err != nil {
		return nil, err
	}
	return &PcapWriter{w: w, buf: make([]byte, 0, 2048)}, nil
}

// WriteDatagram writes one UDP datagram from src to dst (IPv4 only).
func (p *PcapWriter) WriteDatagram(src, dst netip.AddrPort, payload []byte, ts time.Time) error {
	if !src.Addr().Is4() || !dst.Addr().Is4() {
		return fmt.Errorf("pcap: IPv4 addresses only")
	}
	if len(payload) > 65507 {
		return fmt.Errorf("pcap: datagram of %d bytes too large", len(payload))
	}
	frame := 14 + 20 + 8 + len(payload)
	b := p.buf[:0]
	le := binary.LittleEndian
	us := ts.UnixMicro()
	b = le.AppendUint32(b, uint32(us/1_000_000))
	b = le.AppendUint32(b, uint32(us%1_000_000))
	b = le.AppendUint32(b, uint32(frame))
	b = le.AppendUint32(b, uint32(frame))
	// Ethernet: zero MACs, as a capture on the loopback interface shows.
	b = append(b, make([]byte, 12)...)
	b = be.AppendUint16(b, 0x0800)
	ip := len(b)
	p.id++
	b = append(b, 0x45, 0)
	b = be.AppendUint16(b, uint16(20+8+len(payload)))
	b = be.AppendUint16(b, p.id)
	b = be.AppendUint16(b, 0x4000)
	b = append(b, 64, 17, 0, 0)
	s, d := src.Addr().As4(), dst.Addr().As4()
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	be.PutUint16(b[ip+10:], ipChecksum(b[ip:ip+20]))
	b = be.AppendUint16(b, src.Port())
	b = be.AppendUint16(b, dst.Port())
	b = be.AppendUint16(b, uint16(8+len(payload)))
	b = be.AppendUint16(b, 0) // no checksum (allowed for IPv4)
	b = append(b, payload...)
	p.buf = b
	_, err := p.w.Write(b)
	return err
}
