package inventoryapi

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// Device is one MAC address of a tenant, from the exporters' ARP tables.
type Device struct {
	Tenant       string     `json:"tenant"`
	MAC          string     `json:"mac"`
	Vendor       string     `json:"vendor"`
	FirstSeen    *time.Time `json:"first_seen"`
	LastSeen     *time.Time `json:"last_seen"`
	LastLocation *Location  `json:"last_location"`
	IPHistory    []DeviceIP `json:"ip_history"`
	UpdatedAt    *time.Time `json:"updated_at"`
	exporterKey  string     // of LastLocation
}

// Location is where a device was last seen: the exporter whose ARP
// table had it, and the interface.
type Location struct {
	Exporter     string `json:"exporter"`
	ExporterName string `json:"exporter_name"`
	IfIndex      uint32 `json:"if_index"`
	IfName       string `json:"if_name"`
}

// DeviceIP is one address of a device over time.
type DeviceIP struct {
	Address   string     `json:"address"`
	FirstSeen *time.Time `json:"first_seen"`
	LastSeen  *time.Time `json:"last_seen"`
}

// DeviceList is the answer of GET /devices.
type DeviceList struct {
	Devices       []Device `json:"devices"`
	NextPageToken string   `json:"next_page_token"`
}

// deviceCursor is the position of a page of devices.
type deviceCursor struct {
	Tenant string `json:"t"`
	MAC    uint64 `json:"m"`
}

type deviceFilter struct {
	tenants       []string
	macLo, macHi  uint64
	vendor, ipKey string
	after         *deviceCursor
	limit         int
}

// parseMAC reads a MAC written as six hex octets separated by ":" or
// "-" (aa:bb:cc:dd:ee:ff); with prefix, one to six octets (an OUI is
// three). It returns the range of MACs it stands for.
func parseMAC(s string, prefix bool) (lo, hi uint64, err error) {
	bad := fmt.Errorf("%q is not a MAC address (aa:bb:cc:dd:ee:ff)", truncate(s))
	if prefix {
		bad = fmt.Errorf("mac: %q is not a MAC address or a prefix of one (aa:bb:cc for an OUI, aa:bb:cc:dd:ee:ff)", truncate(s))
	}
	sep := ":"
	if strings.Contains(s, "-") {
		sep = "-"
	}
	parts := strings.Split(s, sep)
	if len(parts) > 6 || (!prefix && len(parts) != 6) {
		return 0, 0, bad
	}
	var v uint64
	for _, p := range parts {
		if len(p) != 2 {
			return 0, 0, bad
		}
		b, err := strconv.ParseUint(p, 16, 8)
		if err != nil {
			return 0, 0, bad
		}
		v = v<<8 | b
	}
	shift := uint(8 * (6 - len(parts)))
	return v << shift, v<<shift | (1<<shift - 1), nil
}

func formatMAC(m uint64) string {
	var b strings.Builder
	for i := 5; i >= 0; i-- {
		fmt.Fprintf(&b, "%02x", byte(m>>(8*i)))
		if i > 0 {
			b.WriteByte(':')
		}
	}
	return b.String()
}

// devices reads the latest row of each device matching f, ordered by
// (tenant, mac). The tenant and MAC, the key, filter before argMax; the
// vendor and addresses, which change, after it.
func (h *Handlers) devices(ctx context.Context, f deviceFilter) ([]Device, error) {
	b := &builder{}
	b.add("SELECT tenant, mac, l_vendor, l_first, l_last, "+keyOf("l_exp")+", l_if, arrayMap(x -> "+keyOf("x")+", l_ha),"+
		" arrayMap(x -> toUInt32(x), l_hf), arrayMap(x -> toUInt32(x), l_hl), l_updated FROM ("+
		"SELECT tenant, mac, argMax(vendor, updated_at) AS l_vendor, toUInt32(argMax(first_seen, updated_at)) AS l_first,"+
		" toUInt32(argMax(last_seen, updated_at)) AS l_last, argMax(last_exporter_address, updated_at) AS l_exp,"+
		" argMax(last_if_index, updated_at) AS l_if, argMax(ip_history.address, updated_at) AS l_ha,"+
		" argMax(ip_history.first_seen, updated_at) AS l_hf, argMax(ip_history.last_seen, updated_at) AS l_hl, toUInt32(max(updated_at)) AS l_updated"+
		" FROM devices WHERE has(?, toString(tenant)) AND mac >= ? AND mac <= ?", f.tenants, f.macLo, f.macHi)
	if f.after != nil {
		b.add(" AND (toString(tenant) > ? OR (toString(tenant) = ? AND mac > ?))", f.after.Tenant, f.after.Tenant, f.after.MAC)
	}
	b.add(" GROUP BY tenant, mac) WHERE 1")
	if f.vendor != "" {
		b.add(" AND positionCaseInsensitiveUTF8(l_vendor, ?) > 0", f.vendor)
	}
	if f.ipKey != "" {
		b.add(" AND has(arrayMap(x -> "+keyOf("x")+", l_ha), ?)", f.ipKey)
	}
	b.add(fmt.Sprintf(" ORDER BY tenant, mac LIMIT %d", f.limit))
	q, args := b.sql()
	out := []Device{}
	err := dbapi.Each(ctx, h.deps.DB, q, args, func(r dbapi.Rows) error {
		var (
			d                    Device
			mac                  uint64
			first, last, updated uint32
			exp                  string
			ifIndex              uint32
			hAddr                []string
			hFirst, hLast        []uint32
		)
		if err := r.Scan(&d.Tenant, &mac, &d.Vendor, &first, &last, &exp, &ifIndex, &hAddr, &hFirst, &hLast, &updated); err != nil {
			return err
		}
		d.MAC, d.FirstSeen, d.LastSeen, d.UpdatedAt = formatMAC(mac), timeOf(first), timeOf(last), timeOf(updated)
		if a, ok := keyAddr(exp); ok && !a.IsUnspecified() {
			d.LastLocation = &Location{Exporter: a.String(), IfIndex: ifIndex}
			d.exporterKey = exp
		}
		d.IPHistory = []DeviceIP{}
		for i, k := range hAddr {
			a, ok := keyAddr(k)
			if !ok || i >= len(hFirst) || i >= len(hLast) {
				continue
			}
			d.IPHistory = append(d.IPHistory, DeviceIP{Address: a.String(), FirstSeen: timeOf(hFirst[i]), LastSeen: timeOf(hLast[i])})
		}
		out = append(out, d)
		return nil
	})
	if err != nil || len(out) == 0 {
		return out, err
	}
	return out, h.locate(ctx, out)
}

