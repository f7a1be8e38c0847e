// Package replay re-sends a real exporter's capture: the data records of
// its NetFlow v5, v9 or IPFIX datagrams, re-packed N to a datagram with
// the templates the capture defined, from simulated exporters in
// 127.0.0.0/8, each numbering its own datagrams, looped until a count or
// a duration, paced with flowgen's Pacer.
package replay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/flowhouse/flowhouse/internal/pcapfile"
)

// Export versions a capture may hold (one of them).
const (
	versionV5    = 5
	versionV9    = 9
	versionIPFIX = 10
)

// Capture is what a replay sends: the data records of a capture in their
// order, and per stream (v9 source ID, IPFIX observation domain, v5
// engine) the templates and options records that describe them.
type Capture struct {
	Version   int
	Datagrams int // the capture's export datagrams
	records   []record
	streams   []*stream
}

// Records is the number of data records (flows; IPFIX biflows count once).
func (c *Capture) Records() int { return len(c.records) }

// Density is the capture's own data records per datagram that carried any.
func (c *Capture) Density() float64 {
	n := 0
	for _, s := range c.streams {
		n += s.dataDatagrams
	}
	if n == 0 {
		return 0
	}
	return float64(len(c.records)) / float64(n)
}

// stream is one sequence-number space of the capture's exporter.
type stream struct {
	domain uint32
	v5head [4]byte // v5: engine type, engine ID, sampling interval
	// tmpl holds the last definition of each template ID (data and
	// options templates); optData the distinct options data records,
	// re-sent with the templates. initMs is the IPFIX systemInitTime (IE
	// 160) last announced, what uptime fields (IE 21, 22) count from.
	tmpl          map[uint16]*template
	order         []uint16 // template IDs in first-definition order
	optData       []optRecord
	dataDatagrams int
	initMs        int64
}

// template is a data or options template: its raw record (for re-sending)
// and where its time fields are.
type template struct {
	id      uint16
	options bool
	raw     []byte // the template record as defined
	fields  []fieldSpec
	fixed   int // record length, or -1 if a field is variable-length
}

type fieldSpec struct {
	ie     uint16
	length uint16 // 65535: variable-length (IPFIX)
	pen    uint32
}

type optRecord struct {
	tmpl  uint16
	data  []byte
	times []timeField
}

// record is one data record and what its time fields were relative to:
// the export time of the datagram it came in and the exporter's uptime
// then (v5 and v9: the header's; IPFIX: since systemInitTime, if known).
type record struct {
	stream   int
	tmpl     *template
	data     []byte
	times    []timeField
	uptimeMs uint32
	hasUp    bool
	exportMs int64
}

// Load reads a capture file's datagrams and parses them.
func Load(path string) (*Capture, error) {
	ds, err := pcapfile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	c, err := Parse(ds)
	if err != nil {
		return nil, fmt.Errorf("replay: %s: %w", path, err)
	}
	return c, nil
}

// Parse takes the flow export datagrams of ds. They must all be of one
// version (v5, v9 or IPFIX); other UDP datagrams are errors too, since a
// capture of something else replayed as flows would mislead.
func Parse(ds []pcapfile.Datagram) (*Capture, error) {
	c := &Capture{}
	for i, d := range ds {
		if len(d.Payload) < 4 {
			return nil, fmt.Errorf("datagram %d: %d bytes, too short for a flow export header", i+1, len(d.Payload))
		}
		v := int(binary.BigEndian.Uint16(d.Payload))
		if binary.BigEndian.Uint32(d.Payload) == 5 {
			return nil, errors.New("sFlow captures are not supported by the replayer (NetFlow v5, v9 and IPFIX are)")
		}
		if c.Version == 0 {
			c.Version = v
		}
		if v != c.Version {
			return nil, fmt.Errorf("datagram %d: version %d after version %d: one export version per capture", i+1, v, c.Version)
		}
		var err error
		switch v {
		case versionV5:
			err = c.parseV5(d.Payload)
		case versionV9, versionIPFIX:
			err = c.parseNF(d.Payload)
		default:
			err = fmt.Errorf("export version %d (want 5, 9 or 10)", v)
		}
		if err != nil {
			return nil, fmt.Errorf("datagram %d: %w", i+1, err)
		}
		c.Datagrams++
	}
	if len(c.records) == 0 {
		return nil, errors.New("no data records that a template describes")
	}
	return c, nil
}

