package replay

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/collector"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/nfmsg"
	"github.com/flowhouse/flowhouse/internal/pcapfile"
)

const captures = "../../collector/testdata/captures"

// replayAt is the fixed export clock of the tests: whole seconds, so that
// the v9 and IPFIX headers carry it exactly.
var replayAt = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// exportMs is the export time a datagram's header says.
func exportMs(p []byte) int64 {
	switch binary.BigEndian.Uint16(p) {
	case 5:
		return int64(binary.BigEndian.Uint32(p[8:]))*1000 + int64(binary.BigEndian.Uint32(p[12:]))/1e6
	case 9:
		return int64(binary.BigEndian.Uint32(p[8:])) * 1000
	}
	return int64(binary.BigEndian.Uint32(p[4:])) * 1000
}

// key renders a decoded flow without what a replay changes on purpose
// (the exporter, the receive time); times are moved by shift, the
// replay's export time less the capture datagram's.
func key(f flow.Flow, shift int64) string {
	f.TimeReceivedMs, f.ExporterAddr, f.ExporterPort = 0, flow.Addr{}, 0
	f.TimeStartMs += shift
	f.TimeEndMs += shift
	return fmt.Sprintf("%+v", f)
}

// decodeOriginal decodes the capture as the collector would, each flow
// keyed with its times moved to what the replay at replayAt must give.
func decodeOriginal(t *testing.T, ds []pcapfile.Datagram) []string {
	t.Helper()
	d := collector.NewDecoder(collector.DecoderConfig{}, nil)
	var out []flow.Flow
	var keys []string
	for _, dg := range ds {
		out = d.Decode(dg.Time, dg.Src, dg.Payload, out)
		for _, f := range out {
			keys = append(keys, key(f, replayAt.UnixMilli()-exportMs(dg.Payload)))
		}
	}
	sort.Strings(keys)
	return keys
}

type replayed struct {
	keys      []string
	perSource map[netip.Addr]int
	stats     []flow.ExporterStats
	firstSet  map[netip.Addr]uint16 // the first set ID each exporter sent
	rep       *Report
}

