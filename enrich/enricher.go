// Package enrich completes flows with what the collector cannot know from
// a datagram: the tenant and attributes of the exporter, interface names,
// descriptions, speeds and classification (from SNMP), MAC addresses from
// the exporters' ARP tables, MAC vendors (IEEE OUI registry) and network
// attributes (configured CIDR prefixes).
//
// The Enricher is a flow.Sink in front of the store's batcher, and the
// collector's flow.CounterSink: sFlow counter samples become rows of
// interface_counters (source 'sflow') beside the SNMP polls' ('snmp'). Its
// Write path reads immutable caches only: it never waits for SNMP or the
// database, and what it cannot answer is counted as a cache miss. SNMP
// pollers run on their own goroutines, swap the caches whole, and keep
// their results in ClickHouse (interfaces, interface_counters,
// arp_observations, devices, exporter_attributes, neighbors,
// neighbor_observations), from which a restart
// reloads them.
//
// Every cache is keyed by tenant and exporter: tenants may reuse the same
// private address space and interface indexes.
package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowhouse/flowhouse/enrich/oui"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/tenant"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Deps of the Enricher.
type Deps struct {
	// Next receives the enriched flows: the store's batcher.
	Next flow.Sink
	// DB keeps poll results and reloads them at start; nil keeps nothing.
	DB         dbapi.DB
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// OUI replaces loading the registry from Config.OUIDir (tests).
	OUI *oui.Registry
	// Tenants matches exporters to tenants: the one cmd/flowhouse shares
	// with what reads the store, built from Config.Tenants(). Nil builds
	// it from the configuration.
	Tenants *tenant.Tenants
}

// Enricher fills the enrichment fields of flows and passes them on.
type Enricher struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	m    *metrics

	tenantMatch *tenant.Tenants
	nets        *networks
	globalRules []rule
	rules       map[*ExporterConfig][]rule

	oui       atomic.Pointer[oui.Registry]
	exporters sync.Map // flow.Addr -> *exporter
	tenants   sync.Map // tenant string -> *tenantARP
	count     atomic.Int64

	// Set by Start, read-only afterwards.
	w *writer

	discovered chan *exporter
	sem        chan struct{}
	inv        *inventory
	sflow      *sflowCounters
	tenantMu   sync.Mutex // rebuilding tenant ARP caches

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started atomic.Bool

	dbErrLog rate.Sometimes // failed writes of poll results
	nbrLog   rate.Sometimes // malformed LLDP/CDP values, unmapped local ports
}

// New checks cfg and prepares the Enricher without I/O.
func New(cfg Config, deps Deps) (*Enricher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("enrich: %w", err)
	}
	if deps.Next == nil {
		return nil, errors.New("enrich: Deps.Next is required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Tenants == nil {
		t, err := tenant.New(cfg.Tenants())
		if err != nil {
			return nil, fmt.Errorf("enrich: %w", err)
		}
		deps.Tenants = t
	} else if !deps.Tenants.Config().Equal(cfg.Tenants()) {
		// Entries are told apart by their index in cfg.Exporters.
		return nil, errors.New("enrich: Deps.Tenants is not built from this configuration's default_tenant and exporters")
	}
	e := &Enricher{
		cfg:         cfg,
		deps:        deps,
		log:         deps.Logger.With("component", "enrich"),
		m:           newMetrics(deps.Registerer),
		tenantMatch: deps.Tenants,
		nets:        newNetworks(cfg.Networks),
		globalRules: compileRules(cfg.InterfaceRules),
		rules:       map[*ExporterConfig][]rule{},
		discovered:  make(chan *exporter, 256),
		sem:         make(chan struct{}, cfg.Polling.MaxConcurrent),
		inv:         newInventory(cfg.Polling.MaxIPHistory),
		sflow:       newSFlowCounters(cfg.SFlowCounters),
		dbErrLog:    rate.Sometimes{Interval: 10 * time.Second},
		nbrLog:      rate.Sometimes{Interval: time.Minute},
	}
	for i := range e.cfg.Exporters {
		ec := &e.cfg.Exporters[i]
		e.rules[ec] = append(compileRules(ec.InterfaceRules), e.globalRules...)
	}
	if deps.OUI != nil {
		e.oui.Store(deps.OUI)
	}
	return e, nil
}

