package alertapi

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/analytics/alerts"
	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/notify"
)

var (
	statuses   = []string{string(alerts.StatusPending), string(alerts.StatusFiring), string(alerts.StatusResolved), string(alerts.StatusDropped)}
	severities = []string{string(notify.SeverityCritical), string(notify.SeverityError), string(notify.SeverityWarning), string(notify.SeverityInfo)}
	// Rule, label and tenant names as the configuration allows them.
	ruleName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	labelName = ruleName
)

// maxSubjects bounds the subject conditions of one request.
const maxSubjects = 8

// filters are the parsed filters of a list or a stream.
type filters struct {
	f alerts.Filter
	// none: the principal sees nothing of what was asked (a tenant
	// token naming another tenant): the answer is empty, exactly as for
	// a tenant without alerts.
	none bool
	// canon is the filters' canonical text, which page tokens are bound to.
	canon string
}

// parseFilters reads the filters the list and the stream share, and
// scopes them to the principal.
func parseFilters(c *gin.Context, q *api.Query, withList bool) filters {
	p := api.PrincipalOf(c)
	var fs filters
	for _, s := range q.Enum("status", statuses...) {
		fs.f.Status = append(fs.f.Status, alerts.Status(s))
	}
	for _, s := range q.Enum("severity", severities...) {
		fs.f.Severity = append(fs.f.Severity, notify.Severity(s))
	}
	slices.Sort(fs.f.Status)
	slices.Sort(fs.f.Severity)
	if fs.f.Rule = q.String("rule"); fs.f.Rule != "" && !ruleName.MatchString(fs.f.Rule) {
		q.Failf("rule: %q is not a rule name ([a-zA-Z_][a-zA-Z0-9_]*)", short(fs.f.Rule))
	}
	tenant := q.String("tenant")
	if tenant != "" && !utf8.ValidString(tenant) {
		q.Failf("tenant: not valid UTF-8")
	}
	switch {
	case p.AllTenants && tenant == "":
		fs.f.AllTenants = true
	case p.AllTenants:
		fs.f.Tenant = tenant
	default:
		// The filter narrows the principal's scope: another tenant's name
		// gives nothing, whether that tenant exists or not.
		fs.f.Tenant = p.Tenant
		fs.none = tenant != "" && tenant != p.Tenant
	}
	if withList {
		if ex := q.String("exporter"); ex != "" {
			addr, err := netip.ParseAddr(ex)
			if err != nil {
				q.Failf("exporter: %q is not an IP address", short(ex))
			} else {
				fs.f.Exporter = addr.Unmap().String()
			}
		}
		fs.f.Subject = parseSubjects(c, q)
		fs.f.Since, fs.f.Until = q.Time("since"), q.Time("until")
		if !fs.f.Since.IsZero() && !fs.f.Until.IsZero() && !fs.f.Until.After(fs.f.Since) {
			q.Failf("until: must be after since")
		}
	}
	canon, _ := json.Marshal([]any{fs.f.Status, fs.f.Severity, fs.f.Rule, tenant, fs.f.Exporter, fs.f.Subject,
		fs.f.Since.Unix(), fs.f.Until.Unix()})
	fs.canon = string(canon)
	return fs
}

