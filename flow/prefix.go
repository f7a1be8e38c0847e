package flow

import "net/netip"

// MappedPrefix is p masked, an IPv4 prefix mapped into IPv6
// (::ffff:0:0/96) as Addr maps IPv4 addresses, so that one table of
// prefixes holds both families as flows carry them.
func MappedPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4() {
		return netip.PrefixFrom(netip.AddrFrom16(p.Addr().As16()), p.Bits()+96).Masked()
	}
	return p.Masked()
}
