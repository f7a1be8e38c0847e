package flowgen

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// Independent decoders of what the encoders write, from the RFCs, so each
// test can check the datagrams field by field.

var bootMs = int64(1_704_067_200_000 - 5*24*3600*1000) // booted 5 days before 2024-01-01

const nowMs = int64(1_704_067_200_500)

func testFlows() []Flow {
	return []Flow{
		{ // IPv4 TCP download
			Src: netip.MustParseAddr("198.51.100.7"), Dst: netip.MustParseAddr("192.0.2.33"), NextHop: netip.MustParseAddr("0.0.0.0"),
			SrcPort: 443, DstPort: 51234, Proto: protoTCP, TCPFlags: 0x1b, ToS: 0x48, SrcMask: 24, DstMask: 24,
			InIf: 1, OutIf: 3, SrcVLAN: 10, DstVLAN: 103, SrcMAC: upstreamMAC, DstMAC: [6]byte{0, 0, 0x5e, 0, 0x53, 0x80},
			Packets: 1000, Bytes: 1_400_000, StartMs: nowMs - 20_000, EndMs: nowMs - 300, Samples: 1,
		},
		{ // IPv6 UDP (QUIC) upload with a flow label
			Src: netip.MustParseAddr("2001:db8:1::abcd"), Dst: netip.MustParseAddr("2001:db8:53::10"), NextHop: netip.MustParseAddr("2001:db8:ffff::1"),
			SrcPort: 40000, DstPort: 443, Proto: protoUDP, FlowLabel: 0xabcde, SrcMask: 64, DstMask: 48,
			InIf: 4, OutIf: 1, SrcVLAN: 104, DstVLAN: 10, SrcMAC: [6]byte{2, 0, 0, 0, 9, 1}, DstMAC: [6]byte{0, 0, 0x5e, 0, 0x53, 0x80},
			Packets: 12, Bytes: 12 * 180, StartMs: nowMs - 900, EndMs: nowMs - 10, Samples: 1,
		},
		{ // IPv4 ICMP echo request
			Src: netip.MustParseAddr("192.0.2.9"), Dst: netip.MustParseAddr("203.0.113.5"), NextHop: netip.MustParseAddr("198.51.100.1"),
			DstPort: 8 << 8, Proto: protoICMP, ICMPType: 8, SrcMask: 24, DstMask: 24, InIf: 2, OutIf: 1,
			Packets: 1, Bytes: 84, StartMs: nowMs - 100, EndMs: nowMs - 100, Samples: 1,
		},
		{ // IPv6 ICMP echo reply
			Src: netip.MustParseAddr("2001:db8:53::10"), Dst: netip.MustParseAddr("2001:db8:1::abcd"), NextHop: netip.IPv6Unspecified(),
			DstPort: 129 << 8, Proto: protoICMPv6, ICMPType: 129, SrcMask: 48, DstMask: 64, InIf: 1, OutIf: 4,
			Packets: 3, Bytes: 3 * 104, StartMs: nowMs - 2000, EndMs: nowMs - 1, Samples: 1,
		},
		{ // IPv4 SYN, a tiny packet (Ethernet padding in sFlow)
			Src: netip.MustParseAddr("203.0.113.66"), Dst: netip.MustParseAddr("192.0.2.50"), NextHop: netip.MustParseAddr("0.0.0.0"),
			SrcPort: 61337, DstPort: 22, Proto: protoTCP, TCPFlags: 0x02, SrcMask: 24, DstMask: 24, InIf: 1, OutIf: 2,
			Packets: 1, Bytes: 44, StartMs: nowMs - 5, EndMs: nowMs - 5, Samples: 1,
		},
	}
}

// ---- NetFlow v5 ----

