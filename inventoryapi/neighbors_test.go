package inventoryapi_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/enrich"
	"github.com/flowhouse/flowhouse/internal/apitest"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/inventoryapi"
	"github.com/flowhouse/flowhouse/tenant"
)

// The cast of the neighbour tests: a's edge and core routers hear each
// other, the edge hears an ISP router and (once) a phone, the core a
// CDP neighbour; b's router hears a chassis whose ID is the edge's and
// that polling linked to a's edge address, which b must not see as a's.
const (
	nEdgeA    = "192.0.2.1"
	nCoreA    = "192.0.2.2"
	nEdgeB    = "198.51.100.5"
	chEdgeA   = "00:00:5e:00:53:01"
	chCoreA   = "00:00:5e:00:53:02"
	chISP     = "00:00:5e:00:53:99"
	nodeEdgeA = "a/exporter/" + nEdgeA
	nodeCoreA = "a/exporter/" + nCoreA
	nodeISP   = "a/chassis/" + chISP
	nodePE2   = "a/chassis/pe2.isp.example"
	nodeEdgeB = "b/exporter/" + nEdgeB
	nodeBChA  = "b/chassis/" + chEdgeA
)

var neighborTables = []string{"exporters", "exporter_attributes", "exporter_polls", "interfaces", "neighbors"}

// nb is one neighbors row of a test.
type nb struct {
	tenant, exporter string
	ifIndex          int
	ifName, protocol string
	chassis, port    string
	portDesc, sys    string
	platform, mgmt   string
	caps             []string
	vlan             int
	linked           string // remote_exporter_address; "" is ::
	gone             bool
	updated          time.Duration // before now
}

func neighborRow(caps dbapi.Capabilities, now time.Time, n nb) string {
	at := func(d time.Duration) string { return fmt.Sprintf("toDateTime(%d)", now.Add(-d).Unix()) }
	orNone := func(s string) string {
		if s == "" {
			return "::"
		}
		return s
	}
	capList := "CAST([] AS Array(String))"
	if len(n.caps) > 0 {
		capList = "['" + strings.Join(n.caps, "', '") + "']"
	}
	gone := 0
	if n.gone {
		gone = 1
	}
	subtype := "mac"
	if n.protocol == "cdp" {
		subtype = "device_id"
	}
	return fmt.Sprintf(`INSERT INTO neighbors (tenant, exporter_address, local_if_index, local_if_name, protocol, remote_chassis_id,
		remote_chassis_id_subtype, remote_port_id, remote_port_id_subtype, remote_port_description, remote_system_name,
		remote_system_description, remote_platform, remote_management_address, remote_capabilities, remote_native_vlan,
		remote_exporter_address, first_seen, last_seen, gone, updated_at)
		SELECT '%s', %s, %d, '%s', '%s', '%s', '%s', '%s', 'interface_name', '%s', '%s', 'desc of %s', '%s', %s, %s, %d, %s, %s, %s, %d, %s`,
		n.tenant, ip(caps, n.exporter), n.ifIndex, n.ifName, n.protocol, n.chassis, subtype, n.port, n.portDesc, n.sys, n.sys, n.platform,
		ip(caps, orNone(n.mgmt)), capList, n.vlan, ip(caps, orNone(n.linked)), at(48*time.Hour), at(n.updated), gone, at(n.updated))
}

type neighborWorld struct {
	c   *apitest.Client
	now time.Time
}

