// Package notify delivers alert notifications: to Prometheus Alertmanager
// (API v2, as Prometheus posts alerts), to webhooks (Alertmanager's
// webhook payload, signed with HMAC-SHA256) and by mail (SMTP with
// STARTTLS or implicit TLS, AUTH PLAIN or LOGIN).
//
// The alert lifecycle calls Notify when an alert instance starts firing,
// may call it again while it fires, and calls it when it resolves. Notify
// never blocks: it puts the alert in a bounded queue and returns. A
// dispatcher goroutine routes each alert (by tenant and minimum
// severity), groups alerts per route (by tenant and group_by labels,
// waiting group_wait for more), re-notifies groups still firing every
// repeat_interval, and notifies resolves. Each destination (an
// Alertmanager URL, a webhook URL, a mail server) has its own bounded
// queue and worker that retries with backoff (store.Backoff) up to
// retry.max_attempts and retry.max_age, so one slow receiver delays no
// other. What is dropped is counted.
//
// State is in memory: after a restart the lifecycle hands the alerts
// still firing back as Restored, so Alertmanager keeps them and grouped
// receivers are not told again what they were told before.
package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowhouse/flowhouse/store"
)

// Deps are what a Notifier uses besides its configuration.
type Deps struct {
	// Logger; nil discards. Delivery failures are logged at most once per
	// logEvery per destination, with the count of those not logged.
	Logger *slog.Logger
	// Registerer gets the flowhouse_notify_* metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Errors of Notify.
var (
	// ErrQueueFull: the alert was dropped (and counted) because the
	// dispatcher is that far behind.
	ErrQueueFull = errors.New("notify: queue full, alert dropped")
	// ErrStopped: Notify after Stop.
	ErrStopped = errors.New("notify: stopped")
)

// Notifier routes, groups and delivers alert notifications.
type Notifier struct {
	cfg       Config
	log       *slog.Logger
	m         *metrics
	limit     *logLimiter
	now       func() time.Time
	routes    []*route
	receivers []*receiver
	disp      *dispatcher
	in        chan *Alert

	stopped    atomic.Bool
	lostAtStop atomic.Int64

	mu      sync.Mutex
	started bool
	// runCtx ends when Stop begins: the dispatcher stops, workers drain.
	runCtx    context.Context
	cancelRun context.CancelFunc
	// deliverCtx ends stop_timeout after Stop begins: attempts and
	// retry waits end.
	deliverCtx    context.Context
	cancelDeliver context.CancelFunc
	dispatchDone  chan struct{}
	workers       sync.WaitGroup
}

// receiver is a configured receiver and its destinations.
type receiver struct {
	name           string
	kind           string
	resendInterval time.Duration // Alertmanager
	maxAlerts      int           // webhook
	// targets are every destination: one per Alertmanager URL, per
	// webhook URL (the default and each tenant's), one mail server.
	targets []*target
	// webhook: the tenant's target, else defaultTarget (may be nil).
	byTenant      map[string]*target
	defaultTarget *target
	smtp          *smtpSender
}

// target is one destination with its queue and worker.
type target struct {
	recv *receiver
	// name is for logs: the URL without its query (which may hold a
	// token), or the smarthost.
	name string
	url  string // Alertmanager: the alerts endpoint; webhook: the URL
	key  []byte // webhook: the HMAC key
	q    chan *job
	send func(ctx context.Context, t *target, j *job) error
}

// job is one notification to one destination.
type job struct {
	body    []byte // JSON, or the mail message
	id      string // X-Flowhouse-Delivery, Message-ID: the same on every attempt
	what    string // for logs: group key, or "N alerts"
	created time.Time
	// expires: past it the job is given up. A re-send of firing alerts
	// to Alertmanager (superseded) expires at the next re-send and is
	// then dropped without counting: the next one carries the same
	// alerts.
	expires    time.Time
	superseded bool
}

// New builds a Notifier from a valid configuration (see Config.Validate;
// config.Load gives secrets as plain text). It does no I/O.
func New(cfg Config, deps Deps) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{
		cfg:   cfg,
		log:   log.With("component", "notify"),
		limit: newLogLimiter(logEvery),
		now:   time.Now,
		in:    make(chan *Alert, cfg.QueueSize),
	}
	byName := map[string]*receiver{}
	for _, rc := range cfg.Receivers {
		r, err := n.newReceiver(rc)
		if err != nil {
			return nil, err
		}
		n.receivers = append(n.receivers, r)
		byName[r.name] = r
	}
	for i, rc := range cfg.Routes {
		n.routes = append(n.routes, newRoute(i, rc, byName))
	}
	n.disp = newDispatcher(n.routes, n.receivers)
	n.m = newMetrics(deps.Registerer, n)
	return n, nil
}

