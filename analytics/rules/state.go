package rules

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/store"
)

// baseline is what a volumetric rule learnt of one key's rate: an
// exponentially weighted mean and variance (bit/s and (bit/s)²), with a
// weight that decays with time rather than with the number of samples,
// so that irregular evaluations learn at the same speed.
type baseline struct {
	mean, variance float64
	// observed is the time covered by the samples learnt: the warm-up is
	// over when it reaches the rule's warmup.
	observed time.Duration
	// firstSeen: the key was first tracked; lastSeen: its latest sample
	// at or above the rule's track_mbps; updated: its latest sample, learnt
	// or not.
	firstSeen, lastSeen, updated time.Time
	// anomalousSince is the start of the current run of anomalous samples
	// (zero when the latest was normal).
	anomalousSince time.Time
	// version of the key's row in rule_state, which only grows.
	version uint64
	dirty   bool
}

// learning are the parameters of a baseline's update and judgement.
type learning struct {
	halfLife, warmup, relearnAfter time.Duration
	minZ, minRatio, floorBps       float64
}

// judgement of one sample against a baseline.
type judgement struct {
	z, ratio float64
	// anomalous: z above min_z, at least min_ratio times the mean and at or
	// above the floor. fire: anomalous after the warm-up.
	anomalous, fire bool
}

// stddev is the deviation z is measured in. It is at least 1% of the mean
// and 1 bit/s: a key whose rate never moved has no variance, and every
// change would be infinitely many deviations away.
func (b *baseline) stddev() float64 {
	return max(math.Sqrt(b.variance), 0.01*b.mean, 1)
}

// judge compares a sample x (bit/s) with the baseline.
func (b *baseline) judge(x float64, p learning) judgement {
	j := judgement{z: (x - b.mean) / b.stddev(), ratio: math.Inf(1)}
	if b.mean > 0 {
		j.ratio = x / b.mean
	}
	j.anomalous = j.z > p.minZ && j.ratio >= p.minRatio && x >= p.floorBps
	j.fire = j.anomalous && b.observed >= p.warmup
	return j
}

// observe takes the sample x of the window that ends at now (step after
// the previous sample, at most the window) and reports what it was. An
// anomalous sample after the warm-up is not learnt, so that an attack
// does not teach the baseline that it is normal, unless the key has been
// anomalous for relearn_after: a level that lasts that long is the new
// normal. During the warm-up every sample is learnt.
func (b *baseline) observe(x float64, now time.Time, step time.Duration, p learning) judgement {
	j := b.judge(x, p)
	learn := true
	switch {
	case !j.anomalous || b.observed < p.warmup:
		b.anomalousSince = time.Time{}
	case b.anomalousSince.IsZero():
		b.anomalousSince = now
		learn = false
	default:
		learn = now.Sub(b.anomalousSince) >= p.relearnAfter
	}
	if learn {
		b.learn(x, step, p.halfLife)
	}
	b.updated = now
	b.dirty = true
	return j
}

// learn is one step of the EWMA of mean and variance (West 1979; Finch,
// "Incremental calculation of weighted mean and variance", 2009) with
// alpha = 1 - 2^(-step/half_life): after one half-life of samples, the
// older ones weigh half.
func (b *baseline) learn(x float64, step, halfLife time.Duration) {
	alpha := 1 - math.Exp2(-step.Seconds()/halfLife.Seconds())
	diff := x - b.mean
	incr := alpha * diff
	b.mean += incr
	b.variance = (1 - alpha) * (b.variance + diff*incr)
	b.observed += step
}

// stateKey names a baseline: the rule's subject as a string, per tenant.
type stateKey struct{ tenant, key string }

// ruleState is the baselines of one rule, loaded from rule_state on the
// first evaluation and written back every persist_interval. A write that
// fails is counted and retried at the next one; it never fails the
// evaluation.
type ruleState struct {
	rule string
	db   dbapi.DB // nil keeps the state in memory only
	log  *slog.Logger
	m    *stateMetrics

	keys      map[stateKey]*baseline
	loaded    bool
	lastWrite time.Time
}

