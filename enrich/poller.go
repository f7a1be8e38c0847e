package enrich

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/flowhouse/flowhouse/enrich/snmp"
	"github.com/flowhouse/flowhouse/flow"
)

// rescanInterval: how often the manager looks for exporters whose
// discovery notification was dropped.
const rescanInterval = 5 * time.Second

// initialSpread bounds the random delay of an exporter's first polls.
const initialSpread = time.Second

// pollBudget bounds one poll (several walks) of one kind.
const pollBudget = 2 * time.Minute

// errCircuitOpen: a poll was skipped by the exporter's circuit breaker.
var errCircuitOpen = errors.New("circuit breaker open after repeated failures")

func (e *Enricher) manage(ctx context.Context) {
	defer e.wg.Done()
	scan := func() {
		e.exporters.Range(func(_, v any) bool {
			e.schedule(ctx, v.(*exporter))
			return true
		})
	}
	scan()
	t := time.NewTicker(rescanInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case x := <-e.discovered:
			e.schedule(ctx, x)
		case <-t.C:
			scan()
		}
	}
}

func (e *Enricher) schedule(ctx context.Context, x *exporter) {
	if !x.snmpEnabled || !x.scheduled.CompareAndSwap(false, true) {
		return
	}
	e.wg.Add(1)
	go e.runExporter(ctx, x)
}

func (e *Enricher) interval(kind string) time.Duration {
	switch kind {
	case kindInterfaces:
		return e.cfg.Polling.Interfaces
	case kindARP:
		return e.cfg.Polling.ARP
	case kindNeighbors:
		return e.cfg.Polling.Neighbors
	}
	return e.cfg.Polling.Counters
}

// jittered moves d by up to +-jitter of itself.
func jittered(d time.Duration, jitter float64) time.Duration {
	if jitter <= 0 {
		return d
	}
	f := 1 + jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}

// runExporter polls one exporter until ctx ends: the interface table
// first (ARP and counters use it), each kind on its own interval.
func (e *Enricher) runExporter(ctx context.Context, x *exporter) {
	defer e.wg.Done()
	kinds := pollKinds
	now := time.Now()
	var first time.Duration
	if e.cfg.Polling.Jitter > 0 {
		first = time.Duration(rand.Int64N(int64(initialSpread)))
	}
	next := map[string]time.Time{}
	for _, k := range kinds {
		next[k] = now.Add(first)
	}
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now = time.Now()
		for _, k := range kinds {
			if !now.Before(next[k]) {
				_ = e.poll(ctx, x, k)
				next[k] = time.Now().Add(jittered(e.interval(k), e.cfg.Polling.Jitter))
			}
		}
		soonest := next[kinds[0]]
		for _, k := range kinds[1:] {
			if next[k].Before(soonest) {
				soonest = next[k]
			}
		}
		timer.Reset(max(time.Until(soonest), 0))
	}
}

// PollNow polls an exporter (interfaces, ARP, counters, neighbours) now, outside its
// schedule, and returns the errors; for tests and an API "refresh".
// The exporter is created (as on a flow) if it is not known.
func (e *Enricher) PollNow(ctx context.Context, addr netip.Addr) error {
	x := e.exporterFor(flow.AddrFromNetip(addr))
	if !x.snmpEnabled {
		return fmt.Errorf("enrich: exporter %s: SNMP polling is not enabled", addr)
	}
	var errs []error
	for _, k := range pollKinds {
		if err := e.poll(ctx, x, k); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (e *Enricher) snmpConfigOf(x *exporter) snmp.Config {
	if x.cfg == nil {
		return e.cfg.DiscoveredSNMP
	}
	return x.cfg.SNMP
}

// poll runs one kind of poll under the exporter's circuit breaker.
func (e *Enricher) poll(ctx context.Context, x *exporter, kind string) error {
	x.pollMu.Lock()
	defer x.pollMu.Unlock()
	now := time.Now()
	if e.breakerOpen(x, now) {
		e.m.pollSkipped.WithLabelValues(kind).Inc()
		return fmt.Errorf("enrich: exporter %s %s poll: %w", x.ip, kind, errCircuitOpen)
	}
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-e.sem }()

	pctx, cancel := context.WithTimeout(ctx, pollBudget)
	err := e.pollOnce(pctx, x, kind, e.snmpConfigOf(x))
	cancel()
	e.m.pollDuration.WithLabelValues(kind).Observe(time.Since(now).Seconds())
	if err != nil {
		if ctx.Err() != nil {
			return err // stopping: not the exporter's fault
		}
		reason := snmp.ReasonOf(err)
		e.m.pollFailures.WithLabelValues(kind, reason).Inc()
		e.recordFailure(x, kind, reason, err)
		e.persistStatus(ctx, x)
		return err
	}
	e.m.pollSuccess.WithLabelValues(kind).Inc()
	e.recordSuccess(x)
	e.persistStatus(ctx, x)
	return nil
}

func (e *Enricher) pollOnce(ctx context.Context, x *exporter, kind string, cfg snmp.Config) error {
	c, err := snmp.Open(ctx, cfg, cfg.Target(x.ip.String()))
	if err != nil {
		return err
	}
	defer c.Close()
	switch kind {
	case kindInterfaces:
		return e.pollInterfaces(ctx, x, c)
	case kindARP:
		return e.pollARP(ctx, x, c)
	case kindNeighbors:
		return e.pollNeighbors(ctx, x, c)
	default:
		return e.pollCounters(ctx, x, c)
	}
}

func (e *Enricher) breakerOpen(x *exporter, now time.Time) bool {
	x.status.mu.Lock()
	defer x.status.mu.Unlock()
	return now.UnixMilli() < x.status.openUntil
}

func (e *Enricher) recordSuccess(x *exporter) {
	x.status.mu.Lock()
	wasFailing := x.status.consecutive > 0
	x.status.lastSuccess = time.Now().UnixMilli()
	x.status.consecutive = 0
	x.status.openUntil = 0
	x.status.cooldown = 0
	x.status.lastError, x.status.lastReason = "", ""
	x.status.mu.Unlock()
	if wasFailing {
		e.log.Info("SNMP polling recovered", "exporter", x.ip, "tenant", x.tenant)
	}
}

func (e *Enricher) recordFailure(x *exporter, kind, reason string, err error) {
	p := e.cfg.Polling
	x.status.mu.Lock()
	x.status.failures++
	x.status.consecutive++
	x.status.lastFailure, x.status.failedKind = time.Now().UnixMilli(), kind
	changed := x.status.lastReason != reason
	x.status.lastError, x.status.lastReason = err.Error(), reason
	opened := false
	if x.status.consecutive >= p.BreakerFailures {
		if x.status.cooldown == 0 {
			x.status.cooldown = p.BreakerCooldown.Milliseconds()
		}
		x.status.openUntil = time.Now().UnixMilli() + x.status.cooldown
		x.status.cooldown = min(2*x.status.cooldown, p.BreakerMaxCooldown.Milliseconds())
		opened = true
	}
	consecutive := x.status.consecutive
	x.status.mu.Unlock()
	// Log the first failure, a new reason and the breaker opening, not
	// every retry.
	if changed || consecutive == 1 || opened {
		e.log.Warn("SNMP poll failed; flows keep flowing with what is cached",
			"exporter", x.ip, "tenant", x.tenant, "kind", kind, "reason", reason,
			"consecutive_failures", consecutive, "circuit_open", opened, "error", err)
	}
}
