package collector

import (
	"encoding/binary"
	"net/netip"
)

// msg builds NetFlow v9 and IPFIX messages for tests, field by field, so
// each test states exactly which bytes it sends.
type msg struct {
	version uint16
	b       []byte
	sets    int
}

func newIPFIX(exportSec, seq, domain uint32) *msg {
	m := &msg{version: 10}
	m.b = binary.BigEndian.AppendUint16(nil, 10)
	m.b = binary.BigEndian.AppendUint16(m.b, 0) // length, patched in bytes()
	m.b = binary.BigEndian.AppendUint32(m.b, exportSec)
	m.b = binary.BigEndian.AppendUint32(m.b, seq)
	m.b = binary.BigEndian.AppendUint32(m.b, domain)
	return m
}

func newNFv9(uptimeMs, unixSec, seq, sourceID uint32) *msg {
	m := &msg{version: 9}
	m.b = binary.BigEndian.AppendUint16(nil, 9)
	m.b = binary.BigEndian.AppendUint16(m.b, 0) // count, patched
	m.b = binary.BigEndian.AppendUint32(m.b, uptimeMs)
	m.b = binary.BigEndian.AppendUint32(m.b, unixSec)
	m.b = binary.BigEndian.AppendUint32(m.b, seq)
	m.b = binary.BigEndian.AppendUint32(m.b, sourceID)
	return m
}

// tf is a template field: IE, length, and optional enterprise number.
type tf struct {
	ie     uint16
	length uint16
	pen    uint32
}

func (m *msg) set(id uint16, body []byte) *msg {
	m.b = binary.BigEndian.AppendUint16(m.b, id)
	m.b = binary.BigEndian.AppendUint16(m.b, uint16(4+len(body)))
	m.b = append(m.b, body...)
	m.sets++
	return m
}

func (m *msg) template(id uint16, fields ...tf) *msg {
	body := binary.BigEndian.AppendUint16(nil, id)
	body = binary.BigEndian.AppendUint16(body, uint16(len(fields)))
	for _, f := range fields {
		t := f.ie
		if f.pen != 0 {
			t |= 0x8000
		}
		body = binary.BigEndian.AppendUint16(body, t)
		body = binary.BigEndian.AppendUint16(body, f.length)
		if f.pen != 0 {
			body = binary.BigEndian.AppendUint32(body, f.pen)
		}
	}
	setID := uint16(2)
	if m.version == 9 {
		setID = 0
	}
	return m.set(setID, body)
}

// optionsTemplate writes an options template with the given scope fields
// (IPFIX: IEs; v9: scope types) followed by option fields.
func (m *msg) optionsTemplate(id uint16, scopes []tf, options []tf) *msg {
	body := binary.BigEndian.AppendUint16(nil, id)
	if m.version == 9 {
		body = binary.BigEndian.AppendUint16(body, uint16(4*len(scopes)))
		body = binary.BigEndian.AppendUint16(body, uint16(4*len(options)))
	} else {
		body = binary.BigEndian.AppendUint16(body, uint16(len(scopes)+len(options)))
		body = binary.BigEndian.AppendUint16(body, uint16(len(scopes)))
	}
	for _, f := range append(append([]tf{}, scopes...), options...) {
		body = binary.BigEndian.AppendUint16(body, f.ie)
		body = binary.BigEndian.AppendUint16(body, f.length)
	}
	setID := uint16(3)
	if m.version == 9 {
		setID = 1
	}
	return m.set(setID, body)
}

func (m *msg) data(id uint16, records ...[]byte) *msg {
	var body []byte
	for _, r := range records {
		body = append(body, r...)
	}
	return m.set(id, body)
}

func (m *msg) bytes() []byte {
	out := append([]byte(nil), m.b...)
	if m.version == 10 {
		binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	} else {
		binary.BigEndian.PutUint16(out[2:], uint16(m.sets))
	}
	return out
}

// rec concatenates big-endian values into a data record.
func rec(values ...any) []byte {
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
			panic("rec: unsupported type")
		}
	}
	return b
}

func netipAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
