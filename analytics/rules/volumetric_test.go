package rules

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/dbapi"
)

func init() { extraEmbeddedTables = append(extraEmbeddedTables, "rule_state") }

// testEnv builds the Env a run of a rule gets, as the scheduler would:
// base parameters, tenants' overrides merged on them.
func testEnv[P Params](t testing.TB, e engine, rule string, now time.Time, base P, overrides map[string]P, tenants ...string) *Env[P] {
	t.Helper()
	caps, err := dbapi.DetectCapabilities(context.Background(), e.Reader)
	if err != nil {
		t.Fatal(err)
	}
	byTenant := map[string]P{}
	for tenant, o := range overrides {
		byTenant[tenant] = merge(base, o)
	}
	slices.Sort(tenants)
	return &Env[P]{Rule: rule, Now: now.UTC().Truncate(time.Second), Interval: time.Minute, Tenants: tenants,
		DB: e.Reader, Caps: caps, base: base, byTenant: byTenant}
}

func addr(s string) flow.Addr { return flow.AddrFromNetip(netip.MustParseAddr(s)) }

// testStart is where the tests' traffic starts: in the past hours, so the
// embedded engine's TTL (relative to the real clock) keeps it.
func testStart() time.Time { return time.Now().UTC().Truncate(time.Hour).Add(-4 * time.Hour) }

// exporterTraffic is one exporter's traffic: an uplink (ifIndex 1) and
// access interfaces 2..1+access, each carrying bps in each direction
// (±10% per minute), in three flows a minute. The flows crossing spikeIf
// during [spikeFrom, spikeTo) minutes are multiplied by ten, as flowgen's
// spike scenario does.
type exporterTraffic struct {
	tenant, exporter, name string
	access                 int
	bps                    float64
	spikeIf                uint32
	spikeFrom, spikeTo     int
}

func (x exporterTraffic) flows(start time.Time, minutes int, r *rand.Rand) []flow.Flow {
	const sampling = 100
	var out []flow.Flow
	for m := range minutes {
		for k := 2; k < 2+x.access; k++ {
			for dir := range 2 {
				in, outIf := uint32(1), uint32(k)
				src, dst := "203.0.113.50", fmt.Sprintf("192.0.2.%d", k)
				if dir == 1 {
					in, outIf, src, dst = outIf, in, dst, src
				}
				bytes := x.bps * (0.9 + 0.2*r.Float64()) * 60 / 8 / sampling / 3
				if (in == x.spikeIf || outIf == x.spikeIf) && m >= x.spikeFrom && m < x.spikeTo {
					bytes *= 10
				}
				for s := range 3 {
					out = append(out, flow.Flow{
						TimeReceivedMs: start.Add(time.Duration(m)*time.Minute + time.Duration(5+20*s)*time.Second).UnixMilli(),
						Tenant:         x.tenant, ExporterAddr: addr(x.exporter), ExporterName: x.name,
						SamplingRate: sampling, InIf: in, OutIf: outIf,
						InIfName: fmt.Sprintf("ge-0/0/%d", in), OutIfName: fmt.Sprintf("ge-0/0/%d", outIf),
						SrcAddr: addr(src), DstAddr: addr(dst), IPProto: 6, SrcPort: 443, DstPort: 50000,
						Bytes: uint64(bytes), Packets: uint64(bytes / 1000), IPVersion: 4,
					})
				}
			}
		}
	}
	return out
}

// run evaluates ev once a minute for minutes [from, to), 20 s after each
// minute (past the rollup's settling), and returns what each run found.
func runMinutes(t *testing.T, e engine, ev Evaluator[VolumeParams], rule string, start time.Time, from, to int,
	base VolumeParams, overrides map[string]VolumeParams, tenants ...string) [][]Finding {
	t.Helper()
	var out [][]Finding
	for m := from; m < to; m++ {
		env := testEnv(t, e, rule, start.Add(time.Duration(m)*time.Minute+20*time.Second), base, overrides, tenants...)
		f, err := ev.Evaluate(context.Background(), env)
		if err != nil {
			t.Fatalf("minute %d: %v", m, err)
		}
		out = append(out, f)
	}
	return out
}