func newRuleState(rule string, deps Deps) *ruleState {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ruleState{rule: rule, db: deps.DB, log: log, m: newStateMetrics(deps.Registerer),
		keys: map[stateKey]*baseline{}}
}

// ensureLoaded reads the stored baselines once: the most recently seen
// maxKeys keys seen within forgetAfter of now. A failed load fails the
// evaluation (and is tried again at the next): starting from empty
// baselines would overwrite the stored ones.
func (s *ruleState) ensureLoaded(ctx context.Context, now time.Time, maxKeys int, forgetAfter time.Duration) error {
	if s.loaded || s.db == nil {
		s.loaded = true
		return nil
	}
	q := `SELECT tenant, key, argMax(mean, version) AS m, argMax(variance, version) AS v,
    argMax(observed_seconds, version) AS o, argMax(first_seen, version) AS f, argMax(last_seen, version) AS seen,
    argMax(anomalous_since, version) AS a, argMax(updated_at, version) AS u, max(version) AS ver
FROM rule_state WHERE rule = ?
GROUP BY tenant, key
HAVING seen >= toDateTime(?)
ORDER BY seen DESC
LIMIT ?`
	rows, err := s.db.Query(ctx, q, s.rule, now.Add(-forgetAfter).Unix(), maxKeys)
	if err != nil {
		s.m.errors.WithLabelValues(s.rule, "load", store.ErrorReason(err)).Inc()
		return fmt.Errorf("load rule_state: %w", err)
	}
	defer rows.Close()
	keys := map[stateKey]*baseline{}
	for rows.Next() {
		var k stateKey
		var b baseline
		var observed float64
		if err := rows.Scan(&k.tenant, &k.key, &b.mean, &b.variance, &observed, &b.firstSeen, &b.lastSeen,
			&b.anomalousSince, &b.updated, &b.version); err != nil {
			s.m.errors.WithLabelValues(s.rule, "load", "other").Inc()
			return fmt.Errorf("load rule_state: %w", err)
		}
		b.observed = time.Duration(observed * float64(time.Second))
		b.anomalousSince = zeroEpoch(b.anomalousSince)
		keys[k] = &b
	}
	if err := rows.Err(); err != nil {
		s.m.errors.WithLabelValues(s.rule, "load", store.ErrorReason(err)).Inc()
		return fmt.Errorf("load rule_state: %w", err)
	}
	s.keys, s.loaded, s.lastWrite = keys, true, now
	s.m.keys.WithLabelValues(s.rule).Set(float64(len(keys)))
	s.log.Info("loaded rule state", "rule", s.rule, "keys", len(keys))
	return nil
}

// zeroEpoch maps the DateTime 0 of a column back to the zero time.
func zeroEpoch(t time.Time) time.Time {
	if t.Unix() <= 0 {
		return time.Time{}
	}
	return t
}

// forget drops the keys not seen for their tenant's forget_after, then,
// above maxKeys, the least recently seen down to 90% of it (so that
// eviction does not run at every evaluation once full). Dropped keys are
// not written: loading skips rows that old, or beyond maxKeys.
func (s *ruleState) forget(now time.Time, maxKeys int, forgetAfter func(tenant string) time.Duration) {
	for k, b := range s.keys {
		if now.Sub(b.lastSeen) > forgetAfter(k.tenant) {
			delete(s.keys, k)
		}
	}
	if len(s.keys) > maxKeys {
		type aged struct {
			k    stateKey
			seen time.Time
		}
		all := make([]aged, 0, len(s.keys))
		for k, b := range s.keys {
			all = append(all, aged{k, b.lastSeen})
		}
		slices.SortFunc(all, func(a, b aged) int { return a.seen.Compare(b.seen) })
		drop := len(s.keys) - maxKeys*9/10
		for _, a := range all[:drop] {
			delete(s.keys, a.k)
		}
		s.m.evicted.WithLabelValues(s.rule).Add(float64(drop))
	}
	s.m.keys.WithLabelValues(s.rule).Set(float64(len(s.keys)))
}

