package rules

import (
	"math"
	"strings"
	"testing"
	"time"
)

var testLearning = learning{halfLife: time.Hour, warmup: time.Hour, relearnAfter: 6 * time.Hour, minZ: 5, minRatio: 3, floorBps: 100e6}

// feed gives b the samples xs, one a minute from at, and returns the
// judgements and the time after the last.
func feed(b *baseline, at time.Time, p learning, xs ...float64) ([]judgement, time.Time) {
	var js []judgement
	for _, x := range xs {
		at = at.Add(time.Minute)
		js = append(js, b.observe(x, at, time.Minute, p))
	}
	return js, at
}

func repeat(x float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = x
	}
	return out
}

func TestBaselineLearnsMeanAndDeviation(t *testing.T) {
	b := &baseline{mean: 0}
	at := time.Unix(1_700_000_000, 0)
	var xs []float64
	for i := range 24 * 60 {
		xs = append(xs, 90e6+20e6*float64(i%2)) // 90 and 110 Mbit/s: mean 100, deviation 10
	}
	feed(b, at, testLearning, xs...)
	if math.Abs(b.mean-100e6) > 1e6 || math.Abs(math.Sqrt(b.variance)-10e6) > 0.5e6 {
		t.Errorf("mean %g, deviation %g: want 100e6, 10e6", b.mean, math.Sqrt(b.variance))
	}
	if b.observed != 24*time.Hour {
		t.Errorf("observed %s, want 24h", b.observed)
	}
}

// After one half-life of zeros a vanished key's mean halves.
func TestBaselineOfAVanishedKeyDecays(t *testing.T) {
	b := &baseline{mean: 100e6, variance: 1e12, observed: 2 * time.Hour}
	feed(b, time.Unix(1_700_000_000, 0), testLearning, repeat(0, 60)...)
	if math.Abs(b.mean-50e6) > 0.01e6 {
		t.Errorf("mean %g after a half-life of nothing, want 50e6", b.mean)
	}
}

func TestBaselineJudge(t *testing.T) {
	warm := baseline{mean: 100e6, variance: 10e6 * 10e6, observed: 2 * time.Hour}
	for _, tc := range []struct {
		name       string
		b          baseline
		x          float64
		anom, fire bool
		z          float64
	}{
		{"ten times", warm, 1000e6, true, true, 90},
		{"three times, z 20", warm, 300e6, true, true, 20},
		{"below min_ratio", warm, 290e6, false, false, 19},
		{"z below min_z", baseline{mean: 100e6, variance: 50e6 * 50e6, observed: 2 * time.Hour}, 340e6, false, false, 4.8},
		{"under the floor", baseline{mean: 5e6, variance: 1e12, observed: 2 * time.Hour}, 90e6, false, false, 85},
		{"in the warm-up", baseline{mean: 100e6, variance: 1e14, observed: 59 * time.Minute}, 1000e6, true, false, 90},
		// No variance: the deviation is 1% of the mean.
		{"steady key", baseline{mean: 100e6, observed: 2 * time.Hour}, 400e6, true, true, 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := tc.b.judge(tc.x, testLearning)
			if j.anomalous != tc.anom || j.fire != tc.fire || math.Abs(j.z-tc.z) > 0.1 {
				t.Errorf("anomalous %v fire %v z %g, want %v %v %g", j.anomalous, j.fire, j.z, tc.anom, tc.fire, tc.z)
			}
		})
	}
	idle := baseline{observed: 2 * time.Hour}
	if j := idle.judge(500e6, testLearning); !j.fire || !math.IsInf(j.ratio, 1) {
		t.Errorf("an idle key at 500 Mbit/s: %+v, want it to fire with an infinite ratio", j)
	}
}

