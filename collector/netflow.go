package collector

import (
	"encoding/binary"

	"github.com/flowhouse/flowhouse/flow"
)

const (
	nf9HeaderLen   = 20
	ipfixHeaderLen = 16
	setHeaderLen   = 4
)

// messageHeader is what data records need from their message header to
// turn relative times into absolute ones.
type messageHeader struct {
	version   uint16
	proto     flow.Protocol
	domain    uint32
	exportMs  int64
	sysUptime uint32 // NetFlow v9 only
	// templateChanged: the message redefined a template, a hint that the
	// exporter restarted with a new configuration.
	templateChanged bool
}

// decodeNetFlowV9 decodes a v9 datagram. The header's record count is not
// used to walk the sets: exporters disagree on what it counts, and the set
// lengths describe the datagram exactly.
func (e *exporter) decodeNetFlowV9(d *decodeContext, b []byte) {
	if len(b) < nf9HeaderLen {
		e.drop(ReasonTruncated)
		return
	}
	h := messageHeader{
		version:   9,
		proto:     flow.ProtoNetFlowV9,
		sysUptime: binary.BigEndian.Uint32(b[4:]),
		exportMs:  int64(binary.BigEndian.Uint32(b[8:])) * 1000,
		domain:    binary.BigEndian.Uint32(b[16:]),
	}
	seq := binary.BigEndian.Uint32(b[12:])
	// Templates come before the sequence accounting, which takes a
	// redefinition as a hint of a restart.
	records, complete := e.decodeSets(d, &h, b[nf9HeaderLen:])
	if !complete && e.sequenceCountsFlows(flow.ProtoNetFlowV9, h.domain, d.src.Port()) {
		// The flows of undecodable sets cannot be counted: this message
		// cannot advance a numbering by flows (one by packets it can).
		e.sequenceUnknown(flow.ProtoNetFlowV9, h.domain, d.src.Port())
		return
	}
	e.sequence(flow.ProtoNetFlowV9, h.domain, message{seq: seq, all: 1, flows: uint32(records - e.optionsRecords), session: d.src.Port(),
		clock: bootReading(h.exportMs, h.sysUptime), templateChanged: h.templateChanged})
}

// decodeIPFIX decodes an IPFIX message (RFC 7011).
func (e *exporter) decodeIPFIX(d *decodeContext, b []byte) {
	if len(b) < ipfixHeaderLen {
		e.drop(ReasonTruncated)
		return
	}
	length := int(binary.BigEndian.Uint16(b[2:]))
	if length < ipfixHeaderLen {
		e.drop(ReasonBadLength)
		return
	}
	if length > len(b) {
		e.drop(ReasonTruncated)
		return
	}
	h := messageHeader{
		version:  10,
		proto:    flow.ProtoIPFIX,
		exportMs: int64(binary.BigEndian.Uint32(b[4:])) * 1000,
		domain:   binary.BigEndian.Uint32(b[12:]),
	}
	seq := binary.BigEndian.Uint32(b[8:])
	records, complete := e.decodeSets(d, &h, b[ipfixHeaderLen:length])
	if complete {
		// The options records just decoded have updated systemInitMs.
		e.sequence(flow.ProtoIPFIX, h.domain, message{seq: seq, all: uint32(records), flows: uint32(records - e.optionsRecords), session: d.src.Port(),
			clock: systemInitReading(e.systemInitMs[h.domain]), templateChanged: h.templateChanged})
	} else {
		// Records in undecodable sets cannot be counted, so this message
		// cannot advance the expected sequence number; restart the count
		// at the next message instead of inventing loss.
		e.sequenceUnknown(flow.ProtoIPFIX, h.domain, d.src.Port())
	}
}

