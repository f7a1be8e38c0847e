package collector

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Two exporting processes of one exporter address: a NetFlow v9 one and an
// IPFIX one, each teaching every kind of state the file keeps.
var (
	stateV9    = netip.MustParseAddrPort("127.0.0.10:40000")
	stateIPFIX = netip.MustParseAddrPort("127.0.0.10:40001")
	// v9 data: the 5-tuple, counters and FLOW_SAMPLER_ID.
	stateV9Tmpl = append(append([]tf{}, basicV4...), tf{48, 1, 0})
	// IPFIX data: an enterprise field, a variable-length field, the
	// selector and flowStart/EndSysUpTime, anchored by systemInitTimeMilliseconds.
	stateIPFIXTmpl = append(append([]tf{}, basicV4...),
		tf{1, 4, 9}, tf{82, 0xffff, 0}, tf{302, 4, 0}, tf{22, 4, 0}, tf{21, 4, 0})
	stateSysInitMs = uint64(t0.UnixMilli()) - 3_600_000
)

// stateLessons are the template and options datagrams, sent once.
func stateLessons() [][]byte {
	v9 := newNFv9(60000, uint32(t0.Unix()), 0, 3).
		optionsTemplate(260, []tf{{1, 4, 0}}, []tf{{48, 1, 0}, {34, 4, 0}}).
		data(260, rec(uint32(0), uint8(5), uint32(512))).
		template(256, stateV9Tmpl...).bytes()
	ipfix := newIPFIX(uint32(t0.Unix()), 0, 7).
		optionsTemplate(400, []tf{{302, 4, 0}}, []tf{{305, 4, 0}, {306, 4, 0}, {160, 8, 0}}).
		data(400, rec(uint32(11), uint32(1), uint32(99), stateSysInitMs)).
		optionsTemplate(401, []tf{{10, 4, 0}}, []tf{{82, 0xffff, 0}}).
		data(401, rec(uint32(3), uint8(4), []byte("ge-0"))).
		template(300, stateIPFIXTmpl...).bytes()
	return [][]byte{v9, ipfix}
}

// stateData are data sets only, as exporters send between template refreshes.
func stateData() (v9, ipfix []byte) {
	v9 = newNFv9(61000, uint32(t0.Unix()), 1, 3).
		data(256, append(basicV4Record(1, 2, 100, 1), 5), append(basicV4Record(3, 4, 200, 2), 5)).bytes()
	ipfix = newIPFIX(uint32(t0.Unix()), 1, 7).
		data(300, append(basicV4Record(5, 6, 300, 3),
			rec(uint32(0xdead), uint8(2), []byte("xy"), uint32(11), uint32(1000), uint32(2000))...)).bytes()
	return v9, ipfix
}

func teach(d *Decoder, at time.Time) {
	lessons := stateLessons()
	d.Decode(at, stateV9, lessons[0], nil)
	d.Decode(at, stateIPFIX, lessons[1], nil)
}

// stateOf snapshots every exporter of d, in a stable order.
func stateOf(d *Decoder, nowMs int64) []*exporterState {
	var out []*exporterState
	for _, e := range d.list() {
		e.mu.Lock()
		st := e.snapshot(nowMs)
		e.mu.Unlock()
		sort.Slice(st.templates, func(i, j int) bool {
			a, b := st.templates[i].key, st.templates[j].key
			return a.version < b.version || a.version == b.version && a.id < b.id
		})
		sort.Slice(st.rates, func(i, j int) bool { return st.rates[i].sampler < st.rates[j].sampler })
		out = append(out, st)
	}
	return out
}

func encoded(t *testing.T, nowMs int64, states []*exporterState) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := encodeState(&b, nowMs, states); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

var testLimits = stateLimits{exporters: 100, templates: 16, timeoutMs: (30 * time.Minute).Milliseconds()}

