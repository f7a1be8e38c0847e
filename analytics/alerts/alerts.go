// Package alerts is the lifecycle of alert instances, as Prometheus and
// Grafana alerting have it: what the rules (a scheduled rule runner) find
// becomes pending, then firing, then resolved, and is kept in the
// database and handed to the notifiers.
//
// A rule's evaluation (Manager.Evaluate) gives the instances it found,
// each identified by its subject labels. An instance first seen is
// pending; it fires once it was returned for the rule's For (k
// consecutive evaluations, or a duration). A pending instance that is not
// returned is dropped without a notification. A firing instance that is
// not returned keeps firing for KeepFiringFor (evaluations or a duration)
// and resolves only then, so an instance that flaps neither resolves nor
// fires again. Acknowledgement is a flag beside the status, set and
// cleared by Ack and Unack with the actor's name and an optional expected
// version (If-Match), and cleared when the alert resolves.
//
// An instance is identified across evaluations by its fingerprint,
// Alertmanager's scheme over (tenant, rule, subject labels): the severity
// is not part of it, so a change of severity updates the alert. Each
// episode of an instance (from pending to resolved or dropped) is one
// alert with its own id.
//
// Every change is written, asynchronously, to the tables alerts (the
// current row of each alert, ReplacingMergeTree on version) and
// alert_events (the history); Start reloads the pending and firing
// alerts, so that a restart keeps them, with their acknowledgements,
// and notifies nothing again. Notifications go out on entering firing,
// on a change of severity while firing, and on resolve, through a queue
// that evaluation never waits on.
package alerts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/lifecycle"
	"github.com/flowhouse/flowhouse/notify"
	"github.com/flowhouse/flowhouse/tenant"
)

// Status of an alert.
type Status string

// The statuses. Pending and firing alerts are active; resolved and
// dropped are final.
const (
	StatusPending  Status = "pending"
	StatusFiring   Status = "firing"
	StatusResolved Status = "resolved"
	// StatusDropped: pending, then no longer returned before it fired.
	StatusDropped Status = "dropped"
)

// Active reports whether s is pending or firing.
func (s Status) Active() bool { return s == StatusPending || s == StatusFiring }

// Notifier takes notifications; *notify.Notifier is one. Notify must not
// block for long: it is called from one goroutine, in order.
type Notifier interface {
	Notify(notify.Alert) error
}

// Config of the lifecycle. The zero value takes the defaults.
type Config struct {
	// MaxPendingEvents bounds the events waiting to be written while the
	// database is away; beyond it the oldest are dropped and counted.
	// Current alert rows are never dropped: only the newest row of each
	// alert waits.
	MaxPendingEvents int `mapstructure:"max_pending_events" yaml:"max_pending_events"`
	// NotifyQueueSize bounds the notifications waiting for the Notifier.
	NotifyQueueSize int `mapstructure:"notify_queue_size" yaml:"notify_queue_size"`
	// WriteTimeout bounds one insert.
	WriteTimeout time.Duration `mapstructure:"write_timeout" yaml:"write_timeout"`
	// RetryInitial and RetryMax are the backoff between failed writes.
	RetryInitial time.Duration `mapstructure:"retry_initial" yaml:"retry_initial"`
	RetryMax     time.Duration `mapstructure:"retry_max" yaml:"retry_max"`
	// NotifyOnStart notifies the firing alerts reloaded by Start again,
	// to every receiver. Off by default: a restart hands them to the
	// notifier as already notified (Alertmanager keeps getting them, and
	// grouped receivers are told only of what changes).
	NotifyOnStart bool `mapstructure:"notify_on_start" yaml:"notify_on_start"`
}

// Defaults of Config.
const (
	DefaultMaxPendingEvents = 10000
	DefaultNotifyQueueSize  = 1024
	DefaultWriteTimeout     = 10 * time.Second
	DefaultRetryInitial     = time.Second
	DefaultRetryMax         = 30 * time.Second
)

// DefaultConfig is the configuration with every default.
func DefaultConfig() Config {
	return Config{
		MaxPendingEvents: DefaultMaxPendingEvents,
		NotifyQueueSize:  DefaultNotifyQueueSize,
		WriteTimeout:     DefaultWriteTimeout,
		RetryInitial:     DefaultRetryInitial,
		RetryMax:         DefaultRetryMax,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxPendingEvents == 0 {
		c.MaxPendingEvents = d.MaxPendingEvents
	}
	if c.NotifyQueueSize == 0 {
		c.NotifyQueueSize = d.NotifyQueueSize
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.RetryInitial == 0 {
		c.RetryInitial = d.RetryInitial
	}
	if c.RetryMax == 0 {
		c.RetryMax = d.RetryMax
	}
	return c
}

// Validate names the keys that are wrong.
func (c Config) Validate() error {
	var errs []error
	if c.MaxPendingEvents < 0 {
		errs = append(errs, fmt.Errorf("max_pending_events: %d is negative", c.MaxPendingEvents))
	}
	if c.NotifyQueueSize < 0 {
		errs = append(errs, fmt.Errorf("notify_queue_size: %d is negative", c.NotifyQueueSize))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"write_timeout", c.WriteTimeout}, {"retry_initial", c.RetryInitial}, {"retry_max", c.RetryMax}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: %s is negative", d.key, d.v))
		}
	}
	if c.RetryMax > 0 && c.RetryInitial > c.RetryMax {
		errs = append(errs, fmt.Errorf("retry_initial: %s is above retry_max %s", c.RetryInitial, c.RetryMax))
	}
	return errors.Join(errs...)
}

