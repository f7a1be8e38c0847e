package collector

import (
	"math/bits"

	"github.com/flowhouse/flowhouse/flow"
)

// streamKey names one sequence-number space: NetFlow v9 counts packets per
// source ID, IPFIX counts data records per observation domain, sFlow
// counts datagrams per sub-agent, NetFlow v5 counts flows per engine; the
// NetFlow and IPFIX ones within a transport session (RFC 7011 section
// 3.1), which over UDP is the exporter's source port: two exporting
// processes of one device (one per VRF or line card) number their own
// messages, and one stream for both showed loss and restarts that were
// not there. sFlow numbers per agent and sub-agent whatever the port.
type streamKey struct {
	proto   flow.Protocol
	domain  uint32
	session uint16 // the source port; 0 for sFlow
}

// numbering is how an exporter counts. RFC 7011 numbers an IPFIX message
// by the data records (options records included) sent before it; some
// exporters leave options records out, and some (softflowd) count the
// message's own records too. NetFlow v5 is numbered by the flows before
// the datagram, or by the index of its last flow (counting the datagram's
// own flows, less one: the same gaps as counting them). Every numbering
// of the protocol is followed on every message, and the one that has
// expected the most of the recent messages that told them apart does the
// accounting: a first guess made from messages that could not tell them
// apart (no options record yet), or confounded by loss, is corrected by
// the next ones instead of showing false loss for ever.
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
// preferred (the standard's) first. sFlow counts datagrams, one each, so
// every numbering gives the same gaps. NetFlow v9 counts packets (RFC
// 3954), but some exporters kept v5's habit of counting flows: for v9 a
// message's all is 1 (the packet) and its flows its data records other
// than options records, so the "no options" numberings count flows,
// before the packet or up to its last one.
func numberingsOf(p flow.Protocol) []numbering {
	switch p {
	case flow.ProtoIPFIX:
		return []numbering{numberingBefore, numberingBeforeNoOptions, numberingIncluding, numberingIncludingNoOptions}
	case flow.ProtoNetFlowV5:
		return []numbering{numberingBefore, numberingIncluding}
	case flow.ProtoNetFlowV9:
		return []numbering{numberingBefore, numberingBeforeNoOptions, numberingIncludingNoOptions}
	}
	return []numbering{numberingBefore}
}

// originOf is the normalised number of a run's first message, until a
// restart shows a lower one. v5 counts flows and IPFIX records before the
// message, so a run starts at 0; v9 and sFlow exporters (softflowd,
// pmacct, ipt_NETFLOW) number their first packet 1, though some start at
// 0, which the first restart whose first message arrives teaches.
func originOf(p flow.Protocol) int32 {
	if p == flow.ProtoNetFlowV9 || p == flow.ProtoSFlowV5 {
		return 1
	}
	return 0
}

// candidate is a numbering followed on a stream: the normalised sequence
// number it expects next, where it says runs start, and whether it missed
// each of the last 16 messages that told the numberings apart (bit set).
type candidate struct {
	numbering numbering
	next      uint32
	origin    int32
	misses    uint16
}

// message is what the sequence accounting needs of one message: its
// sequence number, its size in units (all; flows without options records),
// what it says of the exporter's clock, and whether it redefined a template.
type message struct {
	seq, all, flows uint32
	session         uint16 // see streamKey
	clock           clockReading
	templateChanged bool
}

// span is a range of normalised sequence numbers counted lost, which a
// late message may still fill.
type span struct{ from, to uint32 }

const (
	// maxSequenceGap is the largest forward jump counted as loss; a bigger
	// one cannot be told from an exporter that starts its runs at random
	// numbers, so it is a reset: a new baseline, nothing counted.
	maxSequenceGap = 1 << 20
	// reorderMessages bounds reordering: a late message is at most this
	// many messages (of the recent sizes) behind the newest. UDP through a
	// few router hops reorders neighbours, not dozens of datagrams; a
	// backward jump beyond it is a restart.
	reorderMessages = 8
)