// reloaded is a new decoder given what file restores.
func reloaded(t *testing.T, file []byte, at time.Time) (*Decoder, *loadedState) {
	t.Helper()
	l, err := decodeState(bytes.NewReader(file), testLimits, at.UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	d := newTestDecoder()
	for _, st := range l.exporters {
		if !d.expect(st) {
			t.Fatal("decoder refused a restored exporter")
		}
	}
	return d, l
}

func TestStateRoundTripDecodesAsLive(t *testing.T) {
	live := newTestDecoder()
	teach(live, t0)
	at := t0.Add(time.Minute)
	file := encoded(t, at.UnixMilli(), stateOf(live, at.UnixMilli()))
	restored, l := reloaded(t, file, at)
	if len(l.exporters) != 1 || len(l.discarded) != 0 {
		t.Fatalf("loaded %d exporters, discarded %v; want 1 and nothing", len(l.exporters), l.discarded)
	}

	v9, ipfix := stateData()
	for _, tc := range []struct {
		name  string
		src   netip.AddrPort
		data  []byte
		rates []uint32
	}{
		{"v9 with the rate of its sampler (IE 48/34)", stateV9, v9, []uint32{512, 512}},
		{"IPFIX with packet interval/space (IE 305/306) and system init time", stateIPFIX, ipfix, []uint32{100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := live.Decode(at, tc.src, tc.data, nil)
			got := restored.Decode(at, tc.src, tc.data, nil)
			if len(got) != len(tc.rates) || !reflect.DeepEqual(got, want) {
				t.Fatalf("restored decoder gave\n%+v\nlive decoder gave\n%+v", got, want)
			}
			for i, f := range got {
				if f.SamplingRate != tc.rates[i] {
					t.Errorf("flow %d: sampling rate %d, want %d", i, f.SamplingRate, tc.rates[i])
				}
			}
		})
	}
	if f := restored.Decode(at, stateIPFIX, ipfix, nil)[0]; f.TimeStartMs != int64(stateSysInitMs)+1000 || f.TimeEndMs != int64(stateSysInitMs)+2000 {
		t.Errorf("times %d..%d, want system init + 1000..2000 ms", f.TimeStartMs, f.TimeEndMs)
	}
	if drops := dropsOf(t, restored); drops[ReasonTemplateNotFound] != 0 {
		t.Errorf("drops %v after the restore, want no template_not_found", drops)
	}
	// What the restored exporter holds is what the live one held: both
	// kinds of template of both protocols, every field (enterprise
	// numbers, variable lengths), rates by sampler, the init time, names.
	if got, want := stateOf(restored, at.UnixMilli()), stateOf(live, at.UnixMilli()); !reflect.DeepEqual(got, want) {
		t.Errorf("restored state\n%+v\nwant\n%+v", got[0], want[0])
	}
	st := stateOf(restored, at.UnixMilli())[0]
	if len(st.templates) != 5 || len(st.rates) != 2 || len(st.sysInit) != 1 || len(st.ifNames) != 1 || st.ifNames[0].Name != "ge-0" {
		t.Errorf("restored %d templates, rates %v, init %v, names %v; want 5, 2 rates, 1 init, ge-0",
			len(st.templates), st.rates, st.sysInit, st.ifNames)
	}
}

func TestRestoredTemplatesBehaveAsLearned(t *testing.T) {
	live := newTestDecoder()
	teach(live, t0)
	file := encoded(t, t0.UnixMilli(), stateOf(live, t0.UnixMilli()))
	v9, ipfix := stateData()
	at := t0.Add(time.Minute)

	t.Run("a redefinition replaces it", func(t *testing.T) {
		d, _ := reloaded(t, file, at)
		short := newNFv9(61000, uint32(t0.Unix()), 1, 3).template(256, basicV4...).
			data(256, basicV4Record(1, 2, 100, 1)).bytes()
		if n := len(d.Decode(at, stateV9, short, nil)); n != 1 {
			t.Errorf("%d flows with the new definition, want 1", n)
		}
	})
	t.Run("a withdrawal removes it", func(t *testing.T) {
		d, _ := reloaded(t, file, at)
		w := newIPFIX(uint32(t0.Unix()), 1, 7).set(2, rec(uint16(300), uint16(0))).bytes()
		d.Decode(at, stateIPFIX, w, nil)
		if n := len(d.Decode(at, stateIPFIX, ipfix, nil)); n != 0 || dropsOf(t, d)[ReasonTemplateNotFound] != 1 {
			t.Errorf("%d flows after the withdrawal, drops %v; want 0 and template_not_found", n, dropsOf(t, d))
		}
	})
	t.Run("it expires as a learned one does", func(t *testing.T) {
		d, _ := reloaded(t, file, at)
		late := t0.Add(30*time.Minute + time.Second)
		if n := len(d.Decode(late, stateV9, v9, nil)); n != 0 || dropsOf(t, d)[ReasonTemplateNotFound] != 1 {
			t.Errorf("%d flows past the timeout, drops %v; want 0 and template_not_found", n, dropsOf(t, d))
		}
	})
}

func TestStateLoadDropsExpiredAndBoundsWhatItKeeps(t *testing.T) {
	tmpl := func(id uint16, updatedMs int64, fields ...field) savedTemplate {
		if fields == nil {
			fields = []field{{ie: 8, length: 4}}
		}
		return savedTemplate{key: templateKey{version: 10, port: 1, domain: 1, id: id}, updatedMs: updatedMs, fields: fields}
	}
	now := t0.UnixMilli()
	timeout := testLimits.timeoutMs
	addr := func(i byte) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 0, i}) }
	tests := []struct {
		name          string
		states        []*exporterState
		lim           stateLimits
		wantTemplates []int // per kept exporter
		wantDiscarded map[string]int
	}{
		{"expired at load; a future time is clamped to now", []*exporterState{{addr: addr(1), templates: []savedTemplate{
			tmpl(256, now-timeout-1), tmpl(257, now-timeout), tmpl(258, now+timeout*100)}}},
			testLimits, []int{2}, map[string]int{DiscardExpired: 1}},
		{"beyond max_templates_per_exporter", []*exporterState{{addr: addr(1), templates: []savedTemplate{
			tmpl(256, now), tmpl(257, now), tmpl(258, now)}}},
			stateLimits{exporters: 10, templates: 2, timeoutMs: timeout}, []int{2}, map[string]int{DiscardTemplateLimit: 1}},
		{"beyond max_exporters, and an address twice", []*exporterState{
			{addr: addr(1), templates: []savedTemplate{tmpl(256, now)}},
			{addr: addr(1), templates: []savedTemplate{tmpl(256, now)}},
			{addr: addr(2), templates: []savedTemplate{tmpl(256, now)}},
			{addr: addr(3), templates: []savedTemplate{tmpl(256, now)}}},
			stateLimits{exporters: 2, templates: 2, timeoutMs: timeout}, []int{1, 1}, map[string]int{DiscardInvalid: 1, DiscardExporterLimit: 1}},
		{"entries no exporter could have sent", []*exporterState{{addr: addr(1), templates: []savedTemplate{
			tmpl(255, now),                          // a set ID, not a template ID
			tmpl(256, now, field{ie: 8, length: 0}), // records of zero bytes
			{key: templateKey{version: 9, id: 257}, updatedMs: now, fields: []field{{pen: 9, ie: 8, length: 4}}}, // v9 has no enterprise numbers
			{key: templateKey{version: 10, id: 258}, updatedMs: now, scopeLen: 2, fields: []field{{ie: 8, length: 4}}},
			tmpl(259, now, make([]field, maxTemplateFields+1)...), // more than a datagram holds
			tmpl(260, now), tmpl(260, now), // the same key twice
		}, rates: []savedRate{{domain: 1, sampler: 1, rate: 0}}}},
			testLimits, []int{1}, map[string]int{DiscardInvalid: 7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := decodeState(bytes.NewReader(encoded(t, now, tc.states)), tc.lim, now)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, st := range l.exporters {
				got = append(got, len(st.templates))
				for _, tt := range st.templates {
					if tt.updatedMs > now {
						t.Errorf("template %d kept a time in the future", tt.key.id)
					}
				}
			}
			if !reflect.DeepEqual(got, tc.wantTemplates) || !reflect.DeepEqual(l.discarded, tc.wantDiscarded) {
				t.Errorf("kept templates %v, discarded %v; want %v, %v", got, l.discarded, tc.wantTemplates, tc.wantDiscarded)
			}
		})
	}
}

