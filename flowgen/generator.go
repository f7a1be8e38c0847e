package flowgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"time"
)

// Config describes a run. Zero values take the defaults of DefaultConfig
// where noted; Count or Duration bounds the run (at least one is needed).
type Config struct {
	Seed      uint64
	Exporters int        // simulated exporters
	Protocols []Protocol // assigned to exporters round-robin
	Target    netip.AddrPort
	// SourceBase is the first exporter's source address; the others
	// follow it (127.0.1.1, 127.0.1.2, ...). Everything stays in 127/8.
	SourceBase netip.Addr
	// SourcePort is every exporter's source port; 0 binds an ephemeral
	// port per exporter (49152+index in runs that do not send).
	SourcePort uint16

	Count    uint64        // flows (records; sFlow: flow samples) to send
	Duration time.Duration // run time on the schedule
	Rate     float64       // flows per second; 0: as fast as possible

	Hosts            int     // population of end hosts
	IPv6Share        float64 // share of flows that are IPv6 (not for v5 exporters)
	SamplingRate     uint32  // 1-in-N announced by every exporter
	MaxDatagram      int     // UDP payload bytes at most
	TemplatePackets  int     // v9/IPFIX: resend templates every N datagrams (0: never by count)
	TemplateInterval time.Duration
	CounterInterval  time.Duration // sFlow counter samples
	FlushInterval    time.Duration // send a partly filled datagram after this

	Scenarios     []Scenario
	ScenarioShare float64 // share of flows an active injected scenario takes
	SpikeIfIndex  uint32  // interface the spike scenario multiplies

	// Start, when set, runs a virtual clock from this time: record times
	// follow the schedule (flow i at Start + i/Rate; with Rate 0, 1 µs per
	// flow), so a seed gives byte-identical output.
	Start time.Time
	// Send sends the datagrams over UDP, one socket per exporter bound to
	// its source address, paced at Rate.
	Send bool
	// Pcap, when set, receives every datagram as a pcap frame.
	Pcap io.Writer
	// OnDatagram, when set, is called with every datagram sent; payload is
	// valid only during the call.
	OnDatagram func(exporter int, src netip.AddrPort, payload []byte, ts time.Time)
}

// DefaultConfig returns the defaults the CLI shows.
func DefaultConfig() Config {
	return Config{
		Seed:             1,
		Exporters:        4,
		Protocols:        []Protocol{NetFlowV5, NetFlowV9, IPFIX, SFlowV5},
		Target:           netip.MustParseAddrPort("127.0.0.1:2055"),
		SourceBase:       netip.MustParseAddr("127.0.1.1"),
		Rate:             10_000,
		Hosts:            500,
		IPv6Share:        0.2,
		SamplingRate:     1,
		MaxDatagram:      1400,
		TemplatePackets:  100,
		TemplateInterval: time.Minute,
		CounterInterval:  20 * time.Second,
		FlushInterval:    500 * time.Millisecond,
		ScenarioShare:    0.2,
		SpikeIfIndex:     2,
		Send:             true,
	}
}

func isLoopback4(a netip.Addr) bool {
	return a.Is4() && a.As4()[0] == 127 && a != netip.AddrFrom4([4]byte{127, 255, 255, 255})
}

