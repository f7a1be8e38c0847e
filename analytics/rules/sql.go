package rules

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Helpers for the SQL of built-in rules. Every query must run on both
// engines: the embedded one (current ClickHouse) and servers down to
// 18.16.

// ReceivedWithin is the condition on time_received for the window of
// length d that ends at now: [now-d, now). Windows are on the time a flow
// was received, not its start: exporters report long flows only at their
// active timeout (15 to 60 s), so a window on flow_start would miss what
// is still in flight.
func ReceivedWithin(now time.Time, d time.Duration) string {
	to := now.UTC().Unix()
	from := now.Add(-d).UTC().Unix()
	return fmt.Sprintf("time_received >= toDateTime(%d, 'UTC') AND time_received < toDateTime(%d, 'UTC')", from, to)
}

// TenantIn is the condition tenant IN (...) for the tenants given, as
// quoted literals (tenant names are validated, but quote anyway).
func TenantIn(column string, tenants []string) string {
	if len(tenants) == 0 {
		return "0"
	}
	q := make([]string, len(tenants))
	for i, t := range tenants {
		q[i] = quote(t)
	}
	return column + " IN (" + strings.Join(q, ", ") + ")"
}

func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// AddrText is the SQL that renders an address column as text on both
// engines; ParseAddr reads it back.
func AddrText(column string) string { return "IPv6NumToString(" + column + ")" }

// ParseAddr reads an address AddrText rendered and returns it without its
// IPv4 mapping ("::ffff:192.0.2.1" is "192.0.2.1").
func ParseAddr(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	return a.Unmap().String()
}

// Bits is the SQL of a sampling-scaled volume in bits: what the exporter
// saw, not what it reported.
const Bits = "bytes * sampling_rate * 8"

// Packets is the SQL of sampling-scaled packets.
const Packets = "packets * sampling_rate"

// HumanBits formats a rate in bits per second ("412 Mbit/s").
func HumanBits(bps float64) string { return human(bps, "bit/s") }

// HumanPackets formats a rate in packets per second ("52.1 kpps").
func HumanPackets(pps float64) string { return human(pps, "pps") }

func human(v float64, unit string) string {
	prefixes := []string{"", "k", "M", "G", "T"}
	i := 0
	for v >= 1000 && i < len(prefixes)-1 {
		v /= 1000
		i++
	}
	if unit == "pps" && i > 0 {
		return fmt.Sprintf("%.3g %spps", v, prefixes[i])
	}
	return fmt.Sprintf("%.3g %s%s", v, prefixes[i], unit)
}