// badStateFiles are state files that must not stop the collector, with
// the reason each is counted under.
func badStateFiles(t *testing.T) []struct {
	name, reason string
	file         []byte
} {
	live := newTestDecoder()
	teach(live, t0)
	good := encoded(t, t0.UnixMilli(), stateOf(live, t0.UnixMilli()))
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 0x40
	future := append([]byte(nil), good...)
	binary.BigEndian.PutUint16(future[4:], stateVersion+1)
	return []struct {
		name, reason string
		file         []byte
	}{
		{"empty", StateTruncated, nil},
		{"not a state file", StateCorrupt, []byte("{\"templates\": []}\n and more bytes")},
		{"cut in the middle", StateTruncated, good[:len(good)/2]},
		{"cut before its checksum", StateTruncated, good[:len(good)-2]},
		{"a flipped bit", StateCorrupt, flipped},
		{"bytes after the checksum", StateCorrupt, append(append([]byte(nil), good...), 0)},
		{"a later format version", StateFutureVersion, future},
	}
}

func TestBadStateFileIsMovedAsideAndTheCollectorStarts(t *testing.T) {
	for _, tc := range badStateFiles(t) {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "collector.state")
			if err := os.WriteFile(path, tc.file, 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := testConfig()
			cfg.StateFile = path
			reg := prometheus.NewRegistry()
			c, err := New(cfg, Deps{Sink: &memSink{}, Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Start(context.Background()); err != nil {
				t.Fatalf("start with a bad state file: %v", err)
			}
			c.Stop()
			if got := testutil.ToFloat64(c.stateMetrics.loadErrors.WithLabelValues(tc.reason)); got != 1 {
				t.Errorf("load errors{reason=%q} = %v, want 1", tc.reason, got)
			}
			if aside, err := os.ReadFile(path + ".corrupt"); err != nil || !bytes.Equal(aside, tc.file) {
				t.Errorf("the bad file was not moved aside intact (%v)", err)
			}
			// Stop wrote a new, valid, empty state.
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if l, err := decodeState(bytes.NewReader(b), testLimits, time.Now().UnixMilli()); err != nil || len(l.exporters) != 0 {
				t.Errorf("state written at stop: %v, %v; want an empty valid file", l, err)
			}
		})
	}
}

