// Command flowbench measures flowhouse end to end on this machine and
// writes a report (markdown and JSON) under bench/results/.
//
// It starts a ClickHouse server of its own (Debian's clickhouse-server, in
// a temporary directory), runs the flowhouse binary against it, offers
// load with flowgen at stepped rates, and compares what was sent with the
// rows stored and with the kernel's UDP drop counters. It also runs the
// decoder benchmarks (ours against goflow2's producer path on the same
// captures). Every run is bounded; all traffic stays on 127.0.0.0/8.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/flowgen"
	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/store"
)

type options struct {
	flowhouse string
	out       string
	rates     []float64
	duration  time.Duration
	exporters int
	protocols string
	decode    bool
	maxLoss   float64
	engines   []string
	library   string
	fnm       bool // the FastNetMon comparison (fastnetmon.go)
	rules     ruleOptions
	api       apiOptions
	burst     burstOptions
	replay    replayOptions
	cluster   clusterOptions
}

func main() {
	var o options
	var rates string
	flag.StringVar(&o.flowhouse, "flowhouse", "bin/flowhouse", "flowhouse binary to measure")
	flag.StringVar(&o.out, "out", "bench/results", "directory for report.md and report.json")
	flag.StringVar(&rates, "rates", "50000,100000,200000,300000,400000", "offered rates in flows/s, stepped up")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "load duration of each step")
	flag.IntVar(&o.exporters, "exporters", 8, "simulated exporters")
	flag.StringVar(&o.protocols, "protocols", "v5,v9,ipfix,sflow", "protocols assigned to exporters round-robin")
	flag.BoolVar(&o.decode, "decode", true, "also run the decoder benchmarks (go test -bench)")
	flag.Float64Var(&o.maxLoss, "max-loss", 0.001, "loss ratio a sustained rate may have")
	var engines string
	flag.StringVar(&engines, "engines", "server,embedded", "engines to measure: server (ClickHouse server), embedded (chDB)")
	flag.StringVar(&o.library, "library", "var/lib/libchdb.so", "the embedded engine's library (make deps installs it)")
	flag.BoolVar(&o.fnm, "fastnetmon", fastnetmonInstalled(), "also compare detection with FastNetMon CE (default: when "+fnmBinary+" exists)")
	checkRules := ruleFlags(&o.rules)
	checkAPI := apiFlags(&o.api)
	o.burst.flags()
	o.cluster.flags()
	checkReplay := o.replay.flags()
	only := flag.String("only", "", "run only these stages (comma-separated): "+strings.Join(stageNames, ", "))
	rewriteOnly := flag.Bool("rewrite", false, "only rewrite report.md and report.json from the report.json in -out (derived figures recomputed), measuring nothing")
	flag.Parse()
	if engines != "" {
		o.engines = strings.Split(engines, ",")
	}
	var err error
	if o.rates, err = parseRates(rates); err != nil {
		fmt.Fprintf(os.Stderr, "flowbench: -rates: %v\n", err)
		os.Exit(2)
	}
	for _, check := range []func() error{checkRules, checkAPI, o.burst.check, o.cluster.check, checkReplay, func() error { return onlyStages(&o, *only) }} {
		if err := check(); err != nil {
			fmt.Fprintf(os.Stderr, "flowbench: %v\n", err)
			os.Exit(2)
		}
	}
	if *rewriteOnly {
		if err := rewrite(o); err != nil {
			fmt.Fprintln(os.Stderr, "flowbench:", err)
			os.Exit(1)
		}
		return
	}
	if o.rules.costWorker != "" {
		if err := ruleCostWorker(o, o.rules); err != nil {
			fmt.Fprintln(os.Stderr, "flowbench: rules cost worker:", err)
			os.Exit(1)
		}
		return
	}
	if o.api.seedWorker != "" {
		if err := apiSeedWorker(o, o.api); err != nil {
			fmt.Fprintln(os.Stderr, "flowbench: api seed worker:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "flowbench:", err)
		os.Exit(1)
	}
}

// Step is the measurement at one offered rate.
type Step struct {
	OfferedRate      float64 `json:"offered_flows_per_second"`
	AchievedRate     float64 `json:"achieved_flows_per_second"`
	Sent             uint64  `json:"flows_sent"`
	Stored           uint64  `json:"rows_stored"`
	Lost             int64   `json:"flows_lost"`
	LossRatio        float64 `json:"loss_ratio"`
	KernelDrops      uint64  `json:"kernel_udp_receive_buffer_errors"`
	QueueDrops       float64 `json:"collector_queue_drops"`
	DecodeDrops      float64 `json:"collector_decode_drops"`
	StoreDrops       float64 `json:"store_rows_dropped"`
	CPUCores         float64 `json:"flowhouse_cpu_cores"`
	PeakRSSMiB       float64 `json:"flowhouse_peak_rss_mib"`
	Batches          float64 `json:"insert_batches"`
	MeanBatchRows    float64 `json:"mean_batch_rows"`
	MeanInsertMs     float64 `json:"mean_insert_ms"`
	DrainSeconds     float64 `json:"drain_seconds"`
	ClickHouseEngine string  `json:"engine"`
	CPUSeconds       float64 `json:"flowhouse_cpu_seconds,omitempty"`
	WallSeconds      float64 `json:"wall_seconds,omitempty"`

	metrics map[string]float64 // flowhouse's /metrics at the end of the step
}

// DecodeResult is one decoder benchmark line.
type DecodeResult struct {
	Protocol       string  `json:"protocol"`
	FlowhouseNs    float64 `json:"flowhouse_ns_per_flow"`
	Goflow2Ns      float64 `json:"goflow2_ns_per_flow"`
	FlowhouseAlloc float64 `json:"flowhouse_allocs_per_datagram"`
	Goflow2Alloc   float64 `json:"goflow2_allocs_per_datagram"`
	Speedup        float64 `json:"speedup"`
}

// Report is everything one flowbench run measured.
type Report struct {
	When              time.Time          `json:"when"`
	Host              string             `json:"host"`
	CPUs              int                `json:"cpus"`
	ClickHouseVersion string             `json:"clickhouse_version"`
	Duration          string             `json:"step_duration"`
	Exporters         int                `json:"exporters"`
	Protocols         string             `json:"protocols"`
	Steps             []Step             `json:"steps"`
	SustainedRate     map[string]float64 `json:"sustained_flows_per_second"`
	MaxLoss           float64            `json:"max_loss_ratio"`
	Decode            []DecodeResult     `json:"decode"`
	// The detection stages (rules*.go, delay*.go); a stage that failed
	// is named in StageErrors and the others are still reported.
	RuleCost    []RuleCostSize    `json:"rule_cost,omitempty"`
	RuleLoad    *RuleLoadResult   `json:"rule_load,omitempty"`
	Delay       *DelayResult      `json:"detection_delay,omitempty"`
	API         []APIEngine       `json:"api_latency,omitempty"`
	Burst       *BurstResult      `json:"burst,omitempty"`
	Replay      *ReplayResult     `json:"replay,omitempty"`
	Cluster     *ClusterResult    `json:"cluster,omitempty"`
	StageErrors map[string]string `json:"stage_errors,omitempty"`
}

func run(o options) error {
	if _, err := os.Stat(o.flowhouse); err != nil {
		return fmt.Errorf("flowhouse binary %s: %w (run make build)", o.flowhouse, err)
	}
	rep := &Report{When: time.Now().UTC(), Duration: o.duration.String(), Exporters: o.exporters, Protocols: o.protocols, MaxLoss: o.maxLoss}
	rep.Host, _ = os.Hostname()
	rep.MaxLoss = o.maxLoss
	rep.CPUs = cpuCount()

	if o.decode {
		d, err := decodeBench()
		if err != nil {
			return err
		}
		rep.Decode = d
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	protocols, err := flowgen.ParseProtocols(o.protocols)
	if err != nil {
		return err
	}
	rep.SustainedRate = map[string]float64{}
	for _, engine := range o.engines {
		var target storeTarget
		switch engine {
		case "server":
			srv, err := chtest.Start(ctx, chtest.Options{})
			if err != nil {
				return err
			}
			defer srv.Stop()
			rep.ClickHouseVersion = srv.Version()
			target = storeTarget{name: "server " + srv.Version(), addr: srv.Addr()}
		case "embedded":
			lib, err := filepath.Abs(o.library)
			if err != nil {
				return err
			}
			if _, err := os.Stat(lib); err != nil {
				return fmt.Errorf("embedded engine library: %w (run make deps)", err)
			}
			dir, err := os.MkdirTemp("", "flowbench-embedded-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			target = storeTarget{name: "embedded (chDB)", library: lib, path: dir}
		default:
			return fmt.Errorf("-engines: unknown engine %q", engine)
		}
		for i, rate := range o.rates {
			st, err := step(ctx, o, target, fmt.Sprintf("bench_%d", i), rate, protocols)
			if err != nil {
				return fmt.Errorf("%s step at %.0f flows/s: %w", engine, rate, err)
			}
			st.ClickHouseEngine = target.name
			rep.Steps = append(rep.Steps, st)
			fmt.Fprintf(os.Stderr, "%s: offered %.0f/s achieved %.0f/s: sent %d stored %d loss %.4f%% kernel drops %d cpu %.2f rss %.0f MiB\n",
				target.name, rate, st.AchievedRate, st.Sent, st.Stored, st.LossRatio*100, st.KernelDrops, st.CPUCores, st.PeakRSSMiB)
			if st.LossRatio <= o.maxLoss && st.AchievedRate > rep.SustainedRate[target.name] {
				rep.SustainedRate[target.name] = st.AchievedRate
			}
		}
	}
	burstStageRun(ctx, o, rep, protocols)
	replayStageRun(ctx, o, rep)
	clusterStageRun(ctx, o, rep)
	detectionStages(ctx, o, rep, protocols)
	if o.api.on {
		t := time.Now()
		var err error
		if rep.API, err = apiStage(ctx, o, o.api, protocols); err != nil {
			rep.failed("api_latency", err)
		}
		fmt.Fprintf(os.Stderr, "api latency stage: %s\n", time.Since(t).Round(time.Second))
	}
	if err := write(o.out, rep); err != nil {
		return err
	}
	return fastnetmonStage(ctx, o)
}

// stageNames are the stages -only names.
var stageNames = []string{"decode", "ingest", "burst", "replay", "cluster", "rules-cost", "rules-load", "rules-delay", "fastnetmon", "api"}

// onlyStages turns off every stage not named in only (when it is set).
func onlyStages(o *options, only string) error {
	if only == "" {
		return nil
	}
	on := map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		s = strings.TrimSpace(s)
		known := false
		for _, n := range stageNames {
			known = known || n == s
		}
		if !known {
			return fmt.Errorf("-only: unknown stage %q (stages: %s)", s, strings.Join(stageNames, ", "))
		}
		on[s] = true
	}
	o.decode = on["decode"]
	if !on["ingest"] {
		o.engines = nil
	}
	o.rules.cost, o.rules.load, o.rules.delay = on["rules-cost"], on["rules-load"], on["rules-delay"]
	o.fnm = on["fastnetmon"]
	o.api.on = on["api"]
	o.burst.on = on["burst"]
	o.replay.on = on["replay"]
	o.cluster.on = on["cluster"]
	return nil
}

// failed records a stage's error; the other stages are still reported.
func (rep *Report) failed(stage string, err error) {
	if rep.StageErrors == nil {
		rep.StageErrors = map[string]string{}
	}
	rep.StageErrors[stage] = err.Error()
	fmt.Fprintf(os.Stderr, "flowbench: %s: %v\n", stage, err)
}

// storeTarget is where the measured flowhouse stores: a ClickHouse server
// (addr) or the embedded engine (library and data directory).
type storeTarget struct {
	name          string
	addr          string
	library, path string
	env           []string // more environment of flowhouse serve
	// rules keeps the built-in rules on in load steps (the rules-load
	// stage); throughput steps run without them.
	rules bool
	// args go before serve (and the other commands): --config FILE.
	args []string
}

func (t storeTarget) config(database string) store.Config {
	cfg := store.DefaultConfig()
	cfg.Addr, cfg.Database = t.addr, database
	cfg.Embedded.Library, cfg.Embedded.Path = t.library, t.path
	return cfg
}

// countRows counts the stored flows. The embedded engine's directory is
// opened only while no flowhouse runs on it: one process at a time.
func (t storeTarget) countRows(ctx context.Context, database string) (uint64, error) {
	db, err := store.Open(ctx, t.config(database), nil)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n uint64
	err = store.QueryRow(ctx, db, []any{&n}, "SELECT count() FROM flows")
	return n, err
}

func step(ctx context.Context, o options, target storeTarget, database string, rate float64, protocols []flowgen.Protocol) (Step, error) {
	st := Step{OfferedRate: rate}
	// Ingest is measured with the rules off, comparable with earlier
	// reports; what the rules cost while ingesting is the rules-load
	// stage's measurement.
	env := target.env
	if !target.rules {
		env = append(append([]string(nil), env...), disableRulesEnv()...)
	}
	srv, err := startServe(ctx, o, target, database, env...)
	if err != nil {
		return st, err
	}
	defer srv.stop()
	udpPort, httpAddr := srv.udpPort, srv.httpAddr
	cpu0, _ := processCPU(srv.pid())
	kernel0 := udpReceiveErrors()
	start := time.Now()

	cfg := flowgen.DefaultConfig()
	cfg.Target = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(udpPort))
	cfg.Exporters, cfg.Protocols, cfg.Rate, cfg.Duration, cfg.Send = o.exporters, protocols, rate, o.duration, true
	gen, err := flowgen.New(cfg)
	if err != nil {
		return st, err
	}
	genReport, err := gen.Run(ctx)
	if err != nil {
		return st, err
	}
	st.Sent = genReport.Total.Flows
	st.AchievedRate = genReport.FlowsPerSecond

	sendEnd := time.Now()
	if err := waitDrained(httpAddr, st.Sent); err != nil {
		return st, err
	}
	st.DrainSeconds = time.Since(sendEnd).Seconds()
	wall := time.Since(start).Seconds()
	cpu1, _ := processCPU(srv.pid())
	st.CPUCores = (cpu1 - cpu0) / wall
	st.CPUSeconds, st.WallSeconds = cpu1-cpu0, wall
	st.PeakRSSMiB = peakRSSMiB(srv.pid())
	st.KernelDrops = udpReceiveErrors() - kernel0
	if m, err := scrape(httpAddr); err == nil {
		st.addMetrics(m)
		st.metrics = m
	}
	srv.stop()
	if st.Stored, err = target.countRows(ctx, database); err != nil {
		return st, err
	}
	st.Lost = int64(st.Sent) - int64(st.Stored)
	if st.Sent > 0 {
		st.LossRatio = float64(st.Lost) / float64(st.Sent)
	}
	return st, nil
}

// addMetrics takes the drops and batch figures of flowhouse's metrics.
func (st *Step) addMetrics(m map[string]float64) {
	st.QueueDrops = m["flowhouse_collector_queue_drops_total"]
	st.DecodeDrops = m["flowhouse_collector_drops_total"]
	st.StoreDrops = m["flowhouse_store_rows_dropped_total"]
	st.Batches = m["flowhouse_store_batch_rows_count"]
	if st.Batches > 0 {
		st.MeanBatchRows = m["flowhouse_store_batch_rows_sum"] / st.Batches
	}
	if c := m["flowhouse_store_insert_duration_seconds_count"]; c > 0 {
		st.MeanInsertMs = m["flowhouse_store_insert_duration_seconds_sum"] / c * 1000
	}
}

// rowsStored is the rows serve has put in the database, from its
// metrics: inserted live, and replayed from the spool (rows the batcher
// spilled for backpressure get there by the replay, which the batcher
// does not count).
func rowsStored(m map[string]float64) float64 {
	return m["flowhouse_store_rows_inserted_total"] + m["flowhouse_spool_rows_replayed_total"]
}

// waitDrained waits for the collector, the batcher and the spool to
// drain: the rows inserted live or replayed stop moving with no segment
// pending (or reach what was sent), for at most two minutes.
func waitDrained(httpAddr string, sent uint64) error {
	start := time.Now()
	var last float64
	for stable := 0; stable < 6 && time.Since(start) < 2*time.Minute; {
		time.Sleep(500 * time.Millisecond)
		m, err := scrape(httpAddr)
		if err != nil {
			return err
		}
		n := rowsStored(m)
		if n == last && m["flowhouse_spool_segments_pending"] == 0 {
			stable++
		} else {
			stable = 0
		}
		last = n
		if n >= float64(sent) {
			break
		}
	}
	return nil
}

func freePort(network string) (int, error) {
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitReady(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return errors.New("flowhouse did not become ready")
}

// processCPU is user+system CPU seconds of pid, from /proc/PID/stat.
func processCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100, nil // USER_HZ is 100 on Linux
}

func peakRSSMiB(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VmHWM:") {
			kb, _ := strconv.ParseFloat(strings.Fields(sc.Text())[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// udpReceiveErrors sums RcvbufErrors of UDP and UDP6 from /proc/net/snmp{,6}.
func udpReceiveErrors() uint64 {
	var total uint64
	if b, err := os.ReadFile("/proc/net/snmp"); err == nil {
		lines := strings.Split(string(b), "\n")
		for i := 0; i+1 < len(lines); i++ {
			if strings.HasPrefix(lines[i], "Udp: ") && strings.HasPrefix(lines[i+1], "Udp: ") {
				names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
				for j := range names {
					if names[j] == "RcvbufErrors" && j < len(values) {
						v, _ := strconv.ParseUint(values[j], 10, 64)
						total += v
					}
				}
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/net/snmp6"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) == 2 && f[0] == "Udp6RcvbufErrors" {
				v, _ := strconv.ParseUint(f[1], 10, 64)
				total += v
			}
		}
	}
	return total
}

// scrape sums every series of each metric name on /metrics.
func scrape(addr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err == nil {
			out[name] += v
			// A labelled series also under its own key, `name{label="value"}`.
			if series := strings.TrimSpace(strings.TrimSuffix(line, fields[len(fields)-1])); series != name {
				out[series] = v
			}
		}
	}
	return out, sc.Err()
}

var benchLine = regexp.MustCompile(`^BenchmarkDecode/(\w+)/(flowhouse|goflow2)-\d+\s+\d+\s+[\d.]+ ns/op\s+.*?([\d.]+) allocs/op`)
var nsPerFlow = regexp.MustCompile(`([\d.]+) ns/flow`)

func decodeBench() ([]DecodeResult, error) {
	cmd := exec.Command("go", "test", "./collector", "-run", "^$", "-bench", "^BenchmarkDecode$", "-benchtime", "1s", "-benchmem")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("decode benchmarks: %w\n%s", err, out)
	}
	byProto := map[string]*DecodeResult{}
	for _, line := range strings.Split(string(out), "\n") {
		m := benchLine.FindStringSubmatch(line)
		n := nsPerFlow.FindStringSubmatch(line)
		if m == nil || n == nil {
			continue
		}
		r := byProto[m[1]]
		if r == nil {
			r = &DecodeResult{Protocol: m[1]}
			byProto[m[1]] = r
		}
		ns, _ := strconv.ParseFloat(n[1], 64)
		allocs, _ := strconv.ParseFloat(m[3], 64)
		if m[2] == "flowhouse" {
			r.FlowhouseNs, r.FlowhouseAlloc = ns, allocs
		} else {
			r.Goflow2Ns, r.Goflow2Alloc = ns, allocs
		}
	}
	var res []DecodeResult
	for _, r := range byProto {
		if r.FlowhouseNs > 0 {
			r.Speedup = r.Goflow2Ns / r.FlowhouseNs
		}
		res = append(res, *r)
	}
	sort.Slice(res, func(i, j int) bool { return res[i].Protocol < res[j].Protocol })
	if len(res) == 0 {
		return nil, fmt.Errorf("no benchmark results in:\n%s", out)
	}
	return res, nil
}

func cpuCount() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\nprocessor") + 1
}

func write(dir string, rep *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	j, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# flowhouse benchmark\n\n%s on %s (%d CPUs), ClickHouse %s, %d exporters (%s), %s per step.\n\n",
		rep.When.Format(time.RFC3339), rep.Host, rep.CPUs, rep.ClickHouseVersion, rep.Exporters, rep.Protocols, rep.Duration)
	if len(rep.Decode) > 0 {
		b.WriteString("## Decoding (ns per flow, same captures, one run)\n\n| protocol | flowhouse | goflow2 producer/proto | speed-up | allocs/datagram (ours / goflow2) |\n| --- | --- | --- | --- | --- |\n")
		for _, d := range rep.Decode {
			fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.1fx | %.0f / %.0f |\n", d.Protocol, d.FlowhouseNs, d.Goflow2Ns, d.Speedup, d.FlowhouseAlloc, d.Goflow2Alloc)
		}
		b.WriteString("\n")
	}
	b.WriteString("## End to end into ClickHouse\n\nLoss = flows sent - rows stored; kernel drops = UDP RcvbufErrors during the step.\n\n| engine | offered/s | achieved/s | sent | stored | loss | kernel drops | queue drops | store drops | CPU (cores) | peak RSS MiB | batches | mean rows/batch | mean insert ms |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, s := range rep.Steps {
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %d | %d | %.3f%% | %d | %.0f | %.0f | %.2f | %.0f | %.0f | %.0f | %.1f |\n",
			s.ClickHouseEngine, s.OfferedRate, s.AchievedRate, s.Sent, s.Stored, s.LossRatio*100, s.KernelDrops, s.QueueDrops, s.StoreDrops, s.CPUCores, s.PeakRSSMiB, s.Batches, s.MeanBatchRows, s.MeanInsertMs)
	}
	names := make([]string, 0, len(rep.SustainedRate))
	for name := range rep.SustainedRate {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(&b, "\nSustained rate with loss at most %.1f%% on %s: **%.0f flows/s** (highest step measured).\n", rep.MaxLoss*100, name, rep.SustainedRate[name])
	}
	if rep.Burst != nil {
		writeBurst(&b, rep.Burst)
	}
	if rep.Replay != nil {
		writeReplay(&b, rep.Replay)
	}
	if rep.Cluster != nil {
		writeCluster(&b, rep.Cluster)
	}
	writeDetection(&b, rep)
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(b.String()), 0o644)
}
