package main

import (
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/internal/bypass"
)

// TestQueryRefusesTheBypassCorpus runs internal/bypass's attempts through
// flowhouse query: every one through a serving flowhouse's endpoint, and
// one expansion of each template with the data directory opened by the
// command itself (each run boots the engine, so not all of them). Each is
// refused with a ClickHouse exception, prints nothing of the canary, and
// touches no file of the watched directory.
func TestQueryRefusesTheBypassCorpus(t *testing.T) {
	const canary = "flowhouse-canary-0b1d5a"
	targets, err := bypass.NewTargets(t.TempDir(), canary)
	if err != nil {
		t.Fatal(err)
	}
	watch, err := bypass.NewWatch(targets.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	cases := bypass.Cases(targets)
	refused := func(path string, c bypass.Case) {
		t.Helper()
		code, out, errs := runCLI(t, "query", "-format", "tsv", c.Query)
		if code == 0 || !strings.Contains(errs, "DB::Exception") || strings.Contains(out+errs, canary) {
			t.Errorf("%s %s: exit %d %q %q\nquery %q", path, c.Name, code, out, errs, c.Query)
		}
		if events, err := watch.Events(); err != nil || len(events) > 0 {
			t.Fatalf("%s %s: files touched: %v %v\nquery %q", path, c.Name, events, err, c.Query)
		}
	}

	dir := t.TempDir()
	queryAddr, stop := startEmbeddedServe(t, dir)
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN", queryAddr)
	for _, c := range cases {
		refused("endpoint", c)
	}
	stop()
	t.Setenv("FLOWHOUSE_CLICKHOUSE_EMBEDDED_HTTP_LISTEN", "")
	start, local := time.Now(), 0
	for _, c := range cases {
		if c.Sep == "" || c.Sep == " " {
			refused("directory", c)
			local++
		}
	}
	t.Logf("%d attempts through the endpoint, %d with the directory opened by flowhouse query (%s)", len(cases), local, time.Since(start).Round(time.Millisecond))
}
