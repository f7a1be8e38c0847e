package privacy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// Job states.
const (
	StatusPending = "pending"
	StatusRunning = "running"
	StatusDone    = "done"
	StatusFailed  = "failed"
)

// Job is one deletion of a tenant's data.
type Job struct {
	ID          string     `json:"id"`
	Tenant      string     `json:"tenant"`
	Status      string     `json:"status"`
	Tables      []JobTable `json:"tables"`
	RequestedBy string     `json:"requested_by"`
	RequestedAt time.Time  `json:"requested_at"`
	// FinishedAt is nil until the job is done or failed.
	FinishedAt *time.Time `json:"finished_at"`
	Error      string     `json:"error"`
	// exporters are the tenant's exporter addresses, found when the job
	// was made (before exporter_attributes, which says which they are, is
	// deleted), so that a resumed job still knows them.
	exporters []string
	version   uint64
}

// JobTable is the state of one table in a job.
type JobTable struct {
	Table  string `json:"table"`
	Status string `json:"status"` // pending, running, done, failed
	// Rows is how many rows of the tenant the table had when its deletion
	// began; nil before.
	Rows *uint64 `json:"rows"`
}

// Active reports a job not finished.
func (j Job) Active() bool { return j.Status == StatusPending || j.Status == StatusRunning }

// ErrNoJob is a job id that does not exist for the tenant.
var ErrNoJob = errors.New("privacy: no such deletion job")

var jobID = regexp.MustCompile(`^del_[0-9a-f]{20}$`)

// ValidJobID reports whether id has the form of a job id; others are
// never looked up.
func ValidJobID(id string) bool { return jobID.MatchString(id) }

func newJobID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "del_" + hex.EncodeToString(b[:])
}

const jobColumns = "tenant, id, status, table_names, table_statuses, table_rows, exporter_addresses, requested_by, toUInt32(requested_at), toUInt32(finished_at), error, version"

// saveJob writes the job's current state as a new version.
func saveJob(ctx context.Context, db dbapi.DB, j *Job) error {
	now := uint64(time.Now().UnixNano())
	j.version = max(now, j.version+1)
	names, statuses, rows := make([]string, len(j.Tables)), make([]string, len(j.Tables)), make([]uint64, len(j.Tables))
	for i, t := range j.Tables {
		names[i], statuses[i] = t.Table, t.Status
		if t.Rows != nil {
			rows[i] = *t.Rows
		}
	}
	var finished int64
	if j.FinishedAt != nil {
		finished = j.FinishedAt.Unix()
	}
	err := db.Exec(ctx, `INSERT INTO deletion_jobs (tenant, id, status, table_names, table_statuses, table_rows, exporter_addresses, requested_by, requested_at, finished_at, error, version)
SELECT ?, ?, ?, CAST(? AS Array(String)), CAST(? AS Array(String)), CAST(? AS Array(UInt64)), CAST(? AS Array(String)), ?, toDateTime(?, 'UTC'), toDateTime(?, 'UTC'), ?, ?`,
		j.Tenant, j.ID, j.Status, names, statuses, rows, nonNil(j.exporters), j.RequestedBy, j.RequestedAt.Unix(), finished, j.Error, j.version)
	if err != nil {
		return fmt.Errorf("privacy: save deletion job %s: %w", j.ID, err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// loadJobs reads the current state of jobs: where is a fixed condition,
// its values bound.
func loadJobs(ctx context.Context, db dbapi.Querier, where string, args ...any) ([]Job, error) {
	rows, err := db.Query(ctx, "SELECT "+jobColumns+" FROM deletion_jobs FINAL WHERE "+where+" ORDER BY requested_at DESC, id LIMIT 1000", args...)
	if err != nil {
		return nil, fmt.Errorf("privacy: read deletion jobs: %w", err)
	}
	defer rows.Close()
	var out []Job
	for rows.Next() {
		var j Job
		var names, statuses []string
		var counts []uint64
		var requested, finished uint32
		if err := rows.Scan(&j.Tenant, &j.ID, &j.Status, &names, &statuses, &counts, &j.exporters, &j.RequestedBy, &requested, &finished, &j.Error, &j.version); err != nil {
			return nil, fmt.Errorf("privacy: read deletion jobs: %w", err)
		}
		j.RequestedAt = time.Unix(int64(requested), 0).UTC()
		if finished > 0 {
			f := time.Unix(int64(finished), 0).UTC()
			j.FinishedAt = &f
		}
		for i, n := range names {
			t := JobTable{Table: n, Status: StatusPending}
			if i < len(statuses) {
				t.Status = statuses[i]
			}
			if i < len(counts) && t.Status != StatusPending {
				c := counts[i]
				t.Rows = &c
			}
			j.Tables = append(j.Tables, t)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("privacy: read deletion jobs: %w", err)
	}
	return out, nil
}
