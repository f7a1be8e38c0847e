package inventoryapi

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// Neighbor protocols (neighbors.protocol).
var neighborProtocols = []string{"lldp", "cdp"}

// Neighbor is what an exporter hears on one local interface from one
// remote chassis over LLDP or CDP, in its latest state.
type Neighbor struct {
	LocalInterface NeighborInterface `json:"local_interface"`
	Protocol       string            `json:"protocol"`
	Remote         NeighborRemote    `json:"remote"`
	// LinkedExporter is the exporter of the same tenant the remote side
	// is (by its management or chassis address, as polling matched it).
	LinkedExporter *LinkedExporter `json:"linked_exporter"`
	FirstSeen      *time.Time      `json:"first_seen"`
	LastSeen       *time.Time      `json:"last_seen"`
	Gone           bool            `json:"gone"`
	UpdatedAt      *time.Time      `json:"updated_at"`
}

// NeighborInterface is the exporter's interface a neighbour is heard on.
type NeighborInterface struct {
	IfIndex uint32 `json:"if_index"`
	Name    string `json:"name"`
}

// NeighborRemote is what the remote side announces of itself.
type NeighborRemote struct {
	ChassisID         string   `json:"chassis_id"`
	ChassisIDSubtype  string   `json:"chassis_id_subtype"`
	PortID            string   `json:"port_id"`
	PortIDSubtype     string   `json:"port_id_subtype"`
	PortDescription   string   `json:"port_description"`
	SystemName        string   `json:"system_name"`
	SystemDescription string   `json:"system_description"`
	Platform          string   `json:"platform"`
	ManagementAddress *string  `json:"management_address"`
	Capabilities      []string `json:"capabilities"`
	NativeVLAN        uint16   `json:"native_vlan"`
}

// LinkedExporter names the exporter a neighbour is.
type LinkedExporter struct {
	Address string `json:"address"`
	Name    string `json:"name"`
}

// NeighborList is the answer of GET /exporters/{addr}/neighbors.
type NeighborList struct {
	Exporter  string     `json:"exporter"`
	Tenant    string     `json:"tenant"`
	Neighbors []Neighbor `json:"neighbors"`
}

// neighborRow is one neighbour as read, before naming its linked
// exporter.
type neighborRow struct {
	Neighbor
	tenant, key, remoteKey string
}

// neighborFilter selects neighbours; the tenants are required.
type neighborFilter struct {
	tenants     []string
	key         string // rows of this exporter
	touching    string // rows of this exporter or naming it as the remote side
	protocol    string
	includeGone bool
	limit       int
}

// neighborRows reads the latest state of each neighbour f selects,
// ordered by (tenant, exporter, ifIndex, protocol, chassis). The latest
// row is taken with argMax rather than FINAL: on a cluster neighbors is a
// Distributed front, and FINAL merges within a shard only. Rows written
// under another tenant than the address's are left out, as for every
// enrichment table (package comment).
func (h *Handlers) neighborRows(ctx context.Context, f neighborFilter) ([]neighborRow, error) {
	last := func(col string) string { return "argMax(" + col + ", updated_at)" }
	b := &builder{}
	b.add("SELECT t, k, idx, if_name, proto, chassis, chassis_sub, port, port_sub, port_desc, sys_name, sys_desc, platform, mgmt, caps, vlan, rk,"+
		" first, seen, g, up FROM (SELECT toString(tenant) AS t, "+keyOf("exporter_address")+" AS k, local_if_index AS idx,"+
		" toString(protocol) AS proto, remote_chassis_id AS chassis, "+last("local_if_name")+" AS if_name,"+
		" toString("+last("remote_chassis_id_subtype")+") AS chassis_sub, "+last("remote_port_id")+" AS port,"+
		" toString("+last("remote_port_id_subtype")+") AS port_sub, "+last("remote_port_description")+" AS port_desc,"+
		" "+last("remote_system_name")+" AS sys_name, "+last("remote_system_description")+" AS sys_desc,"+
		" "+last("remote_platform")+" AS platform, "+keyOf(last("remote_management_address"))+" AS mgmt,"+
		" "+last("remote_capabilities")+" AS caps, "+last("remote_native_vlan")+" AS vlan,"+
		" "+keyOf(last("remote_exporter_address"))+" AS rk, toUInt32("+last("first_seen")+") AS first,"+
		" toUInt32("+last("last_seen")+") AS seen, "+last("gone")+" AS g, toUInt32(max(updated_at)) AS up"+
		" FROM neighbors WHERE has(?, toString(tenant))", f.tenants)
	if f.key != "" {
		b.add(" AND "+keyOf("exporter_address")+" = ?", f.key)
	}
	b.add(" GROUP BY tenant, exporter_address, local_if_index, protocol, remote_chassis_id) WHERE t = ").addSQL(h.match.tenantOf("k"))
	if !f.includeGone {
		b.add(" AND g = 0")
	}
	if f.protocol != "" {
		b.add(" AND proto = ?", f.protocol)
	}
	if f.touching != "" {
		b.add(" AND (k = ? OR rk = ?)", f.touching, f.touching)
	}
	b.add(fmt.Sprintf(" ORDER BY t, k, idx, proto, chassis LIMIT %d", f.limit))
	q, args := b.sql()
	var out []neighborRow
	err := dbapi.Each(ctx, h.deps.DB, q, args, func(r dbapi.Rows) error {
		var n neighborRow
		var mgmt string
		var gone uint8
		var first, seen, up uint32
		rm := &n.Remote
		if err := r.Scan(&n.tenant, &n.key, &n.LocalInterface.IfIndex, &n.LocalInterface.Name, &n.Protocol, &rm.ChassisID, &rm.ChassisIDSubtype,
			&rm.PortID, &rm.PortIDSubtype, &rm.PortDescription, &rm.SystemName, &rm.SystemDescription, &rm.Platform, &mgmt, &rm.Capabilities,
			&rm.NativeVLAN, &n.remoteKey, &first, &seen, &gone, &up); err != nil {
			return err
		}
		if a, ok := keyAddr(mgmt); ok && !a.IsUnspecified() {
			s := a.String()
			rm.ManagementAddress = &s
		}
		if rm.Capabilities == nil {
			rm.Capabilities = []string{}
		}
		n.Gone, n.FirstSeen, n.LastSeen, n.UpdatedAt = gone != 0, timeOf(first), timeOf(seen), timeOf(up)
		out = append(out, n)
		return nil
	})
	return out, err
}

