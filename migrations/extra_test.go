package migrations_test

import (
	"context"
	"strings"
	"testing"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/migrations"
	"github.com/flowhouse/flowhouse/schema"
	"github.com/flowhouse/flowhouse/store"
)

var (
	natSrc   = flow.ExtraColumn{Name: "post_nat_src_address", Kind: flow.ExtraIP, Slot: 0}
	natPort  = flow.ExtraColumn{Name: "post_napt_src_port", Kind: flow.ExtraUint16, Slot: 0}
	mplsTop  = flow.ExtraColumn{Name: "mpls_top_label", Kind: flow.ExtraMPLSLabel, Slot: 1}
	vendorID = flow.ExtraColumn{Name: "vendor_id", Kind: flow.ExtraUint64, Slot: 2}
)

// extraRecords are the mapped columns schema_migrations records, by name.
func extraRecords(t *testing.T, db store.DB) map[string]int {
	t.Helper()
	rows, err := db.Query(context.Background(), "SELECT name FROM schema_migrations WHERE version = 0")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		out[name]++
	}
	return out
}

// wantFlows is the flows table of the given mapped columns as the engine
// describes it.
func wantFlows(t *testing.T, db store.DB, extra []flow.ExtraColumn) string {
	t.Helper()
	caps, err := store.DetectCapabilities(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := schema.FlowsWith(extra)
	if err != nil {
		t.Fatal(err)
	}
	dialect := schema.Dialect{IPv6: caps.IPv6, LowCardinality: caps.LowCardinality}
	var want []string
	for _, c := range tb.Columns() {
		want = append(want, c.Name+" "+c.Type.In(dialect))
	}
	return strings.Join(want, "\n")
}

// A mapped column is added by a migration of its own, recorded once; a
// start with the same mappings changes nothing, one with a mapping more
// adds its column, one with a mapping less drops nothing, and one that
// changes a mapped column's type is refused.
func TestApplyMigratesMappedColumns(t *testing.T) {
	onBothEngines(t, func(t *testing.T, db store.DB) {
		ctx := context.Background()
		apply := func(extra ...flow.ExtraColumn) error {
			_, err := migrations.Apply(ctx, db, migrations.Options{Retention: store.DefaultConfig().Retention, Extra: extra})
			return err
		}
		check := func(step string, extra []flow.ExtraColumn, records map[string]int) {
			t.Helper()
			got, _ := describeFlows(t, db)
			if want := wantFlows(t, db, extra); strings.Join(got, "\n") != want {
				t.Errorf("%s: flows\n got %q\nwant %q", step, got, want)
			}
			if got := extraRecords(t, db); len(got) != len(records) || !mapsEqual(got, records) {
				t.Errorf("%s: schema_migrations records %v, want %v", step, got, records)
			}
		}
		if err := apply(natSrc, natPort, mplsTop); err != nil {
			t.Fatal(err)
		}
		three := map[string]int{"extra_field_post_nat_src_address": 1, "extra_field_post_napt_src_port": 1, "extra_field_mpls_top_label": 1}
		check("first start", []flow.ExtraColumn{natSrc, natPort, mplsTop}, three)

		if err := apply(natSrc, natPort, mplsTop); err != nil {
			t.Fatal(err)
		}
		check("the same mappings again", []flow.ExtraColumn{natSrc, natPort, mplsTop}, three)

		if err := apply(natSrc, natPort, mplsTop, vendorID); err != nil {
			t.Fatal(err)
		}
		four := map[string]int{"extra_field_vendor_id": 1}
		for k, v := range three {
			four[k] = v
		}
		all := []flow.ExtraColumn{natSrc, natPort, mplsTop, vendorID}
		check("a mapping more", all, four)

		if err := apply(natSrc); err != nil {
			t.Fatal(err)
		}
		check("mappings removed", all, four)

		retyped := natPort
		retyped.Kind = flow.ExtraUint32
		if err := apply(natSrc, retyped); err == nil || !strings.Contains(err.Error(), "post_napt_src_port") || !strings.Contains(err.Error(), "never changed") {
			t.Errorf("a changed type: %v", err)
		}
		alias := flow.ExtraColumn{Name: "bytes_scaled", Kind: flow.ExtraUint64}
		if err := apply(alias); err == nil || !strings.Contains(err.Error(), "ALIAS") {
			t.Errorf("an ALIAS column: %v", err)
		}
		check("refused changes", all, four)
	})
}

// A mapped column added but not recorded (the process died in between)
// is recorded by the next Apply, on 18.16 too.
func TestApplyRecordsAnUnrecordedMappedColumn(t *testing.T) {
	onBothEngines(t, func(t *testing.T, db store.DB) {
		ctx := context.Background()
		opts := migrations.Options{Extra: []flow.ExtraColumn{natSrc}}
		if _, err := migrations.Apply(ctx, db, opts); err != nil {
			t.Fatal(err)
		}
		if err := db.Exec(ctx, "ALTER TABLE schema_migrations DELETE WHERE version = 0"); err != nil {
			t.Fatal(err)
		}
		waitMutations(t, db)
		if _, err := migrations.Apply(ctx, db, opts); err != nil {
			t.Fatal(err)
		}
		if got := extraRecords(t, db); got["extra_field_post_nat_src_address"] != 1 || len(got) != 1 {
			t.Errorf("records %v", got)
		}
		if pending, err := migrations.Pending(ctx, db); err != nil || len(pending) != 0 {
			t.Errorf("pending %v, %v: a mapped column's record is no versioned migration", pending, err)
		}
	})
}

func mapsEqual(a, b map[string]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}
