package trafficapi

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/apitest"
	"github.com/flowhouse/flowhouse/internal/enginetest"
)

// hour is the fixtures' hour: whole, recent enough for every retention.
func hour() time.Time { return time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour) }

// fixture is tenant a's traffic in the hour h, and tenant b's on an
// exporter with the same address (MSP customers reuse address space).
// Scaled (bytes*rate, packets*rate):
//
//	f1 +10s   edge1 if1 10.0.0.1:40000 -> 198.51.100.1:443 tcp   100000 B 1000 p
//	f2 +70s   edge1 if1 10.0.0.2:53 -> 198.51.100.2:53000 udp      5000 B   50 p
//	f3 +65s   edge1 if3 10.0.0.1:40001 -> 198.51.100.1:443 tcp     2000 B    4 p
//	f4 +3599s edge2 if1 2001:db8::1 -> 2001:db8:1::1 icmpv6      300000 B 3000 p (egress)
//	g1 +20s   b's 192.0.2.1 10.0.0.1 -> 198.51.100.1:443 tcp    1000000 B 1000 p
func fixture(h time.Time) []flow.Flow {
	edge1 := fl{tenant: "a", exp: "192.0.2.1", expName: "edge1", inIf: 1, outIf: 2, inName: "xe-0/0/1", dir: flow.DirIngress}
	f1, f2, f3 := edge1, edge1, edge1
	f1.at, f1.src, f1.dst, f1.sport, f1.dport, f1.proto = h.Add(10*time.Second), "10.0.0.1", "198.51.100.1", 40000, 443, 6
	f1.srcAS, f1.dstAS, f1.bytes, f1.packets, f1.rate = 64500, 64501, 1000, 10, 100
	f2.at, f2.src, f2.dst, f2.sport, f2.dport, f2.proto = h.Add(70*time.Second), "10.0.0.2", "198.51.100.2", 53, 53000, 17
	f2.srcAS, f2.dstAS, f2.bytes, f2.packets, f2.rate = 64503, 64502, 500, 5, 10
	f3.at, f3.src, f3.dst, f3.sport, f3.dport, f3.proto = h.Add(65*time.Second), "10.0.0.1", "198.51.100.1", 40001, 443, 6
	f3.srcAS, f3.dstAS, f3.bytes, f3.packets, f3.rate, f3.inIf, f3.inName = 64500, 64501, 2000, 4, 1, 3, "xe-0/0/3"
	f4 := fl{at: h.Add(3599 * time.Second), tenant: "a", exp: "192.0.2.2", expName: "edge2", inIf: 1, outIf: 5, inName: "ge-0/0/1",
		src: "2001:db8::1", dst: "2001:db8:1::1", proto: 58, dstAS: 64510, bytes: 300, packets: 3, rate: 1000, dir: flow.DirEgress}
	g1 := fl{at: h.Add(20 * time.Second), tenant: "b", exp: "192.0.2.1", expName: "b-edge", inIf: 1, outIf: 2, inName: "eth0",
		src: "10.0.0.1", dst: "198.51.100.1", sport: 40000, dport: 443, proto: 6, bytes: 1_000_000, packets: 1000, rate: 1}
	return flows(f1, f2, f3, f4, g1)
}

// want is an expected row: its label and scaled sums.
type want struct {
	label                  string
	bytes, packets, nflows uint64
}

func rangeQ(since, until time.Time) string {
	return fmt.Sprintf("since=%d&until=%s", since.Unix(), url.QueryEscape(until.Format(time.RFC3339)))
}

func checkTotals(t *testing.T, what string, got Totals, w want, seconds float64) {
	t.Helper()
	if got.Bytes != w.bytes || got.Packets != w.packets || got.Flows != w.nflows {
		t.Errorf("%s: %d B %d p %d flows, want %d B %d p %d flows", what, got.Bytes, got.Packets, got.Flows, w.bytes, w.packets, w.nflows)
	}
	if !near(got.BPS, float64(w.bytes)*8/seconds) || !near(got.PPS, float64(w.packets)/seconds) {
		t.Errorf("%s: %g bit/s %g pps, want %g and %g", what, got.BPS, got.PPS, float64(w.bytes)*8/seconds, float64(w.packets)/seconds)
	}
}

// topCase is a top request on the fixture and its expected answer.
type topCase struct {
	name, query, source string
	seconds             float64
	rows                []want
	total               want
}

