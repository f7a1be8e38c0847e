package main

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/flowhouse/flowhouse/flowgen/replay"
)

// TestNfcapdStepCountsWhatItStored replays a capture into a real nfcapd
// at a rate it keeps up with: the step counts every flow sent as
// delivered (from nfdump's reading of its files) and measures its CPU.
func TestNfcapdStepCountsWhatItStored(t *testing.T) {
	if _, err := exec.LookPath("nfcapd"); err != nil {
		t.Skip("nfcapd not installed (scripts/deps.sh --bench)")
	}
	env := &replayEnvironment{tmp: t.TempDir()}
	capt, err := replay.Load("../../collector/testdata/captures/pmacct_netflow9.pcap")
	if err != nil {
		t.Fatal(err)
	}
	c, err := startReplayCollector(context.Background(), options{}, env, "nfcapd")
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.step(context.Background(), func(target netip.AddrPort) (*replay.Report, error) {
		cfg := replay.DefaultConfig()
		cfg.Target, cfg.Exporters, cfg.Density, cfg.Count, cfg.Rate = target, 2, 10, 3000, 20000
		r, err := replay.New(capt, cfg)
		if err != nil {
			return nil, err
		}
		return r.Run(context.Background())
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != 3000 || st.Delivered != st.Sent {
		t.Fatalf("sent %d, delivered %d: want all 3000", st.Sent, st.Delivered)
	}
	if st.PeakRSSMiB <= 0 || st.Density != 10 {
		t.Fatalf("step %+v: no peak RSS, or not the density asked", st)
	}
}

// TestReplayReportRatios: the ratios are to flowhouse embedded at the
// same density and rate, and a row without one shows none.
func TestReplayReportRatios(t *testing.T) {
	r := &ReplayResult{Steps: []ReplayStep{
		{Collector: "embedded", Density: 4, Offered: 1000, Sent: 1_000_000, CPUSeconds: 2, PeakRSSMiB: 400},
		{Collector: "nfcapd", Density: 4, Offered: 1000, Sent: 1_000_000, CPUSeconds: 1, PeakRSSMiB: 10},
		{Collector: "goflow2", Density: 10, Offered: 1000, Sent: 2_000_000, CPUSeconds: 8, PeakRSSMiB: 800},
	}}
	var b strings.Builder
	writeReplay(&b, r)
	out := b.String()
	for _, want := range []string{"| nfcapd | 1000 | 0 | 1000000 | 0 | 0.00% | 0 | 1.00 | 0.00 |  | 10 | 0.50x | 0.03x |",
		"| goflow2 | 1000 | 0 | 2000000 | 0 | 0.00% | 0 | 4.00 | 0.00 |  | 800 |  |  |", "### 4 records per datagram", "### 10 records per datagram"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
