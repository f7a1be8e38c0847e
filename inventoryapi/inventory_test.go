package inventoryapi_test

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/flowhouse/flowhouse/enrich/snmp"
	"github.com/flowhouse/flowhouse/internal/apitest"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/internal/peers"
	"github.com/flowhouse/flowhouse/inventoryapi"
)

func TestInventory(t *testing.T) {
	agent := peers.StartSnmpd(t, "", "inventory-router")
	enginetest.Each(t, tables, func(t *testing.T, e enginetest.Engine) {
		w := newWorld(t, e, agent)
		t.Run("isolation", w.testIsolation)
		t.Run("exporter", w.testExporter)
		t.Run("interfaces", w.testInterfaces)
		t.Run("device search", w.testDeviceSearch)
		t.Run("exporter search", w.testExporterSearch)
		t.Run("pages", w.testPages)
		t.Run("tenants", w.testTenants)
		t.Run("etag", w.testETag)
		t.Run("bad input", w.testBadInput)
		t.Run("injection", w.testInjection)
	})
}

// keys of a list answer: exporters by address, devices as tenant/mac.
func (w *world) keys(t *testing.T, token, path string) (int, []string) {
	t.Helper()
	r := w.c.WithToken(token).Get(path)
	if r.Status != 200 {
		return r.Status, nil
	}
	var body struct {
		Exporters []inventoryapi.Exporter `json:"exporters"`
		Devices   []inventoryapi.Device   `json:"devices"`
		Tenants   []inventoryapi.Tenant   `json:"tenants"`
	}
	r.JSON(t, &body)
	out := []string{}
	for _, x := range body.Exporters {
		out = append(out, x.Tenant+"/"+x.Address)
	}
	for _, d := range body.Devices {
		out = append(out, d.Tenant+"/"+d.MAC)
	}
	for _, tn := range body.Tenants {
		out = append(out, tn.Name)
	}
	return r.Status, out
}

