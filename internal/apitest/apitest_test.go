package apitest_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/apitest"
)

var thingsSpec = []byte(`
paths:
  /things:
    get:
      summary: list things
      parameters:
        - {name: color, in: query, schema: {type: string}}
        - {$ref: '#/components/parameters/PageSize'}
        - {$ref: '#/components/parameters/PageToken'}
        - {$ref: '#/components/parameters/IfNoneMatch'}
      responses:
        "200":
          description: things
          headers:
            ETag: {$ref: '#/components/headers/ETag'}
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ThingList'}
        "304": {$ref: '#/components/responses/NotModified'}
    post:
      summary: make a thing
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              properties: {name: {type: string}}
      responses:
        "201":
          description: made
          content:
            application/json:
              schema: {type: object, properties: {name: {type: string}}}
components:
  schemas:
    ThingList:
      type: object
      additionalProperties: false
      required: [things, next_page_token]
      properties:
        things: {type: array, items: {type: string}}
        next_page_token: {type: string}
`)

// start serves the "things" API: the frame's behaviour, as every API
// package gets it.
func start(t *testing.T, cfg api.Config) *apitest.Client {
	t.Helper()
	return apitest.Serve(t, cfg, apitest.Principals("a", "b"), thingsAPI)
}

// thingsAPI registers the "things" handlers and their fragment.
func thingsAPI(s *api.Server) {
	s.AddSpec("things", thingsSpec)
	pages := api.NewPageTokens(nil)
	things := []string{"t1", "t2", "t3", "t4", "t5"}
	s.Register(func(v1 *gin.RouterGroup) {
		v1.GET("/things", func(c *gin.Context) {
			q := api.ParseQuery(c, "color", "page_size", "page_token")
			color, size := q.String("color"), q.Int("page_size", 2, 1, 1000)
			pos := 0
			if tok := q.String("page_token"); tok != "" {
				if err := pages.Decode(tok, api.PrincipalOf(c), color, &pos); err != nil {
					q.Failf("%v", err)
				}
			}
			if err := q.Err(); err != nil {
				api.BadRequest(c, err)
				return
			}
			end := min(pos+size, len(things))
			next := ""
			if end < len(things) {
				next, _ = pages.Encode(api.PrincipalOf(c), color, end)
			}
			api.JSONWithETag(c, http.StatusOK, gin.H{"things": things[pos:end], "next_page_token": next})
		})
		v1.POST("/things", func(c *gin.Context) {
			var body struct {
				Name string `json:"name"`
			}
			if !api.BindJSON(c, &body) {
				return
			}
			c.JSON(http.StatusCreated, gin.H{"name": body.Name})
		})
	})
}