func TestV5Encoder(t *testing.T) {
	flows := testFlows()
	e := newV5Encoder(1400, 4242, bootMs, 7, 100)
	e.begin(0)
	var want []Flow
	for i := range flows {
		if flows[i].IPv6() {
			continue
		}
		if !e.add(&flows[i]) {
			t.Fatal("add: no room")
		}
		want = append(want, flows[i])
	}
	b := e.finish(nowMs)
	if len(b) != 24+48*len(want) {
		t.Fatalf("length %d, want %d", len(b), 24+48*len(want))
	}
	u16, u32 := binary.BigEndian.Uint16, binary.BigEndian.Uint32
	header := []struct {
		name      string
		got, want uint64
	}{
		{"version", uint64(u16(b[0:])), 5},
		{"count", uint64(u16(b[2:])), uint64(len(want))},
		{"sysUptime", uint64(u32(b[4:])), uint64(nowMs - bootMs)},
		{"unix_secs", uint64(u32(b[8:])), uint64(nowMs / 1000)},
		{"unix_nsecs", uint64(u32(b[12:])), 500_000_000},
		{"flow_sequence", uint64(u32(b[16:])), 4242},
		{"engine_type", uint64(b[20]), 0},
		{"engine_id", uint64(b[21]), 7},
		{"sampling", uint64(u16(b[22:])), 0x4000 | 100},
	}
	for _, h := range header {
		if h.got != h.want {
			t.Errorf("header %s = %d, want %d", h.name, h.got, h.want)
		}
	}
	for i, f := range want {
		r := b[24+48*i:]
		fields := []struct {
			name      string
			got, want uint64
		}{
			{"srcaddr", uint64(u32(r[0:])), uint64(u32(f.Src.AsSlice()))},
			{"dstaddr", uint64(u32(r[4:])), uint64(u32(f.Dst.AsSlice()))},
			{"nexthop", uint64(u32(r[8:])), uint64(u32(f.NextHop.AsSlice()))},
			{"input", uint64(u16(r[12:])), uint64(f.InIf)},
			{"output", uint64(u16(r[14:])), uint64(f.OutIf)},
			{"dPkts", uint64(u32(r[16:])), f.Packets},
			{"dOctets", uint64(u32(r[20:])), f.Bytes},
			{"First", uint64(u32(r[24:])), uint64(f.StartMs - bootMs)},
			{"Last", uint64(u32(r[28:])), uint64(f.EndMs - bootMs)},
			{"srcport", uint64(u16(r[32:])), uint64(f.SrcPort)},
			{"dstport", uint64(u16(r[34:])), uint64(f.DstPort)},
			{"tcp_flags", uint64(r[37]), uint64(f.TCPFlags)},
			{"prot", uint64(r[38]), uint64(f.Proto)},
			{"tos", uint64(r[39]), uint64(f.ToS)},
			{"src_mask", uint64(r[44]), uint64(f.SrcMask)},
			{"dst_mask", uint64(r[45]), uint64(f.DstMask)},
		}
		for _, fd := range fields {
			if fd.got != fd.want {
				t.Errorf("record %d %s = %d, want %d", i, fd.name, fd.got, fd.want)
			}
		}
	}
	// Next datagram: the sequence counts flows.
	e.begin(0)
	e.add(&want[0])
	b = e.finish(nowMs)
	if got := u32(b[16:]); got != 4242+uint32(len(want)) {
		t.Errorf("second flow_sequence = %d, want %d", got, 4242+len(want))
	}
}

func TestV5FullDatagram(t *testing.T) {
	f := testFlows()[0]
	e := newV5Encoder(1400, 0, bootMs, 0, 1)
	e.begin(0)
	n := 0
	for e.add(&f) {
		n++
	}
	if n != 28 { // (1400-24)/48
		t.Errorf("records in a 1400-byte datagram: %d, want 28", n)
	}
	if b := e.finish(nowMs); len(b) > 1400 || binary.BigEndian.Uint16(b[22:]) != 0 {
		t.Errorf("length %d, sampling field %#x", len(b), binary.BigEndian.Uint16(b[22:]))
	}
}

// ---- NetFlow v9 and IPFIX ----

