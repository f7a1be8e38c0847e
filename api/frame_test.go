package api

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestSpecAdd(t *testing.T) {
	tests := []struct {
		name, fragment, want string // want: substring of the error, "" for none
	}{
		{"paths and schemas", "paths:\n  /x:\n    get:\n      responses:\n        '200': {description: ok}\ncomponents:\n  schemas:\n    X: {type: string}\n", ""},
		{"a path twice", "paths:\n  /openapi.json: {}\n", `paths "/openapi.json" is already defined`},
		{"a schema twice", "components:\n  schemas:\n    Error: {type: string}\n", `schemas "Error" is already defined`},
		{"another top-level key", "info: {title: x}\n", `top-level key "info"`},
		{"another component kind", "components:\n  examples: {}\n", "components.examples"},
		{"not YAML", "paths: [\n", "openapi fragment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := NewSpec().Add(tt.name, []byte(tt.fragment))
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Add: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSpecAddsCommonResponses(t *testing.T) {
	s := NewSpec()
	if err := s.Add("x", []byte("paths:\n  /x/{id}:\n    post:\n      responses:\n        '201': {description: made}\n")); err != nil {
		t.Fatal(err)
	}
	b, err := s.JSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []string{`"201"`, `"400"`, `"401"`, `"403"`, `"404"`, `"429"`, `"503"`} {
		if !strings.Contains(string(b), code) {
			t.Errorf("document lacks response %s", code)
		}
	}
}

func TestETagMatches(t *testing.T) {
	tests := []struct {
		header string
		want   bool
	}{
		{`"abc"`, true},
		{`W/"abc"`, true},
		{`"x", "abc"`, true},
		{`*`, true},
		{`"abd"`, false},
		{``, false},
	}
	for _, tt := range tests {
		if got := ETagMatches(tt.header, `"abc"`); got != tt.want {
			t.Errorf("ETagMatches(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}

func TestPageTokens(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	pt := NewPageTokens([]byte("key"))
	pt.now = func() time.Time { return now }
	a := Principal{Tenant: "a", Role: RoleRead}
	tok, err := pt.Encode(a, "status=firing", 42)
	if err != nil {
		t.Fatal(err)
	}
	var pos int
	if err := pt.Decode(tok, a, "status=firing", &pos); err != nil || pos != 42 {
		t.Fatalf("Decode: %d, %v", pos, err)
	}
	other := NewPageTokens([]byte("other key"))
	other.now = pt.now
	tests := []struct {
		name   string
		tokens *PageTokens
		tok    string
		p      Principal
		f      string
	}{
		{"other filters", pt, tok, a, "status=pending"},
		{"other tenant", pt, tok, Principal{Tenant: "b"}, "status=firing"},
		{"all tenants", pt, tok, Principal{AllTenants: true}, "status=firing"},
		{"other key", other, tok, a, "status=firing"},
		{"changed", pt, "x" + tok, a, "status=firing"},
		{"no signature", pt, strings.Split(tok, ".")[0], a, "status=firing"},
	}
	for _, tt := range tests {
		if err := tt.tokens.Decode(tt.tok, tt.p, tt.f, &pos); err != ErrPageToken {
			t.Errorf("%s: %v, want ErrPageToken", tt.name, err)
		}
	}
	now = now.Add(PageTokenTTL + time.Second)
	if err := pt.Decode(tok, a, "status=firing", &pos); err != ErrPageToken {
		t.Errorf("expired: %v, want ErrPageToken", err)
	}
}

// With http.metrics_token, /metrics answers only scrapers that send it.
func TestMetricsToken(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MetricsToken = "scrape-secret"
	s := start(t, cfg, nil, nil)
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"", 401},
		{"Bearer wrong", 401},
		{"Bearer " + testToken, 401}, // an API token is not the metrics token
		{"Bearer scrape-secret", 200},
	} {
		req, _ := http.NewRequest(http.MethodGet, s.base+"/metrics", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("/metrics with %q: %d, want %d", tc.auth, resp.StatusCode, tc.want)
		}
	}
}
