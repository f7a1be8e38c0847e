package pcapread

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const capturesDir = "../../collector/testdata/captures"

// expected is the part of NAME.expected.json (written by
// testdata/gen/tshark_expected.py from tshark's decoding) that this test uses.
type expected struct {
	UDPPort int `json:"udp_port"`
	Totals  struct {
		Datagrams int `json:"datagrams"`
	} `json:"totals"`
	Datagrams []struct {
		Frame   int `json:"frame"`
		Version int `json:"version"`
	} `json:"datagrams"`
}

// TestCaptures reads every exporter capture and checks it against what
// tshark found in it: same number of datagrams, all to the capture's port,
// each with the flow protocol version tshark decoded.
func TestCaptures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(capturesDir, "*.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no captures in %s (testdata/gen/capture.sh makes them)", capturesDir)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".pcap")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(capturesDir, name+".expected.json"))
			if err != nil {
				t.Fatalf("every capture needs its tshark expectation: %v", err)
			}
			var want expected
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			ds, err := ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) != want.Totals.Datagrams || len(ds) != len(want.Datagrams) {
				t.Fatalf("read %d datagrams, tshark saw %d", len(ds), want.Totals.Datagrams)
			}
			loop := netip.MustParseAddr("127.0.0.1")
			var prev time.Time
			for i, d := range ds {
				if d.Dst.Addr() != loop || d.Src.Addr() != loop || int(d.Dst.Port()) != want.UDPPort {
					t.Errorf("datagram %d: %v -> %v, want 127.0.0.1 -> 127.0.0.1:%d", i+1, d.Src, d.Dst, want.UDPPort)
				}
				if d.Time.Before(prev) || d.Time.Year() < 2024 || d.Time.Location() != time.UTC {
					t.Errorf("datagram %d: time %v (previous %v)", i+1, d.Time, prev)
				}
				prev = d.Time
				if len(d.Payload) < 4 {
					t.Fatalf("datagram %d: payload of %d bytes", i+1, len(d.Payload))
				}
				v := int(binary.BigEndian.Uint16(d.Payload))
				if strings.HasPrefix(name, "sflow") {
					v = int(binary.BigEndian.Uint32(d.Payload))
				}
				if v != want.Datagrams[i].Version {
					t.Errorf("datagram %d: version %d, tshark says %d", i+1, v, want.Datagrams[i].Version)
				}
			}
			if got := FilterDstPort(ds, uint16(want.UDPPort)); len(got) != len(ds) {
				t.Errorf("FilterDstPort kept %d of %d", len(got), len(ds))
			}
			if got := FilterDstPort(ds, 1); len(got) != 0 {
				t.Errorf("FilterDstPort(1) kept %d", len(got))
			}
		})
	}
}

// TestRealLinkTypes reads small captures of the same four datagrams (IPv4,
// IPv6, IPv4, IPv6 to port 9999 on the loopback, payload "hello vN i\n")
// written by tcpdump -i any (Linux cooked v1 and v2) and by tshark (pcapng,
// nanosecond timestamps).
func TestRealLinkTypes(t *testing.T) {
	for _, file := range []string{"lo_sll.pcap", "lo_sll2.pcap", "lo_ethernet.pcapng"} {
		t.Run(file, func(t *testing.T) {
			ds, err := ReadFile(filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) != 4 {
				t.Fatalf("got %d datagrams, want 4", len(ds))
			}
			for i, d := range ds {
				fam, host := "v4", "127.0.0.1"
				if i%2 == 1 {
					fam, host = "v6", "::1"
				}
				if d.Dst != netip.AddrPortFrom(netip.MustParseAddr(host), 9999) || d.Src.Addr() != d.Dst.Addr() {
					t.Errorf("datagram %d: %v -> %v", i, d.Src, d.Dst)
				}
				if want := "hello " + fam + " " + string(rune('1'+i/2)) + "\n"; string(d.Payload) != want {
					t.Errorf("datagram %d: payload %q, want %q", i, d.Payload, want)
				}
				if d.Time.Year() < 2024 {
					t.Errorf("datagram %d: time %v", i, d.Time)
				}
			}
			if file == "lo_ethernet.pcapng" && ds[0].Time.Nanosecond()%1000 == 0 && ds[1].Time.Nanosecond()%1000 == 0 {
				t.Errorf("pcapng written with nanosecond resolution read as microseconds: %v %v", ds[0].Time, ds[1].Time)
			}
		})
	}
}

// ------------------------------------------------------------- synthetic files

