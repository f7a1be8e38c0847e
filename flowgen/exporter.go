package flowgen

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Protocol is an export protocol a simulated exporter speaks.
type Protocol uint8

const (
	NetFlowV5 Protocol = iota + 1
	NetFlowV9
	IPFIX
	SFlowV5
)

// Protocols lists every protocol in the order reports use.
var Protocols = []Protocol{NetFlowV5, NetFlowV9, IPFIX, SFlowV5}

// String gives the names flowhouse uses for the protocol column.
func (p Protocol) String() string {
	switch p {
	case NetFlowV5:
		return "netflow_v5"
	case NetFlowV9:
		return "netflow_v9"
	case IPFIX:
		return "ipfix"
	case SFlowV5:
		return "sflow_v5"
	}
	return fmt.Sprintf("protocol(%d)", p)
}

// ParseProtocol accepts v5, v9, ipfix (or v10), sflow and the String names.
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "v5", "netflow5", "netflow_v5", "nf5":
		return NetFlowV5, nil
	case "v9", "netflow9", "netflow_v9", "nf9":
		return NetFlowV9, nil
	case "ipfix", "v10":
		return IPFIX, nil
	case "sflow", "sflow5", "sflow_v5":
		return SFlowV5, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want v5, v9, ipfix or sflow)", s)
}

// ParseProtocols parses a comma-separated list.
func ParseProtocols(s string) ([]Protocol, error) {
	var out []Protocol
	for _, item := range strings.Split(s, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		p, err := ParseProtocol(item)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no protocol given")
	}
	return out, nil
}

// exporterModel is what the traffic model needs to know of an exporter:
// its interfaces (1 is the uplink, 2..ifCount the access side) and MAC.
type exporterModel struct {
	ifCount int
	mac     [6]byte
}

// accessIf is the access interface behind which an inside host (by the
// last octet of its IPv4 address) lives.
func (x *exporterModel) accessIf(octet byte) uint32 {
	return 2 + uint32(octet)%uint32(x.ifCount-1)
}

// vlan is the VLAN of an interface (reported in sFlow's switch record).
func (x *exporterModel) vlan(ifIndex uint32) uint16 {
	if ifIndex == 1 {
		return 10
	}
	return uint16(100 + ifIndex)
}

// tally is what the open datagram holds, committed to the exporter's
// totals once the datagram is sent (or to its unsent totals if not).
type tally struct {
	all  Counts
	scen [numScenarioKinds]Counts
}

func (t *tally) add(f *Flow, bytes, packets uint64) {
	t.all.addFlow(f.IPv6(), bytes, packets)
	t.scen[f.Scenario].addFlow(f.IPv6(), bytes, packets)
}

func (t *tally) commit(to *tally, payload int) {
	t.all.Datagrams, t.all.PayloadBytes = 1, uint64(payload)
	to.all.merge(&t.all)
	for i := range t.scen {
		to.scen[i].merge(&t.scen[i])
	}
	*t = tally{}
}

type exporter struct {
	idx    int
	proto  Protocol
	src    netip.AddrPort
	domain uint32
	rate   uint32
	model  exporterModel
	enc    encoder
	nf     *nfEncoder    // set for v9 and IPFIX
	sf     *sflowEncoder // set for sFlow

	open      bool
	pendSince time.Duration
	pend      tally
	sent      tally
	unsent    tally
	lastErr   error
}

// encoded is what the exporter's records say of f: bytes and packets, per
// record (sFlow: per sample: the IP total length and one packet).
func (x *exporter) encoded(f *Flow) (bytes, packets uint64) {
	if x.proto == SFlowV5 {
		return uint64(f.SampleLen()), 1
	}
	return f.Bytes, f.Packets
}
