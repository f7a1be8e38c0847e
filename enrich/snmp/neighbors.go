package snmp

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gosnmp/gosnmp"
)

// OIDs of the neighbour tables (LLDP-MIB, IEEE 802.1AB; CISCO-CDP-MIB;
// BRIDGE-MIB for the local port mapping).
const (
	OIDLLDPRemTable      = "1.0.8802.1.1.2.1.4.1.1"
	OIDLLDPRemManAddr    = "1.0.8802.1.1.2.1.4.2.1"
	OIDLLDPLocPortTable  = "1.0.8802.1.1.2.1.3.7.1"
	OIDDot1dBasePortIf   = "1.3.6.1.2.1.17.1.4.1.2"
	OIDCDPCacheTable     = "1.3.6.1.4.1.9.9.23.1.2.1.1"
	OIDCDPGlobalRun      = "1.3.6.1.4.1.9.9.23.1.3.1.0"
	CDPChassisIDSubtype  = "cdp_device_id"
	CDPPortIDSubtype     = "cdp_device_port"
	MalformedIndex       = "bad_index"
	MalformedType        = "bad_type"
	MalformedLength      = "bad_length"
	MalformedNoChassisID = "no_chassis_id"
	MalformedAddress     = "bad_address"
)

// MalformedReasons lists the reasons of skipped or undecodable values.
var MalformedReasons = []string{MalformedIndex, MalformedType, MalformedLength, MalformedNoChassisID, MalformedAddress}

// LLDPRemote is one row of lldpRemTable (the time mark dropped: agents
// change it between walks), with its management address.
type LLDPRemote struct {
	LocalPortNum, RemIndex uint32
	ChassisIDSubtype       string
	ChassisID              string
	PortIDSubtype          string
	PortID                 string
	PortDesc               string
	SysName                string
	SysDesc                string
	Capabilities           []string
	ManagementAddr         netip.Addr // invalid: none
}

// LLDPLocalPort is one row of lldpLocPortTable.
type LLDPLocalPort struct {
	Num       uint32
	IDSubtype string
	ID        string
	Desc      string
}

// CDPEntry is one row of cdpCacheTable.
type CDPEntry struct {
	IfIndex, DeviceIndex uint32
	Address              netip.Addr // invalid: none or not IP
	Version              string
	DeviceID             string
	DevicePort           string
	Platform             string
	Capabilities         []string
	NativeVLAN           uint16
}

// LinkNeighbors is what one agent tells of its LLDP and CDP neighbours.
// HasLLDP/HasCDP: the agent has the MIB (answered rows, or for CDP
// cdpGlobalRun); a missing MIB is normal, not an error.
type LinkNeighbors struct {
	HasLLDP, HasCDP bool
	LLDP            []LLDPRemote
	LocalPorts      map[uint32]LLDPLocalPort
	BridgePorts     map[uint32]uint32 // dot1dBasePort -> ifIndex
	CDP             []CDPEntry
	Malformed       map[string]int // by reason
}

// LinkNeighbors walks lldpRemTable, lldpRemManAddrTable, lldpLocPortTable,
// dot1dBasePortIfIndex and cdpCacheTable. Any failed walk fails the
// whole call, so that a partial answer never looks like neighbours gone.
func (c *Client) LinkNeighbors() (LinkNeighbors, error) {
	n := LinkNeighbors{LocalPorts: map[uint32]LLDPLocalPort{}, BridgePorts: map[uint32]uint32{}, Malformed: map[string]int{}}
	d := newLLDPDecoder(n.Malformed)
	steps := []struct {
		oid string
		fn  func([]uint32, gosnmp.SnmpPDU)
	}{
		{OIDLLDPRemTable, d.remColumn},
		{OIDLLDPRemManAddr, d.manAddr},
		{OIDLLDPLocPortTable, func(idx []uint32, p gosnmp.SnmpPDU) { d.locPort(n.LocalPorts, idx, p) }},
		{OIDDot1dBasePortIf, func(idx []uint32, p gosnmp.SnmpPDU) {
			if len(idx) == 1 && pduUint(p) > 0 {
				n.BridgePorts[idx[0]] = uint32(pduUint(p))
			}
		}},
	}
	for _, s := range steps {
		if err := c.walk(s.oid, s.fn); err != nil {
			return LinkNeighbors{}, err
		}
	}
	n.LLDP = d.rows()
	n.HasLLDP = len(n.LLDP) > 0 || len(n.LocalPorts) > 0
	cd := newCDPDecoder(n.Malformed)
	if err := c.walk(OIDCDPCacheTable, cd.column); err != nil {
		return LinkNeighbors{}, err
	}
	n.CDP = cd.rows()
	n.HasCDP = len(n.CDP) > 0
	if !n.HasCDP {
		res, err := c.g.Get([]string{OIDCDPGlobalRun})
		if err != nil {
			return LinkNeighbors{}, c.fail("get cdpGlobalRun", err)
		}
		for _, v := range res.Variables {
			n.HasCDP = n.HasCDP || (v.Type == gosnmp.Integer && res.Error == gosnmp.NoError)
		}
	}
	return n, nil
}