func (n *Notifier) newReceiver(rc ReceiverConfig) (*receiver, error) {
	kind, _ := rc.kind()
	r := &receiver{name: rc.Name, kind: kind}
	newTarget := func(name string) *target {
		t := &target{recv: r, name: name, q: make(chan *job, n.cfg.QueueSize)}
		r.targets = append(r.targets, t)
		return t
	}
	switch kind {
	case KindAlertmanager:
		r.resendInterval = rc.Alertmanager.ResendInterval
		if r.resendInterval == 0 {
			r.resendInterval = DefaultResendInterval
		}
		client := newHTTPClient()
		for _, u := range rc.Alertmanager.URLs {
			endpoint, err := url.JoinPath(u, "/api/v2/alerts")
			if err != nil {
				return nil, fmt.Errorf("notify: receivers %s: alertmanager url %s: %w", rc.Name, logURL(u), err)
			}
			t := newTarget(logURL(endpoint))
			t.url = endpoint
			t.send = func(ctx context.Context, t *target, j *job) error {
				return postJSON(ctx, client, t.url, j.body, nil)
			}
		}
	case KindWebhook:
		w := rc.Webhook
		r.maxAlerts = w.MaxAlerts
		client := newHTTPClient()
		mk := func(u, key string) (*target, error) {
			if key == "" {
				return nil, fmt.Errorf("notify: receiver %s: the HMAC key of %s is empty (hmac_key_file is read by config.Load)", rc.Name, logURL(u))
			}
			t := newTarget(logURL(u))
			t.url, t.key = u, []byte(key)
			t.send = func(ctx context.Context, t *target, j *job) error {
				return postJSON(ctx, client, t.url, j.body, signatureHeaders(t.key, j, n.now()))
			}
			return t, nil
		}
		if w.URL != "" {
			t, err := mk(w.URL, w.HMACKey)
			if err != nil {
				return nil, err
			}
			r.defaultTarget = t
		}
		r.byTenant = map[string]*target{}
		for _, tc := range w.Tenants {
			key := tc.HMACKey
			if key == "" {
				key = w.HMACKey
			}
			t, err := mk(tc.URL, key)
			if err != nil {
				return nil, err
			}
			r.byTenant[tc.Tenant] = t
		}
	case KindSMTP:
		s, err := newSMTPSender(rc.SMTP)
		if err != nil {
			return nil, fmt.Errorf("notify: receiver %s: %w", rc.Name, err)
		}
		r.smtp = s
		t := newTarget(rc.SMTP.Smarthost)
		t.send = func(ctx context.Context, _ *target, j *job) error { return s.send(ctx, j.body) }
	}
	return r, nil
}

// Start reads the files of the configuration (mail servers' CA files)
// and starts the dispatcher and one worker per destination. ctx is not
// kept: Stop ends them.
func (n *Notifier) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started {
		return errors.New("notify: already started")
	}
	if n.stopped.Load() {
		return errors.New("notify: already stopped")
	}
	for _, r := range n.receivers {
		if r.smtp != nil {
			if err := r.smtp.load(); err != nil {
				return fmt.Errorf("notify: receiver %s: %w", r.name, err)
			}
		}
	}
	n.started = true
	base := context.WithoutCancel(ctx)
	n.runCtx, n.cancelRun = context.WithCancel(base)
	n.deliverCtx, n.cancelDeliver = context.WithCancel(base)
	n.dispatchDone = make(chan struct{})
	go n.dispatch()
	for _, r := range n.receivers {
		for _, t := range r.targets {
			n.workers.Add(1)
			go n.work(t)
		}
	}
	n.log.Debug("started", "receivers", len(n.receivers), "routes", len(n.routes))
	return nil
}

