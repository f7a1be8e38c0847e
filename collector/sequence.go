package collector

import "github.com/flowhouse/flowhouse/flow"

// streamKey names one sequence-number space: NetFlow v9 counts packets per
// source ID, IPFIX counts data records per observation domain, sFlow
// counts datagrams per sub-agent, NetFlow v5 counts flows per engine.
type streamKey struct {
	proto  flow.Protocol
	domain uint32
}

type sequenceStream struct {
	initialized bool
	next        uint32 // the sequence number expected next
	last        uint32
	expected    uint64 // units the exporter says it sent since we first heard it
	lost        uint64
	resets      uint64
	reordered   uint64
}

// maxSequenceGap is the largest forward jump counted as loss; a bigger jump
// (or a step backwards beyond reordering) means the exporter restarted.
const maxSequenceGap = 1 << 20

// sequence accounts for one message of size units (packets, records or
// flows, depending on the protocol) carrying sequence number seq.
func (e *exporter) sequence(p flow.Protocol, domain, seq, units uint32, nowMs int64) {
	k := streamKey{p, domain}
	st := e.streams[k]
	if st == nil {
		if len(e.streams) >= 4096 {
			return // a flood of invented domains must not grow memory
		}
		st = &sequenceStream{}
		e.streams[k] = st
	}
	if !st.initialized {
		st.initialized = true
		st.next = seq + units
		st.last = seq
		st.expected += uint64(units)
		return
	}
	gap := int64(int32(seq - st.next))
	switch {
	case gap == 0:
	case gap > 0 && gap <= maxSequenceGap:
		st.lost += uint64(gap)
		st.expected += uint64(gap)
		e.m.sequenceLost(uint64(gap))
	case gap < 0 && gap >= -maxSequenceGap:
		// Late or duplicated message: it was counted as lost when its gap
		// opened, so take it back rather than count it twice.
		st.reordered++
		back := uint64(units)
		if back > st.lost {
			back = st.lost
		}
		st.lost -= back
		st.expected += uint64(units) - back
		st.last = seq
		return
	default:
		st.resets++
	}
	st.expected += uint64(units)
	st.next = seq + units
	st.last = seq
}

// sequenceUnknown forgets where a stream is, after a message whose size in
// sequence units could not be known.
func (e *exporter) sequenceUnknown(p flow.Protocol, domain uint32) {
	if st := e.streams[streamKey{p, domain}]; st != nil {
		st.initialized = false
	}
}
