package spool

import (
	"encoding/binary"
	"reflect"
	"unsafe"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/store"
)

// Format 1 is what flowhouse wrote before format 2 (the batch's Native
// block); its segments are still read, so that an upgrade replays what
// the previous version spooled. Its payload is frozen here:
//
//	fixed-width fields of flow.Flow in v1Fixed's order, each a column of
//	rows*width bytes (numbers little endian, addresses their 16 bytes)
//	string fields in v1Strings' order, each: uvarint dictionary size d,
//	d * (uvarint length, bytes), then rows indexes into the dictionary of
//	1, 2 or 4 bytes (the smallest that holds d-1)
//
// testdata/v1-*.seg are segments the format-1 encoder wrote, with the
// rows they hold.
var (
	v1Fixed = v1Fields([]v1Width{
		{"TimeReceivedMs", 8}, {"TimeStartMs", 8}, {"TimeEndMs", 8}, {"Protocol", 1}, {"ExporterAddr", 16},
		{"ExporterPort", 2}, {"ObservationDomain", 4}, {"SamplerID", 4}, {"SamplingRate", 4}, {"Direction", 1},
		{"InIf", 4}, {"OutIf", 4}, {"SrcAddr", 16}, {"DstAddr", 16}, {"NextHop", 16}, {"SrcPort", 2}, {"DstPort", 2},
		{"IPProto", 1}, {"TCPFlags", 1}, {"ToS", 1}, {"IPVersion", 1}, {"ICMPType", 1}, {"ICMPCode", 1},
		{"SrcMask", 1}, {"DstMask", 1}, {"SrcVLAN", 2}, {"DstVLAN", 2}, {"SrcMAC", 8}, {"DstMAC", 8},
		{"SrcAS", 4}, {"DstAS", 4}, {"Bytes", 8}, {"Packets", 8}, {"FlowLabel", 4},
		{"InIfSpeedMbps", 4}, {"OutIfSpeedMbps", 4}, // uint64 fields, written clamped to 32 bits
	})
	v1Strings = v1Fields([]v1Width{
		{"Tenant", 0}, {"ExporterName", 0}, {"InIfName", 0}, {"InIfDescription", 0}, {"InIfBoundary", 0},
		{"OutIfName", 0}, {"OutIfDescription", 0}, {"OutIfBoundary", 0}, {"SrcVendor", 0}, {"DstVendor", 0},
		{"SrcNetName", 0}, {"SrcNetRole", 0}, {"SrcNetSite", 0}, {"DstNetName", 0}, {"DstNetRole", 0}, {"DstNetSite", 0},
	})
)

// v1FieldsPerRow is what format 1 headers say at bytes 10-11.
const v1FieldsPerRow = 52

// v1Width is a field of flow.Flow by name and its width in format 1.
type v1Width struct {
	name  string
	width int
}

// v1Field is a field of flow.Flow as format 1 has it.
type v1Field struct {
	v1Width
	off  uintptr
	size uintptr // in flow.Flow
}

func v1Fields(ws []v1Width) []v1Field {
	fs := make([]v1Field, len(ws))
	for i, w := range ws {
		sf, ok := reflect.TypeFor[flow.Flow]().FieldByName(w.name)
		if !ok {
			panic("spool: format 1 names flow.Flow field " + w.name + ", which is gone")
		}
		fs[i] = v1Field{v1Width: w, off: sf.Offset, size: sf.Type.Size()}
	}
	return fs
}

// put sets the field of f from its format-1 bytes p.
func (fd v1Field) put(f *flow.Flow, p []byte) {
	dst := unsafe.Add(unsafe.Pointer(f), fd.off)
	if fd.width == 16 {
		copy(unsafe.Slice((*byte)(dst), 16), p[:16])
		return
	}
	var v uint64
	switch fd.width {
	case 1:
		v = uint64(p[0])
	case 2:
		v = uint64(le.Uint16(p))
	case 4:
		v = uint64(le.Uint32(p))
	default:
		v = le.Uint64(p)
	}
	switch fd.size {
	case 1:
		*(*uint8)(dst) = uint8(v)
	case 2:
		*(*uint16)(dst) = uint16(v)
	case 4:
		*(*uint32)(dst) = uint32(v)
	default:
		*(*uint64)(dst) = v
	}
}

