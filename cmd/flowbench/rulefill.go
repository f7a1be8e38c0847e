package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// fillSQL inserts %[1]d synthetic flows into flows, row numbers from
// %[2]d, with time_received spread evenly over the window of %[4]d
// seconds that ends at unix time %[3]d. It runs on the embedded engine
// and on ClickHouse 18.16 alike (no numbers(offset, n), no
// randCanonical; addresses are written as IPv4-mapped FixedString(16),
// which the embedded engine's IPv6 columns take as they are).
//
// The mix: 3 tenants; 300 exporters (10.1.0.0/24...), half sampling 1:1
// and half 1:1000, NetFlow v9, IPFIX and sFlow; 8 input and 8 output
// interfaces each (2400 interfaces); 50000 destinations
// (100.64.0.0/10) with a log-uniform (Zipf-like) tail, the busiest taking
// about 9% of the flows; random sources; 70% TCP (flags: mostly
// ACK/PSH-ACK, 4% SYN-only), 25% UDP, 5% ICMP; Pareto packet counts
// (mean about 6) of 40 to 1500 bytes.
const fillSQL = `INSERT INTO flows (time_received, flow_start, flow_end, flow_duration_ms, tenant,
  exporter_address, exporter_name, protocol, sampling_rate, direction,
  in_if_index, in_if_name, in_if_speed_mbps, out_if_index, out_if_name, out_if_speed_mbps,
  src_address, dst_address, src_port, dst_port, ip_protocol, ip_version, tcp_flags, icmp_type,
  src_as, dst_as, bytes, packets)
SELECT
  toDateTime(%[3]d - (h %% %[4]d), 'UTC') AS t,
  toDateTime(%[3]d - (h %% %[4]d) - dur, 'UTC'),
  t,
  dur * 1000,
  ['t0', 't1', 't2'][x %% 3 + 1],
  IPv4ToIPv6(toUInt32(167837696 + x)),
  concat('rtr', toString(x)),
  ['netflow_v9', 'ipfix', 'sflow_v5'][intDiv(x, 2) %% 3 + 1],
  if(x %% 2 = 0, 1, 1000),
  'ingress',
  ifin, concat('xe-0/0/', toString(ifin)), 10000,
  ifout, concat('xe-0/1/', toString(ifout)), 10000,
  IPv4ToIPv6(toUInt32(bitAnd(g, 4294967295))),
  IPv4ToIPv6(toUInt32(1681915904 + dst)),
  toUInt16(1024 + bitShiftRight(g, 32) %% 64000),
  multiIf(proto = 6, [443, 80, 22, 25, 8080, 993, 3389, 5432][bitShiftRight(k, 8) %% 8 + 1],
          proto = 17, [53, 123, 443, 500, 4500, 5060, 1900, 33434][bitShiftRight(k, 8) %% 8 + 1], 0),
  proto, 4,
  if(proto = 6, multiIf(fl < 55, 24, fl < 85, 16, fl < 93, 27, fl < 97, 2, 17), 0),
  if(proto = 1, [0, 8, 3, 11][bitShiftRight(k, 16) %% 4 + 1], 0),
  64500 + x %% 50, 64600 + intDiv(dst, 4096),
  pk * (40 + bitShiftRight(k, 24) %% 1461),
  pk
FROM (
  SELECT
    number, h, g, k,
    toUInt32(bitShiftRight(h, 16) %% 300) AS x,
    toUInt32(1 + bitShiftRight(h, 32) %% 8) AS ifin,
    toUInt32(1 + dst %% 8) AS ifout,
    toUInt32(bitShiftRight(h, 48) %% 30) AS dur,
    toUInt32(least(49999, floor(exp((k %% 1000000) / 1000000 * log(50000))) - 1)) AS dst,
    toUInt8(multiIf(bitShiftRight(k, 20) %% 100 < 70, 6, bitShiftRight(k, 20) %% 100 < 95, 17, 1)) AS proto,
    bitShiftRight(k, 28) %% 100 AS fl,
    toUInt64(least(10000, floor(pow(((bitShiftRight(g, 40) %% 1000000) + 1) / 1000000, -1 / 1.2)))) AS pk
  FROM (
    SELECT number, intHash64(number + %[2]d) AS h, intHash64(h) AS g, intHash64(g + 1) AS k
    FROM system.numbers LIMIT %[1]d
  )
)`

