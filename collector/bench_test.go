package collector

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/netsampler/goflow2/v2/decoders/netflow"
	"github.com/netsampler/goflow2/v2/decoders/netflowlegacy"
	"github.com/netsampler/goflow2/v2/decoders/sflow"
	"github.com/netsampler/goflow2/v2/producer"
	protoproducer "github.com/netsampler/goflow2/v2/producer/proto"
)

// The decode benchmarks replay real exporter captures through our decoder
// and through goflow2's own path (its decoders plus producer/proto, as its
// NetFlowPipe/SFlowPipe do minus the output formatting), in the same run,
// and report ns per flow so the two can be compared directly.

var benchCaptures = []struct{ name, file string }{
	{"netflow5", "netflow5.pcap"},
	{"netflow9", "netflow9.pcap"},
	{"ipfix", "ipfix.pcap"},
	{"sflow5", "sflow5.pcap"},
}

func loadBench(b *testing.B, file string) [][]byte {
	b.Helper()
	var out [][]byte
	for _, dg := range testkit.ReadCapture(b, filepath.Join("testdata", "captures", file)) {
		out = append(out, dg.Payload)
	}
	if len(out) == 0 {
		b.Skipf("no datagrams in %s", file)
	}
	return out
}

func BenchmarkDecode(b *testing.B) {
	src := netip.MustParseAddrPort("127.0.0.1:9999")
	for _, c := range benchCaptures {
		datagrams := loadBench(b, c.file)
		b.Run(c.name+"/flowhouse", func(b *testing.B) {
			d := NewDecoder(DecoderConfig{}, nil)
			out := make([]flow.Flow, 0, 64)
			// Prime templates once, as a long-running collector has them.
			for _, dg := range datagrams {
				out = d.Decode(time.Now(), src, dg, out)
			}
			b.ReportAllocs()
			b.ResetTimer()
			flows := 0
			now := time.Now()
			for i := 0; i < b.N; i++ {
				out = d.Decode(now, src, datagrams[i%len(datagrams)], out)
				flows += len(out)
			}
			reportPerFlow(b, flows)
		})
		b.Run(c.name+"/goflow2", func(b *testing.B) {
			g := newGoflow2Path(b)
			for _, dg := range datagrams {
				g.decode(src, dg)
			}
			b.ReportAllocs()
			b.ResetTimer()
			flows := 0
			for i := 0; i < b.N; i++ {
				flows += g.decode(src, datagrams[i%len(datagrams)])
			}
			reportPerFlow(b, flows)
		})
	}
}

func reportPerFlow(b *testing.B, flows int) {
	if flows == 0 {
		b.Fatal("no flows decoded")
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(flows), "ns/flow")
	b.ReportMetric(float64(flows)/float64(b.N), "flows/op")
}

type goflow2Path struct {
	templates netflow.NetFlowTemplateSystem
	producer  producer.ProducerInterface
	now       time.Time
}

func newGoflow2Path(tb testing.TB) *goflow2Path {
	cfg, err := (&protoproducer.ProducerConfig{}).Compile()
	if err != nil {
		tb.Fatal(err)
	}
	p, err := protoproducer.CreateProtoProducer(cfg, protoproducer.CreateSamplingSystem)
	if err != nil {
		tb.Fatal(err)
	}
	return &goflow2Path{templates: netflow.CreateTemplateSystem(), producer: p, now: time.Now()}
}

// decode mirrors goflow2's utils/pipe.go for one datagram and returns the
// number of flow messages produced.
func (g *goflow2Path) decode(src netip.AddrPort, payload []byte) int {
	args := &producer.ProduceArgs{Src: src, TimeReceived: g.now, SamplerAddress: src.Addr()}
	var msg interface{}
	if len(payload) >= 4 && payload[0] == 0 && payload[1] == 0 {
		var p sflow.Packet
		if err := sflow.DecodeMessageVersion(bytes.NewBuffer(payload), &p); err != nil {
			return 0
		}
		msg = &p
	} else if len(payload) >= 2 && payload[1] == 5 {
		var p netflowlegacy.PacketNetFlowV5
		if err := netflowlegacy.DecodeMessageVersion(bytes.NewBuffer(payload), &p); err != nil {
			return 0
		}
		msg = &p
	} else {
		var v9 netflow.NFv9Packet
		var ipfix netflow.IPFIXPacket
		if err := netflow.DecodeMessageVersion(bytes.NewBuffer(payload), g.templates, &v9, &ipfix); err != nil {
			return 0
		}
		if payload[1] == 9 {
			msg = &v9
		} else {
			msg = &ipfix
		}
	}
	flows, err := g.producer.Produce(msg, args)
	n := len(flows)
	g.producer.Commit(flows)
	if err != nil {
		return 0
	}
	return n
}

// BenchmarkDecodeCostPerByte compares what a byte of the worst datagrams we
// can build costs to decode with what a byte of a real capture costs: the
// ratio, not the absolute time, is what an attacker gains per byte sent.
func BenchmarkDecodeCostPerByte(b *testing.B) {
	src := netip.MustParseAddrPort("127.0.0.1:9999")
	run := func(b *testing.B, prep, datagrams [][]byte) {
		d := NewDecoder(DecoderConfig{}, nil)
		out := make([]flow.Flow, 0, 64)
		now := time.Now()
		for _, dg := range append(prep, datagrams...) {
			out = d.Decode(now, src, dg, out)
		}
		b.ReportAllocs()
		b.ResetTimer()
		bytes := 0
		for i := 0; i < b.N; i++ {
			dg := datagrams[i%len(datagrams)]
			out = d.Decode(now, src, dg, out)
			bytes += len(dg)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(bytes), "ns/byte")
	}
	for _, c := range benchCaptures {
		datagrams := loadBench(b, c.file)
		b.Run("capture/"+c.name, func(b *testing.B) { run(b, nil, datagrams) })
	}
	for _, c := range costlyCases() {
		b.Run("hostile/"+c.name, func(b *testing.B) { run(b, c.prep, [][]byte{c.b}) })
	}
}

// BenchmarkDecodeMapped decodes IPFIX records of the 5-tuple and the NAT
// quad, 20 to a datagram, with the NAT fields mapped (extra_fields) and
// not (skipped): what a mapped field costs over one that is skipped.
func BenchmarkDecodeMapped(b *testing.B) {
	src := netip.MustParseAddrPort("127.0.0.1:9999")
	fields := append(append([]tf{}, basicV4...), tf{225, 4, 0}, tf{226, 4, 0}, tf{227, 2, 0}, tf{228, 2, 0})
	record := append(basicV4Record(40000, 443, 1500, 3), rec([]byte{203, 0, 113, 5}, []byte{198, 51, 100, 80}, uint16(61000), uint16(8443))...)
	records := make([][]byte, 20)
	for i := range records {
		records[i] = record
	}
	dg := newIPFIX(uint32(time.Now().Unix()), 0, 1).template(256, fields...).data(256, records...).bytes()
	for _, c := range []struct {
		name   string
		fields []ExtraField
	}{{"skipped", nil}, {"mapped", natMPLSFields[:4]}} {
		b.Run(c.name, func(b *testing.B) {
			d := NewDecoder(DecoderConfig{ExtraFields: c.fields}, nil)
			now := time.Now()
			out := d.Decode(now, src, dg, make([]flow.Flow, 0, 64))
			b.ReportAllocs()
			b.ResetTimer()
			flows := 0
			for i := 0; i < b.N; i++ {
				out = d.Decode(now, src, dg, out)
				flows += len(out)
			}
			reportPerFlow(b, flows)
		})
	}
}
