// Package flowtest makes flows for tests.
package flowtest

import (
	"math/rand/v2"
	"reflect"
	"strconv"
	"time"

	"github.com/flowhouse/flowhouse/flow"
)

// Random fills every field of flow.Flow through reflection, so that a
// field added to flow.Flow but not kept somewhere (the flows table, a
// format) fails a round trip. Strings take distinct values per field.
func Random(r *rand.Rand, n int, distinct int) []flow.Flow {
	flows := make([]flow.Flow, n)
	for i := range flows {
		v := reflect.ValueOf(&flows[i]).Elem()
		for j := range v.NumField() {
			f := v.Field(j)
			switch f.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				f.SetInt(int64(r.Uint64()))
			case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				f.SetUint(r.Uint64())
			case reflect.String:
				f.SetString(v.Type().Field(j).Name + "-é" + strconv.Itoa(r.IntN(distinct)))
			case reflect.Array:
				fillArray(r, f)
			default:
				panic("flowtest: field " + v.Type().Field(j).Name + " of kind " + f.Kind().String())
			}
		}
	}
	return flows
}

// fillArray fills bytes (addresses) and numbers (the extra slots) of an
// array, or of an array of arrays.
func fillArray(r *rand.Rand, a reflect.Value) {
	for k := range a.Len() {
		switch e := a.Index(k); e.Kind() {
		case reflect.Array:
			fillArray(r, e)
		case reflect.Uint8:
			e.SetUint(uint64(r.IntN(256)))
		default:
			e.SetUint(r.Uint64())
		}
	}
}

// Realistic are n flows shaped like exporters' (a few exporters and
// interfaces, many addresses and ports, times of now), numbered from
// first, so that compression and the rollup views do realistic work and
// flows of different calls differ.
func Realistic(n, first int) []flow.Flow {
	now := time.Now().UnixMilli()
	fs := make([]flow.Flow, n)
	names := []string{"xe-0/0/0", "xe-0/0/1", "ae0", "ae1"}
	for j := range fs {
		i := first + j
		fs[j] = flow.Flow{
			TimeReceivedMs: now + int64(j/1000), TimeStartMs: now - 1000, TimeEndMs: now,
			Protocol: flow.ProtoIPFIX, ExporterAddr: flow.AddrFrom4([4]byte{192, 0, 2, byte(i % 4)}), ExporterPort: 4739,
			SamplingRate: 1000, Direction: flow.DirIngress, InIf: uint32(i % 16), OutIf: uint32(i % 7),
			SrcAddr: flow.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
			DstAddr: flow.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i * 7)}),
			SrcPort: uint16(i * 13), DstPort: 443, IPProto: 6, IPVersion: 4, TCPFlags: 0x18,
			SrcAS: 64500 + uint32(i%50), DstAS: 64600, Bytes: uint64(40 + i%1460), Packets: 1 + uint64(i%10),
			Tenant: "acme", ExporterName: "edge1", InIfName: names[i%4], OutIfName: names[(i+1)%4],
			InIfSpeedMbps: 10000, OutIfSpeedMbps: 100000, InIfBoundary: "external", OutIfBoundary: "internal",
		}
	}
	return fs
}
