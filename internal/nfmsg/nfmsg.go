// Package nfmsg builds NetFlow v9 and IPFIX messages field by field, for
// tests: each test states exactly which bytes it sends, and the collector's
// unit tests and the end-to-end tests share one builder.
package nfmsg

import "encoding/binary"

// Message is a v9 or IPFIX message under construction.
type Message struct {
	version uint16
	b       []byte
	sets    int
}

// NewIPFIX starts an IPFIX message (RFC 7011 section 3.1).
func NewIPFIX(exportSec, seq, domain uint32) *Message {
	m := &Message{version: 10}
	m.b = binary.BigEndian.AppendUint16(nil, 10)
	m.b = binary.BigEndian.AppendUint16(m.b, 0) // length, patched in Bytes()
	m.b = binary.BigEndian.AppendUint32(m.b, exportSec)
	m.b = binary.BigEndian.AppendUint32(m.b, seq)
	m.b = binary.BigEndian.AppendUint32(m.b, domain)
	return m
}

// NewNFv9 starts a NetFlow v9 message (RFC 3954 section 5.1).
func NewNFv9(uptimeMs, unixSec, seq, sourceID uint32) *Message {
	m := &Message{version: 9}
	m.b = binary.BigEndian.AppendUint16(nil, 9)
	m.b = binary.BigEndian.AppendUint16(m.b, 0) // count, patched in Bytes()
	m.b = binary.BigEndian.AppendUint32(m.b, uptimeMs)
	m.b = binary.BigEndian.AppendUint32(m.b, unixSec)
	m.b = binary.BigEndian.AppendUint32(m.b, seq)
	m.b = binary.BigEndian.AppendUint32(m.b, sourceID)
	return m
}

// Field is a template field: IE, length, and optional enterprise number.
type Field struct {
	IE     uint16
	Length uint16
	PEN    uint32
}

// Len is the length of the message so far.
func (m *Message) Len() int { return len(m.b) }

// Set appends a set with the given ID and body.
func (m *Message) Set(id uint16, body []byte) *Message {
	m.b = binary.BigEndian.AppendUint16(m.b, id)
	m.b = binary.BigEndian.AppendUint16(m.b, uint16(4+len(body)))
	m.b = append(m.b, body...)
	m.sets++
	return m
}

// Template appends a template set of one template.
func (m *Message) Template(id uint16, fields ...Field) *Message {
	body := binary.BigEndian.AppendUint16(nil, id)
	body = binary.BigEndian.AppendUint16(body, uint16(len(fields)))
	for _, f := range fields {
		t := f.IE
		if f.PEN != 0 {
			t |= 0x8000
		}
		body = binary.BigEndian.AppendUint16(body, t)
		body = binary.BigEndian.AppendUint16(body, f.Length)
		if f.PEN != 0 {
			body = binary.BigEndian.AppendUint32(body, f.PEN)
		}
	}
	setID := uint16(2)
	if m.version == 9 {
		setID = 0
	}
	return m.Set(setID, body)
}

// OptionsTemplate appends an options template with the given scope fields
// (IPFIX: IEs; v9: scope types) followed by option fields.
func (m *Message) OptionsTemplate(id uint16, scopes []Field, options []Field) *Message {
	body := binary.BigEndian.AppendUint16(nil, id)
	if m.version == 9 {
		body = binary.BigEndian.AppendUint16(body, uint16(4*len(scopes)))
		body = binary.BigEndian.AppendUint16(body, uint16(4*len(options)))
	} else {
		body = binary.BigEndian.AppendUint16(body, uint16(len(scopes)+len(options)))
		body = binary.BigEndian.AppendUint16(body, uint16(len(scopes)))
	}
	for _, f := range append(append([]Field{}, scopes...), options...) {
		body = binary.BigEndian.AppendUint16(body, f.IE)
		body = binary.BigEndian.AppendUint16(body, f.Length)
	}
	setID := uint16(3)
	if m.version == 9 {
		setID = 1
	}
	return m.Set(setID, body)
}

// Data appends a data set of the given records.
func (m *Message) Data(id uint16, records ...[]byte) *Message {
	var body []byte
	for _, r := range records {
		body = append(body, r...)
	}
	return m.Set(id, body)
}

// Bytes returns the message with its length (IPFIX) or count (v9) set.
func (m *Message) Bytes() []byte {
	out := append([]byte(nil), m.b...)
	if m.version == 10 {
		binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	} else {
		binary.BigEndian.PutUint16(out[2:], uint16(m.sets))
	}
	return out
}

// Record concatenates big-endian values (uint8 to uint64, or []byte) into
// a data record.
func Record(values ...any) []byte {
	var b []byte
	for _, v := range values {
		switch v := v.(type) {
		case uint8:
			b = append(b, v)
		case uint16:
			b = binary.BigEndian.AppendUint16(b, v)
		case uint32:
			b = binary.BigEndian.AppendUint32(b, v)
		case uint64:
			b = binary.BigEndian.AppendUint64(b, v)
		case []byte:
			b = append(b, v...)
		default:
			panic("nfmsg.Record: unsupported type")
		}
	}
	return b
}

// Variable is an IPFIX variable-length value (RFC 7011 section 7): one
// length byte, or 255 and two, then the value.
func Variable(v []byte) []byte {
	if len(v) < 255 {
		return append([]byte{byte(len(v))}, v...)
	}
	return append(binary.BigEndian.AppendUint16([]byte{255}, uint16(len(v))), v...)
}
