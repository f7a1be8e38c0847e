package rules

import (
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/notify"
)

// BuiltinConfig holds one section per built-in rule, under rules.builtin.
type BuiltinConfig struct {
	Amplification        Builtin[AmplificationParams] `mapstructure:"amplification" yaml:"amplification"`
	SYNFlood             Builtin[SYNFloodParams]      `mapstructure:"syn_flood" yaml:"syn_flood"`
	UDPFlood             Builtin[UDPFloodParams]      `mapstructure:"udp_flood" yaml:"udp_flood"`
	ICMPFlood            Builtin[ICMPFloodParams]     `mapstructure:"icmp_flood" yaml:"icmp_flood"`
	PortScan             Builtin[PortScanParams]      `mapstructure:"port_scan" yaml:"port_scan"`
	HostScan             Builtin[HostScanParams]      `mapstructure:"host_scan" yaml:"host_scan"`
	VolumeDestination    Builtin[VolumeParams]        `mapstructure:"volume_destination" yaml:"volume_destination"`
	VolumeInterface      Builtin[VolumeParams]        `mapstructure:"volume_interface" yaml:"volume_interface"`
	InterfaceUtilisation Builtin[UtilisationParams]   `mapstructure:"interface_utilisation" yaml:"interface_utilisation"`
	ARPMACChange         Builtin[ARPMACChangeParams]  `mapstructure:"arp_mac_change" yaml:"arp_mac_change"`
	ARPFlipFlop          Builtin[ARPFlipFlopParams]   `mapstructure:"arp_flip_flop" yaml:"arp_flip_flop"`
	ARPMACManyIPs        Builtin[ARPMACManyIPsParams] `mapstructure:"arp_mac_many_ips" yaml:"arp_mac_many_ips"`
	ARPNewMAC            Builtin[ARPNewMACParams]     `mapstructure:"arp_new_mac" yaml:"arp_new_mac"`
}

// builtins is every built-in rule, in the order of the documentation.
var builtins = []registration{
	Amplification, SYNFlood, UDPFlood, ICMPFlood, PortScan, HostScan,
	VolumeDestination, VolumeInterface, InterfaceUtilisation,
	ARPMACChange, ARPFlipFlop, ARPMACManyIPs, ARPNewMAC,
}

// registration is a Kind with its parameter type hidden, so that kinds of
// different parameters live in one list.
type registration interface {
	name() string
	description() string
	setDefaults(*BuiltinConfig)
	validate(*BuiltinConfig, string) []error
	build(*BuiltinConfig, Deps) (*scheduled, error)
	tenants(*BuiltinConfig) (scope, overrides []string)
}

func (k Kind[P]) name() string        { return k.Name }
func (k Kind[P]) description() string { return k.Description }

func (k Kind[P]) setDefaults(c *BuiltinConfig) { *k.Config(c) = k.Defaults() }

func (k Kind[P]) validate(c *BuiltinConfig, key string) []error {
	b := k.Config(c)
	if !b.Enabled {
		return nil // a rule that does not run has nothing to check
	}
	prefix := key + "." + k.Name
	errs := validateCommon(prefix, b.Interval, b.Timeout, b.Severity, b.For, b.KeepFiringFor, b.Labels)
	if err := b.Params.Validate(); err != nil {
		errs = append(errs, prefixErrors(prefix+".params", err)...)
	}
	for _, t := range slices.Sorted(mapKeys(b.Overrides)) {
		o := b.Overrides[t]
		if o.Severity != "" && !o.Severity.Valid() {
			errs = append(errs, fmt.Errorf("%s.overrides.%s.severity: %q is not critical, error, warning or info", prefix, t, o.Severity))
		}
		if err := merge(b.Params, o.Params).Validate(); err != nil {
			errs = append(errs, prefixErrors(prefix+".overrides."+t+".params", err)...)
		}
	}
	return errs
}

func (k Kind[P]) build(c *BuiltinConfig, deps Deps) (*scheduled, error) {
	b := *k.Config(c)
	if !b.Enabled {
		return nil, nil
	}
	ev, err := k.New(deps)
	if err != nil {
		return nil, fmt.Errorf("rule %s: %w", k.Name, err)
	}
	byTenant := map[string]P{}
	disabled := map[string]bool{}
	severity := map[string]notify.Severity{}
	for t, o := range b.Overrides {
		byTenant[t] = merge(b.Params, o.Params)
		disabled[t] = o.Disabled
		if o.Severity != "" {
			severity[t] = o.Severity
		}
	}
	s := &scheduled{
		name: k.Name, kind: "builtin", interval: b.Interval, timeout: b.Timeout,
		scope: b.Tenants, disabled: disabled,
		rule: func(tenant string) alerts.Rule {
			r := alerts.Rule{Tenant: tenant, Name: k.Name, Severity: b.Severity, Labels: b.Labels,
				Annotations: b.Annotations, For: b.For.alerts(), KeepFiringFor: b.KeepFiringFor.alerts()}
			if s, ok := severity[tenant]; ok {
				r.Severity = s
			}
			return r
		},
	}
	s.evaluate = func(ctx evalContext) ([]Finding, error) {
		env := &Env[P]{Rule: k.Name, Now: ctx.now, Interval: b.Interval, Tenants: ctx.tenants,
			DB: ctx.db, Caps: ctx.caps, base: b.Params, byTenant: byTenant}
		return ev.Evaluate(ctx.ctx, env)
	}
	return s, nil
}

func validateCommon(prefix string, interval, timeout time.Duration, sev notify.Severity, forHold, keep Hold, labels map[string]string) []error {
	var errs []error
	if interval < time.Second {
		errs = append(errs, fmt.Errorf("%s.interval: %s is shorter than 1s", prefix, interval))
	}
	if timeout < 0 {
		errs = append(errs, fmt.Errorf("%s.timeout: %s is negative", prefix, timeout))
	} else if timeout > interval && interval > 0 {
		errs = append(errs, fmt.Errorf("%s.timeout: %s is longer than the interval %s (runs of one rule never overlap)", prefix, timeout, interval))
	}
	if !sev.Valid() {
		errs = append(errs, fmt.Errorf("%s.severity: %q is not critical, error, warning or info", prefix, sev))
	}
	for name, v := range labels {
		if !labelName.MatchString(name) {
			errs = append(errs, fmt.Errorf("%s.labels: %q is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)", prefix, name))
		}
		if slices.Contains(reservedLabels, name) {
			errs = append(errs, fmt.Errorf("%s.labels: %q is set by flowhouse itself", prefix, name))
		}
		_ = v
	}
	return errs
}

func prefixErrors(prefix string, err error) []error {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	out := make([]error, 0, len(list))
	for _, e := range list {
		out = append(out, fmt.Errorf("%s.%w", prefix, e))
	}
	return out
}

// merge returns base with every field that o sets (is not zero) taken
// from o: a tenant's override changes only what it names.
func merge[P any](base, o P) P {
	out := base
	ov, dst := reflect.ValueOf(&o).Elem(), reflect.ValueOf(&out).Elem()
	if ov.Kind() != reflect.Struct {
		return out
	}
	for i := range ov.NumField() {
		if f := ov.Field(i); f.CanSet() && !f.IsZero() {
			dst.Field(i).Set(f)
		}
	}
	return out
}

func (k Kind[P]) tenants(c *BuiltinConfig) (scope, overrides []string) {
	b := k.Config(c)
	return b.Tenants, slices.Sorted(mapKeys(b.Overrides))
}
