package inventoryapi

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// Exporter is one exporter as the API shows it.
type Exporter struct {
	Address        string            `json:"address"`
	Tenant         string            `json:"tenant"`
	Name           string            `json:"name"`
	SysName        string            `json:"sys_name"`
	Site           string            `json:"site"`
	Role           string            `json:"role"`
	Discovered     bool              `json:"discovered"`
	Protocols      []string          `json:"protocols"`
	FirstSeen      *time.Time        `json:"first_seen"`
	LastSeen       *time.Time        `json:"last_seen"`
	Datagrams      uint64            `json:"datagrams"`
	Flows          uint64            `json:"flows"`
	Bytes          uint64            `json:"bytes"`
	Drops          map[string]uint64 `json:"drops"`
	Templates      uint32            `json:"templates"`
	Sequence       Sequence          `json:"sequence"`
	StatsUpdatedAt *time.Time        `json:"stats_updated_at"`
	SNMP           SNMPStatus        `json:"snmp"`
}

// Sequence is the sequence accounting of an exporter, over all its
// streams and per stream.
type Sequence struct {
	Expected  uint64   `json:"expected"`
	Lost      uint64   `json:"lost"`
	LossRatio float64  `json:"loss_ratio"`
	Streams   []Stream `json:"streams"`
}

// Stream is one sequence stream (observation domain, sFlow agent).
type Stream struct {
	Protocol          string  `json:"protocol"`
	ObservationDomain uint32  `json:"observation_domain"`
	LastSequence      uint32  `json:"last_sequence"`
	Expected          uint64  `json:"expected"`
	Lost              uint64  `json:"lost"`
	LossRatio         float64 `json:"loss_ratio"`
	Resets            uint64  `json:"resets"`
	Restarts          uint64  `json:"restarts"`
	SourcePort        uint16  `json:"source_port"`
}

// SNMP polling states.
const (
	stateOff         = "off"          // not configured
	statePending     = "pending"      // configured, no poll recorded
	stateOK          = "ok"           // the latest poll succeeded
	stateFailing     = "failing"      // the latest polls failed
	stateCircuitOpen = "circuit_open" // failing, and not polled until circuit_open_until
)

// SNMPStatus is what enrichment's poller recorded (exporter_polls) and
// knows (interfaces) of an exporter.
type SNMPStatus struct {
	Configured          bool       `json:"configured"`
	State               string     `json:"state"`
	LastSuccess         *time.Time `json:"last_success"`
	LastFailure         *time.Time `json:"last_failure"`
	LastFailedKind      string     `json:"last_failed_kind"`
	LastReason          string     `json:"last_reason"`
	LastError           string     `json:"last_error"`
	ConsecutiveFailures uint32     `json:"consecutive_failures"`
	Failures            uint64     `json:"failures"`
	CircuitOpenUntil    *time.Time `json:"circuit_open_until"`
	Interfaces          uint64     `json:"interfaces"`
	UpdatedAt           *time.Time `json:"updated_at"`
}

// exporterKey is a visible exporter: its address key, tenant and entry.
type exporterKey struct {
	key    string
	tenant string
	entry  int
}

func (k exporterKey) pair() string { return k.tenant + "/" + k.key }

// exporterFilter selects exporters; the tenants are required.
type exporterFilter struct {
	tenants []string
	key     string // one address
	after   string // keys after this one
	q       string // name substring or address prefix
	limit   int
}

// exporterKeys lists the visible exporters: every address the collector
// counted, or enrichment polled for the tenant it matches, ordered by
// address. Names are those of their latest exporter_attributes row (read
// with argMax: the name filter must see the latest name only).
func (h *Handlers) exporterKeys(ctx context.Context, f exporterFilter) ([]exporterKey, error) {
	b := h.keysQuery(f)
	b.add(fmt.Sprintf(" ORDER BY k LIMIT %d", f.limit))
	q, args := b.sql()
	var out []exporterKey
	err := dbapi.Each(ctx, h.deps.DB, q, args, func(r dbapi.Rows) error {
		var k exporterKey
		var e int32
		if err := r.Scan(&k.key, &k.tenant, &e); err != nil {
			return err
		}
		k.entry = int(e)
		out = append(out, k)
		return nil
	})
	return out, err
}