// topCases are tenant a's answers over the fixture's hour h.
func topCases(h time.Time) []topCase {
	hr := rangeQ(h, h.Add(time.Hour))
	a := want{"", 407000, 4054, 4}
	return []topCase{
		{"by exporter, whole hour", "by=exporter&" + hr, "flows_1h", 3600,
			[]want{{"edge2", 300000, 3000, 1}, {"edge1", 107000, 1054, 3}}, a},
		{"by destination", "by=dst_address&" + hr, "flows", 3600,
			[]want{{"2001:db8:1::1", 300000, 3000, 1}, {"198.51.100.1", 102000, 1004, 2}, {"198.51.100.2", 5000, 50, 1}}, a},
		{"by protocol, by packets", "by=protocol&order=packets&" + hr, "flows_1h", 3600,
			[]want{{"icmpv6", 300000, 3000, 1}, {"tcp", 102000, 1004, 2}, {"udp", 5000, 50, 1}}, a},
		{"by flows", "by=exporter&order=flows&" + hr, "flows_1h", 3600,
			[]want{{"edge1", 107000, 1054, 3}, {"edge2", 300000, 3000, 1}}, a},
		{"by input interface", "by=in_interface&" + hr, "flows_1h", 3600,
			[]want{{"edge2 ge-0/0/1", 300000, 3000, 1}, {"edge1 xe-0/0/1", 105000, 1050, 2}, {"edge1 xe-0/0/3", 2000, 4, 1}}, a},
		{"by source port, limit 2", "by=src_port&limit=2&" + hr, "flows", 3600,
			[]want{{"0", 300000, 3000, 1}, {"40000", 100000, 1000, 1}}, a},
		{"by destination AS", "by=dst_as&" + hr, "flows_1h", 3600,
			[]want{{"AS64510", 300000, 3000, 1}, {"AS64501", 102000, 1004, 2}, {"AS64502", 5000, 50, 1}}, a},
		{"whole minutes read flows_1m", "by=exporter&" + rangeQ(h, h.Add(2*time.Minute)), "flows_1m", 120,
			[]want{{"edge1", 107000, 1054, 3}}, want{"", 107000, 1054, 3}},
		{"a range off the minute reads flows", "by=exporter&" + rangeQ(h.Add(5*time.Second), h.Add(15*time.Minute)), "flows", 895,
			[]want{{"edge1", 107000, 1054, 3}}, want{"", 107000, 1054, 3}},
		{"protocol filter", "by=dst_address&protocol=tcp&" + hr, "flows", 3600,
			[]want{{"198.51.100.1", 102000, 1004, 2}}, want{"", 102000, 1004, 2}},
		{"protocols by name and number", "by=exporter&protocol=udp,58&" + hr, "flows_1h", 3600,
			[]want{{"edge2", 300000, 3000, 1}, {"edge1", 5000, 50, 1}}, want{"", 305000, 3050, 2}},
		{"port filter reads raw flows", "by=exporter&dst_port=443&" + hr, "flows", 3600,
			[]want{{"edge1", 102000, 1004, 2}}, want{"", 102000, 1004, 2}},
		{"prefix filter", "by=exporter&address=10.0.0.0/30&" + hr, "flows", 3600,
			[]want{{"edge1", 107000, 1054, 3}}, want{"", 107000, 1054, 3}},
		{"IPv6 prefix filter", "by=src_address&dst_address=2001:db8:1::/48&" + hr, "flows", 3600,
			[]want{{"2001:db8::1", 300000, 3000, 1}}, want{"", 300000, 3000, 1}},
		{"a neighbouring IPv6 prefix", "by=src_address&dst_address=2001:db8::/48&" + hr, "flows", 3600, nil, want{}},
		{"one address", "by=dst_port&src_address=10.0.0.2&" + hr, "flows", 3600,
			[]want{{"53000", 5000, 50, 1}}, want{"", 5000, 50, 1}},
		{"direction", "by=exporter&direction=egress&" + hr, "flows_1h", 3600,
			[]want{{"edge2", 300000, 3000, 1}}, want{"", 300000, 3000, 1}},
		{"exporter and interface", "by=out_interface&exporter=192.0.2.2&in_if_index=1&" + hr, "flows_1h", 3600,
			[]want{{"edge2 ifIndex 5", 300000, 3000, 1}}, want{"", 300000, 3000, 1}},
		{"IP version and AS", "by=protocol&ip_version=4&src_as=64500&" + hr, "flows_1h", 3600,
			[]want{{"tcp", 102000, 1004, 2}}, want{"", 102000, 1004, 2}},
		{"nothing matches", "by=exporter&src_port=9&" + hr, "flows", 3600, nil, want{}},
	}
}

