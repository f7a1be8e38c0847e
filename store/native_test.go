package store_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/schema"
	"github.com/flowhouse/flowhouse/store"
)

// A flows table whose strings are LowCardinality(String) gets the batch's
// dictionaries on the wire, and its addresses stay FixedString(16) where
// the server has no IPv6: the table's own types decide, here on a server
// (18.16) whose migrations render neither.
func TestInsertFlowsIntoLowCardinalityTable(t *testing.T) {
	db, _ := lowCardinalityDB(t)
	ctx := context.Background()
	fs := append(roundTripFlows(), benchFlows(3*8192)...)
	var wantAE0 uint64
	for _, f := range fs {
		if f.InIfName == "ae0" {
			wantAE0 += f.Bytes
		}
	}
	b := store.NewFlowBatch(len(fs))
	b.Append(fs)
	if err := db.InsertFlows(ctx, b); err != nil {
		t.Fatal(err)
	}
	got := strings1(t, db, "SELECT concat(toTypeName(in_if_name), ' ', toTypeName(src_address)) FROM flows LIMIT 1")
	if want := []string{"LowCardinality(String) FixedString(16)"}; !slices.Equal(got, want) {
		t.Fatalf("types %v, want %v", got, want)
	}
	got = strings1(t, db, `SELECT concat(toString(count()), ' ', toString(sumIf(bytes, in_if_name = 'ae0')), ' ',
		toString(countIf(out_if_description = 'core ''quoted'' \\ \0 ünï')), ' ', toString(countIf(IPv6NumToString(src_address) = '2001:db8::1'))) FROM flows`)
	if want := []string{strings.Join([]string{strconv.Itoa(len(fs)), strconv.FormatUint(wantAE0, 10), "1", "1"}, " ")}; !slices.Equal(got, want) {
		t.Errorf("count, bytes on ae0, the quoted description, the IPv6 source: %v, want %v", got, want)
	}
}

// lowCardinalityDB is a database whose flows table (without rollups)
// has the strings as LowCardinality(String), the addresses as
// FixedString(16), which 18.16 allows with a setting.
func lowCardinalityDB(tb testing.TB) (*store.Server, store.Config) {
	return flowsTableDB(tb, schema.Dialect{LowCardinality: true})
}

// flowsTableDB is a database with a flows table of dialect d's types
// only, without rollups.
func flowsTableDB(tb testing.TB, d schema.Dialect) (*store.Server, store.Config) {
	db, cfg := emptyDB(tb)
	ctx := context.Background()
	var cols []string
	for _, c := range schema.Flows.Columns() {
		cols = append(cols, c.Name+" "+c.Type.In(d))
	}
	create := "CREATE TABLE flows (" + strings.Join(cols, ", ") + ") ENGINE = MergeTree ORDER BY time_received"
	lc := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"allow_experimental_low_cardinality_type": 1}))
	if err := db.Exec(lc, create); err != nil {
		tb.Fatal(err)
	}
	return db, cfg
}

// BenchmarkInsertFlowsLowCardinality is BenchmarkInsertFlows into a
// table of LowCardinality(String) strings (the batch's dictionaries sent
// as they are) and, for comparison, of String ones with no rollups.
func BenchmarkInsertFlowsLowCardinality(b *testing.B) {
	b.Run("LowCardinality", func(b *testing.B) {
		db, cfg := lowCardinalityDB(b)
		benchInsert(b, db, cfg)
	})
	b.Run("String", func(b *testing.B) {
		db, cfg := flowsTableDB(b, schema.Dialect{})
		benchInsert(b, db, cfg)
	})
}

// emptyDB is a fresh database without tables.
func emptyDB(tb testing.TB) (*store.Server, store.Config) {
	addr, database := chtest.Database(tb)
	cfg := store.DefaultConfig()
	cfg.Addr, cfg.Database = addr, database
	db, err := store.OpenServer(context.Background(), cfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db, cfg
}

// A server's exception comes back as the one error type ExceptionCode
// and Classify read, whichever driver got it.
func TestInsertFlowsServerExceptionIsClassified(t *testing.T) {
	db, cfg := emptyDB(t) // no flows table
	ctx := context.Background()
	b := store.NewFlowBatch(1)
	b.Append(benchFlows(1))
	err := db.InsertFlows(ctx, b)
	if code := store.ExceptionCode(err); code != store.CodeUnknownTable {
		t.Fatalf("code %d of %v, want %d", code, err, store.CodeUnknownTable)
	}
	if c := store.Classify(err); c != store.Unavailable {
		t.Errorf("class %s, want unavailable", c)
	}
	cfg.Password = "wrong"
	bad, err := store.NewServer(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	err = bad.InsertFlows(ctx, b)
	if c := store.Classify(err); c != store.Unavailable || store.ExceptionCode(err) == 0 {
		t.Errorf("wrong password: %v (code %d, class %s), want an exception, unavailable", err, store.ExceptionCode(err), c)
	}
}

// An idle insert connection the server has closed (a restart) is found
// dead before the batch is sent, and the insert goes through on a new one.
func TestInsertFlowsAfterTheServerDroppedIdleConnections(t *testing.T) {
	direct, cfg := migratedDB(t)
	addr, drop := proxy(t, cfg.Addr, -1)
	cfg.Addr = addr
	ctx := context.Background()
	db, err := store.OpenServer(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := store.NewFlowBatch(10)
	b.Append(benchFlows(10))
	for i := range 3 {
		if err := db.InsertFlows(ctx, b); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
		drop()
	}
	// (clickhouse-go's own idle connections were dropped too.)
	if got := strings1(t, direct, "SELECT toString(count()) FROM flows"); !slices.Equal(got, []string{"30"}) {
		t.Errorf("rows %v, want 30", got)
	}
}
