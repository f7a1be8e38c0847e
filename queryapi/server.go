// Package queryapi is flowhouse's read-only, ClickHouse-compatible HTTP
// query endpoint on the embedded engine, so curl and ClickHouse HTTP
// clients (Grafana's plugin, clickhouse-go's HTTP transport, JDBC, DBeaver)
// can query the flows of a running `flowhouse serve` without a ClickHouse
// server. See README.md in this directory.
//
// It is plain net/http rather than the api package's Gin server: its
// answers follow ClickHouse's HTTP interface (plain-text exceptions, not
// flowhouse's JSON errors) and it has its own listener.
package queryapi

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/ch-go/compress"
	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/flowhouse/flowhouse/store"

	"github.com/flowhouse/flowhouse/internal/httpserve"
)

// MaxQueryBytes bounds a query's text (query parameter plus body).
const MaxQueryBytes = store.MaxQueryBytes

// DefaultFormat is the format of a result when neither the query's FORMAT
// clause nor default_format names one: ClickHouse's default.
const DefaultFormat = "TabSeparated"

// EngineHeader is set on every answer of the endpoint; `flowhouse query`
// checks it to know that it talks to flowhouse, not to some other server
// on the port (a ClickHouse server's HTTP interface defaults to 8123 too).
const EngineHeader = "X-Flowhouse-Engine"

// Config of the endpoint.
type Config struct {
	// Listen is host:port; port 0 picks a free one.
	Listen string
	// Token, when not empty, is required from every query.
	Token string
	// Timeout bounds a request: its wait for a free connection, and the
	// streaming of its result (the query is cancelled at the next chunk);
	// the engine's max_execution_time bounds the query itself
	// (store.ReadOnlyOptions).
	Timeout time.Duration
}

// ConfigOf is the endpoint's configuration from the store's.
func ConfigOf(cfg store.EmbeddedConfig) Config {
	return Config{Listen: cfg.HTTPListen, Token: cfg.HTTPToken, Timeout: cfg.QueryTimeout}
}

// Runner runs one analyst's query, read-only, and streams its output to
// the writer open returns (store.ReadOnly is one: it decides what may run
// with the engine's own parser, and which settings may change).
type Runner interface {
	Execute(ctx context.Context, q store.AnalystQuery, open func(store.Statement) io.Writer) (store.QueryStats, error)
}

// Deps are what the server uses but does not own.
type Deps struct {
	// Querier runs the queries.
	Querier Runner
	// Timezone of the engine, sent as X-ClickHouse-Timezone; "" omits it.
	Timezone string
	// Database the queries run in: a client's database parameter may
	// name it (or default); "" accepts any.
	Database string
	// DisplayName is sent as X-ClickHouse-Server-Display-Name; "" omits it.
	DisplayName string
	// Logger; nil discards.
	Logger *slog.Logger
}

// Server is the endpoint.
type Server struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	mu      sync.Mutex
	started bool
	http    httpserve.Background
}

// New builds the server; it does no I/O.
func New(cfg Config, deps Deps) *Server {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	// A store.ReadOnly knows its database and name.
	if q, ok := deps.Querier.(interface{ Database() string }); ok && deps.Database == "" {
		deps.Database = q.Database()
	}
	if q, ok := deps.Querier.(interface{ DisplayName() string }); ok && deps.DisplayName == "" {
		deps.DisplayName = q.DisplayName()
	}
	return &Server{cfg: cfg, deps: deps, log: log}
}

// Handler answers the endpoint's requests (Start serves it).
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Start listens and serves in the background.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("queryapi: already started")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("query endpoint: listen on %s: %w (set clickhouse.embedded.http_listen to another address, or to \"\" to turn the endpoint off)", s.cfg.Listen, err)
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// The query's own limit, plus time to write a large result.
		WriteTimeout: s.cfg.Timeout + time.Minute,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	addr := ln.Addr().String()
	if err := s.http.Serve(ln, srv, func(err error) { s.log.Error("query endpoint failed", "addr", addr, "err", err) }); err != nil {
		return err
	}
	s.started = true
	s.log.Info("query endpoint listening", "addr", addr, "token", s.cfg.Token != "")
	return nil
}

// Addr is the address listened on, or "" before Start.
func (s *Server) Addr() string { return s.http.Addr() }

