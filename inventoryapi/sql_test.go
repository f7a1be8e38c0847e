package inventoryapi

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/tenant"
)

func TestMain(m *testing.M) { enginetest.Main(m) }

// The SQL match is tenant.Match, on both engines: for addresses at the
// edges of every prefix, inside and just outside, nested prefixes of
// other tenants, IPv4 and IPv6, and random ones.
func TestMatcherIsTenantMatch(t *testing.T) {
	ts, err := tenant.New(tenant.Config{Default: "dflt", Exporters: []tenant.Exporter{
		{Match: "10.0.0.0/8", Tenant: "a"}, {Match: "10.1.0.0/16", Tenant: "b"}, {Match: "10.1.2.3", Tenant: "a"},
		{Match: "10.1.2.0/24"}, {Match: "2001:db8::/32", Tenant: "b"}, {Match: "2001:db8:1::/48", Tenant: "c"},
		{Match: "::ffff:192.0.2.0/120", Tenant: "c"}, {Match: "0.0.0.0/1", Tenant: "low"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var addrs []netip.Addr
	for _, s := range []string{"10.0.0.0", "9.255.255.255", "10.255.255.255", "11.0.0.0", "10.1.0.0", "10.0.255.255", "10.1.255.255",
		"10.2.0.0", "10.1.2.3", "10.1.2.2", "10.1.2.4", "10.1.2.255", "10.1.3.0", "2001:db8::", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
		"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::", "2001:db8:1::", "2001:db8:1:ffff::1", "2001:db8:2::", "192.0.2.0",
		"192.0.2.255", "192.0.3.0", "0.0.0.0", "127.255.255.255", "128.0.0.0", "::", "::1", "ffff::1"} {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var b [16]byte
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		if r.UintN(2) == 0 {
			addrs = append(addrs, netip.AddrFrom4([4]byte{10, byte(r.UintN(3)), byte(r.UintN(4)), byte(r.UintN(256))}))
		} else {
			addrs = append(addrs, netip.AddrFrom16(b))
		}
	}
	m := newMatcher(ts)
	enginetest.Each(t, nil, func(t *testing.T, e enginetest.Engine) {
		for _, a := range addrs {
			b := &builder{}
			b.add("SELECT ").addSQL(m.tenantOf("k")).add(", ").addSQL(m.entryOf("k")).add(" FROM (SELECT ? AS k)", addrKey(a))
			q, args := b.sql()
			var got string
			var entry int32
			if err := dbapi.QueryRow(context.Background(), e.Reader, []any{&got, &entry}, q, args...); err != nil {
				t.Fatal(err)
			}
			want := ts.Match(a)
			if got != want.Tenant || int(entry) != want.Entry {
				t.Errorf("%s: SQL says %s (entry %d), tenant.Match %s (entry %d)", a, got, entry, want.Tenant, want.Entry)
			}
		}
	})
}

func TestAddrKeyRoundTrip(t *testing.T) {
	for _, s := range []string{"192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1", "::"} {
		a := netip.MustParseAddr(s)
		got, ok := keyAddr(addrKey(a))
		if !ok || got != a.Unmap() || len(addrKey(a)) != 32 {
			t.Errorf("%s: key %s back to %s", s, addrKey(a), got)
		}
	}
	if _, ok := keyAddr("zz"); ok {
		t.Error("a key that is not hex")
	}
}

func TestParseMAC(t *testing.T) {
	tests := []struct {
		in     string
		prefix bool
		lo, hi uint64
		ok     bool
	}{
		{"00:00:0c:12:34:56", false, 0x00000c123456, 0x00000c123456, true},
		{"AA-BB-CC-DD-EE-FF", false, 0xaabbccddeeff, 0xaabbccddeeff, true},
		{"00:00:0c", true, 0x00000c000000, 0x00000cffffff, true},
		{"3c", true, 0x3c0000000000, 0x3cffffffffff, true},
		{"00:00:0c", false, 0, 0, false},
		{"00:00:0c:12:34:56:78", true, 0, 0, false},
		{"0:0:c:12:34:56", false, 0, 0, false},
		{"00:00-0c:12:34:56", false, 0, 0, false},
		{"", true, 0, 0, false},
		{"+1:00:00:00:00:00", false, 0, 0, false},
	}
	for _, tt := range tests {
		lo, hi, err := parseMAC(tt.in, tt.prefix)
		if (err == nil) != tt.ok || lo != tt.lo || hi != tt.hi {
			t.Errorf("parseMAC(%q, %v) = %x, %x, %v", tt.in, tt.prefix, lo, hi, err)
		}
	}
	if s := formatMAC(0x00000c123456); s != "00:00:0c:12:34:56" {
		t.Errorf("formatMAC: %s", s)
	}
}