// A tenant's token sees its own exporters, devices and counts only: not
// in lists, not by key (404), not through filters.
func (w *world) testIsolation(t *testing.T) {
	aExp := []string{"a/" + edgeA, "a/" + inBofA, "a/" + silentA}
	bExp := []string{"b/" + edgeB, "b/" + v6B}
	aDev := []string{"a/" + ciscoA, "a/" + vrrpMAC, "a/" + googleA}
	bDev := []string{"b/" + ciscoB, "b/" + vrrpMAC}
	tests := []struct {
		name, token, path string
		status            int
		want              []string // for 200 lists
	}{
		{"a lists its exporters", apitest.ReadA, "/api/v1/exporters", 200, aExp},
		{"b lists its exporters", apitest.ReadB, "/api/v1/exporters", 200, bExp},
		{"all tenants list every exporter", apitest.ReadAll, "/api/v1/exporters", 200,
			append(append([]string{"default/" + strayDef}, aExp[:1]...), "b/"+edgeB, aExp[1], aExp[2], bExp[1])},
		{"a filters on b", apitest.ReadA, "/api/v1/exporters?tenant=b", 404, nil},
		{"a filters on a tenant that does not exist", apitest.ReadA, "/api/v1/exporters?tenant=zzz", 404, nil},
		{"all tenants filter on b", apitest.ReadAll, "/api/v1/exporters?tenant=b", 200, bExp},
		{"a searches b's sysName", apitest.ReadA, "/api/v1/exporters?q=inventory-router", 200, []string{"a/" + edgeA}},
		{"a searches b's address", apitest.ReadA, "/api/v1/exporters?q=198.51.100.5", 200, []string{}},
		{"b's exporter by a", apitest.ReadA, "/api/v1/exporters/" + edgeB, 404, nil},
		{"a's exporter by b", apitest.ReadB, "/api/v1/exporters/" + edgeA, 404, nil},
		{"a's exporter inside b's prefix by b", apitest.ReadB, "/api/v1/exporters/" + inBofA, 404, nil},
		{"a's interfaces by b", apitest.ReadB, "/api/v1/exporters/" + edgeA + "/interfaces", 404, nil},
		{"default's exporter by b, which has a stale row of it", apitest.ReadB, "/api/v1/exporters/" + strayDef, 404, nil},
		{"an exporter nobody has", apitest.ReadAll, "/api/v1/exporters/192.0.2.200", 404, nil},
		{"a lists its devices", apitest.ReadA, "/api/v1/devices", 200, aDev},
		{"b lists its devices", apitest.ReadB, "/api/v1/devices", 200, bDev},
		{"a's device by b", apitest.ReadB, "/api/v1/devices/" + ciscoA, 404, nil},
		{"b's device by a", apitest.ReadA, "/api/v1/devices/" + ciscoB, 404, nil},
		{"a searches b's MAC", apitest.ReadA, "/api/v1/devices?mac=" + ciscoB, 200, []string{}},
		{"a searches an address both tenants have", apitest.ReadA, "/api/v1/devices?ip=10.0.0.5", 200, []string{"a/" + ciscoA}},
		{"b searches an address both tenants have", apitest.ReadB, "/api/v1/devices?ip=10.0.0.5", 200, []string{"b/" + ciscoB}},
		{"a devices filtered on b", apitest.ReadA, "/api/v1/devices?tenant=b", 404, nil},
		{"a's admin counts a only", apitest.AdminA, "/api/v1/tenants", 200, []string{"a"}},
		{"a read token may not list tenants", apitest.ReadA, "/api/v1/tenants", 403, nil},
		{"all tenants' admin", apitest.AdminAll, "/api/v1/tenants", 200, []string{"a", "b", "default"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, got := w.keys(t, tt.token, tt.path)
			if status != tt.status || (tt.want != nil && !slices.Equal(got, tt.want)) {
				t.Errorf("GET %s: %d %q, want %d %q", tt.path, status, got, tt.status, tt.want)
			}
		})
	}
	// The shared MAC: each tenant gets its own; a token of all tenants
	// must say which.
	for _, tt := range []struct {
		token, query, tenant string
		status               int
	}{
		{apitest.ReadA, "", "a", 200}, {apitest.ReadB, "", "b", 200}, {apitest.ReadAll, "", "", 409},
		{apitest.ReadAll, "?tenant=b", "b", 200}, {apitest.ReadA, "?tenant=b", "", 404},
	} {
		r := w.c.WithToken(tt.token).Get("/api/v1/devices/" + vrrpMAC + tt.query)
		var d inventoryapi.Device
		if r.Status == 200 {
			r.JSON(t, &d)
		}
		if r.Status != tt.status || d.Tenant != tt.tenant {
			t.Errorf("%s GET the shared MAC%s: %d tenant %q, want %d %q", tt.token, tt.query, r.Status, d.Tenant, tt.status, tt.tenant)
		}
	}
}

func (w *world) exporter(t *testing.T, token, a string) inventoryapi.Exporter {
	t.Helper()
	r := w.c.WithToken(token).Get("/api/v1/exporters/" + url.PathEscape(a))
	if r.Status != 200 {
		t.Fatalf("GET exporter %s: %d %s", a, r.Status, r.Body)
	}
	var x inventoryapi.Exporter
	r.JSON(t, &x)
	return x
}

