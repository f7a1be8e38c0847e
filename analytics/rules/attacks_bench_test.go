package rules

import (
	"context"
	"fmt"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkAttackRules times evaluations of each attack and scan rule,
// the first (which backfills the window) and a warm one (which reads one
// new slice), over a window holding N synthetic flows (FLOWHOUSE_ATTACK_BENCH_ROWS,
// comma-separated; default 1000000), on the embedded engine and on the
// server (FLOWHOUSE_ATTACK_BENCH_ENGINES: embedded,server). "floods" is
// one tick of the four flood rules sharing their slices; each flood rule
// alone reads them itself.
//
//	go test ./analytics/rules -run '^$' -bench AttackRules -benchtime 3x
func BenchmarkAttackRules(b *testing.B) {
	sizes := []int{1_000_000}
	if s := os.Getenv("FLOWHOUSE_ATTACK_BENCH_ROWS"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				b.Fatal(err)
			}
			sizes = append(sizes, n)
		}
	}
	engines := "embedded"
	if s := os.Getenv("FLOWHOUSE_ATTACK_BENCH_ENGINES"); s != "" {
		engines = s
	}
	for _, name := range strings.Split(engines, ",") {
		e := benchEngine(b, name)
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/rows=%d", name, n), func(b *testing.B) {
				e.Exec(b, "TRUNCATE TABLE flows")
				start := time.Now()
				e.Exec(b, syntheticFlows(e.Name, n))
				b.Logf("%s: %d rows inserted in %s", name, n, time.Since(start).Round(time.Millisecond))
				benchRules(b, e)
			})
		}
	}
}

func benchRules(b *testing.B, e engine) {
	c := DefaultConfig()
	eval := func(b *testing.B, s *scheduled, at time.Time) {
		if _, err := s.evaluate(evalContext{ctx: context.Background(), now: at, tenants: []string{"t1"}, db: e.Reader}); err != nil {
			b.Fatal(err)
		}
	}
	build := func(b *testing.B, k registration) *scheduled {
		s, err := k.build(&c.Builtin, Deps{})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	// first: a new evaluator backfills the window; warm: one that read
	// the window a tick ago reads the one new slice.
	for _, k := range []registration{Amplification, SYNFlood, UDPFlood, ICMPFlood, PortScan, HostScan} {
		b.Run(k.name()+"/first", func(b *testing.B) {
			var cpu cpuMeter
			for range b.N {
				floodShare.reset()
				s := build(b, k)
				cpu.start()
				eval(b, s, attackEval)
				cpu.stop()
			}
			cpu.report(b)
		})
		b.Run(k.name()+"/warm", func(b *testing.B) {
			var cpu cpuMeter
			for range b.N {
				b.StopTimer()
				floodShare.reset()
				s := build(b, k)
				eval(b, s, attackEval.Add(-DefaultSlice))
				b.StartTimer()
				cpu.start()
				eval(b, s, attackEval)
				cpu.stop()
			}
			cpu.report(b)
		})
	}
	// floods: one tick of the four flood rules sharing their slices, once
	// they learnt each other's demands.
	floods := func(b *testing.B, warm bool) {
		var ss []*scheduled
		for _, k := range []registration{Amplification, SYNFlood, UDPFlood, ICMPFlood} {
			ss = append(ss, build(b, k))
		}
		floodShare.reset()
		for _, s := range ss {
			eval(b, s, attackEval.Add(-time.Hour)) // learns the demands
		}
		b.ResetTimer()
		var cpu cpuMeter
		for range b.N {
			b.StopTimer()
			floodShare.clearStates()
			if warm {
				for _, s := range ss {
					eval(b, s, attackEval.Add(-DefaultSlice))
				}
			}
			b.StartTimer()
			cpu.start()
			for _, s := range ss {
				eval(b, s, attackEval)
			}
			cpu.stop()
		}
		cpu.report(b)
	}
	b.Run("floods/first", func(b *testing.B) { floods(b, false) })
	b.Run("floods/warm", func(b *testing.B) { floods(b, true) })
}

// syntheticFlows inserts n flows received in the minute before attackNow:
// 70% TCP (2% of it SYN-only), 25% UDP (a third from port 53/123/443),
// 5% ICMP; 50 k sources, 20 k destinations. They are inserted in the
// order they were received, as the batcher does: the table's key orders by
// minute, so within a minute the order of insertion stays, and a slice's
// rows are in few granules.
func syntheticFlows(engineName string, n int) string {
	addr := func(base uint32, expr string) string {
		v4 := fmt.Sprintf("IPv4ToIPv6(toUInt32(%d + %s))", base, expr)
		if engineName == "embedded" {
			return "toIPv6(IPv6NumToString(" + v4 + "))"
		}
		return v4
	}
	now := attackNow.Unix()
	return fmt.Sprintf(`INSERT INTO flows (time_received, flow_start, flow_end, tenant, sampling_rate,
    src_address, dst_address, src_port, dst_port, ip_protocol, ip_version, tcp_flags, bytes, packets)
SELECT toDateTime(%d - 1 - h %% 59, 'UTC') AS t, t, t, 't1', 1,
    %s, %s,
    toUInt16(if(p = 17 AND h %% 3 = 0, [53, 123, 443][intDiv(h %% 9, 3) + 1], 1024 + h %% 60000)),
    toUInt16(if(p = 6, [443, 80, 22, 25][h %% 4 + 1], 1024 + intDiv(h, 7) %% 60000)),
    p, 4, toUInt8(if(p = 6, if(h %% 50 = 0, 2, 27), 0)),
    toUInt64(40 + h %% 1400) * (1 + h %% 10), toUInt64(1 + h %% 10)
FROM (SELECT number, intHash32(number) AS h, toUInt8(multiIf(h %% 20 < 14, 6, h %% 20 < 19, 17, 1)) AS p FROM numbers(%d))
ORDER BY t`,
		now, addr(0xc6120000, "intHash32(number + 1) % 50000"), addr(0xc0000000, "intHash32(number + 2) % 20000"), n)
}

// benchEngine opens an engine for benchmarks (forEachEngine is for
// tests).
func benchEngine(b *testing.B, name string) engine {
	if name == "server" {
		return engine{enginetest.Server(b)}
	}
	return engine{enginetest.Embedded(b)}
}

// cpuMeter sums the CPU time of this process over the timed parts: on the
// embedded engine, which runs in the process, what the queries cost in
// CPU (on a server, only the client's share).
type cpuMeter struct {
	from  time.Duration
	total time.Duration
	n     int
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (c *cpuMeter) start() { c.from = processCPU() }
func (c *cpuMeter) stop()  { c.total += processCPU() - c.from; c.n++ }
func (c *cpuMeter) report(b *testing.B) {
	if c.n > 0 {
		b.ReportMetric(float64(c.total.Milliseconds())/float64(c.n), "cpu-ms/op")
	}
}
