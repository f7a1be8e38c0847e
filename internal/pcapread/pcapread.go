// Package pcapread reads the UDP datagrams out of a packet capture file.
//
// It exists for tests: flowhouse keeps real exporters' traffic as capture
// files (collector/testdata/captures) and feeds the payloads to its decoders
// and to fuzz targets. It depends on the standard library only.
//
// Supported: classic pcap (microsecond and nanosecond, either byte order) and
// pcapng (section header, interface description, enhanced and simple packet
// blocks; if_tsresol and if_tsoffset honoured); link types Ethernet (with
// 802.1Q/802.1ad tags), BSD/Linux loopback (NULL, LOOP), Linux cooked v1 and
// v2 (SLL, SLL2) and raw IP; IPv4 (options) and IPv6 (hop-by-hop, routing and
// destination-options extension headers).
//
// Packets that are not UDP over IPv4/IPv6 are skipped, and so are IP
// fragments (other than atomic ones): flow exports on the loopback are not
// fragmented. A UDP datagram cut short by the capture's snap length is an
// error, since a decoder test fed half a datagram would mislead.
package pcapread

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
)

// Datagram is one UDP datagram found in a capture.
type Datagram struct {
	Time    time.Time // capture time, UTC
	Src     netip.AddrPort
	Dst     netip.AddrPort
	Payload []byte // UDP payload, its own copy
}

// Link-layer header types (https://www.tcpdump.org/linktypes.html).
const (
	LinkTypeNull     = 0   // BSD loopback: 4-byte address family, host byte order
	LinkTypeEthernet = 1   // Ethernet II
	LinkTypeRaw      = 101 // raw IPv4/IPv6
	LinkTypeLoop     = 108 // OpenBSD loopback: 4-byte address family, network byte order
	LinkTypeLinuxSLL = 113 // Linux cooked capture v1
	LinkTypeIPv4     = 228
	LinkTypeIPv6     = 229
	LinkTypeSLL2     = 276 // Linux cooked capture v2
	linkTypeRawAlt1  = 12  // DLT_RAW on some BSDs, written as-is by old libpcap
	linkTypeRawAlt2  = 14
)

// ErrTruncated reports a capture file that ends in the middle of a block or
// record, or a UDP datagram cut short by the snap length.
var ErrTruncated = errors.New("pcapread: truncated")

// ErrFormat reports a file that is not a capture this package understands.
var ErrFormat = errors.New("pcapread: unknown capture format")

// maxRecord bounds one packet record or block, so that a corrupt length
// cannot make the reader allocate without limit.
const maxRecord = 1 << 20

// ReadFile reads the UDP datagrams of the capture file at path.
func ReadFile(path string) ([]Datagram, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ds, err := Read(f)
	if err != nil {
		return ds, fmt.Errorf("%s: %w", path, err)
	}
	return ds, nil
}

// Read reads the UDP datagrams of a classic pcap or pcapng stream. On error
// it returns the datagrams read before the error, too.
func Read(r io.Reader) ([]Datagram, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w: file shorter than a header", ErrFormat)
		}
		return nil, err
	}
	if binary.BigEndian.Uint32(magic) == 0x0A0D0D0A {
		return readPcapng(br)
	}
	return readPcap(br)
}

// FilterDstPort returns the datagrams sent to the given UDP port.
func FilterDstPort(ds []Datagram, port uint16) []Datagram {
	var out []Datagram
	for _, d := range ds {
		if d.Dst.Port() == port {
			out = append(out, d)
		}
	}
	return out
}

// Payloads returns the payloads of ds, in order (for fuzz seed corpora).
func Payloads(ds []Datagram) [][]byte {
	out := make([][]byte, len(ds))
	for i, d := range ds {
		out[i] = d.Payload
	}
	return out
}

func readFull(r io.Reader, b []byte) error {
	_, err := io.ReadFull(r, b)
	if err == io.ErrUnexpectedEOF {
		return ErrTruncated
	}
	return err
}

// ------------------------------------------------------------------ classic pcap