func (w *world) testExporter(t *testing.T) {
	x := w.exporter(t, apitest.ReadA, edgeA)
	// The latest snapshot, not the older one.
	if x.Tenant != "a" || x.Name != "edge-a" || x.SysName != w.sysName || x.Site != "par1" || x.Role != "edge" || x.Discovered ||
		!slices.Equal(x.Protocols, []string{"ipfix"}) || x.Datagrams != 1000 || x.Flows != 25000 || x.Bytes != 1400000 || x.Templates != 3 ||
		x.Drops["template_not_found"] != 7 || x.Drops["queue_full"] != 2 || len(x.Drops) != 2 ||
		x.LastSeen == nil || !x.LastSeen.Equal(w.now.Add(-1e9)) || x.StatsUpdatedAt == nil || !x.StatsUpdatedAt.Equal(w.now) {
		t.Errorf("edge-a: %+v", x)
	}
	sq := x.Sequence
	if sq.Expected != 25000 || sq.Lost != 250 || sq.LossRatio != 0.01 || len(sq.Streams) != 2 ||
		sq.Streams[1] != (inventoryapi.Stream{Protocol: "ipfix", ObservationDomain: 2, LastSequence: 5000, Expected: 5000, Lost: 50, LossRatio: 0.01, Resets: 1, Restarts: 3, SourcePort: 4739}) {
		t.Errorf("edge-a sequence: %+v", sq)
	}
	s := x.SNMP
	if !s.Configured || s.State != "ok" || s.LastSuccess == nil || s.LastSuccess.Before(w.now) || s.LastFailure != nil ||
		s.ConsecutiveFailures != 0 || s.Interfaces == 0 || s.UpdatedAt == nil {
		t.Errorf("edge-a SNMP: %+v", s)
	}
	// Polled, its agent silent: the reason and the open circuit.
	s = w.exporter(t, apitest.ReadA, silentA).SNMP
	if !s.Configured || s.State != "circuit_open" || s.LastSuccess != nil || s.LastFailure == nil || !slices.Contains(snmp.Reasons, s.LastReason) ||
		s.LastError == "" || s.ConsecutiveFailures != 3 || s.Failures != 3 || s.CircuitOpenUntil == nil || s.Interfaces != 0 {
		t.Errorf("silent exporter SNMP: %+v", s)
	}
	// Named by its entry, inside b's prefix; not polled.
	if x := w.exporter(t, apitest.ReadA, inBofA); x.Tenant != "a" || x.Name != "inner-a" || x.SNMP.Configured || x.SNMP.State != "off" || x.Flows != 300 {
		t.Errorf("a's exporter inside b's prefix: %+v", x)
	}
	// Discovered; b's stale attributes row of its address is not its.
	if x := w.exporter(t, apitest.ReadAll, strayDef); x.Tenant != "default" || !x.Discovered || x.Name != "" || x.SysName != "" || x.Site != "" || x.SNMP.State != "off" {
		t.Errorf("discovered exporter: %+v", x)
	}
	// b's polling row for a's address is not a's status.
	// Two live collectors' snapshots added up; the stopped one's left out.
	if x := w.exporter(t, apitest.ReadB, edgeB); x.Datagrams != 25 || x.Flows != 47 || !slices.Equal(x.Protocols, []string{"ipfix", "sflow_v5"}) ||
		x.Sequence.Expected != 7 || x.Sequence.Lost != 1 || len(x.Sequence.Streams) != 1 || x.FirstSeen == nil || !x.FirstSeen.Equal(w.now.Add(-120e9)) {
		t.Errorf("edge-b over collectors: %+v", x)
	}
	if x := w.exporter(t, apitest.ReadB, edgeB); x.Name != w.sysName || x.SNMP.State != "ok" {
		t.Errorf("b's exporter: %+v", x)
	}
	// IPv6, in any spelling.
	for _, a := range []string{v6B, "2001:0db8:0:0::1", "2001:DB8::1"} {
		if x := w.exporter(t, apitest.ReadB, a); x.Address != v6B || x.Site != "v6" || x.Flows != 90 {
			t.Errorf("IPv6 exporter as %s: %+v", a, x)
		}
	}
	// An IPv4-mapped spelling is the IPv4 exporter.
	if x := w.exporter(t, apitest.ReadA, "::ffff:"+edgeA); x.Address != edgeA {
		t.Errorf("::ffff:%s is %s", edgeA, x.Address)
	}
}

