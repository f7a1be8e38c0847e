package enrich

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/enrich/oui"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// ARP observation events, the arp_observations.event column.
const (
	eventNew     = "new"
	eventChanged = "changed"
	eventRefresh = "refresh"
	eventGone    = "gone"
)

type arpObservation struct {
	addr  flow.Addr
	n     Neighbor
	event string
}

// writer keeps poll results through the DB interface. It inserts with
// INSERT ... SELECT over ARRAY JOIN of bound arrays: one statement per
// chunk of rows, through Exec, which both engines run (ClickHouse 18.16
// waits forever for data after INSERT ... VALUES sent as a query).
type writer struct {
	db       dbapi.DB
	modernIP bool // IPv6 columns (else FixedString(16))
}

// column kinds of insert
const (
	cPlain = iota
	cIP
	cIPArray
	cTime
	cTimeArray
)

type icol struct {
	name string
	kind int
	vals any // a slice, one element per row
}

func (w *writer) expr(c icol, alias string) string {
	ip := "toFixedString(IPv6StringToNum(%s), 16)"
	if w.modernIP {
		ip = "toIPv6(%s)"
	}
	switch c.kind {
	case cIP:
		return fmt.Sprintf(ip, alias)
	case cIPArray:
		return fmt.Sprintf("arrayMap(x -> "+ip+", %s)", "x", alias)
	case cTime:
		return fmt.Sprintf("toDateTime(%s)", alias)
	case cTimeArray:
		return fmt.Sprintf("arrayMap(x -> toDateTime(x), %s)", alias)
	}
	return alias
}

// insert writes the rows given as columns, chunk rows per statement (the
// statement text must stay below the server's max_query_size, 256 KiB).
func (w *writer) insert(ctx context.Context, table string, cols []icol, chunk int) error {
	n := reflect.ValueOf(cols[0].vals).Len()
	names := make([]string, len(cols))
	exprs := make([]string, len(cols))
	binds := make([]string, len(cols))
	aliases := make([]string, len(cols))
	for i, c := range cols {
		alias := fmt.Sprintf("a%d", i)
		names[i], aliases[i] = c.name, alias
		exprs[i] = w.expr(c, alias)
		binds[i] = "? AS " + alias
	}
	q := "INSERT INTO " + table + " (" + strings.Join(names, ", ") + ") SELECT " + strings.Join(exprs, ", ") +
		" FROM (SELECT " + strings.Join(binds, ", ") + ") ARRAY JOIN " + strings.Join(aliases, ", ")
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		args := make([]any, len(cols))
		for i, c := range cols {
			args[i] = reflect.ValueOf(c.vals).Slice(lo, hi).Interface()
		}
		if err := w.db.Exec(ctx, q, args...); err != nil {
			return fmt.Errorf("insert %d rows into %s: %w", hi-lo, table, err)
		}
	}
	return nil
}

func ipString(a netip.Addr) string {
	if !a.IsValid() {
		return "::"
	}
	return netip.AddrFrom16(a.As16()).String() // IPv4 as ::ffff:a.b.c.d
}

func addrString(a flow.Addr) string { return netip.AddrFrom16(a).String() }

func (w *writer) interfaces(ctx context.Context, x *exporter, its []*Interface, now time.Time) error {
	n := len(its)
	var (
		tenant, exp                   = fill(n, x.tenant), fill(n, addrString(x.addr))
		idx                           = make([]uint32, n)
		name, descr, alias            = make([]string, n), make([]string, n), make([]string, n)
		speed                         = make([]uint64, n)
		oper                          = make([]uint16, n)
		boundary, provider, connectiv = make([]string, n), make([]string, n), make([]string, n)
		updated                       = fill(n, uint32(now.Unix()))
	)
	for i, it := range its {
		idx[i], name[i], descr[i], alias[i], speed[i], oper[i] = it.Index, it.Name, it.Descr, it.Alias, it.SpeedMbps, uint16(it.OperStatus)
		boundary[i], provider[i], connectiv[i] = it.Boundary, it.Provider, it.Connectivity
	}
	return w.insert(ctx, "interfaces", []icol{
		{"tenant", cPlain, tenant}, {"exporter_address", cIP, exp}, {"if_index", cPlain, idx},
		{"if_name", cPlain, name}, {"if_descr", cPlain, descr}, {"if_alias", cPlain, alias},
		{"speed_mbps", cPlain, speed}, {"oper_status", cPlain, oper},
		{"boundary", cPlain, boundary}, {"provider", cPlain, provider}, {"connectivity", cPlain, connectiv},
		{"updated_at", cTime, updated},
	}, 200)
}

