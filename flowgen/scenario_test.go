package flowgen_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/collector"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/flowgen"
)

// TestFloodAndBulkScenarios checks the udpflood, icmpflood and bulk
// scenarios through the collector's decoder: who sends what to whom, with
// which flags and packet sizes, and that the decoded totals are the
// report's.
func TestFloodAndBulkScenarios(t *testing.T) {
	cfg := testConfig(t, []flowgen.Protocol{flowgen.IPFIX, flowgen.NetFlowV5}, 2, 6000)
	sc, err := flowgen.ParseScenarios("udpflood,icmpflood,bulk", 500*time.Millisecond, 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Scenarios, cfg.IPv6Share = sc, 0
	type agg struct {
		flows, bytes, packets uint64
		srcs                  map[flow.Addr]bool
		ports                 map[uint16]bool
		types                 map[uint8]bool
		flags                 map[uint8]uint64
		toClient, toServer    uint64 // bulk: bytes per direction
	}
	seen := map[string]*agg{}
	for _, k := range []string{"udpflood", "icmpflood", "bulk"} {
		seen[k] = &agg{srcs: map[flow.Addr]bool{}, ports: map[uint16]bool{}, types: map[uint8]bool{}, flags: map[uint8]uint64{}}
	}
	udpVictim, icmpVictim := flow.AddrFromNetip(flowgen.UDPFloodVictim), flow.AddrFromNetip(flowgen.ICMPFloodVictim)
	server, client := flow.AddrFromNetip(flowgen.BulkServer.Addr()), flow.AddrFromNetip(flowgen.BulkClient.Addr())
	dec := collector.NewDecoder(collector.DecoderConfig{}, nil)
	var out []flow.Flow
	cfg.OnDatagram = func(_ int, src netip.AddrPort, payload []byte, ts time.Time) {
		out = dec.Decode(ts, src, payload, out)
		for i := range out {
			f := &out[i]
			var k string
			switch {
			case f.DstAddr == udpVictim && f.IPProto == 17:
				k = "udpflood"
			case f.DstAddr == icmpVictim && f.IPProto == 1:
				k = "icmpflood"
			case f.IPProto == 6 && (f.SrcAddr == server && f.DstAddr == client || f.SrcAddr == client && f.DstAddr == server):
				k = "bulk"
			default:
				continue
			}
			a := seen[k]
			a.flows++
			a.bytes += f.Bytes
			a.packets += f.Packets
			a.srcs[f.SrcAddr] = true
			a.ports[f.DstPort] = true
			a.types[f.ICMPType] = true
			a.flags[f.TCPFlags]++
			if f.SrcAddr == server {
				a.toClient += f.Bytes
			} else if f.SrcAddr == client {
				a.toServer += f.Bytes
			}
		}
	}
	rep := run(t, cfg)
	for _, s := range rep.Scenarios {
		a := seen[s.Name]
		if s.Counts.Flows == 0 {
			t.Errorf("scenario %s sent nothing", s.Name)
			continue
		}
		if a.flows != s.Counts.Flows || a.bytes != s.Counts.Bytes || a.packets != s.Counts.Packets {
			t.Errorf("%s: decoded %d flows %d bytes %d packets, report %+v", s.Name, a.flows, a.bytes, a.packets, s.Counts)
		}
		if s.Target == "" {
			t.Errorf("%s: the report names no target", s.Name)
		}
		switch s.Name {
		case "udpflood":
			if len(a.srcs) < 50 || uint64(len(a.ports)) < a.flows*9/10 || a.bytes/a.packets > 120 {
				t.Errorf("udpflood: %d sources, %d destination ports in %d flows, %d bytes per packet", len(a.srcs), len(a.ports), a.flows, a.bytes/a.packets)
			}
		case "icmpflood":
			if len(a.srcs) < 50 || a.bytes/a.packets != 84 || len(a.types) != 1 || !a.types[8] {
				t.Errorf("icmpflood: %d sources, %d bytes per packet, ICMP types %v", len(a.srcs), a.bytes/a.packets, a.types)
			}
		case "bulk":
			// Two records carry the handshake (SYN-ACK-PSH), all others
			// ACK-PSH; the server sends the data, the client the ACKs.
			if a.flags[0x1a] != 2 || a.flags[0x18] != a.flows-2 || len(a.srcs) != 2 {
				t.Errorf("bulk: flags %v in %d flows, %d sources", a.flags, a.flows, len(a.srcs))
			}
			if a.toClient < 20*a.toServer {
				t.Errorf("bulk: %d bytes to the client, %d to the server", a.toClient, a.toServer)
			}
		}
	}
}

func TestParseNewScenarioNames(t *testing.T) {
	for _, name := range []string{"udpflood", "icmpflood", "bulk"} {
		k, err := flowgen.ParseScenarioKind(name)
		if err != nil || k.String() != name {
			t.Errorf("%s: %v %v", name, k, err)
		}
	}
}
