package flowgen

import (
	"context"
	"time"
)

// Pacer spreads units (flows) over time at a rate per second from its
// start: the generator and the replayer send what is due, then sleep
// until the next unit is.
type Pacer struct {
	rate  float64
	start time.Time
	// Stopped until a paced run has nothing due (Go 1.23 timers: Reset
	// after Stop sees no stale tick).
	timer *time.Timer
}

// NewPacer starts a schedule of rate units per second (rate > 0) at start.
func NewPacer(rate float64, start time.Time) *Pacer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &Pacer{rate: rate, start: start, timer: t}
}

// Elapsed is the wall time since the start.
func (p *Pacer) Elapsed() time.Duration { return time.Since(p.start) }

// Due is the number of units due after el: the first one at once.
func (p *Pacer) Due(el time.Duration) uint64 { return uint64(el.Seconds()*p.rate) + 1 }

// At is when unit is due on the schedule.
func (p *Pacer) At(unit uint64) time.Duration {
	return time.Duration(float64(unit) * 1e9 / p.rate)
}

// Sleep waits until unit is due (at least a millisecond: shorter sleeps
// cost more than the bursts they would smooth), or ctx ends.
func (p *Pacer) Sleep(ctx context.Context, unit uint64) {
	p.timer.Reset(max(p.At(unit)-p.Elapsed(), time.Millisecond))
	select {
	case <-ctx.Done():
		p.timer.Stop()
	case <-p.timer.C:
	}
}

// Stop releases the timer.
func (p *Pacer) Stop() { p.timer.Stop() }