func TestPersisterWritesChangesAtOnceAndRefreshesSeldom(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "collector.state")
	d := newTestDecoder()
	m := newStateMetrics(nil)
	p := newPersister(path, []*Decoder{d}, 30*time.Minute, testLogger(t), m)
	writes := func() float64 { return testutil.ToFloat64(m.writes) }
	now := t0.UnixMilli()

	p.tick(now, false)
	if writes() != 0 {
		t.Fatalf("wrote with nothing learned")
	}
	teach(d, t0)
	p.tick(now+1000, false)
	if writes() != 1 {
		t.Fatalf("writes = %v after templates were learned, want 1", writes())
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	p.tick(now+2000, false)
	// A refresh changes only a time: written once refreshMs has passed.
	teach(d, t0.Add(3*time.Second))
	p.tick(now+3000, false)
	if writes() != 1 {
		t.Errorf("writes = %v after no change and a refresh within %d ms, want 1", writes(), p.refreshMs)
	}
	p.tick(now+1000+p.refreshMs, false)
	if writes() != 2 {
		t.Errorf("writes = %v once refreshMs passed, want 2", writes())
	}
	// A new rate is a change.
	d.Decode(t0, stateV9, newNFv9(60000, uint32(t0.Unix()), 2, 3).data(260, rec(uint32(0), uint8(5), uint32(1024))).bytes(), nil)
	p.tick(now+2000+p.refreshMs, false)
	if writes() != 3 {
		t.Errorf("writes = %v after a new sampling rate, want 3", writes())
	}
	b, _ := os.ReadFile(path)
	l, err := decodeState(bytes.NewReader(b), testLimits, now+3000+p.refreshMs)
	if err != nil || len(l.exporters) != 1 || len(l.exporters[0].templates) != 5 {
		t.Fatalf("the file holds %+v (%v), want one exporter with 5 templates", l.exporters, err)
	}
	for _, tt := range l.exporters[0].templates {
		if tt.updatedMs != t0.Add(3*time.Second).UnixMilli() {
			t.Errorf("template %d refreshed at %d, want the refresh's time", tt.key.id, tt.updatedMs)
		}
	}
}