func newNeighborWorld(t *testing.T, e enginetest.Engine) *neighborWorld {
	t.Helper()
	w := &neighborWorld{now: time.Now().UTC().Truncate(time.Second)}
	cfg := enrich.DefaultConfig()
	cfg.Exporters = []enrich.ExporterConfig{
		{Match: nEdgeA, Tenant: "a", Name: "edge-a"},
		{Match: nCoreA, Tenant: "a"},
		{Match: "198.51.100.0/24", Tenant: "b"},
	}
	ts, err := tenant.New(cfg.Tenants())
	if err != nil {
		t.Fatal(err)
	}
	caps, err := dbapi.DetectCapabilities(t.Context(), e.DB)
	if err != nil {
		t.Fatal(err)
	}
	attrs := func(tn, a, name string) string {
		return fmt.Sprintf(`INSERT INTO exporter_attributes (tenant, exporter_address, name, sys_name, site, role, discovered, updated_at)
			SELECT '%s', %s, '%s', '%s', '', '', 0, toDateTime(%d)`, tn, ip(caps, a), name, name, w.now.Unix())
	}
	rows := []nb{
		// edge-a hears core-a on ge-0/0/1, and core-a hears edge-a on Gi0/1: one link.
		{tenant: "a", exporter: nEdgeA, ifIndex: 1, ifName: "ge-0/0/1", protocol: "lldp", chassis: chCoreA, port: "Gi0/1", portDesc: "to edge",
			sys: "core-a.example", mgmt: nCoreA, caps: []string{"bridge", "router"}, linked: nCoreA},
		{tenant: "a", exporter: nCoreA, ifIndex: 7, ifName: "Gi0/1", protocol: "lldp", chassis: chEdgeA, port: "ge-0/0/1", portDesc: "uplink",
			sys: "edge-a.example", mgmt: nEdgeA, caps: []string{"router"}, linked: nEdgeA},
		// The ISP router renamed: the latest row is the state.
		{tenant: "a", exporter: nEdgeA, ifIndex: 2, ifName: "ge-0/0/2", protocol: "lldp", chassis: chISP, port: "xe-1/0/0", sys: "old-pe", updated: time.Hour},
		{tenant: "a", exporter: nEdgeA, ifIndex: 2, ifName: "ge-0/0/2", protocol: "lldp", chassis: chISP, port: "xe-1/0/0", portDesc: "cust edge-a",
			sys: "isp-pe1", caps: []string{"router"}},
		// A phone that left.
		{tenant: "a", exporter: nEdgeA, ifIndex: 3, ifName: "ge-0/0/3", protocol: "cdp", chassis: "SEP001122334455", port: "Port 1",
			platform: "Cisco IP Phone 7841", vlan: 20, caps: []string{"phone"}, updated: time.Hour},
		{tenant: "a", exporter: nEdgeA, ifIndex: 3, ifName: "ge-0/0/3", protocol: "cdp", chassis: "SEP001122334455", port: "Port 1",
			platform: "Cisco IP Phone 7841", vlan: 20, caps: []string{"phone"}, gone: true},
		{tenant: "a", exporter: nCoreA, ifIndex: 8, ifName: "Gi0/2", protocol: "cdp", chassis: "pe2.isp.example", port: "TenGigE0/0/0/1",
			sys: "pe2.isp.example", platform: "cisco ASR9K", mgmt: "2001:db8::2", vlan: 1},
		// b's router: linked by polling to a's address; b sees a chassis.
		{tenant: "b", exporter: nEdgeB, ifIndex: 1, ifName: "eth0", protocol: "lldp", chassis: chEdgeA, port: "ge-0/0/9", sys: "edge-a.example",
			linked: nEdgeA},
		// A row of b for a's address: not a's, not b's.
		{tenant: "b", exporter: nEdgeA, ifIndex: 9, ifName: "stale", protocol: "lldp", chassis: "stale", port: "stale", sys: "stale"},
	}
	stmts := []string{attrs("a", nEdgeA, "edge-a-snmp"), attrs("a", nCoreA, "core-a"), attrs("b", nEdgeB, "edge-b")}
	for _, r := range rows {
		stmts = append(stmts, neighborRow(caps, w.now, r))
	}
	e.Exec(t, stmts...)
	entries, discovered := inventoryapi.EntriesOf(cfg)
	h := inventoryapi.New(inventoryapi.DefaultConfig(), inventoryapi.Deps{DB: e.Reader, Tenants: ts, Entries: entries, DiscoveredSNMP: discovered})
	w.c = apitest.Serve(t, api.Config{}, apitest.Principals("a", "b"), func(s *api.Server) {
		s.AddSpec("inventory", inventoryapi.Spec)
		s.Register(h.Register)
	})
	return w
}