func (w *world) testInterfaces(t *testing.T) {
	r := w.c.WithToken(apitest.ReadA).Get("/api/v1/exporters/" + edgeA + "/interfaces")
	var list inventoryapi.InterfaceList
	r.JSON(t, &list)
	x := w.exporter(t, apitest.ReadA, edgeA)
	if r.Status != 200 || list.Exporter != edgeA || list.Tenant != "a" || uint64(len(list.Interfaces)) != x.SNMP.Interfaces {
		t.Fatalf("interfaces: %d %+v, want the %d interfaces polled", r.Status, list, x.SNMP.Interfaces)
	}
	lo := list.Interfaces[0]
	if lo.IfIndex != 1 || lo.Name != "lo" || lo.OperStatus != "up" || lo.UpdatedAt == nil {
		t.Errorf("interface 1: %+v", lo)
	}
	// a's latest rate, not b's (later) one for the same address: the
	// sFlow counter sample after a's SNMP poll, every value from it.
	if u := lo.Utilisation; u == nil || u.Source != "sflow" || u.InBps != 16000 || u.OutBps != 2000 || u.InPercent != 1.6 || u.OutPercent != 0.8 || !u.Time.Equal(w.now.Add(90e9)) {
		t.Errorf("interface 1 utilisation: %+v", lo.Utilisation)
	}
	for i := 1; i < len(list.Interfaces); i++ {
		if list.Interfaces[i-1].IfIndex >= list.Interfaces[i].IfIndex {
			t.Errorf("interfaces not ordered by ifIndex: %d before %d", list.Interfaces[i-1].IfIndex, list.Interfaces[i].IfIndex)
		}
	}
	// An exporter with no SNMP has none.
	r = w.c.WithToken(apitest.ReadA).Get("/api/v1/exporters/" + inBofA + "/interfaces")
	r.JSON(t, &list)
	if r.Status != 200 || len(list.Interfaces) != 0 {
		t.Errorf("interfaces of an exporter not polled: %d %+v", r.Status, list)
	}
}

func (w *world) testDeviceSearch(t *testing.T) {
	tests := []struct {
		query string
		want  []string
	}{
		{"mac=" + ciscoA, []string{"a/" + ciscoA}},
		{"mac=00:00:0C:12:34:56", []string{"a/" + ciscoA}},
		{"mac=00-00-0c-12-34-56", []string{"a/" + ciscoA}},
		{"mac=00:00:0c", []string{"a/" + ciscoA, "b/" + ciscoB}},
		{"mac=00:00:5e:00:01", []string{"a/" + vrrpMAC, "b/" + vrrpMAC}},
		{"mac=3c", []string{"a/" + googleA}},
		{"ip=10.0.0.1", []string{"a/" + vrrpMAC, "b/" + vrrpMAC}},
		{"ip=10.0.0.6", []string{"a/" + ciscoA}},
		{"ip=::ffff:10.0.0.6", []string{"a/" + ciscoA}},
		{"ip=2001:db8:a::9", []string{"a/" + googleA}},
		// The older row's address and vendor are history, not the device.
		{"ip=10.0.0.99", []string{}},
		{"vendor=old+vendor", []string{}},
		{"vendor=cisco", []string{"a/" + ciscoA, "b/" + ciscoB}},
		{"vendor=GOOGLE", []string{"a/" + googleA}},
		{"vendor=cisco&ip=10.0.0.6", []string{"a/" + ciscoA}},
		{"vendor=cisco&tenant=b", []string{"b/" + ciscoB}},
		{"mac=00:00:0c&vendor=icann", []string{}},
	}
	for _, tt := range tests {
		if status, got := w.keys(t, apitest.ReadAll, "/api/v1/devices?"+tt.query); status != 200 || !slices.Equal(got, tt.want) {
			t.Errorf("devices?%s: %d %q, want %q", tt.query, status, got, tt.want)
		}
	}
	r := w.c.WithToken(apitest.ReadA).Get("/api/v1/devices/" + ciscoA)
	var d inventoryapi.Device
	r.JSON(t, &d)
	if d.Vendor != "Cisco Systems, Inc" || len(d.IPHistory) != 2 || d.IPHistory[0].Address != "10.0.0.5" || d.IPHistory[1].Address != "10.0.0.6" ||
		d.LastLocation == nil || *d.LastLocation != (inventoryapi.Location{Exporter: edgeA, ExporterName: "edge-a", IfIndex: 1, IfName: "lo"}) ||
		d.LastSeen == nil || !d.LastSeen.Equal(w.now) || d.FirstSeen == nil || !d.FirstSeen.Equal(w.now.Add(-48*3600e9)) {
		t.Errorf("device %s: %+v %+v", ciscoA, d, d.LastLocation)
	}
	r = w.c.WithToken(apitest.ReadB).Get("/api/v1/devices/" + ciscoB)
	r.JSON(t, &d)
	if d.LastLocation == nil || d.LastLocation.ExporterName != w.sysName || d.LastLocation.IfName != "lo" {
		t.Errorf("device %s: last seen %+v, want on b's exporter named by SNMP", ciscoB, d.LastLocation)
	}
}