// linkedAddr is the exporter a neighbour row names as its remote side,
// if it is one of the row's own tenant: a link to another tenant's
// exporter is not shown as one (the remote side stays a chassis).
func (h *Handlers) linkedAddr(n neighborRow) (netip.Addr, bool) {
	a, ok := keyAddr(n.remoteKey)
	if !ok || a.IsUnspecified() || h.deps.Tenants.Match(a).Tenant != n.tenant {
		return netip.Addr{}, false
	}
	return a, true
}

// exporterNames names exporters given as tenant/key pairs: the
// configured entry's name when the address is that tenant's, else the
// name of the latest exporter_attributes row of the same tenant.
func (h *Handlers) exporterNames(ctx context.Context, pairs []string) (map[string]string, error) {
	names := map[string]string{}
	if len(pairs) == 0 {
		return names, nil
	}
	pair := "concat(toString(tenant), '/', " + keyOf("exporter_address") + ")"
	err := dbapi.Each(ctx, h.deps.DB, "SELECT "+pair+" AS p, argMax(name, updated_at) FROM exporter_attributes WHERE has(?, p) GROUP BY p",
		[]any{pairs}, func(r dbapi.Rows) error {
			var p, n string
			err := r.Scan(&p, &n)
			names[p] = n
			return err
		})
	if err != nil {
		return nil, err
	}
	for _, p := range pairs {
		i := strings.LastIndexByte(p, '/') // keys have no "/"
		tn := p[:max(i, 0)]
		a, ok := keyAddr(p[i+1:])
		if !ok {
			continue
		}
		if m := h.deps.Tenants.Match(a); m.Tenant == tn {
			if e, ok := h.entry(m.Entry); ok && e.Name != "" {
				names[p] = e.Name
			}
		}
	}
	return names, nil
}

// maxNeighbors bounds the neighbours of one exporter an answer holds: a
// chassis of a few hundred ports with a few neighbours each is far below.
const maxNeighbors = 10000

func (h *Handlers) exporterNeighbors(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), h.cfg.QueryTimeout)
	defer cancel()
	q := api.ParseQuery(c, "protocol", "include_gone")
	f := neighborFilter{limit: maxNeighbors}
	f.protocol = protocolParam(q)
	f.includeGone = boolParam(q, "include_gone")
	k, ok := h.exporterOf(c, ctx, q)
	if !ok {
		return
	}
	a, _ := keyAddr(k.key)
	f.tenants, f.key = []string{k.tenant}, k.key
	rows, err := h.neighborRows(ctx, f)
	if err != nil {
		h.unavailable(c, "neighbors", err)
		return
	}
	list := NeighborList{Exporter: a.String(), Tenant: k.tenant, Neighbors: make([]Neighbor, len(rows))}
	var pairs []string
	for _, n := range rows {
		if la, ok := h.linkedAddr(n); ok {
			pairs = append(pairs, n.tenant+"/"+addrKey(la))
		}
	}
	names, err := h.exporterNames(ctx, pairs)
	if err != nil {
		h.unavailable(c, "neighbors", err)
		return
	}
	for i, n := range rows {
		list.Neighbors[i] = n.Neighbor
		if la, ok := h.linkedAddr(n); ok {
			list.Neighbors[i].LinkedExporter = &LinkedExporter{Address: la.String(), Name: names[n.tenant+"/"+addrKey(la)]}
		}
	}
	api.JSONWithETag(c, http.StatusOK, list)
}

// protocolParam reads the protocol filter: lldp, cdp, or none for both.
func protocolParam(q *api.Query) string {
	ps := q.Enum("protocol", neighborProtocols...)
	if len(ps) > 1 {
		q.Failf("protocol: give one of %v, or none for both", neighborProtocols)
		return ""
	}
	if len(ps) == 1 {
		return ps[0]
	}
	return ""
}

// boolParam reads true or false; absent is false.
func boolParam(q *api.Query, name string) bool {
	switch v := q.String(name); v {
	case "", "false":
		return false
	case "true":
		return true
	default:
		q.Failf("%s: %q is neither true nor false", name, truncate(v))
		return false
	}
}