func (w *writer) exporterAttributes(ctx context.Context, x *exporter, sysName string, now time.Time) error {
	disc := uint16(0)
	if x.discovered {
		disc = 1
	}
	return w.insert(ctx, "exporter_attributes", []icol{
		{"tenant", cPlain, []string{x.tenant}}, {"exporter_address", cIP, []string{addrString(x.addr)}},
		{"name", cPlain, []string{x.name()}}, {"sys_name", cPlain, []string{sysName}},
		{"site", cPlain, []string{x.site}}, {"role", cPlain, []string{x.role}},
		{"discovered", cPlain, []uint16{disc}}, {"updated_at", cTime, []uint32{uint32(now.Unix())}},
	}, 1)
}

func (w *writer) arpObservations(ctx context.Context, x *exporter, obs []arpObservation, now time.Time, reg *oui.Registry) error {
	n := len(obs)
	ips, macs, idx, vendors, events := make([]string, n), make([]uint64, n), make([]uint32, n), make([]string, n), make([]string, n)
	for i, o := range obs {
		ips[i], macs[i], idx[i], vendors[i], events[i] = addrString(o.addr), o.n.MAC, o.n.IfIndex, reg.Vendor(o.n.MAC), o.event
	}
	return w.insert(ctx, "arp_observations", []icol{
		{"time", cTime, fill(n, uint32(now.Unix()))}, {"time_ms", cPlain, fill(n, uint64(now.UnixMilli()))},
		{"tenant", cPlain, fill(n, x.tenant)},
		{"exporter_address", cIP, fill(n, addrString(x.addr))}, {"if_index", cPlain, idx},
		{"ip_address", cIP, ips}, {"mac", cPlain, macs}, {"vendor", cPlain, vendors}, {"event", cPlain, events},
	}, 1000)
}

func (w *writer) devices(ctx context.Context, ds []Device, now time.Time) error {
	n := len(ds)
	var (
		tenant, vendor = make([]string, n), make([]string, n)
		mac            = make([]uint64, n)
		first, last    = make([]uint32, n), make([]uint32, n)
		exp            = make([]string, n)
		ifIdx          = make([]uint32, n)
		hAddr          = make([][]string, n)
		hFirst, hLast  = make([][]uint32, n), make([][]uint32, n)
		updated        = fill(n, uint32(now.Unix()))
	)
	for i, d := range ds {
		tenant[i], vendor[i], mac[i] = d.Tenant, d.Vendor, d.MAC
		first[i], last[i] = uint32(d.FirstSeen.Unix()), uint32(d.LastSeen.Unix())
		exp[i], ifIdx[i] = ipString(d.LastExporter), d.LastIfIndex
		hAddr[i], hFirst[i], hLast[i] = make([]string, len(d.IPs)), make([]uint32, len(d.IPs)), make([]uint32, len(d.IPs))
		for j, h := range d.IPs {
			hAddr[i][j], hFirst[i][j], hLast[i][j] = ipString(h.Addr), uint32(h.FirstSeen.Unix()), uint32(h.LastSeen.Unix())
		}
	}
	return w.insert(ctx, "devices", []icol{
		{"tenant", cPlain, tenant}, {"mac", cPlain, mac}, {"vendor", cPlain, vendor},
		{"first_seen", cTime, first}, {"last_seen", cTime, last},
		{"last_exporter_address", cIP, exp}, {"last_if_index", cPlain, ifIdx},
		{"ip_history.address", cIPArray, hAddr}, {"ip_history.first_seen", cTimeArray, hFirst}, {"ip_history.last_seen", cTimeArray, hLast},
		{"updated_at", cTime, updated},
	}, 50)
}