type remKey struct{ port, rem uint32 }

type lldpDecoder struct {
	bad   map[string]int
	rem   map[remKey]*LLDPRemote
	order []remKey
	raw   map[remKey]*remRaw
}

// remRaw holds the subtypes and raw IDs until every column is read: the
// walk is column by column, subtypes before values.
type remRaw struct {
	chassisSub, portSub int
	chassis, port       []byte
	hasChassis          bool
	man4, man6          netip.Addr
}

func newLLDPDecoder(bad map[string]int) *lldpDecoder {
	return &lldpDecoder{bad: bad, rem: map[remKey]*LLDPRemote{}, raw: map[remKey]*remRaw{}}
}

func (d *lldpDecoder) entry(k remKey) (*LLDPRemote, *remRaw) {
	r := d.rem[k]
	if r == nil {
		r = &LLDPRemote{LocalPortNum: k.port, RemIndex: k.rem}
		d.rem[k], d.raw[k] = r, &remRaw{}
		d.order = append(d.order, k)
	}
	return r, d.raw[k]
}

// remColumn takes one value of lldpRemTable: column.timeMark.port.remIndex.
// A later time mark of the same port and index overwrites an earlier one.
func (d *lldpDecoder) remColumn(idx []uint32, p gosnmp.SnmpPDU) {
	if len(idx) != 4 {
		d.bad[MalformedIndex]++
		return
	}
	col, k := idx[0], remKey{idx[2], idx[3]}
	if col < 4 || col > 12 || col == 11 {
		return // 1-3 are the not-accessible index; 11 capabilities supported
	}
	r, raw := d.entry(k)
	b, isBytes := p.Value.([]byte)
	switch col {
	case 4, 6:
		if p.Type != gosnmp.Integer {
			d.bad[MalformedType]++
			return
		}
		if col == 4 {
			raw.chassisSub = int(pduUint(p))
		} else {
			raw.portSub = int(pduUint(p))
		}
		return
	}
	if !isBytes {
		d.bad[MalformedType]++
		return
	}
	switch col {
	case 5:
		raw.chassis, raw.hasChassis = b, true
	case 7:
		raw.port = b
	case 8:
		r.PortDesc = text(b)
	case 9:
		r.SysName = text(b)
	case 10:
		r.SysDesc = text(b)
	case 12:
		r.Capabilities = LLDPCapabilities(b)
	}
}

// manAddr takes a row of lldpRemManAddrTable, whose address is in the
// index: column.timeMark.port.remIndex.addrSubtype.addrLen.octets...
func (d *lldpDecoder) manAddr(idx []uint32, _ gosnmp.SnmpPDU) {
	a, k, ok := parseManAddrIndex(idx)
	if !ok {
		d.bad[MalformedIndex]++
		return
	}
	_, raw := d.entry(k)
	switch {
	case !a.IsValid():
		// another address family (e.g. 6 = 802 MAC): not an IP address
	case a.Is4():
		raw.man4 = a
	default:
		raw.man6 = a
	}
}

// parseManAddrIndex splits an lldpRemManAddrTable index (column first).
// The address is invalid for families other than IPv4 (1) and IPv6 (2).
func parseManAddrIndex(idx []uint32) (netip.Addr, remKey, bool) {
	if len(idx) < 6 {
		return netip.Addr{}, remKey{}, false
	}
	k := remKey{idx[2], idx[3]}
	family, n := idx[4], int(idx[5])
	if len(idx) != 6+n {
		return netip.Addr{}, k, false
	}
	octets := idx[6:]
	if (family == 1 && n != 4) || (family == 2 && n != 16) {
		return netip.Addr{}, k, false
	}
	if family != 1 && family != 2 {
		return netip.Addr{}, k, true
	}
	a, ok := addrFromIndex(octets)
	return a, k, ok
}

