package enrich

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/enrich/snmp"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// Protocols of link neighbours, the neighbors.protocol column.
const (
	protoLLDP = "lldp"
	protoCDP  = "cdp"
)

// Reasons of local ports that map to no ifIndex (the neighbour is kept
// with local_if_index 0).
const (
	unmappedNoMatch     = "no_match"     // in lldpLocPortTable, nothing of it matches an interface
	unmappedUnknownPort = "unknown_port" // not in lldpLocPortTable, and not a known ifIndex
)

// LinkNeighbor is an LLDP or CDP neighbour of an exporter: what one
// local interface hears from one remote chassis. (Neighbor is an ARP
// entry.)
type LinkNeighbor struct {
	LocalIfIndex        uint32
	LocalIfName         string
	Protocol            string // lldp | cdp
	ChassisID           string
	ChassisIDSubtype    string
	PortID              string
	PortIDSubtype       string
	PortDescription     string
	SystemName          string
	SystemDescription   string
	Platform            string
	ManagementAddress   netip.Addr // invalid: none
	Capabilities        []string
	NativeVLAN          uint16
	RemoteExporter      netip.Addr // a known exporter of the same tenant; invalid: none
	FirstSeen, LastSeen time.Time
}

// linkKey is a neighbour's identity (the neighbors table's ORDER BY).
type linkKey struct {
	ifIndex  uint32
	protocol string
	chassis  string
}

func (n *LinkNeighbor) key() linkKey { return linkKey{n.LocalIfIndex, n.Protocol, n.ChassisID} }

// changedFields names the columns whose values differ, in table order.
func (n *LinkNeighbor) changedFields(o *LinkNeighbor) []string {
	var out []string
	for _, f := range []struct {
		name string
		same bool
	}{
		{"local_if_name", n.LocalIfName == o.LocalIfName},
		{"remote_chassis_id_subtype", n.ChassisIDSubtype == o.ChassisIDSubtype},
		{"remote_port_id", n.PortID == o.PortID},
		{"remote_port_id_subtype", n.PortIDSubtype == o.PortIDSubtype},
		{"remote_port_description", n.PortDescription == o.PortDescription},
		{"remote_system_name", n.SystemName == o.SystemName},
		{"remote_system_description", n.SystemDescription == o.SystemDescription},
		{"remote_platform", n.Platform == o.Platform},
		{"remote_management_address", n.ManagementAddress == o.ManagementAddress},
		{"remote_capabilities", slices.Equal(n.Capabilities, o.Capabilities)},
		{"remote_native_vlan", n.NativeVLAN == o.NativeVLAN},
		{"remote_exporter_address", n.RemoteExporter == o.RemoteExporter},
	} {
		if !f.same {
			out = append(out, f.name)
		}
	}
	return out
}

// localPortMapper maps lldpRemLocalPortNum to an ifIndex, in this order:
//  1. lldpLocPortId of subtype interfaceName equal to an ifName, else an
//     ifDescr: the agent names the interface;
//  2. dot1dBasePortIfIndex of the port number (LLDP-MIB: a bridge's
//     LldpPortNumber is its dot1dBasePort), when that ifIndex is known;
//  3. lldpLocPortId of another subtype (local, interfaceAlias, ...) equal
//     to an ifName, else an ifDescr;
//  4. lldpLocPortDesc equal to an ifDescr, ifName or ifAlias;
//  5. the port number itself, when it is a known ifIndex (lldpd and many
//     agents number ports by ifIndex).
//
// Name matches before the bridge port because some agents (Juniper) have
// bridge port numbers and still number LLDP ports by ifIndex.
type localPortMapper struct {
	ifaces map[uint32]*Interface
	nbrs   snmp.LinkNeighbors
}

func (m localPortMapper) byName(s string, fields ...func(*Interface) string) uint32 {
	if s == "" {
		return 0
	}
	for _, f := range fields {
		var best uint32
		for idx, it := range m.ifaces {
			if f(it) == s && (best == 0 || idx < best) {
				best = idx
			}
		}
		if best != 0 {
			return best
		}
	}
	return 0
}

