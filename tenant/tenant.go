// Package tenant says whom a flow belongs to: the tenants, and which
// exporters belong to which tenant, matched by the exporter's address.
//
// An exporter belongs to the tenant of the configured entry whose address
// or prefix holds its address, the longest prefix winning. An exporter no
// entry matches is discovered (from its flows) and belongs to the default
// tenant, as does one whose entry names no tenant.
//
// Enrichment stamps every flow with its exporter's tenant through Tenants;
// what reads the store (analytics, the API) gets the same Tenants to know
// the tenants there are. cmd/flowhouse builds one from the configuration
// and hands it to each.
package tenant

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/flowhouse/flowhouse/flow"
)

// Config is the tenants and the match of their exporters. Its keys are
// those of the enrich section (enrich.default_tenant, and match and tenant
// in each enrich.exporters entry), which enrich.Config.Tenants reads.
type Config struct {
	// Default is the tenant of exporters no entry matches.
	Default string
	// Exporters are matched by the flow's exporter address.
	Exporters []Exporter
}

// Exporter is one entry of the match: one exporter, or every exporter of
// a prefix.
type Exporter struct {
	// Match is an address (192.0.2.1) or a prefix (192.0.2.0/24).
	Match string
	// Tenant of the exporters matched; empty: the default tenant.
	Tenant string
}

// Equal reports whether c and o match the same exporters to the same
// tenants through the same entries.
func (c Config) Equal(o Config) bool {
	return c.Default == o.Default && slices.Equal(c.Exporters, o.Exporters)
}

// Validate names the wrong keys: default_tenant, exporters[i].match.
func (c Config) Validate() error {
	dflt, entries := c.Problems()
	return errors.Join(append([]error{dflt}, entries...)...)
}

// Problems are Validate's: the default tenant's (nil when it is good),
// and each entry's match in the order of the entries (nil for a good
// one), so that a caller that checks more keys per entry can report
// them entry by entry.
func (c Config) Problems() (defaultTenant error, exporters []error) {
	if strings.TrimSpace(c.Default) == "" {
		defaultTenant = errors.New("default_tenant: must not be empty")
	}
	exporters = make([]error, len(c.Exporters))
	seen := map[netip.Prefix]int{}
	for i, e := range c.Exporters {
		p, err := ParseMatch(e.Match)
		if err != nil {
			exporters[i] = fmt.Errorf("exporters[%d].match: %v", i, err)
		} else if j, dup := seen[p]; dup {
			exporters[i] = fmt.Errorf("exporters[%d].match: %s is also exporters[%d].match", i, p, j)
		} else {
			seen[p] = i
		}
	}
	return defaultTenant, exporters
}

// ParseMatch reads an address as a single-address prefix, or a prefix;
// IPv4 is mapped into IPv6 (flow.MappedPrefix).
func ParseMatch(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or a CIDR prefix", s)
		}
		return flow.MappedPrefix(p), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or a CIDR prefix", s)
	}
	return flow.MappedPrefix(netip.PrefixFrom(a, a.BitLen())), nil
}

// Tenants matches exporters to tenants. It is read-only after New and
// safe for concurrent use.
type Tenants struct {
	cfg      Config
	byPrefix map[netip.Prefix]int // index in cfg.Exporters
	lengths  []int                // prefix lengths present, longest first
	names    []string
}

// New checks cfg and builds the match.
func New(cfg Config) (*Tenants, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tenants: %w", err)
	}
	cfg.Exporters = slices.Clone(cfg.Exporters)
	t := &Tenants{cfg: cfg, byPrefix: map[netip.Prefix]int{}, names: []string{cfg.Default}}
	for i, e := range cfg.Exporters {
		p, _ := ParseMatch(e.Match) // validated
		t.byPrefix[p] = i
		if !slices.Contains(t.lengths, p.Bits()) {
			t.lengths = append(t.lengths, p.Bits())
		}
		if e.Tenant != "" && !slices.Contains(t.names, e.Tenant) {
			t.names = append(t.names, e.Tenant)
		}
	}
	slices.Sort(t.lengths)
	slices.Reverse(t.lengths)
	slices.Sort(t.names)
	return t, nil
}

// Match is what an exporter's address matched.
type Match struct {
	Tenant string
	// Entry is the index in Config.Exporters of the entry that matched,
	// -1 when none did.
	Entry int
}

// Discovered reports an exporter no entry matched: it is known from its
// flows only, and belongs to the default tenant.
func (m Match) Discovered() bool { return m.Entry < 0 }

// Match finds the tenant of the exporter at addr: the entry with the
// longest prefix holding it, else the default tenant.
func (t *Tenants) Match(addr netip.Addr) Match {
	if addr.IsValid() {
		ip := netip.AddrFrom16(addr.As16())
		for _, l := range t.lengths {
			p, _ := ip.Prefix(l)
			if i, ok := t.byPrefix[p]; ok {
				m := Match{Tenant: t.cfg.Exporters[i].Tenant, Entry: i}
				if m.Tenant == "" {
					m.Tenant = t.cfg.Default
				}
				return m
			}
		}
	}
	return Match{Tenant: t.cfg.Default, Entry: -1}
}

// Default is the tenant of exporters no entry matches.
func (t *Tenants) Default() string { return t.cfg.Default }

// Names lists every tenant, sorted: the default one and those the
// entries name.
func (t *Tenants) Names() []string { return slices.Clone(t.names) }

// Has reports whether name is one of the tenants.
func (t *Tenants) Has(name string) bool {
	_, ok := slices.BinarySearch(t.names, name)
	return ok
}

// Addresses lists the exporters configured by address (not by a wider
// prefix), in the order of the entries: they are known before their
// first flow.
func (t *Tenants) Addresses() []netip.Addr {
	var out []netip.Addr
	for _, e := range t.cfg.Exporters {
		if p, _ := ParseMatch(e.Match); p.IsSingleIP() {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}

// Config returns the configuration the match was built from.
func (t *Tenants) Config() Config {
	c := t.cfg
	c.Exporters = slices.Clone(c.Exporters)
	return c
}