// counters writes rows of any exporters and sources: the SNMP poll of
// one exporter, or a batch of sFlow counter samples.
func (w *writer) counters(ctx context.Context, rows []counterRow) error {
	n := len(rows)
	var (
		at, atMs         = make([]uint32, n), make([]uint64, n)
		tenant, exp, src = make([]string, n), make([]string, n), make([]string, n)
		idx              = make([]uint32, n)
		in, out          = make([]uint64, n), make([]uint64, n)
		secs             = make([]float64, n)
		inBps, outBps    = make([]uint64, n), make([]uint64, n)
		inUtil, outUtil  = make([]float64, n), make([]float64, n)
		speed            = make([]uint64, n)
		valid, reset     = make([]uint16, n), make([]uint16, n)
	)
	for i, r := range rows {
		at[i], atMs[i] = uint32(r.cur.at/1000), uint64(r.cur.at)
		tenant[i], exp[i], src[i] = r.tenant, addrString(r.exporter), r.source
		idx[i], in[i], out[i], speed[i] = r.ifIndex, r.cur.in, r.cur.out, r.speedMbps
		secs[i], inBps[i], outBps[i] = r.rate.seconds, r.rate.inBps, r.rate.outBps
		inUtil[i], outUtil[i] = float64(r.rate.inUtil), float64(r.rate.outUtl)
		if r.rate.valid {
			valid[i] = 1
		}
		if r.rate.reset {
			reset[i] = 1
		}
	}
	cols := []icol{
		{"time", cTime, at}, {"time_ms", cPlain, atMs},
		{"tenant", cPlain, tenant},
		{"exporter_address", cIP, exp}, {"if_index", cPlain, idx}, {"source", cPlain, src},
		{"in_octets", cPlain, in}, {"out_octets", cPlain, out}, {"interval_seconds", cPlain, secs},
		{"in_bps", cPlain, inBps}, {"out_bps", cPlain, outBps},
		{"in_utilisation", cPlain, inUtil}, {"out_utilisation", cPlain, outUtil},
		{"speed_mbps", cPlain, speed}, {"valid", cPlain, valid}, {"reset", cPlain, reset},
	}
	return w.insert(ctx, "interface_counters", append(cols, counterDetailColumns(rows)...), 500)
}

// counterDetailColumns are the other counters of sFlow rows (0 for SNMP
// rows), one column per counter, in the order of the table.
func counterDetailColumns(rows []counterRow) []icol {
	n := len(rows)
	inPkts, outPkts := make([]uint64, n), make([]uint64, n)
	names := []string{"in_discards", "out_discards", "in_errors", "out_errors", "in_unknown_protos",
		"dot3_alignment_errors", "dot3_fcs_errors", "dot3_single_collisions", "dot3_multiple_collisions",
		"dot3_sqe_test_errors", "dot3_deferred_transmissions", "dot3_late_collisions", "dot3_excessive_collisions",
		"dot3_mac_transmit_errors", "dot3_carrier_sense_errors", "dot3_frame_too_longs", "dot3_mac_receive_errors",
		"dot3_symbol_errors"}
	u32 := make([][]uint32, len(names))
	for j := range u32 {
		u32[j] = make([]uint32, n)
	}
	for i, r := range rows {
		c, x := &r.sflow, &r.sflow.Ethernet
		inPkts[i], outPkts[i] = c.InPackets, c.OutPackets
		for j, v := range []uint32{c.InDiscards, c.OutDiscards, c.InErrors, c.OutErrors, c.InUnknownProtos,
			x.AlignmentErrors, x.FCSErrors, x.SingleCollisionFrames, x.MultipleCollisionFrames,
			x.SQETestErrors, x.DeferredTransmissions, x.LateCollisions, x.ExcessiveCollisions,
			x.InternalMacTransmitErrors, x.CarrierSenseErrors, x.FrameTooLongs, x.InternalMacReceiveErrors, x.Symbol} {
			u32[j][i] = v
		}
	}
	cols := []icol{{"in_packets", cPlain, inPkts}, {"out_packets", cPlain, outPkts}}
	for j, name := range names {
		cols = append(cols, icol{name, cPlain, u32[j]})
	}
	return cols
}

