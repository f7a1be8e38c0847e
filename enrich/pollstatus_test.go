package enrich_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/enrich"
	"github.com/flowhouse/flowhouse/enrich/snmp"
	"github.com/flowhouse/flowhouse/store"
)

// pollRow is the current exporter_polls row of an exporter.
type pollRow struct {
	success, failure, openUntil uint32
	kind, reason, err           string
	consecutive                 uint32
	failures, rows              uint64
}

func pollStatusOf(t *testing.T, db store.DB, tenant, addr string) pollRow {
	t.Helper()
	var r pollRow
	err := store.QueryRow(withTimeout(t, 10*time.Second), db, []any{&r.success, &r.failure, &r.kind, &r.reason, &r.err, &r.consecutive, &r.failures, &r.openUntil, &r.rows},
		`SELECT toUInt32(argMax(last_success, updated_ms)), toUInt32(argMax(last_failure, updated_ms)), argMax(last_failed_kind, updated_ms),
			argMax(last_reason, updated_ms), argMax(last_error, updated_ms), argMax(consecutive_failures, updated_ms),
			argMax(failures, updated_ms), toUInt32(argMax(circuit_open_until, updated_ms)), count()
		FROM exporter_polls WHERE tenant = ? AND IPv6NumToString(exporter_address) = ?`, tenant, "::ffff:"+addr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The polling status is kept in exporter_polls: a failing exporter's
// reason and streak at every failure, a healthy one's last success once
// per interfaces interval, and a restart reloads the history.
func TestPollStatusPersisted(t *testing.T) {
	ag := startSnmpd(t, "", "status-router")
	db := openDB(t)
	cfg := testConfig()
	silent := agentSNMP(fmt.Sprintf("127.0.0.1:%d", freeUDPPort(t)), "public") // nothing listens there
	silent.Timeout, silent.Retries = 200*time.Millisecond, 0
	cfg.Exporters = []enrich.ExporterConfig{
		{Match: "192.0.2.41", Tenant: "ok", SNMP: agentSNMP(ag.addr, "public")},
		{Match: "192.0.2.42", Tenant: "bad", SNMP: silent},
	}
	good, bad := netip.MustParseAddr("192.0.2.41"), netip.MustParseAddr("192.0.2.42")
	e := newEnricher(t, cfg, db, &recorder{}, nil)
	ctx := withTimeout(t, 30*time.Second)
	before := uint32(time.Now().Unix())
	if err := e.PollNow(ctx, good); err != nil {
		t.Fatal(err)
	}
	if err := e.PollNow(ctx, bad); err == nil {
		t.Fatal("polling an exporter whose agent does not answer succeeded")
	}
	after := uint32(time.Now().Unix())

	g := pollStatusOf(t, db, "ok", "192.0.2.41")
	if g.success < before || g.success > after || g.failure != 0 || g.reason != "" || g.err != "" || g.consecutive != 0 || g.failures != 0 || g.openUntil != 0 {
		t.Errorf("healthy exporter: %+v, want last_success in [%d, %d] and no failure", g, before, after)
	}
	// Three successful polls (interfaces, ARP, counters) within the
	// interfaces interval: one row, the first.
	if err := e.PollNow(ctx, good); err != nil {
		t.Fatal(err)
	}
	if g = pollStatusOf(t, db, "ok", "192.0.2.41"); g.rows != 1 {
		t.Errorf("healthy exporter: %d rows after six successful polls, want 1", g.rows)
	}

	b := pollStatusOf(t, db, "bad", "192.0.2.42")
	if b.success != 0 || b.failure < before || b.failure > after || !slices.Contains([]string{"interfaces", "arp", "counters"}, b.kind) || !slices.Contains(snmp.Reasons, b.reason) ||
		b.err == "" || b.consecutive != 3 || b.failures != 3 || b.openUntil < after || b.rows != 3 {
		t.Errorf("failing exporter: %+v, want 3 rows of failures (the background poller may take some: any kind), a reason, the circuit open", b)
	}

	// A restart reloads the history: the last success and the failures.
	e.Stop()
	e2 := newEnricher(t, cfg, db, &recorder{}, nil)
	gs, _ := e2.Exporter(good)
	bs, _ := e2.Exporter(bad)
	if gs.LastSuccessMs != int64(g.success)*1000 || bs.Failures != 3 || bs.LastSuccessMs != 0 {
		t.Errorf("after a restart: healthy last success %d (want %d), failing failures %d (want 3)", gs.LastSuccessMs, int64(g.success)*1000, bs.Failures)
	}
}
