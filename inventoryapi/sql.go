package inventoryapi

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/flowhouse/flowhouse/tenant"
)

// Addresses are compared in SQL as keys: the 16 bytes of the IPv4-mapped
// or IPv6 address in upper-case hex. The text round trip gives the same
// bytes on both engines (an IPv6 column on current servers, a
// FixedString(16) on 18.16), hex strings order as the addresses do, and
// a key is bound as plain text, never as raw bytes.
func keyOf(col string) string {
	return "hex(IPv6StringToNum(IPv6NumToString(" + col + ")))"
}

// addrKey is the key of an address, as keyOf computes it in SQL.
func addrKey(a netip.Addr) string {
	b := a.As16()
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// keyAddr is the address of a key read back; IPv4 unmapped.
func keyAddr(k string) (netip.Addr, bool) {
	b, err := hex.DecodeString(k)
	if err != nil || len(b) != 16 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom16([16]byte(b)).Unmap(), true
}

// sqlText is a piece of SQL with the arguments of its placeholders, in
// order.
type sqlText struct {
	text string
	args []any
}

// builder assembles a query and its arguments side by side, so that
// every argument stays next to its placeholder.
type builder struct {
	b    strings.Builder
	args []any
}

func (b *builder) add(text string, args ...any) *builder {
	b.b.WriteString(text)
	b.args = append(b.args, args...)
	return b
}

func (b *builder) addSQL(s sqlText) *builder { return b.add(s.text, s.args...) }

func (b *builder) sql() (string, []any) { return b.b.String(), b.args }

// matcher is tenant.Tenants.Match in SQL: the exporter's tenant and
// configuration entry computed from its address by the same rule (the
// longest prefix wins, else the default tenant), so that queries are
// scoped by tenant in SQL although the collector's statistics carry no
// tenant. Built once from the configuration, never from a request.
type matcher struct {
	tenants *tenant.Tenants
	// entry is a SQL expression of the index of the entry matching the
	// key (as in tenant.Match.Entry, -1 for none); it has {k} where the
	// key expression goes.
	entry     string
	entryArgs []any
	// names is the default tenant, then each entry's tenant (the default
	// when it names none): element entry+2 is the tenant.
	names []string
}

type span struct {
	lo, hi string
	bits   int
	index  int
}

func newMatcher(t *tenant.Tenants) *matcher {
	cfg := t.Config()
	m := &matcher{tenants: t, names: []string{cfg.Default}}
	var spans []span
	for i, e := range cfg.Exporters {
		name := e.Tenant
		if name == "" {
			name = cfg.Default
		}
		m.names = append(m.names, name)
		p, err := tenant.ParseMatch(e.Match)
		if err != nil {
			continue // tenant.New validated it
		}
		lo := p.Masked().Addr().As16()
		hi := lo
		for b := p.Bits(); b < 128; b++ {
			hi[b/8] |= 0x80 >> (b % 8)
		}
		spans = append(spans, span{addrKey(netip.AddrFrom16(lo)), addrKey(netip.AddrFrom16(hi)), p.Bits(), i})
	}
	// The longest prefix first: the first that holds the key wins, as
	// in tenant.Match (equal lengths never overlap).
	slices.SortStableFunc(spans, func(a, b span) int { return b.bits - a.bits })
	if len(spans) == 0 {
		m.entry = "toInt32(-1)"
		return m
	}
	var sb strings.Builder
	sb.WriteString("multiIf(")
	for _, s := range spans {
		fmt.Fprintf(&sb, "{k} >= ? AND {k} <= ?, %d, ", s.index)
		m.entryArgs = append(m.entryArgs, s.lo, s.hi)
	}
	sb.WriteString("-1)")
	m.entry = "toInt32(" + sb.String() + ")"
	return m
}

// entryOf is the entry index of the key expression k, in SQL.
func (m *matcher) entryOf(k string) sqlText {
	return sqlText{strings.ReplaceAll(m.entry, "{k}", k), m.entryArgs}
}

// tenantOf is the tenant of the key expression k, in SQL.
func (m *matcher) tenantOf(k string) sqlText {
	e := m.entryOf(k)
	return sqlText{"arrayElement(?, " + e.text + " + 2)", append([]any{m.names}, e.args...)}
}