func (w *world) testExporterSearch(t *testing.T) {
	tests := []struct {
		query string
		want  []string
	}{
		{"q=EDGE-a", []string{"a/" + edgeA}},
		{"q=inner", []string{"a/" + inBofA}},
		{"q=router", []string{"a/" + edgeA, "b/" + edgeB}},
		{"q=198.51.", []string{"b/" + edgeB, "a/" + inBofA}},
		{"q=2001:DB8:", []string{"b/" + v6B}},
		{"q=stale-b", []string{}},
		{"q=router&tenant=b", []string{"b/" + edgeB}},
	}
	for _, tt := range tests {
		if status, got := w.keys(t, apitest.ReadAll, "/api/v1/exporters?"+tt.query); status != 200 || !slices.Equal(got, tt.want) {
			t.Errorf("exporters?%s: %d %q, want %q", tt.query, status, got, tt.want)
		}
	}
}

// pages walks a list with page_size n and returns the keys of every page.
func (w *world) pages(t *testing.T, token, path string, n int) []string {
	t.Helper()
	var all []string
	next := ""
	for range 20 {
		r := w.c.WithToken(token).Get(path + "page_size=" + strconv.Itoa(n) + "&page_token=" + url.QueryEscape(next))
		if r.Status != 200 {
			t.Fatalf("%s: %d %s", path, r.Status, r.Body)
		}
		var page struct {
			Exporters []inventoryapi.Exporter `json:"exporters"`
			Devices   []inventoryapi.Device   `json:"devices"`
			Next      string                  `json:"next_page_token"`
		}
		r.JSON(t, &page)
		if len(page.Exporters)+len(page.Devices) > n {
			t.Fatalf("page of %d items, page_size %d", len(page.Exporters)+len(page.Devices), n)
		}
		for _, x := range page.Exporters {
			all = append(all, x.Tenant+"/"+x.Address)
		}
		for _, d := range page.Devices {
			all = append(all, d.Tenant+"/"+d.MAC)
		}
		if next = page.Next; next == "" {
			return all
		}
	}
	t.Fatal("more than 20 pages")
	return nil
}

func (w *world) testPages(t *testing.T) {
	for _, path := range []string{"/api/v1/exporters?", "/api/v1/devices?", "/api/v1/devices?mac=00:00&"} {
		_, whole := w.keys(t, apitest.ReadAll, path)
		for _, n := range []int{1, 2, 4} {
			if got := w.pages(t, apitest.ReadAll, path, n); !slices.Equal(got, whole) {
				t.Errorf("%s in pages of %d: %q, want %q", path, n, got, whole)
			}
		}
	}
	// A token is bound to its filters and to the principal's scope.
	var page inventoryapi.ExporterList
	w.c.WithToken(apitest.ReadAll).Get("/api/v1/exporters?page_size=1").JSON(t, &page)
	if page.NextPageToken == "" {
		t.Fatal("no next page")
	}
	tok := url.QueryEscape(page.NextPageToken)
	for _, tt := range []struct{ token, path string }{
		{apitest.ReadAll, "/api/v1/exporters?page_size=1&q=x&page_token=" + tok},
		{apitest.ReadA, "/api/v1/exporters?page_size=1&page_token=" + tok},
		{apitest.ReadAll, "/api/v1/devices?page_size=1&page_token=" + tok},
	} {
		if r := w.c.WithToken(tt.token).Get(tt.path); r.Status != 400 || r.ErrorCode() != "bad_request" {
			t.Errorf("%s %s: %d %s, want 400", tt.token, tt.path, r.Status, r.Body)
		}
	}
}