// Validate checks the configuration and fills zero values with defaults.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if c.Exporters <= 0 {
		return errors.New("exporters must be at least 1")
	}
	if len(c.Protocols) == 0 {
		c.Protocols = d.Protocols
	}
	if !c.Target.IsValid() {
		c.Target = d.Target
	}
	if !isLoopback4(c.Target.Addr()) || c.Target.Port() == 0 {
		return fmt.Errorf("target %s: must be an address in 127.0.0.0/8 with a port", c.Target)
	}
	if !c.SourceBase.IsValid() {
		c.SourceBase = d.SourceBase
	}
	last := c.SourceBase
	for i := 1; i < c.Exporters; i++ {
		last = last.Next()
	}
	if !isLoopback4(c.SourceBase) || !isLoopback4(last) {
		return fmt.Errorf("source addresses %s..%s: must stay in 127.0.0.0/8", c.SourceBase, last)
	}
	if c.Count == 0 && c.Duration <= 0 {
		return errors.New("a count or a duration is needed to bound the run")
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		return fmt.Errorf("rate %v: must be >= 0", c.Rate)
	}
	if c.Hosts <= 0 {
		c.Hosts = d.Hosts
	}
	if c.IPv6Share < 0 || c.IPv6Share > 1 {
		return fmt.Errorf("ipv6 share %v: must be in [0, 1]", c.IPv6Share)
	}
	if c.SamplingRate == 0 {
		c.SamplingRate = 1
	}
	for _, p := range c.Protocols {
		if p == NetFlowV5 && c.SamplingRate > 0x3fff {
			return fmt.Errorf("sampling rate %d: NetFlow v5 carries at most 16383", c.SamplingRate)
		}
	}
	if c.MaxDatagram == 0 {
		c.MaxDatagram = d.MaxDatagram
	}
	if c.MaxDatagram < 1200 || c.MaxDatagram > 65507 {
		return fmt.Errorf("max datagram %d: must be in [1200, 65507]", c.MaxDatagram)
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = d.FlushInterval
	}
	if c.ScenarioShare < 0 || c.ScenarioShare > 1 {
		return fmt.Errorf("scenario share %v: must be in [0, 1]", c.ScenarioShare)
	}
	if c.SpikeIfIndex == 0 {
		c.SpikeIfIndex = d.SpikeIfIndex
	}
	if c.SpikeIfIndex > maxInterfaces {
		return fmt.Errorf("spike ifIndex %d: exporters have interfaces 1..%d", c.SpikeIfIndex, maxInterfaces)
	}
	return nil
}

// Generator simulates the exporters of one run.
type Generator struct {
	cfg       Config
	exporters []*exporter
	model     *model
	inj       *injector
	r         rng
	flow      Flow
	next      int
	injecting bool
	spike     *Scenario
	active    [numScenarioKinds]ScenarioKind
	uptimes   []int64
	seqs      []uint32

	conns   []*net.UDPConn
	pcap    *PcapWriter
	virtual bool
	fatal   error
	ran     bool
}

// New prepares a run; it does no I/O.
func New(cfg Config) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("flowgen: %w", err)
	}
	g := &Generator{
		cfg:   cfg,
		model: newModel(cfg.Seed, cfg.Hosts, cfg.IPv6Share),
		inj:   newInjector(cfg.Seed),
		r:     newRNG(cfg.Seed ^ 0xc0ffee),
	}
	for i := range cfg.Scenarios {
		if cfg.Scenarios[i].Kind == Spike {
			g.spike = &cfg.Scenarios[i]
		} else {
			g.injecting = true
		}
	}
	addr := cfg.SourceBase
	for i := 0; i < cfg.Exporters; i++ {
		r := newRNG(cfg.Seed + uint64(i+1)*0x9e3779b97f4a7c15)
		x := &exporter{
			idx:   i,
			proto: cfg.Protocols[i%len(cfg.Protocols)],
			src:   netip.AddrPortFrom(addr, cfg.SourcePort),
			rate:  cfg.SamplingRate,
			model: exporterModel{
				ifCount: 4 + r.intn(maxInterfaces-3),
				mac:     [6]byte{0x00, 0x00, 0x5e, 0x00, 0x53, byte(0x80 | i&0x7f)},
			},
		}
		x.domain = uint32(i + 1)
		if x.proto == NetFlowV5 {
			x.domain = uint32(i % 256)
		}
		g.uptimes = append(g.uptimes, int64(time.Hour/time.Millisecond)+int64(r.intn(20*24*3600*1000)))
		g.seqs = append(g.seqs, uint32(r.u64()))
		g.exporters = append(g.exporters, x)
		addr = addr.Next()
	}
	return g, nil
}

// Sources returns the exporters' source addresses (ports are known once
// Run has bound the sockets).
func (g *Generator) Sources() []netip.AddrPort {
	out := make([]netip.AddrPort, len(g.exporters))
	for i, x := range g.exporters {
		out[i] = x.src
	}
	return out
}

const samplerID = 1