// parseSubjects reads the subject parameters: each is a value that some
// subject label must have (subject=192.0.2.1), or name:value for one
// label (subject=dst_address:192.0.2.1). A whole IP or MAC address is a
// value even though it has colons. Addresses are compared in the form
// alerts have them: IPv4 dotted (also for IPv4-mapped IPv6), IPv6
// compressed, MACs lower-case with colons.
func parseSubjects(c *gin.Context, q *api.Query) []alerts.SubjectMatch {
	vs := c.Request.URL.Query()["subject"]
	if len(vs) > maxSubjects {
		q.Failf("subject: given %d times; at most %d", len(vs), maxSubjects)
		return nil
	}
	var out []alerts.SubjectMatch
	for _, v := range vs {
		if len(v) > 256 || !utf8.ValidString(v) {
			q.Failf("subject: %q is longer than 256 bytes or not UTF-8", short(v))
			continue
		}
		m := alerts.SubjectMatch{Value: v}
		if _, ok := address(v); !ok {
			if name, value, found := strings.Cut(v, ":"); found && labelName.MatchString(name) {
				m = alerts.SubjectMatch{Name: name, Value: value}
			}
		}
		if a, ok := address(m.Value); ok {
			m.Value = a
		}
		if m.Value == "" {
			q.Failf("subject: %q has no value", short(v))
			continue
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(x, y alerts.SubjectMatch) int {
		return strings.Compare(x.Name+"\x00"+x.Value, y.Name+"\x00"+y.Value)
	})
	return out
}

// address is v in the form alerts hold addresses, when it is one.
func address(v string) (string, bool) {
	if a, err := netip.ParseAddr(v); err == nil {
		return a.Unmap().String(), true
	}
	if hw, err := net.ParseMAC(v); err == nil && len(hw) == 6 {
		return hw.String(), true
	}
	return "", false
}

func short(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// listPosition is what a page token holds: the snapshot time and the
// cursor.
type listPosition struct {
	Snapshot int64  `json:"s"`
	Key      int64  `json:"k"`
	ID       string `json:"i"`
}

func (h *Handlers) list(c *gin.Context) {
	q := api.ParseQuery(c, "status", "severity", "rule", "exporter", "subject", "since", "until", "tenant", "page_size", "page_token")
	fs := parseFilters(c, q, true)
	fs.f.Limit = q.Int("page_size", alerts.DefaultLimit, 1, alerts.MaxLimit)
	var pos *listPosition
	if tok := q.String("page_token"); tok != "" {
		pos = &listPosition{}
		if err := h.pages.Decode(tok, api.PrincipalOf(c), fs.canon, pos); err != nil || !validID(pos.ID) {
			q.Failf("page_token: %v", api.ErrPageToken)
		}
	}
	if err := q.Err(); err != nil {
		api.BadRequest(c, err)
		return
	}
	if fs.none {
		writeTagged(c, AlertList{Alerts: []Alert{}})
		return
	}
	if pos == nil {
		now, err := h.reader.Now(c.Request.Context())
		if err != nil {
			h.unavailable(c, err)
			return
		}
		pos = &listPosition{Snapshot: now.Add(-h.cfg.StreamSettle).Unix()}
	} else {
		fs.f.After = &alerts.Cursor{UpdatedAt: time.Unix(pos.Key, 0).UTC(), ID: pos.ID}
	}
	fs.f.Snapshot = time.Unix(pos.Snapshot, 0).UTC()
	page, next, err := h.reader.Page(c.Request.Context(), fs.f)
	if err != nil {
		h.unavailable(c, err)
		return
	}
	out := AlertList{Alerts: make([]Alert, len(page))}
	for i, a := range page {
		out.Alerts[i] = alertOf(a)
	}
	tag := etagOf(out.Alerts, next != nil)
	if next != nil {
		tok, err := h.pages.Encode(api.PrincipalOf(c), fs.canon, listPosition{Snapshot: pos.Snapshot, Key: next.UpdatedAt.Unix(), ID: next.ID})
		if err != nil {
			h.unavailable(c, err)
			return
		}
		out.NextPageToken = tok
	}
	writeWithTag(c, tag, out)
}

// etagOf is a list's ETag: of its alerts and whether more follow, not of
// the page token, which changes with every request (its time, its
// snapshot) although the page does not: a poller whose alerts did not
// change gets 304, and its next_page_token is still good.
func etagOf(as []Alert, more bool) string {
	b, _ := json.Marshal(struct {
		A []Alert `json:"a"`
		M bool    `json:"m"`
	}{as, more})
	return api.ETagOf(b)
}

func writeTagged(c *gin.Context, l AlertList) { writeWithTag(c, etagOf(l.Alerts, false), l) }

// writeWithTag answers v with ETag tag, or 304 when If-None-Match holds it.
func writeWithTag(c *gin.Context, tag string, v any) {
	c.Header("ETag", tag)
	c.Header("Cache-Control", "private, no-cache")
	if api.ETagMatches(c.GetHeader("If-None-Match"), tag) {
		c.Status(http.StatusNotModified)
		c.Writer.WriteHeaderNow()
		return
	}
	c.JSON(http.StatusOK, v)
}

// errNoAlert is the one answer for an alert that does not exist and for
// one the principal does not see.
var errNoAlert = errors.New("no such alert")

func notFound(c *gin.Context) {
	api.WriteError(c, http.StatusNotFound, api.CodeNotFound, errNoAlert.Error())
}
