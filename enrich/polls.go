package enrich

import (
	"context"
	"maps"
	"time"

	"github.com/flowhouse/flowhouse/enrich/snmp"
	"github.com/flowhouse/flowhouse/flow"
)

// pollInterfaces reads sysName and the interface table, classifies the
// interfaces and swaps the exporter's interface cache.
func (e *Enricher) pollInterfaces(ctx context.Context, x *exporter, c *snmp.Client) error {
	sysName, _, err := c.SysName()
	if err != nil {
		return err
	}
	rows, err := c.Interfaces()
	if err != nil {
		return err
	}
	m := make(map[uint32]*Interface, len(rows))
	for _, r := range rows {
		it := &Interface{Index: r.Index, Name: r.Name, Descr: r.Descr, Alias: r.Alias, SpeedMbps: r.SpeedMbps, OperStatus: r.OperStatus}
		if it.Name == "" {
			it.Name = it.Descr
		}
		classify(x.rules, it)
		m[r.Index] = it
	}
	old := x.ifaces.Load()
	x.sysName.Store(&sysName)
	x.ifaces.Store(&m)

	now := time.Now()
	refresh := e.cfg.Polling.ObservationRefresh.Milliseconds()
	if x.ifWritten == nil {
		x.ifWritten = map[uint32]int64{}
	}
	var changed []*Interface
	for idx, it := range m {
		var prev *Interface
		if old != nil {
			prev = (*old)[idx]
		}
		if prev == nil || *prev != *it || now.UnixMilli()-x.ifWritten[idx] >= refresh {
			changed = append(changed, it)
		}
	}
	if e.w != nil {
		wctx, cancel := context.WithTimeout(ctx, e.cfg.Polling.WriteTimeout)
		defer cancel()
		if len(changed) > 0 {
			if err := e.w.interfaces(wctx, x, changed, now); err != nil {
				e.dbError("interfaces", err)
			} else {
				for _, it := range changed {
					x.ifWritten[it.Index] = now.UnixMilli()
				}
			}
		}
		if sysName != x.attrSysName || now.UnixMilli()-x.attrWritten >= refresh {
			if err := e.w.exporterAttributes(wctx, x, sysName, now); err != nil {
				e.dbError("exporter_attributes", err)
			} else {
				x.attrSysName, x.attrWritten = sysName, now.UnixMilli()
			}
		}
	}
	return nil
}

// pollARP reads the ARP/ND table, swaps the exporter's ARP cache and its
// tenant's merged cache, records changes and updates the inventory.
func (e *Enricher) pollARP(ctx context.Context, x *exporter, c *snmp.Client) error {
	rows, _, err := c.ARP()
	if err != nil {
		return err
	}
	m := make(map[flow.Addr]Neighbor, len(rows))
	for _, r := range rows {
		m[flow.AddrFromNetip(r.IP)] = Neighbor{IfIndex: r.IfIndex, MAC: r.MAC}
	}
	var old map[flow.Addr]Neighbor
	if p := x.arp.Load(); p != nil {
		old = *p
	}
	x.arp.Store(&m)
	e.rebuildTenantARP(x.tenant)

	now := time.Now()
	refresh := e.cfg.Polling.ObservationRefresh.Milliseconds()
	if x.arpWritten == nil {
		x.arpWritten = map[flow.Addr]int64{}
	}
	var obs []arpObservation
	for a, n := range m {
		prev, had := old[a]
		switch {
		case !had:
			obs = append(obs, arpObservation{addr: a, n: n, event: eventNew})
		case prev != n:
			obs = append(obs, arpObservation{addr: a, n: n, event: eventChanged})
		case now.UnixMilli()-x.arpWritten[a] >= refresh:
			obs = append(obs, arpObservation{addr: a, n: n, event: eventRefresh})
		}
	}
	for a, n := range old {
		if _, ok := m[a]; !ok {
			obs = append(obs, arpObservation{addr: a, n: n, event: eventGone})
		}
	}
	devs := e.inv.observe(x, m, now, e.oui.Load(), refresh)
	if e.w != nil {
		wctx, cancel := context.WithTimeout(ctx, e.cfg.Polling.WriteTimeout)
		defer cancel()
		if len(obs) > 0 {
			if err := e.w.arpObservations(wctx, x, obs, now, e.oui.Load()); err != nil {
				e.dbError("arp_observations", err)
			} else {
				for _, o := range obs {
					if o.event == eventGone {
						delete(x.arpWritten, o.addr)
					} else {
						x.arpWritten[o.addr] = now.UnixMilli()
					}
				}
			}
		}
		if len(devs) > 0 {
			if err := e.w.devices(wctx, devs, now); err != nil {
				e.dbError("devices", err)
				e.inv.unwritten(devs)
			}
		}
	}
	return nil
}

