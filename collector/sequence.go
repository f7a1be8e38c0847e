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
// message's own records too. NetFlow v5 is numbered by the flows before
// the datagram, or by the index of its last flow (counting the datagram's
// own flows, less one: the same gaps as counting them). A stream keeps
// every numbering its messages agree with, and drops one as soon as a
// message tells them apart: two messages of equal size, or without
// options records, cannot, and learning from them chose wrong numberings
// that then showed false loss on every later message.
type numbering uint8

const (
	numberingBefore numbering = iota // RFC: units sent before this message
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

// numberingsOf are the numberings a protocol's exporters use, the
// preferred (the standard's) first. NetFlow v9 and sFlow count messages,
// one each, so every numbering gives the same gaps.
func numberingsOf(p flow.Protocol) []numbering {
	switch p {
	case flow.ProtoIPFIX:
		return []numbering{numberingBefore, numberingBeforeNoOptions, numberingIncluding, numberingIncludingNoOptions}
	case flow.ProtoNetFlowV5:
		return []numbering{numberingBefore, numberingIncluding}
	}
	return []numbering{numberingBefore}
}

// candidate is a numbering a stream's messages still agree with, and the
// normalised sequence number it expects next.
type candidate struct {
	numbering numbering
	next      uint32
}

type sequenceStream struct {
	// candidates, the preferred first, which does the accounting.
	candidates []candidate
	last       uint32
	expected   uint64 // units the exporter says it sent since we first heard it
	lost       uint64
	resets     uint64
	reordered  uint64
	started    bool
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
		st.candidates = st.candidates[:0]
		for _, n := range numberingsOf(p) {
			st.candidates = append(st.candidates, candidate{numbering: n, next: next(n, seq, all, flows)})
		}
		st.last = seq
		st.expected += uint64(all)
		return
	}
	st.narrow(seq, all, flows)
	c := st.candidates[0]
	units := c.numbering.units(all, flows)
	gap := int64(int32(normalised(c.numbering, seq, all, flows) - c.next))
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
		back := min(uint64(units), st.lost)
		st.lost -= back
		st.expected += uint64(units) - back
		st.last = seq
		return
	default:
		st.resets++
	}
	st.expected += uint64(units)
	for i := range st.candidates {
		n := st.candidates[i].numbering
		st.candidates[i].next = next(n, seq, all, flows)
	}
	st.last = seq
}

// narrow keeps the candidates that expected this message, when some did
// and others did not: the message tells them apart. When none did (loss,
// reordering, a restart), they all stay.
func (st *sequenceStream) narrow(seq, all, flows uint32) {
	kept := 0
	for _, c := range st.candidates {
		if normalised(c.numbering, seq, all, flows) == c.next {
			kept++
		}
	}
	if kept == 0 || kept == len(st.candidates) {
		return
	}
	out := st.candidates[:0]
	for _, c := range st.candidates {
		if normalised(c.numbering, seq, all, flows) == c.next {
			out = append(out, c)
		}
	}
	st.candidates = out
}

// normalised is seq as the units sent before the message.
func normalised(n numbering, seq, all, flows uint32) uint32 {
	if n.including() {
		return seq - n.units(all, flows)
	}
	return seq
}

// next is the normalised sequence number expected after the message.
func next(n numbering, seq, all, flows uint32) uint32 {
	return normalised(n, seq, all, flows) + n.units(all, flows)
}

// sequenceUnknown forgets where a stream is, after a message whose size in
// sequence units could not be known.
func (e *exporter) sequenceUnknown(p flow.Protocol, domain uint32) {
	if st := e.streams[streamKey{p, domain}]; st != nil {
		st.started = false
	}
}
