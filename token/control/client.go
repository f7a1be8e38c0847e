package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/flowhouse/flowhouse/token"
)

// Client reaches the token store of the flowhouse serving the socket; it
// is a token.Manager.
type Client struct {
	path string
	http *http.Client
}

var _ token.Manager = (*Client)(nil)

// ErrNoServer is a socket that is missing or that nothing answers on:
// flowhouse serve is not running (or has the socket off).
var ErrNoServer = errors.New("no flowhouse serve answers on the control socket")

// Dial connects to the socket at path and checks that it answers; the
// error wraps ErrNoServer when nothing does.
func Dial(ctx context.Context, path string) (*Client, error) {
	c := &Client{path: path, http: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var ok map[string]bool
	if err := c.do(ctx, http.MethodGet, "/v1/ping", nil, &ok); err != nil {
		return nil, fmt.Errorf("%w (%s): %v", ErrNoServer, path, err)
	}
	return c, nil
}

// Close releases the client's connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Create implements token.Manager.
func (c *Client) Create(ctx context.Context, sp token.Spec) (string, token.Info, error) {
	body := specJSON{Name: sp.Name, Tenant: sp.Tenant, AllTenants: sp.AllTenants, Role: sp.Role,
		ExpiresSeconds: int64(sp.Expires / time.Second), CreatedBy: sp.CreatedBy}
	var out created
	err := c.do(ctx, http.MethodPost, "/v1/tokens", body, &out)
	return out.Secret, out.Token, err
}

// List implements token.Manager.
func (c *Client) List(ctx context.Context, sc token.Scope) ([]token.Info, error) {
	path := "/v1/tokens"
	if !sc.AllTenants {
		path += "?tenant=" + url.QueryEscape(sc.Tenant)
	}
	var out []token.Info
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// Get implements token.Manager; the socket sees every token.
func (c *Client) Get(ctx context.Context, _ token.Scope, id string) (token.Info, error) {
	var out token.Info
	err := c.do(ctx, http.MethodGet, "/v1/tokens/"+url.PathEscape(id), nil, &out)
	return out, err
}

// Revoke implements token.Manager; the socket sees every token.
func (c *Client) Revoke(ctx context.Context, _ token.Scope, id, by string) (token.Info, error) {
	var out token.Info
	err := c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id)+"?by="+url.QueryEscape(by), nil, &out)
	return out, err
}

// do sends a request and decodes the answer into out, or the error the
// server described: a *token.SpecError, token.ErrNotFound, or another.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://flowhouse"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusOK {
		return json.Unmarshal(b, out)
	}
	var e errorBody
	if err := json.Unmarshal(b, &e); err != nil {
		return fmt.Errorf("control socket %s: %s", c.path, resp.Status)
	}
	switch resp.StatusCode {
	case http.StatusBadRequest:
		if e.Error.Field != "" {
			return &token.SpecError{Field: e.Error.Field, Msg: e.Error.Message}
		}
	case http.StatusNotFound:
		return token.ErrNotFound
	}
	return fmt.Errorf("flowhouse serve (control socket %s): %s", c.path, e.Error.Message)
}
