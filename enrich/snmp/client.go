package snmp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/gosnmp/gosnmp"
)

// OIDs polled (numeric: Debian ships no MIB files).
const (
	OIDSysName      = "1.3.6.1.2.1.1.5.0"
	OIDSysUpTime    = "1.3.6.1.2.1.1.3.0"
	OIDIfDescr      = "1.3.6.1.2.1.2.2.1.2"
	OIDIfOperStatus = "1.3.6.1.2.1.2.2.1.8"
	OIDIfSpeed      = "1.3.6.1.2.1.2.2.1.5"
	OIDIfName       = "1.3.6.1.2.1.31.1.1.1.1"
	OIDIfHCIn       = "1.3.6.1.2.1.31.1.1.1.6"
	OIDIfHCOut      = "1.3.6.1.2.1.31.1.1.1.10"
	OIDIfHighSpeed  = "1.3.6.1.2.1.31.1.1.1.15"
	OIDIfAlias      = "1.3.6.1.2.1.31.1.1.1.18"
	// ipNetToPhysicalPhysAddress: index ifIndex.addrType.len.addr (IP-MIB).
	OIDIPNetToPhysical = "1.3.6.1.2.1.4.35.1.4"
	// ipNetToMediaPhysAddress: index ifIndex.a.b.c.d (RFC 1213).
	OIDIPNetToMedia = "1.3.6.1.2.1.4.22.1.2"
)

// Interface is one row of the interface table.
type Interface struct {
	Index      uint32
	Name       string // ifName
	Descr      string // ifDescr
	Alias      string // ifAlias
	SpeedMbps  uint64 // ifHighSpeed, else ifSpeed / 1e6
	OperStatus uint8  // 1 up, 2 down, ... (ifOperStatus)
}

// ARPEntry is one neighbour: an IP address resolved to a MAC on an interface.
type ARPEntry struct {
	IfIndex uint32
	IP      netip.Addr
	MAC     uint64 // 48 bits in the low bits
}

// Counter is an interface's octet counters at one time.
type Counter struct {
	IfIndex   uint32
	InOctets  uint64
	OutOctets uint64
}

// Client is a session with one agent; not safe for concurrent use.
type Client struct {
	g *gosnmp.GoSNMP
}

// Open prepares and connects (a UDP socket: no packet is sent yet) a
// session to target with cfg, whose secrets are already opened.
func Open(ctx context.Context, cfg Config, target string) (*Client, error) {
	cfg = cfg.WithDefaults()
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("snmp: agent %q: %w", target, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("snmp: agent %q: bad port", target)
	}
	g := &gosnmp.GoSNMP{
		Target:         host,
		Port:           uint16(port),
		Transport:      "udp",
		Context:        ctx,
		Timeout:        cfg.Timeout,
		Retries:        cfg.Retries,
		MaxOids:        gosnmp.MaxOids,
		MaxRepetitions: cfg.MaxRepetitions,
	}
	switch cfg.Version {
	case "3":
		g.Version = gosnmp.Version3
		g.SecurityModel = gosnmp.UserSecurityModel
		g.ContextName = cfg.ContextName
		usm := &gosnmp.UsmSecurityParameters{
			UserName:                 cfg.User,
			AuthenticationProtocol:   authProtocols[normProto(cfg.AuthProtocol)],
			AuthenticationPassphrase: cfg.AuthPassphrase,
		}
		if strings.ToLower(cfg.Level) == "authnopriv" {
			g.MsgFlags = gosnmp.AuthNoPriv
		} else {
			g.MsgFlags = gosnmp.AuthPriv
			usm.PrivacyProtocol = privProtocols[normProto(cfg.PrivProtocol)]
			usm.PrivacyPassphrase = cfg.PrivPassphrase
		}
		g.SecurityParameters = usm
	default:
		g.Version = gosnmp.Version2c
		g.Community = cfg.Community
	}
	if err := g.Connect(); err != nil {
		return nil, &Error{Reason: ReasonNetwork, Op: "connect", Target: target, Err: err}
	}
	return &Client{g: g}, nil
}

// Close releases the socket.
func (c *Client) Close() error {
	if c.g.Conn != nil {
		return c.g.Conn.Close()
	}
	return nil
}

func (c *Client) target() string {
	return net.JoinHostPort(c.g.Target, strconv.Itoa(int(c.g.Port)))
}

func (c *Client) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Reason: classify(err, c.g.Version), Op: op, Target: c.target(), Err: err}
}

