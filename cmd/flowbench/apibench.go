package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/flowgen"
)

// apiDatabase is the database of the API stage.
const apiDatabase = "apibench"

// apiOptions are the flags of the API latency stage.
type apiOptions struct {
	on          bool
	engines     []string
	historyRows uint64
	alerts      int
	chunk       uint64
	parallel    int
	rate        float64
	requests    int
	warmup      int
	budget      time.Duration
	clients     []int
	deepPages   int
	settle      time.Duration
	// The seeding child process (apiseed.go).
	seedWorker string
	seedDir    string
	seedEnd    int64
}

func apiFlags(ao *apiOptions) func() error {
	var engines, clients string
	flag.BoolVar(&ao.on, "api", true, "measure the REST API's latency (alerts, traffic) on seeded data while ingesting")
	flag.StringVar(&engines, "api-engines", "embedded", "engines of the API stage: embedded, server")
	flag.Uint64Var(&ao.historyRows, "api-history-rows", 30_000_000, "synthetic flows seeded over the 25 h before the stage")
	flag.IntVar(&ao.alerts, "api-alerts", 100_000, "alerts seeded (with their history) over the 30 days before the stage")
	flag.Uint64Var(&ao.chunk, "api-seed-chunk", 5_000_000, "rows per INSERT ... SELECT of the seed")
	flag.IntVar(&ao.parallel, "api-seed-parallel", 2, "INSERT ... SELECT statements of the seed at once")
	flag.Float64Var(&ao.rate, "api-ingest-rate", 100_000, "flows/s flowgen offers while the API is measured")
	flag.IntVar(&ao.requests, "api-requests", 200, "requests of each client per measurement (fewer when -api-measure-budget runs out)")
	flag.IntVar(&ao.warmup, "api-warmup", 10, "requests before each endpoint's measurements")
	flag.DurationVar(&ao.budget, "api-measure-budget", 12*time.Second, "the most one measurement (one endpoint, one client count) may take")
	flag.StringVar(&clients, "api-clients", "1,4", "concurrent closed-loop clients of each measurement")
	flag.IntVar(&ao.deepPages, "api-deep-pages", 50, "pages followed (next_page_token) to the deep page measured")
	flag.DurationVar(&ao.settle, "api-ingest-settle", 10*time.Second, "ingest before the first measurement")
	flag.StringVar(&ao.seedWorker, "api-seed-worker", "", "internal: seed -api-seed-dir and write the seed's JSON to this file")
	flag.StringVar(&ao.seedDir, "api-seed-dir", "", "internal: the embedded data directory the seed worker fills")
	flag.Int64Var(&ao.seedEnd, "api-seed-end", 0, "internal: unix time the seeded history ends at")
	return func() error {
		ao.engines = strings.Split(engines, ",")
		ao.clients = nil
		for _, c := range strings.Split(clients, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(c))
			if err != nil || n < 1 {
				return fmt.Errorf("-api-clients: %q is not a positive number", c)
			}
			ao.clients = append(ao.clients, n)
		}
		switch {
		case ao.alerts < 1000:
			return errors.New("-api-alerts: at least 1000")
		case ao.requests < 1:
			return errors.New("-api-requests: at least 1")
		case ao.parallel < 1:
			return errors.New("-api-seed-parallel: at least 1")
		}
		return nil
	}
}

// APIEngine is the API stage on one engine.
type APIEngine struct {
	Engine string   `json:"engine"`
	Seed   *APISeed `json:"seed"`
	// Verify is the check that the API reads the seeded alerts as
	// alerts: a walk of the whole list, page_size=1000.
	Verify *AlertWalk `json:"verify"`
	// RateLimit is FLOWHOUSE_HTTP_RATE_LIMIT as the stage runs serve.
	RateLimit string `json:"http_rate_limit"`
	TokenRole string `json:"token"`
	Rules     string `json:"rules"`
	// Ingest is flowgen's load while the API was measured, and what
	// serve made of it.
	Ingest       *APIIngest    `json:"ingest"`
	Measurements []Measurement `json:"measurements"`
	Error        string        `json:"error,omitempty"`
}

