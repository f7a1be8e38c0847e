package replay

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/flowhouse/flowhouse/flowgen"
)

// Config describes a replay. Count or Duration bounds it.
type Config struct {
	Exporters int
	// SourceBase is the first exporter's source address; the others
	// follow it. All must be in 127.0.0.0/8.
	SourceBase netip.Addr
	SourcePort uint16 // 0: an ephemeral port per exporter
	Target     netip.AddrPort
	// Density is the data records per datagram (v5: at most 30); 0 takes
	// the capture's own, rounded.
	Density  int
	Rate     float64 // flows per second over all exporters; 0: as fast as possible
	Count    uint64  // flows (data records) to send
	Duration time.Duration
	// Templates (and the options records) are sent before an exporter's
	// first data and again after TemplatePackets datagrams or
	// TemplateInterval, whichever comes first (0 turns either off).
	TemplatePackets  int
	TemplateInterval time.Duration
	MaxDatagram      int // UDP payload bytes at most
	// Send sends over UDP, one socket per exporter bound to its address.
	Send bool
	// OnDatagram, when set, is called with every datagram; payload is
	// valid only during the call.
	OnDatagram func(exporter int, src netip.AddrPort, payload []byte)
	// Now is the clock of the export times (nil: time.Now).
	Now func() time.Time
}

// DefaultConfig is the replay flowgen replay starts from.
func DefaultConfig() Config {
	return Config{
		Exporters:        4,
		SourceBase:       netip.MustParseAddr("127.0.0.11"),
		Target:           netip.MustParseAddrPort("127.0.0.1:2055"),
		TemplatePackets:  1000,
		TemplateInterval: time.Minute,
		MaxDatagram:      65507,
		Send:             true,
	}
}

func loopback4(a netip.Addr) bool { return a.Is4() && a.As4()[0] == 127 }

