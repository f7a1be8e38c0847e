package flow

// CounterSample is one interface's counters as an sFlow agent reported
// them in a generic interface counters record (sflow_version_5.txt,
// if_counters, format 0:1). The collector decodes them; enrichment turns
// successive samples into rates and keeps them (interface_counters).
type CounterSample struct {
	// ExporterAddr is the datagram's source address, as Flow.ExporterAddr:
	// the key enrichment finds the exporter's tenant by.
	ExporterAddr Addr
	// TimeReceivedMs: counter samples carry no time of their own.
	TimeReceivedMs int64
	// AgentUptimeMs is the datagram header's sysUptime (ms since the agent
	// booted); 0 when the agent sends none.
	AgentUptimeMs uint32
	// ObservationDomain is the datagram's sub-agent ID.
	ObservationDomain uint32
	// Sequence is the counter sample's sequence number, which the agent
	// keeps per counter source (data source).
	Sequence uint32
	IfIndex  uint32
	// SpeedBps is ifSpeed in bit/s; 0 when the agent does not know it.
	SpeedBps            uint64
	InOctets, OutOctets uint64
	// The record's other counters, cumulative as the agent keeps them:
	// packets (unicast, multicast and broadcast together, as IF-MIB's
	// packet counters add up), discards, errors, and inbound packets of
	// unknown protocols.
	InPackets, OutPackets   uint64
	InDiscards, OutDiscards uint32
	InErrors, OutErrors     uint32
	InUnknownProtos         uint32
	// Ethernet is the sample's ethernet_counters record (format 0:2, the
	// dot3Stats of EtherLike-MIB), when it had one.
	Ethernet    EthernetCounters
	HasEthernet bool
}

// EthernetCounters are the dot3Stats counters of an sFlow
// ethernet_counters record, cumulative, in the record's order.
type EthernetCounters struct {
	AlignmentErrors, FCSErrors                      uint32
	SingleCollisionFrames, MultipleCollisionFrames  uint32
	SQETestErrors, DeferredTransmissions            uint32
	LateCollisions, ExcessiveCollisions             uint32
	InternalMacTransmitErrors, CarrierSenseErrors   uint32
	FrameTooLongs, InternalMacReceiveErrors, Symbol uint32
}

// CounterSink receives the counter samples decoded from one datagram, as
// Sink does flows: from the worker that owns the exporter, in order. The
// slice is reused once WriteCounters returns.
type CounterSink interface {
	WriteCounters(samples []CounterSample)
}
