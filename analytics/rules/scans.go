package rules

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/notify"
)

// The scan rules count probes: TCP flows that carried SYN or FIN and
// never ACK (SYN, FIN and Xmas scans). Completed connections carry ACK,
// and so do a server's answers to a client's many ephemeral ports, which
// would otherwise look like a port scan. Flows without any flag (exporters
// that do not report flags) are not counted: with them everything would be
// a probe.
const probe = "ip_protocol = 6 AND bitAnd(tcp_flags, 16) = 0 AND bitAnd(tcp_flags, 3) != 0"

// scanThreshold is the fan-out a scan must show among the flows of a
// sampling rate: sampling 1-in-N keeps about K/N of a scan's K probes, so
// the threshold is divided by N, but never below the sampled minimum,
// under which a few stray sampled SYNs would look like a scan.
func scanThreshold(threshold, minSampled int, rate uint64) int {
	if rate <= 1 {
		return threshold
	}
	return max(minSampled, int(math.Ceil(float64(threshold)/float64(rate))))
}

func scanDefaults[P Params](p P) Builtin[P] {
	return Builtin[P]{
		Enabled: true, Interval: 10 * time.Second, Timeout: 10 * time.Second, Severity: notify.SeverityWarning,
		For: Evaluations(0), KeepFiringFor: For(2 * time.Minute), Params: p,
	}
}

// scanRow is one row of a scan query.
type scanRow struct {
	Tenant, Src, Dst string
	Port             uint16
	FanOut           uint64 // distinct ports or hosts
	Rate             uint64 // highest sampling rate of the group
	Probes           float64
}

// PortScanParams are the parameters of port_scan.
type PortScanParams struct {
	Window time.Duration `mapstructure:"window" yaml:"window"`
	// Slice: the window is read in slices of this length, each once;
	// Settle: a slice is read this long after it ended.
	Slice  time.Duration `mapstructure:"slice" yaml:"slice"`
	Settle time.Duration `mapstructure:"settle" yaml:"settle"`
	// MinPorts: distinct destination ports of one host probed by one
	// source, unsampled; MinPortsSampled: the least it is scaled down to.
	MinPorts        int      `mapstructure:"min_ports" yaml:"min_ports"`
	MinPortsSampled int      `mapstructure:"min_ports_sampled" yaml:"min_ports_sampled"`
	IgnoreSources   []string `mapstructure:"ignore_sources" yaml:"ignore_sources"`
}

func (p PortScanParams) Validate() error {
	var e paramErrs
	e.window("window", p.Window)
	e.slicing(p.Window, p.Slice, p.Settle)
	e.positive("min_ports", float64(p.MinPorts))
	e.positive("min_ports_sampled", float64(p.MinPortsSampled))
	if p.MinPortsSampled > p.MinPorts {
		e.add("min_ports_sampled", "%d is above min_ports %d", p.MinPortsSampled, p.MinPorts)
	}
	e.prefixes("ignore_sources", p.IgnoreSources)
	return errors.Join(e...)
}

// PortScan detects one source probing many ports of one host.
var PortScan = Kind[PortScanParams]{
	Name:        "port_scan",
	Description: "port scan: one source probing (TCP SYN/FIN without ACK) many destination ports of one host",
	Defaults: func() Builtin[PortScanParams] {
		return scanDefaults(PortScanParams{Window: time.Minute, Slice: DefaultSlice, Settle: DefaultSettle, MinPorts: 100, MinPortsSampled: 5})
	},
	Config: func(c *BuiltinConfig) *Builtin[PortScanParams] { return &c.PortScan },
	New: func(d Deps) (Evaluator[PortScanParams], error) {
		registerSliceMetrics(d.Registerer)
		return portScan{&scanSlices{}}, nil
	},
}

// portScan keeps its slices between runs.
type portScan struct{ st *scanSlices }

func (e portScan) Evaluate(ctx context.Context, env *Env[PortScanParams]) ([]Finding, error) {
	return evaluateScan(ctx, env, e.st, scanKind[PortScanParams]{
		spec: func([]string) scanSpec {
			return scanSpec{rule: "port_scan",
				sel:   fmt.Sprintf("%s, %s, toUInt16(0)", AddrText("src_address"), AddrText("dst_address")),
				group: "src_address, dst_address", value: "toUInt64(dst_port)"}
		},
		thresholds: func(p PortScanParams) (int, int) { return p.MinPorts, p.MinPortsSampled },
		ignore:     func(p PortScanParams) []string { return p.IgnoreSources },
		instance: func(r scanRow, _ PortScanParams, need int, secs float64) alerts.Instance {
			return portScanInstance(r, need, secs)
		},
	})
}

// scanKind is what tells the two scan rules apart: their query's
// grouping, their thresholds and their alert.
type scanKind[P Params] struct {
	spec       func(tenants []string) scanSpec
	thresholds func(P) (minimum, sampled int)
	ignore     func(P) []string
	instance   func(r scanRow, p P, need int, secs float64) alerts.Instance
}

