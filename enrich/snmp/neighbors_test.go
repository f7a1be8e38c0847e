package snmp

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/gosnmp/gosnmp"
)

func TestChassisAndPortIDBySubtype(t *testing.T) {
	for _, tc := range []struct {
		name      string
		chassis   bool
		sub       int
		value     []byte
		wantSub   string
		want      string
		wantIP    string
		malformed string
	}{
		{"chassis mac", true, 4, []byte{0x6a, 0x76, 0x77, 0x6d, 0x11, 0x02}, "macAddress", "6a:76:77:6d:11:02", "", ""},
		{"chassis mac as text (MikroTik)", true, 4, []byte("00:04:F2:E7:05:47"), "macAddress", "00:04:f2:e7:05:47", "", ""},
		{"chassis mac of 5 octets", true, 4, []byte{1, 2, 3, 4, 5}, "macAddress", "01:02:03:04:05", "", MalformedLength},
		{"chassis IPv4", true, 5, []byte{1, 192, 0, 2, 7}, "networkAddress", "192.0.2.7", "192.0.2.7", ""},
		{"chassis IPv6", true, 5, append([]byte{2}, netip.MustParseAddr("2001:db8::1").AsSlice()...), "networkAddress", "2001:db8::1", "2001:db8::1", ""},
		{"chassis address of unknown family", true, 5, []byte{6, 1, 2, 3, 4, 5, 6}, "networkAddress", "06:01:02:03:04:05:06", "", MalformedAddress},
		{"chassis interfaceName", true, 6, []byte("Gi1/0/1"), "interfaceName", "Gi1/0/1", "", ""},
		{"chassis local", true, 7, []byte("FOC1234X0AB"), "local", "FOC1234X0AB", "", ""},
		{"chassis component binary", true, 1, []byte{0, 1, 0xff}, "chassisComponent", "00:01:ff", "", ""},
		{"chassis unknown subtype", true, 9, []byte("x"), "unknown(9)", "x", "", ""},
		{"port mac", false, 3, []byte{0, 0, 0x0c, 1, 2, 3}, "macAddress", "00:00:0c:01:02:03", "", ""},
		{"port IPv4", false, 4, []byte{1, 10, 0, 0, 1}, "networkAddress", "10.0.0.1", "", ""},
		{"port interfaceName", false, 5, []byte("veth-b"), "interfaceName", "veth-b", "", ""},
		{"port local", false, 7, []byte("522\x00"), "local", "522", "", ""},
		{"port alias", false, 1, []byte("uplink"), "interfaceAlias", "uplink", "", ""},
		{"port agentCircuitId binary", false, 6, []byte{0, 4, 0, 1}, "agentCircuitId", "00:04:00:01", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := map[string]int{}
			var sub, got, ip string
			if tc.chassis {
				var a netip.Addr
				sub, got, a = decodeChassisID(tc.sub, tc.value, bad)
				if a.IsValid() {
					ip = a.String()
				}
			} else {
				sub, got = decodePortID(tc.sub, tc.value, bad)
			}
			if sub != tc.wantSub || got != tc.want || ip != tc.wantIP {
				t.Errorf("got %q %q ip %q, want %q %q ip %q", sub, got, ip, tc.wantSub, tc.want, tc.wantIP)
			}
			want := map[string]int{}
			if tc.malformed != "" {
				want[tc.malformed] = 1
			}
			if !reflect.DeepEqual(bad, want) {
				t.Errorf("malformed %v, want %v", bad, want)
			}
		})
	}
}

func TestLLDPCapabilityBits(t *testing.T) {
	for _, tc := range []struct {
		bits []byte
		want []string
	}{
		{[]byte{}, []string{}},
		{[]byte{0x28, 0x00}, []string{"bridge", "router"}},
		{[]byte{0x80}, []string{"other"}},
		{[]byte{0x04, 0x00}, []string{"telephone"}},
		{[]byte{0x01, 0xe0}, []string{"stationOnly", "cVLAN", "sVLAN", "twoPortMACRelay"}},
		{[]byte{0x40, 0x10}, []string{"repeater"}}, // bit 11 is reserved
	} {
		if got := LLDPCapabilities(tc.bits); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("% x: %v, want %v", tc.bits, got, tc.want)
		}
	}
}