func TestTopExactNumbers(t *testing.T) {
	h := hour()
	hr := rangeQ(h, h.Add(time.Hour))
	tests := topCases(h)
	enginetest.Each(t, tables, func(t *testing.T, e enginetest.Engine) {
		insert(t, e, fixture(h))
		c := serve(t, DefaultConfig(), Deps{Reader: e.Reader}).WithToken(apitest.ReadA)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := c.Get("/api/v1/traffic/top?" + tt.query)
				if r.Status != 200 {
					t.Fatalf("%d %s", r.Status, r.Body)
				}
				var ans TopAnswer
				r.JSON(t, &ans)
				if ans.Source != tt.source {
					t.Errorf("source %s, want %s", ans.Source, tt.source)
				}
				if len(ans.Rows) != len(tt.rows) {
					t.Fatalf("%d rows, want %d: %s", len(ans.Rows), len(tt.rows), r.Body)
				}
				for i, w := range tt.rows {
					got := ans.Rows[i]
					if got.Label != w.label {
						t.Errorf("row %d: %q, want %q", i, got.Label, w.label)
					}
					checkTotals(t, "row "+w.label, got.Totals, w, tt.seconds)
					share := float64(ans.Rows[i].metric(ans.Order)) / float64(ans.Total.metric(ans.Order))
					if !near(got.Share, share) {
						t.Errorf("row %d: share %g, want %g", i, got.Share, share)
					}
				}
				checkTotals(t, "total", ans.Total, tt.total, tt.seconds)
			})
		}
		t.Run("keys", func(t *testing.T) {
			var ans TopAnswer
			c.Get("/api/v1/traffic/top?by=in_interface&limit=1&"+hr).JSON(t, &ans)
			k := ans.Rows[0].Key
			if k["tenant"] != "a" || k["exporter_address"] != "192.0.2.2" || k["exporter_name"] != "edge2" ||
				k["if_index"] != float64(1) || k["if_name"] != "ge-0/0/1" || k["if_description"] != "" {
				t.Errorf("interface key %v", k)
			}
			ans = TopAnswer{}
			c.Get("/api/v1/traffic/top?by=protocol&limit=1&"+hr).JSON(t, &ans)
			if k := ans.Rows[0].Key; k["ip_protocol"] != float64(58) || k["protocol_name"] != "icmpv6" || len(k) != 2 {
				t.Errorf("protocol key %v", k)
			}
			ans = TopAnswer{}
			c.Get("/api/v1/traffic/top?by=src_address&protocol=udp&"+hr).JSON(t, &ans)
			if k := ans.Rows[0].Key; k["address"] != "10.0.0.2" || k["tenant"] != "a" {
				t.Errorf("address key %v (IPv4 shown unmapped)", k)
			}
		})
	})
}

// series asks for a series and checks its source, buckets and rates.
func getSeries(t *testing.T, c *apitest.Client, query string) SeriesAnswer {
	t.Helper()
	r := c.Get("/api/v1/traffic/series?" + query)
	if r.Status != 200 {
		t.Fatalf("%s: %d %s", query, r.Status, r.Body)
	}
	var ans SeriesAnswer
	r.JSON(t, &ans)
	return ans
}

// bucketRates are bytes and packets per bucket turned into rates.
func checkBuckets(t *testing.T, what string, s Series, step float64, bytes, packets map[int]uint64, n int) {
	t.Helper()
	if len(s.BPS) != n || len(s.PPS) != n {
		t.Fatalf("%s: %d and %d points, want %d", what, len(s.BPS), len(s.PPS), n)
	}
	for i := range n {
		if wb, wp := float64(bytes[i])*8/step, float64(packets[i])/step; !near(s.BPS[i], wb) || !near(s.PPS[i], wp) {
			t.Errorf("%s: bucket %d: %g bit/s %g pps, want %g and %g", what, i, s.BPS[i], s.PPS[i], wb, wp)
		}
	}
}

