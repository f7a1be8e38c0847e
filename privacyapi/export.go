package privacyapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/privacy"
)

// CodeExportBusy answers an export while api.export.max_exports run.
const CodeExportBusy = "export_busy"

func (h *Handlers) export(c *gin.Context) {
	t, ok := h.tenant(c)
	if !ok {
		return
	}
	q := api.ParseQuery(c, "since", "until")
	since, until := q.Time("since"), q.Time("until")
	if until.IsZero() {
		until = time.Now().UTC()
	}
	if since.IsZero() {
		since = until.Add(-h.cfg.DefaultWindow)
	}
	switch {
	case !since.Before(until):
		q.Failf("since (%s) must be before until (%s)", since.Format(time.RFC3339), until.Format(time.RFC3339))
	case until.Sub(since) > h.cfg.MaxWindow:
		q.Failf("since..until spans %s, more than the %s allowed (api.export.max_window): export in parts", until.Sub(since), h.cfg.MaxWindow)
	}
	if err := q.Err(); err != nil {
		api.BadRequest(c, err)
		return
	}
	// An export holds a database connection while its client reads: a
	// client that stops reading keeps it until write_timeout. So few run
	// at once, and a tenant cannot take the connections flows are
	// inserted on.
	select {
	case h.exports <- struct{}{}:
		defer func() { <-h.exports }()
	default:
		c.Header("Retry-After", "10")
		api.WriteError(c, http.StatusTooManyRequests, CodeExportBusy,
			fmt.Sprintf("%d export(s) already running (api.export.max_exports); retry later", h.cfg.MaxExports))
		return
	}
	ctx, cancel := closingContext(c)
	defer cancel()
	w := &streamWriter{c: c, rc: http.NewResponseController(c.Writer), timeout: h.cfg.WriteTimeout}
	spec := privacy.ExportSpec{Tenant: t, Since: since, Until: until}
	counts, err := privacy.Export(ctx, h.deps.DB, h.match, spec, w)
	switch {
	case err == nil:
		h.log.Info("exported a tenant's data", "tenant", t, "token_id", api.PrincipalOf(c).TokenID, "counts", counts)
	case !w.started:
		h.unavailable(c, "export", err)
	default:
		// The answer has begun: say in the stream that it is cut short.
		h.log.Warn("export cut short", "tenant", t, "err", err)
		msg := "the export failed before its end: it is incomplete"
		if ctx.Err() != nil {
			msg = "the export was stopped before its end (the client went away or the server is stopping): it is incomplete"
		}
		line, _ := json.Marshal(map[string]string{"type": "error", "message": msg})
		_, _ = w.Write(append(line, '\n'))
		_ = w.Flush()
	}
}

// streamWriter writes an export to the answer, starting it on the first
// write, and moves the connection's write deadline on before each write.
type streamWriter struct {
	c       *gin.Context
	rc      *http.ResponseController
	timeout time.Duration
	started bool
}

func (w *streamWriter) Write(b []byte) (int, error) {
	if !w.started {
		w.started = true
		h := w.c.Writer.Header()
		h.Set("Content-Type", "application/x-ndjson")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		w.c.Status(http.StatusOK)
	}
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.c.Writer.Write(b)
}

func (w *streamWriter) Flush() error {
	if !w.started {
		return nil
	}
	return w.rc.Flush()
}
