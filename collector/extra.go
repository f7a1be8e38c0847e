package collector

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/schema"
)

// ExtraField maps one information element, which the fixed set of
// decoded fields leaves out, to a column of the flows table of its own.
type ExtraField struct {
	// Column is the flows column the mapping creates (and keeps: removing
	// the mapping never drops it).
	Column string `mapstructure:"column" yaml:"column"`
	// IE is the information element ID, without the enterprise bit; with
	// PEN 0, 32768 up are NetFlow v9 vendor field types (Cisco ASA's NSEL
	// 40001, say), which v9 numbers in the same space.
	IE uint16 `mapstructure:"ie" yaml:"ie"`
	// PEN is the enterprise number of an enterprise-specific element
	// (IPFIX only: NetFlow v9 has none); 0 for IANA elements.
	PEN uint32 `mapstructure:"pen" yaml:"pen"`
	// Type is how the value is read and stored: see flow.ExtraKindNames.
	Type string `mapstructure:"type" yaml:"type"`
}

// MaxExtraFields is how many mappings fit the slots of flow.Flow.
const MaxExtraFields = flow.ExtraSlots + flow.ExtraAddrSlots

var columnName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// validateExtraFields names every wrong key of the mappings.
func validateExtraFields(fs []ExtraField) []error {
	var errs []error
	if len(fs) > MaxExtraFields {
		errs = append(errs, fmt.Errorf("extra_fields: %d mappings, at most %d (%d numbers and %d addresses) fit a flow",
			len(fs), MaxExtraFields, flow.ExtraSlots, flow.ExtraAddrSlots))
	}
	fixedCols := schema.Flows.Names()
	columns := map[string]int{}
	elements := map[penIE]int{}
	var kinds []flow.ExtraKind
	for i, f := range fs {
		key := fmt.Sprintf("extra_fields[%d]", i)
		switch {
		case !columnName.MatchString(f.Column):
			errs = append(errs, fmt.Errorf("%s.column: %q is not a column name (%s)", key, f.Column, columnName))
		case slices.Contains(fixedCols, f.Column):
			errs = append(errs, fmt.Errorf("%s.column: %q is a fixed column of flows", key, f.Column))
		case columns[f.Column] > 0:
			errs = append(errs, fmt.Errorf("%s.column: %q is mapped already by extra_fields[%d]", key, f.Column, columns[f.Column]-1))
		default:
			columns[f.Column] = i + 1
		}
		k := penIE{pen: f.PEN, ie: f.IE}
		switch col, fixed := fixedColumn(f.PEN, f.IE); {
		case f.IE == 0:
			errs = append(errs, fmt.Errorf("%s.ie: 0 is no element (1..32767, or a NetFlow v9 vendor type 32768..65535 with pen 0)", key))
		case f.IE > 0x7fff && f.PEN != 0:
			errs = append(errs, fmt.Errorf("%s.ie: %d is outside 1..32767 for an enterprise element (the top bit of an IPFIX field type is the enterprise bit; 32768 up are NetFlow v9 vendor types, pen 0)", key, f.IE))
		case fixed:
			errs = append(errs, fmt.Errorf("%s.ie: pen %d ie %d is decoded already, into column %s", key, f.PEN, f.IE, col))
		case elements[k] > 0:
			errs = append(errs, fmt.Errorf("%s.ie: pen %d ie %d is mapped already by extra_fields[%d]", key, f.PEN, f.IE, elements[k]-1))
		default:
			elements[k] = i + 1
		}
		kind, ok := flow.ParseExtraKind(f.Type)
		if !ok {
			errs = append(errs, fmt.Errorf("%s.type: %q is not one of %s", key, f.Type, strings.Join(flow.ExtraKindNames(), ", ")))
		}
		kinds = append(kinds, kind)
	}
	if _, ok := flow.LayoutExtra(kinds); !ok && len(fs) <= MaxExtraFields {
		errs = append(errs, fmt.Errorf("extra_fields: at most %d are of type ip and at most %d of the other types", flow.ExtraAddrSlots, flow.ExtraSlots))
	}
	return errs
}

