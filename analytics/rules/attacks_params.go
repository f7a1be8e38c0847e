package rules

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Parameter checks shared by the attack and scan rules: each appends an
// error named by the key.
type paramErrs []error

func (e *paramErrs) add(key, format string, args ...any) {
	*e = append(*e, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
}

// window: at least 10 s (exporters report at their active timeout, a
// shorter window sees a fraction of the traffic) and at most an hour.
func (e *paramErrs) window(key string, d time.Duration) {
	if d < 10*time.Second || d > time.Hour {
		e.add(key, "%s is outside 10s..1h", d)
	}
}

func (e *paramErrs) positive(key string, v float64) {
	if !(v > 0) || math.IsInf(v, 0) {
		e.add(key, "%v is not a positive number", v)
	}
}

func (e *paramErrs) share(key string, v float64) {
	if !(v > 0 && v <= 1) {
		e.add(key, "%v is outside (0, 1]", v)
	}
}

func (e *paramErrs) ports(key string, ports []int, empty bool) {
	if len(ports) == 0 && !empty {
		e.add(key, "names no port")
	}
	for _, p := range ports {
		if p < 1 || p > 65535 {
			e.add(key, "%d is not a port (1..65535)", p)
		}
	}
}

func (e *paramErrs) prefixes(key string, list []string) {
	if _, err := parsePrefixes(list); err != nil {
		e.add(key, "%v", err)
	}
}

// parsePrefixes reads CIDR prefixes or single addresses.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a prefix", s)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(0, p.Bits()-96))
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// ignoredAddr reports whether addr (as ParseAddr renders it) is in one of
// the prefixes. The lists are validated, so a parse error ignores nothing.
func ignoredAddr(list []string, addr string) bool {
	if len(list) == 0 {
		return false
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	prefixes, _ := parsePrefixes(list)
	for _, p := range prefixes {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

func toPorts(ports []int) []uint16 {
	out := make([]uint16, 0, len(ports))
	for _, p := range ports {
		if p >= 1 && p <= 65535 {
			out = append(out, uint16(p))
		}
	}
	return out
}

func hasPort(ports []int, p uint16) bool {
	for _, x := range ports {
		if x == int(p) {
			return true
		}
	}
	return false
}

// fmtWindow writes a window of secs seconds as "60s".
func fmtWindow(secs float64) string { return strconv.FormatFloat(secs, 'f', -1, 64) + "s" }

// The slicing of each rule's parameters.
func (p AmplificationParams) slicing() slicing { return slicing{p.Window, p.Slice, p.Settle} }
func (p SYNFloodParams) slicing() slicing      { return slicing{p.Window, p.Slice, p.Settle} }
func (p UDPFloodParams) slicing() slicing      { return slicing{p.Window, p.Slice, p.Settle} }
func (p ICMPFloodParams) slicing() slicing     { return slicing{p.Window, p.Slice, p.Settle} }
func (p PortScanParams) slicing() slicing      { return slicing{p.Window, p.Slice, p.Settle} }
func (p HostScanParams) slicing() slicing      { return slicing{p.Window, p.Slice, p.Settle} }
