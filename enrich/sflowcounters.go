package enrich

import (
	"context"
	"sync"
	"time"

	"github.com/flowhouse/flowhouse/flow"
)

// Outcomes of an sFlow counter sample, the "outcome" label of
// flowhouse_enrich_sflow_counter_samples_total.
const (
	sampleQueued         = "queued"          // a row waits for the next batch insert
	sampleDuplicate      = "duplicate"       // same sequence number as the previous sample of the interface
	sampleInterfaceLimit = "interface_limit" // sflow_counters.max_interfaces tracked, none idle
	sampleBacklog        = "backlog"         // the rows waiting for the database reached their bound
	sampleNoDatabase     = "no_database"     // enrichment runs without a database
)

var sampleOutcomes = []string{sampleQueued, sampleDuplicate, sampleInterfaceLimit, sampleBacklog, sampleNoDatabase}

// sflowKey is one interface of one exporter. The exporter fixes the
// tenant, so the series is (tenant, exporter, ifIndex, 'sflow').
type sflowKey struct {
	exporter flow.Addr
	ifIndex  uint32
}

// sflowPrev is the previous counter sample of an interface.
type sflowPrev struct {
	sample counterSample // at: receive time
	uptime uint32        // agent uptime (ms); 0 unknown (or reloaded)
	seq    uint32
	hasSeq bool // false for a sample reloaded from the table
}

// sflowCounters turns sFlow counter samples into interface_counters rows
// (source 'sflow') and batches their inserts: agents send a sample per
// interface every few seconds, a row each would be a round trip each.
// WriteCounters runs on the collector's workers, the flusher on its own
// goroutine; mu guards everything.
type sflowCounters struct {
	cfg SFlowCountersConfig

	mu      sync.Mutex
	prev    map[sflowKey]sflowPrev
	pending []counterRow
	wake    chan struct{} // pending reached a batch
	// fullScanMs is when a new interface last found prev full and scanned
	// it for idle entries: at most one scan a second, so that a flood of
	// new interfaces costs no scan each.
	fullScanMs int64
}

// batchRows wakes the flusher before its interval: a full statement.
const batchRows = 500

func newSFlowCounters(cfg SFlowCountersConfig) *sflowCounters {
	return &sflowCounters{cfg: cfg, prev: map[sflowKey]sflowPrev{}, wake: make(chan struct{}, 1)}
}

