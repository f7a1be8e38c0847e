package rules

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/notify"
)

// VolumeParams are the parameters of volume_destination and
// volume_interface. Window, max_keys and persist_interval are the rule's:
// overrides of them per tenant are ignored (one query serves every
// tenant, one state holds every key).
type VolumeParams struct {
	// Window is the length of the sample the current rate is measured
	// over.
	Window time.Duration `mapstructure:"window" yaml:"window"`
	// HalfLife of the baseline: after it, older samples weigh half.
	HalfLife time.Duration `mapstructure:"half_life" yaml:"half_life"`
	// MinZ: the rate must be more than this many standard deviations above
	// the mean, and MinRatio times the mean, and at least FloorMbps.
	MinZ      float64 `mapstructure:"min_z" yaml:"min_z"`
	MinRatio  float64 `mapstructure:"min_ratio" yaml:"min_ratio"`
	FloorMbps float64 `mapstructure:"floor_mbps" yaml:"floor_mbps"`
	// TrackMbps: a key gets a baseline once its rate reaches this.
	TrackMbps float64 `mapstructure:"track_mbps" yaml:"track_mbps"`
	// Warmup: a key fires only once its baseline has learnt this much.
	Warmup time.Duration `mapstructure:"warmup" yaml:"warmup"`
	// RelearnAfter: a key anomalous this long learns again (a new level).
	RelearnAfter time.Duration `mapstructure:"relearn_after" yaml:"relearn_after"`
	// ForgetAfter: a key not seen this long loses its baseline.
	ForgetAfter time.Duration `mapstructure:"forget_after" yaml:"forget_after"`
	// MaxKeys bounds the baselines kept; the least recently seen go first.
	MaxKeys int `mapstructure:"max_keys" yaml:"max_keys"`
	// PersistInterval: changed baselines are written to rule_state this
	// often.
	PersistInterval time.Duration `mapstructure:"persist_interval" yaml:"persist_interval"`
}

// Validate names the wrong keys.
func (p VolumeParams) Validate() error {
	var errs []error
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s: %s is not positive", key, d))
		}
	}
	positive("half_life", p.HalfLife)
	positive("relearn_after", p.RelearnAfter)
	positive("forget_after", p.ForgetAfter)
	positive("persist_interval", p.PersistInterval)
	if p.Window < 10*time.Second {
		errs = append(errs, fmt.Errorf("window: %s is shorter than 10s (exporters report flows every 15 to 60 s)", p.Window))
	}
	if p.Warmup < 0 {
		errs = append(errs, fmt.Errorf("warmup: %s is negative", p.Warmup))
	}
	if !(p.MinZ > 0) || math.IsInf(p.MinZ, 0) {
		errs = append(errs, fmt.Errorf("min_z: %g is not a positive number", p.MinZ))
	}
	if !(p.MinRatio >= 1) || math.IsInf(p.MinRatio, 0) {
		errs = append(errs, fmt.Errorf("min_ratio: %g is below 1", p.MinRatio))
	}
	for key, v := range map[string]float64{"floor_mbps": p.FloorMbps, "track_mbps": p.TrackMbps} {
		if !(v >= 0) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("%s: %g is negative", key, v))
		}
	}
	if p.MaxKeys < 1 {
		errs = append(errs, fmt.Errorf("max_keys: %d is below 1", p.MaxKeys))
	}
	return errors.Join(errs...)
}

func (p VolumeParams) learning() learning {
	return learning{halfLife: p.HalfLife, warmup: p.Warmup, relearnAfter: p.RelearnAfter,
		minZ: p.MinZ, minRatio: p.MinRatio, floorBps: p.FloorMbps * 1e6}
}

// volumeDefaults: both rules run every minute, the length of their
// window, so every flow (every rollup minute) is read once; a shorter
// interval would read each flow again for little news, since exporters
// report at active timeouts of up to a minute anyway.
func volumeDefaults(floor, track float64) func() Builtin[VolumeParams] {
	return func() Builtin[VolumeParams] {
		return Builtin[VolumeParams]{
			Enabled: true, Interval: time.Minute, Timeout: 40 * time.Second, Severity: notify.SeverityInfo,
			For: Evaluations(2), KeepFiringFor: For(2 * time.Minute),
			Params: VolumeParams{
				Window: time.Minute, HalfLife: time.Hour, MinZ: 5, MinRatio: 3, FloorMbps: floor, TrackMbps: track,
				Warmup: time.Hour, RelearnAfter: 6 * time.Hour, ForgetAfter: 7 * 24 * time.Hour,
				MaxKeys: 100_000, PersistInterval: 5 * time.Minute,
			},
		}
	}
}

