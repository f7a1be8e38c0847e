package collector

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// stateMetrics are the state file's series.
type stateMetrics struct {
	loadErrors  *prometheus.CounterVec
	restored    *prometheus.GaugeVec
	discarded   *prometheus.CounterVec
	writes      prometheus.Counter
	writeErrors *prometheus.CounterVec
}

func newStateMetrics(reg prometheus.Registerer) *stateMetrics {
	m := &stateMetrics{
		loadErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_collector_state_load_errors_total", Help: "State files that could not be loaded at start (moved aside as .corrupt), by reason.",
		}, []string{"reason"}),
		restored: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowhouse_collector_state_restored", Help: "What the state file restored at start, by kind.",
		}, []string{"kind"}),
		discarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_collector_state_discarded_total", Help: "Entries of the state file not restored at start, by reason.",
		}, []string{"reason"}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowhouse_collector_state_writes_total", Help: "State files written.",
		}),
		writeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_collector_state_write_errors_total", Help: "State file writes that failed, by the step that failed.",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.loadErrors, m.restored, m.discarded, m.writes, m.writeErrors)
	}
	return m
}

// Kinds of restored state (the kind label of flowhouse_collector_state_restored).
var restoredKinds = []string{"exporters", "templates", "options_templates", "sampling_rates", "system_init_times", "interface_names"}

// persister writes the decoders' state file: within a second of a change
// to a template, sampling rate or system init time, and with template
// refreshes (which change only a time) at most every refreshMs, so that
// exporters refreshing templates every few seconds do not make it write
// every second. It snapshots an exporter under the exporter's lock, which
// decoding holds only per datagram; the disk is written with no lock held,
// so decoding never waits on it.
type persister struct {
	path      string
	decoders  []*Decoder
	timeoutMs int64
	refreshMs int64
	log       *slog.Logger
	m         *stateMetrics
	errLog    rate.Sometimes

	saved       map[netip.Addr]*savedExporter
	retry       bool // the last write failed
	lastWriteMs int64

	quit chan struct{}
	done chan struct{}
}

type savedExporter struct {
	marks stateMarks
	st    *exporterState
	// live: st is the exporter's own snapshot. Otherwise it came from the
	// state file and the exporter has not been seen since the start.
	live bool
}

const persistInterval = time.Second

func newPersister(path string, decoders []*Decoder, timeout time.Duration, log *slog.Logger, m *stateMetrics) *persister {
	return &persister{
		path:      path,
		decoders:  decoders,
		timeoutMs: timeout.Milliseconds(),
		// Persisted refresh times lag by at most this; a template then
		// expires at load at most this much before it would have live.
		refreshMs: min(max(timeout.Milliseconds()/10, persistInterval.Milliseconds()), time.Minute.Milliseconds()),
		log:       log,
		m:         m,
		errLog:    rate.Sometimes{Interval: time.Minute},
		saved:     make(map[netip.Addr]*savedExporter),
	}
}

func (p *persister) start() {
	p.quit, p.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.done)
		t := time.NewTicker(persistInterval)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				return
			case now := <-t.C:
				p.tick(now.UnixMilli(), false)
			}
		}
	}()
}

// stop ends the ticks and writes once more, with every refresh time.
// A persister never started writes nothing: the decoders it would write
// from may not have been given the file's state.
func (p *persister) stop() {
	if p.quit == nil {
		return
	}
	close(p.quit)
	<-p.done
	p.tick(time.Now().UnixMilli(), true)
}

// tick snapshots what changed and writes the file when it is due.
func (p *persister) tick(nowMs int64, force bool) {
	changed := false
	var refreshed []*exporter
	for _, dec := range p.decoders {
		for _, e := range dec.list() {
			e.mu.Lock()
			m := e.marks()
			s := p.saved[e.addr]
			switch {
			case s == nil && m.isZero():
				// Nothing learned (NetFlow v5, sFlow): nothing to keep.
			case s == nil || !s.live || s.marks.templates != m.templates || s.marks.rates != m.rates || s.marks.options != m.options:
				p.saved[e.addr] = &savedExporter{marks: m, st: e.snapshot(nowMs), live: true}
				changed = true
			case s.marks.refreshes != m.refreshes:
				refreshed = append(refreshed, e)
			}
			e.mu.Unlock()
		}
	}
	if !force && !changed && !p.retry && (len(refreshed) == 0 || nowMs-p.lastWriteMs < p.refreshMs) {
		return
	}
	for _, e := range refreshed {
		e.mu.Lock()
		p.saved[e.addr] = &savedExporter{marks: e.marks(), st: e.snapshot(nowMs), live: true}
		e.mu.Unlock()
	}
	p.write(nowMs)
}