// Deps are what the lifecycle uses besides its configuration.
type Deps struct {
	// DB keeps the alerts (a store.DB is one). Nil keeps them in memory
	// only: for tests.
	DB dbapi.DB
	// Notifier gets the notifications; nil sends none.
	Notifier Notifier
	// Tenants, when set, refuses evaluations of rules of unknown tenants.
	Tenants *tenant.Tenants
	// Logger; nil discards. Repeated failures are logged at most once a
	// minute per kind.
	Logger *slog.Logger
	// Registerer gets the flowhouse_alerts_* metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now is the clock of acknowledgements and of evaluations without a
	// time; nil is time.Now.
	Now func() time.Time
}

// Errors.
var (
	ErrNotStarted = errors.New("alerts: not started")
	ErrStopped    = errors.New("alerts: stopped")
	// ErrNotFound: no alert with that id for that tenant.
	ErrNotFound = errors.New("alerts: alert not found")
	// ErrNotActive: the alert has resolved or was dropped; it can no
	// longer be acknowledged.
	ErrNotActive = errors.New("alerts: alert is no longer active")
)

// VersionError is returned by Ack and Unack when the alert's version is
// not the one expected (HTTP 412 for If-Match).
type VersionError struct {
	Expected, Current uint64
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("alerts: version is %d, not %d as expected", e.Current, e.Expected)
}

// Manager is the alert lifecycle.
type Manager struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	now  func() time.Time
	m    *metrics
	w    *writer // nil without a DB
	n    *sender // nil without a Notifier

	started atomic.Bool
	stopped atomic.Bool

	mu    sync.Mutex
	rules map[ruleKey]*ruleState
	byID  map[string]*ruleState
}

// New builds the lifecycle. It does no I/O.
func New(cfg Config, deps Deps) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	cfg = cfg.withDefaults()
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	mgr := &Manager{
		cfg:   cfg,
		deps:  deps,
		log:   log.With("component", "alerts"),
		now:   now,
		rules: map[ruleKey]*ruleState{},
		byID:  map[string]*ruleState{},
	}
	mgr.m = newMetrics(deps.Registerer)
	if deps.DB != nil {
		mgr.w = newWriter(deps.DB, cfg, mgr.m, mgr.log)
	}
	if deps.Notifier != nil {
		mgr.n = newSender(deps.Notifier, cfg.NotifyQueueSize, mgr.m, mgr.log)
	}
	return mgr, nil
}

// Start reloads the pending and firing alerts from the database and
// starts writing and notifying. Evaluations are refused before it.
func (mgr *Manager) Start(ctx context.Context) error {
	if mgr.stopped.Load() {
		return ErrStopped
	}
	if mgr.started.Load() {
		return errors.New("alerts: already started")
	}
	var reloaded []*Alert
	if mgr.w != nil {
		var err error
		if reloaded, err = loadActive(ctx, mgr.deps.DB); err != nil {
			return fmt.Errorf("alerts: reload: %w", err)
		}
	}
	mgr.restore(reloaded)
	if mgr.w != nil {
		mgr.w.seed(reloaded)
		mgr.w.start()
	}
	if mgr.n != nil {
		mgr.n.start()
		// The notifier keeps its state in memory: it learns the alerts
		// that fire, as already notified (Restored) unless NotifyOnStart
		// asks for them to be notified again. Alertmanager gets them
		// re-posted either way, or it would resolve them when their
		// endsAt passes.
		for _, a := range reloaded {
			if a.Status == StatusFiring {
				n := a.notification(ruleMeta{})
				n.Restored = !mgr.cfg.NotifyOnStart
				mgr.n.send(n)
			}
		}
	}
	mgr.started.Store(true)
	mgr.log.Info("alerts reloaded", "active", len(reloaded))
	return nil
}

// Stop refuses further evaluations and acknowledgements, then writes
// what waits for the database and hands what waits to the Notifier,
// within ctx. It returns an error when writes were lost.
func (mgr *Manager) Stop(ctx context.Context) error {
	if mgr.stopped.Swap(true) || !mgr.started.Load() {
		return nil
	}
	// Take every rule's lock once: an evaluation that was under way has
	// queued its writes and notifications when this returns.
	mgr.mu.Lock()
	states := make([]*ruleState, 0, len(mgr.rules))
	for _, rs := range mgr.rules {
		states = append(states, rs)
	}
	mgr.mu.Unlock()
	for _, rs := range states {
		rs.mu.Lock()
		rs.mu.Unlock() //nolint:staticcheck // a barrier
	}
	var errs []error
	if mgr.n != nil {
		mgr.n.stop()
	}
	if mgr.w != nil {
		errs = append(errs, mgr.w.stop(ctx))
	}
	return errors.Join(errs...)
}

// Flush waits until every change made before it is written (or ctx ends).
func (mgr *Manager) Flush(ctx context.Context) error {
	if mgr.w == nil {
		return nil
	}
	return mgr.w.flush(ctx)
}

// Component is the lifecycle as a component of the process: start it
// after the notifier and before the rules.
func (mgr *Manager) Component() lifecycle.Component {
	return lifecycle.Component{Name: "alerts", Start: mgr.Start, Stop: mgr.Stop}
}

// Reader is the read side over the tables, for the API.
func (mgr *Manager) Reader() *Reader {
	if mgr.deps.DB == nil {
		return nil
	}
	return NewReader(mgr.deps.DB)
}
