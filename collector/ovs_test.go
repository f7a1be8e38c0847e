package collector

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/peers"
	"github.com/flowhouse/flowhouse/internal/testkit"
)

// Open vSwitch's IPFIX exporter, live: it sends delta counters (IE 1/2)
// and totals (IE 85/86) in each record, and reports a flow again after
// every active timeout. Packets of known sizes are injected in rounds, each
// round waited out until its report arrived, so every flow is reported
// several times; the decoded traffic of each flow must be what was
// injected, once, in each direction OVS observes it (input at p1, output
// at p2).
func TestOVSDeltasAndTotalsLive(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const domain = 9
	ovs, err := peers.StartOVS(ctx, t, peers.OVSConfig{Target: conn.LocalAddr().(*net.UDPAddr).AddrPort(), ActiveTimeout: 1, ObservationDomain: domain})
	if err != nil {
		t.Fatal(err)
	}

	const eth = "eth(src=00:00:5e:00:53:01,dst=00:00:5e:00:53:02),"
	// A flow without an IP layer has no source address (src ""); OVS
	// counts it in layer 2 octets only, the frame (--len) as flowhouse
	// stores it, where an IP flow's bytes are its IP packets.
	flows := []struct {
		src      string
		odp      string
		frameLen int
		rounds   []int
	}{
		{"", eth + "eth_type(0x88b5)", 120, []int{3, 2, 2}},
		{"192.0.2.10", eth + "eth_type(0x0800),ipv4(src=192.0.2.10,dst=198.51.100.20,proto=6,tos=0,ttl=64,frag=no),tcp(src=40001,dst=443)", 200, []int{5, 3, 4}},
		{"192.0.2.11", eth + "eth_type(0x0800),ipv4(src=192.0.2.11,dst=198.51.100.21,proto=17,tos=0xb8,ttl=64,frag=no),udp(src=16384,dst=16386)", 1014, []int{2, 6, 1}},
		{"2001:db8::10", eth + "eth_type(0x86dd),ipv6(src=2001:db8::10,dst=2001:db8::20,label=0,proto=6,tclass=0,hlimit=64,frag=no),tcp(src=40002,dst=80)", 300, []int{4, 4, 2}},
	}
	type sums struct{ packets, bytes, records uint64 }
	type key struct {
		src flow.Addr
		dir flow.Direction
	}
	var (
		mu  sync.Mutex
		got = map[key]sums{}
	)
	d := NewDecoder(DecoderConfig{}, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		var out []flow.Flow
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			mu.Lock()
			out = d.Decode(time.Now(), from, buf[:n], out)
			for _, f := range out {
				s := got[key{f.SrcAddr, f.Direction}]
				s.packets, s.bytes, s.records = s.packets+f.Packets, s.bytes+f.Bytes, s.records+1
				got[key{f.SrcAddr, f.Direction}] = s
			}
			mu.Unlock()
		}
	}()
	stopReading := func() { conn.Close(); <-done }
	defer stopReading()

	want := map[key]sums{}
	for round := range 3 {
		for _, fl := range flows {
			for range fl.rounds[round] {
				if err := ovs.Receive(ctx, fl.odp, fl.frameLen); err != nil {
					t.Fatal(err)
				}
			}
			for _, dir := range []flow.Direction{flow.DirIngress, flow.DirEgress} {
				k := key{dir: dir}
				ipBytes := fl.frameLen
				if fl.src != "" {
					k.src = flow.AddrFromNetip(netip.MustParseAddr(fl.src))
					ipBytes -= 14
				}
				w := want[k]
				w.packets += uint64(fl.rounds[round])
				w.bytes += uint64(fl.rounds[round] * ipBytes)
				w.records++
				want[k] = w
			}
		}
		// Wait for the round's reports, so the next round is another one.
		arrived := testkit.Within(30*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			for k, w := range want {
				if got[k].packets < w.packets {
					return false
				}
			}
			return true
		})
		if !arrived {
			mu.Lock()
			snapshot := fmt.Sprint(got)
			mu.Unlock()
			t.Fatalf("round %d: reports did not arrive: got %s, want %v", round+1, snapshot, want)
		}
	}
	stopReading()

	if len(got) != len(want) {
		t.Errorf("flows decoded %v, want %v", got, want)
	}
	// A round is one report of each flow, unless its packets straddled
	// the active timeout: more reports, never fewer.
	for k, w := range want {
		if g := got[k]; g.packets != w.packets || g.bytes != w.bytes || g.records < w.records {
			t.Errorf("%v direction %d: %d packets, %d bytes in %d reports; injected %d packets, %d bytes in %d rounds",
				k.src, k.dir, g.packets, g.bytes, g.records, w.packets, w.bytes, w.records)
		}
	}
	// The premise: OVS's templates carry totals beside the deltas.
	e := d.exporters[netip.MustParseAddr("127.0.0.1")]
	withBoth := 0
	for tk, tm := range e.templates.m {
		has := map[uint16]bool{}
		for _, f := range tm.fields {
			if f.pen == 0 {
				has[f.ie] = true
			}
		}
		if tk.domain == domain && has[ieOctetDeltaCount] && has[iePacketDeltaCount] && has[ieOctetTotalCount] && has[iePacketTotalCount] {
			withBoth++
		}
	}
	if withBoth == 0 {
		t.Error("no OVS template with both delta and total counters: the test no longer tests what it says")
	}
	if s := d.Stats()[0]; len(s.Drops) != 0 || s.SequenceLost != 0 {
		t.Errorf("drops %v, sequence lost %d", s.Drops, s.SequenceLost)
	}
}
