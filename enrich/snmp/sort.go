package snmp

import "slices"

func sortInterfaces(s []Interface) {
	slices.SortFunc(s, func(a, b Interface) int { return int(int64(a.Index) - int64(b.Index)) })
}