// rows finishes the rows: IDs decoded by their subtype, one management
// address chosen (IPv4 first, then IPv6, then a networkAddress chassis
// ID). A row without a chassis ID is skipped and counted.
func (d *lldpDecoder) rows() []LLDPRemote {
	out := make([]LLDPRemote, 0, len(d.order))
	for _, k := range d.order {
		r, raw := d.rem[k], d.raw[k]
		if !raw.hasChassis || len(raw.chassis) == 0 {
			if r.SysName != "" || raw.port != nil {
				d.bad[MalformedNoChassisID]++
			}
			continue // a management address of a row not listed
		}
		var chassisIP netip.Addr
		r.ChassisIDSubtype, r.ChassisID, chassisIP = decodeChassisID(raw.chassisSub, raw.chassis, d.bad)
		r.PortIDSubtype, r.PortID = decodePortID(raw.portSub, raw.port, d.bad)
		if r.Capabilities == nil {
			r.Capabilities = []string{}
		}
		switch {
		case raw.man4.IsValid():
			r.ManagementAddr = raw.man4
		case raw.man6.IsValid():
			r.ManagementAddr = raw.man6
		default:
			r.ManagementAddr = chassisIP
		}
		out = append(out, *r)
	}
	return out
}

func (d *lldpDecoder) locPort(ports map[uint32]LLDPLocalPort, idx []uint32, p gosnmp.SnmpPDU) {
	if len(idx) != 2 {
		d.bad[MalformedIndex]++
		return
	}
	col, num := idx[0], idx[1]
	lp := ports[num]
	lp.Num = num
	switch col {
	case 2:
		lp.IDSubtype = portIDSubtypes[int(pduUint(p))]
	case 3:
		b, _ := p.Value.([]byte)
		lp.ID = text(b)
	case 4:
		b, _ := p.Value.([]byte)
		lp.Desc = text(b)
	default:
		return
	}
	ports[num] = lp
}

// Chassis and port ID subtypes (LldpChassisIdSubtype, LldpPortIdSubtype),
// the *_subtype column values.
var (
	chassisIDSubtypes = map[int]string{1: "chassisComponent", 2: "interfaceAlias", 3: "portComponent",
		4: "macAddress", 5: "networkAddress", 6: "interfaceName", 7: "local"}
	portIDSubtypes = map[int]string{1: "interfaceAlias", 2: "portComponent", 3: "macAddress",
		4: "networkAddress", 5: "interfaceName", 6: "agentCircuitId", 7: "local"}
)

// decodeChassisID renders a chassis ID by its subtype: a MAC as
// aa:bb:cc:dd:ee:ff, a network address as IP text (and returned as an
// address), other subtypes as text if printable, else hex. A value that
// does not fit its subtype is counted and shown as text or hex.
func decodeChassisID(sub int, b []byte, bad map[string]int) (string, string, netip.Addr) {
	name := subtypeName(chassisIDSubtypes, sub)
	switch sub {
	case 4:
		return name, macText(b, bad), netip.Addr{}
	case 5:
		if a, ok := networkAddress(b); ok {
			return name, a.String(), a
		}
		bad[MalformedAddress]++
	}
	return name, textOrHex(b), netip.Addr{}
}

func decodePortID(sub int, b []byte, bad map[string]int) (string, string) {
	name := subtypeName(portIDSubtypes, sub)
	switch sub {
	case 3:
		return name, macText(b, bad)
	case 4:
		if a, ok := networkAddress(b); ok {
			return name, a.String()
		}
		bad[MalformedAddress]++
	}
	return name, textOrHex(b)
}

func subtypeName(m map[int]string, sub int) string {
	if s, ok := m[sub]; ok {
		return s
	}
	return fmt.Sprintf("unknown(%d)", sub)
}

// macText formats 6 octets; some agents (MikroTik) send the MAC as text.
func macText(b []byte, bad map[string]int) string {
	if len(b) == 6 {
		return net.HardwareAddr(b).String()
	}
	if hw, err := net.ParseMAC(strings.TrimSpace(string(b))); err == nil && len(hw) == 6 {
		return hw.String()
	}
	bad[MalformedLength]++
	return textOrHex(b)
}

// networkAddress decodes an IANA address family octet and the address
// (1 IPv4, 2 IPv6).
func networkAddress(b []byte) (netip.Addr, bool) {
	if len(b) == 5 && b[0] == 1 || len(b) == 17 && b[0] == 2 {
		a, ok := netip.AddrFromSlice(b[1:])
		return a, ok
	}
	return netip.Addr{}, false
}

// text is a DisplayString: trailing NULs dropped.
func text(b []byte) string { return strings.TrimRight(string(b), "\x00") }

// textOrHex is the text of printable UTF-8, else lowercase hex with colons.
func textOrHex(b []byte) string {
	s := text(b)
	printable := utf8.ValidString(s)
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			printable = false
			break
		}
	}
	if printable {
		return s
	}
	h := hex.EncodeToString(b)
	parts := make([]string, 0, len(b))
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

