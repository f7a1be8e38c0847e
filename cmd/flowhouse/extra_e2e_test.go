package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/collector"
	"github.com/flowhouse/flowhouse/internal/nfmsg"
	"github.com/flowhouse/flowhouse/store"
)

// penTest is the enterprise number of the enterprise field the test maps
// (RFC 5612's, for documentation).
const penTest = 32473

// extraFieldsConfig maps NAT (IE 225-228), the top MPLS label (70) and an
// enterprise field; flowDirection (61) is the fixed direction column.
const extraFieldsConfig = `
collector:
  extra_fields:
    - {column: post_nat_src_address, ie: 225, type: ip}
    - {column: post_nat_dst_address, ie: 226, type: ip}
    - {column: post_napt_src_port, ie: 227, type: uint16}
    - {column: post_napt_dst_port, ie: 228, type: uint16}
    - {column: mpls_top_label, ie: 70, type: mpls_label}
    - {column: vendor_session_id, ie: 100, pen: 32473, type: uint64}
`

// postNAT6 maps IE 281 (postNATSourceIPv6Address), the mapping the
// second start adds.
var postNAT6 = collector.ExtraField{Column: "post_nat_src_address6", IE: 281, Type: "ip"}

// natFlow is what a test record carries and what its row must hold.
type natFlow struct {
	sport          uint16
	natSrc, natDst [4]byte
	natSport       uint16
	natDport       uint16
	label          uint32
	vendor         uint64
	natSrc6        [16]byte
}

// mplsEntry is a label stack entry of label, TC 0, bottom of the stack.
func mplsEntry(label uint32) []byte {
	return []byte{byte(label >> 12), byte(label >> 4), byte(label<<4) | 1}
}

var natV6 = [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 0x46}

// natDatagram is one IPFIX or NetFlow v9 message of a template with NAT,
// MPLS, flowDirection, IE 281 and, in IPFIX, the enterprise field and an
// unmapped variable-length interfaceName (the template only when
// withTemplate), and one record of f.
func natDatagram(ipfix, withTemplate bool, f natFlow) []byte {
	fields := []nfmsg.Field{{IE: 8, Length: 4}, {IE: 12, Length: 4}, {IE: 7, Length: 2}, {IE: 11, Length: 2}, {IE: 4, Length: 1},
		{IE: 1, Length: 8}, {IE: 2, Length: 8}, {IE: 61, Length: 1},
		{IE: 225, Length: 4}, {IE: 226, Length: 4}, {IE: 227, Length: 2}, {IE: 228, Length: 2}, {IE: 70, Length: 3}, {IE: 281, Length: 16}}
	record := nfmsg.Record([]byte{10, 1, 0, 1}, []byte{192, 0, 2, 10}, f.sport, uint16(443), uint8(6),
		uint64(1500), uint64(3), uint8(1), f.natSrc[:], f.natDst[:], f.natSport, f.natDport, mplsEntry(f.label), f.natSrc6[:])
	now := uint32(time.Now().Unix())
	var m *nfmsg.Message
	if ipfix {
		fields = append(fields, nfmsg.Field{IE: 100, Length: 8, PEN: penTest}, nfmsg.Field{IE: 82, Length: 0xffff})
		record = append(record, nfmsg.Record(f.vendor, nfmsg.Variable([]byte("ge-0/0/1")))...)
		m = nfmsg.NewIPFIX(now, 0, 1)
	} else {
		m = nfmsg.NewNFv9(60000, now, 0, 1)
	}
	if withTemplate {
		m.Template(256, fields...)
	}
	return m.Data(256, record).Bytes()
}