func subjects(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		var parts []string
		for _, k := range []string{"dst_address", "exporter_address", "if_index", "direction"} {
			if v, ok := f.Labels[k]; ok {
				parts = append(parts, v)
			}
		}
		out = append(out, f.Tenant+":"+strings.Join(parts, "/"))
	}
	slices.Sort(out)
	return out
}

func annotationFloat(t *testing.T, f Finding, name string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(f.Annotations[name], 64)
	if err != nil {
		t.Fatalf("annotation %s = %q: %v", name, f.Annotations[name], err)
	}
	return v
}

var summaryRe = regexp.MustCompile(`^ge-0/0/2 of edge-1 \(192\.0\.2\.1\) (receiving|sending) [0-9.]+ Mbit/s, [0-9.]+ times its usual [0-9.]+ Mbit/s \(z [0-9.]+\)$`)

func newVolume(t *testing.T, k Kind[VolumeParams], d Deps) Evaluator[VolumeParams] {
	t.Helper()
	ev, err := k.New(d)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// The spike of flowgen (ten times the traffic of one interface) fires
// volume_interface in both directions of that interface only, once the
// baseline is warm, with the numbers in the summary; the same spike of a
// tenant whose override raises the floor does not fire; and the spike is
// not learnt while it lasts.
func TestVolumeInterfaceSpike(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		start := testStart()
		r := rand.New(rand.NewPCG(1, 2))
		a := exporterTraffic{tenant: "a", exporter: "192.0.2.1", name: "edge-1", access: 6, bps: 80e6, spikeIf: 2, spikeFrom: 40, spikeTo: 50}
		b := exporterTraffic{tenant: "b", exporter: "192.0.2.1", name: "edge-b", access: 6, bps: 80e6, spikeIf: 2, spikeFrom: 40, spikeTo: 50}
		e.Insert(t, append(a.flows(start, 50, r), b.flows(start, 50, r)...))

		p := VolumeInterface.Defaults().Params
		p.Warmup = 30 * time.Minute
		over := map[string]VolumeParams{"b": {FloorMbps: 1000}}
		ev := newVolume(t, VolumeInterface, Deps{DB: e.DB})
		runs := runMinutes(t, e, ev, "volume_interface", start, 1, 51, p, over, "a", "b")
		for m, fs := range runs[:40] { // minutes 0..39 learnt: nothing unusual
			if len(fs) != 0 {
				t.Fatalf("run at minute %d (before the spike) found %v", m+1, subjects(fs))
			}
		}
		want := []string{"a:192.0.2.1/2/in", "a:192.0.2.1/2/out"}
		for m := 40; m < 50; m++ { // the runs that learn minutes 40..49
			if got := subjects(runs[m]); !slices.Equal(got, want) {
				t.Fatalf("run learning spike minute %d found %v, want %v", m, got, want)
			}
		}
		for _, f := range runs[49] {
			ratio, mean := annotationFloat(t, f, "ratio"), annotationFloat(t, f, "mean_bps")
			if ratio < 8 || ratio > 12 || math.Abs(mean-80e6) > 8e6 {
				t.Errorf("%v: ratio %g, mean %g: want about 10 times 80 Mbit/s, the spike unlearnt", f.Labels, ratio, mean)
			}
			verb := map[string]string{"in": "receiving", "out": "sending"}[f.Labels["direction"]]
			if s := f.Annotations["summary"]; !summaryRe.MatchString(s) || !strings.Contains(s, ") "+verb+" ") {
				t.Errorf("summary %q, want ge-0/0/2 of edge-1 (192.0.2.1) %s ... times its usual ...", s, verb)
			}
			if f.Value < 700e6 || f.Value > 900e6 || f.Severity != "" {
				t.Errorf("value %g severity %q: want about 800 Mbit/s at the rule's severity", f.Value, f.Severity)
			}
		}
	})
}

// A spike during the warm-up does not fire.
func TestVolumeInterfaceWarmup(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		start := testStart()
		x := exporterTraffic{tenant: "a", exporter: "192.0.2.1", access: 6, bps: 80e6, spikeIf: 2, spikeFrom: 20, spikeTo: 25}
		e.Insert(t, x.flows(start, 25, rand.New(rand.NewPCG(3, 4))))
		p := VolumeInterface.Defaults().Params // warm-up 1h
		runs := runMinutes(t, e, newVolume(t, VolumeInterface, Deps{DB: e.DB}), "volume_interface", start, 1, 26, p, nil, "a")
		for m, fs := range runs {
			if len(fs) != 0 {
				t.Fatalf("run at minute %d, in the warm-up, found %v", m+1, subjects(fs))
			}
		}
	})
}