// rollupSQL fills a rollup (%[1]s: flows_1m or flows_1h) as the
// materialized views would from the mix of fillSQL at %[2]g flows/s:
// one row per bucket (%[3]d buckets of %[4]d s ending at unix time
// %[5]d), exporter, input and output interface and IP protocol. Its size
// depends on these keys, not on the flow rate; the sums do.
const rollupSQL = `INSERT INTO %[1]s (time_received, tenant, exporter_address, exporter_name, protocol, direction, sampling_rate,
  in_if_index, in_if_name, in_if_speed_mbps, out_if_index, out_if_name, out_if_speed_mbps, ip_protocol, ip_version, src_as, dst_as,
  bytes, packets, flows)
SELECT
  toDateTime(intDiv(%[5]d, %[4]d) * %[4]d - b * %[4]d, 'UTC'),
  ['t0', 't1', 't2'][x %% 3 + 1],
  IPv4ToIPv6(toUInt32(167837696 + x)),
  concat('rtr', toString(x)),
  ['netflow_v9', 'ipfix', 'sflow_v5'][intDiv(x, 2) %% 3 + 1],
  'ingress',
  if(x %% 2 = 0, 1, 1000),
  ifin, concat('xe-0/0/', toString(ifin)), 10000,
  ifout, concat('xe-0/1/', toString(ifout)), 10000,
  proto, 4, 64500 + x %% 50, 64600,
  toUInt64(fl * 6 * 700), toUInt64(fl * 6), toUInt64(fl)
FROM (
  SELECT
    toUInt32(number %% %[3]d) AS b,
    toUInt32(intDiv(number, %[3]d) %% 300) AS x,
    toUInt32(1 + intDiv(number, %[3]d * 300) %% 8) AS ifin,
    toUInt32(1 + intDiv(number, %[3]d * 2400) %% 8) AS ifout,
    [6, 17, 1][intDiv(number, %[3]d * 19200) %% 3 + 1] AS proto,
    greatest(1, %[2]g * %[4]d / 57600 * [0.7, 0.25, 0.05][intDiv(number, %[3]d * 19200) %% 3 + 1] * 3) AS fl
  FROM system.numbers LIMIT %[6]d
)`

// countersSQL fills interface_counters: every interface of the 300
// exporters every 30 s over %[2]d seconds ending at unix time %[1]d.
const countersSQL = `INSERT INTO interface_counters (time, time_ms, tenant, exporter_address, if_index, in_octets, out_octets,
  interval_seconds, in_bps, out_bps, in_utilisation, out_utilisation, speed_mbps, valid, reset)
SELECT t, toUInt64(t) * 1000, ['t0', 't1', 't2'][x %% 3 + 1], IPv4ToIPv6(toUInt32(167837696 + x)), ifx,
  toUInt64(bps * 30 / 8 * (b + 1)), toUInt64(bps * 30 / 8 * (b + 1)), 30, toUInt64(bps), toUInt64(bps),
  bps / 1e10, bps / 1e10, 10000, 1, 0
FROM (
  SELECT toDateTime(%[1]d - b * 30, 'UTC') AS t, b, x, ifx, (1 + intHash64(number) %% 90) * 1e8 AS bps
  FROM (
    SELECT number, toUInt32(number %% intDiv(%[2]d, 30)) AS b, toUInt32(intDiv(number, intDiv(%[2]d, 30)) %% 300) AS x,
      toUInt32(1 + intDiv(number, intDiv(%[2]d, 30) * 300) %% 16) AS ifx
    FROM system.numbers LIMIT %[3]d
  )
)`

