package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testServer struct {
	*Server
	reg  *prometheus.Registry
	logs *syncBuffer
	base string
}

// start runs a server on a free loopback port and stops it at the end of the test.
func start(t *testing.T, cfg Config, checks []Check, register func(*gin.RouterGroup)) *testServer {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	s := New(cfg, Deps{
		Logger:        slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Gatherer:      reg,
		Checks:        checks,
		Authenticator: testAuth{},
	})
	if register != nil {
		s.Register(register)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return &testServer{Server: s, reg: reg, logs: logs, base: "http://" + s.Addr()}
}

func get(t *testing.T, method, url string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

const testToken = "test-admin"

// testAuth accepts testToken as an admin of every tenant.
type testAuth struct{}

func (testAuth) Authenticate(_ context.Context, tok string) (Principal, error) {
	if tok != testToken {
		return Principal{}, &TokenError{Reason: TokenUnknown}
	}
	return Principal{TokenID: "tok_test", TokenName: "test", AllTenants: true, Role: RoleAdmin}, nil
}

func decode[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("body %q is not the expected JSON: %v", body, err)
	}
	return v
}

func TestHealthz(t *testing.T) {
	s := start(t, DefaultConfig(), nil, nil)
	code, hdr, body := get(t, http.MethodGet, s.base+"/healthz")
	if code != http.StatusOK {
		t.Fatalf("status %d, want 200", code)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	if got := decode[map[string]string](t, body); got["status"] != "ok" || len(got) != 1 {
		t.Errorf("body %s, want {\"status\":\"ok\"}", body)
	}
	if code, _, _ := get(t, http.MethodHead, s.base+"/healthz"); code != http.StatusOK {
		t.Errorf("HEAD /healthz: %d", code)
	}
}

func TestReadyz(t *testing.T) {
	ok := func(context.Context) error { return nil }
	failing := func(context.Context) error { return errors.New("2 migrations pending") }
	hanging := func(ctx context.Context) error { <-ctx.Done(); time.Sleep(50 * time.Millisecond); return ctx.Err() }
	ignoring := func(context.Context) error { time.Sleep(2 * time.Second); return nil }
	panicking := func(context.Context) error { panic("boom") }

	tests := []struct {
		name       string
		checks     []Check
		wantCode   int
		wantStatus map[string]string
	}{
		{"no checks", nil, 200, map[string]string{}},
		{"all ok", []Check{{"database", ok}, {"migrations", ok}}, 200,
			map[string]string{"database": "ok", "migrations": "ok"}},
		{"one failing", []Check{{"database", ok}, {"migrations", failing}}, 503,
			map[string]string{"database": "ok", "migrations": "failed"}},
		{"timeout honoured", []Check{{"database", hanging}}, 503, map[string]string{"database": "timeout"}},
		{"timeout ignored by check", []Check{{"database", ignoring}}, 503, map[string]string{"database": "timeout"}},
		{"panic", []Check{{"database", panicking}}, 503, map[string]string{"database": "failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ReadinessTimeout = 200 * time.Millisecond
			s := start(t, cfg, tt.checks, nil)
			began := time.Now()
			code, _, body := get(t, http.MethodGet, s.base+"/readyz")
			if took := time.Since(began); took > time.Second {
				t.Errorf("readyz took %s, want about the readiness timeout", took)
			}
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d; body %s", code, tt.wantCode, body)
			}
			got := decode[ReadyBody](t, body)
			if len(got.Checks) != len(tt.wantStatus) {
				t.Errorf("checks %v, want %v", got.Checks, tt.wantStatus)
			}
			for name, want := range tt.wantStatus {
				if got.Checks[name].Status != want {
					t.Errorf("check %s: status %q, want %q (%s)", name, got.Checks[name].Status, want, body)
				}
			}
			if tt.wantCode == 200 {
				if got.Status != "ok" || got.Error != nil || len(got.Failed) != 0 {
					t.Errorf("healthy body %s", body)
				}
				return
			}
			if got.Status != "unavailable" || got.Error == nil || got.Error.Code != CodeNotReady || len(got.Failed) == 0 {
				t.Errorf("unhealthy body %s", body)
			}
			for _, name := range got.Failed {
				if !strings.Contains(got.Error.Message, name) {
					t.Errorf("error message %q does not name %s", got.Error.Message, name)
				}
			}
		})
	}
}

func TestReadyzErrorText(t *testing.T) {
	s := start(t, DefaultConfig(), []Check{{"migrations", func(context.Context) error { return errors.New("2 migrations pending") }}}, nil)
	_, _, body := get(t, http.MethodGet, s.base+"/readyz")
	got := decode[ReadyBody](t, body)
	if got.Checks["migrations"].Error != "2 migrations pending" {
		t.Errorf("check error %q", got.Checks["migrations"].Error)
	}
	if got.Failed[0] != "migrations" {
		t.Errorf("failed %v", got.Failed)
	}
	// The state change is logged once, not on every probe.
	get(t, http.MethodGet, s.base+"/readyz")
	if n := strings.Count(s.logs.String(), "readiness check failing"); n != 1 {
		t.Errorf("failing check logged %d times, want 1", n)
	}
}

func TestAddCheck(t *testing.T) {
	s := start(t, DefaultConfig(), nil, nil)
	s.AddCheck("database", func(context.Context) error { return errors.New("connection refused") })
	if code, _, body := get(t, http.MethodGet, s.base+"/readyz"); code != 503 {
		t.Errorf("status %d, want 503: %s", code, body)
	}
}

func TestMetrics(t *testing.T) {
	s := start(t, DefaultConfig(), nil, nil)
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "flowhouse_test_things_total", Help: "Things."})
	s.reg.MustRegister(c)
	c.Add(3)

	get(t, http.MethodGet, s.base+"/healthz")
	get(t, http.MethodGet, s.base+"/nope")
	code, hdr, body := get(t, http.MethodGet, s.base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	for _, want := range []string{
		"flowhouse_test_things_total 3",
		`flowhouse_http_requests_total{code="200",method="GET",route="/healthz"} 1`,
		`flowhouse_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`flowhouse_http_request_duration_seconds_count{method="GET",route="/healthz"} 1`,
		"flowhouse_http_requests_in_flight 1", // the /metrics request itself
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

func TestNoMetricsWithoutGatherer(t *testing.T) {
	s := New(DefaultConfig(), Deps{})
	for _, r := range s.Router().Routes() {
		if r.Path == "/metrics" {
			t.Errorf("/metrics registered without a Gatherer")
		}
	}
}

func TestErrors(t *testing.T) {
	s := start(t, DefaultConfig(), nil, func(v1 *gin.RouterGroup) {
		v1.GET("/panic", func(*gin.Context) { panic("handler bug with secret=hunter2") })
		v1.GET("/teapot", func(c *gin.Context) { WriteError(c, http.StatusTeapot, "teapot", "short and stout") })
	})
	tests := []struct {
		name, method, path string
		wantCode           int
		wantErr            string
		wantMessage        string
	}{
		{"unknown route", "GET", "/nope", 404, CodeNotFound, "GET /nope"},
		{"unknown api route", "GET", "/api/v1/alerts", 404, CodeNotFound, "/api/v1/alerts"},
		{"wrong method", "POST", "/healthz", 405, CodeMethodNotAllowed, "POST"},
		{"panic", "GET", "/api/v1/panic", 500, CodeInternal, "internal server error"},
		{"handler error", "GET", "/api/v1/teapot", 418, "teapot", "short and stout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, hdr, body := get(t, tt.method, s.base+tt.path)
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d; body %s", code, tt.wantCode, body)
			}
			if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			got := decode[ErrorBody](t, body)
			if got.Error.Code != tt.wantErr || !strings.Contains(got.Error.Message, tt.wantMessage) {
				t.Errorf("body %s, want code %q and a message with %q", body, tt.wantErr, tt.wantMessage)
			}
			var raw map[string]map[string]any
			_ = json.Unmarshal(body, &raw)
			if len(raw) != 1 || len(raw["error"]) != 2 {
				t.Errorf("body %s has other fields than error.code and error.message", body)
			}
			if allow := hdr.Get("Allow"); tt.wantCode == 405 && allow != "GET, HEAD" {
				t.Errorf("Allow %q, want GET, HEAD", allow)
			}
			if strings.Contains(string(body), "hunter2") {
				t.Errorf("panic value leaked to the client: %s", body)
			}
		})
	}
	// The server keeps serving after a panic, and the panic is logged.
	if code, _, _ := get(t, "GET", s.base+"/healthz"); code != 200 {
		t.Errorf("healthz after panic: %d", code)
	}
	if !strings.Contains(s.logs.String(), "panic in http handler") {
		t.Errorf("panic not logged: %s", s.logs.String())
	}
}

func TestRequestLog(t *testing.T) {
	s := start(t, DefaultConfig(), nil, func(v1 *gin.RouterGroup) {
		v1.GET("/things/:id", func(c *gin.Context) { c.JSON(200, gin.H{"id": c.Param("id")}) })
	})
	get(t, "GET", s.base+"/api/v1/things/42?token=s3cr3t")
	var entry map[string]any
	for _, line := range strings.Split(s.logs.String(), "\n") {
		if strings.Contains(line, `"http request"`) && strings.Contains(line, "/things/") {
			entry = decode[map[string]any](t, []byte(line))
		}
	}
	if entry == nil {
		t.Fatalf("no request log line in %s", s.logs.String())
	}
	if entry["route"] != "/api/v1/things/:id" || entry["path"] != "/api/v1/things/42" || entry["status"] != float64(200) || entry["level"] != "INFO" {
		t.Errorf("log entry %v", entry)
	}
	if strings.Contains(s.logs.String(), "s3cr3t") {
		t.Errorf("query string logged: %s", s.logs.String())
	}
}

func TestStartPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := DefaultConfig()
	cfg.Listen = ln.Addr().String()
	s := New(cfg, Deps{})
	err = s.Start(context.Background())
	if err == nil {
		s.Stop(context.Background())
		t.Fatal("Start on a taken port succeeded")
	}
	if !strings.Contains(err.Error(), cfg.Listen) {
		t.Errorf("error %q does not name the address", err)
	}
	if s.Addr() != "" {
		t.Errorf("Addr %q after failed Start", s.Addr())
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Errorf("Stop of a server that did not start: %v", err)
	}
}

func TestStartTwice(t *testing.T) {
	s := start(t, DefaultConfig(), nil, nil)
	if err := s.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
}

func TestRegisterAfterStartPanics(t *testing.T) {
	s := start(t, DefaultConfig(), nil, nil)
	defer func() {
		if recover() == nil {
			t.Error("Register after Start did not panic")
		}
	}()
	s.Register(func(*gin.RouterGroup) {})
}

func TestStop(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	release := make(chan struct{})
	entered := make(chan struct{})
	s := New(cfg, Deps{})
	s.Router().GET("/slow", func(c *gin.Context) {
		close(entered)
		<-release
		c.JSON(200, gin.H{"done": true})
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()

	// A request in flight finishes during a graceful stop.
	slow := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			slow <- -1
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	<-entered
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopped <- s.Stop(ctx)
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) before the request in flight finished", err)
	default:
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if code := <-slow; code != 200 {
		t.Errorf("request in flight got %d, want 200", code)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting connections after Stop")
	}
}

func TestStopDeadline(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	entered := make(chan struct{})
	block := make(chan struct{})
	defer close(block)
	s := New(cfg, Deps{})
	s.Router().GET("/stuck", func(c *gin.Context) { close(entered); <-block })
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	go http.Get("http://" + s.Addr() + "/stuck")
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop with a stuck request: %v, want deadline exceeded", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // substring of the error; "" for valid
	}{
		{"default", func(*Config) {}, ""},
		{"all interfaces", func(c *Config) { c.Listen = ":8080" }, ""},
		{"ipv6", func(c *Config) { c.Listen = "[::1]:8080" }, ""},
		{"no port", func(c *Config) { c.Listen = "127.0.0.1" }, "listen: "},
		{"bad port", func(c *Config) { c.Listen = "127.0.0.1:http2" }, "listen: port"},
		{"port too big", func(c *Config) { c.Listen = "127.0.0.1:70000" }, "listen: port"},
		{"zero read timeout", func(c *Config) { c.ReadTimeout = 0 }, "read_timeout: "},
		{"negative write timeout", func(c *Config) { c.WriteTimeout = -time.Second }, "write_timeout: "},
		{"readiness longer than write", func(c *Config) { c.ReadinessTimeout = time.Minute }, "readiness_timeout: "},
		{"pprof on loopback", func(c *Config) { c.PprofListen = "127.0.0.1:6060" }, ""},
		{"pprof on ipv6 loopback", func(c *Config) { c.PprofListen = "[::1]:0" }, ""},
		{"pprof on localhost", func(c *Config) { c.PprofListen = "localhost:6060" }, ""},
		{"pprof on every interface", func(c *Config) { c.PprofListen = ":6060" }, "pprof_listen: \":6060\" is not a loopback"},
		{"pprof on a public address", func(c *Config) { c.PprofListen = "192.0.2.1:6060" }, "pprof_listen: "},
		{"pprof on a host name", func(c *Config) { c.PprofListen = "example.com:6060" }, "pprof_listen: "},
		{"pprof without port", func(c *Config) { c.PprofListen = "127.0.0.1" }, "pprof_listen: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
