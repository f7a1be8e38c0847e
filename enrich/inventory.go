package enrich

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/flowhouse/flowhouse/enrich/oui"
	"github.com/flowhouse/flowhouse/flow"
)

// Device is one MAC address of a tenant, as the exporters' ARP tables
// showed it.
type Device struct {
	Tenant    string
	MAC       uint64
	Vendor    string
	FirstSeen time.Time
	LastSeen  time.Time
	// Where it was last seen.
	LastExporter netip.Addr
	LastIfIndex  uint32
	// IPs it had, most recently seen first, bounded by
	// polling.max_ip_history.
	IPs []DeviceIP
}

// DeviceIP is one address of a device over time.
type DeviceIP struct {
	Addr      netip.Addr
	FirstSeen time.Time
	LastSeen  time.Time
}

type devKey struct {
	tenant string
	mac    uint64
}

type device struct {
	Device
	written int64 // unix ms of the last devices row; 0: never
}

// inventory is the device inventory, per tenant. Poller side only.
type inventory struct {
	mu     sync.Mutex
	maxIPs int
	byKey  map[devKey]*device
}

func newInventory(maxIPs int) *inventory {
	return &inventory{maxIPs: maxIPs, byKey: map[devKey]*device{}}
}

// observe records one ARP poll of x and returns copies of the devices
// to write: new or changed ones, and those not written for refresh ms.
func (inv *inventory) observe(x *exporter, arp map[flow.Addr]Neighbor, now time.Time, reg *oui.Registry, refresh int64) []Device {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	nowMs := now.UnixMilli()
	dirty := map[devKey]bool{}
	for a, n := range arp {
		k := devKey{x.tenant, n.MAC}
		d := inv.byKey[k]
		if d == nil {
			d = &device{Device: Device{Tenant: x.tenant, MAC: n.MAC, FirstSeen: now}}
			inv.byKey[k] = d
			dirty[k] = true
		}
		if v := reg.Vendor(n.MAC); v != d.Vendor {
			d.Vendor = v
			dirty[k] = true
		}
		d.LastSeen = now
		if d.LastExporter != x.ip || d.LastIfIndex != n.IfIndex {
			d.LastExporter, d.LastIfIndex = x.ip, n.IfIndex
			dirty[k] = true
		}
		ip := netip.AddrFrom16(a).Unmap()
		i := slices.IndexFunc(d.IPs, func(h DeviceIP) bool { return h.Addr == ip })
		if i < 0 {
			d.IPs = append(d.IPs, DeviceIP{Addr: ip, FirstSeen: now, LastSeen: now})
			dirty[k] = true
		} else {
			d.IPs[i].LastSeen = now
		}
		if nowMs-d.written >= refresh {
			dirty[k] = true
		}
	}
	var out []Device
	for k := range dirty {
		d := inv.byKey[k]
		// Most recent first; the oldest beyond the bound are forgotten.
		slices.SortStableFunc(d.IPs, func(a, b DeviceIP) int { return b.LastSeen.Compare(a.LastSeen) })
		if len(d.IPs) > inv.maxIPs {
			d.IPs = d.IPs[:inv.maxIPs]
		}
		d.written = nowMs
		c := d.Device
		c.IPs = slices.Clone(d.IPs)
		out = append(out, c)
	}
	return out
}

// unwritten marks devices whose write failed, so the next poll writes them.
func (inv *inventory) unwritten(ds []Device) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	for _, d := range ds {
		if x := inv.byKey[devKey{d.Tenant, d.MAC}]; x != nil {
			x.written = 0
		}
	}
}

// load puts a device read back from the database.
func (inv *inventory) load(d Device) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.byKey[devKey{d.Tenant, d.MAC}] = &device{Device: d, written: d.LastSeen.UnixMilli()}
}

func (inv *inventory) devices(tenant string) []Device {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	var out []Device
	for k, d := range inv.byKey {
		if k.tenant == tenant {
			c := d.Device
			c.IPs = slices.Clone(d.IPs)
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b Device) int {
		if a.MAC < b.MAC {
			return -1
		}
		if a.MAC > b.MAC {
			return 1
		}
		return 0
	})
	return out
}
