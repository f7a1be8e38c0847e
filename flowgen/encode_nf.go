package flowgen

import (
	"net/netip"
	"time"
)

// NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) share their layout: a header,
// then sets of templates, options templates and data records.

// field is one template field: information element and length.
type field struct{ ie, length uint16 }

// Template IDs flowgen uses.
const (
	templateIPv4    = 256
	templateIPv6    = 257
	templateOptions = 258
)

// The data templates. v9 uses the classic NetFlow lengths (2-byte
// interfaces, 4-byte counters and sysUptime times); IPFIX the RFC 7012
// types (4-byte interfaces, 8-byte counters, flowStart/EndMilliseconds).
// Each carries the sampler ID (v9 FLOW_SAMPLER_ID 48, IPFIX selectorId 302)
// the options record describes.
var (
	v9Fields4 = []field{{8, 4}, {12, 4}, {15, 4}, {10, 2}, {14, 2}, {2, 4}, {1, 4}, {22, 4}, {21, 4},
		{7, 2}, {11, 2}, {6, 1}, {4, 1}, {5, 1}, {9, 1}, {13, 1}, {61, 1}, {48, 1}}
	v9Fields6 = []field{{27, 16}, {28, 16}, {62, 16}, {10, 2}, {14, 2}, {2, 4}, {1, 4}, {22, 4}, {21, 4},
		{7, 2}, {11, 2}, {6, 1}, {4, 1}, {5, 1}, {29, 1}, {30, 1}, {31, 3}, {61, 1}, {48, 1}}
	ipfixFields4 = []field{{8, 4}, {12, 4}, {15, 4}, {10, 4}, {14, 4}, {2, 8}, {1, 8}, {152, 8}, {153, 8},
		{7, 2}, {11, 2}, {32, 2}, {6, 2}, {4, 1}, {5, 1}, {9, 1}, {13, 1}, {61, 1}, {302, 4}}
	ipfixFields6 = []field{{27, 16}, {28, 16}, {62, 16}, {10, 4}, {14, 4}, {2, 8}, {1, 8}, {152, 8}, {153, 8},
		{7, 2}, {11, 2}, {139, 2}, {6, 2}, {4, 1}, {5, 1}, {29, 1}, {30, 1}, {31, 4}, {61, 1}, {302, 4}}

	// Options templates announcing the sampling rate of the sampler.
	// v9: scope System (type 1), then FLOW_SAMPLER_ID 48, FLOW_SAMPLER_MODE
	// 49 (2 = random) and FLOW_SAMPLER_RANDOM_INTERVAL 50.
	v9OptionScopes  = []field{{1, 4}}
	v9OptionFields  = []field{{48, 1}, {49, 1}, {50, 4}}
	v9SamplerRandom = byte(2)
	// IPFIX: scope selectorId 302, then selectorAlgorithm 304 (1 =
	// systematic count-based), samplingPacketInterval 305 and
	// samplingPacketSpace 306: of every interval+space packets, interval
	// are selected (RFC 7011 IE definitions), so interval 1, space N-1
	// is 1-in-N.
	ipfixOptionScopes = []field{{302, 4}}
	ipfixOptionFields = []field{{304, 1}, {305, 4}, {306, 4}}
)

func recordLen(fields []field) int {
	n := 0
	for _, f := range fields {
		n += int(f.length)
	}
	return n
}

func pad4(n int) int { return (n + 3) &^ 3 }

type nfEncoder struct {
	ipfix     bool
	domain    uint32
	samplerID uint32
	rate      uint32
	bootMs    int64
	mtu       int

	fields4, fields6 []field
	len4, len6       int

	out        []byte // the datagram
	set4, set6 []byte // data records by template
	n4, n6     int
	seq        uint32 // v9: datagrams sent; IPFIX: data records sent

	templates       []byte // template, options template and options data sets
	withTemplates   bool
	refreshPackets  int
	refreshInterval time.Duration
	sinceTemplates  int
	lastTemplates   time.Duration
	sentTemplates   bool

	templateDatagrams uint64
	optionsRecords    uint64
}