var (
	ifName  = func(i *Interface) string { return i.Name }
	ifDescr = func(i *Interface) string { return i.Descr }
	ifAlias = func(i *Interface) string { return i.Alias }
)

// ifIndex returns the ifIndex of a local port, or 0 and why not.
func (m localPortMapper) ifIndex(port uint32) (uint32, string) {
	lp, listed := m.nbrs.LocalPorts[port]
	if listed && lp.IDSubtype == "interfaceName" {
		if i := m.byName(lp.ID, ifName, ifDescr); i != 0 {
			return i, ""
		}
	}
	if i, ok := m.nbrs.BridgePorts[port]; ok && m.ifaces[i] != nil {
		return i, ""
	}
	if listed {
		if i := m.byName(lp.ID, ifName, ifDescr); i != 0 {
			return i, ""
		}
		if i := m.byName(lp.Desc, ifDescr, ifName, ifAlias); i != 0 {
			return i, ""
		}
	}
	if m.ifaces[port] != nil {
		return port, ""
	}
	if listed {
		return 0, unmappedNoMatch
	}
	return 0, unmappedUnknownPort
}

// linkNeighborsOf turns the agent's tables into neighbours, keyed. Two
// rows of one key (two remote indexes of one chassis on one port) keep
// the first.
func (e *Enricher) linkNeighborsOf(x *exporter, nb snmp.LinkNeighbors, ifaces map[uint32]*Interface) map[linkKey]*LinkNeighbor {
	out := map[linkKey]*LinkNeighbor{}
	add := func(n *LinkNeighbor) {
		if it := ifaces[n.LocalIfIndex]; it != nil {
			n.LocalIfName = it.Name
		}
		n.RemoteExporter = e.remoteExporter(x.tenant, n.ManagementAddress, n.SystemName)
		if _, dup := out[n.key()]; !dup {
			out[n.key()] = n
		}
	}
	m := localPortMapper{ifaces: ifaces, nbrs: nb}
	for _, r := range nb.LLDP {
		idx, reason := m.ifIndex(r.LocalPortNum)
		if reason != "" {
			e.m.unmappedPorts.WithLabelValues(reason).Inc()
			e.nbrLog.Do(func() {
				e.log.Warn("LLDP local port maps to no interface; kept with local_if_index 0 (logged at most every minute)",
					"exporter", x.ip, "tenant", x.tenant, "local_port", r.LocalPortNum, "reason", reason)
			})
		}
		add(&LinkNeighbor{LocalIfIndex: idx, Protocol: protoLLDP, ChassisID: r.ChassisID, ChassisIDSubtype: r.ChassisIDSubtype,
			PortID: r.PortID, PortIDSubtype: r.PortIDSubtype, PortDescription: r.PortDesc, SystemName: r.SysName,
			SystemDescription: r.SysDesc, ManagementAddress: r.ManagementAddr, Capabilities: r.Capabilities})
	}
	for _, c := range nb.CDP {
		add(&LinkNeighbor{LocalIfIndex: c.IfIndex, Protocol: protoCDP, ChassisID: c.DeviceID, ChassisIDSubtype: snmp.CDPChassisIDSubtype,
			PortID: c.DevicePort, PortIDSubtype: snmp.CDPPortIDSubtype, SystemName: c.DeviceID, SystemDescription: c.Version,
			Platform: c.Platform, ManagementAddress: c.Address, Capabilities: c.Capabilities, NativeVLAN: c.NativeVLAN})
	}
	return out
}