// v1Decoder reads format-1 payloads into batches, in chunks so that its
// scratch memory stays small whatever the batch size.
type v1Decoder struct {
	flows []flow.Flow
	dicts [][]string
}

const decodeChunk = 4096

func v1IndexWidth(dictSize int) int {
	switch {
	case dictSize <= 1<<8:
		return 1
	case dictSize <= 1<<16:
		return 2
	}
	return 4
}

// v1StrCol is a string column of a format-1 payload: its indexes.
type v1StrCol struct {
	idx   []byte
	width int
}

func (c v1StrCol) index(i int) int {
	switch c.width {
	case 1:
		return int(c.idx[i])
	case 2:
		return int(le.Uint16(c.idx[2*i:]))
	}
	return int(le.Uint32(c.idx[4*i:]))
}

// strings reads the dictionaries and index arrays that start at o.
func (d *v1Decoder) strings(payload []byte, o, n int) ([]v1StrCol, error) {
	cols := make([]v1StrCol, len(v1Strings))
	d.dicts = append(d.dicts[:0], make([][]string, len(v1Strings))...)
	for k := range v1Strings {
		size, m := binary.Uvarint(payload[o:])
		if m <= 0 || size > uint64(len(payload)) || (size == 0 && n > 0) {
			return nil, corruptf("string column %d: bad dictionary size", k)
		}
		o += m
		for range size {
			l, m := binary.Uvarint(payload[o:])
			if m <= 0 || l > uint64(len(payload)-o-m) {
				return nil, corruptf("string column %d: bad string length", k)
			}
			o += m
			d.dicts[k] = append(d.dicts[k], string(payload[o:o+int(l)]))
			o += int(l)
		}
		w := v1IndexWidth(len(d.dicts[k]))
		if len(payload)-o < n*w {
			return nil, corruptf("string column %d: index truncated", k)
		}
		cols[k] = v1StrCol{payload[o : o+n*w], w}
		o += n * w
	}
	if o != len(payload) {
		return nil, corruptf("%d bytes after the last column", len(payload)-o)
	}
	return cols, nil
}

// decode appends the n rows of a format-1 payload to dst.
func (d *v1Decoder) decode(payload []byte, n int, dst *store.FlowBatch) error {
	offs := make([]int, len(v1Fixed))
	o := 0
	for k, fd := range v1Fixed {
		offs[k] = o
		o += n * fd.width
	}
	if len(payload) < o {
		return corruptf("payload too short for %d rows", n)
	}
	strs, err := d.strings(payload, o, n)
	if err != nil {
		return err
	}
	if cap(d.flows) < min(n, decodeChunk) {
		d.flows = make([]flow.Flow, min(n, decodeChunk))
	}
	defer func() {
		// Forget the strings so the decoder does not pin them.
		clear(d.flows)
		clear(d.dicts)
	}()
	for start := 0; start < n; start += decodeChunk {
		fl := d.flows[:min(decodeChunk, n-start)]
		for r := range fl {
			i := start + r
			for k, fd := range v1Fixed {
				fd.put(&fl[r], payload[offs[k]+i*fd.width:])
			}
			for k, fd := range v1Strings {
				j := strs[k].index(i)
				if j >= len(d.dicts[k]) {
					return corruptf("string column %d: index %d outside a dictionary of %d", k, j, len(d.dicts[k]))
				}
				*(*string)(unsafe.Add(unsafe.Pointer(&fl[r]), fd.off)) = d.dicts[k][j]
			}
		}
		dst.Append(fl)
	}
	return nil
}
