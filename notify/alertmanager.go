package notify

import (
	"encoding/json"
	"time"
)

// amBody is the body of POST /api/v2/alerts: a JSON array of
// postableAlert. Times are UTC with millisecond precision, as Prometheus
// sends them.
func amBody(alerts []amAlert) ([]byte, error) {
	out := make([]amAlert, len(alerts))
	for i, a := range alerts {
		a.StartsAt = amTime(a.StartsAt)
		a.EndsAt = amTime(a.EndsAt)
		out[i] = a
	}
	return json.Marshal(out)
}

func amTime(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Millisecond)
}
