package flow

import (
	"net/netip"
	"testing"
)

func TestAddrRoundTrip(t *testing.T) {
	tests := []struct {
		in     string
		mapped string // the 16 bytes as ClickHouse shows them
	}{
		{"192.0.2.1", "::ffff:192.0.2.1"},
		{"0.0.0.1", "::ffff:0.0.0.1"},
		{"2001:db8::1", "2001:db8::1"},
		{"::1", "::1"},
	}
	for _, tc := range tests {
		ip := netip.MustParseAddr(tc.in)
		a := AddrFromNetip(ip)
		if a.String() != tc.in {
			t.Errorf("%s: String() = %s", tc.in, a)
		}
		if got := netip.AddrFrom16(a).String(); got != tc.mapped {
			t.Errorf("%s: stored as %s, want %s", tc.in, got, tc.mapped)
		}
		if b := AddrFromSlice(ip.AsSlice()); b != a {
			t.Errorf("%s: AddrFromSlice differs from AddrFromNetip", tc.in)
		}
	}
	if !AddrFromSlice([]byte{1, 2, 3}).IsZero() || (Addr{}).String() != "" {
		t.Error("a malformed or absent address must be the zero Addr")
	}
}

func TestMACFromSlice(t *testing.T) {
	if m := MACFromSlice([]byte{0x00, 0x00, 0x5e, 0x00, 0x53, 0x09}); m != 0x00005e005309 {
		t.Errorf("MAC = %x", uint64(m))
	}
	if MACFromSlice([]byte{1, 2}) != 0 {
		t.Error("short MAC must be 0")
	}
}
