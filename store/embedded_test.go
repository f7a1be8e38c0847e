package store_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/store"
)

// The embedded engine's tests need libchdb.so. They fail (not skip) when
// it is missing, so CI cannot pass without testing the engine; set
// FLOWHOUSE_SKIP_EMBEDDED=1 to skip them in a quick local run.
const skipEmbeddedEnv = "FLOWHOUSE_SKIP_EMBEDDED"

// embeddedLibrary is FLOWHOUSE_CLICKHOUSE_EMBEDDED_LIBRARY, else the
// library `make deps` installs at the repository root.
func embeddedLibrary(tb testing.TB) string {
	tb.Helper()
	if os.Getenv(skipEmbeddedEnv) != "" {
		tb.Skipf("%s is set", skipEmbeddedEnv)
	}
	path := os.Getenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_LIBRARY")
	if path == "" {
		path = filepath.Join("..", "var", "lib", "libchdb.so")
	}
	if _, err := os.Stat(path); err != nil {
		tb.Fatalf("the embedded engine's library is missing (%v): run `scripts/chdb.sh install` (or `make deps`), or set %s=1 to skip these tests", err, skipEmbeddedEnv)
	}
	return path
}

func embeddedConfig(tb testing.TB, dir string) store.Config {
	cfg := store.DefaultConfig()
	cfg.Embedded.Library = embeddedLibrary(tb)
	cfg.Embedded.Path = dir
	return cfg
}

