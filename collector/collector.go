// Package collector receives NetFlow v5, NetFlow v9, IPFIX and sFlow v5
// datagrams over UDP and decodes them into flows.
//
// Datagrams are read in batches from SO_REUSEPORT sockets and routed by
// exporter address to a fixed decode worker, so that one exporter's
// templates, sampling rates and sequence numbers are only ever touched by
// one goroutine, in arrival order.
package collector

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Deps are what the collector needs from the rest of flowhouse.
type Deps struct {
	Sink flow.Sink
	// Counters receives sFlow counter samples (enrichment, which keeps
	// them); nil: they are decoded and counted only.
	Counters   flow.CounterSink
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Collector owns the listeners and decode workers.
type Collector struct {
	cfg          Config
	deps         Deps
	log          *slog.Logger
	metrics      *metrics
	stateMetrics *stateMetrics
	persist      *persister // nil: no state file

	workers   []*worker
	listeners []*listener
	seed      maphash.Seed

	readers sync.WaitGroup
	decoded sync.WaitGroup
	stopMon chan struct{}
	monDone sync.WaitGroup
	stop    sync.Once
}

type packet struct {
	src netip.AddrPort
	e   *exporter // made by the worker's decoder when the datagram was read
	at  time.Time
	buf *[]byte
	n   int
}

type worker struct {
	id    int
	queue chan packet
	dec   *Decoder
	depth prometheus.Gauge
	share float64 // Config.ExporterQueueShare; 0: no bound per exporter
}

// New validates the configuration and builds the collector; it opens nothing.
func New(cfg Config, deps Deps) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("collector config: %w", err)
	}
	if deps.Sink == nil {
		return nil, errors.New("collector: a sink is required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	c := &Collector{
		cfg:          cfg,
		deps:         deps,
		log:          deps.Logger.With("component", "collector"),
		metrics:      newMetrics(deps.Registerer),
		stateMetrics: newStateMetrics(deps.Registerer),
		seed:         maphash.MakeSeed(),
		stopMon:      make(chan struct{}),
	}
	dcfg := DecoderConfig{
		TemplateTimeout:         cfg.TemplateTimeout,
		MaxTemplatesPerExporter: cfg.MaxTemplatesPerExporter,
		MaxExporters:            cfg.MaxExporters,
		Sampling:                cfg.Sampling,
		TotalsIdleTimeout:       cfg.TotalsIdleTimeout,
		MaxTotalsPerExporter:    cfg.MaxTotalsPerExporter,
		ExtraFields:             cfg.ExtraFields,
	}
	for i := 0; i < cfg.Workers; i++ {
		c.workers = append(c.workers, &worker{
			id:    i,
			queue: make(chan packet, cfg.queueLength()),
			dec:   NewDecoder(dcfg, c.metrics),
			depth: c.metrics.queueDepth.WithLabelValues(strconv.Itoa(i)),
			share: cfg.ExporterQueueShare,
		})
	}
	if cfg.StateFile != "" {
		decoders := make([]*Decoder, len(c.workers))
		for i, w := range c.workers {
			decoders[i] = w.dec
		}
		c.persist = newPersister(cfg.StateFile, decoders, cfg.TemplateTimeout, c.log, c.stateMetrics)
	}
	return c, nil
}

// Start loads the state file, then opens the sockets and starts reading.
// It fails if any listener cannot be opened, closing those already open.
func (c *Collector) Start(ctx context.Context) error {
	if c.persist != nil {
		// Before the first datagram, which would otherwise find no template.
		c.loadState(time.Now())
	}
	for _, addr := range c.cfg.Listeners {
		l, err := openListener(ctx, addr, c.cfg.SocketsPerListener, c.cfg.ReceiveBufferBytes)
		if err != nil {
			for _, l := range c.listeners {
				l.close()
			}
			c.listeners = nil
			return fmt.Errorf("collector: listen on %s: %w", addr, err)
		}
		c.listeners = append(c.listeners, l)
		c.metrics.rcvbuf.WithLabelValues(l.name).Set(float64(l.grantedBuffer))
		if l.grantedBuffer < c.cfg.ReceiveBufferBytes {
			c.log.Warn("kernel granted a smaller socket receive buffer than configured; raise net.core.rmem_max or run with CAP_NET_ADMIN",
				"listener", l.name, "requested_bytes", c.cfg.ReceiveBufferBytes, "granted_bytes", l.grantedBuffer)
		}
		c.log.Info("listening", "address", l.name, "sockets", len(l.conns), "receive_buffer_bytes", l.grantedBuffer)
	}
	for _, w := range c.workers {
		c.decoded.Add(1)
		go c.runWorker(w)
	}
	for _, l := range c.listeners {
		for _, conn := range l.conns {
			c.readers.Add(1)
			go c.read(conn)
		}
	}
	c.monDone.Add(1)
	go c.monitor()
	if c.persist != nil {
		c.persist.start()
	}
	return nil
}

