package queryapi_test

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/ClickHouse/ch-go/compress"
	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// TestQueryParameters: {name:Type} takes param_name, bound by the engine
// as a value of the declared type, in ClickHouse's escaped text format.
func TestQueryParameters(t *testing.T) {
	ep := newEndpoint(t, "", defaultOpts)
	for _, tc := range []struct {
		name, query string
		params      []string
		want        string // TabSeparated
	}{
		{"String with quotes and backslashes", "SELECT {s:String}, length({s:String})", []string{"param_s", `it\'s a \\ and "q"`}, "it\\'s a \\\\ and \"q\"\t16\n"},
		{"String unescaped quote", "SELECT {s:String}", []string{"param_s", `a'b`}, "a\\'b\n"},
		{"UInt64", "SELECT {n:UInt64} + 1, toTypeName({n:UInt64})", []string{"param_n", "18446744073709551614"}, "18446744073709551615\tUInt64\n"},
		{"Array(String)", "SELECT {a:Array(String)}, length({a:Array(String)})", []string{"param_a", `['x','y\'z']`}, "['x','y\\'z']\t2\n"},
		{"DateTime", "SELECT toUnixTimestamp({d:DateTime('UTC')})", []string{"param_d", "2023-11-14 22:13:20"}, "1700000000\n"},
		{"IPv4", "SELECT {ip:IPv4}, toUInt32({ip:IPv4})", []string{"param_ip", "10.0.0.1"}, "10.0.0.1\t167772161\n"},
		{"IPv6, IPv4-mapped", "SELECT {ip:IPv6} = toIPv6('10.0.0.1')", []string{"param_ip", "::ffff:10.0.0.1"}, "1\n"},
		{"in a WHERE on a table", "SELECT n FROM t WHERE s = {s:String} ORDER BY n", []string{"param_s", `quote\'"`}, "3\n"},
		{"an unused parameter", "SELECT 1", []string{"param_x", "y"}, "1\n"},
		{"named like a setting, it is a value", "SELECT {max_execution_time:UInt64}, getSetting('max_execution_time')", []string{"param_max_execution_time", "100000"}, "100000\t5\n"},
		{"param_readonly is no setting", "SELECT {readonly:UInt8}, getSetting('readonly')", []string{"param_readonly", "0"}, "0\t1\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := get(t, ep.url, tc.query, tc.params...)
			if a.status != 200 || a.body != tc.want {
				t.Errorf("%d %q, want %q", a.status, a.body, tc.want)
			}
		})
	}
}

// TestParameterInjection: a value is a literal of its type, whatever it
// holds; what the guard refuses stays refused with parameters present.
func TestParameterInjection(t *testing.T) {
	ep := newEndpoint(t, "", defaultOpts)
	for _, tc := range []struct {
		name, query string
		params      []string
		status      int
		code, body  string
	}{
		{"quote and second statement", "SELECT count() FROM t WHERE s = {s:String}", []string{"param_s", `x'; DROP TABLE t; --`}, 200, "", "0\n"},
		{"escaped quote and UNION", "SELECT {s:String}", []string{"param_s", `x\' UNION SELECT file('/etc/hostname') --`}, 200, "", "x\\' UNION SELECT file(\\'/etc/hostname\\') --\n"},
		{"a UInt64 that is SQL", "SELECT {n:UInt64}", []string{"param_n", "1 OR 1=1"}, 400, "457", ""},
		{"an Identifier that is a table function", "SELECT * FROM {t:Identifier}", []string{"param_t", "file('/etc/hostname')"}, 404, "60", ""},
		{"a missing parameter", "SELECT {n:UInt64}", nil, 400, "456", ""},
		{"a write", "INSERT INTO t SELECT {n:UInt64}, '', [], 0", []string{"param_n", "9"}, 403, "164", ""},
		{"file()", "SELECT file({p:String})", []string{"param_p", "/etc/hostname"}, 403, "164", ""},
		{"a SETTINGS clause raising a limit", "SELECT {n:UInt64} SETTINGS max_execution_time = 1000", []string{"param_n", "1"}, 403, "164", ""},
		{"several statements", "SELECT {n:UInt64}; DROP TABLE t", []string{"param_n", "1"}, 400, "62", ""},
		{"INTO OUTFILE", "SELECT {n:UInt64} INTO OUTFILE '/tmp/flowhouse-param-test'", []string{"param_n", "1"}, 403, "164", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := get(t, ep.url, tc.query, tc.params...)
			code := a.header.Get("X-ClickHouse-Exception-Code")
			if a.status != tc.status || code != tc.code || (tc.body != "" && a.body != tc.body) || strings.Contains(a.body, "localhost") {
				t.Errorf("%d code %q %q; want %d code %q %q", a.status, code, a.body, tc.status, tc.code, tc.body)
			}
		})
	}
	if a := get(t, ep.url, "SELECT count() FROM t"); a.body != "3\n" {
		t.Errorf("t has %q rows after the attempts, want 3", a.body)
	}
}