func readPcap(r io.Reader) ([]Datagram, error) {
	var hdr [24]byte
	if err := readFull(r, hdr[:]); err != nil {
		if err == io.EOF || err == ErrTruncated {
			return nil, fmt.Errorf("%w: file shorter than a pcap header", ErrFormat)
		}
		return nil, err
	}
	var bo binary.ByteOrder
	var nano bool
	switch {
	case binary.LittleEndian.Uint32(hdr[0:]) == 0xa1b2c3d4:
		bo = binary.LittleEndian
	case binary.BigEndian.Uint32(hdr[0:]) == 0xa1b2c3d4:
		bo = binary.BigEndian
	case binary.LittleEndian.Uint32(hdr[0:]) == 0xa1b23c4d:
		bo, nano = binary.LittleEndian, true
	case binary.BigEndian.Uint32(hdr[0:]) == 0xa1b23c4d:
		bo, nano = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("%w: magic %x", ErrFormat, hdr[0:4])
	}
	// The upper bits of the link type field may carry FCS information.
	link := bo.Uint32(hdr[20:]) & 0x0FFFFFFF
	if !supported(link) {
		return nil, fmt.Errorf("%w: link type %d", ErrFormat, link)
	}
	var out []Datagram
	var rec [16]byte
	buf := make([]byte, 0, 65536)
	for n := 1; ; n++ {
		if err := readFull(r, rec[:]); err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, fmt.Errorf("record %d: %w", n, err)
		}
		sec, frac := bo.Uint32(rec[0:]), bo.Uint32(rec[4:])
		incl, orig := bo.Uint32(rec[8:]), bo.Uint32(rec[12:])
		if incl > maxRecord {
			return out, fmt.Errorf("record %d: %w: length %d", n, ErrFormat, incl)
		}
		if int(incl) > cap(buf) {
			buf = make([]byte, incl)
		}
		buf = buf[:incl]
		if err := readFull(r, buf); err != nil {
			if err == io.EOF {
				err = ErrTruncated
			}
			return out, fmt.Errorf("record %d: %w", n, err)
		}
		nsec := int64(frac) * 1000
		if nano {
			nsec = int64(frac)
		}
		ts := time.Unix(int64(sec), nsec).UTC()
		d, ok, err := decode(link, buf, incl < orig)
		if err != nil {
			return out, fmt.Errorf("record %d: %w", n, err)
		}
		if ok {
			d.Time = ts
			out = append(out, d)
		}
	}
}

// ------------------------------------------------------------------------ pcapng

type ngIface struct {
	link     uint32
	tsUnits  uint64 // timestamp units per second
	tsOffset int64  // seconds
}

func readPcapng(r io.Reader) ([]Datagram, error) {
	var out []Datagram
	var bo binary.ByteOrder = binary.LittleEndian
	var ifaces []ngIface
	var head [8]byte
	for n := 1; ; n++ {
		if err := readFull(r, head[:]); err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, fmt.Errorf("block %d: %w", n, err)
		}
		btype := binary.BigEndian.Uint32(head[0:])
		if btype == 0x0A0D0D0A {
			// Section header: its byte-order magic decides how to read the rest.
			var bom [4]byte
			if err := readFull(r, bom[:]); err != nil {
				return out, fmt.Errorf("block %d: %w", n, eofTrunc(err))
			}
			switch {
			case binary.LittleEndian.Uint32(bom[:]) == 0x1A2B3C4D:
				bo = binary.LittleEndian
			case binary.BigEndian.Uint32(bom[:]) == 0x1A2B3C4D:
				bo = binary.BigEndian
			default:
				return out, fmt.Errorf("block %d: %w: byte-order magic %x", n, ErrFormat, bom)
			}
			ifaces = ifaces[:0]
			blen := bo.Uint32(head[4:])
			if blen < 28 || blen%4 != 0 || blen > maxRecord {
				return out, fmt.Errorf("block %d: %w: section header length %d", n, ErrFormat, blen)
			}
			if _, err := io.CopyN(io.Discard, r, int64(blen-12)); err != nil {
				return out, fmt.Errorf("block %d: %w", n, eofTrunc(err))
			}
			continue
		}
		btype = bo.Uint32(head[0:])
		blen := bo.Uint32(head[4:])
		if blen < 12 || blen%4 != 0 || blen > maxRecord {
			return out, fmt.Errorf("block %d: %w: length %d", n, ErrFormat, blen)
		}
		body := make([]byte, blen-8) // body and trailing length
		if err := readFull(r, body); err != nil {
			return out, fmt.Errorf("block %d: %w", n, eofTrunc(err))
		}
		body = body[:len(body)-4]
		switch btype {
		case 1: // interface description
			if len(body) < 8 {
				return out, fmt.Errorf("block %d: %w: short interface block", n, ErrFormat)
			}
			ifc := ngIface{link: uint32(bo.Uint16(body[0:])), tsUnits: 1e6}
			if err := ngOptions(bo, body[8:], &ifc); err != nil {
				return out, fmt.Errorf("block %d: %w", n, err)
			}
			ifaces = append(ifaces, ifc)
		case 6: // enhanced packet
			if len(body) < 20 {
				return out, fmt.Errorf("block %d: %w: short packet block", n, ErrFormat)
			}
			id := bo.Uint32(body[0:])
			if int(id) >= len(ifaces) {
				return out, fmt.Errorf("block %d: %w: interface %d not described", n, ErrFormat, id)
			}
			ifc := ifaces[id]
			ts := uint64(bo.Uint32(body[4:]))<<32 | uint64(bo.Uint32(body[8:]))
			capLen, origLen := bo.Uint32(body[12:]), bo.Uint32(body[16:])
			if int(capLen) > len(body)-20 {
				return out, fmt.Errorf("block %d: %w: captured length %d", n, ErrFormat, capLen)
			}
			if !supported(ifc.link) {
				continue
			}
			d, ok, err := decode(ifc.link, body[20:20+capLen], capLen < origLen)
			if err != nil {
				return out, fmt.Errorf("block %d: %w", n, err)
			}
			if ok {
				sec := ts / ifc.tsUnits
				nsec := (ts % ifc.tsUnits) * 1e9 / ifc.tsUnits
				d.Time = time.Unix(int64(sec)+ifc.tsOffset, int64(nsec)).UTC()
				out = append(out, d)
			}
		case 3: // simple packet: interface 0, no timestamp
			if len(body) < 4 || len(ifaces) == 0 {
				return out, fmt.Errorf("block %d: %w: simple packet block", n, ErrFormat)
			}
			origLen := bo.Uint32(body[0:])
			data := body[4:]
			if uint32(len(data)) > origLen {
				data = data[:origLen]
			}
			if !supported(ifaces[0].link) {
				continue
			}
			d, ok, err := decode(ifaces[0].link, data, uint32(len(data)) < origLen)
			if err != nil {
				return out, fmt.Errorf("block %d: %w", n, err)
			}
			if ok {
				out = append(out, d)
			}
		default:
			// name resolution, statistics, custom, decryption secrets...: not needed
		}
	}
}

