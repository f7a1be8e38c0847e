package collector

import (
	"github.com/flowhouse/flowhouse/internal/testkit"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzDecode feeds arbitrary datagrams to one decoder, the way an attacker
// who can reach the UDP port would. Seeds come from real exporter captures
// (testdata/captures, via captureSeeds) and the hand-built cases of the
// unit tests; the fuzzer's own finds are kept in testdata/fuzz.
func FuzzDecode(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	d := NewDecoder(DecoderConfig{MaxTemplatesPerExporter: 64, MaxExporters: 8}, nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		flows := d.Decode(t0, exporterA, b, nil)
		for i := range flows {
			if flows[i].Protocol == 0 {
				t.Fatalf("flow %d without protocol", i)
			}
		}
	})
}

// FuzzDecodeAfterTemplates decodes arbitrary data after a real template,
// so the fuzzer reaches the data-record paths without having to invent a
// template first.
func FuzzDecodeAfterTemplates(f *testing.F) {
	tmpl := newIPFIX(0, 0, 1).
		template(256, basicV4...).
		template(257, tf{27, 16, 0}, tf{82, 0xffff, 0}, tf{1, 8, penReverse}, tf{152, 8, 0}).
		optionsTemplate(258, []tf{{302, 4, 0}}, []tf{{305, 4, 0}, {306, 4, 0}}).bytes()
	f.Add(newIPFIX(0, 1, 1).data(256, basicV4Record(1, 2, 3, 4)).bytes())
	f.Add(newIPFIX(0, 1, 1).data(258, rec(uint32(1), uint32(0), uint32(0))).bytes())
	// The costliest datagrams we can build, so mutations start from them
	// (the worst template ones are also in testdata/fuzz).
	for _, c := range costlyCases() {
		f.Add(c.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d := NewDecoder(DecoderConfig{MaxTemplatesPerExporter: 64}, nil)
		d.Decode(t0, exporterA, tmpl, nil)
		start := time.Now()
		d.Decode(t0, exporterA, b, nil)
		if time.Since(start) > time.Second {
			t.Fatalf("one datagram took %s", time.Since(start))
		}
	})
}

func fuzzSeeds(tb testing.TB) [][]byte {
	seeds := [][]byte{
		newIPFIX(0, 0, 1).template(256, basicV4...).data(256, basicV4Record(1, 2, 3, 4)).bytes(),
		newNFv9(1, 1, 0, 0).template(256, basicV4...).data(256, basicV4Record(1, 2, 3, 4)).bytes(),
		newIPFIX(0, 0, 1).template(256).data(256, []byte{0, 0, 0, 0}).bytes(),
	}
	seeds = append(seeds, captureSeeds(tb)...)
	hostile, _ := filepath.Glob(filepath.Join("testdata", "hostile", "*.bin"))
	for _, file := range hostile {
		if b, err := os.ReadFile(file); err == nil {
			seeds = append(seeds, b)
		}
	}
	return seeds
}

// captureSeeds returns the datagrams of the real captures, if present.
func captureSeeds(tb testing.TB) [][]byte {
	files, _ := filepath.Glob(filepath.Join("testdata", "captures", "*.pcap"))
	var out [][]byte
	for _, file := range files {
		if _, err := os.Stat(file); err != nil {
			continue
		}
		for _, dg := range testkit.ReadCapture(tb, file) {
			out = append(out, dg.Payload)
		}
	}
	return out
}