// Stop closes the sockets, then waits until every datagram already read
// has been decoded and handed to the sink, and writes the state file.
func (c *Collector) Stop() {
	c.stop.Do(func() {
		for _, l := range c.listeners {
			l.close()
		}
		c.readers.Wait()
		for _, w := range c.workers {
			close(w.queue)
		}
		c.decoded.Wait()
		if c.persist != nil {
			c.persist.stop()
		}
		close(c.stopMon)
		c.monDone.Wait()
	})
}

// Addrs returns the bound address of each listener, in configuration order
// (useful when a listener was configured with port 0).
func (c *Collector) Addrs() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(c.listeners))
	for _, l := range c.listeners {
		out = append(out, l.addr)
	}
	return out
}

// Stats returns a snapshot of every exporter's statistics.
func (c *Collector) Stats() []flow.ExporterStats {
	var out []flow.ExporterStats
	for _, w := range c.workers {
		out = append(out, w.dec.Stats()...)
	}
	for i := range out {
		out[i].Collector = c.cfg.Name
	}
	return out
}

const (
	maxDatagram = 65535
	// smallDatagram covers every datagram sent over a 1500-byte MTU path,
	// which is nearly all export traffic; queued datagrams are copied into
	// buffers of this size so a full queue holds megabytes, not the
	// gigabyte that 64 KiB buffers would take.
	smallDatagram = 2048
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, smallDatagram); return &b }}

// getBuffer returns a buffer for n bytes: pooled when small, exact when large.
func getBuffer(n int) *[]byte {
	if n <= smallDatagram {
		return bufPool.Get().(*[]byte)
	}
	b := make([]byte, n)
	return &b
}

func putBuffer(b *[]byte) {
	if cap(*b) == smallDatagram {
		bufPool.Put(b)
	}
}

// workerFor is the worker that decodes addr's datagrams.
func (c *Collector) workerFor(addr netip.Addr) *worker {
	return c.workers[maphash.Comparable(c.seed, addr)%uint64(len(c.workers))]
}

func (c *Collector) read(conn *net.UDPConn) {
	defer c.readers.Done()
	batch := newBatchReader(conn, 64)
	routes := newRoutes(c)
	errLog := rate.Sometimes{Interval: 10 * time.Second}
	for {
		n, err := batch.read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			errLog.Do(func() { c.log.Warn("socket read failed; retrying (logged at most every 10s)", "error", err) })
			time.Sleep(10 * time.Millisecond)
			continue
		}
		now := time.Now()
		for i := 0; i < n; i++ {
			payload, src := batch.message(i)
			c.enqueue(routes, payload, src, now)
		}
	}
}

// enqueue hands a datagram to its exporter's worker, or counts why not.
func (c *Collector) enqueue(routes *routes, payload []byte, src netip.AddrPort, now time.Time) {
	nowMs := now.UnixMilli()
	rt := routes.get(src.Addr(), nowMs)
	if rt.e == nil {
		c.metrics.dropNoExporter(ReasonExporterLimit)
		return
	}
	if !rt.w.admit(rt.e) {
		c.queueFull(rt.e, nowMs)
		return
	}
	bp := getBuffer(len(payload))
	copied := copy(*bp, payload)
	select {
	case rt.w.queue <- packet{src: src, e: rt.e, at: now, buf: bp, n: copied}:
	default:
		// Full although e had room: the other exporters' shares fill it.
		release(rt.e)
		putBuffer(bp)
		c.queueFull(rt.e, nowMs)
	}
}

// queueFull counts a refused datagram under its exporter, and globally.
func (c *Collector) queueFull(e *exporter, nowMs int64) {
	e.queueDrop(nowMs)
	c.metrics.queueDrops.Inc()
}

func (c *Collector) runWorker(w *worker) {
	defer c.decoded.Done()
	flows := make([]flow.Flow, 0, 64)
	for p := range w.queue {
		release(p.e)
		flows = w.dec.decodeFrom(p.e, p.at, p.src, (*p.buf)[:p.n], flows)
		putBuffer(p.buf)
		if len(flows) > 0 {
			c.deps.Sink.Write(flows)
		}
		if cs := w.dec.Counters(); len(cs) > 0 && c.deps.Counters != nil {
			c.deps.Counters.WriteCounters(cs)
		}
	}
}

// monitor publishes queue depths and the kernel's drop counters.
func (c *Collector) monitor() {
	defer c.monDone.Done()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-c.stopMon:
			return
		case <-t.C:
			for _, w := range c.workers {
				w.depth.Set(float64(len(w.queue)))
			}
			for _, l := range c.listeners {
				if drops, err := l.kernelDrops(); err == nil {
					c.metrics.kernelDrops.WithLabelValues(l.name).Set(float64(drops))
				}
			}
		}
	}
}
