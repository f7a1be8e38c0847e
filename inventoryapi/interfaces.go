package inventoryapi

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// Interface is one interface of an exporter, as SNMP polling last saw it.
type Interface struct {
	IfIndex      uint32       `json:"if_index"`
	Name         string       `json:"name"`
	Descr        string       `json:"descr"`
	Alias        string       `json:"alias"`
	SpeedMbps    uint64       `json:"speed_mbps"`
	OperStatus   string       `json:"oper_status"`
	Boundary     string       `json:"boundary"`
	Provider     string       `json:"provider"`
	Connectivity string       `json:"connectivity"`
	UpdatedAt    *time.Time   `json:"updated_at"`
	Utilisation  *Utilisation `json:"utilisation"`
}

// Utilisation is the latest rate of an interface's counters.
type Utilisation struct {
	Time time.Time `json:"time"`
	// Source is the row's: "snmp" (a counter poll) or "sflow" (an sFlow
	// counter sample).
	Source     string  `json:"source"`
	InBps      uint64  `json:"in_bps"`
	OutBps     uint64  `json:"out_bps"`
	InPercent  float64 `json:"in_percent"`
	OutPercent float64 `json:"out_percent"`
}

// InterfaceList is the answer of GET /exporters/{addr}/interfaces.
type InterfaceList struct {
	Exporter   string      `json:"exporter"`
	Tenant     string      `json:"tenant"`
	Interfaces []Interface `json:"interfaces"`
}

// operStatus names ifOperStatus (RFC 2863).
var operStatus = map[uint8]string{1: "up", 2: "down", 3: "testing", 4: "unknown", 5: "dormant", 6: "not_present", 7: "lower_layer_down"}

// utilisationWindow bounds how old the latest rate may be: a counter
// poll older than a day says nothing of the interface now, and the bound
// keeps the read to the newest partition.
const utilisationWindow = 24 * time.Hour

func (h *Handlers) exporterInterfaces(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), h.cfg.QueryTimeout)
	defer cancel()
	k, ok := h.visibleExporter(c, ctx)
	if !ok {
		return
	}
	a, _ := keyAddr(k.key)
	list := InterfaceList{Exporter: a.String(), Tenant: k.tenant, Interfaces: []Interface{}}
	byIndex := map[uint32]int{}
	q := `SELECT if_index, argMax(if_name, updated_at), argMax(if_descr, updated_at), argMax(if_alias, updated_at),
		argMax(speed_mbps, updated_at), argMax(oper_status, updated_at), argMax(boundary, updated_at), argMax(provider, updated_at),
		argMax(connectivity, updated_at), toUInt32(max(updated_at))
		FROM interfaces WHERE tenant = ? AND ` + keyOf("exporter_address") + ` = ? GROUP BY if_index ORDER BY if_index`
	err := dbapi.Each(ctx, h.deps.DB, q, []any{k.tenant, k.key}, func(r dbapi.Rows) error {
		var it Interface
		var oper uint8
		var updated uint32
		if err := r.Scan(&it.IfIndex, &it.Name, &it.Descr, &it.Alias, &it.SpeedMbps, &oper, &it.Boundary, &it.Provider, &it.Connectivity, &updated); err != nil {
			return err
		}
		it.OperStatus, it.UpdatedAt = operStatus[oper], timeOf(updated)
		if it.OperStatus == "" {
			it.OperStatus = "unknown"
		}
		byIndex[it.IfIndex] = len(list.Interfaces)
		list.Interfaces = append(list.Interfaces, it)
		return nil
	})
	if err == nil && len(list.Interfaces) > 0 {
		err = h.readUtilisation(ctx, k, list.Interfaces, byIndex)
	}
	if err != nil {
		h.unavailable(c, "interfaces", err)
		return
	}
	api.JSONWithETag(c, http.StatusOK, list)
}

// readUtilisation adds the latest valid rate of each interface from
// interface_counters, of either source (SNMP polls, sFlow counter
// samples). Every value comes from that one row: the key orders the rows
// by time, then sFlow before SNMP, so that two rows of one millisecond
// do not give a mix.
func (h *Handlers) readUtilisation(ctx context.Context, k exporterKey, its []Interface, byIndex map[uint32]int) error {
	q := `SELECT if_index, toUInt32(argMax(time, key)), argMax(source, key), argMax(in_bps, key), argMax(out_bps, key),
		argMax(in_utilisation, key), argMax(out_utilisation, key)
		FROM (SELECT if_index, time, source, in_bps, out_bps, in_utilisation, out_utilisation,
			time_ms * 2 + (source = 'sflow') AS key FROM interface_counters
			WHERE tenant = ? AND ` + keyOf("exporter_address") + ` = ? AND valid = 1 AND time >= toDateTime(?))
		GROUP BY if_index`
	since := uint32(h.now().Add(-utilisationWindow).Unix())
	return dbapi.Each(ctx, h.deps.DB, q, []any{k.tenant, k.key, since}, func(r dbapi.Rows) error {
		var idx, at uint32
		var u Utilisation
		if err := r.Scan(&idx, &at, &u.Source, &u.InBps, &u.OutBps, &u.InPercent, &u.OutPercent); err != nil {
			return err
		}
		if i, ok := byIndex[idx]; ok {
			u.Time = time.Unix(int64(at), 0).UTC()
			its[i].Utilisation = &u
		}
		return nil
	})
}
