package collector

import (
	"testing"

	"github.com/flowhouse/flowhouse/flow"
)

// TestNonIPBytes: one rule for every protocol. Bytes are layer 3 octets
// (the IP packet) when there is an IP layer; traffic without one is
// counted by its layer 2 frame without FCS: sFlow's frame_length less
// stripped, sFlow's Ethernet frame data length less the FCS, IPFIX's
// layer2OctetDeltaCount (IE 352), which is what exporters send for non-IP
// flows. Non-IP IPFIX records were stored with 0 bytes.
func TestNonIPBytes(t *testing.T) {
	srcMAC := []byte{0x00, 0x00, 0x5e, 0x00, 0x53, 0x01}
	dstMAC := []byte{0x00, 0x00, 0x5e, 0x00, 0x53, 0x02}
	pad := []byte{0, 0}
	arp := append(append(append(append([]byte{}, dstMAC...), srcMAC...), 0x08, 0x06), make([]byte, 28)...) // 42 bytes
	ipv4 := append(append(append(append([]byte{}, dstMAC...), srcMAC...), 0x08, 0x00),
		0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 198, 51, 100, 1, 0x30, 0x39, 0, 53, 0, 26, 0, 0) // IPv4 total length 46
	sflowDatagram := func(records ...[]byte) []byte {
		var body []byte
		for _, r := range records {
			body = append(body, r...)
		}
		sample := append(rec(uint32(1), uint32(3), uint32(100), uint32(100), uint32(0), uint32(1), uint32(2), uint32(len(records))), body...)
		return append(rec(uint32(5), uint32(1), ip4a, uint32(0), uint32(1), uint32(1000), uint32(1)),
			append(rec(uint32(1), uint32(len(sample))), sample...)...)
	}
	sampledHeader := func(frameLen, stripped uint32, header []byte) []byte {
		h := append([]byte{}, header...)
		for len(h)%4 != 0 {
			h = append(h, 0)
		}
		body := append(rec(uint32(1), frameLen, stripped, uint32(len(header))), h...)
		return append(rec(uint32(1), uint32(len(body))), body...)
	}
	// sampled_ethernet: each MAC is XDR opaque[6], padded to 8 bytes.
	sampledEthernet := rec(uint32(2), uint32(24), uint32(68), srcMAC, pad, dstMAC, pad, uint32(0x0806))

	ipfixNonIP := newIPFIX(0, 0, 1).template(256, tf{56, 6, 0}, tf{80, 6, 0}, tf{256, 2, 0}, tf{352, 8, 0}, tf{2, 8, 0}).
		data(256, rec(srcMAC, dstMAC, uint16(0x88b5), uint64(1514), uint64(1))).bytes()

	tests := []struct {
		name      string
		datagram  []byte
		bytes     uint64
		ipVersion uint8
		dstMAC    flow.MAC
	}{
		{"sFlow header of an IPv4 packet: its total length", sflowDatagram(sampledHeader(64, 4, ipv4)), 46, 4, flow.MACFromSlice(dstMAC)},
		{"sFlow header of an ARP frame: the frame without FCS", sflowDatagram(sampledHeader(64, 4, arp)), 60, 0, flow.MACFromSlice(dstMAC)},
		{"sFlow Ethernet frame data only: its length less the FCS, MACs past their padding", sflowDatagram(sampledEthernet), 64, 0, flow.MACFromSlice(dstMAC)},
		{"IPFIX record without an IP layer: its layer 2 octets", ipfixNonIP, 1514, 0, flow.MACFromSlice(dstMAC)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDecoder()
			flows := d.Decode(t0, exporterA, tc.datagram, nil)
			if len(flows) != 1 {
				t.Fatalf("decoded %d flows, drops %v", len(flows), d.Stats()[0].Drops)
			}
			f := flows[0]
			if f.Bytes != tc.bytes || f.IPVersion != tc.ipVersion || f.DstMAC != tc.dstMAC || f.SrcMAC != flow.MACFromSlice(srcMAC) {
				t.Errorf("bytes %d, IP version %d, MACs %x > %x; want %d, %d, %x > %x",
					f.Bytes, f.IPVersion, f.SrcMAC, f.DstMAC, tc.bytes, tc.ipVersion, flow.MACFromSlice(srcMAC), tc.dstMAC)
			}
		})
	}
}