type tmpl struct {
	fields []field
	scopes int
}

type nfMessage struct {
	version, count           uint16
	length                   int
	sysUptime, exportSec     uint32
	seq, domain              uint32
	templates                map[uint16]tmpl
	options                  map[uint16]tmpl
	data                     map[uint16][]map[uint16][]byte // set ID -> records -> IE -> value
	setOrder                 []uint16
	paddedSets, totalRecords int
}

// decodeNF decodes a v9 or IPFIX message with the templates it carries
// (or known, from an earlier message).
func decodeNF(t *testing.T, b []byte, known map[uint16]tmpl) *nfMessage {
	t.Helper()
	u16, u32 := binary.BigEndian.Uint16, binary.BigEndian.Uint32
	m := &nfMessage{version: u16(b), templates: map[uint16]tmpl{}, options: map[uint16]tmpl{}, data: map[uint16][]map[uint16][]byte{}}
	for id, tp := range known {
		m.templates[id] = tp
	}
	var rest []byte
	if m.version == 10 {
		m.length = int(u16(b[2:]))
		if m.length != len(b) {
			t.Fatalf("IPFIX length %d, datagram %d", m.length, len(b))
		}
		m.exportSec, m.seq, m.domain = u32(b[4:]), u32(b[8:]), u32(b[12:])
		rest = b[16:]
	} else {
		m.count = u16(b[2:])
		m.sysUptime, m.exportSec, m.seq, m.domain = u32(b[4:]), u32(b[8:]), u32(b[12:]), u32(b[16:])
		rest = b[20:]
	}
	for len(rest) > 0 {
		if len(rest) < 4 {
			t.Fatalf("%d bytes after the last set", len(rest))
		}
		id, l := u16(rest), int(u16(rest[2:]))
		if l < 4 || l > len(rest) {
			t.Fatalf("set %d length %d of %d", id, l, len(rest))
		}
		if m.version == 9 && l%4 != 0 {
			t.Errorf("v9 set %d length %d not padded to 4", id, l)
		}
		body := rest[4:l]
		rest = rest[l:]
		m.setOrder = append(m.setOrder, id)
		switch {
		case (m.version == 9 && id == 0) || (m.version == 10 && id == 2):
			for len(body) >= 4 {
				tid, n := u16(body), int(u16(body[2:]))
				if tid == 0 && n == 0 {
					break // padding
				}
				body = body[4:]
				var tp tmpl
				for i := 0; i < n; i++ {
					tp.fields = append(tp.fields, field{u16(body), u16(body[2:])})
					body = body[4:]
				}
				m.templates[tid] = tp
				m.totalRecords++
			}
		case m.version == 9 && id == 1:
			tid, scopeLen, optLen := u16(body), int(u16(body[2:])), int(u16(body[4:]))
			body = body[6:]
			tp := tmpl{scopes: scopeLen / 4}
			for i := 0; i < (scopeLen+optLen)/4; i++ {
				tp.fields = append(tp.fields, field{u16(body), u16(body[2:])})
				body = body[4:]
			}
			m.templates[tid], m.options[tid] = tp, tp
			m.totalRecords++
		case m.version == 10 && id == 3:
			tid, n, scopes := u16(body), int(u16(body[2:])), int(u16(body[4:]))
			body = body[6:]
			tp := tmpl{scopes: scopes}
			for i := 0; i < n; i++ {
				tp.fields = append(tp.fields, field{u16(body), u16(body[2:])})
				body = body[4:]
			}
			m.templates[tid], m.options[tid] = tp, tp
			m.totalRecords++
		case id >= 256:
			tp, ok := m.templates[id]
			if !ok {
				t.Fatalf("data set %d without template", id)
			}
			rl := recordLen(tp.fields)
			for len(body) >= rl {
				rec := map[uint16][]byte{}
				for _, f := range tp.fields {
					rec[f.ie] = body[:f.length]
					body = body[f.length:]
				}
				m.data[id] = append(m.data[id], rec)
				m.totalRecords++
			}
			for _, c := range body {
				if c != 0 {
					t.Errorf("set %d: non-zero padding", id)
				}
			}
			if len(body) > 0 {
				m.paddedSets++
			}
		}
	}
	return m
}

