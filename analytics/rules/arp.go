package rules

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/notify"
)

// ARP security, arpwatch's model: per (tenant, IP address) the MACs it
// answered with, by recency, from the exporters' ARP/ND tables as enrich
// records them in arp_observations (a row when an entry appears, changes,
// goes, and a refresh every observation_refresh while it stays). The four
// rules below read it.

// Events of arp_observations (enrich's names).
const (
	arpEventNew     = "new"
	arpEventChanged = "changed"
	arpEventRefresh = "refresh"
	arpEventGone    = "gone"
)

// fhrpPrefixes are the virtual MACs of first-hop redundancy protocols:
// routers share them by design, so they change hands, answer for many
// gateway addresses and appear with every failover. Every ARP rule
// ignores them. A MAC m matches when m >> shift == value.
var fhrpPrefixes = []struct {
	name  string
	shift uint
	value uint64
}{
	{"VRRP", 8, 0x00005e0001},   // 00:00:5e:00:01:xx (RFC 5798, IPv4)
	{"VRRPv6", 8, 0x00005e0002}, // 00:00:5e:00:02:xx (RFC 5798, IPv6)
	{"HSRP", 8, 0x00000c07ac},   // 00:00:0c:07:ac:xx (HSRP v1)
	{"HSRPv2", 12, 0x00000c9ff}, // 00:00:0c:9f:fx:xx (HSRP v2)
	{"GLBP", 24, 0x0007b4},      // 00:07:b4:xx:xx:xx
}

// isFHRP reports whether mac is a first-hop redundancy virtual MAC.
func isFHRP(mac uint64) bool {
	for _, p := range fhrpPrefixes {
		if mac>>p.shift == p.value {
			return true
		}
	}
	return false
}

// notFHRP is the SQL condition that column is no FHRP virtual MAC, with
// intDiv rather than bit shifts so that it reads the same on 18.16.
func notFHRP(column string) string {
	conds := make([]string, len(fhrpPrefixes))
	for i, p := range fhrpPrefixes {
		conds[i] = fmt.Sprintf("intDiv(%s, %d) != %d", column, uint64(1)<<p.shift, p.value)
	}
	return "(" + strings.Join(conds, " AND ") + ")"
}

// locallyAdministered reports the U/L bit (0x02 of the first octet):
// the MAC was not assigned by a vendor (containers, VMs, randomised
// phone MACs), so it has no vendor either.
func locallyAdministered(mac uint64) bool { return mac&(0x02<<40) != 0 }

// FormatMAC writes a 48-bit MAC as lower-case colon-separated hex.
func FormatMAC(mac uint64) string {
	b := make([]byte, 6)
	for i := range b {
		b[i] = byte(mac >> (40 - 8*i))
	}
	return net.HardwareAddr(b).String()
}

// ParseMAC reads a 48-bit MAC (00:00:5e:00:53:01, 00-00-5E-00-53-01 or
// 0000.5e00.5301) into the number arp_observations stores.
func ParseMAC(s string) (uint64, error) {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return 0, err
	}
	if len(hw) != 6 {
		return 0, fmt.Errorf("%q is not a 48-bit MAC", s)
	}
	var m uint64
	for _, b := range hw {
		m = m<<8 | uint64(b)
	}
	return m, nil
}

// describeMAC is a MAC with what is known of its maker, for summaries:
// "00:00:0c:12:34:56 (Cisco Systems, Inc)", "02:42:ac:11:00:02 (locally
// administered)".
func describeMAC(mac uint64, vendor string) string {
	switch {
	case vendor != "":
		return FormatMAC(mac) + " (" + vendor + ")"
	case locallyAdministered(mac):
		return FormatMAC(mac) + " (locally administered)"
	}
	return FormatMAC(mac) + " (unknown vendor)"
}

// TimeWithin is the condition on the time column (whole seconds) of the
// enrichment tables for [from, to], to's second included: evaluations
// run at whole seconds, and a poll that ended in the same second as the
// evaluation began has rows of that second, which must count now rather
// than a whole interval later.
func TimeWithin(column string, from, to time.Time) string {
	return fmt.Sprintf("%s >= toDateTime(%d, 'UTC') AND %s <= toDateTime(%d, 'UTC')",
		column, from.UTC().Unix(), column, to.UTC().Unix())
}

// arpRow is one row of arp_observations.
type arpRow struct {
	Tenant, IP, Exporter string
	IfIndex              uint32
	MAC                  uint64
	Vendor, Event        string
	At                   time.Time
}

