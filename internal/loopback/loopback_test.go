package loopback

import "testing"

func TestLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:6060", true}, {"127.8.9.10:1", true}, {"[::1]:6060", true}, {"localhost:6060", true},
		{":6060", false}, {"0.0.0.0:6060", false}, {"[::]:6060", false}, {"192.0.2.1:6060", false},
		{"127.0.0.1", false}, {"127.0.0.1:70000", false}, {"127.0.0.1:http", false}, {"example.org:80", false},
	} {
		if got := Addr(tc.addr); got != tc.want {
			t.Errorf("Addr(%q) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	for _, tc := range []struct {
		host string
		want bool
	}{{"localhost", true}, {"127.0.0.1", true}, {"::1", true}, {"", false}, {"10.0.0.1", false}, {"localhost.example.org", false}} {
		if got := Host(tc.host); got != tc.want {
			t.Errorf("Host(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}
