package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/flowgen"
)

// endpoint is flowhouse serve's query endpoint (the embedded engine's,
// read-only), as flowhouse query uses it.
type endpoint struct{ addr string }

// query posts sql and decodes each JSONEachRow line into a new T.
func queryJSON[T any](ctx context.Context, e *endpoint, sql string) ([]T, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	u := "http://" + e.addr + "/?default_format=" + url.QueryEscape("JSONEachRow")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(sql))
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("query endpoint: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var out []T
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return nil, fmt.Errorf("query endpoint: %w: %s", err, sc.Text())
		}
		out = append(out, v)
	}
	return out, sc.Err()
}

// row reads the one number sql returns as its column n.
func (e *endpoint) row(ctx context.Context, sql string, n *uint64) error {
	rows, err := queryJSON[struct {
		N json.Number `json:"n"`
	}](ctx, e, sql)
	if err != nil || len(rows) == 0 {
		return err
	}
	v, err := rows[0].N.Int64()
	*n = uint64(v)
	return err
}

// alertRow is one alert, its current version.
type alertRow struct {
	Rule          string   `json:"rule"`
	Tenant        string   `json:"tenant"`
	Severity      string   `json:"severity"`
	Status        string   `json:"status"`
	SubjectNames  []string `json:"subject_names"`
	SubjectValues []string `json:"subject_values"`
	LabelValues   []string `json:"label_values"`
	StartsAt      int64    `json:"starts"`
	FiredAt       int64    `json:"fired"`
}

func (a alertRow) subject() string {
	var b strings.Builder
	for i, n := range a.SubjectNames {
		if i < len(a.SubjectValues) {
			fmt.Fprintf(&b, "%s=%s ", n, a.SubjectValues[i])
		}
	}
	return strings.TrimSpace(b.String())
}

// mentions reports whether a subject or label value is addr (or
// addr:port).
func (a alertRow) mentions(addr string) bool {
	for _, v := range slices.Concat(a.SubjectValues, a.LabelValues) {
		if v == addr || strings.HasPrefix(v, addr+":") || v == "::ffff:"+addr {
			return true
		}
	}
	return false
}

func (e *endpoint) alerts(ctx context.Context) ([]alertRow, error) {
	return queryJSON[alertRow](ctx, e, `SELECT rule, tenant, severity, status, subject_names, subject_values, label_values,
  toUnixTimestamp(starts_at) AS starts, toUnixTimestamp(fired_at) AS fired
FROM alerts FINAL ORDER BY fired, rule`)
}

// firstFlow is min(time_received) and count() of the flows of the
// attack exporters that have addr as source or destination and none of
// the other scenarios' addresses (the host scan reaches the floods'
// victims too).
func (e *endpoint) firstFlow(ctx context.Context, atk *flowgen.Report, addr string, others []string) (time.Time, uint64, error) {
	exclude := "toIPv6('0.0.0.0')"
	for _, o := range others {
		if o != addr {
			exclude += ", toIPv6('" + o + "')"
		}
	}
	var exps []string
	for _, x := range atk.Exporters {
		if ap, err := netipParse(x.Address); err == nil {
			exps = append(exps, "toIPv6('"+ap+"')")
		}
	}
	rows, err := queryJSON[struct {
		First int64       `json:"first"`
		N     json.Number `json:"n"`
	}](ctx, e, fmt.Sprintf(`SELECT toUnixTimestamp(min(time_received)) AS first, count() AS n FROM flows
WHERE exporter_address IN (%s) AND (src_address = toIPv6('%[2]s') OR dst_address = toIPv6('%[2]s'))
  AND src_address NOT IN (%[3]s) AND dst_address NOT IN (%[3]s)`, strings.Join(exps, ", "), addr, exclude))
	if err != nil || len(rows) == 0 {
		return time.Time{}, 0, err
	}
	n, _ := rows[0].N.Int64()
	if n == 0 {
		return time.Time{}, 0, nil
	}
	return time.Unix(rows[0].First, 0).UTC(), uint64(n), nil
}

func netipParse(addrPort string) (string, error) {
	host, _, ok := strings.Cut(addrPort, ":")
	if !ok || host == "" {
		return "", fmt.Errorf("%q is not address:port", addrPort)
	}
	return host, nil
}

