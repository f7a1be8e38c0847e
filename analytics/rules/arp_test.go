package rules

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/notify"
)

func init() {
	extraEmbeddedTables = append(extraEmbeddedTables, "devices", "exporter_attributes")
}

// arpObs is one arp_observations row of a test.
type arpObs struct {
	tenant, exporter string
	ifIndex          uint32
	ip, mac, vendor  string
	event            string
	at               time.Time
}

// arpIP is the SQL that stores an address literal in e's address type.
func arpIP(e engine, expr string) string {
	if e.Name == "embedded" {
		return "toIPv6(" + expr + ")"
	}
	return "toFixedString(IPv6StringToNum(" + expr + "), 16)"
}

// mapped renders an IPv4 address the way enrich stores it.
func mapped(ip string) string {
	if strings.Contains(ip, ":") {
		return ip
	}
	return "::ffff:" + ip
}

func sqlStrings(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = quote(v)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func sqlNumbers[T uint32 | uint64 | int64](vs []T) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = fmt.Sprint(v)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func mustMAC(t testing.TB, s string) uint64 {
	t.Helper()
	m, err := ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// arpInsert writes rows as enrich does: INSERT ... SELECT over ARRAY JOIN
// (18.16 waits forever for the data of an INSERT ... VALUES query).
func arpInsert(t *testing.T, e engine, rows ...arpObs) {
	t.Helper()
	if len(rows) == 0 {
		return
	}
	var ms []int64
	var idx []uint32
	var macs []uint64
	var tenants, exps, ips, vendors, events []string
	for _, r := range rows {
		exp := r.exporter
		if exp == "" {
			exp = "192.0.2.1"
		}
		ms, idx, macs = append(ms, r.at.UnixMilli()), append(idx, r.ifIndex), append(macs, mustMAC(t, r.mac))
		tenants, exps, ips = append(tenants, r.tenant), append(exps, mapped(exp)), append(ips, mapped(r.ip))
		vendors, events = append(vendors, r.vendor), append(events, r.event)
	}
	e.Exec(t, fmt.Sprintf(`INSERT INTO arp_observations (time, time_ms, tenant, exporter_address, if_index, ip_address, mac, vendor, event)
SELECT toDateTime(intDiv(ms, 1000)), toUInt64(ms), t, %s, i, %s, m, v, ev
FROM (SELECT %s AS ms, %s AS t, %s AS x, %s AS i, %s AS a, %s AS m, %s AS v, %s AS ev)
ARRAY JOIN ms, t, x, i, a, m, v, ev`, arpIP(e, "x"), arpIP(e, "a"),
		sqlNumbers(ms), sqlStrings(tenants), sqlStrings(exps), sqlNumbers(idx), sqlStrings(ips), sqlNumbers(macs),
		sqlStrings(vendors), sqlStrings(events)))
}

// arpDevice writes a devices row with its first sighting.
func arpDevice(t *testing.T, e engine, tenant, mac string, first time.Time) {
	t.Helper()
	e.Exec(t, fmt.Sprintf(`INSERT INTO devices (tenant, mac, first_seen, last_seen, updated_at)
SELECT %s, toUInt64(%d), toDateTime(%d), toDateTime(%d), toDateTime(%d)`,
		quote(tenant), mustMAC(t, mac), first.Unix(), first.Unix(), first.Unix()))
}

// arpExporter writes an exporter_attributes row.
func arpExporter(t *testing.T, e engine, tenant, addr string, at time.Time) {
	t.Helper()
	e.Exec(t, fmt.Sprintf(`INSERT INTO exporter_attributes (tenant, exporter_address, name, sys_name, site, role, discovered, updated_at)
SELECT %s, %s, '', '', '', '', 0, toDateTime(%d)`, quote(tenant), arpIP(e, quote(mapped(addr))), at.Unix()))
}

// arpEval runs kind k once over e, with its defaults changed by set,
// the way the scheduler would (overrides merged).
func arpEval[P Params](t *testing.T, k Kind[P], e engine, now time.Time, tenants []string, set func(*Builtin[P])) []Finding {
	t.Helper()
	b := k.Defaults()
	if set != nil {
		set(&b)
	}
	var c BuiltinConfig
	*k.Config(&c) = b
	if errs := k.validate(&c, "builtin"); len(errs) > 0 {
		t.Fatalf("configuration: %v", errs)
	}
	byTenant := map[string]P{}
	for name, o := range b.Overrides {
		byTenant[name] = merge(b.Params, o.Params)
	}
	ev, err := k.New(Deps{})
	if err != nil {
		t.Fatal(err)
	}
	env := &Env[P]{Rule: k.Name, Now: now, Interval: b.Interval, Tenants: tenants, DB: e.Reader, base: b.Params, byTenant: byTenant}
	start := time.Now()
	fs, err := ev.Evaluate(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s on %s: %d findings in %s", k.Name, e.Name, len(fs), time.Since(start).Round(time.Millisecond))
	slices.SortFunc(fs, func(a, b Finding) int {
		return strings.Compare(a.Tenant+"/"+subjectOf(a), b.Tenant+"/"+subjectOf(b))
	})
	return fs
}

func subjectOf(f Finding) string {
	if ip, ok := f.Labels["ip_address"]; ok {
		return ip
	}
	return f.Labels["mac"]
}

// arpWant is an expected finding: tenant, subject, value and phrases of
// the summary.
type arpWant struct {
	tenant, subject string
	value           float64
	severity        notify.Severity
	summary         []string
}

func checkARPFindings(t *testing.T, got []Finding, want []arpWant) {
	t.Helper()
	if len(got) != len(want) {
		for _, f := range got {
			t.Logf("got %s %v %g %q", f.Tenant, f.Labels, f.Value, f.Annotations["summary"])
		}
		t.Fatalf("%d findings, want %d", len(got), len(want))
	}
	for i, w := range want {
		f := got[i]
		if f.Tenant != w.tenant || subjectOf(f) != w.subject || f.Value != w.value || f.Severity != w.severity {
			t.Errorf("finding %d: %s %v value %g severity %q, want %s %s value %g severity %q",
				i, f.Tenant, f.Labels, f.Value, f.Severity, w.tenant, w.subject, w.value, w.severity)
		}
		if len(f.Labels) != 1 {
			t.Errorf("finding %d: labels %v, want the subject only", i, f.Labels)
		}
		for _, s := range w.summary {
			if !strings.Contains(f.Annotations["summary"], s) {
				t.Errorf("finding %d: summary %q lacks %q", i, f.Annotations["summary"], s)
			}
		}
	}
}

// MACs of the tests. 00:00:5e:00:53:xx is IANA's documentation range
// (not VRRP's 00:00:5e:00:01:xx).
const (
	macDocA  = "00:00:5e:00:53:09"
	macLocal = "02:42:ac:11:00:02"
	macIntel = "00:1b:21:00:00:30"
	macVRRP  = "00:00:5e:00:01:07"
	macHSRP  = "00:00:0c:07:ac:01"
	macHSRP2 = "00:00:0c:9f:f0:01"
	macGLBP  = "00:07:b4:00:01:02"
)

func TestARPMACHelpers(t *testing.T) {
	for _, c := range []struct {
		mac         string
		fhrp, local bool
	}{
		{macVRRP, true, false},
		{"00:00:5e:00:01:ff", true, false},
		{"00:00:5e:00:02:01", true, false}, // VRRP for IPv6
		{"00:00:5e:00:03:01", false, false},
		{macDocA, false, false},
		{macHSRP, true, false},
		{"00:00:0c:07:ad:01", false, false},
		{macHSRP2, true, false},
		{"00:00:0c:9f:ff:ff", true, false},
		{"00:00:0c:9f:e0:01", false, false},
		{macGLBP, true, false},
		{"00:07:b5:00:00:01", false, false},
		{macLocal, false, true},
		{"fe:ff:ff:ff:ff:ff", false, true},
		{macIntel, false, false},
	} {
		m := mustMAC(t, c.mac)
		if isFHRP(m) != c.fhrp || locallyAdministered(m) != c.local {
			t.Errorf("%s: FHRP %v locally administered %v, want %v %v", c.mac, isFHRP(m), locallyAdministered(m), c.fhrp, c.local)
		}
		if FormatMAC(m) != c.mac {
			t.Errorf("FormatMAC(ParseMAC(%s)) = %s", c.mac, FormatMAC(m))
		}
	}
	if m, err := ParseMAC("0000.5E00.5309"); err != nil || FormatMAC(m) != macDocA {
		t.Errorf("ParseMAC Cisco notation: %s %v", FormatMAC(m), err)
	}
	for _, bad := range []string{"", "00:00:5e:00:53", "00:00:00:00:fe:80:00:00:00:00:00:00:00:00:00:01", "zz:00:5e:00:53:09"} {
		if _, err := ParseMAC(bad); err == nil {
			t.Errorf("ParseMAC(%q) accepted", bad)
		}
	}
	if got := describeMAC(mustMAC(t, macLocal), ""); got != "02:42:ac:11:00:02 (locally administered)" {
		t.Errorf("describeMAC = %q", got)
	}
	if got := describeMAC(mustMAC(t, macIntel), ""); got != "00:1b:21:00:00:30 (unknown vendor)" {
		t.Errorf("describeMAC = %q", got)
	}
}

func TestARPTransitions(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, b, vrrp := mustMAC(t, macDocA), mustMAC(t, macLocal), mustMAC(t, macVRRP)
	row := func(min int, mac uint64, event string) arpRow {
		return arpRow{Exporter: "192.0.2.1", IfIndex: 3, MAC: mac, Event: event, At: t0.Add(time.Duration(min) * time.Minute)}
	}
	for _, c := range []struct {
		name string
		rows []arpRow
		want []arpTransition
	}{
		{"steady", []arpRow{row(0, a, "new"), row(60, a, "refresh")}, nil},
		{"change", []arpRow{row(0, a, "new"), row(60, a, "refresh"), row(70, b, "changed")},
			[]arpTransition{{At: t0.Add(70 * time.Minute), From: a, To: b, FromSince: t0, Exporter: "192.0.2.1", IfIndex: 3}}},
		{"entry there before the rows", []arpRow{row(5, a, "refresh"), row(10, b, "changed")},
			[]arpTransition{{At: t0.Add(10 * time.Minute), From: a, To: b, Exporter: "192.0.2.1", IfIndex: 3}}},
		{"gone then another MAC", []arpRow{row(0, a, "new"), row(5, a, "gone"), row(9, b, "new"), row(12, a, "changed")},
			[]arpTransition{
				{At: t0.Add(9 * time.Minute), From: a, To: b, FromSince: t0, Exporter: "192.0.2.1", IfIndex: 3},
				{At: t0.Add(12 * time.Minute), From: b, To: a, FromSince: t0.Add(9 * time.Minute), Exporter: "192.0.2.1", IfIndex: 3}}},
		{"gone and back with the same MAC", []arpRow{row(0, a, "new"), row(5, a, "gone"), row(9, a, "new")}, nil},
		{"FHRP rows skipped", []arpRow{row(0, a, "new"), row(1, vrrp, "changed"), row(2, a, "changed")}, nil},
		{"interface change only", []arpRow{row(0, a, "new"), {MAC: a, Event: "changed", IfIndex: 4, At: t0.Add(time.Minute)}}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := transitions(c.rows)
			if !slices.Equal(got, c.want) {
				t.Errorf("transitions:\n got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestARPParamsValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want []string
	}{
		{"mac change defaults", ARPMACChange.Defaults().Params.Validate(), nil},
		{"flip flop defaults", ARPFlipFlop.Defaults().Params.Validate(), nil},
		{"many ips defaults", ARPMACManyIPs.Defaults().Params.Validate(), nil},
		{"new mac defaults", ARPNewMAC.Defaults().Params.Validate(), nil},
		{"mac change", ARPMACChangeParams{Window: -time.Second, ObservationRefresh: time.Hour}.Validate(),
			[]string{"window: -1s must be positive", "min_known: 0s must be positive"}},
		{"flip flop", ARPFlipFlopParams{Window: time.Hour, MinChanges: 1, ObservationRefresh: time.Hour}.Validate(),
			[]string{"min_changes: 1 is below 2"}},
		{"many ips", ARPMACManyIPsParams{MinIPv4: 1, MinIPv6: 32, ExcludeMACs: []string{macDocA, "router"}, ObservationRefresh: time.Hour}.Validate(),
			[]string{"min_ipv4: 1 is below 2", `exclude_macs[1]: "router" is not a MAC`}},
		{"new mac", ARPNewMACParams{Window: time.Hour, Warmup: time.Hour, LocallyAdministeredSeverity: "low", ObservationRefresh: time.Hour}.Validate(),
			[]string{`locally_administered_severity: "low" is not`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.want == nil {
				if c.err != nil {
					t.Fatalf("unexpected error: %v", c.err)
				}
				return
			}
			if c.err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(c.err.Error(), w) {
					t.Errorf("error %q lacks %q", c.err, w)
				}
			}
		})
	}
}

// TestARPConfigRegistered: the four rules are in the defaults, named as
// documented, and an override is checked under its tenant's key.
func TestARPConfigRegistered(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b := cfg.Builtin
	if !b.ARPMACChange.Enabled || b.ARPFlipFlop.Severity != notify.SeverityError || b.ARPMACManyIPs.Params.MinIPv4 != 8 ||
		b.ARPNewMAC.Params.LocallyAdministeredSeverity != notify.SeverityInfo {
		t.Errorf("defaults: %+v", b)
	}
	cfg.Builtin.ARPFlipFlop.Overrides = map[string]Override[ARPFlipFlopParams]{"acme": {Params: ARPFlipFlopParams{MinChanges: 1}}}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "builtin.arp_flip_flop.overrides.acme.params.min_changes: 1 is below 2") {
		t.Errorf("override error: %v", err)
	}
}

// TestARPFHRPConditionOnEngines: the SQL condition and isFHRP agree, on
// both engines.
func TestARPFHRPConditionOnEngines(t *testing.T) {
	macs := []string{macVRRP, "00:00:5e:00:02:01", macDocA, macHSRP, "00:00:0c:07:ad:01", macHSRP2, "00:00:0c:9f:e0:01", macGLBP, "00:07:b5:00:00:01", macLocal}
	nums := make([]uint64, len(macs))
	want := 0
	for i, s := range macs {
		nums[i] = mustMAC(t, s)
		if !isFHRP(nums[i]) {
			want++
		}
	}
	forEachEngine(t, func(t *testing.T, e engine) {
		rows, err := e.Reader.Query(context.Background(), fmt.Sprintf("SELECT mac FROM (SELECT arrayJoin(%s) AS mac) WHERE %s ORDER BY mac", sqlNumbers(nums), notFHRP("mac")))
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var m uint64
			if err := rows.Scan(&m); err != nil {
				t.Fatal(err)
			}
			if isFHRP(m) {
				t.Errorf("%s kept by the SQL condition", FormatMAC(m))
			}
			n++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("%d MACs kept, want %d", n, want)
		}
	})
}

// ago is a time d before now.
func ago(now time.Time, d time.Duration) time.Time { return now.Add(-d) }

func TestARPMACChangeOnEngines(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	const ip = "10.255.2.9"
	obs := func(tenant, mac, vendor, event string, d time.Duration) arpObs {
		return arpObs{tenant: tenant, ifIndex: 3, ip: ip, mac: mac, vendor: vendor, event: event, at: ago(now, d)}
	}
	stable := func(tenant, mac string) []arpObs {
		return []arpObs{obs(tenant, mac, "ICANN", "new", 3*time.Hour), obs(tenant, mac, "ICANN", "refresh", 2*time.Hour), obs(tenant, mac, "ICANN", "refresh", time.Hour)}
	}
	tenantB := func(b *Builtin[ARPMACChangeParams]) {
		b.Overrides = map[string]Override[ARPMACChangeParams]{"b": {Params: ARPMACChangeParams{MinKnown: 10 * time.Minute}}}
	}
	for _, c := range []struct {
		name string
		rows []arpObs
		set  func(*Builtin[ARPMACChangeParams])
		want []arpWant
	}{
		{"known address changes", append(stable("a", macDocA), obs("a", macLocal, "", "changed", 10*time.Minute)), nil,
			[]arpWant{{"a", ip, 1, "", []string{"10.255.2.9 moved from 00:00:5e:00:53:09 (ICANN) to 02:42:ac:11:00:02 (locally administered) on exporter 192.0.2.1 ifIndex 3"}}}},
		{"entry older than the rows read", []arpObs{obs("a", macDocA, "ICANN", "refresh", 50*time.Minute), obs("a", macIntel, "Intel", "changed", 5*time.Minute)}, nil,
			[]arpWant{{"a", ip, 1, "", []string{"moved from 00:00:5e:00:53:09 (ICANN) to 00:1b:21:00:00:30 (Intel)"}}}},
		{"fresh binding changes", []arpObs{obs("a", macDocA, "", "new", 20*time.Minute), obs("a", macLocal, "", "changed", 10*time.Minute)}, nil, nil},
		{"change older than the window", append(stable("a", macDocA)[:1], obs("a", macLocal, "", "changed", 2*time.Hour)), nil, nil},
		{"gone, then another MAC", append(stable("a", macDocA), obs("a", macDocA, "", "gone", 40*time.Minute), obs("a", macIntel, "Intel", "new", 20*time.Minute)), nil,
			[]arpWant{{"a", ip, 1, "", []string{"moved from 00:00:5e:00:53:09 (ICANN) to 00:1b:21:00:00:30 (Intel)"}}}},
		{"FHRP MACs", append(stable("a", macVRRP), obs("a", macHSRP, "", "changed", 10*time.Minute), obs("a", macGLBP, "", "changed", 5*time.Minute)), nil, nil},
		{"tenants are apart", append(stable("a", macDocA), stable("b", macIntel)...), nil, nil},
		{"override of one tenant", []arpObs{
			obs("a", macDocA, "", "new", 20*time.Minute), obs("a", macLocal, "", "changed", 5*time.Minute),
			obs("b", macDocA, "", "new", 20*time.Minute), obs("b", macLocal, "", "changed", 5*time.Minute),
		}, tenantB, []arpWant{{"b", ip, 1, "", []string{"10.255.2.9 moved from 00:00:5e:00:53:09"}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			forEachEngine(t, func(t *testing.T, e engine) {
				arpInsert(t, e, c.rows...)
				checkARPFindings(t, arpEval(t, ARPMACChange, e, now, []string{"a", "b"}, c.set), c.want)
			})
		})
	}
}

func TestARPFlipFlopOnEngines(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	const ip = "10.255.2.9"
	obs := func(tenant, exporter, mac, event string, d time.Duration) arpObs {
		return arpObs{tenant: tenant, exporter: exporter, ifIndex: 3, ip: ip, mac: mac, event: event, at: ago(now, d)}
	}
	flips := func(tenant string, macs []string, from time.Duration, step time.Duration) []arpObs {
		out := []arpObs{obs(tenant, "", macs[0], "new", from)}
		for i, m := range macs[1:] {
			out = append(out, obs(tenant, "", m, "changed", from-time.Duration(i+1)*step))
		}
		return out
	}
	ab := []string{macDocA, macLocal, macDocA, macLocal}
	for _, c := range []struct {
		name string
		rows []arpObs
		set  func(*Builtin[ARPFlipFlopParams])
		want []arpWant
	}{
		{"three changes between two MACs", flips("a", ab, 40*time.Minute, 10*time.Minute), nil,
			[]arpWant{{"a", ip, 3, "", []string{"10.255.2.9 flipped 3 times between 00:00:5e:00:53:09 (unknown vendor) and 02:42:ac:11:00:02 (locally administered) within 1h0m0s on exporter 192.0.2.1 ifIndex 3"}}}},
		{"one change back", flips("a", ab[:3], 30*time.Minute, 10*time.Minute), nil, nil},
		{"one change back, tenant at 2", append(flips("a", ab[:3], 30*time.Minute, 10*time.Minute), flips("b", ab[:3], 30*time.Minute, 10*time.Minute)...),
			func(b *Builtin[ARPFlipFlopParams]) {
				b.Overrides = map[string]Override[ARPFlipFlopParams]{"b": {Params: ARPFlipFlopParams{MinChanges: 2}}}
			}, []arpWant{{"b", ip, 2, "", []string{"flipped 2 times"}}}},
		{"flips older than the window", flips("a", ab, 2*time.Hour, 10*time.Minute), nil, nil},
		{"three MACs in turn", flips("a", []string{macDocA, macLocal, macIntel, macDocA}, 40*time.Minute, 10*time.Minute), nil, nil},
		{"FHRP MACs", flips("a", []string{macDocA, macVRRP, macDocA, macHSRP2, macDocA}, 40*time.Minute, 5*time.Minute), nil, nil},
		{"two exporters refreshing at different times", []arpObs{
			obs("a", "192.0.2.1", macDocA, "new", 3*time.Hour), obs("a", "192.0.2.2", macDocA, "new", 3*time.Hour),
			obs("a", "192.0.2.1", macLocal, "changed", 20*time.Minute),
			obs("a", "192.0.2.2", macDocA, "refresh", 15*time.Minute), // a stale entry of the second router
			obs("a", "192.0.2.2", macLocal, "changed", 10*time.Minute),
			obs("a", "192.0.2.1", macLocal, "refresh", 5*time.Minute),
		}, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			forEachEngine(t, func(t *testing.T, e engine) {
				arpInsert(t, e, c.rows...)
				checkARPFindings(t, arpEval(t, ARPFlipFlop, e, now, []string{"a", "b"}, c.set), c.want)
			})
		})
	}
}

func TestARPMACManyIPsOnEngines(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	claim := func(tenant, mac string, n int, v6 bool, d time.Duration) []arpObs {
		var out []arpObs
		for i := range n {
			ip := fmt.Sprintf("10.255.2.%d", 20+i)
			if v6 {
				ip = fmt.Sprintf("fd00:2::%x", 0x20+i)
			}
			out = append(out, arpObs{tenant: tenant, ifIndex: 3, ip: ip, mac: mac, event: "new", at: ago(now, d)})
		}
		return out
	}
	with := func(rows []arpObs, more ...arpObs) []arpObs { return append(slices.Clone(rows), more...) }
	eight := claim("a", macLocal, 8, false, 10*time.Minute)
	for _, c := range []struct {
		name     string
		rows     []arpObs
		exporter string // an exporter_attributes address of tenant a
		set      func(*Builtin[ARPMACManyIPsParams])
		want     []arpWant
	}{
		{"eight IPv4 addresses", eight, "", nil,
			[]arpWant{{"a", macLocal, 8, "", []string{"02:42:ac:11:00:02 (locally administered) answers for 8 addresses (8 IPv4, 0 IPv6) on exporter 192.0.2.1: 10.255.2.20, 10.255.2.21, "}}}},
		{"seven", claim("a", macLocal, 7, false, 10*time.Minute), "", nil, nil},
		{"one gone", with(eight, arpObs{tenant: "a", ip: "10.255.2.27", mac: macLocal, event: "gone", at: ago(now, time.Minute)}), "", nil, nil},
		{"one moved to another MAC", with(eight, arpObs{tenant: "a", ip: "10.255.2.27", mac: macIntel, event: "changed", at: ago(now, time.Minute)}), "", nil, nil},
		{"entries not refreshed", claim("a", macLocal, 8, false, 3*time.Hour), "", nil, nil},
		{"ten IPv6 addresses", claim("a", macLocal, 10, true, 10*time.Minute), "", nil, nil},
		{"ten IPv6 addresses, min_ipv6 10", claim("a", macLocal, 10, true, 10*time.Minute), "",
			func(b *Builtin[ARPMACManyIPsParams]) { b.Params.MinIPv6 = 10 },
			[]arpWant{{"a", macLocal, 10, "", []string{"answers for 10 addresses (0 IPv4, 10 IPv6)", "fd00:2::20"}}}},
		{"excluded", eight, "", func(b *Builtin[ARPMACManyIPsParams]) { b.Params.ExcludeMACs = []string{"02-42-AC-11-00-02"} }, nil},
		{"a router's MAC", with(eight, arpObs{tenant: "a", exporter: "192.0.2.2", ip: "192.0.2.1", mac: macLocal, event: "new", at: ago(now, time.Hour)}), "192.0.2.1", nil, nil},
		{"the exporter of another tenant", with(eight, arpObs{tenant: "a", exporter: "192.0.2.2", ip: "192.0.2.1", mac: macLocal, event: "new", at: ago(now, time.Hour)}), "",
			nil, []arpWant{{"a", macLocal, 9, "", []string{"answers for 9 addresses"}}}},
		{"FHRP MAC", claim("a", macVRRP, 8, false, 10*time.Minute), "", nil, nil},
		{"tenants are apart", with(claim("a", macLocal, 4, false, 10*time.Minute), claim("b", macLocal, 4, false, 10*time.Minute)...), "", nil, nil},
		{"override of one tenant", with(claim("a", macLocal, 4, false, 10*time.Minute), claim("b", macLocal, 4, false, 10*time.Minute)...), "",
			func(b *Builtin[ARPMACManyIPsParams]) {
				b.Overrides = map[string]Override[ARPMACManyIPsParams]{"b": {Params: ARPMACManyIPsParams{MinIPv4: 4}}}
			}, []arpWant{{"b", macLocal, 4, "", []string{"answers for 4 addresses"}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			forEachEngine(t, func(t *testing.T, e engine) {
				arpInsert(t, e, c.rows...)
				arpExporter(t, e, "b", "192.0.2.1", now) // tenant b's exporter has the address; not tenant a's
				if c.exporter != "" {
					arpExporter(t, e, "a", c.exporter, now)
				}
				checkARPFindings(t, arpEval(t, ARPMACManyIPs, e, now, []string{"a", "b"}, c.set), c.want)
			})
		})
	}
}

func TestARPNewMACOnEngines(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	seen := func(tenant, ip, mac, vendor, event string, d time.Duration) arpObs {
		return arpObs{tenant: tenant, ifIndex: 3, ip: ip, mac: mac, vendor: vendor, event: event, at: ago(now, d)}
	}
	// The exporter has been observing for three hours.
	warm := func(tenant string) []arpObs {
		return []arpObs{seen(tenant, "10.255.2.2", macDocA, "", "new", 3*time.Hour), seen(tenant, "10.255.2.2", macDocA, "", "refresh", 2*time.Hour)}
	}
	with := func(rows []arpObs, more ...arpObs) []arpObs { return append(slices.Clone(rows), more...) }
	for _, c := range []struct {
		name    string
		rows    []arpObs
		devices map[string]string // mac -> tenant known since 30 days
		set     func(*Builtin[ARPNewMACParams])
		want    []arpWant
	}{
		{"new device", with(warm("a"), seen("a", "10.255.2.30", macIntel, "Intel Corporate", "new", 10*time.Minute)), nil, nil,
			[]arpWant{{"a", macIntel, 1, "", []string{"new device 00:1b:21:00:00:30 (Intel Corporate) at 10.255.2.30 on exporter 192.0.2.1 ifIndex 3, first seen"}}}},
		{"locally administered", with(warm("a"), seen("a", "10.255.2.31", macLocal, "", "new", 10*time.Minute)), nil, nil,
			[]arpWant{{"a", macLocal, 1, notify.SeverityInfo, []string{"new device 02:42:ac:11:00:02 (locally administered) at 10.255.2.31"}}}},
		{"locally administered at warning", with(warm("a"), seen("a", "10.255.2.31", macLocal, "", "new", 10*time.Minute)), nil,
			func(b *Builtin[ARPNewMACParams]) { b.Params.LocallyAdministeredSeverity = notify.SeverityWarning },
			[]arpWant{{"a", macLocal, 1, notify.SeverityWarning, nil}}},
		{"first poll of an exporter", []arpObs{seen("a", "10.255.2.2", macDocA, "", "new", 10*time.Minute), seen("a", "10.255.2.30", macIntel, "", "new", 10*time.Minute)}, nil, nil, nil},
		{"seen before the window", with(warm("a"), seen("a", "10.255.2.30", macIntel, "", "new", 2*time.Hour), seen("a", "10.255.2.30", macIntel, "", "gone", 90*time.Minute),
			seen("a", "10.255.2.30", macIntel, "", "new", 10*time.Minute)), nil, nil, nil},
		{"in the device inventory", with(warm("a"), seen("a", "10.255.2.30", macIntel, "", "new", 10*time.Minute)), map[string]string{macIntel: "a"}, nil, nil},
		{"first seen before the window", with(warm("a"), seen("a", "10.255.2.30", macIntel, "", "new", 90*time.Minute)), nil, nil, nil},
		{"FHRP MACs", with(warm("a"), seen("a", "10.255.2.254", macVRRP, "", "new", 10*time.Minute), seen("a", "10.255.2.253", macHSRP, "", "new", 10*time.Minute),
			seen("a", "10.255.2.252", macGLBP, "", "new", 10*time.Minute)), nil, nil, nil},
		{"tenants are apart", with(warm("a"), append(warm("b"), seen("b", "10.255.2.30", macIntel, "", "new", 10*time.Minute))...), map[string]string{macIntel: "a"}, nil,
			[]arpWant{{"b", macIntel, 1, "", []string{"new device 00:1b:21:00:00:30"}}}},
		{"override of one tenant's warm-up", []arpObs{
			seen("a", "10.255.2.2", macDocA, "", "new", 30*time.Minute), seen("a", "10.255.2.30", macIntel, "", "new", 10*time.Minute),
			seen("b", "10.255.2.2", macDocA, "", "new", 30*time.Minute), seen("b", "10.255.2.30", macIntel, "", "new", 10*time.Minute),
		}, nil, func(b *Builtin[ARPNewMACParams]) {
			b.Overrides = map[string]Override[ARPNewMACParams]{"b": {Params: ARPNewMACParams{Warmup: 15 * time.Minute}}}
		}, []arpWant{{"b", macIntel, 1, "", nil}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			forEachEngine(t, func(t *testing.T, e engine) {
				arpInsert(t, e, c.rows...)
				for mac, tenant := range c.devices {
					arpDevice(t, e, tenant, mac, ago(now, 30*24*time.Hour))
				}
				checkARPFindings(t, arpEval(t, ARPNewMAC, e, now, []string{"a", "b"}, c.set), c.want)
			})
		})
	}
}
