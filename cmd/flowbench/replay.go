package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/flowgen/replay"
	"github.com/flowhouse/flowhouse/internal/chtest"
)

// replayOptions: the replay stage sends a real exporter's capture, re-packed
// at several densities, from 4 exporters at stepped rates into flowhouse
// (embedded and server) and into goflow2 and nfcapd, side by side.
type replayOptions struct {
	on         bool
	pcap       string
	rates      []float64 // at the capture's own density
	denseRates []float64 // at the other densities
	densities  []int     // 0: the capture's own
	duration   time.Duration
	exporters  int
	collectors []string
	goflow2    string // binary; empty: built from the module at goflow2Version
}

const goflow2Version = "v2.2.6"

var replayCollectors = []string{"embedded", "server", "goflow2", "nfcapd"}

func (r *replayOptions) flags() func() error {
	var rates, dense, densities, collectors string
	flag.BoolVar(&r.on, "replay", true, "run the replay stage: a real exporter's capture into flowhouse, goflow2 and nfcapd")
	flag.StringVar(&r.pcap, "replay-pcap", "collector/testdata/captures/pmacct_netflow9.pcap", "capture (NetFlow v5/v9 or IPFIX) the replay stage sends")
	flag.StringVar(&rates, "replay-rates", "35000,141000,352000,703000", "offered rates (flows/s) at the first density")
	flag.StringVar(&dense, "replay-dense-rates", "352000,703000", "offered rates (flows/s) at the other densities")
	flag.StringVar(&densities, "replay-densities", "4,10,30", "records per datagram (0: the capture's own, rounded); rates are -replay-rates at the first, -replay-dense-rates at the others")
	flag.DurationVar(&r.duration, "replay-duration", 4*time.Second, "load duration of each replay step")
	flag.IntVar(&r.exporters, "replay-exporters", 4, "simulated exporters of the replay")
	flag.StringVar(&collectors, "replay-collectors", strings.Join(replayCollectors, ","), "collectors the replay measures")
	flag.StringVar(&r.goflow2, "goflow2", "", "goflow2 binary (empty: go install goflow2@"+goflow2Version+" into a temporary directory)")
	return func() error {
		var err error
		if r.rates, err = parseRates(rates); err != nil {
			return fmt.Errorf("-replay-rates: %w", err)
		}
		if r.denseRates, err = parseRates(dense); err != nil {
			return fmt.Errorf("-replay-dense-rates: %w", err)
		}
		r.densities = nil
		for _, s := range strings.Split(densities, ",") {
			d, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || d < 0 {
				return fmt.Errorf("-replay-densities: %q is not a record count", s)
			}
			r.densities = append(r.densities, d)
		}
		r.collectors = strings.Split(collectors, ",")
		for _, c := range r.collectors {
			if !containsString(replayCollectors, c) {
				return fmt.Errorf("-replay-collectors: unknown collector %q (%s)", c, strings.Join(replayCollectors, ", "))
			}
		}
		if r.duration <= 0 || r.exporters <= 0 {
			return errors.New("-replay-duration and -replay-exporters must be positive")
		}
		return nil
	}
}

// ReplayResult is the replay stage's measurement.
type ReplayResult struct {
	Capture        string       `json:"capture"`
	Version        int          `json:"export_version"`
	CaptureRecords int          `json:"capture_records"`
	CaptureDensity float64      `json:"capture_records_per_datagram"`
	Exporters      int          `json:"exporters"`
	StepSeconds    float64      `json:"step_seconds"`
	Goflow2        string       `json:"goflow2_version"`
	Nfcapd         string       `json:"nfcapd_version"`
	ClickHouse     string       `json:"clickhouse_version"`
	WallSeconds    float64      `json:"stage_wall_seconds"`
	Steps          []ReplayStep `json:"steps"`
}

// ReplayStep is one collector at one density and offered rate.
type ReplayStep struct {
	Collector   string  `json:"collector"`
	Density     int     `json:"records_per_datagram"`
	Offered     float64 `json:"offered_flows_per_second"`
	Achieved    float64 `json:"achieved_flows_per_second"`
	Sent        uint64  `json:"flows_sent"`
	Datagrams   uint64  `json:"datagrams_sent"`
	Delivered   uint64  `json:"flows_delivered"`
	KernelDrops uint64  `json:"kernel_udp_receive_buffer_errors"`
	CPUSeconds  float64 `json:"collector_cpu_seconds"`
	PeakRSSMiB  float64 `json:"collector_peak_rss_mib"`
	// The ClickHouse server's CPU (flowhouse with a server only).
	ServerCPUSeconds float64 `json:"clickhouse_server_cpu_seconds,omitempty"`
	DrainSeconds     float64 `json:"drain_seconds"`
	Error            string  `json:"error,omitempty"`
}

func (s ReplayStep) deliveredPct() float64 {
	if s.Sent == 0 {
		return 0
	}
	return 100 * float64(s.Delivered) / float64(s.Sent)
}

