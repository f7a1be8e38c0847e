package replay

import "encoding/binary"

var be = binary.BigEndian

// header starts a datagram of the capture's version in r.buf.
func (r *Replayer) header(x *exporter, s *stream, st *streamState, c clock) []byte {
	b := x.buf[:0]
	secs := uint32(c.exportMs / 1000)
	switch r.capt.Version {
	case versionV5:
		b = be.AppendUint16(b, 5)
		b = be.AppendUint16(b, 0) // count, patched
		b = be.AppendUint32(b, uint32(c.uptimeMs))
		b = be.AppendUint32(b, secs)
		b = be.AppendUint32(b, uint32(c.exportMs%1000)*1e6)
		b = be.AppendUint32(b, st.seq)
		b = append(b, s.v5head[:]...)
	case versionV9:
		b = be.AppendUint16(b, 9)
		b = be.AppendUint16(b, 0) // count, patched
		b = be.AppendUint32(b, uint32(c.uptimeMs))
		b = be.AppendUint32(b, secs)
		b = be.AppendUint32(b, st.seq)
		b = be.AppendUint32(b, s.domain)
	default:
		b = be.AppendUint16(b, 10)
		b = be.AppendUint16(b, 0) // length, patched
		b = be.AppendUint32(b, secs)
		b = be.AppendUint32(b, st.seq)
		b = be.AppendUint32(b, s.domain)
	}
	return b
}

// finish patches the header: v5 and v9 the record count, IPFIX the length.
func (r *Replayer) finish(b []byte, records int) []byte {
	if r.capt.Version == versionIPFIX {
		be.PutUint16(b[2:], uint16(len(b)))
	} else {
		be.PutUint16(b[2:], uint16(records))
	}
	return b
}

// openSet appends a set header; closeSet pads (v9) and sets its length.
func openSet(b []byte, id uint16) ([]byte, int) {
	at := len(b)
	b = be.AppendUint16(b, id)
	return be.AppendUint16(b, 0), at
}

func (r *Replayer) closeSet(b []byte, at int) []byte {
	if r.capt.Version == versionV9 {
		for (len(b)-at)%4 != 0 {
			b = append(b, 0)
		}
	}
	be.PutUint16(b[at+2:], uint16(len(b)-at))
	return b
}

// templates builds a stream's template datagram: its templates, options
// templates and options records. units is the options records (what an
// IPFIX sequence number counts of it).
func (r *Replayer) templates(x *exporter, s *stream, st *streamState, c clock) (b []byte, units int) {
	b = r.header(x, s, st, c)
	tmplSet, optSet := uint16(0), uint16(1)
	if r.capt.Version == versionIPFIX {
		tmplSet, optSet = 2, 3
	}
	records := 0
	for _, options := range []bool{false, true} {
		at := -1
		for _, id := range s.order {
			t := s.tmpl[id]
			if t.options != options {
				continue
			}
			if at < 0 {
				id := tmplSet
				if options {
					id = optSet
				}
				b, at = openSet(b, id)
			}
			b = append(b, t.raw...)
			records++
		}
		if at >= 0 {
			b = r.closeSet(b, at)
		}
	}
	for _, id := range s.order {
		at := -1
		for _, o := range s.optData {
			if o.tmpl != id {
				continue
			}
			if at < 0 {
				b, at = openSet(b, id)
			}
			n := len(b)
			b = append(b, o.data...)
			retime(b[n:], o.times, c, c.exportMs, 0, false)
			records++
			units++
		}
		if at >= 0 {
			b = r.closeSet(b, at)
		}
	}
	x.buf = b
	return r.finish(b, records), units
}

// data builds x's next data datagram: up to want records from its
// cursor, all of one stream (a datagram has one header), as many as fit.
func (r *Replayer) data(x *exporter, st *streamState, c clock, want int) (b []byte, n int) {
	recs := r.capt.records
	si := recs[x.cursor].stream
	b = r.header(x, r.capt.streams[si], st, c)
	v5 := r.capt.Version == versionV5
	at := -1
	var cur *template
	for n < want {
		rec := &recs[x.cursor]
		if rec.stream != si {
			break
		}
		need := len(rec.data)
		if !v5 && rec.tmpl != cur {
			need += 4 + 3
		}
		if n > 0 && len(b)+need > r.cfg.MaxDatagram {
			break
		}
		if !v5 && rec.tmpl != cur {
			if at >= 0 {
				b = r.closeSet(b, at)
			}
			b, at = openSet(b, rec.tmpl.id)
			cur = rec.tmpl
		}
		off := len(b)
		b = append(b, rec.data...)
		retime(b[off:], rec.times, c, rec.exportMs, rec.uptimeMs, rec.hasUp)
		n++
		if x.cursor++; x.cursor == len(recs) {
			x.cursor = 0
		}
	}
	if at >= 0 {
		b = r.closeSet(b, at)
	}
	x.buf = b
	return r.finish(b, n), n
}