var (
	v4src = netip.MustParseAddrPort("192.0.2.1:4000")
	v4dst = netip.MustParseAddrPort("198.51.100.2:2055")
	v6src = netip.MustParseAddrPort("[2001:db8::1]:4001")
	v6dst = netip.MustParseAddrPort("[2001:db8::2]:4739")
)

func udp(src, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], src.Port())
	binary.BigEndian.PutUint16(b[2:], dst.Port())
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

func ipv4(src, dst netip.AddrPort, proto byte, fragField uint16, l4 []byte) []byte {
	b := make([]byte, 24, 24+len(l4)) // with 4 bytes of options (IHL 6)
	b[0] = 0x46
	binary.BigEndian.PutUint16(b[2:], uint16(24+len(l4)))
	binary.BigEndian.PutUint16(b[6:], fragField)
	b[8], b[9] = 64, proto
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	b[20] = 1 // NOP options
	return append(b, l4...)
}

func ipv6(src, dst netip.AddrPort, next byte, l4 []byte) []byte {
	b := make([]byte, 40, 40+len(l4))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(l4)))
	b[6], b[7] = next, 64
	s, d := src.Addr().As16(), dst.Addr().As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, l4...)
}

func ether(et uint16, vlans int, l3 []byte) []byte {
	b := make([]byte, 12)
	for i := 0; i < vlans; i++ {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i))
	}
	b = binary.BigEndian.AppendUint16(b, et)
	b = append(b, l3...)
	for len(b) < 60 {
		b = append(b, 0xEE) // Ethernet padding: must not end up in the payload
	}
	return b
}

// order is what binary.LittleEndian and binary.BigEndian both are.
type order interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

type frame struct {
	ts   time.Time
	data []byte
	orig int // original length; 0 = len(data)
}

func pcapFile(bo order, nano bool, link uint32, frames []frame) []byte {
	var b []byte
	magic := uint32(0xa1b2c3d4)
	if nano {
		magic = 0xa1b23c4d
	}
	b = bo.AppendUint32(b, magic)
	b = bo.AppendUint16(b, 2)
	b = bo.AppendUint16(b, 4)
	b = bo.AppendUint32(b, 0)
	b = bo.AppendUint32(b, 0)
	b = bo.AppendUint32(b, 65535)
	b = bo.AppendUint32(b, link)
	for _, f := range frames {
		frac := uint32(f.ts.Nanosecond() / 1000)
		if nano {
			frac = uint32(f.ts.Nanosecond())
		}
		orig := f.orig
		if orig == 0 {
			orig = len(f.data)
		}
		b = bo.AppendUint32(b, uint32(f.ts.Unix()))
		b = bo.AppendUint32(b, frac)
		b = bo.AppendUint32(b, uint32(len(f.data)))
		b = bo.AppendUint32(b, uint32(orig))
		b = append(b, f.data...)
	}
	return b
}

func ngBlock(bo order, typ uint32, body []byte) []byte {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	var b []byte
	b = bo.AppendUint32(b, typ)
	b = bo.AppendUint32(b, uint32(12+len(body)))
	b = append(b, body...)
	return bo.AppendUint32(b, uint32(12+len(body)))
}

// pcapngFile writes one section with one interface; tsresol 0 means no option.
func pcapngFile(bo order, link uint16, tsresol byte, frames []frame) []byte {
	var shb []byte
	shb = bo.AppendUint32(shb, 0x1A2B3C4D)
	shb = bo.AppendUint16(shb, 1)
	shb = bo.AppendUint16(shb, 0)
	shb = bo.AppendUint64(shb, ^uint64(0))
	out := ngBlock(bo, 0x0A0D0D0A, shb)
	var idb []byte
	idb = bo.AppendUint16(idb, link)
	idb = bo.AppendUint16(idb, 0)
	idb = bo.AppendUint32(idb, 0)
	units := uint64(1e6)
	if tsresol != 0 {
		idb = bo.AppendUint16(idb, 9)
		idb = bo.AppendUint16(idb, 1)
		idb = append(idb, tsresol, 0, 0, 0)
		idb = bo.AppendUint16(idb, 0)
		idb = bo.AppendUint16(idb, 0)
		units = 1
		for i := byte(0); i < tsresol; i++ {
			units *= 10
		}
	}
	out = append(out, ngBlock(bo, 1, idb)...)
	out = append(out, ngBlock(bo, 4, []byte{0, 0, 0, 0})...) // name resolution block: skipped
	for _, f := range frames {
		ts := uint64(f.ts.Unix())*units + uint64(f.ts.Nanosecond())*units/1e9
		var epb []byte
		epb = bo.AppendUint32(epb, 0)
		epb = bo.AppendUint32(epb, uint32(ts>>32))
		epb = bo.AppendUint32(epb, uint32(ts))
		epb = bo.AppendUint32(epb, uint32(len(f.data)))
		epb = bo.AppendUint32(epb, uint32(len(f.data)))
		epb = append(epb, f.data...)
		out = append(out, ngBlock(bo, 6, epb)...)
	}
	return out
}