func TestSeriesExactBuckets(t *testing.T) {
	h := hour()
	enginetest.Each(t, tables, func(t *testing.T, e enginetest.Engine) {
		insert(t, e, fixture(h))
		c := serve(t, DefaultConfig(), Deps{Reader: e.Reader}).WithToken(apitest.ReadA)

		t.Run("minutes", func(t *testing.T) {
			ans := getSeries(t, c, "step=1m&"+rangeQ(h, h.Add(5*time.Minute)))
			if ans.Source != "flows_1m" || ans.Step != 60 || len(ans.Times) != 5 || !ans.Times[1].Equal(h.Add(time.Minute)) {
				t.Fatalf("source %s step %d times %v", ans.Source, ans.Step, ans.Times)
			}
			if len(ans.Series) != 1 || ans.Series[0].Label != "total" || ans.Series[0].Key != nil {
				t.Fatalf("series %+v", ans.Series)
			}
			checkBuckets(t, "total", ans.Series[0], 60, map[int]uint64{0: 100000, 1: 7000}, map[int]uint64{0: 1000, 1: 54}, 5)
			checkTotals(t, "total", ans.Total, want{"", 107000, 1054, 3}, 300)
		})
		t.Run("ten seconds read raw flows", func(t *testing.T) {
			ans := getSeries(t, c, "step=10s&"+rangeQ(h, h.Add(2*time.Minute)))
			if ans.Source != "flows" || len(ans.Times) != 12 {
				t.Fatalf("source %s, %d times", ans.Source, len(ans.Times))
			}
			checkBuckets(t, "total", ans.Series[0], 10, map[int]uint64{1: 100000, 6: 2000, 7: 5000}, map[int]uint64{1: 1000, 6: 4, 7: 50}, 12)
		})
		t.Run("one hour bucket", func(t *testing.T) {
			ans := getSeries(t, c, "step=1h&"+rangeQ(h, h.Add(time.Hour)))
			if ans.Source != "flows_1h" {
				t.Errorf("source %s", ans.Source)
			}
			checkBuckets(t, "total", ans.Series[0], 3600, map[int]uint64{0: 407000}, map[int]uint64{0: 4054}, 1)
		})
		t.Run("a range off the step is widened to whole steps", func(t *testing.T) {
			ans := getSeries(t, c, "step=1m&"+rangeQ(h.Add(30*time.Second), h.Add(90*time.Second)))
			if !ans.Since.Equal(h) || !ans.Until.Equal(h.Add(2*time.Minute)) || ans.Source != "flows_1m" {
				t.Errorf("since %s until %s source %s, want %s..%s from flows_1m", ans.Since, ans.Until, ans.Source, h, h.Add(2*time.Minute))
			}
		})
		t.Run("split by protocol, top 1 and other", func(t *testing.T) {
			ans := getSeries(t, c, "step=5m&by=protocol&limit=1&"+rangeQ(h, h.Add(time.Hour)))
			if ans.Source != "flows_1m" || ans.By != "protocol" || len(ans.Series) != 2 {
				t.Fatalf("source %s by %s, %d series", ans.Source, ans.By, len(ans.Series))
			}
			icmp, other := ans.Series[0], ans.Series[1]
			if icmp.Label != "icmpv6" || icmp.Other || icmp.Key["ip_protocol"] != float64(58) || !other.Other || other.Label != "other" {
				t.Errorf("series %q %v, %q %v", icmp.Label, icmp.Key, other.Label, other.Other)
			}
			checkBuckets(t, "icmpv6", icmp, 300, map[int]uint64{11: 300000}, map[int]uint64{11: 3000}, 12)
			checkBuckets(t, "other", other, 300, map[int]uint64{0: 107000}, map[int]uint64{0: 1054}, 12)
			checkTotals(t, "icmpv6", icmp.Total, want{"", 300000, 3000, 1}, 3600)
			checkTotals(t, "other", other.Total, want{"", 107000, 1054, 3}, 3600)
			checkTotals(t, "total", ans.Total, want{"", 407000, 4054, 4}, 3600)
		})
		t.Run("split by destination, raw", func(t *testing.T) {
			ans := getSeries(t, c, "step=1m&by=dst_address&limit=2&"+rangeQ(h, h.Add(5*time.Minute)))
			if ans.Source != "flows" || len(ans.Series) != 3 {
				t.Fatalf("source %s, %d series", ans.Source, len(ans.Series))
			}
			if ans.Series[0].Label != "198.51.100.1" || ans.Series[1].Label != "198.51.100.2" {
				t.Errorf("series %q, %q", ans.Series[0].Label, ans.Series[1].Label)
			}
			checkBuckets(t, "198.51.100.1", ans.Series[0], 60, map[int]uint64{0: 100000, 1: 2000}, map[int]uint64{0: 1000, 1: 4}, 5)
			checkBuckets(t, "198.51.100.2", ans.Series[1], 60, map[int]uint64{1: 5000}, map[int]uint64{1: 50}, 5)
			checkBuckets(t, "other", ans.Series[2], 60, nil, nil, 5)
		})
		t.Run("default step", func(t *testing.T) {
			ans := getSeries(t, c, rangeQ(h, h.Add(time.Hour)))
			if ans.Step != 30 || len(ans.Times) != 120 || ans.Source != "flows" {
				t.Errorf("default step over 1h: %ds, %d points from %s; want 30s (at most 300 points), 120, flows", ans.Step, len(ans.Times), ans.Source)
			}
		})
	})
}