func uintOf(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

func TestNFEncoders(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ipfix      bool
		tplSet     uint16
		dataFields [2][]field
	}{
		{"netflow_v9", false, 0, [2][]field{v9Fields4, v9Fields6}},
		{"ipfix", true, 2, [2][]field{ipfixFields4, ipfixFields6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flows := testFlows()
			e := newNFEncoder(tc.ipfix, 1400, 77, 1000, 3, 512, bootMs, 0, 0)
			e.begin(0)
			for i := range flows {
				if !e.add(&flows[i]) {
					t.Fatal("add: no room")
				}
			}
			b := e.finish(nowMs)
			m := decodeNF(t, b, nil)
			if tc.ipfix {
				if m.version != 10 || m.seq != 1000 || m.domain != 77 || m.exportSec != uint32(nowMs/1000) {
					t.Errorf("header: version %d seq %d domain %d export %d", m.version, m.seq, m.domain, m.exportSec)
				}
			} else {
				if m.version != 9 || m.seq != 1000 || m.domain != 77 || m.exportSec != uint32(nowMs/1000) || m.sysUptime != uint32(nowMs-bootMs) {
					t.Errorf("header: version %d seq %d domain %d export %d uptime %d", m.version, m.seq, m.domain, m.exportSec, m.sysUptime)
				}
				if int(m.count) != m.totalRecords {
					t.Errorf("count %d, records %d (templates, options template, options and data records)", m.count, m.totalRecords)
				}
			}
			// Templates first, then the options template and its record, then data.
			if len(m.setOrder) < 4 || m.setOrder[0] != tc.tplSet || m.setOrder[1] != tc.tplSet+1 || m.setOrder[2] != templateOptions {
				t.Errorf("set order %v", m.setOrder)
			}
			for i, id := range []uint16{templateIPv4, templateIPv6} {
				if got := m.templates[id].fields; !equalFields(got, tc.dataFields[i]) {
					t.Errorf("template %d = %v", id, got)
				}
			}
			// The sampling options record: rate 512 for sampler 3.
			opts := m.data[templateOptions]
			if len(opts) != 1 {
				t.Fatalf("options records: %d", len(opts))
			}
			o := opts[0]
			if tc.ipfix {
				ot := m.options[templateOptions]
				if ot.scopes != 1 || ot.fields[0].ie != 302 {
					t.Errorf("options template %+v: want scope selectorId", ot)
				}
				interval, space := uintOf(o[305]), uintOf(o[306])
				if uintOf(o[302]) != 3 || uintOf(o[304]) != 1 || (interval+space)/interval != 512 {
					t.Errorf("options record: selector %d algorithm %d interval %d space %d", uintOf(o[302]), uintOf(o[304]), interval, space)
				}
			} else {
				if uintOf(o[48]) != 3 || uintOf(o[49]) != 2 || uintOf(o[50]) != 512 {
					t.Errorf("options record: sampler %d mode %d interval %d", uintOf(o[48]), uintOf(o[49]), uintOf(o[50]))
				}
			}
			// Data records, in the order added within each family.
			var got []map[uint16][]byte
			i4, i6 := 0, 0
			for _, f := range flows {
				if f.IPv6() {
					got = append(got, m.data[templateIPv6][i6])
					i6++
				} else {
					got = append(got, m.data[templateIPv4][i4])
					i4++
				}
			}
			for i, f := range flows {
				checkNFRecord(t, i, tc.ipfix, got[i], &f)
			}
			// The next message: no templates, sequence advanced.
			e.begin(time.Second)
			e.add(&flows[0])
			b = e.finish(nowMs)
			m2 := decodeNF(t, b, m.templates)
			wantSeq := uint32(1001)
			if tc.ipfix {
				wantSeq = 1000 + uint32(len(flows)) + 1 // data records, the options record included
			}
			if m2.seq != wantSeq || len(m2.setOrder) != 1 {
				t.Errorf("second message: seq %d (want %d), sets %v", m2.seq, wantSeq, m2.setOrder)
			}
		})
	}
}

