package queryapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClickHouseJSClient runs the official JS client, @clickhouse/client
// (installed by scripts/clickhouse-js.sh), under node against the
// endpoint: formats, query parameters of several types, an injection in
// one, settings, compressed responses, query_id, exceptions.
func TestClickHouseJSClient(t *testing.T) {
	if os.Getenv("FLOWHOUSE_SKIP_JS_CLIENT") != "" {
		t.Skip("FLOWHOUSE_SKIP_JS_CLIENT is set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	install, err := exec.CommandContext(ctx, filepath.Join("..", "scripts", "clickhouse-js.sh"), "install").Output()
	if err != nil {
		t.Fatalf("scripts/clickhouse-js.sh install: %v %s (set FLOWHOUSE_SKIP_JS_CLIENT=1 to skip this test)", err, stderrOf(err))
	}
	ep := newEndpoint(t, "", defaultOpts)
	cmd := exec.CommandContext(ctx, "node", filepath.Join("testdata", "clickhouse-js.mjs"), strings.TrimSpace(string(install)), ep.url)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	for name, want := range map[string]string{
		"ping":             `true`,
		"JSONEachRow":      `[{"n":1,"s":"one"},{"n":2,"s":"tab\there"},{"n":3,"s":"quote'\""}]`,
		"JSON":             `{"rows":3,"data":[{"n":1,"s":"one"},{"n":2,"s":"tab\there"},{"n":3,"s":"quote'\""}],"meta":["UInt64","String"]}`,
		"CSV":              `"1,\"one\"\n2,\"tab\there\"\n3,\"quote'\"\"\"\n"`,
		"TabSeparated":     `"1\tone\n2\ttab\\there\n3\tquote\\'\"\n"`,
		"params":           `[{"s":"it's a \\ and \"q\"\ttab","len":20,"n":42,"a":["x","y'z","back\\slash"],"d":1700000000,"ip":"10.0.0.1"}]`,
		"param on a table": `[{"n":3}]`,
		"injection":        `{"got":[{"c":0,"v":"x' OR 1=1; DROP TABLE t; --"}],"left":[{"c":3}]}`,
		"missing param":    `{"error_code":"456"}`,
		"settings":         `[{"n":"7","d":"2023-11-14T22:13:20Z","mrr":"5"}]`,
		"refused setting":  `{"error_code":"164"}`,
		"compressed":       `{"rows":20000,"last":{"n":19999,"e":"exporter"},"encoding":"gzip"}`,
		"query_id":         `{"query_id":"js-query-1","header":"js-query-1","result_rows":"1"}`,
		"unknown table":    `{"error_code":"60"}`,
		"command DROP":     `{"error_code":"164"}`,
		"insert":           `{"error_code":"164"}`,
	} {
		raw, ok := got[name]
		if !ok {
			t.Errorf("%s: not observed", name)
			continue
		}
		if !sameJSON(t, raw, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, raw, want)
		}
	}
}

// sameJSON compares got with want, ignoring in got the "message" of an
// error (its code is compared).
func sameJSON(t *testing.T, got json.RawMessage, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %s: %v", want, err)
	}
	if m, ok := g.(map[string]any); ok {
		delete(m, "message")
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	return bytes.Equal(gb, wb)
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