// keysQuery selects the keys (k), tenants (t) and entries (e) of the
// exporters f selects, unordered.
func (h *Handlers) keysQuery(f exporterFilter) *builder {
	addrKey := keyOf("exporter_address")
	b := &builder{}
	b.add("SELECT k, t, e FROM (SELECT k, ").addSQL(h.match.tenantOf("k")).add(" AS t, ").addSQL(h.match.entryOf("k")).
		add(" AS e, arrayElement(?, e + 2) AS cname, name, sys_name FROM (", h.entryNames()).
		add("SELECT k, max(n) AS name, max(s) AS sys_name FROM (").
		add("SELECT "+addrKey+" AS k, '' AS n, '' AS s FROM exporters UNION ALL ").
		add("SELECT "+addrKey+" AS k, argMax(name, updated_at) AS n, argMax(sys_name, updated_at) AS s FROM exporter_attributes WHERE toString(tenant) = ").
		addSQL(h.match.tenantOf(addrKey)).add(" GROUP BY k UNION ALL ").
		add("SELECT "+addrKey+" AS k, '' AS n, '' AS s FROM exporter_polls WHERE toString(tenant) = ").addSQL(h.match.tenantOf(addrKey)).
		add(") GROUP BY k)) WHERE has(?, t)", f.tenants)
	if f.key != "" {
		b.add(" AND k = ?", f.key)
	}
	if f.after != "" {
		b.add(" AND k > ?", f.after)
	}
	if f.q != "" {
		lower := strings.ToLower(f.q)
		b.add(" AND (positionCaseInsensitiveUTF8(name, ?) > 0 OR positionCaseInsensitiveUTF8(sys_name, ?) > 0"+
			" OR positionCaseInsensitiveUTF8(cname, ?) > 0 OR startsWith(IPv6NumToString(toFixedString(unhex(k), 16)), ?)"+
			" OR startsWith(IPv6NumToString(toFixedString(unhex(k), 16)), ?))", f.q, f.q, f.q, lower, "::ffff:"+lower)
	}
	return b
}

// entryNames is the configured name of each entry, in the layout of
// matcher.names: none for discovered exporters first.
func (h *Handlers) entryNames() []string {
	out := make([]string, 1, len(h.deps.Entries)+1)
	for _, e := range h.deps.Entries {
		out = append(out, e.Name)
	}
	for len(out) < len(h.match.names) {
		out = append(out, "")
	}
	return out
}

// exporters completes the keys into exporters: the collector's latest
// statistics, the latest attributes and polling status of the key's
// tenant, the interfaces known.
func (h *Handlers) exporters(ctx context.Context, keys []exporterKey) ([]Exporter, error) {
	out := make([]Exporter, len(keys))
	byKey := map[string]*Exporter{}
	var ks, pairs []string
	for i, k := range keys {
		a, _ := keyAddr(k.key)
		e := &out[i]
		*e = Exporter{Address: a.String(), Tenant: k.tenant, Discovered: k.entry < 0, Protocols: []string{},
			Drops: map[string]uint64{}, Sequence: Sequence{Streams: []Stream{}}}
		if ent, ok := h.entry(k.entry); ok {
			e.Name, e.Site, e.Role, e.SNMP.Configured = ent.Name, ent.Site, ent.Role, ent.SNMP
		}
		byKey[k.key] = e
		ks, pairs = append(ks, k.key), append(pairs, k.pair())
	}
	if len(keys) == 0 {
		return out, nil
	}
	for _, step := range []func(context.Context, map[string]*Exporter, []string, []string) error{
		h.readStats, h.readAttributes, h.readPolls, h.readInterfaceCounts,
	} {
		if err := step(ctx, byKey, ks, pairs); err != nil {
			return nil, err
		}
	}
	for i := range out {
		out[i].SNMP.State = h.state(&out[i].SNMP, h.deps.Entries == nil)
	}
	return out, nil
}

