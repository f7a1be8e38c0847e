package store

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// encodeNative appends one block of ClickHouse's Native format: the number
// of columns and rows, then per column its name, its type and its values
// one after the other. Numbers are little-endian, strings a LEB128 length
// and the bytes, arrays the running end offsets (UInt64) followed by all
// elements.
//
// The types written are those of the Go slices, not of the table: the
// engine converts on insert (input_format_native_allow_types_conversion,
// on by default), so String fills LowCardinality(String), Int8 fills
// Enum8, and IPv6 is the 16 bytes in network order that the batch already
// holds. The engine does not check Int8 values against the enum
// (measured: 99 is stored, and reading it as the enum fails later).
func encodeNative(b []byte, names []string, values []any, rows int) ([]byte, error) {
	if len(names) != len(values) {
		return b, fmt.Errorf("native block: %d names for %d columns", len(names), len(values))
	}
	b = binary.AppendUvarint(b, uint64(len(names)))
	b = binary.AppendUvarint(b, uint64(rows))
	for i, v := range values {
		var typ string
		n := -1
		switch v := v.(type) {
		case []uint8:
			typ, n = "UInt8", len(v)
		case []int8:
			typ, n = "Int8", len(v)
		case []uint16:
			typ, n = "UInt16", len(v)
		case []uint32:
			typ, n = "UInt32", len(v)
		case []uint64:
			typ, n = "UInt64", len(v)
		case []int64:
			// Seconds since 1970: the DateTime columns.
			typ, n = "DateTime('UTC')", len(v)
		case []string:
			typ, n = "String", len(v)
		case [][16]byte:
			typ, n = "IPv6", len(v)
		case [][]string:
			typ, n = "Array(String)", len(v)
		case [][]uint32:
			typ, n = "Array(UInt32)", len(v)
		case [][]uint64:
			typ, n = "Array(UInt64)", len(v)
		default:
			return b, fmt.Errorf("native block: column %s: no encoding for %T", names[i], v)
		}
		if n != rows {
			return b, fmt.Errorf("native block: column %s has %d rows, want %d", names[i], n, rows)
		}
		b = appendString(b, names[i])
		b = appendString(b, typ)
		switch v := v.(type) {
		case []uint8:
			b = appendRaw(b, v)
		case []int8:
			b = appendRaw(b, v)
		case []uint16:
			b = appendRaw(b, v)
		case []uint32:
			b = appendRaw(b, v)
		case []uint64:
			b = appendRaw(b, v)
		case []int64:
			for _, s := range v {
				b = binary.LittleEndian.AppendUint32(b, uint32(min(max(s, 0), 1<<32-1)))
			}
		case []string:
			for _, s := range v {
				b = appendString(b, s)
			}
		case [][16]byte:
			b = appendRaw(b, v)
		case [][]string:
			b = appendOffsets(b, v)
			for _, a := range v {
				for _, s := range a {
					b = appendString(b, s)
				}
			}
		case [][]uint32:
			b = appendOffsets(b, v)
			for _, a := range v {
				b = appendRaw(b, a)
			}
		case [][]uint64:
			b = appendOffsets(b, v)
			for _, a := range v {
				b = appendRaw(b, a)
			}
		}
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendRaw appends the slice's memory: the Native encoding of fixed-size
// values on a little-endian CPU (OpenEmbedded checks).
func appendRaw[T uint8 | int8 | uint16 | uint32 | uint64 | [16]byte](b []byte, s []T) []byte {
	if len(s) == 0 {
		return b
	}
	return append(b, unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(s[0])))...)
}

func appendOffsets[T any](b []byte, arrays [][]T) []byte {
	var end uint64
	for _, a := range arrays {
		end += uint64(len(a))
		b = binary.LittleEndian.AppendUint64(b, end)
	}
	return b
}
