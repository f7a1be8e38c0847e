package spool

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/schema"
)

func flowsWith(t *testing.T, cols ...flow.ExtraColumn) *schema.Table {
	t.Helper()
	tb, err := schema.FlowsWith(cols)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// Segments spooled before the mappings changed replay after it: a column
// mapped since is zero, one no longer mapped is left out, the others keep
// their values; a column whose type changed is quarantined and counted,
// never read as the new type. (Apply refuses to start with a changed
// type, so this takes a column dropped and mapped again by hand.)
func TestSegmentsReplayAcrossMappingChanges(t *testing.T) {
	port := flow.ExtraColumn{Name: "post_napt_src_port", Kind: flow.ExtraUint16, Slot: 0}
	label := flow.ExtraColumn{Name: "mpls_top_label", Kind: flow.ExtraMPLSLabel, Slot: 1}
	nat := flow.ExtraColumn{Name: "post_nat_src_address", Kind: flow.ExtraIP, Slot: 0}
	vendor := flow.ExtraColumn{Name: "vendor_id", Kind: flow.ExtraUint64, Slot: 1}
	before := flowsWith(t, port, label, nat)

	spoolWith := func(dir string) {
		db := &fakeDB{fail: errRefused}
		s, err := New(testConfig(t, dir), Deps{Next: db, Flows: before})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		var f flow.Flow
		f.SrcPort, f.Bytes, f.TimeReceivedMs = 443, 1500, 1e12
		f.Extra[0], f.Extra[1], f.ExtraAddr[0] = 61000, 16004, flow.AddrFrom4([4]byte{203, 0, 113, 5})
		b := before.NewBatch(1)
		b.Append([]flow.Flow{f})
		if err := s.InsertFlows(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	replayWith := func(dir string, after *schema.Table) (*fakeDB, *Spool) {
		db := &fakeDB{}
		s, err := New(testConfig(t, dir), Deps{Next: db, Flows: after, Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Stop() })
		testkit.Eventually(t, "replay", 10*time.Second, func() bool { return s.Stats().PendingSegments == 0 })
		return db, s
	}

	t.Run("mappings added and removed", func(t *testing.T) {
		dir := t.TempDir()
		spoolWith(dir)
		// port stays in slot 0, vendor is new in slot 1, label and nat are gone.
		db, _ := replayWith(dir, flowsWith(t, port, vendor))
		if db.rows() != 1 {
			t.Fatalf("%d rows replayed", db.rows())
		}
		got := db.batches[0][0]
		if got.SrcPort != 443 || got.Bytes != 1500 || got.Extra[0] != 61000 || got.Extra[1] != 0 || !got.ExtraAddr[0].IsZero() {
			t.Errorf("replayed %+v", got)
		}
	})
	t.Run("a column of another type", func(t *testing.T) {
		dir := t.TempDir()
		spoolWith(dir)
		retyped := port
		retyped.Kind = flow.ExtraUint32
		db, s := replayWith(dir, flowsWith(t, retyped))
		if db.rows() != 0 {
			t.Errorf("%d rows replayed", db.rows())
		}
		if got := testutil.ToFloat64(s.m.segmentsQuarantined.WithLabelValues(QuarantineCorrupt)); got != 1 {
			t.Errorf("segments quarantined %v, want 1", got)
		}
		if st := s.Stats(); st.QuarantinedSegments != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}
