package token

import (
	"context"
	"maps"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// usage collects the last use of each token and writes them in one
// batch every tokens.usage_interval: a request never writes a row, and a
// token gets at most one row per interval per process.
type usage struct {
	s        *Store
	interval time.Duration
	errLog   rate.Sometimes

	mu      sync.Mutex
	pending map[string]time.Time

	quit, done chan struct{}
}

func newUsage(s *Store) *usage {
	return &usage{s: s, interval: s.cfg.UsageInterval, errLog: rate.Sometimes{Interval: time.Minute}, pending: map[string]time.Time{}}
}

func (u *usage) record(id string, at time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if at.After(u.pending[id]) {
		u.pending[id] = at
	}
}

func (u *usage) start() {
	u.quit, u.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(u.done)
		t := time.NewTicker(u.interval)
		defer t.Stop()
		for {
			select {
			case <-u.quit:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), u.interval)
				_ = u.flush(ctx)
				cancel()
			}
		}
	}()
}

func (u *usage) stop(ctx context.Context) error {
	if u.quit != nil {
		close(u.quit)
		<-u.done
		u.quit = nil
	}
	return u.flush(ctx)
}

// flush writes what is pending; on failure it is kept for the next time
// (a newer use of a token replacing the kept one).
func (u *usage) flush(ctx context.Context) error {
	u.mu.Lock()
	batch := u.pending
	u.pending = map[string]time.Time{}
	u.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := u.s.writeUsage(ctx, batch)
	if err == nil {
		u.s.metrics.usageRows.Add(float64(len(batch)))
		return nil
	}
	u.s.metrics.usageErrors.Inc()
	u.errLog.Do(func() { u.s.log.Warn("writing api token last uses failed; kept for the next try", "err", err) })
	u.mu.Lock()
	for id, at := range batch {
		if at.After(u.pending[id]) {
			u.pending[id] = at
		}
	}
	u.mu.Unlock()
	return err
}

// pendingCopy is what is waiting, for tests.
func (u *usage) pendingCopy() map[string]time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	return maps.Clone(u.pending)
}
