package tenant

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func mustNew(t *testing.T, cfg Config) *Tenants {
	t.Helper()
	ts, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// TestMatch: the longest prefix wins; no match is the default tenant and
// a discovered exporter; an entry without a tenant is the default's.
func TestMatch(t *testing.T) {
	ts := mustNew(t, Config{Default: "dflt", Exporters: []Exporter{
		{Match: "192.0.2.0/24", Tenant: "wide"}, {Match: "192.0.2.7", Tenant: "one"},
		{Match: "2001:db8::/32", Tenant: "six"}, {Match: "198.51.100.9"},
	}})
	for _, c := range []struct {
		addr   string
		tenant string
		entry  int
	}{
		{"192.0.2.7", "one", 1},        // exact
		{"192.0.2.8", "wide", 0},       // prefix
		{"::ffff:192.0.2.7", "one", 1}, // IPv4-mapped, as flows carry it
		{"2001:db8::1", "six", 2},
		{"198.51.100.9", "dflt", 3},  // matched, no tenant
		{"198.51.100.1", "dflt", -1}, // unmatched
	} {
		m := ts.Match(netip.MustParseAddr(c.addr))
		if m.Tenant != c.tenant || m.Entry != c.entry || m.Discovered() != (c.entry < 0) {
			t.Errorf("%s: %+v (discovered %v), want tenant %q entry %d", c.addr, m, m.Discovered(), c.tenant, c.entry)
		}
	}
	if m := ts.Match(netip.Addr{}); !m.Discovered() || m.Tenant != "dflt" {
		t.Errorf("invalid address: %+v", m)
	}
	if got, want := ts.Names(), []string{"dflt", "one", "six", "wide"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	if !ts.Has("six") || ts.Has("nobody") || ts.Default() != "dflt" {
		t.Errorf("Has(six) %v, Has(nobody) %v, Default() %q", ts.Has("six"), ts.Has("nobody"), ts.Default())
	}
	want := []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("198.51.100.9")}
	if got := ts.Addresses(); !slices.Equal(got, want) {
		t.Errorf("Addresses() = %v, want %v", got, want)
	}
}

func TestValidateNamesKeys(t *testing.T) {
	_, err := New(Config{Default: " ", Exporters: []Exporter{{Match: "not-an-ip"}, {Match: "192.0.2.1"}, {Match: "::ffff:192.0.2.1/128"}}})
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"default_tenant: must not be empty", `exporters[0].match: "not-an-ip" is not an address`, "exporters[2].match: ::ffff:192.0.2.1/128 is also exporters[1].match"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "exporters[1]") && !strings.Contains(err.Error(), "is also exporters[1]") {
		t.Errorf("a good entry is blamed:\n%v", err)
	}
}