// WriteCounters is flow.CounterSink: it computes the rate of each sample
// against the interface's previous one and queues the rows. It never
// waits for the database.
func (e *Enricher) WriteCounters(samples []flow.CounterSample) {
	var (
		x      *exporter
		ifaces map[uint32]*Interface
	)
	s := e.sflow
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range samples {
		c := &samples[i]
		if x == nil || x.addr != c.ExporterAddr {
			x, ifaces = e.exporterFor(c.ExporterAddr), nil
			if p := x.ifaces.Load(); p != nil {
				ifaces = *p
			}
		}
		// SNMP's speed wins when known: it is ifHighSpeed, what flows
		// (in_if_speed_mbps), the interfaces table and SNMP's own counter
		// rows use, so one interface has one speed and the utilisation of
		// both sources is comparable; sFlow's ifSpeed is the fallback
		// for interfaces SNMP does not poll.
		speed := c.SpeedBps / 1_000_000 // as SNMP's ifSpeed fallback
		if it := ifaces[c.IfIndex]; it != nil && it.SpeedMbps > 0 {
			speed = it.SpeedMbps
		}
		outcome := s.observe(x, c, speed, e.w != nil)
		e.m.sflowSamples[outcome].Inc()
	}
	if len(s.pending) >= batchRows {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// observe computes the row of a sample and queues it (when queue), with
// s.mu held. The interval is the agent's uptime between the samples
// where both have one: it is the agent's own clock, free of the jitter
// of the network and of the collector's queues; the receive time is the
// fallback (agents sending uptime 0, the first sample after a reload).
func (s *sflowCounters) observe(x *exporter, c *flow.CounterSample, speedMbps uint64, queue bool) string {
	k := sflowKey{exporter: c.ExporterAddr, ifIndex: c.IfIndex}
	cur := counterSample{at: c.TimeReceivedMs, in: c.InOctets, out: c.OutOctets}
	row := counterRow{tenant: x.tenant, exporter: x.addr, source: sourceSFlow, ifIndex: c.IfIndex, cur: cur, speedMbps: speedMbps, sflow: *c}
	p, had := s.prev[k]
	if !had && len(s.prev) >= s.cfg.MaxInterfaces {
		if c.TimeReceivedMs-s.fullScanMs < 1000 {
			return sampleInterfaceLimit
		}
		s.fullScanMs = c.TimeReceivedMs
		if s.evictIdle(c.TimeReceivedMs) == 0 {
			return sampleInterfaceLimit
		}
	}
	if had {
		switch {
		case p.hasSeq && c.Sequence == p.seq:
			// The same sample again (a duplicated datagram).
			return sampleDuplicate
		case p.hasSeq && int32(c.Sequence-p.seq) < 0, p.uptime != 0 && c.AgentUptimeMs != 0 && int32(c.AgentUptimeMs-p.uptime) < 0:
			// The sequence or the uptime went back: the agent (or the
			// counter source) restarted and so did its counters, as
			// sysUpTime going back does for SNMP. A sample reordered in
			// the network looks the same: samples of one interface are
			// seconds apart, so that takes a delay of seconds, and costs
			// one rate.
			row.rate.reset = true
		default:
			prev := p.sample
			if dt, ok := uptimeInterval(p, c); ok {
				prev.at = cur.at - dt
			}
			row.rate = rateOf(prev, cur, speedMbps)
		}
	}
	s.prev[k] = sflowPrev{sample: cur, uptime: c.AgentUptimeMs, seq: c.Sequence, hasSeq: true}
	if !queue {
		return sampleNoDatabase
	}
	if len(s.pending) >= s.cfg.MaxPendingRows {
		return sampleBacklog
	}
	s.pending = append(s.pending, row)
	return sampleQueued
}

// uptimeInterval is the agent uptime between two samples, in ms, when
// both have one and it is within a factor of 4 of the receive-time
// interval: a wider gap is an agent whose uptime is not a clock (stuck,
// other units), for which the receive time is the better measure.
func uptimeInterval(p sflowPrev, c *flow.CounterSample) (int64, bool) {
	if p.uptime == 0 || c.AgentUptimeMs == 0 {
		return 0, false
	}
	dt := int64(int32(c.AgentUptimeMs - p.uptime)) // serial: the uptime wraps after 49.7 days
	recv := c.TimeReceivedMs - p.sample.at
	if dt <= 0 || recv <= 0 || dt > 4*recv || 4*dt < recv {
		return 0, false
	}
	return dt, true
}

// evictIdle forgets the interfaces without a sample for idle_timeout,
// with s.mu held, and says how many.
func (s *sflowCounters) evictIdle(nowMs int64) int {
	n := 0
	cutoff := nowMs - s.cfg.IdleTimeout.Milliseconds()
	for k, p := range s.prev {
		if p.sample.at < cutoff {
			delete(s.prev, k)
			n++
		}
	}
	return n
}

// reload keeps a sample read back from the table, unless the bound is
// reached; it has no sequence or uptime, so the next interval is by
// receive time.
func (s *sflowCounters) reload(exp flow.Addr, ifIndex uint32, c counterSample) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.prev) >= s.cfg.MaxInterfaces {
		return false
	}
	s.prev[sflowKey{exporter: exp, ifIndex: ifIndex}] = sflowPrev{sample: c}
	return true
}

// take returns the pending rows and empties the queue.
func (s *sflowCounters) take() []counterRow {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows := s.pending
	s.pending = nil
	return rows
}

// flushSFlow writes the queued rows every flush_interval (sooner when a
// batch is full) and forgets idle interfaces, until ctx ends; then it
// writes what is left.
func (e *Enricher) flushSFlow(ctx context.Context) {
	defer e.wg.Done()
	t := time.NewTicker(e.cfg.SFlowCounters.FlushInterval)
	defer t.Stop()
	lastEvict := time.Now()
	for {
		select {
		case <-ctx.Done():
			e.writeSFlow(context.Background())
			return
		case <-t.C:
		case <-e.sflow.wake:
		}
		e.writeSFlow(ctx)
		if now := time.Now(); now.Sub(lastEvict) >= time.Minute {
			e.sflow.mu.Lock()
			e.sflow.evictIdle(now.UnixMilli())
			e.sflow.mu.Unlock()
			lastEvict = now
		}
	}
}

// writeSFlow inserts the queued rows. A failed insert loses them (counted
// in flowhouse_enrich_db_errors_total): the rates of later rows do not
// depend on them, the previous samples are in memory.
func (e *Enricher) writeSFlow(ctx context.Context) {
	rows := e.sflow.take()
	if len(rows) == 0 {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, e.cfg.Polling.WriteTimeout)
	defer cancel()
	if err := e.w.counters(wctx, rows); err != nil {
		e.dbError("interface_counters", err)
	}
}