// locate names the exporters and interfaces where the devices were last
// seen, from the same tenant's attributes and interfaces.
func (h *Handlers) locate(ctx context.Context, ds []Device) error {
	var exps, ifs []string
	for _, d := range ds {
		if d.LastLocation != nil {
			exps = append(exps, d.Tenant+"/"+d.exporterKey)
			ifs = append(ifs, fmt.Sprintf("%s/%s/%d", d.Tenant, d.exporterKey, d.LastLocation.IfIndex))
		}
	}
	if len(exps) == 0 {
		return nil
	}
	names, err := h.exporterNames(ctx, exps)
	if err != nil {
		return err
	}
	ifNames := map[string]string{}
	pair := "concat(toString(tenant), '/', " + keyOf("exporter_address")
	err = dbapi.Each(ctx, h.deps.DB, "SELECT "+pair+", '/', toString(if_index)) AS p, argMax(if_name, updated_at) FROM interfaces WHERE has(?, p) GROUP BY p",
		[]any{ifs}, func(r dbapi.Rows) error {
			var p, n string
			err := r.Scan(&p, &n)
			ifNames[p] = n
			return err
		})
	if err != nil {
		return err
	}
	for i := range ds {
		l := ds[i].LastLocation
		if l == nil {
			continue
		}
		l.ExporterName = names[ds[i].Tenant+"/"+ds[i].exporterKey]
		l.IfName = ifNames[fmt.Sprintf("%s/%s/%d", ds[i].Tenant, ds[i].exporterKey, l.IfIndex)]
	}
	return nil
}

// deviceFilters reads the search parameters of GET /devices.
func deviceFilters(q *api.Query) (deviceFilter, string) {
	f := deviceFilter{macHi: 1<<48 - 1}
	mac, ip, vendor := q.String("mac"), q.String("ip"), strings.TrimSpace(q.String("vendor"))
	if mac != "" {
		lo, hi, err := parseMAC(mac, true)
		if err != nil {
			q.Failf("%v", err)
		}
		f.macLo, f.macHi = lo, hi
	}
	if ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil || a.Zone() != "" {
			q.Failf("ip: %q is not an IPv4 or IPv6 address", truncate(ip))
		} else {
			f.ipKey = addrKey(a.Unmap())
		}
	}
	f.vendor = vendor
	return f, fmt.Sprintf("mac=%q ip=%q vendor=%q", mac, ip, vendor)
}

func (h *Handlers) listDevices(c *gin.Context) {
	q := api.ParseQuery(c, "tenant", "mac", "ip", "vendor", "page_size", "page_token")
	tenantParam := q.String("tenant")
	f, filters := deviceFilters(q)
	filters += fmt.Sprintf(" tenant=%q", tenantParam)
	size := q.Int("page_size", defaultPageSize, 1, maxPageSize)
	if tok := q.String("page_token"); tok != "" {
		var cur deviceCursor
		if err := h.pages.Decode(tok, api.PrincipalOf(c), filters, &cur); err != nil {
			q.Failf("%v", err)
		}
		f.after = &cur
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
	list := DeviceList{Devices: []Device{}}
	if len(f.tenants) > 0 {
		f.limit = size + 1
		ds, err := h.devices(ctx, f)
		if err != nil {
			h.unavailable(c, "devices", err)
			return
		}
		if len(ds) > size {
			ds = ds[:size]
			last := ds[size-1]
			m, _, _ := parseMAC(last.MAC, false)
			if list.NextPageToken, err = h.pages.Encode(api.PrincipalOf(c), filters, deviceCursor{last.Tenant, m}); err != nil {
				h.unavailable(c, "page token", err)
				return
			}
		}
		list.Devices = ds
	}
	api.JSONWithETag(c, http.StatusOK, list)
}

func (h *Handlers) getDevice(c *gin.Context) {
	q := api.ParseQuery(c, "tenant")
	tenantParam := q.String("tenant")
	mac, _, err := parseMAC(c.Param("mac"), false)
	if err != nil {
		api.BadRequest(c, err)
		return
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
	var ds []Device
	if len(tenants) > 0 {
		if ds, err = h.devices(ctx, deviceFilter{tenants: tenants, macLo: mac, macHi: mac, limit: 2}); err != nil {
			h.unavailable(c, "device", err)
			return
		}
	}
	switch len(ds) {
	case 0:
		api.WriteError(c, http.StatusNotFound, api.CodeNotFound, "no such device")
	case 1:
		api.JSONWithETag(c, http.StatusOK, ds[0])
	default:
		api.WriteError(c, http.StatusConflict, api.CodeConflict, "this MAC is a device of more than one tenant; give tenant=")
	}
}
