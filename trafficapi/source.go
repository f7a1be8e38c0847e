package trafficapi

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/store"
)

// source is a table traffic is read from.
type source struct {
	table string
	// grain is the rollup's time bucket; 0 for raw flows.
	grain time.Duration
	// flows is the SQL of the number of flow records.
	flows     string
	maxRange  time.Duration
	retention time.Duration // 0: kept forever
}

// sourcesOf are the tables, coarsest first: of those that can answer
// exactly, the coarsest reads the fewest rows.
func sourcesOf(cfg Config, ret store.RetentionConfig) []source {
	return []source{
		{table: "flows_1h", grain: time.Hour, flows: "sum(flows)", maxRange: cfg.MaxRange.Flows1h, retention: ret.Flows1h},
		{table: "flows_1m", grain: time.Minute, flows: "sum(flows)", maxRange: cfg.MaxRange.Flows1m, retention: ret.Flows1m},
		{table: "flows", flows: "count()", maxRange: cfg.MaxRange.Flows, retention: ret.Flows},
	}
}

// need is what a request asks of a table.
type need struct {
	since, until time.Time
	// step of a series; 0 for a top list.
	step time.Duration
	// raw names what only raw flows have ("by=src_address", "the filter
	// port"), empty when the rollups have every dimension.
	raw string
}

// choose picks the coarsest table that answers exactly: it has the
// dimensions, its buckets divide the range (and the step), the range is
// within its limit and since within its retention. Otherwise the error
// says, table by table, why not, naming the parameters.
func choose(sources []source, n need, now time.Time) (source, error) {
	var why []string
	for _, s := range sources {
		reason := s.refuses(n, now)
		if reason == "" {
			return s, nil
		}
		why = append(why, s.table+": "+reason)
	}
	return source{}, errors.New("no table can answer this request exactly; " + strings.Join(why, "; "))
}

func (s source) refuses(n need, now time.Time) string {
	if s.grain > 0 {
		unit := grainName(s.grain)
		switch {
		case n.raw != "":
			return n.raw + " is only in raw flows (the rollups keep no addresses or ports)"
		case n.since.Unix()%int64(s.grain/time.Second) != 0 || n.until.Unix()%int64(s.grain/time.Second) != 0:
			return "since and until are not on whole " + unit + "s"
		case n.step > 0 && n.step%s.grain != 0:
			return fmt.Sprintf("step %s is not a whole number of %ss", showDuration(n.step), unit)
		}
	}
	if r := n.until.Sub(n.since); r > s.maxRange {
		return fmt.Sprintf("since..until spans %s, more than the %s read from it at most", showDuration(r), showDuration(s.maxRange))
	}
	if s.retention > 0 && n.since.Before(now.Add(-s.retention)) {
		return fmt.Sprintf("since is older than its retention of %s", showDuration(s.retention))
	}
	return ""
}

func grainName(g time.Duration) string {
	if g == time.Hour {
		return "hour"
	}
	return "minute"
}

// showDuration writes days as days (31d), and drops Go's zero tails
// (1h, not 1h0m0s).
func showDuration(d time.Duration) string {
	if d >= day && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
