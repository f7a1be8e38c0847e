package migrations

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/store"
)

// DefaultLockWait is how long Apply waits for another process's
// migration lock on a cluster: longer than any migration takes here, short
// enough that a lock left by a killed process is reported the same day.
const DefaultLockWait = 10 * time.Minute

// lockTable is the cluster's migration lock. Creating a replica of a
// Replicated table is atomic in ZooKeeper: of several processes creating
// the same replica name at once, on any nodes, one succeeds and the
// others get REPLICA_ALREADY_EXISTS (or TABLE_ALREADY_EXISTS on the
// holder's node). Dropping the table frees the name. It needs nothing
// beyond what the cluster already runs.
const lockTable = "schema_migrations_lock"

// maxKeeperRaces bounds the retries of a CREATE that lost a race with the
// holder's DROP: the creator saw the table's znode, and the DROP removed
// its children before they were read (code 999, "node doesn't exist").
// That passes in milliseconds; ZooKeeper being down does not, and is
// reported after these retries rather than after the whole wait.
const maxKeeperRaces = 40

// lockCluster takes the lock, waiting while another process holds it, and
// returns its release. A process killed while holding it leaves the table
// behind; the error after the wait names the statement that frees it.
func lockCluster(ctx context.Context, db store.DB, l dbapi.Layout, wait time.Duration, log *slog.Logger) (func(), error) {
	return lockClusterEvery(ctx, db, l, wait, 250*time.Millisecond, log)
}

func lockClusterEvery(ctx context.Context, db store.DB, l dbapi.Layout, wait, poll time.Duration, log *slog.Logger) (func(), error) {
	if wait <= 0 {
		wait = DefaultLockWait
	}
	create := "CREATE TABLE " + l.Qualified(lockTable) + " (holder UInt8) ENGINE = ReplicatedMergeTree(" +
		quoteString("/clickhouse/flowhouse/"+l.Database+"/"+lockTable) + ", 'holder') ORDER BY holder"
	deadline := time.Now().Add(wait)
	lastLog := time.Now()
	keeperRaces := 0
	for {
		err := db.Exec(ctx, create)
		if err == nil {
			return func() {
				// Not ON CLUSTER: the table is on this node only, and a node
				// that is down would hold a cluster-wide DROP for minutes.
				ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				defer cancel()
				if err := db.Exec(ctx, "DROP TABLE IF EXISTS "+l.Qualified(lockTable)); err != nil {
					log.Error("migrations: releasing the cluster lock failed; others wait for it", "table", lockTable, "error", err)
				}
			}, nil
		}
		switch store.ExceptionCode(err) {
		case store.CodeReplicaAlreadyExists, store.CodeTableAlreadyExists:
			keeperRaces = 0
		case store.CodeKeeperException:
			if keeperRaces++; keeperRaces > maxKeeperRaces {
				return nil, fmt.Errorf("migrations: take the cluster lock: ZooKeeper failed %d times in a row: %w", keeperRaces, err)
			}
		default:
			return nil, fmt.Errorf("migrations: take the cluster lock: %w", err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("migrations: another process has held the cluster's migration lock for over %s; if none is migrating, one died holding it: run DROP TABLE IF EXISTS %s ON CLUSTER %s",
				wait, l.Qualified(lockTable), dbapi.QuoteIdent(l.Cluster))
		}
		if time.Since(lastLog) > 10*time.Second {
			log.Info("migrations: waiting for another process's migration lock", "table", lockTable)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("migrations: waiting for the cluster lock: %w", ctx.Err())
		case <-time.After(poll):
		}
	}
}