// openEmbedded opens the engine on dir and closes it when the test ends.
// The library runs one engine per process, so these tests never run in
// parallel with each other.
func openEmbedded(tb testing.TB, dir string) *store.Embedded {
	tb.Helper()
	db, err := store.OpenEmbedded(context.Background(), embeddedConfig(tb, dir), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// migratedEmbedded is the engine on a new directory with the schema.
func migratedEmbedded(tb testing.TB) *store.Embedded {
	tb.Helper()
	db := openEmbedded(tb, tb.TempDir())
	if _, err := migrations.Apply(context.Background(), db, migrations.Options{Retention: store.DefaultConfig().Retention}); err != nil {
		tb.Fatal(err)
	}
	return db
}

// recent is offsetMs after the start of the hour two hours ago, in Unix
// milliseconds: a time the tables' TTL keeps (the engine drops expired
// rows as it inserts them).
func recent(offsetMs int64) int64 {
	return time.Now().UTC().Truncate(time.Hour).Add(-2*time.Hour).UnixMilli() + offsetMs
}

func TestEmbeddedAppliesAllMigrations(t *testing.T) {
	db := openEmbedded(t, t.TempDir())
	ctx := context.Background()
	caps, err := store.DetectCapabilities(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if !caps.IPv6 || !caps.TTL || !caps.Codecs || !caps.LowCardinality || !strings.HasPrefix(caps.Version, "26.") {
		t.Fatalf("capabilities %+v, want the modern schema on 26.x", caps)
	}
	opts := migrations.Options{Retention: store.DefaultConfig().Retention}
	applied, err := migrations.Apply(ctx, db, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(migrations.All()) {
		t.Fatalf("applied %d migrations, want all %d", len(applied), len(migrations.All()))
	}
	if again, err := migrations.Apply(ctx, db, opts); err != nil || len(again) != 0 {
		t.Fatalf("second Apply: %v, %v", again, err)
	}
	if pending, err := migrations.Pending(ctx, db); err != nil || len(pending) != 0 {
		t.Fatalf("pending after Apply: %v, %v", pending, err)
	}
	var tables []string
	rows, err := db.Query(ctx, "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	for _, want := range []string{"exporters", "exporters_latest", "flows", "flows_1h", "flows_1h_mv", "flows_1m", "flows_1m_mv", "schema_migrations"} {
		if !slices.Contains(tables, want) {
			t.Errorf("no table %s among %q", want, tables)
		}
	}
	var create string
	if err := store.QueryRow(ctx, db, []any{&create}, "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'flows'"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"`src_address` IPv6", "`tenant` LowCardinality(String)", "CODEC(DoubleDelta, LZ4)", "TTL time_received + toIntervalDay(30)"} {
		if !strings.Contains(create, s) {
			t.Errorf("flows is not the modern schema, no %q in\n%s", s, create)
		}
	}
}

func TestEmbeddedInsertFlowsRoundTripsEveryColumn(t *testing.T) {
	db := migratedEmbedded(t)
	ctx := context.Background()
	in := roundTripFlows()
	b := store.NewFlowBatch(len(in))
	b.Append(in)
	if err := db.InsertFlows(ctx, b); err != nil {
		t.Fatal(err)
	}

	// Every column scanned into its own Go type and rebuilt into a flow.
	rows, err := db.Query(ctx, "SELECT "+strings.Join(store.FlowColumns(), ", ")+" FROM flows ORDER BY time_received")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if got := rows.Columns(); !slices.Equal(got, store.FlowColumns()) {
		t.Fatalf("columns %q", got)
	}
	var got []flow.Flow
	for rows.Next() {
		var (
			f                           flow.Flow
			received, start, end        time.Time
			duration                    uint32
			exporter, src, dst, nextHop netip.Addr
			protocol, direction         string
			inSpeed, outSpeed           uint32
			srcMAC, dstMAC              uint64
		)
		if err := rows.Scan(&received, &start, &end, &duration, &f.Tenant, &exporter, &f.ExporterPort, &f.ExporterName,
			&protocol, &f.ObservationDomain, &f.SamplerID, &f.SamplingRate, &direction,
			&f.InIf, &f.InIfName, &f.InIfDescription, &inSpeed, &f.InIfBoundary,
			&f.OutIf, &f.OutIfName, &f.OutIfDescription, &outSpeed, &f.OutIfBoundary, &f.InVRF, &f.OutVRF,
			&src, &dst, &nextHop, &f.SrcPort, &f.DstPort, &f.IPProto, &f.IPVersion, &f.TCPFlags, &f.ToS,
			&f.ICMPType, &f.ICMPCode, &f.SrcMask, &f.DstMask, &f.SrcVLAN, &f.DstVLAN, &srcMAC, &dstMAC,
			&f.SrcVendor, &f.DstVendor, &f.SrcNetName, &f.SrcNetRole, &f.SrcNetSite, &f.DstNetName, &f.DstNetRole, &f.DstNetSite,
			&f.SrcAS, &f.DstAS, &f.Bytes, &f.Packets, &f.FlowLabel); err != nil {
			t.Fatal(err)
		}
		if received.Location().String() != "UTC" {
			t.Errorf("time_received in %s, want the column's UTC", received.Location())
		}
		f.TimeReceivedMs, f.TimeStartMs, f.TimeEndMs = received.UnixMilli(), start.UnixMilli(), end.UnixMilli()
		f.ExporterAddr, f.SrcAddr, f.DstAddr, f.NextHop = flow.Addr(exporter.As16()), flow.Addr(src.As16()), flow.Addr(dst.As16()), flow.Addr(nextHop.As16())
		f.InIfSpeedMbps, f.OutIfSpeedMbps = uint64(inSpeed), uint64(outSpeed)
		f.SrcMAC, f.DstMAC = flow.MAC(srcMAC), flow.MAC(dstMAC)
		for p := range flow.Protocol(255) {
			if p.String() == protocol {
				f.Protocol = p
				break
			}
		}
		f.Direction = map[string]flow.Direction{"unknown": flow.DirUnknown, "ingress": flow.DirIngress, "egress": flow.DirEgress}[direction]
		got = append(got, f)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("%d rows back, want %d", len(got), len(in))
	}
	for i, want := range in {
		// DateTime keeps seconds; absent times are 0.
		want.TimeReceivedMs = want.TimeReceivedMs / 1000 * 1000
		want.TimeStartMs = want.TimeStartMs / 1000 * 1000
		want.TimeEndMs = want.TimeEndMs / 1000 * 1000
		if got[i] != want {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, got[i], want)
		}
	}

	// And through the other scan targets of an address.
	var ip net.IP
	var s string
	var raw [16]byte
	if err := store.QueryRow(ctx, db, []any{&ip}, "SELECT src_address FROM flows WHERE src_port = ?", 51234); err != nil || ip.String() != "10.1.2.3" {
		t.Errorf("net.IP %v, %v", ip, err)
	}
	if err := store.QueryRow(ctx, db, []any{&s, &raw}, "SELECT dst_address, dst_address FROM flows WHERE src_port = 53"); err != nil ||
		s != "2001:db8:ffff:ffff:ffff:ffff:ffff:abcd" || raw != addr("2001:db8:ffff:ffff:ffff:ffff:ffff:abcd") {
		t.Errorf("string %q, [16]byte %x, %v", s, raw, err)
	}
}

func TestEmbeddedRollupsFill(t *testing.T) {
	db := migratedEmbedded(t)
	ctx := context.Background()
	base := flow.Flow{
		Protocol: flow.ProtoIPFIX, ExporterAddr: addr("192.0.2.1"), Direction: flow.DirIngress,
		InIf: 1, OutIf: 2, SrcAddr: addr("10.0.0.1"), DstAddr: addr("10.0.0.2"), IPProto: 6, IPVersion: 4,
		Tenant: "acme", ExporterName: "edge1",
	}
	hour := recent(0) // a whole hour
	var fs []flow.Flow
	for _, r := range []struct {
		at          time.Duration
		rate        uint32
		bytes, pkts uint64
	}{
		{20 * time.Second, 100, 1000, 10},
		{50 * time.Second, 100, 2000, 20},   // same minute, same key: summed
		{59 * time.Second, 10, 500, 5},      // same minute, other rate: own row
		{60 * time.Second, 100, 700, 7},     // next minute
		{61 * time.Minute, 1, 300, 3},       // next hour
		{30 * time.Second, 100, 4000, 40},   // same minute again
		{119 * time.Minute, 100, 10, 1},     // the hour after
		{-30 * time.Minute, 100, 1, 1},      // the hour before
		{-30*time.Minute + 1, 100, 1, 1},    // same second
		{-30*time.Minute + 1000, 100, 1, 1}, // same minute
	} {
		f := base
		f.TimeReceivedMs = hour + r.at.Milliseconds()
		f.SamplingRate, f.Bytes, f.Packets = r.rate, r.bytes, r.pkts
		fs = append(fs, f)
	}
	b := store.NewFlowBatch(len(fs))
	b.Append(fs)
	for range 2 { // twice: the rollups hold two rows per key until a merge
		if err := db.InsertFlows(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	at := func(offset time.Duration) string {
		return time.UnixMilli(hour).UTC().Add(offset).Format(time.DateTime)
	}
	query := func(table string) []string {
		return strings1(t, db, `SELECT concat(toString(time_received), ' ', toString(sampling_rate), ' ',
			toString(sum(bytes)), ' ', toString(sum(packets)), ' ', toString(sum(flows)), ' ', toString(sum(bytes_scaled)))
			FROM `+table+` WHERE tenant = ? GROUP BY time_received, sampling_rate ORDER BY time_received, sampling_rate`, "acme")
	}
	for _, tc := range []struct {
		table string
		want  []string
	}{
		{"flows_1m", []string{
			at(-30*time.Minute) + " 100 6 6 6 600",
			at(0) + " 10 1000 10 2 10000",
			at(0) + " 100 14000 140 6 1400000",
			at(time.Minute) + " 100 1400 14 2 140000",
			at(61*time.Minute) + " 1 600 6 2 600",
			at(119*time.Minute) + " 100 20 2 2 2000",
		}},
		{"flows_1h", []string{
			at(-time.Hour) + " 100 6 6 6 600",
			at(0) + " 10 1000 10 2 10000",
			at(0) + " 100 15400 154 8 1540000",
			at(time.Hour) + " 1 600 6 2 600",
			at(time.Hour) + " 100 20 2 2 2000",
		}},
	} {
		if got := query(tc.table); !slices.Equal(got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.table, got, tc.want)
		}
		if err := db.Exec(ctx, "OPTIMIZE TABLE "+tc.table+" FINAL"); err != nil {
			t.Fatal(err)
		}
		var stored uint64
		if err := store.QueryRow(ctx, db, []any{&stored}, "SELECT count() FROM "+tc.table); err != nil {
			t.Fatal(err)
		}
		if got := query(tc.table); !slices.Equal(got, tc.want) || stored != uint64(len(tc.want)) {
			t.Errorf("%s after merge: %d rows, %q", tc.table, stored, got)
		}
	}
}

func TestEmbeddedExporterStatsRoundTrip(t *testing.T) {
	db := migratedEmbedded(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	stats := []flow.ExporterStats{{
		Addr: addr("192.0.2.1"), Protocols: []string{"ipfix", "netflow_v9"}, FirstSeenMs: now.Add(-time.Hour).UnixMilli(),
		LastSeenMs: now.UnixMilli() + 500, Datagrams: 20, Flows: 250, Bytes: 30000,
		Drops: map[string]uint64{"template_not_found": 3, "short_datagram": 1}, Templates: 4,
		SequenceExpected: 300, SequenceLost: 50,
		Streams: []flow.StreamStats{
			{Protocol: "ipfix", ObservationDomain: 1, LastSequence: 4294967295, Expected: 200, Lost: 40, Resets: 1, Restarts: 2, SourcePort: 4739},
			{Protocol: "netflow_v9", ObservationDomain: 7, LastSequence: 9, Expected: 100, Lost: 10},
		},
	}, {Addr: addr("2001:db8::9"), LastSeenMs: now.UnixMilli(), Datagrams: 1}}
	if err := db.InsertExporterStats(ctx, now, stats); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(ctx, `SELECT exporter_address, protocols, first_seen, last_seen, datagrams, flows, bytes,
		drop_reasons, drop_counts, templates, sequence_expected, sequence_lost,
		streams.protocol, streams.observation_domain, streams.last_sequence, streams.expected, streams.lost, streams.resets, streams.restarts, streams.source_port, updated_at
		FROM exporters_latest ORDER BY exporter_address`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var (
			address                            netip.Addr
			firstSeen, lastSeen, updated       time.Time
			protocols, reasons, stProto        []string
			datagrams, flows, bytes, exp, lost uint64
			counts, stExp, stLost, stResets    []uint64
			stRestarts                         []uint64
			stPort                             []uint16
			templates                          uint32
			stDomain, stLastSeq                []uint32
		)
		if err := rows.Scan(&address, &protocols, &firstSeen, &lastSeen, &datagrams, &flows, &bytes, &reasons, &counts,
			&templates, &exp, &lost, &stProto, &stDomain, &stLastSeq, &stExp, &stLost, &stResets, &stRestarts, &stPort, &updated); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprint(address.Unmap().String(), protocols, firstSeen.Unix(), lastSeen.Unix(), datagrams, flows, bytes, reasons, counts,
			templates, exp, lost, stProto, stDomain, stLastSeq, stExp, stLost, stResets, stRestarts, stPort, updated.Equal(now)))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprint("192.0.2.1", []string{"ipfix", "netflow_v9"}, now.Add(-time.Hour).Unix(), now.Unix(), 20, 250, 30000,
			[]string{"short_datagram", "template_not_found"}, []uint64{1, 3}, 4, 300, 50,
			[]string{"ipfix", "netflow_v9"}, []uint32{1, 7}, []uint32{4294967295, 9}, []uint64{200, 100}, []uint64{40, 10}, []uint64{1, 0}, []uint64{2, 0}, []uint16{4739, 0}, true),
		fmt.Sprint("2001:db8::9", []string{}, 0, now.Unix(), 1, 0, 0, []string{}, []uint64{}, 0, 0, 0,
			[]string{}, []uint32{}, []uint32{}, []uint64{}, []uint64{}, []uint64{}, []uint64{}, []uint16{}, true),
	}
	if !slices.Equal(got, want) {
		t.Errorf("exporters_latest:\n got %q\nwant %q", got, want)
	}
}

func TestEmbeddedKeepsDataAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	cfg := embeddedConfig(t, dir)
	count := func(db store.DB) uint64 {
		var n uint64
		if err := store.QueryRow(ctx, db, []any{&n}, "SELECT count() FROM flows"); err != nil {
			t.Fatal(err)
		}
		return n
	}
	batch := store.NewFlowBatch(1000)
	fs := benchFlows(1000)
	for i := range fs {
		fs[i].TimeReceivedMs = recent(int64(i) * 1000)
	}
	batch.Append(fs)
	for round := 1; round <= 3; round++ {
		db, err := store.Open(ctx, cfg, nil)
		if err != nil {
			t.Fatalf("open #%d: %v", round, err)
		}
		if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention}); err != nil {
			t.Fatal(err)
		}
		if n := count(db); n != uint64((round-1)*1000) {
			t.Errorf("open #%d found %d flows, want %d", round, n, (round-1)*1000)
		}
		if err := db.InsertFlows(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if err := db.Ping(ctx); err == nil {
			t.Fatal("Ping after Close succeeded")
		}
	}
}

// TestEmbeddedHelperProcess is not a test: the tests below run the test
// binary again with this one selected, as a second flowhouse process.
func TestEmbeddedHelperProcess(t *testing.T) {
	dir := os.Getenv("STORE_TEST_HELPER_DIR")
	if dir == "" {
		t.Skip("helper for other tests")
	}
	cfg := store.DefaultConfig()
	cfg.Embedded.Path = dir
	cfg.Embedded.Library = os.Getenv("STORE_TEST_HELPER_LIBRARY")
	db, err := store.Open(context.Background(), cfg, nil)
	if err != nil {
		fmt.Println("OPEN ERROR:", err)
		return
	}
	db.Close()
	fmt.Println("OPENED")
}

// helperOpen runs TestEmbeddedHelperProcess in a new process and returns
// what it printed.
func helperOpen(t *testing.T, dir, library string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestEmbeddedHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "STORE_TEST_HELPER_DIR="+dir, "STORE_TEST_HELPER_LIBRARY="+library)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper process: %v\n%s", err, out)
	}
	return string(out)
}

