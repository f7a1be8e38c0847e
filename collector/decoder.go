package collector

import (
	"encoding/binary"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/flowhouse/flowhouse/flow"
)

// DecoderConfig bounds the state a Decoder keeps per exporter.
type DecoderConfig struct {
	TemplateTimeout         time.Duration
	MaxTemplatesPerExporter int
	MaxExporters            int
	Sampling                []SamplingRule
	// TotalsIdleTimeout forgets a flow of totals-only records not
	// reported for this long; MaxTotalsPerExporter bounds how many such
	// flows are remembered per exporter (totals.go).
	TotalsIdleTimeout    time.Duration
	MaxTotalsPerExporter int
	// ExtraFields are the validated mappings of Config.ExtraFields.
	ExtraFields []ExtraField
}

// Decoder turns datagrams into flows. It keeps per-exporter state
// (templates, sampling rates, sequence numbers, statistics), so all
// datagrams of one exporter must go to the same Decoder, in order. One
// Decoder is used by one goroutine at a time; Stats may be called from any.
// (Inside the collector, reading goroutines also add exporters to it, and
// its worker decodes through decodeFrom, never Decode.)
type Decoder struct {
	cfg     DecoderConfig
	rules   []samplingRule
	metrics *metrics
	extra   map[penIE]extraSlot // from cfg.ExtraFields; read-only

	mu        sync.Mutex // guards exporters for Stats; the decoding goroutine is its only writer
	exporters map[netip.Addr]*exporter
	// restored holds, under mu, the state file's exporters not seen since
	// the start; each is given its state when it is first seen again.
	restored map[netip.Addr]*exporterState

	ctx decodeContext
}

// NewDecoder returns a Decoder; metrics may be nil.
func NewDecoder(cfg DecoderConfig, m *metrics) *Decoder {
	if cfg.TemplateTimeout <= 0 {
		cfg.TemplateTimeout = 30 * time.Minute
	}
	if cfg.MaxTemplatesPerExporter <= 0 {
		cfg.MaxTemplatesPerExporter = 1024
	}
	if cfg.MaxExporters <= 0 {
		cfg.MaxExporters = 100_000
	}
	if cfg.TotalsIdleTimeout <= 0 {
		cfg.TotalsIdleTimeout = DefaultConfig().TotalsIdleTimeout
	}
	if cfg.MaxTotalsPerExporter <= 0 {
		cfg.MaxTotalsPerExporter = DefaultConfig().MaxTotalsPerExporter
	}
	return &Decoder{
		cfg:       cfg,
		rules:     compileSamplingRules(cfg.Sampling),
		metrics:   m,
		extra:     compileExtra(cfg.ExtraFields),
		exporters: make(map[netip.Addr]*exporter),
	}
}

// decodeContext carries one datagram's decoding: the flows it produced
// and the receive time.
type decodeContext struct {
	flows []flow.Flow
	nowMs int64
	src   netip.AddrPort
	// fields is scratch for the template record being parsed, kept so
	// template sets cost no allocation beyond the templates they define.
	fields []field
	// counters are the sFlow counter samples of the datagram, for the
	// collector's CounterSink (the slice is reused, as flows is).
	counters []flow.CounterSample
}

// nextCounter appends a counter sample with the datagram's exporter and
// receive time set and returns it.
func (d *decodeContext) nextCounter() *flow.CounterSample {
	d.counters = append(d.counters, flow.CounterSample{
		ExporterAddr:   flow.AddrFromNetip(d.src.Addr()),
		TimeReceivedMs: d.nowMs,
	})
	return &d.counters[len(d.counters)-1]
}

// next appends a zeroed flow with the common fields set and returns it.
func (d *decodeContext) next() *flow.Flow {
	if len(d.flows) < cap(d.flows) {
		d.flows = d.flows[:len(d.flows)+1]
		d.flows[len(d.flows)-1] = flow.Flow{}
	} else {
		d.flows = append(d.flows, flow.Flow{})
	}
	f := &d.flows[len(d.flows)-1]
	f.TimeReceivedMs = d.nowMs
	f.ExporterAddr = flow.AddrFromNetip(d.src.Addr())
	f.ExporterPort = d.src.Port()
	f.SamplingRate = 1
	return f
}

// unwind removes the last n flows (a record that turned out to be bad).
func (d *decodeContext) unwind(n int) { d.flows = d.flows[:len(d.flows)-n] }