func (h *Handlers) state(s *SNMPStatus, unknownConfig bool) string {
	if unknownConfig {
		s.Configured = s.UpdatedAt != nil
	}
	switch {
	case !s.Configured:
		return stateOff
	case s.UpdatedAt == nil:
		return statePending
	case s.ConsecutiveFailures == 0:
		return stateOK
	case s.CircuitOpenUntil != nil && s.CircuitOpenUntil.After(h.now()):
		return stateCircuitOpen
	}
	return stateFailing
}

// readStats reads each collector's latest snapshot of each address and
// adds up those of the collectors that still write: several collectors may
// hear one exporter (see collector.name), and their streams are different
// transport sessions. The statistics are the address's, hence its
// tenant's.
func (h *Handlers) readStats(ctx context.Context, byKey map[string]*Exporter, keys, _ []string) error {
	q := "SELECT " + keyOf("exporter_address") + ` AS k, argMax(protocols, updated_at),
		toUInt32(argMax(first_seen, updated_at)), toUInt32(argMax(last_seen, updated_at)),
		argMax(datagrams, updated_at), argMax(flows, updated_at), argMax(bytes, updated_at),
		argMax(drop_reasons, updated_at), argMax(drop_counts, updated_at), argMax(templates, updated_at),
		argMax(sequence_expected, updated_at), argMax(sequence_lost, updated_at),
		argMax(streams.protocol, updated_at), argMax(streams.observation_domain, updated_at), argMax(streams.last_sequence, updated_at),
		argMax(streams.expected, updated_at), argMax(streams.lost, updated_at), argMax(streams.resets, updated_at),
		argMax(streams.restarts, updated_at), argMax(streams.source_port, updated_at), toUInt32(max(updated_at)) AS up
		FROM exporters WHERE has(?, k) GROUP BY k, collector ORDER BY k, up DESC`
	snaps := map[string][]statsSnapshot{}
	err := dbapi.Each(ctx, h.deps.DB, q, []any{keys}, func(r dbapi.Rows) error {
		var (
			k                          string
			s                          statsSnapshot
			stProto                    []string
			stExp, stLost, stR, stRest []uint64
			stPort                     []uint16
			stDom, stSeq               []uint32
		)
		if err := r.Scan(&k, &s.protocols, &s.first, &s.last, &s.datagrams, &s.flows, &s.bytes, &s.reasons, &s.counts, &s.templates,
			&s.expected, &s.lost, &stProto, &stDom, &stSeq, &stExp, &stLost, &stR, &stRest, &stPort, &s.updated); err != nil {
			return err
		}
		for i := range stProto {
			if i >= len(stDom) || i >= len(stSeq) || i >= len(stExp) || i >= len(stLost) || i >= len(stR) || i >= len(stRest) || i >= len(stPort) {
				break
			}
			s.streams = append(s.streams, Stream{Protocol: stProto[i], ObservationDomain: stDom[i], LastSequence: stSeq[i],
				Expected: stExp[i], Lost: stLost[i], LossRatio: ratio(stLost[i], stExp[i]), Resets: stR[i], Restarts: stRest[i], SourcePort: stPort[i]})
		}
		snaps[k] = append(snaps[k], s)
		return nil
	})
	for k, ss := range snaps {
		if e := byKey[k]; e != nil {
			e.addSnapshots(ss)
		}
	}
	return err
}

// staleSnapshot: a collector's snapshot of an exporter this much older
// than the newest one is of a collector that stopped (or was renamed),
// and no longer counts. Live collectors write every 30 s.
const staleSnapshot = 10 * time.Minute

// statsSnapshot is one collector's latest snapshot of an exporter.
type statsSnapshot struct {
	protocols               []string
	first, last, updated    uint32
	datagrams, flows, bytes uint64
	reasons                 []string
	counts                  []uint64
	templates               uint32
	expected, lost          uint64
	streams                 []Stream
}