func TestEmbeddedOneProcessPerDirectory(t *testing.T) {
	dir := t.TempDir()
	library := embeddedLibrary(t)
	db := openEmbedded(t, dir)

	out := helperOpen(t, dir, library)
	for _, want := range []string{"OPEN ERROR:", "is in use by process " + strconv.Itoa(os.Getpid()), filepath.Join(dir, "flowhouse.lock")} {
		if !strings.Contains(out, want) {
			t.Errorf("second process on %s: no %q in\n%s", dir, want, out)
		}
	}
	// Within the process, the engine can have one directory.
	_, err := store.OpenEmbedded(context.Background(), embeddedConfig(t, t.TempDir()), nil)
	if err == nil || !strings.Contains(err.Error(), "already open on "+db.Dir()) {
		t.Errorf("second open in this process: %v", err)
	}
	// Once closed, the directory is free for another process.
	db.Close()
	if out := helperOpen(t, dir, library); !strings.Contains(out, "OPENED") {
		t.Errorf("after Close, another process could not open %s:\n%s", dir, out)
	}
}

func TestEmbeddedLibraryErrorsSayHowToInstall(t *testing.T) {
	// No library needed: this is the machine without one.
	cfg := store.DefaultConfig()
	cfg.Embedded.Path = t.TempDir()
	cfg.Embedded.Library = filepath.Join(t.TempDir(), "libchdb.so")
	_, err := store.Open(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "not found") || !strings.Contains(err.Error(), "scripts/chdb.sh install") {
		t.Errorf("missing library: %v", err)
	}
	// A broken file, loaded by a fresh process (this one may hold the
	// real library already).
	broken := filepath.Join(t.TempDir(), "libchdb.so")
	if err := os.WriteFile(broken, []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := helperOpen(t, t.TempDir(), broken)
	if !strings.Contains(out, "OPEN ERROR:") || !strings.Contains(out, "not a usable libchdb.so") || !strings.Contains(out, "scripts/chdb.sh install") {
		t.Errorf("broken library:\n%s", out)
	}
}

func TestEmbeddedQueryScansLikeTheServer(t *testing.T) {
	db := openEmbedded(t, t.TempDir())
	ctx := context.Background()
	var (
		u8      uint8
		flag    bool
		u64     uint64
		i64     int64
		f64     float64
		str     string
		raw     []byte
		fixed   [3]byte
		at      time.Time
		unix    int64
		day     time.Time
		milli   time.Time
		v4      netip.Addr
		v4num   uint32
		enum    string
		enumNum int8
		arr     []uint32
		nested  [][]string
		null    *uint64
		notNull *uint64
		nullArr []*string
		uuid    string
		lc      string
		b       bool
	)
	err := store.QueryRow(ctx, db, []any{&u8, &flag, &u64, &i64, &f64, &str, &raw, &fixed, &at, &unix, &day, &milli,
		&v4, &v4num, &enum, &enumNum, &arr, &nested, &null, &notNull, &nullArr, &uuid, &lc, &b},
		`SELECT toUInt8(200), toUInt8(1), toUInt64(18446744073709551615), toInt64(-5), 1.5, 'x', 'bytes',
			toFixedString('abc', 3), toDateTime('2026-01-02 03:04:05', 'Europe/Paris'), toDateTime(1700000000),
			toDate('2026-03-04'), toDateTime64('2026-01-02 03:04:05.123', 3, 'UTC'),
			toIPv4('192.0.2.7'), toIPv4('192.0.2.7'), CAST('b' AS Enum8('a' = 1, 'b' = -2)), CAST('b' AS Enum8('a' = 1, 'b' = -2)),
			[1, 2, 3]::Array(UInt32), [['a'], [], ['b', 'c']], CAST(NULL AS Nullable(UInt64)), toNullable(toUInt64(7)),
			[NULL, 'z'], toUUID('61f0c404-5cb3-11e7-907b-a6006ad3dba0'), toLowCardinality('low'), true`)
	if err != nil {
		t.Fatal(err)
	}
	paris, _ := time.LoadLocation("Europe/Paris")
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"UInt8", u8 == 200}, {"UInt8 as bool", flag}, {"UInt64", u64 == 1<<64-1}, {"Int64", i64 == -5}, {"Float64", f64 == 1.5},
		{"String", str == "x"}, {"String as []byte", string(raw) == "bytes"}, {"FixedString", string(fixed[:]) == "abc"},
		{"DateTime('Europe/Paris')", at.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, paris)) && at.Location().String() == "Europe/Paris"},
		{"DateTime as int64", unix == 1700000000}, {"Date", day.Equal(time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC))},
		{"DateTime64(3)", milli.Equal(time.Date(2026, 1, 2, 3, 4, 5, 123e6, time.UTC))},
		{"IPv4", v4 == netip.MustParseAddr("192.0.2.7")}, {"IPv4 as uint32", v4num == 0xc0000207},
		{"Enum8", enum == "b"}, {"Enum8 as int8", enumNum == -2}, {"Array(UInt32)", slices.Equal(arr, []uint32{1, 2, 3})},
		{"Array(Array(String))", fmt.Sprint(nested) == "[[a] [] [b c]]"}, {"NULL", null == nil}, {"Nullable", notNull != nil && *notNull == 7},
		{"Array(Nullable(String))", len(nullArr) == 2 && nullArr[0] == nil && *nullArr[1] == "z"},
		{"UUID", uuid == "61f0c404-5cb3-11e7-907b-a6006ad3dba0"}, {"LowCardinality", lc == "low"}, {"Bool", b},
	} {
		if !c.ok {
			t.Errorf("%s scanned wrong: %v", c.name, []any{u8, flag, u64, i64, f64, str, raw, fixed, at, unix, day, milli, v4, v4num, enum, enumNum, arr, nested, null, notNull, nullArr, uuid, lc, b})
		}
	}

	// Type mismatches fail as they do with clickhouse-go.
	var wrong int
	if err := store.QueryRow(ctx, db, []any{&wrong}, "SELECT toUInt32(1)"); err == nil || !strings.Contains(err.Error(), "converting UInt32 to *int is unsupported") {
		t.Errorf("UInt32 into *int: %v", err)
	}
	var notNullable uint64
	if err := store.QueryRow(ctx, db, []any{&notNullable}, "SELECT CAST(NULL AS Nullable(UInt64))"); err == nil {
		t.Error("NULL into *uint64 did not fail")
	}
	if err := store.QueryRow(ctx, db, []any{&str}, "SELECT 1 AS a, 2 AS b"); err == nil || !strings.Contains(err.Error(), "expected 2 destination arguments") {
		t.Errorf("too few destinations: %v", err)
	}
	if _, err := db.Query(ctx, "SELECT toDecimal64(1, 2)"); err == nil || !strings.Contains(err.Error(), "convert it in the query") {
		t.Errorf("an undecoded type: %v", err)
	}
}

