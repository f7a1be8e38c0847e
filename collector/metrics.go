package collector

import (
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the collector's Prometheus series. A nil *metrics is valid
// and records nothing, which keeps unit tests and benchmarks free of it.
type metrics struct {
	datagrams    *prometheus.CounterVec
	flows        *prometheus.CounterVec
	drops        *prometheus.CounterVec
	sequenceLost *prometheus.CounterVec
	restarts     *prometheus.CounterVec
	totalsForgot *prometheus.CounterVec
	queueDrops   prometheus.Counter
	queueDepth   *prometheus.GaugeVec
	rcvbuf       *prometheus.GaugeVec
	kernelDrops  *prometheus.GaugeVec
	// counterRecords has one series per known format and outcome,
	// made up front so the hot path does no label lookups.
	counterRecords *prometheus.CounterVec
	counterSeries  map[uint32]*[numOutcomes]prometheus.Counter
	unknown        unknownFields
}

// unknownFields counts, per (PEN, IE), the fields of data templates that
// neither the fixed set nor a mapping decodes: what to map next. They are
// counted when a template is defined (a refresh as it was is no new
// definition), never per record. The series are bounded, so that a flood
// of templates of made-up fields cannot grow /metrics without end: past
// maxUnknownSeries pairs, the rest share the pen="other", ie="other" series.
type unknownFields struct {
	vec   *prometheus.CounterVec
	mu    sync.Mutex
	byKey map[penIE]prometheus.Counter
	other prometheus.Counter
}

const maxUnknownSeries = 256

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		datagrams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_collector_datagrams_total", Help: "Datagrams received, by exporter and protocol.",
		}, []string{"exporter", "protocol"}),
		flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_collector_flows_total", Help: "Flows decoded, by exporter and protocol.",
		}, []string{"exporter", "protocol"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_collector_drops_total", Help: "Datagrams or parts of datagrams not decoded, by exporter and reason.",
		}, []string{"exporter", "reason"}),
		sequenceLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_collector_sequence_gap_total", Help: "Units (packets, records, flows) missing from exporters' sequence numbers when first seen missing.",
		}, []string{"exporter"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_collector_exporter_restarts_total", Help: "Exporter restarts seen in a sequence stream (its accounting starts again), by exporter, protocol and what showed it.",
		}, []string{"exporter", "protocol", "reason"}),
		totalsForgot: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_collector_totals_forgotten_total",
			Help: "Flows of totals-only records forgotten by the collector, by exporter and reason: capacity (the exporter's table was full) or idle (not reported for totals_idle_timeout). A forgotten flow's next report counts as its first.",
		}, []string{"exporter", "reason"}),
		queueDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowhouse_collector_queue_drops_total", Help: "Datagrams dropped because their decode worker's queue was full.",
		}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowhouse_collector_queue_depth", Help: "Datagrams waiting per decode worker.",
		}, []string{"worker"}),
		rcvbuf: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowhouse_collector_socket_receive_buffer_bytes", Help: "SO_RCVBUF granted by the kernel per listener.",
		}, []string{"listener"}),
		kernelDrops: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowhouse_collector_socket_kernel_drops", Help: "Datagrams the kernel dropped on the listener's sockets (receive buffer full), from SO_RXQ_OVFL.",
		}, []string{"listener"}),
	}
	m.counterRecords = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flowhouse_collector_sflow_counter_records_total",
		Help: "sFlow counter records, by format (enterprise:format, \"other\" beyond the known ones) and outcome (kept, counted, skipped, malformed).",
	}, []string{"format", "outcome"})
	m.counterSeries = make(map[uint32]*[numOutcomes]prometheus.Counter, len(knownCounterFormats)+1)
	for _, f := range append(knownCounterFormats, counterFormatOther) {
		var s [numOutcomes]prometheus.Counter
		for o := range s {
			s[o] = m.counterRecords.WithLabelValues(counterFormatLabel(f), outcomeNames[o])
		}
		m.counterSeries[f] = &s
	}
	m.unknown.vec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flowhouse_collector_unknown_fields_total",
		Help: "Fields of NetFlow v9/IPFIX data templates that nothing decodes, by enterprise number and information element, once per template definition; past 256 pairs, pen and ie are \"other\".",
	}, []string{"pen", "ie"})
	m.unknown.byKey = make(map[penIE]prometheus.Counter)
	if reg != nil {
		reg.MustRegister(m.datagrams, m.flows, m.drops, m.sequenceLost, m.restarts, m.totalsForgot, m.queueDrops, m.queueDepth, m.rcvbuf, m.kernelDrops, m.counterRecords, m.unknown.vec)
	}
	return m
}

// Outcomes of an sFlow counter record, the "outcome" label.
const (
	outcomeKept      = iota // generic interface counters, handed to the counter sink
	outcomeCounted          // decoded and checked, not kept (Ethernet counters)
	outcomeSkipped          // a format not decoded
	outcomeMalformed        // shorter than its format's structure
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"kept", "counted", "skipped", "malformed"}

// knownCounterFormats are the enterprise-0 counter formats of sFlow.org's
// structure registry that get their own label; any other format (and
// every other enterprise's) is "other", which bounds the series however
// hostile the traffic: 1-7 interface counters (generic, Ethernet, Token
// Ring, 100BaseVG, VLAN, 802.11, LAG), 1001-1005 processor, radio,
// OpenFlow port and port name, 2000-2010 host, 2100-2106 virtual hosts.
var knownCounterFormats = func() []uint32 {
	var fs []uint32
	for _, r := range [][2]uint32{{1, 7}, {1001, 1005}, {2000, 2010}, {2100, 2106}} {
		for f := r[0]; f <= r[1]; f++ {
			fs = append(fs, f)
		}
	}
	return fs
}()