func newNFEncoder(ipfix bool, mtu int, domain, seq, samplerID, rate uint32, bootMs int64, refreshPackets int, refreshInterval time.Duration) *nfEncoder {
	e := &nfEncoder{
		ipfix: ipfix, domain: domain, samplerID: samplerID, rate: max(rate, 1), bootMs: bootMs, mtu: mtu, seq: seq,
		refreshPackets: refreshPackets, refreshInterval: refreshInterval,
		fields4: v9Fields4, fields6: v9Fields6,
	}
	if ipfix {
		e.fields4, e.fields6 = ipfixFields4, ipfixFields6
	}
	e.len4, e.len6 = recordLen(e.fields4), recordLen(e.fields6)
	e.out = make([]byte, 0, mtu)
	e.set4 = make([]byte, 0, mtu)
	e.set6 = make([]byte, 0, mtu)
	e.templates = e.buildTemplates()
	return e
}

func (e *nfEncoder) headerLen() int {
	if e.ipfix {
		return 16
	}
	return 20
}

// setLen is the length of a data set of n bytes of records: v9 pads sets
// to 4 bytes (RFC 3954 section 5.3); IPFIX needs no padding.
func (e *nfEncoder) setLen(n int) int {
	if n == 0 {
		return 0
	}
	if e.ipfix {
		return 4 + n
	}
	return 4 + pad4(n)
}

// appendSet appends a set with the given ID and body, padded for v9.
func (e *nfEncoder) appendSet(b []byte, id uint16, body []byte) []byte {
	l := e.setLen(len(body))
	b = be.AppendUint16(b, id)
	b = be.AppendUint16(b, uint16(l))
	b = append(b, body...)
	for i := 4 + len(body); i < l; i++ {
		b = append(b, 0)
	}
	return b
}

func appendFields(b []byte, fields []field) []byte {
	for _, f := range fields {
		b = be.AppendUint16(b, f.ie)
		b = be.AppendUint16(b, f.length)
	}
	return b
}

// buildTemplates encodes the sets sent with every template refresh: the
// IPv4 and IPv6 templates, the options template and its options record.
func (e *nfEncoder) buildTemplates() []byte {
	var t []byte
	for _, tpl := range []struct {
		id     uint16
		fields []field
	}{{templateIPv4, e.fields4}, {templateIPv6, e.fields6}} {
		t = be.AppendUint16(t, tpl.id)
		t = be.AppendUint16(t, uint16(len(tpl.fields)))
		t = appendFields(t, tpl.fields)
	}
	var opt, rec []byte
	opt = be.AppendUint16(opt, templateOptions)
	if e.ipfix {
		opt = be.AppendUint16(opt, uint16(len(ipfixOptionScopes)+len(ipfixOptionFields)))
		opt = be.AppendUint16(opt, uint16(len(ipfixOptionScopes)))
		opt = appendFields(opt, ipfixOptionScopes)
		opt = appendFields(opt, ipfixOptionFields)
		rec = be.AppendUint32(rec, e.samplerID)
		rec = append(rec, 1)
		rec = be.AppendUint32(rec, 1)
		rec = be.AppendUint32(rec, e.rate-1)
	} else {
		opt = be.AppendUint16(opt, uint16(4*len(v9OptionScopes)))
		opt = be.AppendUint16(opt, uint16(4*len(v9OptionFields)))
		opt = appendFields(opt, v9OptionScopes)
		opt = appendFields(opt, v9OptionFields)
		rec = be.AppendUint32(rec, e.domain)
		rec = append(rec, uint8(e.samplerID), v9SamplerRandom)
		rec = be.AppendUint32(rec, e.rate)
	}
	tmplSet, optSet, dataSet := uint16(0), uint16(1), uint16(templateOptions)
	if e.ipfix {
		tmplSet, optSet = 2, 3
	}
	var b []byte
	b = e.appendSet(b, tmplSet, t)
	b = e.appendSet(b, optSet, opt)
	b = e.appendSet(b, dataSet, rec)
	return b
}

// templateRecords is what a template refresh adds to the v9 header count:
// two templates, one options template, one options data record.
const templateRecords = 4

func (e *nfEncoder) begin(at time.Duration) {
	e.out = e.out[:0]
	e.set4, e.set6 = e.set4[:0], e.set6[:0]
	e.n4, e.n6 = 0, 0
	e.withTemplates = !e.sentTemplates ||
		(e.refreshPackets > 0 && e.sinceTemplates >= e.refreshPackets) ||
		(e.refreshInterval > 0 && at-e.lastTemplates >= e.refreshInterval)
	if e.withTemplates {
		e.sentTemplates = true
		e.sinceTemplates = 0
		e.lastTemplates = at
	}
}

func (e *nfEncoder) records() int { return e.n4 + e.n6 }