// Results as the engine writes them in Native: in several blocks, with
// no block at all when empty (the columns are then described), with a
// DateTime's zone restored; and a statement without a result.
func TestEmbeddedQueryResultShapes(t *testing.T) {
	db := openEmbedded(t, t.TempDir())
	ctx := context.Background()
	var n, sum uint64
	rows, err := db.Query(ctx, "SELECT number FROM numbers(100000) SETTINGS max_block_size = 7000")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v uint64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		n, sum = n+1, sum+v
	}
	if n != 100000 || sum != 99999*100000/2 || rows.Err() != nil {
		t.Errorf("%d rows summing %d, %v", n, sum, rows.Err())
	}
	rows, err = db.Query(ctx, "SELECT 1 AS a, toDateTime(0, 'Asia/Tokyo') AS b WHERE 0;")
	if err != nil || !slices.Equal(rows.Columns(), []string{"a", "b"}) || rows.Next() {
		t.Errorf("empty result: columns %q, %v", rows.Columns(), err)
	}
	// A DateTime without a zone is in the engine's.
	var tokyo, plain time.Time
	var zone string
	if err := store.QueryRow(ctx, db, []any{&tokyo, &plain, &zone}, "SELECT toDateTime(0, 'Asia/Tokyo'), toDateTime(0), timezone()"); err != nil ||
		tokyo.Location().String() != "Asia/Tokyo" || plain.Location().String() != zone {
		t.Errorf("zones %v and %v (engine's %s), %v", tokyo.Location(), plain.Location(), zone, err)
	}
	rows, err = db.Query(ctx, "CREATE TABLE IF NOT EXISTS shapes (a UInt8) ENGINE = Memory")
	if err != nil || len(rows.Columns()) != 0 || rows.Next() {
		t.Errorf("a statement without a result: %v", err)
	}
}