// natRows reads the mapped columns of a protocol's rows, by source port.
func natRows(t *testing.T, db store.DB, protocol string, with6 bool) map[uint16]natFlow {
	t.Helper()
	extra := "''"
	if with6 {
		extra = "IPv6NumToString(post_nat_src_address6)"
	}
	rows, err := db.Query(context.Background(), `
		SELECT src_port, toString(direction), IPv6NumToString(post_nat_src_address), IPv6NumToString(post_nat_dst_address),
		       post_napt_src_port, post_napt_dst_port, mpls_top_label, vendor_session_id, `+extra+`
		FROM flows WHERE protocol = ?`, protocol)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[uint16]natFlow{}
	for rows.Next() {
		var f natFlow
		var dir, src, dst, src6 string
		if err := rows.Scan(&f.sport, &dir, &src, &dst, &f.natSport, &f.natDport, &f.label, &f.vendor, &src6); err != nil {
			t.Fatal(err)
		}
		if dir != "egress" {
			t.Errorf("%s row of port %d: direction %s, want egress (flowDirection 1)", protocol, f.sport, dir)
		}
		f.natSrc, f.natDst = as4(t, src), as4(t, dst)
		if with6 && src6 != "::" {
			f.natSrc6 = [16]byte(netipParse(t, src6).As16())
		}
		out[f.sport] = f
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func netipParse(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func as4(t *testing.T, s string) [4]byte {
	t.Helper()
	return netipParse(t, s).Unmap().As4()
}

// The mapped columns hold what IPFIX and NetFlow v9 records carry, on
// both engines; a start with one mapping more adds its column and keeps
// the rows; a start with the same mappings changes nothing.
func TestEndToEndExtraFields(t *testing.T) {
	for _, engine := range []string{"server", "embedded"} {
		t.Run(engine, func(t *testing.T) { testExtraFields(t, engine) })
	}
}

func testExtraFields(t *testing.T, engine string) {
	ipfix := natFlow{sport: 40001, natSrc: [4]byte{203, 0, 113, 1}, natDst: [4]byte{192, 0, 2, 10}, natSport: 61001, natDport: 443,
		label: 16004, vendor: 0x0102030405060708, natSrc6: natV6}
	v9 := natFlow{sport: 40002, natSrc: [4]byte{203, 0, 113, 2}, natDst: [4]byte{192, 0, 2, 10}, natSport: 61002, natDport: 8443,
		label: 1048575, natSrc6: natV6}
	noV6 := func(f natFlow) natFlow { f.natSrc6 = [16]byte{}; return f }
	// One exporting process (one source port) for the whole test, so that
	// its templates, kept in the state file, serve after a restart.
	exporter := newRestartExporter(t, "127.0.0.1:0")

	cfg := serverConfig(t, engine, extraFieldsConfig)
	s := startConfigured(t, engine, cfg)
	target := s.listeners[0]
	cfg.Collector.Listeners = []string{target.String()}
	sendTo(t, exporter, target, natDatagram(true, true, ipfix), natDatagram(false, true, v9))
	waitRows(t, s.db, "ipfix", 1)
	waitRows(t, s.db, "netflow_v9", 1)
	checkNATRows(t, s.db, "ipfix", false, map[uint16]natFlow{40001: noV6(ipfix)})
	checkNATRows(t, s.db, "netflow_v9", false, map[uint16]natFlow{40002: noV6(v9)})
	// IE 281 is not mapped yet, nor is interfaceName (82): both counted
	// unknown, once per template definition.
	checkMetric(t, s, `flowhouse_collector_unknown_fields_total{ie="281",pen="0"} 2`)
	checkMetric(t, s, `flowhouse_collector_unknown_fields_total{ie="82",pen="0"} 1`)
	s.stop(t)

	// One mapping more: its column is added, the rows stay; the template
	// restored from the state file decodes the new mapping without being
	// sent again.
	more := *cfg
	more.Collector.ExtraFields = append(append([]collector.ExtraField{}, cfg.Collector.ExtraFields...), postNAT6)
	if err := more.Validate(); err != nil {
		t.Fatal(err)
	}
	s = startConfigured(t, engine, &more)
	ipfix2 := ipfix
	ipfix2.sport, ipfix2.natSport = 40003, 61003
	sendTo(t, exporter, target, natDatagram(true, false, ipfix2))
	waitRows(t, s.db, "ipfix", 2)
	checkNATRows(t, s.db, "ipfix", true, map[uint16]natFlow{40001: noV6(ipfix), 40003: ipfix2})
	checkNATRows(t, s.db, "netflow_v9", true, map[uint16]natFlow{40002: noV6(v9)})
	columns, records := flowsColumns(t, s.db), mappedRecords(t, s.db)
	if records != 7 {
		t.Errorf("%d mapped columns recorded in schema_migrations, want 7", records)
	}
	s.stop(t)

	// The same configuration again: nothing changes.
	s = startConfigured(t, engine, &more)
	if got := flowsColumns(t, s.db); got != columns {
		t.Errorf("flows changed on a restart with the same mappings:\n got %s\nwant %s", got, columns)
	}
	if got := mappedRecords(t, s.db); got != records {
		t.Errorf("%d mapped columns recorded after a restart, want %d", got, records)
	}
	checkNATRows(t, s.db, "ipfix", true, map[uint16]natFlow{40001: noV6(ipfix), 40003: ipfix2})
}

func sendTo(t *testing.T, from *net.UDPConn, to netip.AddrPort, datagrams ...[]byte) {
	t.Helper()
	for _, d := range datagrams {
		if _, err := from.WriteToUDPAddrPort(d, to); err != nil {
			t.Fatal(err)
		}
	}
}

func checkNATRows(t *testing.T, db store.DB, protocol string, with6 bool, want map[uint16]natFlow) {
	t.Helper()
	got := natRows(t, db, protocol, with6)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s rows:\n got %+v\nwant %+v", protocol, got, want)
	}
}

func checkMetric(t *testing.T, s *server, line string) {
	t.Helper()
	if !strings.Contains(scrapeMetrics(t, s.http), line+"\n") {
		t.Errorf("/metrics lacks %s", line)
	}
}

// flowsColumns is DESCRIBE flows, one "name type" a line.
func flowsColumns(t *testing.T, db store.DB) string {
	t.Helper()
	rows, err := db.Query(context.Background(), "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = 'flows'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s\n", name, typ)
	}
	return b.String()
}

func mappedRecords(t *testing.T, db store.DB) uint64 {
	t.Helper()
	var n uint64
	if err := store.QueryRow(context.Background(), db, []any{&n}, "SELECT count() FROM schema_migrations WHERE version = 0"); err != nil {
		t.Fatal(err)
	}
	return n
}
