package privacy_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/privacy"
	"github.com/flowhouse/flowhouse/tenant"
)

func TestMain(m *testing.M) { enginetest.Main(m) }

// Every table of the schema with a tenant column is exported and deleted,
// or excluded with a reason: a table added by a migration without being
// listed fails here.
func TestTablesCoverTheSchema(t *testing.T) {
	enginetest.Each(t, nil, func(t *testing.T, e enginetest.Engine) {
		rows, err := e.DB.Query(context.Background(), `SELECT DISTINCT c.table FROM system.columns AS c
ANY INNER JOIN (SELECT name AS table, engine FROM system.tables WHERE database = currentDatabase()) AS s USING table
WHERE c.database = currentDatabase() AND c.name = 'tenant' AND s.engine LIKE '%MergeTree'`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var keyed []string
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				t.Fatal(err)
			}
			keyed = append(keyed, name)
		}
		var listed []string
		for _, tb := range privacy.Tables {
			listed = append(listed, tb.Name)
		}
		for name := range privacy.Excluded {
			listed = append(listed, name)
		}
		slices.Sort(keyed)
		slices.Sort(listed)
		if !slices.Equal(keyed, listed) {
			t.Errorf("tables keyed by tenant %v, listed in privacy.Tables and Excluded %v", keyed, listed)
		}
	})
}

// A job a stopped process left running is resumed by the next Start and
// finishes; the tables it had done are not redone.
func TestInterruptedJobResumes(t *testing.T) {
	enginetest.Each(t, append(privacy.TableNames(), "deletion_jobs"), func(t *testing.T, e enginetest.Engine) {
		ctx := context.Background()
		e.Exec(t, "INSERT INTO alerts (tenant, id, version) SELECT 'a', 'x', 1",
			"INSERT INTO alert_events (tenant, alert_id, version) SELECT 'a', 'x', 1")
		// As a process stopped after deleting flows would have left it.
		e.Exec(t, `INSERT INTO deletion_jobs (tenant, id, status, table_names, table_statuses, table_rows, requested_by, requested_at, version)
SELECT 'a', 'del_0123456789abcdef0123', 'running', ['flows', 'alerts', 'alert_events'], ['done', 'running', 'pending'], [7, 0, 0], 'tok', now(), 5`)
		ts, _ := tenant.New(tenant.Config{Default: "a"})
		cfg := privacy.DefaultConfig()
		cfg.PollInterval = 50 * time.Millisecond
		d := privacy.New(cfg, privacy.Deps{DB: e.DB, Tenants: ts})
		if err := d.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer d.Stop()
		var job privacy.Job
		testkit.Eventually(t, "the resumed job to end", 60*time.Second, func() bool {
			var err error
			job, err = privacy.Reader{DB: e.DB}.Job(ctx, "a", "del_0123456789abcdef0123")
			return err == nil && !job.Active()
		})
		if job.Status != privacy.StatusDone || *job.Tables[0].Rows != 7 || *job.Tables[1].Rows != 1 || *job.Tables[2].Rows != 1 {
			t.Errorf("job %+v, want done, flows kept at 7 rows, alerts and alert_events 1 each", job)
		}
		var left uint64
		if err := dbapi.QueryRow(ctx, e.DB, []any{&left}, "SELECT count() FROM alerts WHERE tenant = 'a'"); err != nil || left != 0 {
			t.Errorf("alerts of a left: %d %v", left, err)
		}
	})
}
