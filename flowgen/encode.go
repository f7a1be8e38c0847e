package flowgen

import (
	"encoding/binary"
	"time"
)

// encoder builds the datagrams of one exporter. Datagrams are assembled in
// a buffer the encoder owns and reuses: nothing is allocated per flow.
type encoder interface {
	// begin starts a datagram at schedule time at; it decides whether the
	// datagram carries templates (v9, IPFIX) or counter samples (sFlow).
	begin(at time.Duration)
	// add encodes one record (one sample for sFlow) of f; false when the
	// datagram has no room left for it.
	add(f *Flow) bool
	// records is the number of flow records or samples added since begin.
	records() int
	// finish completes the datagram with export time nowMs (Unix ms). The
	// slice is valid until the next begin.
	finish(nowMs int64) []byte
}

var be = binary.BigEndian

// grow extends b by n bytes (within its capacity when possible) and
// returns the extended slice and the new part.
func grow(b []byte, n int) ([]byte, []byte) {
	l := len(b)
	if l+n > cap(b) {
		nb := make([]byte, l, 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	b = b[:l+n]
	return b, b[l:]
}

// uptime is a time as milliseconds since the exporter booted, as v5 and v9
// records carry it (it wraps after 49.7 days, as on real devices).
func uptime(ms, bootMs int64) uint32 { return uint32(ms - bootMs) }

// ---- NetFlow v5 ----

const (
	v5HeaderLen  = 24
	v5RecordLen  = 48
	v5MaxRecords = 30
)

type v5Encoder struct {
	buf        []byte
	n          int
	max        int
	seq        uint32 // flows sent before this datagram
	bootMs     int64
	engineType uint8
	engineID   uint8
	sampling   uint16
}

func newV5Encoder(mtu int, seq uint32, bootMs int64, engineID uint8, rate uint32) *v5Encoder {
	e := &v5Encoder{
		buf:      make([]byte, 0, v5HeaderLen+v5MaxRecords*v5RecordLen),
		max:      min(v5MaxRecords, (mtu-v5HeaderLen)/v5RecordLen),
		seq:      seq,
		bootMs:   bootMs,
		engineID: engineID,
	}
	if rate > 1 {
		e.sampling = 1<<14 | uint16(rate&0x3fff) // mode 01: deterministic 1-in-N
	}
	return e
}

func (e *v5Encoder) begin(time.Duration) {
	e.buf = e.buf[:v5HeaderLen]
	e.n = 0
}

func (e *v5Encoder) records() int { return e.n }

func (e *v5Encoder) add(f *Flow) bool {
	if e.n >= e.max {
		return false
	}
	var r []byte
	e.buf, r = grow(e.buf, v5RecordLen)
	src, dst, nh := f.Src.As4(), f.Dst.As4(), f.NextHop.As4()
	copy(r[0:4], src[:])
	copy(r[4:8], dst[:])
	copy(r[8:12], nh[:])
	be.PutUint16(r[12:], uint16(f.InIf))
	be.PutUint16(r[14:], uint16(f.OutIf))
	be.PutUint32(r[16:], uint32(f.Packets))
	be.PutUint32(r[20:], uint32(f.Bytes))
	be.PutUint32(r[24:], uptime(f.StartMs, e.bootMs))
	be.PutUint32(r[28:], uptime(f.EndMs, e.bootMs))
	be.PutUint16(r[32:], f.SrcPort)
	be.PutUint16(r[34:], f.DstPort)
	r[36] = 0
	r[37] = f.TCPFlags
	r[38] = f.Proto
	r[39] = f.ToS
	be.PutUint32(r[40:], 0) // src_as, dst_as
	r[44] = f.SrcMask
	r[45] = f.DstMask
	be.PutUint16(r[46:], 0)
	e.n++
	return true
}

func (e *v5Encoder) finish(nowMs int64) []byte {
	h := e.buf[:v5HeaderLen]
	be.PutUint16(h[0:], 5)
	be.PutUint16(h[2:], uint16(e.n))
	be.PutUint32(h[4:], uptime(nowMs, e.bootMs))
	be.PutUint32(h[8:], uint32(nowMs/1000))
	be.PutUint32(h[12:], uint32(nowMs%1000)*1_000_000)
	be.PutUint32(h[16:], e.seq)
	h[20] = e.engineType
	h[21] = e.engineID
	be.PutUint16(h[22:], e.sampling)
	e.seq += uint32(e.n)
	return e.buf
}