// Start loads the OUI registry, reloads the state kept in the database and
// starts the pollers. SNMP credentials are plain text by now: config.Load
// opened them (package secret).
func (e *Enricher) Start(ctx context.Context) error {
	if e.oui.Load() == nil && e.cfg.OUIDir != "" {
		reg, err := oui.Load(e.cfg.OUIDir)
		if err != nil {
			e.log.Warn("MAC vendors unavailable", "error", err)
		} else {
			e.oui.Store(reg)
			e.log.Info("loaded OUI registry", "dir", e.cfg.OUIDir, "prefixes", reg.Len())
		}
	}
	if e.deps.DB != nil {
		caps, err := dbapi.DetectCapabilities(ctx, e.deps.DB)
		if err != nil {
			return fmt.Errorf("enrich: %w", err)
		}
		e.w = &writer{db: e.deps.DB, modernIP: caps.IPv6}
		if err := e.reload(ctx); err != nil {
			// Enrichment works without history: polls fill the caches.
			e.log.Warn("reloading enrichment state failed", "error", err)
		}
	}
	// Exporters configured by address are known before their first flow.
	for _, a := range e.tenantMatch.Addresses() {
		e.exporterFor(flow.AddrFromNetip(a))
	}
	pctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.started.Store(true)
	e.wg.Add(1)
	go e.manage(pctx)
	if e.w != nil {
		e.wg.Add(1)
		go e.flushSFlow(pctx)
	}
	return nil
}

// Stop ends the pollers and waits for them.
func (e *Enricher) Stop() error {
	if e.cancel != nil {
		e.cancel()
	}
	e.wg.Wait()
	return nil
}

// exporterFor returns the exporter of a flow, creating it from the
// configuration (or as discovered) on its first flow.
func (e *Enricher) exporterFor(a flow.Addr) *exporter {
	if v, ok := e.exporters.Load(a); ok {
		return v.(*exporter)
	}
	x := &exporter{addr: a, ip: netip.AddrFrom16(a).Unmap(), links: map[linkKey]*LinkNeighbor{}, linkWritten: map[linkKey]int64{}}
	m := e.tenantMatch.Match(x.ip)
	x.tenant = m.Tenant
	if m.Discovered() {
		x.discovered = true
		x.snmpEnabled = e.cfg.DiscoveredSNMP.Enabled
		x.rules = e.globalRules
	} else {
		ec := &e.cfg.Exporters[m.Entry]
		x.cfg = ec
		x.cfgName, x.site, x.role = ec.Name, ec.Site, ec.Role
		x.snmpEnabled = ec.SNMP.Enabled
		x.rules = e.rules[ec]
	}
	v, loaded := e.exporters.LoadOrStore(a, x)
	if loaded {
		return v.(*exporter)
	}
	e.count.Add(1)
	state := "configured"
	if x.discovered {
		state = "discovered"
	}
	e.m.exporters.WithLabelValues(state).Inc()
	if x.snmpEnabled && e.started.Load() {
		select {
		case e.discovered <- x:
		default: // the manager's rescan finds it
		}
	}
	return x
}

func (e *Enricher) tenantARPOf(tenant string) *tenantARP {
	if v, ok := e.tenants.Load(tenant); ok {
		return v.(*tenantARP)
	}
	v, _ := e.tenants.LoadOrStore(tenant, &tenantARP{})
	return v.(*tenantARP)
}