// persist writes the changed keys when every has passed since the last
// write, in batches. Failures are counted by reason and logged; the keys
// stay changed and go with the next write.
func (s *ruleState) persist(ctx context.Context, now time.Time, every time.Duration) {
	if s.db == nil || now.Sub(s.lastWrite) < every {
		return
	}
	var dirty []stateKey
	for k, b := range s.keys {
		if b.dirty {
			dirty = append(dirty, k)
		}
	}
	slices.SortFunc(dirty, func(a, b stateKey) int {
		return cmp.Or(strings.Compare(a.tenant, b.tenant), strings.Compare(a.key, b.key))
	})
	const batch = 2000
	for lo := 0; lo < len(dirty); lo += batch {
		part := dirty[lo:min(lo+batch, len(dirty))]
		if err := s.write(ctx, now, part); err != nil {
			s.m.errors.WithLabelValues(s.rule, "write", store.ErrorReason(err)).Inc()
			s.log.Warn("rule state not written", "rule", s.rule, "keys", len(dirty)-lo, "reason", store.ErrorReason(err), "error", err)
			return
		}
		for _, k := range part {
			s.keys[k].dirty = false
		}
	}
	s.lastWrite = now
}

// write inserts the rows of keys with INSERT ... SELECT over ARRAY JOIN of
// bound arrays, which both engines run through Exec.
func (s *ruleState) write(ctx context.Context, now time.Time, keys []stateKey) error {
	n := len(keys)
	tenant, key := make([]string, n), make([]string, n)
	mean, variance, observed := make([]float64, n), make([]float64, n), make([]float64, n)
	first, seen, anomalous, updated := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	version := make([]uint64, n)
	for i, k := range keys {
		b := s.keys[k]
		b.version = max(b.version+1, uint64(now.UnixMilli()))
		tenant[i], key[i] = k.tenant, k.key
		mean[i], variance[i], observed[i] = b.mean, b.variance, b.observed.Seconds()
		first[i], seen[i], anomalous[i] = unixOrZero(b.firstSeen), unixOrZero(b.lastSeen), unixOrZero(b.anomalousSince)
		updated[i] = unixOrZero(b.updated)
		version[i] = b.version
	}
	q := `INSERT INTO rule_state (rule, tenant, key, mean, variance, observed_seconds, first_seen, last_seen, anomalous_since, updated_at, version)
SELECT ?, t, k, m, v, o, toDateTime(f), toDateTime(s), toDateTime(a), toDateTime(u), ver
FROM (SELECT ? AS t, ? AS k, ? AS m, ? AS v, ? AS o, ? AS f, ? AS s, ? AS a, ? AS u, ? AS ver)
ARRAY JOIN t, k, m, v, o, f, s, a, u, ver`
	if err := s.db.Exec(ctx, q, s.rule, tenant, key, mean, variance, observed, first, seen, anomalous, updated, version); err != nil {
		return fmt.Errorf("write %d keys to rule_state: %w", n, err)
	}
	return nil
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() || t.Unix() < 0 {
		return 0
	}
	return t.Unix()
}

// stateMetrics are shared by every rule that keeps state, by rule label.
type stateMetrics struct {
	errors  *prometheus.CounterVec
	keys    *prometheus.GaugeVec
	evicted *prometheus.CounterVec
}

func newStateMetrics(reg prometheus.Registerer) *stateMetrics {
	m := &stateMetrics{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_rule_state_errors_total",
			Help: "Failed loads and writes of rule_state, by rule, operation (load, write) and reason (timeout, connection, server, other).",
		}, []string{"rule", "op", "reason"}),
		keys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowhouse_rule_state_keys",
			Help: "Keys (destinations, interfaces) a rule keeps a baseline of.",
		}, []string{"rule"}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_rule_state_evicted_total",
			Help: "Keys a rule dropped, least recently seen first, to stay within its max_keys.",
		}, []string{"rule"}),
	}
	if reg != nil {
		m.errors = registered(reg, m.errors)
		m.keys = registered(reg, m.keys)
		m.evicted = registered(reg, m.evicted)
	}
	return m
}

// registered registers c, or returns the collector already registered
// under its name: several rules share these metrics.
func registered[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	return c
}