func equalFields(a, b []field) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func checkNFRecord(t *testing.T, i int, ipfix bool, r map[uint16][]byte, f *Flow) {
	t.Helper()
	addr := func(ie4, ie6 uint16) netip.Addr {
		if v, ok := r[ie4]; ok {
			return netip.AddrFrom4([4]byte(v))
		}
		return netip.AddrFrom16([16]byte(r[ie6]))
	}
	if a := addr(8, 27); a != f.Src {
		t.Errorf("record %d: src %s, want %s", i, a, f.Src)
	}
	if a := addr(12, 28); a != f.Dst {
		t.Errorf("record %d: dst %s, want %s", i, a, f.Dst)
	}
	if a := addr(15, 62); a != f.NextHop {
		t.Errorf("record %d: next hop %s, want %s", i, a, f.NextHop)
	}
	icmp := f.Proto == protoICMP || f.Proto == protoICMPv6
	dport := uint64(f.DstPort)
	if ipfix && icmp {
		dport = 0
	}
	type check struct {
		ie   uint16
		want uint64
	}
	checks := []check{
		{1, f.Bytes}, {2, f.Packets}, {4, uint64(f.Proto)}, {5, uint64(f.ToS)}, {6, uint64(f.TCPFlags)},
		{7, uint64(f.SrcPort)}, {11, dport}, {10, uint64(f.InIf)}, {14, uint64(f.OutIf)}, {61, 0},
	}
	if f.IPv6() {
		checks = append(checks, check{29, uint64(f.SrcMask)}, check{30, uint64(f.DstMask)}, check{31, uint64(f.FlowLabel)})
	} else {
		checks = append(checks, check{9, uint64(f.SrcMask)}, check{13, uint64(f.DstMask)})
	}
	if ipfix {
		checks = append(checks, check{152, uint64(f.StartMs)}, check{153, uint64(f.EndMs)}, check{302, 3})
		icmpIE := uint16(32)
		if f.IPv6() {
			icmpIE = 139
		}
		var tc uint64
		if icmp {
			tc = uint64(f.ICMPType)<<8 | uint64(f.ICMPCode)
		}
		checks = append(checks, check{icmpIE, tc})
	} else {
		checks = append(checks, check{22, uint64(f.StartMs - bootMs)}, check{21, uint64(f.EndMs - bootMs)}, check{48, 3})
	}
	for _, c := range checks {
		v, ok := r[c.ie]
		if !ok {
			t.Errorf("record %d: IE %d missing", i, c.ie)
			continue
		}
		if got := uintOf(v); got != c.want {
			t.Errorf("record %d: IE %d = %d, want %d", i, c.ie, got, c.want)
		}
	}
}

func TestNFDatagramLimitAndRefresh(t *testing.T) {
	for _, ipfix := range []bool{false, true} {
		flows := testFlows()
		e := newNFEncoder(ipfix, 1400, 1, 0, 1, 1, bootMs, 3, 10*time.Second)
		var withTemplates []int
		known := map[uint16]tmpl{}
		for d := 0; d < 8; d++ {
			at := time.Duration(d) * time.Second
			if d == 7 {
				at = 20 * time.Second // interval elapsed
			}
			e.begin(at)
			n := 0
			for e.add(&flows[n%len(flows)]) {
				n++
			}
			b := e.finish(nowMs)
			if len(b) > 1400 {
				t.Fatalf("ipfix=%v datagram %d: %d bytes", ipfix, d, len(b))
			}
			m := decodeNF(t, b, known)
			known = m.templates
			if m.setOrder[0] < 256 {
				withTemplates = append(withTemplates, d)
			}
			if got := len(m.data[templateIPv4]) + len(m.data[templateIPv6]); got != n {
				t.Errorf("ipfix=%v datagram %d: %d records decoded, %d added", ipfix, d, got, n)
			}
		}
		// Every 3 datagrams (0, 3, 6), and when the interval has passed (7).
		if want := []int{0, 3, 6, 7}; len(withTemplates) != len(want) || withTemplates[1] != 3 || withTemplates[2] != 6 || withTemplates[3] != 7 {
			t.Errorf("ipfix=%v templates in datagrams %v, want %v", ipfix, withTemplates, want)
		}
	}
}