// cpuPerMillion is CPU seconds per million flows sent.
func cpuPerMillion(cpu float64, sent uint64) float64 {
	if sent == 0 {
		return 0
	}
	return cpu / (float64(sent) / 1e6)
}

// replayCollector is one collector under test; each step starts and stops
// a process of its own (a peak RSS is the step's, a count the step's).
type replayCollector interface {
	// step measures one replay: send is called once the collector
	// listens; the collector waits for what was sent to be delivered.
	step(ctx context.Context, send func(target netip.AddrPort) (*replay.Report, error)) (ReplayStep, error)
	stop() error
}

func replayStageRun(ctx context.Context, o options, rep *Report) {
	if !o.replay.on {
		return
	}
	t := time.Now()
	r, err := replayStage(ctx, o)
	if r != nil {
		r.WallSeconds = time.Since(t).Seconds()
	}
	rep.Replay = r
	if err != nil {
		rep.failed("replay", err)
	}
	fmt.Fprintf(os.Stderr, "replay stage: %s\n", time.Since(t).Round(time.Second))
}

func replayStage(ctx context.Context, o options) (*ReplayResult, error) {
	ro := o.replay
	capt, err := replay.Load(ro.pcap)
	if err != nil {
		return nil, err
	}
	res := &ReplayResult{Capture: filepath.Base(ro.pcap), Version: capt.Version, CaptureRecords: capt.Records(),
		CaptureDensity: capt.Density(), Exporters: ro.exporters, StepSeconds: ro.duration.Seconds()}
	env, err := replayEnv(ctx, o, res)
	if err != nil {
		return res, err
	}
	defer env.close()
	for i, density := range ro.densities {
		rates := ro.denseRates
		if i == 0 {
			rates = ro.rates
		}
		for _, name := range ro.collectors {
			if err := replayRun(ctx, o, env, res, capt, name, density, rates); err != nil {
				return res, fmt.Errorf("%s at %d a datagram: %w", name, density, err)
			}
		}
	}
	return res, nil
}

// replayEnvironment is what the collectors share: the ClickHouse server
// and the goflow2 binary.
type replayEnvironment struct {
	server  *chtest.Server
	goflow2 string
	tmp     string
	runs    int
}

func (e *replayEnvironment) close() {
	if e.server != nil {
		_ = e.server.Stop()
	}
	os.RemoveAll(e.tmp)
}

func replayEnv(ctx context.Context, o options, res *ReplayResult) (*replayEnvironment, error) {
	env := &replayEnvironment{goflow2: o.replay.goflow2}
	var err error
	if env.tmp, err = os.MkdirTemp("", "flowbench-replay-"); err != nil {
		return nil, err
	}
	for _, c := range o.replay.collectors {
		switch c {
		case "server":
			if env.server, err = chtest.Start(ctx, chtest.Options{}); err != nil {
				env.close()
				return nil, err
			}
			res.ClickHouse = env.server.Version()
		case "goflow2":
			// A binary built by go install says no version of its own.
			res.Goflow2 = goflow2Version
			if env.goflow2 == "" {
				if env.goflow2, err = buildGoflow2(ctx, env.tmp); err != nil {
					env.close()
					return nil, err
				}
			} else {
				res.Goflow2 = commandVersion(env.goflow2, "-v")
			}
		case "nfcapd":
			res.Nfcapd = commandVersion("nfcapd", "-V")
		}
	}
	return env, nil
}

// replayRun measures one collector's steps at one density. A step's
// error is kept in its row and ends the run.
func replayRun(ctx context.Context, o options, env *replayEnvironment, res *ReplayResult, capt *replay.Capture, name string, density int, rates []float64) error {
	c, err := startReplayCollector(ctx, o, env, name)
	if err != nil {
		return err
	}
	for _, rate := range rates {
		send := func(target netip.AddrPort) (*replay.Report, error) {
			cfg := replay.DefaultConfig()
			cfg.Target, cfg.Exporters, cfg.Density, cfg.Rate, cfg.Duration = target, o.replay.exporters, density, rate, o.replay.duration
			r, err := replay.New(capt, cfg)
			if err != nil {
				return nil, err
			}
			return r.Run(ctx)
		}
		st, err := c.step(ctx, send)
		st.Collector, st.Offered = name, rate
		if err != nil {
			st.Error = err.Error()
		}
		res.Steps = append(res.Steps, st)
		fmt.Fprintf(os.Stderr, "replay %s density %d: offered %.0f/s achieved %.0f/s sent %d delivered %d (%.2f%%) cpu %.2f s (%.2f s/M) rss %.0f MiB kernel drops %d drain %.1f s\n",
			name, st.Density, rate, st.Achieved, st.Sent, st.Delivered, st.deliveredPct(), st.CPUSeconds, cpuPerMillion(st.CPUSeconds, st.Sent), st.PeakRSSMiB, st.KernelDrops, st.DrainSeconds)
		if err != nil {
			_ = c.stop()
			return err
		}
	}
	return c.stop()
}
