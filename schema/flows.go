// Package schema is the flows table, written once: each column's name and
// ClickHouse type, and the flow.Flow field it holds. From this table come
// the columnar batch the store fills (on ch-go columns), the INSERT column
// list, the Native blocks written to the embedded engine and to the
// spool, and the test that the migrations create the same columns.
//
// Adding a column to flows, for a flow.Flow field the decoders or the
// enrichment fill, is one line in Flows plus one migration:
//
//	ALTER TABLE flows ADD COLUMN {{ifNotExists}}name Type AFTER previous;
//
// with the column where it stands in Flows (inserts list Flows' order,
// and TestFlowsTableIsTheSchema compares it with the table on both
// engines); then its line in the schema reference (README.md's
// "Schema"). Spool segments need nothing: they name their
// columns. Migration 0005 (in_vrf_id, out_vrf_id) is one.
//
// Columns mapped by configuration (collector.extra_fields) come after
// the fixed ones, in configuration order: FlowsWith builds that table,
// and migrations.Apply adds them to the database.
package schema

import (
	"fmt"

	"github.com/flowhouse/flowhouse/flow"
)

// The enums of the flows table, numbered as the flow package numbers
// flow.Protocol and flow.Direction (the batch sends the numbers).
var (
	ProtocolEnum  = Enum8("'unknown' = 0, 'netflow_v5' = 1, 'netflow_v9' = 2, 'ipfix' = 3, 'sflow_v5' = 4")
	DirectionEnum = Enum8("'unknown' = 0, 'ingress' = 1, 'egress' = 2")
)

// Flows is the flows table's columns that inserts fill, in insert order
// (which is the table's order: the migrations add columns where they
// stand here). Columns computed by the database (ALIAS) are not here.
var Flows = NewTable("flows", fixedFlows...)

// FlowsWith is the flows table with the mapped columns after the fixed
// ones. The error names a column that clashes with another.
func FlowsWith(extra []flow.ExtraColumn) (t *Table, err error) {
	if len(extra) == 0 {
		return Flows, nil
	}
	cols := append([]Column(nil), fixedFlows...)
	for _, x := range extra {
		c, err := Extra(x)
		if err != nil {
			return nil, err
		}
		cols = append(cols, c)
	}
	defer func() {
		// NewTable panics on a programming error of the fixed table; with
		// configured columns the same checks are the user's errors.
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("%v", r)
		}
	}()
	return NewTable("flows", cols...), nil
}

var fixedFlows = []Column{
	Millis("time_received", "TimeReceivedMs"),
	Millis("flow_start", "TimeStartMs"),
	Millis("flow_end", "TimeEndMs"),
	Span("flow_duration_ms", "flow_start", "flow_end"),
	Field("tenant", LowCardinalityString, "Tenant"),
	Field("exporter_address", IP, "ExporterAddr"),
	Field("exporter_port", UInt16, "ExporterPort"),
	Field("exporter_name", LowCardinalityString, "ExporterName"),
	Field("protocol", ProtocolEnum, "Protocol"),
	Field("observation_domain", UInt32, "ObservationDomain"),
	Field("sampler_id", UInt32, "SamplerID"),
	Field("sampling_rate", UInt32, "SamplingRate"),
	Field("direction", DirectionEnum, "Direction"),
	Field("in_if_index", UInt32, "InIf"),
	Field("in_if_name", LowCardinalityString, "InIfName"),
	Field("in_if_description", LowCardinalityString, "InIfDescription"),
	Clamped("in_if_speed_mbps", "InIfSpeedMbps"),
	Field("in_if_boundary", LowCardinalityString, "InIfBoundary"),
	Field("out_if_index", UInt32, "OutIf"),
	Field("out_if_name", LowCardinalityString, "OutIfName"),
	Field("out_if_description", LowCardinalityString, "OutIfDescription"),
	Clamped("out_if_speed_mbps", "OutIfSpeedMbps"),
	Field("out_if_boundary", LowCardinalityString, "OutIfBoundary"),
	Field("in_vrf_id", UInt32, "InVRF"),
	Field("out_vrf_id", UInt32, "OutVRF"),
	Field("src_address", IP, "SrcAddr"),
	Field("dst_address", IP, "DstAddr"),
	Field("next_hop", IP, "NextHop"),
	Field("src_port", UInt16, "SrcPort"),
	Field("dst_port", UInt16, "DstPort"),
	Field("ip_protocol", UInt8, "IPProto"),
	Field("ip_version", UInt8, "IPVersion"),
	Field("tcp_flags", UInt8, "TCPFlags"),
	Field("tos", UInt8, "ToS"),
	Field("icmp_type", UInt8, "ICMPType"),
	Field("icmp_code", UInt8, "ICMPCode"),
	Field("src_mask", UInt8, "SrcMask"),
	Field("dst_mask", UInt8, "DstMask"),
	Field("src_vlan", UInt16, "SrcVLAN"),
	Field("dst_vlan", UInt16, "DstVLAN"),
	Field("src_mac", UInt64, "SrcMAC"),
	Field("dst_mac", UInt64, "DstMAC"),
	Field("src_vendor", LowCardinalityString, "SrcVendor"),
	Field("dst_vendor", LowCardinalityString, "DstVendor"),
	Field("src_net_name", LowCardinalityString, "SrcNetName"),
	Field("src_net_role", LowCardinalityString, "SrcNetRole"),
	Field("src_net_site", LowCardinalityString, "SrcNetSite"),
	Field("dst_net_name", LowCardinalityString, "DstNetName"),
	Field("dst_net_role", LowCardinalityString, "DstNetRole"),
	Field("dst_net_site", LowCardinalityString, "DstNetSite"),
	Field("src_as", UInt32, "SrcAS"),
	Field("dst_as", UInt32, "DstAS"),
	Field("bytes", UInt64, "Bytes"),
	Field("packets", UInt64, "Packets"),
	Field("flow_label", UInt32, "FlowLabel"),
}