// An attack after the warm-up is not learnt, until it has lasted
// relearn_after: then the new level is learnt.
func TestBaselineExcludesAnomaliesUntilRelearn(t *testing.T) {
	b := &baseline{mean: 100e6, variance: 1e14, observed: 2 * time.Hour}
	at := time.Unix(1_700_000_000, 0)
	js, at := feed(b, at, testLearning, repeat(1000e6, 6*60-1)...)
	for i, j := range js {
		if !j.fire {
			t.Fatalf("sample %d of the attack does not fire", i)
		}
	}
	if b.mean != 100e6 || b.variance != 1e14 || b.observed != 2*time.Hour {
		t.Fatalf("the attack was learnt: mean %g variance %g observed %s", b.mean, b.variance, b.observed)
	}
	feed(b, at, testLearning, 1000e6, 1000e6)
	if b.mean <= 100e6 {
		t.Fatalf("after relearn_after of the new level, mean %g, want it learning", b.mean)
	}
	// A normal sample ends the anomalous run.
	c := &baseline{mean: 100e6, variance: 1e14, observed: 2 * time.Hour}
	_, at = feed(c, at, testLearning, 1000e6, 100e6)
	if !c.anomalousSince.IsZero() {
		t.Errorf("anomalous since %s after a normal sample", c.anomalousSince)
	}
}

// During the warm-up everything is learnt: there is no baseline yet to
// tell an anomaly from.
func TestBaselineLearnsEverythingInWarmup(t *testing.T) {
	b := &baseline{mean: 100e6, variance: 1e12}
	feed(b, time.Unix(1_700_000_000, 0), testLearning, 1000e6)
	if b.mean <= 100e6 || b.observed != time.Minute {
		t.Errorf("mean %g observed %s: the warm-up sample was not learnt", b.mean, b.observed)
	}
}

func TestRuleStateForgetsAndEvicts(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := newRuleState("volume_destination", Deps{})
	for i := range 100 {
		s.keys[stateKey{"a", string(rune('A' + i))}] = &baseline{lastSeen: now.Add(-time.Duration(i) * time.Minute)}
	}
	s.keys[stateKey{"b", "old"}] = &baseline{lastSeen: now.Add(-2 * time.Hour)}
	forget := func(t string) time.Duration {
		if t == "b" {
			return time.Hour
		}
		return 24 * time.Hour
	}
	s.forget(now, 1000, forget)
	if len(s.keys) != 100 || s.keys[stateKey{"b", "old"}] != nil {
		t.Fatalf("after forgetting: %d keys, b's old key %v", len(s.keys), s.keys[stateKey{"b", "old"}])
	}
	s.forget(now, 50, forget)
	if len(s.keys) != 45 {
		t.Fatalf("evicted down to %d keys, want 45 (90%% of max_keys)", len(s.keys))
	}
	for k, b := range s.keys {
		if now.Sub(b.lastSeen) >= 45*time.Minute {
			t.Errorf("kept %v, seen %s ago, over a more recent one", k, now.Sub(b.lastSeen))
		}
	}
}

func TestVolumeParamsValidate(t *testing.T) {
	if err := VolumeDestination.Defaults().Params.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if err := InterfaceUtilisation.Defaults().Params.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
	bad := VolumeParams{Window: time.Second, MinZ: -1, MinRatio: 0.5, FloorMbps: -1, TrackMbps: math.NaN()}
	err := bad.Validate()
	for _, want := range []string{"window: 1s", "half_life", "relearn_after", "forget_after", "persist_interval",
		"min_z: -1", "min_ratio: 0.5", "floor_mbps: -1 is negative", "track_mbps: NaN", "max_keys: 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	u := UtilisationParams{Threshold: 90, Duration: 30 * time.Second}
	err = u.Validate()
	for _, want := range []string{"threshold: 90", "duration: 30s", "min_polls: 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

// A tenant override is checked merged on the rule's parameters, and
// names the key.
func TestVolumeOverrideValidation(t *testing.T) {
	c := DefaultConfig()
	c.Builtin.VolumeDestination.Overrides = map[string]Override[VolumeParams]{"a": {Params: VolumeParams{MinRatio: 0.5}}}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "builtin.volume_destination.overrides.a.params.min_ratio: 0.5 is below 1") {
		t.Errorf("error %v", err)
	}
}
