// Package alertapi is the alerts API under /api/v1/alerts: lists with
// filters and snapshot paging, one alert with its history, acks, and a
// stream of changes (Server-Sent Events). Every answer is scoped to the
// principal's tenants, in SQL (analytics/alerts.Reader).
package alertapi

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/api"
)

// Spec is the OpenAPI fragment of the alerts API.
//
//go:embed openapi.yaml
var Spec []byte

// Config of the alerts API.
type Config struct {
	// StreamPoll is how often a stream reads new changes from the
	// database (the process running the rules may be another one).
	StreamPoll time.Duration `mapstructure:"stream_poll" yaml:"stream_poll"`
	// StreamHeartbeat is how often an idle stream sends a comment line,
	// so that proxies and clients know it is alive.
	StreamHeartbeat time.Duration `mapstructure:"stream_heartbeat" yaml:"stream_heartbeat"`
	// StreamSettle is how old a change must be (by the database's clock)
	// before streams and list snapshots take it: rows of one second are
	// written in any order, so a second is read once it is over.
	StreamSettle time.Duration `mapstructure:"stream_settle" yaml:"stream_settle"`
	// MaxStreamsPerToken bounds the streams one token has open at once.
	MaxStreamsPerToken int `mapstructure:"max_streams_per_token" yaml:"max_streams_per_token"`
}

// DefaultConfig is the configuration with every default.
func DefaultConfig() Config {
	return Config{StreamPoll: time.Second, StreamHeartbeat: 15 * time.Second, StreamSettle: 2 * time.Second, MaxStreamsPerToken: 4}
}

// Validate names the keys that are wrong.
func (c Config) Validate() error {
	var errs []error
	if c.StreamPoll < 100*time.Millisecond || c.StreamPoll > time.Minute {
		errs = append(errs, fmt.Errorf("stream_poll: %s is not within 100ms..1m", c.StreamPoll))
	}
	if c.StreamHeartbeat < time.Second || c.StreamHeartbeat > 5*time.Minute {
		errs = append(errs, fmt.Errorf("stream_heartbeat: %s is not within 1s..5m", c.StreamHeartbeat))
	}
	if c.StreamSettle < time.Second || c.StreamSettle > time.Minute {
		errs = append(errs, fmt.Errorf("stream_settle: %s is not within 1s..1m", c.StreamSettle))
	}
	if c.MaxStreamsPerToken < 1 {
		errs = append(errs, fmt.Errorf("max_streams_per_token: %d must be at least 1", c.MaxStreamsPerToken))
	}
	return errors.Join(errs...)
}

// AckManager acknowledges alerts; *alerts.Manager is one. It must be the
// manager running the rules: acknowledgements change its alerts.
type AckManager interface {
	AckWithNote(ctx context.Context, tenant, id, actor, note string, expected uint64) (alerts.Alert, error)
	Unack(ctx context.Context, tenant, id, actor string, expected uint64) (alerts.Alert, error)
}

// Deps of the alerts API.
type Deps struct {
	// Reader reads the alerts tables (alerts.NewReader(db)). Required.
	Reader *alerts.Reader
	// Manager takes acknowledgements; nil answers them 503.
	Manager AckManager
	// PageTokens signs page tokens (api.NewPageTokens(key)); nil makes a
	// random key, good for this process only.
	PageTokens *api.PageTokens
	// Logger; nil discards.
	Logger *slog.Logger
}

// Handlers serve the alerts API.
type Handlers struct {
	cfg     Config
	reader  *alerts.Reader
	manager AckManager
	pages   *api.PageTokens
	log     *slog.Logger
	logDB   rate.Sometimes

	mu      sync.Mutex
	streams map[string]int // open streams by "token <id>" and by tenant scope
}

// New builds the handlers; it does no I/O. A zero Config takes the
// defaults.
func New(cfg Config, deps Deps) (*Handlers, error) {
	if cfg == (Config{}) {
		cfg = DefaultConfig()
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("alertapi: %w", err)
	}
	if deps.Reader == nil {
		return nil, errors.New("alertapi: no alerts reader")
	}
	h := &Handlers{cfg: cfg, reader: deps.Reader, manager: deps.Manager, pages: deps.PageTokens, log: deps.Logger,
		logDB: rate.Sometimes{Interval: time.Minute}, streams: map[string]int{}}
	if h.pages == nil {
		h.pages = api.NewPageTokens(nil)
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.log = h.log.With("component", "alertapi")
	return h, nil
}

// Register adds the routes to the /api/v1 group.
func (h *Handlers) Register(v1 *gin.RouterGroup) {
	v1.GET("/alerts", h.list)
	v1.GET("/alerts/stream", h.stream)
	v1.GET("/alerts/:id", h.get)
	v1.POST("/alerts/:id/ack", api.AdminOnly, h.ack)
	v1.DELETE("/alerts/:id/ack", api.AdminOnly, h.unack)
}

// unavailable answers a failure of the database (or of the lifecycle)
// with 503, logging the cause, which never reaches the client.
func (h *Handlers) unavailable(c *gin.Context, err error) {
	h.logDB.Do(func() { h.log.Warn("alerts cannot be read", "err", err) })
	_ = c.Error(err)
	api.WriteError(c, http.StatusServiceUnavailable, api.CodeUnavailable, "alerts cannot be read now; retry")
}