func (w *world) testTenants(t *testing.T) {
	var list inventoryapi.TenantList
	w.c.WithToken(apitest.AdminAll).Get("/api/v1/tenants").JSON(t, &list)
	want := []inventoryapi.Tenant{
		{Name: "a", Configured: true, Exporters: 3, Devices: 3, Alerts: inventoryapi.AlertCounts{Firing: 1}},
		{Name: "b", Configured: true, Exporters: 2, Devices: 2, Alerts: inventoryapi.AlertCounts{Pending: 1}},
		{Name: "default", Default: true, Exporters: 1, DiscoveredExporters: 1},
	}
	if !slices.Equal(list.Tenants, want) {
		t.Errorf("tenants:\n got %+v\nwant %+v", list.Tenants, want)
	}
	w.c.WithToken(apitest.AdminA).Get("/api/v1/tenants").JSON(t, &list)
	if !slices.Equal(list.Tenants, want[:1]) {
		t.Errorf("tenants of a's admin: %+v, want %+v", list.Tenants, want[:1])
	}
}

func (w *world) testETag(t *testing.T) {
	for _, path := range []string{"/api/v1/exporters", "/api/v1/exporters/" + edgeA, "/api/v1/exporters/" + edgeA + "/interfaces",
		"/api/v1/devices?vendor=cisco", "/api/v1/devices/" + ciscoA} {
		c := w.c.WithToken(apitest.ReadA)
		first := c.Get(path)
		tag := first.Header.Get("ETag")
		if first.Status != 200 || tag == "" {
			t.Fatalf("%s: %d, ETag %q", path, first.Status, tag)
		}
		if r := c.Get(path, "If-None-Match", tag); r.Status != 304 || len(r.Body) != 0 {
			t.Errorf("%s with its ETag: %d %q, want 304", path, r.Status, r.Body)
		}
		// Another tenant's answer is another tag.
		if r := w.c.WithToken(apitest.ReadAll).Get(path, "If-None-Match", tag); r.Status == 304 && !strings.Contains(path, ciscoA) && !strings.Contains(path, edgeA) {
			t.Errorf("%s: all tenants' answer has a's tag", path)
		}
	}
	r := w.c.WithToken(apitest.AdminA).Get("/api/v1/tenants")
	if r2 := w.c.WithToken(apitest.AdminA).Get("/api/v1/tenants", "If-None-Match", r.Header.Get("ETag")); r2.Status != 304 {
		t.Errorf("tenants with its ETag: %d", r2.Status)
	}
}