// VolumeDestination finds destinations receiving far more than usual.
var VolumeDestination = Kind[VolumeParams]{
	Name: "volume_destination",
	Description: "Volumetric anomaly per destination address: the rate it receives against its own baseline " +
		"(EWMA mean and variance), above min_z deviations, min_ratio times the mean and floor_mbps.",
	Defaults: volumeDefaults(100, 1),
	Config:   func(c *BuiltinConfig) *Builtin[VolumeParams] { return &c.VolumeDestination },
	New: func(d Deps) (Evaluator[VolumeParams], error) {
		return &volumeRule{source: destinations{}, state: newRuleState("volume_destination", d)}, nil
	},
}

// VolumeInterface finds interfaces carrying far more than usual, in
// either direction.
var VolumeInterface = Kind[VolumeParams]{
	Name: "volume_interface",
	Description: "Volumetric anomaly per exporter interface and direction, from the per-minute rollup: " +
		"the rate against its own baseline, above min_z deviations, min_ratio times the mean and floor_mbps.",
	Defaults: volumeDefaults(50, 0.01),
	Config:   func(c *BuiltinConfig) *Builtin[VolumeParams] { return &c.VolumeInterface },
	New: func(d Deps) (Evaluator[VolumeParams], error) {
		return &volumeRule{source: interfaces{}, state: newRuleState("volume_interface", d)}, nil
	},
}

// sample is one key's rate over the window. The labels and the sentence
// of a finding are made only for the few samples that fire.
type sample struct {
	key stateKey
	bps float64
	// iface is the interface of a volume_interface sample; nil for a
	// destination.
	iface *ifaceSample
}

type ifaceSample struct {
	exporter, exporterName, ifIndex, ifName string
	in                                      bool
}

// describe is the subject's labels, its name in a sentence and the verb
// of its rate.
func (s sample) describe() (labels map[string]string, name, verb string) {
	if s.iface == nil {
		return map[string]string{"dst_address": s.key.key}, s.key.key, "receiving"
	}
	x := s.iface
	dir, verb := "out", "sending"
	if x.in {
		dir, verb = "in", "receiving"
	}
	return map[string]string{"exporter_address": x.exporter, "if_index": x.ifIndex, "direction": dir},
		interfaceName(x.exporter, x.exporterName, x.ifIndex, x.ifName, ""), verb
}

// volumeSource is what the two volumetric rules differ in: the keys and
// the table they are measured from.
type volumeSource interface {
	// window is the sample [from, to) of an evaluation at now.
	window(now time.Time, d time.Duration) (from, to time.Time)
	// samples reads the keys of tenants whose rate over [from, to) is at
	// least minBps, the largest maxKeys of them.
	samples(ctx context.Context, db dbapi.Querier, tenants []string, from, to time.Time, minBps float64, maxKeys int) ([]sample, error)
}

// volumeRule is the evaluator of both rules.
type volumeRule struct {
	source volumeSource
	state  *ruleState
	// lastTo is the end of the latest sample learnt, and last what it
	// found: a window that has not moved on (the rollup's minute) is not
	// learnt twice.
	lastTo time.Time
	last   []Finding
}

func (r *volumeRule) Evaluate(ctx context.Context, env *Env[VolumeParams]) ([]Finding, error) {
	if len(env.Tenants) == 0 {
		return nil, nil
	}
	base := env.base
	forget := base.ForgetAfter
	minTrack := math.Inf(1)
	for _, t := range env.Tenants {
		p := env.Params(t)
		forget = max(forget, p.ForgetAfter)
		minTrack = min(minTrack, p.TrackMbps*1e6)
	}
	if err := r.state.ensureLoaded(ctx, env.Now, base.MaxKeys, forget); err != nil {
		return nil, err
	}
	from, to := r.source.window(env.Now, base.Window)
	if !to.After(r.lastTo) {
		return r.last, nil
	}
	got, err := r.source.samples(ctx, env.DB, env.Tenants, from, to, minTrack, base.MaxKeys)
	if err != nil {
		return nil, err
	}
	findings := r.observe(env, got, to, to.Sub(from))
	r.state.forget(to, base.MaxKeys, func(t string) time.Duration { return env.Params(t).ForgetAfter })
	r.state.persist(ctx, env.Now, base.PersistInterval)
	r.lastTo, r.last = to, findings
	return findings, nil
}