// setup binds the sockets and builds the encoders for a run starting at startMs.
func (g *Generator) setup(startMs int64) error {
	cfg := &g.cfg
	if cfg.Pcap != nil {
		p, err := NewPcapWriter(cfg.Pcap)
		if err != nil {
			return fmt.Errorf("flowgen: pcap: %w", err)
		}
		g.pcap = p
	}
	for i, x := range g.exporters {
		if cfg.Send {
			c, src, err := ListenExporter(x.src)
			if err != nil {
				g.closeConns()
				return fmt.Errorf("flowgen: exporter %d: %w", i, err)
			}
			g.conns = append(g.conns, c)
			x.src = src
		} else if x.src.Port() == 0 {
			x.src = netip.AddrPortFrom(x.src.Addr(), uint16(49152+i%16384))
		}
		boot := startMs - g.uptimes[i]
		seq := g.seqs[i]
		switch x.proto {
		case NetFlowV5:
			x.enc = newV5Encoder(cfg.MaxDatagram, seq, boot, uint8(x.domain), x.rate)
		case NetFlowV9, IPFIX:
			x.nf = newNFEncoder(x.proto == IPFIX, cfg.MaxDatagram, x.domain, seq, samplerID, x.rate, boot,
				cfg.TemplatePackets, cfg.TemplateInterval)
			x.enc = x.nf
		case SFlowV5:
			r := newRNG(cfg.Seed ^ uint64(i)<<32 ^ 0x5f10)
			x.sf = newSFlowEncoder(cfg.MaxDatagram, x.src.Addr().As4(), x.domain, seq, x.rate, boot,
				x.model.ifCount, cfg.CounterInterval, &r)
			x.enc = x.sf
		}
	}
	return nil
}

// ListenExporter binds an exporter's socket to src (port 0: ephemeral),
// with a send buffer deep enough for paced bursts, and returns it with
// the address bound.
func ListenExporter(src netip.AddrPort) (*net.UDPConn, netip.AddrPort, error) {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(src))
	if err != nil {
		return nil, src, fmt.Errorf("bind %s: %w", src, err)
	}
	_ = c.SetWriteBuffer(4 << 20)
	a := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return c, netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), nil
}

func (g *Generator) closeConns() {
	for _, c := range g.conns {
		_ = c.Close()
	}
	g.conns = nil
}

// Run generates and sends until the count or duration is reached or ctx
// ends (then the report says Interrupted). It can be called once.
func (g *Generator) Run(ctx context.Context) (*Report, error) {
	if g.ran {
		return nil, errors.New("flowgen: Run called twice")
	}
	g.ran = true
	cfg := &g.cfg
	rate := cfg.Rate
	pace := cfg.Send && rate > 0
	wallStart := time.Now()
	g.virtual = !cfg.Start.IsZero() || (!pace && rate > 0)
	base := cfg.Start
	if base.IsZero() {
		base = wallStart
	}
	startMs := base.UnixMilli()
	if err := g.setup(startMs); err != nil {
		return nil, err
	}
	defer g.closeConns()

	sched := func(unit uint64) time.Duration {
		if rate > 0 {
			return time.Duration(float64(unit) * 1e9 / rate)
		}
		return time.Duration(unit) * time.Microsecond // virtual clock only
	}
	limit, wallDeadline := g.limits()

	const burstMax = 1024
	var (
		unit        uint64
		at          time.Duration
		nowMs       = startMs
		interrupted bool
	)
	var pacer *Pacer
	if pace {
		pacer = NewPacer(rate, wallStart)
		defer pacer.Stop()
	}
	for unit < limit && g.fatal == nil {
		if ctx.Err() != nil {
			interrupted = true
			break
		}
		end := min(limit, unit+burstMax)
		if pace {
			el := pacer.Elapsed()
			due := pacer.Due(el)
			if due <= unit {
				// Nothing due: send what has waited too long, then sleep.
				now := startMs + int64(el/time.Millisecond)
				if !g.virtual {
					now = time.Now().UnixMilli()
				}
				g.flushStale(el, now)
				pacer.Sleep(ctx, unit)
				continue
			}
			end = min(end, due)
		}
		if !g.virtual {
			now := time.Now()
			el := now.Sub(wallStart)
			if wallDeadline > 0 && el >= wallDeadline {
				break
			}
			nowMs = now.UnixMilli()
			if rate == 0 {
				at = el
			}
		}
		for unit < end {
			if rate > 0 || g.virtual {
				at = sched(unit)
			}
			if g.virtual {
				nowMs = startMs + int64(at/time.Millisecond)
			}
			unit = g.step(unit, limit, at, nowMs)
		}
		g.flushStale(at, nowMs)
	}
	if !g.virtual {
		nowMs = time.Now().UnixMilli()
	}
	for _, x := range g.exporters {
		if x.open {
			g.flush(x, nowMs)
		}
	}
	return g.report(base, time.Since(wallStart), at, interrupted), g.fatal
}

