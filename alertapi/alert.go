package alertapi

import (
	"errors"
	"net/http"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/api"
)

// tenantOf is the tenant of alert id among those the principal sees;
// false when it answered (404, or 503).
func (h *Handlers) tenantOf(c *gin.Context, id string) (string, bool) {
	p := api.PrincipalOf(c)
	if !validID(id) {
		notFound(c)
		return "", false
	}
	if !p.AllTenants {
		return p.Tenant, true
	}
	t, err := h.reader.Locate(c.Request.Context(), id)
	switch {
	case errors.Is(err, alerts.ErrNotFound):
		notFound(c)
		return "", false
	case err != nil:
		h.unavailable(c, err)
		return "", false
	}
	return t, true
}

func (h *Handlers) get(c *gin.Context) {
	q := api.ParseQuery(c)
	if err := q.Err(); err != nil {
		api.BadRequest(c, err)
		return
	}
	id := c.Param("id")
	tenant, ok := h.tenantOf(c, id)
	if !ok {
		return
	}
	a, events, err := h.reader.Get(c.Request.Context(), tenant, id)
	switch {
	case errors.Is(err, alerts.ErrNotFound):
		notFound(c)
		return
	case err != nil:
		h.unavailable(c, err)
		return
	}
	out := AlertDetail{Alert: alertOf(a), Events: make([]Event, len(events))}
	for i, e := range events {
		out.Events[i] = eventOf(e)
	}
	writeWithTag(c, versionTag(a.Version), out)
}

// maxComment bounds an acknowledgement's comment.
const maxComment = 1000

func (h *Handlers) ack(c *gin.Context) {
	var body struct {
		Comment string `json:"comment"`
	}
	// The body is optional: none, or a JSON object.
	if c.Request.ContentLength != 0 {
		if !api.BindJSON(c, &body) {
			return
		}
		if len(body.Comment) > maxComment || !utf8.ValidString(body.Comment) {
			api.WriteError(c, http.StatusBadRequest, api.CodeBadRequest, "comment: longer than 1000 bytes or not UTF-8")
			return
		}
	}
	h.setAck(c, true, body.Comment)
}

func (h *Handlers) unack(c *gin.Context) { h.setAck(c, false, "") }

func (h *Handlers) setAck(c *gin.Context, ack bool, comment string) {
	q := api.ParseQuery(c)
	if err := q.Err(); err != nil {
		api.BadRequest(c, err)
		return
	}
	id := c.Param("id")
	tenant, ok := h.tenantOf(c, id)
	if !ok {
		return
	}
	expected, ok := parseIfMatch(c.GetHeader("If-Match"))
	if !ok {
		api.WriteError(c, http.StatusPreconditionFailed, api.CodePrecondition, "If-Match does not hold an ETag of this alert (\"v<version>\")")
		return
	}
	if h.manager == nil {
		api.WriteError(c, http.StatusServiceUnavailable, api.CodeUnavailable, "acknowledgements are taken by the process that runs the rules (rules.enabled), not by this one")
		return
	}
	p := api.PrincipalOf(c)
	actor := p.TokenName
	if actor == "" {
		actor = p.TokenID
	}
	var a alerts.Alert
	var err error
	if ack {
		a, err = h.manager.AckWithNote(c.Request.Context(), tenant, id, actor, comment, expected)
	} else {
		a, err = h.manager.Unack(c.Request.Context(), tenant, id, actor, expected)
	}
	var verr *alerts.VersionError
	switch {
	case errors.As(err, &verr):
		c.Header("ETag", versionTag(verr.Current))
		api.WriteError(c, http.StatusPreconditionFailed, api.CodePrecondition, "the alert changed since that ETag; get it again")
	case errors.Is(err, alerts.ErrNotFound):
		notFound(c)
	case errors.Is(err, alerts.ErrNotActive):
		api.WriteError(c, http.StatusConflict, api.CodeConflict, "the alert has resolved or was dropped: only pending and firing alerts are acknowledged")
	case err != nil:
		h.unavailable(c, err)
	default:
		c.Header("ETag", versionTag(a.Version))
		c.JSON(http.StatusOK, alertOf(a))
	}
}
