package enrich

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"time"

	"github.com/flowhouse/flowhouse/enrich/snmp"
	"github.com/flowhouse/flowhouse/secret"
	"github.com/flowhouse/flowhouse/tenant"
)

// Config of enrichment: tenants and exporters, networks, interface
// classification, SNMP polling and the OUI registry.
type Config struct {
	// DefaultTenant is the tenant of exporters no entry of Exporters
	// matches (package tenant matches them; see Tenants).
	DefaultTenant string `mapstructure:"default_tenant" yaml:"default_tenant"`
	// Exporters are matched by the flow's exporter address: an address
	// (one exporter) or a prefix (many), the longest prefix wins.
	Exporters []ExporterConfig `mapstructure:"exporters" yaml:"exporters"`
	// DiscoveredSNMP is used for exporters no entry matches (discovered
	// from their flows); polling them is off unless enabled.
	DiscoveredSNMP snmp.Config `mapstructure:"discovered_snmp" yaml:"discovered_snmp"`
	// InterfaceRules classify interfaces of every exporter, after the
	// exporter's own rules; the first rule that matches wins.
	InterfaceRules []InterfaceRule `mapstructure:"interface_rules" yaml:"interface_rules"`
	// Networks give names, roles and sites to source and destination
	// addresses; the longest prefix wins; an entry with a tenant applies
	// to that tenant's flows only and is preferred over one without.
	Networks []NetworkConfig `mapstructure:"networks" yaml:"networks"`
	// Polling intervals, jitter and bounds.
	Polling PollingConfig `mapstructure:"polling" yaml:"polling"`
	// SFlowCounters bounds the keeping of sFlow counter samples.
	SFlowCounters SFlowCountersConfig `mapstructure:"sflow_counters" yaml:"sflow_counters"`
	// OUIDir holds the IEEE registry CSVs oui.csv (MA-L), mam.csv (MA-M)
	// and oui36.csv (MA-S); Debian's ieee-data package. Empty: no vendors.
	OUIDir string `mapstructure:"oui_dir" yaml:"oui_dir"`
	// Secrets locate the key that opens the "enc:" values of the whole
	// configuration, not only enrichment's (package secret; the key has
	// been here since SNMP credentials were the only sealed values).
	Secrets secret.Config `mapstructure:"secrets" yaml:"secrets"`
}

// ExporterConfig describes one exporter, or every exporter of a prefix.
type ExporterConfig struct {
	// Match is an address (192.0.2.1) or a prefix (192.0.2.0/24).
	Match  string `mapstructure:"match" yaml:"match"`
	Tenant string `mapstructure:"tenant" yaml:"tenant"`
	// Name overrides the SNMP sysName as the exporter's name.
	Name string `mapstructure:"name" yaml:"name"`
	Site string `mapstructure:"site" yaml:"site"`
	Role string `mapstructure:"role" yaml:"role"`
	// SNMP polling of the exporter; off unless enabled.
	SNMP snmp.Config `mapstructure:"snmp" yaml:"snmp"`
	// InterfaceRules are tried before the global ones.
	InterfaceRules []InterfaceRule `mapstructure:"interface_rules" yaml:"interface_rules"`
}

// InterfaceRule classifies the interfaces whose name matches Name and
// whose description (ifAlias, else ifDescr) matches Description; an empty
// pattern matches everything. Empty outputs leave the value unset.
type InterfaceRule struct {
	Name         string `mapstructure:"name" yaml:"name"`
	Description  string `mapstructure:"description" yaml:"description"`
	Boundary     string `mapstructure:"boundary" yaml:"boundary"` // external | internal | ""
	Provider     string `mapstructure:"provider" yaml:"provider"`
	Connectivity string `mapstructure:"connectivity" yaml:"connectivity"` // transit, peering, ix, customer, ...
}

// NetworkConfig gives attributes to the addresses of a prefix.
type NetworkConfig struct {
	Prefix string `mapstructure:"prefix" yaml:"prefix"`
	// Tenant limits the entry to one tenant's flows; empty: every tenant.
	Tenant string `mapstructure:"tenant" yaml:"tenant"`
	Name   string `mapstructure:"name" yaml:"name"`
	Role   string `mapstructure:"role" yaml:"role"`
	Site   string `mapstructure:"site" yaml:"site"`
}