// limits are the units to send at most, and the wall-clock time to stop
// at when neither a rate nor the virtual clock turns the duration into
// units.
func (g *Generator) limits() (limit uint64, wallDeadline time.Duration) {
	cfg := &g.cfg
	limit = math.MaxUint64
	if cfg.Count > 0 {
		limit = cfg.Count
	}
	if cfg.Duration > 0 {
		switch {
		case cfg.Rate > 0:
			limit = min(limit, uint64(cfg.Duration.Seconds()*cfg.Rate))
		case g.virtual:
			limit = min(limit, uint64(cfg.Duration/time.Microsecond))
		default:
			wallDeadline = cfg.Duration
		}
	}
	return limit, wallDeadline
}

// step generates one flow and hands it to the next exporter; it returns
// the unit count after it (sFlow spikes give ten samples for one flow).
func (g *Generator) step(unit, limit uint64, at time.Duration, nowMs int64) uint64 {
	x := g.exporters[g.next]
	if g.next++; g.next == len(g.exporters) {
		g.next = 0
	}
	f := &g.flow
	kind := Background
	if g.injecting {
		n := 0
		for _, s := range g.cfg.Scenarios {
			if s.Kind != Spike && s.active(at) {
				g.active[n] = s.Kind
				n++
			}
		}
		if n > 0 && g.r.chance(g.cfg.ScenarioShare) {
			kind = g.active[g.r.intn(n)]
		}
	}
	if kind == Background {
		g.model.background(f, &x.model, x.proto != NetFlowV5, nowMs)
		if g.spike != nil && g.spike.active(at) && (f.InIf == g.cfg.SpikeIfIndex || f.OutIf == g.cfg.SpikeIfIndex) {
			spike(f)
		}
	} else {
		g.inj.inject(f, kind, &x.model, nowMs)
	}
	n := 1
	if x.proto == SFlowV5 {
		n = f.Samples
	}
	for i := 0; i < n && unit < limit; i++ {
		g.put(x, f, at, nowMs)
		unit++
	}
	return unit
}

// flushStale sends the datagrams that have waited FlushInterval.
func (g *Generator) flushStale(at time.Duration, nowMs int64) {
	for _, x := range g.exporters {
		if x.open && at-x.pendSince >= g.cfg.FlushInterval {
			g.flush(x, nowMs)
		}
	}
}

func (g *Generator) put(x *exporter, f *Flow, at time.Duration, nowMs int64) {
	if !x.open {
		x.enc.begin(at)
		x.open, x.pendSince = true, at
	}
	if !x.enc.add(f) {
		g.flush(x, nowMs)
		x.enc.begin(at)
		x.open, x.pendSince = true, at
		x.enc.add(f) // an empty datagram always has room for one
	}
	b, p := x.encoded(f)
	x.pend.add(f, b, p)
}