type sequenceStream struct {
	// candidates, in preference order; chosen does the accounting.
	candidates []candidate
	chosen     int
	last       uint32
	expected   uint64 // units the exporter says it sent since we first heard it
	lost       uint64
	resets     uint64 // forward jumps beyond maxSequenceGap
	restarts   uint64
	reordered  uint64 // late messages that filled a gap counted lost
	duplicates uint64 // late messages that filled no known gap
	started    bool
	clock      clockState
	// recent are the sizes of the last messages, for the reordering window.
	recent  [reorderMessages]uint32
	recentN uint8
	// missing are gaps in the chosen numbering still open to late messages.
	missing  [8]span
	nMissing uint8
	// pending is a message that jumped back beyond the reordering window
	// without anything else saying the exporter restarted: the next
	// message tells whether it began a new run or was a stray.
	pending    message
	hasPending bool
	// lastMessage is the exporter's message count at this stream's last
	// message, which tells the session an exporter used last.
	lastMessage uint64
	// took is the session this stream took over (see takeOver), and
	// tookRestart whether that counted a restart; shared: its exporter
	// has several sessions of this stream at once, so none takes over.
	took        uint16
	tookValid   bool
	tookRestart bool
	shared      bool
}

// sequence accounts for one message of stream (p, domain); m.all is its
// size in sequence units (packets, records or flows, by protocol) and, for
// IPFIX, m.flows the number of its data records that were not options
// records (for other protocols it equals all).
func (e *exporter) sequence(p flow.Protocol, domain uint32, m message) {
	k := streamKey{p, domain, m.session}
	e.sequenceMessages++
	st := e.streams[k]
	if st == nil {
		if len(e.streams) >= 4096 {
			return // a flood of invented domains must not grow memory
		}
		shared := e.sessionsShared(k)
		if !shared && e.takeOver(k, m) {
			return
		}
		st = &sequenceStream{shared: shared}
		for _, n := range numberingsOf(p) {
			st.candidates = append(st.candidates, candidate{numbering: n, origin: originOf(p)})
		}
		e.streams[k] = st
	}
	st.lastMessage = e.sequenceMessages
	if !st.started {
		st.started = true
		st.clock.observe(m.clock)
		st.baseline(m)
		st.expected += uint64(st.candidates[st.chosen].numbering.units(m.all, m.flows))
		return
	}
	if st.hasPending {
		st.hasPending = false
		if st.beganRun(st.pending, m) {
			e.restart(st, p, st.pending, restartSequence)
		} else {
			st.duplicates++ // a stray from long ago: whatever it filled stays lost
		}
	}
	e.account(st, p, m)
}

// takeOver decides whether m, the first message of a new session (source
// port) of a stream, goes on from the session the exporter used last: the
// exporter restarted (a new process binds a new port) or a NAT on the way
// gave it a new port. Then that session's stream becomes the new one's,
// and m is accounted on it. A message that shows neither (another
// exporting process of the same device) starts a stream of its own.
func (e *exporter) takeOver(k streamKey, m message) bool {
	var prev streamKey
	var st *sequenceStream
	for ok, o := range e.streams {
		if ok.proto == k.proto && ok.domain == k.domain && o.started && !o.shared && (st == nil || o.lastMessage > st.lastMessage) {
			prev, st = ok, o
		}
	}
	if st == nil {
		return false
	}
	c := st.candidates[st.chosen]
	window := st.window(c.numbering.units(m.all, m.flows))
	gap := int64(int32(normalised(c.numbering, m) - c.next))
	// The clock is read on a copy: a message of another process (whose
	// clock differs) that does not take the stream over must not leave its
	// reading in the stream's clock, or the stream's own next message
	// would look like a restart.
	clock := st.clock
	_, clockSays := clock.observe(m.clock)
	var reason restartReason
	switch {
	case clockSays:
		reason = restartReasonOf(m.clock.kind)
	case st.nearOrigin(m, window):
		reason = restartSequence
	case gap >= -window && gap <= window:
		reason = nRestartReasons // the same run, on a new port
	default:
		return false
	}
	delete(e.streams, prev)
	e.streams[k] = st
	st.clock = clock
	st.lastMessage = e.sequenceMessages
	st.hasPending = false
	st.took, st.tookValid, st.tookRestart = prev.session, true, reason != nRestartReasons
	if reason == nRestartReasons {
		e.account(st, k.proto, m)
	} else {
		e.restart(st, k.proto, m, reason)
	}
	return true
}

// sessionsShared says whether k's session is one that another stream took
// over and that speaks again: it was not a restart but a second exporting
// process (of a device whose processes have their own clocks, one just
// started). That takeover's restart is taken back from the stream (the
// Prometheus counter cannot be), and neither session takes over again.
func (e *exporter) sessionsShared(k streamKey) bool {
	for ok, o := range e.streams {
		if ok.proto != k.proto || ok.domain != k.domain {
			continue
		}
		if o.shared {
			return true
		}
		if o.tookValid && o.took == k.session {
			o.shared, o.tookValid = true, false
			if o.tookRestart && o.restarts > 0 {
				o.restarts--
			}
			return true
		}
	}
	return false
}