// PollingConfig schedules the SNMP pollers.
type PollingConfig struct {
	// Interfaces: sysName and the interface table.
	Interfaces time.Duration `mapstructure:"interfaces" yaml:"interfaces"`
	// ARP: ipNetToPhysicalTable and ipNetToMediaTable (whose IPv4 MACs win).
	ARP time.Duration `mapstructure:"arp" yaml:"arp"`
	// Counters: ifHCInOctets/ifHCOutOctets.
	Counters time.Duration `mapstructure:"counters" yaml:"counters"`
	// Neighbors: LLDP-MIB and CISCO-CDP-MIB neighbour tables.
	Neighbors time.Duration `mapstructure:"neighbors" yaml:"neighbors"`
	// Jitter is the fraction of an interval by which each poll is moved
	// at random (0.1: +-10%), so exporters are not polled in lockstep.
	Jitter float64 `mapstructure:"jitter" yaml:"jitter"`
	// MaxConcurrent bounds the polls running at once.
	MaxConcurrent int `mapstructure:"max_concurrent" yaml:"max_concurrent"`
	// BreakerFailures consecutive failures open an exporter's circuit:
	// no polls for BreakerCooldown, doubled on every failed retry up to
	// BreakerMaxCooldown.
	BreakerFailures    int           `mapstructure:"breaker_failures" yaml:"breaker_failures"`
	BreakerCooldown    time.Duration `mapstructure:"breaker_cooldown" yaml:"breaker_cooldown"`
	BreakerMaxCooldown time.Duration `mapstructure:"breaker_max_cooldown" yaml:"breaker_max_cooldown"`
	// ObservationRefresh: an unchanged ARP entry, device or neighbour is written
	// again after this long (changes are written at once).
	ObservationRefresh time.Duration `mapstructure:"observation_refresh" yaml:"observation_refresh"`
	// WriteTimeout bounds one write of poll results to the database.
	WriteTimeout time.Duration `mapstructure:"write_timeout" yaml:"write_timeout"`
	// MaxIPHistory bounds the addresses remembered per device.
	MaxIPHistory int `mapstructure:"max_ip_history" yaml:"max_ip_history"`
}

// SFlowCountersConfig bounds what the sFlow counter samples cost: the
// previous sample of each interface, and the rows waiting for their
// batch insert into interface_counters.
type SFlowCountersConfig struct {
	// MaxInterfaces bounds the interfaces (of all exporters) whose
	// previous sample is kept; a sample of a new interface beyond it is
	// dropped unless an interface is idle.
	MaxInterfaces int `mapstructure:"max_interfaces" yaml:"max_interfaces"`
	// IdleTimeout: an interface without a sample for this long is
	// forgotten (its next sample has no rate).
	IdleTimeout time.Duration `mapstructure:"idle_timeout" yaml:"idle_timeout"`
	// FlushInterval: queued rows are inserted at least this often, and
	// as soon as 500 wait.
	FlushInterval time.Duration `mapstructure:"flush_interval" yaml:"flush_interval"`
	// MaxPendingRows bounds the rows waiting for the database; beyond it
	// samples are dropped (counted) while it is slow or away.
	MaxPendingRows int `mapstructure:"max_pending_rows" yaml:"max_pending_rows"`
}

// DefaultConfig polls nothing (no exporter is configured) and reads the
// OUI registry from Debian's ieee-data package.
func DefaultConfig() Config {
	return Config{
		DefaultTenant:  "default",
		DiscoveredSNMP: snmp.DefaultConfig(),
		Polling: PollingConfig{
			Interfaces:         5 * time.Minute,
			ARP:                time.Minute,
			Counters:           time.Minute,
			Neighbors:          5 * time.Minute,
			Jitter:             0.1,
			MaxConcurrent:      16,
			BreakerFailures:    3,
			BreakerCooldown:    time.Minute,
			BreakerMaxCooldown: 30 * time.Minute,
			ObservationRefresh: time.Hour,
			WriteTimeout:       10 * time.Second,
			MaxIPHistory:       32,
		},
		SFlowCounters: SFlowCountersConfig{
			MaxInterfaces:  100_000,
			IdleTimeout:    time.Hour,
			FlushInterval:  5 * time.Second,
			MaxPendingRows: 100_000,
		},
		OUIDir:  "/usr/share/ieee-data",
		Secrets: secret.DefaultConfig(),
	}
}

var validBoundary = map[string]bool{"": true, "external": true, "internal": true}

// Tenants is the tenant part of the configuration: the default tenant
// and the match and tenant of each exporter entry, in order.
func (c Config) Tenants() tenant.Config {
	t := tenant.Config{Default: c.DefaultTenant, Exporters: make([]tenant.Exporter, len(c.Exporters))}
	for i, e := range c.Exporters {
		t.Exporters[i] = tenant.Exporter{Match: e.Match, Tenant: e.Tenant}
	}
	return t
}