func TestEmbeddedBindsArguments(t *testing.T) {
	db := openEmbedded(t, t.TempDir())
	ctx := context.Background()
	// Each argument comes back as the engine read it.
	tricky := "it's a \\ back'slash\x00nul ? -- not a comment\n'); DROP TABLE x; --"
	var (
		s, s2, ipText  string
		when           time.Time
		n              int64
		f              float64
		list           []string
		isNull, isTrue uint8
		bytesArg       string
	)
	when = time.Date(2026, 5, 6, 7, 8, 9, 0, time.FixedZone("", 0)).In(time.UTC)
	err := store.QueryRow(ctx, db, []any{&s, &s2, &when, &n, &f, &list, &isNull, &isTrue, &bytesArg, &ipText},
		`SELECT ?, '?' || ? /* ? */, ?, toInt64(?) -- ?
		, ?, ?, isNull(?), ?, ?, toString(toIPv6(?))`,
		tricky, "x", when, int64(-42), 1.0, []string{"a'b", "c"}, nil, true, []byte("raw\x00"), netip.MustParseAddr("2001:db8::1"))
	if err != nil {
		t.Fatal(err)
	}
	if s != tricky || s2 != "?x" || !when.Equal(time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)) || n != -42 || f != 1 ||
		!slices.Equal(list, []string{"a'b", "c"}) || isNull != 1 || isTrue != 1 || bytesArg != "raw\x00" || ipText != "2001:db8::1" {
		t.Errorf("got %q %q %v %d %v %q %d %d %q %q", s, s2, when, n, f, list, isNull, isTrue, bytesArg, ipText)
	}
	if err := db.Exec(ctx, "SELECT ?, ?", 1); err == nil {
		t.Error("too few arguments accepted")
	}
	if err := db.Exec(ctx, "SELECT ?", 1, 2); err == nil {
		t.Error("too many arguments accepted")
	}
	if err := db.Exec(ctx, "SELECT nosuchcolumn"); err == nil || !strings.Contains(err.Error(), "code: 47") {
		t.Errorf("engine error %v, want clickhouse's code: 47 (UNKNOWN_IDENTIFIER)", err)
	}
}

