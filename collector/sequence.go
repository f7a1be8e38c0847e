package collector

import "github.com/flowhouse/flowhouse/flow"

// streamKey names one sequence-number space: NetFlow v9 counts packets per
// source ID, IPFIX counts data records per observation domain, sFlow
// counts datagrams per sub-agent, NetFlow v5 counts flows per engine.
type streamKey struct {
	proto  flow.Protocol
	domain uint32
}

// numbering is how an exporter counts. RFC 7011 numbers an IPFIX message
// by the data records (options records included) sent before it; some
// exporters leave options records out, and some (softflowd) count the
// message's own records too. Each is learned from the first two messages
// of a stream rather than reported as loss on every message.
type numbering uint8

const (
	numberingUndecided numbering = iota
	numberingBefore              // RFC: units sent before this message
	numberingBeforeNoOptions
	numberingIncluding // units up to and including this message
	numberingIncludingNoOptions
)

func (n numbering) including() bool {
	return n == numberingIncluding || n == numberingIncludingNoOptions
}

func (n numbering) units(all, flows uint32) uint32 {
	if n == numberingBeforeNoOptions || n == numberingIncludingNoOptions {
		return flows
	}
	return all
}

type sequenceStream struct {
	numbering numbering
	next      uint32 // the (normalised) sequence number expected next
	last      uint32
	expected  uint64 // units the exporter says it sent since we first heard it
	lost      uint64
	resets    uint64
	reordered uint64
	// The first message, kept until the second decides the numbering.
	firstSeq, firstAll, firstFlows uint32
	started                        bool
}

// maxSequenceGap is the largest forward jump counted as loss; a bigger jump
// (or a step backwards beyond reordering) means the exporter restarted.
const maxSequenceGap = 1 << 20

// sequence accounts for one message carrying sequence number seq: all
// is its size in sequence units (packets, records or flows, by protocol);
// for IPFIX, flows is the number of its data records that were not options
// records (for other protocols it equals all).
func (e *exporter) sequence(p flow.Protocol, domain, seq, all, flows uint32) {
	k := streamKey{p, domain}
	st := e.streams[k]
	if st == nil {
		if len(e.streams) >= 4096 {
			return // a flood of invented domains must not grow memory
		}
		st = &sequenceStream{}
		e.streams[k] = st
	}
	if !st.started {
		st.started = true
		st.firstSeq, st.firstAll, st.firstFlows = seq, all, flows
		st.last = seq
		st.numbering = numberingUndecided
		if p != flow.ProtoIPFIX {
			st.numbering = numberingBefore
		}
		if st.numbering != numberingUndecided {
			st.next = seq + all
		}
		st.expected += uint64(all)
		return
	}
	if st.numbering == numberingUndecided {
		st.numbering = numberingBefore
		for _, n := range []numbering{numberingBefore, numberingBeforeNoOptions, numberingIncluding, numberingIncludingNoOptions} {
			var predicted uint32
			if n.including() {
				predicted = st.firstSeq + n.units(all, flows)
			} else {
				predicted = st.firstSeq + n.units(st.firstAll, st.firstFlows)
			}
			if predicted == seq {
				st.numbering = n
				break
			}
		}
		// Normalise the first message under the numbering just chosen.
		first := st.firstSeq
		if st.numbering.including() {
			first -= st.numbering.units(st.firstAll, st.firstFlows)
		}
		st.next = first + st.numbering.units(st.firstAll, st.firstFlows)
	}
	units := st.numbering.units(all, flows)
	norm := seq
	if st.numbering.including() {
		norm -= units
	}
	gap := int64(int32(norm - st.next))
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
	st.next = norm + units
	st.last = seq
}

// sequenceUnknown forgets where a stream is, after a message whose size in
// sequence units could not be known.
func (e *exporter) sequenceUnknown(p flow.Protocol, domain uint32) {
	if st := e.streams[streamKey{p, domain}]; st != nil {
		st.started = false
	}
}
