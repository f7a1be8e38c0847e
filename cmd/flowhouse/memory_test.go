package main

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flowgen"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/store"
)

// rssBytes is this process's resident set: serve, its engine and the
// collector all run in it.
func rssBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestQueryOverMemoryLimitIsRefusedAndGivesMemoryBack runs, through the
// query endpoint of a serving flowhouse, a query that needs more memory
// than clickhouse.embedded.query_max_memory_bytes while an exporter
// sends flows: the query is refused, every flow is stored meanwhile, and
// the process's RSS comes back to within 100 MB of where it was.
func TestQueryOverMemoryLimitIsRefusedAndGivesMemoryBack(t *testing.T) {
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_QUERY_MAX_MEMORY_BYTES", strconv.Itoa(1<<30))
	s := startServer(t, "embedded")
	endpoint := "http://" + s.query + "/"
	query := func(q string) (int, string, string) {
		resp, err := http.Post(endpoint, "text/plain", strings.NewReader(q))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-ClickHouse-Exception-Code"), string(body)
	}
	if status, _, body := query("SELECT count() FROM flows"); status != 200 {
		t.Fatalf("warm-up: %d %s", status, body)
	}
	before := rssBytes(t)

	gcfg := flowgen.DefaultConfig()
	gcfg.Target = s.listeners[0]
	gcfg.Exporters = 2
	gcfg.SourceBase = netip.MustParseAddr("127.0.1.1")
	gcfg.Protocols = []flowgen.Protocol{flowgen.NetFlowV5, flowgen.IPFIX}
	gcfg.Count = 20_000
	gcfg.Rate = 4_000
	gen, err := flowgen.New(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sent := make(chan *flowgen.Report, 1)
	go func() {
		r, err := gen.Run(ctx)
		if err != nil {
			t.Error(err)
		}
		sent <- r
	}()

	// One group, so nothing can spill: 200 M strings in one array.
	status, code, body := query("SELECT length(groupArray(toString(number))) FROM numbers(200000000)")
	peak := rssBytes(t)
	if status != 400 || code != "241" || !strings.Contains(body, "memory limit exceeded") {
		t.Errorf("over the memory limit: %d code %s %q, want 400 with code 241 (MEMORY_LIMIT_EXCEEDED)", status, code, body)
	}
	report := <-sent
	if report == nil {
		t.FailNow()
	}
	want := report.Total.Flows
	testkit.Eventually(t, "every flow sent meanwhile stored", 30*time.Second, func() bool {
		var n uint64
		_ = store.QueryRow(context.Background(), s.db, []any{&n}, "SELECT count() FROM flows")
		return n == want
	})
	var after int64
	testkit.Eventually(t, "RSS back within 100 MB", 30*time.Second, func() bool {
		after = rssBytes(t)
		return after < before+100<<20
	})
	t.Logf("RSS %d MB before, %d MB after the refused query, %d MB after it gave its memory back; %d flows stored meanwhile",
		before>>20, peak>>20, after>>20, want)
}
