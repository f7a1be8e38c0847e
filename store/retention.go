package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// RetentionDeps of the retention job.
type RetentionDeps struct {
	DB         DB
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Retention enforces retention on servers without TTL by dropping whole
// partitions once all their rows are older than the table's retention.
// Flows tables are partitioned by day (flows, flows_1m) or month
// (flows_1h), so a partition is kept up to one day (or month) longer than
// the retention asks.
type Retention struct {
	db      DB
	cfg     RetentionConfig
	layout  dbapi.Layout
	log     *slog.Logger
	now     func() time.Time
	dropped *prometheus.CounterVec

	stop chan struct{}
	wg   sync.WaitGroup
}

// NewRetention builds the job; it does no I/O.
func NewRetention(cfg Config, deps RetentionDeps) (*Retention, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("store config: %w", err)
	}
	if deps.DB == nil {
		return nil, errors.New("store: retention needs a DB")
	}
	r := &Retention{
		db:     deps.DB,
		cfg:    cfg.Retention,
		layout: cfg.Layout(),
		log:    deps.Logger,
		now:    deps.Now,
		stop:   make(chan struct{}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_store_retention_partitions_dropped_total",
			Help: "Partitions dropped by the retention job (servers without TTL), by table.",
		}, []string{"table"}),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if deps.Registerer != nil {
		deps.Registerer.MustRegister(r.dropped)
	}
	return r, nil
}

// Start runs the job every retention.check_interval, from now on, on a
// server without TTL; on a server with TTL the tables expire rows
// themselves and the job ends after asking the version. A server that is
// down is asked again at the next interval.
func (r *Retention) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		<-r.stop
		cancel()
	}()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		detected := false
		for {
			if !detected {
				caps, err := DetectCapabilities(ctx, r.db)
				switch {
				case err != nil:
					if ctx.Err() == nil {
						r.log.Warn("retention: cannot ask the server's version, trying later", "err", err)
					}
				case caps.TTL:
					r.log.Debug("retention enforced by table TTL", "version", caps.Version)
					return
				default:
					detected = true
				}
			}
			if detected {
				if _, err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
					r.log.Error("retention run failed", "err", err)
				}
			}
			select {
			case <-time.After(r.cfg.CheckInterval):
			case <-ctx.Done():
				return
			}
		}
	}()
	return nil
}

// Stop ends the job and waits for a run in progress to be abandoned.
func (r *Retention) Stop() error {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.wg.Wait()
	return nil
}

// AlertVersionsRetention is how long alert_versions keeps rows
// (migration 0009 sets the same as its TTL): longer than a page token
// lives (a day), which is as far back as the alerts API reads it.
const AlertVersionsRetention = 3 * day

// RunOnce drops expired partitions now and returns how many it dropped.
func (r *Retention) RunOnce(ctx context.Context) (int, error) {
	var total int
	var errs []error
	for _, t := range []struct {
		table string
		keep  time.Duration
	}{
		{"flows", r.cfg.Flows},
		{"flows_1m", r.cfg.Flows1m},
		{"flows_1h", r.cfg.Flows1h},
		{"alert_versions", AlertVersionsRetention},
	} {
		if t.keep == 0 {
			continue
		}
		n, err := r.dropOlder(ctx, t.table, r.now().Add(-t.keep))
		total += n
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.table, err))
		}
	}
	return total, errors.Join(errs...)
}

func (r *Retention) dropOlder(ctx context.Context, table string, cutoff time.Time) (int, error) {
	// On a cluster, each shard has its own parts: the partitions are asked
	// of one replica of every shard, and dropped on every shard.
	parts, database := r.layout.System("parts")
	local := r.layout.Local(table)
	rows, err := r.db.Query(ctx,
		"SELECT DISTINCT partition_id FROM "+parts+" WHERE database = "+database+" AND table = ? AND active", local)
	if err != nil {
		return 0, fmt.Errorf("list partitions: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("list partitions: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Close(); err != nil {
		return 0, fmt.Errorf("list partitions: %w", err)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("list partitions: %w", err)
	}

	dropped := 0
	for _, id := range ids {
		end, ok := partitionEnd(id)
		if !ok {
			r.log.Warn("retention: partition id is not a day or month, left alone", "table", table, "partition", id)
			continue
		}
		if end.After(cutoff) {
			continue
		}
		// The id of a toYYYYMMDD / toYYYYMM partition is the number itself.
		onCluster := ""
		if r.layout.Sharded(table) {
			// The other tables are replicated to every node, which apply
			// the drop of one of them by themselves.
			onCluster = r.layout.OnCluster()
		}
		if err := r.db.Exec(ctx, fmt.Sprintf("ALTER TABLE %s%s DROP PARTITION %s", quoteIdent(local), onCluster, id)); err != nil {
			return dropped, fmt.Errorf("drop partition %s: %w", id, err)
		}
		dropped++
		r.dropped.WithLabelValues(table).Inc()
		r.log.Info("retention: dropped partition", "table", table, "partition", id, "cutoff", cutoff.UTC())
	}
	return dropped, nil
}

// partitionEnd is the first instant after a YYYYMMDD or YYYYMM partition,
// in UTC (the tables' DateTime columns are UTC).
func partitionEnd(id string) (time.Time, bool) {
	switch len(id) {
	case 8:
		t, err := time.Parse("20060102", id)
		if err != nil {
			return time.Time{}, false
		}
		return t.AddDate(0, 0, 1), true
	case 6:
		t, err := time.Parse("200601", id)
		if err != nil {
			return time.Time{}, false
		}
		return t.AddDate(0, 1, 0), true
	}
	return time.Time{}, false
}