func TestCDPCapabilitiesAndAddress(t *testing.T) {
	for _, tc := range []struct {
		bits []byte
		want []string
		ok   bool
	}{
		{[]byte{0, 0, 0, 0x28}, []string{"switch", "igmp"}, true},
		{[]byte{0, 0, 0, 0x29}, []string{"router", "switch", "igmp"}, true},
		{[]byte{0, 0, 0x01, 0x90}, []string{"stationOnly", "telephone", "remotelyManaged"}, true},
		{[]byte{0, 0, 0, 0x42}, []string{"bridge", "repeater"}, true},
		{[]byte{0x28}, []string{}, false},
	} {
		got, ok := CDPCapabilities(tc.bits)
		if !reflect.DeepEqual(got, tc.want) || ok != tc.ok {
			t.Errorf("% x: %v %v, want %v %v", tc.bits, got, ok, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		typ  int
		b    []byte
		want string
	}{
		{1, []byte{10, 0, 1, 2}, "10.0.1.2"},
		{1, netip.MustParseAddr("2001:db8::2").AsSlice(), "2001:db8::2"},
		{1, []byte{10, 0, 1}, ""},
		{2, []byte{10, 0, 1, 2}, ""}, // decnet
	} {
		a, ok := CDPAddress(tc.typ, tc.b)
		if got := map[bool]string{true: a.String(), false: ""}[ok]; got != tc.want {
			t.Errorf("type %d % x: %q, want %q", tc.typ, tc.b, got, tc.want)
		}
	}
}

func TestManagementAddressIndex(t *testing.T) {
	for _, tc := range []struct {
		name string
		idx  []uint32
		addr string
		port uint32
		ok   bool
	}{
		{"IPv4", []uint32{3, 100, 2, 1, 1, 4, 192, 0, 2, 2}, "192.0.2.2", 2, true},
		{"IPv6", append([]uint32{3, 0, 7, 1, 2, 16}, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9), "2001:db8::9", 7, true},
		{"802 MAC family is not an IP", []uint32{3, 0, 7, 1, 6, 6, 0, 1, 2, 3, 4, 5}, "", 7, true},
		{"length disagrees", []uint32{3, 0, 2, 1, 1, 4, 192, 0, 2}, "", 2, false},
		{"IPv4 of 5 octets", []uint32{3, 0, 2, 1, 1, 5, 192, 0, 2, 2, 1}, "", 2, false},
		{"octet above 255", []uint32{3, 0, 2, 1, 1, 4, 192, 0, 2, 256}, "", 2, false},
		{"too short", []uint32{3, 0, 2}, "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, k, ok := parseManAddrIndex(tc.idx)
			got := ""
			if a.IsValid() {
				got = a.String()
			}
			if got != tc.addr || ok != tc.ok || k.port != tc.port {
				t.Errorf("%q port %d ok %v, want %q %d %v", got, k.port, ok, tc.addr, tc.port, tc.ok)
			}
		})
	}
}

func octets(s string) gosnmp.SnmpPDU {
	return gosnmp.SnmpPDU{Type: gosnmp.OctetString, Value: []byte(s)}
}
func integer(v int) gosnmp.SnmpPDU { return gosnmp.SnmpPDU{Type: gosnmp.Integer, Value: v} }

// A walk as real agents give it: the time mark changing between columns,
// two remote indexes on one port, an empty sysName, management addresses
// of both families, and bad values counted while the rest is kept.
func TestLLDPRemTableRows(t *testing.T) {
	bad := map[string]int{}
	d := newLLDPDecoder(bad)
	for _, v := range []struct {
		idx []uint32
		pdu gosnmp.SnmpPDU
	}{
		{[]uint32{4, 100, 2, 1}, integer(4)},
		{[]uint32{4, 3300, 2, 2}, integer(7)},
		{[]uint32{5, 100, 2, 1}, gosnmp.SnmpPDU{Type: gosnmp.OctetString, Value: []byte{0x6a, 0x76, 0x77, 0x6d, 0x11, 0x02}}},
		{[]uint32{5, 3300, 2, 2}, octets("phone-7")},
		{[]uint32{6, 100, 2, 1}, integer(5)},
		{[]uint32{6, 3300, 2, 2}, integer(3)},
		{[]uint32{7, 100, 2, 1}, octets("veth-b")},
		{[]uint32{7, 3300, 2, 2}, octets("\x00\x01")}, // a MAC of 2 octets
		{[]uint32{8, 200, 2, 1}, octets("veth-b")},
		{[]uint32{9, 200, 2, 1}, octets("sw-b")},
		{[]uint32{9, 3300, 2, 2}, octets("")},
		{[]uint32{10, 200, 2, 1}, integer(3)}, // wrong type: counted
		{[]uint32{12, 200, 2, 1}, gosnmp.SnmpPDU{Type: gosnmp.OctetString, Value: []byte{0x28, 0}}},
		{[]uint32{9, 200, 2}, octets("short index")},
		{[]uint32{9, 200, 5, 1}, octets("no chassis")},
	} {
		d.remColumn(v.idx, v.pdu)
	}
	d.manAddr([]uint32{3, 100, 2, 1, 2, 16, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, integer(2))
	d.manAddr([]uint32{3, 100, 2, 1, 1, 4, 192, 0, 2, 2}, integer(2))
	got := d.rows()
	want := []LLDPRemote{
		{LocalPortNum: 2, RemIndex: 1, ChassisIDSubtype: "macAddress", ChassisID: "6a:76:77:6d:11:02", PortIDSubtype: "interfaceName", PortID: "veth-b",
			PortDesc: "veth-b", SysName: "sw-b", Capabilities: []string{"bridge", "router"}, ManagementAddr: netip.MustParseAddr("192.0.2.2")},
		{LocalPortNum: 2, RemIndex: 2, ChassisIDSubtype: "local", ChassisID: "phone-7", PortIDSubtype: "macAddress", PortID: "00:01", Capabilities: []string{}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rows\n got %+v\nwant %+v", got, want)
	}
	wantBad := map[string]int{MalformedType: 1, MalformedIndex: 1, MalformedLength: 1, MalformedNoChassisID: 1}
	if !reflect.DeepEqual(bad, wantBad) {
		t.Errorf("malformed %v, want %v", bad, wantBad)
	}
}

func TestCDPCacheRows(t *testing.T) {
	bad := map[string]int{}
	d := newCDPDecoder(bad)
	for _, v := range []struct {
		idx []uint32
		pdu gosnmp.SnmpPDU
	}{
		{[]uint32{3, 10101, 1}, integer(1)},
		{[]uint32{4, 10101, 1}, gosnmp.SnmpPDU{Type: gosnmp.OctetString, Value: []byte{10, 0, 1, 2}}},
		{[]uint32{5, 10101, 1}, octets("Cisco IOS Software, Version 15.2(7)E2\n")},
		{[]uint32{6, 10101, 1}, octets("sw2.example.net")},
		{[]uint32{7, 10101, 1}, octets("GigabitEthernet1/0/48")},
		{[]uint32{8, 10101, 1}, octets("cisco WS-C2960X-48FPD-L")},
		{[]uint32{9, 10101, 1}, gosnmp.SnmpPDU{Type: gosnmp.OctetString, Value: []byte{0, 0, 0, 0x28}}},
		{[]uint32{11, 10101, 1}, integer(10)},
		{[]uint32{3, 10102, 4}, integer(1)},
		{[]uint32{4, 10102, 4}, gosnmp.SnmpPDU{Type: gosnmp.OctetString, Value: []byte{10, 0, 1}}},
		{[]uint32{6, 10102, 4}, octets("SEP001122334455")},
		{[]uint32{9, 10102, 4}, gosnmp.SnmpPDU{Type: gosnmp.OctetString, Value: []byte{0x90}}},
		{[]uint32{6, 10103}, octets("bad index")},
		{[]uint32{8, 10104, 1}, octets("no device id")},
	} {
		d.column(v.idx, v.pdu)
	}
	want := []CDPEntry{
		{IfIndex: 10101, DeviceIndex: 1, Address: netip.MustParseAddr("10.0.1.2"), Version: "Cisco IOS Software, Version 15.2(7)E2",
			DeviceID: "sw2.example.net", DevicePort: "GigabitEthernet1/0/48", Platform: "cisco WS-C2960X-48FPD-L", Capabilities: []string{"switch", "igmp"}, NativeVLAN: 10},
		{IfIndex: 10102, DeviceIndex: 4, DeviceID: "SEP001122334455", Capabilities: []string{}},
	}
	if got := d.rows(); !reflect.DeepEqual(got, want) {
		t.Errorf("rows\n got %+v\nwant %+v", got, want)
	}
	wantBad := map[string]int{MalformedIndex: 1, MalformedLength: 1, MalformedAddress: 1, MalformedNoChassisID: 1}
	if !reflect.DeepEqual(bad, wantBad) {
		t.Errorf("malformed %v, want %v", bad, wantBad)
	}
}
