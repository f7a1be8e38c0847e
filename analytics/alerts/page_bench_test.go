package alerts

import (
	"context"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/internal/enginetest"
)

// A page of 100 alerts of one tenant among 100 000 alerts of three, on
// the embedded engine: what GET /api/v1/alerts costs the database.
func BenchmarkSnapshotPage(b *testing.B) {
	e := enginetest.Embedded(b, "alerts", "alert_versions")
	e.Exec(b, `INSERT INTO alerts (tenant, id, fingerprint, rule, subject_names, subject_values, severity, label_names, label_values,
		annotation_names, annotation_values, status, starts_at, fired_at, updated_at, last_seen_at, last_value, peak_value, evaluations, version)
		SELECT ['t0', 't1', 't2'][number % 3 + 1], concat(lower(hex(intHash64(number))), '-', lower(hex(toUInt32(number)))),
			lower(hex(intHash64(number))), ['syn_flood', 'port_scan', 'udp_flood'][intDiv(number, 3) % 3 + 1],
			['dst_address'], [IPv4NumToString(toUInt32(167772160 + number))], if(number % 7 = 0, 'critical', 'warning'),
			['team'], ['noc'], ['summary', 'classification'], [concat('SYN flood towards ', toString(number)), 'syn_flood'],
			if(number % 100 = 0, 'firing', 'resolved'), toDateTime(1790000000 + number * 10), toDateTime(1790000000 + number * 10),
			toDateTime(1790000000 + number * 10 + 60), toDateTime(1790000000 + number * 10 + 50), 1000, 2000, 6, 3
		FROM numbers(100000)`)
	r := NewReader(e.DB)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		f    Filter
	}{
		{"first page", Filter{Tenant: "t0", Limit: 100}},
		{"firing", Filter{Tenant: "t0", Limit: 100, Status: []Status{StatusFiring}}},
		{"all tenants", Filter{AllTenants: true, Limit: 100}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			f := tc.f
			f.Snapshot = time.Unix(1800000000, 0)
			for b.Loop() {
				as, _, err := r.Page(ctx, f)
				if err != nil || len(as) == 0 {
					b.Fatalf("%d alerts, %v", len(as), err)
				}
			}
		})
	}
}
