package collector

import (
	"math"

	"github.com/flowhouse/flowhouse/flow"
)

// Totals-only records. RFC 7012 defines octetTotalCount and its kin as
// cumulative since the flow began, so an exporter that reports a long flow
// every active timeout with totals only reports its first minutes again in
// every report; stored as they come, the flow's traffic would be counted
// once per report. A record whose counters are totals is therefore turned
// into the traffic since its flow's previous report, remembered per flow
// key. Records with delta counters never come here.

// The counters a record may carry as totals, as bits of totalsReport.mask
// and indexes of totalsEntry.last.
const (
	totBytes = iota
	totPackets
	totRevBytes
	totRevPackets
	totCounters
)

// totalsKey tells the flows of one exporter apart: the key fields a record
// may carry, and where the record carries a start that stays the same from
// one report to the next (an absolute time, or sysUpTime), the start, so
// that a flow reusing a 5-tuple is another flow. Absent fields are zero.
// It is rather too fine than too coarse: a field that changes within one
// of the exporter's flows (the output interface after a route change,
// where the exporter does not key on it) counts that flow's total once
// more, while two of its flows sharing our key (multicast copies differing
// only in output interface) would mix their totals at every report.
type totalsKey struct {
	src, dst           flow.Addr
	srcMAC, dstMAC     flow.MAC
	start              int64
	domain             uint32
	inIf, outIf        uint32
	inVRF, outVRF      uint32
	samplerID          uint32
	port               uint16 // the exporter's source port: another process
	srcPort, dstPort   uint16
	srcVLAN, dstVLAN   uint16
	proto, tos, ipVers uint8
	dir                flow.Direction
	startKind          uint8 // 0 none, 1 absolute ms, 2 sysUpTime
}

type totalsEntry struct {
	last   [totCounters]uint64 // the totals of the last report
	seenMs int64               // when it came (collector clock)
}

// totalsTable is one exporter's memory of totals-only flows. Its size is
// bounded (max entries, approximate least-recently-seen eviction when
// full) and entries not reported for idleMs are forgotten, so a flood of
// unique keys costs a fixed amount of memory and evictions, counted.
type totalsTable struct {
	max     int
	idleMs  int64
	entries map[totalsKey]totalsEntry // values: a new flow allocates nothing
	// horizon per observation domain: when this process first heard from
	// the exporter, on the exporter's clock. What a flow sent before it
	// may have been stored by an earlier run of flowhouse: it is not
	// counted (see firstReport).
	horizon     map[uint32]int64
	nextSweepMs int64

	m                                *exporterMetrics
	evictions, expirations, restarts uint64
}

func newTotalsTable(max int, idleMs int64, m *exporterMetrics) *totalsTable {
	return &totalsTable{
		max:     max,
		idleMs:  idleMs,
		m:       m,
		entries: make(map[totalsKey]totalsEntry),
		horizon: make(map[uint32]int64),
	}
}

// totalsReport is what deltas needs of one record.
type totalsReport struct {
	counters         [totCounters]uint64
	mask             uint8 // which counters are totals
	startMs, endMs   int64 // resolved times, exporter clock
	hasStart         bool
	horizonMs, nowMs int64
	rawStart         int64
	rawStartKind     uint8
}

// deltas replaces the totals of r.counters by the traffic since the
// flow's previous report.
func (t *totalsTable) deltas(f *flow.Flow, r *totalsReport) {
	t.sweep(r.nowMs)
	if _, ok := t.horizon[f.ObservationDomain]; !ok && len(t.horizon) < 4096 {
		t.horizon[f.ObservationDomain] = r.horizonMs
	}
	k := keyOf(f, r)
	totals := r.counters
	e, known := t.entries[k]
	switch {
	case !known:
		if !t.room() {
			return
		}
		t.firstReport(f.ObservationDomain, r)
	case t.wentBack(&e, r):
		// A total below the last one is a new flow with the same key
		// (the exporter restarted, or reused the 5-tuple without a start
		// time to tell the two apart): its total is its traffic.
		t.restarts++
	default:
		for i := range r.counters {
			if r.mask&(1<<i) != 0 {
				r.counters[i] = totals[i] - e.last[i]
			}
		}
	}
	for i := range totals {
		if r.mask&(1<<i) != 0 {
			e.last[i] = totals[i]
		}
	}
	e.seenMs = r.nowMs
	t.entries[k] = e
}

func keyOf(f *flow.Flow, r *totalsReport) totalsKey {
	return totalsKey{
		src: f.SrcAddr, dst: f.DstAddr, srcMAC: f.SrcMAC, dstMAC: f.DstMAC,
		start: r.rawStart, startKind: r.rawStartKind,
		domain: f.ObservationDomain, inIf: f.InIf, outIf: f.OutIf,
		inVRF: f.InVRF, outVRF: f.OutVRF, samplerID: f.SamplerID,
		port: f.ExporterPort, srcPort: f.SrcPort, dstPort: f.DstPort,
		srcVLAN: f.SrcVLAN, dstVLAN: f.DstVLAN,
		proto: f.IPProto, tos: f.ToS, ipVers: f.IPVersion, dir: f.Direction,
	}
}

