package notify

import (
	"sync"
	"time"
)

// logEvery is how often one kind of warning is logged per destination:
// a receiver that is down for an hour logs a few hundred lines, not one
// per attempt and alert.
const logEvery = 10 * time.Second

// logLimiter lets one message per key through every interval and counts
// those it holds back, for the next one to say. The tree's idiom for a
// fixed log site is x/time/rate.Sometimes; this one is keyed by
// destination, which come and go with the configuration, and runs on the
// notifier's clock, so that the tests' fake clock drives it.
type logLimiter struct {
	every   time.Duration
	mu      sync.Mutex
	last    map[string]time.Time
	skipped map[string]int
}

func newLogLimiter(every time.Duration) *logLimiter {
	return &logLimiter{every: every, last: map[string]time.Time{}, skipped: map[string]int{}}
}

// allow reports whether a message of key may be logged at now, and how
// many were held back since the last one.
func (l *logLimiter) allow(key string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if last, ok := l.last[key]; ok && now.Sub(last) < l.every {
		l.skipped[key]++
		return false, 0
	}
	l.last[key] = now
	n := l.skipped[key]
	delete(l.skipped, key)
	return true, n
}
