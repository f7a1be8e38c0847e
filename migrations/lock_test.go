package migrations

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/store"
)

// scriptedDB answers the lock's CREATE statements with errs in turn, then
// with success; other statements (the release's DROP) succeed.
type scriptedDB struct {
	store.DB
	errs    []error
	creates int
	drops   int
}

func (s *scriptedDB) Exec(_ context.Context, query string, _ ...any) error {
	if strings.HasPrefix(query, "DROP") {
		s.drops++
		return nil
	}
	s.creates++
	if len(s.errs) == 0 {
		return nil
	}
	err := s.errs[0]
	s.errs = s.errs[1:]
	return err
}

func chError(code int32, msg string) error {
	return fmt.Errorf("exec: %w", &clickhouse.Exception{Code: code, Message: msg})
}

// The lock waits out a holder (253, 57) and a CREATE that raced the
// holder's DROP in ZooKeeper (999), and stops on anything else, or on
// ZooKeeper failing for longer than a race lasts.
func TestLockClusterRetries(t *testing.T) {
	race := chError(store.CodeKeeperException, "Can't get data for node /clickhouse/flowhouse/db/schema_migrations_lock/columns: node doesn't exist (No node)")
	held := chError(store.CodeReplicaAlreadyExists, "Replica /clickhouse/flowhouse/db/schema_migrations_lock/replicas/holder already exists")
	manyRaces := make([]error, maxKeeperRaces+1)
	for i := range manyRaces {
		manyRaces[i] = race
	}
	for _, tc := range []struct {
		name    string
		errs    []error
		wantErr string
		creates int
	}{
		{"free", nil, "", 1},
		{"held, then free", []error{held, chError(store.CodeTableAlreadyExists, "Table already exists"), held}, "", 4},
		{"raced the holder's drop", []error{held, race, race}, "", 4},
		{"a race after each wait", slices.Concat([]error{held}, manyRaces[:maxKeeperRaces], []error{held}), "", maxKeeperRaces + 3},
		{"zookeeper failing", manyRaces, "ZooKeeper failed 41 times in a row", maxKeeperRaces + 1},
		{"other error", []error{chError(store.CodeSyntaxError, "Syntax error")}, "Syntax error", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := &scriptedDB{errs: tc.errs}
			layout := dbapi.Layout{Cluster: "c", Database: "db"}
			release, err := lockClusterEvery(context.Background(), db, layout, time.Minute, time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			} else {
				release()
				if db.drops != 1 {
					t.Errorf("release dropped the lock %d times, want 1", db.drops)
				}
			}
			if db.creates != tc.creates {
				t.Errorf("%d CREATEs, want %d", db.creates, tc.creates)
			}
		})
	}
}
