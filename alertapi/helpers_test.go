package alertapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/alertapi"
	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/apitest"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/notify"
)

// testWriter logs to the test.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestMain(m *testing.M) { enginetest.Main(m) }

var tables = []string{"alerts", "alert_events", "alert_versions"}

// env is the alerts API over a real lifecycle writing to a real engine.
type env struct {
	t      *testing.T
	db     enginetest.Engine
	m      *alerts.Manager
	r      *alerts.Reader
	server *api.Server
	c      *apitest.Client
	base   string

	stopOnce sync.Once
	stopErr  error
}

func newEnv(t *testing.T, e enginetest.Engine, apiCfg api.Config, cfg alertapi.Config) *env {
	t.Helper()
	m, err := alerts.New(alerts.Config{}, alerts.Deps{DB: e.DB})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop(context.Background()) })
	h, err := alertapi.New(cfg, alertapi.Deps{Reader: alerts.NewReader(e.DB), Manager: m, PageTokens: api.NewPageTokens([]byte("test key")),
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	apiCfg.Listen = "127.0.0.1:0"
	apiCfg.RateLimit = 0 // the tests send many requests with one token
	s := api.New(apiCfg, api.Deps{Authenticator: apitest.Principals("a", "b")})
	s.AddSpec("alerts", alertapi.Spec)
	s.Register(func(v1 *gin.RouterGroup) { h.Register(v1) })
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.Addr()
	env := &env{t: t, db: e, m: m, r: alerts.NewReader(e.DB), server: s, c: apitest.NewClient(t, base), base: base}
	t.Cleanup(func() { _ = env.stop() })
	return env
}

// stop stops the server once: api.Server.Stop panics when called twice
// (its shutdown hook closes a channel each time).
func (e *env) stop() error {
	e.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.stopErr = e.server.Stop(ctx)
	})
	return e.stopErr
}

// testConfig polls fast so that tests wait little.
func testConfig() alertapi.Config {
	cfg := alertapi.DefaultConfig()
	cfg.StreamPoll, cfg.StreamSettle = 100*time.Millisecond, time.Second
	return cfg
}

func ruleOf(tenant, name string) alerts.Rule {
	return alerts.Rule{Tenant: tenant, Name: name, Severity: notify.SeverityWarning, Labels: map[string]string{"team": "noc"},
		Annotations: map[string]string{"summary": "{{.Labels}} at {{.Value}}"}}
}

// evaluate runs one evaluation of tenant's rule returning instances
// (labels as name, value pairs), now.
func (e *env) evaluate(tenant, rule string, instances ...alerts.Instance) {
	e.t.Helper()
	if _, err := e.m.Evaluate(context.Background(), alerts.Evaluation{Rule: ruleOf(tenant, rule), Instances: instances}); err != nil {
		e.t.Fatal(err)
	}
}

func inst(value float64, labels ...string) alerts.Instance {
	in := alerts.Instance{Labels: map[string]string{}, Value: value}
	for i := 0; i+1 < len(labels); i += 2 {
		in.Labels[labels[i]] = labels[i+1]
	}
	return in
}

func (e *env) flush() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.m.Flush(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// settled waits until what was written is older than the settling time
// by the database's clock, so that snapshots and streams take it.
func (e *env) settled(settle time.Duration) {
	e.t.Helper()
	e.flush()
	start, err := e.r.Now(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	testkit.Eventually(e.t, "database clock past the settling time", 10*time.Second, func() bool {
		now, err := e.r.Now(context.Background())
		return err == nil && now.Sub(start) > settle
	})
}

// active is the alert of tenant's rule with that subject value.
func (e *env) active(tenant, value string) alerts.Alert {
	e.t.Helper()
	for _, a := range e.m.Active(tenant) {
		for _, v := range a.Subject {
			if v == value {
				return a
			}
		}
	}
	e.t.Fatalf("no active alert of %s about %s", tenant, value)
	return alerts.Alert{}
}

type listBody struct {
	Alerts []alertapi.Alert `json:"alerts"`
	Next   string           `json:"next_page_token"`
}

func (e *env) list(t *testing.T, token, query string) listBody {
	t.Helper()
	r := e.c.WithToken(token).Get("/api/v1/alerts?" + query)
	if r.Status != http.StatusOK {
		t.Fatalf("list %q: %d %s", query, r.Status, r.Body)
	}
	var b listBody
	r.JSON(t, &b)
	return b
}

func ids(as []alertapi.Alert) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	sort.Strings(out)
	return out
}

func sorted(xs ...string) []string {
	out := append([]string(nil), xs...)
	sort.Strings(out)
	return out
}

func join(xs []string) string { return strings.Join(xs, ",") }

func describe(as []alertapi.Alert) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "%s/%s/%s/%v ", a.Tenant, a.Rule, a.Status, a.Subject)
	}
	return b.String()
}

// nextSecond waits until the clock is in the next second: times are kept
// in whole seconds, and a test that orders changes by time needs them
// in different seconds.
func nextSecond(t *testing.T) {
	t.Helper()
	now := time.Now().Unix()
	testkit.Eventually(t, "the next second", 3*time.Second, func() bool { return time.Now().Unix() > now })
}
