// Package flowtest makes flows for tests.
package flowtest

import (
	"math/rand/v2"
	"reflect"
	"strconv"

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
