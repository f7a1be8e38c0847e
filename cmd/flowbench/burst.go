package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/flowgen"
	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/internal/slowlink"
)

// burstOptions: the burst stage offers twice what a slowed ClickHouse
// server takes, then normal load, and checks that the spool absorbs it.
type burstOptions struct {
	on             bool
	rate           float64       // offered in the burst, flows/s
	duration       time.Duration // of the burst
	normalDuration time.Duration // of the normal load after it, at rate/4
}

func (b *burstOptions) flags() {
	flag.BoolVar(&b.on, "burst", true, "run the burst stage: a ClickHouse server slowed to half the burst rate")
	flag.Float64Var(&b.rate, "burst-rate", 60000, "flows/s offered during the burst (the server is slowed to take about half)")
	flag.DurationVar(&b.duration, "burst-duration", 60*time.Second, "length of the burst")
	flag.DurationVar(&b.normalDuration, "burst-normal", 30*time.Second, "length of the normal load (burst-rate/4) after the burst")
}

func (b burstOptions) check() error {
	if b.on && (b.rate <= 0 || b.duration <= 0 || b.normalDuration < 0) {
		return errors.New("-burst-rate and -burst-duration must be positive, -burst-normal not negative")
	}
	return nil
}

// BurstResult is the burst stage's measurement.
type BurstResult struct {
	LinkBytesPerSec   int     `json:"link_bytes_per_second"`
	BytesPerRow       float64 `json:"link_bytes_per_row"` // measured unthrottled, protocol included
	BurstOffered      float64 `json:"burst_offered_flows_per_second"`
	BurstSeconds      float64 `json:"burst_seconds"`
	LiveRate          float64 `json:"burst_live_rows_per_second"` // inserted directly during the burst
	NormalOffered     float64 `json:"normal_offered_flows_per_second"`
	NormalSeconds     float64 `json:"normal_seconds"`
	Sent              uint64  `json:"flows_sent"`
	Stored            uint64  `json:"rows_stored"`
	Lost              int64   `json:"flows_lost"`
	Spilled           float64 `json:"rows_spilled_backpressure"`
	SpooledDown       float64 `json:"rows_spooled_database_down"`
	Replayed          float64 `json:"rows_replayed"`
	PeakPendingBytes  float64 `json:"peak_spool_bytes_pending"`
	DrainSeconds      float64 `json:"drain_seconds"` // after the last flow sent, until the spool was empty
	StoreDrops        float64 `json:"store_rows_dropped"`
	SpoolDrops        float64 `json:"spool_rows_dropped"`
	CollectorDrops    float64 `json:"collector_drops"`
	KernelDrops       uint64  `json:"kernel_udp_receive_buffer_errors"`
	SegmentsReplayed  float64 `json:"segments_replayed"`
	LiveBatches       float64 `json:"live_batches"`
	ReplayYields      float64 `json:"replay_yields"`
	SegmentsRemaining float64 `json:"segments_pending_at_end"`
}

// burstStage: flowhouse serve in front of a ClickHouse server it reaches
// through a throttled loopback link. A first load, unthrottled, measures
// what a row weighs on the link; the link is then set so that the server
// takes about half the burst rate, and the burst, the normal load and the
// drain are measured.
func burstStage(ctx context.Context, o options, protocols []flowgen.Protocol) (*BurstResult, error) {
	bo := o.burst
	srv, err := chtest.Start(ctx, chtest.Options{})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	// Unthrottled (for loopback) while calibrating.
	link, err := slowlink.New(srv.Addr(), 1<<30)
	if err != nil {
		return nil, err
	}
	defer link.Close()
	target := storeTarget{name: "server " + srv.Version() + " (slowed)", addr: link.Addr()}
	const database = "burst"
	fh, err := startServe(ctx, o, target, database, disableRulesEnv()...)
	if err != nil {
		return nil, err
	}
	defer fh.stop()
	r := &BurstResult{BurstOffered: bo.rate, NormalOffered: bo.rate / 4}
	run := func(rate float64, d time.Duration) error {
		n, err := offer(ctx, o, fh.udpPort, protocols, rate, d)
		r.Sent += n
		return err
	}
	// What a row weighs on the link, with the protocol's overhead: the
	// link's rate is then set from it to take half the burst rate.
	m0, err := scrape(fh.httpAddr)
	if err != nil {
		return r, err
	}
	passed0 := link.Passed()
	if err := run(bo.rate, 10*time.Second); err != nil {
		return r, err
	}
	m1, err := waitSpoolDrained(fh.httpAddr, r.Sent, nil)
	if err != nil {
		return r, fmt.Errorf("calibration: %w", err)
	}
	rows := m1["flowhouse_spool_rows_direct_total"] - m0["flowhouse_spool_rows_direct_total"]
	if rows <= 0 {
		return r, errors.New("calibration: no insert went through the link")
	}
	r.BytesPerRow = float64(link.Passed()-passed0) / rows
	link.SetRate(int(r.BytesPerRow * bo.rate / 2))
	r.LinkBytesPerSec = link.Rate()
	kernel0 := udpReceiveErrors()
	m2, _ := scrape(fh.httpAddr)
	t2 := time.Now()
	if err := run(bo.rate, bo.duration); err != nil {
		return r, err
	}
	r.BurstSeconds = time.Since(t2).Seconds()
	m3, _ := scrape(fh.httpAddr)
	r.LiveRate = (m3["flowhouse_spool_rows_direct_total"] - m2["flowhouse_spool_rows_direct_total"]) / r.BurstSeconds
	t3 := time.Now()
	if err := run(r.NormalOffered, bo.normalDuration); err != nil {
		return r, err
	}
	r.NormalSeconds = time.Since(t3).Seconds()
	sendEnd := time.Now()
	m, err := waitSpoolDrained(fh.httpAddr, r.Sent, &r.PeakPendingBytes)
	r.DrainSeconds = time.Since(sendEnd).Seconds()
	r.KernelDrops = udpReceiveErrors() - kernel0
	if m != nil {
		r.Spilled, r.Replayed = m[`flowhouse_spool_rows_spooled_total{reason="backpressure"}`], m["flowhouse_spool_rows_replayed_total"]
		r.SpooledDown = m[`flowhouse_spool_rows_spooled_total{reason="database_down"}`]
		r.StoreDrops, r.SpoolDrops = m["flowhouse_store_rows_dropped_total"], m["flowhouse_spool_rows_dropped_total"]
		r.CollectorDrops = m["flowhouse_collector_queue_drops_total"] + m["flowhouse_collector_drops_total"]
		r.SegmentsReplayed, r.LiveBatches = m["flowhouse_spool_segments_replayed_total"], m["flowhouse_spool_batches_direct_total"]
		r.ReplayYields, r.SegmentsRemaining = m["flowhouse_spool_replay_yields_total"], m["flowhouse_spool_segments_pending"]
	}
	fh.stop()
	if r.Stored, err = (storeTarget{addr: srv.Addr()}).countRows(ctx, database); err != nil {
		return r, err
	}
	r.Lost = int64(r.Sent) - int64(r.Stored)
	return r, err
}