func TestNeighbors(t *testing.T) {
	enginetest.Each(t, neighborTables, func(t *testing.T, e enginetest.Engine) {
		w := newNeighborWorld(t, e)
		t.Run("neighbors", w.testNeighbors)
		t.Run("topology", w.testTopology)
		t.Run("isolation", w.testIsolation)
		t.Run("bad input", w.testBadInput)
		t.Run("etag", w.testETag)
	})
}

// neighborKeys lists an exporter's neighbours as ifIndex/protocol/chassis.
func (w *neighborWorld) neighbors(t *testing.T, token, path string) (int, inventoryapi.NeighborList, []string) {
	t.Helper()
	r := w.c.WithToken(token).Get(path)
	var list inventoryapi.NeighborList
	if r.Status != 200 {
		return r.Status, list, nil
	}
	r.JSON(t, &list)
	keys := []string{}
	for _, n := range list.Neighbors {
		keys = append(keys, fmt.Sprintf("%d/%s/%s", n.LocalInterface.IfIndex, n.Protocol, n.Remote.ChassisID))
	}
	return r.Status, list, keys
}

func (w *neighborWorld) testNeighbors(t *testing.T) {
	base := "/api/v1/exporters/" + nEdgeA + "/neighbors"
	for _, tt := range []struct {
		query string
		want  []string
	}{
		{"", []string{"1/lldp/" + chCoreA, "2/lldp/" + chISP}},
		{"?include_gone=true", []string{"1/lldp/" + chCoreA, "2/lldp/" + chISP, "3/cdp/SEP001122334455"}},
		{"?include_gone=false", []string{"1/lldp/" + chCoreA, "2/lldp/" + chISP}},
		{"?protocol=cdp", []string{}},
		{"?protocol=cdp&include_gone=true", []string{"3/cdp/SEP001122334455"}},
		{"?protocol=lldp", []string{"1/lldp/" + chCoreA, "2/lldp/" + chISP}},
	} {
		if status, _, got := w.neighbors(t, apitest.ReadA, base+tt.query); status != 200 || !slices.Equal(got, tt.want) {
			t.Errorf("neighbors%s: %d %q, want %q", tt.query, status, got, tt.want)
		}
	}
	_, list, _ := w.neighbors(t, apitest.ReadA, base+"?include_gone=true")
	if list.Exporter != nEdgeA || list.Tenant != "a" || len(list.Neighbors) != 3 {
		t.Fatalf("list: %+v", list)
	}
	core, isp, phone := list.Neighbors[0], list.Neighbors[1], list.Neighbors[2]
	wantCore := inventoryapi.NeighborRemote{ChassisID: chCoreA, ChassisIDSubtype: "mac", PortID: "Gi0/1", PortIDSubtype: "interface_name",
		PortDescription: "to edge", SystemName: "core-a.example", SystemDescription: "desc of core-a.example", ManagementAddress: ptr(nCoreA),
		Capabilities: []string{"bridge", "router"}}
	if core.LocalInterface != (inventoryapi.NeighborInterface{IfIndex: 1, Name: "ge-0/0/1"}) || !remoteEqual(core.Remote, wantCore) ||
		core.LinkedExporter == nil || *core.LinkedExporter != (inventoryapi.LinkedExporter{Address: nCoreA, Name: "core-a"}) || core.Gone ||
		core.FirstSeen == nil || !core.FirstSeen.Equal(w.now.Add(-48*time.Hour)) || core.LastSeen == nil || !core.LastSeen.Equal(w.now) {
		t.Errorf("core-a as edge-a's neighbour: %+v %+v %+v", core, core.Remote, core.LinkedExporter)
	}
	// The latest row of the renamed one; no management address, no link.
	if isp.Remote.SystemName != "isp-pe1" || isp.Remote.PortDescription != "cust edge-a" || isp.Remote.ManagementAddress != nil ||
		isp.LinkedExporter != nil || !isp.LastSeen.Equal(w.now) {
		t.Errorf("ISP neighbour: %+v %+v", isp, isp.Remote)
	}
	if !phone.Gone || phone.Remote.Platform != "Cisco IP Phone 7841" || phone.Remote.NativeVLAN != 20 || phone.Remote.ChassisIDSubtype != "device_id" {
		t.Errorf("gone phone: %+v %+v", phone, phone.Remote)
	}
	// The entry's name wins over the SNMP one; an IPv6 management address.
	_, list, _ = w.neighbors(t, apitest.ReadA, "/api/v1/exporters/"+nCoreA+"/neighbors")
	if len(list.Neighbors) != 2 || list.Neighbors[0].LinkedExporter == nil || list.Neighbors[0].LinkedExporter.Name != "edge-a" ||
		list.Neighbors[1].Remote.ManagementAddress == nil || *list.Neighbors[1].Remote.ManagementAddress != "2001:db8::2" {
		t.Errorf("core-a's neighbours: %+v", list.Neighbors)
	}
}

