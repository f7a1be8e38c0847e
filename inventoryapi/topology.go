package inventoryapi

import (
	"cmp"
	"context"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/api"
)

// Topology is the graph of what the tenants' exporters hear over LLDP
// and CDP: the exporters and the remote chassis, and the links between.
type Topology struct {
	Nodes []TopologyNode `json:"nodes"`
	Links []TopologyLink `json:"links"`
	// Truncated: there were more than max_links links; those after the
	// first max_links (in the links' order) and the nodes only they
	// reach are left out.
	Truncated bool `json:"truncated"`
}

// TopologyNode is an exporter, or a remote chassis that is none of the
// tenant's exporters.
type TopologyNode struct {
	// ID is stable: tenant/exporter/ADDRESS or tenant/chassis/CHASSIS_ID.
	ID       string `json:"id"`
	Tenant   string `json:"tenant"`
	Exporter bool   `json:"exporter"`
	// Address of an exporter; null for a chassis.
	Address *string `json:"address"`
	// Name: an exporter's name; a chassis's system name.
	Name string `json:"name"`
	// What neighbours announce of the node (for an exporter: its
	// neighbours that are exporters too); from the latest observation.
	ChassisID         string   `json:"chassis_id"`
	SystemName        string   `json:"system_name"`
	Platform          string   `json:"platform"`
	ManagementAddress *string  `json:"management_address"`
	Capabilities      []string `json:"capabilities"`
	pair              string   // tenant/key of an exporter
}

// TopologyLink is one neighbour relation: seen from one end, or from
// both when both are exporters that hear each other (then one link).
type TopologyLink struct {
	From     LinkEnd    `json:"from"`
	To       LinkEnd    `json:"to"`
	Protocol string     `json:"protocol"`
	LastSeen *time.Time `json:"last_seen"`
	// Observations: 1 (from's exporter hears to) or 2 (each end hears
	// the other).
	Observations int `json:"observations"`
}

// LinkEnd is one end of a link: its own view of its interface when it
// reported the link (if_index, if_name), and the other end's view of its
// port (port_id, port_description).
type LinkEnd struct {
	Node            string  `json:"node"`
	IfIndex         *uint32 `json:"if_index"`
	IfName          string  `json:"if_name"`
	PortID          string  `json:"port_id"`
	PortDescription string  `json:"port_description"`
}

const (
	defaultTopologyLinks = 2000
	maxTopologyLinks     = 10000
)

func (h *Handlers) topology(c *gin.Context) {
	q := api.ParseQuery(c, "tenant", "exporter", "protocol", "max_links")
	tenantParam, exporter := q.String("tenant"), q.String("exporter")
	limit := q.Int("max_links", defaultTopologyLinks, 1, maxTopologyLinks)
	f := neighborFilter{limit: 2*limit + 1}
	f.protocol = protocolParam(q)
	var ex netip.Addr
	if exporter != "" {
		a, err := netip.ParseAddr(exporter)
		if err != nil || a.Zone() != "" {
			q.Failf("exporter: %q is not an IPv4 or IPv6 address", truncate(exporter))
		}
		ex = a.Unmap()
	}
	if err := q.Err(); err != nil {
		api.BadRequest(c, err)
		return
	}
	var ok bool
	if f.tenants, ok = h.scope(c, tenantParam); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), h.cfg.QueryTimeout)
	defer cancel()
	top := Topology{Nodes: []TopologyNode{}, Links: []TopologyLink{}}
	if ex.IsValid() && len(f.tenants) > 0 {
		keys, err := h.exporterKeys(ctx, exporterFilter{tenants: f.tenants, key: addrKey(ex), limit: 1})
		if err != nil {
			h.unavailable(c, "topology", err)
			return
		}
		if len(keys) == 0 {
			api.WriteError(c, http.StatusNotFound, api.CodeNotFound, "no such exporter")
			return
		}
		f.tenants, f.touching = []string{keys[0].tenant}, keys[0].key
	}
	if len(f.tenants) > 0 {
		rows, err := h.neighborRows(ctx, f)
		if err == nil {
			top, err = h.graph(ctx, rows, limit)
		}
		if err != nil {
			h.unavailable(c, "topology", err)
			return
		}
	}
	api.JSONWithETag(c, http.StatusOK, top)
}