// counterFormatOther stands for every format not known: no real format
// has it (enterprise 0xfffff, format 0xfff).
const counterFormatOther = 0xffffffff

func counterFormatLabel(f uint32) string {
	if f == counterFormatOther {
		return "other"
	}
	return strconv.FormatUint(uint64(f>>12), 10) + ":" + strconv.FormatUint(uint64(f&0xfff), 10)
}

func (em *exporterMetrics) counterRecord(format uint32, outcome int) {
	if em == nil {
		return
	}
	s := em.m.counterSeries[format]
	if s == nil {
		s = em.m.counterSeries[counterFormatOther]
	}
	s[outcome].Inc()
}

// unknownFields counts the fields of a compiled data template that are
// decoded neither by the fixed set nor by a mapping.
func (m *metrics) unknownFields(t *template) {
	if m == nil {
		return
	}
	u := &m.unknown
	u.mu.Lock()
	defer u.mu.Unlock()
	for i := range t.fields {
		f := &t.fields[i]
		// Padding carries nothing to map.
		padding := f.pen == 0 && f.ie == iePaddingOctets
		mapped := t.extra != nil && t.extra[i].kind != flow.ExtraNone
		if _, fixed := fixedColumn(f.pen, f.ie); fixed || padding || mapped {
			continue
		}
		k := penIE{pen: f.pen, ie: f.ie}
		c := u.byKey[k]
		switch {
		case c != nil:
		case len(u.byKey) < maxUnknownSeries:
			c = u.vec.WithLabelValues(strconv.FormatUint(uint64(k.pen), 10), strconv.FormatUint(uint64(k.ie), 10))
			u.byKey[k] = c
		default:
			if u.other == nil {
				u.other = u.vec.WithLabelValues("other", "other")
			}
			c = u.other
		}
		c.Inc()
	}
}

// exporterMetrics caches an exporter's series so the hot path does no
// label lookups.
type exporterMetrics struct {
	m         *metrics
	addr      string
	datagrams [flow.ProtoSFlowV5 + 1]prometheus.Counter
	flows     [flow.ProtoSFlowV5 + 1]prometheus.Counter
	drops     map[string]prometheus.Counter
	seqLost   prometheus.Counter
	// restarts are made on an exporter's first restart of each kind, so
	// exporters that never restart show no such series.
	restarts map[restartKey]prometheus.Counter
	// queueFull is made on the first drop, by whichever reading goroutine
	// has it, so exporters that never lose a datagram show no such series.
	queueFull atomic.Pointer[prometheus.Counter]
}

func (m *metrics) forExporter(addr netip.Addr) *exporterMetrics {
	if m == nil {
		return nil
	}
	em := &exporterMetrics{m: m, addr: addr.Unmap().String(), drops: make(map[string]prometheus.Counter)}
	for p := flow.ProtoUnknown; p <= flow.ProtoSFlowV5; p++ {
		em.datagrams[p] = m.datagrams.WithLabelValues(em.addr, p.String())
		em.flows[p] = m.flows.WithLabelValues(em.addr, p.String())
	}
	em.seqLost = m.sequenceLost.WithLabelValues(em.addr)
	return em
}

func (em *exporterMetrics) observe(p flow.Protocol, flows int) {
	if em == nil {
		return
	}
	em.datagrams[p].Inc()
	if flows > 0 {
		em.flows[p].Add(float64(flows))
	}
}

func (em *exporterMetrics) drop(reason string) {
	if em == nil {
		return
	}
	c := em.drops[reason]
	if c == nil {
		c = em.m.drops.WithLabelValues(em.addr, reason)
		em.drops[reason] = c
	}
	c.Inc()
}

// queueDrop is drop(ReasonQueueFull) for the reading goroutines: drop's
// cache of series belongs to the decoding one.
func (em *exporterMetrics) queueDrop() {
	if em == nil {
		return
	}
	c := em.queueFull.Load()
	if c == nil {
		fresh := em.m.drops.WithLabelValues(em.addr, ReasonQueueFull)
		em.queueFull.CompareAndSwap(nil, &fresh)
		c = em.queueFull.Load()
	}
	(*c).Inc()
}

func (em *exporterMetrics) sequenceLost(n uint64) {
	if em == nil {
		return
	}
	em.seqLost.Add(float64(n))
}

type restartKey struct {
	proto  flow.Protocol
	reason restartReason
}

func (em *exporterMetrics) restart(p flow.Protocol, reason restartReason) {
	if em == nil {
		return
	}
	k := restartKey{p, reason}
	c := em.restarts[k]
	if c == nil {
		if em.restarts == nil {
			em.restarts = make(map[restartKey]prometheus.Counter)
		}
		c = em.m.restarts.WithLabelValues(em.addr, p.String(), reason.String())
		em.restarts[k] = c
	}
	c.Inc()
}

// Reasons a totals-only flow is forgotten (label of
// flowhouse_collector_totals_forgotten_total).
const (
	totalsForgottenCapacity = "capacity"
	totalsForgottenIdle     = "idle"
)

// totalsForgotten counts n flows of totals-only records forgotten; series
// are made on first use, as only exporters sending totals-only records
// have any.
func (em *exporterMetrics) totalsForgotten(reason string, n int) {
	if em == nil || n == 0 {
		return
	}
	em.m.totalsForgot.WithLabelValues(em.addr, reason).Add(float64(n))
}

func (m *metrics) dropNoExporter(reason string) {
	if m == nil {
		return
	}
	m.drops.WithLabelValues("", reason).Inc()
}