func TestSyntheticLinkTypes(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 1, 123456000, time.UTC)
	p4, p6 := []byte("netflow-ish"), []byte("ipfix-ish payload")
	u4 := ipv4(v4src, v4dst, 17, 0x4000, udp(v4src, v4dst, p4)) // DF set: not a fragment
	// IPv6 with a hop-by-hop and a destination-options header before UDP.
	ext := append([]byte{60, 0, 1, 4, 0, 0, 0, 0}, append([]byte{17, 0, 1, 4, 0, 0, 0, 0}, udp(v6src, v6dst, p6)...)...)
	u6 := ipv6(v6src, v6dst, 0, ext)
	skip := [][]byte{
		ipv4(v4src, v4dst, 6, 0, make([]byte, 20)),                         // TCP
		ipv4(v4src, v4dst, 17, 0x2000, udp(v4src, v4dst, p4)),              // first fragment (MF)
		ipv4(v4src, v4dst, 17, 0x0010, make([]byte, 16)),                   // later fragment
		ipv6(v6src, v6dst, 44, append([]byte{17, 0, 0, 1, 0, 0, 0, 1}, 1)), // IPv6 fragment
		ipv6(v6src, v6dst, 58, make([]byte, 8)),                            // ICMPv6
	}
	type tc struct {
		link uint32
		wrap func(l3 []byte, v6 bool) []byte
	}
	family := func(v6 bool, af4, af6 uint32, bo order) []byte {
		if v6 {
			return bo.AppendUint32(nil, af6)
		}
		return bo.AppendUint32(nil, af4)
	}
	et := func(v6 bool) uint16 {
		if v6 {
			return 0x86DD
		}
		return 0x0800
	}
	cases := map[string]tc{
		"ethernet": {LinkTypeEthernet, func(l3 []byte, v6 bool) []byte { return ether(et(v6), 0, l3) }},
		"vlan":     {LinkTypeEthernet, func(l3 []byte, v6 bool) []byte { return ether(et(v6), 1, l3) }},
		"qinq":     {LinkTypeEthernet, func(l3 []byte, v6 bool) []byte { return ether(et(v6), 2, l3) }},
		"null-le": {LinkTypeNull, func(l3 []byte, v6 bool) []byte {
			return append(family(v6, 2, 10, binary.LittleEndian), l3...)
		}},
		"null-be-darwin": {LinkTypeNull, func(l3 []byte, v6 bool) []byte {
			return append(family(v6, 2, 30, binary.BigEndian), l3...)
		}},
		"loop": {LinkTypeLoop, func(l3 []byte, v6 bool) []byte {
			return append(family(v6, 2, 24, binary.BigEndian), l3...)
		}},
		"sll": {LinkTypeLinuxSLL, func(l3 []byte, v6 bool) []byte {
			h := make([]byte, 14)
			return append(binary.BigEndian.AppendUint16(h, et(v6)), l3...)
		}},
		"sll2": {LinkTypeSLL2, func(l3 []byte, v6 bool) []byte {
			h := binary.BigEndian.AppendUint16(nil, et(v6))
			return append(append(h, make([]byte, 18)...), l3...)
		}},
		"raw":  {LinkTypeRaw, func(l3 []byte, v6 bool) []byte { return l3 }},
		"raw4": {LinkTypeIPv4, func(l3 []byte, v6 bool) []byte { return l3 }},
	}
	for name, c := range cases {
		var frames []frame
		for i, l3 := range [][]byte{u4, u6} {
			frames = append(frames, frame{ts: t0.Add(time.Duration(i) * time.Second), data: c.wrap(l3, i == 1)})
		}
		for _, l3 := range skip {
			frames = append(frames, frame{ts: t0, data: c.wrap(l3, l3[0]>>4 == 6)})
		}
		files := map[string][]byte{
			"pcap-le":         pcapFile(binary.LittleEndian, false, c.link, frames),
			"pcap-be-nano":    pcapFile(binary.BigEndian, true, c.link, frames),
			"pcapng-le":       pcapngFile(binary.LittleEndian, uint16(c.link), 0, frames),
			"pcapng-be-nano9": pcapngFile(binary.BigEndian, uint16(c.link), 9, frames),
		}
		for format, data := range files {
			t.Run(name+"/"+format, func(t *testing.T) {
				ds, err := Read(bytes.NewReader(data))
				if err != nil {
					t.Fatal(err)
				}
				if len(ds) != 2 {
					t.Fatalf("got %d datagrams, want 2: %+v", len(ds), ds)
				}
				want := []Datagram{
					{Time: t0, Src: v4src, Dst: v4dst, Payload: p4},
					{Time: t0.Add(time.Second), Src: v6src, Dst: v6dst, Payload: p6},
				}
				for i := range want {
					g, w := ds[i], want[i]
					if !g.Time.Equal(w.Time) || g.Src != w.Src || g.Dst != w.Dst || !bytes.Equal(g.Payload, w.Payload) {
						t.Errorf("datagram %d:\n got %v %v -> %v %q\nwant %v %v -> %v %q",
							i, g.Time, g.Src, g.Dst, g.Payload, w.Time, w.Src, w.Dst, w.Payload)
					}
				}
			})
		}
	}
}

