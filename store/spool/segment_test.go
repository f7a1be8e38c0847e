package spool

import (
	"compress/gzip"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/store"
)

// format1Fixtures are segments the format-1 encoder wrote (before format
// 2 existed), with the rows they hold as that flowhouse's batch gave them.
var format1Fixtures = []struct {
	file string
	rows int
	id   [16]byte
}{
	{"v1-1byte", 3, [16]byte{0xf1, 0x0e, 11}},   // 1-byte dictionary indexes
	{"v1-2byte", 260, [16]byte{0xf1, 0x0e, 12}}, // 2-byte indexes
}

func format1Rows(t *testing.T, name string) []flow.Flow {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name+".json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var rows []flow.Flow
	if err := json.NewDecoder(zr).Decode(&rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestFormat1SegmentsDecode(t *testing.T) {
	for _, fx := range format1Fixtures {
		t.Run(fx.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", fx.file+".seg"))
			if err != nil {
				t.Fatal(err)
			}
			var d decoder
			out := store.NewFlowBatch(0)
			h, err := d.decode(data, out)
			if err != nil {
				t.Fatal(err)
			}
			if h.version != 1 || h.rows != fx.rows || h.id != fx.id {
				t.Errorf("header %+v", h)
			}
			want := format1Rows(t, fx.file)
			if got := rowsOf(out); !reflect.DeepEqual(got, want) {
				t.Errorf("rows differ from the format-1 encoder's:\n got %+v\nwant %+v", got[:1], want[:1])
			}
		})
	}
}

// A spool started on a directory holding format-1 segments (a flowhouse
// upgraded during an outage) replays them with the rows they were
// written with, in order.
func TestFormat1SegmentsReplay(t *testing.T) {
	dir := t.TempDir()
	var want [][]flow.Flow
	for i, fx := range format1Fixtures {
		data, err := os.ReadFile(filepath.Join("testdata", fx.file+".seg"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, segName(uint64(i+1))), data, 0o600); err != nil {
			t.Fatal(err)
		}
		want = append(want, format1Rows(t, fx.file))
	}
	db := &fakeDB{}
	s := startSpool(t, testConfig(t, dir), db, nil)
	testkit.Eventually(t, "replay", 10*time.Second, func() bool { return s.Stats().PendingSegments == 0 && db.rows() == 263 })
	db.mu.Lock()
	defer db.mu.Unlock()
	if !reflect.DeepEqual(db.batches, want) {
		t.Errorf("replayed %d batches, not the format-1 rows", len(db.batches))
	}
	if st := s.Stats(); st.QuarantinedSegments != 0 {
		t.Errorf("quarantined %d", st.QuarantinedSegments)
	}
}

func TestFormat1Layout(t *testing.T) {
	if n := len(v1Fixed) + len(v1Strings); n != v1FieldsPerRow {
		t.Fatalf("format 1 lists %d fields, its headers say %d", n, v1FieldsPerRow)
	}
	seen := map[string]bool{}
	for _, f := range slices.Concat(v1Fixed, v1Strings) {
		if seen[f.name] || (f.width != 0 && f.width > int(f.size)) {
			t.Errorf("field %s: twice, or wider than flow.Flow's", f.name)
		}
		seen[f.name] = true
	}
}

// Columns are found by name: a segment written before a column existed
// reads it as zero, and one with a column the batch no longer keeps is
// read past, so adding or dropping a column needs no new format.
func TestSegmentColumnsByName(t *testing.T) {
	in := batchOf(randomFlows(rand.New(rand.NewPCG(5, 6)), 100, 7))
	var input proto.Input
	for _, c := range in.Input() {
		if c.Name != "src_as" && c.Name != "in_if_name" {
			input = append(input, c)
		}
	}
	extra := proto.ColUInt16(make([]uint16, in.Len()))
	input = append(input, proto.InputColumn{Name: "gone_column", Data: extra})
	data := newEncoder().encodeInput(input, in.Len(), [16]byte{}, 0, formatVersion)
	out := store.NewFlowBatch(0)
	var d decoder
	if _, err := d.decode(data, out); err != nil {
		t.Fatal(err)
	}
	for i, want := range rowsOf(in) {
		want.SrcAS, want.InIfName = 0, ""
		if got := out.Flow(i); got != want {
			t.Fatalf("row %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
}