// SysName returns sysName.0 and sysUpTime.0 (hundredths of a second).
func (c *Client) SysName() (string, uint32, error) {
	res, err := c.g.Get([]string{OIDSysName, OIDSysUpTime})
	if err != nil {
		return "", 0, c.fail("get sysName", err)
	}
	if res.Error != gosnmp.NoError {
		return "", 0, c.fail("get sysName", fmt.Errorf("agent answered %s", res.Error))
	}
	var name string
	var up uint32
	for _, v := range res.Variables {
		switch strings.TrimPrefix(v.Name, ".") {
		case OIDSysName:
			if b, ok := v.Value.([]byte); ok {
				name = string(b)
			}
		case OIDSysUpTime:
			up = uint32(gosnmp.ToBigInt(v.Value).Uint64())
		}
	}
	return name, up, nil
}

// walk bulk-walks a column and calls fn with the index suffix (after root).
func (c *Client) walk(root string, fn func(index []uint32, pdu gosnmp.SnmpPDU)) error {
	prefix := "." + root + "."
	err := c.g.BulkWalk(root, func(pdu gosnmp.SnmpPDU) error {
		if pdu.Type == gosnmp.NoSuchObject || pdu.Type == gosnmp.NoSuchInstance || pdu.Type == gosnmp.EndOfMibView {
			return nil
		}
		name := pdu.Name
		if !strings.HasPrefix(name, ".") {
			name = "." + name
		}
		if !strings.HasPrefix(name, prefix) {
			return nil
		}
		idx, ok := parseIndex(name[len(prefix):])
		if !ok {
			return nil
		}
		fn(idx, pdu)
		return nil
	})
	return c.fail("walk "+root, err)
}

func parseIndex(s string) ([]uint32, bool) {
	parts := strings.Split(s, ".")
	out := make([]uint32, len(parts))
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return nil, false
		}
		out[i] = uint32(v)
	}
	return out, true
}

func pduString(p gosnmp.SnmpPDU) string {
	if b, ok := p.Value.([]byte); ok {
		return strings.TrimRight(string(b), "\x00")
	}
	if s, ok := p.Value.(string); ok {
		return s
	}
	return ""
}

func pduUint(p gosnmp.SnmpPDU) uint64 {
	if p.Value == nil {
		return 0
	}
	return gosnmp.ToBigInt(p.Value).Uint64()
}

// Interfaces walks the interface table: ifDescr, ifName, ifAlias,
// ifHighSpeed (ifSpeed when ifHighSpeed is absent or 0 and ifSpeed is
// not saturated) and ifOperStatus. An agent without ifXTable (ifName)
// still gives ifDescr.
func (c *Client) Interfaces() ([]Interface, error) {
	byIndex := map[uint32]*Interface{}
	get := func(idx []uint32) *Interface {
		if len(idx) != 1 {
			return nil
		}
		i := byIndex[idx[0]]
		if i == nil {
			i = &Interface{Index: idx[0]}
			byIndex[idx[0]] = i
		}
		return i
	}
	speeds := map[uint32]uint64{}
	cols := []struct {
		oid string
		set func(*Interface, gosnmp.SnmpPDU)
	}{
		{OIDIfDescr, func(i *Interface, p gosnmp.SnmpPDU) { i.Descr = pduString(p) }},
		{OIDIfName, func(i *Interface, p gosnmp.SnmpPDU) { i.Name = pduString(p) }},
		{OIDIfAlias, func(i *Interface, p gosnmp.SnmpPDU) { i.Alias = pduString(p) }},
		{OIDIfHighSpeed, func(i *Interface, p gosnmp.SnmpPDU) { i.SpeedMbps = pduUint(p) }},
		{OIDIfOperStatus, func(i *Interface, p gosnmp.SnmpPDU) { i.OperStatus = uint8(pduUint(p)) }},
		{OIDIfSpeed, func(i *Interface, p gosnmp.SnmpPDU) { speeds[i.Index] = pduUint(p) }},
	}
	for _, col := range cols {
		// Missing columns (old agents without ifXTable) give no rows, not
		// an error: an error is the agent not answering.
		if err := c.walk(col.oid, func(idx []uint32, p gosnmp.SnmpPDU) {
			if i := get(idx); i != nil {
				col.set(i, p)
			}
		}); err != nil {
			return nil, err
		}
	}
	out := make([]Interface, 0, len(byIndex))
	for _, i := range byIndex {
		if i.SpeedMbps == 0 {
			if s := speeds[i.Index]; s > 0 && s < 1<<32-1 {
				i.SpeedMbps = s / 1_000_000
			}
		}
		out = append(out, *i)
	}
	sortInterfaces(out)
	return out, nil
}