// TestRollupsMatchRaw stores many flows with mixed sampling rates and
// reads the same range from each table: every one gives the sums computed
// here from the flows themselves.
func TestRollupsMatchRaw(t *testing.T) {
	h := hour()
	var fs []flow.Flow
	wantProto := map[uint64]Totals{}
	var all Totals
	rates := []uint32{1, 10, 100, 512, 1000}
	protos := []uint8{6, 17, 1, 47}
	for i := range 3000 {
		f := fl{at: h.Add(time.Duration(i*1237%3600) * time.Second), tenant: []string{"a", "b"}[i%2],
			exp: fmt.Sprintf("192.0.2.%d", i%3+1), inIf: uint32(i % 5), outIf: uint32(i % 7), src: fmt.Sprintf("10.0.%d.%d", i%4, i%250),
			dst: "198.51.100.7", sport: uint16(1024 + i), dport: 443, proto: protos[i%4], bytes: uint64(40 + i*7%1460), packets: uint64(1 + i%9),
			rate: rates[i*7%5]}
		fs = append(fs, f.flow())
		tot := Totals{Bytes: f.bytes * uint64(f.rate), Packets: f.packets * uint64(f.rate), Flows: 1}
		p := wantProto[uint64(f.proto)]
		p.add(tot)
		wantProto[uint64(f.proto)] = p
		all.add(tot)
	}
	enginetest.Each(t, tables, func(t *testing.T, e enginetest.Engine) {
		insert(t, e, fs)
		minutesOnly := DefaultConfig()
		minutesOnly.MaxRange.Flows1h = 30 * time.Minute // refuses the hour: flows_1m answers
		clients := map[string]*apitest.Client{
			"flows_1h": serve(t, DefaultConfig(), Deps{Reader: e.Reader}).WithToken(apitest.ReadAll),
			"flows_1m": serve(t, minutesOnly, Deps{Reader: e.Reader}).WithToken(apitest.ReadAll),
		}
		hr := rangeQ(h, h.Add(time.Hour))
		for _, tc := range []struct{ source, client, query string }{
			{"flows_1h", "flows_1h", "by=protocol&" + hr},
			{"flows_1m", "flows_1m", "by=protocol&" + hr},
			// ::/0 holds every address: the same flows, from raw flows.
			{"flows", "flows_1h", "by=protocol&address=::/0&" + hr},
		} {
			var ans TopAnswer
			clients[tc.client].Get("/api/v1/traffic/top?"+tc.query).JSON(t, &ans)
			if ans.Source != tc.source {
				t.Errorf("%s: source %s", tc.query, ans.Source)
			}
			checkTotals(t, tc.source+" total", ans.Total, want{"", all.Bytes, all.Packets, all.Flows}, 3600)
			if len(ans.Rows) != len(wantProto) {
				t.Errorf("%s: %d protocols, want %d", tc.source, len(ans.Rows), len(wantProto))
			}
			for _, row := range ans.Rows {
				w := wantProto[uint64(row.Key["ip_protocol"].(float64))]
				checkTotals(t, tc.source+" "+row.Label, row.Totals, want{"", w.Bytes, w.Packets, w.Flows}, 3600)
			}
		}
		for _, tc := range []struct{ step, source string }{{"10s", "flows"}, {"1m", "flows_1m"}, {"5m", "flows_1m"}, {"1h", "flows_1h"}} {
			ans := getSeries(t, clients["flows_1h"], "step="+tc.step+"&"+hr)
			if ans.Source != tc.source {
				t.Errorf("step %s: source %s, want %s", tc.step, ans.Source, tc.source)
			}
			checkTotals(t, "series step "+tc.step, ans.Total, want{"", all.Bytes, all.Packets, all.Flows}, 3600)
			var sum float64
			for _, v := range ans.Series[0].BPS {
				sum += v
			}
			if !near(sum*float64(ans.Step)/8, float64(all.Bytes)) {
				t.Errorf("step %s: buckets add up to %g bytes, want %d", tc.step, sum*float64(ans.Step)/8, all.Bytes)
			}
		}
	})
}