// ---- sFlow ----

type sfSample struct {
	format                     uint32
	seq, source, rate, pool    uint32
	in, out                    uint32
	headerProto, frameLen      uint32
	stripped                   uint32
	header                     []byte
	srcVLAN, dstVLAN           uint32
	ifIndex                    uint32
	ifSpeed, inOctets          uint64
	inPkts, outPkts, ifStatus  uint32
	outOctets                  uint64
	counterRecords, flowRecord uint32
}

type sfDatagram struct {
	version, addrType        uint32
	agent                    netip.Addr
	subAgent, seq, uptime, n uint32
	samples                  []sfSample
}

func decodeSFlow(t *testing.T, b []byte) *sfDatagram {
	t.Helper()
	pos := 0
	u32 := func() uint32 {
		if pos+4 > len(b) {
			t.Fatalf("sflow: read past the end at %d", pos)
		}
		v := binary.BigEndian.Uint32(b[pos:])
		pos += 4
		return v
	}
	d := &sfDatagram{version: u32(), addrType: u32()}
	d.agent = netip.AddrFrom4([4]byte(b[pos : pos+4]))
	pos += 4
	d.subAgent, d.seq, d.uptime, d.n = u32(), u32(), u32(), u32()
	for i := uint32(0); i < d.n; i++ {
		s := sfSample{format: u32()}
		l := int(u32())
		end := pos + l
		switch s.format {
		case 1:
			s.seq, s.source, s.rate, s.pool = u32(), u32(), u32(), u32()
			u32() // drops
			s.in, s.out = u32(), u32()
			nrec := u32()
			for r := uint32(0); r < nrec; r++ {
				rf, rl := u32(), int(u32())
				rend := pos + rl
				switch rf {
				case 1:
					s.headerProto, s.frameLen, s.stripped = u32(), u32(), u32()
					hl := int(u32())
					s.header = b[pos : pos+hl]
					s.flowRecord++
				case 1001:
					s.srcVLAN = u32()
					u32()
					s.dstVLAN = u32()
					u32()
					s.flowRecord++
				}
				pos = rend
			}
		case 2:
			s.seq, s.source = u32(), u32()
			nrec := u32()
			for r := uint32(0); r < nrec; r++ {
				rf, rl := u32(), int(u32())
				rend := pos + rl
				if rf == 1 && rl == 88 {
					s.ifIndex = u32()
					u32() // type
					s.ifSpeed = uint64(u32())<<32 | uint64(u32())
					u32() // direction
					s.ifStatus = u32()
					s.inOctets = uint64(u32())<<32 | uint64(u32())
					s.inPkts = u32()
					pos += 5 * 4
					s.outOctets = uint64(u32())<<32 | uint64(u32())
					s.outPkts = u32()
				}
				s.counterRecords++
				pos = rend
			}
		}
		if pos != end {
			t.Fatalf("sample %d: length %d, read %d", i, l, pos-(end-l))
		}
		d.samples = append(d.samples, s)
	}
	if pos != len(b) {
		t.Fatalf("sflow: %d bytes after the samples", len(b)-pos)
	}
	return d
}

// parseFrame reads the sampled Ethernet frame the way a decoder does.
type frameInfo struct {
	src, dst         netip.Addr
	ipLen            int
	proto, tos       uint8
	sport, dport     uint16
	tcpFlags         uint8
	icmpType         uint8
	flowLabel        uint32
	srcMAC, dstMAC   [6]byte
	checksumOK, isV6 bool
}