// replayDecoded replays capt with cfg (not sent: every datagram is
// decoded by one collector decoder, as if received) and returns what was
// decoded.
func replayDecoded(t *testing.T, capt *Capture, cfg Config) replayed {
	t.Helper()
	cfg.Send = false
	cfg.Now = func() time.Time { return replayAt }
	d := collector.NewDecoder(collector.DecoderConfig{}, nil)
	got := replayed{perSource: map[netip.Addr]int{}, firstSet: map[netip.Addr]uint16{}}
	var out []flow.Flow
	cfg.OnDatagram = func(_ int, src netip.AddrPort, payload []byte) {
		if _, ok := got.firstSet[src.Addr()]; !ok {
			hl := map[uint16]int{5: 24, 9: 20, 10: 16}[binary.BigEndian.Uint16(payload)]
			got.firstSet[src.Addr()] = binary.BigEndian.Uint16(payload[hl:])
		}
		out = d.Decode(replayAt, src, payload, out)
		for _, f := range out {
			got.keys = append(got.keys, key(f, 0))
			got.perSource[src.Addr()]++
		}
	}
	r, err := New(capt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got.rep, err = r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	sort.Strings(got.keys)
	got.stats = d.Stats()
	return got
}

// checkClean fails unless the decoder saw no drop and no sequence loss,
// reset or restart in any stream.
func checkClean(t *testing.T, stats []flow.ExporterStats) {
	t.Helper()
	for _, s := range stats {
		if len(s.Drops) > 0 {
			t.Errorf("exporter %s: drops %v", s.Addr, s.Drops)
		}
		if s.SequenceLost != 0 {
			t.Errorf("exporter %s: %d lost by the sequence numbers", s.Addr, s.SequenceLost)
		}
		for _, st := range s.Streams {
			if st.Lost != 0 || st.Resets != 0 || st.Restarts != 0 {
				t.Errorf("exporter %s stream %d: lost %d resets %d restarts %d", s.Addr, st.ObservationDomain, st.Lost, st.Resets, st.Restarts)
			}
		}
	}
}

// TestReplayGivesTheCapturesRecords: one exporter replaying a capture
// once, at each density, is decoded into the capture's flows, field for
// field (times moved with the export time), with no loss reported and
// the templates first.
func TestReplayGivesTheCapturesRecords(t *testing.T) {
	for _, name := range []string{"pmacct_netflow9", "pmacct_ipfix", "netflow9", "ipfix", "ipfix_biflow", "ipfix_ether", "netflow5", "nfdump_netflow5"} {
		ds, err := pcapfile.Read(filepath.Join(captures, name+".pcap"))
		if err != nil {
			t.Fatal(err)
		}
		want := decodeOriginal(t, ds)
		capt, err := Parse(ds)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, density := range []int{1, 4, 10, 30} {
			t.Run(fmt.Sprintf("%s/%d", name, density), func(t *testing.T) {
				cfg := DefaultConfig()
				cfg.Exporters, cfg.Density, cfg.Count, cfg.TemplatePackets = 1, density, uint64(capt.Records()), 7
				got := replayDecoded(t, capt, cfg)
				checkClean(t, got.stats)
				if got.rep.Flows != uint64(capt.Records()) {
					t.Errorf("sent %d records, want the capture's %d", got.rep.Flows, capt.Records())
				}
				if len(got.keys) != len(want) {
					t.Fatalf("decoded %d flows from the replay, %d from the capture", len(got.keys), len(want))
				}
				for i := range want {
					if got.keys[i] != want[i] {
						t.Fatalf("flow %d differs:\nreplay  %s\ncapture %s", i, got.keys[i], want[i])
					}
				}
				if capt.Version != versionV5 {
					if set := got.firstSet[cfg.SourceBase]; set >= 256 {
						t.Errorf("first set sent is data (%d), not templates", set)
					}
					if got.rep.TemplateDatagrams < 1+(got.rep.Datagrams-got.rep.TemplateDatagrams-1)/7 {
						t.Errorf("%d template datagrams for %d datagrams, want one per 7 data datagrams", got.rep.TemplateDatagrams, got.rep.Datagrams)
					}
				}
				if max := (capt.Records() + density - 1) / density; int(got.rep.Datagrams-got.rep.TemplateDatagrams) < max {
					t.Errorf("%d data datagrams for %d records at %d a datagram", got.rep.Datagrams-got.rep.TemplateDatagrams, capt.Records(), density)
				}
			})
		}
	}
}

// TestReplayLoopsFromManyExporters: several exporters looping the capture
// each number their own streams: no loss, each exporter's flows all the
// capture's, in the amounts reported.
func TestReplayLoopsFromManyExporters(t *testing.T) {
	for _, name := range []string{"pmacct_netflow9", "pmacct_ipfix", "netflow5"} {
		t.Run(name, func(t *testing.T) {
			ds, err := pcapfile.Read(filepath.Join(captures, name+".pcap"))
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]bool{}
			for _, k := range decodeOriginal(t, ds) {
				want[k] = true
			}
			capt, err := Parse(ds)
			if err != nil {
				t.Fatal(err)
			}
			cfg := DefaultConfig()
			cfg.Exporters, cfg.Density, cfg.Count = 3, 10, uint64(capt.Records()*3*5/2)
			got := replayDecoded(t, capt, cfg)
			checkClean(t, got.stats)
			if got.rep.Flows != cfg.Count || len(got.keys) != int(cfg.Count) {
				t.Fatalf("sent %d, decoded %d, want %d", got.rep.Flows, len(got.keys), cfg.Count)
			}
			for _, x := range got.rep.Exporters {
				a := netip.MustParseAddrPort(x.Address).Addr()
				if got.perSource[a] != int(x.Flows) {
					t.Errorf("exporter %s: decoded %d, sent %d", a, got.perSource[a], x.Flows)
				}
			}
			if len(got.perSource) != 3 {
				t.Errorf("flows from %d sources, want 3", len(got.perSource))
			}
			for _, k := range got.keys {
				if !want[k] {
					t.Fatalf("replayed flow not in the capture: %s", k)
				}
			}
		})
	}
}

