package trafficapi

import (
	"strings"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/store"
)

func TestChooseSource(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 34, 56, 0, time.UTC)
	hourAgo := now.Truncate(time.Hour).Add(-time.Hour)
	minute := now.Truncate(time.Minute)
	srcs := sourcesOf(DefaultConfig(), store.DefaultConfig().Retention)
	tests := []struct {
		name   string
		need   need
		source string // "" when refused
		why    []string
	}{
		{"whole hours", need{since: hourAgo, until: hourAgo.Add(time.Hour)}, "flows_1h", nil},
		{"whole minutes", need{since: minute.Add(-5 * time.Minute), until: minute}, "flows_1m", nil},
		{"off the minute", need{since: now.Add(-time.Hour), until: now}, "flows", nil},
		{"raw dimension on whole hours", need{since: hourAgo, until: hourAgo.Add(time.Hour), raw: "by=src_port"}, "flows", nil},
		{"step of seconds on whole hours", need{since: hourAgo, until: hourAgo.Add(time.Hour), step: 30 * time.Second}, "flows", nil},
		{"step of minutes on whole hours", need{since: hourAgo, until: hourAgo.Add(time.Hour), step: 5 * time.Minute}, "flows_1m", nil},
		{"step of hours", need{since: hourAgo, until: hourAgo.Add(time.Hour), step: time.Hour}, "flows_1h", nil},
		{"a week of minutes", need{since: minute.Add(-7 * day), until: minute}, "flows_1m", nil},
		{"two months of minutes: past flows_1m's 31 days", need{since: minute.Add(-60 * day), until: minute}, "", []string{
			"flows_1h: since and until are not on whole hours", "flows_1m: since..until spans 60d, more than the 31d",
			"flows: since..until spans 60d, more than the 1d"}},
		{"a day of minutes 100 days ago: past flows_1m's retention", need{since: minute.Add(-100 * day), until: minute.Add(-99 * day)}, "", []string{
			"flows_1m: since is older than its retention of 90d", "flows: since is older than its retention of 30d"}},
		{"a day of hours 100 days ago", need{since: hourAgo.Add(-100 * day), until: hourAgo.Add(-99 * day)}, "flows_1h", nil},
		{"a year of hours", need{since: hourAgo.Add(-365 * day), until: hourAgo}, "flows_1h", nil},
		{"two days of addresses", need{since: now.Add(-2 * day), until: now, raw: "by=dst_address"}, "", []string{
			"flows_1h: by=dst_address is only in raw flows", "flows: since..until spans 2d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := choose(srcs, tt.need, now)
			if tt.source != "" {
				if err != nil || s.table != tt.source {
					t.Errorf("%s %v, want %s", s.table, err, tt.source)
				}
				return
			}
			if err == nil {
				t.Fatalf("chose %s, want a refusal", s.table)
			}
			for _, w := range tt.why {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v\ndoes not say %q", err, w)
				}
			}
		})
	}
	t.Run("retention 0 keeps forever", func(t *testing.T) {
		ret := store.DefaultConfig().Retention
		ret.Flows = 0
		s, err := choose(sourcesOf(DefaultConfig(), ret), need{since: now.Add(-400 * day), until: now.Add(-400*day + time.Hour), raw: "by=src_port"}, now)
		if err != nil || s.table != "flows" {
			t.Errorf("%s %v, want flows", s.table, err)
		}
	})
}