// account places a message of a started stream: in order, after a gap,
// late, or the first of a new run.
func (e *exporter) account(st *sequenceStream, p flow.Protocol, m message) {
	exact := st.learn(m)
	c := &st.candidates[st.chosen]
	units := c.numbering.units(m.all, m.flows)
	s := normalised(c.numbering, m)
	gap := int64(int32(s - c.next))
	if gap < 0 && st.fill(s, units) {
		// Late: it was counted lost when its gap opened. Its clock is as
		// old as it is, and says nothing of a restart.
		st.reordered++
		st.lost -= uint64(units)
		return
	}
	clockMoved, clockSays := st.clock.observe(m.clock)
	if clockMoved && exact {
		// The clock moved while the numbers went on: a clock step, not a
		// restart. A clock that keeps doing so is not trusted again.
		st.clock.strike()
		clockSays = false
	}
	window := st.window(units)
	switch {
	case clockSays:
		e.restart(st, p, m, restartReasonOf(m.clock.kind))
		return
	case gap == 0:
	case gap > 0 && gap <= maxSequenceGap:
		st.addMissing(c.next, s)
		st.lost += uint64(gap)
		st.expected += uint64(gap)
		e.m.sequenceLost(uint64(gap))
	case gap > 0:
		st.resets++
		st.nMissing = 0
	case m.templateChanged && st.nearOrigin(m, window):
		// Back to the start with new templates: an exporter restarted
		// with a changed configuration, though its last run was short.
		e.restart(st, p, m, restartTemplate)
		return
	case -gap <= window && !st.nearOrigin(m, window):
		st.duplicates++
		return
	default:
		// Back near a run's start, or far back: a new run, or a
		// duplicate or stray from long ago. The next message decides.
		st.pending, st.hasPending = m, true
		return
	}
	st.expected += uint64(units)
	st.advance(m, units)
}

// restart begins a new run at m: nothing is counted lost or late across
// the boundary, but the units a run's start (its origin) says were sent
// before m in the new run are lost, when they are few enough to be known.
func (e *exporter) restart(st *sequenceStream, p flow.Protocol, m message, reason restartReason) {
	st.restarts++
	e.m.restart(p, reason)
	st.clock.restarted(m.clock)
	if p == flow.ProtoIPFIX {
		st.learnRunStart(m)
	}
	c := &st.candidates[st.chosen]
	units := c.numbering.units(m.all, m.flows)
	window := st.window(units)
	// A run that starts below the origin teaches the origin.
	if d := int64(int32(normalised(c.numbering, m) - uint32(c.origin))); d < 0 && -d <= window {
		c.origin += int32(d)
	}
	if lead := int64(int32(normalised(c.numbering, m) - uint32(c.origin))); lead > 0 && lead <= window {
		st.lost += uint64(lead)
		st.expected += uint64(lead)
		e.m.sequenceLost(uint64(lead))
	}
	st.nMissing = 0
	st.baseline(m)
	st.expected += uint64(units)
	st.pushRecent(units)
}

// beganRun says whether the pending message p began a new run, judged by
// the message after it: closer to following p than to following the old
// run.
func (st *sequenceStream) beganRun(p, m message) bool {
	c := st.candidates[st.chosen]
	s := normalised(c.numbering, m)
	fromNew := int64(int32(s - next(c.numbering, p)))
	fromOld := int64(int32(s - c.next))
	return abs64(fromNew) < abs64(fromOld)
}

// learn updates each numbering's record with m, when m tells them apart
// (some expected it, some did not), and chooses the numbering that missed
// the fewest of those messages, keeping the current one on a tie. It
// reports whether any numbering expected m.
func (st *sequenceStream) learn(m message) (exact bool) {
	hits := 0
	for _, c := range st.candidates {
		if normalised(c.numbering, m) == c.next {
			hits++
		}
	}
	if hits == 0 || hits == len(st.candidates) {
		return hits > 0
	}
	for i := range st.candidates {
		c := &st.candidates[i]
		c.misses <<= 1
		if normalised(c.numbering, m) != c.next {
			c.misses |= 1
		}
	}
	st.choose()
	return true
}

// choose makes the numbering that missed the fewest recent messages the
// chosen one, keeping the current one on a tie.
func (st *sequenceStream) choose() {
	best := st.chosen
	for i, c := range st.candidates {
		if bits.OnesCount16(c.misses) < bits.OnesCount16(st.candidates[best].misses) {
			best = i
		}
	}
	if best != st.chosen {
		st.chosen = best
		st.nMissing = 0 // the open gaps were in the other numbering's terms
	}
}