func eofTrunc(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return ErrTruncated
	}
	return err
}

func ngOptions(bo binary.ByteOrder, b []byte, ifc *ngIface) error {
	for len(b) >= 4 {
		code, l := bo.Uint16(b[0:]), int(bo.Uint16(b[2:]))
		if code == 0 {
			return nil
		}
		if 4+l > len(b) {
			return fmt.Errorf("%w: option %d overruns its block", ErrFormat, code)
		}
		v := b[4 : 4+l]
		switch {
		case code == 9 && l == 1: // if_tsresol
			res := v[0]
			var units uint64 = 1
			if res&0x80 != 0 {
				if res&0x7f > 63 {
					return fmt.Errorf("%w: if_tsresol %#x", ErrFormat, res)
				}
				units = 1 << (res & 0x7f)
			} else {
				if res > 19 {
					return fmt.Errorf("%w: if_tsresol %d", ErrFormat, res)
				}
				for i := byte(0); i < res; i++ {
					units *= 10
				}
			}
			ifc.tsUnits = units
		case code == 14 && l == 8: // if_tsoffset
			ifc.tsOffset = int64(bo.Uint64(v))
		}
		b = b[4+(l+3)&^3:]
	}
	return nil
}

// ---------------------------------------------------------------------- decoding

func supported(link uint32) bool {
	switch link {
	case LinkTypeNull, LinkTypeEthernet, LinkTypeRaw, LinkTypeLoop, LinkTypeLinuxSLL,
		LinkTypeIPv4, LinkTypeIPv6, LinkTypeSLL2, linkTypeRawAlt1, linkTypeRawAlt2:
		return true
	}
	return false
}

const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86DD
)