// arpSQL fills arp_observations: 250 neighbours behind each of the 300
// exporters, seen new 3 hours before unix time %[1]d and refreshed every
// hour since (the ARP rules look back hours, whatever the flow rate).
const arpSQL = `INSERT INTO arp_observations (time, time_ms, tenant, exporter_address, if_index, ip_address, mac, vendor, event)
SELECT toDateTime(%[1]d - 10800 + b * 3600 + j, 'UTC') AS t, toUInt64(t) * 1000, ['t0', 't1', 't2'][x %% 3 + 1],
  IPv4ToIPv6(toUInt32(167837696 + x)), 1 + n %% 8, IPv4ToIPv6(toUInt32(184549376 + x * 256 + n)),
  toUInt64(95637381120 + x * 256 + n), 'Xensource', if(b = 0, 'new', 'refresh')
FROM (
  SELECT toUInt32(number %% 4) AS b, toUInt32(intDiv(number, 4) %% 250) AS n, toUInt32(intDiv(number, 1000)) AS x,
    toUInt32(intHash64(number) %% 3600) AS j
  FROM system.numbers LIMIT 300000
)`

// filler inserts the synthetic flows in chunks, within a time budget,
// with the rollup views detached (their per-block aggregation makes an
// INSERT ... SELECT into flows about ten times slower on this engine);
// the rollups are filled directly (rollupSQL).
type filler struct {
	db       dbapi.DB
	end      time.Time
	window   time.Duration
	chunk    uint64
	parallel int
	budget   time.Duration
	inserted uint64
	spent    time.Duration
	last     time.Duration // duration of the last round of chunks
	// sql is the INSERT of a chunk, fillSQL's arguments; fillSQL when empty.
	sql string
}

// fill inserts until want rows are in flows; it stops early (false)
// when the next round of chunks would exceed the budget.
func (f *filler) fill(ctx context.Context, want uint64) (bool, error) {
	for f.inserted < want {
		if f.last > 0 && f.spent+f.last > f.budget {
			return false, nil
		}
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, f.parallel)
		var n uint64
		for i := range f.parallel {
			c := min(f.chunk, want-f.inserted-n)
			if c == 0 {
				break
			}
			sql := f.sql
			if sql == "" {
				sql = fillSQL
			}
			q := fmt.Sprintf(sql, c, f.inserted+n, f.end.Unix(), int(f.window.Seconds()))
			n += c
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = f.db.Exec(ctx, q) }()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return false, fmt.Errorf("filling flows: %w", err)
		}
		d := time.Since(start)
		f.spent += d
		f.last = time.Duration(float64(d) * float64(f.chunk*uint64(f.parallel)) / float64(n))
		f.inserted += n
		fmt.Fprintf(os.Stderr, "rules cost: %d rows in flows (%.0f rows/s)\n", f.inserted, float64(f.inserted)/f.spent.Seconds())
	}
	return true, nil
}

// fillOthers fills the rollups at rate, interface_counters and
// arp_observations, after emptying them.
func (f *filler) fillOthers(ctx context.Context, rate float64) error {
	end, secs := f.end.Unix(), int(f.window.Seconds())
	stmts := []string{"TRUNCATE TABLE flows_1m", "TRUNCATE TABLE flows_1h", "TRUNCATE TABLE interface_counters",
		"TRUNCATE TABLE arp_observations", fmt.Sprintf(arpSQL, end),
		fmt.Sprintf(rollupSQL, "flows_1m", rate, secs/60, 60, end, secs/60*57600),
		fmt.Sprintf(rollupSQL, "flows_1h", rate, secs/3600+1, 3600, end, (secs/3600+1)*57600),
		fmt.Sprintf(countersSQL, end, secs, secs/30*4800)}
	for _, q := range stmts {
		if err := f.db.Exec(ctx, q); err != nil {
			return fmt.Errorf("filling rollups and counters: %w", err)
		}
	}
	return nil
}

// detachViews detaches (true) or attaches the rollups' views.
func detachViews(ctx context.Context, db dbapi.DB, detach bool) error {
	verb := "ATTACH"
	if detach {
		verb = "DETACH"
	}
	for _, v := range []string{"flows_1m_mv", "flows_1h_mv"} {
		if err := db.Exec(ctx, verb+" TABLE "+v); err != nil {
			return err
		}
	}
	return nil
}

func (f *filler) rowsPerSecond() float64 {
	if f.spent <= 0 {
		return 0
	}
	return float64(f.inserted) / f.spent.Seconds()
}
