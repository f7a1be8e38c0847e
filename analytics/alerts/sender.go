package alerts

import (
	"log/slog"
	"sync"

	"github.com/flowhouse/flowhouse/notify"
)

// sender hands notifications to the Notifier from its own goroutine, in
// the order they were made, so that evaluation never waits on it.
type sender struct {
	n    Notifier
	m    *metrics
	log  *slog.Logger
	q    chan notify.Alert
	done chan struct{}

	mu      sync.RWMutex // send holds it shared; stop exclusively, to close q
	closed  bool
	started bool
}

func newSender(n Notifier, size int, m *metrics, log *slog.Logger) *sender {
	return &sender{n: n, m: m, log: log, q: make(chan notify.Alert, size), done: make(chan struct{})}
}

func (s *sender) start() {
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	go s.run()
}

func (s *sender) run() {
	defer close(s.done)
	for a := range s.q {
		if err := s.n.Notify(a); err != nil {
			s.m.notifyFailed.WithLabelValues(NotifyRefused).Inc()
			s.m.logNotify.Do(func() {
				s.log.Warn("notification not taken", "tenant", a.Tenant, "rule", a.Rule, "status", a.Status, "error", err)
			})
			continue
		}
		s.m.notified.WithLabelValues(string(a.Status)).Inc()
	}
}

// send never blocks: a full queue drops and counts.
func (s *sender) send(a notify.Alert) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		s.m.notifyFailed.WithLabelValues(NotifyQueueFull).Inc()
		return
	}
	select {
	case s.q <- a:
	default:
		s.m.notifyFailed.WithLabelValues(NotifyQueueFull).Inc()
		s.m.logNotify.Do(func() {
			s.log.Warn("notification queue full, notification dropped", "tenant", a.Tenant, "rule", a.Rule, "status", a.Status)
		})
	}
}

// stop hands what is queued to the Notifier (which does not block) and
// ends the goroutine.
func (s *sender) stop() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.q)
	started := s.started
	s.mu.Unlock()
	if started {
		<-s.done
	}
}
