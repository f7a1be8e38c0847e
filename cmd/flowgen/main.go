// Command flowgen simulates flow exporters: it sends NetFlow v5, NetFlow
// v9, IPFIX and sFlow v5 datagrams with deterministic, realistic traffic
// (and optional attack scenarios) to a collector on 127.0.0.0/8, and
// reports exactly what it sent.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/flowhouse/flowhouse/flowgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		if errors.Is(err, errInterrupted) {
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "flowgen:", err)
		os.Exit(2)
	}
}

const usageHead = `flowgen: a deterministic flow-exporter simulator.

Simulated exporters, each with its own source address in 127.0.0.0/8 (one
UDP socket per exporter), send NetFlow v5, NetFlow v9, IPFIX or sFlow v5 to
a collector. Traffic comes from a seeded model: hosts in the documentation
ranges (192.0.2.0/24 inside; 198.51.100.0/24, 203.0.113.0/24 outside;
2001:db8::/32), common services, heavy-tailed flow sizes. Scenarios inject
known patterns. At the end it prints (or writes as JSON) exactly what it
sent: datagrams, flows, bytes and packets as encoded (unscaled), in total,
per protocol, per exporter and per scenario. For sFlow a flow is a flow
sample, its bytes the IP total length of the sampled packet, its packets 1.

Usage:
  flowgen -count N | -duration D [flags]
  flowgen replay -pcap FILE -count N | -duration D [flags]   (flowgen replay -h)

Examples:
  flowgen -count 100000 -rate 20000                    # 4 exporters: v5, v9, ipfix, sflow
  flowgen -protocol ipfix -exporters 10 -duration 1m -scenario synflood@10s+20s
  flowgen -count 5000 -start 2024-01-01T00:00:00Z -send=false -pcap out.pcap -report out.json

Scenarios (-scenario NAME[@START[+DURATION]],...; times on the run's schedule):
  amplification  UDP from many reflectors (source ports 53,123,1900,11211,389,19),
                 large packets, to 192.0.2.200
  synflood       SYN-only 44-byte packets from spoofed sources to 192.0.2.10:443
  portscan       203.0.113.66 -> 192.0.2.50, TCP SYN to ports 1, 2, 3, ...
  hostscan       203.0.113.77 -> 192.0.2.1-254, TCP SYN to port 22
  spike          bytes and packets x10 on -spike-ifindex (sFlow: x10 samples)
  udpflood       small UDP packets from spoofed sources, random ports, to 192.0.2.220
  icmpflood      ICMP echo requests from spoofed sources to 192.0.2.230
  bulk           one long TCP transfer 203.0.113.240:443 -> 192.0.2.240:50080
                 (SYN, SYN-ACK, data and ACKs both ways): a negative control
While injected scenarios are active they take -scenario-share of the flows.

Flags:
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "replay" {
		return runReplay(ctx, args[1:], stdout, stderr)
	}
	d := flowgen.DefaultConfig()
	fs := flag.NewFlagSet("flowgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	var (
		target      = fs.String("target", d.Target.String(), "collector address:port (must be in 127.0.0.0/8)")
		exporters   = fs.Int("exporters", d.Exporters, "number of simulated exporters")
		protocols   = fs.String("protocols", "v5,v9,ipfix,sflow", "protocols assigned to exporters round-robin (v5, v9, ipfix, sflow)")
		protocol    = fs.String("protocol", "", "one protocol for every exporter (overrides -protocols)")
		source      = fs.String("source", d.SourceBase.String(), "source address of the first exporter; the others follow it")
		sourcePort  = fs.Uint("source-port", 0, "source port of every exporter (0: ephemeral per exporter)")
		count       = fs.Uint64("count", 0, "flows to send (records; sFlow: flow samples); -count or -duration is required")
		duration    = fs.Duration("duration", 0, "run time: -rate x duration flows (with -rate 0: wall clock)")
		rate        = fs.Float64("rate", d.Rate, "flows per second, paced in small bursts (0: as fast as possible)")
		seed        = fs.Uint64("seed", d.Seed, "seed of the traffic model; same seed, same traffic")
		hosts       = fs.Int("hosts", d.Hosts, "number of end hosts in the population")
		ipv6        = fs.Float64("ipv6", d.IPv6Share, "share of IPv6 flows, 0..1 (v5 exporters send IPv4 only)")
		sampling    = fs.Uint("sampling", uint(d.SamplingRate), "sampling rate 1-in-N announced (v5 header, v9/IPFIX options, sFlow samples)")
		maxDgram    = fs.Int("max-datagram", d.MaxDatagram, "largest UDP payload in bytes")
		tplPackets  = fs.Int("template-packets", d.TemplatePackets, "v9/IPFIX: resend templates every N datagrams (0: not by count)")
		tplInterval = fs.Duration("template-interval", d.TemplateInterval, "v9/IPFIX: resend templates after this time (0: not by time)")
		ctrInterval = fs.Duration("counter-interval", d.CounterInterval, "sFlow: send interface counter samples this often (0: never)")
		flushIvl    = fs.Duration("flush", d.FlushInterval, "send a partly filled datagram after this")
		scenarios   = fs.String("scenario", "", "scenarios to inject, comma-separated: amplification, synflood, portscan, hostscan, spike, udpflood, icmpflood, bulk, each as NAME[@START[+DURATION]]")
		scStart     = fs.Duration("scenario-start", 0, "default start offset of scenarios")
		scDuration  = fs.Duration("scenario-duration", 0, "default duration of scenarios (0: until the end)")
		scShare     = fs.Float64("scenario-share", d.ScenarioShare, "share of flows that active injected scenarios take, 0..1")
		spikeIf     = fs.Uint("spike-ifindex", uint(d.SpikeIfIndex), "ifIndex (1..8) the spike scenario multiplies")
		start       = fs.String("start", "", "RFC 3339 time: run a virtual clock from it (record times follow the schedule; output is byte-identical for a seed)")
		send        = fs.Bool("send", true, "send the datagrams over UDP (false: only -pcap / -report)")
		pcapPath    = fs.String("pcap", "", "also write every datagram to this pcap file")
		reportPath  = fs.String("report", "", "write the report as JSON to this file (- for stdout) instead of the text summary")
		quiet       = fs.Bool("quiet", false, "print nothing on success")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}

	cfg := d
	var err error
	if cfg.Target, err = netip.ParseAddrPort(*target); err != nil {
		return fmt.Errorf("-target: %v", err)
	}
	if cfg.SourceBase, err = netip.ParseAddr(*source); err != nil {
		return fmt.Errorf("-source: %v", err)
	}
	if *sourcePort > 65535 {
		return fmt.Errorf("-source-port %d: out of range", *sourcePort)
	}
	cfg.SourcePort = uint16(*sourcePort)
	p := *protocols
	if *protocol != "" {
		p = *protocol
	}
	if cfg.Protocols, err = flowgen.ParseProtocols(p); err != nil {
		return err
	}
	if *protocol != "" && len(cfg.Protocols) != 1 {
		return errors.New("-protocol takes one protocol; use -protocols for a list")
	}
	if cfg.Scenarios, err = flowgen.ParseScenarios(*scenarios, *scStart, *scDuration); err != nil {
		return err
	}
	if *sampling == 0 || *sampling > 1<<31 {
		return fmt.Errorf("-sampling %d: out of range", *sampling)
	}
	if *start != "" {
		if cfg.Start, err = time.Parse(time.RFC3339Nano, *start); err != nil {
			return fmt.Errorf("-start: %v", err)
		}
	}
	cfg.Exporters, cfg.Count, cfg.Duration, cfg.Rate, cfg.Seed = *exporters, *count, *duration, *rate, *seed
	cfg.Hosts, cfg.IPv6Share, cfg.SamplingRate, cfg.MaxDatagram = *hosts, *ipv6, uint32(*sampling), *maxDgram
	cfg.TemplatePackets, cfg.TemplateInterval, cfg.CounterInterval = *tplPackets, *tplInterval, *ctrInterval
	cfg.FlushInterval, cfg.ScenarioShare, cfg.SpikeIfIndex, cfg.Send = *flushIvl, *scShare, uint32(*spikeIf), *send
	if !cfg.Send && *pcapPath == "" && *reportPath == "" {
		return errors.New("-send=false needs -pcap or -report, or there is nothing to do")
	}

	return generate(ctx, cfg, *pcapPath, *reportPath, *quiet, stdout, stderr)
}

// generate runs the generator with cfg, writing every datagram to the
// pcap file at pcapPath (if set) and the report where reportPath says
// (- for stdout; empty: a text summary unless quiet).
func generate(ctx context.Context, cfg flowgen.Config, pcapPath, reportPath string, quiet bool, stdout, stderr io.Writer) error {
	var err error
	var pcapFile *os.File
	var pcapBuf *bufio.Writer
	if pcapPath != "" {
		if pcapFile, err = os.Create(pcapPath); err != nil {
			return err
		}
		defer pcapFile.Close()
		pcapBuf = bufio.NewWriterSize(pcapFile, 1<<20)
		cfg.Pcap = pcapBuf
	}
	g, err := flowgen.New(cfg)
	if err != nil {
		return err
	}
	rep, runErr := g.Run(ctx)
	if pcapBuf != nil {
		if err := pcapBuf.Flush(); err != nil && runErr == nil {
			runErr = err
		}
		if err := pcapFile.Close(); err != nil && runErr == nil {
			runErr = err
		}
	}
	if rep != nil {
		switch {
		case reportPath == "-":
			err = rep.WriteJSON(stdout)
		case reportPath != "":
			err = writeReport(reportPath, rep)
		case !quiet:
			err = rep.WriteText(stdout)
		}
		if err != nil && runErr == nil {
			runErr = err
		}
	}
	if runErr == nil && rep != nil && rep.Interrupted {
		if !quiet {
			fmt.Fprintln(stderr, "flowgen: interrupted; the report covers what was sent")
		}
		return errInterrupted
	}
	return runErr
}

// errInterrupted makes the command exit with 130 after a signal stopped the
// run early (the report is written all the same).
var errInterrupted = errors.New("interrupted")

func writeReport(path string, rep *flowgen.Report) error {
	var b strings.Builder
	if err := rep.WriteJSON(&b); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