// learnRunStart: a run cannot start before its first record, so an IPFIX
// numbering that puts a run's first message below 0 is wrong. It is how
// "options counted" is told from "not counted" for an exporter (softflowd)
// that sends options records only in a run's first message, where the
// other messages cannot tell them apart.
func (st *sequenceStream) learnRunStart(m message) {
	below := 0
	for _, c := range st.candidates {
		if int32(normalised(c.numbering, m)-uint32(c.origin)) < 0 {
			below++
		}
	}
	if below == 0 || below == len(st.candidates) {
		return
	}
	for i := range st.candidates {
		c := &st.candidates[i]
		c.misses <<= 1
		if int32(normalised(c.numbering, m)-uint32(c.origin)) < 0 {
			c.misses |= 1
		}
	}
	st.choose()
}

// baseline makes m the last message of every numbering.
func (st *sequenceStream) baseline(m message) {
	for i := range st.candidates {
		st.candidates[i].next = next(st.candidates[i].numbering, m)
	}
	st.last = m.seq
}

func (st *sequenceStream) advance(m message, units uint32) {
	st.baseline(m)
	st.pushRecent(units)
}

func (st *sequenceStream) pushRecent(units uint32) {
	st.recent[st.recentN%reorderMessages] = units
	st.recentN++
}

// window is how far back, in units, a late message may be: reorderMessages
// of the largest recent messages (or of this one).
func (st *sequenceStream) window(units uint32) int64 {
	largest := max(units, 1)
	for _, u := range st.recent {
		largest = max(largest, u)
	}
	return reorderMessages * int64(largest)
}

// nearOrigin says whether m is within a window of where runs start, while
// the run it follows had gone beyond that: the start of a new run.
func (st *sequenceStream) nearOrigin(m message, window int64) bool {
	c := st.candidates[st.chosen]
	d := int64(int32(normalised(c.numbering, m) - uint32(c.origin)))
	past := int64(int32(c.next - uint32(c.origin)))
	return d >= -window && d <= window && past > d
}

// addMissing records the gap [from, to) as open to late messages; the
// oldest gap is forgotten (stays lost) when there is no room.
func (st *sequenceStream) addMissing(from, to uint32) {
	if int(st.nMissing) == len(st.missing) {
		copy(st.missing[:], st.missing[1:])
		st.nMissing--
	}
	st.missing[st.nMissing] = span{from, to}
	st.nMissing++
}

// fill takes [s, s+units) out of an open gap, reporting whether one held
// it whole; a message that fills nothing is a duplicate.
func (st *sequenceStream) fill(s, units uint32) bool {
	for i := 0; i < int(st.nMissing); i++ {
		g := st.missing[i]
		if int32(s-g.from) < 0 || int32(g.to-(s+units)) < 0 {
			continue
		}
		switch {
		case s == g.from:
			st.missing[i].from = s + units
		case s+units == g.to:
			st.missing[i].to = s
		default:
			st.missing[i].to = s
			st.addMissing(s+units, g.to)
			return true
		}
		if st.missing[i].from == st.missing[i].to {
			copy(st.missing[i:], st.missing[i+1:st.nMissing])
			st.nMissing--
		}
		return true
	}
	return false
}

// normalised is m's sequence number as the units sent before it.
func normalised(n numbering, m message) uint32 {
	if n.including() {
		return m.seq - n.units(m.all, m.flows)
	}
	return m.seq
}

// next is the normalised sequence number expected after m.
func next(n numbering, m message) uint32 {
	return normalised(n, m) + n.units(m.all, m.flows)
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// sequenceCountsFlows says whether the stream's chosen numbering counts
// flows (v9 exporters that kept v5's numbering) rather than messages.
func (e *exporter) sequenceCountsFlows(p flow.Protocol, domain uint32, session uint16) bool {
	st := e.streams[streamKey{p, domain, session}]
	if st == nil || len(st.candidates) == 0 {
		return false
	}
	n := st.candidates[st.chosen].numbering
	return n == numberingBeforeNoOptions || n == numberingIncludingNoOptions
}

// sequenceUnknown forgets where a stream is, after a message whose size in
// sequence units could not be known. What was learnt of its numbering and
// clock stays.
func (e *exporter) sequenceUnknown(p flow.Protocol, domain uint32, session uint16) {
	if st := e.streams[streamKey{p, domain, session}]; st != nil {
		st.started = false
		st.hasPending = false
		st.nMissing = 0
	}
}