// Stop stops accepting requests and waits for those running until ctx
// ends, then closes the connections.
func (s *Server) Stop(ctx context.Context) error {
	if err := s.http.Stop(ctx); err != nil {
		return fmt.Errorf("query endpoint: shutdown: %w", err)
	}
	return nil
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(EngineHeader, "embedded")
	if s.deps.DisplayName != "" {
		w.Header().Set("X-ClickHouse-Server-Display-Name", s.deps.DisplayName)
	}
	switch r.URL.Path {
	case "/ping", "/replicas_status": // one node: its replicas are always fine
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeException(w, http.StatusMethodNotAllowed, store.CodeUnknownException, "", "method "+r.Method+" is not allowed on "+r.URL.Path)
			return
		}
		writeOk(w)
		return
	case "/":
	default:
		writeException(w, http.StatusNotFound, store.CodeUnknownException, "", "There is no handle "+r.URL.Path+": use / for queries or /ping for health checks")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, POST, HEAD")
		writeException(w, http.StatusMethodNotAllowed, store.CodeUnknownException, "", "method "+r.Method+" is not allowed: use GET or POST")
		return
	}
	params := r.URL.Query()
	// As ClickHouse: GET / without a query is a health check, like /ping,
	// and needs no token.
	if r.Method != http.MethodPost && strings.TrimSpace(params.Get("query")) == "" {
		writeOk(w)
		return
	}
	if !s.authorized(w, r, params) {
		return
	}
	req, err := parseRequest(params, r.Header, s.deps.Database)
	if err != nil {
		var he *httpError
		errors.As(err, &he)
		writeException(w, he.status, he.code, he.name, he.msg)
		return
	}
	w.Header().Set("X-ClickHouse-Query-Id", req.queryID)
	query, ok := s.readQuery(w, r, params, req.decompress)
	if !ok {
		return
	}
	s.run(w, r, req, query)
}

// run runs the query and answers with its result or exception.
func (s *Server) run(w http.ResponseWriter, r *http.Request, req *request, query string) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	tz := s.deps.Timezone
	if req.timezone != "" {
		tz = req.timezone
	}
	out := &resultWriter{w: w, head: r.Method == http.MethodHead, req: req, format: req.format, tz: tz, start: time.Now()}
	stats, err := s.deps.Querier.Execute(ctx, store.AnalystQuery{
		Text: query, Format: req.format, Params: req.params, Settings: req.settings, Progress: out.progress,
	}, out.open)
	if err == nil {
		if err = out.finish(stats); err == nil {
			return
		}
	}
	s.log.Debug("query failed", "error", err, "duration", time.Since(out.start), "query_id", req.queryID)
	status, code, name, msg := exceptionOf(err, s.cfg.Timeout)
	if !out.started {
		writeException(w, status, code, name, msg)
		return
	}
	out.abort(code, name, msg)
}

// readQuery is the query parameter followed by the body (as ClickHouse:
// the body is the query's text whatever its Content-Type, so curl -d
// 'SELECT 1' works, and % or + stay as they are).
func (s *Server) readQuery(w http.ResponseWriter, r *http.Request, params url.Values, blocks bool) (string, bool) {
	query := params.Get("query")
	if r.Method == http.MethodPost {
		body, status, err := readBody(r, blocks)
		if err != nil {
			writeException(w, status, store.CodeSyntaxError, "SYNTAX_ERROR", err.Error())
			return "", false
		}
		query += body
	}
	if len(query) > MaxQueryBytes {
		writeException(w, http.StatusRequestEntityTooLarge, store.CodeSyntaxError, "SYNTAX_ERROR", fmt.Sprintf("Max query size exceeded: the query has %d bytes, the limit is %d", len(query), MaxQueryBytes))
		return "", false
	}
	if strings.TrimSpace(query) == "" {
		writeException(w, http.StatusBadRequest, store.CodeSyntaxError, "SYNTAX_ERROR", "Empty query: send the query in the query parameter or the POST body")
		return "", false
	}
	return query, true
}

func writeOk(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	io.WriteString(w, "Ok.\n")
}

// exceptionOf is the status and exception an error is answered with.
func exceptionOf(err error, timeout time.Duration) (status, code int, name, msg string) {
	var refused *store.RefusedError
	var invalid *store.InvalidQueryError
	var ex *clickhouse.Exception
	switch {
	case errors.As(err, &refused):
		return http.StatusForbidden, store.CodeReadonly, "READONLY", "Cannot execute query in readonly mode: " + refused.Reason
	case errors.As(err, &invalid) && errors.As(err, &ex):
		return http.StatusBadRequest, int(ex.Code), ex.CodeName, ex.Message
	case errors.As(err, &ex):
		return engineStatus(int(ex.Code)), int(ex.Code), ex.CodeName, ex.Message
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, store.CodeTimeoutExceeded, "TIMEOUT_EXCEEDED", "the query did not finish, or found no free connection, within " + timeout.String() + " (clickhouse.embedded.query_timeout, query_concurrency)"
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, store.CodeQueryWasCancelled, "QUERY_WAS_CANCELLED", "the query was cancelled: the client went away"
	}
	return http.StatusInternalServerError, store.CodeUnknownException, "", err.Error()
}

