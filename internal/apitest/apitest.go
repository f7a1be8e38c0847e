// Package apitest is the test kit of flowhouse's API: a client that
// checks every request it sends and every answer it gets against the
// server's OpenAPI document, so that the document cannot drift from the
// handlers, and a fixed-token authenticator for tests of handlers that
// are not about tokens.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/flowhouse/flowhouse/api"
)

var registerDecoders sync.Once

// Validator checks requests and responses against an OpenAPI document.
type Validator struct {
	doc    *openapi3.T
	router routers.Router
}

// NewValidator loads and validates the document (its JSON).
func NewValidator(specJSON []byte) (*Validator, error) {
	registerDecoders.Do(func() {
		// Streams are text: their schema is a string, their events are
		// checked by the tests that read them.
		for _, ct := range []string{"text/event-stream", "application/x-ndjson", "text/csv", "text/plain"} {
			openapi3filter.RegisterBodyDecoder(ct, openapi3filter.FileBodyDecoder)
		}
	})
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(specJSON)
	if err != nil {
		return nil, fmt.Errorf("openapi: load: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("openapi: not a valid document: %w", err)
	}
	// The router matches absolute URLs against the servers; the document's
	// server is relative, so match on any host.
	doc.Servers = openapi3.Servers{{URL: "http://{host}" + api.APIPrefix, Variables: map[string]*openapi3.ServerVariable{"host": {Default: "localhost"}}}}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi: router: %w", err)
	}
	return &Validator{doc: doc, router: r}, nil
}

// Doc is the loaded document.
func (v *Validator) Doc() *openapi3.T { return v.doc }

// Check validates one exchange: the request (with its body, given
// separately because it has been sent) and the answer. Only /api/v1 paths
// are checked; the document does not describe the others.
func (v *Validator) Check(req *http.Request, reqBody []byte, status int, header http.Header, body []byte) error {
	if !strings.HasPrefix(req.URL.Path, api.APIPrefix+"/") {
		return nil
	}
	u := *req.URL
	u.Scheme, u.Host = "http", "localhost"
	r2 := req.Clone(context.Background())
	r2.URL = &u
	r2.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := v.router.FindRoute(r2)
	if err != nil {
		if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
			return nil // a path or method the API does not have
		}
		return fmt.Errorf("%s %s: not in the OpenAPI document (answered %d): %w", req.Method, req.URL.Path, status, err)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.RequestValidationInput{Request: r2, PathParams: params, Route: route, Options: opts}
	// Requests the server refused as invalid are the tests' bad inputs on
	// purpose; their answers are still checked.
	if status < 400 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			return fmt.Errorf("%s %s: request does not match the document but was answered %d: %w", req.Method, req.URL.String(), status, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: opts}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return fmt.Errorf("%s %s: answer %d does not match the document: %w\nbody: %.400s", req.Method, req.URL.String(), status, err, body)
	}
	return nil
}

// Client sends requests to an API server and validates each exchange;
// a mismatch fails the test.
type Client struct {
	t     testing.TB
	base  string
	v     *Validator
	http  *http.Client
	Token string // sent as Bearer when not empty
}

// NewClient talks to the server at base (http://host:port), validating
// against the server's own document, fetched from it.
func NewClient(t testing.TB, base string) *Client {
	t.Helper()
	resp, err := http.Get(base + api.APIPrefix + "/openapi.json")
	if err != nil {
		t.Fatalf("apitest: fetch the OpenAPI document: %v", err)
	}
	defer resp.Body.Close()
	spec, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("apitest: fetch the OpenAPI document: %d %v", resp.StatusCode, err)
	}
	v, err := NewValidator(spec)
	if err != nil {
		t.Fatalf("apitest: %v", err)
	}
	return &Client{t: t, base: base, v: v, http: &http.Client{Timeout: 60 * time.Second}}
}

// Base is the server's address, http://host:port.
func (c *Client) Base() string { return c.base }

// WithToken is a client like c sending another token ("" for none).
func (c *Client) WithToken(tok string) *Client {
	c2 := *c
	c2.Token = tok
	return &c2
}

// Response is an answer read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test if it is not JSON.
func (r Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("answer %d is not the expected JSON: %v\n%s", r.Status, err, r.Body)
	}
}

// ErrorCode is the code of an error body, "" when the body is not one.
func (r Response) ErrorCode() string {
	var e api.ErrorBody
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

// Do sends method path (with its query) and body (nil, []byte, string or
// a value sent as JSON) with extra headers (name, value pairs).
func (c *Client) Do(method, path string, body any, headers ...string) Response {
	c.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			c.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(raw))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	if err := c.v.Check(req, raw, resp.StatusCode, resp.Header, got); err != nil {
		c.t.Error(err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: got}
}

// Get is Do("GET", path, nil, headers...).
func (c *Client) Get(path string, headers ...string) Response {
	c.t.Helper()
	return c.Do(http.MethodGet, path, nil, headers...)
}

// Validator is the client's validator, for exchanges made otherwise
// (streams).
func (c *Client) Validator() *Validator { return c.v }

// StaticAuth is an authenticator of fixed tokens, for tests of handlers;
// the tokens themselves are tested with the real token store.
type StaticAuth map[string]api.Principal

// Authenticate implements api.Authenticator.
func (a StaticAuth) Authenticate(_ context.Context, tok string) (api.Principal, error) {
	p, ok := a[tok]
	if !ok {
		return api.Principal{}, &api.TokenError{Reason: api.TokenUnknown}
	}
	return p, nil
}

// Tokens of Principals, the usual cast of a tenant isolation test.
const (
	ReadA    = "read-a"
	ReadB    = "read-b"
	AdminA   = "admin-a"
	AdminAll = "admin-all"
	ReadAll  = "read-all"
)

// Principals is a StaticAuth with a read and an admin token of tenant
// a, a read token of tenant b, and read and admin tokens of all tenants.
func Principals(a, b string) StaticAuth {
	return StaticAuth{
		ReadA:    {TokenID: "tok_read_a", TokenName: "read a", Tenant: a, Role: api.RoleRead},
		ReadB:    {TokenID: "tok_read_b", TokenName: "read b", Tenant: b, Role: api.RoleRead},
		AdminA:   {TokenID: "tok_admin_a", TokenName: "admin a", Tenant: a, Role: api.RoleAdmin},
		AdminAll: {TokenID: "tok_admin_all", TokenName: "admin all", AllTenants: true, Role: api.RoleAdmin},
		ReadAll:  {TokenID: "tok_read_all", TokenName: "read all", AllTenants: true, Role: api.RoleRead},
	}
}

// Serve runs an API server on a free loopback port with auth, lets setup
// add the packages under test (AddSpec, Register), and stops it at the
// end of the test. Its rate limit is off unless cfg sets one.
func Serve(t testing.TB, cfg api.Config, auth api.Authenticator, setup func(*api.Server)) *Client {
	t.Helper()
	if cfg.Listen == "" {
		cfg = api.DefaultConfig()
		cfg.RateLimit = 0
	}
	cfg.Listen = "127.0.0.1:0"
	s := api.New(cfg, api.Deps{Authenticator: auth})
	setup(s)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return NewClient(t, "http://"+s.Addr())
}