// TestSettings: output settings and lower limits apply; a higher limit
// keeps the configured one; anything else is refused as ClickHouse does.
func TestSettings(t *testing.T) {
	ep := newEndpoint(t, "", defaultOpts) // max_execution_time 5 s
	for _, tc := range []struct {
		name, query string
		params      []string
		status      int
		code, body  string
	}{
		{"64-bit integers quoted in JSON", "SELECT toUInt64(7) AS n FORMAT JSONEachRow", []string{"output_format_json_quote_64bit_integers", "1"}, 200, "", "{\"n\":\"7\"}\n"},
		{"64-bit integers bare in JSON", "SELECT toUInt64(7) AS n FORMAT JSONEachRow", []string{"output_format_json_quote_64bit_integers", "0"}, 200, "", "{\"n\":7}\n"},
		{"date_time_output_format", "SELECT d FROM t WHERE n = 1", []string{"date_time_output_format", "iso"}, 200, "", "2023-11-14T22:13:20Z\n"},
		{"session_timezone", "SELECT timezone(), toString(toDateTime(1700000000))", []string{"session_timezone", "Europe/Paris"}, 200, "", "Europe/Paris\t2023-11-14 23:13:20\n"},
		{"a lower max_execution_time", "SELECT getSetting('max_execution_time')", []string{"max_execution_time", "2"}, 200, "", "2\n"},
		{"a higher max_execution_time keeps the limit", "SELECT getSetting('max_execution_time')", []string{"max_execution_time", "100000"}, 200, "", "5\n"},
		{"max_execution_time 0 keeps the limit", "SELECT getSetting('max_execution_time')", []string{"max_execution_time", "0"}, 200, "", "5\n"},
		{"max_result_rows", "SELECT number FROM numbers(10)", []string{"max_result_rows", "3"}, 400, "396", ""},
		{"max_result_rows with break", "SELECT number FROM numbers(100000) LIMIT 3", []string{"max_result_rows", "100", "result_overflow_mode", "break"}, 200, "", "0\n1\n2\n"},
		{"readonly=1 is what it is", "SELECT 1", []string{"readonly", "1"}, 200, "", "1\n"},
		{"client-side parameters", "SELECT 1", []string{"database", "default", "query_id", "q1", "session_id", "s", "user", "default", "send_progress_in_http_headers", "1", "wait_end_of_query", "1", "extremes", "0"}, 200, "", "1\n"},
		{"readonly=0", "SELECT 1", []string{"readonly", "0"}, 403, "164", ""},
		{"a setting that changes parsing", "SELECT 1", []string{"dialect", "kusto"}, 403, "164", ""},
		{"allow_ddl", "SELECT 1", []string{"allow_ddl", "1"}, 403, "164", ""},
		{"a setting that names a file", "SELECT 1", []string{"format_schema", "/etc/hostname"}, 403, "164", ""},
		{"an unknown setting", "SELECT 1", []string{"no_such_setting", "1"}, 400, "115", ""},
		{"a limit that is not a number", "SELECT 1", []string{"max_result_rows", "many"}, 400, "72", ""},
		{"an unknown time zone", "SELECT 1", []string{"session_timezone", "Nowhere/Atlantis"}, 400, "36", ""},
		{"another database", "SELECT 1", []string{"database", "other"}, 404, "81", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := get(t, ep.url, tc.query, tc.params...)
			code := a.header.Get("X-ClickHouse-Exception-Code")
			if a.status != tc.status || code != tc.code || (tc.body != "" && a.body != tc.body) {
				t.Errorf("%d code %q %q; want %d code %q %q", a.status, code, a.body, tc.status, tc.code, tc.body)
			}
		})
	}
	// The session's time zone is the answer's.
	if a := get(t, ep.url, "SELECT 1", "session_timezone", "Asia/Tokyo"); a.header.Get("X-ClickHouse-Timezone") != "Asia/Tokyo" {
		t.Errorf("X-ClickHouse-Timezone %q with session_timezone", a.header.Get("X-ClickHouse-Timezone"))
	}
}