// offer sends flowgen's load at rate for d to the collector on udpPort.
func offer(ctx context.Context, o options, udpPort int, protocols []flowgen.Protocol, rate float64, d time.Duration) (uint64, error) {
	if d <= 0 {
		return 0, nil
	}
	cfg := flowgen.DefaultConfig()
	cfg.Target = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(udpPort))
	cfg.Exporters, cfg.Protocols, cfg.Rate, cfg.Duration, cfg.Send = o.exporters, protocols, rate, d, true
	gen, err := flowgen.New(cfg)
	if err != nil {
		return 0, err
	}
	rep, err := gen.Run(ctx)
	if err != nil {
		return 0, err
	}
	return rep.Total.Flows, nil
}

// waitSpoolDrained waits until the spool is empty and every flow sent
// is inserted (directly or replayed), or until nothing moved for 30 s;
// it returns the last metrics.
func waitSpoolDrained(httpAddr string, sent uint64, peakPending *float64) (map[string]float64, error) {
	var last float64
	still := time.Now()
	for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		m, err := scrape(httpAddr)
		if err != nil {
			return nil, err
		}
		if peakPending != nil {
			*peakPending = max(*peakPending, m["flowhouse_spool_bytes_pending"])
		}
		in := m["flowhouse_spool_rows_direct_total"] + m["flowhouse_spool_rows_replayed_total"]
		if m["flowhouse_spool_segments_pending"] == 0 && in >= float64(sent) {
			return m, nil
		}
		if in != last {
			last, still = in, time.Now()
		} else if time.Since(still) > 30*time.Second {
			return m, fmt.Errorf("nothing inserted for 30 s: %.0f of %d flows in, %.0f segments pending", in, sent, m["flowhouse_spool_segments_pending"])
		}
	}
	return nil, errors.New("the spool did not drain in 10 minutes")
}

func writeBurst(b *strings.Builder, r *BurstResult) {
	fmt.Fprintf(b, "\n## Burst into a slowed ClickHouse server\n\n"+
		"flowhouse serve (spool on, defaults) in front of a ClickHouse server reached through a loopback proxy that passes %d bytes/s "+
		"from flowhouse to the server (%.0f bytes per row measured unthrottled, so the server takes about half the burst rate). "+
		"Burst: %.0f flows/s offered for %.0f s (the server took %.0f rows/s live meanwhile), then %.0f flows/s for %.0f s.\n\n",
		r.LinkBytesPerSec, r.BytesPerRow, r.BurstOffered, r.BurstSeconds, r.LiveRate, r.NormalOffered, r.NormalSeconds)
	b.WriteString("| sent | stored | lost | spilled (backpressure) | spooled (database down) | replayed | peak spool MiB | drain s | store drops | spool drops | collector drops | kernel drops | segments replayed / live batches | replay yields | segments left |\n" +
		"| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	fmt.Fprintf(b, "| %d | %d | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %d | %.0f / %.0f | %.0f | %.0f |\n",
		r.Sent, r.Stored, r.Lost, r.Spilled, r.SpooledDown, r.Replayed, r.PeakPendingBytes/(1<<20), r.DrainSeconds,
		r.StoreDrops, r.SpoolDrops, r.CollectorDrops, r.KernelDrops, r.SegmentsReplayed, r.LiveBatches, r.ReplayYields, r.SegmentsRemaining)
}

// burstStageRun runs the stage into rep when it is on.
func burstStageRun(ctx context.Context, o options, rep *Report, protocols []flowgen.Protocol) {
	if !o.burst.on {
		return
	}
	t := time.Now()
	r, err := burstStage(ctx, o, protocols)
	rep.Burst = r
	if err != nil {
		rep.failed("burst", err)
	}
	fmt.Fprintf(os.Stderr, "burst stage: %s\n", time.Since(t).Round(time.Second))
}