// arpTransition is one change of the MAC an address answered with, as
// one exporter saw it.
type arpTransition struct {
	At                   time.Time
	From, To             uint64
	FromVendor, ToVendor string
	// FromSince is the first row of the From MAC's run; zero when the run
	// began before the rows read (the entry was there already).
	FromSince time.Time
	Exporter  string
	IfIndex   uint32
}

// transitions reads one exporter's rows of one address, in time order,
// as a list of MAC changes. Rows of FHRP MACs are skipped. A "gone"
// between two MACs does not hide the change: the address went from one
// MAC to another either way (a device replaced, or two hosts taking
// turns as their ARP entries expire).
func transitions(rows []arpRow) []arpTransition {
	var (
		out    []arpTransition
		have   bool
		cur    uint64
		vendor string
		since  time.Time
	)
	for _, r := range rows {
		if isFHRP(r.MAC) {
			continue
		}
		if !have {
			have, cur, vendor, since = true, r.MAC, r.Vendor, r.At
			if r.Event == arpEventRefresh || r.Event == arpEventGone {
				since = time.Time{}
			}
			continue
		}
		if r.MAC == cur {
			continue
		}
		out = append(out, arpTransition{At: r.At, From: cur, To: r.MAC, FromVendor: vendor, ToVendor: r.Vendor,
			FromSince: since, Exporter: r.Exporter, IfIndex: r.IfIndex})
		cur, vendor, since = r.MAC, r.Vendor, r.At
	}
	return out
}

// ipHistory is one address of one tenant: its rows per exporter, each in
// time order.
type ipHistory struct {
	Tenant, IP string
	ByExporter map[string][]arpRow
}

// loadIPHistory reads the rows of [from, to) of the addresses of tenants
// that answered with two MACs or more (FHRP MACs aside) in that range and
// had a new or changed entry since changedSince: only those can have
// changed within the window. Most addresses never change, so the rows
// come back for a few.
func loadIPHistory(ctx context.Context, db dbapi.Querier, tenants []string, from, changedSince, to time.Time) ([]ipHistory, error) {
	where := TenantIn("tenant", tenants) + " AND " + TimeWithin("time", from, to) + " AND " + notFHRP("mac")
	q := fmt.Sprintf(`SELECT toString(tenant), %s, %s, if_index, mac, toString(vendor), toString(event), time_ms
FROM arp_observations
WHERE %s AND (tenant, ip_address) IN (
    SELECT tenant, ip_address FROM arp_observations WHERE %s
    GROUP BY tenant, ip_address
    HAVING uniqExact(mac) >= 2 AND countIf(event IN ('%s', '%s') AND time >= toDateTime(%d, 'UTC')) > 0)
ORDER BY tenant, ip_address, exporter_address, time_ms`,
		AddrText("ip_address"), AddrText("exporter_address"), where, where,
		arpEventNew, arpEventChanged, changedSince.UTC().Unix())
	rows, err := db.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("arp history: %w", err)
	}
	defer rows.Close()
	var out []ipHistory
	for rows.Next() {
		var r arpRow
		var ms uint64
		if err := rows.Scan(&r.Tenant, &r.IP, &r.Exporter, &r.IfIndex, &r.MAC, &r.Vendor, &r.Event, &ms); err != nil {
			return nil, fmt.Errorf("arp history: %w", err)
		}
		r.IP, r.Exporter = ParseAddr(r.IP), ParseAddr(r.Exporter)
		r.At = time.UnixMilli(int64(ms)).UTC()
		if n := len(out); n == 0 || out[n-1].Tenant != r.Tenant || out[n-1].IP != r.IP {
			out = append(out, ipHistory{Tenant: r.Tenant, IP: r.IP, ByExporter: map[string][]arpRow{}})
		}
		h := &out[len(out)-1]
		h.ByExporter[r.Exporter] = append(h.ByExporter[r.Exporter], r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("arp history: %w", err)
	}
	return out, nil
}

// exporters are the keys of m, sorted, so that ties are broken the same
// way on every run.
func exporters(m map[string][]arpRow) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// positive names the durations that are not above zero.
func positive(ds ...durationKey) []error {
	var errs []error
	for _, d := range ds {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: %s must be positive", d.key, d.v))
		}
	}
	return errs
}

type durationKey struct {
	key string
	v   time.Duration
}