// A new evaluator on the same database (a restart) loads the baselines
// and fires at its first run; one without them is in its warm-up.
func TestVolumeBaselineSurvivesRestart(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		start := testStart()
		x := exporterTraffic{tenant: "a", exporter: "192.0.2.1", name: "edge-1", access: 6, bps: 80e6, spikeIf: 3, spikeFrom: 40, spikeTo: 45}
		e.Insert(t, x.flows(start, 45, rand.New(rand.NewPCG(5, 6))))
		p := VolumeInterface.Defaults().Params
		p.Warmup, p.PersistInterval = 30*time.Minute, time.Minute
		first := newVolume(t, VolumeInterface, Deps{DB: e.DB})
		runMinutes(t, e, first, "volume_interface", start, 1, 41, p, nil, "a")

		restarted := runMinutes(t, e, newVolume(t, VolumeInterface, Deps{DB: e.DB}), "volume_interface", start, 41, 42, p, nil, "a")
		if got, want := subjects(restarted[0]), []string{"a:192.0.2.1/3/in", "a:192.0.2.1/3/out"}; !slices.Equal(got, want) {
			t.Fatalf("restarted evaluator found %v, want %v", got, want)
		}
		for _, f := range restarted[0] {
			if mean := annotationFloat(t, f, "mean_bps"); math.Abs(mean-80e6) > 8e6 {
				t.Errorf("%v: mean %g after the restart, want about 80 Mbit/s", f.Labels, mean)
			}
		}
		fresh := runMinutes(t, e, newVolume(t, VolumeInterface, Deps{}), "volume_interface", start, 41, 42, p, nil, "a")
		if len(fresh[0]) != 0 {
			t.Fatalf("an evaluator without stored baselines found %v", subjects(fresh[0]))
		}
	})
}

// failingExec is a database whose writes fail.
type failingExec struct{ dbapi.DB }

func (failingExec) Exec(context.Context, string, ...any) error {
	return errors.New("write refused")
}

// A state write that fails is counted by reason and does not fail the
// evaluation, which keeps its findings.
func TestVolumeStateWriteFailureIsCounted(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		start := testStart()
		x := exporterTraffic{tenant: "a", exporter: "192.0.2.1", access: 6, bps: 80e6, spikeIf: 2, spikeFrom: 12, spikeTo: 13}
		e.Insert(t, x.flows(start, 13, rand.New(rand.NewPCG(7, 8))))
		p := VolumeInterface.Defaults().Params
		p.Warmup, p.PersistInterval = 10*time.Minute, time.Minute
		reg := prometheus.NewRegistry()
		ev := newVolume(t, VolumeInterface, Deps{DB: failingExec{e.DB}, Registerer: reg})
		runs := runMinutes(t, e, ev, "volume_interface", start, 1, 14, p, nil, "a")
		if len(runs[12]) != 2 {
			t.Errorf("last run found %v, want the spike of ifIndex 2", subjects(runs[12]))
		}
		m := ev.(*volumeRule).state.m
		if n := testutil.ToFloat64(m.errors.WithLabelValues("volume_interface", "write", "other")); n < 10 {
			t.Errorf("write errors counted: %g, want one per run after the first minute", n)
		}
		if n := testutil.CollectAndCount(reg, "flowhouse_rule_state_errors_total"); n != 1 {
			t.Errorf("registered error series: %d", n)
		}
	})
}

// destTraffic is what one destination receives: bps (±10% per 10 s) in a
// flow every 10 s, times factor during [from, to) minutes, then from
// sources (one source: a bulk transfer).
type destTraffic struct {
	tenant, dst string
	bps         float64
	factor      float64
	from, to    int
	sources     int
	proto       uint8
}