// Stop stops taking alerts, then delivers what is queued for at most
// stop_timeout; what is left is counted (reason shutdown). Groups still
// waiting for group_wait are not notified. It returns an error when
// notifications were lost.
func (n *Notifier) Stop() error {
	n.mu.Lock()
	if n.stopped.Swap(true) {
		n.mu.Unlock()
		return nil
	}
	started := n.started
	n.mu.Unlock()
	if !started {
		return nil
	}
	n.cancelRun()
	<-n.dispatchDone
	// The dispatcher was the only sender: workers drain their queues and
	// end.
	for _, r := range n.receivers {
		for _, t := range r.targets {
			close(t.q)
		}
	}
	done := make(chan struct{})
	go func() { n.workers.Wait(); close(done) }()
	timer := time.NewTimer(n.cfg.StopTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		n.cancelDeliver()
		<-done
	}
	n.cancelDeliver()
	if lost := n.lostAtStop.Load(); lost > 0 {
		return fmt.Errorf("notify: %d notifications not delivered within stop_timeout %s", lost, n.cfg.StopTimeout)
	}
	return nil
}

// Notify takes an alert for delivery and returns at once. It is safe for
// concurrent use. The error says why an alert was refused (a field that
// is not valid) or dropped (ErrQueueFull, counted under
// dropped_queue_full for each receiver its routes name); nothing is
// retried by the caller.
func (n *Notifier) Notify(a Alert) error {
	if err := a.validate(); err != nil {
		return fmt.Errorf("notify: alert %q of tenant %q: %w", a.Rule, a.Tenant, err)
	}
	if n.stopped.Load() {
		return ErrStopped
	}
	p := a.prepared(n.now())
	select {
	case n.in <- p:
		n.m.alerts.WithLabelValues(string(p.Status)).Inc()
		return nil
	default:
	}
	counted := map[*receiver]bool{}
	for _, r := range match(n.routes, p) {
		for _, recv := range r.receivers {
			if !counted[recv] {
				counted[recv] = true
				n.m.fail(recv, ReasonQueueFull)
			}
		}
	}
	if ok, skipped := n.limit.allow("queue full", n.now()); ok {
		n.log.Warn("alert queue full, alert dropped", "queue_size", n.cfg.QueueSize,
			"tenant", p.Tenant, "rule", p.Rule, "status", p.Status, "not_logged", skipped)
	}
	return ErrQueueFull
}

// dispatchBatch bounds the alerts taken from the queue before flushing,
// so that a burst still gets its notifications out in order.
const dispatchBatch = 256

func (n *Notifier) dispatch() {
	defer close(n.dispatchDone)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-n.runCtx.Done():
			return
		case a := <-n.in:
			now := n.now()
			n.disp.add(a, now)
		more:
			for range dispatchBatch - 1 {
				select {
				case a := <-n.in:
					n.disp.add(a, now)
				default:
					break more
				}
			}
		case <-timer.C:
		}
		now := n.now()
		ns, posts := n.disp.flush(now)
		for _, x := range ns {
			n.enqueueNotification(x)
		}
		for _, p := range posts {
			n.enqueuePost(p)
		}
		if next := n.disp.next(); next.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(max(next.Sub(n.now()), 0))
		}
	}
}

// enqueueNotification hands a group's notification to its grouped
// receivers.
func (n *Notifier) enqueueNotification(x *notification) {
	for _, r := range x.route.receivers {
		switch r.kind {
		case KindWebhook:
			t := r.byTenant[x.tenant]
			if t == nil {
				t = r.defaultTarget
			}
			if t == nil {
				n.m.fail(r, ReasonNoURL)
				if ok, skipped := n.limit.allow(r.name+" no url "+x.tenant, n.now()); ok {
					n.log.Warn("webhook has no URL for the tenant, notification dropped", "receiver", r.name,
						"tenant", x.tenant, "group", x.groupKey, "not_logged", skipped)
				}
				continue
			}
			body, err := webhookBody(x, r, n.cfg.ExternalURL)
			if err != nil {
				n.log.Error("webhook payload", "receiver", r.name, "error", err)
				continue
			}
			n.enqueue(t, &job{body: body, id: newID(), what: x.groupKey, created: x.created,
				expires: x.created.Add(n.cfg.Retry.MaxAge)})
		case KindSMTP:
			id := newID()
			msg := r.smtp.message(x, n.cfg.ExternalURL, id)
			n.enqueue(r.targets[0], &job{body: msg, id: id, what: x.groupKey, created: x.created,
				expires: x.created.Add(n.cfg.Retry.MaxAge)})
		}
	}
}

// amBatchSize bounds the alerts of one post, as Prometheus does (64).
const amBatchSize = 64

