// Package sqlapi is POST /api/v1/sql: an admin's read-only SQL query,
// answered as JSON. It runs through the same read-only guard and limits
// as the query endpoint and `flowhouse query` (store.ReadOnly on the
// embedded engine, readonly=1 on a ClickHouse server), and only for
// admins of all tenants: see README, "Security model".
package sqlapi

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/store"
)

// Spec is the endpoint's OpenAPI fragment.
//
//go:embed openapi.yaml
var Spec []byte

// Error codes of the endpoint.
const (
	CodeNeedsAllTenants = "sql_needs_all_tenants"
	CodeRefused         = "query_refused"
	CodeError           = "query_error"
	CodeTimeout         = "query_timeout"
)

// Config of the endpoint.
type Config struct {
	// Timeout bounds a query, its wait for a connection included (the
	// embedded engine's own max_execution_time is
	// clickhouse.embedded.query_timeout).
	Timeout time.Duration `mapstructure:"timeout"`
	// DefaultMaxRows is the rows answered when the request names none;
	// MaxRows the most a request may ask for.
	DefaultMaxRows int `mapstructure:"default_max_rows"`
	MaxRows        int `mapstructure:"max_rows"`
}

// DefaultConfig is a minute, 1000 rows, at most 100000.
func DefaultConfig() Config {
	return Config{Timeout: time.Minute, DefaultMaxRows: 1000, MaxRows: 100_000}
}

// Validate names the wrong key.
func (c Config) Validate() error {
	switch {
	case c.Timeout < time.Second:
		return fmt.Errorf("timeout: %s is shorter than 1s", c.Timeout)
	case c.MaxRows < 1 || c.MaxRows > 10_000_000:
		return fmt.Errorf("max_rows: %d is not in 1..10000000", c.MaxRows)
	case c.DefaultMaxRows < 1 || c.DefaultMaxRows > c.MaxRows:
		return fmt.Errorf("default_max_rows: %d is not in 1..max_rows (%d)", c.DefaultMaxRows, c.MaxRows)
	}
	return nil
}

// Deps are what the handlers use but do not own.
type Deps struct {
	// Querier runs the queries: Embedded(readOnlyHandle) or
	// Server(server.ReadOnly()).
	Querier Querier
}

// Handlers serve the endpoint.
type Handlers struct {
	cfg  Config
	deps Deps
}

// New builds the handlers; it does no I/O.
func New(cfg Config, deps Deps) *Handlers { return &Handlers{cfg: cfg, deps: deps} }

// Register adds POST /sql.
func (h *Handlers) Register(v1 *gin.RouterGroup) { v1.POST("/sql", h.query) }

// request is the body of POST /sql.
type request struct {
	Query   string `json:"query"`
	MaxRows *int   `json:"max_rows"`
}

// answer is the 200 body.
type answer struct {
	*Result
	RowCount  int     `json:"row_count"`
	ElapsedMS float64 `json:"elapsed_ms"`
}

func (h *Handlers) query(c *gin.Context) {
	p := api.PrincipalOf(c)
	if !p.AllTenants {
		api.WriteError(c, http.StatusForbidden, CodeNeedsAllTenants,
			"SQL needs an admin token of all tenants: a query reads every tenant's rows, and this engine cannot restrict it to one tenant (no row policies)")
		return
	}
	var req request
	if !api.BindJSON(c, &req) {
		return
	}
	maxRows := h.cfg.DefaultMaxRows
	switch {
	case strings.TrimSpace(req.Query) == "":
		api.BadRequest(c, errors.New("query: empty; send {\"query\": \"SELECT ...\"}"))
		return
	case req.MaxRows != nil && (*req.MaxRows < 1 || *req.MaxRows > h.cfg.MaxRows):
		api.BadRequest(c, fmt.Errorf("max_rows: %d is not in 1..%d", *req.MaxRows, h.cfg.MaxRows))
		return
	case req.MaxRows != nil:
		maxRows = *req.MaxRows
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), h.cfg.Timeout)
	defer cancel()
	start := time.Now()
	res, err := h.deps.Querier.Query(ctx, req.Query, maxRows)
	if err != nil {
		status, code, msg := h.errorOf(err, ctx)
		api.WriteError(c, status, code, msg)
		return
	}
	c.JSON(http.StatusOK, answer{Result: res, RowCount: len(res.Rows), ElapsedMS: float64(time.Since(start).Microseconds()) / 1000})
}

// errorOf is how a failed query is answered. The engine's message is the
// admin's to read (it is about their query); other errors are not
// shown.
func (h *Handlers) errorOf(err error, ctx context.Context) (status int, code, msg string) {
	var refused *store.RefusedError
	var format *FormatClauseError
	var ex *clickhouse.Exception
	var netErr net.Error
	switch {
	case errors.As(err, &refused):
		return http.StatusBadRequest, CodeRefused, "the query is not read-only: " + refused.Reason
	case errors.As(err, &format):
		return http.StatusBadRequest, CodeRefused, format.Error()
	case errors.As(err, &ex) && ex.Code == store.CodeTimeoutExceeded:
		return http.StatusRequestTimeout, CodeTimeout, "the query did not finish in time: " + engineMessage(ex)
	case errors.As(err, &ex) && (ex.Code == store.CodeReadonly || ex.Code == store.CodeAccessDenied):
		return http.StatusBadRequest, CodeRefused, "the query is not read-only: " + engineMessage(ex)
	case errors.As(err, &ex): // syntax errors (store.InvalidQueryError), unknown tables, limits
		return http.StatusBadRequest, CodeError, engineMessage(ex)
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil || errors.As(err, &netErr) && netErr.Timeout():
		// clickhouse-go sets the connection's deadline to the context's:
		// the read times out an instant before the context ends.
		return http.StatusRequestTimeout, CodeTimeout, fmt.Sprintf("the query did not finish, or found no free connection, within %s", h.cfg.Timeout)
	}
	return http.StatusServiceUnavailable, api.CodeUnavailable, "the database cannot run the query now; retry"
}

// maxMessage bounds an engine message in an answer.
const maxMessage = 2000

// engineMessage is the exception as ClickHouse writes it, without a
// stack trace, bounded.
func engineMessage(ex *clickhouse.Exception) string {
	msg := ex.Message
	if i := strings.Index(msg, "Stack trace"); i >= 0 {
		msg = strings.TrimSpace(msg[:i])
	}
	if len(msg) > maxMessage {
		msg = msg[:maxMessage] + "…"
	}
	name := ex.CodeName
	if name == "" {
		name = ex.Name
	}
	return fmt.Sprintf("Code: %d. %s (%s)", ex.Code, msg, name)
}
