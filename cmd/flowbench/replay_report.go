package main

import (
	"fmt"
	"strings"
)

// writeReplay writes the replay stage: the method, then a table per
// density with the ratios to flowhouse embedded at the same step.
func writeReplay(b *strings.Builder, r *ReplayResult) {
	fmt.Fprintf(b, "\n## Replay of a real exporter's capture, side by side\n\n")
	fmt.Fprintf(b, "Capture `%s` (export version %d, %d data records, %.1f records per datagram as exported) is replayed by `flowgen/replay` "+
		"from %d exporters (127.0.0.11 up, one socket each), its records re-packed N to a datagram with the capture's templates "+
		"(sent first, again every 1000 datagrams or minute), each exporter numbering its own datagrams, for %.0f s per step, "+
		"looping the capture. Collectors: flowhouse with the embedded engine (chDB, in-process), flowhouse with ClickHouse %s, "+
		"goflow2 %s (`-format json`, file transport to a file), nfcapd (%s, binary files).\n\n",
		r.Capture, r.Version, r.CaptureRecords, r.CaptureDensity, r.Exporters, r.StepSeconds, r.ClickHouse, r.Goflow2, r.Nfcapd)
	b.WriteString("Sent = data records the replayer sent (template and options datagrams not counted). Every collector runs one process per step. " +
		"Delivered: flowhouse, the rows in the step's database (or embedded data directory) of its own once serve has stopped (it inserts what it holds before it exits); " +
		"goflow2, the lines of its JSON file (one per flow); nfcapd, `nfdump -R DIR -I` on its files after it stopped. " +
		"CPU = user+system seconds of the collector's process from the first datagram on (/proc/PID/stat; flowhouse: to its exit, from its rusage), per million flows sent and delivered: " +
		"for embedded that includes the engine, which runs in flowhouse's process; for server it is flowhouse alone, the ClickHouse server's own CPU is its own column. " +
		"Peak RSS = VmHWM (flowhouse: its rusage maxrss). Kernel drops = UDP RcvbufErrors of the whole machine during the step (all collectors at their default socket buffers). " +
		"Delivery is waited for until it stops moving for 1 s (flowhouse: and its metrics show nothing on the way: no datagram queued, every decoded flow inserted or dropped, " +
		"the spool where backpressure spills rows empty; at most 30 s, then it is stopped; rows replayed from the spool count as inserted); goflow2 and nfcapd get at most 3 s after the last datagram " +
		"(goflow2 queues what it reads in memory and decodes far slower than the high steps offer; it is then killed, and what it has not written is not delivered). " +
		"Ratios are to flowhouse embedded at the same density and rate (CPU per flow sent; RSS). The replayer shares the 2 CPUs with the collector: " +
		"achieved is what it managed to send.\n")
	if r.WallSeconds > 0 {
		fmt.Fprintf(b, "\nStage wall time: %.0f s.\n", r.WallSeconds)
	}
	var densities []int
	for _, s := range r.Steps {
		if !containsInt(densities, s.Density) {
			densities = append(densities, s.Density)
		}
	}
	for _, d := range densities {
		fmt.Fprintf(b, "\n### %d records per datagram\n\n", d)
		b.WriteString("| collector | offered/s | achieved/s | sent | delivered | delivered % | kernel drops | CPU s / M sent | CPU s / M delivered | ClickHouse server CPU s / M | peak RSS MiB | CPU/flow vs flowhouse | RSS vs flowhouse |\n")
		b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, s := range r.Steps {
			if s.Density != d {
				continue
			}
			writeReplayRow(b, r, s)
		}
	}
}

func writeReplayRow(b *strings.Builder, r *ReplayResult, s ReplayStep) {
	server := ""
	if s.ServerCPUSeconds > 0 {
		server = fmt.Sprintf("%.2f", cpuPerMillion(s.ServerCPUSeconds, s.Sent))
	}
	cpuRatio, rssRatio := "", ""
	if ref, ok := r.reference(s); ok && s.Collector != "embedded" {
		if c := cpuPerMillion(ref.CPUSeconds, ref.Sent); c > 0 {
			cpuRatio = fmt.Sprintf("%.2fx", cpuPerMillion(s.CPUSeconds, s.Sent)/c)
		}
		if ref.PeakRSSMiB > 0 {
			rssRatio = fmt.Sprintf("%.2fx", s.PeakRSSMiB/ref.PeakRSSMiB)
		}
	}
	name := s.Collector
	switch name {
	case "embedded":
		name = "flowhouse embedded"
	case "server":
		name = "flowhouse + ClickHouse server"
	}
	if s.Error != "" {
		name += " (error: " + strings.ReplaceAll(s.Error, "|", "/") + ")"
	}
	fmt.Fprintf(b, "| %s | %.0f | %.0f | %d | %d | %.2f%% | %d | %.2f | %.2f | %s | %.0f | %s | %s |\n",
		name, s.Offered, s.Achieved, s.Sent, s.Delivered, s.deliveredPct(), s.KernelDrops, cpuPerMillion(s.CPUSeconds, s.Sent), cpuPerMillion(s.CPUSeconds, s.Delivered),
		server, s.PeakRSSMiB, cpuRatio, rssRatio)
}

// reference is flowhouse embedded's step at s's density and rate.
func (r *ReplayResult) reference(s ReplayStep) (ReplayStep, bool) {
	for _, x := range r.Steps {
		if x.Collector == "embedded" && x.Density == s.Density && x.Offered == s.Offered {
			return x, true
		}
	}
	return ReplayStep{}, false
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
