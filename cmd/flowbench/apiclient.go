package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// apiClient calls serve's API with a bearer token.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

func newAPIClient(addr, token string) *apiClient {
	tr := &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}
	return &apiClient{base: "http://" + addr + "/api/v1", token: token, http: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// get does one request and reads the whole answer.
func (c *apiClient) get(ctx context.Context, path string, header http.Header) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// getJSON is get that wants 200 and decodes the answer into v.
func (c *apiClient) getJSON(ctx context.Context, path string, v any) (http.Header, error) {
	status, h, b, err := c.get(ctx, path, nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", path, status, b)
	}
	return h, json.Unmarshal(b, v)
}

// alertPage is what the stage reads of GET /alerts.
type alertPage struct {
	Alerts []struct {
		ID        string            `json:"id"`
		Tenant    string            `json:"tenant"`
		Rule      string            `json:"rule"`
		Subject   map[string]string `json:"subject"`
		Status    string            `json:"status"`
		Severity  string            `json:"severity"`
		StartsAt  time.Time         `json:"starts_at"`
		FiredAt   *time.Time        `json:"fired_at"`
		EndsAt    *time.Time        `json:"ends_at"`
		UpdatedAt time.Time         `json:"updated_at"`
		Version   uint64            `json:"version"`
	} `json:"alerts"`
	Next string `json:"next_page_token"`
}

// AlertWalk is a walk of the whole alert list.
type AlertWalk struct {
	Pages     int               `json:"pages"`
	Alerts    int               `json:"alerts"`
	PerTenant map[string]int    `json:"per_tenant"`
	PerStatus map[string]int    `json:"per_status"`
	NotSeeded map[string]int    `json:"not_seeded_by_rule,omitempty"`
	Seconds   float64           `json:"seconds"`
	Problems  []string          `json:"problems,omitempty"`
	Sample    map[string]string `json:"sample"`
}

// seededRules are the rules alertsSQL writes alerts of.
var seededRules = map[string]bool{"syn_flood": true, "udp_flood": true, "amplification": true, "port_scan": true,
	"volume_destination": true, "interface_utilisation": true}

// walkAlerts pages through every alert (page_size=1000) and checks what
// the API answers against the seed: each alert once, the seeded count
// per tenant (alerts the running rules fired since serve started, on
// the seeded flows, are counted apart: every seeded alert started
// before the seed's end), and consistent fields. It fails when an alert
// comes twice or a seeded tenant is short.
func walkAlerts(ctx context.Context, c *apiClient, seed *APISeed) (*AlertWalk, error) {
	w := &AlertWalk{PerTenant: map[string]int{}, PerStatus: map[string]int{}, NotSeeded: map[string]int{}}
	seen := map[string]bool{}
	start := time.Now()
	path := "/alerts?page_size=1000"
	for {
		var p alertPage
		if _, err := c.getJSON(ctx, path, &p); err != nil {
			return w, err
		}
		w.Pages++
		for _, a := range p.Alerts {
			if seen[a.ID] {
				return w, fmt.Errorf("alert %s listed twice", a.ID)
			}
			seen[a.ID] = true
			w.Alerts++
			w.PerTenant[a.Tenant]++
			w.PerStatus[a.Status]++
			if !seededRules[a.Rule] || a.StartsAt.After(seed.End) {
				w.NotSeeded[a.Rule]++
			}
			if w.Sample == nil && a.Status == "resolved" {
				w.Sample = map[string]string{"id": a.ID, "tenant": a.Tenant, "rule": a.Rule, "status": a.Status, "severity": a.Severity,
					"starts_at": a.StartsAt.Format(time.RFC3339), "updated_at": a.UpdatedAt.Format(time.RFC3339), "version": fmt.Sprint(a.Version)}
				for k, v := range a.Subject {
					w.Sample["subject."+k] = v
				}
			}
			if a.Status == "resolved" && (a.FiredAt == nil || a.EndsAt == nil || !a.FiredAt.After(a.StartsAt) || !a.EndsAt.Equal(a.UpdatedAt)) && len(w.Problems) < 10 {
				w.Problems = append(w.Problems, fmt.Sprintf("alert %s: resolved with starts_at %s fired_at %v ends_at %v updated_at %s", a.ID, a.StartsAt, a.FiredAt, a.EndsAt, a.UpdatedAt))
			}
			if len(a.Subject) == 0 && len(w.Problems) < 10 {
				w.Problems = append(w.Problems, "alert "+a.ID+": no subject")
			}
		}
		if p.Next == "" {
			break
		}
		path = "/alerts?page_size=1000&page_token=" + url.QueryEscape(p.Next)
	}
	w.Seconds = time.Since(start).Seconds()
	notSeeded := 0
	for _, n := range w.NotSeeded {
		notSeeded += n
	}
	if uint64(w.Alerts-notSeeded) != seed.Alerts {
		w.Problems = append(w.Problems, fmt.Sprintf("%d alerts listed, %d of them fired since the seed: %d seeded ones, not %d", w.Alerts, notSeeded, w.Alerts-notSeeded, seed.Alerts))
	}
	for t, n := range seed.PerTenant {
		if uint64(w.PerTenant[t]) < n {
			return w, fmt.Errorf("tenant %s: %d alerts listed, %d seeded", t, w.PerTenant[t], n)
		}
	}
	return w, nil
}

// Measurement is one endpoint under some closed-loop clients.
type Measurement struct {
	Name     string         `json:"name"`
	Path     string         `json:"path"`
	Source   string         `json:"source,omitempty"` // the table the traffic API read
	Clients  int            `json:"clients"`
	Requests int            `json:"requests"`
	Capped   bool           `json:"capped_by_budget"`
	Status   map[string]int `json:"status"`
	Errors   int            `json:"errors"`
	P50Ms    float64        `json:"p50_ms"`
	P90Ms    float64        `json:"p90_ms"`
	P99Ms    float64        `json:"p99_ms"`
	MaxMs    float64        `json:"max_ms"`
	RPS      float64        `json:"requests_per_second"`
	Bytes    float64        `json:"mean_response_bytes"`
	Seconds  float64        `json:"seconds"`
	CPUCores float64        `json:"flowhouse_cpu_cores"`
	Error    string         `json:"error,omitempty"`
}

// closedLoop runs clients goroutines, each sending its next request as
// soon as the previous answer is read, n requests each or until budget.
func closedLoop(ctx context.Context, c *apiClient, m *Measurement, n int, budget time.Duration, req func() (string, http.Header)) {
	var mu sync.Mutex
	var lat []float64
	var bytes float64
	m.Status = map[string]int{}
	deadline := time.Now().Add(budget)
	start := time.Now()
	var wg sync.WaitGroup
	for range m.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				if time.Now().After(deadline) {
					mu.Lock()
					m.Capped = true
					mu.Unlock()
					return
				}
				path, h := req()
				t := time.Now()
				status, _, b, err := c.get(ctx, path, h)
				d := time.Since(t).Seconds() * 1000
				mu.Lock()
				if err != nil {
					m.Errors++
				} else {
					m.Status[fmt.Sprint(status)]++
					lat = append(lat, d)
					bytes += float64(len(b))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	m.Seconds = time.Since(start).Seconds()
	m.Requests = len(lat) + m.Errors
	if len(lat) > 0 {
		m.RPS = float64(len(lat)) / m.Seconds
		m.Bytes = bytes / float64(len(lat))
		sort.Float64s(lat)
		m.P50Ms, m.P90Ms, m.P99Ms, m.MaxMs = quantile(lat, 0.5), quantile(lat, 0.9), quantile(lat, 0.99), lat[len(lat)-1]
	}
}

// apiCase is one endpoint the stage measures: path gives the request
// (relative times are taken at each request).
type apiCase struct {
	name   string
	header http.Header
	path   func(now time.Time) string
}

// apiCases are the endpoints: the alert list's first page, a deep page,
// the first page revalidated (304), and the traffic top lists and series.
func apiCases(ctx context.Context, c *apiClient, deepPages int) ([]apiCase, error) {
	first := "/alerts?page_size=100"
	h, err := c.getJSON(ctx, first, &alertPage{})
	if err != nil {
		return nil, err
	}
	etag := h.Get("ETag")
	if etag == "" {
		return nil, fmt.Errorf("GET %s: no ETag", first)
	}
	deep := first
	for i := 0; i < deepPages; i++ {
		var p alertPage
		if _, err := c.getJSON(ctx, deep, &p); err != nil {
			return nil, err
		}
		if p.Next == "" {
			return nil, fmt.Errorf("the alert list ended after %d pages", i+1)
		}
		deep = first + "&page_token=" + url.QueryEscape(p.Next)
	}
	rfc := func(t time.Time) string { return url.QueryEscape(t.UTC().Format(time.RFC3339)) }
	return []apiCase{
		{name: "alerts, first page (page_size=100)", path: func(time.Time) string { return first }},
		{name: fmt.Sprintf("alerts, page %d (next_page_token)", deepPages+1), path: func(time.Time) string { return deep }},
		{name: "alerts, first page, If-None-Match (304)", header: http.Header{"If-None-Match": {etag}}, path: func(time.Time) string { return first }},
		{name: "traffic/top by=dst_address, last 1 h", path: func(now time.Time) string {
			return "/traffic/top?by=dst_address&since=" + rfc(now.Add(-time.Hour)) + "&until=" + rfc(now)
		}},
		{name: "traffic/top by=dst_address, last 24 h", path: func(now time.Time) string {
			return "/traffic/top?by=dst_address&since=" + rfc(now.Add(-24*time.Hour)) + "&until=" + rfc(now)
		}},
		{name: "traffic/top by=exporter, 24 whole hours", path: func(now time.Time) string {
			h := now.Truncate(time.Hour)
			return "/traffic/top?by=exporter&since=" + rfc(h.Add(-24*time.Hour)) + "&until=" + rfc(h)
		}},
		{name: "traffic/series, 24 h, step=5m", path: func(now time.Time) string {
			u := now.Truncate(5 * time.Minute)
			return "/traffic/series?step=5m&since=" + rfc(u.Add(-24*time.Hour)) + "&until=" + rfc(u)
		}},
	}, nil
}

// measureAPI measures every case at every client count: a warm-up of
// ao.warmup requests (at least one; at most a quarter of the budget),
// then the closed loop; serve's CPU over each.
func measureAPI(ctx context.Context, c *apiClient, ao apiOptions, pid int) ([]Measurement, error) {
	var failed []string
	cases, err := apiCases(ctx, c, ao.deepPages)
	if err != nil {
		return nil, err
	}
	var out []Measurement
	for _, k := range cases {
		source := ""
		var warmErr error
		// Bounded by a quarter of the budget too: on a starved machine
		// one request can take seconds.
		warmEnd := time.Now().Add(ao.budget / 4)
		for i := 0; i < ao.warmup && (i == 0 || time.Now().Before(warmEnd)); i++ {
			status, _, b, err := c.get(ctx, k.path(time.Now()), k.header)
			if err == nil && status != http.StatusOK && status != http.StatusNotModified {
				err = fmt.Errorf("%d %s", status, b)
			}
			if err != nil {
				warmErr = err
				break
			}
			var s struct {
				Source string `json:"source"`
			}
			if json.Unmarshal(b, &s) == nil {
				source = s.Source
			}
		}
		if warmErr != nil {
			// Recorded, and the next endpoint is measured.
			out = append(out, Measurement{Name: k.name, Path: k.path(time.Now()), Error: "warm-up: " + warmErr.Error()})
			failed = append(failed, k.name+": "+warmErr.Error())
			continue
		}
		for _, n := range ao.clients {
			m := Measurement{Name: k.name, Path: k.path(time.Now()), Source: source, Clients: n}
			cpu0, _ := processCPU(pid)
			closedLoop(ctx, c, &m, ao.requests, ao.budget, func() (string, http.Header) { return k.path(time.Now()), k.header })
			cpu1, _ := processCPU(pid)
			if m.Seconds > 0 {
				m.CPUCores = (cpu1 - cpu0) / m.Seconds
			}
			out = append(out, m)
			fmt.Fprintf(os.Stderr, "api: %s, %d clients: %d requests p50 %.0f ms p99 %.0f ms max %.0f ms, %.1f/s, serve %.2f cores %v\n",
				k.name, n, m.Requests, m.P50Ms, m.P99Ms, m.MaxMs, m.RPS, m.CPUCores, m.Status)
		}
	}
	if len(failed) > 0 {
		return out, fmt.Errorf("measurements failed: %s", strings.Join(failed, "; "))
	}
	return out, nil
}