func (d destTraffic) flows(start time.Time, minutes int, r *rand.Rand) []flow.Flow {
	const sampling = 1000
	var out []flow.Flow
	for s := 0; s < minutes*6; s++ {
		at := start.Add(time.Duration(s) * 10 * time.Second)
		bits := d.bps * 10 * (0.9 + 0.2*r.Float64())
		n, proto, flags := 1, uint8(6), uint8(0x18) // PSH ACK: an established TCP stream
		if m := s / 6; m >= d.from && m < d.to {
			bits *= d.factor
			n, proto = max(1, d.sources), d.proto
			if proto != 6 {
				flags = 0
			}
		}
		for i := range n {
			bytes := uint64(bits / 8 / sampling / float64(n))
			out = append(out, flow.Flow{
				TimeReceivedMs: at.Add(time.Duration(i) * time.Millisecond).UnixMilli(), Tenant: d.tenant,
				ExporterAddr: addr("192.0.2.1"), SamplingRate: sampling, InIf: 1, OutIf: 2,
				SrcAddr: addr(fmt.Sprintf("203.0.%d.%d", 113+i/250, 1+i%250)), DstAddr: addr(d.dst),
				SrcPort: 443, DstPort: 40000, IPProto: proto, TCPFlags: flags, IPVersion: 4,
				Bytes: bytes, Packets: max(1, bytes/1400),
			})
		}
	}
	return out
}

// volume_destination: an attack ten times the usual rate fires, a bulk
// transfer four times it fires at the rule's (info) severity, a small
// destination stays under the floor, steady ones are quiet (the same
// address in another tenant too), and a tenant whose override wants
// twenty times the usual does not fire for ten.
func TestVolumeDestination(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		start := testStart()
		r := rand.New(rand.NewPCG(9, 10))
		var flows []flow.Flow
		for _, d := range []destTraffic{
			{tenant: "a", dst: "198.51.100.7", bps: 80e6, factor: 10, from: 40, to: 45, sources: 200, proto: 17},
			{tenant: "a", dst: "198.51.100.8", bps: 80e6, factor: 4, from: 40, to: 45, sources: 1, proto: 6},
			{tenant: "a", dst: "198.51.100.9", bps: 2e6, factor: 10, from: 40, to: 45, sources: 50, proto: 17},
			{tenant: "a", dst: "198.51.100.10", bps: 80e6},
			{tenant: "b", dst: "198.51.100.7", bps: 80e6}, // a's address in another tenant, steady
			{tenant: "c", dst: "198.51.100.7", bps: 80e6, factor: 10, from: 40, to: 45, sources: 200, proto: 17},
		} {
			flows = append(flows, d.flows(start, 45, r)...)
		}
		e.Insert(t, flows)
		p := VolumeDestination.Defaults().Params
		p.Warmup = 30 * time.Minute
		over := map[string]VolumeParams{"c": {MinRatio: 20}}
		ev := newVolume(t, VolumeDestination, Deps{DB: e.DB})
		var last []Finding
		for s := 2; s <= 45*2; s++ { // every 30 s from minute 1 to 45
			env := testEnv(t, e, "volume_destination", start.Add(time.Duration(s)*30*time.Second), p, over, "a", "b", "c")
			fs, err := ev.Evaluate(context.Background(), env)
			if err != nil {
				t.Fatal(err)
			}
			if s <= 80 && len(fs) != 0 {
				t.Fatalf("run at %s, before the attack, found %v", time.Duration(s)*30*time.Second, subjects(fs))
			}
			last = fs
		}
		if got, want := subjects(last), []string{"a:198.51.100.7", "a:198.51.100.8"}; !slices.Equal(got, want) {
			t.Fatalf("found %v, want %v", got, want)
		}
		wantRatio := map[string]float64{"198.51.100.7": 10, "198.51.100.8": 4}
		for _, f := range last {
			dst := f.Labels["dst_address"]
			ratio := annotationFloat(t, f, "ratio")
			if math.Abs(ratio-wantRatio[dst]) > 0.15*wantRatio[dst] || f.Severity != "" {
				t.Errorf("%s: ratio %g severity %q, want about %g at the rule's severity", dst, ratio, f.Severity, wantRatio[dst])
			}
			re := regexp.MustCompile(`^` + regexp.QuoteMeta(dst) + ` receiving [0-9.]+ Mbit/s, [0-9.]+ times its usual (7[5-9]|8[0-5])[0-9.]* Mbit/s \(z [0-9.]+\)$`)
			if s := f.Annotations["summary"]; !re.MatchString(s) {
				t.Errorf("summary %q", s)
			}
		}
		if VolumeDestination.Defaults().Severity != "info" {
			t.Errorf("default severity %q, want info", VolumeDestination.Defaults().Severity)
		}
	})
}
