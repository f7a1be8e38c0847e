package trafficapi

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowhouse/flowhouse/api"
)

// Series is the traffic of one key (or of all, or of the keys not in the
// top) per bucket.
type Series struct {
	Key   map[string]any `json:"key,omitempty"`
	Label string         `json:"label"`
	// Other is the series of everything not in the top keys.
	Other bool `json:"other"`
	// Total is the series' sums and average rates over the range.
	Total Totals `json:"total"`
	// BPS and PPS are the average rates in each bucket of Times.
	BPS []float64 `json:"bps"`
	PPS []float64 `json:"pps"`
}

// SeriesAnswer is the answer of GET /traffic/series.
type SeriesAnswer struct {
	Source string    `json:"source"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
	Step   int64     `json:"step"`
	By     string    `json:"by,omitempty"`
	Order  string    `json:"order"`
	// Times are the starts of the buckets, every step from since.
	Times  []time.Time `json:"times"`
	Series []Series    `json:"series"`
	Total  Totals      `json:"total"`
}

const (
	minStep = 10 * time.Second
	maxStep = day
	// defaultPoints is the most buckets a default step gives.
	defaultPoints = 300
	// maxSplit bounds the keys of a split series.
	maxSplit = 20
)

// niceSteps are the defaults a step is chosen from.
var niceSteps = []time.Duration{10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute, 10 * time.Minute,
	30 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, day}

var seriesParams = params("step", "by", "order", "limit")

func (h *Handlers) series(c *gin.Context) {
	q := api.ParseQuery(c, seriesParams...)
	r := h.parseCommon(q)
	step := parseStep(q)
	by := parseBy(q, "by", false)
	order := parseOrder(q)
	limit := q.Int("limit", 5, 1, maxSplit)
	if q.Err() == nil {
		step = h.alignSeries(q, &r, step)
	}
	if err := q.Err(); err != nil {
		api.BadRequest(c, err)
		return
	}
	if !h.scope(c, &r) {
		return
	}
	src, err := choose(h.sources, need{since: r.since, until: r.until, step: step, raw: rawNeed(by, r.conds)}, h.deps.Now())
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
	ans, err := h.readSeries(ctx, src, r, step, by, order, limit)
	if err != nil {
		h.fail(ctx, c, "series", err)
		return
	}
	c.JSON(http.StatusOK, ans)
}

// parseStep reads step: a Go duration or whole days (1d), in whole
// seconds within 10s..1d; 0 when absent (chosen from the range).
func parseStep(q *api.Query) time.Duration {
	v := q.String("step")
	if v == "" {
		return 0
	}
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(v, "d"); ok {
		var days int
		days, err = strconv.Atoi(n)
		d = time.Duration(days) * day
	} else {
		d, err = time.ParseDuration(v)
	}
	if err != nil || d < minStep || d > maxStep || d%time.Second != 0 {
		q.Failf("step: %q is not a duration of whole seconds in 10s..1d (30s, 5m, 1h, 1d)", short(v))
		return 0
	}
	return d
}

// alignSeries picks the step when none is given, widens the range to
// whole steps and bounds the points.
func (h *Handlers) alignSeries(q *api.Query, r *request, step time.Duration) time.Duration {
	span := r.until.Sub(r.since)
	if step == 0 {
		step = niceSteps[len(niceSteps)-1]
		most := time.Duration(min(defaultPoints, h.cfg.MaxPoints-1))
		for _, s := range niceSteps {
			if span/s <= most {
				step = s
				break
			}
		}
	}
	sec := int64(step / time.Second)
	since := r.since.Unix() / sec * sec
	until := (r.until.Unix() + sec - 1) / sec * sec
	points := (until - since) / sec
	if points > int64(h.cfg.MaxPoints) {
		least := (span + time.Duration(h.cfg.MaxPoints)*time.Second - 1) / time.Duration(h.cfg.MaxPoints)
		least = least.Round(time.Second)
		q.Failf("step: %s over since..until (%s) gives %d points, more than %d; use a step of at least %s",
			showDuration(step), showDuration(span), points, h.cfg.MaxPoints, showDuration(max(least, minStep)))
		return step
	}
	r.since, r.until = time.Unix(since, 0).UTC(), time.Unix(until, 0).UTC()
	return step
}

func (h *Handlers) readSeries(ctx context.Context, src source, r request, step time.Duration, by, order string, limit int) (SeriesAnswer, error) {
	sec := int64(step / time.Second)
	n := int(r.until.Sub(r.since) / step)
	ans := SeriesAnswer{Source: src.table, Since: r.since, Until: r.until, Step: sec, By: by, Order: order, Times: make([]time.Time, n)}
	for i := range ans.Times {
		ans.Times[i] = r.since.Add(time.Duration(i) * step)
	}
	index := func(t uint64) (int, bool) {
		i := (int64(t) - r.since.Unix()) / sec
		return int(i), i >= 0 && i < int64(n)
	}

	all := newAcc(n)
	var t uint64
	var row Totals
	sq, sargs := seriesSQL(src, r, sec, n)
	err := h.query(ctx, sq, sargs, append([]any{&t}, sumDest(&row)...), n, func() {
		if i, ok := index(t); ok {
			all.add(i, row)
		}
	})
	if err != nil {
		return ans, fmt.Errorf("series: %w", err)
	}
	ans.Total = all.total
	ans.Total.rates(float64(n * int(sec)))
	if by == "" {
		ans.Series = []Series{all.series("total", nil, false, step)}
		return ans, nil
	}
	split, err := h.readSplit(ctx, src, r, sec, by, order, limit, n, index)
	if err != nil {
		return ans, err
	}
	other := all
	for _, s := range split {
		other.subtract(s)
		ans.Series = append(ans.Series, s.series(s.label, s.key, false, step))
	}
	ans.Series = append(ans.Series, other.series("other", nil, true, step))
	return ans, nil
}

// readSplit reads the series of the top keys, in order (most first).
func (h *Handlers) readSplit(ctx context.Context, src source, r request, sec int64, by, order string, limit, n int,
	index func(uint64) (int, bool)) ([]*acc, error) {
	d := dimensions[by]
	keys := scanDest(d)
	var t uint64
	var row Totals
	byID := map[string]*acc{}
	var out []*acc
	q, args := splitSQL(src, d, order, r, sec, limit, n*limit)
	err := h.query(ctx, q, args, append(append([]any{&t}, keys...), sumDest(&row)...), n*limit, func() {
		k := finishKey(d, keys)
		id := keyID(d, k)
		a := byID[id]
		if a == nil {
			a = newAcc(n)
			byID[id] = a
			out = append(out, a)
		}
		// Rows come in time order: the latest bucket names the key.
		a.key, a.label = k, d.label(k)
		if i, ok := index(t); ok {
			a.add(i, row)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("series by %s: %w", by, err)
	}
	slices.SortStableFunc(out, func(a, b *acc) int {
		if c := cmp.Compare(b.total.metric(order), a.total.metric(order)); c != 0 {
			return c
		}
		return cmp.Compare(a.label, b.label)
	})
	return out, nil
}

// acc sums one series bucket by bucket.
type acc struct {
	key     map[string]any
	label   string
	total   Totals
	bytes   []uint64
	packets []uint64
}

func newAcc(n int) *acc { return &acc{bytes: make([]uint64, n), packets: make([]uint64, n)} }

func (a *acc) add(i int, t Totals) {
	a.bytes[i] += t.Bytes
	a.packets[i] += t.Packets
	a.total.add(t)
}

// subtract takes s out of a, which holds s (the top keys are part of
// the whole).
func (a *acc) subtract(s *acc) {
	for i := range a.bytes {
		a.bytes[i] -= min(a.bytes[i], s.bytes[i])
		a.packets[i] -= min(a.packets[i], s.packets[i])
	}
	a.total.Bytes -= min(a.total.Bytes, s.total.Bytes)
	a.total.Packets -= min(a.total.Packets, s.total.Packets)
	a.total.Flows -= min(a.total.Flows, s.total.Flows)
}

func (a *acc) series(label string, key map[string]any, other bool, step time.Duration) Series {
	s := Series{Key: key, Label: label, Other: other, Total: a.total, BPS: make([]float64, len(a.bytes)), PPS: make([]float64, len(a.bytes))}
	sec := step.Seconds()
	for i := range a.bytes {
		s.BPS[i] = float64(a.bytes[i]) * 8 / sec
		s.PPS[i] = float64(a.packets[i]) / sec
	}
	s.Total.rates(sec * float64(len(a.bytes)))
	return s
}