// evaluateScan runs a scan rule: one query per slicing its tenants use,
// then each tenant's own threshold, scaled by the sampling rate.
func evaluateScan[P interface {
	Params
	slicing() slicing
}](ctx context.Context, env *Env[P], st *scanSlices, k scanKind[P]) ([]Finding, error) {
	keys, groups := bySlicing(env.Tenants, func(t string) slicing { return env.Params(t).slicing() })
	var out []Finding
	for _, key := range keys {
		tenants := groups[key]
		q := k.spec(tenants)
		q.tenants = tenants
		most := 0
		for _, t := range tenants {
			minimum, sampled := k.thresholds(env.Params(t))
			q.thresholds = appendThreshold(q.thresholds, minimum, sampled)
			most = max(most, minimum)
		}
		q.cap = setCap(most)
		rows, secs, err := st.rows(ctx, env.DB, key, env.Now, q)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			p := env.Params(r.Tenant)
			minimum, sampled := k.thresholds(p)
			need := scanThreshold(minimum, sampled, r.Rate)
			if int(r.FanOut) < need || ignoredAddr(k.ignore(p), r.Src) {
				continue
			}
			out = append(out, Finding{Tenant: r.Tenant, Instance: k.instance(r, p, need, secs)})
		}
	}
	sortScans(out)
	return out, nil
}

// appendThreshold adds a tenant's thresholds unless another tenant has
// the same.
func appendThreshold(list [][2]int, threshold, sampled int) [][2]int {
	t := [2]int{threshold, sampled}
	if slices.Contains(list, t) {
		return list
	}
	return append(list, t)
}

func portScanInstance(r scanRow, need int, secs float64) alerts.Instance {
	ws := fmtWindow(secs)
	summary := fmt.Sprintf("%s probed %d ports of %s in %s: port scan", r.Src, r.FanOut, r.Dst, ws)
	desc := fmt.Sprintf("%s sent TCP SYN/FIN without ACK to %d distinct ports of %s over the last %s (threshold %d).",
		r.Src, r.FanOut, r.Dst, ws, need)
	if r.Rate > 1 {
		summary = fmt.Sprintf("%s probed %d ports of %s in %s (sampled 1 in %d, about %d probed): port scan",
			r.Src, r.FanOut, r.Dst, ws, r.Rate, r.FanOut*r.Rate)
		desc += fmt.Sprintf(" Flows are sampled 1 in %d: about %d ports were probed; the threshold is scaled down to %d.", r.Rate, r.FanOut*r.Rate, need)
	}
	return alerts.Instance{
		Labels: map[string]string{"src_address": r.Src, "dst_address": r.Dst},
		Value:  float64(r.FanOut),
		Annotations: map[string]string{
			notify.AnnotationSummary: summary, "description": desc, "classification": "port_scan",
			"ports": fmt.Sprint(r.FanOut), "sampling_rate": fmt.Sprint(r.Rate), "threshold": fmt.Sprint(need),
			"probe_packets": fmtNum(r.Probes),
		},
	}
}

// HostScanParams are the parameters of host_scan.
type HostScanParams struct {
	Window time.Duration `mapstructure:"window" yaml:"window"`
	// Slice: the window is read in slices of this length, each once;
	// Settle: a slice is read this long after it ended.
	Slice  time.Duration `mapstructure:"slice" yaml:"slice"`
	Settle time.Duration `mapstructure:"settle" yaml:"settle"`
	// MinHosts: distinct hosts of one prefix probed on one port by one
	// source, unsampled; MinHostsSampled: the least it is scaled down to.
	MinHosts        int `mapstructure:"min_hosts" yaml:"min_hosts"`
	MinHostsSampled int `mapstructure:"min_hosts_sampled" yaml:"min_hosts_sampled"`
	// The prefixes hosts are counted in (multiples of 8).
	IPv4Prefix    int      `mapstructure:"ipv4_prefix" yaml:"ipv4_prefix"`
	IPv6Prefix    int      `mapstructure:"ipv6_prefix" yaml:"ipv6_prefix"`
	IgnoreSources []string `mapstructure:"ignore_sources" yaml:"ignore_sources"`
}

func (p HostScanParams) Validate() error {
	var e paramErrs
	e.window("window", p.Window)
	e.slicing(p.Window, p.Slice, p.Settle)
	e.positive("min_hosts", float64(p.MinHosts))
	e.positive("min_hosts_sampled", float64(p.MinHostsSampled))
	if p.MinHostsSampled > p.MinHosts {
		e.add("min_hosts_sampled", "%d is above min_hosts %d", p.MinHostsSampled, p.MinHosts)
	}
	if p.IPv4Prefix < 8 || p.IPv4Prefix > 32 || p.IPv4Prefix%8 != 0 {
		e.add("ipv4_prefix", "%d is not 8, 16, 24 or 32", p.IPv4Prefix)
	}
	if p.IPv6Prefix < 8 || p.IPv6Prefix > 128 || p.IPv6Prefix%8 != 0 {
		e.add("ipv6_prefix", "%d is not a multiple of 8 in 8..128", p.IPv6Prefix)
	}
	e.prefixes("ignore_sources", p.IgnoreSources)
	return errors.Join(e...)
}

