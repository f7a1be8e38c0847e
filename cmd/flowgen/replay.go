package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"

	"github.com/flowhouse/flowhouse/flowgen/replay"
)

const replayUsage = `flowgen replay: re-send a real exporter's capture.

The data records of the capture's NetFlow v5, v9 or IPFIX datagrams (a
pcap or pcapng file; Ethernet, Linux cooked v1/v2 or loopback link types)
are re-packed -density to a datagram with the templates the capture
defined, and sent from -exporters simulated exporters (one socket each, on
consecutive addresses from -source), looping the capture until -count or
-duration. Each exporter numbers its own datagrams (v9: datagrams; IPFIX:
data records; v5: flows) and sends the templates first and again every
-template-packets datagrams or -template-interval. Export times are now;
record times keep their age relative to the export time.

Usage:
  flowgen replay -pcap FILE -count N | -duration D [flags]

Flags:
`

// runReplay is flowgen's replay subcommand.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	d := replay.DefaultConfig()
	fs := flag.NewFlagSet("flowgen replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), replayUsage)
		fs.PrintDefaults()
	}
	var (
		pcapPath    = fs.String("pcap", "", "capture to replay (required)")
		target      = fs.String("target", d.Target.String(), "collector address:port (must be in 127.0.0.0/8)")
		exporters   = fs.Int("exporters", d.Exporters, "number of simulated exporters")
		source      = fs.String("source", d.SourceBase.String(), "source address of the first exporter; the others follow it")
		density     = fs.Int("density", 0, "data records per datagram (0: the capture's own, rounded)")
		count       = fs.Uint64("count", 0, "flows (data records) to send; -count or -duration is required")
		duration    = fs.Duration("duration", 0, "run time (with -rate: -rate x duration flows)")
		rate        = fs.Float64("rate", 10_000, "flows per second over all exporters (0: as fast as possible)")
		tplPackets  = fs.Int("template-packets", d.TemplatePackets, "resend templates every N datagrams of an exporter (0: not by count)")
		tplInterval = fs.Duration("template-interval", d.TemplateInterval, "resend templates after this time (0: not by time)")
		reportPath  = fs.String("report", "", "write the report as JSON to this file (- for stdout) instead of the text summary")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *pcapPath == "" {
		return errors.New("replay: -pcap is required")
	}
	cfg := d
	var err error
	if cfg.Target, err = netip.ParseAddrPort(*target); err != nil {
		return fmt.Errorf("-target: %v", err)
	}
	if cfg.SourceBase, err = netip.ParseAddr(*source); err != nil {
		return fmt.Errorf("-source: %v", err)
	}
	cfg.Exporters, cfg.Density, cfg.Count, cfg.Duration, cfg.Rate = *exporters, *density, *count, *duration, *rate
	cfg.TemplatePackets, cfg.TemplateInterval = *tplPackets, *tplInterval
	capt, err := replay.Load(*pcapPath)
	if err != nil {
		return err
	}
	r, err := replay.New(capt, cfg)
	if err != nil {
		return err
	}
	rep, err := r.Run(ctx)
	if err != nil {
		return err
	}
	return writeReplayReport(rep, *reportPath, stdout)
}

func writeReplayReport(rep *replay.Report, path string, stdout io.Writer) error {
	if path == "" {
		_, err := fmt.Fprintf(stdout, "sent %d flows in %d datagrams (%d of templates), %d records a datagram, %.0f flows/s over %.1f s; unsent %d %s\n",
			rep.Flows, rep.Datagrams, rep.TemplateDatagrams, rep.Density, rep.FlowsPerSecond, rep.ElapsedSeconds, rep.UnsentFlows, rep.SendError)
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
