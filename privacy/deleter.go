package privacy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/tenant"
)

// Config of the deletion jobs.
type Config struct {
	// MutationTimeout bounds the wait for one table's deletion on servers
	// without lightweight DELETE, where it is a mutation (ALTER TABLE ...
	// DELETE) that rewrites the table's parts in the background.
	MutationTimeout time.Duration `mapstructure:"mutation_timeout"`
	// PollInterval is how often a mutation's progress is read.
	PollInterval time.Duration `mapstructure:"poll_interval"`
}

// DefaultConfig waits up to an hour per table, polling every second.
func DefaultConfig() Config { return Config{MutationTimeout: time.Hour, PollInterval: time.Second} }

// Validate names the wrong key.
func (c Config) Validate() error {
	switch {
	case c.MutationTimeout < time.Second:
		return fmt.Errorf("mutation_timeout: %s is shorter than 1s", c.MutationTimeout)
	case c.PollInterval < 10*time.Millisecond || c.PollInterval > c.MutationTimeout:
		return fmt.Errorf("poll_interval: %s is not in 10ms..mutation_timeout", c.PollInterval)
	}
	return nil
}

// Deps are what the deleter uses but does not own.
type Deps struct {
	// DB runs the deletions and keeps the jobs (the writing store.DB).
	DB dbapi.DB
	// Tenants gives each exporter address its tenant.
	Tenants *tenant.Tenants
	Logger  *slog.Logger
	// Layout is one server or a cluster, where the sharded tables' rows
	// are deleted on every shard.
	Layout dbapi.Layout
}

// Deleter runs deletion jobs one at a time in the background. A job that
// a stopped process left pending or running is resumed at Start: every
// step is idempotent (deleting what is already deleted deletes nothing),
// and the exporter addresses were recorded in the job before any step.
type Deleter struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	mu      sync.Mutex // serialises Request's check-then-create
	wake    chan struct{}
	stop    context.CancelFunc
	done    chan struct{}
	started bool
	// lightweight is whether the engine has DELETE FROM (decided at Start).
	lightweight bool
}

// New builds the deleter; it does no I/O.
func New(cfg Config, deps Deps) *Deleter {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Deleter{cfg: cfg, deps: deps, log: log, wake: make(chan struct{}, 1)}
}

// Start detects the engine's delete statement and starts the worker,
// which first resumes jobs left unfinished.
func (d *Deleter) Start(ctx context.Context) error {
	caps, err := dbapi.DetectCapabilities(ctx, d.deps.DB)
	if err != nil {
		return fmt.Errorf("privacy: %w", err)
	}
	d.lightweight = hasLightweightDelete(caps.Version)
	wctx, cancel := context.WithCancel(context.Background())
	d.stop, d.done, d.started = cancel, make(chan struct{}), true
	go d.work(wctx)
	d.wake <- struct{}{}
	return nil
}

// Stop ends the worker; a job it was running stays running in the table
// and is resumed by the next Start.
func (d *Deleter) Stop() {
	if !d.started {
		return
	}
	d.stop()
	<-d.done
	d.started = false
}

// hasLightweightDelete: DELETE FROM is generally available since 23.3.
func hasLightweightDelete(version string) bool {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	return err1 == nil && err2 == nil && (major > 23 || major == 23 && minor >= 3)
}

// Request makes a deletion job for tenant, or returns the one pending or
// running. The job runs in the background.
func (d *Deleter) Request(ctx context.Context, tenantName, requestedBy string) (Job, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	jobs, err := loadJobs(ctx, d.deps.DB, "tenant = ? AND status IN ('pending', 'running')", tenantName)
	if err != nil {
		return Job{}, err
	}
	if len(jobs) > 0 {
		return jobs[0], nil
	}
	addrs, err := exporterAddresses(ctx, d.deps.DB, d.match, tenantName)
	if err != nil {
		return Job{}, err
	}
	j := Job{ID: newJobID(), Tenant: tenantName, Status: StatusPending, RequestedBy: requestedBy,
		RequestedAt: time.Now().UTC().Truncate(time.Second), exporters: addrs}
	for _, name := range TableNames() {
		j.Tables = append(j.Tables, JobTable{Table: name, Status: StatusPending})
	}
	if err := saveJob(ctx, d.deps.DB, &j); err != nil {
		return Job{}, err
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return j, nil
}

func (d *Deleter) match(a netip.Addr) string { return d.deps.Tenants.Match(a).Tenant }

func (d *Deleter) work(ctx context.Context) {
	defer close(d.done)
	// Jobs that could not be run (the database away) are retried.
	retry := time.NewTicker(time.Minute)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-retry.C:
		}
		for ctx.Err() == nil {
			jobs, err := loadJobs(ctx, d.deps.DB, "status IN ('pending', 'running')")
			if err != nil {
				d.log.Error("deletion jobs cannot be read", "err", err)
				break
			}
			if len(jobs) == 0 {
				break
			}
			// The oldest first: loadJobs gives the newest first.
			j := jobs[len(jobs)-1]
			d.run(ctx, &j)
			if j.Active() {
				break // not recorded as finished: retried later
			}
		}
	}
}

