package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sync"
	"unsafe"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/store"
)

// A segment is one batch on disk:
//
//	header (64 bytes, little endian)
//	  0  magic "FHSPOOL1"
//	  8  format version (uint16) = 1
//	 10  fields per row (uint16), a sanity check of the layout
//	 12  rows (uint32)
//	 16  batch id (16 bytes): the insert_deduplication_token of every attempt
//	 32  created, Unix nanoseconds (int64)
//	 40  payload length (uint64)
//	 48  CRC-32C of the payload (uint32)
//	 52  reserved (0)
//	 56  reserved (0)
//	 60  CRC-32C of bytes 0..59 (uint32)
//	payload
//	  fixed-width columns, one after the other, each rows*width bytes
//	  string columns, each: uvarint dictionary size d, d * (uvarint length,
//	  bytes), then rows indexes into the dictionary of 1, 2 or 4 bytes
//	  (the smallest that holds d-1)
//
// Columns are written in the order of the fixed and strs tables below;
// changing them means a new format version (old segments must still be
// read: bump formatVersion and keep a decoder for the old one).
const (
	headerSize    = 64
	formatVersion = 1
	magic         = "FHSPOOL1"
	// maxSegmentRows bounds what a corrupted header can make the decoder
	// allocate; the batcher's batch_rows is at most 10 million.
	maxSegmentRows = 10_000_000
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a segment that cannot be trusted: bad magic, version,
// checksum or layout.
var errCorrupt = errors.New("corrupt segment")

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errCorrupt, fmt.Sprintf(format, args...))
}

// fixedCol is one fixed-width column: its width and how to write and read
// it from a flow.
type fixedCol struct {
	width int
	put   func(p []byte, f *flow.Flow)
	get   func(p []byte, f *flow.Flow)
}

var le = binary.LittleEndian

func u8(get func(*flow.Flow) *uint8) fixedCol {
	return fixedCol{1, func(p []byte, f *flow.Flow) { p[0] = *get(f) }, func(p []byte, f *flow.Flow) { *get(f) = p[0] }}
}

func u16(get func(*flow.Flow) *uint16) fixedCol {
	return fixedCol{2, func(p []byte, f *flow.Flow) { le.PutUint16(p, *get(f)) }, func(p []byte, f *flow.Flow) { *get(f) = le.Uint16(p) }}
}

func u32(get func(*flow.Flow) *uint32) fixedCol {
	return fixedCol{4, func(p []byte, f *flow.Flow) { le.PutUint32(p, *get(f)) }, func(p []byte, f *flow.Flow) { *get(f) = le.Uint32(p) }}
}

func u64(get func(*flow.Flow) *uint64) fixedCol {
	return fixedCol{8, func(p []byte, f *flow.Flow) { le.PutUint64(p, *get(f)) }, func(p []byte, f *flow.Flow) { *get(f) = le.Uint64(p) }}
}

func i64(get func(*flow.Flow) *int64) fixedCol {
	return fixedCol{8, func(p []byte, f *flow.Flow) { le.PutUint64(p, uint64(*get(f))) }, func(p []byte, f *flow.Flow) { *get(f) = int64(le.Uint64(p)) }}
}

func addr(get func(*flow.Flow) *flow.Addr) fixedCol {
	return fixedCol{16, func(p []byte, f *flow.Flow) { copy(p[:16], get(f)[:]) }, func(p []byte, f *flow.Flow) { copy(get(f)[:], p[:16]) }}
}