// addSnapshots adds up the snapshots, newest first, of the collectors
// that still write.
func (e *Exporter) addSnapshots(ss []statsSnapshot) {
	newest := ss[0].updated
	protocols := map[string]bool{}
	for _, s := range ss {
		if int64(newest)-int64(s.updated) > int64(staleSnapshot/time.Second) {
			continue
		}
		for _, p := range s.protocols {
			protocols[p] = true
		}
		e.Datagrams, e.Flows, e.Bytes, e.Templates = e.Datagrams+s.datagrams, e.Flows+s.flows, e.Bytes+s.bytes, e.Templates+s.templates
		if t := timeOf(s.first); t != nil && (e.FirstSeen == nil || t.Before(*e.FirstSeen)) {
			e.FirstSeen = t
		}
		if t := timeOf(s.last); t != nil && (e.LastSeen == nil || t.After(*e.LastSeen)) {
			e.LastSeen = t
		}
		for i, reason := range s.reasons {
			if i < len(s.counts) {
				e.Drops[reason] += s.counts[i]
			}
		}
		e.Sequence.Expected += s.expected
		e.Sequence.Lost += s.lost
		e.Sequence.Streams = append(e.Sequence.Streams, s.streams...)
	}
	e.Protocols = append([]string{}, slices.Sorted(maps.Keys(protocols))...)
	e.StatsUpdatedAt = timeOf(newest)
	e.Sequence.LossRatio = ratio(e.Sequence.Lost, e.Sequence.Expected)
}

// readAttributes reads the latest exporter_attributes row of each
// (tenant, address): the configured name, site and role win over it,
// being current.
func (h *Handlers) readAttributes(ctx context.Context, byKey map[string]*Exporter, _, pairs []string) error {
	q := "SELECT " + keyOf("exporter_address") + ` AS k, argMax(name, updated_at), argMax(sys_name, updated_at),
		argMax(site, updated_at), argMax(role, updated_at)
		FROM exporter_attributes WHERE has(?, concat(toString(tenant), '/', k)) GROUP BY tenant, k`
	return dbapi.Each(ctx, h.deps.DB, q, []any{pairs}, func(r dbapi.Rows) error {
		var k, name, sys, site, role string
		if err := r.Scan(&k, &name, &sys, &site, &role); err != nil {
			return err
		}
		if e := byKey[k]; e != nil {
			e.SysName = sys
			if e.Name == "" {
				e.Name = name
			}
			if e.Site == "" {
				e.Site = site
			}
			if e.Role == "" {
				e.Role = role
			}
		}
		return nil
	})
}

func (h *Handlers) readPolls(ctx context.Context, byKey map[string]*Exporter, _, pairs []string) error {
	q := "SELECT " + keyOf("exporter_address") + ` AS k, toUInt32(argMax(last_success, updated_ms)), toUInt32(argMax(last_failure, updated_ms)),
		argMax(last_failed_kind, updated_ms), argMax(last_reason, updated_ms), argMax(last_error, updated_ms),
		argMax(consecutive_failures, updated_ms), argMax(failures, updated_ms), toUInt32(argMax(circuit_open_until, updated_ms)),
		toUInt32(argMax(updated_at, updated_ms))
		FROM exporter_polls WHERE has(?, concat(toString(tenant), '/', k)) GROUP BY tenant, k`
	return dbapi.Each(ctx, h.deps.DB, q, []any{pairs}, func(r dbapi.Rows) error {
		var k string
		var success, failure, open, updated uint32
		var s SNMPStatus
		if err := r.Scan(&k, &success, &failure, &s.LastFailedKind, &s.LastReason, &s.LastError, &s.ConsecutiveFailures, &s.Failures, &open, &updated); err != nil {
			return err
		}
		if e := byKey[k]; e != nil {
			s.Configured, s.Interfaces = e.SNMP.Configured, e.SNMP.Interfaces
			s.LastSuccess, s.LastFailure, s.CircuitOpenUntil, s.UpdatedAt = timeOf(success), timeOf(failure), timeOf(open), timeOf(updated)
			e.SNMP = s
		}
		return nil
	})
}

func (h *Handlers) readInterfaceCounts(ctx context.Context, byKey map[string]*Exporter, _, pairs []string) error {
	q := "SELECT " + keyOf("exporter_address") + ` AS k, uniqExact(if_index)
		FROM interfaces WHERE has(?, concat(toString(tenant), '/', k)) GROUP BY tenant, k`
	return dbapi.Each(ctx, h.deps.DB, q, []any{pairs}, func(r dbapi.Rows) error {
		var k string
		var n uint64
		if err := r.Scan(&k, &n); err != nil {
			return err
		}
		if e := byKey[k]; e != nil {
			e.SNMP.Interfaces = n
		}
		return nil
	})
}

