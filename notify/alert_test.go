package notify

import (
	"strings"
	"testing"
	"time"
)

// The expected values were computed with prometheus/common v0.72.0's
// model.LabelSet.Fingerprint; TestAlertmanager checks ours against a
// running Alertmanager too.
func TestFingerprint(t *testing.T) {
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{}, "cbf29ce484222325"},
		{map[string]string{"alertname": "FlowExporterDown", "severity": "critical", "exporter": "192.0.2.1"}, "c630324be235bc31"},
		{map[string]string{"alertname": "HighTraffic", "tenant": "acme", "severity": "warning", "dst_addr": "2001:db8::1", "note": "ünïcode"}, "d52de54c7d62461b"},
	} {
		if got := Fingerprint(tc.labels); got != tc.want {
			t.Errorf("Fingerprint(%v) = %s, want %s", tc.labels, got, tc.want)
		}
	}
}

func TestLabelSet(t *testing.T) {
	a := testAlert("acme", "HighTraffic", SeverityWarning, "dst_addr", "192.0.2.7", "empty", "", "tenant", "spoofed", "alertname", "spoofed")
	ls := a.LabelSet()
	want := map[string]string{"alertname": "HighTraffic", "tenant": "acme", "severity": "warning", "dst_addr": "192.0.2.7"}
	if len(ls) != len(want) {
		t.Fatalf("LabelSet = %v, want %v", ls, want)
	}
	for k, v := range want {
		if ls[k] != v {
			t.Errorf("LabelSet[%s] = %q, want %q", k, ls[k], v)
		}
	}
	p := a.prepared(t0)
	if p.Fingerprint != Fingerprint(want) {
		t.Errorf("prepared fingerprint %s, want Fingerprint(LabelSet) %s", p.Fingerprint, Fingerprint(want))
	}
	a.Labels["dst_addr"] = "changed"
	if p.Labels["dst_addr"] != "192.0.2.7" {
		t.Error("prepared shares the caller's labels map")
	}
	r := resolvedAt(testAlert("acme", "R", SeverityInfo), time.Time{})
	r.UpdatedAt = t0.Add(time.Minute)
	if got := r.prepared(t0.Add(time.Hour)).EndsAt; !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("resolved without ends_at: EndsAt %v, want its updated_at", got)
	}
}

func TestAlertValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Alert)
		want string // "" is valid
	}{
		{"valid", func(*Alert) {}, ""},
		{"no tenant", func(a *Alert) { a.Tenant = "" }, "tenant is empty"},
		{"no rule", func(a *Alert) { a.Rule = "" }, "rule is empty"},
		{"pending", func(a *Alert) { a.Status = "pending" }, `status "pending"`},
		{"severity", func(a *Alert) { a.Severity = "major" }, `severity "major"`},
		{"fingerprint", func(a *Alert) { a.Fingerprint = "ABC" }, "fingerprint"},
		{"label name", func(a *Alert) { a.Labels["dst-addr"] = "x" }, `label name "dst-addr"`},
		{"annotation name", func(a *Alert) { a.Annotations["1x"] = "x" }, `annotation name "1x"`},
		{"utf8", func(a *Alert) { a.Labels["x"] = "\xff" }, "label x is not valid UTF-8"},
		{"no start", func(a *Alert) { a.StartsAt = time.Time{} }, "starts_at is zero"},
		{"firing with end", func(a *Alert) { a.EndsAt = t0 }, "ends_at is set on a firing alert"},
	} {
		a := testAlert("acme", "R", SeverityWarning)
		tc.edit(&a)
		err := a.validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want it to say %q", tc.name, err, tc.want)
		}
	}
}