func ptr(s string) *string { return &s }

func remoteEqual(a, b inventoryapi.NeighborRemote) bool {
	if (a.ManagementAddress == nil) != (b.ManagementAddress == nil) || (a.ManagementAddress != nil && *a.ManagementAddress != *b.ManagementAddress) {
		return false
	}
	return slices.Equal(a.Capabilities, b.Capabilities) && fmt.Sprint(a.ChassisID, a.ChassisIDSubtype, a.PortID, a.PortIDSubtype, a.PortDescription,
		a.SystemName, a.SystemDescription, a.Platform, a.NativeVLAN) == fmt.Sprint(b.ChassisID, b.ChassisIDSubtype, b.PortID, b.PortIDSubtype,
		b.PortDescription, b.SystemName, b.SystemDescription, b.Platform, b.NativeVLAN)
}

// graph summarises a topology: node ids, and links as
// "from[ifIndex]:port -> to[ifIndex]:port protocol observations".
func (w *neighborWorld) graph(t *testing.T, token, query string) (int, inventoryapi.Topology, []string, []string) {
	t.Helper()
	r := w.c.WithToken(token).Get("/api/v1/topology" + query)
	var top inventoryapi.Topology
	if r.Status != 200 {
		return r.Status, top, nil, nil
	}
	r.JSON(t, &top)
	nodes, links := []string{}, []string{}
	for _, n := range top.Nodes {
		nodes = append(nodes, n.ID)
	}
	end := func(e inventoryapi.LinkEnd) string {
		idx := "-"
		if e.IfIndex != nil {
			idx = fmt.Sprint(*e.IfIndex)
		}
		return fmt.Sprintf("%s[%s %s]:%s", e.Node, idx, e.IfName, e.PortID)
	}
	for _, l := range top.Links {
		links = append(links, fmt.Sprintf("%s -> %s %s %d", end(l.From), end(l.To), l.Protocol, l.Observations))
	}
	return r.Status, top, nodes, links
}

var (
	linkEdgeCore = nodeEdgeA + "[1 ge-0/0/1]:ge-0/0/1 -> " + nodeCoreA + "[7 Gi0/1]:Gi0/1 lldp 2"
	linkEdgeISP  = nodeEdgeA + "[2 ge-0/0/2]: -> " + nodeISP + "[- ]:xe-1/0/0 lldp 1"
	linkCorePE2  = nodeCoreA + "[8 Gi0/2]: -> " + nodePE2 + "[- ]:TenGigE0/0/0/1 cdp 1"
	linkB        = nodeEdgeB + "[1 eth0]: -> " + nodeBChA + "[- ]:ge-0/0/9 lldp 1"
)

