package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/flowhouse/flowhouse/flow"
)

func TestDefaultConfigIsValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateNamesTheKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"addr without port", func(c *Config) { c.Addr = "localhost" }, "addr: \"localhost\" is not host:port"},
		{"addr bad port", func(c *Config) { c.Addr = "localhost:99999" }, "addr: port \"99999\""},
		{"database", func(c *Config) { c.Database = "flow-house" }, "database: \"flow-house\""},
		{"batch_rows", func(c *Config) { c.BatchRows = 0 }, "batch_rows: 0 must be at least 1"},
		{"batch_interval", func(c *Config) { c.BatchInterval = time.Millisecond }, "batch_interval: 1ms is shorter than 10ms"},
		{"writers", func(c *Config) { c.Writers = 0 }, "writers: 0 is outside 1..64"},
		{"insert_timeout", func(c *Config) { c.InsertTimeout = 0 }, "insert_timeout:"},
		{"compression", func(c *Config) { c.Compression = "gzip" }, "compression: \"gzip\" is not auto, lz4, zstd or none"},
		{"dial_timeout", func(c *Config) { c.DialTimeout = 0 }, "dial_timeout:"},
		{"retry.initial", func(c *Config) { c.Retry.Initial = 0 }, "retry.initial:"},
		{"retry.max", func(c *Config) { c.Retry.Max = time.Millisecond }, "retry.max: 1ms is shorter than retry.initial"},
		{"retry.max_elapsed", func(c *Config) { c.Retry.MaxElapsed = -1 }, "retry.max_elapsed:"},
		{"stop_timeout", func(c *Config) { c.StopTimeout = 0 }, "stop_timeout:"},
		{"retention.flows", func(c *Config) { c.Retention.Flows = time.Minute }, "retention.flows: 1m0s must be 0 (keep forever) or at least 1h"},
		{"retention.flows_1h", func(c *Config) { c.Retention.Flows1h = -time.Hour }, "retention.flows_1h:"},
		{"retention.check_interval", func(c *Config) { c.Retention.CheckInterval = 0 }, "retention.check_interval:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.change(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	c := DefaultConfig()
	c.Retention.Flows = 0
	if err := c.Validate(); err != nil {
		t.Fatalf("retention 0 (forever) rejected: %v", err)
	}
}

func TestLogValueHidesPassword(t *testing.T) {
	c := DefaultConfig()
	c.Password = "hunter2"
	if s := c.LogValue().String(); strings.Contains(s, "hunter2") || !strings.Contains(s, "REDACTED") {
		t.Fatalf("LogValue = %s", s)
	}
}

func TestCapabilitiesOf(t *testing.T) {
	for _, tc := range []struct {
		version string
		modern  bool
		err     bool
	}{
		{"18.16.1", false, false},
		{"19.17.4.11", false, false},
		{"20.3.1.1", true, false},
		{"21.8.15.7", true, false},
		{"26.7.3.1", true, false},
		{"x.y", false, true},
		{"21", false, true},
	} {
		c, err := CapabilitiesOf(tc.version)
		if (err != nil) != tc.err {
			t.Errorf("%s: err = %v", tc.version, err)
			continue
		}
		if c.IPv6 != tc.modern || c.TTL != tc.modern || c.Codecs != tc.modern || c.LowCardinality != tc.modern || c.AlterIfNotExists != tc.modern {
			t.Errorf("%s: %+v, want modern=%v", tc.version, c, tc.modern)
		}
	}
}

func testFlow(i int) flow.Flow {
	return flow.Flow{
		TimeReceivedMs: 1_700_000_000_000 + int64(i), TimeStartMs: 1_699_999_999_000, TimeEndMs: 1_700_000_000_500,
		Protocol: flow.ProtoIPFIX, ExporterAddr: flow.AddrFrom4([4]byte{192, 0, 2, byte(i)}), ExporterPort: 4739,
		ObservationDomain: 7, SamplerID: 2, SamplingRate: 1000, Direction: flow.DirEgress,
		InIf: 10, OutIf: 20, SrcAddr: flow.AddrFrom4([4]byte{10, 0, 0, 1}), DstAddr: flow.AddrFrom4([4]byte{10, 0, 0, 2}),
		SrcPort: 443, DstPort: uint16(i), IPProto: 6, TCPFlags: 0x12, ToS: 8, IPVersion: 4,
		SrcMask: 24, DstMask: 16, SrcVLAN: 100, DstVLAN: 200, SrcMAC: 0x0000_5e00_5301, DstMAC: 0x0200_0000_0001,
		SrcAS: 64500, DstAS: 64501, Bytes: uint64(1500 * i), Packets: uint64(i), FlowLabel: 0xabcde,
		Tenant: "acme", ExporterName: "edge1", InIfName: "xe-0/0/0", InIfDescription: "transit", InIfSpeedMbps: 10000,
		InIfBoundary: "external", OutIfName: "xe-0/0/1", OutIfDescription: "core", OutIfSpeedMbps: 1 << 40,
		OutIfBoundary: "internal", SrcVendor: "ICANN, IANA Department", DstVendor: "",
	}
}