// write writes every saved exporter. Exporters from the state file not
// seen since the start are kept while any of their templates is alive:
// once all expired, what remains (rates, names) would need the exporter
// to send its templates again anyway, and it is forgotten.
func (p *persister) write(nowMs int64) {
	states := make([]*exporterState, 0, len(p.saved))
	for addr, s := range p.saved {
		if !s.live && !s.st.alive(nowMs, p.timeoutMs) {
			delete(p.saved, addr)
			continue
		}
		states = append(states, s.st.unexpired(nowMs, p.timeoutMs))
	}
	reason, err := writeFileAtomic(p.path, func(w io.Writer) error { return encodeState(w, nowMs, states) })
	p.lastWriteMs = nowMs
	p.retry = err != nil
	if err != nil {
		p.m.writeErrors.WithLabelValues(reason).Inc()
		p.errLog.Do(func() {
			p.log.Warn("writing the collector state file failed; retrying every second (logged at most every minute)",
				"path", p.path, "reason", reason, "error", err)
		})
		return
	}
	p.m.writes.Inc()
}

// unexpired returns st without its templates expired at nowMs (st itself
// when none has).
func (st *exporterState) unexpired(nowMs, timeoutMs int64) *exporterState {
	keep := st.templates[:0:0]
	for _, t := range st.templates {
		if nowMs-t.updatedMs <= timeoutMs {
			keep = append(keep, t)
		}
	}
	if len(keep) == len(st.templates) {
		return st
	}
	c := *st
	c.templates = keep
	return &c
}

// loadState reads the state file into the decoders, before any datagram
// is read. A file that cannot be loaded is logged, counted, moved aside
// and the collector starts empty: the state is an optimisation, never a
// reason not to start.
func (c *Collector) loadState(now time.Time) {
	path := c.cfg.StateFile
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		c.log.Info("no collector state file yet; templates are learned from the exporters", "path", path)
		return
	}
	var loaded *loadedState
	if err == nil {
		lim := stateLimits{
			exporters: len(c.workers) * c.cfg.MaxExporters,
			templates: c.cfg.MaxTemplatesPerExporter,
			timeoutMs: c.cfg.TemplateTimeout.Milliseconds(),
		}
		loaded, err = decodeState(f, lim, now.UnixMilli())
		f.Close()
	} else {
		err = &stateError{reason: StateUnreadable, err: err}
	}
	if err != nil {
		c.stateUnusable(path, err)
		return
	}
	c.restore(loaded)
}

// stateUnusable counts and logs a state file that cannot be loaded, and
// moves it aside so the next write does not destroy what an operator may
// want to look at.
func (c *Collector) stateUnusable(path string, err error) {
	reason := StateUnreadable
	var se *stateError
	if errors.As(err, &se) {
		reason = se.reason
	}
	c.stateMetrics.loadErrors.WithLabelValues(reason).Inc()
	aside := path + stateCorruptTrail
	if rerr := os.Rename(path, aside); rerr != nil {
		c.log.Error("collector state file cannot be loaded nor moved aside; starting without it",
			"path", path, "reason", reason, "error", err, "rename_error", rerr)
		return
	}
	c.log.Error("collector state file cannot be loaded; moved aside, starting without it",
		"path", path, "moved_to", aside, "reason", reason, "error", err)
}

// restore hands each loaded exporter to the decoder of the worker its
// datagrams will go to, within that decoder's max_exporters.
func (c *Collector) restore(l *loadedState) {
	counts := make(map[string]int, len(restoredKinds))
	for _, st := range l.exporters {
		dec := c.workerFor(st.addr).dec
		if !dec.expect(st) {
			l.discard(DiscardExporterLimit)
			continue
		}
		c.persist.saved[st.addr] = &savedExporter{st: st}
		counts["exporters"]++
		for _, t := range st.templates {
			if t.options {
				counts["options_templates"]++
			} else {
				counts["templates"]++
			}
		}
		counts["sampling_rates"] += len(st.rates)
		counts["system_init_times"] += len(st.sysInit)
		counts["interface_names"] += len(st.ifNames)
	}
	for _, k := range restoredKinds {
		c.stateMetrics.restored.WithLabelValues(k).Set(float64(counts[k]))
	}
	for r, n := range l.discarded {
		c.stateMetrics.discarded.WithLabelValues(r).Add(float64(n))
	}
	c.log.Info("collector state restored", "path", c.cfg.StateFile, "exporters", counts["exporters"],
		"templates", counts["templates"], "options_templates", counts["options_templates"],
		"sampling_rates", counts["sampling_rates"], "discarded", fmt.Sprint(l.discarded))
}

// expect keeps st for its exporter's first datagram; false when the
// decoder already expects max_exporters exporters.
func (dec *Decoder) expect(st *exporterState) bool {
	dec.mu.Lock()
	defer dec.mu.Unlock()
	if dec.restored == nil {
		dec.restored = make(map[netip.Addr]*exporterState)
	}
	if len(dec.restored)+len(dec.exporters) >= dec.cfg.MaxExporters {
		return false
	}
	dec.restored[st.addr] = st
	return true
}