// lldpCapabilityNames are LldpSystemCapabilitiesMap's bits: bit 0 is the
// most significant bit of the first octet.
var lldpCapabilityNames = []string{"other", "repeater", "bridge", "wlanAccessPoint", "router",
	"telephone", "docsisCableDevice", "stationOnly", "cVLAN", "sVLAN", "twoPortMACRelay"}

// LLDPCapabilities names the bits set in an LldpSystemCapabilitiesMap.
func LLDPCapabilities(b []byte) []string {
	out := []string{}
	for i, name := range lldpCapabilityNames {
		if i/8 < len(b) && b[i/8]&(0x80>>(i%8)) != 0 {
			out = append(out, name)
		}
	}
	return out
}

// cdpCapabilityNames: the cdpCacheCapabilities bits, named like LLDP's
// where they mean the same (router, bridge, repeater, telephone,
// stationOnly for host); CDP's own bits keep CDP names.
var cdpCapabilityNames = []struct {
	bit  uint32
	name string
}{
	{0x01, "router"}, {0x02, "bridge"}, {0x04, "sourceRouteBridge"}, {0x08, "switch"},
	{0x10, "stationOnly"}, {0x20, "igmp"}, {0x40, "repeater"}, {0x80, "telephone"},
	{0x100, "remotelyManaged"}, {0x200, "cvtaStpDispute"}, {0x400, "twoPortMACRelay"},
}

// CDPCapabilities names the bits of cdpCacheCapabilities (4 octets,
// network order).
func CDPCapabilities(b []byte) ([]string, bool) {
	if len(b) != 4 {
		return []string{}, false
	}
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	out := []string{}
	for _, c := range cdpCapabilityNames {
		if v&c.bit != 0 && !slices.Contains(out, c.name) {
			out = append(out, c.name)
		}
	}
	return out, true
}

type cdpKey struct{ ifIndex, dev uint32 }

type cdpDecoder struct {
	bad      map[string]int
	byKey    map[cdpKey]*CDPEntry
	order    []cdpKey
	addrType map[cdpKey]int
	addr     map[cdpKey][]byte
}

func newCDPDecoder(bad map[string]int) *cdpDecoder {
	return &cdpDecoder{bad: bad, byKey: map[cdpKey]*CDPEntry{}, addrType: map[cdpKey]int{}, addr: map[cdpKey][]byte{}}
}

// column takes one value of cdpCacheTable: column.ifIndex.deviceIndex.
func (d *cdpDecoder) column(idx []uint32, p gosnmp.SnmpPDU) {
	if len(idx) != 3 {
		d.bad[MalformedIndex]++
		return
	}
	col, k := idx[0], cdpKey{idx[1], idx[2]}
	e := d.byKey[k]
	if e == nil {
		e = &CDPEntry{IfIndex: k.ifIndex, DeviceIndex: k.dev}
		d.byKey[k] = e
		d.order = append(d.order, k)
	}
	b, isBytes := p.Value.([]byte)
	switch col {
	case 3:
		d.addrType[k] = int(pduUint(p))
		return
	case 11:
		if v := pduUint(p); v <= 4095 {
			e.NativeVLAN = uint16(v)
		} else {
			d.bad[MalformedLength]++
		}
		return
	case 4, 5, 6, 7, 8, 9:
	default:
		return
	}
	if !isBytes {
		d.bad[MalformedType]++
		return
	}
	switch col {
	case 4:
		d.addr[k] = b
	case 5:
		e.Version = strings.TrimSpace(text(b))
	case 6:
		e.DeviceID = textOrHex(b)
	case 7:
		e.DevicePort = text(b)
	case 8:
		e.Platform = text(b)
	case 9:
		caps, ok := CDPCapabilities(b)
		if !ok {
			d.bad[MalformedLength]++
		}
		e.Capabilities = caps
	}
}

// CDPAddress decodes cdpCacheAddressType/cdpCacheAddress: type 1 (ip)
// with 4 octets (IPv4) or 16 (IPv6); false for anything else.
func CDPAddress(typ int, b []byte) (netip.Addr, bool) {
	if typ != 1 || (len(b) != 4 && len(b) != 16) {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(b)
	return a, ok
}

func (d *cdpDecoder) rows() []CDPEntry {
	out := make([]CDPEntry, 0, len(d.order))
	for _, k := range d.order {
		e := d.byKey[k]
		if e.DeviceID == "" {
			d.bad[MalformedNoChassisID]++
			continue
		}
		if b, ok := d.addr[k]; ok && len(b) > 0 {
			a, ok := CDPAddress(d.addrType[k], b)
			if !ok {
				d.bad[MalformedAddress]++
			}
			e.Address = a
		}
		if e.Capabilities == nil {
			e.Capabilities = []string{}
		}
		out = append(out, *e)
	}
	return out
}