func (w *neighborWorld) testTopology(t *testing.T) {
	aNodes := []string{nodeISP, nodePE2, nodeEdgeA, nodeCoreA}
	for _, tt := range []struct {
		name, token, query string
		nodes, links       []string
		truncated          bool
	}{
		{"a's graph: the two routers' observations are one link", apitest.ReadA, "", aNodes, []string{linkEdgeCore, linkEdgeISP, linkCorePE2}, false},
		{"b's graph: a chassis, not a's exporter", apitest.ReadB, "", []string{nodeBChA, nodeEdgeB}, []string{linkB}, false},
		{"every tenant", apitest.ReadAll, "", append(slices.Clone(aNodes), nodeBChA, nodeEdgeB), []string{linkEdgeCore, linkEdgeISP, linkCorePE2, linkB}, false},
		{"one tenant of all", apitest.ReadAll, "?tenant=b", []string{nodeBChA, nodeEdgeB}, []string{linkB}, false},
		{"links touching core-a", apitest.ReadA, "?exporter=" + nCoreA, []string{nodePE2, nodeEdgeA, nodeCoreA}, []string{linkEdgeCore, linkCorePE2}, false},
		{"links touching edge-a, IPv4-mapped", apitest.ReadA, "?exporter=::ffff:" + nEdgeA, []string{nodeISP, nodeEdgeA, nodeCoreA}, []string{linkEdgeCore, linkEdgeISP}, false},
		{"CDP only", apitest.ReadA, "?protocol=cdp", []string{nodePE2, nodeCoreA}, []string{linkCorePE2}, false},
		{"CDP touching edge-a: its phone is gone", apitest.ReadA, "?protocol=cdp&exporter=" + nEdgeA, []string{}, []string{}, false},
		{"bounded", apitest.ReadA, "?max_links=2", []string{nodeISP, nodeEdgeA, nodeCoreA}, []string{linkEdgeCore, linkEdgeISP}, true},
		{"bounded at the size", apitest.ReadA, "?max_links=3", aNodes, []string{linkEdgeCore, linkEdgeISP, linkCorePE2}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, top, nodes, links := w.graph(t, tt.token, tt.query)
			if status != 200 || !slices.Equal(nodes, tt.nodes) || !slices.Equal(links, tt.links) || top.Truncated != tt.truncated {
				t.Errorf("topology%s: %d truncated %v\n nodes %q\n want %q\n links %q\n want %q", tt.query, status, top.Truncated, nodes, tt.nodes, links, tt.links)
			}
		})
	}
	_, top, _, _ := w.graph(t, apitest.ReadA, "")
	byID := map[string]inventoryapi.TopologyNode{}
	for _, n := range top.Nodes {
		byID[n.ID] = n
	}
	edge, isp := byID[nodeEdgeA], byID[nodeISP]
	if !edge.Exporter || edge.Address == nil || *edge.Address != nEdgeA || edge.Name != "edge-a" || edge.ChassisID != chEdgeA ||
		edge.SystemName != "edge-a.example" || edge.ManagementAddress == nil || *edge.ManagementAddress != nEdgeA {
		t.Errorf("edge-a node: %+v", edge)
	}
	if byID[nodeCoreA].Name != "core-a" || !slices.Equal(byID[nodeCoreA].Capabilities, []string{"bridge", "router"}) {
		t.Errorf("core-a node: %+v", byID[nodeCoreA])
	}
	if isp.Exporter || isp.Address != nil || isp.Name != "isp-pe1" || isp.ChassisID != chISP || isp.ManagementAddress != nil {
		t.Errorf("ISP node: %+v", isp)
	}
	if pe2 := byID[nodePE2]; pe2.Platform != "cisco ASR9K" || pe2.ManagementAddress == nil || *pe2.ManagementAddress != "2001:db8::2" {
		t.Errorf("pe2 node: %+v", pe2)
	}
	if l := top.Links[0]; l.LastSeen == nil || !l.LastSeen.Equal(w.now) || l.To.PortDescription != "to edge" || l.From.PortDescription != "uplink" {
		t.Errorf("edge-core link: %+v", l)
	}
}