// observe gives every tracked key of the run's tenants its sample (0 for
// a key absent from the window: that is how a key that vanished decays)
// and returns the keys that fire. A key given its sample has updated =
// to, which is how the second loop knows it was present.
func (r *volumeRule) observe(env *Env[VolumeParams], got []sample, to time.Time, window time.Duration) []Finding {
	type tenantParams struct {
		p        VolumeParams
		l        learning
		trackBps float64
	}
	params := make(map[string]*tenantParams, len(env.Tenants))
	for _, t := range env.Tenants {
		p := env.Params(t)
		params[t] = &tenantParams{p: p, l: p.learning(), trackBps: p.TrackMbps * 1e6}
	}
	var findings []Finding
	for _, s := range got {
		tp := params[s.key.tenant]
		if tp == nil {
			continue
		}
		b := r.state.keys[s.key]
		if b == nil {
			if s.bps >= tp.trackBps {
				r.state.keys[s.key] = &baseline{mean: s.bps, firstSeen: to, lastSeen: to, updated: to, dirty: true}
			}
			continue
		}
		if s.bps >= tp.trackBps {
			b.lastSeen = to
		}
		step := min(to.Sub(b.updated), window)
		if step <= 0 {
			continue
		}
		prev := *b
		if j := b.observe(s.bps, to, step, tp.l); j.fire {
			findings = append(findings, volumeFinding(s, &prev, j, tp.p, window))
		}
	}
	for k, b := range r.state.keys {
		if step := min(to.Sub(b.updated), window); step > 0 {
			if tp := params[k.tenant]; tp != nil {
				b.observe(0, to, step, tp.l)
			}
		}
	}
	return findings
}

// volumeFinding describes a sample that fired against the baseline it
// was judged by.
func volumeFinding(s sample, b *baseline, j judgement, p VolumeParams, window time.Duration) Finding {
	usual := "its usual " + HumanBits(b.mean)
	times := strconv.FormatFloat(j.ratio, 'f', 1, 64) + " times " + usual
	if math.IsInf(j.ratio, 0) {
		times = "usually idle"
	}
	labels, name, verb := s.describe()
	summary := fmt.Sprintf("%s %s %s, %s (z %.1f)", name, verb, HumanBits(s.bps), times, j.z)
	desc := fmt.Sprintf("Rate over the last %s against a baseline learnt over %s (EWMA, half-life %s): mean %s, "+
		"standard deviation %s. Fires above %g deviations, %g times the mean and %s. A volume anomaly only: "+
		"the attack rules say what kind of traffic it is.",
		window, b.observed.Round(time.Second), p.HalfLife, HumanBits(b.mean), HumanBits(b.stddev()),
		p.MinZ, p.MinRatio, HumanBits(p.FloorMbps*1e6))
	return Finding{Tenant: s.key.tenant, Instance: alerts.Instance{
		Labels: labels,
		Value:  s.bps,
		Annotations: map[string]string{
			"summary":     summary,
			"description": desc,
			"rate_bps":    strconv.FormatFloat(math.Round(s.bps), 'f', -1, 64),
			"mean_bps":    strconv.FormatFloat(math.Round(b.mean), 'f', -1, 64),
			"stddev_bps":  strconv.FormatFloat(math.Round(b.stddev()), 'f', -1, 64),
			"z":           strconv.FormatFloat(j.z, 'f', 1, 64),
			"ratio":       strconv.FormatFloat(j.ratio, 'f', 1, 64),
		},
	}}
}

// destinations measure what each destination address receives, from the
// flows of the window.
type destinations struct{}

func (destinations) window(now time.Time, d time.Duration) (time.Time, time.Time) {
	return now.Add(-d), now
}

