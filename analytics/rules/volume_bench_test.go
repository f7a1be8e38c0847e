package rules

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/enginetest"
)

// benchEmbedded is the embedded engine, tables emptied.
func benchEmbedded(b *testing.B) engine {
	b.Helper()
	return engine{enginetest.Embedded(b, append(append([]string(nil), embeddedTables...), extraEmbeddedTables...)...)}
}

// insertBenchFlows writes n flows received in the minute before now: 100
// exporters of 100 interfaces (10 000), the flows of an exporter entering
// on any of its interfaces and leaving on one of 4 uplinks, to 200 000
// destinations, sampled 1 in 1000.
func insertBenchFlows(b *testing.B, e engine, now time.Time, n int) {
	b.Helper()
	from := now.Add(-time.Minute).Unix()
	e.Exec(b, fmt.Sprintf(`INSERT INTO flows (time_received, tenant, exporter_address, exporter_name, sampling_rate,
    in_if_index, out_if_index, in_if_name, out_if_name, src_address, dst_address, ip_protocol, ip_version, bytes, packets)
SELECT toDateTime(%d + intDiv(number * 60, %d), 'UTC'), 'a', %s, concat('edge-', toString(number %% 100)), 1000,
    1 + intHash32(number) %% 100, 1 + intHash32(number + 1) %% 4, 'ge-0/0/1', 'xe-0/0/0',
    %s, %s, 6, 4, 1500 * (1 + number %% 7), 1 + number %% 7
FROM numbers(%d)`, from, n,
		ipFromNumber(e, "3221225984 + number % 100"), // 192.0.2.0 + exporter
		ipFromNumber(e, "3405803776 + intHash32(number + 2) % 65536"),
		ipFromNumber(e, "3325256704 + intHash32(number + 3) % 200000"),
		n))
}

// ipFromNumber is the address column value of an IPv4 number expression.
func ipFromNumber(e engine, expr string) string {
	caps, err := dbapi.DetectCapabilities(context.Background(), e.Reader)
	if err != nil {
		panic(err)
	}
	mapped := "IPv4ToIPv6(toUInt32(" + expr + "))"
	if caps.IPv6 {
		return "toIPv6(" + mapped + ")"
	}
	return mapped
}

func insertBenchPolls(b *testing.B, e engine, now time.Time, interfaces int) {
	b.Helper()
	e.Exec(b, fmt.Sprintf(`INSERT INTO interface_counters (time, tenant, exporter_address, if_index, in_utilisation, out_utilisation, speed_mbps, valid)
SELECT toDateTime(%d - 60 * (number %% 5 + 1), 'UTC'), 'a', %s, 1 + intDiv(number, 5) %% 100,
    if(intDiv(number, 5) %% 50 = 0, 95, 20), 10, 10000, 1
FROM numbers(%d)`, now.Unix(), ipFromNumber(e, "3221225984 + intDiv(number, 500)"), interfaces*5))
}

// BenchmarkVolumeRules measures one evaluation of each rule on the
// embedded engine with n flows in the window (300 000 flows/s is 18M a
// minute): FLOWHOUSE_BENCH_FLOWS=1000000,6000000 chooses the sizes.
func BenchmarkVolumeRules(b *testing.B) {
	sizes := []int{1_000_000, 6_000_000}
	if s := os.Getenv("FLOWHOUSE_BENCH_FLOWS"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatal(err)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			e := benchEmbedded(b)
			now := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour + 20*time.Second)
			start := time.Now()
			insertBenchFlows(b, e, now, n)
			insertBenchPolls(b, e, now, 10_000)
			b.Logf("inserted %d flows in %s", n, time.Since(start).Round(time.Millisecond))
			benchRule(b, e, "volume_destination", VolumeDestination, now)
			benchRule(b, e, "volume_interface", VolumeInterface, now)
			b.Run("volume_destination_query", func(b *testing.B) {
				loop(b, func() {
					if _, err := (destinations{}).samples(context.Background(), e.Reader, []string{"a"}, now.Add(-time.Minute), now, 1e6, 100_000); err != nil {
						b.Fatal(err)
					}
				})
			})
			b.Run("interface_utilisation", func(b *testing.B) {
				ev, _ := InterfaceUtilisation.New(Deps{})
				env := testEnv(b, e, "interface_utilisation", now, InterfaceUtilisation.Defaults().Params, nil, "a")
				loop(b, func() {
					fs, err := ev.Evaluate(context.Background(), env)
					if err != nil || len(fs) != 200 {
						b.Fatalf("%d findings, %v", len(fs), err)
					}
				})
			})
		})
	}
}

// cpuTime is the CPU time of the process so far, the embedded engine's
// threads included: what a rule costs the machine, whatever the load of
// others on it.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs f b.N times and reports the process's CPU time per run.
func loop(b *testing.B, f func()) {
	b.Helper()
	cpu := cpuTime(b)
	for b.Loop() {
		f()
	}
	b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N)/1e6, "cpu-ms/op")
}

func benchRule(b *testing.B, e engine, name string, k Kind[VolumeParams], now time.Time) {
	b.Run(name, func(b *testing.B) {
		keys := 0
		// The evaluator of a rule that runs: its keys all have baselines.
		ev, _ := k.New(Deps{})
		p := k.Defaults().Params
		run := func(at time.Time) {
			if _, err := ev.Evaluate(context.Background(), testEnv(b, e, name, at, p, nil, "a")); err != nil {
				b.Fatal(err)
			}
		}
		run(now)
		r := ev.(*volumeRule)
		loop(b, func() {
			// The same window again, as if a minute had passed since the
			// evaluator learnt it (about 1 ms for 100 000 keys).
			r.lastTo = time.Time{}
			for _, bl := range r.state.keys {
				bl.updated = bl.updated.Add(-time.Minute)
			}
			run(now)
			keys = len(r.state.keys)
		})
		b.ReportMetric(float64(keys), "keys")
	})
}
