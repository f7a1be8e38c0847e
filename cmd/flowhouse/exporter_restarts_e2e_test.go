package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/internal/peers"
)

// TestExporterRestartsEndToEnd: a real exporter restarted again and again
// (one softflowd process per run, each on a new source port, as a
// restarted exporting process is) reaches flowhouse serve directly. Each
// protocol's numbers stay one stream that counts every new run as a
// restart and loses nothing, and the exporters table says so, on both
// engines.
func TestExporterRestartsEndToEnd(t *testing.T) {
	for _, engine := range []string{"server", "embedded"} {
		t.Run(engine, func(t *testing.T) { testExporterRestarts(t, engine) })
	}
}

func testExporterRestarts(t *testing.T, engine string) {
	peers.Require(t, "softflowd")
	traffic, err := filepath.Abs(filepath.Join("..", "..", "testdata", "traffic.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, engine)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const runs = 3
	versions := []struct {
		protocol string
		version  int
		records  uint64 // what softflowd sends for traffic.pcap
	}{{"netflow_v5", 5, 352}, {"netflow_v9", 9, 414}, {"ipfix", 10, 414}}
	for _, v := range versions {
		for range runs {
			if err := peers.RunSoftflowd(ctx, t, traffic, s.listeners[0], v.version, "-6"); err != nil {
				t.Fatal(err)
			}
		}
		waitRows(t, s.db, v.protocol, runs*v.records)
	}
	s.stop(t) // writes the last exporter statistics
	db := s.dbAfterStop(t)
	rows, err := db.Query(context.Background(), `SELECT p, r, l, e FROM exporters_latest
		ARRAY JOIN streams.protocol AS p, streams.restarts AS r, streams.lost AS l, streams.expected AS e ORDER BY p`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type stream struct{ restarts, lost, expected uint64 }
	got := map[string][]stream{}
	for rows.Next() {
		var p string
		var st stream
		if err := rows.Scan(&p, &st.restarts, &st.lost, &st.expected); err != nil {
			t.Fatal(err)
		}
		got[p] = append(got[p], st)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, v := range versions {
		st := got[v.protocol]
		if len(st) != 1 || st[0].restarts != runs-1 || st[0].lost != 0 || st[0].expected == 0 {
			t.Errorf("%s: streams %+v; want one, with %d restarts and nothing lost", v.protocol, st, runs-1)
		}
	}
}