// samples groups by the tenant's position in tenants rather than by the
// tenant: a key of fixed width (the address and a UInt8) aggregates about
// twice as fast as one with a string (measured on the embedded engine).
// The sum is of sampling-scaled octets (rules.Bits / 8), so that the
// engine does one multiplication a flow less.
func (destinations) samples(ctx context.Context, db dbapi.Querier, tenants []string, from, to time.Time, minBps float64, maxKeys int) ([]sample, error) {
	secs := to.Sub(from).Seconds()
	quoted := make([]string, len(tenants))
	for i, t := range tenants {
		quoted[i] = quote(t)
	}
	q := fmt.Sprintf(`SELECT ti, %s AS dst, octets
FROM (
    SELECT indexOf([%s], tenant) AS ti, dst_address, sum(bytes * sampling_rate) AS octets
    FROM flows
    WHERE %s AND %s
    GROUP BY ti, dst_address
    HAVING octets >= %d
    ORDER BY octets DESC
    LIMIT %d
)`, AddrText("dst_address"), strings.Join(quoted, ", "), TenantIn("tenant", tenants), ReceivedWithin(to, to.Sub(from)),
		uint64(minBps*secs/8), maxKeys)
	rows, err := db.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("destinations' rates: %w", err)
	}
	defer rows.Close()
	var out []sample
	for rows.Next() {
		var ti, octets uint64
		var dst string
		if err := rows.Scan(&ti, &dst, &octets); err != nil {
			return nil, fmt.Errorf("destinations' rates: %w", err)
		}
		if ti < 1 || ti > uint64(len(tenants)) {
			return nil, fmt.Errorf("destinations' rates: tenant index %d of %d", ti, len(tenants))
		}
		dst = ParseAddr(dst)
		out = append(out, sample{key: stateKey{tenants[ti-1], dst}, bps: float64(octets) * 8 / secs})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("destinations' rates: %w", err)
	}
	return out, nil
}

// interfaces measure each exporter interface in both directions from the
// per-minute rollup, which has the interfaces but not the addresses: far
// fewer rows than the flows, and exact, over whole minutes.
type interfaces struct{}

// rollupSettle is how long after a minute ends its flows are taken to be
// in the rollup: the batcher flushes every second, the spool replays
// within seconds.
const rollupSettle = 15 * time.Second

// window is the latest whole minutes, d rounded up to minutes, that
// ended rollupSettle ago.
func (interfaces) window(now time.Time, d time.Duration) (time.Time, time.Time) {
	to := now.Add(-rollupSettle).Truncate(time.Minute)
	minutes := (d + time.Minute - 1) / time.Minute
	return to.Add(-minutes * time.Minute), to
}

func (interfaces) samples(ctx context.Context, db dbapi.Querier, tenants []string, from, to time.Time, minBps float64, maxKeys int) ([]sample, error) {
	secs := to.Sub(from).Seconds()
	q := fmt.Sprintf(`SELECT tenant, %s AS exporter, any(exporter_name) AS exporter_label, d, if_index,
    any(if_name) AS name, sum(b) AS bits
FROM (
    SELECT tenant, exporter_address, exporter_name, arrayJoin([1, 2]) AS d,
        if(d = 1, in_if_index, out_if_index) AS if_index, if(d = 1, in_if_name, out_if_name) AS if_name,
        %s AS b
    FROM flows_1m
    WHERE %s AND %s
)
WHERE if_index != 0
GROUP BY tenant, exporter_address, d, if_index
HAVING bits >= %d
ORDER BY bits DESC
LIMIT %d`, AddrText("exporter_address"), Bits, TenantIn("tenant", tenants), ReceivedWithin(to, to.Sub(from)),
		uint64(minBps*secs), maxKeys)
	rows, err := db.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("interfaces' rates: %w", err)
	}
	defer rows.Close()
	var out []sample
	for rows.Next() {
		var tenant, exporter, exporterName, ifName string
		var d uint8
		var ifIndex uint32
		var bits uint64
		if err := rows.Scan(&tenant, &exporter, &exporterName, &d, &ifIndex, &ifName, &bits); err != nil {
			return nil, fmt.Errorf("interfaces' rates: %w", err)
		}
		out = append(out, interfaceSample(tenant, ParseAddr(exporter), exporterName, ifIndex, ifName, d == 1, float64(bits)/secs))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("interfaces' rates: %w", err)
	}
	return out, nil
}

func interfaceSample(tenant, exporter, exporterName string, ifIndex uint32, ifName string, in bool, bps float64) sample {
	dir := "out"
	if in {
		dir = "in"
	}
	idx := strconv.FormatUint(uint64(ifIndex), 10)
	return sample{key: stateKey{tenant, exporter + "|" + idx + "|" + dir}, bps: bps,
		iface: &ifaceSample{exporter: exporter, exporterName: exporterName, ifIndex: idx, ifName: ifName, in: in}}
}

// interfaceName is an interface in a sentence: "ge-0/0/1 (uplink) of
// edge-1 (192.0.2.1)", or "ifIndex 7 of 192.0.2.1" when nothing is known.
func interfaceName(exporter, exporterName, ifIndex, ifName, ifAlias string) string {
	name := "ifIndex " + ifIndex
	if ifName != "" {
		name = ifName
	}
	if ifAlias != "" {
		name += " (" + ifAlias + ")"
	}
	if exporterName != "" {
		return name + " of " + exporterName + " (" + exporter + ")"
	}
	return name + " of " + exporter
}
