package pcapfile

import (
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

const capturesDir = "../../collector/testdata/captures"

// expected is the part of NAME.expected.json (written by
// testdata/gen/tshark_expected.py from tshark's decoding) that this test uses.
type expected struct {
	UDPPort int `json:"udp_port"`
	Totals  struct {
		Datagrams int `json:"datagrams"`
	} `json:"totals"`
	Datagrams []struct {
		Frame   int `json:"frame"`
		Version int `json:"version"`
	} `json:"datagrams"`
}

// TestCaptures reads every exporter capture and checks it against what
// tshark found in it: same number of datagrams, all to the capture's port,
// each with the flow protocol version tshark decoded.
func TestCaptures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(capturesDir, "*.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no captures in %s (testdata/gen/capture.sh makes them)", capturesDir)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".pcap")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(capturesDir, name+".expected.json"))
			if err != nil {
				t.Fatalf("every capture needs its tshark expectation: %v", err)
			}
			var want expected
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			ds := readOrFail(t, file)
			if len(ds) != want.Totals.Datagrams || len(ds) != len(want.Datagrams) {
				t.Fatalf("read %d datagrams, tshark saw %d", len(ds), want.Totals.Datagrams)
			}
			loop := netip.MustParseAddr("127.0.0.1")
			var prev time.Time
			for i, d := range ds {
				if d.Dst.Addr() != loop || d.Src.Addr() != loop || int(d.Dst.Port()) != want.UDPPort {
					t.Errorf("datagram %d: %v -> %v, want 127.0.0.1 -> 127.0.0.1:%d", i+1, d.Src, d.Dst, want.UDPPort)
				}
				if d.Time.Before(prev) || d.Time.Year() < 2024 || d.Time.Location() != time.UTC {
					t.Errorf("datagram %d: time %v (previous %v)", i+1, d.Time, prev)
				}
				prev = d.Time
				if len(d.Payload) < 4 {
					t.Fatalf("datagram %d: payload of %d bytes", i+1, len(d.Payload))
				}
				v := int(binary.BigEndian.Uint16(d.Payload))
				if strings.HasPrefix(name, "sflow") {
					v = int(binary.BigEndian.Uint32(d.Payload))
				}
				if v != want.Datagrams[i].Version {
					t.Errorf("datagram %d: version %d, tshark says %d", i+1, v, want.Datagrams[i].Version)
				}
			}
		})
	}
}

// TestRealLinkTypes reads small captures of the same four datagrams (IPv4,
// IPv6, IPv4, IPv6 to port 9999 on the loopback, payload "hello vN i\n")
// written by tcpdump -i any (Linux cooked v1 and v2) and by tshark (pcapng,
// nanosecond timestamps).
func TestRealLinkTypes(t *testing.T) {
	for _, file := range []string{"lo_sll.pcap", "lo_sll2.pcap", "lo_ethernet.pcapng"} {
		t.Run(file, func(t *testing.T) {
			ds := readOrFail(t, filepath.Join("testdata", file))
			if len(ds) != 4 {
				t.Fatalf("got %d datagrams, want 4", len(ds))
			}
			for i, d := range ds {
				fam, host := "v4", "127.0.0.1"
				if i%2 == 1 {
					fam, host = "v6", "::1"
				}
				if d.Dst != netip.AddrPortFrom(netip.MustParseAddr(host), 9999) || d.Src.Addr() != d.Dst.Addr() {
					t.Errorf("datagram %d: %v -> %v", i, d.Src, d.Dst)
				}
				if want := "hello " + fam + " " + string(rune('1'+i/2)) + "\n"; string(d.Payload) != want {
					t.Errorf("datagram %d: payload %q, want %q", i, d.Payload, want)
				}
				if d.Time.Year() < 2024 {
					t.Errorf("datagram %d: time %v", i, d.Time)
				}
			}
			if file == "lo_ethernet.pcapng" && ds[0].Time.Nanosecond()%1000 == 0 && ds[1].Time.Nanosecond()%1000 == 0 {
				t.Errorf("pcapng written with nanosecond resolution read as microseconds: %v %v", ds[0].Time, ds[1].Time)
			}
		})
	}
}

// TestCutShortIsAnError: a datagram the snap length cut is an error, and
// what is not UDP, or is a fragment, is skipped.
func TestCutShortIsAnError(t *testing.T) {
	frame := func(ip *layers.IPv4, payload string) []byte {
		udp := &layers.UDP{SrcPort: 4000, DstPort: 2055}
		udp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		ls := []gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: make([]byte, 6), DstMAC: make([]byte, 6), EthernetType: layers.EthernetTypeIPv4}, ip, udp, gopacket.Payload(payload)}
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	ip := func() *layers.IPv4 {
		return &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: []byte{192, 0, 2, 1}, DstIP: []byte{192, 0, 2, 2}}
	}
	write := func(t *testing.T, snap int, frames ...[]byte) string {
		path := filepath.Join(t.TempDir(), "x.pcap")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		w := pcapgo.NewWriter(f)
		if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
			t.Fatal(err)
		}
		for _, b := range frames {
			n := min(len(b), snap)
			if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, 0), CaptureLength: n, Length: len(b)}, b[:n]); err != nil {
				t.Fatal(err)
			}
		}
		return path
	}
	fragment := ip()
	fragment.Flags = layers.IPv4MoreFragments
	notUDP := ip()
	notUDP.Protocol = layers.IPProtocolICMPv4
	path := write(t, 1<<16, frame(ip(), "whole"), frame(fragment, "first part"), frame(notUDP, "icmp"))
	ds, err := Read(path)
	if err != nil || len(ds) != 1 || string(ds[0].Payload) != "whole" || ds[0].Src != netip.MustParseAddrPort("192.0.2.1:4000") {
		t.Fatalf("got %+v, %v; want the one whole datagram", ds, err)
	}
	if _, err := Read(write(t, 14+20+8+3, frame(ip(), "cut short"))); err == nil || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("a datagram cut by the snap length: error %v", err)
	}
}

func readOrFail(t *testing.T, path string) []Datagram {
	t.Helper()
	ds, err := Read(path)
	if err != nil {
		t.Fatalf("read capture %s: %v", path, err)
	}
	return ds
}
