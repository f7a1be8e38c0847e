package store_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/store"
)

// roundTripFlows are the rows the round trips insert, on both engines: an
// IPv4 flow with every column set, an IPv6 flow, an ICMP flow and a flow
// without addresses (a non-IP sFlow sample), received in that order at
// times the tables' TTL keeps.
func roundTripFlows() []flow.Flow {
	v4 := flow.Flow{
		TimeReceivedMs: recent(123), TimeStartMs: recent(-9500), TimeEndMs: recent(-1),
		Protocol: flow.ProtoNetFlowV9, ExporterAddr: addr("192.0.2.1"), ExporterPort: 2055,
		ObservationDomain: 42, SamplerID: 3, SamplingRate: 1000, Direction: flow.DirIngress,
		InIf: 10, OutIf: 20, InVRF: 7, OutVRF: 4294967295,
		SrcAddr: addr("10.1.2.3"), DstAddr: addr("198.51.100.7"), NextHop: addr("10.1.2.254"),
		SrcPort: 51234, DstPort: 443, IPProto: 6, TCPFlags: 0x1b, ToS: 0xb8, IPVersion: 4,
		SrcMask: 24, DstMask: 22, SrcVLAN: 100, DstVLAN: 4094,
		SrcMAC: mac("00:00:5e:00:53:01"), DstMAC: mac("fe:dc:ba:98:76:54"),
		SrcAS: 64496, DstAS: 4200000000, Bytes: 1 << 40, Packets: 123456789, FlowLabel: 0,
		Tenant: "acme", ExporterName: "edge1.par", InIfName: "xe-0/0/0", InIfDescription: "Transit: ISP A",
		InIfSpeedMbps: 100000, InIfBoundary: "external", OutIfName: "ae1", OutIfDescription: "core 'quoted' \\ \x00 ünï",
		OutIfSpeedMbps: 400000, OutIfBoundary: "internal", SrcVendor: "ICANN, IANA Department", DstVendor: "",
		SrcNetName: "office", SrcNetRole: "lan", SrcNetSite: "par1", DstNetName: "transit", DstNetRole: "wan", DstNetSite: "fra2",
	}
	v6 := flow.Flow{
		TimeReceivedMs: recent(1000), Protocol: flow.ProtoSFlowV5, ExporterAddr: addr("2001:db8::2"), ExporterPort: 6343,
		SamplingRate: 1, Direction: flow.DirEgress,
		SrcAddr: addr("2001:db8::1"), DstAddr: addr("2001:db8:ffff:ffff:ffff:ffff:ffff:abcd"), NextHop: addr("fe80::1"),
		SrcPort: 53, DstPort: 33000, IPProto: 17, IPVersion: 6, FlowLabel: 0xfffff, Bytes: 90, Packets: 1, Tenant: "beta",
	}
	icmp := flow.Flow{
		TimeReceivedMs: recent(2000), Protocol: flow.ProtoIPFIX, SamplingRate: 1,
		ExporterAddr: addr("192.0.2.1"), SrcAddr: addr("192.0.2.200"), IPProto: 1, IPVersion: 4,
		ICMPType: 8, DstPort: 1, Bytes: 84, Packets: 1, Tenant: "acme",
	}
	empty := flow.Flow{TimeReceivedMs: recent(3000), DstPort: 2, Protocol: flow.ProtoUnknown}
	return []flow.Flow{v4, v6, icmp, empty}
}

// TestFlowsContract: both engines store every column of every row the
// same way, as SQL reads it. The embedded engine's round trip also scans
// every column into its Go type (TestEmbeddedInsertFlowsRoundTripsEveryColumn).
func TestFlowsContract(t *testing.T) {
	for _, engine := range []struct {
		name string
		open func(testing.TB) store.DB
	}{
		{"server", func(tb testing.TB) store.DB { db, _ := migratedDB(tb); return db }},
		{"embedded", func(tb testing.TB) store.DB { return migratedEmbedded(tb) }},
	} {
		t.Run(engine.name, func(t *testing.T) { checkFlowsContract(t, engine.open(t)) })
	}
}