// ExtraColumns are the mapped columns of a validated configuration, with
// their slots: what schema.FlowsWith adds to the flows table and what the
// decoder fills.
func (c Config) ExtraColumns() []flow.ExtraColumn {
	kinds := make([]flow.ExtraKind, len(c.ExtraFields))
	for i, f := range c.ExtraFields {
		kinds[i], _ = flow.ParseExtraKind(f.Type)
	}
	slots, _ := flow.LayoutExtra(kinds)
	cols := make([]flow.ExtraColumn, len(c.ExtraFields))
	for i, f := range c.ExtraFields {
		cols[i] = flow.ExtraColumn{Name: f.Column, Kind: kinds[i], Slot: slots[i]}
	}
	return cols
}

type penIE struct {
	pen uint32
	ie  uint16
}

// extraSlot is where a mapped element goes: its kind and slot, as a
// compiled template has them for its mapped fields.
type extraSlot struct {
	kind flow.ExtraKind
	slot uint8
}

// compileExtra indexes validated mappings by element for compileTemplate.
func compileExtra(fs []ExtraField) map[penIE]extraSlot {
	if len(fs) == 0 {
		return nil
	}
	m := make(map[penIE]extraSlot, len(fs))
	for i, c := range (Config{ExtraFields: fs}).ExtraColumns() {
		m[penIE{pen: fs[i].PEN, ie: fs[i].IE}] = extraSlot{kind: c.Kind, slot: uint8(c.Slot)}
	}
	return m
}

// storeExtra stores the value of a mapped field. Values of the wrong
// length for their kind are left out, as the fixed set leaves out an IPv4
// address that is not 4 bytes; integers keep their low bytes, as the
// fixed set narrows them.
func storeExtra(f *flow.Flow, x extraSlot, v []byte) {
	switch x.kind {
	case flow.ExtraIP:
		if len(v) == 4 || len(v) == 16 {
			f.ExtraAddr[x.slot] = flow.AddrFromSlice(v)
		}
	case flow.ExtraUint8:
		f.Extra[x.slot] = beUint(v) & 0xff
	case flow.ExtraUint16:
		f.Extra[x.slot] = beUint(v) & 0xffff
	case flow.ExtraUint32:
		f.Extra[x.slot] = beUint(v) & 0xffffffff
	case flow.ExtraUint64:
		f.Extra[x.slot] = beUint(v)
	case flow.ExtraMAC:
		f.Extra[x.slot] = uint64(flow.MACFromSlice(v))
	case flow.ExtraMPLSLabel:
		// IE 70-79 are label stack entries, 3 bytes (RFC 7012: the label
		// and the TC and S bits, without the TTL): the label is the top 20 bits.
		if len(v) >= 3 {
			f.Extra[x.slot] = uint64(v[0])<<12 | uint64(v[1])<<4 | uint64(v[2])>>4
		}
	}
}