// engineStatus answers the engine's exceptions as ClickHouse's HTTP
// interface does for the common ones: the client's mistakes and the
// limits it ran into are 4xx, the rest 500.
func engineStatus(code int) int {
	switch code {
	case store.CodeReadonly, store.CodeAccessDenied:
		return http.StatusForbidden
	case store.CodeUnknownTable, store.CodeUnknownDatabase:
		return http.StatusNotFound
	case store.CodeSyntaxError, store.CodeUnknownIdentifier, store.CodeUnknownFunction, store.CodeUnknownFormat, store.CodeTypeMismatch,
		store.CodeIllegalTypeOfArgument, store.CodeNumberOfArgumentsDoesntMatch, store.CodeUnknownSetting,
		store.CodeTooManyRows, store.CodeTooManyBytes, store.CodeTooManyRowsOrBytes, store.CodeMemoryLimitExceeded, store.CodeTimeoutExceeded:
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// readBody reads a POST body, decoded as its Content-Encoding says (gzip,
// deflate, br, zstd), and from ClickHouse's compressed blocks with
// decompress=1.
func readBody(r *http.Request, blocks bool) (string, int, error) {
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	in, done, err := decodeBody(enc, r.Body)
	if errors.Is(err, errUnsupportedEncoding) {
		return "", http.StatusUnsupportedMediaType, fmt.Errorf("Content-Encoding %q is not supported (gzip, deflate, br and zstd are)", enc)
	}
	if err != nil {
		return "", http.StatusBadRequest, fmt.Errorf("cannot read the %s body: %w", enc, err)
	}
	defer done()
	if blocks {
		in = compress.NewReader(in)
	}
	b, err := io.ReadAll(io.LimitReader(in, MaxQueryBytes+1))
	if err != nil {
		return "", http.StatusBadRequest, fmt.Errorf("cannot read the body: %w", err)
	}
	if len(b) > MaxQueryBytes {
		return "", http.StatusRequestEntityTooLarge, fmt.Errorf("Max query size exceeded: the body has more than %d bytes", MaxQueryBytes)
	}
	return string(b), 0, nil
}

// authorized checks the token as ClickHouse clients send a password:
// Authorization: Bearer or Basic (any user name), X-ClickHouse-Key, or the
// password parameter. No credentials is 401, wrong ones 403.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request, params interface{ Get(string) string }) bool {
	if s.cfg.Token == "" {
		return true
	}
	var given []string
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, cred, _ := strings.Cut(auth, " ")
		switch strings.ToLower(scheme) {
		case "bearer":
			given = append(given, strings.TrimSpace(cred))
		case "basic":
			if raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred)); err == nil {
				_, password, _ := strings.Cut(string(raw), ":")
				given = append(given, password)
			} else {
				given = append(given, "")
			}
		default:
			given = append(given, "")
		}
	}
	if key := r.Header.Get("X-ClickHouse-Key"); key != "" {
		given = append(given, key)
	}
	if p := params.Get("password"); p != "" {
		given = append(given, p)
	}
	if len(given) == 0 {
		w.Header().Set("WWW-Authenticate", `Basic realm="flowhouse", charset="UTF-8"`)
		writeException(w, http.StatusUnauthorized, store.CodeRequiredPassword, "REQUIRED_PASSWORD", "Password required: send the token as Authorization: Bearer, X-ClickHouse-Key, Basic auth's password or the password parameter")
		return false
	}
	for _, g := range given {
		if subtle.ConstantTimeCompare([]byte(g), []byte(s.cfg.Token)) != 1 {
			writeException(w, http.StatusForbidden, store.CodeAuthenticationFailed, "AUTHENTICATION_FAILED", "Authentication failed: wrong token")
			return false
		}
	}
	return true
}

// writeException answers as ClickHouse's HTTP interface does: the code in
// X-ClickHouse-Exception-Code and "Code: N. DB::Exception: message. (NAME)"
// as a plain-text body.
func writeException(w http.ResponseWriter, status, code int, name, msg string) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "text/plain; charset=UTF-8")
	h.Set("X-ClickHouse-Exception-Code", strconv.Itoa(code))
	w.WriteHeader(status)
	io.WriteString(w, ExceptionText(code, name, msg)+"\n")
}

// ExceptionText formats an exception the way ClickHouse writes one.
func ExceptionText(code int, name, msg string) string {
	msg = strings.TrimSpace(msg)
	if strings.HasPrefix(msg, "Code: ") {
		return msg // the engine's own text, complete
	}
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	text := fmt.Sprintf("Code: %d. DB::Exception: %s", code, msg)
	if name != "" {
		text += " (" + name + ")"
	}
	return text
}

// contentType is what ClickHouse sends for the common formats.
func contentType(format string) string {
	f := strings.ToLower(format)
	switch {
	case strings.HasPrefix(f, "tabseparated"), strings.HasPrefix(f, "tsv"):
		return "text/tab-separated-values; charset=UTF-8"
	case strings.HasPrefix(f, "csv"):
		return "text/csv; charset=UTF-8"
	case f == "jsoneachrow", f == "jsonlines", f == "ndjson", strings.HasPrefix(f, "jsoncompacteachrow"), strings.HasPrefix(f, "jsonstringseachrow"):
		return "application/x-ndjson; charset=UTF-8"
	case strings.HasPrefix(f, "json"):
		return "application/json; charset=UTF-8"
	case strings.HasPrefix(f, "pretty"), f == "vertical", f == "markdown", f == "values":
		return "text/plain; charset=UTF-8"
	}
	return "application/octet-stream"
}