func TestWriteFailureIsCounted(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d := newTestDecoder()
	teach(d, t0)
	m := newStateMetrics(nil)
	p := newPersister(filepath.Join(blocker, "collector.state"), []*Decoder{d}, 30*time.Minute, testLogger(t), m)
	p.tick(t0.UnixMilli(), false)
	if got := testutil.ToFloat64(m.writeErrors.WithLabelValues("mkdir")); got != 1 || !p.retry {
		t.Errorf("write errors{reason=mkdir} = %v, retry %v; want 1, true", got, p.retry)
	}
}

// TestCollectorRestartKeepsTemplates sends templates and options once,
// restarts the collector, and sends data only.
func TestCollectorRestartKeepsTemplates(t *testing.T) {
	cfg := testConfig()
	cfg.StateFile = filepath.Join(t.TempDir(), "collector.state")
	run := func(send [][]byte, done func(*Collector, *memSink) bool) (*Collector, *memSink) {
		sink := &memSink{}
		c, err := New(cfg, Deps{Sink: sink, Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		cfg.Listeners = []string{c.Addrs()[0].String()}
		for i, b := range send {
			src := []netip.AddrPort{stateV9, stateIPFIX}[i%2]
			conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(src))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.WriteToUDPAddrPort(b, c.Addrs()[0]); err != nil {
				t.Fatal(err)
			}
			conn.Close()
		}
		testkit.Eventually(t, "the datagrams to be decoded", 5*time.Second, func() bool { return done(c, sink) })
		c.Stop()
		return c, sink
	}
	lessons := stateLessons()
	run(lessons, func(c *Collector, _ *memSink) bool {
		n := 0
		for _, s := range c.Stats() {
			n += s.Templates
		}
		return n == 5
	})
	v9, ipfix := stateData()
	c, sink := run([][]byte{v9, ipfix}, func(_ *Collector, s *memSink) bool { return s.count() == 3 })
	rates := map[uint32]int{}
	for _, f := range sink.flows {
		rates[f.SamplingRate]++
	}
	if !reflect.DeepEqual(rates, map[uint32]int{512: 2, 100: 1}) {
		t.Errorf("rates %v, want 2 flows at 512 and 1 at 100", rates)
	}
	for _, s := range c.Stats() {
		if s.Drops[ReasonTemplateNotFound] != 0 {
			t.Errorf("exporter %v: drops %v, want no template_not_found", s.Addr, s.Drops)
		}
	}
	if got := testutil.ToFloat64(c.stateMetrics.restored.WithLabelValues("templates")); got != 2 {
		t.Errorf("restored data templates = %v, want 2", got)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}
