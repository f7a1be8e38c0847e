package trafficapi

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/api"
)

// TopRow is one key of a top list.
type TopRow struct {
	Key   map[string]any `json:"key"`
	Label string         `json:"label"`
	Totals
	// Share is the row's part of the total, by the order metric.
	Share float64 `json:"share"`
}

// TopAnswer is the answer of GET /traffic/top.
type TopAnswer struct {
	Source string    `json:"source"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
	By     string    `json:"by"`
	Order  string    `json:"order"`
	Limit  int       `json:"limit"`
	Rows   []TopRow  `json:"rows"`
	Total  Totals    `json:"total"`
}

// maxLimit bounds the rows of a top list.
const maxLimit = 1000

var topParams = params("by", "order", "limit")

func (h *Handlers) top(c *gin.Context) {
	q := api.ParseQuery(c, topParams...)
	r := h.parseCommon(q)
	by := parseBy(q, "by", true)
	order := parseOrder(q)
	limit := q.Int("limit", 10, 1, maxLimit)
	if err := q.Err(); err != nil {
		api.BadRequest(c, err)
		return
	}
	if !h.scope(c, &r) {
		return
	}
	src, err := choose(h.sources, need{since: r.since, until: r.until, raw: rawNeed(by, r.conds)}, h.deps.Now())
	if err != nil {
		api.BadRequest(c, err)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), h.cfg.QueryTimeout)
	defer cancel()
	if r.caps, err = h.capabilities(ctx); err != nil {
		h.fail(ctx, c, "capabilities", err)
		return
	}
	ans := TopAnswer{Source: src.table, Since: r.since, Until: r.until, By: by, Order: order, Limit: limit, Rows: []TopRow{}}
	seconds := r.until.Sub(r.since).Seconds()

	tq, targs := totalSQL(src, r)
	if err := h.query(ctx, tq, targs, sumDest(&ans.Total), 1, func() {}); err != nil {
		h.fail(ctx, c, "top total", err)
		return
	}
	ans.Total.rates(seconds)

	d := dimensions[by]
	keys := scanDest(d)
	var row Totals
	q2, args := topSQL(src, d, order, r, limit)
	err = h.query(ctx, q2, args, append(keys, sumDest(&row)...), limit, func() {
		k := finishKey(d, keys)
		tr := TopRow{Key: k, Label: d.label(k), Totals: row}
		tr.rates(seconds)
		if total := ans.Total.metric(order); total > 0 {
			tr.Share = float64(row.metric(order)) / float64(total)
		}
		ans.Rows = append(ans.Rows, tr)
	})
	if err != nil {
		h.fail(ctx, c, "top", err)
		return
	}
	c.JSON(http.StatusOK, ans)
}