// graph builds the topology of the rows (read up to 2*limit+1: two
// observations make one link at most).
func (h *Handlers) graph(ctx context.Context, rows []neighborRow, limit int) (Topology, error) {
	top := Topology{Nodes: []TopologyNode{}, Links: []TopologyLink{}}
	if len(rows) > 2*limit {
		rows, top.Truncated = rows[:2*limit], true
	}
	g := &graphBuilder{h: h, nodes: map[string]*TopologyNode{}, seen: map[string]time.Time{}}
	top.Links = g.links(rows)
	slices.SortFunc(top.Links, compareLinks)
	if len(top.Links) > limit {
		top.Links, top.Truncated = top.Links[:limit], true
	}
	kept := map[string]bool{}
	for _, l := range top.Links {
		kept[l.From.Node], kept[l.To.Node] = true, true
	}
	ids := slices.Sorted(maps.Keys(kept))
	var pairs []string
	for _, id := range ids {
		if n := g.nodes[id]; n.Exporter {
			pairs = append(pairs, n.pair)
		}
	}
	names, err := h.exporterNames(ctx, pairs)
	if err != nil {
		return top, err
	}
	for _, id := range ids {
		n := *g.nodes[id]
		if n.Exporter {
			n.Name = names[n.pair]
		}
		top.Nodes = append(top.Nodes, n)
	}
	return top, nil
}

func compareLinks(a, b TopologyLink) int {
	return cmp.Or(strings.Compare(a.From.Node, b.From.Node), cmp.Compare(deref(a.From.IfIndex), deref(b.From.IfIndex)),
		strings.Compare(a.To.Node, b.To.Node), cmp.Compare(deref(a.To.IfIndex), deref(b.To.IfIndex)),
		strings.Compare(a.Protocol, b.Protocol), strings.Compare(a.To.PortID, b.To.PortID))
}

func deref(p *uint32) int64 {
	if p == nil {
		return -1
	}
	return int64(*p)
}

// graphBuilder gathers the nodes of the rows and pairs the observations
// of links between two exporters.
type graphBuilder struct {
	h     *Handlers
	nodes map[string]*TopologyNode
	seen  map[string]time.Time // of the observation each node's attributes come from
}

// obs is a neighbour row with its two ends' nodes.
type obs struct {
	neighborRow
	from, to string
}

func (g *graphBuilder) links(rows []neighborRow) []TopologyLink {
	out := []TopologyLink{}
	between := map[[3]string][]obs{} // (from, to, protocol) between exporters
	for _, r := range rows {
		o := obs{neighborRow: r, from: g.exporterNode(r.tenant, r.key)}
		if la, ok := g.h.linkedAddr(r); ok {
			o.to = g.exporterNode(r.tenant, addrKey(la))
			g.announce(o.to, r)
			between[[3]string{o.from, o.to, r.Protocol}] = append(between[[3]string{o.from, o.to, r.Protocol}], o)
			continue
		}
		o.to = g.chassisNode(r)
		out = append(out, single(o))
	}
	for k, ab := range between {
		if k[0] > k[1] {
			continue // paired from the other side, or below
		}
		ba := between[[3]string{k[1], k[0], k[2]}]
		out = append(out, pairLinks(ab, ba)...)
	}
	for k, ba := range between {
		if k[0] > k[1] && len(between[[3]string{k[1], k[0], k[2]}]) == 0 {
			out = append(out, pairLinks(nil, ba)...)
		}
	}
	return out
}