// Validate names every wrong key and says what is wrong with it.
func (c Config) Validate() error {
	dflt, matches := c.Tenants().Problems()
	errs := []error{dflt}
	for i, e := range c.Exporters {
		key := fmt.Sprintf("exporters[%d]", i)
		errs = append(errs, matches[i])
		if err := e.SNMP.Validate(); err != nil {
			errs = append(errs, prefixErr(key+".snmp.", err))
		}
		errs = append(errs, validateRules(key+".interface_rules", e.InterfaceRules)...)
	}
	if err := c.DiscoveredSNMP.Validate(); err != nil {
		errs = append(errs, prefixErr("discovered_snmp.", err))
	}
	errs = append(errs, validateRules("interface_rules", c.InterfaceRules)...)
	for i, n := range c.Networks {
		if _, err := netip.ParsePrefix(n.Prefix); err != nil {
			errs = append(errs, fmt.Errorf("networks[%d].prefix: %q is not a CIDR prefix: %v", i, n.Prefix, err))
		}
	}
	p := c.Polling
	for _, d := range []struct {
		key string
		v   time.Duration
		min time.Duration
	}{
		{"polling.interfaces", p.Interfaces, time.Second},
		{"polling.arp", p.ARP, time.Second},
		{"polling.counters", p.Counters, time.Second},
		{"polling.neighbors", p.Neighbors, time.Second},
		{"polling.breaker_cooldown", p.BreakerCooldown, time.Millisecond},
		{"polling.breaker_max_cooldown", p.BreakerMaxCooldown, p.BreakerCooldown},
		{"polling.observation_refresh", p.ObservationRefresh, time.Second},
		{"polling.write_timeout", p.WriteTimeout, time.Millisecond},
		{"sflow_counters.idle_timeout", c.SFlowCounters.IdleTimeout, time.Minute},
		{"sflow_counters.flush_interval", c.SFlowCounters.FlushInterval, 10 * time.Millisecond},
	} {
		if d.v < d.min {
			errs = append(errs, fmt.Errorf("%s: %s is shorter than %s", d.key, d.v, d.min))
		}
	}
	if p.Jitter < 0 || p.Jitter > 0.5 {
		errs = append(errs, fmt.Errorf("polling.jitter: %g is outside 0..0.5", p.Jitter))
	}
	if p.MaxConcurrent < 1 {
		errs = append(errs, fmt.Errorf("polling.max_concurrent: %d must be at least 1", p.MaxConcurrent))
	}
	if p.BreakerFailures < 1 {
		errs = append(errs, fmt.Errorf("polling.breaker_failures: %d must be at least 1", p.BreakerFailures))
	}
	if p.MaxIPHistory < 1 {
		errs = append(errs, fmt.Errorf("polling.max_ip_history: %d must be at least 1", p.MaxIPHistory))
	}
	if n := c.SFlowCounters.MaxInterfaces; n < 1 {
		errs = append(errs, fmt.Errorf("sflow_counters.max_interfaces: %d must be at least 1", n))
	}
	if n := c.SFlowCounters.MaxPendingRows; n < batchRows {
		errs = append(errs, fmt.Errorf("sflow_counters.max_pending_rows: %d must be at least %d (one batch)", n, batchRows))
	}
	if err := c.Secrets.Validate(); err != nil {
		errs = append(errs, prefixErr("secrets.", err))
	}
	return errors.Join(errs...)
}

func validateRules(key string, rules []InterfaceRule) []error {
	var errs []error
	for i, r := range rules {
		if _, err := regexp.Compile(r.Name); err != nil {
			errs = append(errs, fmt.Errorf("%s[%d].name: %v", key, i, err))
		}
		if _, err := regexp.Compile(r.Description); err != nil {
			errs = append(errs, fmt.Errorf("%s[%d].description: %v", key, i, err))
		}
		if !validBoundary[r.Boundary] {
			errs = append(errs, fmt.Errorf("%s[%d].boundary: %q is not external or internal", key, i, r.Boundary))
		}
	}
	return errs
}

// prefixErr puts prefix before each message of a joined error.
func prefixErr(prefix string, err error) error {
	var out []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, errors.New(prefix+e.Error()))
		}
		return errors.Join(out...)
	}
	return errors.New(prefix + err.Error())
}