// remoteExporter links a neighbour to a known exporter of the same
// tenant: the one whose address is the management address, else the one
// whose sysName or configured name equals the system name, ignoring case
// and, when no full name matches, the domain part of both. Several
// matches: the lowest address.
func (e *Enricher) remoteExporter(tenant string, mgmt netip.Addr, sysName string) netip.Addr {
	var byAddr, byName, byShort netip.Addr
	lower := func(a *netip.Addr, b netip.Addr) {
		if !a.IsValid() || b.Less(*a) {
			*a = b
		}
	}
	name := strings.ToLower(strings.TrimSpace(sysName))
	e.exporters.Range(func(_, v any) bool {
		x := v.(*exporter)
		if x.tenant != tenant {
			return true
		}
		if mgmt.IsValid() && x.ip == mgmt.Unmap() {
			lower(&byAddr, x.ip)
		}
		if name == "" {
			return true
		}
		for _, n := range []string{x.cfgName, ptrString(x.sysName.Load())} {
			n = strings.ToLower(n)
			switch {
			case n == "":
			case n == name:
				lower(&byName, x.ip)
			case shortName(n) == shortName(name):
				lower(&byShort, x.ip)
			}
		}
		return true
	})
	for _, a := range []netip.Addr{byAddr, byName, byShort} {
		if a.IsValid() {
			return a
		}
	}
	return netip.Addr{}
}