// Decode decodes one datagram from src received at now. The flows are
// appended to out[:0] and returned; out is reused by the caller. Decoding
// never fails as a whole: what could not be decoded is counted per reason
// in the exporter's statistics and the rest is returned.
func (dec *Decoder) Decode(now time.Time, src netip.AddrPort, payload []byte, out []flow.Flow) []flow.Flow {
	e := dec.exporterFor(src.Addr(), now.UnixMilli())
	if e == nil {
		dec.metrics.dropNoExporter(ReasonExporterLimit)
		return out[:0]
	}
	return dec.decodeFrom(e, now, src, payload, out)
}

// decodeFrom decodes a datagram of e, which this Decoder made: what Decode
// does once the exporter is known. The collector finds exporters as it
// reads (sharedExporter) and decodes through this.
func (dec *Decoder) decodeFrom(e *exporter, now time.Time, src netip.AddrPort, payload []byte, out []flow.Flow) []flow.Flow {
	d := &dec.ctx
	d.flows = out[:0]
	d.counters = d.counters[:0]
	d.nowMs = now.UnixMilli()
	d.src = src

	e.mu.Lock()
	defer e.mu.Unlock()
	e.lastSeenMs = d.nowMs
	e.datagrams++
	e.bytes += uint64(len(payload))

	proto := flow.ProtoUnknown
	switch {
	case len(payload) < 4:
		e.drop(ReasonTruncated)
	case binary.BigEndian.Uint16(payload) == 5:
		proto = flow.ProtoNetFlowV5
		e.decodeNetFlowV5(d, payload)
	case binary.BigEndian.Uint16(payload) == 9:
		proto = flow.ProtoNetFlowV9
		e.decodeNetFlowV9(d, payload)
	case binary.BigEndian.Uint16(payload) == 10:
		proto = flow.ProtoIPFIX
		e.decodeIPFIX(d, payload)
	case binary.BigEndian.Uint32(payload) == 5:
		proto = flow.ProtoSFlowV5
		e.decodeSFlow(d, payload)
	default:
		e.drop(ReasonUnknownVersion)
	}
	if proto != flow.ProtoUnknown {
		e.protocols |= 1 << proto
	}
	e.flows += uint64(len(d.flows))
	e.observe(proto, len(d.flows))
	return d.flows
}

// Counters returns the sFlow counter samples of the datagram last decoded;
// they are valid until the next Decode.
func (dec *Decoder) Counters() []flow.CounterSample { return dec.ctx.counters }

// exporterFor returns addr's exporter, made on first sight, or nil beyond
// MaxExporters. Its lookup takes no lock: it is for Decode, whose caller
// is the only goroutine that adds exporters.
func (dec *Decoder) exporterFor(addr netip.Addr, nowMs int64) *exporter {
	if e, ok := dec.exporters[addr]; ok {
		return e
	}
	dec.mu.Lock()
	defer dec.mu.Unlock()
	return dec.addExporter(addr, nowMs)
}

// sharedExporter is exporterFor for the collector's reading goroutines,
// several of which may add exporters to one Decoder. They cache what it
// returns, so the lock is taken once per exporter and reader, not per
// datagram.
func (dec *Decoder) sharedExporter(addr netip.Addr, nowMs int64) *exporter {
	dec.mu.Lock()
	defer dec.mu.Unlock()
	if e, ok := dec.exporters[addr]; ok {
		return e
	}
	return dec.addExporter(addr, nowMs)
}

// addExporter is called with dec.mu held.
func (dec *Decoder) addExporter(addr netip.Addr, nowMs int64) *exporter {
	if len(dec.exporters) >= dec.cfg.MaxExporters {
		return nil
	}
	e := newExporter(addr, nowMs, dec)
	if st := dec.restored[addr]; st != nil {
		e.restore(st, nowMs)
		delete(dec.restored, addr)
	}
	dec.exporters[addr] = e
	return e
}

// list returns the exporters this Decoder tracks.
func (dec *Decoder) list() []*exporter {
	dec.mu.Lock()
	defer dec.mu.Unlock()
	list := make([]*exporter, 0, len(dec.exporters))
	for _, e := range dec.exporters {
		list = append(list, e)
	}
	return list
}

// Stats returns a snapshot of every exporter this Decoder has seen.
func (dec *Decoder) Stats() []flow.ExporterStats {
	list := dec.list()
	out := make([]flow.ExporterStats, 0, len(list))
	for _, e := range list {
		out = append(out, e.stats())
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i].Addr[:]) < string(out[j].Addr[:]) })
	return out
}
