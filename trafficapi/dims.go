package trafficapi

import (
	"fmt"
	"net/netip"
	"strconv"
)

// The dimensions a request may group by. Every SQL identifier and
// expression of this package comes from these tables and from sources:
// a request picks an entry by its name, never writes SQL.

type colKind int

const (
	kString colKind = iota // scanned as a string
	kAddr                  // IPv6NumToString(...): a string, shown without the IPv4 mapping
	kUint                  // toUInt64(...)
)

// keyCol is one field of a row's key: its JSON name and the SQL that
// reads it in a GROUP BY query over group.
type keyCol struct {
	name string
	expr string
	kind colKind
}

type dimension struct {
	// group are the columns grouped by; they identify a key.
	group []string
	// cols are the key's fields as the answer shows them.
	cols []keyCol
	// rawOnly: the rollups do not keep it (addresses and ports).
	rawOnly bool
	// label formats a key for people.
	label func(k map[string]any) string
}

// Addresses, exporters and interfaces are per tenant (MSP customers reuse
// RFC 1918 space), so their keys hold the tenant; ports, protocols and AS
// numbers mean the same in every tenant.
var tenantCol = keyCol{"tenant", "toString(tenant)", kString}

func addressDim(col string) dimension {
	return dimension{
		group:   []string{"tenant", col},
		cols:    []keyCol{tenantCol, {"address", "IPv6NumToString(" + col + ")", kAddr}},
		rawOnly: true,
		label:   func(k map[string]any) string { return k["address"].(string) },
	}
}

func portDim(col string) dimension {
	return dimension{
		group:   []string{col},
		cols:    []keyCol{{"port", "toUInt64(" + col + ")", kUint}},
		rawOnly: true,
		label:   func(k map[string]any) string { return strconv.FormatUint(k["port"].(uint64), 10) },
	}
}

func asDim(col string) dimension {
	return dimension{
		group: []string{col},
		cols:  []keyCol{{"as", "toUInt64(" + col + ")", kUint}},
		label: func(k map[string]any) string { return "AS" + strconv.FormatUint(k["as"].(uint64), 10) },
	}
}

// exporterCols name an exporter by its latest name in the range.
var exporterCols = []keyCol{
	tenantCol,
	{"exporter_address", "IPv6NumToString(exporter_address)", kAddr},
	{"exporter_name", "toString(argMax(exporter_name, time_received))", kString},
}

func exporterLabel(k map[string]any) string {
	if n := k["exporter_name"].(string); n != "" {
		return n
	}
	return k["exporter_address"].(string)
}

func interfaceDim(side string) dimension {
	return dimension{
		group: []string{"tenant", "exporter_address", side + "_if_index"},
		cols: append(append([]keyCol(nil), exporterCols...),
			keyCol{"if_index", "toUInt64(" + side + "_if_index)", kUint},
			keyCol{"if_name", "toString(argMax(" + side + "_if_name, time_received))", kString},
			keyCol{"if_description", "toString(argMax(" + side + "_if_description, time_received))", kString},
		),
		label: func(k map[string]any) string {
			name := k["if_name"].(string)
			if name == "" {
				name = "ifIndex " + strconv.FormatUint(k["if_index"].(uint64), 10)
			}
			return exporterLabel(k) + " " + name
		},
	}
}

var dimensions = map[string]dimension{
	"src_address": addressDim("src_address"),
	"dst_address": addressDim("dst_address"),
	"src_port":    portDim("src_port"),
	"dst_port":    portDim("dst_port"),
	"protocol": {
		group: []string{"ip_protocol"},
		cols:  []keyCol{{"ip_protocol", "toUInt64(ip_protocol)", kUint}},
		label: func(k map[string]any) string { return k["protocol_name"].(string) },
	},
	"src_as":        asDim("src_as"),
	"dst_as":        asDim("dst_as"),
	"in_interface":  interfaceDim("in"),
	"out_interface": interfaceDim("out"),
	"exporter": {
		group: []string{"tenant", "exporter_address"},
		cols:  exporterCols,
		label: exporterLabel,
	},
}

// dimensionNames in the order the documentation lists them.
var dimensionNames = []string{"src_address", "dst_address", "src_port", "dst_port", "protocol", "src_as", "dst_as", "in_interface", "out_interface", "exporter"}

// orders map the order parameter to the alias of the summed column.
var orders = map[string]string{"bytes": "v_bytes", "packets": "v_packets", "flows": "v_flows"}

// orderSums map the order parameter to the aggregate ordered by where
// no alias is in scope (the subquery of a split series).
var orderSums = map[string]func(s source) string{
	"bytes":   func(source) string { return "sum(bytes_scaled)" },
	"packets": func(source) string { return "sum(packets_scaled)" },
	"flows":   func(s source) string { return s.flows },
}

// protocolNames of the IP protocols people look for; others are shown
// by number.
var protocolNames = map[uint64]string{
	1: "icmp", 2: "igmp", 4: "ipip", 6: "tcp", 17: "udp", 41: "ipv6", 47: "gre", 50: "esp", 51: "ah",
	58: "icmpv6", 89: "ospf", 103: "pim", 112: "vrrp", 132: "sctp",
}

func protocolName(n uint64) string {
	if s, ok := protocolNames[n]; ok {
		return s
	}
	return "proto " + strconv.FormatUint(n, 10)
}

// finishKey turns scanned values into the answer's key: addresses
// without their IPv4 mapping, protocols with their names.
func finishKey(d dimension, vals []any) map[string]any {
	k := make(map[string]any, len(d.cols)+1)
	for i, c := range d.cols {
		switch c.kind {
		case kAddr:
			k[c.name] = showAddr(*vals[i].(*string))
		case kUint:
			k[c.name] = *vals[i].(*uint64)
		default:
			k[c.name] = *vals[i].(*string)
		}
	}
	if p, ok := k["ip_protocol"]; ok {
		k["protocol_name"] = protocolName(p.(uint64))
	}
	return k
}

func scanDest(d dimension) []any {
	dest := make([]any, len(d.cols))
	for i, c := range d.cols {
		if c.kind == kUint {
			dest[i] = new(uint64)
		} else {
			dest[i] = new(string)
		}
	}
	return dest
}

// showAddr prints an address as people write it: IPv4 unmapped.
func showAddr(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	return a.Unmap().String()
}

// keyID identifies a key within an answer (the series of a split).
func keyID(d dimension, k map[string]any) string {
	id := ""
	for _, c := range d.cols {
		if c.kind == kString && c.name != "tenant" {
			continue // names are not part of the identity
		}
		id += fmt.Sprint(k[c.name]) + "\x00"
	}
	return id
}