func shortName(s string) string {
	h, _, _ := strings.Cut(s, ".")
	return h
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

type linkObservation struct {
	n      *LinkNeighbor
	event  string
	fields []string
}

// pollNeighbors walks the LLDP and CDP tables and records what is new,
// changed, gone or due for a refresh. Neighbours of a protocol whose MIB
// answered nothing this time are kept, not gone: lldpd reconnecting to
// snmpd over AgentX (15 s) or an snmpd restart empties LLDP-MIB for a
// while, and a failed walk fails the poll before anything is compared.
func (e *Enricher) pollNeighbors(ctx context.Context, x *exporter, c *snmp.Client) error {
	nb, err := c.LinkNeighbors()
	if err != nil {
		return err
	}
	for reason, n := range nb.Malformed {
		e.m.nbrMalformed.WithLabelValues(reason).Add(float64(n))
		e.nbrLog.Do(func() {
			e.log.Warn("malformed LLDP/CDP values skipped (logged at most every minute)", "exporter", x.ip, "tenant", x.tenant, "reason", reason, "count", n)
		})
	}
	e.setNeighborMIBs(x, nb.HasLLDP, nb.HasCDP)
	var ifaces map[uint32]*Interface
	if p := x.ifaces.Load(); p != nil {
		ifaces = *p
	}
	cur := e.linkNeighborsOf(x, nb, ifaces)
	now := time.Now()
	answered := map[string]bool{protoLLDP: nb.HasLLDP, protoCDP: nb.HasCDP}
	obs := diffNeighbors(x.links, cur, answered, x.linkWritten, now, e.cfg.Polling.ObservationRefresh)
	// Now: what answered, and what was kept because its MIB did not.
	next := make(map[linkKey]*LinkNeighbor, len(cur))
	for k, n := range x.links {
		if !answered[k.protocol] {
			next[k] = n
		}
	}
	for k, n := range cur {
		next[k] = n
	}
	if e.w != nil && len(obs) > 0 {
		wctx, cancel := context.WithTimeout(ctx, e.cfg.Polling.WriteTimeout)
		err := e.w.neighbors(wctx, x, obs, now)
		cancel()
		if err != nil {
			// Keep the state the table has: the next poll tells it again.
			e.dbError("neighbors", err)
			return nil
		}
	}
	x.links = next
	x.linkCount.Store(int64(len(next)))
	for _, o := range obs {
		if o.event == eventGone {
			delete(x.linkWritten, o.n.key())
		} else {
			x.linkWritten[o.n.key()] = now.UnixMilli()
		}
	}
	return nil
}

// diffNeighbors compares the previous neighbours with the current ones.
// A neighbour missing now is gone only if its protocol's MIB answered.
func diffNeighbors(prev, cur map[linkKey]*LinkNeighbor, answered map[string]bool, written map[linkKey]int64, now time.Time, refresh time.Duration) []linkObservation {
	var obs []linkObservation
	for k, n := range cur {
		p, had := prev[k]
		switch {
		case !had:
			n.FirstSeen, n.LastSeen = now, now
			obs = append(obs, linkObservation{n: n, event: eventNew})
		default:
			n.FirstSeen, n.LastSeen = p.FirstSeen, now
			if f := n.changedFields(p); len(f) > 0 {
				obs = append(obs, linkObservation{n: n, event: eventChanged, fields: f})
			} else if now.UnixMilli()-written[k] >= refresh.Milliseconds() {
				obs = append(obs, linkObservation{n: n, event: eventRefresh})
			}
		}
	}
	for k, p := range prev {
		if _, ok := cur[k]; !ok && answered[k.protocol] {
			obs = append(obs, linkObservation{n: p, event: eventGone})
		}
	}
	slices.SortFunc(obs, func(a, b linkObservation) int {
		return compareKeys(a.n.key(), b.n.key())
	})
	return obs
}

func compareKeys(a, b linkKey) int {
	switch {
	case a.ifIndex != b.ifIndex:
		return int(int64(a.ifIndex) - int64(b.ifIndex))
	case a.protocol != b.protocol:
		return strings.Compare(a.protocol, b.protocol)
	}
	return strings.Compare(a.chassis, b.chassis)
}

// setNeighborMIBs keeps the flowhouse_enrich_neighbor_mibs gauge: how
// many exporters have LLDP-MIB, CDP-MIB, or neither.
func (e *Enricher) setNeighborMIBs(x *exporter, lldp, cdp bool) {
	state := map[bool]map[bool]string{true: {true: "lldp+cdp", false: "lldp"}, false: {true: "cdp", false: "none"}}[lldp][cdp]
	if state == x.nbrMIBs {
		return
	}
	if x.nbrMIBs != "" {
		e.m.nbrMIBs.WithLabelValues(x.nbrMIBs).Dec()
	}
	e.m.nbrMIBs.WithLabelValues(state).Inc()
	x.nbrMIBs = state
}

func (w *writer) neighbors(ctx context.Context, x *exporter, obs []linkObservation, now time.Time) error {
	n := len(obs)
	var (
		tenant, exp                   = fill(n, x.tenant), fill(n, addrString(x.addr))
		idx                           = make([]uint32, n)
		ifName, proto, chassis, chSub = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		port, portSub, portDesc       = make([]string, n), make([]string, n), make([]string, n)
		sysName, sysDesc, platform    = make([]string, n), make([]string, n), make([]string, n)
		mgmt, remote                  = make([]string, n), make([]string, n)
		caps, fields                  = make([][]string, n), make([][]string, n)
		vlan, gone                    = make([]uint16, n), make([]uint16, n) // []uint8 would bind as a String
		first, last                   = make([]uint32, n), make([]uint32, n)
		events                        = make([]string, n)
	)
	for i, o := range obs {
		l := o.n
		idx[i], ifName[i], proto[i], chassis[i], chSub[i] = l.LocalIfIndex, l.LocalIfName, l.Protocol, l.ChassisID, l.ChassisIDSubtype
		port[i], portSub[i], portDesc[i] = l.PortID, l.PortIDSubtype, l.PortDescription
		sysName[i], sysDesc[i], platform[i] = l.SystemName, l.SystemDescription, l.Platform
		mgmt[i], remote[i], caps[i], vlan[i] = ipString(l.ManagementAddress), ipString(l.RemoteExporter), l.Capabilities, l.NativeVLAN
		first[i], last[i], events[i], fields[i] = uint32(l.FirstSeen.Unix()), uint32(l.LastSeen.Unix()), o.event, o.fields
		if fields[i] == nil {
			fields[i] = []string{}
		}
		if o.event == eventGone {
			gone[i] = 1
		}
	}
	if err := w.insert(ctx, "neighbors", []icol{
		{"tenant", cPlain, tenant}, {"exporter_address", cIP, exp}, {"local_if_index", cPlain, idx},
		{"local_if_name", cPlain, ifName}, {"protocol", cPlain, proto},
		{"remote_chassis_id", cPlain, chassis}, {"remote_chassis_id_subtype", cPlain, chSub},
		{"remote_port_id", cPlain, port}, {"remote_port_id_subtype", cPlain, portSub},
		{"remote_port_description", cPlain, portDesc}, {"remote_system_name", cPlain, sysName},
		{"remote_system_description", cPlain, sysDesc}, {"remote_platform", cPlain, platform},
		{"remote_management_address", cIP, mgmt}, {"remote_capabilities", cPlain, caps},
		{"remote_native_vlan", cPlain, vlan}, {"remote_exporter_address", cIP, remote},
		{"first_seen", cTime, first}, {"last_seen", cTime, last}, {"gone", cPlain, gone},
		{"updated_at", cTime, fill(n, uint32(now.Unix()))},
	}, 200); err != nil {
		return err
	}
	return w.insert(ctx, "neighbor_observations", []icol{
		{"time", cTime, fill(n, uint32(now.Unix()))}, {"time_ms", cPlain, fill(n, uint64(now.UnixMilli()))},
		{"tenant", cPlain, tenant}, {"exporter_address", cIP, exp}, {"local_if_index", cPlain, idx},
		{"local_if_name", cPlain, ifName}, {"protocol", cPlain, proto}, {"remote_chassis_id", cPlain, chassis},
		{"remote_port_id", cPlain, port}, {"remote_port_description", cPlain, portDesc},
		{"remote_system_name", cPlain, sysName}, {"remote_management_address", cIP, mgmt},
		{"remote_capabilities", cPlain, caps}, {"event", cPlain, events}, {"changed_fields", cPlain, fields},
	}, 200)
}

// reloadNeighbors takes each neighbour's latest row that is not gone, so
// that a restart compares the first poll with what was known, rather than
// telling every neighbour new.
func (e *Enricher) reloadNeighbors(ctx context.Context) (int, error) {
	n := 0
	err := dbapi.Each(ctx, e.deps.DB, `SELECT tenant, IPv6NumToString(exporter_address), local_if_index, local_if_name, protocol,
		remote_chassis_id, remote_chassis_id_subtype, remote_port_id, remote_port_id_subtype, remote_port_description,
		remote_system_name, remote_system_description, remote_platform, IPv6NumToString(remote_management_address),
		remote_capabilities, remote_native_vlan, IPv6NumToString(remote_exporter_address),
		toUInt32(first_seen), toUInt32(last_seen), toUInt32(updated_at)
		FROM neighbors FINAL WHERE gone = 0`, nil, func(rows dbapi.Rows) error {
		var tenant, addr, mgmt, remote string
		var first, last, at uint32
		l := &LinkNeighbor{}
		if err := rows.Scan(&tenant, &addr, &l.LocalIfIndex, &l.LocalIfName, &l.Protocol, &l.ChassisID, &l.ChassisIDSubtype,
			&l.PortID, &l.PortIDSubtype, &l.PortDescription, &l.SystemName, &l.SystemDescription, &l.Platform, &mgmt,
			&l.Capabilities, &l.NativeVLAN, &remote, &first, &last, &at); err != nil {
			return err
		}
		x := e.knownExporter(tenant, addr)
		if x == nil {
			return nil
		}
		l.ManagementAddress, l.RemoteExporter = storedAddr(mgmt), storedAddr(remote)
		l.FirstSeen, l.LastSeen = time.Unix(int64(first), 0).UTC(), time.Unix(int64(last), 0).UTC()
		x.pollMu.Lock()
		x.links[l.key()], x.linkWritten[l.key()] = l, int64(at)*1000
		x.linkCount.Store(int64(len(x.links)))
		x.pollMu.Unlock()
		n++
		return nil
	})
	return n, err
}

// storedAddr is an address column read back: '::' is none, IPv4 unmapped.
func storedAddr(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a.Unmap()
}

// LinkNeighbors returns the current LLDP/CDP neighbours of an exporter,
// sorted by local ifIndex, protocol and chassis ID.
func (e *Enricher) LinkNeighbors(exporterAddr netip.Addr) []LinkNeighbor {
	v, ok := e.exporters.Load(flow.AddrFromNetip(exporterAddr))
	if !ok {
		return nil
	}
	x := v.(*exporter)
	x.pollMu.Lock()
	defer x.pollMu.Unlock()
	out := make([]LinkNeighbor, 0, len(x.links))
	for _, l := range x.links {
		out = append(out, *l)
	}
	slices.SortFunc(out, func(a, b LinkNeighbor) int { return compareKeys(a.key(), b.key()) })
	return out
}
