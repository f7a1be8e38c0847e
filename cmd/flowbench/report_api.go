package main

import (
	"fmt"
	"sort"
	"strings"
)

func writeAPI(b *strings.Builder, rep *Report) {
	b.WriteString("\n## API latency\n\n" +
		"flowhouse serve with the built-in rules at their defaults, flowgen offering load to its collector the whole time, " +
		"and closed-loop HTTP clients on the same machine (each sends its next request when the previous answer is read), " +
		"with a read token of all tenants made by `flowhouse token create` (through serve's control socket on the embedded engine). " +
		"The API's rate limit is off for the stage (FLOWHOUSE_HTTP_RATE_LIMIT=0; the default, 20 requests/s per token, would limit the clients, not the API). " +
		"Every client of a measurement sends its requests one after the other; a measurement stops early (capped) when its time budget is spent. " +
		"Latency is client-side, request sent to answer read. The peers measured elsewhere in this report have no such API: there is nothing to compare with.\n")
	for _, e := range rep.API {
		fmt.Fprintf(b, "\n### %s\n\n", e.Engine)
		if e.Error != "" {
			fmt.Fprintf(b, "**Failed**: %s\n\n", e.Error)
		}
		if s := e.Seed; s != nil {
			fmt.Fprintf(b, "Seeded before serve started (INSERT ... SELECT FROM system.numbers, the rules-cost stage's mix with 30 exporters of 2+2 interfaces: 3 tenants, 50k destinations with a log-uniform tail, sampling 1 and 1000): "+
				"**%d flows** over the 25 h ending at %s (%.0f s, %d active parts), the rollups filled with their views' own SELECT over flows, a tenant at a time (%.0f s): "+
				"**%d rows in flows_1m, %d in flows_1h**. "+
				"**%d alerts** of six built-in rules over 30 days (%v per tenant; %d active), %d rows in alerts after the engine's merges (ReplacingMergeTree keeps the newest version) and %d in alert_versions (every version of the last 3 days) (%.0f s).\n\n",
				s.FlowRows, s.End.Format("2006-01-02 15:04:05Z"), s.FlowsSeconds, s.FlowsParts, s.RollupSeconds, s.Flows1mRows, s.Flows1hRows,
				s.Alerts, sortedCounts(s.PerTenant), s.Active, s.AlertRows, s.VersionRows, s.AlertSeconds)
		}
		if w := e.Verify; w != nil {
			fmt.Fprintf(b, "Check: the whole list walked with page_size=1000 before the load: %d alerts in %d pages (%.1f s), %v per tenant, %v per status",
				w.Alerts, w.Pages, w.Seconds, sortedCounts(w.PerTenant), sortedCounts(w.PerStatus))
			if len(w.NotSeeded) > 0 {
				fmt.Fprintf(b, "; fired by the running rules since serve started: %v", sortedCounts(w.NotSeeded))
			}
			b.WriteString(".")
			if len(w.Problems) > 0 {
				fmt.Fprintf(b, " **Problems**: %s.", strings.Join(w.Problems, "; "))
			}
			b.WriteString("\n\n")
		}
		if in := e.Ingest; in != nil {
			fmt.Fprintf(b, "Ingest during the measurements: offered %.0f flows/s, achieved %.0f/s for %.0f s: %d sent, %.0f inserted (loss %.3f%%; kernel drops %d, queue drops %.0f, store drops %.0f); "+
				"serve used %.2f cores over the whole time (ingest, rules and API), peak RSS %.0f MiB; %.0f rule evaluations, %.0f errors.\n\n",
				in.Offered, in.Achieved, in.Seconds, in.Sent, in.Inserted, in.LossRatio*100, in.KernelDrops, in.QueueDrops, in.StoreDrops, in.CPUCores, in.PeakRSSMiB, in.RuleEvals, in.RuleErrors)
		}
		if len(e.Measurements) > 0 {
			b.WriteString("| request | table | clients | requests | status | p50 ms | p90 ms | p99 ms | max ms | requests/s | mean bytes | serve CPU (cores) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
			for _, m := range e.Measurements {
				if m.Error != "" {
					fmt.Fprintf(b, "| %s | | | | **failed**: %s | | | | | | | |\n", m.Name, m.Error)
					continue
				}
				n := fmt.Sprint(m.Requests)
				if m.Capped {
					n += " (capped)"
				}
				fmt.Fprintf(b, "| %s | %s | %d | %s | %s | %.0f | %.0f | %.0f | %.0f | %.1f | %.0f | %.2f |\n",
					m.Name, m.Source, m.Clients, n, statusText(m), m.P50Ms, m.P90Ms, m.P99Ms, m.MaxMs, m.RPS, m.Bytes, m.CPUCores)
			}
		}
	}
}

func statusText(m Measurement) string {
	s := sortedCounts(m.Status)
	if m.Errors > 0 {
		s += fmt.Sprintf(", %d errors", m.Errors)
	}
	return s
}

// sortedCounts writes a map of counts as "a 1, b 2", keys sorted.
func sortedCounts[N int | uint64](m map[string]N) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