// TestReplayVariableLengthFields: IPFIX records with variable-length
// fields are split by their own lengths and re-sent whole.
func TestReplayVariableLengthFields(t *testing.T) {
	src := netip.MustParseAddrPort("127.0.0.1:4739")
	tmpl := []nfmsg.Field{{IE: 8, Length: 4}, {IE: 82, Length: 0xffff}, {IE: 12, Length: 4}, {IE: 1, Length: 8}, {IE: 152, Length: 8}}
	a, b := []byte{192, 0, 2, 1}, []byte{198, 51, 100, 7}
	rec := func(name []byte, bytes uint64) []byte {
		return nfmsg.Record(a, nfmsg.Variable(name), b, bytes, uint64(replayAt.UnixMilli()-90_000))
	}
	at := uint32(replayAt.Unix() - 3600)
	ds := []pcapfile.Datagram{
		{Src: src, Payload: nfmsg.NewIPFIX(at, 0, 7).Template(300, tmpl...).Data(300, rec([]byte("eth0"), 10), rec(make([]byte, 300), 20)).Bytes()},
		{Src: src, Payload: nfmsg.NewIPFIX(at+1, 2, 7).Data(300, rec(nil, 30), rec([]byte("x"), 40), rec([]byte("ge-0/0/0.0"), 50)).Bytes()},
	}
	want := decodeOriginal(t, ds)
	capt, err := Parse(ds)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Exporters, cfg.Density, cfg.Count = 1, 2, 5
	got := replayDecoded(t, capt, cfg)
	checkClean(t, got.stats)
	if strings.Join(got.keys, "\n") != strings.Join(want, "\n") {
		t.Fatalf("replay:\n%s\ncapture:\n%s", strings.Join(got.keys, "\n"), strings.Join(want, "\n"))
	}
}

// TestReplayRefuses: what cannot be replayed is an error that says why.
func TestReplayRefuses(t *testing.T) {
	read := func(name string) []pcapfile.Datagram {
		ds, err := pcapfile.Read(filepath.Join(captures, name+".pcap"))
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
	v5, err := Parse(read("netflow5"))
	if err != nil {
		t.Fatal(err)
	}
	v9 := read("netflow9")
	for _, c := range []struct {
		name string
		err  func() error
		want string
	}{
		{"sflow", func() error { _, err := Parse(read("sflow5")); return err }, "sFlow captures are not supported"},
		{"mixed versions", func() error { _, err := Parse(append(read("netflow5")[:1], v9...)); return err }, "one export version per capture"},
		{"no templates", func() error { _, err := Parse(v9[len(v9)-1:]); return err }, "no data records"},
		{"v5 density", func() error { c := DefaultConfig(); c.Density, c.Count = 31, 1; _, err := New(v5, c); return err }, "at most 30"},
		{"outside loopback", func() error {
			c := DefaultConfig()
			c.Count, c.Target = 1, netip.MustParseAddrPort("192.0.2.1:2055")
			_, err := New(v5, c)
			return err
		}, "127.0.0.0/8"},
	} {
		if err := c.err(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
}

// TestReplaySendsOverUDP: the datagrams go out of one socket per exporter,
// bound to its address, paced, and a collector decoder reading the
// socket gets every flow.
func TestReplaySendsOverUDP(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	_ = pc.SetReadBuffer(4 << 20)
	capt, err := Load(filepath.Join(captures, "pmacct_netflow9.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Target = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	cfg.Exporters, cfg.Density, cfg.Count, cfg.Rate = 2, 4, 2000, 20000
	r, err := New(capt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *Report, 1)
	go func() {
		rep, err := r.Run(context.Background())
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	d := collector.NewDecoder(collector.DecoderConfig{}, nil)
	buf := make([]byte, 65536)
	var out []flow.Flow
	got := 0
	for got < int(cfg.Count) {
		_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, src, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("after %d flows: %v", got, err)
		}
		if src.Addr() != cfg.SourceBase && src.Addr() != cfg.SourceBase.Next() {
			t.Fatalf("datagram from %s, not an exporter's address", src)
		}
		out = d.Decode(time.Now(), src, buf[:n], out)
		got += len(out)
	}
	rep := <-done
	if rep.Flows != cfg.Count || rep.UnsentFlows != 0 || got != int(cfg.Count) {
		t.Fatalf("sent %d (unsent %d), decoded %d, want %d", rep.Flows, rep.UnsentFlows, got, cfg.Count)
	}
	checkClean(t, d.Stats())
}
