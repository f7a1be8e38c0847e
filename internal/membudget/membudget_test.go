package membudget

import (
	"strings"
	"testing"
)

func TestPlanDividesTheLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int64
		want  Plan
		err   string
	}{
		{name: "default", limit: 384 << 20,
			want: Plan{GoLimit: 384 << 20, QueueBytes: 144 << 20, SpillBytes: 48 << 20, DatagramBytes: 96 << 20}},
		{name: "smallest", limit: MinLimit,
			want: Plan{GoLimit: 64 << 20, QueueBytes: 24 << 20, SpillBytes: 8 << 20, DatagramBytes: 16 << 20}},
		{name: "below the minimum", limit: MinLimit - 1, err: "limit: 67108863 bytes is less than 64 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Config{Limit: tc.limit}.Plan()
			if tc.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Plan = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// The default budget passes its own validation and the shares leave room
// for what has no queue.
func TestDefaultLeavesHeadroom(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := c.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if rest := p.GoLimit - p.QueueBytes - p.SpillBytes - p.DatagramBytes; rest < p.GoLimit/4 {
		t.Errorf("%d bytes left of %d for the rest", rest, p.GoLimit)
	}
}
