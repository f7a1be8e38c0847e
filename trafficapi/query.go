package trafficapi

import (
	"context"
	"fmt"
	"strings"
)

// sums are the aggregates every query reads. Their aliases differ from
// the rollups' column names: an alias named like a column replaces it
// everywhere else in the query (bytes_scaled is bytes * sampling_rate).
func sums(s source) string {
	return "sum(bytes_scaled) AS v_bytes, sum(packets_scaled) AS v_packets, " + s.flows + " AS v_flows"
}

// where is the condition of a request: tenant first (the tables'
// sort keys start with it), the range, then the filters. Every value is
// a bound argument.
func where(r request) (string, []any) {
	ip := ipSQL(r.caps)
	var conds []string
	var args []any
	if r.tenant != "" {
		conds = append(conds, "tenant = ?")
		args = append(args, r.tenant)
	}
	conds = append(conds, "time_received >= toDateTime(?, 'UTC')", "time_received < toDateTime(?, 'UTC')")
	args = append(args, r.since.Unix(), r.until.Unix())
	for _, c := range r.conds.sql {
		conds = append(conds, strings.ReplaceAll(c, ipLiteral, ip))
	}
	args = append(args, r.conds.args...)
	return strings.Join(conds, " AND "), args
}

func keyExprs(d dimension) string {
	exprs := make([]string, len(d.cols))
	for i, c := range d.cols {
		exprs[i] = c.expr
	}
	return strings.Join(exprs, ", ")
}

// topSQL is the top-N query of d on s, ordered by order and then by the
// key, so that ties come in a stable order.
func topSQL(s source, d dimension, order string, r request, limit int) (string, []any) {
	w, args := where(r)
	group := strings.Join(d.group, ", ")
	q := fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s GROUP BY %s ORDER BY %s DESC, %s LIMIT ?",
		keyExprs(d), sums(s), s.table, w, group, orders[order], group)
	return q, append(args, limit)
}

func totalSQL(s source, r request) (string, []any) {
	w, args := where(r)
	return fmt.Sprintf("SELECT %s FROM %s WHERE %s", sums(s), s.table, w), args
}

// bucketExpr aligns time_received to the step (two arguments, the step
// in seconds). toStartOfInterval is not in 18.16.
const bucketExpr = "toUInt64(intDiv(toUInt32(time_received), ?) * ?) AS t"

// seriesSQL is the traffic per bucket of the whole request.
func seriesSQL(s source, r request, step int64, maxRows int) (string, []any) {
	w, args := where(r)
	q := fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s GROUP BY t ORDER BY t LIMIT ?", bucketExpr, sums(s), s.table, w)
	return q, append(append([]any{step, step}, args...), maxRows)
}

// splitSQL is the traffic per bucket of the top keys of d over the whole
// range: the keys chosen by a subquery with the same conditions.
func splitSQL(s source, d dimension, order string, r request, step int64, top, maxRows int) (string, []any) {
	w, args := where(r)
	group := strings.Join(d.group, ", ")
	q := fmt.Sprintf("SELECT %s, %s, %s FROM %s WHERE %s AND (%s) IN "+
		"(SELECT %s FROM %s WHERE %s GROUP BY %s ORDER BY %s DESC, %s LIMIT ?) "+
		"GROUP BY t, %s ORDER BY t LIMIT ?",
		bucketExpr, keyExprs(d), sums(s), s.table, w, group,
		group, s.table, w, group, orderSums[order](s), group,
		group)
	all := append([]any{step, step}, args...)
	all = append(all, args...)
	return q, append(all, top, maxRows)
}

// sumDest scans the three sums that end every row into t.
func sumDest(t *Totals) []any { return []any{&t.Bytes, &t.Packets, &t.Flows} }

// query runs one query and calls row for each row, after scanning into
// dest; at most maxRows rows are read whatever the SQL says.
func (h *Handlers) query(ctx context.Context, q string, args []any, dest []any, maxRows int, row func()) error {
	rows, err := h.deps.Reader.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for n := 0; n < maxRows && rows.Next(); n++ {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("scan: %w", err)
		}
		row()
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return rows.Close()
}