func (e *nfEncoder) size(b4, b6 int) int {
	n := e.headerLen() + e.setLen(b4) + e.setLen(b6)
	if e.withTemplates {
		n += len(e.templates)
	}
	return n
}

func (e *nfEncoder) add(f *Flow) bool {
	if f.IPv6() {
		if e.records() > 0 && e.size(len(e.set4), len(e.set6)+e.len6) > e.mtu {
			return false
		}
		var r []byte
		e.set6, r = grow(e.set6, e.len6)
		e.putRecord(r, f, e.fields6)
		e.n6++
	} else {
		if e.records() > 0 && e.size(len(e.set4)+e.len4, len(e.set6)) > e.mtu {
			return false
		}
		var r []byte
		e.set4, r = grow(e.set4, e.len4)
		e.putRecord(r, f, e.fields4)
		e.n4++
	}
	return true
}

// putUint writes v big-endian in len(b) bytes.
func putUint(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

func (e *nfEncoder) putRecord(r []byte, f *Flow, fields []field) {
	icmp := f.Proto == protoICMP || f.Proto == protoICMPv6
	for _, fd := range fields {
		b := r[:fd.length]
		r = r[fd.length:]
		var v uint64
		switch fd.ie {
		case 8, 27:
			copyAddr(b, f.Src)
			continue
		case 12, 28:
			copyAddr(b, f.Dst)
			continue
		case 15, 62:
			copyAddr(b, f.NextHop)
			continue
		case 1:
			v = f.Bytes
		case 2:
			v = f.Packets
		case 4:
			v = uint64(f.Proto)
		case 5:
			v = uint64(f.ToS)
		case 6:
			v = uint64(f.TCPFlags)
		case 7:
			v = uint64(f.SrcPort)
		case 11:
			v = uint64(f.DstPort)
			if e.ipfix && icmp {
				v = 0 // IPFIX has icmpTypeCode for this
			}
		case 9, 29:
			v = uint64(f.SrcMask)
		case 13, 30:
			v = uint64(f.DstMask)
		case 10:
			v = uint64(f.InIf)
		case 14:
			v = uint64(f.OutIf)
		case 21:
			v = uint64(uptime(f.EndMs, e.bootMs))
		case 22:
			v = uint64(uptime(f.StartMs, e.bootMs))
		case 152:
			v = uint64(f.StartMs)
		case 153:
			v = uint64(f.EndMs)
		case 31:
			v = uint64(f.FlowLabel)
		case 32, 139:
			if icmp {
				v = uint64(f.ICMPType)<<8 | uint64(f.ICMPCode)
			}
		case 48, 302:
			v = uint64(e.samplerID)
		case 61:
			v = 0 // ingress
		}
		putUint(b, v)
	}
}

func copyAddr(b []byte, a netip.Addr) {
	if len(b) == 4 {
		x := a.As4()
		copy(b, x[:])
	} else {
		x := a.As16()
		copy(b, x[:])
	}
}

func (e *nfEncoder) finish(nowMs int64) []byte {
	b := e.out[:0]
	nRecords := e.n4 + e.n6
	if e.ipfix {
		b = be.AppendUint16(b, 10)
		b = be.AppendUint16(b, 0) // length, below
		b = be.AppendUint32(b, uint32(nowMs/1000))
		b = be.AppendUint32(b, e.seq)
		b = be.AppendUint32(b, e.domain)
	} else {
		count := nRecords
		if e.withTemplates {
			count += templateRecords
		}
		b = be.AppendUint16(b, 9)
		b = be.AppendUint16(b, uint16(count))
		b = be.AppendUint32(b, uptime(nowMs, e.bootMs))
		b = be.AppendUint32(b, uint32(nowMs/1000))
		b = be.AppendUint32(b, e.seq)
		b = be.AppendUint32(b, e.domain)
	}
	if e.withTemplates {
		b = append(b, e.templates...)
		e.templateDatagrams++
		e.optionsRecords++
	}
	if e.n4 > 0 {
		b = e.appendSet(b, templateIPv4, e.set4)
	}
	if e.n6 > 0 {
		b = e.appendSet(b, templateIPv6, e.set6)
	}
	if e.ipfix {
		be.PutUint16(b[2:], uint16(len(b)))
		e.seq += uint32(nRecords)
		if e.withTemplates {
			e.seq++ // the options data record is a data record too
		}
	} else {
		e.seq++
	}
	e.sinceTemplates++
	e.out = b
	return b
}
