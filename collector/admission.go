package collector

import "net/netip"

// Every exporter routed to a worker shares its queue. Without a bound per
// exporter, one that sends faster than the worker decodes (a flood, or a
// datagram made to be costly) keeps the queue full, and every exporter on
// that worker loses datagrams, counted nowhere but in a global counter.
//
// Admission uses dynamic thresholds (Choudhury and Hahne, "Dynamic queue
// length thresholds for shared-memory packet switches", 1998): a datagram
// is admitted while its exporter has fewer than share × (free slots)
// datagrams waiting. A lone exporter can fill share/(1+share) of the
// queue; n backed-up exporters are each held to share/(1+n·share) of it;
// an exporter with nothing waiting finds room as long as any slot is free,
// so a flood delays the others' datagrams but cannot crowd them out. Each
// refused datagram is counted as queue_full under its own exporter.
//
// The cost per datagram, in the reading goroutine, is a lookup in its own
// route cache, an atomic addition and the channel's length; the worker
// subtracts once more. No lock, no allocation.

// route is where one exporter's datagrams go.
type route struct {
	w *worker
	e *exporter // nil: the worker's decoder already tracks max_exporters
}

// routes is one reading goroutine's cache of routes, so that finding an
// exporter locks its decoder once per exporter and reader, not per datagram.
type routes struct {
	c *Collector
	m map[netip.Addr]route
	// max bounds the cache: exporters refused by max_exporters are cached
	// too (as nil), and a spoofed flood has as many as it likes.
	max int
}

func newRoutes(c *Collector) *routes {
	return &routes{c: c, m: make(map[netip.Addr]route), max: len(c.workers)*c.cfg.MaxExporters + 1024}
}

func (r *routes) get(addr netip.Addr, nowMs int64) route {
	if rt, ok := r.m[addr]; ok {
		return rt
	}
	w := r.c.workerFor(addr)
	rt := route{w: w, e: w.dec.sharedExporter(addr, nowMs)}
	if len(r.m) >= r.max {
		clear(r.m)
	}
	r.m[addr] = rt
	return rt
}

// admit reserves a place in w's queue for a datagram of e, or refuses it
// because e already has its share waiting. A reservation is released by
// the worker when it takes the datagram, or by release if the send fails.
func (w *worker) admit(e *exporter) bool {
	waiting := e.queued.Add(1) - 1
	if w.share > 0 && float64(waiting) >= w.share*float64(cap(w.queue)-len(w.queue)) {
		e.queued.Add(-1)
		return false
	}
	return true
}

func release(e *exporter) { e.queued.Add(-1) }
