// Package flowgen simulates flow exporters for tests and benchmarks of
// flowhouse: deterministic traffic from a seed, encoded by encoders of its
// own as NetFlow v5, NetFlow v9 (RFC 3954), IPFIX (RFC 7011) or sFlow v5,
// sent over UDP from one socket per exporter (each on its own address in
// 127.0.0.0/8), and an exact account of what was sent.
//
// A run:
//
//	cfg := flowgen.DefaultConfig()
//	cfg.Count, cfg.Rate = 100_000, 20_000
//	cfg.Scenarios, _ = flowgen.ParseScenarios("synflood@10s+5s", 0, 0)
//	g, err := flowgen.New(cfg)
//	...
//	rep, err := g.Run(ctx) // rep.Total, rep.Protocols, rep.Exporters, rep.Scenarios
//
// What the exporters do:
//   - NetFlow v5: 48-byte records (at most 30 per datagram); the header
//     sequence counts flows; times relative to sysUptime; the sampling
//     interval in the header (mode 01) when sampling.
//   - NetFlow v9: templates 256 (IPv4) and 257 (IPv6), options template 258
//     (scope System; FLOW_SAMPLER_ID 48, FLOW_SAMPLER_MODE 49,
//     FLOW_SAMPLER_RANDOM_INTERVAL 50) and its record, sent in the first
//     datagram and again every TemplatePackets datagrams or
//     TemplateInterval; data records carry FLOW_SAMPLER_ID; times relative
//     to sysUptime; the sequence counts datagrams; sets padded to 4 bytes.
//   - IPFIX: the same templates with RFC 7012 types (8-byte counters,
//     flowStartMilliseconds/flowEndMilliseconds 152/153, icmpTypeCode),
//     options template 258 with scope selectorId 302 and selectorAlgorithm
//     304, samplingPacketInterval 305, samplingPacketSpace 306 (interval 1,
//     space N-1 is 1-in-N); data records carry selectorId; the sequence
//     counts data records, options records included, per observation domain.
//   - sFlow v5: one flow sample per sampled packet, with a raw Ethernet
//     header (IPv4 or IPv6, TCP/UDP/ICMP; at most 128 bytes) and an
//     extended switch record; generic interface counter samples for every
//     interface every CounterInterval; the datagram sequence counts
//     datagrams per agent, sample sequences count per data source.
//
// Accounting (Report): datagrams, payload bytes, flows, bytes and packets
// as encoded in the records, unscaled by the sampling rate, in total, per
// protocol, per exporter and per scenario, with the IPv6 share. For sFlow,
// a flow is a flow sample, its bytes are the IP total length of the sampled
// packet (what flowhouse stores) and its packets 1. Datagrams the socket
// refused are counted in Unsent only.
//
// Time: flow i is due at i/Rate on the run's schedule; scenario windows,
// template and counter refreshes and the flush of partly filled datagrams
// follow the schedule. With Config.Start set (or when not sending), record
// times follow the schedule too, and a seed gives byte-identical output on
// one platform (math.Exp/Log may differ in the last bit across CPU
// architectures).
//
// The subpackage tshark summarises a capture with tshark in the same
// shape, so tests can compare an independent decoder's totals with a Report.
package flowgen
