package replay

import "encoding/binary"

// A record's time fields are rewritten on each send so that the record
// is as old, relative to the datagram that carries it, as it was in the
// capture: absolute times move by the difference of the export times,
// uptime times follow the simulated exporter's uptime, and IPFIX's
// systemInitTime becomes the simulated exporter's boot time.

type timeKind uint8

const (
	timeUptime  timeKind = iota + 1 // 4-byte ms of uptime (v5, IE 21/22)
	timeSeconds                     // IE 150/151
	timeMillis                      // IE 152/153
	timeNTP                         // IE 154-157, NTP format
	timeInit                        // IE 160, systemInitTimeMilliseconds
)

type timeField struct {
	off  int
	kind timeKind
}

// v5Times are the First and Last fields of a v5 record (uptime ms).
var v5Times = []timeField{{24, timeUptime}, {28, timeUptime}}

// timeFields finds the time fields of a record of t, and the IPFIX
// systemInitTime it carries (0 if none).
func (t *template) timeFields(data []byte, ipfix bool) (out []timeField, initMs int64) {
	off := 0
	for _, f := range t.fields {
		l := int(f.length)
		if f.length == 0xffff {
			l = int(data[off])
			off++
			if l == 255 {
				l = int(binary.BigEndian.Uint16(data[off:]))
				off += 2
			}
		}
		if k := kindOf(f, l); k != 0 {
			out = append(out, timeField{off, k})
			if k == timeInit && ipfix {
				initMs = int64(binary.BigEndian.Uint64(data[off:]))
			}
		}
		off += l
	}
	return out, initMs
}

func kindOf(f fieldSpec, l int) timeKind {
	if f.pen != 0 {
		return 0
	}
	switch {
	case (f.ie == 21 || f.ie == 22) && l == 4:
		return timeUptime
	case (f.ie == 150 || f.ie == 151) && l == 4:
		return timeSeconds
	case (f.ie == 152 || f.ie == 153) && l == 8:
		return timeMillis
	case f.ie >= 154 && f.ie <= 157 && l == 8:
		return timeNTP
	case f.ie == 160 && l == 8:
		return timeInit
	}
	return 0
}

// clock is what a datagram's times are: its export time, and the
// simulated exporter's uptime and boot time (all ms).
type clock struct {
	exportMs, uptimeMs, bootMs int64
}

// retime writes the record's time fields into b (a copy of the record).
// Uptime fields are moved only when the record's uptime was known.
func retime(b []byte, times []timeField, c clock, exportMs int64, up uint32, hasUp bool) {
	shift := c.exportMs - exportMs
	for _, t := range times {
		p := b[t.off:]
		switch t.kind {
		case timeUptime:
			if hasUp {
				age := int64(up) - int64(binary.BigEndian.Uint32(p))
				binary.BigEndian.PutUint32(p, uint32(c.uptimeMs-age))
			}
		case timeSeconds:
			binary.BigEndian.PutUint32(p, uint32(int64(binary.BigEndian.Uint32(p))+shift/1000))
		case timeMillis:
			binary.BigEndian.PutUint64(p, uint64(int64(binary.BigEndian.Uint64(p))+shift))
		case timeNTP:
			binary.BigEndian.PutUint64(p, uint64(int64(binary.BigEndian.Uint64(p))+shift*(1<<32)/1000))
		case timeInit:
			binary.BigEndian.PutUint64(p, uint64(c.bootMs))
		}
	}
}
