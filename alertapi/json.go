package alertapi

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/analytics/alerts"
)

// Alert is an alert as the API answers it. Times are RFC 3339 in UTC;
// a time that has not happened (fired_at while pending, ends_at while
// active, acknowledged_at when not acknowledged) is null.
type Alert struct {
	ID             string            `json:"id"`
	Tenant         string            `json:"tenant"`
	Rule           string            `json:"rule"`
	Fingerprint    string            `json:"fingerprint"`
	Subject        map[string]string `json:"subject"`
	Severity       string            `json:"severity"`
	Status         string            `json:"status"`
	Labels         map[string]string `json:"labels"`
	Annotations    map[string]string `json:"annotations"`
	StartsAt       time.Time         `json:"starts_at"`
	FiredAt        *time.Time        `json:"fired_at"`
	EndsAt         *time.Time        `json:"ends_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
	LastSeenAt     time.Time         `json:"last_seen_at"`
	LastValue      float64           `json:"last_value"`
	PeakValue      float64           `json:"peak_value"`
	Evaluations    uint32            `json:"evaluations"`
	Missed         uint32            `json:"missed"`
	Acknowledged   bool              `json:"acknowledged"`
	AcknowledgedBy string            `json:"acknowledged_by"`
	AcknowledgedAt *time.Time        `json:"acknowledged_at"`
	Version        uint64            `json:"version"`
}

// Event is one entry of an alert's history.
type Event struct {
	At         time.Time `json:"at"`
	Version    uint64    `json:"version"`
	Kind       string    `json:"kind"`
	FromStatus *string   `json:"from_status"` // null when the event created the alert
	ToStatus   string    `json:"to_status"`
	Severity   string    `json:"severity"`
	Value      float64   `json:"value"`
	Actor      string    `json:"actor"`
	Note       string    `json:"note"`
}

// AlertList is a page of alerts.
type AlertList struct {
	Alerts        []Alert `json:"alerts"`
	NextPageToken string  `json:"next_page_token"`
}

// AlertDetail is an alert with its history, oldest first.
type AlertDetail struct {
	Alert  Alert   `json:"alert"`
	Events []Event `json:"events"`
}

// Change is the data of a stream event: an alert's state after a change.
type Change struct {
	ID           string            `json:"id"`
	Tenant       string            `json:"tenant"`
	Rule         string            `json:"rule"`
	Subject      map[string]string `json:"subject"`
	Severity     string            `json:"severity"`
	Status       string            `json:"status"`
	Acknowledged bool              `json:"acknowledged"`
	Version      uint64            `json:"version"`
	UpdatedAt    time.Time         `json:"updated_at"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func alertOf(a alerts.Alert) Alert {
	return Alert{
		ID: a.ID, Tenant: a.Tenant, Rule: a.Rule, Fingerprint: a.Fingerprint,
		Subject: nonNil(a.Subject), Severity: string(a.Severity), Status: string(a.Status),
		Labels: nonNil(a.Labels), Annotations: nonNil(a.Annotations),
		StartsAt: a.StartsAt.UTC(), FiredAt: optTime(a.FiredAt), EndsAt: optTime(a.EndsAt),
		UpdatedAt: a.UpdatedAt.UTC(), LastSeenAt: a.LastSeenAt.UTC(),
		LastValue: a.LastValue, PeakValue: a.PeakValue, Evaluations: a.Evaluations, Missed: a.Missed,
		Acknowledged: a.Acknowledged, AcknowledgedBy: a.AcknowledgedBy, AcknowledgedAt: optTime(a.AcknowledgedAt),
		Version: a.Version,
	}
}

func eventOf(e alerts.Event) Event {
	out := Event{At: e.At.UTC(), Version: e.Version, Kind: e.Kind, ToStatus: string(e.To), Severity: string(e.Severity),
		Value: e.Value, Actor: e.Actor, Note: e.Note}
	if e.From != "" {
		from := string(e.From)
		out.FromStatus = &from
	}
	return out
}

func changeOf(c alerts.Change) Change {
	return Change{ID: c.ID, Tenant: c.Tenant, Rule: c.Rule, Subject: nonNil(c.Subject), Severity: string(c.Severity),
		Status: string(c.Status), Acknowledged: c.Acknowledged, Version: c.Version, UpdatedAt: c.UpdatedAt.UTC()}
}

// versionTag is the ETag of an alert: its version, which every change
// increments. If-Match of acks compares it.
func versionTag(version uint64) string { return `"v` + strconv.FormatUint(version, 10) + `"` }

// parseIfMatch is the version an If-Match header expects: 0 for none or
// "*"; ok false when it names no version of ours (it cannot match).
func parseIfMatch(h string) (uint64, bool) {
	h = strings.TrimSpace(h)
	if h == "" || h == "*" {
		return 0, true
	}
	if !strings.HasPrefix(h, `"v`) || !strings.HasSuffix(h, `"`) || len(h) < 4 {
		return 0, false
	}
	v, err := strconv.ParseUint(h[2:len(h)-1], 10, 64)
	if err != nil || v == 0 {
		return 0, false
	}
	return v, true
}

// eventID is a stream position as an SSE id: written_at.version.id.
func eventID(p alerts.Position) string {
	return fmt.Sprintf("%d.%d.%s", p.WrittenAt.Unix(), p.Version, p.ID)
}

func parseEventID(s string) (alerts.Position, bool) {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) != 3 || !validID(parts[2]) {
		return alerts.Position{}, false
	}
	at, err1 := strconv.ParseUint(parts[0], 10, 32)
	v, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return alerts.Position{}, false
	}
	return alerts.Position{WrittenAt: time.Unix(int64(at), 0).UTC(), Version: v, ID: parts[2]}, true
}

// validID: an alert id is a fingerprint (16 hex digits), "-", 8 hex
// digits. Anything else names no alert.
func validID(id string) bool {
	if len(id) != 25 || id[16] != '-' {
		return false
	}
	for i, r := range id {
		if i != 16 && !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}
