package alertapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/api"
)

// streamBatch is the most changes one poll reads; a full batch is
// followed by another poll at once.
const streamBatch = 500

// acquire takes one of the token's stream slots.
// tenantStreams is how many tokens' worth of streams a tenant's tokens
// may hold together: minting tokens does not multiply them.
const tenantStreams = 4

// streamKeys are the counters a principal's stream takes, with their caps.
func (h *Handlers) streamKeys(p api.Principal) ([]string, []int) {
	keys, caps := []string{"token " + p.TokenID}, []int{h.cfg.MaxStreamsPerToken}
	if !p.AllTenants {
		keys, caps = append(keys, p.Scope()), append(caps, tenantStreams*h.cfg.MaxStreamsPerToken)
	}
	return keys, caps
}

func (h *Handlers) acquire(p api.Principal) bool {
	keys, caps := h.streamKeys(p)
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, k := range keys {
		if h.streams[k] >= caps[i] {
			return false
		}
	}
	for _, k := range keys {
		h.streams[k]++
	}
	return true
}

func (h *Handlers) release(p api.Principal) {
	keys, _ := h.streamKeys(p)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range keys {
		if h.streams[k]--; h.streams[k] <= 0 {
			delete(h.streams, k)
		}
	}
}

// stream sends the changes of the principal's alerts as Server-Sent
// Events, read from the database (alert_versions) every StreamPoll: the
// process running the rules may be another one. Each event's id is its
// position; a client that reconnects with Last-Event-ID gets every
// change after it, once. Without one it starts from now.
func (h *Handlers) stream(c *gin.Context) {
	q := api.ParseQuery(c, "status", "severity", "rule", "tenant")
	fs := parseFilters(c, q, false)
	var after alerts.Position
	last := c.GetHeader("Last-Event-ID")
	if last != "" {
		var ok bool
		if after, ok = parseEventID(last); !ok {
			q.Failf("Last-Event-ID: %q is not an event id of this stream", short(last))
		}
	}
	if err := q.Err(); err != nil {
		api.BadRequest(c, err)
		return
	}
	ctx := c.Request.Context()
	if last == "" && !fs.none {
		now, err := h.reader.Now(ctx)
		if err != nil {
			h.unavailable(c, err)
			return
		}
		// Everything written before now-settle is history; "~" sorts after
		// every id, so the start is after all of that second's rows.
		after = alerts.Position{WrittenAt: now.Add(-h.cfg.StreamSettle), ID: "~"}
	}
	p := api.PrincipalOf(c)
	if !h.acquire(p) {
		c.Header("Retry-After", "5")
		api.WriteError(c, http.StatusTooManyRequests, api.CodeRateLimited,
			fmt.Sprintf("too many streams open: at most %d per token and %d for a tenant's tokens together", h.cfg.MaxStreamsPerToken, tenantStreams*h.cfg.MaxStreamsPerToken))
		return
	}
	defer h.release(p)

	s := &sse{c: c, rc: http.NewResponseController(c.Writer), window: h.cfg.StreamHeartbeat + 30*time.Second}
	c.Header("Content-Type", "text/event-stream")
	c.Header("Cache-Control", "no-cache")
	c.Header("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	c.Status(http.StatusOK)
	if !s.write("retry: " + strconv.Itoa(int(h.cfg.StreamPoll.Milliseconds())*2) + "\n\n") {
		return
	}
	cf := alerts.ChangeFilter{Tenant: fs.f.Tenant, AllTenants: fs.f.AllTenants, Status: fs.f.Status,
		Severity: fs.f.Severity, Rule: fs.f.Rule, Settle: h.cfg.StreamSettle, Limit: streamBatch}
	h.pump(c, s, cf, after, fs.none)
}

// pump polls and writes until the server stops or the client goes.
func (h *Handlers) pump(c *gin.Context, s *sse, cf alerts.ChangeFilter, after alerts.Position, none bool) {
	poll := time.NewTicker(h.cfg.StreamPoll)
	defer poll.Stop()
	beat := time.NewTicker(h.cfg.StreamHeartbeat)
	defer beat.Stop()
	ctx := c.Request.Context()
	for {
		select {
		case <-api.Closing(c):
			return
		case <-ctx.Done():
			return
		case <-beat.C:
			if !s.write(": heartbeat\n\n") {
				return
			}
		case <-poll.C:
			if none {
				continue
			}
			for {
				cf.After = after
				changes, err := h.reader.Changes(ctx, cf)
				if err != nil {
					if ctx.Err() == nil {
						h.logDB.Do(func() { h.log.Warn("alert stream cannot read changes; retrying", "err", err) })
					}
					break
				}
				for _, ch := range changes {
					data, _ := json.Marshal(changeOf(ch))
					if !s.write("id: " + eventID(ch.Position) + "\nevent: alert\ndata: " + string(data) + "\n\n") {
						return
					}
					after = ch.Position
				}
				if len(changes) < streamBatch {
					break
				}
			}
		}
	}
}

// sse writes a stream, pushing the write deadline forward before each
// write: the server's write_timeout would otherwise cut every stream.
type sse struct {
	c      *gin.Context
	rc     *http.ResponseController
	window time.Duration
}

func (s *sse) write(text string) bool {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.window))
	if _, err := s.c.Writer.WriteString(text); err != nil {
		return false
	}
	return s.rc.Flush() == nil
}