// TestCompression: enable_http_compression=1 encodes the answer as
// Accept-Encoding asks; compress=1 writes ClickHouse's compressed blocks;
// request bodies are decoded.
func TestCompression(t *testing.T) {
	ep := newEndpoint(t, "", defaultOpts)
	q := "SELECT number, 'exporter-' || toString(number % 10) FROM numbers(100000)"
	want := get(t, ep.url, q).body
	decoders := map[string]func(io.Reader) (io.Reader, error){
		"gzip":    func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) },
		"deflate": func(r io.Reader) (io.Reader, error) { return zlib.NewReader(r) },
		"br":      func(r io.Reader) (io.Reader, error) { return brotli.NewReader(r), nil },
		"zstd":    func(r io.Reader) (io.Reader, error) { return zstd.NewReader(r) },
	}
	for _, tc := range []struct{ accept, enable, want string }{
		{"gzip", "1", "gzip"},
		{"deflate", "1", "deflate"},
		{"br", "1", "br"},
		{"zstd", "1", "zstd"},
		{"gzip;q=0.5, br;q=0.9, deflate;q=0", "1", "br"},
		{"gzip", "0", ""},
		{"identity", "1", ""},
	} {
		req, _ := http.NewRequest(http.MethodGet, ep.url+"/?"+url.Values{"query": {q}, "enable_http_compression": {tc.enable}}.Encode(), nil)
		req.Header.Set("Accept-Encoding", tc.accept)
		resp, err := http.DefaultTransport.RoundTrip(req) // no transparent gzip
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("Content-Encoding"); got != tc.want {
			t.Errorf("Accept-Encoding %q, enable %s: Content-Encoding %q, want %q", tc.accept, tc.enable, got, tc.want)
			continue
		}
		body := raw
		if tc.want != "" {
			r, err := decoders[tc.want](bytes.NewReader(raw))
			if err == nil {
				body, err = io.ReadAll(r)
			}
			if err != nil {
				t.Errorf("%s: %v", tc.want, err)
			}
			if len(raw) >= len(want)/2 {
				t.Errorf("%s: %d bytes for %d", tc.want, len(raw), len(want))
			}
		}
		if string(body) != want {
			t.Errorf("%s: the decoded answer differs (%d bytes, want %d)", tc.want, len(body), len(want))
		}
	}
	for _, method := range []string{"LZ4", "ZSTD"} {
		a := get(t, ep.url, q, "compress", "1", "network_compression_method", method)
		body, err := io.ReadAll(compress.NewReader(strings.NewReader(a.body)))
		if errors.Is(err, io.EOF) { // ch-go's reader says so at the end
			err = nil
		}
		if err != nil || string(body) != want || len(a.body) >= len(want) {
			t.Errorf("compress=1 %s: %v, %d bytes decoded to %d (want %d)", method, err, len(a.body), len(body), len(want))
		}
	}
	// Request bodies.
	for name, enc := range map[string]func(io.Writer) io.WriteCloser{
		"gzip":    func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) },
		"deflate": func(w io.Writer) io.WriteCloser { return zlib.NewWriter(w) },
		"zstd":    func(w io.Writer) io.WriteCloser { z, _ := zstd.NewWriter(w); return z },
	} {
		var b bytes.Buffer
		z := enc(&b)
		io.WriteString(z, "SELECT count() FROM t")
		z.Close()
		req, _ := http.NewRequest(http.MethodPost, ep.url+"/", &b)
		req.Header.Set("Content-Encoding", name)
		if a := do(t, req); a.status != 200 || a.body != "3\n" {
			t.Errorf("%s body: %d %q", name, a.status, a.body)
		}
	}
}