// fixedColumns are the elements the fixed set decodes from data records
// (decodeFlowRecord, decodeTime), each with the column that holds it, for
// the errors of mappings of them and for counting the fields nothing
// decodes. TestFixedColumnsAreWhatIsDecoded holds this table to the decoder.
var fixedColumns = map[uint16]string{
	ieOctetDeltaCount: "bytes", iePacketDeltaCount: "packets",
	ieOctetTotalCount: "bytes", iePacketTotalCount: "packets",
	iePostOctetDeltaCount: "bytes", iePostPacketDeltaCount: "packets",
	iePostOctetTotalCount: "bytes", iePostPacketTotalCount: "packets",
	ieLayer2OctetDeltaCount: "bytes", ieLayer2OctetTotalCount: "bytes",
	ieInitiatorOctets: "bytes", ieInitiatorPackets: "packets",
	ieResponderOctets: "bytes (of the reverse flow)", ieResponderPackets: "packets (of the reverse flow)",
	ieProtocolIdentifier: "ip_protocol", ieIPClassOfService: "tos", ieIPDiffServCodePoint: "tos",
	ieTCPControlBits: "tcp_flags", ieSourceTransportPort: "src_port", ieDestinationTransportPort: "dst_port",
	ieSourceIPv4Address: "src_address", ieDestinationIPv4Address: "dst_address",
	ieSourceIPv6Address: "src_address", ieDestinationIPv6Address: "dst_address",
	ieIPNextHopIPv4Address: "next_hop", ieIPNextHopIPv6Address: "next_hop",
	ieBGPNextHopIPv4Address: "next_hop", ieBGPNextHopIPv6Address: "next_hop",
	ieSourceIPv4PrefixLength: "src_mask", ieSourceIPv6PrefixLength: "src_mask",
	ieDestinationIPv4PrefixLength: "dst_mask", ieDestinationIPv6PrefixLength: "dst_mask",
	ieIngressInterface: "in_if_index", ieEgressInterface: "out_if_index",
	ieIngressVRFID: "in_vrf_id", ieEgressVRFID: "out_vrf_id",
	ieBGPSourceAsNumber: "src_as", ieBGPDestinationAsNumber: "dst_as",
	ieFlowLabelIPv6:    "flow_label",
	ieICMPTypeCodeIPv4: "icmp_type, icmp_code", ieICMPTypeCodeIPv6: "icmp_type, icmp_code",
	ieICMPTypeIPv4: "icmp_type", ieICMPTypeIPv6: "icmp_type", ieICMPCodeIPv4: "icmp_code", ieICMPCodeIPv6: "icmp_code",
	ieSourceMacAddress: "src_mac", iePostSourceMacAddress: "src_mac",
	ieDestinationMacAddress: "dst_mac", iePostDestinationMacAddress: "dst_mac",
	ieVlanID: "src_vlan", ieDot1qVlanID: "src_vlan", iePostVlanID: "dst_vlan", iePostDot1qVlanID: "dst_vlan",
	ieIPVersion: "ip_version", ieFlowDirection: "direction",
	ieSamplingInterval: "sampling_rate", ieSamplerRandomInterval: "sampling_rate",
	ieSamplingPacketInterval: "sampling_rate", ieSamplingPacketSpace: "sampling_rate",
	ieSamplerID: "sampler_id", ieSelectorID: "sampler_id",
	ieFlowStartSeconds: "flow_start", ieFlowStartMilliseconds: "flow_start",
	ieFlowStartMicroseconds: "flow_start", ieFlowStartNanoseconds: "flow_start",
	ieFlowStartSysUpTime: "flow_start", ieFlowStartDeltaMicroseconds: "flow_start",
	ieFlowEndSeconds: "flow_end", ieFlowEndMilliseconds: "flow_end",
	ieFlowEndMicroseconds: "flow_end", ieFlowEndNanoseconds: "flow_end",
	ieFlowEndSysUpTime: "flow_end", ieFlowEndDeltaMicroseconds: "flow_end",
	ieSystemInitTimeMilliseconds:  "flow_start, flow_end",
	ieObservationTimeSeconds:      "flow_start, flow_end",
	ieObservationTimeMilliseconds: "flow_start, flow_end",
	ieObservationTimeMicroseconds: "flow_start, flow_end",
	ieObservationTimeNanoseconds:  "flow_start, flow_end",
}

// fixedReverseColumns are the RFC 5103 reverse elements decodeReverse
// decodes (besides the times), into the reverse flow.
var fixedReverseColumns = map[uint16]string{
	ieOctetDeltaCount: "bytes", iePacketDeltaCount: "packets",
	ieOctetTotalCount: "bytes", iePacketTotalCount: "packets",
	iePostOctetDeltaCount: "bytes", iePostPacketDeltaCount: "packets",
	iePostOctetTotalCount: "bytes", iePostPacketTotalCount: "packets",
	ieLayer2OctetDeltaCount: "bytes", ieLayer2OctetTotalCount: "bytes",
	ieTCPControlBits: "tcp_flags",
}

// fixedColumn is the column the fixed set decodes element (pen, ie) into.
func fixedColumn(pen uint32, ie uint16) (string, bool) {
	switch pen {
	case 0:
		c, ok := fixedColumns[ie]
		return c, ok
	case penReverse:
		if c, ok := fixedReverseColumns[ie]; ok {
			return c + " (of the reverse flow)", true
		}
		// decodeReverse reads the times as decodeTime does.
		switch c := fixedColumns[ie]; c {
		case "flow_start", "flow_end", "flow_start, flow_end":
			return c + " (of the reverse flow)", true
		}
	}
	return "", false
}
