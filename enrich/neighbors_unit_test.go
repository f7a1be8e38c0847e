package enrich

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/enrich/snmp"
	"github.com/flowhouse/flowhouse/flow"
)

func TestLocalPortMappingOrder(t *testing.T) {
	ifaces := map[uint32]*Interface{
		2:     {Index: 2, Name: "veth-a", Descr: "veth-a"},
		10101: {Index: 10101, Name: "Gi1/0/1", Descr: "GigabitEthernet1/0/1"},
		10103: {Index: 10103, Name: "Gi1/0/3", Descr: "GigabitEthernet1/0/3", Alias: "printer"},
		522:   {Index: 522, Name: "ge-0/0/1", Descr: "ge-0/0/1"},
		600:   {Index: 600, Name: "xe-0/0/0", Descr: "xe-0/0/0"},
	}
	nb := snmp.LinkNeighbors{
		LocalPorts: map[uint32]snmp.LLDPLocalPort{
			1:   {Num: 1, IDSubtype: "interfaceName", ID: "Gi1/0/1"},
			3:   {Num: 3, IDSubtype: "local", ID: "3"},
			4:   {Num: 4, IDSubtype: "local", ID: "ge-0/0/1"},
			5:   {Num: 5, IDSubtype: "macAddress", ID: "00:01", Desc: "printer"},
			7:   {Num: 7, IDSubtype: "interfaceName", ID: "xe-0/0/0"}, // named: wins over its bridge port
			9:   {Num: 9, IDSubtype: "local", ID: "9"},
			2:   {Num: 2, IDSubtype: "interfaceName", ID: "veth-a"},
			522: {Num: 522, IDSubtype: "local", ID: "x"},
		},
		BridgePorts: map[uint32]uint32{3: 10103, 7: 10101, 9: 4242},
	}
	m := localPortMapper{ifaces: ifaces, nbrs: nb}
	for _, tc := range []struct {
		port, want uint32
		reason     string
	}{
		{1, 10101, ""},          // lldpLocPortId interfaceName = ifName
		{2, 2, ""},              // lldpd: the ifIndex and its name agree
		{3, 10103, ""},          // bridge port
		{4, 522, ""},            // local ID = ifName
		{5, 10103, ""},          // lldpLocPortDesc = ifAlias
		{7, 600, ""},            // name before bridge port
		{522, 522, ""},          // nothing else matches: the port number is an ifIndex
		{9, 0, unmappedNoMatch}, // bridge port to an unknown ifIndex
		{60, 0, unmappedUnknownPort},
	} {
		if got, reason := m.ifIndex(tc.port); got != tc.want || reason != tc.reason {
			t.Errorf("port %d: ifIndex %d (%q), want %d (%q)", tc.port, got, reason, tc.want, tc.reason)
		}
	}
}

func TestRemoteExporterLink(t *testing.T) {
	e := &Enricher{}
	add := func(addr, tenant, cfgName, sysName string) {
		a := netip.MustParseAddr(addr)
		x := &exporter{addr: flow.AddrFromNetip(a), ip: a, tenant: tenant, cfgName: cfgName}
		x.sysName.Store(&sysName)
		e.exporters.Store(x.addr, x)
	}
	add("10.0.0.1", "t", "", "core1.example.net")
	add("10.0.0.9", "t", "", "Core1")
	add("10.0.0.2", "t", "edge2", "")
	add("10.0.0.3", "other", "", "sw3")
	add("10.0.0.5", "t", "", "sw5.example.net")
	add("10.0.0.4", "t", "", "sw5.example.org")
	for _, tc := range []struct {
		mgmt, name, want string
	}{
		{"10.0.0.2", "whatever", "10.0.0.2"},  // the address first
		{"", "CORE1.EXAMPLE.NET", "10.0.0.1"}, // full name, any case, before a short match
		{"", "core1", "10.0.0.9"},             // exact name beats a domain-stripped one
		{"", "edge2.example.net", "10.0.0.2"}, // configured name, domain stripped
		{"", "sw5", "10.0.0.4"},               // two short matches: the lowest address
		{"10.0.0.3", "sw3", ""},               // another tenant's
		{"", "", ""},
	} {
		var mgmt netip.Addr
		if tc.mgmt != "" {
			mgmt = netip.MustParseAddr(tc.mgmt)
		}
		got := e.remoteExporter("t", mgmt, tc.name)
		if s := map[bool]string{true: got.String(), false: ""}[got.IsValid()]; s != tc.want {
			t.Errorf("%s %q: %q, want %q", tc.mgmt, tc.name, s, tc.want)
		}
	}
}

func TestDiffNeighbors(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	now := t0.Add(10 * time.Minute)
	n := func(idx uint32, proto, chassis, name string) *LinkNeighbor {
		return &LinkNeighbor{LocalIfIndex: idx, Protocol: proto, ChassisID: chassis, SystemName: name, PortID: "p1", FirstSeen: t0, Capabilities: []string{"bridge"}}
	}
	prev := map[linkKey]*LinkNeighbor{}
	for _, l := range []*LinkNeighbor{n(1, "lldp", "aa", "sw-b"), n(2, "lldp", "bb", "sw-c"), n(3, "cdp", "sw-d", "sw-d"), n(4, "lldp", "cc", "sw-e")} {
		prev[l.key()] = l
	}
	written := map[linkKey]int64{}
	for k := range prev {
		written[k] = now.Add(-time.Minute).UnixMilli()
	}
	written[linkKey{4, "lldp", "cc"}] = now.Add(-2 * time.Hour).UnixMilli()
	renamed := n(1, "lldp", "aa", "sw-b2")
	renamed.Capabilities = []string{"bridge", "router"}
	cur := map[linkKey]*LinkNeighbor{}
	for _, l := range []*LinkNeighbor{renamed, n(2, "lldp", "dd", "sw-x"), n(4, "lldp", "cc", "sw-e")} {
		cur[l.key()] = l
	}
	type ev struct {
		idx     uint32
		chassis string
		event   string
		fields  []string
	}
	for _, tc := range []struct {
		name     string
		answered map[string]bool
		want     []ev
	}{
		{"both MIBs answered", map[string]bool{"lldp": true, "cdp": true}, []ev{
			{1, "aa", "changed", []string{"remote_system_name", "remote_capabilities"}},
			{2, "bb", "gone", nil}, {2, "dd", "new", nil}, {3, "sw-d", "gone", nil}, {4, "cc", "refresh", nil}}},
		{"CDP-MIB silent: its neighbour is not gone", map[string]bool{"lldp": true}, []ev{
			{1, "aa", "changed", []string{"remote_system_name", "remote_capabilities"}},
			{2, "bb", "gone", nil}, {2, "dd", "new", nil}, {4, "cc", "refresh", nil}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []ev
			for _, o := range diffNeighbors(prev, cur, tc.answered, written, now, time.Hour) {
				got = append(got, ev{o.n.LocalIfIndex, o.n.ChassisID, o.event, o.fields})
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
			if renamed.FirstSeen != t0 || !renamed.LastSeen.Equal(now) {
				t.Errorf("changed neighbour: first %v last %v, want the first seen kept", renamed.FirstSeen, renamed.LastSeen)
			}
		})
	}
}