// fixed lists every fixed-width field of flow.Flow. Interface speeds are
// 32 bits because the batch clamps them so.
var fixed = []fixedCol{
	i64(func(f *flow.Flow) *int64 { return &f.TimeReceivedMs }),
	i64(func(f *flow.Flow) *int64 { return &f.TimeStartMs }),
	i64(func(f *flow.Flow) *int64 { return &f.TimeEndMs }),
	{1, func(p []byte, f *flow.Flow) { p[0] = byte(f.Protocol) }, func(p []byte, f *flow.Flow) { f.Protocol = flow.Protocol(p[0]) }},
	addr(func(f *flow.Flow) *flow.Addr { return &f.ExporterAddr }),
	u16(func(f *flow.Flow) *uint16 { return &f.ExporterPort }),
	u32(func(f *flow.Flow) *uint32 { return &f.ObservationDomain }),
	u32(func(f *flow.Flow) *uint32 { return &f.SamplerID }),
	u32(func(f *flow.Flow) *uint32 { return &f.SamplingRate }),
	{1, func(p []byte, f *flow.Flow) { p[0] = byte(f.Direction) }, func(p []byte, f *flow.Flow) { f.Direction = flow.Direction(p[0]) }},
	u32(func(f *flow.Flow) *uint32 { return &f.InIf }),
	u32(func(f *flow.Flow) *uint32 { return &f.OutIf }),
	addr(func(f *flow.Flow) *flow.Addr { return &f.SrcAddr }),
	addr(func(f *flow.Flow) *flow.Addr { return &f.DstAddr }),
	addr(func(f *flow.Flow) *flow.Addr { return &f.NextHop }),
	u16(func(f *flow.Flow) *uint16 { return &f.SrcPort }),
	u16(func(f *flow.Flow) *uint16 { return &f.DstPort }),
	u8(func(f *flow.Flow) *uint8 { return &f.IPProto }),
	u8(func(f *flow.Flow) *uint8 { return &f.TCPFlags }),
	u8(func(f *flow.Flow) *uint8 { return &f.ToS }),
	u8(func(f *flow.Flow) *uint8 { return &f.IPVersion }),
	u8(func(f *flow.Flow) *uint8 { return &f.ICMPType }),
	u8(func(f *flow.Flow) *uint8 { return &f.ICMPCode }),
	u8(func(f *flow.Flow) *uint8 { return &f.SrcMask }),
	u8(func(f *flow.Flow) *uint8 { return &f.DstMask }),
	u16(func(f *flow.Flow) *uint16 { return &f.SrcVLAN }),
	u16(func(f *flow.Flow) *uint16 { return &f.DstVLAN }),
	{8, func(p []byte, f *flow.Flow) { le.PutUint64(p, uint64(f.SrcMAC)) }, func(p []byte, f *flow.Flow) { f.SrcMAC = flow.MAC(le.Uint64(p)) }},
	{8, func(p []byte, f *flow.Flow) { le.PutUint64(p, uint64(f.DstMAC)) }, func(p []byte, f *flow.Flow) { f.DstMAC = flow.MAC(le.Uint64(p)) }},
	u32(func(f *flow.Flow) *uint32 { return &f.SrcAS }),
	u32(func(f *flow.Flow) *uint32 { return &f.DstAS }),
	u64(func(f *flow.Flow) *uint64 { return &f.Bytes }),
	u64(func(f *flow.Flow) *uint64 { return &f.Packets }),
	u32(func(f *flow.Flow) *uint32 { return &f.FlowLabel }),
	{4, func(p []byte, f *flow.Flow) { le.PutUint32(p, uint32(min(f.InIfSpeedMbps, math.MaxUint32))) }, func(p []byte, f *flow.Flow) { f.InIfSpeedMbps = uint64(le.Uint32(p)) }},
	{4, func(p []byte, f *flow.Flow) { le.PutUint32(p, uint32(min(f.OutIfSpeedMbps, math.MaxUint32))) }, func(p []byte, f *flow.Flow) { f.OutIfSpeedMbps = uint64(le.Uint32(p)) }},
}

// strs lists every string field of flow.Flow.
var strs = []func(f *flow.Flow) *string{
	func(f *flow.Flow) *string { return &f.Tenant },
	func(f *flow.Flow) *string { return &f.ExporterName },
	func(f *flow.Flow) *string { return &f.InIfName },
	func(f *flow.Flow) *string { return &f.InIfDescription },
	func(f *flow.Flow) *string { return &f.InIfBoundary },
	func(f *flow.Flow) *string { return &f.OutIfName },
	func(f *flow.Flow) *string { return &f.OutIfDescription },
	func(f *flow.Flow) *string { return &f.OutIfBoundary },
	func(f *flow.Flow) *string { return &f.SrcVendor },
	func(f *flow.Flow) *string { return &f.DstVendor },
	func(f *flow.Flow) *string { return &f.SrcNetName },
	func(f *flow.Flow) *string { return &f.SrcNetRole },
	func(f *flow.Flow) *string { return &f.SrcNetSite },
	func(f *flow.Flow) *string { return &f.DstNetName },
	func(f *flow.Flow) *string { return &f.DstNetRole },
	func(f *flow.Flow) *string { return &f.DstNetSite },
}

var fieldsPerRow = uint16(len(fixed) + len(strs))

// rowWidth is the bytes of fixed-width columns per row.
var rowWidth = func() int {
	w := 0
	for _, c := range fixed {
		w += c.width
	}
	return w
}()

// header is a segment's decoded header.
type header struct {
	rows      int
	id        [16]byte
	createdNs int64
	payload   uint64
	crc       uint32
}