func TestEmbeddedConcurrentUse(t *testing.T) {
	db := migratedEmbedded(t)
	ctx := context.Background()
	fs := benchFlows(5000)
	for i := range fs {
		fs[i].TimeReceivedMs = recent(int64(i))
	}
	b := store.NewFlowBatch(len(fs))
	b.Append(fs)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 4 {
		wg.Go(func() {
			for range 5 {
				if err := db.InsertFlows(ctx, b); err != nil {
					errs <- err
				}
			}
		})
		wg.Go(func() {
			for range 20 {
				var n uint64
				if err := store.QueryRow(ctx, db, []any{&n}, "SELECT count() FROM flows WHERE dst_port = ?", 443); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var n uint64
	if err := store.QueryRow(ctx, db, []any{&n}, "SELECT count() FROM flows"); err != nil || n != 4*5*5000 {
		t.Errorf("%d flows stored, want %d (%v)", n, 4*5*5000, err)
	}
	// A context that ends while waiting for a connection ends the wait.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := db.Exec(cctx, "SELECT 1"); err == nil {
		t.Error("Exec with a cancelled context succeeded")
	}
}

func TestEmbeddedFailedInsertLeavesTheEngineUsable(t *testing.T) {
	db := migratedEmbedded(t)
	ctx := context.Background()
	if err := db.Exec(ctx, "ALTER TABLE flows ADD CONSTRAINT no_666 CHECK dst_port != 666"); err != nil {
		t.Fatal(err)
	}
	bad := store.NewFlowBatch(2)
	bad.Append([]flow.Flow{{TimeReceivedMs: recent(0), DstPort: 1}, {TimeReceivedMs: recent(0), DstPort: 666}})
	for range 4 { // more than the pool's connections
		if err := db.InsertFlows(ctx, bad); err == nil || !strings.Contains(err.Error(), "insert 2 rows into flows: code: 469") {
			t.Fatalf("insert violating a constraint: %v, want VIOLATED_CONSTRAINT", err)
		}
	}
	good := store.NewFlowBatch(1)
	good.Append([]flow.Flow{{TimeReceivedMs: recent(0), DstPort: 1}})
	for range 4 {
		if err := db.InsertFlows(ctx, good); err != nil {
			t.Fatal(err)
		}
	}
	var n uint64
	if err := store.QueryRow(ctx, db, []any{&n}, "SELECT count() FROM flows"); err != nil || n != 4 {
		t.Fatalf("%d flows, %v; want the 4 good ones", n, err)
	}
}

// TestEmbeddedRetentionExpiresOldFlows checks that the embedded engine
// enforces retention by TTL: rows older than retention.flows go, recent
// ones stay, and the rollups keep their own, longer retention.
func TestEmbeddedRetentionExpiresOldFlows(t *testing.T) {
	db := migratedEmbedded(t)
	ctx := context.Background()
	old := time.Now().Add(-40 * 24 * time.Hour).UnixMilli() // past the 30-day default for flows
	in := []flow.Flow{
		{TimeReceivedMs: old, Protocol: flow.ProtoIPFIX, SamplingRate: 1, Bytes: 1, Packets: 1, Tenant: "acme"},
		{TimeReceivedMs: recent(0), Protocol: flow.ProtoIPFIX, SamplingRate: 1, Bytes: 2, Packets: 1, Tenant: "acme"},
	}
	b := store.NewFlowBatch(len(in))
	b.Append(in)
	if err := db.InsertFlows(ctx, b); err != nil {
		t.Fatal(err)
	}
	// TTL is applied at insert and by merges; OPTIMIZE forces the merge.
	for _, table := range []string{"flows", "flows_1m"} {
		if err := db.Exec(ctx, "OPTIMIZE TABLE "+table+" FINAL"); err != nil {
			t.Fatal(err)
		}
	}
	var flows, rollup uint64
	if err := store.QueryRow(ctx, db, []any{&flows}, "SELECT sum(bytes) FROM flows"); err != nil {
		t.Fatal(err)
	}
	if err := store.QueryRow(ctx, db, []any{&rollup}, "SELECT sum(bytes) FROM flows_1m"); err != nil {
		t.Fatal(err)
	}
	if flows != 2 {
		t.Errorf("flows keeps bytes %d, want only the recent row's 2", flows)
	}
	if rollup != 3 {
		t.Errorf("flows_1m keeps bytes %d, want both rows (3): its retention is 90 days", rollup)
	}
}

// The engine's merges run at clickhouse.embedded.engine_nice, below the
// collector's threads, and the other engine threads stay at theirs.
func TestEmbeddedMergesRunAtEngineNice(t *testing.T) {
	cfg := embeddedConfig(t, t.TempDir())
	cfg.Embedded.EngineNice = 13
	db, err := store.OpenEmbedded(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := migrations.Apply(ctx, db, migrations.Options{Retention: cfg.Retention}); err != nil {
		t.Fatal(err)
	}
	var setting string
	if err := store.QueryRow(ctx, db, []any{&setting}, "SELECT value FROM system.server_settings WHERE name = 'os_threads_nice_value_merge_mutate'"); err != nil || setting != "13" {
		t.Fatalf("the engine's os_threads_nice_value_merge_mutate = %q (%v), want 13", setting, err)
	}
	// The engine sets a merge thread's nice value for the time of each
	// merge task, so the threads are watched while parts are inserted
	// and merged until one is seen in a merge.
	batch := store.NewFlowBatch(20000)
	batch.Append(benchFlows(20000))
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := db.InsertFlows(ctx, batch); err != nil {
			t.Fatal(err)
		}
		for range 200 {
			nice := threadNice(t)
			for name, ns := range nice {
				if name != "MergeMutate" && slices.Contains(ns, 13) {
					t.Fatalf("%s threads at nice %v: only the merges should run at 13", name, ns)
				}
			}
			if slices.Contains(nice["MergeMutate"], 13) {
				return
			}
			time.Sleep(time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no MergeMutate thread seen at nice 13 in 60 s of inserts: %v", threadNice(t))
		}
	}
}

// threadNice is the nice value of each thread of this process, by name.
func threadNice(t *testing.T) map[string][]int {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/stat")
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of this process: %v", err)
	}
	nice := map[string][]int{}
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended
		}
		// pid (comm) state ppid ...: the name may hold spaces, so the
		// fields are counted from its closing parenthesis; nice is field 19.
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		f := strings.Fields(s[end+1:])
		if open < 0 || len(f) < 17 {
			t.Fatalf("%s: %q", p, s)
		}
		n, err := strconv.Atoi(f[16])
		if err != nil {
			t.Fatalf("%s: nice %q: %v", p, f[16], err)
		}
		name := s[open+1 : end]
		nice[name] = append(nice[name], n)
	}
	return nice
}
