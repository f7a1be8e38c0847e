package queryapi_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// TestClickHouseGoHTTP: clickhouse-go v2 over its HTTP protocol, the one
// Grafana's ClickHouse datasource uses, against the endpoint: it reads
// Native blocks for its client_protocol_version, binds {name:Type}
// parameters on the server, sends settings and compresses.
func TestClickHouseGoHTTP(t *testing.T) {
	ep := newEndpoint(t, "", defaultOpts)
	u, _ := url.Parse(ep.url)
	for _, method := range []clickhouse.CompressionMethod{clickhouse.CompressionNone, clickhouse.CompressionGZIP, clickhouse.CompressionDeflate, clickhouse.CompressionBrotli, clickhouse.CompressionLZ4, clickhouse.CompressionZSTD} {
		t.Run(method.String(), func(t *testing.T) {
			conn, err := clickhouse.Open(&clickhouse.Options{
				Addr: []string{u.Host}, Protocol: clickhouse.HTTP,
				Compression: &clickhouse.Compression{Method: method},
				DialTimeout: 5 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // sends max_execution_time=35, above the 5 s limit
			defer cancel()
			if err := conn.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			checkClickHouseGo(ctx, t, conn)
		})
	}
}

func checkClickHouseGo(ctx context.Context, t *testing.T, conn clickhouse.Conn) {
	t.Helper()
	// Column types as a dashboard meets them.
	rows, err := conn.Query(ctx, `SELECT n, s, a, d, toIPv4('10.0.0.1') AS ip, n / 2 AS f, if(n = 2, NULL, n) AS maybe,
		toLowCardinality(s) AS lc, toDateTime64(d, 3) AS d64 FROM t ORDER BY n`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var (
			n     uint64
			s, lc string
			a     []uint32
			d     time.Time
			ip    net.IP
			f     float64
			maybe *uint64
			d64   time.Time
		)
		if err := rows.Scan(&n, &s, &a, &d, &ip, &f, &maybe, &lc, &d64); err != nil {
			t.Fatal(err)
		}
		m := "NULL"
		if maybe != nil {
			m = "set"
		}
		got = append(got, s+"|"+lc+"|"+ip.String()+"|"+d.UTC().Format(time.DateTime)+"|"+d64.UTC().Format(time.DateTime)+"|"+m+"|"+fmtAny(n, a, f))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"one|one|10.0.0.1|2023-11-14 22:13:20|2023-11-14 22:13:20|set|1 [1] 0.5",
		"tab\there|tab\there|10.0.0.1|2023-11-14 22:13:21|2023-11-14 22:13:21|NULL|2 [] 1",
		"quote'\"|quote'\"|10.0.0.1|2023-11-14 22:13:22|2023-11-14 22:13:22|set|3 [3 4] 1.5",
	}
	if fmtAny(got) != fmtAny(want) {
		t.Errorf("rows:\n got %q\nwant %q", got, want)
	}
	// Server-side parameters, and an injection attempt in one.
	pctx := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"s": `quote'"`, "n": "2", "evil": "x'; DROP TABLE t; --"}))
	var count uint64
	var evil string
	if err := conn.QueryRow(pctx, "SELECT count(), {evil:String} FROM t WHERE s = {s:String} OR n = {n:UInt64}").Scan(&count, &evil); err != nil || count != 2 || evil != "x'; DROP TABLE t; --" {
		t.Errorf("parameters: %d %q %v", count, evil, err)
	}
	// clickhouse.Named is bound by the client, as a literal.
	if err := conn.QueryRow(ctx, "SELECT count() FROM t WHERE s = @s", clickhouse.Named("s", "one")).Scan(&count); err != nil || count != 1 {
		t.Errorf("Named: %d %v", count, err)
	}
	// Settings (max_execution_time is the context's deadline + 5 s here,
	// which the 5 s limit overrides).
	var setting string
	sctx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_result_rows": 2, "session_timezone": "Asia/Tokyo"}))
	var tz string
	if err := conn.QueryRow(sctx, "SELECT getSetting('max_result_rows')::String, timezone()").Scan(&setting, &tz); err != nil || setting != "2" || tz != "Asia/Tokyo" {
		t.Errorf("settings: %q %q %v", setting, tz, err)
	}
	err = conn.QueryRow(clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"allow_ddl": 1})), "SELECT 1").Scan(new(uint8))
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) || ex.Code != 164 {
		t.Errorf("a refused setting: %v", err)
	}
	// Exceptions.
	for query, code := range map[string]int32{"SELECT * FROM no_such_table": 60, "DROP TABLE t": 164, "SELECT file('/etc/hostname')": 164} {
		_, err := conn.Query(ctx, query)
		if !errors.As(err, &ex) || ex.Code != code {
			t.Errorf("%s: %v, want exception %d", query, err, code)
		}
	}
	if err := conn.Exec(ctx, "INSERT INTO t VALUES (9, 'x', [], 0)"); !errors.As(err, &ex) || ex.Code != 164 {
		t.Errorf("INSERT: %v", err)
	}
	// An empty result.
	rows, err = conn.Query(ctx, "SELECT n FROM t WHERE n > 100")
	if err != nil || rows.Next() || rows.Err() != nil {
		t.Errorf("empty result: %v %v", err, rows.Err())
	}
}

func fmtAny(v ...any) string { return fmt.Sprint(v...) }