// pairLinks makes the links of the observations each way between two
// exporters: an observation whose remote port names the other's local
// interface (or the other way round) is the other's of one link; when
// one observation is left each way, they are one link whatever the port
// names (the usual case: one cable, port IDs as MACs or locally
// assigned).
func pairLinks(ab, ba []obs) []TopologyLink {
	var out []TopologyLink
	used := make([]bool, len(ba))
	var leftA []obs
	for _, a := range ab {
		j := 0
		for j < len(ba) && (used[j] || !(namesPort(a, ba[j]) || namesPort(ba[j], a))) {
			j++
		}
		if j == len(ba) {
			leftA = append(leftA, a)
			continue
		}
		used[j] = true
		out = append(out, both(a, ba[j]))
	}
	var leftB []obs
	for j, b := range ba {
		if !used[j] {
			leftB = append(leftB, b)
		}
	}
	if len(leftA) == 1 && len(leftB) == 1 {
		return append(out, both(leftA[0], leftB[0]))
	}
	for _, o := range append(leftA, leftB...) {
		out = append(out, single(o))
	}
	return out
}

// namesPort: a's remote port is b's local interface (by name, or by
// ifIndex for LLDP's locally assigned port IDs).
func namesPort(a, b obs) bool {
	name, idx := b.LocalInterface.Name, strconv.FormatUint(uint64(b.LocalInterface.IfIndex), 10)
	return (name != "" && (a.Remote.PortID == name || a.Remote.PortDescription == name)) || a.Remote.PortID == idx
}

func single(o obs) TopologyLink {
	idx := o.LocalInterface.IfIndex
	return TopologyLink{
		From:     LinkEnd{Node: o.from, IfIndex: &idx, IfName: o.LocalInterface.Name},
		To:       LinkEnd{Node: o.to, PortID: o.Remote.PortID, PortDescription: o.Remote.PortDescription},
		Protocol: o.Protocol, LastSeen: o.LastSeen, Observations: 1,
	}
}

// both is one link of two observations, a (from's) and b (to's),
// ordered by node so that the answer does not depend on which came
// first.
func both(a, b obs) TopologyLink {
	if a.from > b.from {
		a, b = b, a
	}
	ai, bi := a.LocalInterface.IfIndex, b.LocalInterface.IfIndex
	last := a.LastSeen
	if last == nil || (b.LastSeen != nil && b.LastSeen.After(*last)) {
		last = b.LastSeen
	}
	return TopologyLink{
		From:     LinkEnd{Node: a.from, IfIndex: &ai, IfName: a.LocalInterface.Name, PortID: b.Remote.PortID, PortDescription: b.Remote.PortDescription},
		To:       LinkEnd{Node: b.from, IfIndex: &bi, IfName: b.LocalInterface.Name, PortID: a.Remote.PortID, PortDescription: a.Remote.PortDescription},
		Protocol: a.Protocol, LastSeen: last, Observations: 2,
	}
}

func (g *graphBuilder) exporterNode(tenant, key string) string {
	a, _ := keyAddr(key)
	id := tenant + "/exporter/" + a.String()
	if g.nodes[id] == nil {
		s := a.String()
		g.nodes[id] = &TopologyNode{ID: id, Tenant: tenant, Exporter: true, Address: &s, Capabilities: []string{}, pair: tenant + "/" + key}
	}
	return id
}

func (g *graphBuilder) chassisNode(r neighborRow) string {
	id := r.tenant + "/chassis/" + r.Remote.ChassisID
	if g.nodes[id] == nil {
		g.nodes[id] = &TopologyNode{ID: id, Tenant: r.tenant, Capabilities: []string{}}
	}
	g.announce(id, r)
	if n := g.nodes[id]; !n.Exporter {
		n.Name = n.SystemName
	}
	return id
}

// announce sets what r says of its remote side on node id, when r is
// the latest observation of it so far.
func (g *graphBuilder) announce(id string, r neighborRow) {
	var at time.Time
	if r.LastSeen != nil {
		at = *r.LastSeen
	}
	if prev, ok := g.seen[id]; ok && !at.After(prev) {
		return
	}
	g.seen[id] = at
	n := g.nodes[id]
	n.ChassisID, n.SystemName, n.Platform = r.Remote.ChassisID, r.Remote.SystemName, r.Remote.Platform
	n.ManagementAddress, n.Capabilities = r.Remote.ManagementAddress, r.Remote.Capabilities
}