func parseFrame(t *testing.T, h []byte) frameInfo {
	t.Helper()
	var fi frameInfo
	copy(fi.dstMAC[:], h[0:6])
	copy(fi.srcMAC[:], h[6:12])
	ip := h[14:]
	var l4 []byte
	switch binary.BigEndian.Uint16(h[12:]) {
	case 0x0800:
		fi.tos = ip[1]
		fi.ipLen = int(binary.BigEndian.Uint16(ip[2:]))
		fi.proto = ip[9]
		fi.src, fi.dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		fi.checksumOK = ipChecksum(ip[:20]) == 0
		l4 = ip[20:]
	case 0x86dd:
		fi.isV6 = true
		v := binary.BigEndian.Uint32(ip)
		fi.tos, fi.flowLabel = uint8(v>>20), v&0xfffff
		fi.ipLen = int(binary.BigEndian.Uint16(ip[4:])) + 40
		fi.proto = ip[6]
		fi.src, fi.dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		fi.checksumOK = true
		l4 = ip[40:]
	default:
		t.Fatalf("ethertype %#x", binary.BigEndian.Uint16(h[12:]))
	}
	switch fi.proto {
	case protoTCP:
		fi.sport, fi.dport, fi.tcpFlags = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:]), l4[13]
	case protoUDP:
		fi.sport, fi.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		hl := 20
		if fi.isV6 {
			hl = 40
		}
		if int(binary.BigEndian.Uint16(l4[4:])) != fi.ipLen-hl {
			t.Errorf("UDP length %d, IP length %d", binary.BigEndian.Uint16(l4[4:]), fi.ipLen)
		}
	case protoICMP, protoICMPv6:
		fi.icmpType = l4[0]
	}
	return fi
}