// decodeSets walks the sets of a v9 or IPFIX message. It returns the number
// of data records (options included, as IPFIX sequence numbers count them)
// and whether every set could be decoded.
func (e *exporter) decodeSets(d *decodeContext, h *messageHeader, b []byte) (records int, complete bool) {
	complete = true
	e.optionsRecords = 0
	for len(b) >= setHeaderLen {
		id := binary.BigEndian.Uint16(b)
		setLen := int(binary.BigEndian.Uint16(b[2:]))
		if setLen < setHeaderLen || setLen > len(b) {
			// Without a trustworthy length the next set cannot be found.
			e.drop(ReasonMalformedSet)
			return records, false
		}
		body := b[setHeaderLen:setLen]
		b = b[setLen:]
		switch {
		case h.version == 9 && id == 0, h.version == 10 && id == 2:
			e.addTemplates(d, h, body)
		case h.version == 9 && id == 1:
			e.addNFv9OptionsTemplates(d, h, body)
		case h.version == 10 && id == 3:
			e.addIPFIXOptionsTemplates(d, h, body)
		case id >= 256:
			n, ok := e.decodeDataSet(d, h, id, body)
			records += n
			complete = complete && ok
		default:
			// Reserved set IDs are skipped as RFC 7011 section 3.3.2 asks.
		}
	}
	return records, complete
}

func (e *exporter) tkey(d *decodeContext, h *messageHeader, id uint16) templateKey {
	return templateKey{version: h.version, port: d.src.Port(), domain: h.domain, id: id}
}

func (e *exporter) storeTemplate(d *decodeContext, h *messageHeader, id uint16, fields []field, scopes int, options bool) {
	k := e.tkey(d, h, id)
	// Checked before compiling, so a flood against a full store allocates
	// nothing; an empty template is reported as such even then.
	if minLen, _ := recordLength(fields); len(fields) == 0 || minLen == 0 {
		e.drop(ReasonEmptyTemplate)
		return
	}
	if e.templates.refresh(k, fields, scopes, options, d.nowMs) {
		return
	}
	h.templateChanged = h.templateChanged || e.templates.m[k] != nil
	if !e.templates.room(k, d.nowMs) {
		e.drop(ReasonTemplateLimit)
		return
	}
	t, _ := compileTemplate(fields, scopes, options, d.nowMs, e.dec.extra)
	if e.templates.add(k, t, d.nowMs) && !options {
		e.dec.metrics.unknownFields(t)
	}
}

// storeOptionsTemplate stores an options template: its scope fields first,
// then its option fields, as records carry them.
func (e *exporter) storeOptionsTemplate(d *decodeContext, h *messageHeader, id uint16, fields []field, scopes int) {
	if id < 256 {
		return // padding at the end of the set
	}
	e.storeTemplate(d, h, id, fields, scopes, true)
}

// decodeDataSet decodes the records of one data set. A set whose template
// is unknown is counted and skipped; the message's other sets still count.
func (e *exporter) decodeDataSet(d *decodeContext, h *messageHeader, id uint16, body []byte) (int, bool) {
	t := e.templates.get(e.tkey(d, h, id), d.nowMs)
	if t == nil {
		e.drop(ReasonTemplateNotFound)
		return 0, false
	}
	n := 0
	// Trailing bytes shorter than the smallest record are padding.
	for len(body) >= t.minLen {
		var used int
		var ok bool
		if t.options {
			used, ok = e.decodeOptionsRecord(h, t, body)
			e.optionsRecords++
		} else {
			used, ok = e.decodeFlowRecord(d, h, t, body)
		}
		if !ok {
			e.drop(ReasonMalformedRecord)
			return n, false
		}
		body = body[used:]
		n++
	}
	return n, true
}

// fieldValue returns the value of the field at the start of b and the
// bytes it occupied, reading IPFIX variable-length encoding.
func fieldValue(f *field, b []byte) (val []byte, used int, ok bool) {
	if f.length != variableLength {
		l := int(f.length)
		if l > len(b) {
			return nil, 0, false
		}
		return b[:l], l, true
	}
	if len(b) < 1 {
		return nil, 0, false
	}
	l, hdr := int(b[0]), 1
	if l == 255 {
		if len(b) < 3 {
			return nil, 0, false
		}
		l, hdr = int(binary.BigEndian.Uint16(b[1:])), 3
	}
	if hdr+l > len(b) {
		return nil, 0, false
	}
	return b[hdr : hdr+l], hdr + l, true
}

// beUint reads an unsigned integer of 1 to 8 bytes: RFC 7011 section 6.2
// lets exporters send integers in fewer bytes than their type has.
func beUint(b []byte) uint64 {
	switch len(b) {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(b))
	case 4:
		return uint64(binary.BigEndian.Uint32(b))
	case 8:
		return binary.BigEndian.Uint64(b)
	}
	if len(b) > 8 {
		b = b[len(b)-8:]
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}
