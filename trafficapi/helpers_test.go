package trafficapi

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/flow"
	"github.com/flowhouse/flowhouse/internal/apitest"
	"github.com/flowhouse/flowhouse/internal/dbapi"
	"github.com/flowhouse/flowhouse/internal/enginetest"
	"github.com/flowhouse/flowhouse/store"
	"github.com/flowhouse/flowhouse/tenant"
)

func TestMain(m *testing.M) { enginetest.Main(m) }

// noTenant is a token of no tenant and not of all: it must read nothing.
const noTenant = "no-tenant"

var tables = []string{"flows", "flows_1m", "flows_1h"}

// serve starts an API server with the traffic handlers over reader and
// returns a client that validates every exchange against the document.
func serve(t *testing.T, cfg Config, deps Deps) *apitest.Client {
	t.Helper()
	if deps.Tenants == nil {
		tt, err := tenant.New(tenant.Config{Default: "a", Exporters: []tenant.Exporter{{Match: "203.0.113.0/24", Tenant: "b"}}})
		if err != nil {
			t.Fatal(err)
		}
		deps.Tenants = tt
	}
	if deps.Retention == (store.RetentionConfig{}) {
		deps.Retention = store.DefaultConfig().Retention
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	auth := apitest.Principals("a", "b")
	auth[noTenant] = api.Principal{TokenID: "tok_none", TokenName: "no tenant", Role: api.RoleRead}
	h := New(cfg, deps)
	return apitest.Serve(t, api.Config{}, auth, func(s *api.Server) {
		s.AddSpec("traffic", Spec)
		s.Register(h.Register)
	})
}

// insert stores flows through the store's own insert, as the batcher
// does, so the rollups' views fill as in production.
func insert(t *testing.T, e enginetest.Engine, flows []flow.Flow) {
	t.Helper()
	b := store.NewFlowBatch(len(flows))
	b.Append(flows)
	if err := e.DB.InsertFlows(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

func addr(s string) flow.Addr { return flow.AddrFromNetip(netip.MustParseAddr(s)) }

// fl is a flow of the fixtures: received at, with bytes and packets as
// exported (before sampling).
type fl struct {
	at                   time.Time
	tenant, exp, expName string
	inIf, outIf          uint32
	inName               string
	src, dst             string
	sport, dport         uint16
	proto                uint8
	srcAS, dstAS         uint32
	bytes, packets       uint64
	rate                 uint32
	dir                  flow.Direction
}

func (f fl) flow() flow.Flow {
	ms := f.at.UnixMilli()
	v := uint8(4)
	if netip.MustParseAddr(f.src).Is6() {
		v = 6
	}
	return flow.Flow{
		TimeReceivedMs: ms, TimeStartMs: ms - 1000, TimeEndMs: ms,
		Protocol: flow.ProtoIPFIX, ExporterAddr: addr(f.exp), SamplingRate: f.rate, Direction: f.dir,
		InIf: f.inIf, OutIf: f.outIf, SrcAddr: addr(f.src), DstAddr: addr(f.dst), SrcPort: f.sport, DstPort: f.dport,
		IPProto: f.proto, IPVersion: v, SrcAS: f.srcAS, DstAS: f.dstAS, Bytes: f.bytes, Packets: f.packets,
		Tenant: f.tenant, ExporterName: f.expName, InIfName: f.inName,
	}
}

func flows(fs ...fl) []flow.Flow {
	out := make([]flow.Flow, len(fs))
	for i, f := range fs {
		out[i] = f.flow()
	}
	return out
}

// near compares rates computed as floats.
func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// refusingReader fails every query and counts them: requests that must
// be refused before any SQL runs.
type refusingReader struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (r *refusingReader) Query(_ context.Context, q string, _ ...any) (dbapi.Rows, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, q)
	if r.err != nil {
		return nil, r.err
	}
	return nil, errors.New("refusingReader: no query expected")
}

func (r *refusingReader) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// testWriter sends a logger's lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
