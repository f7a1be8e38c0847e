package enrich

import (
	"context"
	"time"

	"github.com/flowhouse/flowhouse/internal/dbapi"
)

// pollRow is an exporter's polling status as exporter_polls keeps it.
type pollRow struct {
	success, failure, openUntil int64 // unix ms
	kind, reason, err           string
	consecutive                 int
	failures                    uint64
}

// persistStatus writes the exporter's polling status after a poll when
// it says something new: every failure (each one changes the count and
// maybe the reason), the first success after a failure, and otherwise
// once per polling.interfaces, so that a healthy exporter costs one row
// per interfaces interval rather than one per poll. Runs under pollMu.
func (e *Enricher) persistStatus(ctx context.Context, x *exporter) {
	if e.w == nil {
		return
	}
	x.status.mu.Lock()
	st := pollRow{success: x.status.lastSuccess, failure: x.status.lastFailure, openUntil: x.status.openUntil,
		kind: x.status.failedKind, reason: x.status.lastReason, err: x.status.lastError,
		consecutive: x.status.consecutive, failures: x.status.failures}
	x.status.mu.Unlock()
	now := time.Now()
	failing := st.consecutive > 0
	if !failing && !x.pollsWrittenFail && x.pollsWritten != 0 &&
		now.UnixMilli()-x.pollsWritten < e.cfg.Polling.Interfaces.Milliseconds() {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, e.cfg.Polling.WriteTimeout)
	defer cancel()
	if err := e.w.exporterPoll(wctx, x, st, now); err != nil {
		e.dbError("exporter_polls", err)
		return
	}
	x.pollsWritten, x.pollsWrittenFail = now.UnixMilli(), failing
}

func seconds(ms int64) uint32 { return uint32(max(ms, 0) / 1000) }

func (w *writer) exporterPoll(ctx context.Context, x *exporter, st pollRow, now time.Time) error {
	return w.insert(ctx, "exporter_polls", []icol{
		{"tenant", cPlain, []string{x.tenant}}, {"exporter_address", cIP, []string{addrString(x.addr)}},
		{"last_success", cTime, []uint32{seconds(st.success)}}, {"last_failure", cTime, []uint32{seconds(st.failure)}},
		{"last_failed_kind", cPlain, []string{st.kind}}, {"last_reason", cPlain, []string{st.reason}},
		{"last_error", cPlain, []string{st.err}}, {"consecutive_failures", cPlain, []uint32{uint32(st.consecutive)}},
		{"failures", cPlain, []uint64{st.failures}}, {"circuit_open_until", cTime, []uint32{seconds(st.openUntil)}},
		{"updated_at", cTime, []uint32{uint32(now.Unix())}}, {"updated_ms", cPlain, []uint64{uint64(now.UnixMilli())}},
	}, 1)
}

// reloadPolls keeps the history of each exporter's polling (its last
// success and failure, the failures counted) across a restart; the
// current failure streak is not reloaded: the first polls tell it anew.
func (e *Enricher) reloadPolls(ctx context.Context) (int, error) {
	n := 0
	err := dbapi.Each(ctx, e.deps.DB, `SELECT tenant, IPv6NumToString(exporter_address), toUInt32(last_success),
		toUInt32(last_failure), last_failed_kind, failures FROM exporter_polls FINAL`, nil, func(rows dbapi.Rows) error {
		var tenant, addr, kind string
		var success, failure uint32
		var failures uint64
		if err := rows.Scan(&tenant, &addr, &success, &failure, &kind, &failures); err != nil {
			return err
		}
		if x := e.knownExporter(tenant, addr); x != nil {
			x.status.mu.Lock()
			x.status.lastSuccess = max(x.status.lastSuccess, int64(success)*1000)
			x.status.lastFailure = max(x.status.lastFailure, int64(failure)*1000)
			x.status.failedKind = kind
			x.status.failures += failures
			x.status.mu.Unlock()
			n++
		}
		return nil
	})
	return n, err
}