// TestHeaders: the query id, the summary, the server's name.
func TestHeaders(t *testing.T) {
	ep := newEndpoint(t, "", defaultOpts)
	a := get(t, ep.url, "SELECT count() FROM numbers(1000)", "query_id", "my-query-1")
	if a.status != 200 || a.header.Get("X-ClickHouse-Query-Id") != "my-query-1" || a.header.Get("X-ClickHouse-Server-Display-Name") == "" {
		t.Fatalf("%d %v", a.status, a.header)
	}
	var sum map[string]string
	if err := json.Unmarshal([]byte(a.header.Get("X-ClickHouse-Summary")), &sum); err != nil {
		t.Fatalf("X-ClickHouse-Summary %q: %v", a.header.Get("X-ClickHouse-Summary"), err)
	}
	for k, want := range map[string]string{"read_rows": "1000", "read_bytes": "8000", "result_rows": "1", "result_bytes": "8", "written_rows": "0", "written_bytes": "0", "total_rows_to_read": "0"} {
		if sum[k] != want {
			t.Errorf("summary %s = %q, want %q (%v)", k, sum[k], want, sum)
		}
	}
	if sum["elapsed_ns"] == "" || sum["elapsed_ns"] == "0" {
		t.Errorf("summary elapsed_ns %q", sum["elapsed_ns"])
	}
	// Without query_id, a UUID; an exception carries it too.
	a = get(t, ep.url, "SELECT * FROM no_such_table")
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(a.header.Get("X-ClickHouse-Query-Id")) || a.status != 404 {
		t.Errorf("%d, query id %q", a.status, a.header.Get("X-ClickHouse-Query-Id"))
	}
	for _, path := range []string{"/replicas_status", "/ping"} {
		req, _ := http.NewRequest(http.MethodGet, ep.url+path, nil)
		if a := do(t, req); a.status != 200 || a.body != "Ok.\n" {
			t.Errorf("%s: %d %q", path, a.status, a.body)
		}
	}
}

// TestErrorAfterOutput: an error in the second chunk of output, or later
// with wait_end_of_query=1, is still answered with its own status, since
// the headers wait for it; later, the answer is broken off.
func TestErrorAfterOutput(t *testing.T) {
	ep := newEndpoint(t, "", defaultOpts)
	for _, tc := range []struct {
		name   string
		query  string
		params []string
		status int
	}{
		{"in the second chunk", "SELECT throwIf(number = 100000, 'boom') FROM numbers(1000000)", nil, 500},
		{"late, waiting for the end", "SELECT throwIf(number = 900000, 'boom') FROM numbers(1000000)", []string{"wait_end_of_query", "1"}, 500},
	} {
		a := get(t, ep.url, tc.query, tc.params...)
		if a.status != tc.status || a.header.Get("X-ClickHouse-Exception-Code") != "395" || !strings.HasPrefix(a.body, "Code: 395.") {
			t.Errorf("%s: %d %v %.200q", tc.name, a.status, a.header, a.body)
		}
	}
	resp, err := http.Get(ep.url + "/?" + url.Values{"query": {"SELECT throwIf(number = 900000, 'boom') FROM numbers(1000000)"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || err == nil || !strings.Contains(string(body), "Code: 395.") {
		t.Errorf("streamed: %d, read error %v, %d bytes", resp.StatusCode, err, len(body))
	}
}
