package collector

import "encoding/binary"

// Template sets are parsed here, not by goflow2 v2.2.6: its decoders make a
// slice of each record's declared field count before reading any of it, so
// a 12-byte set declaring 65,535 fields costs 786 KB of zeroed memory, and
// an MTU-sized datagram of such sets tens of milliseconds. Here every count
// is checked against the bytes left in the set before anything is read or
// allocated, so a set costs what its bytes cost.

const (
	fieldSpecLen        = 4 // information element and length
	enterpriseNumberLen = 4 // follows an IPFIX field whose IE has the top bit set
	templateHeaderLen   = 4 // template ID, field count
	// Options template records of v9 (RFC 3954 section 6.1: ID, scope
	// length, option length, both in bytes) and IPFIX (RFC 7011 section
	// 3.4.2.2: ID, field count, scope field count) have 6-byte headers.
	optionsHeaderLen = 6
)

// readFields appends n field specifiers read from b to dst and returns the
// bytes after them. ok is false when b cannot hold n of them; the check
// comes first, so a declared count costs nothing unless its bytes are there.
func readFields(dst []field, b []byte, n int, ipfix bool) (_ []field, rest []byte, ok bool) {
	if n > len(b)/fieldSpecLen {
		return dst, b, false
	}
	for i := 0; i < n; i++ {
		if len(b) < fieldSpecLen {
			return dst, b, false // enterprise numbers used up the bytes
		}
		typ := binary.BigEndian.Uint16(b)
		f := field{ie: typ, length: binary.BigEndian.Uint16(b[2:])}
		b = b[fieldSpecLen:]
		// NetFlow v9 has no enterprise numbers: there the top bit is part
		// of the field type, and types from 32768 up are vendors' own
		// (Cisco ASA's NSEL: 33000-33002, 40000-40005). They stay as they
		// are: cleared, NSEL's 33000 (an ACL ID, 12 bytes) read as IE 232,
		// responderOctets, and made a reverse flow of it.
		if ipfix && typ&0x8000 != 0 {
			f.ie = typ &^ 0x8000
			if len(b) < enterpriseNumberLen {
				return dst, b, false
			}
			f.pen = binary.BigEndian.Uint32(b)
			b = b[enterpriseNumberLen:]
		}
		dst = append(dst, f)
	}
	return dst, b, true
}

// addTemplates reads a v9 or IPFIX template set. A record whose fields do
// not fit ends the set (its length is all that says where the next record
// starts); the records before it are kept and the next set is decoded.
func (e *exporter) addTemplates(d *decodeContext, h *messageHeader, body []byte) {
	for len(body) >= templateHeaderLen {
		id := binary.BigEndian.Uint16(body)
		count := int(binary.BigEndian.Uint16(body[2:]))
		var ok bool
		d.fields, body, ok = readFields(d.fields[:0], body[templateHeaderLen:], count, h.version == 10)
		if !ok {
			e.drop(ReasonMalformedSet)
			return
		}
		switch {
		case id < 256 && count == 0:
			if h.version == 10 && id == 2 {
				e.templates.withdrawAll(h.version, d.src.Port(), h.domain, false)
			}
			// Otherwise padding at the end of the set.
		case id < 256:
			e.drop(ReasonMalformedSet)
		case count == 0 && h.version == 10:
			// RFC 7011 section 8.1: a template withdrawal.
			e.templates.withdraw(e.tkey(d, h, id))
		default:
			e.storeTemplate(d, h, id, d.fields, 0, false)
		}
	}
}

// addNFv9OptionsTemplates reads a v9 options template set (RFC 3954
// section 6.1), whose scope and option lengths are in bytes.
func (e *exporter) addNFv9OptionsTemplates(d *decodeContext, h *messageHeader, body []byte) {
	for records := 0; len(body) >= templateHeaderLen; records++ {
		if len(body) < optionsHeaderLen {
			e.optionsSetTail(records)
			return
		}
		id := binary.BigEndian.Uint16(body)
		scopes := int(binary.BigEndian.Uint16(body[2:])) / fieldSpecLen
		options := int(binary.BigEndian.Uint16(body[4:])) / fieldSpecLen
		var ok bool
		d.fields, body, ok = readFields(d.fields[:0], body[optionsHeaderLen:], scopes+options, false)
		if !ok {
			e.drop(ReasonMalformedSet)
			return
		}
		e.storeOptionsTemplate(d, h, id, d.fields, scopes)
	}
}

// addIPFIXOptionsTemplates reads an IPFIX options template set (RFC 7011
// section 3.4.2.2) or a set of options template withdrawals.
func (e *exporter) addIPFIXOptionsTemplates(d *decodeContext, h *messageHeader, body []byte) {
	// Withdrawal records are 4 bytes (ID and a zero field count), which
	// would read as the start of a 6-byte options template header.
	if len(body) >= 4 && binary.BigEndian.Uint16(body[2:]) == 0 {
		e.withdrawOptionsTemplates(d, h, body)
		return
	}
	for records := 0; len(body) >= templateHeaderLen; records++ {
		if len(body) < optionsHeaderLen {
			e.optionsSetTail(records)
			return
		}
		id := binary.BigEndian.Uint16(body)
		total := int(binary.BigEndian.Uint16(body[2:]))
		scopes := int(binary.BigEndian.Uint16(body[4:]))
		var ok bool
		if scopes <= total {
			d.fields, body, ok = readFields(d.fields[:0], body[optionsHeaderLen:], total, true)
		}
		if !ok {
			e.drop(ReasonMalformedSet)
			return
		}
		e.storeOptionsTemplate(d, h, id, d.fields, scopes)
	}
}

// optionsSetTail judges the 4 or 5 bytes left after an options template
// set's records: padding to 32 bits after a record (options headers are 6
// bytes, so 2 bytes of padding are common and 4 possible), malformed in a
// set that has none.
func (e *exporter) optionsSetTail(records int) {
	if records == 0 {
		e.drop(ReasonMalformedSet)
	}
}

func (e *exporter) withdrawOptionsTemplates(d *decodeContext, h *messageHeader, body []byte) {
	for ; len(body) >= 4; body = body[4:] {
		id := binary.BigEndian.Uint16(body)
		switch {
		case id == 3:
			e.templates.withdrawAll(h.version, d.src.Port(), h.domain, true)
		case id >= 256:
			e.templates.withdraw(e.tkey(d, h, id))
		}
	}
}