// encoder turns batches into segments. It keeps its scratch memory
// between batches; one encoder serves one goroutine at a time.
type encoder struct {
	buf  []byte
	dict []map[string]uint32
	list [][]string
	idx  [][]uint32
	// cache maps a string's address to its dictionary index; entries of
	// an earlier encode (another gen) are ignored, as the memory at an
	// address may hold another string by then.
	cache [][cacheSlots]cacheSlot
	gen   uint64
}

const cacheSlots = 64

type cacheSlot struct {
	p   *byte
	n   int
	idx uint32
	gen uint64
}

var encoders = sync.Pool{New: func() any { return newEncoder() }}

func newEncoder() *encoder {
	e := &encoder{
		dict:  make([]map[string]uint32, len(strs)),
		list:  make([][]string, len(strs)),
		idx:   make([][]uint32, len(strs)),
		cache: make([][cacheSlots]cacheSlot, len(strs)),
	}
	for i := range strs {
		e.dict[i] = map[string]uint32{}
	}
	return e
}

// release forgets the strings of the last batch, so a pooled encoder does
// not pin them.
func (e *encoder) release() {
	for i := range strs {
		clear(e.dict[i])
		clear(e.list[i])
		e.list[i] = e.list[i][:0]
		clear(e.cache[i][:])
	}
}

// encode returns the whole segment (header and payload) in the encoder's
// buffer, valid until the next encode.
func (e *encoder) encode(b *store.FlowBatch, id [16]byte, createdNs int64) []byte {
	n := b.Len()
	e.gen++
	for k := range strs {
		e.list[k] = e.list[k][:0]
		clear(e.dict[k])
		if cap(e.idx[k]) < n {
			e.idx[k] = make([]uint32, n)
		}
		e.idx[k] = e.idx[k][:n]
	}
	fixedLen := headerSize + n*rowWidth
	if cap(e.buf) < fixedLen {
		e.buf = make([]byte, fixedLen, fixedLen+fixedLen/4)
	}
	p := e.buf[:fixedLen]
	var offs [64]int
	o := headerSize
	for k, c := range fixed {
		offs[k] = o
		o += n * c.width
	}
	for i := range n {
		f := b.Flow(i)
		for k, c := range fixed {
			c.put(p[offs[k]+i*c.width:], &f)
		}
		for k, get := range strs {
			s := *get(&f)
			// Enrichment hands out the same few string values (the same
			// memory) to many rows: a small cache keyed by the string's
			// address skips the map for most rows.
			p := unsafe.StringData(s)
			slot := &e.cache[k][(uintptr(unsafe.Pointer(p))>>3^uintptr(len(s)))&(cacheSlots-1)]
			if slot.p == p && slot.n == len(s) && slot.gen == e.gen {
				e.idx[k][i] = slot.idx
				continue
			}
			j, ok := e.dict[k][s]
			if !ok {
				j = uint32(len(e.list[k]))
				e.dict[k][s] = j
				e.list[k] = append(e.list[k], s)
			}
			*slot = cacheSlot{p: p, n: len(s), idx: j, gen: e.gen}
			e.idx[k][i] = j
		}
	}
	for k := range strs {
		list := e.list[k]
		p = binary.AppendUvarint(p, uint64(len(list)))
		for _, s := range list {
			p = binary.AppendUvarint(p, uint64(len(s)))
			p = append(p, s...)
		}
		switch w := indexWidth(len(list)); w {
		case 1:
			for _, j := range e.idx[k] {
				p = append(p, byte(j))
			}
		case 2:
			for _, j := range e.idx[k] {
				p = le.AppendUint16(p, uint16(j))
			}
		default:
			for _, j := range e.idx[k] {
				p = le.AppendUint32(p, j)
			}
		}
	}
	e.buf = p
	payload := p[headerSize:]
	h := p[:headerSize]
	copy(h[0:8], magic)
	le.PutUint16(h[8:], formatVersion)
	le.PutUint16(h[10:], fieldsPerRow)
	le.PutUint32(h[12:], uint32(n))
	copy(h[16:32], id[:])
	le.PutUint64(h[32:], uint64(createdNs))
	le.PutUint64(h[40:], uint64(len(payload)))
	le.PutUint32(h[48:], crc32.Checksum(payload, castagnoli))
	le.PutUint32(h[52:], 0)
	le.PutUint32(h[56:], 0)
	le.PutUint32(h[60:], crc32.Checksum(h[:60], castagnoli))
	return p
}

func indexWidth(dictSize int) int {
	switch {
	case dictSize <= 1<<8:
		return 1
	case dictSize <= 1<<16:
		return 2
	}
	return 4
}