// matchScenarios finds each scenario's first stored flow and the alerts
// that name its address, and takes the earliest firing as its detection.
func matchScenarios(ctx context.Context, q *endpoint, d delayOptions, attacks []delayScenario, spike bool, bg, atk *flowgen.Report, start time.Time, alerts []alertRow) []ScenarioDelay {
	var out []ScenarioDelay
	var addrs []string
	for _, a := range attacks {
		if ad := scenarioAddress(atk, a.name); ad != "" {
			addrs = append(addrs, ad)
		}
	}
	for _, a := range attacks {
		sd := ScenarioDelay{Scenario: a.name, Missing: a.missing, Start: start.UTC().Truncate(time.Second)}
		if a.missing || atk == nil {
			out = append(out, sd)
			continue
		}
		for _, s := range atk.Scenarios {
			if s.Name == a.name {
				sd.Sent = s.Counts.Flows
			}
		}
		sd.Address = scenarioAddress(atk, a.name)
		for _, ad := range scenarioAddresses(atk, a.name) {
			if ad != sd.Address && !slices.Contains(addrs, ad) {
				sd.Also = append(sd.Also, ad)
			}
		}
		if sd.Address != "" {
			first, n, err := q.firstFlow(ctx, atk, sd.Address, addrs)
			if err != nil {
				fmt.Fprintf(os.Stderr, "delay: first flow of %s: %v\n", a.name, err)
			}
			sd.FirstFlow, sd.Stored = first, n
		}
		sd.detect(alerts, sd.matches)
		out = append(out, sd)
	}
	if spike && bg != nil {
		// Spike flows are background flows multiplied on ifIndex 2: they
		// cannot be told apart, so the first is taken to be at its start.
		s := bg.Start.Add(d.lead).UTC().Truncate(time.Second)
		sd := ScenarioDelay{Scenario: "spike", Address: "ifIndex 2 of every exporter", Start: s, FirstFlow: s}
		sd.detect(alerts, func(al alertRow) bool { return strings.Contains(al.Rule, "interface") })
		out = append(out, sd)
	}
	return out
}

// matches reports whether al names one of the scenario's addresses.
func (sd *ScenarioDelay) matches(al alertRow) bool {
	if sd.Address == "" {
		return false
	}
	for _, a := range append([]string{sd.Address}, sd.Also...) {
		if al.mentions(a) {
			return true
		}
	}
	return false
}

// detect takes the earliest alert that match accepts and that fired
// after the scenario started.
func (sd *ScenarioDelay) detect(alerts []alertRow, match func(alertRow) bool) {
	ref := sd.FirstFlow
	if ref.IsZero() {
		ref = sd.Start
	}
	for _, al := range alerts {
		if al.FiredAt <= 0 || al.FiredAt < sd.Start.Unix()-10 || !match(al) {
			continue
		}
		sd.MatchedAlerts++
		if !slices.Contains(sd.Rules, al.Rule) {
			sd.Rules = append(sd.Rules, al.Rule)
		}
		if al.Severity != "info" {
			sd.AboveInfo = true
		}
		fired := time.Unix(al.FiredAt, 0).UTC()
		if !sd.Detected || fired.Before(sd.FiredAt) {
			sd.Detected, sd.Rule, sd.Severity, sd.FiredAt = true, al.Rule, al.Severity, fired
			sd.DelaySeconds = fired.Sub(ref).Seconds()
			sd.DelayStart = fired.Sub(sd.Start).Seconds()
		}
	}
}

// unmatchedAlerts are the alerts (pending or firing) no scenario
// accounts for: alarms on the background.
func unmatchedAlerts(alerts []alertRow, scen []ScenarioDelay) []string {
	var out []string
	for _, al := range alerts {
		matched := false
		for _, sd := range scen {
			if sd.matches(al) || sd.Scenario == "spike" && strings.Contains(al.Rule, "interface") {
				matched = true
			}
		}
		if !matched {
			out = append(out, fmt.Sprintf("%s %s %s (%s)", al.Rule, al.Severity, al.subject(), al.Status))
		}
	}
	return out
}