// A tenant's token never sees another's neighbours, links or nodes.
func (w *neighborWorld) testIsolation(t *testing.T) {
	for _, tt := range []struct {
		token, path string
		status      int
	}{
		{apitest.ReadB, "/api/v1/exporters/" + nEdgeA + "/neighbors", 404},
		{apitest.ReadB, "/api/v1/exporters/" + nEdgeA + "/neighbors?include_gone=true", 404},
		{apitest.ReadA, "/api/v1/exporters/" + nEdgeB + "/neighbors", 404},
		{apitest.ReadA, "/api/v1/exporters/192.0.2.200/neighbors", 404},
		{apitest.ReadA, "/api/v1/topology?tenant=b", 404},
		{apitest.ReadA, "/api/v1/topology?tenant=zzz", 404},
		{apitest.ReadA, "/api/v1/topology?exporter=" + nEdgeB, 404},
		{apitest.ReadB, "/api/v1/topology?exporter=" + nEdgeA, 404},
		{apitest.ReadAll, "/api/v1/topology?tenant=a&exporter=" + nEdgeB, 404},
	} {
		if r := w.c.WithToken(tt.token).Get(tt.path); r.Status != tt.status || r.ErrorCode() != "not_found" {
			t.Errorf("%s GET %s: %d %s, want %d", tt.token, tt.path, r.Status, r.Body, tt.status)
		}
	}
	// b's neighbour list: the chassis whose link points at a's address is
	// no link; the stale row b wrote for a's address is nowhere.
	_, list, keys := w.neighbors(t, apitest.ReadB, "/api/v1/exporters/"+nEdgeB+"/neighbors?include_gone=true")
	if !slices.Equal(keys, []string{"1/lldp/" + chEdgeA}) || list.Neighbors[0].LinkedExporter != nil {
		t.Errorf("b's neighbours: %q %+v", keys, list.Neighbors)
	}
	for _, token := range []string{apitest.ReadA, apitest.ReadB, apitest.ReadAll} {
		for _, path := range []string{"/api/v1/topology", "/api/v1/exporters/" + nEdgeA + "/neighbors?include_gone=true"} {
			body := string(w.c.WithToken(token).Get(path).Body)
			if strings.Contains(body, "stale") {
				t.Errorf("%s %s shows b's row for a's address: %s", token, path, body)
			}
			if token == apitest.ReadB && (strings.Contains(body, "a/") || strings.Contains(body, "core-a")) {
				t.Errorf("b's %s shows a's: %s", path, body)
			}
			if token == apitest.ReadA && strings.Contains(body, "b/") {
				t.Errorf("a's %s shows b's: %s", path, body)
			}
		}
	}
}

func (w *neighborWorld) testBadInput(t *testing.T) {
	nbs := "/api/v1/exporters/" + nEdgeA + "/neighbors"
	for _, path := range []string{
		nbs + "?protocol=ospf", nbs + "?protocol=lldp,cdp", nbs + "?include_gone=yes", nbs + "?include_gone=true&include_gone=false",
		nbs + "?tenant=a", "/api/v1/exporters/not-an-address/neighbors",
		"/api/v1/topology?protocol=isis", "/api/v1/topology?max_links=0", "/api/v1/topology?max_links=10001", "/api/v1/topology?max_links=x",
		"/api/v1/topology?exporter=192.0.2", "/api/v1/topology?exporter=fe80::1%25eth0", "/api/v1/topology?colour=red",
		"/api/v1/topology?exporter=" + url.QueryEscape("' OR 1=1 --"),
	} {
		r := w.c.WithToken(apitest.ReadA).Get(path)
		if r.Status != 400 || r.ErrorCode() != "bad_request" {
			t.Errorf("%s: %d %s, want 400", path, r.Status, r.Body)
		}
	}
	r := w.c.WithToken(apitest.ReadA).Get("/api/v1/topology?protocol=ospf&max_links=0")
	if msg := string(r.Body); !strings.Contains(msg, "protocol") || !strings.Contains(msg, "max_links") {
		t.Errorf("both wrong parameters should be named: %s", msg)
	}
}

func (w *neighborWorld) testETag(t *testing.T) {
	for _, path := range []string{"/api/v1/topology", "/api/v1/exporters/" + nEdgeA + "/neighbors"} {
		c := w.c.WithToken(apitest.ReadA)
		first := c.Get(path)
		tag := first.Header.Get("ETag")
		if first.Status != 200 || tag == "" {
			t.Fatalf("%s: %d, ETag %q", path, first.Status, tag)
		}
		if r := c.Get(path, "If-None-Match", tag); r.Status != 304 {
			t.Errorf("%s with its ETag: %d, want 304", path, r.Status)
		}
	}
	a := w.c.WithToken(apitest.ReadA).Get("/api/v1/topology")
	if r := w.c.WithToken(apitest.ReadAll).Get("/api/v1/topology", "If-None-Match", a.Header.Get("ETag")); r.Status == 304 {
		t.Error("all tenants' topology has a's tag")
	}
}