func TestPayloadIsCopied(t *testing.T) {
	data := pcapFile(binary.LittleEndian, false, LinkTypeRaw, []frame{
		{ts: time.Unix(1704067200, 0), data: ipv4(v4src, v4dst, 17, 0, udp(v4src, v4dst, []byte("one")))},
		{ts: time.Unix(1704067201, 0), data: ipv4(v4src, v4dst, 17, 0, udp(v4src, v4dst, []byte("two")))},
	})
	ds, err := Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || string(ds[0].Payload) != "one" || string(ds[1].Payload) != "two" {
		t.Fatalf("payloads alias the read buffer: %q", Payloads(ds))
	}
}

func TestErrors(t *testing.T) {
	good := pcapFile(binary.LittleEndian, false, LinkTypeRaw, []frame{
		{ts: time.Unix(1704067200, 0), data: ipv4(v4src, v4dst, 17, 0, udp(v4src, v4dst, []byte("payload")))},
	})
	goodNG := pcapngFile(binary.LittleEndian, LinkTypeRaw, 0, []frame{
		{ts: time.Unix(1704067200, 0), data: ipv4(v4src, v4dst, 17, 0, udp(v4src, v4dst, []byte("payload")))},
	})
	cut := ipv4(v4src, v4dst, 17, 0, udp(v4src, v4dst, make([]byte, 100)))
	snapped := pcapFile(binary.LittleEndian, false, LinkTypeRaw, []frame{
		{ts: time.Unix(1704067200, 0), data: cut[:60], orig: len(cut)},
	})
	cases := map[string]struct {
		data []byte
		want error
	}{
		"empty":             {nil, ErrFormat},
		"not a capture":     {[]byte("hello, this is not a pcap file at all"), ErrFormat},
		"short header":      {good[:10], ErrFormat},
		"cut record header": {good[:24+8], ErrTruncated},
		"cut record data":   {good[:len(good)-3], ErrTruncated},
		"snap length":       {snapped, ErrTruncated},
		"unknown link": {pcapFile(binary.LittleEndian, false, 147, []frame{
			{ts: time.Unix(1704067200, 0), data: []byte{1, 2, 3}},
		}), ErrFormat},
		"pcapng cut block": {goodNG[:len(goodNG)-5], ErrTruncated},
		"pcapng bad length": {func() []byte {
			b := bytes.Clone(goodNG)
			binary.LittleEndian.PutUint32(b[4:], 13) // section header length not a multiple of 4
			return b
		}(), ErrFormat},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(c.data))
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
	if ds, err := Read(bytes.NewReader(good)); err != nil || len(ds) != 1 {
		t.Fatalf("good file: %d datagrams, %v", len(ds), err)
	}
	if ds, err := Read(bytes.NewReader(goodNG)); err != nil || len(ds) != 1 {
		t.Fatalf("good pcapng file: %d datagrams, %v", len(ds), err)
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing.pcap")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// FuzzRead checks that no input makes the reader panic or hang.
func FuzzRead(f *testing.F) {
	for _, file := range []string{"testdata/lo_sll.pcap", "testdata/lo_sll2.pcap", "testdata/lo_ethernet.pcapng"} {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, _ := Read(bytes.NewReader(b))
		for _, d := range ds {
			if len(d.Payload) > len(b) {
				t.Fatalf("payload longer than the input")
			}
		}
	})
}
