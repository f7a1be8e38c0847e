package enrich

import (
	"github.com/flowhouse/flowhouse/enrich/snmp"
	"github.com/prometheus/client_golang/prometheus"
)

// Poll kinds, the "kind" label.
const (
	kindInterfaces = "interfaces" // sysName + interface table
	kindARP        = "arp"
	kindCounters   = "counters"
	kindNeighbors  = "neighbors" // LLDP-MIB and CISCO-CDP-MIB
)

// pollKinds in the order an exporter is polled: the interface table
// first, which the others use.
var pollKinds = []string{kindInterfaces, kindARP, kindCounters, kindNeighbors}

// Cache miss kinds, the "kind" label of flowhouse_enrich_cache_misses_total.
const (
	missInterface = "interface" // ifIndex not in the exporter's interface cache
	missMAC       = "mac"       // flow without MAC and the address not in the ARP caches
	missVendor    = "vendor"    // MAC known, not locally administered, no OUI vendor
)

type metrics struct {
	flows         prometheus.Counter
	misses        *prometheus.CounterVec
	missIf        prometheus.Counter
	missMAC       prometheus.Counter
	missVendor    prometheus.Counter
	pollSuccess   *prometheus.CounterVec
	pollFailures  *prometheus.CounterVec
	pollSkipped   *prometheus.CounterVec
	pollDuration  *prometheus.HistogramVec
	exporters     *prometheus.GaugeVec
	dbErrors      *prometheus.CounterVec
	sflowVec      *prometheus.CounterVec
	nbrMalformed  *prometheus.CounterVec
	unmappedPorts *prometheus.CounterVec
	nbrMIBs       *prometheus.GaugeVec
	sflowSamples  map[string]prometheus.Counter // by outcome, made up front
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		flows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowhouse_enrich_flows_total", Help: "Flows passed through enrichment.",
		}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_enrich_cache_misses_total", Help: "Lookups enrichment could not answer from its caches, by kind (interface, mac, vendor).",
		}, []string{"kind"}),
		pollSuccess: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_enrich_snmp_polls_total", Help: "Successful SNMP polls, by kind (interfaces, arp, counters, neighbors).",
		}, []string{"kind"}),
		pollFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_enrich_snmp_poll_failures_total", Help: "Failed SNMP polls, by kind and reason (timeout, auth, network, agent, config, other).",
		}, []string{"kind", "reason"}),
		pollSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_enrich_snmp_polls_skipped_total", Help: "SNMP polls not attempted because the exporter's circuit breaker was open, by kind.",
		}, []string{"kind"}),
		pollDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flowhouse_enrich_snmp_poll_duration_seconds", Help: "Duration of SNMP polls, successful or not, by kind.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"kind"}),
		exporters: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowhouse_enrich_exporters", Help: "Exporters known to enrichment, by state (configured, discovered, circuit_open).",
		}, []string{"state"}),
		dbErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_enrich_db_errors_total", Help: "Failed writes of poll results, by table.",
		}, []string{"table"}),
	}
	m.sflowVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flowhouse_enrich_sflow_counter_samples_total",
		Help: "sFlow counter samples (generic interface counters) received, by outcome (queued, duplicate, interface_limit, backlog, no_database).",
	}, []string{"outcome"})
	m.nbrMalformed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flowhouse_enrich_neighbor_malformed_total",
		Help: "LLDP/CDP values skipped or shown as text/hex because they do not fit their type, by reason (bad_index, bad_type, bad_length, no_chassis_id, bad_address).",
	}, []string{"reason"})
	m.unmappedPorts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flowhouse_enrich_neighbor_unmapped_ports_total",
		Help: "LLDP neighbours whose local port maps to no ifIndex (kept with local_if_index 0), per poll, by reason (no_match, unknown_port).",
	}, []string{"reason"})
	m.nbrMIBs = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "flowhouse_enrich_neighbor_mibs",
		Help: "Exporters by the neighbour MIBs their last neighbors poll found (lldp, cdp, lldp+cdp, none).",
	}, []string{"mib"})
	for _, r := range snmp.MalformedReasons {
		m.nbrMalformed.WithLabelValues(r)
	}
	for _, r := range []string{unmappedNoMatch, unmappedUnknownPort} {
		m.unmappedPorts.WithLabelValues(r)
	}
	m.sflowSamples = map[string]prometheus.Counter{}
	for _, o := range sampleOutcomes {
		m.sflowSamples[o] = m.sflowVec.WithLabelValues(o)
	}
	m.missIf = m.misses.WithLabelValues(missInterface)
	m.missMAC = m.misses.WithLabelValues(missMAC)
	m.missVendor = m.misses.WithLabelValues(missVendor)
	for _, k := range pollKinds {
		m.pollSuccess.WithLabelValues(k)
		m.pollSkipped.WithLabelValues(k)
		for _, r := range snmp.Reasons {
			m.pollFailures.WithLabelValues(k, r)
		}
	}
	if reg != nil {
		reg.MustRegister(m.flows, m.misses, m.pollSuccess, m.pollFailures, m.pollSkipped, m.pollDuration, m.exporters, m.dbErrors, m.sflowVec,
			m.nbrMalformed, m.unmappedPorts, m.nbrMIBs)
	}
	return m
}
