// Package api is flowhouse's HTTP server: health, readiness, metrics, and
// the frame of the REST API under /api/v1 that the API packages register
// their handlers on: token authentication, roles, per-token rate limits,
// the error shape, query parameters, page tokens, ETags and the OpenAPI
// document.
package api

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/flowhouse/flowhouse/internal/httpserve"
)

// Check is one readiness check of /readyz, e.g. "database" or "migrations".
// Func gets a context with the configured readiness timeout and returns nil
// when ready. Its error text is shown in the /readyz body: keep secrets out.
type Check struct {
	Name string
	Func func(ctx context.Context) error
}

// Deps are what the server uses but does not own.
type Deps struct {
	// Logger receives request logs and server errors; nil discards them.
	Logger *slog.Logger
	// Gatherer is exposed at /metrics; nil leaves /metrics out.
	Gatherer prometheus.Gatherer
	// Registerer receives the server's own metrics. When nil, Gatherer is
	// used if it is also a Registerer (a *prometheus.Registry is both).
	Registerer prometheus.Registerer
	// Checks are run by /readyz. More can be added with AddCheck.
	Checks []Check
	// Authenticator checks the tokens of /api/v1; nil refuses every token.
	Authenticator Authenticator
}

// Server is the HTTP server. Register routes before Start.
type Server struct {
	cfg     Config
	log     *slog.Logger
	engine  *gin.Engine
	v1      *gin.RouterGroup
	metrics *httpMetrics

	auth    Authenticator
	authLog rate.Sometimes
	limits  *limiters
	// tenantLimits are the buckets every token of a tenant shares.
	tenantLimits *limiters
	// failures count refused tokens per client address.
	failures *limiters
	// failLog samples the log lines of refused requests, which a client
	// can send as fast as it likes.
	failLog *rate.Limiter
	spec    *Spec

	closing   chan struct{} // closed when Stop begins, for streams to end
	closeOnce sync.Once

	checksMu sync.Mutex
	checks   []Check
	lastOK   map[string]bool // last result of each check, to log changes only

	mu      sync.Mutex
	started bool
	http    httpserve.Background
}

// APIPrefix is where the REST API lives.
const APIPrefix = "/api/v1"

// New builds the server and its routes; it does no I/O.
func New(cfg Config, deps Deps) *Server {
	gin.SetMode(gin.ReleaseMode)
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := deps.Registerer
	if reg == nil {
		reg, _ = deps.Gatherer.(prometheus.Registerer)
	}
	s := &Server{
		cfg:          cfg,
		log:          log,
		metrics:      newHTTPMetrics(reg),
		checks:       append([]Check(nil), deps.Checks...),
		lastOK:       map[string]bool{},
		auth:         deps.Authenticator,
		authLog:      rate.Sometimes{Interval: time.Minute},
		limits:       newLimiters(cfg.RateLimit, cfg.RateBurst),
		tenantLimits: newLimiters(cfg.RateLimit*tenantTokens, cfg.RateBurst*tenantTokens),
		failures:     newLimiters(cfg.AuthFailureRate, cfg.AuthFailureBurst),
		failLog:      rate.NewLimiter(10, 20),
		spec:         NewSpec(),
		closing:      make(chan struct{}),
	}

	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	_ = e.SetTrustedProxies(nil) // the client is the peer; never trust X-Forwarded-For
	e.Use(s.observe, s.recoverPanics)
	e.NoRoute(func(c *gin.Context) {
		WriteError(c, http.StatusNotFound, CodeNotFound, "no route for "+c.Request.Method+" "+c.Request.URL.Path)
	})
	e.NoMethod(func(c *gin.Context) {
		WriteError(c, http.StatusMethodNotAllowed, CodeMethodNotAllowed,
			"method "+c.Request.Method+" is not allowed on "+c.Request.URL.Path+" (allowed: "+c.Writer.Header().Get("Allow")+")")
	})
	for _, method := range []string{http.MethodGet, http.MethodHead} { // some probes use HEAD
		e.Handle(method, "/healthz", s.healthz)
		e.Handle(method, "/readyz", s.readyz)
	}
	if deps.Gatherer != nil {
		e.GET("/metrics", s.metricsAuth, gin.WrapH(promhttp.HandlerFor(deps.Gatherer, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			ErrorHandling: promhttp.ContinueOnError,
		})))
	}
	s.engine = e
	// The document is public: clients and code generators read it first.
	e.GET(APIPrefix+"/openapi.json", s.openAPI)
	s.v1 = e.Group(APIPrefix, s.authenticate)
	return s
}