// rebuildTenantARP merges the ARP caches of the tenant's exporters.
func (e *Enricher) rebuildTenantARP(tenant string) {
	e.tenantMu.Lock()
	defer e.tenantMu.Unlock()
	merged := map[flow.Addr]uint64{}
	e.exporters.Range(func(_, v any) bool {
		x := v.(*exporter)
		if x.tenant != tenant {
			return true
		}
		if p := x.arp.Load(); p != nil {
			for a, n := range *p {
				merged[a] = n.MAC
			}
		}
		return true
	})
	e.tenantARPOf(tenant).m.Store(&merged)
}

// pollCounters reads the HC octet counters and writes rates from the
// deltas since the previous poll (kept across restarts in the table).
func (e *Enricher) pollCounters(ctx context.Context, x *exporter, c *snmp.Client) error {
	_, uptime, err := c.SysName()
	if err != nil {
		return err
	}
	rows, err := c.Counters()
	if err != nil {
		return err
	}
	now := time.Now()
	// The agent restarted (sysUpTime went back): every counter restarted.
	restarted := x.prevUptime != 0 && uptime < x.prevUptime && x.prevUptime-uptime < 1<<31
	x.prevUptime = uptime
	var ifaces map[uint32]*Interface
	if p := x.ifaces.Load(); p != nil {
		ifaces = *p
	}
	if x.prevCounter == nil {
		x.prevCounter = map[uint32]counterSample{}
	}
	samples := make([]counterRow, 0, len(rows))
	next := make(map[uint32]counterSample, len(rows))
	for _, r := range rows {
		cur := counterSample{at: now.UnixMilli(), in: r.InOctets, out: r.OutOctets}
		var speed uint64
		if it := ifaces[r.IfIndex]; it != nil {
			speed = it.SpeedMbps
		}
		row := counterRow{tenant: x.tenant, exporter: x.addr, source: sourceSNMP, ifIndex: r.IfIndex, cur: cur, speedMbps: speed}
		if prev, ok := x.prevCounter[r.IfIndex]; ok && !restarted {
			row.rate = rateOf(prev, cur, speed)
		} else if restarted {
			row.rate.reset = true
		}
		samples = append(samples, row)
		next[r.IfIndex] = cur
	}
	maps.Copy(x.prevCounter, next)
	if e.w != nil && len(samples) > 0 {
		wctx, cancel := context.WithTimeout(ctx, e.cfg.Polling.WriteTimeout)
		defer cancel()
		if err := e.w.counters(wctx, samples); err != nil {
			e.dbError("interface_counters", err)
		}
	}
	return nil
}

// dbError counts a failed write of poll results, and logs it at most
// every 10s: with the database away, every poll of every exporter fails.
func (e *Enricher) dbError(table string, err error) {
	e.m.dbErrors.WithLabelValues(table).Inc()
	e.dbErrLog.Do(func() {
		e.log.Warn("writing poll results failed (logged at most every 10s)", "table", table, "error", err)
	})
}