// HostScan detects one source probing one port on many hosts of a prefix.
var HostScan = Kind[HostScanParams]{
	Name:        "host_scan",
	Description: "host scan: one source probing (TCP SYN/FIN without ACK) one port on many hosts of one prefix",
	Defaults: func() Builtin[HostScanParams] {
		return scanDefaults(HostScanParams{Window: time.Minute, Slice: DefaultSlice, Settle: DefaultSettle, MinHosts: 32, MinHostsSampled: 5, IPv4Prefix: 24, IPv6Prefix: 64})
	},
	Config: func(c *BuiltinConfig) *Builtin[HostScanParams] { return &c.HostScan },
	New: func(d Deps) (Evaluator[HostScanParams], error) {
		registerSliceMetrics(d.Registerer)
		return hostScan{&scanSlices{}}, nil
	},
}

// hostScan keeps its slices between runs.
type hostScan struct{ st *scanSlices }

func (e hostScan) Evaluate(ctx context.Context, env *Env[HostScanParams]) ([]Finding, error) {
	return evaluateScan(ctx, env, e.st, scanKind[HostScanParams]{
		spec: func(tenants []string) scanSpec {
			return scanSpec{rule: "host_scan",
				sel:   fmt.Sprintf("%s, %s AS net, dst_port", AddrText("src_address"), prefixSQL(env, tenants)),
				group: "src_address, dst_port, net", value: "cityHash64(dst_address)"}
		},
		thresholds: func(p HostScanParams) (int, int) { return p.MinHosts, p.MinHostsSampled },
		ignore:     func(p HostScanParams) []string { return p.IgnoreSources },
		instance:   hostScanInstance,
	})
}

// prefixSQL is the destination's prefix as text (cutIPv6 zeroes whole
// bytes), with each tenant's prefix lengths.
func prefixSQL(env *Env[HostScanParams], tenants []string) string {
	cut := func(p HostScanParams) string {
		return fmt.Sprintf("cutIPv6(dst_address, %d, %d)", 16-p.IPv6Prefix/8, 4-p.IPv4Prefix/8)
	}
	byCut := map[string][]string{}
	var order []string
	for _, t := range tenants {
		c := cut(env.Params(t))
		if byCut[c] == nil {
			order = append(order, c)
		}
		byCut[c] = append(byCut[c], t)
	}
	if len(order) == 1 {
		return order[0]
	}
	var b strings.Builder
	b.WriteString("multiIf(")
	for _, c := range order[:len(order)-1] {
		fmt.Fprintf(&b, "%s, %s, ", TenantIn("tenant", byCut[c]), c)
	}
	b.WriteString(order[len(order)-1] + ")")
	return b.String()
}

func hostScanInstance(r scanRow, p HostScanParams, need int, secs float64) alerts.Instance {
	ws := fmtWindow(secs)
	prefix := r.Dst
	if a, err := netip.ParseAddr(r.Dst); err == nil {
		bits := p.IPv6Prefix
		if a.Is4() {
			bits = p.IPv4Prefix
		}
		prefix = netip.PrefixFrom(a, bits).Masked().String()
	}
	summary := fmt.Sprintf("%s probed port %d on %d hosts of %s in %s: host scan", r.Src, r.Port, r.FanOut, prefix, ws)
	desc := fmt.Sprintf("%s sent TCP SYN/FIN without ACK to port %d of %d distinct hosts in %s over the last %s (threshold %d).",
		r.Src, r.Port, r.FanOut, prefix, ws, need)
	if r.Rate > 1 {
		summary = fmt.Sprintf("%s probed port %d on %d hosts of %s in %s (sampled 1 in %d): host scan", r.Src, r.Port, r.FanOut, prefix, ws, r.Rate)
		desc += fmt.Sprintf(" Flows are sampled 1 in %d: more hosts were probed than seen; the threshold is scaled down to %d.", r.Rate, need)
	}
	return alerts.Instance{
		Labels: map[string]string{"src_address": r.Src, "dst_port": fmt.Sprint(r.Port), "dst_prefix": prefix},
		Value:  float64(r.FanOut),
		Annotations: map[string]string{
			notify.AnnotationSummary: summary, "description": desc, "classification": "host_scan",
			"hosts": fmt.Sprint(r.FanOut), "sampling_rate": fmt.Sprint(r.Rate), "threshold": fmt.Sprint(need),
			"probe_packets": fmtNum(r.Probes),
		},
	}
}

func sortScans(out []Finding) {
	key := func(f Finding) string {
		return f.Labels["src_address"] + "|" + f.Labels["dst_address"] + "|" + f.Labels["dst_prefix"] + "|" + f.Labels["dst_port"]
	}
	slices.SortFunc(out, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(key(a), key(b)))
	})
}