func (w *world) testBadInput(t *testing.T) {
	tests := []struct{ path, code string }{
		{"/api/v1/exporters/not-an-address", "bad_request"},
		{"/api/v1/exporters/192.0.2.1.5", "bad_request"},
		{"/api/v1/exporters/192.0.2.256", "bad_request"},
		{"/api/v1/exporters/fe80::1%25eth0", "bad_request"},
		// The router decodes %2F before matching: no route, the frame's 404.
		{"/api/v1/exporters/192.0.2.0%2F24", "not_found"},
		{"/api/v1/exporters/not-an-address/interfaces", "bad_request"},
		{"/api/v1/exporters?colour=red", "bad_request"},
		{"/api/v1/exporters?page_size=0", "bad_request"},
		{"/api/v1/exporters?page_size=1001", "bad_request"},
		{"/api/v1/exporters?page_token=forged", "bad_request"},
		{"/api/v1/exporters/" + edgeA + "?q=x", "bad_request"},
		{"/api/v1/devices/00:00:0c:12:34", "bad_request"},
		{"/api/v1/devices/00:00:0c:12:34:5g", "bad_request"},
		{"/api/v1/devices/00:00:0c:12:34:56:78", "bad_request"},
		{"/api/v1/devices/0:0:c:12:34:56", "bad_request"},
		{"/api/v1/devices/00:00-0c:12:34:56", "bad_request"},
		{"/api/v1/devices?mac=00:00:0c:1", "bad_request"},
		{"/api/v1/devices?mac=", ""},
		{"/api/v1/devices?ip=10.0.0", "bad_request"},
		{"/api/v1/devices?ip=10.0.0.0/8", "bad_request"},
		{"/api/v1/devices?ip=999.1.1.1", "bad_request"},
		{"/api/v1/devices?vendor=a&vendor=b", "bad_request"},
		{"/api/v1/tenants?tenant=a", "bad_request"},
	}
	for _, tt := range tests {
		token := apitest.ReadA
		if strings.HasPrefix(tt.path, "/api/v1/tenants") {
			token = apitest.AdminA
		}
		r := w.c.WithToken(token).Get(tt.path)
		want := map[string]int{"": 200, "bad_request": 400, "not_found": 404}[tt.code]
		if r.Status != want || r.ErrorCode() != tt.code {
			t.Errorf("%s: %d %s, want %d %q", tt.path, r.Status, r.Body, want, tt.code)
		}
	}
}

// SQL in every filter and path parameter is data: a 4xx or an empty
// answer, never a 5xx, never SQL or an engine's error text, and the
// tables are still there.
func (w *world) testInjection(t *testing.T) {
	payloads := []string{
		"' OR 1=1 --", "'); DROP TABLE devices; --", `\' OR \'\'=\'`, "1' UNION ALL SELECT name FROM system.tables --",
		"a\x00b", "?", "x' AND sleep(3) AND 'x", "' || (SELECT * FROM file('/etc/passwd')) || '", "{x:String}", "$$ OR 1=1 $$", "\u2028' OR 1 --",
	}
	for _, p := range payloads {
		e := url.QueryEscape(p)
		ep := url.PathEscape(p)
		for _, path := range []string{
			"/api/v1/exporters?q=" + e, "/api/v1/exporters?tenant=" + e, "/api/v1/exporters?page_token=" + e,
			"/api/v1/exporters/" + ep, "/api/v1/exporters/" + ep + "/interfaces",
			"/api/v1/devices?vendor=" + e, "/api/v1/devices?mac=" + e, "/api/v1/devices?ip=" + e, "/api/v1/devices?tenant=" + e,
			"/api/v1/devices/" + ep, "/api/v1/devices/" + ciscoA + "?tenant=" + e,
		} {
			r := w.c.WithToken(apitest.ReadA).Get(path)
			body := string(r.Body)
			switch {
			case r.Status >= 500:
				t.Errorf("%s: %d %s", path, r.Status, body)
			case r.Status == 200 && !strings.Contains(body, `[]`) && !strings.Contains(path, "/devices/"+ciscoA):
				t.Errorf("%s: 200 with data %s", path, body)
			}
			// Words of the engines' errors and of our SQL, none of them in a payload.
			for _, leak := range []string{"DB::Exception", "Code:", "Syntax", "argMax", "multiIf", "toFixedString", "positionCaseInsensitive", "exporter_polls", "FROM devices"} {
				if strings.Contains(body, leak) {
					t.Errorf("%s: the answer shows %q: %s", path, leak, body)
				}
			}
		}
	}
	if status, got := w.keys(t, apitest.ReadAll, "/api/v1/devices"); status != 200 || len(got) != 5 {
		t.Errorf("devices after the injections: %d %q", status, got)
	}
}
