package rules

import (
	"context"
	"testing"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/store"
)

func TestMain(m *testing.M) { enginetest.Main(m) }

// engine is one database the rules are tested on: DB writes (flows, the
// rules' own state), Reader is the read-only interface rules read through.
type engine struct{ enginetest.Engine }

// Insert stores flows as the batcher would.
func (e engine) Insert(t testing.TB, flows []flow.Flow) {
	t.Helper()
	b := store.NewFlowBatch(len(flows))
	b.Append(flows)
	if err := e.DB.InsertFlows(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// embeddedTables are emptied before each test on the embedded engine,
// which is opened once per process (chDB runs one engine per process).
var embeddedTables = []string{"flows", "flows_1m", "flows_1h", "interface_counters", "arp_observations", "alerts", "alert_events"}

// extraEmbeddedTables are the rules' own tables, emptied too.
var extraEmbeddedTables []string

// forEachEngine runs test on a fresh database of the ClickHouse 18.16
// server and on the embedded engine (tables emptied). The embedded run
// fails when libchdb.so is missing; FLOWHOUSE_SKIP_EMBEDDED=1 skips it.
func forEachEngine(t *testing.T, test func(t *testing.T, e engine)) {
	tables := append(append([]string(nil), embeddedTables...), extraEmbeddedTables...)
	enginetest.Each(t, tables, func(t *testing.T, e enginetest.Engine) { test(t, engine{e}) })
}