func TestFlowBatchRoundTrip(t *testing.T) {
	flows := make([]flow.Flow, 5)
	for i := range flows {
		flows[i] = testFlow(i)
	}
	b := NewFlowBatch(2)
	b.Append(flows[:2])
	b.Append(flows[2:])
	if b.Len() != 5 {
		t.Fatalf("Len = %d", b.Len())
	}
	for i, want := range flows {
		// Speeds above 32 bits are clamped; everything else is kept.
		want.OutIfSpeedMbps = 1<<32 - 1
		if got := b.Flow(i); got != want {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
	b.Reset()
	if b.Len() != 0 {
		t.Fatalf("after Reset: len %d", b.Len())
	}
	// Reset keeps the memory: the same flows go back in without allocating.
	if allocs := testing.AllocsPerRun(10, func() { b.Reset(); b.Append(flows) }); allocs != 0 {
		t.Fatalf("after Reset: Append allocates %.1f times", allocs)
	}
}

func TestFlowBatchAppendDoesNotAllocateOnceGrown(t *testing.T) {
	flows := make([]flow.Flow, 64)
	for i := range flows {
		flows[i] = testFlow(i)
	}
	b := NewFlowBatch(1024)
	allocs := testing.AllocsPerRun(100, func() {
		if b.Len() >= 1024-64 {
			b.Reset()
		}
		b.Append(flows)
	})
	if allocs != 0 {
		t.Fatalf("Append allocates %.1f times per call", allocs)
	}
}

func TestFixedViewsShareTheRows(t *testing.T) {
	rows := [][16]byte{{1, 2}, {15: 9}}
	views := fixedViews(nil, rows)
	if len(views) != 2 || views[0][0] != 1 || views[0][1] != 2 || views[1][15] != 9 || len(views[1]) != 16 {
		t.Fatalf("views = %v", views)
	}
	rows[1][15] = 7
	if views[1][15] != 7 {
		t.Fatal("views copied the rows")
	}
	if allocs := testing.AllocsPerRun(10, func() { views = fixedViews(views, rows) }); allocs != 0 {
		t.Fatalf("fixedViews allocates %.0f times when reused", allocs)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("insert: %w", context.DeadlineExceeded), errTimeout},
		{&net.OpError{Op: "read", Err: timeoutErr{}}, errTimeout},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, errConnection},
		{fmt.Errorf("read: %w", io.EOF), errConnection},
		{fmt.Errorf("insert: %w", &clickhouse.Exception{Code: 60, Message: "Table doesn't exist"}), errServer},
		{errors.New("something else"), errOther},
	} {
		if got := ErrorReason(tc.err); got != tc.want {
			t.Errorf("ErrorReason(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}

func TestPartitionEnd(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want string
		ok   bool
	}{
		{"20240229", "2024-03-01T00:00:00Z", true},
		{"20241231", "2025-01-01T00:00:00Z", true},
		{"202412", "2025-01-01T00:00:00Z", true},
		{"202402", "2024-03-01T00:00:00Z", true},
		{"all", "", false},
		{"2024021", "", false},
		{"20241340", "", false},
	} {
		got, ok := partitionEnd(tc.id)
		if ok != tc.ok || (ok && got.Format(time.RFC3339) != tc.want) {
			t.Errorf("partitionEnd(%q) = %s, %v; want %s, %v", tc.id, got.Format(time.RFC3339), ok, tc.want, tc.ok)
		}
	}
}

// auto compresses only what crosses a network: none to a server on a
// loopback address, lz4 to any other; a method set is kept.
func TestWireCompression(t *testing.T) {
	for _, tc := range []struct{ compression, addr, want string }{
		{"auto", "127.0.0.1:9000", "none"},
		{"auto", "[::1]:9000", "none"},
		{"auto", "localhost:9000", "none"},
		{"auto", "ch1.example:9000", "lz4"},
		{"auto", "10.0.0.5:9000", "lz4"},
		{"zstd", "127.0.0.1:9000", "zstd"},
		{"lz4", "127.0.0.1:9000", "lz4"},
		{"none", "ch1.example:9000", "none"},
	} {
		c := DefaultConfig()
		c.Compression, c.Addr = tc.compression, tc.addr
		if got := c.WireCompression(); got != tc.want {
			t.Errorf("compression %s to %s: %s, want %s", tc.compression, tc.addr, got, tc.want)
		}
	}
}