// when formats a time for summaries.
func when(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// after keeps the rows at or after from (rows are read for the loosest
// tenant; each tenant looks back only as far as its own parameters say).
func after(rows []arpRow, from time.Time) []arpRow {
	i := 0
	for i < len(rows) && rows[i].At.Before(from) {
		i++
	}
	return rows[i:]
}

// ---- arp_mac_change --------------------------------------------------

// ARPMACChangeParams are the parameters of arp_mac_change.
type ARPMACChangeParams struct {
	// Window: a change this recent is reported; the alert resolves when
	// the latest change is older.
	Window time.Duration `mapstructure:"window" yaml:"window"`
	// MinKnown: the address must have answered with the previous MAC for
	// this long before the change (a fresh binding changing is no news).
	MinKnown time.Duration `mapstructure:"min_known" yaml:"min_known"`
	// ObservationRefresh is enrich.polling.observation_refresh: how far
	// back a steady entry last wrote a row, so how far before the window
	// the previous MAC is looked for.
	ObservationRefresh time.Duration `mapstructure:"-" yaml:"-"`
}

// Validate names the wrong keys.
func (p ARPMACChangeParams) Validate() error {
	return errors.Join(positive(durationKey{"window", p.Window}, durationKey{"min_known", p.MinKnown})...)
}

// ARPMACChange: a known address now answers with another MAC.
var ARPMACChange = Kind[ARPMACChangeParams]{
	Name:        "arp_mac_change",
	Description: "An address that answered with one MAC for at least min_known now answers with another (device replaced, failover, or ARP spoofing).",
	Defaults: func() Builtin[ARPMACChangeParams] {
		return Builtin[ARPMACChangeParams]{Enabled: true, Interval: time.Minute, Timeout: 30 * time.Second,
			Severity: notify.SeverityWarning,
			Params:   ARPMACChangeParams{Window: time.Hour, MinKnown: 30 * time.Minute}}
	},
	Config: func(c *BuiltinConfig) *Builtin[ARPMACChangeParams] { return &c.ARPMACChange },
	New:    func(Deps) (Evaluator[ARPMACChangeParams], error) { return arpMACChange{}, nil },
}

type arpMACChange struct{}

func (arpMACChange) Evaluate(ctx context.Context, env *Env[ARPMACChangeParams]) ([]Finding, error) {
	if len(env.Tenants) == 0 {
		return nil, nil
	}
	var look, win time.Duration
	for _, t := range env.Tenants {
		p := env.Params(t)
		look, win = max(look, p.Window+p.MinKnown+refreshOr(p.ObservationRefresh)), max(win, p.Window)
	}
	hs, err := loadIPHistory(ctx, env.DB, env.Tenants, env.Now.Add(-look), env.Now.Add(-win), env.Now)
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, h := range hs {
		if f, ok := macChangeOf(h, env.Params(h.Tenant), env.Now); ok {
			out = append(out, f)
		}
	}
	return out, nil
}

// macChangeOf finds the latest change within the window, seen by any
// exporter, whose previous MAC had been known for min_known.
func macChangeOf(h ipHistory, p ARPMACChangeParams, now time.Time) (Finding, bool) {
	from := now.Add(-(p.Window + p.MinKnown + refreshOr(p.ObservationRefresh)))
	var (
		best    arpTransition
		found   bool
		changes int
	)
	for _, x := range exporters(h.ByExporter) {
		n := 0
		var last arpTransition
		var ok bool
		for _, tr := range transitions(after(h.ByExporter[x], from)) {
			if tr.At.Before(now.Add(-p.Window)) {
				continue
			}
			n++
			if tr.FromSince.IsZero() || tr.At.Sub(tr.FromSince) >= p.MinKnown {
				last, ok = tr, true
			}
		}
		if ok && (!found || last.At.After(best.At)) {
			best, found, changes = last, true, n
		}
	}
	if !found {
		return Finding{}, false
	}
	known := "before " + when(from)
	if !best.FromSince.IsZero() {
		known = fmt.Sprintf("since %s (%s)", when(best.FromSince), best.At.Sub(best.FromSince).Round(time.Second))
	}
	summary := fmt.Sprintf("%s moved from %s to %s on exporter %s ifIndex %d", h.IP,
		describeMAC(best.From, best.FromVendor), describeMAC(best.To, best.ToVendor), best.Exporter, best.IfIndex)
	return Finding{Tenant: h.Tenant, Instance: alerts.Instance{
		Labels: map[string]string{"ip_address": h.IP},
		Value:  float64(changes),
		Annotations: map[string]string{
			"summary": summary,
			"description": fmt.Sprintf("%s answered with %s %s, and with %s from %s on. A known address changing its MAC is a replaced device or NIC, a failover, or ARP spoofing; %d change(s) within %s.",
				h.IP, FormatMAC(best.From), known, FormatMAC(best.To), when(best.At), changes, p.Window),
			"previous_mac": FormatMAC(best.From),
			"mac":          FormatMAC(best.To),
			"exporter":     best.Exporter,
			"if_index":     fmt.Sprint(best.IfIndex),
			"changed_at":   best.At.Format(time.RFC3339),
		},
	}}, true
}

// ---- arp_flip_flop ---------------------------------------------------

// ARPFlipFlopParams are the parameters of arp_flip_flop.
type ARPFlipFlopParams struct {
	// Window over which changes are counted; the alert resolves when the
	// window no longer holds min_changes.
	Window time.Duration `mapstructure:"window" yaml:"window"`
	// MinChanges between the same two MACs (either way) that fire; at
	// least 2 (A to B and back).
	MinChanges int `mapstructure:"min_changes" yaml:"min_changes"`
	// ObservationRefresh is enrich.polling.observation_refresh (how far
	// before the window the MAC before the first change is looked for).
	ObservationRefresh time.Duration `mapstructure:"-" yaml:"-"`
}

// Validate names the wrong keys.
func (p ARPFlipFlopParams) Validate() error {
	errs := positive(durationKey{"window", p.Window})
	if p.MinChanges < 2 {
		errs = append(errs, fmt.Errorf("min_changes: %d is below 2 (a flip-flop is a change and a change back)", p.MinChanges))
	}
	return errors.Join(errs...)
}

// ARPFlipFlop: an address keeps switching between two MACs.
var ARPFlipFlop = Kind[ARPFlipFlopParams]{
	Name:        "arp_flip_flop",
	Description: "An address switches back and forth between two MACs, min_changes times within the window: a duplicate IP address or ARP spoofing.",
	Defaults: func() Builtin[ARPFlipFlopParams] {
		return Builtin[ARPFlipFlopParams]{Enabled: true, Interval: time.Minute, Timeout: 30 * time.Second,
			Severity: notify.SeverityError,
			Params:   ARPFlipFlopParams{Window: time.Hour, MinChanges: 3}}
	},
	Config: func(c *BuiltinConfig) *Builtin[ARPFlipFlopParams] { return &c.ARPFlipFlop },
	New:    func(Deps) (Evaluator[ARPFlipFlopParams], error) { return arpFlipFlop{}, nil },
}

type arpFlipFlop struct{}

func (arpFlipFlop) Evaluate(ctx context.Context, env *Env[ARPFlipFlopParams]) ([]Finding, error) {
	if len(env.Tenants) == 0 {
		return nil, nil
	}
	var look, win time.Duration
	for _, t := range env.Tenants {
		p := env.Params(t)
		look, win = max(look, p.Window+refreshOr(p.ObservationRefresh)), max(win, p.Window)
	}
	hs, err := loadIPHistory(ctx, env.DB, env.Tenants, env.Now.Add(-look), env.Now.Add(-win), env.Now)
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, h := range hs {
		if f, ok := flipFlopOf(h, env.Params(h.Tenant), env.Now); ok {
			out = append(out, f)
		}
	}
	return out, nil
}

// flipFlop is the pair of MACs an exporter saw an address switch between
// most often within the window.
type flipFlop struct {
	a, b    uint64
	changes int
	last    arpTransition
	vendors map[uint64]string
}

// flipFlopOf counts, per exporter, the changes between each pair of MACs
// within the window and keeps the exporter and pair with the most.
// Exporters are counted apart: two routers on one segment refresh their
// entries at different times, and merging their rows would make one
// change look like several.
func flipFlopOf(h ipHistory, p ARPFlipFlopParams, now time.Time) (Finding, bool) {
	from := now.Add(-(p.Window + refreshOr(p.ObservationRefresh)))
	var best flipFlop
	for _, x := range exporters(h.ByExporter) {
		counts := map[[2]uint64]int{}
		vendors := map[uint64]string{}
		lasts := map[[2]uint64]arpTransition{}
		for _, tr := range transitions(after(h.ByExporter[x], from)) {
			vendors[tr.From], vendors[tr.To] = tr.FromVendor, tr.ToVendor
			if tr.At.Before(now.Add(-p.Window)) {
				continue
			}
			k := [2]uint64{min(tr.From, tr.To), max(tr.From, tr.To)}
			counts[k]++
			lasts[k] = tr
		}
		for k, n := range counts {
			better := n > best.changes || (n == best.changes && lasts[k].At.After(best.last.At))
			if better {
				best = flipFlop{a: k[0], b: k[1], changes: n, last: lasts[k], vendors: vendors}
			}
		}
	}
	if best.changes < p.MinChanges {
		return Finding{}, false
	}
	cur, prev := best.last.To, best.last.From
	summary := fmt.Sprintf("%s flipped %d times between %s and %s within %s on exporter %s ifIndex %d: duplicate IP address or ARP spoofing",
		h.IP, best.changes, describeMAC(prev, best.vendors[prev]), describeMAC(cur, best.vendors[cur]), p.Window,
		best.last.Exporter, best.last.IfIndex)
	return Finding{Tenant: h.Tenant, Instance: alerts.Instance{
		Labels: map[string]string{"ip_address": h.IP},
		Value:  float64(best.changes),
		Annotations: map[string]string{
			"summary": summary,
			"description": fmt.Sprintf("Two stations answer for %s: its ARP/ND entry changed %d times between %s and %s in the last %s, last at %s (now %s). Either two hosts are configured with the same address, or one of them spoofs ARP to intercept the other's traffic.",
				h.IP, best.changes, FormatMAC(prev), FormatMAC(cur), p.Window, when(best.last.At), FormatMAC(cur)),
			"macs":       FormatMAC(best.a) + "," + FormatMAC(best.b),
			"mac":        FormatMAC(cur),
			"changes":    fmt.Sprint(best.changes),
			"exporter":   best.last.Exporter,
			"if_index":   fmt.Sprint(best.last.IfIndex),
			"changed_at": best.last.At.Format(time.RFC3339),
		},
	}}, true
}

// ---- arp_mac_many_ips ------------------------------------------------

// ARPMACManyIPsParams are the parameters of arp_mac_many_ips.
type ARPMACManyIPsParams struct {
	// MinIPv4 and MinIPv6: a MAC currently answering for this many IPv4
	// (or IPv6) addresses fires. IPv6 is counted apart and higher: one
	// host has a link-local, a stable and several temporary addresses.
	MinIPv4 int `mapstructure:"min_ipv4" yaml:"min_ipv4"`
	MinIPv6 int `mapstructure:"min_ipv6" yaml:"min_ipv6"`
	// ExcludeMACs are never reported: routers answering for the
	// addresses behind them (proxy ARP), load balancers, L3 switches
	// whose interfaces share one MAC.
	ExcludeMACs []string `mapstructure:"exclude_macs" yaml:"exclude_macs"`
	// ObservationRefresh is enrich.polling.observation_refresh: an entry
	// whose last row is older than twice that is no longer current.
	ObservationRefresh time.Duration `mapstructure:"-" yaml:"-"`
}

// Validate names the wrong keys.
func (p ARPMACManyIPsParams) Validate() error {
	var errs []error
	if p.MinIPv4 < 2 {
		errs = append(errs, fmt.Errorf("min_ipv4: %d is below 2", p.MinIPv4))
	}
	if p.MinIPv6 < 2 {
		errs = append(errs, fmt.Errorf("min_ipv6: %d is below 2", p.MinIPv6))
	}
	for i, s := range p.ExcludeMACs {
		if _, err := ParseMAC(s); err != nil {
			errs = append(errs, fmt.Errorf("exclude_macs[%d]: %q is not a MAC: %v", i, s, err))
		}
	}
	return errors.Join(errs...)
}

func (p ARPMACManyIPsParams) excluded(mac uint64) bool {
	for _, s := range p.ExcludeMACs {
		if m, err := ParseMAC(s); err == nil && m == mac {
			return true
		}
	}
	return false
}

// ARPMACManyIPs: one MAC answers for many addresses.
var ARPMACManyIPs = Kind[ARPMACManyIPsParams]{
	Name:        "arp_mac_many_ips",
	Description: "One MAC currently answers for min_ipv4 IPv4 (or min_ipv6 IPv6) addresses or more: ARP spoofing of a range, or a router doing proxy ARP (exclude it).",
	Defaults: func() Builtin[ARPMACManyIPsParams] {
		return Builtin[ARPMACManyIPsParams]{Enabled: true, Interval: time.Minute, Timeout: 30 * time.Second,
			Severity: notify.SeverityWarning,
			Params:   ARPMACManyIPsParams{MinIPv4: 8, MinIPv6: 32}}
	},
	Config: func(c *BuiltinConfig) *Builtin[ARPMACManyIPsParams] { return &c.ARPMACManyIPs },
	New:    func(Deps) (Evaluator[ARPMACManyIPsParams], error) { return arpMACManyIPs{}, nil },
}

type arpMACManyIPs struct{}

// manyIPsSQL: the current entry of each (exporter, address) — its latest
// row, unless "gone" — grouped by MAC. MACs that answer for an exporter's
// own address (exporter_attributes) are router MACs and left out: a
// router's MAC is the one the addresses behind it resolve to when it
// does proxy ARP.
const manyIPsSQL = `SELECT toString(tenant), cur_mac, any(cur_vendor),
    uniqExactIf(ip_address, substring(IPv6NumToString(ip_address), 1, 7) = '::ffff:') AS v4,
    uniqExactIf(ip_address, substring(IPv6NumToString(ip_address), 1, 7) != '::ffff:') AS v6,
    arraySlice(arraySort(groupUniqArray(IPv6NumToString(ip_address))), 1, 8),
    arraySort(groupUniqArray(IPv6NumToString(exporter_address)))
FROM (
    SELECT tenant, exporter_address, ip_address, argMax(mac, time_ms) AS cur_mac,
        argMax(event, time_ms) AS cur_event, toString(argMax(vendor, time_ms)) AS cur_vendor
    FROM arp_observations WHERE %[1]s
    GROUP BY tenant, exporter_address, ip_address)
WHERE cur_event != 'gone' AND %[2]s AND (tenant, cur_mac) NOT IN (
    SELECT tenant, router_mac FROM (
        SELECT tenant, argMax(mac, time_ms) AS router_mac FROM arp_observations
        WHERE %[1]s AND (tenant, ip_address) IN (SELECT tenant, exporter_address FROM exporter_attributes WHERE %[3]s)
        GROUP BY tenant, exporter_address, ip_address))
GROUP BY tenant, cur_mac
HAVING v4 >= %[4]d OR v6 >= %[5]d
ORDER BY tenant, cur_mac`

func (arpMACManyIPs) Evaluate(ctx context.Context, env *Env[ARPMACManyIPsParams]) ([]Finding, error) {
	if len(env.Tenants) == 0 {
		return nil, nil
	}
	look, minV4, minV6 := time.Duration(0), 0, 0
	for i, t := range env.Tenants {
		p := env.Params(t)
		look = max(look, 2*refreshOr(p.ObservationRefresh))
		if i == 0 || p.MinIPv4 < minV4 {
			minV4 = p.MinIPv4
		}
		if i == 0 || p.MinIPv6 < minV6 {
			minV6 = p.MinIPv6
		}
	}
	where := TenantIn("tenant", env.Tenants) + " AND " + TimeWithin("time", env.Now.Add(-look), env.Now)
	q := fmt.Sprintf(manyIPsSQL, where, notFHRP("cur_mac"), TenantIn("tenant", env.Tenants), minV4, minV6)
	rows, err := env.DB.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("arp_mac_many_ips: %w", err)
	}
	defer rows.Close()
	var out []Finding
	for rows.Next() {
		var c manyIPs
		if err := rows.Scan(&c.tenant, &c.mac, &c.vendor, &c.v4, &c.v6, &c.sample, &c.exporters); err != nil {
			return nil, fmt.Errorf("arp_mac_many_ips: %w", err)
		}
		if f, ok := c.finding(env.Params(c.tenant)); ok {
			out = append(out, f)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("arp_mac_many_ips: %w", err)
	}
	return out, nil
}

// manyIPs is one MAC with the addresses it currently answers for.
type manyIPs struct {
	tenant            string
	mac               uint64
	vendor            string
	v4, v6            uint64
	sample, exporters []string
}

// finding applies the tenant's thresholds and exclusions.
func (c manyIPs) finding(p ARPMACManyIPsParams) (Finding, bool) {
	if isFHRP(c.mac) || p.excluded(c.mac) || (c.v4 < uint64(p.MinIPv4) && c.v6 < uint64(p.MinIPv6)) {
		return Finding{}, false
	}
	sample := make([]string, len(c.sample))
	for i, a := range c.sample {
		sample[i] = ParseAddr(a)
	}
	exps := make([]string, len(c.exporters))
	for i, a := range c.exporters {
		exps[i] = ParseAddr(a)
	}
	n := c.v4 + c.v6
	more := ""
	if uint64(len(sample)) < n {
		more = ", ..."
	}
	summary := fmt.Sprintf("%s answers for %d addresses (%d IPv4, %d IPv6) on exporter %s: %s%s",
		describeMAC(c.mac, c.vendor), n, c.v4, c.v6, strings.Join(exps, ", "), strings.Join(sample, ", "), more)
	return Finding{Tenant: c.tenant, Instance: alerts.Instance{
		Labels: map[string]string{"mac": FormatMAC(c.mac)},
		Value:  float64(n),
		Annotations: map[string]string{
			"summary": summary,
			"description": fmt.Sprintf("The exporters' ARP/ND tables resolve %d addresses to %s. One station claiming many addresses is ARP spoofing (man in the middle for a range), or a router answering for the hosts behind it (proxy ARP) or an L3 switch whose interfaces share one MAC: list those in exclude_macs.",
				n, FormatMAC(c.mac)),
			"ipv4_addresses": fmt.Sprint(c.v4),
			"ipv6_addresses": fmt.Sprint(c.v6),
			"addresses":      strings.Join(sample, ","),
			"exporters":      strings.Join(exps, ","),
		},
	}}, true
}

// ---- arp_new_mac -----------------------------------------------------

// ARPNewMACParams are the parameters of arp_new_mac.
type ARPNewMACParams struct {
	// Window: a MAC first seen this recently is reported; the alert
	// resolves when its first sighting is older.
	Window time.Duration `mapstructure:"window" yaml:"window"`
	// Warmup: a MAC counts only if the exporter that first showed it had
	// been observing for this long before: the first polls of a new
	// exporter (or of flowhouse) show every MAC for the first time.
	Warmup time.Duration `mapstructure:"warmup" yaml:"warmup"`
	// LocallyAdministeredSeverity is the severity of new MACs with the
	// U/L bit set (VMs, containers, randomised phone MACs): softer.
	LocallyAdministeredSeverity notify.Severity `mapstructure:"locally_administered_severity" yaml:"locally_administered_severity"`
	// ObservationRefresh is enrich.polling.observation_refresh: a steady
	// exporter writes a row at least this often, which is how its first
	// observation is found within warmup + refresh.
	ObservationRefresh time.Duration `mapstructure:"-" yaml:"-"`
}

// Validate names the wrong keys.
func (p ARPNewMACParams) Validate() error {
	errs := positive(durationKey{"window", p.Window}, durationKey{"warmup", p.Warmup})
	if !p.LocallyAdministeredSeverity.Valid() {
		errs = append(errs, fmt.Errorf("locally_administered_severity: %q is not critical, error, warning or info", p.LocallyAdministeredSeverity))
	}
	return errors.Join(errs...)
}

// ARPNewMAC: a MAC the tenant never had before.
var ARPNewMAC = Kind[ARPNewMACParams]{
	Name:        "arp_new_mac",
	Description: "A MAC never seen before in the tenant appears in an ARP/ND table (a new or rogue device); softer for locally administered MACs.",
	Defaults: func() Builtin[ARPNewMACParams] {
		return Builtin[ARPNewMACParams]{Enabled: true, Interval: time.Minute, Timeout: 30 * time.Second,
			Severity: notify.SeverityWarning,
			Params: ARPNewMACParams{Window: time.Hour, Warmup: time.Hour,
				LocallyAdministeredSeverity: notify.SeverityInfo}}
	},
	Config: func(c *BuiltinConfig) *Builtin[ARPNewMACParams] { return &c.ARPNewMAC },
	New:    func(Deps) (Evaluator[ARPNewMACParams], error) { return arpNewMAC{}, nil },
}

type arpNewMAC struct{}

// newMACSQL returns two kinds of rows: "mac", each MAC whose first row in
// the range is within the window and that the devices table does not
// know from before the window; "exporter", each exporter's first row in
// the range, for the warm-up.
const newMACSQL = `SELECT 'mac' AS kind, toString(tenant) AS t, mac AS m, toUInt32(min(time)) AS first_at,
    argMin(IPv6NumToString(ip_address), time_ms) AS ip, argMin(IPv6NumToString(exporter_address), time_ms) AS exporter,
    argMin(if_index, time_ms) AS idx, argMin(toString(vendor), time_ms) AS v, uniqExact(ip_address) AS ips
FROM arp_observations WHERE %[1]s AND %[2]s
GROUP BY tenant, mac
HAVING first_at >= %[3]d AND (tenant, mac) NOT IN (
    SELECT tenant, mac FROM devices WHERE %[4]s AND first_seen < toDateTime(%[3]d, 'UTC'))
UNION ALL
SELECT 'exporter' AS kind, toString(tenant) AS t, toUInt64(0) AS m, toUInt32(min(time)) AS first_at,
    '' AS ip, IPv6NumToString(exporter_address) AS exporter, toUInt32(0) AS idx, '' AS v, toUInt64(0) AS ips
FROM arp_observations WHERE %[1]s
GROUP BY tenant, exporter_address`

// newMAC is one MAC first seen within the window.
type newMAC struct {
	tenant, ip, exporter, vendor string
	mac                          uint64
	first                        time.Time
	ifIndex                      uint32
	ips                          uint64
}

func (arpNewMAC) Evaluate(ctx context.Context, env *Env[ARPNewMACParams]) ([]Finding, error) {
	if len(env.Tenants) == 0 {
		return nil, nil
	}
	var look, win time.Duration
	for _, t := range env.Tenants {
		p := env.Params(t)
		look, win = max(look, p.Window+p.Warmup+refreshOr(p.ObservationRefresh)), max(win, p.Window)
	}
	where := TenantIn("tenant", env.Tenants) + " AND " + TimeWithin("time", env.Now.Add(-look), env.Now)
	q := fmt.Sprintf(newMACSQL, where, notFHRP("mac"), env.Now.Add(-win).Unix(), TenantIn("tenant", env.Tenants))
	macs, firstPoll, err := queryNewMACs(ctx, env.DB, q)
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, m := range macs {
		if f, ok := m.finding(env.Params(m.tenant), firstPoll[[2]string{m.tenant, m.exporter}], env.Now); ok {
			out = append(out, f)
		}
	}
	return out, nil
}

func queryNewMACs(ctx context.Context, db dbapi.Querier, q string) ([]newMAC, map[[2]string]time.Time, error) {
	rows, err := db.Query(ctx, q)
	if err != nil {
		return nil, nil, fmt.Errorf("arp_new_mac: %w", err)
	}
	defer rows.Close()
	var macs []newMAC
	firstPoll := map[[2]string]time.Time{}
	for rows.Next() {
		var kind string
		var first uint32
		var m newMAC
		if err := rows.Scan(&kind, &m.tenant, &m.mac, &first, &m.ip, &m.exporter, &m.ifIndex, &m.vendor, &m.ips); err != nil {
			return nil, nil, fmt.Errorf("arp_new_mac: %w", err)
		}
		m.first, m.ip, m.exporter = time.Unix(int64(first), 0).UTC(), ParseAddr(m.ip), ParseAddr(m.exporter)
		if kind == "exporter" {
			firstPoll[[2]string{m.tenant, m.exporter}] = m.first
			continue
		}
		macs = append(macs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("arp_new_mac: %w", err)
	}
	slices.SortFunc(macs, func(a, b newMAC) int {
		if c := strings.Compare(a.tenant, b.tenant); c != 0 {
			return c
		}
		return cmp.Compare(a.mac, b.mac)
	})
	return macs, firstPoll, nil
}

// finding applies the tenant's window and warm-up: the MAC must be first
// seen within the window and at least warmup after its exporter's first
// observation (exporterFirst; zero when unknown: no finding).
func (m newMAC) finding(p ARPNewMACParams, exporterFirst, now time.Time) (Finding, bool) {
	if isFHRP(m.mac) || m.first.Before(now.Add(-p.Window)) || exporterFirst.IsZero() || m.first.Sub(exporterFirst) < p.Warmup {
		return Finding{}, false
	}
	in := alerts.Instance{
		Labels: map[string]string{"mac": FormatMAC(m.mac)},
		Value:  float64(m.ips),
		Annotations: map[string]string{
			"summary": fmt.Sprintf("new device %s at %s on exporter %s ifIndex %d, first seen %s",
				describeMAC(m.mac, m.vendor), m.ip, m.exporter, m.ifIndex, when(m.first)),
			"description": fmt.Sprintf("%s was never seen before in this tenant's ARP/ND tables or device inventory: a new device, or a rogue one. Locally administered MACs (VMs, containers, phones with randomised MACs) are reported at %s.",
				FormatMAC(m.mac), p.LocallyAdministeredSeverity),
			"ip_address": m.ip,
			"exporter":   m.exporter,
			"if_index":   fmt.Sprint(m.ifIndex),
			"first_seen": m.first.Format(time.RFC3339),
		},
	}
	if locallyAdministered(m.mac) {
		in.Severity = p.LocallyAdministeredSeverity
		in.Annotations["locally_administered"] = "true"
	}
	return Finding{Tenant: m.tenant, Instance: in}, true
}

// UseObservationRefresh gives the ARP rules enrich's
// polling.observation_refresh, how often a steady ARP entry writes a row
// (wired in cmd: one setting, in enrich's section).
func (c *Config) UseObservationRefresh(d time.Duration) {
	c.Builtin.ARPMACChange.Params.ObservationRefresh = d
	c.Builtin.ARPFlipFlop.Params.ObservationRefresh = d
	c.Builtin.ARPMACManyIPs.Params.ObservationRefresh = d
	c.Builtin.ARPNewMAC.Params.ObservationRefresh = d
}

// refreshOr is the observation refresh a rule was given, or enrich's
// default when it was given none (UseObservationRefresh not called).
func refreshOr(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Hour
	}
	return d
}
