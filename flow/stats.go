package flow

// ExporterStats is a snapshot of what the collector knows about one
// exporter (one source address). Counters are totals since the collector
// started; the store writes snapshots to the exporters table.
type ExporterStats struct {
	Addr Addr
	// Collector names the flowhouse process that heard the exporter
	// (collector.name), so that several collectors' snapshots of one
	// exporter are kept apart.
	Collector   string
	Protocols   []string // protocols seen from this exporter, e.g. "ipfix"
	FirstSeenMs int64
	LastSeenMs  int64
	Datagrams   uint64
	Flows       uint64
	Bytes       uint64 // datagram payload bytes received
	// Drops counts datagrams (or parts of them) that were not decoded, by reason.
	Drops map[string]uint64
	// Templates currently known (NetFlow v9 and IPFIX).
	Templates int
	// SequenceExpected and SequenceLost sum over all streams of the exporter:
	// what the sequence numbers say should have arrived, and what did not.
	SequenceExpected uint64
	SequenceLost     uint64
	// Streams has one entry per sequence stream (observation domain, agent).
	Streams []StreamStats
	// CounterRecords counts the sFlow generic interface counter records
	// decoded and handed to the counter sink, which keeps them in
	// interface_counters (source 'sflow').
	CounterRecords uint64
}

// StreamStats is the sequence accounting of one stream.
type StreamStats struct {
	Protocol          string
	ObservationDomain uint32
	LastSequence      uint32
	Expected          uint64
	Lost              uint64
	// Resets counts forward jumps too large to be loss (over 2^20 units)
	// that no restart explains: the accounting took a new baseline there.
	Resets uint64
	// Restarts counts exporter restarts seen in the stream (new runs of
	// sequence numbers): nothing is counted lost or late across them.
	Restarts uint64
	// SourcePort is the transport session (NetFlow and IPFIX number their
	// messages per session, RFC 7011 section 3.1): the exporter's UDP
	// source port the stream last came from; 0 for sFlow, numbered per
	// agent and sub-agent.
	SourcePort uint16
}