func (c *Config) validate(capt *Capture) error {
	if c.Exporters <= 0 {
		return errors.New("exporters must be at least 1")
	}
	last := c.SourceBase
	for i := 1; i < c.Exporters; i++ {
		last = last.Next()
	}
	if !loopback4(c.SourceBase) || !loopback4(last) {
		return fmt.Errorf("source addresses %s..%s: must stay in 127.0.0.0/8", c.SourceBase, last)
	}
	if !loopback4(c.Target.Addr()) || c.Target.Port() == 0 {
		return fmt.Errorf("target %s: must be an address in 127.0.0.0/8 with a port", c.Target)
	}
	if c.Count == 0 && c.Duration <= 0 {
		return errors.New("a count or a duration is needed to bound the replay")
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		return fmt.Errorf("rate %v: must be >= 0", c.Rate)
	}
	if c.Density == 0 {
		c.Density = max(1, int(math.Round(capt.Density())))
	}
	if c.Density < 0 || (capt.Version == versionV5 && c.Density > 30) {
		return fmt.Errorf("density %d: must be positive (NetFlow v5: at most 30 records per datagram)", c.Density)
	}
	if c.MaxDatagram <= 0 || c.MaxDatagram > 65507 {
		return fmt.Errorf("max datagram %d: must be in [1, 65507]", c.MaxDatagram)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Report is what a replay sent.
type Report struct {
	Density           int              `json:"records_per_datagram"`
	CaptureRecords    int              `json:"capture_records"`
	Flows             uint64           `json:"flows_sent"`
	Datagrams         uint64           `json:"datagrams_sent"`
	TemplateDatagrams uint64           `json:"template_datagrams_sent"`
	UnsentFlows       uint64           `json:"flows_unsent"`
	SendError         string           `json:"send_error,omitempty"`
	ElapsedSeconds    float64          `json:"elapsed_seconds"`
	FlowsPerSecond    float64          `json:"flows_per_second"`
	Exporters         []ExporterReport `json:"exporters"`
}

// ExporterReport is one simulated exporter's part.
type ExporterReport struct {
	Address   string `json:"address"`
	Flows     uint64 `json:"flows"`
	Datagrams uint64 `json:"datagrams"` // templates' included
}

// streamState is one exporter's numbering of one of the capture's streams.
type streamState struct {
	seq            uint32
	sinceTemplates int
	lastTemplates  time.Time
	announced      bool
}

type exporter struct {
	idx    int
	src    netip.AddrPort
	conn   *net.UDPConn
	cursor int // next record of the capture
	bootMs int64
	states []streamState
	buf    []byte
	rep    ExporterReport
	stats  sendStats
	err    error
}

// sendStats are an exporter's totals, summed into the report.
type sendStats struct {
	datagrams, templateDatagrams, flows, unsent uint64
}

// Replayer sends a capture's records from simulated exporters.
type Replayer struct {
	cfg       Config
	capt      *Capture
	exporters []*exporter
	mu        sync.Mutex // serializes OnDatagram
}

// New prepares a replay of capt; it does no I/O.
func New(capt *Capture, cfg Config) (*Replayer, error) {
	if err := cfg.validate(capt); err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	r := &Replayer{cfg: cfg, capt: capt}
	addr := cfg.SourceBase
	for i := 0; i < cfg.Exporters; i++ {
		r.exporters = append(r.exporters, &exporter{idx: i, src: netip.AddrPortFrom(addr, cfg.SourcePort),
			states: make([]streamState, len(capt.streams)), buf: make([]byte, 0, cfg.MaxDatagram),
			// Staggered so that the exporters are not in step through the capture.
			cursor: i * len(capt.records) / cfg.Exporters})
		addr = addr.Next()
	}
	return r, nil
}

// Run sends until the count or duration is reached or ctx ends. Each
// exporter sends from its own goroutine, paced at its share of the rate,
// so that the replay is not bound by one core's sending.
func (r *Replayer) Run(ctx context.Context) (*Report, error) {
	cfg := &r.cfg
	start := cfg.Now()
	for _, x := range r.exporters {
		// An hour of uptime before the replay, a minute apart.
		x.bootMs = start.UnixMilli() - int64(time.Hour/time.Millisecond) - int64(x.idx)*60_000
		if !cfg.Send {
			continue
		}
		c, src, err := flowgen.ListenExporter(x.src)
		if err != nil {
			r.close()
			return nil, fmt.Errorf("replay: exporter %d: %w", x.idx, err)
		}
		x.conn, x.src = c, src
	}
	defer r.close()
	limit := uint64(math.MaxUint64)
	if cfg.Count > 0 {
		limit = cfg.Count
	}
	if cfg.Rate > 0 && cfg.Duration > 0 {
		limit = min(limit, uint64(cfg.Duration.Seconds()*cfg.Rate))
	}
	wall := time.Now()
	var wg sync.WaitGroup
	n := uint64(len(r.exporters))
	for i, x := range r.exporters {
		share := limit / n
		if uint64(i) < limit%n {
			share++
		}
		if limit == math.MaxUint64 {
			share = limit
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.runExporter(ctx, x, wall, share, cfg.Rate/float64(n))
		}()
	}
	wg.Wait()
	return r.report(time.Since(wall)), nil
}

// runExporter sends x's share of the flows at its rate (0: unpaced).
func (r *Replayer) runExporter(ctx context.Context, x *exporter, wall time.Time, limit uint64, rate float64) {
	var pacer *flowgen.Pacer
	if rate > 0 {
		pacer = flowgen.NewPacer(rate, wall)
		defer pacer.Stop()
	}
	var sent uint64
	for sent < limit && ctx.Err() == nil {
		due := limit
		if pacer != nil {
			if due = min(limit, pacer.Due(pacer.Elapsed())); due <= sent {
				pacer.Sleep(ctx, sent)
				continue
			}
		} else if r.cfg.Duration > 0 && time.Since(wall) >= r.cfg.Duration {
			break
		}
		now := r.cfg.Now()
		// Up to a burst of datagrams between clock readings.
		for i := 0; i < 64 && sent < due; i++ {
			sent += r.send(x, now, due-sent)
		}
	}
}

func (r *Replayer) close() {
	for _, x := range r.exporters {
		if x.conn != nil {
			_ = x.conn.Close()
			x.conn = nil
		}
	}
}

// send sends x's next datagram of at most max records (the templates
// before it when they are due) and returns the records it held.
func (r *Replayer) send(x *exporter, now time.Time, most uint64) uint64 {
	si := r.capt.records[x.cursor].stream
	st := &x.states[si]
	nowMs := now.UnixMilli()
	c := clock{exportMs: nowMs, uptimeMs: nowMs - x.bootMs, bootMs: x.bootMs}
	if r.capt.Version != versionV5 {
		c.exportMs = nowMs / 1000 * 1000 // the header carries seconds
	}
	cfg := &r.cfg
	if r.capt.Version != versionV5 && (!st.announced ||
		(cfg.TemplatePackets > 0 && st.sinceTemplates >= cfg.TemplatePackets) ||
		(cfg.TemplateInterval > 0 && now.Sub(st.lastTemplates) >= cfg.TemplateInterval)) {
		b, units := r.templates(x, r.capt.streams[si], st, c)
		r.write(x, b, 0)
		x.stats.templateDatagrams++
		st.announced, st.sinceTemplates, st.lastTemplates = true, 0, now
		r.advance(st, units)
	}
	b, n := r.data(x, st, c, int(min(most, uint64(cfg.Density))))
	r.write(x, b, n)
	st.sinceTemplates++
	if r.capt.Version == versionV9 {
		r.advance(st, 1)
	} else {
		r.advance(st, n)
	}
	return uint64(n)
}

// advance moves a stream's sequence number: v9 counts datagrams, IPFIX
// data records (options records included, RFC 7011), v5 flows.
func (r *Replayer) advance(st *streamState, units int) {
	if r.capt.Version == versionV9 {
		st.seq++
		return
	}
	st.seq += uint32(units)
}

func (r *Replayer) write(x *exporter, b []byte, flows int) {
	var err error
	if x.conn != nil {
		_, err = x.conn.WriteToUDPAddrPort(b, r.cfg.Target)
	}
	if err != nil {
		x.err = err
		x.stats.unsent += uint64(flows)
		return
	}
	if r.cfg.OnDatagram != nil {
		r.mu.Lock()
		r.cfg.OnDatagram(x.idx, x.src, b)
		r.mu.Unlock()
	}
	x.stats.datagrams++
	x.stats.flows += uint64(flows)
}

func (r *Replayer) report(elapsed time.Duration) *Report {
	rep := &Report{Density: r.cfg.Density, CaptureRecords: len(r.capt.records), ElapsedSeconds: elapsed.Seconds()}
	for _, x := range r.exporters {
		s := x.stats
		rep.Flows += s.flows
		rep.Datagrams += s.datagrams
		rep.TemplateDatagrams += s.templateDatagrams
		rep.UnsentFlows += s.unsent
		rep.Exporters = append(rep.Exporters, ExporterReport{Address: x.src.String(), Flows: s.flows, Datagrams: s.datagrams})
		if x.err != nil {
			rep.SendError = x.err.Error()
		}
	}
	if elapsed > 0 {
		rep.FlowsPerSecond = float64(rep.Flows) / elapsed.Seconds()
	}
	return rep
}