func TestSFlowEncoder(t *testing.T) {
	flows := testFlows()
	r := newRNG(1)
	agent := [4]byte{127, 0, 1, 9}
	e := newSFlowEncoder(1400, agent, 5, 900, 256, bootMs, 4, 20*time.Second, &r)
	e.begin(0)
	added := 0
	for i := range flows {
		if !e.add(&flows[i]) {
			break
		}
		added++
	}
	if added < 2 {
		t.Fatalf("only %d flow samples fit next to the counters", added)
	}
	b := e.finish(nowMs)
	if len(b) > 1400 {
		t.Fatalf("datagram of %d bytes", len(b))
	}
	d := decodeSFlow(t, b)
	if d.version != 5 || d.addrType != 1 || d.agent != netip.AddrFrom4(agent) || d.subAgent != 5 || d.seq != 900 || d.uptime != uint32(nowMs-bootMs) {
		t.Errorf("header %+v", d)
	}
	if int(d.n) != 4+added {
		t.Fatalf("%d samples, want 4 counter samples and %d flow samples", d.n, added)
	}
	for i, s := range d.samples[:4] {
		if s.format != 2 || s.ifIndex != uint32(i+1) || s.source != uint32(i+1) || s.ifStatus != 3 || s.counterRecords != 1 {
			t.Errorf("counter sample %d: %+v", i, s)
		}
		wantSpeed := uint64(1e9)
		if i == 0 {
			wantSpeed = 1e10
		}
		if s.ifSpeed != wantSpeed {
			t.Errorf("counter sample %d: speed %d", i, s.ifSpeed)
		}
	}
	for i, s := range d.samples[4:] {
		f := &flows[i]
		ipLen, frameLen, _ := sampleFrame(f)
		fi := parseFrame(t, s.header)
		checks := []struct {
			name      string
			got, want any
		}{
			{"format", s.format, uint32(1)},
			{"source", s.source, f.InIf},
			{"rate", s.rate, uint32(256)},
			{"input", s.in, f.InIf},
			{"output", s.out, f.OutIf},
			{"records", s.flowRecord, uint32(2)},
			{"header protocol", s.headerProto, uint32(1)},
			{"frame length", s.frameLen, uint32(frameLen)},
			{"stripped", s.stripped, uint32(4)},
			{"src vlan", s.srcVLAN, uint32(f.SrcVLAN)},
			{"dst vlan", s.dstVLAN, uint32(f.DstVLAN)},
			{"ip length", fi.ipLen, ipLen},
			{"ip length = mean packet size", uint64(fi.ipLen), f.Bytes / f.Packets},
			{"src", fi.src, f.Src},
			{"dst", fi.dst, f.Dst},
			{"proto", fi.proto, f.Proto},
			{"tos", fi.tos, f.ToS},
			{"flow label", fi.flowLabel, map[bool]uint32{true: f.FlowLabel}[f.IPv6()]},
			{"ipv4 checksum", fi.checksumOK, true},
			{"src mac", fi.srcMAC, f.SrcMAC},
			{"dst mac", fi.dstMAC, f.DstMAC},
		}
		switch f.Proto {
		case protoTCP, protoUDP:
			checks = append(checks, struct {
				name      string
				got, want any
			}{"ports", [2]uint16{fi.sport, fi.dport}, [2]uint16{f.SrcPort, f.DstPort}})
		case protoICMP, protoICMPv6:
			checks = append(checks, struct {
				name      string
				got, want any
			}{"icmp type", fi.icmpType, f.ICMPType})
		}
		if f.TCPFlags == 0x02 {
			checks = append(checks, struct {
				name      string
				got, want any
			}{"syn", fi.tcpFlags, uint8(0x02)})
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("flow sample %d: %s = %v, want %v", i, c.name, c.got, c.want)
			}
		}
	}
	// Next datagram: no counters before the interval, sequence advanced,
	// per-source sample sequence numbers continue.
	var first sfSample // the last sample of flows[0]'s source
	for _, s := range d.samples[4:] {
		if s.source == flows[0].InIf {
			first = s
		}
	}
	e.begin(time.Second)
	e.add(&flows[0])
	d2 := decodeSFlow(t, e.finish(nowMs))
	if d2.seq != 901 || d2.n != 1 || d2.samples[0].seq != first.seq+1 || d2.samples[0].pool != first.pool+256 {
		t.Errorf("second datagram: seq %d, %d samples, sample seq %d (before %d), pool %d (before %d)",
			d2.seq, d2.n, d2.samples[0].seq, first.seq, d2.samples[0].pool, first.pool)
	}
	e.begin(21 * time.Second)
	e.add(&flows[0])
	if d3 := decodeSFlow(t, e.finish(nowMs)); d3.n != 5 || d3.samples[0].seq != d.samples[0].seq+1 {
		t.Errorf("after the counter interval: %d samples, counter seq %d", d3.n, d3.samples[0].seq)
	}
}

func TestSampleLen(t *testing.T) {
	for _, tc := range []struct {
		f    Flow
		want int
	}{
		{Flow{Src: netip.MustParseAddr("192.0.2.1"), Proto: protoTCP, Packets: 10, Bytes: 15000}, 1500},
		{Flow{Src: netip.MustParseAddr("192.0.2.1"), Proto: protoTCP, Packets: 3, Bytes: 100}, 40},
		{Flow{Src: netip.MustParseAddr("2001:db8::1"), Proto: protoUDP, Packets: 2, Bytes: 96}, 48},
		{Flow{Src: netip.MustParseAddr("2001:db8::1"), Proto: protoUDP, Packets: 4, Bytes: 4 * 1234}, 1234},
		{Flow{Src: netip.MustParseAddr("192.0.2.1"), Proto: protoICMP, Packets: 1, Bytes: 84}, 84},
	} {
		if got := tc.f.SampleLen(); got != tc.want {
			t.Errorf("%+v: SampleLen %d, want %d", tc.f, got, tc.want)
		}
	}
}
