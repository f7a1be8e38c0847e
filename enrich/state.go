package enrich

import (
	"net/netip"
	"regexp"
	"sync"
	"sync/atomic"

	"github.com/flowhouse/flowhouse/flow"
)

// Interface is what enrichment knows of one interface of one exporter.
type Interface struct {
	Index      uint32
	Name       string // ifName
	Descr      string // ifDescr
	Alias      string // ifAlias
	SpeedMbps  uint64
	OperStatus uint8
	// Classification from interface rules.
	Boundary     string
	Provider     string
	Connectivity string
}

// Description is what flows show as the interface description: the
// operator's ifAlias, else ifDescr.
func (i *Interface) Description() string {
	if i.Alias != "" {
		return i.Alias
	}
	return i.Descr
}

// Neighbor is an ARP/ND entry of an exporter.
type Neighbor struct {
	IfIndex uint32
	MAC     uint64
}

// exporter is one exporter's attributes and caches. The attributes are
// fixed when it is created; the caches are immutable maps swapped whole
// by the poller, so the write path reads them without locks.
type exporter struct {
	addr       flow.Addr
	ip         netip.Addr // unmapped
	tenant     string
	cfgName    string
	site, role string
	discovered bool
	cfg        *ExporterConfig // nil when discovered
	// snmpEnabled: polled (configured, or discovered_snmp.enabled).
	snmpEnabled bool
	rules       []rule

	sysName atomic.Pointer[string]
	ifaces  atomic.Pointer[map[uint32]*Interface]
	arp     atomic.Pointer[map[flow.Addr]Neighbor]
	// linkCount is len(links), for Status without pollMu.
	linkCount atomic.Int64

	scheduled atomic.Bool // a poller goroutine runs for it
	status    pollStatus

	// Poller-side state, under pollMu: one poll of an exporter at a time.
	pollMu      sync.Mutex
	prevCounter map[uint32]counterSample
	prevUptime  uint32
	ifWritten   map[uint32]int64 // unix ms of the last interfaces row
	arpWritten  map[flow.Addr]int64
	links       map[linkKey]*LinkNeighbor // LLDP/CDP neighbours now
	linkWritten map[linkKey]int64         // unix ms of the last neighbors row
	nbrMIBs     string                    // lldp, cdp, lldp+cdp, none; "" before the first poll
	attrWritten int64
	attrSysName string
	// The last exporter_polls row: when (unix ms, 0: none since start)
	// and whether it told of a failure.
	pollsWritten     int64
	pollsWrittenFail bool
}

// name is the configured name, else sysName.
func (x *exporter) name() string {
	if x.cfgName != "" {
		return x.cfgName
	}
	if p := x.sysName.Load(); p != nil {
		return *p
	}
	return ""
}

// rule is a compiled InterfaceRule.
type rule struct {
	name, desc                       *regexp.Regexp
	boundary, provider, connectivity string
}

func compileRules(rs []InterfaceRule) []rule {
	out := make([]rule, 0, len(rs))
	for _, r := range rs {
		cr := rule{boundary: r.Boundary, provider: r.Provider, connectivity: r.Connectivity}
		if r.Name != "" {
			cr.name = regexp.MustCompile(r.Name) // validated
		}
		if r.Description != "" {
			cr.desc = regexp.MustCompile(r.Description)
		}
		out = append(out, cr)
	}
	return out
}

// classify sets the interface's classification from the first rule that
// matches.
func classify(rules []rule, i *Interface) {
	for _, r := range rules {
		if r.name != nil && !r.name.MatchString(i.Name) {
			continue
		}
		if r.desc != nil && !r.desc.MatchString(i.Description()) {
			continue
		}
		i.Boundary, i.Provider, i.Connectivity = r.boundary, r.provider, r.connectivity
		return
	}
}

// tenantARP merges the ARP caches of a tenant's exporters: an address
// resolved by any of them (the most recent poll wins on conflicts).
type tenantARP struct {
	m atomic.Pointer[map[flow.Addr]uint64]
}

// pollStatus is an exporter's polling health, read by Status.
type pollStatus struct {
	mu          sync.Mutex
	lastSuccess int64 // unix ms
	lastFailure int64 // unix ms
	failedKind  string
	lastError   string
	lastReason  string
	failures    uint64 // total
	consecutive int
	openUntil   int64 // unix ms; circuit open before it
	cooldown    int64 // ms, next cooldown
}

// ExporterStatus is what the poller knows of an exporter, for tests, the
// API and logs. LastError never contains secrets.
type ExporterStatus struct {
	Address       netip.Addr
	Tenant        string
	Name          string
	SysName       string
	Discovered    bool
	SNMPEnabled   bool
	Interfaces    int
	ARPEntries    int
	LinkNeighbors int
	LastSuccessMs int64
	LastError     string
	LastReason    string
	Failures      uint64
	CircuitOpen   bool
}