func TestFrame(t *testing.T) {
	c := start(t, api.DefaultConfig())
	tests := []struct {
		name, token, method, path string
		body                      any
		status                    int
		code                      string
	}{
		{"no token", "", "GET", "/api/v1/things", nil, 401, api.CodeUnauthorized},
		{"unknown token", "nope", "GET", "/api/v1/things", nil, 401, api.CodeUnauthorized},
		{"read token lists", apitest.ReadA, "GET", "/api/v1/things", nil, 200, ""},
		{"read token may not POST", apitest.ReadA, "POST", "/api/v1/things", map[string]string{"name": "x"}, 403, api.CodeForbidden},
		{"admin token may POST", apitest.AdminA, "POST", "/api/v1/things", map[string]string{"name": "x"}, 201, ""},
		{"unknown body field", apitest.AdminA, "POST", "/api/v1/things", map[string]string{"nmae": "x"}, 400, api.CodeBadRequest},
		{"empty body", apitest.AdminA, "POST", "/api/v1/things", "", 400, api.CodeBadRequest},
		{"unknown parameter", apitest.ReadA, "GET", "/api/v1/things?colour=red", nil, 400, api.CodeBadRequest},
		{"bad page size", apitest.ReadA, "GET", "/api/v1/things?page_size=0", nil, 400, api.CodeBadRequest},
		{"forged page token", apitest.ReadA, "GET", "/api/v1/things?page_token=eyJ9.AAAA", nil, 400, api.CodeBadRequest},
		{"unknown route", apitest.ReadA, "GET", "/api/v1/nothing", nil, 404, api.CodeNotFound},
		{"document without a token", "", "GET", "/api/v1/openapi.json", nil, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.WithToken(tt.token).Do(tt.method, tt.path, tt.body)
			if r.Status != tt.status || r.ErrorCode() != tt.code {
				t.Errorf("%s %s: %d %q, want %d %q\n%s", tt.method, tt.path, r.Status, r.ErrorCode(), tt.status, tt.code, r.Body)
			}
			if r.Status == 401 && r.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func TestFramePagesAndETags(t *testing.T) {
	c := start(t, api.DefaultConfig()).WithToken(apitest.ReadA)
	var all []string
	next := ""
	for range 10 {
		var page struct {
			Things []string `json:"things"`
			Next   string   `json:"next_page_token"`
		}
		c.Get("/api/v1/things?color=red&page_token="+next).JSON(t, &page)
		all = append(all, page.Things...)
		if next = page.Next; next == "" {
			break
		}
		// The token is bound to the filters and to the tenant.
		if r := c.Get("/api/v1/things?color=blue&page_token=" + next); r.Status != 400 {
			t.Errorf("page token with other filters: %d, want 400", r.Status)
		}
		if r := c.WithToken(apitest.ReadB).Get("/api/v1/things?color=red&page_token=" + next); r.Status != 400 {
			t.Errorf("page token of tenant a used by tenant b: %d, want 400", r.Status)
		}
	}
	if len(all) != 5 {
		t.Errorf("pages gave %v, want t1..t5", all)
	}
	first := c.Get("/api/v1/things")
	tag := first.Header.Get("ETag")
	if tag == "" {
		t.Fatal("no ETag")
	}
	if r := c.Get("/api/v1/things", "If-None-Match", tag); r.Status != 304 || len(r.Body) != 0 {
		t.Errorf("If-None-Match with the current tag: %d %q, want 304 and no body", r.Status, r.Body)
	}
	if r := c.Get("/api/v1/things", "If-None-Match", `"stale"`); r.Status != 200 {
		t.Errorf("If-None-Match with a stale tag: %d, want 200", r.Status)
	}
}

func TestFrameRateLimit(t *testing.T) {
	cfg := api.DefaultConfig()
	cfg.RateLimit, cfg.RateBurst = 0.5, 3
	c := start(t, cfg)
	for i := range 3 {
		if r := c.WithToken(apitest.ReadA).Get("/api/v1/things"); r.Status != 200 {
			t.Fatalf("request %d within the burst: %d", i, r.Status)
		}
	}
	r := c.WithToken(apitest.ReadA).Get("/api/v1/things")
	if r.Status != 429 || r.ErrorCode() != api.CodeRateLimited || r.Header.Get("Retry-After") == "" {
		t.Errorf("past the burst: %d %q Retry-After %q, want 429 rate_limited with Retry-After", r.Status, r.ErrorCode(), r.Header.Get("Retry-After"))
	}
	// Buckets are per token: another token is not slowed down.
	if r := c.WithToken(apitest.ReadB).Get("/api/v1/things"); r.Status != 200 {
		t.Errorf("another token: %d, want 200", r.Status)
	}
}

// Refused tokens are limited per client address: past the burst, every
// request from it is 429 before any lookup, whatever token it sends.
func TestFrameAuthFailureThrottle(t *testing.T) {
	cfg := api.DefaultConfig()
	cfg.AuthFailureRate, cfg.AuthFailureBurst = 0.2, 3
	c := start(t, cfg)
	for i := range 3 {
		if r := c.WithToken("made-up").Get("/api/v1/things"); r.Status != 401 {
			t.Fatalf("refusal %d: %d, want 401", i, r.Status)
		}
	}
	for _, tok := range []string{"made-up", apitest.ReadA} {
		r := c.WithToken(tok).Get("/api/v1/things")
		if r.Status != 429 || r.ErrorCode() != api.CodeRateLimited || r.Header.Get("Retry-After") == "" {
			t.Errorf("after the burst, token %q: %d %q, want 429 with Retry-After", tok, r.Status, r.ErrorCode())
		}
	}
	// The document needs no token, so no lookup: it is not throttled.
	if r := c.WithToken("").Get("/api/v1/openapi.json"); r.Status != 200 {
		t.Errorf("the document while throttled: %d, want 200", r.Status)
	}
}

func TestFrameTwoAuthorizationHeaders(t *testing.T) {
	c := start(t, api.DefaultConfig())
	req, _ := http.NewRequest(http.MethodGet, c.Base()+"/api/v1/things", nil)
	req.Header.Add("Authorization", "Bearer "+apitest.ReadA)
	req.Header.Add("Authorization", "Bearer "+apitest.ReadB)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("two Authorization headers: %d, want 400", resp.StatusCode)
	}
}

// A tenant's tokens share a bucket of four tokens' worth: minting tokens
// does not multiply what a tenant may ask.
func TestFrameTenantRateLimit(t *testing.T) {
	cfg := api.DefaultConfig()
	cfg.RateLimit, cfg.RateBurst = 0.1, 2
	auth := apitest.Principals("a", "b")
	for i := range 6 {
		auth[fmt.Sprintf("minted-%d", i)] = api.Principal{TokenID: fmt.Sprintf("tok_minted_%d", i), Tenant: "a", Role: api.RoleRead}
	}
	c := apitest.Serve(t, cfg, auth, thingsAPI)
	ok := 0
	for i := range 6 {
		for range 2 {
			if r := c.WithToken(fmt.Sprintf("minted-%d", i)).Get("/api/v1/things"); r.Status == 200 {
				ok++
			}
		}
	}
	if ok != 8 {
		t.Errorf("6 tokens of one tenant, 2 requests each within their own bursts: %d answered, want the tenant's 8", ok)
	}
	if r := c.WithToken(apitest.ReadB).Get("/api/v1/things"); r.Status != 200 {
		t.Errorf("another tenant's token: %d, want 200", r.Status)
	}
}
