package main

import (
	"reflect"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/flowhouse/flowhouse/analytics/rules"
)

// builtinRule is one built-in rule as the default configuration has it.
type builtinRule struct {
	Name     string
	Enabled  bool
	Interval time.Duration
}

// builtinRules lists the built-in rules of cfg (rules.builtin.<name>)
// with their interval, read by reflection so that flowbench measures
// whatever rules are registered: BuiltinConfig has one field per rule,
// tagged with its key, each a rules.Builtin[P] with Enabled and Interval.
func builtinRules(cfg rules.Config) []builtinRule {
	v := reflect.ValueOf(cfg.Builtin)
	t := v.Type()
	var out []builtinRule
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("mapstructure"), ",")
		f := v.Field(i)
		if name == "" || f.Kind() != reflect.Struct {
			continue
		}
		r := builtinRule{Name: name}
		if e := f.FieldByName("Enabled"); e.IsValid() && e.Kind() == reflect.Bool {
			r.Enabled = e.Bool()
		}
		if iv := f.FieldByName("Interval"); iv.IsValid() && iv.Type() == reflect.TypeOf(time.Duration(0)) {
			r.Interval = time.Duration(iv.Int())
		}
		out = append(out, r)
	}
	return out
}

// ruleIntervals maps each built-in rule's name to its interval.
func ruleIntervals(cfg rules.Config) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, r := range builtinRules(cfg) {
		out[r.Name] = r.Interval
	}
	return out
}

// disableRulesEnv are the environment variables that turn every
// built-in rule off: FLOWHOUSE_RULES_BUILTIN_<NAME>_ENABLED=false.
func disableRulesEnv() []string {
	var env []string
	for _, r := range builtinRules(rules.DefaultConfig()) {
		env = append(env, "FLOWHOUSE_RULES_BUILTIN_"+strings.ToUpper(r.Name)+"_ENABLED=false")
	}
	return env
}

// selfCPU is this process's user+system CPU seconds (getrusage
// RUSAGE_SELF): every thread, the embedded engine's included.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// quantile is the q-quantile (0..1) of xs by nearest rank; xs is sorted
// in place.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	i := int(q*float64(len(xs))+0.999999) - 1
	return xs[max(0, min(i, len(xs)-1))]
}