// ExporterList is the answer of GET /exporters.
type ExporterList struct {
	Exporters     []Exporter `json:"exporters"`
	NextPageToken string     `json:"next_page_token"`
}

const (
	defaultPageSize = 50
	maxPageSize     = 1000
)

func (h *Handlers) listExporters(c *gin.Context) {
	q := api.ParseQuery(c, "tenant", "q", "page_size", "page_token")
	tenantParam, search := q.String("tenant"), strings.TrimSpace(q.String("q"))
	size := q.Int("page_size", defaultPageSize, 1, maxPageSize)
	filters := fmt.Sprintf("tenant=%q q=%q", tenantParam, search)
	var after string
	if tok := q.String("page_token"); tok != "" {
		if err := h.pages.Decode(tok, api.PrincipalOf(c), filters, &after); err != nil {
			q.Failf("%v", err)
		}
	}
	if err := q.Err(); err != nil {
		api.BadRequest(c, err)
		return
	}
	tenants, ok := h.scope(c, tenantParam)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), h.cfg.QueryTimeout)
	defer cancel()
	list := ExporterList{Exporters: []Exporter{}}
	if len(tenants) > 0 {
		keys, err := h.exporterKeys(ctx, exporterFilter{tenants: tenants, after: after, q: search, limit: size + 1})
		if err != nil {
			h.unavailable(c, "exporters", err)
			return
		}
		if len(keys) > size {
			keys = keys[:size]
			if list.NextPageToken, err = h.pages.Encode(api.PrincipalOf(c), filters, keys[size-1].key); err != nil {
				h.unavailable(c, "page token", err)
				return
			}
		}
		if list.Exporters, err = h.exporters(ctx, keys); err != nil {
			h.unavailable(c, "exporters", err)
			return
		}
	}
	api.JSONWithETag(c, http.StatusOK, list)
}

// parseAddr reads the {addr} of a path: an IPv4 or IPv6 address, no zone.
func parseAddr(c *gin.Context) (netip.Addr, bool) {
	s := c.Param("addr")
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		api.WriteError(c, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("%q is not an IPv4 or IPv6 address", truncate(s)))
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// visibleExporter finds the exporter at the path's address among those
// the principal sees; it has answered when it returns false.
func (h *Handlers) visibleExporter(c *gin.Context, ctx context.Context, allowed ...string) (exporterKey, bool) {
	return h.exporterOf(c, ctx, api.ParseQuery(c, allowed...))
}

// exporterOf is visibleExporter for a handler that reads parameters of
// its own: q has them read, and its errors answer 400.
func (h *Handlers) exporterOf(c *gin.Context, ctx context.Context, q *api.Query) (exporterKey, bool) {
	a, ok := parseAddr(c)
	if !ok {
		return exporterKey{}, false
	}
	if err := q.Err(); err != nil {
		api.BadRequest(c, err)
		return exporterKey{}, false
	}
	tenants := api.PrincipalOf(c).Visible(h.deps.Tenants.Names())
	if len(tenants) == 0 {
		api.WriteError(c, http.StatusNotFound, api.CodeNotFound, "no such exporter")
		return exporterKey{}, false
	}
	keys, err := h.exporterKeys(ctx, exporterFilter{tenants: tenants, key: addrKey(a), limit: 1})
	if err != nil {
		h.unavailable(c, "exporter", err)
		return exporterKey{}, false
	}
	if len(keys) == 0 {
		api.WriteError(c, http.StatusNotFound, api.CodeNotFound, "no such exporter")
		return exporterKey{}, false
	}
	return keys[0], true
}

func (h *Handlers) getExporter(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), h.cfg.QueryTimeout)
	defer cancel()
	k, ok := h.visibleExporter(c, ctx)
	if !ok {
		return
	}
	xs, err := h.exporters(ctx, []exporterKey{k})
	if err != nil {
		h.unavailable(c, "exporter", err)
		return
	}
	api.JSONWithETag(c, http.StatusOK, xs[0])
}