// readHeader checks the header's magic, version, layout and checksum.
func readHeader(data []byte) (header, error) {
	var h header
	if len(data) < headerSize {
		return h, corruptf("%d bytes, shorter than a header", len(data))
	}
	if string(data[0:8]) != magic {
		return h, corruptf("bad magic %q", data[0:8])
	}
	if got, want := crc32.Checksum(data[:60], castagnoli), le.Uint32(data[60:]); got != want {
		return h, corruptf("header checksum %08x, want %08x", got, want)
	}
	if v := le.Uint16(data[8:]); v != formatVersion {
		return h, corruptf("format version %d, this flowhouse reads %d", v, formatVersion)
	}
	if f := le.Uint16(data[10:]); f != fieldsPerRow {
		return h, corruptf("%d fields per row, want %d", f, fieldsPerRow)
	}
	h.rows = int(le.Uint32(data[12:]))
	copy(h.id[:], data[16:32])
	h.createdNs = int64(le.Uint64(data[32:]))
	h.payload = le.Uint64(data[40:])
	h.crc = le.Uint32(data[48:])
	if h.rows > maxSegmentRows {
		return h, corruptf("%d rows, more than %d", h.rows, maxSegmentRows)
	}
	return h, nil
}

// decoder reads segments back into batches, in chunks so that its
// scratch memory stays small whatever the batch size.
type decoder struct {
	flows []flow.Flow
	dicts [][]string
}

const decodeChunk = 4096

// decode verifies the segment and appends its rows to dst (which the
// caller has reset). On error dst may hold part of the rows.
func (d *decoder) decode(data []byte, dst *store.FlowBatch) (header, error) {
	h, err := readHeader(data)
	if err != nil {
		return h, err
	}
	payload := data[headerSize:]
	if uint64(len(payload)) != h.payload {
		return h, corruptf("payload of %d bytes, header says %d", len(payload), h.payload)
	}
	if got := crc32.Checksum(payload, castagnoli); got != h.crc {
		return h, corruptf("payload checksum %08x, want %08x", got, h.crc)
	}
	n := h.rows
	if len(payload) < n*rowWidth {
		return h, corruptf("payload too short for %d rows", n)
	}
	var offs [64]int
	o := 0
	for k, c := range fixed {
		offs[k] = o
		o += n * c.width
	}
	// String columns: dictionaries, then the index arrays.
	type strCol struct {
		idx   []byte
		width int
	}
	cols := make([]strCol, len(strs))
	if cap(d.dicts) < len(strs) {
		d.dicts = make([][]string, len(strs))
	}
	d.dicts = d.dicts[:len(strs)]
	for k := range strs {
		size, m := binary.Uvarint(payload[o:])
		if m <= 0 || size > uint64(len(payload)) || (size == 0 && n > 0) {
			return h, corruptf("string column %d: bad dictionary size", k)
		}
		o += m
		dict := d.dicts[k][:0]
		for range size {
			l, m := binary.Uvarint(payload[o:])
			if m <= 0 || l > uint64(len(payload)-o-m) {
				return h, corruptf("string column %d: bad string length", k)
			}
			o += m
			dict = append(dict, string(payload[o:o+int(l)]))
			o += int(l)
		}
		d.dicts[k] = dict
		w := indexWidth(len(dict))
		if len(payload)-o < n*w {
			return h, corruptf("string column %d: index truncated", k)
		}
		cols[k] = strCol{payload[o : o+n*w], w}
		o += n * w
	}
	if o != len(payload) {
		return h, corruptf("%d bytes after the last column", len(payload)-o)
	}
	if cap(d.flows) < min(n, decodeChunk) {
		d.flows = make([]flow.Flow, min(n, decodeChunk))
	}
	for start := 0; start < n; start += decodeChunk {
		m := min(decodeChunk, n-start)
		fl := d.flows[:m]
		for r := range fl {
			i := start + r
			f := &fl[r]
			for k, c := range fixed {
				c.get(payload[offs[k]+i*c.width:], f)
			}
			for k, get := range strs {
				var j int
				switch cols[k].width {
				case 1:
					j = int(cols[k].idx[i])
				case 2:
					j = int(le.Uint16(cols[k].idx[2*i:]))
				default:
					j = int(le.Uint32(cols[k].idx[4*i:]))
				}
				if j >= len(d.dicts[k]) {
					return h, corruptf("string column %d: index %d outside a dictionary of %d", k, j, len(d.dicts[k]))
				}
				*get(f) = d.dicts[k][j]
			}
		}
		dst.Append(fl)
	}
	// Forget the strings so the decoder does not pin them.
	clear(d.flows)
	for k := range d.dicts {
		clear(d.dicts[k])
	}
	return h, nil
}