func (g *Generator) flush(x *exporter, nowMs int64) {
	payload := x.enc.finish(nowMs)
	x.open = false
	ts := time.UnixMilli(nowMs)
	if !g.virtual {
		ts = time.Now()
	}
	var err error
	if g.conns != nil {
		_, err = g.conns[x.idx].WriteToUDPAddrPort(payload, g.cfg.Target)
	}
	if err != nil {
		x.lastErr = err
		x.pend.commit(&x.unsent, len(payload))
		return
	}
	if g.pcap != nil {
		if perr := g.pcap.WriteDatagram(x.src, g.cfg.Target, payload, ts); perr != nil && g.fatal == nil {
			g.fatal = fmt.Errorf("flowgen: pcap: %w", perr)
		}
	}
	if g.cfg.OnDatagram != nil {
		g.cfg.OnDatagram(x.idx, x.src, payload, ts)
	}
	x.pend.commit(&x.sent, len(payload))
}

func (g *Generator) report(base time.Time, elapsed, at time.Duration, interrupted bool) *Report {
	cfg := &g.cfg
	r := &Report{
		Seed: cfg.Seed, Target: cfg.Target.String(), Sent: cfg.Send, VirtualClock: g.virtual,
		Start: base.UTC(), ElapsedSeconds: elapsed.Seconds(), ScheduleSeconds: at.Seconds(),
		Rate: cfg.Rate, Interrupted: interrupted, Protocols: map[string]Counts{},
	}
	var scen [numScenarioKinds]Counts
	for _, x := range g.exporters {
		er := ExporterReport{
			Index: x.idx, Address: x.src.String(), Protocol: x.proto.String(), Domain: x.domain,
			SamplingRate: x.rate, Counts: x.sent.all, Unsent: x.unsent.all,
		}
		for i := 1; i <= x.model.ifCount; i++ {
			er.Interfaces = append(er.Interfaces, uint32(i))
		}
		if x.nf != nil {
			er.SamplerID = samplerID
			er.TemplateDatagrams, er.OptionsRecords = x.nf.templateDatagrams, x.nf.optionsRecords
		}
		if x.sf != nil {
			er.CounterSamples = x.sf.counterSamples
		}
		if x.lastErr != nil {
			r.SendError = x.lastErr.Error()
		}
		r.Exporters = append(r.Exporters, er)
		r.Total.merge(&x.sent.all)
		r.Unsent.merge(&x.unsent.all)
		pc := r.Protocols[x.proto.String()]
		pc.merge(&x.sent.all)
		r.Protocols[x.proto.String()] = pc
		for i := range scen {
			scen[i].merge(&x.sent.scen[i])
		}
	}
	r.Background = scen[Background]
	for _, s := range cfg.Scenarios {
		sr := ScenarioReport{Name: s.Kind.String(), Start: s.Start.String(), Counts: scen[s.Kind], Target: g.scenarioTarget(s.Kind)}
		if s.Duration > 0 {
			sr.Duration = s.Duration.String()
		}
		r.Scenarios = append(r.Scenarios, sr)
	}
	if elapsed > 0 {
		r.FlowsPerSecond = float64(r.Total.Flows) / elapsed.Seconds()
	}
	return r
}

func (g *Generator) scenarioTarget(k ScenarioKind) string {
	switch k {
	case Amplification:
		return fmt.Sprintf("UDP from reflectors (source ports %v) to %s", AmplificationPorts, AmplificationVictim)
	case SYNFlood:
		return fmt.Sprintf("TCP SYN from spoofed sources to %s", SYNFloodTarget)
	case PortScan:
		return fmt.Sprintf("TCP SYN from %s:%d to %s, destination ports 1, 2, 3, ...", PortScanSource, portScanSourcePort, PortScanTarget)
	case HostScan:
		return fmt.Sprintf("TCP SYN from %s to 192.0.2.1-254, port %d", HostScanSource, HostScanPort)
	case UDPFlood:
		return fmt.Sprintf("small UDP packets from spoofed sources, random ports, to %s", UDPFloodVictim)
	case ICMPFlood:
		return fmt.Sprintf("ICMP echo requests from spoofed sources to %s", ICMPFloodVictim)
	case Bulk:
		return fmt.Sprintf("one TCP transfer from %s to %s (SYN, SYN-ACK, data and ACKs)", BulkServer, BulkClient)
	case Spike:
		return fmt.Sprintf("bytes and packets x10 on ifIndex %d (sFlow: x10 samples)", g.cfg.SpikeIfIndex)
	}
	return ""
}
