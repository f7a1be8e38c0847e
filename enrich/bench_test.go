package enrich

import (
	"net/netip"
	"testing"

	"github.com/flowhouse/flowhouse/enrich/oui"
	"github.com/flowhouse/flowhouse/flow"
)

type discard struct{}

func (discard) Write([]flow.Flow) {}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// BenchmarkWrite: enrichment cost per flow with warm caches (interfaces,
// ARP, vendor), batches of 30 flows as a datagram gives.
func BenchmarkWrite(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Exporters = []ExporterConfig{{Match: "192.0.2.1", Tenant: "t"}}
	reg := oui.New()
	reg.Add("00000C", "Cisco Systems, Inc")
	e, err := New(cfg, Deps{Next: discard{}, OUI: reg})
	if err != nil {
		b.Fatal(err)
	}
	x := e.exporterFor(flow.AddrFromNetip(mustAddr("192.0.2.1")))
	ifs := map[uint32]*Interface{1: {Index: 1, Name: "xe-0/0/1", SpeedMbps: 10000}, 2: {Index: 2, Name: "xe-0/0/2"}}
	x.ifaces.Store(&ifs)
	arp := map[flow.Addr]Neighbor{flow.AddrFromNetip(mustAddr("10.0.0.9")): {IfIndex: 2, MAC: 0x00000c123456}}
	x.arp.Store(&arp)
	flows := make([]flow.Flow, 30)
	for i := range flows {
		flows[i] = flow.Flow{ExporterAddr: x.addr, InIf: 1, OutIf: 2, SrcAddr: flow.AddrFromNetip(mustAddr("198.51.100.1")), DstAddr: flow.AddrFromNetip(mustAddr("10.0.0.9"))}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.Write(flows)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(flows)), "ns/flow")
}
