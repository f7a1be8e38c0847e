package collector

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/flowhouse/flowhouse/flow"
)

// exporter is everything known about one exporter address. It is locked by
// the decoding goroutine for the duration of a datagram, so Stats sees
// consistent numbers without the hot path paying for atomics.
type exporter struct {
	mu   sync.Mutex
	addr netip.Addr
	dec  *Decoder

	firstSeenMs, lastSeenMs int64
	datagrams, flows, bytes uint64
	protocols               uint32 // bit per flow.Protocol
	drops                   map[string]uint64

	templates *templateStore
	sampling  *samplingTable
	streams   map[streamKey]*sequenceStream
	// totals remembers the flows of totals-only records (totals.go); nil
	// until the exporter sends one.
	totals *totalsTable
	// counterRecords counts the sFlow interface counter records decoded.
	counterRecords uint64

	// systemInitMs per observation domain, from IPFIX options records,
	// anchors flowStart/EndSysUpTime.
	systemInitMs map[uint32]int64
	// ifNames the exporter announced in options records.
	ifNames map[uint32]InterfaceName
	// optionsChanges counts changes of systemInitMs and ifNames (see stateMarks).
	optionsChanges uint64

	m *exporterMetrics

	// optionsRecords counts the options records of the message being decoded.
	optionsRecords int
	// resumed: the state file says an earlier run of flowhouse heard from
	// this exporter, so what it stored of long flows' totals may overlap
	// what their next reports say (totals.go).
	resumed bool
	// sequenceMessages counts the messages the sequence accounting took,
	// which orders the streams by their last use.
	sequenceMessages uint64

	// Queue accounting is done by the reading goroutines, outside mu: the
	// datagrams of this exporter waiting in its worker's queue, those
	// refused there (queue_full), and when the last was refused.
	queued          atomic.Int64
	queueDrops      atomic.Uint64
	lastQueueDropMs atomic.Int64
}

func newExporter(addr netip.Addr, nowMs int64, dec *Decoder) *exporter {
	e := &exporter{
		addr:         addr,
		dec:          dec,
		firstSeenMs:  nowMs,
		drops:        make(map[string]uint64),
		templates:    newTemplateStore(dec.cfg.MaxTemplatesPerExporter, dec.cfg.TemplateTimeout.Milliseconds()),
		streams:      make(map[streamKey]*sequenceStream),
		systemInitMs: make(map[uint32]int64),
		ifNames:      make(map[uint32]InterfaceName),
		m:            dec.metrics.forExporter(addr),
	}
	e.sampling = newSamplingTable(dec.rules, addr)
	return e
}

func (e *exporter) drop(reason string) {
	e.drops[reason]++
	e.m.drop(reason)
}

// queueDrop counts a datagram refused at the worker's queue. It is called
// by reading goroutines, concurrently with decoding and with each other.
func (e *exporter) queueDrop(nowMs int64) {
	e.queueDrops.Add(1)
	e.lastQueueDropMs.Store(nowMs)
	e.m.queueDrop()
}

func (e *exporter) observe(p flow.Protocol, flows int) {
	e.m.observe(p, flows)
}

func (e *exporter) stats() flow.ExporterStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := flow.ExporterStats{
		Addr:        flow.AddrFromNetip(e.addr),
		FirstSeenMs: e.firstSeenMs,
		LastSeenMs:  max(e.lastSeenMs, e.lastQueueDropMs.Load()),
		Datagrams:   e.datagrams,
		Flows:       e.flows,
		Bytes:       e.bytes,
		Drops:       make(map[string]uint64, len(e.drops)),
		Templates:   e.templates.len(),

		CounterRecords: e.counterRecords,
	}
	for p := flow.ProtoNetFlowV5; p <= flow.ProtoSFlowV5; p++ {
		if e.protocols&(1<<p) != 0 {
			s.Protocols = append(s.Protocols, p.String())
		}
	}
	for k, v := range e.drops {
		s.Drops[k] = v
	}
	if n := e.queueDrops.Load(); n > 0 {
		s.Drops[ReasonQueueFull] += n
	}
	for k, st := range e.streams {
		s.SequenceExpected += st.expected
		s.SequenceLost += st.lost
		s.Streams = append(s.Streams, flow.StreamStats{
			Protocol:          k.proto.String(),
			ObservationDomain: k.domain,
			LastSequence:      st.last,
			Expected:          st.expected,
			Lost:              st.lost,
			Resets:            st.resets,
			Restarts:          st.restarts,
			SourcePort:        k.session,
		})
	}
	return s
}