// ARP walks ipNetToPhysicalPhysAddress (IPv4 and IPv6 neighbours) and
// ipNetToMediaPhysAddress (IPv4). It returns the table used:
// "ipNetToPhysical", "ipNetToMedia" (the only one the agent has), or
// "ipNetToPhysical+ipNetToMedia" when both list IPv4 neighbours.
//
// An IPv4 neighbour in both tables takes ipNetToMedia's MAC: net-snmp
// 5.9.3 (Debian bookworm's, what Linux routers run) updates only the
// first octet of an ipNetToPhysical row when the neighbour's MAC changes
// in place (00:00:5e:00:53:09 replaced by 02:42:ac:11:00:02 reads back as
// 02:00:5e:00:53:09, measured), while its ipNetToMedia row is right.
func (c *Client) ARP() ([]ARPEntry, string, error) {
	physical, err := c.arpPhysical()
	if err != nil {
		return nil, "", err
	}
	media, err := c.arpMedia()
	if err != nil {
		if len(physical) > 0 {
			return physical, "ipNetToPhysical", nil // the agent may refuse the old table
		}
		return nil, "", err
	}
	switch {
	case len(physical) == 0:
		return media, "ipNetToMedia", nil
	case len(media) == 0:
		return physical, "ipNetToPhysical", nil
	}
	type key struct {
		ifIndex uint32
		ip      netip.Addr
	}
	inMedia := make(map[key]int, len(media))
	for i, e := range media {
		inMedia[key{e.IfIndex, e.IP}] = i
	}
	out := make([]ARPEntry, 0, len(physical)+len(media))
	used := make([]bool, len(media))
	for _, e := range physical {
		if i, ok := inMedia[key{e.IfIndex, e.IP}]; ok {
			e.MAC, used[i] = media[i].MAC, true
		}
		out = append(out, e)
	}
	for i, e := range media {
		if !used[i] {
			out = append(out, e)
		}
	}
	return out, "ipNetToPhysical+ipNetToMedia", nil
}

func (c *Client) arpPhysical() ([]ARPEntry, error) {
	var out []ARPEntry
	err := c.walk(OIDIPNetToPhysical, func(idx []uint32, p gosnmp.SnmpPDU) {
		// ifIndex.addrType.len.addr...
		if len(idx) < 3 {
			return
		}
		ifIndex, typ, n := idx[0], idx[1], int(idx[2])
		if len(idx) != 3+n {
			return
		}
		ip, ok := addrFromIndex(idx[3:])
		if !ok || (typ == 1 && !ip.Is4()) || (typ == 2 && !ip.Is6()) {
			return
		}
		if mac, ok := macOf(p); ok {
			out = append(out, ARPEntry{IfIndex: ifIndex, IP: ip, MAC: mac})
		}
	})
	return out, err
}

func (c *Client) arpMedia() ([]ARPEntry, error) {
	var out []ARPEntry
	err := c.walk(OIDIPNetToMedia, func(idx []uint32, p gosnmp.SnmpPDU) {
		if len(idx) != 5 {
			return
		}
		ip, ok := addrFromIndex(idx[1:])
		if !ok {
			return
		}
		if mac, ok := macOf(p); ok {
			out = append(out, ARPEntry{IfIndex: idx[0], IP: ip, MAC: mac})
		}
	})
	return out, err
}

func addrFromIndex(idx []uint32) (netip.Addr, bool) {
	b := make([]byte, len(idx))
	for i, v := range idx {
		if v > 255 {
			return netip.Addr{}, false
		}
		b[i] = byte(v)
	}
	a, ok := netip.AddrFromSlice(b)
	return a, ok
}

func macOf(p gosnmp.SnmpPDU) (uint64, bool) {
	b, ok := p.Value.([]byte)
	if !ok || len(b) != 6 {
		return 0, false
	}
	mac := uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
	return mac, mac != 0
}

// Counters walks ifHCInOctets and ifHCOutOctets.
func (c *Client) Counters() ([]Counter, error) {
	byIndex := map[uint32]*Counter{}
	get := func(idx []uint32) *Counter {
		if len(idx) != 1 {
			return nil
		}
		x := byIndex[idx[0]]
		if x == nil {
			x = &Counter{IfIndex: idx[0]}
			byIndex[idx[0]] = x
		}
		return x
	}
	if err := c.walk(OIDIfHCIn, func(idx []uint32, p gosnmp.SnmpPDU) {
		if x := get(idx); x != nil {
			x.InOctets = pduUint(p)
		}
	}); err != nil {
		return nil, err
	}
	if err := c.walk(OIDIfHCOut, func(idx []uint32, p gosnmp.SnmpPDU) {
		if x := get(idx); x != nil {
			x.OutOctets = pduUint(p)
		}
	}); err != nil {
		return nil, err
	}
	out := make([]Counter, 0, len(byIndex))
	for _, x := range byIndex {
		out = append(out, *x)
	}
	return out, nil
}
