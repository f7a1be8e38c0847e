package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Query reads a request's query parameters against the list a handler
// accepts: an unknown parameter is an error (a typo in a filter must not
// silently list everything), and every problem is reported at once.
type Query struct {
	values url.Values
	errs   []error
}

// ParseQuery reads c's query parameters; allowed are the names the
// handler reads.
func ParseQuery(c *gin.Context, allowed ...string) *Query {
	q := &Query{values: c.Request.URL.Query()}
	var unknown []string
	for k := range q.values {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		q.errs = append(q.errs, fmt.Errorf("unknown query parameter %q (this endpoint takes: %s)", k, strings.Join(allowed, ", ")))
	}
	return q
}

// Err is every problem found so far, nil when none.
func (q *Query) Err() error { return errors.Join(q.errs...) }

// Failf records a problem of the handler's own checks.
func (q *Query) Failf(format string, args ...any) {
	q.errs = append(q.errs, fmt.Errorf(format, args...))
}

// one is the parameter's single value; a repeated parameter is an error
// unless the handler reads it as a list.
func (q *Query) one(name string) (string, bool) {
	vs, ok := q.values[name]
	if !ok {
		return "", false
	}
	if len(vs) > 1 {
		q.Failf("%s: given %d times; give it once", name, len(vs))
		return "", false
	}
	return vs[0], true
}

// maxParamLen bounds every parameter value: filters are names and
// addresses, not documents.
const maxParamLen = 1024

// String is the parameter's value, "" when absent.
func (q *Query) String(name string) string {
	v, _ := q.one(name)
	if len(v) > maxParamLen {
		q.Failf("%s: longer than %d bytes", name, maxParamLen)
		return ""
	}
	return v
}

// Enum is a list of values, each one of allowed, given comma-separated
// or repeated (status=firing,pending or status=firing&status=pending).
func (q *Query) Enum(name string, allowed ...string) []string {
	var out []string
	for _, v := range q.values[name] {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if !slices.Contains(allowed, s) {
				q.Failf("%s: %q is not one of %s", name, truncate(s), strings.Join(allowed, ", "))
				continue
			}
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// Int is an integer parameter in [lo, hi], def when absent.
func (q *Query) Int(name string, def, lo, hi int) int {
	v, ok := q.one(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		q.Failf("%s: %q is not an integer in %d..%d", name, truncate(v), lo, hi)
		return def
	}
	return n
}

// Time is an RFC 3339 time or Unix seconds; zero when absent.
func (q *Query) Time(name string) time.Time {
	v, ok := q.one(name)
	if !ok || v == "" {
		return time.Time{}
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC()
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 && n < 1<<33 {
		return time.Unix(n, 0).UTC()
	}
	q.Failf("%s: %q is neither an RFC 3339 time (2026-12-01T10:00:00Z) nor Unix seconds", name, truncate(v))
	return time.Time{}
}

// Duration is a Go duration (30s, 15m, 1h) in [lo, hi], def when absent.
func (q *Query) Duration(name string, def, lo, hi time.Duration) time.Duration {
	v, ok := q.one(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		q.Failf("%s: %q is not a duration in %s..%s (Go syntax: 30s, 15m, 1h)", name, truncate(v), lo, hi)
		return def
	}
	return d
}

// truncate keeps echoed input short in error messages.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// BadRequest answers 400 with err's text.
func BadRequest(c *gin.Context, err error) {
	WriteError(c, http.StatusBadRequest, CodeBadRequest, err.Error())
}

// MaxBodyBytes bounds a JSON request body.
const MaxBodyBytes = 1 << 20

// BindJSON decodes the request's JSON body into v strictly: unknown
// fields, trailing data and bodies over MaxBodyBytes are errors. On an
// error it answers 400 and returns false.
func BindJSON(c *gin.Context, v any) bool {
	body := http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("data after the JSON object")
	}
	if err == nil {
		if _, rest := io.Copy(io.Discard, body); rest != nil {
			err = rest
		}
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("empty body; send a JSON object")
		}
		BadRequest(c, fmt.Errorf("request body: %w", err))
		return false
	}
	return true
}