func (t *totalsTable) wentBack(e *totalsEntry, r *totalsReport) bool {
	for i := range r.counters {
		if r.mask&(1<<i) != 0 && r.counters[i] < e.last[i] {
			return true
		}
	}
	return false
}

// firstReport is the first report of a flow this table does not know: its
// totals are its traffic, the flow having begun while flowhouse listened.
// A flow that began before the horizon (flowhouse restarted while it ran;
// there is a horizon only for exporters the state file says an earlier
// run heard) is counted from the horizon on, assuming an even rate
// between its start and end: an earlier run may have stored what it sent
// before, and counting its total would count its whole past again, hours
// for a long flow. The price is at most what such a flow sent between its
// previous report and the (re)start, the same order as what the restart
// itself loses. Without a start time nothing tells, and the total counts.
func (t *totalsTable) firstReport(domain uint32, r *totalsReport) {
	h, ok := t.horizon[domain]
	if !ok || !r.hasStart || r.startMs >= h {
		return
	}
	span := r.endMs - r.startMs
	after := r.endMs - h
	for i := range r.counters {
		if r.mask&(1<<i) == 0 {
			continue
		}
		switch {
		case after <= 0 || span <= 0:
			r.counters[i] = 0
		default:
			r.counters[i] = mulDiv(r.counters[i], uint64(after), uint64(span))
		}
	}
}

// mulDiv is v*a/b for a <= b without overflowing 64 bits.
func mulDiv(v, a, b uint64) uint64 {
	return v/b*a + v%b*a/b
}

// room makes room for one more entry when the table is full; false only
// when it can hold none.
func (t *totalsTable) room() bool {
	if t.max <= 0 {
		return false
	}
	if len(t.entries) >= t.max {
		t.evict()
	}
	return true
}

// evict forgets the least recently seen of a few entries: map iteration
// starts at a random place, so this approximates LRU at a fixed cost.
func (t *totalsTable) evict() {
	const sample = 8
	var (
		oldest   totalsKey
		oldestMs int64
		n        int
	)
	for k, e := range t.entries {
		if n == 0 || e.seenMs < oldestMs {
			oldest, oldestMs = k, e.seenMs
		}
		n++
		if n == sample {
			break
		}
	}
	if n > 0 {
		delete(t.entries, oldest)
		t.evictions++
		t.m.totalsForgotten(totalsForgottenCapacity, 1)
	}
}

// sweep forgets the entries not reported for idleMs. It walks the table
// at most every idleMs/8, so its cost per record stays small.
func (t *totalsTable) sweep(nowMs int64) {
	if nowMs < t.nextSweepMs {
		return
	}
	t.nextSweepMs = nowMs + max(t.idleMs/8, 1000)
	n := 0
	for k, e := range t.entries {
		if nowMs-e.seenMs >= t.idleMs {
			delete(t.entries, k)
			n++
		}
	}
	t.expirations += uint64(n)
	t.m.totalsForgotten(totalsForgottenIdle, n)
}

// totalsToDeltas turns the totals of a record (tot.mask) into the traffic
// since the flow's previous report. The exporter's table is made on its
// first totals-only record: exporters that send deltas never have one.
func (e *exporter) totalsToDeltas(d *decodeContext, h *messageHeader, f *flow.Flow, tf *timeFields, tot *totalsReport) {
	if e.totals == nil {
		e.totals = newTotalsTable(e.dec.cfg.MaxTotalsPerExporter, e.dec.cfg.TotalsIdleTimeout.Milliseconds(), e.m)
	}
	// Only a start that reads the same in every report of a flow can be
	// part of its key: absolute times and sysUpTime do, a start relative
	// to the export time (IE 158) moves with the export time's second.
	switch {
	case tf.hasStartAbs:
		tot.rawStart, tot.rawStartKind = tf.startMs, 1
	case tf.hasStartUp:
		tot.rawStart, tot.rawStartKind = int64(tf.startUp), 2
	}
	canUptime := h.version == 9 || tf.systemInitMs != 0 || e.systemInitMs[h.domain] != 0
	tot.hasStart = tf.hasStartAbs || tf.hasStartDl || (tf.hasStartUp && canUptime)
	tot.startMs, tot.endMs = f.TimeStartMs, f.TimeEndMs
	// The exporter's first datagram, on its clock: the offset between the
	// clocks is that of this message's export time (whole seconds). Only
	// an exporter this flowhouse heard before its restart (restored from
	// the state file) has a past that may be stored already; for one heard
	// first now, every flow's first report is its total, as an oracle
	// decoding the same export reads it.
	tot.horizonMs, tot.nowMs = math.MinInt64, d.nowMs
	if e.resumed {
		tot.horizonMs = e.firstSeenMs + h.exportMs - d.nowMs
	}
	e.totals.deltas(f, tot)
}