// APIIngest is the ingest running under the measurements.
type APIIngest struct {
	Offered     float64 `json:"offered_flows_per_second"`
	Achieved    float64 `json:"achieved_flows_per_second"`
	Seconds     float64 `json:"seconds"`
	Sent        uint64  `json:"flows_sent"`
	Inserted    float64 `json:"rows_inserted"`
	LossRatio   float64 `json:"loss_ratio"`
	KernelDrops uint64  `json:"kernel_udp_receive_buffer_errors"`
	QueueDrops  float64 `json:"collector_queue_drops"`
	DecodeDrops float64 `json:"collector_decode_drops"`
	StoreDrops  float64 `json:"store_rows_dropped"`
	CPUCores    float64 `json:"flowhouse_cpu_cores"`
	PeakRSSMiB  float64 `json:"flowhouse_peak_rss_mib"`
	RuleEvals   float64 `json:"rule_evaluations"`
	RuleErrors  float64 `json:"rule_errors"`
}

// apiStage runs the stage on each engine; an engine that fails is
// recorded in its APIEngine and the next one runs.
func apiStage(ctx context.Context, o options, ao apiOptions, protocols []flowgen.Protocol) ([]APIEngine, error) {
	var out []APIEngine
	var errs []error
	for _, engine := range ao.engines {
		t := time.Now()
		res, err := apiEngine(ctx, o, ao, engine, protocols)
		if err != nil {
			res.Error = err.Error()
			errs = append(errs, fmt.Errorf("%s: %w", engine, err))
		}
		out = append(out, res)
		fmt.Fprintf(os.Stderr, "api stage on %s: %s\n", engine, time.Since(t).Round(time.Second))
	}
	return out, errors.Join(errs...)
}

// apiConfig is serve's configuration file of the stage: the tenants of
// the seeded rows (t0, t1, t2) and flowgen's exporters spread over them.
const apiConfig = `enrich:
  default_tenant: t0
  exporters:
    - {match: 127.0.1.2, tenant: t1}
    - {match: 127.0.1.3, tenant: t2}
    - {match: 127.0.1.5, tenant: t1}
    - {match: 127.0.1.6, tenant: t2}
`