func (n *Notifier) enqueuePost(p *amPost) {
	expires := p.created.Add(n.cfg.Retry.MaxAge)
	if p.resend {
		expires = p.created.Add(p.recv.resendInterval)
	}
	for start := 0; start < len(p.alerts); start += amBatchSize {
		chunk := p.alerts[start:min(start+amBatchSize, len(p.alerts))]
		body, err := amBody(chunk)
		if err != nil {
			n.log.Error("alertmanager payload", "receiver", p.recv.name, "error", err)
			continue
		}
		what := fmt.Sprintf("%d alerts", len(chunk))
		for _, t := range p.recv.targets {
			n.enqueue(t, &job{body: body, id: newID(), what: what, created: p.created,
				expires: expires, superseded: p.resend})
		}
	}
}

// enqueue never blocks: the dispatcher must keep taking alerts.
func (n *Notifier) enqueue(t *target, j *job) {
	select {
	case t.q <- j:
	default:
		n.m.fail(t.recv, ReasonQueueFull)
		if ok, skipped := n.limit.allow(t.name+" queue full", n.now()); ok {
			n.log.Warn("notification queue full, notification dropped", "receiver", t.recv.name,
				"destination", t.name, "queue_size", n.cfg.QueueSize, "not_logged", skipped)
		}
	}
}

func (n *Notifier) work(t *target) {
	defer n.workers.Done()
	for j := range t.q {
		n.deliver(t, j)
	}
}

// deliver attempts j until it is delivered, refused for good, out of
// attempts or of age, or stop_timeout passes.
func (n *Notifier) deliver(t *target, j *job) {
	r := t.recv
	b := store.Backoff{Initial: n.cfg.Retry.Initial, Max: n.cfg.Retry.Max}
	for attempt := 1; ; attempt++ {
		if n.deliverCtx.Err() != nil {
			n.lose(t, j, ReasonShutdown, nil)
			return
		}
		if now := n.now(); now.After(j.expires) {
			if j.superseded {
				n.log.Debug("re-send superseded", "receiver", r.name, "destination", t.name)
				return
			}
			n.lose(t, j, ReasonGaveUp, nil)
			return
		}
		ctx, cancel := context.WithTimeout(n.deliverCtx, n.cfg.Timeout)
		err := t.send(ctx, t, j)
		cancel()
		if err == nil {
			n.m.sent.WithLabelValues(r.kind, r.name).Inc()
			n.log.Debug("notification delivered", "receiver", r.name, "destination", t.name,
				"notification", j.what, "attempt", attempt)
			return
		}
		if n.deliverCtx.Err() != nil {
			n.lose(t, j, ReasonShutdown, err)
			return
		}
		de := classify(err)
		n.m.fail(r, de.reason)
		if de.permanent {
			n.warn(t, "notification refused, not retried", "notification", j.what, "reason", de.reason, "error", de.err)
			return
		}
		wait := b.Next()
		if de.retryAfter > wait {
			wait = min(de.retryAfter, n.cfg.Retry.Max)
		}
		if attempt >= n.cfg.Retry.MaxAttempts || n.now().Add(wait).After(j.expires) {
			if j.superseded && attempt < n.cfg.Retry.MaxAttempts {
				return // the next re-send carries the same alerts
			}
			n.m.fail(r, ReasonGaveUp)
			n.warn(t, "notification given up", "notification", j.what, "attempts", attempt, "reason", de.reason, "error", de.err)
			return
		}
		n.warn(t, "notification failed, retrying", "notification", j.what, "attempt", attempt,
			"retry_in", wait.Round(time.Millisecond), "reason", de.reason, "error", de.err)
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-n.deliverCtx.Done():
			timer.Stop()
			n.lose(t, j, ReasonShutdown, err)
			return
		}
	}
}

// lose counts a notification lost for reason.
func (n *Notifier) lose(t *target, j *job, reason string, err error) {
	n.m.fail(t.recv, reason)
	if reason == ReasonShutdown {
		n.lostAtStop.Add(1)
	}
	args := []any{"notification", j.what, "reason", reason}
	if err != nil {
		args = append(args, "error", err)
	}
	n.warn(t, "notification dropped", args...)
}

// warn logs for a destination, at most once per logEvery per message.
func (n *Notifier) warn(t *target, msg string, args ...any) {
	ok, skipped := n.limit.allow(t.name+" "+msg, n.now())
	if !ok {
		return
	}
	args = append([]any{"receiver", t.recv.name, "kind", t.recv.kind, "destination", t.name}, args...)
	if skipped > 0 {
		args = append(args, "not_logged", skipped)
	}
	n.log.Warn(msg, args...)
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// logURL is a URL fit for logs: without user information and query,
// where tokens hide.
func logURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}