// Write enriches flows in place and passes them to Next. It reads caches
// only.
func (e *Enricher) Write(flows []flow.Flow) {
	if len(flows) == 0 {
		return
	}
	reg := e.oui.Load()
	var (
		x        *exporter
		lastAddr flow.Addr
		name     string
		ifaces   map[uint32]*Interface
		arp      map[flow.Addr]Neighbor
		tarp     map[flow.Addr]uint64
		counting bool
	)
	var missIf, missMAC, missVendor int
	for i := range flows {
		f := &flows[i]
		if x == nil || f.ExporterAddr != lastAddr {
			x, lastAddr = e.exporterFor(f.ExporterAddr), f.ExporterAddr
			name = x.name()
			ifaces, arp, tarp = nil, nil, nil
			if p := x.ifaces.Load(); p != nil {
				ifaces = *p
			}
			if p := x.arp.Load(); p != nil {
				arp = *p
			}
			if p := e.tenantARPOf(x.tenant).m.Load(); p != nil {
				tarp = *p
			}
			counting = x.snmpEnabled
		}
		f.Tenant = x.tenant
		f.ExporterName = name

		f.InIfName, f.InIfDescription, f.InIfSpeedMbps, f.InIfBoundary = "", "", 0, ""
		if f.InIf != 0 {
			if it := ifaces[f.InIf]; it != nil {
				f.InIfName, f.InIfDescription, f.InIfSpeedMbps, f.InIfBoundary = it.Name, it.Description(), it.SpeedMbps, it.Boundary
			} else if counting {
				missIf++
			}
		}
		f.OutIfName, f.OutIfDescription, f.OutIfSpeedMbps, f.OutIfBoundary = "", "", 0, ""
		if f.OutIf != 0 {
			if it := ifaces[f.OutIf]; it != nil {
				f.OutIfName, f.OutIfDescription, f.OutIfSpeedMbps, f.OutIfBoundary = it.Name, it.Description(), it.SpeedMbps, it.Boundary
			} else if counting {
				missIf++
			}
		}

		if f.SrcMAC == 0 {
			f.SrcMAC = resolveMAC(f.SrcAddr, arp, tarp)
			if f.SrcMAC == 0 && counting && !f.SrcAddr.IsZero() {
				missMAC++
			}
		}
		if f.DstMAC == 0 {
			f.DstMAC = resolveMAC(f.DstAddr, arp, tarp)
			if f.DstMAC == 0 && counting && !f.DstAddr.IsZero() {
				missMAC++
			}
		}
		f.SrcNetName, f.SrcNetRole, f.SrcNetSite = "", "", ""
		if nw := e.nets.lookup(x.tenant, f.SrcAddr); nw != nil {
			f.SrcNetName, f.SrcNetRole, f.SrcNetSite = nw.Name, nw.Role, nw.Site
		}
		f.DstNetName, f.DstNetRole, f.DstNetSite = "", "", ""
		if nw := e.nets.lookup(x.tenant, f.DstAddr); nw != nil {
			f.DstNetName, f.DstNetRole, f.DstNetSite = nw.Name, nw.Role, nw.Site
		}
		f.SrcVendor, f.DstVendor = "", ""
		if reg != nil {
			if f.SrcMAC != 0 {
				if f.SrcVendor = reg.Vendor(uint64(f.SrcMAC)); f.SrcVendor == "" && !oui.LocallyAdministered(uint64(f.SrcMAC)) {
					missVendor++
				}
			}
			if f.DstMAC != 0 {
				if f.DstVendor = reg.Vendor(uint64(f.DstMAC)); f.DstVendor == "" && !oui.LocallyAdministered(uint64(f.DstMAC)) {
					missVendor++
				}
			}
		}
	}
	e.m.flows.Add(float64(len(flows)))
	if missIf > 0 {
		e.m.missIf.Add(float64(missIf))
	}
	if missMAC > 0 {
		e.m.missMAC.Add(float64(missMAC))
	}
	if missVendor > 0 {
		e.m.missVendor.Add(float64(missVendor))
	}
	e.deps.Next.Write(flows)
}

func resolveMAC(a flow.Addr, arp map[flow.Addr]Neighbor, tarp map[flow.Addr]uint64) flow.MAC {
	if a.IsZero() {
		return 0
	}
	if n, ok := arp[a]; ok {
		return flow.MAC(n.MAC)
	}
	return flow.MAC(tarp[a])
}

// Network returns the configured network of an address for a tenant's
// flows: the longest prefix, the tenant's own entries first.
func (e *Enricher) Network(tenant string, a netip.Addr) (Network, bool) {
	if n := e.nets.lookup(tenant, flow.AddrFromNetip(a)); n != nil {
		return *n, true
	}
	return Network{}, false
}

// Vendor returns the OUI vendor of a MAC ("" when unknown).
func (e *Enricher) Vendor(mac uint64) string { return e.oui.Load().Vendor(mac) }

// Interfaces returns the cached interfaces of an exporter.
func (e *Enricher) Interfaces(exporterAddr netip.Addr) map[uint32]Interface {
	v, ok := e.exporters.Load(flow.AddrFromNetip(exporterAddr))
	if !ok {
		return nil
	}
	out := map[uint32]Interface{}
	if p := v.(*exporter).ifaces.Load(); p != nil {
		for k, i := range *p {
			out[k] = *i
		}
	}
	return out
}

// Exporter returns the status of one exporter.
func (e *Enricher) Exporter(addr netip.Addr) (ExporterStatus, bool) {
	v, ok := e.exporters.Load(flow.AddrFromNetip(addr))
	if !ok {
		return ExporterStatus{}, false
	}
	return v.(*exporter).statusOf(), true
}

func (x *exporter) statusOf() ExporterStatus {
	s := ExporterStatus{Address: x.ip, Tenant: x.tenant, Name: x.name(), Discovered: x.discovered, SNMPEnabled: x.snmpEnabled}
	if p := x.sysName.Load(); p != nil {
		s.SysName = *p
	}
	if p := x.ifaces.Load(); p != nil {
		s.Interfaces = len(*p)
	}
	if p := x.arp.Load(); p != nil {
		s.ARPEntries = len(*p)
	}
	s.LinkNeighbors = int(x.linkCount.Load())
	x.status.mu.Lock()
	s.LastSuccessMs, s.LastError, s.LastReason, s.Failures = x.status.lastSuccess, x.status.lastError, x.status.lastReason, x.status.failures
	s.CircuitOpen = time.Now().UnixMilli() < x.status.openUntil
	x.status.mu.Unlock()
	return s
}

// Devices returns the device inventory of a tenant.
func (e *Enricher) Devices(tenant string) []Device { return e.inv.devices(tenant) }
