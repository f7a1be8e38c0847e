package trafficapi

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/dbapi"
)

type filterKind int

const (
	fAddr  filterKind = iota // addresses or CIDR prefixes
	fUint                    // integers up to max
	fProto                   // IP protocol numbers or names
	fEnum                    // one of values, bound as strings
)

// filter is a query parameter that narrows the flows read. A row matches
// when any of cols matches any of the values given.
type filter struct {
	param   string
	cols    []string
	kind    filterKind
	max     uint64   // fUint
	values  []string // fEnum; fUint when set: the values allowed
	rawOnly bool
	doc     string
}

// maxFilterValues bounds the values of one filter (a, b, c or repeated).
const maxFilterValues = 32

var filters = []filter{
	{param: "exporter", cols: []string{"exporter_address"}, kind: fAddr, doc: "exporter addresses or prefixes"},
	{param: "in_if_index", cols: []string{"in_if_index"}, kind: fUint, max: 1<<32 - 1, doc: "input ifIndexes"},
	{param: "out_if_index", cols: []string{"out_if_index"}, kind: fUint, max: 1<<32 - 1, doc: "output ifIndexes"},
	{param: "in_if_boundary", cols: []string{"in_if_boundary"}, kind: fEnum, values: []string{"external", "internal"}, doc: "input interface boundary"},
	{param: "out_if_boundary", cols: []string{"out_if_boundary"}, kind: fEnum, values: []string{"external", "internal"}, doc: "output interface boundary"},
	{param: "direction", cols: []string{"direction"}, kind: fEnum, values: []string{"ingress", "egress", "unknown"}, doc: "flow direction as exported"},
	{param: "protocol", cols: []string{"ip_protocol"}, kind: fProto, doc: "IP protocols, by number or name"},
	{param: "ip_version", cols: []string{"ip_version"}, kind: fUint, max: 255, values: []string{"4", "6"}, doc: "IP version"},
	{param: "src_as", cols: []string{"src_as"}, kind: fUint, max: 1<<32 - 1, doc: "source AS numbers"},
	{param: "dst_as", cols: []string{"dst_as"}, kind: fUint, max: 1<<32 - 1, doc: "destination AS numbers"},
	{param: "src_address", cols: []string{"src_address"}, kind: fAddr, rawOnly: true, doc: "source addresses or prefixes"},
	{param: "dst_address", cols: []string{"dst_address"}, kind: fAddr, rawOnly: true, doc: "destination addresses or prefixes"},
	{param: "address", cols: []string{"src_address", "dst_address"}, kind: fAddr, rawOnly: true, doc: "source or destination addresses or prefixes"},
	{param: "src_port", cols: []string{"src_port"}, kind: fUint, max: 65535, rawOnly: true, doc: "source ports"},
	{param: "dst_port", cols: []string{"dst_port"}, kind: fUint, max: 65535, rawOnly: true, doc: "destination ports"},
	{param: "port", cols: []string{"src_port", "dst_port"}, kind: fUint, max: 65535, rawOnly: true, doc: "source or destination ports"},
}

func filterParams() []string {
	out := make([]string, len(filters))
	for i, f := range filters {
		out[i] = f.param
	}
	return out
}

// protocolNumbers are protocolNames reversed, for the protocol filter.
var protocolNumbers = func() map[string]uint64 {
	m := make(map[string]uint64, len(protocolNames))
	for n, s := range protocolNames {
		m[s] = n
	}
	return m
}()

// conditions are the SQL conditions of the filters a request gives, with
// their bound arguments; raw names the first filter only raw flows have.
type conditions struct {
	sql  []string
	args []any
	raw  string
}

func parseFilters(q *api.Query) conditions {
	var out conditions
	for _, f := range filters {
		text := q.String(f.param)
		if text == "" {
			continue
		}
		vals := strings.Split(text, ",")
		if len(vals) > maxFilterValues {
			q.Failf("%s: %d values, at most %d", f.param, len(vals), maxFilterValues)
			continue
		}
		var ors []string
		ok := true
		for _, v := range vals {
			cond, args, err := f.condition(strings.TrimSpace(v))
			if err != nil {
				q.Failf("%s: %v", f.param, err)
				ok = false
				break
			}
			ors = append(ors, cond)
			out.args = append(out.args, args...)
		}
		if !ok {
			continue
		}
		out.sql = append(out.sql, "("+strings.Join(ors, " OR ")+")")
		if f.rawOnly && out.raw == "" {
			out.raw = "the filter " + f.param
		}
	}
	return out
}

// ipLiteral stands for an address bound as text in the SQL of a
// condition; where replaces it with the engine's conversion (ipSQL).
const ipLiteral = "{ip}"

// ipSQL converts an address bound as text to the column type: IPv6 on
// current servers (a FixedString(16) constant compared with a key column
// of type IPv6 is parsed as text there and fails), FixedString(16) on
// 18.16, which has no IPv6 type.
func ipSQL(caps dbapi.Capabilities) string {
	if caps.IPv6 {
		return "toIPv6(?)"
	}
	return "toFixedString(IPv6StringToNum(?), 16)"
}

// condition is one value's SQL over every column of f, and its arguments.
func (f filter) condition(v string) (string, []any, error) {
	var ors []string
	var args []any
	switch f.kind {
	case fAddr:
		p, err := parsePrefix(v)
		if err != nil {
			return "", nil, err
		}
		for _, col := range f.cols {
			if p.IsSingleIP() {
				ors = append(ors, col+" = "+ipLiteral)
				args = append(args, p.Addr().String())
			} else {
				ors = append(ors, col+" BETWEEN "+ipLiteral+" AND "+ipLiteral)
				args = append(args, p.Addr().String(), lastAddr(p).String())
			}
		}
	case fUint, fProto:
		n, err := f.number(v)
		if err != nil {
			return "", nil, err
		}
		for _, col := range f.cols {
			ors = append(ors, col+" = ?")
			args = append(args, n)
		}
	case fEnum:
		if !slices.Contains(f.values, v) {
			return "", nil, fmt.Errorf("%q is not one of %s", short(v), strings.Join(f.values, ", "))
		}
		for _, col := range f.cols {
			ors = append(ors, col+" = ?")
			args = append(args, v)
		}
	}
	return strings.Join(ors, " OR "), args, nil
}

func (f filter) number(v string) (uint64, error) {
	if f.kind == fProto {
		if n, ok := protocolNumbers[strings.ToLower(v)]; ok {
			return n, nil
		}
		n, err := strconv.ParseUint(v, 10, 8)
		if err != nil {
			return 0, fmt.Errorf("%q is neither a protocol number 0..255 nor a name (tcp, udp, icmp, icmpv6, gre, esp, ...)", short(v))
		}
		return n, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > f.max || (f.values != nil && !slices.Contains(f.values, v)) {
		if f.values != nil {
			return 0, fmt.Errorf("%q is not one of %s", short(v), strings.Join(f.values, ", "))
		}
		return 0, fmt.Errorf("%q is not an integer in 0..%d", short(v), f.max)
	}
	return n, nil
}

// parsePrefix reads an address or a CIDR prefix; IPv4 is mapped into
// IPv6, as the columns store it.
func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		pp, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("%q is not an address or a CIDR prefix", short(s))
		}
		p = pp
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return p, fmt.Errorf("%q is not an address or a CIDR prefix", short(s))
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return flow.MappedPrefix(p), nil
}

// lastAddr is the highest address of p (p masked, 16 bytes).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom16(b)
}

// short keeps echoed input short in messages.
func short(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