func (c *Capture) streamOf(domain uint32) (int, *stream) {
	for i, s := range c.streams {
		if s.domain == domain {
			return i, s
		}
	}
	s := &stream{domain: domain, tmpl: map[uint16]*template{}}
	c.streams = append(c.streams, s)
	return len(c.streams) - 1, s
}

const v5Header, v5Record = 24, 48

func (c *Capture) parseV5(p []byte) error {
	if len(p) < v5Header {
		return fmt.Errorf("v5: %d bytes, shorter than the header", len(p))
	}
	n := int(binary.BigEndian.Uint16(p[2:]))
	if len(p) < v5Header+n*v5Record {
		return fmt.Errorf("v5: %d records announced, %d bytes", n, len(p))
	}
	si, s := c.streamOf(uint32(binary.BigEndian.Uint16(p[20:])))
	copy(s.v5head[:], p[20:24])
	if n > 0 {
		s.dataDatagrams++
	}
	up, secs, nsecs := binary.BigEndian.Uint32(p[4:]), binary.BigEndian.Uint32(p[8:]), binary.BigEndian.Uint32(p[12:])
	for i := 0; i < n; i++ {
		off := v5Header + i*v5Record
		c.records = append(c.records, record{stream: si, data: bytes.Clone(p[off : off+v5Record]), times: v5Times,
			uptimeMs: up, hasUp: true, exportMs: int64(secs)*1000 + int64(nsecs)/1e6})
	}
	return nil
}

// parseNF walks the sets of a v9 or IPFIX message.
func (c *Capture) parseNF(p []byte) error {
	ipfix := c.Version == versionIPFIX
	hl := 20
	if ipfix {
		hl = 16
	}
	if len(p) < hl {
		return fmt.Errorf("%d bytes, shorter than the header", len(p))
	}
	var up, secs, domain uint32
	if ipfix {
		if l := int(binary.BigEndian.Uint16(p[2:])); l <= len(p) && l >= hl {
			p = p[:l]
		}
		secs, domain = binary.BigEndian.Uint32(p[4:]), binary.BigEndian.Uint32(p[12:])
	} else {
		up, secs, domain = binary.BigEndian.Uint32(p[4:]), binary.BigEndian.Uint32(p[8:]), binary.BigEndian.Uint32(p[16:])
	}
	si, s := c.streamOf(domain)
	before := len(c.records)
	for off := hl; off+4 <= len(p); {
		id, l := binary.BigEndian.Uint16(p[off:]), int(binary.BigEndian.Uint16(p[off+2:]))
		if l < 4 || off+l > len(p) {
			return fmt.Errorf("set %d at byte %d: length %d beyond the datagram", id, off, l)
		}
		body := p[off+4 : off+l]
		var err error
		switch {
		case id == 0 && !ipfix, id == 2 && ipfix:
			err = s.parseTemplates(body, ipfix, false)
		case id == 1 && !ipfix, id == 3 && ipfix:
			err = s.parseTemplates(body, ipfix, true)
		case id >= 256:
			err = c.parseData(si, s, id, body, record{stream: si, uptimeMs: up, hasUp: !ipfix, exportMs: int64(secs) * 1000})
		}
		if err != nil {
			return fmt.Errorf("set %d: %w", id, err)
		}
		off += l
	}
	if len(c.records) > before {
		s.dataDatagrams++
	}
	return nil
}