// decode returns the UDP datagram in one link-layer frame; ok is false for
// frames that carry something else. cut says the frame was cut short by the
// snap length.
func decode(link uint32, b []byte, cut bool) (Datagram, bool, error) {
	var et uint16
	switch link {
	case LinkTypeEthernet:
		if len(b) < 14 {
			return Datagram{}, false, nil
		}
		et, b = binary.BigEndian.Uint16(b[12:]), b[14:]
		for (et == 0x8100 || et == 0x88A8 || et == 0x9100) && len(b) >= 4 {
			et, b = binary.BigEndian.Uint16(b[2:]), b[4:]
		}
	case LinkTypeNull, LinkTypeLoop:
		if len(b) < 4 {
			return Datagram{}, false, nil
		}
		fam := binary.BigEndian.Uint32(b)
		if link == LinkTypeNull && fam > 0xFFFF {
			fam = binary.LittleEndian.Uint32(b) // host byte order of the capturing machine
		}
		b = b[4:]
		switch fam {
		case 2:
			et = etherIPv4
		case 10, 24, 28, 30: // AF_INET6: Linux, NetBSD/OpenBSD, FreeBSD, Darwin
			et = etherIPv6
		default:
			return Datagram{}, false, nil
		}
	case LinkTypeLinuxSLL:
		if len(b) < 16 {
			return Datagram{}, false, nil
		}
		et, b = binary.BigEndian.Uint16(b[14:]), b[16:]
	case LinkTypeSLL2:
		if len(b) < 20 {
			return Datagram{}, false, nil
		}
		et, b = binary.BigEndian.Uint16(b[0:]), b[20:]
	case LinkTypeRaw, LinkTypeIPv4, LinkTypeIPv6, linkTypeRawAlt1, linkTypeRawAlt2:
		if len(b) < 1 {
			return Datagram{}, false, nil
		}
		switch b[0] >> 4 {
		case 4:
			et = etherIPv4
		case 6:
			et = etherIPv6
		default:
			return Datagram{}, false, nil
		}
	default:
		return Datagram{}, false, fmt.Errorf("%w: link type %d", ErrFormat, link)
	}
	switch et {
	case etherIPv4:
		return decodeIPv4(b, cut)
	case etherIPv6:
		return decodeIPv6(b, cut)
	}
	return Datagram{}, false, nil
}

func decodeIPv4(b []byte, cut bool) (Datagram, bool, error) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return Datagram{}, false, nil
	}
	ihl := int(b[0]&0x0F) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < 20 || total < ihl {
		return Datagram{}, false, nil
	}
	if flagsFrag := binary.BigEndian.Uint16(b[6:]); flagsFrag&0x3FFF != 0 {
		return Datagram{}, false, nil // a fragment (MF set or offset non-zero)
	}
	if b[9] != 17 {
		return Datagram{}, false, nil
	}
	if total > len(b) {
		if !cut {
			return Datagram{}, false, nil // inconsistent lengths: not ours to judge
		}
		return Datagram{}, false, fmt.Errorf("%w: IPv4 packet of %d bytes captured as %d", ErrTruncated, total, len(b))
	}
	src := netip.AddrFrom4([4]byte(b[12:16]))
	dst := netip.AddrFrom4([4]byte(b[16:20]))
	return decodeUDP(src, dst, b[ihl:total])
}

func decodeIPv6(b []byte, cut bool) (Datagram, bool, error) {
	if len(b) < 40 || b[0]>>4 != 6 {
		return Datagram{}, false, nil
	}
	plen := int(binary.BigEndian.Uint16(b[4:]))
	if 40+plen > len(b) {
		if !cut {
			return Datagram{}, false, nil
		}
		return Datagram{}, false, fmt.Errorf("%w: IPv6 packet of %d bytes captured as %d", ErrTruncated, 40+plen, len(b))
	}
	src := netip.AddrFrom16([16]byte(b[8:24]))
	dst := netip.AddrFrom16([16]byte(b[24:40]))
	next, p := b[6], b[40:40+plen]
	for {
		switch next {
		case 17:
			return decodeUDP(src, dst, p)
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(p) < 8 {
				return Datagram{}, false, nil
			}
			l := (int(p[1]) + 1) * 8
			if l > len(p) {
				return Datagram{}, false, nil
			}
			next, p = p[0], p[l:]
		case 44: // fragment: only an atomic fragment (offset 0, no M flag) is whole
			if len(p) < 8 || binary.BigEndian.Uint16(p[2:])&0xFFF9 != 0 {
				return Datagram{}, false, nil
			}
			next, p = p[0], p[8:]
		default:
			return Datagram{}, false, nil
		}
	}
}

func decodeUDP(src, dst netip.Addr, b []byte) (Datagram, bool, error) {
	if len(b) < 8 {
		return Datagram{}, false, nil
	}
	ulen := int(binary.BigEndian.Uint16(b[4:]))
	if ulen < 8 || ulen > len(b) {
		return Datagram{}, false, nil
	}
	return Datagram{
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(b[0:])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(b[2:])),
		Payload: bytes.Clone(b[8:ulen]),
	}, true, nil
}