func fill[T any](n int, v T) []T {
	s := make([]T, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// reload fills the caches from the tables, table by table, so enrichment
// works from the first flow after a restart, ARP changes are told apart
// from restarts and counter deltas continue. Rows of an exporter whose
// tenant changed in the configuration since are ignored.
func (e *Enricher) reload(ctx context.Context) error {
	var counts [7]int
	for i, step := range []struct {
		table string
		load  func(context.Context) (int, error)
	}{
		{"exporter_attributes", e.reloadSysNames},
		{"interfaces", e.reloadInterfaces},
		{"arp_observations", e.reloadARP},
		{"interface_counters", e.reloadCounters},
		{"devices", e.reloadDevices},
		{"exporter_polls", e.reloadPolls},
		{"neighbors", e.reloadNeighbors},
	} {
		n, err := step.load(ctx)
		if err != nil {
			return fmt.Errorf("reload %s: %w", step.table, err)
		}
		counts[i] = n
	}
	e.log.Info("reloaded enrichment state", "exporters", counts[0], "interfaces", counts[1], "arp_entries", counts[2], "counters", counts[3], "devices", counts[4], "poll_statuses", counts[5], "neighbors", counts[6])
	return nil
}

// knownExporter is the exporter of a stored row, when it still belongs
// to the tenant the row was written for.
func (e *Enricher) knownExporter(tenant, addr string) *exporter {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return nil
	}
	x := e.exporterFor(flow.AddrFromNetip(a))
	if x.tenant != tenant {
		return nil
	}
	return x
}

func (e *Enricher) reloadSysNames(ctx context.Context) (int, error) {
	n := 0
	err := dbapi.Each(ctx, e.deps.DB, "SELECT tenant, IPv6NumToString(exporter_address), sys_name, toUInt32(updated_at) FROM exporter_attributes FINAL", nil, func(rows dbapi.Rows) error {
		var tenant, addr, sys string
		var at uint32
		if err := rows.Scan(&tenant, &addr, &sys, &at); err != nil {
			return err
		}
		if x := e.knownExporter(tenant, addr); x != nil {
			x.sysName.Store(&sys)
			x.attrSysName, x.attrWritten = sys, int64(at)*1000
			n++
		}
		return nil
	})
	return n, err
}

func (e *Enricher) reloadInterfaces(ctx context.Context) (int, error) {
	ifs := map[*exporter]map[uint32]*Interface{}
	n := 0
	err := dbapi.Each(ctx, e.deps.DB, "SELECT tenant, IPv6NumToString(exporter_address), if_index, if_name, if_descr, if_alias, speed_mbps, oper_status, toUInt32(updated_at) FROM interfaces FINAL", nil, func(rows dbapi.Rows) error {
		var tenant, addr string
		it := &Interface{}
		var at uint32
		if err := rows.Scan(&tenant, &addr, &it.Index, &it.Name, &it.Descr, &it.Alias, &it.SpeedMbps, &it.OperStatus, &at); err != nil {
			return err
		}
		x := e.knownExporter(tenant, addr)
		if x == nil {
			return nil
		}
		classify(x.rules, it)
		if ifs[x] == nil {
			ifs[x] = map[uint32]*Interface{}
		}
		ifs[x][it.Index] = it
		if x.ifWritten == nil {
			x.ifWritten = map[uint32]int64{}
		}
		x.ifWritten[it.Index] = int64(at) * 1000
		n++
		return nil
	})
	if err != nil {
		return n, err
	}
	for x, m := range ifs {
		x.ifaces.Store(&m)
	}
	return n, nil
}

// reloadARP keeps the latest observation of each address, unless it is
// "gone" or older than a refresh (plus a poll) would allow.
func (e *Enricher) reloadARP(ctx context.Context) (int, error) {
	window := int64((2*e.cfg.Polling.ObservationRefresh + e.cfg.Polling.ARP) / time.Second)
	arps := map[*exporter]map[flow.Addr]Neighbor{}
	n := 0
	err := dbapi.Each(ctx, e.deps.DB, `SELECT tenant, IPv6NumToString(exporter_address), IPv6NumToString(ip_address),
		argMax(mac, time_ms), argMax(if_index, time_ms), argMax(event, time_ms), max(time_ms)
		FROM arp_observations WHERE time >= now() - ? GROUP BY tenant, exporter_address, ip_address`, []any{window}, func(rows dbapi.Rows) error {
		var tenant, addr, ip, event string
		var mac uint64
		var idx uint32
		var at uint64
		if err := rows.Scan(&tenant, &addr, &ip, &mac, &idx, &event, &at); err != nil {
			return err
		}
		x := e.knownExporter(tenant, addr)
		a, err := netip.ParseAddr(ip)
		if x == nil || err != nil || event == eventGone {
			return nil
		}
		if arps[x] == nil {
			arps[x] = map[flow.Addr]Neighbor{}
		}
		fa := flow.AddrFromNetip(a)
		arps[x][fa] = Neighbor{IfIndex: idx, MAC: mac}
		if x.arpWritten == nil {
			x.arpWritten = map[flow.Addr]int64{}
		}
		x.arpWritten[fa] = int64(at)
		n++
		return nil
	})
	if err != nil {
		return n, err
	}
	tenants := map[string]bool{}
	for x, m := range arps {
		x.arp.Store(&m)
		tenants[x.tenant] = true
	}
	for t := range tenants {
		e.rebuildTenantARP(t)
	}
	return n, nil
}

// reloadCounters keeps the last sample of each interface and source, so
// that the next poll or counter sample has a delta within its own series.
func (e *Enricher) reloadCounters(ctx context.Context) (int, error) {
	n := 0
	err := dbapi.Each(ctx, e.deps.DB, `SELECT tenant, IPv6NumToString(exporter_address), if_index, source,
		argMax(in_octets, time_ms), argMax(out_octets, time_ms), max(time_ms)
		FROM interface_counters WHERE time >= now() - 86400 GROUP BY tenant, exporter_address, if_index, source`, nil, func(rows dbapi.Rows) error {
		var tenant, addr, source string
		var idx uint32
		var in, out, at uint64
		if err := rows.Scan(&tenant, &addr, &idx, &source, &in, &out, &at); err != nil {
			return err
		}
		x := e.knownExporter(tenant, addr)
		if x == nil {
			return nil
		}
		s := counterSample{at: int64(at), in: in, out: out}
		switch source {
		case sourceSNMP:
			if x.prevCounter == nil {
				x.prevCounter = map[uint32]counterSample{}
			}
			x.prevCounter[idx] = s
		case sourceSFlow:
			if !e.sflow.reload(x.addr, idx, s) {
				return nil
			}
		default:
			return nil
		}
		n++
		return nil
	})
	return n, err
}

func (e *Enricher) reloadDevices(ctx context.Context) (int, error) {
	n := 0
	err := dbapi.Each(ctx, e.deps.DB, `SELECT tenant, mac, vendor, toUInt32(first_seen), toUInt32(last_seen),
		IPv6NumToString(last_exporter_address), last_if_index,
		arrayMap(x -> IPv6NumToString(x), ip_history.address),
		arrayMap(x -> toUInt32(x), ip_history.first_seen), arrayMap(x -> toUInt32(x), ip_history.last_seen)
		FROM devices FINAL`, nil, func(rows dbapi.Rows) error {
		var d Device
		var first, last uint32
		var exp string
		var hAddr []string
		var hFirst, hLast []uint32
		if err := rows.Scan(&d.Tenant, &d.MAC, &d.Vendor, &first, &last, &exp, &d.LastIfIndex, &hAddr, &hFirst, &hLast); err != nil {
			return err
		}
		d.FirstSeen, d.LastSeen = time.Unix(int64(first), 0).UTC(), time.Unix(int64(last), 0).UTC()
		if a, err := netip.ParseAddr(exp); err == nil {
			d.LastExporter = a.Unmap()
		}
		for i := range hAddr {
			a, err := netip.ParseAddr(hAddr[i])
			if err != nil || i >= len(hFirst) || i >= len(hLast) {
				continue
			}
			d.IPs = append(d.IPs, DeviceIP{Addr: a.Unmap(), FirstSeen: time.Unix(int64(hFirst[i]), 0).UTC(), LastSeen: time.Unix(int64(hLast[i]), 0).UTC()})
		}
		e.inv.load(d)
		n++
		return nil
	})
	return n, err
}