func apiEngine(ctx context.Context, o options, ao apiOptions, engine string, protocols []flowgen.Protocol) (APIEngine, error) {
	res := APIEngine{Engine: engine, RateLimit: "0 (off)", TokenRole: "read, all tenants (flowhouse token create)", Rules: "built-in rules at their defaults"}
	dir, err := os.MkdirTemp("", "flowbench-api-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	cfgFile := filepath.Join(dir, "flowhouse.yaml")
	if err := os.WriteFile(cfgFile, []byte(apiConfig), 0o644); err != nil {
		return res, err
	}
	end := time.Now().UTC().Truncate(time.Second)
	target, stop, err := apiTarget(ctx, o, ao, engine, dir, end, &res)
	if err != nil {
		return res, err
	}
	defer stop()
	res.Engine = target.name
	target.rules = true
	target.args = []string{"--config", cfgFile}
	target.env = []string{"FLOWHOUSE_HTTP_RATE_LIMIT=0"}
	srv, err := startServe(ctx, o, target, apiDatabase, target.env...)
	if err != nil {
		return res, err
	}
	defer srv.stop()
	tok, err := createToken(ctx, o, target, srv)
	if err != nil {
		return res, err
	}
	c := newAPIClient(srv.httpAddr, tok)
	if res.Verify, err = walkAlerts(ctx, c, res.Seed); err != nil {
		return res, err
	}
	fmt.Fprintf(os.Stderr, "api: the list has %d alerts (%d seeded), walked in %.1f s\n", res.Verify.Alerts, res.Seed.Alerts, res.Verify.Seconds)
	err = underIngest(ctx, o, ao, srv, protocols, &res, func() error {
		res.Measurements, err = measureAPI(ctx, c, ao, srv.pid())
		return err
	})
	return res, err
}

// apiTarget seeds the engine and gives the target serve runs on.
func apiTarget(ctx context.Context, o options, ao apiOptions, engine, dir string, end time.Time, res *APIEngine) (storeTarget, func(), error) {
	switch engine {
	case "embedded":
		lib, err := filepath.Abs(o.library)
		if err != nil {
			return storeTarget{}, nil, err
		}
		// The data directory is a level down: the control socket is
		// created beside it, in the stage's own directory.
		data := filepath.Join(dir, "data")
		fmt.Fprintf(os.Stderr, "api: seeding %d flows and %d alerts (embedded)\n", ao.historyRows, ao.alerts)
		if res.Seed, err = seedEmbedded(ctx, o, ao, data, end); err != nil {
			return storeTarget{}, nil, err
		}
		return storeTarget{name: "embedded (chDB)", library: lib, path: data}, func() {}, nil
	case "server":
		return seedServer(ctx, ao, end, res)
	}
	return storeTarget{}, nil, fmt.Errorf("-api-engines: unknown engine %q", engine)
}

// createToken makes the stage's read token of all tenants with
// `flowhouse token create`, under serve's configuration: on the embedded
// engine it goes through serve's control socket.
func createToken(ctx context.Context, o options, target storeTarget, srv *served) (string, error) {
	args := append(append([]string(nil), target.args...), "token", "create", "--all-tenants", "--role", "read", "--name", "flowbench", "--json")
	cmd := exec.CommandContext(ctx, o.flowhouse, args...)
	cmd.Env = srv.cmd.Env
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return "", fmt.Errorf("flowhouse token create: %w", err)
	}
	var created struct {
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal(out, &created); err != nil || created.Secret == "" {
		return "", fmt.Errorf("flowhouse token create: no secret in %q (%v)", out, err)
	}
	return created.Secret, nil
}

// underIngest runs measure while flowgen offers ao.rate to serve, then
// records what serve made of the load.
func underIngest(ctx context.Context, o options, ao apiOptions, srv *served, protocols []flowgen.Protocol, res *APIEngine, measure func() error) error {
	cfg := flowgen.DefaultConfig()
	cfg.Target = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(srv.udpPort))
	cfg.Exporters, cfg.Protocols, cfg.Rate, cfg.Duration, cfg.Send = o.exporters, protocols, ao.rate, time.Hour, true
	gen, err := flowgen.New(cfg)
	if err != nil {
		return err
	}
	m0, err := scrape(srv.httpAddr)
	if err != nil {
		return err
	}
	genCtx, stopGen := context.WithCancel(ctx)
	defer stopGen()
	kernel0 := udpReceiveErrors()
	cpu0, _ := processCPU(srv.pid())
	start := time.Now()
	type result struct {
		r   *flowgen.Report
		err error
	}
	done := make(chan result, 1)
	go func() { r, err := gen.Run(genCtx); done <- result{r, err} }()
	select {
	case <-time.After(ao.settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	merr := measure()
	stopGen()
	g := <-done
	if g.err != nil {
		return errors.Join(merr, fmt.Errorf("flowgen: %w", g.err))
	}
	in := &APIIngest{Offered: ao.rate, Achieved: g.r.FlowsPerSecond, Sent: g.r.Total.Flows, Seconds: time.Since(start).Seconds()}
	cpu1, _ := processCPU(srv.pid())
	in.CPUCores = (cpu1 - cpu0) / in.Seconds
	_ = waitDrained(srv.httpAddr, uint64(float64(in.Sent)+m0["flowhouse_store_rows_inserted_total"]))
	in.KernelDrops = udpReceiveErrors() - kernel0
	in.PeakRSSMiB = peakRSSMiB(srv.pid())
	if m, err := scrape(srv.httpAddr); err == nil {
		d := func(k string) float64 { return m[k] - m0[k] }
		in.Inserted = d("flowhouse_store_rows_inserted_total")
		in.QueueDrops, in.DecodeDrops, in.StoreDrops = d("flowhouse_collector_queue_drops_total"), d("flowhouse_collector_drops_total"), d("flowhouse_store_rows_dropped_total")
		in.RuleEvals, in.RuleErrors = d("flowhouse_rule_evaluations_total"), d("flowhouse_rule_errors_total")
	}
	if in.Sent > 0 {
		in.LossRatio = (float64(in.Sent) - in.Inserted) / float64(in.Sent)
	}
	res.Ingest = in
	fmt.Fprintf(os.Stderr, "api: ingest %.0f/s achieved, %d sent, %.0f inserted (loss %.3f%%), serve %.2f cores\n",
		in.Achieved, in.Sent, in.Inserted, in.LossRatio*100, in.CPUCores)
	return merr
}
