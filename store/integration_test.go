package store_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/store"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// migratedDB is a fresh database with the schema applied.
func migratedDB(tb testing.TB) (*store.Server, store.Config) {
	tb.Helper()
	addr, database := chtest.Database(tb)
	cfg := store.DefaultConfig()
	cfg.Addr, cfg.Database = addr, database
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := store.OpenServer(ctx, cfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention}); err != nil {
		tb.Fatal(err)
	}
	return db, cfg
}

func addr(s string) flow.Addr { return flow.AddrFromNetip(netip.MustParseAddr(s)) }

func mac(s string) flow.MAC {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return flow.MACFromSlice(hw)
}

// ms is a UTC wall time in Unix milliseconds.
func ms(s string) int64 {
	t, err := time.Parse("2006-01-02 15:04:05.000", s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

func TestOpenServerCreatesDatabase(t *testing.T) {
	srv := chtest.SharedServer(t)
	cfg := store.DefaultConfig()
	cfg.Addr = srv.Addr()
	cfg.Database = "created_by_open_" + fmt.Sprint(time.Now().UnixNano())
	t.Cleanup(func() { srv.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cfg.Database) })
	ctx := context.Background()
	db, err := store.OpenServer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var current string
	if err := store.QueryRow(ctx, db, []any{&current}, "SELECT currentDatabase()"); err != nil {
		t.Fatal(err)
	}
	if current != cfg.Database {
		t.Fatalf("currentDatabase() = %q, want %q", current, cfg.Database)
	}
}

// strings1 reads a one-column string result.
func strings1(t *testing.T, db store.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.Query(context.Background(), query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRollupsSumFlows(t *testing.T) {
	db, _ := migratedDB(t)
	ctx := context.Background()
	base := flow.Flow{
		Protocol: flow.ProtoIPFIX, ExporterAddr: addr("192.0.2.1"), Direction: flow.DirIngress,
		InIf: 1, OutIf: 2, SrcAddr: addr("10.0.0.1"), DstAddr: addr("10.0.0.2"), IPProto: 6, IPVersion: 4,
		SrcAS: 65001, DstAS: 65002, Tenant: "acme", ExporterName: "edge1", InIfName: "in", OutIfName: "out",
	}
	type row struct {
		at            string
		rate          uint32
		bytes, pkts   uint64
		srcPort       uint16
		differentTent bool
	}
	rows := []row{
		{"2023-11-14 22:13:20.000", 100, 1000, 10, 1, false},
		{"2023-11-14 22:13:50.000", 100, 2000, 20, 2, false}, // same minute, same key: summed
		{"2023-11-14 22:13:59.999", 10, 500, 5, 3, false},    // same minute, other rate: own row
		{"2023-11-14 22:14:00.000", 100, 700, 7, 4, false},   // next minute
		{"2023-11-14 23:00:00.000", 1, 300, 3, 5, false},     // next hour
		{"2023-11-14 22:13:30.000", 100, 4000, 40, 6, true},  // other tenant
	}
	var fs []flow.Flow
	for _, r := range rows {
		f := base
		f.TimeReceivedMs, f.SamplingRate, f.Bytes, f.Packets, f.SrcPort = ms(r.at), r.rate, r.bytes, r.pkts, r.srcPort
		if r.differentTent {
			f.Tenant = "beta"
		}
		fs = append(fs, f)
	}
	b := store.NewFlowBatch(len(fs))
	// Two inserts of the same flows: the rollups get two rows per key
	// until SummingMergeTree merges them.
	b.Append(fs)
	for range 2 {
		if err := db.InsertFlows(ctx, b); err != nil {
			t.Fatal(err)
		}
	}

	query := func(table string) []string {
		return strings1(t, db, `SELECT concat(toString(time_received), ' ', tenant, ' ', toString(sampling_rate), ' ',
			toString(sum(bytes)), ' ', toString(sum(packets)), ' ', toString(sum(flows)), ' ',
			toString(sum(bytes_scaled)), ' ', toString(sum(packets_scaled)))
			FROM `+table+` GROUP BY time_received, tenant, sampling_rate ORDER BY time_received, tenant, sampling_rate`)
	}
	for _, tc := range []struct {
		table string
		want  []string
	}{
		{"flows_1m", []string{
			// time tenant rate bytes packets flows bytes_scaled packets_scaled (each flow inserted twice)
			"2023-11-14 22:13:00 acme 10 1000 10 2 10000 100",
			"2023-11-14 22:13:00 acme 100 6000 60 4 600000 6000",
			"2023-11-14 22:13:00 beta 100 8000 80 2 800000 8000",
			"2023-11-14 22:14:00 acme 100 1400 14 2 140000 1400",
			"2023-11-14 23:00:00 acme 1 600 6 2 600 6",
		}},
		{"flows_1h", []string{
			"2023-11-14 22:00:00 acme 10 1000 10 2 10000 100",
			"2023-11-14 22:00:00 acme 100 7400 74 6 740000 7400",
			"2023-11-14 22:00:00 beta 100 8000 80 2 800000 8000",
			"2023-11-14 23:00:00 acme 1 600 6 2 600 6",
		}},
	} {
		t.Run(tc.table, func(t *testing.T) {
			if got := query(tc.table); !slices.Equal(got, tc.want) {
				t.Errorf("before merge:\n got %q\nwant %q", got, tc.want)
			}
			if err := db.Exec(ctx, "OPTIMIZE TABLE "+tc.table+" FINAL"); err != nil {
				t.Fatal(err)
			}
			if got := query(tc.table); !slices.Equal(got, tc.want) {
				t.Errorf("after merge:\n got %q\nwant %q", got, tc.want)
			}
			var stored uint64
			if err := store.QueryRow(ctx, db, []any{&stored}, "SELECT count() FROM "+tc.table); err != nil {
				t.Fatal(err)
			}
			if stored != uint64(len(tc.want)) {
				t.Errorf("%d rows stored after merge, want one per key: %d", stored, len(tc.want))
			}
			dims := strings1(t, db, "SELECT DISTINCT concat(IPv6NumToString(exporter_address), ' ', exporter_name, ' ', toString(direction), ' ', toString(protocol), ' ', in_if_name, '>', out_if_name, ' ', toString(src_as), '>', toString(dst_as)) FROM "+tc.table)
			if want := []string{"::ffff:192.0.2.1 edge1 ingress ipfix in>out 65001>65002"}; !slices.Equal(dims, want) {
				t.Errorf("dimensions %q, want %q", dims, want)
			}
		})
	}
}

func TestExporterStatsRoundTrip(t *testing.T) {
	db, _ := migratedDB(t)
	ctx := context.Background()
	first := flow.ExporterStats{
		Addr: addr("192.0.2.1"), Protocols: []string{"ipfix"}, FirstSeenMs: ms("2023-11-14 22:00:00.000"),
		LastSeenMs: ms("2023-11-14 22:10:00.000"), Datagrams: 10, Flows: 100, Bytes: 14000,
		Drops: map[string]uint64{"template_not_found": 1}, Templates: 2,
	}
	latest := flow.ExporterStats{
		Addr: addr("192.0.2.1"), Protocols: []string{"ipfix", "netflow_v9"}, FirstSeenMs: ms("2023-11-14 22:00:00.000"),
		LastSeenMs: ms("2023-11-14 22:20:00.500"), Datagrams: 20, Flows: 250, Bytes: 30000,
		Drops: map[string]uint64{"template_not_found": 3, "short_datagram": 1}, Templates: 4,
		SequenceExpected: 300, SequenceLost: 50,
		Streams: []flow.StreamStats{
			{Protocol: "ipfix", ObservationDomain: 1, LastSequence: 4294967295, Expected: 200, Lost: 40, Resets: 1, Restarts: 2, SourcePort: 4739},
			{Protocol: "netflow_v9", ObservationDomain: 7, LastSequence: 9, Expected: 100, Lost: 10},
		},
	}
	other := flow.ExporterStats{Addr: addr("2001:db8::9"), LastSeenMs: ms("2023-11-14 22:20:00.000"), Datagrams: 1}
	t1 := time.Date(2023, 11, 14, 22, 10, 0, 0, time.UTC)
	if err := db.InsertExporterStats(ctx, t1, []flow.ExporterStats{first}); err != nil {
		t.Fatal(err)
	}
	if err := db.InsertExporterStats(ctx, t1.Add(10*time.Minute), []flow.ExporterStats{latest, other}); err != nil {
		t.Fatal(err)
	}
	if err := db.InsertExporterStats(ctx, t1, nil); err != nil {
		t.Fatalf("empty snapshot: %v", err)
	}

	rows, err := db.Query(ctx, `SELECT IPv6NumToString(exporter_address), protocols, if(toUInt32(first_seen) = 0, '', toString(first_seen)), toString(last_seen),
		datagrams, flows, bytes, drop_reasons, drop_counts, templates, sequence_expected, sequence_lost,
		streams.protocol, streams.observation_domain, streams.last_sequence, streams.expected, streams.lost, streams.resets, streams.restarts, streams.source_port,
		toString(updated_at)
		FROM exporters_latest ORDER BY exporter_address`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var (
			address, firstSeen, lastSeen, updated string
			protocols, reasons, stProto           []string
			datagrams, flows, bytes, exp, lost    uint64
			counts, stExp, stLost, stResets       []uint64
			stRestarts                            []uint64
			stPort                                []uint16
			templates                             uint32
			stDomain, stLastSeq                   []uint32
		)
		if err := rows.Scan(&address, &protocols, &firstSeen, &lastSeen, &datagrams, &flows, &bytes, &reasons, &counts,
			&templates, &exp, &lost, &stProto, &stDomain, &stLastSeq, &stExp, &stLost, &stResets, &stRestarts, &stPort, &updated); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprint(address, protocols, firstSeen, lastSeen, datagrams, flows, bytes, reasons, counts,
			templates, exp, lost, stProto, stDomain, stLastSeq, stExp, stLost, stResets, stRestarts, stPort, updated))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprint("::ffff:192.0.2.1", []string{"ipfix", "netflow_v9"}, "2023-11-14 22:00:00", "2023-11-14 22:20:00",
			20, 250, 30000, []string{"short_datagram", "template_not_found"}, []uint64{1, 3}, 4, 300, 50,
			[]string{"ipfix", "netflow_v9"}, []uint32{1, 7}, []uint32{4294967295, 9}, []uint64{200, 100}, []uint64{40, 10},
			[]uint64{1, 0}, []uint64{2, 0}, []uint16{4739, 0}, "2023-11-14 22:20:00"),
		fmt.Sprint("2001:db8::9", []string{}, "", "2023-11-14 22:20:00",
			1, 0, 0, []string{}, []uint64{}, 0, 0, 0,
			[]string{}, []uint32{}, []uint32{}, []uint64{}, []uint64{}, []uint64{}, []uint64{}, []uint16{}, "2023-11-14 22:20:00"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("exporters_latest:\n got %q\nwant %q", got, want)
	}
	var snapshots uint64
	if err := store.QueryRow(ctx, db, []any{&snapshots}, "SELECT count() FROM exporters"); err != nil {
		t.Fatal(err)
	}
	if snapshots < 2 || snapshots > 3 {
		t.Errorf("exporters holds %d rows, want the 3 snapshots or 2 after a merge", snapshots)
	}
}

func TestBatcherWritesToServer(t *testing.T) {
	db, cfg := migratedDB(t)
	ctx := context.Background()
	count := func() uint64 {
		var n uint64
		if err := store.QueryRow(ctx, db, []any{&n}, "SELECT count() FROM flows"); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitCount := func(want uint64) {
		t.Helper()
		if !testkit.Within(5*time.Second, func() bool { return count() == want }) {
			t.Fatalf("flows has %d rows, want %d", count(), want)
		}
	}
	fs := make([]flow.Flow, 25)
	for i := range fs {
		fs[i] = flow.Flow{TimeReceivedMs: time.Now().UnixMilli(), Tenant: "acme", SrcAddr: addr("10.0.0.1"), Bytes: 100, Packets: 1, SamplingRate: 1}
	}

	t.Run("on rows, then Stop flushes the rest", func(t *testing.T) {
		cfg := cfg
		cfg.BatchRows, cfg.BatchInterval = 100, time.Hour
		b, err := store.New(cfg, store.Deps{Writer: db})
		if err != nil {
			t.Fatal(err)
		}
		b.Start(ctx)
		for range 10 { // 250 flows: two full batches and 50 left over
			b.Write(fs)
		}
		waitCount(200)
		time.Sleep(50 * time.Millisecond)
		if n := count(); n != 200 {
			t.Fatalf("partial batch inserted before Stop: %d rows", n)
		}
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		waitCount(250)
	})
	t.Run("on interval", func(t *testing.T) {
		cfg := cfg
		cfg.BatchRows, cfg.BatchInterval = 1_000_000, 100*time.Millisecond
		b, err := store.New(cfg, store.Deps{Writer: db})
		if err != nil {
			t.Fatal(err)
		}
		b.Start(ctx)
		defer b.Stop()
		b.Write(fs[:10])
		waitCount(260)
	})
}

func TestBatcherWithUnreachableServerNeverBlocks(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close() // nothing listens there now

	cfg := store.DefaultConfig()
	cfg.Addr = dead
	cfg.DialTimeout = 200 * time.Millisecond
	cfg.InsertTimeout = 200 * time.Millisecond
	cfg.BatchRows = 10
	cfg.Retry = store.RetryConfig{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	cfg.StopTimeout = 300 * time.Millisecond
	db, err := store.NewServer(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg := prometheus.NewRegistry()
	// One batch at a time: the one the writer retries.
	b, err := store.New(cfg, store.Deps{Writer: db, Registerer: reg, Memory: store.MemoryBounds{Queue: 1}})
	if err != nil {
		t.Fatal(err)
	}
	b.Start(context.Background())

	fs := make([]flow.Flow, 10)
	const writes = 100
	start := time.Now()
	for range writes {
		b.Write(fs)
		time.Sleep(time.Millisecond) // let the writer fail a few times meanwhile
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("%d writes took %s against a dead server", writes, el)
	}
	start = time.Now()
	if err := b.Stop(); err == nil {
		t.Error("Stop reported success although nothing was inserted")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Stop took %s, stop_timeout is %s", el, cfg.StopTimeout)
	}

	metric := func(name, reason string) float64 { return counter(t, reg, name, "reason", reason) }
	if n := metric("flowhouse_store_insert_errors_total", "connection"); n < 2 {
		t.Errorf("insert_errors_total{reason=connection} = %v, want retries counted", n)
	}
	queueFull := metric("flowhouse_store_rows_dropped_total", store.DropQueueFull)
	shutdown := metric("flowhouse_store_rows_dropped_total", store.DropShutdown)
	if queueFull == 0 {
		t.Error("no rows dropped for queue_full")
	}
	if queueFull+shutdown != writes*10 {
		t.Errorf("dropped queue_full %v + shutdown %v, want every one of %d flows accounted", queueFull, shutdown, writes*10)
	}
	if got := testutil.CollectAndCount(reg, "flowhouse_store_rows_inserted_total"); got != 1 {
		t.Errorf("rows_inserted_total registered %d times", got)
	}
}

func TestRetentionDropsExpiredPartitions(t *testing.T) {
	db, cfg := migratedDB(t)
	ctx := context.Background()
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	old := now.Add(-40 * 24 * time.Hour) // 2024-01-30
	fs := []flow.Flow{
		{TimeReceivedMs: old.UnixMilli(), Tenant: "acme", Bytes: 1, SamplingRate: 1},
		{TimeReceivedMs: now.UnixMilli(), Tenant: "acme", Bytes: 2, SamplingRate: 1},
	}
	b := store.NewFlowBatch(2)
	b.Append(fs)
	if err := db.InsertFlows(ctx, b); err != nil {
		t.Fatal(err)
	}
	// alert_versions keeps 3 days, whatever the configuration: a row of
	// 2024-03-06 goes at 2024-03-10, one of 2024-03-08 stays.
	for _, at := range []string{"2024-03-06 10:00:00", "2024-03-08 10:00:00"} {
		if err := db.Exec(ctx, "INSERT INTO alert_versions (tenant, id, version, written_at) SELECT 'acme', 'x', 1, toDateTime(?, 'UTC')", at); err != nil {
			t.Fatal(err)
		}
	}
	partitions := func(table string) []string {
		return strings1(t, db, "SELECT DISTINCT partition_id FROM system.parts WHERE database = currentDatabase() AND table = ? AND active ORDER BY partition_id", table)
	}

	clock := now
	reg := prometheus.NewRegistry()
	r, err := store.NewRetention(cfg, store.RetentionDeps{DB: db, Registerer: reg, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		at      time.Time
		dropped int
		flows   []string
		f1m     []string
		f1h     []string
	}{
		// 30 days of flows: the 2024-01-30 day goes, the rollups keep it;
		// alert_versions loses 2024-03-06.
		{now, 2, []string{"20240310"}, []string{"20240130", "20240310"}, []string{"202401", "202403"}},
		// Nothing more to drop a second later.
		{now.Add(time.Second), 0, []string{"20240310"}, []string{"20240130", "20240310"}, []string{"202401", "202403"}},
		// 100 days on: flows and minute rollups (90 days) lose everything,
		// hourly rollups (2 years) nothing, alert_versions its last day.
		{now.Add(100 * 24 * time.Hour), 4, nil, nil, []string{"202401", "202403"}},
		// 2 years and a bit after January 2024 ended, its month goes.
		{time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), 1, nil, nil, []string{"202403"}},
	} {
		clock = step.at
		n, err := r.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n != step.dropped {
			t.Errorf("at %s: dropped %d partitions, want %d", step.at, n, step.dropped)
		}
		if got, want := partitions("alert_versions"), map[bool][]string{true: {"20240308"}}[step.at.Equal(now) || step.at.Equal(now.Add(time.Second))]; !slices.Equal(got, want) {
			t.Errorf("at %s: alert_versions partitions %q, want %q", step.at, got, want)
		}
		for _, c := range []struct {
			table string
			want  []string
		}{{"flows", step.flows}, {"flows_1m", step.f1m}, {"flows_1h", step.f1h}} {
			if got := partitions(c.table); !slices.Equal(got, c.want) {
				t.Errorf("at %s: %s partitions %q, want %q", step.at, c.table, got, c.want)
			}
		}
	}
	if got := counter(t, reg, "flowhouse_store_retention_partitions_dropped_total", "table", "flows"); got != 2 {
		t.Errorf("partitions_dropped_total{table=flows} = %v, want 2", got)
	}

	// Start runs the job at once on a server without TTL.
	clock = now.Add(1000 * 24 * time.Hour)
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !testkit.Within(5*time.Second, func() bool { return len(partitions("flows_1h")) == 0 }) {
		t.Fatal("Start did not run the retention job")
	}
	r.Stop()
}

// counter reads one labelled counter from a registry.
func counter(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestEveryCompressionInserts(t *testing.T) {
	db0, cfg := migratedDB(t)
	ctx := context.Background()
	b := store.NewFlowBatch(1)
	b.Append([]flow.Flow{{TimeReceivedMs: time.Now().UnixMilli(), SrcAddr: addr("2001:db8::1"), Bytes: 1}})
	for _, c := range []string{"lz4", "zstd", "none"} {
		cfg.Compression = c
		db, err := store.OpenServer(ctx, cfg, nil)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if err := db.InsertFlows(ctx, b); err != nil {
			t.Errorf("%s: %v", c, err)
		}
		db.Close()
	}
	if got := strings1(t, db0, "SELECT toString(count()) FROM flows WHERE IPv6NumToString(src_address) = '2001:db8::1'"); !slices.Equal(got, []string{"3"}) {
		t.Fatalf("rows = %v, want 3", got)
	}
}
