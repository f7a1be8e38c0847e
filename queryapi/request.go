package queryapi

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/ClickHouse/ch-go/compress"

	"github.com/flowhouse/flowhouse/store"
)

// request is what a query's URL parameters and headers ask for, besides
// the query: ClickHouse's HTTP interface takes parameters of its own,
// query parameters (param_NAME), and every other parameter as a setting.
type request struct {
	format   string
	queryID  string
	params   []store.Param
	settings []store.Setting
	timezone string // session_timezone, when asked for

	httpCompression bool   // enable_http_compression=1
	acceptEncoding  string // the request's Accept-Encoding
	zlibLevel       int    // http_zlib_compression_level
	blocks          bool   // compress=1: ClickHouse's compressed blocks
	blockMethod     compress.Method
	blockLevel      int
	decompress      bool   // decompress=1: the body is in compressed blocks
	wait            bool   // wait_end_of_query=1: the whole result before the headers
	clientRevision  uint64 // client_protocol_version, for Native
}

// httpError is an answer to a bad request, as an exception.
type httpError struct {
	status, code int
	name, msg    string
}

func (e *httpError) Error() string { return e.msg }

func badArgument(format string, args ...any) *httpError {
	return &httpError{http.StatusBadRequest, codeBadArguments, "BAD_ARGUMENTS", fmt.Sprintf(format, args...)}
}

// ClickHouse's codes for what only this file reports.
const (
	codeBadArguments       = 36
	codeUnknownCompression = 378 // UNKNOWN_COMPRESSION_METHOD
)

// ignoredParams are parameters of the HTTP interface that change nothing
// here: authentication (read by authorized), sessions (every query runs
// on its own; SET and temporary tables are refused anyway), progress
// headers (not sent) and buffering and CORS options.
var ignoredParams = map[string]bool{
	"query": true, "user": true, "password": true, "quota_key": true,
	"session_id": true, "session_timeout": true, "session_check": true,
	"send_progress_in_http_headers": true, "http_headers_progress_interval_ms": true,
	"buffer_size": true, "http_response_buffer_size": true,
	"cancel_http_readonly_queries_on_client_close": true, "add_http_cors_header": true,
	"http_write_exception_in_output_format":                      true,
	"http_native_compression_disable_checksumming_on_decompress": true,
}

// parseRequest reads the request's parameters; database is the one the
// queries run in, which a client may name (or "default", clients'
// default).
func parseRequest(values url.Values, h http.Header, database string) (*request, error) {
	req := &request{format: values.Get("default_format"), blockMethod: compress.LZ4, acceptEncoding: h.Get("Accept-Encoding")}
	if req.format == "" {
		req.format = h.Get("X-ClickHouse-Format")
	}
	if req.format == "" {
		req.format = DefaultFormat
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys) // settings apply in a stable order
	for _, k := range keys {
		if err := req.take(k, values.Get(k), database); err != nil {
			return nil, err
		}
	}
	if db := h.Get("X-ClickHouse-Database"); db != "" {
		if err := req.take("database", db, database); err != nil {
			return nil, err
		}
	}
	if req.queryID == "" {
		req.queryID = newUUID()
	}
	return req, nil
}

// take reads one parameter.
func (req *request) take(k, v, database string) error {
	var err error
	switch {
	case ignoredParams[k] || k == "default_format":
	case strings.HasPrefix(k, "param_"):
		// A parameter is a value of {name:Type}, whatever its name: one
		// named like a setting is no setting.
		if k == "param_" {
			return badArgument("a query parameter needs a name: param_NAME=value")
		}
		req.params = append(req.params, store.Param{Name: k[len("param_"):], Value: v})
	case k == "database":
		if v != "" && v != "default" && v != database {
			return &httpError{http.StatusNotFound, store.CodeUnknownDatabase, "UNKNOWN_DATABASE",
				fmt.Sprintf("Database %s does not exist here: this endpoint queries the database %s", v, database)}
		}
	case k == "query_id":
		if len(v) > 256 || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
			return badArgument("query_id must be at most 256 printable ASCII characters")
		}
		req.queryID = v
	case k == "enable_http_compression":
		req.httpCompression, err = boolParam(k, v)
	case k == "http_zlib_compression_level":
		req.zlibLevel, err = intParam(k, v, 1, 9)
	case k == "compress":
		req.blocks, err = boolParam(k, v)
	case k == "decompress":
		req.decompress, err = boolParam(k, v)
	case k == "network_compression_method":
		switch strings.ToUpper(v) {
		case "LZ4":
			req.blockMethod = compress.LZ4
		case "LZ4HC":
			req.blockMethod = compress.LZ4HC
		case "ZSTD":
			req.blockMethod = compress.ZSTD
		case "NONE":
			req.blockMethod = compress.None
		default:
			return &httpError{http.StatusBadRequest, codeUnknownCompression, "UNKNOWN_COMPRESSION_METHOD", "Unknown compression method " + v + ": LZ4, LZ4HC, ZSTD or NONE"}
		}
	case k == "network_zstd_compression_level":
		req.blockLevel, err = intParam(k, v, 1, 22)
	case k == "wait_end_of_query" || k == "http_wait_end_of_query":
		req.wait, err = boolParam(k, v)
	case k == "client_protocol_version":
		req.clientRevision, err = strconv.ParseUint(v, 10, 32)
		if err != nil {
			err = badArgument("client_protocol_version must be a revision number, not %q", v)
		}
	default:
		if k == "session_timezone" {
			req.timezone = v
		}
		req.settings = append(req.settings, store.Setting{Name: k, Value: v})
	}
	return err
}

func boolParam(k, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "true":
		return true, nil
	case "0", "false", "":
		return false, nil
	}
	return false, badArgument("%s must be 0 or 1, not %q", k, v)
}

func intParam(k, v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badArgument("%s must be a whole number from %d to %d, not %q", k, lo, hi, v)
	}
	return n, nil
}

// newUUID is a random (version 4) UUID, for a query without query_id.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
