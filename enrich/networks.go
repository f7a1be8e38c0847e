package enrich

import (
	"net/netip"
	"slices"

	"github.com/flowhouse/flowhouse/flow"
)

// Network is the attributes a NetworkConfig gives its addresses.
type Network struct {
	Prefix netip.Prefix // as configured
	Tenant string       // "" for every tenant
	Name   string
	Role   string
	Site   string
}

type netKey struct {
	tenant string
	prefix netip.Prefix // normalized: IPv4 mapped into IPv6
}

// networks looks up the longest configured prefix holding an address,
// preferring an entry of the flow's tenant over a global one of the same
// length. Read-only after New.
type networks struct {
	byKey   map[netKey]*Network
	lengths []int // prefix lengths present, longest first
}

func newNetworks(cfg []NetworkConfig) *networks {
	n := &networks{byKey: map[netKey]*Network{}}
	for _, c := range cfg {
		p, err := netip.ParsePrefix(c.Prefix)
		if err != nil {
			continue // validated
		}
		np := flow.MappedPrefix(p)
		n.byKey[netKey{c.Tenant, np}] = &Network{Prefix: p.Masked(), Tenant: c.Tenant, Name: c.Name, Role: c.Role, Site: c.Site}
		if !slices.Contains(n.lengths, np.Bits()) {
			n.lengths = append(n.lengths, np.Bits())
		}
	}
	slices.Sort(n.lengths)
	slices.Reverse(n.lengths)
	return n
}

func (n *networks) lookup(tenant string, a flow.Addr) *Network {
	if len(n.lengths) == 0 || a.IsZero() {
		return nil
	}
	ip := netip.AddrFrom16(a)
	for _, l := range n.lengths {
		p, _ := ip.Prefix(l)
		if nw := n.byKey[netKey{tenant, p}]; nw != nil {
			return nw
		}
		if tenant != "" {
			if nw := n.byKey[netKey{"", p}]; nw != nil {
				return nw
			}
		}
	}
	return nil
}