// parseTemplates takes the (options) template records of a set body.
func (s *stream) parseTemplates(b []byte, ipfix, options bool) error {
	for len(b) >= 4 {
		t := &template{options: options, id: binary.BigEndian.Uint16(b)}
		var n, hdr int
		switch {
		case !options:
			n, hdr = int(binary.BigEndian.Uint16(b[2:])), 4
		case ipfix:
			if len(b) < 6 {
				return errors.New("options template record cut short")
			}
			n, hdr = int(binary.BigEndian.Uint16(b[2:])), 6
		default: // v9 options: scope and option lengths in bytes, 4 per field
			if len(b) < 6 {
				return errors.New("options template record cut short")
			}
			n, hdr = (int(binary.BigEndian.Uint16(b[2:]))+int(binary.BigEndian.Uint16(b[4:])))/4, 6
		}
		if t.id < 256 {
			return nil // padding (v9) or a malformed record: the rest is not templates
		}
		if n == 0 {
			// An IPFIX withdrawal (ID and a field count of 0, RFC 7011
			// section 8.1): the replay keeps the last definition.
			b = b[4:]
			continue
		}
		off := hdr
		t.fixed = 0
		for i := 0; i < n; i++ {
			if off+4 > len(b) {
				return fmt.Errorf("template %d cut short", t.id)
			}
			f := fieldSpec{ie: binary.BigEndian.Uint16(b[off:]), length: binary.BigEndian.Uint16(b[off+2:])}
			off += 4
			if ipfix && f.ie&0x8000 != 0 {
				if off+4 > len(b) {
					return fmt.Errorf("template %d cut short", t.id)
				}
				f.ie &^= 0x8000
				f.pen = binary.BigEndian.Uint32(b[off:])
				off += 4
			}
			if f.length == 0xffff && ipfix {
				t.fixed = -1
			} else if t.fixed >= 0 {
				t.fixed += int(f.length)
			}
			t.fields = append(t.fields, f)
		}
		if t.fixed == 0 {
			return fmt.Errorf("template %d: records of no bytes", t.id)
		}
		t.raw = bytes.Clone(b[:off])
		if old := s.tmpl[t.id]; old == nil {
			s.order = append(s.order, t.id)
		} else if old.options != t.options {
			return fmt.Errorf("template %d redefined as another kind", t.id)
		}
		s.tmpl[t.id] = t
		b = b[off:]
	}
	return nil
}

// parseData splits a data set into records; options records are kept
// (once each) to be re-sent with the templates, data records in order.
func (c *Capture) parseData(si int, s *stream, id uint16, b []byte, r record) error {
	t := s.tmpl[id]
	if t == nil {
		return nil // no template yet: the exporter's collector would drop it too
	}
	for len(b) > 0 {
		n, err := t.recordLen(b)
		if err != nil {
			return err
		}
		if n == 0 {
			break // padding
		}
		data := bytes.Clone(b[:n])
		b = b[n:]
		times, init := t.timeFields(data, c.Version == versionIPFIX)
		if init != 0 {
			s.initMs = init
		}
		if t.options {
			s.addOptions(id, data, times)
			continue
		}
		r.tmpl, r.data, r.times = t, data, times
		if c.Version == versionIPFIX && s.initMs != 0 {
			r.uptimeMs, r.hasUp = uint32(r.exportMs-s.initMs), true
		}
		c.records = append(c.records, r)
	}
	return nil
}

func (s *stream) addOptions(id uint16, data []byte, times []timeField) {
	for _, o := range s.optData {
		if o.tmpl == id && bytes.Equal(o.data, data) {
			return
		}
	}
	s.optData = append(s.optData, optRecord{tmpl: id, data: data, times: times})
}

// recordLen is the length of the record at the start of b, or 0 if what
// is left is padding (shorter than a record).
func (t *template) recordLen(b []byte) (int, error) {
	if t.fixed > 0 {
		if len(b) < t.fixed {
			return 0, nil
		}
		return t.fixed, nil
	}
	off := 0
	for _, f := range t.fields {
		l := int(f.length)
		if f.length == 0xffff {
			if off >= len(b) {
				return 0, nil
			}
			l, off = int(b[off]), off+1
			if l == 255 {
				if off+2 > len(b) {
					if len(b) < 4 {
						return 0, nil
					}
					return 0, fmt.Errorf("template %d: variable-length field cut short", t.id)
				}
				l, off = int(binary.BigEndian.Uint16(b[off:])), off+2
			}
		}
		if off+l > len(b) {
			if len(b) < 4 {
				return 0, nil // set padding
			}
			return 0, fmt.Errorf("template %d: record cut short", t.id)
		}
		off += l
	}
	return off, nil
}