// metricsAuth requires http.metrics_token from scrapers when it is set.
func (s *Server) metricsAuth(c *gin.Context) {
	if s.cfg.MetricsToken == "" {
		return
	}
	if subtle.ConstantTimeCompare([]byte(bearer(c.Request)), []byte(s.cfg.MetricsToken)) != 1 {
		c.Header("WWW-Authenticate", `Bearer realm="flowhouse metrics"`)
		WriteError(c, http.StatusUnauthorized, CodeUnauthorized, "/metrics needs http.metrics_token as Authorization: Bearer")
		return
	}
}

// Router returns the engine, for routes and middleware outside /api/v1.
// Change it only before Start.
func (s *Server) Router() *gin.Engine { return s.engine }

// Register adds routes to the /api/v1 group, behind its authentication:
// handlers get the request's Principal (PrincipalOf). It panics after Start: gin's router is not safe to change while serving.
func (s *Server) Register(fn func(v1 *gin.RouterGroup)) {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if started {
		panic("api: Register called after Start")
	}
	fn(s.v1)
}

// AddCheck adds a readiness check; it may be called at any time.
func (s *Server) AddCheck(name string, fn func(ctx context.Context) error) {
	s.checksMu.Lock()
	defer s.checksMu.Unlock()
	s.checks = append(s.checks, Check{Name: name, Func: fn})
}

// Start listens and serves in the background. It returns an error when the
// address cannot be listened on (port taken, bad address). A Server starts
// once.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("api: server already started")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("api: listen on %s: %w", s.cfg.Listen, err)
	}
	var certs *certReloader
	if s.cfg.TLSCertFile != "" {
		if certs, err = newCertReloader(s.cfg.TLSCertFile, s.cfg.TLSKeyFile, func(err error) {
			s.metrics.tlsReloadErr.Inc()
			s.log.Error("tls certificate reload failed; the previous certificate stays in use", "err", err)
		}); err != nil {
			_ = ln.Close()
			return fmt.Errorf("api: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.getCertificate, NextProtos: []string{"h2", "http/1.1"}})
	}
	s.started = true
	srv := &http.Server{
		Handler:           s.engine,
		ReadHeaderTimeout: s.cfg.ReadTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(func() { s.closeOnce.Do(func() { close(s.closing) }) })
	addr := ln.Addr().String()
	if err := s.http.Serve(ln, srv, func(err error) { s.log.Error("http server failed", "addr", addr, "err", err) }); err != nil {
		return err
	}
	s.log.Info("http server listening", "addr", addr, "tls", certs != nil)
	if ap, err := netip.ParseAddrPort(addr); err == nil && !ap.Addr().IsLoopback() && s.cfg.MetricsToken == "" {
		s.log.Warn("/metrics answers without a token on a non-loopback address: its series name every tenant and exporter; set http.metrics_token or firewall it", "addr", addr)
	}
	return nil
}

// Addr is the address listened on (with the real port when the configured
// one was 0), or "" before Start.
func (s *Server) Addr() string { return s.http.Addr() }

// Stop stops accepting connections and waits for the requests in flight
// until ctx ends; then it closes the remaining connections and returns the
// context's error. Stopping a server that is not started does nothing.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		return nil
	}
	if err := s.http.Stop(ctx); err != nil {
		return fmt.Errorf("api: shutdown: %w", err)
	}
	s.log.Info("http server stopped")
	return nil
}

func (s *Server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// CheckResult is one check in the /readyz body.
type CheckResult struct {
	Status     string  `json:"status"` // ok, failed, timeout
	Error      string  `json:"error,omitempty"`
	DurationMS float64 `json:"duration_ms"`
}

// ReadyBody is the /readyz body. When not ready it also carries the
// project's error shape, listing the failed checks.
type ReadyBody struct {
	Status string                 `json:"status"` // ok or unavailable
	Checks map[string]CheckResult `json:"checks"`
	Failed []string               `json:"failed,omitempty"`
	Error  *ErrorDetail           `json:"error,omitempty"`
}

func (s *Server) readyz(c *gin.Context) {
	s.checksMu.Lock()
	checks := append([]Check(nil), s.checks...)
	s.checksMu.Unlock()

	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.ReadinessTimeout)
	defer cancel()
	results := make([]CheckResult, len(checks))
	var wg sync.WaitGroup
	for i, ch := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runCheck(ctx, ch, s.cfg.ReadinessTimeout)
		}()
	}
	wg.Wait()

	body := ReadyBody{Status: "ok", Checks: make(map[string]CheckResult, len(checks))}
	for i, ch := range checks {
		r := results[i]
		body.Checks[ch.Name] = r
		if r.Status != "ok" {
			body.Failed = append(body.Failed, ch.Name)
		}
		s.logCheckChange(ch.Name, r)
	}
	if len(body.Failed) == 0 {
		c.JSON(http.StatusOK, body)
		return
	}
	body.Status = "unavailable"
	msg := "not ready: "
	for i, name := range body.Failed {
		if i > 0 {
			msg += ", "
		}
		msg += name + " " + body.Checks[name].Status
	}
	body.Error = &ErrorDetail{Code: CodeNotReady, Message: msg}
	c.AbortWithStatusJSON(http.StatusServiceUnavailable, body)
}