func checkFlowsContract(t *testing.T, db store.DB) {
	in := roundTripFlows()
	b := store.NewFlowBatch(len(in))
	b.Append(in)
	if err := db.InsertFlows(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	utc := func(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05") }
	secs := func(ms int64) string { return strconv.FormatInt(ms/1000, 10) }
	v4 := in[0]
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{"toString(time_received, 'UTC')", []string{utc(in[0].TimeReceivedMs), utc(in[1].TimeReceivedMs), utc(in[2].TimeReceivedMs), utc(in[3].TimeReceivedMs)}},
		// Absent times are 0, which 18.16 prints as 0000-00-00 00:00:00 and
		// later versions as 1970-01-01 00:00:00: compared as numbers.
		{"toString(toUInt32(flow_start))", []string{secs(v4.TimeStartMs), "0", "0", "0"}},
		{"toString(toUInt32(flow_end))", []string{secs(v4.TimeEndMs), "0", "0", "0"}},
		{"toString(flow_duration_ms)", []string{strconv.FormatInt(v4.TimeEndMs-v4.TimeStartMs, 10), "0", "0", "0"}},
		{"tenant", []string{"acme", "beta", "acme", ""}},
		{"IPv6NumToString(exporter_address)", []string{"::ffff:192.0.2.1", "2001:db8::2", "::ffff:192.0.2.1", "::"}},
		{"toString(exporter_port)", []string{"2055", "6343", "0", "0"}},
		{"exporter_name", []string{"edge1.par", "", "", ""}},
		{"toString(protocol)", []string{"netflow_v9", "sflow_v5", "ipfix", "unknown"}},
		{"toString(observation_domain)", []string{"42", "0", "0", "0"}},
		{"toString(sampler_id)", []string{"3", "0", "0", "0"}},
		{"toString(sampling_rate)", []string{"1000", "1", "1", "0"}},
		{"toString(direction)", []string{"ingress", "egress", "unknown", "unknown"}},
		{"toString(in_if_index)", []string{"10", "0", "0", "0"}},
		{"in_if_name", []string{"xe-0/0/0", "", "", ""}},
		{"in_if_description", []string{"Transit: ISP A", "", "", ""}},
		{"toString(in_if_speed_mbps)", []string{"100000", "0", "0", "0"}},
		{"in_if_boundary", []string{"external", "", "", ""}},
		{"toString(out_if_index)", []string{"20", "0", "0", "0"}},
		{"out_if_name", []string{"ae1", "", "", ""}},
		{"out_if_description", []string{"core 'quoted' \\ \x00 ünï", "", "", ""}},
		{"toString(out_if_speed_mbps)", []string{"400000", "0", "0", "0"}},
		{"out_if_boundary", []string{"internal", "", "", ""}},
		{"toString(in_vrf_id)", []string{"7", "0", "0", "0"}},
		{"toString(out_vrf_id)", []string{"4294967295", "0", "0", "0"}},
		{"IPv6NumToString(src_address)", []string{"::ffff:10.1.2.3", "2001:db8::1", "::ffff:192.0.2.200", "::"}},
		{"IPv6NumToString(dst_address)", []string{"::ffff:198.51.100.7", "2001:db8:ffff:ffff:ffff:ffff:ffff:abcd", "::", "::"}},
		{"IPv6NumToString(next_hop)", []string{"::ffff:10.1.2.254", "fe80::1", "::", "::"}},
		{"toString(src_port)", []string{"51234", "53", "0", "0"}},
		{"toString(dst_port)", []string{"443", "33000", "1", "2"}},
		{"toString(ip_protocol)", []string{"6", "17", "1", "0"}},
		{"toString(ip_version)", []string{"4", "6", "4", "0"}},
		{"toString(tcp_flags)", []string{"27", "0", "0", "0"}},
		{"toString(tos)", []string{"184", "0", "0", "0"}},
		{"toString(icmp_type)", []string{"0", "0", "8", "0"}},
		{"toString(icmp_code)", []string{"0", "0", "0", "0"}},
		{"toString(src_mask)", []string{"24", "0", "0", "0"}},
		{"toString(dst_mask)", []string{"22", "0", "0", "0"}},
		{"toString(src_vlan)", []string{"100", "0", "0", "0"}},
		{"toString(dst_vlan)", []string{"4094", "0", "0", "0"}},
		{"MACNumToString(src_mac)", []string{"00:00:5E:00:53:01", "00:00:00:00:00:00", "00:00:00:00:00:00", "00:00:00:00:00:00"}},
		{"MACNumToString(dst_mac)", []string{"FE:DC:BA:98:76:54", "00:00:00:00:00:00", "00:00:00:00:00:00", "00:00:00:00:00:00"}},
		{"src_vendor", []string{"ICANN, IANA Department", "", "", ""}},
		{"dst_vendor", []string{"", "", "", ""}},
		{"src_net_name", []string{"office", "", "", ""}},
		{"src_net_role", []string{"lan", "", "", ""}},
		{"src_net_site", []string{"par1", "", "", ""}},
		{"dst_net_name", []string{"transit", "", "", ""}},
		{"dst_net_role", []string{"wan", "", "", ""}},
		{"dst_net_site", []string{"fra2", "", "", ""}},
		{"toString(src_as)", []string{"64496", "0", "0", "0"}},
		{"toString(dst_as)", []string{"4200000000", "0", "0", "0"}},
		{"toString(bytes)", []string{"1099511627776", "90", "84", "0"}},
		{"toString(packets)", []string{"123456789", "1", "1", "0"}},
		{"toString(flow_label)", []string{"0", "1048575", "0", "0"}},
		{"toString(bytes_scaled)", []string{"1099511627776000", "90", "84", "0"}},
		{"toString(packets_scaled)", []string{"123456789000", "1", "1", "0"}},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			got := strings1(t, db, "SELECT "+tc.expr+" FROM flows ORDER BY time_received LIMIT ?", len(tc.want))
			if !slices.Equal(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
