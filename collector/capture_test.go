package collector

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/testkit"
)

// The captures in testdata/captures are what real exporters (softflowd,
// pmacct) sent for testdata/traffic.pcap; the .expected.json beside each
// is tshark's reading of the same capture (testdata/gen explains how both
// were made). Our decoder must agree with tshark record for record.

type expectedRecord struct {
	Src        string `json:"src"`
	Dst        string `json:"dst"`
	Sport      uint16 `json:"sport"`
	Dport      uint16 `json:"dport"`
	Proto      uint8  `json:"proto"`
	ICMPType   uint8  `json:"icmp_type"`
	ICMPCode   uint8  `json:"icmp_code"`
	Bytes      uint64 `json:"bytes"`
	Packets    uint64 `json:"packets"`
	RevBytes   uint64 `json:"rev_bytes"`
	RevPackets uint64 `json:"rev_packets"`
	Tos        uint8  `json:"tos"`
	TCPFlags   uint8  `json:"tcp_flags"`
	RevFlags   uint8  `json:"rev_tcp_flags"`
	InIf       uint32 `json:"in_if"`
	OutIf      uint32 `json:"out_if"`
	StartMs    int64  `json:"start_ms"`
	EndMs      int64  `json:"end_ms"`
}

type expectedFile struct {
	Records []expectedRecord `json:"records"`
	Totals  struct {
		All struct {
			Samples  uint64 `json:"samples"`
			Packets  uint64 `json:"packets"`
			IPBytes  uint64 `json:"ip_bytes"`
			Records  uint64 `json:"records"`
			Bytes    uint64 `json:"bytes"`
			RevBytes uint64 `json:"rev_bytes"`
		} `json:"all"`
	} `json:"totals"`
}

func loadExpected(t *testing.T, name string) expectedFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "captures", name+".expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var e expectedFile
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("%s.expected.json: %v", name, err)
	}
	return e
}

// flowKey renders the fields both decoders report, so that two multisets
// of flows can be compared as sorted lists of strings.
func flowKey(src, dst string, sport, dport uint16, proto uint8, bytes, packets uint64, tos, flags uint8, startMs, endMs int64) string {
	return fmt.Sprintf("%s %s %d %d p%d b%d n%d tos%d f%d %d-%d", src, dst, sport, dport, proto, bytes, packets, tos, flags, startMs, endMs)
}

func decodeCapture(t *testing.T, name string) ([]flow.Flow, *Decoder) {
	t.Helper()
	d := NewDecoder(DecoderConfig{}, nil)
	var all []flow.Flow
	var out []flow.Flow
	for _, dg := range testkit.ReadCapture(t, filepath.Join("testdata", "captures", name+".pcap")) {
		out = d.Decode(dg.Time, dg.Src, dg.Payload, out)
		all = append(all, out...)
	}
	return all, d
}

func TestCapturesMatchTshark(t *testing.T) {
	for _, name := range []string{"netflow5", "netflow9", "ipfix", "ipfix_biflow", "pmacct_netflow9", "pmacct_ipfix", "nfdump_netflow5", "ovs_ipfix"} {
		t.Run(name, func(t *testing.T) {
			exp := loadExpected(t, name)
			flows, d := decodeCapture(t, name)

			var want []string
			for _, r := range exp.Records {
				if (r.Proto == 1 || r.Proto == 58) && r.Dport == 0 {
					// flowhouse stores ICMP type and code in dst_port too.
					r.Dport = uint16(r.ICMPType)<<8 | uint16(r.ICMPCode)
				}
				if r.Bytes > 0 || r.Packets > 0 {
					want = append(want, flowKey(r.Src, r.Dst, r.Sport, r.Dport, r.Proto, r.Bytes, r.Packets, r.Tos, r.TCPFlags, r.StartMs, r.EndMs))
				}
				if r.RevBytes > 0 || r.RevPackets > 0 {
					want = append(want, flowKey(r.Dst, r.Src, r.Dport, r.Sport, r.Proto, r.RevBytes, r.RevPackets, r.Tos, r.RevFlags, r.StartMs, r.EndMs))
				}
			}
			var got []string
			for _, f := range flows {
				got = append(got, flowKey(f.SrcAddr.String(), f.DstAddr.String(), f.SrcPort, f.DstPort, f.IPProto, f.Bytes, f.Packets, f.ToS, f.TCPFlags, f.TimeStartMs, f.TimeEndMs))
			}
			sort.Strings(want)
			sort.Strings(got)
			if len(want) == 0 {
				t.Fatal("expected file has no records")
			}
			if len(got) != len(want) {
				t.Errorf("decoded %d flows, tshark %d", len(got), len(want))
			}
			mismatches := 0
			for i := 0; i < len(got) && i < len(want); i++ {
				if got[i] != want[i] && mismatches < 5 {
					t.Errorf("flow %d:\n got  %s\n want %s", i, got[i], want[i])
					mismatches++
				}
			}
			s := d.Stats()[0]
			if len(s.Drops) != 0 {
				t.Errorf("drops on a clean capture: %v", s.Drops)
			}
			// The captures are complete, so no sequence loss, even where the
			// exporter numbers IPFIX messages its own way (softflowd).
			if s.SequenceLost != 0 || s.SequenceExpected == 0 {
				t.Errorf("sequence: lost %d of %d on a complete capture", s.SequenceLost, s.SequenceExpected)
			}
		})
	}
}

func TestSFlowCaptureMatchesTshark(t *testing.T) {
	exp := loadExpected(t, "sflow5")
	flows, d := decodeCapture(t, "sflow5")
	var bytes, packets uint64
	for _, f := range flows {
		bytes += f.Bytes
		packets += f.Packets * uint64(f.SamplingRate)
		if f.Protocol != flow.ProtoSFlowV5 || f.ObservationDomain != 7 {
			t.Fatalf("flow not from sub-agent 7: %+v", f)
		}
	}
	all := exp.Totals.All
	if uint64(len(flows)) != all.Samples || packets != all.Packets || bytes != all.IPBytes {
		t.Errorf("decoded %d samples, %d packets, %d IP bytes; tshark %d, %d, %d",
			len(flows), packets, bytes, all.Samples, all.Packets, all.IPBytes)
	}
	if s := d.Stats()[0]; len(s.Drops) != 0 || s.SequenceLost != 0 {
		t.Errorf("drops %v, sequence lost %d", s.Drops, s.SequenceLost)
	}
}