// runCheck runs one check, giving up when ctx ends even if the check
// ignores it (the check's goroutine then finishes on its own).
func runCheck(ctx context.Context, ch Check, timeout time.Duration) CheckResult {
	start := time.Now()
	res := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				res <- fmt.Errorf("check panicked: %v", r)
			}
		}()
		if ch.Func == nil {
			res <- errors.New("no check function")
			return
		}
		res <- ch.Func(ctx)
	}()
	var err error
	select {
	case err = <-res:
	case <-ctx.Done():
		err = ctx.Err()
	}
	r := CheckResult{Status: "ok", DurationMS: float64(time.Since(start).Microseconds()) / 1000}
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		r.Status, r.Error = "timeout", "no answer within "+timeout.String()
	default:
		r.Status, r.Error = "failed", err.Error()
	}
	return r
}

// logCheckChange logs a check when its result changes, not on every probe.
func (s *Server) logCheckChange(name string, r CheckResult) {
	ok := r.Status == "ok"
	s.checksMu.Lock()
	last, seen := s.lastOK[name]
	s.lastOK[name] = ok
	s.checksMu.Unlock()
	switch {
	case !ok && (!seen || last):
		s.log.Warn("readiness check failing", "check", name, "status", r.Status, "err", r.Error)
	case ok && seen && !last:
		s.log.Info("readiness check passing again", "check", name)
	}
}

const closingKey = "flowhouse.closing"

// Closing is closed when the server begins to stop. A handler that
// streams (Server-Sent Events) must end its stream then: a graceful stop
// waits for every handler to return.
func Closing(c *gin.Context) <-chan struct{} {
	ch, _ := c.Get(closingKey)
	if done, ok := ch.(chan struct{}); ok {
		return done
	}
	return nil
}

// observe counts, times and logs every request, including 404s and
// recovered panics.
func (s *Server) observe(c *gin.Context) {
	c.Set(closingKey, s.closing)
	start := time.Now()
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()

	c.Next()

	elapsed := time.Since(start)
	route := c.FullPath()
	if route == "" {
		route = "unmatched" // unknown paths must not become label values
	}
	method := methodLabel(c.Request.Method)
	status := c.Writer.Status()
	s.metrics.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	s.metrics.duration.WithLabelValues(route, method).Observe(elapsed.Seconds())

	level := slog.LevelInfo
	switch {
	case status >= 500:
		level = slog.LevelError
	case status < 400 && (route == "/healthz" || route == "/readyz" || route == "/metrics"):
		level = slog.LevelDebug // probes and scrapes would drown the log
	}
	if !s.log.Enabled(c.Request.Context(), level) {
		return
	}
	if (status == http.StatusUnauthorized || status == http.StatusTooManyRequests) && !s.failLog.Allow() {
		return // counted in flowhouse_http_auth_failures_total and requests_total
	}
	attrs := []slog.Attr{
		slog.String("method", c.Request.Method),
		slog.String("path", c.Request.URL.Path), // never the query: it may carry tokens
		slog.String("route", route),
		slog.Int("status", status),
		slog.Duration("duration", elapsed),
		slog.Int("bytes", c.Writer.Size()),
		slog.String("client", c.ClientIP()),
	}
	if p := PrincipalOf(c); p.TokenID != "" {
		attrs = append(attrs, slog.String("token_id", p.TokenID)) // the id, never the secret
	}
	if len(c.Errors) > 0 {
		attrs = append(attrs, slog.String("errors", c.Errors.String()))
	}
	s.log.LogAttrs(c.Request.Context(), level, "http request", attrs...)
}

// recoverPanics turns a panic in a handler into a logged error and a JSON
// 500, instead of a dropped connection.
func (s *Server) recoverPanics(c *gin.Context) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if r == http.ErrAbortHandler { // net/http's way to abort silently
			panic(r)
		}
		s.log.Error("panic in http handler", "route", c.FullPath(), "method", c.Request.Method,
			"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		if c.Writer.Written() {
			c.Abort()
			return
		}
		WriteError(c, http.StatusInternalServerError, CodeInternal, "internal server error")
	}()
	c.Next()
}
