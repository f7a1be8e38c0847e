package main

import (
	"context"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/collector"
	"github.com/flowhouse/flowhouse/internal/nfmsg"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/flowhouse/flowhouse/store"
)

// TestTemplatesSurviveRestart: a NetFlow v9 and an IPFIX exporter send
// their templates, and an options template and record with their sampling
// rate, once, before flowhouse restarts; after it, data only. Every record
// must be stored with its rate, none dropped as template_not_found. The
// datagrams are built here (nfmsg, the collector's tests' builder): no
// real exporter can be made to send its templates only once.
func TestTemplatesSurviveRestart(t *testing.T) {
	for _, engine := range []string{"server", "embedded"} {
		t.Run(engine, func(t *testing.T) { testTemplatesSurviveRestart(t, engine) })
	}
}

// restartExporter is one exporting process: one source address and port
// for its whole life, as template scopes need.
type restartExporter struct {
	protocol  string
	conn      *net.UDPConn
	templates []byte
	data      func(seq uint32) []byte
	records   int // per data datagram
	rate      uint32
}

func newRestartExporter(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (x *restartExporter) send(t *testing.T, to netip.AddrPort, b []byte) {
	t.Helper()
	if _, err := x.conn.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatal(err)
	}
}

func restartExporters(t *testing.T) []*restartExporter {
	unix := uint32(time.Now().Unix())
	f := func(ie, length uint16) nfmsg.Field { return nfmsg.Field{IE: ie, Length: length} }
	// 5-tuple and counters, then the sampler (v9 IE 48, IPFIX IE 302).
	tuple := []nfmsg.Field{f(8, 4), f(12, 4), f(7, 2), f(11, 2), f(4, 1), f(1, 8), f(2, 8)}
	record := func(seq uint32, i int, sampler []byte) []byte {
		return nfmsg.Record([]byte{10, 9, byte(seq), byte(i)}, []byte{10, 8, 0, 1}, uint16(1000+i), uint16(443), uint8(6),
			uint64(1500), uint64(3), sampler)
	}
	v9 := &restartExporter{protocol: "netflow_v9", conn: newRestartExporter(t, "127.0.0.21:0"), records: 3, rate: 512}
	v9.templates = nfmsg.NewNFv9(60000, unix, 0, 3).
		OptionsTemplate(260, []nfmsg.Field{f(1, 4)}, []nfmsg.Field{f(48, 1), f(34, 4)}).
		Data(260, nfmsg.Record(uint32(0), uint8(5), uint32(512))).
		Template(256, append(tuple, f(48, 1))...).Bytes()
	v9.data = func(seq uint32) []byte {
		return nfmsg.NewNFv9(61000, unix, seq, 3).
			Data(256, record(seq, 0, []byte{5}), record(seq, 1, []byte{5}), record(seq, 2, []byte{5})).Bytes()
	}
	ipfix := &restartExporter{protocol: "ipfix", conn: newRestartExporter(t, "127.0.0.22:0"), records: 2, rate: 100}
	ipfix.templates = nfmsg.NewIPFIX(unix, 0, 7).
		OptionsTemplate(400, []nfmsg.Field{f(302, 4)}, []nfmsg.Field{f(305, 4), f(306, 4)}).
		Data(400, nfmsg.Record(uint32(11), uint32(1), uint32(99))).
		Template(300, append(tuple, f(302, 4))...).Bytes()
	ipfix.data = func(seq uint32) []byte {
		sampler := nfmsg.Record(uint32(11))
		return nfmsg.NewIPFIX(unix, 1+2*(seq-1), 7).Data(300, record(seq, 0, sampler), record(seq, 1, sampler)).Bytes()
	}
	return []*restartExporter{v9, ipfix}
}

func templatesKnown(c *collector.Collector) int {
	n := 0
	for _, s := range c.Stats() {
		n += s.Templates
	}
	return n
}

func testTemplatesSurviveRestart(t *testing.T, engine string) {
	cfg := serverConfig(t, engine, "")
	exporters := restartExporters(t)

	first := startConfigured(t, engine, cfg)
	target := first.listeners[0]
	cfg.Collector.Listeners = []string{target.String()} // the exporters keep their target
	for _, x := range exporters {
		x.send(t, target, x.templates)
	}
	testkit.Eventually(t, "the templates to be learned", 10*time.Second, func() bool { return templatesKnown(first.coll) == 4 })
	first.stop(t)

	second := startConfigured(t, engine, cfg)
	const datagrams = 3
	for seq := uint32(1); seq <= datagrams; seq++ {
		for _, x := range exporters {
			x.send(t, target, x.data(seq))
		}
	}
	for _, x := range exporters {
		want := uint64(datagrams * x.records)
		if got := waitRows(t, second.db, x.protocol, want); got != want {
			t.Errorf("%s: %d rows stored after the restart, want %d", x.protocol, got, want)
		}
		if got := ratesStored(t, second.db, x.protocol); !reflect.DeepEqual(got, map[uint32]uint64{x.rate: want}) {
			t.Errorf("%s: rows per sampling rate %v, want all %d at %d", x.protocol, got, want, x.rate)
		}
	}
	for _, s := range second.coll.Stats() {
		if n := s.Drops[collector.ReasonTemplateNotFound]; n != 0 || s.Templates != 2 {
			t.Errorf("exporter %v after the restart: %d templates, drops %v; want 2 and no template_not_found", s.Addr, s.Templates, s.Drops)
		}
	}
}

func ratesStored(t *testing.T, db store.DB, protocol string) map[uint32]uint64 {
	t.Helper()
	rows, err := db.Query(context.Background(), "SELECT sampling_rate, count() FROM flows WHERE protocol = ? GROUP BY sampling_rate", protocol)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[uint32]uint64{}
	for rows.Next() {
		var rate uint32
		var n uint64
		if err := rows.Scan(&rate, &n); err != nil {
			t.Fatal(err)
		}
		out[rate] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