// run runs one job to its end, saving its state after each table.
func (d *Deleter) run(ctx context.Context, j *Job) {
	d.log.Info("deleting a tenant's data", "tenant", j.Tenant, "job", j.ID, "resumed", j.Status == StatusRunning)
	j.Status = StatusRunning
	if err := saveJob(ctx, d.deps.DB, j); err != nil {
		d.fail(ctx, j, err)
		return
	}
	for i := range j.Tables {
		t := &j.Tables[i]
		if t.Status == StatusDone {
			continue
		}
		t.Status = StatusRunning
		if err := saveJob(ctx, d.deps.DB, j); err != nil {
			d.fail(ctx, j, err)
			return
		}
		n, err := d.deleteTable(ctx, j, t.Table)
		if err != nil {
			if ctx.Err() != nil {
				return // stopped: resumed at the next Start
			}
			t.Status = StatusFailed
			d.fail(ctx, j, fmt.Errorf("%s: %w", t.Table, err))
			return
		}
		t.Status, t.Rows = StatusDone, &n
		if err := saveJob(ctx, d.deps.DB, j); err != nil {
			d.fail(ctx, j, err)
			return
		}
	}
	now := time.Now().UTC()
	j.Status, j.FinishedAt = StatusDone, &now
	if err := saveJob(ctx, d.deps.DB, j); err != nil {
		d.log.Error("deletion job done but not recorded", "job", j.ID, "err", err)
		return
	}
	d.log.Info("deleted a tenant's data", "tenant", j.Tenant, "job", j.ID)
}

func (d *Deleter) fail(ctx context.Context, j *Job, err error) {
	if ctx.Err() != nil {
		return
	}
	d.log.Error("deletion job failed", "tenant", j.Tenant, "job", j.ID, "err", err)
	now := time.Now().UTC()
	j.Status, j.FinishedAt = StatusFailed, &now
	j.Error = "the deletion failed at a table; see the server's log, and request it again"
	var table string
	for _, t := range j.Tables {
		if t.Status == StatusFailed {
			table = t.Table
		}
	}
	if table != "" {
		j.Error = "the deletion failed at table " + table + "; see the server's log, and request it again"
	}
	if err := saveJob(ctx, d.deps.DB, j); err != nil {
		d.log.Error("deletion job failure not recorded", "job", j.ID, "err", err)
	}
}

// deleteTable deletes the tenant's rows of table (a name of TableNames)
// and returns how many there were.
func (d *Deleter) deleteTable(ctx context.Context, j *Job, table string) (uint64, error) {
	where, args := "tenant = ?", []any{j.Tenant}
	if table == ExportersTable.Name {
		if len(j.exporters) == 0 {
			return 0, nil
		}
		where, args = "has(?, IPv6NumToString(exporter_address))", []any{j.exporters}
	}
	var n uint64
	if err := dbapi.QueryRow(ctx, d.deps.DB, []any{&n}, "SELECT count() FROM "+table+" WHERE "+where, args...); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	// The rows were counted through the front; they are deleted in the
	// tables that hold them. Tables replicated to every node apply a
	// deletion made on one of them by themselves.
	l := d.deps.Layout
	local, onCluster := l.Local(table), ""
	if l.Sharded(table) {
		onCluster = l.OnCluster()
	}
	if d.lightweight {
		return n, d.deps.DB.Exec(ctx, "DELETE FROM "+local+onCluster+" WHERE "+where, args...)
	}
	if err := d.deps.DB.Exec(ctx, "ALTER TABLE "+local+onCluster+" DELETE WHERE "+where, args...); err != nil {
		return 0, err
	}
	return n, d.waitMutations(ctx, local)
}

// waitMutations waits until table has no mutation left to do.
func (d *Deleter) waitMutations(ctx context.Context, table string) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.MutationTimeout)
	defer cancel()
	t := time.NewTicker(d.cfg.PollInterval)
	defer t.Stop()
	for {
		var pending uint64
		mutations, database := d.deps.Layout.System("mutations")
		err := dbapi.QueryRow(ctx, d.deps.DB, []any{&pending},
			"SELECT count() FROM "+mutations+" WHERE database = "+database+" AND table = ? AND is_done = 0", table)
		if err != nil {
			return err
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("the mutation did not finish within %s (privacy.mutation_timeout)", d.cfg.MutationTimeout)
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Reader reads jobs; any process with the database can (Deps.DB, or a
// read-only handle).
type Reader struct{ DB dbapi.Querier }

// Job is the job id of tenant.
func (r Reader) Job(ctx context.Context, tenantName, id string) (Job, error) {
	if !ValidJobID(id) {
		return Job{}, ErrNoJob
	}
	jobs, err := loadJobs(ctx, r.DB, "tenant = ? AND id = ?", tenantName, id)
	if err != nil {
		return Job{}, err
	}
	if len(jobs) == 0 {
		return Job{}, ErrNoJob
	}
	return jobs[0], nil
}

// Jobs are tenant's jobs, the newest first (at most 1000).
func (r Reader) Jobs(ctx context.Context, tenantName string) ([]Job, error) {
	return loadJobs(ctx, r.DB, "tenant = ?", tenantName)
}
