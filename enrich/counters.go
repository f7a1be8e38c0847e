package enrich

import "github.com/flowhouse/flowhouse/flow"

// counterSample is an interface's octet counters at one time.
type counterSample struct {
	at      int64 // unix ms
	in, out uint64
}

// counterRate is what two samples give.
type counterRate struct {
	valid          bool    // a delta was computed
	reset          bool    // the counters restarted (agent restart or discontinuity)
	seconds        float64 // between the samples
	inBps, outBps  uint64
	inUtil, outUtl float32 // percent of the speed; 0 when the speed is unknown
}

// Sources of interface_counters rows, the source column.
const (
	sourceSNMP  = "snmp"
	sourceSFlow = "sflow"
)

// counterRow is one row of interface_counters; cur.at is its time.
type counterRow struct {
	tenant    string
	exporter  flow.Addr
	source    string
	ifIndex   uint32
	cur       counterSample
	speedMbps uint64
	rate      counterRate
	// sflow is the sample an sFlow row came from, for its other counters
	// (packets, errors, discards, Ethernet); zero for SNMP rows.
	sflow flow.CounterSample
}

// counterDelta is cur - prev for a counter of the given width in bits.
// A counter that went back is a wrap when the wrapped delta is at most
// maxDelta (what the interface could carry in the interval; 0: unknown,
// then only 32-bit counters are assumed to wrap), else a reset, for
// which ok is false.
func counterDelta(prev, cur uint64, bits uint, maxDelta uint64) (delta uint64, ok bool) {
	if cur >= prev {
		return cur - prev, true
	}
	var wrapped uint64
	if bits >= 64 {
		wrapped = (^uint64(0) - prev) + cur + 1
	} else {
		wrapped = (uint64(1)<<bits - prev) + cur
	}
	if maxDelta > 0 {
		return wrapped, wrapped <= maxDelta
	}
	if bits < 64 {
		return wrapped, true
	}
	return 0, false
}

// rateOf computes bits per second and utilisation between two samples of
// 64-bit (HC) counters on an interface of speedMbps.
func rateOf(prev, cur counterSample, speedMbps uint64) counterRate {
	dt := float64(cur.at-prev.at) / 1000
	if dt <= 0 {
		return counterRate{}
	}
	var maxDelta uint64
	if speedMbps > 0 {
		// 10% above line rate tolerates timing noise.
		maxDelta = uint64(float64(speedMbps) * 1e6 / 8 * dt * 1.1)
	}
	din, ok1 := counterDelta(prev.in, cur.in, 64, maxDelta)
	dout, ok2 := counterDelta(prev.out, cur.out, 64, maxDelta)
	if !ok1 || !ok2 {
		return counterRate{reset: true, seconds: dt}
	}
	r := counterRate{valid: true, seconds: dt, inBps: uint64(float64(din) * 8 / dt), outBps: uint64(float64(dout) * 8 / dt)}
	if speedMbps > 0 {
		r.inUtil = float32(float64(r.inBps) / (float64(speedMbps) * 1e6) * 100)
		r.outUtl = float32(float64(r.outBps) / (float64(speedMbps) * 1e6) * 100)
	}
	return r
}
